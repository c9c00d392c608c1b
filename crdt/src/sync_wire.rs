//! The sync protocol's messages and their bounds: what both wires
//! (`/coffer/sync/3`, `/coffer/sync/2`) carry, as plain data. No replica,
//! no IO: `replica::sync` decides what to send and takes in what arrives;
//! the daemon frames and decodes (`net/protocol.rs`). Kept apart so that
//! the fuzzer compiles it alone (`fuzz/fuzz_targets/sync_decode.rs`).

use serde::{Deserialize, Serialize};

use crate::ids::{DeviceId, EnvelopeId, SpaceId};

/// Most records one `AuditRecords` message carries.
pub const MAX_AUDIT_BATCH: usize = 2048;
/// Most chain heads one `AuditHeads` message carries.
pub const MAX_AUDIT_HEADS: usize = 8192;
/// The first sync version that knows the audit messages.
pub const AUDIT_SINCE_VERSION: u16 = 4;

/// The version a [`SyncMessage::Hello`] carries (2: envelope format 3,
/// chain heads in summaries; 3: [`SyncMessage::Time`]; 4: the audit
/// trail's [`SyncMessage::AuditHeads`] and [`SyncMessage::AuditRecords`]).
pub const SYNC_VERSION: u16 = 4;
/// The lowest version a peer's `Hello` may carry: a version-2 peer syncs
/// like any other, it is only never sent what it does not know.
pub const MIN_SYNC_VERSION: u16 = 2;
/// The first version that knows [`SyncMessage::Time`].
pub const TIME_SINCE_VERSION: u16 = 3;
/// A batch of envelopes is cut at this size (or [`MAX_BATCH_ENVELOPES`]).
pub const MAX_BATCH_BYTES: usize = 1 << 20;
pub const MAX_BATCH_ENVELOPES: usize = 8192;
/// Most spaces one summary may describe.
pub const MAX_SPACES: usize = 1024;
/// Most chain heads one space summary may carry.
pub const MAX_TIPS: usize = 8192;

/// What a connection's outbound stream negotiated (libp2p protocol
/// selection: the daemon offers `/coffer/sync/3`, then `/coffer/sync/2`),
/// so what the peer understands before anything is written. The daemon
/// tells the replica when a session opens; the replica decides what to
/// send from it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SyncWire {
    /// `/coffer/sync/2`: `Hello` carries every chain head of every shared
    /// space (an older peer reads nothing else).
    #[default]
    V2,
    /// `/coffer/sync/3`: `HelloDigest` carries one digest of everything
    /// shared; heads go out only for the spaces whose digests differ.
    V3,
}

impl SyncWire {
    /// The libp2p protocol name of the wire.
    pub fn protocol_name(self) -> &'static str {
        match self {
            SyncWire::V2 => "/coffer/sync/2",
            SyncWire::V3 => "/coffer/sync/3",
        }
    }
}

/// A chain head: the last envelope of one author's chain in one space that
/// a peer holds (one per chain, unless its author forked it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tip {
    pub space: SpaceId,
    pub author: DeviceId,
    pub seq: u64,
    pub id: EnvelopeId,
    /// The holder holds every ancestor of it too (false: a gap below it).
    pub linked: bool,
}

/// What a peer holds of one space: its chain heads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpaceSummary {
    pub space: SpaceId,
    pub tips: Vec<Tip>,
}

/// Why a peer is being cut off (or said it closes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerErrorCode {
    /// The frame or message could not be decoded, or broke a bound.
    Malformed,
    /// An envelope failed its signature or does not belong to the space.
    InvalidEnvelope,
    /// The `Hello` named a version this side does not speak.
    Version,
    /// This device does not sync with the peer.
    NotAllowed,
}

/// One message of the sync protocol. Variant order is wire format: append only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncMessage {
    /// First message on every outbound stream: the version, and the heads
    /// of each space the sender shares with the receiver.
    Hello {
        version: u16,
        spaces: Vec<SpaceSummary>,
    },
    /// "Here is what I hold now; send what I lack."
    Summary { spaces: Vec<SpaceSummary> },
    /// Envelopes of one space, control ops first, each chain in seq order.
    Envelopes {
        space: SpaceId,
        #[serde(with = "envelope_list")]
        envelopes: Vec<Vec<u8>>,
    },
    /// Everything the receiver lacked of `space` (per its last summary) was sent.
    Caught { space: SpaceId },
    /// The sender is closing the connection, and why.
    Error { code: PeerErrorCode, text: String },
    /// The sender's wall clock as it sent this (ms since the Unix epoch):
    /// sent once per session, after the receiver's `Hello` announced
    /// [`TIME_SINCE_VERSION`] or later, so the receiver can tell how far
    /// the two clocks are apart (`coffer doctor`; TOTP codes and audit
    /// times depend on clocks). The transport's business: the replica
    /// takes no decision on it and ignores it.
    Time { unix_ms: i64 },
    /// The newest seq of each audit chain the sender holds (once per
    /// session, to a peer whose `Hello` announced
    /// [`AUDIT_SINCE_VERSION`]): send the records above them that I
    /// may read.
    AuditHeads { heads: Vec<(DeviceId, u64)> },
    /// Audit records (`crate::audit::Record` bytes), each chain in seq order.
    AuditRecords {
        #[serde(with = "envelope_list")]
        records: Vec<Vec<u8>>,
    },
    /// `/coffer/sync/3` only: the first message on the stream instead of
    /// `Hello`, of constant size: the version, and one digest of the chain
    /// heads of every space the sender shares with the receiver
    /// (`Replica::sync_digest`). Equal digests: the two hold the same,
    /// nothing more is said but `Caught`. Different: each side sends its
    /// `SpaceDigests`.
    HelloDigest { version: u16, digest: [u8; 32] },
    /// `/coffer/sync/3` only: per space the sender shares with the
    /// receiver, the digest of its chain heads. The receiver answers with
    /// `Tips` for the spaces whose digests differ from its own (and with
    /// its own `SpaceDigests` if it sent none since the last hello).
    SpaceDigests { spaces: Vec<(SpaceId, [u8; 32])> },
    /// `/coffer/sync/3` only: the chain heads of some spaces (a `Summary`
    /// of these spaces alone; what the receiver knows of the others stays).
    /// Answered by the receiver's own `Tips` of a space it did not send yet.
    Tips { spaces: Vec<SpaceSummary> },
}

/// Envelopes as byte strings (serde_bytes for each element).
mod envelope_list {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_bytes::{ByteBuf, Bytes};

    pub fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        let refs: Vec<&Bytes> = v.iter().map(|b| Bytes::new(b)).collect();
        refs.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let bufs: Vec<ByteBuf> = Vec::deserialize(d)?;
        Ok(bufs.into_iter().map(ByteBuf::into_vec).collect())
    }
}

impl SyncMessage {
    /// Whether the message keeps within the protocol's bounds.
    pub fn within_bounds(&self) -> bool {
        let spaces_ok = |s: &[SpaceSummary]| {
            s.len() <= MAX_SPACES && s.iter().all(|x| x.tips.len() <= MAX_TIPS)
        };
        match self {
            SyncMessage::Hello { spaces, .. }
            | SyncMessage::Summary { spaces }
            | SyncMessage::Tips { spaces } => spaces_ok(spaces),
            SyncMessage::SpaceDigests { spaces } => spaces.len() <= MAX_SPACES,
            SyncMessage::HelloDigest { .. } => true,
            SyncMessage::Envelopes { envelopes, .. } => envelopes.len() <= MAX_BATCH_ENVELOPES,
            SyncMessage::Error { text, .. } => text.len() <= 512,
            SyncMessage::Caught { .. } | SyncMessage::Time { .. } => true,
            SyncMessage::AuditHeads { heads } => heads.len() <= MAX_AUDIT_HEADS,
            SyncMessage::AuditRecords { records } => records.len() <= MAX_AUDIT_BATCH,
        }
    }
}
