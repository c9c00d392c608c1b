//! Recovering a user who lost their only device, or its PIN (issue 21).
//! There is no master password, so recovery is re-enrolment: a team admin
//! re-invites the existing user (`coffer invite EMAIL --recover`), and once
//! the verification codes matched, [`Replica::admit_recovered`] writes one
//! roster batch: the new device joins that user (`AddDevice`, by an
//! admin), and every other live device of the user is revoked
//! (`RevokeDevice`, with this device's cutoffs).
//!
//! No new op: the acceptance rule already lets only an admin add a device
//! to another user or revoke another user's device, with the usual rank
//! rules, so a forged recovery from anyone else never takes effect.
//! Folders shared with the user or one of their groups then reach the new
//! device through the ordinary key upkeep: the revocation makes a rotation
//! due, and the rotation's wraps name every member device (the new one
//! included, the revoked ones not); where no rotation is due a re-wrap
//! hands the key over. A folder held only by the user's own devices (their
//! Personal folder) has no one left to hand its key over: it stays behind.

use rand_core::CryptoRngCore;

use super::team::Joiner;
use super::{Replica, ReplicaError};
use crate::ids::{DeviceId, SpaceId};
use crate::ops::{RosterOp, UserId};

/// What a recovery did, as seen from the admin's device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    pub user: UserId,
    /// The user's devices this recovery revoked.
    pub revoked: Vec<DeviceId>,
    /// Folders this device holds that the new device is a member of, and
    /// whether it holds their current key already (`false`: a writer of
    /// that folder hands it over when its device next runs the key upkeep).
    pub folders: Vec<(SpaceId, bool)>,
    /// Folders whose key this device rotated.
    pub rotated: Vec<SpaceId>,
}

impl Replica {
    /// Who may re-invite `email` to a fresh device: an unlocked team admin
    /// in good standing, for an existing user other than their own.
    pub fn check_recover(&self, email: &str) -> Result<UserId, ReplicaError> {
        self.check_inviter(true)?;
        self.check_standing()?;
        let user = self.known_user(email)?;
        if self.my_user().as_ref() == Some(&user) {
            return Err(ReplicaError::Refused(format!(
                "{user} is this device's own user: add a new device of yours with \
                 `coffer device link` instead (it keeps everything, the Personal folder too)"
            )));
        }
        // The roster's rank rule, said before a code is made: revoking
        // the user's devices needs a stronger admin rank than theirs.
        let t = &self.require_team()?.team;
        if t.founder.as_ref() == Some(&user) {
            return Err(ReplicaError::Refused(format!(
                "{user} is the team's founding admin: only their own devices can revoke theirs \
                 (a device of theirs that still works can link a new one)"
            )));
        }
        let mine = self.my_user().and_then(|u| t.admins.get(&u).copied());
        if let (Some(theirs), Some(mine)) = (t.admins.get(&user), mine) {
            if mine >= *theirs {
                return Err(ReplicaError::Refused(format!(
                    "{user} is a team admin of your rank or stronger: an admin who outranks them \
                     (the founder) must recover them"
                )));
            }
        }
        Ok(user)
    }

    /// Admits a confirmed joiner as a new device of the existing user
    /// `email` and revokes that user's other devices, in one roster write;
    /// then the key upkeep rotates or re-wraps what this device can. A
    /// joiner already enrolled this way (it dropped before hearing the
    /// answer and tried again) writes only what is still missing.
    pub fn admit_recovered(
        &mut self,
        email: &str,
        joiner: &Joiner,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Recovery, ReplicaError> {
        let user = self.check_recover(email)?;
        let state = self.require_team()?;
        let mut ops = Vec::new();
        match state.team.devices.get(&joiner.device) {
            None => ops.push(RosterOp::AddDevice {
                user: user.clone(),
                device: joiner.device,
                exchange: joiner.exchange,
                transport: joiner.transport,
                proof: joiner.proof.clone(),
                transport_proof: joiner.transport_proof.clone(),
            }),
            Some(rec)
                if rec.user == user
                    && rec.exchange == joiner.exchange
                    && rec.transport == joiner.transport
                    && state.is_live_team_device(&joiner.device) => {}
            Some(rec) if rec.revoked => {
                return Err(ReplicaError::Refused(
                    "that device was revoked; a revoked device cannot rejoin (join from a fresh data folder)".into(),
                ))
            }
            Some(_) => {
                return Err(ReplicaError::Refused(
                    "that device is already enrolled as another user".into(),
                ))
            }
        }
        // The name the joiner gave (`join --name`), as for any joiner: kept
        // only if it keeps the rule (never fails the recovery).
        if let (true, Some(name)) = (
            !state.team.devices.contains_key(&joiner.device),
            joiner
                .name
                .as_deref()
                .and_then(|n| super::check_name(n, crate::ops::MAX_DEVICE_NAME).ok()),
        ) {
            ops.push(RosterOp::NameDevice {
                device: joiner.device,
                name,
            });
        }
        let old: Vec<DeviceId> = state
            .live_devices_of(&user)
            .filter(|d| **d != joiner.device)
            .copied()
            .collect();
        let cutoffs = self.team_cutoffs();
        ops.extend(old.iter().map(|device| RosterOp::RevokeDevice {
            device: *device,
            cutoffs: cutoffs.clone(),
        }));
        let rotated = if ops.is_empty() {
            Vec::new()
        } else {
            self.roster_write(ops, rng)?.rotated
        };
        Ok(Recovery {
            folders: self.folders_of_device(&joiner.device),
            user,
            revoked: old,
            rotated,
        })
    }

    /// Folders held here that `device` is a member of, and whether it
    /// holds their current epoch's key.
    fn folders_of_device(&self, device: &DeviceId) -> Vec<(SpaceId, bool)> {
        self.folders
            .iter()
            .filter(|(_, s)| s.state().folder.deleted.is_none())
            .filter(|(_, s)| s.state().member_devices().contains_key(device))
            .map(|(id, s)| {
                let state = s.state();
                let has_key = state
                    .folder
                    .current_epoch
                    .and_then(|e| state.folder.epochs.get(&e))
                    .is_some_and(|e| e.wraps.contains_key(device));
                (*id, has_key)
            })
            .collect()
    }
}
