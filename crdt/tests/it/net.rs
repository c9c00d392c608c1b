//! An in-memory world of whole replicas: each [`Node`] is one device (its
//! `Replica`, its keys and what it persisted), a [`World`] connects them
//! with the real sync protocol (`poll_transmit` → `handle_message`) and
//! drains their effects the way `cofferd` does: persist, then the rest.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use coffer_crdt::ops::UserId;
use coffer_crdt::replica::{
    Effect, Event, Identity, Joiner, Persist, SpaceKind, StoredSpace, SyncMessage, SyncWire,
    Trusted,
};
use coffer_crdt::{DeviceId, DeviceKeys, Envelope, Replica, SpaceId};
use rand_chacha::ChaCha20Rng;

/// What a node persisted: per space, its kind, team and envelopes.
#[derive(Clone, Default)]
pub struct Store {
    pub spaces: BTreeMap<SpaceId, (SpaceKind, Option<SpaceId>, Vec<Envelope>)>,
    pub trusted: Vec<Trusted>,
    pub snapshots: BTreeMap<SpaceId, Vec<u8>>,
    pub audit: Vec<coffer_crdt::replica::AuditRow>,
}

impl Store {
    fn apply(&mut self, p: Persist) {
        match p {
            Persist::Envelopes {
                space,
                kind,
                team,
                envelopes,
            } => {
                let entry = self
                    .spaces
                    .entry(space)
                    .or_insert_with(|| (kind, team, Vec::new()));
                if team.is_some() {
                    entry.1 = team;
                }
                for e in envelopes {
                    if !entry.2.iter().any(|x| x.id() == e.id()) {
                        entry.2.push(e);
                    }
                }
            }
            Persist::Trusted(list) => self.trusted = list,
            Persist::Snapshot { space, sealed } => {
                self.snapshots.insert(space, sealed);
            }
            Persist::DropSnapshot { space } => {
                self.snapshots.remove(&space);
            }
            Persist::Audit(rows) => self.audit.extend(rows),
            Persist::DropSpace { space } => {
                self.spaces.remove(&space);
                self.snapshots.remove(&space);
            }
        }
    }

    pub fn stored(&self) -> Vec<StoredSpace> {
        self.spaces
            .iter()
            .map(|(id, (kind, team, envs))| StoredSpace {
                id: *id,
                kind: *kind,
                team: *team,
                envelopes: envs.clone(),
                snapshot: self.snapshots.get(id).cloned(),
            })
            .collect()
    }
}

/// One device.
pub struct Node {
    pub replica: Replica,
    pub keys: DeviceKeys,
    pub store: Store,
    pub events: Vec<Event>,
    /// Peers its replica asked to be polled.
    pub wakes: BTreeSet<DeviceId>,
}

pub fn transport(keys: &DeviceKeys) -> [u8; 32] {
    coffer_crdt::crypto::ed25519_public(&transport_seed(keys))
}

/// The seed of a test device's transport key.
pub fn transport_seed(keys: &DeviceKeys) -> [u8; 32] {
    *blake3::hash(&keys.device_id().0).as_bytes()
}

impl Node {
    pub fn new(name: &str, rng: &mut ChaCha20Rng) -> Node {
        let keys = DeviceKeys::generate(rng);
        let email = format!("{name}@net.test");
        let replica =
            Replica::create(keys.clone(), name, &email, transport(&keys), 1, rng).unwrap();
        let mut node = Node {
            replica,
            keys,
            store: Store::default(),
            events: Vec::new(),
            wakes: BTreeSet::new(),
        };
        node.drain();
        node
    }

    /// The audit records `peer` lacks next, from this node's store (as the
    /// daemon's vault does).
    pub fn poll_audit(&mut self, peer: &DeviceId) -> Option<SyncMessage> {
        let (device, after) = self.replica.audit_wants(peer)?;
        let mut rows: Vec<_> = self
            .store
            .audit
            .iter()
            .filter(|r| r.record.device() == device && r.record.seq() > after)
            .map(|r| r.record.clone())
            .collect();
        rows.sort_by_key(|r| r.seq());
        rows.truncate(coffer_crdt::replica::MAX_AUDIT_BATCH);
        let last = rows.last()?.seq();
        self.replica.audit_sent(peer, device, last);
        Some(SyncMessage::AuditRecords {
            records: rows.iter().map(|r| r.bytes().to_vec()).collect(),
        })
    }

    pub fn id(&self) -> DeviceId {
        self.replica.device()
    }

    /// How another device trusts this one (a pairing).
    pub fn trusted(&self) -> Trusted {
        Trusted {
            device: self.keys.device_id(),
            exchange: self.keys.exchange_public(),
            transport: transport(&self.keys),
            name: None,
            added_ms: 0,
        }
    }

    /// This device's (accepted, items) digests of `space`.
    pub fn digest(&self, space: &SpaceId) -> Option<([u8; 32], Option<[u8; 32]>)> {
        self.replica
            .digests()
            .into_iter()
            .find(|d| d.space == *space)
            .map(|d| (d.accepted, d.items))
    }

    pub fn user(&self) -> UserId {
        UserId::new(&self.replica.identity().email).unwrap()
    }

    /// Drains effects: persisted first (as the daemon does), then kept.
    pub fn drain(&mut self) {
        while let Some(effect) = self.replica.poll_effect() {
            match effect {
                Effect::Persist(p) => self.store.apply(p),
                Effect::Event(e) => self.events.push(e),
                Effect::AllowedPeers(_) | Effect::Relays(_) => {}
                Effect::Transmit(peer) => {
                    self.wakes.insert(peer);
                }
            }
        }
    }

    /// A crash and restart: a fresh replica from what was persisted, then
    /// unlocked with the same keys. Returns the accepted-state digests
    /// while still locked, and whether the unlock wrote anything (key
    /// upkeep that was due).
    /// Unlocks as cofferd does: the sealed snapshots the replica wants are
    /// handed in from the store first (an unlocked replica holds none).
    pub fn unlock_from_store(&mut self, rng: &mut ChaCha20Rng) {
        for id in self.replica.snapshots_wanted() {
            if let Some(sealed) = self.store.snapshots.get(&id) {
                self.replica.supply_snapshot(id, sealed.clone());
            }
        }
        self.replica.unlock(self.keys.clone(), rng).unwrap();
    }

    pub fn restart(&mut self, rng: &mut ChaCha20Rng) -> (Vec<(SpaceId, [u8; 32])>, bool) {
        let identity: Identity = self.replica.identity().clone();
        self.replica = Replica::load(identity, self.store.stored(), self.store.trusted.clone());
        let locked = self
            .replica
            .digests()
            .into_iter()
            .map(|d| (d.space, d.accepted))
            .collect();
        self.replica.unlock(self.keys.clone(), rng).unwrap();
        self.wakes.clear();
        let mut wrote = false;
        while let Some(effect) = self.replica.poll_effect() {
            match effect {
                Effect::Persist(p) => {
                    wrote |= matches!(p, Persist::Envelopes { .. });
                    self.store.apply(p);
                }
                Effect::Event(e) => self.events.push(e),
                Effect::AllowedPeers(_) | Effect::Relays(_) => {}
                Effect::Transmit(peer) => {
                    self.wakes.insert(peer);
                }
            }
        }
        (locked, wrote)
    }

    /// What this device proves when it joins `team` as `user`.
    pub fn joiner(&self, team: &SpaceId, user: &UserId) -> Joiner {
        let op = coffer_crdt::ops::RosterOp::add_device(
            team,
            user.clone(),
            &self.keys,
            &transport_seed(&self.keys),
        );
        let coffer_crdt::ops::RosterOp::AddDevice {
            device,
            exchange,
            transport,
            proof,
            transport_proof,
            ..
        } = op
        else {
            unreachable!()
        };
        Joiner {
            device,
            exchange,
            transport,
            name: Some(format!("{}'s laptop", self.replica.identity().name)),
            proof,
            transport_proof,
        }
    }

    /// Item names of a folder, sorted (empty if it cannot be read).
    pub fn names(&self, folder: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .replica
            .items(Some(folder), false)
            .map(|l| l.into_iter().map(|(_, i)| i.name.clone()).collect())
            .unwrap_or_default();
        out.sort();
        out
    }
}

/// Devices, who is connected to whom, and the messages in flight.
pub struct World {
    pub nodes: Vec<Node>,
    pub rng: ChaCha20Rng,
    connected: BTreeSet<(usize, usize)>,
    /// Links cut (a partition), both directions listed.
    pub cut: BTreeSet<(usize, usize)>,
    inflight: HashMap<(usize, usize), VecDeque<SyncMessage>>,
    pub messages: u64,
    /// Envelopes delivered per link (from, to).
    pub envelopes: HashMap<(usize, usize), u64>,
    /// Per round, the chance in percent that a link delivers its next message.
    pub delivery: u32,
    /// A node allowed to break the protocol (its peers cut it off).
    pub adversary: Option<usize>,
    /// Deliver everything in flight on a link in one
    /// `Replica::handle_messages` call, as `cofferd` hands over the frames
    /// it read ahead (off: one `handle_message` per message).
    pub read_ahead: bool,
    /// Which sync wire each connection speaks.
    pub wires: Wires,
    connections: u64,
    /// Messages per kind of sync message delivered (`msg hello`…).
    pub kinds: BTreeMap<&'static str, u64>,
    /// When set, every message delivered: (from, to, message).
    pub log: Option<Vec<(usize, usize, SyncMessage)>>,
}

/// Which sync wire each new connection speaks.
#[derive(Clone, Copy, Debug)]
pub enum Wires {
    /// The same on every link, both ways (`/coffer/sync/2` by default, as
    /// before the choice existed).
    All(SyncWire),
    /// Per connection and per direction, picked from the salt, the pair
    /// and how many connections came before (the world's rng is not
    /// touched, so a seed's schedule is as it was): both ends `/2`, both
    /// `/3`, or one of each.
    Mixed(u64),
}

/// A 64-bit mix (splitmix64's finaliser): picks a wire from a salt.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl World {
    pub fn new(names: &[&str], mut rng: ChaCha20Rng) -> World {
        let nodes = names.iter().map(|n| Node::new(n, &mut rng)).collect();
        World {
            nodes,
            rng,
            connected: BTreeSet::new(),
            cut: BTreeSet::new(),
            inflight: HashMap::new(),
            messages: 0,
            envelopes: HashMap::new(),
            delivery: 100,
            adversary: None,
            read_ahead: false,
            wires: Wires::All(SyncWire::V2),
            connections: 0,
            kinds: BTreeMap::new(),
            log: None,
        }
    }

    fn index_of(&self, d: &DeviceId) -> Option<usize> {
        self.nodes.iter().position(|n| n.id() == *d)
    }

    /// Connects pairs that allow each other and are not cut; drops the rest.
    pub fn reconnect(&mut self) {
        let n = self.nodes.len();
        for a in 0..n {
            for b in 0..n {
                if a >= b {
                    continue;
                }
                let allowed = self.nodes[a]
                    .replica
                    .allowed_peers()
                    .contains_key(&self.nodes[b].id())
                    && self.nodes[b]
                        .replica
                        .allowed_peers()
                        .contains_key(&self.nodes[a].id());
                let up = allowed && !self.cut.contains(&(a, b));
                let was = self.connected.contains(&(a, b));
                if up && !was {
                    self.connected.insert((a, b));
                    let (da, db) = (self.nodes[a].id(), self.nodes[b].id());
                    let (wa, wb) = self.wires_for(a, b);
                    self.nodes[a].replica.peer_connected_on(db, wa);
                    self.nodes[b].replica.peer_connected_on(da, wb);
                    self.nodes[a].drain();
                    self.nodes[b].drain();
                } else if !up && was {
                    self.disconnect(a, b);
                }
            }
        }
    }

    /// The wires of a new connection of `a` and `b` (see `wires`).
    fn wires_for(&mut self, a: usize, b: usize) -> (SyncWire, SyncWire) {
        let salt = match self.wires {
            Wires::All(w) => return (w, w),
            Wires::Mixed(salt) => salt,
        };
        self.connections += 1;
        let pick = mix(salt ^ mix(((a as u64) << 32) | b as u64) ^ mix(self.connections));
        match pick % 4 {
            0 => (SyncWire::V2, SyncWire::V2),
            1 => (SyncWire::V3, SyncWire::V2),
            2 => (SyncWire::V2, SyncWire::V3),
            _ => (SyncWire::V3, SyncWire::V3),
        }
    }

    pub fn disconnect(&mut self, a: usize, b: usize) {
        let (a, b) = (a.min(b), a.max(b));
        if self.connected.remove(&(a, b)) {
            let (da, db) = (self.nodes[a].id(), self.nodes[b].id());
            self.nodes[a].replica.peer_disconnected(&db);
            self.nodes[b].replica.peer_disconnected(&da);
            self.inflight.remove(&(a, b));
            self.inflight.remove(&(b, a));
        }
    }

    /// Drops every connection of node `i` (a crash).
    pub fn drop_node(&mut self, i: usize) {
        let pairs: Vec<(usize, usize)> = self
            .connected
            .iter()
            .filter(|(a, b)| *a == i || *b == i)
            .copied()
            .collect();
        for (a, b) in pairs {
            self.disconnect(a, b);
        }
    }

    /// One round: every node that asked is polled for each woken peer, one
    /// message a link; then one in-flight message a link is delivered.
    /// Returns whether anything moved.
    pub fn round(&mut self) -> bool {
        self.reconnect();
        let mut moved = false;
        for a in 0..self.nodes.len() {
            let wakes: Vec<DeviceId> = std::mem::take(&mut self.nodes[a].wakes)
                .into_iter()
                .collect();
            for peer in wakes {
                let Some(b) = self.index_of(&peer) else {
                    continue;
                };
                if !self.connected.contains(&(a.min(b), a.max(b))) {
                    continue;
                }
                let msg = self.nodes[a]
                    .replica
                    .poll_transmit(&peer)
                    .or_else(|| self.nodes[a].poll_audit(&peer));
                if let Some(msg) = msg {
                    self.inflight.entry((a, b)).or_default().push_back(msg);
                    // More may follow: poll again next round.
                    self.nodes[a].wakes.insert(peer);
                    moved = true;
                }
                self.nodes[a].drain();
            }
        }
        self.inflight.retain(|_, q| !q.is_empty());
        let mut links: Vec<(usize, usize)> = self.inflight.keys().copied().collect();
        links.sort();
        for (a, b) in links {
            if self.delivery < 100
                && rand_core::RngCore::next_u32(&mut self.rng) % 100 >= self.delivery
            {
                moved = true;
                continue;
            }
            let batch: Vec<SyncMessage> = match self.inflight.get_mut(&(a, b)) {
                Some(q) if self.read_ahead => q.drain(..).collect(),
                Some(q) => q.pop_front().into_iter().collect(),
                None => Vec::new(),
            };
            if batch.is_empty() {
                continue;
            }
            for msg in &batch {
                self.trace(a, b, msg);
            }
            moved = true;
            let from = self.nodes[a].id();
            let result = self.nodes[b]
                .replica
                .handle_messages(from, batch, &mut self.rng);
            self.nodes[b].drain();
            if let Err(e) = result {
                assert!(
                    !e.is_violation() || self.adversary == Some(a),
                    "an honest peer broke the protocol: {e}"
                );
                self.disconnect(a, b);
                if self.adversary == Some(a) {
                    // Cut off, it stays off for a while.
                    self.cut.insert((a.min(b), a.max(b)));
                }
            }
        }
        moved
    }

    /// Counts a message delivered from `a` to `b`, and prints it when
    /// tracing (`COFFER_SIM_TRACE`) or past 99,000 messages.
    fn trace(&mut self, a: usize, b: usize, msg: &SyncMessage) {
        self.messages += 1;
        if let SyncMessage::Envelopes { envelopes, .. } = msg {
            *self.envelopes.entry((a, b)).or_default() += envelopes.len() as u64;
        }
        let kind = match msg {
            SyncMessage::Hello { .. } => "msg hello",
            SyncMessage::Summary { .. } => "msg summary",
            SyncMessage::Envelopes { .. } => "msg envelopes",
            SyncMessage::Caught { .. } => "msg caught",
            SyncMessage::Error { .. } => "msg error",
            SyncMessage::Time { .. } => "msg time",
            SyncMessage::AuditHeads { .. } => "msg audit-heads",
            SyncMessage::AuditRecords { .. } => "msg audit-records",
            SyncMessage::HelloDigest { .. } => "msg hello-digest",
            SyncMessage::SpaceDigests { .. } => "msg space-digests",
            SyncMessage::Tips { .. } => "msg tips",
        };
        *self.kinds.entry(kind).or_default() += 1;
        if let Some(log) = &mut self.log {
            log.push((a, b, msg.clone()));
        }
        if self.messages > 99_000 || std::env::var("COFFER_SIM_TRACE").is_ok() {
            let what = match msg {
                SyncMessage::Hello { spaces, .. } => format!("hello {}", spaces.len()),
                SyncMessage::Summary { spaces } => format!("summary {}", spaces.len()),
                SyncMessage::Envelopes { space, envelopes } => {
                    let ids: Vec<String> = envelopes
                        .iter()
                        .filter_map(|b| Envelope::decode(b).ok())
                        .map(|e| e.id().short()[..4].to_string())
                        .collect();
                    format!("{} envelopes of {} {ids:?}", envelopes.len(), space.short())
                }
                SyncMessage::Caught { space } => format!("caught {}", space.short()),
                SyncMessage::Error { text, .. } => format!("error {text}"),
                SyncMessage::Time { unix_ms } => format!("time {unix_ms}"),
                SyncMessage::AuditHeads { heads } => format!("audit heads {}", heads.len()),
                SyncMessage::AuditRecords { records } => {
                    format!("{} audit records", records.len())
                }
                SyncMessage::HelloDigest { .. } => "hello digest".to_string(),
                SyncMessage::SpaceDigests { spaces } => format!("space digests {}", spaces.len()),
                SyncMessage::Tips { spaces } => format!("tips {}", spaces.len()),
            };
            eprintln!("{a} -> {b}: {what}");
        }
    }

    /// Puts `msg` on the link from `from` to `to` (if they are connected),
    /// as a misbehaving `from` could send anything.
    pub fn inject(&mut self, from: usize, to: usize, msg: SyncMessage) -> bool {
        if !self.connected.contains(&(from.min(to), from.max(to))) {
            return false;
        }
        self.inflight.entry((from, to)).or_default().push_back(msg);
        true
    }

    /// The nodes `i` is connected to.
    pub fn neighbours(&self, i: usize) -> Vec<usize> {
        self.connected
            .iter()
            .filter_map(|(a, b)| match (*a == i, *b == i) {
                (true, _) => Some(*b),
                (_, true) => Some(*a),
                _ => None,
            })
            .collect()
    }

    /// Rounds until nothing moves.
    pub fn settle(&mut self) {
        for _ in 0..100_000 {
            if !self.round() {
                return;
            }
        }
        panic!("the world did not settle");
    }

    /// `founder` founds team "Acme" (its join time `joined_ms`) and creates
    /// the user groups `groups`.
    pub fn found_team(&mut self, founder: usize, joined_ms: i64, groups: &[&str]) {
        self.nodes[founder]
            .replica
            .create_team("Acme", joined_ms, &mut self.rng)
            .unwrap();
        for group in groups {
            self.nodes[founder]
                .replica
                .group_change(
                    group,
                    coffer_crdt::replica::GroupChange::Create,
                    &mut self.rng,
                )
                .unwrap();
        }
        self.nodes[founder].drain();
    }

    /// `by` shares `folder` with the user of node `with` as `role`.
    pub fn share(&mut self, by: usize, folder: &str, with: usize, role: coffer_crdt::ops::Role) {
        let who = coffer_crdt::ops::Principal::User(self.nodes[with].user());
        let change = coffer_crdt::replica::ShareChange::Share(role);
        self.nodes[by]
            .replica
            .folder_share(folder, who, change, &mut self.rng)
            .unwrap_or_else(|e| panic!("share {folder}: {e}"));
        self.nodes[by].drain();
    }

    /// `joiner` joins the team of `admin` as a new user (what enrolment
    /// does once the codes matched), with groups.
    pub fn admit(&mut self, admin: usize, joiner: usize, groups: &[&str]) {
        let team = self.nodes[admin].replica.team_id().expect("a team");
        let user = self.nodes[joiner].user();
        let j = self.nodes[joiner].joiner(&team, &user);
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        let email = user.0.clone();
        let person = self.nodes[joiner].replica.identity().name.clone();
        self.nodes[admin]
            .replica
            .admit(
                Some(&email),
                &j,
                &groups,
                false,
                Some((&person, 7)),
                &mut self.rng,
            )
            .unwrap();
        self.nodes[admin].drain();
        let roster = self.nodes[admin].replica.roster_envelopes();
        self.nodes[joiner].replica.adopt_team(team, roster).unwrap();
        self.nodes[joiner].drain();
    }
}
