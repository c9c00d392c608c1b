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
#        BULK (import: the N items come from one import, a few large
#        changes; edits: N separate item.add calls, N envelopes),
#        PROFILE (release|debug, default release), OUTDIR, SKIP_SYNCTHING=1,
#        SKIP_BUILD=1 (use the binaries already built)
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

if [[ -n ${SKIP_BUILD:-} ]]; then
  :
elif [[ $PROFILE == release ]]; then
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
  rm -rf "$W"/a "$W"/b "$W"/c "$W"/d
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
  local f=$1 pat=$2 want=$3 t=$4
  local end=$((SECONDS + t))
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
echo 246813 | cf a init --name A --email a@example.invalid --pin-stdin >/dev/null
echo 246813 | cf b init --name B --email b@example.invalid --pin-stdin >/dev/null
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
if [[ ${BULK:-import} == edits ]]; then
  # One item.add request per item over one socket connection: N separate
  # changes, N envelopes (the worst case for the initial sync).
  python3 "$ROOT/bench/fill_edits.py" "$N" "$W/a/run/sock" Bulk 5
  echo "added $N items one by one on A: $(awk -v a="$t_imp" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.2f", b-a}') s"
else
  cf a import "$W/bulk.csv" --folder Bulk >/dev/null
  echo "import of $N items on A: $(awk -v a="$t_imp" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.2f", b-a}') s"
fi
BULK=$(cf a folder ls --json | jq -r '.[] | select(.name=="Bulk") | .id')
ENV_BYTES=$(cf a sync status --json | jq --arg id "$BULK" '.spaces[] | select(.folder_id==$id) | .envelope_bytes')
tcp_sent() { ss -tinH state established "( sport = :$PA )" | grep -o 'bytes_sent:[0-9]*' | cut -d: -f2 | awk '{s+=$1} END{print s+0}'; }
sent_to() { cf a peers --json | jq --arg d "$1" '.peers[] | select(.device_id==$d) | .bytes_sent'; }
initial_sync() { # NAME locked|unlocked -> sets SYNC_S PROTO TCP ITEMS
  local n=$1 mode=$2 port key dev t0 t1 s0 s1 c0 c1
  port=$(free_port)
  start "$n" "$port" "$PA"
  echo 246813 | cf "$n" init --name "$n" --email "$n@example.invalid" --pin-stdin >/dev/null
  key=$(cf "$n" device id --json | jq -r .pairing_key)
  dev=$(cf "$n" device id --json | jq -r .device_id)
  cf "$n" device trust "$KA" >/dev/null
  cf a device trust "$key" >/dev/null
  for _ in $(seq 1 1000); do cf "$n" peers --json | jq -e 'any(.peers[]; .connected)' >/dev/null && break; sleep 0.01; done
  events "$n" "$W/ev_$n.log"
  [[ $mode == locked ]] && cf "$n" lock >/dev/null
  s0=$(sent_to "$dev"); c0=$(tcp_sent)
  t0=$EPOCHREALTIME
  cf a device trust "$key" --share Bulk >/dev/null
  wait_for "$W/ev_$n.log" "\"folder_id\":\"$BULK\",\"received\":0,\"caught_up\":true" 1 300
  t1=$(grep "\"folder_id\":\"$BULK\",\"received\":0,\"caught_up\":true" "$W/ev_$n.log" | head -1 | awk '{print $1}')
  s1=$(sent_to "$dev"); c1=$(tcp_sent)
  ENV_BYTES=$(cf a sync status --json | jq --arg id "$BULK" '.spaces[] | select(.folder_id==$id) | .envelope_bytes')
  SYNC_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')
  PROTO=$((s1 - s0)); TCP=$((c1 - c0))
  if [[ $mode == locked ]]; then
    local u0=$EPOCHREALTIME
    echo 246813 | cf "$n" unlock --pin-stdin >/dev/null
    UNLOCK_S=$(awk -v a="$u0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.3f", b-a}')
  fi
  ITEMS=$(cf "$n" ls --folder Bulk --json | jq length)
}
initial_sync c locked
L_SYNC=$SYNC_S L_PROTO=$PROTO L_TCP=$TCP L_ITEMS=$ITEMS L_UNLOCK=$UNLOCK_S L_ENV=$ENV_BYTES
initial_sync d unlocked
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", a/b}'; }
echo "initial sync of $N items, envelopes total ${ENV_BYTES} B:"
echo "  to a locked fresh device (transfer + validation + durable store): ${L_SYNC} s;" \
  "frames ${L_PROTO} B ($(ratio "$L_PROTO" "$L_ENV")x), TCP payload ${L_TCP} B ($(ratio "$L_TCP" "$L_ENV")x); then unlock ${L_UNLOCK} s, $L_ITEMS items"
echo "  to an unlocked fresh device (until every item is readable): ${SYNC_S} s;" \
  "frames ${PROTO} B ($(ratio "$PROTO" "$ENV_BYTES")x), TCP payload ${TCP} B ($(ratio "$TCP" "$ENV_BYTES")x); $ITEMS items"

{
  printf 'metric\tvalue\n'
  printf 'runs\t%s\n' "$RUNS"
  printf 'latency_event_p50_ms\t%s\nlatency_event_p99_ms\t%s\n' "$P50" "$P99"
  printf 'latency_cmd_p50_ms\t%s\nlatency_cmd_p99_ms\t%s\n' "$C50" "$C99"
  printf 'initial_sync_items\t%s\nenvelope_bytes\t%s\n' "$N" "$ENV_BYTES"
  printf 'initial_sync_locked_s\t%s\nlocked_frame_bytes\t%s\nlocked_tcp_bytes\t%s\nunlock_after_s\t%s\n' "$L_SYNC" "$L_PROTO" "$L_TCP" "$L_UNLOCK"
  printf 'initial_sync_unlocked_s\t%s\nunlocked_frame_bytes\t%s\nunlocked_tcp_bytes\t%s\n' "$SYNC_S" "$PROTO" "$TCP"
} >"$OUTDIR/coffer_sync.tsv"

# 3. Syncthing, same machine, same run.
if [[ -z ${SKIP_SYNCTHING:-} ]] && command -v syncthing >/dev/null && [[ -x $SHARED/bench/syncthing_latency.sh || -f $SHARED/bench/syncthing_latency.sh ]]; then
  echo "syncthing: running $SHARED/bench/syncthing_latency.sh (OUTDIR=$OUTDIR/syncthing)"
  OUTDIR="$OUTDIR/syncthing" SAMPLES=${ST_SAMPLES:-20} DELAYS=${ST_DELAYS:-1} BATCH=0 \
    bash "$SHARED/bench/syncthing_latency.sh" || echo "syncthing benchmark failed" >&2
  if [[ -f $OUTDIR/syncthing/syncthing.tsv ]]; then
    cat "$OUTDIR/syncthing/syncthing.tsv"
    ST50=$(awk -F'\t' '$1 ~ /^single_file_.*_delay1s$/ {print $2; exit}' "$OUTDIR/syncthing/syncthing.tsv" || true)
    if [[ -n ${ST50:-} ]]; then
      echo "syncthing single small file, fsWatcherDelayS=1: median ${ST50} ms; coffer edit->event p50 ${P50} ms, command->event p50 ${C50} ms"
      echo "ratio syncthing/coffer: $(awk -v s="$ST50" -v c="$P50" 'BEGIN{printf "%.0f", s/c}')x (event to event), $(awk -v s="$ST50" -v c="$C50" 'BEGIN{printf "%.0f", s/c}')x (from the command)"
      printf 'syncthing_single_file_delay1s_median_ms\t%s\n' "$ST50" >>"$OUTDIR/coffer_sync.tsv"
    fi
  fi
else
  echo "syncthing: not installed (or SKIP_SYNCTHING set): skipped"
fi
echo "results in $OUTDIR"
