//! The audit trail on whole replicas (issue 13): a member's records reach
//! the admin's device and the member's own, not another member's; the
//! admin reads them, the chains verify clean; a forged record is refused.

use coffer_crdt::audit::{self, Action, AuditEvent, Row};
use coffer_crdt::ops::Role;
use coffer_crdt::replica::SyncMessage;
use coffer_crdt::SpaceId;

use crate::harness::rng;
use crate::net::World;

fn append(w: &mut World, i: usize, action: Action, item: &str) {
    append_in(w, i, action, item, None);
}

fn append_in(w: &mut World, i: usize, action: Action, item: &str, folder: Option<SpaceId>) {
    let event = AuditEvent {
        item_name: Some(item.into()),
        field: Some("password".into()),
        folder,
        ..AuditEvent::new("", action)
    };
    let stored: Vec<_> = w.nodes[i]
        .store
        .audit
        .iter()
        .map(|r| r.record.clone())
        .collect();
    let me = w.nodes[i].id();
    w.nodes[i]
        .replica
        .audit_append(event, 1_000, &mut w.rng, || {
            let mine: Vec<_> = stored.iter().filter(|r| r.device() == me).collect();
            let last = mine.iter().max_by_key(|r| r.seq()).map(|r| (*r).clone());
            let key = mine
                .iter()
                .filter(|r| matches!(r.body().body, audit::Body::Key { .. }))
                .max_by_key(|r| r.seq())
                .map(|r| (*r).clone());
            (last, key)
        })
        .unwrap();
    w.nodes[i].drain();
}

fn rows(w: &World, i: usize) -> Vec<Row> {
    w.nodes[i]
        .store
        .audit
        .iter()
        .map(|r| Row {
            device: r.record.device(),
            seq: r.record.seq(),
            bytes: r.record.bytes().to_vec(),
        })
        .collect()
}

#[test]
fn records_reach_the_admin_and_the_writer_only() {
    let mut w = World::new(&["ada", "bob", "cyd"], rng(131));
    w.found_team(0, 0, &[]);
    w.admit(0, 1, &[]);
    w.admit(0, 2, &[]);
    w.settle();
    append(&mut w, 1, Action::TotpShow, "GitHub");
    append(&mut w, 1, Action::Copy, "AWS root");
    append(&mut w, 2, Action::Reveal, "Bank");
    w.settle();
    let bob = w.nodes[1].id();
    let cyd = w.nodes[2].id();
    // The admin holds both members' chains, and they verify clean.
    let ada_rows = rows(&w, 0);
    assert!(ada_rows.iter().any(|r| r.device == bob));
    assert!(ada_rows.iter().any(|r| r.device == cyd));
    let reports = audit::verify(ada_rows);
    assert!(reports.iter().all(|r| r.findings.is_empty()), "{reports:?}");
    // Bob's store holds no record of Cyd's, and Cyd's none of Bob's.
    assert!(rows(&w, 1).iter().all(|r| r.device != cyd));
    assert!(rows(&w, 2).iter().all(|r| r.device != bob));
    // The admin reads Bob's events, with Bob's email.
    let held: Vec<_> = w.nodes[0]
        .store
        .audit
        .iter()
        .filter(|r| r.record.device() == bob)
        .map(|r| r.record.clone())
        .collect();
    let store = w.nodes[0].store.audit.clone();
    let opened = w.nodes[0]
        .replica
        .audit_open(held, |d, s| {
            store
                .iter()
                .find(|r| r.record.device() == d && r.record.seq() == s)
                .map(|r| r.record.clone())
        })
        .unwrap();
    let events: Vec<_> = opened.iter().filter_map(|o| o.event.clone()).collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].action, Action::TotpShow);
    assert_eq!(events[0].user, "bob@net.test");
    assert_eq!(events[1].item_name.as_deref(), Some("AWS root"));
    assert!(w.nodes[0]
        .store
        .audit
        .iter()
        .filter(|r| r.record.device() == bob)
        .all(|r| r.user == "bob@net.test"));
}

#[test]
fn a_record_with_a_bad_signature_cuts_the_peer_off_and_changes_nothing() {
    let mut w = World::new(&["ada", "bob"], rng(132));
    w.found_team(0, 0, &[]);
    w.admit(0, 1, &[]);
    w.settle();
    append(&mut w, 1, Action::Copy, "x");
    let mut bytes = w.nodes[1].store.audit[1].record.bytes().to_vec();
    let at = bytes.len() - 3;
    bytes[at] ^= 0x40;
    let before = w.nodes[0].store.audit.len();
    let bob = w.nodes[1].id();
    let result = w.nodes[0].replica.handle_message(
        bob,
        SyncMessage::AuditRecords {
            records: vec![bytes],
        },
        &mut w.rng,
    );
    assert_eq!(
        result,
        Err(coffer_crdt::replica::ProtocolViolation::InvalidEnvelopes(1)),
        "a forged record is a violation"
    );
    w.nodes[0].drain();
    assert_eq!(w.nodes[0].store.audit.len(), before);
}

/// A record about a folder reaches its Folder Manager, who reads it and no
/// other record of the writer's; an Item Manager of the folder reads none.
#[test]
fn a_folder_manager_reads_the_records_about_their_folder() {
    let mut w = World::new(&["ada", "bob", "cyd", "dan"], rng(133));
    w.found_team(0, 0, &[]);
    for i in 1..4 {
        w.admit(0, i, &[]);
    }
    w.settle();
    let infra = w.nodes[0]
        .replica
        .create_folder("Infra", 5, &mut w.rng)
        .unwrap()
        .id;
    for (i, role) in [(1, Role::Manager), (2, Role::Member), (3, Role::Editor)] {
        w.share(0, "Infra", i, role);
    }
    w.settle();
    // Bob and Cyd never meet: Cyd's records reach Bob through Ada.
    w.cut.insert((1, 2));
    w.disconnect(1, 2);
    append(&mut w, 2, Action::Unlock, "");
    append_in(&mut w, 2, Action::Reveal, "db", Some(infra));
    append(&mut w, 2, Action::Reveal, "Bank");
    w.settle();
    let cyd = w.nodes[2].id();
    let held = |w: &World, i: usize| -> Vec<audit::Record> {
        let by_seq: std::collections::BTreeMap<u64, audit::Record> = w.nodes[i]
            .store
            .audit
            .iter()
            .filter(|r| r.record.device() == cyd)
            .map(|r| (r.record.seq(), r.record.clone()))
            .collect();
        by_seq.into_values().collect()
    };
    let ada = held(&w, 0);
    let bob = held(&w, 1);
    assert_eq!(bob.len(), ada.len(), "Bob holds Cyd's whole chain");
    assert!(held(&w, 3).is_empty(), "an Item Manager holds none of it");
    let keys = w.nodes[1].keys.clone();
    let opened: Vec<AuditEvent> = bob.iter().filter_map(|r| r.open_shared(&keys)).collect();
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert_eq!(opened[0].item_name.as_deref(), Some("db"));
    assert_eq!(opened[0].folder, Some(infra));
    let reports = audit::verify(rows(&w, 1));
    assert!(reports.iter().all(|r| r.findings.is_empty()), "{reports:?}");
}
