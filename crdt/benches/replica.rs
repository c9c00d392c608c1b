//! Whole-replica benchmarks (issue 11): what `cofferd` pays in the replica
//! for an unlock (the folder rebuilt from every accepted envelope, each
//! decrypted and checked against its header), a restart (the replica
//! loaded from its stored envelopes, then unlocked), and an import.
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
const EDITS: usize = 2_000;
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
        if let Effect::Persist(Persist::Envelopes {
            space,
            kind,
            team,
            envelopes,
        }) = effect
        {
            match into.iter_mut().find(|s| s.id == space) {
                Some(s) => s.envelopes.extend(envelopes),
                None => into.push(StoredSpace {
                    id: space,
                    kind,
                    team,
                    envelopes,
                }),
            }
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
    g.bench_function("lock + unlock, 2,000 changes", |b| {
        b.iter(|| {
            open.lock(LockReason::Request);
            open.unlock(keys.clone(), &mut rng).expect("unlocks");
            while open.poll_effect().is_some() {}
        })
    });
    g.bench_function("load + unlock, 2,000 changes", |b| {
        b.iter_batched(
            || store.clone(),
            |store| {
                let mut r = Replica::load(identity.clone(), store, Vec::new());
                r.unlock(keys.clone(), &mut rng).expect("unlocks");
                while r.poll_effect().is_some() {}
                r
            },
            BatchSize::LargeInput,
        )
    });
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
