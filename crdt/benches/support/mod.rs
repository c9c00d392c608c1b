//! What the replica benches share: a device with its replica and keys,
//! and the joiner of a device added to a team.

use coffer_crdt::ops::{RosterOp, UserId};
use coffer_crdt::replica::Joiner;
use coffer_crdt::{DeviceKeys, Replica, SpaceId};
use rand_chacha::ChaCha20Rng;

pub struct Device {
    pub replica: Replica,
    pub keys: DeviceKeys,
    /// Its transport key's seed (derived from its id, as the tests do).
    pub seed: [u8; 32],
}

impl Device {
    /// A new device with a replica of its own (`NAME@bench.test`).
    pub fn new(name: &str, rng: &mut ChaCha20Rng) -> Device {
        let keys = DeviceKeys::generate(rng);
        let seed = *blake3::hash(&keys.device_id().0).as_bytes();
        let transport = coffer_crdt::crypto::ed25519_public(&seed);
        let email = format!("{name}@bench.test");
        let replica = Replica::create(keys.clone(), name, &email, transport, 1, rng).unwrap();
        let mut d = Device {
            replica,
            keys,
            seed,
        };
        d.drain();
        d
    }

    /// Drops the effects the replica queued (no store, no network here).
    pub fn drain(&mut self) {
        while self.replica.poll_effect().is_some() {}
    }
}

/// What an admin needs to add `d` to `team` as `user`'s device.
pub fn joiner(d: &Device, team: &SpaceId, user: &UserId) -> Joiner {
    let RosterOp::AddDevice {
        device,
        exchange,
        transport,
        proof,
        transport_proof,
        ..
    } = RosterOp::add_device(team, user.clone(), &d.keys, &d.seed)
    else {
        unreachable!("add_device makes an AddDevice")
    };
    Joiner {
        device,
        exchange,
        transport,
        name: None,
        proof,
        transport_proof,
    }
}
