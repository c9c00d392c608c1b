//! Sync hello bytes at company scale (issue 18): an admin's device and a
//! user's, in a team, `HELLO_FOLDERS` folders (default 300) shared with
//! the user, `HELLO_WRITERS` devices of the team having written in each
//! (default 2: the admin and the user), synced. Then the two reconnect
//! three times — in sync, after one folder changed, and after every folder
//! changed — over `/coffer/sync/2` (today's `Hello`, every head) and over
//! `/coffer/sync/3` (`HelloDigest`; heads only for spaces that differ),
//! and each connection's bytes are printed: the hellos, and everything
//! the two sent until both were quiet, counted as `cofferd` frames them
//! (a 4-byte length and the postcard bytes of the message). The replicas
//! are in one process; no network.
//!
//! Run: `cargo bench -p coffer-crdt --bench hello` (env `HELLO_FOLDERS`).

// A benchmark reads the clock to measure; the crdt library never does.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::time::Instant;

use coffer_crdt::folder::ItemType;
use coffer_crdt::ops::{Principal, UserId};
use coffer_crdt::replica::{NewItemSpec, ShareChange, SyncMessage, SyncWire};
use coffer_crdt::{DeviceId, Role};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

mod support;
use support::{joiner, Device};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Device {
    fn id(&self) -> DeviceId {
        self.keys.device_id()
    }

    fn add(&mut self, folder: &str, name: &str, rng: &mut ChaCha20Rng) {
        self.replica
            .add_item(
                NewItemSpec {
                    folder: Some(folder.into()),
                    item_type: ItemType::Login,
                    name: name.into(),
                    fields: [("password".to_string(), format!("pw-{name}"))].into(),
                    urls: vec![],
                },
                4,
                rng,
            )
            .unwrap();
        self.drain();
    }
}

/// The bytes `cofferd` puts on the stream for `msg`.
fn frame_len(msg: &SyncMessage) -> usize {
    4 + postcard::to_stdvec(msg).expect("encodes").len()
}

/// What one connection cost.
#[derive(Default)]
struct Bytes {
    hello: usize,
    total: usize,
    /// Chain heads sent (in hellos, summaries and tips).
    tips: usize,
    messages: BTreeMap<&'static str, usize>,
    /// Bytes per kind of message.
    bytes: BTreeMap<&'static str, usize>,
}

fn kind(msg: &SyncMessage) -> &'static str {
    match msg {
        SyncMessage::Hello { .. } => "hello",
        SyncMessage::HelloDigest { .. } => "hello-digest",
        SyncMessage::Summary { .. } => "summary",
        SyncMessage::SpaceDigests { .. } => "space-digests",
        SyncMessage::Tips { .. } => "tips",
        SyncMessage::Envelopes { .. } => "envelopes",
        SyncMessage::Caught { .. } => "caught",
        SyncMessage::AuditHeads { .. } => "audit-heads",
        _ => "other",
    }
}

/// One message from `from` to `to`, if it has one; counted in `out`.
fn step(from: &mut Device, to: &mut Device, out: &mut Bytes, rng: &mut ChaCha20Rng) -> bool {
    let (from_id, to_id) = (from.id(), to.id());
    let Some(m) = from.replica.poll_transmit(&to_id) else {
        return false;
    };
    let n = frame_len(&m);
    out.total += n;
    if matches!(
        m,
        SyncMessage::Hello { .. } | SyncMessage::HelloDigest { .. }
    ) {
        out.hello += n;
    }
    if let SyncMessage::Hello { spaces, .. }
    | SyncMessage::Summary { spaces }
    | SyncMessage::Tips { spaces } = &m
    {
        out.tips += spaces.iter().map(|s| s.tips.len()).sum::<usize>();
    }
    *out.messages.entry(kind(&m)).or_default() += 1;
    *out.bytes.entry(kind(&m)).or_default() += n;
    from.drain();
    to.replica.handle_message(from_id, m, rng).expect("honest");
    to.drain();
    true
}

/// Connects `a` and `b` over `wire` until both are quiet; returns the bytes.
fn connect(a: &mut Device, b: &mut Device, wire: SyncWire, rng: &mut ChaCha20Rng) -> Bytes {
    let (ia, ib) = (a.id(), b.id());
    a.replica.peer_connected_on(ib, wire);
    b.replica.peer_connected_on(ia, wire);
    let mut out = Bytes::default();
    loop {
        let ab = step(a, b, &mut out, rng);
        let ba = step(b, a, &mut out, rng);
        if !ab && !ba {
            break;
        }
    }
    a.replica.peer_disconnected(&ib);
    b.replica.peer_disconnected(&ia);
    out
}

fn main() {
    let folders = env("HELLO_FOLDERS", 300);
    let mut rng = ChaCha20Rng::seed_from_u64(18);
    let started = Instant::now();
    let mut ada = Device::new("ada", &mut rng);
    let mut bob = Device::new("bob", &mut rng);
    ada.replica.create_team("Company", 1, &mut rng).unwrap();
    let team = ada.replica.team_id().unwrap();
    let user = UserId::new("bob@bench.test").unwrap();
    let j = joiner(&bob, &team, &user);
    ada.replica
        .admit(
            Some("bob@bench.test"),
            &j,
            &[],
            false,
            Some(("Bob", 2)),
            &mut rng,
        )
        .unwrap();
    ada.drain();
    bob.replica
        .adopt_team(team, ada.replica.roster_envelopes())
        .unwrap();
    bob.drain();
    let names: Vec<String> = (0..folders).map(|i| format!("F{i:03}")).collect();
    for f in &names {
        ada.replica.create_folder(f, 3, &mut rng).unwrap();
        ada.replica
            .folder_share(
                f,
                Principal::User(user.clone()),
                ShareChange::Share(Role::Editor),
                &mut rng,
            )
            .unwrap();
        ada.drain();
        ada.add(f, &format!("{f}-ada"), &mut rng);
    }
    connect(&mut ada, &mut bob, SyncWire::V2, &mut rng);
    for f in &names {
        bob.add(f, &format!("{f}-bob"), &mut rng);
    }
    connect(&mut ada, &mut bob, SyncWire::V2, &mut rng);
    let shared = ada.replica.shared_with(&bob.id()).len();
    eprintln!(
        "built {folders} folders ({shared} spaces shared, roster included) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!(
        "| connection | wire | hello bytes (both) | tips sent | all bytes until quiet | messages |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut n = 0;
    for (what, change) in [
        ("in sync", 0usize),
        ("one folder changed", 1),
        ("every folder changed", folders),
    ] {
        for wire in [SyncWire::V2, SyncWire::V3] {
            for f in names.iter().take(change) {
                n += 1;
                ada.add(f, &format!("{f}-more{n}"), &mut rng);
            }
            let t = Instant::now();
            let b = connect(&mut ada, &mut bob, wire, &mut rng);
            let elapsed = t.elapsed();
            println!(
                "| {what} | {} | {} | {} | {} | {:?} ({:.0} ms) | {:?} |",
                wire.protocol_name(),
                b.hello,
                b.tips,
                b.total,
                b.messages,
                elapsed.as_secs_f64() * 1e3,
                b.bytes
            );
        }
    }
}
