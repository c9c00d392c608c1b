//! The web app's sessions, owned by one task (an actor reached through a
//! bounded channel, like the vault): one-time tokens handed to `coffer ui`,
//! and the live sessions they were exchanged for. Only BLAKE3 hashes of
//! tokens and cookies are kept, so a lookup by hash leaks nothing through
//! timing and a memory dump holds no usable token. Every session ends when
//! the vault locks (the task watches the event bus for `LockState`).
//!
//! Not here: HTTP, the checks of `Host`/`Origin` (`web.rs`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use coffer_ipc::Event;
use rand::rngs::OsRng;
use rand::RngCore;
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{debug, info};
use zeroize::Zeroizing;

/// How long a token from `coffer ui` can be spent.
pub(crate) const TOKEN_TTL: Duration = Duration::from_secs(120);
/// At most this many unspent tokens and live sessions (the oldest goes).
const MAX_ENTRIES: usize = 32;
/// Requests waiting for the sessions task, at most.
const QUEUE: usize = 64;

/// A random 256-bit value as 64 hex characters, zeroed when dropped.
pub(crate) type Secret = Zeroizing<String>;

fn fresh() -> Secret {
    let mut bytes = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(bytes.as_mut());
    Zeroizing::new(hex::encode(bytes.as_ref()))
}

fn digest(secret: &str) -> [u8; 32] {
    *blake3::hash(secret.as_bytes()).as_bytes()
}

/// What a spent token gives the browser: the cookie's value and the CSRF
/// token its page sends with every API call.
pub(crate) struct Started {
    pub cookie: Secret,
    pub csrf: Secret,
}

enum Cmd {
    Issue(oneshot::Sender<Secret>),
    Redeem(Secret, oneshot::Sender<Option<Started>>),
    /// The CSRF token's hash of the live session with this cookie.
    Check(Secret, oneshot::Sender<Option<[u8; 32]>>),
    End(Secret),
}

/// The handle the IPC server (`ui.open`) and the web server hold.
#[derive(Clone)]
pub(crate) struct Sessions {
    tx: mpsc::Sender<Cmd>,
}

/// Why a sessions request got no answer: the task is gone (shutdown).
#[derive(Debug, thiserror::Error)]
#[error("the web sessions task has stopped")]
pub(crate) struct Stopped;

impl Sessions {
    pub(crate) fn spawn(events: broadcast::Receiver<Event>) -> Sessions {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(rx, events));
        Sessions { tx }
    }

    /// A fresh one-time token (from the blocking pool: `ui.open`).
    pub(crate) fn blocking_issue(&self) -> Result<Secret, Stopped> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .blocking_send(Cmd::Issue(reply))
            .map_err(|_| Stopped)?;
        rx.blocking_recv().map_err(|_| Stopped)
    }

    /// Spends a token: a new session, or `None` when it is unknown,
    /// spent or expired.
    pub(crate) async fn redeem(&self, token: Secret) -> Result<Option<Started>, Stopped> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Redeem(token, reply))
            .await
            .map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// Whether `cookie` names a live session and `csrf` is its token.
    pub(crate) async fn check(&self, cookie: Secret, csrf: Option<&str>) -> bool {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Cmd::Check(cookie, reply)).await.is_err() {
            return false;
        }
        match (rx.await, csrf) {
            (Ok(Some(want)), Some(csrf)) => {
                use subtle::ConstantTimeEq;
                bool::from(want.ct_eq(&digest(csrf)))
            }
            _ => false,
        }
    }

    /// Whether `cookie` names a live session (pages, not the API).
    pub(crate) async fn live(&self, cookie: Secret) -> bool {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Cmd::Check(cookie, reply)).await.is_err() {
            return false;
        }
        matches!(rx.await, Ok(Some(_)))
    }

    pub(crate) async fn end(&self, cookie: Secret) {
        let _ = self.tx.send(Cmd::End(cookie)).await;
    }
}

struct Live {
    csrf: [u8; 32],
    since: Instant,
}

#[derive(Default)]
struct Table {
    tokens: HashMap<[u8; 32], Instant>,
    live: HashMap<[u8; 32], Live>,
}

impl Table {
    fn issue(&mut self, now: Instant) -> Secret {
        self.tokens
            .retain(|_, t| now.duration_since(*t) < TOKEN_TTL);
        if self.tokens.len() >= MAX_ENTRIES {
            if let Some(oldest) = self.tokens.iter().min_by_key(|(_, t)| **t).map(|(k, _)| *k) {
                self.tokens.remove(&oldest);
            }
        }
        let token = fresh();
        self.tokens.insert(digest(&token), now);
        token
    }

    fn redeem(&mut self, token: &str, now: Instant) -> Option<Started> {
        let issued = self.tokens.remove(&digest(token))?;
        if now.duration_since(issued) >= TOKEN_TTL {
            return None;
        }
        if self.live.len() >= MAX_ENTRIES {
            if let Some(oldest) = self
                .live
                .iter()
                .min_by_key(|(_, s)| s.since)
                .map(|(k, _)| *k)
            {
                self.live.remove(&oldest);
            }
        }
        let started = Started {
            cookie: fresh(),
            csrf: fresh(),
        };
        self.live.insert(
            digest(&started.cookie),
            Live {
                csrf: digest(&started.csrf),
                since: now,
            },
        );
        Some(started)
    }

    fn end_all(&mut self, why: &str) {
        if !self.live.is_empty() || !self.tokens.is_empty() {
            info!(sessions = self.live.len(), why, "web sessions ended");
        }
        self.live.clear();
        self.tokens.clear();
    }
}

async fn run(mut rx: mpsc::Receiver<Cmd>, mut events: broadcast::Receiver<Event>) {
    let mut table = Table::default();
    loop {
        tokio::select! {
            // The lock first: no request is answered for a session the lock ended.
            biased;
            event = events.recv() => match event {
                Ok(Event::LockState { locked: true, .. }) => table.end_all("vault locked"),
                Ok(_) => {}
                // Missed events may have held a lock: end them to be safe.
                Err(broadcast::error::RecvError::Lagged(_)) => table.end_all("event bus lagged"),
                Err(broadcast::error::RecvError::Closed) => return,
            },
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { return };
                let now = Instant::now();
                match cmd {
                    Cmd::Issue(reply) => {
                        let _ = reply.send(table.issue(now));
                    }
                    Cmd::Redeem(token, reply) => {
                        let started = table.redeem(&token, now);
                        debug!(ok = started.is_some(), "web token redeemed");
                        let _ = reply.send(started);
                    }
                    Cmd::Check(cookie, reply) => {
                        let _ = reply.send(table.live.get(&digest(&cookie)).map(|l| l.csrf));
                    }
                    Cmd::End(cookie) => {
                        table.live.remove(&digest(&cookie));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_spent_once_and_expires() {
        let mut t = Table::default();
        let now = Instant::now();
        let token = t.issue(now);
        let started = t.redeem(&token, now).expect("first use");
        assert!(t.live.contains_key(&digest(&started.cookie)));
        assert!(t.redeem(&token, now).is_none(), "second use");
        let late = t.issue(now);
        assert!(t.redeem(&late, now + TOKEN_TTL).is_none(), "expired");
        assert!(t.redeem("00", now).is_none(), "unknown");
    }

    #[test]
    fn locking_ends_every_session_and_token() {
        let mut t = Table::default();
        let now = Instant::now();
        let a = t.issue(now);
        t.redeem(&a, now).expect("session");
        let b = t.issue(now);
        t.end_all("test");
        assert!(t.live.is_empty());
        assert!(t.redeem(&b, now).is_none());
    }
}
