//! Issue 21: the Personal folder belongs to the user. A laptop linked with
//! `coffer device link` gets its user's Personal folder and shows its
//! items, as one folder named Personal on both laptops; what either adds
//! there without naming a folder reaches the other.

use std::thread;
use std::time::Duration;

use coffer_tests::{item_names, Cli};

use crate::standing::link;
use crate::sync::{free_port, pairing_key, start_node, wait_until, SYNC_TIMEOUT};
use crate::team::init_as;

fn personal_folders(cli: &Cli) -> usize {
    let v = cli.json(&["folder", "ls", "--json"], "");
    v.as_array()
        .expect("folder ls --json is an array")
        .iter()
        .filter(|f| f["name"] == "Personal")
        .count()
}

#[test]
fn a_linked_laptop_gets_the_users_personal_folder() {
    let (pb, pb2) = (free_port(), free_port());
    let b = start_node(pb, &[]);
    let b2 = start_node(pb2, &[pb]);
    init_as(&b, "Bob", "bob@example.com");
    b.ok(&["team", "create", "Acme"], "");
    b.add_login("mail", "pw-mail", &["--username", "bob"]);
    b.add_login("bank", "pw-bank", &["--folder", "Personal"]);

    link(&b, pb, &b2);
    wait_until(SYNC_TIMEOUT, "B2 lists Bob's Personal items", || {
        item_names(&b2, "Personal") == ["bank", "mail"]
    });
    assert_eq!(personal_folders(&b2), 1, "one folder named Personal on B2");
    assert_eq!(personal_folders(&b), 1, "one folder named Personal on B");
    let pw = b2.ok(&["get", "Personal/mail", "--field", "password"], "");
    assert_eq!(pw.trim_end(), "pw-mail");
    let listed = b2.ok(&["ls"], "");
    assert!(
        listed.contains("mail") && listed.contains("bank"),
        "{listed}"
    );

    // Either laptop's default folder is that one Personal folder.
    b2.add_login("from-b2", "pw-b2", &[]);
    b.add_login("from-b", "pw-b", &[]);
    for (who, cli) in [("B", &b), ("B2", &b2)] {
        wait_until(SYNC_TIMEOUT, &format!("{who} holds both new items"), || {
            item_names(cli, "Personal") == ["bank", "from-b", "from-b2", "mail"]
        });
    }
    let status = b2.status();
    assert_eq!(status["folders"], 1, "{status}");

    // Neither laptop deletes it, nor does the linked one leave it.
    for (cli, how) in [(&b, "--force"), (&b2, "--force"), (&b2, "--leave")] {
        let err = cli.fails(&["folder", "rm", "Personal", how], "", 9);
        assert!(err.contains("the Personal folder stays"), "{err}");
    }
    assert_eq!(item_names(&b2, "Personal").len(), 4);
}

/// A Personal folder shared with a paired device outside the team cannot
/// join the team: the link still goes through, and the new laptop keeps a
/// Personal folder of its own.
#[test]
fn a_link_goes_on_when_personal_is_shared_with_a_paired_device() {
    let (pb, pb2, pp) = (free_port(), free_port(), free_port());
    let b = start_node(pb, &[pp]);
    let p = start_node(pp, &[pb]);
    let b2 = start_node(pb2, &[pb]);
    init_as(&b, "Bob", "bob@example.com");
    p.init();
    let key = pairing_key(&p);
    b.ok(
        &[
            "device", "trust", &key, "--name", "P", "--share", "Personal",
        ],
        "",
    );
    b.ok(&["team", "create", "Acme"], "");
    b.add_login("mail", "pw-mail", &[]);

    link(&b, pb, &b2);
    let devices = b.json(&["device", "ls", "--json"], "");
    let bobs = devices
        .as_array()
        .expect("device ls --json is an array")
        .iter()
        .filter(|d| d["user"] == "bob@example.com")
        .count();
    assert_eq!(bobs, 2, "{devices}");
    b2.add_login("own", "pw-own", &[]);
    thread::sleep(Duration::from_secs(2));
    assert_eq!(item_names(&b2, "Personal"), ["own"]);
    assert_eq!(personal_folders(&b2), 1);
    assert_eq!(item_names(&b, "Personal"), ["mail"]);
}
