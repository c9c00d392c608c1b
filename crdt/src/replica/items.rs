//! Folders and items: what the user reads and writes. Every write checks
//! the role, the schema, rotates first when a member left, and seals the
//! Automerge change as this device's next envelope.

use std::collections::{BTreeMap, BTreeSet};

use rand_core::CryptoRngCore;

use super::{check_name, Event, ItemChange, OpenFolder, Replica, ReplicaError, MAX_ITEM_EVENTS};
use crate::accept::ChangeMeta;
use crate::crypto::FolderKey;
use crate::folder::{
    check_new_item, FolderDoc, FolderError, Item, ItemEdit, ItemHead, ItemType, NewItem,
};
use crate::ids::{DeviceId, ItemId, SpaceId};
use crate::ops::{Role, UserId};
use crate::replica::error::Needs;
use crate::schema;
use crate::space::Space;

/// A folder as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderSummary {
    pub id: SpaceId,
    pub name: String,
    pub role: Option<Role>,
    pub items: usize,
    pub trashed: usize,
    pub team: Option<SpaceId>,
}

/// A new item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewItemSpec {
    /// Folder name or id prefix; `None`: the Personal folder.
    pub folder: Option<String>,
    pub item_type: ItemType,
    pub name: String,
    pub fields: BTreeMap<String, String>,
    pub urls: Vec<String>,
}

/// An item reference: `FOLDER/NAME`, a name, or an id prefix (≥ 4 hex).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemQuery {
    pub item: String,
    /// Look in the trash instead of the live items.
    pub trash: bool,
}

impl ItemQuery {
    pub fn live(item: &str) -> ItemQuery {
        ItemQuery {
            item: item.to_string(),
            trash: false,
        }
    }
}

/// The `field` of [`Replica::pick_conflict`] that settles an edit kept
/// out of the trash ([`Item::kept_from_trash`]).
pub const TRASH_CHOICE: &str = "trash";

/// One earlier state of an item, and who made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryItem {
    pub time_ms: i64,
    pub device: Option<DeviceId>,
    /// The device's user, where the roster names one.
    pub user: Option<UserId>,
    /// That user's display name, where the roster has one.
    pub user_name: Option<String>,
    /// The device's name, where the roster has one.
    pub device_name: Option<String>,
    pub item: Item,
    /// What the change altered (names only; see [`crate::HistoryEntry::changed`]).
    pub changed: Vec<String>,
}

/// An item to import, already parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportItem {
    pub item_type: ItemType,
    pub name: String,
    /// The export's folder, or `None`.
    pub folder: Option<String>,
    pub fields: BTreeMap<String, String>,
    pub urls: Vec<String>,
    pub created_ms: Option<i64>,
    pub updated_ms: Option<i64>,
    pub trashed_ms: Option<i64>,
}

/// What an import did (or would do, dry).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportPlan {
    pub added: BTreeMap<ItemType, usize>,
    pub duplicates: usize,
    pub folders_created: Vec<String>,
}

/// Where an item falls in a listing ([`Replica::items`]' order): its
/// folder's lowered name, its own lowered name, its id, and last the place
/// it was found at (ties only between folders of one lowered name that
/// hold the same id). Opaque; compare only.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ListKey {
    /// The rank of the folder's lowered name among the listed folders'.
    folder: u32,
    name: String,
    id: ItemId,
    at: u32,
}

/// One item of a [`Listing`].
#[derive(Clone, Debug)]
pub struct ListRow<'a> {
    /// The rank of the folder's lowered name among the listed folders'.
    rank: u32,
    at: u32,
    pub folder: SpaceId,
    pub item: &'a ItemHead,
}

impl ListRow<'_> {
    /// Where the row falls in the listing (its name lowered here: an
    /// allocation, so sorts cache it).
    pub fn key(&self) -> ListKey {
        ListKey {
            folder: self.rank,
            name: self.item.name.to_lowercase(),
            id: self.item.id,
            at: self.at,
        }
    }
}

/// A listing not sorted yet ([`Replica::listing`]): its rows come folder
/// by folder in the order of the folders' lowered names, in no order
/// within a folder.
#[derive(Clone, Debug)]
pub struct Listing<'a> {
    pub rows: Vec<ListRow<'a>>,
    /// The display name of each listed folder.
    pub folder_names: BTreeMap<SpaceId, String>,
}

/// Puts the `n` first rows of a listing (as [`Replica::listing`] gave
/// them) in place, sorted, and leaves the others after them in no order.
/// Only the folders the first `n` rows come from are looked at, and in
/// them a name is lowered whole only where its first bytes
/// ([`name_prefix`]) could place it among the first `n`.
pub fn sort_first(rows: &mut [ListRow<'_>], n: usize) {
    let n = n.min(rows.len());
    if n == 0 {
        return;
    }
    let last = rows[n - 1].rank;
    let end = rows.partition_point(|r| r.rank <= last);
    let head = &mut rows[..end];
    let mut candidates: Vec<usize> = (0..end).collect();
    if n < end {
        // A name's prefix orders like the name: the first n rows are
        // among those whose prefix is at most the n-th smallest.
        let pre: Vec<(u32, u128)> = head
            .iter()
            .map(|r| (r.rank, name_prefix(&r.item.name)))
            .collect();
        let bound = *pre.clone().select_nth_unstable(n - 1).1;
        candidates.retain(|i| pre[*i] <= bound);
    }
    let mut keyed: Vec<(ListKey, usize)> =
        candidates.iter().map(|i| (head[*i].key(), *i)).collect();
    if n < keyed.len() {
        keyed.select_nth_unstable(n - 1);
    }
    keyed.truncate(n);
    keyed.sort_unstable();
    let mut first = vec![false; end];
    let mut placed: Vec<ListRow<'_>> = Vec::with_capacity(end);
    for (_, i) in &keyed {
        first[*i] = true;
        placed.push(head[*i].clone());
    }
    placed.extend((0..end).filter(|i| !first[*i]).map(|i| head[i].clone()));
    head.clone_from_slice(&placed);
}

/// The first 16 bytes of `name` lowered (as `str::to_lowercase`), zero
/// padded: names in order have prefixes in order (never the other way
/// round). Without an allocation when those bytes are ASCII.
fn name_prefix(name: &str) -> u128 {
    let bytes = name.as_bytes();
    let take = bytes.len().min(16);
    let mut out = [0u8; 16];
    if bytes[..take].is_ascii() {
        for (o, b) in out.iter_mut().zip(&bytes[..take]) {
            *o = b.to_ascii_lowercase();
        }
    } else {
        let lowered = name.to_lowercase();
        let l = lowered.as_bytes();
        let take = l.len().min(16);
        out[..take].copy_from_slice(&l[..take]);
    }
    u128::from_be_bytes(out)
}

/// Splits items into batches of at most 500 items and about 256 KiB of
/// text, so each batch is one change whose envelope stays far below the
/// envelope limit (a single item is bounded by `MAX_EDIT_BYTES`).
pub(super) fn chunks<T>(items: &[T], size: impl Fn(&T) -> usize) -> Vec<&[T]> {
    const MAX_ITEMS: usize = 500;
    const MAX_TEXT: usize = 256 * 1024;
    let mut out = Vec::new();
    let mut rest = items;
    while !rest.is_empty() {
        let mut text = 0;
        let mut n = 0;
        while n < rest.len() && n < MAX_ITEMS {
            let s = 128 + size(&rest[n]);
            if n > 0 && text + s > MAX_TEXT {
                break;
            }
            text += s;
            n += 1;
        }
        let (chunk, tail) = rest.split_at(n);
        out.push(chunk);
        rest = tail;
    }
    out
}

impl Replica {
    fn open_folder(&self, id: &SpaceId) -> Option<&OpenFolder> {
        self.unlocked.as_ref()?.open.get(id)
    }

    /// A folder's display name (its id prefix while it cannot be read).
    pub fn folder_name(&self, id: &SpaceId) -> String {
        self.open_folder(id)
            .and_then(|f| f.doc.name())
            .unwrap_or_else(|| id.short())
    }

    fn summary(&self, id: &SpaceId, f: &OpenFolder) -> FolderSummary {
        FolderSummary {
            id: *id,
            name: f.doc.name().unwrap_or_else(|| id.short()),
            role: self.role_in(id),
            items: f
                .items()
                .values()
                .filter(|i| i.trashed_ms.is_none())
                .count(),
            trashed: f
                .items()
                .values()
                .filter(|i| i.trashed_ms.is_some())
                .count(),
            team: self.folders.get(id).and_then(Space::team),
        }
    }

    /// Every folder this device can read, by name.
    pub fn folders(&self) -> Result<Vec<FolderSummary>, ReplicaError> {
        let u = self.unlocked()?;
        let hidden = self.hidden_personal();
        let mut out: Vec<FolderSummary> = u
            .open
            .iter()
            .filter(|(id, _)| Some(**id) != hidden)
            .map(|(id, f)| self.summary(id, f))
            .collect();
        out.sort_by(|a, b| {
            a.name
                .to_lowercase()
                .cmp(&b.name.to_lowercase())
                .then(a.id.cmp(&b.id))
        });
        Ok(out)
    }

    /// Accepted changes of an open folder that are not in its document,
    /// and why (`None`: the folder is not open).
    pub fn unreadable(
        &self,
        folder: &SpaceId,
    ) -> Option<&BTreeMap<crate::ids::EnvelopeId, super::Skip>> {
        self.open_folder(folder).map(|f| &f.skipped)
    }

    /// (folders, items) while unlocked.
    pub fn counts(&self) -> Option<(usize, usize)> {
        let u = self.unlocked.as_ref()?;
        let hidden = usize::from(self.hidden_personal().is_some());
        Some((
            u.open.len() - hidden,
            u.open.values().map(|f| f.items().len()).sum(),
        ))
    }

    /// `coffer folder create NAME`: inside a team, the folder belongs to it.
    pub fn create_folder(
        &mut self,
        name: &str,
        now_ms: i64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<FolderSummary, ReplicaError> {
        let name = check_name(name, crate::folder::MAX_NAME_LEN)?;
        self.check_standing()?;
        if name.contains('/') {
            return Err(ReplicaError::BadName {
                name,
                why: "a folder name cannot contain '/'",
            });
        }
        let u = self.unlocked()?;
        if u.open
            .values()
            .any(|f| f.doc.name().is_some_and(|n| n.eq_ignore_ascii_case(&name)))
        {
            return Err(ReplicaError::FolderExists { name });
        }
        let keys = u.keys.clone();
        let folder_key = FolderKey::generate(rng);
        let (mut space, genesis) =
            Space::create_in_team(&keys, &folder_key, self.roster.as_ref(), rng)?;
        let mut doc = FolderDoc::new(keys.device_id());
        let change = doc.set_name(&name, now_ms)?;
        let named = space.seal_content(&keys, &folder_key, &change, rng)?;
        let id = space.id();
        let open = OpenFolder::open(&space, &keys)
            .ok_or_else(|| ReplicaError::Internal("a new folder does not open".into()))?;
        self.folders.insert(id, space);
        if let Some(u) = self.unlocked.as_mut() {
            u.open.insert(id, open);
        }
        self.persist(id, vec![genesis, named]);
        self.update_allowed();
        self.emit(Event::FolderChanged { folder: id });
        let f = self.open_folder(&id).expect("just opened");
        Ok(self.summary(&id, f))
    }

    /// FOLDER: a name (case-insensitive) or an id prefix of ≥ 4 hex digits;
    /// `None`: the Personal folder.
    pub fn resolve_folder(&self, query: Option<&str>) -> Result<SpaceId, ReplicaError> {
        let u = self.unlocked()?;
        let Some(query) = query else {
            return Ok(self.personal());
        };
        let query = query.trim();
        let hidden = self.hidden_personal();
        let by_name: Vec<SpaceId> = u
            .open
            .iter()
            .filter(|(id, _)| Some(**id) != hidden)
            .filter(|(_, f)| f.doc.name().is_some_and(|n| n.eq_ignore_ascii_case(query)))
            .map(|(id, _)| *id)
            .collect();
        let found = if by_name.is_empty() && query.len() >= 4 {
            let q = query.to_lowercase();
            u.open
                .keys()
                .filter(|id| Some(**id) != hidden && id.to_hex().starts_with(&q))
                .copied()
                .collect()
        } else {
            by_name
        };
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(ReplicaError::NoSuchFolder {
                query: query.to_string(),
            }),
            many => Err(ReplicaError::Ambiguous {
                what: format!("folder {query:?}"),
                candidates: many.iter().map(|id| id.short()).collect(),
            }),
        }
    }

    /// Resolves ITEM: `FOLDER/NAME`, a name, or an id prefix (≥ 4 hex digits).
    pub fn resolve_item(&self, q: &ItemQuery) -> Result<(SpaceId, ItemId), ReplicaError> {
        let u = self.unlocked()?;
        let query = q.item.trim();
        if query.is_empty() {
            return Err(ReplicaError::BadName {
                name: q.item.clone(),
                why: "it is empty",
            });
        }
        let live = |i: &ItemHead| i.trashed_ms.is_some() == q.trash;
        let mut found: Vec<(SpaceId, ItemId)> = Vec::new();
        if let Some((folder, name)) = query.split_once('/') {
            if let Ok(space) = self.resolve_folder(Some(folder)) {
                if let Some(f) = u.open.get(&space) {
                    found.extend(f.named(name).filter(|i| live(i)).map(|i| (space, i.id)));
                }
            }
        }
        if found.is_empty() {
            for (space, f) in &u.open {
                found.extend(f.named(query).filter(|i| live(i)).map(|i| (*space, i.id)));
            }
        }
        if found.is_empty() && query.len() >= 4 && query.chars().all(|c| c.is_ascii_hexdigit()) {
            let q = query.to_lowercase();
            for (space, f) in &u.open {
                found.extend(
                    f.items()
                        .values()
                        .filter(|i| live(i) && i.id.to_hex().starts_with(&q))
                        .map(|i| (*space, i.id)),
                );
            }
        }
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(ReplicaError::NoSuchItem {
                query: query.to_string(),
                trash: q.trash,
            }),
            many => Err(ReplicaError::Ambiguous {
                what: format!("item {query:?}"),
                candidates: many
                    .iter()
                    .map(|(s, i)| {
                        let name = u.open[s]
                            .items()
                            .get(i)
                            .map(|x| x.name.as_str())
                            .unwrap_or("");
                        format!("{}/{} ({})", self.folder_name(s), name, &i.to_hex()[..8])
                    })
                    .collect(),
            }),
        }
    }

    /// An item as its folder's document shows it, read whole.
    pub fn item(&self, folder: &SpaceId, id: &ItemId) -> Result<Item, ReplicaError> {
        self.open_folder(folder)
            .and_then(|f| f.item(id))
            .ok_or_else(|| ReplicaError::NoSuchItem {
                query: id.to_hex(),
                trash: false,
            })
    }

    /// An item's head (what a listing shows of it).
    pub fn item_head(&self, folder: &SpaceId, id: &ItemId) -> Result<&ItemHead, ReplicaError> {
        self.open_folder(folder)
            .and_then(|f| f.items().get(id))
            .ok_or_else(|| ReplicaError::NoSuchItem {
                query: id.to_hex(),
                trash: false,
            })
    }

    /// Items of one folder or all, live or trashed, sorted by folder and name.
    pub fn items(
        &self,
        folder: Option<&str>,
        trash: bool,
    ) -> Result<Vec<(SpaceId, &ItemHead)>, ReplicaError> {
        let mut rows = self.listing(folder, trash)?.rows;
        rows.sort_by_cached_key(ListRow::key);
        Ok(rows.into_iter().map(|r| (r.folder, r.item)).collect())
    }

    /// What [`Replica::items`] lists, not yet sorted (folder by folder, in
    /// the order of their lowered names), so a caller can put the first
    /// rows in place without sorting the rest ([`sort_first`]), as a
    /// streamed listing does. Each row gives its [`ListKey`].
    pub fn listing(&self, folder: Option<&str>, trash: bool) -> Result<Listing<'_>, ReplicaError> {
        let u = self.unlocked()?;
        let only = folder.map(|f| self.resolve_folder(Some(f))).transpose()?;
        let folders: Vec<(&SpaceId, &OpenFolder, String)> = u
            .open
            .iter()
            .filter(|(id, _)| only.is_none_or(|o| o == **id))
            .map(|(id, f)| (id, f, f.doc.name().unwrap_or_else(|| id.short())))
            .collect();
        // A folder's place is its lowered name's: folders whose names
        // differ only in case share one, and their items mix by name.
        let mut lowered: Vec<String> = folders.iter().map(|(_, _, n)| n.to_lowercase()).collect();
        let ranks: Vec<u32> = {
            let mut sorted = lowered.clone();
            sorted.sort_unstable();
            sorted.dedup();
            lowered
                .drain(..)
                .map(|l| sorted.binary_search(&l).unwrap_or(0) as u32)
                .collect()
        };
        // Folders by rank; those of one rank in their first order, so a
        // row's `at` keeps the order of ties.
        let mut order: Vec<usize> = (0..folders.len()).collect();
        order.sort_by_key(|i| ranks[*i]);
        let mut rows = Vec::with_capacity(folders.iter().map(|(_, f, _)| f.items().len()).sum());
        for i in order {
            let (space, f, _) = &folders[i];
            for item in f.items().values() {
                if item.trashed_ms.is_some() != trash {
                    continue;
                }
                rows.push(ListRow {
                    rank: ranks[i],
                    at: rows.len() as u32,
                    folder: **space,
                    item,
                });
            }
        }
        let folder_names = folders.into_iter().map(|(id, _, n)| (*id, n)).collect();
        Ok(Listing { rows, folder_names })
    }

    /// `coffer conflicts`: every live item where concurrent edits of a
    /// field were kept side by side (the value shown won last-writer-wins,
    /// the others are kept), sorted like [`Replica::items`].
    pub fn conflicted(&self) -> Result<Vec<(SpaceId, Item)>, ReplicaError> {
        self.items(None, false)?
            .into_iter()
            .filter(|(_, i)| i.conflict)
            .map(|(s, i)| Ok((s, self.item(&s, &i.id)?)))
            .collect()
    }

    /// `coffer conflicts pick`: settles a conflict by writing one of the
    /// values kept side by side. For a field, `choice` 1 is the value shown
    /// and 2.. the kept ones in [`Item::conflicts`]' order; for
    /// [`TRASH_CHOICE`] (an item an edit kept out of the trash), 1 keeps it
    /// out and 2 moves it to the trash. The write sees every value, so the
    /// conflict is gone on every member once it syncs.
    pub fn pick_conflict(
        &mut self,
        query: &str,
        field: &str,
        choice: usize,
        now_ms: i64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(SpaceId, ItemId), ReplicaError> {
        let (folder, id) = self.resolve_item(&ItemQuery::live(query))?;
        let item = self.item(&folder, &id)?;
        let no_choice = |count| ReplicaError::NoSuchChoice {
            field: field.to_string(),
            choice,
            count,
        };
        if field == TRASH_CHOICE {
            if !item.kept_from_trash {
                return Err(ReplicaError::NoConflict {
                    field: field.to_string(),
                });
            }
            let trash = match choice {
                1 => false,
                2 => true,
                _ => return Err(no_choice(2)),
            };
            self.check_standing()?;
            self.write(folder, rng, |doc| doc.set_trashed(id, trash, now_ms))?;
            let change = if trash {
                ItemChange::Trashed
            } else {
                ItemChange::Edited
            };
            self.item_events(folder, [id], change);
            return Ok((folder, id));
        }
        let kept = item
            .conflicts
            .get(field)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| ReplicaError::NoConflict {
                field: field.to_string(),
            })?;
        // The shown value first; a field removed concurrently shows none,
        // and picking that removes the field (an empty value).
        let mut values = vec![item.fields.get(field).cloned().unwrap_or_default()];
        values.extend(kept.iter().cloned());
        let count = values.len();
        let value = choice
            .checked_sub(1)
            .and_then(|i| values.into_iter().nth(i))
            .ok_or_else(|| no_choice(count))?;
        let edit = ItemEdit {
            fields: BTreeMap::from([(field.to_string(), value)]),
            ..Default::default()
        };
        self.edit_item(&ItemQuery::live(&id.to_hex()), edit, now_ms, rng)
    }

    /// Case-insensitive match on name, username, URLs and folder (never on secrets).
    pub fn search(&self, query: &str) -> Result<Vec<(SpaceId, &ItemHead)>, ReplicaError> {
        let q = query.trim().to_lowercase();
        if q.is_empty() {
            return Err(ReplicaError::BadName {
                name: query.to_string(),
                why: "an empty search",
            });
        }
        Ok(self
            .items(None, false)?
            .into_iter()
            .filter(|(s, i)| {
                i.name.to_lowercase().contains(&q)
                    || self.folder_name(s).to_lowercase().contains(&q)
                    || i.username
                        .as_ref()
                        .is_some_and(|u| u.to_lowercase().contains(&q))
                    || i.urls.iter().any(|u| u.to_lowercase().contains(&q))
            })
            .collect())
    }

    /// Checks the role, rotates the key first if a member left, lets `edit`
    /// change the folder's document, and seals the change as this device's
    /// next envelope. On a refusal after the document changed, the folder
    /// is reopened from its space, so memory never runs ahead of what is
    /// sealed.
    pub(super) fn write<F>(
        &mut self,
        folder: SpaceId,
        rng: &mut impl CryptoRngCore,
        edit: F,
    ) -> Result<std::collections::HashSet<ItemId>, ReplicaError>
    where
        F: FnOnce(&mut FolderDoc) -> Result<Vec<u8>, FolderError>,
    {
        self.check_standing()?;
        let u = self.unlocked.as_mut().ok_or(ReplicaError::Locked)?;
        let space = self
            .folders
            .get_mut(&folder)
            .ok_or_else(|| ReplicaError::NoSuchFolder {
                query: folder.short(),
            })?;
        let me = u.keys.device_id();
        let role = space.role_of(&me);
        if !role.is_some_and(Role::can_write_items) {
            return Err(ReplicaError::NotAllowed {
                role,
                needs: Needs::Writer,
            });
        }
        let open = u.open.get_mut(&folder).ok_or(ReplicaError::Locked)?;
        let mut sealed = Vec::new();
        if space.rotation_due() {
            // Someone with the current key lost access: new content needs a new key.
            let (env, key) = space.rotate(&u.keys, rng)?;
            open.keys.insert(env.id(), key);
            sealed.push(env);
        }
        if space
            .current_epoch()
            .is_some_and(|epoch| !open.keys.contains_key(&epoch))
        {
            // Added while another device rotated the key: a manager's device
            // re-wraps it for us; until then new content could not be sealed.
            self.persist(folder, sealed);
            return Err(ReplicaError::KeyNotYetReceived {
                folder: folder.short(),
            });
        }
        let result = edit(&mut open.doc)
            .map_err(ReplicaError::from)
            .and_then(|change| {
                let epoch = space
                    .current_epoch()
                    .ok_or_else(|| ReplicaError::Internal("the folder has no key epoch".into()))?;
                let key = open
                    .keys
                    .get(&epoch)
                    .ok_or_else(|| ReplicaError::Internal("no key for the current epoch".into()))?
                    .clone();
                // Parsed once: its header, the items it touched.
                let parsed = crate::accept::parse_change(&change).ok_or_else(|| {
                    ReplicaError::Internal("a change of ours does not parse".into())
                })?;
                let meta = ChangeMeta::of(&parsed);
                let touched = crate::folder::touched_by(&parsed);
                // The space names deps by envelope: hand it the few this
                // change has (the folder keeps the hashes of every change).
                space.supply_hashes(open.applied_of_hashes(&meta.deps));
                let env =
                    space.seal_content_with_meta(&u.keys, &key, &change, meta.clone(), rng)?;
                Ok((env, meta, touched))
            });
        match result {
            Ok((env, meta, touched)) => {
                let touched: std::collections::HashSet<ItemId> = touched.into_iter().collect();
                open.record_own(&env, &meta, touched.len());
                open.refresh(&touched);
                sealed.push(env);
                self.persist(folder, sealed);
                Ok(touched)
            }
            Err(e) => {
                // The document may hold the change that was not sealed; a
                // rotation already made stays (it is valid on its own).
                if let Some(space) = self.folders.get(&folder) {
                    if let Some(reopened) = OpenFolder::open(space, &u.keys) {
                        u.open.insert(folder, reopened);
                    }
                }
                self.persist(folder, sealed);
                Err(e)
            }
        }
    }

    pub(super) fn item_events(
        &mut self,
        folder: SpaceId,
        touched: impl IntoIterator<Item = ItemId>,
        change: ItemChange,
    ) {
        let mut touched: Vec<ItemId> = touched.into_iter().collect();
        touched.sort();
        if touched.len() > MAX_ITEM_EVENTS {
            self.emit(Event::FolderChanged { folder });
        } else {
            for item in touched {
                self.emit(Event::ItemChanged {
                    folder,
                    item,
                    change,
                });
            }
        }
    }

    /// `coffer add`: a new item, its fields checked against the schema.
    pub fn add_item(
        &mut self,
        spec: NewItemSpec,
        now_ms: i64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(SpaceId, ItemId), ReplicaError> {
        self.unlocked()?;
        let folder = self.resolve_folder(spec.folder.as_deref())?;
        self.check_standing()?;
        let mut fields = spec.fields;
        schema::normalize_new(spec.item_type, &mut fields)?;
        let name = check_name(&spec.name, crate::folder::MAX_NAME_LEN)?;
        check_urls(&spec.urls)?;
        let mut raw = [0u8; 16];
        rng.fill_bytes(&mut raw);
        let id = ItemId(raw);
        let edit = ItemEdit {
            name: None,
            fields,
            urls: Some(spec.urls),
        };
        let item_type = spec.item_type;
        self.write(folder, rng, |doc| {
            doc.add_item(id, item_type, &name, &edit, now_ms)
        })?;
        self.item_events(folder, [id], ItemChange::Added);
        Ok((folder, id))
    }

    /// `coffer edit`: name, fields (an empty value removes one), URLs.
    pub fn edit_item(
        &mut self,
        query: &ItemQuery,
        mut edit: ItemEdit,
        now_ms: i64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(SpaceId, ItemId), ReplicaError> {
        let (folder, id) = self.resolve_item(query)?;
        let item_type = self.item(&folder, &id)?.item_type;
        self.check_standing()?;
        schema::normalize(item_type, &mut edit.fields)?;
        if item_type == ItemType::Totp && edit.fields.get("totp").is_some_and(|t| t.is_empty()) {
            return Err(schema::SchemaError::TotpRequired.into());
        }
        if let Some(name) = &edit.name {
            edit.name = Some(check_name(name, crate::folder::MAX_NAME_LEN)?);
        }
        if let Some(urls) = &edit.urls {
            check_urls(urls)?;
        }
        if edit.name.is_none() && edit.fields.is_empty() && edit.urls.is_none() {
            return Err(ReplicaError::NothingToChange);
        }
        self.write(folder, rng, |doc| doc.edit_item(id, &edit, now_ms))?;
        self.item_events(folder, [id], ItemChange::Edited);
        Ok((folder, id))
    }

    /// `coffer totp set`: links a TOTP secret to a login or 2FA item.
    pub fn set_totp(
        &mut self,
        query: &ItemQuery,
        secret: &str,
        now_ms: i64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(SpaceId, ItemId), ReplicaError> {
        let (folder, id) = self.resolve_item(query)?;
        let item_type = self.item(&folder, &id)?.item_type;
        self.check_standing()?;
        if !matches!(item_type, ItemType::Login | ItemType::Totp) {
            return Err(schema::SchemaError::NoTotp(item_type).into());
        }
        let edit = ItemEdit {
            fields: BTreeMap::from([("totp".to_string(), secret.to_string())]),
            ..Default::default()
        };
        self.edit_item(&ItemQuery::live(&id.to_hex()), edit, now_ms, rng)
    }

    /// Moves an item to (`trash`) or out of the trash.
    pub fn set_trashed(
        &mut self,
        query: &str,
        trash: bool,
        now_ms: i64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(SpaceId, ItemId), ReplicaError> {
        let (folder, id) = self.resolve_item(&ItemQuery {
            item: query.to_string(),
            trash: !trash,
        })?;
        self.write(folder, rng, |doc| doc.set_trashed(id, trash, now_ms))?;
        let change = if trash {
            ItemChange::Trashed
        } else {
            ItemChange::Restored
        };
        self.item_events(folder, [id], change);
        Ok((folder, id))
    }

    /// An item's earlier states, oldest first, naming who made each.
    pub fn history(&self, query: &str) -> Result<Vec<HistoryItem>, ReplicaError> {
        let (folder, id) = match self.resolve_item(&ItemQuery::live(query)) {
            Err(ReplicaError::NoSuchItem { .. }) => self.resolve_item(&ItemQuery {
                item: query.to_string(),
                trash: true,
            })?,
            other => other?,
        };
        let open = self.open_folder(&folder).ok_or(ReplicaError::Locked)?;
        let state = self.folders.get(&folder).map(Space::state);
        Ok(open
            .doc
            .history(id)
            .into_iter()
            .map(|h| {
                let user = h
                    .author
                    .and_then(|d| state.and_then(|s| s.user_of(&d)).cloned());
                HistoryItem {
                    time_ms: h.time_ms,
                    user_name: user.as_ref().and_then(|u| self.user_name(u)),
                    device_name: h.author.and_then(|d| self.device_name(&d)),
                    user,
                    device: h.author,
                    item: h.item,
                    changed: h.changed,
                }
            })
            .collect())
    }

    /// Every readable item (or one folder's) with its folder's name, for an
    /// export or a backup, sorted by folder and name; trashed only if asked.
    pub fn export_items(
        &self,
        folder: Option<&str>,
        include_trash: bool,
    ) -> Result<Vec<(String, Item)>, ReplicaError> {
        let mut out: Vec<(String, Item)> = Vec::new();
        for trash in [false, true] {
            if trash && !include_trash {
                continue;
            }
            for (s, i) in self.items(folder, trash)? {
                out.push((self.folder_name(&s), self.item(&s, &i.id)?));
            }
        }
        Ok(out)
    }

    /// Adds parsed items: folders they name are created, items already
    /// present (same [`schema::fingerprint`]) are not added again, and the
    /// envelopes of the whole import are queued at once (the daemon stores
    /// them in one transaction). Every item is checked before any is
    /// written. `progress(done, total)` is called as batches are sealed.
    pub fn import(
        &mut self,
        items: Vec<ImportItem>,
        into: Option<&str>,
        dry_run: bool,
        now_ms: i64,
        rng: &mut impl CryptoRngCore,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<ImportPlan, ReplicaError> {
        self.check_standing()?;
        let u = self.unlocked()?;
        let into = into.map(|f| self.resolve_folder(Some(f))).transpose()?;
        let personal = self.personal();
        let mut seen: BTreeSet<[u8; 32]> = BTreeSet::new();
        for (space, folder) in &u.open {
            let name = self.folder_name(space);
            // Read whole from the document, one item at a time: the
            // fingerprint takes every field.
            seen.extend(folder.doc.map_items(|item| {
                schema::fingerprint(
                    item.item_type.as_str(),
                    &name,
                    &item.name,
                    &item.fields,
                    item.urls.first().map(String::as_str).unwrap_or(""),
                )
            }));
        }
        // Names read once, not per item (each is a document lookup).
        let into_name = into.map(|space| self.folder_name(&space));
        let personal_name = self.folder_name(&personal);
        let target = |item: &ImportItem| match (&into_name, &item.folder) {
            (Some(name), _) => name.clone(),
            (None, Some(name)) => name.replace('/', "-"),
            (None, None) => personal_name.clone(),
        };
        let mut plan = ImportPlan::default();
        let mut planned: Vec<(String, ImportItem)> = Vec::new();
        for mut item in items {
            let folder = target(&item);
            schema::normalize_new(item.item_type, &mut item.fields)?;
            item.name = check_name(&item.name, crate::folder::MAX_NAME_LEN)?;
            let edit = ItemEdit {
                name: None,
                fields: item.fields.clone(),
                urls: Some(item.urls.clone()),
            };
            check_new_item(&item.name, &edit)?;
            let fp = schema::fingerprint(
                item.item_type.as_str(),
                &folder,
                &item.name,
                &item.fields,
                item.urls.first().map(String::as_str).unwrap_or(""),
            );
            if !seen.insert(fp) {
                plan.duplicates += 1;
                continue;
            }
            *plan.added.entry(item.item_type).or_default() += 1;
            planned.push((folder, item));
        }
        let names: BTreeSet<&String> = planned.iter().map(|(folder, _)| folder).collect();
        for folder in names {
            if self.resolve_folder(Some(folder)).is_err() {
                plan.folders_created.push(folder.clone());
            }
        }
        if dry_run || planned.is_empty() {
            return Ok(plan);
        }
        for name in plan.folders_created.clone() {
            self.create_folder(&name, now_ms, rng)?;
        }
        let mut by_folder: BTreeMap<SpaceId, Vec<(ItemId, ImportItem)>> = BTreeMap::new();
        let mut resolved: BTreeMap<String, SpaceId> = BTreeMap::new();
        for (folder, item) in planned {
            let space = match resolved.get(&folder) {
                Some(space) => *space,
                None => {
                    let space = self.resolve_folder(Some(&folder))?;
                    resolved.insert(folder, space);
                    space
                }
            };
            let mut raw = [0u8; 16];
            rng.fill_bytes(&mut raw);
            by_folder
                .entry(space)
                .or_default()
                .push((ItemId(raw), item));
        }
        let total: usize = by_folder.values().map(Vec::len).sum();
        let mut done = 0;
        for (space, items) in by_folder {
            let edits: Vec<ItemEdit> = items
                .iter()
                .map(|(_, i)| ItemEdit {
                    name: None,
                    fields: i.fields.clone(),
                    urls: Some(i.urls.clone()),
                })
                .collect();
            let rows: Vec<(usize, &(ItemId, ImportItem))> = items.iter().enumerate().collect();
            let mut touched = Vec::new();
            for chunk in chunks(&rows, |(k, (_, i))| i.name.len() + edits[*k].text_bytes()) {
                let batch: Vec<NewItem<'_>> = chunk
                    .iter()
                    .map(|(k, (id, i))| {
                        let created_ms = i.created_ms.unwrap_or(now_ms);
                        NewItem {
                            id: *id,
                            item_type: i.item_type,
                            name: &i.name,
                            edit: &edits[*k],
                            created_ms,
                            updated_ms: i.updated_ms.unwrap_or(created_ms),
                            trashed_ms: i.trashed_ms,
                        }
                    })
                    .collect();
                self.write(space, rng, |doc| doc.add_items(&batch, now_ms))?;
                touched.extend(batch.iter().map(|b| b.id));
                done += chunk.len();
                progress(done, total);
            }
            self.item_events(space, touched, ItemChange::Added);
        }
        Ok(plan)
    }
}

/// URLs a user gives `add`/`edit`: none may be empty (blank), which would
/// otherwise vanish on the way in and, in an edit, drop every URL
/// silently (issue 21). An empty list removes them all on purpose.
fn check_urls(urls: &[String]) -> Result<(), ReplicaError> {
    if urls.iter().any(|u| u.trim().is_empty()) {
        return Err(ReplicaError::EmptyUrl);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::name_prefix;

    /// Names in order (lowered) have prefixes in order, over names that
    /// share long prefixes, differ in case, or lower to other lengths.
    #[test]
    fn name_prefixes_keep_the_order_of_lowered_names() {
        let names = [
            "",
            "a",
            "A",
            "a\0",
            "ab",
            "Abc",
            "service 00001",
            "Service 00002",
            "service 000010",
            "shared-prefix-name-1",
            "SHARED-PREFIX-NAME-2",
            "shared-prefix-nA",
            "İstanbul",
            "istanbul",
            "\u{212A}elvin",
            "kelvin",
            "ǅungla",
            "ǆungla",
            "ΣΑΣ",
            "σας",
            "Äpfel",
            "äpfel",
            "zzzzzzzzzzzzzzzzz",
            "0123456789abcdef",
            "0123456789abcdeF0",
            "é",
            "e\u{301}",
        ];
        for a in names {
            for b in names {
                if a.to_lowercase() <= b.to_lowercase() {
                    assert!(name_prefix(a) <= name_prefix(b), "{a:?} {b:?}");
                }
            }
        }
    }
}
