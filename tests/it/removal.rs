//! Issue 11, acceptance point 1: every way of taking someone out of a
//! folder rotates its key, and nothing written after the removal is
//! readable by the removed party, while everyone who stays (and everyone
//! who joins later) keeps reading old and new items across lock, unlock
//! and restart. One test per removal path, each on real daemons through
//! the CLI: `coffer user remove`, `coffer group remove`, `coffer device
//! revoke` and `coffer folder unshare`.
//!
//! The capture check goes below the CLI: B's device keys come out of B's
//! own data dir (`Vault::open` + unlock), every envelope A holds is loaded
//! into a replica with B's identity, and that replica must not open the
//! folder's current key nor show the item written after the removal.

use std::thread;
use std::time::{Duration, Instant};

use coffer_crdt::replica::{Identity, Replica};
use coffer_crdt::{DeviceKeys, Kind, SpaceId};
use coffer_daemon::keystore::KdfParams;
use coffer_daemon::store::Store;
use coffer_daemon::vault::{Now, Vault};
use coffer_tests::{
    contains_bytes, item_names, str_field, Cli, Daemon, KDF_ITERATIONS, KDF_MEMORY_KIB, PIN,
};
use serde_json::Value;

use crate::sync::{device_id, free_port, start_node, wait_until, SYNC_TIMEOUT};
use crate::team::{enrol, init_as};

const BOB: &str = "bob@example.com";
const CYD: &str = "cyd@example.com";
const DAN: &str = "dan@example.com";
const GROUP: &str = "ops-team";
const OLD_PW_1: &str = "old-first-pw";
const OLD_PW_2: &str = "old-second-pw";
const NEW_PW: &str = "new-secret-after-removal-7f3a";

/// How Ops reaches B and C, and how B is taken out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Removal {
    User,
    Group,
    Device,
    Unshare,
}

/// Admin A, user B (to be removed), user C (stays), all sharing Ops, which
/// holds `old` (added, then edited: it has history) read by B and C.
struct Team {
    a: Daemon,
    b: Daemon,
    c: Daemon,
    pa: u16,
    ops: SpaceId,
    b_device: String,
    started: Instant,
}

fn password(cli: &Cli, item: &str) -> Option<String> {
    let out = cli.coffer(&["get", item, "--field", "password"], "");
    out.status.success().then(|| {
        String::from_utf8(out.stdout)
            .expect("UTF-8")
            .trim_end()
            .to_string()
    })
}

fn share_with_user(a: &Cli, user: &str) {
    a.ok(
        &["folder", "share", "Ops", "--user", user, "--role", "editor"],
        "",
    );
}

impl Team {
    fn start(how: Removal) -> Team {
        let started = Instant::now();
        let (pa, pb, pc) = (free_port(), free_port(), free_port());
        let a = start_node(pa, &[]);
        let b = start_node(pb, &[pa]);
        let c = start_node(pc, &[pa]);
        init_as(&a, "Ada Admin", "ada@example.com");
        a.ok(&["team", "create", "Acme"], "");
        enrol(&a, pa, &b, BOB, &["--name", "Bob"]);
        enrol(&a, pa, &c, CYD, &[]);
        a.ok(&["folder", "create", "Ops"], "");
        if how == Removal::Group {
            a.ok(&["group", "create", GROUP], "");
            a.ok(&["group", "add", GROUP, BOB], "");
            a.ok(&["group", "add", GROUP, CYD], "");
            a.ok(
                &[
                    "folder", "share", "Ops", "--group", GROUP, "--role", "editor",
                ],
                "",
            );
        } else {
            share_with_user(&a, BOB);
            share_with_user(&a, CYD);
        }
        a.add_login("old", OLD_PW_1, &["--folder", "Ops", "--username", "ops"]);
        a.ok(
            &["edit", "Ops/old", "--password-stdin"],
            format!("{OLD_PW_2}\n"),
        );
        for (who, cli) in [("B", &b), ("C", &c)] {
            wait_until(SYNC_TIMEOUT, &format!("{who} reads Ops/old"), || {
                password(cli, "Ops/old").as_deref() == Some(OLD_PW_2)
            });
        }
        let members = a.json(&["folder", "members", "Ops", "--json"], "");
        let ops = SpaceId::from_hex(str_field(&members, "folder_id")).expect("a folder id");
        let b_device = device_id(&b);
        Team {
            a,
            b,
            c,
            pa,
            ops,
            b_device,
            started,
        }
    }

    fn lap(&self, what: &str) {
        eprintln!("[{:>5.1}s] {what}", self.started.elapsed().as_secs_f64());
    }
}

/// The whole check for one removal path; `remove` runs it on A.
fn removal_locks_the_removed_party_out(how: Removal, remove: &[&str]) {
    let mut t = Team::start(how);
    t.lap("team set up, B and C read Ops/old");
    let before = t.a.json(&["folder", "members", "Ops", "--json"], "");
    let epochs_before = before["epochs"].as_u64().expect("epochs");
    assert!(
        devices_of(&before).contains(&t.b_device),
        "B holds Ops before: {before:#}"
    );

    // The removal, on A.
    let remove: Vec<String> = remove
        .iter()
        .map(|a| a.replace("{b_device}", &t.b_device))
        .collect();
    let remove: Vec<&str> = remove.iter().map(String::as_str).collect();
    t.a.ok(&remove, "");
    let after = t.a.json(&["folder", "members", "Ops", "--json"], "");
    assert_eq!(
        after["epochs"].as_u64(),
        Some(epochs_before + 1),
        "one rotation (before: {epochs_before}): {after:#}"
    );
    let devices = devices_of(&after);
    assert!(
        !devices.contains(&t.b_device),
        "B's device left Ops: {after:#}"
    );
    assert!(
        after["devices"]
            .as_array()
            .expect("devices")
            .iter()
            .all(|d| d["has_key"] == true),
        "every remaining device holds the new key: {after:#}"
    );
    let users = user_members(&after);
    match how {
        // B's user keeps its grant; only the device is gone.
        Removal::Device => assert!(users.contains(&BOB.to_string()), "{after:#}"),
        Removal::Group => assert!(
            !users.contains(&BOB.to_string()) && group_members(&after) == [GROUP],
            "{after:#}"
        ),
        Removal::User | Removal::Unshare => {
            assert!(!users.contains(&BOB.to_string()), "{after:#}");
        }
    }
    if how == Removal::Device {
        let devs = t.a.json(&["device", "ls", "--json"], "");
        assert!(
            devs.as_array()
                .expect("device list")
                .iter()
                .any(|d| { d["device_id"] == t.b_device.as_str() && d["revoked"] == true }),
            "{devs:#}"
        );
    }
    if how == Removal::User {
        let users = t.a.json(&["user", "ls", "--json"], "");
        assert!(
            !users.to_string().contains(BOB),
            "B is no longer a user: {users:#}"
        );
    }
    t.lap("removed");

    // Written after the removal: C gets it.
    t.a.add_login("new", NEW_PW, &["--folder", "Ops"]);
    wait_until(SYNC_TIMEOUT, "C reads Ops/new", || {
        password(&t.c, "Ops/new").as_deref() == Some(NEW_PW)
    });
    t.lap("C reads new");

    // D joins after the rotation and reads both, history included.
    let pd = free_port();
    let mut d = start_node(pd, &[t.pa]);
    enrol(&t.a, t.pa, &d, DAN, &[]);
    share_with_user(&t.a, DAN);
    wait_until(SYNC_TIMEOUT, "D reads Ops/new and Ops/old", || {
        password(&d, "Ops/new").as_deref() == Some(NEW_PW)
            && password(&d, "Ops/old").as_deref() == Some(OLD_PW_2)
    });
    t.lap("D joined and reads both");

    // B's own daemon, restarted while A is up, does not show `new`.
    t.b.restart();
    t.b.unlock();
    t.b.ok(&["sync", "now"], "");
    thread::sleep(Duration::from_secs(2));
    assert!(
        !item_names(&t.b, "Ops").contains(&"new".to_string()),
        "B shows the item written after its removal: {:?}",
        item_names(&t.b, "Ops")
    );
    assert_eq!(password(&t.b, "Ops/new"), None, "B reads Ops/new");
    t.lap("B restarted, no new");

    // Everyone who stays: lock + unlock.
    for (who, cli) in [("A", &t.a), ("C", &t.c), ("D", &d)] {
        cli.ok(&["lock"], "");
        cli.unlock();
        reads_old_and_new(who, cli, "after lock + unlock");
    }
    t.lap("lock + unlock");

    // Stop everything cleanly, then look at the bytes.
    t.a.stop();
    t.b.stop();
    t.c.stop();
    d.stop();
    captured_envelopes_stay_closed(&t);
    t.lap("capture check");

    // Restart + unlock.
    for (who, daemon) in [("A", &mut t.a), ("C", &mut t.c), ("D", &mut d)] {
        daemon.spawn();
        daemon.unlock();
        reads_old_and_new(who, daemon, "after a restart");
    }
    t.lap("restart + unlock");
}

fn devices_of(members: &Value) -> Vec<String> {
    members["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| str_field(d, "device_id").to_string())
        .collect()
}

fn grants_of(members: &Value, kind: &str) -> Vec<String> {
    members["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter(|m| m["kind"] == kind)
        .map(|m| str_field(m, "name").to_string())
        .collect()
}

fn user_members(members: &Value) -> Vec<String> {
    grants_of(members, "user")
}

fn group_members(members: &Value) -> Vec<String> {
    grants_of(members, "group")
}

#[track_caller]
fn reads_old_and_new(who: &str, cli: &Cli, when: &str) {
    assert_eq!(
        password(cli, "Ops/old").as_deref(),
        Some(OLD_PW_2),
        "{who} reads old {when}"
    );
    assert_eq!(
        password(cli, "Ops/new").as_deref(),
        Some(NEW_PW),
        "{who} reads new {when}"
    );
    let history = cli.json(&["history", "Ops/old", "--json", "--reveal"], "");
    let entries = history.as_array().expect("history is a list");
    assert!(
        entries.iter().any(|e| e["fields"]["password"] == OLD_PW_1),
        "{who} keeps old's earlier version {when}: {history:#}"
    );
}

fn test_kdf() -> KdfParams {
    KdfParams {
        memory_kib: KDF_MEMORY_KIB.parse().expect("a number"),
        iterations: KDF_ITERATIONS.parse().expect("a number"),
        ..KdfParams::default()
    }
}

/// B's identity and device keys, out of B's own data dir.
fn keys_of(data_dir: &std::path::Path) -> (Identity, DeviceKeys) {
    let mut vault = Vault::open(data_dir, test_kdf()).expect("open B's vault");
    let unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    vault
        .unlock(PIN, Now { unix_ms })
        .expect("unlock B's vault");
    let replica = vault.replica().expect("initialised");
    let keys = replica.keys_for_reload().expect("unlocked").clone();
    (replica.identity().clone(), keys)
}

/// What B holds or could still receive: every envelope A holds, loaded
/// into a replica with B's identity and opened with B's keys.
fn captured_envelopes_stay_closed(t: &Team) {
    let (identity, keys) = keys_of(t.b.data_dir());
    let store = Store::open(&t.a.data_dir().join("vault.sqlite3")).expect("open A's store");
    let spaces = store.load_spaces().expect("A's spaces");
    assert!(spaces.iter().any(|s| s.id == t.ops), "A stores Ops");
    let mut replica = Replica::load(identity, spaces, vec![]);
    replica
        .unlock(keys.clone(), &mut rand::rngs::OsRng)
        .expect("B's keys unlock B's identity");

    let space = replica.space(&t.ops).expect("the replica holds Ops");
    let current = space.current_epoch().expect("Ops has a key");
    assert!(
        space.epoch_key(&keys, &current).is_err(),
        "B's keys open Ops's current key"
    );
    let opened = space.epoch_keys(&keys);
    assert!(
        !opened.is_empty(),
        "B's keys open Ops's first key (else this check proves nothing)"
    );
    assert!(!opened.contains_key(&current));
    let mut after_removal = 0;
    for env in space.held().filter(|e| e.kind() == Kind::Content) {
        let epoch = env.body().epoch;
        match space.open(&keys, env) {
            Ok(plain) => {
                assert_ne!(epoch, Some(current), "a current-epoch change opened");
                assert!(
                    !contains_bytes(&plain, NEW_PW.as_bytes()),
                    "an envelope B opens holds the new password"
                );
            }
            Err(_) => after_removal += usize::from(epoch == Some(current)),
        }
    }
    assert!(
        after_removal >= 1,
        "A holds the change that added `new`, under the current epoch"
    );

    // Through the replica's own view: `new` is not there (Ops may be open
    // with its older keys, showing `old`, or not open at all).
    let names: Vec<String> = replica
        .items(Some(&t.ops.to_hex()), false)
        .map(|items| items.iter().map(|(_, i)| i.name.clone()).collect())
        .unwrap_or_default();
    assert!(!names.contains(&"new".to_string()), "B's view: {names:?}");
    for (folder, head) in replica.items(None, false).expect("unlocked") {
        let item = replica
            .item(&folder, &head.id)
            .expect("listed, so readable");
        assert!(
            item.fields.values().all(|v| v != NEW_PW),
            "B's view holds the new password in {}",
            item.name
        );
    }
}

#[test]
fn issue_11_user_remove_locks_the_user_out_of_later_writes() {
    removal_locks_the_removed_party_out(Removal::User, &["user", "remove", BOB]);
}

#[test]
fn issue_11_group_remove_locks_the_user_out_of_later_writes() {
    removal_locks_the_removed_party_out(Removal::Group, &["group", "remove", GROUP, BOB]);
}

#[test]
fn issue_11_device_revoke_locks_the_device_out_of_later_writes() {
    removal_locks_the_removed_party_out(Removal::Device, &["device", "revoke", "{b_device}"]);
}

#[test]
fn issue_11_folder_unshare_locks_the_user_out_of_later_writes() {
    removal_locks_the_removed_party_out(
        Removal::Unshare,
        &["folder", "unshare", "Ops", "--user", BOB],
    );
}
