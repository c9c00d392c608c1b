//! Issue 21, a forgotten PIN: there is no master password, so recovery is
//! re-enrolment. Bob's only laptop forgets its PIN: `coffer reset` erases
//! it, admin Ada re-invites him (`coffer invite EMAIL --recover`), he joins
//! on the erased laptop, Ada confirms the verification code; his new device
//! reads every shared item he could read and writes where he may, his old
//! device (a copy of the old laptop's data) is revoked and refuses writes,
//! and what is written afterwards is under keys it never held.

use coffer_tests::{item_names, str_field, Cli, Daemon, Options, PIN};
use serde_json::Value;

use crate::enrol::{one_pending, Joining};
use crate::sync::{addr, device_id, free_port, net_args, start_node, wait_until, SYNC_TIMEOUT};
use crate::team::{enrol, init_as};

const BOB: &str = "bob@example.com";
/// docs/cli.md exit codes.
const USAGE: i32 = 2;
const NOT_FOUND: i32 = 5;
const PERMISSION_DENIED: i32 = 10;
const NOT_A_MEMBER: i32 = 21;

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// Admin Ada (on `pa`) and Bob in group "it": "Direct" shared with Bob as
/// editor, "Ops" with the group as members; an item in each, one Bob
/// wrote, and one in Bob's Personal folder.
fn team(pa: u16, pb: u16) -> (Daemon, Daemon) {
    let a = start_node(pa, &[]);
    let b = start_node(pb, &[pa]);
    init_as(&a, "Ada Admin", "ada@example.com");
    a.ok(&["team", "create", "Acme"], "");
    a.ok(&["group", "create", "it"], "");
    enrol(&a, pa, &b, BOB, &["--name", "Bob", "--group", "it"]);
    a.ok(&["folder", "create", "Direct"], "");
    a.ok(
        &[
            "folder", "share", "Direct", "--user", BOB, "--role", "editor",
        ],
        "",
    );
    a.ok(&["folder", "create", "Ops"], "");
    a.ok(
        &[
            "folder", "share", "Ops", "--group", "it", "--role", "member",
        ],
        "",
    );
    a.add_login("direct-old", "pw-d", &["--folder", "Direct"]);
    a.add_login("ops-old", "pw-o", &["--folder", "Ops"]);
    b.add_login("bob-private", "pw-p", &[]);
    wait_until(SYNC_TIMEOUT, "Bob reads both shared folders", || {
        item_names(&b, "Direct") == ["direct-old"] && item_names(&b, "Ops") == ["ops-old"]
    });
    b.add_login("bob-wrote", "pw-b", &["--folder", "Direct"]);
    wait_until(SYNC_TIMEOUT, "Ada sees Bob's item", || {
        item_names(&a, "Direct") == ["bob-wrote", "direct-old"]
    });
    (a, b)
}

fn members(cli: &Cli, folder: &str) -> Value {
    cli.json(&["folder", "members", folder, "--json"], "")
}

fn personal_folders(cli: &Cli) -> usize {
    cli.json(&["folder", "ls", "--json"], "")
        .as_array()
        .expect("a list")
        .iter()
        .filter(|f| f["name"] == "Personal")
        .count()
}

#[test]
fn a_user_who_forgot_the_pin_of_their_only_laptop_gets_back_what_they_could_read() {
    let (pa, pb, pold) = (free_port(), free_port(), free_port());
    let (a, mut b) = team(pa, pb);
    let old_id = device_id(&b);
    let epochs_before = members(&a, "Direct")["epochs"].as_u64().unwrap();
    // The old laptop as it was: a copy of its data, started later.
    b.stop();
    let snapshot = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(b.data_dir()).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "cofferd.lock" {
            std::fs::copy(e.path(), snapshot.path().join(e.file_name())).unwrap();
        }
    }
    b.spawn();

    // Bob forgot the PIN: the vault is locked and stays so.
    b.ok(&["lock"], "");
    // Without a terminal, reset needs --yes; nothing is erased.
    let err = b.fails(&["reset"], "", USAGE);
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(b.status()["initialized"], true);
    let out = b.coffer(&["reset", "--yes"], "");
    assert!(out.status.success(), "{out:?}");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(stdout.contains("Erased the vault"), "{stdout}");
    assert!(
        stderr.contains("Personal folder")
            && stderr.contains("LOST")
            && stderr.contains("--recover"),
        "the warning names what is lost and how to get back the rest: {stderr}"
    );
    b.wait_exited();
    assert!(
        !b.data_dir().join("device.secret").exists(),
        "the pepper is gone"
    );
    b.spawn();
    let status = b.status();
    assert_eq!(status["initialized"], false, "{status}");

    // Recovery: refused for someone not in the team (exit 5), with a reason.
    let err = a.fails(
        &["invite", "nobody@example.com", "--recover"],
        "",
        NOT_FOUND,
    );
    assert!(err.contains("nobody@example.com"), "{err}");
    let invite = a.json(&["invite", BOB, "--recover", "--json"], "");
    assert_eq!(invite["recover"], true, "{invite}");
    assert!(
        str_field(&invite, "note").contains("Personal folder cannot come back"),
        "{invite}"
    );
    let code = str_field(&invite, "code").to_string();
    let mut join = Joining::spawn(
        &b,
        &["join", &code, "--peer", &addr(pa), "--pin-stdin"],
        &format!("{PIN}\n"),
    );
    let pending = one_pending(&a, "invite");
    assert_eq!(pending["recover"], true, "{pending}");
    let vc = str_field(&pending, "verification_code").to_string();
    assert_eq!(digits(&join.verification_code()), digits(&vc));
    let confirmed = a.json(&["invite", "confirm", &vc, "--json"], "");
    let (status, _, err) = join.finish();
    assert_eq!(status, 0, "join failed: {err}");
    let recovery = &confirmed["recovery"];
    assert_eq!(
        recovery["revoked"],
        serde_json::json!([old_id]),
        "{confirmed}"
    );
    let new_id = device_id(&b);
    assert_ne!(new_id, old_id);

    // Bob's new device reads everything shared with him, and writes.
    wait_until(SYNC_TIMEOUT, "the new device reads both folders", || {
        item_names(&b, "Direct") == ["bob-wrote", "direct-old"]
            && item_names(&b, "Ops") == ["ops-old"]
    });
    b.add_login("bob-new", "pw-n", &["--folder", "Direct"]);
    b.fails(
        &["add", "login", "nope", "--folder", "Ops"],
        "pw\n",
        PERMISSION_DENIED,
    );
    wait_until(SYNC_TIMEOUT, "Ada sees the new device's item", || {
        item_names(&a, "Direct").contains(&"bob-new".to_string())
    });
    // The same user, not a new one; one fresh, empty Personal folder.
    let users = a.json(&["user", "ls", "--json"], "");
    let users = users.as_array().unwrap();
    assert_eq!(users.len(), 2, "{users:?}");
    let bob = users.iter().find(|u| u["email"] == BOB).unwrap();
    assert_eq!(bob["devices"], 1, "{bob}");
    assert_eq!(bob["groups"], serde_json::json!(["it"]), "{bob}");
    assert_eq!(personal_folders(&b), 1);
    assert!(item_names(&b, "Personal").is_empty());
    // Keys rotated: the old device holds none of the new epoch.
    let direct = members(&a, "Direct");
    assert!(
        direct["epochs"].as_u64().unwrap() > epochs_before,
        "{direct}"
    );
    let devices = direct["devices"].as_array().unwrap();
    assert!(
        devices.iter().all(|d| d["device_id"] != old_id.as_str()),
        "{direct}"
    );
    assert!(
        devices
            .iter()
            .any(|d| d["device_id"] == new_id.as_str() && d["has_key"] == true),
        "{direct}"
    );

    // The old laptop (its old data, its PIN known) learns it is revoked.
    let old = Daemon::start_copy_of(
        snapshot.path(),
        Options {
            args: net_args(pold, &[pa]),
            ..Default::default()
        },
    );
    old.unlock();
    wait_until(SYNC_TIMEOUT, "the old laptop learns it was revoked", || {
        old.status()["standing"] == "revoked"
    });
    let err = old.fails(
        &["add", "login", "from-old", "--folder", "Direct"],
        "pw\n",
        NOT_A_MEMBER,
    );
    assert!(err.contains("revoked"), "{err}");
    a.add_login("after", "pw-after", &["--folder", "Direct"]);
    wait_until(SYNC_TIMEOUT, "Bob reads what came after", || {
        item_names(&b, "Direct").contains(&"after".to_string())
    });
    assert!(
        !item_names(&old, "Direct").contains(&"after".to_string()),
        "the old laptop never reads what came after"
    );
}

#[test]
fn recover_is_for_admins_and_existing_users() {
    let (pa, pb) = (free_port(), free_port());
    let a = start_node(pa, &[]);
    let b = start_node(pb, &[pa]);
    init_as(&a, "Ada Admin", "ada@example.com");
    a.ok(&["team", "create", "Acme"], "");
    enrol(&a, pa, &b, BOB, &["--name", "Bob"]);
    // Not in the team: exit 5 (not_found), naming the email.
    let out = a.coffer(&["invite", "carol@example.com", "--recover", "--json"], "");
    assert_eq!(out.status.code(), Some(NOT_FOUND));
    let v: Value = serde_json::from_slice(&out.stderr).expect("a JSON error line");
    assert_eq!(v["error"]["code"], "not_found", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("carol@example.com"),
        "{v}"
    );
    // One's own user: link a device instead.
    let err = a.fails(&["invite", "ada@example.com", "--recover"], "", 9);
    assert!(err.contains("device link"), "{err}");
    // A non-admin: exit 10.
    let err = b.fails(
        &["invite", "ada@example.com", "--recover"],
        "",
        PERMISSION_DENIED,
    );
    assert!(err.contains("admin"), "{err}");
    // --recover keeps groups and roles as they are.
    a.fails(&["invite", BOB, "--recover", "--admin"], "", USAGE);
    // Nothing was opened.
    let open = a.json(&["invite", "ls", "--json"], "");
    assert!(
        open.as_array()
            .unwrap()
            .iter()
            .all(|i| i["recover"] != true),
        "{open}"
    );
}
