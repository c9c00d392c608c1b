//! One device's whole replicated state as one sans-IO state machine: the
//! team roster, every folder space, the open folder documents (rebuilt
//! epoch by epoch), who this device syncs with and what each connected
//! peer lacks. Driven like quinn-proto's `Connection`:
//!
//! ```text
//! replica.add_item(..., now, rng)?          // commands: local edits, team ops, lock, unlock(keys)
//! replica.handle_message(peer, msg, rng)?   // a peer's sync message
//! while let Some(effect) = replica.poll_effect() {
//!     Persist(..) | Event(..) | AllowedPeers(..) | Transmit(peer)
//! }
//! replica.poll_transmit(peer)               // the next message for a peer that can take one
//! ```
//!
//! The simulator drives this type; so does `cofferd`, whose vault task
//! drains the effects in order: persist (fsync) first, then events, the
//! allowed peers and transmissions. A command's result stands only once
//! its `Persist` effects are durable.
//!
//! What it is not: no IO, no clock, no randomness it does not receive, no
//! key it is not handed. Persisting, the keystore, sockets and framing are
//! the daemon's.

mod audit;
mod browser;
mod error;
mod exposure;
mod items;
mod manage;
mod open;
mod personal;
mod recover;
pub mod relay;
mod snapshot;
mod standing;
mod sync;
mod team;

use std::collections::{BTreeMap, VecDeque};

use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};

use crate::crypto::{DeviceKeys, FolderKey};
use crate::envelope::{Envelope, Kind};
use crate::folder::FolderDoc;
use crate::ids::{DeviceId, EnvelopeId, ItemId, SpaceId};
use crate::ops::{ControlOp, MembershipOp, Principal, Role};
use crate::space::{Outcome, Report, Space};
use crate::state::State;

pub use audit::{AuditRow, OpenRecord, AUDIT_SINCE_VERSION, MAX_AUDIT_BATCH, MAX_AUDIT_HEADS};
pub use browser::SavedLogin;
pub use error::{Needs, ReplicaError};
pub use exposure::{ExposedFolder, ExposedItem, Exposure};
pub use items::{sort_first, ListKey, ListRow, Listing};
pub use items::{FolderSummary, HistoryItem, ImportItem, ImportPlan, ItemQuery, NewItemSpec};
pub use manage::{FolderRemoval, TrashEmptied};
pub use open::Skip;
pub use recover::Recovery;
pub use snapshot::SNAPSHOT_AFTER_CHANGES;
pub use standing::Standing;
pub use sync::{
    PeerErrorCode, PeerSummary, ProtocolViolation, SpaceDigest, SpaceSummary, SyncMessage,
    SyncWire, Tip, MAX_BATCH_BYTES, MAX_BATCH_ENVELOPES, MAX_SPACES, MAX_TIPS, MIN_SYNC_VERSION,
    SYNC_VERSION, TIME_SINCE_VERSION,
};
pub use team::{
    principal_name, FolderMembers, GroupChange, Joiner, MemberDevice, MemberEntry, ShareChange,
    TeamChange, TeamSummary, UserSummary,
};

use open::OpenFolder;

/// Who this device is: public facts, known while locked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub device: DeviceId,
    /// Its X25519 key (folder keys are sealed to it).
    pub exchange: [u8; 32],
    /// Its Ed25519 transport key (its libp2p identity).
    pub transport: [u8; 32],
    pub name: String,
    pub email: String,
    /// Its Personal folder.
    pub personal: SpaceId,
}

/// A device paired outside any team (`coffer device trust`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trusted {
    pub device: DeviceId,
    pub exchange: [u8; 32],
    pub transport: [u8; 32],
    pub name: Option<String>,
    pub added_ms: i64,
}

/// What a stored space is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpaceKind {
    /// The team roster (at most one).
    Roster,
    Folder,
}

/// A space as the store hands it back.
#[derive(Clone, Debug)]
pub struct StoredSpace {
    pub id: SpaceId,
    pub kind: SpaceKind,
    /// The team whose roster a folder is judged against.
    pub team: Option<SpaceId>,
    pub envelopes: Vec<Envelope>,
    /// The folder's last [`Persist::Snapshot`], if one was stored.
    pub snapshot: Option<Vec<u8>>,
}

/// Something to write durably before anything else of the same command
/// goes out.
#[derive(Clone, Debug)]
pub enum Persist {
    /// Append these envelopes to `space` (creating it, binding its team).
    Envelopes {
        space: SpaceId,
        kind: SpaceKind,
        team: Option<SpaceId>,
        envelopes: Vec<Envelope>,
    },
    /// The paired devices, as they are now.
    Trusted(Vec<Trusted>),
    /// Replace the folder's snapshot (sealed; hand it back in
    /// [`StoredSpace::snapshot`]). Losing one costs only time.
    Snapshot { space: SpaceId, sealed: Vec<u8> },
    /// Delete the folder's snapshot: it no longer matches the folder.
    DropSnapshot { space: SpaceId },
    /// Audit records to keep (this device's own, or a peer's).
    Audit(Vec<AuditRow>),
    /// Forget a space and every envelope of it (a relay's team that removed
    /// it, or a folder the team deleted).
    DropSpace { space: SpaceId },
}

/// What changed on an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemChange {
    Added,
    Edited,
    Trashed,
    Restored,
    /// Deleted for good (the trash emptied, or moved to another folder).
    Deleted,
    /// Arrived from a peer.
    Synced,
}

/// Why the vault locked or unlocked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockReason {
    /// Created with a PIN just now.
    Created,
    Pin,
    Request,
    Idle,
}

/// What a subscriber may want to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    ItemChanged {
        folder: SpaceId,
        item: ItemId,
        change: ItemChange,
    },
    /// A folder appeared, changed name, members or keys, or a batch touched
    /// too many of its items to name them.
    FolderChanged {
        folder: SpaceId,
    },
    LockChanged {
        locked: bool,
        reason: LockReason,
    },
    /// The roster changed (users, groups, devices, admins).
    TeamChanged,
    /// New envelopes of `space` arrived from `peer`.
    Received {
        peer: DeviceId,
        space: SpaceId,
        new: usize,
    },
    /// `peer` sent everything this device lacked of `space`.
    CaughtUp {
        peer: DeviceId,
        space: SpaceId,
    },
}

/// Output of the replica, drained with [`Replica::poll_effect`].
#[derive(Clone, Debug)]
pub enum Effect {
    Persist(Persist),
    Event(Event),
    /// The devices this one syncs with now, and the transport key each
    /// connects with; close any other connection.
    AllowedPeers(BTreeMap<DeviceId, [u8; 32]>),
    /// [`Replica::poll_transmit`] has something for this peer.
    Transmit(DeviceId),
    /// The team's relays now (`RosterOp::AddRelay`), each by its device id
    /// (its transport key), with the addresses to dial it at.
    Relays(BTreeMap<DeviceId, Vec<String>>),
}

/// Above this many touched items in one batch, one folder event replaces
/// the per-item events.
const MAX_ITEM_EVENTS: usize = 64;

struct Unlocked {
    keys: DeviceKeys,
    open: BTreeMap<SpaceId, OpenFolder>,
    audit: audit::AuditKeys,
}

/// One device's replicated state. See the module documentation.
pub struct Replica {
    identity: Identity,
    roster: Option<Space>,
    folders: BTreeMap<SpaceId, Space>,
    trusted: Vec<Trusted>,
    unlocked: Option<Unlocked>,
    peers: BTreeMap<DeviceId, sync::PeerState>,
    /// Connected peers this device stopped allowing, with their sessions:
    /// the transport is told (`AllowedPeers`) and closes them, but one
    /// allowed again before it does picks its session up where it was.
    suspended: BTreeMap<DeviceId, sync::PeerState>,
    allowed: BTreeMap<DeviceId, [u8; 32]>,
    effects: VecDeque<Effect>,
    audit: audit::AuditState,
    /// Sealed folder snapshots not restored yet, tried first when the next
    /// unlock opens a folder and dropped by it: an unlocked replica holds
    /// none (10.6 MB at 100,000 items). The host hands them in from its
    /// store ([`StoredSpace::snapshot`], [`Replica::supply_snapshot`]).
    snapshots: BTreeMap<SpaceId, Vec<u8>>,
    last_unlock: UnlockReport,
    /// A keyless relay's replica of one team (`relay.rs`): never unlocked,
    /// holds every folder of the team, and is no member of any.
    keyless: bool,
    /// The team's relays as last told ([`Effect::Relays`]).
    relays: BTreeMap<DeviceId, Vec<String>>,
}

/// How the last unlock opened the folders.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnlockReport {
    /// Loaded from a snapshot, then brought up to date.
    pub from_snapshot: usize,
    /// Rebuilt from every accepted change.
    pub rebuilt: usize,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("device", &self.identity.device)
            .field("folders", &self.folders.len())
            .field("team", &self.roster.as_ref().map(Space::id))
            .field("locked", &self.unlocked.is_none())
            .finish_non_exhaustive()
    }
}

fn check_name(name: &str, max: usize) -> Result<String, ReplicaError> {
    let trimmed = name.trim();
    let why = if trimmed.is_empty() {
        Some("it is empty")
    } else if trimmed.len() > max {
        Some("it is too long")
    } else if trimmed.chars().any(char::is_control) {
        Some("it holds a control character (a newline or tab)")
    } else {
        None
    };
    match why {
        Some(why) => Err(ReplicaError::BadName {
            name: name.to_string(),
            why,
        }),
        None => Ok(trimmed.to_string()),
    }
}

impl Replica {
    /// A new device: its keys, who it belongs to, and its Personal folder
    /// (named "Personal"), unlocked. The folder's envelopes are queued as a
    /// `Persist` effect.
    pub fn create(
        keys: DeviceKeys,
        name: &str,
        email: &str,
        transport: [u8; 32],
        now_ms: i64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Replica, ReplicaError> {
        let name = check_name(name, 256)?;
        let email = email.trim().to_string();
        if crate::ops::UserId::new(&email).is_none() {
            return Err(ReplicaError::BadName {
                name: email,
                why: "it is not an email address",
            });
        }
        let folder_key = FolderKey::generate(rng);
        let (mut space, genesis) = Space::create(&keys, &folder_key, rng)?;
        let mut doc = FolderDoc::new(keys.device_id());
        let change = doc.set_name("Personal", now_ms)?;
        let named = space.seal_content(&keys, &folder_key, &change, rng)?;
        let identity = Identity {
            device: keys.device_id(),
            exchange: keys.exchange_public(),
            transport,
            name,
            email,
            personal: space.id(),
        };
        let mut replica = Replica::load(identity, Vec::new(), Vec::new());
        let id = space.id();
        replica.folders.insert(id, space);
        replica.persist(id, vec![genesis, named]);
        replica.unlock_with(keys, LockReason::Created, rng)?;
        Ok(replica)
    }

    /// A device's replica from what it stored; locked.
    pub fn load(identity: Identity, stored: Vec<StoredSpace>, trusted: Vec<Trusted>) -> Replica {
        Replica::load_with(identity, stored, trusted, false)
    }

    fn load_with(
        identity: Identity,
        stored: Vec<StoredSpace>,
        trusted: Vec<Trusted>,
        keyless: bool,
    ) -> Replica {
        let mut roster_envs = Vec::new();
        let mut team = None;
        for s in &stored {
            if s.kind == SpaceKind::Roster && team.is_none() {
                team = Some(s.id);
                roster_envs = s.envelopes.clone();
            }
        }
        let roster = team.map(|t| {
            let mut r = Space::new_roster(t);
            r.ingest_batch(roster_envs.clone());
            r
        });
        // The roster's verdicts on its own ops, so no folder judges them again.
        let judgements = roster.as_ref().and_then(Space::roster_judgements);
        let mut folders = BTreeMap::new();
        let mut snapshots = BTreeMap::new();
        for s in stored {
            if s.kind != SpaceKind::Folder {
                continue;
            }
            if let Some(sealed) = s.snapshot {
                snapshots.insert(s.id, sealed);
            }
            // Only this device's team roster judges its folders.
            let team = s.team.filter(|t| Some(*t) == team);
            let mut space = Space::new_in_team(s.id, team);
            let mut envs = s.envelopes;
            if team.is_some() {
                envs.extend(roster_envs.iter().cloned());
                if let Some(j) = &judgements {
                    space.share_roster_judgements(j);
                }
            }
            space.ingest_batch(envs);
            folders.insert(s.id, space);
        }
        let mut replica = Replica {
            identity,
            roster,
            folders,
            trusted,
            unlocked: None,
            peers: BTreeMap::new(),
            suspended: BTreeMap::new(),
            allowed: BTreeMap::new(),
            effects: VecDeque::new(),
            snapshots,
            last_unlock: UnlockReport::default(),
            audit: audit::AuditState::default(),
            keyless,
            relays: BTreeMap::new(),
        };
        replica.update_allowed();
        replica
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn device(&self) -> DeviceId {
        self.identity.device
    }

    pub fn is_locked(&self) -> bool {
        self.unlocked.is_none()
    }

    /// The device's keys while unlocked: what the host keeps to reopen a
    /// replica it had to reload from its store.
    pub fn keys_for_reload(&self) -> Option<&DeviceKeys> {
        self.unlocked.as_ref().map(|u| &u.keys)
    }

    /// The next effect, in the order they happened.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// Opens every folder with the device's keys (each envelope with its own
    /// epoch's key) and does the key upkeep that waited for them.
    pub fn unlock(
        &mut self,
        keys: DeviceKeys,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(), ReplicaError> {
        self.unlock_with(keys, LockReason::Pin, rng)
    }

    fn unlock_with(
        &mut self,
        keys: DeviceKeys,
        reason: LockReason,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(), ReplicaError> {
        if keys.device_id() != self.identity.device {
            return Err(ReplicaError::WrongKeys {
                want: self.identity.device,
                got: keys.device_id(),
            });
        }
        if self.unlocked.is_some() {
            return Ok(());
        }
        let mut open = BTreeMap::new();
        let mut report = UnlockReport::default();
        let mut snapshots = std::mem::take(&mut self.snapshots);
        for (id, space) in &self.folders {
            let sealed = snapshots.remove(id);
            let restored = sealed
                .as_ref()
                .and_then(|sealed| snapshot::restore(space, &keys, sealed));
            let folder = match restored {
                Some(folder) => {
                    report.from_snapshot += 1;
                    Some(folder)
                }
                None => {
                    // Stale or unreadable: rebuilt, and snapshotted anew.
                    if sealed.is_some() {
                        self.effects
                            .push_back(Effect::Persist(Persist::DropSnapshot { space: *id }));
                    }
                    let folder = OpenFolder::open(space, &keys);
                    report.rebuilt += usize::from(folder.is_some());
                    folder
                }
            };
            if let Some(folder) = folder {
                open.insert(*id, folder);
            }
        }
        self.last_unlock = report;
        self.unlocked = Some(Unlocked {
            keys,
            open,
            audit: audit::AuditKeys::default(),
        });
        self.emit(Event::LockChanged {
            locked: false,
            reason,
        });
        self.upkeep_keys(false, rng);
        self.snapshot_folders(SNAPSHOT_AFTER_CHANGES, rng);
        Ok(())
    }

    /// Folders whose sealed snapshot the next unlock would try, if the host
    /// hands it in ([`Replica::supply_snapshot`]): none while unlocked.
    pub fn snapshots_wanted(&self) -> Vec<SpaceId> {
        if self.unlocked.is_some() {
            return Vec::new();
        }
        self.folders
            .keys()
            .filter(|id| !self.snapshots.contains_key(id))
            .copied()
            .collect()
    }

    /// Hands in a folder's sealed snapshot (as stored from
    /// [`Persist::Snapshot`]) for the next unlock to try; ignored while
    /// unlocked or for a folder this replica does not hold. A stale or
    /// damaged one only costs a rebuild.
    pub fn supply_snapshot(&mut self, space: SpaceId, sealed: Vec<u8>) {
        if self.unlocked.is_none() && self.folders.contains_key(&space) {
            self.snapshots.insert(space, sealed);
        }
    }

    /// How the last unlock opened the folders.
    pub fn last_unlock(&self) -> UnlockReport {
        self.last_unlock
    }

    /// Seals a snapshot of every open folder that applied `min_changes`
    /// changes or more since its last one (`Persist::Snapshot`), so that
    /// the next unlock or restart loads it instead of replaying them. The
    /// host calls it before locking, with [`SNAPSHOT_AFTER_CHANGES`];
    /// unlocking does too.
    pub fn snapshot_folders(&mut self, min_changes: usize, rng: &mut impl CryptoRngCore) {
        let Some(unlocked) = self.unlocked.as_mut() else {
            return;
        };
        for (id, folder) in unlocked.open.iter_mut() {
            if !folder.snapshot_due(min_changes) {
                continue;
            }
            let Some(space) = self.folders.get_mut(id) else {
                continue;
            };
            if let Some(sealed) = snapshot::seal(space, &unlocked.keys, folder, rng) {
                // To the store only: the next unlock is handed it again.
                self.effects
                    .push_back(Effect::Persist(Persist::Snapshot { space: *id, sealed }));
            }
        }
    }

    /// Forgets the keys and every decrypted document.
    pub fn lock(&mut self, reason: LockReason) {
        if self.unlocked.take().is_some() {
            self.emit(Event::LockChanged {
                locked: true,
                reason,
            });
        }
    }

    fn emit(&mut self, event: Event) {
        self.effects.push_back(Effect::Event(event));
    }

    fn unlocked(&self) -> Result<&Unlocked, ReplicaError> {
        self.unlocked.as_ref().ok_or(ReplicaError::Locked)
    }

    fn keys(&self) -> Result<&DeviceKeys, ReplicaError> {
        Ok(&self.unlocked()?.keys)
    }

    /// The key of a folder's current epoch, while it is open here.
    fn current_key(&self, folder: &SpaceId) -> Option<FolderKey> {
        let open = self.unlocked.as_ref()?.open.get(folder)?;
        let epoch = self.folders.get(folder)?.current_epoch()?;
        open.keys.get(&epoch).cloned()
    }

    /// The team this device belongs to.
    pub fn team_id(&self) -> Option<SpaceId> {
        self.roster.as_ref().map(Space::id)
    }

    /// The roster as accepted so far.
    pub fn team_state(&self) -> Option<&State> {
        self.roster.as_ref().map(Space::state)
    }

    /// A space by id: the roster or a folder.
    pub fn space(&self, id: &SpaceId) -> Option<&Space> {
        match &self.roster {
            Some(r) if r.id() == *id => Some(r),
            _ => self.folders.get(id),
        }
    }

    /// Every folder space held.
    pub fn folder_spaces(&self) -> impl Iterator<Item = &Space> {
        self.folders.values()
    }

    fn kind_of(&self, id: &SpaceId) -> SpaceKind {
        if self.team_id() == Some(*id) {
            SpaceKind::Roster
        } else {
            SpaceKind::Folder
        }
    }

    /// Queues new envelopes of `space` written by this device for the store
    /// and tells the peers that share it. A membership op of its own can
    /// change what the folder accepts (a removal's cutoff quarantines a
    /// forked writer's later change the document already shows): the open
    /// document follows.
    fn persist(&mut self, space: SpaceId, envelopes: Vec<Envelope>) {
        let control = envelopes.iter().any(|e| e.kind() == Kind::Membership)
            && self.kind_of(&space) == SpaceKind::Folder;
        self.persist_received(space, envelopes);
        if control {
            self.refresh_folder(space, false);
        }
    }

    /// [`Replica::persist`] of envelopes taken in from a peer (the caller
    /// brings the open document up to date once, after judging them).
    fn persist_received(&mut self, space: SpaceId, envelopes: Vec<Envelope>) {
        if envelopes.is_empty() {
            return;
        }
        let kind = self.kind_of(&space);
        let team = match kind {
            SpaceKind::Roster => None,
            SpaceKind::Folder => self.folders.get(&space).and_then(Space::team),
        };
        self.effects.push_back(Effect::Persist(Persist::Envelopes {
            space,
            kind,
            team,
            envelopes,
        }));
        self.wake_peers(space);
    }

    /// Recomputes the devices this one syncs with (an effect if they
    /// changed) and what it shares with each connected one.
    fn update_allowed(&mut self) {
        self.update_allowed_set();
        self.refresh_shares();
    }

    fn update_allowed_set(&mut self) {
        let me = self.identity.device;
        let mut allowed: BTreeMap<DeviceId, [u8; 32]> = BTreeMap::new();
        let roster = self.roster.as_ref().map(Space::state);
        if let Some(t) = roster {
            // A revoked or removed device too: its sessions carry only the
            // notice that it is out (`Replica::notice_for`).
            for (d, rec) in t.team.devices.iter() {
                allowed.insert(*d, rec.transport);
            }
            if !self.keyless {
                // A relay's device id is its transport key.
                // A removed one only to be told so (`notice_for`).
                for d in t.team.relays.keys().chain(t.team.removed_relays.iter()) {
                    allowed.entry(*d).or_insert(d.0);
                }
            }
        }
        let relays: BTreeMap<DeviceId, Vec<String>> = match roster {
            Some(t) if !self.keyless => {
                t.team.relays.iter().map(|(d, a)| (*d, a.clone())).collect()
            }
            _ => BTreeMap::new(),
        };
        if relays != self.relays {
            self.relays = relays.clone();
            self.effects.push_back(Effect::Relays(relays));
        }
        for space in self.folders.values() {
            let state = space.state();
            for d in state.member_devices().keys() {
                if allowed.contains_key(d) || roster.is_some_and(|t| t.is_dead(d)) {
                    continue;
                }
                if let Some(t) = self.trusted.iter().find(|t| &t.device == d) {
                    allowed.insert(*d, t.transport);
                }
            }
        }
        for t in &self.trusted {
            if allowed.contains_key(&t.device)
                || roster.is_some_and(|r| r.team.devices.contains_key(&t.device))
            {
                continue;
            }
            if !self.removed_somewhere(&t.device) {
                allowed.insert(t.device, t.transport);
            }
        }
        allowed.remove(&me);
        if allowed != self.allowed {
            let gone: Vec<DeviceId> = self
                .allowed
                .keys()
                .filter(|d| !allowed.contains_key(d))
                .copied()
                .collect();
            for d in gone {
                if let Some(session) = self.peers.remove(&d) {
                    self.suspended.insert(d, session);
                }
            }
            let back: Vec<DeviceId> = self
                .suspended
                .keys()
                .filter(|d| allowed.contains_key(d))
                .copied()
                .collect();
            for d in back {
                if let Some(session) = self.suspended.remove(&d) {
                    // `refresh_shares` (next) sends it everything shared
                    // again: nothing went out while it was suspended.
                    self.peers.insert(d, session.resumed());
                    self.wake(d);
                }
            }
            self.allowed = allowed.clone();
            self.effects.push_back(Effect::AllowedPeers(allowed));
        }
    }

    /// The devices this one syncs with, and their transport keys.
    pub fn allowed_peers(&self) -> &BTreeMap<DeviceId, [u8; 32]> {
        &self.allowed
    }

    /// Whether an accepted op of some folder removed `d` (as a device) outright.
    fn removed_somewhere(&self, d: &DeviceId) -> bool {
        self.folders.values().any(|s| {
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

    /// This device's role in a folder.
    pub fn role_in(&self, folder: &SpaceId) -> Option<Role> {
        self.folders.get(folder)?.role_of(&self.identity.device)
    }

    /// Brings an open folder up to date after its space took in envelopes:
    /// applies what was newly accepted (in order), or rebuilds when the
    /// accepted content shrank or was reordered, opens a folder whose key
    /// just arrived; events name the touched items.
    fn refresh_folder(&mut self, id: SpaceId, rebuild: bool) {
        let Some(unlocked) = self.unlocked.as_mut() else {
            return;
        };
        let Some(space) = self.folders.get(&id) else {
            return;
        };
        if OpenFolder::hidden(space, &unlocked.keys.device_id()) {
            // Deleted, or left: no longer shown (its envelopes stay and sync).
            if unlocked.open.remove(&id).is_some() {
                self.emit(Event::FolderChanged { folder: id });
            }
            return;
        }
        let order: Vec<EnvelopeId> = space.accepted_content().map(Envelope::id).collect();
        let epoch_keys = space.epoch_keys(&unlocked.keys);
        let reusable = match unlocked.open.get_mut(&id) {
            Some(f) if !rebuild && f.extends(&order) => f.add_keys(epoch_keys),
            _ => false,
        };
        let mut events = Vec::new();
        if reusable {
            let folder = unlocked.open.get_mut(&id).expect("checked above");
            let fresh: Vec<&Envelope> = space
                .accepted_content()
                .filter(|e| !folder.is_applied(&e.id()) && !folder.skipped.contains_key(&e.id()))
                .collect();
            let me = unlocked.keys.device_id();
            if fresh.is_empty() {
                // Control ops only: a removal and re-add, say.
                folder.keep_writer_current(space, &me);
                return;
            }
            let touched = folder.apply(&fresh);
            folder.keep_writer_current(space, &me);
            folder.refresh(&touched);
            if touched.len() > MAX_ITEM_EVENTS {
                events.push(Event::FolderChanged { folder: id });
            } else {
                // In item order: effects must not depend on a HashSet's.
                let mut touched: Vec<ItemId> = touched.into_iter().collect();
                touched.sort();
                events.extend(touched.into_iter().map(|item| Event::ItemChanged {
                    folder: id,
                    item,
                    change: ItemChange::Synced,
                }));
            }
        } else {
            match OpenFolder::open(space, &unlocked.keys) {
                Some(folder) => {
                    unlocked.open.insert(id, folder);
                }
                None => {
                    unlocked.open.remove(&id);
                }
            }
            events.push(Event::FolderChanged { folder: id });
        }
        for e in events {
            self.emit(e);
        }
    }

    /// Takes envelopes into a space held here (the roster or a folder):
    /// judged, queued for the store, open documents brought up to date,
    /// the roster spread to the team's folders, peers told.
    fn take_in(&mut self, space: SpaceId, envelopes: Vec<Envelope>) -> Report {
        let is_roster = self.team_id() == Some(space);
        let target = if is_roster {
            self.roster.as_mut()
        } else {
            self.folders.get_mut(&space)
        };
        let Some(target) = target else {
            return Report::default();
        };
        let ids: Vec<EnvelopeId> = envelopes.iter().map(Envelope::id).collect();
        let report = if envelopes.len() <= 8 {
            let mut r = Report::default();
            for env in envelopes {
                r.outcomes.push(target.ingest(env));
            }
            r
        } else {
            target.ingest_batch(envelopes)
        };
        let fresh: Vec<Envelope> = ids
            .iter()
            .zip(&report.outcomes)
            .filter(|(_, o)| matches!(o, Ok(o) if *o != Outcome::Duplicate))
            .filter_map(|(id, _)| target.get(id).cloned())
            .collect();
        if fresh.is_empty() {
            return report;
        }
        let control = fresh
            .iter()
            .any(|e| matches!(e.kind(), Kind::Membership | Kind::Roster));
        self.persist_received(space, fresh.clone());
        if is_roster {
            self.spread_roster(&fresh);
            self.emit(Event::TeamChanged);
            // A folder a peer sent before this device's roster showed it a
            // member was not kept: ask peers again for what this device lacks.
            self.ask_again();
        } else {
            self.refresh_folder(space, report.rebuild);
        }
        if control {
            self.update_allowed();
        }
        report
    }

    /// Feeds roster envelopes to every folder of the team.
    fn spread_roster(&mut self, envs: &[Envelope]) {
        let Some(team) = self.team_id() else {
            return;
        };
        let targets: Vec<SpaceId> = self
            .folders
            .iter()
            .filter(|(_, s)| s.team() == Some(team))
            .map(|(id, _)| *id)
            .collect();
        for id in targets {
            let Some(space) = self.folders.get_mut(&id) else {
                continue;
            };
            let before: Vec<EnvelopeId> = space.content_order().to_vec();
            // A few at a time take the fast paths (a roster op that gives
            // no right in this folder is not a whole evaluation).
            let revoked = if envs.len() <= 8 {
                // One whose author a later one names waits for the batch.
                let refused: Vec<Envelope> = envs
                    .iter()
                    .filter(|env| space.ingest((*env).clone()).is_err())
                    .cloned()
                    .collect();
                !refused.is_empty() && !space.ingest_batch(refused).revoked.is_empty()
            } else {
                !space.ingest_batch(envs.to_vec()).revoked.is_empty()
            };
            let shrank = revoked || !space.content_order().starts_with(&before);
            self.refresh_folder(id, shrank);
            self.emit(Event::FolderChanged { folder: id });
        }
    }

    /// Rotates the key of folders where a member with the key lost access
    /// (`rotate`: only when this device made the change, or manages the
    /// folder) and hands the current key to member devices that lack it
    /// (writers only: Folder Members use items, they do not hand out keys).
    fn upkeep_keys(&mut self, rotate: bool, rng: &mut impl CryptoRngCore) -> Vec<SpaceId> {
        let mut rotated = Vec::new();
        let Some(unlocked) = self.unlocked.as_mut() else {
            return rotated;
        };
        let me = unlocked.keys.device_id();
        let mut written: Vec<(SpaceId, Vec<Envelope>)> = Vec::new();
        for (id, space) in self.folders.iter_mut() {
            let Some(folder) = unlocked.open.get_mut(id) else {
                continue;
            };
            let rights = space.state().rights(&me);
            if !rights.writer {
                continue;
            }
            let mut envs = Vec::new();
            if space.rotation_due() {
                // The device that made the change, or a manager; other
                // writers rotate before their next write.
                if rotate || rights.manager {
                    if let Ok((env, key)) = space.rotate(&unlocked.keys, rng) {
                        folder.keys.insert(env.id(), key);
                        envs.push(env);
                        rotated.push(*id);
                    }
                }
            } else {
                if let Ok(Some(env)) = space.rewrap(&unlocked.keys, rng) {
                    envs.push(env);
                }
                if let Ok(history) = space.rewrap_history(&unlocked.keys, rng) {
                    envs.extend(history);
                }
            }
            if !envs.is_empty() {
                written.push((*id, envs));
            }
        }
        for (id, envs) in written {
            self.persist(id, envs);
            self.emit(Event::FolderChanged { folder: id });
        }
        rotated
    }

    /// Runs the key upkeep now (after a roster or membership change this
    /// device learnt while it could not act, e.g. locked).
    pub fn key_upkeep(&mut self, rng: &mut impl CryptoRngCore) -> Vec<SpaceId> {
        self.upkeep_keys(false, rng)
    }

    /// A canonical digest per held space: the accepted state, and (when
    /// open) the items as this device reads them.
    pub fn digests(&self) -> Vec<SpaceDigest> {
        let mut out = Vec::new();
        if let Some(r) = &self.roster {
            out.push(SpaceDigest {
                space: r.id(),
                accepted: r.digest(),
                items: None,
            });
        }
        for (id, s) in &self.folders {
            let items = self
                .unlocked
                .as_ref()
                .and_then(|u| u.open.get(id))
                .map(|f| items_digest(&f.doc.map_items(|i| item_digest(&i)), f.items().values()));
            out.push(SpaceDigest {
                space: *id,
                accepted: s.digest(),
                items,
            });
        }
        out
    }
}

/// A digest of items as a reader sees them: each item's
/// [`item_digest`], in id order; then the heads kept for listing, so a
/// head left stale by a sync or a restore shows as a difference.
fn items_digest<'a>(
    items: &[[u8; 32]],
    heads: impl Iterator<Item = &'a crate::folder::ItemHead>,
) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"coffer/items-digest/v3\0");
    for item in items {
        h.update(item);
    }
    for head in heads {
        let shown = format!("{head:?}");
        h.update(&(shown.len() as u64).to_le_bytes());
        h.update(shown.as_bytes());
    }
    *h.finalize().as_bytes()
}

/// One item as a reader sees it: every field, URL, time, trash state and
/// conflict.
fn item_digest(item: &crate::folder::Item) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    let mut part = |b: &[u8]| {
        h.update(&(b.len() as u64).to_le_bytes());
        h.update(b);
    };
    part(&item.id.0);
    part(item.item_type.as_str().as_bytes());
    part(item.name.as_bytes());
    part(&item.created_ms.to_le_bytes());
    part(&item.updated_ms.to_le_bytes());
    part(&item.trashed_ms.unwrap_or(-1).to_le_bytes());
    for (k, v) in &item.fields {
        part(k.as_bytes());
        part(v.as_bytes());
    }
    for u in &item.urls {
        part(u.as_bytes());
    }
    for (k, vs) in &item.conflicts {
        part(k.as_bytes());
        for v in vs {
            part(v.as_bytes());
        }
    }
    *h.finalize().as_bytes()
}

#[cfg(test)]
mod tests;
