//! The acceptance rule: which held envelopes take effect. A pure function of
//! the held set ([`evaluate`]); [`crate::space::Space`] caches its result and
//! takes a fast path for content that merely extends it.
//!
//! Steps (each named after the function doing it; `docs/security.md`
//! section 4 says the same in words):
//! 1. [`chains`]: per (space, author), the accepted line runs seq 1, 2, ...
//!    linked by `prev`; at a fork the lowest id continues it and the other
//!    branches are equivocation. A gap makes the rest *pending*.
//! 2. [`Graph::build`]: control ops (roster + membership) form a DAG through
//!    their `context`; an op citing a missing envelope is pending.
//! 3. [`Graph::judge_all`]: every op judged by [`State::apply`] in its own
//!    context `R(past(o) \ {o})` (the grant it cites, its rank, strict
//!    wrap checks).
//! 4. [`Graph::resolve`] = `R(X)` for a causally closed set X: standing
//!    removals by induction on (rank, id); every op a standing removal
//!    voids is dropped ([`Graph::voids_op`]: concurrent, beyond the cutoff,
//!    and no right left in `R(past(o) \ {o} ∪ past(r))`); then one linear
//!    pass ([`Graph::pass`]), Kahn's sort with removals first then the
//!    lowest id.
//! 5. [`content_validity`]: a content change is valid iff its header's
//!    incarnation is current in `R(past(context))`, its author may write
//!    there, it uses that state's current epoch with no rotation due, the
//!    epoch still stands in `R(all)`, and for every removal in `R(all)`
//!    that took the author's write right and is not in its past, `seq <=
//!    cutoff` or the author still writes in `R(past(c) ∪ past(r))`.
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
use crate::ops::{ControlOp, MembershipOp};
use crate::state::{OpInfo, RemovalEffect, State, NO_RANK};

/// Incarnations a device's Automerge actor may use (a device removed from
/// a folder starts a new one when re-added, so its new changes never extend
/// its quarantined past).
pub const MAX_INCARNATIONS: u32 = 64;

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

impl ChangeMeta {
    /// Reads the metadata of an Automerge change.
    pub fn from_change(bytes: &[u8]) -> Option<ChangeMeta> {
        let change = automerge::Change::from_bytes(bytes.to_vec()).ok()?;
        Some(ChangeMeta {
            hash: change.hash().0,
            actor: change.actor_id().to_bytes().to_vec(),
            seq: change.seq(),
            deps: change.deps().iter().map(|h| h.0).collect(),
        })
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
    /// The author signed two envelopes at `seq` (or broke its chain there).
    Equivocation { seq: u64 },
    /// The context goes back behind the author's previous envelope.
    ContextRegressed,
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
            Reason::Malformed(_) | Reason::ContextRegressed | Reason::StaleIncarnation { .. }
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Malformed(why) => write!(f, "malformed: {why}"),
            Reason::Equivocation { seq } => {
                write!(f, "equivocation: the author forked its chain at seq {seq}")
            }
            Reason::ContextRegressed => {
                f.write_str("context goes back behind the author's previous envelope")
            }
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
    pub state: State,
    pub accepted: BTreeSet<EnvelopeId>,
    pub quarantined: BTreeMap<EnvelopeId, Reason>,
    pub pending: BTreeSet<EnvelopeId>,
    /// Control ops nobody built on yet: the context of the next envelope.
    pub control_heads: Vec<EnvelopeId>,
    /// Accepted content, Automerge deps (and author chains) first.
    pub content_order: Vec<EnvelopeId>,
    pub usage_order: Vec<EnvelopeId>,
    /// Invalid content kept because the named change of another user built on it.
    pub endorsed_by: BTreeMap<EnvelopeId, EnvelopeId>,
    /// Valid removals of `R(all)` and what they took.
    pub removals: Vec<(EnvelopeId, RemovalEffect)>,
    /// Per chain, the last envelope of the unforked contiguous prefix.
    pub tips: HashMap<(SpaceId, DeviceId), (u64, EnvelopeId)>,
    pub forked: BTreeSet<(SpaceId, DeviceId)>,
    /// `R(past(context))` per sorted context, for the fast path.
    pub contexts: HashMap<Vec<EnvelopeId>, Arc<State>>,
    /// (author, incarnation, change seq) of every judged content change.
    pub change_keys: HashSet<(DeviceId, u32, u64)>,
    /// The same key -> the accepted content envelope carrying it.
    pub accepted_changes: HashMap<(DeviceId, u32, u64), EnvelopeId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChainStatus {
    Ok,
    Pending,
    Forked(u64),
}

/// Step 1: chain status of every held envelope. Per chain, the accepted
/// line is built from seq 1: at each seq, among the envelopes whose `prev`
/// is the line's tip, the lowest id continues it. Any other envelope at a
/// seq the line reaches (or right after its tip) is a losing branch of a
/// fork: [`ChainStatus::Forked`] with the first seq where the author forked.
/// Beyond a gap, envelopes are pending.
fn chains(
    held: &HashMap<EnvelopeId, Envelope>,
    ev: &mut Evaluation,
) -> HashMap<EnvelopeId, ChainStatus> {
    let mut by_chain: BTreeMap<(SpaceId, DeviceId), BTreeMap<u64, Vec<EnvelopeId>>> =
        BTreeMap::new();
    for env in held.values() {
        by_chain
            .entry((env.space(), env.author()))
            .or_default()
            .entry(env.seq())
            .or_default()
            .push(env.id());
    }
    let mut out = HashMap::with_capacity(held.len());
    for (key, mut seqs) in by_chain {
        // The accepted line.
        let mut line: Vec<EnvelopeId> = Vec::new();
        for (seq, ids) in seqs.iter_mut() {
            if *seq != line.len() as u64 + 1 {
                break;
            }
            ids.sort();
            let tip = line.last().copied();
            match ids.iter().find(|id| held[*id].body().prev == tip) {
                Some(id) => line.push(*id),
                None => break,
            }
        }
        let top = line.len() as u64;
        let mut fork_at: Option<u64> = None;
        for (seq, ids) in &seqs {
            if *seq > top + 1 {
                break;
            }
            if ids.iter().any(|id| !line.contains(id)) {
                fork_at = Some(*seq);
                break;
            }
        }
        for (seq, ids) in &seqs {
            for id in ids {
                let st = if line.get(*seq as usize - 1) == Some(id) {
                    ChainStatus::Ok
                } else if *seq <= top + 1 {
                    ChainStatus::Forked(fork_at.unwrap_or(*seq))
                } else {
                    ChainStatus::Pending
                };
                out.insert(*id, st);
            }
        }
        if fork_at.is_some() {
            ev.forked.insert(key);
        }
        if let Some(tip) = line.last() {
            ev.tips.insert(key, (top, *tip));
        }
    }
    out
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
fn mask_subset(a: &Mask, b: &Mask) -> bool {
    a.iter().zip(b).all(|(x, y)| x & !y == 0)
}

struct Node {
    id: EnvelopeId,
    author: DeviceId,
    seq: u64,
    space: SpaceId,
    op: Option<ControlOp>,
    removal: bool,
    bad: Option<Reason>,
    preds: Vec<usize>,
    succs: Vec<usize>,
}

/// One run of `R(X)`.
#[derive(Default)]
struct Resolved {
    state: State,
    valid: BTreeSet<usize>,
    reasons: BTreeMap<usize, Reason>,
    removals: Vec<(usize, RemovalEffect)>,
}

/// What carries over between evaluations of a growing set. `R(X)` of a
/// causally closed set is a function of X's maximal ops and of which ops in
/// X are unusable (malformed, forked, regressed) — an op's context never
/// changes — so states and judgements are keyed by exactly that.
#[derive(Clone, Debug, Default)]
pub struct Cache {
    states: HashMap<(Vec<EnvelopeId>, Vec<EnvelopeId>), Arc<State>>,
    judged: HashMap<(EnvelopeId, Vec<EnvelopeId>), Judged>,
}

impl Cache {
    /// Entries kept before the cache starts over (bounds memory).
    const LIMIT: usize = 1 << 14;

    fn trim(&mut self) {
        if self.states.len() + self.judged.len() > Self::LIMIT {
            *self = Cache::default();
        }
    }
}

/// An op judged in its own context `R(past(o) \ {o})`.
#[derive(Clone, Debug)]
struct Judged {
    /// Authorised there (with what a removal takes), or why not.
    verdict: Result<Option<RemovalEffect>, Reason>,
    /// The author's rank there: the grant it cites through its context.
    rank: u32,
}

struct Graph {
    home: SpaceId,
    team: Option<SpaceId>,
    nodes: Vec<Node>,
    index: HashMap<EnvelopeId, usize>,
    /// Ancestors including self, for non-pending nodes.
    past: Vec<Mask>,
    pending: Vec<bool>,
    /// Topological order of all nodes.
    order: Vec<usize>,
    judged: Vec<Option<Judged>>,
    memo: HashMap<Mask, Rc<Resolved>>,
    cache: Cache,
}

impl Graph {
    /// Step 2: the control DAG over the held, chain-complete control ops.
    fn build(
        home: SpaceId,
        team: Option<SpaceId>,
        held: &HashMap<EnvelopeId, Envelope>,
        status: &HashMap<EnvelopeId, ChainStatus>,
    ) -> Graph {
        let mut ids: Vec<EnvelopeId> = held
            .values()
            .filter(|e| matches!(e.kind(), Kind::Membership | Kind::Roster))
            .filter(|e| status[&e.id()] != ChainStatus::Pending)
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
                if let ChainStatus::Forked(seq) = status[id] {
                    bad.get_or_insert(Reason::Equivocation { seq });
                }
                let op = op.ok();
                Node {
                    id: *id,
                    author: env.author(),
                    seq: env.seq(),
                    space: env.space(),
                    removal: op.as_ref().is_some_and(ControlOp::is_removal),
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
                    None if held
                        .get(c)
                        .is_some_and(|e| matches!(e.kind(), Kind::Content | Kind::Usage)) =>
                    {
                        nodes[i]
                            .bad
                            .get_or_insert(Reason::Malformed("context names content".into()));
                    }
                    None => pending[i] = true,
                }
            }
        }
        // Topological order over all nodes; unreached ones (a cycle, which
        // needs a hash collision) stay pending.
        let mut indeg: Vec<usize> = nodes.iter().map(|n| n.preds.len()).collect();
        let mut queue: Vec<usize> = (0..n).filter(|i| indeg[*i] == 0).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(i) = queue.pop() {
            order.push(i);
            for &s in &nodes[i].succs {
                indeg[s] -= 1;
                if indeg[s] == 0 {
                    queue.push(s);
                }
            }
        }
        let mut reached = vec![false; n];
        let mut past = vec![mask_new(n); n];
        for &i in &order {
            reached[i] = true;
            if nodes[i].preds.iter().any(|p| pending[*p]) {
                pending[i] = true;
            }
            if !pending[i] {
                let mut m = mask_new(n);
                mask_set(&mut m, i);
                for &p in &nodes[i].preds {
                    mask_or(&mut m, &past[p]);
                }
                past[i] = m;
            }
        }
        for i in 0..n {
            if !reached[i] {
                pending[i] = true;
            }
        }
        Graph {
            home,
            team,
            nodes,
            index,
            past,
            pending,
            order,
            judged: (0..n).map(|_| None).collect(),
            memo: HashMap::new(),
            cache: Cache::default(),
        }
    }

    /// The past of a context (the union of its heads' pasts); `None` if a
    /// head is not a resolvable control op.
    fn context_mask(&self, context: &[EnvelopeId]) -> Option<Mask> {
        let mut m = mask_new(self.nodes.len());
        for c in context {
            let &i = self.index.get(c)?;
            if self.pending[i] {
                return None;
            }
            mask_or(&mut m, &self.past[i]);
        }
        Some(m)
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

    /// Judges every resolvable op in its own context `R(past(o) \ {o})`,
    /// in topological order, so each context only needs ops judged before.
    fn judge_all(&mut self) {
        for k in 0..self.order.len() {
            let i = self.order[k];
            if self.pending[i] || self.nodes[i].bad.is_some() {
                continue;
            }
            let mut ctx = self.past[i].clone();
            mask_clear(&mut ctx, i);
            let key = (self.nodes[i].id, self.bad_in(&ctx));
            if let Some(j) = self.cache.judged.get(&key) {
                self.judged[i] = Some(j.clone());
                continue;
            }
            let at = self.state_of(&ctx);
            let op = self.nodes[i]
                .op
                .as_ref()
                .expect("ops without a bad reason decoded");
            let rank = at.rights(&self.nodes[i].author).rank;
            let mut state = (*at).clone();
            let verdict = state
                .apply(&self.info(i, true), op)
                .map_err(Reason::Unauthorized);
            let j = Judged { verdict, rank };
            self.cache.judged.insert(key, j.clone());
            self.judged[i] = Some(j);
        }
    }

    /// The unusable ops in a mask, by id.
    fn bad_in(&self, mask: &Mask) -> Vec<EnvelopeId> {
        (0..self.nodes.len())
            .filter(|&i| mask_has(mask, i) && self.nodes[i].bad.is_some())
            .map(|i| self.nodes[i].id)
            .collect()
    }

    /// The state of `R(mask)`, from the cache when this set was seen before.
    fn state_of(&mut self, mask: &Mask) -> Arc<State> {
        let maximal: Vec<EnvelopeId> = (0..self.nodes.len())
            .filter(|&i| mask_has(mask, i))
            .filter(|&i| !self.nodes[i].succs.iter().any(|&s| mask_has(mask, s)))
            .map(|i| self.nodes[i].id)
            .collect();
        let key = (maximal, self.bad_in(mask));
        if let Some(s) = self.cache.states.get(&key) {
            return s.clone();
        }
        let state = Arc::new(self.resolve(mask).state.clone());
        self.cache.states.insert(key, state.clone());
        state
    }

    fn judged_ok(&self, i: usize) -> bool {
        matches!(&self.judged[i], Some(Judged { verdict: Ok(_), .. }))
    }

    /// Step 3: `R(mask)`, memoised. Well-founded: it uses the judgements of
    /// the ops in `mask` in their own contexts (strictly smaller sets) and
    /// `R` of strictly smaller sets (in [`Graph::voids_op`]).
    fn resolve(&mut self, mask: &Mask) -> Rc<Resolved> {
        if let Some(r) = self.memo.get(mask) {
            return r.clone();
        }
        // Removals that stand, by induction on (rank, id): a removal can
        // only be voided by a standing removal of a stronger rank, or of the
        // same rank and a lower id, decided before it.
        let mut removals: Vec<(u32, EnvelopeId, usize)> = (0..self.nodes.len())
            .filter(|&i| mask_has(mask, i) && self.nodes[i].removal && self.judged_ok(i))
            .map(|i| {
                let rank = self.judged[i].as_ref().map_or(NO_RANK, |j| j.rank);
                (rank, self.nodes[i].id, i)
            })
            .collect();
        removals.sort();
        let mut standing: Vec<usize> = Vec::new();
        let mut voids: BTreeMap<usize, EnvelopeId> = BTreeMap::new();
        for (_, _, r) in removals {
            let mut by = None;
            for &s in &standing {
                if self.voids_op(s, r, mask) {
                    by = Some(s);
                    break;
                }
            }
            match by {
                Some(s) => {
                    voids.insert(r, self.nodes[s].id);
                }
                None => standing.push(r),
            }
        }
        // Every other op falls to any standing removal that voids it.
        for o in 0..self.nodes.len() {
            if !mask_has(mask, o) || self.nodes[o].removal || !self.judged_ok(o) {
                continue;
            }
            for &s in &standing {
                if self.voids_op(s, o, mask) {
                    voids.insert(o, self.nodes[s].id);
                    break;
                }
            }
        }
        let rc = Rc::new(self.pass(mask, &voids));
        self.memo.insert(mask.clone(), rc.clone());
        rc
    }

    /// Strong removal of control ops: removal `r` voids op `o` iff they are
    /// concurrent, `r` (in its own context) took rights from `o`'s author,
    /// `o` is beyond `r`'s cutoff for its space, and `o` is no longer
    /// authorised in `R(past(o) \ {o} ∪ past(r))` (effective rights: another
    /// grant may still carry it).
    fn voids_op(&mut self, r: usize, o: usize, mask: &Mask) -> bool {
        if r == o || mask_has(&self.past[r], o) || mask_has(&self.past[o], r) {
            return false;
        }
        let author = self.nodes[o].author;
        let hit = match &self.judged[r] {
            Some(Judged {
                verdict: Ok(Some(e)),
                ..
            }) => {
                e.lost_managers.contains(&author)
                    || e.lost_members.contains(&author)
                    || e.lost_writers.contains(&author)
            }
            _ => false,
        };
        if !hit {
            return false;
        }
        let space = self.nodes[o].space;
        match self.cutoff(r, &space, &author, mask) {
            Some(c) if self.nodes[o].seq > c => {}
            _ => return false,
        }
        let mut union = self.past[o].clone();
        mask_clear(&mut union, o);
        mask_or(&mut union, &self.past[r]);
        let mut state = (*self.state_of(&union)).clone();
        let op = self.nodes[o].op.as_ref().expect("judged ops decoded");
        state.apply(&self.info(o, false), op).is_err()
    }

    /// One linear pass in the deterministic order: Kahn's sort, among ready
    /// ops removals first, then the lowest id. An op takes effect iff it was
    /// authorised in its own context, is not voided, and its author still
    /// has the right in the state built so far.
    fn pass(&self, mask: &Mask, voids: &BTreeMap<usize, EnvelopeId>) -> Resolved {
        let n = self.nodes.len();
        let mut out = Resolved::default();
        let mut indeg = vec![0usize; n];
        let mut heap = BinaryHeap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if !mask_has(mask, i) {
                continue;
            }
            indeg[i] = node.preds.len();
            if indeg[i] == 0 {
                heap.push(Reverse((!node.removal, node.id, i)));
            }
        }
        while let Some(Reverse((_, _, i))) = heap.pop() {
            let node = &self.nodes[i];
            let verdict = if let Some(bad) = &node.bad {
                Err(bad.clone())
            } else if let Some(Judged {
                verdict: Err(why), ..
            }) = &self.judged[i]
            {
                Err(why.clone())
            } else if let Some(by) = voids.get(&i) {
                Err(Reason::Voided { by: *by })
            } else {
                let op = node.op.as_ref().expect("ops without a bad reason decoded");
                out.state
                    .apply(&self.info(i, false), op)
                    .map_err(Reason::Unauthorized)
            };
            match verdict {
                Ok(effect) => {
                    out.valid.insert(i);
                    if let Some(e) = effect {
                        out.removals.push((i, e));
                    }
                }
                Err(reason) => {
                    out.reasons.insert(i, reason);
                }
            }
            for &s in &node.succs {
                if mask_has(mask, s) {
                    indeg[s] -= 1;
                    if indeg[s] == 0 {
                        heap.push(Reverse((!self.nodes[s].removal, self.nodes[s].id, s)));
                    }
                }
            }
        }
        out
    }

    /// The cutoff removal `r` gives for `device`'s envelopes in `space`:
    /// its own cutoff map for that space, else the largest one supplied by a
    /// rotation in `mask`, authorised in its context, citing `r`, else none
    /// (then only the context decides: weak removal until a rotation
    /// supplies one).
    fn cutoff(&self, r: usize, space: &SpaceId, device: &DeviceId, mask: &Mask) -> Option<u64> {
        let op = self.nodes[r].op.as_ref()?;
        if let Some(map) = op.cutoff_for(space, &self.home) {
            return Some(map.get(device).copied().unwrap_or(0));
        }
        if space != &self.home {
            return None;
        }
        let rid = self.nodes[r].id;
        (0..self.nodes.len())
            .filter(|&i| mask_has(mask, i) && self.judged_ok(i))
            .filter_map(|i| match &self.nodes[i].op {
                Some(ControlOp::Membership(MembershipOp::Rotate { cutoffs, .. })) => cutoffs
                    .iter()
                    .find(|(id, _)| *id == rid)
                    .map(|(_, c)| c.get(device).copied().unwrap_or(0)),
                _ => None,
            })
            .max()
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
    evaluate_cached(home, team, held, &mut Cache::default())
}

/// [`evaluate`] reusing (and filling) a [`Cache`] from earlier evaluations
/// of the same space; the result is the same.
pub fn evaluate_cached(
    home: SpaceId,
    team: Option<SpaceId>,
    held: &HashMap<EnvelopeId, Envelope>,
    cache: &mut Cache,
) -> Evaluation {
    let mut ev = Evaluation::default();
    let status = chains(held, &mut ev);
    let mut graph = Graph::build(home, team, held, &status);
    cache.trim();
    graph.cache = std::mem::take(cache);
    let n = graph.nodes.len();
    let mut all = mask_new(n);
    for i in 0..n {
        if graph.pending[i] {
            ev.pending.insert(graph.nodes[i].id);
        } else {
            mask_set(&mut all, i);
        }
    }
    for (id, st) in &status {
        if *st == ChainStatus::Pending {
            ev.pending.insert(*id);
        }
    }
    // Monotone authors: a control op's context covers its previous op's.
    for i in 0..n {
        if graph.pending[i] || graph.nodes[i].bad.is_some() {
            continue;
        }
        let prev = held[&graph.nodes[i].id].body().prev;
        if let Some(p) = prev.and_then(|p| held.get(&p)) {
            let mine = &graph.past[i];
            let theirs = match graph.index.get(&p.id()) {
                Some(&j) if !graph.pending[j] => Some(graph.past[j].clone()),
                Some(_) => None,
                None => graph.context_mask(&p.body().context),
            };
            if !theirs.is_some_and(|t| mask_subset(&t, mine)) {
                graph.nodes[i].bad = Some(Reason::ContextRegressed);
            }
        }
    }
    graph.judge_all();
    let fin = graph.resolve(&all);
    for i in 0..n {
        if !mask_has(&all, i) {
            continue;
        }
        let id = graph.nodes[i].id;
        if fin.valid.contains(&i) {
            ev.accepted.insert(id);
        } else if let Some(r) = fin.reasons.get(&i) {
            ev.quarantined.insert(id, r.clone());
        }
    }
    let mut heads: Vec<EnvelopeId> = (0..n)
        .filter(|i| mask_has(&all, *i))
        .filter(|i| graph.nodes[*i].succs.iter().all(|s| graph.pending[*s]))
        .map(|i| graph.nodes[i].id)
        .collect();
    heads.sort();
    ev.control_heads = heads;
    ev.removals = fin
        .removals
        .iter()
        .map(|(i, e)| (graph.nodes[*i].id, e.clone()))
        .collect();
    ev.state = fin.state.clone();
    content_validity(&mut graph, &fin, &all, held, &status, &mut ev);
    *cache = std::mem::take(&mut graph.cache);
    ev
}

struct ContentJudgement {
    valid: bool,
    reason: Option<Reason>,
}

/// Step 4 (and 5): judges every content and usage envelope.
fn content_validity(
    graph: &mut Graph,
    fin: &Resolved,
    all: &Mask,
    held: &HashMap<EnvelopeId, Envelope>,
    status: &HashMap<EnvelopeId, ChainStatus>,
    ev: &mut Evaluation,
) {
    let home = graph.home;
    let mut ids: Vec<EnvelopeId> = held
        .values()
        .filter(|e| matches!(e.kind(), Kind::Content | Kind::Usage))
        .filter(|e| status[&e.id()] != ChainStatus::Pending)
        .map(Envelope::id)
        .collect();
    ids.sort();
    let mut ctx_masks: HashMap<Vec<EnvelopeId>, Option<Rc<Mask>>> = HashMap::new();
    let mut mask_of = |graph: &Graph, ctx: &[EnvelopeId]| -> Option<Rc<Mask>> {
        let mut key = ctx.to_vec();
        key.sort();
        key.dedup();
        ctx_masks
            .entry(key)
            .or_insert_with_key(|k| graph.context_mask(k).map(Rc::new))
            .clone()
    };
    let mut judged: BTreeMap<EnvelopeId, ContentJudgement> = BTreeMap::new();
    for id in ids {
        let env = &held[&id];
        let body = env.body();
        let author = body.author;
        if body.space != home || graph.team == Some(home) {
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
        if body.change.is_some() != (body.kind == Kind::Content) {
            ev.quarantined.insert(
                id,
                Reason::Malformed("a change header goes with content only".into()),
            );
            continue;
        }
        let Some(mask) = mask_of(graph, &body.context) else {
            let names_content = body.context.iter().any(|c| {
                held.get(c)
                    .is_some_and(|e| matches!(e.kind(), Kind::Content | Kind::Usage))
            });
            if names_content {
                ev.quarantined
                    .insert(id, Reason::Malformed("context names content".into()));
            } else {
                ev.pending.insert(id);
            }
            continue;
        };
        // Monotone authors.
        if let Some(p) = body.prev.and_then(|p| held.get(&p)) {
            let theirs = match graph.index.get(&p.id()) {
                Some(&j) if !graph.pending[j] => Some(Rc::new(graph.past[j].clone())),
                Some(_) => None,
                None => mask_of(graph, &p.body().context),
            };
            if !theirs.is_some_and(|t| mask_subset(&t, &mask)) {
                ev.quarantined.insert(id, Reason::ContextRegressed);
                continue;
            }
        }
        let at = graph.state_of(&mask);
        let mut key = body.context.clone();
        key.sort();
        key.dedup();
        ev.contexts.entry(key).or_insert_with(|| at.clone());
        if let Some(h) = &body.change {
            // Incarnations: a device removed from the folder writes as a
            // later incarnation once its context shows the removal.
            let need = at.incarnation(&author);
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
        let reason = judge_content(graph, fin, all, &at, env, &mask, status[&id]);
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
    graph: &mut Graph,
    fin: &Resolved,
    all: &Mask,
    at: &State,
    env: &Envelope,
    mask: &Mask,
    status: ChainStatus,
) -> Option<Reason> {
    let body = env.body();
    if let ChainStatus::Forked(seq) = status {
        return Some(Reason::Equivocation { seq });
    }
    let rights = at.rights(&body.author);
    let (ok, lost_of): (bool, fn(&RemovalEffect) -> &BTreeSet<DeviceId>) = match body.kind {
        Kind::Content => (rights.writer, |e| &e.lost_writers),
        _ => (rights.member, |e| &e.lost_members),
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
    for (r, effect) in &fin.removals {
        if !lost_of(effect).contains(&body.author) || mask_has(mask, *r) {
            continue;
        }
        let Some(c) = graph.cutoff(*r, &body.space, &body.author, all) else {
            continue;
        };
        if body.seq <= c {
            continue;
        }
        // Effective rights: judged in R(past(c) ∪ past(r)), where another
        // grant the author had seen (or the removal's author had) may still
        // carry the right.
        let mut union = mask.clone();
        mask_or(&mut union, &graph.past[*r]);
        let rights = graph.state_of(&union).rights(&body.author);
        let still = match body.kind {
            Kind::Content => rights.writer,
            _ => rights.member,
        };
        if !still {
            return Some(Reason::Removed {
                by: graph.nodes[*r].id,
            });
        }
    }
    None
}

/// Step 5: the accepted content closure, with endorsement, from the
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
    ev.change_keys = by_key.keys().copied().collect();
    // Parents: the header's deps, and the change before it of the same
    // (device, incarnation) — Automerge needs it. The order also follows
    // each author's chain (`prev`), which is no dependency: a valid change
    // may follow its author's quarantined one.
    let mut parents: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut order_parents: Vec<Vec<usize>> = vec![Vec::new(); n];
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
        let (author, inc, seq) = key_of(i);
        if seq > 1 {
            let before = by_key.get(&(author, inc, seq - 1)).and_then(|g| {
                g.iter()
                    .copied()
                    .filter(|&j| held[&content[j]].seq() < held[&content[i]].seq())
                    .min_by_key(|&j| held[&content[j]].seq())
            });
            match before {
                Some(j) => parents[i].push(j),
                None => bad_seq[i] = true,
            }
        }
        parents[i].sort_unstable();
        parents[i].dedup();
        order_parents[i] = parents[i].clone();
        if let Some(&j) = held[&content[i]]
            .body()
            .prev
            .as_ref()
            .and_then(|p| idx.get(p))
        {
            if !order_parents[i].contains(&j) {
                order_parents[i].push(j);
            }
        }
    }
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut order_children: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ps) in parents.iter().enumerate() {
        for &p in ps {
            children[p].push(i);
        }
    }
    for (i, ps) in order_parents.iter().enumerate() {
        for &p in ps {
            order_children[p].push(i);
        }
    }
    // Topological order (ties by id, i.e. index).
    let mut indeg: Vec<usize> = order_parents.iter().map(Vec::len).collect();
    let mut heap: BinaryHeap<Reverse<usize>> =
        (0..n).filter(|i| indeg[*i] == 0).map(Reverse).collect();
    let mut topo = Vec::with_capacity(n);
    while let Some(Reverse(i)) = heap.pop() {
        topo.push(i);
        for &c in &order_children[i] {
            indeg[c] -= 1;
            if indeg[c] == 0 {
                heap.push(Reverse(c));
            }
        }
    }
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
    // One Automerge actor must not have two changes with one seq (Automerge
    // refuses such a document): all of them are malformed, never endorsed —
    // except where a fork's losing branch clashes with the line's change:
    // then only the losers go. An honest device that lost a change starts a
    // new incarnation instead.
    let mut actor_fork = vec![false; n];
    for group in by_key.values().filter(|g| g.len() > 1) {
        let losing = |i: &usize| matches!(judgement[*i].reason, Some(Reason::Equivocation { .. }));
        let winners = group.iter().filter(|i| !losing(i)).count();
        for &i in group {
            if winners != 1 || losing(&i) {
                actor_fork[i] = true;
            }
        }
    }
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
            ev.accepted_changes.insert(key_of(i), id);
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
        if let Some(r @ Reason::Equivocation { .. }) = &judgement[i].reason {
            ev.quarantined.insert(id, r.clone());
        } else if actor_fork[i] {
            ev.quarantined.insert(
                id,
                Reason::Malformed("another change of its Automerge actor has the same seq".into()),
            );
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
