//! Acceptance benchmarks: accepting 10,000 content envelopes into a folder
//! and re-evaluating when a removal arrives late (issue 3); a team roster
//! of 10,000 control ops, its first evaluation and one more op (issue 20).
//!
//! Run: `cargo bench -p coffer-crdt --bench accept -- --quick`

use std::time::Duration;

use coffer_crdt::ops::{Principal, Role, RosterOp, UserId};
use coffer_crdt::space::ChangeMeta;
use coffer_crdt::{DeviceKeys, Envelope, FolderDoc, FolderKey, ItemEdit, ItemId, ItemType, Space};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

const N: usize = 10_000;

struct Fixture {
    control: Vec<Envelope>,
    content: Vec<Envelope>,
    metas: Vec<(coffer_crdt::EnvelopeId, ChangeMeta)>,
    /// A removal of the editor whose cutoff covers the first half of its writes.
    late_removal: Envelope,
    /// The manager's replica before it removed the editor: all content held.
    full: Space,
    key: FolderKey,
}

fn fixture() -> Fixture {
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let manager = DeviceKeys::generate(&mut rng);
    let editor = DeviceKeys::generate(&mut rng);
    let key = FolderKey::generate(&mut rng);
    let (mut mgr, genesis) = Space::create(&manager, &key, &mut rng).unwrap();
    let grant = mgr
        .grant(
            &manager,
            Principal::Device(editor.device_id()),
            Role::Editor,
            Some(editor.exchange_public()),
            Some(&key),
            &mut rng,
        )
        .unwrap();
    let mut ed = Space::new(mgr.id());
    ed.ingest_batch(vec![genesis.clone(), grant.clone()]);
    let mut doc = FolderDoc::new(editor.device_id());
    let mut content = Vec::with_capacity(N);
    let mut metas = Vec::with_capacity(N);
    let mut removal = None;
    for i in 0..N {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let change = doc
            .add_item(
                ItemId(id),
                ItemType::Login,
                &format!("item {i}"),
                &ItemEdit::default(),
                i as i64,
            )
            .unwrap();
        let env = ed.seal_content(&editor, &key, &change, &mut rng).unwrap();
        metas.push((env.id(), ChangeMeta::from_change(&change).unwrap()));
        content.push(env.clone());
        mgr.ingest(env).unwrap();
        if i == N / 2 {
            // The manager removes the editor having seen half of its work;
            // the removal reaches the others late.
            let mut scratch = mgr.clone();
            removal = Some(
                scratch
                    .remove(&manager, Principal::Device(editor.device_id()), None)
                    .unwrap(),
            );
        }
    }
    // As received from the network: decoded from bytes, signatures not yet
    // verified (an envelope remembers its verdict once checked).
    let fresh = |e: &Envelope| Envelope::decode(&e.to_bytes()).unwrap();
    let content = content.iter().map(fresh).collect();
    Fixture {
        control: vec![fresh(&genesis), fresh(&grant)],
        content,
        metas,
        late_removal: fresh(&removal.unwrap()),
        full: mgr,
        key,
    }
}

fn bench(c: &mut Criterion) {
    let f = fixture();
    let mut all = f.control.clone();
    all.extend(f.content.iter().cloned());
    let id = f.full.id();
    let mut group = c.benchmark_group("accept");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("10k content, one batch (verify + evaluate)", |b| {
        b.iter_batched(
            || all.clone(),
            |envs| {
                let mut s = Space::new(id);
                s.ingest_batch(envs);
                assert_eq!(s.accepted_content().count(), N);
                s
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("10k content, one at a time (fast path)", |b| {
        b.iter_batched(
            || all.clone(),
            |envs| {
                let mut s = Space::new(id);
                for e in envs {
                    s.ingest(e).unwrap();
                }
                assert_eq!(s.accepted_content().count(), N);
                s
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("10k content, one batch, recording change metadata", |b| {
        b.iter_batched(
            || all.clone(),
            |envs| {
                let mut s = Space::new(id);
                s.ingest_batch_with_metas(envs, f.metas.iter().cloned());
                assert_eq!(s.accepted_content().count(), N);
                s
            },
            BatchSize::LargeInput,
        )
    });
    let mut with_metas = f.full.clone();
    with_metas.supply_metas(f.metas.iter().cloned());
    group.bench_function("late removal: re-evaluate 10k", |b| {
        b.iter_batched(
            || with_metas.clone(),
            |mut s| {
                s.ingest(f.late_removal.clone()).unwrap();
                assert!(s.accepted_content().count() <= N / 2 + 1);
                s
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("late removal: rebuild the document from accepted", |b| {
        let mut s = with_metas.clone();
        s.ingest(f.late_removal.clone()).unwrap();
        b.iter(|| {
            let mut doc = FolderDoc::new(coffer_crdt::DeviceId([0; 32]));
            let changes: Vec<_> = s
                .accepted_content()
                .map(|e| (e.author(), Space::open_content(e, &f.key).unwrap()))
                .collect();
            doc.apply_changes(changes.iter().map(|(a, c)| (*a, c.as_slice())))
                .unwrap();
            doc
        })
    });
    group.bench_function("verify 10k signatures only", |b| {
        b.iter_batched(
            || {
                all.iter()
                    .map(|e| Envelope::decode(&e.to_bytes()).unwrap())
                    .collect::<Vec<_>>()
            },
            |envs| envs.iter().filter(|e| e.verify_signature()).count(),
            BatchSize::LargeInput,
        )
    });
    group.bench_function("evaluate 10k without verifying (refresh)", |b| {
        b.iter_batched(
            || f.full.clone(),
            |mut s| {
                s.refresh();
                s
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// A roster of `ops` control ops: its founding admin adds users, each with
/// a device and a group (three ops a user), one after the other.
fn roster(ops: usize) -> (Space, DeviceKeys, DeviceKeys) {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let admin = DeviceKeys::generate(&mut rng);
    let second = DeviceKeys::generate(&mut rng);
    let user = |i: usize| UserId::new(&format!("user{i}@big.test")).unwrap();
    let (mut space, _) = Space::create_team(&admin, user(0), "Big", [1; 32], &mut rng).unwrap();
    let id = space.id();
    // The admin's second laptop, for concurrent ops.
    space
        .roster_op(
            &admin,
            RosterOp::add_device(&id, user(0), &second, &[3; 32]),
        )
        .unwrap();
    let mut i = 1;
    while space.held().count() < ops {
        let device = DeviceKeys::generate(&mut rng);
        space
            .roster_op(&admin, RosterOp::AddUser { user: user(i) })
            .unwrap();
        space
            .roster_op(
                &admin,
                RosterOp::add_device(&id, user(i), &device, &[2; 32]),
            )
            .unwrap();
        space
            .roster_op(
                &admin,
                RosterOp::AddToGroup {
                    group: format!("g{}", i % 50),
                    user: user(i),
                },
            )
            .unwrap();
        i += 1;
    }
    (space, admin, second)
}

fn bench_control(c: &mut Criterion) {
    let (space, admin, second) = roster(N);
    let held: Vec<Envelope> = space.held().cloned().collect();
    let id = space.id();
    let fresh = |e: &Envelope| Envelope::decode(&e.to_bytes()).unwrap();
    let mut group = c.benchmark_group("control");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("10k roster ops: first evaluation", |b| {
        b.iter_batched(
            || held.clone(),
            |envs| {
                let mut s = Space::new_roster(id);
                s.ingest_batch(envs);
                assert!(s.state().team.users.len() > N / 3);
                s
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("10k roster ops: first evaluation with signatures", |b| {
        b.iter_batched(
            || held.iter().map(fresh).collect::<Vec<_>>(),
            |envs| {
                let mut s = Space::new_roster(id);
                s.ingest_batch(envs);
                s
            },
            BatchSize::LargeInput,
        )
    });
    let mut n = 0;
    group.bench_function("10k roster ops: one more op", |b| {
        b.iter_batched(
            || space.clone(),
            |mut s| {
                n += 1;
                let user = UserId::new(&format!("extra{n}@big.test")).unwrap();
                s.roster_op(&admin, RosterOp::AddUser { user }).unwrap();
                s
            },
            BatchSize::LargeInput,
        )
    });
    // One more op that a peer wrote concurrently (two heads): the full
    // evaluation, with the judgements kept from the last one.
    let mut other = space.clone();
    let other_user = UserId::new("concurrent@big.test").unwrap();
    let concurrent = other
        .roster_op(&second, RosterOp::AddUser { user: other_user })
        .unwrap();
    group.bench_function("10k roster ops: one more op, concurrent", |b| {
        b.iter_batched(
            || {
                let mut s = space.clone();
                let user = UserId::new("mine@big.test").unwrap();
                s.roster_op(&admin, RosterOp::AddUser { user }).unwrap();
                s
            },
            |mut s| {
                s.ingest(concurrent.clone()).unwrap();
                s
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench, bench_control);
criterion_main!(benches);
