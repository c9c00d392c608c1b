//! The vault of `cofferd --relay`: the keyless [`Relay`] with its store
//! (`relay.sqlite3`) and its transport key. No keystore, no PIN, no device
//! keys: the only secret is the transport key (its libp2p identity), which
//! signs Noise handshakes and opens no envelope. The sync calls here
//! dispatch to the relay or to the replica, so the sessions and the actor
//! drive either the same way.

use std::path::Path;

use coffer_crdt::replica::relay::{Relay, RelayLimits, RelayStatus};
use coffer_crdt::replica::{ProtocolViolation, SyncMessage, SyncWire};
use coffer_crdt::{DeviceId, SpaceId};
use rand_core::CryptoRngCore;
use tracing::{info, warn};
use zeroize::Zeroizing;

use super::{drain_with, new_transport_seed, Vault, VaultError};
use crate::store::Store;

/// The relay's transport key seed (kv; the data dir is 0700).
const KV_RELAY_IDENTITY: &str = "relay_identity";
/// The teams its operator accepted (kv, JSON list of ids).
const KV_RELAY_TEAMS: &str = "relay_teams";

impl Vault {
    /// Opens (creating if needed) a relay's store under `data_dir`: its
    /// transport key is made on first start.
    pub fn open_relay(
        data_dir: &Path,
        limits: RelayLimits,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Vault, VaultError> {
        let store = Store::open(&data_dir.join("relay.sqlite3"))?;
        let seed = match store.get_kv(KV_RELAY_IDENTITY)? {
            Some(bytes) => {
                Zeroizing::new(<[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                    VaultError::Internal("the relay's transport key is malformed".into())
                })?)
            }
            None => {
                let seed = new_transport_seed(rng);
                store.put_kv(KV_RELAY_IDENTITY, seed.as_slice())?;
                seed
            }
        };
        let transport = coffer_crdt::crypto::ed25519_public(&seed);
        let stored = store.load_spaces()?;
        let mut relay = Relay::load(transport, stored, limits);
        relay.set_accepted_teams(accepted_teams(&store)?);
        let mut vault = Vault {
            data_dir: data_dir.to_path_buf(),
            store,
            kdf: crate::keystore::KdfParams::default(),
            replica: None,
            relay: Some(relay),
            outputs: Vec::new(),
            reloaded: false,
        };
        info!(
            teams = vault.relay.as_ref().map_or(0, |r| r.status().teams.len()),
            "relay opened"
        );
        vault.settle()?;
        Ok(vault)
    }

    pub fn is_relay(&self) -> bool {
        self.relay.is_some()
    }

    /// The relay's transport key seed (its network identity).
    pub(super) fn relay_secret(&self) -> Result<Option<Zeroizing<[u8; 32]>>, VaultError> {
        if self.relay.is_none() {
            return Ok(None);
        }
        let bytes = self
            .store
            .get_kv(KV_RELAY_IDENTITY)?
            .ok_or_else(|| VaultError::Internal("the relay has no transport key".into()))?;
        let seed: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| VaultError::Internal("the relay's transport key is malformed".into()))?;
        Ok(Some(Zeroizing::new(seed)))
    }

    /// What the relay holds (`coffer relay status` asked of a relay).
    pub fn relay_status(&self) -> Option<RelayStatus> {
        self.relay.as_ref().map(Relay::status)
    }

    /// Its operator accepts `team` (stored first, then the relay told).
    pub fn relay_accept(&mut self, team: SpaceId) -> Result<(), VaultError> {
        let relay = self.store_accepted("accept", |teams| {
            teams.insert(team);
        })?;
        relay.accept_team(team);
        Ok(())
    }

    /// Its operator takes `team` back (stored first, then the relay drops
    /// what it holds of the team). Whether the relay knew the team.
    pub fn relay_forget(&mut self, team: SpaceId) -> Result<bool, VaultError> {
        let relay = self.store_accepted("forget", |teams| {
            teams.remove(&team);
        })?;
        Ok(relay.forget_team(team))
    }

    /// Stores the accepted teams as `change` leaves them, before the relay
    /// is told (`command` names the `coffer relay` command in the error of
    /// a daemon that is no relay).
    fn store_accepted(
        &mut self,
        command: &str,
        change: impl FnOnce(&mut std::collections::BTreeSet<SpaceId>),
    ) -> Result<&mut Relay, VaultError> {
        let Some(relay) = self.relay.as_mut() else {
            return Err(VaultError::Invalid(format!(
                "this cofferd is not a relay: run `coffer relay {command}` against `cofferd --relay`'s socket"
            )));
        };
        let mut teams = relay.accepted_teams().clone();
        change(&mut teams);
        let ids: Vec<String> = teams.iter().map(SpaceId::to_hex).collect();
        self.store.put_json(KV_RELAY_TEAMS, &ids)?;
        Ok(relay)
    }

    /// The teams its operator accepted (hex ids).
    pub fn relay_accepted(&self) -> Vec<String> {
        self.relay.as_ref().map_or_else(Vec::new, |r| {
            r.accepted_teams().iter().map(SpaceId::to_hex).collect()
        })
    }

    /// The relay's device id (its transport key).
    pub fn relay_device(&self) -> Option<DeviceId> {
        self.relay.as_ref().map(Relay::device)
    }

    pub(super) fn settle_relay(&mut self) -> Result<(), VaultError> {
        let Some(relay) = self.relay.as_mut() else {
            return Ok(());
        };
        let (persists, outputs) = drain_with(|| relay.poll_effect());
        if !persists.is_empty() {
            if let Err(e) = self.write(&persists) {
                // Memory is ahead of disk: start again from the store.
                warn!(error = %e, "a relay write failed; reloading from the store");
                let kept = self
                    .relay
                    .as_ref()
                    .map(|r| (r.device().0, r.limits(), r.accepted_teams().clone()));
                self.relay = None;
                if let (Some((transport, limits, accepted)), Ok(stored)) =
                    (kept, self.store.load_spaces())
                {
                    let mut relay = Relay::load(transport, stored, limits);
                    relay.set_accepted_teams(accepted);
                    self.relay = Some(relay);
                    self.reloaded = true;
                }
                return Err(e);
            }
        }
        self.outputs.extend(outputs);
        Ok(())
    }

    /// A sync session with `peer` started (on the relay, or the replica);
    /// `wire` is what its outbound stream negotiated.
    pub fn peer_connected(&mut self, peer: DeviceId, wire: SyncWire) {
        if let Some(r) = self.relay.as_mut() {
            r.peer_connected_on(peer, wire);
        } else if let Ok(r) = self.replica_mut() {
            r.peer_connected_on(peer, wire);
        }
    }

    pub fn peer_disconnected(&mut self, peer: &DeviceId) {
        if let Some(r) = self.relay.as_mut() {
            r.peer_disconnected(peer);
        } else if let Ok(r) = self.replica_mut() {
            r.peer_disconnected(peer);
        }
    }

    /// The next sync message for `peer`.
    pub fn poll_transmit(&mut self, peer: &DeviceId) -> Result<Option<SyncMessage>, VaultError> {
        if let Some(r) = self.relay.as_mut() {
            return Ok(r.poll_transmit(peer));
        }
        Ok(self.replica_mut()?.poll_transmit(peer))
    }

    /// A sync message from `peer`.
    pub fn handle_message(
        &mut self,
        peer: DeviceId,
        msg: SyncMessage,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Result<(), ProtocolViolation>, VaultError> {
        if let Some(r) = self.relay.as_mut() {
            return Ok(r.handle_message(peer, msg, rng));
        }
        Ok(self.replica_mut()?.handle_message(peer, msg, rng))
    }

    /// Sync messages from `peer` in order (the frames a session read
    /// ahead): a device's replica takes consecutive envelopes of one
    /// space as one batch (`Replica::handle_messages`).
    pub fn handle_messages(
        &mut self,
        peer: DeviceId,
        msgs: Vec<SyncMessage>,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Result<(), ProtocolViolation>, VaultError> {
        if let Some(r) = self.relay.as_mut() {
            for msg in msgs {
                if let Err(e) = r.handle_message(peer, msg, rng) {
                    return Ok(Err(e));
                }
            }
            return Ok(Ok(()));
        }
        Ok(self.replica_mut()?.handle_messages(peer, msgs, rng))
    }
}

/// The teams the relay's operator accepted, from its store.
fn accepted_teams(store: &Store) -> Result<std::collections::BTreeSet<SpaceId>, VaultError> {
    let ids: Vec<String> = store.get_json(KV_RELAY_TEAMS)?.unwrap_or_default();
    Ok(ids.iter().filter_map(|h| SpaceId::from_hex(h)).collect())
}
