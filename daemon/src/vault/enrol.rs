//! The vault's side of enrolment (`net/enrol.rs` is the protocol): who may
//! invite, what an admission writes to the team roster, and joining a team
//! on a fresh device (identity made with the handshake's keys) or on an
//! initialised one (its personal vault kept).

use coffer_crdt::{DeviceId, DeviceKeys, Envelope, RosterOp, Space, SpaceId, UserId};
use coffer_ipc::Event;
use rand_core::CryptoRngCore;
use tracing::info;
use zeroize::Zeroizing;

use super::{Now, Vault, VaultError};
use crate::net::enrol::{EnrolKind, InviteSpec, Pending, MAX_NAME};

/// What an inviter tells a joiner about itself and the team.
#[derive(Clone, Debug)]
pub struct InviterContext {
    pub me: DeviceId,
    pub team: SpaceId,
    pub team_name: String,
    /// This device's user (the linking user, for a device link).
    pub email: String,
    /// This device's user's name.
    pub name: String,
}

/// An admission: the team, the roster to send the joiner, and the events.
pub struct Admitted {
    pub team: SpaceId,
    pub roster: Vec<Vec<u8>>,
    pub events: Vec<Event>,
}

/// A fresh device's identity, made once the inviter admitted it.
pub struct FreshIdentity {
    pub name: String,
    pub email: String,
    pub pin: Zeroizing<String>,
    pub keys: DeviceKeys,
}

fn no_team() -> VaultError {
    VaultError::NotFound(
        "this device is in no team: create one with `coffer team create NAME` first".into(),
    )
}

impl Vault {
    /// Checks that this device may open an invite of `kind` (unlocked, in a
    /// team; an admin to invite a user) and says what the joiner is shown.
    pub fn enrol_inviter(&self, kind: EnrolKind) -> Result<InviterContext, VaultError> {
        self.unlocked()?;
        let me = self.device_id().ok_or(VaultError::NotInitialized)?;
        let team = self.team_id().ok_or_else(no_team)?;
        let state = self.team_state().ok_or_else(no_team)?;
        let user = self.my_user().ok_or(VaultError::NotInitialized)?;
        if kind == EnrolKind::User && !state.admins.contains_key(&user) {
            return Err(VaultError::PermissionDenied(
                "only a team admin may invite people".into(),
            ));
        }
        let name = self
            .identity()
            .map(|i| i.name.clone())
            .unwrap_or_else(|| user.0.clone());
        Ok(InviterContext {
            me,
            team,
            team_name: state.name.clone(),
            email: user.0.clone(),
            name,
        })
    }

    /// Validates an invite before its code is made: the email, the name
    /// and the group names.
    pub fn enrol_check_invite(&self, spec: &InviteSpec) -> Result<(), VaultError> {
        UserId::new(&spec.email).ok_or_else(|| {
            VaultError::Invalid(format!("{:?} is not an email address", spec.email))
        })?;
        if spec.name.trim().is_empty() || spec.name.len() > MAX_NAME {
            return Err(VaultError::Invalid("a name is 1 to 256 bytes".into()));
        }
        if spec
            .groups
            .iter()
            .any(|g| g.trim().is_empty() || g.len() > MAX_NAME)
        {
            return Err(VaultError::Invalid("a group name is 1 to 256 bytes".into()));
        }
        Ok(())
    }

    /// Admits a confirmed joiner: adds the user (if new), its device, its
    /// groups and admin role (an invite), or the device to this user (a
    /// link), in one roster write. Returns the team, the roster to send
    /// and the events.
    pub fn enrol_admit(
        &mut self,
        pending: &Pending,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Admitted, VaultError> {
        let (spec, device, exchange) = (&pending.spec, pending.joiner, pending.exchange);
        let team = self.team_id().ok_or_else(no_team)?;
        let state = self.team_state().ok_or_else(no_team)?;
        let user = match spec.kind {
            EnrolKind::User => UserId::new(&spec.email).ok_or_else(|| {
                VaultError::Invalid(format!("{:?} is not an email address", spec.email))
            })?,
            EnrolKind::Device => self.my_user().ok_or(VaultError::NotInitialized)?,
        };
        match state.devices.get(&device) {
            // Admitted before, but the joiner never got the answer (it
            // dropped): admitting again only resends the roster.
            Some(rec)
                if rec.user == user
                    && rec.exchange == exchange
                    && !rec.revoked
                    && state.users.contains(&user) =>
            {
                info!(device = %device.short(), "enrolment admitted again (already enrolled)");
                return Ok(Admitted {
                    team,
                    roster: self.roster_bytes(),
                    events: Vec::new(),
                });
            }
            Some(rec) if rec.revoked => {
                return Err(VaultError::Invalid(
                    "that device was revoked; a revoked device cannot rejoin (join from a fresh data folder)".into(),
                ))
            }
            Some(_) => {
                return Err(VaultError::Invalid(
                    "that device is already enrolled as another user".into(),
                ))
            }
            None => {}
        }
        let mut ops = Vec::new();
        if spec.kind == EnrolKind::User && !state.users.contains(&user) {
            ops.push(RosterOp::AddUser { user: user.clone() });
        }
        ops.push(RosterOp::AddDevice {
            user: user.clone(),
            device,
            exchange,
            transport: pending.transport,
            proof: pending.roster_proof.clone(),
        });
        if spec.kind == EnrolKind::User {
            for group in &spec.groups {
                let group = group.trim().to_string();
                if !state.groups.get(&group).is_some_and(|m| m.contains(&user)) {
                    ops.push(RosterOp::AddToGroup {
                        group,
                        user: user.clone(),
                    });
                }
            }
            if spec.admin && !state.admins.contains_key(&user) {
                ops.push(RosterOp::AddAdmin { user: user.clone() });
            }
        }
        let events = self.roster_write_ops(ops, rng)?;
        info!(device = %device.short(), kind = spec.kind.name(), "enrolment admitted");
        Ok(Admitted {
            team,
            roster: self.roster_bytes(),
            events,
        })
    }

    /// The joiner's keys and name: `None` on a fresh device (the caller
    /// makes new keys); an initialised device must be unlocked and in no team.
    pub fn enrol_joiner(&self) -> Result<Option<(DeviceKeys, String)>, VaultError> {
        let Some(identity) = self.identity() else {
            return Ok(None);
        };
        if let Some(t) = self.team_state() {
            return Err(VaultError::Invalid(format!(
                "this device is already in team {:?}",
                t.name
            )));
        }
        let u = self.unlocked()?;
        Ok(Some((u.keys.clone(), identity.name.clone())))
    }

    /// Joins the team an inviter admitted this device to: checks the
    /// roster lists this device first, then (fresh device) creates the
    /// identity with the handshake's keys and the PIN, and adopts the roster.
    pub fn enrol_finish(
        &mut self,
        fresh: Option<FreshIdentity>,
        team: SpaceId,
        roster: &[Vec<u8>],
        now: Now,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(DeviceId, Vec<Event>), VaultError> {
        let bad = || VaultError::Invalid("the inviter sent an invalid team roster".into());
        let envs: Vec<Envelope> = roster
            .iter()
            .map(|b| Envelope::decode(b))
            .collect::<Result<_, _>>()
            .map_err(|_| bad())?;
        let device = match &fresh {
            Some(f) => f.keys.device_id(),
            None => self.device_id().ok_or(VaultError::NotInitialized)?,
        };
        // Judge the roster before anything is written.
        let mut scratch = Space::new_roster(team);
        let report = scratch.ingest_batch(envs.clone());
        if report.outcomes.iter().any(Result::is_err) {
            return Err(bad());
        }
        let listed = scratch
            .state()
            .team
            .devices
            .get(&device)
            .is_some_and(|r| !r.revoked && scratch.state().team.users.contains(&r.user));
        if !listed {
            return Err(VaultError::Invalid(
                "the inviter's roster does not list this device".into(),
            ));
        }
        if let Some(f) = fresh {
            self.init_with_keys(&f.name, &f.email, &f.pin, f.keys, now, rng)?;
        }
        let events = self.adopt_team(team, envs)?;
        Ok((device, events))
    }
}

impl Vault {
    /// One roster write (see `Vault::roster_write`); the events it caused.
    fn roster_write_ops(
        &mut self,
        ops: Vec<RosterOp>,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<Event>, VaultError> {
        let (_envelopes, _change, events) = self.roster_write(ops, rng)?;
        Ok(events)
    }
}
