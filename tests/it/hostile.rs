//! Issue 12, "Hostile peers", at the process level: a device enrolled
//! through the real CLI flow is taken over (its daemon stopped, its data dir
//! opened with the PIN: `coffer_tests::hostile`) and attacks two honest
//! `cofferd` processes over the real transport and protocol, with its real
//! keys: a Folder Member writing, a removed member writing, an equivocating
//! writer (one branch to each daemon), a replayer, a writer's deeply nested
//! and bomb changes, a flood of envelopes whose predecessors are missing,
//! forgeries and oversized envelopes and frames.
//!
//! Checked: nothing the member, the removed member or the forger sent takes
//! effect (the honest daemons' stores judged afresh at the end, their items
//! and quarantine lists); both honest daemons keep running, keep serving and
//! converge; their peak memory stays bounded. Measured and printed (never
//! asserted): how long an honest write takes to reach the other daemon
//! without and during the flood (`COFFER_HOSTILE_SAMPLES` samples each,
//! default 5), and the daemons' memory.

use std::collections::BTreeSet;
use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use coffer_crdt::envelope::ENVELOPE_VERSION;
use coffer_crdt::replica::Replica;
use coffer_crdt::{
    ChangeHeader, DeviceId, Envelope, EnvelopeBody, EnvelopeId, Kind, Outcome, SpaceId,
};
use coffer_daemon::net::protocol::{Message, MAX_FRAME_BYTES};
use coffer_daemon::store::Store;
use coffer_tests::hostile::{inflation_bomb, op_count_bomb, Hostile, Link};
use coffer_tests::{item_names, process_gone, str_field, Cli, Events, PIN};
use libp2p::Multiaddr;
use serde_json::Value;

use crate::sync::{addr, device_id, free_port, start_node, wait_until, SYNC_TIMEOUT};
use crate::team::{enrol, init_as};

const BOB: &str = "bob@example.com";
const MAL: &str = "mallory@example.com";
/// Envelopes in the flood.
const FLOOD: usize = 10_000;
/// Maps nested by the writer's deep change.
const DEPTH: usize = 20_000;
/// What the inflation bomb inflates to (the bound is 4 MiB).
const INFLATED: usize = 16 << 20;
/// Most a daemon's resident memory may peak at under attack.
const RSS_LIMIT_KIB: u64 = 1 << 20;

fn folder_id(cli: &Cli, name: &str) -> SpaceId {
    let members = cli.json(&["folder", "members", name, "--json"], "");
    SpaceId::from_hex(str_field(&members, "folder_id")).expect("a folder id")
}

fn share(a: &Cli, folder: &str, user: &str, role: &str) {
    a.ok(
        &["folder", "share", folder, "--user", user, "--role", role],
        "",
    );
}

/// `coffer sync status --json`'s entry for `space`.
fn space_status(cli: &Cli, space: &SpaceId) -> Value {
    let status = cli.json(&["sync", "status", "--json"], "");
    status["spaces"]
        .as_array()
        .expect("spaces")
        .iter()
        .find(|s| s["folder_id"] == space.to_hex())
        .cloned()
        .unwrap_or(Value::Null)
}

fn quarantined(status: &Value) -> BTreeSet<String> {
    status["quarantined"]
        .as_array()
        .map(|q| q.iter().map(|e| str_field(e, "id").to_string()).collect())
        .unwrap_or_default()
}

/// (VmRSS, VmHWM) of `pid` in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn multiaddr(port: u16) -> Multiaddr {
    addr(port).parse().expect("a multiaddr")
}

/// Envelopes `cli`'s daemon sent `peer` on its current connection.
fn envelopes_sent(cli: &Cli, peer: &DeviceId) -> u64 {
    let peers = cli.json(&["peers", "--json"], "");
    peers["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .find(|p| p["device_id"] == peer.to_hex())
        .and_then(|p| p["envelopes_sent"].as_u64())
        .unwrap_or(0)
}

/// Adds `n` items to Ops on A and times each until B's event says it
/// arrived: (time to the event from the start of `coffer add`, and from its
/// return).
fn propagation(a: &Cli, b_events: &Events, label: &str, n: usize) -> Vec<(Duration, Duration)> {
    (0..n)
        .map(|i| {
            let t0 = Instant::now();
            let item = a.add_login(&format!("{label}-{i}"), "honest-pw", &["--folder", "Ops"]);
            let t1 = Instant::now();
            let id = str_field(&item, "id").to_string();
            b_events.wait_for(SYNC_TIMEOUT, |e| {
                e["type"] == "item_changed" && e["item_id"] == id.as_str()
            });
            (t0.elapsed(), t1.elapsed())
        })
        .collect()
}

fn summary(label: &str, samples: &[(Duration, Duration)]) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut total: Vec<f64> = samples.iter().map(|s| ms(s.0)).collect();
    let mut after: Vec<f64> = samples.iter().map(|s| ms(s.1)).collect();
    total.sort_by(f64::total_cmp);
    after.sort_by(f64::total_cmp);
    let med = |v: &[f64]| v.get(v.len() / 2).copied().unwrap_or(0.0);
    let max = |v: &[f64]| v.last().copied().unwrap_or(0.0);
    format!(
        "{label}: {} writes A -> B, add+propagate median {:.0} ms max {:.0} ms; after `coffer add` returned median {:.0} ms max {:.0} ms",
        samples.len(),
        med(&total),
        max(&total),
        med(&after),
        max(&after)
    )
}

/// A forgery: an envelope claiming `author` (not the signer) at `seq`.
fn forged(mal: &Hostile, space: SpaceId, author: DeviceId, seq: u64) -> Envelope {
    Envelope::sign(
        EnvelopeBody {
            version: ENVELOPE_VERSION,
            space,
            author,
            seq,
            prev: Some(Hostile::random_id()),
            kind: Kind::Usage,
            context: vec![],
            epoch: None,
            change: None,
            payload: b"forged".to_vec(),
        },
        &mal.keys,
    )
}

/// Sends one batch that must make the daemon report `InvalidEnvelope` and
/// close the connection.
fn send_violation(link: &mut Link, msg: &Message, what: &str) {
    let _ = link.send(msg);
    assert!(
        link.wait_closed(Duration::from_secs(10)),
        "A closes the connection after {what}: {:?}",
        link.state()
    );
}

#[test]
fn issue_12_a_hostile_device_changes_nothing_and_honest_daemons_keep_serving() {
    let started = Instant::now();
    let lap = |what: &str| eprintln!("[{:>5.1}s] {what}", started.elapsed().as_secs_f64());
    let samples: usize = std::env::var("COFFER_HOSTILE_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);

    // Admin A, user B, and Mallory's device H, enrolled the real way.
    let (pa, pb, ph) = (free_port(), free_port(), free_port());
    let mut a = start_node(pa, &[]);
    let mut b = start_node(pb, &[pa]);
    let mut h = start_node(ph, &[pa]);
    init_as(&a, "Ada Admin", "ada@example.com");
    a.ok(&["team", "create", "Acme"], "");
    enrol(&a, pa, &b, BOB, &["--name", "Bob"]);
    enrol(&a, pa, &h, MAL, &["--name", "Mallory"]);
    for f in ["Ops", "Old", "Scratch", "Forks"] {
        a.ok(&["folder", "create", f], "");
    }
    share(&a, "Ops", BOB, "editor");
    share(&a, "Ops", MAL, "member");
    share(&a, "Old", MAL, "editor");
    share(&a, "Scratch", BOB, "editor");
    share(&a, "Scratch", MAL, "editor");
    share(&a, "Forks", BOB, "editor");
    share(&a, "Forks", MAL, "editor");
    a.add_login("db", "db-pw", &["--folder", "Ops"]);
    a.add_login("legacy", "legacy-pw", &["--folder", "Old"]);
    a.add_login("scratch", "scratch-pw", &["--folder", "Scratch"]);
    a.add_login("forks", "forks-pw", &["--folder", "Forks"]);
    wait_until(SYNC_TIMEOUT, "H reads Ops, Old and Scratch", || {
        item_names(&h, "Ops") == ["db"]
            && item_names(&h, "Old") == ["legacy"]
            && item_names(&h, "Scratch") == ["scratch"]
            && item_names(&h, "Forks") == ["forks"]
    });
    wait_until(SYNC_TIMEOUT, "B reads Ops and Scratch", || {
        item_names(&b, "Ops") == ["db"]
            && item_names(&b, "Scratch") == ["scratch"]
            && item_names(&b, "Forks") == ["forks"]
    });
    // Mallory leaves Old (a rotation H never sees: A no longer sends Old to H).
    a.ok(&["folder", "unshare", "Old", "--user", MAL], "");
    let (ops, old, scratch, forks) = (
        folder_id(&a, "Ops"),
        folder_id(&a, "Old"),
        folder_id(&a, "Scratch"),
        folder_id(&a, "Forks"),
    );
    let a_dev = DeviceId::from_hex(&device_id(&a)).expect("a device id");
    let b_dev = DeviceId::from_hex(&device_id(&b)).expect("a device id");
    lap("team set up: Mallory is a Folder Member of Ops, Editor of Scratch, removed from Old");

    // H's daemon stops; its identity is Mallory's now.
    let h_dev = device_id(&h);
    h.stop();
    let mut mal = Hostile::open(h.data_dir(), PIN);
    let team = mal.replica().team_id().expect("H is in a team");
    assert_eq!(mal.device().to_hex(), h_dev);

    // Honest propagation with nobody attacking.
    let b_events = Events::start_synced(&b);
    let calm = propagation(&a, &b_events, "calm", samples);
    let rss_calm = (rss_kib(a.pid()), rss_kib(b.pid()));
    lap(&summary("without attack", &calm));

    let ops_items_before = space_status(&a, &ops)["items_digest"].clone();
    let old_items_before = space_status(&a, &old)["items_digest"].clone();

    // ---- Phase 1: the targeted attacks, on one connection to A and one to B.
    let mut to_a = mal.connect(&multiaddr(pa));
    to_a.send(&mal.hello_for(a_dev)).expect("hello A");
    let mut to_b = mal.connect(&multiaddr(pb));
    to_b.send(&mal.hello_for(b_dev)).expect("hello B");
    // Envelopes that must never take effect anywhere.
    let mut refused: Vec<(&str, SpaceId, EnvelopeId)> = Vec::new();

    // A Folder Member writes an item, then equivocates (two items at one slot).
    let ops_s = mal.space(&ops);
    let (seq, prev) = mal.next_slot(&ops_s);
    let write = mal.item_envelope(&ops_s, seq, prev, "planted-by-member", "evil-1");
    let fork_l = mal.item_envelope(&ops_s, seq + 1, Some(write.id()), "member-fork-l", "evil-2");
    let fork_r = mal.item_envelope(&ops_s, seq + 1, Some(write.id()), "member-fork-r", "evil-3");
    to_a.send_envelopes(ops, &[write.clone(), fork_l.clone()])
        .expect("send to A");
    to_b.send_envelopes(ops, &[write.clone(), fork_r.clone()])
        .expect("send to B");
    refused.push(("member write", ops, write.id()));
    refused.push(("member fork (to A)", ops, fork_l.id()));
    refused.push(("member fork (to B)", ops, fork_r.id()));

    // The removed member writes to Old with the key it still holds.
    let old_s = mal.space(&old);
    let (seq, prev) = mal.next_slot(&old_s);
    let late = mal.item_envelope(&old_s, seq, prev, "planted-after-removal", "evil-4");
    to_a.send_envelopes(old, std::slice::from_ref(&late))
        .expect("send to A");
    refused.push(("removed member write", old, late.id()));

    // A writer equivocates in Forks: one branch to each daemon.
    let forks_s = mal.space(&forks);
    let (seq, prev) = mal.next_slot(&forks_s);
    let left = mal.item_envelope(&forks_s, seq, prev, "writer-fork-l", "w-l");
    let right = mal.item_envelope(&forks_s, seq, prev, "writer-fork-r", "w-r");
    to_a.send_envelopes(forks, std::slice::from_ref(&left))
        .expect("send to A");
    to_b.send_envelopes(forks, std::slice::from_ref(&right))
        .expect("send to B");

    // A writer's deeply nested change, then an op-count bomb and an
    // inflation bomb on top of it, in Scratch.
    let scratch_s = mal.space(&scratch);
    let (seq, prev) = mal.next_slot(&scratch_s);
    let nested = mal.nested_change(&scratch_s, DEPTH);
    let header = mal.header_of(&scratch_s, &nested);
    let deep = mal.envelope(
        &scratch_s,
        seq,
        prev,
        Kind::Content,
        Some(header.clone()),
        &nested,
    );
    // The bombs' headers continue the writer's Automerge seqs.
    let bomb_header = |n: u64, dep: EnvelopeId| ChangeHeader {
        incarnation: header.incarnation,
        seq: header.seq + n,
        deps: vec![dep],
    };
    let op_bomb = mal.envelope(
        &scratch_s,
        seq + 1,
        Some(deep.id()),
        Kind::Content,
        Some(bomb_header(1, deep.id())),
        &op_count_bomb(),
    );
    let zip_bomb = mal.envelope(
        &scratch_s,
        seq + 2,
        Some(op_bomb.id()),
        Kind::Content,
        Some(bomb_header(2, op_bomb.id())),
        &inflation_bomb(INFLATED),
    );
    eprintln!(
        "writer's changes: nested {} bytes ({DEPTH} maps), op-count bomb {} bytes, inflation bomb {} bytes (inflates to {} MiB)",
        deep.wire_len(),
        op_bomb.wire_len(),
        zip_bomb.wire_len(),
        INFLATED >> 20
    );
    to_a.send_envelopes(scratch, &[deep.clone(), op_bomb.clone(), zip_bomb.clone()])
        .expect("send to A");

    // A replayer: everything H ever held, to both.
    for space in [team, ops, old, scratch, forks] {
        // A folder holds its team's roster envelopes too: each to its space.
        let held: Vec<Envelope> = mal
            .space(&space)
            .held()
            .filter(|e| e.space() == space)
            .cloned()
            .collect();
        to_a.send_envelopes(space, &held).expect("replay to A");
        to_b.send_envelopes(space, &held).expect("replay to B");
    }
    lap("phase 1 sent: member write and fork, removed write, writer fork, nested change, bombs, replay");

    // Both daemons converge on every space, and what the member and the
    // removed member wrote is quarantined (or not kept at all).
    for space in [ops, scratch, forks] {
        wait_until(SYNC_TIMEOUT, "A and B converge", || {
            let (sa, sb) = (space_status(&a, &space), space_status(&b, &space));
            sa["digest"] == sb["digest"] && sa["items_digest"] == sb["items_digest"]
        });
    }
    let q_ops = quarantined(&space_status(&a, &ops));
    for env in [&write, &fork_l, &fork_r] {
        assert!(
            q_ops.contains(&env.id().to_hex()),
            "A quarantines the member's write {}: {q_ops:?}",
            env.id().short()
        );
    }
    assert_eq!(
        space_status(&a, &ops)["items_digest"],
        ops_items_before,
        "Ops reads as before on A"
    );
    assert_eq!(
        space_status(&a, &old)["items_digest"],
        old_items_before,
        "Old reads as before on A"
    );
    assert_eq!(item_names(&a, "Old"), ["legacy"]);
    // The writer's nested change reads as no item, the bombs as nothing.
    assert_eq!(item_names(&a, "Scratch"), ["scratch"]);
    assert_eq!(item_names(&b, "Scratch"), ["scratch"]);
    // Two changes at one Automerge seq: both quarantined (docs/security.md
    // section 4, step 6), on both daemons alike.
    assert_eq!(item_names(&a, "Forks"), ["forks"]);
    assert_eq!(item_names(&b, "Forks"), ["forks"]);
    for (who, cli) in [("A", &a), ("B", &b)] {
        let q = quarantined(&space_status(cli, &forks));
        for env in [&left, &right] {
            assert!(
                q.contains(&env.id().to_hex()),
                "{who} quarantines {}: {q:?}",
                env.id().short()
            );
        }
    }
    refused.push(("writer fork (to A)", forks, left.id()));
    refused.push(("writer fork (to B)", forks, right.id()));
    let quarantine_view = space_status(&a, &ops);
    lap(&format!(
        "phase 1 judged: Ops on A holds {} envelopes, {} quarantined; A's link: {:?}",
        quarantine_view["envelopes"],
        quarantine_view["quarantined"]
            .as_array()
            .map_or(0, Vec::len),
        to_a.state()
    ));

    // ---- Phase 2: a flood of envelopes whose predecessors nobody holds,
    // while A keeps writing.
    let flood: Vec<Envelope> = (0..FLOOD as u64)
        .map(|i| {
            mal.envelope(
                &ops_s,
                1_000_000 + i,
                Some(Hostile::random_id()),
                Kind::Usage,
                None,
                b"flood",
            )
        })
        .collect();
    let flood_ids: Vec<EnvelopeId> = flood.iter().map(Envelope::id).collect();
    let flooding = thread::spawn(move || {
        let t0 = Instant::now();
        let sent = to_a.send_envelopes(ops, &flood);
        (to_a, sent, t0.elapsed())
    });
    let attacked = propagation(&a, &b_events, "attacked", samples);
    let (mut to_a, flood_sent, flood_took) = flooding.join().expect("the flood thread");
    flood_sent.expect("A reads the whole flood");
    lap(&format!(
        "phase 2: {FLOOD} envelopes with missing predecessors sent in {:.1} s",
        flood_took.as_secs_f64()
    ));
    lap(&summary("during the flood", &attacked));
    wait_until(
        SYNC_TIMEOUT,
        "A and B converge on Ops after the flood",
        || {
            let (sa, sb) = (space_status(&a, &ops), space_status(&b, &ops));
            sa["digest"] == sb["digest"] && sa["items_digest"] == sb["items_digest"]
        },
    );
    let ops_a = space_status(&a, &ops);
    eprintln!(
        "Ops on A after the flood: {} envelopes ({} bytes), {} pending",
        ops_a["envelopes"], ops_a["envelope_bytes"], ops_a["pending"]
    );

    // ---- Phase 3: forgeries and oversized input, each ending a connection.
    send_violation(
        &mut to_a,
        &Message::Envelopes {
            space: ops,
            envelopes: vec![forged(&mal, ops, b_dev, 7).to_bytes()],
        },
        "an envelope signed for B's device by Mallory's key",
    );
    assert!(
        to_a.state()
            .errors
            .iter()
            .any(|e| e.contains("InvalidEnvelope")),
        "{:?}",
        to_a.state()
    );
    refused.push(("forged author", ops, forged(&mal, ops, b_dev, 7).id()));

    let mut link = mal.connect(&multiaddr(pa));
    link.send(&mal.hello_for(a_dev)).expect("hello");
    let (seq, _) = mal.next_slot(&ops_s);
    let own = mal.envelope(
        &ops_s,
        seq + 5,
        Some(Hostile::random_id()),
        Kind::Usage,
        None,
        b"x",
    );
    let mut flipped = own.to_bytes();
    *flipped.last_mut().expect("bytes") ^= 1;
    send_violation(
        &mut link,
        &Message::Envelopes {
            space: ops,
            envelopes: vec![flipped],
        },
        "an envelope with a broken signature",
    );
    refused.push(("broken signature", ops, own.id()));

    let mut link = mal.connect(&multiaddr(pa));
    link.send(&mal.hello_for(a_dev)).expect("hello");
    let big = mal.envelope(
        &ops_s,
        seq + 6,
        Some(Hostile::random_id()),
        Kind::Usage,
        None,
        &vec![7u8; (1 << 20) + 1024],
    );
    send_violation(
        &mut link,
        &Message::Envelopes {
            space: ops,
            envelopes: vec![big.to_bytes()],
        },
        "an envelope over 1 MiB",
    );
    refused.push(("oversized envelope", ops, big.id()));

    let mut link = mal.connect(&multiaddr(pa));
    link.send(&mal.hello_for(a_dev)).expect("hello");
    let mut frame = ((MAX_FRAME_BYTES + 1) as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&[0; 4096]);
    let _ = link.send_raw(&frame);
    assert!(
        link.wait_closed(Duration::from_secs(10)),
        "A closes the connection after a frame over 2 MiB: {:?}",
        link.state()
    );
    drop(link);
    lap("phase 3: forged author, broken signature, oversized envelope and frame: each connection closed");

    // ---- The honest daemons still serve, both ways.
    assert!(!process_gone(a.pid()) && !process_gone(b.pid()));
    // The flood's envelopes stay pending for good. A session remembers
    // every envelope above a gap that its peer holds (it remembered 64
    // heads of a chain, and each honest write re-sent the other ~9,900).
    let sent_before = envelopes_sent(&a, &b_dev);
    let after = propagation(&a, &b_events, "after", samples);
    thread::sleep(Duration::from_millis(500));
    let resent = envelopes_sent(&a, &b_dev) - sent_before;
    eprintln!(
        "{samples} honest write(s) after the flood: A sent B {resent} envelopes ({} per write)",
        resent / samples.max(1) as u64
    );
    assert!(
        resent <= 4 * samples as u64,
        "honest writes after the flood sent it again: {resent} envelopes for {samples} writes"
    );
    let back = b.add_login("from-bob", "bob-pw", &["--folder", "Ops"]);
    wait_until(SYNC_TIMEOUT, "B's write reaches A", || {
        item_names(&a, "Ops").contains(&"from-bob".to_string())
    });
    assert!(back["id"].is_string());
    lap(&summary("after the attack", &after));
    let mut expected: Vec<String> = vec!["db".into(), "from-bob".into()];
    for i in 0..samples {
        expected.push(format!("calm-{i}"));
        expected.push(format!("attacked-{i}"));
        expected.push(format!("after-{i}"));
    }
    expected.sort();
    assert_eq!(item_names(&a, "Ops"), expected);
    assert_eq!(item_names(&b, "Ops"), expected);

    let rss_after = (rss_kib(a.pid()), rss_kib(b.pid()));
    eprintln!(
        "memory (VmRSS / VmHWM, MiB): A {} / {} before the attack, {} / {} after; B {} / {} before, {} / {} after",
        rss_calm.0 .0 / 1024,
        rss_calm.0 .1 / 1024,
        rss_after.0 .0 / 1024,
        rss_after.0 .1 / 1024,
        rss_calm.1 .0 / 1024,
        rss_calm.1 .1 / 1024,
        rss_after.1 .0 / 1024,
        rss_after.1 .1 / 1024,
    );
    for (who, (_, hwm)) in [("A", rss_after.0), ("B", rss_after.1)] {
        assert!(hwm < RSS_LIMIT_KIB, "{who}'s memory peaked at {hwm} KiB");
    }

    // ---- Judged afresh from each honest daemon's store: nothing refused
    // took effect, and the flood is pending (or not kept).
    drop(b_events);
    a.stop();
    b.stop();
    for (who, daemon) in [("A", &a), ("B", &b)] {
        let store = Store::open(&daemon.data_dir().join("vault.sqlite3")).expect("open a store");
        let replica = Replica::load(
            mal.replica().identity().clone(),
            store.load_spaces().expect("spaces"),
            vec![],
        );
        for (what, space, id) in &refused {
            let outcome = replica.space(space).and_then(|s| s.outcome_of(id));
            assert!(
                !matches!(outcome, Some(Outcome::Accepted)),
                "{who} accepted the {what}"
            );
        }
        let ops_space = replica.space(&ops).expect("Ops");
        let flood_accepted = flood_ids
            .iter()
            .filter(|id| ops_space.is_accepted(id))
            .count();
        assert_eq!(flood_accepted, 0, "{who} accepted part of the flood");
        eprintln!(
            "{who}: Ops holds {} envelopes, {} pending",
            ops_space.held().count(),
            ops_space.pending_count()
        );
        // The writer's changes are accepted by the rule (it may write
        // there); the document skips the bombs.
        let scratch_space = replica.space(&scratch).expect("Scratch");
        for (what, env) in [
            ("nested change", &deep),
            ("op-count bomb", &op_bomb),
            ("inflation bomb", &zip_bomb),
        ] {
            eprintln!(
                "{who}: the writer's {what}: {:?}",
                scratch_space.outcome_of(&env.id())
            );
        }
    }
    lap("stores judged afresh");

    // Both restart and unlock with all of it held: their folders open.
    for (who, daemon) in [("A", &mut a), ("B", &mut b)] {
        daemon.spawn();
        daemon.unlock();
        assert_eq!(item_names(daemon, "Scratch"), ["scratch"], "{who}");
        assert_eq!(item_names(daemon, "Ops"), expected, "{who}");
    }
    lap("A and B restarted and unlocked");
}
