//! A space: the set of envelopes of one folder, and which of them take effect.
//!
//! This is the single-writer-set subset of the acceptance rule: the creating
//! device is the folder's manager, per-author chains must be contiguous and
//! unforked, and content is accepted only from a member with a write role
//! under the current key epoch. Envelopes that fail a rule are quarantined
//! with their reason (kept, never applied); those waiting for an earlier
//! envelope are pending.

use std::collections::{BTreeMap, HashMap};

use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::{CryptoError, DeviceKeys, FolderKey};
use crate::envelope::{Envelope, EnvelopeBody, Kind, ENVELOPE_VERSION};
use crate::ids::{DeviceId, EnvelopeId, SpaceId};

/// A member's role in a folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// Folder Manager: the folder, its members and its items.
    Manager,
    /// Item Manager: view, add, edit, delete items.
    Editor,
    /// Folder Member: use items only.
    Member,
}

impl Role {
    pub fn can_write_items(self) -> bool {
        matches!(self, Role::Manager | Role::Editor)
    }
}

/// A folder key sealed to one device's X25519 key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyWrap {
    pub device: DeviceId,
    #[serde(with = "serde_bytes")]
    pub sealed: Vec<u8>,
}

/// The plaintext (signed) payload of a membership envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipOp {
    /// Founds the folder; its author becomes Folder Manager and the envelope's
    /// id names the first key epoch.
    Create {
        nonce: [u8; 16],
        wraps: Vec<KeyWrap>,
    },
}

/// What became of an envelope handed to [`Space::ingest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It takes effect (content: decrypt and apply it).
    Accepted,
    /// Already held.
    Duplicate,
    /// Waiting for an earlier envelope of its author or for the folder's creation.
    Pending,
    /// Kept but without effect, for the given reason.
    Quarantined(String),
}

/// Envelopes refused outright (not kept): they prove nothing about anyone.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum IngestError {
    /// The signature does not verify under the claimed author's key.
    #[error("envelope signature does not verify")]
    BadSignature,
    /// The envelope belongs to another space.
    #[error("envelope is for another space")]
    WrongSpace,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpaceError {
    /// This device holds no wrap of the current epoch key.
    #[error("this device has no key for the folder")]
    NoKey,
    /// The folder has not been created (its first envelope is missing).
    #[error("folder creation envelope is missing")]
    NotCreated,
    /// This device may not write items here.
    #[error("permission denied: writing items needs the Folder Manager or Item Manager role")]
    PermissionDenied,
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("malformed membership payload")]
    MalformedPayload,
}

/// Derives a folder's id from its founding envelope's author and nonce, so
/// nobody can found a second, competing folder under the same id.
pub fn space_id_for(author: &DeviceId, nonce: &[u8; 16]) -> SpaceId {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"coffer/space/v1\0");
    hasher.update(&author.0);
    hasher.update(nonce);
    SpaceId(*hasher.finalize().as_bytes())
}

/// One folder space's envelopes and acceptance state.
#[derive(Debug)]
pub struct Space {
    id: SpaceId,
    held: HashMap<EnvelopeId, Envelope>,
    /// Per author, the ids of its contiguous chain: index = seq - 1.
    chains: BTreeMap<DeviceId, Vec<EnvelopeId>>,
    pending: Vec<Envelope>,
    genesis: Option<EnvelopeId>,
    members: BTreeMap<DeviceId, Role>,
    epoch: Option<EnvelopeId>,
    wraps: BTreeMap<DeviceId, Vec<u8>>,
    quarantined: BTreeMap<EnvelopeId, String>,
    /// Accepted content envelopes, in the order they took effect.
    accepted_content: Vec<EnvelopeId>,
}

impl Space {
    pub fn new(id: SpaceId) -> Self {
        Self {
            id,
            held: HashMap::new(),
            chains: BTreeMap::new(),
            pending: Vec::new(),
            genesis: None,
            members: BTreeMap::new(),
            epoch: None,
            wraps: BTreeMap::new(),
            quarantined: BTreeMap::new(),
            accepted_content: Vec::new(),
        }
    }

    /// Founds a folder owned by `keys`' device, with `folder_key` as its first
    /// epoch key. Returns the space and the founding envelope (already held).
    pub fn create(
        keys: &DeviceKeys,
        folder_key: &FolderKey,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(Space, Envelope), SpaceError> {
        let mut nonce = [0u8; 16];
        rng.fill_bytes(&mut nonce);
        let author = keys.device_id();
        let id = space_id_for(&author, &nonce);
        let wraps = vec![KeyWrap {
            device: author,
            sealed: folder_key.seal_to(&keys.exchange_public(), rng)?,
        }];
        let payload = postcard::to_stdvec(&MembershipOp::Create { nonce, wraps })
            .expect("serialising to a Vec cannot fail");
        let env = Envelope::sign(
            EnvelopeBody {
                version: ENVELOPE_VERSION,
                space: id,
                author,
                seq: 1,
                prev: None,
                kind: Kind::Membership,
                context: Vec::new(),
                epoch: None,
                payload,
            },
            keys,
        );
        let mut space = Space::new(id);
        let outcome = space
            .ingest(env.clone())
            .map_err(|_| SpaceError::MalformedPayload)?;
        debug_assert_eq!(outcome, Outcome::Accepted);
        Ok((space, env))
    }

    pub fn id(&self) -> SpaceId {
        self.id
    }

    pub fn role_of(&self, device: &DeviceId) -> Option<Role> {
        self.members.get(device).copied()
    }

    pub fn members(&self) -> &BTreeMap<DeviceId, Role> {
        &self.members
    }

    /// {device -> highest contiguous seq}.
    pub fn version_vector(&self) -> BTreeMap<DeviceId, u64> {
        self.chains
            .iter()
            .map(|(d, c)| (*d, c.len() as u64))
            .collect()
    }

    pub fn quarantined(&self) -> &BTreeMap<EnvelopeId, String> {
        &self.quarantined
    }

    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    pub fn get(&self, id: &EnvelopeId) -> Option<&Envelope> {
        self.held.get(id)
    }

    /// Accepted content envelopes in the order they took effect.
    pub fn accepted_content(&self) -> impl Iterator<Item = &Envelope> {
        self.accepted_content
            .iter()
            .filter_map(|id| self.held.get(id))
    }

    /// Opens the current epoch key with this device's keys.
    pub fn folder_key(&self, keys: &DeviceKeys) -> Result<FolderKey, SpaceError> {
        let sealed = self.wraps.get(&keys.device_id()).ok_or(SpaceError::NoKey)?;
        Ok(keys.open_folder_key(sealed)?)
    }

    /// Wraps one Automerge change as this device's next content envelope and
    /// ingests it.
    pub fn seal_content(
        &mut self,
        keys: &DeviceKeys,
        folder_key: &FolderKey,
        change: &[u8],
        rng: &mut impl CryptoRngCore,
    ) -> Result<Envelope, SpaceError> {
        let author = keys.device_id();
        let genesis = self.genesis.ok_or(SpaceError::NotCreated)?;
        if !self.role_of(&author).is_some_and(Role::can_write_items) {
            return Err(SpaceError::PermissionDenied);
        }
        let chain = self
            .chains
            .get(&author)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let seq = chain.len() as u64 + 1;
        let aad = EnvelopeBody::payload_aad(&self.id, &author, seq, Kind::Content);
        let env = Envelope::sign(
            EnvelopeBody {
                version: ENVELOPE_VERSION,
                space: self.id,
                author,
                seq,
                prev: chain.last().copied(),
                kind: Kind::Content,
                context: vec![genesis],
                epoch: self.epoch,
                payload: folder_key.encrypt(change, &aad, rng),
            },
            keys,
        );
        match self.ingest(env.clone()) {
            Ok(Outcome::Accepted) => Ok(env),
            _ => Err(SpaceError::PermissionDenied),
        }
    }

    /// Decrypts an accepted content envelope's Automerge change.
    pub fn open_content(
        env: &Envelope,
        folder_key: &FolderKey,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let body = env.body();
        let aad = EnvelopeBody::payload_aad(&body.space, &body.author, body.seq, body.kind);
        folder_key.decrypt(&body.payload, &aad)
    }

    /// Takes in one envelope from anywhere (this device, the store, a peer).
    pub fn ingest(&mut self, env: Envelope) -> Result<Outcome, IngestError> {
        if env.space() != self.id {
            return Err(IngestError::WrongSpace);
        }
        if self.held.contains_key(&env.id()) || self.pending.iter().any(|p| p.id() == env.id()) {
            return Ok(Outcome::Duplicate);
        }
        if !env.verify_signature() {
            return Err(IngestError::BadSignature);
        }
        let outcome = self.try_chain(env);
        if outcome == Outcome::Accepted {
            self.drain_pending();
        }
        Ok(outcome)
    }

    fn drain_pending(&mut self) {
        loop {
            let ready = self
                .pending
                .iter()
                .position(|p| self.is_next_in_chain(p) && (self.genesis.is_some() || p.seq() == 1));
            let Some(i) = ready else { break };
            let env = self.pending.swap_remove(i);
            self.try_chain(env);
        }
    }

    fn is_next_in_chain(&self, env: &Envelope) -> bool {
        let chain = self
            .chains
            .get(&env.author())
            .map(Vec::as_slice)
            .unwrap_or_default();
        env.seq() == chain.len() as u64 + 1 && env.body().prev == chain.last().copied()
    }

    fn try_chain(&mut self, env: Envelope) -> Outcome {
        let id = env.id();
        let chain = self
            .chains
            .get(&env.author())
            .map(Vec::as_slice)
            .unwrap_or_default();
        let seq = env.seq() as usize;
        if seq <= chain.len() {
            // Same author and seq, different content: a fork.
            let reason =
                "equivocation: another envelope already holds this author's seq".to_string();
            self.held.insert(id, env);
            self.quarantined.insert(id, reason.clone());
            return Outcome::Quarantined(reason);
        }
        if seq > chain.len() + 1 || (env.kind() != Kind::Membership && self.genesis.is_none()) {
            self.pending.push(env);
            return Outcome::Pending;
        }
        if env.body().prev != chain.last().copied() {
            let reason = "prev does not name the author's previous envelope".to_string();
            self.held.insert(id, env);
            self.quarantined.insert(id, reason.clone());
            return Outcome::Quarantined(reason);
        }
        let verdict = self.judge(&env);
        self.chains.entry(env.author()).or_default().push(id);
        let outcome = match verdict {
            Ok(()) => {
                if env.kind() == Kind::Content {
                    self.accepted_content.push(id);
                }
                Outcome::Accepted
            }
            Err(reason) => {
                self.quarantined.insert(id, reason.clone());
                Outcome::Quarantined(reason)
            }
        };
        self.held.insert(id, env);
        outcome
    }

    /// The authority check; applies membership effects when valid.
    fn judge(&mut self, env: &Envelope) -> Result<(), String> {
        let body = env.body();
        match body.kind {
            Kind::Membership => {
                let op: MembershipOp = postcard::from_bytes(&body.payload)
                    .map_err(|_| "malformed membership op".to_string())?;
                match op {
                    MembershipOp::Create { nonce, wraps } => {
                        if self.genesis.is_some() {
                            return Err("folder already created".into());
                        }
                        if body.seq != 1 || space_id_for(&body.author, &nonce) != self.id {
                            return Err("creation does not match the folder id".into());
                        }
                        self.genesis = Some(env.id());
                        self.epoch = Some(env.id());
                        self.members.insert(body.author, Role::Manager);
                        self.wraps = wraps.into_iter().map(|w| (w.device, w.sealed)).collect();
                        Ok(())
                    }
                }
            }
            Kind::Content => {
                if !self
                    .role_of(&body.author)
                    .is_some_and(Role::can_write_items)
                {
                    return Err("author has no write role in this folder".into());
                }
                if body.epoch != self.epoch {
                    return Err("content is not under the current key epoch".into());
                }
                Ok(())
            }
            Kind::Usage | Kind::Roster => {
                Err("envelope kind not valid in a folder space in this version".into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn owner_writes_and_content_decrypts() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let keys = DeviceKeys::generate(&mut rng);
        let key = FolderKey::generate(&mut rng);
        let (mut space, genesis) = Space::create(&keys, &key, &mut rng).unwrap();
        let env = space
            .seal_content(&keys, &key, b"change", &mut rng)
            .unwrap();
        assert_eq!(
            Space::open_content(&env, &space.folder_key(&keys).unwrap())
                .unwrap()
                .as_slice(),
            b"change"
        );

        // A replica fed the envelopes in reverse order ends in the same place.
        let mut other = Space::new(space.id());
        assert_eq!(other.ingest(env.clone()), Ok(Outcome::Pending));
        assert_eq!(other.ingest(genesis.clone()), Ok(Outcome::Accepted));
        assert_eq!(other.accepted_content().count(), 1);
        assert_eq!(other.ingest(env), Ok(Outcome::Duplicate));
        assert_eq!(other.version_vector(), space.version_vector());
    }

    #[test]
    fn stranger_content_is_quarantined_and_forgery_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let owner = DeviceKeys::generate(&mut rng);
        let key = FolderKey::generate(&mut rng);
        let (mut space, genesis) = Space::create(&owner, &key, &mut rng).unwrap();
        let stranger = DeviceKeys::generate(&mut rng);
        let body = EnvelopeBody {
            version: ENVELOPE_VERSION,
            space: space.id(),
            author: stranger.device_id(),
            seq: 1,
            prev: None,
            kind: Kind::Content,
            context: vec![genesis.id()],
            epoch: Some(genesis.id()),
            payload: vec![1, 2, 3],
        };
        let env = Envelope::sign(body.clone(), &stranger);
        assert!(matches!(space.ingest(env), Ok(Outcome::Quarantined(_))));
        assert_eq!(space.accepted_content().count(), 0);
        // Claiming to be the owner without the owner's key fails the signature.
        let forged = Envelope::sign(
            EnvelopeBody {
                author: owner.device_id(),
                ..body
            },
            &stranger,
        );
        assert_eq!(space.ingest(forged), Err(IngestError::BadSignature));
        assert!(stranger
            .open_folder_key(&space.wraps[&owner.device_id()])
            .is_err());
    }

    #[test]
    fn equivocation_is_quarantined() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let keys = DeviceKeys::generate(&mut rng);
        let key = FolderKey::generate(&mut rng);
        let (mut space, _) = Space::create(&keys, &key, &mut rng).unwrap();
        let first = space.seal_content(&keys, &key, b"a", &mut rng).unwrap();
        let twin = Envelope::sign(
            EnvelopeBody {
                payload: vec![0; 8],
                ..first.body().clone()
            },
            &keys,
        );
        assert!(
            matches!(space.ingest(twin), Ok(Outcome::Quarantined(r)) if r.contains("equivocation"))
        );
        assert_eq!(space.accepted_content().count(), 1);
    }
}
