//! Issue 21: conflicts are visible and can be settled. Two daemons edit one
//! password while partitioned; once they meet, `ls` and `search` mark the
//! item (and say `"conflict": true` in JSON), and `coffer conflicts` lists
//! it with the value shown and the value kept, masked unless `--reveal`;
//! `coffer conflicts pick` keeps one for both. An edit concurrent with a
//! move to the trash keeps the item out of the trash, and says so.

use std::collections::BTreeSet;

use coffer_tests::{str_field, Cli};
use serde_json::Value;

use crate::sync::{free_port, net_args, wait_until, Mesh, SYNC_TIMEOUT};

const MASK: &str = "••••••••";

fn conflicts_json(cli: &Cli, reveal: bool) -> Vec<Value> {
    let mut args = vec!["conflicts", "--json"];
    if reveal {
        args.push("--reveal");
    }
    cli.json(&args, "")
        .as_array()
        .expect("conflicts --json is an array")
        .clone()
}

/// The `conflict` flag of each listed item, by name.
fn flags(list: &Value) -> Vec<(String, bool)> {
    list.as_array()
        .expect("an array")
        .iter()
        .map(|i| (str_field(i, "name").to_string(), i["conflict"] == true))
        .collect()
}

#[test]
fn concurrent_edits_are_marked_in_ls_and_search_and_listed_by_conflicts() {
    let mut m = Mesh::start();
    m.a.add_login("Mail", "original", &["--folder", "Team"]);
    m.a.add_login("Calm", "untouched", &["--folder", "Team"]);
    wait_until(SYNC_TIMEOUT, "both items reach B", || {
        crate::sync::folder_items(&m.b, "Team") == 2
    });
    assert!(conflicts_json(&m.a, false).is_empty(), "none yet");
    assert!(m.a.ok(&["conflicts"], "").contains("(no conflicts)"));

    // B offline (a port nobody dials, no peers): both edit the password.
    m.b.stop();
    m.b.set_args(net_args(free_port(), &[]));
    m.b.spawn();
    m.b.unlock();
    m.a.ok(&["edit", "Team/Mail", "--password-stdin"], "from-a\n");
    m.b.ok(&["edit", "Team/Mail", "--password-stdin"], "from-b\n");
    m.b.stop();
    m.b.set_args(net_args(m.ports[1], &[m.ports[0], m.ports[2]]));
    m.b.spawn();
    m.b.unlock();

    for (who, cli) in [("A", &m.a), ("B", &m.b)] {
        wait_until(SYNC_TIMEOUT, &format!("{who} lists the conflict"), || {
            conflicts_json(cli, false).len() == 1
        });
        let listed = cli.json(&["ls", "--folder", "Team", "--json"], "");
        assert_eq!(
            flags(&listed),
            [("Calm".to_string(), false), ("Mail".to_string(), true)],
            "{who}: {listed}"
        );
        let table = cli.ok(&["ls", "--folder", "Team"], "");
        let line = |name: &str| {
            table
                .lines()
                .find(|l| l.contains(name))
                .unwrap_or_else(|| panic!("{name} in {table}"))
                .to_string()
        };
        assert!(line("Mail").ends_with("[conflict]"), "{who}: {table}");
        assert!(!line("Calm").contains("[conflict]"), "{who}: {table}");
        let found = cli.json(&["search", "mail", "--json"], "");
        assert_eq!(flags(&found), [("Mail".to_string(), true)], "{who}");
        let found = cli.ok(&["search", "mail"], "");
        assert!(found.contains("[conflict]"), "{who}: {found}");

        // Masked: the value shown and the value kept.
        let masked = cli.ok(&["conflicts", "--json"], "");
        assert!(
            !masked.contains("from-a") && !masked.contains("from-b"),
            "{who}: {masked}"
        );
        let items = conflicts_json(cli, false);
        let item = &items[0];
        assert_eq!(item["name"], "Mail");
        assert_eq!(item["folder"], "Team");
        assert_eq!(item["fields"]["password"], MASK, "{item}");
        assert_eq!(item["conflicts"]["password"], serde_json::json!([MASK]));
        let human = cli.ok(&["conflicts"], "");
        assert!(human.contains("Team/Mail"), "{who}: {human}");
        assert!(
            human.contains(&format!("password: 1) {MASK} (shown)  2) {MASK}")),
            "{human}"
        );
        assert!(!human.contains("from-"), "{who}: {human}");

        // --reveal: both values, one shown and one kept.
        let items = conflicts_json(cli, true);
        let item = &items[0];
        let mut values: BTreeSet<String> = item["conflicts"]["password"]
            .as_array()
            .expect("kept values")
            .iter()
            .map(|v| v.as_str().expect("a string").to_string())
            .collect();
        values.insert(str_field(&item["fields"], "password").to_string());
        assert_eq!(
            values,
            BTreeSet::from(["from-a".to_string(), "from-b".to_string()]),
            "{who}: {item}"
        );
        let human = cli.ok(&["conflicts", "--reveal"], "");
        assert!(
            human.contains("from-a") && human.contains("from-b"),
            "{human}"
        );
    }
}

/// B offline (a port nobody dials, no peers) while `offline` runs on it and
/// `online` on A, then B back in the mesh, unlocked.
fn partitioned(m: &mut Mesh, online: impl FnOnce(&Cli), offline: impl FnOnce(&Cli)) {
    m.b.stop();
    m.b.set_args(net_args(free_port(), &[]));
    m.b.spawn();
    m.b.unlock();
    online(&m.a);
    offline(&m.b);
    m.b.stop();
    m.b.set_args(net_args(m.ports[1], &[m.ports[0], m.ports[2]]));
    m.b.spawn();
    m.b.unlock();
}

#[test]
fn a_pick_settles_a_conflict_and_an_edit_concurrent_with_a_trash_keeps_the_item() {
    let mut m = Mesh::start();
    m.a.add_login("Mail", "original", &["--folder", "Team"]);
    m.a.add_login("Wiki", "wiki-1", &["--folder", "Team"]);
    wait_until(SYNC_TIMEOUT, "both items reach B", || {
        crate::sync::folder_items(&m.b, "Team") == 2
    });
    partitioned(
        &mut m,
        |a| {
            a.ok(&["edit", "Team/Mail", "--password-stdin"], "from-a\n");
            a.ok(&["rm", "Team/Wiki"], "");
        },
        |b| {
            b.ok(&["edit", "Team/Mail", "--password-stdin"], "from-b\n");
            b.ok(&["edit", "Team/Wiki", "--password-stdin"], "wiki-2\n");
        },
    );

    for (who, cli) in [("A", &m.a), ("B", &m.b)] {
        wait_until(SYNC_TIMEOUT, &format!("{who} lists both conflicts"), || {
            conflicts_json(cli, false).len() == 2
        });
        // The edit kept Wiki out of the trash, with the edited password,
        // marked, and saying why.
        let listed = cli.json(&["ls", "--folder", "Team", "--json"], "");
        assert_eq!(
            flags(&listed),
            [("Mail".to_string(), true), ("Wiki".to_string(), true)],
            "{who}: {listed}"
        );
        let wiki = cli.json(&["get", "Team/Wiki", "--json", "--reveal"], "");
        assert_eq!(wiki["fields"]["password"], "wiki-2", "{who}: {wiki}");
        assert_eq!(wiki["kept_from_trash"], true, "{who}: {wiki}");
        assert!(wiki["trashed_ms"].is_null(), "{who}: {wiki}");
        let shown = cli.ok(&["get", "Team/Wiki"], "");
        assert!(
            shown.contains("moved it to the trash, so it was kept"),
            "{who}: {shown}"
        );
        let human = cli.ok(&["conflicts"], "");
        assert!(
            human.contains("Team/Wiki") && human.contains("1) keep it  2) trash it"),
            "{human}"
        );
        assert!(
            human.contains("coffer conflicts pick ITEM FIELD N"),
            "{human}"
        );
        // History names what each change altered, values masked.
        let history = cli.ok(&["history", "Team/Wiki"], "");
        let mut changed: Vec<&str> = history
            .lines()
            .filter_map(|l| l.trim().strip_prefix("changed: "))
            .collect();
        changed.sort_unstable();
        // Added; trashed by A; the password edited by B (on the state it
        // saw: concurrent with the trash, so not "trashed").
        assert_eq!(
            changed,
            ["name, password", "password", "trashed"],
            "{who}: {history}"
        );
        assert!(!history.contains("wiki-2"), "{who}: {history}");
        let entries = cli.json(&["history", "Team/Wiki", "--json"], "");
        let changed: Vec<Value> = entries
            .as_array()
            .expect("history --json is an array")
            .iter()
            .map(|e| e["changed"].clone())
            .collect();
        assert!(
            changed.contains(&serde_json::json!(["trashed"])),
            "{who}: {entries}"
        );
    }

    // Refusals change nothing: a field with no conflict, a value not listed.
    let err =
        m.a.fails(&["conflicts", "pick", "Team/Mail", "username", "1"], "", 9);
    assert!(err.contains("no concurrent values"), "{err}");
    let err =
        m.a.fails(&["conflicts", "pick", "Team/Mail", "password", "3"], "", 9);
    assert!(err.contains("there is no value 3"), "{err}");
    let err =
        m.a.fails(&["conflicts", "pick", "Team/Wiki", "trash", "3"], "", 9);
    assert!(err.contains("there is no value 3"), "{err}");
    assert_eq!(conflicts_json(&m.a, false).len(), 2);

    // A keeps the value B wrote (number 2 if it lost, 1 if it won), and
    // moves Wiki to the trash after all: both settle on both devices.
    let mail = m.a.json(&["get", "Team/Mail", "--json", "--reveal"], "");
    let choice = if mail["fields"]["password"] == "from-b" {
        "1"
    } else {
        "2"
    };
    let picked =
        m.a.ok(&["conflicts", "pick", "Team/Mail", "password", choice], "");
    assert!(picked.contains("Settled Team/Mail"), "{picked}");
    let trashed =
        m.a.ok(&["conflicts", "pick", "Team/Wiki", "trash", "2"], "");
    assert!(
        trashed.contains("Moved Team/Wiki to the trash"),
        "{trashed}"
    );
    for (who, cli) in [("A", &m.a), ("B", &m.b)] {
        wait_until(
            SYNC_TIMEOUT,
            &format!("{who} has no conflicts left"),
            || conflicts_json(cli, false).is_empty(),
        );
        let pw = cli.ok(&["get", "Team/Mail", "--field", "password"], "");
        assert_eq!(pw.trim(), "from-b", "{who}");
        let live = cli.json(&["ls", "--folder", "Team", "--json"], "");
        assert_eq!(flags(&live), [("Mail".to_string(), false)], "{who}: {live}");
        let trash = cli.json(&["ls", "--trash", "--json"], "");
        assert_eq!(
            flags(&trash),
            [("Wiki".to_string(), false)],
            "{who}: {trash}"
        );
    }
}
