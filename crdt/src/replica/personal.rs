//! The Personal folder belongs to the user, not to one device (issue 21).
//! Linking a device shares the linking device's Personal folder with its
//! user (`Principal::User`, Folder Manager): the key upkeep then wraps its
//! key for every device of the user, the new one included, and sync
//! brings it there. A device made by the link starts with a Personal
//! folder of its own; while that one is untouched (no item, shared with
//! nobody) and the user's arrived, the user's one is this device's
//! Personal folder and its own stays out of sight.

use rand_core::CryptoRngCore;

use super::team::ShareChange;
use super::{Replica, ReplicaError};
use crate::ids::SpaceId;
use crate::ops::{Principal, Role};

impl Replica {
    /// Shares this device's Personal folder with its user (all of their
    /// devices), once: part of linking a new device.
    pub(super) fn share_personal(
        &mut self,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(), ReplicaError> {
        let Some(user) = self.my_user() else {
            return Ok(());
        };
        let id = self.personal();
        let Some(space) = self.folders.get(&id) else {
            return Ok(());
        };
        let principal = Principal::User(user);
        if space.state().folder.grants.contains_key(&principal) {
            return Ok(());
        }
        // Shared with a paired device outside the team, it cannot join the
        // team (`folder_share` would refuse): it stays as it is, and the
        // link (already on the roster) goes on.
        let me = self.identity.device;
        let team = self.team_state();
        let outsider = space.state().folder.grants.keys().any(|p| match p {
            Principal::Device(d) => *d != me && !team.is_some_and(|t| t.is_live_team_device(d)),
            _ => false,
        });
        if outsider {
            return Ok(());
        }
        self.folder_share(
            &id.to_hex(),
            principal,
            ShareChange::Share(Role::Manager),
            rng,
        )?;
        Ok(())
    }

    /// Another device's Personal folder shared with this device's user,
    /// held and open here.
    fn users_personal(&self) -> Option<SpaceId> {
        let user = Principal::User(self.my_user()?);
        let own = self.identity.personal;
        let u = self.unlocked.as_ref()?;
        u.open
            .iter()
            .filter(|(id, f)| {
                **id != own
                    && f.doc.name().is_some_and(|n| n == "Personal")
                    && self.folders.get(id).is_some_and(|s| {
                        s.state()
                            .folder
                            .grants
                            .get(&user)
                            .is_some_and(|g| g.role == Role::Manager)
                    })
            })
            .map(|(id, _)| *id)
            .min()
    }

    /// This device's own Personal folder when the user's replaces it: it
    /// holds no item (not even in the trash) and is shared with nobody.
    pub(super) fn hidden_personal(&self) -> Option<SpaceId> {
        let own = self.identity.personal;
        let f = self.unlocked.as_ref()?.open.get(&own)?;
        let untouched = f.items().is_empty()
            && self
                .folders
                .get(&own)
                .is_some_and(|s| s.state().folder.grants.len() <= 1);
        (untouched && self.users_personal().is_some()).then_some(own)
    }

    /// The Personal folder: where items go when no folder is named.
    pub fn personal(&self) -> SpaceId {
        match self.hidden_personal() {
            Some(_) => self.users_personal().unwrap_or(self.identity.personal),
            None => self.identity.personal,
        }
    }
}
