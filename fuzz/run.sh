#!/usr/bin/env bash
# Fuzzes every target for N seconds each (default 20; first argument or
# FUZZ_SECONDS). Installs cargo-fuzz if missing. cargo-fuzz passes nightly
# flags (-Zsanitizer=address); on a stable toolchain RUSTC_BOOTSTRAP=1
# unlocks them. A crash exits non-zero and leaves the input under
# fuzz/artifacts/<target>/.
#
# Longer runs: `bash fuzz/run.sh 3600`, or one target by hand:
#   cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run envelope_decode -- -max_total_time=3600 -jobs=2
set -euo pipefail
secs="${1:-${FUZZ_SECONDS:-20}}"
cd "$(dirname "$0")"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
for target in envelope_decode membership_decode; do
    echo "fuzzing $target for ${secs}s"
    cargo fuzz run "$target" -- -max_total_time="$secs" -rss_limit_mb=2048
done
