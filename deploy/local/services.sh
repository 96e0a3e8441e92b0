#!/usr/bin/env bash
# Ensures PostgreSQL, RabbitMQ (with its management API, used by the tests to
# make a vhost per test) and the S3-compatible server s3s-fs are running on
# this machine, installing what is missing (Debian packages; s3s-fs with
# cargo into ~/.cache/posts-images). Idempotent: running services are left
# alone. What this script starts is recorded for deploy/local/down.sh.
set -euo pipefail
. "$(dirname "$0")/common.sh"

case "${1:-}" in -h|--help) sed -n '2,7p' "$0"; exit 0 ;; esac

ensure_postgres() {
  if port_open 5432; then return; fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    log "installing PostgreSQL"
    apt_install postgresql
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -1)
  local hba="/etc/postgresql/$version/main/pg_hba.conf"
  if ! grep -q "posts-images: trust" "$hba"; then
    # Local development only: trust connections from this machine.
    sed -i '1i # posts-images: trust local connections for development\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\nlocal all all trust' "$hba"
  fi
  log "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  mark_started postgresql
  wait_for PostgreSQL 60 port_open 5432
}

ensure_rabbitmq() {
  if ! port_open 5672; then
    if ! command -v rabbitmq-server >/dev/null; then
      log "installing RabbitMQ"
      apt_install rabbitmq-server
    fi
    log "starting RabbitMQ"
    rabbitmq-server -detached
    mark_started rabbitmq
    wait_for RabbitMQ 120 port_open 5672
  fi
  if ! curl -sf -u guest:guest http://127.0.0.1:15672/api/overview >/dev/null; then
    log "enabling the RabbitMQ management API"
    rabbitmq-plugins enable rabbitmq_management >/dev/null
    wait_for "RabbitMQ management API" 120 curl -sf -u guest:guest -o /dev/null http://127.0.0.1:15672/api/overview
  fi
}

ensure_s3() {
  local bin="$CACHE/tools/bin/s3s-fs"
  if [ ! -x "$bin" ]; then
    log "installing s3s-fs 0.14.1 into $CACHE/tools (a few minutes, once)"
    cargo install s3s-fs --version 0.14.1 --locked --features binary --root "$CACHE/tools"
  fi
  if port_open 9000; then return; fi
  mkdir -p "$CACHE/s3-data"
  log "starting s3s-fs on 127.0.0.1:9000 (data in $CACHE/s3-data)"
  nohup "$bin" --host 127.0.0.1 --port 9000 \
    --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY" \
    "$CACHE/s3-data" >"$CACHE/s3s-fs.log" 2>&1 &
  echo $! >"$CACHE/s3s-fs.pid"
  mark_started s3s-fs
  wait_for s3s-fs 30 port_open 9000
}

ensure_tools() {
  command -v curl >/dev/null || apt_install curl
  command -v psql >/dev/null || apt_install postgresql-client
  cargo nextest --version >/dev/null 2>&1 || cargo install cargo-nextest --locked
  # The image service links libheif (AVIF and HEIF input); nasm assembles
  # rav1e's x86 code (AVIF encoding).
  [ -f /usr/include/x86_64-linux-gnu/libheif/heif.h ] || [ -f /usr/include/libheif/heif.h ] \
    || apt_install libheif-dev
  command -v nasm >/dev/null || apt_install nasm
}

ensure_tools
ensure_postgres
ensure_rabbitmq
ensure_s3
log "PostgreSQL :5432, RabbitMQ :5672 (management :15672), S3 :9000 are up"
