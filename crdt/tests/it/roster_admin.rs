//! Issue 21's roster ops on whole replicas: device and user names, team
//! rename, group deletion and leaving the team — what each may do, what
//! every replica shows, and the refusals a hostile insider meets (a
//! non-admin's forged op, an admin's op concurrent with their removal).

use coffer_crdt::envelope::{EnvelopeBody, ENVELOPE_VERSION};
use coffer_crdt::folder::ItemType;
use coffer_crdt::ops::{ControlOp, Principal, Role, RosterOp};
use coffer_crdt::replica::{GroupChange, NewItemSpec, ShareChange, SyncMessage};
use coffer_crdt::{Envelope, EnvelopeId, ReplicaError};

use crate::harness::rng;
use crate::net::World;

const ADA: usize = 0;
const BOB: usize = 1;
const CYD: usize = 2;

fn add(w: &mut World, i: usize, name: &str) {
    let spec = NewItemSpec {
        folder: Some("Ops".into()),
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

/// Founder Ada, Bob and Cyd in group "it"; Ops shared with "it" as editors.
fn team() -> World {
    let mut w = World::new(&["ada", "bob", "cyd"], rng(2121));
    w.found_team(ADA, 1_000, &["it"]);
    w.admit(ADA, BOB, &["it"]);
    w.admit(ADA, CYD, &["it"]);
    w.nodes[ADA]
        .replica
        .create_folder("Ops", 5, &mut w.rng)
        .unwrap();
    w.nodes[ADA]
        .replica
        .folder_share(
            "Ops",
            Principal::Group("it".into()),
            ShareChange::Share(Role::Editor),
            &mut w.rng,
        )
        .unwrap();
    w.nodes[ADA].drain();
    add(&mut w, ADA, "old");
    w.settle();
    w
}

/// `node` signs `op` as its next roster envelope, past the replica's checks.
fn forge(w: &World, node: usize, op: RosterOp) -> Envelope {
    let n = &w.nodes[node];
    let team = n.replica.team_id().expect("a team");
    let roster = n.replica.space(&team).expect("the roster");
    let me = n.id();
    let mut own: Vec<&Envelope> = roster.held().filter(|e| e.author() == me).collect();
    own.sort_by_key(|e| e.seq());
    let op = ControlOp::Roster(op);
    Envelope::sign(
        EnvelopeBody {
            version: ENVELOPE_VERSION,
            space: team,
            author: me,
            seq: own.len() as u64 + 1,
            prev: own.last().map(|e| e.id()),
            kind: op.kind(),
            context: roster.control_heads().to_vec(),
            epoch: None,
            change: None,
            payload: op.encode(),
        },
        &n.keys,
    )
}

fn roster_accepts(w: &World, node: usize, id: &EnvelopeId) -> bool {
    let r = &w.nodes[node].replica;
    r.team_id()
        .and_then(|t| r.space(&t))
        .is_some_and(|s| s.is_accepted(id))
}

#[test]
fn names_set_at_joining_and_renames_reach_every_replica() {
    let mut w = team();
    let (ada_d, bob_d) = (w.nodes[ADA].id(), w.nodes[BOB].id());
    for i in [ADA, BOB, CYD] {
        let r = &w.nodes[i].replica;
        assert_eq!(r.device_name(&bob_d).as_deref(), Some("bob's laptop"));
        let users = r.users().unwrap();
        let bob = users
            .iter()
            .find(|u| u.user == w.nodes[BOB].user())
            .unwrap();
        assert_eq!((bob.name.as_deref(), bob.joined_ms), (Some("bob"), Some(7)));
        let ada = users
            .iter()
            .find(|u| u.user == w.nodes[ADA].user())
            .unwrap();
        assert_eq!(
            (ada.name.as_deref(), ada.joined_ms),
            (Some("ada"), Some(1_000))
        );
    }
    // Bob names his own device; Ada (admin) names Bob's; Cyd may not.
    w.nodes[BOB]
        .replica
        .rename_device(None, "Bob's ThinkPad", &mut w.rng)
        .unwrap();
    w.nodes[BOB].drain();
    w.settle();
    let err = w.nodes[CYD]
        .replica
        .rename_device(Some(bob_d), "mine now", &mut w.rng)
        .unwrap_err();
    assert!(matches!(err, ReplicaError::NotAdmin { .. }), "{err}");
    let err = w.nodes[BOB]
        .replica
        .rename_device(Some(ada_d), "x", &mut w.rng)
        .unwrap_err();
    assert!(matches!(err, ReplicaError::NotAdmin { .. }), "{err}");
    for bad in ["two\nlines", "tab\there", "", &"x".repeat(65)] {
        let err = w.nodes[BOB]
            .replica
            .rename_device(None, bad, &mut w.rng)
            .unwrap_err();
        assert!(
            matches!(err, ReplicaError::BadName { .. }),
            "{bad:?}: {err}"
        );
    }
    for i in [ADA, BOB, CYD] {
        assert_eq!(
            w.nodes[i].replica.device_name(&bob_d).as_deref(),
            Some("Bob's ThinkPad")
        );
    }
    w.nodes[ADA]
        .replica
        .rename_device(Some(bob_d), "IT-0042", &mut w.rng)
        .unwrap();
    w.nodes[ADA].drain();
    // The team: only an admin renames it.
    let err = w.nodes[BOB]
        .replica
        .rename_team("Bob & Co", &mut w.rng)
        .unwrap_err();
    assert!(matches!(err, ReplicaError::NotAdmin { .. }), "{err}");
    w.nodes[ADA]
        .replica
        .rename_team("Acme Ltd", &mut w.rng)
        .unwrap();
    w.nodes[ADA].drain();
    w.settle();
    for i in [ADA, BOB, CYD] {
        let r = &w.nodes[i].replica;
        assert_eq!(
            r.device_name(&bob_d).as_deref(),
            Some("IT-0042"),
            "node {i}"
        );
        assert_eq!(r.team().unwrap().name, "Acme Ltd", "node {i}");
    }
    // History names the person and the device.
    let h = w.nodes[CYD].replica.history("Ops/old").unwrap();
    assert_eq!(h[0].user_name.as_deref(), Some("ada"));
}

#[test]
fn a_non_admins_forged_roster_ops_never_take_effect() {
    let mut w = team();
    let ada_d = w.nodes[ADA].id();
    let bob_d = w.nodes[BOB].id();
    let team = w.nodes[ADA].replica.team_id().unwrap();
    let forged = [
        RosterOp::RenameTeam {
            name: "Pwned".into(),
        },
        RosterOp::DeleteGroup {
            group: "it".into(),
            cutoffs: Default::default(),
        },
        RosterOp::NameDevice {
            device: ada_d,
            name: "pwned".into(),
        },
        RosterOp::NameUser {
            user: w.nodes[ADA].user(),
            name: "pwned".into(),
            joined_ms: 0,
        },
    ];
    for op in forged {
        let env = forge(&w, BOB, op.clone());
        w.inject(
            BOB,
            ADA,
            SyncMessage::Envelopes {
                space: team,
                envelopes: vec![env.to_bytes()],
            },
        );
        w.settle();
        assert!(!roster_accepts(&w, ADA, &env.id()), "{op:?} took effect");
    }
    // His own device, but a name the rule refuses (a forged control char).
    let env = forge(
        &w,
        BOB,
        RosterOp::NameDevice {
            device: bob_d,
            name: "a\u{1b}[2Jb".into(),
        },
    );
    w.inject(
        BOB,
        ADA,
        SyncMessage::Envelopes {
            space: team,
            envelopes: vec![env.to_bytes()],
        },
    );
    w.settle();
    assert!(!roster_accepts(&w, ADA, &env.id()));
    let r = &w.nodes[ADA].replica;
    assert_eq!(r.team().unwrap().name, "Acme");
    assert!(r.groups().unwrap().iter().any(|(g, _)| g == "it"));
    assert_eq!(r.device_name(&ada_d), None);
    assert_eq!(r.device_name(&bob_d).as_deref(), Some("bob's laptop"));
    assert_eq!(r.user_name(&w.nodes[ADA].user()).as_deref(), Some("ada"));
}

#[test]
fn a_group_deletion_rotates_its_folders_and_its_members_read_nothing_after() {
    let mut w = team();
    assert_eq!(w.nodes[BOB].names("Ops"), ["old"]);
    let ops = w.nodes[ADA].replica.resolve_folder(Some("Ops")).unwrap();
    let err = w.nodes[BOB]
        .replica
        .group_change("it", GroupChange::Delete, &mut w.rng)
        .unwrap_err();
    assert!(matches!(err, ReplicaError::NotAdmin { .. }), "{err}");
    let change = w.nodes[ADA]
        .replica
        .group_change("it", GroupChange::Delete, &mut w.rng)
        .unwrap();
    w.nodes[ADA].drain();
    assert_eq!(change.rotated, vec![ops], "the deleting admin rotates Ops");
    add(&mut w, ADA, "new");
    w.settle();
    let space = w.nodes[ADA].replica.space(&ops).unwrap();
    let current = space.current_epoch().unwrap();
    for i in [BOB, CYD] {
        assert!(
            space.epoch_key(&w.nodes[i].keys, &current).is_err(),
            "node {i} can open the new epoch"
        );
        assert!(!w.nodes[i].names("Ops").contains(&"new".to_string()));
    }
    assert_eq!(w.nodes[ADA].names("Ops"), ["new", "old"]);
    // The name is not used again: no new group inherits Ops' grant.
    let err = w.nodes[ADA]
        .replica
        .group_change("it", GroupChange::Create, &mut w.rng)
        .unwrap_err();
    assert!(matches!(err, ReplicaError::GroupDeleted { .. }), "{err}");
    let bob = w.nodes[BOB].user().0.clone();
    let err = w.nodes[ADA]
        .replica
        .group_change("it", GroupChange::Add(&bob), &mut w.rng)
        .unwrap_err();
    assert!(matches!(err, ReplicaError::NoSuchGroup { .. }), "{err}");
    let err = w.nodes[ADA]
        .replica
        .group_change("it", GroupChange::Delete, &mut w.rng)
        .unwrap_err();
    assert!(matches!(err, ReplicaError::NoSuchGroup { .. }), "{err}");
}

/// Bob shares his folder with group "it" (Cyd gets its key) while Ada,
/// cut off from both, deletes the group: the grant sorts after the
/// deletion, yet its key wraps stay on record, so Bob rotates and Cyd
/// reads nothing written afterwards.
#[test]
fn a_share_with_a_group_concurrent_with_its_deletion_still_rotates() {
    let mut w = team();
    w.nodes[BOB]
        .replica
        .create_folder("Dev", 5, &mut w.rng)
        .unwrap();
    w.nodes[BOB].drain();
    w.settle();
    w.cut.insert((ADA, BOB));
    w.cut.insert((ADA, CYD));
    w.reconnect();
    w.nodes[BOB]
        .replica
        .folder_share(
            "Dev",
            Principal::Group("it".into()),
            ShareChange::Share(Role::Member),
            &mut w.rng,
        )
        .unwrap();
    w.nodes[BOB].drain();
    w.nodes[ADA]
        .replica
        .group_change("it", GroupChange::Delete, &mut w.rng)
        .unwrap();
    w.nodes[ADA].drain();
    w.settle();
    let dev = w.nodes[BOB].replica.resolve_folder(Some("Dev")).unwrap();
    let first = w.nodes[BOB].replica.space(&dev).unwrap().current_epoch();
    assert!(
        w.nodes[CYD].replica.space(&dev).is_some(),
        "Cyd got Dev and its key before hearing of the deletion"
    );
    w.cut.clear();
    w.settle();
    let spec = NewItemSpec {
        folder: Some("Dev".into()),
        item_type: ItemType::Login,
        name: "after".into(),
        fields: [("password".to_string(), "pw".to_string())].into(),
        urls: vec![],
    };
    w.nodes[BOB].replica.add_item(spec, 10, &mut w.rng).unwrap();
    w.nodes[BOB].drain();
    w.settle();
    let space = w.nodes[BOB].replica.space(&dev).unwrap();
    let current = space.current_epoch().unwrap();
    assert_ne!(Some(current), first, "Dev's key rotated");
    assert!(space.epoch_key(&w.nodes[CYD].keys, &current).is_err());
    assert!(!w.nodes[CYD].names("Dev").contains(&"after".to_string()));
    assert_eq!(w.nodes[BOB].names("Dev"), ["after"]);
}

/// Bob, an admin cut off from the others, renames the team, deletes the
/// group and renames Cyd's device while Ada (founder) takes his admin role
/// or removes him: his ops are beyond the cutoff and void everywhere.
#[test]
fn an_admins_renames_and_group_deletion_concurrent_with_their_removal_are_void() {
    for remove_user in [false, true] {
        let mut w = team();
        let cyd_d = w.nodes[CYD].id();
        let bob = w.nodes[BOB].user().0.clone();
        w.nodes[ADA]
            .replica
            .set_admin(&bob, true, &mut w.rng)
            .unwrap();
        w.nodes[ADA].drain();
        w.settle();
        for other in [ADA, CYD] {
            w.cut.insert((other.min(BOB), other.max(BOB)));
        }
        w.reconnect();
        let b = &mut w.nodes[BOB].replica;
        b.rename_team("Bob's", &mut w.rng).unwrap();
        b.group_change("it", GroupChange::Delete, &mut w.rng)
            .unwrap();
        b.rename_device(Some(cyd_d), "bob owns this", &mut w.rng)
            .unwrap();
        w.nodes[BOB].drain();
        if remove_user {
            w.nodes[ADA].replica.remove_user(&bob, &mut w.rng).unwrap();
        } else {
            w.nodes[ADA]
                .replica
                .set_admin(&bob, false, &mut w.rng)
                .unwrap();
        }
        w.nodes[ADA].drain();
        w.settle();
        w.cut.clear();
        w.settle();
        let nodes: &[usize] = if remove_user {
            &[ADA, CYD]
        } else {
            &[ADA, BOB, CYD]
        };
        for &i in nodes {
            let r = &w.nodes[i].replica;
            assert_eq!(r.team().unwrap().name, "Acme", "node {i}, {remove_user}");
            assert!(
                r.groups().unwrap().iter().any(|(g, _)| g == "it"),
                "node {i}, {remove_user}: the group is gone"
            );
            assert_eq!(
                r.device_name(&cyd_d).as_deref(),
                Some("cyd's laptop"),
                "node {i}, {remove_user}"
            );
        }
        assert_eq!(w.nodes[CYD].names("Ops"), ["old"], "{remove_user}");
    }
}

#[test]
fn a_user_leaves_the_team_and_the_founder_cannot() {
    let mut w = team();
    let err = w.nodes[ADA].replica.leave_team(&mut w.rng).unwrap_err();
    assert!(
        matches!(err, ReplicaError::FounderCannotLeave { other_admins: 0 }),
        "{err}"
    );
    assert!(err.to_string().contains("last admin"), "{err}");
    let bob = w.nodes[BOB].user().0.clone();
    let err = w.nodes[ADA]
        .replica
        .hand_over(&bob, &mut w.rng)
        .unwrap_err();
    assert!(
        matches!(err, ReplicaError::Refused(_)),
        "not an admin: {err}"
    );
    let err = w.nodes[BOB]
        .replica
        .hand_over(&bob, &mut w.rng)
        .unwrap_err();
    assert_eq!(err, ReplicaError::NotFounder);
    let ops = w.nodes[ADA].replica.resolve_folder(Some("Ops")).unwrap();
    let epochs = w.nodes[ADA].replica.folder_members("Ops").unwrap().epochs;
    w.nodes[BOB].replica.leave_team(&mut w.rng).unwrap();
    w.nodes[BOB].drain();
    w.settle();
    assert!(w.nodes[BOB].replica.standing().is_out());
    assert!(matches!(
        w.nodes[BOB].replica.leave_team(&mut w.rng),
        Err(ReplicaError::NoLongerMember(_))
    ));
    // Ada (Folder Manager) rotated Ops on hearing it.
    assert_eq!(
        w.nodes[ADA].replica.folder_members("Ops").unwrap().epochs,
        epochs + 1
    );
    add(&mut w, ADA, "new");
    w.settle();
    let space = w.nodes[ADA].replica.space(&ops).unwrap();
    let current = space.current_epoch().unwrap();
    assert!(space.epoch_key(&w.nodes[BOB].keys, &current).is_err());
    assert!(!w.nodes[BOB].names("Ops").contains(&"new".to_string()));
    assert_eq!(w.nodes[CYD].names("Ops"), ["new", "old"]);
    let users = w.nodes[ADA].replica.users().unwrap();
    assert!(!users.iter().any(|u| u.user == w.nodes[BOB].user()));

    // The founder hands over to Cyd (an admin first), then may leave;
    // Cyd, now the last admin, may not.
    let cyd = w.nodes[CYD].user().0.clone();
    w.nodes[ADA]
        .replica
        .set_admin(&cyd, true, &mut w.rng)
        .unwrap();
    let err = w.nodes[ADA].replica.leave_team(&mut w.rng).unwrap_err();
    assert!(
        matches!(err, ReplicaError::FounderCannotLeave { other_admins: 1 }),
        "{err}"
    );
    w.nodes[ADA].replica.hand_over(&cyd, &mut w.rng).unwrap();
    w.nodes[ADA].drain();
    w.settle();
    assert_eq!(
        w.nodes[CYD].replica.team().unwrap().founder,
        Some(w.nodes[CYD].user())
    );
    w.nodes[ADA].replica.leave_team(&mut w.rng).unwrap();
    w.nodes[ADA].drain();
    w.settle();
    let err = w.nodes[CYD].replica.leave_team(&mut w.rng).unwrap_err();
    assert!(
        matches!(err, ReplicaError::FounderCannotLeave { other_admins: 0 }),
        "{err}"
    );
    let users = w.nodes[CYD].replica.users().unwrap();
    assert_eq!(users.len(), 1, "{users:?}");
}
