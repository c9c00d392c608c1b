//! Issue 21: `coffer user promote|demote`. The founder A makes user B a
//! team admin (B then may change groups), B cannot demote the founder, and
//! A takes the role back (B then may not).

use coffer_tests::Cli;

use crate::sync::{free_port, start_node, wait_until, SYNC_TIMEOUT};
use crate::team::{enrol, init_as};

const BOB: &str = "bob@example.com";
const INVALID_INPUT: i32 = 9;
const PERMISSION_DENIED: i32 = 10;

fn is_admin(cli: &Cli) -> bool {
    cli.json(&["team", "show", "--json"], "")["admin"] == true
}

#[test]
fn an_admin_promotes_and_demotes_a_user() {
    let (pa, pb) = (free_port(), free_port());
    let a = start_node(pa, &[]);
    let b = start_node(pb, &[pa]);
    init_as(&a, "Ada Admin", "ada@example.com");
    a.ok(&["team", "create", "Acme"], "");
    enrol(&a, pa, &b, BOB, &[]);
    assert!(!is_admin(&b));
    b.fails(&["group", "create", "ops"], "", PERMISSION_DENIED);
    let err = b.fails(&["user", "promote", BOB], "", PERMISSION_DENIED);
    assert!(err.contains("team admin"), "{err}");

    a.ok(&["user", "promote", BOB], "");
    let admins = a.json(&["team", "show", "--json"], "")["admins"].clone();
    assert!(
        admins
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == BOB)),
        "{admins}"
    );
    let err = a.fails(&["user", "promote", BOB], "", INVALID_INPUT);
    assert!(err.contains("already a team admin"), "{err}");
    wait_until(SYNC_TIMEOUT, "B learns it is an admin", || is_admin(&b));
    b.ok(&["group", "create", "ops"], "");
    let err = b.fails(&["user", "demote", "ada@example.com"], "", INVALID_INPUT);
    assert!(err.contains("founding admin"), "{err}");
    wait_until(SYNC_TIMEOUT, "A sees B's group", || {
        a.json(&["group", "ls", "--json"], "")
            .as_array()
            .is_some_and(|g| !g.is_empty())
    });

    a.ok(&["user", "demote", BOB], "");
    assert!(!a.json(&["team", "show", "--json"], "")["admins"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == BOB)));
    let err = a.fails(&["user", "demote", BOB], "", INVALID_INPUT);
    assert!(err.contains("not a team admin"), "{err}");
    wait_until(SYNC_TIMEOUT, "B learns it is no admin", || !is_admin(&b));
    b.fails(&["group", "create", "dev"], "", PERMISSION_DENIED);
}
