//! Teams: the roster space (users, groups, devices, admins) and folders
//! shared with its users and groups, plus the key upkeep both need: handing
//! a folder key to new member devices (re-wrap) and starting a new key
//! epoch after someone lost access (rotate).
//!
//! A device belongs to at most one team. The roster's envelopes are stored
//! once (space = the team id) and also fed to every folder of the team,
//! since a folder's acceptance judges its ops against the roster.

use std::collections::{BTreeSet, HashSet};

use coffer_crdt::ops::Cutoffs;
use coffer_crdt::state::TeamState;
use coffer_crdt::{
    DeviceId, Envelope, EnvelopeId, Principal, Role, RosterOp, Space, SpaceError, SpaceId, UserId,
};
use coffer_ipc::methods as m;
use coffer_ipc::Event;
use rand_core::CryptoRngCore;
use tracing::{info, warn};

use super::sync::{ingest_counted, RemoteIngest};
use super::{load_space, Vault, VaultError};
use crate::store::SPACE_TEAM;

const NO_TEAM: &str =
    "this device is in no team: run `coffer team create NAME`, or `coffer join CODE`";

/// What a share, role or unshare call does to a folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareChange {
    Share,
    Role,
    Unshare,
}

pub(super) fn parse_role(role: &str) -> Result<Role, VaultError> {
    match role.trim().to_ascii_lowercase().as_str() {
        "manager" | "folder-manager" => Ok(Role::Manager),
        "editor" | "item-manager" => Ok(Role::Editor),
        "member" | "folder-member" => Ok(Role::Member),
        other => Err(VaultError::Invalid(format!(
            "unknown role {other:?} (manager, editor or member)"
        ))),
    }
}

pub(super) fn role_name(role: Role) -> &'static str {
    match role {
        Role::Manager => "manager",
        Role::Editor => "editor",
        Role::Member => "member",
    }
}

/// A refused control op as the user sees it.
fn refusal(e: SpaceError) -> VaultError {
    match e {
        SpaceError::Refused(why) => {
            let lower = why.to_lowercase();
            if lower.starts_with("only") || lower.contains("rank") || lower.contains("founding") {
                VaultError::PermissionDenied(why)
            } else if lower.starts_with("no such") || lower.contains("not in that group") {
                VaultError::NotFound(why)
            } else {
                VaultError::Invalid(why)
            }
        }
        SpaceError::PermissionDenied => VaultError::PermissionDenied(e.to_string()),
        other => VaultError::Internal(other.to_string()),
    }
}

fn user_id(email: &str) -> Result<UserId, VaultError> {
    UserId::new(email)
        .ok_or_else(|| VaultError::Invalid(format!("{email:?} is not an email address")))
}

/// Whether `d` is an enrolled device that was not revoked (nor its user removed).
fn live_device(team: &TeamState, d: &DeviceId) -> bool {
    team.devices
        .get(d)
        .is_some_and(|r| !r.revoked && team.users.contains(&r.user))
}

impl Vault {
    /// The team this device belongs to.
    pub fn team_id(&self) -> Option<SpaceId> {
        self.roster.as_ref().map(Space::id)
    }

    /// The roster as accepted so far.
    pub fn team_state(&self) -> Option<&TeamState> {
        self.roster.as_ref().map(|r| &r.state().team)
    }

    /// This device's user: its roster entry, else the email it was set up with.
    pub fn my_user(&self) -> Option<UserId> {
        let me = self.device_id()?;
        if let Some(rec) = self.team_state().and_then(|t| t.devices.get(&me)) {
            return Some(rec.user.clone());
        }
        UserId::new(&self.identity.as_ref()?.email)
    }

    fn am_admin(&self) -> bool {
        match (self.team_state(), self.my_user()) {
            (Some(t), Some(u)) => t.admins.contains_key(&u),
            _ => false,
        }
    }

    /// Whether `d` is a live device of this device's team.
    pub(super) fn live_team_device(&self, d: &DeviceId) -> bool {
        self.team_state().is_some_and(|t| live_device(t, d))
    }

    /// Whether the roster knows `d` but revoked it (or removed its user).
    pub(super) fn dead_team_device(&self, d: &DeviceId) -> bool {
        self.team_state()
            .is_some_and(|t| t.devices.contains_key(d) && !live_device(t, d))
    }

    /// The space `id` names: the roster or a folder.
    pub(super) fn space_ref(&self, id: &SpaceId) -> Option<&Space> {
        match &self.roster {
            Some(r) if r.id() == *id => Some(r),
            _ => self.spaces.get(id),
        }
    }

    /// `coffer team create NAME`: founds a team; this device's user is its
    /// founding admin and this device its first device.
    pub fn team_create(
        &mut self,
        name: &str,
        rng: &mut impl CryptoRngCore,
    ) -> Result<m::TeamInfo, VaultError> {
        let name = name.trim();
        if name.is_empty() || name.len() > coffer_crdt::ops::MAX_NAME {
            return Err(VaultError::Invalid("a team name is 1 to 256 bytes".into()));
        }
        if let Some(t) = self.team_state() {
            return Err(VaultError::Invalid(format!(
                "this device is already in team {:?}",
                t.name
            )));
        }
        let founder = self.my_user().ok_or(VaultError::NotInitialized)?;
        let u = self.unlocked()?;
        // The libp2p identity is still the device key (see `net::peer_id_of`).
        let transport = u.keys.device_id().0;
        let (roster, genesis) =
            Space::create_team(&u.keys, founder, name, transport, rng).map_err(refusal)?;
        self.store
            .add_space(roster.id(), SPACE_TEAM, None, &[&genesis])?;
        info!(team = %roster.id().short(), "team founded");
        self.roster = Some(roster);
        self.team_show()
    }

    /// `coffer team show`.
    pub fn team_show(&self) -> Result<m::TeamInfo, VaultError> {
        let roster = self
            .roster
            .as_ref()
            .ok_or_else(|| VaultError::NotFound(NO_TEAM.into()))?;
        let t = &roster.state().team;
        let me = self.my_user();
        Ok(m::TeamInfo {
            team_id: roster.id().to_hex(),
            name: t.name.clone(),
            founder: t.founder.as_ref().map(ToString::to_string),
            admins: t.admins.keys().map(ToString::to_string).collect(),
            users: t.users.len(),
            groups: t.groups.keys().cloned().collect(),
            devices: t.devices.keys().filter(|d| live_device(t, d)).count(),
            admin: me.as_ref().is_some_and(|u| t.admins.contains_key(u)),
            me: me.map(|u| u.to_string()),
        })
    }

    /// Signs `ops` in order as roster envelopes of this device, stores them
    /// in one transaction, feeds them to the team's folders and does the
    /// key upkeep they call for. Refuses (publishing nothing) if any op
    /// would not take effect.
    pub fn roster_write(
        &mut self,
        ops: Vec<RosterOp>,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(Vec<Envelope>, m::TeamChangeResult, Vec<Event>), VaultError> {
        self.unlocked()?;
        let (Some(u), Some(roster)) = (self.unlocked.as_ref(), self.roster.as_mut()) else {
            return Err(VaultError::NotFound(NO_TEAM.into()));
        };
        let mut envs = Vec::with_capacity(ops.len());
        for op in ops {
            match roster.roster_op(&u.keys, op) {
                Ok(env) => envs.push(env),
                Err(e) => {
                    self.reload_roster()?;
                    return Err(refusal(e));
                }
            }
        }
        if let Err(e) = self.store.append(&envs.iter().collect::<Vec<_>>()) {
            self.reload_roster()?;
            return Err(e.into());
        }
        let mut out = RemoteIngest::default();
        self.spread_roster(&envs, &mut out);
        let (change, events) = self.upkeep_keys(true, rng)?;
        out.events.extend(events);
        Ok((envs, change, out.events))
    }

    fn reload_roster(&mut self) -> Result<(), VaultError> {
        if let Some(team) = self.team_id() {
            self.roster = Some(load_space(&self.store, team, Some(team))?);
        }
        Ok(())
    }

    /// Every held roster envelope's wire bytes, each author's chain in order.
    pub fn roster_bytes(&self) -> Vec<Vec<u8>> {
        let Some(roster) = &self.roster else {
            return Vec::new();
        };
        let mut envs: Vec<&Envelope> = roster.held().collect();
        envs.sort_by_key(|e| (e.author(), e.seq(), e.id()));
        envs.into_iter().map(|e| e.bytes().to_vec()).collect()
    }

    /// Joins the team whose roster an inviter sent: keeps it if it lists
    /// this device as a live device, and stores it.
    pub fn adopt_team(
        &mut self,
        team: SpaceId,
        roster: Vec<Envelope>,
    ) -> Result<Vec<Event>, VaultError> {
        let me = self.device_id().ok_or(VaultError::NotInitialized)?;
        if let Some(current) = self.team_id() {
            if current != team {
                return Err(VaultError::Invalid(
                    "this device is already in another team".into(),
                ));
            }
            let out = self.ingest_roster_remote(roster)?;
            return Ok(out.events);
        }
        let mut space = Space::new_roster(team);
        let report = space.ingest_batch(roster);
        if report.outcomes.iter().any(Result::is_err) {
            return Err(VaultError::Invalid(
                "the team roster holds an invalid envelope".into(),
            ));
        }
        if !live_device(&space.state().team, &me) {
            return Err(VaultError::Invalid(
                "the team roster does not list this device".into(),
            ));
        }
        let held: Vec<&Envelope> = space.held().collect();
        self.store.add_space(team, SPACE_TEAM, None, &held)?;
        info!(team = %team.short(), "joined a team");
        self.roster = Some(space);
        Ok(Vec::new())
    }

    /// Takes in roster envelopes from a peer: judged, stored, fed to the
    /// team's folders; then re-wraps keys for new member devices.
    pub(super) fn ingest_roster_remote(
        &mut self,
        envelopes: Vec<Envelope>,
    ) -> Result<RemoteIngest, VaultError> {
        let mut out = RemoteIngest::default();
        let Some(roster) = self.roster.as_mut() else {
            out.not_shared = true;
            return Ok(out);
        };
        let fresh: Vec<Envelope> = ingest_counted(roster, envelopes, &mut out)
            .into_iter()
            .filter_map(|(id, _)| roster.get(&id).cloned())
            .collect();
        out.new = fresh.len();
        if fresh.is_empty() {
            return Ok(out);
        }
        out.membership_changed = true;
        if let Err(e) = self.store.append(&fresh.iter().collect::<Vec<_>>()) {
            warn!(error = %e, "storing synced roster envelopes failed; reloading the roster");
            self.reload_roster()?;
            return Err(e.into());
        }
        self.spread_roster(&fresh, &mut out);
        if self.unlocked.is_some() {
            let (_, events) = self.upkeep_keys(false, &mut rand::rngs::OsRng)?;
            out.events.extend(events);
        }
        Ok(out)
    }

    /// Feeds roster envelopes to every folder of the team and brings the
    /// open folder documents up to date.
    pub(super) fn spread_roster(&mut self, envs: &[Envelope], out: &mut RemoteIngest) {
        let Some(team) = self.team_id() else {
            return;
        };
        let targets: Vec<SpaceId> = self
            .spaces
            .iter()
            .filter(|(_, s)| s.team() == Some(team))
            .map(|(id, _)| *id)
            .collect();
        for sid in targets {
            let open = self
                .unlocked
                .as_ref()
                .is_some_and(|u| u.folders.contains_key(&sid));
            let Some(space) = self.spaces.get_mut(&sid) else {
                continue;
            };
            let before: HashSet<EnvelopeId> = if open {
                space.accepted_content().map(Envelope::id).collect()
            } else {
                HashSet::new()
            };
            // Counted by the roster's own ingest already.
            ingest_counted(space, envs.to_vec(), &mut RemoteIngest::default());
            let shrank = before.iter().any(|id| !space.is_accepted(id));
            self.apply_synced(sid, &before, shrank, out);
        }
    }

    /// Rotates the key of folders where a member with the key lost access
    /// (`rotate`: only when this device made the change, or manages the
    /// folder), and hands the current key to member devices that lack it
    /// (writers only). A re-wrap racing a removal of its author ends up
    /// quarantined on the other devices: harmless, the key it carried is
    /// re-wrapped by someone else.
    pub(super) fn upkeep_keys(
        &mut self,
        rotate: bool,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(m::TeamChangeResult, Vec<Event>), VaultError> {
        let mut change = m::TeamChangeResult::default();
        let mut events = Vec::new();
        let ids: Vec<SpaceId> = self.spaces.keys().copied().collect();
        for sid in ids {
            let name = self.folder_name(&sid);
            let Some(u) = self.unlocked.as_mut() else {
                break;
            };
            let Some(folder) = u.folders.get_mut(&sid) else {
                continue;
            };
            let Some(space) = self.spaces.get_mut(&sid) else {
                continue;
            };
            let me = u.keys.device_id();
            let rights = space.state().rights(&me);
            let mut envs = Vec::new();
            if space.rotation_due() && (rotate || rights.manager) && rights.writer {
                match space.rotate(&u.keys, rng) {
                    Ok((env, key)) => {
                        envs.push(env);
                        folder.key = key;
                        change.rotated.push(name.clone());
                    }
                    Err(e) => warn!(folder = %sid.short(), error = %e, "key rotation failed"),
                }
            } else if !space.rotation_due() && rights.writer {
                // Folder Members only use items: the writers hand out keys.
                match space.rewrap(&u.keys, rng) {
                    Ok(Some(env)) => {
                        envs.push(env);
                        change.rewrapped.push(name.clone());
                    }
                    Ok(None) => {}
                    Err(e) => warn!(folder = %sid.short(), error = %e, "re-wrap failed"),
                }
            }
            if envs.is_empty() {
                continue;
            }
            if let Err(e) = self.store.append(&envs.iter().collect::<Vec<_>>()) {
                self.reload_space(sid)?;
                return Err(e.into());
            }
            events.push(Event::FolderChanged {
                folder_id: sid.to_hex(),
            });
        }
        Ok((change, events))
    }

    /// Key upkeep after an unlock: roster and membership changes that
    /// arrived while locked could not re-wrap or rotate (no keys then).
    pub fn key_upkeep(&mut self, rng: &mut impl CryptoRngCore) -> Result<Vec<Event>, VaultError> {
        if self.unlocked.is_none() {
            return Ok(Vec::new());
        }
        let (_, events) = self.upkeep_keys(false, rng)?;
        Ok(events)
    }

    /// Per held space of the team (roster included), this device's view:
    /// the cutoffs a roster removal records.
    fn team_cutoffs(&self) -> Cutoffs {
        let mut out = Cutoffs::new();
        let Some(roster) = &self.roster else {
            return out;
        };
        out.insert(roster.id(), roster.cutoff());
        for (id, s) in &self.spaces {
            if s.team() == Some(roster.id()) {
                out.insert(*id, s.cutoff());
            }
        }
        out
    }

    /// `coffer user ls`.
    pub fn user_list(&self) -> Result<Vec<m::UserInfo>, VaultError> {
        let t = self
            .team_state()
            .ok_or_else(|| VaultError::NotFound(NO_TEAM.into()))?;
        let me = self.my_user();
        Ok(t.users
            .iter()
            .map(|u| m::UserInfo {
                email: u.to_string(),
                admin: t.admins.contains_key(u),
                founder: t.founder.as_ref() == Some(u),
                groups: t
                    .groups
                    .iter()
                    .filter(|(_, members)| members.contains(u))
                    .map(|(g, _)| g.clone())
                    .collect(),
                devices: t
                    .devices
                    .iter()
                    .filter(|(d, r)| &r.user == u && live_device(t, d))
                    .count(),
                me: me.as_ref() == Some(u),
            })
            .collect())
    }

    fn known_user(&self, email: &str) -> Result<UserId, VaultError> {
        let user = user_id(email)?;
        let t = self
            .team_state()
            .ok_or_else(|| VaultError::NotFound(NO_TEAM.into()))?;
        if !t.users.contains(&user) {
            return Err(VaultError::NotFound(format!(
                "no user {user} in the team (see `coffer user ls`)"
            )));
        }
        Ok(user)
    }

    /// `coffer user remove USER`: their devices stop syncing; the keys of
    /// the folders they could read rotate.
    pub fn user_remove(
        &mut self,
        email: &str,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(m::TeamChangeResult, Vec<Event>), VaultError> {
        let user = self.known_user(email)?;
        if !self.am_admin() && self.my_user().as_ref() != Some(&user) {
            return Err(VaultError::PermissionDenied(
                "only a team admin may remove a user".into(),
            ));
        }
        let cutoffs = self.team_cutoffs();
        let (_, change, events) =
            self.roster_write(vec![RosterOp::RemoveUser { user, cutoffs }], rng)?;
        Ok((change, events))
    }

    fn require_admin(&self, what: &str) -> Result<(), VaultError> {
        if self.team_state().is_none() {
            return Err(VaultError::NotFound(NO_TEAM.into()));
        }
        if !self.am_admin() {
            return Err(VaultError::PermissionDenied(format!(
                "only a team admin may {what}"
            )));
        }
        Ok(())
    }

    /// `coffer group create|add|remove`.
    pub fn group_change(
        &mut self,
        p: &m::GroupParams,
        action: GroupAction,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(m::TeamChangeResult, Vec<Event>), VaultError> {
        let group = p.group.trim().to_string();
        if group.is_empty() || group.len() > coffer_crdt::ops::MAX_NAME {
            return Err(VaultError::Invalid("a group name is 1 to 256 bytes".into()));
        }
        let exists = self
            .team_state()
            .is_some_and(|t| t.groups.contains_key(&group));
        let op = match action {
            GroupAction::Create => {
                self.require_admin("create groups")?;
                if exists {
                    return Err(VaultError::Invalid(format!(
                        "group {group:?} already exists"
                    )));
                }
                RosterOp::CreateGroup { group }
            }
            GroupAction::Add | GroupAction::Remove => {
                let email = p
                    .user
                    .as_deref()
                    .ok_or_else(|| VaultError::Invalid("which user?".into()))?;
                let user = self.known_user(email)?;
                if !exists {
                    return Err(VaultError::NotFound(format!(
                        "no group {group:?} (see `coffer group ls`)"
                    )));
                }
                if action == GroupAction::Add {
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
        let (_, change, events) = self.roster_write(vec![op], rng)?;
        Ok((change, events))
    }

    /// `coffer group ls`.
    pub fn group_list(&self) -> Result<Vec<m::GroupInfo>, VaultError> {
        let t = self
            .team_state()
            .ok_or_else(|| VaultError::NotFound(NO_TEAM.into()))?;
        Ok(t.groups
            .iter()
            .map(|(g, members)| m::GroupInfo {
                name: g.clone(),
                members: members.iter().map(ToString::to_string).collect(),
            })
            .collect())
    }

    /// `coffer device ls`: the team's devices (or just this one, outside a team).
    pub fn device_list(&self) -> Result<Vec<m::DeviceInfo>, VaultError> {
        let me = self.device_id().ok_or(VaultError::NotInitialized)?;
        let Some(t) = self.team_state() else {
            return Ok(vec![m::DeviceInfo {
                device_id: me.to_hex(),
                user: self
                    .identity
                    .as_ref()
                    .map(|i| i.email.clone())
                    .unwrap_or_default(),
                revoked: false,
                this_device: true,
            }]);
        };
        Ok(t.devices
            .iter()
            .map(|(d, r)| m::DeviceInfo {
                device_id: d.to_hex(),
                user: r.user.to_string(),
                revoked: !live_device(t, d),
                this_device: *d == me,
            })
            .collect())
    }

    /// Revokes a device of the roster (one's own, or any as an admin).
    pub(super) fn revoke_team_device(
        &mut self,
        device: DeviceId,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(m::TeamChangeResult, Vec<Event>), VaultError> {
        let cutoffs = self.team_cutoffs();
        let (_, change, events) =
            self.roster_write(vec![RosterOp::RevokeDevice { device, cutoffs }], rng)?;
        info!(device = %device.short(), "device revoked from the team");
        Ok((change, events))
    }

    /// Binds a folder to this device's team, keeping its envelopes (and so
    /// its items and history): a personal folder becomes shareable in place.
    fn bind_to_team(&mut self, sid: SpaceId) -> Result<(), VaultError> {
        let team = self
            .team_id()
            .ok_or_else(|| VaultError::NotFound(NO_TEAM.into()))?;
        self.store.set_space_team(sid, team)?;
        let mut space = load_space(&self.store, sid, Some(team))?;
        let u = self.unlocked.as_ref().ok_or(VaultError::Locked)?;
        let bind = coffer_crdt::ControlOp::Membership(coffer_crdt::MembershipOp::BindTeam { team });
        let env = space.propose(&u.keys, &bind).map_err(refusal)?;
        self.store.append(&[&env])?;
        self.spaces.insert(sid, space);
        info!(folder = %sid.short(), "folder joined the team");
        Ok(())
    }

    /// `coffer folder share|role|unshare F (--user U | --group G) [--role R]`.
    pub fn folder_share(
        &mut self,
        p: &m::FolderShareParams,
        change: ShareChange,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(m::FolderMembersResult, Vec<Event>), VaultError> {
        self.unlocked()?;
        let team = self
            .team_state()
            .ok_or_else(|| VaultError::NotFound(NO_TEAM.into()))?;
        let principal = match (p.user.as_deref(), p.group.as_deref()) {
            (Some(email), None) => Principal::User(self.known_user(email)?),
            (None, Some(g)) => {
                let g = g.trim();
                if !team.groups.contains_key(g) {
                    return Err(VaultError::NotFound(format!(
                        "no group {g:?} (see `coffer group ls`)"
                    )));
                }
                Principal::Group(g.to_string())
            }
            _ => {
                return Err(VaultError::Invalid(
                    "name exactly one of --user EMAIL or --group GROUP".into(),
                ))
            }
        };
        let role = match (change, p.role.as_deref()) {
            (ShareChange::Unshare, _) => None,
            (_, Some(r)) => Some(parse_role(r)?),
            (_, None) => {
                return Err(VaultError::Invalid(
                    "--role manager|editor|member is required".into(),
                ))
            }
        };
        let sid = self.resolve_folder(Some(&p.folder))?;
        let team_id = self
            .team_id()
            .ok_or_else(|| VaultError::NotFound(NO_TEAM.into()))?;
        let me = self.device_id().ok_or(VaultError::NotInitialized)?;
        let space = self
            .spaces
            .get(&sid)
            .ok_or_else(|| VaultError::Internal("folder space missing".into()))?;
        match space.team() {
            None => {
                // Checked before the folder is bound to the team (a write).
                if change != ShareChange::Share {
                    return Err(VaultError::NotFound(format!(
                        "{} is not a member of this folder",
                        principal_name(&principal)
                    )));
                }
                if !space.can_manage(&me) {
                    return Err(VaultError::PermissionDenied(
                        "changing a folder's members needs the Folder Manager role".into(),
                    ));
                }
                let outsiders = space.state().folder.grants.keys().any(|p| match p {
                    Principal::Device(d) => *d != me && !self.live_team_device(d),
                    _ => false,
                });
                if outsiders {
                    return Err(VaultError::Invalid(
                        "the folder is shared with a paired device outside the team: revoke it first (`coffer device revoke`)".into(),
                    ));
                }
                self.bind_to_team(sid)?
            }
            Some(t) if t == team_id => {}
            Some(_) => {
                return Err(VaultError::Invalid(
                    "the folder belongs to another team".into(),
                ))
            }
        }
        let u = self.unlocked.as_ref().ok_or(VaultError::Locked)?;
        let space = self
            .spaces
            .get_mut(&sid)
            .ok_or_else(|| VaultError::Internal("folder space missing".into()))?;
        if !space.can_manage(&u.keys.device_id()) {
            return Err(VaultError::PermissionDenied(
                "changing a folder's members needs the Folder Manager role".into(),
            ));
        }
        let current = space.state().folder.grants.get(&principal).map(|g| g.role);
        let key = u.folders.get(&sid).map(|f| &f.key);
        let env = match (change, role, current) {
            (ShareChange::Unshare, _, None) => {
                return Err(VaultError::NotFound(format!(
                    "{} is not a member of this folder",
                    principal_name(&principal)
                )))
            }
            (ShareChange::Unshare, _, Some(_)) => space.remove(&u.keys, principal, None),
            (ShareChange::Role, _, None) => {
                return Err(VaultError::NotFound(format!(
                    "{} is not a member of this folder (use `coffer folder share`)",
                    principal_name(&principal)
                )))
            }
            (_, Some(new), Some(old)) if new.strength() < old.strength() => {
                space.remove(&u.keys, principal, Some(new))
            }
            (_, Some(new), _) => space.grant(&u.keys, principal, new, None, key, rng),
            (_, None, _) => return Err(VaultError::Internal("role missing".into())),
        }
        .map_err(refusal)?;
        if let Err(e) = self.store.append(&[&env]) {
            self.reload_space(sid)?;
            return Err(e.into());
        }
        let (_, mut events) = self.upkeep_keys(true, rng)?;
        events.push(Event::FolderChanged {
            folder_id: sid.to_hex(),
        });
        Ok((self.members_of(sid)?, events))
    }

    /// `coffer folder members F`.
    pub fn folder_members(&self, folder: &str) -> Result<m::FolderMembersResult, VaultError> {
        let sid = self.resolve_folder(Some(folder))?;
        self.members_of(sid)
    }

    fn members_of(&self, sid: SpaceId) -> Result<m::FolderMembersResult, VaultError> {
        let space = self
            .spaces
            .get(&sid)
            .ok_or_else(|| VaultError::Internal("folder space missing".into()))?;
        let state = space.state();
        let members = state
            .folder
            .grants
            .iter()
            .map(|(p, g)| {
                let (kind, name) = match p {
                    Principal::User(u) => ("user", u.to_string()),
                    Principal::Group(g) => ("group", g.clone()),
                    Principal::Device(d) => ("device", d.to_hex()),
                };
                m::FolderMember {
                    kind: kind.into(),
                    name,
                    role: role_name(g.role).into(),
                }
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
                Some(m::FolderMemberDevice {
                    device_id: d.to_hex(),
                    user: state.user_of(&d).map(ToString::to_string),
                    role: role_name(space.role_of(&d)?).into(),
                    has_key: wrapped.contains(&d),
                })
            })
            .collect();
        Ok(m::FolderMembersResult {
            folder_id: sid.to_hex(),
            name: self.folder_name(&sid),
            team_id: space.team().map(|t| t.to_hex()),
            members,
            devices,
            epochs: state.folder.epochs.len(),
        })
    }
}

/// `coffer group` subcommands that change the roster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupAction {
    Create,
    Add,
    Remove,
}

fn principal_name(p: &Principal) -> String {
    match p {
        Principal::User(u) => format!("user {u}"),
        Principal::Group(g) => format!("group {g:?}"),
        Principal::Device(d) => format!("device {}", d.short()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rand::rngs::OsRng;
    use tempfile::TempDir;

    use super::*;
    use crate::keystore::{KdfParams, TEST_KDF};
    use crate::vault::sync::parse_pairing_key;
    use crate::vault::Now;

    const CHEAP: KdfParams = TEST_KDF;
    const NOW: Now = Now {
        unix_ms: 1_800_000_000_000,
    };

    struct Node {
        _dir: TempDir,
        vault: Vault,
    }

    fn node(email: &str) -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut vault = Vault::open(dir.path(), CHEAP).expect("open");
        vault
            .init(email, email, "1234", NOW, &mut OsRng)
            .expect("init");
        Node { _dir: dir, vault }
    }

    fn exchange_of(v: &Vault) -> (DeviceId, [u8; 32]) {
        let (_, key) = v.pairing_key().expect("pairing key");
        parse_pairing_key(&key).expect("parses")
    }

    /// What enrolment does once the inviter confirmed: the inviter writes
    /// the roster ops, the joiner adopts the roster.
    fn enrol(admin: &mut Vault, joiner: &mut Vault, ops: Vec<RosterOp>) {
        admin.roster_write(ops, &mut OsRng).expect("admit");
        let roster = admin
            .roster_bytes()
            .iter()
            .map(|b| Envelope::decode(b).expect("decodes"))
            .collect();
        joiner
            .adopt_team(admin.team_id().expect("team"), roster)
            .expect("adopt");
    }

    /// The `AddDevice` a joining vault's device signs for `email` in `team`.
    fn add_device(team: SpaceId, email: &str, joiner: &Vault) -> RosterOp {
        let keys = &joiner.unlocked.as_ref().expect("unlocked").keys;
        let user = UserId::new(email).expect("email");
        RosterOp::add_device(&team, user, keys, keys.device_id().0)
    }

    fn admit(admin: &mut Vault, joiner: &mut Vault, email: &str) {
        let user = UserId::new(email).expect("email");
        let team = admin.team_id().expect("team");
        let ops = vec![RosterOp::AddUser { user }, add_device(team, email, joiner)];
        enrol(admin, joiner, ops);
    }

    /// One round of the sync exchange in both directions, as sessions do it
    /// (everything the other lacks, roster first), until nothing moves.
    fn sync(a: &mut Vault, b: &mut Vault) {
        for _ in 0..4 {
            let moved = push(a, b) + push(b, a);
            if moved == 0 {
                return;
            }
        }
    }

    fn push(from: &mut Vault, to: &mut Vault) -> usize {
        let peer = to.device_id().expect("id");
        if !from.peer_allowed(&peer) || !to.peer_allowed(&from.device_id().expect("id")) {
            return 0;
        }
        let mut moved = 0;
        for space in from.shared_with(&peer) {
            let known: BTreeMap<_, _> = to
                .space_ref(&space)
                .map(|s| s.chain_tips())
                .unwrap_or_default();
            let envs: Vec<Envelope> = from
                .missing_for(&peer, &space, &known)
                .into_iter()
                .map(|(_, b)| Envelope::decode(&b).expect("decodes"))
                .collect();
            if envs.is_empty() {
                continue;
            }
            let r = to.ingest_remote(space, envs).expect("ingest");
            assert_eq!(r.invalid, 0);
            moved += r.new;
        }
        moved
    }

    fn add_login(v: &mut Vault, folder: &str, name: &str) -> Result<(), VaultError> {
        v.item_add(
            m::ItemAddParams {
                folder: Some(folder.into()),
                item_type: "login".into(),
                name: name.into(),
                fields: [("password".to_string(), format!("pw-{name}"))].into(),
                urls: Vec::new(),
            },
            NOW,
            &mut OsRng,
        )
        .map(|_| ())
    }

    fn names(v: &Vault, folder: &str) -> Vec<String> {
        let mut out: Vec<String> = v
            .item_list(&m::ItemListParams {
                folder: Some(folder.into()),
                ..Default::default()
            })
            .map(|l| l.into_iter().map(|i| i.name).collect())
            .unwrap_or_default();
        out.sort();
        out
    }

    fn share(v: &mut Vault, folder: &str, user: Option<&str>, group: Option<&str>, role: &str) {
        v.folder_share(
            &m::FolderShareParams {
                folder: folder.into(),
                user: user.map(Into::into),
                group: group.map(Into::into),
                role: Some(role.into()),
            },
            ShareChange::Share,
            &mut OsRng,
        )
        .expect("share");
    }

    #[test]
    fn team_folders_follow_users_groups_and_devices() {
        let mut a = node("a@example.com");
        let mut b = node("b@example.com");
        let mut c = node("c@example.com");
        let info = a.vault.team_create("Acme", &mut OsRng).expect("team");
        assert!(info.admin);
        admit(&mut a.vault, &mut b.vault, "b@example.com");
        admit(&mut a.vault, &mut c.vault, "c@example.com");
        let group = |g: &str, u: Option<&str>| m::GroupParams {
            group: g.into(),
            user: u.map(Into::into),
        };
        a.vault
            .group_change(&group("it", None), GroupAction::Create, &mut OsRng)
            .expect("create group");
        a.vault
            .group_change(
                &group("it", Some("c@example.com")),
                GroupAction::Add,
                &mut OsRng,
            )
            .expect("add to group");
        // Non-admins cannot change the roster.
        let denied = b
            .vault
            .group_change(&group("ops", None), GroupAction::Create, &mut OsRng);
        assert!(
            matches!(denied, Err(VaultError::PermissionDenied(_))),
            "{denied:?}"
        );

        a.vault
            .folder_create("Registrar", NOW, &mut OsRng)
            .expect("folder");
        add_login(&mut a.vault, "Registrar", "dns").expect("add");
        share(
            &mut a.vault,
            "Registrar",
            Some("b@example.com"),
            None,
            "editor",
        );
        share(&mut a.vault, "Registrar", None, Some("it"), "member");
        sync(&mut a.vault, &mut b.vault);
        sync(&mut a.vault, &mut c.vault);
        assert_eq!(names(&b.vault, "Registrar"), ["dns"]);
        assert_eq!(names(&c.vault, "Registrar"), ["dns"]);
        assert_eq!(c.vault.user_list().expect("users").len(), 3);

        // A member may not write; an editor may.
        let refused = add_login(&mut c.vault, "Registrar", "nope");
        assert!(
            matches!(refused, Err(VaultError::PermissionDenied(_))),
            "{refused:?}"
        );
        add_login(&mut b.vault, "Registrar", "mail").expect("editor writes");
        sync(&mut a.vault, &mut b.vault);
        assert_eq!(names(&a.vault, "Registrar"), ["dns", "mail"]);

        // B's second laptop: B adds it, B's daemon hands it the folder key.
        let mut b2 = node("b@example.com");
        let (d2, _) = exchange_of(&b2.vault);
        let op = add_device(b.vault.team_id().expect("team"), "b@example.com", &b2.vault);
        enrol(&mut b.vault, &mut b2.vault, vec![op]);
        sync(&mut b.vault, &mut b2.vault);
        assert_eq!(names(&b2.vault, "Registrar"), ["dns", "mail"]);
        sync(&mut a.vault, &mut b.vault);

        // C leaves the group: A rotates; C sees nothing written afterwards.
        let epochs = a.vault.folder_members("Registrar").expect("members").epochs;
        let (change, _) = a
            .vault
            .group_change(
                &group("it", Some("c@example.com")),
                GroupAction::Remove,
                &mut OsRng,
            )
            .expect("remove from group");
        assert_eq!(change.rotated, ["Registrar"]);
        assert_eq!(
            a.vault.folder_members("Registrar").expect("members").epochs,
            epochs + 1
        );
        add_login(&mut a.vault, "Registrar", "after-c").expect("add");
        sync(&mut a.vault, &mut c.vault);
        assert!(!names(&c.vault, "Registrar").contains(&"after-c".to_string()));

        // B2 is revoked: no longer a peer, and cannot read new content.
        a.vault
            .revoke_device(&d2.to_hex(), &mut OsRng)
            .expect("revoke");
        assert!(!a.vault.peer_allowed(&d2));
        sync(&mut a.vault, &mut b.vault);
        assert!(!b.vault.peer_allowed(&d2), "B learnt the revocation");
        add_login(&mut a.vault, "Registrar", "after-b2").expect("add");
        sync(&mut a.vault, &mut b.vault);
        sync(&mut b.vault, &mut b2.vault);
        assert!(names(&b.vault, "Registrar").contains(&"after-b2".to_string()));
        assert!(!names(&b2.vault, "Registrar").contains(&"after-b2".to_string()));
        assert_eq!(names(&a.vault, "Registrar"), names(&b.vault, "Registrar"));
    }

    /// A roster change that reaches the only writer while it is locked is
    /// acted on at its next unlock: the new device gets the folder key.
    #[test]
    fn keys_are_handed_out_after_an_unlock() {
        let mut a = node("a@example.com");
        let mut b = node("b@example.com");
        a.vault.team_create("Acme", &mut OsRng).expect("team");
        admit(&mut a.vault, &mut b.vault, "b@example.com");
        a.vault
            .folder_create("Vault", NOW, &mut OsRng)
            .expect("folder");
        add_login(&mut a.vault, "Vault", "wifi").expect("add");
        share(&mut a.vault, "Vault", Some("b@example.com"), None, "member");
        sync(&mut a.vault, &mut b.vault);
        assert_eq!(names(&b.vault, "Vault"), ["wifi"]);
        a.vault.lock();
        // B (a Folder Member: it hands out no keys) links a second laptop.
        let mut b2 = node("b@example.com");
        let op = add_device(b.vault.team_id().expect("team"), "b@example.com", &b2.vault);
        enrol(&mut b.vault, &mut b2.vault, vec![op]);
        sync(&mut a.vault, &mut b.vault);
        sync(&mut a.vault, &mut b2.vault);
        assert_eq!(names(&b2.vault, "Vault"), Vec::<String>::new());
        a.vault.unlock("1234", NOW).expect("unlock");
        let events = a.vault.key_upkeep(&mut OsRng).expect("upkeep");
        assert!(!events.is_empty());
        sync(&mut a.vault, &mut b2.vault);
        assert_eq!(names(&b2.vault, "Vault"), ["wifi"]);
    }

    #[test]
    fn a_personal_folder_becomes_shared_in_place() {
        let mut a = node("a@example.com");
        let mut b = node("b@example.com");
        add_login(&mut a.vault, "Personal", "early").expect("add");
        a.vault
            .folder_create("Before", NOW, &mut OsRng)
            .expect("folder");
        add_login(&mut a.vault, "Before", "kept").expect("add");
        a.vault.team_create("Acme", &mut OsRng).expect("team");
        admit(&mut a.vault, &mut b.vault, "b@example.com");
        share(
            &mut a.vault,
            "Before",
            Some("b@example.com"),
            None,
            "member",
        );
        // Survives a restart of A (the binding is stored).
        let dir = a._dir.path().to_path_buf();
        a.vault = Vault::open(&dir, CHEAP).expect("reopen");
        a.vault.unlock("1234", NOW).expect("unlock");
        assert_eq!(names(&a.vault, "Before"), ["kept"]);
        sync(&mut a.vault, &mut b.vault);
        assert_eq!(names(&b.vault, "Before"), ["kept"]);
        let members = b.vault.folder_members("Before").expect("members");
        assert_eq!(members.team_id, a.vault.team_id().map(|t| t.to_hex()));
        // The unshared Personal folder never leaves A.
        assert!(b.vault.folder_members("Personal").expect("own").name == "Personal");
        assert_eq!(names(&b.vault, "Personal"), Vec::<String>::new());
    }
}
