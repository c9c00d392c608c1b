//! The audit trail at scale (issue 13, `docs/PERFORMANCE.md`): N records
//! (default 1,000,000) of 10 users' devices over 365 days in a real store,
//! then: storage per record, the filtered query `coffer audit --user U
//! --since 30d` runs (the store's indexed range, then each record decoded
//! and opened with the admin's key, as `Vault::audit_query` does), the
//! cost of appending one record (sign + encrypt + one fsynced
//! transaction: what an audited `coffer get` adds), and the chain
//! verifier over everything.
//!
//! Then the sync of up to 100,000 of those records to an admin's new
//! device, in process: the sender's store read in the batches
//! `Vault::poll_audit` sends (≤ 2,048 records, ≤ 512 KiB), each record
//! decoded and its signature checked as `Replica::audit_received` does,
//! and each batch stored in one fsynced transaction on a fresh store. No
//! network: the LAN's transfer time of ~55 MB comes on top.
//!
//! `cargo run --release -p coffer-daemon --example audit_bench [N]`

use std::collections::BTreeMap;
use std::time::Instant;

use coffer_crdt::audit::{Action, AuditEvent, ChainWriter, Record, Row};
use coffer_crdt::crypto::FolderKey;
use coffer_crdt::replica::AuditRow;
use coffer_crdt::{DeviceId, DeviceKeys, ItemId, SpaceId};
use coffer_daemon::store::{AuditRange, Store};
use rand::rngs::OsRng;

const DAY_MS: i64 = 86_400_000;
const USERS: usize = 10;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault.sqlite3");
    let mut store = Store::open(&path).unwrap();
    let admin = DeviceKeys::generate(&mut OsRng);
    let readers = [(admin.device_id(), admin.exchange_public())];
    let devices: Vec<DeviceKeys> = (0..USERS)
        .map(|_| DeviceKeys::generate(&mut OsRng))
        .collect();
    let mut writers: Vec<ChainWriter> = devices
        .iter()
        .map(|d| ChainWriter::new(d.device_id()))
        .collect();
    let now = 1_800_000_000_000i64;
    let start = now - 365 * DAY_MS;
    let step = (365 * DAY_MS) / n as i64;
    let t = Instant::now();
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..n {
        let u = i % USERS;
        let event = AuditEvent {
            folder: Some(SpaceId([(i % 7) as u8; 32])),
            folder_name: Some(format!("Folder {}", i % 7)),
            item: Some(ItemId([(i % 251) as u8; 16])),
            item_name: Some(format!("service-{:05}", i % 10_000)),
            field: Some("password".into()),
            ..AuditEvent::new(&format!("user{u}@example.com"), Action::Copy)
        };
        let time = start + i as i64 * step;
        for record in writers[u]
            .append(&devices[u], &readers, &[], event, time, &mut OsRng)
            .unwrap()
        {
            batch.push(AuditRow {
                record,
                user: format!("user{u}@example.com"),
            });
        }
        if batch.len() >= 10_000 {
            store.write_batch(&[], &[], &[], &batch).unwrap();
            batch.clear();
        }
    }
    store.write_batch(&[], &[], &[], &batch).unwrap();
    let fill = t.elapsed();
    drop(store);
    let bytes = std::fs::metadata(&path).unwrap().len()
        + std::fs::metadata(dir.path().join("vault.sqlite3-wal")).map_or(0, |m| m.len());
    let store = Store::open(&path).unwrap();
    println!(
        "filled {n} records in {:.1} s; store {} bytes = {:.0} bytes/record",
        fill.as_secs_f64(),
        bytes,
        bytes as f64 / n as f64
    );

    // The filtered query: one user, the last 30 days.
    let range = AuditRange {
        user: Some("user3@example.com".into()),
        since_ms: Some(now - 30 * DAY_MS),
        until_ms: None,
        device: None,
        after: None,
        newest: false,
        limit: 100_000,
    };
    let mut times = Vec::new();
    let mut found = 0;
    for _ in 0..7 {
        let t = Instant::now();
        let rows = store.audit_query(&range).unwrap();
        let mut keys: BTreeMap<(DeviceId, u64), FolderKey> = BTreeMap::new();
        let mut opened = 0;
        for (_, _, b) in &rows {
            let r = Record::decode(b).unwrap();
            let k = r.key_seq().unwrap();
            let key = keys.entry((r.device(), k)).or_insert_with(|| {
                let kr = Record::decode(&store.audit_at(&r.device(), k).unwrap().unwrap()).unwrap();
                kr.open_key(&admin).unwrap()
            });
            if r.open_event(key).is_ok() {
                opened += 1;
            }
        }
        found = opened;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "query one user, 30 days: {found} records, median {:.1} ms (7 runs, min {:.1})",
        median(times.clone()),
        times.iter().cloned().fold(f64::MAX, f64::min)
    );

    // One more record, as an audited `coffer get --field` writes it.
    let mut store = store;
    let mut w = ChainWriter::resume(&devices[0], None, None);
    let mut times = Vec::new();
    for i in 0..200 {
        let t = Instant::now();
        let recs = w
            .append(
                &devices[0],
                &readers,
                &[],
                AuditEvent::new("user0@example.com", Action::Reveal),
                now + i,
                &mut OsRng,
            )
            .unwrap();
        let rows: Vec<AuditRow> = recs
            .into_iter()
            .map(|record| AuditRow {
                record,
                user: "user0@example.com".into(),
            })
            .collect();
        store.write_batch(&[], &[], &[], &rows).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "append one record (sign, encrypt, fsynced commit): median {:.2} ms (200 runs)",
        median(times)
    );

    // The verifier over every chain.
    let t = Instant::now();
    let rows = store.audit_rows().unwrap();
    let reports = coffer_crdt::audit::verify(rows.into_iter().map(|(device, seq, bytes)| Row {
        device,
        seq,
        bytes,
    }));
    println!(
        "verify {} chains of {} records: {:.1} s",
        reports.len(),
        reports.iter().map(|r| r.records).sum::<u64>(),
        t.elapsed().as_secs_f64()
    );

    // The sync of up to 100,000 records to an admin's new device.
    let sync_n = n.min(100_000);
    let dir2 = tempfile::tempdir().unwrap();
    let mut fresh = Store::open(&dir2.path().join("vault.sqlite3")).unwrap();
    let t = Instant::now();
    let mut moved = 0usize;
    let mut messages = 0usize;
    let heads = store.audit_heads().unwrap();
    'chains: for device in heads.keys() {
        let mut after = 0u64;
        loop {
            let rows = store.audit_after(device, after, 2048).unwrap();
            if rows.is_empty() {
                break;
            }
            let mut bytes = 0usize;
            let mut batch = Vec::new();
            for (seq, b) in rows {
                if !batch.is_empty() && bytes + b.len() > 512 * 1024 {
                    break;
                }
                bytes += b.len();
                after = seq;
                let record = Record::decode(&b).unwrap();
                assert!(record.verify_signature());
                batch.push(AuditRow {
                    record,
                    user: "user@example.com".into(),
                });
            }
            moved += batch.len();
            messages += 1;
            fresh.write_batch(&[], &[], &[], &batch).unwrap();
            if moved >= sync_n {
                break 'chains;
            }
        }
    }
    println!(
        "sync {moved} records to a new admin device ({messages} messages): {:.2} s",
        t.elapsed().as_secs_f64()
    );
}
