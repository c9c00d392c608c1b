//! The audit trail's methods (`coffer audit`, and the web console's
//! activity view): query, verify, exposure, and the CLI's note of what it
//! did with a value the daemon served (copied, shown).

use serde::{Deserialize, Serialize};

use super::{Empty, Method};

/// `audit.note`: what the client did with a value it was served (the
/// daemon cannot see a clipboard): `action` is `reveal`, `copy`,
/// `totp-copy`, `secret-read`, `autofill`; `item` a reference.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuditNoteParams {
    pub action: String,
    pub item: Option<String>,
    /// The field's name (`password`), never its value.
    pub field: Option<String>,
}

/// `audit.query`: records matching every filter given, oldest first (the
/// oldest `limit` of them, or the newest with `newest`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuditQueryParams {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// A user's email.
    pub user: Option<String>,
    /// A device id (hex, or a unique prefix of it).
    pub device: Option<String>,
    /// A folder's name or id.
    pub folder: Option<String>,
    /// An item's name or id (as named at the time).
    pub item: Option<String>,
    /// Any of these actions (empty: all).
    #[serde(default)]
    pub actions: Vec<String>,
    /// Only records after this cursor (`AuditEntry::cursor`; `--follow`).
    pub after: Option<String>,
    /// At most this many (default 10,000).
    pub limit: Option<usize>,
    /// The newest `limit` records that match (still returned oldest
    /// first) rather than the oldest: `coffer audit` without `--since`.
    #[serde(default)]
    pub newest: bool,
}

/// One record as a query shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditEntry {
    pub time_ms: i64,
    /// The user's email, as the record has it.
    pub user: String,
    /// The user's display name, as this device's roster has it (also for
    /// a user removed since). None when the roster gives none, or when the
    /// name holds `<` or `>`: shown as "Name <email>", such a name could
    /// pass for someone else's address.
    #[serde(default)]
    pub user_name: Option<String>,
    pub device: String,
    pub device_name: Option<String>,
    pub seq: u64,
    pub action: String,
    pub folder: Option<String>,
    pub folder_name: Option<String>,
    pub item: Option<String>,
    pub item_name: Option<String>,
    pub field: Option<String>,
    pub detail: Option<String>,
    /// Where this record sits, for `after`.
    pub cursor: String,
}

/// One finding of `audit.verify`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditFinding {
    /// `gap`, `fork` or `bad-signature`.
    pub kind: String,
    /// The seq (the first missing one of a gap).
    pub seq: u64,
    /// The last missing seq of a gap.
    pub to: Option<u64>,
}

/// One device's chain as `audit.verify` found it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditChain {
    pub device: String,
    pub device_name: Option<String>,
    pub user: Option<String>,
    pub records: u64,
    pub last_seq: u64,
    pub pruned_through: u64,
    pub findings: Vec<AuditFinding>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditVerifyResult {
    /// No finding in any chain.
    pub clean: bool,
    pub chains: Vec<AuditChain>,
}

method!(
    /// Notes what the client did with a served value (copied it, showed it).
    AuditNote, "audit.note", AuditNoteParams, Empty
);
method!(
    /// The audit records this device holds and may read, filtered.
    AuditQuery, "audit.query", AuditQueryParams, Vec<AuditEntry>
);
method!(
    /// Checks every audit chain held: gaps, forks, bad signatures.
    AuditVerify, "audit.verify", Empty, AuditVerifyResult
);

/// `audit.exposure`: what a departing or removed user could read.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuditExposureParams {
    /// The user's email.
    pub user: String,
}

/// One item the user could read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExposedItem {
    pub folder: String,
    pub folder_name: String,
    pub item: String,
    pub item_name: String,
    pub trashed: bool,
    /// The first key epoch of the folder they held (0: its founding).
    pub since_epoch: u32,
    /// Recorded uses per action (`reveal`, `copy`, `totp-show`, ...).
    pub uses: std::collections::BTreeMap<String, u64>,
    pub last_used_ms: Option<i64>,
    /// Changed since their removal; `None` while they can still read it
    /// or when no removal names a cutoff.
    pub changed_since_removal: Option<bool>,
}

/// One folder the user could read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExposedFolder {
    pub folder: String,
    pub folder_name: String,
    pub since_epoch: u32,
    pub still_member: bool,
    pub removal_known: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditExposureResult {
    pub user: String,
    /// Still a user of the team.
    pub in_team: bool,
    pub devices: Vec<String>,
    pub folders: Vec<ExposedFolder>,
    pub items: Vec<ExposedItem>,
    /// Folders they could read that this device cannot open (their items
    /// are not listed).
    pub unreadable_folders: Vec<String>,
    /// Audit records of the user held here (the uses are counted from them).
    pub records_seen: u64,
}

method!(
    /// Every item a user could read, their uses, and what changed since
    /// their removal: the credentials to rotate.
    AuditExposure, "audit.exposure", AuditExposureParams, AuditExposureResult
);

/// `audit.retention`: this device's audit retention, set if `days` is
/// given (a team admin's setting), and a pruning run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuditRetentionParams {
    pub days: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditRetentionResult {
    pub days: u32,
    /// This device's chain got a checkpoint up to this seq.
    pub checkpoint_through: Option<u64>,
    /// Rows dropped from the chains held.
    pub pruned_rows: u64,
}

method!(
    /// Shows or sets the audit retention, and prunes past it.
    AuditRetention, "audit.retention", AuditRetentionParams, AuditRetentionResult
);
