//! One peer's sync session: the transport around the replica's sync state
//! machine. A reader task reads the peer's stream; the session hands each
//! message to the replica (on the vault thread). A writer task owns our
//! outbound stream and, whenever the replica has something for this peer
//! (its `Transmit`, a `Notify`), sends what `poll_transmit` gives. Reading
//! never waits for writing, so two peers bulk-syncing each other cannot
//! deadlock on full windows.

use std::sync::Arc;
use std::time::Duration;

use coffer_crdt::DeviceId;
use libp2p::{PeerId, Stream, StreamProtocol};
use rand::rngs::OsRng;
use tokio::sync::{mpsc, oneshot, Notify};
use tracing::{debug, warn};

use super::protocol::{
    read_message, write_message, FrameError, Message, SyncWire, MAX_ERROR_TEXT, TIME_SINCE_VERSION,
};
use super::{now_ms, Command, Ctx};
use crate::vault::VaultError;

const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames read ahead of ingestion (backpressure: then the reader stops reading).
const READ_AHEAD: usize = 8;
/// Messages taken from the replica per call of the vault.
const POLL_BATCH: usize = 8;

enum SessionMsg {
    Inbound(Stream),
}

/// The swarm actor's handle on a session; dropping it ends the session.
pub(crate) struct SessionHandle {
    pub id: u64,
    tx: mpsc::Sender<SessionMsg>,
    /// The peer's stream arrived: a session reads one, the one the peer's
    /// session opened.
    has_inbound: bool,
}

impl SessionHandle {
    /// Whether the peer's stream of this session arrived already.
    pub fn has_inbound(&self) -> bool {
        self.has_inbound
    }

    /// The stream the peer opened to us.
    pub fn inbound(&mut self, stream: Stream) {
        self.has_inbound = true;
        if let Err(e) = self.tx.try_send(SessionMsg::Inbound(stream)) {
            warn!(error = %e, "session inbox full: dropping an inbound stream");
        }
    }
}

/// Starts a session with an allowed, connected peer.
pub(crate) fn spawn(
    ctx: Arc<Ctx>,
    peer: PeerId,
    device: DeviceId,
    id: u64,
    control: libp2p_stream::Control,
) -> SessionHandle {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let (reason, violation) = run(ctx.clone(), peer, device, control, rx).await;
        let _ = ctx
            .cmd
            .send(Command::SessionEnded {
                peer,
                session: id,
                reason,
                violation,
            })
            .await;
    });
    SessionHandle {
        id,
        tx,
        has_inbound: false,
    }
}

enum ReaderEvent {
    /// A message, its size on the wire, and when it was read (ms).
    Frame(Message, usize, i64),
    End,
    Bad(FrameError),
}

async fn reader(mut stream: Stream, tx: mpsc::Sender<ReaderEvent>) {
    loop {
        let ev = match read_message(&mut stream).await {
            Ok(Some((m, n))) => ReaderEvent::Frame(m, n, now_ms()),
            Ok(None) => ReaderEvent::End,
            Err(e) => ReaderEvent::Bad(e),
        };
        let last = !matches!(ev, ReaderEvent::Frame(..));
        if tx.send(ev).await.is_err() || last {
            return;
        }
    }
}

/// Owns the outbound stream: sends what the replica has for the peer each
/// time it is woken, the session's own messages (`Time`) after whatever the
/// replica had queued (so `Hello` stays first), and a last `Error` when the
/// session cuts the peer off. Returns why it stopped.
async fn writer(
    ctx: Arc<Ctx>,
    device: DeviceId,
    mut out: Stream,
    wake: Arc<Notify>,
    mut own: mpsc::Receiver<Message>,
    mut cut_off: oneshot::Receiver<Message>,
) -> String {
    let reason = loop {
        tokio::select! {
            last = &mut cut_off => {
                if let Ok(msg) = last {
                    let _ = write_message(&mut out, &msg).await;
                }
                break "closed after an error".to_string();
            }
            Some(msg) = own.recv() => {
                if let Err(e) = send_pending(&ctx, device, &mut out).await {
                    break e.to_string();
                }
                // Stamped as it leaves, not when it was queued.
                let msg = match msg {
                    Message::Time { .. } => Message::Time { unix_ms: now_ms() },
                    other => other,
                };
                match write_message(&mut out, &msg).await {
                    Ok(n) => ctx.stat(&device, |s| s.bytes_sent += n as u64),
                    Err(e) => break e.to_string(),
                }
            }
            () = wake.notified() => {
                if let Err(e) = send_pending(&ctx, device, &mut out).await {
                    break e.to_string();
                }
            }
        }
    };
    let _ = futures::AsyncWriteExt::close(&mut out).await;
    reason
}

/// Sends every message the replica has for `device` now.
async fn send_pending(
    ctx: &Arc<Ctx>,
    device: DeviceId,
    out: &mut Stream,
) -> Result<(), FrameError> {
    loop {
        let batch = ctx
            .vault
            .call_quiet(move |v| {
                let mut msgs = Vec::new();
                while msgs.len() < POLL_BATCH {
                    // The replica's messages, then the audit records the
                    // peer lacks (read from the store).
                    match v.poll_transmit(&device)? {
                        Some(m) => msgs.push(m),
                        // A relay holds no audit trail.
                        None if v.is_relay() => break,
                        None => match v.poll_audit(&device)? {
                            Some(m) => msgs.push(m),
                            None => break,
                        },
                    }
                }
                Ok::<_, VaultError>(msgs)
            })
            .await
            .unwrap_or_default();
        if batch.is_empty() {
            return Ok(());
        }
        for msg in &batch {
            let n = write_message(out, msg).await?;
            let envelopes = match msg {
                Message::Envelopes { envelopes, .. } => envelopes.len() as u64,
                _ => 0,
            };
            ctx.stat(&device, |s| {
                s.bytes_sent += n as u64;
                s.envelopes_sent += envelopes;
            });
        }
        debug!(peer = %device.short(), messages = batch.len(), "sent");
    }
}

/// Notes a frame read from the peer (its bytes and envelopes, the clocks)
/// and returns the message for the replica, or `None` when it is the
/// peer's clock (the transport's business, `coffer doctor`).
fn noted(
    ctx: &Ctx,
    device: DeviceId,
    own: &mpsc::Sender<Message>,
    time_sent: &mut bool,
    msg: Message,
    n: usize,
    read_at: i64,
) -> Option<Message> {
    let received = match &msg {
        Message::Envelopes { envelopes, .. } => envelopes.len() as u64,
        _ => 0,
    };
    ctx.stat(&device, |s| {
        s.bytes_received += n as u64;
        s.envelopes_received += received;
        if received > 0 || matches!(msg, Message::Caught { .. }) {
            s.last_sync_ms = Some(now_ms());
        }
    });
    // The clocks (`coffer doctor`): ours goes to a peer that knows the
    // message, once; theirs is noted.
    match &msg {
        Message::Hello { version, .. } | Message::HelloDigest { version, .. }
            if *version >= TIME_SINCE_VERSION && !*time_sent =>
        {
            *time_sent = true;
            let _ = own.try_send(Message::Time { unix_ms: now_ms() });
        }
        Message::Time { unix_ms } => {
            let offset = unix_ms.saturating_sub(read_at);
            ctx.stat(&device, |s| {
                s.clock_offset_ms = Some(offset);
                s.clock_measured_ms = Some(read_at);
            });
            return None;
        }
        _ => {}
    }
    Some(msg)
}

/// Opens the outbound sync stream: `/coffer/sync/3`, else (the peer does
/// not speak it) `/coffer/sync/2`; `v2_only` (tests) offers `/2` alone.
/// Returns the stream and the wire it negotiated, or why it failed.
async fn open(
    control: &mut libp2p_stream::Control,
    peer: PeerId,
    v2_only: bool,
) -> Result<(Stream, SyncWire), String> {
    let wires: &[SyncWire] = if v2_only {
        &[SyncWire::V2]
    } else {
        &[SyncWire::V3, SyncWire::V2]
    };
    let mut last = String::new();
    for wire in wires {
        let opened = tokio::time::timeout(
            OPEN_TIMEOUT,
            control.open_stream(peer, StreamProtocol::new(wire.protocol_name())),
        )
        .await;
        match opened {
            Ok(Ok(s)) => return Ok((s, *wire)),
            Ok(Err(libp2p_stream::OpenStreamError::UnsupportedProtocol(p))) => {
                debug!(%peer, protocol = %p, "the peer does not speak it");
                last = format!("the peer speaks no sync protocol of ours ({p})");
            }
            Ok(Err(e)) => return Err(format!("cannot open the sync stream: {e}")),
            Err(_) => return Err("timed out opening the sync stream".into()),
        }
    }
    Err(last)
}

/// Runs the session; returns why it ended and whether the peer broke the protocol.
async fn run(
    ctx: Arc<Ctx>,
    peer: PeerId,
    device: DeviceId,
    mut control: libp2p_stream::Control,
    mut inbox: mpsc::Receiver<SessionMsg>,
) -> (String, bool) {
    let (out, wire) = match open(&mut control, peer, ctx.config.sync_v2_only).await {
        Ok(opened) => opened,
        Err(reason) => return (reason, false),
    };
    debug!(%peer, protocol = wire.protocol_name(), "sync stream open");
    ctx.stat(&device, |s| s.sync_protocol = Some(wire.protocol_name()));
    let wake = Arc::new(Notify::new());
    let (cut, cut_off) = oneshot::channel();
    let (own, own_rx) = mpsc::channel(1);
    let mut writer_task = tokio::spawn(writer(
        ctx.clone(),
        device,
        out,
        wake.clone(),
        own_rx,
        cut_off,
    ));
    let mut time_sent = false;
    // The replica greets the peer (its Hello) through the writer.
    ctx.vault.connect(device, wake.clone(), wire).await;
    let (frame_tx, mut frames) = mpsc::channel(READ_AHEAD);
    let mut reader_task: Option<tokio::task::JoinHandle<()>> = None;
    // A frame read ahead while draining, to handle next.
    let mut stash: Option<ReaderEvent> = None;
    let outcome: Result<String, (Message, String)> = loop {
        let ev = match stash.take() {
            Some(ev) => ev,
            None => tokio::select! {
                msg = inbox.recv() => match msg {
                    None => break Ok("disconnected".into()),
                    Some(SessionMsg::Inbound(stream)) => {
                        if let Some(r) = reader_task.take() {
                            r.abort();
                        }
                        reader_task = Some(tokio::spawn(reader(stream, frame_tx.clone())));
                        continue;
                    }
                },
                ev = frames.recv() => ev.unwrap_or(ReaderEvent::End),
                done = &mut writer_task => {
                    break Ok(done.unwrap_or_else(|_| "writer failed".into()));
                }
            },
        };
        let msg = match ev {
            ReaderEvent::End => break Ok("the peer closed its stream".into()),
            ReaderEvent::Bad(FrameError::Io(e)) => break Ok(format!("stream error: {e}")),
            ReaderEvent::Bad(e) => {
                let text = e.to_string();
                break Err((
                    Message::Error {
                        code: super::protocol::ErrorCode::Malformed,
                        text: text.clone(),
                    },
                    text,
                ));
            }
            ReaderEvent::Frame(msg, n, read_at) => {
                match noted(&ctx, device, &own, &mut time_sent, msg, n, read_at) {
                    Some(msg) => msg,
                    None => continue,
                }
            }
        };
        // Envelopes: the frames already read ahead go to the replica in the
        // same call, so it takes a space's envelopes in as one batch.
        let mut msgs = vec![msg];
        if matches!(msgs[0], Message::Envelopes { .. }) {
            while msgs.len() <= READ_AHEAD {
                match frames.try_recv() {
                    Ok(ReaderEvent::Frame(msg, n, read_at)) => {
                        if let Some(msg) =
                            noted(&ctx, device, &own, &mut time_sent, msg, n, read_at)
                        {
                            msgs.push(msg);
                        }
                    }
                    Ok(other) => {
                        stash = Some(other);
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
        let handled = ctx
            .vault
            .call_quiet(move |v| v.handle_messages(device, msgs, &mut OsRng))
            .await;
        match handled {
            Ok(Ok(())) => {}
            Ok(Err(v)) if v.is_violation() => {
                let mut text = v.to_string();
                text.truncate(MAX_ERROR_TEXT);
                break Err((
                    Message::Error {
                        code: v.code(),
                        text: text.clone(),
                    },
                    text,
                ));
            }
            Ok(Err(v)) => break Ok(v.to_string()),
            Err(e) => break Ok(format!("local error: {e}")),
        }
    };
    if let Some(r) = reader_task.take() {
        r.abort();
    }
    ctx.vault.disconnect(device, wake).await;
    match outcome {
        Ok(reason) => {
            writer_task.abort();
            (reason, false)
        }
        Err((last, text)) => {
            warn!(%peer, error = %text, "cutting off a peer");
            let _ = cut.send(last);
            let _ = tokio::time::timeout(Duration::from_secs(1), &mut writer_task).await;
            writer_task.abort();
            // Let the error frame leave before the connection is closed.
            tokio::time::sleep(Duration::from_millis(200)).await;
            (text, true)
        }
    }
}
