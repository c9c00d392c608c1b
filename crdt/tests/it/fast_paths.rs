//! The fast paths against a whole evaluation (a property test written by
//! a review of the batch fast path): random small folders — honest writes,
//! partial syncs that leave gaps, forks of one seq, a Folder Member's
//! forced content, changes built on content not accepted, a removal with
//! rotation, more rotations — delivered to a fresh `Space` six times, in
//! shuffled or peer order, in random chunks through `ingest_batch` or one
//! by one through `ingest`. After every chunk the state equals
//! `refresh()`'s (digest, every outcome, tips, forks, chain heads), and
//! every delivery ends at the same digest and heads.
//! `COFFER_SIM_CASES=<n>` sets how many folders (default 8).

use std::collections::BTreeMap;

use coffer_crdt::ops::{Principal, Role};
use coffer_crdt::{ChangeHeader, ChangeMeta, DeviceKeys, Envelope, EnvelopeId, Space};
use rand_core::RngCore;

use crate::harness::*;

type Heads = BTreeMap<String, Vec<(u64, String, bool)>>;

fn heads(s: &Space) -> Heads {
    s.chain_heads()
        .iter()
        .map(|((sp, d), hs)| {
            let mut v: Vec<_> = hs
                .iter()
                .map(|h| (h.seq, h.id.to_hex(), h.linked))
                .collect();
            v.sort();
            (format!("{}/{}", sp.to_hex(), d.to_hex()), v)
        })
        .collect()
}

fn try_write(
    s: &mut Space,
    k: &DeviceKeys,
    now: i64,
    r: &mut rand_chacha::ChaCha20Rng,
) -> Option<Envelope> {
    s.learn_metas(k);
    let change = add_item_change(s, k, &format!("n{now}"), now);
    let key = s.folder_key(k).ok()?;
    s.seal_content(k, &key, &change, r).ok()
}

/// Delivers `envs` in a random order and chunking, checking after each chunk.
fn deliver(
    to: &mut Space,
    envs: &[Envelope],
    r: &mut rand_chacha::ChaCha20Rng,
    log: &mut Vec<String>,
) {
    let mut queue: Vec<Envelope> = envs.to_vec();
    if r.next_u32().is_multiple_of(2) {
        for i in (1..queue.len()).rev() {
            let j = (r.next_u32() as usize) % (i + 1);
            queue.swap(i, j);
        }
    } else {
        // As a peer sends: one chain after another, in seq order; chains shuffled.
        let salt = r.next_u32();
        queue.sort_by_key(|e| (e.author().0[0] ^ (salt as u8), e.seq(), e.id()));
    }
    let mut stuck = 0;
    while !queue.is_empty() && stuck < 50 {
        let n = 1 + (r.next_u32() as usize) % queue.len().min(6);
        let chunk: Vec<Envelope> = queue.drain(..n).collect();
        let mut retry = Vec::new();
        if r.next_u32().is_multiple_of(2) {
            let rep = to.ingest_batch(chunk.clone());
            for (e, o) in chunk.into_iter().zip(rep.outcomes) {
                if matches!(o, Err(coffer_crdt::space::IngestError::UnknownAuthor)) {
                    retry.push(e);
                }
            }
            log.push(format!("batch {n}"));
        } else {
            for e in chunk {
                if matches!(
                    to.ingest(e.clone()),
                    Err(coffer_crdt::space::IngestError::UnknownAuthor)
                ) {
                    retry.push(e);
                }
            }
            log.push(format!("single {n}"));
        }
        if retry.is_empty() {
            stuck = 0
        } else {
            stuck += 1
        }
        queue.extend(retry);
        let mut full = to.clone();
        full.refresh();
        let what = log.join(",");
        assert_eq!(to.digest(), full.digest(), "digest after {what}");
        for e in to.held() {
            assert_eq!(
                to.outcome_of(&e.id()),
                full.outcome_of(&e.id()),
                "outcome after {what}"
            );
        }
        assert_eq!(to.chain_tips(), full.chain_tips(), "tips after {what}");
        assert_eq!(to.forked(), full.forked(), "forked after {what}");
        assert_eq!(heads(to), heads(&full), "heads after {what}");
    }
}

/// A random small folder's envelopes, from four devices' replicas.
fn fuzz_world(seed: u64) -> (coffer_crdt::SpaceId, Vec<Envelope>) {
    let mut w = World::new(seed, &[Role::Editor, Role::Editor, Role::Member]);
    let mut r = rng(seed ^ 0xabc);
    let mut pool: BTreeMap<EnvelopeId, Envelope> = BTreeMap::new();
    let mut removed = false;
    let steps: i64 = 14;
    for step in 0..steps {
        let now = 1000 + step;
        let i = (r.next_u32() % 4) as usize;
        match r.next_u32() % 10 {
            0 | 1 | 8 | 9 => {
                let mut rr = w.rng.clone();
                let _ = try_write(&mut w.reps[i], &w.keys[i], now, &mut rr);
                w.rng = rr;
            }
            2 | 3 => {
                let j = (i + 1 + (r.next_u32() % 3) as usize) % 4;
                let envs: Vec<Envelope> = w.reps[i].held().cloned().collect();
                for e in envs {
                    if !r.next_u32().is_multiple_of(3) {
                        let _ = w.reps[j].ingest(e);
                    }
                }
            }
            4 => {
                // A fork: the same seq written on a copy.
                let mut alt = w.reps[i].clone();
                let mut rr = w.rng.clone();
                if let Some(e) = try_write(&mut alt, &w.keys[i], now + 500, &mut rr) {
                    pool.insert(e.id(), e);
                } else if let Some(epoch) = alt.current_epoch() {
                    let key = w.keyring.get(&epoch).cloned();
                    if let Some(key) = key {
                        let c = add_item_change(&alt, &w.keys[i], "forged", now + 500);
                        let e = force_content(&mut alt, &w.keys[i], &key, epoch, &c, &mut rr);
                        pool.insert(e.id(), e);
                    }
                }
                w.rng = rr;
            }
            5 => {
                // The member (3) writes anyway, or an editor builds on non-accepted content.
                let epoch = w.reps[i].current_epoch();
                if let Some(key) = epoch.and_then(|e| w.keyring.get(&e).cloned()) {
                    let epoch = epoch.unwrap();
                    let c = add_item_change(&w.reps[i], &w.keys[i], "forced", now);
                    let meta = ChangeMeta::from_change(&c).unwrap();
                    let bad: Vec<EnvelopeId> = w.reps[i]
                        .held()
                        .filter(|e| {
                            e.kind() == coffer_crdt::Kind::Content
                                && !w.reps[i].is_accepted(&e.id())
                        })
                        .map(|e| e.id())
                        .take(1)
                        .collect();
                    let mut rr = w.rng.clone();
                    if bad.is_empty() || i == 3 {
                        let _ = force_content(&mut w.reps[i], &w.keys[i], &key, epoch, &c, &mut rr);
                    } else {
                        let header = ChangeHeader {
                            incarnation: meta.incarnation(&w.keys[i].device_id()).unwrap(),
                            seq: meta.seq,
                            deps: bad,
                        };
                        let _ = force_content_as(
                            &mut w.reps[i],
                            &w.keys[i],
                            &key,
                            epoch,
                            &c,
                            header,
                            &mut rr,
                        );
                    }
                    w.rng = rr;
                }
            }
            6 if !removed => {
                removed = true;
                let victim = w.keys[1].device_id();
                let mut rr = w.rng.clone();
                if w.reps[0]
                    .remove(&w.keys[0], Principal::Device(victim), None)
                    .is_ok()
                {
                    if let Ok((e, k)) = w.reps[0].rotate(&w.keys[0], &mut rr) {
                        w.keyring.insert(e.id(), k);
                    }
                }
                w.rng = rr;
            }
            _ => {
                let mut rr = w.rng.clone();
                if let Ok((e, k)) = w.reps[0].rotate(&w.keys[0], &mut rr) {
                    w.keyring.insert(e.id(), k);
                }
                w.rng = rr;
            }
        }
    }
    for rep in &w.reps {
        for e in rep.held() {
            pool.insert(e.id(), e.clone());
        }
    }
    (w.reps[0].id(), pool.into_values().collect())
}

#[test]
fn fast_paths_agree_with_a_whole_evaluation_in_any_order_and_batching() {
    let n: u64 = std::env::var("COFFER_SIM_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    for seed in 0..n {
        let (id, pool) = fuzz_world(seed);
        let mut ends = Vec::new();
        for d in 0..6u64 {
            let mut r = rng(seed * 31 + d);
            let mut fresh = Space::new(id);
            let mut log = vec![format!("seed {seed} delivery {d} pool {}", pool.len())];
            deliver(&mut fresh, &pool, &mut r, &mut log);
            ends.push((fresh.digest(), heads(&fresh)));
        }
        for end in &ends[1..] {
            assert_eq!(end, &ends[0], "seed {seed}: deliveries disagree");
        }
    }
}
