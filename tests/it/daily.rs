//! The daily basics of issue 17 on real daemons: `pin change`, custom
//! fields, and reorganising a shared folder (`folder rename|rm`, `mv`,
//! `trash ls|empty`) with a second member's daemon seeing each change.

use coffer_tests::{str_field, Cli, Daemon, PIN};
use serde_json::Value;

use crate::sync::{free_port, has_folder, item, pairing_key, start_node, wait_until, SYNC_TIMEOUT};
use crate::team::{enrol, init_as};

const NEW_PIN: &str = "739251";
const BOB: &str = "bob@example.com";

fn names(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .map(|a| a.iter().map(|i| str_field(i, "name").to_string()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

fn item_names(cli: &Cli, folder: &str) -> Vec<String> {
    let out = cli.coffer(&["ls", "--folder", folder, "--json"], "");
    if !out.status.success() {
        return Vec::new();
    }
    names(&serde_json::from_slice(&out.stdout).expect("ls --json prints JSON"))
}

fn password(cli: &Cli, reference: &str) -> Option<String> {
    item(cli, reference).and_then(|v| v["fields"]["password"].as_str().map(str::to_string))
}

#[test]
fn pin_change_refuses_the_old_pin_keeps_items_and_a_synced_peer() {
    let (pa, pb) = (free_port(), free_port());
    let mut a = start_node(pa, &[pb]);
    let b = start_node(pb, &[pa]);
    a.init();
    b.init();
    a.ok(&["folder", "create", "Team"], "");
    let (ka, kb) = (pairing_key(&a), pairing_key(&b));
    a.ok(
        &["device", "trust", &kb, "--name", "B", "--share", "Team"],
        "",
    );
    b.ok(&["device", "trust", &ka, "--name", "A"], "");
    a.add_login("db", "pw-before", &["--folder", "Team"]);
    wait_until(SYNC_TIMEOUT, "B reads Team/db", || {
        password(&b, "Team/db").as_deref() == Some("pw-before")
    });

    // A wrong current PIN changes nothing (and counts as a failed attempt).
    let err = a.fails(&["pin", "change"], format!("111-wrong\n{NEW_PIN}\n"), 7);
    assert!(err.contains("wrong PIN"), "{err}");
    // A weak new PIN is refused before anything is written.
    a.fails(&["pin", "change"], format!("{PIN}\n123456\n"), 9);
    let out = a.ok(&["pin", "change"], format!("{PIN}\n{NEW_PIN}\n"));
    assert!(out.contains("PIN changed"), "{out}");
    // Still unlocked: the change did not lock the vault.
    assert_eq!(a.status()["locked"], false);

    a.ok(&["lock"], "");
    a.fails(&["unlock", "--pin-stdin"], format!("{PIN}\n"), 7);
    a.ok(&["unlock", "--pin-stdin"], format!("{NEW_PIN}\n"));
    assert_eq!(password(&a, "Team/db").as_deref(), Some("pw-before"));

    // Durable: after a restart only the new PIN opens it.
    a.restart();
    a.fails(&["unlock", "--pin-stdin"], format!("{PIN}\n"), 7);
    a.ok(&["unlock", "--pin-stdin"], format!("{NEW_PIN}\n"));
    assert_eq!(password(&a, "Team/db").as_deref(), Some("pw-before"));
    a.fails(&["pin", "change"], format!("{PIN}\n{NEW_PIN}\n"), 7);

    // B is unaffected: its own PIN still unlocks it, and sync goes on both ways.
    b.ok(&["lock"], "");
    b.unlock();
    a.add_login("after", "pw-after", &["--folder", "Team"]);
    b.ok(&["edit", "Team/db", "--password-stdin"], "pw-from-b\n");
    wait_until(
        SYNC_TIMEOUT,
        "B reads what A wrote after the change",
        || password(&b, "Team/after").as_deref() == Some("pw-after"),
    );
    wait_until(SYNC_TIMEOUT, "A reads B's edit", || {
        password(&a, "Team/db").as_deref() == Some("pw-from-b")
    });
}

#[test]
fn custom_fields_round_trip_through_add_edit_get_and_history() {
    let a = Daemon::start();
    a.init();
    let v = a.json(
        &[
            "add",
            "login",
            "vpn",
            "--json",
            "--field",
            "host=db1",
            "--field",
            "port=5432",
            "--hidden-field",
            "psk",
        ],
        "pw-1\nshared-psk-1\n",
    );
    assert_eq!(v["fields"]["custom:text:host"], "db1");
    assert_eq!(v["fields"]["custom:text:port"], "5432");
    assert_eq!(v["fields"]["custom:hidden:psk"], "shared-psk-1");
    assert_eq!(v["fields"]["password"], "pw-1");
    assert!(v["secret_fields"]
        .as_array()
        .is_some_and(|s| s.iter().any(|k| k == "custom:hidden:psk")));

    // Shown by title; the hidden one masked unless --reveal.
    let shown = a.ok(&["get", "vpn"], "");
    assert!(shown.contains("host: db1"), "{shown}");
    assert!(!shown.contains("shared-psk-1"), "{shown}");
    assert!(shown.contains("psk: "), "{shown}");
    let revealed = a.ok(&["get", "vpn", "--reveal"], "");
    assert!(revealed.contains("psk: shared-psk-1"), "{revealed}");
    assert_eq!(
        a.ok(&["get", "vpn", "--field", "psk"], ""),
        "shared-psk-1\n"
    );

    // Edit: change one, remove one, re-key the hidden one from stdin.
    a.ok(
        &[
            "edit",
            "vpn",
            "--field",
            "host=db2",
            "--field",
            "port=",
            "--hidden-field",
            "psk",
        ],
        "shared-psk-2\n",
    );
    let v = a.json(&["get", "vpn", "--json", "--reveal"], "");
    assert_eq!(v["fields"]["custom:text:host"], "db2");
    assert!(v["fields"].get("custom:text:port").is_none(), "{v}");
    assert_eq!(v["fields"]["custom:hidden:psk"], "shared-psk-2");
    // A hidden value is never taken from the command line.
    let err = a.fails(&["edit", "vpn", "--field", "psk=on-argv"], "", 2);
    assert!(err.contains("--hidden-field"), "{err}");
    // Malformed, and twice the same title.
    a.fails(&["edit", "vpn", "--field", "novalue"], "", 2);
    a.fails(
        &["add", "login", "x", "--field", "a=1", "--field", "a=2"],
        "pw\n",
        2,
    );
    // The earlier value is in the history.
    let history = a.json(&["history", "vpn", "--json", "--reveal"], "");
    assert!(
        history.to_string().contains("shared-psk-1"),
        "history keeps the earlier hidden value: {history}"
    );
}

#[test]
fn reorganising_a_shared_folder_reaches_the_other_member() {
    let (pa, pb) = (free_port(), free_port());
    let a = start_node(pa, &[]);
    let mut b = start_node(pb, &[pa]);
    init_as(&a, "Ada Admin", "ada@example.com");
    a.ok(&["team", "create", "Acme IT"], "");
    enrol(&a, pa, &b, BOB, &["--name", "Bob"]);
    for f in ["Ops", "Infra"] {
        a.ok(&["folder", "create", f], "");
        a.ok(
            &["folder", "share", f, "--user", BOB, "--role", "editor"],
            "",
        );
    }
    a.ok(
        &[
            "add",
            "login",
            "db",
            "--folder",
            "Ops",
            "--field",
            "host=db1",
            "--hidden-field",
            "key",
        ],
        "pw-db\nk3y\n",
    );
    a.add_login("spare", "pw-spare", &["--folder", "Ops"]);
    wait_until(
        SYNC_TIMEOUT,
        "B reads Ops/db with its custom fields",
        || {
            item(&b, "Ops/db").is_some_and(|v| {
                v["fields"]["custom:text:host"] == "db1"
                    && v["fields"]["custom:hidden:key"] == "k3y"
            })
        },
    );

    // Rename: by the Folder Manager only, seen by the member.
    let err = b.fails(&["folder", "rename", "Ops", "Mine"], "", 10);
    assert!(err.contains("Folder Manager"), "{err}");
    let f = a.json(&["folder", "rename", "Ops", "Operations", "--json"], "");
    assert_eq!(f["name"], "Operations");
    wait_until(SYNC_TIMEOUT, "B sees the new name", || {
        has_folder(&b, "Operations") && !has_folder(&b, "Ops")
    });
    assert_eq!(item_names(&b, "Operations"), ["db", "spare"]);

    // Move: B (Item Manager in both) moves db; A sees it moved, fields intact.
    let moved = b.json(&["mv", "Operations/db", "Infra", "--json"], "");
    assert_eq!(moved["folder"], "Infra");
    wait_until(SYNC_TIMEOUT, "A sees db in Infra", || {
        item_names(&a, "Infra") == ["db"] && item_names(&a, "Operations") == ["spare"]
    });
    let v = item(&a, "Infra/db").expect("moved item");
    assert_eq!(v["fields"]["custom:text:host"], "db1");
    assert_eq!(v["fields"]["custom:hidden:key"], "k3y");
    assert_eq!(v["fields"]["password"], "pw-db");
    assert!(a
        .json(&["trash", "ls", "--json"], "")
        .as_array()
        .is_some_and(Vec::is_empty));

    // Trash: B trashes spare, A empties the trash, B's trash is empty too.
    b.ok(&["rm", "Operations/spare"], "");
    wait_until(SYNC_TIMEOUT, "A sees spare in the trash", || {
        names(&a.json(&["trash", "ls", "--json"], "")) == ["spare"]
    });
    let emptied = a.json(&["trash", "empty", "--json"], "");
    assert_eq!(emptied["deleted"], 1, "{emptied}");
    wait_until(SYNC_TIMEOUT, "B's trash is empty", || {
        b.json(&["trash", "ls", "--json"], "")
            .as_array()
            .is_some_and(Vec::is_empty)
    });
    b.fails(&["restore", "spare"], "", 5);

    // rm by a member: Bob leaves Infra; Ada keeps it, without Bob.
    let left = b.json(&["folder", "rm", "Infra", "--json"], "");
    assert_eq!(left["outcome"], "left");
    assert!(!has_folder(&b, "Infra"));
    wait_until(SYNC_TIMEOUT, "A sees Bob gone from Infra", || {
        !a.json(&["folder", "members", "Infra", "--json"], "")
            .to_string()
            .contains(BOB)
    });
    assert_eq!(item_names(&a, "Infra"), ["db"]);

    // rm by the manager: Operations (now empty) is deleted for Bob too.
    let deleted = a.json(&["folder", "rm", "Operations", "--json"], "");
    assert_eq!(deleted["outcome"], "deleted");
    assert!(!has_folder(&a, "Operations"));
    wait_until(SYNC_TIMEOUT, "B no longer has Operations", || {
        !has_folder(&b, "Operations")
    });
    b.fails(
        &["add", "login", "late", "--folder", "Operations"],
        "pw\n",
        5,
    );

    // All of it holds after a restart.
    b.restart();
    b.unlock();
    assert!(!has_folder(&b, "Operations") && !has_folder(&b, "Infra"));
    assert!(has_folder(&a, "Infra"));
}
