#!/usr/bin/env bash
# `coffer get` with the audit trail on, 10,000 items (issue 13, acceptance
# 4): a release daemon, 10,000 logins imported in one call, then hyperfine
# of `coffer --version` (process start only), a masked `coffer get` (no
# secret served: no audit record) and `coffer get --field password` (the
# secret printed: a `reveal` record appended, signed, encrypted, fsynced).
# Usage: cargo build --release && python3 bench/audit_items.py && bench/audit_get_bench.sh
# Env: RUNS (default 200). Talks only to its own socket; kills only its daemon.
set -euo pipefail
export LC_ALL=C TZ=UTC
ROOT=$(cd "$(dirname "$0")/.." && pwd)
C=$ROOT/target/release/coffer
D=$ROOT/target/release/cofferd
W=$(mktemp -d /tmp/cfaudit.XXXXXX)
export COFFER_DATA_DIR=$W/data COFFER_SOCKET=$W/run/cofferd.sock COFFER_NO_AUTOSTART=1 COFFER_NO_NETWORK=1
"$D" >"$W/cofferd.log" 2>&1 &
DPID=$!
trap 'kill $DPID 2>/dev/null; wait 2>/dev/null; rm -rf "$W"' EXIT
for _ in $(seq 1 500); do "$C" status >/dev/null 2>&1 && break; sleep 0.01; done
echo 246813 | "$C" init --name Bench --email bench@example.invalid --pin-stdin >/dev/null
"$C" import ${ITEMS:-/tmp/coffer_audit_items.json} --format coffer-json >/dev/null
n0=$(sqlite3 "$W/data/vault.sqlite3" "SELECT COUNT(*) FROM audit")
"$C" get svc07770 >/dev/null
n1=$(sqlite3 "$W/data/vault.sqlite3" "SELECT COUNT(*) FROM audit")
echo "audit rows: before get $n0, after a masked get $n1"
hyperfine -N --style basic --warmup 10 --runs ${RUNS:-200} \
  "$C --version" \
  "$C get svc07770" \
  "$C get svc07770 --field password" \
  --export-json $W/get.json >/dev/null
jq -r '.results[] | "\(.command)\tmedian=\(.median*1000|.*100|round/100) ms\tmin=\(.min*1000|.*100|round/100)\tmax=\(.max*1000|.*100|round/100)"' $W/get.json
