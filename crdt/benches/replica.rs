//! Whole-replica benchmarks (issues 11, 18): what `cofferd` pays in the
//! replica for an unlock (each folder loaded from its snapshot, or rebuilt
//! from every accepted envelope, each decrypted and checked against its
//! header), a restart (the replica loaded from its stored envelopes, then
//! unlocked), and an import.
//!
//! Run: `cargo bench -p coffer-crdt --bench replica -- --quick`

use std::time::Duration;

use coffer_crdt::folder::ItemType;
use coffer_crdt::replica::{Effect, ImportItem, LockReason, NewItemSpec, Persist, StoredSpace};
use coffer_crdt::{DeviceKeys, Replica};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// Items added one change each, as `coffer add` does them.
const EDITS: usize = 10_000;
/// Items imported at once, as `coffer import` does.
const IMPORTED: usize = 5_000;

fn new_replica(rng: &mut ChaCha20Rng) -> (Replica, DeviceKeys) {
    let keys = DeviceKeys::generate(rng);
    let replica = Replica::create(keys.clone(), "Ada", "ada@bench.test", [7; 32], 1, rng)
        .expect("a new replica");
    (replica, keys)
}

/// Drains effects and returns what a store would hold.
fn stored(replica: &mut Replica, into: &mut Vec<StoredSpace>) {
    while let Some(effect) = replica.poll_effect() {
        match effect {
            Effect::Persist(Persist::Envelopes {
                space,
                kind,
                team,
                envelopes,
            }) => match into.iter_mut().find(|s| s.id == space) {
                Some(s) => s.envelopes.extend(envelopes),
                None => into.push(StoredSpace {
                    id: space,
                    kind,
                    team,
                    envelopes,
                    snapshot: None,
                }),
            },
            Effect::Persist(Persist::Snapshot { space, sealed }) => {
                if let Some(s) = into.iter_mut().find(|s| s.id == space) {
                    s.snapshot = Some(sealed);
                }
            }
            _ => {}
        }
    }
}

fn one_change_each() -> (Replica, DeviceKeys, Vec<StoredSpace>) {
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let (mut replica, keys) = new_replica(&mut rng);
    let mut store = Vec::new();
    stored(&mut replica, &mut store);
    for i in 0..EDITS {
        let spec = NewItemSpec {
            folder: None,
            item_type: ItemType::Login,
            name: format!("svc{i:05}"),
            fields: [
                ("username".to_string(), format!("user{i}")),
                ("password".to_string(), format!("pw-{i}-correct-horse")),
            ]
            .into(),
            urls: vec![format!("https://svc{i}.example.com")],
        };
        replica.add_item(spec, i as i64, &mut rng).expect("an item");
        stored(&mut replica, &mut store);
    }
    (replica, keys, store)
}

fn import_items() -> Vec<ImportItem> {
    (0..IMPORTED)
        .map(|i| ImportItem {
            item_type: ItemType::Login,
            name: format!("svc{i:05}"),
            folder: None,
            fields: [
                ("username".to_string(), format!("user{i}")),
                ("password".to_string(), format!("pw-{i}-correct-horse")),
            ]
            .into(),
            urls: vec![format!("https://svc{i}.example.com")],
            created_ms: None,
            updated_ms: None,
            trashed_ms: None,
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let (replica, keys, store) = one_change_each();
    let identity = replica.identity().clone();
    let mut rng = ChaCha20Rng::seed_from_u64(12);
    let mut g = c.benchmark_group("replica");
    g.sample_size(10).measurement_time(Duration::from_secs(10));

    let mut open = replica;
    // What a lock leaves for the next unlock and restart (issue 18).
    open.snapshot_folders(1, &mut rng);
    let mut with_snapshot = store.clone();
    stored(&mut open, &mut with_snapshot);
    assert!(with_snapshot.iter().any(|s| s.snapshot.is_some()));
    g.bench_function("lock + unlock, 10,000 changes, from the snapshot", |b| {
        b.iter(|| {
            open.lock(LockReason::Request);
            open.unlock(keys.clone(), &mut rng).expect("unlocks");
            assert_eq!(open.last_unlock().rebuilt, 0);
            while open.poll_effect().is_some() {}
        })
    });
    g.bench_function("load + unlock, 10,000 changes, from the snapshot", |b| {
        b.iter_batched(
            || with_snapshot.clone(),
            |store| {
                let mut r = Replica::load(identity.clone(), store, Vec::new());
                r.unlock(keys.clone(), &mut rng).expect("unlocks");
                assert_eq!(r.last_unlock().rebuilt, 0);
                while r.poll_effect().is_some() {}
                r
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function(
        "load + unlock, 10,000 changes, replayed (and snapshotted)",
        |b| {
            b.iter_batched(
                || store.clone(),
                |store| {
                    let mut r = Replica::load(identity.clone(), store, Vec::new());
                    r.unlock(keys.clone(), &mut rng).expect("unlocks");
                    assert_eq!(r.last_unlock().from_snapshot, 0);
                    while r.poll_effect().is_some() {}
                    r
                },
                BatchSize::LargeInput,
            )
        },
    );
    let items = import_items();
    g.bench_function("import 5,000 into a new vault", |b| {
        b.iter_batched(
            || {
                let mut rng = ChaCha20Rng::seed_from_u64(13);
                let (mut r, _) = new_replica(&mut rng);
                while r.poll_effect().is_some() {}
                (r, rng, items.clone())
            },
            |(mut r, mut rng, items)| {
                r.import(items, None, false, 0, &mut rng, &mut |_, _| {})
                    .expect("imports");
                while r.poll_effect().is_some() {}
                r
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
