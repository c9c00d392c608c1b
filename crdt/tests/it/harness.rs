//! Shared test helpers: replicas, forged envelopes, digests.

use std::collections::BTreeMap;

use coffer_crdt::accept::MAX_INCARNATIONS;
use coffer_crdt::envelope::ENVELOPE_VERSION;
use coffer_crdt::ops::{Principal, Role};
use coffer_crdt::space::Outcome;
use coffer_crdt::{
    ChangeHeader, ChangeMeta, DeviceKeys, Envelope, EnvelopeBody, EnvelopeId, FolderDoc, FolderKey,
    ItemEdit, ItemId, ItemType, Kind, Space,
};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// Rebuilds a replica's view of the folder document from its accepted
/// content, with whatever epoch keys it can open.
pub fn doc_of(space: &Space, keys: &DeviceKeys) -> FolderDoc {
    doc_as(space, keys, incarnation_for(space, keys))
}

/// The replica's document, writing as the given incarnation of its device.
pub fn doc_as(space: &Space, keys: &DeviceKeys, incarnation: u32) -> FolderDoc {
    let me = keys.device_id();
    let mut doc = FolderDoc::with_incarnation(me, incarnation);
    let epoch_keys = space.epoch_keys(keys);
    for env in space.accepted_content() {
        if let Some(k) = env.body().epoch.and_then(|e| epoch_keys.get(&e)) {
            if let Ok(change) = Space::open_content(env, k) {
                doc.apply_change(&env.author(), &change).unwrap();
            }
        }
    }
    doc
}

/// The document of the accepted content, decrypted with every key in `keyring`.
pub fn doc_with(space: &Space, keyring: &BTreeMap<EnvelopeId, FolderKey>) -> FolderDoc {
    let mut doc = FolderDoc::new(coffer_crdt::DeviceId([0; 32]));
    let changes: Vec<_> = space
        .accepted_content()
        .map(|env| {
            let key = &keyring[&env.body().epoch.unwrap()];
            (env.author(), Space::open_content(env, key).unwrap())
        })
        .collect();
    doc.apply_changes(changes.iter().map(|(a, c)| (*a, c.as_slice())))
        .unwrap();
    doc
}

/// How many of its own content changes a replica lost (quarantined): it
/// writes as a later incarnation by that much, so it never reuses an
/// Automerge (actor, seq).
pub fn incarnation_for(space: &Space, keys: &DeviceKeys) -> u32 {
    let me = keys.device_id();
    let dropped = space
        .quarantined()
        .keys()
        .filter(|id| {
            space
                .get(id)
                .is_some_and(|e| e.author() == me && e.kind() == coffer_crdt::Kind::Content)
        })
        .count() as u32;
    (space.incarnation(&me) + dropped).min(MAX_INCARNATIONS - 1)
}

/// Canonical digest: the space's accepted state and the saved document.
pub fn digest(space: &Space, keyring: &BTreeMap<EnvelopeId, FolderKey>) -> (String, Vec<u8>) {
    // Automerge's saved bytes depend on the order changes were applied in:
    // use the canonical order.
    let mut canonical = space.clone();
    canonical.refresh();
    let mut doc = doc_with(&canonical, keyring);
    (hex::encode(space.digest()), doc.save())
}

/// An Automerge change adding an item, built on the replica's current view.
pub fn add_item_change(space: &Space, keys: &DeviceKeys, name: &str, now: i64) -> Vec<u8> {
    let mut doc = doc_of(space, keys);
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&(now as u64).to_be_bytes());
    id[8..].copy_from_slice(&keys.device_id().0[..8]);
    doc.add_item(ItemId(id), ItemType::Note, name, &ItemEdit::default(), now)
        .unwrap()
}

/// Writes an item honestly (learning metas first so deps count).
pub fn write(
    space: &mut Space,
    keys: &DeviceKeys,
    name: &str,
    now: i64,
    rng: &mut ChaCha20Rng,
) -> Envelope {
    space.learn_metas(keys);
    let change = add_item_change(space, keys, name, now);
    let key = space.folder_key(keys).unwrap();
    space.seal_content(keys, &key, &change, rng).unwrap()
}

/// Builds (without any permission check) this device's next content
/// envelope under `epoch`, as a malicious or out-of-date client could.
pub fn force_content(
    space: &mut Space,
    keys: &DeviceKeys,
    key: &FolderKey,
    epoch: EnvelopeId,
    change: &[u8],
    rng: &mut ChaCha20Rng,
) -> Envelope {
    let author = keys.device_id();
    // The header an honest client would write (a stale incarnation too).
    let change_header = space.change_header(keys, change).unwrap_or_else(|_| {
        let meta = ChangeMeta::from_change(change).unwrap();
        ChangeHeader {
            incarnation: meta.incarnation(&author).unwrap(),
            seq: meta.seq,
            deps: Vec::new(),
        }
    });
    force_content_as(space, keys, key, epoch, change, change_header, rng)
}

/// Like [`force_content`], with whatever plaintext header the caller
/// chooses (a lying client's): signed and ingested, acceptance reads only it.
pub fn force_content_as(
    space: &mut Space,
    keys: &DeviceKeys,
    key: &FolderKey,
    epoch: EnvelopeId,
    change: &[u8],
    change_header: ChangeHeader,
    rng: &mut ChaCha20Rng,
) -> Envelope {
    let author = keys.device_id();
    let mine = space
        .held()
        .filter(|e| e.author() == author && e.space() == space.id())
        .max_by_key(|e| e.seq())
        .cloned();
    let seq = mine.as_ref().map_or(1, |e| e.seq() + 1);
    let aad = EnvelopeBody::payload_aad(&space.id(), &author, seq, Kind::Content);
    let env = Envelope::sign(
        EnvelopeBody {
            version: ENVELOPE_VERSION,
            space: space.id(),
            author,
            seq,
            prev: mine.map(|e| e.id()),
            kind: Kind::Content,
            context: space.control_heads().to_vec(),
            epoch: Some(epoch),
            change: Some(change_header),
            payload: key.encrypt(change, &aad, rng),
        },
        keys,
    );
    let _ = space.ingest(env.clone());
    env
}

/// Delivers every envelope of `from` to `to` one by one in a shuffled
/// order and lets `to` learn change metadata with `keys`. An envelope whose
/// author `to` does not know yet is refused, as a peer would; it is sent
/// again after the rest, as the sync protocol resends what a peer lacks.
pub fn sync(from: &Space, to: &mut Space, keys: &DeviceKeys, seed: u64) {
    let mut envs: Vec<Envelope> = from.held().cloned().collect();
    envs.sort_by_key(|e| e.id());
    let mut r = rng(seed);
    for i in (1..envs.len()).rev() {
        let j = (r.next_u32() as usize) % (i + 1);
        envs.swap(i, j);
    }
    while !envs.is_empty() {
        let before = envs.len();
        envs.retain(|env| {
            matches!(
                to.ingest(env.clone()),
                Err(coffer_crdt::space::IngestError::UnknownAuthor)
            )
        });
        if envs.len() == before {
            break;
        }
    }
    to.learn_metas(keys);
}

/// The seed of a test device's transport key (derived from its id).
pub fn transport_seed_of(keys: &DeviceKeys) -> [u8; 32] {
    *blake3::hash(&keys.device_id().0).as_bytes()
}

/// A test device's transport key.
pub fn transport_of(keys: &DeviceKeys) -> [u8; 32] {
    coffer_crdt::crypto::ed25519_public(&transport_seed_of(keys))
}

/// A folder founded by device 0 with devices 1.. granted the given roles,
/// every replica fully synced. Returns keys, replicas and the keyring.
pub struct World {
    pub keys: Vec<DeviceKeys>,
    pub reps: Vec<Space>,
    pub keyring: BTreeMap<EnvelopeId, FolderKey>,
    pub rng: rand_chacha::ChaCha20Rng,
}

impl World {
    pub fn new(seed: u64, roles: &[Role]) -> World {
        let mut rng = rng(seed);
        let keys: Vec<DeviceKeys> = (0..=roles.len())
            .map(|_| DeviceKeys::generate(&mut rng))
            .collect();
        let key = FolderKey::generate(&mut rng);
        let (mut founder, _) = Space::create(&keys[0], &key, &mut rng).unwrap();
        let mut keyring = BTreeMap::new();
        keyring.insert(founder.current_epoch().unwrap(), key.clone());
        for (i, role) in roles.iter().enumerate() {
            let k = &keys[i + 1];
            founder
                .grant(
                    &keys[0],
                    Principal::Device(k.device_id()),
                    *role,
                    Some(k.exchange_public()),
                    Some(&key),
                    &mut rng,
                )
                .unwrap();
        }
        let mut reps = vec![founder];
        for (i, k) in keys.iter().enumerate().skip(1) {
            let mut s = Space::new(reps[0].id());
            sync(&reps[0], &mut s, k, i as u64);
            reps.push(s);
        }
        World {
            keys,
            reps,
            keyring,
            rng,
        }
    }

    pub fn id(&self, i: usize) -> coffer_crdt::DeviceId {
        self.keys[i].device_id()
    }

    /// Full delivery between all replicas (twice around, shuffled).
    pub fn converge(&mut self) {
        for round in 0..2 {
            for i in 0..self.reps.len() {
                for j in 0..self.reps.len() {
                    if i != j {
                        let (a, b) = two(&mut self.reps, i, j);
                        sync(a, b, &self.keys[j], (round * 100 + i * 10 + j) as u64);
                    }
                }
            }
        }
    }

    pub fn write(&mut self, i: usize, name: &str, now: i64) -> Envelope {
        write(&mut self.reps[i], &self.keys[i], name, now, &mut self.rng)
    }

    pub fn assert_identical(&self) {
        let first = digest(&self.reps[0], &self.keyring);
        for r in &self.reps[1..] {
            assert_eq!(digest(r, &self.keyring), first);
        }
    }

    pub fn outcome_everywhere(&self, id: &EnvelopeId) -> Outcome {
        let o = self.reps[0].outcome_of(id).unwrap();
        for r in &self.reps {
            assert_eq!(r.outcome_of(id).as_ref(), Some(&o));
        }
        o
    }
}

pub fn two<T>(v: &mut [T], i: usize, j: usize) -> (&T, &mut T) {
    assert_ne!(i, j);
    if i < j {
        let (l, r) = v.split_at_mut(j);
        (&l[i], &mut r[0])
    } else {
        let (l, r) = v.split_at_mut(i);
        (&r[0], &mut l[j])
    }
}
