//! Teams end to end (issue 5): four `cofferd` processes on loopback — admin
//! A, users B and C (C in group "it"), and B's second laptop B2 — enrolled
//! with invite codes and verification codes, a shared folder with roles, a
//! linked TOTP, a group change and a device revocation.

use std::thread;
use std::time::Duration;

use coffer_tests::{item_names, str_field, Cli, PIN};
use serde_json::Value;

use crate::enrol::{one_pending, Joining};
use crate::sync::{addr, free_port, start_node, wait_until, SYNC_TIMEOUT};

const TOTP_SECRET: &str = "JBSWY3DPEHPK3PXP";

/// `coffer folder share FOLDER --user USER --role ROLE` on `cli`.
pub fn share(cli: &Cli, folder: &str, user: &str, role: &str) {
    cli.ok(
        &["folder", "share", folder, "--user", user, "--role", role],
        "",
    );
}

pub fn init_as(cli: &Cli, name: &str, email: &str) {
    cli.ok(
        &["init", "--name", name, "--email", email, "--pin-stdin"],
        format!("{PIN}\n"),
    );
}

/// The digits of a verification code (`123 456` and `123456` compare equal).
fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// Invites `email` at `inviter` (listening on `port`) and joins from
/// `joiner` with matching verification codes.
pub fn enrol(inviter: &Cli, port: u16, joiner: &Cli, email: &str, extra: &[&str]) {
    let mut args = vec!["invite", email, "--json"];
    args.extend_from_slice(extra);
    let code = str_field(&inviter.json(&args, ""), "code").to_string();
    let peer = addr(port);
    let mut join = Joining::spawn(
        joiner,
        &["join", &code, "--peer", &peer, "--pin-stdin"],
        &format!("{PIN}\n"),
    );
    let pending = one_pending(inviter, "invite");
    assert_eq!(str_field(&pending, "email"), email);
    let vc = str_field(&pending, "verification_code").to_string();
    assert_eq!(digits(&join.verification_code()), digits(&vc));
    inviter.ok(&["invite", "confirm", &vc], "");
    let (status, _, err) = join.finish();
    assert_eq!(status, 0, "join failed: {err}");
}

fn totp_at(cli: &Cli, item: &str, at: u64) -> String {
    let v = cli.json(&["totp", item, "--at", &at.to_string(), "--json"], "");
    str_field(&v, "code").to_string()
}

fn device_id(cli: &Cli) -> String {
    str_field(&cli.status(), "device_id").to_string()
}

#[test]
fn four_daemons_run_a_team() {
    let (pa, pb, pc, pb2) = (free_port(), free_port(), free_port(), free_port());
    // A knows nobody up front: every peer address comes from enrolment.
    let a = start_node(pa, &[]);
    let b = start_node(pb, &[pa]);
    let c = start_node(pc, &[pa]);
    let b2 = start_node(pb2, &[pb, pa]);

    init_as(&a, "Ada Admin", "ada@example.com");
    let team = a.json(&["team", "create", "Acme IT", "--json"], "");
    assert_eq!(str_field(&team, "name"), "Acme IT");
    a.ok(&["group", "create", "it"], "");

    // B and C join on fresh devices; C straight into group "it".
    enrol(&a, pa, &b, "bob@example.com", &["--name", "Bob"]);
    enrol(&a, pa, &c, "cyd@example.com", &["--group", "it"]);
    let users = a.json(&["user", "ls", "--json"], "");
    assert_eq!(users.as_array().map(Vec::len), Some(3), "{users}");
    let groups = a.json(&["group", "ls", "--json"], "");
    assert_eq!(groups[0]["members"], serde_json::json!(["cyd@example.com"]));
    wait_until(SYNC_TIMEOUT, "B learns the roster", || {
        b.json(&["user", "ls", "--json"], "")
            .as_array()
            .map(Vec::len)
            == Some(3)
    });

    // The shared folder, with a login whose TOTP is linked.
    a.ok(&["folder", "create", "Registrar"], "");
    share(&a, "Registrar", "bob@example.com", "editor");
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
    a.add_login(
        "dns",
        "hunter2",
        &["--folder", "Registrar", "--username", "ops"],
    );
    a.ok(
        &["totp", "set", "Registrar/dns"],
        format!("{TOTP_SECRET}\n"),
    );

    // B2: Bob's second laptop, linked from B with the same ceremony.
    let link = b.json(&["device", "link", "--json"], "");
    let code = str_field(&link, "code").to_string();
    let peer_b = addr(pb);
    let mut join = Joining::spawn(
        &b2,
        &["device", "join", &code, "--peer", &peer_b, "--pin-stdin"],
        &format!("{PIN}\n"),
    );
    let pending = one_pending(&b, "device");
    let vc = str_field(&pending, "verification_code").to_string();
    assert_eq!(digits(&join.verification_code()), digits(&vc));
    b.ok(&["device", "confirm", &vc], "");
    let (status, _, err) = join.finish();
    assert_eq!(status, 0, "device join failed: {err}");

    // B, B2 and C all show the same TOTP code.
    let at = 1_900_000_000;
    let want = totp_at(&a, "Registrar/dns", at);
    for (who, cli) in [("B", &b), ("B2", &b2), ("C", &c)] {
        wait_until(SYNC_TIMEOUT, &format!("{who} has the TOTP"), || {
            let out = cli.coffer(
                &["totp", "Registrar/dns", "--at", &at.to_string(), "--json"],
                "",
            );
            out.status.success()
                && serde_json::from_slice::<Value>(&out.stdout)
                    .is_ok_and(|v| v["code"].as_str() == Some(want.as_str()))
        });
    }

    // C (Folder Member) may not edit; B (Item Manager) may, and A sees it.
    let err = c.fails(&["edit", "Registrar/dns", "--username", "cyd"], "", 10);
    assert!(err.contains("permission denied"), "{err}");
    assert!(err.contains("Item Manager"), "names the role needed: {err}");
    b.ok(&["edit", "Registrar/dns", "--username", "bob"], "");
    wait_until(SYNC_TIMEOUT, "A sees B's edit", || {
        let v = a.json(&["get", "Registrar/dns", "--json"], "");
        v["fields"]["username"].as_str() == Some("bob")
    });

    // C leaves group "it": A's key rotates, C sees nothing written after.
    a.ok(&["group", "remove", "it", "cyd@example.com"], "");
    a.add_login("after-cyd", "pw1", &["--folder", "Registrar"]);
    wait_until(SYNC_TIMEOUT, "B sees the new login", || {
        item_names(&b, "Registrar").contains(&"after-cyd".to_string())
    });

    // B2 is revoked (by its own user, from B): it cannot sync or read anything after.
    // By the short id `device ls` prints (issue 21).
    let b2_id = device_id(&b2);
    let short = &b2_id[..16];
    let listed = b.ok(&["device", "ls"], "");
    assert!(
        listed.lines().any(|l| l.starts_with(short)),
        "{short} in {listed}"
    );
    let revoked = b.json(&["device", "revoke", short, "--json"], "");
    assert_eq!(revoked["device_id"], b2_id.as_str());
    wait_until(SYNC_TIMEOUT, "A learns the revocation", || {
        let devices = a.json(&["device", "ls", "--json"], "");
        devices.as_array().is_some_and(|d| {
            d.iter()
                .any(|x| x["device_id"] == b2_id.as_str() && x["revoked"] == true)
        })
    });
    a.add_login("after-b2", "pw2", &["--folder", "Registrar"]);
    wait_until(
        SYNC_TIMEOUT,
        "B sees the login written after the revocation",
        || item_names(&b, "Registrar").contains(&"after-b2".to_string()),
    );

    // Give stray pushes time to arrive, then check what each one holds.
    thread::sleep(Duration::from_secs(2));
    let full = item_names(&a, "Registrar");
    assert_eq!(full, ["after-b2", "after-cyd", "dns"]);
    assert_eq!(item_names(&b, "Registrar"), full, "A and B agree");
    let on_c = item_names(&c, "Registrar");
    assert!(!on_c.contains(&"after-cyd".to_string()), "C: {on_c:?}");
    assert!(!on_c.contains(&"after-b2".to_string()), "C: {on_c:?}");
    let on_b2 = item_names(&b2, "Registrar");
    assert!(!on_b2.contains(&"after-b2".to_string()), "B2: {on_b2:?}");
    let members = a.json(&["folder", "members", "Registrar", "--json"], "");
    assert!(
        members["epochs"].as_u64().unwrap_or(0) >= 3,
        "two rotations: {members}"
    );
    // Only the removed parties' envelopes may be quarantined (ops racing
    // their removal); everything A and B wrote took effect.
    let c_id = device_id(&c);
    let sync = a.json(&["sync", "status", "--json"], "");
    for space in sync["spaces"].as_array().expect("spaces") {
        for q in space["quarantined"].as_array().expect("quarantined") {
            let author = q["author"].as_str().unwrap_or_default();
            assert!(author == c_id || author == b2_id, "quarantined: {q}");
        }
    }
}

#[test]
fn team_commands_on_one_device() {
    let a = coffer_tests::Daemon::start();
    init_as(&a, "Ada Admin", "Ada@Example.com");
    // Outside a team: clear errors, and `device ls` shows this device.
    let err = a.fails(&["team", "show"], "", 5);
    assert!(err.contains("coffer team create"), "{err}");
    let devices = a.json(&["device", "ls", "--json"], "");
    assert_eq!(devices[0]["this_device"], true);

    a.add_login("early", "pw", &[]);
    let team = a.json(&["team", "create", "Acme", "--json"], "");
    assert_eq!(team["founder"], "ada@example.com");
    assert_eq!(team["admin"], true);
    let err = a.fails(&["team", "create", "Again"], "", 9);
    assert!(err.contains("already in team"), "{err}");
    a.ok(&["group", "create", "it"], "");
    a.fails(&["group", "create", "it"], "", 9);
    let err = a.fails(&["group", "add", "it", "nobody@example.com"], "", 5);
    assert!(err.contains("no user nobody@example.com"), "{err}");
    assert_eq!(
        a.json(&["group", "ls", "--json"], ""),
        serde_json::json!([{"name": "it", "members": []}])
    );
    // Sharing needs a known user or group, exactly one, and a role.
    let err = a.fails(
        &[
            "folder",
            "share",
            "Personal",
            "--user",
            "bob@example.com",
            "--role",
            "editor",
        ],
        "",
        5,
    );
    assert!(err.contains("no user bob@example.com"), "{err}");
    a.fails(&["folder", "share", "Personal", "--group", "it"], "", 2);
    a.fails(
        &[
            "folder", "share", "Personal", "--group", "it", "--role", "owner",
        ],
        "",
        9,
    );
    // The personal folder becomes shared in place: same items.
    let members = a.json(
        &[
            "folder", "share", "Personal", "--group", "it", "--role", "member", "--json",
        ],
        "",
    );
    assert_eq!(members["team_id"], team["team_id"]);
    assert!(members["members"].as_array().is_some_and(|m| m
        .iter()
        .any(|x| x["kind"] == "group" && x["role"] == "member")));
    assert_eq!(item_names(&a, "Personal"), ["early"]);
    // Survives a restart.
    let mut a = a;
    a.restart();
    a.unlock();
    assert_eq!(item_names(&a, "Personal"), ["early"]);
    let members = a.json(&["folder", "members", "Personal", "--json"], "");
    assert_eq!(members["team_id"], team["team_id"]);
    a.ok(&["folder", "unshare", "Personal", "--group", "it"], "");
    let users = a.json(&["user", "ls", "--json"], "");
    assert_eq!(users[0]["email"], "ada@example.com");
    assert_eq!(users[0]["founder"], true);
}

/// Issue 12 (found by the chaos suite): a folder whose key rotated lost its
/// older items at the next unlock or restart, because the rebuild opened
/// every change with the newest epoch's key.
#[test]
fn issue_12_a_rotated_folder_keeps_its_items_across_lock_and_restart() {
    let (pa, pb) = (free_port(), free_port());
    let mut a = start_node(pa, &[]);
    let b = start_node(pb, &[pa]);
    init_as(&a, "Ada Admin", "ada@example.com");
    a.ok(&["team", "create", "Acme"], "");
    enrol(&a, pa, &b, "bob@example.com", &[]);
    a.ok(&["folder", "create", "Ops"], "");
    share(&a, "Ops", "bob@example.com", "editor");
    a.add_login("before", "pw1", &["--folder", "Ops"]);
    a.ok(
        &["folder", "unshare", "Ops", "--user", "bob@example.com"],
        "",
    );
    a.add_login("after", "pw2", &["--folder", "Ops"]);
    let epochs = a.json(&["folder", "members", "Ops", "--json"], "")["epochs"].clone();
    assert!(
        epochs.as_u64().unwrap_or(0) >= 2,
        "the key rotated: {epochs}"
    );
    assert_eq!(item_names(&a, "Ops"), ["after", "before"]);

    a.ok(&["lock"], "");
    a.unlock();
    assert_eq!(item_names(&a, "Ops"), ["after", "before"], "after unlock");
    assert_eq!(
        a.ok(&["get", "Ops/before", "--field", "password"], ""),
        "pw1\n"
    );

    a.restart();
    a.unlock();
    assert_eq!(
        item_names(&a, "Ops"),
        ["after", "before"],
        "after a restart"
    );
}

/// Issue 12: `sync status` names the envelopes kept only because another
/// user built on them (the chaos checker reads it to tell an endorsed
/// change from a forbidden one that took effect). C is taken out of the
/// folder while C and D are away; C, not knowing, adds an item; D, not
/// knowing either, edits it; when A hears of both, C's add lies beyond the
/// removal's cutoff but stays, endorsed by D's valid edit.
#[test]
fn issue_12_sync_status_lists_a_change_kept_because_another_user_built_on_it() {
    let (pa, pc, pd) = (free_port(), free_port(), free_port());
    let mut a = start_node(pa, &[pc, pd]);
    let mut c = start_node(pc, &[pa, pd]);
    let mut d = start_node(pd, &[pa, pc]);
    init_as(&a, "Ada Admin", "ada@example.com");
    a.ok(&["team", "create", "Acme"], "");
    enrol(&a, pa, &c, "cyd@example.com", &[]);
    enrol(&a, pa, &d, "dan@example.com", &[]);
    a.ok(&["folder", "create", "Ops"], "");
    for user in ["cyd@example.com", "dan@example.com"] {
        a.ok(
            &["folder", "share", "Ops", "--user", user, "--role", "editor"],
            "",
        );
    }
    a.add_login("first", "pw", &["--folder", "Ops"]);
    for (who, cli) in [("C", &c), ("D", &d)] {
        wait_until(SYNC_TIMEOUT, &format!("{who} holds Ops"), || {
            item_names(cli, "Ops") == ["first"]
        });
    }
    c.stop();
    d.stop();
    a.ok(
        &["folder", "unshare", "Ops", "--user", "cyd@example.com"],
        "",
    );
    a.stop();
    c.spawn();
    c.unlock();
    d.spawn();
    d.unlock();
    c.add_login("by-cyd", "pw", &["--folder", "Ops"]);
    wait_until(SYNC_TIMEOUT, "D receives C's add", || {
        item_names(&d, "Ops").contains(&"by-cyd".to_string())
    });
    d.ok(&["edit", "Ops/by-cyd", "--username", "dan"], "");
    a.spawn();
    a.unlock();
    let (c_id, d_id) = (device_id(&c), device_id(&d));
    let mut endorsed = Value::Null;
    wait_until(SYNC_TIMEOUT, "A keeps C's add, endorsed by D", || {
        let sync = a.json(&["sync", "status", "--json"], "");
        endorsed = sync["spaces"]
            .as_array()
            .and_then(|s| s.iter().find(|x| x["name"] == "Ops"))
            .map(|x| x["endorsed"].clone())
            .unwrap_or(Value::Null);
        endorsed
            .as_array()
            .is_some_and(|e| e.iter().any(|x| x["author"] == c_id.as_str()))
    });
    let kept = &endorsed.as_array().expect("checked")[0];
    assert_eq!(kept["by_author"], d_id.as_str(), "{endorsed}");
    assert_eq!(item_names(&a, "Ops"), ["by-cyd", "first"]);
    let human = a.ok(&["sync", "status"], "");
    assert!(human.contains("built on it"), "{human}");
}
