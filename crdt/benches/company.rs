//! A company-sized team (issue 18): 1,000 users with 3,000 devices in 30
//! groups, 300 shared folders each granted to groups and users, built
//! through `Space` with real signatures, device proofs and key wraps
//! (sealed boxes) from a seeded rng, then timed as a new device meets it:
//! the roster's first evaluation, one folder's (its membership ops judged
//! with the whole roster), every folder's, and one more roster op judged
//! by the roster and then by every folder of the team (as
//! `Replica::spread_roster` does).
//!
//! Run: `cargo bench -p coffer-crdt --bench company`
//! (`COMPANY_FOLDERS=30` for a smaller run; `COMPANY_RUNS` the repeats
//! of the short measures, median printed).
//!
//! Not criterion: the whole-team measures take minutes each, so each is
//! run the given number of times and printed with its median.

#![allow(clippy::disallowed_methods)] // a benchmark reads the clock

use std::time::{Duration, Instant};

use coffer_crdt::ops::{Principal, Role, RosterOp, UserId};
use coffer_crdt::{DeviceKeys, Envelope, FolderKey, Space};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

const USERS: usize = 1_000;
const DEVICES_PER_USER: usize = 3;
const GROUPS: usize = 30;
const ADMINS: usize = 5;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn user(i: usize) -> UserId {
    UserId::new(&format!("user{i}@company.test")).expect("a valid user id")
}

struct Company {
    roster: Vec<Envelope>,
    /// Each folder's own envelopes (membership ops), the roster apart.
    folders: Vec<Vec<Envelope>>,
    team: coffer_crdt::SpaceId,
    /// The roster space as its admin holds it, for "one more op".
    admin_roster: Space,
    admin: DeviceKeys,
    second_admin: DeviceKeys,
}

fn generate(folders: usize) -> Company {
    let started = Instant::now();
    let mut rng = ChaCha20Rng::seed_from_u64(18);
    let admin = DeviceKeys::generate(&mut rng);
    let (mut roster, _) =
        Space::create_team(&admin, user(0), "Company", [1; 32], &mut rng).expect("a team");
    let team = roster.id();
    let op = |space: &mut Space, keys: &DeviceKeys, op: RosterOp| {
        space.roster_op(keys, op).expect("an admin's roster op");
    };
    op(
        &mut roster,
        &admin,
        RosterOp::NameUser {
            user: user(0),
            name: "User 0".into(),
            joined_ms: 0,
        },
    );
    for g in 0..GROUPS {
        op(
            &mut roster,
            &admin,
            RosterOp::CreateGroup {
                group: format!("dept{g}"),
            },
        );
    }
    let mut admins = vec![admin.clone()];
    for i in 0..USERS {
        if i > 0 {
            op(&mut roster, &admin, RosterOp::AddUser { user: user(i) });
            op(
                &mut roster,
                &admin,
                RosterOp::NameUser {
                    user: user(i),
                    name: format!("User {i}"),
                    joined_ms: i as i64,
                },
            );
        }
        let first = if i == 0 { 1 } else { 0 };
        for d in first..DEVICES_PER_USER {
            let device = DeviceKeys::generate(&mut rng);
            let mut seed = [0u8; 32];
            rng.fill_bytes(&mut seed);
            op(
                &mut roster,
                &admin,
                RosterOp::add_device(&team, user(i), &device, &seed),
            );
            op(
                &mut roster,
                &admin,
                RosterOp::NameDevice {
                    device: device.device_id(),
                    name: format!("laptop {i}.{d}"),
                },
            );
            if i > 0 && i < ADMINS && d == 0 {
                admins.push(device);
            }
        }
        if i > 0 && i < ADMINS {
            op(&mut roster, &admin, RosterOp::AddAdmin { user: user(i) });
        }
        op(
            &mut roster,
            &admin,
            RosterOp::AddToGroup {
                group: format!("dept{}", i % GROUPS),
                user: user(i),
            },
        );
        if i % 3 == 0 {
            // A third of the company is in a second group too.
            op(
                &mut roster,
                &admin,
                RosterOp::AddToGroup {
                    group: format!("dept{}", (i / 3 + 7) % GROUPS),
                    user: user(i),
                },
            );
        }
    }
    let roster_ops = roster.held().count();
    eprintln!(
        "generated the roster: {roster_ops} ops in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut own = Vec::with_capacity(folders);
    let mut membership_ops = 0;
    for f in 0..folders {
        let founder = &admins[f % admins.len()];
        let key = FolderKey::generate(&mut rng);
        let (mut space, genesis) =
            Space::create_in_team(founder, &key, Some(&roster), &mut rng).expect("a folder");
        let mut ops = vec![genesis];
        // Two departments use it, one of them writes; a manager and a
        // few named people from elsewhere.
        let grants = [
            (
                Principal::Group(format!("dept{}", f % GROUPS)),
                Role::Editor,
            ),
            (
                Principal::Group(format!("dept{}", (f * 7 + 3) % GROUPS)),
                Role::Member,
            ),
            (
                Principal::User(user(ADMINS + (f * 13) % (USERS - ADMINS))),
                Role::Manager,
            ),
            (
                Principal::User(user(ADMINS + (f * 17 + 1) % (USERS - ADMINS))),
                Role::Editor,
            ),
            (
                Principal::User(user(ADMINS + (f * 19 + 2) % (USERS - ADMINS))),
                Role::Member,
            ),
            (
                Principal::User(user(ADMINS + (f * 23 + 3) % (USERS - ADMINS))),
                Role::Member,
            ),
            (
                Principal::User(user(ADMINS + (f * 29 + 4) % (USERS - ADMINS))),
                Role::Member,
            ),
        ];
        for (principal, role) in grants {
            match space.grant(founder, principal, role, None, Some(&key), &mut rng) {
                Ok(env) => ops.push(env),
                // Two draws may name one user: a repeated grant is refused.
                Err(e) => eprintln!("folder {f}: grant refused: {e}"),
            }
        }
        membership_ops += ops.len();
        own.push(ops);
        if (f + 1) % 50 == 0 {
            eprintln!(
                "  {} folders, {:.1} s",
                f + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    eprintln!(
        "generated {folders} folders: {membership_ops} membership ops; {} control ops in all; {:.1} s",
        roster_ops + membership_ops,
        started.elapsed().as_secs_f64()
    );
    Company {
        roster: roster.held().cloned().collect(),
        folders: own,
        team,
        admin_roster: roster,
        admin,
        second_admin: admins[1].clone(),
    }
}

/// As received from the network: decoded, signatures not yet verified.
fn fresh(envs: &[Envelope]) -> Vec<Envelope> {
    envs.iter()
        .map(|e| Envelope::decode(&e.to_bytes()).expect("own envelopes decode"))
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn report(what: &str, runs: Vec<Duration>) {
    let all: Vec<String> = runs
        .iter()
        .map(|d| format!("{:.1}", d.as_secs_f64() * 1e3))
        .collect();
    println!(
        "{what}: median {:.2} ms (runs: {} ms)",
        median(runs).as_secs_f64() * 1e3,
        all.join(", ")
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let folders = env_or("COMPANY_FOLDERS", 300);
    let runs = env_or("COMPANY_RUNS", 5).max(1);
    let c = generate(folders);

    let times = (0..runs)
        .map(|_| {
            let envs = fresh(&c.roster);
            let t = Instant::now();
            let mut s = Space::new_roster(c.team);
            s.ingest_batch(envs);
            let d = t.elapsed();
            assert!(s.state().team.users.len() >= USERS);
            d
        })
        .collect();
    report(
        &format!(
            "roster: first evaluation of {} ops, signatures verified",
            c.roster.len()
        ),
        times,
    );

    // As `Replica::load` does: the roster's envelopes decoded and checked
    // once, shared by the roster and every folder of the team.
    let shared = fresh(&c.roster);
    let mut loaded = Space::new_roster(c.team);
    loaded.ingest_batch(shared.clone());
    let judgements = loaded.roster_judgements().expect("a roster");
    let folder_of = |f: usize| {
        let mut envs = fresh(&c.folders[f]);
        envs.extend(shared.iter().cloned());
        envs
    };
    for share in [false, true] {
        let times = (0..runs)
            .map(|_| {
                let envs = folder_of(0);
                let t = Instant::now();
                let mut s = Space::new_in_team(c.folders[0][0].space(), Some(c.team));
                if share {
                    s.share_roster_judgements(&judgements);
                }
                s.ingest_batch(envs);
                let d = t.elapsed();
                assert!(s.members().len() > 10);
                d
            })
            .collect();
        let how = if share {
            "the roster's judgements shared, as Replica::load does"
        } else {
            "every roster op judged again"
        };
        report(&format!("one folder: first evaluation ({how})"), times);
    }

    // Every folder, as a new admin device that holds them all loads them;
    // kept, for the spread of one more roster op below.
    let t = Instant::now();
    let mut spaces: Vec<Space> = (0..folders)
        .map(|f| {
            let mut s = Space::new_in_team(c.folders[f][0].space(), Some(c.team));
            s.share_roster_judgements(&judgements);
            s.ingest_batch(folder_of(f));
            s
        })
        .collect();
    report(
        &format!("all {folders} folders: first evaluation"),
        vec![t.elapsed()],
    );

    // One more roster op: in the roster (the fast path, it cites the
    // head), then taken in by every folder.
    let mut roster = c.admin_roster.clone();
    let mut roster_times = Vec::new();
    let mut spread_times = Vec::new();
    for n in 0..runs {
        let t = Instant::now();
        let env = roster
            .roster_op(
                &c.admin,
                RosterOp::AddUser {
                    user: UserId::new(&format!("new{n}@company.test")).expect("a user id"),
                },
            )
            .expect("an admin's op");
        roster_times.push(t.elapsed());
        let t = Instant::now();
        for s in &mut spaces {
            s.ingest(env.clone()).expect("a roster op of the team");
        }
        spread_times.push(t.elapsed());
    }
    report("one more roster op: the roster", roster_times);
    report(
        &format!("one more roster op: taken in by {folders} folders"),
        spread_times,
    );

    // One written concurrently by another admin (the roster has two heads).
    let t = Instant::now();
    let mut other = c.admin_roster.clone();
    let concurrent = other
        .roster_op(
            &c.second_admin,
            RosterOp::AddUser {
                user: UserId::new("concurrent@company.test").expect("a user id"),
            },
        )
        .expect("an admin's op");
    let _ = t;
    let t = Instant::now();
    roster.ingest(concurrent.clone()).expect("a roster op");
    let in_roster = t.elapsed();
    let t = Instant::now();
    for s in &mut spaces {
        s.ingest(concurrent.clone())
            .expect("a roster op of the team");
    }
    let in_folders = t.elapsed();
    report(
        "one more roster op, concurrent: the roster",
        vec![in_roster],
    );
    report(
        &format!("one more roster op, concurrent: taken in by {folders} folders"),
        vec![in_folders],
    );
}
