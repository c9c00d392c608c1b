//! Issue 21, a forgotten PIN: a team admin recovers a user who lost their
//! only device (`Replica::admit_recovered`), and nobody else can.

use coffer_crdt::folder::ItemType;
use coffer_crdt::ops::{ControlOp, Principal, Role, RosterOp};
use coffer_crdt::replica::{NewItemSpec, ShareChange, Standing};
use coffer_crdt::space::{Outcome, Reason};
use coffer_crdt::ReplicaError;

use crate::harness::{doc_of, rng};
use crate::net::World;

const ADA: usize = 0;
const BOB: usize = 1;
const CYD: usize = 2;
/// Bob's new device (a fresh replica with Bob's email).
const NEW: usize = 3;

fn add(w: &mut World, i: usize, folder: &str, name: &str) -> Result<(), ReplicaError> {
    let spec = NewItemSpec {
        folder: Some(folder.into()),
        item_type: ItemType::Login,
        name: name.into(),
        fields: [("password".to_string(), format!("pw-{name}"))].into(),
        urls: vec![],
    };
    let r = w.nodes[i]
        .replica
        .add_item(spec, 10, &mut w.rng)
        .map(|_| ());
    w.nodes[i].drain();
    r
}

fn share(w: &mut World, folder: &str, principal: Principal, role: Role) {
    w.nodes[ADA]
        .replica
        .folder_share(folder, principal, ShareChange::Share(role), &mut w.rng)
        .unwrap();
    w.nodes[ADA].drain();
}

/// Admin Ada, Bob and Cyd in group "it". "Direct" is shared with Bob as
/// editor, "Group" with "it" as members (read only). Bob keeps an item in
/// his Personal folder.
fn team() -> World {
    let mut w = World::new(&["ada", "bob", "cyd", "bob"], rng(2101));
    w.found_team(ADA, 0, &["it"]);
    w.admit(ADA, BOB, &["it"]);
    w.admit(ADA, CYD, &["it"]);
    for f in ["Direct", "Group"] {
        w.nodes[ADA]
            .replica
            .create_folder(f, 5, &mut w.rng)
            .unwrap();
        w.nodes[ADA].drain();
    }
    let bob = w.nodes[BOB].user();
    share(&mut w, "Direct", Principal::User(bob), Role::Editor);
    share(&mut w, "Group", Principal::Group("it".into()), Role::Member);
    add(&mut w, ADA, "Direct", "direct-old").unwrap();
    add(&mut w, ADA, "Group", "group-old").unwrap();
    add(&mut w, BOB, "Personal", "bob-private").unwrap();
    w.settle();
    assert_eq!(w.nodes[BOB].names("Direct"), ["direct-old"]);
    assert_eq!(w.nodes[BOB].names("Group"), ["group-old"]);
    w
}

/// What enrolment does once the codes matched, for a recovery.
fn recover(w: &mut World) -> coffer_crdt::replica::Recovery {
    let team = w.nodes[ADA].replica.team_id().unwrap();
    let bob = w.nodes[BOB].user();
    let joiner = w.nodes[NEW].joiner(&team, &bob);
    let r = w.nodes[ADA]
        .replica
        .admit_recovered(&bob.0, &joiner, &mut w.rng)
        .unwrap();
    w.nodes[ADA].drain();
    let roster = w.nodes[ADA].replica.roster_envelopes();
    w.nodes[NEW].replica.adopt_team(team, roster).unwrap();
    w.nodes[NEW].drain();
    r
}

#[test]
fn an_admin_recovers_a_user_who_lost_their_only_device() {
    let mut w = team();
    let old = w.nodes[BOB].id();
    let direct = w.nodes[ADA].replica.resolve_folder(Some("Direct")).unwrap();
    let group = w.nodes[ADA].replica.resolve_folder(Some("Group")).unwrap();
    let epochs = |w: &World, f: &str| w.nodes[ADA].replica.folder_members(f).unwrap().epochs;
    let before = (epochs(&w, "Direct"), epochs(&w, "Group"));

    let r = recover(&mut w);
    assert_eq!(r.revoked, vec![old], "Bob's old device is revoked");
    let mut rotated = r.rotated.clone();
    rotated.sort();
    let mut want = vec![direct, group];
    want.sort();
    assert_eq!(rotated, want, "both folders Bob could read rotate");
    assert!(
        r.folders.contains(&(direct, true)) && r.folders.contains(&(group, true)),
        "the new device holds both keys at once: {:?}",
        r.folders
    );
    assert_eq!(epochs(&w, "Direct"), before.0 + 1);
    assert_eq!(epochs(&w, "Group"), before.1 + 1);
    w.settle();

    // The new device reads all it could read before, and writes where it may.
    assert_eq!(w.nodes[NEW].names("Direct"), ["direct-old"]);
    assert_eq!(w.nodes[NEW].names("Group"), ["group-old"]);
    add(&mut w, NEW, "Direct", "direct-new").unwrap();
    assert!(matches!(
        add(&mut w, NEW, "Group", "nope"),
        Err(ReplicaError::NotAllowed { .. })
    ));
    // One Personal folder, fresh and empty: the old one's key was only Bob's.
    let folders = w.nodes[NEW].replica.folders().unwrap();
    let personal: Vec<_> = folders.iter().filter(|f| f.name == "Personal").collect();
    assert_eq!(personal.len(), 1, "{folders:?}");
    assert!(w.nodes[NEW].names("Personal").is_empty());
    // The new device is Bob's, in his groups; the team has the same users.
    let users = w.nodes[ADA].replica.users().unwrap();
    assert_eq!(users.len(), 3);
    let bob = users
        .iter()
        .find(|u| u.user == w.nodes[BOB].user())
        .unwrap();
    assert_eq!(bob.devices, vec![w.nodes[NEW].id()]);
    assert_eq!(bob.groups, vec!["it".to_string()]);

    // The old device learns it is revoked and refuses writes.
    w.settle();
    assert!(matches!(
        w.nodes[BOB].replica.standing(),
        Standing::DeviceRevoked { .. }
    ));
    assert!(matches!(
        add(&mut w, BOB, "Direct", "from-old"),
        Err(ReplicaError::NoLongerMember(_))
    ));

    // Written after: not readable with any key the old device held, even
    // given every envelope.
    add(&mut w, ADA, "Direct", "after").unwrap();
    w.settle();
    assert_eq!(
        w.nodes[NEW].names("Direct"),
        ["after", "direct-new", "direct-old"]
    );
    let space = w.nodes[ADA].replica.space(&direct).unwrap().clone();
    let old_keys = w.nodes[BOB].keys.clone();
    let mut seen: Vec<String> = doc_of(&space, &old_keys)
        .items()
        .into_iter()
        .map(|i| i.name)
        .collect();
    seen.sort();
    assert_eq!(seen, ["direct-old"], "the old keys read only the old epoch");
}

#[test]
fn recovery_is_refused_for_non_admins_unknown_users_and_oneself() {
    let mut w = team();
    let team_id = w.nodes[ADA].replica.team_id().unwrap();
    let bob = w.nodes[BOB].user();
    let joiner = w.nodes[NEW].joiner(&team_id, &bob);
    let r = w.nodes[CYD]
        .replica
        .admit_recovered(&bob.0, &joiner, &mut w.rng);
    assert!(matches!(r, Err(ReplicaError::NotAdmin { .. })), "{r:?}");
    let r = w.nodes[ADA]
        .replica
        .admit_recovered("nobody@net.test", &joiner, &mut w.rng);
    assert!(matches!(r, Err(ReplicaError::NoSuchUser { .. })), "{r:?}");
    let ada = w.nodes[ADA].user();
    let r = w.nodes[ADA]
        .replica
        .admit_recovered(&ada.0, &joiner, &mut w.rng);
    assert!(matches!(r, Err(ReplicaError::Refused(_))), "{r:?}");
    assert!(w.nodes[ADA].replica.check_recover(&bob.0).is_ok());
    // Nobody recovers the founder but the founder's own devices.
    let r = w.nodes[ADA]
        .replica
        .set_admin(&bob.0, true, &mut w.rng)
        .map(|_| ());
    assert!(r.is_ok(), "{r:?}");
    w.nodes[ADA].drain();
    w.settle();
    let r = w.nodes[BOB].replica.check_recover(&ada.0);
    assert!(
        matches!(r, Err(ReplicaError::Refused(ref why)) if why.contains("founding")),
        "{r:?}"
    );
}

/// A hostile insider (Cyd, no admin) signs the ops of a recovery anyway:
/// her own device added to Bob, Bob's laptop revoked. Neither takes effect
/// on her replica or on any other that holds them.
#[test]
fn a_forged_recovery_from_a_non_admin_never_takes_effect() {
    let w = team();
    let team_id = w.nodes[ADA].replica.team_id().unwrap();
    let bob = w.nodes[BOB].user();
    let old = w.nodes[BOB].id();
    let j = w.nodes[NEW].joiner(&team_id, &bob);
    let mut forger = w.nodes[CYD].replica.space(&team_id).unwrap().clone();
    let cyd_keys = w.nodes[CYD].keys.clone();
    let ops = [
        RosterOp::AddDevice {
            user: bob.clone(),
            device: j.device,
            exchange: j.exchange,
            transport: j.transport,
            proof: j.proof.clone(),
            transport_proof: j.transport_proof.clone(),
        },
        RosterOp::RevokeDevice {
            device: old,
            cutoffs: Default::default(),
        },
    ];
    let mut forged = Vec::new();
    for op in ops {
        let (env, outcome) = forger.write_control(&cyd_keys, &ControlOp::Roster(op));
        assert!(
            matches!(outcome, Outcome::Quarantined(Reason::Unauthorized(_))),
            "{outcome:?}"
        );
        forged.push(env);
    }
    // Every peer judges the same: Ada's roster with the forgeries in it.
    let mut judge = w.nodes[ADA].replica.space(&team_id).unwrap().clone();
    let report = judge.ingest_batch(forged);
    for o in &report.outcomes {
        assert!(
            matches!(o, Ok(Outcome::Quarantined(Reason::Unauthorized(_)))),
            "{o:?}"
        );
    }
    for s in [forger.state(), judge.state()] {
        assert!(s.is_live_team_device(&old), "Bob's laptop stays");
        assert!(!s.is_live_team_device(&j.device), "no device was added");
    }
}
