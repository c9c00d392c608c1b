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
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from two_laptops import TwoLaptops, names, ok  # noqa: E402

cluster = TwoLaptops("/tmp/coffer-repro-rotation", 17201)
devs = cluster.devs
a, b1, b2, c = devs.values()
peers = cluster.peers
verdict = False
try:
    cluster.start()
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
    cluster.stop()
print("verdict:", "fixed" if verdict else "DEFECT")
sys.exit(0 if verdict else 1)
