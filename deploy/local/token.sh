#!/usr/bin/env bash
# Prints a bearer token (HS256 JWT) for USER_ID, signed with the development
# key in deploy/local/dev.env (or $JWT_SECRET), valid for TTL seconds.
# Usage: [SCOPE="dlq:admin"] deploy/local/token.sh USER_ID [TTL_SECONDS]
set -euo pipefail
. "$(dirname "$0")/dev.env"

case "${1:-}" in ''|-h|--help) sed -n '2,4p' "$0"; exit 2 ;; esac
user=$1
ttl=${2:-3600}
scope=${SCOPE:-}
case "$user$scope" in *'"'*|*'\'*) echo "error: the user id and scope must not contain \" or \\" >&2; exit 2 ;; esac
secret=${JWT_SECRET:-$DEV_JWT_SECRET}

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
header=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
claims=$(printf '{"sub":"%s","iss":"%s","aud":"%s","exp":%d,"scope":"%s"}' \
  "$user" "$DEV_JWT_ISSUER" "$DEV_JWT_AUDIENCE" "$(($(date +%s) + ttl))" "$scope" | b64url)
signature=$(printf '%s.%s' "$header" "$claims" | openssl dgst -sha256 -hmac "$secret" -binary | b64url)
printf '%s.%s.%s\n' "$header" "$claims" "$signature"
