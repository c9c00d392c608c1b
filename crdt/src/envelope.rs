//! The signed envelope: the unit every space is made of and every peer judges.
//!
//! Wire form: postcard of [`SignedEnvelope`] — the [`EnvelopeBody`] and an
//! Ed25519 signature over `SIGNING_DOMAIN || postcard(body)`. The id is the
//! BLAKE3 hash of those signed bytes, not of the signature: a signer cannot
//! mint a second id for the same body by signing it again with another
//! nonce. Decoding rejects anything that is not the canonical encoding, so
//! an envelope has exactly one byte form and one id.

use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use crate::crypto::{self, DeviceKeys};
use crate::ids::{DeviceId, EnvelopeId, SpaceId};

/// Version of the envelope format this crate writes and accepts (2: content
/// carries a plaintext [`ChangeHeader`]; 3: ids hash the body, cutoffs name
/// envelopes, founding ops are bound to their space id, devices carry a
/// transport key).
pub const ENVELOPE_VERSION: u8 = 3;
/// Upper bound on an encoded envelope; larger input is refused before parsing.
pub const MAX_ENVELOPE_BYTES: usize = 1 << 20;
/// Upper bound on context heads an envelope may cite.
pub const MAX_CONTEXT: usize = 256;
/// Upper bound on the change deps a content envelope may cite.
pub const MAX_DEPS: usize = 1024;

const SIGNING_DOMAIN: &[u8] = b"coffer/envelope/v3\0";

/// What an envelope carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// A folder membership op (plaintext, signed): create, members, key epochs.
    Membership,
    /// One Automerge change of the folder document, encrypted under the epoch key.
    Content,
    /// A record that a secret was used (revealed, copied, TOTP), encrypted.
    Usage,
    /// A team roster op (plaintext, signed).
    Roster,
}

/// What a content envelope says in plaintext about the Automerge change it
/// encrypts, so that every peer — a locked daemon or a keyless relay too —
/// judges acceptance and endorsement from headers alone. Key holders check
/// that the decrypted change matches it ([`crate::Space::binding_matches`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeHeader {
    /// The change's Automerge actor is `folder::actor_for(author, incarnation)`.
    pub incarnation: u32,
    /// The change's Automerge seq (that actor's changes count from 1).
    pub seq: u64,
    /// The content envelopes carrying the change's Automerge deps, sorted,
    /// without duplicates. A dep is a signed vouch: it endorses.
    pub deps: Vec<EnvelopeId>,
}

/// Everything an envelope says, without its signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeBody {
    pub version: u8,
    pub space: SpaceId,
    pub author: DeviceId,
    /// Counts the author's envelopes in this space from 1.
    pub seq: u64,
    /// The author's previous envelope in this space (None iff seq == 1).
    pub prev: Option<EnvelopeId>,
    pub kind: Kind,
    /// The membership/roster heads the author had seen: the ACL input.
    pub context: Vec<EnvelopeId>,
    /// The key epoch (id of the op that set it) a content payload is encrypted under.
    pub epoch: Option<EnvelopeId>,
    /// Present exactly on [`Kind::Content`].
    pub change: Option<ChangeHeader>,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct SignedEnvelope {
    body: EnvelopeBody,
    #[serde(with = "serde_bytes")]
    signature: Vec<u8>,
}

/// The wire bytes of a signed body.
fn encode(body: &EnvelopeBody, signature: &[u8; 64]) -> Vec<u8> {
    postcard::to_stdvec(&SignedEnvelopeRef { body, signature })
        .expect("serialising to a Vec cannot fail")
}

/// [`SignedEnvelope`] encoded from borrowed parts (the same bytes).
#[derive(Serialize)]
struct SignedEnvelopeRef<'a> {
    body: &'a EnvelopeBody,
    #[serde(with = "serde_bytes")]
    signature: &'a [u8; 64],
}

/// A decoded envelope with its id and wire bytes; the signature is checked by
/// [`Envelope::verify_signature`], not by decoding. The verdict is
/// remembered with the (immutable) envelope and its clones, so an envelope
/// is verified at most once however many spaces or replicas take it in.
/// Clones share one allocation: a team's roster envelopes are held by every
/// folder of the team.
#[derive(Clone, Debug)]
pub struct Envelope(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    body: EnvelopeBody,
    signature: [u8; 64],
    id: EnvelopeId,
    /// The length of its wire bytes.
    wire_len: usize,
    // No copy of the wire bytes: decoding accepts only the canonical
    // encoding, so [`Envelope::to_bytes`] gives them back exactly. Held,
    // they doubled every envelope's payload in memory.
    verified: OnceLock<bool>,
}

impl PartialEq for Envelope {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
            && self.0.body == other.0.body
            && self.0.signature == other.0.signature
    }
}

impl Eq for Envelope {}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input is larger than [`MAX_ENVELOPE_BYTES`].
    #[error("envelope of {len} bytes exceeds the {max} byte limit")]
    TooLarge { len: usize, max: usize },
    /// The bytes are not an envelope.
    #[error("malformed envelope")]
    Malformed,
    /// A format version this build does not know.
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u8),
    /// Valid postcard, but not the one canonical encoding.
    #[error("non-canonical envelope encoding")]
    NonCanonical,
    /// The structure is inconsistent (seq/prev, context size, signature length).
    #[error("invalid envelope: {0}")]
    Invalid(&'static str),
}

impl EnvelopeBody {
    fn signing_bytes(&self) -> Vec<u8> {
        let mut msg = SIGNING_DOMAIN.to_vec();
        msg.extend_from_slice(
            &postcard::to_stdvec(self).expect("serialising to a Vec cannot fail"),
        );
        msg
    }

    /// Associated data binding an encrypted payload to its envelope header.
    pub fn payload_aad(space: &SpaceId, author: &DeviceId, seq: u64, kind: Kind) -> Vec<u8> {
        let mut aad = Vec::with_capacity(80);
        aad.extend_from_slice(b"coffer/payload/v1\0");
        aad.extend_from_slice(&space.0);
        aad.extend_from_slice(&author.0);
        aad.extend_from_slice(&seq.to_be_bytes());
        aad.push(kind as u8);
        aad
    }
}

impl Envelope {
    /// Signs `body` with `keys` (an author other than the signer makes a forgery, which verification refuses).
    pub fn sign(body: EnvelopeBody, keys: &DeviceKeys) -> Envelope {
        let signing = body.signing_bytes();
        let signature = keys.sign(&signing);
        let id = EnvelopeId(*blake3::hash(&signing).as_bytes());
        // Signed right here: valid iff the signer is the claimed author.
        let verified = OnceLock::from(body.author == keys.device_id());
        let wire_len = encode(&body, &signature).len();
        Envelope(Arc::new(Inner {
            body,
            signature,
            id,
            wire_len,
            verified,
        }))
    }

    /// Decodes untrusted bytes. Never panics; bounded by [`MAX_ENVELOPE_BYTES`].
    pub fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                max: MAX_ENVELOPE_BYTES,
            });
        }
        let (mut signed, rest): (SignedEnvelope, _) =
            postcard::take_from_bytes(bytes).map_err(|_| DecodeError::Malformed)?;
        // Held as long as the envelope is: not with the decoder's slack.
        signed.body.payload.shrink_to_fit();
        if !rest.is_empty() {
            return Err(DecodeError::Malformed);
        }
        let body = signed.body;
        if body.version != ENVELOPE_VERSION {
            return Err(DecodeError::UnsupportedVersion(body.version));
        }
        let signature: [u8; 64] = signed
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| DecodeError::Invalid("signature must be 64 bytes"))?;
        if body.seq == 0 {
            return Err(DecodeError::Invalid("seq starts at 1"));
        }
        if (body.seq == 1) != body.prev.is_none() {
            return Err(DecodeError::Invalid(
                "prev must be present exactly when seq > 1",
            ));
        }
        if body.context.len() > MAX_CONTEXT {
            return Err(DecodeError::Invalid("too many context heads"));
        }
        match (&body.change, body.kind) {
            (None, Kind::Content) => {
                return Err(DecodeError::Invalid("content needs a change header"))
            }
            (Some(_), k) if k != Kind::Content => {
                return Err(DecodeError::Invalid("only content has a change header"))
            }
            (Some(h), _) => {
                if h.deps.len() > MAX_DEPS {
                    return Err(DecodeError::Invalid("too many change deps"));
                }
                if h.seq == 0 || h.deps.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(DecodeError::Invalid(
                        "change seq starts at 1; deps sorted, no duplicates",
                    ));
                }
            }
            (None, _) => {}
        }
        let envelope = Envelope(Arc::new(Inner {
            id: EnvelopeId(*blake3::hash(&body.signing_bytes()).as_bytes()),
            body,
            signature,
            wire_len: bytes.len(),
            verified: OnceLock::new(),
        }));
        // One encoding per envelope: its id and `to_bytes` stand for these
        // bytes only if encoding it again gives them.
        if envelope.to_bytes() != bytes {
            return Err(DecodeError::NonCanonical);
        }
        Ok(envelope)
    }

    pub fn verify_signature(&self) -> bool {
        *self.0.verified.get_or_init(|| {
            crypto::verify(
                &self.0.body.author,
                &self.0.body.signing_bytes(),
                &self.0.signature,
            )
        })
    }

    /// Checks many signatures at once (about twice as fast as one by one).
    /// `true` iff every signature verifies; on `false`, check them singly.
    pub fn verify_batch(envs: &[&Envelope]) -> bool {
        let todo: Vec<&Envelope> = envs
            .iter()
            .copied()
            .filter(|e| e.0.verified.get().is_none())
            .collect();
        if envs.iter().any(|e| e.0.verified.get() == Some(&false)) {
            return false;
        }
        if todo.is_empty() {
            return true;
        }
        let ok = Self::verify_batch_uncached(&todo);
        if ok {
            for e in todo {
                let _ = e.0.verified.set(true);
            }
        }
        ok
    }

    fn verify_batch_uncached(envs: &[&Envelope]) -> bool {
        let messages: Vec<Vec<u8>> = envs.iter().map(|e| e.0.body.signing_bytes()).collect();
        let mut keys = Vec::with_capacity(envs.len());
        for e in envs {
            match ed25519_dalek::VerifyingKey::from_bytes(&e.0.body.author.0) {
                Ok(k) => keys.push(k),
                Err(_) => return false,
            }
        }
        let signatures: Vec<ed25519_dalek::Signature> = envs
            .iter()
            .map(|e| ed25519_dalek::Signature::from_bytes(&e.0.signature))
            .collect();
        let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        ed25519_dalek::verify_batch(&refs, &signatures, &keys).is_ok()
    }

    pub fn id(&self) -> EnvelopeId {
        self.0.id
    }
    pub fn body(&self) -> &EnvelopeBody {
        &self.0.body
    }
    /// The length of [`Envelope::to_bytes`], without encoding.
    pub fn wire_len(&self) -> usize {
        self.0.wire_len
    }

    /// Its wire bytes (encoded again: the one canonical encoding).
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(&self.0.body, &self.0.signature)
    }
    pub fn space(&self) -> SpaceId {
        self.0.body.space
    }
    pub fn author(&self) -> DeviceId {
        self.0.body.author
    }
    pub fn seq(&self) -> u64 {
        self.0.body.seq
    }
    pub fn kind(&self) -> Kind {
        self.0.body.kind
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn sample(keys: &DeviceKeys) -> Envelope {
        Envelope::sign(
            EnvelopeBody {
                version: ENVELOPE_VERSION,
                space: SpaceId([7; 32]),
                author: keys.device_id(),
                seq: 2,
                prev: Some(EnvelopeId([1; 32])),
                kind: Kind::Content,
                context: vec![EnvelopeId([2; 32])],
                epoch: Some(EnvelopeId([3; 32])),
                change: Some(ChangeHeader {
                    incarnation: 0,
                    seq: 1,
                    deps: vec![EnvelopeId([4; 32])],
                }),
                payload: vec![9; 40],
            },
            keys,
        )
    }

    #[test]
    fn roundtrip_keeps_id_and_signature() {
        let keys = DeviceKeys::generate(&mut ChaCha20Rng::seed_from_u64(1));
        let env = sample(&keys);
        let again = Envelope::decode(&env.to_bytes()).unwrap();
        assert_eq!(again, env);
        assert!(again.verify_signature());
    }

    /// A held envelope keeps no copy of its wire bytes, and its payload
    /// without the decoder's slack (a vault holds every envelope it has);
    /// the bytes it gives back are the ones it was decoded from.
    #[test]
    fn held_envelopes_keep_one_copy_of_the_payload() {
        let keys = DeviceKeys::generate(&mut ChaCha20Rng::seed_from_u64(1));
        let mut body = sample(&keys).body().clone();
        body.payload = vec![5; 700];
        let env = Envelope::sign(body, &keys);
        let bytes = env.to_bytes();
        assert_eq!(env.wire_len(), bytes.len());
        let again = Envelope::decode(&bytes).unwrap();
        assert_eq!(again.to_bytes(), bytes);
        assert_eq!((again.wire_len(), again.id()), (bytes.len(), env.id()));
        assert_eq!(again.0.body.payload.capacity(), 700);
        assert!(again == env);
    }

    #[test]
    fn batch_verification_agrees_with_single() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let keys: Vec<DeviceKeys> = (0..4).map(|_| DeviceKeys::generate(&mut rng)).collect();
        let envs: Vec<Envelope> = keys.iter().map(sample).collect();
        let refs: Vec<&Envelope> = envs.iter().collect();
        assert!(Envelope::verify_batch(&refs));
        let forged = Envelope::sign(envs[0].body().clone(), &keys[1]);
        let mut bad = refs.clone();
        bad.push(&forged);
        assert!(!Envelope::verify_batch(&bad));
    }

    #[test]
    fn tampered_payload_fails_signature() {
        let keys = DeviceKeys::generate(&mut ChaCha20Rng::seed_from_u64(1));
        let env = sample(&keys);
        let mut bytes = env.to_bytes();
        let n = bytes.len();
        bytes[n - 70] ^= 1; // inside the payload, before the signature
        let tampered = Envelope::decode(&bytes).unwrap();
        assert!(!tampered.verify_signature());
        assert_ne!(tampered.id(), env.id());
    }

    #[test]
    fn the_id_names_the_body_not_the_signature() {
        let keys = DeviceKeys::generate(&mut ChaCha20Rng::seed_from_u64(1));
        let env = sample(&keys);
        let mut bytes = env.to_bytes();
        let n = bytes.len();
        bytes[n - 1] ^= 1; // the signature's last byte
        let resigned = Envelope::decode(&bytes).unwrap();
        assert_eq!(resigned.id(), env.id(), "another signature, the same id");
        assert!(!resigned.verify_signature());
    }

    #[test]
    fn rejects_trailing_bytes_oversize_and_bad_structure() {
        let keys = DeviceKeys::generate(&mut ChaCha20Rng::seed_from_u64(1));
        let mut bytes = sample(&keys).to_bytes();
        bytes.push(0);
        assert_eq!(Envelope::decode(&bytes), Err(DecodeError::Malformed));
        let big = vec![0u8; MAX_ENVELOPE_BYTES + 1];
        assert!(matches!(
            Envelope::decode(&big),
            Err(DecodeError::TooLarge { .. })
        ));
        let mut body = sample(&keys).body().clone();
        body.prev = None;
        let env = Envelope::sign(body, &keys);
        assert!(matches!(
            Envelope::decode(&env.to_bytes()),
            Err(DecodeError::Invalid(_))
        ));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Envelope::decode(&bytes);
        }

        #[test]
        fn mutated_envelopes_never_verify_as_original(pos in 0usize..200, bit in 0u8..8) {
            let keys = DeviceKeys::generate(&mut ChaCha20Rng::seed_from_u64(5));
            let env = sample(&keys);
            let mut bytes = env.to_bytes();
            let pos = pos % bytes.len();
            bytes[pos] ^= 1 << bit;
            if let Ok(decoded) = Envelope::decode(&bytes) {
                prop_assert!(!decoded.verify_signature() || decoded == env);
            }
        }
    }
}
