#!/usr/bin/env bash
# Runs the native host's fuzz target for SECONDS (default 60). Needs
# cargo-fuzz (`cargo install cargo-fuzz`); no sanitizer, on a stable
# toolchain with RUSTC_BOOTSTRAP=1, like daemon/fuzz/run.sh.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
export RUSTC_BOOTSTRAP=1
mkdir -p corpus/native_message
printf '\x44\x00\x00\x00{"id":1,"method":"browser.find","params":{"origin":"https://a.com"}}' \
    > corpus/native_message/find
cargo fuzz run --sanitizer none -a native_message corpus/native_message -- \
    -max_total_time="$secs" -rss_limit_mb=1024
