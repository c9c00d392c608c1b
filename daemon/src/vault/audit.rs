//! The vault's side of the audit trail: it appends this device's records
//! (`Replica::audit_append`, handed the chain's tail from the store), reads
//! the rows a peer lacks or a query wants from the store, and hands them to
//! the replica and to `coffer_crdt::audit::verify`. It decides nothing: who
//! reads what, what a peer lacks and whether a chain holds are the
//! replica's and the crdt's.

use coffer_crdt::audit::{self, AuditEvent, ChainReport, Record, Row};
use coffer_crdt::replica::{ItemQuery, OpenRecord, SyncMessage, MAX_AUDIT_BATCH};
use coffer_crdt::{DeviceId, ItemId, ReplicaError, SpaceId};
use tracing::warn;

use super::{Now, Vault, VaultError};
use crate::store::AuditRange;

/// Most bytes of records one `AuditRecords` message carries.
const MAX_AUDIT_MESSAGE_BYTES: usize = 512 * 1024;
/// Where this device's retention setting is kept (`coffer audit retention`).
const KV_RETENTION: &str = "audit.retention_days";
/// Records are kept this many days unless an admin sets otherwise.
pub const DEFAULT_RETENTION_DAYS: u32 = 365;
/// The longest retention one may set (100 years).
pub const MAX_RETENTION_DAYS: u32 = 36_500;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// What a pruning run did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pruned {
    /// This device's chain got a checkpoint up to this seq.
    pub checkpoint_through: Option<u64>,
    /// Rows dropped from every chain held.
    pub rows: usize,
}

impl Vault {
    /// Appends an event to this device's chain, if the vault is unlocked
    /// (the signing key is under the PIN); the record is stored when the
    /// call settles. A failure is logged and does not fail the call that
    /// caused it.
    pub fn audit_note(&mut self, event: AuditEvent, now: Now) {
        let Some(replica) = self.replica.as_mut() else {
            return;
        };
        if replica.is_locked() {
            return;
        }
        let me = replica.identity().device;
        let store = &self.store;
        let resume = || chain_tail(store, &me);
        if let Err(e) = replica.audit_append(event, now.unix_ms, &mut rand::rngs::OsRng, resume) {
            warn!(error = %e, "cannot write an audit record");
        }
    }

    /// An event about an item: its folder, id and names now.
    pub fn audit_item_event(
        &self,
        action: audit::Action,
        item: &str,
        field: Option<String>,
    ) -> Result<AuditEvent, VaultError> {
        // The same lookup as the action's own: a live item first, then the
        // trash (history and reveals of a trashed item are audited too).
        let (folder, id, found) = match self.find_item(&ItemQuery::live(item)) {
            Err(VaultError::Replica(ReplicaError::NoSuchItem { .. })) => {
                self.find_item(&ItemQuery {
                    item: item.to_string(),
                    trash: true,
                })?
            }
            other => other?,
        };
        let name = found.name.clone();
        self.audit_event_for(folder, id, name, action, field)
    }

    /// An event about an item found already: its folder's name now.
    pub fn audit_event_for(
        &self,
        folder: SpaceId,
        item: ItemId,
        item_name: String,
        action: audit::Action,
        field: Option<String>,
    ) -> Result<AuditEvent, VaultError> {
        Ok(AuditEvent {
            folder: Some(folder),
            folder_name: Some(self.replica()?.folder_name(&folder)),
            item: Some(item),
            item_name: Some(item_name),
            field,
            ..AuditEvent::new("", action)
        })
    }

    /// The next `AuditRecords` message for `peer`: the records of the chain
    /// the replica says it lacks, from the store.
    pub fn poll_audit(&mut self, peer: &DeviceId) -> Result<Option<SyncMessage>, VaultError> {
        // A chain whose head is ahead of the store (nothing above `after`
        // stored) is noted as sent and the next one looked at.
        while let Some((device, after)) = self.replica()?.audit_wants(peer) {
            let rows = self.store.audit_after(&device, after, MAX_AUDIT_BATCH)?;
            let mut records = Vec::with_capacity(rows.len());
            let mut bytes = 0;
            let mut last = after;
            for (seq, b) in rows {
                if !records.is_empty() && bytes + b.len() > MAX_AUDIT_MESSAGE_BYTES {
                    break;
                }
                bytes += b.len();
                last = seq;
                records.push(b);
            }
            let replica = self.replica_mut()?;
            if records.is_empty() {
                let head = replica.audit_heads().get(&device).copied().unwrap_or(after);
                replica.audit_sent(peer, device, head.max(after));
                continue;
            }
            replica.audit_sent(peer, device, last);
            return Ok(Some(SyncMessage::AuditRecords { records }));
        }
        Ok(None)
    }

    /// The event records in `range`, opened where this device may read them.
    pub fn audit_query(&mut self, range: &AuditRange) -> Result<Vec<OpenRecord>, VaultError> {
        let rows = self.store.audit_query(range)?;
        // Signatures are checked as records arrive (`Replica::handle_message`)
        // and by `audit verify`, not on every query: at 50 µs each they
        // would be most of a query's time. A row filed under another device
        // or seq than its record says is left out.
        let records: Vec<Record> = rows
            .into_iter()
            .filter_map(|(d, s, b)| {
                Record::decode(&b)
                    .ok()
                    .filter(|r| r.device() == d && r.seq() == s)
            })
            .collect();
        let store = &self.store;
        let replica = self.replica.as_mut().ok_or(VaultError::NotInitialized)?;
        Ok(replica.audit_open(records, |d, s| {
            store
                .audit_at(&d, s)
                .ok()
                .flatten()
                .and_then(|b| Record::decode(&b).ok())
        })?)
    }

    /// The retention in days this device prunes with.
    pub fn audit_retention(&self) -> Result<u32, VaultError> {
        Ok(self
            .store
            .get_json::<u32>(KV_RETENTION)?
            .unwrap_or(DEFAULT_RETENTION_DAYS))
    }

    /// Sets the retention (1..=[`MAX_RETENTION_DAYS`]); a team admin's
    /// setting, or a device outside any team's.
    pub fn set_audit_retention(&mut self, days: u32) -> Result<(), VaultError> {
        let r = self.replica()?;
        if r.team_state().is_some() && !r.audit_is_admin() {
            return Err(coffer_crdt::replica::ReplicaError::NotAdmin {
                action: "set the audit retention",
            }
            .into());
        }
        if !(1..=MAX_RETENTION_DAYS).contains(&days) {
            return Err(VaultError::Invalid(format!(
                "the retention is 1 to {MAX_RETENTION_DAYS} days"
            )));
        }
        self.store.put_json(KV_RETENTION, &days)?;
        Ok(())
    }

    /// Prunes past the retention: this device's chain gets a checkpoint
    /// naming its newest record older than the retention (the replica
    /// decides, the checkpoint is stored first); then every chain's rows
    /// under its newest stored checkpoint, signed by its own device, are
    /// dropped (the newest key record among them kept: later records are
    /// sealed under it). Another device's records are dropped only under
    /// that device's own checkpoint, so `audit verify` sees no gap.
    pub fn audit_prune(&mut self, now: Now) -> Result<Pruned, VaultError> {
        let days = self.audit_retention()?;
        let before = now.unix_ms.saturating_sub(i64::from(days) * DAY_MS);
        let mut out = Pruned::default();
        let checkpoints: Vec<(DeviceId, Record)> = self
            .store
            .audit_checkpoints()?
            .into_iter()
            .filter_map(|(d, b)| Record::decode(&b).ok().map(|r| (d, r)))
            .collect();
        if let Some(replica) = self.replica.as_mut().filter(|r| !r.is_locked()) {
            let me = replica.identity().device;
            let pruned = checkpoints
                .iter()
                .find(|(d, _)| *d == me)
                .and_then(|(d, r)| coffer_crdt::Replica::audit_prunable(d, r))
                .unwrap_or(0);
            let candidate = self
                .store
                .audit_prune_candidate(&me, before)?
                .and_then(|b| Record::decode(&b).ok());
            let store = &self.store;
            let resume = || chain_tail(store, &me);
            out.checkpoint_through = replica.audit_checkpoint(
                candidate.as_ref(),
                pruned,
                before,
                now.unix_ms,
                resume,
            )?;
            // The checkpoint is on disk before anything under it is dropped.
            self.settle()?;
        }
        for (device, bytes) in self.store.audit_checkpoints()? {
            let Ok(record) = Record::decode(&bytes) else {
                continue;
            };
            if let Some(through) = coffer_crdt::Replica::audit_prunable(&device, &record) {
                out.rows += self.store.audit_delete_through(&device, through)?;
            }
        }
        Ok(out)
    }

    /// Every chain held, checked.
    pub fn audit_verify(&self) -> Result<Vec<ChainReport>, VaultError> {
        let rows = self.store.audit_rows()?;
        Ok(audit::verify(
            rows.into_iter()
                .map(|(device, seq, bytes)| Row { device, seq, bytes }),
        ))
    }
}

/// This device's last record and its current key record, read back from
/// the store to resume its chain.
fn chain_tail(store: &crate::store::Store, me: &DeviceId) -> (Option<Record>, Option<Record>) {
    match store.audit_tail(me) {
        Ok((last, key)) => (
            last.and_then(|b| Record::decode(&b).ok()),
            key.and_then(|b| Record::decode(&b).ok()),
        ),
        Err(e) => {
            warn!(error = %e, "cannot read this device's audit chain");
            (None, None)
        }
    }
}

#[cfg(test)]
mod tests {
    use coffer_crdt::audit::{Action, AuditEvent};
    use rand::rngs::OsRng;

    use super::super::tests::{kdf, now};
    use super::*;

    fn at(days: i64) -> Now {
        Now {
            unix_ms: now().unix_ms + days * DAY_MS,
        }
    }

    /// Retention: records past it are dropped under a signed checkpoint,
    /// `verify` sees no gap, the records kept still open, and a second run
    /// has nothing to do. A longer retention keeps everything.
    #[test]
    fn pruning_past_the_retention_leaves_a_checkpoint_verify_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = Vault::open(dir.path(), kdf()).unwrap();
        v.init("Ada", "ada@example.com", "246813", now(), &mut OsRng)
            .unwrap();
        v.settle().unwrap();
        assert_eq!(v.audit_retention().unwrap(), DEFAULT_RETENTION_DAYS);
        for _ in 0..5 {
            v.audit_note(AuditEvent::new("", Action::Backup), at(0));
        }
        v.settle().unwrap();
        for _ in 0..2 {
            v.audit_note(AuditEvent::new("", Action::Export), at(400));
        }
        v.settle().unwrap();
        let before = v.store.audit_rows().unwrap().len();

        // Retention longer than the records' age: nothing goes.
        v.set_audit_retention(500).unwrap();
        let kept = v.audit_prune(at(400)).unwrap();
        assert_eq!((kept.checkpoint_through, kept.rows), (None, 0));
        assert!(v.set_audit_retention(0).is_err());

        v.set_audit_retention(DEFAULT_RETENTION_DAYS).unwrap();
        let pruned = v.audit_prune(at(400)).unwrap();
        // Seq 1 is the key record, 2..=6 the five old events.
        assert_eq!(pruned.checkpoint_through, Some(6));
        assert_eq!(pruned.rows, 5, "the old events, not their key record");
        assert_eq!(v.store.audit_rows().unwrap().len(), before - 5 + 1);

        let reports = v.audit_verify().unwrap();
        assert_eq!(reports.len(), 1);
        assert!(reports[0].findings.is_empty(), "{reports:?}");
        assert_eq!(reports[0].pruned_through, 6);

        let left = v.audit_query(&AuditRange::default_all()).unwrap();
        let actions: Vec<Action> = left
            .iter()
            .map(|o| o.event.as_ref().expect("still opens").action)
            .collect();
        assert_eq!(actions, [Action::Export, Action::Export]);

        let again = v.audit_prune(at(400)).unwrap();
        assert_eq!((again.checkpoint_through, again.rows), (None, 0));
        // Later: the export records and the first checkpoint go under a
        // second one; still no gap.
        let later = v.audit_prune(at(800)).unwrap();
        assert_eq!(later.checkpoint_through, Some(9));
        assert!(v.audit_verify().unwrap()[0].findings.is_empty());
    }
}
