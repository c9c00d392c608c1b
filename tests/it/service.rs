//! cofferd as a service (issue 17): systemd readiness (`READY=1` on
//! `NOTIFY_SOCKET` once it answers), the "already running" exit status the
//! unit does not restart on, and core dumps off in both binaries.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use coffer_tests::{cofferd_bin, run_with_timeout, Daemon, Options};

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
