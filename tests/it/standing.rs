//! Issue 21: a device the team took out learns it from its peers and says
//! so. Admin A, user B and B's second laptop B2 on loopback: A revokes B2,
//! which hears it from a peer, refuses writes with the reason (exit 21)
//! and shows `standing: revoked` in `status`; then A removes B, whose
//! remaining laptop does the same with `standing: removed`.

use coffer_tests::{str_field, Cli, PIN};

use crate::enrol::{one_pending, Joining};
use crate::sync::{addr, device_id, free_port, start_node, wait_until, SYNC_TIMEOUT};
use crate::team::{enrol, init_as};

const BOB: &str = "bob@example.com";
/// docs/cli.md: the team revoked this device or removed its user.
const NOT_A_MEMBER: i32 = 21;

/// Links `joiner` as a second device of the user at `from` (listening on
/// `port`): `device link`, `device join` and matching verification codes.
pub fn link(from: &Cli, port: u16, joiner: &Cli) {
    let code = str_field(&from.json(&["device", "link", "--json"], ""), "code").to_string();
    let peer = addr(port);
    let mut join = Joining::spawn(
        joiner,
        &["device", "join", &code, "--peer", &peer, "--pin-stdin"],
        &format!("{PIN}\n"),
    );
    let pending = one_pending(from, "device");
    let vc = str_field(&pending, "verification_code").to_string();
    let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
    assert_eq!(digits(&join.verification_code()), digits(&vc));
    from.ok(&["device", "confirm", &vc], "");
    let (status, _, err) = join.finish();
    assert_eq!(status, 0, "device join failed: {err}");
}

fn standing(cli: &Cli) -> String {
    str_field(&cli.status(), "standing").to_string()
}

/// `add login` is refused with the reason and exit 21; nothing was added.
fn write_refused(cli: &Cli, name: &str, reason: &str) {
    let err = cli.fails(&["add", "login", name], "pw\n", NOT_A_MEMBER);
    assert!(err.contains(reason), "names the reason: {err}");
    let out = cli.coffer(&["add", "login", name, "--json"], "pw\n");
    assert_eq!(out.status.code(), Some(NOT_A_MEMBER));
    let v: serde_json::Value = serde_json::from_slice(&out.stderr).expect("a JSON error line");
    assert_eq!(v["error"]["code"], "not_a_member", "{v}");
    assert!(
        cli.json(&["search", name, "--json"], "")
            .as_array()
            .is_some_and(Vec::is_empty),
        "{name} was not added"
    );
}

#[test]
fn a_revoked_device_and_a_removed_user_are_told_and_refuse_writes() {
    let (pa, pb, pb2) = (free_port(), free_port(), free_port());
    let a = start_node(pa, &[]);
    let b = start_node(pb, &[pa]);
    let b2 = start_node(pb2, &[pa, pb]);
    init_as(&a, "Ada Admin", "ada@example.com");
    a.ok(&["team", "create", "Acme"], "");
    enrol(&a, pa, &b, BOB, &["--name", "Bob"]);
    link(&b, pb, &b2);
    a.ok(&["folder", "create", "Registrar"], "");
    a.ok(
        &[
            "folder",
            "share",
            "Registrar",
            "--user",
            BOB,
            "--role",
            "editor",
        ],
        "",
    );
    for (who, cli) in [("B", &b), ("B2", &b2)] {
        assert_eq!(standing(cli), "member", "{who}");
        wait_until(SYNC_TIMEOUT, &format!("{who} holds Registrar"), || {
            cli.coffer(&["ls", "--folder", "Registrar"], "")
                .status
                .success()
        });
    }
    b2.add_login("before", "pw0", &["--folder", "Registrar"]);

    // A revokes B2 (by id): B2 hears it from a peer.
    let b2_id = device_id(&b2);
    a.ok(&["device", "revoke", &b2_id], "");
    wait_until(SYNC_TIMEOUT, "B2 learns it was revoked", || {
        standing(&b2) == "revoked"
    });
    let status = b2.status();
    let notice = str_field(&status, "notice");
    assert!(
        notice.contains("revoked") && notice.contains("Acme"),
        "{status}"
    );
    assert!(b2.ok(&["status"], "").contains("revoked"));
    // Every command says so (on stderr, stdout stays the command's).
    let out = b2.coffer(&["ls"], "");
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("notice:") && err.contains("revoked"), "{err}");
    write_refused(&b2, "after-revoke", "revoked");
    let err = b2.fails(
        &["edit", "Registrar/before", "--username", "x"],
        "",
        NOT_A_MEMBER,
    );
    assert!(err.contains("revoked"), "{err}");
    b2.fails(&["rm", "Registrar/before"], "", NOT_A_MEMBER);
    b2.fails(&["folder", "create", "Mine"], "", NOT_A_MEMBER);
    // B itself is untouched.
    assert_eq!(standing(&b), "member");
    b.add_login("bob-still-writes", "pw1", &["--folder", "Registrar"]);

    // A removes B: B's laptop learns it and refuses writes too.
    a.ok(&["user", "remove", BOB], "");
    wait_until(SYNC_TIMEOUT, "B learns Bob was removed", || {
        standing(&b) == "removed"
    });
    let notice = str_field(&b.status(), "notice").to_string();
    assert!(
        notice.contains(BOB) && notice.contains("removed"),
        "{notice}"
    );
    write_refused(&b, "after-removal", "removed");
    b.fails(
        &["totp", "set", "Registrar/bob-still-writes"],
        "JBSWY3DPEHPK3PXP\n",
        NOT_A_MEMBER,
    );
    // The admin is a member as before.
    assert_eq!(standing(&a), "member");
    assert!(a.status()["notice"].is_null());
}
