#!/usr/bin/env bash
# Import benchmark (issue 6): wall time of one `coffer import` of an
# N-login Bitwarden JSON export into an empty vault (parse, dedup, seal,
# store), RUNS times, each into a fresh vault; then the same file imported a
# second time (all duplicates). When keepassxc-cli is installed, in the same
# run: `keepassxc-cli import` of the same N entries as KeePass XML, with the
# ratio.
#
# Usage: bench/import_bench.sh [N]     (default 10000)
# Env:   RUNS (default 3), OUTDIR (default: a temp dir)
# Needs: python3 (generates the export). Talks only to its own Unix socket.
set -euo pipefail
export LC_ALL=C TZ=UTC
N=${1:-10000}
RUNS=${RUNS:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d /tmp/cfimport.XXXXXX)
OUTDIR=${OUTDIR:-$W/out}
mkdir -p "$OUTDIR"
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
C=$ROOT/target/release/coffer
D=$ROOT/target/release/cofferd
python3 "$ROOT/bench/gen_bitwarden.py" "$N" >"$W/export.json"
export COFFER_SOCKET=$W/run/cofferd.sock COFFER_NO_AUTOSTART=1
DPID=
cleanup() { [[ -n $DPID ]] && kill "$DPID" 2>/dev/null; wait 2>/dev/null; rm -rf "$W/data"* "$W/run"; }
trap cleanup EXIT
start_daemon() { # DATA_DIR
  # Loopback only, no mDNS: a benchmark needs no peers.
  COFFER_DATA_DIR=$1 "$D" --no-mdns --listen /ip4/127.0.0.1/tcp/0 >"$W/cofferd.log" 2>&1 &
  DPID=$!
  for _ in $(seq 1 500); do "$C" status >/dev/null 2>&1 && return; sleep 0.01; done
  echo "cofferd did not start" >&2; exit 1
}
stop_daemon() { kill "$DPID"; wait "$DPID" 2>/dev/null || true; DPID=; }
now_ns() { date +%s%N; }
ms() { echo $(( ($2 - $1) / 1000000 )); }
TSV=$OUTDIR/import.tsv
printf 'operation\tms\tnotes\n' >"$TSV"
row() { printf '%s\t%s\t%s\n' "$@" >>"$TSV"; printf '  %-40s %8s ms  %s\n' "$@"; }

echo "coffer $("$C" --version | awk '{print $2}'), N=$N, $(nproc) cores, export $(du -h "$W/export.json" | cut -f1)"
best=
for r in $(seq 1 "$RUNS"); do
  start_daemon "$W/data$r"
  echo 246813 | "$C" init --name Bench --email bench@example.invalid --pin-stdin >/dev/null
  t0=$(now_ns)
  "$C" import --format bitwarden-json "$W/export.json" --json >"$OUTDIR/import$r.json"
  t1=$(now_ns)
  row "import $N (run $r)" "$(ms "$t0" "$t1")" "fresh vault"
  [[ -z $best || $(ms "$t0" "$t1") -lt $best ]] && best=$(ms "$t0" "$t1")
  if [[ $r == 1 ]]; then
    got=$("$C" ls --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
    [[ $got == "$N" ]] || { echo "expected $N items, vault lists $got" >&2; exit 1; }
    t0=$(now_ns)
    "$C" import --format bitwarden-json "$W/export.json" --json >"$OUTDIR/reimport.json"
    t1=$(now_ns)
    row "re-import $N (all duplicates)" "$(ms "$t0" "$t1")" "$(python3 -c 'import json,sys; print("duplicates", json.load(open(sys.argv[1]))["duplicates"])' "$OUTDIR/reimport.json")"
    t0=$(now_ns); "$C" lock >/dev/null; echo 246813 | "$C" unlock --pin-stdin >/dev/null; t1=$(now_ns)
    row "lock + unlock after import" "$(ms "$t0" "$t1")" "rebuild from $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sum(d["added"].values()))' "$OUTDIR/import1.json") items"
  fi
  stop_daemon
done
row "import $N (best of $RUNS)" "$best" ""

if command -v keepassxc-cli >/dev/null; then
  python3 - "$W/export.json" >"$W/export.xml" <<'PY'
import json, sys
from xml.sax.saxutils import escape as e
d = json.load(open(sys.argv[1]))
out = ['<?xml version="1.0" encoding="utf-8"?><KeePassFile><Root><Group><Name>Root</Name>']
for it in d["items"]:
    lg = it["login"]
    out.append('<Entry>' + ''.join(
        f'<String><Key>{k}</Key><Value>{e(v or "")}</Value></String>'
        for k, v in [("Title", it["name"]), ("UserName", lg["username"]), ("Password", lg["password"]),
                     ("URL", lg["uris"][0]["uri"]), ("Notes", it.get("notes"))]) + '</Entry>')
out.append('</Group></Root></KeePassFile>')
print(''.join(out))
PY
  t0=$(now_ns)
  printf 'benchpass\nbenchpass\n' | keepassxc-cli import -q -p -t 100 "$W/export.xml" "$W/kp.kdbx" >/dev/null 2>&1
  t1=$(now_ns)
  kp=$(ms "$t0" "$t1")
  row "keepassxc-cli import $N (XML)" "$kp" "$(awk -v a="$best" -v b="$kp" 'BEGIN{printf "coffer/keepassxc = %.2f", a/b}')"
fi
echo "rows: $TSV"
