#!/usr/bin/env bash
# Runs this tree's bench scripts against two builds, interleaved (old,new
# then new,old each round) in one invocation, so load hits both alike; each
# side runs its own copy of the scripts against its own target/release.
#
#   OLD=/path/to/old-worktree NEW=/path/to/new-worktree ROUNDS=4 \
#     BENCHES="sync" BULK=import SYNC_RUNS=100 bash bench/compare.sh OUTDIR
#
# Both worktrees must have a release build (`cargo build --release`). The
# scripts are copied from this tree into each as bench/.cmp_*.sh (without
# their build step; the sync bench is told SKIP_BUILD=1). Each run's log is OUTDIR/BENCH-SIDE-ROUND/log.
set -uo pipefail
OUT=${1:?usage: bench/compare.sh OUTDIR}; ROUNDS=${ROUNDS:-3}
OLD=${OLD:?OLD worktree}; NEW=${NEW:?NEW worktree}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"
for root in "$OLD" "$NEW"; do
  for b in vault import; do
    sed '/cargo build --release --quiet/d' "$HERE/${b}_bench.sh" >"$root/bench/.cmp_$b.sh"
  done
  cp "$HERE/sync_bench.sh" "$root/bench/.cmp_sync.sh" # SKIP_BUILD=1 below
done
run() { # SIDE BENCH ROUND
  local side=$1 b=$2 r=$3 root o
  [[ $side == old ]] && root=$OLD || root=$NEW
  o=$OUT/$b-$side-$r; mkdir -p "$o"
  case $b in
    vault)  OUTDIR=$o RUNS=100 SKIP_PEERS=1 bash "$root/bench/.cmp_vault.sh" 2000 ;;
    sync)   OUTDIR=$o BULK=${BULK:-import} N=2000 RUNS=${SYNC_RUNS:-50} SKIP_SYNCTHING=1 SKIP_BUILD=1 bash "$root/bench/.cmp_sync.sh" ;;
    import) OUTDIR=$o RUNS=3 bash "$root/bench/.cmp_import.sh" 5000 ;;
  esac >"$o/log" 2>&1 || echo "FAILED: $b $side $r (see $o/log)"
  echo "$(date -u +%T) done $b $side round $r"
}
for r in $(seq 1 "$ROUNDS"); do
  if (( r % 2 )); then order="old new"; else order="new old"; fi
  for b in ${BENCHES:-vault sync import}; do
    for s in $order; do run "$s" "$b" "$r"; done
  done
done
echo "compare: logs in $OUT"
