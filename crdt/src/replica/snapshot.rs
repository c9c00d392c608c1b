//! Folder snapshots (issue 18): an open folder's compacted Automerge
//! document and what it was built from, sealed for this device's store, so
//! that an unlock loads one document and applies only what came after
//! instead of replaying every change of the folder's history.
//!
//! A snapshot is never trusted to decide anything: it is an encoding of an
//! [`OpenFolder`] this device built itself, sealed under a key derived from
//! this device's secret and a folder epoch key (another member holds the
//! epoch key, not this device's secret, so cannot forge one), with the
//! folder's id and the epoch in the associated data. On unlock it is used only
//! where the folder it came from could have been *reused* after a sync (the
//! same test, [`OpenFolder::extends`] and [`OpenFolder::add_keys`]): every
//! change it holds or skipped is still accepted, and no change it skipped
//! for want of a key has become readable. Otherwise — or when it does not
//! open, decode or load — the folder is rebuilt from its envelopes, as
//! without one, and the host drops it (`Persist::DropSnapshot`). Whoever
//! could seal one holds this device's keys, and with them its vault.

use std::collections::{BTreeMap, HashMap};

use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};

use super::open::{writing_incarnation, OpenFolder, Skip};
use crate::crypto::{DeviceKeys, FolderKey};
use crate::folder::FolderDoc;
use crate::ids::{DeviceId, EnvelopeId, ItemId, SpaceId};
use crate::space::Space;

/// Largest sealed snapshot accepted from the store (a folder at the
/// envelope limits of `bounds` stays far below it).
pub const MAX_SNAPSHOT_BYTES: usize = 512 * 1024 * 1024;

/// A folder is snapshotted once this many changes were applied since its
/// last snapshot (or since it was rebuilt without one), a change that
/// touched more items counting as that many.
pub const SNAPSHOT_AFTER_CHANGES: usize = 256;

const VERSION: u8 = 1;

/// A sealed snapshot as the store keeps it: the epoch whose key sealed it,
/// then the ciphertext.
#[derive(Serialize, Deserialize)]
struct Sealed {
    version: u8,
    epoch: EnvelopeId,
    #[serde(with = "serde_bytes")]
    ciphertext: Vec<u8>,
}

/// The plaintext of a snapshot.
#[derive(Serialize, Deserialize)]
struct Body {
    #[serde(with = "serde_bytes")]
    doc: Vec<u8>,
    applied: Vec<AppliedChange>,
    skipped: Vec<(EnvelopeId, u8)>,
    /// Epoch keys the folder was open with.
    epochs: Vec<EnvelopeId>,
    actors: Vec<(Vec<u8>, DeviceId)>,
    item_changes: Vec<(ItemId, Vec<[u8; 32]>)>,
}

#[derive(Serialize, Deserialize)]
struct AppliedChange {
    envelope: EnvelopeId,
    hash: [u8; 32],
    actor: Vec<u8>,
    seq: u64,
    deps: Vec<[u8; 32]>,
}

fn aad(space: &SpaceId, epoch: &EnvelopeId) -> Vec<u8> {
    let mut aad = b"coffer/folder-snapshot/v1\0".to_vec();
    aad.extend_from_slice(&space.0);
    aad.extend_from_slice(&epoch.0);
    aad
}

/// The seal key: this device's own, derived with the epoch key, so that
/// another member of the folder (who holds the epoch key) cannot forge a
/// snapshot in this device's store.
fn seal_key(keys: &DeviceKeys, epoch_key: &FolderKey, aad: &[u8]) -> FolderKey {
    keys.local_key(
        "coffer 2026-12-04 folder snapshot seal key v1",
        epoch_key,
        aad,
    )
}

fn skip_code(s: Skip) -> u8 {
    match s {
        Skip::NoKey => 0,
        Skip::Unreadable => 1,
        Skip::HeaderMismatch => 2,
        Skip::DependsOnSkipped => 3,
    }
}

fn skip_of(code: u8) -> Option<Skip> {
    Some(match code {
        0 => Skip::NoKey,
        1 => Skip::Unreadable,
        2 => Skip::HeaderMismatch,
        3 => Skip::DependsOnSkipped,
        _ => return None,
    })
}

/// Seals `folder` of `space` under the folder's current epoch key; `None`
/// when this device holds no key of the current epoch, or lacks the
/// metadata of a change it applied.
pub(crate) fn seal(
    space: &mut Space,
    keys: &DeviceKeys,
    folder: &mut OpenFolder,
    rng: &mut impl CryptoRngCore,
) -> Option<Vec<u8>> {
    let epoch = space.current_epoch()?;
    let key = folder.keys.get(&epoch)?.clone();
    let mut applied = Vec::with_capacity(folder.applied_count());
    for (id, hash) in folder.applied() {
        // An applied change matched its envelope's header (actor of the
        // author's incarnation, seq, deps): the header says the rest.
        let env = space.get(id)?;
        let header = env.body().change.as_ref()?;
        let mut deps = header
            .deps
            .iter()
            .map(|d| folder.change_hash(d))
            .collect::<Option<Vec<[u8; 32]>>>()?;
        deps.sort_unstable();
        applied.push(AppliedChange {
            envelope: *id,
            hash: *hash,
            actor: crate::folder::actor_for(&env.author(), header.incarnation)
                .to_bytes()
                .to_vec(),
            seq: header.seq,
            deps,
        });
    }
    // Deterministic bytes for a given folder.
    applied.sort_by_key(|a| a.envelope);
    let (doc, actors, item_changes) = folder.doc.snapshot_parts();
    let body = Body {
        doc,
        applied,
        skipped: folder
            .skipped
            .iter()
            .map(|(id, s)| (*id, skip_code(*s)))
            .collect(),
        epochs: folder.keys.keys().copied().collect(),
        actors: actors
            .into_iter()
            .map(|(a, d)| (a.to_bytes().to_vec(), d))
            .collect(),
        item_changes: item_changes
            .into_iter()
            .map(|(id, hashes)| (id, hashes.into_iter().map(|h| h.0).collect()))
            .collect(),
    };
    let plain = zeroize::Zeroizing::new(postcard::to_stdvec(&body).ok()?);
    let aad = aad(&space.id(), &epoch);
    let sealed = Sealed {
        version: VERSION,
        epoch,
        ciphertext: seal_key(keys, &key, &aad).encrypt(&plain, &aad, rng),
    };
    folder.snapshotted();
    postcard::to_stdvec(&sealed).ok()
}

/// Opens a sealed snapshot of `space` into the folder it was taken from,
/// brought up to date with what was accepted since; `None` when it cannot
/// be used (the caller then rebuilds the folder from its envelopes).
pub(crate) fn restore(space: &Space, keys: &DeviceKeys, sealed: &[u8]) -> Option<OpenFolder> {
    if sealed.len() > MAX_SNAPSHOT_BYTES || OpenFolder::hidden(space, &keys.device_id()) {
        return None;
    }
    let (outer, rest): (Sealed, &[u8]) = postcard::take_from_bytes(sealed).ok()?;
    if outer.version != VERSION || !rest.is_empty() {
        return None;
    }
    let epoch_keys = space.epoch_keys(keys);
    let aad = aad(&space.id(), &outer.epoch);
    let key = seal_key(keys, epoch_keys.get(&outer.epoch)?, &aad);
    let plain = key.decrypt(&outer.ciphertext, &aad).ok()?;
    let (body, rest): (Body, &[u8]) = postcard::take_from_bytes(&plain).ok()?;
    if !rest.is_empty() {
        return None;
    }
    let me = keys.device_id();
    let actors = body
        .actors
        .into_iter()
        .map(|(a, d)| (automerge::ActorId::from(a), d))
        .collect::<HashMap<_, _>>();
    let item_changes = body
        .item_changes
        .into_iter()
        .map(|(id, hashes)| (id, hashes.into_iter().map(automerge::ChangeHash).collect()))
        .collect();
    let doc = FolderDoc::from_snapshot(&body.doc, actors, item_changes, me)?;
    let mut skipped = BTreeMap::new();
    for (id, code) in body.skipped {
        // A skipped change no longer accepted (its author removed since):
        // a full replay would not list it; neither does a rebuild.
        if !space.is_accepted(&id) {
            return None;
        }
        skipped.insert(id, skip_of(code)?);
    }
    // Only the hashes are read back: the headers say the rest.
    let applied: Vec<(EnvelopeId, [u8; 32])> = body
        .applied
        .into_iter()
        .map(|a| (a.envelope, a.hash))
        .collect();
    let snapshot_keys: BTreeMap<EnvelopeId, FolderKey> = body
        .epochs
        .iter()
        .filter_map(|e| Some((*e, epoch_keys.get(e)?.clone())))
        .collect();
    if snapshot_keys.len() != body.epochs.len() {
        // A key it was open with no longer reaches this device.
        return None;
    }
    let mut folder = OpenFolder::from_parts(doc, snapshot_keys, applied, skipped);
    // The reuse test of a folder that stayed open across a sync.
    let order: Vec<EnvelopeId> = space
        .accepted_content()
        .map(crate::envelope::Envelope::id)
        .collect();
    if !folder.extends(&order) || !folder.add_keys(epoch_keys) {
        return None;
    }
    let fresh: Vec<&crate::envelope::Envelope> = space
        .accepted_content()
        .filter(|e| !folder.is_applied(&e.id()) && !folder.skipped.contains_key(&e.id()))
        .collect();
    folder.apply(&fresh);
    folder.incarnation = writing_incarnation(space, &me, &folder.skipped);
    folder.doc.set_writer(me, folder.incarnation);
    let items = folder.doc.item_heads();
    folder.set_items(items);
    Some(folder)
}
