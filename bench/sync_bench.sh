#!/usr/bin/env bash
# Peer-to-peer sync benchmark (issue 4), two cofferd on loopback (static
# peers, --no-mdns: nothing leaves 127.0.0.1):
#  1. propagation latency: RUNS edits on A; for each, the time from A's own
#     item_changed event to B's item_changed ("synced") event, and from the
#     start of the `coffer edit` process on A; p50/p99.
#  2. initial sync of a folder of N items to a fresh device: from sharing
#     it to B's "caught up" event; sync-protocol bytes and TCP payload bytes
#     (ss) against the total size of the encrypted envelopes.
#  3. when syncthing is installed, ../shared/bench/syncthing_latency.sh in the
#     same run (its own OUTDIR subfolder), with the ratio of medians.
#
# Usage: bench/sync_bench.sh            Env: RUNS (100), N (10000),
#        PROFILE (release|debug, default release), OUTDIR, SKIP_SYNCTHING=1
# Needs: bash >= 5 (EPOCHREALTIME), jq, ss (iproute2).
# Kills only the daemons and subscribers it started (by pid).
set -euo pipefail
export LC_ALL=C TZ=UTC
RUNS=${RUNS:-100}
N=${N:-10000}
PROFILE=${PROFILE:-release}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared}
W=$(mktemp -d /tmp/cfsync.XXXXXX)
OUTDIR=${OUTDIR:-$W/out}
mkdir -p "$OUTDIR"
for tool in jq ss; do command -v $tool >/dev/null || { echo "needs $tool" >&2; exit 2; }; done
[[ -n ${EPOCHREALTIME:-} ]] || { echo "needs bash >= 5 (EPOCHREALTIME)" >&2; exit 2; }

if [[ $PROFILE == release ]]; then
  cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p coffer-daemon -p coffer-cli
else
  cargo build --quiet --manifest-path "$ROOT/Cargo.toml" -p coffer-daemon -p coffer-cli
fi
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE
C=$BIN/coffer
D=$BIN/cofferd
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"/a "$W"/b
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PA=$(free_port); PB=$(free_port)

start() { # NAME PORT [PEER_PORT]
  local n=$1 port=$2 peer=${3:-}
  mkdir -p "$W/$n"
  local args=(--data-dir "$W/$n/data" --socket "$W/$n/run/sock" --config "$W/$n/none.toml"
    --kdf-memory-kib 256 --kdf-iterations 1 --no-mdns --listen "/ip4/127.0.0.1/tcp/$port")
  [[ -n $peer ]] && args+=(--peer "/ip4/127.0.0.1/tcp/$peer")
  "$D" "${args[@]}" >"$W/$n/cofferd.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 500); do cf "$n" status >/dev/null 2>&1 && return; sleep 0.01; done
  echo "cofferd $n did not start" >&2; exit 1
}
cf() { local n=$1; shift; COFFER_SOCKET="$W/$n/run/sock" COFFER_NO_AUTOSTART=1 "$C" "$@"; }
events() { # NAME FILE: timestamped event lines
  local n=$1 f=$2
  ( cf "$n" events --json | while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done >"$f" ) &
  PIDS+=($!)
  sleep 0.3
}
wait_for() { # FILE PATTERN COUNT TIMEOUT_S
  local f=$1 pat=$2 want=$3 t=$4 end=$((SECONDS + t))
  while (( $(grep -c -- "$pat" "$f" 2>/dev/null || true) < want )); do
    (( SECONDS < end )) || { echo "timed out waiting for $want x $pat in $f" >&2; exit 1; }
    sleep 0.01
  done
}
pct() { # FILE(one number a line, ms) P
  sort -g "$1" | awk -v p="$2" '{a[NR]=$1} END{i=int((NR*p/100)+0.999); if(i<1)i=1; printf "%.2f", a[i]}'
}

echo "coffer sync bench: RUNS=$RUNS N=$N profile=$PROFILE, $(nproc) cores, workdir $W"
start a "$PA"
start b "$PB" "$PA"
echo 2468 | cf a init --name A --email a@example.invalid --pin-stdin >/dev/null
echo 2468 | cf b init --name B --email b@example.invalid --pin-stdin >/dev/null
KA=$(cf a device id --json | jq -r .pairing_key)
KB=$(cf b device id --json | jq -r .pairing_key)
cf a folder create Team >/dev/null
cf b device trust "$KA" >/dev/null
cf a device trust "$KB" --share Team >/dev/null
for _ in $(seq 1 1000); do cf b folder ls --json | jq -e 'any(.[]; .name=="Team")' >/dev/null && break; sleep 0.01; done
echo probe-secret | cf a add login Probe --folder Team >/dev/null
for _ in $(seq 1 1000); do cf b get Team/Probe >/dev/null 2>&1 && break; sleep 0.01; done

# 1. Propagation latency.
events a "$W/ev_a.log"
events b "$W/ev_b.log"
: >"$W/starts"
for i in $(seq 1 "$RUNS"); do
  echo "$EPOCHREALTIME" >>"$W/starts"
  cf a edit Team/Probe --username "u$i" >/dev/null
  wait_for "$W/ev_b.log" '"action":"synced"' "$i" 10
done
grep '"action":"edited"' "$W/ev_a.log" | awk '{print $1}' >"$W/ta"
grep '"action":"synced"' "$W/ev_b.log" | awk '{print $1}' >"$W/tb"
paste "$W/ta" "$W/tb" | awk '{printf "%.3f\n", ($2-$1)*1000}' >"$OUTDIR/latency_event_ms.txt"
paste "$W/starts" "$W/tb" | awk '{printf "%.3f\n", ($2-$1)*1000}' >"$OUTDIR/latency_cmd_ms.txt"
P50=$(pct "$OUTDIR/latency_event_ms.txt" 50); P99=$(pct "$OUTDIR/latency_event_ms.txt" 99)
C50=$(pct "$OUTDIR/latency_cmd_ms.txt" 50); C99=$(pct "$OUTDIR/latency_cmd_ms.txt" 99)
echo "propagation (A's event -> B's event), $RUNS runs: p50 ${P50} ms, p99 ${P99} ms"
echo "propagation (start of 'coffer edit' on A -> B's event): p50 ${C50} ms, p99 ${C99} ms"

# 2. Initial sync of N items to a fresh device C.
python3 - "$N" >"$W/bulk.csv" <<'PY'
import sys
n = int(sys.argv[1])
print("name,url,username,password,note")
for i in range(n):
    print(f"svc{i:05},https://svc{i:05}.example,user{i},pw-{i:05}-0123456789abcdef,")
PY
cf a folder create Bulk >/dev/null
t_imp=$EPOCHREALTIME
cf a import "$W/bulk.csv" --folder Bulk >/dev/null
echo "import of $N items on A: $(awk -v a="$t_imp" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.2f", b-a}') s"
PC=$(free_port)
start c "$PC" "$PA"
echo 2468 | cf c init --name C --email c@example.invalid --pin-stdin >/dev/null
KC=$(cf c device id --json | jq -r .pairing_key)
cf c device trust "$KA" >/dev/null
cf a device trust "$KC" >/dev/null
for _ in $(seq 1 1000); do cf c peers --json | jq -e 'any(.peers[]; .connected)' >/dev/null && break; sleep 0.01; done
BULK=$(cf a folder ls --json | jq -r '.[] | select(.name=="Bulk") | .id')
SENT0=$(cf a peers --json | jq --arg k "${KC#coffer1:}" '.peers[] | select(.device_id==($k|split(":")[0])) | .bytes_sent')
events c "$W/ev_c.log"
# TCP payload A has sent on its accepted connections (B's and C's), before.
tcp_sent() { ss -tinH state established "( sport = :$PA )" | grep -o 'bytes_sent:[0-9]*' | cut -d: -f2 | awk '{s+=$1} END{print s+0}'; }
tcp_sent >"$W/tcp0"
t0=$EPOCHREALTIME
cf a device trust "$KC" --share Bulk >/dev/null
wait_for "$W/ev_c.log" "\"folder_id\":\"$BULK\",\"received\":0,\"caught_up\":true" 1 120
t1=$(grep "\"folder_id\":\"$BULK\",\"received\":0,\"caught_up\":true" "$W/ev_c.log" | head -1 | awk '{print $1}')
tcp_sent >"$W/tcp1"
SYNC_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')
ITEMS_C=$(cf c ls --folder Bulk --json | jq length)
SENT1=$(cf a peers --json | jq --arg k "${KC#coffer1:}" '.peers[] | select(.device_id==($k|split(":")[0])) | .bytes_sent')
ENV_BYTES=$(cf a sync status --json | jq --arg id "$BULK" '.spaces[] | select(.folder_id==$id) | .envelope_bytes')
PROTO=$((SENT1 - SENT0))
TCP=$(( $(cat "$W/tcp1") - $(cat "$W/tcp0") ))
echo "initial sync of $N items to a fresh device: ${SYNC_S} s (C shows $ITEMS_C items)"
echo "  envelopes total ${ENV_BYTES} B; sync frames ${PROTO} B ($(awk -v a="$PROTO" -v b="$ENV_BYTES" 'BEGIN{printf "%.3f", a/b}')x); TCP payload ${TCP} B ($(awk -v a="$TCP" -v b="$ENV_BYTES" 'BEGIN{printf "%.3f", a/b}')x)"

{
  printf 'metric\tvalue\n'
  printf 'runs\t%s\n' "$RUNS"
  printf 'latency_event_p50_ms\t%s\nlatency_event_p99_ms\t%s\n' "$P50" "$P99"
  printf 'latency_cmd_p50_ms\t%s\nlatency_cmd_p99_ms\t%s\n' "$C50" "$C99"
  printf 'initial_sync_items\t%s\ninitial_sync_s\t%s\n' "$N" "$SYNC_S"
  printf 'envelope_bytes\t%s\nsync_frame_bytes\t%s\ntcp_payload_bytes\t%s\n' "$ENV_BYTES" "$PROTO" "$TCP"
} >"$OUTDIR/coffer_sync.tsv"

# 3. Syncthing, same machine, same run.
if [[ -z ${SKIP_SYNCTHING:-} ]] && command -v syncthing >/dev/null && [[ -x $SHARED/bench/syncthing_latency.sh || -f $SHARED/bench/syncthing_latency.sh ]]; then
  echo "syncthing: running $SHARED/bench/syncthing_latency.sh (OUTDIR=$OUTDIR/syncthing)"
  OUTDIR="$OUTDIR/syncthing" SAMPLES=${ST_SAMPLES:-20} DELAYS=${ST_DELAYS:-1} BATCH=0 \
    bash "$SHARED/bench/syncthing_latency.sh" || echo "syncthing benchmark failed" >&2
  if [[ -f $OUTDIR/syncthing/syncthing.tsv ]]; then
    cat "$OUTDIR/syncthing/syncthing.tsv"
    ST50=$(awk -F'\t' 'NR>1 && $0 ~ /median|p50/ {for(i=1;i<=NF;i++) if($i ~ /^[0-9.]+$/){print $i; exit}}' "$OUTDIR/syncthing/syncthing.tsv" || true)
    [[ -n ${ST50:-} ]] && echo "ratio syncthing/coffer (p50): $(awk -v s="$ST50" -v c="$P50" 'BEGIN{printf "%.1f", s/c}')"
  fi
else
  echo "syncthing: not installed (or SKIP_SYNCTHING set): skipped"
fi
echo "results in $OUTDIR"
