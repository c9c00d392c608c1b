#!/usr/bin/env bash
# Runs each daemon fuzz target for SECONDS (default 60): the import parsers
# and the enrolment decoders. Needs cargo-fuzz (`cargo install cargo-fuzz`);
# builds without a sanitizer (safe Rust; debug assertions on), which works
# on a stable toolchain with RUSTC_BOOTSTRAP=1. A crash is kept under
# daemon/fuzz/artifacts/<target>/; new inputs under corpus/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
export RUSTC_BOOTSTRAP=1
for t in import_parse enrol_decode; do
    mkdir -p "corpus/$t"
    # The import fixtures are good starting points, prefixed with byte 13
    # (= Format::ALL.len(): "detect the format").
    if [ "$t" = import_parse ] && [ -z "$(ls -A "corpus/$t")" ]; then
        i=0
        for f in ../../tests/fixtures/import/*; do
            [ -f "$f" ] || continue
            { printf '\015'; cat "$f"; } > "corpus/$t/fixture-$i"
            i=$((i + 1))
        done
    fi
    cargo fuzz run --sanitizer none -a "$t" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048
done
