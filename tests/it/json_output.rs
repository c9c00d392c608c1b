//! `--json` on every command (issue 17): each subcommand that `coffer help`
//! lists runs once with `--json` against a real daemon; a success prints one
//! JSON value on stdout, a failure one JSON error line on stderr whose
//! `exit_code` is the process's. A command missing from the table fails the
//! test, so a new command cannot ship without its JSON.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use coffer_tests::{coffer_bin, run_with_timeout, Daemon, Events, PIN};
use serde_json::Value;

/// Every command path `coffer help` shows (`["add", "login"]`, ...), and
/// whether it runs by itself (a leaf, or a command with its own arguments
/// beside subcommands, like `totp ITEM` / `totp set`).
fn command_paths() -> Vec<(Vec<String>, bool)> {
    fn walk(prefix: Vec<String>, out: &mut Vec<(Vec<String>, bool)>) {
        let mut cmd = std::process::Command::new(coffer_bin());
        cmd.args(&prefix).arg("--help");
        let help = run_with_timeout(&mut cmd, b"", Duration::from_secs(10));
        assert!(help.status.success(), "{prefix:?} --help: {help:?}");
        let text = String::from_utf8_lossy(&help.stdout).into_owned();
        let mut subs = Vec::new();
        let mut in_commands = false;
        for line in text.lines() {
            if line == "Commands:" {
                in_commands = true;
                continue;
            }
            if in_commands {
                if line.trim().is_empty() {
                    break;
                }
                let name = line.split_whitespace().next().unwrap_or_default();
                if name != "help" {
                    subs.push(name.to_string());
                }
            }
        }
        let usage = text
            .lines()
            .find(|l| l.starts_with("Usage: "))
            .unwrap_or_default();
        let runs_alone = subs.is_empty() || !usage.trim_end().ends_with("<COMMAND>");
        if !prefix.is_empty() {
            out.push((prefix.clone(), runs_alone));
        }
        for s in subs {
            let mut p = prefix.clone();
            p.push(s);
            walk(p, out);
        }
    }
    let mut out = Vec::new();
    walk(Vec::new(), &mut out);
    out
}

/// The command path an invocation runs: its longest prefix of known paths.
fn path_of(args: &[&str], known: &BTreeSet<Vec<String>>) -> Vec<String> {
    let mut best = Vec::new();
    for n in 1..=args.len() {
        let p: Vec<String> = args[..n].iter().map(|s| s.to_string()).collect();
        if known.contains(&p) {
            best = p;
        }
    }
    best
}

#[test]
fn every_command_prints_json_with_json_errors_included() {
    let paths = command_paths();
    let known: BTreeSet<Vec<String>> = paths.iter().map(|(p, _)| p.clone()).collect();
    assert!(known.contains(&vec!["add".to_string(), "login".to_string()]));

    let mut d = Daemon::start();
    let dir = d.dir.path().to_path_buf();
    let file = |name: &str| dir.join(name).display().to_string();
    std::fs::write(dir.join("tpl"), "pw={{ coffer://github/password }}\n").unwrap();
    std::fs::write(
        dir.join("codes.txt"),
        "otpauth://totp/Site:a?secret=JBSWY3DPEHPK3PXP\n",
    )
    .unwrap();
    // A service manager that is not there: `coffer service` must say so in JSON.
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in ["systemctl", "launchctl"] {
        let p = bin.join(tool);
        std::fs::write(
            &p,
            "#!/bin/sh\necho 'Failed to connect to bus' >&2\nexit 1\n",
        )
        .unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let pin = format!("{PIN}\n");
    let pin_change = format!("{PIN}\n739251\n");
    let pin_back = format!("739251\n{PIN}\n");
    let pin_line = format!("{PIN}\n");
    let backup_lines = format!("{PIN}\nbackup pass\n");
    let device0 = "00".repeat(32);
    let relay_peer = libp2p::identity::Keypair::ed25519_from_bytes([7u8; 32])
        .expect("a seed")
        .public()
        .to_peer_id()
        .to_string();
    let relay_addr = format!("/ip4/192.0.2.7/tcp/7373/p2p/{relay_peer}");
    let audit_file = file("audit.csv");
    let (tpl, out, codes, bak) = (
        file("tpl"),
        file("out.txt"),
        file("codes.txt"),
        file("b.age"),
    );
    #[rustfmt::skip]
    let table: Vec<(Vec<&str>, &str, i32)> = vec![
        (vec!["status"], "", 0),
        (vec!["ls"], "", 4),
        (vec!["init", "--name", "Ada", "--email", "ada@example.org", "--pin-stdin"], &pin, 0),
        (vec!["init", "--name", "Ada", "--email", "ada@example.org", "--pin-stdin"], &pin, 13),
        (vec!["lock"], "", 0),
        (vec!["get", "github"], "", 3),
        (vec!["unlock", "--pin-stdin"], "0000\n", 7),
        (vec!["unlock", "--pin-stdin"], &pin, 0),
        (vec!["add", "login", "github", "--username", "ada"], "pw-1\n", 0),
        (vec!["add", "note", "memo"], "some text\n", 0),
        (vec!["add", "card", "visa", "--expiry", "09/29"], "4111111111111111\n123\n", 0),
        (vec!["add", "totp", "bank"], "JBSWY3DPEHPK3PXP\n", 0),
        (vec!["add", "totp", "broken"], "not base32 !!\n", 9),
        (vec!["totp", "set", "github"], "JBSWY3DPEHPK3PXP\n", 0),
        (vec!["totp", "github"], "", 0),
        (vec!["get", "github"], "", 0),
        (vec!["get", "github", "--field", "username"], "", 0),
        (vec!["get", "nothing"], "", 5),
        (vec!["get"], "", 2),
        (vec!["read", "coffer://github/password"], "", 0),
        (vec!["inject", "-i", &tpl, "-o", &out], "", 0),
        (vec!["inject", "-i", &tpl, "-o", &out], "", 2),
        (vec!["run", "--", "/nonexistent/cmd"], "", 127),
        (vec!["history", "github"], "", 0),
        (vec!["ls"], "", 0),
        (vec!["search", "git"], "", 0),
        (vec!["conflicts"], "", 0),
        // This daemon serves no web app (--no-ui): the error, in JSON.
        (vec!["ui"], "", 9),
        (vec!["conflicts", "pick", "github", "password", "2"], "", 9),
        (vec!["edit", "github", "--username", "lovelace"], "", 0),
        (vec!["rm", "memo"], "", 0),
        (vec!["restore", "memo"], "", 0),
        (vec!["folder", "create", "Ops"], "", 0),
        (vec!["folder", "ls"], "", 0),
        (vec!["add", "login", "ssh", "--field", "host=db1", "--hidden-field", "key"], "pw-2\nk3y\n", 0),
        (vec!["edit", "ssh", "--field", "host=db2"], "", 0),
        (vec!["edit", "ssh", "--field", "key=on-argv"], "", 2),
        (vec!["folder", "create", "Tmp"], "", 0),
        (vec!["folder", "rename", "Tmp", "Scratch"], "", 0),
        (vec!["folder", "rename", "Nowhere", "X"], "", 5),
        (vec!["mv", "ssh", "Scratch"], "", 0),
        (vec!["mv", "ssh", "Scratch"], "", 9),
        (vec!["folder", "rm", "Scratch"], "", 9),
        (vec!["folder", "rm", "Scratch", "--force"], "", 0),
        (vec!["folder", "rm", "Personal"], "", 9),
        (vec!["rm", "visa"], "", 0),
        (vec!["trash", "ls"], "", 0),
        (vec!["trash", "empty"], "", 0),
        (vec!["pin", "change"], "999999-no\n739251\n", 7),
        (vec!["generate", "--words", "4"], "", 0),
        (vec!["import", &codes, "--dry-run"], "", 0),
        (vec!["export", "--yes", "--pin-stdin"], &pin_line, 0),
        (vec!["backup", &bak, "--passphrase-stdin", "--pin-stdin"], &backup_lines, 0),
        (vec!["restore-backup", &bak, "--passphrase-stdin", "--dry-run"], "backup pass\n", 0),
        (vec!["restore-backup", &bak, "--passphrase-stdin", "--dry-run"], "wrong\n", 14),
        (vec!["device", "id"], "", 0),
        (vec!["device", "ls"], "", 0),
        (vec!["peers"], "", 0),
        (vec!["sync", "status"], "", 0),
        (vec!["sync", "now"], "", 0),
        (vec!["team", "create", "Acme"], "", 0),
        (vec!["team", "show"], "", 0),
        (vec!["relay", "ls"], "", 0),
        (vec!["relay", "add", "/ip4/192.0.2.7/tcp/7373"], "", 9),
        (vec!["relay", "add", &relay_addr], "", 0),
        (vec!["relay", "remove", &relay_peer], "", 0),
        (vec!["relay", "remove", &relay_peer], "", 9),
        // This daemon is no relay: the error, in JSON.
        (vec!["relay", "status"], "", 9),
        // Asked of a team device: it is not a relay (exit 9).
        (vec!["relay", "accept", "00"], "", 9),
        (vec!["relay", "forget", "00"], "", 9),
        // A team of one with nobody to reach: no problem (exit 22 otherwise).
        (vec!["doctor"], "", 0),
        (vec!["user", "ls"], "", 0),
        (vec!["group", "create", "it"], "", 0),
        (vec!["group", "add", "it", "ada@example.org"], "", 0),
        (vec!["group", "ls"], "", 0),
        (vec!["folder", "share", "Ops", "--group", "it", "--role", "member"], "", 0),
        (vec!["folder", "role", "Ops", "--group", "it", "--role", "editor"], "", 0),
        (vec!["folder", "members", "Ops"], "", 0),
        (vec!["folder", "unshare", "Ops", "--group", "it"], "", 0),
        (vec!["group", "remove", "it", "ada@example.org"], "", 0),
        (vec!["user", "remove", "nobody@example.org"], "", 5),
        (vec!["user", "promote", "nobody@example.org"], "", 5),
        (vec!["user", "demote", "nobody@example.org"], "", 5),
        (vec!["device", "revoke", &device0], "", 5),
        (vec!["device", "link"], "", 0),
        (vec!["device", "pending"], "", 0),
        (vec!["device", "confirm", "123", "456"], "", 5),
        (vec!["device", "reject", "123456"], "", 5),
        (vec!["device", "join", "not-a-code"], "", 15),
        (vec!["invite", "bob@example.org", "--group", "it"], "", 0),
        (vec!["invite", "pending"], "", 0),
        (vec!["invite", "ls"], "", 0),
        (vec!["invite", "cancel", "bob@example.org"], "", 0),
        (vec!["invite", "cancel", "bob@example.org"], "", 5),
        (vec!["device", "rename", "ada-laptop"], "", 0),
        (vec!["device", "rename", "ffffffff", "ghost"], "", 5),
        (vec!["audit", "--since", "7d"], "", 0),
        (vec!["audit", "--action", "bogus"], "", 9),
        (vec!["audit", "verify"], "", 0),
        (vec!["audit", "export", &audit_file, "--format", "csv"], "", 0),
        (vec!["audit", "exposure", "nobody@example.org"], "", 5),
        (vec!["audit", "exposure", "ada@example.org"], "", 0),
        (vec!["audit", "retention"], "", 0),
        (vec!["audit", "retention", "0"], "", 9),
        (vec!["device", "rename", "tab\there"], "", 9),
        (vec!["team", "rename", "Acme Ltd"], "", 0),
        (vec!["group", "create", "tmp"], "", 0),
        (vec!["group", "rm", "tmp"], "", 0),
        (vec!["group", "rm", "tmp"], "", 5),
        (vec!["team", "leave", "--yes"], "", 9),
        (vec!["team", "handover", "nobody@example.org"], "", 5),
        (vec!["invite", "confirm", "111111"], "", 5),
        (vec!["invite", "reject", "111", "111"], "", 5),
        (vec!["invite", "nobody@example.org", "--recover"], "", 5),
        // No terminal to confirm on: --yes is needed (the vault stays).
        (vec!["reset"], "", 2),
        (vec!["join", "not-a-code"], "", 15),
        (vec!["join", "not-a-code", "--name", "laptop"], "", 15),
        (vec!["service", "status"], "", 0),
        (vec!["service", "install"], "", 20),
        (vec!["service", "uninstall"], "", 20),
        (vec!["browser", "install"], "", 0),
        (vec!["browser", "install", "--browser", "firefox"], "", 0),
        (vec!["browser", "install", "--dir", "/nonexistent"], "", 2),
        (vec!["browser", "uninstall"], "", 0),
        (vec!["completion", "fish"], "", 0),
        (vec!["pin", "change"], &pin_change, 0),
        (vec!["pin", "change"], &pin_back, 0),
        (vec!["nonsense"], "", 2),
    ];

    let mut covered: BTreeSet<Vec<String>> = BTreeSet::new();
    let mut failures = Vec::new();
    for (args, stdin, expected) in &table {
        covered.insert(path_of(args, &known));
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let mut cmd = d.command(&full);
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        cmd.env("PATH", path)
            .env("HOME", &dir)
            .env("XDG_CONFIG_HOME", dir.join("config"));
        let outp = run_with_timeout(&mut cmd, stdin.as_bytes(), Duration::from_secs(60));
        let code = outp.status.code().unwrap_or(-1);
        let stdout = String::from_utf8_lossy(&outp.stdout);
        let stderr = String::from_utf8_lossy(&outp.stderr);
        let what = format!(
            "`coffer {}` (exit {code})\nstdout: {stdout}\nstderr: {stderr}",
            full.join(" ")
        );
        if code != *expected {
            failures.push(format!("expected exit {expected}: {what}"));
            continue;
        }
        if code == 0 {
            if let Err(e) = serde_json::from_str::<Value>(&stdout) {
                failures.push(format!("stdout is not one JSON value ({e}): {what}"));
            }
        } else {
            let error = stderr
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v.get("error").is_some());
            match error {
                Some(v)
                    if v["error"]["exit_code"] == code
                        && v["error"]["code"].is_string()
                        && v["error"]["message"].is_string() => {}
                other => failures.push(format!("no JSON error on stderr ({other:?}): {what}")),
            }
            if !stdout.trim().is_empty() {
                failures.push(format!("a failure printed on stdout: {what}"));
            }
        }
    }

    // `coffer events --json`: one JSON object a line.
    let events = Events::start_synced(&d);
    d.ok(&["lock"], "");
    let e = events.wait_for(Duration::from_secs(10), |v| v["type"] == "lock_state");
    assert_eq!(e["locked"], true);
    covered.insert(vec!["events".to_string()]);
    drop(events);

    // `coffer reset --yes --json` last: it erases the vault and the daemon stops.
    let v = d.json(&["--json", "reset", "--yes"], "");
    assert_eq!(v["reset"], true, "{v}");
    assert_eq!(v["daemon_stopped"], true, "{v}");
    assert!(v["device_id"].is_string(), "{v}");
    d.wait_exited();
    covered.insert(vec!["reset".to_string()]);

    let missing: Vec<String> = paths
        .iter()
        .filter(|(p, runs_alone)| *runs_alone && !covered.contains(p))
        .map(|(p, _)| p.join(" "))
        .collect();
    assert!(
        missing.is_empty(),
        "commands never run with --json here: {missing:?}"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(Path::new(&out).exists());
}
