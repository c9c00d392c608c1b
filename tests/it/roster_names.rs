//! Issue 21, the roster bullets on real daemons: device names (`join
//! --name`, `device rename`), `team rename`, `user ls` with names, joined
//! and last seen, `history` naming people, `group rm` (its members read
//! nothing written afterwards) and `team leave`.

use std::thread;
use std::time::Duration;

use coffer_tests::{item_names, str_field, Cli, PIN};
use serde_json::Value;

use crate::enrol::{one_pending, Joining};
use crate::sync::{addr, free_port, start_node, wait_until, SYNC_TIMEOUT};
use crate::team::init_as;

const ADA: &str = "ada@example.com";
const BOB: &str = "bob@example.com";
const CYD: &str = "cyd@example.com";
const NOT_FOUND: i32 = 5;
const INVALID_INPUT: i32 = 9;
const PERMISSION_DENIED: i32 = 10;
const NOT_A_MEMBER: i32 = 21;

/// Invites `email` (as `person`) and joins from `joiner` with `join_extra`.
fn enrol_named(
    inviter: &Cli,
    port: u16,
    joiner: &Cli,
    email: &str,
    invite: &[&str],
    join_extra: &[&str],
) {
    let mut args = vec!["invite", email, "--json"];
    args.extend_from_slice(invite);
    let code = str_field(&inviter.json(&args, ""), "code").to_string();
    let peer = addr(port);
    let mut join_args = vec!["join", code.as_str(), "--peer", &peer, "--pin-stdin"];
    join_args.extend_from_slice(join_extra);
    let join = Joining::spawn(joiner, &join_args, &format!("{PIN}\n"));
    let pending = one_pending(inviter, "invite");
    let vc = str_field(&pending, "verification_code").to_string();
    inviter.ok(&["invite", "confirm", &vc], "");
    let (status, _, err) = join.finish();
    assert_eq!(status, 0, "join failed: {err}");
}

fn device_id(cli: &Cli) -> String {
    str_field(&cli.status(), "device_id").to_string()
}

fn device_name(cli: &Cli, device: &str) -> Option<String> {
    let list = cli.json(&["device", "ls", "--json"], "");
    list.as_array()?.iter().find(|d| d["device_id"] == device)?["name"]
        .as_str()
        .map(str::to_string)
}

fn user<'a>(users: &'a Value, email: &str) -> &'a Value {
    users
        .as_array()
        .and_then(|a| a.iter().find(|u| u["email"] == email))
        .unwrap_or_else(|| panic!("no {email} in {users:#}"))
}

#[test]
fn device_names_team_rename_user_ls_and_history_name_people() {
    let (pa, pb) = (free_port(), free_port());
    let a = start_node(pa, &[]);
    let b = start_node(pb, &[pa]);
    init_as(&a, "Ada Admin", ADA);
    a.ok(&["team", "create", "Acme"], "");
    let (da, _) = (device_id(&a), ());
    // The founder's device is named after the host.
    assert!(device_name(&a, &da).is_some_and(|n| !n.is_empty()));

    // A name with a control character is refused before anything is sent
    // (the code stays good); then Bob joins as "Bob's ThinkPad".
    let code = str_field(
        &a.json(&["invite", BOB, "--name", "Bob Builder", "--json"], ""),
        "code",
    )
    .to_string();
    let peer = addr(pa);
    let err = b.fails(
        &[
            "join",
            &code,
            "--peer",
            &peer,
            "--pin-stdin",
            "--name",
            "bad\tname",
        ],
        format!("{PIN}\n"),
        INVALID_INPUT,
    );
    assert!(err.contains("control character"), "{err}");
    a.ok(&["invite", "cancel", BOB], "");
    enrol_named(
        &a,
        pa,
        &b,
        BOB,
        &["--name", "Bob Builder"],
        &["--name", "Bob's ThinkPad"],
    );
    let db = device_id(&b);
    assert_eq!(device_name(&a, &db).as_deref(), Some("Bob's ThinkPad"));

    // Bob renames his own device; he may not rename Ada's; bad names exit 9.
    b.ok(&["device", "rename", "bob-laptop"], "");
    let err = b.fails(
        &["device", "rename", &da[..8], "mine"],
        "",
        PERMISSION_DENIED,
    );
    assert!(err.contains("team admin"), "{err}");
    b.fails(&["device", "rename", "two\nlines"], "", INVALID_INPUT);
    b.fails(&["device", "rename", &"x".repeat(65)], "", INVALID_INPUT);
    b.fails(&["device", "rename", "ffffffff", "ghost"], "", NOT_FOUND);
    wait_until(SYNC_TIMEOUT, "A sees Bob's name for his device", || {
        device_name(&a, &db).as_deref() == Some("bob-laptop")
    });
    // Ada (admin) renames Bob's device by the short id `device ls` prints.
    let r = a.json(&["device", "rename", &db[..16], "IT-0042", "--json"], "");
    assert!(r["rotated"].is_array(), "{r:#}");
    wait_until(SYNC_TIMEOUT, "B sees the admin's name", || {
        device_name(&b, &db).as_deref() == Some("IT-0042")
    });

    // The team: only an admin renames it; every laptop shows it.
    let err = b.fails(&["team", "rename", "Bob & Co"], "", PERMISSION_DENIED);
    assert!(err.contains("team admin"), "{err}");
    a.fails(&["team", "rename", "Acme\u{1b}[2J"], "", INVALID_INPUT);
    a.ok(&["team", "rename", "Acme Ltd"], "");
    wait_until(SYNC_TIMEOUT, "B sees the new team name", || {
        str_field(&b.json(&["team", "show", "--json"], ""), "name") == "Acme Ltd"
    });

    // user ls: names, joined, last seen, devices with names.
    wait_until(SYNC_TIMEOUT, "A has heard from B", || {
        user(&a.json(&["user", "ls", "--json"], ""), BOB)["last_seen_ms"].is_i64()
    });
    let users = a.json(&["user", "ls", "--json"], "");
    let bob = user(&users, BOB);
    assert_eq!(bob["name"], "Bob Builder", "{users:#}");
    assert!(
        bob["joined_ms"]
            .as_i64()
            .is_some_and(|t| t > 1_700_000_000_000),
        "{users:#}"
    );
    assert_eq!(bob["device_list"][0]["name"], "IT-0042", "{users:#}");
    let ada = user(&users, ADA);
    assert_eq!(ada["name"], "Ada Admin", "{users:#}");
    assert_eq!(ada["founder"], true);
    assert!(
        ada["last_seen_ms"].is_i64(),
        "own user: seen now: {users:#}"
    );
    let text = a.ok(&["user", "ls"], "");
    assert!(text.contains("Bob Builder <bob@example.com>"), "{text}");
    assert!(text.contains("IT-0042"), "{text}");

    // history names the person and the device.
    a.ok(&["folder", "create", "Ops"], "");
    a.ok(
        &["folder", "share", "Ops", "--user", BOB, "--role", "editor"],
        "",
    );
    a.add_login("dns", "pw-1", &["--folder", "Ops"]);
    wait_until(SYNC_TIMEOUT, "B reads Ops/dns", || {
        item_names(&b, "Ops") == ["dns"]
    });
    b.ok(&["edit", "Ops/dns", "--username", "bob"], "");
    wait_until(SYNC_TIMEOUT, "A has B's edit", || {
        a.json(&["history", "Ops/dns", "--json"], "")
            .as_array()
            .is_some_and(|h| h.len() == 2)
    });
    let history = a.json(&["history", "Ops/dns", "--json"], "");
    let by_bob = history
        .as_array()
        .and_then(|h| h.iter().find(|e| e["user"] == BOB))
        .unwrap_or_else(|| panic!("{history:#}"));
    assert_eq!(by_bob["user_name"], "Bob Builder");
    assert_eq!(by_bob["device_name"], "IT-0042");
    let text = a.ok(&["history", "Ops/dns"], "");
    assert!(
        text.contains("by Bob Builder <bob@example.com> on device \"IT-0042\""),
        "{text}"
    );
    assert!(text.contains("by Ada Admin <ada@example.com>"), "{text}");
}

#[test]
fn group_rm_rotates_its_folders_and_a_user_leaves_the_team() {
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let a = start_node(pa, &[]);
    let b = start_node(pb, &[pa]);
    let c = start_node(pc, &[pa, pb]);
    init_as(&a, "Ada Admin", ADA);
    a.ok(&["team", "create", "Acme"], "");
    a.ok(&["group", "create", "it"], "");
    enrol_named(&a, pa, &b, BOB, &["--group", "it"], &[]);
    enrol_named(&a, pa, &c, CYD, &[], &[]);
    a.ok(&["folder", "create", "Ops"], "");
    a.ok(
        &[
            "folder", "share", "Ops", "--group", "it", "--role", "editor",
        ],
        "",
    );
    a.ok(
        &["folder", "share", "Ops", "--user", CYD, "--role", "editor"],
        "",
    );
    a.add_login("old", "pw-old", &["--folder", "Ops"]);
    for (who, cli) in [("B", &b), ("C", &c)] {
        wait_until(SYNC_TIMEOUT, &format!("{who} reads Ops/old"), || {
            item_names(cli, "Ops") == ["old"]
        });
    }

    // group rm: admins only; B loses Ops and reads nothing written after.
    let err = b.fails(&["group", "rm", "it"], "", PERMISSION_DENIED);
    assert!(err.contains("team admin"), "{err}");
    a.fails(&["group", "rm", "nope"], "", NOT_FOUND);
    let r = a.json(&["group", "rm", "it", "--json"], "");
    assert_eq!(r["rotated"], serde_json::json!(["Ops"]), "{r:#}");
    let err = a.fails(&["group", "create", "it"], "", INVALID_INPUT);
    assert!(err.contains("not used again"), "{err}");
    assert_eq!(
        a.json(&["group", "ls", "--json"], ""),
        serde_json::json!([])
    );
    a.add_login("new", "pw-new", &["--folder", "Ops"]);
    wait_until(SYNC_TIMEOUT, "C reads Ops/new", || {
        item_names(&c, "Ops") == ["new", "old"]
    });
    b.ok(&["sync", "now"], "");
    thread::sleep(Duration::from_secs(2));
    assert!(
        !item_names(&b, "Ops").contains(&"new".to_string()),
        "B reads what was written after the group's deletion: {:?}",
        item_names(&b, "Ops")
    );

    // team leave: the founder cannot; Cyd can, and is told so.
    let err = a.fails(&["team", "leave", "--yes"], "", INVALID_INPUT);
    assert!(err.contains("founding admin"), "{err}");
    let epochs = a.json(&["folder", "members", "Ops", "--json"], "")["epochs"]
        .as_u64()
        .expect("epochs");
    let r = c.json(&["team", "leave", "--yes", "--json"], "");
    assert!(r["rotated"].is_array(), "{r:#}");
    let status = c.status();
    assert_eq!(status["standing"], "removed", "{status:#}");
    c.fails(
        &["add", "login", "late", "--folder", "Ops"],
        "pw-late\n",
        NOT_A_MEMBER,
    );
    wait_until(SYNC_TIMEOUT, "A rotates Ops once Cyd left", || {
        a.json(&["folder", "members", "Ops", "--json"], "")["epochs"].as_u64() == Some(epochs + 1)
    });
    assert!(!a
        .json(&["user", "ls", "--json"], "")
        .to_string()
        .contains(CYD));
    a.add_login("newer", "pw-newer", &["--folder", "Ops"]);
    c.ok(&["sync", "now"], "");
    thread::sleep(Duration::from_secs(2));
    assert!(
        !item_names(&c, "Ops").contains(&"newer".to_string()),
        "C reads what was written after she left: {:?}",
        item_names(&c, "Ops")
    );

    // The founder hands over to Bob (an admin first), then leaves; Bob,
    // the last admin, cannot.
    let err = a.fails(&["team", "handover", BOB], "", INVALID_INPUT);
    assert!(err.contains("user promote"), "{err}");
    b.fails(&["team", "handover", BOB], "", PERMISSION_DENIED);
    a.ok(&["user", "promote", BOB], "");
    a.ok(&["team", "handover", BOB], "");
    wait_until(SYNC_TIMEOUT, "B is the founder", || {
        b.json(&["team", "show", "--json"], "")["founder"] == BOB
    });
    a.ok(&["team", "leave", "--yes"], "");
    wait_until(SYNC_TIMEOUT, "B sees Ada gone", || {
        !b.json(&["user", "ls", "--json"], "")
            .to_string()
            .contains(ADA)
    });
    let err = b.fails(&["team", "leave", "--yes"], "", INVALID_INPUT);
    assert!(err.contains("last admin"), "{err}");
}
