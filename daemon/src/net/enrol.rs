//! Enrolment: a new device joins a team (`coffer invite` / `coffer join`),
//! or a user's new laptop joins that user (`coffer device link` / `coffer
//! device join`), with a one-time code, over `/coffer/enrol/1` streams.
//!
//! - [`InviteCode`]: inviter device id, invite id and a 128-bit secret,
//!   base32 with a `coffer-invite-` prefix and a 2-byte check. The parser
//!   takes untrusted input: bounded, never panics.
//! - The channel: `Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s` (snow) keyed from
//!   the secret, its prologue binding both libp2p identities; the joiner
//!   proves its device key again inside it; both sides show a 6-digit
//!   verification code derived from the handshake hash.
//! - [`InviteTable`]: the inviter's open invites (in memory only: a daemon
//!   restart cancels them) and the joins waiting for confirmation.
//! - [`serve`] (inviter) and [`join`] (joiner) run the protocol over any
//!   byte stream (a libp2p stream, or an in-memory pipe in tests);
//!   [`connect`] is the joiner's short-lived swarm.
//!
//! The wire format is `docs/protocol.md`, "Enrolment".

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use coffer_crdt::{DeviceId, DeviceKeys};
use data_encoding::BASE32_NOPAD;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol};
use rand_core::CryptoRngCore;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use tokio::sync::oneshot;
use tracing::{debug, info};
use zeroize::Zeroizing;

use super::discovery::SERVICE_TYPE;
use super::peer_id_of;
use super::protocol::NOISE_PROLOGUE;

/// The stream protocol.
pub const PROTOCOL_NAME: &str = "/coffer/enrol/1";
/// What every code starts with (either case).
pub const CODE_PREFIX: &str = "coffer-invite-";
const CODE_VERSION: u8 = 1;
/// version, inviter device id, invite id, secret, check.
const CODE_BYTES: usize = 1 + 32 + 8 + 16 + 2;
/// Longer input is not a code (a code is about 110 characters).
pub const MAX_CODE_CHARS: usize = 512;

const NOISE_PARAMS: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";
const PSK_CONTEXT: &str = "coffer 2026 invite psk v1";
const VERIFY_CONTEXT: &str = "coffer 2026 verification code v1";
const CHECK_CONTEXT: &str = "coffer 2026 invite code check v1";
const PROOF_DOMAIN: &[u8] = b"coffer/enrol/1 device proof";
const PROLOGUE: &[u8] = b"coffer/enrol/1";

/// Noise's limit on one message.
const NOISE_MAX: usize = 65535;
const AEAD_TAG: usize = 16;
/// Plaintext bytes of one transport chunk (one byte says whether more follow).
const CHUNK: usize = NOISE_MAX - AEAD_TAG - 1;
/// A frame: tag byte + (invite id +) one Noise message.
pub const MAX_FRAME_BYTES: usize = 1 + 8 + NOISE_MAX;
/// One application message, reassembled from chunks.
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;
/// Names and emails in the messages.
pub const MAX_NAME: usize = 256;
/// Roster envelopes in an admission.
pub const MAX_ROSTER_ENVELOPES: usize = 65_536;
/// Wrong-secret handshakes after which an invite is cancelled.
pub const MAX_FAILURES: u8 = 3;
/// Open (unused, unexpired) invites at a time.
pub const MAX_OPEN_INVITES: usize = 64;
/// Invites remembered (open, used or cancelled) at a time.
const MAX_KEPT_INVITES: usize = 256;
/// Joins waiting for confirmation at a time.
pub const MAX_PENDING: usize = 16;
/// Bound on each handshake step.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a handshaken join waits for the inviter's decision.
pub const DECISION_TIMEOUT: Duration = Duration::from_secs(600);
/// How long an unknown peer's connection is kept to start an enrolment.
pub const GUEST_GRACE: Duration = Duration::from_secs(60);
/// Unknown peers' connections kept at a time.
pub const MAX_GUESTS: usize = 16;
/// Of which from one source address: throwaway identities from one host
/// cannot hold every slot while a real joiner waits.
pub const MAX_GUESTS_PER_ADDRESS: usize = 2;
/// Enrolment streams one peer may have served at once.
pub const MAX_STREAMS_PER_PEER: usize = 2;
/// The longest `--expires`.
pub const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// The default `--expires`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

const TAG_HELLO: u8 = 0;
const TAG_NOISE: u8 = 1;
const TAG_REFUSE: u8 = 2;

pub fn protocol() -> StreamProtocol {
    StreamProtocol::new(PROTOCOL_NAME)
}

/// Why an enrolment failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnrolError {
    /// The text is not an invite code (what is wrong with it).
    #[error("not an invite code: {0}")]
    BadCode(&'static str),
    /// The inviter has no invite with this id.
    #[error("no open invite matches this code (a wrong code, or the inviter's daemon restarted): ask for a new one")]
    UnknownInvite,
    /// The secret was wrong.
    #[error("wrong invite code")]
    WrongCode,
    #[error("this invite code has expired: ask for a new one")]
    Expired,
    #[error("this invite code was already used: ask for a new one")]
    Used,
    /// Cancelled after [`MAX_FAILURES`] wrong secrets.
    #[error(
        "this invite code was cancelled after {MAX_FAILURES} failed attempts: ask for a new one"
    )]
    Burnt,
    #[error("the inviter has too many joins waiting: try again later")]
    Busy,
    #[error("the inviter rejected this join (did the verification codes match?)")]
    Rejected,
    /// The inviter cancelled the invite (`coffer invite cancel`).
    #[error("this invite code was cancelled by the inviter: ask for a new one")]
    Cancelled,
    /// The inviter answered (its key proved) but takes no enrolments: it
    /// holds no invite now, so this one was cancelled by a restart of its
    /// daemon or closed over [`RETRY_WINDOW`] ago (or all its guest slots
    /// are taken).
    #[error("the inviter holds no invite for this code (its daemon restarted since, which cancels open codes, or the code closed over an hour ago): ask for a new one")]
    NotAccepting,
    /// The inviter could not be found or reached.
    #[error("inviter not found: {0}")]
    NotFound(String),
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error("the other side ended the enrolment before it was confirmed")]
    Closed,
    #[error("the other side broke the enrolment protocol: {0}")]
    Protocol(&'static str),
    #[error("the enrolment handshake failed")]
    Noise,
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "too many open invites (at most {MAX_OPEN_INVITES}): wait for some to be used or expire"
    )]
    TooManyInvites,
}

// ----------------------------------------------------------------------------
// The code

/// An invite's id (picks the secret on the inviter's side).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InviteId(pub [u8; 8]);

/// The 128-bit secret of a code.
#[derive(Clone)]
pub struct InviteSecret(Zeroizing<[u8; 16]>);

impl fmt::Debug for InviteSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InviteSecret(..)")
    }
}

impl InviteSecret {
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut s = Zeroizing::new([0u8; 16]);
        rng.fill_bytes(s.as_mut_slice());
        InviteSecret(s)
    }

    pub fn expose_secret(&self) -> &[u8; 16] {
        &self.0
    }

    /// The Noise pre-shared key.
    fn psk(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(blake3::derive_key(PSK_CONTEXT, self.expose_secret()))
    }
}

/// A one-time code: who to find, which invite, and the secret.
#[derive(Clone)]
pub struct InviteCode {
    /// The inviter's transport key (whom to dial; not its device id).
    pub inviter: [u8; 32],
    pub invite: InviteId,
    pub secret: InviteSecret,
}

impl fmt::Debug for InviteCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "InviteCode({}, {}, ..)",
            hex::encode(&self.inviter[..4]),
            hex::encode(self.invite.0)
        )
    }
}

fn check_bytes(body: &[u8]) -> [u8; 2] {
    let h = blake3::derive_key(CHECK_CONTEXT, body);
    [h[0], h[1]]
}

impl InviteCode {
    /// The code as text (a secret: never log it).
    pub fn encode(&self) -> Zeroizing<String> {
        let mut raw = Zeroizing::new(Vec::with_capacity(CODE_BYTES));
        raw.push(CODE_VERSION);
        raw.extend_from_slice(&self.inviter);
        raw.extend_from_slice(&self.invite.0);
        raw.extend_from_slice(self.secret.expose_secret());
        let check = check_bytes(&raw);
        raw.extend_from_slice(&check);
        let body = Zeroizing::new(BASE32_NOPAD.encode(&raw).to_ascii_lowercase());
        Zeroizing::new(format!("{CODE_PREFIX}{}", body.as_str()))
    }

    /// Parses a code: either case, with or without the prefix, dashes and
    /// spaces ignored. Untrusted input: bounded, never panics.
    pub fn parse(text: &str) -> Result<InviteCode, EnrolError> {
        if text.len() > MAX_CODE_CHARS {
            return Err(EnrolError::BadCode("too long"));
        }
        let mut compact = Zeroizing::new(String::with_capacity(text.len()));
        for c in text.chars() {
            if c == '-' || c.is_whitespace() {
                continue;
            }
            if !c.is_ascii_alphanumeric() {
                return Err(EnrolError::BadCode("unexpected characters"));
            }
            compact.push(c.to_ascii_uppercase());
        }
        let prefix: String = CODE_PREFIX
            .chars()
            .filter(|c| *c != '-')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let body = compact.strip_prefix(prefix.as_str()).unwrap_or(&compact);
        let raw = Zeroizing::new(
            BASE32_NOPAD
                .decode(body.as_bytes())
                .map_err(|_| EnrolError::BadCode("not base32"))?,
        );
        if raw.len() != CODE_BYTES {
            return Err(EnrolError::BadCode(
                "wrong length (a character missing or extra?)",
            ));
        }
        if raw[0] != CODE_VERSION {
            return Err(EnrolError::BadCode("made by another version of Coffer"));
        }
        let (body, check) = raw.split_at(CODE_BYTES - 2);
        if check_bytes(body) != check {
            return Err(EnrolError::BadCode(
                "mistyped (its check digits do not match)",
            ));
        }
        let mut inviter = [0u8; 32];
        inviter.copy_from_slice(&body[1..33]);
        if peer_id_of(&inviter).is_none() {
            return Err(EnrolError::BadCode("no valid inviter key in it"));
        }
        let mut invite = [0u8; 8];
        invite.copy_from_slice(&body[33..41]);
        let mut secret = Zeroizing::new([0u8; 16]);
        secret.copy_from_slice(&body[41..57]);
        Ok(InviteCode {
            inviter,
            invite: InviteId(invite),
            secret: InviteSecret(secret),
        })
    }
}

/// Parses `30m`, `24h`, `7d`, `90s` (at most [`MAX_TTL`]).
pub fn parse_ttl(text: &str) -> Option<Duration> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    let d = Duration::from_secs(secs);
    (secs > 0 && d <= MAX_TTL).then_some(d)
}

/// The code both sides show: 6 digits as `123 456`.
pub fn verification_code(handshake_hash: &[u8]) -> String {
    let k = blake3::derive_key(VERIFY_CONTEXT, handshake_hash);
    let mut n = [0u8; 8];
    n.copy_from_slice(&k[..8]);
    let v = u64::from_le_bytes(n) % 1_000_000;
    format!("{:03} {:03}", v / 1000, v % 1000)
}

/// A typed verification code reduced to its digits.
pub fn verification_digits(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

// ----------------------------------------------------------------------------
// Messages

/// What is joining: a new user, or a new device of an existing user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnrolKind {
    User,
    Device,
}

impl EnrolKind {
    pub fn name(self) -> &'static str {
        match self {
            EnrolKind::User => "user",
            EnrolKind::Device => "device",
        }
    }
}

/// Inviter → joiner, inside the second handshake message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviterHello {
    pub kind: EnrolKind,
    pub team: [u8; 32],
    pub team_name: String,
    /// The joining user's email (the invitee, or the linking user).
    pub email: String,
    /// The joining user's display name.
    pub name: String,
}

/// Joiner → inviter, the first transport message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinerHello {
    /// The device id: its Ed25519 signing key (the `proof` is its).
    pub device: [u8; 32],
    pub device_name: String,
    /// The device's X25519 key (folder keys are sealed to it).
    pub exchange: [u8; 32],
    /// The Ed25519 key the device connects with (its libp2p identity; the
    /// connection proved it, and it must match).
    pub transport: [u8; 32],
    /// Ed25519 by the device over [`PROOF_DOMAIN`] ‖ handshake hash.
    pub proof: ByteBuf,
    /// Ed25519 by the device over its roster entry (team, user, both keys):
    /// what the inviter's `AddDevice` carries (`ops::device_proof_message`).
    pub roster_proof: ByteBuf,
    /// Ed25519 by the transport key binding it to the device
    /// (`ops::transport_proof_message`), also carried by `AddDevice`.
    pub transport_proof: ByteBuf,
}

/// Inviter → joiner, once the inviter decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    Admit {
        team: [u8; 32],
        /// The roster envelopes' wire bytes.
        roster: Vec<ByteBuf>,
    },
    Reject,
}

/// A name a peer sends (team, person, email, device) is shown on the other
/// side's terminal next to the verification code: no control characters
/// (an escape sequence could redraw the screen), and bounded.
fn name_ok(s: &str) -> bool {
    s.len() <= MAX_NAME && !s.chars().any(char::is_control)
}

trait Bounded {
    fn within_bounds(&self) -> bool;
}

impl Bounded for InviterHello {
    fn within_bounds(&self) -> bool {
        name_ok(&self.team_name) && name_ok(&self.email) && name_ok(&self.name)
    }
}

impl Bounded for JoinerHello {
    fn within_bounds(&self) -> bool {
        name_ok(&self.device_name) && self.proof.len() == 64 && self.roster_proof.len() == 64
    }
}

impl Bounded for Decision {
    fn within_bounds(&self) -> bool {
        match self {
            Decision::Admit { roster, .. } => roster.len() <= MAX_ROSTER_ENVELOPES,
            Decision::Reject => true,
        }
    }
}

/// Every decoder of the bytes and text an enrolment peer or user hands
/// this module, for the cargo-fuzz target in `daemon/fuzz`: must never
/// panic, whatever `bytes` hold.
#[doc(hidden)]
pub fn fuzz_decoders(bytes: &[u8]) {
    let _ = decode::<InviterHello>(bytes);
    let _ = decode::<JoinerHello>(bytes);
    let _ = decode::<Decision>(bytes);
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = InviteCode::parse(text);
        let _ = parse_ttl(text);
    }
}

/// Decodes one message: postcard, no trailing bytes, within its bounds.
fn decode<T: DeserializeOwned + Bounded>(bytes: &[u8]) -> Result<T, EnrolError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(EnrolError::Protocol("message too large"));
    }
    let (v, rest): (T, _) =
        postcard::take_from_bytes(bytes).map_err(|_| EnrolError::Protocol("malformed message"))?;
    if !rest.is_empty() {
        return Err(EnrolError::Protocol("trailing bytes"));
    }
    if !v.within_bounds() {
        return Err(EnrolError::Protocol("message over its bounds"));
    }
    Ok(v)
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, EnrolError> {
    let b = postcard::to_stdvec(v).map_err(|_| EnrolError::Protocol("cannot encode"))?;
    if b.len() > MAX_MESSAGE_BYTES {
        return Err(EnrolError::Protocol("message too large"));
    }
    Ok(b)
}

/// A refusal the inviter sends in clear before (or instead of) the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Refusal {
    Unknown = 0,
    WrongCode = 1,
    Expired = 2,
    Used = 3,
    Burnt = 4,
    Busy = 5,
    Rejected = 6,
    Cancelled = 7,
}

impl Refusal {
    fn from_byte(b: u8) -> Option<Refusal> {
        use Refusal::*;
        [
            Unknown, WrongCode, Expired, Used, Burnt, Busy, Rejected, Cancelled,
        ]
        .into_iter()
        .find(|r| *r as u8 == b)
    }

    fn error(self) -> EnrolError {
        match self {
            Refusal::Unknown => EnrolError::UnknownInvite,
            Refusal::WrongCode => EnrolError::WrongCode,
            Refusal::Expired => EnrolError::Expired,
            Refusal::Used => EnrolError::Used,
            Refusal::Burnt => EnrolError::Burnt,
            Refusal::Busy => EnrolError::Busy,
            Refusal::Rejected => EnrolError::Rejected,
            Refusal::Cancelled => EnrolError::Cancelled,
        }
    }
}

// ----------------------------------------------------------------------------
// Framing and the channel

async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    tag: u8,
    body: &[u8],
) -> Result<(), EnrolError> {
    let len = 1 + body.len();
    if len > MAX_FRAME_BYTES {
        return Err(EnrolError::Protocol("frame too large"));
    }
    let mut out = Vec::with_capacity(4 + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.push(tag);
    out.extend_from_slice(body);
    w.write_all(&out).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one frame: (tag, body). A clean end of stream is [`EnrolError::Closed`].
async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<(u8, Vec<u8>), EnrolError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(EnrolError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > MAX_FRAME_BYTES {
        return Err(EnrolError::Protocol("frame length out of bounds"));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    let tag = body.remove(0);
    Ok((tag, body))
}

async fn refuse<W: AsyncWrite + Unpin>(w: &mut W, why: Refusal) -> EnrolError {
    let _ = write_frame(w, TAG_REFUSE, &[why as u8]).await;
    let _ = w.close().await;
    why.error()
}

fn refusal_of(body: &[u8]) -> EnrolError {
    match body {
        [b] => {
            Refusal::from_byte(*b).map_or(EnrolError::Protocol("unknown refusal"), Refusal::error)
        }
        _ => EnrolError::Protocol("malformed refusal"),
    }
}

/// The Noise transport after the handshake: messages chunked into Noise
/// messages, each in one frame.
struct Channel {
    noise: snow::TransportState,
}

impl Channel {
    async fn send<W: AsyncWrite + Unpin, T: Serialize>(
        &mut self,
        w: &mut W,
        msg: &T,
    ) -> Result<(), EnrolError> {
        let bytes = Zeroizing::new(encode(msg)?);
        let mut chunks: Vec<&[u8]> = bytes.chunks(CHUNK).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        let last = chunks.len() - 1;
        let mut out = vec![0u8; NOISE_MAX];
        for (i, chunk) in chunks.into_iter().enumerate() {
            let mut plain = Zeroizing::new(Vec::with_capacity(chunk.len() + 1));
            plain.push(u8::from(i != last));
            plain.extend_from_slice(chunk);
            let n = self
                .noise
                .write_message(&plain, &mut out)
                .map_err(|_| EnrolError::Noise)?;
            write_frame(w, TAG_NOISE, &out[..n]).await?;
        }
        Ok(())
    }

    async fn recv<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
    ) -> Result<Zeroizing<Vec<u8>>, EnrolError> {
        let mut msg = Zeroizing::new(Vec::new());
        let mut plain = Zeroizing::new(vec![0u8; NOISE_MAX]);
        loop {
            let (tag, body) = read_frame(r).await?;
            match tag {
                TAG_NOISE => {}
                TAG_REFUSE => return Err(refusal_of(&body)),
                _ => return Err(EnrolError::Protocol("unexpected frame")),
            }
            if body.len() > NOISE_MAX {
                return Err(EnrolError::Protocol("Noise message too large"));
            }
            let n = self
                .noise
                .read_message(&body, &mut plain)
                .map_err(|_| EnrolError::Noise)?;
            let Some((&more, data)) = plain[..n].split_first() else {
                return Err(EnrolError::Protocol("empty chunk"));
            };
            if msg.len() + data.len() > MAX_MESSAGE_BYTES {
                return Err(EnrolError::Protocol("message too large"));
            }
            msg.extend_from_slice(data);
            match more {
                0 => return Ok(msg),
                1 => {}
                _ => return Err(EnrolError::Protocol("bad chunk flag")),
            }
        }
    }
}

fn noise_builder<'a>(
    psk: &'a [u8; 32],
    prologue: &'a [u8],
) -> Result<snow::Builder<'a>, EnrolError> {
    let params: snow::params::NoiseParams = NOISE_PARAMS.parse().map_err(|_| EnrolError::Noise)?;
    snow::Builder::new(params)
        .psk(0, psk)
        .and_then(|b| b.prologue(prologue))
        .map_err(|_| EnrolError::Noise)
}

/// `coffer/enrol/1` ‖ inviter transport key ‖ joiner transport key: binds
/// the channel to the identities the libp2p handshake proved.
fn prologue(inviter: &[u8; 32], joiner: &[u8; 32]) -> Vec<u8> {
    let mut p = PROLOGUE.to_vec();
    p.extend_from_slice(inviter);
    p.extend_from_slice(joiner);
    p
}

fn proof_message(handshake_hash: &[u8]) -> Vec<u8> {
    let mut m = PROOF_DOMAIN.to_vec();
    m.extend_from_slice(handshake_hash);
    m
}

async fn timed<T>(
    what: &'static str,
    d: Duration,
    f: impl std::future::Future<Output = Result<T, EnrolError>>,
) -> Result<T, EnrolError> {
    tokio::time::timeout(d, f)
        .await
        .map_err(|_| EnrolError::Timeout(what))?
}

// ----------------------------------------------------------------------------
// The inviter's table

/// What an invite admits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InviteSpec {
    pub kind: EnrolKind,
    pub email: String,
    pub name: String,
    pub groups: Vec<String>,
    pub admin: bool,
    /// Re-invites an existing user to a fresh device (`invite --recover`):
    /// the joiner sees an ordinary user invite; confirming it revokes the
    /// user's other devices.
    pub recover: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InviteState {
    /// Waiting for its joiner.
    Open,
    /// A joiner proved the code (its join may still await a decision).
    Used,
    /// Cancelled after [`MAX_FAILURES`] wrong secrets.
    Burnt,
    /// Its join was rejected: a retry hears so.
    Rejected,
    /// Cancelled by the inviter.
    Cancelled,
}

impl InviteState {
    pub fn name(self) -> &'static str {
        match self {
            InviteState::Open => "open",
            InviteState::Used => "used",
            InviteState::Burnt => "cancelled after failed attempts",
            InviteState::Rejected => "rejected",
            InviteState::Cancelled => "cancelled",
        }
    }
}

struct Invite {
    secret: InviteSecret,
    hello: InviterHello,
    spec: InviteSpec,
    created: Instant,
    expires: Instant,
    failures: u8,
    state: InviteState,
    /// When it stopped being open (used, cancelled, ...).
    closed: Option<Instant>,
}

impl Invite {
    fn set(&mut self, state: InviteState, now: Instant) {
        self.state = state;
        self.closed = Some(now);
    }

    fn is_open(&self, now: Instant) -> bool {
        self.state == InviteState::Open && now < self.expires
    }

    /// Whether a joiner retrying this code still gets an answer: open, or
    /// closed (or expired) less than [`RETRY_WINDOW`] ago.
    fn answers(&self, now: Instant) -> bool {
        let settled = match self.state {
            InviteState::Open => self.expires,
            _ => self.closed.unwrap_or(self.expires).min(self.expires),
        };
        now < settled + RETRY_WINDOW
    }
}

/// How long after an invite is used, rejected, cancelled or expired the
/// inviter still takes enrolment connections for it, so that a retry of
/// its code hears why it fails (exit 15–18) rather than finding no one.
pub const RETRY_WINDOW: Duration = Duration::from_secs(3600);

/// A handshaken join waiting for the inviter's decision.
pub struct Pending {
    pub id: u64,
    pub invite: InviteId,
    pub spec: InviteSpec,
    pub joiner: DeviceId,
    pub exchange: [u8; 32],
    pub transport: [u8; 32],
    /// The joiner's signature over its roster entry.
    pub roster_proof: Vec<u8>,
    /// Its transport key's signature binding that key to the device.
    pub transport_proof: Vec<u8>,
    pub device_name: String,
    pub verification: String,
    pub since_ms: i64,
    tx: oneshot::Sender<Decided>,
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending")
            .field("id", &self.id)
            .field("spec", &self.spec)
            .field("joiner", &self.joiner.short())
            .field("verification", &self.verification)
            .finish_non_exhaustive()
    }
}

struct Decided {
    decision: Decision,
    delivered: oneshot::Sender<bool>,
}

impl Pending {
    /// Sends the decision to the waiting joiner; the receiver says whether
    /// it was delivered.
    pub fn decide(self, decision: Decision) -> oneshot::Receiver<bool> {
        let (delivered, rx) = oneshot::channel();
        let _ = self.tx.send(Decided {
            decision,
            delivered,
        });
        rx
    }

    /// Whether the join is still waiting (its connection open).
    pub fn is_alive(&self) -> bool {
        !self.tx.is_closed()
    }
}

/// A pending join as listed.
#[derive(Clone, Debug)]
pub struct PendingView {
    pub spec: InviteSpec,
    pub joiner: DeviceId,
    pub device_name: String,
    pub verification: String,
    pub since_ms: i64,
}

/// An invite as `coffer invite ls` lists it (no secret).
#[derive(Clone, Debug)]
pub struct InviteView {
    pub id: InviteId,
    pub spec: InviteSpec,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub state: InviteState,
    /// Open, but past its expiry.
    pub expired: bool,
    /// A join with its code awaits a decision (`invite pending`).
    pub waiting: bool,
}

/// Why `coffer invite cancel` cancelled nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CancelError {
    /// No kept invite has that id (prefix) or, open, that email.
    #[error("no open invite matches")]
    NotFound,
    /// The prefix or email names more than one invite.
    #[error("{0} invites match: give more of the id")]
    Ambiguous(usize),
    /// Its code was used: a join awaits the decision.
    #[error("a join with this code is waiting for a decision: reject it instead")]
    Waiting,
    /// It is no longer open (its state).
    #[error("this invite is {0} already")]
    NotOpen(&'static str),
}

/// The inviter's open invites and pending joins (memory only).
#[derive(Default)]
pub struct InviteTable {
    invites: HashMap<InviteId, Invite>,
    pending: Vec<Pending>,
    next: u64,
}

impl InviteTable {
    fn purge(&mut self, now: Instant) {
        // Forget invites an hour after they expired; keep used ones until
        // then so that a second joiner hears "already used".
        self.invites
            .retain(|_, i| now < i.expires + Duration::from_secs(3600));
        self.pending.retain(Pending::is_alive);
    }

    /// Opens an invite; returns its code.
    /// Opens an invite; `me` is this device's transport key (the code
    /// names it, for the joiner to dial).
    pub fn open(
        &mut self,
        me: [u8; 32],
        hello: InviterHello,
        spec: InviteSpec,
        ttl: Duration,
        now: Instant,
        rng: &mut impl CryptoRngCore,
    ) -> Result<InviteCode, EnrolError> {
        self.purge(now);
        let open = self.invites.values().filter(|i| i.is_open(now)).count();
        if open >= MAX_OPEN_INVITES {
            return Err(EnrolError::TooManyInvites);
        }
        if self.invites.len() >= MAX_KEPT_INVITES {
            // Drop the invite that expires first (a used or cancelled one, or else the oldest).
            let victim = self
                .invites
                .iter()
                .min_by_key(|(_, i)| (i.state == InviteState::Open, i.expires))
                .map(|(id, _)| *id);
            if let Some(v) = victim {
                self.invites.remove(&v);
            }
        }
        let mut id = [0u8; 8];
        rng.fill_bytes(&mut id);
        let invite = InviteId(id);
        let secret = InviteSecret::generate(rng);
        self.invites.insert(
            invite,
            Invite {
                secret: secret.clone(),
                hello,
                spec,
                created: now,
                expires: now + ttl,
                failures: 0,
                state: InviteState::Open,
                closed: None,
            },
        );
        Ok(InviteCode {
            inviter: me,
            invite,
            secret,
        })
    }

    /// Whether an unknown peer may start an enrolment now: while a join
    /// waits, an invite is open, or one closed less than [`RETRY_WINDOW`]
    /// ago (so that a retry of its code hears why it fails).
    pub fn accepting(&mut self, now: Instant) -> bool {
        self.purge(now);
        !self.pending.is_empty() || self.invites.values().any(|i| i.answers(now))
    }

    fn view(&self, id: InviteId, i: &Invite, now: Instant, now_ms: i64) -> InviteView {
        let wall = |t: Instant| -> i64 {
            if t >= now {
                now_ms.saturating_add(t.duration_since(now).as_millis() as i64)
            } else {
                now_ms.saturating_sub(now.duration_since(t).as_millis() as i64)
            }
        };
        InviteView {
            id,
            spec: i.spec.clone(),
            created_ms: wall(i.created),
            expires_ms: wall(i.expires),
            state: i.state,
            expired: i.state == InviteState::Open && now >= i.expires,
            waiting: self.pending.iter().any(|p| p.invite == id && p.is_alive()),
        }
    }

    /// The invites kept, newest first, their times as wall-clock
    /// milliseconds (`now` and `now_ms` are the same moment).
    pub fn list(&mut self, now: Instant, now_ms: i64) -> Vec<InviteView> {
        self.purge(now);
        let mut out: Vec<InviteView> = self
            .invites
            .iter()
            .map(|(id, i)| self.view(*id, i, now, now_ms))
            .collect();
        out.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(a.id.cmp(&b.id)));
        out
    }

    /// Cancels the open invite whose id starts with `which` (hex, at least
    /// 4 digits) or, else, whose invitee has the email `which`: a joiner
    /// using its code then hears that it was cancelled.
    pub fn cancel(
        &mut self,
        which: &str,
        now: Instant,
        now_ms: i64,
    ) -> Result<InviteView, CancelError> {
        self.purge(now);
        let which = which.trim().to_ascii_lowercase();
        let by_id = which.len() >= 4 && which.bytes().all(|b| b.is_ascii_hexdigit());
        let mut matches: Vec<InviteId> = Vec::new();
        if by_id {
            matches.extend(
                self.invites
                    .keys()
                    .filter(|id| hex::encode(id.0).starts_with(&which)),
            );
        }
        if matches.is_empty() {
            matches.extend(
                self.invites
                    .iter()
                    .filter(|(_, i)| i.spec.email == which && i.is_open(now))
                    .map(|(id, _)| *id),
            );
        }
        let id = match matches.as_slice() {
            [] => return Err(CancelError::NotFound),
            [one] => *one,
            _ => return Err(CancelError::Ambiguous(matches.len())),
        };
        if self.pending.iter().any(|p| p.invite == id && p.is_alive()) {
            return Err(CancelError::Waiting);
        }
        let invite = self.invites.get_mut(&id).ok_or(CancelError::NotFound)?;
        match invite.state {
            InviteState::Open if now < invite.expires => {}
            InviteState::Open => return Err(CancelError::NotOpen("expired")),
            other => return Err(CancelError::NotOpen(other.name())),
        }
        invite.set(InviteState::Cancelled, now);
        info!(invite = %hex::encode(id.0), "invite cancelled");
        let invite = self.invites.get(&id).ok_or(CancelError::NotFound)?;
        Ok(self.view(id, invite, now, now_ms))
    }

    /// Marks the invite of a rejected join: a retry with its code hears
    /// "rejected", not "already used".
    pub fn rejected(&mut self, id: &InviteId, now: Instant) {
        if let Some(i) = self.invites.get_mut(id) {
            if i.state == InviteState::Used {
                i.set(InviteState::Rejected, now);
            }
        }
    }

    /// Whether `d` has a join waiting for a decision.
    /// Whether a join from the device with this transport key awaits a decision.
    pub fn is_pending(&self, transport: &[u8; 32]) -> bool {
        self.pending
            .iter()
            .any(|p| &p.transport == transport && p.is_alive())
    }

    fn begin(
        &mut self,
        id: &InviteId,
        now: Instant,
    ) -> Result<(Zeroizing<[u8; 32]>, InviterHello), Refusal> {
        let i = self.invites.get(id).ok_or(Refusal::Unknown)?;
        match i.state {
            InviteState::Burnt => Err(Refusal::Burnt),
            InviteState::Used => Err(Refusal::Used),
            InviteState::Rejected => Err(Refusal::Rejected),
            InviteState::Cancelled => Err(Refusal::Cancelled),
            InviteState::Open if now >= i.expires => Err(Refusal::Expired),
            InviteState::Open => Ok((i.secret.psk(), i.hello.clone())),
        }
    }

    /// A handshake with a wrong secret: cancels the invite at the limit.
    fn failed(&mut self, id: &InviteId) -> Refusal {
        let Some(i) = self.invites.get_mut(id) else {
            return Refusal::Unknown;
        };
        i.failures = i.failures.saturating_add(1);
        if i.failures >= MAX_FAILURES && i.state == InviteState::Open {
            i.set(InviteState::Burnt, Instant::now());
            info!(invite = %hex::encode(id.0), "invite cancelled after failed attempts");
            return Refusal::Burnt;
        }
        Refusal::WrongCode
    }

    /// The first good handshake uses the invite up.
    fn claim(&mut self, id: &InviteId, now: Instant) -> Result<InviteSpec, Refusal> {
        self.begin(id, now)?;
        if self.pending.len() >= MAX_PENDING {
            return Err(Refusal::Busy);
        }
        let i = self.invites.get_mut(id).ok_or(Refusal::Unknown)?;
        i.set(InviteState::Used, now);
        Ok(i.spec.clone())
    }

    fn add_pending(
        &mut self,
        invite: InviteId,
        spec: InviteSpec,
        joiner: DeviceId,
        hello: &JoinerHello,
        verification: String,
        now_ms: i64,
    ) -> (u64, oneshot::Receiver<Decided>) {
        self.next += 1;
        let (tx, rx) = oneshot::channel();
        self.pending.push(Pending {
            id: self.next,
            invite,
            spec,
            joiner,
            exchange: hello.exchange,
            transport: hello.transport,
            roster_proof: hello.roster_proof.to_vec(),
            transport_proof: hello.transport_proof.to_vec(),
            device_name: hello.device_name.clone(),
            verification,
            since_ms: now_ms,
            tx,
        });
        (self.next, rx)
    }

    fn remove_pending(&mut self, id: u64) {
        self.pending.retain(|p| p.id != id);
    }

    /// Puts back a join taken with [`InviteTable::take_pending`] that
    /// could not be decided (the vault was locked, say).
    pub fn restore(&mut self, pending: Pending) {
        if pending.is_alive() {
            self.pending.push(pending);
        }
    }

    /// The joins waiting for a decision, of one kind.
    pub fn pending(&self, kind: EnrolKind) -> Vec<PendingView> {
        self.pending
            .iter()
            .filter(|p| p.spec.kind == kind && p.is_alive())
            .map(|p| PendingView {
                spec: p.spec.clone(),
                joiner: p.joiner,
                device_name: p.device_name.clone(),
                verification: p.verification.clone(),
                since_ms: p.since_ms,
            })
            .collect()
    }

    /// Takes the pending join of `kind` whose verification code is `typed`
    /// (digits compared, spaces ignored).
    pub fn take_pending(&mut self, typed: &str, kind: EnrolKind) -> Option<Pending> {
        let digits = verification_digits(typed);
        if digits.len() != 6 {
            return None;
        }
        let at = self.pending.iter().position(|p| {
            p.spec.kind == kind && p.is_alive() && verification_digits(&p.verification) == digits
        })?;
        Some(self.pending.remove(at))
    }
}

// ----------------------------------------------------------------------------
// The two sides

/// The inviter's side of one enrolment stream, from the joiner's first
/// frame to the decision. `me` and `joiner_transport` are the transport
/// keys the libp2p handshake proved.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    me: [u8; 32],
    joiner_transport: [u8; 32],
    table: &std::sync::Mutex<InviteTable>,
    now_ms: impl Fn() -> i64,
) -> Result<EnrolKind, EnrolError> {
    let lock = || table.lock().unwrap_or_else(|p| p.into_inner());
    let (tag, body) = timed("waiting for the joiner", STEP_TIMEOUT, read_frame(&mut io)).await?;
    if tag != TAG_HELLO || body.len() < 8 {
        return Err(EnrolError::Protocol("expected a hello frame"));
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&body[..8]);
    let invite = InviteId(id);
    let begun = lock().begin(&invite, Instant::now());
    let (psk, hello) = match begun {
        Ok(x) => x,
        Err(r) => return Err(refuse(&mut io, r).await),
    };
    let prologue = prologue(&me, &joiner_transport);
    let mut hs = noise_builder(&psk, &prologue)?
        .build_responder()
        .map_err(|_| EnrolError::Noise)?;
    let mut buf = vec![0u8; NOISE_MAX];
    if hs.read_message(&body[8..], &mut buf).is_err() {
        let why = lock().failed(&invite);
        info!(joiner = %hex::encode(&joiner_transport[..4]), "enrolment with a wrong code");
        // The joiner hears why (burnt at the limit); this side records a
        // wrong code either way (the audit trail's `invite-wrong-code`).
        refuse(&mut io, why).await;
        return Err(EnrolError::WrongCode);
    }
    let claimed = lock().claim(&invite, Instant::now());
    let spec = match claimed {
        Ok(s) => s,
        Err(r) => return Err(refuse(&mut io, r).await),
    };
    let n = hs
        .write_message(&encode(&hello)?, &mut buf)
        .map_err(|_| EnrolError::Noise)?;
    write_frame(&mut io, TAG_NOISE, &buf[..n]).await?;
    let hash = hs.get_handshake_hash().to_vec();
    let mut channel = Channel {
        noise: hs.into_transport_mode().map_err(|_| EnrolError::Noise)?,
    };
    let jh: JoinerHello = decode(
        &timed(
            "waiting for the joiner's device",
            STEP_TIMEOUT,
            channel.recv(&mut io),
        )
        .await?,
    )?;
    let proof: [u8; 64] = jh
        .proof
        .as_slice()
        .try_into()
        .map_err(|_| EnrolError::Protocol("bad device proof"))?;
    // The device signs the handshake with its signing key; the connection
    // is from the transport key it names.
    let joiner = DeviceId(jh.device);
    if jh.transport != joiner_transport
        || !coffer_crdt::crypto::verify(&joiner, &proof_message(&hash), &proof)
    {
        return Err(EnrolError::Protocol("bad device proof"));
    }
    let verification = verification_code(&hash);
    let kind = spec.kind;
    let (pid, rx) = lock().add_pending(invite, spec, joiner, &jh, verification, now_ms());
    info!(joiner = %joiner.short(), kind = kind.name(), "enrolment waiting for confirmation");
    // Wait for the decision; a frame or the end of the stream from the
    // joiner means it gave up.
    enum Next {
        Decided(Decided),
        Dropped,
        Gone,
        Late,
    }
    let next = tokio::select! {
        d = rx => d.map_or(Next::Dropped, Next::Decided),
        _ = read_frame(&mut io) => Next::Gone,
        _ = tokio::time::sleep(DECISION_TIMEOUT) => Next::Late,
    };
    lock().remove_pending(pid);
    match next {
        Next::Decided(d) => {
            let sent = channel.send(&mut io, &d.decision).await;
            let _ = io.close().await;
            let _ = d.delivered.send(sent.is_ok());
            sent?;
            Ok(kind)
        }
        Next::Dropped => Err(EnrolError::Closed),
        Next::Gone => Err(EnrolError::Closed),
        Next::Late => Err(EnrolError::Timeout("waiting for a decision")),
    }
}

/// The joiner after the handshake: shows [`Joined::verification`] and
/// waits for [`Joined::decision`].
pub struct Joined<S> {
    io: S,
    channel: Channel,
    pub hello: InviterHello,
    pub verification: String,
}

impl<S> fmt::Debug for Joined<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Joined")
            .field("hello", &self.hello)
            .field("verification", &self.verification)
            .finish_non_exhaustive()
    }
}

/// What an admitted joiner receives.
#[derive(Clone, Debug)]
pub struct Admission {
    pub team: [u8; 32],
    pub roster: Vec<Vec<u8>>,
}

/// The joiner's handshake over `io` with the device `keys`, connected with
/// the transport key of `transport_seed`.
pub async fn join<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    code: &InviteCode,
    keys: &DeviceKeys,
    transport_seed: &[u8; 32],
    device_name: &str,
) -> Result<Joined<S>, EnrolError> {
    let transport = coffer_crdt::crypto::ed25519_public(transport_seed);
    let psk = code.secret.psk();
    let prologue = prologue(&code.inviter, &transport);
    let mut hs = noise_builder(&psk, &prologue)?
        .build_initiator()
        .map_err(|_| EnrolError::Noise)?;
    let mut buf = vec![0u8; NOISE_MAX];
    let n = hs
        .write_message(&[], &mut buf)
        .map_err(|_| EnrolError::Noise)?;
    let mut first = code.invite.0.to_vec();
    first.extend_from_slice(&buf[..n]);
    // The inviter proved its key on the connection already: a stream that
    // ends before its first answer is one that takes no enrolments (no
    // invite kept: its daemon restarted since the code was made).
    let not_accepting = |e: EnrolError| match e {
        EnrolError::Io(_) | EnrolError::Closed => EnrolError::NotAccepting,
        e => e,
    };
    write_frame(&mut io, TAG_HELLO, &first)
        .await
        .map_err(not_accepting)?;
    let (tag, body) = timed("waiting for the inviter", STEP_TIMEOUT, read_frame(&mut io))
        .await
        .map_err(not_accepting)?;
    match tag {
        TAG_NOISE => {}
        TAG_REFUSE => return Err(refusal_of(&body)),
        _ => return Err(EnrolError::Protocol("unexpected frame")),
    }
    let n = hs
        .read_message(&body, &mut buf)
        .map_err(|_| EnrolError::Noise)?;
    let hello: InviterHello = decode(&buf[..n])?;
    let hash = hs.get_handshake_hash().to_vec();
    let mut channel = Channel {
        noise: hs.into_transport_mode().map_err(|_| EnrolError::Noise)?,
    };
    // The other side refuses control characters (see `name_ok`).
    let mut name: String = device_name.chars().filter(|c| !c.is_control()).collect();
    truncate(&mut name, MAX_NAME);
    let user = coffer_crdt::UserId::new(&hello.email)
        .ok_or(EnrolError::Protocol("the invite names no email address"))?;
    let entry = coffer_crdt::ops::device_proof_message(
        &coffer_crdt::SpaceId(hello.team),
        &user,
        &keys.exchange_public(),
        &transport,
    );
    let transport_entry = coffer_crdt::ops::transport_proof_message(
        &coffer_crdt::SpaceId(hello.team),
        &user,
        &keys.device_id(),
        &keys.exchange_public(),
    );
    let jh = JoinerHello {
        transport_proof: ByteBuf::from(
            coffer_crdt::crypto::sign_with_seed(transport_seed, &transport_entry).to_vec(),
        ),
        device: keys.device_id().0,
        device_name: name,
        exchange: keys.exchange_public(),
        transport,
        proof: ByteBuf::from(keys.sign(&proof_message(&hash)).to_vec()),
        roster_proof: ByteBuf::from(keys.sign(&entry).to_vec()),
    };
    channel.send(&mut io, &jh).await?;
    Ok(Joined {
        io,
        channel,
        hello,
        verification: verification_code(&hash),
    })
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut at = max;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Joined<S> {
    /// Waits (at most `wait`) for the inviter's decision.
    pub async fn decision(mut self, wait: Duration) -> Result<Admission, EnrolError> {
        let bytes = timed(
            "waiting for the inviter's confirmation",
            wait,
            self.channel.recv(&mut self.io),
        )
        .await?;
        let _ = self.io.close().await;
        match decode::<Decision>(&bytes)? {
            Decision::Admit { team, roster } => Ok(Admission {
                team,
                roster: roster.into_iter().map(ByteBuf::into_vec).collect(),
            }),
            Decision::Reject => Err(EnrolError::Rejected),
        }
    }
}

// ----------------------------------------------------------------------------
// The joiner's short-lived swarm

/// Keeps the joiner's swarm running; dropping it stops the swarm.
pub struct SwarmGuard {
    _stop: oneshot::Sender<()>,
}

/// A joiner connected to its inviter, after the handshake.
pub struct Connected {
    pub joined: Joined<libp2p::Stream>,
    pub inviter: PeerId,
    /// The addresses that reached the inviter.
    pub addrs: Vec<Multiaddr>,
    pub guard: SwarmGuard,
}

/// Browses `_coffer._tcp` (at most `wait`) for the record of `peer`.
async fn browse_for(peer: PeerId, wait: Duration) -> Result<Vec<Multiaddr>, EnrolError> {
    let daemon = mdns_sd::ServiceDaemon::new()
        .map_err(|e| EnrolError::NotFound(format!("mDNS unavailable: {e}")))?;
    let events = daemon
        .browse(SERVICE_TYPE)
        .map_err(|e| EnrolError::NotFound(format!("mDNS unavailable: {e}")))?;
    let wanted = peer.to_base58();
    let found = tokio::time::timeout(wait, async {
        while let Ok(event) = events.recv_async().await {
            let mdns_sd::ServiceEvent::ServiceResolved(svc) = event else {
                continue;
            };
            if svc.get_property_val_str("peer") != Some(wanted.as_str()) {
                continue;
            }
            let addrs = super::discovery::tcp_addrs(
                svc.addresses.iter().map(|ip| ip.to_ip_addr()),
                svc.port,
            );
            if !addrs.is_empty() {
                return Some(addrs);
            }
        }
        None
    })
    .await;
    let _ = daemon.shutdown();
    found.ok().flatten().ok_or_else(|| {
        EnrolError::NotFound("no inviter answered on the LAN (mDNS); is its daemon running? or pass --peer MULTIADDR".into())
    })
}

/// Finds the inviter (the `peers` given, else mDNS when `mdns`), connects
/// with a swarm made from the joiner's transport key, and runs the handshake.
pub async fn connect(
    code: &InviteCode,
    keys: &DeviceKeys,
    transport_seed: &[u8; 32],
    device_name: &str,
    peers: &[Multiaddr],
    mdns: bool,
) -> Result<Connected, EnrolError> {
    let inviter =
        peer_id_of(&code.inviter).ok_or(EnrolError::BadCode("no valid inviter key in it"))?;
    let mut addrs = Vec::new();
    for a in peers {
        let (bare, p) = super::without_p2p(a);
        if p.is_some_and(|p| p != inviter) {
            return Err(EnrolError::NotFound(format!(
                "{a} names another device than the one that made this code"
            )));
        }
        addrs.push(bare);
    }
    if addrs.is_empty() {
        if !mdns {
            return Err(EnrolError::NotFound(
                "mDNS is off on this device: pass --peer MULTIADDR (the inviter's address)".into(),
            ));
        }
        addrs = browse_for(inviter, Duration::from_secs(15)).await?;
    }
    let mut seed = Zeroizing::new(*transport_seed);
    let key = libp2p::identity::Keypair::ed25519_from_bytes(seed.as_mut_slice())
        .map_err(|_| EnrolError::Protocol("the transport key is not an Ed25519 key"))?;
    let noise_config = |k: &libp2p::identity::Keypair| {
        noise::Config::new(k).map(|c| c.with_prologue(NOISE_PROLOGUE.to_vec()))
    };
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise_config,
            yamux::Config::default,
        )
        .map_err(|e| EnrolError::NotFound(format!("cannot start the network: {e}")))?
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .map_err(|e| EnrolError::NotFound(format!("cannot start the network: {e}")))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(DECISION_TIMEOUT + STEP_TIMEOUT))
        .build();
    let mut control = swarm.behaviour().new_control();
    swarm
        .dial(DialOpts::peer_id(inviter).addresses(addrs.clone()).build())
        .map_err(|e| EnrolError::NotFound(format!("cannot dial the inviter: {e}")))?;
    // Drive the swarm until connected.
    let connected = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == inviter => {
                    return Ok(());
                }
                SwarmEvent::OutgoingConnectionError { peer_id, error, .. }
                    if peer_id == Some(inviter) =>
                {
                    return Err(EnrolError::NotFound(format!(
                        "cannot connect to the inviter: {error}"
                    )));
                }
                other => debug!(event = ?other, "enrolment swarm"),
            }
        }
    })
    .await
    .map_err(|_| EnrolError::Timeout("connecting to the inviter"))?;
    connected?;
    let (stop, mut stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stopped => return,
                _ = swarm.select_next_some() => {}
            }
        }
    });
    let guard = SwarmGuard { _stop: stop };
    // Connected, so the inviter's key is proved: if it will not open an
    // enrolment stream it holds no invite (its daemon restarted since).
    let stream = timed("opening the enrolment stream", STEP_TIMEOUT, async {
        control.open_stream(inviter, protocol()).await.map_err(|e| {
            debug!(error = %e, "the inviter refused the enrolment stream");
            EnrolError::NotAccepting
        })
    })
    .await?;
    let joined = join(stream, code, keys, transport_seed, device_name).await?;
    Ok(Connected {
        joined,
        inviter,
        addrs,
        guard,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::OsRng;
    use std::sync::{Arc, Mutex};
    use tokio_util::compat::TokioAsyncReadCompatExt;

    fn hello() -> InviterHello {
        InviterHello {
            kind: EnrolKind::User,
            team: [7; 32],
            team_name: "Acme".into(),
            email: "bob@example.com".into(),
            name: "Bob".into(),
        }
    }

    fn spec() -> InviteSpec {
        InviteSpec {
            kind: EnrolKind::User,
            email: "bob@example.com".into(),
            name: "Bob".into(),
            groups: vec!["it".into()],
            admin: false,
            recover: false,
        }
    }

    fn setup(ttl: Duration) -> (DeviceKeys, Arc<Mutex<InviteTable>>, InviteCode) {
        let inviter = DeviceKeys::generate(&mut OsRng);
        let table = Arc::new(Mutex::new(InviteTable::default()));
        let code = table
            .lock()
            .unwrap()
            .open(
                inviter.device_id().0,
                hello(),
                spec(),
                ttl,
                Instant::now(),
                &mut OsRng,
            )
            .unwrap();
        (inviter, table, code)
    }

    /// A test device's transport seed: its signing seed, so that its
    /// transport key is its device id (what `spawn_serve` is given).
    fn seed_of(keys: &DeviceKeys) -> [u8; 32] {
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&keys.to_secret_bytes()[..32]);
        seed
    }

    /// Runs the inviter's side on one end of a pipe; returns its task.
    fn spawn_serve(
        inviter: [u8; 32],
        joiner: [u8; 32],
        table: Arc<Mutex<InviteTable>>,
    ) -> (
        tokio::io::DuplexStream,
        tokio::task::JoinHandle<Result<EnrolKind, EnrolError>>,
    ) {
        let (a, b) = tokio::io::duplex(1 << 16);
        let task =
            tokio::spawn(async move { serve(b.compat(), inviter, joiner, &table, || 1).await });
        (a, task)
    }

    async fn wait_pending(table: &Mutex<InviteTable>) -> PendingView {
        for _ in 0..200 {
            if let Some(p) = table.lock().unwrap().pending(EnrolKind::User).pop() {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no pending join");
    }

    #[tokio::test]
    async fn right_code_same_verification_then_admit() {
        let (inviter, table, code) = setup(DEFAULT_TTL);
        let joiner = DeviceKeys::generate(&mut OsRng);
        let (pipe, server) =
            spawn_serve(inviter.device_id().0, joiner.device_id().0, table.clone());
        let joined = join(pipe.compat(), &code, &joiner, &seed_of(&joiner), "laptop")
            .await
            .unwrap();
        assert_eq!(joined.hello, hello());
        let p = wait_pending(&table).await;
        assert_eq!(p.verification, joined.verification);
        assert_eq!(p.joiner, joiner.device_id());
        assert_eq!(p.device_name, "laptop");
        assert_eq!(joined.verification.len(), 7);
        let pending = table
            .lock()
            .unwrap()
            .take_pending(&verification_digits(&p.verification), EnrolKind::User)
            .unwrap();
        assert_eq!(pending.exchange, joiner.exchange_public());
        let roster = vec![
            ByteBuf::from(vec![1u8; 100_000]),
            ByteBuf::from(vec![2u8; 5]),
        ];
        let delivered = pending.decide(Decision::Admit {
            team: [7; 32],
            roster,
        });
        let admitted = joined.decision(Duration::from_secs(5)).await.unwrap();
        assert_eq!(admitted.team, [7; 32]);
        assert_eq!(admitted.roster.len(), 2);
        assert_eq!(admitted.roster[0].len(), 100_000);
        assert!(delivered.await.unwrap());
        assert_eq!(server.await.unwrap().unwrap(), EnrolKind::User);
    }

    #[tokio::test]
    async fn reject_reaches_the_joiner() {
        let (inviter, table, code) = setup(DEFAULT_TTL);
        let joiner = DeviceKeys::generate(&mut OsRng);
        let (pipe, _server) =
            spawn_serve(inviter.device_id().0, joiner.device_id().0, table.clone());
        let joined = join(pipe.compat(), &code, &joiner, &seed_of(&joiner), "x")
            .await
            .unwrap();
        let p = wait_pending(&table).await;
        assert!(table
            .lock()
            .unwrap()
            .take_pending("000 00", EnrolKind::User)
            .is_none());
        assert!(table
            .lock()
            .unwrap()
            .take_pending(&p.verification, EnrolKind::Device)
            .is_none());
        let pending = table
            .lock()
            .unwrap()
            .take_pending(&p.verification, EnrolKind::User)
            .unwrap();
        pending.decide(Decision::Reject);
        assert!(matches!(
            joined.decision(Duration::from_secs(5)).await,
            Err(EnrolError::Rejected)
        ));
    }

    #[tokio::test]
    async fn wrong_secret_fails_and_burns_after_three() {
        let (inviter, table, code) = setup(DEFAULT_TTL);
        let mut wrong = code.clone();
        wrong.secret = InviteSecret::generate(&mut OsRng);
        for attempt in 1..=4 {
            let joiner = DeviceKeys::generate(&mut OsRng);
            let (pipe, server) =
                spawn_serve(inviter.device_id().0, joiner.device_id().0, table.clone());
            let got = join(pipe.compat(), &wrong, &joiner, &seed_of(&joiner), "x").await;
            match attempt {
                1 | 2 => assert!(matches!(got, Err(EnrolError::WrongCode)), "{got:?}"),
                _ => assert!(matches!(got, Err(EnrolError::Burnt)), "{got:?}"),
            }
            assert!(server.await.unwrap().is_err());
        }
        assert!(table.lock().unwrap().pending(EnrolKind::User).is_empty());
        // The right secret no longer works either.
        let joiner = DeviceKeys::generate(&mut OsRng);
        let (pipe, _s) = spawn_serve(inviter.device_id().0, joiner.device_id().0, table.clone());
        assert!(matches!(
            join(pipe.compat(), &code, &joiner, &seed_of(&joiner), "x").await,
            Err(EnrolError::Burnt)
        ));
    }

    #[tokio::test]
    async fn reused_expired_and_unknown_codes_are_refused() {
        let (inviter, table, code) = setup(DEFAULT_TTL);
        let first = DeviceKeys::generate(&mut OsRng);
        let (pipe, _s1) = spawn_serve(inviter.device_id().0, first.device_id().0, table.clone());
        let _joined = join(pipe.compat(), &code, &first, &seed_of(&first), "x")
            .await
            .unwrap();
        let second = DeviceKeys::generate(&mut OsRng);
        let (pipe, _s2) = spawn_serve(inviter.device_id().0, second.device_id().0, table.clone());
        assert!(matches!(
            join(pipe.compat(), &code, &second, &seed_of(&second), "x").await,
            Err(EnrolError::Used)
        ));

        let (inviter, table, code) = setup(Duration::from_millis(1));
        tokio::time::sleep(Duration::from_millis(20)).await;
        let j = DeviceKeys::generate(&mut OsRng);
        let (pipe, _s) = spawn_serve(inviter.device_id().0, j.device_id().0, table.clone());
        assert!(matches!(
            join(pipe.compat(), &code, &j, &seed_of(&j), "x").await,
            Err(EnrolError::Expired)
        ));
        // An expired code still hears why for RETRY_WINDOW, then no one
        // takes unknown peers' connections any more.
        assert!(table.lock().unwrap().accepting(Instant::now()));
        let later = Instant::now() + RETRY_WINDOW + Duration::from_secs(1);
        assert!(!table.lock().unwrap().accepting(later));

        let (inviter, table, mut code) = setup(DEFAULT_TTL);
        code.invite = InviteId([9; 8]);
        let (pipe, _s) = spawn_serve(inviter.device_id().0, j.device_id().0, table.clone());
        assert!(matches!(
            join(pipe.compat(), &code, &j, &seed_of(&j), "x").await,
            Err(EnrolError::UnknownInvite)
        ));
    }

    #[tokio::test]
    async fn a_joiner_with_another_identity_fails() {
        // The libp2p layer proved device X, but the joiner signs as Y: the
        // prologue differs, so the handshake fails.
        let (inviter, table, code) = setup(DEFAULT_TTL);
        let claimed = DeviceKeys::generate(&mut OsRng);
        let actual = DeviceKeys::generate(&mut OsRng);
        let (pipe, server) =
            spawn_serve(inviter.device_id().0, claimed.device_id().0, table.clone());
        assert!(join(pipe.compat(), &code, &actual, &seed_of(&actual), "x")
            .await
            .is_err());
        assert!(server.await.unwrap().is_err());
        assert!(table.lock().unwrap().pending(EnrolKind::User).is_empty());
    }

    #[tokio::test]
    async fn the_inviter_notices_a_joiner_that_leaves() {
        let (inviter, table, code) = setup(DEFAULT_TTL);
        let joiner = DeviceKeys::generate(&mut OsRng);
        let (pipe, server) =
            spawn_serve(inviter.device_id().0, joiner.device_id().0, table.clone());
        let joined = join(pipe.compat(), &code, &joiner, &seed_of(&joiner), "x")
            .await
            .unwrap();
        wait_pending(&table).await;
        drop(joined);
        assert!(matches!(server.await.unwrap(), Err(EnrolError::Closed)));
        assert!(table.lock().unwrap().pending(EnrolKind::User).is_empty());
    }

    #[test]
    fn codes_round_trip_in_any_case_with_dashes() {
        let keys = DeviceKeys::generate(&mut OsRng);
        let code = InviteCode {
            inviter: keys.device_id().0,
            invite: InviteId([1, 2, 3, 4, 5, 6, 7, 8]),
            secret: InviteSecret::generate(&mut OsRng),
        };
        let text = code.encode();
        assert!(text.starts_with(CODE_PREFIX));
        let check = |t: &str| {
            let c = InviteCode::parse(t).unwrap();
            assert_eq!(c.inviter, code.inviter);
            assert_eq!(c.invite, code.invite);
            assert_eq!(c.secret.expose_secret(), code.secret.expose_secret());
        };
        check(&text);
        check(&text.to_uppercase());
        check(text.strip_prefix(CODE_PREFIX).unwrap());
        let dashed: String = text
            .chars()
            .enumerate()
            .flat_map(|(i, c)| {
                if i % 5 == 4 {
                    vec![c, '-']
                } else {
                    vec![c, ' ']
                }
            })
            .collect();
        check(&dashed);
        // One changed character is caught by the check bytes (or length).
        let mut bad = text.to_string();
        let last = bad.pop().unwrap();
        bad.push(if last == 'a' { 'b' } else { 'a' });
        assert!(InviteCode::parse(&bad).is_err());
        assert!(InviteCode::parse("").is_err());
        assert!(InviteCode::parse(&"a".repeat(10_000)).is_err());
        assert!(!format!("{code:?}").contains(&hex::encode(code.secret.expose_secret())));
    }

    #[test]
    fn names_from_a_peer_with_control_characters_are_out_of_bounds() {
        let hello = |name: &str| InviterHello {
            kind: EnrolKind::User,
            team: [0; 32],
            team_name: "Acme".into(),
            email: "ada@example.com".into(),
            name: name.into(),
        };
        assert!(hello("Ada Lovelace").within_bounds());
        assert!(hello("Ada Lovelace 日本語").within_bounds());
        for bad in [
            "Ada\x1b[2J\x1b[Hcode 000 000",
            "Ada\nLovelace",
            "Ada\tL",
            "A\u{7f}",
        ] {
            assert!(!hello(bad).within_bounds(), "{bad:?}");
        }
        assert!(!hello(&"a".repeat(MAX_NAME + 1)).within_bounds());
    }

    #[test]
    fn ttl_and_verification_digits() {
        assert_eq!(parse_ttl("24h"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_ttl("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_ttl("7d"), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_ttl("1s"), Some(Duration::from_secs(1)));
        for bad in [
            "",
            "0s",
            "h",
            "5",
            "5w",
            "31d",
            "-1h",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_ttl(bad), None, "{bad}");
        }
        assert_eq!(verification_digits(" 123 456 "), "123456");
        let v = verification_code(b"hash");
        assert_eq!(v.as_bytes()[3], b' ');
        assert_eq!(verification_digits(&v).len(), 6);
    }

    proptest::proptest! {
        #[test]
        fn parsing_any_text_never_panics(s in ".{0,600}") {
            let _ = InviteCode::parse(&s);
        }

        #[test]
        fn parsing_base32ish_text_never_panics(s in "[a-zA-Z2-7 -]{0,200}") {
            let _ = InviteCode::parse(&s);
        }

        #[test]
        fn decoding_any_bytes_never_panics(b in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode::<InviterHello>(&b);
            let _ = decode::<JoinerHello>(&b);
            let _ = decode::<Decision>(&b);
            let _ = refusal_of(&b);
        }

        #[test]
        fn frames_of_any_bytes_never_panic(b in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let mut r = futures::io::Cursor::new(b);
                let _ = read_frame(&mut r).await;
            });
        }
    }
}
