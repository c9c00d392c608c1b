//! An open folder: its document rebuilt from the accepted content, each
//! envelope decrypted with the key of its own epoch (every epoch key this
//! device can open, directly or through the key chain), each change checked
//! against its envelope's plaintext header before it is applied.
//!
//! Every key holder skips exactly the same changes — one whose payload does
//! not decrypt, is over the bounds, or does not match its header (actor,
//! seq, deps), and whatever depends on a skipped one — so documents stay
//! identical on every member device.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::accept::{parse_change, ChangeMeta};
use crate::crypto::{DeviceKeys, FolderKey};
use crate::envelope::Envelope;
use crate::folder::{BoundChange, FolderDoc, Item, ItemHead};
use crate::ids::{EnvelopeId, ItemId};
use crate::space::Space;

/// A folder's decrypted document and what it was built from.
pub(crate) struct OpenFolder {
    pub doc: FolderDoc,
    /// The head of each item as the document shows it (for listing and
    /// search; the whole item is read from `doc`): changed only through
    /// [`OpenFolder::set_items`] and [`OpenFolder::refresh`], which keep
    /// `by_name` in step.
    items: BTreeMap<ItemId, ItemHead>,
    /// Item ids by their name's [`name_key`]: `coffer get NAME` looks a
    /// name up rather than comparing it with every item (17.6 ms a `get`
    /// at 100,000 items, nearly all of it that comparison).
    by_name: HashMap<u64, Named>,
    /// Epoch keys this device can open.
    pub keys: BTreeMap<EnvelopeId, FolderKey>,
    /// Accepted content applied to `doc`, with its Automerge change hash
    /// (its order does not matter: a document is the set of its changes).
    /// The one map of them a replica keeps: the space learns a hash only
    /// when a change of this device names it as a dep.
    applied: HashMap<EnvelopeId, [u8; 32]>,
    /// Accepted content not applied, and why (same on every key holder).
    pub skipped: BTreeMap<EnvelopeId, Skip>,
    /// The incarnation this device writes as.
    pub incarnation: u32,
    /// Work applied since the folder was last snapshotted (or built
    /// without a snapshot): per change, one or the items it touched where
    /// more. An import writes a few changes of many items, and replaying
    /// it costs by the item: counted by changes, a 100,000-item import
    /// never got a snapshot, and every unlock replayed it.
    unsnapshotted: usize,
}

/// Why an accepted change is not in the document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// No key of its epoch reaches this device.
    NoKey,
    /// The payload does not decrypt, or is no change within the bounds.
    Unreadable,
    /// The change is not the one its header announces.
    HeaderMismatch,
    /// It depends on a skipped change.
    DependsOnSkipped,
}

impl OpenFolder {
    /// Opens `space` with `keys`: `None` when no epoch key reaches this
    /// device, or the folder is not to be shown here (deleted, or left by
    /// this device: [`OpenFolder::hidden`]).
    pub fn open(space: &Space, keys: &DeviceKeys) -> Option<OpenFolder> {
        if OpenFolder::hidden(space, &keys.device_id()) {
            return None;
        }
        let epoch_keys = space.epoch_keys(keys);
        if epoch_keys.is_empty() {
            return None;
        }
        let me = keys.device_id();
        let mut open = OpenFolder {
            doc: FolderDoc::with_incarnation(me, 0),
            items: BTreeMap::new(),
            by_name: HashMap::new(),
            keys: epoch_keys,
            applied: HashMap::new(),
            skipped: BTreeMap::new(),
            incarnation: 0,
            unsnapshotted: 0,
        };
        let order: Vec<&Envelope> = space.accepted_content().collect();
        open.apply(&order);
        open.incarnation = writing_incarnation(space, &me, &open.skipped);
        open.doc.set_writer(me, open.incarnation);
        let items = open.doc.item_heads();
        open.set_items(items);
        Some(open)
    }

    /// A folder restored from a snapshot's parts (its items not read yet).
    pub(crate) fn from_parts(
        doc: FolderDoc,
        keys: BTreeMap<EnvelopeId, FolderKey>,
        applied: Vec<(EnvelopeId, [u8; 32])>,
        skipped: BTreeMap<EnvelopeId, Skip>,
    ) -> OpenFolder {
        OpenFolder {
            doc,
            items: BTreeMap::new(),
            by_name: HashMap::new(),
            keys,
            applied: applied.into_iter().collect(),
            skipped,
            incarnation: 0,
            unsnapshotted: 0,
        }
    }

    /// The applied changes and their Automerge hashes.
    pub(crate) fn applied(&self) -> impl Iterator<Item = (&EnvelopeId, &[u8; 32])> {
        self.applied.iter()
    }

    pub(crate) fn applied_count(&self) -> usize {
        self.applied.len()
    }

    /// The Automerge hash of an applied change.
    pub(crate) fn change_hash(&self, id: &EnvelopeId) -> Option<[u8; 32]> {
        self.applied.get(id).copied()
    }

    /// The applied changes of these Automerge hashes, as (envelope, hash):
    /// the lowest envelope id should two carry one (acceptance lets one
    /// (actor, seq) in only). One scan, asked only for the deps of this
    /// device's next change.
    pub(crate) fn applied_of_hashes(&self, hashes: &[[u8; 32]]) -> Vec<(EnvelopeId, [u8; 32])> {
        let mut found: BTreeMap<[u8; 32], EnvelopeId> = BTreeMap::new();
        for (id, hash) in &self.applied {
            if hashes.contains(hash) {
                let lowest = found.entry(*hash).or_insert(*id);
                *lowest = (*lowest).min(*id);
            }
        }
        found.into_iter().map(|(hash, id)| (id, hash)).collect()
    }

    /// Whether at least `changes` (and one) were applied since the last
    /// snapshot, a change counting as the items it touched where more.
    pub(crate) fn snapshot_due(&self, changes: usize) -> bool {
        self.unsnapshotted >= changes.max(1)
    }

    pub(crate) fn snapshotted(&mut self) {
        self.unsnapshotted = 0;
    }

    /// Whether `me` no longer shows the folder: it was deleted for every
    /// member, or `me` left it.
    pub fn hidden(space: &Space, me: &crate::ids::DeviceId) -> bool {
        space.is_deleted() || space.left_by_itself(me)
    }

    /// Applies accepted content envelopes in order (deps first), checking
    /// each; returns the items they touched.
    pub fn apply(&mut self, envelopes: &[&Envelope]) -> HashSet<ItemId> {
        // Each change is decrypted and parsed once: its metadata, the items
        // it touched and the document all read the parsed form.
        let mut batch: Vec<BoundChange> = Vec::new();
        let mut ids: Vec<(usize, EnvelopeId)> = Vec::new();
        let mut touched = HashSet::new();
        for (at, env) in envelopes.iter().enumerate() {
            if self.is_applied(&env.id()) || self.skipped.contains_key(&env.id()) {
                continue;
            }
            match self.check(env) {
                Ok((change, meta)) => {
                    touched.extend(crate::folder::touched_by(change.change()));
                    // Before it is in the document: a later change of the
                    // batch may name it as a dep.
                    self.applied.insert(env.id(), meta.hash);
                    batch.push(change);
                    ids.push((at, env.id()));
                }
                Err(why) => {
                    self.skipped.insert(env.id(), why);
                }
            }
        }
        self.unsnapshotted += ids.len().max(touched.len());
        if self.doc.apply_bound(batch).is_err() {
            // Automerge refused the batch (checked changes should not be)
            // and applied none of it: one by one, from the envelopes again,
            // skipping what fails and what depends on it.
            for (_, id) in &ids {
                self.applied.remove(id);
            }
            for (at, id) in ids {
                let one = self.check(envelopes[at]);
                match one.map(|(change, meta)| (self.doc.apply_bound(vec![change]), meta.hash)) {
                    Ok((Ok(()), hash)) => {
                        self.applied.insert(id, hash);
                    }
                    _ => {
                        self.skipped.insert(id, Skip::Unreadable);
                    }
                }
            }
        }
        touched
    }

    /// Decrypts `env` with its own epoch's key, parses its change once and
    /// checks it against the envelope's header.
    fn check(&self, env: &Envelope) -> Result<(BoundChange, ChangeMeta), Skip> {
        let header = env.body().change.as_ref().ok_or(Skip::Unreadable)?;
        if header.deps.iter().any(|d| self.skipped.contains_key(d)) {
            return Err(Skip::DependsOnSkipped);
        }
        let key = env
            .body()
            .epoch
            .and_then(|e| self.keys.get(&e))
            .ok_or(Skip::NoKey)?;
        let plain = Space::open_content(env, key).map_err(|_| Skip::Unreadable)?;
        let change = parse_change(&plain).ok_or(Skip::Unreadable)?;
        let meta = ChangeMeta::of(&change);
        if meta.seq != header.seq {
            return Err(Skip::HeaderMismatch);
        }
        let change = BoundChange::new(env.author(), header.incarnation, change)
            .ok_or(Skip::HeaderMismatch)?;
        // The header names the deps by envelope, the change by hash: the
        // same set, through the applied changes (one hash per envelope and
        // one envelope per hash: acceptance lets one (actor, seq) in).
        if !header.deps.windows(2).all(|w| w[0] < w[1]) {
            return Err(Skip::HeaderMismatch);
        }
        let mut named: Vec<[u8; 32]> = Vec::with_capacity(header.deps.len());
        for id in &header.deps {
            named.push(*self.applied.get(id).ok_or(Skip::HeaderMismatch)?);
        }
        named.sort_unstable();
        let mut deps = meta.deps.clone();
        deps.sort_unstable();
        deps.dedup();
        if named != deps {
            return Err(Skip::HeaderMismatch);
        }
        Ok((change, meta))
    }

    /// Whether the envelope's change is in the document.
    pub fn is_applied(&self, id: &EnvelopeId) -> bool {
        self.applied.contains_key(id)
    }

    /// Refreshes the cached items after `touched` changed.
    pub fn refresh(&mut self, touched: &HashSet<ItemId>) {
        if touched.len() > 64 && touched.len() * 2 > self.items.len() {
            // Most of the folder (an import, an initial sync): one pass over
            // the document is cheaper than a lookup per item.
            let items = self.doc.item_heads();
            self.set_items(items);
            return;
        }
        for id in touched {
            match self.doc.item(*id) {
                Some(item) => self.put_item(ItemHead::from(item)),
                None => self.remove_item(id),
            }
        }
    }

    /// The head of each item the document shows.
    pub fn items(&self) -> &BTreeMap<ItemId, ItemHead> {
        &self.items
    }

    /// The whole item, read from the document.
    pub fn item(&self, id: &ItemId) -> Option<Item> {
        if !self.items.contains_key(id) {
            return None;
        }
        self.doc.item(*id)
    }

    /// The items named `name` (ASCII case ignored), by id.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a ItemHead> + 'a {
        self.by_name
            .get(&name_key(name))
            .into_iter()
            .flat_map(Named::iter)
            .filter_map(|id| self.items.get(id))
            .filter(move |i| i.name.eq_ignore_ascii_case(name))
    }

    /// Replaces every cached item head (the document read whole).
    pub(crate) fn set_items(&mut self, items: Vec<ItemHead>) {
        // Collected, not inserted one by one: a map built from sorted keys
        // has full nodes, one filled by inserts in order half-full ones
        // (12 MB more at 100,000 items).
        self.items = items.into_iter().map(|i| (i.id, i)).collect();
        self.by_name.clear();
        for (id, item) in &self.items {
            index_name(&mut self.by_name, name_key(&item.name), *id);
        }
    }

    fn put_item(&mut self, item: ItemHead) {
        let (id, key) = (item.id, name_key(&item.name));
        if let Some(old) = self.items.insert(id, item) {
            let was = name_key(&old.name);
            if was != key {
                self.unname(was, &id);
            }
        }
        index_name(&mut self.by_name, key, id);
    }

    fn remove_item(&mut self, id: &ItemId) {
        if let Some(old) = self.items.remove(id) {
            self.unname(name_key(&old.name), id);
        }
    }

    fn unname(&mut self, key: u64, id: &ItemId) {
        if let Some(ids) = self.by_name.get_mut(&key) {
            if ids.remove(id) {
                self.by_name.remove(&key);
            }
        }
    }

    /// Keeps the incarnation this device writes as current while the
    /// folder stays open: after a removal and re-add, or once a change of
    /// its own was skipped (a stale or lying client's with its key), the
    /// next change must not take an (actor, seq) that one already claims.
    /// Never goes back.
    pub fn keep_writer_current(&mut self, space: &Space, me: &crate::ids::DeviceId) {
        let need = writing_incarnation(space, me, &self.skipped);
        if need > self.incarnation {
            self.incarnation = need;
            self.doc.set_writer(*me, need);
        }
    }

    /// Records a change this device made (already in `doc`), which
    /// touched `items` items.
    pub fn record_own(&mut self, env: &Envelope, meta: &ChangeMeta, items: usize) {
        self.applied.insert(env.id(), meta.hash);
        self.unsnapshotted += items.max(1);
    }

    /// Takes in epoch keys that reached this device since it opened the
    /// folder; `false` if a change was skipped for want of a key (then the
    /// folder must be opened again, in order).
    pub fn add_keys(&mut self, keys: BTreeMap<EnvelopeId, FolderKey>) -> bool {
        let grew = keys.len() > self.keys.len();
        self.keys = keys;
        !(grew && self.skipped.values().any(|s| *s == Skip::NoKey))
    }

    /// Whether every change in the document is still accepted (so applying
    /// the accepted ones it lacks suffices).
    pub fn extends(&self, accepted: &[EnvelopeId]) -> bool {
        // A document is the set of its changes, whatever order they were
        // applied in: it extends if nothing applied left the accepted set.
        let still = accepted
            .iter()
            .filter(|id| self.applied.contains_key(id))
            .count();
        still == self.applied.len()
    }
}

/// The incarnation this device writes as: the folder's for it, or past any
/// of its own changes that did not make it into the document (a change of
/// an actor must never reuse a seq that one of its changes took).
pub(crate) fn writing_incarnation(
    space: &Space,
    me: &crate::ids::DeviceId,
    skipped: &BTreeMap<EnvelopeId, Skip>,
) -> u32 {
    let mut need = space.incarnation(me);
    for env in space.held() {
        if env.author() != *me {
            continue;
        }
        let Some(h) = &env.body().change else {
            continue;
        };
        if !space.is_accepted(&env.id()) || skipped.contains_key(&env.id()) {
            need = need.max(h.incarnation.saturating_add(1));
        }
    }
    need.min(crate::accept::MAX_INCARNATIONS - 1)
}

/// The ids of the items of one name: nearly every name has one item, and a
/// set of one took a 192-byte B-tree node (16 MB at 100,000 items); a set
/// keeps many items of one name ("Untitled", or a writer's 100,000 copies)
/// at a log, not a scan, each.
#[derive(Debug)]
enum Named {
    One(ItemId),
    Many(BTreeSet<ItemId>),
}

impl Named {
    fn insert(&mut self, id: ItemId) {
        match self {
            Named::One(one) if *one == id => {}
            Named::One(one) => *self = Named::Many(BTreeSet::from([*one, id])),
            Named::Many(ids) => {
                ids.insert(id);
            }
        }
    }

    /// Removes `id`; whether no id is left.
    fn remove(&mut self, id: &ItemId) -> bool {
        match self {
            Named::One(one) => one == id,
            Named::Many(ids) => {
                ids.remove(id);
                // A set of one turns back into `One`, so a set never empties.
                if let (1, Some(last)) = (ids.len(), ids.first().copied()) {
                    *self = Named::One(last);
                }
                false
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = &ItemId> {
        let (one, many) = match self {
            Named::One(id) => (Some(id), None),
            Named::Many(ids) => (None, Some(ids.iter())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

/// Adds `id` under the name key `key`.
fn index_name(by_name: &mut HashMap<u64, Named>, key: u64, id: ItemId) {
    match by_name.entry(key) {
        std::collections::hash_map::Entry::Vacant(e) => {
            e.insert(Named::One(id));
        }
        std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().insert(id),
    }
}

/// The index key of an item name: a hash of it with ASCII case folded, the
/// way names are matched (`eq_ignore_ascii_case`). Equal names share a key;
/// a collision only adds a candidate that the match then drops.
fn name_key(name: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: the same on every run and every device.
    let mut h = std::hash::DefaultHasher::new();
    for b in name.bytes() {
        b.to_ascii_lowercase().hash(&mut h);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(named: &Named) -> Vec<u8> {
        named.iter().map(|id| id.0[0]).collect()
    }

    /// One name's ids through every shape: one, many, back to one, none.
    #[test]
    fn a_name_keeps_its_ids_as_they_come_and_go() {
        let id = |n: u8| ItemId([n; 16]);
        let mut named = Named::One(id(2));
        named.insert(id(2));
        assert_eq!(ids(&named), [2]);
        named.insert(id(1));
        named.insert(id(3));
        assert_eq!(ids(&named), [1, 2, 3]);
        assert!(!named.remove(&id(9)) && !named.remove(&id(2)));
        assert_eq!(ids(&named), [1, 3]);
        assert!(!named.remove(&id(1)));
        assert!(matches!(named, Named::One(_)));
        assert_eq!(ids(&named), [3]);
        assert!(!named.remove(&id(1)), "another id leaves it");
        assert!(named.remove(&id(3)), "its last id empties it");
    }
}
