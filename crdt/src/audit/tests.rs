use proptest::prelude::*;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

use super::*;

fn device(seed: u64) -> DeviceKeys {
    DeviceKeys::generate(&mut ChaCha20Rng::seed_from_u64(seed))
}

fn event(n: u64) -> AuditEvent {
    AuditEvent {
        folder_name: Some("Shared".into()),
        item_name: Some(format!("item {n}")),
        field: Some("password".into()),
        ..AuditEvent::new("ann@example.com", Action::Copy)
    }
}

/// `n` events on `keys`' chain, readable by `readers`: the records in order.
fn chain(keys: &DeviceKeys, readers: &[Reader], n: u64, rng: &mut ChaCha20Rng) -> Vec<Record> {
    let mut w = ChainWriter::new(keys.device_id());
    let mut out = Vec::new();
    for i in 0..n {
        out.extend(
            w.append(keys, readers, &[], event(i), 1_000 + i as i64, rng)
                .unwrap(),
        );
    }
    out
}

fn rows(records: &[Record]) -> Vec<Row> {
    records
        .iter()
        .map(|r| Row {
            device: r.device(),
            seq: r.seq(),
            bytes: r.bytes().to_vec(),
        })
        .collect()
}

fn findings(rows: Vec<Row>) -> Vec<Finding> {
    verify(rows).into_iter().flat_map(|c| c.findings).collect()
}

#[test]
fn a_record_round_trips_and_opens_only_for_its_readers() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let (writer, admin, other) = (device(1), device(2), device(3));
    let readers = [(admin.device_id(), admin.exchange_public())];
    let records = chain(&writer, &readers, 2, &mut rng);
    // A key record, then two sealed ones under it.
    assert_eq!(records.len(), 3);
    assert_eq!(records[2].key_seq(), Some(1));
    for r in &records {
        let again = Record::decode(r.bytes()).unwrap();
        assert_eq!(&again, r);
        assert!(again.verify_signature());
    }
    let key = records[0].open_key(&admin).unwrap();
    assert_eq!(records[1].open_event(&key).unwrap(), event(0));
    assert!(
        records[0].open_key(&writer).is_some(),
        "the writer reads its own records"
    );
    assert!(records[0].open_key(&other).is_none());
    // A record's ciphertext moved to another place does not open.
    let mut moved = records[2].body().clone();
    moved.seq = 7;
    let forged = Record::sign(moved, &writer);
    assert!(forged.open_event(&key).is_err());
}

#[test]
fn a_new_reader_set_starts_a_new_key_epoch() {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let (writer, a, b) = (device(1), device(2), device(3));
    let mut w = ChainWriter::new(writer.device_id());
    let one = [(a.device_id(), a.exchange_public())];
    let two = [one[0], (b.device_id(), b.exchange_public())];
    let first = w.append(&writer, &one, &[], event(0), 1, &mut rng).unwrap();
    let same = w.append(&writer, &one, &[], event(1), 2, &mut rng).unwrap();
    let wider = w.append(&writer, &two, &[], event(2), 3, &mut rng).unwrap();
    assert_eq!((first.len(), same.len(), wider.len()), (2, 1, 2));
    assert!(first[0].open_key(&b).is_none());
    let key = wider[0].open_key(&b).unwrap();
    assert_eq!(wider[1].open_event(&key).unwrap(), event(2));
    // A writer resumed from its store keeps the epoch and the chain.
    let mut resumed = ChainWriter::resume(&writer, wider.last(), Some(&wider[0]));
    let next = resumed
        .append(&writer, &two, &[], event(3), 4, &mut rng)
        .unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].seq(), 6);
    assert_eq!(next[0].body().prev, Some(wider[1].hash()));
}

/// A record about a folder sealed to that folder's managers too: they read
/// that one record and no other of the chain; the chain's readers read it
/// as any; the chain stays one chain and verifies clean.
#[test]
fn a_shared_record_reaches_its_extra_readers_and_no_other_record() {
    let mut rng = ChaCha20Rng::seed_from_u64(21);
    let (writer, admin, manager, stranger) = (device(1), device(2), device(3), device(4));
    let mut w = ChainWriter::new(writer.device_id());
    let readers = [(admin.device_id(), admin.exchange_public())];
    let extra = [(manager.device_id(), manager.exchange_public())];
    let mut all = w
        .append(&writer, &readers, &[], event(0), 1, &mut rng)
        .unwrap();
    let shared = w
        .append(&writer, &readers, &extra, event(1), 2, &mut rng)
        .unwrap();
    assert_eq!(shared.len(), 1, "no new key epoch for one shared record");
    // An extra reader that is a chain reader already adds nothing.
    let plain = w
        .append(&writer, &readers, &readers, event(2), 3, &mut rng)
        .unwrap();
    assert!(matches!(plain[0].body().body, Body::Sealed { .. }));
    all.extend(shared.iter().cloned());
    all.extend(plain);

    let chain_key = all[0].open_key(&admin).unwrap();
    let opened: Vec<AuditEvent> = all[1..]
        .iter()
        .map(|r| r.open_event(&chain_key).unwrap())
        .collect();
    assert_eq!(opened, vec![event(0), event(1), event(2)]);
    assert!(all[0].open_key(&manager).is_none());
    let by_manager: Vec<Option<AuditEvent>> = all.iter().map(|r| r.open_shared(&manager)).collect();
    assert_eq!(by_manager, vec![None, None, Some(event(1)), None]);
    assert!(all.iter().all(|r| r.open_shared(&stranger).is_none()));

    let decoded = Record::decode(shared[0].bytes()).unwrap();
    assert_eq!(decoded.open_shared(&manager), Some(event(1)));
    let reports = verify(rows(&all));
    assert!(reports.iter().all(|r| r.findings.is_empty()), "{reports:?}");
}

#[test]
fn an_honest_chain_verifies_clean() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let (a, b) = (device(1), device(2));
    let mut all = chain(&a, &[], 20, &mut rng);
    all.extend(chain(&b, &[], 5, &mut rng));
    let reports = verify(rows(&all));
    assert_eq!(reports.len(), 2);
    assert!(reports.iter().all(|r| r.findings.is_empty()), "{reports:?}");
    let total: u64 = reports.iter().map(|r| r.records).sum();
    assert_eq!(total, all.len() as u64);
}

#[test]
fn deleted_rows_show_as_a_gap() {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let a = device(1);
    let d = a.device_id();
    let mut r = rows(&chain(&a, &[], 10, &mut rng));
    r.retain(|x| !(4..=6).contains(&x.seq));
    assert_eq!(
        findings(r),
        vec![Finding::Gap {
            device: d,
            from: 4,
            to: 6
        }]
    );
}

#[test]
fn edited_bytes_show_as_a_bad_signature() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let a = device(1);
    let mut r = rows(&chain(&a, &[], 5, &mut rng));
    let last = r[3].bytes.len() - 70;
    r[3].bytes[last] ^= 1;
    assert_eq!(
        findings(r),
        vec![Finding::BadSignature {
            device: a.device_id(),
            seq: 4
        }]
    );
}

#[test]
fn a_record_replayed_under_another_device_is_a_bad_signature() {
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let (a, b) = (device(1), device(2));
    let ra = chain(&a, &[], 3, &mut rng);
    let mut r = rows(&chain(&b, &[], 3, &mut rng));
    // b's row 4 filled with a's record 3.
    r.push(Row {
        device: b.device_id(),
        seq: 4,
        bytes: ra[2].bytes().to_vec(),
    });
    assert_eq!(
        findings(r),
        vec![Finding::BadSignature {
            device: b.device_id(),
            seq: 4
        }]
    );
}

#[test]
fn a_chain_rewritten_from_a_point_is_a_fork() {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let a = device(1);
    let d = a.device_id();
    let honest = chain(&a, &[], 6, &mut rng);
    // The device rewrites from seq 5: a writer resumed at seq 4.
    let mut w = ChainWriter::resume(&a, Some(&honest[3]), Some(&honest[0]));
    let rewritten = w.append(&a, &[], &[], event(99), 5_000, &mut rng).unwrap();
    assert_eq!(rewritten[0].seq(), 5);
    // Both copies held: two records at seq 5.
    let mut both = rows(&honest);
    both.extend(rows(&rewritten));
    assert_eq!(findings(both), vec![Finding::Fork { device: d, seq: 5 }]);
    // Only the rewrite of 5 beside the honest 6: 6 does not follow 5.
    let mut spliced = rows(&honest);
    spliced[4] = rows(&rewritten)[0].clone();
    assert_eq!(findings(spliced), vec![Finding::Fork { device: d, seq: 6 }]);
}

#[test]
fn a_checkpoint_covers_pruned_records() {
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let a = device(1);
    let mut w = ChainWriter::new(a.device_id());
    let mut all = Vec::new();
    for i in 0..10 {
        all.extend(
            w.append(&a, &[], &[], event(i), i as i64, &mut rng)
                .unwrap(),
        );
    }
    let through = (all[5].seq(), all[5].hash());
    all.push(w.checkpoint(&a, through, 6, 100));
    let kept: Vec<Record> = all.iter().filter(|r| r.seq() > 6).cloned().collect();
    assert_eq!(findings(rows(&kept)), vec![]);
    let report = &verify(rows(&kept))[0];
    assert_eq!(report.pruned_through, 6);
    // Without the checkpoint the same rows are a gap.
    let no_cp: Vec<Record> = kept.iter().filter(|r| r.seq() != 12).cloned().collect();
    assert_eq!(
        findings(rows(&no_cp)),
        vec![Finding::Gap {
            device: a.device_id(),
            from: 1,
            to: 6
        }]
    );
}

#[test]
fn decoding_refuses_non_canonical_and_oversized_input() {
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let a = device(1);
    let r = chain(&a, &[], 1, &mut rng);
    let mut longer = r[1].bytes().to_vec();
    longer.push(0);
    assert_eq!(Record::decode(&longer), Err(RecordError::Malformed));
    assert!(matches!(
        Record::decode(&vec![0u8; MAX_RECORD_BYTES + 1]),
        Err(RecordError::TooLarge { .. })
    ));
    assert!(Record::decode(&[]).is_err());
}

#[test]
fn texts_are_cut_to_the_bound() {
    let mut rng = ChaCha20Rng::seed_from_u64(10);
    let a = device(1);
    let mut w = ChainWriter::new(a.device_id());
    let mut e = event(0);
    e.item_name = Some("é".repeat(1000));
    let recs = w.append(&a, &[], &[], e, 1, &mut rng).unwrap();
    let key = recs[0].open_key(&a).unwrap();
    let opened = recs[1].open_event(&key).unwrap();
    assert!(opened.item_name.unwrap().len() <= MAX_TEXT);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any honest chains, in any order and with duplicates, verify clean;
    /// dropping any one record but the last is a gap naming exactly it.
    #[test]
    fn verify_holds_for_any_order(n in 1u64..30, m in 1u64..10, seed in 0u64..1000, drop in 0usize..100, swaps in proptest::collection::vec((0usize..100, 0usize..100), 0..20)) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let (a, b) = (device(seed), device(seed + 1));
        let mut all = rows(&chain(&a, &[], n, &mut rng));
        all.extend(rows(&chain(&b, &[], m, &mut rng)));
        let dup = all[0].clone();
        all.push(dup);
        let len = all.len();
        for (i, j) in swaps {
            all.swap(i % len, j % len);
        }
        prop_assert!(findings(all.clone()).is_empty());
        // Drop one record of a's chain that is not its last.
        let a_rows: Vec<u64> = all.iter().filter(|r| r.device == a.device_id()).map(|r| r.seq).collect();
        let top = *a_rows.iter().max().unwrap();
        let victim = 1 + (drop as u64 % top);
        if victim < top {
            all.retain(|r| !(r.device == a.device_id() && r.seq == victim));
            prop_assert_eq!(findings(all), vec![Finding::Gap { device: a.device_id(), from: victim, to: victim }]);
        }
    }

    /// Decoding never panics and whatever decodes re-encodes to the same bytes.
    #[test]
    fn decode_is_total_and_canonical(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(r) = Record::decode(&bytes) {
            prop_assert_eq!(r.bytes(), &bytes[..]);
        }
    }
}
