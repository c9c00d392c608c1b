//! cofferd as a service (issue 17): systemd readiness (`READY=1` on
//! `NOTIFY_SOCKET` once it answers), the "already running" exit status the
//! unit does not restart on, core dumps off in both binaries, and `coffer
//! service install|status|uninstall` with autostart going through the
//! installed unit (against a stand-in `systemctl`: no user manager runs here).

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use coffer_tests::{
    coffer_bin, cofferd_bin, process_gone, run_with_timeout, short_tempdir,
    terminate_foreign_cofferd, Daemon, Options,
};
use serde_json::Value;

/// The soft "Max core file size" of a process, from /proc/PID/limits.
fn core_limit(pid: u32) -> String {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap_or_else(|| panic!("no core limit in {limits}"));
    line.split_whitespace()
        .nth(4)
        .unwrap_or_default()
        .to_string()
}

#[test]
fn cofferd_tells_systemd_it_is_ready_once_it_answers() {
    let dir = coffer_tests::short_tempdir();
    let notify = dir.path().join("notify.sock");
    let listener = UnixDatagram::bind(&notify).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let d = Daemon::start_with(Options {
        env: vec![("NOTIFY_SOCKET".into(), notify.display().to_string())],
        ..Options::default()
    });
    let mut buf = [0u8; 4096];
    let n = listener.recv(&mut buf).expect("a notification within 20 s");
    let msg = String::from_utf8_lossy(&buf[..n]);
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg}");
    assert!(
        msg.contains(&format!("STATUS=serving {}", d.socket().display())),
        "{msg}"
    );
    // It was ready: the socket answers with this daemon.
    assert_eq!(d.raw_status().pid, d.pid());
    // Core dumps are off in the daemon.
    assert_eq!(core_limit(d.pid()), "0");
}

#[test]
fn a_second_cofferd_on_the_same_socket_exits_75_at_once() {
    let d = Daemon::start();
    let started = Instant::now();
    let mut cmd = Command::new(cofferd_bin());
    cmd.arg("--socket")
        .arg(d.socket())
        .arg("--data-dir")
        .arg(d.data_dir())
        .args(["--no-mdns", "--listen", coffer_tests::LOOPBACK_ANY_PORT])
        .stdout(Stdio::null());
    let out = run_with_timeout(&mut cmd, b"", Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(75), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already serves"), "{err}");
    assert!(err.contains(&format!("pid {}", d.pid())), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The first one is untouched.
    assert_eq!(d.raw_status().pid, d.pid());
}

#[test]
fn coffer_turns_core_dumps_off_but_gives_run_children_the_usual_limit() {
    let d = Daemon::start();
    d.init();
    d.add_login("x", "pw-x", &[]);
    // `coffer run` prints its child's view, then its own (the parent's)
    // limit; coffer starts with a soft limit of 1 MiB (2048 blocks).
    let mut cmd = d.command(&[
        "run",
        "--",
        "sh",
        "-c",
        "ulimit -c; grep 'Max core file size' /proc/$PPID/limits",
    ]);
    // SAFETY: getrlimit/setrlimit are async-signal-safe and touch only the struct.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_CORE, &mut lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Hard limits are unlimited on the machines this runs on.
            lim.rlim_cur = (1 << 20).min(lim.rlim_max);
            if libc::setrlimit(libc::RLIMIT_CORE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = run_with_timeout(&mut cmd, b"", Duration::from_secs(30));
    assert!(out.status.success(), "{out:?}");
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("2048"), "the child's limit: {out}");
    let parent = lines.next().unwrap_or_default();
    assert_eq!(
        parent.split_whitespace().nth(4),
        Some("0"),
        "coffer's own core limit: {out}"
    );
}

/// A stand-in for `systemctl --user`: records every call in $FAKE_SD/calls,
/// keeps enabled/active state in $FAKE_SD, and on `start` runs the unit's
/// ExecStart itself (with the default socket spelled out and mDNS off, so
/// the test can find and stop it), returning once the socket exists.
const FAKE_SYSTEMCTL: &str = r#"#!/bin/sh
echo "$*" >> "$FAKE_SD/calls"
[ "$1" = --user ] || exit 1
shift
unit="$XDG_CONFIG_HOME/systemd/user/cofferd.service"
sock="$XDG_RUNTIME_DIR/coffer/cofferd.sock"
# Running, and not a zombie that nobody reaped yet (state Z in /proc/PID/stat).
alive() {
  [ -f "$FAKE_SD/pid" ] || return 1
  state=$(cut -d' ' -f3 "/proc/$(cat "$FAKE_SD/pid")/stat" 2>/dev/null)
  [ -n "$state" ] && [ "$state" != Z ]
}
case "$1" in
  show-environment) echo "HOME=$HOME" ;;
  daemon-reload) ;;
  enable) touch "$FAKE_SD/enabled" ;;
  disable)
    rm -f "$FAKE_SD/enabled"
    if [ "$2" = --now ] && alive; then
      kill "$(cat "$FAKE_SD/pid")"
      while alive; do sleep 0.05; done
    fi
    rm -f "$FAKE_SD/pid" ;;
  is-enabled) if [ -f "$FAKE_SD/enabled" ]; then echo enabled; else echo disabled; exit 1; fi ;;
  is-active) if alive; then echo active; else echo inactive; exit 3; fi ;;
  show) if alive; then cat "$FAKE_SD/pid"; else echo 0; fi ;;
  start)
    alive && exit 0
    [ -f "$unit" ] || exit 5
    exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
    setsid $exec_start --socket "$sock" --no-mdns </dev/null >>"$FAKE_SD/cofferd.log" 2>&1 &
    echo $! > "$FAKE_SD/pid"
    i=0
    while [ ! -S "$sock" ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done ;;
  *) exit 1 ;;
esac
"#;

/// Stops (by pid, after checking its command line) every cofferd a test
/// saw on its socket.
struct Reaper {
    socket: std::path::PathBuf,
    pids: Vec<u32>,
}

impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in std::mem::take(&mut self.pids) {
            terminate_foreign_cofferd(pid, &self.socket, Duration::from_secs(5));
        }
    }
}

#[test]
fn service_install_makes_autostart_use_the_unit_and_uninstall_removes_it() {
    let dir = short_tempdir();
    let home = dir.path().join("h");
    let run = dir.path().join("r");
    let sd = dir.path().join("sd");
    let bin = dir.path().join("bin");
    for d in [&home, &run, &sd, &bin] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::set_permissions(&run, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let systemctl = bin.join("systemctl");
    std::fs::write(&systemctl, FAKE_SYSTEMCTL).unwrap();
    std::fs::set_permissions(
        &systemctl,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let config_home = home.join(".config");
    // The daemon's own config at its default place: cheap Argon2, no mDNS,
    // loopback only.
    std::fs::create_dir_all(config_home.join("coffer")).unwrap();
    std::fs::write(
        config_home.join("coffer/config.toml"),
        "kdf_memory_kib = 256\nkdf_iterations = 1\nmdns = false\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\n",
    )
    .unwrap();
    let socket = run.join("coffer/cofferd.sock");
    let mut reaper = Reaper {
        socket: socket.clone(),
        pids: Vec::new(),
    };
    let coffer = |args: &[&str]| -> (bool, String, String) {
        let mut cmd = Command::new(coffer_bin());
        cmd.args(args)
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", &config_home)
            .env("XDG_RUNTIME_DIR", &run)
            .env("FAKE_SD", &sd)
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    bin.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            );
        for v in [
            "XDG_DATA_HOME",
            "COFFER_SOCKET",
            "COFFER_DATA_DIR",
            "COFFER_CONFIG",
            "COFFER_LISTEN",
            "COFFER_NO_MDNS",
            "COFFER_NO_NETWORK",
            "COFFER_NO_AUTOSTART",
        ] {
            cmd.env_remove(v);
        }
        let out = run_with_timeout(&mut cmd, b"", Duration::from_secs(60));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let json = |args: &[&str]| -> Value {
        let (ok, out, err) = coffer(args);
        assert!(ok, "coffer {args:?}: {out}\n{err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    let starts = || {
        std::fs::read_to_string(sd.join("calls"))
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == "--user start cofferd.service")
            .count()
    };
    let service_pid = || {
        std::fs::read_to_string(sd.join("pid"))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
    };

    // Install: the unit runs the cofferd beside this coffer, is enabled and started.
    let st = json(&["service", "install", "--json"]);
    let unit = config_home.join("systemd/user/cofferd.service");
    assert_eq!(st["manager"], "systemd");
    assert_eq!(st["file"], unit.to_str().unwrap(), "{st}");
    assert_eq!(st["enabled"], true, "{st}");
    assert_eq!(st["active"], true, "{st}");
    let pid = service_pid().expect("the service runs");
    reaper.pids.push(pid);
    assert_eq!(st["service_pid"], pid, "{st}");
    assert_eq!(st["daemon_pid"], pid, "{st}");
    let text = std::fs::read_to_string(&unit).unwrap();
    let cofferd = coffer_bin().parent().unwrap().join("cofferd");
    let cofferd = std::fs::canonicalize(cofferd).unwrap();
    assert!(
        text.lines()
            .any(|l| l == format!("ExecStart={}", cofferd.display())),
        "{text}"
    );
    assert!(text.contains("RestartPreventExitStatus=75"), "{text}");
    let calls = std::fs::read_to_string(sd.join("calls")).unwrap();
    for call in ["--user daemon-reload", "--user enable cofferd.service"] {
        assert!(calls.lines().any(|l| l == call), "{call} missing: {calls}");
    }
    assert_eq!(starts(), 1);

    // The daemon stops; the next command starts it again through the unit,
    // not as a detached daemon of its own.
    assert!(terminate_foreign_cofferd(
        pid,
        &socket,
        Duration::from_secs(10)
    ));
    let st = json(&["status", "--json"]);
    assert_eq!(starts(), 2, "autostart did not go through the unit");
    let pid2 = service_pid().unwrap();
    reaper.pids.push(pid2);
    assert_ne!(pid2, pid);
    assert_eq!(st["pid"], pid2, "{st}");
    let st = json(&["service", "status", "--json"]);
    assert_eq!(st["service_pid"], pid2, "{st}");
    assert_eq!(st["daemon_pid"], pid2, "{st}");
    let (ok, out, _) = coffer(&["service", "status"]);
    assert!(
        ok && out.contains("the daemon on the socket is the service's"),
        "{out}"
    );

    // Uninstall: stopped, disabled, the unit file gone; autostart is back to
    // a detached daemon.
    let st = json(&["service", "uninstall", "--json"]);
    assert_eq!(st["removed"][0], unit.to_str().unwrap(), "{st}");
    assert!(!unit.exists());
    assert!(process_gone(pid2));
    let st = json(&["status", "--json"]);
    let pid3 = st["pid"].as_u64().unwrap() as u32;
    reaper.pids.push(pid3);
    assert_eq!(starts(), 2, "started a unit that is not installed");
    assert_ne!(Some(pid3), service_pid());
    let st = json(&["service", "status", "--json"]);
    assert_eq!(st["file"], Value::Null, "{st}");
    assert_eq!(st["enabled"], false, "{st}");
    assert_eq!(st["daemon_pid"], pid3, "{st}");
}

#[test]
fn the_log_file_rotates_by_size() {
    let dir = short_tempdir();
    let log = dir.path().join("cofferd.log");
    let old = dir.path().join("cofferd.log.1");
    std::fs::write(&old, "the generation before last\n").unwrap();
    let mut d = Daemon::start_with(Options {
        args: vec![
            "--log-file".into(),
            log.display().to_string(),
            "--log-max-bytes".into(),
            "300".into(),
        ],
        env: vec![("RUST_LOG".into(), "trace".into())],
        ..Options::default()
    });
    // Start-up alone writes more than 300 bytes; requests add more.
    for _ in 0..5 {
        d.ok(&["status"], "");
    }
    d.stop();
    let current = std::fs::read_to_string(&log).unwrap();
    let previous = std::fs::read_to_string(&old).unwrap();
    assert!(
        !previous.contains("the generation before last"),
        "PATH.1 not replaced"
    );
    for (name, text) in [("current", &current), ("previous", &previous)] {
        // One line may cross the limit: the file rotates before the next write.
        assert!(
            text.len() < 300 + 4096,
            "{name} log is {} bytes",
            text.len()
        );
        assert!(!text.is_empty(), "{name} log is empty");
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&log).unwrap().permissions().mode() & 0o777,
        0o600
    );
}
