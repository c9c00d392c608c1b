//! The folder document: one Automerge document per folder space, holding its
//! name and its items.
//!
//! Layout: `{ meta: { name }, items: { <item id hex>: { type, name, created,
//! updated, trashed, purged, fields: { <field>: str }, urls: str } } }`
//! (URLs newline-joined in one scalar; `purged` marks an item emptied from
//! the trash or moved out: [`FolderDoc::purge_items`]). Every field,
//! secrets included, is a scalar (last writer wins, conflicts kept and shown),
//! never Automerge Text. Each change names the items it touched in its message
//! so history is found without decoding every change.

use std::collections::{BTreeMap, HashMap};

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{
    hydrate, ActorId, AutoCommit, Change, ChangeHash, ObjType, ReadDoc, ScalarValue, Value, ROOT,
};

use crate::ids::{DeviceId, ItemId};

/// Longest accepted item or folder name, field value and URL list.
pub const MAX_NAME_LEN: usize = 512;
pub const MAX_FIELD_LEN: usize = 64 * 1024;
pub const MAX_URLS: usize = 64;
/// Upper bound on the bytes one edit writes (name, fields, URLs), so that a
/// change always fits in an envelope.
pub const MAX_EDIT_BYTES: usize = 512 * 1024;

/// The four item types of the brief.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ItemType {
    Login,
    Note,
    Card,
    Totp,
}

impl ItemType {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemType::Login => "login",
            ItemType::Note => "note",
            ItemType::Card => "card",
            ItemType::Totp => "totp",
        }
    }

    pub fn parse(s: &str) -> Option<ItemType> {
        Some(match s {
            "login" => ItemType::Login,
            "note" => ItemType::Note,
            "card" => ItemType::Card,
            "totp" => ItemType::Totp,
            _ => return None,
        })
    }
}

/// An item's fields by name, in name order: a sorted `Vec`, since a
/// `BTreeMap`'s first node alone takes ≈540 bytes for the two or three
/// fields most items have, and every item is read whole at unlock (for its
/// head) and for each `get`. The methods are `BTreeMap`'s, by the same
/// names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    pub fn new() -> Fields {
        Fields(Vec::new())
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    pub fn get(&self, key: &str) -> Option<&String> {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Sets `key` to `value`; the value it had, if any.
    pub fn insert(&mut self, key: String, value: String) -> Option<String> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.find(key).ok().map(|i| self.0.remove(i).1)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&String, &String)> + ExactSizeIterator {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &String> + ExactSizeIterator {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &String> + ExactSizeIterator {
        self.0.iter().map(|(_, v)| v)
    }
}

impl std::ops::Index<&str> for Fields {
    type Output = String;

    fn index(&self, key: &str) -> &String {
        self.get(key).expect("no such field")
    }
}

impl FromIterator<(String, String)> for Fields {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Fields {
        let mut fields = Fields::new();
        fields.extend(iter);
        fields
    }
}

impl Extend<(String, String)> for Fields {
    fn extend<I: IntoIterator<Item = (String, String)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl IntoIterator for Fields {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Fields {
    type Item = (&'a String, &'a String);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, String)>,
        fn(&'a (String, String)) -> (&'a String, &'a String),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl From<BTreeMap<String, String>> for Fields {
    fn from(map: BTreeMap<String, String>) -> Fields {
        // Already in key order.
        Fields(map.into_iter().collect())
    }
}

impl From<Fields> for BTreeMap<String, String> {
    fn from(fields: Fields) -> BTreeMap<String, String> {
        fields.0.into_iter().collect()
    }
}

/// An item as the folder document currently shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub id: ItemId,
    pub item_type: ItemType,
    pub name: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub trashed_ms: Option<i64>,
    pub fields: Fields,
    pub urls: Vec<String>,
    /// Fields edited concurrently: the values that lost last-writer-wins.
    pub conflicts: BTreeMap<String, Vec<String>>,
    /// Moved to the trash while someone else edited it: the edit wins, the
    /// item stays out of the trash and says so until it is written again
    /// ([`FolderDoc::edited_while_trashed`]).
    pub kept_from_trash: bool,
}

impl Item {
    /// Whether concurrent values of some field were kept, or a concurrent
    /// edit kept it out of the trash (`coffer conflicts`).
    pub fn has_conflicts(&self) -> bool {
        self.kept_from_trash || self.conflicts.values().any(|kept| !kept.is_empty())
    }
}

/// What a listing, a search or the browser's lookup reads of an item: its
/// name, type, times, username and URLs, and flags — no other field, so no
/// secret. An open folder keeps one per item; the whole [`Item`] is read
/// from the document when asked ([`FolderDoc::item`]). At 100,000 items
/// the whole items kept ≈ 50 MB (measured with heaptrack).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemHead {
    pub id: ItemId,
    pub item_type: ItemType,
    pub has_totp: bool,
    pub archived: bool,
    /// [`Item::has_conflicts`].
    pub conflict: bool,
    pub name: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub trashed_ms: Option<i64>,
    pub username: Option<Box<str>>,
    pub urls: Box<[Box<str>]>,
}

impl ItemHead {
    pub fn of(item: &Item) -> ItemHead {
        let set = |key: &str| item.fields.get(key).is_some_and(|v| !v.is_empty());
        ItemHead {
            id: item.id,
            item_type: item.item_type,
            has_totp: set("totp"),
            archived: set(crate::schema::ARCHIVED),
            conflict: item.has_conflicts(),
            name: item.name.clone(),
            created_ms: item.created_ms,
            updated_ms: item.updated_ms,
            trashed_ms: item.trashed_ms,
            username: item.fields.get("username").map(|u| u.as_str().into()),
            urls: item.urls.iter().map(|u| u.as_str().into()).collect(),
        }
    }
}

impl From<Item> for ItemHead {
    fn from(item: Item) -> ItemHead {
        ItemHead::of(&item)
    }
}

/// What an edit changes; `None` leaves a part as it is, an empty string in
/// `fields` removes that field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ItemEdit {
    pub name: Option<String>,
    pub fields: BTreeMap<String, String>,
    pub urls: Option<Vec<String>>,
}

/// One item of a batch for [`FolderDoc::add_items`]; the times let a
/// restored backup keep its items' history of when.
#[derive(Clone, Copy, Debug)]
pub struct NewItem<'a> {
    pub id: ItemId,
    pub item_type: ItemType,
    pub name: &'a str,
    pub edit: &'a ItemEdit,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub trashed_ms: Option<i64>,
}

impl NewItem<'_> {
    /// The item exactly as [`FolderDoc::item`] reads it back right after
    /// [`FolderDoc::add_items`], without reading the document.
    pub fn to_item(&self) -> Item {
        Item {
            id: self.id,
            item_type: self.item_type,
            name: self.name.to_owned(),
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
            trashed_ms: self.trashed_ms,
            fields: self
                .edit
                .fields
                .iter()
                .filter(|(_, value)| !value.is_empty())
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect(),
            urls: self
                .edit
                .urls
                .iter()
                .flatten()
                .filter(|url| !url.is_empty())
                .cloned()
                .collect(),
            conflicts: BTreeMap::new(),
            kept_from_trash: false,
        }
    }
}

impl ItemEdit {
    /// The bytes of text this edit writes (name, field names and values,
    /// URLs): what [`MAX_EDIT_BYTES`] bounds.
    pub fn text_bytes(&self) -> usize {
        self.name.as_ref().map_or(0, String::len)
            + self
                .fields
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
            + self.urls.iter().flatten().map(String::len).sum::<usize>()
    }
}

/// The names of what differs from `before` to `after` (see
/// [`HistoryEntry::changed`]).
fn changed_between(before: Option<&Item>, after: &Item) -> Vec<String> {
    let mut changed = Vec::new();
    if before.is_none_or(|b| b.name != after.name) {
        changed.push("name".to_owned());
    }
    let empty = Fields::new();
    let old_fields = before.map_or(&empty, |b| &b.fields);
    let keys: std::collections::BTreeSet<&String> =
        old_fields.keys().chain(after.fields.keys()).collect();
    for key in keys {
        if old_fields.get(key) != after.fields.get(key) {
            changed.push(key.clone());
        }
    }
    if before.map_or(!after.urls.is_empty(), |b| b.urls != after.urls) {
        changed.push("urls".to_owned());
    }
    if before.is_some_and(|b| b.trashed_ms.is_some() != after.trashed_ms.is_some()) {
        changed.push("trashed".to_owned());
    }
    changed
}

/// One earlier state of an item, as of a change that touched it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    pub change: ChangeHash,
    pub author: Option<DeviceId>,
    pub time_ms: i64,
    pub item: Item,
    /// What this change altered against the item as the change found it
    /// (its dependencies): field names, and `name`, `urls`, `trashed` (the
    /// change that added the item: everything it set).
    /// Names only, never values, so a masked history can show them.
    pub changed: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum FolderError {
    /// No item with that id in this folder.
    #[error("no item {0} in this folder")]
    NoSuchItem(ItemId),
    /// A name, field or URL list over its limit, or an empty name.
    #[error("invalid item: {0}")]
    Invalid(String),
    /// A change's Automerge actor is not the one bound to its envelope author.
    #[error("change actor does not belong to the envelope's author")]
    ActorMismatch,
    /// The bytes are not an Automerge change.
    #[error("malformed Automerge change")]
    MalformedChange,
    /// The edit would change nothing.
    #[error("nothing to change")]
    NothingChanged,
    /// The change is over the bounds checked before parsing.
    #[error("refused change: {0}")]
    OutOfBounds(crate::bounds::ChangeBoundsError),
    /// Automerge refused an operation.
    #[error("document error: {0}")]
    Document(String),
}

impl From<crate::bounds::ChangeBoundsError> for FolderError {
    fn from(e: crate::bounds::ChangeBoundsError) -> Self {
        match e {
            crate::bounds::ChangeBoundsError::Malformed => FolderError::MalformedChange,
            other => FolderError::OutOfBounds(other),
        }
    }
}

/// The Automerge actor of a device's changes: derived, so any peer can check
/// that a change belongs to the device that signed its envelope.
pub fn actor_for(device: &DeviceId, incarnation: u32) -> ActorId {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"coffer/actor/v1\0");
    hasher.update(&device.0);
    hasher.update(&incarnation.to_be_bytes());
    ActorId::from(&hasher.finalize().as_bytes()[..16])
}

/// A received change, parsed (its bounds checked) and bound to its author:
/// its actor is the author's actor of one incarnation.
pub struct BoundChange {
    author: DeviceId,
    change: Change,
}

impl BoundChange {
    /// `None` when the change's actor is not `author`'s of `incarnation`.
    pub fn new(author: DeviceId, incarnation: u32, change: Change) -> Option<BoundChange> {
        (change.actor_id() == &actor_for(&author, incarnation))
            .then_some(BoundChange { author, change })
    }

    pub fn change(&self) -> &Change {
        &self.change
    }
}

/// A folder's decrypted document, with the item index used for history.
pub struct FolderDoc {
    doc: AutoCommit,
    actors: HashMap<ActorId, DeviceId>,
    item_changes: HashMap<ItemId, Vec<ChangeHash>>,
}

fn doc_err(e: automerge::AutomergeError) -> FolderError {
    FolderError::Document(e.to_string())
}

/// Whether a new item would be accepted by [`FolderDoc::add_items`].
pub fn check_new_item(name: &str, edit: &ItemEdit) -> Result<(), FolderError> {
    check_name(name)?;
    check_edit(edit)
}

fn check_name(name: &str) -> Result<(), FolderError> {
    if name.trim().is_empty() {
        return Err(FolderError::Invalid("name must not be empty".into()));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(FolderError::Invalid(format!(
            "name longer than {MAX_NAME_LEN} bytes"
        )));
    }
    Ok(())
}

fn check_edit(edit: &ItemEdit) -> Result<(), FolderError> {
    if let Some(name) = &edit.name {
        check_name(name)?;
    }
    for (key, value) in &edit.fields {
        if key.is_empty() || key.len() > 64 {
            return Err(FolderError::Invalid(format!("bad field name {key:?}")));
        }
        if value.len() > MAX_FIELD_LEN {
            return Err(FolderError::Invalid(format!(
                "field {key} longer than {MAX_FIELD_LEN} bytes"
            )));
        }
    }
    if edit.text_bytes() > MAX_EDIT_BYTES {
        return Err(FolderError::Invalid(format!(
            "item larger than {} KiB",
            MAX_EDIT_BYTES / 1024
        )));
    }
    if let Some(urls) = &edit.urls {
        // One scalar, newline-joined: an Automerge list per item costs ~250 KiB of memory.
        if urls.len() > MAX_URLS
            || urls
                .iter()
                .any(|u| u.len() > 4096 || u.contains(['\n', '\r']))
        {
            return Err(FolderError::Invalid("too many or too long URLs".into()));
        }
    }
    Ok(())
}

fn scalar_string(value: &Value<'_>) -> Option<String> {
    match value {
        Value::Scalar(s) => match s.as_ref() {
            ScalarValue::Str(s) => Some(s.to_string()),
            _ => None,
        },
        _ => None,
    }
}

fn scalar_int(value: &Value<'_>) -> Option<i64> {
    match value {
        Value::Scalar(s) => match s.as_ref() {
            ScalarValue::Int(i) | ScalarValue::Timestamp(i) => Some(*i),
            _ => None,
        },
        _ => None,
    }
}

impl FolderDoc {
    /// An empty document whose local changes are made as `device`.
    pub fn new(device: DeviceId) -> Self {
        Self::with_incarnation(device, 0)
    }

    /// An empty document whose local changes are made as `device`'s
    /// `incarnation` (a device re-added after removal starts a new one).
    pub fn with_incarnation(device: DeviceId, incarnation: u32) -> Self {
        let actor = actor_for(&device, incarnation);
        let mut actors = HashMap::new();
        actors.insert(actor.clone(), device);
        Self {
            doc: AutoCommit::new().with_actor(actor),
            actors,
            item_changes: HashMap::new(),
        }
    }

    /// Makes later local changes as `device`'s `incarnation`.
    pub fn set_writer(&mut self, device: DeviceId, incarnation: u32) {
        let actor = actor_for(&device, incarnation);
        self.actors.insert(actor.clone(), device);
        self.doc.set_actor(actor);
    }

    fn commit(&mut self, message: String, now_ms: i64) -> Result<Vec<u8>, FolderError> {
        let hash = self
            .doc
            .commit_with(
                CommitOptions::default()
                    .with_message(message.clone())
                    .with_time(now_ms),
            )
            .ok_or(FolderError::NothingChanged)?;
        self.index_change(hash, Some(&message));
        let mut change = self
            .doc
            .get_change_by_hash(&hash)
            .ok_or_else(|| FolderError::Document("committed change not found".into()))?;
        Ok(change.bytes().into_owned())
    }

    fn index_change(&mut self, hash: ChangeHash, message: Option<&str>) {
        let Some(message) = message else { return };
        for part in message.split(' ') {
            if let Some(id) = part.strip_prefix("item:").and_then(ItemId::from_hex) {
                self.item_changes.entry(id).or_default().push(hash);
            }
        }
    }

    /// Sets the folder's display name; returns the change bytes to wrap in an envelope.
    pub fn set_name(&mut self, name: &str, now_ms: i64) -> Result<Vec<u8>, FolderError> {
        check_name(name)?;
        let meta = match self.doc.get(ROOT, "meta").map_err(doc_err)? {
            Some((Value::Object(ObjType::Map), id)) => id,
            _ => self
                .doc
                .put_object(ROOT, "meta", ObjType::Map)
                .map_err(doc_err)?,
        };
        self.doc.put(&meta, "name", name).map_err(doc_err)?;
        self.commit("meta".into(), now_ms)
    }

    pub fn name(&self) -> Option<String> {
        let (_, meta) = self.doc.get(ROOT, "meta").ok()??;
        let (value, _) = self.doc.get(&meta, "name").ok()??;
        scalar_string(&value)
    }

    /// Adds an item; returns the change bytes.
    pub fn add_item(
        &mut self,
        id: ItemId,
        item_type: ItemType,
        name: &str,
        edit: &ItemEdit,
        now_ms: i64,
    ) -> Result<Vec<u8>, FolderError> {
        self.add_items(
            &[NewItem {
                id,
                item_type,
                name,
                edit,
                created_ms: now_ms,
                updated_ms: now_ms,
                trashed_ms: None,
            }],
            now_ms,
        )
    }

    /// Adds several items as one change (an import) committed at `now_ms`: one Automerge change and
    /// one envelope instead of one per item. Every item is checked before any
    /// is written, so an invalid item leaves the document as it was.
    pub fn add_items(
        &mut self,
        items: &[NewItem<'_>],
        now_ms: i64,
    ) -> Result<Vec<u8>, FolderError> {
        if items.is_empty() {
            return Err(FolderError::Invalid("no items to add".into()));
        }
        for item in items {
            check_name(item.name)?;
            check_edit(item.edit)?;
        }
        let mut message = String::from("add");
        for item in items {
            if let Err(e) = self.put_item(item) {
                self.doc.rollback();
                return Err(e);
            }
            message.push_str(" item:");
            message.push_str(&item.id.to_hex());
        }
        self.commit(message, now_ms)
    }

    fn put_item(&mut self, item: &NewItem<'_>) -> Result<(), FolderError> {
        let items = match self.doc.get(ROOT, "items").map_err(doc_err)? {
            Some((Value::Object(ObjType::Map), items)) => items,
            _ => self
                .doc
                .put_object(ROOT, "items", ObjType::Map)
                .map_err(doc_err)?,
        };
        // One batched object creation: two op-set splices instead of one per
        // key, which makes a 10,000-item import several times faster.
        let fields: HashMap<&str, hydrate::Value> = item
            .edit
            .fields
            .iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(key, value)| (key.as_str(), value.as_str().into()))
            .collect();
        let urls = item.edit.urls.as_deref().unwrap_or_default().join("\n");
        let value: HashMap<&str, hydrate::Value> = HashMap::from([
            ("type", item.item_type.as_str().into()),
            ("name", item.name.into()),
            ("created", item.created_ms.into()),
            ("updated", item.updated_ms.into()),
            (
                "trashed",
                item.trashed_ms
                    .map_or(ScalarValue::Null, ScalarValue::Int)
                    .into(),
            ),
            ("fields", fields.into()),
            ("urls", urls.as_str().into()),
        ]);
        self.doc
            .batch_create_object(&items, item.id.to_hex(), &value.into(), false)
            .map_err(doc_err)?;
        Ok(())
    }

    /// Every `items` map: two replicas adding their first item concurrently
    /// each create one, and Automerge keeps both as a conflict. The winning
    /// map comes first; readers look through all of them.
    fn item_maps(&self) -> Vec<automerge::ObjId> {
        let mut maps = Vec::new();
        if let Ok(Some((Value::Object(ObjType::Map), winner))) = self.doc.get(ROOT, "items") {
            maps.push(winner);
        }
        for (value, obj) in self.doc.get_all(ROOT, "items").unwrap_or_default() {
            if matches!(value, Value::Object(ObjType::Map)) && !maps.contains(&obj) {
                maps.push(obj);
            }
        }
        maps
    }

    /// The item's map, unless purged ([`FolderDoc::purge_items`]): a
    /// purged item is neither read nor written.
    fn item_obj(&self, id: &ItemId) -> Result<automerge::ObjId, FolderError> {
        for items in self.item_maps() {
            if let Some((Value::Object(ObjType::Map), obj)) =
                self.doc.get(&items, id.to_hex()).map_err(doc_err)?
            {
                if self.read_item(*id, &obj, None).is_some() {
                    return Ok(obj);
                }
            }
        }
        Err(FolderError::NoSuchItem(*id))
    }

    fn child(
        &self,
        obj: &automerge::ObjId,
        key: &str,
        kind: ObjType,
    ) -> Result<automerge::ObjId, FolderError> {
        match self.doc.get(obj, key).map_err(doc_err)? {
            Some((Value::Object(t), child)) if t == kind => Ok(child),
            _ => Err(FolderError::Document(format!("item has no {key}"))),
        }
    }

    /// Applies an edit to an existing item; returns the change bytes.
    pub fn edit_item(
        &mut self,
        id: ItemId,
        edit: &ItemEdit,
        now_ms: i64,
    ) -> Result<Vec<u8>, FolderError> {
        check_edit(edit)?;
        let obj = self.item_obj(&id)?;
        if let Some(name) = &edit.name {
            self.doc.put(&obj, "name", name.as_str()).map_err(doc_err)?;
        }
        if !edit.fields.is_empty() {
            let fields = self.child(&obj, "fields", ObjType::Map)?;
            for (key, value) in &edit.fields {
                if value.is_empty() {
                    self.doc.delete(&fields, key.as_str()).map_err(doc_err)?;
                } else {
                    self.doc
                        .put(&fields, key.as_str(), value.as_str())
                        .map_err(doc_err)?;
                }
            }
        }
        if let Some(new_urls) = &edit.urls {
            self.doc
                .put(&obj, "urls", new_urls.join("\n"))
                .map_err(doc_err)?;
        }
        if self.edited_while_trashed(&obj, None) {
            // It shows out of the trash; this edit keeps it there for good
            // (its `updated` alone would let the trash win again).
            self.doc
                .put(&obj, "trashed", ScalarValue::Null)
                .map_err(doc_err)?;
        }
        self.doc.put(&obj, "updated", now_ms).map_err(doc_err)?;
        self.commit(format!("edit item:{}", id.to_hex()), now_ms)
    }

    /// Moves an item to the trash (`Some(now)`) or back out of it (`None`).
    pub fn set_trashed(
        &mut self,
        id: ItemId,
        trashed: bool,
        now_ms: i64,
    ) -> Result<Vec<u8>, FolderError> {
        let obj = self.item_obj(&id)?;
        if trashed {
            self.doc.put(&obj, "trashed", now_ms).map_err(doc_err)?;
        } else {
            self.doc
                .put(&obj, "trashed", ScalarValue::Null)
                .map_err(doc_err)?;
        }
        self.doc.put(&obj, "updated", now_ms).map_err(doc_err)?;
        let verb = if trashed { "trash" } else { "restore" };
        self.commit(format!("{verb} item:{}", id.to_hex()), now_ms)
    }

    /// Purges items (`coffer trash empty`, the source side of `coffer mv`),
    /// as one change: they no longer show on any member's device. The
    /// item's map is kept (deleting its key would drop a concurrent edit
    /// into a deleted object): the purge writes a `purged` marker and
    /// deletes the item's `updated` key, which every edit, trash and
    /// restore writes. An item is hidden iff it holds `purged` and no
    /// `updated` value: an edit, trash or restore concurrent with the
    /// purge keeps its `updated` value (a delete removes only the values
    /// it saw), so the item shows again, with that change, on every
    /// replica. Earlier changes stay in the folder's history.
    pub fn purge_items(&mut self, ids: &[ItemId], now_ms: i64) -> Result<Vec<u8>, FolderError> {
        if ids.is_empty() {
            return Err(FolderError::NothingChanged);
        }
        let mut message = String::from("purge");
        for id in ids {
            let key = id.to_hex();
            let mut found = false;
            for items in self.item_maps() {
                let Some((Value::Object(ObjType::Map), obj)) =
                    self.doc.get(&items, key.as_str()).map_err(doc_err)?
                else {
                    continue;
                };
                if self.read_item(*id, &obj, None).is_none() {
                    continue;
                }
                let written = self
                    .doc
                    .put(&obj, "purged", now_ms)
                    .and_then(|()| self.doc.delete(&obj, "updated"));
                if let Err(e) = written {
                    self.doc.rollback();
                    return Err(doc_err(e));
                }
                found = true;
            }
            if !found {
                self.doc.rollback();
                return Err(FolderError::NoSuchItem(*id));
            }
            message.push_str(" item:");
            message.push_str(&key);
        }
        self.commit(message, now_ms)
    }

    /// Applies a change received in an envelope from `author`. The change's
    /// actor must be the author's derived actor.
    pub fn apply_change(&mut self, author: &DeviceId, bytes: &[u8]) -> Result<(), FolderError> {
        crate::bounds::check_change(bytes)?;
        let change =
            Change::from_bytes(bytes.to_vec()).map_err(|_| FolderError::MalformedChange)?;
        let bound = (0..crate::accept::MAX_INCARNATIONS)
            .any(|i| change.actor_id() == &actor_for(author, i));
        if !bound {
            return Err(FolderError::ActorMismatch);
        }
        let hash = change.hash();
        let message = change.message().map(str::to_owned);
        self.actors
            .entry(change.actor_id().clone())
            .or_insert(*author);
        if ReadDoc::get_change_by_hash(&self.doc, &hash).is_some() {
            return Ok(());
        }
        let applied = self.doc.apply_changes([change]);
        self.drop_patch_log();
        applied.map_err(doc_err)?;
        self.index_change(hash, message.as_deref());
        Ok(())
    }

    /// Automerge 0.12 logs every op a received change applies into the
    /// document's patch log even while that log is inactive (nothing here
    /// asks for patches), and keeps the log until a diff cursor is reset:
    /// about 2 KB per item, never freed, was half the heap of an unlocked
    /// 10,000-item vault. Dropped after every apply.
    fn drop_patch_log(&mut self) {
        self.doc.reset_diff_cursor();
    }

    /// Applies changes parsed once and bound to their authors in one
    /// Automerge call (what rebuilding a folder does); on an error nothing
    /// is applied.
    pub fn apply_bound(&mut self, changes: Vec<BoundChange>) -> Result<(), FolderError> {
        let mut batch = Vec::with_capacity(changes.len());
        let mut index = Vec::with_capacity(changes.len());
        let mut actors = Vec::new();
        for BoundChange { author, change } in changes {
            if ReadDoc::get_change_by_hash(&self.doc, &change.hash()).is_some() {
                continue;
            }
            if !self.actors.contains_key(change.actor_id()) {
                actors.push((change.actor_id().clone(), author));
            }
            index.push((change.hash(), change.message().map(str::to_owned)));
            batch.push(change);
        }
        let applied = self.doc.apply_changes(batch);
        self.drop_patch_log();
        applied.map_err(doc_err)?;
        for (actor, author) in actors {
            self.actors.entry(actor).or_insert(author);
        }
        for (hash, message) in index {
            self.index_change(hash, message.as_deref());
        }
        Ok(())
    }

    /// Applies many received changes in one Automerge call (far faster than
    /// one at a time: use it to rebuild a document from
    /// [`crate::Space::accepted_content`]). Each change's actor must be bound
    /// to its author; on an error nothing is applied.
    pub fn apply_changes<'a>(
        &mut self,
        changes: impl IntoIterator<Item = (DeviceId, &'a [u8])>,
    ) -> Result<(), FolderError> {
        let mut checked = Vec::new();
        let mut bound: HashMap<DeviceId, Vec<ActorId>> = HashMap::new();
        for (author, bytes) in changes {
            crate::bounds::check_change(bytes)?;
            let change =
                Change::from_bytes(bytes.to_vec()).map_err(|_| FolderError::MalformedChange)?;
            let allowed = bound.entry(author).or_insert_with(|| {
                (0..crate::accept::MAX_INCARNATIONS)
                    .map(|i| actor_for(&author, i))
                    .collect()
            });
            if !allowed.contains(change.actor_id()) {
                return Err(FolderError::ActorMismatch);
            }
            // Bound to one of the author's incarnations: checked just above.
            checked.push(BoundChange { author, change });
        }
        self.apply_bound(checked)
    }

    fn read_item(
        &self,
        id: ItemId,
        obj: &automerge::ObjId,
        heads: Option<&[ChangeHash]>,
    ) -> Option<Item> {
        // One pass over each map (not a seek per key): reading every item at
        // unlock is dominated by this.
        let entries =
            |o: &automerge::ObjId| -> Vec<(String, Value<'static>, automerge::ObjId, bool)> {
                let range = match heads {
                    Some(h) => self.doc.map_range_at(o, .., h),
                    None => self.doc.map_range(o, ..),
                };
                range
                    .map(|e| {
                        let id = e.id();
                        (e.key.into_owned(), e.value.into(), id, e.conflict)
                    })
                    .collect()
            };
        let (mut item_type, mut name, mut created_ms, mut updated_ms, mut trashed_ms) =
            (None, None, None, None, None);
        let (mut fields_obj, mut urls) = (None, Vec::new());
        let (mut purged, mut has_updated) = (false, false);
        for (key, value, obj_id, _) in entries(obj) {
            match key.as_str() {
                "purged" => purged = true,
                "type" => item_type = scalar_string(&value).and_then(|t| ItemType::parse(&t)),
                "name" => name = scalar_string(&value),
                "created" => created_ms = scalar_int(&value),
                "updated" => {
                    has_updated = true;
                    updated_ms = scalar_int(&value);
                }
                "trashed" => trashed_ms = scalar_int(&value),
                "fields" if value == Value::Object(ObjType::Map) => fields_obj = Some(obj_id),
                "urls" => {
                    urls = scalar_string(&value)
                        .map(|joined| {
                            joined
                                .lines()
                                .filter(|u| !u.is_empty())
                                .map(str::to_owned)
                                .collect()
                        })
                        .unwrap_or_default()
                }
                _ => {}
            }
        }
        if purged && !has_updated {
            // Purged, and nothing written to it concurrently: gone.
            return None;
        }
        let (item_type, name) = (item_type?, name?);
        let created_ms = created_ms.unwrap_or(0);
        let updated_ms = updated_ms.unwrap_or(created_ms);
        let kept_from_trash = trashed_ms.is_some() && self.edited_while_trashed(obj, heads);
        let trashed_ms = trashed_ms.filter(|_| !kept_from_trash);
        let mut fields = Fields::new();
        let mut conflicts = BTreeMap::new();
        if let Some(f) = fields_obj {
            for (key, value, _, conflict) in entries(&f) {
                let Some(winner) = scalar_string(&value) else {
                    continue;
                };
                if conflict {
                    let all = match heads {
                        Some(h) => self.doc.get_all_at(&f, key.as_str(), h),
                        None => self.doc.get_all(&f, key.as_str()),
                    }
                    .unwrap_or_default();
                    let losers: Vec<String> = all
                        .iter()
                        .filter_map(|(v, _)| scalar_string(v))
                        .filter(|v| v != &winner)
                        .collect();
                    if !losers.is_empty() {
                        conflicts.insert(key.clone(), losers);
                    }
                }
                fields.insert(key, winner);
            }
        }
        Some(Item {
            id,
            item_type,
            name,
            created_ms,
            updated_ms,
            trashed_ms,
            fields,
            urls,
            conflicts,
            kept_from_trash,
        })
    }

    /// Whether an edit was concurrent with the item's move to the trash:
    /// both wrote `updated`, so it holds more than one value, and one of
    /// them is not the `updated` written by a trash (the op right after
    /// that trash's `trashed` op, same actor). Concurrent trashes alone, or
    /// an edit made after the trash, do not count.
    fn edited_while_trashed(&self, obj: &automerge::ObjId, heads: Option<&[ChangeHash]>) -> bool {
        let all = |key: &str| {
            match heads {
                Some(h) => self.doc.get_all_at(obj, key, h),
                None => self.doc.get_all(obj, key),
            }
            .unwrap_or_default()
        };
        let updated = all("updated");
        if updated.len() < 2 {
            return false;
        }
        let trashes: Vec<(u64, ActorId)> = all("trashed")
            .into_iter()
            .filter_map(|(_, id)| match id {
                automerge::ObjId::Id(counter, actor, _) => Some((counter, actor)),
                automerge::ObjId::Root => None,
            })
            .collect();
        updated.iter().any(|(_, id)| match id {
            automerge::ObjId::Id(counter, actor, _) => {
                !trashes.iter().any(|(c, a)| c + 1 == *counter && a == actor)
            }
            automerge::ObjId::Root => false,
        })
    }

    pub fn item(&self, id: ItemId) -> Option<Item> {
        let obj = self.item_obj(&id).ok()?;
        self.read_item(id, &obj, None)
    }

    /// Every item, trashed ones included, in id order.
    pub fn items(&self) -> Vec<Item> {
        self.map_items(|item| item)
    }

    /// Every item's head, trashed ones included, in id order: each item is
    /// read whole and dropped at once, so no folder's secrets pile up.
    pub fn item_heads(&self) -> Vec<ItemHead> {
        self.map_items(ItemHead::from)
    }

    /// Reads every item whole, one at a time, and keeps only what `each`
    /// makes of it (in id order): a head, a digest or a fingerprint per
    /// item, without a folder's secrets all decoded at once.
    pub fn map_items<T>(&self, mut each: impl FnMut(Item) -> T) -> Vec<T> {
        let mut out: BTreeMap<ItemId, T> = BTreeMap::new();
        for items in self.item_maps() {
            for key in self.doc.keys(&items) {
                let Some(id) = ItemId::from_hex(&key) else {
                    continue;
                };
                if out.contains_key(&id) {
                    continue;
                }
                if let Ok(Some((Value::Object(ObjType::Map), obj))) =
                    self.doc.get(&items, key.as_str())
                {
                    if let Some(item) = self.read_item(id, &obj, None) {
                        out.insert(id, each(item));
                    }
                }
            }
        }
        out.into_values().collect()
    }

    /// The changes that touched an item (any order).
    pub fn item_change_hashes(&self, id: &ItemId) -> &[ChangeHash] {
        self.item_changes.get(id).map_or(&[], Vec::as_slice)
    }

    /// The item as it stood after each change that touched it, oldest first.
    pub fn history(&self, id: ItemId) -> Vec<HistoryEntry> {
        let Ok(obj) = self.item_obj(&id) else {
            return Vec::new();
        };
        let hashes = self.item_changes.get(&id).cloned().unwrap_or_default();
        let mut out: Vec<HistoryEntry> = hashes
            .into_iter()
            .filter_map(|hash| {
                let change = ReadDoc::get_change_by_hash(&self.doc, &hash)?;
                let item = self.read_item(id, &obj, Some(&[hash]))?;
                // Against the state the change was made on (its deps), not
                // the entry before it in time, which may be concurrent.
                let deps = change.deps().to_vec();
                let before = (!deps.is_empty())
                    .then(|| self.read_item(id, &obj, Some(&deps)))
                    .flatten();
                Some(HistoryEntry {
                    change: hash,
                    author: self.actors.get(change.actor_id()).copied(),
                    time_ms: change.timestamp(),
                    changed: changed_between(before.as_ref(), &item),
                    item,
                })
            })
            .collect();
        out.sort_by_key(|e| (e.time_ms, e.change));
        out
    }

    /// Hashes of the current heads, for equality checks between replicas.
    pub fn heads(&mut self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    /// The saved document with the indexes a reload would otherwise rebuild
    /// from every change: actors bound to devices, item -> changes.
    #[allow(clippy::type_complexity)]
    pub(crate) fn snapshot_parts(
        &mut self,
    ) -> (
        Vec<u8>,
        Vec<(ActorId, DeviceId)>,
        Vec<(ItemId, Vec<ChangeHash>)>,
    ) {
        let mut actors: Vec<(ActorId, DeviceId)> =
            self.actors.iter().map(|(a, d)| (a.clone(), *d)).collect();
        actors.sort();
        let mut items: Vec<(ItemId, Vec<ChangeHash>)> = self
            .item_changes
            .iter()
            .map(|(i, h)| (*i, h.clone()))
            .collect();
        items.sort_by_key(|(i, _)| *i);
        (self.doc.save(), actors, items)
    }

    /// A document loaded from [`FolderDoc::snapshot_parts`], writing as
    /// `device` (the caller sets the incarnation).
    pub(crate) fn from_snapshot(
        saved: &[u8],
        actors: HashMap<ActorId, DeviceId>,
        item_changes: HashMap<ItemId, Vec<ChangeHash>>,
        device: DeviceId,
    ) -> Option<FolderDoc> {
        let doc = AutoCommit::load(saved).ok()?;
        let mut doc = FolderDoc {
            doc,
            actors,
            item_changes,
        };
        doc.set_writer(device, 0);
        Some(doc)
    }

    /// The document's full saved form (deterministic for a given set of changes).
    pub fn save(&mut self) -> Vec<u8> {
        self.doc.save()
    }
}

/// The items an encoded change says it touches (from its commit message),
/// without applying it: how the daemon names what a synced change altered.
pub fn touched_items(change: &[u8]) -> Vec<ItemId> {
    crate::accept::parse_change(change)
        .map(|c| touched_by(&c))
        .unwrap_or_default()
}

/// [`touched_items`] of a parsed change.
pub fn touched_by(change: &Change) -> Vec<ItemId> {
    change
        .message()
        .map(|m| {
            m.split(' ')
                .filter_map(|p| p.strip_prefix("item:").and_then(ItemId::from_hex))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod fields_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// `Fields` answers as a `BTreeMap` would, after any inserts and
        /// removes: the same values, in the same order.
        #[test]
        fn fields_behave_as_a_btree_map(ops in prop::collection::vec((any::<bool>(), "[a-e]{0,2}", "[x-z]{0,2}"), 0..40)) {
            let mut fields = Fields::new();
            let mut map = BTreeMap::new();
            for (insert, k, v) in ops {
                if insert {
                    prop_assert_eq!(fields.insert(k.clone(), v.clone()), map.insert(k, v));
                } else {
                    prop_assert_eq!(fields.remove(&k), map.remove(&k));
                }
            }
            prop_assert_eq!(fields.len(), map.len());
            for (k, v) in &map {
                prop_assert_eq!(fields.get(k), Some(v));
                prop_assert!(fields.contains_key(k));
            }
            let pairs: Vec<(&String, &String)> = fields.iter().collect();
            prop_assert_eq!(pairs, map.iter().collect::<Vec<_>>());
            let collected: Fields = map.clone().into_iter().collect();
            prop_assert_eq!(&collected, &fields);
            prop_assert_eq!(BTreeMap::from(fields), map);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(fields: &[(&str, &str)]) -> ItemEdit {
        ItemEdit {
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    fn new<'a>(n: u8, item_type: ItemType, name: &'a str, edit: &'a ItemEdit) -> NewItem<'a> {
        NewItem {
            id: ItemId([n; 16]),
            item_type,
            name,
            edit,
            created_ms: 7,
            updated_ms: 7,
            trashed_ms: None,
        }
    }

    /// A head is what a listing shows, read from the item; it holds no
    /// other field, so a listing's memory holds no secret.
    #[test]
    fn an_item_head_holds_what_a_listing_shows_and_no_secret() {
        let dev = DeviceId([1; 32]);
        let mut doc = FolderDoc::new(dev);
        let mut fields = edit(&[
            ("username", "ada@example.com"),
            ("password", "hunter2-secret"),
            ("totp", "otpauth://totp/x?secret=JBSWY3DPEHPK3PXP"),
            ("notes", "the vault door code is 4711"),
        ]);
        fields.urls = Some(vec!["https://example.com/login".into()]);
        doc.add_items(&[new(1, ItemType::Login, "Bank", &fields)], 7)
            .unwrap();
        let item = doc.item(ItemId([1; 16])).unwrap();
        let head = ItemHead::of(&item);
        assert_eq!(doc.item_heads(), vec![head.clone()]);
        assert_eq!(
            (head.name.as_str(), head.username.as_deref(), &head.urls[..]),
            (
                "Bank",
                Some("ada@example.com"),
                &["https://example.com/login".into()][..]
            )
        );
        assert!(head.has_totp && !head.archived && !head.conflict);
        let shown = format!("{head:?}");
        for secret in ["hunter2-secret", "JBSWY3DPEHPK3PXP", "4711"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }

    #[test]
    fn purged_items_are_gone_on_every_replica_and_a_bad_id_purges_nothing() {
        let dev = DeviceId([1; 32]);
        let mut doc = FolderDoc::new(dev);
        let a = edit(&[("password", "pa")]);
        let batch = [
            new(1, ItemType::Login, "alpha", &a),
            new(2, ItemType::Login, "beta", &a),
            new(3, ItemType::Login, "gamma", &a),
        ];
        let added = doc.add_items(&batch, 7).unwrap();
        let mut other = FolderDoc::new(DeviceId([2; 32]));
        other.apply_change(&dev, &added).unwrap();

        // An unknown id refuses the whole purge and writes nothing.
        assert_eq!(
            doc.purge_items(&[ItemId([1; 16]), ItemId([9; 16])], 8),
            Err(FolderError::NoSuchItem(ItemId([9; 16])))
        );
        assert_eq!(doc.items().len(), 3);
        assert_eq!(doc.purge_items(&[], 8), Err(FolderError::NothingChanged));

        let purged = doc
            .purge_items(&[ItemId([1; 16]), ItemId([3; 16])], 8)
            .unwrap();
        assert_eq!(
            touched_items(&purged),
            vec![ItemId([1; 16]), ItemId([3; 16])]
        );
        other.apply_change(&dev, &purged).unwrap();
        for d in [&doc, &other] {
            let names: Vec<String> = d.items().into_iter().map(|i| i.name).collect();
            assert_eq!(names, ["beta"]);
            assert_eq!(d.item(ItemId([1; 16])), None);
        }
        // A purged item is not written any more, nor purged twice.
        assert_eq!(
            doc.edit_item(ItemId([1; 16]), &edit(&[("password", "x")]), 9),
            Err(FolderError::NoSuchItem(ItemId([1; 16])))
        );
        assert_eq!(
            doc.purge_items(&[ItemId([1; 16])], 9),
            Err(FolderError::NoSuchItem(ItemId([1; 16])))
        );
        // A concurrent edit of a purged item brings it back, edit included,
        // on every replica (red-team finding: it was lost).
        let mut editor = FolderDoc::new(DeviceId([3; 32]));
        editor.apply_change(&dev, &added).unwrap();
        let edited = editor
            .edit_item(ItemId([3; 16]), &edit(&[("password", "late")]), 9)
            .unwrap();
        other.apply_change(&DeviceId([3; 32]), &edited).unwrap();
        editor.apply_change(&dev, &purged).unwrap();
        for d in [&other, &editor] {
            let back = d.item(ItemId([3; 16])).expect("the concurrent edit shows");
            assert_eq!(back.fields["password"], "late");
            assert_eq!(d.item(ItemId([1; 16])), None);
        }
        // Purged again by someone who saw the edit: gone everywhere.
        let again = other.purge_items(&[ItemId([3; 16])], 10).unwrap();
        editor.apply_change(&DeviceId([2; 32]), &again).unwrap();
        assert_eq!(editor.item(ItemId([3; 16])), None);
    }

    #[test]
    fn a_batch_is_one_change_and_all_or_nothing() {
        let dev = DeviceId([1; 32]);
        let mut doc = FolderDoc::new(dev);
        let a = edit(&[("password", "pa")]);
        let mut b = edit(&[("notes", "line 1\nline 2"), ("pin", "")]);
        b.urls = Some(vec!["https://a.example".into(), String::new()]);
        let batch = [
            new(1, ItemType::Login, "alpha", &a),
            NewItem {
                trashed_ms: Some(6),
                created_ms: 1,
                ..new(2, ItemType::Note, "beta", &b)
            },
        ];
        let change = doc.add_items(&batch, 7).unwrap();
        assert_eq!(doc.heads().len(), 1);
        for new in &batch {
            assert_eq!(doc.item(new.id), Some(new.to_item()));
        }
        assert_eq!(doc.items().len(), 2);
        assert_eq!(
            doc.item(ItemId([2; 16])).unwrap().fields["notes"],
            "line 1\nline 2"
        );
        // Each item's history names the batch change.
        assert_eq!(doc.history(ItemId([1; 16])).len(), 1);
        assert_eq!(doc.history(ItemId([2; 16])).len(), 1);

        // A replica applying the one change sees both items.
        let mut other = FolderDoc::new(DeviceId([2; 32]));
        other.apply_change(&dev, &change).unwrap();
        assert_eq!(other.items(), doc.items());

        // One bad item refuses the whole batch and writes nothing.
        let huge = edit(&[("notes", &"x".repeat(MAX_FIELD_LEN + 1))]);
        let bad = [
            new(3, ItemType::Note, "gamma", &a),
            new(4, ItemType::Note, "delta", &huge),
        ];
        assert!(matches!(
            doc.add_items(&bad, 8),
            Err(FolderError::Invalid(_))
        ));
        assert_eq!(doc.items().len(), 2);
        assert!(matches!(
            doc.add_items(&[], 8),
            Err(FolderError::Invalid(_))
        ));
    }

    #[test]
    fn one_edit_is_bounded_so_it_fits_an_envelope() {
        let mut doc = FolderDoc::new(DeviceId([1; 32]));
        let value = "v".repeat(MAX_FIELD_LEN);
        let fields: Vec<(String, String)> =
            (0..9).map(|i| (format!("f{i}"), value.clone())).collect();
        let big = ItemEdit {
            fields: fields.into_iter().collect(),
            ..Default::default()
        };
        assert!(matches!(
            doc.add_item(ItemId([9; 16]), ItemType::Note, "big", &big, 1),
            Err(FolderError::Invalid(_))
        ));
    }

    #[test]
    fn add_edit_trash_and_history() {
        let dev = DeviceId([1; 32]);
        let mut doc = FolderDoc::new(dev);
        doc.set_name("Personal", 1).unwrap();
        let id = ItemId([5; 16]);
        doc.add_item(
            id,
            ItemType::Login,
            "github",
            &edit(&[("username", "me"), ("password", "one")]),
            10,
        )
        .unwrap();
        doc.edit_item(id, &edit(&[("password", "two")]), 20)
            .unwrap();
        doc.set_trashed(id, true, 30).unwrap();
        let item = doc.item(id).unwrap();
        assert_eq!(item.fields["password"], "two");
        assert_eq!(item.trashed_ms, Some(30));
        assert_eq!(doc.name().as_deref(), Some("Personal"));
        let history = doc.history(id);
        let passwords: Vec<_> = history
            .iter()
            .map(|h| h.item.fields["password"].clone())
            .collect();
        assert_eq!(passwords, ["one", "two", "two"]);
        assert!(history.iter().all(|h| h.author == Some(dev)));
        let changed: Vec<Vec<&str>> = history
            .iter()
            .map(|h| h.changed.iter().map(String::as_str).collect())
            .collect();
        assert_eq!(
            changed,
            [
                vec!["name", "password", "username"],
                vec!["password"],
                vec!["trashed"]
            ]
        );
    }

    #[test]
    fn concurrent_edits_keep_both_values() {
        let a = DeviceId([1; 32]);
        let b = DeviceId([2; 32]);
        let mut doc_a = FolderDoc::new(a);
        let id = ItemId([9; 16]);
        let c1 = doc_a
            .add_item(id, ItemType::Login, "x", &edit(&[("password", "base")]), 1)
            .unwrap();
        let mut doc_b = FolderDoc::new(b);
        doc_b.apply_change(&a, &c1).unwrap();
        let ca = doc_a
            .edit_item(id, &edit(&[("password", "from-a")]), 2)
            .unwrap();
        let cb = doc_b
            .edit_item(id, &edit(&[("password", "from-b")]), 2)
            .unwrap();
        doc_a.apply_change(&b, &cb).unwrap();
        doc_b.apply_change(&a, &ca).unwrap();
        let (ia, ib) = (doc_a.item(id).unwrap(), doc_b.item(id).unwrap());
        assert_eq!(ia, ib);
        let mut all = vec![ia.fields["password"].clone()];
        all.extend(ia.conflicts["password"].clone());
        all.sort();
        assert_eq!(all, ["from-a", "from-b"]);
    }

    #[test]
    fn an_edit_concurrent_with_a_trash_keeps_the_item_and_says_so() {
        let (a, b) = (DeviceId([1; 32]), DeviceId([2; 32]));
        let id = ItemId([9; 16]);
        let mut doc_a = FolderDoc::new(a);
        let c1 = doc_a
            .add_item(id, ItemType::Login, "x", &edit(&[("password", "base")]), 1)
            .unwrap();
        let mut doc_b = FolderDoc::new(b);
        doc_b.apply_change(&a, &c1).unwrap();
        let trash = doc_a.set_trashed(id, true, 2).unwrap();
        let edited = doc_b
            .edit_item(id, &edit(&[("password", "new")]), 2)
            .unwrap();
        doc_a.apply_change(&b, &edited).unwrap();
        doc_b.apply_change(&a, &trash).unwrap();
        for doc in [&doc_a, &doc_b] {
            let item = doc.item(id).unwrap();
            assert_eq!(item.trashed_ms, None, "the edit keeps it out of the trash");
            assert!(item.kept_from_trash && item.has_conflicts());
            assert_eq!(item.fields["password"], "new");
        }
        // A later edit settles it out of the trash for good; a later trash
        // (which saw the edit) trashes it.
        doc_b.edit_item(id, &edit(&[("username", "u")]), 3).unwrap();
        let item = doc_b.item(id).unwrap();
        assert!(item.trashed_ms.is_none() && !item.kept_from_trash);
        doc_a.set_trashed(id, true, 3).unwrap();
        let item = doc_a.item(id).unwrap();
        assert_eq!(item.trashed_ms, Some(3));
        assert!(!item.kept_from_trash);
        // Two concurrent trashes are no edit: it stays in the trash.
        let (c, d) = (DeviceId([3; 32]), DeviceId([4; 32]));
        let mut doc_c = FolderDoc::new(c);
        let mut doc_d = FolderDoc::new(d);
        doc_c.apply_change(&a, &c1).unwrap();
        doc_d.apply_change(&a, &c1).unwrap();
        let t_c = doc_c.set_trashed(id, true, 4).unwrap();
        let t_d = doc_d.set_trashed(id, true, 5).unwrap();
        doc_c.apply_change(&d, &t_d).unwrap();
        doc_d.apply_change(&c, &t_c).unwrap();
        for doc in [&doc_c, &doc_d] {
            let item = doc.item(id).unwrap();
            assert!(item.trashed_ms.is_some() && !item.kept_from_trash);
        }
    }

    #[test]
    fn first_items_added_concurrently_are_both_visible() {
        let (a, b) = (DeviceId([1; 32]), DeviceId([2; 32]));
        let mut doc_a = FolderDoc::new(a);
        let mut doc_b = FolderDoc::new(b);
        let ca = doc_a
            .add_item(ItemId([1; 16]), ItemType::Note, "a", &edit(&[]), 1)
            .unwrap();
        let cb = doc_b
            .add_item(ItemId([2; 16]), ItemType::Note, "b", &edit(&[]), 1)
            .unwrap();
        doc_a.apply_change(&b, &cb).unwrap();
        doc_b.apply_change(&a, &ca).unwrap();
        assert_eq!(doc_a.items().len(), 2);
        assert_eq!(doc_a.items(), doc_b.items());
        assert!(doc_a.item(ItemId([2; 16])).is_some());
    }

    #[test]
    fn batch_apply_matches_one_by_one() {
        let a = DeviceId([1; 32]);
        let mut src = FolderDoc::new(a);
        let changes: Vec<Vec<u8>> = (0..5)
            .map(|i| {
                src.add_item(ItemId([i; 16]), ItemType::Note, "n", &edit(&[]), i as i64)
                    .unwrap()
            })
            .collect();
        let mut batch = FolderDoc::new(DeviceId([2; 32]));
        batch
            .apply_changes(changes.iter().map(|c| (a, c.as_slice())))
            .unwrap();
        assert_eq!(batch.items(), src.items());
        assert_eq!(batch.history(ItemId([3; 16])).len(), 1);
        let mut wrong = FolderDoc::new(DeviceId([2; 32]));
        assert_eq!(
            wrong.apply_changes([(DeviceId([3; 32]), changes[0].as_slice())]),
            Err(FolderError::ActorMismatch)
        );
    }

    #[test]
    fn change_under_someone_elses_actor_is_refused() {
        let a = DeviceId([1; 32]);
        let mut doc_a = FolderDoc::new(a);
        let change = doc_a.set_name("n", 1).unwrap();
        let mut doc_b = FolderDoc::new(DeviceId([2; 32]));
        assert_eq!(
            doc_b.apply_change(&DeviceId([3; 32]), &change),
            Err(FolderError::ActorMismatch)
        );
        assert_eq!(
            doc_b.apply_change(&a, b"garbage"),
            Err(FolderError::MalformedChange)
        );
    }
}
