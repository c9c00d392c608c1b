//! The vault's side of the audit trail: it appends this device's records
//! (`Replica::audit_append`, handed the chain's tail from the store), reads
//! the rows a peer lacks or a query wants from the store, and hands them to
//! the replica and to `coffer_crdt::audit::verify`. It decides nothing: who
//! reads what, what a peer lacks and whether a chain holds are the
//! replica's and the crdt's.

use coffer_crdt::audit::{self, AuditEvent, ChainReport, Record, Row};
use coffer_crdt::replica::{ItemQuery, OpenRecord, SyncMessage, MAX_AUDIT_BATCH};
use coffer_crdt::{DeviceId, ReplicaError};
use tracing::warn;

use super::{Now, Vault, VaultError};
use crate::store::AuditRange;

/// Most bytes of records one `AuditRecords` message carries.
const MAX_AUDIT_MESSAGE_BYTES: usize = 512 * 1024;

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
        let resume = || match store.audit_tail(&me) {
            Ok((last, key)) => (
                last.and_then(|b| Record::decode(&b).ok()),
                key.and_then(|b| Record::decode(&b).ok()),
            ),
            Err(e) => {
                warn!(error = %e, "cannot read this device's audit chain");
                (None, None)
            }
        };
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
        let r = self.replica()?;
        Ok(AuditEvent {
            folder: Some(folder),
            folder_name: Some(r.folder_name(&folder)),
            item: Some(id),
            item_name: Some(found.name.clone()),
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

    /// Every chain held, checked.
    pub fn audit_verify(&self) -> Result<Vec<ChainReport>, VaultError> {
        let rows = self.store.audit_rows()?;
        Ok(audit::verify(
            rows.into_iter()
                .map(|(device, seq, bytes)| Row { device, seq, bytes }),
        ))
    }
}
