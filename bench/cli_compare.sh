#!/usr/bin/env bash
# `coffer --version`, `coffer get` and `coffer totp` of two builds against
# their own daemons, interleaved in short batches in one invocation, so
# that load and CPU frequency drift hit both alike: prints each command's
# median per build and the median of the per-batch ratios new/old.
#
#   OLD=/path/to/old-worktree NEW=/path/to/new-worktree N=2000 BATCHES=20 RUNS=30 \
#     bash bench/cli_compare.sh [OUTDIR]
#
# Both worktrees need a release build. Each daemon runs with its own data
# dir and socket, no network; only the daemons started here are killed.
set -euo pipefail
export LC_ALL=C TZ=UTC
OLD=${OLD:?OLD worktree}; NEW=${NEW:?NEW worktree}
N=${N:-2000}; BATCHES=${BATCHES:-20}; RUNS=${RUNS:-30}
W=$(mktemp -d /tmp/clicmp.XXXXXX)
TI=$(printf %05d $(( N * 777 / 1000 )))
OUT=${1:-$W/out}; mkdir -p "$OUT"
for tool in hyperfine jq; do command -v $tool >/dev/null || { echo "needs $tool" >&2; exit 2; }; done
# setup runs in background subshells: each daemon's pid goes to a file.
cleanup() {
  for f in "$W"/old/pid "$W"/new/pid; do [[ -f $f ]] && kill "$(cat "$f")" 2>/dev/null; done
  wait 2>/dev/null; rm -rf "$W"/old "$W"/new
}
trap cleanup EXIT
setup() { # SIDE ROOT: a daemon with N items and one TOTP
  local side=$1 root=$2 c=$2/target/release/coffer
  mkdir -p "$W/$side"
  env COFFER_DATA_DIR=$W/$side/data COFFER_SOCKET=$W/$side/sock COFFER_NO_NETWORK=1 \
    "$root/target/release/cofferd" >"$W/$side.log" 2>&1 &
  echo $! >"$W/$side/pid"
  export COFFER_DATA_DIR=$W/$side/data COFFER_SOCKET=$W/$side/sock COFFER_NO_AUTOSTART=1
  for _ in $(seq 1 500); do "$c" status >/dev/null 2>&1 && break; sleep 0.01; done
  echo 246813 | "$c" init --name Bench --email bench@example.invalid --pin-stdin >/dev/null
  for i in $(seq 1 "$N"); do
    printf 'secret-%05d\n' "$i" | "$c" add login "svc$(printf %05d "$i")" --username u >/dev/null
  done
  echo JBSWY3DPEHPK3PXP | "$c" totp set svc$TI >/dev/null
}
setup old "$OLD" & setup new "$NEW" & wait
echo "cli_compare: daemons ready, timing"
cmd() { # SIDE NAME -> the command line (run with that side's socket in the environment)
  local c; [[ $1 == old ]] && c=$OLD/target/release/coffer || c=$NEW/target/release/coffer
  case $2 in
    version) echo "$c --version" ;;
    get) echo "$c get svc$TI --field password" ;;
    totp) echo "$c totp svc$TI" ;;
  esac
}
: >"$OUT/batches.tsv"
for b in $(seq 1 "$BATCHES"); do
  if (( b % 2 )); then order="old new"; else order="new old"; fi
  for name in version get totp; do
    for side in $order; do
      COFFER_SOCKET=$W/$side/sock COFFER_NO_AUTOSTART=1 hyperfine -N --style none --warmup 3 \
        --runs "$RUNS" --export-json "$W/r.json" "$(cmd "$side" "$name")" >/dev/null 2>&1
      printf '%s\t%s\t%s\t%s\n' "$b" "$name" "$side" "$(jq -r '.results[0].median*1000' "$W/r.json")" >>"$OUT/batches.tsv"
    done
  done
done
python3 - "$OUT/batches.tsv" <<'PY'
import sys, statistics
rows = [l.split('\t') for l in open(sys.argv[1]).read().split('\n') if l]
by = {}
for b, name, side, ms in rows:
    by.setdefault(name, {}).setdefault(b, {})[side] = float(ms)
print(f"{'command':10s} {'old ms':>8s} {'new ms':>8s} {'new/old':>8s}  (per-batch ratios: median, quartiles)")
for name, batches in by.items():
    old = [v['old'] for v in batches.values()]
    new = [v['new'] for v in batches.values()]
    r = sorted(v['new'] / v['old'] for v in batches.values())
    q = statistics.quantiles(r, n=4)
    print(f"{name:10s} {statistics.median(old):8.3f} {statistics.median(new):8.3f} {statistics.median(r):8.3f}  ({q[0]:.3f}-{q[2]:.3f})")
PY
echo "cli_compare: per-batch medians in $OUT/batches.tsv"
