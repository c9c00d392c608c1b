//! What an allowed but hostile peer sends that a replica must not keep
//! (found by a red-team review of the replica daemon).

use std::collections::BTreeMap;

use coffer_crdt::ops::{MembershipOp, Principal, Role, RosterOp};
use coffer_crdt::replica::{Joiner, ShareChange, SyncMessage};
use coffer_crdt::{ControlOp, DeviceId, DeviceKeys, FolderKey, Space};

use crate::harness::rng;
use crate::net::{transport, World};

/// Ada (founding admin), Bob and Cyd (plain users, not admins). Ada's
/// folder Ops is shared with Cyd as Item Manager.
fn team() -> World {
    let mut w = World::new(&["ada", "bob", "cyd"], rng(7));
    w.found_team(0, 0, &[]);
    w.admit(0, 1, &[]);
    w.admit(0, 2, &[]);
    w.nodes[0]
        .replica
        .create_folder("Ops", 5, &mut w.rng)
        .unwrap();
    w.share(0, "Ops", 2, Role::Editor);
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
            envelopes: vec![found.to_bytes(), pending_grant.to_bytes()],
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

/// A plain team member (Bob) cannot add a device of his own whose roster
/// entry carries Ada's transport key (public: it is in the roster and her
/// pairing key): `AddDevice` needs the transport key's own signature
/// (found by a red-team review: before, every peer came to label Ada's
/// connection as Bob's fake device and cut her off from folder sync).
#[test]
fn a_member_cannot_bind_another_devices_transport_key_to_his_own_device() {
    let mut w = team();
    let team_id = w.nodes[0].replica.team_id().unwrap();
    let ada = w.nodes[0].id();
    let ada_transport = transport(&w.nodes[0].keys);
    let ops = w.nodes[0].replica.resolve_folder(Some("Ops")).unwrap();
    assert!(w.nodes[2].replica.shared_with(&ada).contains(&ops));

    // Bob mints a device id that sorts above Ada's (one try in two).
    let fake = loop {
        let k = DeviceKeys::generate(&mut w.rng);
        if k.device_id() > ada {
            break k;
        }
    };
    let bob_user = w.nodes[1].user();
    // Bob does not hold Ada's transport key: he signs its proof with a key
    // of his own.
    let RosterOp::AddDevice {
        device,
        exchange,
        transport_proof,
        ..
    } = RosterOp::add_device(&team_id, bob_user.clone(), &fake, &[42; 32])
    else {
        unreachable!()
    };
    // His device's own proof must name the transport key he claims.
    let proof = fake
        .sign(&coffer_crdt::ops::device_proof_message(
            &team_id,
            &bob_user,
            &exchange,
            &ada_transport,
        ))
        .to_vec();
    let joiner = Joiner {
        device,
        exchange,
        transport: ada_transport,
        name: None,
        proof,
        transport_proof,
    };
    // A device link of his own: no admin needed.
    let added = w.nodes[1]
        .replica
        .admit(None, &joiner, &[], false, None, &mut w.rng);
    w.nodes[1].drain();
    w.settle();

    let cyd_allowed = w.nodes[2].replica.allowed_peers().clone();
    let holders: Vec<DeviceId> = cyd_allowed
        .iter()
        .filter(|(_, t)| **t == ada_transport)
        .map(|(d, _)| *d)
        .collect();
    // What the daemon's swarm makes of it: transport key -> device.
    let by_transport: BTreeMap<[u8; 32], DeviceId> =
        cyd_allowed.iter().map(|(d, t)| (*t, *d)).collect();
    let labelled = by_transport[&ada_transport];
    let ops_reaches_ada_connection = w.nodes[2].replica.shared_with(&labelled).contains(&ops);
    assert!(
        added.is_err() && holders.len() == 1,
        "a roster must never bind one transport key to two devices \
         (the AddDevice of Bob's fake device with Ada's transport key was accepted)"
    );
    assert_eq!(labelled, ada);
    assert!(ops_reaches_ada_connection);
}

/// Regression (found by the process-level hostile peer, issue 12): a Folder
/// Member floods a folder with envelopes whose predecessors nobody holds.
/// They stay pending for good, and a session remembers at most 64 heads of
/// a peer's forked chain (`sync::note`), so every later push of the folder
/// counted the rest as missing on the peer and sent them again: one honest
/// write cost each peer the whole flood. A session now remembers every
/// envelope above a gap the peer holds.
#[test]
fn a_flood_of_unlinked_envelopes_is_not_sent_again_with_every_honest_write() {
    use coffer_crdt::envelope::ENVELOPE_VERSION;
    use coffer_crdt::ids::EnvelopeId;
    use coffer_crdt::replica::NewItemSpec;
    use coffer_crdt::{Envelope, EnvelopeBody, ItemType, Kind};
    use rand_core::RngCore;

    const FLOOD: u64 = 1_000;
    let mut w = team();
    let bob = w.nodes[1].user();
    w.nodes[0]
        .replica
        .folder_share(
            "Ops",
            Principal::User(bob),
            ShareChange::Share(Role::Member),
            &mut w.rng,
        )
        .unwrap();
    w.nodes[0].drain();
    w.settle();
    let ops = w.nodes[0].replica.resolve_folder(Some("Ops")).unwrap();
    let space = w.nodes[1].replica.space(&ops).unwrap().clone();
    let bob_keys = w.nodes[1].keys.clone();
    let flood: Vec<Vec<u8>> = (0..FLOOD)
        .map(|i| {
            let mut prev = [0u8; 32];
            w.rng.fill_bytes(&mut prev);
            Envelope::sign(
                EnvelopeBody {
                    version: ENVELOPE_VERSION,
                    space: ops,
                    author: bob_keys.device_id(),
                    seq: 1_000 + i,
                    prev: Some(EnvelopeId(prev)),
                    kind: Kind::Usage,
                    context: space.control_heads().to_vec(),
                    epoch: space.current_epoch(),
                    change: None,
                    payload: b"flood".to_vec(),
                },
                &bob_keys,
            )
            .to_bytes()
        })
        .collect();
    assert!(w.inject(
        1,
        0,
        SyncMessage::Envelopes {
            space: ops,
            envelopes: flood
        }
    ));
    w.settle();
    assert_eq!(
        w.nodes[2].replica.space(&ops).unwrap().pending_count() as u64,
        FLOOD,
        "Cyd keeps the flood, pending"
    );

    // Ada writes one item: what does Cyd get sent?
    let before = w.envelopes.get(&(0, 2)).copied().unwrap_or(0);
    let spec = NewItemSpec {
        folder: Some("Ops".into()),
        item_type: ItemType::Login,
        name: "honest".into(),
        fields: [("password".to_string(), "pw".to_string())].into(),
        urls: vec![],
    };
    w.nodes[0].replica.add_item(spec, 10, &mut w.rng).unwrap();
    w.nodes[0].drain();
    w.settle();
    let sent = w.envelopes.get(&(0, 2)).copied().unwrap_or(0) - before;
    eprintln!("one honest write: Ada sent Cyd {sent} envelopes");
    assert!(w.nodes[2].names("Ops").contains(&"honest".to_string()));
    assert!(sent <= 2, "the flood went out again: {sent}");
}
