# Shared by the scripts in deploy/local: paths, dev settings and small helpers.
# shellcheck shell=bash
LOCAL_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$LOCAL_DIR/../.." && pwd)"
CACHE="${POSTS_IMAGES_CACHE:-$HOME/.cache/posts-images}"
# shellcheck source=deploy/local/dev.env
. "$LOCAL_DIR/dev.env"
mkdir -p "$CACHE"

log() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for WHAT SECONDS COMMAND...: polls COMMAND every 0.2 s until it
# succeeds, or fails naming WHAT after SECONDS.
wait_for() {
  local what=$1 seconds=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    if ((SECONDS >= deadline)); then
      die "$what did not come up within ${seconds}s"
    fi
    sleep 0.2
  done
}

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    die "$* is missing; install it (as root: apt-get install -y $*)"
  fi
  if [ ! -f "$CACHE/apt-updated" ]; then
    apt-get update -qq && touch "$CACHE/apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

mark_started() { grep -qx "$1" "$CACHE/started-by-us" 2>/dev/null || echo "$1" >>"$CACHE/started-by-us"; }
