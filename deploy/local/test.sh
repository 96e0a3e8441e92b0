#!/usr/bin/env bash
# Runs every test (unit, integration, end-to-end) against real PostgreSQL,
# RabbitMQ and S3, starting whatever is missing first. Also checks formatting
# and lints, validates the deployment manifests, and runs the benchmark
# suite's smoke mode (bench/run --smoke). Extra arguments go to
# `cargo nextest run` (and skip the smoke run).
set -euo pipefail
. "$(dirname "$0")/common.sh"

case "${1:-}" in -h|--help) sed -n '2,6p' "$0"; exit 0 ;; esac

"$LOCAL_DIR/services.sh"
cd "$REPO_ROOT"

export TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432
export TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:5672
export TEST_RABBITMQ_API=http://guest:guest@127.0.0.1:15672
export TEST_S3_ENDPOINT=http://127.0.0.1:9000
export TEST_S3_ACCESS_KEY_ID=$S3_ACCESS_KEY
export TEST_S3_SECRET_ACCESS_KEY=$S3_SECRET_KEY
if [ -d "$REPO_ROOT/../shared/corpus" ]; then
  CORPUS_DIR="$(cd "$REPO_ROOT/../shared/corpus" && pwd)"
  export CORPUS_DIR
fi

# Leftovers of earlier runs: test vhosts, databases and buckets (s3s-fs
# keeps each bucket as a directory; the tests leave theirs behind).
for vhost in $(curl -sf -u guest:guest http://127.0.0.1:15672/api/vhosts |
  grep -o '"name":"test-[0-9a-f]*"' | cut -d'"' -f4); do
  curl -sf -u guest:guest -X DELETE "http://127.0.0.1:15672/api/vhosts/$vhost" >/dev/null || true
done
psql -h 127.0.0.1 -U postgres -d postgres -tAc \
  "SELECT datname FROM pg_database WHERE datname LIKE 'test\_%'" |
  while read -r db; do [ -n "$db" ] && dropdb -h 127.0.0.1 -U postgres --if-exists "$db" || true; done
find "$CACHE/s3-data" -mindepth 1 -maxdepth 1 -type d -name 'test-*' -exec rm -rf {} + 2>/dev/null || true

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings
log "deploy manifests (Kubernetes schemas, compose, settings coverage)"
"$REPO_ROOT/deploy/check-manifests.sh"
log "cargo nextest run"
cargo nextest run --workspace --all-features --no-fail-fast "$@"
if [ $# -eq 0 ]; then
  log "bench/run --smoke (the benchmark table, a few seconds of load; no timing asserted)"
  "$REPO_ROOT/bench/run" --smoke
fi
