//! A hostile sync peer for the process-level tests (issue 12): a device the
//! honest daemons allow — enrolled through the real CLI — whose identity is
//! taken over once its own daemon is stopped. [`Hostile::open`] opens that
//! device's data dir with the PIN through the daemon crate's own vault code:
//! the signing keys, the replica as the device left it, and the transport
//! key sealed under the pepper. [`Hostile::connect`] dials an honest daemon
//! with that transport key over the real transport (TCP, Noise with Coffer's
//! prologue, yamux) and speaks `/coffer/sync/2` with the daemon's own
//! framing. Everything it sends is crafted with `coffer_crdt` types and
//! signed with the device's real keys.
//!
//! What it is not: a replica. It never takes in what it is sent (it only
//! counts it), so every attack is built on the state the device had when its
//! daemon stopped, and it never ingests its own envelopes (so two crafted at
//! one slot are an equivocation).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use coffer_crdt::envelope::ENVELOPE_VERSION;
use coffer_crdt::folder::actor_for;
use coffer_crdt::{
    ChangeHeader, DeviceId, DeviceKeys, Envelope, EnvelopeBody, EnvelopeId, FolderDoc, ItemEdit,
    ItemId, ItemType, Kind, Space, SpaceId,
};
use coffer_daemon::keystore::KdfParams;
use coffer_daemon::net::protocol::{
    read_message, write_message, Message, MAX_BATCH_ENVELOPES, NOISE_PROLOGUE, PROTOCOL_NAME,
    TARGET_BATCH_BYTES,
};
use coffer_daemon::vault::{Now, Vault};
use futures::{AsyncWriteExt, StreamExt};
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, Multiaddr, StreamProtocol};
use rand::RngCore;
use tokio::runtime::Runtime;

use crate::{KDF_ITERATIONS, KDF_MEMORY_KIB};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
}

/// A taken-over device: its vault (unlocked) and a runtime for its links.
pub struct Hostile {
    vault: Vault,
    pub keys: DeviceKeys,
    transport_seed: [u8; 32],
    rt: Arc<Runtime>,
}

/// What an honest daemon did on one link, as seen by the hostile peer.
#[derive(Clone, Debug, Default)]
pub struct LinkState {
    /// Messages read from the daemon's stream.
    pub messages: usize,
    /// Envelopes among them.
    pub envelopes: usize,
    /// `Error` messages: code and text.
    pub errors: Vec<String>,
    /// The connection closed.
    pub closed: bool,
}

/// One connection to an honest daemon with the hostile device's identity,
/// and the stream it writes to.
pub struct Link {
    out: libp2p::Stream,
    state: Arc<Mutex<LinkState>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    rt: Arc<Runtime>,
}

impl Hostile {
    /// Opens the (stopped) device's data dir with `pin`.
    pub fn open(data_dir: &Path, pin: &str) -> Hostile {
        let kdf = KdfParams {
            memory_kib: KDF_MEMORY_KIB.parse().expect("a number"),
            iterations: KDF_ITERATIONS.parse().expect("a number"),
            ..KdfParams::default()
        };
        let mut vault = Vault::open(data_dir, kdf).expect("open the device's vault");
        vault
            .unlock(pin, Now { unix_ms: now_ms() })
            .expect("unlock the device's vault with its PIN");
        let seed = vault
            .network_secret()
            .expect("read the transport key")
            .expect("the device has a transport key");
        let keys = vault
            .replica()
            .expect("initialised")
            .keys_for_reload()
            .expect("unlocked")
            .clone();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        Hostile {
            vault,
            keys,
            transport_seed: *seed,
            rt: Arc::new(rt),
        }
    }

    pub fn device(&self) -> DeviceId {
        self.keys.device_id()
    }

    /// The device's replica, as it left it.
    pub fn replica(&self) -> &coffer_crdt::Replica {
        self.vault.replica().expect("initialised")
    }

    /// A copy of one of the device's spaces as it left it.
    pub fn space(&self, id: &SpaceId) -> Space {
        self.replica()
            .space(id)
            .unwrap_or_else(|| panic!("the device holds space {}", id.short()))
            .clone()
    }

    /// The `Hello` this device's replica sends `peer` (true summaries of
    /// the spaces they share).
    pub fn hello_for(&mut self, peer: DeviceId) -> Message {
        let replica = self.vault.replica_mut().expect("initialised");
        replica.peer_connected(peer);
        let hello = replica.poll_transmit(&peer).expect("a first message");
        assert!(matches!(hello, Message::Hello { .. }), "{hello:?}");
        replica.peer_disconnected(&peer);
        hello
    }

    /// Dials `addr` as the device (its transport key) and opens the sync
    /// stream; panics if the daemon does not take the connection.
    pub fn connect(&self, addr: &Multiaddr) -> Link {
        let id = libp2p::identity::Keypair::ed25519_from_bytes(self.transport_seed)
            .expect("an Ed25519 seed");
        let addr = addr.clone();
        let rt = self.rt.clone();
        let state = Arc::new(Mutex::new(LinkState::default()));
        let st = state.clone();
        let (out, tasks) = rt.block_on(async move {
            let mut swarm = libp2p::SwarmBuilder::with_existing_identity(id)
                .with_tokio()
                .with_tcp(
                    tcp::Config::default(),
                    |k: &libp2p::identity::Keypair| {
                        noise::Config::new(k).map(|c| c.with_prologue(NOISE_PROLOGUE.to_vec()))
                    },
                    yamux::Config::default,
                )
                .expect("tcp transport")
                .with_behaviour(|_| libp2p_stream::Behaviour::new())
                .expect("behaviour")
                .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
                .build();
            let mut control = swarm.behaviour().new_control();
            let proto = StreamProtocol::new(PROTOCOL_NAME);
            let mut incoming = control.accept(proto.clone()).expect("accept once");
            swarm.dial(addr.clone()).expect("dial");
            let peer = tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    match swarm.select_next_some().await {
                        SwarmEvent::ConnectionEstablished { peer_id, .. } => return peer_id,
                        SwarmEvent::OutgoingConnectionError { error, .. } => {
                            panic!("dialling {addr} failed: {error}")
                        }
                        _ => {}
                    }
                }
            })
            .await
            .expect("connected within 10 s");
            let closed = st.clone();
            let driver = tokio::spawn(async move {
                loop {
                    if let SwarmEvent::ConnectionClosed {
                        num_established: 0, ..
                    } = swarm.select_next_some().await
                    {
                        closed.lock().expect("state").closed = true;
                    }
                }
            });
            let reader_state = st.clone();
            let reader = tokio::spawn(async move {
                let Some((_, mut inbound)) = incoming.next().await else {
                    return;
                };
                while let Ok(Some((msg, _))) = read_message(&mut inbound).await {
                    let mut s = reader_state.lock().expect("state");
                    s.messages += 1;
                    match msg {
                        Message::Envelopes { envelopes, .. } => s.envelopes += envelopes.len(),
                        Message::Error { code, text } => s.errors.push(format!("{code:?}: {text}")),
                        _ => {}
                    }
                }
            });
            let out =
                tokio::time::timeout(Duration::from_secs(10), control.open_stream(peer, proto))
                    .await
                    .expect("the daemon accepts a sync stream within 10 s")
                    .expect("the daemon accepts a sync stream");
            (out, vec![driver, reader])
        });
        Link {
            out,
            state,
            tasks,
            rt,
        }
    }

    /// Next free slot of this device's chain in `space`: (seq, prev).
    pub fn next_slot(&self, space: &Space) -> (u64, Option<EnvelopeId>) {
        let me = self.device();
        space
            .chain_heads()
            .get(&(space.id(), me))
            .and_then(|heads| heads.iter().max_by_key(|h| h.seq))
            .map_or((1, None), |h| (h.seq + 1, Some(h.id)))
    }

    /// Signs an envelope of `kind` in `space` at (seq, prev), citing the
    /// control heads the device saw; `plain` is encrypted under the current
    /// epoch's key (which the device must hold) unless `kind` is a control op.
    #[allow(clippy::too_many_arguments)]
    pub fn envelope(
        &self,
        space: &Space,
        seq: u64,
        prev: Option<EnvelopeId>,
        kind: Kind,
        change: Option<ChangeHeader>,
        plain: &[u8],
    ) -> Envelope {
        let me = self.device();
        let (epoch, payload) = match kind {
            Kind::Content | Kind::Usage => {
                let epoch = space.current_epoch().expect("the folder has a key");
                let key = space
                    .epoch_key(&self.keys, &epoch)
                    .expect("the device holds the folder's current key");
                let aad = EnvelopeBody::payload_aad(&space.id(), &me, seq, kind);
                (
                    Some(epoch),
                    key.encrypt(plain, &aad, &mut rand::rngs::OsRng),
                )
            }
            _ => (None, plain.to_vec()),
        };
        Envelope::sign(
            EnvelopeBody {
                version: ENVELOPE_VERSION,
                space: space.id(),
                author: me,
                seq,
                prev,
                kind,
                context: space.control_heads().to_vec(),
                epoch,
                change,
                payload,
            },
            &self.keys,
        )
    }

    /// The folder's document as the device reads it, set to write as the
    /// device's current incarnation.
    pub fn doc_of(&self, space: &Space) -> FolderDoc {
        let me = self.device();
        let mut doc = FolderDoc::with_incarnation(me, space.incarnation(&me));
        for env in space.accepted_content() {
            if let Ok(plain) = space.open(&self.keys, env) {
                let _ = doc.apply_change(&env.author(), &plain);
            }
        }
        doc
    }

    /// A content envelope adding a login item `name` at (seq, prev): a
    /// well-formed change on the folder's current document, with a true
    /// header (incarnation, Automerge seq, deps).
    pub fn item_envelope(
        &self,
        space: &Space,
        seq: u64,
        prev: Option<EnvelopeId>,
        name: &str,
        password: &str,
    ) -> Envelope {
        let mut doc = self.doc_of(space);
        let mut id = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut id);
        let edit = ItemEdit {
            name: None,
            fields: [("password".to_string(), password.to_string())].into(),
            urls: None,
        };
        let change = doc
            .add_item(ItemId(id), ItemType::Login, name, &edit, now_ms())
            .expect("an item change");
        let header = self.header_of(space, &change);
        self.envelope(space, seq, prev, Kind::Content, Some(header), &change)
    }

    /// The true header of `change` in `space` (or, when the device's own
    /// view refuses it, one that claims the current incarnation and no deps).
    pub fn header_of(&self, space: &Space, change: &[u8]) -> ChangeHeader {
        let mut s = space.clone();
        s.learn_metas(&self.keys);
        s.change_header(&self.keys, change)
            .unwrap_or_else(|_| ChangeHeader {
                incarnation: space.incarnation(&self.device()),
                seq: 1,
                deps: vec![],
            })
    }

    /// A valid Automerge change on the folder's document that nests
    /// `depth` maps under the root key `junk` (not an item).
    pub fn nested_change(&self, space: &Space, depth: usize) -> Vec<u8> {
        use automerge::transaction::{CommitOptions, Transactable};
        let me = self.device();
        let mut doc = self.doc_of(space);
        let saved = doc.save();
        let mut am = automerge::AutoCommit::load(&saved).expect("load the folder document");
        am.set_actor(actor_for(&me, space.incarnation(&me)));
        let mut obj = am
            .put_object(automerge::ROOT, "junk", automerge::ObjType::Map)
            .expect("put");
        for _ in 0..depth {
            obj = am
                .put_object(&obj, "n", automerge::ObjType::Map)
                .expect("put");
        }
        let hash = am
            .commit_with(CommitOptions::default().with_time(now_ms()))
            .expect("a change");
        let mut change = am.get_change_by_hash(&hash).expect("the change just made");
        change.bytes().into_owned()
    }

    /// A random envelope id (nobody holds it).
    pub fn random_id() -> EnvelopeId {
        let mut id = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut id);
        EnvelopeId(id)
    }
}

/// An Automerge change chunk whose action column claims 2^40 ops (a few
/// bytes; as in the crdt simulator's adversary).
pub fn op_count_bomb() -> Vec<u8> {
    let mut body = vec![0u8, 16];
    body.extend([7u8; 16]);
    body.extend([1, 1, 0, 0, 0]);
    body.extend([1, 0x42]);
    let action = [0x80u8, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0x01];
    body.push(action.len() as u8);
    body.extend(action);
    let mut chunk = vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 1, body.len() as u8];
    chunk.extend(body);
    chunk
}

/// A compressed Automerge change chunk (type 2) whose DEFLATE body inflates
/// to `inflated` bytes.
pub fn inflation_bomb(inflated: usize) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    let mut left = inflated;
    while left > 0 {
        let n = left.min(zeros.len());
        z.write_all(&zeros[..n]).expect("deflate");
        left -= n;
    }
    let deflated = z.finish().expect("deflate");
    let mut chunk = vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 2];
    let mut n = deflated.len();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            chunk.push(byte);
            break;
        }
        chunk.push(byte | 0x80);
    }
    chunk.extend(deflated);
    chunk
}

impl Link {
    /// Writes one message; `Err` once the daemon closed the stream.
    pub fn send(&mut self, msg: &Message) -> Result<usize, String> {
        let rt = self.rt.clone();
        rt.block_on(write_message(&mut self.out, msg))
            .map_err(|e| e.to_string())
    }

    /// Writes raw bytes (a frame the framing would refuse to make).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), String> {
        let rt = self.rt.clone();
        rt.block_on(async {
            self.out.write_all(bytes).await?;
            self.out.flush().await
        })
        .map_err(|e| e.to_string())
    }

    /// Sends `envs` of `space` in batches cut like the daemon's (at ~1 MiB
    /// or [`MAX_BATCH_ENVELOPES`]), then `Caught`.
    pub fn send_envelopes(&mut self, space: SpaceId, envs: &[Envelope]) -> Result<(), String> {
        let mut batch: Vec<Vec<u8>> = Vec::new();
        let mut bytes = 0;
        for env in envs {
            if !batch.is_empty()
                && (bytes + env.wire_len() > TARGET_BATCH_BYTES
                    || batch.len() == MAX_BATCH_ENVELOPES)
            {
                self.send(&Message::Envelopes {
                    space,
                    envelopes: std::mem::take(&mut batch),
                })?;
                bytes = 0;
            }
            bytes += env.wire_len();
            batch.push(env.to_bytes());
        }
        if !batch.is_empty() {
            self.send(&Message::Envelopes {
                space,
                envelopes: batch,
            })?;
        }
        self.send(&Message::Caught { space }).map(|_| ())
    }

    /// What the daemon did so far.
    pub fn state(&self) -> LinkState {
        self.state.lock().expect("state").clone()
    }

    /// Waits up to `timeout` for the daemon to close the connection.
    pub fn wait_closed(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if self.state().closed {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.state().closed
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
