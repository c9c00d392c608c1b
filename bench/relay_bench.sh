#!/usr/bin/env bash
# The relay (issue 16): latency of an edit between two laptops on the LAN
# (a direct connection) and through a relay (a circuit, hole punching off),
# with real cofferd processes on loopback (--no-mdns: nothing leaves
# 127.0.0.1). For each of RUNS edits on A, the time from the start of the
# `coffer add` process on A to B's item_changed ("synced") event; p50/p99.
# Then the relay daemon's RSS and CPU time.
#
# Usage: bench/relay_bench.sh     Env: RUNS (50), PROFILE (release|debug,
#        default release), SKIP_BUILD=1, OUTDIR
# Needs: bash >= 5 (EPOCHREALTIME), jq. Kills only the daemons it started.
set -euo pipefail
export LC_ALL=C TZ=UTC
RUNS=${RUNS:-50}
PROFILE=${PROFILE:-release}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d /tmp/cfrelay.XXXXXX)
OUTDIR=${OUTDIR:-$W/out}
mkdir -p "$OUTDIR"
command -v jq >/dev/null || { echo "needs jq" >&2; exit 2; }
if [[ -z ${SKIP_BUILD:-} ]]; then
  flag=(); [[ $PROFILE == release ]] && flag=(--release)
  cargo build "${flag[@]}" --quiet --manifest-path "$ROOT/Cargo.toml" -p coffer-daemon -p coffer-cli
fi
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE
C=$BIN/coffer
D=$BIN/cofferd
declare -A PID
cleanup() {
  for p in "${PID[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"/a "$W"/b "$W"/r
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PA=$(free_port); PB=$(free_port); PR=$(free_port)
cf() { local n=$1; shift; COFFER_SOCKET="$W/$n/run/sock" COFFER_NO_AUTOSTART=1 "$C" "$@"; }
start() { # NAME ARGS...
  local n=$1; shift
  mkdir -p "$W/$n"
  "$D" --data-dir "$W/$n/data" --socket "$W/$n/run/sock" --config "$W/$n/none.toml" \
    --kdf-memory-kib 256 --kdf-iterations 1 --no-mdns --no-ui "$@" >>"$W/$n/cofferd.log" 2>&1 &
  PID[$n]=$!
  for _ in $(seq 1 500); do cf "$n" status >/dev/null 2>&1 && return; sleep 0.01; done
  echo "cofferd $n did not start" >&2; exit 1
}
stop() { kill "${PID[$1]}"; wait "${PID[$1]}" 2>/dev/null || true; unset "PID[$1]"; }
until_true() { # TIMEOUT_S CMD...
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do (( SECONDS < end )) || { echo "timed out: $*" >&2; exit 1; }; sleep 0.05; done
}
pct() { sort -g "$1" | awk -v p="$2" '{a[NR]=$1} END{i=int((NR*p/100)+0.999); if(i<1)i=1; printf "%.1f", a[i]}'; }

start r --relay --listen "/ip4/127.0.0.1/tcp/$PR"
RID=$(cf r relay status --json | jq -r .peer_id)
start a --listen "/ip4/127.0.0.1/tcp/$PA"
start b --listen "/ip4/127.0.0.1/tcp/$PB" --peer "/ip4/127.0.0.1/tcp/$PA"
printf '246813\n' | cf a init --name Ada --email ada@bench.test --pin-stdin >/dev/null
cf a team create Bench >/dev/null
CODE=$(cf a invite bob@bench.test --json | jq -r .code)
printf '246813\n' | cf b join "$CODE" --peer "/ip4/127.0.0.1/tcp/$PA" --pin-stdin >"$W/join.out" 2>&1 &
JOIN=$!
until_true 30 bash -c "COFFER_SOCKET=$W/a/run/sock COFFER_NO_AUTOSTART=1 $C invite pending --json | jq -e 'length == 1'"
VC=$(cf a invite pending --json | jq -r '.[0].verification_code')
cf a invite confirm "$VC" >/dev/null
wait $JOIN
cf a folder create Ops >/dev/null
cf a folder share Ops --user bob@bench.test --role editor >/dev/null
cf r relay accept "$(cf a team show --json | jq -r .team_id)" >/dev/null
cf a relay add "/ip4/127.0.0.1/tcp/$PR/p2p/$RID" >/dev/null
until_true 30 bash -c "COFFER_SOCKET=$W/b/run/sock COFFER_NO_AUTOSTART=1 $C relay ls --json | jq -e '.relays[0].connected'"

measure() { # LABEL: RUNS edits on A, latency to B's synced event
  local label=$1 f="$OUTDIR/$1.ms"
  : >"$f"
  ( cf b events --json | while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done >"$W/$label.events" ) &
  local ev=$!
  sleep 0.5
  for i in $(seq 1 "$RUNS"); do
    local name="$label-$i"
    local t0=$EPOCHREALTIME
    printf 'pw\n' | cf a add login "$name" --folder Ops >/dev/null
    local end=$((SECONDS + 30))
    until [[ $(grep -c '"item_changed"' "$W/$label.events" || true) -ge $i ]]; do
      (( SECONDS < end )) || { echo "edit $i never reached B ($label)" >&2; exit 1; }
      sleep 0.002
    done
    local t1
    t1=$(grep '"item_changed"' "$W/$label.events" | sed -n "${i}p" | cut -d' ' -f1)
    awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f\n", (b-a)*1000}' >>"$f"
  done
  pkill -P $ev 2>/dev/null || true
  kill $ev 2>/dev/null || true
  wait $ev 2>/dev/null || true
  echo "$label: p50 $(pct "$f" 50) ms, p99 $(pct "$f" 99) ms over $RUNS edits; path $(cf b peers --json | jq -r --arg d "$(cf a status --json | jq -r .device_id)" '.peers[] | select(.device_id == $d) | .path')"
}

# 1. The LAN: A and B connected directly.
measure lan
# 2. Through the relay: both restarted without each other's address and
#    without hole punching, so they meet through the relay's circuit.
stop a; stop b
start a --listen "/ip4/127.0.0.1/tcp/$PA" --no-hole-punch
printf '246813\n' | cf a unlock --pin-stdin >/dev/null
start b --listen "/ip4/127.0.0.1/tcp/$PB" --no-hole-punch
printf '246813\n' | cf b unlock --pin-stdin >/dev/null
DA=$(cf a status --json | jq -r .device_id)
until_true 60 bash -c "COFFER_SOCKET=$W/b/run/sock COFFER_NO_AUTOSTART=1 $C peers --json | jq -e --arg d $DA '.peers[] | select(.device_id == \$d and .connected)'"
measure relayed
# 3. The relay process.
RP=${PID[r]}
RSS=$(awk '/VmRSS/ {print $2}' /proc/$RP/status)
CPU=$(awk '{printf "%.2f", ($14+$15)/100}' /proc/$RP/stat)
echo "relay: RSS $((RSS / 1024)) MiB, CPU ${CPU} s in all; $(cf r relay status --json | jq -c '.teams[0] | {envelopes, bytes, connected}')"
