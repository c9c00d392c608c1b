//! IPC methods of enrolment: `invite.*` and `device.link` on the inviter,
//! `join.*` on the joiner (the protocol is `net/enrol.rs`).
//!
//! A join spans three calls so that the CLI can show the verification code
//! while it waits: `join.start` (find the inviter, handshake), `join.wait`
//! (up to 10 minutes for the decision) and, for a fresh device whose PIN
//! was not given up front, `join.finish` (the PIN). The waiting happens on
//! the blocking pool with the vault mutex released.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use coffer_crdt::audit::Action;
use coffer_crdt::{DeviceKeys, Replica, SpaceId};
use coffer_ipc::methods::{self as m, Method};
use coffer_ipc::{ErrorCode, RpcError};
use libp2p::{Multiaddr, PeerId};
use rand::rngs::OsRng;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tracing::info;
use zeroize::Zeroizing;

use super::{hostname, now, params, reply, Shared};
use crate::keystore;
use crate::net::enrol::{
    self, Admission, CancelError, Connected, Decision, EnrolError, EnrolKind, InviteSpec,
    InviterHello,
};
use crate::net::now_ms;
use crate::vault::enrol::{Admit, FreshIdentity};
use crate::vault::new_transport_seed;
use crate::vault::VaultError;
use coffer_crdt::replica::Joiner;

const METHODS: &[&str] = &[
    m::InviteCreate::NAME,
    m::DeviceLink::NAME,
    m::InvitePending::NAME,
    m::InviteList::NAME,
    m::InviteCancel::NAME,
    m::InviteConfirm::NAME,
    m::InviteReject::NAME,
    m::JoinStart::NAME,
    m::JoinWait::NAME,
    m::JoinFinish::NAME,
];

/// Joins in progress on one daemon at a time.
const MAX_JOINS: usize = 4;
/// An admitted fresh join waits this long for its PIN.
const PIN_WAIT: Duration = Duration::from_secs(600);

/// Whether `method` is one of these.
pub(super) fn handles(method: &str) -> bool {
    METHODS.contains(&method)
}

enum Stage {
    /// Handshaken, waiting for the inviter's decision.
    Waiting(Box<Connected>),
    /// Admitted; a fresh device waits for its PIN.
    Admitted(Admission),
}

/// A join in progress on this (joining) device.
pub(super) struct JoinState {
    kind: EnrolKind,
    /// A fresh device's new signing keys and transport seed (an
    /// initialised device uses its own).
    fresh_keys: Option<(DeviceKeys, Zeroizing<[u8; 32]>)>,
    pin: Option<Zeroizing<String>>,
    hello: InviterHello,
    inviter: PeerId,
    addrs: Vec<Multiaddr>,
    stage: Stage,
    since: Instant,
}

/// The joins in progress (memory only), owned by the task
/// [`JoinsHandle::spawn`] starts.
#[derive(Default)]
struct Joins {
    next: u64,
    map: HashMap<u64, Box<JoinState>>,
}

impl Joins {
    fn purge(&mut self) {
        let limit = enrol::DECISION_TIMEOUT + PIN_WAIT + enrol::STEP_TIMEOUT;
        self.map.retain(|_, j| j.since.elapsed() < limit);
    }
}

enum JoinsRequest {
    /// Whether another join may start.
    Room(oneshot::Sender<bool>),
    /// Keeps a new join; answers its id.
    Insert(Box<JoinState>, oneshot::Sender<u64>),
    /// Puts back a join taken out.
    Put(u64, Box<JoinState>),
    Take(u64, oneshot::Sender<Option<Box<JoinState>>>),
}

/// The joins in progress, reached from requests on the blocking pool
/// through a bounded channel to the one task that owns them (no lock
/// shared between tasks). Expired joins are dropped on every request.
pub(super) struct JoinsHandle(mpsc::Sender<JoinsRequest>);

impl JoinsHandle {
    /// Starts the owning task (on the current runtime).
    pub(super) fn spawn() -> Self {
        let (tx, mut rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut joins = Joins::default();
            while let Some(request) = rx.recv().await {
                joins.purge();
                // A requester that gave up dropped its reply channel.
                match request {
                    JoinsRequest::Room(reply) => {
                        let _ = reply.send(joins.map.len() < MAX_JOINS);
                    }
                    JoinsRequest::Insert(state, reply) => {
                        joins.next += 1;
                        joins.map.insert(joins.next, state);
                        let _ = reply.send(joins.next);
                    }
                    JoinsRequest::Put(id, state) => {
                        joins.map.insert(id, state);
                    }
                    JoinsRequest::Take(id, reply) => {
                        let _ = reply.send(joins.map.remove(&id));
                    }
                }
            }
        });
        JoinsHandle(tx)
    }

    /// Asks the owning task (from a blocking thread); `None` once it is gone.
    fn ask<T>(&self, request: impl FnOnce(oneshot::Sender<T>) -> JoinsRequest) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.0.blocking_send(request(tx)).ok()?;
        rx.blocking_recv().ok()
    }

    fn has_room(&self) -> bool {
        self.ask(JoinsRequest::Room).unwrap_or(false)
    }

    fn insert(&self, state: JoinState) -> Option<u64> {
        self.ask(|reply| JoinsRequest::Insert(Box::new(state), reply))
    }

    fn put(&self, id: u64, state: JoinState) {
        let _ = self.0.blocking_send(JoinsRequest::Put(id, Box::new(state)));
    }

    fn take(&self, id: u64) -> Option<JoinState> {
        self.ask(|reply| JoinsRequest::Take(id, reply))
            .flatten()
            .map(|b| *b)
    }
}

fn kind_of(s: &str) -> Result<EnrolKind, RpcError> {
    match s {
        "user" => Ok(EnrolKind::User),
        "device" => Ok(EnrolKind::Device),
        other => Err(RpcError::new(
            ErrorCode::InvalidParams,
            format!("kind must be \"user\" or \"device\", not {other:?}"),
        )),
    }
}

/// The RPC error of a failed enrolment.
fn enrol_error(e: EnrolError) -> RpcError {
    let code = match &e {
        EnrolError::BadCode(_)
        | EnrolError::UnknownInvite
        | EnrolError::WrongCode
        | EnrolError::Burnt
        | EnrolError::Cancelled
        | EnrolError::NotAccepting => ErrorCode::InviteInvalid,
        EnrolError::Expired => ErrorCode::InviteExpired,
        EnrolError::Used => ErrorCode::InviteUsed,
        EnrolError::Rejected => ErrorCode::JoinRejected,
        EnrolError::TooManyInvites => ErrorCode::InvalidInput,
        _ => ErrorCode::InviterUnreachable,
    };
    RpcError::new(code, e.to_string())
}

fn invite_info(v: enrol::InviteView) -> m::InviteInfo {
    let state = if v.waiting {
        "waiting"
    } else if v.expired {
        "expired"
    } else {
        v.state.name()
    };
    m::InviteInfo {
        id: hex::encode(v.id.0),
        recover: v.spec.recover,
        kind: v.spec.kind.name().into(),
        email: v.spec.email,
        name: v.spec.name,
        created_ms: v.created_ms,
        expires_ms: v.expires_ms,
        state: state.into(),
    }
}

fn cancel_error(e: CancelError, which: &str) -> RpcError {
    let code = match &e {
        CancelError::NotFound => ErrorCode::NotFound,
        CancelError::Ambiguous(_) => ErrorCode::Ambiguous,
        _ => ErrorCode::InvalidInput,
    };
    let message = match e {
        CancelError::NotFound => {
            format!("no open invite has the id or email {which:?} (`coffer invite ls` lists them)")
        }
        e => e.to_string(),
    };
    RpcError::new(code, message)
}

fn ttl_of(text: Option<&str>) -> Result<Duration, RpcError> {
    match text {
        None => Ok(enrol::DEFAULT_TTL),
        Some(t) => enrol::parse_ttl(t).ok_or_else(|| {
            RpcError::new(
                ErrorCode::InvalidInput,
                format!("bad --expires {t:?}: a number and s, m, h or d (like 30m, 24h, 7d), at most 30d"),
            )
        }),
    }
}

/// What `invite --recover` tells the admin, beside the code.
fn recover_note(email: &str) -> String {
    format!(
        "This recovers the existing user {email}: once you confirm the join, the new \
         device is theirs, every other device of theirs is revoked, and the folders shared \
         with them or their groups are handed to the new device (their keys rotate). \
         Their Personal folder cannot come back: only their own devices held its key (no \
         admin does), so they start with an empty one. If they still have a working \
         device, cancel this (`coffer invite cancel {email}`) and let them run \
         `coffer device link` there instead: they keep everything."
    )
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Handle::current().block_on(f)
}

impl Shared {
    pub(super) fn dispatch_enrol(&self, method: &str, raw: Value) -> Result<Value, RpcError> {
        match method {
            m::InviteCreate::NAME => {
                let p = params::<m::InviteCreate>(raw)?;
                let email = p.email.trim().to_lowercase();
                let spec = InviteSpec {
                    kind: EnrolKind::User,
                    name: p
                        .name
                        .map(|n| n.trim().to_string())
                        .unwrap_or_else(|| email.clone()),
                    email,
                    groups: p.groups.iter().map(|g| g.trim().to_string()).collect(),
                    admin: p.admin,
                    recover: p.recover,
                };
                if p.recover && (p.admin || !p.groups.is_empty()) {
                    return Err(RpcError::new(
                        ErrorCode::InvalidInput,
                        "--recover keeps the user's groups and admin role as they are: \
                         it takes no --group or --admin",
                    ));
                }
                self.open_invite(spec, p.expires.as_deref())
            }
            m::DeviceLink::NAME => {
                let p = params::<m::DeviceLink>(raw)?;
                let ctx = self.vault.blocking_call(|v| v.enrol_inviter(false))?;
                let spec = InviteSpec {
                    kind: EnrolKind::Device,
                    email: ctx.email,
                    name: ctx.name,
                    groups: Vec::new(),
                    admin: false,
                    recover: false,
                };
                self.open_invite(spec, p.expires.as_deref())
            }
            m::InvitePending::NAME => {
                let kind = kind_of(&params::<m::InvitePending>(raw)?.kind)?;
                let list = self
                    .net
                    .invites()
                    .pending(kind)
                    .into_iter()
                    .map(|p| m::PendingJoin {
                        kind: kind.name().into(),
                        email: p.spec.email,
                        name: p.spec.name,
                        groups: p.spec.groups,
                        admin: p.spec.admin,
                        verification_code: p.verification,
                        device_id: p.joiner.to_hex(),
                        device_name: p.device_name,
                        since_ms: p.since_ms,
                        recover: p.spec.recover,
                    })
                    .collect();
                reply::<m::InvitePending, _>(list)
            }
            m::InviteList::NAME => {
                params::<m::InviteList>(raw)?;
                let list = self
                    .net
                    .invites()
                    .list(Instant::now(), now_ms())
                    .into_iter()
                    .map(invite_info)
                    .collect();
                reply::<m::InviteList, _>(list)
            }
            m::InviteCancel::NAME => {
                let p = params::<m::InviteCancel>(raw)?;
                let cancelled = self
                    .net
                    .invites()
                    .cancel(&p.invite, Instant::now(), now_ms())
                    .map_err(|e| cancel_error(e, &p.invite))?;
                reply::<m::InviteCancel, _>(invite_info(cancelled))
            }
            m::InviteConfirm::NAME | m::InviteReject::NAME => {
                let p = params::<m::InviteConfirm>(raw)?;
                self.decide(&p, method == m::InviteConfirm::NAME)
            }
            m::JoinStart::NAME => self.join_start(params::<m::JoinStart>(raw)?),
            m::JoinWait::NAME => {
                let p = params::<m::JoinWait>(raw)?;
                let state = self.take_join(p.join_id)?;
                self.join_wait(p.join_id, state)
            }
            m::JoinFinish::NAME => {
                let p = params::<m::JoinFinish>(raw)?;
                let mut state = self.take_join(p.join_id)?;
                if !matches!(state.stage, Stage::Admitted(_)) {
                    self.put_join(p.join_id, state);
                    return Err(RpcError::new(
                        ErrorCode::InvalidInput,
                        "this join is not admitted yet: wait for it first",
                    ));
                }
                if let Err(e) = keystore::check_pin(&p.pin) {
                    self.put_join(p.join_id, state);
                    return Err(RpcError::from(VaultError::from(e)));
                }
                state.pin = Some(Zeroizing::new(p.pin));
                self.join_complete(state)
            }
            other => Err(RpcError::new(
                ErrorCode::MethodNotFound,
                format!("unknown method {other:?}"),
            )),
        }
    }

    fn open_invite(&self, mut spec: InviteSpec, expires: Option<&str>) -> Result<Value, RpcError> {
        let ttl = ttl_of(expires)?;
        if self.net.config().disabled {
            return Err(RpcError::new(
                ErrorCode::InvalidInput,
                "the network is off on this device (--no-network): nobody could join",
            ));
        }
        let (ctx, known_name) = {
            let spec = spec.clone();
            self.vault.blocking_call(move |v| {
                let ctx = v.enrol_inviter(spec.kind == EnrolKind::User)?;
                v.enrol_check_invite(&spec.email, &spec.name, &spec.groups)?;
                let known = if spec.recover {
                    v.enrol_check_recover(&spec.email)?
                } else {
                    None
                };
                Ok::<_, VaultError>((ctx, known))
            })?
        };
        // A recovered user keeps the name the roster has for them.
        if let Some(name) = known_name.filter(|_| spec.name == spec.email) {
            spec.name = name;
        }
        let hello = InviterHello {
            kind: spec.kind,
            team: ctx.team.0,
            team_name: ctx.team_name,
            email: spec.email.clone(),
            name: spec.name.clone(),
        };
        let kind = spec.kind;
        let email = spec.email.clone();
        let recover = spec.recover;
        let code = self
            .net
            .invites()
            .open(ctx.transport, hello, spec, ttl, Instant::now(), &mut OsRng)
            .map_err(enrol_error)?;
        let expires_ms = now_ms().saturating_add(ttl.as_millis() as i64);
        info!(
            kind = kind.name(),
            ttl_secs = ttl.as_secs(),
            "invite opened"
        );
        let code_text = code.encode();
        let note = recover.then(|| recover_note(&email));
        self.audit_enrol(Action::InviteCreated, &email, kind.name());
        reply::<m::InviteCreate, _>(m::InviteResult {
            code: code_text.to_string(),
            kind: kind.name().into(),
            email,
            expires_ms,
            addresses: self.net.reachable_addrs(),
            recover,
            note,
        })
    }

    fn decide(&self, p: &m::DecideParams, admit: bool) -> Result<Value, RpcError> {
        let kind = kind_of(&p.kind)?;
        let not_found = || {
            RpcError::new(
                ErrorCode::NotFound,
                format!(
                    "no join is waiting with verification code {:?} (`coffer {} pending` lists them)",
                    p.verification_code,
                    if kind == EnrolKind::User { "invite" } else { "device" }
                ),
            )
        };
        let pending = self
            .net
            .invites()
            .take_pending(&p.verification_code, kind)
            .ok_or_else(not_found)?;
        let email = pending.spec.email.clone();
        let device = pending.joiner;
        let mut recovery = None;
        let (pending, decision) = if admit {
            let (pending, admitted) = self.vault.blocking_call(move |v| {
                let joiner = Joiner {
                    device: pending.joiner,
                    exchange: pending.exchange,
                    transport: pending.transport,
                    name: Some(pending.device_name.clone()),
                    proof: pending.roster_proof.clone(),
                    transport_proof: pending.transport_proof.clone(),
                };
                let admit = match pending.spec.kind {
                    EnrolKind::User if pending.spec.recover => Admit::Recover {
                        email: pending.spec.email.clone(),
                    },
                    EnrolKind::User => Admit::User {
                        email: pending.spec.email.clone(),
                        name: pending.spec.name.clone(),
                        now_ms: now_ms(),
                        groups: pending.spec.groups.clone(),
                        admin: pending.spec.admin,
                    },
                    EnrolKind::Device => Admit::OwnDevice,
                };
                let admitted = v.enrol_admit(&joiner, &admit, &mut OsRng);
                Ok::<_, VaultError>((pending, admitted))
            })?;
            match admitted {
                Ok(mut admitted) => {
                    recovery = admitted.recovery.take().map(|r| m::RecoveryResult {
                        revoked: r.revoked,
                        folders: r
                            .folders
                            .into_iter()
                            .map(|(id, name, has_key)| m::RecoveredFolder { id, name, has_key })
                            .collect(),
                        rotated: r.rotated,
                    });
                    (
                        pending,
                        Decision::Admit {
                            team: admitted.team.0,
                            roster: admitted
                                .roster
                                .into_iter()
                                .map(serde_bytes::ByteBuf::from)
                                .collect(),
                        },
                    )
                }
                Err(e) => {
                    self.net.invites().restore(pending);
                    return Err(e.into());
                }
            }
        } else {
            // A retry of this code hears "rejected" (exit 18).
            self.net.invites().rejected(&pending.invite, Instant::now());
            (pending, Decision::Reject)
        };
        let delivered = pending.decide(decision);
        let delivered = block_on(async {
            tokio::time::timeout(Duration::from_secs(30), delivered)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(false)
        });
        info!(device = %device.short(), admit, delivered, "enrolment decided");
        let action = match (admit, kind) {
            (true, EnrolKind::Device) => Action::DeviceLinked,
            (true, EnrolKind::User) => Action::JoinConfirmed,
            (false, _) => Action::JoinRejected,
        };
        self.audit_enrol(action, &email, &device.to_hex());
        reply::<m::InviteConfirm, _>(m::DecideResult {
            kind: kind.name().into(),
            email,
            device_id: device.to_hex(),
            delivered,
            recovery,
        })
    }

    /// An enrolment record on this device's audit chain.
    fn audit_enrol(&self, action: Action, email: &str, detail: &str) {
        let mut ev = coffer_crdt::audit::AuditEvent::new("", action);
        ev.detail = Some(format!("{email} ({detail})"));
        let _ = self.vault.blocking_call(move |v| {
            v.audit_note(ev, now());
            Ok::<_, VaultError>(())
        });
    }

    fn take_join(&self, id: u64) -> Result<JoinState, RpcError> {
        self.joins.take(id).ok_or_else(|| {
            RpcError::new(
                ErrorCode::NotFound,
                "no such join in progress (it ended, timed out, or the daemon restarted): run the join again",
            )
        })
    }

    fn put_join(&self, id: u64, state: JoinState) {
        self.joins.put(id, state);
    }

    fn join_start(&self, p: m::JoinStartParams) -> Result<Value, RpcError> {
        let kind = kind_of(&p.kind)?;
        let code = enrol::InviteCode::parse(&p.code).map_err(enrol_error)?;
        let peers = p
            .peers
            .iter()
            .map(|a| {
                a.parse::<Multiaddr>().map_err(|e| {
                    RpcError::new(ErrorCode::InvalidInput, format!("bad --peer {a:?}: {e}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !self.joins.has_room() {
            return Err(RpcError::new(
                ErrorCode::InvalidInput,
                "too many joins in progress on this device",
            ));
        }
        // A name asked for is checked before anything goes out; a host
        // name is what it is (the inviter leaves out one the rule refuses).
        let asked_name = match &p.device_name {
            Some(n) => Some(
                Replica::check_device_name(n).map_err(|e| RpcError::from(VaultError::from(e)))?,
            ),
            None => None,
        };
        let joiner = self.vault.blocking_call(|v| v.enrol_joiner())?;
        let (keys, transport, fresh_keys, device_name) = match joiner {
            Some(j) => (j.keys, j.transport, None, hostname()),
            None => {
                if let Some(pin) = &p.pin {
                    keystore::check_pin(pin).map_err(|e| RpcError::from(VaultError::from(e)))?;
                }
                let keys = DeviceKeys::generate(&mut OsRng);
                let transport = new_transport_seed(&mut OsRng);
                (
                    keys.clone(),
                    transport.clone(),
                    Some((keys, transport)),
                    hostname(),
                )
            }
        };
        let device_name = asked_name.unwrap_or(device_name);
        let mdns = self.net.config().mdns;
        let connected = block_on(enrol::connect(
            &code,
            &keys,
            &transport,
            &device_name,
            &peers,
            mdns,
        ))
        .map_err(enrol_error)?;
        let hello = connected.joined.hello.clone();
        // The code decides what is joined: `coffer join` with a device-link
        // code (or the reverse) still works, rather than burning the code.
        if hello.kind != kind {
            info!(
                asked = kind.name(),
                code = hello.kind.name(),
                "the code is of the other kind; following the code"
            );
        }
        let kind = hello.kind;
        let verification = connected.joined.verification.clone();
        info!(
            kind = kind.name(),
            "enrolment handshake done; waiting for confirmation"
        );
        let fresh = fresh_keys.is_some();
        let state = JoinState {
            kind,
            fresh_keys,
            pin: p.pin.map(Zeroizing::new),
            hello: hello.clone(),
            inviter: connected.inviter,
            addrs: connected.addrs.clone(),
            stage: Stage::Waiting(Box::new(connected)),
            since: Instant::now(),
        };
        let id = self
            .joins
            .insert(state)
            .ok_or_else(|| RpcError::new(ErrorCode::Internal, "the daemon is shutting down"))?;
        reply::<m::JoinStart, _>(m::JoinStartResult {
            join_id: id,
            verification_code: verification,
            kind: kind.name().into(),
            team_name: hello.team_name,
            email: hello.email,
            name: hello.name,
            fresh,
        })
    }

    fn join_wait(&self, id: u64, mut state: JoinState) -> Result<Value, RpcError> {
        let Stage::Waiting(connected) = state.stage else {
            // Admitted already: only the PIN is missing.
            let r = self.pin_needed(&state);
            self.put_join(id, state);
            return r;
        };
        let Connected { joined, guard, .. } = *connected;
        let decided = block_on(joined.decision(enrol::DECISION_TIMEOUT));
        drop(guard); // the enrolment swarm is done
        let admission = decided.map_err(|e| {
            info!(error = %e, "join not admitted");
            enrol_error(e)
        })?;
        state.stage = Stage::Admitted(admission);
        if state.fresh_keys.is_some() && state.pin.is_none() {
            let r = self.pin_needed(&state);
            self.put_join(id, state);
            return r;
        }
        self.join_complete(state)
    }

    fn pin_needed(&self, state: &JoinState) -> Result<Value, RpcError> {
        let team = match &state.stage {
            Stage::Admitted(a) => SpaceId(a.team).to_hex(),
            Stage::Waiting(_) => String::new(),
        };
        reply::<m::JoinWait, _>(m::JoinResult {
            enrolled: false,
            needs_pin: true,
            device_id: state
                .fresh_keys
                .as_ref()
                .map(|(k, _)| k.device_id().to_hex()),
            team_id: team,
            team_name: state.hello.team_name.clone(),
            email: state.hello.email.clone(),
        })
    }

    /// Writes the admitted join to the vault and starts syncing.
    fn join_complete(&self, state: JoinState) -> Result<Value, RpcError> {
        let Stage::Admitted(admission) = state.stage else {
            return Err(RpcError::new(ErrorCode::Internal, "join not admitted"));
        };
        let team = SpaceId(admission.team);
        let fresh = match (state.fresh_keys, state.pin) {
            (Some((keys, transport)), Some(pin)) => Some(FreshIdentity {
                name: state.hello.name.clone(),
                email: state.hello.email.clone(),
                pin,
                keys,
                transport,
            }),
            (Some(_), None) => {
                return Err(RpcError::new(ErrorCode::InvalidInput, "a PIN is needed"))
            }
            (None, _) => None,
        };
        let roster = admission.roster;
        let device = self
            .vault
            .blocking_call(move |v| v.enrol_finish(fresh, team, &roster, now(), &mut OsRng))?;
        self.net.identity_maybe_ready();
        self.net.learned(state.inviter, state.addrs);
        info!(device = %device.short(), kind = state.kind.name(), team = %team.short(), "enrolled");
        reply::<m::JoinWait, _>(m::JoinResult {
            enrolled: true,
            needs_pin: false,
            device_id: Some(device.to_hex()),
            team_id: team.to_hex(),
            team_name: state.hello.team_name,
            email: state.hello.email,
        })
    }
}
