//! What the browser extension may have, decided here: which logins a page
//! sees, and whether one item may be filled into it. Origin binding is
//! [`PageOrigin`]; the daemon and the extension only carry the answer.

use std::collections::BTreeMap;

use rand_core::CryptoRngCore;

use super::{NewItemSpec, Replica, ReplicaError};
use crate::folder::{Item, ItemHead, ItemType};
use crate::ids::{ItemId, SpaceId};
use crate::origin::PageOrigin;

/// A new login offered by the extension after a submit ("save this login?").
pub struct SavedLogin {
    /// The top-level page's origin: the item's one URL.
    pub origin: String,
    /// The item's name; the page's host when empty.
    pub name: String,
    pub username: String,
    pub password: String,
}

impl Replica {
    /// Live logins (in every readable folder) with a URL that may be
    /// filled into a page of `origin`, sorted by folder and name.
    pub fn logins_for_origin(
        &self,
        origin: &str,
    ) -> Result<Vec<(SpaceId, &ItemHead)>, ReplicaError> {
        let page = PageOrigin::parse(origin)?;
        let u = self.unlocked()?;
        // Filtered before sorting: a page matches a few of 10,000 items.
        let mut found: Vec<(String, SpaceId, &ItemHead)> = u
            .open
            .iter()
            .flat_map(|(space, f)| f.items().values().map(move |i| (*space, i)))
            .filter(|(_, i)| {
                i.trashed_ms.is_none()
                    && i.item_type == ItemType::Login
                    && page.matches_any(&i.urls)
            })
            .map(|(space, i)| (self.folder_name(&space).to_lowercase(), space, i))
            .collect();
        found.sort_by_cached_key(|(folder, _, i)| (folder.clone(), i.name.to_lowercase(), i.id));
        Ok(found.into_iter().map(|(_, s, i)| (s, i)).collect())
    }

    /// The live login `item` (its full id) if it may be filled into a page
    /// of `origin`; refused otherwise, whoever asks. Any role that reads
    /// the folder may fill (a Folder Member uses items).
    pub fn login_for_origin(
        &self,
        origin: &str,
        item: &str,
    ) -> Result<(SpaceId, Item), ReplicaError> {
        let page = PageOrigin::parse(origin)?;
        let no_such = || ReplicaError::NoSuchItem {
            query: item.to_string(),
            trash: false,
        };
        let id = ItemId::from_hex(item).ok_or_else(no_such)?;
        let folder = self
            .unlocked()?
            .open
            .iter()
            .find_map(|(space, f)| {
                let live = f.items().get(&id)?.trashed_ms.is_none();
                live.then_some(*space)
            })
            .ok_or_else(no_such)?;
        // Judged on the item read whole, the one whose secrets are handed
        // over, not on the head kept for listing.
        let item = self.item(&folder, &id)?;
        if item.trashed_ms.is_some() {
            return Err(no_such());
        }
        if item.item_type != ItemType::Login {
            return Err(ReplicaError::NotALogin { item: item.name });
        }
        if !page.matches_any(&item.urls) {
            return Err(ReplicaError::NotForThisOrigin {
                item: item.name,
                origin: page.serialize(),
            });
        }
        Ok((folder, item))
    }

    /// Adds a login for the page's origin to the Personal folder.
    pub fn save_login(
        &mut self,
        login: SavedLogin,
        now_ms: i64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(SpaceId, ItemId), ReplicaError> {
        let page = PageOrigin::parse(&login.origin)?;
        let url = page.serialize();
        let name = match login.name.trim() {
            "" => url
                .split_once("://")
                .map(|(_, host)| host.to_string())
                .unwrap_or_else(|| url.clone()),
            n => n.to_string(),
        };
        let mut fields = BTreeMap::new();
        if !login.username.is_empty() {
            fields.insert("username".to_string(), login.username);
        }
        fields.insert("password".to_string(), login.password);
        self.add_item(
            NewItemSpec {
                folder: None,
                item_type: ItemType::Login,
                name,
                fields,
                urls: vec![url],
            },
            now_ms,
            rng,
        )
    }
}
