#!/usr/bin/env bash
# Fuzzes the upload path (sniff, header check, decode, variant) with
# libFuzzer through cargo fuzz, seeded from ../shared/corpus/odd (or
# $CORPUS_DIR/odd). Usage: fuzz/run.sh [SECONDS]   (default 600)
# Findings land in fuzz/artifacts/decode/; the grown corpus in
# ~/.cache/posts-images/fuzz-corpus (kept between runs, never committed).
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,6p' "$0"; exit 0 ;; esac
cd "$(dirname "$0")"
seconds="${1:-600}"
cache="$HOME/.cache/posts-images"
odd="${CORPUS_DIR:-$(cd .. && pwd)/../shared/corpus}/odd"
corpus="$cache/fuzz-corpus"
mkdir -p "$corpus"
[ -d "$odd" ] && find "$odd" -maxdepth 1 -type f ! -name '*.tsv' ! -name '*.md' -exec cp -n {} "$corpus/" \;
cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked
# cargo fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain
# accept them. No sanitizer: the Rust code is memory-safe and the C codecs
# (libwebp, libheif) are not instrumented anyway; panics, hangs and memory
# blow-ups are what is looked for.
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="$cache/fuzz-target"
exec cargo fuzz run --sanitizer none decode "$corpus" -- \
  -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len=1048576
