//! The vault: one device's [`Replica`] (the very state machine the
//! simulator runs) with its IO — the SQLite store, the PIN keystore and the
//! sealed device keys. Everything that decides anything is in the replica;
//! this module reads the PIN, writes what the replica asks to persist, and
//! hands the rest of its effects to the actor ([`actor`]) that routes them.
//!
//! A command runs against the replica, then [`Vault::settle`] writes every
//! `Persist` effect it queued in one SQLite transaction. If that write
//! fails, memory is ahead of disk: the replica is reloaded from the store
//! (and unlocked again with the keys it had), and the command fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use coffer_crdt::folder::{Item, ItemEdit, ItemType};
use coffer_crdt::replica::{
    Effect, Event, Identity, ImportItem, ImportPlan, ItemQuery, LockReason, NewItemSpec, Persist,
    SpaceKind, StoredSpace, Trusted,
};
use coffer_crdt::{DeviceId, DeviceKeys, Envelope, ItemId, Replica, ReplicaError, SpaceId};
use rand_core::CryptoRngCore;
use tracing::{info, warn};
use zeroize::Zeroizing;

use crate::export::ExportItem;
use crate::import;
use crate::keystore::{self, Failures, KdfParams, KeystoreError, KeystoreRecord};
use crate::store::{Store, StoreError};

pub mod actor;
pub mod audit;
pub mod enrol;
pub mod relay;
#[cfg(test)]
mod reload_tests;

const KV_KEYSTORE: &str = "keystore";
const KV_DEVICE_KEYS: &str = "device_keys";
/// The replica's [`Identity`] (JSON).
const KV_REPLICA_IDENTITY: &str = "replica_identity";
const KV_FAILURES: &str = "pin_failures";
const KV_TRUSTED: &str = "trusted_devices_v2";
const KV_NET_IDENTITY: &str = "net_identity";
const DEVICE_KEYS_PURPOSE: &str = "coffer 2026 device keys at rest v1";
const DEVICE_KEYS_AAD: &[u8] = b"coffer/device-keys/v1";
const NET_IDENTITY_PURPOSE: &str = "coffer 2026 network identity at rest v1";
const NET_IDENTITY_AAD: &[u8] = b"coffer/net-identity/v1";
/// Prefix of a pairing key: device id, exchange key, transport key.
pub const PAIRING_PREFIX: &str = "coffer2:";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    #[error("this device has no vault yet: run `coffer init --name NAME --email EMAIL`")]
    NotInitialized,
    #[error("this device already has a vault")]
    AlreadyInitialized,
    #[error("wrong PIN")]
    WrongPin,
    #[error("too many failed PIN attempts: try again in {retry_after_secs} s")]
    TooManyAttempts { retry_after_secs: u64 },
    /// Input the vault refuses before the replica sees it.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keystore(KeystoreError),
    #[error("internal error: {0}")]
    Internal(String),
    /// The vault thread is gone (the daemon is shutting down).
    #[error("the daemon is shutting down")]
    Stopped,
}

impl From<KeystoreError> for VaultError {
    fn from(e: KeystoreError) -> Self {
        match e {
            KeystoreError::WrongPin => VaultError::WrongPin,
            KeystoreError::BadPin => VaultError::Invalid(e.to_string()),
            other => VaultError::Keystore(other),
        }
    }
}

/// The clock, read by the caller.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    pub unix_ms: i64,
}

impl Now {
    /// The wall clock now.
    pub fn wall() -> Now {
        Now {
            unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
        }
    }

    pub fn unix_secs(&self) -> u64 {
        (self.unix_ms / 1000).max(0) as u64
    }
}

/// What the vault hands the actor after a command: everything the replica
/// said except what it asked to persist (written already).
#[derive(Clone, Debug)]
pub enum Output {
    Event(Event),
    /// The devices this one syncs with now, with their transport keys.
    AllowedPeers(BTreeMap<DeviceId, [u8; 32]>),
    /// The replica has messages for this peer (`poll_transmit`).
    Transmit(DeviceId),
    /// The team's relays (by device id = transport key) and their addresses.
    Relays(BTreeMap<DeviceId, Vec<String>>),
}

/// A device as its pairing key names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairingKey {
    pub device: DeviceId,
    /// Its X25519 key (folder keys are sealed to it).
    pub exchange: [u8; 32],
    /// Its Ed25519 transport key (the identity it connects with).
    pub transport: [u8; 32],
}

/// Parses `coffer2:<64 hex>:<64 hex>:<64 hex>`.
pub fn parse_pairing_key(key: &str) -> Option<PairingKey> {
    let rest = key.trim().strip_prefix(PAIRING_PREFIX)?;
    let mut parts = rest.split(':');
    let device = DeviceId::from_hex(parts.next()?)?;
    let exchange: [u8; 32] = hex::decode(parts.next()?).ok()?.try_into().ok()?;
    let transport: [u8; 32] = hex::decode(parts.next()?).ok()?.try_into().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some(PairingKey {
        device,
        exchange,
        transport,
    })
}

/// What `coffer reset` erased (all `None`: there was no vault).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Erased {
    pub device: Option<DeviceId>,
    pub email: Option<String>,
    pub team: Option<String>,
}

pub struct Vault {
    data_dir: PathBuf,
    store: Store,
    kdf: KdfParams,
    /// `None` before `init`.
    replica: Option<Replica>,
    /// `cofferd --relay`: the keyless relay instead of a replica.
    relay: Option<coffer_crdt::replica::relay::Relay>,
    /// Effects for the actor, in the order they happened.
    outputs: Vec<Output>,
    /// The replica was rebuilt from the store (after a failed write).
    reloaded: bool,
}

impl Vault {
    /// Opens (creating if needed) the store under `data_dir` and loads the
    /// replica from it. The vault starts locked.
    pub fn open(data_dir: &Path, kdf: KdfParams) -> Result<Vault, VaultError> {
        let store = Store::open(&data_dir.join("vault.sqlite3"))?;
        let mut vault = Vault {
            data_dir: data_dir.to_path_buf(),
            store,
            kdf,
            replica: None,
            relay: None,
            outputs: Vec::new(),
            reloaded: false,
        };
        vault.replica = vault.load_replica()?;
        info!(
            folders = vault
                .replica
                .as_ref()
                .map_or(0, |r| r.folder_spaces().count()),
            initialized = vault.replica.is_some(),
            "vault opened"
        );
        vault.settle()?;
        Ok(vault)
    }

    fn load_replica(&mut self) -> Result<Option<Replica>, VaultError> {
        let Some(identity) = self.load_identity()? else {
            return Ok(None);
        };
        let stored = self.store.load_spaces()?;
        let trusted = self
            .store
            .get_json::<Vec<Trusted>>(KV_TRUSTED)?
            .unwrap_or_default();
        let mut replica = Replica::load(identity, stored, trusted);
        replica.audit_load(self.store.audit_heads()?);
        Ok(Some(replica))
    }

    /// The stored identity. (A store of the first release — envelopes
    /// before version 3 — does not load: export there, import here.)
    fn load_identity(&mut self) -> Result<Option<Identity>, VaultError> {
        Ok(self.store.get_json::<Identity>(KV_REPLICA_IDENTITY)?)
    }

    /// The replica, once initialised.
    pub fn replica(&self) -> Result<&Replica, VaultError> {
        self.replica.as_ref().ok_or(VaultError::NotInitialized)
    }

    /// The replica for a command; call [`Vault::settle`] after it (the
    /// actor does, after every job).
    pub fn replica_mut(&mut self) -> Result<&mut Replica, VaultError> {
        self.replica.as_mut().ok_or(VaultError::NotInitialized)
    }

    pub fn is_initialized(&self) -> bool {
        self.replica.is_some()
    }

    pub fn is_locked(&self) -> bool {
        self.replica.as_ref().is_none_or(Replica::is_locked)
    }

    /// Writes what the replica queued to persist (one transaction) and
    /// keeps its other effects for [`Vault::take_outputs`]. On a failed
    /// write the replica is reloaded from the store, so memory never runs
    /// ahead of disk.
    pub fn settle(&mut self) -> Result<(), VaultError> {
        if self.relay.is_some() {
            return self.settle_relay();
        }
        let Some(replica) = self.replica.as_mut() else {
            return Ok(());
        };
        let (persists, outputs) = drain(replica);
        if !persists.is_empty() {
            if let Err(e) = self.write(&persists) {
                // What the outputs describe was rolled back with it.
                warn!(error = %e, "a write failed; reloading the replica from the store");
                self.reload();
                return Err(e);
            }
        }
        self.outputs.extend(outputs);
        Ok(())
    }

    fn write(&mut self, persists: &[Persist]) -> Result<(), VaultError> {
        let mut trusted = None;
        let mut batches = Vec::new();
        let mut snapshots = Vec::new();
        let mut audit = Vec::new();
        let mut drops = Vec::new();
        for p in persists {
            match p {
                Persist::DropSpace { space } => drops.push(*space),
                Persist::Audit(rows) => audit.extend(rows.iter().cloned()),
                Persist::Envelopes {
                    space,
                    kind,
                    team,
                    envelopes,
                } => batches.push((*space, *kind, *team, envelopes.as_slice())),
                Persist::Trusted(list) => trusted = Some(list),
                Persist::Snapshot { space, sealed } => {
                    snapshots.push((*space, Some(sealed.as_slice())))
                }
                Persist::DropSnapshot { space } => snapshots.push((*space, None)),
            }
        }
        let trusted = trusted
            .map(|t| serde_json::to_vec(t).map_err(|e| VaultError::Internal(e.to_string())))
            .transpose()?;
        let kv: Vec<(&str, Vec<u8>)> = trusted.map(|t| (KV_TRUSTED, t)).into_iter().collect();
        self.store.persist(&kv, &batches, &snapshots, &audit)?;
        if !drops.is_empty() {
            // After the batches: a space is never dropped and written again
            // in one settle. A crash in between leaves it for the relay to
            // drop again when it loads.
            self.store.drop_spaces(&drops)?;
        }
        Ok(())
    }

    /// Rebuilds the replica from the store, unlocked again if it was. The
    /// unlock's own writes (key upkeep) are stored at once; if that fails
    /// too, the replica stays locked as the disk has it, so nothing in
    /// memory is ahead of disk. A store that cannot be read leaves no
    /// replica at all (every command then fails) rather than a stale one.
    fn reload(&mut self) {
        let keys = self
            .replica
            .as_ref()
            .and_then(|r| r.keys_for_reload().cloned());
        self.reloaded = true;
        let mut replica = match self.load_replica() {
            Ok(Some(r)) => r,
            Ok(None) => {
                self.replica = None;
                return;
            }
            Err(e) => {
                warn!(error = %e, "cannot reload the replica: the vault is unavailable");
                self.replica = None;
                return;
            }
        };
        let was_unlocked = keys.is_some();
        if let Some(keys) = keys {
            let mut unlocked = replica;
            if let Err(e) = supply_snapshots(&self.store, &mut unlocked) {
                warn!(error = %e, "cannot read the folder snapshots: folders are rebuilt");
            }
            match unlocked.unlock(keys, &mut rand::rngs::OsRng) {
                Ok(()) => {
                    let (persists, outputs) = drain(&mut unlocked);
                    if persists.is_empty() || self.write(&persists).is_ok() {
                        self.outputs.extend(outputs);
                        self.replica = Some(unlocked);
                        return;
                    }
                    warn!("the disk refuses writes: the vault stays locked");
                }
                Err(e) => warn!(error = %e, "cannot unlock the reloaded replica"),
            }
            replica = match self.load_replica() {
                Ok(Some(r)) => r,
                _ => {
                    self.replica = None;
                    return;
                }
            };
        }
        let (_, outputs) = drain(&mut replica);
        self.outputs.extend(outputs);
        if was_unlocked {
            self.outputs.push(Output::Event(Event::LockChanged {
                locked: true,
                reason: LockReason::Request,
            }));
        }
        self.replica = Some(replica);
    }

    /// Whether the replica was rebuilt since the last call (its peers must
    /// be told again who is connected).
    pub fn take_reloaded(&mut self) -> bool {
        std::mem::take(&mut self.reloaded)
    }

    /// Effects for the actor to route, in order.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outputs)
    }

    /// Creates the device identity, the PIN keystore and the Personal folder.
    pub fn init(
        &mut self,
        name: &str,
        email: &str,
        pin: &str,
        now: Now,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(DeviceId, SpaceId), VaultError> {
        let keys = DeviceKeys::generate(rng);
        let transport = new_transport_seed(rng);
        self.init_with_keys(name, email, pin, keys, transport, now, rng)
    }

    /// `init` with given keys: a fresh device joining a team uses the
    /// signing and transport keys its enrolment handshake was made with.
    #[allow(clippy::too_many_arguments)]
    pub fn init_with_keys(
        &mut self,
        name: &str,
        email: &str,
        pin: &str,
        keys: DeviceKeys,
        transport_seed: Zeroizing<[u8; 32]>,
        now: Now,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(DeviceId, SpaceId), VaultError> {
        if self.replica.is_some() {
            return Err(VaultError::AlreadyInitialized);
        }
        keystore::check_pin(pin)?;
        let transport = coffer_crdt::crypto::ed25519_public(&transport_seed);
        let mut replica = Replica::create(keys.clone(), name, email, transport, now.unix_ms, rng)?;
        let (record, root) = keystore::create(&self.data_dir, pin, self.kdf, rng)?;
        // The transport key is sealed under the pepper alone, so a locked
        // daemon still syncs after a restart; it signs nothing.
        let wrap = keystore::pepper_subkey(&self.data_dir, NET_IDENTITY_PURPOSE)?;
        let sealed_transport =
            keystore::seal(&wrap, transport_seed.as_slice(), NET_IDENTITY_AAD, rng);
        let sealed_keys = keystore::seal(
            &root.derive(DEVICE_KEYS_PURPOSE),
            keys.to_secret_bytes().as_slice(),
            DEVICE_KEYS_AAD,
            rng,
        );
        let json = |v: &dyn erased::Json| v.to_json();
        let identity = replica.identity().clone();
        let (persists, outputs) = drain(&mut replica);
        let batches: Vec<_> = persists
            .iter()
            .filter_map(|p| match p {
                Persist::Envelopes {
                    space,
                    kind,
                    team,
                    envelopes,
                } => Some((*space, *kind, *team, envelopes.as_slice())),
                Persist::Trusted(_)
                | Persist::Audit(_)
                | Persist::Snapshot { .. }
                | Persist::DropSnapshot { .. }
                | Persist::DropSpace { .. } => None,
            })
            .collect();
        // All or nothing: keystore, sealed keys, identity and the Personal folder.
        self.store.persist(
            &[
                (KV_KEYSTORE, json(&record)),
                (KV_DEVICE_KEYS, sealed_keys),
                (KV_REPLICA_IDENTITY, json(&identity)),
                (KV_NET_IDENTITY, json(&sealed_transport)),
                (KV_FAILURES, json(&Failures::default())),
            ],
            &batches,
            &[],
            &[],
        )?;
        let ids = (identity.device, identity.personal);
        self.replica = Some(replica);
        self.outputs.extend(outputs);
        info!(device = %ids.0.short(), "device initialised");
        Ok(ids)
    }

    /// The failed-attempt count and the keystore record for a PIN check
    /// (unlock, PIN change), or the wait still owed after failed attempts.
    fn pin_attempt(&self, now: Now) -> Result<(Failures, KeystoreRecord), VaultError> {
        let failures = self
            .store
            .get_json::<Failures>(KV_FAILURES)?
            .unwrap_or_default();
        let wait = failures.wait_secs(now.unix_secs());
        if wait > 0 {
            return Err(VaultError::TooManyAttempts {
                retry_after_secs: wait,
            });
        }
        let record = self
            .store
            .get_json(KV_KEYSTORE)?
            .ok_or(VaultError::NotInitialized)?;
        Ok((failures, record))
    }

    /// Stores one more failed attempt after `failures`; the error to return.
    fn count_wrong_pin(&mut self, failures: &Failures, now: Now) -> Result<VaultError, VaultError> {
        let failures = Failures {
            count: failures.count.saturating_add(1),
            last_unix: now.unix_secs(),
        };
        self.store.put_json(KV_FAILURES, &failures)?;
        warn!(failures = failures.count, "wrong PIN");
        Ok(VaultError::WrongPin)
    }

    /// Checks the PIN (unlock, and again before a plaintext export or a
    /// backup): counts and throttles failures, clears them on success.
    fn verify_pin(&mut self, pin: &str, now: Now) -> Result<keystore::RootSecret, VaultError> {
        if self.replica.is_none() {
            return Err(VaultError::NotInitialized);
        }
        let (failures, record) = self.pin_attempt(now)?;
        let root = match keystore::unlock(&self.data_dir, &record, pin) {
            Ok(root) => root,
            Err(KeystoreError::WrongPin) => return Err(self.count_wrong_pin(&failures, now)?),
            Err(e) => return Err(e.into()),
        };
        if failures.count > 0 {
            self.store.put_json(KV_FAILURES, &Failures::default())?;
        }
        Ok(root)
    }

    /// `coffer export` and `coffer backup` ask for the PIN again, as the
    /// managers people know ask for the master password: an unlocked
    /// laptop left alone does not hand out every secret in one command.
    pub fn confirm_pin(&mut self, pin: &str, now: Now) -> Result<(), VaultError> {
        let result = self.verify_pin(pin, now).map(drop);
        if matches!(result, Err(VaultError::WrongPin)) {
            let mut ev =
                coffer_crdt::audit::AuditEvent::new("", coffer_crdt::audit::Action::UnlockFailed);
            ev.detail = Some("a wrong PIN to confirm an export or backup".into());
            self.audit_note(ev, now);
        }
        result
    }

    /// Opens the vault with the PIN; counts and throttles failures.
    pub fn unlock(&mut self, pin: &str, now: Now) -> Result<(), VaultError> {
        let before = self
            .store
            .get_json::<Failures>(KV_FAILURES)?
            .unwrap_or_default();
        let root = match self.verify_pin(pin, now) {
            Ok(root) => root,
            Err(e) => {
                if matches!(e, VaultError::WrongPin) {
                    // Unlocked already: the record is written now; locked,
                    // at the next unlock (the key is under the PIN).
                    let ev = coffer_crdt::audit::AuditEvent::new(
                        "",
                        coffer_crdt::audit::Action::UnlockFailed,
                    );
                    self.audit_note(ev, now);
                }
                return Err(e);
            }
        };
        if !self.is_locked() {
            // Already open: the PIN was still checked (and failures counted).
            return Ok(());
        }
        let sealed = self
            .store
            .get_kv(KV_DEVICE_KEYS)?
            .ok_or(VaultError::NotInitialized)?;
        let plain = keystore::open(&root.derive(DEVICE_KEYS_PURPOSE), &sealed, DEVICE_KEYS_AAD)
            .ok_or_else(|| {
                VaultError::Internal("device keys do not open with the root secret".into())
            })?;
        let keys = DeviceKeys::from_secret_bytes(&plain)
            .map_err(|e| VaultError::Internal(e.to_string()))?;
        let replica = self.replica.as_mut().ok_or(VaultError::NotInitialized)?;
        if let Err(e) = supply_snapshots(&self.store, replica) {
            // A snapshot is a shortcut: the folders are rebuilt without it.
            warn!(error = %e, "cannot read the folder snapshots: folders are rebuilt");
        }
        replica.unlock(keys, &mut rand::rngs::OsRng)?;
        let opened = replica.last_unlock();
        use coffer_crdt::audit::{Action, AuditEvent};
        if before.count > 0 {
            let mut ev = AuditEvent::new("", Action::UnlockFailed);
            ev.detail = Some(format!(
                "{} wrong PIN attempt(s) while locked, the last at unix {}",
                before.count, before.last_unix
            ));
            self.audit_note(ev, now);
        }
        self.audit_note(AuditEvent::new("", Action::Unlock), now);
        // Pruning past the retention is idle upkeep (vault actor), so a
        // failed write of this unlock is reported by its own settle.
        release_freed_memory();
        info!(
            from_snapshot = opened.from_snapshot,
            rebuilt = opened.rebuilt,
            "vault unlocked"
        );
        Ok(())
    }

    /// `coffer pin change`: checks `old_pin` (a wrong one counts as a failed
    /// attempt, with the same backoff as unlocking), then stores the root
    /// secret re-wrapped under `new_pin` in one transaction, the failure
    /// count reset with it. Nothing else changes: the device keys, folders
    /// and peers are untouched, and the lock state stays as it was.
    pub fn change_pin(
        &mut self,
        old_pin: &str,
        new_pin: &str,
        now: Now,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(), VaultError> {
        if self.replica.is_none() {
            return Err(VaultError::NotInitialized);
        }
        keystore::check_pin(new_pin)?;
        let (failures, record) = self.pin_attempt(now)?;
        let new = match keystore::change_pin(&self.data_dir, &record, old_pin, new_pin, rng) {
            Ok(new) => new,
            Err(KeystoreError::WrongPin) => return Err(self.count_wrong_pin(&failures, now)?),
            Err(e) => return Err(e.into()),
        };
        let json = |v: &dyn erased::Json| v.to_json();
        self.store.persist(
            &[
                (KV_KEYSTORE, json(&new)),
                (KV_FAILURES, json(&Failures::default())),
            ],
            &[],
            &[],
            &[],
        )?;
        info!("PIN changed");
        Ok(())
    }

    /// Seals snapshots of the open folders that changed much since their
    /// last one (see `Replica::snapshot_folders`); written by settle.
    pub fn snapshot_folders(&mut self) {
        if let Some(r) = self.replica.as_mut() {
            r.snapshot_folders(
                coffer_crdt::replica::SNAPSHOT_AFTER_CHANGES,
                &mut rand::rngs::OsRng,
            );
        }
    }

    /// Forgets every key and decrypted document.
    pub fn lock(&mut self, reason: LockReason) {
        if self.is_locked() {
            return;
        }
        let mut ev = coffer_crdt::audit::AuditEvent::new("", coffer_crdt::audit::Action::Lock);
        ev.detail = Some(format!("{reason:?}").to_lowercase());
        self.audit_note(ev, Now::wall());
        // Folders that changed much are saved compacted first, so the next
        // unlock does not replay their changes (written by settle).
        self.snapshot_folders();
        if let Some(r) = self.replica.as_mut() {
            r.lock(reason);
            info!(?reason, "vault locked");
        }
        release_freed_memory();
    }

    /// `coffer reset`: erases this device's vault without its PIN (a
    /// forgotten one). The keys go first — the pepper file, without which
    /// the sealed root secret never opens again — then every row of the
    /// store in one transaction. What was erased: (device, email, team).
    /// The caller stops the daemon next (its network identity and open
    /// sessions were this device's); `init` or `join` can then run again.
    pub fn reset(&mut self) -> Result<Erased, VaultError> {
        let erased = self
            .replica
            .as_ref()
            .map(|r| Erased {
                device: Some(r.device()),
                email: Some(r.identity().email.clone()),
                team: r.team().ok().map(|t| t.name),
            })
            .unwrap_or_default();
        if let Some(mut r) = self.replica.take() {
            r.lock(LockReason::Request);
        }
        self.outputs.clear();
        self.outputs.push(Output::AllowedPeers(BTreeMap::new()));
        keystore::destroy(&self.data_dir)?;
        self.store.wipe()?;
        warn!("vault erased (coffer reset)");
        Ok(erased)
    }

    /// `coffer device id`: the device id and its pairing key.
    pub fn pairing_key(&self) -> Result<(DeviceId, String), VaultError> {
        let id = self.replica()?.identity();
        Ok((
            id.device,
            format!(
                "{PAIRING_PREFIX}{}:{}:{}",
                id.device.to_hex(),
                hex::encode(id.exchange),
                hex::encode(id.transport)
            ),
        ))
    }

    /// The seed of the device's transport key (its network identity),
    /// sealed under the pepper file: available while locked. It is not the
    /// signing key, which exists only under the PIN — a copy of the data
    /// dir lets nobody sign as this device. `None` before `init`.
    pub fn network_secret(&self) -> Result<Option<Zeroizing<[u8; 32]>>, VaultError> {
        if self.is_relay() {
            return self.relay_secret();
        }
        if self.replica.is_none() {
            return Ok(None);
        }
        let Some(sealed) = self.store.get_json::<Vec<u8>>(KV_NET_IDENTITY)? else {
            return Ok(None);
        };
        let wrap = keystore::pepper_subkey(&self.data_dir, NET_IDENTITY_PURPOSE)?;
        let plain = keystore::open(&wrap, &sealed, NET_IDENTITY_AAD)
            .ok_or_else(|| VaultError::Internal("the network identity does not open".into()))?;
        let seed: [u8; 32] = plain
            .as_slice()
            .try_into()
            .map_err(|_| VaultError::Internal("the network identity is malformed".into()))?;
        Ok(Some(Zeroizing::new(seed)))
    }

    /// Adds the items of a parsed export (see [`Replica::import`]).
    pub fn import(
        &mut self,
        report: import::ImportReport,
        into: Option<&str>,
        dry_run: bool,
        now: Now,
        rng: &mut impl CryptoRngCore,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<ImportPlan, VaultError> {
        let mut items = Vec::with_capacity(report.items.len());
        for item in report.items {
            let item_type = ItemType::parse(&item.item_type).ok_or_else(|| {
                VaultError::Invalid(format!("unknown item type {:?}", item.item_type))
            })?;
            items.push(ImportItem {
                item_type,
                name: item.name,
                folder: item.folder,
                fields: item.fields,
                urls: item.urls,
                created_ms: item.times.created_ms,
                updated_ms: item.times.updated_ms,
                trashed_ms: item.times.trashed_ms,
            });
        }
        let plan = self
            .replica_mut()?
            .import(items, into, dry_run, now.unix_ms, rng, progress)?;
        release_freed_memory();
        Ok(plan)
    }

    /// Every readable item (or one folder's) as plaintext for an export or a
    /// backup, sorted by folder and name; trashed items only if asked.
    pub fn export_items(
        &self,
        folder: Option<&str>,
        include_trash: bool,
    ) -> Result<Vec<ExportItem>, VaultError> {
        let mut out: Vec<ExportItem> = self
            .replica()?
            .export_items(folder, include_trash)?
            .into_iter()
            .map(|(folder, item)| ExportItem {
                item_type: item.item_type.as_str().into(),
                name: item.name.clone(),
                folder,
                fields: item.fields.clone().into(),
                urls: item.urls.clone(),
                created_ms: Some(item.created_ms),
                updated_ms: Some(item.updated_ms),
                trashed_ms: item.trashed_ms,
            })
            .collect();
        // Stable across devices: items of the same name are ordered by content.
        out.sort_by(|a, b| {
            (&a.folder, &a.name)
                .cmp(&(&b.folder, &b.name))
                .then_with(|| a.cmp(b))
        });
        Ok(out)
    }

    /// An item by query, with its folder.
    pub fn find_item(&self, query: &ItemQuery) -> Result<(SpaceId, ItemId, Item), VaultError> {
        let r = self.replica()?;
        let (folder, id) = r.resolve_item(query)?;
        Ok((folder, id, r.item(&folder, &id)?))
    }

    /// Adds an item; returns where it went.
    pub fn add_item(
        &mut self,
        spec: NewItemSpec,
        now: Now,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(SpaceId, ItemId), VaultError> {
        Ok(self.replica_mut()?.add_item(spec, now.unix_ms, rng)?)
    }

    pub fn edit_item(
        &mut self,
        query: &ItemQuery,
        edit: ItemEdit,
        now: Now,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(SpaceId, ItemId), VaultError> {
        Ok(self
            .replica_mut()?
            .edit_item(query, edit, now.unix_ms, rng)?)
    }

    /// Every envelope of a space as stored (for tests and tools).
    pub fn stored_envelopes(&self, space: &SpaceId) -> Result<Vec<Envelope>, VaultError> {
        let mut out = Vec::new();
        self.store
            .each_envelope(space, |b| out.extend(Envelope::decode(b).ok()))?;
        Ok(out)
    }
}

/// The replica's queued effects: what to persist, and the rest for the actor.
fn drain(replica: &mut Replica) -> (Vec<Persist>, Vec<Output>) {
    drain_with(|| replica.poll_effect())
}

fn drain_with(mut next: impl FnMut() -> Option<Effect>) -> (Vec<Persist>, Vec<Output>) {
    let mut persists = Vec::new();
    let mut outputs = Vec::new();
    while let Some(effect) = next() {
        match effect {
            Effect::Persist(p) => persists.push(p),
            Effect::Event(e) => outputs.push(Output::Event(e)),
            Effect::AllowedPeers(a) => outputs.push(Output::AllowedPeers(a)),
            Effect::Transmit(d) => outputs.push(Output::Transmit(d)),
            Effect::Relays(r) => outputs.push(Output::Relays(r)),
        }
    }
    (persists, outputs)
}

/// A new transport key's seed.
pub fn new_transport_seed(rng: &mut impl CryptoRngCore) -> Zeroizing<[u8; 32]> {
    let mut seed = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(seed.as_mut_slice());
    seed
}

/// Rebuilding folders frees far more than it keeps (measured: 97 MB RSS after
/// unlocking 10,000 items); hand the freed heap back to the OS.
pub(crate) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the OS.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl Store {
    /// Every stored space with its envelopes (undecodable rows skipped: the
    /// store only ever holds envelopes that decoded when they arrived).
    pub fn load_spaces(&self) -> Result<Vec<StoredSpace>, StoreError> {
        let mut out = Vec::new();
        for (id, kind, team) in self.space_rows()? {
            let kind = if kind == crate::store::SPACE_TEAM {
                SpaceKind::Roster
            } else {
                SpaceKind::Folder
            };
            let mut envelopes = Vec::new();
            self.each_envelope(&id, |bytes| match Envelope::decode(bytes) {
                Ok(e) => envelopes.push(e),
                Err(e) => {
                    warn!(space = %id.short(), error = %e, "a stored envelope does not decode");
                }
            })?;
            out.push(StoredSpace {
                id,
                kind,
                team,
                envelopes,
                // Handed in at unlock (`Vault::unlock`), not held locked.
                snapshot: None,
            });
        }
        Ok(out)
    }

    /// Writes kv records, envelope batches, folder snapshots and audit
    /// records in one transaction.
    pub fn persist(
        &mut self,
        kv: &[(&str, Vec<u8>)],
        batches: &[(SpaceId, SpaceKind, Option<SpaceId>, &[Envelope])],
        snapshots: &[(SpaceId, Option<&[u8]>)],
        audit: &[coffer_crdt::replica::AuditRow],
    ) -> Result<(), StoreError> {
        let rows: Vec<(SpaceId, &str, Option<SpaceId>, &[Envelope])> = batches
            .iter()
            .map(|(space, kind, team, envs)| {
                let kind = match kind {
                    SpaceKind::Roster => crate::store::SPACE_TEAM,
                    SpaceKind::Folder => crate::store::SPACE_FOLDER,
                };
                (*space, kind, *team, *envs)
            })
            .collect();
        self.write_batch(kv, &rows, snapshots, audit)
    }
}

mod erased {
    pub trait Json {
        fn to_json(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> Vec<u8> {
            serde_json::to_vec(self).expect("serialising plain data cannot fail")
        }
    }
}

/// Hands the replica the sealed snapshots its next unlock would try, from
/// the store: the replica drops them once restored, so neither a locked
/// nor an unlocked daemon holds them (10.6 MB at 100,000 items).
fn supply_snapshots(store: &Store, replica: &mut Replica) -> Result<(), StoreError> {
    for id in replica.snapshots_wanted() {
        if let Some(sealed) = store.snapshot(&id)? {
            replica.supply_snapshot(id, sealed);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_crdt::replica::ItemQuery;
    use rand::rngs::OsRng;

    pub(super) fn kdf() -> KdfParams {
        KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    }

    pub(super) fn now() -> Now {
        Now {
            unix_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn what_is_written_survives_a_reopen_and_unlocks() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = Vault::open(dir.path(), kdf()).unwrap();
        v.init("Ada", "ada@example.com", "246813", now(), &mut OsRng)
            .unwrap();
        v.add_item(
            NewItemSpec {
                folder: None,
                item_type: ItemType::Login,
                name: "mail".into(),
                fields: BTreeMap::from([("password".into(), "hunter2".into())]),
                urls: vec![],
            },
            now(),
            &mut OsRng,
        )
        .unwrap();
        v.settle().unwrap();
        drop(v);
        let mut v = Vault::open(dir.path(), kdf()).unwrap();
        assert!(v.is_locked());
        assert!(matches!(v.unlock("1111", now()), Err(VaultError::WrongPin)));
        v.unlock("246813", now()).unwrap();
        let (_, _, item) = v.find_item(&ItemQuery::live("mail")).unwrap();
        assert_eq!(item.fields["password"], "hunter2");
    }

    /// Issue 18: a folder that changed much is snapshotted when the vault
    /// locks; the next unlock, and one after a restart, load it and show
    /// what a full replay shows — edits made after the snapshot included.
    #[test]
    fn a_locked_folder_reopens_from_its_snapshot_with_later_edits() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = Vault::open(dir.path(), kdf()).unwrap();
        v.init("Ada", "ada@example.com", "246813", now(), &mut OsRng)
            .unwrap();
        let add = |v: &mut Vault, name: String| {
            v.add_item(
                NewItemSpec {
                    folder: None,
                    item_type: ItemType::Login,
                    name,
                    fields: BTreeMap::from([("password".into(), "pw".into())]),
                    urls: vec![],
                },
                now(),
                &mut OsRng,
            )
            .unwrap();
            v.settle().unwrap();
        };
        let n = coffer_crdt::replica::SNAPSHOT_AFTER_CHANGES + 4;
        for i in 0..n {
            add(&mut v, format!("item{i:04}"));
        }
        v.lock(LockReason::Request);
        v.settle().unwrap();
        v.unlock("246813", now()).unwrap();
        assert_eq!(v.replica().unwrap().last_unlock().from_snapshot, 1);
        add(&mut v, "after".into());
        drop(v);
        let mut v = Vault::open(dir.path(), kdf()).unwrap();
        v.unlock("246813", now()).unwrap();
        let opened = v.replica().unwrap().last_unlock();
        assert_eq!((opened.from_snapshot, opened.rebuilt), (1, 0));
        let names: Vec<String> = v
            .replica()
            .unwrap()
            .items(None, false)
            .unwrap()
            .into_iter()
            .map(|(_, i)| i.name.clone())
            .collect();
        assert_eq!(names.len(), n + 1);
        assert!(names.contains(&"after".to_string()) && names.contains(&"item0000".to_string()));
        // A damaged snapshot is only a lost shortcut: the folder is rebuilt.
        v.lock(LockReason::Request);
        v.store
            .conn
            .execute("UPDATE snapshots SET sealed = x'00'", [])
            .unwrap();
        drop(v);
        let mut v = Vault::open(dir.path(), kdf()).unwrap();
        v.unlock("246813", now()).unwrap();
        assert_eq!(v.replica().unwrap().last_unlock().rebuilt, 1);
        assert_eq!(
            v.replica().unwrap().items(None, false).unwrap().len(),
            n + 1
        );
    }

    /// `coffer reset` (issue 21): a locked vault whose PIN is unknown is
    /// erased — no pepper, no row, nothing of its secrets left in the
    /// database file — and a new one can be made in the same folder.
    #[test]
    fn reset_erases_a_locked_vault_and_init_runs_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = Vault::open(dir.path(), kdf()).unwrap();
        let (device, _) = v
            .init("Ada", "ada@example.com", "246813", now(), &mut OsRng)
            .unwrap();
        v.settle().unwrap();
        v.lock(LockReason::Request);
        let sealed = v.store.get_kv(KV_DEVICE_KEYS).unwrap().unwrap();
        let erased = v.reset().unwrap();
        assert_eq!(erased.device, Some(device));
        assert_eq!(erased.email.as_deref(), Some("ada@example.com"));
        assert!(!v.is_initialized());
        assert!(!keystore::secret_file_path(dir.path()).exists());
        assert!(v.store.get_kv(KV_KEYSTORE).unwrap().is_none());
        assert!(v.store.load_spaces().unwrap().is_empty());
        for f in ["vault.sqlite3", "vault.sqlite3-wal"] {
            let bytes = std::fs::read(dir.path().join(f)).unwrap_or_default();
            assert!(
                !bytes.windows(sealed.len()).any(|w| w == sealed.as_slice()),
                "{f} still holds the sealed device keys"
            );
        }
        drop(v);
        let mut v = Vault::open(dir.path(), kdf()).unwrap();
        assert!(!v.is_initialized());
        let (again, _) = v
            .init("Ada", "ada@example.com", "975310", now(), &mut OsRng)
            .unwrap();
        assert_ne!(again, device);
        v.lock(LockReason::Request);
        v.unlock("975310", now()).unwrap();
    }

    /// Issue 20, item 8: with a copy of the data dir but not the PIN, one
    /// gets the transport key (to sync ciphertext as this device) and
    /// nothing that signs.
    #[test]
    fn a_copied_data_dir_holds_no_signing_key_outside_the_pin() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = Vault::open(dir.path(), kdf()).unwrap();
        let (device, _) = v
            .init("Ada", "ada@example.com", "246813", now(), &mut OsRng)
            .unwrap();
        drop(v);
        let copy = tempfile::tempdir().unwrap();
        for name in ["vault.sqlite3", "device.secret"] {
            std::fs::copy(dir.path().join(name), copy.path().join(name)).unwrap();
        }
        let stolen = Vault::open(copy.path(), kdf()).unwrap();
        let seed = stolen.network_secret().unwrap().expect("the transport key");
        let transport = coffer_crdt::crypto::ed25519_public(&seed);
        assert_eq!(transport, stolen.replica().unwrap().identity().transport);
        assert_ne!(
            transport, device.0,
            "the transport key is not the signing key"
        );
        assert!(stolen.is_locked());
        assert!(stolen.replica().unwrap().keys_for_reload().is_none());
    }

    #[test]
    fn a_failed_write_leaves_memory_as_the_disk_has_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = Vault::open(dir.path(), kdf()).unwrap();
        v.init("Ada", "ada@example.com", "246813", now(), &mut OsRng)
            .unwrap();
        v.store.fail_next_write_for_test();
        let spec = NewItemSpec {
            folder: None,
            item_type: ItemType::Note,
            name: "lost".into(),
            fields: BTreeMap::new(),
            urls: vec![],
        };
        v.add_item(spec, now(), &mut OsRng).unwrap();
        assert!(v.settle().is_err());
        assert!(!v.is_locked(), "the reloaded replica is unlocked again");
        assert!(v.find_item(&ItemQuery::live("lost")).is_err());
    }
}
