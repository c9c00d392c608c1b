//! One type per method: its name, params and result.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A request the daemon answers.
pub trait Method {
    const NAME: &'static str;
    type Params: Serialize + DeserializeOwned;
    type Result: Serialize + DeserializeOwned;
}

macro_rules! method {
    ($(#[$doc:meta])* $ty:ident, $name:literal, $params:ty, $result:ty) => {
        $(#[$doc])*
        pub enum $ty {}
        impl Method for $ty {
            const NAME: &'static str = $name;
            type Params = $params;
            type Result = $result;
        }
    };
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Empty {}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusResult {
    pub version: String,
    pub protocol: u32,
    pub initialized: bool,
    pub locked: bool,
    pub device_id: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    /// Folder and item counts; known only while unlocked.
    pub folders: Option<usize>,
    pub items: Option<usize>,
    pub auto_lock_secs: u64,
    pub data_dir: String,
    pub socket: String,
    pub pid: u32,
    /// This device's standing in its team: `no_team`, `member`, `revoked`
    /// (the device) or `removed` (its user); null when not initialised.
    #[serde(default)]
    pub standing: Option<String>,
    /// What to tell the user when the team took this device out.
    #[serde(default)]
    pub notice: Option<String>,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct InitParams {
    pub name: String,
    pub email: String,
    pub pin: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitResult {
    pub device_id: String,
    pub folder_id: String,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct UnlockParams {
    pub pin: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FolderCreateParams {
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FolderInfo {
    pub id: String,
    pub name: String,
    pub role: String,
    pub items: usize,
    pub trashed: usize,
}

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct ItemAddParams {
    /// Folder name or id prefix; default "Personal".
    pub folder: Option<String>,
    /// login, note, card or totp.
    pub item_type: String,
    pub name: String,
    /// Field values (password, username, notes, number, cvv, holder, expiry,
    /// totp). A `totp` value is validated and stored in canonical form.
    pub fields: BTreeMap<String, String>,
    pub urls: Vec<String>,
}

/// An item reference: a name, `FOLDER/NAME`, or an id prefix.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ItemRef {
    pub item: String,
    /// Look in the trash instead of the live items.
    #[serde(default)]
    pub trash: bool,
    /// `item.get` only: the use of the answer to record in the audit trail
    /// in the same request (`coffer get --field`, `--copy`, `--reveal`), so
    /// that an audited read costs one round trip, not two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<ItemUse>,
}

impl ItemRef {
    /// A live item, nothing recorded.
    pub fn live(item: impl Into<String>) -> Self {
        Self {
            item: item.into(),
            trash: false,
            record: None,
        }
    }
}

/// What a client does with an item it reads: an audit action a client
/// does on its side of the socket (`reveal`, `copy`, `secret-read`, ...)
/// and the field, if one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ItemUse {
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct ItemEditParams {
    pub item: String,
    pub name: Option<String>,
    /// Fields to set; an empty value removes the field.
    pub fields: BTreeMap<String, String>,
    pub urls: Option<Vec<String>>,
}

/// `coffer conflicts pick ITEM FIELD N`: value N of a field (1 is the one
/// shown, 2.. the kept ones as `item.conflicts` lists them), or for the
/// field `trash` of an item an edit kept out of the trash: 1 keeps it out,
/// 2 moves it to the trash. By number: a value never travels on argv.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PickConflictParams {
    pub item: String,
    pub field: String,
    pub choice: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ItemListParams {
    pub folder: Option<String>,
    #[serde(default)]
    pub trash: bool,
    /// Send the listing in [`ItemsChunk`]s, `items` notifications on the
    /// request's connection, before the reply; the reply's result then
    /// holds the items no chunk carried (none, from this daemon). Absent
    /// for old clients and the web app: everything comes in the reply.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
}

/// A part of a streamed listing (`item.list` with `stream`), in listing
/// order; the first part is small, so the first items arrive at once, and
/// the head comes in the first or the second part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemsChunk {
    /// What a table needs before its first row: in one part, the first or
    /// the second (the first items are sent before it is counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<ListingHead>,
    pub items: Vec<ItemSummary>,
}

/// The whole listing's size and widths, known before it is all sent (a
/// table sizes its columns from them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListingHead {
    /// How many items the whole listing holds.
    pub total: usize,
    /// The longest item name, in characters.
    pub name_chars: usize,
    /// The longest folder name, in characters.
    pub folder_chars: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchParams {
    pub query: String,
}

/// An item with every field, secrets included: the CLI decides what to show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemView {
    pub id: String,
    pub folder: String,
    pub folder_id: String,
    pub item_type: String,
    pub name: String,
    pub fields: BTreeMap<String, String>,
    pub urls: Vec<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub trashed_ms: Option<i64>,
    /// Values of concurrently edited fields that lost last-writer-wins.
    pub conflicts: BTreeMap<String, Vec<String>>,
    /// Someone moved it to the trash while someone else edited it: the
    /// edit kept it out (`coffer conflicts pick ITEM trash 1|2` settles it).
    #[serde(default)]
    pub kept_from_trash: bool,
    /// Which of `fields` are secrets (the item schema's word; a client
    /// masks them unless asked).
    #[serde(default)]
    pub secret_fields: Vec<String>,
    /// How to show the fields whose key is not their name: custom fields
    /// (`custom:KIND:TITLE` → `TITLE`), shown after the built-in ones.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl ItemView {
    /// The value of a field named by its key or its label (a custom
    /// field's title), or `name`, `id`, `url`: what `coffer get --field`
    /// prints.
    pub fn field(&self, name: &str) -> Option<String> {
        match name {
            "name" => Some(self.name.clone()),
            "id" => Some(self.id.clone()),
            "url" | "urls" => (!self.urls.is_empty()).then(|| self.urls.join("\n")),
            other => self.fields.get(other).cloned().or_else(|| {
                let key = self.labels.iter().find(|(_, l)| l.as_str() == other)?.0;
                self.fields.get(key).cloned()
            }),
        }
    }
}

/// An item without secret values, for listings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemSummary {
    pub id: String,
    pub folder: String,
    pub item_type: String,
    pub name: String,
    pub username: Option<String>,
    pub urls: Vec<String>,
    pub has_totp: bool,
    pub updated_ms: i64,
    pub trashed_ms: Option<i64>,
    /// Archived at its source (1Password's archive): the `archived` field.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub archived: bool,
    /// Concurrent values of some field were kept (`coffer conflicts`).
    #[serde(default)]
    pub conflict: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub time_ms: i64,
    pub device: Option<String>,
    /// The device's name in the team roster.
    #[serde(default)]
    pub device_name: Option<String>,
    /// The user who made the change (email) and their display name.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub user_name: Option<String>,
    pub name: String,
    pub fields: BTreeMap<String, String>,
    pub urls: Vec<String>,
    pub trashed: bool,
    /// Which of `fields` are secrets.
    #[serde(default)]
    pub secret_fields: Vec<String>,
    /// Custom fields' display titles (see [`ItemView::labels`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// What this change altered: field names, `name`, `urls`, `trashed`
    /// (names only, so a masked history still shows what changed).
    #[serde(default)]
    pub changed: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TotpParams {
    pub item: String,
    /// Unix seconds to compute the code at; default now.
    pub at: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TotpCode {
    pub code: String,
    pub seconds_remaining: u64,
    pub period: u64,
    pub digits: u32,
    pub algorithm: String,
    pub item: String,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct TotpSetParams {
    pub item: String,
    /// Base32 secret, otpauth:// URI or steam:// secret.
    pub secret: String,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct ImportParams {
    /// A format name (`bitwarden-json`, `kdbx`, ...) or `auto`.
    pub format: String,
    /// Absolute path of the export file; the daemon reads it.
    pub path: String,
    /// Put every item in this existing folder instead of the export's folders.
    pub folder: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
    /// The KDBX database password.
    pub password: Option<String>,
    /// Send [`crate::Progress`] notifications before the reply.
    #[serde(default)]
    pub progress: bool,
}

/// `import.data`: as `import`, with the export's bytes in the request
/// instead of a path the daemon reads (the web app's upload: the page may
/// not name files on this machine).
#[derive(Clone, Serialize, Deserialize)]
pub struct ImportDataParams {
    /// A format name (`bitwarden-json`, `kdbx`, ...) or `auto`.
    pub format: String,
    /// The export file itself, base64 (standard alphabet, padded).
    pub data_base64: String,
    /// Put every item in this existing folder instead of the export's folders.
    pub folder: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
    /// The KDBX database password.
    pub password: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SkippedRecord {
    /// Where: `line 7`, `item 3 'GitHub'`, ...
    pub record: String,
    /// `None`: the whole record was not imported. `Some`: the item was
    /// imported without this source field (`attachment 'scan.pdf'`,
    /// `passkey`, `TOTP`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportResult {
    pub format: String,
    pub dry_run: bool,
    /// Items added (or, with dry_run, that would be) per item type.
    pub added: BTreeMap<String, usize>,
    /// Items already in the vault (same fingerprint), not added again.
    pub duplicates: usize,
    pub folders_created: Vec<String>,
    /// Records not imported, and fields left out of imported items.
    pub skipped: Vec<SkippedRecord>,
    /// How many records were not imported at all.
    #[serde(default)]
    pub records_skipped: usize,
    /// How many source fields were left out of imported items (each listed
    /// in `skipped` with its `field`).
    #[serde(default)]
    pub fields_left_out: usize,
}

method!(
    /// Daemon and vault state; answers while locked and before init.
    Status, "status", Empty, StatusResult
);
method!(
    /// Creates the device identity and the Personal folder, sets the PIN, unlocks.
    Init, "init", InitParams, InitResult
);
method!(Unlock, "unlock", UnlockParams, Empty);
method!(
    /// Whether a new PIN is strong enough (the daemon's one rule), so a
    /// prompt can refuse it before asking to type it again. Sets nothing.
    PinCheck, "pin.check", UnlockParams, Empty
);
method!(Lock, "lock", Empty, Empty);
method!(
    /// Erases this device's vault (keys, identity, every envelope) without
    /// a PIN, for a forgotten one; the daemon then stops.
    Reset, "vault.reset", ResetParams, ResetResult
);
method!(
    FolderCreate,
    "folder.create",
    FolderCreateParams,
    FolderInfo
);
method!(FolderList, "folder.list", Empty, Vec<FolderInfo>);
method!(ItemAdd, "item.add", ItemAddParams, ItemView);
method!(ItemGet, "item.get", ItemRef, ItemView);
method!(ItemList, "item.list", ItemListParams, Vec<ItemSummary>);
method!(ItemSearch, "item.search", SearchParams, Vec<ItemSummary>);
method!(ItemEdit, "item.edit", ItemEditParams, ItemView);
method!(
    /// Moves an item to the trash.
    ItemTrash, "item.trash", ItemRef, ItemSummary
);
method!(
    /// Takes an item back out of the trash.
    ItemRestore, "item.restore", ItemRef, ItemSummary
);
method!(ItemHistory, "item.history", ItemRef, Vec<HistoryEntry>);
method!(ItemConflicts, "item.conflicts", Empty, Vec<ItemView>);
method!(
    /// Settles a conflict by writing one of the values kept side by side.
    ItemPickConflict, "item.pick_conflict", PickConflictParams, ItemView
);
method!(TotpGet, "totp.code", TotpParams, TotpCode);
method!(
    /// Links a TOTP secret to an existing item (or replaces it).
    TotpSet, "totp.set", TotpSetParams, ItemView
);
/// `pin.change`: the current PIN, then the new one (never logged: no `Debug`).
#[derive(Clone, Serialize, Deserialize)]
pub struct PinChangeParams {
    pub old_pin: String,
    pub new_pin: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FolderRenameParams {
    /// The folder: a name or an id prefix.
    pub folder: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FolderRemoveParams {
    /// The folder: a name or an id prefix.
    pub folder: String,
    /// Delete it even though it holds items (they go with it).
    #[serde(default)]
    pub force: bool,
    /// Leave the folder even as its Folder Manager (instead of deleting it).
    #[serde(default)]
    pub leave: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FolderRemoveResult {
    pub id: String,
    pub name: String,
    /// `deleted` (for every member) or `left` (the others keep it).
    pub outcome: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ItemMoveParams {
    /// The item: a name, `FOLDER/NAME`, or an id prefix.
    pub item: String,
    /// The folder to move it to: a name or an id prefix.
    pub folder: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrashEmptyParams {
    /// Only this folder's trash; every folder's when absent.
    pub folder: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrashEmptied {
    pub id: String,
    pub name: String,
    pub deleted: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrashEmptyResult {
    /// Items deleted for good, in all.
    pub deleted: usize,
    /// Per folder.
    pub folders: Vec<TrashEmptied>,
    /// Folders with trashed items this device may not change (by name).
    pub skipped: Vec<String>,
}

method!(
    /// Re-wraps the keystore under a new PIN (the old one must be right).
    PinChange, "pin.change", PinChangeParams, Empty
);
method!(
    /// Renames a folder for every member (Folder Manager).
    FolderRename, "folder.rename", FolderRenameParams, FolderInfo
);
method!(
    /// Deletes a folder for every member (Folder Manager), or leaves it.
    FolderRemove, "folder.rm", FolderRemoveParams, FolderRemoveResult
);
method!(
    /// Moves an item to another folder (write rights in both).
    ItemMove, "item.move", ItemMoveParams, ItemView
);
method!(
    /// Deletes trashed items for good.
    TrashEmpty, "trash.empty", TrashEmptyParams, TrashEmptyResult
);
method!(
    /// Imports another password manager's export, all or nothing.
    Import, "import", ImportParams, ImportResult
);
method!(
    /// Imports an export sent in the request (the web app), all or nothing.
    ImportData, "import.data", ImportDataParams, ImportResult
);
#[derive(Clone, Serialize, Deserialize)]
pub struct ExportParams {
    /// The PIN again: a plaintext export is only made for whoever knows it
    /// (a wrong one counts as a failed unlock).
    pub pin: String,
    /// `json` (Coffer's own format, importable as `coffer-json`) or `csv`.
    pub format: String,
    /// Only this folder; every folder when absent.
    pub folder: Option<String>,
    /// Also export items in the trash.
    #[serde(default)]
    pub include_trash: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportResult {
    pub format: String,
    pub items: usize,
    /// The export itself (plaintext secrets).
    pub text: String,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct BackupParams {
    /// Absolute path of the backup file to write (replaced atomically).
    pub path: String,
    pub passphrase: String,
    /// The PIN again, as for [`ExportParams::pin`].
    pub pin: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupResult {
    pub path: String,
    pub items: usize,
    pub folders: usize,
    pub bytes: u64,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct RestoreBackupParams {
    /// Absolute path of a file written by `backup`.
    pub path: String,
    pub passphrase: String,
    #[serde(default)]
    pub dry_run: bool,
    /// Send [`crate::Progress`] notifications before the reply.
    #[serde(default)]
    pub progress: bool,
}

method!(
    /// Everything readable (or one folder) as plaintext JSON or CSV.
    Export, "export", ExportParams, ExportResult
);
method!(
    /// Writes an age-encrypted (passphrase) backup of every readable item.
    Backup, "backup", BackupParams, BackupResult
);
method!(
    /// Adds a backup's items to the vault, all or nothing, without duplicates.
    RestoreBackup, "restore_backup", RestoreBackupParams, ImportResult
);
method!(
    /// Turns this connection into an event stream of [`crate::Notification`]s.
    Subscribe, "subscribe", Empty, Empty
);

// ---- Peer-to-peer sync (issue 4) ----

/// This device's id and the pairing key another device trusts it by.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceIdResult {
    pub device_id: String,
    /// `coffer2:<device id hex>:<X25519 key hex>:<transport key hex>`.
    pub pairing_key: String,
    /// The libp2p PeerId (derived from the device id).
    pub peer_id: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeviceTrustParams {
    /// The other device's pairing key (`coffer device id` there).
    pub key: String,
    /// A label for `coffer peers`.
    pub name: Option<String>,
    /// Folders to share with the device (names or id prefixes).
    #[serde(default)]
    pub share: Vec<String>,
    /// Its role in those folders: manager, editor (default) or member.
    pub role: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceTrustResult {
    pub device_id: String,
    /// Ids of the folders now shared with it.
    pub shared: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceRevokeParams {
    /// Device id (hex) or pairing key.
    pub device: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceRevokeResult {
    pub device_id: String,
    /// Folders it was removed from (their keys rotated).
    pub folders: Vec<String>,
}

/// A device this one trusts for sync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrustedDevice {
    pub device_id: String,
    pub name: Option<String>,
    pub added_ms: i64,
}

/// A peer: trusted, a folder member, or connected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub device_id: String,
    pub peer_id: String,
    /// Its name in the team roster, else the label given at `coffer device trust`.
    pub name: Option<String>,
    /// The team user of the device, once team rosters exist.
    pub user: Option<String>,
    pub connected: bool,
    /// The remote address of the current connection.
    pub address: Option<String>,
    pub connected_since_ms: Option<i64>,
    /// When envelopes last arrived from it, or it said we were caught up.
    pub last_sync_ms: Option<i64>,
    /// When it last answered a ping (every 5 s while connected).
    #[serde(default)]
    pub last_contact_ms: Option<i64>,
    /// The round trip of that ping.
    #[serde(default)]
    pub rtt_ms: Option<u64>,
    /// Connected, but no answer for 20 s or more: the connection is
    /// probably dead (a partition) and not yet noticed by TCP.
    #[serde(default)]
    pub silent: bool,
    /// Sync-protocol bytes (frames) sent to and received from it.
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub envelopes_sent: u64,
    pub envelopes_received: u64,
    /// How the connection runs: "lan", "direct" (over the internet, a
    /// hole punched by DCUtR included) or "relayed" (through a relay's
    /// circuit, still Noise end to end).
    #[serde(default)]
    pub path: Option<String>,
    /// The sync protocol this device's stream to it negotiated
    /// ("/coffer/sync/3", or "/coffer/sync/2" with an older daemon).
    #[serde(default)]
    pub sync_protocol: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeersResult {
    /// Whether the network runs (it starts once the device has an identity).
    pub running: bool,
    pub listen: Vec<String>,
    pub mdns: bool,
    pub peers: Vec<PeerInfo>,
    /// AutoNAT's verdict on this device: "public", "private" or "unknown".
    #[serde(default)]
    pub nat: Option<String>,
    /// Hole punches (DCUtR) since start: succeeded and failed.
    #[serde(default)]
    pub hole_punches: HolePunches,
}

/// DCUtR attempts since the daemon started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolePunches {
    pub succeeded: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarantinedEnvelope {
    pub id: String,
    pub author: String,
    pub seq: u64,
    pub reason: String,
}

/// An envelope that would not take effect on its own (its author lacked the
/// right, or it lies beyond a removal's cutoff) but is kept because an
/// accepted change of another user built on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndorsedEnvelope {
    pub id: String,
    pub author: String,
    pub seq: u64,
    /// The accepted change that built on it, and that change's author.
    pub by: String,
    pub by_author: String,
}

/// The sync state of one folder space.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpaceSyncStatus {
    pub folder_id: String,
    /// Known only while unlocked.
    pub name: Option<String>,
    pub envelopes: usize,
    /// Total encoded size of the held envelopes (encrypted content included).
    pub envelope_bytes: u64,
    /// {device id -> highest contiguous seq held}.
    pub version_vector: BTreeMap<String, u64>,
    pub pending: usize,
    pub quarantined: Vec<QuarantinedEnvelope>,
    /// Kept only because another user's accepted change built on them.
    #[serde(default)]
    pub endorsed: Vec<EndorsedEnvelope>,
    /// Member devices other than this one.
    pub members: Vec<String>,
    /// Digest of the accepted state (which held envelopes take effect, why
    /// the others do not, and the membership they build): equal on devices
    /// holding the same envelopes of this space.
    #[serde(default)]
    pub digest: String,
    /// Digest of the items as this device reads them (every field, trash
    /// and conflicts included); known only while unlocked and the folder
    /// opens. Equal on member devices that converged.
    #[serde(default)]
    pub items_digest: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncStatusResult {
    pub device_id: Option<String>,
    pub spaces: Vec<SpaceSyncStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncNowResult {
    /// Connected peers asked for what this device lacks.
    pub peers: usize,
    /// Peers being dialled again.
    pub dialing: usize,
}

// ---- Teams: roster, users, groups, shared folders, devices ----

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TeamCreateParams {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamInfo {
    pub team_id: String,
    pub name: String,
    /// The founding admin.
    pub founder: Option<String>,
    pub admins: Vec<String>,
    pub users: usize,
    pub groups: Vec<String>,
    /// Live (unrevoked) devices.
    pub devices: usize,
    /// This device's user, and whether they are a team admin.
    pub me: Option<String>,
    pub admin: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserInfo {
    pub email: String,
    /// Their display name (set when they were invited), if the roster has one.
    #[serde(default)]
    pub name: Option<String>,
    pub admin: bool,
    pub founder: bool,
    pub groups: Vec<String>,
    /// Live devices.
    pub devices: usize,
    /// Those devices, with their names and last contact.
    #[serde(default)]
    pub device_list: Vec<UserDevice>,
    /// When they joined the team (Unix ms, the admitting device's clock).
    #[serde(default)]
    pub joined_ms: Option<i64>,
    /// The most recent contact this device had with any of their devices
    /// (Unix ms; now for this device's own user), if any since it started.
    #[serde(default)]
    pub last_seen_ms: Option<i64>,
    /// The user of this device.
    pub me: bool,
}

/// One live device of a user, as `user.list` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserDevice {
    pub device_id: String,
    pub name: Option<String>,
    pub last_seen_ms: Option<i64>,
    pub this_device: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TeamRenameParams {
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceRenameParams {
    /// Device id or short id (≥ 4 hex digits); this device if absent.
    #[serde(default)]
    pub device: Option<String>,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserParams {
    pub user: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupParams {
    pub group: String,
    /// The user to add or remove (not for `group.create`).
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupInfo {
    pub name: String,
    pub members: Vec<String>,
}

/// What a roster or membership change did besides itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TeamChangeResult {
    /// Folders whose key rotated (names, or short ids while unknown).
    pub rotated: Vec<String>,
    /// Folders whose key was handed to new member devices.
    pub rewrapped: Vec<String>,
}

/// `folder.share` / `folder.role` / `folder.unshare`: a user or a group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FolderShareParams {
    pub folder: String,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    /// manager, editor or member (not for `folder.unshare`).
    #[serde(default)]
    pub role: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FolderRef {
    pub folder: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FolderMember {
    /// "user", "group" or "device".
    pub kind: String,
    /// Email, group name or device id.
    pub name: String,
    /// manager, editor or member.
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FolderMemberDevice {
    pub device_id: String,
    pub user: Option<String>,
    pub role: String,
    /// Whether the device holds the current key.
    pub has_key: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FolderMembersResult {
    pub folder_id: String,
    pub name: String,
    pub team_id: Option<String>,
    pub members: Vec<FolderMember>,
    pub devices: Vec<FolderMemberDevice>,
    /// Key epochs so far (1 + rotations).
    pub epochs: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub device_id: String,
    /// Its name in the team roster (`join --name`, `device rename`).
    #[serde(default)]
    pub name: Option<String>,
    pub user: String,
    pub revoked: bool,
    /// This device.
    pub this_device: bool,
}

method!(
    /// Founds a team with this device's user as its founding admin.
    TeamCreate, "team.create", TeamCreateParams, TeamInfo
);
method!(TeamShow, "team.show", Empty, TeamInfo);
method!(UserList, "user.list", Empty, Vec<UserInfo>);
method!(
    /// Removes a user from the team: their devices stop syncing, keys rotate.
    UserRemove, "user.remove", UserParams, TeamChangeResult
);
method!(
    /// Makes a user a team admin.
    UserPromote, "user.promote", UserParams, TeamChangeResult
);
method!(
    /// Makes a team admin a user like the others.
    UserDemote, "user.demote", UserParams, TeamChangeResult
);
method!(
    /// Renames the team (admins only).
    TeamRename, "team.rename", TeamRenameParams, TeamChangeResult
);
method!(
    /// The founding admin hands the role to another admin.
    TeamHandOver, "team.handover", UserParams, TeamChangeResult
);
method!(
    /// This device's user leaves the team: their devices stop syncing it, keys rotate.
    TeamLeave, "team.leave", Empty, TeamChangeResult
);
method!(GroupCreate, "group.create", GroupParams, TeamChangeResult);
method!(
    /// Deletes a user group (admins only): its folders' keys rotate.
    GroupDelete, "group.delete", GroupParams, TeamChangeResult
);
method!(
    /// Names a team device (this one by default).
    DeviceRename, "device.rename", DeviceRenameParams, TeamChangeResult
);
method!(GroupAdd, "group.add", GroupParams, TeamChangeResult);
method!(GroupRemove, "group.remove", GroupParams, TeamChangeResult);
method!(GroupList, "group.list", Empty, Vec<GroupInfo>);
method!(
    /// Shares a folder with a user or group (a personal folder becomes shared in place).
    FolderShare, "folder.share", FolderShareParams, FolderMembersResult
);
method!(
    /// Changes a user's or group's role in a folder.
    FolderRole, "folder.role", FolderShareParams, FolderMembersResult
);
method!(
    /// Takes a user or group out of a folder and rotates its key.
    FolderUnshare, "folder.unshare", FolderShareParams, FolderMembersResult
);
method!(
    FolderMembers,
    "folder.members",
    FolderRef,
    FolderMembersResult
);
method!(DeviceList, "device.list", Empty, Vec<DeviceInfo>);

method!(
    /// This device's id and pairing key.
    DeviceId, "device.id", Empty, DeviceIdResult
);
method!(
    /// Pre-enrolment pairing: trust a device for sync and share folders with it.
    DeviceTrust, "device.trust", DeviceTrustParams, DeviceTrustResult
);
method!(
    /// Stops trusting a device; removes it from the folders this device manages and rotates their keys.
    DeviceRevoke, "device.revoke", DeviceRevokeParams, DeviceRevokeResult
);
method!(DeviceTrusted, "device.trusted", Empty, Vec<TrustedDevice>);
method!(
    /// Known peers and their connections.
    Peers, "peers", Empty, PeersResult
);
method!(SyncStatus, "sync.status", Empty, SyncStatusResult);
pub use crate::doctor::DoctorFacts;

method!(
    /// What `coffer doctor` decides on: vault, team standing, listen
    /// addresses, mDNS sightings, each device's contact, dial errors and clock.
    Doctor, "doctor", Empty, DoctorFacts
);
method!(
    /// Asks every connected peer for what this device lacks and redials the others.
    SyncNow, "sync.now", Empty, SyncNowResult
);

// ---------------------------------------------------------------------------
// Enrolment: invites, device links and joins (`docs/protocol.md`, "Enrolment").

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InviteParams {
    pub email: String,
    /// The invitee's display name (default: the email).
    pub name: Option<String>,
    /// Groups the invitee joins (created if they do not exist).
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub admin: bool,
    /// Lifetime of the code, like `30m`, `24h`, `7d` (default 24h).
    pub expires: Option<String>,
    /// Re-invite an existing user to a fresh device (a lost device or a
    /// forgotten PIN): once confirmed, the new device is theirs and their
    /// other devices are revoked.
    #[serde(default)]
    pub recover: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinkParams {
    /// Lifetime of the code, like `30m`, `24h` (default 24h).
    pub expires: Option<String>,
}

/// A one-time code (a secret: give it only to the joiner).
#[derive(Clone, Serialize, Deserialize)]
pub struct InviteResult {
    pub code: String,
    /// "user" (an invite) or "device" (a device link).
    pub kind: String,
    pub email: String,
    pub expires_ms: i64,
    /// The inviter's listen addresses another device on the LAN can dial
    /// (for `--peer`): no loopback or link-local IPv6 ones, IPv4 first.
    pub addresses: Vec<String>,
    /// A recovery (`invite --recover`).
    #[serde(default)]
    pub recover: bool,
    /// What the inviter should know (a recovery: what it revokes, and that
    /// the user's Personal folder cannot come back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingParams {
    /// "user" (joins from invites) or "device" (device links).
    pub kind: String,
}

/// A join waiting for the inviter's confirmation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingJoin {
    pub kind: String,
    pub email: String,
    pub name: String,
    pub groups: Vec<String>,
    pub admin: bool,
    pub verification_code: String,
    pub device_id: String,
    pub device_name: String,
    pub since_ms: i64,
    /// A recovery (`invite --recover`): confirming revokes the user's other devices.
    #[serde(default)]
    pub recover: bool,
}

/// An invite or device link this daemon keeps (no secret: the code is
/// shown once, by `invite`/`device link`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InviteInfo {
    /// The invite's id (16 hex digits; `invite cancel` takes a prefix).
    pub id: String,
    /// "user" (an invite) or "device" (a device link).
    pub kind: String,
    pub email: String,
    pub name: String,
    pub created_ms: i64,
    pub expires_ms: i64,
    /// "open", "expired", "waiting" (a join awaits confirmation), "used",
    /// "rejected", "cancelled", "cancelled after failed attempts".
    pub state: String,
    /// A recovery (`invite --recover`).
    #[serde(default)]
    pub recover: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InviteCancelParams {
    /// An invite id (a prefix of at least 4 hex digits) or the invitee's
    /// email (its one open invite).
    pub invite: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DecideParams {
    /// "user" or "device".
    pub kind: String,
    /// The code the joiner shows (digits compared, spaces ignored).
    pub verification_code: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DecideResult {
    pub kind: String,
    pub email: String,
    pub device_id: String,
    /// Whether the joiner received the decision.
    pub delivered: bool,
    /// What a confirmed recovery did (`invite --recover`), else null.
    #[serde(default)]
    pub recovery: Option<RecoveryResult>,
}

/// What a confirmed recovery did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecoveryResult {
    /// The user's devices it revoked.
    pub revoked: Vec<String>,
    /// Shared folders this device holds that the new device is a member of.
    pub folders: Vec<RecoveredFolder>,
    /// Folders whose key this device rotated.
    pub rotated: Vec<String>,
}

/// A shared folder handed to a recovered user's new device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecoveredFolder {
    pub id: String,
    pub name: String,
    /// Whether the new device holds the current key already (else one of
    /// the folder's writers hands it over when their device next syncs).
    pub has_key: bool,
}

/// `coffer reset`: `confirm` must be true.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResetParams {
    pub confirm: bool,
}

/// What `coffer reset` erased; the daemon stops after answering.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResetResult {
    pub reset: bool,
    /// The erased device's id, email and team (null if it had none).
    pub device_id: Option<String>,
    pub email: Option<String>,
    pub team: Option<String>,
    /// The data folder it was in.
    pub data_dir: String,
    /// The daemon stops once it answered (the next command starts it fresh).
    pub daemon_stopped: bool,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct JoinStartParams {
    pub code: String,
    /// "user" (`coffer join`) or "device" (`coffer device join`).
    pub kind: String,
    /// The inviter's addresses (else mDNS).
    #[serde(default)]
    pub peers: Vec<String>,
    /// A fresh device's PIN, given up front (`--pin-stdin`).
    pub pin: Option<String>,
    /// This device's name in the team (else its host name).
    #[serde(default)]
    pub device_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinStartResult {
    /// Names this join in `join.wait` / `join.finish`.
    pub join_id: u64,
    pub verification_code: String,
    pub kind: String,
    pub team_name: String,
    pub email: String,
    pub name: String,
    /// Whether this device has no vault yet (it is created at the end).
    pub fresh: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinIdParams {
    pub join_id: u64,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct JoinFinishParams {
    pub join_id: u64,
    pub pin: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinResult {
    /// Whether the device is enrolled; false when admitted but a fresh
    /// device still needs its PIN (`join.finish`).
    pub enrolled: bool,
    pub needs_pin: bool,
    pub device_id: Option<String>,
    pub team_id: String,
    pub team_name: String,
    pub email: String,
}

method!(
    /// Opens an invite (team admins): a one-time code for a new user's device.
    InviteCreate, "invite.create", InviteParams, InviteResult
);
method!(
    /// Opens a device link: a one-time code for this user's new device.
    DeviceLink, "device.link", LinkParams, InviteResult
);
method!(
    /// Joins waiting for confirmation.
    InvitePending, "invite.pending", PendingParams, Vec<PendingJoin>
);
method!(
    /// The invites and device links this daemon keeps, newest first
    /// (open ones, and closed ones for an hour after they closed).
    InviteList, "invite.list", Empty, Vec<InviteInfo>
);
method!(
    /// Cancels an open invite or device link: its code then fails with
    /// `InviteInvalid` ("cancelled").
    InviteCancel, "invite.cancel", InviteCancelParams, InviteInfo
);
method!(
    /// Admits the pending join showing this verification code.
    InviteConfirm, "invite.confirm", DecideParams, DecideResult
);
method!(
    /// Refuses the pending join showing this verification code.
    InviteReject, "invite.reject", DecideParams, DecideResult
);
method!(
    /// Finds the inviter and runs the handshake; returns the verification code.
    JoinStart, "join.start", JoinStartParams, JoinStartResult
);
method!(
    /// Waits (up to 10 minutes) for the inviter's decision.
    JoinWait, "join.wait", JoinIdParams, JoinResult
);
method!(
    /// Sets a fresh device's PIN and completes an admitted join.
    JoinFinish, "join.finish", JoinFinishParams, JoinResult
);

/// `item.page`: one page of `item.list`'s listing (same order), for a
/// client that shows a long vault before it has all of it (the web app).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ItemPageParams {
    pub folder: Option<String>,
    #[serde(default)]
    pub trash: bool,
    #[serde(default)]
    pub offset: usize,
    /// At most this many (default and cap 1000).
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ItemPage {
    /// How many items the whole listing holds.
    pub total: usize,
    pub items: Vec<ItemSummary>,
}

method!(
    /// One page of the item listing, and its total.
    ItemListPage, "item.page", ItemPageParams, ItemPage
);

/// `coffer ui`: the local web app's address and a one-time token that the
/// browser spends on first use for a session cookie (`docs/security.md`).
#[derive(Clone, Serialize, Deserialize)]
pub struct UiOpenResult {
    /// `http://127.0.0.1:PORT/`, without the token.
    pub url: String,
    /// Single use, expires within two minutes; goes in the URL fragment,
    /// which the browser never sends to a server.
    pub token: String,
}

impl fmt::Debug for UiOpenResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UiOpenResult")
            .field("url", &self.url)
            .field("token", &REDACTED)
            .finish()
    }
}

method!(
    /// A one-time token for the daemon's local web app (`coffer ui`).
    UiOpen, "ui.open", Empty, UiOpenResult
);

// Debug without the secrets: a stray `{:?}` of a request must not log a
// PIN, a password, a passphrase, a TOTP secret or an invite code.
const REDACTED: &str = "<redacted>";

impl fmt::Debug for InitParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InitParams")
            .field("name", &self.name)
            .field("email", &self.email)
            .field("pin", &REDACTED)
            .finish()
    }
}

impl fmt::Debug for UnlockParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnlockParams")
            .field("pin", &REDACTED)
            .finish()
    }
}

impl fmt::Debug for ItemAddParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ItemAddParams")
            .field("folder", &self.folder)
            .field("item_type", &self.item_type)
            .field("name", &self.name)
            .field("fields", &REDACTED)
            .field("urls", &self.urls)
            .finish()
    }
}

impl fmt::Debug for ItemEditParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ItemEditParams")
            .field("item", &self.item)
            .field("name", &self.name)
            .field("fields", &REDACTED)
            .field("urls", &self.urls)
            .finish()
    }
}

impl fmt::Debug for TotpSetParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TotpSetParams")
            .field("item", &self.item)
            .field("secret", &REDACTED)
            .finish()
    }
}

impl fmt::Debug for ImportParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportParams")
            .field("format", &self.format)
            .field("path", &self.path)
            .field("folder", &self.folder)
            .field("dry_run", &self.dry_run)
            .field("password", &REDACTED)
            .field("progress", &self.progress)
            .finish()
    }
}

impl fmt::Debug for ImportDataParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportDataParams")
            .field("format", &self.format)
            .field("data_base64", &REDACTED)
            .field("folder", &self.folder)
            .field("dry_run", &self.dry_run)
            .field("password", &REDACTED)
            .finish()
    }
}

impl fmt::Debug for BackupParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackupParams")
            .field("path", &self.path)
            .field("passphrase", &REDACTED)
            .field("pin", &REDACTED)
            .finish()
    }
}

impl fmt::Debug for ExportParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExportParams")
            .field("pin", &REDACTED)
            .field("format", &self.format)
            .field("folder", &self.folder)
            .field("include_trash", &self.include_trash)
            .finish()
    }
}

impl fmt::Debug for RestoreBackupParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestoreBackupParams")
            .field("path", &self.path)
            .field("passphrase", &REDACTED)
            .field("dry_run", &self.dry_run)
            .field("progress", &self.progress)
            .finish()
    }
}

impl fmt::Debug for InviteResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InviteResult")
            .field("code", &REDACTED)
            .field("kind", &self.kind)
            .field("email", &self.email)
            .field("expires_ms", &self.expires_ms)
            .field("addresses", &self.addresses)
            .finish()
    }
}

impl fmt::Debug for JoinStartParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinStartParams")
            .field("code", &REDACTED)
            .field("kind", &self.kind)
            .field("peers", &self.peers)
            .field("pin", &REDACTED)
            .field("device_name", &self.device_name)
            .finish()
    }
}

impl fmt::Debug for JoinFinishParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinFinishParams")
            .field("join_id", &self.join_id)
            .field("pin", &REDACTED)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let join = JoinStartParams {
            code: "coffer-invite-secretcode".into(),
            kind: "user".into(),
            peers: Vec::new(),
            pin: Some("2468".into()),
            device_name: Some("laptop".into()),
        };
        let add = ItemAddParams {
            folder: None,
            item_type: "login".into(),
            name: "bank".into(),
            fields: [("password".to_string(), "hunter2".to_string())].into(),
            urls: Vec::new(),
        };
        let shown = format!("{join:?} {add:?} {:?}", UnlockParams { pin: "2468".into() });
        for secret in ["secretcode", "2468", "hunter2"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("bank") && shown.contains("<redacted>"));
    }
}

mod audit;
pub use audit::*;

// ---- The browser extension (issue 15) ----
//
// The native messaging host (`coffer-native-host`) forwards these and
// nothing else ([`BROWSER_METHODS`]); the replica decides every answer
// from the top-level page's origin (`coffer_crdt::origin`).

/// A page's top-level origin, as the browser reports the tab's URL.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BrowserFindParams {
    pub origin: String,
}

/// A login that may be filled into the page: no secret value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrowserLogin {
    /// The item's full id: what `browser.fill` and `browser.totp` take.
    pub id: String,
    pub name: String,
    pub folder: String,
    pub username: Option<String>,
    pub has_totp: bool,
}

/// One chosen login (its full id) for the page of `origin`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BrowserItemParams {
    pub origin: String,
    pub item: String,
}

/// What is filled into the page (no `Debug`: a password).
#[derive(Clone, Serialize, Deserialize)]
pub struct BrowserFields {
    pub username: Option<String>,
    pub password: Option<String>,
}

/// The linked TOTP code for the 2FA field.
#[derive(Clone, Serialize, Deserialize)]
pub struct BrowserCode {
    pub code: String,
    pub seconds_remaining: u64,
}

/// "Save this login?" confirmed in the popup (no `Debug`: a password).
#[derive(Clone, Serialize, Deserialize)]
pub struct BrowserSaveParams {
    pub origin: String,
    /// The item's name; the page's host when absent or empty.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BrowserSaved {
    pub id: String,
    pub name: String,
    pub folder: String,
}

method!(
    /// The logins whose URLs may be filled into a page of `origin`.
    BrowserFind, "browser.find", BrowserFindParams, Vec<BrowserLogin>
);
method!(
    /// One login's username and password, for a page of `origin` only
    /// (an `autofill` activity record).
    BrowserFill, "browser.fill", BrowserItemParams, BrowserFields
);
method!(
    /// One login's current TOTP code, for a page of `origin` only (an
    /// `autofill` activity record of the field `totp`).
    BrowserTotp, "browser.totp", BrowserItemParams, BrowserCode
);
method!(
    /// Adds a login for `origin` to the Personal folder.
    BrowserSave, "browser.save", BrowserSaveParams, BrowserSaved
);

/// Every method the native messaging host forwards; it refuses the rest.
pub const BROWSER_METHODS: &[&str] = &[
    BrowserFind::NAME,
    BrowserFill::NAME,
    BrowserTotp::NAME,
    BrowserSave::NAME,
];

/// `relay.add`: a keyless relay, by its multiaddr with `/p2p/PEER_ID`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RelayAddParams {
    /// The relay's address(es), each ending in `/p2p/PEER_ID` (one peer).
    pub addrs: Vec<String>,
}

/// `relay.remove`: a relay by its peer id (or its device id in hex).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RelayRemoveParams {
    pub relay: String,
}

/// One relay of the team.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelayInfo {
    /// Its libp2p peer id.
    pub peer_id: String,
    /// Its device id in the roster (its transport key, hex).
    pub device_id: String,
    pub addrs: Vec<String>,
    /// Connected now.
    pub connected: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelayListResult {
    pub relays: Vec<RelayInfo>,
}

/// One team a relay holds (`relay.status`, asked of `cofferd --relay`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelayTeamHeld {
    pub team_id: String,
    pub name: String,
    pub spaces: usize,
    pub envelopes: usize,
    pub bytes: u64,
    /// Held without effect (refused by the acceptance rule).
    pub quarantined: usize,
    /// Devices of the team connected now.
    pub connected: usize,
    /// At its byte limit: new envelopes are not kept.
    pub full: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelayStatusResult {
    /// This relay's peer id (what `coffer relay add` needs, with an address).
    pub peer_id: String,
    pub listen: Vec<String>,
    pub teams: Vec<RelayTeamHeld>,
    /// Connected peers that showed no roster naming this relay (yet).
    pub pending: usize,
    /// Sessions cut for a protocol violation since start.
    pub refused_sessions: u64,
    /// Batches not kept because their team was full, since start.
    pub dropped_full: u64,
    /// The teams its operator accepted (`relay.accept`), hex ids.
    #[serde(default)]
    pub accepted: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RelayAcceptParams {
    /// The team's id (hex, as `coffer team show` prints it).
    pub team: String,
}

method!(
    /// Adds a keyless relay to the team (admins only).
    RelayAdd, "relay.add", RelayAddParams, TeamChangeResult
);
method!(
    /// Removes a relay from the team (admins only).
    RelayRemove, "relay.remove", RelayRemoveParams, TeamChangeResult
);
method!(
    /// The team's relays.
    RelayList, "relay.list", Empty, RelayListResult
);
method!(
    /// What a relay (`cofferd --relay`) holds: asked of the relay itself.
    RelayStatus, "relay.status", Empty, RelayStatusResult
);
method!(
    /// Asked of a relay by its operator: take the team with this id when
    /// one of its devices presents a roster naming this relay.
    RelayAccept, "relay.accept", RelayAcceptParams, RelayStatusResult
);
method!(
    /// Asked of a relay by its operator: no longer accept the team with
    /// this id, and drop everything held of it.
    RelayForget, "relay.forget", RelayAcceptParams, RelayStatusResult
);
