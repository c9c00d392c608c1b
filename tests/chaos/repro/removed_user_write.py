"""Reproduction (issue 12, found by the chaos suite, seed 1): a user's
write made after `coffer user remove`, relayed by a member that had not
heard of the removal yet, is accepted by every device. The removal also
rotated no key ("rotated": []), and the grant that let the user in is
quarantined ("no such user in the team roster"), so the removal takes
nothing away in the folder. Expected: the write is quarantined (beyond
the removal's cutoff) everywhere, and the folder key rotates.

Status: the write is quarantined since the replica rewrite (513f3d1), but
on main the removal still rotates no key: a's direct grant of c is judged
after the concurrent roster removal ("no such user in the team roster")
and the key wraps it carried vanish with it, so `rotation_due` stays false
(crdt/src/state.rs, `State::apply`, MembershipOp::Grant). Fixed on branch
`removal` (038ba20). Exits 0 when fixed, 1 ("verdict: DEFECT") otherwise.

    python3 tests/chaos/repro/removed_user_write.py     (loopback only, --no-mdns)
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
W = Path("/tmp/coffer-repro-removed-user")
shutil.rmtree(W, ignore_errors=True)
PORTS = {"a": 17101, "c": 17103, "d": 17104}


def dev(n: str, i: int) -> Device:
    return Device(index=i, node=0, name=n, email="", dir=W / n, listen=f"/ip4/127.0.0.1/tcp/{PORTS[n]}",
                  bin_dir=B, netns_exec=[])


def peers(*ns: str) -> list[str]:
    return [f"/ip4/127.0.0.1/tcp/{PORTS[n]}" for n in ns]


def ok(d: Device, args: list[str], stdin: str = ""):
    r = d.cli(args, stdin)
    assert r.ok, (d.name, args, r.code, r.err)
    return r


def enrol(a: Device, j: Device, email: str) -> None:
    code = json.loads(ok(a, ["invite", email, "--json"]).out)["code"]
    jj = Joining(j, ["join", code, "--peer", peers("a")[0]])
    vc = jj.verification_code(30)
    time.sleep(0.5)
    ok(a, ["invite", "confirm", vc])
    assert jj.finish(30) == 0


def names(d: Device) -> list[str]:
    r = d.cli(["ls", "--folder", "F", "--json"])
    return sorted(i["name"] for i in json.loads(r.out)) if r.ok else [r.err.strip()]


a, c, d = dev("a", 0), dev("c", 1), dev("d", 2)
verdict = False
try:
    a.start(peers("c", "d"))
    c.start(peers("a", "d"))
    d.start(peers("a", "c"))
    ok(a, ["init", "--name", "A", "--email", "a@x.org", "--pin-stdin"], PIN + "\n")
    ok(a, ["team", "create", "T"])
    enrol(a, c, "c@x.org")
    enrol(a, d, "d@x.org")
    ok(a, ["folder", "create", "F"])
    ok(a, ["folder", "share", "F", "--user", "c@x.org", "--role", "editor"])
    ok(a, ["folder", "share", "F", "--user", "d@x.org", "--role", "editor"])
    ok(a, ["add", "login", "before", "--folder", "F"], "pw\n")
    for _ in range(100):
        if names(c) == ["before"] and names(d) == ["before"]:
            break
        time.sleep(0.2)
    d.stop()  # d is offline: it will not hear of the removal
    removal = ok(a, ["user", "remove", "c@x.org", "--json"]).out
    print("user remove:", removal.replace("\n", " "))
    rotated = json.loads(removal)["rotated"] == ["F"]
    time.sleep(1)
    print("c writes after its removal: exit", c.cli(["add", "login", "after-removal", "--folder", "F"], "pw\n").code)
    a.stop()  # d comes back next to c only, then meets a
    d.start(peers("c"))
    d.unlock()
    time.sleep(4)
    print("d, not yet told of the removal:", names(d))
    d.stop()
    a.start(peers("c", "d"))
    a.unlock()
    d.start(peers("a", "c"))
    d.unlock()
    time.sleep(6)
    verdict = rotated
    for x in (a, d):
        sp = next(s for s in x.sync_status()["spaces"] if s.get("name") == "F")
        print(x.name, names(x), "quarantined:", [(q["author"][:8], q["seq"], q["reason"]) for q in sp["quarantined"]])
        verdict &= names(x) == ["before"] and any("cutoff" in q["reason"] for q in sp["quarantined"])
    print("expected: a and d list only ['before']; c's after-removal write quarantined beyond the removal's cutoff;"
          " the removal rotated F's key")
finally:
    for x in (a, c, d):
        x.stop()
print("verdict:", "fixed" if verdict else "DEFECT")
sys.exit(0 if verdict else 1)
