#!/usr/bin/env bash
# The relay's claim query against a big backlog: creates a scratch database
# with the outbox schema (infra/migrations), fills it with ROWS unpublished
# rows (default 1,000,000) plus as many published ones, prints EXPLAIN
# ANALYZE of the claim (the relay's exact query, batch of 500, the default) and the
# latency of 50 claims, then drops the database.
# Usage: bench/claim.sh [ROWS]    (needs psql; PostgreSQL on 127.0.0.1:5432)
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,7p' "$0"; exit 0 ;; esac
rows=${1:-1000000}
root="$(cd "$(dirname "$0")/.." && pwd)"
db="claim_bench_$$"
psql_base=(psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -qAt)
"${psql_base[@]}" -d postgres -c "CREATE DATABASE $db" >/dev/null
trap '"${psql_base[@]}" -d postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null' EXIT
q() { "${psql_base[@]}" -d "$db" "$@"; }
for migration in "$root"/infra/migrations/*.sql; do q -f "$migration" >/dev/null; done

echo "filling: $rows published and $rows unpublished rows"
started=$(date +%s)
q -c "
INSERT INTO outbox (id, event_type, version, aggregate_type, aggregate_id, sequence, data, traceparent, published_at)
SELECT gen_random_uuid(), 'post.created', 1, 'post', gen_random_uuid(), 1,
       jsonb_build_object('post_id', gen_random_uuid(), 'author_id', 'u', 'image_ids', '[]'::jsonb),
       NULL, CASE WHEN g <= $rows THEN now() END
FROM generate_series(1, 2 * $rows) AS g" >/dev/null
q -c "VACUUM ANALYZE outbox" >/dev/null
echo "filled in $(( $(date +%s) - started )) s"

claim="SELECT position, id, event_type, version, aggregate_type, aggregate_id,
              sequence, data, traceparent, created_at
       FROM outbox
       WHERE published_at IS NULL
       ORDER BY position
       LIMIT 500
       FOR UPDATE SKIP LOCKED"
echo
echo "EXPLAIN (ANALYZE, BUFFERS) of the claim:"
q -c "BEGIN; EXPLAIN (ANALYZE, BUFFERS) $claim; ROLLBACK;"

echo
echo "latency of 50 claims (each in its own transaction, rolled back):"
script=$(for _ in $(seq 50); do echo "BEGIN; $claim; ROLLBACK;"; done)
times=$(printf '\\timing on\n%s\n' "$script" | q 2>/dev/null | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' \
  | awk 'NR % 3 == 2')
echo "$times" | sort -n | awk '
  { v[NR] = $1 }
  END { printf "p50 %.2f ms, p90 %.2f ms, max %.2f ms (%d claims)\n", v[int(NR*0.5)], v[int(NR*0.9)], v[NR], NR }'
