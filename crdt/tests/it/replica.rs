//! Whole replicas (issue 11): the two defects of the daemon's own replica,
//! shown fixed on the one the daemon now runs, for every removal path.

use std::collections::BTreeMap;

use coffer_crdt::folder::{ItemEdit, ItemType};
use coffer_crdt::ops::{Principal, Role};
use coffer_crdt::replica::{GroupChange, ItemQuery, NewItemSpec, ShareChange, Skip, SyncMessage};
use coffer_crdt::{
    ChangeHeader, ChangeMeta, EnvelopeId, ItemId, Outcome, Replica, ReplicaError, Space, SpaceId,
};

use crate::harness::{doc_as, force_content_as, rng};
use crate::net::World;

/// Adds a login `name` (password `pw-NAME`) to `folder` on node `i`.
pub fn add(w: &mut World, i: usize, folder: &str, name: &str) {
    let spec = NewItemSpec {
        folder: Some(folder.into()),
        item_type: ItemType::Login,
        name: name.into(),
        fields: [("password".to_string(), format!("pw-{name}"))].into(),
        urls: vec![],
    };
    w.nodes[i]
        .replica
        .add_item(spec, 10, &mut w.rng)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    w.nodes[i].drain();
}

/// How the user Bob (node 1) loses access to the folder Ops.
#[derive(Clone, Copy, Debug)]
enum Removal {
    UserRemove,
    GroupRemove,
    DeviceRevoke,
    Unshare,
}

/// Admin Ada (0), Bob (1) in group "it", Cyd (2) in "it"; Ops shared with
/// "it" as editors (Bob also directly, for the user and device paths).
fn team() -> World {
    let mut w = World::new(&["ada", "bob", "cyd", "dan"], rng(41));
    w.found_team(0, 0, &["it"]);
    w.admit(0, 1, &["it"]);
    w.admit(0, 2, &["it"]);
    w.nodes[0]
        .replica
        .create_folder("Ops", 5, &mut w.rng)
        .unwrap();
    w.nodes[0]
        .replica
        .folder_share(
            "Ops",
            Principal::Group("it".into()),
            ShareChange::Share(Role::Editor),
            &mut w.rng,
        )
        .unwrap();
    w.nodes[0].drain();
    add(&mut w, 0, "Ops", "old");
    w.settle();
    w
}

fn remove_bob(w: &mut World, how: Removal) -> Vec<coffer_crdt::SpaceId> {
    let bob = w.nodes[1].user().0.clone();
    let change = match how {
        Removal::UserRemove => w.nodes[0].replica.remove_user(&bob, &mut w.rng),
        Removal::GroupRemove => {
            w.nodes[0]
                .replica
                .group_change("it", GroupChange::Remove(&bob), &mut w.rng)
        }
        Removal::DeviceRevoke => {
            let d = w.nodes[1].id();
            w.nodes[0].replica.revoke_device(d, &mut w.rng)
        }
        Removal::Unshare => {
            // Bob is a member only through the group: unshare the group and
            // share again with Cyd alone.
            let r = w.nodes[0].replica.folder_share(
                "Ops",
                Principal::Group("it".into()),
                ShareChange::Unshare,
                &mut w.rng,
            );
            let cyd = w.nodes[2].user();
            w.nodes[0]
                .replica
                .folder_share(
                    "Ops",
                    Principal::User(cyd),
                    ShareChange::Share(Role::Editor),
                    &mut w.rng,
                )
                .unwrap();
            r
        }
    }
    .unwrap();
    w.nodes[0].drain();
    change.rotated
}

#[test]
fn every_removal_rotates_and_everyone_left_reads_old_and_new_after_lock_and_restart() {
    for how in [
        Removal::UserRemove,
        Removal::GroupRemove,
        Removal::DeviceRevoke,
        Removal::Unshare,
    ] {
        let mut w = team();
        assert_eq!(w.nodes[1].names("Ops"), ["old"], "{how:?}: Bob read it");
        let ops = w.nodes[0].replica.resolve_folder(Some("Ops")).unwrap();
        let epochs = w.nodes[0].replica.folder_members("Ops").unwrap().epochs;
        let rotated = remove_bob(&mut w, how);
        assert_eq!(rotated, vec![ops], "{how:?}: the remover rotates Ops");
        assert_eq!(
            w.nodes[0].replica.folder_members("Ops").unwrap().epochs,
            epochs + 1,
            "{how:?}"
        );
        add(&mut w, 0, "Ops", "new");
        // Dan joins after the rotation, into "it" (unshare: shared directly).
        w.admit(0, 3, &["it"]);
        if matches!(how, Removal::Unshare) {
            w.share(0, "Ops", 3, Role::Member);
        }
        w.settle();
        // Bob holds no key of the new epoch: neither on his device (what
        // he received) nor with his keys against the remover's state.
        let space = w.nodes[0].replica.space(&ops).unwrap();
        let current = space.current_epoch().unwrap();
        assert!(
            space.epoch_key(&w.nodes[1].keys, &current).is_err(),
            "{how:?}: Bob can open the new epoch"
        );
        assert!(
            !w.nodes[1].names("Ops").contains(&"new".to_string()),
            "{how:?}: Bob read what followed"
        );
        for i in [0, 2, 3] {
            assert_eq!(w.nodes[i].names("Ops"), ["new", "old"], "{how:?} node {i}");
            // Lock/unlock, then a restart from what was persisted.
            w.nodes[i]
                .replica
                .lock(coffer_crdt::replica::LockReason::Request);
            let keys = w.nodes[i].keys.clone();
            w.nodes[i].replica.unlock(keys, &mut w.rng).unwrap();
            w.nodes[i].drain();
            assert_eq!(
                w.nodes[i].names("Ops"),
                ["new", "old"],
                "{how:?} node {i} after unlock"
            );
            w.drop_node(i);
            let mut rng = rng(7);
            w.nodes[i].restart(&mut rng);
            assert_eq!(
                w.nodes[i].names("Ops"),
                ["new", "old"],
                "{how:?} node {i} after restart"
            );
            let history = w.nodes[i].replica.history("Ops/old").unwrap();
            assert_eq!(history.len(), 1, "{how:?} node {i}");
            assert_eq!(history[0].user, Some(w.nodes[0].user()));
        }
        w.settle();
    }
}

#[test]
fn a_folder_member_cannot_write_and_an_editor_can() {
    let mut w = team();
    w.nodes[0]
        .replica
        .folder_share(
            "Ops",
            Principal::Group("it".into()),
            ShareChange::Role(Role::Member),
            &mut w.rng,
        )
        .unwrap();
    w.nodes[0].drain();
    w.settle();
    let refused = w.nodes[1].replica.add_item(
        NewItemSpec {
            folder: Some("Ops".into()),
            item_type: ItemType::Note,
            name: "nope".into(),
            fields: Default::default(),
            urls: vec![],
        },
        3,
        &mut w.rng,
    );
    assert!(
        matches!(
            refused,
            Err(ReplicaError::NotAllowed {
                role: Some(Role::Member),
                ..
            })
        ),
        "{refused:?}"
    );
    let (_, _) = w.nodes[0]
        .replica
        .edit_item(
            &ItemQuery::live("Ops/old"),
            ItemEdit {
                fields: [("password".to_string(), "changed".to_string())].into(),
                ..Default::default()
            },
            20,
            &mut w.rng,
        )
        .unwrap();
    w.nodes[0].drain();
    w.settle();
    let (f, id) = w.nodes[1]
        .replica
        .resolve_item(&ItemQuery::live("Ops/old"))
        .unwrap();
    assert_eq!(
        w.nodes[1].replica.item(&f, &id).unwrap().fields["password"],
        "changed"
    );
    // Every replica holding Ops agrees, byte for byte.
    let digests: Vec<_> = w
        .nodes
        .iter()
        .map(|n| {
            n.replica
                .digests()
                .into_iter()
                .find(|d| d.space == f)
                .map(|d| (d.accepted, d.items))
        })
        .collect();
    assert_eq!(digests[0], digests[1]);
    assert_eq!(digests[0], digests[2]);
}

/// Found by the daemon-level test tests/it/removal.rs: Bob reaches Ops only
/// through a direct user grant, and `user remove` did not rotate its key.
/// The grant and the roster removal are concurrent in the op graph (roster
/// ops never cite folder heads), the final pass applies removals first, so
/// the grant was then refused ("no such user") and the key wraps it carried
/// were forgotten with it: no member device held the current key any more
/// as far as the state knew, `rotation_due()` stayed false, and new items
/// went out under the key Bob's device holds.
#[test]
fn removing_a_user_shared_directly_rotates_the_folder_key() {
    let mut w = World::new(&["ada", "bob", "cyd"], rng(43));
    w.found_team(0, 0, &[]);
    w.admit(0, 1, &[]);
    w.admit(0, 2, &[]);
    w.nodes[0]
        .replica
        .create_folder("Ops", 5, &mut w.rng)
        .unwrap();
    for i in [1, 2] {
        let user = w.nodes[i].user();
        w.nodes[0]
            .replica
            .folder_share(
                "Ops",
                Principal::User(user),
                ShareChange::Share(Role::Editor),
                &mut w.rng,
            )
            .unwrap();
    }
    w.nodes[0].drain();
    add(&mut w, 0, "Ops", "old");
    w.settle();
    assert_eq!(w.nodes[1].names("Ops"), ["old"], "Bob read it");
    let ops = w.nodes[0].replica.resolve_folder(Some("Ops")).unwrap();
    let epochs = w.nodes[0].replica.folder_members("Ops").unwrap().epochs;

    let bob = w.nodes[1].user().0.clone();
    let change = w.nodes[0].replica.remove_user(&bob, &mut w.rng).unwrap();
    w.nodes[0].drain();
    assert_eq!(change.rotated, vec![ops], "the remover rotates Ops");
    let members = w.nodes[0].replica.folder_members("Ops").unwrap();
    assert_eq!(members.epochs, epochs + 1);
    assert!(
        !members
            .members
            .iter()
            .any(|m| m.principal == Principal::User(w.nodes[1].user())),
        "Bob's grant is gone: {members:?}"
    );
    add(&mut w, 0, "Ops", "new");
    w.settle();
    let space = w.nodes[0].replica.space(&ops).unwrap();
    let current = space.current_epoch().unwrap();
    assert!(space.epoch_key(&w.nodes[1].keys, &current).is_err());
    assert_eq!(w.nodes[2].names("Ops"), ["new", "old"]);
}
/// Ada (admin, with the folder Ops made before the team) and Bob, synced.
fn pair() -> World {
    let mut w = World::new(&["ada", "bob"], rng(43));
    w.nodes[0]
        .replica
        .create_folder("Ops", 5, &mut w.rng)
        .unwrap();
    w.found_team(0, 0, &[]);
    w.admit(0, 1, &[]);
    w.settle();
    w
}

/// Ada shares Ops with Bob (editor: Ops is bound to the team first) and
/// writes "old" in it.
fn ops_for_bob(w: &mut World) -> coffer_crdt::SpaceId {
    let bob = w.nodes[1].user();
    w.nodes[0]
        .replica
        .folder_share(
            "Ops",
            Principal::User(bob),
            ShareChange::Share(Role::Editor),
            &mut w.rng,
        )
        .unwrap();
    w.nodes[0].drain();
    add(w, 0, "Ops", "old");
    w.nodes[0].replica.resolve_folder(Some("Ops")).unwrap()
}

/// Regression (sim seed 11542892487152481144): a batch of a folder this
/// device does not hold, lacking the folder's founding op but holding a
/// grant to it, was kept. Without the founding op the folder named no
/// member, so nothing more was taken in from any peer: it stayed a
/// fragment for good, disagreeing with everyone.
#[test]
fn a_folder_is_not_kept_without_its_founding_op() {
    let mut w = pair();
    w.cut.insert((0, 1));
    w.round();
    let ops = ops_for_bob(&mut w);
    let found = w.nodes[0]
        .replica
        .space(&ops)
        .unwrap()
        .state()
        .folder
        .genesis
        .unwrap();
    let later: Vec<Vec<u8>> = w.nodes[0]
        .replica
        .space(&ops)
        .unwrap()
        .held()
        .filter(|e| e.space() == ops && e.id() != found)
        .map(|e| e.to_bytes())
        .collect();
    w.cut.clear();
    w.reconnect();
    let ada = w.nodes[0].id();
    w.nodes[1]
        .replica
        .handle_message(
            ada,
            SyncMessage::Envelopes {
                space: ops,
                envelopes: later,
            },
            &mut w.rng,
        )
        .unwrap();
    w.nodes[1].drain();
    assert!(
        w.nodes[1].replica.space(&ops).is_none(),
        "a fragment without its founding op was kept"
    );
    w.settle();
    assert_eq!(w.nodes[1].names("Ops"), ["old"]);
    assert_eq!(w.nodes[0].digest(&ops), w.nodes[1].digest(&ops));
}

/// Issue 18 (initial sync): the frames a daemon has read ahead go to
/// `handle_messages` at once, and consecutive envelopes of one space are
/// taken in as one batch — founding op, grants and content split over
/// many messages, in send order. The folder arrives whole, as one by one.
#[test]
fn envelopes_read_ahead_are_taken_in_as_one_batch() {
    let mut w = pair();
    w.cut.insert((0, 1));
    w.round();
    let ops = ops_for_bob(&mut w);
    for name in ["a", "b", "c"] {
        add(&mut w, 0, "Ops", name);
    }
    w.cut.clear();
    w.reconnect();
    // Bob's hello reaches Ada; Ada's messages to Bob, each envelope of Ops
    // in a message of its own, the others (hello, roster) where they came.
    let (ada, bob) = (w.nodes[0].id(), w.nodes[1].id());
    while let Some(msg) = w.nodes[1].replica.poll_transmit(&ada) {
        w.nodes[0]
            .replica
            .handle_message(bob, msg, &mut w.rng)
            .unwrap();
    }
    w.nodes[1].drain();
    w.nodes[1].wakes.clear();
    let mut msgs = Vec::new();
    while let Some(msg) = w.nodes[0].replica.poll_transmit(&bob) {
        match msg {
            SyncMessage::Envelopes { space, envelopes } if space == ops => {
                msgs.extend(envelopes.into_iter().map(|e| SyncMessage::Envelopes {
                    space,
                    envelopes: vec![e],
                }))
            }
            other => msgs.push(other),
        }
    }
    w.nodes[0].drain();
    w.nodes[0].wakes.clear();
    let split = msgs
        .iter()
        .filter(|m| matches!(m, SyncMessage::Envelopes { space, .. } if *space == ops))
        .count();
    assert!(split > 4, "Ops went out as {split} messages");
    w.nodes[1]
        .replica
        .handle_messages(ada, msgs, &mut w.rng)
        .unwrap();
    w.nodes[1].drain();
    assert_eq!(w.nodes[1].names("Ops"), ["a", "b", "c", "old"]);
    assert_eq!(w.nodes[0].digest(&ops), w.nodes[1].digest(&ops));
    // An undecodable message after good ones: those before it are taken
    // in, then the session ends as a violation.
    add(&mut w, 0, "Ops", "d");
    let d = w.nodes[0]
        .replica
        .space(&ops)
        .unwrap()
        .held()
        .filter(|e| e.space() == ops)
        .map(|e| e.to_bytes())
        .collect::<Vec<_>>();
    let bad = vec![
        SyncMessage::Envelopes {
            space: ops,
            envelopes: d,
        },
        SyncMessage::Envelopes {
            space: ops,
            envelopes: vec![vec![0xff; 16]],
        },
    ];
    let got = w.nodes[1].replica.handle_messages(ada, bad, &mut w.rng);
    assert!(got.is_err_and(|e| e.is_violation()));
    w.nodes[1].drain();
    assert_eq!(w.nodes[1].names("Ops"), ["a", "b", "c", "d", "old"]);
}

/// Regression (sim seed 4896694741619481390): a peer sent a folder this
/// device dropped (not a member then, or the message was lost) and counts
/// it as held; what it sends later lacks the founding op, so it was
/// dropped too and the folder never arrived. Such a batch now asks the
/// peer to send the folder again from its start.
#[test]
fn a_folder_sent_while_dropped_is_asked_for_again() {
    let mut w = pair();
    let ops = ops_for_bob(&mut w);
    let bob = w.nodes[1].id();
    // Everything Ada sends Bob now is lost on the way.
    let mut lost = 0;
    while let Some(msg) = w.nodes[0].replica.poll_transmit(&bob) {
        if matches!(msg, SyncMessage::Envelopes { space, .. } if space == ops) {
            lost += 1;
        }
    }
    assert!(lost > 0, "Ada sent Ops");
    w.nodes[0].drain();
    w.nodes[0].wakes.clear();
    add(&mut w, 0, "Ops", "new");
    w.settle();
    assert!(w.nodes[1].replica.space(&ops).is_some(), "Bob holds Ops");
    assert_eq!(w.nodes[1].names("Ops"), ["new", "old"]);
}

/// Issue 20, item 7: Ops after Bob (node 1) wrote "bob-before" as
/// incarnation 0 and was removed from it and re-added (Ops unshared from
/// group "it" and shared again), so that every replica holds him to
/// incarnation 1. Returns Ops and a copy of Bob's space to forge from (what
/// a stale or malicious client of his device holds).
fn re_added_bob() -> (World, SpaceId, Space) {
    let mut w = team();
    add(&mut w, 1, "Ops", "bob-before");
    w.settle();
    for change in [ShareChange::Unshare, ShareChange::Share(Role::Editor)] {
        w.nodes[0]
            .replica
            .folder_share("Ops", Principal::Group("it".into()), change, &mut w.rng)
            .unwrap();
        w.nodes[0].drain();
        w.settle();
    }
    let ops = w.nodes[0].replica.resolve_folder(Some("Ops")).unwrap();
    let bob = w.nodes[1].id();
    for n in &w.nodes[..3] {
        assert_eq!(n.replica.space(&ops).unwrap().incarnation(&bob), 1);
    }
    assert_eq!(w.nodes[1].names("Ops"), ["bob-before", "old"]);
    let forger = w.nodes[1].replica.space(&ops).unwrap().clone();
    (w, ops, forger)
}

/// A note added to a document rebuilt from `forger`'s accepted content,
/// written as Bob's `incarnation`.
fn bob_note(w: &World, forger: &Space, incarnation: u32, name: &str, n: u8) -> Vec<u8> {
    let mut doc = doc_as(forger, &w.nodes[1].keys, incarnation);
    doc.add_item(
        ItemId([n; 16]),
        ItemType::Note,
        name,
        &ItemEdit::default(),
        30,
    )
    .unwrap()
}

/// Bob's device signs `change` as its next envelope of Ops under the header
/// it chooses and hands it to Ada; everyone syncs.
fn forge(
    w: &mut World,
    ops: SpaceId,
    forger: &mut Space,
    change: &[u8],
    header: ChangeHeader,
) -> coffer_crdt::Envelope {
    let keys = w.nodes[1].keys.clone();
    let key = forger.folder_key(&keys).unwrap();
    let epoch = forger.current_epoch().unwrap();
    let env = force_content_as(forger, &keys, &key, epoch, change, header, &mut w.rng);
    let msg = SyncMessage::Envelopes {
        space: ops,
        envelopes: vec![env.to_bytes()],
    };
    assert!(w.inject(1, 0, msg));
    w.settle();
    env
}

/// The replayed change of an old incarnation under a header claiming the
/// current one (see the test below), with the stale client's envelope of
/// it under its honest header; both delivered.
fn replay_old_incarnation(
    w: &mut World,
    ops: SpaceId,
    forger: &mut Space,
) -> (coffer_crdt::Envelope, coffer_crdt::Envelope, Vec<u8>) {
    let keys = w.nodes[1].keys.clone();
    let stale_change = bob_note(w, forger, 0, "replayed", 1);
    let meta = ChangeMeta::from_change(&stale_change).unwrap();
    assert_eq!(meta.incarnation(&keys.device_id()), Some(0));
    // The deps the change really has (as envelopes): those of an honest
    // change on the same document.
    let probe = bob_note(w, forger, 1, "probe", 2);
    let deps = forger.change_header(&keys, &probe).unwrap().deps;
    assert!(!deps.is_empty());
    // The stale client's honest header: quarantined.
    let honest = ChangeHeader {
        incarnation: 0,
        seq: meta.seq,
        deps: deps.clone(),
    };
    let stale = forge(w, ops, forger, &stale_change, honest);
    // The same change again, its header claiming the current incarnation.
    let lying = ChangeHeader {
        incarnation: 1,
        seq: 1,
        deps,
    };
    let replay = forge(w, ops, forger, &stale_change, lying);
    (stale, replay, stale_change)
}

/// The nodes holding Ops' key.
const HOLDERS: [usize; 4] = [0, 1, 2, 3];

/// Every key holder's replica (Bob's own too; Dan, who joined after the
/// forgery, opened the folder from scratch) shows exactly `names` and
/// lists exactly `skipped` as not applied — unlocked, after lock/unlock
/// and after a restart from what it persisted — and all agree byte for byte.
fn assert_holders_see(w: &mut World, ops: SpaceId, names: &[&str], skipped: &[EnvelopeId]) {
    let want: BTreeMap<EnvelopeId, Skip> = skipped
        .iter()
        .map(|id| (*id, Skip::HeaderMismatch))
        .collect();
    for i in HOLDERS {
        for when in ["unlocked", "after unlock", "after restart"] {
            match when {
                "after unlock" => {
                    w.nodes[i]
                        .replica
                        .lock(coffer_crdt::replica::LockReason::Request);
                    let keys = w.nodes[i].keys.clone();
                    w.nodes[i].replica.unlock(keys, &mut w.rng).unwrap();
                    w.nodes[i].drain();
                }
                "after restart" => {
                    w.drop_node(i);
                    let mut rng = rng(8);
                    w.nodes[i].restart(&mut rng);
                }
                _ => {}
            }
            assert_eq!(w.nodes[i].names("Ops"), names, "node {i} {when}");
            assert_eq!(
                w.nodes[i].replica.unreadable(&ops),
                Some(&want),
                "node {i} {when}"
            );
            let space = w.nodes[i].replica.space(&ops).unwrap();
            for id in skipped {
                assert_eq!(
                    space.outcome_of(id),
                    Some(Outcome::Accepted),
                    "node {i} {when}"
                );
            }
        }
    }
    w.settle();
    let digests: Vec<_> = HOLDERS
        .iter()
        .map(|&i| {
            w.nodes[i]
                .replica
                .digests()
                .into_iter()
                .find(|d| d.space == ops)
                .map(|d| (d.accepted, d.items))
        })
        .collect();
    assert!(digests.iter().all(|d| d.is_some() && *d == digests[0]));
}

/// Acceptance reads headers alone: a peer holding no key (a relay, a
/// locked daemon) fed what Ada holds accepts `id` too.
fn accepted_from_headers(w: &World, ops: SpaceId, id: &EnvelopeId) -> bool {
    let space = w.nodes[0].replica.space(&ops).unwrap();
    let mut relay = Space::new_in_team(ops, space.team());
    relay.ingest_batch(space.held().cloned().collect());
    assert_eq!(relay.digest(), space.digest());
    relay.is_accepted(id)
}

/// Issue 20, item 7 (header/payload mismatch): Bob, removed from Ops and
/// re-added (incarnation 1), replays the change his stale client wrote with
/// his old actor — quarantined as `StaleIncarnation` under its honest
/// header — in a new envelope whose plaintext header claims incarnation 1.
/// Acceptance, reading only headers, accepts it; every key holder finds
/// the payload's actor is not the header's, skips it (`HeaderMismatch`,
/// the same everywhere, so documents stay identical) and never shows the
/// item; honest items, before and after, stay readable.
#[test]
fn a_change_of_an_old_incarnation_under_a_new_header_is_accepted_but_never_applied() {
    let (mut w, ops, mut forger) = re_added_bob();
    let (stale, replay, stale_change) = replay_old_incarnation(&mut w, ops, &mut forger);
    for i in 0..3 {
        let space = w.nodes[i].replica.space(&ops).unwrap();
        assert_eq!(
            space.outcome_of(&stale.id()),
            Some(Outcome::Quarantined(
                coffer_crdt::Reason::StaleIncarnation { got: 0, need: 1 }
            )),
            "node {i}"
        );
        // (a) The header alone passes the acceptance rule.
        assert!(space.is_accepted(&replay.id()), "node {i}");
        assert!(!space.binding_matches(&replay, &stale_change), "node {i}");
    }
    assert!(accepted_from_headers(&w, ops, &replay.id()));
    // Dan joins the team and Ops afterwards.
    w.admit(0, 3, &["it"]);
    w.settle();
    // (b) Nobody shows the replayed item, everyone lists it as skipped;
    // (c) the honest items read.
    assert_holders_see(&mut w, ops, &["bob-before", "old"], &[replay.id()]);
    // Honest writes after it, Bob's own too.
    add(&mut w, 0, "Ops", "ada-after");
    add(&mut w, 1, "Ops", "bob-after");
    w.settle();
    let names = ["ada-after", "bob-after", "bob-before", "old"];
    assert_holders_see(&mut w, ops, &names, &[replay.id()]);
}

/// How a lying header states the deps of Bob's (otherwise honest) change.
#[derive(Clone, Copy, Debug)]
enum LyingDeps {
    /// None at all: the change claims to be concurrent with everything.
    Dropped,
    /// Its real deps and an older envelope it does not build on (a vouch).
    Extra,
    /// An older envelope instead of its real deps.
    Swapped,
}

/// Issue 20, item 7, the deps: Bob (incarnation 1, his current actor)
/// signs a change whose header names other deps than the change has.
/// Acceptance accepts it from the header; every key holder maps the
/// change's Automerge deps to envelopes, finds them different, skips it
/// (`HeaderMismatch`) and never shows the item; honest items stay readable.
#[test]
fn a_change_whose_header_names_other_deps_is_accepted_but_never_applied() {
    for how in [LyingDeps::Dropped, LyingDeps::Extra, LyingDeps::Swapped] {
        let (mut w, ops, mut forger) = re_added_bob();
        let keys = w.nodes[1].keys.clone();
        let change = bob_note(&w, &forger, 1, "lying deps", 3);
        let honest = forger.change_header(&keys, &change).unwrap();
        assert_eq!((honest.incarnation, honest.seq), (1, 1), "{how:?}");
        let other = forger
            .accepted_content()
            .map(|e| e.id())
            .find(|id| !honest.deps.contains(id))
            .expect("an older envelope the change does not cite");
        let mut deps = match how {
            LyingDeps::Dropped => vec![],
            LyingDeps::Extra => [honest.deps.clone(), vec![other]].concat(),
            LyingDeps::Swapped => vec![other],
        };
        deps.sort();
        assert_ne!(deps, honest.deps);
        let lying = ChangeHeader { deps, ..honest };
        let env = forge(&mut w, ops, &mut forger, &change, lying);
        for i in 0..3 {
            let space = w.nodes[i].replica.space(&ops).unwrap();
            assert!(space.is_accepted(&env.id()), "{how:?} node {i}");
        }
        assert!(accepted_from_headers(&w, ops, &env.id()), "{how:?}");
        w.admit(0, 3, &["it"]);
        w.settle();
        assert_holders_see(&mut w, ops, &["bob-before", "old"], &[env.id()]);
        add(&mut w, 2, "Ops", "cyd-after");
        add(&mut w, 1, "Ops", "bob-after");
        w.settle();
        let names = ["bob-after", "bob-before", "cyd-after", "old"];
        assert_holders_see(&mut w, ops, &names, &[env.id()]);
    }
}

/// Found by the test above: an open folder learned the incarnation its
/// device writes as only when (re)opened. Once re-added, a device's first
/// write failed ("added again since it was opened: run the command
/// again"); and once a change of its own (the replay) was skipped, its
/// next write took the actor and seq that change's header claims: an
/// Equivocation, refused. Now the open folder keeps up as envelopes arrive:
/// everyone writes at once, Bob as incarnation 2, and the replay stays
/// accepted (skipped) rather than turned into a fork of his.
#[test]
fn a_device_writes_past_a_re_add_and_its_own_skipped_change_without_reopening() {
    let (mut w, ops, mut forger) = re_added_bob();
    let (_, replay, _) = replay_old_incarnation(&mut w, ops, &mut forger);
    add(&mut w, 0, "Ops", "ada-after");
    add(&mut w, 2, "Ops", "cyd-after");
    add(&mut w, 1, "Ops", "bob-after");
    w.settle();
    let space = w.nodes[1].replica.space(&ops).unwrap();
    let bob = w.nodes[1].id();
    let last = space
        .held()
        .filter(|e| e.author() == bob && e.body().change.is_some())
        .max_by_key(|e| e.seq())
        .unwrap();
    assert_eq!(last.body().change.as_ref().unwrap().incarnation, 2);
    assert_eq!(space.outcome_of(&last.id()), Some(Outcome::Accepted));
    w.admit(0, 3, &["it"]);
    w.settle();
    let names = ["ada-after", "bob-after", "bob-before", "cyd-after", "old"];
    assert_holders_see(&mut w, ops, &names, &[replay.id()]);
}

/// Regression (sim seed 11053630321302665832): a paired device revoked and
/// trusted again before the transport closed the connection. The replica
/// had dropped the session when the peer stopped being allowed, and the
/// connection it was never told had closed stayed silent for good: the
/// new grant and every later write never reached it.
#[test]
fn a_peer_allowed_again_before_its_connection_closed_syncs_on_it() {
    let mut w = World::new(&["ada", "bob"], rng(47));
    w.nodes[0]
        .replica
        .create_folder("Ops", 5, &mut w.rng)
        .unwrap();
    let (bob, ada) = (w.nodes[1].trusted(), w.nodes[0].trusted());
    w.nodes[0]
        .replica
        .trust_device(bob.clone(), &["Ops".to_string()], Role::Editor, &mut w.rng)
        .unwrap();
    w.nodes[1]
        .replica
        .trust_device(ada, &[], Role::Member, &mut w.rng)
        .unwrap();
    w.nodes[0].drain();
    w.nodes[1].drain();
    add(&mut w, 0, "Ops", "old");
    w.settle();
    assert_eq!(w.nodes[1].names("Ops"), ["old"]);

    // No round in between: the world keeps the connection up, as a
    // transport does that has not yet acted on the first `AllowedPeers`.
    let bob_id = w.nodes[1].id();
    w.nodes[0]
        .replica
        .revoke_device(bob_id, &mut w.rng)
        .unwrap();
    w.nodes[0].drain();
    assert!(!w.nodes[0].replica.allowed_peers().contains_key(&bob_id));
    w.nodes[0]
        .replica
        .trust_device(bob, &["Ops".to_string()], Role::Member, &mut w.rng)
        .unwrap();
    w.nodes[0].drain();
    add(&mut w, 0, "Ops", "new");
    w.settle();

    let ops = w.nodes[0].replica.resolve_folder(Some("Ops")).unwrap();
    assert_eq!(
        w.nodes[1].digest(&ops),
        w.nodes[0].digest(&ops),
        "bob holds every membership change"
    );
    assert_eq!(w.nodes[1].names("Ops"), ["new", "old"]);
}

/// Issue 19: custom fields live in an item's fields under
/// `schema::custom_key`, so the replica's one command that sets fields sets
/// them on any type; they sync, keep history, show concurrent edits as a
/// conflict, and are removed with an empty value. Hidden ones are secrets.
#[test]
fn custom_fields_sync_edit_and_keep_history() {
    use coffer_crdt::schema::{custom_key, CustomKind};
    let mut w = team();
    let pin = custom_key(CustomKind::Hidden, "PIN");
    let pets = custom_key(CustomKind::Checkbox, "Pets allowed");
    let spec = NewItemSpec {
        folder: Some("Ops".into()),
        item_type: ItemType::Note,
        name: "Door".into(),
        fields: [
            (pin.clone(), "1234".to_string()),
            (pets.clone(), "no".to_string()),
            ("archived".to_string(), "2024-05-01".to_string()),
        ]
        .into(),
        urls: vec![],
    };
    let (ops, id) = w.nodes[0].replica.add_item(spec, 10, &mut w.rng).unwrap();
    w.nodes[0].drain();
    w.settle();
    let seen = w.nodes[1].replica.item(&ops, &id).unwrap().clone();
    assert_eq!(seen.fields[&pin], "1234");
    assert_eq!(
        seen.fields[&pets], "false",
        "a checkbox is stored as true/false"
    );
    assert!(seen.item_type.is_secret(&pin) && !seen.item_type.is_secret(&pets));

    // Concurrent edits of the PIN: both values kept, one as a conflict.
    for (n, value) in [(0, "1111"), (1, "2222")] {
        let edit = ItemEdit {
            fields: [(pin.clone(), value.to_string())].into(),
            ..ItemEdit::default()
        };
        w.nodes[n]
            .replica
            .edit_item(&ItemQuery::live("Door"), edit, 20, &mut w.rng)
            .unwrap();
        w.nodes[n].drain();
    }
    w.settle();
    let a = w.nodes[0].replica.item(&ops, &id).unwrap().clone();
    let b = w.nodes[1].replica.item(&ops, &id).unwrap().clone();
    assert_eq!(a, b, "both replicas show the same item");
    let mut both = vec![a.fields[&pin].clone()];
    both.extend(a.conflicts[&pin].iter().cloned());
    both.sort();
    assert_eq!(both, ["1111", "2222"]);

    // An empty value removes the field; history still has every value.
    let edit = ItemEdit {
        fields: [(pets.clone(), String::new())].into(),
        ..ItemEdit::default()
    };
    w.nodes[0]
        .replica
        .edit_item(&ItemQuery::live("Door"), edit, 30, &mut w.rng)
        .unwrap();
    w.nodes[0].drain();
    w.settle();
    assert!(!w.nodes[1]
        .replica
        .item(&ops, &id)
        .unwrap()
        .fields
        .contains_key(&pets));
    let history = w.nodes[1].replica.history("Door").unwrap();
    assert!(history
        .iter()
        .any(|h| h.item.fields.get(&pin).map(String::as_str) == Some("1234")));

    // A key the schema refuses is an error, not a silent write.
    let bad = ItemEdit {
        fields: [("custom:nope:X".to_string(), "v".to_string())].into(),
        ..ItemEdit::default()
    };
    assert!(w.nodes[0]
        .replica
        .edit_item(&ItemQuery::live("Door"), bad, 40, &mut w.rng)
        .is_err());
}

/// Version 3 added `Time` (for `coffer doctor`'s clock check): a version-2
/// peer still syncs (it is only never sent `Time`), a version-1 one is
/// refused, and `Time` changes nothing in the replica.
#[test]
fn a_version_2_peer_still_syncs_and_time_is_ignored() {
    use coffer_crdt::replica::ProtocolViolation;
    let mut w = pair();
    let ada = w.nodes[0].id();
    let hello = |version| SyncMessage::Hello {
        version,
        spaces: vec![],
    };
    let bob = &mut w.nodes[1];
    bob.replica
        .handle_message(ada, hello(2), &mut w.rng)
        .expect("a version-2 hello");
    bob.replica
        .handle_message(ada, SyncMessage::Time { unix_ms: 0 }, &mut w.rng)
        .expect("time is ignored");
    assert_eq!(
        bob.replica.handle_message(ada, hello(1), &mut w.rng),
        Err(ProtocolViolation::Version(1))
    );
}

/// Names resolve through each open folder's name index: case folded, kept
/// in step with renames, trash and restore, and with what a peer's sync
/// brings; two items of one name are ambiguous, both listed.
#[test]
fn item_names_resolve_through_the_index_after_renames_trash_and_sync() {
    let mut w = team();
    let resolve =
        |w: &World, i: usize, q: &str| w.nodes[i].replica.resolve_item(&ItemQuery::live(q));
    let (ops, old) = resolve(&w, 1, "OLD").unwrap();
    assert_eq!(resolve(&w, 1, "ops/Old").unwrap(), (ops, old));
    // Ada renames it; Bob's index follows the sync.
    w.nodes[0]
        .replica
        .edit_item(
            &ItemQuery::live("old"),
            ItemEdit {
                name: Some("Router".into()),
                ..Default::default()
            },
            20,
            &mut w.rng,
        )
        .unwrap();
    w.nodes[0].drain();
    w.settle();
    for i in [0, 1] {
        assert!(matches!(
            resolve(&w, i, "old"),
            Err(ReplicaError::NoSuchItem { .. })
        ));
        assert_eq!(resolve(&w, i, "router").unwrap(), (ops, old));
    }
    // A second "Router": ambiguous, both candidates named.
    add(&mut w, 1, "Ops", "ROUTER");
    w.settle();
    match resolve(&w, 0, "Router") {
        Err(ReplicaError::Ambiguous { candidates, .. }) => assert_eq!(candidates.len(), 2),
        other => panic!("{other:?}"),
    }
    // The first one in the trash: the live name is the other one's alone,
    // and the trash finds the first.
    let id = old.to_hex();
    w.nodes[0]
        .replica
        .set_trashed(&id, true, 30, &mut w.rng)
        .unwrap();
    w.nodes[0].drain();
    w.settle();
    let (_, live) = resolve(&w, 1, "router").unwrap();
    assert_ne!(live, old);
    let trashed = w.nodes[1].replica.resolve_item(&ItemQuery {
        item: "Router".into(),
        trash: true,
    });
    assert_eq!(trashed.unwrap(), (ops, old));
    // A restart rebuilds the index from the document.
    let mut rng = rng(7);
    w.nodes[1].restart(&mut rng);
    assert_eq!(resolve(&w, 1, "ROUTER").unwrap().1, live);
}

/// An import is a few changes of many items: it counts by its items
/// towards a snapshot, so the next restart loads the folder from one
/// instead of replaying the import (a 100,000-item import never got one).
#[test]
fn an_import_of_many_items_gets_its_folder_a_snapshot() {
    let mut w = World::new(&["ada"], rng(44));
    let items: Vec<coffer_crdt::replica::ImportItem> = (0..300)
        .map(|i| coffer_crdt::replica::ImportItem {
            item_type: ItemType::Login,
            name: format!("svc{i:03}"),
            folder: None,
            fields: [("password".to_string(), format!("pw{i}"))].into(),
            urls: vec![],
            created_ms: None,
            updated_ms: None,
            trashed_ms: None,
        })
        .collect();
    let plan = w.nodes[0]
        .replica
        .import(items, None, false, 10, &mut w.rng, &mut |_, _| {})
        .unwrap();
    assert_eq!(plan.added.values().sum::<usize>(), 300);
    w.nodes[0].drain();
    w.nodes[0]
        .replica
        .snapshot_folders(coffer_crdt::replica::SNAPSHOT_AFTER_CHANGES, &mut w.rng);
    w.nodes[0].drain();
    let mut r = rng(45);
    w.nodes[0].restart(&mut r);
    let report = w.nodes[0].replica.last_unlock();
    assert!(
        report.from_snapshot >= 1 && report.rebuilt == 0,
        "{report:?}"
    );
    assert!(resolve_ok(&w, "svc299"));
    // Unlocked, the replica holds no sealed snapshot and asks for none.
    let folders = report.from_snapshot;
    assert!(w.nodes[0].replica.snapshots_wanted().is_empty());
    // Locked again, it wants each folder's, and the host hands them in
    // from its store, as cofferd does at every unlock.
    w.nodes[0]
        .replica
        .lock(coffer_crdt::replica::LockReason::Request);
    assert!(w.nodes[0].replica.snapshots_wanted().len() >= folders);
    let mut r = rng(46);
    w.nodes[0].unlock_from_store(&mut r);
    let again = w.nodes[0].replica.last_unlock();
    assert_eq!((again.from_snapshot, again.rebuilt), (folders, 0));
    // Not handed in, the folder is rebuilt from its envelopes: the same
    // items, only slower.
    w.nodes[0]
        .replica
        .lock(coffer_crdt::replica::LockReason::Request);
    let keys = w.nodes[0].keys.clone();
    w.nodes[0].replica.unlock(keys, &mut r).unwrap();
    let bare = w.nodes[0].replica.last_unlock();
    assert_eq!((bare.from_snapshot, bare.rebuilt), (0, folders));
    assert!(resolve_ok(&w, "svc299"));
}

fn resolve_ok(w: &World, name: &str) -> bool {
    w.nodes[0]
        .replica
        .resolve_item(&ItemQuery::live(name))
        .is_ok()
}

/// A streamed listing sorts only its first rows (`sort_first`): they are
/// the listing's first rows, for every length, and the whole listing is in
/// folder, lowered name, id order (folders differing in case mixed).
#[test]
fn a_listing_sorted_first_rows_start_like_the_full_listing() {
    let mut w = World::new(&["ada"], rng(7));
    for folder in ["Ops", "ops-2", "Zeta", "alpha"] {
        w.nodes[0]
            .replica
            .create_folder(folder, 5, &mut w.rng)
            .expect("folder");
    }
    let names = [
        "b", "B", "a", "Äpfel", "äpfel", "ΣΑΣ", "z", "A", "b", "m1", "M0",
    ];
    for (n, name) in names.iter().enumerate() {
        let folder = ["Ops", "ops-2", "Zeta", "alpha", "Personal"][n % 5];
        add(&mut w, 0, folder, name);
        add(&mut w, 0, ["alpha", "Zeta"][n % 2], name);
    }
    let r = &w.nodes[0].replica;
    let full = listed(r);
    let mut naive = full.clone();
    naive.sort_by_cached_key(|(f, id)| {
        let name = &r.item(f, id).expect("item").name;
        (r.folder_name(f).to_lowercase(), name.to_lowercase(), *id)
    });
    assert_eq!(full, naive);
    assert_eq!(full.len(), 2 * names.len());
    for n in 0..=full.len() + 1 {
        let (first, _) = first_rows(r, n);
        assert_eq!(first, full[..n.min(full.len())], "first {n}");
    }
    let one = r.listing(Some("zeta"), false).expect("one folder");
    assert_eq!(one.folder_names.values().collect::<Vec<_>>(), ["Zeta"]);

    // One folder of names that share long prefixes, differ in case, or
    // lower to other lengths (İ, K, ǅ): the first rows are picked by a
    // 16-byte prefix of the lowered name, then by the whole of it.
    let mut w = World::new(&["ada"], rng(8));
    let stems = [
        "Shared-Prefix-Name-",
        "shared-prefix-name-",
        "shared-prefix-nA",
        "İstanbul ",
        "\u{212A}elvin ",
        "ǅungla ",
        "kelvin ",
        "a",
    ];
    for k in 0..48 {
        let name = format!("{}{}", stems[k % stems.len()], 47 - k);
        add(&mut w, 0, "Personal", &name);
    }
    let r = &w.nodes[0].replica;
    let full = listed(r);
    assert_eq!(full.len(), 48);
    for n in 0..=full.len() {
        let (first, mut all) = first_rows(r, n);
        assert_eq!(first, full[..n], "first {n} of one folder");
        all.sort();
        assert_eq!(all.len(), 48, "no row lost or doubled");
        all.dedup();
        assert_eq!(all.len(), 48, "no row lost or doubled");
    }
}

/// The full listing's (folder, item) ids, in its order.
fn listed(r: &Replica) -> Vec<(SpaceId, ItemId)> {
    r.items(None, false)
        .expect("items")
        .into_iter()
        .map(|(f, i)| (f, i.id))
        .collect()
}

/// The first `n` rows after `sort_first`, and every row's item id.
fn first_rows(r: &Replica, n: usize) -> (Vec<(SpaceId, ItemId)>, Vec<ItemId>) {
    let mut rows = r.listing(None, false).expect("listing").rows;
    coffer_crdt::replica::sort_first(&mut rows, n);
    let first = rows.iter().take(n).map(|r| (r.folder, r.item.id)).collect();
    (first, rows.iter().map(|r| r.item.id).collect())
}
