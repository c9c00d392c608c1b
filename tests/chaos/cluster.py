"""Real `cofferd` processes and the `coffer` CLI, as the chaos suite runs them.

A Device is one daemon with its own data dir (a node, i.e. a network
namespace, may host several over a run: a revoked laptop and its
re-enrolled successor). Every daemon gets `--no-mdns`, a listen address
on its node's veth, and the proxy addresses of the other devices as
`--peer`; the CLI reaches it over its Unix socket with
COFFER_NO_AUTOSTART=1, so a CLI call never starts anything.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PIN = "246813"
KDF = ["--kdf-memory-kib", "256", "--kdf-iterations", "1"]
CLI_TIMEOUT = 40.0


@dataclass
class Result:
    code: int | None  # None: timed out (killed)
    out: str
    err: str
    t0: float
    t1: float

    @property
    def ok(self) -> bool:
        return self.code == 0

    def json(self):
        try:
            return json.loads(self.out)
        except ValueError:
            return None


@dataclass
class Device:
    index: int
    node: int
    name: str  # label for humans: "ada", "bob2", ...
    email: str
    dir: Path
    listen: str  # /ip4/IP/tcp/PORT
    bin_dir: Path
    netns_exec: list[str]
    tmpfs: bool = False
    proc: subprocess.Popen | None = None
    device_id: str | None = None
    # Bookkeeping for the checker.
    killed_by_us: int = 0
    deaths: list[str] = field(default_factory=list)
    rss_kib: list[tuple[float, int]] = field(default_factory=list)
    retired: bool = False  # revoked / user removed: kept running, never a member again
    expect_exit: bool = True  # the harness stops or kills it (False while it should run)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def socket(self) -> Path:
        return self.dir / "run" / "cofferd.sock"

    @property
    def log(self) -> Path:
        return self.dir / "cofferd.log"

    @property
    def store(self) -> Path:
        return self.data / "vault.sqlite3"

    def env(self) -> dict:
        env = dict(os.environ)
        for k in ("COFFER_DATA_DIR", "COFFER_CONFIG", "COFFER_LISTEN", "COFFER_NO_NETWORK"):
            env.pop(k, None)
        env.update(COFFER_SOCKET=str(self.socket), COFFER_NO_AUTOSTART="1", COFFER_NO_MDNS="1")
        return env

    # ---- the daemon -------------------------------------------------------

    def start(self, peers: list[str], ready_timeout: float = 30.0) -> None:
        assert self.proc is None or self.proc.poll() is not None
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(parents=True, exist_ok=True)
        (self.dir / "run").mkdir(exist_ok=True, mode=0o700)
        log = open(self.log, "ab")
        args = self.netns_exec + [
            str(self.bin_dir / "cofferd"),
            "--data-dir", str(self.data),
            "--socket", str(self.socket),
            "--config", str(self.dir / "no-config.toml"),
            *KDF,
            "--no-mdns",
            "--listen", self.listen,
        ]
        for p in peers:
            args += ["--peer", p]
        env = self.env()
        env.pop("COFFER_SOCKET", None)
        env.pop("COFFER_NO_AUTOSTART", None)
        env.setdefault("RUST_LOG", "info")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=log, env=env, start_new_session=True)
        log.close()
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name}: cofferd exited {self.proc.returncode} at start; log:\n{tail(self.log)}")
            r = self.cli(["status", "--json"], timeout=5)
            if r.ok and (r.json() or {}).get("pid") == self.proc.pid:
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name}: cofferd not ready in {ready_timeout}s; log:\n{tail(self.log)}")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        if self.running():
            self.killed_by_us += 1
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self, grace: float = 15.0) -> None:
        if not self.running():
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.deaths.append(f"did not stop within {grace}s of SIGTERM (killed)")
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def sample_rss(self) -> None:
        pid = self.pid
        if not pid:
            return
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        self.rss_kib.append((time.monotonic(), int(line.split()[1])))
        except OSError:
            pass

    # ---- the CLI ----------------------------------------------------------

    def cli(self, args: list[str], stdin: str = "", timeout: float = CLI_TIMEOUT) -> Result:
        t0 = time.monotonic()
        try:
            p = subprocess.run([str(self.bin_dir / "coffer"), *args], input=stdin, text=True,
                               capture_output=True, env=self.env(), timeout=timeout)
            return Result(p.returncode, p.stdout, p.stderr, t0, time.monotonic())
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            return Result(None, out, "timed out", t0, time.monotonic())

    def cli_json(self, args: list[str], stdin: str = "", timeout: float = CLI_TIMEOUT):
        r = self.cli(args + ["--json"], stdin, timeout)
        return r.json() if r.ok else None

    def unlock(self) -> Result:
        return self.cli(["unlock", "--pin-stdin"], PIN + "\n")

    def sync_status(self) -> dict | None:
        return self.cli_json(["sync", "status"], timeout=20)


def tail(path: Path, n: int = 25) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


class Joining:
    """A `coffer join`/`coffer device join` running in the background."""

    def __init__(self, dev: Device, args: list[str]):
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen([str(dev.bin_dir / "coffer"), *args, "--pin-stdin", "--json"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=dev.env())
        self.proc.stdin.write(PIN + "\n")
        self.proc.stdin.close()
        self.lines: list[str] = []
        self.err = ""
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
        self.err = self.proc.stderr.read()

    def verification_code(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                try:
                    v = json.loads(line)
                except ValueError:
                    continue
                if v.get("verification_code"):
                    return v["verification_code"]
            if self.proc.poll() is not None and not self.reader.is_alive():
                return None
            time.sleep(0.05)
        return None

    def finish(self, timeout: float) -> int | None:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        self.reader.join(5)
        return self.proc.returncode
