//! Harness for Coffer's process-level integration tests: runs the real
//! `cofferd` and `coffer` binaries (built by `cargo build --workspace`) as
//! separate processes, each test in its own short temp dir under /tmp.
//!
//! - [`Daemon`] owns one `cofferd` (cheap Argon2, stderr to a log file) and
//!   can stop (SIGTERM), `kill -9` and restart it on the same data dir.
//! - [`Cli`] runs `coffer` against that daemon's socket with
//!   `COFFER_NO_AUTOSTART=1`, feeding stdin and checking exit codes.
//! - [`Events`] is a running `coffer events --json` subscriber.
//! - [`hostile::Hostile`] takes over an enrolled device and attacks honest
//!   daemons over the real transport and protocol.

use std::fs;
use std::io::{Read, Write};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use coffer_ipc::methods::{Empty, Status, StatusResult};
use coffer_ipc::Client;
use serde_json::Value;
use tempfile::TempDir;

pub mod hostile;

/// Where test daemons listen for peers unless told otherwise: loopback only.
pub const LOOPBACK_ANY_PORT: &str = "/ip4/127.0.0.1/tcp/0";

/// The PIN [`Cli::init`] sets.
pub const PIN: &str = "246813";
/// Cheap Argon2 for tests (never the users' defaults).
pub const KDF_MEMORY_KIB: &str = "256";
pub const KDF_ITERATIONS: &str = "1";

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const CLI_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// `target/debug` (or whichever profile): the test executable lives in its
/// `deps/` folder, the workspace binaries one level up.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test executable has a folder");
    if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().expect("deps has a parent").to_path_buf()
    } else {
        deps.to_path_buf()
    }
}

fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} not found: run `cargo build --workspace` first (the integration tests run the real binaries)",
        path.display()
    );
    path
}

/// The `cofferd` binary beside the test executable.
pub fn cofferd_bin() -> PathBuf {
    binary("cofferd")
}

/// The `coffer` binary beside the test executable.
pub fn coffer_bin() -> PathBuf {
    binary("coffer")
}

/// The `coffer-native-host` binary beside the test executable.
pub fn native_host_bin() -> PathBuf {
    binary("coffer-native-host")
}

/// A short temp dir under /tmp (Unix socket paths are limited to ~108 bytes).
pub fn short_tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("cf")
        .tempdir_in("/tmp")
        .expect("create a temp dir in /tmp")
}

/// The last `n` lines of a text file (for failure messages).
pub fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn describe(out: &Output) -> String {
    format!(
        "exit: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd` with `stdin` bytes, collecting stdout and stderr; kills it and
/// panics after `timeout`.
pub fn run_with_timeout(cmd: &mut Command, stdin: &[u8], timeout: Duration) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut input = child.stdin.take().expect("piped stdin");
    let stdin = stdin.to_vec();
    // A write error means the program stopped reading: not our concern here.
    let writer = thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let mut out_pipe = child.stdout.take().expect("piped stdout");
    let mut err_pipe = child.stderr.take().expect("piped stderr");
    let out_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out_pipe.read_to_end(&mut buf);
        buf
    });
    let err_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err_pipe.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(2));
    };
    let _ = writer.join();
    Output {
        status,
        stdout: out_reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
    }
}

/// How to run `coffer` against one daemon. Cheap to clone and `Send`, so a
/// thread can write while another restarts the daemon.
#[derive(Clone, Debug)]
pub struct Cli {
    pub socket: PathBuf,
    pub data_dir: PathBuf,
    /// The daemon's log, shown when a command fails unexpectedly.
    pub log: Option<PathBuf>,
}

impl Cli {
    /// A `coffer` command with this daemon's socket and data dir, never
    /// starting a daemon itself.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(coffer_bin());
        cmd.args(args)
            .env("COFFER_SOCKET", &self.socket)
            .env("COFFER_DATA_DIR", &self.data_dir)
            .env("COFFER_NO_AUTOSTART", "1")
            // A daemon this command autostarts stays off the LAN.
            .env("COFFER_NO_MDNS", "1")
            .env("COFFER_LISTEN", LOOPBACK_ANY_PORT)
            // Nor serves a web app on the default port.
            .env("COFFER_NO_UI", "1")
            .env_remove("COFFER_CONFIG");
        cmd
    }

    /// Runs `coffer ARGS` with `stdin` and returns whatever happened.
    pub fn coffer(&self, args: &[&str], stdin: impl AsRef<[u8]>) -> Output {
        run_with_timeout(&mut self.command(args), stdin.as_ref(), CLI_TIMEOUT)
    }

    fn log_tail(&self) -> String {
        self.log
            .as_deref()
            .map(|p| format!("\n--- daemon log (tail) ---\n{}", tail(p, 15)))
            .unwrap_or_default()
    }

    /// Runs `coffer ARGS`, asserts it succeeded, and returns its stdout.
    #[track_caller]
    pub fn ok(&self, args: &[&str], stdin: impl AsRef<[u8]>) -> String {
        let out = self.coffer(args, stdin);
        assert!(
            out.status.success(),
            "`coffer {}` failed\n{}{}",
            args.join(" "),
            describe(&out),
            self.log_tail()
        );
        String::from_utf8(out.stdout).expect("stdout is UTF-8")
    }

    /// Runs `coffer ARGS`, asserts it exited with `code`, and returns its stderr.
    #[track_caller]
    pub fn fails(&self, args: &[&str], stdin: impl AsRef<[u8]>, code: i32) -> String {
        let out = self.coffer(args, stdin);
        assert_eq!(
            out.status.code(),
            Some(code),
            "`coffer {}` should exit {code}\n{}{}",
            args.join(" "),
            describe(&out),
            self.log_tail()
        );
        String::from_utf8(out.stderr).expect("stderr is UTF-8")
    }

    /// Runs `coffer ARGS` (which must succeed) and parses its stdout as JSON.
    #[track_caller]
    pub fn json(&self, args: &[&str], stdin: impl AsRef<[u8]>) -> Value {
        let out = self.ok(args, stdin);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("`coffer {}` printed no JSON ({e}):\n{out}", args.join(" ")))
    }

    /// `coffer init` with [`PIN`].
    #[track_caller]
    pub fn init(&self) {
        self.init_with_pin(PIN);
    }

    #[track_caller]
    pub fn init_with_pin(&self, pin: &str) {
        let out = self.ok(
            &[
                "init",
                "--name",
                "Test User",
                "--email",
                "test@example.org",
                "--pin-stdin",
            ],
            format!("{pin}\n"),
        );
        assert!(out.contains("unlocked"), "init said: {out}");
    }

    /// `coffer unlock` with [`PIN`].
    #[track_caller]
    pub fn unlock(&self) {
        self.ok(&["unlock", "--pin-stdin"], format!("{PIN}\n"));
    }

    /// `coffer status --json`.
    #[track_caller]
    pub fn status(&self) -> Value {
        self.json(&["status", "--json"], "")
    }

    /// `coffer add login NAME` with `password` on stdin and `extra` flags;
    /// returns the new item as JSON.
    #[track_caller]
    pub fn add_login(&self, name: &str, password: &str, extra: &[&str]) -> Value {
        let mut args = vec!["add", "login", name, "--json"];
        args.extend_from_slice(extra);
        self.json(&args, format!("{password}\n"))
    }

    /// A raw protocol client on the socket.
    pub fn client(&self) -> Client {
        let client = Client::connect(&self.socket).expect("connect to cofferd");
        client
            .set_timeout(Some(Duration::from_secs(10)))
            .expect("set timeout");
        client
    }
}

/// What a [`Daemon`] is started with besides the test defaults.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub auto_lock_secs: Option<u64>,
    /// Extra environment for `cofferd` (e.g. `RUST_LOG=trace`).
    pub env: Vec<(String, String)>,
    /// Extra `cofferd` arguments (e.g. `--listen`, `--peer`).
    pub args: Vec<String>,
    /// Run `cofferd` under this command (e.g. `ip netns exec NS`).
    pub wrapper: Vec<String>,
    /// Let the daemon use mDNS. Only ever inside a network namespace the
    /// test created: every other daemon gets `--no-mdns`.
    pub mdns: bool,
    /// Let the daemon listen where it does by default (every interface,
    /// IPv4 and IPv6, port 7373) instead of a loopback port. Only ever
    /// inside a network namespace the test created.
    pub default_listen: bool,
}

/// One `cofferd` in its own temp dir: data in `dir/data`, socket in
/// `dir/run/cofferd.sock`, stderr appended to `dir/cofferd.log` (across
/// restarts). Dropping it kills the daemon and removes the dir.
pub struct Daemon {
    cli: Cli,
    pub log: PathBuf,
    opts: Options,
    child: Option<Child>,
    // Last, so the daemon is killed before its dir disappears.
    pub dir: TempDir,
}

impl Deref for Daemon {
    type Target = Cli;
    fn deref(&self) -> &Cli {
        &self.cli
    }
}

impl Daemon {
    /// Starts a daemon with the test defaults and waits until it answers.
    pub fn start() -> Daemon {
        Daemon::start_with(Options::default())
    }

    pub fn start_with(opts: Options) -> Daemon {
        let dir = short_tempdir();
        let log = dir.path().join("cofferd.log");
        let cli = Cli {
            socket: dir.path().join("run").join("cofferd.sock"),
            data_dir: dir.path().join("data"),
            log: Some(log.clone()),
        };
        let mut daemon = Daemon {
            cli,
            log,
            opts,
            child: None,
            dir,
        };
        daemon.spawn();
        daemon
    }

    /// A daemon started on a copy of `data_dir` (another daemon's, stopped
    /// or not writing): the same device, as a second laptop holding its
    /// old data would be.
    pub fn start_copy_of(data_dir: &Path, opts: Options) -> Daemon {
        use std::os::unix::fs::PermissionsExt;
        let dir = short_tempdir();
        let data = dir.path().join("data");
        fs::create_dir_all(&data).expect("create the data dir");
        fs::set_permissions(&data, fs::Permissions::from_mode(0o700)).expect("chmod the data dir");
        for entry in fs::read_dir(data_dir).expect("read the data dir") {
            let entry = entry.expect("a data dir entry");
            let name = entry.file_name();
            if name == "cofferd.lock" {
                continue;
            }
            let to = data.join(&name);
            fs::copy(entry.path(), &to).expect("copy a data file");
        }
        let log = dir.path().join("cofferd.log");
        let cli = Cli {
            socket: dir.path().join("run").join("cofferd.sock"),
            data_dir: data,
            log: Some(log.clone()),
        };
        let mut daemon = Daemon {
            cli,
            log,
            opts,
            child: None,
            dir,
        };
        daemon.spawn();
        daemon
    }

    /// Waits for a daemon that stops by itself (after `coffer reset`) to
    /// exit; asserts a clean exit and that the socket is gone.
    pub fn wait_exited(&mut self) -> ExitStatus {
        let child = self.child.take().expect("daemon is running");
        self.reap(child, "by itself")
    }

    /// Waits for `child` to exit (killing it after [`STOP_TIMEOUT`]);
    /// asserts a clean exit and that the socket is gone. `how`: what was
    /// asked of it, for the messages.
    fn reap(&self, mut child: Child, how: &str) -> ExitStatus {
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "cofferd did not stop {how} within {STOP_TIMEOUT:?}; log:\n{}",
                    tail(&self.log, 30)
                );
            }
            thread::sleep(Duration::from_millis(5));
        };
        assert!(
            status.success(),
            "cofferd exited with {status} ({how}); log:\n{}",
            tail(&self.log, 30)
        );
        assert!(
            !self.cli.socket.exists(),
            "cofferd left its socket {} behind ({how})",
            self.cli.socket.display()
        );
        status
    }

    /// A clonable handle for running `coffer` against this daemon.
    pub fn cli(&self) -> Cli {
        self.cli.clone()
    }

    pub fn data_dir(&self) -> &Path {
        &self.cli.data_dir
    }

    pub fn socket(&self) -> &Path {
        &self.cli.socket
    }

    /// The running daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon is running").id()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Everything the daemon has logged so far (all runs).
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Starts `cofferd` on this dir (after [`Daemon::stop`] or
    /// [`Daemon::kill9`]) and waits until it answers `status`.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "daemon is already running");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the daemon log");
        let mut cmd = match self.opts.wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(cofferd_bin());
                c
            }
            None => Command::new(cofferd_bin()),
        };
        cmd.arg("--data-dir")
            .arg(&self.cli.data_dir)
            .arg("--socket")
            .arg(&self.cli.socket)
            // No user config file may leak in.
            .arg("--config")
            .arg(self.dir.path().join("no-config.toml"))
            .args(["--kdf-memory-kib", KDF_MEMORY_KIB])
            .args(["--kdf-iterations", KDF_ITERATIONS])
            .env_remove("COFFER_DATA_DIR")
            .env_remove("COFFER_SOCKET")
            .env_remove("COFFER_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(secs) = self.opts.auto_lock_secs {
            cmd.arg("--auto-lock-secs").arg(secs.to_string());
        }
        cmd.env_remove("COFFER_NO_MDNS")
            .env_remove("COFFER_LISTEN")
            .env_remove("COFFER_NO_NETWORK");
        if !self.opts.mdns {
            cmd.arg("--no-mdns");
        }
        if !self.opts.default_listen && !self.opts.args.iter().any(|a| a == "--listen") {
            cmd.args(["--listen", LOOPBACK_ANY_PORT]);
        }
        // Daemons run in parallel: the web app only where a test asks
        // for it (`--ui-listen 127.0.0.1:0`).
        cmd.env_remove("COFFER_UI_LISTEN")
            .env_remove("COFFER_NO_UI");
        if !self.opts.args.iter().any(|a| a == "--ui-listen") {
            cmd.arg("--no-ui");
        }
        cmd.args(&self.opts.args);
        for (k, v) in &self.opts.env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", cofferd_bin().display()));
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let pid = self.pid();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .expect("spawned")
                .try_wait()
                .expect("try_wait")
            {
                self.child = None;
                panic!(
                    "cofferd exited ({status}) before it was ready; log:\n{}",
                    tail(&self.log, 30)
                );
            }
            if let Ok(client) = Client::connect(&self.cli.socket) {
                let _ = client.set_timeout(Some(Duration::from_secs(5)));
                let mut client = client;
                if let Ok(status) = client.call::<Status>(&Empty {}) {
                    assert_eq!(
                        status.pid,
                        pid,
                        "another daemon answers on {}",
                        self.cli.socket.display()
                    );
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "cofferd did not answer within {READY_TIMEOUT:?}; log:\n{}",
                    tail(&self.log, 30)
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The daemon's status over the raw protocol.
    pub fn raw_status(&self) -> StatusResult {
        self.client()
            .call::<Status>(&Empty {})
            .expect("status call")
    }

    /// SIGTERM and wait: asserts a clean exit and that the socket is gone.
    pub fn stop(&mut self) -> ExitStatus {
        let child = self.child.take().expect("daemon is running");
        // SAFETY: kill has no memory-safety preconditions; the pid is our own
        // unreaped child, so it cannot have been reused.
        let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM) failed");
        self.reap(child, "on SIGTERM")
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("daemon is running");
        child.kill().expect("SIGKILL cofferd");
        child.wait().expect("reap cofferd");
    }

    /// Replaces the extra `cofferd` arguments for the next start.
    pub fn set_args(&mut self, args: Vec<String>) {
        self.opts.args = args;
    }

    /// Adds to the extra `cofferd` environment for the next start (e.g.
    /// libfaketime's for a laptop whose clock is off).
    pub fn add_env(&mut self, env: &[(String, String)]) {
        self.opts.env.extend_from_slice(env);
    }

    /// Clean stop (SIGTERM) then start again on the same dir.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running `coffer events --json`: its stdout parsed as a stream of JSON
/// objects, delivered through a channel. Killed on drop.
pub struct Events {
    child: Child,
    rx: Receiver<Value>,
}

impl Events {
    /// Starts a subscriber. It may not have subscribed yet when this returns:
    /// see [`Events::start_synced`].
    pub fn start(cli: &Cli) -> Events {
        let mut child = cli
            .command(&["events", "--json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn coffer events");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let stream = serde_json::Deserializer::from_reader(stdout).into_iter::<Value>();
            for value in stream {
                let Ok(value) = value else { return };
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        Events { child, rx }
    }

    /// Starts a subscriber on an initialised vault and waits until it
    /// demonstrably receives events (by locking and unlocking until one
    /// arrives). Leaves the vault unlocked.
    pub fn start_synced(cli: &Cli) -> Events {
        let events = Events::start(cli);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            cli.ok(&["lock"], "");
            cli.unlock();
            if events.next(Duration::from_millis(300)).is_some() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "`coffer events --json` never received an event"
            );
        }
        // Drain the rest of the lock/unlock pair.
        while events.next(Duration::from_millis(200)).is_some() {}
        events
    }

    /// The next event, if one arrives within `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<Value> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// Waits for an event matching `pred`, skipping others; panics with what
    /// was seen after `timeout`.
    #[track_caller]
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Some(v) if pred(&v) => return v,
                Some(v) => seen.push(v),
                None => panic!("no matching event within {timeout:?}; saw: {seen:#?}"),
            }
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes `pid` (a cofferd we did not spawn ourselves) stop: SIGTERM, then
/// SIGKILL if it is still there after `grace`. Only acts when
/// /proc/PID/cmdline shows a cofferd using `socket`, so a recycled pid is
/// never hit. Returns whether that process is gone (or a zombie).
pub fn terminate_foreign_cofferd(pid: u32, socket: &Path, grace: Duration) -> bool {
    let is_ours = || {
        fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|raw| {
            let text = String::from_utf8_lossy(&raw);
            text.contains("cofferd") && text.contains(&*socket.to_string_lossy())
        })
    };
    let gone = || process_gone(pid);
    if gone() || !is_ours() {
        return gone();
    }
    // SAFETY: kill has no memory-safety preconditions; checked it is our cofferd.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if gone() {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    if is_ours() {
        // SAFETY: as above.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    }
    thread::sleep(Duration::from_millis(100));
    gone()
}

/// Whether process `pid` has exited (gone, or a zombie nobody reaped yet).
pub fn process_gone(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the parenthesised command name: Z = zombie.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Pids of the live `cofferd` processes whose command line names `socket`.
pub fn cofferd_pids_for(socket: &Path) -> Vec<u32> {
    let socket = socket.to_string_lossy().into_owned();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|raw| {
                let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
                args.first()
                    .is_some_and(|exe| String::from_utf8_lossy(exe).ends_with("cofferd"))
                    && args.contains(&socket.as_bytes())
            })
        })
        .filter(|pid| !process_gone(*pid))
        .collect();
    pids.sort_unstable();
    pids
}

/// Every regular file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(t) if t.is_file() => out.push(path),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

/// Whether `needle` occurs in `haystack`.
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// `value[key]` as a str, panicking with the JSON when missing.
#[track_caller]
/// The names of the items `coffer ls --folder FOLDER` lists, sorted; none
/// when it fails (the folder is not there yet).
pub fn item_names(cli: &Cli, folder: &str) -> Vec<String> {
    let out = cli.coffer(&["ls", "--folder", folder, "--json"], "");
    if !out.status.success() {
        return Vec::new();
    }
    let v: Value = serde_json::from_slice(&out.stdout).expect("ls --json prints JSON");
    let mut names: Vec<String> = v
        .as_array()
        .map(|a| a.iter().map(|i| str_field(i, "name").to_string()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

pub fn str_field<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key:?} in {value:#}"))
}
