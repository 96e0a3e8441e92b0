#!/usr/bin/env bash
# Relay throughput: fills a scratch outbox with ROWS unpublished post.created
# events (default 100,000), starts the release relay on it with a scratch
# RabbitMQ vhost, and times from the first row marked published to the last
# (publisher confirms, mandatory, rows marked after the confirm). Prints
# events/s, then removes the database, the vhost and the relay.
# Usage: bench/relay.sh [ROWS]   (PostgreSQL, RabbitMQ with management API)
# RELAY_BIN=path uses that relay binary instead of building the release one.
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,9p' "$0"; exit 0 ;; esac
rows=${1:-100000}
root="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$HOME/.cache/posts-images/target}"
api="http://127.0.0.1:15672/api"
suffix="$$"
source_db="relay_bench_outbox_$suffix"
relay_db="relay_bench_dlq_$suffix"
vhost="relay-bench-$suffix"
psql_base=(psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -qAt)
relay_pid=""

cleanup() {
  [ -n "$relay_pid" ] && kill "$relay_pid" 2>/dev/null && wait "$relay_pid" 2>/dev/null || true
  for db in "$source_db" "$relay_db"; do
    "${psql_base[@]}" -d postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null || true
  done
  curl -fsS -u guest:guest -X DELETE "$api/vhosts/$vhost" >/dev/null || true
}
trap cleanup EXIT

relay_bin=${RELAY_BIN:-$target/release/outbox-relay}
if [ -z "${RELAY_BIN:-}" ]; then
  (cd "$root" && CARGO_TARGET_DIR="$target" cargo build --release --quiet -p outbox-relay)
fi
for db in "$source_db" "$relay_db"; do
  "${psql_base[@]}" -d postgres -c "CREATE DATABASE $db" >/dev/null
done
for migration in "$root"/infra/migrations/*.sql; do
  "${psql_base[@]}" -d "$source_db" -f "$migration" >/dev/null
done
curl -fsS -u guest:guest -X PUT "$api/vhosts/$vhost" >/dev/null
curl -fsS -u guest:guest -X PUT -H 'content-type: application/json' \
  -d '{"configure":".*","write":".*","read":".*"}' "$api/permissions/$vhost/guest" >/dev/null

echo "filling the outbox with $rows events"
"${psql_base[@]}" -d "$source_db" -c "
INSERT INTO outbox (id, event_type, version, aggregate_type, aggregate_id, sequence, data, traceparent)
SELECT gen_random_uuid(), 'post.created', 1, 'post', gen_random_uuid(), 1,
       jsonb_build_object('post_id', gen_random_uuid(), 'author_id', 'bench', 'image_ids', '[]'::jsonb),
       '00-' || md5(g::text) || '-' || substr(md5((g + 1)::text), 1, 16) || '-01'
FROM generate_series(1, $rows) AS g" >/dev/null
"${psql_base[@]}" -d "$source_db" -c "VACUUM ANALYZE outbox" >/dev/null

unpublished() {
  "${psql_base[@]}" -d "$source_db" -c "SELECT count(*) FROM outbox WHERE published_at IS NULL"
}

RELAY_AMQP__URL="amqp://guest:guest@127.0.0.1:5672/$vhost" \
RELAY_OUTBOX__DATABASE_URLS="postgres://postgres@127.0.0.1:5432/$source_db" \
RELAY_DEAD_LETTERS__DATABASE_URL="postgres://postgres@127.0.0.1:5432/$relay_db" \
RELAY_ADMIN__PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')" RUST_LOG=warn \
  "$relay_bin" >/tmp/relay-bench-$suffix.log 2>&1 &
relay_pid=$!

# The time is read from the rows' own marks (each row's published_at is
# the clock when its confirm had come back and it was marked): from the
# first mark to the last, so polling here neither shifts the figure nor
# takes the CPU from the relay.
deadline=$((SECONDS + 300))
until [ "$(unpublished)" -eq 0 ]; do
  ((SECONDS < deadline)) || { tail -20 /tmp/relay-bench-$suffix.log; echo "still $(unpublished) unpublished after 5 minutes" >&2; exit 1; }
  sleep 0.5
done
span=$("${psql_base[@]}" -d "$source_db" -c \
  "SELECT EXTRACT(EPOCH FROM max(published_at) - min(published_at)) FROM outbox")
# The management API's queue statistics lag by a few seconds.
queued="?"
for _ in $(seq 50); do
  queued=$(curl -fsS -u guest:guest "$api/queues/$vhost/image-service.post-events" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin).get("messages", "?"))')
  [ "$queued" = "$rows" ] && break
  sleep 0.2
done
python3 - "$rows" "$span" "$queued" <<'EOF'
import sys
rows, seconds, queued = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
# From the first mark to the last: rows - 1 intervals.
print(f"{rows} events published with confirms in {seconds:.2f} s: {(rows - 1) / seconds:,.0f} events/s "
      f"(first mark to last; messages in image-service.post-events: {queued})")
EOF
