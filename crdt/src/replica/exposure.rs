//! `coffer audit exposure USER`: for a departing or removed user, every
//! item they could read, which of those they used (from the audit records
//! this device holds) and which changed since their removal — the
//! credentials to rotate. A pure function of the replica's state and the
//! records it is handed: the daemon only gathers them.
//!
//! - **Could read**: a folder whose key, in some epoch, was wrapped for one
//!   of the user's devices (granted directly, through a group or as one of
//!   their devices: a wrap is what let them decrypt). "Since" is the first
//!   such key epoch (ops carry no clock; epoch 0 is the folder's founding).
//! - **Used**: the user's records naming the item with a use action
//!   ([`Action::is_use`]), counted, with the last time.
//! - **Changed since removal**: a change to the item not covered by the
//!   cutoff of the op that removed them (the folder content the remover
//!   had seen: a folder `Remove` of the user, their device or a group they
//!   were in, or a roster `RemoveUser`, `RevokeDevice`, `RemoveFromGroup`).
//!   With several such ops, the earliest point per author is taken: a
//!   change that any removal did not cover is flagged (rotating one more
//!   credential is the safe side).
//!
//! Items are listed from the folders this device can open; a folder the
//! user could read that this device cannot is named in
//! [`Exposure::unreadable_folders`], never silently left out.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::audit::{Action, AuditEvent};
use crate::envelope::Kind;
use crate::ids::{DeviceId, ItemId, SpaceId};
use crate::ops::{ControlOp, Cutoff, CutoffPoint, MembershipOp, Principal, RosterOp, UserId};
use crate::space::{Outcome, Space};
use crate::state::State;

use super::{Replica, ReplicaError};

/// One item a user could read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExposedItem {
    pub folder: SpaceId,
    pub folder_name: String,
    pub item: ItemId,
    pub item_name: String,
    /// In the trash now.
    pub trashed: bool,
    /// The first key epoch of the folder the user held (0: its founding).
    pub since_epoch: u32,
    /// Uses recorded per action.
    pub uses: BTreeMap<Action, u64>,
    /// The newest use's time (ms).
    pub last_used_ms: Option<i64>,
    /// Changed since the user's removal from the folder: `None` while the
    /// user can still read it, or when no removal op names a cutoff.
    pub changed_since_removal: Option<bool>,
}

/// One folder a user could read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExposedFolder {
    pub folder: SpaceId,
    pub folder_name: String,
    pub since_epoch: u32,
    /// The user can still read it (a device of theirs is a member).
    pub still_member: bool,
    /// A removal cutoff was found (changes after it are flagged).
    pub removal_known: bool,
}

/// What [`Replica::exposure`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exposure {
    pub user: UserId,
    /// Still a user of the team.
    pub in_team: bool,
    /// Their devices (revoked ones too).
    pub devices: Vec<DeviceId>,
    pub folders: Vec<ExposedFolder>,
    /// Sorted by folder name, then item name.
    pub items: Vec<ExposedItem>,
    /// Folders they could read that this device cannot open.
    pub unreadable_folders: Vec<SpaceId>,
}

/// The control ops of `space` that took effect.
fn accepted_ops(space: &Space) -> impl Iterator<Item = ControlOp> + '_ {
    space.held().filter_map(move |env| {
        if !matches!(env.kind(), Kind::Membership | Kind::Roster) {
            return None;
        }
        if space.outcome_of(&env.id()) != Some(Outcome::Accepted) {
            return None;
        }
        ControlOp::decode(env.kind(), &env.body().payload).ok()
    })
}

/// Per author, the earliest point of any cutoff given.
fn earliest(cutoffs: &[&Cutoff]) -> Cutoff {
    let mut out: Cutoff = BTreeMap::new();
    let authors: BTreeSet<DeviceId> = cutoffs.iter().flat_map(|c| c.keys().copied()).collect();
    for a in authors {
        // An author missing from one cutoff: the remover had seen none of
        // its content, so all of it is after that removal.
        let point = cutoffs
            .iter()
            .map(|c| c.get(&a).copied())
            .min_by_key(|p| p.map_or(0, |p| p.seq));
        if let Some(Some(p)) = point {
            out.insert(a, p);
        }
    }
    out
}

fn after(cutoff: &Cutoff, author: &DeviceId, seq: u64) -> bool {
    seq > cutoff.get(author).map_or(0, |p: &CutoffPoint| p.seq)
}

impl Replica {
    /// Every item `user` could read, with their recorded uses and whether
    /// each changed since their removal. `events` are the audit events this
    /// device holds about the user (others are ignored). Team admins only.
    pub fn exposure(
        &self,
        user: &str,
        events: &[(i64, AuditEvent)],
    ) -> Result<Exposure, ReplicaError> {
        if !self.audit_is_admin() {
            return Err(ReplicaError::NotAdmin {
                action: "see a user's exposure",
            });
        }
        let unlocked = self.unlocked()?;
        let team = self.team_state().ok_or(ReplicaError::NoTeam)?;
        let uid = UserId::new(user).ok_or_else(|| ReplicaError::NoSuchUser {
            user: UserId(user.trim().to_lowercase()),
        })?;
        let devices: BTreeSet<DeviceId> = team
            .team
            .devices
            .iter()
            .filter(|(_, r)| r.user == uid)
            .map(|(d, _)| *d)
            .collect();
        let in_team = team.team.users.contains(&uid);
        if devices.is_empty() && !in_team {
            return Err(ReplicaError::NoSuchUser { user: uid });
        }
        let roster_cutoffs = self.roster_removals(&uid, &devices);

        // Uses per item, from the user's own records.
        let mut uses: BTreeMap<ItemId, (BTreeMap<Action, u64>, i64)> = BTreeMap::new();
        for (time, e) in events {
            let Some(item) = e.item else { continue };
            if !e.action.is_use() || UserId::new(&e.user).as_ref() != Some(&uid) {
                continue;
            }
            let u = uses.entry(item).or_insert_with(|| (BTreeMap::new(), *time));
            *u.0.entry(e.action).or_default() += 1;
            u.1 = u.1.max(*time);
        }

        let mut out = Exposure {
            user: uid.clone(),
            in_team,
            devices: devices.iter().copied().collect(),
            folders: Vec::new(),
            items: Vec::new(),
            unreadable_folders: Vec::new(),
        };
        for (id, space) in &self.folders {
            let state = space.state();
            let Some(since_epoch) = state
                .folder
                .epochs
                .values()
                .filter(|e| e.wraps.keys().any(|d| devices.contains(d)))
                .map(|e| e.number)
                .min()
            else {
                continue;
            };
            let still_member = in_team
                && space
                    .members()
                    .keys()
                    .any(|d| devices.contains(d) && team.is_live_team_device(d));
            let Some(open) = unlocked.open.get(id) else {
                out.unreadable_folders.push(*id);
                continue;
            };
            let mut cutoffs: Vec<&Cutoff> =
                roster_cutoffs.iter().filter_map(|c| c.get(id)).collect();
            let folder_ops: Vec<ControlOp> = accepted_ops(space).collect();
            cutoffs.extend(folder_ops.iter().filter_map(|op| match op {
                ControlOp::Membership(MembershipOp::Remove {
                    principal,
                    to: None,
                    cutoff,
                }) if names_user(team, principal, &uid, &devices) => Some(cutoff),
                _ => None,
            }));
            let removal = (!still_member && !cutoffs.is_empty()).then(|| earliest(&cutoffs));
            // The change hashes of content after the removal.
            let changed: HashSet<[u8; 32]> = match &removal {
                Some(cut) => space
                    .accepted_content()
                    .filter(|env| after(cut, &env.author(), env.seq()))
                    .filter_map(|env| open.change_hash(&env.id()))
                    .collect(),
                None => HashSet::new(),
            };
            let folder_name = self.folder_name(id);
            out.folders.push(ExposedFolder {
                folder: *id,
                folder_name: folder_name.clone(),
                since_epoch,
                still_member,
                removal_known: removal.is_some(),
            });
            for item in open.items().values() {
                let (per_action, last) = match uses.get(&item.id) {
                    Some((m, t)) => (m.clone(), Some(*t)),
                    None => (BTreeMap::new(), None),
                };
                let changed_since_removal = removal.as_ref().map(|_| {
                    open.doc
                        .item_change_hashes(&item.id)
                        .iter()
                        .any(|h| changed.contains(&h.0))
                });
                out.items.push(ExposedItem {
                    folder: *id,
                    folder_name: folder_name.clone(),
                    item: item.id,
                    item_name: item.name.clone(),
                    trashed: item.trashed_ms.is_some(),
                    since_epoch,
                    uses: per_action,
                    last_used_ms: last,
                    changed_since_removal,
                });
            }
        }
        out.items.sort_by_cached_key(|i| {
            (
                i.folder_name.to_lowercase(),
                i.item_name.to_lowercase(),
                i.item,
            )
        });
        out.folders
            .sort_by_cached_key(|f| (f.folder_name.to_lowercase(), f.folder));
        Ok(out)
    }

    /// The per-folder cutoffs of the roster ops that took the user's
    /// access: their removal, a device's revocation, leaving a group.
    fn roster_removals(
        &self,
        user: &UserId,
        devices: &BTreeSet<DeviceId>,
    ) -> Vec<crate::ops::Cutoffs> {
        let Some(roster) = self.roster.as_ref() else {
            return Vec::new();
        };
        accepted_ops(roster)
            .filter_map(|op| match op {
                ControlOp::Roster(RosterOp::RemoveUser { user: u, cutoffs })
                | ControlOp::Roster(RosterOp::RemoveFromGroup {
                    user: u, cutoffs, ..
                }) if u == *user => Some(cutoffs),
                ControlOp::Roster(RosterOp::RevokeDevice { device, cutoffs })
                    if devices.contains(&device) =>
                {
                    Some(cutoffs)
                }
                _ => None,
            })
            .collect()
    }
}

/// Whether a folder grant's principal covers the user: the user, one of
/// their devices, or a group they are in (a removed user is in none: their
/// roster `RemoveUser` carries the cutoffs then).
fn names_user(
    team: &State,
    principal: &Principal,
    user: &UserId,
    devices: &BTreeSet<DeviceId>,
) -> bool {
    match principal {
        Principal::User(u) => u == user,
        Principal::Device(d) => devices.contains(d),
        Principal::Group(g) => team
            .team
            .groups
            .get(g)
            .is_some_and(|members| members.contains(user)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::EnvelopeId;

    fn point(seq: u64) -> CutoffPoint {
        CutoffPoint {
            seq,
            id: EnvelopeId([seq as u8; 32]),
        }
    }

    /// Several removals: per author the earliest point; an author one
    /// removal had seen nothing of counts from its start.
    #[test]
    fn the_earliest_removal_point_per_author_is_used() {
        let (a, b) = (DeviceId([1; 32]), DeviceId([2; 32]));
        let first: Cutoff = BTreeMap::from([(a, point(5)), (b, point(3))]);
        let second: Cutoff = BTreeMap::from([(a, point(9))]);
        let cut = earliest(&[&first, &second]);
        assert_eq!(cut.get(&a).map(|p| p.seq), Some(5));
        assert_eq!(cut.get(&b), None, "the second removal saw none of b's");
        assert!(!after(&cut, &a, 5));
        assert!(after(&cut, &a, 6));
        assert!(after(&cut, &b, 1));
        let only = earliest(&[&first]);
        assert!(!after(&only, &b, 3) && after(&only, &b, 4));
    }
}
