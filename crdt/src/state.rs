//! The membership state that control ops build, and the rule each op must
//! pass to take effect ([`State::apply`]). The acceptance engine
//! ([`crate::accept`]) feeds ops to it in a deterministic order.
//!
//! Ranks (lower is stronger): the team's founding admin is
//! [`FOUNDER_RANK`]; an admin appointed by rank `r` gets `r + 1`; a folder's
//! creating device is [`FOLDER_CREATOR_RANK`]; a Folder Manager granted by
//! rank `r` gets `max(r + 1, FOLDER_CREATOR_RANK + 1)`. Removing or demoting
//! someone needs a rank strictly stronger than theirs (Matrix's power
//! levels), so two equals can never remove each other; removing oneself is
//! always allowed; the founder can only hand over.
//!
//! The maps are persistent (`imbl`): a state is cloned for every op judged
//! in its own context, and a clone shares everything it does not change.

use std::collections::{BTreeMap, BTreeSet};

use imbl::{OrdMap, OrdSet};
use serde::Serialize;

use crate::crypto;
use crate::ids::{DeviceId, EnvelopeId, SpaceId};
use crate::ops::{
    device_proof_message, transport_proof_message, ChainLink, ControlOp, KeyWrap, MembershipOp,
    Principal, Role, RosterOp, UserId, MAX_DEVICE_NAME, MAX_NAME,
};
use crate::space::space_id_for;

/// Rank of the team's founding admin.
pub const FOUNDER_RANK: u32 = 0;
/// Rank of a folder's creating device.
pub const FOLDER_CREATOR_RANK: u32 = 1000;
/// Rank of a grant that cannot manage.
pub const NO_RANK: u32 = u32::MAX;
/// Live devices a user may add to itself; more need a team admin.
pub const MAX_SELF_ADDED_DEVICES: usize = 4;
/// Live devices one user may have at all.
pub const MAX_DEVICES_PER_USER: usize = 16;

/// Devices with the X25519 public key to wrap a folder key for.
pub type Recipients = Vec<(DeviceId, [u8; 32])>;

/// A device of the team roster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeviceRecord {
    pub user: UserId,
    /// Its X25519 key: folder keys are sealed to it.
    pub exchange: [u8; 32],
    /// Its Ed25519 transport key: its libp2p identity.
    pub transport: [u8; 32],
    pub revoked: bool,
}

/// The team roster as built so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TeamState {
    pub founded: bool,
    pub name: String,
    pub founder: Option<UserId>,
    /// Admins and their rank.
    pub admins: OrdMap<UserId, u32>,
    pub users: OrdSet<UserId>,
    pub devices: OrdMap<DeviceId, DeviceRecord>,
    /// `devices` by user (revoked ones included): a device is enrolled once
    /// and never changes user, so this index only grows with `devices`.
    /// Without it, finding a user's devices scanned every device of the
    /// team, on every `AddDevice` of every fold of the roster.
    #[serde(skip)]
    devices_by_user: OrdMap<UserId, OrdSet<DeviceId>>,
    pub groups: OrdMap<String, OrdSet<UserId>>,
    /// Deleted groups: their names are not used again.
    pub deleted_groups: OrdSet<String>,
    /// Device names ([`RosterOp::NameDevice`]).
    pub device_names: OrdMap<DeviceId, String>,
    /// Users' display names ([`RosterOp::NameUser`]).
    pub user_names: OrdMap<UserId, String>,
    /// When each user joined (the first [`RosterOp::NameUser`] since they
    /// were added), by the writer's clock.
    pub joined_ms: OrdMap<UserId, i64>,
    /// The team's keyless relays ([`RosterOp::AddRelay`]), by device id
    /// (the relay's transport key), with the addresses to dial them at.
    pub relays: OrdMap<DeviceId, Vec<String>>,
    /// Relays removed ([`RosterOp::RemoveRelay`]) and not added again:
    /// devices send them the op that removed them, nothing else.
    pub removed_relays: OrdSet<DeviceId>,
}

impl TeamState {
    /// A device joins the team, bound to its user for good.
    fn enrol(&mut self, device: DeviceId, record: DeviceRecord) {
        self.devices_by_user
            .entry(record.user.clone())
            .or_default()
            .insert(device);
        self.devices.insert(device, record);
    }
}

/// One folder grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Grant {
    pub role: Role,
    /// Manager rank ([`NO_RANK`] for the other roles).
    pub rank: u32,
}

/// One key epoch of a folder, named by the op that started it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Epoch {
    /// 0 for the founding epoch, then in acceptance order.
    pub number: u32,
    pub wraps: OrdMap<DeviceId, Vec<u8>>,
    pub chain: Vec<ChainLink>,
}

/// The folder's membership as built so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FolderState {
    pub genesis: Option<EnvelopeId>,
    pub grants: OrdMap<Principal, Grant>,
    /// X25519 keys of device principals that no roster describes.
    pub exchange: OrdMap<DeviceId, [u8; 32]>,
    pub epochs: OrdMap<EnvelopeId, Epoch>,
    pub current_epoch: Option<EnvelopeId>,
    /// Each device's current incarnation here: how many times a removal
    /// took its membership. Its content must be written as this
    /// incarnation or a later one (`folder::actor_for(device, incarnation)`).
    pub incarnations: OrdMap<DeviceId, u32>,
    /// The team roster the folder belongs to (its founding op, or a
    /// `BindTeam`): only that roster's users and groups may be granted.
    pub team: Option<SpaceId>,
    /// The [`MembershipOp::Delete`] that deleted the folder (the first in
    /// the control order), if any. It stands unless a concurrent removal
    /// of its author voids it (`accept::Engine::covered`).
    pub deleted: Option<EnvelopeId>,
    /// Founded outside any team (`Found { team: None }`): a personal
    /// folder, even once bound to a team. Its `Delete` needs a direct
    /// device grant as Folder Manager (its owner's devices): team admin
    /// rights and user or group grants do not suffice.
    pub founded_outside_team: bool,
}

/// Roster and folder state together: what a space's control ops built.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct State {
    pub team: TeamState,
    pub folder: FolderState,
}

/// Where an op sits: the facts [`State::apply`] judges it with.
#[derive(Clone, Copy, Debug)]
pub struct OpInfo {
    pub id: EnvelopeId,
    pub author: DeviceId,
    pub seq: u64,
    /// The space the op's envelope belongs to.
    pub space: SpaceId,
    /// The space being evaluated (a folder, or the roster itself).
    pub home: SpaceId,
    pub team: Option<SpaceId>,
    /// Judge the op as its author did, in the state of its own context:
    /// key wraps are checked exactly, no-op and out-of-turn ops refused,
    /// device proofs verified. Off in the final linear pass, where a
    /// concurrent op may have changed the membership since (that is
    /// `rotation_due`'s business, not a reason to drop the op).
    pub strict: bool,
}

/// A device's rights in a state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rights {
    pub member: bool,
    pub writer: bool,
    /// May change folder membership (Folder Manager or team admin).
    pub manager: bool,
    pub admin: bool,
    /// Strongest rank (lower is stronger), [`NO_RANK`] if none.
    pub rank: u32,
}

/// What a removal took away, for strong removal (cutoffs) and voiding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemovalEffect {
    pub lost_members: BTreeSet<DeviceId>,
    pub lost_writers: BTreeSet<DeviceId>,
    /// Devices that lost manage or admin rights.
    pub lost_managers: BTreeSet<DeviceId>,
    /// Ranks of the affected devices just before the removal.
    pub target_ranks: BTreeMap<DeviceId, u32>,
    pub author_rank: u32,
}

impl RemovalEffect {
    /// Whether the removal took any right from `d`.
    pub fn targets(&self, d: &DeviceId) -> bool {
        self.lost_members.contains(d)
            || self.lost_writers.contains(d)
            || self.lost_managers.contains(d)
    }
}

/// Why a control op did not take effect.
pub type Denial = String;

fn deny<T>(why: &str) -> Result<T, Denial> {
    Err(why.to_string())
}

/// The rule every name a roster op sets keeps: not empty, no leading or
/// trailing space, no control character (a newline or an escape breaks
/// tables and terminals), at most `max` bytes.
pub fn check_roster_name(name: &str, max: usize) -> Result<(), Denial> {
    if name.trim().is_empty() {
        return deny("a name may not be empty");
    }
    if name.trim() != name {
        return deny("a name may not start or end with a space");
    }
    if name.chars().any(char::is_control) {
        return deny("a name may not hold a control character");
    }
    if name.len() > max {
        return deny("the name is too long");
    }
    Ok(())
}

impl State {
    /// `Ok(Some(user))` for a live roster device, `Ok(None)` for a device the
    /// roster does not know, `Err` for a revoked device or a removed user's.
    fn device_user(&self, d: &DeviceId) -> Result<Option<&UserId>, ()> {
        match self.team.devices.get(d) {
            Some(rec) if rec.revoked || !self.team.users.contains(&rec.user) => Err(()),
            Some(rec) => Ok(Some(&rec.user)),
            None => Ok(None),
        }
    }

    /// Whether the roster revoked this device (or removed its user).
    pub fn is_dead(&self, d: &DeviceId) -> bool {
        self.device_user(d).is_err()
    }

    /// Whether `d` is an enrolled device that was not revoked (nor its user removed).
    pub fn is_live_team_device(&self, d: &DeviceId) -> bool {
        matches!(self.device_user(d), Ok(Some(_)))
    }

    /// The device's current incarnation in this folder (0 until a removal
    /// takes its membership).
    pub fn incarnation(&self, d: &DeviceId) -> u32 {
        self.folder.incarnations.get(d).copied().unwrap_or(0)
    }

    /// The user a device belongs to, if the roster names one.
    pub fn user_of(&self, d: &DeviceId) -> Option<&UserId> {
        self.team.devices.get(d).map(|r| &r.user)
    }

    /// The live devices of a user.
    pub fn live_devices_of<'a>(&'a self, u: &'a UserId) -> impl Iterator<Item = &'a DeviceId> + 'a {
        self.devices_of_user(u).map(|(d, _)| d)
    }

    /// The device's strongest folder grant (role and manager rank).
    pub fn folder_grant(&self, d: &DeviceId) -> Option<Grant> {
        let user = self.device_user(d).ok()?;
        let mut best: Option<Grant> = None;
        let mut consider = |g: Option<&Grant>| {
            if let Some(g) = g {
                best = Some(match best {
                    None => *g,
                    Some(b) => Grant {
                        role: if g.role.strength() > b.role.strength() {
                            g.role
                        } else {
                            b.role
                        },
                        rank: b.rank.min(g.rank),
                    },
                });
            }
        };
        consider(self.folder.grants.get(&Principal::Device(*d)));
        if let Some(u) = user {
            consider(self.folder.grants.get(&Principal::User(u.clone())));
            for (g, grant) in self.folder.grants.iter() {
                if let Principal::Group(name) = g {
                    if self.team.groups.get(name).is_some_and(|m| m.contains(u)) {
                        consider(Some(grant));
                    }
                }
            }
        }
        best
    }

    pub fn role_of(&self, d: &DeviceId) -> Option<Role> {
        self.folder_grant(d).map(|g| g.role)
    }

    fn admin_rank(&self, d: &DeviceId) -> Option<u32> {
        let user = self.device_user(d).ok()??;
        self.team.admins.get(user).copied()
    }

    pub fn rights(&self, d: &DeviceId) -> Rights {
        let grant = self.folder_grant(d);
        let admin = self.admin_rank(d);
        let folder_rank = grant
            .filter(|g| g.role.can_manage())
            .map_or(NO_RANK, |g| g.rank);
        Rights {
            member: grant.is_some(),
            writer: grant.is_some_and(|g| g.role.can_write_items()),
            manager: grant.is_some_and(|g| g.role.can_manage()) || admin.is_some(),
            admin: admin.is_some(),
            rank: folder_rank.min(admin.unwrap_or(NO_RANK)),
        }
    }

    fn devices_of_user<'a>(
        &'a self,
        u: &'a UserId,
    ) -> impl Iterator<Item = (&'a DeviceId, &'a DeviceRecord)> + 'a {
        let live = self.team.users.contains(u);
        self.team
            .devices_by_user
            .get(u)
            .filter(|_| live)
            .into_iter()
            .flatten()
            .filter_map(|d| Some((d, self.team.devices.get(d)?)))
            .filter(|(_, r)| !r.revoked)
    }

    /// Every device the folder's grants reach, with its X25519 key if known.
    pub fn member_devices(&self) -> BTreeMap<DeviceId, Option<[u8; 32]>> {
        let mut users: BTreeSet<&UserId> = BTreeSet::new();
        let mut out = BTreeMap::new();
        for p in self.folder.grants.keys() {
            match p {
                Principal::Device(d) => {
                    if !self.is_dead(d) {
                        let x = self
                            .folder
                            .exchange
                            .get(d)
                            .copied()
                            .or_else(|| self.team.devices.get(d).map(|r| r.exchange));
                        out.insert(*d, x);
                    }
                }
                Principal::User(u) => {
                    users.insert(u);
                }
                Principal::Group(g) => {
                    users.extend(self.team.groups.get(g).into_iter().flatten());
                }
            }
        }
        for u in users {
            for (d, r) in self.devices_of_user(u) {
                out.insert(*d, Some(r.exchange));
            }
        }
        out
    }

    /// A device that holds the current epoch key is no longer a member: the
    /// next content must come under a new epoch.
    pub fn rotation_due(&self) -> bool {
        let Some(epoch) = self
            .folder
            .current_epoch
            .and_then(|e| self.folder.epochs.get(&e))
        else {
            return false;
        };
        let members = self.member_devices();
        epoch.wraps.keys().any(|d| !members.contains_key(d))
    }

    /// Member devices with a known X25519 key but no wrap of the current epoch.
    pub fn missing_wraps(&self) -> Vec<(DeviceId, [u8; 32])> {
        let Some(epoch) = self
            .folder
            .current_epoch
            .and_then(|e| self.folder.epochs.get(&e))
        else {
            return Vec::new();
        };
        self.member_devices()
            .into_iter()
            .filter_map(|(d, x)| Some((d, x?)))
            .filter(|(d, _)| !epoch.wraps.contains_key(d))
            .collect()
    }

    /// A rotation a standing removal voided (its author lost the right
    /// before it, by the removal's cutoff): it changes nothing — not the
    /// current epoch — but its key remains an epoch, so what members wrote
    /// under it before they heard of the removal stays valid and readable
    /// (and the next rotation chains it). The removed author knew that key
    /// already; a member left, so a rotation is due anyway.
    pub fn keep_voided_epoch(&mut self, info: &OpInfo, op: &ControlOp) {
        let ControlOp::Membership(MembershipOp::Rotate { wraps, chain, .. }) = op else {
            return;
        };
        if self.folder.epochs.contains_key(&info.id)
            || chain
                .iter()
                .any(|l| !self.folder.epochs.contains_key(&l.epoch))
        {
            return;
        }
        let number = self.folder.epochs.len() as u32;
        self.folder.epochs.insert(
            info.id,
            Epoch {
                number,
                wraps: wraps.iter().map(|w| (w.device, w.sealed.clone())).collect(),
                chain: chain.clone(),
            },
        );
    }

    /// Earlier epochs a member device cannot reach — no wrap of its own,
    /// and no key chain to them from an epoch it holds (two concurrent
    /// rotations each chain the past, not each other) — with the devices
    /// that lack each. A member reads the folder's whole history.
    pub fn unreachable_epochs(&self) -> Vec<(EnvelopeId, Recipients)> {
        let epochs = &self.folder.epochs;
        let mut out: BTreeMap<EnvelopeId, Recipients> = BTreeMap::new();
        for (d, x) in self.member_devices() {
            let Some(x) = x else { continue };
            let mut reach: BTreeSet<EnvelopeId> = epochs
                .iter()
                .filter(|(_, e)| e.wraps.contains_key(&d))
                .map(|(id, _)| *id)
                .collect();
            if reach.is_empty() {
                // Not handed any key yet: the current epoch's re-wrap comes first.
                continue;
            }
            let mut todo: Vec<EnvelopeId> = reach.iter().copied().collect();
            while let Some(e) = todo.pop() {
                for link in epochs
                    .get(&e)
                    .map(|e| e.chain.as_slice())
                    .unwrap_or_default()
                {
                    if reach.insert(link.epoch) {
                        todo.push(link.epoch);
                    }
                }
            }
            for id in epochs.keys() {
                if !reach.contains(id) {
                    out.entry(*id).or_default().push((d, x));
                }
            }
        }
        out.into_iter().collect()
    }

    fn snapshot(&self) -> BTreeMap<DeviceId, Rights> {
        let mut devices: BTreeSet<DeviceId> = self.member_devices().into_keys().collect();
        for admin in self.team.admins.keys() {
            devices.extend(self.team.devices_by_user.get(admin).into_iter().flatten());
        }
        devices.into_iter().map(|d| (d, self.rights(&d))).collect()
    }

    fn any_manager(&self) -> bool {
        !self.team.admins.is_empty() || self.member_devices().keys().any(|d| self.rights(d).manager)
    }

    /// Applies one control op if its author may make it; on `Err` the state
    /// is unchanged. Removals report what they took away.
    pub fn apply(
        &mut self,
        info: &OpInfo,
        op: &ControlOp,
    ) -> Result<Option<RemovalEffect>, Denial> {
        let before = op.is_removal().then(|| self.snapshot());
        let author_rank = self.rights(&info.author).rank;
        // Cheap: the maps are persistent and share what the op leaves alone.
        let mut next = self.clone();
        match op {
            ControlOp::Roster(op) => {
                if Some(info.space) != info.team {
                    return deny("roster op outside the team roster");
                }
                next.apply_roster(info, op)?;
            }
            ControlOp::Membership(op) => {
                if info.space != info.home || Some(info.home) == info.team {
                    return deny("membership op outside its folder");
                }
                next.apply_membership(info, op)?;
            }
        }
        *self = next;
        Ok(before.map(|before| {
            let after = self.snapshot();
            let mut effect = RemovalEffect {
                author_rank,
                ..Default::default()
            };
            for (d, b) in before {
                let a = after.get(&d).copied().unwrap_or_default();
                let mut hit = false;
                if b.member && !a.member {
                    effect.lost_members.insert(d);
                    hit = true;
                }
                if b.writer && !a.writer {
                    effect.lost_writers.insert(d);
                    hit = true;
                }
                if (b.manager && !a.manager) || (b.admin && !a.admin) {
                    effect.lost_managers.insert(d);
                    hit = true;
                }
                if hit {
                    effect.target_ranks.insert(d, b.rank);
                }
            }
            for d in &effect.lost_members {
                *self.folder.incarnations.entry(*d).or_insert(0) += 1;
            }
            effect
        }))
    }

    /// A rotation's wraps must name exactly the member devices with a known
    /// X25519 key: no one left out, no one extra, no device twice.
    fn check_rotation_wraps(&self, wraps: &[KeyWrap]) -> Result<(), Denial> {
        let want: BTreeSet<DeviceId> = self
            .member_devices()
            .into_iter()
            .filter_map(|(d, x)| x.map(|_| d))
            .collect();
        let mut got = BTreeSet::new();
        for w in wraps {
            if !got.insert(w.device) {
                return deny("two key wraps for one device");
            }
        }
        if got.difference(&want).next().is_some() {
            return deny("a rotation wraps the key to a device that is not a member");
        }
        if want.difference(&got).next().is_some() {
            return deny("a rotation leaves a member device without the new key");
        }
        Ok(())
    }

    fn check_wraps(&self, wraps: &[KeyWrap]) -> Result<(), Denial> {
        let members = self.member_devices();
        let mut seen = BTreeSet::new();
        for w in wraps {
            if !members.contains_key(&w.device) {
                return deny("a key wrap names a device that is not a member");
            }
            if !seen.insert(w.device) {
                return deny("two key wraps for one device");
            }
        }
        Ok(())
    }

    fn add_wraps(&mut self, epoch: EnvelopeId, wraps: &[KeyWrap]) {
        if let Some(e) = self.folder.epochs.get_mut(&epoch) {
            for w in wraps {
                e.wraps.entry(w.device).or_insert_with(|| w.sealed.clone());
            }
        }
    }

    fn principal_devices_include(&self, p: &Principal, d: &DeviceId) -> bool {
        match p {
            Principal::Device(x) => x == d,
            Principal::User(u) => self.user_of(d) == Some(u),
            Principal::Group(_) => false,
        }
    }

    fn apply_membership(&mut self, info: &OpInfo, op: &MembershipOp) -> Result<(), Denial> {
        let author = info.author;
        if let MembershipOp::Found {
            wraps,
            exchange,
            team,
            ..
        } = op
        {
            if self.folder.genesis.is_some() {
                return deny("folder already created");
            }
            let bound = space_id_for(&author, &ControlOp::Membership(op.clone()));
            if info.seq != 1 || bound != info.home {
                return deny("the founding op does not match the folder id");
            }
            if self.is_dead(&author) {
                return deny("author device is revoked");
            }
            self.folder.genesis = Some(info.id);
            self.folder.team = *team;
            self.folder.founded_outside_team = team.is_none();
            self.folder.grants.insert(
                Principal::Device(author),
                Grant {
                    role: Role::Manager,
                    rank: FOLDER_CREATOR_RANK,
                },
            );
            self.folder.exchange.insert(author, *exchange);
            let wraps: OrdMap<DeviceId, Vec<u8>> = wraps
                .iter()
                .filter(|w| w.device == author)
                .map(|w| (w.device, w.sealed.clone()))
                .collect();
            self.folder.epochs.insert(
                info.id,
                Epoch {
                    number: 0,
                    wraps,
                    chain: Vec::new(),
                },
            );
            self.folder.current_epoch = Some(info.id);
            return Ok(());
        }
        if self.folder.genesis.is_none() {
            return deny("the folder's creation is not in this op's context");
        }
        let rights = self.rights(&author);
        match op {
            MembershipOp::Found { .. } => deny("folder already created"),
            MembershipOp::Grant {
                principal,
                role,
                exchange,
                epoch,
                wraps,
            } => {
                if !rights.manager {
                    return deny("only a Folder Manager or team admin may change membership");
                }
                let bound = self.folder.team.is_some() && self.folder.team == info.team;
                // In the final pass a roster removal concurrent with the
                // grant (roster ops never cite folder heads) may come first:
                // the grant then gives nothing, but the key wraps it carried
                // were handed out all the same, and `rotation_due` needs them.
                let gone = match principal {
                    Principal::User(u) => {
                        bound && self.team.founded && !self.team.users.contains(u)
                    }
                    Principal::Device(d) => self.is_dead(d),
                    Principal::Group(_) => false,
                };
                if gone && !info.strict {
                    if !wraps.is_empty() {
                        match epoch {
                            Some(e) if self.folder.epochs.contains_key(e) => {
                                self.add_wraps(*e, wraps)
                            }
                            _ => return deny("key wraps for an unknown epoch"),
                        }
                    }
                    return Ok(());
                }
                match principal {
                    Principal::User(_) | Principal::Group(_) if !bound => {
                        return deny("users and groups need the folder bound to their team")
                    }
                    Principal::User(u) if self.team.founded && !self.team.users.contains(u) => {
                        return deny("no such user in the team roster")
                    }
                    // A group deleted since (a concurrent `DeleteGroup`
                    // sorts first) keeps the grant, which reaches nobody:
                    // its key wraps stay on record, so the devices that
                    // got them count as holders and the key rotates.
                    Principal::Group(g)
                        if self.team.founded
                            && !self.team.groups.contains_key(g)
                            && !self.team.deleted_groups.contains(g) =>
                    {
                        return deny("no such group in the team roster")
                    }
                    Principal::User(_) | Principal::Group(_) if !self.team.founded => {
                        return deny("users and groups need a team roster")
                    }
                    Principal::Device(d) if self.is_dead(d) => {
                        return deny("the device is revoked")
                    }
                    _ => {}
                }
                let existing = self.folder.grants.get(principal).copied();
                if existing.is_some_and(|g| g.role.strength() > role.strength()) {
                    return deny("a demotion must be a Remove with a cutoff");
                }
                let rank = if role.can_manage() {
                    let granted = rights.rank.saturating_add(1).max(FOLDER_CREATOR_RANK + 1);
                    existing.map_or(granted, |g| g.rank.min(granted))
                } else {
                    NO_RANK
                };
                let grant = Grant { role: *role, rank };
                if info.strict && existing == Some(grant) && wraps.is_empty() {
                    return deny("the grant changes nothing");
                }
                if let (Principal::Device(d), Some(x)) = (principal, exchange) {
                    if self.folder.exchange.get(d).is_none() {
                        self.folder.exchange.insert(*d, *x);
                    }
                }
                self.folder.grants.insert(principal.clone(), grant);
                if info.strict {
                    self.check_wraps(wraps)?;
                }
                if !wraps.is_empty() {
                    match epoch {
                        Some(e) if self.folder.epochs.contains_key(e) => self.add_wraps(*e, wraps),
                        _ => return deny("key wraps for an unknown epoch"),
                    }
                }
                Ok(())
            }
            MembershipOp::Remove { principal, to, .. } => {
                let own = self.principal_devices_include(principal, &author);
                let existing = self.folder.grants.get(principal).copied();
                // In the final pass a concurrent op that came first may have
                // left nothing to take: a roster removal of the user (ordered
                // before the grant, which then gave nothing: roster ops never
                // cite folder heads) or another manager's removal or
                // demotion. The removal still takes effect, taking nothing
                // more: it was made, and its cutoff (the remover's view)
                // still bounds what its target wrote (chaos seeds 60306-7).
                let nothing_left = match (existing, to) {
                    (None, _) => true,
                    (Some(g), Some(role)) => role.strength() >= g.role.strength(),
                    (Some(_), None) => false,
                };
                if nothing_left && !info.strict {
                    if !own && !rights.manager {
                        return deny("only a Folder Manager or team admin may remove members");
                    }
                    return Ok(());
                }
                let Some(existing) = existing else {
                    return deny("the principal is not a member");
                };
                if !own {
                    if !rights.manager {
                        return deny("only a Folder Manager or team admin may remove members");
                    }
                    if existing.role.can_manage() && rights.rank >= existing.rank {
                        return deny("removing a Folder Manager needs a stronger rank than theirs");
                    }
                }
                match to {
                    None => {
                        self.folder.grants.remove(principal);
                    }
                    Some(role) if role.strength() < existing.role.strength() => {
                        self.folder.grants.insert(
                            principal.clone(),
                            Grant {
                                role: *role,
                                rank: NO_RANK,
                            },
                        );
                    }
                    Some(_) => return deny("a demotion must lower the role"),
                }
                if !self.any_manager() {
                    return deny("the folder would be left without a manager");
                }
                Ok(())
            }
            MembershipOp::Rotate { wraps, chain, .. } => {
                if !rights.writer {
                    return deny("only a Folder Manager or Item Manager may rotate the folder key");
                }
                if info.strict {
                    if !rights.manager && !self.rotation_due() {
                        return deny("an Item Manager rotates the key only when a member left");
                    }
                    self.check_rotation_wraps(wraps)?;
                }
                if chain
                    .iter()
                    .any(|l| !self.folder.epochs.contains_key(&l.epoch))
                {
                    return deny("the key chain names an unknown epoch");
                }
                let number = self.folder.epochs.len() as u32;
                self.folder.epochs.insert(
                    info.id,
                    Epoch {
                        number,
                        wraps: wraps.iter().map(|w| (w.device, w.sealed.clone())).collect(),
                        chain: chain.clone(),
                    },
                );
                self.folder.current_epoch = Some(info.id);
                Ok(())
            }
            MembershipOp::BindTeam { team } => {
                if !rights.manager {
                    return deny("only a Folder Manager may bind the folder to a team");
                }
                if self.folder.team.is_some() {
                    return deny("the folder already belongs to a team");
                }
                if Some(*team) != info.team {
                    return deny("the folder is judged against another team's roster");
                }
                self.folder.team = Some(*team);
                Ok(())
            }
            MembershipOp::Delete => {
                if !rights.manager {
                    return deny("only a Folder Manager or team admin may delete the folder");
                }
                let owner = self
                    .folder
                    .grants
                    .get(&Principal::Device(author))
                    .is_some_and(|g| g.role == Role::Manager);
                if self.folder.founded_outside_team && !owner {
                    return deny("a folder founded outside any team (a personal folder) is deleted only by its owner's devices (a direct Folder Manager grant)");
                }
                if self.folder.deleted.is_some() {
                    if info.strict {
                        return deny("the folder is deleted already");
                    }
                    return Ok(());
                }
                self.folder.deleted = Some(info.id);
                Ok(())
            }
            MembershipOp::Rewrap { epoch, wraps } => {
                if !rights.member {
                    return deny("only a member device may re-wrap the folder key");
                }
                let Some(e) = self.folder.epochs.get(epoch) else {
                    return deny("unknown epoch");
                };
                if info.strict {
                    if wraps.is_empty() || wraps.iter().any(|w| e.wraps.contains_key(&w.device)) {
                        return deny("a re-wrap must only hand the key to devices without it");
                    }
                    self.check_wraps(wraps)?;
                }
                self.add_wraps(*epoch, wraps);
                Ok(())
            }
        }
    }

    fn apply_roster(&mut self, info: &OpInfo, op: &RosterOp) -> Result<(), Denial> {
        let author = info.author;
        if let RosterOp::Found {
            name,
            founder,
            exchange,
            transport,
            ..
        } = op
        {
            if self.team.founded {
                return deny("team already founded");
            }
            let bound = space_id_for(&author, &ControlOp::Roster(op.clone()));
            if info.seq != 1 || bound != info.space {
                return deny("the founding op does not match the team id");
            }
            let t = &mut self.team;
            t.founded = true;
            t.name = name.clone();
            t.founder = Some(founder.clone());
            t.admins.insert(founder.clone(), FOUNDER_RANK);
            t.users.insert(founder.clone());
            t.enrol(
                author,
                DeviceRecord {
                    user: founder.clone(),
                    exchange: *exchange,
                    transport: *transport,
                    revoked: false,
                },
            );
            return Ok(());
        }
        if !self.team.founded {
            return deny("the team's founding is not in this op's context");
        }
        let Ok(Some(author_user)) = self.device_user(&author).map(|u| u.cloned()) else {
            return deny("author is not a live device of the team");
        };
        let admin = self.team.admins.get(&author_user).copied();
        let need_admin = || admin.ok_or_else(|| "only a team admin may do this".to_string());
        let founder = self.team.founder.clone();
        // Acting on `target` (an admin) needs a strictly stronger rank.
        let outranks = |t: &TeamState, target: &UserId, r: u32| -> Result<(), Denial> {
            if Some(target) == founder.as_ref() {
                return deny("the founding admin can only hand over");
            }
            match t.admins.get(target) {
                Some(&tr) if r >= tr => deny("removing an admin needs a stronger rank than theirs"),
                _ => Ok(()),
            }
        };
        match op {
            RosterOp::Found { .. } => deny("team already founded")?,
            RosterOp::AddUser { user } => {
                need_admin()?;
                if info.strict && self.team.users.contains(user) {
                    return deny("already a user of the team");
                }
                self.team.users.insert(user.clone());
            }
            RosterOp::RemoveUser { user, .. } => {
                if !self.team.users.contains(user) {
                    return deny("no such user");
                }
                if Some(user) == founder.as_ref() {
                    return deny("the founding admin can only hand over");
                }
                if *user != author_user {
                    outranks(&self.team, user, need_admin()?)?;
                }
                self.team.users.remove(user);
                self.team.admins.remove(user);
                self.team.joined_ms.remove(user);
                let groups: Vec<String> = self
                    .team
                    .groups
                    .iter()
                    .filter(|(_, m)| m.contains(user))
                    .map(|(g, _)| g.clone())
                    .collect();
                for g in groups {
                    if let Some(m) = self.team.groups.get_mut(&g) {
                        m.remove(user);
                    }
                }
                let devices: Vec<DeviceId> = self
                    .team
                    .devices
                    .iter()
                    .filter(|(_, r)| &r.user == user)
                    .map(|(d, _)| *d)
                    .collect();
                for d in devices {
                    if let Some(rec) = self.team.devices.get_mut(&d) {
                        rec.revoked = true;
                    }
                }
            }
            RosterOp::AddDevice {
                user,
                device,
                exchange,
                transport,
                proof,
                transport_proof,
            } => {
                let by_admin = admin.is_some();
                if *user != author_user {
                    need_admin()?;
                }
                if !self.team.users.contains(user) {
                    return deny("no such user");
                }
                if info.strict {
                    let message = device_proof_message(&info.space, user, exchange, transport);
                    let proof: Option<[u8; 64]> = proof.as_slice().try_into().ok();
                    if !proof.is_some_and(|p| crypto::verify(device, &message, &p)) {
                        return deny("the device did not prove it holds its keys");
                    }
                    let message = transport_proof_message(&info.space, user, device, exchange);
                    let proof: Option<[u8; 64]> = transport_proof.as_slice().try_into().ok();
                    if !proof.is_some_and(|p| crypto::verify(&DeviceId(*transport), &message, &p)) {
                        return deny("the transport key is not proven to be this device's");
                    }
                }
                match self.team.devices.get(device) {
                    Some(r) if r.revoked => return deny("a revoked device stays revoked"),
                    Some(r)
                        if &r.user != user
                            || &r.exchange != exchange
                            || &r.transport != transport =>
                    {
                        return deny("the device is already enrolled differently")
                    }
                    Some(_) if info.strict => return deny("the device is already enrolled"),
                    Some(_) => {}
                    None => {
                        let live = self.devices_of_user(user).count();
                        if live >= MAX_DEVICES_PER_USER {
                            return deny("the user has the most devices allowed");
                        }
                        if !by_admin && live >= MAX_SELF_ADDED_DEVICES {
                            return deny("more devices for this user need a team admin");
                        }
                        self.team.enrol(
                            *device,
                            DeviceRecord {
                                user: user.clone(),
                                exchange: *exchange,
                                transport: *transport,
                                revoked: false,
                            },
                        );
                    }
                }
            }
            RosterOp::RevokeDevice { device, .. } => {
                let Some(rec) = self.team.devices.get(device).cloned() else {
                    return deny("no such device");
                };
                if rec.revoked {
                    return deny("already revoked");
                }
                if rec.user != author_user {
                    let r = need_admin()?;
                    if Some(&rec.user) == founder.as_ref() {
                        return deny("only the founding admin may revoke the founder's devices");
                    }
                    outranks(&self.team, &rec.user, r)?;
                }
                if let Some(rec) = self.team.devices.get_mut(device) {
                    rec.revoked = true;
                }
            }
            RosterOp::AddAdmin { user } => {
                let r = need_admin()?;
                if !self.team.users.contains(user) {
                    return deny("no such user");
                }
                let rank = r.saturating_add(1).min(FOLDER_CREATOR_RANK - 1);
                let current = self.team.admins.get(user).copied();
                if info.strict && current.is_some_and(|c| c <= rank) {
                    return deny("already an admin of that rank or stronger");
                }
                self.team
                    .admins
                    .insert(user.clone(), current.map_or(rank, |c| c.min(rank)));
            }
            RosterOp::RemoveAdmin { user, .. } => {
                if !self.team.admins.contains_key(user) {
                    return deny("not an admin");
                }
                if *user != author_user || Some(user) == founder.as_ref() {
                    outranks(&self.team, user, need_admin()?)?;
                }
                self.team.admins.remove(user);
            }
            RosterOp::AddToGroup { group, user } => {
                need_admin()?;
                if !self.team.users.contains(user) {
                    return deny("no such user");
                }
                if self.team.deleted_groups.contains(group) {
                    return deny("a deleted group's name is not used again");
                }
                let members = self.team.groups.entry(group.clone()).or_default();
                if info.strict && members.contains(user) {
                    return deny("already in that group");
                }
                members.insert(user.clone());
            }
            RosterOp::RemoveFromGroup { group, user, .. } => {
                if *user != author_user {
                    need_admin()?;
                }
                let removed = self
                    .team
                    .groups
                    .get_mut(group)
                    .is_some_and(|m| m.remove(user).is_some());
                if !removed {
                    return deny("the user is not in that group");
                }
            }
            RosterOp::CreateGroup { group } => {
                need_admin()?;
                if group.trim().is_empty() {
                    return deny("a group needs a name");
                }
                if self.team.deleted_groups.contains(group) {
                    return deny("a deleted group's name is not used again");
                }
                if self.team.groups.contains_key(group) {
                    return deny("the group already exists");
                }
                self.team.groups.insert(group.clone(), OrdSet::new());
            }
            RosterOp::NameDevice { device, name } => {
                check_roster_name(name, MAX_DEVICE_NAME)?;
                let Some(rec) = self.team.devices.get(device) else {
                    return deny("no such device");
                };
                if rec.revoked || !self.team.users.contains(&rec.user) {
                    return deny("the device was revoked");
                }
                if rec.user != author_user {
                    need_admin()?;
                }
                if info.strict && self.team.device_names.get(device) == Some(name) {
                    return deny("the device has that name already");
                }
                self.team.device_names.insert(*device, name.clone());
            }
            RosterOp::DeleteGroup { group, .. } => {
                need_admin()?;
                if self.team.groups.remove(group).is_none() {
                    return deny("no such group");
                }
                self.team.deleted_groups.insert(group.clone());
            }
            RosterOp::AddRelay { transport, addrs } => {
                need_admin()?;
                let id = DeviceId(*transport);
                if self.team.devices.contains_key(&id)
                    || self
                        .team
                        .devices
                        .values()
                        .any(|r| r.transport == *transport)
                {
                    return deny("that key is a device of the team, not a relay");
                }
                if info.strict && self.team.relays.get(&id) == Some(addrs) {
                    return deny("the relay is there already");
                }
                self.team.relays.insert(id, addrs.clone());
                self.team.removed_relays.remove(&id);
            }
            RosterOp::RemoveRelay { transport } => {
                need_admin()?;
                if self.team.relays.remove(&DeviceId(*transport)).is_none() {
                    return deny("no such relay");
                }
                self.team.removed_relays.insert(DeviceId(*transport));
            }
            RosterOp::RenameTeam { name } => {
                need_admin()?;
                check_roster_name(name, MAX_NAME)?;
                if info.strict && self.team.name == *name {
                    return deny("the team has that name already");
                }
                self.team.name = name.clone();
            }
            RosterOp::NameUser {
                user,
                name,
                joined_ms,
            } => {
                if *user != author_user {
                    need_admin()?;
                }
                if !self.team.users.contains(user) {
                    return deny("no such user");
                }
                check_roster_name(name, MAX_NAME)?;
                self.team.user_names.insert(user.clone(), name.clone());
                if !self.team.joined_ms.contains_key(user) {
                    self.team.joined_ms.insert(user.clone(), *joined_ms);
                }
            }
            RosterOp::HandOver { to } => {
                if Some(&author_user) != founder.as_ref() {
                    return deny("only the founding admin may hand over");
                }
                if !self.team.admins.contains_key(to) {
                    return deny("the founder role goes to an admin");
                }
                if *to == author_user {
                    return deny("the founder already holds the role");
                }
                self.team.admins.insert(author_user, FOUNDER_RANK + 1);
                self.team.admins.insert(to.clone(), FOUNDER_RANK);
                self.team.founder = Some(to.clone());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod voided_epoch_tests {
    use super::*;
    use crate::ops::{ChainLink, KeyWrap};

    fn info(id: u8) -> OpInfo {
        OpInfo {
            id: EnvelopeId([id; 32]),
            author: DeviceId([9; 32]),
            seq: 3,
            space: SpaceId([1; 32]),
            home: SpaceId([1; 32]),
            team: None,
            strict: false,
        }
    }

    /// A voided rotation leaves the current epoch alone but stays an epoch
    /// (found by the chaos suite: an admin's write under a rotation its
    /// author's revocation later voided was lost everywhere;
    /// tests/chaos/repro/voided_rotation_write.py).
    #[test]
    fn a_voided_rotation_keeps_its_key_as_an_epoch_but_not_current() {
        let mut s = State::default();
        let genesis = EnvelopeId([2; 32]);
        s.folder.epochs.insert(
            genesis,
            Epoch {
                number: 0,
                wraps: OrdMap::new(),
                chain: Vec::new(),
            },
        );
        s.folder.current_epoch = Some(genesis);
        let rotate = |chain_to: EnvelopeId| {
            ControlOp::Membership(MembershipOp::Rotate {
                wraps: vec![KeyWrap {
                    device: DeviceId([4; 32]),
                    sealed: vec![1, 2, 3],
                }],
                chain: vec![ChainLink {
                    epoch: chain_to,
                    sealed: vec![5],
                }],
                cutoffs: Vec::new(),
            })
        };
        s.keep_voided_epoch(&info(7), &rotate(genesis));
        let kept = &s.folder.epochs[&EnvelopeId([7; 32])];
        assert_eq!(kept.number, 1);
        assert_eq!(kept.wraps.len(), 1);
        assert_eq!(s.folder.current_epoch, Some(genesis));
        // A chain to an unknown epoch keeps nothing; other ops are ignored.
        s.keep_voided_epoch(&info(8), &rotate(EnvelopeId([99; 32])));
        s.keep_voided_epoch(
            &info(9),
            &ControlOp::Membership(MembershipOp::BindTeam {
                team: SpaceId([3; 32]),
            }),
        );
        assert_eq!(s.folder.epochs.len(), 2);
    }
}
