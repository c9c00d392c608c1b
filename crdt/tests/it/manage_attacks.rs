//! Red-team review of issue 17 (folder delete / leave / rename, item move,
//! trash empty): hostile insiders against the new ops. Tests that fail
//! show a finding; the others pin what holds.

use coffer_crdt::folder::ItemType;
use coffer_crdt::ops::{ControlOp, Cutoffs, MembershipOp, Principal, Role, RosterOp};
use coffer_crdt::replica::{ItemQuery, NewItemSpec, ShareChange};
use coffer_crdt::{ItemEdit, Space};

use crate::harness::rng;
use crate::net::World;

const ADA: usize = 0;
const BOB: usize = 1;
const CYD: usize = 2;

fn add(w: &mut World, i: usize, folder: &str, name: &str) {
    let spec = NewItemSpec {
        folder: Some(folder.into()),
        item_type: ItemType::Login,
        name: name.into(),
        fields: [("password".to_string(), format!("pw-{name}"))].into(),
        urls: vec![],
    };
    w.nodes[i].replica.add_item(spec, 10, &mut w.rng).unwrap();
    w.nodes[i].drain();
}

fn share(w: &mut World, folder: &str, who: Principal, change: ShareChange) {
    w.nodes[ADA]
        .replica
        .folder_share(folder, who, change, &mut w.rng)
        .unwrap();
    w.nodes[ADA].drain();
}

/// Admin Ada (founder) created Ops; Bob edits it through group "it"; Cyd is
/// a Folder Manager of it (granted by Ada: rank 1001). Ops holds `old`.
fn team() -> World {
    let mut w = World::new(&["ada", "bob", "cyd"], rng(4242));
    w.found_team(ADA, 0, &["it"]);
    w.admit(ADA, BOB, &["it"]);
    w.admit(ADA, CYD, &[]);
    w.nodes[ADA]
        .replica
        .create_folder("Ops", 5, &mut w.rng)
        .unwrap();
    w.nodes[ADA].drain();
    share(
        &mut w,
        "Ops",
        Principal::Group("it".into()),
        ShareChange::Share(Role::Editor),
    );
    let cyd = w.nodes[CYD].user();
    share(
        &mut w,
        "Ops",
        Principal::User(cyd),
        ShareChange::Share(Role::Manager),
    );
    add(&mut w, ADA, "Ops", "old");
    w.settle();
    assert_eq!(w.nodes[BOB].names("Ops"), ["old"]);
    assert_eq!(w.nodes[CYD].names("Ops"), ["old"]);
    w
}

fn space(w: &World, i: usize, folder: &str) -> Space {
    let id = w.nodes[i].replica.resolve_folder(Some(folder)).unwrap();
    w.nodes[i].replica.space(&id).unwrap().clone()
}

fn delete_op() -> ControlOp {
    ControlOp::Membership(MembershipOp::Delete)
}

/// Holds: Cyd's Delete, concurrent with Ada's removal of Cyd (which carries
/// Ada's cutoff), is voided: the cutoff rule applies to Delete.
#[test]
fn manage_attack_a_delete_concurrent_with_the_deleters_removal_is_voided() {
    let mut w = team();
    let mut cyd_before = space(&w, CYD, "Ops");
    let cyd = w.nodes[CYD].user();
    share(&mut w, "Ops", Principal::User(cyd), ShareChange::Unshare);
    let mut at_ada = space(&w, ADA, "Ops");
    let (del, _) = cyd_before.write_control(&w.nodes[CYD].keys, &delete_op());
    at_ada.ingest(del).unwrap();
    assert!(
        !at_ada.is_deleted(),
        "a removed manager's concurrent Delete took effect"
    );
}

/// Holds: the same with a demotion to Item Manager.
#[test]
fn manage_attack_a_delete_concurrent_with_the_deleters_demotion_is_voided() {
    let mut w = team();
    let mut cyd_before = space(&w, CYD, "Ops");
    let cyd = w.nodes[CYD].user();
    share(
        &mut w,
        "Ops",
        Principal::User(cyd),
        ShareChange::Role(Role::Editor),
    );
    let mut at_ada = space(&w, ADA, "Ops");
    let (del, _) = cyd_before.write_control(&w.nodes[CYD].keys, &delete_op());
    at_ada.ingest(del).unwrap();
    assert!(
        !at_ada.is_deleted(),
        "a demoted manager's concurrent Delete took effect"
    );
}

/// FINDING: a roster revocation that names no cutoff for Ops (its author,
/// say a second admin, does not hold Ops) is a weak removal until a rotation
/// in Ops supplies one. The revoked device signs a Delete with its old
/// context: it is "covered" and deletes Ops for everyone. No rotation ever
/// follows (`upkeep_keys` skips folders that are not open, and a deleted
/// folder is closed), and if one did, the rotator had already seen the
/// Delete, so its cutoff covers it. Delete is final: no admin can repair.
#[test]
fn manage_attack_a_revoked_devices_delete_in_the_weak_window_is_final() {
    let w = team();
    let cyd_dev = w.nodes[CYD].id();
    let mut cyd_before = space(&w, CYD, "Ops");
    let mut at_ada = space(&w, ADA, "Ops");
    let mut at_bob = space(&w, BOB, "Ops");
    let (revoke, _) = at_ada.write_control(
        &w.nodes[ADA].keys,
        &ControlOp::Roster(RosterOp::RevokeDevice {
            device: cyd_dev,
            cutoffs: Cutoffs::new(),
        }),
    );
    at_bob.ingest(revoke).unwrap();
    assert!(at_bob.role_of(&cyd_dev).is_none());
    // The revoked (stolen) laptop signs a Delete citing what it had seen.
    let (del, _) = cyd_before.write_control(&w.nodes[CYD].keys, &delete_op());
    at_bob.ingest(del).unwrap();
    // Even a rotation by Bob (which the replica would not make: Ops is
    // closed once deleted) does not undo it: its cutoff covers the Delete.
    let mut r = w.rng.clone();
    let _ = at_bob.rotate(&w.nodes[BOB].keys, &mut r);
    assert!(
        !at_bob.is_deleted(),
        "a device revoked before it signed deleted the folder for good"
    );
}

/// FINDING: a team admin removed from the admins (RemoveAdmin without a
/// cutoff for Ops: its author does not hold Ops) but still a plain member
/// of Ops keeps a permanent weak window: removing admin rights takes no
/// device out of Ops, so no rotation ever supplies a cutoff. Bob signs a
/// Delete with a context from before his removal, at any later time, and
/// it deletes Ops for everyone, finally.
#[test]
fn manage_attack_a_removed_admin_deletes_with_a_backdated_context() {
    let w = team();
    let bob = w.nodes[BOB].user();
    let bob_dev = w.nodes[BOB].id();
    let mut at_ada = space(&w, ADA, "Ops");
    let mut at_bob = space(&w, BOB, "Ops");
    let (promote, _) = at_ada.write_control(
        &w.nodes[ADA].keys,
        &ControlOp::Roster(RosterOp::AddAdmin { user: bob.clone() }),
    );
    at_bob.ingest(promote).unwrap();
    assert!(at_bob.can_manage(&bob_dev));
    let mut bob_before = at_bob.clone();
    let (demote, _) = at_ada.write_control(
        &w.nodes[ADA].keys,
        &ControlOp::Roster(RosterOp::RemoveAdmin {
            user: bob,
            cutoffs: Cutoffs::new(),
        }),
    );
    at_bob.ingest(demote).unwrap();
    assert!(!at_bob.can_manage(&bob_dev));
    assert!(!at_ada.rotation_due(), "no member left: nobody will rotate");
    // Any time later: a Delete whose context stops before the RemoveAdmin.
    let (del, _) = bob_before.write_control(&w.nodes[BOB].keys, &delete_op());
    at_ada.ingest(del).unwrap();
    assert!(
        !at_ada.is_deleted(),
        "an ex-admin deleted the folder with a backdated context"
    );
}

fn shows(w: &World, i: usize, needle: &str) -> bool {
    let live = w.nodes[i].replica.items(None, false).unwrap();
    let trash = w.nodes[i].replica.items(None, true).unwrap();
    live.iter().chain(trash.iter()).any(|(folder, head)| {
        let item = w.nodes[i].replica.item(folder, &head.id).unwrap();
        format!("{item:?}").contains(needle)
    })
}

fn isolate(w: &mut World, i: usize) {
    for j in 0..w.nodes.len() {
        if j != i {
            w.cut.insert((i.min(j), i.max(j)));
        }
    }
    w.reconnect();
}

fn heal(w: &mut World) {
    w.cut.clear();
    w.reconnect();
    w.settle();
}

/// FINDING (data loss): Bob changes a password while Ada, offline from him,
/// moves the item to another folder. The move purges the item's map from
/// Ops, so Bob's concurrent edit lands in a deleted object: after sync the
/// new password shows on no device (Infra holds Ada's stale copy).
#[test]
fn manage_attack_a_move_concurrent_with_an_edit_loses_the_edit() {
    let mut w = team();
    w.nodes[ADA]
        .replica
        .create_folder("Infra", 5, &mut w.rng)
        .unwrap();
    w.nodes[ADA].drain();
    w.settle();
    isolate(&mut w, BOB);
    w.nodes[BOB]
        .replica
        .edit_item(
            &ItemQuery::live("Ops/old"),
            ItemEdit {
                fields: [("password".to_string(), "rotated-by-bob".to_string())].into(),
                ..Default::default()
            },
            20,
            &mut w.rng,
        )
        .unwrap();
    w.nodes[BOB].drain();
    w.nodes[ADA]
        .replica
        .move_item("Ops/old", "Infra", 20, &mut w.rng)
        .unwrap();
    w.nodes[ADA].drain();
    heal(&mut w);
    for i in [ADA, BOB, CYD] {
        assert!(
            shows(&w, i, "rotated-by-bob"),
            "node {i} lost Bob's new password"
        );
    }
}

/// FINDING (data loss): Ada empties the trash while Bob, offline, restores
/// the trashed item and edits it: the purge wins, Bob's restore and edit
/// are gone on every device.
#[test]
fn manage_attack_emptying_the_trash_concurrent_with_a_restore_loses_it() {
    let mut w = team();
    w.nodes[ADA]
        .replica
        .set_trashed("Ops/old", true, 15, &mut w.rng)
        .unwrap();
    w.nodes[ADA].drain();
    w.settle();
    isolate(&mut w, BOB);
    w.nodes[BOB]
        .replica
        .set_trashed("Ops/old", false, 20, &mut w.rng)
        .unwrap();
    w.nodes[BOB]
        .replica
        .edit_item(
            &ItemQuery::live("Ops/old"),
            ItemEdit {
                fields: [("password".to_string(), "restored-by-bob".to_string())].into(),
                ..Default::default()
            },
            21,
            &mut w.rng,
        )
        .unwrap();
    w.nodes[BOB].drain();
    w.nodes[ADA]
        .replica
        .empty_trash(Some("Ops"), 22, &mut w.rng)
        .unwrap();
    w.nodes[ADA].drain();
    heal(&mut w);
    for i in [ADA, BOB, CYD] {
        assert!(
            shows(&w, i, "restored-by-bob"),
            "node {i} lost Bob's restored item"
        );
    }
}

/// Holds: the same revocation carrying Ada's cutoff for Ops (she holds it,
/// so `team_cutoffs` names it) voids the revoked device's Delete.
#[test]
fn manage_attack_a_revoked_devices_delete_with_a_cutoff_is_voided() {
    let w = team();
    let cyd_dev = w.nodes[CYD].id();
    let mut cyd_before = space(&w, CYD, "Ops");
    let mut at_ada = space(&w, ADA, "Ops");
    let cutoffs: Cutoffs = [(at_ada.id(), at_ada.cutoff())].into();
    at_ada.write_control(
        &w.nodes[ADA].keys,
        &ControlOp::Roster(RosterOp::RevokeDevice {
            device: cyd_dev,
            cutoffs,
        }),
    );
    let (del, _) = cyd_before.write_control(&w.nodes[CYD].keys, &delete_op());
    at_ada.ingest(del).unwrap();
    assert!(!at_ada.is_deleted());
}

/// Holds: RemoveAdmin with Ada's cutoff for Ops voids the ex-admin's
/// backdated Delete.
#[test]
fn manage_attack_a_removed_admins_delete_with_a_cutoff_is_voided() {
    let w = team();
    let bob = w.nodes[BOB].user();
    let mut at_ada = space(&w, ADA, "Ops");
    let mut at_bob = space(&w, BOB, "Ops");
    let (promote, _) = at_ada.write_control(
        &w.nodes[ADA].keys,
        &ControlOp::Roster(RosterOp::AddAdmin { user: bob.clone() }),
    );
    at_bob.ingest(promote).unwrap();
    let mut bob_before = at_bob.clone();
    let cutoffs: Cutoffs = [(at_ada.id(), at_ada.cutoff())].into();
    at_ada.write_control(
        &w.nodes[ADA].keys,
        &ControlOp::Roster(RosterOp::RemoveAdmin { user: bob, cutoffs }),
    );
    let (del, _) = bob_before.write_control(&w.nodes[BOB].keys, &delete_op());
    at_ada.ingest(del).unwrap();
    assert!(!at_ada.is_deleted());
}

/// Holds (F1, either arrival order): the revoked device's Delete takes
/// effect until the revocation arrives, then it is voided and the folder
/// comes back; the verdict does not depend on the order.
#[test]
fn manage_attack_a_delete_voided_by_a_later_arriving_revocation_undeletes() {
    let w = team();
    let cyd_dev = w.nodes[CYD].id();
    let mut cyd_before = space(&w, CYD, "Ops");
    let mut at_ada = space(&w, ADA, "Ops");
    let mut at_bob = space(&w, BOB, "Ops");
    let (revoke, _) = at_ada.write_control(
        &w.nodes[ADA].keys,
        &ControlOp::Roster(RosterOp::RevokeDevice {
            device: cyd_dev,
            cutoffs: Cutoffs::new(),
        }),
    );
    let (del, _) = cyd_before.write_control(&w.nodes[CYD].keys, &delete_op());
    at_bob.ingest(del.clone()).unwrap();
    assert!(
        at_bob.is_deleted(),
        "Cyd was a Folder Manager where he stood"
    );
    at_bob.ingest(revoke).unwrap();
    assert!(
        !at_bob.is_deleted(),
        "the revocation voids the concurrent Delete"
    );
    at_ada.ingest(del).unwrap();
    assert!(!at_ada.is_deleted());
}

/// Holds (F6): a personal folder (founded outside any team) shared in
/// place with a Folder Manager grant to another user is not deleted by
/// that user: only its owner's devices (a direct device grant) may.
#[test]
fn manage_attack_a_personal_folder_is_deleted_only_by_its_owner() {
    let mut w = team();
    let bob = w.nodes[BOB].user();
    share(
        &mut w,
        "Personal",
        Principal::User(bob),
        ShareChange::Share(Role::Manager),
    );
    w.settle();
    let bob_dev = w.nodes[BOB].id();
    let ada_dev = w.nodes[ADA].id();
    let id = w.nodes[ADA].replica.identity().personal;
    let mut at_bob = w.nodes[BOB].replica.space(&id).unwrap().clone();
    assert!(at_bob.founded_outside_team());
    assert!(at_bob.can_manage(&bob_dev));
    assert!(!at_bob.may_delete(&bob_dev));
    assert!(at_bob.may_delete(&ada_dev));
    let (del, _) = at_bob.write_control(&w.nodes[BOB].keys, &delete_op());
    let mut at_ada = w.nodes[ADA].replica.space(&id).unwrap().clone();
    let outcome = at_ada.ingest(del).unwrap();
    assert!(
        matches!(outcome, coffer_crdt::Outcome::Quarantined(_)),
        "{outcome:?}"
    );
    assert!(!at_ada.is_deleted());
    assert!(!at_bob.is_deleted());
    assert_eq!(
        w.nodes[BOB]
            .replica
            .remove_folder(&id.to_hex(), true, false),
        Err(coffer_crdt::replica::ReplicaError::PersonalFolder)
    );
}
