//! Peer-to-peer sync: the libp2p swarm, the sync protocol and LAN discovery.
//!
//! Actors, each owned by one task (see `docs/ARCHITECTURE.md`):
//! - the **swarm actor** ([`swarm`]) owns the libp2p `Swarm`: listening,
//!   dialling (static `--peer` addresses, mDNS finds, known peers) with
//!   backoff, the roster check right after the Noise handshake, and one
//!   session per allowed peer. Input: [`Command`] on a bounded channel.
//! - a **session** per connected peer ([`session`]): reads the peer's
//!   stream and hands each message to the replica (a call on the vault
//!   actor), and a writer task that sends what the replica's
//!   `poll_transmit` gives whenever it says it has something.
//! - **discovery** ([`discovery`]): an `mdns-sd` DNS-SD service
//!   `_coffer._tcp` advertised and browsed; finds go to the swarm actor.
//!
//! The identity is the device's Ed25519 key (PeerId = device id). The
//! network starts once that key is available: at boot when a sealed copy
//! exists (see [`crate::vault::Vault::network_secret`]), else at init or
//! the first unlock. Which devices it talks to is the replica's
//! `AllowedPeers`, watched.

mod dial_error;
pub mod discovery;
pub mod enrol;
pub mod nat;
pub mod protocol;
mod session;
mod swarm;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use coffer_crdt::DeviceId;
use coffer_ipc::doctor::{self, DialFailure};
use coffer_ipc::Event;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{broadcast, mpsc, oneshot, watch, Notify};
use tracing::{info, warn};

use crate::vault::actor::VaultHandle;

/// The default TCP port (falls back to an ephemeral port when taken).
pub const DEFAULT_PORT: u16 = 7373;

/// The network settings: flags over `config.toml`.
#[derive(Clone, Debug, Default)]
pub struct NetConfig {
    /// Addresses to listen on; empty means the default
    /// (`/ip4/0.0.0.0/tcp/7373`, else an ephemeral port).
    pub listen: Vec<Multiaddr>,
    /// Static peers, dialled at start and redialled with backoff.
    pub peers: Vec<Multiaddr>,
    /// Advertise and browse `_coffer._tcp` with mDNS.
    pub mdns: bool,
    /// Turn the network off entirely.
    pub disabled: bool,
    /// A keyless relay (`cofferd --relay`): every peer may connect and
    /// open a session; the relay decides what counts (a roster naming it).
    pub relay: bool,
    /// Do not try DCUtR hole punching (stay relayed: `--no-hole-punch`).
    pub no_hole_punch: bool,
    /// For tests only (`--sync-v2-only`, hidden): speak `/coffer/sync/2`
    /// alone, as a daemon from before `/coffer/sync/3`, to show that a
    /// mixed pair syncs.
    pub sync_v2_only: bool,
}

impl NetConfig {
    /// The TCP ports the swarm listens on (the default port when none is
    /// set). libp2p dials *from* its listen port (port reuse), binding
    /// `0.0.0.0:PORT`: any other socket on that port, on any address,
    /// makes every outgoing dial fail (`AddrInUse`). The web app keeps
    /// off these ports.
    pub fn tcp_listen_ports(&self) -> Vec<u16> {
        if self.disabled {
            return Vec::new();
        }
        if self.listen.is_empty() {
            return vec![DEFAULT_PORT];
        }
        self.listen
            .iter()
            .flat_map(|a| a.iter())
            .filter_map(|p| match p {
                libp2p::multiaddr::Protocol::Tcp(port) if port != 0 => Some(port),
                _ => None,
            })
            .collect()
    }
}

/// The libp2p PeerId of a transport key (an Ed25519 public key). A
/// device's transport key is not its signing key: the replica maps one to
/// the other (`AllowedPeers`).
pub fn peer_id_of(transport: &[u8; 32]) -> Option<PeerId> {
    let pk = libp2p::identity::ed25519::PublicKey::try_from_bytes(transport).ok()?;
    Some(libp2p::identity::PublicKey::from(pk).to_peer_id())
}

/// The transport key behind a PeerId, if it is an inline Ed25519 key.
pub fn transport_of(peer: &PeerId) -> Option<[u8; 32]> {
    let mh = peer.as_ref();
    if mh.code() != 0 {
        return None;
    }
    let pk = libp2p::identity::PublicKey::try_decode_protobuf(mh.digest()).ok()?;
    let ed = pk.try_into_ed25519().ok()?;
    Some(ed.to_bytes())
}

/// An address without its `/p2p/PEER` part, and that peer.
pub(crate) fn without_p2p(addr: &Multiaddr) -> (Multiaddr, Option<PeerId>) {
    let mut out = Multiaddr::empty();
    let mut peer = None;
    for p in addr.iter() {
        match p {
            libp2p::multiaddr::Protocol::P2p(id) => peer = Some(id),
            other => out.push(other),
        }
    }
    (out, peer)
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Input of the swarm actor.
pub(crate) enum Command {
    /// The replica's `AllowedPeers` changed: read them from `Ctx::allowed`
    /// (the latest, never a stale queued copy).
    AllowedChanged,
    /// `coffer sync now`.
    SyncNow(oneshot::Sender<(usize, usize)>),
    /// The team's relays and their addresses (`RosterOp::AddRelay`): read
    /// them from `Ctx::relays`.
    RelaysChanged,
    /// mDNS found a peer (`mdns`), or an enrolment learnt its addresses.
    Discovered {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        mdns: bool,
    },
    /// `coffer doctor`: the addresses known for each peer and the
    /// `--peer` addresses.
    Dialling(oneshot::Sender<Dialling>),
    /// A peer's session ended (stream closed, protocol violation).
    SessionEnded {
        peer: PeerId,
        session: u64,
        reason: String,
        violation: bool,
    },
}

/// A connected peer that answered no ping for this long is shown as
/// silent (a partition, or a peer that hung): three ping rounds.
pub const SILENT_AFTER: Duration = Duration::from_secs(20);

/// Per-peer counters shown by `coffer peers`.
#[derive(Clone, Debug, Default)]
pub(crate) struct PeerStat {
    pub peer_id: Option<PeerId>,
    pub connected: bool,
    pub address: Option<String>,
    pub connected_since_ms: Option<i64>,
    pub last_sync_ms: Option<i64>,
    /// When it last answered a ping (on any connection).
    pub last_contact_ms: Option<i64>,
    pub rtt_ms: Option<u64>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub envelopes_sent: u64,
    pub envelopes_received: u64,
    /// The last dial of it that failed (cleared when it connects).
    pub last_dial_error: Option<DialFailure>,
    /// Its wall clock minus ours (ms), from its `Time` message, and when.
    pub clock_offset_ms: Option<i64>,
    pub clock_measured_ms: Option<i64>,
    /// How the current connection runs (lan, direct, relayed).
    pub path: Option<nat::Path>,
    /// The sync protocol the current session's outbound stream negotiated.
    pub sync_protocol: Option<&'static str>,
}

impl PeerStat {
    /// Connected, but no answer to a ping for [`SILENT_AFTER`].
    pub fn silent(&self, now_ms: i64) -> bool {
        self.connected
            && now_ms.saturating_sub(
                self.last_contact_ms
                    .or(self.connected_since_ms)
                    .unwrap_or(0),
            ) > SILENT_AFTER.as_millis() as i64
    }
}

/// Whether mDNS runs.
#[derive(Clone, Debug, Default)]
pub(crate) enum MdnsState {
    /// Off (`--no-mdns`), or not started yet (no listen address yet).
    #[default]
    Off,
    Running,
    /// It could not start, and why.
    Failed(String),
}

/// A Coffer device heard announcing itself with mDNS.
#[derive(Clone, Debug)]
pub(crate) struct Sighting {
    pub count: u64,
    pub first_ms: i64,
    pub last_ms: i64,
    pub addrs: Vec<Multiaddr>,
}

/// Most devices whose mDNS announcements are remembered (the oldest go).
pub(crate) const MAX_SIGHTINGS: usize = 64;
/// Most addresses remembered per sighting.
const MAX_SIGHTING_ADDRS: usize = 8;

#[derive(Debug, Default)]
pub(crate) struct Status {
    pub running: bool,
    /// When the swarm started.
    pub started_ms: Option<i64>,
    pub listen: Vec<String>,
    pub peers: BTreeMap<DeviceId, PeerStat>,
    pub mdns: MdnsState,
    /// Every device heard with mDNS since start, of this team or not.
    pub heard: BTreeMap<PeerId, Sighting>,
    /// AutoNAT's verdict on this device ("public", "private", "unknown").
    pub nat: Option<String>,
    /// DCUtR hole punches since start.
    pub hole_punches: coffer_ipc::methods::HolePunches,
}

impl Status {
    /// Remembers an mDNS announcement of `peer` at `addrs`.
    pub fn heard(&mut self, peer: PeerId, addrs: &[Multiaddr], now_ms: i64) {
        if !self.heard.contains_key(&peer) && self.heard.len() >= MAX_SIGHTINGS {
            let oldest = self
                .heard
                .iter()
                .min_by_key(|(_, s)| s.last_ms)
                .map(|(p, _)| *p);
            if let Some(p) = oldest {
                self.heard.remove(&p);
            }
        }
        let s = self.heard.entry(peer).or_insert(Sighting {
            count: 0,
            first_ms: now_ms,
            last_ms: now_ms,
            addrs: Vec::new(),
        });
        s.count = s.count.saturating_add(1);
        s.last_ms = now_ms;
        for a in addrs {
            if !s.addrs.contains(a) && s.addrs.len() < MAX_SIGHTING_ADDRS {
                s.addrs.push(a.clone());
            }
        }
    }
}

/// What the swarm actor dials, for `coffer doctor`.
#[derive(Debug, Default)]
pub(crate) struct Dialling {
    /// The addresses known for each peer (mDNS, identify, past dials).
    pub known: BTreeMap<PeerId, Vec<Multiaddr>>,
    /// `--peer` addresses: the peer found there, whether connected, and
    /// the last failure.
    pub statics: Vec<(Multiaddr, Option<PeerId>, bool, Option<DialFailure>)>,
}

/// What the actors share: the vault, the event bus and the status table.
pub(crate) struct Ctx {
    pub vault: VaultHandle,
    pub events: broadcast::Sender<Event>,
    /// Published by the swarm and session tasks, read by the IPC server:
    /// a `watch` channel, so no task waits on another's lock.
    pub status: watch::Sender<Status>,
    pub cmd: mpsc::Sender<Command>,
    pub config: NetConfig,
    /// Open invites and joins waiting for confirmation (memory only).
    pub invites: Mutex<enrol::InviteTable>,
    /// The replica's allowed peers, as they are now.
    pub allowed: watch::Receiver<BTreeMap<DeviceId, [u8; 32]>>,
    /// The team's relays (device id = transport key) and their addresses.
    pub relays: watch::Receiver<BTreeMap<DeviceId, Vec<String>>>,
    /// Whether the swarm actor runs (it waits for the device's identity):
    /// until then nothing answers a command that waits for a reply.
    pub swarm_running: AtomicBool,
}

impl Ctx {
    /// The status as published now (hold it only briefly: writers wait).
    pub fn status(&self) -> watch::Ref<'_, Status> {
        self.status.borrow()
    }

    pub fn update_status(&self, f: impl FnOnce(&mut Status)) {
        self.status.send_modify(f);
    }

    pub fn publish(&self, events: impl IntoIterator<Item = Event>) {
        for e in events {
            let _ = self.events.send(e);
        }
    }

    pub fn stat<R>(&self, device: &DeviceId, f: impl FnOnce(&mut PeerStat) -> R) -> R {
        let mut out = None;
        self.status
            .send_modify(|s| out = Some(f(s.peers.entry(*device).or_default())));
        out.expect("send_modify runs its closure")
    }
}

/// The handle the IPC server holds. Cheap to clone.
#[derive(Clone)]
pub struct Net {
    ctx: Arc<Ctx>,
    identity_ready: Arc<Notify>,
}

impl Net {
    /// Starts the network task: it waits for the device identity, then runs
    /// the swarm until the process ends.
    pub fn spawn(
        config: NetConfig,
        vault: VaultHandle,
        events: broadcast::Sender<Event>,
        mut allowed: watch::Receiver<BTreeMap<DeviceId, [u8; 32]>>,
        mut relays: watch::Receiver<BTreeMap<DeviceId, Vec<String>>>,
    ) -> Net {
        let (cmd, rx) = mpsc::channel(256);
        let ctx = Arc::new(Ctx {
            vault,
            events,
            status: watch::Sender::new(Status::default()),
            cmd,
            config,
            invites: Mutex::new(enrol::InviteTable::default()),
            allowed: allowed.clone(),
            relays: relays.clone(),
            swarm_running: AtomicBool::new(false),
        });
        let identity_ready = Arc::new(Notify::new());
        let net = Net {
            ctx: ctx.clone(),
            identity_ready: identity_ready.clone(),
        };
        if ctx.config.disabled {
            info!("network disabled");
            return net;
        }
        // The replica decides who this device syncs with; the swarm follows.
        let cmd = ctx.cmd.clone();
        tokio::spawn(async move {
            while allowed.changed().await.is_ok() {
                if cmd.send(Command::AllowedChanged).await.is_err() {
                    return;
                }
            }
        });
        let cmd = ctx.cmd.clone();
        tokio::spawn(async move {
            while relays.changed().await.is_ok() {
                if cmd.send(Command::RelaysChanged).await.is_err() {
                    return;
                }
            }
        });
        tokio::spawn(async move {
            let seed = loop {
                let got = ctx.vault.call_quiet(|v| v.network_secret()).await;
                match got {
                    Ok(Some(seed)) => break seed,
                    Ok(None) => {}
                    Err(e) => warn!(error = %e, "network identity unavailable"),
                }
                identity_ready.notified().await;
            };
            let allowed_now = ctx.allowed.borrow().clone();
            ctx.swarm_running.store(true, Ordering::Release);
            if let Err(e) = swarm::run(ctx, seed, rx, allowed_now).await {
                warn!(error = %e, "the network stopped");
            }
        });
        net
    }

    /// Called after init and unlock: the identity may be available now.
    pub fn identity_maybe_ready(&self) {
        self.identity_ready.notify_one();
    }

    /// The inviter's table of open invites and pending joins.
    pub fn invites(&self) -> MutexGuard<'_, enrol::InviteTable> {
        self.ctx.invites.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The network settings.
    pub fn config(&self) -> &NetConfig {
        &self.ctx.config
    }

    /// The listen addresses another device on the LAN can dial (no
    /// loopback or link-local IPv6; IPv4 first): the `--peer` hint.
    pub fn reachable_addrs(&self) -> Vec<String> {
        discovery::reachable_by_others(&self.ctx.status().listen)
    }

    /// A device this one now syncs with was reached at `addrs` (after an
    /// enrolment): remember them for dialling. Queued until the swarm runs.
    pub fn learned(&self, peer: PeerId, addrs: Vec<Multiaddr>) {
        let _ = self.ctx.cmd.try_send(Command::Discovered {
            peer,
            addrs,
            mdns: false,
        });
    }

    /// `coffer sync now`: (peers asked, peers being dialled).
    pub fn sync_now(&self) -> (usize, usize) {
        if !self.ctx.swarm_running.load(Ordering::Acquire) {
            // No identity yet (before `coffer init` or a join): no peers.
            return (0, 0);
        }
        let (tx, rx) = oneshot::channel();
        if self.ctx.cmd.try_send(Command::SyncNow(tx)).is_err() {
            return (0, 0);
        }
        rx.blocking_recv().unwrap_or((0, 0))
    }

    /// The last contact with each peer since this daemon started: a ping
    /// answered, envelopes or a caught-up, or a connection made (Unix ms).
    pub fn last_seen(&self) -> BTreeMap<DeviceId, i64> {
        self.ctx
            .status()
            .peers
            .iter()
            .filter_map(|(d, s)| {
                let t = [s.last_contact_ms, s.last_sync_ms, s.connected_since_ms]
                    .into_iter()
                    .flatten()
                    .max()?;
                Some((*d, t))
            })
            .collect()
    }

    /// Whether a session-worthy connection to `device` is up.
    pub fn is_connected(&self, device: &DeviceId) -> bool {
        self.ctx
            .status()
            .peers
            .get(device)
            .is_some_and(|s| s.connected)
    }

    /// Every address the swarm listens on.
    pub fn listen_addrs(&self) -> Vec<String> {
        self.ctx.status().listen.clone()
    }

    /// `coffer peers`: the devices this one syncs with (`allowed`, with
    /// the names they were paired under) and any connected.
    pub fn peers(
        &self,
        allowed: BTreeSet<DeviceId>,
        names: &BTreeMap<DeviceId, String>,
    ) -> coffer_ipc::methods::PeersResult {
        use coffer_ipc::methods::{PeerInfo, PeersResult};
        let status = self.ctx.status();
        let mut devices: BTreeSet<DeviceId> = allowed;
        devices.extend(
            status
                .peers
                .iter()
                .filter(|(_, s)| s.connected)
                .map(|(d, _)| *d),
        );
        let peers = devices
            .into_iter()
            .map(|d| {
                let s = status.peers.get(&d).cloned().unwrap_or_default();
                PeerInfo {
                    device_id: d.to_hex(),
                    peer_id: s.peer_id.map(|p| p.to_string()).unwrap_or_default(),
                    name: names.get(&d).cloned(),
                    user: None,
                    connected: s.connected,
                    address: s.address.clone(),
                    connected_since_ms: s.connected_since_ms,
                    last_sync_ms: s.last_sync_ms,
                    last_contact_ms: s.last_contact_ms,
                    rtt_ms: s.rtt_ms,
                    silent: s.silent(now_ms()),
                    bytes_sent: s.bytes_sent,
                    bytes_received: s.bytes_received,
                    envelopes_sent: s.envelopes_sent,
                    envelopes_received: s.envelopes_received,
                    path: s
                        .path
                        .filter(|_| s.connected)
                        .map(|p| p.as_str().to_string()),
                    sync_protocol: s.sync_protocol.filter(|_| s.connected).map(str::to_string),
                }
            })
            .collect();
        PeersResult {
            running: status.running,
            listen: status.listen.clone(),
            mdns: self.ctx.config.mdns,
            peers,
            nat: status.nat.clone(),
            hole_punches: status.hole_punches,
        }
    }
}

impl Net {
    /// What the swarm actor dials. Nothing before the swarm runs (commands
    /// wait in its queue until then), and nothing if it does not answer
    /// within [`DIALLING_WAIT`].
    fn dialling(&self) -> Dialling {
        if !self.ctx.status().running {
            return Dialling::default();
        }
        let (tx, mut rx) = oneshot::channel();
        if self.ctx.cmd.try_send(Command::Dialling(tx)).is_err() {
            return Dialling::default();
        }
        let deadline = std::time::Instant::now() + DIALLING_WAIT;
        loop {
            match rx.try_recv() {
                Ok(d) => return d,
                Err(oneshot::error::TryRecvError::Closed) => return Dialling::default(),
                Err(oneshot::error::TryRecvError::Empty) => {
                    if std::time::Instant::now() >= deadline {
                        return Dialling::default();
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }

    /// `coffer doctor`: the network's facts, and those of each device this
    /// one syncs with (`partners`, labelled with `names`). Blocks briefly on
    /// the swarm actor (run it on the blocking pool).
    pub fn doctor(
        &self,
        partners: BTreeSet<DeviceId>,
        names: &BTreeMap<DeviceId, String>,
    ) -> (doctor::NetworkFacts, Vec<doctor::DeviceFacts>) {
        let dialling = self.dialling();
        let allowed = self.ctx.allowed.borrow().clone();
        let team_of = |peer: &PeerId| -> Option<DeviceId> {
            let t = transport_of(peer)?;
            allowed
                .iter()
                .find(|(d, k)| **k == t && partners.contains(d))
                .map(|(d, _)| *d)
        };
        let status = self.ctx.status();
        let now = now_ms();
        let (mdns_running, mdns_error) = match &status.mdns {
            MdnsState::Off => (false, None),
            MdnsState::Running => (true, None),
            MdnsState::Failed(e) => (false, Some(e.clone())),
        };
        let heard = status
            .heard
            .iter()
            .map(|(peer, s)| {
                let device = team_of(peer);
                doctor::Sighting {
                    peer_id: peer.to_string(),
                    in_team: device.is_some(),
                    device_id: device.map(|d| d.to_hex()),
                    count: s.count,
                    first_ms: s.first_ms,
                    last_ms: s.last_ms,
                    addresses: s.addrs.iter().map(|a| a.to_string()).collect(),
                }
            })
            .collect();
        let network = doctor::NetworkFacts {
            enabled: !self.ctx.config.disabled,
            running: status.running,
            started_ms: status.started_ms,
            listen: status.listen.clone(),
            reachable: discovery::reachable_by_others(&status.listen),
            mdns: doctor::MdnsFacts {
                enabled: self.ctx.config.mdns,
                running: mdns_running,
                error: mdns_error,
                heard,
            },
            static_peers: dialling
                .statics
                .iter()
                .map(|(addr, peer, connected, err)| doctor::StaticPeerFacts {
                    address: addr.to_string(),
                    peer_id: peer.map(|p| p.to_string()),
                    connected: *connected,
                    last_error: err.clone(),
                })
                .collect(),
        };
        let devices = partners
            .iter()
            .map(|d| {
                let s = status.peers.get(d).cloned().unwrap_or_default();
                let peer = s.peer_id.or_else(|| allowed.get(d).and_then(peer_id_of));
                let addresses = peer
                    .and_then(|p| dialling.known.get(&p))
                    .map(|v| v.iter().map(|a| a.to_string()).collect())
                    .unwrap_or_default();
                let silent = s.silent(now);
                doctor::DeviceFacts {
                    device_id: d.to_hex(),
                    peer_id: peer.map(|p| p.to_string()),
                    name: names.get(d).cloned(),
                    connected: s.connected,
                    silent,
                    address: s.address.clone(),
                    last_contact_ms: s.last_contact_ms,
                    rtt_ms: s.rtt_ms,
                    last_sync_ms: s.last_sync_ms,
                    addresses,
                    last_dial_error: if s.connected {
                        None
                    } else {
                        s.last_dial_error.clone()
                    },
                    clock_offset_ms: s.clock_offset_ms,
                    clock_measured_ms: s.clock_measured_ms,
                }
            })
            .collect();
        (network, devices)
    }
}

/// How long `coffer doctor` waits for the swarm actor's dial table.
const DIALLING_WAIT: Duration = Duration::from_secs(2);

/// How long to wait before redialling after `attempt` failures.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let ms = 500u64.saturating_mul(1 << attempt.min(6));
    Duration::from_millis(ms.min(30_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_keys_and_peer_ids_correspond() {
        let seed = [7u8; 32];
        let transport = coffer_crdt::crypto::ed25519_public(&seed);
        let p = peer_id_of(&transport).expect("an Ed25519 key");
        assert_eq!(transport_of(&p), Some(transport));
        // The libp2p keypair made from the seed has the same PeerId.
        let kp = libp2p::identity::Keypair::ed25519_from_bytes(seed).unwrap();
        assert_eq!(kp.public().to_peer_id(), p);
        assert_eq!(backoff(0), Duration::from_millis(500));
        assert_eq!(backoff(20), Duration::from_secs(30));
    }
}
