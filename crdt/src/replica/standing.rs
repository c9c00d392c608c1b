//! Where this device stands in its team, as the roster it holds says
//! (issue 21): still a member, or revoked, or its user removed. A device
//! that is out refuses writes with that reason (they would never be
//! accepted anywhere), and its peers tell it: a live device keeps a
//! revoked or removed device's connection for one thing only, the roster
//! ops that took it out and what they build on ([`Replica::notice_for`]),
//! nothing written after them.

use std::collections::HashSet;

use super::{Replica, ReplicaError};
use crate::envelope::{Envelope, Kind};
use crate::ids::{DeviceId, EnvelopeId};
use crate::ops::{ControlOp, RosterOp, UserId};

/// This device's standing in its team.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// In no team (a personal vault, perhaps with paired devices).
    NoTeam,
    /// A member device (or one whose enrolment the roster does not show yet).
    Member,
    /// The roster revoked this device.
    DeviceRevoked { team: String, user: UserId },
    /// The roster removed this device's user (and so all their devices).
    UserRemoved { team: String, user: UserId },
}

impl Standing {
    /// Whether the team took this device out.
    pub fn is_out(&self) -> bool {
        matches!(
            self,
            Standing::DeviceRevoked { .. } | Standing::UserRemoved { .. }
        )
    }

    /// The stable name the IPC and `status --json` use.
    pub fn name(&self) -> &'static str {
        match self {
            Standing::NoTeam => "no_team",
            Standing::Member => "member",
            Standing::DeviceRevoked { .. } => "revoked",
            Standing::UserRemoved { .. } => "removed",
        }
    }

    /// What to tell the person at this device, when it is out.
    pub fn notice(&self) -> Option<String> {
        match self {
            Standing::NoTeam | Standing::Member => None,
            Standing::DeviceRevoked { team, user } => Some(format!(
                "this device was revoked from team {team:?}: it no longer syncs and \
                 cannot write (a device of {user} or a team admin can link a new one)"
            )),
            Standing::UserRemoved { team, user } => Some(format!(
                "{user} was removed from team {team:?}: this device no longer syncs and \
                 cannot write (a team admin can invite {user} again)"
            )),
        }
    }
}

impl Replica {
    /// This device's standing, as the roster held here says.
    pub fn standing(&self) -> Standing {
        let Some(t) = self.team_state() else {
            return Standing::NoTeam;
        };
        let team = t.team.name.clone();
        match t.team.devices.get(&self.identity.device) {
            Some(rec) if !t.team.users.contains(&rec.user) => Standing::UserRemoved {
                team,
                user: rec.user.clone(),
            },
            Some(rec) if rec.revoked => Standing::DeviceRevoked {
                team,
                user: rec.user.clone(),
            },
            _ => Standing::Member,
        }
    }

    /// `Err` with the reason when the team took this device out: every
    /// write is refused then.
    pub(super) fn check_standing(&self) -> Result<(), ReplicaError> {
        let standing = self.standing();
        if standing.is_out() {
            Err(ReplicaError::NoLongerMember(standing))
        } else {
            Ok(())
        }
    }

    /// Whether the roster held here took device `d` out.
    pub(super) fn is_out(&self, d: &DeviceId) -> bool {
        self.team_state()
            .is_some_and(|t| t.is_dead(d) || t.team.removed_relays.contains(d))
    }

    /// What tells device `d` that it is out: the accepted roster ops that
    /// revoked it or removed its user, with everything they build on (the
    /// authors' chains and the context each op names), in chain order.
    /// Nothing written after those ops: `d` could have held all of it
    /// while it was a member. Empty for a live device.
    pub(super) fn notice_for(&self, d: &DeviceId) -> Vec<EnvelopeId> {
        let Some(roster) = &self.roster else {
            return Vec::new();
        };
        let t = roster.state();
        if !t.is_dead(d) && !t.team.removed_relays.contains(d) {
            return Vec::new();
        }
        let user = t.user_of(d).cloned();
        let mut stack: Vec<EnvelopeId> = roster
            .held()
            .filter(|e| {
                e.kind() == Kind::Roster
                    && roster.is_accepted(&e.id())
                    && match ControlOp::decode(Kind::Roster, &e.body().payload) {
                        Ok(ControlOp::Roster(RosterOp::RevokeDevice { device, .. })) => {
                            device == *d
                        }
                        Ok(ControlOp::Roster(RosterOp::RemoveUser { user: u, .. })) => {
                            Some(&u) == user.as_ref()
                        }
                        Ok(ControlOp::Roster(RosterOp::RemoveRelay { transport })) => {
                            DeviceId(transport) == *d
                        }
                        _ => false,
                    }
            })
            .map(Envelope::id)
            .collect();
        let mut seen: HashSet<EnvelopeId> = HashSet::new();
        let mut out: Vec<&Envelope> = Vec::new();
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            let Some(env) = roster.get(&id) else {
                continue;
            };
            stack.extend(env.body().prev);
            stack.extend(env.body().context.iter().copied());
            out.push(env);
        }
        out.sort_by_key(|e| (e.author(), e.seq(), e.id()));
        out.into_iter().map(Envelope::id).collect()
    }
}
