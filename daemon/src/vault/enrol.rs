//! The vault's side of enrolment (`net/enrol.rs` is the protocol): who may
//! invite, what an admission writes to the team roster (the replica
//! decides), and joining a team on a fresh device (identity made with the
//! handshake's keys) or on an initialised one (its personal vault kept).

use coffer_crdt::replica::Joiner;
use coffer_crdt::{DeviceId, DeviceKeys, Envelope, Replica, ReplicaError, SpaceId};
use rand_core::CryptoRngCore;
use tracing::info;
use zeroize::Zeroizing;

use super::{Now, Vault, VaultError};

/// Who an admission adds: a new user of the team (an invite) or another
/// device of this device's user (a link).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admit {
    User {
        email: String,
        /// The invitee's display name.
        name: String,
        /// When they are admitted (Unix ms): the roster's "joined".
        now_ms: i64,
        groups: Vec<String>,
        admin: bool,
    },
    OwnDevice,
    /// An existing user's new device, their others revoked (`invite --recover`).
    Recover {
        email: String,
    },
}

/// What an inviter tells a joiner about itself and the team.
#[derive(Clone, Debug)]
pub struct InviterContext {
    pub me: DeviceId,
    /// This device's transport key (the invite code names it).
    pub transport: [u8; 32],
    pub team: SpaceId,
    pub team_name: String,
    /// This device's user (the linking user, for a device link).
    pub email: String,
    /// This device's user's name.
    pub name: String,
}

/// An admission: the team and the roster to send the joiner.
pub struct Admitted {
    pub team: SpaceId,
    pub roster: Vec<Vec<u8>>,
    /// What a recovery did, as the IPC shows it.
    pub recovery: Option<RecoveryView>,
}

/// What a confirmed recovery did: revoked devices, the folders held here
/// that the new device is a member of (id, name, holds the key now), and
/// the folders whose key this device rotated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryView {
    pub revoked: Vec<String>,
    pub folders: Vec<(String, String, bool)>,
    pub rotated: Vec<String>,
}

/// An initialised device's keys for joining a team.
pub struct JoinerKeys {
    pub keys: DeviceKeys,
    pub transport: Zeroizing<[u8; 32]>,
}

/// A fresh device's identity, made once the inviter admitted it.
pub struct FreshIdentity {
    pub name: String,
    pub email: String,
    pub pin: Zeroizing<String>,
    pub keys: DeviceKeys,
    /// The seed of the transport key the handshake was made with.
    pub transport: Zeroizing<[u8; 32]>,
}

impl Vault {
    /// Checks that this device may open an invite (unlocked, in a team; an
    /// admin to invite a user) and says what the joiner is shown.
    pub fn enrol_inviter(&self, user_invite: bool) -> Result<InviterContext, VaultError> {
        let r = self.replica()?;
        r.check_inviter(user_invite)?;
        let team = r.team()?;
        let user = r.my_user().ok_or(ReplicaError::NoTeam)?;
        Ok(InviterContext {
            me: r.device(),
            transport: r.identity().transport,
            team: team.id,
            team_name: team.name,
            email: user.0.clone(),
            name: r.identity().name.clone(),
        })
    }

    /// Validates an invite before its code is made: the email, the name
    /// and the group names (the replica's rule, [`Replica::check_invite`]).
    pub fn enrol_check_invite(
        &self,
        email: &str,
        name: &str,
        groups: &[String],
    ) -> Result<(), VaultError> {
        Ok(self.replica()?.check_invite(email, name, groups)?)
    }

    /// Checks a recovery invite before its code is made (an admin, an
    /// existing user, not this device's own: [`Replica::check_recover`]);
    /// the user's name in the roster, if it has one.
    pub fn enrol_check_recover(&self, email: &str) -> Result<Option<String>, VaultError> {
        let r = self.replica()?;
        let user = r.check_recover(email)?;
        Ok(r.user_name(&user))
    }

    /// Admits a confirmed joiner (see [`Replica::admit`]): the roster to
    /// send it.
    pub fn enrol_admit(
        &mut self,
        joiner: &Joiner,
        admit: &Admit,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Admitted, VaultError> {
        let r = self.replica_mut()?;
        let mut recovery = None;
        match admit {
            Admit::User {
                email,
                name,
                now_ms,
                groups,
                admin,
            } => {
                r.admit(
                    Some(email),
                    joiner,
                    groups,
                    *admin,
                    Some((name, *now_ms)),
                    rng,
                )?;
            }
            Admit::OwnDevice => {
                r.admit(None, joiner, &[], false, None, rng)?;
            }
            Admit::Recover { email } => {
                let done = r.admit_recovered(email, joiner, rng)?;
                info!(
                    user = %done.user,
                    revoked = done.revoked.len(),
                    rotated = done.rotated.len(),
                    "recovery admitted"
                );
                recovery = Some(RecoveryView {
                    revoked: done.revoked.iter().map(DeviceId::to_hex).collect(),
                    folders: done
                        .folders
                        .iter()
                        .map(|(id, has_key)| (id.to_hex(), r.folder_name(id), *has_key))
                        .collect(),
                    rotated: done.rotated.iter().map(SpaceId::to_hex).collect(),
                });
            }
        }
        let team = r.team_id().ok_or(ReplicaError::NoTeam)?;
        let roster = r.roster_envelopes().iter().map(|e| e.to_bytes()).collect();
        info!(device = %joiner.device.short(), "enrolment admitted");
        Ok(Admitted {
            team,
            roster,
            recovery,
        })
    }

    /// The joiner's signing keys and transport seed: `None` on a
    /// fresh device (the caller makes new keys); an initialised device must
    /// be unlocked and in no team.
    pub fn enrol_joiner(&self) -> Result<Option<JoinerKeys>, VaultError> {
        let Ok(r) = self.replica() else {
            return Ok(None);
        };
        if let Ok(team) = r.team() {
            return Err(ReplicaError::AlreadyInTeam { name: team.name }.into());
        }
        let keys = r.keys_for_reload().ok_or(ReplicaError::Locked)?.clone();
        let transport = self
            .network_secret()?
            .ok_or_else(|| VaultError::Internal("this device has no transport key".into()))?;
        Ok(Some(JoinerKeys { keys, transport }))
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
    ) -> Result<DeviceId, VaultError> {
        let envs: Vec<Envelope> = roster
            .iter()
            .map(|b| Envelope::decode(b))
            .collect::<Result<_, _>>()
            .map_err(|_| ReplicaError::BadRoster("an envelope does not decode"))?;
        let device = match &fresh {
            Some(f) => f.keys.device_id(),
            None => self.replica()?.device(),
        };
        // Judge the roster before anything is written.
        Replica::check_roster(team, &device, envs.clone())?;
        if let Some(f) = fresh {
            self.init_with_keys(&f.name, &f.email, &f.pin, f.keys, f.transport, now, rng)?;
        }
        self.replica_mut()?.adopt_team(team, envs)?;
        Ok(device)
    }
}
