"""The set-up both four-daemon reproductions share (revoked_rotation.py,
voided_rotation_write.py): daemons a (team admin), b1 and b2 (bob's two
laptops) and c on loopback ports, no namespaces, no mDNS; team T; folder F
shared with bob as Folder Manager and with c as Item Manager; item "first"
in F, seen by every device."""
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cluster import PIN, Device, Joining  # noqa: E402

BIN = Path(__file__).resolve().parents[3] / "target" / "debug"


class TwoLaptops:
    def __init__(self, work: str, first_port: int):
        self.work = Path(work)
        shutil.rmtree(self.work, ignore_errors=True)
        self.ports = {n: first_port + i for i, n in enumerate(("a", "b1", "b2", "c"))}
        self.devs = {
            n: Device(index=i, node=0, name=n, email="", dir=self.work / n,
                      listen=self.addr(n), bin_dir=BIN, netns_exec=[])
            for i, n in enumerate(self.ports)
        }

    def addr(self, n: str) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.ports[n]}"

    def peers(self, *ns: str) -> list[str]:
        return [self.addr(n) for n in ns]

    def ceremony(self, inviter: Device, joiner: Device, code: str, what: str) -> None:
        j = Joining(joiner, (["join"] if what == "invite" else ["device", "join"]) +
                    [code, "--peer", self.addr(inviter.name)])
        vc = j.verification_code(30)
        time.sleep(0.5)
        ok(inviter, [what, "confirm", vc])
        assert j.finish(30) == 0

    def start(self) -> None:
        """Starts every daemon and builds the team, F and "first"."""
        a, b1, b2, c = self.devs.values()
        for n, d in self.devs.items():
            d.start(self.peers(*[m for m in self.ports if m != n]))
        ok(a, ["init", "--name", "A", "--email", "a@x.org", "--pin-stdin"], PIN + "\n")
        ok(a, ["team", "create", "T"])
        self.ceremony(a, b1, json.loads(ok(a, ["invite", "b@x.org", "--json"]).out)["code"], "invite")
        self.ceremony(b1, b2, json.loads(ok(b1, ["device", "link", "--json"]).out)["code"], "device")
        self.ceremony(a, c, json.loads(ok(a, ["invite", "c@x.org", "--json"]).out)["code"], "invite")
        ok(a, ["folder", "create", "F"])
        ok(a, ["folder", "share", "F", "--user", "b@x.org", "--role", "manager"])
        ok(a, ["folder", "share", "F", "--user", "c@x.org", "--role", "editor"])
        ok(a, ["add", "login", "first", "--folder", "F"], "pw\n")
        for _ in range(100):
            if all(names(d) == ["first"] for d in self.devs.values()):
                break
            time.sleep(0.2)

    def stop(self) -> None:
        for d in self.devs.values():
            d.stop()


def ok(d: Device, args: list[str], stdin: str = ""):
    r = d.cli(args, stdin)
    assert r.ok, (d.name, args, r.code, r.err)
    return r


def names(d: Device) -> list[str]:
    r = d.cli(["ls", "--folder", "F", "--json"])
    return sorted(i["name"] for i in json.loads(r.out)) if r.ok else [r.err.strip()]
