//! One relay serving many teams (issue 16): 100 teams × 5 devices (an
//! admin and four users, one shared folder of 20 items per team), every
//! device syncing with one `Relay` over the real sync messages. Reports the
//! CPU time spent inside the relay's calls (connect, handle, poll), the
//! process's resident memory before and after the relay took every team,
//! the bytes it holds, and how long loading it back from its store takes.
//! The devices are whole `Replica`s in the same process (the clients are
//! simulated; no network): see bench/relay_bench.sh for real daemons.
//!
//! Run: `cargo bench -p coffer-crdt --bench relay` (env TEAMS, DEVICES, ITEMS).

// A benchmark reads the clock to measure; the crdt library never does.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use coffer_crdt::folder::ItemType;
use coffer_crdt::ops::{Principal, UserId};
use coffer_crdt::replica::relay::{Relay, RelayLimits};
use coffer_crdt::replica::{Effect, NewItemSpec, Persist, ShareChange, StoredSpace};
use coffer_crdt::{DeviceId, Role};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

mod support;
use support::{joiner, Device};

const RELAY: [u8; 32] = [0xAB; 32];

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

impl Device {
    fn handle(&self) -> DeviceId {
        DeviceId(self.replica.identity().transport)
    }
}

/// A team of `devices` (device 0 the admin), a folder shared with all with
/// `items` items, and the relay added.
fn team(t: usize, devices: usize, items: usize, rng: &mut ChaCha20Rng) -> Vec<Device> {
    let mut ds: Vec<Device> = (0..devices)
        .map(|i| Device::new(&format!("t{t}d{i}"), rng))
        .collect();
    ds[0]
        .replica
        .create_team(&format!("Team {t}"), 1, rng)
        .unwrap();
    let team = ds[0].replica.team_id().unwrap();
    for i in 1..devices {
        let email = format!("t{t}d{i}@bench.test");
        let user = UserId::new(&email).unwrap();
        let j = joiner(&ds[i], &team, &user);
        ds[0]
            .replica
            .admit(Some(&email), &j, &[], false, Some(("n", 2)), rng)
            .unwrap();
    }
    ds[0].replica.create_folder("Ops", 3, rng).unwrap();
    for i in 1..devices {
        let user = UserId::new(&format!("t{t}d{i}@bench.test")).unwrap();
        ds[0]
            .replica
            .folder_share(
                "Ops",
                Principal::User(user),
                ShareChange::Share(Role::Editor),
                rng,
            )
            .unwrap();
    }
    for n in 0..items {
        ds[0]
            .replica
            .add_item(
                NewItemSpec {
                    folder: Some("Ops".into()),
                    item_type: ItemType::Login,
                    name: format!("item{n}"),
                    fields: [("password".to_string(), format!("pw{n}"))].into(),
                    urls: vec![],
                },
                4,
                rng,
            )
            .unwrap();
    }
    ds[0]
        .replica
        .add_relay(RELAY, vec!["/ip4/127.0.0.1/tcp/1".into()], rng)
        .unwrap();
    ds[0].drain();
    // The others join with the roster as it is now (relay included); the
    // folder reaches them through the relay only.
    let roster = ds[0].replica.roster_envelopes();
    for d in ds.iter_mut().skip(1) {
        d.replica.adopt_team(team, roster.clone()).unwrap();
        d.drain();
    }
    ds
}

/// What the relay persisted (as its store would hold it).
fn persist(relay: &mut Relay, into: &mut Vec<StoredSpace>, bytes: &mut u64) {
    while let Some(e) = relay.poll_effect() {
        if let Effect::Persist(Persist::Envelopes {
            space,
            kind,
            team,
            envelopes,
        }) = e
        {
            *bytes += envelopes.iter().map(|e| e.wire_len() as u64).sum::<u64>();
            match into.iter_mut().find(|s| s.id == space) {
                Some(s) => s.envelopes.extend(envelopes),
                None => into.push(StoredSpace {
                    id: space,
                    kind,
                    team,
                    envelopes,
                    snapshot: None,
                }),
            }
        }
    }
}

/// One session between a device and the relay until both are quiet; the
/// time spent in the relay's calls is added to `relay_cpu`.
fn session(
    d: &mut Device,
    relay: &mut Relay,
    store: &mut Vec<StoredSpace>,
    bytes: &mut u64,
    relay_cpu: &mut Duration,
    rng: &mut ChaCha20Rng,
) {
    let rid = DeviceId(RELAY);
    let h = d.handle();
    d.replica.peer_connected(rid);
    let t = Instant::now();
    relay.peer_connected(h);
    *relay_cpu += t.elapsed();
    loop {
        let mut moved = false;
        if let Some(m) = d.replica.poll_transmit(&rid) {
            moved = true;
            let t = Instant::now();
            relay.handle_message(h, m, rng).expect("an honest device");
            *relay_cpu += t.elapsed();
        }
        d.drain();
        let t = Instant::now();
        let m = relay.poll_transmit(&h);
        persist(relay, store, bytes);
        *relay_cpu += t.elapsed();
        if let Some(m) = m {
            moved = true;
            d.replica
                .handle_message(rid, m, rng)
                .expect("an honest relay");
            d.drain();
        }
        if !moved {
            break;
        }
    }
    d.replica.peer_disconnected(&rid);
    relay.peer_disconnected(&h);
}

type Dump = Vec<(
    coffer_crdt::SpaceId,
    bool,
    Option<coffer_crdt::SpaceId>,
    Vec<Vec<u8>>,
)>;

/// In a fresh process: the relay loaded from a dumped store, with the
/// resident memory it takes (the other measurements share the process
/// with the simulated clients).
fn load_only(path: &str) {
    let bytes = std::fs::read(path).expect("the dumped store");
    let dump: Dump = postcard::from_bytes(&bytes).expect("a dump");
    drop(bytes);
    let stored: Vec<StoredSpace> = dump
        .into_iter()
        .map(|(id, roster, team, envs)| StoredSpace {
            id,
            kind: if roster {
                coffer_crdt::replica::SpaceKind::Roster
            } else {
                coffer_crdt::replica::SpaceKind::Folder
            },
            team,
            envelopes: envs
                .iter()
                .map(|b| coffer_crdt::Envelope::decode(b).expect("an envelope"))
                .collect(),
            snapshot: None,
        })
        .collect();
    let before = rss_kib();
    let t = Instant::now();
    let relay = Relay::load(RELAY, stored, RelayLimits::default());
    let took = t.elapsed();
    let after = rss_kib();
    println!(
        "relay alone (fresh process): {} teams loaded in {took:.2?}; RSS {} -> {} MiB (+{} MiB, envelopes included)",
        relay.status().teams.len(),
        before / 1024,
        after / 1024,
        after.saturating_sub(before) / 1024
    );
}

fn main() {
    if let Ok(path) = std::env::var("RELAY_BENCH_LOAD") {
        return load_only(&path);
    }
    let teams = env("TEAMS", 100);
    let devices = env("DEVICES", 5);
    let items = env("ITEMS", 20);
    let mut rng = ChaCha20Rng::seed_from_u64(16);
    let built = Instant::now();
    let mut all: Vec<Vec<Device>> = (0..teams)
        .map(|t| team(t, devices, items, &mut rng))
        .collect();
    println!(
        "relay bench: {teams} teams x {devices} devices, {items} items each: clients built in {:.1?}",
        built.elapsed()
    );
    let rss_before = rss_kib();
    let mut relay = Relay::load(RELAY, Vec::new(), RelayLimits::default());
    for t in &all {
        relay.accept_team(t[0].replica.team_id().expect("a team"));
    }
    let mut store = Vec::new();
    let mut bytes = 0u64;
    let mut cpu = Duration::ZERO;
    let wall = Instant::now();
    // Every device once (the admin first: it brings the team), then every
    // device again (each gets what the others sent after it).
    for round in 0..2 {
        for team in all.iter_mut() {
            for d in team.iter_mut() {
                session(d, &mut relay, &mut store, &mut bytes, &mut cpu, &mut rng);
            }
        }
        let status = relay.status();
        println!(
            "round {round}: {} teams held, {} envelopes, {} KiB",
            status.teams.len(),
            status.teams.iter().map(|t| t.envelopes).sum::<usize>(),
            status.teams.iter().map(|t| t.bytes).sum::<u64>() / 1024
        );
    }
    let rss_after = rss_kib();
    let status = relay.status();
    assert_eq!(status.teams.len(), teams);
    println!(
        "relay: {} sessions, CPU in the relay's calls {:.2?} ({:.2?} per session), wall {:.2?} with the clients",
        2 * teams * devices,
        cpu,
        cpu / (2 * teams * devices) as u32,
        wall.elapsed()
    );
    println!(
        "relay: holds {} envelopes, {} KiB; process RSS {} -> {} MiB (+{} MiB: the relay and the folders the clients received)",
        status.teams.iter().map(|t| t.envelopes).sum::<usize>(),
        bytes / 1024,
        rss_before / 1024,
        rss_after / 1024,
        rss_after.saturating_sub(rss_before) / 1024
    );
    drop(relay);
    let dump: Dump = store
        .iter()
        .map(|s| {
            (
                s.id,
                s.kind == coffer_crdt::replica::SpaceKind::Roster,
                s.team,
                s.envelopes.iter().map(|e| e.to_bytes()).collect(),
            )
        })
        .collect();
    let path = std::env::temp_dir().join(format!("coffer-relay-bench-{}.bin", std::process::id()));
    std::fs::write(&path, postcard::to_stdvec(&dump).expect("a dump")).expect("write the dump");
    let child = std::process::Command::new(std::env::current_exe().expect("this bench"))
        .env("RELAY_BENCH_LOAD", &path)
        .output()
        .expect("run the load in a fresh process");
    print!("{}", String::from_utf8_lossy(&child.stdout));
    let _ = std::fs::remove_file(&path);
    let t = Instant::now();
    let loaded = Relay::load(RELAY, store, RelayLimits::default());
    println!(
        "relay: loaded back from its store in {:.2?} ({} teams)",
        t.elapsed(),
        loaded.status().teams.len()
    );
    // Every device holds every item through the relay alone.
    for team in &all {
        for d in team.iter().skip(1) {
            let n = d
                .replica
                .items(Some("Ops"), false)
                .map(|l| l.len())
                .unwrap_or(0);
            assert_eq!(n, items, "a device got every item through the relay");
        }
    }
    drop(all.drain(..));
}
