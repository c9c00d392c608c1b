//! A space: the set of envelopes of one folder (plus its team's roster) or of
//! the team roster alone, and which of them take effect.
//!
//! Shaped like a sans-IO state machine: `ingest*` takes envelopes from
//! anywhere (this device, the store, a peer) and returns data outcomes;
//! commands (`seal_content`, `grant`, `remove`, `rotate`, `rewrap`,
//! `roster_op`) sign this device's next envelope and ingest it; getters
//! expose the accepted state. Acceptance itself lives in [`crate::accept`],
//! the per-op rule in [`crate::state`].

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};

use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use std::sync::Arc;

use crate::accept::{
    adds_no_right, evaluate_cached, extend_control, extend_roster_in_folder, Cache, ChangeTip,
    Evaluation, Limits, RosterJudgements, MAX_INCARNATIONS,
};
pub use crate::accept::{ChainHead, ChangeMeta, Reason};
use crate::crypto::{CryptoError, DeviceKeys, FolderKey};
use crate::envelope::{ChangeHeader, Envelope, EnvelopeBody, Kind, ENVELOPE_VERSION};
use crate::folder::actor_for;
use crate::ids::{DeviceId, EnvelopeId, SpaceId};
pub use crate::ops::{
    ChainLink, ControlOp, Cutoff, CutoffPoint, Cutoffs, KeyWrap, MembershipOp, Principal, Role,
    RosterOp, UserId,
};
use crate::state::{OpInfo, State};

/// What became of an envelope handed to [`Space::ingest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It takes effect (content: decrypt and apply it).
    Accepted,
    /// Already held.
    Duplicate,
    /// Waiting for an earlier envelope of its author, its context or its deps.
    Pending,
    /// Kept but without effect, for the given reason.
    Quarantined(Reason),
}

/// Envelopes refused outright (not kept): they prove nothing about anyone.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum IngestError {
    /// The signature does not verify under the claimed author's key.
    #[error("envelope signature does not verify")]
    BadSignature,
    /// The envelope belongs to another space (nor is it this folder's team roster).
    #[error("envelope is for another space")]
    WrongSpace,
    /// Its author is no device this space names (no founding, grant or
    /// roster entry mentions it): it could never take effect.
    #[error("envelope from a device this space does not know")]
    UnknownAuthor,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpaceError {
    /// This device holds no wrap of the epoch key (nor a chain to it).
    #[error("this device has no key for the folder")]
    NoKey,
    /// The folder has not been created (its first envelope is missing).
    #[error("folder creation envelope is missing")]
    NotCreated,
    /// This device may not do this here.
    #[error("permission denied: writing items needs the Folder Manager or Item Manager role")]
    PermissionDenied,
    /// A member left since the current epoch began: call [`Space::rotate`] first.
    #[error("a member was removed: the folder key must rotate before new content")]
    RotationDue,
    /// The op would not take effect, for this reason (it was not published).
    #[error("refused: {0}")]
    Refused(String),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("malformed membership payload")]
    MalformedPayload,
    /// The bytes are not an Automerge change of this device's actor.
    #[error("not an Automerge change of this device")]
    MalformedChange,
    /// The change is written as an older incarnation than the folder requires.
    #[error("the change must be written as incarnation {need} or later")]
    StaleIncarnation { need: u32 },
    /// A dep of the change is in no held content envelope this device can read.
    #[error("the change depends on a change this device does not hold")]
    UnknownDep,
}

/// What an [`Space::ingest_batch`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Outcome per envelope, in input order (refused ones as errors).
    pub outcomes: Vec<Result<Outcome, IngestError>>,
    /// Previously accepted envelopes that no longer take effect (a late removal).
    pub revoked: Vec<EnvelopeId>,
    /// Whether accepted content shrank: rebuild the document from
    /// [`Space::accepted_content`] instead of applying the new changes (a
    /// new order alone does not need it: a document is the set of its
    /// changes).
    pub rebuild: bool,
    /// Whether the batch took a whole evaluation (false: each of its
    /// envelopes extended a chain and took the fast path).
    pub evaluated: bool,
}

/// Derives a space's id from its founding op and that op's author: the op
/// carries a random nonce, and binding the whole op means a space has
/// exactly one founding envelope (ids hash the envelope body, which the
/// founder cannot vary without changing the space), so nobody — the
/// founder included — can found a second, competing history under it.
pub fn space_id_for(author: &DeviceId, founding: &ControlOp) -> SpaceId {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"coffer/space/v3\0");
    hasher.update(&author.0);
    hasher.update(&founding.encode());
    SpaceId(*hasher.finalize().as_bytes())
}

/// A short hash of (space, author, seq), to notice forks cheaply.
fn slot(space: &SpaceId, author: &DeviceId, seq: u64) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(&space.0);
    h.update(&author.0);
    h.update(&seq.to_le_bytes());
    let b = h.finalize();
    u64::from_le_bytes(b.as_bytes()[..8].try_into().expect("8 bytes"))
}

fn chain_aad(space: &SpaceId, epoch: &EnvelopeId) -> Vec<u8> {
    let mut aad = b"coffer/epoch-chain/v1\0".to_vec();
    aad.extend_from_slice(&space.0);
    aad.extend_from_slice(&epoch.0);
    aad
}

/// One space's envelopes and acceptance state.
#[derive(Clone, Debug)]
pub struct Space {
    id: SpaceId,
    team: Option<SpaceId>,
    held: HashMap<EnvelopeId, Envelope>,
    /// Per (space, author), the held envelope with the highest (seq, id).
    last: HashMap<(SpaceId, DeviceId), (u64, EnvelopeId)>,
    /// Change hashes this space was told or learnt (key holders only):
    /// they name a new change's deps. In a replica only this device's own
    /// changes and the deps it named (the open folder keeps every applied
    /// change's hash); `learn_metas` fills it for all accepted content.
    /// Acceptance never reads it. Only the hash is kept: the rest of a
    /// change's metadata is in its envelope's header (a ChangeMeta each
    /// took ≈ 230 bytes, 2.3 MB for 10,000 edits).
    metas: HashMap<EnvelopeId, [u8; 32]>,
    /// Automerge change hash -> held content envelope, from `metas`.
    by_hash: HashMap<[u8; 32], EnvelopeId>,
    eval: Evaluation,
    /// Judgements and context states of earlier evaluations (a pure speed-up).
    cache: Cache,
    /// Devices some held control op names: founders, roster devices,
    /// device grants. Envelopes of anybody else are refused.
    known: HashSet<DeviceId>,
    /// Envelope ids named by held cutoffs: their arrival changes coverage.
    cutoff_ids: HashSet<EnvelopeId>,
    /// What envelopes not accepted (pending, or quarantined for a reason
    /// an endorsement may lift) wait for: the envelopes they name as prev,
    /// context or dep. An envelope among them takes the slow path, whose
    /// evaluation may accept what waited — through several steps (a change
    /// built on a quarantined one missing a dep). Rebuilt with each
    /// evaluation.
    awaited: HashSet<EnvelopeId>,
    /// Per chain, the lowest seq of such an envelope: an envelope of the
    /// chain at or above it may fork it or fill what it waits for, and
    /// takes the slow path. Below it cannot: a pending control op of the
    /// author (a key wrap sent ahead of the content before it) no longer
    /// sends a whole initial sync down the slow path.
    awaiting_chains: HashMap<(SpaceId, DeviceId), u64>,
    /// Groups a held membership op grants to or removes: adding a user to
    /// another group gives nobody a right in this folder.
    groups_named: HashSet<String>,
    /// (space, author, seq) slots held, to notice forks.
    slots: HashSet<u64>,
    /// Held control envelopes per chain (for the control fast path's quota).
    control_counts: HashMap<(SpaceId, DeviceId), u64>,
    /// Bytes of the held envelopes of this space (not the roster's that a
    /// folder of a team holds too): what a relay counts against its limit.
    own_bytes: u64,
    /// Content whose change failed to parse: never parsed again.
    unparsable: HashSet<EnvelopeId>,
    limits: Limits,
}

impl Space {
    /// A folder space outside any team (a personal folder).
    pub fn new(id: SpaceId) -> Self {
        Self::new_in_team(id, None)
    }

    /// A folder space of `team` (or, with `team == Some(id)`, the roster itself).
    pub fn new_in_team(id: SpaceId, team: Option<SpaceId>) -> Self {
        Self {
            id,
            team,
            held: HashMap::new(),
            own_bytes: 0,
            last: HashMap::new(),
            metas: HashMap::new(),
            by_hash: HashMap::new(),
            eval: Evaluation::default(),
            cache: Cache::default(),
            known: HashSet::new(),
            cutoff_ids: HashSet::new(),
            awaited: HashSet::new(),
            awaiting_chains: HashMap::new(),
            groups_named: HashSet::new(),
            slots: HashSet::new(),
            control_counts: HashMap::new(),
            unparsable: HashSet::new(),
            limits: Limits::default(),
        }
    }

    /// The same space judged with other [`Limits`] (tests of the bounds).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self.reevaluate();
        self
    }

    /// The team roster space.
    pub fn new_roster(team: SpaceId) -> Self {
        Self::new_in_team(team, Some(team))
    }

    /// Founds a folder owned by `keys`' device, with `folder_key` as its first
    /// epoch key. Returns the space and the founding envelope (already held).
    pub fn create(
        keys: &DeviceKeys,
        folder_key: &FolderKey,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(Space, Envelope), SpaceError> {
        Self::create_in_team(keys, folder_key, None, rng)
    }

    /// Founds a folder that belongs to `team` (its users and groups may be members).
    pub fn create_in_team(
        keys: &DeviceKeys,
        folder_key: &FolderKey,
        team: Option<&Space>,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(Space, Envelope), SpaceError> {
        let mut nonce = [0u8; 16];
        rng.fill_bytes(&mut nonce);
        let author = keys.device_id();
        let wraps = vec![KeyWrap {
            device: author,
            sealed: folder_key.seal_to(&keys.exchange_public(), rng)?,
        }];
        let op = ControlOp::Membership(MembershipOp::Found {
            nonce,
            wraps,
            exchange: keys.exchange_public(),
            team: team.map(Space::id),
        });
        let id = space_id_for(&author, &op);
        let mut space = Space::new_in_team(id, team.map(Space::id));
        if let Some(team) = team {
            if let Some(j) = team.roster_judgements() {
                space.share_roster_judgements(&j);
            }
            space.ingest_batch(team.held.values().cloned().collect());
        }
        let (env, outcome) = space.write_control(keys, &op);
        if outcome != Outcome::Accepted {
            return Err(SpaceError::Refused(format!("{outcome:?}")));
        }
        Ok((space, env))
    }

    /// Founds a team roster with `founder` as its founding admin and this
    /// device (connecting with the Ed25519 key `transport`) as the
    /// founder's first device.
    pub fn create_team(
        keys: &DeviceKeys,
        founder: UserId,
        name: &str,
        transport: [u8; 32],
        rng: &mut impl CryptoRngCore,
    ) -> Result<(Space, Envelope), SpaceError> {
        let mut nonce = [0u8; 16];
        rng.fill_bytes(&mut nonce);
        let op = ControlOp::Roster(RosterOp::Found {
            nonce,
            name: name.to_string(),
            founder,
            exchange: keys.exchange_public(),
            transport,
        });
        let id = space_id_for(&keys.device_id(), &op);
        let mut space = Space::new_roster(id);
        let (env, outcome) = space.write_control(keys, &op);
        if outcome != Outcome::Accepted {
            return Err(SpaceError::Refused(format!("{outcome:?}")));
        }
        Ok((space, env))
    }

    pub fn id(&self) -> SpaceId {
        self.id
    }

    /// The team roster whose envelopes this space also judges.
    pub fn team(&self) -> Option<SpaceId> {
        self.team
    }

    pub fn is_roster(&self) -> bool {
        self.team == Some(self.id)
    }

    /// The membership state (roster and folder) of the accepted control ops.
    pub fn state(&self) -> &State {
        &self.eval.state
    }

    /// The same state, shared (cheap to keep: its maps are persistent).
    pub fn state_arc(&self) -> Arc<State> {
        self.eval.state.clone()
    }

    pub fn role_of(&self, device: &DeviceId) -> Option<Role> {
        self.eval.state.role_of(device)
    }

    /// May this device change membership (Folder Manager or team admin)?
    pub fn can_manage(&self, device: &DeviceId) -> bool {
        self.eval.state.rights(device).manager
    }

    /// Whether this folder was founded outside any team (a personal
    /// folder, shared in place or not): the acceptance rule refuses its
    /// [`MembershipOp::Delete`].
    pub fn founded_outside_team(&self) -> bool {
        self.eval.state.folder.founded_outside_team
    }

    /// Whether `device` may delete this folder (`MembershipOp::Delete`):
    /// it manages it and, for a folder founded outside any team (a
    /// personal folder), holds a direct device grant as Folder Manager
    /// (its owner's devices; not a team admin, nor a user or group grant).
    pub fn may_delete(&self, device: &DeviceId) -> bool {
        let state = &self.eval.state;
        self.can_manage(device)
            && (!state.folder.founded_outside_team
                || state
                    .folder
                    .grants
                    .get(&Principal::Device(*device))
                    .is_some_and(|g| g.role == Role::Manager))
    }

    /// Whether an accepted [`MembershipOp::Delete`] deleted this folder.
    pub fn is_deleted(&self) -> bool {
        self.eval.state.folder.deleted.is_some()
    }

    /// Whether `device` holds no role here because it left by itself: an
    /// accepted removal written by it (or by another device of its user)
    /// names it, as its device or its user.
    /// A folder left so is not shown on that device; one whose member was
    /// removed by a manager still shows what it could read before.
    pub fn left_by_itself(&self, device: &DeviceId) -> bool {
        if self.role_of(device).is_some() {
            return false;
        }
        let user = self.eval.state.user_of(device).cloned();
        self.held().any(|e| {
            e.kind() == Kind::Membership
                && (e.author() == *device
                    || user.is_some() && self.eval.state.user_of(&e.author()) == user.as_ref())
                && self.is_accepted(&e.id())
                && match ControlOp::decode(e.kind(), &e.body().payload) {
                    Ok(ControlOp::Membership(MembershipOp::Remove {
                        principal,
                        to: None,
                        ..
                    })) => match principal {
                        Principal::Device(d) => d == *device,
                        Principal::User(u) => Some(u) == user,
                        Principal::Group(_) => false,
                    },
                    _ => false,
                }
        })
    }

    /// Every member device and its role.
    pub fn members(&self) -> BTreeMap<DeviceId, Role> {
        self.eval
            .state
            .member_devices()
            .into_keys()
            .filter_map(|d| Some((d, self.role_of(&d)?)))
            .collect()
    }

    /// {device -> highest contiguous seq} of this space's own envelopes.
    pub fn version_vector(&self) -> BTreeMap<DeviceId, u64> {
        self.version_vector_of(&self.id)
    }

    /// {device -> highest contiguous seq} of `space` (this one or its roster).
    pub fn version_vector_of(&self, space: &SpaceId) -> BTreeMap<DeviceId, u64> {
        self.eval
            .tips
            .iter()
            .filter(|((s, _), _)| s == space)
            .map(|((_, d), (seq, _))| (*d, *seq))
            .collect()
    }

    /// {device -> (seq, id)} of every chain's linked envelope of the highest seq.
    pub fn chain_tips(&self) -> BTreeMap<(SpaceId, DeviceId), (u64, EnvelopeId)> {
        self.eval.tips.iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// Every chain's heads: the linked envelopes nothing links after (one
    /// per chain, unless its device forked it).
    pub fn chain_heads(&self) -> &HashMap<(SpaceId, DeviceId), Vec<ChainHead>> {
        &self.eval.heads
    }

    /// Chains whose device signed two envelopes at one seq: evidence to
    /// show an admin, who should revoke that device.
    pub fn forked(&self) -> &BTreeSet<(SpaceId, DeviceId)> {
        &self.eval.forked
    }

    /// The cutoff a removal written now records: the last envelope of each
    /// device's chain in this space that this device holds.
    pub fn cutoff(&self) -> Cutoff {
        self.cutoff_of(&self.id)
    }

    /// [`Space::cutoff`] of `space` (this one, or its roster).
    pub fn cutoff_of(&self, space: &SpaceId) -> Cutoff {
        self.eval
            .tips
            .iter()
            .filter(|((s, _), _)| s == space)
            .map(|((_, d), (seq, id))| (*d, CutoffPoint { seq: *seq, id: *id }))
            .collect()
    }

    /// Held envelopes that do not take effect, with the reason.
    pub fn quarantined(&self) -> &BTreeMap<EnvelopeId, Reason> {
        &self.eval.quarantined
    }

    pub fn pending_count(&self) -> usize {
        self.eval.pending.len()
    }

    pub fn pending(&self) -> &BTreeSet<EnvelopeId> {
        &self.eval.pending
    }

    pub fn is_accepted(&self, id: &EnvelopeId) -> bool {
        self.eval.accepted.contains(id)
    }

    /// Invalid content kept because another user's accepted change built on it.
    pub fn endorsed_by(&self) -> &BTreeMap<EnvelopeId, EnvelopeId> {
        &self.eval.endorsed_by
    }

    pub fn get(&self, id: &EnvelopeId) -> Option<&Envelope> {
        self.held.get(id)
    }

    /// Every held envelope (accepted, quarantined and pending), to forward.
    pub fn held(&self) -> impl Iterator<Item = &Envelope> {
        self.held.values()
    }

    /// Accepted control ops nobody built on yet.
    pub fn control_heads(&self) -> &[EnvelopeId] {
        &self.eval.control_heads
    }

    /// The ids of [`Space::accepted_content`], in its order.
    pub fn content_order(&self) -> &[EnvelopeId] {
        &self.eval.content_order
    }

    /// Accepted content envelopes, Automerge deps first.
    pub fn accepted_content(&self) -> impl Iterator<Item = &Envelope> {
        self.eval
            .content_order
            .iter()
            .filter_map(|id| self.held.get(id))
    }

    /// Accepted usage events.
    pub fn accepted_usage(&self) -> impl Iterator<Item = &Envelope> {
        self.eval
            .usage_order
            .iter()
            .filter_map(|id| self.held.get(id))
    }

    /// The outcome an already held envelope has now.
    pub fn outcome_of(&self, id: &EnvelopeId) -> Option<Outcome> {
        if self.eval.accepted.contains(id) {
            Some(Outcome::Accepted)
        } else if let Some(r) = self.eval.quarantined.get(id) {
            Some(Outcome::Quarantined(r.clone()))
        } else if self.held.contains_key(id) {
            Some(Outcome::Pending)
        } else {
            None
        }
    }

    /// Whether new content needs [`Space::rotate`] first.
    pub fn rotation_due(&self) -> bool {
        self.eval.state.rotation_due()
    }

    /// Member devices lacking the current epoch key: call [`Space::rewrap`].
    pub fn missing_wraps(&self) -> Vec<DeviceId> {
        self.eval
            .state
            .missing_wraps()
            .into_iter()
            .map(|(d, _)| d)
            .collect()
    }

    pub fn current_epoch(&self) -> Option<EnvelopeId> {
        self.eval.state.folder.current_epoch
    }

    /// A canonical digest of the accepted state: accepted, quarantined and
    /// pending ids, reasons, and the membership state. Equal on replicas
    /// holding equal sets.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(b"coffer/space-digest/v1\0");
        for id in &self.eval.accepted {
            h.update(&id.0);
        }
        h.update(b"q");
        for (id, r) in &self.eval.quarantined {
            h.update(&id.0);
            h.update(r.to_string().as_bytes());
        }
        h.update(b"p");
        for id in &self.eval.pending {
            h.update(&id.0);
        }
        h.update(
            &postcard::to_stdvec(&*self.eval.state).expect("serialising to a Vec cannot fail"),
        );
        *h.finalize().as_bytes()
    }

    /// Opens the current epoch key with this device's keys.
    pub fn folder_key(&self, keys: &DeviceKeys) -> Result<FolderKey, SpaceError> {
        let epoch = self.current_epoch().ok_or(SpaceError::NotCreated)?;
        self.epoch_key(keys, &epoch)
    }

    /// Opens any epoch's key: directly from a wrap, or through the key chain
    /// from a later epoch this device holds.
    pub fn epoch_key(
        &self,
        keys: &DeviceKeys,
        epoch: &EnvelopeId,
    ) -> Result<FolderKey, SpaceError> {
        let mut visited = HashSet::new();
        self.epoch_key_inner(keys, epoch, &mut visited)
    }

    fn epoch_key_inner(
        &self,
        keys: &DeviceKeys,
        epoch: &EnvelopeId,
        visited: &mut HashSet<EnvelopeId>,
    ) -> Result<FolderKey, SpaceError> {
        if !visited.insert(*epoch) {
            return Err(SpaceError::NoKey);
        }
        let epochs = &self.eval.state.folder.epochs;
        if let Some(sealed) = epochs
            .get(epoch)
            .and_then(|e| e.wraps.get(&keys.device_id()))
        {
            return Ok(keys.open_folder_key(sealed)?);
        }
        for (later, e) in epochs {
            for link in e.chain.iter().filter(|l| &l.epoch == epoch) {
                if let Ok(k) = self.epoch_key_inner(keys, later, visited) {
                    if let Ok(bytes) = k.decrypt(&link.sealed, &chain_aad(&self.id, epoch)) {
                        if let Ok(b) = <[u8; 32]>::try_from(bytes.as_slice()) {
                            return Ok(FolderKey::from_bytes(b));
                        }
                    }
                }
            }
        }
        Err(SpaceError::NoKey)
    }

    /// Every epoch key this device can open, by epoch.
    pub fn epoch_keys(&self, keys: &DeviceKeys) -> BTreeMap<EnvelopeId, FolderKey> {
        self.eval
            .state
            .folder
            .epochs
            .keys()
            .filter_map(|e| Some((*e, self.epoch_key(keys, e).ok()?)))
            .collect()
    }

    /// Decrypts a content envelope's Automerge change.
    pub fn open_content(
        env: &Envelope,
        folder_key: &FolderKey,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let body = env.body();
        let aad = EnvelopeBody::payload_aad(&body.space, &body.author, body.seq, body.kind);
        folder_key.decrypt(&body.payload, &aad)
    }

    /// Decrypts a content envelope with the key of its own epoch.
    pub fn open(
        &self,
        keys: &DeviceKeys,
        env: &Envelope,
    ) -> Result<Zeroizing<Vec<u8>>, SpaceError> {
        let epoch = env.body().epoch.ok_or(SpaceError::NoKey)?;
        let key = self.epoch_key(keys, &epoch)?;
        Ok(Self::open_content(env, &key)?)
    }

    /// Decrypts every held content envelope this device can read and records
    /// its change metadata (to name deps of new changes and to check
    /// payloads with [`Space::binding_matches`]; acceptance does not need
    /// it). Returns how many were newly learned.
    pub fn learn_metas(&mut self, keys: &DeviceKeys) -> usize {
        let keys_by_epoch = self.epoch_keys(keys);
        let mut learned = Vec::new();
        let mut failed = Vec::new();
        // Accepted content only: a quarantined change (a Folder Member's, a
        // bomb) is never parsed, and one that failed once is not parsed again.
        for env in self.accepted_content() {
            if self.metas.contains_key(&env.id()) || self.unparsable.contains(&env.id()) {
                continue;
            }
            // No key for its epoch (yet): try again once one arrives.
            let Some(key) = env.body().epoch.and_then(|e| keys_by_epoch.get(&e)) else {
                continue;
            };
            match Self::open_content(env, key)
                .ok()
                .and_then(|c| ChangeMeta::from_change(&c))
            {
                Some(meta) => learned.push((env.id(), meta.hash)),
                None => failed.push(env.id()),
            }
        }
        self.unparsable.extend(failed);
        let n = learned.len();
        self.supply_hashes(learned);
        n
    }

    /// The Automerge hash of a content envelope's change, as recorded from
    /// its decrypted metadata.
    pub fn change_hash(&self, id: &EnvelopeId) -> Option<[u8; 32]> {
        self.metas.get(id).copied()
    }

    /// Records decrypted change metadata of held content envelopes.
    pub fn supply_metas(&mut self, metas: impl IntoIterator<Item = (EnvelopeId, ChangeMeta)>) {
        for (id, meta) in metas {
            self.record_meta(id, meta);
        }
    }

    fn record_meta(&mut self, id: EnvelopeId, meta: ChangeMeta) {
        self.record_hash(id, meta.hash);
    }

    /// Records the change hashes of held content envelopes.
    pub(crate) fn supply_hashes(
        &mut self,
        hashes: impl IntoIterator<Item = (EnvelopeId, [u8; 32])>,
    ) {
        for (id, hash) in hashes {
            self.record_hash(id, hash);
        }
    }

    /// Records the change hash of a held content envelope.
    pub(crate) fn record_hash(&mut self, id: EnvelopeId, hash: [u8; 32]) {
        if self.metas.contains_key(&id) {
            return;
        }
        // One change in two envelopes (a fork): the one accepted names it.
        if !self
            .by_hash
            .get(&hash)
            .is_some_and(|old| self.eval.accepted.contains(old))
        {
            self.by_hash.insert(hash, id);
        }
        self.metas.insert(id, hash);
    }

    /// This device's current incarnation in the folder: write changes with
    /// `FolderDoc::with_incarnation(device, space.incarnation(&device))` (or
    /// later, e.g. after losing changes of one's own to a fork).
    pub fn incarnation(&self, device: &DeviceId) -> u32 {
        self.eval.state.incarnation(device)
    }

    /// The plaintext header of a content envelope carrying `change` by
    /// `keys`' device: its incarnation, Automerge seq and the envelopes of
    /// its deps. Learns metadata (decrypting with `keys`) if a dep is not
    /// known yet.
    pub fn change_header(
        &mut self,
        keys: &DeviceKeys,
        change: &[u8],
    ) -> Result<ChangeHeader, SpaceError> {
        let meta = ChangeMeta::from_change(change).ok_or(SpaceError::MalformedChange)?;
        self.header_of(keys, &meta)
    }

    /// [`Space::change_header`] from the change's metadata.
    fn header_of(
        &mut self,
        keys: &DeviceKeys,
        meta: &ChangeMeta,
    ) -> Result<ChangeHeader, SpaceError> {
        let author = keys.device_id();
        let incarnation = meta
            .incarnation(&author)
            .ok_or(SpaceError::MalformedChange)?;
        let need = self.incarnation(&author);
        if incarnation < need {
            return Err(SpaceError::StaleIncarnation { need });
        }
        if meta.deps.iter().any(|h| self.accepted_of_hash(h).is_none()) {
            self.learn_metas(keys);
        }
        let mut deps = Vec::with_capacity(meta.deps.len());
        for h in &meta.deps {
            deps.push(self.accepted_of_hash(h).ok_or(SpaceError::UnknownDep)?);
        }
        deps.sort();
        deps.dedup();
        Ok(ChangeHeader {
            incarnation,
            seq: meta.seq,
            deps,
        })
    }

    /// The accepted envelope carrying the change of hash `h`. Two carry one
    /// change only where its author forked, and which one is accepted may
    /// change as envelopes arrive: `by_hash` names one, and where that one
    /// is no longer accepted, the (lowest) accepted one is looked for.
    fn accepted_of_hash(&self, h: &[u8; 32]) -> Option<EnvelopeId> {
        match self.by_hash.get(h) {
            Some(id) if self.eval.accepted.contains(id) => Some(*id),
            _ => self
                .metas
                .iter()
                .filter(|(id, hash)| *hash == h && self.eval.accepted.contains(id))
                .map(|(id, _)| *id)
                .min(),
        }
    }

    /// Whether a decrypted change matches its envelope's header: actor of
    /// the header's incarnation, same Automerge seq, and (where the deps'
    /// metadata is known) the same deps. A mismatching change is accepted
    /// (acceptance reads headers) but must not be applied: the daemon skips
    /// it, as every key holder does, so documents stay identical.
    pub fn binding_matches(&self, env: &Envelope, change: &[u8]) -> bool {
        let (Some(h), Some(meta)) = (&env.body().change, ChangeMeta::from_change(change)) else {
            return false;
        };
        if meta.actor != actor_for(&env.author(), h.incarnation).to_bytes() || meta.seq != h.seq {
            return false;
        }
        let known: Option<BTreeSet<EnvelopeId>> = meta
            .deps
            .iter()
            .map(|d| self.by_hash.get(d).copied())
            .collect();
        known.is_none_or(|k| k.into_iter().eq(h.deps.iter().copied()))
    }

    /// Re-judges the held set from scratch. Afterwards
    /// [`Space::accepted_content`] is in its canonical order (the fast path
    /// appends in arrival order, which is also deps-first).
    pub fn refresh(&mut self) {
        self.reevaluate();
    }

    fn reevaluate(&mut self) {
        self.eval = evaluate_cached(self.id, self.team, &self.held, &mut self.cache, self.limits);
        self.index_awaited();
    }

    /// Rebuilds [`Space::awaited`] from the evaluation.
    fn index_awaited(&mut self) {
        self.awaited.clear();
        self.awaiting_chains.clear();
        let mut linked: HashMap<EnvelopeId, bool> = HashMap::new();
        for id in &self.eval.pending {
            let Some(env) = self.held.get(id) else {
                continue;
            };
            let body = env.body();
            let lowest = self
                .awaiting_chains
                .entry((body.space, body.author))
                .or_insert(body.seq);
            *lowest = (*lowest).min(body.seq);
            self.awaited.extend(body.prev);
            // Below a gap of its chain nothing else it names matters until
            // the gap is filled (by its chain, awaited above): a forger's
            // unlinked envelopes naming 1,000 deps each cost nothing here.
            if self.is_linked(*id, &mut linked) {
                self.awaited.extend(body.context.iter().copied());
                if let Some(h) = &body.change {
                    self.awaited.extend(h.deps.iter().copied());
                }
            }
        }
        // A quarantined change an endorsement may lift is judged, so
        // linked, and below any envelope that extends its chain: only what
        // it names matters (its chain stays on the fast path).
        for (id, _) in self.eval.quarantined.iter().filter(|(_, r)| r.endorsable()) {
            let Some(env) = self.held.get(id) else {
                continue;
            };
            let body = env.body();
            self.awaited.extend(body.prev);
            self.awaited.extend(body.context.iter().copied());
            if let Some(h) = &body.change {
                self.awaited.extend(h.deps.iter().copied());
            }
        }
    }

    /// Whether the held envelope `id`'s chain is held all the way down
    /// (a judged envelope is); `memo` keeps the answers of one pass.
    fn is_linked(&self, id: EnvelopeId, memo: &mut HashMap<EnvelopeId, bool>) -> bool {
        let mut path = Vec::new();
        let mut at = id;
        let linked = loop {
            if let Some(known) = memo.get(&at) {
                break *known;
            }
            if self.eval.accepted.contains(&at) || self.eval.quarantined.contains_key(&at) {
                break true;
            }
            let Some(env) = self.held.get(&at) else {
                break false;
            };
            path.push(at);
            match env.body().prev {
                Some(prev) => at = prev,
                None => break true,
            }
        };
        for step in path {
            memo.insert(step, linked);
        }
        linked
    }

    fn check(&self, env: &Envelope) -> Result<(), IngestError> {
        if env.space() != self.id && Some(env.space()) != self.team {
            return Err(IngestError::WrongSpace);
        }
        if !self.knows(env) {
            return Err(IngestError::UnknownAuthor);
        }
        if !env.verify_signature() {
            return Err(IngestError::BadSignature);
        }
        Ok(())
    }

    /// Whether `env`'s author is a device this space names, or `env` is the
    /// founding op its space id binds (which names its author).
    fn knows(&self, env: &Envelope) -> bool {
        if self.known.contains(&env.author()) {
            return true;
        }
        if env.seq() != 1 || !matches!(env.kind(), Kind::Membership | Kind::Roster) {
            return false;
        }
        ControlOp::decode(env.kind(), &env.body().payload)
            .is_ok_and(|op| op.is_founding() && space_id_for(&env.author(), &op) == env.space())
    }

    /// Devices this space names: envelopes from any other are refused.
    pub fn known_devices(&self) -> &HashSet<DeviceId> {
        &self.known
    }

    /// This roster's judgements of its ops, for its folders
    /// ([`Space::share_roster_judgements`]).
    pub fn roster_judgements(&self) -> Option<RosterJudgements> {
        self.is_roster()
            .then(|| self.cache.roster_judgements(self.id))
    }

    /// Takes the team roster's judgements of its ops (see
    /// [`RosterJudgements`]): a folder loaded with that roster's envelopes
    /// then judges none of them again. Those of another team are ignored.
    pub fn share_roster_judgements(&mut self, roster: &RosterJudgements) {
        if let Some(team) = self.team.filter(|t| *t != self.id) {
            self.cache.share_roster(team, roster);
        }
    }

    /// Takes in one envelope from anywhere (this device, the store, a peer).
    pub fn ingest(&mut self, env: Envelope) -> Result<Outcome, IngestError> {
        self.ingest_with_meta(env, None)
    }

    /// Takes in one envelope with its change metadata if the caller could
    /// decrypt it (see [`ChangeMeta::from_change`]).
    pub fn ingest_with_meta(
        &mut self,
        env: Envelope,
        meta: Option<ChangeMeta>,
    ) -> Result<Outcome, IngestError> {
        if env.space() != self.id && Some(env.space()) != self.team {
            return Err(IngestError::WrongSpace);
        }
        if self.held.contains_key(&env.id()) {
            return Ok(Outcome::Duplicate);
        }
        self.check(&env)?;
        let id = env.id();
        if self.fast_accept(&env) {
            self.accept_fast(&env);
            if let Some(m) = meta {
                self.record_meta(id, m);
            }
            self.hold(env);
            return Ok(Outcome::Accepted);
        }
        if let Some(outcome) = self.fast_control(&env) {
            self.hold(env);
            return Ok(outcome);
        }
        self.hold(env);
        if let Some(m) = meta {
            self.record_meta(id, m);
        }
        self.reevaluate();
        Ok(self.outcome_of(&id).unwrap_or(Outcome::Pending))
    }

    /// The control fast path (see [`crate::accept`]): an op that extends
    /// its author's unforked chain and cites every current control head,
    /// which nothing pending waits for. Judged against the current state
    /// alone; `None` sends it to the full evaluation.
    fn fast_control(&mut self, env: &Envelope) -> Option<Outcome> {
        let body = env.body();
        if !matches!(body.kind, Kind::Membership | Kind::Roster) {
            return None;
        }
        let key = (body.space, body.author);
        if self.eval.forked.contains(&key) || self.waited_for(env) {
            return None;
        }
        let chained = match self.eval.tips.get(&key) {
            None => body.seq == 1 && body.prev.is_none(),
            Some((seq, id)) => body.seq == seq + 1 && body.prev == Some(*id),
        };
        if !chained || self.last.get(&key).is_some_and(|(seq, _)| *seq >= body.seq) {
            return None;
        }
        if let Some(p) = body.prev.and_then(|p| self.held.get(&p)) {
            // Monotone authors: the previous envelope's context must be
            // within this one's, which is every current head: it is if
            // nothing it cites is pending or unknown.
            let known = p
                .body()
                .context
                .iter()
                .all(|c| self.held.contains_key(c) && !self.eval.pending.contains(c));
            if !known || self.eval.pending.contains(&p.id()) {
                return None;
            }
        }
        let op = ControlOp::decode(body.kind, &body.payload).ok()?;
        let before = self.control_counts.get(&key).copied().unwrap_or(0);
        let verdict = match extend_control(
            &mut self.eval,
            &mut self.cache,
            (env, &op, before),
            (self.id, self.team),
            self.limits,
        ) {
            Some(v) => v,
            None => {
                // A roster op reaching a folder whose own ops are concurrent
                // with it: only one no removal could touch.
                if !self.adds_no_right_here(&op)
                    || self.cutoff_ids.contains(&env.id())
                    || !self.removals_spare(&op, &body.author)
                {
                    return None;
                }
                extend_roster_in_folder(
                    &mut self.eval,
                    &mut self.cache,
                    (env, &op, before),
                    (self.id, self.team),
                    self.limits,
                )?
            }
        };
        let id = env.id();
        self.eval.tips.insert(key, (body.seq, id));
        self.eval.heads.insert(
            key,
            vec![ChainHead {
                seq: body.seq,
                id,
                linked: true,
            }],
        );
        Some(match verdict {
            Ok(()) => {
                self.eval.accepted.insert(id);
                Outcome::Accepted
            }
            Err(reason) => {
                self.eval.quarantined.insert(id, reason.clone());
                Outcome::Quarantined(reason)
            }
        })
    }

    /// Whether a roster op gives no device a right in this folder: one
    /// of [`adds_no_right`], or a user added to a group no held membership
    /// op of this folder names.
    fn adds_no_right_here(&self, op: &ControlOp) -> bool {
        adds_no_right(op)
            || matches!(op, ControlOp::Roster(RosterOp::AddToGroup { group, .. })
                if !self.groups_named.contains(group))
    }

    /// Whether no valid removal is aimed at the author of a roster op
    /// (which a concurrent folder removal might void) or, for a new
    /// device, at that device or its user (which would count it removed):
    /// the roster fast path of a folder is only taken when none is.
    fn removals_spare(&self, op: &ControlOp, author: &DeviceId) -> bool {
        let author_user = self.eval.state.team.devices.get(author).map(|r| &r.user);
        let (new_device, new_user) = match op {
            ControlOp::Roster(RosterOp::AddDevice { device, user, .. }) => {
                (Some(device), Some(user))
            }
            _ => (None, None),
        };
        // A group's deletion counts every device of its users removed.
        let joins_group = matches!(op, ControlOp::Roster(RosterOp::AddToGroup { .. }));
        self.eval.removals.iter().all(|(rid, _)| {
            let Some(r) = self.held.get(rid) else {
                return false;
            };
            let Ok(removal) = ControlOp::decode(r.kind(), &r.body().payload) else {
                return false;
            };
            match &removal {
                ControlOp::Membership(MembershipOp::Remove { principal, .. }) => match principal {
                    Principal::Device(d) => d != author && Some(d) != new_device,
                    Principal::User(u) => Some(u) != author_user && Some(u) != new_user,
                    Principal::Group(_) => false,
                },
                // Roster removals are in the op's past (it cites every
                // roster head): they void nothing of it, but may count a
                // new device of their target removed.
                ControlOp::Roster(RosterOp::RevokeDevice { device, .. }) => {
                    Some(device) != new_device
                }
                ControlOp::Roster(
                    RosterOp::RemoveUser { user, .. }
                    | RosterOp::RemoveAdmin { user, .. }
                    | RosterOp::RemoveFromGroup { user, .. },
                ) => Some(user) != new_user,
                ControlOp::Roster(RosterOp::DeleteGroup { .. }) => {
                    new_device.is_none() && !joins_group
                }
                _ => false,
            }
        })
    }

    /// Whether content not accepted may wait for `env` (see
    /// [`Space::awaited`]).
    fn waited_for(&self, env: &Envelope) -> bool {
        let body = env.body();
        self.awaiting_chains
            .get(&(body.space, body.author))
            .is_some_and(|lowest| body.seq >= *lowest)
            || self.awaited.contains(&env.id())
    }

    /// Records content [`Space::fast_accept`] took as a full evaluation
    /// would: the chain's tip and head, accepted, last in content order.
    fn accept_fast(&mut self, env: &Envelope) {
        let id = env.id();
        let key = (env.space(), env.author());
        self.eval.tips.insert(key, (env.seq(), id));
        // It replaces its prev as a head; a held envelope above a gap of
        // the chain (pending) stays one, as an evaluation keeps it.
        let heads = self.eval.heads.entry(key).or_default();
        heads.retain(|h| Some(h.id) != env.body().prev);
        heads.push(ChainHead {
            seq: env.seq(),
            id,
            linked: true,
        });
        heads.sort();
        self.eval.accepted.insert(id);
        self.eval.content_order.push(id);
        if let Some(h) = &env.body().change {
            let tip = ChangeTip {
                seq: h.seq,
                accepted: true,
            };
            self.eval
                .change_tips
                .insert((env.author(), h.incarnation), tip);
        }
    }

    /// The common case without a full re-evaluation: content that extends
    /// its author's chain, under a context already judged, by an author no
    /// removal touched, whose deps are all accepted.
    fn fast_accept(&self, env: &Envelope) -> bool {
        let body = env.body();
        if body.kind != Kind::Content || body.space != self.id || self.is_roster() {
            return false;
        }
        let key = (body.space, body.author);
        if self.eval.forked.contains(&key) {
            return false;
        }
        // Something pending might be waiting for exactly this envelope.
        if self.waited_for(env) {
            return false;
        }
        let tip = self.eval.tips.get(&key).copied();
        let chained = match tip {
            None => body.seq == 1 && body.prev.is_none(),
            Some((seq, id)) => body.seq == seq + 1 && body.prev == Some(id),
        };
        if !chained {
            return false;
        }
        if let Some(prev) = body.prev {
            // The previous envelope must be accepted content with the same context.
            let Some(p) = self.held.get(&prev) else {
                return false;
            };
            if p.kind() != Kind::Content
                || !self.eval.accepted.contains(&prev)
                || p.body().context != body.context
            {
                return false;
            }
        }
        let mut ctx = body.context.clone();
        ctx.sort();
        ctx.dedup();
        let Some(at) = self.eval.contexts.get(&ctx) else {
            return false;
        };
        if !at.rights(&body.author).writer
            || body.epoch.is_none()
            || body.epoch != at.folder.current_epoch
            || at.rotation_due()
            || !body
                .epoch
                .is_some_and(|e| self.eval.state.folder.epochs.contains_key(&e))
        {
            return false;
        }
        // A removal aimed at the author: the slow path judges the cutoff.
        if self.eval.removed.contains(&body.author) {
            return false;
        }
        let Some(h) = &body.change else {
            return false;
        };
        // Conservative: a change that does not follow its chain's highest
        // judged change (accepted) takes the slow path, which judges gaps
        // and forks.
        let tip = self.eval.change_tips.get(&(body.author, h.incarnation));
        h.incarnation >= at.incarnation(&body.author)
            && h.incarnation < MAX_INCARNATIONS
            && ChangeTip::takes_next(tip, h.seq)
            && h.deps.iter().all(|d| {
                self.eval.accepted.contains(d)
                    && self.held.get(d).is_some_and(|e| e.kind() == Kind::Content)
            })
    }

    /// [`Space::ingest_batch`] with the change metadata the caller decrypted,
    /// judged in the same single evaluation.
    pub fn ingest_batch_with_metas(
        &mut self,
        envs: Vec<Envelope>,
        metas: impl IntoIterator<Item = (EnvelopeId, ChangeMeta)>,
    ) -> Report {
        self.supply_metas(metas);
        self.ingest_batch(envs)
    }

    /// Takes in many envelopes with one evaluation. Refused envelopes are
    /// reported, not kept. Control envelopes come first, so a batch may
    /// carry the grant or roster entry that makes its other authors known.
    pub fn ingest_batch(&mut self, envs: Vec<Envelope>) -> Report {
        let mut report = Report {
            outcomes: vec![Ok(Outcome::Pending); envs.len()],
            ..Report::default()
        };
        let mut fresh = Vec::new();
        let mut todo: Vec<(usize, Envelope)> = Vec::new();
        let mut seen: HashSet<EnvelopeId> = HashSet::new();
        for (i, env) in envs.into_iter().enumerate() {
            let id = env.id();
            if env.space() != self.id && Some(env.space()) != self.team {
                report.outcomes[i] = Err(IngestError::WrongSpace);
            } else if self.held.contains_key(&id) || !seen.insert(id) {
                report.outcomes[i] = Ok(Outcome::Duplicate);
            } else {
                todo.push((i, env));
            }
        }
        // Control first (by space, author, seq), then the rest; repeat while
        // an envelope made another's author known.
        todo.sort_by_key(|(_, e)| {
            (
                !matches!(e.kind(), Kind::Membership | Kind::Roster),
                e.space(),
                e.author(),
                e.seq(),
            )
        });
        deps_first(&mut todo);
        // Content that extends chains, in an order where each envelope's
        // prev and deps come first, takes the fast path one by one, as if
        // it had come alone — until one does not: from there on everything
        // is held and judged by one evaluation (a fast path after an
        // unjudged envelope could disagree with it). An initial sync of a
        // folder of many edits is then linear, not one evaluation of
        // everything held per batch.
        let mut fast = true;
        let mut accepted_before: Option<BTreeSet<EnvelopeId>> = None;
        loop {
            let (ready, wait): (Vec<_>, Vec<_>) =
                todo.into_iter().partition(|(_, e)| self.knows(e));
            todo = wait;
            if ready.is_empty() {
                break;
            }
            // Signatures in chunks with batch verification; a failing chunk
            // is checked envelope by envelope.
            let mut verified: HashSet<EnvelopeId> = HashSet::new();
            for chunk in ready.chunks(256) {
                let refs: Vec<&Envelope> = chunk.iter().map(|(_, e)| e).collect();
                if Envelope::verify_batch(&refs) {
                    verified.extend(refs.iter().map(|e| e.id()));
                }
            }
            for (i, env) in ready {
                if !verified.contains(&env.id()) && !env.verify_signature() {
                    report.outcomes[i] = Err(IngestError::BadSignature);
                    continue;
                }
                fast = fast && self.fast_accept(&env);
                if fast {
                    self.accept_fast(&env);
                    report.outcomes[i] = Ok(Outcome::Accepted);
                } else {
                    // Only an evaluation revokes: what it held before.
                    accepted_before.get_or_insert_with(|| self.eval.accepted.clone());
                    fresh.push((i, env.id()));
                }
                self.hold(env);
            }
        }
        for (i, _) in todo {
            report.outcomes[i] = Err(IngestError::UnknownAuthor);
        }
        if let Some(before) = accepted_before {
            self.reevaluate();
            report.evaluated = true;
            for (i, id) in fresh {
                report.outcomes[i] = Ok(self.outcome_of(&id).unwrap_or(Outcome::Pending));
            }
            report.revoked = before.difference(&self.eval.accepted).copied().collect();
            report.rebuild = !report.revoked.is_empty();
        }
        report
    }

    fn hold(&mut self, env: Envelope) {
        let key = (env.space(), env.author());
        let here = (env.seq(), env.id());
        let last = self.last.entry(key).or_insert(here);
        *last = (*last).max(here);
        // Coverage of cutoffs changes when a fork or a named envelope
        // arrives: the judgements kept from earlier evaluations may not hold.
        if !self
            .slots
            .insert(slot(&env.space(), &env.author(), env.seq()))
            || self.cutoff_ids.contains(&env.id())
        {
            self.cache.clear();
        }
        self.known.insert(env.author());
        if matches!(env.kind(), Kind::Membership | Kind::Roster) {
            *self.control_counts.entry(key).or_insert(0) += 1;
            if let Ok(op) = ControlOp::decode(env.kind(), &env.body().payload) {
                self.learn_names(&op);
            }
        }
        let bytes = (env.space() == self.id).then_some(env.wire_len() as u64);
        if self.held.insert(env.id(), env).is_none() {
            self.own_bytes += bytes.unwrap_or(0);
        }
    }

    /// Bytes of the held envelopes of this space itself.
    pub fn own_bytes(&self) -> u64 {
        self.own_bytes
    }

    /// Records the devices and cutoff envelopes a control op names.
    fn learn_names(&mut self, op: &ControlOp) {
        let mut cutoff = |c: &Cutoff| {
            for point in c.values() {
                self.cutoff_ids.insert(point.id);
            }
        };
        match op {
            ControlOp::Membership(MembershipOp::Grant {
                principal: Principal::Device(d),
                ..
            }) => {
                self.known.insert(*d);
            }
            ControlOp::Membership(
                MembershipOp::Grant {
                    principal: Principal::Group(g),
                    ..
                }
                | MembershipOp::Remove {
                    principal: Principal::Group(g),
                    ..
                },
            ) => {
                self.groups_named.insert(g.clone());
            }
            ControlOp::Roster(RosterOp::AddDevice { device, .. }) => {
                self.known.insert(*device);
            }
            ControlOp::Membership(MembershipOp::Remove { cutoff: c, .. }) => cutoff(c),
            ControlOp::Membership(MembershipOp::Rotate { cutoffs, .. }) => {
                for (_, c) in cutoffs {
                    cutoff(c);
                }
            }
            ControlOp::Roster(
                RosterOp::RemoveUser { cutoffs, .. }
                | RosterOp::RevokeDevice { cutoffs, .. }
                | RosterOp::RemoveAdmin { cutoffs, .. }
                | RosterOp::RemoveFromGroup { cutoffs, .. }
                | RosterOp::DeleteGroup { cutoffs, .. },
            ) => {
                for c in cutoffs.values() {
                    cutoff(c);
                }
            }
            _ => {}
        }
    }

    fn next_body(&self, author: DeviceId, space: SpaceId, kind: Kind) -> EnvelopeBody {
        // Our own chain: every envelope we hold of ours, not just the accepted prefix.
        let mine = self.last.get(&(space, author));
        EnvelopeBody {
            version: ENVELOPE_VERSION,
            space,
            author,
            seq: mine.map_or(1, |(seq, _)| seq + 1),
            prev: mine.map(|(_, id)| *id),
            kind,
            context: self.eval.control_heads.clone(),
            epoch: None,
            change: None,
            payload: Vec::new(),
        }
    }

    /// Signs and ingests a control op as this device's next envelope, without
    /// checking that it will take effect (the outcome says). Roster ops go
    /// to the team roster's chain.
    pub fn write_control(&mut self, keys: &DeviceKeys, op: &ControlOp) -> (Envelope, Outcome) {
        let space = match op {
            ControlOp::Roster(_) => self.team.unwrap_or(self.id),
            ControlOp::Membership(_) => self.id,
        };
        let mut body = self.next_body(keys.device_id(), space, op.kind());
        if op.is_founding() {
            // A founding op is the root of its space: it cites nothing.
            body.context.clear();
        }
        body.payload = op.encode();
        let env = Envelope::sign(body, keys);
        let outcome = self
            .ingest(env.clone())
            .unwrap_or_else(|e| Outcome::Quarantined(Reason::Malformed(e.to_string())));
        (env, outcome)
    }

    /// Signs a control op only if it would take effect here; else refuses
    /// without publishing anything.
    pub fn propose(&mut self, keys: &DeviceKeys, op: &ControlOp) -> Result<Envelope, SpaceError> {
        let space = match op {
            ControlOp::Roster(_) => self
                .team
                .ok_or(SpaceError::Refused("no team roster".into()))?,
            ControlOp::Membership(_) => self.id,
        };
        let mut trial = (*self.eval.state).clone();
        let body = self.next_body(keys.device_id(), space, op.kind());
        let info = OpInfo {
            id: EnvelopeId([0; 32]),
            author: keys.device_id(),
            seq: body.seq,
            space,
            home: self.id,
            team: self.team,
            strict: true,
        };
        if let Err(why) = trial.apply(&info, op) {
            return Err(SpaceError::Refused(why));
        }
        let (env, outcome) = self.write_control(keys, op);
        match outcome {
            Outcome::Accepted => Ok(env),
            other => {
                self.unpublish(&env.id());
                Err(SpaceError::Refused(format!("{other:?}")))
            }
        }
    }

    /// Applies a roster op (this space must be the roster or a folder of its team).
    pub fn roster_op(&mut self, keys: &DeviceKeys, op: RosterOp) -> Result<Envelope, SpaceError> {
        self.propose(keys, &ControlOp::Roster(op))
    }

    /// Adds `principal` with `role` (or raises its role), handing the current
    /// epoch key to its devices when `current_key` is given.
    pub fn grant(
        &mut self,
        keys: &DeviceKeys,
        principal: Principal,
        role: Role,
        exchange: Option<[u8; 32]>,
        current_key: Option<&FolderKey>,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Envelope, SpaceError> {
        let mut trial = (*self.eval.state).clone();
        let info = OpInfo {
            id: EnvelopeId([0; 32]),
            author: keys.device_id(),
            seq: 0,
            space: self.id,
            home: self.id,
            team: self.team,
            strict: true,
        };
        let bare = ControlOp::Membership(MembershipOp::Grant {
            principal: principal.clone(),
            role,
            exchange,
            epoch: None,
            wraps: Vec::new(),
        });
        trial.apply(&info, &bare).map_err(SpaceError::Refused)?;
        let mut wraps = Vec::new();
        if let Some(key) = current_key {
            for (device, x) in trial.missing_wraps() {
                wraps.push(KeyWrap {
                    device,
                    sealed: key.seal_to(&x, rng)?,
                });
            }
        }
        let op = ControlOp::Membership(MembershipOp::Grant {
            principal,
            role,
            exchange,
            epoch: self.current_epoch(),
            wraps,
        });
        self.propose(keys, &op)
    }

    /// Removes `principal` (`to: None`) or demotes it, with this device's
    /// view of the folder as the cutoff. Rotate afterwards.
    pub fn remove(
        &mut self,
        keys: &DeviceKeys,
        principal: Principal,
        to: Option<Role>,
    ) -> Result<Envelope, SpaceError> {
        let op = ControlOp::Membership(MembershipOp::Remove {
            principal,
            to,
            cutoff: self.cutoff(),
        });
        self.propose(keys, &op)
    }

    /// Starts a new key epoch: a fresh key wrapped to every member device,
    /// chaining the key(s) of the epochs it supersedes, and supplying this
    /// folder's cutoff for roster removals that lack one. Returns the new key.
    pub fn rotate(
        &mut self,
        keys: &DeviceKeys,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(Envelope, FolderKey), SpaceError> {
        if self.current_epoch().is_none() {
            return Err(SpaceError::NotCreated);
        }
        let key = FolderKey::generate(rng);
        let mut wraps = Vec::new();
        for (device, x) in self.eval.state.member_devices() {
            if let Some(x) = x {
                wraps.push(KeyWrap {
                    device,
                    sealed: key.seal_to(&x, rng)?,
                });
            }
        }
        let epochs = &self.eval.state.folder.epochs;
        let linked: BTreeSet<EnvelopeId> = epochs
            .values()
            .flat_map(|e| e.chain.iter().map(|l| l.epoch))
            .collect();
        let mut chain = Vec::new();
        for epoch in epochs.keys().filter(|e| !linked.contains(e)) {
            if let Ok(old) = self.epoch_key(keys, epoch) {
                chain.push(ChainLink {
                    epoch: *epoch,
                    sealed: key.encrypt(old.expose_secret(), &chain_aad(&self.id, epoch), rng),
                });
            }
        }
        let cutoffs = self
            .eval
            .removals
            .iter()
            .filter(|(id, _)| {
                self.held.get(id).is_some_and(|e| {
                    e.kind() == Kind::Roster
                        && ControlOp::decode(Kind::Roster, &e.body().payload)
                            .is_ok_and(|op| op.cutoff_for(&self.id, &self.id).is_none())
                })
            })
            .map(|(id, _)| (*id, self.cutoff()))
            .collect();
        let op = ControlOp::Membership(MembershipOp::Rotate {
            wraps,
            chain,
            cutoffs,
        });
        let env = self.propose(keys, &op)?;
        Ok((env, key))
    }

    /// Hands the current epoch key to member devices that lack it.
    pub fn rewrap(
        &mut self,
        keys: &DeviceKeys,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Option<Envelope>, SpaceError> {
        let missing = self.eval.state.missing_wraps();
        if missing.is_empty() {
            return Ok(None);
        }
        let epoch = self.current_epoch().ok_or(SpaceError::NotCreated)?;
        let key = self.epoch_key(keys, &epoch)?;
        let mut wraps = Vec::new();
        for (device, x) in missing {
            wraps.push(KeyWrap {
                device,
                sealed: key.seal_to(&x, rng)?,
            });
        }
        let op = ControlOp::Membership(MembershipOp::Rewrap { epoch, wraps });
        self.propose(keys, &op).map(Some)
    }

    /// Hands earlier epochs' keys to member devices that cannot reach them
    /// ([`State::unreachable_epochs`]), for the epochs this device can open.
    pub fn rewrap_history(
        &mut self,
        keys: &DeviceKeys,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<Envelope>, SpaceError> {
        let mut out = Vec::new();
        for (epoch, devices) in self.eval.state.unreachable_epochs() {
            let Ok(key) = self.epoch_key(keys, &epoch) else {
                continue;
            };
            let mut wraps = Vec::new();
            for (device, x) in devices {
                wraps.push(KeyWrap {
                    device,
                    sealed: key.seal_to(&x, rng)?,
                });
            }
            let op = ControlOp::Membership(MembershipOp::Rewrap { epoch, wraps });
            out.push(self.propose(keys, &op)?);
        }
        Ok(out)
    }

    fn seal_payload(
        &mut self,
        keys: &DeviceKeys,
        folder_key: &FolderKey,
        kind: Kind,
        plain: &[u8],
        meta: Option<ChangeMeta>,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Envelope, SpaceError> {
        let author = keys.device_id();
        let epoch = self.current_epoch().ok_or(SpaceError::NotCreated)?;
        let rights = self.eval.state.rights(&author);
        let allowed = match kind {
            Kind::Content => rights.writer,
            _ => rights.member,
        };
        if !allowed {
            return Err(SpaceError::PermissionDenied);
        }
        if self.rotation_due() {
            return Err(SpaceError::RotationDue);
        }
        let (change, meta) = match (kind, meta) {
            (Kind::Content, Some(meta)) => (Some(self.header_of(keys, &meta)?), Some(meta)),
            (Kind::Content, None) => return Err(SpaceError::MalformedChange),
            _ => (None, None),
        };
        let mut body = self.next_body(author, self.id, kind);
        body.epoch = Some(epoch);
        body.change = change;
        let aad = EnvelopeBody::payload_aad(&self.id, &author, body.seq, kind);
        body.payload = folder_key.encrypt(plain, &aad, rng);
        let env = Envelope::sign(body, keys);
        match self.ingest_with_meta(env.clone(), meta) {
            Ok(Outcome::Accepted) => Ok(env),
            Ok(other) => {
                self.unpublish(&env.id());
                Err(SpaceError::Refused(format!("{other:?}")))
            }
            Err(e) => Err(SpaceError::Refused(e.to_string())),
        }
    }

    /// Forgets an envelope of ours that did not take effect and that nobody
    /// else has seen, so our chain stays free of it.
    fn unpublish(&mut self, id: &EnvelopeId) {
        if let Some(env) = self.held.remove(id) {
            if env.space() == self.id {
                self.own_bytes = self.own_bytes.saturating_sub(env.wire_len() as u64);
            }
            let key = (env.space(), env.author());
            self.slots
                .remove(&slot(&env.space(), &env.author(), env.seq()));
            if matches!(env.kind(), Kind::Membership | Kind::Roster) {
                if let Some(n) = self.control_counts.get_mut(&key) {
                    *n = n.saturating_sub(1);
                }
            }
            let rest = self
                .held
                .values()
                .filter(|e| (e.space(), e.author()) == key)
                .map(|e| (e.seq(), e.id()))
                .max();
            match rest {
                Some(r) => self.last.insert(key, r),
                None => self.last.remove(&key),
            };
        }
        if let Some(hash) = self.metas.remove(id) {
            if self.by_hash.get(&hash) == Some(id) {
                self.by_hash.remove(&hash);
            }
        }
        self.reevaluate();
    }

    /// Wraps one Automerge change as this device's next content envelope
    /// (under the current epoch, whose key `folder_key` must be) and ingests it.
    pub fn seal_content(
        &mut self,
        keys: &DeviceKeys,
        folder_key: &FolderKey,
        change: &[u8],
        rng: &mut impl CryptoRngCore,
    ) -> Result<Envelope, SpaceError> {
        let meta = ChangeMeta::from_change(change).ok_or(SpaceError::MalformedChange)?;
        self.seal_payload(keys, folder_key, Kind::Content, change, Some(meta), rng)
    }

    /// [`Space::seal_content`] of a change whose metadata the caller read
    /// when it parsed it (a big import's change is parsed once).
    pub(crate) fn seal_content_with_meta(
        &mut self,
        keys: &DeviceKeys,
        folder_key: &FolderKey,
        change: &[u8],
        meta: ChangeMeta,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Envelope, SpaceError> {
        self.seal_payload(keys, folder_key, Kind::Content, change, Some(meta), rng)
    }

    /// Records a usage event (reveal, copy, TOTP) as an encrypted envelope.
    pub fn seal_usage(
        &mut self,
        keys: &DeviceKeys,
        folder_key: &FolderKey,
        event: &[u8],
        rng: &mut impl CryptoRngCore,
    ) -> Result<Envelope, SpaceError> {
        self.seal_payload(keys, folder_key, Kind::Usage, event, None, rng)
    }
}

/// Reorders `todo` so that an envelope comes after its author's previous
/// one and after its change's deps where the batch holds them, otherwise
/// keeping the given order (a peer sends each chain in seq order, one
/// author after another, so a change of one author naming another's
/// later change would stop the fast path).
fn deps_first(todo: &mut Vec<(usize, Envelope)>) {
    let at: HashMap<EnvelopeId, usize> = todo
        .iter()
        .enumerate()
        .map(|(pos, (_, e))| (e.id(), pos))
        .collect();
    let n = todo.len();
    let mut waits = vec![0usize; n];
    let mut unblocks: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (pos, (_, e)) in todo.iter().enumerate() {
        let body = e.body();
        let deps = body.change.iter().flat_map(|h| h.deps.iter());
        for before in body.prev.iter().chain(deps) {
            if let Some(&p) = at.get(before) {
                if p != pos {
                    waits[pos] += 1;
                    unblocks[p].push(pos);
                }
            }
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> =
        (0..n).filter(|p| waits[*p] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(p)) = ready.pop() {
        order.push(p);
        for &c in &unblocks[p] {
            waits[c] -= 1;
            if waits[c] == 0 {
                ready.push(Reverse(c));
            }
        }
    }
    if order.len() < n {
        // A cycle (only a forger makes one): the given order, judged whole.
        return;
    }
    let mut slots: Vec<Option<(usize, Envelope)>> = todo.drain(..).map(Some).collect();
    todo.extend(order.into_iter().filter_map(|p| slots[p].take()));
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
        let change = crate::FolderDoc::new(keys.device_id())
            .set_name("mine", 1)
            .unwrap();
        let env = space.seal_content(&keys, &key, &change, &mut rng).unwrap();
        assert_eq!(
            Space::open_content(&env, &space.folder_key(&keys).unwrap())
                .unwrap()
                .as_slice(),
            change.as_slice()
        );

        // Content before the founding that names its author is refused
        // (it could be anybody's); in one batch, in any order, all is well.
        let mut other = Space::new(space.id());
        assert_eq!(other.ingest(env.clone()), Err(IngestError::UnknownAuthor));
        let report = other.ingest_batch(vec![env.clone(), genesis.clone()]);
        assert_eq!(
            report.outcomes,
            vec![Ok(Outcome::Accepted), Ok(Outcome::Accepted)]
        );
        assert_eq!(other.accepted_content().count(), 1);
        assert_eq!(other.ingest(env), Ok(Outcome::Duplicate));
        assert_eq!(other.version_vector(), space.version_vector());
        assert_eq!(other.digest(), space.digest());
    }

    #[test]
    fn stranger_content_and_forgery_are_refused() {
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
            change: Some(ChangeHeader {
                incarnation: 0,
                seq: 1,
                deps: vec![],
            }),
            payload: vec![1, 2, 3],
        };
        let env = Envelope::sign(body.clone(), &stranger);
        // A device no op of the folder names is refused, not kept.
        assert_eq!(space.ingest(env.clone()), Err(IngestError::UnknownAuthor));
        assert_eq!(
            space.ingest_batch(vec![env]).outcomes,
            vec![Err(IngestError::UnknownAuthor)]
        );
        assert_eq!(space.held().count(), 1);
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
        let epoch = space.current_epoch().unwrap();
        assert!(stranger
            .open_folder_key(&space.state().folder.epochs[&epoch].wraps[&owner.device_id()])
            .is_err());
    }

    #[test]
    fn a_fork_is_evidence_and_a_lonely_content_fork_takes_no_branch() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let keys = DeviceKeys::generate(&mut rng);
        let key = FolderKey::generate(&mut rng);
        let (mut space, _) = Space::create(&keys, &key, &mut rng).unwrap();
        let change = crate::FolderDoc::new(keys.device_id())
            .set_name("a", 1)
            .unwrap();
        let first = space.seal_content(&keys, &key, &change, &mut rng).unwrap();
        let twin = Envelope::sign(
            EnvelopeBody {
                payload: vec![0; 8],
                ..first.body().clone()
            },
            &keys,
        );
        // The same Automerge change slot twice, nobody built on either:
        // neither takes effect, whatever the ids; the chain is marked.
        space.ingest(twin.clone()).unwrap();
        for e in [&first, &twin] {
            assert_eq!(
                space.outcome_of(&e.id()),
                Some(Outcome::Quarantined(Reason::Equivocation { seq: 1 }))
            );
        }
        assert!(space.forked().contains(&(space.id(), keys.device_id())));
        assert_eq!(
            space.chain_heads()[&(space.id(), keys.device_id())].len(),
            2,
            "both branches are heads, to be forwarded"
        );
    }
}
