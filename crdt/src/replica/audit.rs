//! The replica's side of the audit trail ([`crate::audit`]): who reads a
//! device's records (the team's admin devices and the writer's own user's
//! devices), appending this device's records, taking in a peer's, and what
//! each connected peer lacks. The records themselves live in the daemon's
//! store: the replica keeps only each chain's newest seq held, and is
//! handed the rows it needs (`audit_wants` says which, `audit_sent` notes
//! them gone).

use std::collections::BTreeMap;

use rand_core::CryptoRngCore;

use super::sync::ProtocolViolation;
use super::{Persist, Replica, ReplicaError};
use crate::audit::{AuditEvent, ChainWriter, Reader, Record};
use crate::crypto::FolderKey;
use crate::ids::{DeviceId, SpaceId};
use crate::ops::Role;

pub use crate::sync_wire::{AUDIT_SINCE_VERSION, MAX_AUDIT_BATCH, MAX_AUDIT_HEADS};
/// Chain keys kept open in memory while unlocked.
const MAX_OPEN_KEYS: usize = 4096;

/// A record to store, with the user its device belongs to (for queries by
/// user), empty if the roster names none.
#[derive(Clone, Debug)]
pub struct AuditRow {
    pub record: Record,
    pub user: String,
}

/// A record as a query shows it: its event if this device may read it.
#[derive(Clone, Debug)]
pub struct OpenRecord {
    pub record: Record,
    pub event: Option<AuditEvent>,
}

/// The replica's audit state.
#[derive(Default)]
pub(crate) struct AuditState {
    /// Per device: the highest seq held here.
    heads: BTreeMap<DeviceId, u64>,
}

/// The audit part of [`super::Unlocked`]: this device's writer and the
/// chain keys opened so far.
#[derive(Default)]
pub(crate) struct AuditKeys {
    writer: Option<ChainWriter>,
    open: BTreeMap<(DeviceId, u64), FolderKey>,
}

impl Replica {
    /// The stored chains' newest seqs (at start, from the store).
    pub fn audit_load(&mut self, heads: BTreeMap<DeviceId, u64>) {
        self.audit.heads = heads;
    }

    /// The newest seq held per chain.
    pub fn audit_heads(&self) -> &BTreeMap<DeviceId, u64> {
        &self.audit.heads
    }

    /// Whether `reader`'s device may hold and read `author`'s records: the
    /// same device, a live device of the same user, or a live device of a
    /// team admin. Besides, a Folder Manager's device holds the chain of a
    /// member of a folder it manages, and reads its records about that
    /// folder alone ([`Self::audit_holds`]).
    pub fn audit_may_read(&self, reader: &DeviceId, author: &DeviceId) -> bool {
        if reader == author {
            return true;
        }
        let Some(t) = self.team_state() else {
            return false;
        };
        if !t.is_live_team_device(reader) {
            return false;
        }
        let Some(user) = t.user_of(reader) else {
            return false;
        };
        t.team.admins.contains_key(user) || t.user_of(author) == Some(user)
    }

    /// The team folders `reader`'s device manages (Folder Manager role).
    pub(super) fn audit_managed(&self, reader: &DeviceId) -> Vec<SpaceId> {
        if !self
            .team_state()
            .is_some_and(|t| t.is_live_team_device(reader))
        {
            return Vec::new();
        }
        self.folders
            .iter()
            .filter(|(_, s)| s.team().is_some() && !s.is_deleted())
            .filter(|(_, s)| s.role_of(reader) == Some(Role::Manager))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Whether `reader`'s device holds (syncs) `author`'s chain: it reads
    /// it ([`Self::audit_may_read`]), or `author` is a member of a folder
    /// `reader` manages, whose records about that folder are sealed to it
    /// too. `managed` caches those folders ([`Self::audit_managed`]) for a
    /// scan over many chains: computed on the first chain `reader` does
    /// not read anyway (never for an admin's or the user's own devices).
    pub(super) fn audit_holds(
        &self,
        reader: &DeviceId,
        author: &DeviceId,
        managed: &mut Option<Vec<SpaceId>>,
    ) -> bool {
        if self.audit_may_read(reader, author) {
            return true;
        }
        managed
            .get_or_insert_with(|| self.audit_managed(reader))
            .iter()
            .any(|f| {
                self.folders
                    .get(f)
                    .is_some_and(|s| s.role_of(author).is_some())
            })
    }

    /// The devices outside the chain's readers that may read an event
    /// about `folder`: its Folder Managers' live devices.
    fn audit_extra_readers(&self, folder: Option<&SpaceId>) -> Vec<Reader> {
        let me = self.identity.device;
        let (Some(t), Some(space)) = (self.team_state(), folder.and_then(|f| self.folders.get(f)))
        else {
            return Vec::new();
        };
        if space.team().is_none() {
            return Vec::new();
        }
        space
            .members()
            .into_iter()
            .filter(|(d, role)| *role == Role::Manager && *d != me && t.is_live_team_device(d))
            .filter_map(|(d, _)| {
                let r = t.team.devices.get(&d).filter(|r| !r.revoked)?;
                Some((d, r.exchange))
            })
            .collect()
    }

    /// Whether this device's user is a team admin.
    pub fn audit_is_admin(&self) -> bool {
        let me = self.identity.device;
        self.team_state()
            .and_then(|t| t.user_of(&me).map(|u| t.team.admins.contains_key(u)))
            .unwrap_or(false)
    }

    /// Who this device's new records are sealed to (itself aside).
    pub fn audit_readers(&self) -> Vec<Reader> {
        let me = self.identity.device;
        let Some(t) = self.team_state() else {
            return Vec::new();
        };
        t.team
            .devices
            .iter()
            .filter(|(d, r)| **d != me && !r.revoked && t.is_live_team_device(d))
            .filter(|(d, _)| self.audit_may_read(d, &me))
            .map(|(d, r)| (*d, r.exchange))
            .collect()
    }

    /// The user a device's records are filed under.
    fn audit_user(&self, device: &DeviceId) -> String {
        if *device == self.identity.device {
            return self.identity.email.clone();
        }
        self.team_state()
            .and_then(|t| t.user_of(device))
            .map(|u| u.0.clone())
            .unwrap_or_default()
    }

    /// Appends an event to this device's chain (a `Persist::Audit`
    /// effect). `resume` gives this chain's newest record and newest key
    /// record from the store, asked once per unlock.
    pub fn audit_append(
        &mut self,
        mut event: AuditEvent,
        now_ms: i64,
        rng: &mut impl CryptoRngCore,
        resume: impl FnOnce() -> (Option<Record>, Option<Record>),
    ) -> Result<(), ReplicaError> {
        let readers = self.audit_readers();
        let extra = self.audit_extra_readers(event.folder.as_ref());
        event.user = self.identity.email.clone();
        let unlocked = self.unlocked.as_mut().ok_or(ReplicaError::Locked)?;
        let (keys, writer) = chain_writer(unlocked, resume);
        let records = writer
            .append(keys, &readers, &extra, event, now_ms, rng)
            .map_err(|_| ReplicaError::Locked)?;
        let user = self.identity.email.clone();
        self.audit_hold(
            records
                .into_iter()
                .map(|record| AuditRow {
                    record,
                    user: user.clone(),
                })
                .collect(),
        );
        Ok(())
    }

    /// Pruning this device's chain past the retention: `candidate` is its
    /// newest record older than `before_ms` (from the store), `pruned` the
    /// seq its newest checkpoint already covers. When the candidate is
    /// past that, a checkpoint naming it is appended (a `Persist::Audit`
    /// effect) and its seq returned: once the checkpoint is stored, the
    /// records up to it may be deleted without `verify` seeing a gap.
    pub fn audit_checkpoint(
        &mut self,
        candidate: Option<&Record>,
        pruned: u64,
        before_ms: i64,
        now_ms: i64,
        resume: impl FnOnce() -> (Option<Record>, Option<Record>),
    ) -> Result<Option<u64>, ReplicaError> {
        let me = self.identity.device;
        let Some(through) = candidate.filter(|r| {
            r.device() == me && r.seq() > pruned && r.time_ms() < before_ms && r.verify_signature()
        }) else {
            return Ok(None);
        };
        let unlocked = self.unlocked.as_mut().ok_or(ReplicaError::Locked)?;
        let (keys, writer) = chain_writer(unlocked, resume);
        if through.seq() > writer.seq() {
            return Ok(None);
        }
        let record = writer.checkpoint(keys, (through.seq(), through.hash()), before_ms, now_ms);
        let user = self.identity.email.clone();
        self.audit_hold(vec![AuditRow { record, user }]);
        Ok(Some(through.seq()))
    }

    /// The seq up to which a holder may drop `device`'s records: what its
    /// newest checkpoint (signed by that device) covers.
    pub fn audit_prunable(device: &DeviceId, checkpoint: &Record) -> Option<u64> {
        (checkpoint.device() == *device && checkpoint.verify_signature())
            .then(|| checkpoint.pruned_through())
            .flatten()
    }

    /// Queues rows for the store and wakes the peers that lack them.
    fn audit_hold(&mut self, rows: Vec<AuditRow>) {
        if rows.is_empty() {
            return;
        }
        let mut grown = Vec::new();
        for r in &rows {
            let d = r.record.device();
            let head = self.audit.heads.entry(d).or_default();
            if r.record.seq() > *head {
                *head = r.record.seq();
                grown.push(d);
            }
        }
        self.effects
            .push_back(super::Effect::Persist(Persist::Audit(rows)));
        let peers: Vec<DeviceId> = self
            .peers
            .iter()
            .filter(|(p, st)| {
                st.audit_heads.as_ref().is_some_and(|_| {
                    let mut managed = None;
                    grown.iter().any(|d| self.audit_holds(p, d, &mut managed))
                })
            })
            .map(|(p, _)| *p)
            .collect();
        for p in peers {
            self.wake(p);
        }
    }

    /// A peer's records: each must decode, carry its device's signature and
    /// belong to a chain this device may hold; those that do are stored.
    pub(super) fn audit_received(
        &mut self,
        records: Vec<Vec<u8>>,
    ) -> Result<(), ProtocolViolation> {
        let me = self.identity.device;
        let mut managed = None;
        let mut rows = Vec::with_capacity(records.len());
        let mut bad = 0;
        for bytes in &records {
            let record = Record::decode(bytes).map_err(|_| ProtocolViolation::Undecodable)?;
            if !record.verify_signature() {
                bad += 1;
                continue;
            }
            let author = record.device();
            // A chain of a device the roster does not know, or that this
            // device may not hold (the rosters differ for a moment): left.
            let known = self
                .team_state()
                .is_some_and(|t| t.team.devices.contains_key(&author));
            if !known || author == me || !self.audit_holds(&me, &author, &mut managed) {
                continue;
            }
            rows.push(AuditRow {
                user: self.audit_user(&author),
                record,
            });
        }
        if bad > 0 {
            return Err(ProtocolViolation::InvalidEnvelopes(bad));
        }
        self.audit_hold(rows);
        Ok(())
    }

    /// The chain `peer` lacks next: its device and the seq the peer holds
    /// (send the records above it), if any.
    pub fn audit_wants(&self, peer: &DeviceId) -> Option<(DeviceId, u64)> {
        let theirs = self.peers.get(peer)?.audit_heads.as_ref()?;
        let mut managed = None;
        // Chains the peer lacks first (cheap), then whether it holds them.
        self.audit
            .heads
            .iter()
            .map(|(d, mine)| (*d, *mine, theirs.get(d).copied().unwrap_or(0)))
            .filter(|(_, mine, held)| mine > held)
            .find(|(d, _, _)| self.audit_holds(peer, d, &mut managed))
            .map(|(d, _, held)| (d, held))
    }

    /// `peer` was sent `device`'s records up to `seq`.
    pub fn audit_sent(&mut self, peer: &DeviceId, device: DeviceId, seq: u64) {
        if let Some(h) = self
            .peers
            .get_mut(peer)
            .and_then(|p| p.audit_heads.as_mut())
        {
            let e = h.entry(device).or_default();
            *e = (*e).max(seq);
        }
    }

    /// Opens stored records for a query: each sealed record's event, if
    /// this device holds its chain key. `key_record(device, seq)` reads a
    /// key record from the store.
    pub fn audit_open(
        &mut self,
        records: Vec<Record>,
        mut key_record: impl FnMut(DeviceId, u64) -> Option<Record>,
    ) -> Result<Vec<OpenRecord>, ReplicaError> {
        let unlocked = self.unlocked.as_mut().ok_or(ReplicaError::Locked)?;
        let mut out = Vec::with_capacity(records.len());
        for record in records {
            if let Some(event) = record.open_shared(&unlocked.keys) {
                out.push(OpenRecord {
                    record,
                    event: Some(event),
                });
                continue;
            }
            let event = record.key_seq().and_then(|k| {
                let at = (record.device(), k);
                if !unlocked.audit.open.contains_key(&at) {
                    let key = key_record(at.0, at.1).and_then(|r| {
                        (r.seq() == k && r.device() == at.0 && r.verify_signature())
                            .then(|| r.open_key(&unlocked.keys))
                            .flatten()
                    })?;
                    if unlocked.audit.open.len() >= MAX_OPEN_KEYS {
                        unlocked.audit.open.clear();
                    }
                    unlocked.audit.open.insert(at, key);
                }
                record.open_event(unlocked.audit.open.get(&at)?).ok()
            });
            out.push(OpenRecord { record, event });
        }
        Ok(out)
    }
}

use super::Unlocked;

/// This device's chain writer, resumed from the store's tail on first use
/// after an unlock, with the keys it signs with.
fn chain_writer(
    unlocked: &mut Unlocked,
    resume: impl FnOnce() -> (Option<Record>, Option<Record>),
) -> (&crate::crypto::DeviceKeys, &mut ChainWriter) {
    let Unlocked { keys, audit, .. } = unlocked;
    let writer = audit.writer.get_or_insert_with(|| {
        let (last, key) = resume();
        ChainWriter::resume(keys, last.as_ref(), key.as_ref())
    });
    (keys, writer)
}
