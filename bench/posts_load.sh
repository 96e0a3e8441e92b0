#!/usr/bin/env bash
# POST /v1/posts under load against a stack started by deploy/local/up.sh:
# wrk with CONNECTIONS concurrent clients (default 200) for SECONDS (default
# 20), each request creating a post that names one already-uploaded image.
# Prints wrk's latency distribution and requests/s; wrk adds a line for
# non-2xx answers and socket errors when there are any. Installs wrk (Debian
# package) when missing.
# Usage: bench/posts_load.sh [CONNECTIONS] [SECONDS]
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,8p' "$0"; exit 0 ;; esac
. "$(dirname "$0")/../deploy/local/common.sh"
connections=${1:-200}
seconds=${2:-20}
command -v wrk >/dev/null || apt_install wrk
token=$("$LOCAL_DIR/token.sh" load-user)
photo="$REPO_ROOT/../shared/corpus/photos/Bridge_by_Sander_Klootwijk.jpg"
image=$(curl -fsS -X POST -H "Authorization: Bearer $token" \
  -H 'content-type: application/octet-stream' --data-binary @"$photo" \
  http://127.0.0.1:8081/v1/uploads | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
script=$(mktemp --suffix=.lua)
trap 'rm -f "$script"' EXIT
cat >"$script" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
wrk.body = '{"title": "load", "body": "", "image_ids": ["$image"]}'
EOF
threads=$(( $(nproc) < connections ? $(nproc) : connections ))
wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency -s "$script" http://127.0.0.1:8080/v1/posts
