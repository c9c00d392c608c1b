"""The crash loop: one cofferd, kill -9 KILLS times at random moments while
writers add items and import batches (into a personal and a team folder)
through the CLI; after every restart the store must open (the daemon
starts and unlocks), every write answered as done before the kill must be
there with its value, and an interrupted import must be all or nothing.
`PRAGMA integrity_check` runs every 25 kills and at the end.

Run by `bash tests/chaos/run.sh --crash-loop KILLS [--seed S]`. The daemon
runs with --no-network (nothing to sync: this is about the store). The
kills come in rounds of 100 on a fresh data dir each (a debug daemon
reopening a vault of tens of thousands of items would make 1,000 kills
take hours); each round ends with the full check. Last line: `crash-loop: PASS|FAIL kills=… acked=… lost=… partial_imports=…
integrity_failures=… failed_restarts=…`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import KDF, PIN, Device, tail  # noqa: E402

FOLDERS = ["Personal", "Team"]


class Loop:
    def __init__(self, bin_dir: Path, workdir: Path, seed: int):
        self.rng = random.Random(seed)
        self.dev = Device(index=0, node=0, name="solo", email="solo@example.com", dir=workdir / "solo",
                          listen="/ip4/127.0.0.1/tcp/0", bin_dir=bin_dir, netns_exec=[])
        self.lock = threading.Lock()
        self.acked: dict[str, tuple[str, str]] = {}  # name -> (folder, password)
        self.imports: list[dict] = []  # {names, folder, status}
        self.unchecked: list[str] = []  # acked since the last check
        self.next = 0
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.counts = {"attempts": 0, "refused": 0, "uncertain": 0}
        self.workdir = workdir

    def start(self) -> None:
        d = self.dev
        d.dir.mkdir(parents=True, exist_ok=True)
        (d.dir / "run").mkdir(exist_ok=True, mode=0o700)
        log = open(d.log, "ab")
        args = [str(d.bin_dir / "cofferd"), "--data-dir", str(d.data), "--socket", str(d.socket),
                "--config", str(d.dir / "no-config.toml"), *KDF, "--no-network", "--no-mdns"]
        env = d.env()
        env.pop("COFFER_SOCKET", None)
        d.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env,
                                  start_new_session=True)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if d.proc.poll() is not None:
                raise RuntimeError(f"cofferd exited {d.proc.returncode} at start:\n{tail(d.log)}")
            r = d.cli(["status", "--json"], timeout=5)
            if r.ok and (r.json() or {}).get("pid") == d.proc.pid:
                return
            time.sleep(0.02)
        raise RuntimeError(f"cofferd not ready within 30 s:\n{tail(d.log)}")

    def kill(self) -> None:
        os.kill(self.dev.proc.pid, signal.SIGKILL)
        self.dev.proc.wait()

    def writer(self, kind: str) -> None:
        d = self.dev
        while not self.stop.is_set():
            with self.lock:
                n = self.next
                self.next += 1
            folder = FOLDERS[n % 2]
            self.counts["attempts"] += 1
            if kind == "add":
                name = f"c{n}"
                r = d.cli(["add", "login", name, "--folder", folder], f"pw{n}\n", timeout=20)
                if r.ok:
                    with self.lock:
                        self.acked[name] = (folder, f"pw{n}")
                        self.unchecked.append(name)
                else:
                    self.classify(r)
            else:
                count = self.rng.choice([3, 10, 10, 30, 100])
                names = [f"m{n}-{k}" for k in range(count)]
                path = self.workdir / f"import-{n}.json"
                items = [{"type": 1, "name": x, "login": {"username": "u", "password": f"p{x}", "uris": []}}
                         for x in names]
                path.write_text(json.dumps({"encrypted": False, "folders": [], "items": items}))
                r = d.cli(["import", str(path), "--format", "bitwarden-json", "--folder", folder], timeout=60)
                rec = {"names": names, "folder": folder, "ok": r.ok}
                with self.lock:
                    self.imports.append(rec)
                    if r.ok:
                        for i, x in enumerate(names):
                            self.acked[x] = (folder, f"p{x}")
                        self.unchecked.extend(names)
                if not r.ok:
                    self.classify(r)
                path.unlink(missing_ok=True)
                time.sleep(self.rng.uniform(0.2, 1.5))

    def classify(self, r) -> None:
        if r.code in (3, 11) and ("cannot connect" in r.err or r.code == 3):
            self.counts["refused"] += 1
        else:
            self.counts["uncertain"] += 1
        time.sleep(0.05)

    def listing(self) -> dict[str, set[str]] | None:
        out = {}
        for f in FOLDERS:
            r = self.dev.cli(["ls", "--folder", f, "--json"], timeout=60)
            if not r.ok:
                return None
            out[f] = {i["name"] for i in r.json()}
        return out

    def check_recent(self, kill_no: int) -> None:
        with self.lock:
            names, self.unchecked = self.unchecked, []
        if not names:
            return
        got = self.listing()
        if got is None:
            self.failures.append(f"kill {kill_no}: cannot list items after the restart")
            return
        missing = [x for x in names if x not in got[self.acked[x][0]]]
        if missing:
            self.failures.append(f"kill {kill_no}: acknowledged writes missing after restart: {missing[:10]}")

    def integrity(self, kill_no: int) -> None:
        try:
            con = sqlite3.connect(f"file:{self.dev.store}?mode=ro", uri=True, timeout=10)
            res = con.execute("PRAGMA integrity_check").fetchone()[0]
            con.close()
        except sqlite3.Error as e:
            res = f"cannot open: {e}"
        if res != "ok":
            self.failures.append(f"kill {kill_no}: integrity_check: {res}")
            self.counts["integrity_failures"] = self.counts.get("integrity_failures", 0) + 1

    def run(self, kills: int, per_round: int = 100) -> int:
        t_start = time.monotonic()
        done = 0
        totals = {"acked": 0, "lost": 0, "partial": 0, "failed_restarts": 0, "imports": 0}
        rnd = 0
        while done < kills:
            n = min(per_round, kills - done)
            rnd += 1
            self.reset(rnd)
            res = self.round(n, done)
            done += res["kills"]
            for k in totals:
                totals[k] += res[k]
            print(f"crash-loop: round {rnd}: {res['kills']} kills, {res['acked']} writes acknowledged, "
                  f"lost {res['lost']}, {time.monotonic() - t_start:.0f}s", flush=True)
            if res["kills"] < n:
                break
        for f in self.failures[:30]:
            print(f"crash-loop: FAILURE {f}")
        passed = not self.failures
        print(f"crash-loop: attempts={self.counts['attempts']} refused_while_down={self.counts['refused']} "
              f"interrupted={self.counts['uncertain']} imports={totals['imports']} "
              f"elapsed={time.monotonic() - t_start:.0f}s")
        print(f"crash-loop: {'PASS' if passed else 'FAIL'} kills={done} acked={totals['acked']} lost={totals['lost']} "
              f"partial_imports={totals['partial']} integrity_failures={self.counts.get('integrity_failures', 0)} "
              f"failed_restarts={totals['failed_restarts']}", flush=True)
        return 0 if passed else 1

    def reset(self, rnd: int) -> None:
        if self.dev.running():
            self.kill()
        self.dev.dir = self.workdir / f"round{rnd}"
        self.acked, self.imports, self.unchecked = {}, [], []

    def round(self, kills: int, before: int) -> dict:
        d = self.dev
        self.stop.clear()
        self.start()
        r = d.cli(["init", "--name", "Solo", "--email", "solo@example.com", "--pin-stdin"], PIN + "\n")
        assert r.ok, r.err
        assert d.cli(["team", "create", "Solo team"]).ok
        assert d.cli(["folder", "create", "Team"]).ok
        threads = [threading.Thread(target=self.writer, args=(k,), daemon=True) for k in ("add", "import")]
        for t in threads:
            t.start()
        failed_restarts = 0
        k = 0
        for k in range(1, kills + 1):
            # Mostly short lives (a kill lands in the middle of a write or an
            # import), sometimes longer ones (more state, WAL checkpoints).
            time.sleep(self.rng.choice([self.rng.uniform(0.0, 0.15), self.rng.uniform(0.1, 0.8),
                                        self.rng.uniform(0.5, 2.0)]))
            self.kill()
            try:
                self.start()
            except RuntimeError as e:
                failed_restarts += 1
                self.failures.append(f"kill {before + k}: the daemon did not restart: {e}")
                time.sleep(1)
                try:
                    self.start()
                except RuntimeError:
                    break
            u = d.unlock()
            if not u.ok:
                self.failures.append(f"kill {before + k}: unlock failed: exit {u.code} {u.err.strip()}")
            self.check_recent(before + k)
            if k % 25 == 0:
                self.integrity(before + k)
        self.stop.set()
        for t in threads:
            t.join(90)
        # The round's final check: every acknowledged write with its value;
        # every import all or nothing.
        self.kill()
        self.start()
        d.unlock()
        r = d.cli(["export", "--include-trash", "--yes", "--format", "json", "--pin-stdin"], PIN + "\n", timeout=120)
        items = {(i["folder"], i["name"]): i["fields"].get("password") for i in (r.json() or {}).get("items", [])}
        lost = [n for n, (f, pw) in self.acked.items() if items.get((f, n)) != pw]
        partial = [imp for imp in self.imports
                   if 0 < sum((imp["folder"], x) in items for x in imp["names"]) < len(imp["names"])]
        d.stop()
        self.integrity(before + k)
        for x in lost[:20]:
            self.failures.append(f"round end: {x} acknowledged but missing or wrong")
        for imp in partial[:5]:
            self.failures.append(f"round end: an import of {len(imp['names'])} left only some items "
                                 f"({imp['names'][0]}...)")
        log = d.log.read_text(errors="replace")
        if "panicked" in log:
            self.failures.append("a panic in the daemon log: " +
                                 next(x for x in log.splitlines() if "panicked" in x)[:300])
        return {"kills": k, "acked": len(self.acked), "lost": len(lost), "partial": len(partial),
                "failed_restarts": failed_restarts, "imports": len(self.imports)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bin-dir", type=Path, required=True)
    ap.add_argument("--workdir", type=Path, required=True)
    a = ap.parse_args()
    print(f"crash-loop: seed={a.seed} kills={a.kills}", flush=True)
    loop = Loop(a.bin_dir, a.workdir, a.seed)
    try:
        return loop.run(a.kills)
    finally:
        if loop.dev.running():
            loop.kill()


if __name__ == "__main__":
    sys.exit(main())
