//! Issue 21: conflicts are visible. Two daemons edit one password while
//! partitioned; once they meet, `ls` and `search` mark the item (and say
//! `"conflict": true` in JSON), and `coffer conflicts` lists it with the
//! value shown and the value kept, masked unless `--reveal`.

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
            human.contains(&format!("password: {MASK}  kept: {MASK}")),
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
