#!/usr/bin/env bash
# Initial sync to a new device (issue 18: "a new device's initial sync of
# 100,000 items under 30 s on loopback"), two real cofferd on loopback
# (--no-mdns, the peer given by address: nothing leaves 127.0.0.1).
#
# Device A: `coffer init`, `team create`, a group `staff` holding A's user,
# one `coffer import` of an N-login Bitwarden JSON (bench/gen_bitwarden.py:
# 20 folders, as scale_bench.sh), each imported folder shared with `staff`
# (as a team shares folders: with users and groups, not one device), then a
# restart and unlock (the sender works from its store, as a laptop that has
# been in use). Then one fresh device per path in PATHS, each admitted the
# way a user does it, with the verification code the new device shows:
#  - link: the same user's new laptop: `coffer device link` on A, `coffer
#    device join CODE --peer A --pin-stdin` on it, `coffer device confirm`
#    on A. It gets every folder its user has (through `staff`).
#  - invite: a teammate's new laptop: `coffer invite EMAIL --group staff` on
#    A, `coffer join CODE --peer A --pin-stdin`, `coffer invite confirm`. It
#    gets the folders shared with `staff`.
# Either way A wraps the 20 folder keys for the new device on hearing of it,
# and all N items flow over one connection.
#
# Times, from the confirm on A (the device admitted): until the join
# returns on the new device (PIN set, unlocked), and until its `coffer
# status --json` counts N items (polled every 50 ms; then one `coffer ls
# --json` checks the count). Also the CPU seconds each daemon spent in that
# window (utime+stime from /proc) and the new device's highest VmRSS.
#
# Usage: bench/initial_sync_bench.sh [N...]   (default: 10000 100000)
# Env:   PATHS (default "link invite"), OUTDIR (default: a temp dir),
#        SKIP_BUILD=1, TIMEOUT_S (default 600), PERF=1 (perf record -g of
#        the new device's cofferd during the sync, into OUTDIR), FILL
#        (import, the default; edits: instead of the import, N separate
#        item.add requests into one folder `Bulk` shared with `staff`, an
#        envelope each: the worst case)
# Needs: jq, python3 (perf for PERF=1). Kills only the daemons it started
# (by pid); the PIN goes through stdin, never argv.
set -euo pipefail
export LC_ALL=C TZ=UTC
# Two networked daemons of its own, whatever a caller (scale_bench.sh) set.
unset COFFER_NO_NETWORK COFFER_LISTEN COFFER_DATA_DIR COFFER_SOCKET COFFER_CONFIG
NS=("$@")
((${#NS[@]})) || NS=(10000 100000)
TIMEOUT_S=${TIMEOUT_S:-600}
PATHS_=${PATHS:-link invite}
FILL=${FILL:-import}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d /tmp/cfinit.XXXXXX)
OUTDIR=${OUTDIR:-$(mktemp -d /tmp/cfinit-out.XXXXXX)}
mkdir -p "$OUTDIR"
for tool in jq python3; do command -v $tool >/dev/null || { echo "needs $tool" >&2; exit 2; }; done
[[ -n ${SKIP_BUILD:-} ]] || cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" --bin coffer --bin cofferd
TGT=${CARGO_TARGET_DIR:-$ROOT/target}
C=$TGT/release/coffer
D=$TGT/release/cofferd
PIN=246813
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
now_ns() { date +%s%N; }
s_between() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", (b - a) / 1e9}'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"; }
cf() { local n=$1; shift; COFFER_SOCKET="$W/$n/run/sock" COFFER_NO_AUTOSTART=1 "$C" "$@"; }
start() { # NAME PORT -> DPID_<NAME>
  local n=$1 port=$2
  mkdir -p "$W/$n"
  "$D" --data-dir "$W/$n/data" --socket "$W/$n/run/sock" --config "$W/$n/none.toml" \
    --kdf-memory-kib 256 --kdf-iterations 1 --no-mdns --no-ui \
    --listen "/ip4/127.0.0.1/tcp/$port" >>"$OUTDIR/cofferd_$n.log" 2>&1 &
  PIDS+=("$!")
  printf -v "DPID_$n" %s $!
  for _ in $(seq 1 1000); do cf "$n" status >/dev/null 2>&1 && return; sleep 0.01; done
  echo "cofferd $n did not start" >&2; exit 1
}
stop() { # NAME
  local v="DPID_$1"
  kill "${!v}"; wait "${!v}" 2>/dev/null || true
}
TSV=$OUTDIR/initial_sync.tsv
printf 'n\toperation\tvalue\tunit\tnotes\n' >"$TSV"
row() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$TSV"; printf '  %-7s %-32s %10s %-3s %s\n' "$@"; }

echo "coffer $("$C" --version | awk '{print $2}') initial sync bench, N=${NS[*]}, paths: ${PATHS_}, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), workdir $W"

# One new device NAME admitted to A by PATH (link|invite), then timed until
# it holds N items. The join runs until A confirms; it prints the
# verification code, which A's `pending` list shows too.
new_device() { # N PATH NAME
  local n=$1 path=$2 name=$3 port code vc joiner t0 t1 got peak r a0 b0 a1 b1 perf_pid=
  port=$(free_port)
  start "$name" "$port"
  local dpid="DPID_$name"
  local join_args=(join) pend=invite
  if [[ $path == link ]]; then
    code=$(cf a device link --json | jq -r .code)
    join_args=(device join) pend=device
  else
    code=$(cf a invite "$name@example.invalid" --group staff --json | jq -r .code)
  fi
  ( echo "$PIN" | cf "$name" "${join_args[@]}" "$code" --peer "/ip4/127.0.0.1/tcp/$PA" --pin-stdin --name "$name" \
      >"$W/join.out" 2>"$W/join.err"
    echo $? >"$W/join.rc"; date +%s%N >"$W/join.end" ) &
  joiner=$!
  PIDS+=("$joiner")
  vc=
  for _ in $(seq 1 3000); do
    vc=$(cf a "$pend" pending --json 2>/dev/null | jq -r '.[0].verification_code // empty')
    [[ -n $vc ]] && break
    sleep 0.01
  done
  [[ -n $vc ]] || { echo "nothing pending on A; the join said: $(cat "$W/join.out" "$W/join.err")" >&2; exit 1; }
  a0=$(cpu_s "$DPID_a"); b0=$(cpu_s "${!dpid}")
  if [[ -n ${PERF:-} ]]; then
    perf record -e cpu-clock -g -o "$OUTDIR/perf_${path}_$n.data" -p "${!dpid}" >/dev/null 2>&1 &
    perf_pid=$!
  fi
  t0=$(now_ns)
  cf a "$pend" confirm "$vc" >/dev/null
  wait "$joiner" || true
  [[ $(cat "$W/join.rc") == 0 ]] || { echo "join failed: $(cat "$W/join.out" "$W/join.err")" >&2; exit 1; }
  row "$n" "${FILL_TAG}${path}_join_returned" "$(s_between "$t0" "$(cat "$W/join.end")")" s "from \`coffer $pend confirm\` on A until \`coffer ${join_args[*]}\` returns on the new device"
  got=0 peak=0
  while :; do
    got=$(cf "$name" status --json 2>/dev/null | jq '.items // 0')
    r=$(awk '/^VmRSS/{print $2}' "/proc/${!dpid}/status")
    if (( r > peak )); then peak=$r; fi
    (( got >= n )) && break
    (( ($(now_ns) - t0) / 1000000000 < TIMEOUT_S )) || { echo "timed out: the new device holds $got of $n items" >&2; exit 1; }
    sleep 0.05
  done
  t1=$(now_ns)
  a1=$(cpu_s "$DPID_a"); b1=$(cpu_s "${!dpid}")
  if [[ -n $perf_pid ]]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
  row "$n" "${FILL_TAG}${path}_initial_sync" "$(s_between "$t0" "$t1")" s "from \`coffer $pend confirm\` on A until the new device's \`coffer status\` counts all $n items (50 ms polls)"
  row "$n" "${FILL_TAG}${path}_sender_cpu" "$(awk -v a="$a0" -v b="$a1" 'BEGIN{printf "%.2f", b-a}')" s "A's cofferd utime+stime in that window"
  row "$n" "${FILL_TAG}${path}_receiver_cpu" "$(awk -v a="$b0" -v b="$b1" 'BEGIN{printf "%.2f", b-a}')" s "the new device's cofferd utime+stime in that window"
  row "$n" "${FILL_TAG}${path}_receiver_peak_rss" "$(awk -v k="$peak" 'BEGIN{printf "%.1f", k / 1024}')" MB "the new device's VmRSS, highest of the polls"
  local listed
  listed=$(cf "$name" ls --json | jq length)
  [[ $listed == "$n" ]] || { echo "the new device lists $listed items, expected $n" >&2; exit 1; }
  stop "$name"
}

FILL_TAG=
[[ $FILL == edits ]] && FILL_TAG=edits_
for N in "${NS[@]}"; do
  echo "== N=$N ($FILL)"
  rm -rf "$W"/a "$W"/link "$W"/invite
  PA=$(free_port)
  start a "$PA"
  echo "$PIN" | cf a init --name Bench --email bench@example.invalid --pin-stdin >/dev/null
  # A team whose folders are shared with a group, as a team shares them:
  # a new device of a member, or a new member of the group, gets them all.
  cf a team create Bench >/dev/null
  cf a group create staff >/dev/null
  cf a group add staff bench@example.invalid >/dev/null
  if [[ $FILL == edits ]]; then
    # N separate item.add requests over one socket connection: N changes,
    # N envelopes in one folder (the worst case for an initial sync).
    cf a folder create Bulk >/dev/null
    t_fill=$(now_ns)
    python3 "$ROOT/bench/fill_edits.py" "$N" "$W/a/run/sock" Bulk 6
    row "$N" edits_fill "$(s_between "$t_fill" "$(now_ns)")" s "$N item.add requests on A over one socket connection (one envelope each)"
  else
    python3 "$ROOT/bench/gen_bitwarden.py" "$N" >"$W/export.json"
    cf a import --format bitwarden-json "$W/export.json" >/dev/null
    rm -f "$W/export.json"
  fi
  cf a folder ls --json | jq -r '.[] | select(.name != "Personal") | .id' | while read -r f; do
    cf a folder share "$f" --group staff --role editor >/dev/null
  done
  stop a
  start a "$PA"
  echo "$PIN" | cf a unlock --pin-stdin >/dev/null
  HAVE=$(cf a status --json | jq .items)
  [[ $HAVE == "$N" ]] || { echo "A holds $HAVE items, expected $N" >&2; exit 1; }
  row "$N" "${FILL_TAG}sender_envelopes" "$(cf a sync status --json | jq '[.spaces[].envelopes] | add')" "" "the folders' envelopes A holds, $(cf a sync status --json | jq '[.spaces[].envelope_bytes] | add') B"
  for P in $PATHS_; do new_device "$N" "$P" "$P"; done

  stop a
done
echo "rows: $TSV"
