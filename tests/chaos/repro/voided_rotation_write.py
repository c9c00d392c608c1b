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
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from two_laptops import TwoLaptops, names, ok  # noqa: E402

cluster = TwoLaptops("/tmp/coffer-repro-voided-rotation", 17601)
devs = cluster.devs
a, b1, b2, c = devs.values()
peers = cluster.peers
verdict = False
try:
    cluster.start()
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
    cluster.stop()
print("verdict:", "fixed" if verdict else "DEFECT")
sys.exit(0 if verdict else 1)
