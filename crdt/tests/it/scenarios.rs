//! Named scenarios of issue 3, each asserting the exact outcome.

use std::collections::BTreeMap;

use coffer_crdt::ops::{ControlOp, MembershipOp, Principal, Role, RosterOp, UserId};
use coffer_crdt::space::{IngestError, Outcome, Reason};
use coffer_crdt::{
    DeviceKeys, Envelope, EnvelopeId, FolderKey, ItemEdit, ItemId, ItemType, Kind, Space, SpaceId,
};

use coffer_crdt::{ChangeHeader, ChangeMeta};

use crate::harness::*;

#[test]
fn folder_member_writes_are_quarantined_everywhere() {
    let mut w = World::new(1, &[Role::Member, Role::Editor]);
    let epoch = w.reps[1].current_epoch().unwrap();
    let key = w.reps[1].folder_key(&w.keys[1]).unwrap();
    // The honest API refuses; a modified client signs anyway.
    let change = add_item_change(&w.reps[1], &w.keys[1], "sneaky", 5);
    assert!(w.reps[1]
        .seal_content(&w.keys[1], &key, &change, &mut w.rng)
        .is_err());
    let env = force_content(&mut w.reps[1], &w.keys[1], &key, epoch, &change, &mut w.rng);
    w.converge();
    assert!(matches!(
        w.outcome_everywhere(&env.id()),
        Outcome::Quarantined(Reason::Unauthorized(_))
    ));
    assert!(w.reps.iter().all(|r| r.get(&env.id()).is_some()), "kept");
    assert!(doc_of(&w.reps[2], &w.keys[2]).items().is_empty());
    w.assert_identical();
}

#[test]
fn item_manager_edits_are_accepted() {
    let mut w = World::new(2, &[Role::Editor, Role::Member]);
    let env = w.write(1, "from the editor", 7);
    w.converge();
    assert_eq!(w.outcome_everywhere(&env.id()), Outcome::Accepted);
    let items = doc_of(&w.reps[2], &w.keys[2]).items();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].name, "from the editor");
    w.assert_identical();
}

#[test]
fn item_manager_membership_change_is_rejected() {
    let mut w = World::new(3, &[Role::Editor, Role::Member]);
    let target = Principal::Device(w.keys[2].device_id());
    // The honest API refuses without publishing.
    assert!(w.reps[1]
        .grant(
            &w.keys[1],
            target.clone(),
            Role::Manager,
            None,
            None,
            &mut w.rng
        )
        .is_err());
    let op = ControlOp::Membership(MembershipOp::Grant {
        principal: target,
        role: Role::Manager,
        exchange: None,
        epoch: None,
        wraps: vec![],
    });
    let (env, outcome) = w.reps[1].write_control(&w.keys[1], &op);
    assert!(matches!(
        outcome,
        Outcome::Quarantined(Reason::Unauthorized(_))
    ));
    w.converge();
    assert!(matches!(
        w.outcome_everywhere(&env.id()),
        Outcome::Quarantined(Reason::Unauthorized(_))
    ));
    assert!(w
        .reps
        .iter()
        .all(|r| r.role_of(&w.id(2)) == Some(Role::Member)));
    w.assert_identical();
}

#[test]
fn offline_edits_of_a_removed_editor_are_quarantined_not_lost() {
    let mut w = World::new(4, &[Role::Editor, Role::Editor]);
    let seen = w.write(1, "seen by the manager", 1);
    w.converge();
    // Editor 1 goes offline and keeps writing.
    let offline1 = w.write(1, "offline one", 2);
    let offline2 = w.write(1, "offline two", 3);
    // Meanwhile the manager removes editor 1 and rotates.
    let removal = w.reps[0]
        .remove(&w.keys[0], Principal::Device(w.keys[1].device_id()), None)
        .unwrap();
    let (_, new_key) = w.reps[0].rotate(&w.keys[0], &mut w.rng).unwrap();
    w.keyring
        .insert(w.reps[0].current_epoch().unwrap(), new_key);
    let after = w.write(0, "after the removal", 4);
    w.converge();
    assert_eq!(w.outcome_everywhere(&seen.id()), Outcome::Accepted);
    for e in [&offline1, &offline2] {
        assert_eq!(
            w.outcome_everywhere(&e.id()),
            Outcome::Quarantined(Reason::Removed { by: removal.id() })
        );
        assert!(
            w.reps.iter().all(|r| r.get(&e.id()).is_some()),
            "kept, not lost"
        );
    }
    assert_eq!(w.outcome_everywhere(&after.id()), Outcome::Accepted);
    let names: Vec<String> = doc_of(&w.reps[2], &w.keys[2])
        .items()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert!(names.contains(&"seen by the manager".to_string()));
    assert!(!names.iter().any(|n| n.starts_with("offline")));
    w.assert_identical();
}

#[test]
fn a_change_an_honest_member_built_on_is_kept_everywhere() {
    let mut w = World::new(5, &[Role::Editor, Role::Editor]);
    // Editor 1 writes; editor 2 (another user) sees it and builds on it,
    // before either hears of the removal.
    let doomed = w.write(1, "built upon", 1);
    let (a, b) = two(&mut w.reps, 1, 2);
    sync(a, b, &w.keys[2], 9);
    let builder = w.write(2, "on top", 2);
    // The manager never saw `doomed` when removing editor 1.
    let removal = w.reps[0]
        .remove(&w.keys[0], Principal::Device(w.keys[1].device_id()), None)
        .unwrap();
    let (_, k) = w.reps[0].rotate(&w.keys[0], &mut w.rng).unwrap();
    w.keyring.insert(w.reps[0].current_epoch().unwrap(), k);
    // Editor 1 writes more that nobody builds on.
    let lonely = w.write(1, "lonely", 3);
    w.converge();
    assert_eq!(w.outcome_everywhere(&doomed.id()), Outcome::Accepted);
    assert_eq!(w.outcome_everywhere(&builder.id()), Outcome::Accepted);
    for r in &w.reps {
        assert_eq!(r.endorsed_by().get(&doomed.id()), Some(&builder.id()));
    }
    assert_eq!(
        w.outcome_everywhere(&lonely.id()),
        Outcome::Quarantined(Reason::Removed { by: removal.id() })
    );
    w.assert_identical();
}

/// Issue 20, attack 2: equal ranks cannot remove each other. Two managers
/// granted by the creator (rank 1001 each): the honest API refuses either
/// removal, and one signed anyway — from any context, with any id — is
/// quarantined everywhere; the creator (1000) can, and the folder stays
/// manageable.
#[test]
fn equal_ranks_cannot_remove_each_other_whatever_the_ids() {
    let mut w = World::new(6, &[Role::Manager, Role::Manager, Role::Editor]);
    let target = |w: &World, i: usize| Principal::Device(w.keys[i].device_id());
    let two = target(&w, 2);
    let refused = w.reps[1].remove(&w.keys[1], two.clone(), None);
    assert!(
        matches!(refused, Err(coffer_crdt::SpaceError::Refused(_))),
        "{refused:?}"
    );
    // A client ignoring the rules signs removals of its peer (several, so
    // some carry a lower id than anything else around): all quarantined.
    let mut forced = Vec::new();
    for _ in 0..4 {
        let op = ControlOp::Membership(MembershipOp::Remove {
            principal: two.clone(),
            to: None,
            cutoff: w.reps[1].cutoff(),
        });
        let (env, _) = w.reps[1].write_control(&w.keys[1], &op);
        forced.push(env);
    }
    let op = ControlOp::Membership(MembershipOp::Remove {
        principal: target(&w, 1),
        to: None,
        cutoff: w.reps[2].cutoff(),
    });
    let (back, _) = w.reps[2].write_control(&w.keys[2], &op);
    forced.push(back);
    w.converge();
    for env in &forced {
        assert!(matches!(
            w.outcome_everywhere(&env.id()),
            Outcome::Quarantined(Reason::Unauthorized(_))
        ));
    }
    for r in &w.reps {
        assert_eq!(r.role_of(&w.id(1)), Some(Role::Manager));
        assert_eq!(r.role_of(&w.id(2)), Some(Role::Manager));
    }
    // The creator outranks both.
    let removal = w.reps[0]
        .remove(&w.keys[0], two, Some(Role::Editor))
        .unwrap();
    w.converge();
    assert_eq!(w.outcome_everywhere(&removal.id()), Outcome::Accepted);
    assert!(w
        .reps
        .iter()
        .all(|r| r.role_of(&w.id(2)) == Some(Role::Editor)));
    w.assert_identical();
}

#[test]
fn forged_unknown_replayed_duplicate_and_equivocating_envelopes() {
    let mut w = World::new(7, &[Role::Editor]);
    let mut shadow = w.reps[1].clone();
    let env = w.write(1, "genuine", 1);
    // Duplicate: same bytes again.
    assert_eq!(w.reps[1].ingest(env.clone()), Ok(Outcome::Duplicate));
    // Forged: someone else's signature on editor 1's header.
    let stranger = DeviceKeys::generate(&mut w.rng);
    let mut body = env.body().clone();
    body.seq += 1;
    body.prev = Some(env.id());
    let forged = Envelope::sign(body, &stranger);
    assert_eq!(
        w.reps[0].ingest(forged.clone()),
        Err(IngestError::BadSignature)
    );
    assert!(w.reps[0].get(&forged.id()).is_none(), "refused, not kept");
    // Unknown device: a well-signed envelope from a non-member.
    let epoch = w.reps[0].current_epoch().unwrap();
    let key = w.reps[0].folder_key(&w.keys[0]).unwrap();
    let mut scratch = Space::new(w.reps[0].id());
    sync(&w.reps[0], &mut scratch, &stranger, 1);
    let change = add_item_change(&scratch, &stranger, "intruder", 2);
    let unknown = force_content(&mut scratch, &stranger, &key, epoch, &change, &mut w.rng);
    assert_eq!(
        w.reps[0].ingest(unknown.clone()),
        Err(IngestError::UnknownAuthor)
    );
    assert!(w.reps[0].get(&unknown.id()).is_none(), "refused, not kept");
    // Replay into another space: refused.
    let mut other = Space::new(SpaceId([9; 32]));
    assert_eq!(other.ingest(env.clone()), Err(IngestError::WrongSpace));
    // Equivocation: editor 1 signs a second envelope at an existing seq
    // (and the same Automerge seq). The creator had built on the genuine
    // one: it stays, whatever the ids; the twin is quarantined.
    let twin = write(&mut shadow, &w.keys[1], "twin", 9, &mut w.rng);
    assert_eq!((twin.seq(), twin.body().prev), (env.seq(), env.body().prev));
    w.converge();
    let on_top = w.write(0, "on top", 10);
    w.reps[0].ingest(twin.clone()).unwrap();
    w.converge();
    assert_eq!(w.outcome_everywhere(&env.id()), Outcome::Accepted);
    assert_eq!(w.outcome_everywhere(&on_top.id()), Outcome::Accepted);
    assert_eq!(
        w.outcome_everywhere(&twin.id()),
        Outcome::Quarantined(Reason::Equivocation { seq: 1 })
    );
    assert!(w
        .reps
        .iter()
        .all(|r| r.forked().contains(&(r.id(), w.id(1)))));
    w.assert_identical();
}

#[test]
fn removed_member_cannot_decrypt_later_content_with_any_key_it_received() {
    let mut w = World::new(8, &[Role::Editor, Role::Member]);
    w.write(0, "before", 1);
    w.converge();
    // Every key device 2 ever received: each epoch wrap addressed to it,
    // and everything its replica can open.
    let removed = 2;
    w.reps[0]
        .remove(
            &w.keys[0],
            Principal::Device(w.keys[removed].device_id()),
            None,
        )
        .unwrap();
    let (_, k) = w.reps[0].rotate(&w.keys[0], &mut w.rng).unwrap();
    w.keyring.insert(w.reps[0].current_epoch().unwrap(), k);
    let secret = w.write(0, "after", 2);
    let editor_write = {
        w.converge();
        w.write(1, "editor after", 3)
    };
    w.converge();
    let r = &w.reps[removed];
    let mut got: Vec<FolderKey> = r.epoch_keys(&w.keys[removed]).into_values().collect();
    for epoch in r.state().folder.epochs.values() {
        if let Some(sealed) = epoch.wraps.get(&w.id(removed)) {
            got.push(w.keys[removed].open_folder_key(sealed).unwrap());
        }
    }
    assert!(!got.is_empty());
    for key in &got {
        assert!(Space::open_content(&secret, key).is_err());
        assert!(Space::open_content(&editor_write, key).is_err());
    }
    assert!(r.open(&w.keys[removed], &secret).is_err());
    // Current members read everything, old content included.
    for i in [0, 1] {
        let items = doc_of(&w.reps[i], &w.keys[i]).items();
        assert_eq!(items.len(), 3, "replica {i}");
    }
    w.assert_identical();
}

#[test]
fn concurrent_rotations_resolve_deterministically_and_stay_readable() {
    let mut w = World::new(9, &[Role::Manager, Role::Manager, Role::Member]);
    w.write(1, "first", 1);
    w.converge();
    let (ea, ka) = w.reps[1].rotate(&w.keys[1], &mut w.rng).unwrap();
    let (eb, kb) = w.reps[2].rotate(&w.keys[2], &mut w.rng).unwrap();
    w.keyring.insert(ea.id(), ka);
    w.keyring.insert(eb.id(), kb);
    let a = w.write(1, "under a", 2);
    let b = w.write(2, "under b", 3);
    w.converge();
    let current = w.reps[0].current_epoch().unwrap();
    assert!(current == ea.id() || current == eb.id());
    assert!(w.reps.iter().all(|r| r.current_epoch() == Some(current)));
    assert_eq!(w.outcome_everywhere(&a.id()), Outcome::Accepted);
    assert_eq!(w.outcome_everywhere(&b.id()), Outcome::Accepted);
    // Every member (even the read-only one) reads both branches.
    for i in 0..4 {
        assert_eq!(
            doc_of(&w.reps[i], &w.keys[i]).items().len(),
            3,
            "replica {i}"
        );
    }
    // A later rotation chains both branches for future members.
    let (_, k) = w.reps[0].rotate(&w.keys[0], &mut w.rng).unwrap();
    w.keyring.insert(w.reps[0].current_epoch().unwrap(), k);
    w.converge();
    w.assert_identical();
}

#[test]
fn personal_folder_becomes_shared_by_adding_members_nothing_copied() {
    let mut rng = rng(10);
    let owner = DeviceKeys::generate(&mut rng);
    let friend = DeviceKeys::generate(&mut rng);
    let key = FolderKey::generate(&mut rng);
    let (mut space, _) = Space::create(&owner, &key, &mut rng).unwrap();
    for n in 0..3 {
        write(&mut space, &owner, &format!("item {n}"), n, &mut rng);
    }
    let before: Vec<EnvelopeId> = space.accepted_content().map(|e| e.id()).collect();
    let id = space.id();
    space
        .grant(
            &owner,
            Principal::Device(friend.device_id()),
            Role::Editor,
            Some(friend.exchange_public()),
            Some(&key),
            &mut rng,
        )
        .unwrap();
    assert_eq!(space.id(), id, "same folder");
    let after: Vec<EnvelopeId> = space.accepted_content().map(|e| e.id()).collect();
    assert_eq!(before, after, "nothing re-encrypted or copied");
    let mut theirs = Space::new(id);
    sync(&space, &mut theirs, &friend, 3);
    assert_eq!(doc_of(&theirs, &friend).items().len(), 3);
    assert_eq!(theirs.role_of(&friend.device_id()), Some(Role::Editor));
}

/// A team: founder (admin), an admin, users in a group; a folder shared
/// with the group; a device revocation and a group removal.
#[test]
fn team_roster_groups_devices_and_revocation() {
    let mut rng = rng(11);
    let founder = DeviceKeys::generate(&mut rng);
    let ann_laptop = DeviceKeys::generate(&mut rng);
    let ann_phone = DeviceKeys::generate(&mut rng);
    let bob = DeviceKeys::generate(&mut rng);
    let u = |s: &str| UserId::new(s).unwrap();
    let (mut roster, _) = Space::create_team(
        &founder,
        u("boss@acme.test"),
        "Acme",
        transport_of(&founder),
        &mut rng,
    )
    .unwrap();
    for (user, dev) in [
        ("ann@acme.test", &ann_laptop),
        ("ann@acme.test", &ann_phone),
        ("bob@acme.test", &bob),
    ] {
        if !roster.state().team.users.contains(&u(user)) {
            roster
                .roster_op(&founder, RosterOp::AddUser { user: u(user) })
                .unwrap();
        }
        roster
            .roster_op(
                &founder,
                RosterOp::add_device(&roster.id(), u(user), dev, &transport_seed_of(dev)),
            )
            .unwrap();
    }
    for user in ["ann@acme.test", "bob@acme.test"] {
        roster
            .roster_op(
                &founder,
                RosterOp::AddToGroup {
                    group: "it".into(),
                    user: u(user),
                },
            )
            .unwrap();
    }
    // A non-admin cannot add users.
    assert!(roster
        .roster_op(&bob, RosterOp::AddUser { user: u("eve@x.y") })
        .is_err());
    // The founder's folder, shared with the group as Item Managers.
    let key = FolderKey::generate(&mut rng);
    let (mut folder, _) = Space::create_in_team(&founder, &key, Some(&roster), &mut rng).unwrap();
    let mut keyring = BTreeMap::new();
    keyring.insert(folder.current_epoch().unwrap(), key.clone());
    folder
        .grant(
            &founder,
            Principal::Group("it".into()),
            Role::Editor,
            None,
            Some(&key),
            &mut rng,
        )
        .unwrap();
    assert!(folder.missing_wraps().is_empty());
    let mut phone = Space::new_in_team(folder.id(), Some(roster.id()));
    sync(&folder, &mut phone, &ann_phone, 1);
    let mut bobs = Space::new_in_team(folder.id(), Some(roster.id()));
    sync(&folder, &mut bobs, &bob, 2);
    let ok = write(&mut phone, &ann_phone, "from ann's phone", 1, &mut rng);
    let b1 = write(&mut bobs, &bob, "from bob", 2, &mut rng);
    sync(&phone, &mut folder, &founder, 3);
    sync(&bobs, &mut folder, &founder, 4);
    assert!(folder.is_accepted(&ok.id()) && folder.is_accepted(&b1.id()));
    // Ann's phone is lost: the founder revokes it in the roster (cutoff:
    // what the founder holds of the folder), then rotates the folder key.
    let cutoffs = BTreeMap::from([(folder.id(), folder.cutoff())]);
    let revoke = folder
        .roster_op(
            &founder,
            RosterOp::RevokeDevice {
                device: ann_phone.device_id(),
                cutoffs,
            },
        )
        .unwrap();
    assert!(folder.rotation_due());
    let (_, k2) = folder.rotate(&founder, &mut rng).unwrap();
    keyring.insert(folder.current_epoch().unwrap(), k2);
    // Bob is taken out of the group: he loses write access here too.
    let cutoffs = BTreeMap::from([(folder.id(), folder.cutoff())]);
    let out = folder
        .roster_op(
            &founder,
            RosterOp::RemoveFromGroup {
                group: "it".into(),
                user: u("bob@acme.test"),
                cutoffs,
            },
        )
        .unwrap();
    let (_, k3) = folder.rotate(&founder, &mut rng).unwrap();
    keyring.insert(folder.current_epoch().unwrap(), k3);
    // Meanwhile, offline: the phone and bob keep writing under old keys.
    let stolen = write(&mut phone, &ann_phone, "thief", 5, &mut rng);
    let late = write(&mut bobs, &bob, "bob late", 6, &mut rng);
    sync(&phone, &mut folder, &founder, 5);
    sync(&bobs, &mut folder, &founder, 6);
    sync(&folder, &mut phone, &ann_phone, 7);
    sync(&folder, &mut bobs, &bob, 8);
    for s in [&folder, &phone, &bobs] {
        assert_eq!(
            s.outcome_of(&stolen.id()),
            Some(Outcome::Quarantined(Reason::Removed { by: revoke.id() }))
        );
        assert_eq!(
            s.outcome_of(&late.id()),
            Some(Outcome::Quarantined(Reason::Removed { by: out.id() }))
        );
        assert!(s.is_accepted(&ok.id()) && s.is_accepted(&b1.id()));
        assert_eq!(s.role_of(&ann_phone.device_id()), None);
        assert_eq!(s.role_of(&ann_laptop.device_id()), Some(Role::Editor));
        assert_eq!(s.role_of(&bob.device_id()), None);
    }
    assert_eq!(digest(&folder, &keyring), digest(&phone, &keyring));
    assert_eq!(digest(&folder, &keyring), digest(&bobs, &keyring));
    // The phone's keys open nothing of the new epochs.
    assert!(folder
        .epoch_key(&ann_phone, &folder.current_epoch().unwrap())
        .is_err());
    // Ann's laptop was never wrapped before: a re-wrap hands it the key, and
    // the chain gives it the history.
    let mut laptop = Space::new_in_team(folder.id(), Some(roster.id()));
    sync(&folder, &mut laptop, &ann_laptop, 9);
    assert_eq!(doc_of(&laptop, &ann_laptop).items().len(), 2);
    // The founder cannot be removed by another admin; admins can repair.
    roster
        .roster_op(
            &founder,
            RosterOp::AddAdmin {
                user: u("ann@acme.test"),
            },
        )
        .unwrap();
    let mut annroster = Space::new_roster(roster.id());
    sync(&roster, &mut annroster, &ann_laptop, 10);
    assert!(annroster
        .roster_op(
            &ann_laptop,
            RosterOp::RemoveAdmin {
                user: u("boss@acme.test"),
                cutoffs: BTreeMap::new()
            }
        )
        .is_err());
}

#[test]
fn ranks_guard_the_creator_and_anyone_may_leave() {
    let mut w = World::new(12, &[Role::Manager, Role::Editor]);
    // A manager the creator appointed cannot remove the creator...
    let creator = Principal::Device(w.keys[0].device_id());
    assert!(w.reps[1].remove(&w.keys[1], creator, None).is_err());
    // ...but the editor may leave on its own.
    let me = Principal::Device(w.keys[2].device_id());
    w.reps[2].remove(&w.keys[2], me, None).unwrap();
    // And the creator cannot leave the folder without a manager: the
    // appointed manager remains, so it may.
    let creator = Principal::Device(w.keys[0].device_id());
    w.reps[0].remove(&w.keys[0], creator, None).unwrap();
    w.converge();
    assert!(w
        .reps
        .iter()
        .all(|r| r.role_of(&w.id(1)) == Some(Role::Manager)));
    assert!(w.reps.iter().all(|r| r.role_of(&w.id(0)).is_none()));
    // The last manager cannot leave.
    let last = Principal::Device(w.keys[1].device_id());
    assert!(w.reps[1].remove(&w.keys[1], last, None).is_err());
    w.assert_identical();
}

#[test]
fn a_late_removal_reports_revoked_content_for_a_rebuild() {
    let mut w = World::new(13, &[Role::Editor]);
    let seen = w.write(1, "seen", 1);
    w.converge();
    let removal = w.reps[0]
        .remove(&w.keys[0], Principal::Device(w.keys[1].device_id()), None)
        .unwrap();
    let late = w.write(1, "unseen", 2);
    // Replica 1 accepted its own write; the removal then arrives.
    assert!(w.reps[1].is_accepted(&late.id()));
    let report = w.reps[1].ingest_batch(vec![removal.clone()]);
    assert_eq!(report.outcomes, vec![Ok(Outcome::Accepted)]);
    assert_eq!(report.revoked, vec![late.id()]);
    assert!(report.rebuild);
    assert!(w.reps[1].is_accepted(&seen.id()));
    assert_eq!(
        w.reps[1].outcome_of(&late.id()),
        Some(Outcome::Quarantined(Reason::Removed { by: removal.id() }))
    );
}

#[test]
fn a_team_admin_repairs_a_folder_it_is_not_a_member_of() {
    let mut rng = rng(14);
    let boss = DeviceKeys::generate(&mut rng);
    let ann = DeviceKeys::generate(&mut rng);
    let u = |s: &str| UserId::new(s).unwrap();
    let (mut roster, _) =
        Space::create_team(&boss, u("boss@x.test"), "X", transport_of(&boss), &mut rng).unwrap();
    roster
        .roster_op(
            &boss,
            RosterOp::AddUser {
                user: u("ann@x.test"),
            },
        )
        .unwrap();
    roster
        .roster_op(
            &boss,
            RosterOp::add_device(
                &roster.id(),
                u("ann@x.test"),
                &ann,
                &transport_seed_of(&ann),
            ),
        )
        .unwrap();
    // Ann creates a folder; the boss is no member of it.
    let key = FolderKey::generate(&mut rng);
    let (folder, _) = Space::create_in_team(&ann, &key, Some(&roster), &mut rng).unwrap();
    let mut bosses = Space::new_in_team(folder.id(), Some(roster.id()));
    sync(&folder, &mut bosses, &boss, 1);
    assert_eq!(bosses.role_of(&boss.device_id()), None);
    assert!(bosses.can_manage(&boss.device_id()));
    // The admin grants itself Folder Manager (no key to wrap yet)...
    bosses
        .grant(
            &boss,
            Principal::User(u("boss@x.test")),
            Role::Manager,
            None,
            None,
            &mut rng,
        )
        .unwrap();
    assert_eq!(bosses.missing_wraps(), vec![boss.device_id()]);
    // ...and Ann's device, seeing the member without a wrap, re-wraps.
    let mut anns = folder;
    sync(&bosses, &mut anns, &ann, 2);
    anns.rewrap(&ann, &mut rng).unwrap().unwrap();
    sync(&anns, &mut bosses, &boss, 3);
    assert!(bosses.folder_key(&boss).is_ok());
    assert!(bosses.missing_wraps().is_empty());
}

#[test]
fn usage_events_come_from_members_only() {
    let mut w = World::new(15, &[Role::Member]);
    let key = w.reps[1].folder_key(&w.keys[1]).unwrap();
    let used = w.reps[1]
        .seal_usage(&w.keys[1], &key, b"revealed item 1", &mut w.rng)
        .unwrap();
    // After removal, the device can no longer record usage.
    let target = Principal::Device(w.keys[1].device_id());
    w.converge();
    w.reps[0].remove(&w.keys[0], target, None).unwrap();
    w.converge();
    assert!(w.reps[1]
        .seal_usage(&w.keys[1], &key, b"again", &mut w.rng)
        .is_err());
    assert_eq!(w.outcome_everywhere(&used.id()), Outcome::Accepted);
    assert!(w.reps.iter().all(|r| r.accepted_usage().count() == 1));
    assert_eq!(
        Space::open_content(&used, &key).unwrap().as_slice(),
        b"revealed item 1"
    );
    w.assert_identical();
}

#[test]
fn two_changes_of_one_automerge_actor_with_one_seq_are_both_quarantined() {
    let mut w = World::new(16, &[Role::Editor]);
    let first = w.write(1, "first", 1);
    // A second change at the same Automerge seq (a device that lost its
    // document and did not start a new incarnation), in a valid envelope.
    let mut fresh = coffer_crdt::FolderDoc::new(w.id(1));
    let change = fresh.set_name("same actor, same seq", 2).unwrap();
    let key = w.reps[1].folder_key(&w.keys[1]).unwrap();
    let second = w.reps[1]
        .seal_content(&w.keys[1], &key, &change, &mut w.rng)
        .unwrap_or_else(|_| {
            let epoch = w.reps[1].current_epoch().unwrap();
            force_content(&mut w.reps[1], &w.keys[1], &key, epoch, &change, &mut w.rng)
        });
    w.converge();
    for e in [&first, &second] {
        assert_eq!(
            w.outcome_everywhere(&e.id()),
            Outcome::Quarantined(Reason::Equivocation { seq: 1 })
        );
    }
    w.assert_identical();
}

/// Gap "hole 3": validity by induction on (rank, id). Two managers (rank
/// 1001) each appointed a manager (rank 1002). In two partitions each
/// manager removes the *other's* appointee, while the appointees try to
/// remove each other (equal ranks: unauthorised) and appoint someone new.
/// After the merge, on every replica: both managers' removals stand
/// (nothing of a stronger rank touched them), they void the appointees'
/// concurrent grants (beyond the cutoff, no right left), whatever the
/// envelope ids; the folder stays manageable.
#[test]
fn two_partition_cross_appointment_resolves_by_rank() {
    use Role::*;
    let mut w = World::new(21, &[Manager, Manager, Member, Member, Member, Member]);
    let dev = |w: &World, i: usize| Principal::Device(w.keys[i].device_id());
    // M1 (1) appoints A1 (3), M2 (2) appoints A2 (4).
    for (m, a) in [(1, 3), (2, 4)] {
        let p = dev(&w, a);
        w.reps[m]
            .grant(&w.keys[m], p, Manager, None, None, &mut w.rng)
            .unwrap();
    }
    w.converge();
    for a in [3, 4] {
        let g = w.reps[0].state().folder.grants[&dev(&w, a)];
        assert_eq!((g.role, g.rank), (Manager, 1002));
    }
    // Partition {1, 3} | {2, 4}: nothing crosses until the merge.
    let p = dev(&w, 4);
    let r1 = w.reps[1].remove(&w.keys[1], p, None).unwrap();
    let p = dev(&w, 3);
    let r2 = w.reps[2].remove(&w.keys[2], p, None).unwrap();
    let remove = |w: &World, i: usize, target: usize| {
        ControlOp::Membership(MembershipOp::Remove {
            principal: dev(w, target),
            to: None,
            cutoff: w.reps[i].cutoff(),
        })
    };
    let op = remove(&w, 3, 4);
    let (ra1, _) = w.reps[3].write_control(&w.keys[3], &op);
    let (p, x) = (dev(&w, 5), w.keys[5].exchange_public());
    let g1 = w.reps[3]
        .grant(&w.keys[3], p, Manager, Some(x), None, &mut w.rng)
        .unwrap();
    let op = remove(&w, 4, 3);
    let (ra2, _) = w.reps[4].write_control(&w.keys[4], &op);
    let (p, x) = (dev(&w, 6), w.keys[6].exchange_public());
    let g2 = w.reps[4]
        .grant(&w.keys[4], p, Editor, Some(x), None, &mut w.rng)
        .unwrap();
    w.converge();
    assert_eq!(w.outcome_everywhere(&r1.id()), Outcome::Accepted);
    assert_eq!(w.outcome_everywhere(&r2.id()), Outcome::Accepted);
    for (op, by) in [(&g1, &r2), (&g2, &r1)] {
        assert_eq!(
            w.outcome_everywhere(&op.id()),
            Outcome::Quarantined(Reason::Voided { by: by.id() })
        );
    }
    for op in [&ra1, &ra2] {
        assert!(matches!(
            w.outcome_everywhere(&op.id()),
            Outcome::Quarantined(Reason::Unauthorized(_))
        ));
    }
    for r in &w.reps {
        for m in [0, 1, 2] {
            assert_eq!(r.role_of(&w.id(m)), Some(Manager));
        }
        assert_eq!(r.role_of(&w.id(3)), None);
        assert_eq!(r.role_of(&w.id(4)), None);
        assert_eq!(r.role_of(&w.id(5)), Some(Member));
        assert_eq!(r.role_of(&w.id(6)), Some(Member));
    }
    w.assert_identical();
    // Still manageable: M2 rotates the key away from the removed appointees
    // and re-appoints A1 as an editor (observed-remove: the re-add has the
    // removal in its past, so it stands).
    let (_, k) = w.reps[2].rotate(&w.keys[2], &mut w.rng).unwrap();
    w.keyring
        .insert(w.reps[2].current_epoch().unwrap(), k.clone());
    let (p, x) = (dev(&w, 3), w.keys[3].exchange_public());
    w.reps[2]
        .grant(&w.keys[2], p, Editor, Some(x), Some(&k), &mut w.rng)
        .unwrap();
    w.converge();
    assert!(w.reps.iter().all(|r| r.role_of(&w.id(3)) == Some(Editor)));
    w.assert_identical();
}

/// A team with admin `boss` (device 0) and users ann (1), bob (2), mgr (3);
/// ann and bob in group "it". A folder founded by boss shared with "it" as
/// Item Managers and with mgr as Folder Manager; every replica synced.
fn team_folder(seed: u64) -> (Vec<DeviceKeys>, Vec<Space>, rand_chacha::ChaCha20Rng) {
    let mut rng = rng(seed);
    let keys: Vec<DeviceKeys> = (0..4).map(|_| DeviceKeys::generate(&mut rng)).collect();
    let names = ["boss", "ann", "bob", "mgr"];
    let u = |i: usize| UserId::new(&format!("{}@t.test", names[i])).unwrap();
    let (mut roster, _) =
        Space::create_team(&keys[0], u(0), "T", transport_of(&keys[0]), &mut rng).unwrap();
    for (i, k) in keys.iter().enumerate().skip(1) {
        roster
            .roster_op(&keys[0], RosterOp::AddUser { user: u(i) })
            .unwrap();
        roster
            .roster_op(
                &keys[0],
                RosterOp::add_device(&roster.id(), u(i), k, &transport_seed_of(k)),
            )
            .unwrap();
    }
    for i in [1, 2] {
        roster
            .roster_op(
                &keys[0],
                RosterOp::AddToGroup {
                    group: "it".into(),
                    user: u(i),
                },
            )
            .unwrap();
    }
    let key = FolderKey::generate(&mut rng);
    let (mut folder, _) = Space::create_in_team(&keys[0], &key, Some(&roster), &mut rng).unwrap();
    folder
        .grant(
            &keys[0],
            Principal::Group("it".into()),
            Role::Editor,
            None,
            Some(&key),
            &mut rng,
        )
        .unwrap();
    folder
        .grant(
            &keys[0],
            Principal::User(u(3)),
            Role::Manager,
            None,
            Some(&key),
            &mut rng,
        )
        .unwrap();
    let mut reps = vec![folder];
    for (i, k) in keys.iter().enumerate().skip(1) {
        let mut s = Space::new_in_team(reps[0].id(), Some(roster.id()));
        sync(&reps[0], &mut s, k, i as u64);
        reps.push(s);
    }
    (keys, reps, rng)
}

/// Gap "hole 6": a removal voids a change only if its author has no write
/// right left in R(past(c) ∪ past(r) ∪ {r}). Boss takes ann and bob out of
/// group "it"; concurrently mgr grants ann Item Manager directly, and ann
/// writes after seeing that grant (but not the removal). In the final
/// linear order the removal applies before the grant, so judging "at the
/// removal" would void ann's write; judged in the union of both pasts, ann
/// still writes through her own grant. Bob, with no other grant, is removed.
#[test]
fn effective_rights_after_a_removal_count_grants_the_writer_had_seen() {
    let (keys, mut reps, mut rng) = team_folder(22);
    let u = |s: &str| UserId::new(&format!("{s}@t.test")).unwrap();
    let folder = reps[0].id();
    let cutoffs = BTreeMap::from([(folder, reps[0].cutoff())]);
    let out_ann = reps[0]
        .roster_op(
            &keys[0],
            RosterOp::RemoveFromGroup {
                group: "it".into(),
                user: u("ann"),
                cutoffs: cutoffs.clone(),
            },
        )
        .unwrap();
    let out_bob = reps[0]
        .roster_op(
            &keys[0],
            RosterOp::RemoveFromGroup {
                group: "it".into(),
                user: u("bob"),
                cutoffs,
            },
        )
        .unwrap();
    let grant = reps[3]
        .grant(
            &keys[3],
            Principal::User(u("ann")),
            Role::Editor,
            None,
            None,
            &mut rng,
        )
        .unwrap();
    let (m, a) = two(&mut reps, 3, 1);
    sync(m, a, &keys[1], 1);
    let ann = write(&mut reps[1], &keys[1], "ann, direct grant", 5, &mut rng);
    let bob = write(&mut reps[2], &keys[2], "bob, group only", 6, &mut rng);
    assert!(ann.body().context.contains(&grant.id()));
    // Everyone gets everything.
    for round in 0..2 {
        for i in 0..4 {
            for (j, k) in keys.iter().enumerate() {
                if i != j {
                    let (f, t) = two(&mut reps, i, j);
                    sync(f, t, k, (round * 100 + i * 10 + j) as u64);
                }
            }
        }
    }
    for r in &reps {
        assert!(r.is_accepted(&out_ann.id()) && r.is_accepted(&grant.id()));
        assert_eq!(r.outcome_of(&ann.id()), Some(Outcome::Accepted));
        assert_eq!(
            r.outcome_of(&bob.id()),
            Some(Outcome::Quarantined(Reason::Removed { by: out_bob.id() }))
        );
        assert_eq!(r.role_of(&keys[1].device_id()), Some(Role::Editor));
        assert_eq!(r.role_of(&keys[2].device_id()), None);
        assert_eq!(r.digest(), reps[0].digest());
    }
}

/// Gap "hole 7": a rotation's wrap set must be exactly the member devices
/// of its context. Leaving a member out, or wrapping to a stranger, is
/// quarantined on every replica with the reason; the exact set is accepted.
#[test]
fn rotation_wraps_must_be_exactly_the_member_devices() {
    use coffer_crdt::ops::KeyWrap;
    let mut w = World::new(23, &[Role::Manager, Role::Member]);
    let stranger = DeviceKeys::generate(&mut w.rng);
    let key = FolderKey::generate(&mut w.rng);
    let wrap = |k: &DeviceKeys, rng: &mut rand_chacha::ChaCha20Rng| KeyWrap {
        device: k.device_id(),
        sealed: key.seal_to(&k.exchange_public(), rng).unwrap(),
    };
    let members: Vec<KeyWrap> = (0..3).map(|i| wrap(&w.keys[i], &mut w.rng)).collect();
    let omits = members[..2].to_vec();
    let mut extra = members.clone();
    extra.push(wrap(&stranger, &mut w.rng));
    let rotate = |wraps: Vec<KeyWrap>| {
        ControlOp::Membership(MembershipOp::Rotate {
            wraps,
            chain: vec![],
            cutoffs: vec![],
        })
    };
    // The honest API refuses to publish either.
    assert!(w.reps[1]
        .propose(&w.keys[1], &rotate(omits.clone()))
        .is_err());
    let (bad1, _) = w.reps[1].write_control(&w.keys[1], &rotate(omits));
    let (bad2, _) = w.reps[1].write_control(&w.keys[1], &rotate(extra));
    w.converge();
    assert_eq!(
        w.outcome_everywhere(&bad1.id()),
        Outcome::Quarantined(Reason::Unauthorized(
            "a rotation leaves a member device without the new key".into()
        ))
    );
    assert_eq!(
        w.outcome_everywhere(&bad2.id()),
        Outcome::Quarantined(Reason::Unauthorized(
            "a rotation wraps the key to a device that is not a member".into()
        ))
    );
    let genesis = w.reps[0].state().folder.genesis.unwrap();
    assert!(w.reps.iter().all(|r| r.current_epoch() == Some(genesis)));
    let (good, _) = w.reps[1].write_control(&w.keys[1], &rotate(members));
    w.converge();
    assert_eq!(w.outcome_everywhere(&good.id()), Outcome::Accepted);
    assert!(w.reps.iter().all(|r| r.current_epoch() == Some(good.id())));
    w.keyring.insert(good.id(), key.clone());
    w.assert_identical();
}

/// Gap "hole 4", as issue 20 closed it: an equivocating editor signs two
/// real, different changes at one seq (same Automerge actor and seq too).
/// A fork is evidence, not a tie-break: the branch another user built on
/// stays on every replica whatever the ids, the other is quarantined, and
/// every replica marks the chain as forked.
#[test]
fn a_fork_keeps_the_branch_another_user_built_on() {
    let mut w = World::new(24, &[Role::Editor, Role::Editor]);
    w.write(1, "before", 1);
    w.converge();
    let mut shadow = w.reps[1].clone();
    let a = w.write(1, "branch a", 2);
    let b = write(&mut shadow, &w.keys[1], "branch b", 3, &mut w.rng);
    assert_eq!((a.seq(), a.body().prev), (b.seq(), b.body().prev));
    let (a_meta, b_meta) = (
        coffer_crdt::ChangeMeta::from_change(&w.reps[1].open(&w.keys[1], &a).unwrap()).unwrap(),
        coffer_crdt::ChangeMeta::from_change(&shadow.open(&w.keys[1], &b).unwrap()).unwrap(),
    );
    assert_eq!((&a_meta.actor, a_meta.seq), (&b_meta.actor, b_meta.seq));
    // Editor 2 sees branch b first and builds on it.
    sync(&shadow, &mut w.reps[2], &w.keys[2], 1);
    let on_b = w.write(2, "on b", 4);
    w.converge();
    assert_eq!(w.outcome_everywhere(&b.id()), Outcome::Accepted);
    assert_eq!(w.outcome_everywhere(&on_b.id()), Outcome::Accepted);
    assert_eq!(
        w.outcome_everywhere(&a.id()),
        Outcome::Quarantined(Reason::Equivocation { seq: a_meta.seq })
    );
    for i in 0..3 {
        let mut names: Vec<String> = doc_of(&w.reps[i], &w.keys[i])
            .items()
            .into_iter()
            .map(|it| it.name)
            .collect();
        names.sort();
        assert_eq!(names, ["before", "branch b", "on b"]);
        assert!(w.reps[i].forked().contains(&(w.reps[i].id(), w.id(1))));
    }
    w.assert_identical();
}

/// Gap "hole 5": the folder state tracks each device's incarnation. A
/// removal bumps it; once re-added, the device must write as the new
/// incarnation: a change under the old actor (whose quarantined past it
/// would extend) is quarantined as `StaleIncarnation`, the new one accepted.
#[test]
fn a_re_added_device_writes_as_a_new_incarnation() {
    let mut w = World::new(26, &[Role::Editor, Role::Editor]);
    let first = w.write(1, "first", 1);
    w.converge();
    assert!(w.reps.iter().all(|r| r.incarnation(&w.id(1)) == 0));
    let dev1 = Principal::Device(w.id(1));
    w.reps[0].remove(&w.keys[0], dev1.clone(), None).unwrap();
    let (_, k) = w.reps[0].rotate(&w.keys[0], &mut w.rng).unwrap();
    w.keyring
        .insert(w.reps[0].current_epoch().unwrap(), k.clone());
    let x = w.keys[1].exchange_public();
    w.reps[0]
        .grant(
            &w.keys[0],
            dev1,
            Role::Editor,
            Some(x),
            Some(&k),
            &mut w.rng,
        )
        .unwrap();
    w.converge();
    for r in &w.reps {
        assert_eq!(r.incarnation(&w.id(1)), 1);
        assert_eq!(r.state().folder.incarnations.get(&w.id(1)), Some(&1));
        assert_eq!(r.role_of(&w.id(1)), Some(Role::Editor));
    }
    let add = |doc: &mut coffer_crdt::FolderDoc, name: &str, n: u8| {
        doc.add_item(
            ItemId([n; 16]),
            ItemType::Note,
            name,
            &ItemEdit::default(),
            9,
        )
        .unwrap()
    };
    // The old actor: the honest API refuses; a stale client signs anyway.
    let stale_change = add(&mut doc_as(&w.reps[1], &w.keys[1], 0), "stale", 1);
    let key = w.reps[1].folder_key(&w.keys[1]).unwrap();
    assert_eq!(
        w.reps[1]
            .seal_content(&w.keys[1], &key, &stale_change, &mut w.rng)
            .unwrap_err(),
        coffer_crdt::SpaceError::StaleIncarnation { need: 1 }
    );
    let epoch = w.reps[1].current_epoch().unwrap();
    let stale = force_content(
        &mut w.reps[1],
        &w.keys[1],
        &key,
        epoch,
        &stale_change,
        &mut w.rng,
    );
    let fresh_change = add(&mut doc_as(&w.reps[1], &w.keys[1], 1), "fresh", 2);
    let fresh = w.reps[1]
        .seal_content(&w.keys[1], &key, &fresh_change, &mut w.rng)
        .unwrap();
    assert_eq!(fresh.body().change.as_ref().unwrap().incarnation, 1);
    w.converge();
    assert_eq!(w.outcome_everywhere(&first.id()), Outcome::Accepted);
    assert_eq!(
        w.outcome_everywhere(&stale.id()),
        Outcome::Quarantined(Reason::StaleIncarnation { got: 0, need: 1 })
    );
    assert_eq!(w.outcome_everywhere(&fresh.id()), Outcome::Accepted);
    // Key holders check payloads against headers.
    assert!(w.reps[2].binding_matches(&fresh, &fresh_change));
    assert!(!w.reps[2].binding_matches(&fresh, &stale_change));
    w.assert_identical();
}

/// Gap 6: acceptance and endorsement read plaintext headers only. A peer
/// holding no key at all (a locked daemon, a relay), fed the envelopes one
/// by one in a shuffled order or in one batch, reaches exactly the verdicts
/// of the members: the removed editor's change that another user built on
/// is kept (endorsed), its lonely one quarantined.
#[test]
fn a_locked_peer_reaches_the_same_verdicts_from_headers_alone() {
    let mut w = World::new(27, &[Role::Editor, Role::Editor, Role::Member]);
    let doomed = w.write(1, "built upon", 1);
    let (a, b) = two(&mut w.reps, 1, 2);
    sync(a, b, &w.keys[2], 9);
    let builder = w.write(2, "on top", 2);
    let dev1 = Principal::Device(w.id(1));
    let removal = w.reps[0].remove(&w.keys[0], dev1, None).unwrap();
    let (_, k) = w.reps[0].rotate(&w.keys[0], &mut w.rng).unwrap();
    w.keyring.insert(w.reps[0].current_epoch().unwrap(), k);
    let lonely = w.write(1, "lonely", 3);
    w.converge();
    let nobody = DeviceKeys::generate(&mut w.rng);
    let mut one_by_one = Space::new(w.reps[0].id());
    sync(&w.reps[0], &mut one_by_one, &nobody, 5);
    let mut batch = Space::new(w.reps[0].id());
    batch.ingest_batch(w.reps[0].held().cloned().collect());
    for locked in [&one_by_one, &batch] {
        assert!(locked.epoch_keys(&nobody).is_empty(), "holds no key");
        assert_eq!(locked.digest(), w.reps[0].digest());
        assert_eq!(locked.quarantined(), w.reps[0].quarantined());
        assert_eq!(locked.outcome_of(&doomed.id()), Some(Outcome::Accepted));
        assert_eq!(locked.endorsed_by().get(&doomed.id()), Some(&builder.id()));
        assert_eq!(
            locked.outcome_of(&lonely.id()),
            Some(Outcome::Quarantined(Reason::Removed { by: removal.id() }))
        );
        let content: Vec<EnvelopeId> = locked.accepted_content().map(|e| e.id()).collect();
        let mut refreshed = w.reps[0].clone();
        refreshed.refresh();
        let theirs: Vec<EnvelopeId> = refreshed.accepted_content().map(|e| e.id()).collect();
        let mut mine = content.clone();
        mine.sort();
        let mut t = theirs.clone();
        t.sort();
        assert_eq!(mine, t);
    }
}

/// Chaos seeds 60306 and 60307: a folder removal keeps its cutoff when a
/// later roster removal of the same user comes first in the final pass.
/// mgr grants ann Item Manager directly and demotes group "it" (ann's other
/// grant) to Folder Member, then unshares ann having seen her first write
/// only; ann, not told, writes again. Later boss, having seen everything,
/// removes the user ann from the roster space. Roster ops never cite
/// folder heads and the pass takes ready removals first, so the user
/// removal comes before mgr's grant, which then gives nothing, and the
/// unshare finds no grant left to take. The unshare was made all the same,
/// and its cutoff (the remover's view) stands: ann's second write is beyond
/// it and stays quarantined, as on ann's laptop that never heard of the user
/// removal. Before the fix the pass refused the unshare ("the principal is
/// not a member") and only the user removal's cutoff, which covers the
/// write, counted: the write was accepted.
#[test]
fn a_removal_keeps_its_cutoff_when_a_concurrent_user_removal_comes_first() {
    let (keys, mut reps, mut rng) = team_folder(60306);
    let u = |s: &str| UserId::new(&format!("{s}@t.test")).unwrap();
    let ann = Principal::User(u("ann"));
    let grant = reps[3]
        .grant(&keys[3], ann.clone(), Role::Editor, None, None, &mut rng)
        .unwrap();
    let demote = reps[3]
        .remove(&keys[3], Principal::Group("it".into()), Some(Role::Member))
        .unwrap();
    let (m, a) = two(&mut reps, 3, 1);
    sync(m, a, &keys[1], 1);
    assert_eq!(reps[1].role_of(&keys[1].device_id()), Some(Role::Editor));
    let seen = write(&mut reps[1], &keys[1], "seen by mgr", 5, &mut rng);
    let (a, m) = two(&mut reps, 1, 3);
    sync(a, m, &keys[3], 2);
    let unshare = reps[3].remove(&keys[3], ann.clone(), None).unwrap();
    // Not told: still an Item Manager in its own view.
    let after = write(&mut reps[1], &keys[1], "after the unshare", 6, &mut rng);
    for (from, seed) in [(1, 3), (3, 4)] {
        let (f, b) = two(&mut reps, from, 0);
        sync(f, b, &keys[0], seed);
    }
    let folder = reps[0].id();
    let cutoffs = BTreeMap::from([(folder, reps[0].cutoff())]);
    assert!(cutoffs[&folder][&keys[1].device_id()].seq >= after.seq());
    // Written in the roster space, as a daemon does: it cites roster heads only.
    let mut roster = Space::new_roster(reps[0].team().unwrap());
    let roster_ops = reps[0].held().filter(|e| e.kind() == Kind::Roster);
    roster.ingest_batch(roster_ops.cloned().collect());
    let out = roster
        .roster_op(
            &keys[0],
            RosterOp::RemoveUser {
                user: u("ann"),
                cutoffs,
            },
        )
        .unwrap();
    assert!(!out.body().context.contains(&unshare.id()));
    reps[0].ingest(out.clone()).unwrap();
    for round in 0..2 {
        for i in 0..4 {
            for (j, k) in keys.iter().enumerate() {
                if i != j {
                    let (f, t) = two(&mut reps, i, j);
                    sync(f, t, k, (round * 100 + i * 10 + j) as u64);
                }
            }
        }
    }
    for r in &reps {
        assert_eq!(
            r.outcome_of(&after.id()),
            Some(Outcome::Quarantined(Reason::Removed { by: unshare.id() }))
        );
        assert_eq!(r.outcome_of(&seen.id()), Some(Outcome::Accepted));
        for op in [&grant, &demote, &unshare, &out] {
            assert_eq!(r.outcome_of(&op.id()), Some(Outcome::Accepted));
        }
        assert_eq!(r.digest(), reps[0].digest());
    }
    // What ann's laptop decided before it heard of the user removal.
    let mut alone = Space::new_in_team(folder, reps[0].team());
    let held: Vec<Envelope> = reps[0]
        .held()
        .filter(|e| e.id() != out.id())
        .cloned()
        .collect();
    alone.ingest_batch(held);
    assert_eq!(
        alone.outcome_of(&after.id()),
        Some(Outcome::Quarantined(Reason::Removed { by: unshare.id() }))
    );
}

/// Issue 18: a roster op that reaches a folder whose own ops are
/// concurrent with it (the folder's heads are membership ops) is judged
/// by the folder's fast path when it gives no right there; whatever path it
/// takes, the folder ends exactly as a fresh evaluation of everything it
/// holds. One folder with no removal, one where a member was removed
/// (the new device of that member must take the full evaluation and be
/// counted removed).
#[test]
fn roster_ops_reaching_a_folder_one_by_one_equal_one_evaluation() {
    let mut rng = rng(18);
    let founder = DeviceKeys::generate(&mut rng);
    let ann = DeviceKeys::generate(&mut rng);
    let bob = DeviceKeys::generate(&mut rng);
    let u = |s: &str| UserId::new(s).unwrap();
    let (mut roster, _) = Space::create_team(
        &founder,
        u("boss@acme.test"),
        "Acme",
        transport_of(&founder),
        &mut rng,
    )
    .unwrap();
    for (user, dev) in [("ann@acme.test", &ann), ("bob@acme.test", &bob)] {
        roster
            .roster_op(&founder, RosterOp::AddUser { user: u(user) })
            .unwrap();
        roster
            .roster_op(
                &founder,
                RosterOp::add_device(&roster.id(), u(user), dev, &transport_seed_of(dev)),
            )
            .unwrap();
    }
    roster
        .roster_op(
            &founder,
            RosterOp::AddToGroup {
                group: "it".into(),
                user: u("ann@acme.test"),
            },
        )
        .unwrap();
    let mut folders = Vec::new();
    for remove_bob in [false, true] {
        let key = FolderKey::generate(&mut rng);
        let (mut folder, _) =
            Space::create_in_team(&founder, &key, Some(&roster), &mut rng).unwrap();
        folder
            .grant(
                &founder,
                Principal::Group("it".into()),
                Role::Editor,
                None,
                Some(&key),
                &mut rng,
            )
            .unwrap();
        folder
            .grant(
                &founder,
                Principal::User(u("bob@acme.test")),
                Role::Editor,
                None,
                Some(&key),
                &mut rng,
            )
            .unwrap();
        let change = add_item_change(&folder, &ann, "shared", 3);
        let key = folder.folder_key(&ann).unwrap();
        folder.seal_content(&ann, &key, &change, &mut rng).unwrap();
        if remove_bob {
            folder
                .remove(&founder, Principal::User(u("bob@acme.test")), None)
                .unwrap();
        }
        folders.push(folder);
    }
    let carol = DeviceKeys::generate(&mut rng);
    let bob_phone = DeviceKeys::generate(&mut rng);
    let team = roster.id();
    let ops = [
        RosterOp::AddUser {
            user: u("carol@acme.test"),
        },
        RosterOp::add_device(
            &team,
            u("carol@acme.test"),
            &carol,
            &transport_seed_of(&carol),
        ),
        RosterOp::NameDevice {
            device: carol.device_id(),
            name: "carol's laptop".into(),
        },
        RosterOp::CreateGroup {
            group: "sales".into(),
        },
        // A group neither folder names: no right there.
        RosterOp::AddToGroup {
            group: "sales".into(),
            user: u("bob@acme.test"),
        },
        RosterOp::add_device(
            &team,
            u("bob@acme.test"),
            &bob_phone,
            &transport_seed_of(&bob_phone),
        ),
        // Gives a right in both folders: the full evaluation.
        RosterOp::AddToGroup {
            group: "it".into(),
            user: u("carol@acme.test"),
        },
        RosterOp::NameUser {
            user: u("carol@acme.test"),
            name: "Carol".into(),
            joined_ms: 9,
        },
        // Not the admin's to write: refused alike on both paths.
        RosterOp::RenameTeam {
            name: "Acme Ltd".into(),
        },
    ];
    let last = ops.len() - 1;
    for (n, op) in ops.into_iter().enumerate() {
        let env = if n == last {
            // Written by a non-admin device (a modified client).
            roster.write_control(&ann, &ControlOp::Roster(op)).0
        } else {
            roster.roster_op(&founder, op).unwrap()
        };
        for folder in &mut folders {
            folder.ingest(env.clone()).unwrap();
            let mut fresh = Space::new_in_team(folder.id(), Some(team));
            fresh.ingest_batch(folder.held().cloned().collect());
            assert_eq!(folder.state(), fresh.state(), "op {n}");
            assert_eq!(folder.control_heads(), fresh.control_heads(), "op {n}");
            for e in folder.held() {
                assert_eq!(
                    folder.outcome_of(&e.id()),
                    fresh.outcome_of(&e.id()),
                    "op {n}, envelope {:?}",
                    e.kind()
                );
            }
            assert_eq!(folder.members(), fresh.members(), "op {n}");
            // The next op written here cites what a fresh replica would.
            assert_eq!(folder.cutoff(), fresh.cutoff(), "op {n}");
        }
    }
    // Bob's new phone is a member where bob is, and not where he was removed.
    assert!(folders[0].members().contains_key(&bob_phone.device_id()));
    assert!(!folders[1].members().contains_key(&bob_phone.device_id()));
}

/// A batch of content from two writers, each change building on the
/// other's last (as a new device receives a folder's history, one chain
/// after the other), takes the fast path envelope by envelope and ends
/// where a whole evaluation of the same envelopes ends; a batch holding a
/// control op is judged whole.
#[test]
fn a_batch_of_chained_content_takes_the_fast_path_and_agrees_with_an_evaluation() {
    let mut w = World::new(41, &[Role::Editor]);
    let control: Vec<Envelope> = w.reps[0].held().cloned().collect();
    let mut content = Vec::new();
    for round in 0..12 {
        let i = round % 2;
        let env = w.write(i, &format!("item {round}"), 100 + round as i64);
        w.reps[1 - i].ingest(env.clone()).unwrap();
        content.push(env);
    }
    assert!(
        content
            .iter()
            .filter_map(|e| e.body().change.as_ref())
            .any(|h| !h.deps.is_empty()),
        "changes build on each other"
    );
    // One chain after the other, as a peer sends them.
    content.sort_by_key(|e| (e.author(), e.seq()));

    // A change whose author's previous envelope is a control op (the
    // founder's first) takes the slow path: it comes with the control ops.
    let after_control = |e: &Envelope| {
        e.body()
            .prev
            .is_some_and(|p| w.reps[0].get(&p).is_none_or(|x| x.kind() != Kind::Content))
    };
    let (firsts, rest): (Vec<Envelope>, Vec<Envelope>) =
        content.iter().cloned().partition(after_control);
    assert_eq!(firsts.len(), 1);
    let mut fresh = Space::new(w.reps[0].id());
    let first = fresh.ingest_batch(control.iter().chain(&firsts).cloned().collect());
    assert!(first.evaluated, "control ops are judged by an evaluation");
    let report = fresh.ingest_batch(rest);
    assert!(!report.evaluated, "{report:?}");
    assert!(report.outcomes.iter().all(|o| *o == Ok(Outcome::Accepted)));
    let mut judged = fresh.clone();
    judged.refresh();
    for env in control.iter().chain(&content) {
        assert_eq!(fresh.outcome_of(&env.id()), judged.outcome_of(&env.id()));
    }
    let mut fast_order: Vec<EnvelopeId> = fresh.content_order().to_vec();
    let mut full_order: Vec<EnvelopeId> = judged.content_order().to_vec();
    fast_order.sort();
    full_order.sort();
    assert_eq!(fast_order, full_order);
    assert_eq!(
        digest(&fresh, &w.keyring),
        digest(&w.reps[0], &w.keyring),
        "the same document"
    );

    // Control and content in one batch: one evaluation, same outcome.
    let mut whole = Space::new(w.reps[0].id());
    let all: Vec<Envelope> = control.iter().chain(&content).cloned().collect();
    let report = whole.ingest_batch(all);
    assert!(report.evaluated);
    for env in control.iter().chain(&content) {
        assert_eq!(whole.outcome_of(&env.id()), judged.outcome_of(&env.id()));
    }
}

/// The content fast path vs a full re-evaluation: an invalid but endorsable
/// change Z (a Folder Member's) whose dep N is not held yet is quarantined,
/// and the change C another user built on Z is pending (its parent is
/// missing). N, when it arrives, is named by no pending envelope, yet it
/// must not take the fast path: an evaluation now accepts Z (endorsed by
/// C) and C. (Found by a review: N was taken fast, Z and C left out.)
#[test]
fn a_change_an_endorsable_quarantined_change_waits_for_is_not_taken_fast() {
    // 0 owner, 1 Member (no write right), 2 Editor (V), 3 Editor (builder).
    let mut w = World::new(41, &[Role::Member, Role::Editor, Role::Editor]);
    w.converge();
    let epoch = w.reps[0].current_epoch().unwrap();
    let key = w.keyring[&epoch].clone();
    // V writes N.
    let n = w.write(2, "by V", 1);
    {
        let (a, b) = two(&mut w.reps, 2, 1);
        sync(a, b, &w.keys[1], 1);
    }
    // The member signs Z on top of N anyway.
    let zc = add_item_change(&w.reps[1], &w.keys[1], "by the member", 2);
    let z = force_content(&mut w.reps[1], &w.keys[1], &key, epoch, &zc, &mut w.rng);
    assert_eq!(z.body().change.as_ref().unwrap().deps, vec![n.id()]);
    {
        let (a, b) = two(&mut w.reps, 1, 3);
        sync(a, b, &w.keys[3], 2);
    }
    // Device 3 (another user) builds on Z.
    let cc = add_item_change(&w.reps[3], &w.keys[3], "by the builder", 3);
    let meta = ChangeMeta::from_change(&cc).unwrap();
    let header = ChangeHeader {
        incarnation: meta.incarnation(&w.keys[3].device_id()).unwrap(),
        seq: meta.seq,
        deps: vec![z.id()],
    };
    let c = force_content_as(
        &mut w.reps[3],
        &w.keys[3],
        &key,
        epoch,
        &cc,
        header,
        &mut w.rng,
    );
    assert!(w.reps[3].is_accepted(&z.id()), "endorsed at the builder");
    assert!(w.reps[3].is_accepted(&c.id()));
    // The owner's device gets Z and C first, then N.
    let d = &mut w.reps[0];
    d.ingest(z.clone()).unwrap();
    d.ingest(c.clone()).unwrap();
    d.ingest(n.clone()).unwrap();
    let mut full = d.clone();
    full.refresh();
    assert!(full.is_accepted(&z.id()) && full.is_accepted(&c.id()));
    assert_eq!(
        d.digest(),
        full.digest(),
        "fast path disagrees with a full evaluation"
    );
}

/// A forking author signs one Automerge change into two envelopes X < Y
/// (ids); this device sees Y first, learns its hash h -> Y and builds on
/// it; another user built on X, so X wins and Y goes. The change is still
/// in the document (through X) and still a head: the next write names X,
/// the accepted envelope. (Found by a review: it named Y and was refused.)
#[test]
fn a_write_after_a_fork_of_one_change_names_the_accepted_envelope() {
    let mut w = World::new(44, &[Role::Editor, Role::Editor, Role::Editor]);
    w.converge();
    let (x, y) = one_change_forked(&mut w);
    // Device 2 sees Y only and builds on it.
    w.reps[2].ingest(y.clone()).unwrap();
    let wb = write(&mut w.reps[2], &w.keys[2], "on Y", 3, &mut w.rng);
    assert_eq!(wb.body().change.as_ref().unwrap().deps, vec![y.id()]);
    // Device 3 builds on X, its change independent of its hash.
    let wc = built_on_by_three(&mut w, &x);
    // Device 2 gets X and W_C: X wins (lowest id built on), Y goes.
    w.reps[2].ingest(x.clone()).unwrap();
    w.reps[2].ingest(wc.clone()).unwrap();
    assert!(w.reps[2].is_accepted(&x.id()) && !w.reps[2].is_accepted(&y.id()));
    let change = add_item_change(&w.reps[2], &w.keys[2], "next", 5);
    let k = w.reps[2].folder_key(&w.keys[2]).unwrap();
    let r = w.reps[2].seal_content(&w.keys[2], &k, &change, &mut w.rng);
    assert!(r.is_ok(), "the next write fails: {r:?}");
    let deps = r.unwrap().body().change.clone().unwrap().deps;
    assert!(
        deps.contains(&x.id()) && !deps.contains(&y.id()),
        "{deps:?}"
    );
}

/// A new device's initial sync: the founder's control op written after its
/// content (a grant, as a key wrap for the new device is) comes first and
/// waits for the content before it. The content below it still takes the
/// fast path; the change it waits for goes to an evaluation, which takes
/// the op in.
#[test]
fn a_pending_control_op_above_the_content_leaves_the_content_below_fast() {
    let mut w = World::new(43, &[Role::Editor]);
    let control: Vec<Envelope> = w.reps[0].held().cloned().collect();
    let mut content = Vec::new();
    for round in 0..10 {
        content.push(w.write(0, &format!("item {round}"), 100 + round as i64));
    }
    let newcomer = DeviceKeys::generate(&mut w.rng);
    let key = w.reps[0].folder_key(&w.keys[0]).unwrap();
    let grant = w.reps[0]
        .grant(
            &w.keys[0],
            Principal::Device(newcomer.device_id()),
            Role::Member,
            Some(newcomer.exchange_public()),
            Some(&key),
            &mut w.rng,
        )
        .unwrap();
    let last = content.pop().unwrap();
    assert_eq!(grant.body().prev, Some(last.id()));
    let first = content.remove(0);

    let mut fresh = Space::new(w.reps[0].id());
    let with_control: Vec<Envelope> = control.iter().chain([&first, &grant]).cloned().collect();
    assert!(fresh.ingest_batch(with_control).evaluated);
    assert_eq!(fresh.outcome_of(&grant.id()), Some(Outcome::Pending));
    let middle = fresh.ingest_batch(content.clone());
    assert!(!middle.evaluated, "below the pending op: {middle:?}");
    assert!(middle.outcomes.iter().all(|o| *o == Ok(Outcome::Accepted)));
    // The pending op stays a head of its chain (what sync summaries and
    // hello digests are made of), as an evaluation keeps it.
    let mut judged = fresh.clone();
    judged.refresh();
    assert_eq!(fresh.chain_heads(), judged.chain_heads());
    assert_eq!(fresh.chain_tips(), judged.chain_tips());
    let end = fresh.ingest_batch(vec![last.clone()]);
    assert!(end.evaluated, "the op waits for it");
    assert_eq!(fresh.outcome_of(&grant.id()), Some(Outcome::Accepted));
    let mut judged = fresh.clone();
    judged.refresh();
    assert_eq!(fresh.chain_heads(), judged.chain_heads());
    assert_eq!(fresh.digest(), judged.digest());
    assert_eq!(digest(&fresh, &w.keyring), digest(&w.reps[0], &w.keyring));
}

/// An honest device that built on the losing side of a forger's fork has
/// a quarantined change (`BuildsOnQuarantined`, which an endorsement may
/// lift); its later changes still take the fast path, all but the one
/// whose prev is that change. (Found by a review: every later envelope of
/// its chain took a whole evaluation, on every device.)
#[test]
fn a_device_that_built_on_a_losing_fork_stays_on_the_fast_path() {
    let mut w = World::new(44, &[Role::Editor, Role::Editor, Role::Editor]);
    w.converge();
    let epoch = w.reps[0].current_epoch().unwrap();
    let key = w.keyring[&epoch].clone();
    let before = w.reps[1].clone();
    let ca = add_item_change(&w.reps[1], &w.keys[1], "forked", 1);
    let p = force_content(&mut w.reps[1], &w.keys[1], &key, epoch, &ca, &mut w.rng);
    let mut alt = before.clone();
    let cb = add_item_change(&alt, &w.keys[1], "forked other", 1);
    let q = force_content(&mut alt, &w.keys[1], &key, epoch, &cb, &mut w.rng);
    let (x, y) = if p.id() < q.id() { (p, q) } else { (q, p) };
    w.reps[2].ingest(y.clone()).unwrap();
    let on_y = w.write(2, "on Y", 3);
    w.reps[3].ingest(x.clone()).unwrap();
    w.write(3, "on X", 4);
    w.converge();
    assert!(matches!(
        w.reps[0].outcome_of(&on_y.id()),
        Some(Outcome::Quarantined(Reason::BuildsOnQuarantined))
    ));
    let mut evaluated = 0;
    for k in 0..5 {
        let env = w.write(2, &format!("later {k}"), 10 + k);
        let report = w.reps[0].ingest_batch(vec![env]);
        assert_eq!(report.outcomes[0], Ok(Outcome::Accepted));
        evaluated += usize::from(report.evaluated);
    }
    assert!(evaluated <= 1, "{evaluated} of 5 took an evaluation");
    let mut judged = w.reps[0].clone();
    judged.refresh();
    assert_eq!(w.reps[0].digest(), judged.digest());
}

/// One change in two envelopes X < Y: this device accepts X, then Y wins
/// (a change built on Y), then X again (another user built on X). Its next
/// write names X, the envelope accepted now. (Found by a review: the hash
/// stayed on Y and every write was refused while the change was a head.)
#[test]
fn a_write_after_a_fork_that_flips_back_names_the_accepted_envelope() {
    let mut w = World::new(44, &[Role::Editor, Role::Editor, Role::Editor]);
    w.converge();
    let (x, y) = one_change_forked(&mut w);
    w.reps[0].ingest(x.clone()).unwrap();
    w.reps[0].learn_metas(&w.keys[0]);
    assert!(w.reps[0].is_accepted(&x.id()));
    w.reps[2].ingest(y.clone()).unwrap();
    let on_y = w.write(2, "on Y", 3);
    w.reps[0].ingest(y.clone()).unwrap();
    w.reps[0].ingest(on_y.clone()).unwrap();
    assert!(w.reps[0].is_accepted(&y.id()) && !w.reps[0].is_accepted(&x.id()));
    w.reps[0].learn_metas(&w.keys[0]);
    let on_x = built_on_by_three(&mut w, &x);
    w.reps[0].ingest(on_x).unwrap();
    assert!(w.reps[0].is_accepted(&x.id()) && !w.reps[0].is_accepted(&y.id()));
    let change = add_item_change(&w.reps[0], &w.keys[0], "next", 5);
    let k = w.reps[0].folder_key(&w.keys[0]).unwrap();
    let r = w.reps[0].seal_content(&w.keys[0], &k, &change, &mut w.rng);
    assert!(r.is_ok(), "the next write fails: {r:?}");
    let deps = r.unwrap().body().change.clone().unwrap().deps;
    assert!(
        deps.contains(&x.id()) && !deps.contains(&y.id()),
        "{deps:?}"
    );
}

/// Device 1 (a forger) signs one Automerge change into two envelopes:
/// (X, Y), X the lower id.
fn one_change_forked(w: &mut World) -> (Envelope, Envelope) {
    let epoch = w.reps[0].current_epoch().unwrap();
    let key = w.keyring[&epoch].clone();
    let before = w.reps[1].clone();
    let change = add_item_change(&w.reps[1], &w.keys[1], "forked", 1);
    let p = force_content(&mut w.reps[1], &w.keys[1], &key, epoch, &change, &mut w.rng);
    let mut alt = before;
    let q = force_content(&mut alt, &w.keys[1], &key, epoch, &change, &mut w.rng);
    assert_ne!(p.id(), q.id());
    if p.id() < q.id() {
        (p, q)
    } else {
        (q, p)
    }
}

/// Device 3 builds on `x` by its header, with a change that does not
/// depend on x's (a lying header): what makes x the side built on.
fn built_on_by_three(w: &mut World, x: &Envelope) -> Envelope {
    let epoch = w.reps[0].current_epoch().unwrap();
    let key = w.keyring[&epoch].clone();
    let change = add_item_change(&w.reps[3], &w.keys[3], "by three", 4);
    w.reps[3].ingest(x.clone()).unwrap();
    let meta = ChangeMeta::from_change(&change).unwrap();
    let header = ChangeHeader {
        incarnation: meta.incarnation(&w.keys[3].device_id()).unwrap(),
        seq: meta.seq,
        deps: vec![x.id()],
    };
    force_content_as(
        &mut w.reps[3],
        &w.keys[3],
        &key,
        epoch,
        &change,
        header,
        &mut w.rng,
    )
}
