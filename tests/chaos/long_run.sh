#!/usr/bin/env bash
# A long chaos run by hand (docs/RELIABILITY.md, "Long runs"): runs
# tests/chaos/run.sh once per seed, one at a time (the machine's cores are
# shared), and appends each run's final line to a summary file.
#
#   sudo bash tests/chaos/long_run.sh --seeds "101 102 103" --secs 300 [--out DIR] [-- RUN.SH FLAGS...]
#
# e.g. `-- --without group_remove,user_remove,revoke`. Each run's full output
# goes to DIR/seed-N.log (default DIR: /tmp/coffer-chaos-long); failing runs
# keep their work dirs as usual.
set -uo pipefail
cd "$(dirname "$0")/../.."
seeds="" secs=300 out=/tmp/coffer-chaos-long
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds) seeds=$2; shift 2 ;;
    --secs) secs=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "long_run: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$seeds" ] || { echo "long_run: --seeds \"S1 S2 ...\" is required" >&2; exit 2; }
mkdir -p "$out"
failed=0
for s in $seeds; do
  start=$(date +%s)
  bash tests/chaos/run.sh --seed "$s" --secs "$secs" --nodes 5 --shrink-secs 0 "$@" > "$out/seed-$s.log" 2>&1
  rc=$?
  [ "$rc" = 0 ] || failed=$((failed + 1))
  echo "$(tail -1 "$out/seed-$s.log")  ($(( $(date +%s) - start )) s, exit $rc)" | tee -a "$out/summary.txt"
done
echo "long_run: $failed of $(echo $seeds | wc -w) runs failed; summary: $out/summary.txt"
[ "$failed" = 0 ]
