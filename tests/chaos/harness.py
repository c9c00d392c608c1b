"""One chaos run: set up a team of real daemons in network namespaces, play
a plan's workload and faults against them, heal, settle, collect, check.

`python3 harness.py --seed S --secs N --nodes K --bin-dir DIR --workdir DIR
--prefix P` (run.sh does this as root, builds the binaries and cleans up
whatever a crash of this script leaves). The last line printed is the
verdict (checker.py).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checker  # noqa: E402
from cluster import PIN, Device, Joining, tail  # noqa: E402
from model import Model  # noqa: E402
from net import BRIDGE_IP, Net, node_ip, proxy_port  # noqa: E402
from plan import OPTIONAL, Fault, Op, Plan, make_plan  # noqa: E402

DEVICE_PORT = 7373
SETUP_TIMEOUT = 90.0
CONVERGE_SECS = 120.0  # the stated bound: see docs/RELIABILITY.md
TMPFS_MB = 96


def log(msg: str) -> None:
    print(f"chaos: {msg}", flush=True)


class Proxy:
    def __init__(self, net: Net, workdir: Path):
        self.sock_path = workdir / "proxy.sock"
        here = Path(__file__).resolve().parent
        self.proc = subprocess.Popen(net.bridge_prefix() + [sys.executable, str(here / "proxy.py"), str(self.sock_path)],
                                     stdout=subprocess.PIPE, stderr=open(workdir / "proxy.log", "ab"), text=True,
                                     start_new_session=True)
        line = self.proc.stdout.readline()
        if "ready" not in line:
            raise RuntimeError(f"the proxy did not start: {line!r}")
        import socket
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(self.sock_path))
        self.file = self.sock.makefile("rw")
        self.lock = threading.Lock()

    def call(self, **msg) -> dict:
        with self.lock:
            self.file.write(json.dumps(msg) + "\n")
            self.file.flush()
            reply = json.loads(self.file.readline())
        if not reply.get("ok"):
            raise RuntimeError(f"proxy: {reply}")
        return reply

    def stop(self) -> None:
        try:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            pass


class Run:
    def __init__(self, plan: Plan, workdir: Path, bin_dir: Path, prefix: str, mem_limit_mib: int):
        self.plan = plan
        self.workdir = workdir
        self.bin_dir = bin_dir
        self.prefix = prefix
        self.mem_limit_mib = mem_limit_mib
        self.net = Net(prefix, plan.nodes)
        self.proxy: Proxy | None = None
        self.devices: dict[str, Device] = {}
        self.history: list[dict] = []
        self.hlock = threading.Lock()
        self.start_lock = threading.Lock()
        self.hfile = open(workdir / "history.jsonl", "w")
        self.t_start = time.monotonic()
        self.stop_event = threading.Event()
        self.busy: dict[str, str] = {}  # device -> kind of the op in flight
        self.partitions = 0
        self.kills = 0
        self.faults_done: list[dict] = []
        self.model = Model(plan.setup_groups, plan.setup_grants, "ada@example.com",
                           {d.label: d.email for d in plan.devices})
        self.setup_notes: list[str] = []
        self.tmpfs_mounts: list[Path] = []
        self.filler: dict[str, Path] = {}
        self.corrupted: list[dict] = []  # {dev, t}
        self.errors: list[str] = []  # harness-level problems (not verdicts)
        self.shared_ids: dict[str, str] = {}  # shared folder name -> folder id
        self.folder_names: dict[str, str] = {}  # folder id -> name (names show only while unlocked)

    # ---- time and history ---------------------------------------------------

    def now(self) -> float:
        return round(time.monotonic() - self.t_start, 3)

    def record(self, rec: dict) -> dict:
        with self.hlock:
            rec["seq"] = len(self.history)
            self.history.append(rec)
            self.hfile.write(json.dumps(rec, default=str) + "\n")
            self.hfile.flush()
        return rec

    # ---- setup ------------------------------------------------------------

    def peers_for(self, dev: Device) -> list[str]:
        return [f"/ip4/{BRIDGE_IP}/tcp/{proxy_port(d.index)}" for d in self.devices.values() if d is not dev]

    def add_device(self, label: str) -> Device:
        spec = self.plan.device(label)
        d = Device(index=spec.index, node=spec.node, name=label, email=spec.email,
                   dir=self.workdir / label, listen=f"/ip4/{node_ip(spec.node)}/tcp/{DEVICE_PORT + spec.index}",
                   bin_dir=self.bin_dir, netns_exec=self.net.exec_prefix(spec.node), tmpfs=spec.tmpfs)
        d.dir.mkdir(parents=True, exist_ok=True)
        if spec.tmpfs:
            d.data.mkdir(parents=True, exist_ok=True)
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m,mode=0700", "tmpfs", str(d.data)],
                           check=True)
            self.tmpfs_mounts.append(d.data)
        self.devices[label] = d
        self.net.devices_on[spec.node].add(spec.index)
        self.proxy.call(cmd="listen", device=spec.index, node=spec.node,
                        target=f"{node_ip(spec.node)}:{DEVICE_PORT + spec.index}")
        self.net.apply_partition()
        return d

    def start_device(self, d: Device) -> None:
        # The workload (an enrolment starting a new device) and the fault
        # loop (a kill's restart) may both start one device: whoever comes
        # second finds it running and leaves it (seed 60102 asserted).
        with self.start_lock:
            if d.running():
                d.expect_exit = False
                return
            d.start(self.peers_for(d))
            d.expect_exit = False

    def setup(self) -> None:
        self.net.up()
        self.proxy = Proxy(self.net, self.workdir)
        initial = [s for s in self.plan.devices if s.initial]
        for s in initial:
            self.start_device(self.add_device(s.label))
        ada = self.devices["ada"]
        must(ada.cli(["init", "--name", "Ada Admin", "--email", "ada@example.com", "--pin-stdin"], PIN + "\n"), "init")
        must(ada.cli(["team", "create", "Acme IT"]), "team create")
        for g in self.plan.setup_groups:
            must(ada.cli(["group", "create", g]), "group create")
        for f in self.plan.setup_grants:
            must(ada.cli(["folder", "create", f]), "folder create")
        for s in initial:
            if s.label == "ada":
                continue
            dev = self.devices[s.label]
            if s.label == "bob2":
                ok = self.link_device(self.devices["bob"], dev)
            else:
                groups = [g for g, es in self.plan.setup_groups.items() if s.email in es]
                ok = self.invite(ada, dev, s.email, groups)
            if not ok:
                raise RuntimeError(f"setup: enrolling {s.label} failed")
        for folder, grants in self.plan.setup_grants.items():
            for principal, role in grants.items():
                kind, who = principal.split(":", 1)
                must(ada.cli(["folder", "share", folder, f"--{kind}", who, "--role", role]), "share")
        for d in self.devices.values():
            st = d.cli_json(["status"])
            d.device_id = st["device_id"]
        for sp in ada.sync_status()["spaces"]:
            if sp.get("name") in self.plan.setup_grants:
                self.shared_ids[sp["name"]] = sp["folder_id"]
                self.folder_names[sp["folder_id"]] = sp["name"]
        self.wait_setup_converged()

    def wait_setup_converged(self) -> None:
        """Every initial device holds the folders it is a member of, with the
        same digests as ada."""
        deadline = time.monotonic() + SETUP_TIMEOUT
        while True:
            ok, why = self.converged()
            if ok:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"setup did not converge: {why}")
            time.sleep(1)

    def invite(self, inviter: Device, joiner: Device, email: str, groups: list[str]) -> bool:
        args = ["invite", email, "--json"]
        for g in groups:
            args += ["--group", g]
        r = inviter.cli(args)
        if not r.ok:
            self.setup_notes.append(f"invite {email}: exit {r.code}: {r.err.strip()}")
            return False
        code = r.json()["code"]
        return self.ceremony(inviter, joiner, ["join", code, "--peer", self.addr(inviter)], "invite")

    def link_device(self, owner: Device, joiner: Device) -> bool:
        r = owner.cli(["device", "link", "--json"])
        if not r.ok:
            self.setup_notes.append(f"device link on {owner.name}: exit {r.code}: {r.err.strip()}")
            return False
        code = r.json()["code"]
        return self.ceremony(owner, joiner, ["device", "join", code, "--peer", self.addr(owner)], "device")

    def addr(self, d: Device) -> str:
        return f"/ip4/{BRIDGE_IP}/tcp/{proxy_port(d.index)}"

    def ceremony(self, inviter: Device, joiner: Device, join_args: list[str], what: str) -> bool:
        j = Joining(joiner, join_args)
        vc = j.verification_code(45)
        if vc is None:
            j.finish(5)
            self.setup_notes.append(f"{joiner.name}: no verification code ({''.join(j.lines)} {j.err.strip()})")
            return False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            p = inviter.cli_json([what, "pending"]) or []
            match = [x for x in p if x.get("verification_code") == vc]
            if match:
                break
            time.sleep(0.2)
        else:
            j.proc.kill()
            self.setup_notes.append(f"{joiner.name}: the join never showed as pending on {inviter.name}")
            return False
        r = inviter.cli([what, "confirm", vc])
        code = j.finish(60)
        if not r.ok or code != 0:
            self.setup_notes.append(f"{joiner.name}: confirm exit {r.code}, join exit {code}: {j.err.strip()}")
            return False
        return True

    # ---- convergence ------------------------------------------------------

    def live(self) -> list[Device]:
        return [d for d in self.devices.values() if d.running()]

    def final_members(self, statuses: dict[str, dict]) -> dict[str, set[str]]:
        """folder name -> labels of the devices that must converge on it:
        ada's view of its members (ada founded both folders and stays their
        manager), restricted to devices the run has."""
        by_id = {d.device_id: d.name for d in self.devices.values() if d.device_id}
        out: dict[str, set[str]] = {}
        ada = statuses.get("ada")
        if not ada:
            return out
        for name, fid in self.shared_ids.items():
            sp = next((x for x in ada["spaces"] if x["folder_id"] == fid), None)
            if sp is not None:
                labels = {by_id[m] for m in sp["members"] if m in by_id}
                labels.add("ada")
                out[name] = labels
        return out

    def space(self, status: dict | None, folder: str) -> dict | None:
        fid = self.shared_ids.get(folder)
        if not status or not fid:
            return None
        return next((sp for sp in status.get("spaces", []) if sp["folder_id"] == fid), None)

    def statuses(self) -> dict[str, dict]:
        out = {}
        for d in self.live():
            st = d.sync_status()
            if st:
                out[d.name] = st
        return out

    def converged(self) -> tuple[bool, str]:
        st = self.statuses()
        members = self.final_members(st)
        if set(members) != set(self.plan.setup_grants):
            return False, f"ada does not list every shared folder yet ({sorted(members)})"
        for folder, labels in members.items():
            seen = {}
            for label in labels:
                sp = self.space(st.get(label), folder)
                if sp is None:
                    return False, f"{label} does not hold {folder}"
                if sp.get("items_digest") is None:
                    return False, f"{label} cannot read {folder}"
                seen[label] = (sp["digest"], sp["items_digest"])
            if len(set(seen.values())) != 1:
                return False, f"{folder} differs: " + ", ".join(f"{k}={v[0][:8]}/{v[1][:8]}" for k, v in sorted(seen.items()))
        return True, ""

    # ---- the workload -------------------------------------------------------

    def snapshot(self, d: Device) -> dict | None:
        """This device's own seq and its member list, per folder name."""
        st = d.sync_status()
        if not st:
            return None
        me = st.get("device_id")
        out = {}
        for sp in st["spaces"]:
            fid = sp["folder_id"]
            if sp.get("name"):
                # Personal folders share a name across devices; ids are per device.
                self.folder_names[fid] = sp["name"]
            name = self.folder_names.get(fid, fid[:16])
            out[name] = {"self": sp["version_vector"].get(me, 0), "members": sp["members"], "folder_id": fid}
        return out

    def worker(self, label: str, ops: list[Op]) -> None:
        for op in ops:
            if self.stop_event.is_set():
                return
            wait = op.t - self.now()
            if wait > 0 and self.stop_event.wait(wait):
                return
            d = self.devices.get(label)
            if d is None:
                self.record({"type": "op", "op": op.id, "dev": label, "kind": op.kind, "args": op.args,
                             "skipped": "device not enrolled", "t0": self.now(), "t1": self.now()})
                continue
            self.busy[label] = op.kind
            try:
                self.execute_with_retries(d, op)
            except Exception as e:  # the harness must not die mid-run
                self.errors.append(f"op {op.id} on {label}: {e!r}\n{traceback.format_exc()}")
            finally:
                self.busy.pop(label, None)

    def execute_with_retries(self, d: Device, op: Op) -> None:
        """The roster script (revoke, user remove, enrolments) is retried a
        few times when the issuer is down or locked, so that a run has them;
        every attempt is its own history entry."""
        for attempt in range(6):
            rec = self.execute(d, op)
            if op.kind not in ("revoke", "user_remove", "link", "invite") or rec.get("code") == 0:
                return
            if rec.get("code") == 3 or "locked" in (rec.get("err") or ""):
                d.unlock()
            if self.stop_event.wait(2.0):
                return

    def execute(self, d: Device, op: Op) -> dict:
        a = op.args
        kind = op.kind
        rec = {"type": "op", "op": op.id, "dev": d.name, "kind": kind, "args": a,
               "static_forbidden": op.static_forbidden}
        write = kind in ("add", "edit", "rm", "restore", "totp_set", "import")
        if write:
            rec["pre"] = self.snapshot(d)
        stdin = ""
        if kind == "add":
            args = ["add", "login", a["name"], "--folder", a["folder"], "--username", f"u{op.id}", "--json"]
            stdin = f"pw{op.id}\n"
            rec["value"] = f"pw{op.id}"
        elif kind == "edit":
            args = ["edit", a["item"], "--password-stdin", "--json"]
            stdin = f"e{op.id}\n"
            rec["value"] = f"e{op.id}"
        elif kind == "rm":
            args = ["rm", a["item"]]
        elif kind == "restore":
            args = ["restore", a["item"]]
        elif kind == "totp_set":
            secret = base64.b32encode(f"t{op.id:09d}".encode()).decode().rstrip("=")
            args = ["totp", "set", a["item"]]
            stdin = secret + "\n"
            rec["value"] = secret
        elif kind == "import":
            path = self.workdir / "imports" / f"i{op.id}.json"
            path.parent.mkdir(exist_ok=True)
            names = [f"i{op.id}-{k}" for k in range(a["count"])]
            items = [{"type": 1, "name": n, "login": {"username": f"u{op.id}", "password": f"ip{op.id}-{k}",
                                                       "uris": []}} for k, n in enumerate(names)]
            path.write_text(json.dumps({"encrypted": False, "folders": [], "items": items}))
            args = ["import", str(path), "--format", "bitwarden-json", "--folder", a["folder"], "--json"]
            rec["names"] = names
        elif kind == "lock":
            args = ["lock"]
        elif kind == "unlock":
            args = ["unlock", "--pin-stdin"]
            stdin = PIN + "\n"
        elif kind in ("share", "unshare"):
            pk, who = a["principal"].split(":", 1)
            args = ["folder", a.get("cmd", kind) if kind == "share" else kind, a["folder"], f"--{pk}", who]
            if kind == "share":
                args += ["--role", a["role"]]
        elif kind in ("group_add", "group_remove"):
            args = ["group", kind.split("_")[1], a["group"], a["email"]]
        elif kind == "user_remove":
            args = ["user", "remove", a["email"], "--json"]
        elif kind == "revoke":
            target = self.devices.get(a["target"])
            args = ["device", "revoke", target.device_id if target and target.device_id else "0" * 64, "--json"]
        elif kind == "group_create":
            args = ["group", "create", a["group"]]
        elif kind == "invite_x":
            args = ["invite", a["email"], "--json"]
        elif kind == "user_remove_x":
            args = ["user", "remove", a["email"]]
        elif kind in ("link", "invite"):
            return self.execute_enrol(d, op, rec)
        else:
            raise ValueError(f"unknown op kind {kind}")
        rec["t0"], rec["w0"] = self.now(), time.time() * 1000
        r = d.cli(args, stdin)
        rec["t1"], rec["w1"] = self.now(), time.time() * 1000
        rec.update(code=r.code, out=r.out[-400:], err=r.err[-400:])
        if write:
            rec["post"] = self.snapshot(d)
            if kind != "import" and r.ok and r.json():
                rec["folder"] = r.json().get("folder")
        self.model_update(op, rec)
        return self.record(rec)

    def execute_enrol(self, d: Device, op: Op, rec: dict) -> dict:
        a = op.args
        rec["t0"] = self.now()
        new = self.plan.device(a["new"])
        ok = False
        try:
            st = d.cli_json(["status"])
            if st and st.get("locked"):
                # An admin unlocks to enrol someone.
                rec["unlocked_first"] = d.unlock().code
            nd = self.devices.get(new.label) or self.add_device(new.label)
            if not nd.running():
                self.start_device(nd)
            if op.kind == "link":
                ok = self.link_device(d, nd)
            else:
                ok = self.invite(d, nd, a["email"], a.get("groups", []))
            if ok:
                st = nd.cli_json(["status"])
                nd.device_id = st["device_id"] if st else None
                if nd.device_id is None:
                    ok = False
        except Exception as e:
            self.setup_notes.append(f"enrolling {new.label}: {e!r}")
        rec["t1"] = self.now()
        rec["code"] = 0 if ok else 1
        if not ok:
            rec["err"] = "; ".join(self.setup_notes[-2:])
        self.model_update(op, rec)
        return self.record(rec)

    def model_update(self, op: Op, rec: dict) -> None:
        if op.static_forbidden:
            return
        a, m, t0, t1 = op.args, self.model, rec["t0"], rec["t1"]
        code, err = rec.get("code"), rec.get("err") or ""

        def put(fact: tuple, value: object) -> None:
            m.record(fact, t0, t1, value, code, err)

        if op.kind == "share":
            put(("grant", a["folder"], a["principal"]), a["role"])
        elif op.kind == "unshare":
            put(("grant", a["folder"], a["principal"]), "none")
        elif op.kind in ("group_add", "group_remove"):
            put(("member", a["group"], a["email"]), op.kind == "group_add")
        elif op.kind == "user_remove":
            put(("removed", a["email"]), True)
            # The roster revokes every device the user has: they stay out
            # even if the user is invited again (on a new device).
            for d in self.devices.values():
                if d.email == a["email"]:
                    put(("revoked", d.name), True)
        elif op.kind == "revoke":
            put(("revoked", a["target"]), True)
        elif op.kind == "invite":
            email = a["email"]
            # A re-invited user: what their old grants mean now is not ours
            # to guess; each becomes uncertain until its issuer sets it again.
            for fact in m.facts_about(email):
                m.record_uncertain(fact, t0, t1, "none" if fact[0] == "grant" else False)
            put(("removed", email), False)
            for g in a.get("groups", []):
                put(("member", g, email), True)

    # ---- faults -------------------------------------------------------------

    def fault_loop(self, faults: list[Fault]) -> None:
        for f in faults:
            wait = f.t - self.now()
            if wait > 0 and self.stop_event.wait(wait):
                return
            if self.stop_event.is_set():
                return
            try:
                self.inject(f)
            except Exception as e:
                self.errors.append(f"fault {f.id} {f.kind}: {e!r}\n{traceback.format_exc()}")

    def inject(self, f: Fault) -> None:
        a = f.args
        rec = {"type": "fault", "fault": f.id, "kind": f.kind, "args": a, "t0": self.now()}
        if f.kind == "net":
            self.apply_net(a)
            if a["shape"] != "healed":
                self.partitions += 1
            rec["t1"] = self.now()
            self.record(rec)
            return
        d = self.devices.get(a["dev"])
        if f.kind != "kill_mid_import" and (d is None or not d.running()):
            rec.update(t1=self.now(), skipped="device not running")
            self.record(rec)
            return
        if f.kind == "kill_mid_import":
            # Wait (a little) for an import or an enrolment in flight anywhere.
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline and not self.stop_event.is_set():
                busy = [x for x, k in self.busy.items() if k in ("import", "link", "invite")]
                if busy and self.devices[busy[0]].running():
                    d = self.devices[busy[0]]
                    break
                time.sleep(0.05)
            if d is None or not d.running():
                rec.update(t1=self.now(), skipped="no import in flight and the device is not running")
                self.record(rec)
                return
            time.sleep(random.Random(f.id).uniform(0.02, 0.4))
        elif f.kind == "kill_after_heal":
            self.apply_net({"shape": "healed", "groups": None, "cuts": [], "down": [], "loss": {}, "bandwidth": {},
                            "delay": []})
            time.sleep(random.Random(f.id).uniform(0.05, 1.0))
        if f.kind in ("kill", "kill_mid_import", "kill_after_heal"):
            rec["dev"] = d.name
            rec["busy"] = self.busy.get(d.name)
            self.kill_restart(d, a["down"], a["unlock"], rec)
        elif f.kind == "wal_corrupt":
            rec["dev"] = d.name
            d.expect_exit = True
            d.kill9()
            self.kills += 1
            rec["corrupted"] = corrupt_wal_tail(d.store, f.id)
            self.corrupted.append({"dev": d.name, "t": self.now()})
            self.restart(d, True, rec)
        elif f.kind == "disk_full":
            rec["dev"] = d.name
            if not d.tmpfs:
                rec["skipped"] = "no tmpfs"
            else:
                filler = d.data / "filler"
                subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M", f"count={TMPFS_MB}"],
                               capture_output=True)
                rec["filled_at"] = self.now()
                self.stop_event.wait(a["hold"])
                filler.unlink(missing_ok=True)
                rec["freed_at"] = self.now()
        rec["t1"] = self.now()
        self.record(rec)

    def kill_restart(self, d: Device, down: float, unlock: bool, rec: dict) -> None:
        d.expect_exit = True
        d.kill9()
        self.kills += 1
        rec["killed_at"] = self.now()
        time.sleep(down)
        self.restart(d, unlock, rec)

    def restart(self, d: Device, unlock: bool, rec: dict) -> None:
        try:
            self.start_device(d)
        except RuntimeError as e:
            rec["restart_error"] = str(e)[-2000:]
            d.deaths.append(f"did not restart after a kill: {str(e)[-1500:]}")
            return
        rec["restarted_at"] = self.now()
        if unlock:
            r = d.unlock()
            rec["unlock"] = r.code

    def apply_net(self, a: dict) -> None:
        groups = [set(g) for g in a["groups"]] if a.get("groups") else None
        cuts = {frozenset(c) for c in a.get("cuts", [])}
        self.net.set_partition(groups, cuts)
        for n in range(self.plan.nodes):
            self.net.set_loss(n, int(a.get("loss", {}).get(str(n), 0)))
            self.net.set_bandwidth(n, a.get("bandwidth", {}).get(str(n)))
            self.net.set_link(n, n not in a.get("down", []))
        links = a.get("delay") or [[x, y, 0] for x in range(self.plan.nodes) for y in range(self.plan.nodes) if x != y]
        self.proxy.call(cmd="delay", links=links)

    # ---- monitors ----------------------------------------------------------

    def monitor(self) -> None:
        """Daemons that died without being killed; memory samples."""
        last_rss = 0.0
        while not self.stop_event.wait(0.5):
            for d in list(self.devices.values()):
                if d.proc is not None and d.proc.poll() is not None and not getattr(d, "expect_exit", False):
                    d.expect_exit = True
                    d.deaths.append(f"exited with {d.proc.returncode} at {self.now()}s; log:\n{tail(d.log, 20)}")
                    self.record({"type": "death", "dev": d.name, "code": d.proc.returncode, "t0": self.now()})
                    threading.Thread(target=self.restart, args=(d, True, {}), daemon=True).start()
            if time.monotonic() - last_rss > 2:
                last_rss = time.monotonic()
                for d in self.devices.values():
                    d.sample_rss()

    # ---- the whole run -----------------------------------------------------

    def chaos(self) -> None:
        self.t_start = time.monotonic()
        self.record({"type": "phase", "phase": "chaos", "t0": 0.0})
        mon = threading.Thread(target=self.monitor, daemon=True)
        mon.start()
        self.monitor_thread = mon
        by_dev: dict[str, list[Op]] = {}
        for op in self.plan.ops:
            by_dev.setdefault(op.dev, []).append(op)
        workers = [threading.Thread(target=self.worker, args=(label, ops), daemon=True)
                   for label, ops in by_dev.items()]
        faults = threading.Thread(target=self.fault_loop, args=(self.plan.faults,), daemon=True)
        for w in workers:
            w.start()
        faults.start()
        end = self.plan.secs
        while self.now() < end:
            time.sleep(0.5)
        # Let the ops in flight finish (bounded by the CLI timeout), no new ones.
        self.stop_event.set()
        for w in workers:
            w.join(120)
        faults.join(120)
        self.stop_event.clear()
        self.record({"type": "phase", "phase": "heal", "t0": self.now()})

    def heal_and_settle(self) -> tuple[bool, float, str]:
        self.apply_net({"shape": "healed", "groups": None, "cuts": [], "down": [], "loss": {}, "bandwidth": {},
                        "delay": []})
        for d in self.devices.values():
            if d.running():
                continue
            if d.device_id is None:
                continue  # never enrolled
            rec: dict = {}
            self.restart(d, True, rec)
        for d in self.live():
            if d.device_id:
                d.unlock()
        t0 = time.monotonic()
        why = ""
        stable = 0
        while time.monotonic() - t0 < CONVERGE_SECS:
            ok, why = self.converged()
            stable = stable + 1 if ok else 0
            if stable >= 2:
                return True, round(time.monotonic() - t0, 1), ""
            time.sleep(2)
        return False, round(time.monotonic() - t0, 1), why

    def settle_roster(self) -> None:
        """Which devices are out of the team at the end (revoked, or their
        user removed), as the converged roster on ada says: the checker
        never expects them to converge or to read new content."""
        listed = self.devices["ada"].cli_json(["device", "ls"]) or []
        state = {x["device_id"]: x.get("revoked", False) for x in listed}
        for d in self.devices.values():
            if d.device_id and d.name != "ada":
                d.retired = state.get(d.device_id, True)
        self.record({"type": "roster", "t0": self.now(),
                     "retired": sorted(d.name for d in self.devices.values() if d.retired)})

    def collect(self) -> dict:
        """Everything the checker reads, taken from the running daemons."""
        state: dict = {"status": {}, "export": {}, "history": {}, "groups": {}, "users": {}, "members": {}}
        for d in self.live():
            if not d.device_id:
                continue
            state["status"][d.name] = d.sync_status()
            r = d.cli(["export", "--include-trash", "--yes", "--format", "json", "--pin-stdin"], PIN + "\n", timeout=60)
            state["export"][d.name] = (r.json() or {}).get("items") if r.ok else None
            state["groups"][d.name] = d.cli_json(["group", "ls"])
        ada = self.devices["ada"]
        for f in self.plan.setup_grants:
            state["members"][f] = ada.cli_json(["folder", "members", f])
        # Item histories for the items whose edits, rm, restore and TOTP the
        # checker verifies: from a member of the item's folder that can read
        # it (never a removed device), ada first.
        members = self.final_members(state["status"])
        folder_of = {o.args["name"]: o.args["folder"] for o in self.plan.ops if o.kind == "add"}
        wanted = set()
        for rec in self.history:
            if rec.get("type") == "op" and rec.get("kind") in ("edit", "rm", "restore", "totp_set"):
                wanted.add(rec["args"]["item"])
        by_item: dict[str, dict] = {}
        for item in sorted(wanted):
            folder = folder_of.get(item)
            sources = sorted(members.get(folder, set()), key=lambda x: (x != "ada", x))
            got: dict[str, list] = {}
            for label in sources:
                dev = self.devices[label]
                if not dev.running() or dev.retired:
                    continue
                h = dev.cli_json(["history", f"{folder}/{item}", "--reveal"])
                if h is not None:
                    got[label] = h
                    if len(got) == 2:
                        break
            by_item[item] = got
        state["history"] = by_item
        return state

    def removed_devices_read_check(self) -> dict[str, list]:
        """Gives every retired device (revoked, or its user removed) all the
        envelopes of the shared folders, from ada's store, and asks it, with
        its own keys, what it can read. Returns label -> exported items."""
        out: dict[str, list] = {}
        ada = self.devices["ada"]
        for d in self.devices.values():
            if not d.retired or not d.device_id:
                continue
            d.expect_exit = True
            d.stop()
            try:
                copied = copy_folder_envelopes(ada.store, d.store, list(self.plan.setup_grants))
            except sqlite3.Error as e:
                self.errors.append(f"copying envelopes into {d.name}: {e}")
                continue
            try:
                self.start_device(d)
            except RuntimeError as e:
                d.deaths.append(f"did not start with the copied envelopes: {e}")
                continue
            d.unlock()
            time.sleep(1)
            r = d.cli(["export", "--include-trash", "--yes", "--format", "json", "--pin-stdin"], PIN + "\n", timeout=60)
            out[d.name] = (r.json() or {}).get("items", []) if r.ok else []
            self.record({"type": "read_check", "dev": d.name, "copied": copied, "readable": len(out[d.name]),
                         "t0": self.now()})
        return out

    def finish(self) -> dict[str, str]:
        """Stops every daemon cleanly; PRAGMA integrity_check on every store."""
        integrity = {}
        for d in self.devices.values():
            d.expect_exit = True
            d.stop()
        for d in self.devices.values():
            if d.store.exists():
                try:
                    con = sqlite3.connect(f"file:{d.store}?mode=ro", uri=True, timeout=10)
                    integrity[d.name] = con.execute("PRAGMA integrity_check").fetchone()[0]
                    con.close()
                except sqlite3.Error as e:
                    integrity[d.name] = f"cannot open: {e}"
        return integrity

    def teardown(self) -> None:
        self.stop_event.set()
        for d in self.devices.values():
            try:
                d.expect_exit = True
                d.kill9()
            except OSError:
                pass
        if self.proxy:
            self.proxy.stop()
        for m in self.tmpfs_mounts:
            subprocess.run(["umount", "-l", str(m)], capture_output=True)
        self.net.down_all()
        self.hfile.close()


def must(r, what: str) -> None:
    if not r.ok:
        raise RuntimeError(f"setup: {what} failed (exit {r.code}): {r.err.strip()} {r.out.strip()}")


def corrupt_wal_tail(store: Path, salt: int) -> str:
    """A torn last write: after the last valid commit of the WAL, writes a
    frame whose header names the right WAL generation but whose page is
    half garbage, as a crash in the middle of appending one would leave.
    SQLite's recovery must drop it (its checksum fails) and keep every
    committed transaction."""
    wal = Path(str(store) + "-wal")
    try:
        data = wal.read_bytes()
    except OSError:
        return "no WAL file"
    end, page_size, hdr = wal_valid_end(data)
    if page_size == 0:
        return f"no valid WAL header ({len(data)} bytes)"
    rng = random.Random(salt)
    torn = bytearray(hdr)  # the last valid frame's header, salts included
    torn[4:8] = (1).to_bytes(4, "big")  # a commit frame
    torn[16:24] = bytes(rng.getrandbits(8) for _ in range(8))  # its checksum cannot match
    keep = rng.randint(0, page_size)
    page = bytes(rng.getrandbits(8) for _ in range(keep)) + bytes(page_size - keep)
    with open(wal, "r+b") as f:
        f.seek(end)
        f.write(bytes(torn) + page)
    return f"torn frame written at {end} (WAL {len(data)} bytes, page {page_size}, {keep} garbage bytes)"


def wal_valid_end(data: bytes) -> tuple[int, int, bytes]:
    """(offset just after the last valid commit frame, page size, that
    frame's header) of a SQLite WAL file, checking salts and checksums."""
    if len(data) < 32:
        return 0, 0, b""
    magic = int.from_bytes(data[0:4], "big")
    if magic not in (0x377F0682, 0x377F0683):
        return 0, 0, b""
    order = "big" if magic & 1 else "little"
    page_size = int.from_bytes(data[8:12], "big")
    salts = data[16:24]

    def cksum(buf: bytes, s0: int, s1: int) -> tuple[int, int]:
        for i in range(0, len(buf), 8):
            s0 = (s0 + int.from_bytes(buf[i:i + 4], order) + s1) & 0xFFFFFFFF
            s1 = (s1 + int.from_bytes(buf[i + 4:i + 8], order) + s0) & 0xFFFFFFFF
        return s0, s1

    s0, s1 = cksum(data[0:24], 0, 0)
    if (s0, s1) != (int.from_bytes(data[24:28], "big"), int.from_bytes(data[28:32], "big")):
        return 32, page_size, b""
    off = 32
    end = 32
    last_hdr = b""
    frame = 24 + page_size
    while off + frame <= len(data):
        h = data[off:off + 24]
        if h[8:16] != salts:
            break
        s0, s1 = cksum(h[0:8], s0, s1)
        s0, s1 = cksum(data[off + 24:off + frame], s0, s1)
        if (s0, s1) != (int.from_bytes(h[16:20], "big"), int.from_bytes(h[20:24], "big")):
            break
        off += frame
        if int.from_bytes(h[4:8], "big"):
            end = off
            last_hdr = h
    return end, page_size, last_hdr


def copy_folder_envelopes(src: Path, dst: Path, folder_names: list[str]) -> int:
    """Copies every envelope of every folder space (not the roster) from the
    store `src` into `dst`; returns how many were new there."""
    s = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=10)
    d = sqlite3.connect(str(dst), timeout=10)
    spaces = s.execute("SELECT id, kind, team FROM spaces WHERE kind = 'folder' AND team IS NOT NULL").fetchall()
    before = d.execute("SELECT COUNT(*) FROM envelopes").fetchone()[0]
    for sid, kind, team in spaces:
        d.execute("INSERT OR IGNORE INTO spaces (id, kind, team) VALUES (?, ?, ?)", (sid, kind, team))
        for row in s.execute("SELECT id, space, author, seq, bytes FROM envelopes WHERE space = ? ORDER BY seqno",
                             (sid,)):
            d.execute("INSERT OR IGNORE INTO envelopes (id, space, author, seq, bytes) VALUES (?, ?, ?, ?, ?)", row)
    d.commit()
    after = d.execute("SELECT COUNT(*) FROM envelopes").fetchone()[0]
    s.close()
    d.close()
    return after - before


def run_plan(plan: Plan, workdir: Path, bin_dir: Path, prefix: str, mem_limit_mib: int,
             quiet: bool = False) -> checker.Verdict:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "plan.json").write_text(json.dumps(plan.to_json(), indent=1))
    run = Run(plan, workdir, bin_dir, prefix, mem_limit_mib)
    try:
        t = time.monotonic()
        run.setup()
        if not quiet:
            log(f"setup done in {time.monotonic() - t:.0f}s: {len(run.devices)} daemons, "
                f"{len(plan.ops)} planned ops, {len(plan.faults)} planned faults")
        run.chaos()
        if not quiet:
            log(f"chaos done at {run.now():.0f}s ({len(run.history)} history events); healing")
        converged, conv_secs, why = run.heal_and_settle()
        if not quiet:
            log(f"settled: converged={converged} in {conv_secs}s {why}")
        run.settle_roster()
        state = run.collect()
        state["removed_reads"] = run.removed_devices_read_check()
        (workdir / "state.json").write_text(json.dumps(state, indent=1, default=str))
        integrity = run.finish()
        verdict = checker.check(plan, run, state, integrity, converged, conv_secs, why)
    except Exception as e:
        verdict = checker.Verdict.harness_error(plan, f"{e!r}\n{traceback.format_exc()}", run)
    finally:
        run.teardown()
    (workdir / "verdict.json").write_text(json.dumps(verdict.to_json(), indent=1, default=str))
    return verdict


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--secs", type=float, default=120)
    ap.add_argument("--nodes", type=int, default=5)
    ap.add_argument("--bin-dir", type=Path, required=True)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--mem-limit-mib", type=int, default=256)
    ap.add_argument("--shrink-secs", type=float, default=900,
                    help="time budget for shrinking a failing history by replay (0: slice only)")
    ap.add_argument("--plan", type=Path, help="replay this plan.json instead of drawing one from the seed")
    ap.add_argument("--without", default="", help="comma-separated kinds of operations or faults to leave out")
    args = ap.parse_args()
    without = frozenset(x for x in args.without.split(",") if x)
    unknown = without - OPTIONAL
    if unknown:
        print(f"chaos: --without knows {sorted(OPTIONAL)}, not {sorted(unknown)}", file=sys.stderr)
        return 2
    if args.nodes < 5:
        print("chaos: --nodes must be at least 5", file=sys.stderr)
        return 2
    if args.plan:
        plan = Plan.from_json(json.loads(args.plan.read_text()))
    else:
        plan = make_plan(args.seed, args.secs, args.nodes, without)
    log(f"seed={plan.seed} secs={plan.secs:g} nodes={plan.nodes} workdir={args.workdir}"
        + (f" without={','.join(sorted(without))}" if without else ""))
    verdict = run_plan(plan, args.workdir / "run", args.bin_dir, args.prefix, args.mem_limit_mib)
    verdict.report()
    if not verdict.passed and args.shrink_secs > 0 and not verdict.harness_failed:
        import shrink
        shrink.shrink(plan, verdict, args, run_plan)
    print(verdict.line(), flush=True)
    return 0 if verdict.passed else 1


if __name__ == "__main__":
    sys.exit(main())
