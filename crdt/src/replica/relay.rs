//! A keyless relay (`cofferd --relay`): an always-on peer that holds and
//! forwards the envelopes of every team that added it, judged by the same
//! acceptance rule as every laptop, without any key.
//!
//! [`Relay`] keeps one keyless [`Replica`] per team (never unlocked: no
//! device keys, no folder key, no audit key; it holds every folder of the
//! team a member sends, and is a member of none) and routes each connected
//! peer to its team's. It is driven like a replica: `peer_connected`,
//! `handle_message`, `poll_transmit`, effects out of `poll_effect`.
//!
//! Peers are named by their transport key (`DeviceId(transport)`): the
//! relay learns which device a key belongs to only from a team's roster.
//! A peer whose key no held roster names is *pending*: it is greeted with
//! an empty `Hello`, and the only thing it may send that counts is a team
//! roster; the relay takes the team when its operator accepted that team
//! (`Relay::accept_team`: `coffer relay accept TEAM_ID` on the relay — a
//! stranger who founds a team of their own and names the relay in it is
//! refused) and that roster, as the acceptance rule accepts it, names this
//! relay (`RosterOp::AddRelay`, an admin's op) and names the sender as a
//! live device. A roster op removing the relay
//! drops the team and every envelope of it; a folder the team deleted is
//! dropped too.
//!
//! What it is not: no IO, no clock, no key. Storage is bounded per team
//! ([`RelayLimits`]); what a full team sends is not kept.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rand_core::CryptoRngCore;

use super::sync::{ProtocolViolation, SyncMessage, SyncWire, MIN_SYNC_VERSION, SYNC_VERSION};
use super::{Effect, Identity, Persist, Replica, SpaceKind, StoredSpace};
use crate::envelope::{Envelope, Kind};
use crate::ids::{DeviceId, SpaceId};
use crate::space::Space;

/// How much a relay keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayLimits {
    /// Teams held at most.
    pub max_teams: usize,
    /// Envelope bytes held per team at most: past it, new envelopes of the
    /// team are not kept (the team's devices keep them and send them again
    /// once space is freed).
    pub max_team_bytes: u64,
    /// Peers waiting to show a roster at once.
    pub max_pending: usize,
    /// Roster bytes a pending peer may send before it names a team.
    pub max_pending_bytes: usize,
}

impl Default for RelayLimits {
    fn default() -> Self {
        RelayLimits {
            max_teams: 1024,
            max_team_bytes: 1 << 30,
            max_pending: 128,
            max_pending_bytes: 2 << 20,
        }
    }
}

/// One team as the relay holds it (`coffer relay status` on the relay).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TeamHeld {
    pub team: SpaceId,
    pub name: String,
    /// Spaces held: the roster and the folders.
    pub spaces: usize,
    pub envelopes: usize,
    pub bytes: u64,
    /// Held without effect: what the acceptance rule refused to let take
    /// effect (a Folder Member's write, a removed writer's late change).
    pub quarantined: usize,
    /// Devices of the team connected now.
    pub connected: usize,
    /// At its byte limit: new envelopes are not kept.
    pub full: bool,
}

/// What a relay reports of itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RelayStatus {
    pub teams: Vec<TeamHeld>,
    /// Peers connected that no held roster names yet.
    pub pending: usize,
    /// Sessions cut for a protocol violation (forged or misplaced
    /// envelopes, bad frames), since start.
    pub refused_sessions: u64,
    /// Batches not kept because their team was full, since start.
    pub dropped_full: u64,
}

#[derive(Default)]
struct Pending {
    /// Its place in the order of arrival: the oldest gives way first.
    arrival: u64,
    hello: Option<SyncMessage>,
    hello_sent: bool,
    /// What its session's outbound stream negotiated.
    wire: SyncWire,
    roster: Option<Space>,
    bytes: usize,
}

enum Link {
    Pending(Box<Pending>),
    Bound { team: SpaceId, device: DeviceId },
}

/// The relay's state. See the module documentation.
pub struct Relay {
    me: DeviceId,
    limits: RelayLimits,
    /// The teams its operator accepted: no other team is ever taken.
    accepted: BTreeSet<SpaceId>,
    teams: BTreeMap<SpaceId, Replica>,
    peers: BTreeMap<DeviceId, Link>,
    allowed: BTreeMap<DeviceId, [u8; 32]>,
    effects: VecDeque<Effect>,
    refused_sessions: u64,
    dropped_full: u64,
    /// Pending peers seen so far (the next one's `arrival`).
    arrivals: u64,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("me", &self.me)
            .field("teams", &self.teams.len())
            .field("peers", &self.peers.len())
            .finish_non_exhaustive()
    }
}

fn keyless_identity(me: DeviceId) -> Identity {
    Identity {
        device: me,
        exchange: [0; 32],
        transport: me.0,
        name: "relay".into(),
        email: String::new(),
        personal: SpaceId([0; 32]),
    }
}

impl Relay {
    /// The relay whose transport key is `transport`, from what it stored.
    pub fn load(transport: [u8; 32], stored: Vec<StoredSpace>, limits: RelayLimits) -> Relay {
        let me = DeviceId(transport);
        let mut by_team: BTreeMap<SpaceId, Vec<StoredSpace>> = BTreeMap::new();
        let rosters: Vec<SpaceId> = stored
            .iter()
            .filter(|s| s.kind == SpaceKind::Roster)
            .map(|s| s.id)
            .collect();
        let mut strays = Vec::new();
        for s in stored {
            let team = match s.kind {
                SpaceKind::Roster => Some(s.id),
                SpaceKind::Folder => s.team.filter(|t| rosters.contains(t)),
            };
            match team {
                Some(t) => by_team.entry(t).or_default().push(s),
                None => strays.push(s.id),
            }
        }
        let mut relay = Relay {
            me,
            limits,
            accepted: BTreeSet::new(),
            teams: BTreeMap::new(),
            peers: BTreeMap::new(),
            allowed: BTreeMap::new(),
            effects: VecDeque::new(),
            refused_sessions: 0,
            dropped_full: 0,
            arrivals: 0,
        };
        for space in strays {
            relay
                .effects
                .push_back(Effect::Persist(Persist::DropSpace { space }));
        }
        for (team, spaces) in by_team {
            // Team roster first: `Replica::load` takes the first roster.
            let mut spaces = spaces;
            spaces.sort_by_key(|s| s.kind != SpaceKind::Roster);
            let replica = Replica::load_with(keyless_identity(me), spaces, Vec::new(), true);
            relay.teams.insert(team, replica);
            relay.after(team);
        }
        relay.update_allowed();
        relay
    }

    /// This relay's device id (its transport key).
    pub fn device(&self) -> DeviceId {
        self.me
    }

    /// The next effect, in order.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// Every device of every held team, by transport key (as `DeviceId`).
    pub fn allowed_peers(&self) -> &BTreeMap<DeviceId, [u8; 32]> {
        &self.allowed
    }

    /// The team replica of a held team (read only: for status and tests).
    pub fn team(&self, team: &SpaceId) -> Option<&Replica> {
        self.teams.get(team)
    }

    /// The limits it was loaded with.
    pub fn limits(&self) -> RelayLimits {
        self.limits
    }

    /// The teams its operator accepted (from the relay's store at start).
    /// A held team not among them is dropped (`Persist::DropSpace`): what
    /// is accepted decides, also after a `forget` whose drops were not
    /// stored (a crash between its two writes).
    pub fn set_accepted_teams(&mut self, teams: BTreeSet<SpaceId>) {
        self.accepted = teams;
        let unaccepted: Vec<SpaceId> = self
            .teams
            .keys()
            .filter(|t| !self.accepted.contains(t))
            .copied()
            .collect();
        for team in unaccepted {
            self.drop_team(team);
        }
    }

    /// Its operator accepts `team`: a member device presenting a roster of
    /// it that names this relay is taken from now on.
    pub fn accept_team(&mut self, team: SpaceId) {
        self.accepted.insert(team);
    }

    /// Its operator takes `team` back: no longer accepted, and everything
    /// held of it dropped (`Persist::DropSpace`), its devices' sessions
    /// refused at their next message. Whether it was accepted or held.
    pub fn forget_team(&mut self, team: SpaceId) -> bool {
        let accepted = self.accepted.remove(&team);
        let held = self.teams.contains_key(&team);
        self.drop_team(team);
        accepted || held
    }

    /// The teams its operator accepted.
    pub fn accepted_teams(&self) -> &BTreeSet<SpaceId> {
        &self.accepted
    }

    /// What the relay holds, per team.
    pub fn status(&self) -> RelayStatus {
        let mut teams = Vec::new();
        for (id, r) in &self.teams {
            let mut held = TeamHeld {
                team: *id,
                name: r
                    .team_state()
                    .map(|t| t.team.name.clone())
                    .unwrap_or_default(),
                spaces: 0,
                envelopes: 0,
                bytes: 0,
                quarantined: 0,
                connected: self
                    .peers
                    .values()
                    .filter(|l| matches!(l, Link::Bound { team, .. } if team == id))
                    .count(),
                full: false,
            };
            for s in r.roster.iter().chain(r.folders.values()) {
                held.spaces += 1;
                for e in s.held().filter(|e| e.space() == s.id()) {
                    held.envelopes += 1;
                    held.bytes += e.wire_len() as u64;
                }
                held.quarantined += s.quarantined().len();
            }
            held.full = held.bytes >= self.limits.max_team_bytes;
            teams.push(held);
        }
        RelayStatus {
            teams,
            pending: self
                .peers
                .values()
                .filter(|l| matches!(l, Link::Pending(_)))
                .count(),
            refused_sessions: self.refused_sessions,
            dropped_full: self.dropped_full,
        }
    }

    fn team_bytes(&self, team: &SpaceId) -> u64 {
        self.teams.get(team).map_or(0, |r| {
            r.roster
                .iter()
                .chain(r.folders.values())
                .map(Space::own_bytes)
                .sum()
        })
    }

    /// The team and device a transport key belongs to, by the held rosters.
    fn device_of(&self, handle: &DeviceId) -> Option<(SpaceId, DeviceId)> {
        self.teams.iter().find_map(|(team, r)| {
            let t = r.team_state()?;
            t.team
                .devices
                .iter()
                .find(|(_, rec)| rec.transport == handle.0)
                .map(|(d, _)| (*team, *d))
        })
    }

    /// A peer connected (named by its transport key) over `/coffer/sync/2`.
    pub fn peer_connected(&mut self, handle: DeviceId) {
        self.peer_connected_on(handle, SyncWire::V2);
    }

    /// A peer connected (named by its transport key); `wire` is what the
    /// relay's outbound stream to it negotiated. A pending peer is greeted
    /// with an empty `Hello` on either wire (every version reads it: "I
    /// hold nothing, send your roster"); once bound, the team's replica
    /// greets it as `wire` says.
    pub fn peer_connected_on(&mut self, handle: DeviceId, wire: SyncWire) {
        self.peer_disconnected(&handle);
        if let Some((team, device)) = self.device_of(&handle) {
            self.peers.insert(handle, Link::Bound { team, device });
            if let Some(r) = self.teams.get_mut(&team) {
                r.peer_connected_on(device, wire);
            }
            self.after(team);
            return;
        }
        // When the table is full a pending peer gives way: strangers who
        // connect and say nothing cannot keep a team's new device out. The
        // silent ones first (no Hello, no roster bytes), oldest first, then
        // the oldest of all. The one dropped is told at its next message
        // (`NotAllowed`, the session ends) and may connect again.
        let pending: Vec<(bool, u64, DeviceId)> = self
            .peers
            .iter()
            .filter_map(|(h, l)| match l {
                Link::Pending(p) => Some((p.hello.is_some() || p.bytes > 0, p.arrival, *h)),
                Link::Bound { .. } => None,
            })
            .collect();
        if pending.len() >= self.limits.max_pending {
            let Some(&(_, _, gives_way)) = pending.iter().min() else {
                return;
            };
            self.peers.remove(&gives_way);
        }
        self.arrivals += 1;
        self.peers.insert(
            handle,
            Link::Pending(Box::new(Pending {
                arrival: self.arrivals,
                wire,
                ..Pending::default()
            })),
        );
        self.effects.push_back(Effect::Transmit(handle));
    }

    pub fn peer_disconnected(&mut self, handle: &DeviceId) {
        if let Some(Link::Bound { team, device }) = self.peers.remove(handle) {
            if let Some(r) = self.teams.get_mut(&team) {
                r.peer_disconnected(&device);
            }
        }
    }

    /// The next message for a peer.
    pub fn poll_transmit(&mut self, handle: &DeviceId) -> Option<SyncMessage> {
        match self.peers.get_mut(handle)? {
            Link::Pending(p) => {
                if p.hello_sent {
                    return None;
                }
                p.hello_sent = true;
                Some(SyncMessage::Hello {
                    version: SYNC_VERSION,
                    spaces: Vec::new(),
                })
            }
            Link::Bound { team, device } => {
                let (team, device) = (*team, *device);
                let msg = self.teams.get_mut(&team)?.poll_transmit(&device);
                self.after(team);
                msg
            }
        }
    }

    /// A message from a peer. An `Err` ends its session.
    pub fn handle_message(
        &mut self,
        handle: DeviceId,
        msg: SyncMessage,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(), ProtocolViolation> {
        let result = match self.peers.get(&handle) {
            None => Err(ProtocolViolation::NotAllowed),
            Some(Link::Bound { team, device }) => {
                let (team, device) = (*team, *device);
                let msg = match msg {
                    SyncMessage::Envelopes { space, envelopes }
                        if self.team_bytes(&team) >= self.limits.max_team_bytes =>
                    {
                        // Full: folder content is not kept, but the roster
                        // and membership ops are (a removal, the relay's own
                        // removal or a folder's deletion must still land).
                        let control: Vec<Vec<u8>> = envelopes
                            .into_iter()
                            .filter(|b| {
                                Envelope::decode(b).is_ok_and(|e| {
                                    matches!(e.kind(), Kind::Roster | Kind::Membership)
                                })
                            })
                            .collect();
                        self.dropped_full += 1;
                        if control.is_empty() {
                            return Ok(());
                        }
                        SyncMessage::Envelopes {
                            space,
                            envelopes: control,
                        }
                    }
                    other => other,
                };
                let result = match self.teams.get_mut(&team) {
                    Some(r) => r.handle_message(device, msg, rng),
                    None => Err(ProtocolViolation::NotAllowed),
                };
                self.after(team);
                result
            }
            Some(Link::Pending(_)) => self.pending_message(handle, msg, rng),
        };
        if result.as_ref().is_err_and(ProtocolViolation::is_violation) {
            self.refused_sessions += 1;
        }
        result
    }

    fn pending_message(
        &mut self,
        handle: DeviceId,
        msg: SyncMessage,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(), ProtocolViolation> {
        if !msg.within_bounds() {
            return Err(ProtocolViolation::Malformed("over the protocol's bounds"));
        }
        let max_bytes = self.limits.max_pending_bytes;
        let Some(Link::Pending(p)) = self.peers.get_mut(&handle) else {
            return Err(ProtocolViolation::NotAllowed);
        };
        match msg {
            SyncMessage::Hello { version, .. } | SyncMessage::HelloDigest { version, .. } => {
                if version < MIN_SYNC_VERSION {
                    return Err(ProtocolViolation::Version(version));
                }
                p.hello = Some(msg);
                Ok(())
            }
            SyncMessage::Envelopes { space, envelopes } => {
                if p.hello.is_none() {
                    return Err(ProtocolViolation::Malformed("envelopes before hello"));
                }
                let mut envs = Vec::with_capacity(envelopes.len());
                for bytes in &envelopes {
                    p.bytes += bytes.len();
                    let env =
                        Envelope::decode(bytes).map_err(|_| ProtocolViolation::Undecodable)?;
                    if env.space() != space {
                        return Err(ProtocolViolation::InvalidEnvelopes(1));
                    }
                    envs.push(env);
                }
                if p.bytes > max_bytes {
                    return Err(ProtocolViolation::NotAllowed);
                }
                // Roster ops live in a team's roster only. A folder before
                // its team's roster is not kept: the peer sends it again
                // once the team is held (the team's `Hello` asks for it).
                let is_roster = envs.iter().any(|e| e.kind() == Kind::Roster);
                let roster = match &mut p.roster {
                    Some(r) if r.id() == space => r,
                    Some(_) => return Ok(()),
                    None if is_roster => p.roster.insert(Space::new_roster(space)),
                    None => return Ok(()),
                };
                roster.ingest_batch(envs);
                self.try_bind(handle, rng)
            }
            SyncMessage::Error { code, text } => {
                let text: String = text.chars().filter(|c| !c.is_control()).collect();
                Err(ProtocolViolation::PeerClosed { code, text })
            }
            _ => Ok(()),
        }
    }

    /// A pending peer's roster names this relay and the peer: the team is
    /// held (taken, or brought up to date) and the peer bound to it.
    fn try_bind(
        &mut self,
        handle: DeviceId,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(), ProtocolViolation> {
        let Some(Link::Pending(p)) = self.peers.get(&handle) else {
            return Ok(());
        };
        let Some(roster) = &p.roster else {
            return Ok(());
        };
        let t = roster.state();
        let named = t.team.relays.contains_key(&self.me);
        let device = t
            .team
            .devices
            .iter()
            .find(|(d, rec)| rec.transport == handle.0 && t.is_live_team_device(d))
            .map(|(d, _)| *d);
        let (Some(device), true) = (device, named) else {
            return Ok(());
        };
        let team = roster.id();
        let envs: Vec<Envelope> = roster.held().cloned().collect();
        let hello = p.hello.clone();
        let wire = p.wire;
        if let Some(r) = self.teams.get_mut(&team) {
            r.take_in(team, envs);
            let known = r.team_state().is_some_and(|t| {
                t.is_live_team_device(&device) && t.team.relays.contains_key(&self.me)
            });
            self.after(team);
            if !known {
                return Ok(());
            }
        } else {
            // Only a team its operator accepted: otherwise anyone could found
            // a team, name this relay in it and store whatever they like.
            if self.teams.len() >= self.limits.max_teams || !self.accepted.contains(&team) {
                return Err(ProtocolViolation::NotAllowed);
            }
            let stored = StoredSpace {
                id: team,
                kind: SpaceKind::Roster,
                team: None,
                envelopes: envs.clone(),
                snapshot: None,
            };
            let mut r =
                Replica::load_with(keyless_identity(self.me), vec![stored], Vec::new(), true);
            r.effects.push_back(Effect::Persist(Persist::Envelopes {
                space: team,
                kind: SpaceKind::Roster,
                team: None,
                envelopes: envs,
            }));
            self.teams.insert(team, r);
        }
        self.peers.insert(handle, Link::Bound { team, device });
        let result = match self.teams.get_mut(&team) {
            Some(r) => {
                r.peer_connected_on(device, wire);
                match hello {
                    Some(h) => r.handle_message(device, h, rng),
                    None => Ok(()),
                }
            }
            None => Ok(()),
        };
        self.after(team);
        result
    }

    /// After a team replica ran: its effects routed (transmissions to the
    /// peer's transport key), a team that removed this relay dropped, a
    /// folder the team deleted dropped, the allowed peers recomputed.
    fn after(&mut self, team: SpaceId) {
        let Some(r) = self.teams.get_mut(&team) else {
            return;
        };
        let mut peers_changed = false;
        let mut transmit = Vec::new();
        while let Some(effect) = r.poll_effect() {
            match effect {
                Effect::Transmit(device) => transmit.push(device),
                Effect::AllowedPeers(_) => peers_changed = true,
                Effect::Relays(_) => {}
                other => self.effects.push_back(other),
            }
        }
        let named = r
            .team_state()
            .is_some_and(|t| t.team.relays.contains_key(&self.me));
        if !named {
            self.drop_team(team);
            return;
        }
        let deleted: Vec<SpaceId> = r
            .folders
            .iter()
            .filter(|(_, s)| s.state().folder.deleted.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in deleted {
            r.folders.remove(&id);
            r.snapshots.remove(&id);
            self.effects
                .push_back(Effect::Persist(Persist::DropSpace { space: id }));
        }
        let transports: BTreeMap<DeviceId, [u8; 32]> = r
            .team_state()
            .map(|t| {
                t.team
                    .devices
                    .iter()
                    .map(|(d, rec)| (*d, rec.transport))
                    .collect()
            })
            .unwrap_or_default();
        for device in transmit {
            if let Some(t) = transports.get(&device) {
                self.effects.push_back(Effect::Transmit(DeviceId(*t)));
            }
        }
        if peers_changed {
            self.update_allowed();
        }
    }

    fn drop_team(&mut self, team: SpaceId) {
        let Some(r) = self.teams.remove(&team) else {
            return;
        };
        for space in r.roster.iter().chain(r.folders.values()).map(Space::id) {
            self.effects
                .push_back(Effect::Persist(Persist::DropSpace { space }));
        }
        self.peers
            .retain(|_, l| !matches!(l, Link::Bound { team: t, .. } if *t == team));
        self.update_allowed();
    }

    fn update_allowed(&mut self) {
        let allowed: BTreeMap<DeviceId, [u8; 32]> = self
            .teams
            .values()
            .flat_map(|r| r.allowed_peers().values())
            .map(|t| (DeviceId(*t), *t))
            .collect();
        if allowed != self.allowed {
            self.allowed = allowed.clone();
            self.effects.push_back(Effect::AllowedPeers(allowed));
        }
    }
}

#[cfg(test)]
mod tests;
