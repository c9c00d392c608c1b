//! Enrolment between real daemons on loopback (issue 5): `coffer invite` →
//! `coffer join --peer` → the same verification code on both screens →
//! `coffer invite confirm`; device links; and the failures (wrong, expired,
//! reused code, a device racing the invite, a mismatched verification code,
//! a rejected join), none of which adds anyone.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use coffer_daemon::net::enrol::{InviteCode, InviteSecret};
use coffer_tests::{str_field, Cli, Daemon, PIN};
use serde_json::Value;

use crate::sync::{addr, free_port, start_node, wait_until, SYNC_TIMEOUT};

const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// A `coffer join` running in the background, its stdout read line by line.
pub(crate) struct Joining {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: thread::JoinHandle<String>,
}

impl Joining {
    pub(crate) fn spawn(cli: &Cli, args: &[&str], stdin: &str) -> Joining {
        Joining::start(cli.command(args), stdin)
    }

    /// As [`Joining::spawn`], running `cmd` (e.g. `coffer join` under
    /// script(1), on a terminal).
    pub(crate) fn start(mut cmd: std::process::Command, stdin: &str) -> Joining {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run coffer join");
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(stdin.as_bytes()).expect("write stdin");
        drop(input);
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut err = child.stderr.take().expect("stderr");
        let stderr = thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Joining {
            child,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    /// The verification code the joiner prints.
    pub(crate) fn verification_code(&mut self) -> String {
        match self.try_verification_code() {
            Some(code) => code,
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "the joiner printed no verification code; stdout: {:?}",
                    self.seen
                );
            }
        }
    }

    /// The verification code the joiner prints, or `None` when it ends
    /// (or gives up) without one.
    pub(crate) fn try_verification_code(&mut self) -> Option<String> {
        let deadline = Instant::now() + JOIN_TIMEOUT;
        loop {
            if let Some(code) = self
                .seen
                .iter()
                .find_map(|l| l.strip_prefix("Verification code: "))
            {
                return Some(code.trim().to_string());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => return None,
            }
        }
    }

    /// Waits for the join to end: (exit code, stdout, stderr).
    pub(crate) fn finish(mut self) -> (i32, String, String) {
        let deadline = Instant::now() + JOIN_TIMEOUT;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("the join did not end; stdout so far: {:?}", self.seen);
            }
            thread::sleep(Duration::from_millis(20));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(line);
        }
        let stderr = self.stderr.join().unwrap_or_default();
        (status.code().unwrap_or(-1), self.seen.join("\n"), stderr)
    }
}

/// An initialised daemon on `port` that founded team "Acme" (its user is
/// test@example.org, the team's admin).
fn inviter(port: u16) -> Daemon {
    let a = start_node(port, &[]);
    a.init();
    a.ok(&["team", "create", "Acme"], "");
    a
}

pub(crate) fn users(cli: &Cli) -> Vec<Value> {
    cli.json(&["user", "ls", "--json"], "")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn user<'a>(list: &'a [Value], email: &str) -> Option<&'a Value> {
    list.iter().find(|u| u["email"] == email)
}

fn pending(cli: &Cli, what: &str) -> Vec<Value> {
    cli.json(&[what, "pending", "--json"], "")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits until the inviter lists one pending join; returns it.
pub(crate) fn one_pending(cli: &Cli, what: &str) -> Value {
    let mut got = Vec::new();
    wait_until(SYNC_TIMEOUT, "a join is pending", || {
        got = pending(cli, what);
        !got.is_empty()
    });
    assert_eq!(got.len(), 1, "{got:?}");
    got.remove(0)
}

fn invite_code(a: &Cli, args: &[&str]) -> String {
    let mut all = vec!["invite"];
    all.extend_from_slice(args);
    all.push("--json");
    str_field(&a.json(&all, ""), "code").to_string()
}

fn uninitialised(cli: &Cli) -> bool {
    cli.status()["initialized"] == Value::Bool(false)
}

#[test]
fn invite_join_confirm_enrols_a_fresh_device() {
    let pa = free_port();
    let a = inviter(pa);
    let b = start_node(free_port(), &[]);
    let code = invite_code(&a, &["bob@example.com", "--name", "Bob", "--group", "it"]);
    assert!(code.starts_with("coffer-invite-"), "{code}");
    assert!(!a.log_text().contains(&code), "the code was logged");

    let mut join = Joining::spawn(
        &b,
        &["join", &code, "--peer", &addr(pa), "--pin-stdin"],
        &format!("{PIN}\n"),
    );
    let shown = join.verification_code();
    assert_eq!(shown.len(), 7, "{shown:?}");
    let p = one_pending(&a, "invite");
    assert_eq!(p["email"], "bob@example.com");
    assert_eq!(p["name"], "Bob");
    assert_eq!(p["verification_code"], shown.as_str());
    assert_eq!(p["groups"], serde_json::json!(["it"]));
    // Nothing is added before the confirmation.
    assert!(user(&users(&a), "bob@example.com").is_none());
    assert!(uninitialised(&b));

    a.ok(&["invite", "confirm", &shown], "");
    let (code_exit, out, err) = join.finish();
    assert_eq!(code_exit, 0, "join failed: {out}\n{err}");
    assert!(out.contains("Enrolled"), "{out}");

    let s = b.status();
    assert_eq!(s["initialized"], true);
    assert_eq!(s["locked"], false);
    assert_eq!(s["email"], "bob@example.com");
    assert_eq!(s["name"], "Bob");
    let on_a = users(&a);
    let bob = user(&on_a, "bob@example.com").expect("bob on the inviter");
    assert_eq!(bob["groups"], serde_json::json!(["it"]));
    assert_eq!(bob["admin"], false);
    assert_eq!(on_a.len(), 2);
    let on_b = users(&b);
    assert!(user(&on_b, "bob@example.com").is_some(), "{on_b:?}");
    assert!(user(&on_b, "test@example.org").is_some(), "{on_b:?}");
    // The joiner's daemon now syncs with the inviter.
    let b_id = str_field(&b.status(), "device_id").to_string();
    wait_until(
        SYNC_TIMEOUT,
        "the inviter is connected to the new device",
        || crate::sync::connected(&a, &b_id),
    );
    // Folders shared with the new user's group follow.
    a.ok(&["folder", "create", "Registrar"], "");
    a.ok(
        &[
            "folder",
            "share",
            "Registrar",
            "--group",
            "it",
            "--role",
            "member",
        ],
        "",
    );
    a.add_login("Domain", "s3cret", &["--folder", "Registrar"]);
    wait_until(
        SYNC_TIMEOUT,
        "the new device reads the shared folder",
        || crate::sync::item(&b, "Registrar/Domain").is_some(),
    );
    // Only a team admin invites.
    assert!(b
        .fails(&["invite", "carol@example.com"], "", 10)
        .contains("admin"));
    // The code is single-use and was never logged.
    assert!(pending(&a, "invite").is_empty());
    assert!(!a.log_text().contains(&code) && !b.log_text().contains(&code));
}

#[test]
fn join_keeps_an_initialised_vault() {
    let pa = free_port();
    let a = inviter(pa);
    let b = start_node(free_port(), &[]);
    b.init();
    b.add_login("Mail", "hunter2", &[]);
    let code = invite_code(&a, &["test2@example.org", "--admin"]);
    // Joining with an initialised device needs its keys: unlocked.
    b.ok(&["lock"], "");
    b.fails(&["join", &code, "--peer", &addr(pa)], "", 3);
    b.unlock();
    let mut join = Joining::spawn(&b, &["join", &code, "--peer", &addr(pa)], "");
    let shown = join.verification_code();
    assert_eq!(
        one_pending(&a, "invite")["verification_code"],
        shown.as_str()
    );
    a.ok(&["invite", "confirm", &shown.replace(' ', "")], "");
    let (exit, out, err) = join.finish();
    assert_eq!(exit, 0, "{out}\n{err}");
    // The personal vault is kept; the device is in the team, as its admin.
    assert_eq!(
        str_field(&b.json(&["get", "Mail", "--json"], ""), "name"),
        "Mail"
    );
    let on_a = users(&a);
    assert_eq!(
        user(&on_a, "test2@example.org").expect("added")["admin"],
        true
    );
}

#[test]
fn device_link_adds_a_device_of_the_same_user() {
    let pa = free_port();
    let a = inviter(pa);
    let a2 = start_node(free_port(), &[]);
    let code = str_field(&a.json(&["device", "link", "--json"], ""), "code").to_string();
    // An invite code's command does not take a link code.
    let mut join = Joining::spawn(
        &a2,
        &["device", "join", &code, "--peer", &addr(pa), "--pin-stdin"],
        &format!("{PIN}\n"),
    );
    let shown = join.verification_code();
    assert!(pending(&a, "invite").is_empty(), "a link is not an invite");
    let p = one_pending(&a, "device");
    assert_eq!(p["verification_code"], shown.as_str());
    assert_eq!(p["email"], "test@example.org");
    a.ok(&["device", "confirm", &shown], "");
    let (exit, out, err) = join.finish();
    assert_eq!(exit, 0, "{out}\n{err}");
    assert_eq!(a2.status()["email"], "test@example.org");
    let a2_id = str_field(&a2.status(), "device_id").to_string();
    let devices = a.json(&["device", "ls", "--json"], "");
    let list = devices.as_array().expect("a list");
    let d = list
        .iter()
        .find(|d| d["device_id"] == a2_id.as_str())
        .unwrap_or_else(|| panic!("the new device on the first: {devices}"));
    assert_eq!(d["user"], "test@example.org");
    assert_eq!(users(&a).len(), 1, "no new user");
}

#[test]
fn enrolment_failures_add_nobody() {
    let pa = free_port();
    let a = inviter(pa);
    let b = start_node(free_port(), &[]);
    let peer = addr(pa);
    let join_args = |code: &str| -> Vec<String> {
        ["join", code, "--peer", &peer, "--pin-stdin"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let fails = |cli: &Cli, code: &str, exit: i32| -> String {
        let args = join_args(code);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli.fails(&args, format!("{PIN}\n"), exit)
    };

    // A mistyped code, and a well-formed code with a wrong secret.
    let code = invite_code(&a, &["bob@example.com"]);
    let mut typo = code.clone();
    let last = typo.pop().unwrap();
    typo.push(if last == 'a' { 'b' } else { 'a' });
    assert!(fails(&b, &typo, 15).contains("not an invite code"));
    let mut wrong = InviteCode::parse(&code).unwrap();
    wrong.secret = InviteSecret::generate(&mut rand::rngs::OsRng);
    assert!(fails(&b, &wrong.encode(), 15).contains("wrong invite code"));
    // A fresh device with no terminal and no --pin-stdin fails up front.
    assert!(b
        .fails(&["join", &code, "--peer", &peer], "", 2)
        .contains("--pin-stdin"));
    // Without --peer and without mDNS, the inviter cannot be found.
    assert!(b
        .fails(&["join", &code, "--pin-stdin"], format!("{PIN}\n"), 19)
        .contains("--peer"));

    // An expired code.
    let expired = invite_code(&a, &["carol@example.com", "--expires", "1s"]);
    thread::sleep(Duration::from_millis(1500));
    assert!(fails(&b, &expired, 16).contains("expired"));

    // A third device races the invite: it gets a verification code of its
    // own, the real joiner then hears "already used", and the inviter
    // rejects the racer.
    let racer = start_node(free_port(), &[]);
    let raced = invite_code(&a, &["dave@example.com"]);
    let args = join_args(&raced);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut race = Joining::spawn(&racer, &args, &format!("{PIN}\n"));
    let racer_code = race.verification_code();
    assert!(fails(&b, &raced, 17).contains("already used"));
    assert_eq!(
        one_pending(&a, "invite")["verification_code"],
        racer_code.as_str()
    );
    a.ok(&["invite", "reject", &racer_code], "");
    let (exit, out, err) = race.finish();
    assert_eq!(exit, 18, "{out}\n{err}");
    assert!(err.contains("rejected"), "{err}");
    assert!(uninitialised(&racer));

    // A mismatched verification code is not confirmed; the join is rejected.
    let mismatch = invite_code(&a, &["erin@example.com"]);
    let args = join_args(&mismatch);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut join = Joining::spawn(&b, &args, &format!("{PIN}\n"));
    let shown = join.verification_code();
    let other = if shown == "000 000" {
        "000 001"
    } else {
        "000 000"
    };
    a.fails(&["invite", "confirm", other], "", 5);
    assert_eq!(pending(&a, "invite").len(), 1, "still pending");
    a.ok(&["invite", "reject", &shown], "");
    let (exit, _, err) = join.finish();
    assert_eq!(exit, 18, "{err}");
    // The code stays refused, and says why: rejected (exit 18, issue 21).
    assert!(fails(&b, &mismatch, 18).contains("rejected"));

    // Nobody was added; the joiners are still without a vault.
    assert_eq!(users(&a).len(), 1, "{:?}", users(&a));
    assert_eq!(a.json(&["team", "show", "--json"], "")["users"], 1);
    assert!(pending(&a, "invite").is_empty());
    assert!(uninitialised(&b));
    assert!(!a.log_text().contains(&code));
}

/// Issue 21: `coffer invite ls|cancel`, and the documented exit codes of a
/// code cancelled (by `invite cancel`, or by a restart of the inviter's
/// daemon: 15) and of one retried after its join was rejected (18).
#[test]
fn issue_21_invite_ls_cancel_and_the_exit_codes_of_closed_codes() {
    let pa = free_port();
    let mut a = inviter(pa);
    let b = start_node(free_port(), &[]);
    let peer = addr(pa);
    let join = |code: &str, exit: i32| -> String {
        b.fails(
            &["join", code, "--peer", &peer, "--pin-stdin"],
            format!("{PIN}\n"),
            exit,
        )
    };

    assert!(a.ok(&["invite", "ls"], "").contains("No invites"));
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let bob = invite_code(&a, &["bob@example.com", "--expires", "2h"]);
    let carol = invite_code(&a, &["carol@example.com", "--name", "Carol"]);
    let list = a.json(&["invite", "ls", "--json"], "");
    let list = list.as_array().expect("a list");
    assert_eq!(list.len(), 2, "{list:?}");
    // Newest first.
    assert_eq!(list[0]["email"], "carol@example.com");
    assert_eq!(list[0]["name"], "Carol");
    assert_eq!(list[1]["email"], "bob@example.com");
    for i in list {
        assert_eq!(i["state"], "open");
        assert_eq!(i["kind"], "user");
        assert_eq!(str_field(i, "id").len(), 16);
        let created = i["created_ms"].as_i64().unwrap();
        assert!(
            created >= before - 1000 && created <= before + 60_000,
            "{i}"
        );
    }
    let bob_expires =
        list[1]["expires_ms"].as_i64().unwrap() - list[1]["created_ms"].as_i64().unwrap();
    assert!(
        (7_190_000..=7_210_000).contains(&bob_expires),
        "{bob_expires}"
    );
    assert!(
        !a.ok(&["invite", "ls"], "").contains(&carol),
        "a code is listed"
    );

    // Cancel by id prefix (as `invite ls` prints it): the code exits 15.
    let carol_id = str_field(&list[0], "id")[..8].to_string();
    let human = a.ok(&["invite", "ls"], "");
    assert!(
        human.contains(&carol_id) && human.contains("open"),
        "{human}"
    );
    let cancelled = a.json(&["invite", "cancel", &carol_id, "--json"], "");
    assert_eq!(cancelled["state"], "cancelled");
    assert_eq!(cancelled["email"], "carol@example.com");
    assert!(join(&carol, 15).contains("cancelled"));
    // Cancelling again, or an email with no open invite, is refused.
    a.fails(&["invite", "cancel", &carol_id], "", 9);
    a.fails(&["invite", "cancel", "carol@example.com"], "", 5);
    a.fails(&["invite", "cancel", "nobody@example.com"], "", 5);

    // Retried after a rejection: 18 both times.
    let dave = invite_code(&a, &["dave@example.com"]);
    let mut joining = Joining::spawn(
        &b,
        &["join", &dave, "--peer", &peer, "--pin-stdin"],
        &format!("{PIN}\n"),
    );
    let shown = joining.verification_code();
    let waiting = a.json(&["invite", "ls", "--json"], "");
    assert_eq!(waiting[0]["state"], "waiting", "{waiting:#}");
    // A code whose join waits is rejected, not cancelled.
    a.fails(&["invite", "cancel", "dave@example.com"], "", 5);
    a.ok(&["invite", "reject", &shown], "");
    let (exit, _, err) = joining.finish();
    assert_eq!(exit, 18, "{err}");
    assert!(join(&dave, 18).contains("rejected"));

    // A restart of the inviter's daemon cancels the open code: 15, saying so.
    a.restart();
    assert!(a.ok(&["invite", "ls"], "").contains("No invites"));
    let err = join(&bob, 15);
    assert!(err.contains("restarted"), "{err}");
    assert!(uninitialised(&b));
}
