"""Reproduction (issue 12, found by the chaos suite, seed 3): revoking a
device voids the folder-key rotation that device made while it was a
member ("not authorised: only a member device may rotate the folder key"),
and with it every change anyone wrote under that key ("wrong key epoch:
the epoch's rotation did not take effect"): acknowledged writes vanish on
every device. No partition, no crash: five commands in order.

Run as root or not (loopback only, --no-mdns):
Status: fixed by the replica rewrite (513f3d1): nothing is voided.
Exits 0 when fixed, 1 ("verdict: DEFECT") when the defect is back.

    python3 tests/chaos/repro/revoked_rotation.py
"""
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cluster import PIN, Device, Joining  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
B = ROOT / "target" / "debug"
W = Path("/tmp/coffer-repro-rotation")
shutil.rmtree(W, ignore_errors=True)
PORTS = {"a": 17201, "b1": 17202, "b2": 17203, "c": 17204}


def dev(n: str, i: int) -> Device:
    return Device(index=i, node=0, name=n, email="", dir=W / n, listen=f"/ip4/127.0.0.1/tcp/{PORTS[n]}",
                  bin_dir=B, netns_exec=[])


def peers(*ns: str) -> list[str]:
    return [f"/ip4/127.0.0.1/tcp/{PORTS[n]}" for n in ns]


def ok(d: Device, args: list[str], stdin: str = ""):
    r = d.cli(args, stdin)
    assert r.ok, (d.name, args, r.code, r.err)
    return r


def ceremony(inviter: Device, joiner: Device, code: str, what: str) -> None:
    j = Joining(joiner, (["join"] if what == "invite" else ["device", "join"]) +
                [code, "--peer", peers(inviter.name)[0]])
    vc = j.verification_code(30)
    time.sleep(0.5)
    ok(inviter, [what, "confirm", vc])
    assert j.finish(30) == 0


def names(d: Device) -> list[str]:
    r = d.cli(["ls", "--folder", "F", "--json"])
    return sorted(i["name"] for i in json.loads(r.out)) if r.ok else [r.err.strip()]


devs = {n: dev(n, i) for i, n in enumerate(PORTS)}
a, b1, b2, c = devs.values()
verdict = False
try:
    for n, d in devs.items():
        d.start(peers(*[m for m in PORTS if m != n]))
    ok(a, ["init", "--name", "A", "--email", "a@x.org", "--pin-stdin"], PIN + "\n")
    ok(a, ["team", "create", "T"])
    ceremony(a, b1, json.loads(ok(a, ["invite", "b@x.org", "--json"]).out)["code"], "invite")
    ceremony(b1, b2, json.loads(ok(b1, ["device", "link", "--json"]).out)["code"], "device")
    ceremony(a, c, json.loads(ok(a, ["invite", "c@x.org", "--json"]).out)["code"], "invite")
    ok(a, ["folder", "create", "F"])
    ok(a, ["folder", "share", "F", "--user", "b@x.org", "--role", "manager"])
    ok(a, ["folder", "share", "F", "--user", "c@x.org", "--role", "editor"])
    ok(a, ["add", "login", "first", "--folder", "F"], "pw\n")
    time.sleep(3)
    # 1. bob's second laptop takes c out of F: it rotates the key.
    ok(b2, ["folder", "unshare", "F", "--user", "c@x.org"])
    time.sleep(3)
    print("epochs after b2's unshare:", a.cli_json(["folder", "members", "F"])["epochs"])
    # 2. a writes under b2's new key; everyone sees it.
    ok(a, ["add", "login", "under-b2s-key", "--folder", "F"], "pw\n")
    time.sleep(3)
    print("before the revocation:", {n: names(d) for n, d in devs.items() if n != "c"})
    # 3. bob revokes his second laptop (lost laptop).
    ok(b1, ["device", "revoke", b2.cli_json(["status"])["device_id"]])
    time.sleep(4)
    after = {n: names(d) for n in ("a", "b1") for d in [devs[n]]}
    print("after the revocation: ", after)
    verdict = all(v == ["first", "under-b2s-key"] for v in after.values())
    st = a.sync_status()
    sp = next(s for s in st["spaces"] if s.get("name") == "F")
    for q in sp["quarantined"]:
        print("  quarantined on a:", q["author"][:8], q["seq"], q["reason"])
    print("expected: a and b1 still list ['first', 'under-b2s-key'] (b2's rotation was made while it was a member)")
finally:
    for d in devs.values():
        d.stop()
print("verdict:", "fixed" if verdict else "DEFECT")
sys.exit(0 if verdict else 1)
