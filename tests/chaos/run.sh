#!/usr/bin/env bash
# Coffer's chaos suite (issue 12): real cofferd daemons in network namespaces
# under partitions, loss, delay, bandwidth limits, kill -9, a full disk and a
# corrupted WAL page, driven through the coffer CLI; a checker judges the
# recorded history. docs/RELIABILITY.md says what it guarantees.
#
#   bash tests/chaos/run.sh --seed SEED --secs N --nodes K   # one run (K >= 5)
#   bash tests/chaos/run.sh --seed SEED --plan FILE          # replay a (shrunk) plan
#   bash tests/chaos/run.sh --crash-loop KILLS [--seed SEED] # kill -9 one writing daemon KILLS times
#
# Other flags: --keep (keep the work dir; a failing run always keeps it),
# --release (build and run release binaries), --shrink-secs S (time to spend
# shrinking a failing history by replays; default 900, 0: print the slice
# only), --mem-limit-mib M (RSS bound per daemon, default 256), --without
# KINDS (comma-separated operation or fault kinds to leave out of the plan,
# e.g. user_remove,revoke,wal_corrupt).
# Must run as root: it creates (and always removes) its own network
# namespaces, nftables tables in them and one tmpfs. Installs nftables with
# apt-get when `nft` is missing. Nothing leaves the machine: the namespaces
# have no uplink and every daemon gets --no-mdns.
set -euo pipefail
self="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$0")/../.."
root=$(pwd)

seed="" secs=120 nodes=5 keep=0 profile=debug shrink=900 plan="" crash=0 mem=256 without=""
while [ $# -gt 0 ]; do
  case "$1" in
    --seed) seed=$2; shift 2 ;;
    --secs) secs=$2; shift 2 ;;
    --nodes) nodes=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --release) profile=release; shift ;;
    --shrink-secs) shrink=$2; shift 2 ;;
    --plan) plan=$2; shift 2 ;;
    --crash-loop) crash=$2; shift 2 ;;
    --mem-limit-mib) mem=$2; shift 2 ;;
    --without) without=$2; shift 2 ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$self"; exit 0 ;;
    *) echo "chaos: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$seed" ] || seed=$(( $(od -An -N4 -tu4 /dev/urandom) % 1000000 ))

if [ "$(id -u)" != 0 ]; then
  echo "chaos: must run as root (it creates network namespaces)" >&2
  exit 2
fi
for tool in ip tc python3 sqlite3; do
  command -v "$tool" >/dev/null || { echo "chaos: $tool is missing" >&2; exit 2; }
done
if ! command -v nft >/dev/null; then
  echo "chaos: installing nftables (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nftables >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nftables >/dev/null; }
fi

echo "chaos: building cofferd and coffer ($profile)"
if [ "$profile" = release ]; then
  cargo build --release -q -p coffer-daemon -p coffer-cli
else
  cargo build -q -p coffer-daemon -p coffer-cli
fi

# One prefix per run: everything this run creates is named after it, and
# cleanup removes only what carries it.
prefix="cfc$(printf %x $$)"
work=$(mktemp -d /tmp/coffer-chaos.XXXXXX)
cleanup() {
  local rc=$?
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$prefix-" || true); do
    # The processes left in our namespaces are ours (daemons, the proxy).
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
  done
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$prefix-" || true); do
    ip netns del "$ns" 2>/dev/null || true
  done
  for m in $(awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/mounts); do umount -l "$m" 2>/dev/null || true; done
  # A failing run keeps its work dir (named on the run's first lines).
  if [ "$keep" != 1 ] && [ "$rc" = 0 ]; then
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The run uses its own copy of the binaries: a rebuild meanwhile cannot
# swap them under it.
bin_dir="$work/bin"
mkdir -p "$bin_dir"
cp "$root/target/$profile/cofferd" "$root/target/$profile/coffer" "$bin_dir/"

if [ "$crash" != 0 ]; then
  python3 tests/chaos/crash_loop.py --kills "$crash" --seed "$seed" --bin-dir "$bin_dir" --workdir "$work"
  exit $?
fi

args=(--seed "$seed" --secs "$secs" --nodes "$nodes" --bin-dir "$bin_dir" --workdir "$work"
      --prefix "$prefix" --shrink-secs "$shrink" --mem-limit-mib "$mem" --without "$without")
[ -n "$plan" ] && args+=(--plan "$plan")
python3 tests/chaos/harness.py "${args[@]}"
