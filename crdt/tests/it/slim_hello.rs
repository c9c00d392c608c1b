//! Sync hellos that do not grow with every space (issue 18): on
//! `/coffer/sync/3` two devices in sync exchange one digest each and no
//! chain heads; one space that differs gets its heads exchanged, alone; on
//! `/coffer/sync/2` the hello is today's, every head of every space.

use coffer_crdt::ops::{Principal, Role};
use coffer_crdt::replica::{ShareChange, SyncMessage, SyncWire};
use coffer_crdt::SpaceId;

use crate::harness::rng;
use crate::net::{Wires, World};
use crate::replica::add;

const FOLDERS: [&str; 4] = ["F0", "F1", "F2", "F3"];

/// Ada (admin) and Bob in a team, four folders shared with Bob as
/// editor, one item in each, synced over `wire`.
fn team(wire: SyncWire) -> World {
    let mut w = World::new(&["ada", "bob"], rng(77));
    w.wires = Wires::All(wire);
    w.found_team(0, 0, &[]);
    w.admit(0, 1, &[]);
    let bob = w.nodes[1].user();
    for f in FOLDERS {
        w.nodes[0].replica.create_folder(f, 5, &mut w.rng).unwrap();
        w.nodes[0]
            .replica
            .folder_share(
                f,
                Principal::User(bob.clone()),
                ShareChange::Share(Role::Editor),
                &mut w.rng,
            )
            .unwrap();
        w.nodes[0].drain();
        add(&mut w, 0, f, &format!("{f}-item"));
    }
    w.settle();
    for f in FOLDERS {
        assert_eq!(w.nodes[1].names(f), [format!("{f}-item")]);
    }
    w
}

/// Cuts the link, runs `offline` on the world, joins it again and returns
/// every message of the new connection.
fn reconnect_after(
    w: &mut World,
    offline: impl FnOnce(&mut World),
) -> Vec<(usize, usize, SyncMessage)> {
    w.cut.insert((0, 1));
    w.settle();
    offline(w);
    w.settle();
    w.cut.clear();
    w.log = Some(Vec::new());
    w.settle();
    w.log.take().unwrap_or_default()
}

/// The spaces whose heads went out in `msgs` (hellos, summaries, tips).
fn spaces_with_heads(msgs: &[(usize, usize, SyncMessage)]) -> Vec<SpaceId> {
    let mut out = Vec::new();
    for (_, _, m) in msgs {
        if let SyncMessage::Hello { spaces, .. }
        | SyncMessage::Summary { spaces }
        | SyncMessage::Tips { spaces } = m
        {
            out.extend(
                spaces
                    .iter()
                    .filter(|s| !s.tips.is_empty())
                    .map(|s| s.space),
            );
        }
    }
    out
}

#[test]
fn peers_in_sync_on_v3_exchange_no_heads_and_no_envelopes() {
    let mut w = team(SyncWire::V3);
    let msgs = reconnect_after(&mut w, |_| {});
    let hellos = msgs
        .iter()
        .filter(|(_, _, m)| matches!(m, SyncMessage::HelloDigest { .. }))
        .count();
    assert_eq!(hellos, 2, "{msgs:?}");
    assert!(spaces_with_heads(&msgs).is_empty(), "{msgs:?}");
    for (_, _, m) in &msgs {
        assert!(
            matches!(
                m,
                SyncMessage::HelloDigest { .. }
                    | SyncMessage::Caught { .. }
                    | SyncMessage::AuditHeads { .. }
            ),
            "in sync, yet {m:?}"
        );
    }
    // Both computed one digest of the same heads.
    let (ada, bob) = (w.nodes[0].id(), w.nodes[1].id());
    assert_eq!(
        w.nodes[0].replica.sync_digest(&bob),
        w.nodes[1].replica.sync_digest(&ada)
    );
}

#[test]
fn one_space_that_differs_on_v3_gets_its_heads_exchanged_alone() {
    let mut w = team(SyncWire::V3);
    let f2 = w.nodes[0].replica.resolve_folder(Some("F2")).unwrap();
    let msgs = reconnect_after(&mut w, |w| add(w, 0, "F2", "offline"));
    let with_heads = spaces_with_heads(&msgs);
    assert!(!with_heads.is_empty(), "{msgs:?}");
    assert!(with_heads.iter().all(|s| *s == f2), "{msgs:?}");
    for (_, _, m) in &msgs {
        assert!(
            !matches!(m, SyncMessage::Hello { .. } | SyncMessage::Summary { .. }),
            "{m:?}"
        );
        if let SyncMessage::Envelopes { space, .. } = m {
            assert_eq!(*space, f2, "only F2's envelopes move");
        }
    }
    assert!(msgs
        .iter()
        .any(|(_, _, m)| matches!(m, SyncMessage::SpaceDigests { .. })));
    let mut names = w.nodes[1].names("F2");
    names.sort();
    assert_eq!(names, ["F2-item", "offline"]);
}

#[test]
fn both_sides_changed_on_v3_and_each_gets_what_it_lacks() {
    let mut w = team(SyncWire::V3);
    let msgs = reconnect_after(&mut w, |w| {
        add(w, 0, "F1", "by-ada");
        add(w, 1, "F3", "by-bob");
    });
    let f1 = w.nodes[0].replica.resolve_folder(Some("F1")).unwrap();
    let f3 = w.nodes[0].replica.resolve_folder(Some("F3")).unwrap();
    assert!(spaces_with_heads(&msgs)
        .iter()
        .all(|s| *s == f1 || *s == f3));
    for i in 0..2 {
        let mut n1 = w.nodes[i].names("F1");
        n1.sort();
        assert_eq!(n1, ["F1-item", "by-ada"]);
        let mut n3 = w.nodes[i].names("F3");
        n3.sort();
        assert_eq!(n3, ["F3-item", "by-bob"]);
    }
}

#[test]
fn a_v2_connection_sends_todays_hello_with_every_head() {
    let mut w = team(SyncWire::V2);
    let bob = w.nodes[1].id();
    let shared = w.nodes[0].replica.shared_with(&bob);
    assert_eq!(
        shared.len(),
        1 + FOLDERS.len(),
        "the roster and four folders"
    );
    let msgs = reconnect_after(&mut w, |_| {});
    let (_, _, first) = msgs
        .iter()
        .find(|(from, _, _)| *from == 0)
        .expect("ada spoke");
    let SyncMessage::Hello { version, spaces } = first else {
        panic!("not today's hello: {first:?}");
    };
    assert_eq!(*version, coffer_crdt::replica::SYNC_VERSION);
    let listed: Vec<SpaceId> = spaces.iter().map(|s| s.space).collect();
    assert_eq!(listed, shared);
    assert!(spaces.iter().all(|s| !s.tips.is_empty()));
    assert!(!msgs.iter().any(|(_, _, m)| matches!(
        m,
        SyncMessage::HelloDigest { .. }
            | SyncMessage::SpaceDigests { .. }
            | SyncMessage::Tips { .. }
    )));
}

/// A side that found the digests equal (it took in nothing since) and one
/// that found them different (it wrote just after its hello) still end in
/// sync: the first answers the other's `SpaceDigests` and `Tips`.
#[test]
fn digests_that_raced_a_write_still_converge() {
    let mut w = team(SyncWire::V3);
    w.cut.insert((0, 1));
    w.settle();
    w.cut.clear();
    // Connect and let only the hellos leave, then Ada writes.
    w.reconnect();
    let (ada, bob) = (w.nodes[0].id(), w.nodes[1].id());
    let hello_a = w.nodes[0].replica.poll_transmit(&bob).unwrap();
    let hello_b = w.nodes[1].replica.poll_transmit(&ada).unwrap();
    assert!(matches!(hello_a, SyncMessage::HelloDigest { .. }));
    add(&mut w, 0, "F0", "raced");
    w.nodes[1]
        .replica
        .handle_message(ada, hello_a, &mut w.rng)
        .unwrap();
    w.nodes[0]
        .replica
        .handle_message(bob, hello_b, &mut w.rng)
        .unwrap();
    w.nodes[0].drain();
    w.nodes[1].drain();
    w.nodes[0].wakes.insert(bob);
    w.nodes[1].wakes.insert(ada);
    w.settle();
    let mut names = w.nodes[1].names("F0");
    names.sort();
    assert_eq!(names, ["F0-item", "raced"]);
}

/// A replica rebuilt mid-session (cofferd reloads it after a failed write
/// and tells it of its peers again) greets the peer again; the peer
/// answers with `SpaceDigests` or `Tips` and no hello of its own: the
/// rebuilt side takes that as the peer's hello, and the two sync on.
#[test]
fn a_replica_rebuilt_mid_session_on_v3_syncs_on() {
    let mut w = team(SyncWire::V3);
    let bob = w.nodes[1].id();
    add(&mut w, 0, "F1", "before-rebuild");
    w.settle();
    add(&mut w, 1, "F3", "bob-while-rebuilt");
    w.nodes[0].replica.peer_connected_on(bob, SyncWire::V3);
    w.nodes[0].drain();
    w.settle();
    add(&mut w, 0, "F0", "after-rebuild");
    add(&mut w, 1, "F2", "bob-after");
    w.settle();
    let has =
        |w: &World, i: usize, f: &str, name: &str| w.nodes[i].names(f).contains(&name.to_string());
    assert!(has(&w, 1, "F1", "before-rebuild"));
    assert!(has(&w, 1, "F0", "after-rebuild"));
    assert!(has(&w, 0, "F3", "bob-while-rebuilt"));
    assert!(has(&w, 0, "F2", "bob-after"));
}
