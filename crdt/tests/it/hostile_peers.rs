//! What an allowed but hostile peer sends that a replica must not keep
//! (found by a red-team review of the replica daemon).

use coffer_crdt::ops::{MembershipOp, Principal, Role};
use coffer_crdt::replica::{ShareChange, SyncMessage};
use coffer_crdt::{ControlOp, DeviceKeys, FolderKey, Space};

use crate::harness::rng;
use crate::net::World;

/// Ada (founding admin), Bob and Cyd (plain users, not admins). Ada's
/// folder Ops is shared with Cyd as Item Manager.
fn team() -> World {
    let mut w = World::new(&["ada", "bob", "cyd"], rng(7));
    w.nodes[0].replica.create_team("Acme", &mut w.rng).unwrap();
    w.nodes[0].drain();
    w.admit(0, 1, &[]);
    w.admit(0, 2, &[]);
    w.nodes[0]
        .replica
        .create_folder("Ops", 5, &mut w.rng)
        .unwrap();
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
    w.nodes[0].drain();
    w.settle();
    w
}

/// A peer cannot make this device keep a folder that does not name it:
/// a pending grant counts only when it names this device, its user or a
/// group its user is in, and comes from a device this one knows (before,
/// a grant to *any* group by a throwaway key planted one folder a message).
#[test]
fn a_peer_cannot_plant_folders_through_a_pending_grant() {
    let mut w = team();
    let before = w.nodes[0].replica.folder_spaces().count();
    let stored_before = w.nodes[0].store.spaces.len();
    let mut planted = 0;
    for _ in 0..20 {
        // A throwaway key, not Bob's device, founds a folder outside the team.
        let k = DeviceKeys::generate(&mut w.rng);
        let fk = FolderKey::generate(&mut w.rng);
        let (mut space, found) = Space::create(&k, &fk, &mut w.rng).unwrap();
        // A grant that is never sent, so the next one waits for it.
        let unsent = ControlOp::Membership(MembershipOp::Grant {
            principal: Principal::Device(DeviceKeys::generate(&mut w.rng).device_id()),
            role: Role::Member,
            exchange: None,
            epoch: None,
            wraps: Vec::new(),
        });
        let _ = space.write_control(&k, &unsent);
        let to_group = ControlOp::Membership(MembershipOp::Grant {
            principal: Principal::Group("no-such-group".into()),
            role: Role::Member,
            exchange: None,
            epoch: None,
            wraps: Vec::new(),
        });
        let (pending_grant, _) = space.write_control(&k, &to_group);
        let msg = SyncMessage::Envelopes {
            space: space.id(),
            envelopes: vec![found.bytes().to_vec(), pending_grant.bytes().to_vec()],
        };
        if w.inject(1, 0, msg) {
            planted += 1;
        }
        w.settle();
    }
    assert!(planted > 0, "Bob is connected to Ada");
    let after = w.nodes[0].replica.folder_spaces().count();
    let stored_after = w.nodes[0].store.spaces.len();
    assert_eq!(stored_after, stored_before);
    assert_eq!(
        after, before,
        "Ada keeps folders that a non-member planted and that do not name her"
    );
}
