//! The swarm actor: owns the libp2p `Swarm` (TCP + Noise + yamux, QUIC with
//! the `quic` feature), decides which connections stay (devices this one
//! syncs with), dials and redials, and runs one session per allowed peer.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use coffer_crdt::audit::{Action, AuditEvent};
use coffer_crdt::DeviceId;
use coffer_ipc::Event;
use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::ConnectionId;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    autonat, connection_limits, dcutr, identify, noise, ping, relay, tcp, yamux, Multiaddr, PeerId,
    StreamProtocol, Swarm,
};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

use super::dial_error;
use super::enrol;
use super::nat;
use super::protocol::{NOISE_PROLOGUE, PROTOCOL_NAME, PROTOCOL_NAME_V3};
use super::session::{self, SessionHandle};
use super::{
    backoff, discovery, now_ms, transport_of, without_p2p, Command, Ctx, Dialling, MdnsState,
    DEFAULT_PORT,
};

#[derive(NetworkBehaviour)]
struct Behaviour {
    stream: libp2p_stream::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    /// Circuit relay v2 server: on `cofferd --relay` only.
    relay: Toggle<relay::Behaviour>,
    /// Circuit relay v2 client: reservations at the team's relays, and
    /// dials through them.
    relay_client: relay::client::Behaviour,
    /// Hole punching over a relayed connection (off with `--no-hole-punch`).
    dcutr: Toggle<dcutr::Behaviour>,
    /// Whether this device is reachable from outside (a relay answers
    /// probes; devices ask connected peers).
    autonat: autonat::Behaviour,
    /// Connections at once ([`connection_limits_for`]).
    limits: connection_limits::Behaviour,
}

/// How many connections a daemon takes at once: past these, a connection
/// is refused at its handshake. A laptop connects to the devices it syncs
/// with (a few per device: direct, relayed, hole-punched); a relay takes
/// every device of the teams it serves, and strangers who have yet to show
/// a roster. No cap on handshakes in progress: one host opening bare TCP
/// connections would hold such a cap full for the handshake timeout and
/// keep every device out.
fn connection_limits_for(is_relay: bool) -> connection_limits::ConnectionLimits {
    let incoming = if is_relay { 8192 } else { 1024 };
    connection_limits::ConnectionLimits::default()
        .with_max_established_incoming(Some(incoming))
        .with_max_established_per_peer(Some(8))
}

/// Bounds of the relay's circuits: a sync session is small but lives
/// long; a session cut by a limit starts again.
const CIRCUIT_DURATION: Duration = Duration::from_secs(30 * 60);
const CIRCUIT_BYTES: u64 = 64 << 20;

/// How often a connection is pinged, and how long an answer may take: a
/// peer that answers is "in contact" (`coffer peers` shows when it last
/// answered), so a connection left half-open by a partition does not pass
/// for a live one. A failed ping only marks the peer; the connection stays
/// (it resumes if the partition heals before TCP gives up).
const PING_INTERVAL: Duration = Duration::from_secs(5);
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// Refused connections are logged at most this often per peer.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);
/// How often due redials are checked.
const TICK: Duration = Duration::from_millis(250);

/// Where and when to dial a peer again.
#[derive(Debug)]
struct Redial {
    addrs: Vec<Multiaddr>,
    attempt: u32,
    next_at: Instant,
}

/// A `--peer` address (its PeerId learnt on first connection if not given).
#[derive(Debug)]
struct StaticPeer {
    addr: Multiaddr,
    peer: Option<PeerId>,
    attempt: u32,
    next_at: Instant,
    /// What the last dial gave, for `coffer doctor` (cleared on success).
    last_error: Option<coffer_ipc::doctor::DialFailure>,
}

struct Actor {
    ctx: Arc<Ctx>,
    swarm: Swarm<Behaviour>,
    control: libp2p_stream::Control,
    /// The devices this one syncs with, by transport key.
    allowed: BTreeMap<[u8; 32], DeviceId>,
    sessions: HashMap<PeerId, SessionHandle>,
    /// Streams of allowed peers that arrived before their session started.
    early_streams: HashMap<PeerId, libp2p::Stream>,
    next_session: u64,
    redial: HashMap<PeerId, Redial>,
    statics: Vec<StaticPeer>,
    refused_logged: HashMap<PeerId, Instant>,
    refused_total: u64,
    discovery: Option<discovery::Discovery>,
    local: PeerId,
    /// Unknown peers' connections kept while invites are open, until when
    /// (an enrolment may be started on them; never a sync session).
    /// Unknown peers kept for enrolment: until when, and from which address.
    guests: Guests,
    /// Bounds the enrolment streams served at once.
    enrolments: Arc<tokio::sync::Semaphore>,
    /// Enrolment streams being served, per peer.
    enrol_by_peer: Arc<std::sync::Mutex<HashMap<PeerId, usize>>>,
    /// The team's relays and their addresses (`RelaysChanged`).
    relays: HashMap<PeerId, Vec<Multiaddr>>,
    /// Relays this device asked for a circuit reservation on the current
    /// connection to them.
    reserved: std::collections::HashSet<PeerId>,
    /// Relayed connections per peer (closed once a hole punch succeeds).
    relayed: HashMap<PeerId, Vec<ConnectionId>>,
    /// Peers whose relayed connection closed for a direct one, and when:
    /// for [`MOVE_WINDOW`], a session that ends starts again on the direct
    /// connection, and a second sync stream of the peer replaces ours,
    /// instead of cutting the peer off.
    moved_at: HashMap<PeerId, Instant>,
    /// Listeners through a relay's circuit, and the relay.
    circuit_listeners: HashMap<libp2p::core::transport::ListenerId, PeerId>,
    /// When a refused or lost reservation may be asked for again.
    reserve_after: HashMap<PeerId, Instant>,
}

fn protocol() -> StreamProtocol {
    StreamProtocol::new(PROTOCOL_NAME)
}

fn protocol_v3() -> StreamProtocol {
    StreamProtocol::new(PROTOCOL_NAME_V3)
}

fn build_swarm(
    seed: Zeroizing<[u8; 32]>,
    is_relay: bool,
    hole_punch: bool,
    allowed: &tokio::sync::watch::Receiver<BTreeMap<DeviceId, [u8; 32]>>,
) -> anyhow::Result<Swarm<Behaviour>> {
    // On a relay, circuits are for the devices of the teams it holds (its
    // allowed peers), not for anyone who connects: a stranger may neither
    // reserve a slot nor open a circuit (libp2p's relay asks every rate
    // limiter; these say no to a peer that is not allowed).
    let team_device = |allowed: tokio::sync::watch::Receiver<BTreeMap<DeviceId, [u8; 32]>>| {
        move |peer: PeerId, _: &Multiaddr, _: std::time::Instant| {
            transport_of(&peer).is_some_and(|t| allowed.borrow().contains_key(&DeviceId(t)))
        }
    };
    let mut relay_config = relay::Config {
        max_reservations: 4096,
        max_reservations_per_peer: 4,
        max_circuits: 4096,
        max_circuits_per_peer: 16,
        max_circuit_duration: CIRCUIT_DURATION,
        max_circuit_bytes: CIRCUIT_BYTES,
        ..relay::Config::default()
    };
    relay_config
        .reservation_rate_limiters
        .push(Box::new(team_device(allowed.clone())));
    relay_config
        .circuit_src_rate_limiters
        .push(Box::new(team_device(allowed.clone())));
    let mut bytes = *seed;
    let key = libp2p::identity::Keypair::ed25519_from_bytes(&mut bytes)
        .context("the device key is not an Ed25519 key")?;
    let noise_config = |k: &libp2p::identity::Keypair| {
        noise::Config::new(k).map(|c| c.with_prologue(NOISE_PROLOGUE.to_vec()))
    };
    let builder = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise_config,
            yamux::Config::default,
        )?;
    #[cfg(feature = "quic")]
    let builder = builder.with_quic();
    let swarm = builder
        .with_relay_client(noise_config, yamux::Config::default)?
        .with_behaviour(|key, relay_client| Behaviour {
            relay: Toggle::from(
                is_relay.then(|| relay::Behaviour::new(key.public().to_peer_id(), relay_config)),
            ),
            relay_client,
            dcutr: Toggle::from(
                hole_punch.then(|| dcutr::Behaviour::new(key.public().to_peer_id())),
            ),
            autonat: autonat::Behaviour::new(
                key.public().to_peer_id(),
                autonat::Config {
                    // A relay serves probes of devices behind NATs
                    // wherever they are; a device asks connected peers.
                    only_global_ips: !is_relay,
                    ..autonat::Config::default()
                },
            ),
            limits: connection_limits::Behaviour::new(connection_limits_for(is_relay)),
            stream: libp2p_stream::Behaviour::new(),
            identify: identify::Behaviour::new(
                identify::Config::new("/coffer/id/1".into(), key.public())
                    .with_agent_version(format!("cofferd/{}", env!("CARGO_PKG_VERSION"))),
            ),
            ping: ping::Behaviour::new(
                ping::Config::new()
                    .with_interval(PING_INTERVAL)
                    .with_timeout(PING_TIMEOUT),
            ),
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    let mut swarm = swarm;
    if let Some(relay) = swarm.behaviour_mut().relay.as_mut() {
        // A relay by its operator's choice: serve circuits from the start
        // rather than once AutoNAT confirms an external address.
        relay.set_status(Some(relay::Status::Enable));
    }
    Ok(swarm)
}

fn tcp_port(addr: &Multiaddr) -> Option<u16> {
    addr.iter().find_map(|p| match p {
        Protocol::Tcp(port) => Some(port),
        _ => None,
    })
}

/// Runs the swarm until the process ends.
pub(crate) async fn run(
    ctx: Arc<Ctx>,
    seed: Zeroizing<[u8; 32]>,
    mut rx: mpsc::Receiver<Command>,
    allowed_now: BTreeMap<DeviceId, [u8; 32]>,
) -> anyhow::Result<()> {
    let mut swarm = build_swarm(
        seed,
        ctx.config.relay,
        !ctx.config.no_hole_punch,
        &ctx.allowed,
    )?;
    let local = *swarm.local_peer_id();
    let mut control = swarm.behaviour().stream.new_control();
    let mut incoming = control
        .accept(protocol())
        .map_err(|_| anyhow::anyhow!("sync protocol registered twice"))?;
    // Inbound on both wires (a daemon from before `/coffer/sync/3` opens
    // `/2`); the tests' `--sync-v2-only` daemon accepts `/2` alone.
    let incoming_v3 = if ctx.config.sync_v2_only {
        None
    } else {
        Some(
            control
                .accept(protocol_v3())
                .map_err(|_| anyhow::anyhow!("sync protocol registered twice"))?,
        )
    };
    let mut enrol_incoming = control
        .accept(enrol::protocol())
        .map_err(|_| anyhow::anyhow!("enrolment protocol registered twice"))?;

    // Listen: the given addresses, else the default port on IPv4 and IPv6
    // (an IPv4-only daemon is unreachable to a peer that found it at an
    // IPv6 address), else an ephemeral IPv4 port.
    let mut listening = 0;
    for addr in &ctx.config.listen {
        match swarm.listen_on(addr.clone()) {
            Ok(_) => listening += 1,
            Err(e) => warn!(%addr, error = %e, "cannot listen"),
        }
    }
    if ctx.config.listen.is_empty() {
        let v4: Multiaddr = format!("/ip4/0.0.0.0/tcp/{DEFAULT_PORT}")
            .parse()
            .expect("a valid multiaddr");
        match swarm.listen_on(v4) {
            Ok(_) => {
                listening += 1;
                // The same port on IPv6 (a v6-only socket), so the one port
                // mDNS advertises is right for both; a host without IPv6
                // just stays on IPv4.
                let v6: Multiaddr = format!("/ip6/::/tcp/{DEFAULT_PORT}")
                    .parse()
                    .expect("a valid multiaddr");
                match swarm.listen_on(v6) {
                    Ok(_) => listening += 1,
                    Err(e) => info!(error = %e, "not listening on IPv6"),
                }
            }
            Err(e) => {
                warn!(port = DEFAULT_PORT, error = %e, "default port unavailable; using an ephemeral port");
                let any: Multiaddr = "/ip4/0.0.0.0/tcp/0".parse().expect("a valid multiaddr");
                if swarm.listen_on(any).is_ok() {
                    listening += 1;
                }
            }
        }
    }
    if listening == 0 {
        warn!("listening on no address: only outgoing connections");
    }

    // The replica's list as the swarm starts; AllowedChanged brings changes.
    let allowed = by_transport(allowed_now);
    let now = Instant::now();
    let statics = ctx
        .config
        .peers
        .iter()
        .map(|a| {
            let (addr, peer) = without_p2p(a);
            StaticPeer {
                addr,
                peer,
                attempt: 0,
                next_at: now,
                last_error: None,
            }
        })
        .collect();
    ctx.update_status(|status| {
        status.running = true;
        status.started_ms = Some(now_ms());
    });
    info!(peer_id = %local, "network started");
    let mut actor = Actor {
        ctx: ctx.clone(),
        swarm,
        control,
        allowed,
        sessions: HashMap::new(),
        early_streams: HashMap::new(),
        next_session: 1,
        redial: HashMap::new(),
        statics,
        refused_logged: HashMap::new(),
        refused_total: 0,
        discovery: None,
        local,
        guests: HashMap::new(),
        enrolments: Arc::new(tokio::sync::Semaphore::new(enrol::MAX_GUESTS)),
        enrol_by_peer: Arc::default(),
        relays: HashMap::new(),
        reserved: Default::default(),
        relayed: HashMap::new(),
        moved_at: HashMap::new(),
        circuit_listeners: HashMap::new(),
        reserve_after: HashMap::new(),
    };
    let (inbound_tx, mut inbound_rx) = mpsc::channel(16);
    if let Some(mut incoming_v3) = incoming_v3 {
        let inbound_tx = inbound_tx.clone();
        tokio::spawn(async move {
            while let Some(pair) = incoming_v3.next().await {
                if inbound_tx.send(pair).await.is_err() {
                    return;
                }
            }
        });
    }
    tokio::spawn(async move {
        while let Some(pair) = incoming.next().await {
            if inbound_tx.send(pair).await.is_err() {
                return;
            }
        }
    });
    let (enrol_tx, mut enrol_rx) = mpsc::channel(16);
    tokio::spawn(async move {
        while let Some(pair) = enrol_incoming.next().await {
            if enrol_tx.send(pair).await.is_err() {
                return;
            }
        }
    });
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // Local work first (bounded everything, local before remote).
            Some(cmd) = rx.recv() => actor.command(cmd),
            Some((peer, stream)) = inbound_rx.recv() => actor.inbound(peer, stream),
            Some((peer, stream)) = enrol_rx.recv() => actor.enrol_inbound(peer, stream),
            event = actor.swarm.select_next_some() => actor.swarm_event(event),
            _ = tick.tick() => {
                actor.expire_guests();
                actor.reserve_due();
                actor.dial_due();
            }
        }
    }
}

impl Actor {
    fn is_allowed(&self, peer: &PeerId) -> Option<DeviceId> {
        let transport = transport_of(peer)?;
        if self.ctx.config.relay {
            // A relay names every peer by its transport key and lets the
            // relay state decide what it may do.
            return (*peer != self.local).then_some(DeviceId(transport));
        }
        self.allowed.get(&transport).copied()
    }

    fn refuse(&mut self, peer: PeerId, why: &str) {
        self.refused_total += 1;
        let now = Instant::now();
        let due = self
            .refused_logged
            .get(&peer)
            .is_none_or(|t| now.duration_since(*t) >= REFUSAL_LOG_EVERY);
        if due {
            self.refused_logged.insert(peer, now);
            warn!(%peer, reason = why, refused_total = self.refused_total, "refused a peer");
        }
        let _ = self.swarm.disconnect_peer_id(peer);
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::AllowedChanged => {
                let set = self.ctx.allowed.borrow().clone();
                // Newly allowed devices are worth dialling at once.
                let now = Instant::now();
                for s in &mut self.statics {
                    s.attempt = 0;
                    s.next_at = now;
                }
                for (p, r) in &mut self.redial {
                    if transport_of(p).is_some_and(|t| {
                        set.values().any(|x| *x == t) && !self.allowed.contains_key(&t)
                    }) {
                        r.attempt = 0;
                        r.next_at = now;
                    }
                }
                self.allowed = by_transport(set);
                self.routes_through_relays();
                let connected: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
                for peer in connected {
                    match self.is_allowed(&peer) {
                        // A guest stays until its enrolment ends or its time is up.
                        None if self.guests.contains_key(&peer) => {}
                        // Newly admitted: its sync session starts when its
                        // daemon connects (the enrolment swarm cannot sync).
                        Some(_) if self.guests.contains_key(&peer) => {}
                        None => {
                            self.redial.remove(&peer);
                            self.refuse(peer, "no longer a device this one syncs with");
                        }
                        Some(d) if !self.sessions.contains_key(&peer) => {
                            self.start_session(peer, d)
                        }
                        Some(_) => {}
                    }
                }
            }
            Command::RelaysChanged => {
                let relays = self.ctx.relays.borrow().clone();
                let now = Instant::now();
                self.relays.clear();
                for (device, addrs) in relays {
                    let Some(peer) = super::peer_id_of(&device.0) else {
                        continue;
                    };
                    let addrs: Vec<Multiaddr> = addrs
                        .iter()
                        .filter_map(|a| a.parse::<Multiaddr>().ok())
                        .map(|a| without_p2p(&a).0)
                        .take(16)
                        .collect();
                    let r = self.redial.entry(peer).or_insert(Redial {
                        addrs: Vec::new(),
                        attempt: 0,
                        next_at: now,
                    });
                    r.addrs = addrs.clone();
                    r.attempt = 0;
                    r.next_at = now;
                    self.relays.insert(peer, addrs);
                }
                let relays = &self.relays;
                self.reserved.retain(|p| relays.contains_key(p));
                self.routes_through_relays();
                self.dial_due();
            }
            Command::SyncNow(reply) => {
                let now = Instant::now();
                let mut dialing = 0;
                for r in self.redial.values_mut() {
                    r.attempt = 0;
                    r.next_at = now;
                    dialing += 1;
                }
                for s in &mut self.statics {
                    s.attempt = 0;
                    s.next_at = now;
                }
                self.dial_due();
                let _ = reply.send((self.sessions.len(), dialing));
            }
            Command::Dialling(reply) => {
                let known = self
                    .redial
                    .iter()
                    .map(|(p, r)| (*p, r.addrs.clone()))
                    .collect();
                let statics = self
                    .statics
                    .iter()
                    .map(|s| {
                        let connected = s.peer.is_some_and(|p| self.swarm.is_connected(&p));
                        (s.addr.clone(), s.peer, connected, s.last_error.clone())
                    })
                    .collect();
                let _ = reply.send(Dialling { known, statics });
            }
            Command::Discovered { peer, addrs, mdns } => {
                if mdns && peer != self.local {
                    self.ctx.update_status(|s| s.heard(peer, &addrs, now_ms()));
                }
                if peer == self.local || self.is_allowed(&peer).is_none() {
                    debug!(%peer, "mDNS: ignoring a peer this device does not sync with");
                    return;
                }
                let r = self.redial.entry(peer).or_insert(Redial {
                    addrs: Vec::new(),
                    attempt: 0,
                    next_at: Instant::now(),
                });
                for a in addrs {
                    if !r.addrs.contains(&a) {
                        r.addrs.push(a);
                    }
                }
                if !self.swarm.is_connected(&peer) {
                    self.dial_due();
                }
            }
            Command::SessionEnded {
                peer,
                session,
                reason,
                violation,
            } => {
                if self.sessions.get(&peer).is_some_and(|s| s.id == session) {
                    self.sessions.remove(&peer);
                    // Its relayed connection closed for a direct one: the
                    // session starts again there.
                    if self.moved_recently(&peer) && !violation && self.swarm.is_connected(&peer) {
                        if let Some(device) = self.is_allowed(&peer) {
                            debug!(%peer, "session moves to the direct connection");
                            self.start_session(peer, device);
                            return;
                        }
                    }
                    if violation {
                        warn!(%peer, %reason, "peer broke the sync protocol: disconnecting");
                        if let Some(r) = self.redial.get_mut(&peer) {
                            r.attempt = r.attempt.saturating_add(3);
                            r.next_at = Instant::now() + backoff(r.attempt);
                        }
                    } else {
                        debug!(%peer, %reason, "session ended");
                    }
                    let _ = self.swarm.disconnect_peer_id(peer);
                }
            }
        }
    }

    fn inbound(&mut self, peer: PeerId, stream: libp2p::Stream) {
        let moved = self.moved_recently(&peer);
        match self.sessions.get_mut(&peer) {
            Some(s) if s.has_inbound() && moved => {
                // Its relayed connection closed for a direct one and it
                // moved its session first: ours follows onto this stream.
                debug!(%peer, "peer moved its session to the direct connection");
                self.sessions.remove(&peer);
                if let Some(device) = self.is_allowed(&peer) {
                    self.early_streams.insert(peer, stream);
                    self.start_session(peer, device);
                }
            }
            Some(s) if s.has_inbound() => {
                // A second sync stream: the peer started a new session (each
                // opens one), so the one ours writes to is gone on its side.
                // Typically it died while cut off and its old connection is
                // half-open here: ours would go on writing into it, never
                // heard, while its new session waits for our hello forever
                // (chaos seed 60308). Start over on both sides: our session
                // and every connection to it go, and a redial brings two
                // fresh sessions on one live connection.
                info!(%peer, "peer started a new sync session: reconnecting");
                drop(stream);
                self.sessions.remove(&peer);
                self.early_streams.remove(&peer);
                let _ = self.swarm.disconnect_peer_id(peer);
            }
            Some(s) => s.inbound(stream),
            None => {
                if self.is_allowed(&peer).is_none() {
                    self.refuse(peer, "stream from a device this one does not sync with");
                } else {
                    // The connection event has not been handled yet.
                    self.early_streams.insert(peer, stream);
                }
            }
        }
    }

    /// Keeps an unknown peer's connection for [`enrol::GUEST_GRACE`] while
    /// this device has invites open (at most [`enrol::MAX_GUESTS`]).
    /// Whether an unknown peer may start an enrolment now (an invite or a
    /// pending join is open).
    fn invites_open(&self) -> bool {
        self.ctx
            .invites
            .lock()
            .map(|mut t| t.accepting(Instant::now()))
            .unwrap_or(false)
    }

    /// Keeps an unknown peer's connection for an enrolment: only while
    /// invites are open, at most [`enrol::MAX_GUESTS`] at once and
    /// [`enrol::MAX_GUESTS_PER_ADDRESS`] from one source address, each for
    /// [`enrol::GUEST_GRACE`] from its connection (opening streams does not
    /// renew it).
    fn admit_guest(&mut self, peer: PeerId, from: Option<std::net::IpAddr>) -> bool {
        if transport_of(&peer).is_none() {
            return false;
        }
        if self.guests.contains_key(&peer) {
            return true;
        }
        if !self.invites_open() || !guest_slot_free(&self.guests, from) {
            return false;
        }
        debug!(%peer, "kept an unknown peer's connection for enrolment");
        self.guests
            .insert(peer, (Instant::now() + enrol::GUEST_GRACE, from));
        true
    }

    /// Closes guests whose time is up, unless their join awaits a decision.
    fn expire_guests(&mut self) {
        let now = Instant::now();
        let due: Vec<PeerId> = self
            .guests
            .iter()
            .filter(|(_, (until, _))| *until <= now)
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            if self.is_allowed(&peer).is_some() {
                // Admitted meanwhile: an ordinary peer from now on.
                self.guests.remove(&peer);
                continue;
            }
            let waiting = transport_of(&peer).is_some_and(|t| {
                self.ctx
                    .invites
                    .lock()
                    .map(|table| table.is_pending(&t))
                    .unwrap_or(false)
            });
            if waiting {
                if let Some(g) = self.guests.get_mut(&peer) {
                    g.0 = now + Duration::from_secs(5);
                }
            } else {
                self.guests.remove(&peer);
                self.refuse(peer, "enrolment time is up");
            }
        }
    }

    /// An enrolment stream: served while invites are open, by any peer
    /// (unknown ones are guests), at most [`enrol::MAX_GUESTS`] at once.
    fn enrol_inbound(&mut self, peer: PeerId, stream: libp2p::Stream) {
        let (Some(joiner), Some(me)) = (transport_of(&peer), transport_of(&self.local)) else {
            return;
        };
        let accepting = self.invites_open();
        if !accepting {
            debug!(%peer, "enrolment stream while no invite is open: dropped");
            return;
        }
        // One peer may not hold the shared permits (a LAN neighbour opening
        // many silent streams would starve real joiners).
        let per_peer = self.enrol_by_peer.clone();
        {
            let Ok(mut active) = per_peer.lock() else {
                return;
            };
            let n = active.entry(peer).or_insert(0);
            if *n >= enrol::MAX_STREAMS_PER_PEER {
                warn!(%peer, "too many enrolment streams from one peer: dropped a stream");
                return;
            }
            *n += 1;
        }
        let release = move || {
            if let Ok(mut active) = per_peer.lock() {
                if let Some(n) = active.get_mut(&peer) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        active.remove(&peer);
                    }
                }
            }
        };
        let Ok(permit) = self.enrolments.clone().try_acquire_owned() else {
            release();
            warn!(%peer, "too many enrolments at once: dropped a stream");
            return;
        };
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match enrol::serve(stream, me, joiner, &ctx.invites, now_ms).await {
                Ok(kind) => {
                    info!(%peer, kind = kind.name(), "enrolment answered")
                }
                Err(enrol::EnrolError::WrongCode) => {
                    info!(%peer, "enrolment ended: wrong invite code");
                    let mut ev = AuditEvent::new("", Action::InviteWrongCode);
                    ev.detail = Some(format!("peer {peer}"));
                    let noted = ctx
                        .vault
                        .call_quiet(move |v| {
                            v.audit_note(ev, crate::vault::Now { unix_ms: now_ms() });
                            Ok::<_, crate::vault::VaultError>(())
                        })
                        .await;
                    if let Err(e) = noted {
                        warn!(error = %e, "cannot record a wrong invite code");
                    }
                }
                Err(e) => info!(%peer, error = %e, "enrolment ended"),
            }
            release();
        });
    }

    fn start_session(&mut self, peer: PeerId, device: DeviceId) {
        let id = self.next_session;
        self.next_session += 1;
        let mut handle = session::spawn(self.ctx.clone(), peer, device, id, self.control.clone());
        if let Some(stream) = self.early_streams.remove(&peer) {
            handle.inbound(stream);
        }
        self.sessions.insert(peer, handle);
    }

    fn swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                self.ctx
                    .update_status(|s| s.listen.push(address.to_string()));
                if self.ctx.config.relay && nat::path_of(&address) != nat::Path::Relayed {
                    // A relay is where devices reach it: its reservations
                    // name these addresses (not loopback, unless that is all).
                    let loopback = address.iter().any(|p| {
                        matches!(p, Protocol::Ip4(a) if a.is_loopback())
                            || matches!(p, Protocol::Ip6(a) if a.is_loopback())
                    });
                    if !loopback || self.swarm.external_addresses().next().is_none() {
                        self.swarm.add_external_address(address.clone());
                    }
                }
                if self.ctx.config.mdns && self.discovery.is_none() {
                    if let Some(port) = tcp_port(&address) {
                        match discovery::Discovery::start(self.local, port, self.ctx.cmd.clone()) {
                            Ok(d) => {
                                self.discovery = Some(d);
                                self.ctx.update_status(|s| s.mdns = MdnsState::Running);
                            }
                            Err(e) => {
                                warn!(error = %e, "mDNS discovery unavailable");
                                self.ctx
                                    .update_status(|s| s.mdns = MdnsState::Failed(e.to_string()));
                            }
                        }
                    }
                }
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                if let Some(relay) = self.circuit_listeners.remove(&listener_id) {
                    info!(%relay, ?reason, "the circuit reservation ended; asking again later");
                    self.reserved.remove(&relay);
                    self.reserve_after
                        .insert(relay, Instant::now() + RESERVE_RETRY);
                }
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                let a = address.to_string();
                self.ctx.update_status(|s| s.listen.retain(|l| l != &a));
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                let remote = match &endpoint {
                    ConnectedPoint::Dialer { address, .. } => address.clone(),
                    ConnectedPoint::Listener { send_back_addr, .. } => send_back_addr.clone(),
                };
                let path = nat::path_of(&remote);
                let relayed = path == nat::Path::Relayed
                    || nat::path_of(endpoint.get_remote_address()) == nat::Path::Relayed
                    || matches!(&endpoint, ConnectedPoint::Listener { local_addr, .. } if nat::path_of(local_addr) == nat::Path::Relayed);
                let path = if relayed { nat::Path::Relayed } else { path };
                if relayed {
                    let ids = self.relayed.entry(peer_id).or_default();
                    if ids.len() < 16 {
                        ids.push(connection_id);
                    }
                }
                if !relayed {
                    self.reserve(peer_id);
                }
                let allowed = self.is_allowed(&peer_id);
                if let Some(device) = allowed {
                    // The best path up: a direct connection beats a relayed one.
                    self.ctx.stat(&device, |s| {
                        if !relayed || !s.connected || s.path.is_none() {
                            s.path = Some(path);
                        }
                    });
                }
                if let ConnectedPoint::Dialer { address, .. } = &endpoint {
                    let (bare, _) = without_p2p(address);
                    for s in &mut self.statics {
                        if s.addr == bare {
                            s.peer.get_or_insert(peer_id);
                            s.attempt = 0;
                            // A --peer address where another team's device
                            // answers is worth telling `coffer doctor`.
                            s.last_error =
                                allowed.is_none().then(|| coffer_ipc::doctor::DialFailure {
                                    at_ms: now_ms(),
                                    address: Some(bare.to_string()),
                                    kind: coffer_ipc::doctor::DialErrorKind::NotInTeam,
                                    error: format!("device {peer_id} answered"),
                                });
                        }
                    }
                }
                let Some(device) = allowed else {
                    let from = remote_ip(endpoint.get_remote_address());
                    if !self.admit_guest(peer_id, from) {
                        self.refuse(peer_id, "not a device this one syncs with");
                    }
                    return;
                };
                self.ctx.stat(&device, |s| s.last_dial_error = None);
                self.guests.remove(&peer_id);
                if let Some(r) = self.redial.get_mut(&peer_id) {
                    r.attempt = 0;
                }
                if let ConnectedPoint::Dialer { address, .. } = &endpoint {
                    let (bare, _) = without_p2p(address);
                    let r = self.redial.entry(peer_id).or_insert(Redial {
                        addrs: Vec::new(),
                        attempt: 0,
                        next_at: Instant::now(),
                    });
                    if !r.addrs.contains(&bare) {
                        r.addrs.push(bare);
                    }
                }
                if num_established.get() == 1 || !self.sessions.contains_key(&peer_id) {
                    let address = remote.to_string();
                    self.ctx.stat(&device, |s| {
                        s.peer_id = Some(peer_id);
                        s.connected = true;
                        s.address = Some(address.clone());
                        s.connected_since_ms = Some(now_ms());
                    });
                    info!(peer = %peer_id, %address, "peer connected");
                    self.ctx.publish([Event::PeerUp {
                        device_id: device.to_hex(),
                        address,
                    }]);
                    if !self.sessions.contains_key(&peer_id) {
                        self.start_session(peer_id, device);
                    }
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                cause,
                ..
            } => {
                let was_relayed = self.relayed.get_mut(&peer_id).is_some_and(|ids| {
                    let before = ids.len();
                    ids.retain(|c| *c != connection_id);
                    ids.len() != before
                });
                if self.relayed.get(&peer_id).is_some_and(Vec::is_empty) {
                    self.relayed.remove(&peer_id);
                }
                if num_established > 0 {
                    if was_relayed {
                        // A direct connection remains: the session, if it
                        // ran on the relayed one, starts again there.
                        self.moved_at.insert(peer_id, Instant::now());
                        if let Some(device) = self.is_allowed(&peer_id) {
                            self.ctx.stat(&device, |s| s.path = Some(nat::Path::Direct));
                        }
                    }
                    return;
                }
                self.reserved.remove(&peer_id);
                self.moved_at.remove(&peer_id);
                if self.guests.remove(&peer_id).is_some() {
                    debug!(peer = %peer_id, "guest disconnected");
                    return;
                }
                let had_session = self.sessions.remove(&peer_id).is_some();
                self.early_streams.remove(&peer_id);
                // By the stats, not the allowed list: a peer cut off for no
                // longer being allowed is gone from that list already.
                let device = self
                    .ctx
                    .status()
                    .peers
                    .iter()
                    .find(|(_, s)| s.peer_id == Some(peer_id))
                    .map(|(d, _)| *d);
                if let Some(device) = device {
                    let was = self.ctx.stat(&device, |s| {
                        let was = s.connected;
                        s.connected = false;
                        s.connected_since_ms = None;
                        was
                    });
                    if was || had_session {
                        let reason = cause
                            .map(|c| c.to_string())
                            .unwrap_or_else(|| "closed".into());
                        info!(peer = %peer_id, %reason, "peer disconnected");
                        self.ctx.publish([Event::PeerDown {
                            device_id: device.to_hex(),
                            reason,
                        }]);
                    }
                }
                if let Some(r) = self.redial.get_mut(&peer_id) {
                    r.next_at = Instant::now() + backoff(r.attempt);
                }
                for s in &mut self.statics {
                    if s.peer == Some(peer_id) {
                        s.next_at = Instant::now() + backoff(s.attempt);
                    }
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                debug!(peer = ?peer_id, error = %error, "dial failed");
                self.dial_failed(peer_id, &error);
                if let Some(r) = peer_id.and_then(|p| self.redial.get_mut(&p)) {
                    r.attempt = r.attempt.saturating_add(1);
                    r.next_at = Instant::now() + backoff(r.attempt);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(dcutr::Event {
                remote_peer_id,
                result,
            })) => match result {
                Ok(_) => {
                    info!(peer = %remote_peer_id, "hole punched: a direct connection replaces the relayed one");
                    self.ctx.update_status(|s| s.hole_punches.succeeded += 1);
                    self.moved_at.insert(remote_peer_id, Instant::now());
                    for id in self.relayed.remove(&remote_peer_id).unwrap_or_default() {
                        self.swarm.close_connection(id);
                    }
                }
                Err(e) => {
                    info!(peer = %remote_peer_id, error = %e, "hole punch failed: staying relayed");
                    self.ctx.update_status(|s| s.hole_punches.failed += 1);
                }
            },
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(autonat::Event::StatusChanged {
                new,
                ..
            })) => {
                let nat = match new {
                    autonat::NatStatus::Public(_) => "public",
                    autonat::NatStatus::Private => "private",
                    autonat::NatStatus::Unknown => "unknown",
                };
                info!(nat, "AutoNAT status");
                self.ctx.update_status(|s| s.nat = Some(nat.to_string()));
            }
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(
                relay::client::Event::ReservationReqAccepted { relay_peer_id, .. },
            )) => {
                debug!(relay = %relay_peer_id, "circuit reservation accepted");
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                info!(%address, "reachable from outside at");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event { peer, result, .. })) => {
                let Some(device) = self.is_allowed(&peer) else {
                    return;
                };
                match result {
                    Ok(rtt) => self.ctx.stat(&device, |s| {
                        s.last_contact_ms = Some(now_ms());
                        s.rtt_ms = Some(rtt.as_millis() as u64);
                    }),
                    Err(e) => debug!(%peer, error = %e, "ping failed"),
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                // A relay never dials: the team's devices dial it.
                if self.ctx.config.relay || self.is_allowed(&peer_id).is_none() {
                    return;
                }
                let r = self.redial.entry(peer_id).or_insert(Redial {
                    addrs: Vec::new(),
                    attempt: 0,
                    next_at: Instant::now(),
                });
                for a in info.listen_addrs {
                    if discovery::dialable(&a) && !r.addrs.contains(&a) && r.addrs.len() < 16 {
                        r.addrs.push(a);
                    }
                }
            }
            _ => {}
        }
    }

    /// Remembers why a dial failed, for `coffer doctor`: on the device's
    /// stats, and on the `--peer` addresses it tried.
    fn dial_failed(&mut self, peer: Option<PeerId>, error: &libp2p::swarm::DialError) {
        use coffer_ipc::doctor::DialErrorKind;
        let failures = dial_error::failures(error, now_ms());
        if failures.is_empty() {
            return;
        }
        for s in &mut self.statics {
            let bare = s.addr.to_string();
            if let Some(f) = failures
                .iter()
                .find(|f| f.address.as_deref() == Some(bare.as_str()))
            {
                s.last_error = Some(f.clone());
            }
        }
        // The most telling failure: one that names a cause.
        let telling = failures
            .iter()
            .find(|f| !matches!(f.kind, DialErrorKind::Other | DialErrorKind::BadAddress))
            .or(failures.first())
            .cloned();
        if let (Some(device), Some(f)) = (peer.and_then(|p| self.is_allowed(&p)), telling) {
            self.ctx.stat(&device, |s| s.last_dial_error = Some(f));
        }
    }

    /// Dials static addresses and known peers whose backoff expired.
    fn dial_due(&mut self) {
        let now = Instant::now();
        for i in 0..self.statics.len() {
            let s = &self.statics[i];
            if s.next_at > now || s.peer.is_some_and(|p| self.swarm.is_connected(&p)) {
                continue;
            }
            let opts = match s.peer {
                Some(p) => DialOpts::peer_id(p)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .addresses(vec![s.addr.clone()])
                    .build(),
                None => DialOpts::unknown_peer_id().address(s.addr.clone()).build(),
            };
            let s = &mut self.statics[i];
            s.attempt = s.attempt.saturating_add(1);
            s.next_at = now + backoff(s.attempt);
            if let Err(e) = self.swarm.dial(opts) {
                debug!(error = %e, "cannot dial a static peer");
            }
        }
        let due: Vec<(PeerId, Vec<Multiaddr>)> = self
            .redial
            .iter()
            .filter(|(p, r)| r.next_at <= now && !self.swarm.is_connected(p))
            .filter(|(p, _)| self.is_allowed(p).is_some())
            .map(|(p, r)| {
                let mut addrs = r.addrs.clone();
                addrs.extend(self.circuits_to(p));
                (*p, addrs)
            })
            .filter(|(_, addrs)| !addrs.is_empty())
            .collect();
        for (peer, addrs) in due {
            if let Some(r) = self.redial.get_mut(&peer) {
                r.attempt = r.attempt.saturating_add(1);
                r.next_at = now + backoff(r.attempt);
            }
            let opts = DialOpts::peer_id(peer)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .addresses(addrs)
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                debug!(%peer, error = %e, "cannot dial");
            }
        }
        // Known peers with no address yet are reached when they dial us or
        // mDNS finds them.
    }
}

/// How long after a move from a relayed connection to a direct one the
/// sessions may start again on it.
const MOVE_WINDOW: Duration = Duration::from_secs(10);

/// A refused or lost circuit reservation is asked for again after this.
const RESERVE_RETRY: Duration = Duration::from_secs(5);

impl Actor {
    /// A team relay this device is connected to: reserve a circuit there
    /// (listen through it), so devices behind other NATs reach this one.
    fn reserve(&mut self, relay: PeerId) {
        if self.reserved.contains(&relay)
            || self
                .reserve_after
                .get(&relay)
                .is_some_and(|t| *t > Instant::now())
        {
            return;
        }
        let Some(addr) = self.relays.get(&relay).and_then(|a| a.first()) else {
            return;
        };
        let circuit = nat::circuit_listen(addr, relay);
        match self.swarm.listen_on(circuit.clone()) {
            Ok(id) => {
                info!(%circuit, "reserving a circuit at the relay");
                self.reserved.insert(relay);
                self.circuit_listeners.insert(id, relay);
            }
            Err(e) => {
                warn!(%circuit, error = %e, "cannot listen through the relay");
                self.reserve_after
                    .insert(relay, Instant::now() + RESERVE_RETRY);
            }
        }
    }

    fn moved_recently(&self, peer: &PeerId) -> bool {
        self.moved_at
            .get(peer)
            .is_some_and(|t| t.elapsed() < MOVE_WINDOW)
    }

    /// Reservations lost or refused are asked for again while connected.
    fn reserve_due(&mut self) {
        let due: Vec<PeerId> = self
            .relays
            .keys()
            .filter(|r| !self.reserved.contains(r) && self.swarm.is_connected(r))
            .copied()
            .collect();
        for relay in due {
            self.reserve(relay);
        }
    }

    /// Addresses of `peer` through each of the team's relays (none for a
    /// relay itself, nor on a relay).
    fn circuits_to(&self, peer: &PeerId) -> Vec<Multiaddr> {
        if self.ctx.config.relay || self.relays.contains_key(peer) {
            return Vec::new();
        }
        self.relays
            .iter()
            .filter_map(|(relay, addrs)| Some(nat::circuit_to(addrs.first()?, *relay)))
            .collect()
    }

    /// With relays, every allowed device is worth dialling through them,
    /// even one whose address this device never learnt.
    fn routes_through_relays(&mut self) {
        if self.ctx.config.relay || self.relays.is_empty() {
            return;
        }
        let now = Instant::now();
        let peers: Vec<PeerId> = self
            .allowed
            .keys()
            .filter_map(super::peer_id_of)
            .filter(|p| *p != self.local && !self.relays.contains_key(p))
            .collect();
        for peer in peers {
            self.redial.entry(peer).or_insert(Redial {
                addrs: Vec::new(),
                attempt: 0,
                next_at: now,
            });
        }
    }
}

/// The allowed devices by transport key. A key two devices claim names
/// neither (the roster makes that impossible; refusing beats guessing).
fn by_transport(allowed: BTreeMap<DeviceId, [u8; 32]>) -> BTreeMap<[u8; 32], DeviceId> {
    let mut out = BTreeMap::new();
    let mut claimed_twice = Vec::new();
    for (device, transport) in allowed {
        if out.insert(transport, device).is_some() {
            claimed_twice.push(transport);
        }
    }
    for t in claimed_twice {
        warn!(transport = %hex::encode(&t[..4]), "two devices claim one transport key: neither is served");
        out.remove(&t);
    }
    out
}

type Guests = HashMap<PeerId, (Instant, Option<std::net::IpAddr>)>;

/// Whether one more guest from `from` fits: [`enrol::MAX_GUESTS`] in all,
/// [`enrol::MAX_GUESTS_PER_ADDRESS`] per source address.
fn guest_slot_free(guests: &Guests, from: Option<std::net::IpAddr>) -> bool {
    let same_source = guests
        .values()
        .filter(|(_, ip)| ip.is_some() && *ip == from)
        .count();
    guests.len() < enrol::MAX_GUESTS && same_source < enrol::MAX_GUESTS_PER_ADDRESS
}

/// The IP address of a multiaddr, if it has one.
fn remote_ip(addr: &Multiaddr) -> Option<std::net::IpAddr> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::Ip4(ip) => Some(ip.into()),
        libp2p::multiaddr::Protocol::Ip6(ip) => Some(ip.into()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transport_key_two_devices_claim_names_neither() {
        let (a, b, c) = (DeviceId([1; 32]), DeviceId([2; 32]), DeviceId([3; 32]));
        let map = by_transport(BTreeMap::from([(a, [7; 32]), (b, [7; 32]), (c, [9; 32])]));
        assert_eq!(map, BTreeMap::from([([9; 32], c)]));
    }

    /// Issue 20, item 10: throwaway identities from one host hold at most
    /// two guest slots; another host still finds one.
    #[test]
    fn guest_slots_are_shared_out_per_source_address() {
        let mut guests = Guests::new();
        let lan_neighbour: std::net::IpAddr = "192.168.1.66".parse().unwrap();
        let joiner: std::net::IpAddr = "192.168.1.20".parse().unwrap();
        let until = Instant::now() + enrol::GUEST_GRACE;
        for _ in 0..enrol::MAX_GUESTS_PER_ADDRESS {
            assert!(guest_slot_free(&guests, Some(lan_neighbour)));
            guests.insert(PeerId::random(), (until, Some(lan_neighbour)));
        }
        assert!(!guest_slot_free(&guests, Some(lan_neighbour)));
        assert!(guest_slot_free(&guests, Some(joiner)));
        // The total bound holds across addresses.
        for i in 0..enrol::MAX_GUESTS {
            let ip = std::net::IpAddr::from([10, 0, 0, i as u8]);
            guests.insert(PeerId::random(), (until, Some(ip)));
        }
        assert!(!guest_slot_free(&guests, Some(joiner)));
        assert_eq!(
            remote_ip(&"/ip4/10.1.2.3/tcp/7373".parse().unwrap()),
            Some("10.1.2.3".parse().unwrap())
        );
    }
}
