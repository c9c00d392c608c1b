#!/usr/bin/env bash
# Scale benchmark (issue 18): for each N (default 10,000 and 100,000 items),
# one `coffer import` of an N-login Bitwarden JSON export into a fresh vault
# (through the replica: real signatures and encryption), then a restart as a
# user meets it: daemon start (until `coffer status` answers), RSS locked,
# `coffer unlock` (Argon2id included), RSS unlocked (and after 7 s idle, when
# the daemon has trimmed its heap), store size, `coffer get` median
# (hyperfine) and `coffer ls --json`: time to its first byte, to its first
# complete item, and to its end. Then the same restart for a vault filled by
# EDITS_N separate `coffer add` processes (acceptance 1: "whether from one
# import or 10,000 separate edits").
#
# Peers in the same run, when installed: keepassxc-cli open (unlock + parse,
# `ls` of the root) and `show` on a generated KPX_N-entry KDBX (built by
# `keepassxc-cli import` of a KeePass XML, default KDF), with keepassxc-cli's
# peak RSS; `pass show` / `pass ls` on a generated PASS_N-entry store (one
# `gpg --encrypt-files` for all entries: the shared pass_bench.sh inserts
# one process each, ~60 ms an entry); Syncthing's daemon RSS with ST_N files
# (../shared/bench/syncthing_latency.sh, one batch). The shared
# keepassxc/pass scripts themselves (one process per added entry: hours at
# these sizes) run only with PEER_SCRIPTS_N=n (their own store size).
#
# Then, for each N, bench/initial_sync_bench.sh: the initial sync of the N
# items to a new device of the same user (`coffer device link`) and to a
# teammate's (`coffer invite`), two cofferd on loopback (SKIP_SYNC=1 skips).
#
# Usage: bench/scale_bench.sh [N...]       (default: 10000 100000)
# Env:   RUNS (hyperfine runs of `coffer get`, default 50), LS_RUNS (default
#        5), EDITS_N (default 10000; 0 skips), KPX_N (default 100000), PASS_N
#        (default 10000), ST_N (default 10000), SKIP_PEERS=1,
#        PEER_SCRIPTS_N (default 0), SKIP_SYNC=1, OUTDIR (default: a temp dir)
# Needs: hyperfine, jq, python3; peers: keepassxc, pass, gnupg, syncthing,
#        curl (apt-get install -y hyperfine jq keepassxc pass gnupg syncthing).
# Talks only to its own Unix socket; kills only the processes it started;
# the PIN goes through stdin, never argv.
set -euo pipefail
export LC_ALL=C TZ=UTC
NS=("$@")
((${#NS[@]})) || NS=(10000 100000)
RUNS=${RUNS:-50}
LS_RUNS=${LS_RUNS:-5}
EDITS_N=${EDITS_N:-10000}
KPX_N=${KPX_N:-100000}
PASS_N=${PASS_N:-10000}
ST_N=${ST_N:-10000}
PEER_SCRIPTS_N=${PEER_SCRIPTS_N:-0}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared}
[[ -d $SHARED/bench ]] || SHARED=/work/shared
W=$(mktemp -d /tmp/cfscale.XXXXXX)
OUTDIR=${OUTDIR:-$(mktemp -d /tmp/cfscale-out.XXXXXX)}
mkdir -p "$OUTDIR"
for tool in hyperfine jq python3; do command -v $tool >/dev/null || { echo "needs $tool (apt-get install -y $tool)" >&2; exit 2; }; done

cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" --bin coffer --bin cofferd
TGT=${CARGO_TARGET_DIR:-$ROOT/target}
C=$TGT/release/coffer
D=$TGT/release/cofferd
PIN=246813
export COFFER_SOCKET=$W/run/cofferd.sock COFFER_NO_AUTOSTART=1
# No peer-to-peer networking in this single-device benchmark.
export COFFER_NO_NETWORK=1
DPID=
AGENT_PID=
cleanup() {
  [[ -n $DPID ]] && kill "$DPID" 2>/dev/null
  [[ -n $AGENT_PID ]] && kill "$AGENT_PID" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
now_ns() { date +%s%N; }
ms_between() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", (b - a) / 1e6}'; }
rss_kib() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }
mb() { awk -v k="$1" 'BEGIN{printf "%.1f", k / 1024}'; }
start_daemon() { # DATA_DIR -> sets DPID, START_MS (spawn until `coffer status` answers)
  local t0
  t0=$(now_ns)
  COFFER_DATA_DIR=$1 "$D" >>"$OUTDIR/cofferd.log" 2>&1 &
  DPID=$!
  for _ in $(seq 1 3000); do
    if "$C" status >/dev/null 2>&1; then START_MS=$(ms_between "$t0" "$(now_ns)"); return; fi
    sleep 0.01
  done
  echo "cofferd did not start" >&2; exit 1
}
stop_daemon() { # -> STOP_MS (SIGTERM until exit: the vault locks, folders are snapshotted)
  local t0
  t0=$(now_ns)
  kill "$DPID"; wait "$DPID" 2>/dev/null || true; DPID=
  STOP_MS=$(ms_between "$t0" "$(now_ns)")
}
: >"$OUTDIR/cofferd.log"
TSV=$OUTDIR/scale.tsv
printf 'n\toperation\tvalue\tunit\tnotes\n' >"$TSV"
row() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$TSV"; printf '  %-7s %-40s %10s %-4s %s\n' "$@"; }

# `coffer ls --json` as a reader sees it: the time from spawn to its first
# byte, to its first complete array element, and to its end (medians).
cat >"$W/lstime.py" <<'PY'
import json, os, statistics, subprocess, sys, time
runs, cmd = int(sys.argv[1]), sys.argv[2:]
fb, fi, end, count, size = [], [], [], None, None
dec = json.JSONDecoder()
for _ in range(runs):
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, bufsize=0)
    buf, t_fb, t_fi = bytearray(), None, None
    while True:
        chunk = os.read(p.stdout.fileno(), 1 << 16)
        if not chunk:
            break
        now = time.perf_counter()
        t_fb = t_fb or now
        buf += chunk
        if t_fi is None:
            head = bytes(buf[:1 << 16]).decode("utf-8", "ignore")
            i = head.find("[")
            if i >= 0:
                j = i + 1
                while j < len(head) and head[j] in " \r\n\t":
                    j += 1
                try:
                    dec.raw_decode(head, j)
                    t_fi = now
                except ValueError:
                    pass
    t_end = time.perf_counter()
    if p.wait() != 0:
        sys.exit(f"{cmd} failed")
    fb.append((t_fb - t0) * 1e3); fi.append(((t_fi or t_end) - t0) * 1e3); end.append((t_end - t0) * 1e3)
    count, size = len(json.loads(buf)), len(buf)
med = statistics.median
print(f"{med(fb):.1f} {med(fi):.1f} {med(end):.1f} {count} {size} {min(fi):.1f} {max(fi):.1f}")
PY

echo "coffer $("$C" --version | awk '{print $2}'), N=${NS[*]}, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), workdir $W"

# After a restart: start, RSS locked, unlock, RSS unlocked (+7 s idle).
restart_and_measure() { # N LABEL DATA_DIR
  local n=$1 label=$2 data=$3 t0
  stop_daemon
  row "$n" "${label}stop" "$STOP_MS" ms "SIGTERM until exit (locks: a folder with 256+ changes since its last snapshot is sealed as one)"
  row "$n" "${label}store_size" "$(du -sk "$data" | cut -f1)" KiB "du -sk of the data dir (vault.sqlite3 $(( $(stat -c %s "$data/vault.sqlite3") / 1024 )) KiB)"
  start_daemon "$data"
  row "$n" "${label}daemon_start" "$START_MS" ms "spawn cofferd until \`coffer status\` answers (10 ms polls, a coffer process each)"
  sleep 1
  row "$n" "${label}rss_locked" "$(mb "$(rss_kib "$DPID")")" MB "VmRSS, 1 s after start, locked"
  t0=$(now_ns); echo "$PIN" | "$C" unlock --pin-stdin >/dev/null
  row "$n" "${label}unlock" "$(ms_between "$t0" "$(now_ns)")" ms "coffer unlock --pin-stdin: Argon2id + keys + each folder from its snapshot, or rebuilt from its envelopes (see cofferd.log)"
  row "$n" "${label}rss_unlocked" "$(mb "$(rss_kib "$DPID")")" MB "VmRSS right after unlock"
  sleep 7
  row "$n" "${label}rss_unlocked_idle" "$(mb "$(rss_kib "$DPID")")" MB "VmRSS after 7 s idle (heap trimmed after 5 s)"
}

for N in "${NS[@]}"; do
  echo "== N=$N"
  mkdir -p "$W/gen"
  python3 "$ROOT/bench/gen_bitwarden.py" "$N" >"$W/gen/export.json"
  DATA=$W/data$N
  start_daemon "$DATA"
  echo "$PIN" | "$C" init --name Bench --email bench@example.invalid --pin-stdin >/dev/null
  t0=$(now_ns)
  "$C" import --format bitwarden-json "$W/gen/export.json" --json >"$OUTDIR/import$N.json" ||
    { echo "import of $N failed; the end of cofferd's log:" >&2; tail -n 20 "$OUTDIR/cofferd.log" >&2; exit 1; }
  row "$N" import "$(ms_between "$t0" "$(now_ns)")" ms "one coffer import of a $(du -h "$W/gen/export.json" | cut -f1) Bitwarden JSON (20 folders)"
  rm -rf "$W/gen"
  row "$N" rss_after_import "$(mb "$(rss_kib "$DPID")")" MB "VmRSS right after the import"
  sleep 7
  row "$N" rss_after_import_idle "$(mb "$(rss_kib "$DPID")")" MB "VmRSS after 7 s idle"
  restart_and_measure "$N" "" "$DATA"

  TI=$(printf '%05d' $(( N * 777 / 1000 % 100000 )))
  [[ $("$C" get "service $TI" --field password) == "pw-$TI-Xq7!vR2#" ]] || { echo "wrong password read back" >&2; exit 1; }
  hyperfine -N --style none --warmup 10 --runs "$RUNS" --export-json "$OUTDIR/get$N.json" \
    "$C get 'service $TI' --field password" >/dev/null
  row "$N" coffer_get_median "$(jq -r '.results[0].median*1000|.*100|round/100' "$OUTDIR/get$N.json")" ms \
    "hyperfine -N, $RUNS runs: coffer get 'service $TI' --field password (min $(jq -r '.results[0].min*1000|.*100|round/100' "$OUTDIR/get$N.json"), max $(jq -r '.results[0].max*1000|.*100|round/100' "$OUTDIR/get$N.json"))"
  hyperfine -N --style none --warmup 5 --runs "$RUNS" --export-json "$OUTDIR/version$N.json" "$C --version" >/dev/null
  row "$N" coffer_version_median "$(jq -r '.results[0].median*1000|.*100|round/100' "$OUTDIR/version$N.json")" ms "process start only, same moment (baseline)"

  read -r FB FI END CNT BYTES FIMIN FIMAX <<<"$(python3 "$W/lstime.py" "$LS_RUNS" "$C" ls --json)"
  [[ $CNT == "$N" ]] || { echo "ls --json listed $CNT items, expected $N" >&2; exit 1; }
  row "$N" ls_json_first_byte "$FB" ms "coffer ls --json: spawn to first byte on the pipe (median of $LS_RUNS)"
  row "$N" ls_json_first_item "$FI" ms "spawn to the first complete array element (min $FIMIN, max $FIMAX)"
  row "$N" ls_json_total "$END" ms "spawn to EOF: $CNT items, $(( BYTES / 1024 )) KiB of JSON"
  stop_daemon
  rm -rf "$DATA"
done

if (( EDITS_N > 0 )); then
  echo "== $EDITS_N separate edits (one coffer add process each)"
  DATA=$W/data_edits
  start_daemon "$DATA"
  echo "$PIN" | "$C" init --name Bench --email bench@example.invalid --pin-stdin >/dev/null
  t0=$(now_ns)
  for i in $(seq 1 "$EDITS_N"); do
    id=$(printf '%05d' "$i")
    printf 'secret-%s-xyz\n' "$id" | "$C" add login "svc$id" --username "user$id" --url "https://svc$id.example" >/dev/null
  done
  row "$EDITS_N" edits_add_one_process_each "$(ms_between "$t0" "$(now_ns)")" ms "coffer add x $EDITS_N (each: spawn + IPC + change + sign + encrypt + commit)"
  row "$EDITS_N" edits_rss_after_adds "$(mb "$(rss_kib "$DPID")")" MB "VmRSS right after the adds"
  restart_and_measure "$EDITS_N" "edits_" "$DATA"
  stop_daemon
  rm -rf "$DATA"
fi

if [[ -z ${SKIP_SYNC:-} ]]; then
  echo "== initial sync to a new device (bench/initial_sync_bench.sh)"
  SKIP_BUILD=1 OUTDIR=$OUTDIR/initial_sync bash "$ROOT/bench/initial_sync_bench.sh" "${NS[@]}"
  tail -n +2 "$OUTDIR/initial_sync/initial_sync.tsv" >>"$TSV"
fi

peer_row() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$OUTDIR/peers.tsv"; printf '  %-7s %-40s %10s %-4s %s\n' "$@"; }
printf 'n\toperation\tvalue\tunit\tnotes\n' >"$OUTDIR/peers.tsv"
hf_peer() { # N NAME RUNS NOTES CMD  (shell command; row = median ms)
  hyperfine --style none --warmup 1 --runs "$3" --export-json "$OUTDIR/peer_$2.json" "$5" >/dev/null
  peer_row "$1" "$2" "$(jq -r '.results[0].median*1000|.*10|round/10' "$OUTDIR/peer_$2.json")" ms "$4 (hyperfine, $3 runs; min $(jq -r '.results[0].min*1000|.*10|round/10' "$OUTDIR/peer_$2.json"))"
}
maxrss_mb() { # CMD... -> peak RSS of the command in MB
  /usr/bin/time -f '%M' -o "$W/peer/maxrss" "$@" >/dev/null 2>&1 && mb "$(cat "$W/peer/maxrss")"
}
if [[ -z ${SKIP_PEERS:-} ]]; then
  echo "== peers"
  mkdir -p "$W/peer"
  if command -v keepassxc-cli >/dev/null && (( KPX_N > 0 )); then
    KP=$W/peer/kp
    mkdir -p "$KP"
    python3 - "$KPX_N" >"$KP/db.xml" <<'PY'
import sys
from xml.sax.saxutils import escape as e
n = int(sys.argv[1])
out = ['<?xml version="1.0" encoding="utf-8"?><KeePassFile><Root><Group><Name>Root</Name>']
for g in range(10):
    out.append(f'<Group><Name>team0{g}</Name>')
    for i in range(g, n, 10):
        out.append('<Entry>' + ''.join(
            f'<String><Key>{k}</Key><Value>{e(v)}</Value></String>'
            for k, v in [("Title", f"svc{i:06d}"), ("UserName", f"user{i:06d}@example.com"),
                         ("Password", f"pw-{i:06d}-Xq7!vR2#"), ("URL", f"https://svc{i:06d}.example.com/login")]) + '</Entry>')
    out.append('</Group>')
out.append('</Group></Root></KeePassFile>')
print(''.join(out))
PY
    t0=$(now_ns)
    printf 'bench-pw\nbench-pw\n' | keepassxc-cli import -q -p "$KP/db.xml" "$KP/db.kdbx" >/dev/null 2>&1
    peer_row "$KPX_N" kpx_import_xml "$(ms_between "$t0" "$(now_ns)")" ms "keepassxc-cli import of a $KPX_N-entry KeePass XML (default KDF), $(( $(stat -c %s "$KP/db.kdbx") / 1024 )) KiB KDBX"
    rm -f "$KP/db.xml"
    KI=$(( KPX_N * 777 / 1000 ))
    KT=team0$((KI % 10))/svc$(printf %06d "$KI")
    [[ $(echo bench-pw | keepassxc-cli show -q -s -a Password "$KP/db.kdbx" "$KT") == "pw-$(printf %06d "$KI")-Xq7!vR2#" ]] || { echo "keepassxc-cli show: wrong password" >&2; exit 1; }
    hf_peer "$KPX_N" kpx_open_ls 5 "echo pw | keepassxc-cli ls -q db (open: KDF + decrypt + parse $KPX_N entries, list root)" "sh -c 'echo bench-pw | keepassxc-cli ls -q $KP/db.kdbx'"
    hf_peer "$KPX_N" kpx_show 5 "echo pw | keepassxc-cli show -q -s db $KT" "sh -c 'echo bench-pw | keepassxc-cli show -q -s $KP/db.kdbx $KT'"
    peer_row "$KPX_N" kpx_show_peak_rss "$(echo bench-pw | maxrss_mb keepassxc-cli show -q -s "$KP/db.kdbx" "$KT")" MB "keepassxc-cli show's peak RSS (/usr/bin/time %M)"
    rm -rf "$KP"
  else
    echo "  skip keepassxc: keepassxc-cli not installed (apt-get install -y keepassxc)"
  fi
  if command -v pass >/dev/null && command -v gpg >/dev/null && (( PASS_N > 0 )); then
    export GNUPGHOME=$W/peer/gnupg PASSWORD_STORE_DIR=$W/peer/store
    mkdir -m 700 "$GNUPGHOME"
    gpg --batch --quiet --gen-key <<'EOF'
%no-protection
Key-Type: EDDSA
Key-Curve: ed25519
Subkey-Type: ECDH
Subkey-Curve: cv25519
Name-Real: Bench ed25519
Name-Email: bench-ed25519@example.invalid
Expire-Date: 0
%commit
EOF
    FPR=$(gpg --list-secret-keys --with-colons | awk -F: '/^fpr/{print $10; exit}')
    AGENT_PID=$(gpg-connect-agent 'getinfo pid' /bye | awk '/^D/{print $2}')
    pass init "$FPR" >/dev/null
    t0=$(now_ns)
    for g in $(seq 0 9); do mkdir -p "$PASSWORD_STORE_DIR/team0$g"; done
    for i in $(seq 1 "$PASS_N"); do
      id=$(printf '%05d' "$i")
      printf 'secret-%s-xyz\nuser: user%s\nurl: https://svc%s.example\n' "$id" "$id" "$id" >"$PASSWORD_STORE_DIR/team0$((i % 10))/svc$id"
    done
    find "$PASSWORD_STORE_DIR" -type f ! -name '.gpg-id' -print0 |
      xargs -0 gpg --batch --yes --quiet --trust-model always -r "$FPR" --encrypt-files
    find "$PASSWORD_STORE_DIR" -type f ! -name '*.gpg' ! -name '.gpg-id' -delete
    peer_row "$PASS_N" pass_store_generated "$(ms_between "$t0" "$(now_ns)")" ms "$PASS_N entries written and gpg --encrypt-files'd (ed25519/cv25519), not through pass insert"
    PI=$(printf '%05d' $(( PASS_N * 777 / 1000 )))
    PT=team0$((10#$PI % 10))/svc$PI
    [[ $(pass show "$PT" | head -n1) == "secret-$PI-xyz" ]] || { echo "pass show: wrong content" >&2; exit 1; }
    hf_peer "$PASS_N" pass_show 20 "pass show $PT (gpg-agent warm)" "pass show $PT"
    hf_peer "$PASS_N" pass_ls 5 "pass ls (tree of $PASS_N entries)" "pass ls"
    kill "$AGENT_PID" 2>/dev/null || true; AGENT_PID=
    unset GNUPGHOME PASSWORD_STORE_DIR
    rm -rf "$W/peer/gnupg" "$W/peer/store"
  else
    echo "  skip pass: pass or gpg not installed (apt-get install -y pass gnupg)"
  fi
  if command -v syncthing >/dev/null && command -v curl >/dev/null && (( ST_N > 0 )); then
    if SAMPLES=0 DELAYS=1 BATCH=$ST_N BATCH_RUNS=1 GUI_A=18384 GUI_B=18385 PORT_A=23001 PORT_B=23002 OUTDIR=$OUTDIR \
      bash "$SHARED/bench/syncthing_latency.sh" >"$OUTDIR/syncthing.log" 2>&1; then
      peer_row "$ST_N" syncthing_rss_empty "$(awk -F'\t' '$1=="idle_rss_empty_folder_A_B_KiB"{split($2,a,"/"); printf "%.1f", a[1]/1024}' "$OUTDIR/syncthing.tsv")" MB "Syncthing daemon (child) RSS, empty folder, 5 s idle (shared syncthing_latency.sh)"
      peer_row "$ST_N" syncthing_rss_files "$(awk -F'\t' '$1=="idle_rss_populated_A_B_KiB"{split($2,a,"/"); printf "%.1f", a[1]/1024}' "$OUTDIR/syncthing.tsv")" MB "the same with $ST_N files synced A->B, 10 s idle (batch took $(awk -F'\t' '$1 ~ /^batch_/{print $2}' "$OUTDIR/syncthing.tsv") ms)"
    else
      echo "  syncthing bench failed: see $OUTDIR/syncthing.log"
    fi
  else
    echo "  skip syncthing: syncthing or curl not installed (apt-get install -y syncthing curl)"
  fi
  if (( PEER_SCRIPTS_N > 0 )); then
    command -v keepassxc-cli >/dev/null && { RUNS=10 OUTDIR=$OUTDIR bash "$SHARED/bench/keepassxc_bench.sh" "$PEER_SCRIPTS_N" >"$OUTDIR/kpx.log" 2>&1 || echo "  keepassxc_bench.sh failed: see $OUTDIR/kpx.log"; }
    command -v pass >/dev/null && { KEYTYPES=ed25519 RUNS=20 OUTDIR=$OUTDIR bash "$SHARED/bench/pass_bench.sh" "$PEER_SCRIPTS_N" >"$OUTDIR/pass.log" 2>&1 || echo "  pass_bench.sh failed: see $OUTDIR/pass.log"; }
  fi
fi

echo
echo "acceptance (issue 18):"
val() { awk -F'\t' -v n="$1" -v op="$2" '$1==n && $2==op{print $3}' "$TSV"; }
check() { # LABEL VALUE LIMIT
  [[ -z $2 ]] && { printf '  %-58s %10s\n' "$1" "not run"; return; }
  printf '  %-58s %10s  %s\n' "$1" "$2" "$(awk -v v="$2" -v l="$3" 'BEGIN{print (v < l) ? "met" : "NOT met"}')"
}
check "10,000 (import): RSS after restart+unlock, MB < 40" "$(val 10000 rss_unlocked)" 40
check "10,000 (import): RSS after unlock + 7 s idle, MB < 40" "$(val 10000 rss_unlocked_idle)" 40
check "10,000 (import): unlock ms < 1000" "$(val 10000 unlock)" 1000
check "$EDITS_N (separate edits): RSS after restart+unlock, MB < 40" "$(val "$EDITS_N" edits_rss_unlocked)" 40
check "$EDITS_N (separate edits): RSS after unlock + 7 s idle, MB < 40" "$(val "$EDITS_N" edits_rss_unlocked_idle)" 40
check "$EDITS_N (separate edits): unlock ms < 1000" "$(val "$EDITS_N" edits_unlock)" 1000
check "100,000: unlock ms < 3000" "$(val 100000 unlock)" 3000
check "100,000: RSS after restart+unlock, MB < 150" "$(val 100000 rss_unlocked)" 150
check "100,000: coffer get median ms < 5" "$(val 100000 coffer_get_median)" 5
check "100,000: ls --json first item ms < 50" "$(val 100000 ls_json_first_item)" 50
check "100,000: initial sync to a linked device s < 30" "$(val 100000 link_initial_sync)" 30
check "100,000: initial sync to a teammate's device s < 30" "$(val 100000 invite_initial_sync)" 30
echo "rows: $TSV $OUTDIR/peers.tsv"
