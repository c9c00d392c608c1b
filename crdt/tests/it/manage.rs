//! Reorganising a shared vault (issue 17) on whole replicas: folder rename
//! and delete (or leave), item move, trash empty, each seen by the other
//! members after sync, with the roles enforced.

use coffer_crdt::folder::ItemType;
use coffer_crdt::ops::{ControlOp, MembershipOp, Principal, Role};
use coffer_crdt::replica::{FolderRemoval, ItemQuery, Needs, NewItemSpec, ShareChange};
use coffer_crdt::ReplicaError;

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
        fields: [
            ("password".to_string(), format!("pw-{name}")),
            ("custom:text:host".to_string(), "db1".to_string()),
        ]
        .into(),
        urls: vec!["https://example.org".into()],
    };
    w.nodes[i]
        .replica
        .add_item(spec, 10, &mut w.rng)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    w.nodes[i].drain();
}

fn share(w: &mut World, folder: &str, who: Principal, role: Role) {
    w.nodes[ADA]
        .replica
        .folder_share(folder, who, ShareChange::Share(role), &mut w.rng)
        .unwrap();
    w.nodes[ADA].drain();
}

/// Admin Ada (0) manages Ops; Bob (1) edits it through the group "it";
/// Cyd (2) edits it as a user; Ops holds `old`.
fn team() -> World {
    let mut w = World::new(&["ada", "bob", "cyd"], rng(17));
    w.found_team(ADA, 0, &["it"]);
    w.admit(ADA, BOB, &["it"]);
    w.admit(ADA, CYD, &[]);
    w.nodes[ADA]
        .replica
        .create_folder("Ops", 5, &mut w.rng)
        .unwrap();
    w.nodes[ADA].drain();
    share(&mut w, "Ops", Principal::Group("it".into()), Role::Editor);
    let cyd = w.nodes[CYD].user();
    share(&mut w, "Ops", Principal::User(cyd), Role::Editor);
    add(&mut w, ADA, "Ops", "old");
    w.settle();
    assert_eq!(w.nodes[BOB].names("Ops"), ["old"]);
    assert_eq!(w.nodes[CYD].names("Ops"), ["old"]);
    w
}

fn folder_names(w: &World, i: usize) -> Vec<String> {
    w.nodes[i]
        .replica
        .folders()
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect()
}

#[test]
fn a_rename_reaches_every_member_and_needs_a_folder_manager() {
    let mut w = team();
    let refused = w.nodes[BOB]
        .replica
        .rename_folder("Ops", "Mine", 20, &mut w.rng);
    assert!(
        matches!(
            refused,
            Err(ReplicaError::NotAllowed {
                role: Some(Role::Editor),
                needs: Needs::FolderManager
            })
        ),
        "{refused:?}"
    );
    let taken = w.nodes[ADA]
        .replica
        .rename_folder("Ops", "personal", 20, &mut w.rng);
    assert!(
        matches!(taken, Err(ReplicaError::FolderExists { .. })),
        "{taken:?}"
    );
    let f = w.nodes[ADA]
        .replica
        .rename_folder("Ops", "Infra", 20, &mut w.rng)
        .unwrap();
    assert_eq!(f.name, "Infra");
    w.nodes[ADA].drain();
    w.settle();
    for i in [ADA, BOB, CYD] {
        assert!(folder_names(&w, i).contains(&"Infra".to_string()), "{i}");
        assert!(!folder_names(&w, i).contains(&"Ops".to_string()), "{i}");
        assert_eq!(w.nodes[i].names("Infra"), ["old"], "{i}");
    }
    // It survives a restart.
    let mut r = w.rng.clone();
    w.nodes[BOB].restart(&mut r);
    assert_eq!(w.nodes[BOB].names("Infra"), ["old"]);
}

#[test]
fn a_manager_deletes_a_folder_for_everyone_and_a_member_leaves_it_alone() {
    let mut w = team();
    // Bob is in Ops through his group: he cannot leave by himself.
    let via_group = w.nodes[BOB].replica.remove_folder("Ops", false, false);
    assert!(
        matches!(via_group, Err(ReplicaError::LeaveThroughGroup { ref group }) if group == "it"),
        "{via_group:?}"
    );
    // Cyd, a direct member, leaves: Ops is gone on her device only.
    let (_, _, how) = w.nodes[CYD]
        .replica
        .remove_folder("Ops", false, false)
        .unwrap();
    assert_eq!(how, FolderRemoval::Left);
    w.nodes[CYD].drain();
    assert!(!folder_names(&w, CYD).contains(&"Ops".to_string()));
    w.settle();
    let cyd = w.nodes[CYD].user();
    let members = w.nodes[ADA].replica.folder_members("Ops").unwrap();
    assert!(
        members
            .members
            .iter()
            .all(|m| m.principal != Principal::User(cyd.clone())),
        "{members:?}"
    );
    assert_eq!(w.nodes[BOB].names("Ops"), ["old"]);
    let mut r = w.rng.clone();
    w.nodes[CYD].restart(&mut r);
    assert!(!folder_names(&w, CYD).contains(&"Ops".to_string()));

    // The Personal folder stays; a folder with items needs force.
    assert_eq!(
        w.nodes[ADA].replica.remove_folder("Personal", true, false),
        Err(ReplicaError::PersonalFolder)
    );
    let full = w.nodes[ADA].replica.remove_folder("Ops", false, false);
    assert!(
        matches!(full, Err(ReplicaError::FolderNotEmpty { items: 1, .. })),
        "{full:?}"
    );
    let (ops, _, how) = w.nodes[ADA]
        .replica
        .remove_folder("Ops", true, false)
        .unwrap();
    assert_eq!(how, FolderRemoval::Deleted);
    w.nodes[ADA].drain();
    w.settle();
    for i in [ADA, BOB, CYD] {
        assert!(!folder_names(&w, i).contains(&"Ops".to_string()), "{i}");
        assert!(
            w.nodes[i]
                .replica
                .space(&ops)
                .is_some_and(|s| s.is_deleted())
                || i == CYD
        );
    }
    let write = w.nodes[BOB].replica.add_item(
        NewItemSpec {
            folder: Some("Ops".into()),
            item_type: ItemType::Note,
            name: "late".into(),
            fields: Default::default(),
            urls: vec![],
        },
        30,
        &mut w.rng,
    );
    assert!(
        matches!(write, Err(ReplicaError::NoSuchFolder { .. })),
        "{write:?}"
    );
    // Still deleted after a restart.
    let mut r = w.rng.clone();
    w.nodes[BOB].restart(&mut r);
    assert!(!folder_names(&w, BOB).contains(&"Ops".to_string()));
}

#[test]
fn only_a_manager_may_delete_under_the_acceptance_rule() {
    let w = team();
    let ops = w.nodes[ADA].replica.resolve_folder(Some("Ops")).unwrap();
    // Bob, an Item Manager, signs a Delete himself: his own replica refuses
    // to publish it, since the rule would not let it take effect.
    let keys = w.nodes[BOB].keys.clone();
    let space = w.nodes[BOB].replica.space(&ops).unwrap();
    let mut forged = space.clone();
    let refused = forged.propose(&keys, &ControlOp::Membership(MembershipOp::Delete));
    assert!(refused.is_err(), "{refused:?}");
    assert!(!forged.is_deleted());
    // Signed anyway (a modified client) and handed to Ada: it is held, and
    // takes no effect.
    let (env, _) = forged.write_control(&keys, &ControlOp::Membership(MembershipOp::Delete));
    let mut at_ada = w.nodes[ADA].replica.space(&ops).unwrap().clone();
    let outcome = at_ada.ingest(env).unwrap();
    assert!(
        matches!(outcome, coffer_crdt::Outcome::Quarantined(_)),
        "{outcome:?}"
    );
    assert!(!at_ada.is_deleted());
    // Ada's own Delete takes effect.
    let ada_keys = w.nodes[ADA].keys.clone();
    at_ada
        .propose(&ada_keys, &ControlOp::Membership(MembershipOp::Delete))
        .unwrap();
    assert!(at_ada.is_deleted());
}

#[test]
fn a_move_needs_write_rights_in_both_folders_and_syncs() {
    let mut w = team();
    w.nodes[ADA]
        .replica
        .create_folder("Infra", 5, &mut w.rng)
        .unwrap();
    w.nodes[ADA].drain();
    // Bob may only use Infra's items.
    let bob = w.nodes[BOB].user();
    share(&mut w, "Infra", Principal::User(bob.clone()), Role::Member);
    w.settle();
    let refused = w.nodes[BOB]
        .replica
        .move_item("Ops/old", "Infra", 20, &mut w.rng);
    assert!(
        matches!(
            refused,
            Err(ReplicaError::NotAllowed {
                role: Some(Role::Member),
                needs: Needs::Writer
            })
        ),
        "{refused:?}"
    );
    w.nodes[BOB].drain();
    assert_eq!(w.nodes[BOB].names("Ops"), ["old"]);
    assert!(matches!(
        w.nodes[ADA]
            .replica
            .move_item("Ops/old", "Ops", 20, &mut w.rng),
        Err(ReplicaError::SameFolder { .. })
    ));

    let (_, old_id) = w.nodes[ADA]
        .replica
        .resolve_item(&ItemQuery::live("Ops/old"))
        .unwrap();
    let before = {
        let (f, id) = w.nodes[ADA]
            .replica
            .resolve_item(&ItemQuery::live("Ops/old"))
            .unwrap();
        w.nodes[ADA].replica.item(&f, &id).unwrap().clone()
    };
    let (_, infra, id) = w.nodes[ADA]
        .replica
        .move_item("Ops/old", "Infra", 20, &mut w.rng)
        .unwrap();
    assert_eq!(id, old_id, "the item keeps its id");
    w.nodes[ADA].drain();
    w.settle();
    // Bob reads it in Infra; Cyd, not in Infra, no longer sees it anywhere.
    assert_eq!(w.nodes[BOB].names("Infra"), ["old"]);
    assert!(w.nodes[BOB].names("Ops").is_empty());
    assert!(w.nodes[CYD].names("Ops").is_empty());
    let moved = w.nodes[BOB].replica.item(&infra, &id).unwrap().clone();
    assert_eq!(moved.fields, before.fields);
    assert_eq!(moved.urls, before.urls);
    assert_eq!(moved.created_ms, before.created_ms);
    assert!(w.nodes[BOB]
        .replica
        .items(Some("Ops"), true)
        .unwrap()
        .is_empty());
}

#[test]
fn emptying_the_trash_deletes_for_every_member_where_one_may_write() {
    let mut w = team();
    add(&mut w, ADA, "Ops", "gone");
    add(&mut w, ADA, "Personal", "mine");
    w.nodes[ADA]
        .replica
        .set_trashed("Ops/gone", true, 20, &mut w.rng)
        .unwrap();
    w.nodes[ADA]
        .replica
        .set_trashed("Personal/mine", true, 20, &mut w.rng)
        .unwrap();
    w.nodes[ADA].drain();
    w.settle();
    assert_eq!(
        w.nodes[BOB].replica.items(Some("Ops"), true).unwrap().len(),
        1
    );

    // Bob, demoted to Folder Member, may not empty Ops' trash.
    w.nodes[ADA]
        .replica
        .folder_share(
            "Ops",
            Principal::Group("it".into()),
            ShareChange::Role(Role::Member),
            &mut w.rng,
        )
        .unwrap();
    w.nodes[ADA].drain();
    w.settle();
    let skipped = w.nodes[BOB]
        .replica
        .empty_trash(None, 30, &mut w.rng)
        .unwrap();
    assert!(skipped.purged.is_empty());
    assert_eq!(skipped.skipped.len(), 1);
    assert!(matches!(
        w.nodes[BOB]
            .replica
            .empty_trash(Some("Ops"), 30, &mut w.rng),
        Err(ReplicaError::NotAllowed { .. })
    ));

    let done = w.nodes[ADA]
        .replica
        .empty_trash(Some("Ops"), 30, &mut w.rng)
        .unwrap();
    assert_eq!(done.purged.values().sum::<usize>(), 1);
    w.nodes[ADA].drain();
    w.settle();
    for i in [ADA, BOB, CYD] {
        assert!(
            w.nodes[i]
                .replica
                .items(Some("Ops"), true)
                .unwrap()
                .is_empty(),
            "{i}"
        );
        assert_eq!(w.nodes[i].names("Ops"), ["old"], "{i}");
    }
    // Only Ops was asked for: Personal's trash is still there, then emptied.
    assert_eq!(
        w.nodes[ADA]
            .replica
            .items(Some("Personal"), true)
            .unwrap()
            .len(),
        1
    );
    let all = w.nodes[ADA]
        .replica
        .empty_trash(None, 40, &mut w.rng)
        .unwrap();
    assert_eq!(all.purged.values().sum::<usize>(), 1);
    assert!(w.nodes[ADA].replica.items(None, true).unwrap().is_empty());
    let mut r = w.rng.clone();
    w.nodes[ADA].drain();
    w.nodes[ADA].restart(&mut r);
    assert!(w.nodes[ADA].replica.items(None, true).unwrap().is_empty());
    assert_eq!(w.nodes[ADA].names("Ops"), ["old"]);
}
