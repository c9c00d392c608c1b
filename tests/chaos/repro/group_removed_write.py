"""Reproduction (issue 12, found by the chaos suite, seed 3): a member
taken out of the group that gave them Item Manager rights, away at the
time, writes to the folder afterwards; the write is accepted everywhere —
not quarantined, not listed as endorsed — although the removal's cutoff
(the remover's view: nothing of theirs) lies before it. The same scenario
with a direct `folder unshare` instead of `group remove` behaves: the
write is voided (and kept only if another user built on it).

Status: fixed by the replica rewrite (513f3d1): c's write is quarantined
("written after the author's removal ... (beyond its cutoff)") on a and d.
Exits 0 when fixed, 1 ("verdict: DEFECT") when the defect is back.

    python3 tests/chaos/repro/group_removed_write.py    (loopback only, --no-mdns)
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
W = Path("/tmp/coffer-repro-group-removed")
shutil.rmtree(W, ignore_errors=True)
PORTS = {"a": 17401, "c": 17403, "d": 17404}


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


a, c, d = dev("a", 0), dev("c", 1), dev("d", 2)
verdict = False
try:
    a.start(peers("c", "d"))
    c.start(peers("a", "d"))
    d.start(peers("a", "c"))
    ok(a, ["init", "--name", "A", "--email", "a@x.org", "--pin-stdin"], PIN + "\n")
    ok(a, ["team", "create", "T"])
    ok(a, ["group", "create", "it"])
    for j, email, extra in ((c, "c@x.org", ["--group", "it"]), (d, "d@x.org", [])):
        code = json.loads(ok(a, ["invite", email, "--json"] + extra).out)["code"]
        jj = Joining(j, ["join", code, "--peer", peers("a")[0]])
        vc = jj.verification_code(30)
        time.sleep(0.5)
        ok(a, ["invite", "confirm", vc])
        assert jj.finish(30) == 0
    ok(a, ["folder", "create", "F"])
    ok(a, ["folder", "share", "F", "--group", "it", "--role", "editor"])
    ok(a, ["folder", "share", "F", "--user", "d@x.org", "--role", "editor"])
    ok(a, ["add", "login", "before", "--folder", "F"], "pw\n")
    time.sleep(3)
    c.stop()
    d.stop()
    print(ok(a, ["group", "remove", "it", "c@x.org"]).out.strip().replace("\n", "; "))
    a.stop()
    c.start(peers("d"))
    c.unlock()
    d.start(peers("c"))
    d.unlock()
    print("c, away, writes after its removal: exit", c.cli(["add", "login", "by-c", "--folder", "F"], "pw\n").code)
    time.sleep(3)
    a.start(peers("c", "d"))
    a.unlock()
    time.sleep(6)
    verdict = True
    for x in (a, d):
        sp = next(s for s in x.sync_status()["spaces"] if s.get("name") == "F")
        print(x.name, names(x), "quarantined:", [(q["seq"], q["reason"]) for q in sp["quarantined"]],
              "endorsed:", len(sp.get("endorsed", [])))
        verdict &= names(x) == ["before"] and any("cutoff" in q["reason"] for q in sp["quarantined"])
    print("expected: a and d list only ['before']; c's write quarantined (beyond the group removal's cutoff)")
finally:
    for x in (a, c, d):
        x.stop()
print("verdict:", "fixed" if verdict else "DEFECT")
sys.exit(0 if verdict else 1)
