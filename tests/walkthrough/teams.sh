#!/usr/bin/env bash
# Runs docs/teams.md for real: four laptops (Ada, Bob, Bob's second laptop,
# Cyd), each a network namespace on one bridge with an IPv4 address and
# its IPv6 link-local one, each running cofferd as a laptop does (default
# listen addresses, mDNS on, no --peer anywhere). Prints the transcript the
# walkthrough quotes. Needs root (namespaces); everything it makes goes
# when it ends. By hand, not in CI:
#
#   cargo build --release && sudo bash tests/walkthrough/teams.sh > /tmp/teams.txt
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$ROOT/target/release}
PIN=246813
W=$(mktemp -d /tmp/coffer-walk.XXXXXX)
TAG=cw$$
LAPTOPS=(ada bob bob2 cyd)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for n in "${LAPTOPS[@]}" br; do ip netns del "$TAG-$n" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT
[[ $(id -u) == 0 ]] || { echo "needs root (network namespaces)" >&2; exit 2; }

# The LAN: a bridge namespace and one namespace per laptop.
ip netns add "$TAG-br"
ip -n "$TAG-br" link add br0 type bridge
ip -n "$TAG-br" link set br0 up
i=0
for n in "${LAPTOPS[@]}"; do
  i=$((i + 1))
  ip netns add "$TAG-$n"
  ip -n "$TAG-$n" link set lo up
  ip link add eth0 netns "$TAG-$n" type veth peer name "v$i" netns "$TAG-br"
  ip -n "$TAG-br" link set "v$i" master br0
  ip -n "$TAG-br" link set "v$i" up
  ip -n "$TAG-$n" addr add "192.168.1.$((19 + i))/24" dev eth0
  ip -n "$TAG-$n" link set eth0 up
done
for n in "${LAPTOPS[@]}"; do
  for _ in $(seq 1 200); do
    a=$(ip -n "$TAG-$n" -6 addr show dev eth0)
    [[ $a == *"inet6 fe80:"* && $a != *tentative* ]] && break
    sleep 0.1
  done
done

start() { # LAPTOP
  local n=$1
  mkdir -p "$W/$n"
  ip netns exec "$TAG-$n" "$BIN/cofferd" --data-dir "$W/$n/data" --socket "$W/$n/sock" \
    --config "$W/$n/none.toml" >"$W/$n/cofferd.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 500); do raw "$n" status >/dev/null 2>&1 && return; sleep 0.02; done
  echo "cofferd on $n did not start" >&2; exit 1
}
raw() { # LAPTOP ARGS... : coffer on that laptop, no transcript
  local n=$1; shift
  COFFER_SOCKET="$W/$n/sock" COFFER_NO_AUTOSTART=1 ip netns exec "$TAG-$n" "$BIN/coffer" "$@"
}
shown() { # the command as the transcript shows it: invite codes shortened
  sed -E 's/coffer-invite-[a-z0-9]+/coffer-invite-…/g' <<<"$*"
}
quoted() { # ARGS as a shell would need them: quotes around those with spaces
  local a out=()
  for a in "$@"; do
    if [[ $a == *[[:space:]\']* ]]; then out+=("\"$a\""); else out+=("$a"); fi
  done
  echo "${out[*]}"
}
say() { # LAPTOP STDIN ARGS... : run it and print it as the walkthrough quotes it
  local n=$1 input=$2; shift 2
  echo "$n\$ coffer $(shown "$(quoted "$@")")"
  local out rc=0
  out=$(raw "$n" "$@" <<<"$input" 2>&1) || rc=$?
  sed 's/^/  /' <<<"$out"
  [[ $rc == 0 ]] || echo "  (exit code $rc)"
  echo
}
code_of() { grep -o 'coffer-invite-[a-z0-9]*' | head -1; }
enrol() { # JOINER ADMIN KIND(invite|device) CODE [extra join args...]: join with no --peer
  local n=$1 admin=$2 kind=$3 code=$4; shift 4
  local cmd=(join "$code")
  [[ $kind == device ]] && cmd=(device join "$code")
  echo "$n\$ coffer $(shown "${cmd[*]}") $(quoted "$@")"
  raw "$n" "${cmd[@]}" "$@" --pin-stdin <<<"$PIN" >"$W/$n/join.out" 2>&1 &
  local jp=$!
  local vc=
  for _ in $(seq 1 600); do
    vc=$(grep -o 'Verification code: [0-9]\{3\} [0-9]\{3\}' "$W/$n/join.out" | head -1 | cut -d' ' -f3-) || true
    [[ -n $vc ]] && break
    kill -0 $jp 2>/dev/null || break
    sleep 0.05
  done
  echo
  [[ -n $vc ]] || { cat "$W/$n/join.out" >&2; exit 1; }
  say "$admin" "" "$kind" pending
  say "$admin" "" "$kind" confirm $vc
  wait $jp || true
  echo "(meanwhile on $n:)"
  sed 's/^/  /' "$W/$n/join.out"
  echo
}

for n in "${LAPTOPS[@]}"; do start "$n"; done

echo "## 1. Found the team"
say ada "$PIN" init --name 'Ada Admin' --email ada@example.com --pin-stdin
say ada "" team create "Acme IT"
say ada "" device rename "Ada's laptop"
say ada "" group create it

echo "## 2. Invite people"
out=$(raw ada invite bob@example.com --name Bob 2>&1)
echo "ada\$ coffer invite bob@example.com --name Bob"; sed 's/^/  /' <<<"$out"; echo
enrol bob ada invite "$(code_of <<<"$out")" --name "Bob's laptop"
code=$(raw ada invite cyd@example.com --name Cyd --group it 2>&1 | code_of)
echo "ada\$ coffer invite cyd@example.com --name Cyd --group it"; echo
enrol cyd ada invite "$code" --name "Cyd's laptop"
say ada "" user ls

echo "## 3. Share a folder with roles"
say ada "" folder create Registrar
say ada "" folder share Registrar --user bob@example.com --role editor
say ada "" folder share Registrar --group it --role member
say ada "registrar-pw-1" add login dns --folder Registrar --username ops
say ada "JBSWY3DPEHPK3PXP" totp set Registrar/dns
say bob "bob-mail-pw" add login mail --username bob

echo "## 4. Bob's second laptop"
out=$(raw bob device link 2>&1)
echo "bob\$ coffer device link"; sed 's/^/  /' <<<"$out"; echo
enrol bob2 bob device "$(code_of <<<"$out")" --name "Bob's second laptop"
for _ in $(seq 1 200); do raw bob2 ls --folder Personal 2>/dev/null | grep -q mail && break; sleep 0.1; done
say bob2 "" ls --folder Personal
for _ in $(seq 1 200); do raw bob2 totp Registrar/dns >/dev/null 2>&1 && raw cyd totp Registrar/dns >/dev/null 2>&1 && break; sleep 0.1; done
for n in bob bob2 cyd; do say "$n" "" totp Registrar/dns --at 1900000000; done

echo "## 5. Roles are enforced by every laptop"
say cyd "" edit Registrar/dns --username cyd
say bob "" edit Registrar/dns --username bob
for _ in $(seq 1 200); do raw ada get Registrar/dns --field username 2>/dev/null | grep -q bob && break; sleep 0.1; done
say ada "" get Registrar/dns

echo "## 6. Someone leaves a group"
say ada "" group remove it cyd@example.com
say ada "" folder members Registrar

echo "## 7. A laptop is lost"
say bob "" device ls
dev=$(raw bob2 device id --json | sed -n 's/.*"device_id": *"\([0-9a-f]*\)".*/\1/p' | head -1)
say bob "" device revoke "${dev:0:16}"
for _ in $(seq 1 300); do raw bob2 status 2>&1 | grep -q "revoked" && break; sleep 0.1; done
say bob2 "" status
say bob2 "pw" add login late
say ada "after-pw" add login after-revocation --folder Registrar
for _ in $(seq 1 200); do raw bob ls --folder Registrar 2>/dev/null | grep -q after-revocation && break; sleep 0.1; done
sleep 1
for n in bob bob2 cyd; do say "$n" "" ls --folder Registrar; done
say ada "" team show

echo "## 8. A forgotten PIN"
say bob "" reset --yes
for _ in $(seq 1 100); do raw bob status >/dev/null 2>&1 || break; sleep 0.1; done
start bob
out=$(raw ada invite bob@example.com --recover 2>&1)
echo "ada\$ coffer invite bob@example.com --recover"; sed 's/^/  /' <<<"$(shown "$out")"; echo
enrol bob ada invite "$(code_of <<<"$out")" --name "Bob's new laptop"
for _ in $(seq 1 300); do raw bob ls --folder Registrar 2>/dev/null | grep -q dns && break; sleep 0.1; done
say bob "" ls --folder Registrar
say bob "" ls --folder Personal
say bob "" device ls

echo "## 9. Renaming the team, and leaving it"
say ada "" team rename "Acme IT Ops"
say cyd "" team leave --yes
say ada "" team leave --yes
say ada "" user promote bob@example.com
say ada "" team handover bob@example.com
sleep 1
say ada "" user ls
say ada "" peers
say ada "" doctor
