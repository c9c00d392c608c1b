//! The team: its roster (users, groups, devices, admins), folders shared
//! with its users and groups with roles, enrolment's roster ops, and
//! pairing outside a team (a tool for tests and single-user setups).

use std::collections::{BTreeMap, BTreeSet};

use rand_core::CryptoRngCore;

use super::{Event, Needs, Persist, Replica, ReplicaError, SpaceKind, Trusted};
use crate::envelope::Envelope;
use crate::ids::{DeviceId, SpaceId};
use crate::ops::{ControlOp, Cutoffs, MembershipOp, Principal, Role, RosterOp, UserId};
use crate::space::Space;
use crate::state::State;

/// The team as shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TeamSummary {
    pub id: SpaceId,
    pub name: String,
    pub founder: Option<UserId>,
    pub admins: Vec<UserId>,
    pub users: usize,
    pub groups: Vec<String>,
    /// Live devices.
    pub devices: usize,
    /// This device's user.
    pub me: Option<UserId>,
    pub admin: bool,
}

/// A user as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserSummary {
    pub user: UserId,
    /// Their display name, where the roster has one.
    pub name: Option<String>,
    /// When they joined (the admitting device's clock), where known.
    pub joined_ms: Option<i64>,
    pub admin: bool,
    pub founder: bool,
    pub groups: Vec<String>,
    pub devices: Vec<DeviceId>,
    pub me: bool,
}

/// What a roster or membership change did to keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TeamChange {
    /// Folders whose key this device rotated.
    pub rotated: Vec<SpaceId>,
}

/// One grant of a folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberEntry {
    pub principal: Principal,
    pub role: Role,
}

/// One member device of a folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberDevice {
    pub device: DeviceId,
    pub user: Option<UserId>,
    pub role: Role,
    /// Holds the current epoch's key.
    pub has_key: bool,
}

/// A folder's members as shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderMembers {
    pub folder: SpaceId,
    pub name: String,
    pub team: Option<SpaceId>,
    pub members: Vec<MemberEntry>,
    pub devices: Vec<MemberDevice>,
    pub epochs: usize,
}

/// A device joining the team, as its enrolment proved it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joiner {
    pub device: DeviceId,
    pub exchange: [u8; 32],
    pub transport: [u8; 32],
    /// The name it asked for (`coffer join --name`, else its host name);
    /// left out of the roster if it breaks the name rule.
    pub name: Option<String>,
    /// The device's signature over its roster entry.
    pub proof: Vec<u8>,
    /// The transport key's signature binding it to the device.
    pub transport_proof: Vec<u8>,
}

fn user_id(email: &str) -> Result<UserId, ReplicaError> {
    UserId::new(email).ok_or_else(|| ReplicaError::BadName {
        name: email.to_string(),
        why: "it is not an email address",
    })
}

fn live(t: &State, d: &DeviceId) -> bool {
    t.is_live_team_device(d)
}

impl Replica {
    /// This device's user: its roster entry, else the email it was set up with.
    pub fn my_user(&self) -> Option<UserId> {
        let me = self.identity.device;
        if let Some(rec) = self.team_state().and_then(|t| t.team.devices.get(&me)) {
            return Some(rec.user.clone());
        }
        UserId::new(&self.identity.email)
    }

    fn am_admin(&self) -> bool {
        match (self.team_state(), self.my_user()) {
            (Some(t), Some(u)) => t.team.admins.contains_key(&u),
            _ => false,
        }
    }

    pub(super) fn require_team(&self) -> Result<&State, ReplicaError> {
        self.team_state().ok_or(ReplicaError::NoTeam)
    }

    fn require_admin(&self, action: &'static str) -> Result<(), ReplicaError> {
        self.require_team()?;
        if !self.am_admin() {
            return Err(ReplicaError::NotAdmin { action });
        }
        Ok(())
    }

    /// `coffer team create NAME`: this device's user is the founding admin.
    pub fn create_team(
        &mut self,
        name: &str,
        now_ms: i64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<TeamSummary, ReplicaError> {
        let name = super::check_name(name, crate::ops::MAX_NAME)?;
        if let Some(t) = self.team_state() {
            return Err(ReplicaError::AlreadyInTeam {
                name: t.team.name.clone(),
            });
        }
        let founder = self.my_user().ok_or(ReplicaError::BadName {
            name: self.identity.email.clone(),
            why: "it is not an email address",
        })?;
        let keys = self.keys()?.clone();
        let (roster, genesis) =
            Space::create_team(&keys, founder, &name, self.identity.transport, rng)?;
        let id = roster.id();
        self.roster = Some(roster);
        self.persist(id, vec![genesis]);
        // The founder's display name and joining time, when the name it
        // was set up with keeps the roster's rule.
        if let Ok(person) = super::check_name(&self.identity.name, crate::ops::MAX_NAME) {
            let user = self.my_user().ok_or(ReplicaError::NoTeam)?;
            self.roster_write(
                vec![RosterOp::NameUser {
                    user,
                    name: person,
                    joined_ms: now_ms,
                }],
                rng,
            )?;
        }
        self.update_allowed();
        self.emit(Event::TeamChanged);
        self.team()
    }

    /// A device name as `coffer join --name` or `device rename` gives it,
    /// by the roster's rule (not empty, no control character, at most
    /// [`crate::ops::MAX_DEVICE_NAME`] bytes): trimmed, or why not.
    pub fn check_device_name(name: &str) -> Result<String, ReplicaError> {
        super::check_name(name, crate::ops::MAX_DEVICE_NAME)
    }

    /// A device's name, as the roster has it.
    pub fn device_name(&self, d: &DeviceId) -> Option<String> {
        self.team_state()?.team.device_names.get(d).cloned()
    }

    /// A user's display name, as the roster has it.
    pub fn user_name(&self, u: &UserId) -> Option<String> {
        self.team_state()?.team.user_names.get(u).cloned()
    }

    /// `coffer team rename NAME` (admins only).
    pub fn rename_team(
        &mut self,
        name: &str,
        rng: &mut impl CryptoRngCore,
    ) -> Result<TeamChange, ReplicaError> {
        self.check_standing()?;
        let name = super::check_name(name, crate::ops::MAX_NAME)?;
        self.require_admin("rename the team")?;
        if self.require_team()?.team.name == name {
            return Err(ReplicaError::Refused(format!(
                "the team is named {name:?} already"
            )));
        }
        self.roster_write(vec![RosterOp::RenameTeam { name }], rng)
    }

    /// `coffer relay add`: adds a keyless relay, named by its transport key
    /// (the Ed25519 key of its libp2p peer id), and the addresses to dial
    /// it at (admins only). Adding a relay that is there replaces its
    /// addresses.
    pub fn add_relay(
        &mut self,
        transport: [u8; 32],
        addrs: Vec<String>,
        rng: &mut impl CryptoRngCore,
    ) -> Result<TeamChange, ReplicaError> {
        self.check_standing()?;
        self.require_admin("add a relay")?;
        if addrs.len() > crate::ops::MAX_RELAY_ADDRS
            || addrs
                .iter()
                .any(|a| a.is_empty() || a.len() > crate::ops::MAX_RELAY_ADDR_LEN)
        {
            return Err(ReplicaError::Refused(format!(
                "a relay takes 1 to {} addresses of at most {} characters",
                crate::ops::MAX_RELAY_ADDRS,
                crate::ops::MAX_RELAY_ADDR_LEN
            )));
        }
        if self.require_team()?.team.relays.get(&DeviceId(transport)) == Some(&addrs) {
            return Err(ReplicaError::Refused(
                "the team has that relay at those addresses already".into(),
            ));
        }
        self.roster_write(vec![RosterOp::AddRelay { transport, addrs }], rng)
    }

    /// `coffer relay remove`: the team's devices stop syncing with the
    /// relay, and the relay drops every envelope of the team once it hears
    /// of it (admins only).
    pub fn remove_relay(
        &mut self,
        transport: [u8; 32],
        rng: &mut impl CryptoRngCore,
    ) -> Result<TeamChange, ReplicaError> {
        self.check_standing()?;
        self.require_admin("remove a relay")?;
        if !self
            .require_team()?
            .team
            .relays
            .contains_key(&DeviceId(transport))
        {
            return Err(ReplicaError::Refused("the team has no such relay".into()));
        }
        self.roster_write(vec![RosterOp::RemoveRelay { transport }], rng)
    }

    /// `coffer relay ls`: the team's relays (device id = transport key)
    /// and their addresses.
    pub fn relays(&self) -> BTreeMap<DeviceId, Vec<String>> {
        self.team_state()
            .map(|t| t.team.relays.iter().map(|(d, a)| (*d, a.clone())).collect())
            .unwrap_or_default()
    }

    /// `coffer team leave`: this device's user removes themself from the
    /// team (a `RemoveUser` of their own, which the roster always allows
    /// but for the founder): their devices stop syncing the team and the
    /// folders they could read get new keys from the members that remain.
    pub fn leave_team(&mut self, rng: &mut impl CryptoRngCore) -> Result<TeamChange, ReplicaError> {
        self.check_standing()?;
        let team = self.require_team()?;
        let user = self.my_user().ok_or(ReplicaError::NoTeam)?;
        if team.team.founder.as_ref() == Some(&user) {
            let others = team.team.admins.keys().filter(|a| **a != user).count();
            return Err(ReplicaError::FounderCannotLeave {
                other_admins: others,
            });
        }
        let cutoffs = self.team_cutoffs();
        self.roster_write(vec![RosterOp::RemoveUser { user, cutoffs }], rng)
    }

    /// `coffer team handover USER`: the founding admin hands the role to
    /// another admin (and stays an admin), e.g. before leaving the team.
    pub fn hand_over(
        &mut self,
        email: &str,
        rng: &mut impl CryptoRngCore,
    ) -> Result<TeamChange, ReplicaError> {
        self.check_standing()?;
        let user = self.known_user(email)?;
        let t = &self.require_team()?.team;
        let me = self.my_user();
        if me.is_none() || t.founder != me {
            return Err(ReplicaError::NotFounder);
        }
        if me.as_ref() == Some(&user) {
            return Err(ReplicaError::Refused(
                "you are the founding admin already".into(),
            ));
        }
        if !t.admins.contains_key(&user) {
            return Err(ReplicaError::Refused(format!(
                "{user} is not a team admin: promote them first (`coffer user promote {user}`)"
            )));
        }
        self.roster_write(vec![RosterOp::HandOver { to: user }], rng)
    }

    /// `coffer device rename [DEVICE] NAME`: this device by default; a
    /// user names their own devices, a team admin any live device.
    pub fn rename_device(
        &mut self,
        device: Option<DeviceId>,
        name: &str,
        rng: &mut impl CryptoRngCore,
    ) -> Result<TeamChange, ReplicaError> {
        self.check_standing()?;
        let name = super::check_name(name, crate::ops::MAX_DEVICE_NAME)?;
        let device = device.unwrap_or(self.identity.device);
        let state = self.require_team()?;
        let owner = match state.team.devices.get(&device) {
            Some(rec) if live(state, &device) => rec.user.clone(),
            _ => {
                return Err(ReplicaError::NoSuchDevice {
                    device: device.short(),
                })
            }
        };
        if self.my_user().as_ref() != Some(&owner) {
            self.require_admin("rename another user's device")?;
        }
        if state.team.device_names.get(&device) == Some(&name) {
            return Err(ReplicaError::Refused(format!(
                "device {} is named {name:?} already",
                device.short()
            )));
        }
        self.roster_write(vec![RosterOp::NameDevice { device, name }], rng)
    }

    /// `coffer team show`.
    pub fn team(&self) -> Result<TeamSummary, ReplicaError> {
        let roster = self.roster.as_ref().ok_or(ReplicaError::NoTeam)?;
        let t = &roster.state().team;
        let me = self.my_user();
        Ok(TeamSummary {
            id: roster.id(),
            name: t.name.clone(),
            founder: t.founder.clone(),
            admins: t.admins.keys().cloned().collect(),
            users: t.users.len(),
            groups: t.groups.keys().cloned().collect(),
            devices: t.devices.keys().filter(|d| live(roster.state(), d)).count(),
            admin: me.as_ref().is_some_and(|u| t.admins.contains_key(u)),
            me,
        })
    }

    /// Signs `ops` in order as roster envelopes of this device; refuses
    /// (publishing nothing) if any would not take effect. Then feeds them
    /// to the team's folders and does the key upkeep they call for.
    pub fn roster_write(
        &mut self,
        ops: Vec<RosterOp>,
        rng: &mut impl CryptoRngCore,
    ) -> Result<TeamChange, ReplicaError> {
        let keys = self.keys()?.clone();
        let roster = self.roster.as_mut().ok_or(ReplicaError::NoTeam)?;
        let backup = roster.clone();
        let mut envs: Vec<Envelope> = Vec::with_capacity(ops.len());
        for op in ops {
            match roster.roster_op(&keys, op) {
                Ok(env) => envs.push(env),
                Err(e) => {
                    *roster = backup;
                    return Err(e.into());
                }
            }
        }
        let id = roster.id();
        self.persist(id, envs.clone());
        self.spread_roster(&envs);
        self.emit(Event::TeamChanged);
        let rotated = self.upkeep_keys(true, rng);
        self.update_allowed();
        Ok(TeamChange { rotated })
    }

    /// Per held space of the team (roster included), what this device
    /// holds: the cutoffs a roster removal records.
    pub(super) fn team_cutoffs(&self) -> Cutoffs {
        let mut out = Cutoffs::new();
        let Some(roster) = &self.roster else {
            return out;
        };
        out.insert(roster.id(), roster.cutoff());
        for (id, s) in &self.folders {
            if s.team() == Some(roster.id()) {
                out.insert(*id, s.cutoff());
            }
        }
        out
    }

    pub(super) fn known_user(&self, email: &str) -> Result<UserId, ReplicaError> {
        let user = user_id(email)?;
        if !self.require_team()?.team.users.contains(&user) {
            return Err(ReplicaError::NoSuchUser { user });
        }
        Ok(user)
    }

    /// `coffer user ls`.
    pub fn users(&self) -> Result<Vec<UserSummary>, ReplicaError> {
        let state = self.require_team()?;
        let t = &state.team;
        let me = self.my_user();
        Ok(t.users
            .iter()
            .map(|u| UserSummary {
                user: u.clone(),
                name: t.user_names.get(u).cloned(),
                joined_ms: t.joined_ms.get(u).copied(),
                admin: t.admins.contains_key(u),
                founder: t.founder.as_ref() == Some(u),
                groups: t
                    .groups
                    .iter()
                    .filter(|(_, m)| m.contains(u))
                    .map(|(g, _)| g.clone())
                    .collect(),
                devices: state.live_devices_of(u).copied().collect(),
                me: me.as_ref() == Some(u),
            })
            .collect())
    }

    /// `coffer user remove USER`: their devices stop syncing; the keys of
    /// the folders they could read rotate.
    pub fn remove_user(
        &mut self,
        email: &str,
        rng: &mut impl CryptoRngCore,
    ) -> Result<TeamChange, ReplicaError> {
        let user = self.known_user(email)?;
        if !self.am_admin() && self.my_user().as_ref() != Some(&user) {
            return Err(ReplicaError::NotAdmin {
                action: "remove a user",
            });
        }
        let cutoffs = self.team_cutoffs();
        self.roster_write(vec![RosterOp::RemoveUser { user, cutoffs }], rng)
    }

    /// `coffer user promote|demote USER`: makes a user a team admin, or
    /// no longer one. Only an admin promotes; an admin demotes an admin
    /// they outrank (or themselves), never the founder (the roster's rule).
    pub fn set_admin(
        &mut self,
        email: &str,
        admin: bool,
        rng: &mut impl CryptoRngCore,
    ) -> Result<TeamChange, ReplicaError> {
        self.check_standing()?;
        let user = self.known_user(email)?;
        let is_admin = self.require_team()?.team.admins.contains_key(&user);
        if admin {
            self.require_admin("make a user a team admin")?;
            if is_admin {
                return Err(ReplicaError::Refused(format!(
                    "{user} is already a team admin"
                )));
            }
            self.roster_write(vec![RosterOp::AddAdmin { user }], rng)
        } else {
            if !is_admin {
                return Err(ReplicaError::Refused(format!("{user} is not a team admin")));
            }
            if self.my_user().as_ref() != Some(&user) {
                self.require_admin("demote a team admin")?;
            }
            let cutoffs = self.team_cutoffs();
            self.roster_write(vec![RosterOp::RemoveAdmin { user, cutoffs }], rng)
        }
    }

    /// `coffer group create|add|remove`.
    pub fn group_change(
        &mut self,
        group: &str,
        change: GroupChange<'_>,
        rng: &mut impl CryptoRngCore,
    ) -> Result<TeamChange, ReplicaError> {
        let group = super::check_name(group, crate::ops::MAX_NAME)?;
        let exists = self.require_team()?.team.groups.contains_key(&group);
        let op = match change {
            GroupChange::Create => {
                self.require_admin("create groups")?;
                if exists {
                    return Err(ReplicaError::GroupExists { group });
                }
                if self.require_team()?.team.deleted_groups.contains(&group) {
                    return Err(ReplicaError::GroupDeleted { group });
                }
                RosterOp::CreateGroup { group }
            }
            GroupChange::Delete => {
                self.check_standing()?;
                self.require_admin("delete groups")?;
                if !exists {
                    return Err(ReplicaError::NoSuchGroup { group });
                }
                RosterOp::DeleteGroup {
                    group,
                    cutoffs: self.team_cutoffs(),
                }
            }
            GroupChange::Add(email) | GroupChange::Remove(email) => {
                let user = self.known_user(email)?;
                if !exists {
                    return Err(ReplicaError::NoSuchGroup { group });
                }
                if matches!(change, GroupChange::Add(_)) {
                    self.require_admin("change group members")?;
                    RosterOp::AddToGroup { group, user }
                } else {
                    if self.my_user().as_ref() != Some(&user) {
                        self.require_admin("change group members")?;
                    }
                    RosterOp::RemoveFromGroup {
                        group,
                        user,
                        cutoffs: self.team_cutoffs(),
                    }
                }
            }
        };
        self.roster_write(vec![op], rng)
    }

    /// `coffer group ls`: groups and their members.
    pub fn groups(&self) -> Result<Vec<(String, Vec<UserId>)>, ReplicaError> {
        Ok(self
            .require_team()?
            .team
            .groups
            .iter()
            .map(|(g, m)| (g.clone(), m.iter().cloned().collect()))
            .collect())
    }

    /// `coffer device ls`: (device, user, revoked) of the team, or this one.
    pub fn devices(&self) -> Vec<(DeviceId, UserId, bool)> {
        match self.team_state() {
            Some(t) => t
                .team
                .devices
                .iter()
                .map(|(d, r)| (*d, r.user.clone(), !live(t, d)))
                .collect(),
            None => vec![(
                self.identity.device,
                self.my_user()
                    .unwrap_or(UserId(self.identity.email.clone())),
                false,
            )],
        }
    }

    /// A device by id or id prefix (≥ 4 hex digits): of the team, or paired.
    pub fn resolve_device(&self, query: &str) -> Result<DeviceId, ReplicaError> {
        let q = query.trim().to_lowercase();
        let mut candidates: BTreeSet<DeviceId> = BTreeSet::new();
        if let Some(t) = self.team_state() {
            candidates.extend(t.team.devices.keys().copied());
        }
        candidates.extend(self.trusted.iter().map(|t| t.device));
        for s in self.folders.values() {
            candidates.extend(s.state().member_devices().into_keys());
        }
        let found: Vec<DeviceId> = if q.len() >= 4 && q.chars().all(|c| c.is_ascii_hexdigit()) {
            candidates
                .into_iter()
                .filter(|d| d.to_hex().starts_with(&q))
                .collect()
        } else {
            Vec::new()
        };
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(ReplicaError::NoSuchDevice {
                device: query.to_string(),
            }),
            many => Err(ReplicaError::Ambiguous {
                what: format!("device {query:?}"),
                candidates: many.iter().map(|d| d.short()).collect(),
            }),
        }
    }

    /// `coffer device revoke DEVICE`: a team device through the roster
    /// (one's own, or any as an admin); a paired device is untrusted and
    /// removed from every folder this device manages, whose keys rotate.
    pub fn revoke_device(
        &mut self,
        device: DeviceId,
        rng: &mut impl CryptoRngCore,
    ) -> Result<TeamChange, ReplicaError> {
        self.keys()?;
        if self
            .team_state()
            .is_some_and(|t| t.team.devices.contains_key(&device))
        {
            let cutoffs = self.team_cutoffs();
            return self.roster_write(vec![RosterOp::RevokeDevice { device, cutoffs }], rng);
        }
        let was_trusted = self.trusted.iter().any(|t| t.device == device);
        let principal = Principal::Device(device);
        let targets: Vec<SpaceId> = self
            .folders
            .iter()
            .filter(|(_, s)| s.state().folder.grants.contains_key(&principal))
            .map(|(id, _)| *id)
            .collect();
        if !was_trusted && targets.is_empty() {
            return Err(ReplicaError::NoSuchDevice {
                device: device.short(),
            });
        }
        let keys = self.keys()?.clone();
        let mut rotated = Vec::new();
        for id in targets {
            let Some(space) = self.folders.get_mut(&id) else {
                continue;
            };
            if !space.can_manage(&keys.device_id()) {
                continue;
            }
            let removal = space.remove(&keys, principal.clone(), None)?;
            let mut envs = vec![removal];
            if let Ok((env, key)) = space.rotate(&keys, rng) {
                if let Some(f) = self.unlocked.as_mut().and_then(|u| u.open.get_mut(&id)) {
                    f.keys.insert(env.id(), key);
                }
                envs.push(env);
                rotated.push(id);
            }
            self.persist(id, envs);
            self.emit(Event::FolderChanged { folder: id });
        }
        self.trusted.retain(|t| t.device != device);
        self.effects
            .push_back(super::Effect::Persist(Persist::Trusted(
                self.trusted.clone(),
            )));
        self.update_allowed();
        Ok(TeamChange { rotated })
    }

    /// `coffer device trust KEY [--share F]... [--role R]`: pairing outside
    /// a team (tests, single-user setups).
    pub fn trust_device(
        &mut self,
        trusted: Trusted,
        share: &[String],
        role: Role,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<SpaceId>, ReplicaError> {
        let keys = self.keys()?.clone();
        if self.team_id().is_some() {
            return Err(ReplicaError::Pairing(
                "this device is in a team: add your devices with `coffer device link`, people with `coffer invite`",
            ));
        }
        if trusted.device == self.identity.device {
            return Err(ReplicaError::Pairing(
                "that is this device's own pairing key",
            ));
        }
        let folders = share
            .iter()
            .map(|f| self.resolve_folder(Some(f)))
            .collect::<Result<Vec<_>, _>>()?;
        match self.trusted.iter_mut().find(|t| t.device == trusted.device) {
            Some(t) if t.exchange != trusted.exchange || t.transport != trusted.transport => {
                return Err(ReplicaError::Pairing(
                    "this device is already trusted with different keys",
                ))
            }
            Some(t) => {
                if trusted.name.is_some() {
                    t.name = trusted.name.clone();
                }
            }
            None => self.trusted.push(trusted.clone()),
        }
        let mut shared = Vec::new();
        for id in folders {
            let key = self.current_key(&id);
            let Some(space) = self.folders.get_mut(&id) else {
                continue;
            };
            if space.role_of(&trusted.device) == Some(role) {
                shared.push(id);
                continue;
            }
            let env = space.grant(
                &keys,
                Principal::Device(trusted.device),
                role,
                Some(trusted.exchange),
                key.as_ref(),
                rng,
            )?;
            self.persist(id, vec![env]);
            self.emit(Event::FolderChanged { folder: id });
            shared.push(id);
        }
        self.effects
            .push_back(super::Effect::Persist(Persist::Trusted(
                self.trusted.clone(),
            )));
        self.update_allowed();
        Ok(shared)
    }

    /// The paired devices.
    pub fn trusted(&self) -> &[Trusted] {
        &self.trusted
    }

    /// `coffer folder share|role|unshare F (--user U | --group G) [--role R]`.
    /// A personal folder is bound to the team first (in place: same items
    /// and history), with a signed `BindTeam`.
    pub fn folder_share(
        &mut self,
        folder: &str,
        principal: Principal,
        change: ShareChange,
        rng: &mut impl CryptoRngCore,
    ) -> Result<TeamChange, ReplicaError> {
        let keys = self.keys()?.clone();
        let team = self.team_id().ok_or(ReplicaError::NoTeam)?;
        let state = self.require_team()?;
        match &principal {
            Principal::User(u) if !state.team.users.contains(u) => {
                return Err(ReplicaError::NoSuchUser { user: u.clone() })
            }
            Principal::Group(g) if !state.team.groups.contains_key(g) => {
                return Err(ReplicaError::NoSuchGroup { group: g.clone() })
            }
            _ => {}
        }
        let id = self.resolve_folder(Some(folder))?;
        let me = keys.device_id();
        let space = self.folders.get(&id).ok_or(ReplicaError::NoSuchFolder {
            query: folder.into(),
        })?;
        if !space.can_manage(&me) {
            return Err(ReplicaError::NotAllowed {
                role: space.role_of(&me),
                needs: Needs::Manager,
            });
        }
        let current = space.state().folder.grants.get(&principal).map(|g| g.role);
        match (change, current) {
            (ShareChange::Unshare, None) | (ShareChange::Role(_), None) => {
                return Err(ReplicaError::NotAMember {
                    principal: principal_name(&principal),
                })
            }
            _ => {}
        }
        match space.team() {
            Some(t) if t == team => {}
            Some(_) => return Err(ReplicaError::OtherTeam { folder: id }),
            None => {
                let state = self.require_team()?;
                let outsiders = space.state().folder.grants.keys().any(|p| match p {
                    Principal::Device(d) => *d != me && !live(state, d),
                    _ => false,
                });
                if outsiders {
                    return Err(ReplicaError::PairedOutsideTeam);
                }
                self.bind_to_team(id, team)?;
            }
        }
        let key = self.current_key(&id);
        let space = self.folders.get_mut(&id).expect("resolved above");
        let env = match (change, current) {
            (ShareChange::Unshare, _) => space.remove(&keys, principal, None)?,
            (ShareChange::Share(new) | ShareChange::Role(new), Some(old))
                if new.strength() < old.strength() =>
            {
                space.remove(&keys, principal, Some(new))?
            }
            (ShareChange::Share(new) | ShareChange::Role(new), _) => {
                space.grant(&keys, principal, new, None, key.as_ref(), rng)?
            }
        };
        self.persist(id, vec![env]);
        let rotated = self.upkeep_keys(true, rng);
        self.update_allowed();
        self.emit(Event::FolderChanged { folder: id });
        Ok(TeamChange { rotated })
    }

    /// Binds a personal folder to `team` in place: the roster's envelopes
    /// join its space and a signed `BindTeam` records it.
    fn bind_to_team(&mut self, id: SpaceId, team: SpaceId) -> Result<(), ReplicaError> {
        let keys = self.keys()?.clone();
        let roster_envs: Vec<Envelope> = self
            .roster
            .as_ref()
            .map(|r| r.held().cloned().collect())
            .unwrap_or_default();
        let old = self
            .folders
            .get(&id)
            .ok_or(ReplicaError::NoSuchFolder { query: id.short() })?;
        let mut space = Space::new_in_team(id, Some(team));
        if let Some(j) = self.roster.as_ref().and_then(Space::roster_judgements) {
            space.share_roster_judgements(&j);
        }
        let mut envs: Vec<Envelope> = old.held().cloned().collect();
        envs.extend(roster_envs);
        space.ingest_batch(envs);
        let bind = ControlOp::Membership(MembershipOp::BindTeam { team });
        let env = space.propose(&keys, &bind)?;
        self.folders.insert(id, space);
        self.persist(id, vec![env]);
        Ok(())
    }

    /// `coffer folder members F`.
    pub fn folder_members(&self, folder: &str) -> Result<FolderMembers, ReplicaError> {
        let id = self.resolve_folder(Some(folder))?;
        let space = self.folders.get(&id).ok_or(ReplicaError::NoSuchFolder {
            query: folder.into(),
        })?;
        let state = space.state();
        let members = state
            .folder
            .grants
            .iter()
            .map(|(p, g)| MemberEntry {
                principal: p.clone(),
                role: g.role,
            })
            .collect();
        let wrapped: BTreeSet<DeviceId> = state
            .folder
            .current_epoch
            .and_then(|e| state.folder.epochs.get(&e))
            .map(|e| e.wraps.keys().copied().collect())
            .unwrap_or_default();
        let devices = state
            .member_devices()
            .into_keys()
            .filter_map(|d| {
                Some(MemberDevice {
                    device: d,
                    user: state.user_of(&d).cloned(),
                    role: space.role_of(&d)?,
                    has_key: wrapped.contains(&d),
                })
            })
            .collect();
        Ok(FolderMembers {
            folder: id,
            name: self.folder_name(&id),
            team: space.team(),
            members,
            devices,
            epochs: state.folder.epochs.len(),
        })
    }

    /// Who may open an enrolment: unlocked, in a team; an admin to invite
    /// a user (a device link is the user's own).
    pub fn check_inviter(&self, user_invite: bool) -> Result<(), ReplicaError> {
        self.keys()?;
        self.require_team()?;
        if user_invite && !self.am_admin() {
            return Err(ReplicaError::NotAdmin {
                action: "invite people",
            });
        }
        Ok(())
    }

    /// An invite's details, judged before its code is made: the email,
    /// the invitee's name and the group names, by the rules every name of
    /// the roster keeps (not empty, not too long, no control character).
    pub fn check_invite(
        &self,
        email: &str,
        name: &str,
        groups: &[String],
    ) -> Result<(), ReplicaError> {
        user_id(email)?;
        super::check_name(name, crate::ops::MAX_NAME)?;
        for g in groups {
            let g = super::check_name(g, crate::ops::MAX_NAME)?;
            if self
                .team_state()
                .is_some_and(|t| t.team.deleted_groups.contains(&g))
            {
                return Err(ReplicaError::GroupDeleted { group: g });
            }
        }
        Ok(())
    }

    /// Admits a confirmed joiner: the user (if new, for an invite), its
    /// device, its groups and admin role, in one roster write. Re-admitting
    /// a device already enrolled the same way writes nothing (a joiner that
    /// dropped before it heard the answer tries again).
    /// A new user's display name and the time (`named`) go into the
    /// roster with them; the joiner's device name with the device.
    pub fn admit(
        &mut self,
        user: Option<&str>,
        joiner: &Joiner,
        groups: &[String],
        admin: bool,
        named: Option<(&str, i64)>,
        rng: &mut impl CryptoRngCore,
    ) -> Result<TeamChange, ReplicaError> {
        let state = self.require_team()?;
        let user = match user {
            Some(email) => user_id(email)?,
            None => self.my_user().ok_or(ReplicaError::NoTeam)?,
        };
        match state.team.devices.get(&joiner.device) {
            Some(rec)
                if rec.user == user
                    && rec.exchange == joiner.exchange
                    && rec.transport == joiner.transport
                    && live(state, &joiner.device) =>
            {
                return Ok(TeamChange::default())
            }
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
            None => {}
        }
        let mut ops = Vec::new();
        if !state.team.users.contains(&user) {
            ops.push(RosterOp::AddUser { user: user.clone() });
            if let Some((person, joined_ms)) = named {
                if let Ok(name) = super::check_name(person, crate::ops::MAX_NAME) {
                    ops.push(RosterOp::NameUser {
                        user: user.clone(),
                        name,
                        joined_ms,
                    });
                }
            }
        }
        ops.push(RosterOp::AddDevice {
            user: user.clone(),
            device: joiner.device,
            exchange: joiner.exchange,
            transport: joiner.transport,
            proof: joiner.proof.clone(),
            transport_proof: joiner.transport_proof.clone(),
        });
        // A name from a peer: kept only if it keeps the rule (never fails the join).
        if let Some(name) = joiner
            .name
            .as_deref()
            .and_then(|n| super::check_name(n, crate::ops::MAX_DEVICE_NAME).ok())
        {
            ops.push(RosterOp::NameDevice {
                device: joiner.device,
                name,
            });
        }
        for group in groups {
            let group = group.trim().to_string();
            if !state
                .team
                .groups
                .get(&group)
                .is_some_and(|m| m.contains(&user))
            {
                ops.push(RosterOp::AddToGroup {
                    group,
                    user: user.clone(),
                });
            }
        }
        let own_device = Some(&user) == self.my_user().as_ref();
        if admin && !state.team.admins.contains_key(&user) {
            ops.push(RosterOp::AddAdmin { user });
        }
        let change = self.roster_write(ops, rng)?;
        if own_device {
            // A device of this user: it gets the user's Personal folder
            // (the share wraps its key for the new device at once).
            self.share_personal(rng)?;
        }
        Ok(change)
    }

    /// The roster's envelopes, each author's chain in order: what an
    /// inviter sends the joiner it admitted.
    pub fn roster_envelopes(&self) -> Vec<Envelope> {
        let Some(roster) = &self.roster else {
            return Vec::new();
        };
        let mut envs: Vec<&Envelope> = roster.held().collect();
        envs.sort_by_key(|e| (e.author(), e.seq(), e.id()));
        envs.into_iter().cloned().collect()
    }

    /// Checks an inviter's roster before anything is written: it must be
    /// valid and list `device` as a live device. Returns the judged roster.
    pub fn check_roster(
        team: SpaceId,
        device: &DeviceId,
        roster: Vec<Envelope>,
    ) -> Result<Space, ReplicaError> {
        let mut space = Space::new_roster(team);
        let report = space.ingest_batch(roster);
        if report.outcomes.iter().any(Result::is_err) {
            return Err(ReplicaError::BadRoster("it holds an invalid envelope"));
        }
        if !space.state().is_live_team_device(device) {
            return Err(ReplicaError::BadRoster("it does not list this device"));
        }
        Ok(space)
    }

    /// Joins the team whose roster an inviter sent (see [`Replica::check_roster`]).
    pub fn adopt_team(&mut self, team: SpaceId, roster: Vec<Envelope>) -> Result<(), ReplicaError> {
        if let Some(current) = self.team_id() {
            if current != team {
                return Err(ReplicaError::AlreadyInTeam {
                    name: self.team()?.name,
                });
            }
            self.take_in(team, roster);
            return Ok(());
        }
        let space = Replica::check_roster(team, &self.identity.device, roster)?;
        let held: Vec<Envelope> = space.held().cloned().collect();
        self.roster = Some(space);
        self.effects
            .push_back(super::Effect::Persist(Persist::Envelopes {
                space: team,
                kind: SpaceKind::Roster,
                team: None,
                envelopes: held,
            }));
        self.update_allowed();
        self.emit(Event::TeamChanged);
        Ok(())
    }
}

/// What a share, role or unshare call does to a folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareChange {
    Share(Role),
    Role(Role),
    Unshare,
}

/// `coffer group` subcommands that change the roster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupChange<'a> {
    Create,
    /// `coffer group rm G`: members lose what the group gave them.
    Delete,
    Add(&'a str),
    Remove(&'a str),
}

/// How a principal is named to a person.
pub fn principal_name(p: &Principal) -> String {
    match p {
        Principal::User(u) => format!("user {u}"),
        Principal::Group(g) => format!("group {g:?}"),
        Principal::Device(d) => format!("device {}", d.short()),
    }
}
