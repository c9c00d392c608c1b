"""Reproduction (issue 12, found by the chaos suite on the replica daemon,
seed 4 of the 90 s profile, second run): an honest member's acknowledged
write is lost when it was made under a folder key whose rotation is later
voided. bob's second laptop b2, a Folder Manager device, takes c out of F
(and so rotates F's key) while bob's first laptop b1 is away; a, the team
admin, hears of the rotation and writes under the new key; b1, which never
saw b2's unshare, then revokes b2. The revocation's cutoff lies before the
unshare and its rotation, so both are voided ("made concurrently with the
author's removal ... and after its cutoff", as designed), and a's write,
sealed under the voided epoch, is quarantined on every device, a's own
included: "wrong key epoch: the epoch's rotation did not take effect"
(crdt/src/accept.rs, `content_validity`: the epoch must still stand in
R(all)). Nothing re-applies it: the replica (crdt/src/replica/) does not
re-seal its own honest content that became StaleEpoch under the standing
epoch, and no documented rule explains the loss (docs/RELIABILITY.md).
Expected: a still lists 'under-b2s-key' (re-applied under the standing key),
or the loss is documented and the write is reported as such.

Exits 0 when fixed, 1 ("verdict: DEFECT") while the defect is there.

    python3 tests/chaos/repro/voided_rotation_write.py    (loopback only, --no-mdns)
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
W = Path("/tmp/coffer-repro-voided-rotation")
shutil.rmtree(W, ignore_errors=True)
PORTS = {"a": 17601, "b1": 17602, "b2": 17603, "c": 17604}


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
    for _ in range(100):
        if all(names(d) == ["first"] for d in devs.values()):
            break
        time.sleep(0.2)
    b2_id = b2.cli_json(["status"])["device_id"]
    # 1. b1 is away; b2 takes c out of F, which rotates F's key; a hears of it.
    b1.stop()
    ok(b2, ["folder", "unshare", "F", "--user", "c@x.org"])
    time.sleep(3)
    print("epochs on a after b2's unshare:", a.cli_json(["folder", "members", "F"])["epochs"])
    # 2. a writes under b2's key.
    ok(a, ["add", "login", "under-b2s-key", "--folder", "F"], "pw\n")
    print("a, before the revocation:", names(a))
    # 3. b1, alone (it never saw b2's unshare), revokes b2.
    a.stop()
    b2.stop()
    c.stop()
    b1.start([])
    b1.unlock()
    ok(b1, ["device", "revoke", b2_id])
    # 4. a and b1 meet.
    a.start(peers("b1"))
    a.unlock()
    b1.stop()
    b1.start(peers("a"))
    b1.unlock()
    time.sleep(6)
    after = {n: names(devs[n]) for n in ("a", "b1")}
    print("after the revocation:", after)
    sp = next(s for s in a.sync_status()["spaces"] if s.get("name") == "F")
    for q in sp["quarantined"]:
        print("  quarantined on a:", q["author"][:8], q["seq"], q["reason"])
    print("expected: a and b1 list ['first', 'under-b2s-key'] (a is an honest admin; its write was acknowledged)")
    verdict = all(v == ["first", "under-b2s-key"] for v in after.values())
finally:
    for d in devs.values():
        d.stop()
print("verdict:", "fixed" if verdict else "DEFECT")
sys.exit(0 if verdict else 1)
