"""Reproduction (issue 12, found by the chaos suite, seed 201 of the CI
profile): a member whose write was voided by a concurrent demotion can
never write to that folder again, even once promoted back: every write
fails with `internal error: refused: Quarantined(Malformed("another
change of its Automerge actor has the same seq"))`. The rebuilt document
reuses the Automerge seq of the device's own quarantined change (the
actor is per device and incarnation, and a demotion keeps the
incarnation). Expected: the write succeeds (and the daemon re-applies its
own dropped change, or at least writes past it).

Status: fixed by the replica rewrite (513f3d1): the write succeeds.
Exits 0 when fixed, 1 ("verdict: DEFECT") when the defect is back.

    python3 tests/chaos/repro/demoted_writer_stuck.py   (loopback only, --no-mdns)
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
W = Path("/tmp/coffer-repro-demoted")
shutil.rmtree(W, ignore_errors=True)
PORTS = {"a": 17501, "c": 17503}


def dev(n: str, i: int) -> Device:
    return Device(index=i, node=0, name=n, email="", dir=W / n, listen=f"/ip4/127.0.0.1/tcp/{PORTS[n]}",
                  bin_dir=B, netns_exec=[])


def peers(*ns: str) -> list[str]:
    return [f"/ip4/127.0.0.1/tcp/{PORTS[n]}" for n in ns]


def ok(d: Device, args: list[str], stdin: str = ""):
    r = d.cli(args, stdin)
    assert r.ok, (d.name, args, r.code, r.err)
    return r


def names(d: Device) -> list[str]:
    return sorted(i["name"] for i in d.cli_json(["ls", "--folder", "F"]) or [])


a, c = dev("a", 0), dev("c", 1)
verdict = False
try:
    a.start(peers("c"))
    c.start(peers("a"))
    ok(a, ["init", "--name", "A", "--email", "a@x.org", "--pin-stdin"], PIN + "\n")
    ok(a, ["team", "create", "T"])
    code = json.loads(ok(a, ["invite", "c@x.org", "--json"]).out)["code"]
    j = Joining(c, ["join", code, "--peer", peers("a")[0]])
    vc = j.verification_code(30)
    time.sleep(0.5)
    ok(a, ["invite", "confirm", vc])
    assert j.finish(30) == 0
    ok(a, ["folder", "create", "F"])
    ok(a, ["folder", "share", "F", "--user", "c@x.org", "--role", "editor"])
    for _ in range(100):
        if c.cli_json(["ls", "--folder", "F"]) is not None:
            break
        time.sleep(0.2)
    ok(c, ["add", "login", "c1", "--folder", "F"], "pw\n")
    time.sleep(2)
    a.stop()
    ok(c, ["add", "login", "c2-concurrent", "--folder", "F"], "pw\n")  # a does not see it yet
    c.stop()
    a.start(peers("c"))
    a.unlock()
    ok(a, ["folder", "role", "F", "--user", "c@x.org", "--role", "member"])  # cutoff: c1 only
    ok(a, ["folder", "role", "F", "--user", "c@x.org", "--role", "editor"])  # and back
    c.start(peers("a"))
    c.unlock()
    time.sleep(5)
    print("a:", names(a), " c:", names(c))
    r = c.cli(["add", "login", "c3-after", "--folder", "F"], "pw\n")
    print("c, an Item Manager again, adds an item: exit", r.code, r.err.strip())
    print("expected: exit 0")
    verdict = r.ok
finally:
    for x in (a, c):
        x.stop()
print("verdict:", "fixed" if verdict else "DEFECT")
sys.exit(0 if verdict else 1)
