//! The acceptance rule: which held envelopes take effect. A pure function of
//! the held set ([`evaluate`]); [`crate::space::Space`] keeps its result,
//! a [`Cache`] of what does not change as the set grows, and fast paths for
//! content and control ops that merely extend it.
//!
//! Steps (each named after the function doing it; `docs/security.md`
//! section 4 says the same in words):
//! 1. [`Chains::build`]: per (space, author), an envelope is *linked* when
//!    its `prev` links reach seq 1 through held envelopes; the rest wait
//!    (pending). Two linked envelopes at one seq are a fork: evidence
//!    against the device ([`Evaluation::forked`]), not a tie-break — both
//!    branches are judged like any concurrent envelopes, and what a removal
//!    cut off is decided by the envelope its cutoff names, so a fork signed
//!    later at an old seq never reaches back behind a removal.
//! 2. [`Engine::build`]: control ops (roster + membership) form a DAG
//!    through their `context`; an op citing a missing envelope is pending.
//!    Intrinsically unusable ops (malformed, context regressed behind the
//!    author's previous envelope, over the author's quota) are marked bad.
//! 3. [`Engine::judge_all`]: every op judged by [`State::apply`] in its own
//!    context `R(past(o) \ {o})`, computed in topological order: with one
//!    predecessor it is that predecessor's `R(past(p))`, which is
//!    `R(past(p) \ {p})` plus `p` — `p` is the unique maximal op of its
//!    past, comes last in its Kahn order and is concurrent with nothing
//!    there — so a chain of ops costs one application each.
//! 4. [`Engine::resolve`] = `R(X)` for a causally closed set X: standing
//!    removals by induction on (rank, id), where only a strictly stronger
//!    rank voids a removal; every other op a standing removal voids is
//!    dropped ([`Engine::voids`]: concurrent, took the author's right, not
//!    covered by its cutoff, and no right left in `R(past(o) \ {o} ∪
//!    past(r))`); then one linear pass ([`Engine::pass`]): Kahn's sort with
//!    removals first then the lowest id, where an op a removal's cutoff
//!    covers goes before that removal.
//! 5. [`content_validity`]: a content change is valid iff its header's
//!    incarnation is current in `R(past(context))`, its author may write
//!    there, it uses that state's current epoch with no rotation due, the
//!    epoch still stands in `R(all)`, and every removal in `R(all)` that
//!    took the author's write right and is not in its past covers it or
//!    leaves the author a right in `R(past(c) ∪ past(r))`.
//! 6. [`endorse`]: accepted content = the largest set of valid or endorsable
//!    changes whose header deps are all in it, where an invalid change
//!    stays only if an accepted change by a *different user* depends on it.
//!
//! Nothing here decrypts: a peer without keys computes the same result.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;

use crate::envelope::{Envelope, Kind};
use crate::folder::actor_for;
use crate::ids::{DeviceId, EnvelopeId, SpaceId};
use crate::ops::{ControlOp, CutoffPoint, MembershipOp, Principal, RosterOp, UserId};
use crate::state::{OpInfo, RemovalEffect, State, NO_RANK};

/// Incarnations a device's Automerge actor may use (a device removed from
/// a folder starts a new one when re-added, so its new changes never extend
/// its quarantined past).
pub const MAX_INCARNATIONS: u32 = 64;
/// Control ops one device may make in one space (counted along its own
/// chain); later ones are quarantined unjudged. Bounds what a spamming
/// member costs every replica.
pub const MAX_CONTROL_OPS_PER_AUTHOR: u64 = 1 << 16;

/// The bounds acceptance applies ([`Limits::default`] everywhere but tests
/// that need a small quota).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub control_ops_per_author: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            control_ops_per_author: MAX_CONTROL_OPS_PER_AUTHOR,
        }
    }
}

/// What a key holder learns by decrypting a content envelope: the Automerge
/// change's hash, actor, seq and deps. Acceptance never needs it (it reads
/// the envelope's [`crate::envelope::ChangeHeader`]); [`crate::Space`] uses
/// it to name a new change's deps and to check a payload against its header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeMeta {
    pub hash: [u8; 32],
    pub actor: Vec<u8>,
    pub seq: u64,
    pub deps: Vec<[u8; 32]>,
}

/// Parses an Automerge change after checking its bounds
/// ([`crate::bounds::check_change`]): parse once, then read its metadata,
/// the items it touched and apply it from the parsed form.
pub fn parse_change(bytes: &[u8]) -> Option<automerge::Change> {
    crate::bounds::check_change(bytes).ok()?;
    automerge::Change::from_bytes(bytes.to_vec()).ok()
}

impl ChangeMeta {
    /// Reads the metadata of an Automerge change, after checking its bounds
    /// ([`crate::bounds::check_change`]).
    pub fn from_change(bytes: &[u8]) -> Option<ChangeMeta> {
        parse_change(bytes).map(|c| ChangeMeta::of(&c))
    }

    /// The metadata of a change already parsed (by [`parse_change`]).
    pub fn of(change: &automerge::Change) -> ChangeMeta {
        ChangeMeta {
            hash: change.hash().0,
            actor: change.actor_id().to_bytes().to_vec(),
            seq: change.seq(),
            deps: change.deps().iter().map(|h| h.0).collect(),
        }
    }

    /// The incarnation of `author` this change's actor belongs to, if any.
    pub fn incarnation(&self, author: &DeviceId) -> Option<u32> {
        (0..MAX_INCARNATIONS).find(|i| actor_for(author, *i).to_bytes() == self.actor.as_slice())
    }
}

/// Why a held envelope does not take effect. Data, not an error.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// The payload or structure is invalid (never endorsable).
    Malformed(String),
    /// Two changes of one Automerge actor share a seq (the author forked):
    /// only one, the one another device built on, can take effect.
    Equivocation { seq: u64 },
    /// The context goes back behind the author's previous envelope.
    ContextRegressed,
    /// The author made more control ops in this space than one device may.
    OverQuota,
    /// The author lacked the right in the state the op is judged against.
    Unauthorized(String),
    /// A control op concurrent with (and beyond the cutoff of) the removal `by`.
    Voided { by: EnvelopeId },
    /// Content beyond the cutoff of the removal `by`.
    Removed { by: EnvelopeId },
    /// Content not under the epoch its context requires.
    StaleEpoch(&'static str),
    /// Content written as an incarnation of its device older than the one
    /// its context requires (the device was removed and re-added since).
    StaleIncarnation { got: u32, need: u32 },
    /// Content that builds on a change that is not accepted.
    BuildsOnQuarantined,
}

impl Reason {
    /// Whether a different user's accepted change may still keep it.
    pub fn endorsable(&self) -> bool {
        !matches!(
            self,
            Reason::Malformed(_)
                | Reason::ContextRegressed
                | Reason::StaleIncarnation { .. }
                | Reason::OverQuota
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Malformed(why) => write!(f, "malformed: {why}"),
            Reason::Equivocation { seq } => write!(
                f,
                "equivocation: the author signed another change as the same Automerge seq {seq}"
            ),
            Reason::ContextRegressed => {
                f.write_str("context goes back behind the author's previous envelope")
            }
            Reason::OverQuota => f.write_str("the author made too many control ops in this space"),
            Reason::Unauthorized(why) => write!(f, "not authorised: {why}"),
            Reason::Voided { by } => write!(
                f,
                "made concurrently with the author's removal {} and after its cutoff",
                by.short()
            ),
            Reason::Removed { by } => write!(
                f,
                "written after the author's removal {} (beyond its cutoff)",
                by.short()
            ),
            Reason::StaleEpoch(why) => write!(f, "wrong key epoch: {why}"),
            Reason::StaleIncarnation { got, need } => write!(
                f,
                "written as incarnation {got} of its device; its context requires {need} or later"
            ),
            Reason::BuildsOnQuarantined => f.write_str("builds on a quarantined change"),
        }
    }
}

/// The result of judging a held set.
#[derive(Clone, Debug, Default)]
pub struct Evaluation {
    pub state: Arc<State>,
    pub accepted: BTreeSet<EnvelopeId>,
    pub quarantined: BTreeMap<EnvelopeId, Reason>,
    pub pending: BTreeSet<EnvelopeId>,
    /// Control ops nobody built on yet: the context of the next envelope.
    pub control_heads: Vec<EnvelopeId>,
    /// In a folder of a team: the team roster's ops no roster op built on
    /// (sorted), the context of the next roster op written by a device
    /// that holds every roster op this folder holds. Empty elsewhere.
    pub roster_heads: Vec<EnvelopeId>,
    /// Accepted content, Automerge deps (and author chains) first.
    pub content_order: Vec<EnvelopeId>,
    pub usage_order: Vec<EnvelopeId>,
    /// Invalid content kept because the named change of another user built on it.
    pub endorsed_by: BTreeMap<EnvelopeId, EnvelopeId>,
    /// Valid removals of `R(all)` and what they took.
    pub removals: Vec<(EnvelopeId, RemovalEffect)>,
    /// Devices a valid removal of `R(all)` names or took a right from:
    /// their new envelopes take the slow path.
    pub removed: HashSet<DeviceId>,
    /// Per chain, the linked envelope of the highest seq (lowest id there).
    pub tips: HashMap<(SpaceId, DeviceId), (u64, EnvelopeId)>,
    /// Per chain, the held envelopes no held envelope names as its `prev`
    /// (one unless the chain forked or holds a gap).
    pub heads: HashMap<(SpaceId, DeviceId), Vec<ChainHead>>,
    /// Chains with two linked envelopes at one seq: their device forked.
    pub forked: BTreeSet<(SpaceId, DeviceId)>,
    /// `R(past(context))` per sorted context, for the fast paths.
    pub contexts: HashMap<Vec<EnvelopeId>, Arc<State>>,
    /// Per (author, incarnation): the highest change seq judged, and
    /// whether a change of that seq was accepted — what the fast path asks
    /// (one entry per chain, not per change: 2 MB less at 10,000 edits).
    pub change_tips: HashMap<(DeviceId, u32), ChangeTip>,
}

/// The highest content change judged of one (author, incarnation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChangeTip {
    pub seq: u64,
    /// A change of `seq` was accepted.
    pub accepted: bool,
}

impl ChangeTip {
    /// Whether a change of `seq` is the next one, after an accepted change
    /// (or the first): no judged change has it, and none is missing below.
    pub fn takes_next(tip: Option<&ChangeTip>, seq: u64) -> bool {
        match tip {
            None => seq == 1,
            Some(t) => t.accepted && t.seq.checked_add(1) == Some(seq),
        }
    }
}

/// The end of a branch of one author's chain, as held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChainHead {
    pub seq: u64,
    pub id: EnvelopeId,
    /// Linked to seq 1 through held envelopes: whoever holds it holds its
    /// ancestors too (an unlinked one waits for a gap below it).
    pub linked: bool,
}

/// An op judged in its own context `R(past(o) \ {o})`.
#[derive(Clone, Debug)]
struct Judged {
    /// Authorised there (with what a removal takes), or why not.
    verdict: Result<Option<RemovalEffect>, Reason>,
    /// The author's rank there: the grant it cites through its context.
    rank: u32,
}

/// What carries over between evaluations of a growing set: each op's
/// judgement in its own context, and states of contexts. Both depend only
/// on the op's past — except through cutoffs, whose coverage can change
/// when a named envelope or a fork arrives: then [`Cache::clear`].
#[derive(Clone, Debug, Default)]
pub struct Cache {
    judged: HashMap<EnvelopeId, Judged>,
    /// In a folder of a team: the roster's own judgements of its ops,
    /// shared by every folder loaded with that roster ([`RosterJudgements`]).
    roster: Option<RosterJudgements>,
    /// `R(X)` by the sorted maximal ops of X.
    states: HashMap<Vec<EnvelopeId>, Arc<State>>,
}

/// The team roster's judgements of its ops, each in its own context, to
/// seed the evaluation of the team's folders (`Space::roster_judgements`).
///
/// A roster op the roster judged had its whole past held there, and that
/// past is roster ops only (a context is named by id); `R` of a set of
/// roster ops does not depend on the space being evaluated (roster ops
/// apply to the team state alone, and a roster removal's cutoff for the
/// roster is the same in every space). So a folder holding those roster
/// envelopes judges each such op exactly as the roster did, and may take
/// the verdict instead of applying the op again (device proofs included).
/// Like the folder's own judgements, they are dropped when a fork or a
/// named cutoff envelope arrives there ([`Cache::clear`]).
#[derive(Clone, Debug)]
pub struct RosterJudgements {
    team: SpaceId,
    judged: Arc<HashMap<EnvelopeId, Judged>>,
}

impl RosterJudgements {
    /// How many ops it judges.
    pub fn len(&self) -> usize {
        self.judged.len()
    }

    /// Whether it judges none.
    pub fn is_empty(&self) -> bool {
        self.judged.is_empty()
    }
}

impl Cache {
    /// States kept before the oldest are forgotten (judgements are one per op).
    const STATE_LIMIT: usize = 4096;

    /// The roster's judgements (this cache must be the roster's, `team`).
    pub(crate) fn roster_judgements(&self, team: SpaceId) -> RosterJudgements {
        RosterJudgements {
            team,
            judged: Arc::new(self.judged.clone()),
        }
    }

    /// Takes the roster's judgements as well (this cache must be a folder
    /// of `team`'s).
    pub(crate) fn share_roster(&mut self, team: SpaceId, roster: &RosterJudgements) {
        if roster.team == team {
            self.roster = Some(roster.clone());
        }
    }

    fn judged(&self, id: &EnvelopeId) -> Option<&Judged> {
        self.judged
            .get(id)
            .or_else(|| self.roster.as_ref().and_then(|r| r.judged.get(id)))
    }

    pub fn clear(&mut self) {
        *self = Cache::default();
    }

    fn trim(&mut self) {
        if self.states.len() > Self::STATE_LIMIT {
            self.states.clear();
        }
    }
}

/// Step 1: which envelopes are linked into their author's chain.
pub(crate) struct Chains {
    linked: HashSet<EnvelopeId>,
    /// Control envelopes in each linked envelope's own chain before it.
    control_before: HashMap<EnvelopeId, u64>,
    /// Per forked chain, the seqs holding more than one linked envelope.
    fork_seqs: HashMap<(SpaceId, DeviceId), BTreeSet<u64>>,
}

impl Chains {
    fn build(held: &HashMap<EnvelopeId, Envelope>, ev: &mut Evaluation) -> Chains {
        let mut by_chain: HashMap<(SpaceId, DeviceId), BTreeMap<u64, Vec<EnvelopeId>>> =
            HashMap::new();
        for env in held.values() {
            by_chain
                .entry((env.space(), env.author()))
                .or_default()
                .entry(env.seq())
                .or_default()
                .push(env.id());
        }
        let mut out = Chains {
            linked: HashSet::with_capacity(held.len()),
            control_before: HashMap::with_capacity(held.len()),
            fork_seqs: HashMap::new(),
        };
        for (key, seqs) in by_chain {
            let mut previous: Vec<EnvelopeId> = Vec::new();
            let mut top: Option<(u64, EnvelopeId)> = None;
            for (seq, ids) in &seqs {
                // A gap: nothing above it links (an envelope's prev is one
                // seq below it, so a seq with no linked envelope ends the line).
                if *seq != top.map_or(1, |(s, _)| s + 1) {
                    break;
                }
                let mut here: Vec<EnvelopeId> = ids
                    .iter()
                    .copied()
                    .filter(|id| {
                        let prev = held[id].body().prev;
                        match prev {
                            None => *seq == 1,
                            Some(p) => previous.contains(&p),
                        }
                    })
                    .collect();
                if here.is_empty() {
                    break;
                }
                here.sort();
                for id in &here {
                    let env = &held[id];
                    let before = match env.body().prev {
                        None => 0,
                        Some(p) => {
                            let prev = &held[&p];
                            out.control_before.get(&p).copied().unwrap_or(0)
                                + u64::from(is_control(prev.kind()))
                        }
                    };
                    out.control_before.insert(*id, before);
                    out.linked.insert(*id);
                }
                if here.len() > 1 {
                    out.fork_seqs.entry(key).or_default().insert(*seq);
                }
                top = Some((*seq, here[0]));
                previous = here;
            }
            if let Some(t) = top {
                ev.tips.insert(key, t);
            }
            if out.fork_seqs.contains_key(&key) {
                ev.forked.insert(key);
            }
            // Heads for sync summaries: every held envelope of the chain that
            // no held envelope names as its `prev` (pending ones too, so a
            // peer that holds them is not sent them again).
            let all_prevs: HashSet<EnvelopeId> = seqs
                .values()
                .flatten()
                .filter_map(|id| held[id].body().prev)
                .collect();
            let mut heads: Vec<ChainHead> = seqs
                .iter()
                .flat_map(|(seq, ids)| ids.iter().map(move |id| (*seq, *id)))
                .filter(|(_, id)| !all_prevs.contains(id))
                .map(|(seq, id)| ChainHead {
                    seq,
                    id,
                    linked: out.linked.contains(&id),
                })
                .collect();
            heads.sort();
            if !heads.is_empty() {
                ev.heads.insert(key, heads);
            }
        }
        out
    }

    fn is_linked(&self, id: &EnvelopeId) -> bool {
        self.linked.contains(id)
    }

    /// Whether `chain` holds more than one linked envelope at `seq`.
    fn forked_at(&self, chain: &(SpaceId, DeviceId), seq: u64) -> bool {
        self.fork_seqs.get(chain).is_some_and(|s| s.contains(&seq))
    }
}

fn is_control(kind: Kind) -> bool {
    matches!(kind, Kind::Membership | Kind::Roster)
}

type Mask = Vec<u64>;

fn mask_new(n: usize) -> Mask {
    vec![0; n.div_ceil(64)]
}
fn mask_has(m: &Mask, i: usize) -> bool {
    m[i / 64] >> (i % 64) & 1 == 1
}
fn mask_set(m: &mut Mask, i: usize) {
    m[i / 64] |= 1 << (i % 64);
}
fn mask_or(a: &mut Mask, b: &Mask) {
    for (x, y) in a.iter_mut().zip(b) {
        *x |= *y;
    }
}
fn mask_clear(m: &mut Mask, i: usize) {
    m[i / 64] &= !(1 << (i % 64));
}
fn mask_ones(m: &Mask) -> impl Iterator<Item = usize> + '_ {
    m.iter().enumerate().flat_map(|(w, bits)| {
        let mut b = *bits;
        std::iter::from_fn(move || {
            if b == 0 {
                return None;
            }
            let t = b.trailing_zeros() as usize;
            b &= b - 1;
            Some(w * 64 + t)
        })
    })
}

struct Node {
    id: EnvelopeId,
    author: DeviceId,
    seq: u64,
    space: SpaceId,
    op: Option<ControlOp>,
    removal: bool,
    /// Rotate with cutoffs for removals: its presence changes coverage.
    supplies_cutoffs: bool,
    bad: Option<Reason>,
    preds: Vec<usize>,
    succs: Vec<usize>,
}

/// One run of `R(X)`.
#[derive(Default)]
struct Resolved {
    state: Arc<State>,
    valid: BTreeSet<usize>,
    reasons: BTreeMap<usize, Reason>,
    removals: Vec<(usize, RemovalEffect)>,
}

const NO_CUTOFF: CutoffPoint = CutoffPoint {
    seq: 0,
    id: EnvelopeId([0; 32]),
};

struct Engine<'a> {
    home: SpaceId,
    team: Option<SpaceId>,
    held: &'a HashMap<EnvelopeId, Envelope>,
    chains: &'a Chains,
    nodes: Vec<Node>,
    index: HashMap<EnvelopeId, usize>,
    pending: Vec<bool>,
    /// Topological order of the non-pending nodes, and each node's place in it.
    topo: Vec<usize>,
    pos: Vec<usize>,
    judged: Vec<Option<Judged>>,
    /// `R(past(o))` of nodes still needed.
    after: HashMap<usize, Arc<State>>,
    past: HashMap<usize, Rc<Mask>>,
    memo: HashMap<Mask, Rc<Resolved>>,
    /// Ancestry of cutoff envelopes in forked chains.
    ancestry: HashMap<EnvelopeId, HashSet<EnvelopeId>>,
    /// Every user any held roster op binds a device to (a device has one,
    /// unless a rejected op claims another: then both, which only widens
    /// the removals checked).
    users: HashMap<DeviceId, Vec<UserId>>,
    /// Every user any held roster op puts in a group (a superset of its
    /// members at any point: the filter of a group's deletion).
    groups: HashMap<String, Vec<UserId>>,
    cache: Cache,
}

impl<'a> Engine<'a> {
    /// Step 2: the control DAG over the held, linked control ops.
    fn build(
        home: SpaceId,
        team: Option<SpaceId>,
        held: &'a HashMap<EnvelopeId, Envelope>,
        chains: &'a Chains,
        cache: Cache,
        limits: Limits,
    ) -> Engine<'a> {
        let mut ids: Vec<EnvelopeId> = held
            .values()
            .filter(|e| is_control(e.kind()) && chains.is_linked(&e.id()))
            .map(Envelope::id)
            .collect();
        ids.sort();
        let index: HashMap<EnvelopeId, usize> =
            ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let n = ids.len();
        let mut pending = vec![false; n];
        let mut nodes: Vec<Node> = ids
            .iter()
            .map(|id| {
                let env = &held[id];
                let op = ControlOp::decode(env.kind(), &env.body().payload);
                let mut bad = match &op {
                    Err(e) => Some(Reason::Malformed(e.to_string())),
                    Ok(_) => None,
                };
                let op = op.ok();
                let founding = op.as_ref().is_some_and(ControlOp::is_founding);
                if founding && !env.body().context.is_empty() {
                    bad.get_or_insert(Reason::Malformed("a founding op cites no context".into()));
                }
                if chains.control_before.get(id).copied().unwrap_or(0)
                    >= limits.control_ops_per_author
                {
                    bad.get_or_insert(Reason::OverQuota);
                }
                let supplies_cutoffs = matches!(
                    &op,
                    Some(ControlOp::Membership(MembershipOp::Rotate { cutoffs, .. })) if !cutoffs.is_empty()
                );
                Node {
                    id: *id,
                    author: env.author(),
                    seq: env.seq(),
                    space: env.space(),
                    removal: op.as_ref().is_some_and(ControlOp::is_removal),
                    supplies_cutoffs,
                    op,
                    bad,
                    preds: Vec::new(),
                    succs: Vec::new(),
                }
            })
            .collect();
        for i in 0..n {
            let env = &held[&nodes[i].id];
            let mut seen = BTreeSet::new();
            for c in &env.body().context {
                if !seen.insert(*c) {
                    continue;
                }
                match index.get(c) {
                    Some(&j) => {
                        nodes[i].preds.push(j);
                        nodes[j].succs.push(i);
                    }
                    None if held.get(c).is_some_and(|e| !is_control(e.kind())) => {
                        nodes[i]
                            .bad
                            .get_or_insert(Reason::Malformed("context names content".into()));
                    }
                    None => pending[i] = true,
                }
            }
        }
        // Topological order (ties by id); unreached nodes (a cycle, which
        // needs a hash collision) and descendants of pending ones wait.
        let mut indeg: Vec<usize> = nodes.iter().map(|n| n.preds.len()).collect();
        let mut heap: BinaryHeap<Reverse<usize>> =
            (0..n).filter(|i| indeg[*i] == 0).map(Reverse).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(Reverse(i)) = heap.pop() {
            order.push(i);
            for &s in &nodes[i].succs {
                indeg[s] -= 1;
                if indeg[s] == 0 {
                    heap.push(Reverse(s));
                }
            }
        }
        let mut reached = vec![false; n];
        for &i in &order {
            reached[i] = true;
            if nodes[i].preds.iter().any(|p| pending[*p]) {
                pending[i] = true;
            }
        }
        for (i, r) in reached.iter().enumerate() {
            if !r {
                pending[i] = true;
            }
        }
        let topo: Vec<usize> = order.into_iter().filter(|i| !pending[*i]).collect();
        let mut users: HashMap<DeviceId, Vec<UserId>> = HashMap::new();
        let mut groups: HashMap<String, Vec<UserId>> = HashMap::new();
        for node in &nodes {
            if let Some(ControlOp::Roster(RosterOp::AddToGroup { group, user })) = &node.op {
                let list = groups.entry(group.clone()).or_default();
                if !list.contains(user) {
                    list.push(user.clone());
                }
            }
            let bound = match &node.op {
                Some(ControlOp::Roster(RosterOp::AddDevice { user, device, .. })) => {
                    Some((*device, user))
                }
                Some(ControlOp::Roster(RosterOp::Found { founder, .. })) => {
                    Some((node.author, founder))
                }
                _ => None,
            };
            if let Some((d, u)) = bound {
                let list = users.entry(d).or_default();
                if !list.contains(u) {
                    list.push(u.clone());
                }
            }
        }
        let mut pos = vec![usize::MAX; n];
        for (k, &i) in topo.iter().enumerate() {
            pos[i] = k;
        }
        Engine {
            home,
            team,
            held,
            chains,
            nodes,
            index,
            pending,
            topo,
            pos,
            judged: (0..n).map(|_| None).collect(),
            after: HashMap::new(),
            past: HashMap::new(),
            memo: HashMap::new(),
            ancestry: HashMap::new(),
            users,
            groups,
            cache,
        }
    }

    /// Whether removal `r` is aimed at device `d`: names it, its user, or
    /// a group (whose members may include it). A filter only: whether `d`
    /// lost a right is decided in `R(past(o) ∪ past(r))`. Aimed by what the
    /// op names rather than by what it took in some state, because a grant
    /// the remover never saw (concurrent with it) is taken all the same.
    fn aims_at(&self, r: usize, d: &DeviceId) -> bool {
        let user_is = |u: &UserId| self.users.get(d).is_some_and(|l| l.contains(u));
        match &self.nodes[r].op {
            Some(ControlOp::Roster(RosterOp::RevokeDevice { device, .. })) => device == d,
            Some(ControlOp::Roster(RosterOp::DeleteGroup { group, .. })) => self
                .groups
                .get(group)
                .is_some_and(|members| members.iter().any(user_is)),
            Some(ControlOp::Roster(
                RosterOp::RemoveUser { user, .. }
                | RosterOp::RemoveAdmin { user, .. }
                | RosterOp::RemoveFromGroup { user, .. },
            )) => user_is(user),
            Some(ControlOp::Membership(MembershipOp::Remove { principal, .. })) => {
                match principal {
                    Principal::Device(x) => x == d,
                    Principal::User(u) => user_is(u),
                    Principal::Group(_) => true,
                }
            }
            _ => false,
        }
    }

    fn info(&self, i: usize, strict: bool) -> OpInfo {
        let n = &self.nodes[i];
        OpInfo {
            id: n.id,
            author: n.author,
            seq: n.seq,
            space: n.space,
            home: self.home,
            team: self.team,
            strict,
        }
    }

    /// Whether `to` is in `past(from)` (itself or an ancestor). A walk back
    /// from `from` that never goes below `to`'s place in the topological
    /// order: short for the usual nearby ops.
    fn reaches(&self, from: usize, to: usize) -> bool {
        if from == to {
            return true;
        }
        if let Some(m) = self.past.get(&from) {
            return mask_has(m, to);
        }
        let floor = self.pos[to];
        if self.pos[from] < floor {
            return false;
        }
        let mut seen = HashSet::new();
        let mut stack = vec![from];
        while let Some(x) = stack.pop() {
            for &p in &self.nodes[x].preds {
                if p == to {
                    return true;
                }
                if self.pos[p] > floor && seen.insert(p) {
                    stack.push(p);
                }
            }
        }
        false
    }

    /// `past(i)` as a mask (itself included), kept for later queries.
    fn past_of(&mut self, i: usize) -> Rc<Mask> {
        if let Some(m) = self.past.get(&i) {
            return m.clone();
        }
        let mut m = mask_new(self.nodes.len());
        let mut stack = vec![i];
        mask_set(&mut m, i);
        while let Some(x) = stack.pop() {
            for &p in &self.nodes[x].preds {
                if !mask_has(&m, p) {
                    mask_set(&mut m, p);
                    stack.push(p);
                }
            }
        }
        let m = Rc::new(m);
        self.past.insert(i, m.clone());
        m
    }

    /// The past of a context (the union of its heads' pasts); `None` if a
    /// head is not a resolvable control op.
    fn context_mask(&mut self, context: &[EnvelopeId]) -> Option<Mask> {
        let mut m = mask_new(self.nodes.len());
        for c in context {
            let &i = self.index.get(c)?;
            if self.pending[i] {
                return None;
            }
            let p = self.past_of(i);
            mask_or(&mut m, &p);
        }
        Some(m)
    }

    /// The sorted maximal ops of a mask: the cache key of `R(mask)`.
    fn maximal(&self, mask: &Mask) -> Vec<EnvelopeId> {
        let mut out: Vec<EnvelopeId> = mask_ones(mask)
            .filter(|&i| !self.nodes[i].succs.iter().any(|&s| mask_has(mask, s)))
            .map(|i| self.nodes[i].id)
            .collect();
        out.sort();
        out
    }

    fn judged_ok(&self, i: usize) -> bool {
        matches!(&self.judged[i], Some(Judged { verdict: Ok(_), .. }))
    }

    fn effect(&self, i: usize) -> Option<&RemovalEffect> {
        match &self.judged[i] {
            Some(Judged {
                verdict: Ok(Some(e)),
                ..
            }) => Some(e),
            _ => None,
        }
    }

    fn rank(&self, i: usize) -> u32 {
        self.judged[i].as_ref().map_or(NO_RANK, |j| j.rank)
    }

    /// Step 3: every op judged in `R(past(o) \ {o})`, and `R(past(o))` for
    /// the ops whose state is needed later (successors, `keep`).
    fn judge_all(&mut self, keep: &HashSet<usize>) {
        let mut waiting: Vec<usize> = self.nodes.iter().map(|n| n.succs.len()).collect();
        let topo = self.topo.clone();
        for i in topo {
            let before = self.state_before(i);
            let id = self.nodes[i].id;
            let mut applied: Option<State> = None;
            let judged = match (&self.nodes[i].bad, self.cache.judged(&id)) {
                (Some(_), _) => None,
                (None, Some(j)) => Some(j.clone()),
                (None, None) => {
                    let op = self.nodes[i]
                        .op
                        .as_ref()
                        .expect("ops without a bad reason decoded");
                    let rank = before.rights(&self.nodes[i].author).rank;
                    let mut state = (*before).clone();
                    let verdict = state
                        .apply(&self.info(i, true), op)
                        .map_err(Reason::Unauthorized);
                    if verdict.is_ok() {
                        applied = Some(state);
                    }
                    let j = Judged { verdict, rank };
                    self.cache.judged.insert(id, j.clone());
                    Some(j)
                }
            };
            let ok = matches!(&judged, Some(Judged { verdict: Ok(_), .. }));
            self.judged[i] = judged;
            let after = if self.nodes[i].supplies_cutoffs && ok {
                let m = self.past_of(i);
                self.state_of(&m)
            } else if !ok {
                before
            } else {
                let state = applied.unwrap_or_else(|| {
                    let op = self.nodes[i].op.as_ref().expect("judged ops decoded");
                    let mut state = (*before).clone();
                    let _ = state.apply(&self.info(i, false), op);
                    state
                });
                Arc::new(state)
            };
            self.after.insert(i, after);
            for p in self.nodes[i].preds.clone() {
                waiting[p] -= 1;
                if waiting[p] == 0 && !keep.contains(&p) {
                    self.after.remove(&p);
                }
            }
        }
    }

    /// `R(past(o) \ {o})`: the predecessor's state, or the merge of several.
    fn state_before(&mut self, i: usize) -> Arc<State> {
        let preds = self.nodes[i].preds.clone();
        match preds.as_slice() {
            [] => Arc::new(State::default()),
            [p] => self
                .after
                .get(p)
                .cloned()
                .expect("a predecessor is judged first and kept until its successors are"),
            _ => {
                let mut m = mask_new(self.nodes.len());
                for p in preds {
                    let pm = self.past_of(p);
                    mask_or(&mut m, &pm);
                }
                self.state_of(&m)
            }
        }
    }

    /// The state of `R(mask)`, from the cache when this set was seen before.
    fn state_of(&mut self, mask: &Mask) -> Arc<State> {
        let key = self.maximal(mask);
        if let Some(s) = self.cache.states.get(&key) {
            return s.clone();
        }
        if let [only] = key.as_slice() {
            let i = self.index[only];
            if let Some(s) = self.after.get(&i) {
                return s.clone();
            }
        }
        let state = self.resolve(mask).state.clone();
        self.cache.states.insert(key, state.clone());
        state
    }

    /// Step 4: `R(mask)`, memoised. Well-founded: it uses the judgements of
    /// the ops in `mask` in their own contexts (strictly smaller sets) and
    /// `R` of strictly smaller sets (in [`Engine::voids`]).
    fn resolve(&mut self, mask: &Mask) -> Rc<Resolved> {
        if let Some(r) = self.memo.get(mask) {
            return r.clone();
        }
        // Removals that stand, by induction on (rank, id): only a standing
        // removal of a strictly stronger rank, decided before, voids one.
        let mut removals: Vec<(u32, EnvelopeId, usize)> = mask_ones(mask)
            .filter(|&i| self.nodes[i].removal && self.judged_ok(i))
            .map(|i| (self.rank(i), self.nodes[i].id, i))
            .collect();
        removals.sort();
        let mut standing: Vec<usize> = Vec::new();
        let mut voids: BTreeMap<usize, EnvelopeId> = BTreeMap::new();
        for (_, _, r) in removals {
            let by = standing
                .clone()
                .into_iter()
                .find(|&s| self.voids(s, r, mask));
            match by {
                Some(s) => {
                    voids.insert(r, self.nodes[s].id);
                }
                None => standing.push(r),
            }
        }
        // Every other op falls to a standing removal that voids it; the
        // ops a standing removal's cutoff covers go before it.
        let mut soft: Vec<(usize, usize)> = Vec::new();
        if !standing.is_empty() {
            let ops: Vec<usize> = mask_ones(mask).filter(|&o| self.judged_ok(o)).collect();
            for &s in &standing {
                for &o in &ops {
                    let targeted = self.aims_at(s, &self.nodes[o].author);
                    if !targeted || o == s || self.reaches(o, s) || self.reaches(s, o) {
                        continue;
                    }
                    if self.covered(o, s, mask) {
                        soft.push((o, s));
                    } else if !self.nodes[o].removal
                        && !voids.contains_key(&o)
                        && self.judged_ok(o)
                        && self.voids(s, o, mask)
                    {
                        voids.insert(o, self.nodes[s].id);
                    }
                }
            }
        }
        let rc = Rc::new(self.pass(mask, &voids, &soft));
        self.memo.insert(mask.clone(), rc.clone());
        rc
    }

    /// Strong removal of control ops: removal `r` voids op `o` iff they are
    /// concurrent, `r` is aimed at `o`'s author ([`Engine::aims_at`]),
    /// a removal `o` has a weaker rank than `r`, `o` is not covered by
    /// `r`'s cutoff for its space, and `o` is no longer authorised in
    /// `R(past(o) \ {o} ∪ past(r))` (effective rights: another grant may
    /// still carry it).
    fn voids(&mut self, r: usize, o: usize, mask: &Mask) -> bool {
        if r == o || self.reaches(r, o) || self.reaches(o, r) {
            return false;
        }
        if !self.aims_at(r, &self.nodes[o].author) {
            return false;
        }
        if self.nodes[o].removal && self.rank(r) >= self.rank(o) {
            return false;
        }
        if self.covered(o, r, mask) {
            return false;
        }
        let mut union = (*self.past_of(o)).clone();
        mask_clear(&mut union, o);
        let pr = self.past_of(r);
        mask_or(&mut union, &pr);
        let mut state = (*self.state_of(&union)).clone();
        let op = self.nodes[o].op.as_ref().expect("judged ops decoded");
        state.apply(&self.info(o, false), op).is_err()
    }

    /// Whether removal `r` counts control op `o` (by one of its targets) as
    /// made before it: in its past, or covered by its cutoff for `o`'s
    /// space. With no cutoff known for that space (a roster removal whose
    /// author did not hold the folder, before any rotation supplied one)
    /// only the context decides.
    ///
    /// A [`MembershipOp::Delete`] counts as before `r` only when it is in
    /// `r`'s past: never through a cutoff, nor for want of one. A Delete
    /// is final for every member, so it fails closed: one concurrent with
    /// a removal that took its author's right to delete is voided
    /// ([`Engine::voids`]), whatever the removal's cutoffs say (a revoked
    /// device or ex-admin cannot backdate its context into a weak window).
    fn covered(&mut self, o: usize, r: usize, mask: &Mask) -> bool {
        if self.reaches(r, o) {
            return true;
        }
        if matches!(
            self.nodes[o].op,
            Some(ControlOp::Membership(MembershipOp::Delete))
        ) {
            return false;
        }
        let (space, author, seq, id) = {
            let n = &self.nodes[o];
            (n.space, n.author, n.seq, n.id)
        };
        match self.cutoff_point(r, &space, &author, Some(mask)) {
            None => true,
            Some(point) => self.point_covers(point, (space, author), seq, id),
        }
    }

    /// The cutoff removal `r` gives for `device`'s envelopes in `space`:
    /// its own, else (a roster removal, for this folder) the smallest one
    /// supplied by a rotation in `mask` that has `r` in its past, was
    /// authorised in its own context and whose author `r` did not target.
    fn cutoff_point(
        &mut self,
        r: usize,
        space: &SpaceId,
        device: &DeviceId,
        mask: Option<&Mask>,
    ) -> Option<CutoffPoint> {
        let op = self.nodes[r].op.as_ref()?;
        if let Some(map) = op.cutoff_for(space, &self.home) {
            return Some(map.get(device).copied().unwrap_or(NO_CUTOFF));
        }
        if space != &self.home {
            return None;
        }
        let rid = self.nodes[r].id;
        let candidates: Vec<usize> = match mask {
            Some(m) => mask_ones(m).collect(),
            None => self.topo.clone(),
        };
        let mut best: Option<CutoffPoint> = None;
        for i in candidates {
            let Some(ControlOp::Membership(MembershipOp::Rotate { cutoffs, .. })) =
                &self.nodes[i].op
            else {
                continue;
            };
            let Some((_, c)) = cutoffs.iter().find(|(id, _)| *id == rid) else {
                continue;
            };
            let point = c.get(device).copied().unwrap_or(NO_CUTOFF);
            if !self.judged_ok(i) || !self.reaches(i, r) || self.aims_at(r, &self.nodes[i].author) {
                continue;
            }
            if best.is_none_or(|b| (point.seq, point.id) < (b.seq, b.id)) {
                best = Some(point);
            }
        }
        best
    }

    /// Whether the envelope `(seq, id)` of `chain` is the cutoff envelope or
    /// one of its own ancestors. A cutoff naming an envelope not held (yet)
    /// covers the seqs up to its own where the chain did not fork.
    fn point_covers(
        &mut self,
        point: CutoffPoint,
        chain: (SpaceId, DeviceId),
        seq: u64,
        id: EnvelopeId,
    ) -> bool {
        if seq > point.seq || point.seq == 0 {
            return false;
        }
        let named = self.held.get(&point.id).filter(|e| {
            (e.space(), e.author()) == chain
                && e.seq() == point.seq
                && self.chains.is_linked(&e.id())
        });
        if named.is_none() {
            return !self.chains.forked_at(&chain, seq);
        }
        if !self.chains.fork_seqs.contains_key(&chain) {
            return true;
        }
        let held = self.held;
        self.ancestry
            .entry(point.id)
            .or_insert_with(|| {
                let mut set = HashSet::new();
                let mut cur = Some(point.id);
                while let Some(c) = cur {
                    set.insert(c);
                    cur = held.get(&c).and_then(|e| e.body().prev);
                }
                set
            })
            .contains(&id)
    }

    /// One linear pass in the deterministic order: Kahn's sort, among ready
    /// ops removals first, then the lowest id; an op a removal's cutoff
    /// covers (`soft`: op before removal) waits for nothing but goes first.
    /// A cycle of such claims (a lying cutoff) is broken by taking the
    /// first op in that order whose context is done. An op takes effect iff
    /// it was authorised in its own context, is not voided, and its author
    /// still has the right in the state built so far.
    fn pass(
        &self,
        mask: &Mask,
        voids: &BTreeMap<usize, EnvelopeId>,
        soft: &[(usize, usize)],
    ) -> Resolved {
        let n = self.nodes.len();
        let mut out = Resolved::default();
        let mut hard = vec![0usize; n];
        let mut weak = vec![0usize; n];
        let mut soft_succs: HashMap<usize, Vec<usize>> = HashMap::new();
        for &(o, r) in soft {
            weak[r] += 1;
            soft_succs.entry(o).or_default().push(r);
        }
        let key = |i: usize| Reverse((!self.nodes[i].removal, self.nodes[i].id, i));
        let mut ready = BinaryHeap::new();
        let mut context_done = BinaryHeap::new();
        let mut count = 0;
        for i in mask_ones(mask) {
            count += 1;
            hard[i] = self.nodes[i]
                .preds
                .iter()
                .filter(|p| mask_has(mask, **p))
                .count();
            if hard[i] == 0 {
                context_done.push(key(i));
                if weak[i] == 0 {
                    ready.push(key(i));
                }
            }
        }
        let mut done = vec![false; n];
        let mut state = State::default();
        while count > 0 {
            let next = match ready.pop() {
                Some(Reverse((_, _, i))) if !done[i] => i,
                Some(_) => continue,
                None => match context_done.pop() {
                    Some(Reverse((_, _, i))) if !done[i] => i,
                    Some(_) => continue,
                    None => break,
                },
            };
            done[next] = true;
            count -= 1;
            let node = &self.nodes[next];
            let verdict = if let Some(bad) = &node.bad {
                Err(bad.clone())
            } else if let Some(Judged {
                verdict: Err(why), ..
            }) = &self.judged[next]
            {
                Err(why.clone())
            } else if let Some(by) = voids.get(&next) {
                // A voided rotation takes no effect, but its key stays an
                // epoch: honest writers who saw it wrote under it.
                if let Some(op) = &node.op {
                    state.keep_voided_epoch(&self.info(next, false), op);
                }
                Err(Reason::Voided { by: *by })
            } else {
                let op = node.op.as_ref().expect("ops without a bad reason decoded");
                let info = self.info(next, false);
                let applied = state.apply(&info, op);
                if applied.is_err() {
                    // Authorised where its author stood, refused in the pass
                    // (a concurrent demotion took the right first): like a
                    // voided rotation, its key stays an epoch.
                    state.keep_voided_epoch(&info, op);
                }
                applied.map_err(Reason::Unauthorized)
            };
            match verdict {
                Ok(effect) => {
                    out.valid.insert(next);
                    if let Some(e) = effect {
                        out.removals.push((next, e));
                    }
                }
                Err(reason) => {
                    out.reasons.insert(next, reason);
                }
            }
            for &s in &node.succs {
                if mask_has(mask, s) {
                    hard[s] -= 1;
                    if hard[s] == 0 {
                        context_done.push(key(s));
                        if weak[s] == 0 {
                            ready.push(key(s));
                        }
                    }
                }
            }
            for &s in soft_succs.get(&next).into_iter().flatten() {
                weak[s] -= 1;
                if weak[s] == 0 && hard[s] == 0 {
                    ready.push(key(s));
                }
            }
        }
        out.state = Arc::new(state);
        out
    }
}

/// Judges a held set. `held` holds the home space's envelopes and (for a
/// folder of a team) the team roster's. Needs no key: everything it reads
/// is in plaintext headers and control ops.
pub fn evaluate(
    home: SpaceId,
    team: Option<SpaceId>,
    held: &HashMap<EnvelopeId, Envelope>,
) -> Evaluation {
    evaluate_cached(home, team, held, &mut Cache::default(), Limits::default())
}

/// [`evaluate`] reusing (and filling) a [`Cache`] from earlier evaluations
/// of the same space; the result is the same.
pub fn evaluate_cached(
    home: SpaceId,
    team: Option<SpaceId>,
    held: &HashMap<EnvelopeId, Envelope>,
    cache: &mut Cache,
    limits: Limits,
) -> Evaluation {
    let mut ev = Evaluation::default();
    let chains = Chains::build(held, &mut ev);
    cache.trim();
    let mut engine = Engine::build(home, team, held, &chains, std::mem::take(cache), limits);
    let n = engine.nodes.len();
    let mut all = mask_new(n);
    for i in 0..n {
        if engine.pending[i] {
            ev.pending.insert(engine.nodes[i].id);
        } else {
            mask_set(&mut all, i);
        }
    }
    for env in held.values() {
        if !chains.is_linked(&env.id()) {
            ev.pending.insert(env.id());
        }
    }
    // Monotone authors: a control op's context covers its previous envelope's.
    for &i in &engine.topo.clone() {
        if engine.nodes[i].bad.is_some() {
            continue;
        }
        let prev = held[&engine.nodes[i].id].body().prev;
        let Some(p) = prev.and_then(|p| held.get(&p)) else {
            continue;
        };
        let regressed = p.body().context.iter().any(|h| match engine.index.get(h) {
            Some(&j) if !engine.pending[j] => !engine.reaches(i, j),
            _ => true,
        });
        if regressed {
            engine.nodes[i].bad = Some(Reason::ContextRegressed);
        }
    }
    // States kept past their successors: the heads and single-head contexts
    // of content (`R(past(context))` is then that head's state).
    let mut keep: HashSet<usize> = (0..n)
        .filter(|&i| mask_has(&all, i))
        .filter(|&i| engine.nodes[i].succs.iter().all(|s| engine.pending[*s]))
        .collect();
    // In a folder of a team, the roster's own heads: their state is the
    // context of the next roster op ([`extend_roster_in_folder`]).
    let roster_heads: Vec<usize> = match team {
        Some(t) if t != home => (0..n)
            .filter(|&i| mask_has(&all, i) && engine.nodes[i].space == t)
            .filter(|&i| {
                engine.nodes[i]
                    .succs
                    .iter()
                    .all(|&s| engine.pending[s] || engine.nodes[s].space != t)
            })
            .collect(),
        _ => Vec::new(),
    };
    keep.extend(roster_heads.iter().copied());
    for env in held.values() {
        if !is_control(env.kind()) {
            if let [h] = env.body().context.as_slice() {
                if let Some(&i) = engine.index.get(h) {
                    keep.insert(i);
                }
            }
        }
    }
    engine.judge_all(&keep);
    if let [h] = roster_heads.as_slice() {
        if let Some(state) = engine.after.get(h) {
            engine
                .cache
                .states
                .insert(vec![engine.nodes[*h].id], state.clone());
        }
    }
    let mut sorted_roster_heads: Vec<EnvelopeId> =
        roster_heads.iter().map(|&i| engine.nodes[i].id).collect();
    sorted_roster_heads.sort();
    ev.roster_heads = sorted_roster_heads;
    let fin = engine.resolve(&all);
    for i in mask_ones(&all) {
        let id = engine.nodes[i].id;
        if fin.valid.contains(&i) {
            ev.accepted.insert(id);
        } else if let Some(r) = fin.reasons.get(&i) {
            ev.quarantined.insert(id, r.clone());
        }
    }
    let mut heads: Vec<EnvelopeId> = mask_ones(&all)
        .filter(|i| engine.nodes[*i].succs.iter().all(|s| engine.pending[*s]))
        .map(|i| engine.nodes[i].id)
        .collect();
    heads.sort();
    ev.control_heads = heads;
    ev.removals = fin
        .removals
        .iter()
        .map(|(i, e)| (engine.nodes[*i].id, e.clone()))
        .collect();
    for (r, effect) in &fin.removals {
        ev.removed.extend(effect.lost_members.iter().copied());
        ev.removed.extend(effect.lost_writers.iter().copied());
        ev.removed.extend(effect.lost_managers.iter().copied());
        if let Some(e) = engine.effect(*r) {
            ev.removed
                .extend(e.lost_members.iter().chain(&e.lost_writers).copied());
            ev.removed.extend(e.lost_managers.iter().copied());
        }
        for d in engine.users.keys() {
            if engine.aims_at(*r, d) {
                // A group's removal: every device of its users (as the final
                // state has them, concurrent additions included), plus what
                // it took in either state above.
                let group = match &engine.nodes[*r].op {
                    Some(ControlOp::Membership(MembershipOp::Remove {
                        principal: Principal::Group(g),
                        ..
                    })) => Some(g),
                    _ => None,
                };
                let member = group.is_none_or(|g| {
                    fin.state.team.groups.get(g).is_some_and(|m| {
                        engine
                            .users
                            .get(d)
                            .is_some_and(|us| us.iter().any(|u| m.contains(u)))
                    })
                });
                if member {
                    ev.removed.insert(*d);
                }
            }
        }
        if let Some(ControlOp::Membership(MembershipOp::Remove {
            principal: Principal::Device(d),
            ..
        })) = &engine.nodes[*r].op
        {
            ev.removed.insert(*d);
        }
    }
    ev.state = fin.state.clone();
    content_validity(&mut engine, &fin, &all, &chains, &mut ev);
    *cache = std::mem::take(&mut engine.cache);
    ev
}

/// The control fast path: `op` (already held, linked, decoded) cites every
/// current control head and is neither a removal nor a rotation supplying
/// cutoffs, so `R(all ∪ {op}) = R(all)` plus `op` and no other verdict
/// changes. Updates `ev` and returns the outcome, or `None` when the full
/// evaluation is needed.
pub(crate) fn extend_control(
    ev: &mut Evaluation,
    cache: &mut Cache,
    (env, op, control_before): (&Envelope, &ControlOp, u64),
    (home, team): (SpaceId, Option<SpaceId>),
    limits: Limits,
) -> Option<Result<(), Reason>> {
    if op.is_removal() || op.is_founding() || control_before >= limits.control_ops_per_author {
        return None;
    }
    if matches!(op, ControlOp::Membership(MembershipOp::Rotate { cutoffs, .. }) if !cutoffs.is_empty())
    {
        return None;
    }
    let mut context = env.body().context.clone();
    context.sort();
    context.dedup();
    if context.is_empty() || context != ev.control_heads {
        return None;
    }
    let info = OpInfo {
        id: env.id(),
        author: env.author(),
        seq: env.seq(),
        space: env.space(),
        home,
        team,
        strict: true,
    };
    let rank = ev.state.rights(&env.author()).rank;
    let mut state = (*ev.state).clone();
    let verdict = state.apply(&info, op).map_err(Reason::Unauthorized);
    cache.judged.insert(
        env.id(),
        Judged {
            verdict: verdict.clone(),
            rank,
        },
    );
    let outcome = verdict.map(|_| ());
    if outcome.is_ok() {
        ev.state = Arc::new(state);
    }
    ev.control_heads = vec![env.id()];
    cache.states.insert(vec![env.id()], ev.state.clone());
    ev.contexts.insert(vec![env.id()], ev.state.clone());
    Some(outcome)
}

/// The roster fast path of a folder of a team: a roster op that adds no
/// right in this folder to any device already in the team (a new user, a
/// new device, a name, a new group, a user added to a group the folder
/// never names), written by a device that held every roster op this
/// folder holds (its context is [`Evaluation::roster_heads`]), and neither
/// a removal's target nor covered by one (the caller checks both: the
/// roster op kinds [`adds_no_right`], and the removals). Such an op commutes with every
/// folder op concurrent with it — none of their verdicts in the pass
/// depends on it, and it voids or covers nothing — so `R(all ∪ {op})` is
/// `R(all)` with `op` applied, and it is judged in the state of its own
/// context as the full evaluation judges it. `None` sends it to the full
/// evaluation (also when that state is no longer cached).
pub(crate) fn extend_roster_in_folder(
    ev: &mut Evaluation,
    cache: &mut Cache,
    (env, op, control_before): (&Envelope, &ControlOp, u64),
    (home, team): (SpaceId, Option<SpaceId>),
    limits: Limits,
) -> Option<Result<(), Reason>> {
    if team.is_none_or(|t| t == home || t != env.space())
        || !matches!(op, ControlOp::Roster(_))
        || op.is_removal()
        || control_before >= limits.control_ops_per_author
    {
        return None;
    }
    let mut context = env.body().context.clone();
    context.sort();
    context.dedup();
    if context.is_empty() || context != ev.roster_heads {
        return None;
    }
    let before = cache.states.get(&context)?.clone();
    let info = OpInfo {
        id: env.id(),
        author: env.author(),
        seq: env.seq(),
        space: env.space(),
        home,
        team,
        strict: true,
    };
    let rank = before.rights(&env.author()).rank;
    let mut own = (*before).clone();
    let verdict = own.apply(&info, op).map_err(Reason::Unauthorized);
    cache.judged.insert(
        env.id(),
        Judged {
            verdict: verdict.clone(),
            rank,
        },
    );
    let outcome = verdict.map(|_| ());
    if outcome.is_ok() {
        let mut state = (*ev.state).clone();
        let applied = state.apply(
            &OpInfo {
                strict: false,
                ..info
            },
            op,
        );
        if applied.is_err() {
            // Authorised in its context, refused where the pass would put
            // it: the pass decides; this path does not guess.
            return None;
        }
        ev.state = Arc::new(state);
        cache.states.insert(vec![env.id()], Arc::new(own));
    } else {
        cache.states.insert(vec![env.id()], before);
    }
    // Only the newest states are kept: a long-running folder takes many
    // roster ops this way between two evaluations, and each state kept
    // holds its own copy of what the op changed. A late envelope citing
    // an older context takes the full evaluation, which finds it again.
    cache.states.remove(&context);
    ev.contexts.remove(&ev.control_heads);
    ev.control_heads.retain(|h| !context.contains(h));
    ev.control_heads.push(env.id());
    ev.control_heads.sort();
    ev.roster_heads = vec![env.id()];
    ev.contexts
        .insert(ev.control_heads.clone(), ev.state.clone());
    Some(outcome)
}

/// Roster ops that give no device a right it lacked: a user with no
/// device or group, a device (of a user whose rights it then shares, but
/// which wrote nothing under them before this op), names, a new group.
pub(crate) fn adds_no_right(op: &ControlOp) -> bool {
    matches!(
        op,
        ControlOp::Roster(
            RosterOp::AddUser { .. }
                | RosterOp::AddDevice { .. }
                | RosterOp::NameUser { .. }
                | RosterOp::NameDevice { .. }
                | RosterOp::RenameTeam { .. }
                | RosterOp::CreateGroup { .. }
        )
    )
}

struct ContentJudgement {
    valid: bool,
    reason: Option<Reason>,
}

/// Step 5: judges every content and usage envelope.
fn content_validity(
    engine: &mut Engine<'_>,
    fin: &Resolved,
    all: &Mask,
    chains: &Chains,
    ev: &mut Evaluation,
) {
    let held = engine.held;
    let home = engine.home;
    let mut ids: Vec<EnvelopeId> = held
        .values()
        .filter(|e| !is_control(e.kind()))
        .filter(|e| chains.is_linked(&e.id()))
        .map(Envelope::id)
        .collect();
    ids.sort();
    let mut ctx_masks: HashMap<Vec<EnvelopeId>, Option<Rc<Mask>>> = HashMap::new();
    let mut judged: BTreeMap<EnvelopeId, ContentJudgement> = BTreeMap::new();
    let mut lower_bounds: HashMap<usize, HashSet<EnvelopeId>> = HashMap::new();
    for id in ids {
        let env = &held[&id];
        let body = env.body();
        if body.space != home || engine.team == Some(home) {
            ev.quarantined.insert(
                id,
                Reason::Malformed("content outside a folder space".into()),
            );
            continue;
        }
        if body.context.is_empty() {
            ev.quarantined
                .insert(id, Reason::Malformed("content cites no context".into()));
            continue;
        }
        let mut key = body.context.clone();
        key.sort();
        key.dedup();
        let mask = match ctx_masks.get(&key) {
            Some(m) => m.clone(),
            None => {
                let m = engine.context_mask(&key).map(Rc::new);
                ctx_masks.insert(key.clone(), m.clone());
                m
            }
        };
        let Some(mask) = mask else {
            let names_content = body
                .context
                .iter()
                .any(|c| held.get(c).is_some_and(|e| !is_control(e.kind())));
            if names_content {
                ev.quarantined
                    .insert(id, Reason::Malformed("context names content".into()));
            } else {
                ev.pending.insert(id);
            }
            continue;
        };
        // Monotone authors: the context covers the previous envelope's.
        if let Some(p) = body.prev.and_then(|p| held.get(&p)) {
            let mut theirs = p.body().context.clone();
            theirs.sort();
            theirs.dedup();
            let regressed = theirs != key
                && theirs.iter().any(|h| match engine.index.get(h) {
                    Some(&j) if !engine.pending[j] => !mask_has(&mask, j),
                    _ => true,
                });
            if regressed {
                ev.quarantined.insert(id, Reason::ContextRegressed);
                continue;
            }
        }
        let at = match ev.contexts.get(&key) {
            Some(s) => s.clone(),
            None => {
                let s = engine.state_of(&mask);
                ev.contexts.insert(key, s.clone());
                s
            }
        };
        if let Some(h) = &body.change {
            // Incarnations: a device removed from the folder writes as a
            // later incarnation once its context shows the removal.
            let need = at.incarnation(&body.author);
            if h.incarnation >= MAX_INCARNATIONS {
                ev.quarantined
                    .insert(id, Reason::Malformed("incarnation out of range".into()));
                continue;
            }
            if h.incarnation < need {
                ev.quarantined.insert(
                    id,
                    Reason::StaleIncarnation {
                        got: h.incarnation,
                        need,
                    },
                );
                continue;
            }
        }
        let reason = judge_content(engine, fin, all, &at, env, &mask, &mut lower_bounds);
        judged.insert(
            id,
            ContentJudgement {
                valid: reason.is_none(),
                reason,
            },
        );
    }
    endorse(held, &fin.state, judged, ev);
}

fn judge_content(
    engine: &mut Engine<'_>,
    fin: &Resolved,
    all: &Mask,
    at: &State,
    env: &Envelope,
    mask: &Mask,
    lower_bounds: &mut HashMap<usize, HashSet<EnvelopeId>>,
) -> Option<Reason> {
    let body = env.body();
    let rights = at.rights(&body.author);
    let ok = match body.kind {
        Kind::Content => rights.writer,
        _ => rights.member,
    };
    if !ok {
        return Some(Reason::Unauthorized(match body.kind {
            Kind::Content => "writing items needs Folder Manager or Item Manager".into(),
            _ => "usage events come from member devices only".into(),
        }));
    }
    if body.epoch.is_none() || body.epoch != at.folder.current_epoch {
        return Some(Reason::StaleEpoch("not the current epoch of its context"));
    }
    if at.rotation_due() {
        return Some(Reason::StaleEpoch("a member left since this epoch began"));
    }
    if !body
        .epoch
        .is_some_and(|e| fin.state.folder.epochs.contains_key(&e))
    {
        return Some(Reason::StaleEpoch(
            "the epoch's rotation did not take effect",
        ));
    }
    for (r, _) in &fin.removals {
        if !engine.aims_at(*r, &body.author) || mask_has(mask, *r) {
            continue;
        }
        let chain = (body.space, body.author);
        let covered = match engine.cutoff_point(*r, &body.space, &body.author, Some(all)) {
            None => true,
            Some(point) => engine.point_covers(point, chain, body.seq, env.id()),
        } || remover_saw(engine, *r, env.id(), lower_bounds);
        if covered {
            continue;
        }
        // Effective rights: judged in R(past(c) ∪ past(r)), where another
        // grant the author had seen (or the removal's author had) may still
        // carry the right.
        let mut union = mask.clone();
        let pr = engine.past_of(*r);
        mask_or(&mut union, &pr);
        let rights = engine.state_of(&union).rights(&body.author);
        let still = match body.kind {
            Kind::Content => rights.writer,
            _ => rights.member,
        };
        if !still {
            return Some(Reason::Removed {
                by: engine.nodes[*r].id,
            });
        }
    }
    None
}

/// Whether the author of membership removal `r` had built on content `c`
/// before it: `c` is among the deps (transitively) of the remover's own
/// earlier changes in this folder. A lower bound on what it saw, whatever
/// cutoff it stated.
fn remover_saw(
    engine: &mut Engine<'_>,
    r: usize,
    c: EnvelopeId,
    memo: &mut HashMap<usize, HashSet<EnvelopeId>>,
) -> bool {
    let node = &engine.nodes[r];
    if node.space != engine.home {
        return false;
    }
    let (author, seq) = (node.author, node.seq);
    let held = engine.held;
    memo.entry(r)
        .or_insert_with(|| {
            let mut seen = HashSet::new();
            let mut stack: Vec<EnvelopeId> = held
                .values()
                .filter(|e| {
                    e.author() == author
                        && e.space() == engine.home
                        && e.seq() < seq
                        && e.kind() == Kind::Content
                })
                .map(Envelope::id)
                .collect();
            while let Some(x) = stack.pop() {
                if !seen.insert(x) {
                    continue;
                }
                if let Some(h) = held.get(&x).and_then(|e| e.body().change.as_ref()) {
                    stack.extend(h.deps.iter().copied());
                }
            }
            seen
        })
        .contains(&c)
}

/// Step 6: the accepted content closure, with endorsement, from the
/// change headers alone.
fn endorse(
    held: &HashMap<EnvelopeId, Envelope>,
    fin: &State,
    judged: BTreeMap<EnvelopeId, ContentJudgement>,
    ev: &mut Evaluation,
) {
    // Usage events: valid or not, nothing builds on them.
    let mut content: Vec<EnvelopeId> = Vec::new();
    for (id, j) in &judged {
        if held[id].kind() == Kind::Usage {
            match &j.reason {
                None => {
                    ev.accepted.insert(*id);
                    ev.usage_order.push(*id);
                }
                Some(r) => {
                    ev.quarantined.insert(*id, r.clone());
                }
            }
        } else {
            content.push(*id);
        }
    }
    let idx: HashMap<EnvelopeId, usize> =
        content.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let n = content.len();
    let header = |i: usize| {
        held[&content[i]]
            .body()
            .change
            .as_ref()
            .expect("decoding guarantees content has a change header")
    };
    let key_of = |i: usize| {
        let h = header(i);
        (held[&content[i]].author(), h.incarnation, h.seq)
    };
    let mut by_key: HashMap<(DeviceId, u32, u64), Vec<usize>> = HashMap::new();
    for i in 0..n {
        by_key.entry(key_of(i)).or_default().push(i);
    }
    for (author, inc, seq) in by_key.keys() {
        let tip = ev.change_tips.entry((*author, *inc)).or_insert(ChangeTip {
            seq: *seq,
            accepted: false,
        });
        tip.seq = tip.seq.max(*seq);
    }
    // Parents: the header's deps, and the change before it of the same
    // (device, incarnation) — Automerge needs it. The order also follows
    // each author's chain (`prev`), which is no dependency: a valid change
    // may follow its author's quarantined one.
    let mut parents: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut missing = vec![false; n];
    let mut dead = vec![false; n];
    let mut bad_seq = vec![false; n];
    for i in 0..n {
        for d in &header(i).deps {
            match idx.get(d) {
                Some(&j) => parents[i].push(j),
                None if ev.quarantined.contains_key(d)
                    || (held.contains_key(d) && !ev.pending.contains(d)) =>
                {
                    dead[i] = true
                }
                None => missing[i] = true,
            }
        }
    }
    let prev_of = |i: usize| -> Option<usize> {
        held[&content[i]]
            .body()
            .prev
            .as_ref()
            .and_then(|p| idx.get(p))
            .copied()
    };
    let order = |parents: &[Vec<usize>]| -> Vec<usize> {
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut indeg = vec![0usize; n];
        for i in 0..n {
            let mut ps = parents[i].clone();
            if let Some(j) = prev_of(i) {
                ps.push(j);
            }
            ps.sort_unstable();
            ps.dedup();
            indeg[i] = ps.len();
            for p in ps {
                children[p].push(i);
            }
        }
        let mut heap: BinaryHeap<Reverse<usize>> =
            (0..n).filter(|i| indeg[*i] == 0).map(Reverse).collect();
        let mut topo = Vec::with_capacity(n);
        while let Some(Reverse(i)) = heap.pop() {
            topo.push(i);
            for &c in &children[i] {
                indeg[c] -= 1;
                if indeg[c] == 0 {
                    heap.push(Reverse(c));
                }
            }
        }
        topo
    };
    // Structural endorsement: a change another device built on (directly
    // or through the author's own later changes), from the deps alone.
    let author_of = |i: usize| held[&content[i]].author();
    let mut dep_children: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ps) in parents.iter().enumerate() {
        for &p in ps {
            dep_children[p].push(i);
        }
    }
    let mut built_on = vec![false; n];
    for &i in order(&parents).iter().rev() {
        built_on[i] = dep_children[i]
            .iter()
            .any(|&c| author_of(c) != author_of(i) || built_on[c]);
    }
    // One Automerge actor must not have two changes with one seq (Automerge
    // refuses such a document): the author forked. The one another device
    // built on stays (the lowest id if several were); the others go, as
    // all do when nobody built on any. An honest device that lost a change
    // starts a new incarnation instead.
    let mut actor_fork = vec![false; n];
    let mut winner: HashMap<(DeviceId, u32, u64), usize> = HashMap::new();
    for (k, group) in &by_key {
        let won = match group.as_slice() {
            [one] => Some(*one),
            _ => group
                .iter()
                .copied()
                .filter(|&i| built_on[i])
                .min_by_key(|&i| content[i]),
        };
        for &i in group {
            if Some(i) != won {
                actor_fork[i] = true;
            }
        }
        if let Some(w) = won {
            winner.insert(*k, w);
        }
    }
    for i in 0..n {
        let (author, inc, seq) = key_of(i);
        if seq > 1 {
            match winner.get(&(author, inc, seq - 1)) {
                Some(&j) => parents[i].push(j),
                None if by_key.contains_key(&(author, inc, seq - 1)) => dead[i] = true,
                None => bad_seq[i] = true,
            }
        }
        parents[i].sort_unstable();
        parents[i].dedup();
    }
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ps) in parents.iter().enumerate() {
        for &p in ps {
            children[p].push(i);
        }
    }
    let topo = order(&parents);
    let mut in_topo = vec![false; n];
    for &i in &topo {
        in_topo[i] = true;
        if parents[i].iter().any(|p| missing[*p]) {
            missing[i] = true;
        }
    }
    for i in 0..n {
        if !in_topo[i] {
            missing[i] = true;
        }
    }
    let mut user_ids: HashMap<String, u32> = HashMap::new();
    let user: Vec<u32> = content
        .iter()
        .map(|id| {
            let author = held[id].author();
            let key = match fin.user_of(&author) {
                Some(u) => format!("u:{}", u.0),
                None => format!("d:{}", author.to_hex()),
            };
            let next = user_ids.len() as u32;
            *user_ids.entry(key).or_insert(next)
        })
        .collect();
    let judgement: Vec<&ContentJudgement> = content.iter().map(|id| &judged[id]).collect();
    let mut keep: Vec<bool> = (0..n)
        .map(|i| {
            !missing[i]
                && !dead[i]
                && !actor_fork[i]
                && !bad_seq[i]
                && (judgement[i].valid
                    || judgement[i].reason.as_ref().is_some_and(Reason::endorsable))
        })
        .collect();
    let mut endorser: Vec<Option<usize>> = vec![None; n];
    loop {
        let mut changed = false;
        for &i in &topo {
            if keep[i] && parents[i].iter().any(|p| !keep[*p]) {
                keep[i] = false;
                changed = true;
            }
        }
        // Up to two (user, change) pairs of distinct users among each
        // change's kept descendants.
        let mut desc: Vec<[Option<(u32, usize)>; 2]> = vec![[None, None]; n];
        for &i in topo.iter().rev() {
            let mut acc: [Option<(u32, usize)>; 2] = [None, None];
            let mut add = |pair: (u32, usize)| {
                if acc[0].is_none() {
                    acc[0] = Some(pair);
                } else if acc[0].map(|a| a.0) != Some(pair.0) && acc[1].is_none() {
                    acc[1] = Some(pair);
                }
            };
            for &c in &children[i] {
                if keep[c] {
                    add((user[c], c));
                    for p in desc[c].into_iter().flatten() {
                        add(p);
                    }
                }
            }
            desc[i] = acc;
            endorser[i] = acc
                .into_iter()
                .flatten()
                .find(|(u, _)| *u != user[i])
                .map(|(_, c)| c);
            if keep[i] && !judgement[i].valid && endorser[i].is_none() {
                keep[i] = false;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    for &i in &topo {
        let id = content[i];
        if keep[i] {
            ev.accepted.insert(id);
            ev.content_order.push(id);
            let (author, inc, seq) = key_of(i);
            if let Some(tip) = ev.change_tips.get_mut(&(author, inc)) {
                tip.accepted |= tip.seq == seq;
            }
            if !judgement[i].valid {
                if let Some(e) = endorser[i] {
                    ev.endorsed_by.insert(id, content[e]);
                }
            }
        }
    }
    for i in 0..n {
        let id = content[i];
        if keep[i] {
            continue;
        }
        if actor_fork[i] {
            ev.quarantined
                .insert(id, Reason::Equivocation { seq: header(i).seq });
        } else if bad_seq[i] {
            ev.quarantined.insert(
                id,
                Reason::Malformed(
                    "the change's seq does not follow its incarnation's previous change".into(),
                ),
            );
        } else if missing[i] && !dead[i] && judgement[i].valid {
            ev.pending.insert(id);
        } else {
            let reason = judgement[i]
                .reason
                .clone()
                .unwrap_or(Reason::BuildsOnQuarantined);
            ev.quarantined.insert(id, reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ChangeTip;

    /// The fast path takes a change only right after its chain's highest
    /// judged change, and only if that one was accepted: a gap or a fork
    /// below goes to the evaluation.
    #[test]
    fn only_the_next_change_after_an_accepted_tip_is_taken_fast() {
        assert!(ChangeTip::takes_next(None, 1));
        assert!(!ChangeTip::takes_next(None, 2), "a gap below");
        let accepted = ChangeTip {
            seq: 4,
            accepted: true,
        };
        assert!(ChangeTip::takes_next(Some(&accepted), 5));
        assert!(!ChangeTip::takes_next(Some(&accepted), 4), "judged already");
        assert!(
            !ChangeTip::takes_next(Some(&accepted), 3),
            "judged or a fork"
        );
        assert!(!ChangeTip::takes_next(Some(&accepted), 6), "a gap");
        let pending = ChangeTip {
            seq: 4,
            accepted: false,
        };
        assert!(!ChangeTip::takes_next(Some(&pending), 5));
        let last = ChangeTip {
            seq: u64::MAX,
            accepted: true,
        };
        assert!(!ChangeTip::takes_next(Some(&last), 0), "no overflow");
    }
}
