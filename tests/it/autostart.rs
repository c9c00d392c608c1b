//! The autostart path: with no daemon answering (and no
//! COFFER_NO_AUTOSTART), `coffer` starts `cofferd` itself, detached, with
//! the settings of COFFER_CONFIG (cheap Argon2 here), and later commands
//! reuse it.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use coffer_tests::{
    coffer_bin, cofferd_pids_for, process_gone, run_with_timeout, short_tempdir,
    terminate_foreign_cofferd, PIN,
};
use serde_json::Value;

/// Stops the autostarted daemons (not our children) however the test ends:
/// the ones recorded, and any other cofferd serving this test's socket.
struct Reaper {
    socket: PathBuf,
    pids: Vec<u32>,
}

impl Drop for Reaper {
    fn drop(&mut self) {
        let mut pids = std::mem::take(&mut self.pids);
        pids.extend(cofferd_pids_for(&self.socket));
        for pid in pids {
            terminate_foreign_cofferd(pid, &self.socket, Duration::from_secs(5));
        }
    }
}

fn cheap_env(dir: &std::path::Path) -> Env {
    let env = Env {
        socket: dir.join("run").join("cofferd.sock"),
        data_dir: dir.join("data"),
        config: dir.join("config.toml"),
    };
    // Cheap Argon2 for the daemon the CLI starts; an unusual auto-lock shows
    // the file was read.
    std::fs::write(
        &env.config,
        "kdf_memory_kib = 256\nkdf_iterations = 1\nauto_lock_secs = 777\nmdns = false\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\n",
    )
    .unwrap();
    env
}

struct Env {
    socket: PathBuf,
    data_dir: PathBuf,
    config: PathBuf,
}

impl Env {
    fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut cmd = Command::new(coffer_bin());
        cmd.args(args)
            .env("COFFER_SOCKET", &self.socket)
            .env("COFFER_DATA_DIR", &self.data_dir)
            .env("COFFER_CONFIG", &self.config)
            .env_remove("COFFER_NO_AUTOSTART");
        run_with_timeout(&mut cmd, stdin.as_bytes(), Duration::from_secs(60))
    }

    #[track_caller]
    fn ok(&self, args: &[&str], stdin: &str) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "`coffer {}` failed: {}\n{}\nautostart log:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.data_dir.join("cofferd.log")).unwrap_or_default()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn status(&self) -> Value {
        serde_json::from_str(&self.ok(&["status", "--json"], "")).expect("status JSON")
    }
}

/// Field 6 of /proc/PID/stat: the session id.
fn session_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(3)?.parse().ok()
}

#[test]
fn cli_starts_the_daemon_when_none_answers() {
    let dir = short_tempdir();
    let env = cheap_env(dir.path());
    let mut reaper = Reaper {
        socket: env.socket.clone(),
        pids: Vec::new(),
    };
    assert!(!env.socket.exists());

    let status = env.status();
    let pid = status["pid"].as_u64().expect("pid") as u32;
    reaper.pids.push(pid);
    assert_eq!(status["initialized"], false);
    assert_eq!(status["auto_lock_secs"], 777, "COFFER_CONFIG was not used");
    assert_eq!(status["socket"], env.socket.to_str().unwrap());
    assert_eq!(status["data_dir"], env.data_dir.to_str().unwrap());
    assert!(env.socket.exists());
    let log = std::fs::read_to_string(env.data_dir.join("cofferd.log"))
        .expect("the autostarted daemon logs to DATA_DIR/cofferd.log");
    assert!(log.contains("cofferd ready"), "{log}");
    // Detached: its own session, outliving the command that started it.
    assert_eq!(session_of(pid), Some(pid), "cofferd did not setsid");
    assert!(!process_gone(pid));
    assert_eq!(cofferd_pids_for(&env.socket), [pid]);

    // Later commands reuse it.
    env.ok(
        &[
            "init",
            "--name",
            "Auto",
            "--email",
            "auto@example.org",
            "--pin-stdin",
        ],
        &format!("{PIN}\n"),
    );
    env.ok(&["add", "login", "auto-item"], "auto-pw\n");
    assert_eq!(
        env.ok(&["get", "auto-item", "--field", "password"], ""),
        "auto-pw\n"
    );
    assert_eq!(env.status()["pid"], pid);

    // Stop it (SIGTERM: clean shutdown removes the socket); the next command
    // starts a fresh daemon on the same data.
    assert!(
        terminate_foreign_cofferd(pid, &env.socket, Duration::from_secs(10)),
        "the autostarted cofferd did not stop"
    );
    reaper.pids.clear();
    assert!(!env.socket.exists(), "socket left behind after SIGTERM");
    let status = env.status();
    let pid2 = status["pid"].as_u64().unwrap() as u32;
    reaper.pids.push(pid2);
    assert_ne!(pid2, pid);
    assert_eq!(status["initialized"], true);
    assert_eq!(status["locked"], true);
    env.ok(&["unlock", "--pin-stdin"], &format!("{PIN}\n"));
    assert_eq!(
        env.ok(&["get", "auto-item", "--field", "password"], ""),
        "auto-pw\n"
    );
    drop(reaper);
    assert!(process_gone(pid2), "cofferd {pid2} still running");
}

#[test]
fn concurrent_autostarts_leave_one_daemon() {
    let dir = short_tempdir();
    let env = std::sync::Arc::new(cheap_env(dir.path()));
    let mut reaper = Reaper {
        socket: env.socket.clone(),
        pids: Vec::new(),
    };
    let racers: Vec<_> = (0..4)
        .map(|_| {
            let env = env.clone();
            std::thread::spawn(move || env.run(&["status", "--json"], ""))
        })
        .collect();
    let outs: Vec<Output> = racers.into_iter().map(|r| r.join().unwrap()).collect();
    // A racer's CLI may return (served by the winner) while the daemon it
    // spawned is still starting; that loser exits once it finds the data
    // dir locked (exit 75). What must hold is that only one stays.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let live = loop {
        let live = cofferd_pids_for(&env.socket);
        let fresh: Vec<u32> = live
            .iter()
            .copied()
            .filter(|p| !reaper.pids.contains(p))
            .collect();
        reaper.pids.extend(fresh);
        if live.len() <= 1 || std::time::Instant::now() > deadline {
            break live;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(live.len(), 1, "one data dir, one daemon: {live:?}");

    let mut served = 0;
    for out in &outs {
        let err = String::from_utf8_lossy(&out.stderr);
        // A CLI whose own daemon lost the data-dir lock waits for the winner.
        assert!(out.status.success(), "a racer failed: {err}");
        let status: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(status["pid"], live[0], "answered by another daemon");
        served += 1;
    }
    assert_eq!(served, 4, "every racer is served");
    // Whoever lost, a later command is served by the one daemon.
    assert_eq!(env.status()["pid"], live[0]);
}
