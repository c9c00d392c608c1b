#!/usr/bin/env bash
# Single-device vault benchmark (issue 2): with N items in the vault, the
# median wall time of one whole `coffer get ITEM --field password` process
# (spawn + IPC + decrypt) and of `coffer totp ITEM`, cofferd's RSS, and the
# time to add N items one CLI process each. In the same run, when installed,
# `pass show` and `keepassxc-cli show` through ../shared/bench, with ratios.
#
# Usage: bench/vault_bench.sh [N]       (default 10000)
# Env:   RUNS (hyperfine runs, default 200), PEER_N (store size for the peer
#        scripts, default 1000), OUTDIR (default: a temp dir), SKIP_PEERS=1
# Needs: hyperfine, jq (apt-get install -y hyperfine jq); the peers need
#        pass gnupg keepassxc oathtool python3-pykeepass.
# Talks only to its own Unix socket; kills only the daemon it started.
set -euo pipefail
export LC_ALL=C TZ=UTC
N=${1:-10000}
RUNS=${RUNS:-200}
PEER_N=${PEER_N:-1000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared}
W=$(mktemp -d /tmp/cfbench.XXXXXX)
OUTDIR=${OUTDIR:-$W/out}
mkdir -p "$OUTDIR"
for tool in hyperfine jq; do command -v $tool >/dev/null || { echo "needs $tool (apt-get install -y $tool)" >&2; exit 2; }; done

cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
C=$ROOT/target/release/coffer
D=$ROOT/target/release/cofferd
export COFFER_DATA_DIR=$W/data COFFER_SOCKET=$W/run/cofferd.sock COFFER_NO_AUTOSTART=1
# No peer-to-peer networking in this single-device benchmark.
export COFFER_NO_NETWORK=1
DPID=
cleanup() { [[ -n $DPID ]] && kill "$DPID" 2>/dev/null; wait 2>/dev/null; rm -rf "$W/data" "$W/run"; }
trap cleanup EXIT
start_daemon() {
  "$D" >"$W/cofferd.log" 2>&1 &
  DPID=$!
  for _ in $(seq 1 500); do "$C" status >/dev/null 2>&1 && return; sleep 0.01; done
  echo "cofferd did not start" >&2; exit 1
}
now_ns() { date +%s%N; }
rss_kib() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }
TSV=$OUTDIR/coffer.tsv
printf 'operation\tmedian_ms\tmin_ms\tmax_ms\truns\tnotes\n' >"$TSV"
row() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$TSV"; printf '  %-34s median=%s min=%s max=%s (n=%s) %s\n' "$@"; }
hf() { # NAME NOTES CMD...
  local name=$1 notes=$2; shift 2
  hyperfine -N --style none --warmup 10 --runs "$RUNS" --export-json "$OUTDIR/$name.json" "$@" >/dev/null
  row "$name" "$(jq -r '.results[0].median*1000|.*100|round/100' "$OUTDIR/$name.json")" \
    "$(jq -r '.results[0].min*1000|.*100|round/100' "$OUTDIR/$name.json")" \
    "$(jq -r '.results[0].max*1000|.*100|round/100' "$OUTDIR/$name.json")" "$RUNS" "$notes"
}

echo "coffer $("$C" --version | awk '{print $2}'), N=$N, $(nproc) cores, workdir $W"
start_daemon
echo 246813 | "$C" init --name Bench --email bench@example.invalid --pin-stdin >/dev/null
RSS0=$(rss_kib "$DPID")

t0=$(now_ns)
for i in $(seq 1 "$N"); do
  id=$(printf '%05d' "$i")
  printf 'secret-%s-xyz\n' "$id" | "$C" add login "svc$id" --username "user$id" --url "https://svc$id.example" >/dev/null
done
ms=$(( ($(now_ns) - t0) / 1000000 ))
row "add_${N}_one_process_each" "$ms" - - 1 "total wall ms; $(awk "BEGIN{printf \"%.2f\", $ms/$N}") ms/item; each = spawn + IPC + Automerge change + sign + encrypt + fsynced SQLite commit"
TI=$(printf '%05d' $(( N * 777 / 1000 )))
echo "JBSWY3DPEHPK3PXP" | "$C" totp set "svc$TI" >/dev/null
[[ $("$C" get "svc$TI" --field password) == "secret-$TI-xyz" ]] || { echo "wrong password read back" >&2; exit 1; }
RSS1=$(rss_kib "$DPID")
# The daemon's idle upkeep (after 5 s: snapshots, heap trim).
sleep 7; RSS1I=$(rss_kib "$DPID")

hf coffer_version "process start only: coffer --version (no IPC)" "$C --version"
hf coffer_get "coffer get svc$TI --field password ($N items)" "$C get svc$TI --field password"
hf coffer_totp "coffer totp svc$TI ($N items)" "$C totp svc$TI"
hf coffer_ls "coffer ls --json ($N items)" "$C ls --json"

# Steady state after a restart: unlock rebuilds every folder from its envelopes.
kill "$DPID"; wait "$DPID" 2>/dev/null || true
start_daemon
RSSL=$(rss_kib "$DPID")
t0=$(now_ns); echo 246813 | "$C" unlock --pin-stdin >/dev/null; ms=$(( ($(now_ns) - t0) / 1000000 ))
row "unlock_after_restart" "$ms" - - 1 "Argon2id 64 MiB x3 + open device/folder keys + each folder from its snapshot (taken at shutdown) or rebuilt from envelopes"
RSS2=$(rss_kib "$DPID")
sleep 7; RSS2I=$(rss_kib "$DPID")
row "cofferd_rss_kib" "$RSS1" - - 1 "after init: ${RSS0} KiB; after adding $N items: ${RSS1} KiB (${RSS1I} after 7 s idle); restarted, locked: ${RSSL} KiB; after restart + unlock: ${RSS2} KiB (${RSS2I} after 7 s idle)"
DB=$(stat -c %s "$W/data/vault.sqlite3")
row "store_bytes" "$DB" - - 1 "vault.sqlite3 with $N items (WAL checkpointed at close)"

if [[ -z ${SKIP_PEERS:-} && -d $SHARED/bench ]]; then
  if command -v pass >/dev/null && command -v gpg >/dev/null; then
    KEYTYPES=ed25519 RUNS=50 OUTDIR=$OUTDIR bash "$SHARED/bench/pass_bench.sh" "$PEER_N" >"$OUTDIR/pass.log" 2>&1 || echo "pass bench failed: see $OUTDIR/pass.log"
  fi
  if command -v keepassxc-cli >/dev/null; then
    RUNS=30 OUTDIR=$OUTDIR bash "$SHARED/bench/keepassxc_bench.sh" "$PEER_N" >"$OUTDIR/kpx.log" 2>&1 || echo "keepassxc bench failed: see $OUTDIR/kpx.log"
  fi
fi

med() { awk -F'\t' -v op="$2" '$1==op{print $2}' "$1" 2>/dev/null; }
GET=$(med "$TSV" coffer_get); TOTP=$(med "$TSV" coffer_totp)
echo
echo "summary (median ms; ratio = peer / coffer):"
printf '  %-44s %8s\n' "coffer get --field password" "$GET" "coffer totp" "$TOTP"
if [[ -f $OUTDIR/pass.tsv ]]; then
  P=$(med "$OUTDIR/pass.tsv" pass_show_ed25519)
  printf '  %-44s %8s   ratio %s\n' "pass show (gpg ed25519, $PEER_N entries)" "$P" "$(awk "BEGIN{printf \"%.1fx\", $P/$GET}")"
fi
if [[ -f $OUTDIR/keepassxc.tsv ]]; then
  K=$(med "$OUTDIR/keepassxc.tsv" show_s_default); KT=$(med "$OUTDIR/keepassxc.tsv" show_totp_default)
  printf '  %-44s %8s   ratio %s\n' "keepassxc-cli show ($PEER_N entries)" "$K" "$(awk "BEGIN{printf \"%.1fx\", $K/$GET}")"
  printf '  %-44s %8s   ratio %s\n' "keepassxc-cli show --totp" "$KT" "$(awk "BEGIN{printf \"%.1fx\", $KT/$TOTP}")"
fi
echo "rows: $TSV"
