//! Reorganising a vault: rename and delete (or leave) folders, move an item
//! to another folder, empty the trash. Each command checks the roles here,
//! so every client of the replica (the CLI through `cofferd`, the
//! simulator) gets the same rules:
//!
//! - a folder is renamed or deleted by its Folder Manager (or a team
//!   admin); the new name is a content change every member receives; the
//!   deletion is a [`MembershipOp::Delete`], judged by the acceptance rule
//!   like any membership op, after which no member's device shows it;
//! - anyone else "removes" a folder by leaving it: a removal of their own
//!   user (or device) grant, which is always allowed; their other devices
//!   stop showing it too, the others keep it;
//! - a move needs write rights (Item or Folder Manager) in both folders:
//!   the item is added to the target with its current content, then
//!   purged from the source ([`crate::folder::FolderDoc::purge_items`]).
//!   Its history stays in the source folder; an edit made there
//!   concurrently brings it back in the source (nothing is lost).
//!
//! Not here: the document edits themselves (`folder.rs`), membership
//! changes (`team.rs`).

use std::collections::BTreeMap;

use rand_core::CryptoRngCore;

use super::items::{chunks, FolderSummary};
use super::{check_name, Event, ItemChange, Replica, ReplicaError};
use crate::folder::{ItemEdit, NewItem};
use crate::ids::{ItemId, SpaceId};
use crate::ops::{ControlOp, MembershipOp, Principal, Role};
use crate::replica::error::Needs;
use crate::replica::ItemQuery;

/// What `coffer folder rm` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FolderRemoval {
    /// Deleted for every member (a Folder Manager's or team admin's `rm`).
    Deleted,
    /// This user (or device) left it; the other members keep it.
    Left,
}

/// What `coffer trash empty` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrashEmptied {
    /// Items deleted for good, per folder.
    pub purged: BTreeMap<SpaceId, usize>,
    /// Folders with trashed items that this device may not change.
    pub skipped: Vec<SpaceId>,
}

impl Replica {
    fn require_role(&self, folder: &SpaceId, needs: Needs) -> Result<(), ReplicaError> {
        let me = self.identity.device;
        let space = self
            .folders
            .get(folder)
            .ok_or_else(|| ReplicaError::NoSuchFolder {
                query: folder.short(),
            })?;
        let ok = match needs {
            Needs::Writer => space.role_of(&me).is_some_and(Role::can_write_items),
            Needs::Manager | Needs::FolderManager => space.can_manage(&me),
            Needs::Admin => false,
        };
        if ok {
            Ok(())
        } else {
            Err(ReplicaError::NotAllowed {
                role: space.role_of(&me),
                needs,
            })
        }
    }

    /// `coffer folder rename OLD NEW`: a Folder Manager's (or team
    /// admin's) change of the folder's name, replicated to every member.
    pub fn rename_folder(
        &mut self,
        folder: &str,
        new_name: &str,
        now_ms: i64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<FolderSummary, ReplicaError> {
        self.check_standing()?;
        let id = self.resolve_folder(Some(folder))?;
        let name = check_name(new_name, crate::folder::MAX_NAME_LEN)?;
        if name.contains('/') {
            return Err(ReplicaError::BadName {
                name,
                why: "a folder name cannot contain '/'",
            });
        }
        if self.folder_name(&id) == name {
            return Err(ReplicaError::NothingToChange);
        }
        let taken = self
            .folders()?
            .iter()
            .any(|f| f.id != id && f.name.eq_ignore_ascii_case(&name));
        if taken {
            return Err(ReplicaError::FolderExists { name });
        }
        self.require_role(&id, Needs::FolderManager)?;
        self.write(id, rng, |doc| doc.set_name(&name, now_ms))?;
        self.emit(Event::FolderChanged { folder: id });
        self.folders()?
            .into_iter()
            .find(|f| f.id == id)
            .ok_or_else(|| ReplicaError::Internal("a renamed folder is not open".into()))
    }

    /// `coffer folder rm NAME`: a Folder Manager (or team admin) deletes
    /// the folder for every member — refused while it holds items unless
    /// `force` — unless `leave`; anyone else, or a manager with `leave`,
    /// leaves it (the other members keep it). The Personal folder stays.
    pub fn remove_folder(
        &mut self,
        folder: &str,
        force: bool,
        leave: bool,
    ) -> Result<(SpaceId, String, FolderRemoval), ReplicaError> {
        self.check_standing()?;
        let id = self.resolve_folder(Some(folder))?;
        if id == self.identity.personal || id == self.personal() {
            return Err(ReplicaError::PersonalFolder);
        }
        let keys = self.keys()?.clone();
        let me = keys.device_id();
        let name = self.folder_name(&id);
        let space = self
            .folders
            .get(&id)
            .ok_or_else(|| ReplicaError::NoSuchFolder {
                query: folder.to_string(),
            })?;
        if space.can_manage(&me) && !leave {
            if !space.may_delete(&me) {
                // A personal folder shared with this manager: the
                // acceptance rule refuses its Delete.
                return Err(ReplicaError::PersonalFolder);
            }
            let held = self
                .unlocked()?
                .open
                .get(&id)
                .map_or(0, |f| f.items().len());
            if held > 0 && !force {
                return Err(ReplicaError::FolderNotEmpty { name, items: held });
            }
            let space = self.folders.get_mut(&id).expect("resolved above");
            let env = space.propose(&keys, &ControlOp::Membership(MembershipOp::Delete))?;
            // Persisting a membership op refreshes the folder: it closes.
            self.persist(id, vec![env]);
            return Ok((id, name, FolderRemoval::Deleted));
        }
        // Leave: take out the grants that name this device or its user.
        let state = space.state();
        let user = state.user_of(&me).cloned();
        let mut own: Vec<Principal> = vec![Principal::Device(me)];
        own.extend(user.clone().map(Principal::User));
        own.retain(|p| state.folder.grants.contains_key(p));
        let via_group = user.as_ref().and_then(|u| {
            state.folder.grants.keys().find_map(|p| match p {
                Principal::Group(g) if state.team.groups.get(g).is_some_and(|m| m.contains(u)) => {
                    Some(g.clone())
                }
                _ => None,
            })
        });
        if let Some(group) = via_group {
            return Err(ReplicaError::LeaveThroughGroup { group });
        }
        if own.is_empty() {
            return Err(ReplicaError::NotAMember {
                principal: user.map_or_else(|| me.short(), |u| u.0),
            });
        }
        let space = self.folders.get_mut(&id).expect("resolved above");
        let mut envs = Vec::new();
        for principal in own {
            envs.push(space.remove(&keys, principal, None)?);
        }
        self.persist(id, envs);
        self.update_allowed();
        Ok((id, name, FolderRemoval::Left))
    }

    /// `coffer mv ITEM FOLDER`: adds the item, as it is now, to `to` (same
    /// id, name, fields, URLs and creation time), then deletes it from its
    /// folder (purged: a concurrent edit there shows it again, in the
    /// source). Needs write rights in both, checked before anything is
    /// written. Values that lost a concurrent edit (conflicts) and the
    /// item's history stay in the source folder's history.
    pub fn move_item(
        &mut self,
        query: &str,
        to: &str,
        now_ms: i64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(SpaceId, SpaceId, ItemId), ReplicaError> {
        self.check_standing()?;
        let (from, id) = self.resolve_item(&ItemQuery::live(query))?;
        let target = self.resolve_folder(Some(to))?;
        if from == target {
            return Err(ReplicaError::SameFolder {
                folder: self.folder_name(&from),
            });
        }
        self.require_role(&from, Needs::Writer)?;
        self.require_role(&target, Needs::Writer)?;
        let item = self.item(&from, &id)?;
        // The same id, unless the target shows one already (a concurrent move).
        let taken = self
            .unlocked()?
            .open
            .get(&target)
            .is_some_and(|f| f.items().contains_key(&id));
        let new_id = if taken {
            let mut raw = [0u8; 16];
            rng.fill_bytes(&mut raw);
            ItemId(raw)
        } else {
            id
        };
        let edit = ItemEdit {
            name: None,
            fields: item.fields.clone().into(),
            urls: Some(item.urls.clone()),
        };
        let new = NewItem {
            id: new_id,
            item_type: item.item_type,
            name: &item.name,
            edit: &edit,
            created_ms: item.created_ms,
            updated_ms: now_ms,
            trashed_ms: None,
        };
        self.write(target, rng, |doc| doc.add_items(&[new], now_ms))?;
        self.item_events(target, [new_id], ItemChange::Added);
        self.write(from, rng, |doc| doc.purge_items(&[id], now_ms))?;
        self.item_events(from, [id], ItemChange::Deleted);
        Ok((from, target, new_id))
    }

    /// `coffer trash empty [--folder F]`: deletes the trashed items for
    /// good, for every member, in each folder this device may change
    /// (only `folder`, when given; then a missing right is an error).
    pub fn empty_trash(
        &mut self,
        folder: Option<&str>,
        now_ms: i64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<TrashEmptied, ReplicaError> {
        self.check_standing()?;
        let only = folder.map(|f| self.resolve_folder(Some(f))).transpose()?;
        if let Some(only) = only {
            self.require_role(&only, Needs::Writer)?;
        }
        let mut by_folder: BTreeMap<SpaceId, Vec<ItemId>> = BTreeMap::new();
        for (space, item) in self.items(folder, true)? {
            by_folder.entry(space).or_default().push(item.id);
        }
        let mut done = TrashEmptied::default();
        for (space, ids) in by_folder {
            if self.require_role(&space, Needs::Writer).is_err() {
                done.skipped.push(space);
                continue;
            }
            for chunk in chunks(&ids, |_| 64) {
                self.write(space, rng, |doc| doc.purge_items(chunk, now_ms))?;
                self.item_events(space, chunk.iter().copied(), ItemChange::Deleted);
                *done.purged.entry(space).or_default() += chunk.len();
            }
        }
        Ok(done)
    }
}
