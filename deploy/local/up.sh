#!/usr/bin/env bash
# Brings the whole stack up on this machine and shows it working: starts
# PostgreSQL, RabbitMQ and s3s-fs if needed, creates the databases and the
# bucket, builds the three programs (release) and starts them on the default
# ports, then uploads a photo, creates a post and waits for its variants.
# Usage: deploy/local/up.sh [PHOTO]     Stop with: deploy/local/down.sh
set -euo pipefail
. "$(dirname "$0")/common.sh"

case "${1:-}" in -h|--help) sed -n '2,7p' "$0"; exit 0 ;; esac
photo=${1:-"$REPO_ROOT/../shared/corpus/photos/Bridge_by_Sander_Klootwijk.jpg"}
[ -f "$photo" ] || die "no photo at $photo (pass one as the first argument)"

"$LOCAL_DIR/services.sh"

for db in posts images relay; do
  if [ -z "$(psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
    log "creating database $db"
    createdb -h 127.0.0.1 -U postgres "$db"
  fi
done
# s3s-fs serves a folder: a bucket is a top-level directory.
mkdir -p "$CACHE/s3-data/images"

log "building (release)"
(cd "$REPO_ROOT" && cargo build --release --quiet -p post-service -p image-service -p outbox-relay)
bin="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release"
run="$CACHE/run"
mkdir -p "$run"

amqp=amqp://guest:guest@127.0.0.1:5672/%2f
pg=postgres://postgres@127.0.0.1:5432

start() {
  local name=$1 port=$2; shift 2
  if [ -f "$run/$name.pid" ] && kill -0 "$(cat "$run/$name.pid")" 2>/dev/null; then
    log "stopping the running $name"
    kill -TERM "$(cat "$run/$name.pid")"
    local deadline=$((SECONDS + 20))
    while kill -0 "$(cat "$run/$name.pid")" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  fi
  port_open "$port" && die "port $port is taken by another program"
  log "starting $name on 127.0.0.1:$port (log: $run/$name.log)"
  env "$@" nohup "$bin/$name" >"$run/$name.log" 2>&1 &
  echo $! >"$run/$name.pid"
  local deadline=$((SECONDS + 60))
  until curl -sf -o /dev/null "http://127.0.0.1:$port/readyz"; do
    if ! kill -0 "$(cat "$run/$name.pid")" 2>/dev/null || ((SECONDS >= deadline)); then
      tail -n 30 "$run/$name.log" >&2
      die "$name did not become ready (see /readyz)"
    fi
    sleep 0.2
  done
}

# The relay first: it declares the RabbitMQ topology once.
start outbox-relay 8082 \
  RELAY_AMQP__URL="$amqp" \
  RELAY_OUTBOX__DATABASE_URLS="$pg/posts,$pg/images" \
  RELAY_DEAD_LETTERS__DATABASE_URL="$pg/relay" \
  RELAY_AUTH__JWT_SECRET="$DEV_JWT_SECRET"
start image-service 8081 \
  IMAGE_DATABASE__URL="$pg/images" IMAGE_AMQP__URL="$amqp" \
  IMAGE_AUTH__JWT_SECRET="$DEV_JWT_SECRET" \
  IMAGE_S3__ENDPOINT=http://127.0.0.1:9000 IMAGE_S3__BUCKET=images \
  IMAGE_S3__ACCESS_KEY_ID="$S3_ACCESS_KEY" IMAGE_S3__SECRET_ACCESS_KEY="$S3_SECRET_KEY"
start post-service 8080 \
  POST_DATABASE__URL="$pg/posts" POST_AMQP__URL="$amqp" \
  POST_AUTH__JWT_SECRET="$DEV_JWT_SECRET"

token=$("$LOCAL_DIR/token.sh" demo-user)
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

log "uploading $(basename "$photo")"
upload=$(curl -sf -H "Authorization: Bearer $token" --data-binary "@$photo" http://127.0.0.1:8081/v1/uploads) ||
  die "upload failed"
image_id=$(json 'd["id"]' <<<"$upload")
echo "$upload"

log "creating a post"
post=$(curl -sf -H "Authorization: Bearer $token" -H 'content-type: application/json' \
  -d "{\"title\":\"Hello\",\"body\":\"First post\",\"image_ids\":[\"$image_id\"]}" \
  http://127.0.0.1:8080/v1/posts) || die "create post failed"
post_id=$(json 'd["id"]' <<<"$post")

log "waiting for the variants of post $post_id"
deadline=$((SECONDS + 120))
while :; do
  current=$(curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:8080/v1/posts/$post_id")
  state=$(json '",".join(sorted({i["status"] for i in d["images"]}))' <<<"$current")
  [ "$state" = ready ] && break
  if [ "$state" = failed ] || ((SECONDS >= deadline)); then
    echo "$current" >&2
    for name in outbox-relay image-service post-service; do tail -n 10 "$run/$name.log" >&2; done
    die "the post's images did not become ready (status: $state)"
  fi
  sleep 0.5
done
python3 -m json.tool <<<"$current"
echo
echo "Post:        http://127.0.0.1:8080/v1/posts/$post_id (needs a token)"
json '"\n".join("Original:    " + i["original_url"] + "\n" + "\n".join("Variant %-5s %s" % (v["name"], v["url"]) for v in i["variants"]) for i in d["images"])' <<<"$current"
echo
echo "Token for curl: deploy/local/token.sh USER_ID   Stop everything: deploy/local/down.sh"
