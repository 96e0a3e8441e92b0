#!/usr/bin/env bash
# Stops the programs started by up.sh (every replica), then the backing services that
# services.sh started (and only those). Data is kept.
set -euo pipefail
. "$(dirname "$0")/common.sh"

case "${1:-}" in -h|--help) sed -n '2,3p' "$0"; exit 0 ;; esac

stop_pid() {
  local name=$1 file=$2
  [ -f "$file" ] || return 0
  local pid
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping $name"
    kill -TERM "$pid"
    local deadline=$((SECONDS + 20))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  rm -f "$file"
}

# Every instance up.sh started, whatever its replica count.
for pidfile in "$CACHE"/run/*.pid; do
  [ -f "$pidfile" ] || continue
  stop_pid "$(basename "$pidfile" .pid)" "$pidfile"
done

if [ -f "$CACHE/started-by-us" ]; then
  while read -r service; do
    case "$service" in
      s3s-fs) stop_pid s3s-fs "$CACHE/s3s-fs.pid" ;;
      rabbitmq) log "stopping RabbitMQ"; rabbitmqctl stop >/dev/null || true ;;
      postgresql)
        log "stopping PostgreSQL"
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main stop || true ;;
    esac
  done <"$CACHE/started-by-us"
  rm -f "$CACHE/started-by-us"
fi
log "stopped"
