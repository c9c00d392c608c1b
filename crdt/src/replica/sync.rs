//! Sync planning: what this device tells a peer it holds, what the peer
//! lacks, and taking in what a peer sends. Per shared space: exchange chain
//! heads, send what the other lacks (control ops first, each author's chain
//! in order), push new envelopes as they are held. On `/coffer/sync/3`
//! heads are exchanged only for the spaces whose digests differ
//! (`HelloDigest`, `SpaceDigests`, `Tips`). The message types are in
//! `crate::sync_wire` (re-exported here); their encoding and framing are
//! the daemon's (`net/protocol.rs`).
//!
//! A peer may send envelopes only of a space it shares with this device:
//! the roster if it is a live device of the team, a folder if it is one of
//! its member devices. A folder this device does not hold is kept only if
//! its accepted state (or a grant still waiting for its context) makes this
//! device a member.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use super::{Event, Persist, Replica, SpaceKind};
use crate::envelope::{Envelope, Kind};
use crate::ids::{DeviceId, EnvelopeId, SpaceId};
use crate::ops::{ControlOp, MembershipOp, Principal};
use crate::space::{IngestError, Space};
pub use crate::sync_wire::{
    PeerErrorCode, SpaceSummary, SyncMessage, SyncWire, Tip, MAX_BATCH_BYTES, MAX_BATCH_ENVELOPES,
    MAX_SPACES, MAX_TIPS, MIN_SYNC_VERSION, SYNC_VERSION, TIME_SINCE_VERSION,
};

/// The envelopes of one `Envelopes` message, each of `space`.
fn decode_batch(space: SpaceId, envelopes: &[Vec<u8>]) -> Result<Vec<Envelope>, ProtocolViolation> {
    let mut envs = Vec::with_capacity(envelopes.len());
    for bytes in envelopes {
        let env = Envelope::decode(bytes).map_err(|_| ProtocolViolation::Undecodable)?;
        if env.space() != space {
            return Err(ProtocolViolation::InvalidEnvelopes(1));
        }
        envs.push(env);
    }
    Ok(envs)
}

/// A peer broke the protocol (or closed): the session ends.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolViolation {
    #[error("the peer is not a device this one syncs with")]
    NotAllowed,
    #[error("unsupported protocol version {0}")]
    Version(u16),
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    #[error("an envelope does not decode")]
    Undecodable,
    #[error("{0} envelope(s) failed verification or belong elsewhere")]
    InvalidEnvelopes(usize),
    /// Not a violation: the peer said it closes.
    #[error("the peer reported {code:?}: {text}")]
    PeerClosed { code: PeerErrorCode, text: String },
}

impl ProtocolViolation {
    /// Whether the peer misbehaved (rather than closed, or lost its place
    /// here without knowing yet).
    pub fn is_violation(&self) -> bool {
        !matches!(
            self,
            ProtocolViolation::PeerClosed { .. } | ProtocolViolation::NotAllowed
        )
    }

    /// The code to tell the peer.
    pub fn code(&self) -> PeerErrorCode {
        match self {
            ProtocolViolation::NotAllowed => PeerErrorCode::NotAllowed,
            ProtocolViolation::Version(_) => PeerErrorCode::Version,
            ProtocolViolation::InvalidEnvelopes(_) | ProtocolViolation::Undecodable => {
                PeerErrorCode::InvalidEnvelope
            }
            _ => PeerErrorCode::Malformed,
        }
    }
}

/// Per held space: its accepted-state digest and (unlocked) its items'.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpaceDigest {
    pub space: SpaceId,
    pub accepted: [u8; 32],
    pub items: Option<[u8; 32]>,
}

/// A connected peer as the replica sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSummary {
    pub device: DeviceId,
    /// Spaces this device shares with it.
    pub spaces: Vec<SpaceId>,
    /// Envelopes queued for it.
    pub queued: usize,
}

/// What a peer holds of one author's chain in a space.
#[derive(Clone, Default)]
struct ChainHeads {
    /// Heads linked down to the chain's start (each covers its ancestors),
    /// the highest 64 of a forked chain.
    linked: Vec<(u64, EnvelopeId)>,
    /// Envelopes above a gap: each covers only itself. All are kept (only
    /// envelopes held here are noted, so at most what the space holds):
    /// forgetting one of a member's flood of unlinked envelopes sent it
    /// again with every later push.
    loose: HashSet<EnvelopeId>,
}

/// Where an envelope sits in its author's chain.
struct Link {
    space: SpaceId,
    author: DeviceId,
    seq: u64,
    id: EnvelopeId,
    prev: Option<EnvelopeId>,
}

impl Link {
    fn of(env: &Envelope) -> Link {
        Link {
            space: env.space(),
            author: env.author(),
            seq: env.seq(),
            id: env.id(),
            prev: env.body().prev,
        }
    }
}

/// Per chain, what a peer holds.
type Heads = HashMap<(SpaceId, DeviceId), ChainHeads>;

/// What this device knows of one connected peer.
#[derive(Default)]
pub(crate) struct PeerState {
    hello_sent: bool,
    hello_heard: bool,
    /// Send a `Summary`: this device lacks something the peer has.
    summary_due: bool,
    /// What the peer holds, per space.
    known: HashMap<SpaceId, Heads>,
    /// Spaces whose `Caught` is owed (answering its summary).
    owe_caught: BTreeSet<SpaceId>,
    /// `Caught` messages to send.
    caught: BTreeSet<SpaceId>,
    /// Envelopes queued for it, in send order, and which.
    queue: VecDeque<(SpaceId, EnvelopeId)>,
    queued: HashSet<EnvelopeId>,
    /// Spaces to look at again for what it lacks.
    dirty: BTreeSet<SpaceId>,
    /// A `Transmit` effect is out and not yet answered by a poll.
    woken: bool,
    /// The spaces shared with it when last looked at.
    shared: BTreeSet<SpaceId>,
    /// Folders not held here that it was asked to send again from their
    /// founding op (it sent later envelopes only, believing this device
    /// held the earlier ones it had dropped).
    asked_from_start: BTreeSet<SpaceId>,
    /// A device the team took out was sent the roster ops that say so.
    notice_queued: bool,
    /// The sync version its `Hello` announced.
    version: u16,
    /// This device's audit heads were sent.
    audit_heads_sent: bool,
    /// The audit chain heads it holds (its `AuditHeads`, then what was sent).
    pub(super) audit_heads: Option<BTreeMap<DeviceId, u64>>,
    /// What its stream negotiated: which hello it is sent.
    wire: SyncWire,
    /// Digests differed (`/coffer/sync/3`): send `SpaceDigests`.
    digests_due: bool,
    /// `SpaceDigests` went out since its last hello.
    digests_sent: bool,
    /// Spaces whose heads it is to be sent (`Tips`).
    tips_due: BTreeSet<SpaceId>,
    /// Spaces whose heads it was sent since its last hello.
    tips_sent: BTreeSet<SpaceId>,
    /// Spaces whose heads are awaited from it: nothing of them is sent
    /// until they arrive (it may hold all of it).
    awaiting: BTreeSet<SpaceId>,
}

impl PeerState {
    /// A suspended session allowed again: what it shares counts as new
    /// (so all of it goes out again with a summary), and its wake-up is
    /// owed afresh (a `Transmit` before the suspension was answered by
    /// nothing).
    pub(super) fn resumed(mut self) -> PeerState {
        self.shared.clear();
        self.woken = false;
        // Queued while it shared what it may share no more: planned again.
        self.queue.clear();
        self.queued.clear();
        self.caught.clear();
        self.owe_caught.clear();
        self.notice_queued = false;
        self.audit_heads_sent = false;
        self.audit_heads = None;
        // What is shared again goes out whole (`refresh_shares`): no
        // longer waiting for its heads.
        self.awaiting.clear();
        self
    }

    /// A hello or summary of the peer starts a new round of the exchange.
    fn new_round(&mut self) {
        self.digests_due = false;
        self.digests_sent = false;
        self.tips_due.clear();
        self.tips_sent.clear();
        self.awaiting.clear();
    }
}

fn kind_rank(k: Kind) -> u8 {
    match k {
        Kind::Roster => 0,
        Kind::Membership => 1,
        Kind::Content => 2,
        Kind::Usage => 3,
    }
}

/// The peer holds `env` now (we sent it, or it sent it). Linked as far as
/// we know if its `prev` was a linked head there.
fn note(heads: &mut Heads, env: &Link) {
    let chain = heads.entry((env.space, env.author)).or_default();
    let prev = env.prev;
    let linked = prev.is_none_or(|p| chain.linked.iter().any(|(_, id)| *id == p));
    if !linked {
        chain.loose.insert(env.id);
        return;
    }
    chain.linked.retain(|(_, id)| Some(*id) != prev);
    if !chain.linked.iter().any(|(_, id)| *id == env.id) {
        chain.linked.push((env.seq, env.id));
    }
    // A forked chain may hold many heads; only the highest matter.
    if chain.linked.len() > 64 {
        chain.linked.sort();
        chain.linked.drain(..chain.linked.len() - 64);
    }
}

/// What a peer holds of a space, by its summary.
fn heads_of(summary: SpaceSummary) -> Heads {
    let mut heads = Heads::new();
    for t in summary.tips {
        if t.space == summary.space {
            let chain = heads.entry((t.space, t.author)).or_default();
            if t.linked {
                chain.linked.push((t.seq, t.id));
            } else {
                chain.loose.insert(t.id);
            }
        }
    }
    heads
}

/// The digest of one space's heads (as its summary lists them, sorted):
/// BLAKE3 in derive-key mode over the space id and each tip.
fn space_digest(summary: &SpaceSummary) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("coffer 2026 sync space heads v1");
    h.update(&summary.space.0);
    h.update(&(summary.tips.len() as u64).to_le_bytes());
    for t in &summary.tips {
        h.update(&t.space.0);
        h.update(&t.author.0);
        h.update(&t.seq.to_le_bytes());
        h.update(&t.id.0);
        h.update(&[u8::from(t.linked)]);
    }
    *h.finalize().as_bytes()
}

/// The digest of per-space digests (in space order).
fn all_digest(spaces: &[(SpaceId, [u8; 32])]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("coffer 2026 sync shared heads v1");
    h.update(&(spaces.len() as u64).to_le_bytes());
    for (space, digest) in spaces {
        h.update(&space.0);
        h.update(digest);
    }
    *h.finalize().as_bytes()
}

impl Replica {
    /// Whether `peer` and this device share `space`.
    fn shares(&self, peer: &DeviceId, space: &SpaceId) -> bool {
        if Some(*space) == self.team_id() {
            return self
                .team_state()
                .is_some_and(|t| t.is_live_team_device(peer) || self.is_team_relay(peer));
        }
        self.folders.get(space).is_some_and(|s| {
            s.state().member_devices().contains_key(peer)
                || (self.is_team_relay(peer) && s.team().is_some() && s.team() == self.team_id())
        })
    }

    /// Whether `peer` is a relay of this device's team (never, on a relay:
    /// relays do not sync with each other).
    pub(super) fn is_team_relay(&self, peer: &DeviceId) -> bool {
        !self.keyless
            && self
                .team_state()
                .is_some_and(|t| t.team.relays.contains_key(peer))
    }

    /// The spaces `peer` shares with this device: the roster first.
    pub fn shared_with(&self, peer: &DeviceId) -> Vec<SpaceId> {
        let roster = self.team_id().filter(|t| self.shares(peer, t)).into_iter();
        roster
            .chain(
                self.folders
                    .keys()
                    .filter(|id| self.shares(peer, id))
                    .copied(),
            )
            .collect()
    }

    fn summary_of(&self, space: &SpaceId) -> Option<SpaceSummary> {
        let s = self.space(space)?;
        let mut tips: Vec<Tip> = s
            .chain_heads()
            .iter()
            .filter(|((sp, _), _)| sp == space)
            .flat_map(|((sp, author), heads)| {
                heads.iter().map(move |h| Tip {
                    space: *sp,
                    author: *author,
                    seq: h.seq,
                    id: h.id,
                    linked: h.linked,
                })
            })
            .collect();
        tips.sort_by_key(|t| (t.author, t.seq, t.id));
        tips.truncate(MAX_TIPS);
        Some(SpaceSummary {
            space: *space,
            tips,
        })
    }

    fn summaries_for(&self, peer: &DeviceId) -> Vec<SpaceSummary> {
        self.shared_with(peer)
            .iter()
            .take(MAX_SPACES)
            .filter_map(|s| self.summary_of(s))
            .collect()
    }

    /// Per space shared with `peer` (as many as a summary would carry),
    /// the digest of its heads ([`space_digest`]), in space order.
    fn space_digests_for(&self, peer: &DeviceId) -> Vec<(SpaceId, [u8; 32])> {
        let mut out: Vec<(SpaceId, [u8; 32])> = self
            .summaries_for(peer)
            .iter()
            .map(|s| (s.space, space_digest(s)))
            .collect();
        out.sort_by_key(|(s, _)| *s);
        out
    }

    /// The digest a `HelloDigest` to `peer` carries: of every space shared
    /// with it, in space order, its id and the digest of its heads. Two
    /// devices that share the same spaces and hold the same heads of each
    /// compute the same digest.
    pub fn sync_digest(&self, peer: &DeviceId) -> [u8; 32] {
        all_digest(&self.space_digests_for(peer))
    }

    /// A peer connected (its transport identity checked by the caller)
    /// over `/coffer/sync/2`: see [`Replica::peer_connected_on`].
    pub fn peer_connected(&mut self, peer: DeviceId) {
        self.peer_connected_on(peer, SyncWire::V2);
    }

    /// A peer connected (its transport identity checked by the caller);
    /// `wire` is what this side's outbound stream negotiated, so which
    /// hello the peer understands.
    pub fn peer_connected_on(&mut self, peer: DeviceId, wire: SyncWire) {
        // A new connection: whatever session an old one had is over.
        self.suspended.remove(&peer);
        if !self.allowed.contains_key(&peer) {
            return;
        }
        let shared = self.shared_with(&peer).into_iter().collect();
        self.peers.insert(
            peer,
            PeerState {
                shared,
                wire,
                ..PeerState::default()
            },
        );
        self.wake(peer);
    }

    pub fn peer_disconnected(&mut self, peer: &DeviceId) {
        self.peers.remove(peer);
        self.suspended.remove(peer);
    }

    /// The connected peers and what is queued for each.
    pub fn peers(&self) -> Vec<PeerSummary> {
        self.peers
            .iter()
            .map(|(d, st)| PeerSummary {
                device: *d,
                spaces: self.shared_with(d),
                queued: st.queue.len(),
            })
            .collect()
    }

    /// `coffer sync now`: tell every peer what this device holds, so each
    /// sends what it lacks. Returns how many were asked.
    pub fn sync_now(&mut self) -> usize {
        let peers: Vec<DeviceId> = self.peers.keys().copied().collect();
        for p in &peers {
            if let Some(st) = self.peers.get_mut(p) {
                st.summary_due = true;
            }
            self.wake(*p);
        }
        peers.len()
    }

    /// After a membership change: for a space a connected peer now shares
    /// and did not, both sides may have dropped what the other sent while
    /// it did not count as a member. Forget what the peer was believed to
    /// hold of it (all of it goes out again; it ignores duplicates) and
    /// send it a summary (so it sends again what this device lacks).
    pub(super) fn refresh_shares(&mut self) {
        let peers: Vec<DeviceId> = self.peers.keys().copied().collect();
        for p in peers {
            let now: BTreeSet<SpaceId> = self.shared_with(&p).into_iter().collect();
            let out = self.is_out(&p);
            let Some(st) = self.peers.get_mut(&p) else {
                continue;
            };
            if out && !st.notice_queued {
                // Taken out just now: it is owed the notice.
                st.shared = now;
                self.wake(p);
                continue;
            }
            let grew: Vec<SpaceId> = now.difference(&st.shared).copied().collect();
            st.shared = now;
            st.asked_from_start.clear();
            if !grew.is_empty() && st.hello_heard {
                for s in &grew {
                    st.known.remove(s);
                    st.owe_caught.insert(*s);
                }
                st.summary_due = true;
                st.dirty.extend(grew);
                self.wake(p);
            }
        }
    }

    /// Sends every peer a summary, so each sends what this device lacks.
    pub(super) fn ask_again(&mut self) {
        let peers: Vec<DeviceId> = self
            .peers
            .iter()
            .filter(|(_, st)| st.hello_heard)
            .map(|(d, _)| *d)
            .collect();
        for p in peers {
            if let Some(st) = self.peers.get_mut(&p) {
                st.summary_due = true;
                st.asked_from_start.clear();
            }
            self.wake(p);
        }
    }

    pub(super) fn wake(&mut self, peer: DeviceId) {
        if let Some(st) = self.peers.get_mut(&peer) {
            if !st.woken {
                st.woken = true;
                self.effects.push_back(super::Effect::Transmit(peer));
            }
        }
    }

    /// New envelopes of `space` are held: peers that share it may lack them.
    pub(super) fn wake_peers(&mut self, space: SpaceId) {
        let peers: Vec<DeviceId> = self.peers.keys().copied().collect();
        for p in peers {
            if self.shares(&p, &space) {
                if let Some(st) = self.peers.get_mut(&p) {
                    st.dirty.insert(space);
                }
                self.wake(p);
            }
        }
    }

    /// The held envelopes of `space` that `heads` (a peer's) do not cover:
    /// a peer holds a head and the head's own ancestors (through `prev`),
    /// nothing else we can be sure of. Control ops first, each chain in order.
    fn missing(&self, space: &SpaceId, heads: Option<&Heads>) -> Vec<Envelope> {
        let Some(s) = self.space(space) else {
            return Vec::new();
        };
        let mut covered: HashSet<EnvelopeId> = HashSet::new();
        for chain in heads.into_iter().flat_map(|h| h.values()) {
            // A gap below it there: it covers only itself.
            covered.extend(chain.loose.iter().copied());
            for (_, id) in &chain.linked {
                let mut cur = Some(*id);
                while let Some(c) = cur {
                    if !covered.insert(c) {
                        break;
                    }
                    cur = s.get(&c).and_then(|x| x.body().prev);
                }
            }
        }
        let mut out: Vec<&Envelope> = s
            .held()
            .filter(|e| e.space() == *space && !covered.contains(&e.id()))
            .collect();
        // The founding op first: a device that does not hold the folder
        // keeps a batch only with it.
        let genesis = s.state().folder.genesis;
        out.sort_by_key(|e| {
            (
                kind_rank(e.kind()),
                Some(e.id()) != genesis,
                e.author(),
                e.seq(),
                e.id(),
            )
        });
        out.into_iter().cloned().collect()
    }

    /// The next message for `peer`, if any: hello first, a summary when
    /// this device lacks something, then what the peer lacks in batches of
    /// at most [`MAX_BATCH_BYTES`], and `Caught` per space.
    pub fn poll_transmit(&mut self, peer: &DeviceId) -> Option<SyncMessage> {
        let hello_sent = self.peers.get(peer)?.hello_sent;
        if !hello_sent {
            let hello = match self.peers.get(peer)?.wire {
                SyncWire::V2 => SyncMessage::Hello {
                    version: SYNC_VERSION,
                    spaces: self.summaries_for(peer),
                },
                SyncWire::V3 => SyncMessage::HelloDigest {
                    version: SYNC_VERSION,
                    digest: self.sync_digest(peer),
                },
            };
            self.peers.get_mut(peer)?.hello_sent = true;
            return Some(hello);
        }
        if self.peers.get(peer)?.summary_due {
            let spaces = self.summaries_for(peer);
            let st = self.peers.get_mut(peer)?;
            st.summary_due = false;
            return Some(SyncMessage::Summary { spaces });
        }
        if !self.peers.get(peer)?.hello_heard {
            self.peers.get_mut(peer)?.woken = false;
            return None;
        }
        if self.peers.get(peer)?.digests_due {
            let spaces = self.space_digests_for(peer);
            let st = self.peers.get_mut(peer)?;
            st.digests_due = false;
            st.digests_sent = true;
            return Some(SyncMessage::SpaceDigests { spaces });
        }
        if !self.peers.get(peer)?.tips_due.is_empty() {
            let st = self.peers.get_mut(peer)?;
            let due = std::mem::take(&mut st.tips_due);
            st.tips_sent.extend(due.iter().copied());
            let spaces = due
                .iter()
                .take(MAX_SPACES)
                .filter_map(|s| self.summary_of(s))
                .collect();
            return Some(SyncMessage::Tips { spaces });
        }
        let st = self.peers.get(peer)?;
        if st.version >= super::AUDIT_SINCE_VERSION
            && !self.keyless
            && !st.audit_heads_sent
            && self
                .team_state()
                .is_some_and(|t| t.is_live_team_device(peer))
        {
            let me = self.identity.device;
            let mut managed = None;
            let heads = self
                .audit_heads()
                .iter()
                .filter(|(d, _)| self.audit_holds(&me, d, &mut managed))
                .map(|(d, s)| (*d, *s))
                .take(super::MAX_AUDIT_HEADS)
                .collect();
            self.peers.get_mut(peer)?.audit_heads_sent = true;
            return Some(SyncMessage::AuditHeads { heads });
        }
        let notice = self.team_id().filter(|_| self.is_out(peer));
        if let Some(team) = notice {
            if !self.peers.get(peer)?.notice_queued {
                let ids = self.notice_for(peer);
                let st = self.peers.get_mut(peer)?;
                st.notice_queued = true;
                for id in ids {
                    if st.queued.insert(id) {
                        st.queue.push_back((team, id));
                    }
                }
            }
        }
        let st = self.peers.get_mut(peer)?;
        // Spaces whose heads are awaited wait for them.
        let (waiting, dirty): (BTreeSet<SpaceId>, BTreeSet<SpaceId>) =
            std::mem::take(&mut st.dirty)
                .into_iter()
                .partition(|s| st.awaiting.contains(s));
        st.dirty = waiting;
        for space in dirty {
            if !self.shares(peer, &space) {
                continue;
            }
            let heads = self.peers.get(peer)?.known.get(&space).cloned();
            let missing = self.missing(&space, heads.as_ref());
            let st = self.peers.get_mut(peer)?;
            for e in missing {
                if st.queued.insert(e.id()) {
                    st.queue.push_back((space, e.id()));
                }
            }
            if st.owe_caught.contains(&space) && !st.queue.iter().any(|(s, _)| *s == space) {
                st.owe_caught.remove(&space);
                st.caught.insert(space);
            }
        }
        // Nothing queued goes out for a space no longer shared with it.
        let queued_spaces: BTreeSet<SpaceId> = self
            .peers
            .get(peer)?
            .queue
            .iter()
            .map(|(s, _)| *s)
            .collect();
        let gone: BTreeSet<SpaceId> = queued_spaces
            .into_iter()
            .filter(|s| !self.shares(peer, s) && Some(*s) != notice)
            .collect();
        if !gone.is_empty() {
            let st = self.peers.get_mut(peer)?;
            let PeerState { queue, queued, .. } = st;
            queue.retain(|(s, id)| {
                let keep = !gone.contains(s);
                if !keep {
                    queued.remove(id);
                }
                keep
            });
            st.caught.retain(|s| !gone.contains(s));
            st.owe_caught.retain(|s| !gone.contains(s));
        }
        let first = self.peers.get(peer)?.queue.front().map(|(s, _)| *s);
        if let Some(space) = first {
            let mut batch: Vec<Envelope> = Vec::new();
            let mut bytes = 0;
            loop {
                let st = self.peers.get_mut(peer)?;
                let Some((s, id)) = st.queue.front().copied() else {
                    break;
                };
                if s != space || batch.len() >= MAX_BATCH_ENVELOPES {
                    break;
                }
                let Some(env) = self.space(&s).and_then(|x| x.get(&id)).cloned() else {
                    let st = self.peers.get_mut(peer)?;
                    st.queue.pop_front();
                    st.queued.remove(&id);
                    continue;
                };
                if !batch.is_empty() && bytes + env.wire_len() > MAX_BATCH_BYTES {
                    break;
                }
                let st = self.peers.get_mut(peer)?;
                st.queue.pop_front();
                st.queued.remove(&id);
                bytes += env.wire_len();
                note(st.known.entry(space).or_default(), &Link::of(&env));
                batch.push(env);
            }
            let st = self.peers.get_mut(peer)?;
            if !st.queue.iter().any(|(s, _)| *s == space) {
                st.owe_caught.remove(&space);
                st.caught.insert(space);
            }
            if !batch.is_empty() {
                return Some(SyncMessage::Envelopes {
                    space,
                    envelopes: batch.iter().map(|e| e.to_bytes()).collect(),
                });
            }
        }
        let st = self.peers.get_mut(peer)?;
        if let Some(space) = st.caught.pop_first() {
            return Some(SyncMessage::Caught { space });
        }
        st.woken = false;
        None
    }

    /// Takes a message from `peer`. An `Err` ends the session (a violation
    /// cuts the peer off; `PeerClosed` is its own goodbye).
    pub fn handle_message(
        &mut self,
        peer: DeviceId,
        msg: SyncMessage,
        rng: &mut impl rand_core::CryptoRngCore,
    ) -> Result<(), ProtocolViolation> {
        if !self.allowed.contains_key(&peer) || !self.peers.contains_key(&peer) {
            return Err(ProtocolViolation::NotAllowed);
        }
        if !msg.within_bounds() {
            return Err(ProtocolViolation::Malformed("over the protocol's bounds"));
        }
        match msg {
            SyncMessage::Hello { version, spaces } => {
                if version < MIN_SYNC_VERSION {
                    return Err(ProtocolViolation::Version(version));
                }
                if let Some(st) = self.peers.get_mut(&peer) {
                    st.version = version;
                }
                self.peer_holds(peer, spaces);
            }
            SyncMessage::Summary { spaces } => {
                if !self.peers.get(&peer).is_some_and(|p| p.hello_heard) {
                    return Err(ProtocolViolation::Malformed("summary before hello"));
                }
                self.peer_holds(peer, spaces);
            }
            SyncMessage::HelloDigest { version, digest } => {
                if version < MIN_SYNC_VERSION {
                    return Err(ProtocolViolation::Version(version));
                }
                self.peer_digest(peer, version, digest);
            }
            SyncMessage::SpaceDigests { spaces } => {
                self.hello_implied(peer);
                self.peer_space_digests(peer, spaces);
            }
            SyncMessage::Tips { spaces } => {
                self.hello_implied(peer);
                self.peer_tips(peer, spaces);
            }
            SyncMessage::Envelopes { space, envelopes } => {
                let envs = decode_batch(space, &envelopes)?;
                self.envelopes_from(peer, space, envs, rng)?;
            }
            SyncMessage::Caught { space } => {
                // Its heads of a space this device still awaits did not come
                // before it planned that space: the digests of the two
                // changed between their rounds (one side saw them equal).
                // A whole summary starts a round both sides answer.
                if let Some(st) = self.peers.get_mut(&peer) {
                    if st.awaiting.remove(&space) {
                        st.summary_due = true;
                        self.wake(peer);
                    }
                }
                self.emit(Event::CaughtUp { peer, space });
            }
            SyncMessage::Error { code, text } => {
                let text: String = text.chars().filter(|c| !c.is_control()).collect();
                return Err(ProtocolViolation::PeerClosed { code, text });
            }
            // The daemon's session reads the peer's clock from it.
            SyncMessage::Time { .. } => {}
            SyncMessage::AuditHeads { heads } => {
                let live = self
                    .team_state()
                    .is_some_and(|t| t.is_live_team_device(&peer));
                if let Some(st) = self.peers.get_mut(&peer).filter(|_| live) {
                    st.audit_heads = Some(heads.into_iter().collect());
                    self.wake(peer);
                }
            }
            SyncMessage::AuditRecords { records } => {
                if !self.peers.get(&peer).is_some_and(|p| p.hello_heard) {
                    return Err(ProtocolViolation::Malformed("audit records before hello"));
                }
                self.audit_received(records)?;
            }
        }
        Ok(())
    }

    /// Takes messages from `peer` in order, as [`Replica::handle_message`]
    /// does one by one, except that consecutive `Envelopes` of one space
    /// are taken in as one batch: one evaluation of the space instead of
    /// one per message (the acceptance rule judges everything the space
    /// holds each time, so an initial sync of N envelopes in 1 MiB
    /// messages cost N²/batch). The caller bounds `msgs` (the daemon passes
    /// the frames it has already read ahead); each message keeps its own
    /// bounds. An `Err` ends the session as there: what came before the
    /// offending message was taken in.
    pub fn handle_messages(
        &mut self,
        peer: DeviceId,
        msgs: Vec<SyncMessage>,
        rng: &mut impl rand_core::CryptoRngCore,
    ) -> Result<(), ProtocolViolation> {
        let mut msgs = msgs.into_iter().peekable();
        while let Some(msg) = msgs.next() {
            let SyncMessage::Envelopes { space, envelopes } = msg else {
                self.handle_message(peer, msg, rng)?;
                continue;
            };
            if !self.allowed.contains_key(&peer) || !self.peers.contains_key(&peer) {
                return Err(ProtocolViolation::NotAllowed);
            }
            if envelopes.len() > MAX_BATCH_ENVELOPES {
                return Err(ProtocolViolation::Malformed("over the protocol's bounds"));
            }
            let mut envs = decode_batch(space, &envelopes)?;
            let mut failed = None;
            while let Some(SyncMessage::Envelopes { envelopes, .. }) = msgs.next_if(|m| {
                matches!(m, SyncMessage::Envelopes { space: s, envelopes }
                    if *s == space && envelopes.len() <= MAX_BATCH_ENVELOPES)
            }) {
                match decode_batch(space, &envelopes) {
                    Ok(more) => envs.extend(more),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            self.envelopes_from(peer, space, envs, rng)?;
            if let Some(e) = failed {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Decoded envelopes of `space` from `peer`, taken in as one batch.
    fn envelopes_from(
        &mut self,
        peer: DeviceId,
        space: SpaceId,
        envs: Vec<Envelope>,
        rng: &mut impl rand_core::CryptoRngCore,
    ) -> Result<(), ProtocolViolation> {
        let control = envs
            .iter()
            .any(|e| matches!(e.kind(), Kind::Membership | Kind::Roster));
        self.received(peer, space, envs)?;
        if control {
            // A membership or roster change: hand keys to new member
            // devices, rotate away from ones that left (managers).
            self.upkeep_keys(false, rng);
        }
        Ok(())
    }

    /// The peer's summary: remember what it holds; everything it lacks
    /// goes out, then `Caught` for every shared space.
    fn peer_holds(&mut self, peer: DeviceId, spaces: Vec<SpaceSummary>) {
        let shared: BTreeSet<SpaceId> = self.shared_with(&peer).into_iter().collect();
        let Some(st) = self.peers.get_mut(&peer) else {
            return;
        };
        st.hello_heard = true;
        st.new_round();
        st.known.clear();
        for s in spaces {
            if !shared.contains(&s.space) {
                continue;
            }
            st.known.insert(s.space, heads_of(s));
        }
        st.queue.clear();
        st.queued.clear();
        st.owe_caught = shared.clone();
        st.shared = shared.clone();
        st.dirty = shared;
        self.wake(peer);
    }

    /// The peer's `HelloDigest`: equal to this device's digest, it holds
    /// what this device holds of every shared space (nothing to send but
    /// `Caught`); different, per-space digests are exchanged first and
    /// nothing is sent until the peer's heads of a space are known.
    fn peer_digest(&mut self, peer: DeviceId, version: u16, digest: [u8; 32]) {
        let shared: BTreeSet<SpaceId> = self.shared_with(&peer).into_iter().collect();
        let in_sync = self.sync_digest(&peer) == digest;
        let mine: Vec<SpaceSummary> = if in_sync {
            self.summaries_for(&peer)
        } else {
            Vec::new()
        };
        let Some(st) = self.peers.get_mut(&peer) else {
            return;
        };
        st.version = version;
        st.hello_heard = true;
        st.new_round();
        st.known.clear();
        st.queue.clear();
        st.queued.clear();
        if in_sync {
            for s in mine {
                st.known.insert(s.space, heads_of(s));
            }
        } else {
            st.awaiting = shared.clone();
            st.digests_due = true;
        }
        st.owe_caught = shared.clone();
        st.shared = shared.clone();
        st.dirty = shared;
        self.wake(peer);
    }

    /// `SpaceDigests` or `Tips` from a peer whose hello this session has
    /// not heard: its hello came before this replica was rebuilt (the
    /// daemon's reload after a failed write tells it of its peers again,
    /// and the peer answers the new hello without a hello of its own).
    /// Only a `/coffer/sync/3` peer sends them, so it knows this version;
    /// nothing of it is known, so what differs goes out whole.
    fn hello_implied(&mut self, peer: DeviceId) {
        let shared: BTreeSet<SpaceId> = self.shared_with(&peer).into_iter().collect();
        let Some(st) = self.peers.get_mut(&peer).filter(|st| !st.hello_heard) else {
            return;
        };
        st.hello_heard = true;
        st.version = SYNC_VERSION;
        st.new_round();
        st.owe_caught = shared.clone();
        st.shared = shared;
    }

    /// The peer's `SpaceDigests`: a space with the same digest here is
    /// held alike; one it does not list it lacks (as a `Summary` without
    /// it says); for one whose digest differs, heads are exchanged.
    fn peer_space_digests(&mut self, peer: DeviceId, spaces: Vec<(SpaceId, [u8; 32])>) {
        let theirs: BTreeMap<SpaceId, [u8; 32]> = spaces.into_iter().collect();
        let mine: Vec<(SpaceSummary, [u8; 32])> = self
            .summaries_for(&peer)
            .into_iter()
            .map(|s| {
                let d = space_digest(&s);
                (s, d)
            })
            .collect();
        let Some(st) = self.peers.get_mut(&peer) else {
            return;
        };
        if !st.digests_sent {
            st.digests_due = true;
        }
        for (summary, digest) in mine {
            let space = summary.space;
            match theirs.get(&space) {
                Some(d) if *d == digest => {
                    st.known.insert(space, heads_of(summary));
                    st.awaiting.remove(&space);
                }
                Some(_) => {
                    if !st.tips_sent.contains(&space) {
                        st.tips_due.insert(space);
                    }
                    if !st.known.contains_key(&space) {
                        st.awaiting.insert(space);
                    }
                }
                None => {
                    st.known.remove(&space);
                    st.awaiting.remove(&space);
                }
            }
            st.owe_caught.insert(space);
            st.dirty.insert(space);
        }
        self.wake(peer);
    }

    /// The peer's `Tips`: what it holds of these spaces (the others as
    /// known); a space whose heads this device did not send it yet gets
    /// them back, so that a side that found the digests equal answers one
    /// that found them different.
    fn peer_tips(&mut self, peer: DeviceId, spaces: Vec<SpaceSummary>) {
        let shared: BTreeSet<SpaceId> = self.shared_with(&peer).into_iter().collect();
        let Some(st) = self.peers.get_mut(&peer) else {
            return;
        };
        for s in spaces {
            let space = s.space;
            if !shared.contains(&space) {
                continue;
            }
            st.known.insert(space, heads_of(s));
            st.awaiting.remove(&space);
            if !st.tips_sent.contains(&space) {
                st.tips_due.insert(space);
            }
            // Planned afresh against what it holds.
            let PeerState { queue, queued, .. } = st;
            queue.retain(|(sp, id)| {
                let keep = *sp != space;
                if !keep {
                    queued.remove(id);
                }
                keep
            });
            st.owe_caught.insert(space);
            st.dirty.insert(space);
        }
        self.wake(peer);
    }

    /// Envelopes of `space` from `peer`.
    fn received(
        &mut self,
        peer: DeviceId,
        space: SpaceId,
        envs: Vec<Envelope>,
    ) -> Result<(), ProtocolViolation> {
        let held = self.space(&space).is_some();
        let count = envs.len();
        let ids: Vec<EnvelopeId> = envs.iter().map(Envelope::id).collect();
        let links: Vec<Link> = envs.iter().map(Link::of).collect();
        let (new, unknown_author, invalid) = if held {
            if !self.shares(&peer, &space) {
                // Not (or no longer) a member there: its word counts for nothing.
                return Ok(());
            }
            let before: usize = self.space(&space).map_or(0, |s| s.held().count());
            let report = self.take_in(space, envs);
            let after: usize = self.space(&space).map_or(0, |s| s.held().count());
            let unknown = report
                .outcomes
                .iter()
                .filter(|o| matches!(o, Err(IngestError::UnknownAuthor)))
                .count();
            let invalid = report
                .outcomes
                .iter()
                .filter(|o| matches!(o, Err(e) if *e != IngestError::UnknownAuthor))
                .count();
            (after.saturating_sub(before), unknown, invalid)
        } else {
            match self.new_folder(peer, space, envs) {
                Some(n) => (n, 0, 0),
                None => return Ok(()),
            }
        };
        // What the peer holds, as far as this device can tell: only what it
        // sent that is held here now (a peer's junk must not grow this).
        if let Some(s) = self.space(&space) {
            let kept: Vec<&Link> = links.iter().filter(|l| s.get(&l.id).is_some()).collect();
            if let Some(st) = self.peers.get_mut(&peer) {
                let heads = st.known.entry(space).or_default();
                for l in kept {
                    note(heads, l);
                }
            }
        }
        if invalid > 0 {
            return Err(ProtocolViolation::InvalidEnvelopes(invalid));
        }
        if unknown_author > 0 {
            // Its authors are named by ops this device lacks: ask again.
            if let Some(st) = self.peers.get_mut(&peer) {
                st.summary_due = true;
                for id in &ids {
                    st.queued.remove(id);
                }
            }
            self.wake(peer);
        }
        if new > 0 {
            self.emit(Event::Received { peer, space, new });
        }
        let _ = count;
        Ok(())
    }

    /// A folder this device does not hold: kept only if the batch holds
    /// its founding op, it makes this device a member (accepted, or a
    /// grant waiting for its context) and the sender is a member device of
    /// it. Returns how many envelopes it holds then.
    fn new_folder(&mut self, peer: DeviceId, id: SpaceId, envs: Vec<Envelope>) -> Option<usize> {
        // Without its founding op a folder names no team and no member:
        // kept, it would take in nothing more from any peer (none counts
        // as a member) and never be completed. The peer sent later
        // envelopes only, believing this device holds the earlier ones
        // (it sent them, and this device dropped them then): ask it to
        // send the folder again from its start (a summary without the
        // folder), once per folder until a roster or membership change,
        // so that a batch refused for good cannot loop.
        let founded = envs.iter().any(|e| {
            e.kind() == Kind::Membership
                && matches!(
                    ControlOp::decode(e.kind(), &e.body().payload),
                    Ok(ControlOp::Membership(MembershipOp::Found { .. }))
                )
        });
        if !founded {
            let ask = self.peers.get_mut(&peer).is_some_and(|st| {
                st.asked_from_start.len() < MAX_SPACES && st.asked_from_start.insert(id)
            });
            if ask {
                if let Some(st) = self.peers.get_mut(&peer) {
                    st.summary_due = true;
                }
                self.wake(peer);
            }
            return None;
        }
        let team = self.team_id();
        // The folder's team, from its signed founding op or a binding.
        let bound =
            envs.iter()
                .find_map(|e| match ControlOp::decode(e.kind(), &e.body().payload) {
                    Ok(ControlOp::Membership(MembershipOp::Found { team: Some(t), .. }))
                    | Ok(ControlOp::Membership(MembershipOp::BindTeam { team: t })) => Some(t),
                    _ => None,
                });
        let judged_in = bound.filter(|t| Some(*t) == team);
        if bound.is_some() && judged_in.is_none() {
            return None;
        }
        let mut space = Space::new_in_team(id, judged_in);
        let mut all = envs;
        if judged_in.is_some() {
            if let Some(r) = &self.roster {
                all.extend(r.held().cloned());
                if let Some(j) = r.roster_judgements() {
                    space.share_roster_judgements(&j);
                }
            }
        }
        space.ingest_batch(all);
        let me = self.identity.device;
        let my_user = self.my_user();
        // A grant names this device if it names the device, its user, or a
        // group its user is in (by the roster as held).
        let my_groups: Vec<String> = match (self.team_state(), my_user.as_ref()) {
            (Some(t), Some(u)) => t
                .team
                .groups
                .iter()
                .filter(|(_, members)| members.contains(u))
                .map(|(g, _)| g.clone())
                .collect(),
            _ => Vec::new(),
        };
        let named = |p: &Principal| match p {
            Principal::Device(d) => *d == me,
            Principal::User(u) => Some(u) == my_user.as_ref(),
            Principal::Group(g) => my_groups.contains(g),
        };
        // A grant still waiting for its context counts only from a device
        // this one knows (a live device of its team, or a paired one): a
        // throwaway key cannot plant folders with grants it never completes.
        let known_author = |d: &DeviceId| {
            self.team_state().is_some_and(|t| t.is_live_team_device(d))
                || self.trusted.iter().any(|t| &t.device == d)
        };
        let waiting_grant = space.pending().iter().any(|p| {
            space.get(p).is_some_and(|e| {
                known_author(&e.author())
                    && matches!(
                        ControlOp::decode(e.kind(), &e.body().payload),
                        Ok(ControlOp::Membership(MembershipOp::Grant { principal, .. })) if named(&principal)
                    )
            })
        });
        let from_member = space.state().member_devices().contains_key(&peer);
        let from_relay = self.is_team_relay(&peer) && judged_in.is_some();
        let keep = if self.keyless {
            // A relay holds every folder of its team that a member sends,
            // and never one the team deleted.
            judged_in.is_some() && from_member && space.state().folder.deleted.is_none()
        } else {
            let member = space.role_of(&me).is_some() || waiting_grant;
            member && (from_member || from_relay || waiting_grant)
        };
        if !keep {
            return None;
        }
        let own: Vec<Envelope> = space.held().filter(|e| e.space() == id).cloned().collect();
        let n = own.len();
        self.folders.insert(id, space);
        self.effects
            .push_back(super::Effect::Persist(Persist::Envelopes {
                space: id,
                kind: SpaceKind::Folder,
                team: judged_in,
                envelopes: own,
            }));
        self.wake_peers(id);
        self.refresh_folder(id, true);
        self.update_allowed();
        Some(n)
    }

    /// Per shared space, what this device holds of it (for `coffer sync status`).
    pub fn version_vectors(&self) -> BTreeMap<SpaceId, BTreeMap<DeviceId, u64>> {
        let mut out = BTreeMap::new();
        if let Some(r) = &self.roster {
            out.insert(r.id(), r.version_vector());
        }
        for (id, s) in &self.folders {
            out.insert(*id, s.version_vector());
        }
        out
    }
}
