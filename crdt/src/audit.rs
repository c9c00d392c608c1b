//! The audit trail: each device's activity records (an item revealed, a
//! field copied, a TOTP code shown, an unlock, a failed PIN, an invite...)
//! as one hash chain per device, signed by the device key, encrypted to
//! the records' readers.
//!
//! Wire form of a record: postcard of [`RecordBody`] and an Ed25519
//! signature over `SIGNING_DOMAIN || postcard(body)`; its hash is the
//! BLAKE3 of those signed bytes, and each record names its predecessor's
//! hash (`prev`), so a record deleted, reordered or rewritten on a copy
//! shows to [`verify`] as a gap or a fork, and a record cannot be made for
//! another device without its key. The chain is judged on headers alone:
//! a holder verifies without reading a record.
//!
//! Confidentiality: a [`Body::Key`] record starts a key epoch of the chain
//! (a random key sealed to each reader device: the team's admin devices and
//! the writer's own user's devices); the following [`Body::Sealed`] records
//! are encrypted under it (XChaCha20-Poly1305, the header as associated
//! data). A new reader set starts a new key record ([`ChainWriter`]).
//! Pruning leaves a [`Body::Checkpoint`] naming the last pruned record, so
//! that pruning is not taken for tampering.
//!
//! What it is not: no storage, no clock, no randomness it does not receive.
//! Records never hold a secret value: names, ids and the field's name.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};

use crate::crypto::{self, CryptoError, DeviceKeys, FolderKey};
use crate::ids::{DeviceId, ItemId, SpaceId};

/// Version of the record format.
pub const AUDIT_VERSION: u8 = 1;
/// Upper bound on an encoded record; larger input is refused before parsing.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;
/// Most readers one key record may seal to.
pub const MAX_READERS: usize = 512;
/// Most bytes of a name or detail text in an event.
pub const MAX_TEXT: usize = 512;

const SIGNING_DOMAIN: &[u8] = b"coffer/audit/v1\0";
const PAYLOAD_DOMAIN: &[u8] = b"coffer/audit-payload/v1\0";

/// The hash of a record (BLAKE3 of its signed bytes).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RecordHash(pub [u8; 32]);

impl fmt::Debug for RecordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordHash({})", hex::encode(&self.0[..6]))
    }
}

impl RecordHash {
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

/// What happened. Variant order is wire format: append only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Action {
    /// An item's secret fields were shown (`get`/`show` with the secret).
    Reveal,
    /// A field's value was copied to the clipboard.
    Copy,
    /// A TOTP code was shown.
    TotpShow,
    /// A TOTP code was copied.
    TotpCopy,
    /// Filled into a page (the browser extension, later).
    Autofill,
    /// Items exported in plaintext.
    Export,
    /// An encrypted backup written.
    Backup,
    /// An item's history was viewed.
    HistoryView,
    Unlock,
    /// A wrong PIN was tried.
    UnlockFailed,
    Lock,
    InviteCreated,
    /// A wrong invite code was tried against this device.
    InviteWrongCode,
    JoinConfirmed,
    JoinRejected,
    DeviceLinked,
    /// A secret read by reference (`coffer read`, `run`, `inject`).
    SecretRead,
}

impl Action {
    pub const ALL: [Action; 17] = [
        Action::Reveal,
        Action::Copy,
        Action::TotpShow,
        Action::TotpCopy,
        Action::Autofill,
        Action::Export,
        Action::Backup,
        Action::HistoryView,
        Action::Unlock,
        Action::UnlockFailed,
        Action::Lock,
        Action::InviteCreated,
        Action::InviteWrongCode,
        Action::JoinConfirmed,
        Action::JoinRejected,
        Action::DeviceLinked,
        Action::SecretRead,
    ];

    /// The name the CLI and JSON use.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Reveal => "reveal",
            Action::Copy => "copy",
            Action::TotpShow => "totp-show",
            Action::TotpCopy => "totp-copy",
            Action::Autofill => "autofill",
            Action::Export => "export",
            Action::Backup => "backup",
            Action::HistoryView => "history-view",
            Action::Unlock => "unlock",
            Action::UnlockFailed => "unlock-failed",
            Action::Lock => "lock",
            Action::InviteCreated => "invite-created",
            Action::InviteWrongCode => "invite-wrong-code",
            Action::JoinConfirmed => "join-confirmed",
            Action::JoinRejected => "join-rejected",
            Action::DeviceLinked => "device-linked",
            Action::SecretRead => "secret-read",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// A use of an item's secret (what `coffer audit exposure` counts).
    pub fn is_use(self) -> bool {
        matches!(
            self,
            Action::Reveal
                | Action::Copy
                | Action::TotpShow
                | Action::TotpCopy
                | Action::Autofill
                | Action::SecretRead
                | Action::HistoryView
        )
    }
}

/// The readable part of a record: who did what to which item. Never a
/// secret value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// The actor user's email (as the roster names them), or empty.
    pub user: String,
    pub action: Action,
    pub folder: Option<SpaceId>,
    pub folder_name: Option<String>,
    pub item: Option<ItemId>,
    /// The item's name at the time.
    pub item_name: Option<String>,
    /// The field's name (`password`, `totp`, ...).
    pub field: Option<String>,
    /// A short detail (an export's format, an invitee's email).
    pub detail: Option<String>,
}

impl AuditEvent {
    /// An event with only a user and an action.
    pub fn new(user: &str, action: Action) -> AuditEvent {
        AuditEvent {
            user: user.to_string(),
            action,
            folder: None,
            folder_name: None,
            item: None,
            item_name: None,
            field: None,
            detail: None,
        }
    }

    fn within_bounds(&self) -> bool {
        let ok = |s: &Option<String>| s.as_ref().is_none_or(|s| s.len() <= MAX_TEXT);
        self.user.len() <= MAX_TEXT
            && ok(&self.folder_name)
            && ok(&self.item_name)
            && ok(&self.field)
            && ok(&self.detail)
    }

    /// Texts cut to [`MAX_TEXT`] bytes (at a character boundary).
    fn bounded(mut self) -> AuditEvent {
        fn cut(s: &mut String) {
            if s.len() > MAX_TEXT {
                let mut end = MAX_TEXT;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                s.truncate(end);
            }
        }
        cut(&mut self.user);
        for s in [
            &mut self.folder_name,
            &mut self.item_name,
            &mut self.field,
            &mut self.detail,
        ]
        .into_iter()
        .flatten()
        {
            cut(s);
        }
        self
    }
}

/// What a record carries. Variant order is wire format: append only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// A new key epoch of the chain: its key sealed to each reader device.
    Key { readers: Vec<SealedKey> },
    /// An [`AuditEvent`] encrypted under the key of the chain's record
    /// `key_seq` (a [`Body::Key`]).
    Sealed {
        key_seq: u64,
        #[serde(with = "serde_bytes")]
        ciphertext: Vec<u8>,
    },
    /// The chain's records up to `through_seq` (whose hash is
    /// `through_hash`) were pruned, as older than `before_ms`.
    Checkpoint {
        through_seq: u64,
        through_hash: RecordHash,
        before_ms: i64,
    },
    /// An [`AuditEvent`] about a folder that devices outside the chain's
    /// readers may read too (that folder's Folder Managers): encrypted
    /// under a key of its own (`ciphertext`), which is encrypted under the
    /// chain key of record `key_seq` (`record_key`) and sealed to each
    /// `extra` device.
    Shared {
        key_seq: u64,
        #[serde(with = "serde_bytes")]
        record_key: Vec<u8>,
        extra: Vec<SealedKey>,
        #[serde(with = "serde_bytes")]
        ciphertext: Vec<u8>,
    },
}

/// The chain key sealed to one reader device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedKey {
    pub device: DeviceId,
    #[serde(with = "serde_bytes")]
    pub sealed: Vec<u8>,
}

/// Everything a record says, without its signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordBody {
    pub version: u8,
    pub device: DeviceId,
    /// Counts the device's records from 1.
    pub seq: u64,
    /// The hash of the device's previous record (None iff seq == 1).
    pub prev: Option<RecordHash>,
    /// The writer's clock, ms since the Unix epoch.
    pub time_ms: i64,
    pub body: Body,
}

#[derive(Serialize, Deserialize)]
struct SignedRecord {
    body: RecordBody,
    #[serde(with = "serde_bytes")]
    signature: Vec<u8>,
}

/// A decoded record with its hash and wire bytes. The signature is checked
/// by [`Record::verify_signature`], not by decoding.
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    body: RecordBody,
    signature: [u8; 64],
    hash: RecordHash,
    bytes: Vec<u8>,
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Record({} #{} {:?})",
            self.body.device.short(),
            self.body.seq,
            self.hash
        )
    }
}

/// Why bytes are not a record.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordError {
    /// Larger than [`MAX_RECORD_BYTES`].
    #[error("audit record of {len} bytes exceeds the {max} byte limit")]
    TooLarge { len: usize, max: usize },
    /// The bytes are not a record.
    #[error("malformed audit record")]
    Malformed,
    #[error("unsupported audit record version {0}")]
    UnsupportedVersion(u8),
    /// Valid postcard, but not the one canonical encoding.
    #[error("non-canonical audit record encoding")]
    NonCanonical,
    /// The structure is inconsistent.
    #[error("invalid audit record: {0}")]
    Invalid(&'static str),
}

impl RecordBody {
    fn signing_bytes(&self) -> Vec<u8> {
        let mut msg = SIGNING_DOMAIN.to_vec();
        msg.extend_from_slice(
            &postcard::to_stdvec(self).expect("serialising to a Vec cannot fail"),
        );
        msg
    }

    fn check(&self) -> Result<(), RecordError> {
        if self.version != AUDIT_VERSION {
            return Err(RecordError::UnsupportedVersion(self.version));
        }
        if self.seq == 0 {
            return Err(RecordError::Invalid("seq starts at 1"));
        }
        if (self.seq == 1) != self.prev.is_none() {
            return Err(RecordError::Invalid(
                "prev must be present exactly when seq > 1",
            ));
        }
        match &self.body {
            Body::Key { readers } => {
                if readers.is_empty() || readers.len() > MAX_READERS {
                    return Err(RecordError::Invalid(
                        "a key record seals to 1..=512 readers",
                    ));
                }
                if readers.windows(2).any(|w| w[0].device >= w[1].device) {
                    return Err(RecordError::Invalid("readers sorted, no duplicates"));
                }
            }
            Body::Sealed { key_seq, .. } => {
                if *key_seq == 0 || *key_seq >= self.seq {
                    return Err(RecordError::Invalid("a sealed record names an earlier key"));
                }
            }
            Body::Shared { key_seq, extra, .. } => {
                if *key_seq == 0 || *key_seq >= self.seq {
                    return Err(RecordError::Invalid("a sealed record names an earlier key"));
                }
                if extra.is_empty() || extra.len() > MAX_READERS {
                    return Err(RecordError::Invalid(
                        "a shared record seals to 1..=512 more readers",
                    ));
                }
                if extra.windows(2).any(|w| w[0].device >= w[1].device) {
                    return Err(RecordError::Invalid("readers sorted, no duplicates"));
                }
            }
            Body::Checkpoint { through_seq, .. } => {
                if *through_seq == 0 || *through_seq >= self.seq {
                    return Err(RecordError::Invalid("a checkpoint names earlier records"));
                }
            }
        }
        Ok(())
    }
}

impl Record {
    /// Signs `body` with `keys`.
    pub fn sign(body: RecordBody, keys: &DeviceKeys) -> Record {
        let signing = body.signing_bytes();
        let signature = keys.sign(&signing);
        let bytes = postcard::to_stdvec(&SignedRecord {
            body: body.clone(),
            signature: signature.to_vec(),
        })
        .expect("serialising to a Vec cannot fail");
        Record {
            body,
            signature,
            hash: RecordHash(*blake3::hash(&signing).as_bytes()),
            bytes,
        }
    }

    /// Decodes untrusted bytes. Never panics; bounded by [`MAX_RECORD_BYTES`].
    pub fn decode(bytes: &[u8]) -> Result<Record, RecordError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(RecordError::TooLarge {
                len: bytes.len(),
                max: MAX_RECORD_BYTES,
            });
        }
        let (signed, rest): (SignedRecord, _) =
            postcard::take_from_bytes(bytes).map_err(|_| RecordError::Malformed)?;
        if !rest.is_empty() {
            return Err(RecordError::Malformed);
        }
        let signature: [u8; 64] = signed
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| RecordError::Invalid("signature must be 64 bytes"))?;
        signed.body.check()?;
        let canonical = postcard::to_stdvec(&SignedRecord {
            body: signed.body.clone(),
            signature: signature.to_vec(),
        })
        .map_err(|_| RecordError::Malformed)?;
        if canonical != bytes {
            return Err(RecordError::NonCanonical);
        }
        Ok(Record {
            hash: RecordHash(*blake3::hash(&signed.body.signing_bytes()).as_bytes()),
            body: signed.body,
            signature,
            bytes: canonical,
        })
    }

    pub fn verify_signature(&self) -> bool {
        crypto::verify(
            &self.body.device,
            &self.body.signing_bytes(),
            &self.signature,
        )
    }

    pub fn body(&self) -> &RecordBody {
        &self.body
    }
    pub fn device(&self) -> DeviceId {
        self.body.device
    }
    pub fn seq(&self) -> u64 {
        self.body.seq
    }
    pub fn time_ms(&self) -> i64 {
        self.body.time_ms
    }
    pub fn hash(&self) -> RecordHash {
        self.hash
    }
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The chain key of a [`Body::Key`] record, if sealed to `keys`' device.
    pub fn open_key(&self, keys: &DeviceKeys) -> Option<FolderKey> {
        let Body::Key { readers } = &self.body.body else {
            return None;
        };
        let me = keys.device_id();
        let entry = readers.iter().find(|r| r.device == me)?;
        keys.open_folder_key(&entry.sealed).ok()
    }

    /// The event of a [`Body::Sealed`] or [`Body::Shared`] record, under
    /// its chain key.
    pub fn open_event(&self, key: &FolderKey) -> Result<AuditEvent, CryptoError> {
        let aad = aad(&self.body.device, self.body.seq, self.body.time_ms);
        match &self.body.body {
            Body::Sealed { ciphertext, .. } => decode_event(&key.decrypt(ciphertext, &aad)?),
            Body::Shared {
                record_key,
                ciphertext,
                ..
            } => {
                let record_key = record_key_from(&key.decrypt(record_key, &aad)?)?;
                decode_event(&record_key.decrypt(ciphertext, &aad)?)
            }
            _ => Err(CryptoError::Decrypt),
        }
    }

    /// The event of a [`Body::Shared`] record sealed to `keys`' device as
    /// one of its extra readers.
    pub fn open_shared(&self, keys: &DeviceKeys) -> Option<AuditEvent> {
        let Body::Shared {
            extra, ciphertext, ..
        } = &self.body.body
        else {
            return None;
        };
        let me = keys.device_id();
        let entry = extra.iter().find(|r| r.device == me)?;
        let record_key = keys.open_folder_key(&entry.sealed).ok()?;
        let aad = aad(&self.body.device, self.body.seq, self.body.time_ms);
        decode_event(&record_key.decrypt(ciphertext, &aad).ok()?).ok()
    }

    /// The last pruned seq a [`Body::Checkpoint`] names.
    pub fn pruned_through(&self) -> Option<u64> {
        match &self.body.body {
            Body::Checkpoint { through_seq, .. } => Some(*through_seq),
            _ => None,
        }
    }

    /// The key record this record's event is sealed under.
    pub fn key_seq(&self) -> Option<u64> {
        match &self.body.body {
            Body::Sealed { key_seq, .. } | Body::Shared { key_seq, .. } => Some(*key_seq),
            _ => None,
        }
    }
}

fn decode_event(plain: &[u8]) -> Result<AuditEvent, CryptoError> {
    let event: AuditEvent = postcard::from_bytes(plain).map_err(|_| CryptoError::Decrypt)?;
    if !event.within_bounds() {
        return Err(CryptoError::Decrypt);
    }
    Ok(event)
}

fn record_key_from(plain: &[u8]) -> Result<FolderKey, CryptoError> {
    let bytes: [u8; 32] = plain.try_into().map_err(|_| CryptoError::Decrypt)?;
    Ok(FolderKey::from_bytes(bytes))
}

fn aad(device: &DeviceId, seq: u64, time_ms: i64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(PAYLOAD_DOMAIN.len() + 48);
    aad.extend_from_slice(PAYLOAD_DOMAIN);
    aad.extend_from_slice(&device.0);
    aad.extend_from_slice(&seq.to_be_bytes());
    aad.extend_from_slice(&time_ms.to_be_bytes());
    aad
}

/// A reader of a device's chain: a device and its X25519 key.
pub type Reader = (DeviceId, [u8; 32]);

/// The writing end of this device's chain: where it stands and the key of
/// its current epoch.
pub struct ChainWriter {
    device: DeviceId,
    seq: u64,
    prev: Option<RecordHash>,
    /// The current key record's seq, its key and readers.
    key: Option<(u64, FolderKey, BTreeSet<DeviceId>)>,
}

impl fmt::Debug for ChainWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainWriter({} at {})", self.device.short(), self.seq)
    }
}

impl ChainWriter {
    /// A chain with no record yet.
    pub fn new(device: DeviceId) -> ChainWriter {
        ChainWriter {
            device,
            seq: 0,
            prev: None,
            key: None,
        }
    }

    /// Where the chain stands after `last` (its newest record held), with
    /// `key` its newest key record, reopened with the device's keys.
    pub fn resume(keys: &DeviceKeys, last: Option<&Record>, key: Option<&Record>) -> ChainWriter {
        let device = keys.device_id();
        let mut w = ChainWriter::new(device);
        if let Some(last) = last.filter(|r| r.device() == device) {
            w.seq = last.seq();
            w.prev = Some(last.hash());
        }
        if let Some(k) = key.filter(|r| r.device() == device && r.seq() <= w.seq) {
            if let (Some(opened), Body::Key { readers }) = (k.open_key(keys), &k.body.body) {
                let set = readers.iter().map(|r| r.device).collect();
                w.key = Some((k.seq(), opened, set));
            }
        }
        w
    }

    /// The seq of the chain's newest record (0 if none).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    fn push(&mut self, keys: &DeviceKeys, time_ms: i64, body: Body) -> Record {
        let record = Record::sign(
            RecordBody {
                version: AUDIT_VERSION,
                device: self.device,
                seq: self.seq + 1,
                prev: self.prev,
                time_ms,
                body,
            },
            keys,
        );
        self.seq += 1;
        self.prev = Some(record.hash());
        record
    }

    /// Appends `event`: a new key record first when the readers changed
    /// (the writer is always one). `extra` are devices outside the chain's
    /// readers that may read this one event (a folder's Folder Managers):
    /// when any, the record is a [`Body::Shared`]. Returns the new records
    /// in order.
    pub fn append(
        &mut self,
        keys: &DeviceKeys,
        readers: &[Reader],
        extra: &[Reader],
        event: AuditEvent,
        now_ms: i64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<Record>, CryptoError> {
        let mut all: BTreeMap<DeviceId, [u8; 32]> = readers.iter().copied().collect();
        all.insert(self.device, keys.exchange_public());
        while all.len() > MAX_READERS {
            all.pop_last();
        }
        let set: BTreeSet<DeviceId> = all.keys().copied().collect();
        let mut out = Vec::new();
        let current = self.key.as_ref().filter(|(_, _, r)| *r == set);
        if current.is_none() {
            let key = FolderKey::generate(rng);
            let mut sealed = Vec::with_capacity(all.len());
            for (device, exchange) in &all {
                sealed.push(SealedKey {
                    device: *device,
                    sealed: key.seal_to(exchange, rng)?,
                });
            }
            let record = self.push(keys, now_ms, Body::Key { readers: sealed });
            self.key = Some((record.seq(), key, set));
            out.push(record);
        }
        let (key_seq, key, set) = self.key.as_ref().expect("set just above");
        let key_seq = *key_seq;
        let plain = zeroize::Zeroizing::new(
            postcard::to_stdvec(&event.bounded()).expect("serialising to a Vec cannot fail"),
        );
        let aad = aad(&self.device, self.seq + 1, now_ms);
        let extra: BTreeMap<DeviceId, [u8; 32]> = extra
            .iter()
            .filter(|(d, _)| !set.contains(d))
            .take(MAX_READERS)
            .copied()
            .collect();
        let body = if extra.is_empty() {
            Body::Sealed {
                key_seq,
                ciphertext: key.encrypt(&plain, &aad, rng),
            }
        } else {
            let record_key = FolderKey::generate(rng);
            let mut sealed = Vec::with_capacity(extra.len());
            for (device, exchange) in &extra {
                sealed.push(SealedKey {
                    device: *device,
                    sealed: record_key.seal_to(exchange, rng)?,
                });
            }
            Body::Shared {
                key_seq,
                record_key: key.encrypt(record_key.expose_secret(), &aad, rng),
                extra: sealed,
                ciphertext: record_key.encrypt(&plain, &aad, rng),
            }
        };
        out.push(self.push(keys, now_ms, body));
        Ok(out)
    }

    /// A checkpoint saying the records up to `through` were pruned.
    pub fn checkpoint(
        &mut self,
        keys: &DeviceKeys,
        through: (u64, RecordHash),
        before_ms: i64,
        now_ms: i64,
    ) -> Record {
        self.push(
            keys,
            now_ms,
            Body::Checkpoint {
                through_seq: through.0,
                through_hash: through.1,
                before_ms,
            },
        )
    }
}

/// A stored row as a holder keeps it: the device and seq it was filed
/// under, and the bytes.
#[derive(Clone, Debug)]
pub struct Row {
    pub device: DeviceId,
    pub seq: u64,
    pub bytes: Vec<u8>,
}

/// What [`verify`] found wrong in a chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Finding {
    /// Records `from..=to` of the device are missing (not pruned under a
    /// checkpoint).
    Gap {
        device: DeviceId,
        from: u64,
        to: u64,
    },
    /// Two different records hold the same place of the chain, or a record
    /// does not follow the record held before it.
    Fork { device: DeviceId, seq: u64 },
    /// A row's bytes are not a record the device signed, or not filed where
    /// they claim (a record copied from another device or seq).
    BadSignature { device: DeviceId, seq: u64 },
}

impl Finding {
    pub fn device(&self) -> DeviceId {
        match self {
            Finding::Gap { device, .. }
            | Finding::Fork { device, .. }
            | Finding::BadSignature { device, .. } => *device,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Finding::Gap { .. } => "gap",
            Finding::Fork { .. } => "fork",
            Finding::BadSignature { .. } => "bad-signature",
        }
    }
}

/// One device's chain as [`verify`] saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainReport {
    pub device: DeviceId,
    /// Records held that verified.
    pub records: u64,
    /// The highest seq held.
    pub last_seq: u64,
    /// Records up to this seq were pruned under a checkpoint.
    pub pruned_through: u64,
    pub findings: Vec<Finding>,
}

/// Per seq of one chain: the distinct records held there (hash, prev).
type Held = BTreeMap<u64, Vec<(RecordHash, Option<RecordHash>)>>;

/// Checks every chain of `rows` (any order): each row decodes, is signed
/// by its device and filed under its own device and seq; each seq is held
/// once and follows its predecessor's hash; no seq is missing but those a
/// checkpoint covers. Honest chains give no finding.
pub fn verify(rows: impl IntoIterator<Item = Row>) -> Vec<ChainReport> {
    // Per device: seq -> the distinct records held there.
    let mut chains: BTreeMap<DeviceId, Held> = BTreeMap::new();
    let mut bad: BTreeMap<DeviceId, Vec<Finding>> = BTreeMap::new();
    let mut pruned: BTreeMap<DeviceId, (u64, Option<RecordHash>)> = BTreeMap::new();
    for row in rows {
        let ok = Record::decode(&row.bytes)
            .ok()
            .filter(|r| r.device() == row.device && r.seq() == row.seq && r.verify_signature());
        let Some(record) = ok else {
            bad.entry(row.device)
                .or_default()
                .push(Finding::BadSignature {
                    device: row.device,
                    seq: row.seq,
                });
            chains.entry(row.device).or_default();
            continue;
        };
        if let Body::Checkpoint {
            through_seq,
            through_hash,
            ..
        } = &record.body.body
        {
            let p = pruned.entry(row.device).or_insert((0, None));
            if *through_seq > p.0 {
                *p = (*through_seq, Some(*through_hash));
            }
        }
        let at = chains
            .entry(row.device)
            .or_default()
            .entry(row.seq)
            .or_default();
        if !at.iter().any(|(h, _)| *h == record.hash()) {
            at.push((record.hash(), record.body.prev));
        }
    }
    let mut out = Vec::new();
    for (device, chain) in chains {
        let mut findings = bad.remove(&device).unwrap_or_default();
        let bad_seqs: BTreeSet<u64> = findings
            .iter()
            .filter_map(|f| match f {
                Finding::BadSignature { seq, .. } => Some(*seq),
                _ => None,
            })
            .collect();
        let (through, through_hash) = pruned.get(&device).copied().unwrap_or((0, None));
        let mut seqs: BTreeSet<u64> = chain.keys().copied().collect();
        seqs.extend(bad_seqs.iter().copied());
        let mut expect = through + 1;
        let mut records = 0;
        for seq in seqs {
            let held = chain.get(&seq);
            records += held.map_or(0, |h| h.len() as u64);
            if seq <= through {
                continue;
            }
            if seq > expect {
                findings.push(Finding::Gap {
                    device,
                    from: expect,
                    to: seq - 1,
                });
            }
            expect = seq + 1;
            let Some(held) = held else { continue };
            if held.len() > 1 {
                findings.push(Finding::Fork { device, seq });
                continue;
            }
            let Some((_, prev)) = held.first() else {
                continue;
            };
            // The predecessor: the checkpoint's last pruned record, or the
            // one record held at seq - 1 (a bad or forked one says nothing).
            let before = if seq == through + 1 && through > 0 {
                Some(through_hash)
            } else {
                chain
                    .get(&(seq - 1))
                    .filter(|h| h.len() == 1)
                    .map(|h| Some(h[0].0))
            };
            if let Some(expected) = before {
                if seq > 1 && *prev != expected {
                    findings.push(Finding::Fork { device, seq });
                }
            }
        }
        findings.sort_by_key(|f| match f {
            Finding::Gap { from, .. } => *from,
            Finding::Fork { seq, .. } | Finding::BadSignature { seq, .. } => *seq,
        });
        let last_seq = chain.keys().next_back().copied().unwrap_or(0);
        out.push(ChainReport {
            device,
            records,
            last_seq,
            pruned_through: through,
            findings,
        });
    }
    out
}

#[cfg(test)]
mod tests;
