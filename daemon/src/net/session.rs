//! One peer's sync session: a task that reads the peer's stream and ingests
//! what it sends, and a writer task that owns our outbound stream and sends
//! the peer what it lacks. Reading never waits for writing, so two peers
//! bulk-syncing each other cannot deadlock on full windows.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use coffer_crdt::{DeviceId, Envelope, EnvelopeId, SpaceId};
use coffer_ipc::Event;
use libp2p::{PeerId, Stream, StreamProtocol};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::protocol::{
    batches, read_message, write_message, ErrorCode, FrameError, Message, SpaceSummary, Tip,
    MAX_ERROR_TEXT, PROTOCOL_NAME, PROTOCOL_VERSION,
};
use super::{now_ms, Command, Ctx};

const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames read ahead of ingestion (backpressure: then the reader stops reading).
const READ_AHEAD: usize = 8;

type Known = BTreeMap<(SpaceId, DeviceId), (u64, EnvelopeId)>;

enum SessionMsg {
    Inbound(Stream),
    Push,
    Resync,
}

/// The swarm actor's handle on a session; dropping it ends the session.
pub(crate) struct SessionHandle {
    pub id: u64,
    tx: mpsc::Sender<SessionMsg>,
}

impl SessionHandle {
    /// New envelopes may be held: send the peer what it lacks.
    pub fn push(&self) {
        let _ = self.tx.try_send(SessionMsg::Push);
    }

    /// `coffer sync now`: announce what we hold, so the peer sends what we lack.
    pub fn resync(&self) {
        let _ = self.tx.try_send(SessionMsg::Resync);
    }

    /// The stream the peer opened to us.
    pub fn inbound(&self, stream: Stream) {
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
    SessionHandle { id, tx }
}

enum ReaderEvent {
    Frame(Message, usize),
    End,
    Bad(FrameError),
}

async fn reader(mut stream: Stream, tx: mpsc::Sender<ReaderEvent>) {
    loop {
        let ev = match read_message(&mut stream).await {
            Ok(Some((m, n))) => ReaderEvent::Frame(m, n),
            Ok(None) => ReaderEvent::End,
            Err(e) => ReaderEvent::Bad(e),
        };
        let last = !matches!(ev, ReaderEvent::Frame(..));
        if tx.send(ev).await.is_err() || last {
            return;
        }
    }
}

enum Job {
    Hello,
    Summary,
    /// The peer's summary: remember what it holds, send what it lacks.
    PeerHas(Vec<SpaceSummary>),
    Push,
    /// Envelopes the peer sent us: it holds them.
    Saw(Vec<Tip>),
    Error(ErrorCode, String),
}

fn note(known: &mut HashMap<SpaceId, Known>, space: SpaceId, tip: &Tip) {
    let k = known.entry(space).or_default();
    let e = k.entry((tip.space, tip.author)).or_insert((0, tip.id));
    if tip.seq >= e.0 {
        *e = (tip.seq, tip.id);
    }
}

/// Owns the outbound stream. Returns why it stopped.
async fn writer(
    ctx: Arc<Ctx>,
    device: DeviceId,
    mut out: Stream,
    mut jobs: mpsc::UnboundedReceiver<Job>,
) -> String {
    let mut known: HashMap<SpaceId, Known> = HashMap::new();
    let mut ready = false;
    while let Some(job) = jobs.recv().await {
        let result: Result<(), FrameError> = async {
            match job {
                Job::Hello | Job::Summary => {
                    let spaces = ctx
                        .vault(move |v| v.summary_for(&device))
                        .await
                        .unwrap_or_default();
                    let msg = if matches!(job, Job::Hello) {
                        Message::Hello {
                            version: PROTOCOL_VERSION,
                            spaces,
                        }
                    } else {
                        Message::Summary { spaces }
                    };
                    let n = write_message(&mut out, &msg).await?;
                    ctx.stat(&device, |s| s.bytes_sent += n as u64);
                }
                Job::PeerHas(spaces) => {
                    ready = true;
                    for s in &spaces {
                        known.insert(s.space, s.vector());
                    }
                    send_missing(&ctx, device, &mut out, &mut known, true).await?;
                }
                Job::Push => {
                    if ready {
                        send_missing(&ctx, device, &mut out, &mut known, false).await?;
                    }
                }
                Job::Saw(tips) => {
                    for t in &tips {
                        note(&mut known, t.space, t);
                    }
                }
                Job::Error(code, text) => {
                    let mut text = text;
                    text.truncate(MAX_ERROR_TEXT);
                    let _ = write_message(&mut out, &Message::Error { code, text }).await;
                    return Err(FrameError::Malformed("closed after an error"));
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            let _ = futures::AsyncWriteExt::close(&mut out).await;
            return e.to_string();
        }
    }
    let _ = futures::AsyncWriteExt::close(&mut out).await;
    "session closed".into()
}

/// Sends, per space shared with the peer, the envelopes it lacks, each
/// followed by [`Message::Caught`]; with `caught` (an answer to its
/// summary) a `Caught` for every shared space, even with nothing to send.
async fn send_missing(
    ctx: &Arc<Ctx>,
    device: DeviceId,
    out: &mut Stream,
    known: &mut HashMap<SpaceId, Known>,
    caught: bool,
) -> Result<(), FrameError> {
    let snapshot = known.clone();
    let missing = ctx
        .vault(move |v| {
            let empty = Known::new();
            v.shared_with(&device)
                .into_iter()
                .map(|s| {
                    let m = v.missing_for(&device, &s, snapshot.get(&s).unwrap_or(&empty));
                    (s, m)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
    for (space, envs) in missing {
        let sent_any = !envs.is_empty();
        if sent_any {
            let count = envs.len();
            let mut bytes = Vec::with_capacity(count);
            for (tip, b) in envs {
                note(known, space, &tip);
                bytes.push(b);
            }
            let mut sent = 0;
            for msg in batches(space, bytes) {
                sent += write_message(out, &msg).await?;
            }
            ctx.stat(&device, |s| {
                s.bytes_sent += sent as u64;
                s.envelopes_sent += count as u64;
            });
            debug!(space = %space.short(), count, "sent envelopes");
        }
        // After everything it lacked, the peer is caught up (per our view).
        if caught || sent_any {
            let n = write_message(out, &Message::Caught { space }).await?;
            ctx.stat(&device, |s| s.bytes_sent += n as u64);
        }
    }
    Ok(())
}

/// Runs the session; returns why it ended and whether the peer broke the protocol.
async fn run(
    ctx: Arc<Ctx>,
    peer: PeerId,
    device: DeviceId,
    mut control: libp2p_stream::Control,
    mut inbox: mpsc::Receiver<SessionMsg>,
) -> (String, bool) {
    let opened = tokio::time::timeout(
        OPEN_TIMEOUT,
        control.open_stream(peer, StreamProtocol::new(PROTOCOL_NAME)),
    )
    .await;
    let out = match opened {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return (format!("cannot open the sync stream: {e}"), false),
        Err(_) => return ("timed out opening the sync stream".into(), false),
    };
    let (jobs, job_rx) = mpsc::unbounded_channel();
    let mut writer_task = tokio::spawn(writer(ctx.clone(), device, out, job_rx));
    let _ = jobs.send(Job::Hello);
    let (frame_tx, mut frames) = mpsc::channel(READ_AHEAD);
    let mut reader_task: Option<tokio::task::JoinHandle<()>> = None;
    let mut hello = false;
    let outcome: Result<String, (ErrorCode, String)> = loop {
        tokio::select! {
            msg = inbox.recv() => match msg {
                None => break Ok("disconnected".into()),
                Some(SessionMsg::Inbound(stream)) => {
                    if let Some(r) = reader_task.take() {
                        r.abort();
                    }
                    reader_task = Some(tokio::spawn(reader(stream, frame_tx.clone())));
                }
                Some(SessionMsg::Push) => { let _ = jobs.send(Job::Push); }
                Some(SessionMsg::Resync) => { let _ = jobs.send(Job::Summary); }
            },
            ev = frames.recv() => match ev {
                None | Some(ReaderEvent::End) => break Ok("the peer closed its stream".into()),
                Some(ReaderEvent::Bad(FrameError::Io(e))) => break Ok(format!("stream error: {e}")),
                Some(ReaderEvent::Bad(e)) => break Err((ErrorCode::Malformed, e.to_string())),
                Some(ReaderEvent::Frame(msg, n)) => {
                    ctx.stat(&device, |s| s.bytes_received += n as u64);
                    match handle(&ctx, device, &jobs, &mut hello, msg).await {
                        Ok(None) => {}
                        Ok(Some(reason)) => break Ok(reason),
                        Err(v) => break Err(v),
                    }
                }
            },
            done = &mut writer_task => {
                break Ok(done.unwrap_or_else(|_| "writer failed".into()));
            }
        }
    };
    if let Some(r) = reader_task.take() {
        r.abort();
    }
    match outcome {
        Ok(reason) => {
            drop(jobs);
            writer_task.abort();
            (reason, false)
        }
        Err((code, text)) => {
            warn!(%peer, ?code, error = %text, "cutting off a peer");
            let _ = jobs.send(Job::Error(code, text.clone()));
            let _ = tokio::time::timeout(Duration::from_secs(1), &mut writer_task).await;
            writer_task.abort();
            // Let the error frame leave before the connection is closed.
            tokio::time::sleep(Duration::from_millis(200)).await;
            (text, true)
        }
    }
}

/// Handles one message from the peer: `Ok(Some(reason))` ends the session
/// cleanly, `Err` is a protocol violation.
async fn handle(
    ctx: &Arc<Ctx>,
    device: DeviceId,
    jobs: &mpsc::UnboundedSender<Job>,
    hello: &mut bool,
    msg: Message,
) -> Result<Option<String>, (ErrorCode, String)> {
    match msg {
        Message::Hello { version, spaces } => {
            if version < PROTOCOL_VERSION {
                return Err((ErrorCode::Version, format!("unsupported version {version}")));
            }
            *hello = true;
            let _ = jobs.send(Job::PeerHas(spaces));
        }
        Message::Summary { spaces } => {
            if !*hello {
                return Err((ErrorCode::Malformed, "summary before hello".into()));
            }
            let _ = jobs.send(Job::PeerHas(spaces));
        }
        Message::Envelopes { space, envelopes } => {
            let mut envs = Vec::with_capacity(envelopes.len());
            for bytes in &envelopes {
                match Envelope::decode(bytes) {
                    Ok(e) => envs.push(e),
                    Err(e) => {
                        return Err((
                            ErrorCode::Malformed,
                            format!("an envelope does not decode: {e}"),
                        ))
                    }
                }
            }
            let tips: Vec<Tip> = envs
                .iter()
                .map(|e| Tip {
                    space: e.space(),
                    author: e.author(),
                    seq: e.seq(),
                    id: e.id(),
                })
                .collect();
            let count = envs.len();
            let result = ctx
                .vault(move |v| {
                    let r = v.ingest_remote(space, envs);
                    let allowed = match &r {
                        Ok(r) if r.membership_changed => Some(v.known_peers()),
                        _ => None,
                    };
                    (r, allowed)
                })
                .await;
            let Some((result, allowed)) = result else {
                return Ok(Some("the vault is unavailable".into()));
            };
            let r = match result {
                Ok(r) => r,
                Err(e) => {
                    warn!(error = %e, "cannot take in synced envelopes");
                    return Ok(Some(format!("local error: {e}")));
                }
            };
            let _ = jobs.send(Job::Saw(tips));
            ctx.stat(&device, |s| {
                s.envelopes_received += count as u64;
                s.last_sync_ms = Some(now_ms());
            });
            if r.not_shared {
                debug!(space = %space.short(), "envelopes of a folder not shared with this device: ignored");
            }
            let mut events = r.events;
            if r.new > 0 {
                events.push(Event::SyncProgress {
                    device_id: device.to_hex(),
                    folder_id: space.to_hex(),
                    received: r.new,
                    caught_up: false,
                });
            }
            ctx.publish(events);
            if let Some(allowed) = allowed {
                let _ = ctx.cmd.try_send(Command::SetAllowed(allowed));
            }
            if r.new > 0 {
                // Forward to the other peers (each is sent only what it lacks).
                let _ = ctx.cmd.try_send(Command::Changed);
            }
            if r.quarantined > 0 {
                info!(space = %space.short(), count = r.quarantined, "synced envelopes quarantined");
            }
            if r.invalid > 0 {
                return Err((
                    ErrorCode::InvalidEnvelope,
                    format!("{} envelope(s) failed verification", r.invalid),
                ));
            }
        }
        Message::Caught { space } => {
            ctx.stat(&device, |s| s.last_sync_ms = Some(now_ms()));
            ctx.publish([Event::SyncProgress {
                device_id: device.to_hex(),
                folder_id: space.to_hex(),
                received: 0,
                caught_up: true,
            }]);
        }
        Message::Error { code, text } => {
            let text: String = text.chars().filter(|c| !c.is_control()).collect();
            return Ok(Some(format!("the peer reported {code:?}: {text}")));
        }
    }
    Ok(None)
}
