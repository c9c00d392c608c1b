//! The vault actor: one OS thread owns the [`Vault`] (its replica, store
//! and keys); the IPC server, the sync sessions and the enrolment protocol
//! reach it only through a bounded channel, each call a closure run on that
//! thread with its answer on a oneshot. Argon2 and SQLite fsyncs block that
//! thread, never a runtime worker.
//!
//! After every call the vault settles (persists what the replica queued,
//! in one transaction) before the caller hears back, and the replica's
//! other effects are routed: events and allowed peers to the [`Router`],
//! `Transmit` to the connected session of that peer (a `Notify`, which
//! keeps a wake-up that arrives before the session waits).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_crdt::replica::{LockReason, SyncWire};
use coffer_crdt::DeviceId;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tracing::{debug, info, warn};

use super::{release_freed_memory, Output, Vault, VaultError};

/// Calls waiting for the vault thread at most.
const QUEUE: usize = 64;

/// Where the actor sends what the replica says (besides `Transmit`).
pub trait Router: Send + 'static {
    fn route(&mut self, output: Output);
}

/// A call: runs on the vault and returns how to answer its caller, which
/// the actor does only after routing what the call caused (so a caller
/// that acts on the answer finds, say, the allowed peers already updated).
type Job = Box<dyn FnOnce(&mut Vault) -> Answer + Send>;
type Answer = Box<dyn FnOnce() + Send>;

/// Idle time after which folders that changed much are snapshotted and
/// the freed heap is returned to the OS.
const IDLE_UPKEEP_AFTER: Duration = Duration::from_secs(5);

enum Call {
    /// A request; `activity` postpones the auto-lock.
    Job { job: Job, activity: bool },
    /// A sync session for `peer` started: wake it through `notify`.
    /// `wire`: what its outbound stream negotiated.
    Connect {
        peer: DeviceId,
        notify: Arc<Notify>,
        wire: SyncWire,
    },
    /// That session ended.
    Disconnect { peer: DeviceId, notify: Arc<Notify> },
    /// Once a second: snapshot, then lock, after their idle times.
    Tick,
    /// Lock now and stop (daemon shutdown).
    Stop(oneshot::Sender<()>),
}

/// A cheap handle to the vault actor.
#[derive(Clone)]
pub struct VaultHandle {
    tx: mpsc::Sender<Call>,
    /// The team's notice to this device (revoked, removed), as of the last
    /// call: every IPC response carries it, so the CLI says it on every
    /// command without asking again.
    notice: watch::Receiver<Option<String>>,
}

impl VaultHandle {
    /// Starts the vault thread (and its once-a-second tick on the runtime).
    pub fn spawn(vault: Vault, auto_lock: Duration, router: impl Router) -> VaultHandle {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (notice_tx, notice) = watch::channel(None);
        let actor = Actor {
            vault,
            notice: notice_tx,
            router: Box::new(router),
            sessions: HashMap::new(),
            auto_lock,
            last_activity: Instant::now(),
            idle_upkept: false,
        };
        std::thread::Builder::new()
            .name("vault".into())
            .spawn(move || actor.run(rx))
            .expect("cannot start the vault thread");
        let ticks = tx.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                match ticks.try_send(Call::Tick) {
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                    // A full queue is busy: the next tick will do.
                    _ => continue,
                }
            }
        });
        VaultHandle { tx, notice }
    }

    /// The team's notice to this device, if it was taken out (see
    /// [`coffer_crdt::replica::Standing::notice`]).
    pub fn notice(&self) -> Option<String> {
        self.notice.borrow().clone()
    }

    /// Runs `f` on the vault without postponing the auto-lock (the
    /// network's calls), settles, and returns its result — or the settle
    /// error when what it wrote could not be stored.
    pub async fn call_quiet<T, E>(
        &self,
        f: impl FnOnce(&mut Vault) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<VaultError> + Send + 'static,
    {
        let (job, answer) = settled_job(f);
        self.tx
            .send(Call::Job {
                job,
                activity: false,
            })
            .await
            .map_err(|_| E::from(VaultError::Stopped))?;
        answer.await.map_err(|_| E::from(VaultError::Stopped))?
    }

    /// Runs `f` on the vault as a user's request (it postpones the
    /// auto-lock), from a thread that may block (the blocking pool, never a
    /// runtime worker); settles first, like [`VaultHandle::call_quiet`].
    pub fn blocking_call<T, E>(
        &self,
        f: impl FnOnce(&mut Vault) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<VaultError> + Send + 'static,
    {
        self.blocking_run(f, true)
    }

    /// [`VaultHandle::call_quiet`] from a thread that may block (status,
    /// sync: not user activity).
    pub fn blocking_call_quiet<T, E>(
        &self,
        f: impl FnOnce(&mut Vault) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<VaultError> + Send + 'static,
    {
        self.blocking_run(f, false)
    }

    fn blocking_run<T, E>(
        &self,
        f: impl FnOnce(&mut Vault) -> Result<T, E> + Send + 'static,
        activity: bool,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<VaultError> + Send + 'static,
    {
        let (job, answer) = settled_job(f);
        self.tx
            .blocking_send(Call::Job { job, activity })
            .map_err(|_| E::from(VaultError::Stopped))?;
        answer
            .blocking_recv()
            .map_err(|_| E::from(VaultError::Stopped))?
    }

    /// A sync session for `peer` started; `notify` wakes it when the
    /// replica has something for it.
    pub async fn connect(&self, peer: DeviceId, notify: Arc<Notify>, wire: SyncWire) {
        let _ = self.tx.send(Call::Connect { peer, notify, wire }).await;
    }

    /// The session of `peer` (the one `notify` belongs to) ended.
    pub async fn disconnect(&self, peer: DeviceId, notify: Arc<Notify>) {
        let _ = self.tx.send(Call::Disconnect { peer, notify }).await;
    }

    /// Locks the vault and stops the thread once every queued call ran.
    pub async fn stop(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Call::Stop(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// `f` as a job that settles the vault before it answers: the caller
/// hears of a write that could not be stored.
fn settled_job<T, E>(
    f: impl FnOnce(&mut Vault) -> Result<T, E> + Send + 'static,
) -> (Job, oneshot::Receiver<Result<T, E>>)
where
    T: Send + 'static,
    E: From<VaultError> + Send + 'static,
{
    let (reply, answer) = oneshot::channel();
    let job: Job = Box::new(move |vault: &mut Vault| {
        let result = f(vault);
        let settled = vault.settle();
        let result = match (result, settled) {
            (Ok(_), Err(e)) => Err(E::from(e)),
            (result, _) => result,
        };
        Box::new(move || {
            let _ = reply.send(result);
        })
    });
    (job, answer)
}

struct Actor {
    vault: Vault,
    router: Box<dyn Router>,
    notice: watch::Sender<Option<String>>,
    /// Each peer's session: its wake-up, and the wire its stream negotiated.
    sessions: HashMap<DeviceId, (Arc<Notify>, SyncWire)>,
    auto_lock: Duration,
    last_activity: Instant,
    /// The idle upkeep (snapshots, heap trim) ran since the last request.
    idle_upkept: bool,
}

impl Actor {
    fn run(mut self, mut rx: mpsc::Receiver<Call>) {
        self.route();
        while let Some(call) = rx.blocking_recv() {
            match call {
                Call::Job { job, activity } => {
                    if activity {
                        self.last_activity = Instant::now();
                        self.idle_upkept = false;
                    }
                    let answer = job(&mut self.vault);
                    self.route();
                    answer();
                    continue;
                }
                Call::Connect { peer, notify, wire } => {
                    self.sessions.insert(peer, (notify, wire));
                    self.vault.peer_connected(peer, wire);
                    self.settle();
                }
                Call::Disconnect { peer, notify } => {
                    // A newer session of the same peer may have replaced it.
                    if self
                        .sessions
                        .get(&peer)
                        .is_some_and(|(n, _)| Arc::ptr_eq(n, &notify))
                    {
                        self.sessions.remove(&peer);
                        self.vault.peer_disconnected(&peer);
                    }
                }
                Call::Tick => {
                    if !self.idle_upkept && self.last_activity.elapsed() >= IDLE_UPKEEP_AFTER {
                        // Once per idle period, while nobody waits: folders
                        // saved compacted (a crash or reboot then costs no
                        // full replay), the audit trail pruned past its
                        // retention, and the freed heap handed back.
                        self.idle_upkept = true;
                        self.vault.snapshot_folders();
                        self.settle();
                        if !self.vault.is_locked() {
                            if let Err(e) = self.vault.audit_prune(super::Now::wall()) {
                                warn!(error = %e, "cannot prune the audit trail");
                            }
                        }
                        release_freed_memory();
                    }
                    if !self.vault.is_locked() && self.last_activity.elapsed() >= self.auto_lock {
                        info!(
                            idle_secs = self.last_activity.elapsed().as_secs(),
                            "auto-locked after idle time"
                        );
                        self.vault.lock(LockReason::Idle);
                        self.settle();
                    }
                }
                Call::Stop(done) => {
                    self.vault.lock(LockReason::Request);
                    let _ = self.vault.settle();
                    let _ = done.send(());
                    debug!("vault thread stopped");
                    return;
                }
            }
            self.route();
        }
    }

    fn settle(&mut self) {
        if let Err(e) = self.vault.settle() {
            warn!(error = %e, "cannot store what the replica wrote");
        }
    }

    fn route(&mut self) {
        if self.vault.take_reloaded() {
            // A rebuilt replica knows no connected peer: tell it again.
            let peers: Vec<(DeviceId, SyncWire)> =
                self.sessions.iter().map(|(d, (_, w))| (*d, *w)).collect();
            for (peer, wire) in peers {
                self.vault.peer_connected(peer, wire);
            }
            self.settle();
        }
        let notice = self
            .vault
            .replica()
            .ok()
            .and_then(|r| r.standing().notice());
        self.notice.send_if_modified(|n| {
            let changed = *n != notice;
            *n = notice;
            changed
        });
        for output in self.vault.take_outputs() {
            match output {
                Output::Transmit(peer) => {
                    if let Some(n) = self.sessions.get(&peer) {
                        n.0.notify_one();
                    }
                }
                other => self.router.route(other),
            }
        }
    }
}
