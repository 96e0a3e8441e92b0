#!/usr/bin/env bash
# Brings the whole stack up on this machine and shows it working: starts
# PostgreSQL, RabbitMQ and s3s-fs if needed, creates the databases and the
# bucket, builds the three programs (release) and starts them on the default
# ports, then uploads a photo, creates a post and waits for its variants.
# Usage: deploy/local/up.sh [--replicas N] [PHOTO]   Stop: deploy/local/down.sh
# --replicas N (or REPLICAS=N) runs N of each program against the same
# databases, broker and bucket: instance i (from 0) listens on the default
# port + 100*i (post services 8080, 8180, …; image services 8081, 8181, …;
# relays 8082, 8182, …).
set -euo pipefail
. "$(dirname "$0")/common.sh"

replicas=${REPLICAS:-1}
case "${1:-}" in
  -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
  --replicas) replicas=${2:?--replicas needs a number}; shift 2 ;;
esac
case "$replicas" in ''|*[!0-9]*|0) die "--replicas needs a positive number, not '$replicas'" ;; esac
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

# Instances of an earlier run (any replica count) are stopped first.
for pidfile in "$run"/*.pid; do
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping the running $(basename "$pidfile" .pid)"
    kill -TERM "$pid"
    deadline=$((SECONDS + 20))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  fi
  rm -f "$pidfile"
done

# start NAME INSTANCE PORT VAR=VALUE...: starts one instance and waits for /readyz.
start() {
  local name=$1 instance=$2 port=$3; shift 3
  local id=$name
  ((instance == 0)) || id="$name-$instance"
  port_open "$port" && die "port $port is taken by another program"
  log "starting $id on 127.0.0.1:$port (log: $run/$id.log)"
  env "$@" HOSTNAME="$id" nohup "$bin/$name" >"$run/$id.log" 2>&1 &
  echo $! >"$run/$id.pid"
  local deadline=$((SECONDS + 60))
  until curl -sf -o /dev/null "http://127.0.0.1:$port/readyz"; do
    if ! kill -0 "$(cat "$run/$id.pid")" 2>/dev/null || ((SECONDS >= deadline)); then
      tail -n 30 "$run/$id.log" >&2
      die "$id did not become ready (see /readyz)"
    fi
    sleep 0.2
  done
}

# Relays first: the first one declares the RabbitMQ topology once.
for ((i = 0; i < replicas; i++)); do
  start outbox-relay "$i" $((8082 + 100 * i)) \
    RELAY_ADMIN__PORT=$((8082 + 100 * i)) \
    RELAY_AMQP__URL="$amqp" \
    RELAY_OUTBOX__DATABASE_URLS="$pg/posts,$pg/images" \
    RELAY_DEAD_LETTERS__DATABASE_URL="$pg/relay" \
    RELAY_AUTH__JWT_SECRET="$DEV_JWT_SECRET"
done
# Every image service hands out URLs of the first one: any instance serves
# any image.
for ((i = 0; i < replicas; i++)); do
  start image-service "$i" $((8081 + 100 * i)) \
    IMAGE_APPLICATION__PORT=$((8081 + 100 * i)) \
    IMAGE_APPLICATION__PUBLIC_BASE_URL=http://127.0.0.1:8081 \
    IMAGE_DATABASE__URL="$pg/images" IMAGE_AMQP__URL="$amqp" \
    IMAGE_AUTH__JWT_SECRET="$DEV_JWT_SECRET" \
    IMAGE_S3__ENDPOINT=http://127.0.0.1:9000 IMAGE_S3__BUCKET=images \
    IMAGE_S3__ACCESS_KEY_ID="$S3_ACCESS_KEY" IMAGE_S3__SECRET_ACCESS_KEY="$S3_SECRET_KEY"
done
for ((i = 0; i < replicas; i++)); do
  start post-service "$i" $((8080 + 100 * i)) \
    POST_APPLICATION__PORT=$((8080 + 100 * i)) \
    POST_DATABASE__URL="$pg/posts" POST_AMQP__URL="$amqp" \
    POST_AUTH__JWT_SECRET="$DEV_JWT_SECRET"
done

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
    for log_file in "$run"/*.log; do tail -n 10 "$log_file" >&2; done
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
