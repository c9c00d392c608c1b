//! Issue 16, the keyless relay, on loopback: a `cofferd --relay` holds the
//! team's envelopes for two laptops that are never up at the same time
//! (H1 edits, H1 stops, H2 starts and gets the edit from the relay); a
//! Folder Member's write and a forged envelope pushed to the relay are
//! refused by it; the relay's data dir holds no key that opens any envelope
//! it stores. The NAT namespace test is `relay_nat.rs`.

use std::fs;
use std::time::Duration;

use coffer_crdt::{Envelope, FolderKey, Kind, Space};
use coffer_daemon::keystore::KdfParams;
use coffer_daemon::vault::{Now, Vault};
use coffer_tests::hostile::Hostile;
use coffer_tests::{files_under, item_names, str_field, Cli, Daemon, Options, PIN};
use serde_json::Value;

use crate::sync::{addr, free_port, start_node, wait_until, SYNC_TIMEOUT};
use crate::team::{enrol, init_as, share};

/// A relay on loopback `port`, with its own data dir.
pub fn start_relay(port: u16) -> Daemon {
    Daemon::start_with(Options {
        args: vec!["--relay".into(), "--listen".into(), addr(port)],
        ..Default::default()
    })
}

pub fn relay_status(relay: &Cli) -> Value {
    relay.json(&["relay", "status", "--json"], "")
}

/// Envelopes the relay holds, all teams.
fn held(relay: &Cli) -> u64 {
    relay_status(relay)["teams"].as_array().map_or(0, |t| {
        t.iter().map(|t| t["envelopes"].as_u64().unwrap_or(0)).sum()
    })
}

fn relay_connected(cli: &Cli) -> bool {
    let ls = cli.json(&["relay", "ls", "--json"], "");
    ls["relays"][0]["connected"] == Value::Bool(true)
}

/// Every envelope in the relay's store, by reading its SQLite file.
fn stored_envelopes(relay: &Daemon) -> Vec<Envelope> {
    let db = relay.data_dir().join("relay.sqlite3");
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the relay's store");
    let mut stmt = conn.prepare("SELECT bytes FROM envelopes").expect("query");
    let rows = stmt
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .expect("rows");
    rows.map(|b| Envelope::decode(&b.expect("a row")).expect("a stored envelope decodes"))
        .collect()
}

/// Whether any 32-byte window of `bytes`, taken as a folder key, opens `env`.
fn a_window_opens(bytes: &[u8], env: &Envelope) -> bool {
    bytes.windows(32).any(|w| {
        let key = FolderKey::from_bytes(w.try_into().expect("32 bytes"));
        Space::open_content(env, &key).is_ok()
    })
}

#[test]
fn issue_16_a_relay_forwards_an_edit_between_laptops_never_up_together_and_holds_no_key() {
    let (pr, p1, p2) = (free_port(), free_port(), free_port());
    let mut relay = start_relay(pr);
    let status = relay_status(&relay);
    let peer_id = str_field(&status, "peer_id").to_string();
    assert_eq!(status["teams"], serde_json::json!([]));
    // The laptops know each other only for the enrolment.
    let mut h1 = start_node(p1, &[]);
    let mut h2 = start_node(p2, &[p1]);
    init_as(&h1, "Ada Admin", "ada@example.com");
    h1.ok(&["team", "create", "Acme"], "");
    enrol(&h1, p1, &h2, "bob@example.com", &[]);
    h1.ok(&["folder", "create", "Ops"], "");
    share(&h1, "Ops", "bob@example.com", "editor");
    h1.ok(&["folder", "create", "Read"], "");
    share(&h1, "Read", "bob@example.com", "member");
    h1.add_login("before", "pw0", &["--folder", "Ops"]);
    wait_until(SYNC_TIMEOUT, "H2 holds Ops", || {
        item_names(&h2, "Ops") == ["before"]
    });

    // Bob is no admin: he cannot add a relay. Ada adds it.
    let relay_addr = format!("{}/p2p/{peer_id}", addr(pr));
    h2.fails(&["relay", "add", &relay_addr], "", 10);
    h1.fails(&["relay", "add", &addr(pr)], "", 9);
    // The relay's operator accepts the team first: before that, the team's
    // devices are refused like any stranger's.
    let team_id = str_field(&h1.json(&["team", "show", "--json"], ""), "team_id").to_string();
    relay.ok(&["relay", "accept", &team_id], "");
    assert_eq!(relay_status(&relay)["accepted"][0], team_id.as_str());
    h1.ok(&["relay", "add", &relay_addr], "");
    let ls = h1.json(&["relay", "ls", "--json"], "");
    assert_eq!(ls["relays"][0]["peer_id"], Value::String(peer_id.clone()));
    wait_until(SYNC_TIMEOUT, "both laptops reach the relay", || {
        relay_connected(&h1) && relay_connected(&h2)
    });
    wait_until(SYNC_TIMEOUT, "the relay holds the team", || {
        let s = relay_status(&relay);
        // The roster, Ops and Read (Personal folders stay off the relay).
        s["teams"][0]["spaces"] == 3 && s["teams"][0]["connected"] == 2
    });

    // H2 goes off; H1 edits; the relay takes the edit; H1 goes off.
    h2.stop();
    let before = held(&relay);
    h1.add_login("while-bob-is-off", "pw1", &["--folder", "Ops"]);
    wait_until(SYNC_TIMEOUT, "the relay holds H1's edit", || {
        held(&relay) > before
    });
    h1.stop();

    // H2 comes up with nobody but the relay to talk to, and gets the edit.
    h2.spawn();
    h2.unlock();
    wait_until(SYNC_TIMEOUT, "H2 gets the edit from the relay", || {
        item_names(&h2, "Ops") == ["before", "while-bob-is-off"]
    });

    // Bob is a Folder Member of Read: his write, pushed straight to the
    // relay, is refused by the acceptance rule there; a forged envelope
    // ends his session.
    h2.stop();
    let mut bob = Hostile::open(h2.data_dir(), PIN);
    let read = bob
        .replica()
        .folders()
        .expect("unlocked")
        .into_iter()
        .find(|f| f.name == "Read")
        .expect("Bob holds Read")
        .id;
    let relay_dev = coffer_crdt::DeviceId(
        coffer_daemon::net::transport_of(&peer_id.parse().expect("a peer id"))
            .expect("an Ed25519 peer id"),
    );
    let mut link = bob.connect(&addr(pr).parse().expect("a multiaddr"));
    link.send(&bob.hello_for(relay_dev)).expect("hello");
    let read_s = bob.space(&read);
    let (seq, prev) = bob.next_slot(&read_s);
    let write = bob.item_envelope(&read_s, seq, prev, "planted-by-member", "evil");
    link.send_envelopes(read, std::slice::from_ref(&write))
        .expect("send the write");
    wait_until(SYNC_TIMEOUT, "the relay judged the member's write", || {
        relay_status(&relay)["teams"][0]["quarantined"] == 1
    });
    let mut forged = write.to_bytes();
    let mid = forged.len() / 2;
    forged[mid] ^= 1;
    let _ = link.send(&coffer_daemon::net::protocol::Message::Envelopes {
        space: read,
        envelopes: vec![forged],
    });
    assert!(
        link.wait_closed(Duration::from_secs(10)),
        "the relay cuts a forger off: {:?}",
        link.state()
    );
    assert!(relay_status(&relay)["refused_sessions"].as_u64() >= Some(1));
    assert!(relay.is_running());

    // The relay's data dir holds no key that opens any envelope it stores:
    // not one 32-byte window of any of its files opens a content envelope,
    // while the real folder key (from H1's vault, opened with its PIN) does.
    let envs = stored_envelopes(&relay);
    let content: Vec<&Envelope> = envs.iter().filter(|e| e.kind() == Kind::Content).collect();
    assert!(content.len() >= 2, "the relay holds the edits");
    let kdf = KdfParams {
        memory_kib: coffer_tests::KDF_MEMORY_KIB.parse().expect("a number"),
        iterations: coffer_tests::KDF_ITERATIONS.parse().expect("a number"),
        ..KdfParams::default()
    };
    let mut ada = Vault::open(h1.data_dir(), kdf).expect("open H1's vault");
    ada.unlock(
        PIN,
        Now {
            unix_ms: 1_800_000_000_000,
        },
    )
    .expect("unlock H1");
    let keys = ada
        .replica()
        .expect("H1")
        .keys_for_reload()
        .expect("unlocked")
        .clone();
    let sample = content[content.len() - 1];
    let ops_key = ada
        .replica()
        .expect("H1")
        .space(&sample.space())
        .expect("H1 holds the folder")
        .folder_key(&keys)
        .expect("H1 reads it");
    assert!(
        a_window_opens(ops_key.expose_secret(), sample),
        "the scan finds a key that is there"
    );
    let files = files_under(relay.data_dir());
    assert!(!files.is_empty());
    // (One envelope: a window that opened any would be a folder key, and
    // the newest edit's epoch key is the team's current one.)
    for f in &files {
        let bytes = fs::read(f).unwrap_or_default();
        assert!(
            !a_window_opens(&bytes, sample),
            "{} holds a key that opens envelope {}",
            f.display(),
            sample.id().short()
        );
    }
    // And no keystore, no pepper, no device keys: the relay has no PIN.
    let names: Vec<String> = files
        .iter()
        .filter_map(|f| Some(f.file_name()?.to_string_lossy().into_owned()))
        .collect();
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("relay.sqlite3") || n == "cofferd.lock"),
        "{names:?}"
    );

    // Its operator takes the team back: nothing of it is left on the relay,
    // also after a restart; a team it never knew is an error.
    relay.ok(&["relay", "forget", &team_id], "");
    let s = relay_status(&relay);
    assert_eq!(s["teams"].as_array().map(Vec::len), Some(0), "{s}");
    assert_eq!(s["accepted"].as_array().map(Vec::len), Some(0), "{s}");
    relay.stop();
    relay.spawn();
    assert!(
        stored_envelopes(&relay).is_empty(),
        "the relay's store dropped the team"
    );
    assert_eq!(
        relay_status(&relay)["accepted"].as_array().map(Vec::len),
        Some(0)
    );
    relay.fails(&["relay", "forget", &team_id], "", 5);
}
