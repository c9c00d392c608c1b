//! The vault's side of peer-to-peer sync: which devices it syncs with, what
//! it holds (summaries for peers), what a peer lacks, and taking in a peer's
//! envelopes — validated by the acceptance rule without keys, applied to the
//! open folder documents when unlocked.
//!
//! Also pairing outside a team (`coffer device trust` / `revoke`, for tests
//! and single-user setups): a locally trusted device list, and folder
//! sharing through the crdt's `Principal::Device` membership ops. Inside a
//! team the roster decides (`vault/team.rs`).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use coffer_crdt::folder::touched_items;
use coffer_crdt::{
    ControlOp, DeviceId, Envelope, EnvelopeId, Kind, MembershipOp, Outcome, Principal, Space,
    SpaceId,
};
use coffer_ipc::methods as m;
use coffer_ipc::Event;
use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

use super::{item_event, open_folder, Now, Vault, VaultError};
use crate::keystore;
use crate::net::protocol::{SpaceSummary, Tip};
use crate::store::SPACE_FOLDER;

const KV_TRUSTED: &str = "trusted_devices";
const KV_NET_IDENTITY: &str = "net_identity";
const NET_IDENTITY_PURPOSE: &str = "coffer 2026 network identity at rest v1";
const NET_IDENTITY_AAD: &[u8] = b"coffer/net-identity/v1";
/// Above this many touched items in one batch, one folder event replaces
/// the per-item events.
const MAX_ITEM_EVENTS: usize = 64;
/// Batches up to this size are ingested envelope by envelope.
const SMALL_BATCH: usize = 8;
/// Prefix of a pairing key.
pub const PAIRING_PREFIX: &str = "coffer1:";

/// A locally trusted device (pre-enrolment pairing).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Trusted {
    device: DeviceId,
    exchange: [u8; 32],
    name: Option<String>,
    added_ms: i64,
}

/// Parses `coffer1:<64 hex>:<64 hex>` into the device id and its X25519 key.
pub fn parse_pairing_key(key: &str) -> Option<(DeviceId, [u8; 32])> {
    let rest = key.trim().strip_prefix(PAIRING_PREFIX)?;
    let (d, x) = rest.split_once(':')?;
    let device = DeviceId::from_hex(d)?;
    let exchange: [u8; 32] = hex::decode(x).ok()?.try_into().ok()?;
    Some((device, exchange))
}

/// What [`Vault::ingest_remote`] did with a batch from a peer.
#[derive(Debug, Default)]
pub struct RemoteIngest {
    /// Envelopes newly held (accepted, pending or quarantined).
    pub new: usize,
    pub accepted: usize,
    pub quarantined: usize,
    /// Refused outright: bad signature or wrong space. The sender is cut off.
    pub invalid: usize,
    /// The space is not shared with this device: nothing was kept.
    pub not_shared: bool,
    /// Whether membership changed (the allowed peers may differ).
    pub membership_changed: bool,
    pub events: Vec<Event>,
}

/// Whether a held membership op (accepted or still pending) grants a role
/// to `device`: a folder being shared with it, whose grant may wait for the
/// rest of its author's chain.
fn grants_device(space: &Space, device: &DeviceId) -> bool {
    space.held().any(|e| {
        e.kind() == Kind::Membership
            && matches!(
                ControlOp::decode(Kind::Membership, &e.body().payload),
                Ok(ControlOp::Membership(MembershipOp::Grant {
                    principal: Principal::Device(d),
                    ..
                })) if &d == device
            )
    })
}

fn kind_rank(k: Kind) -> u8 {
    match k {
        Kind::Roster => 0,
        Kind::Membership => 1,
        Kind::Content => 2,
        Kind::Usage => 3,
    }
}

/// Ingests `envelopes` into `space` — one by one when they are few (the
/// incremental path: no full re-evaluation of a large folder), else in one
/// evaluation — and counts the outcomes into `out`. Returns the id and
/// kind of each envelope newly held (accepted, pending or quarantined).
pub(super) fn ingest_counted(
    space: &mut Space,
    envelopes: Vec<Envelope>,
    out: &mut RemoteIngest,
) -> Vec<(EnvelopeId, Kind)> {
    let keys: Vec<(EnvelopeId, Kind)> = envelopes.iter().map(|e| (e.id(), e.kind())).collect();
    let outcomes = if envelopes.len() <= SMALL_BATCH {
        envelopes.into_iter().map(|e| space.ingest(e)).collect()
    } else {
        space.ingest_batch(envelopes).outcomes
    };
    let mut fresh = Vec::new();
    for (key, outcome) in keys.into_iter().zip(&outcomes) {
        match outcome {
            Err(_) => out.invalid += 1,
            Ok(Outcome::Duplicate) => {}
            Ok(o) => {
                match o {
                    Outcome::Accepted => out.accepted += 1,
                    Outcome::Quarantined(_) => out.quarantined += 1,
                    _ => {}
                }
                fresh.push(key);
            }
        }
    }
    fresh
}

/// A digest of items as a reader sees them: every field, URL, time, trash
/// state and conflict, in id order.
fn items_digest<'a>(items: impl Iterator<Item = &'a coffer_crdt::Item>) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"coffer/items-digest/v1\0");
    for item in items {
        let canonical = (
            item.id.to_hex(),
            item.item_type.as_str(),
            &item.name,
            item.created_ms,
            item.updated_ms,
            item.trashed_ms,
            &item.fields,
            &item.urls,
            &item.conflicts,
        );
        h.update(&serde_json::to_vec(&canonical).expect("plain data serialises"));
        h.update(b"\n");
    }
    h.finalize().to_hex().to_string()
}

impl Vault {
    /// This device's id, once initialised.
    pub fn device_id(&self) -> Option<DeviceId> {
        DeviceId::from_hex(&self.identity.as_ref()?.device_id)
    }

    /// This device's X25519 public key, read from its personal folder's
    /// founding op (so it is known while locked).
    fn exchange_public(&self) -> Option<[u8; 32]> {
        if let Some(u) = &self.unlocked {
            return Some(u.keys.exchange_public());
        }
        let me = self.device_id()?;
        let personal = SpaceId::from_hex(&self.identity.as_ref()?.personal_folder)?;
        self.spaces
            .get(&personal)?
            .state()
            .folder
            .exchange
            .get(&me)
            .copied()
    }

    /// `coffer device id`: the device id and its pairing key.
    pub fn pairing_key(&self) -> Result<(DeviceId, String), VaultError> {
        let me = self.device_id().ok_or(VaultError::NotInitialized)?;
        let x = self
            .exchange_public()
            .ok_or_else(|| VaultError::Internal("this device's exchange key is unknown".into()))?;
        Ok((
            me,
            format!("{PAIRING_PREFIX}{}:{}", me.to_hex(), hex::encode(x)),
        ))
    }

    /// The Ed25519 seed the network identity is made from. While unlocked it
    /// comes from the device keys (and a copy sealed under the pepper file is
    /// stored, so a locked daemon can join the network after a restart);
    /// while locked, from that copy. `None` before the first unlock.
    pub fn network_secret(
        &mut self,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Option<Zeroizing<[u8; 32]>>, VaultError> {
        if self.identity.is_none() {
            return Ok(None);
        }
        let wrap = keystore::pepper_subkey(&self.data_dir, NET_IDENTITY_PURPOSE)?;
        if let Some(u) = &self.unlocked {
            let all = u.keys.to_secret_bytes();
            let mut seed = Zeroizing::new([0u8; 32]);
            seed.copy_from_slice(&all[..32]);
            if self.store.get_kv(KV_NET_IDENTITY)?.is_none() {
                let sealed = keystore::seal(&wrap, seed.as_slice(), NET_IDENTITY_AAD, rng);
                self.store.put_json(KV_NET_IDENTITY, &sealed)?;
            }
            return Ok(Some(seed));
        }
        let Some(sealed) = self.store.get_json::<Vec<u8>>(KV_NET_IDENTITY)? else {
            return Ok(None);
        };
        let plain = keystore::open(&wrap, &sealed, NET_IDENTITY_AAD)
            .ok_or_else(|| VaultError::Internal("the network identity does not open".into()))?;
        let seed: [u8; 32] = plain
            .as_slice()
            .try_into()
            .map_err(|_| VaultError::Internal("the network identity is malformed".into()))?;
        Ok(Some(Zeroizing::new(seed)))
    }

    fn trusted_list(&self) -> Result<Vec<Trusted>, VaultError> {
        Ok(self
            .store
            .get_json::<Vec<Trusted>>(KV_TRUSTED)?
            .unwrap_or_default())
    }

    /// `coffer device trusted`.
    pub fn trusted_devices(&self) -> Result<Vec<m::TrustedDevice>, VaultError> {
        Ok(self
            .trusted_list()?
            .into_iter()
            .map(|t| m::TrustedDevice {
                device_id: t.device.to_hex(),
                name: t.name,
                added_ms: t.added_ms,
            })
            .collect())
    }

    /// The label given to a trusted device.
    pub fn trusted_name(&self, d: &DeviceId) -> Option<String> {
        self.trusted_list()
            .ok()?
            .into_iter()
            .find(|t| &t.device == d)?
            .name
    }

    /// Whether an accepted membership op of some held space removed `d`
    /// (as a device principal) outright.
    fn removed_somewhere(&self, d: &DeviceId) -> bool {
        self.spaces.values().any(|s| {
            s.held().any(|e| {
                e.kind() == Kind::Membership
                    && s.is_accepted(&e.id())
                    && matches!(
                        ControlOp::decode(Kind::Membership, &e.body().payload),
                        Ok(ControlOp::Membership(MembershipOp::Remove {
                            principal: Principal::Device(p),
                            to: None,
                            ..
                        })) if &p == d
                    )
            })
        })
    }

    /// Devices this one syncs with: live devices of its team, members of a
    /// folder it holds, and paired devices that no folder removed; never a
    /// device the roster revoked (or whose user it removed).
    pub fn peer_allowed(&self, d: &DeviceId) -> bool {
        if self.device_id().as_ref() == Some(d) || self.dead_team_device(d) {
            return false;
        }
        if self.live_team_device(d) {
            return true;
        }
        if self
            .spaces
            .values()
            .any(|s| s.state().member_devices().contains_key(d))
        {
            return true;
        }
        let trusted = self
            .trusted_list()
            .map(|l| l.iter().any(|t| &t.device == d))
            .unwrap_or(false);
        trusted && !self.removed_somewhere(d)
    }

    /// Every device this one would sync with (to dial and to list).
    pub fn known_peers(&self) -> BTreeSet<DeviceId> {
        let mut out: BTreeSet<DeviceId> = self
            .trusted_list()
            .unwrap_or_default()
            .into_iter()
            .map(|t| t.device)
            .collect();
        for s in self.spaces.values() {
            out.extend(s.state().member_devices().into_keys());
        }
        if let Some(t) = self.team_state() {
            out.extend(t.devices.keys().copied());
        }
        out.into_iter().filter(|d| self.peer_allowed(d)).collect()
    }

    /// Folder spaces `peer` is a member of: the only ones it is sent.
    /// The team roster goes to every live device of the team, first.
    pub fn shared_with(&self, peer: &DeviceId) -> Vec<SpaceId> {
        let roster = self
            .team_id()
            .filter(|_| self.live_team_device(peer))
            .into_iter();
        roster
            .chain(
                self.spaces
                    .iter()
                    .filter(|(_, s)| s.state().member_devices().contains_key(peer))
                    .map(|(id, _)| *id),
            )
            .collect()
    }

    /// What this device holds of each space shared with `peer`.
    pub fn summary_for(&self, peer: &DeviceId) -> Vec<SpaceSummary> {
        self.shared_with(peer)
            .into_iter()
            .filter_map(|id| {
                let s = self.space_ref(&id)?;
                Some(SpaceSummary {
                    space: id,
                    tips: s
                        .chain_tips()
                        .into_iter()
                        .map(|((space, author), (seq, id))| Tip {
                            space,
                            author,
                            seq,
                            id,
                        })
                        .collect(),
                })
            })
            .collect()
    }

    /// The wire bytes of the envelopes of `space` that a peer holding
    /// `known` lacks (everything above its tips, and a differing envelope at
    /// a tip: a fork), control ops first, each chain in seq order. Empty
    /// unless `peer` is a member of the space.
    pub fn missing_for(
        &self,
        peer: &DeviceId,
        space: &SpaceId,
        known: &BTreeMap<(SpaceId, DeviceId), (u64, EnvelopeId)>,
    ) -> Vec<(Tip, Vec<u8>)> {
        if !self.shared_with(peer).contains(space) {
            return Vec::new();
        }
        let Some(s) = self.space_ref(space) else {
            return Vec::new();
        };
        // The roster (emails, groups, devices) goes to team devices only,
        // even inside a folder shared with a device outside the team.
        let team = self.team_id();
        let roster_ok = self.live_team_device(peer);
        let mut out: Vec<&Envelope> = s
            .held()
            .filter(|e| roster_ok || Some(e.space()) != team || Some(*space) == team)
            .filter(|e| match known.get(&(e.space(), e.author())) {
                None => true,
                Some((seq, id)) => e.seq() > *seq || (e.seq() == *seq && e.id() != *id),
            })
            .collect();
        out.sort_by_key(|e| (kind_rank(e.kind()), e.space(), e.author(), e.seq(), e.id()));
        out.into_iter()
            .map(|e| {
                let tip = Tip {
                    space: e.space(),
                    author: e.author(),
                    seq: e.seq(),
                    id: e.id(),
                };
                (tip, e.bytes().to_vec())
            })
            .collect()
    }

    /// Takes in envelopes of `space` from a peer: judged by the acceptance
    /// rule (no keys needed), stored durably, and applied to the open folder
    /// when unlocked. A space this device does not hold is kept only if the
    /// envelopes make this device a member of it.
    pub fn ingest_remote(
        &mut self,
        space_id: SpaceId,
        mut envelopes: Vec<Envelope>,
    ) -> Result<RemoteIngest, VaultError> {
        let me = self.device_id().ok_or(VaultError::NotInitialized)?;
        let team = self.team_id();
        if team == Some(space_id) {
            return self.ingest_roster_remote(envelopes);
        }
        // A team folder's batch carries the roster envelopes the receiver
        // lacks: they go through the roster (and on to every team folder).
        let mut out = RemoteIngest::default();
        let mut in_team = self.spaces.get(&space_id).and_then(Space::team);
        if let Some(t) = team {
            let (roster_part, rest): (Vec<Envelope>, Vec<Envelope>) =
                envelopes.into_iter().partition(|e| e.space() == t);
            envelopes = rest;
            if !roster_part.is_empty() {
                in_team = in_team.or(Some(t));
                let r = self.ingest_roster_remote(roster_part)?;
                out.new += r.new;
                out.accepted += r.accepted;
                out.quarantined += r.quarantined;
                out.invalid += r.invalid;
                out.membership_changed |= r.membership_changed;
                out.events.extend(r.events);
            }
        }
        let is_new = !self.spaces.contains_key(&space_id);
        let mut fresh_space = None;
        let space = if is_new {
            let space = fresh_space.insert(Space::new_in_team(space_id, in_team));
            if let Some(roster) = self.roster.as_ref().filter(|_| in_team.is_some()) {
                space.ingest_batch(roster.held().cloned().collect());
            }
            space
        } else {
            self.spaces
                .get_mut(&space_id)
                .ok_or_else(|| VaultError::Internal("space vanished".into()))?
        };
        let folder_open = self
            .unlocked
            .as_ref()
            .is_some_and(|u| u.folders.contains_key(&space_id));
        let before: HashSet<EnvelopeId> = if folder_open {
            space.accepted_content().map(Envelope::id).collect()
        } else {
            HashSet::new()
        };
        let fresh = ingest_counted(space, envelopes, &mut out);
        if fresh
            .iter()
            .any(|(_, kind)| !matches!(kind, Kind::Content | Kind::Usage))
        {
            out.membership_changed = true;
        }
        let new_ids: Vec<EnvelopeId> = fresh.into_iter().map(|(id, _)| id).collect();
        out.new += new_ids.len();
        // Accepted content shrank (a late removal): rebuild, not apply.
        let shrank = before.iter().any(|id| !space.is_accepted(id));
        if shrank {
            out.membership_changed = true;
        }
        if is_new && space.role_of(&me).is_none() && !grants_device(space, &me) {
            // Not shared with us (not even by a grant still pending): keep nothing.
            out.not_shared = true;
            return Ok(out);
        }
        if new_ids.is_empty() {
            return Ok(out);
        }
        let to_store: Vec<&Envelope> = new_ids.iter().filter_map(|id| space.get(id)).collect();
        let stored = if is_new {
            self.store
                .add_space(space_id, SPACE_FOLDER, in_team, &to_store)
        } else {
            self.store.append(&to_store)
        };
        if let Err(e) = stored {
            warn!(error = %e, "storing synced envelopes failed; reloading the folder");
            if !is_new {
                self.reload_space(space_id)?;
            }
            return Err(e.into());
        }
        if let Some(space) = fresh_space {
            self.spaces.insert(space_id, space);
            out.events.push(Event::FolderChanged {
                folder_id: space_id.to_hex(),
            });
            info!(folder = %space_id.short(), "a folder was shared with this device");
        }
        // Accepted content that only grew is applied as is (Automerge does
        // not care about order); a late removal that shrank it rebuilds.
        self.apply_synced(space_id, &before, shrank, &mut out);
        if out.membership_changed && self.unlocked.is_some() {
            let (_, events) = self.upkeep_keys(false, &mut rand::rngs::OsRng)?;
            out.events.extend(events);
        }
        Ok(out)
    }

    /// Brings the open folder document up to date after an ingest: applies
    /// newly accepted content (or rebuilds when acceptance shrank), opens a
    /// folder whose key just arrived, and names the touched items.
    pub(super) fn apply_synced(
        &mut self,
        space_id: SpaceId,
        before: &HashSet<EnvelopeId>,
        rebuild: bool,
        out: &mut RemoteIngest,
    ) {
        let Some(u) = self.unlocked.as_mut() else {
            return;
        };
        let Some(space) = self.spaces.get(&space_id) else {
            return;
        };
        let mut touched: BTreeSet<coffer_crdt::ItemId> = BTreeSet::new();
        let reopen = rebuild || !u.folders.contains_key(&space_id);
        if !reopen {
            let folder = u.folders.get_mut(&space_id).expect("checked above");
            let mut changes = Vec::new();
            let mut undecryptable = false;
            for env in space
                .accepted_content()
                .filter(|e| !before.contains(&e.id()))
            {
                let opened = space.open(&u.keys, env).ok();
                match opened {
                    Some(change) => changes.push((env.author(), change)),
                    None => {
                        debug!(envelope = %env.id().short(), "synced content does not decrypt yet; rebuilding");
                        undecryptable = true;
                        break;
                    }
                }
            }
            if undecryptable {
                return self.reopen_folder(space_id, out);
            }
            for (_, c) in &changes {
                touched.extend(touched_items(c));
            }
            let applied = folder
                .doc
                .apply_changes(changes.iter().map(|(a, c)| (*a, c.as_slice())));
            if let Err(e) = applied {
                warn!(error = %e, "synced changes refused as a batch; rebuilding the folder");
                return self.reopen_folder(space_id, out);
            }
            if let Ok(key) = space.folder_key(&u.keys) {
                folder.key = key;
            }
            for id in &touched {
                match folder.doc.item(*id) {
                    Some(item) => {
                        folder.items.insert(*id, item);
                    }
                    None => {
                        folder.items.remove(id);
                    }
                }
            }
        } else {
            return self.reopen_folder(space_id, out);
        }
        if touched.len() > MAX_ITEM_EVENTS {
            out.events.push(Event::FolderChanged {
                folder_id: space_id.to_hex(),
            });
        } else {
            out.events
                .extend(touched.iter().map(|id| item_event(&space_id, id, "synced")));
        }
    }

    fn reopen_folder(&mut self, space_id: SpaceId, out: &mut RemoteIngest) {
        let (Some(u), Some(space)) = (self.unlocked.as_mut(), self.spaces.get(&space_id)) else {
            return;
        };
        match open_folder(space, &u.keys) {
            Ok(folder) => {
                u.folders.insert(space_id, folder);
            }
            Err(e) => {
                // No key (yet, or any more): show nothing of it.
                if u.folders.remove(&space_id).is_some() {
                    warn!(folder = %space_id.short(), error = %e, "folder no longer opens");
                }
            }
        }
        out.events.push(Event::FolderChanged {
            folder_id: space_id.to_hex(),
        });
    }

    /// `coffer device trust KEY [--share F]... [--role R]`.
    pub fn trust_device(
        &mut self,
        p: &m::DeviceTrustParams,
        now: Now,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(m::DeviceTrustResult, Vec<Event>), VaultError> {
        self.unlocked()?;
        if self.team_id().is_some() {
            return Err(VaultError::Invalid(
                "this device is in a team: add your devices with `coffer device link`, people with `coffer invite`".into(),
            ));
        }
        let (device, exchange) = parse_pairing_key(&p.key).ok_or_else(|| {
            VaultError::Invalid(format!(
                "not a pairing key: expected {PAIRING_PREFIX}<64 hex>:<64 hex> (run `coffer device id` on the other device)"
            ))
        })?;
        if Some(device) == self.device_id() {
            return Err(VaultError::Invalid(
                "that is this device's own pairing key".into(),
            ));
        }
        let role = super::team::parse_role(p.role.as_deref().unwrap_or("editor"))?;
        let folders = p
            .share
            .iter()
            .map(|f| self.resolve_folder(Some(f)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut list = self.trusted_list()?;
        match list.iter_mut().find(|t| t.device == device) {
            Some(t) if t.exchange != exchange => {
                return Err(VaultError::Invalid(
                    "this device is already trusted with a different exchange key".into(),
                ))
            }
            Some(t) => {
                if p.name.is_some() {
                    t.name = p.name.clone();
                }
            }
            None => list.push(Trusted {
                device,
                exchange,
                name: p.name.clone(),
                added_ms: now.unix_ms,
            }),
        }
        let mut events = Vec::new();
        let mut shared = Vec::new();
        for sid in folders {
            let u = self.unlocked.as_ref().ok_or(VaultError::Locked)?;
            let folder = u.folders.get(&sid).ok_or(VaultError::Locked)?;
            let space = self
                .spaces
                .get_mut(&sid)
                .ok_or_else(|| VaultError::Internal("folder space missing".into()))?;
            if space.role_of(&device) == Some(role) {
                shared.push(sid.to_hex());
                continue;
            }
            let env = space
                .grant(
                    &u.keys,
                    Principal::Device(device),
                    role,
                    Some(exchange),
                    Some(&folder.key),
                    rng,
                )
                .map_err(|e| VaultError::PermissionDenied(format!("cannot share: {e}")))?;
            if let Err(e) = self.store.append(&[&env]) {
                self.reload_space(sid)?;
                return Err(e.into());
            }
            shared.push(sid.to_hex());
            events.push(Event::FolderChanged {
                folder_id: sid.to_hex(),
            });
        }
        self.store.put_json(KV_TRUSTED, &list)?;
        info!(device = %device.short(), folders = shared.len(), "device trusted");
        Ok((
            m::DeviceTrustResult {
                device_id: device.to_hex(),
                shared,
            },
            events,
        ))
    }

    /// `coffer device revoke DEVICE`: no longer trusted; removed from every
    /// folder this device manages, whose keys then rotate.
    pub fn revoke_device(
        &mut self,
        device: &str,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(m::DeviceRevokeResult, Vec<Event>), VaultError> {
        self.unlocked()?;
        let device = parse_pairing_key(device)
            .map(|(d, _)| d)
            .or_else(|| DeviceId::from_hex(device.trim()))
            .ok_or_else(|| {
                VaultError::Invalid("expected a device id (64 hex) or a pairing key".into())
            })?;
        if self
            .team_state()
            .is_some_and(|t| t.devices.contains_key(&device))
        {
            let (change, events) = self.revoke_team_device(device, rng)?;
            return Ok((
                m::DeviceRevokeResult {
                    device_id: device.to_hex(),
                    folders: change.rotated,
                },
                events,
            ));
        }
        let mut list = self.trusted_list()?;
        let was_trusted = list.iter().any(|t| t.device == device);
        list.retain(|t| t.device != device);
        let principal = Principal::Device(device);
        let targets: Vec<SpaceId> = self
            .spaces
            .iter()
            .filter(|(_, s)| s.state().folder.grants.contains_key(&principal))
            .map(|(id, _)| *id)
            .collect();
        if !was_trusted && targets.is_empty() {
            return Err(VaultError::NotFound(format!(
                "device {} is neither trusted nor a member of any folder here",
                device.short()
            )));
        }
        let mut events = Vec::new();
        let mut folders = Vec::new();
        for sid in targets {
            let u = self.unlocked.as_mut().ok_or(VaultError::Locked)?;
            let space = self
                .spaces
                .get_mut(&sid)
                .ok_or_else(|| VaultError::Internal("folder space missing".into()))?;
            if !space.can_manage(&u.keys.device_id()) {
                warn!(folder = %sid.short(), "cannot remove the device: not a manager of this folder");
                continue;
            }
            let removal = space
                .remove(&u.keys, principal.clone(), None)
                .map_err(|e| VaultError::PermissionDenied(format!("cannot remove: {e}")))?;
            let rotated = space.rotate(&u.keys, rng);
            let mut envs = vec![removal];
            let key = match rotated {
                Ok((env, key)) => {
                    envs.push(env);
                    Some(key)
                }
                Err(e) => {
                    warn!(folder = %sid.short(), error = %e, "key rotation after removal failed");
                    None
                }
            };
            if let Err(e) = self.store.append(&envs.iter().collect::<Vec<_>>()) {
                self.reload_space(sid)?;
                return Err(e.into());
            }
            if let (Some(key), Some(folder)) = (key, u.folders.get_mut(&sid)) {
                folder.key = key;
            }
            folders.push(sid.to_hex());
            events.push(Event::FolderChanged {
                folder_id: sid.to_hex(),
            });
        }
        self.store.put_json(KV_TRUSTED, &list)?;
        info!(device = %device.short(), folders = folders.len(), "device revoked");
        Ok((
            m::DeviceRevokeResult {
                device_id: device.to_hex(),
                folders,
            },
            events,
        ))
    }

    /// `coffer sync status`: per folder space, what is held.
    pub fn sync_status(&self) -> m::SyncStatusResult {
        let me = self.device_id();
        let spaces = self
            .spaces
            .iter()
            .map(|(id, s)| m::SpaceSyncStatus {
                folder_id: id.to_hex(),
                name: self
                    .unlocked
                    .as_ref()
                    .and_then(|u| u.folders.get(id))
                    .and_then(|f| f.doc.name()),
                envelopes: s.held().count(),
                envelope_bytes: s.held().map(|e| e.bytes().len() as u64).sum(),
                version_vector: s
                    .version_vector()
                    .into_iter()
                    .map(|(d, seq)| (d.to_hex(), seq))
                    .collect(),
                pending: s.pending_count(),
                quarantined: s
                    .quarantined()
                    .iter()
                    .map(|(eid, reason)| {
                        let env = s.get(eid);
                        m::QuarantinedEnvelope {
                            id: eid.to_hex(),
                            author: env.map(|e| e.author().to_hex()).unwrap_or_default(),
                            seq: env.map(Envelope::seq).unwrap_or(0),
                            reason: reason.to_string(),
                        }
                    })
                    .collect(),
                endorsed: s
                    .endorsed_by()
                    .iter()
                    .map(|(eid, by)| m::EndorsedEnvelope {
                        id: eid.to_hex(),
                        author: s.get(eid).map(|e| e.author().to_hex()).unwrap_or_default(),
                        seq: s.get(eid).map(Envelope::seq).unwrap_or(0),
                        by: by.to_hex(),
                        by_author: s.get(by).map(|e| e.author().to_hex()).unwrap_or_default(),
                    })
                    .collect(),
                members: s
                    .state()
                    .member_devices()
                    .into_keys()
                    .filter(|d| Some(*d) != me)
                    .map(|d| d.to_hex())
                    .collect(),
                digest: hex::encode(s.digest()),
                items_digest: self
                    .unlocked
                    .as_ref()
                    .and_then(|u| u.folders.get(id))
                    .map(|f| items_digest(f.items.values())),
            })
            .collect();
        m::SyncStatusResult {
            device_id: me.map(|d| d.to_hex()),
            spaces,
        }
    }
}
