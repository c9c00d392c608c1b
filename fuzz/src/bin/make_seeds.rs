//! Writes the seed corpora under `fuzz/seeds/` (committed): well-formed
//! envelopes of every kind and control ops of every variant, so the
//! fuzzers start from real structure instead of random bytes. Deterministic:
//! `cargo run --bin make_seeds` (in `fuzz/`) rewrites the same files.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use coffer_decoders::audit::{Action, AuditEvent, ChainWriter};
use coffer_decoders::crypto::{DeviceKeys, FolderKey};
use coffer_decoders::envelope::{ChangeHeader, Envelope, EnvelopeBody, Kind, ENVELOPE_VERSION};
use coffer_decoders::ids::{EnvelopeId, SpaceId};
use coffer_decoders::sync_wire::{PeerErrorCode, SpaceSummary, SyncMessage, Tip};
use coffer_decoders::ops::{
    ChainLink, ControlOp, CutoffPoint, KeyWrap, MembershipOp, Principal, Role, RosterOp, UserId,
};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn main() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let keys = DeviceKeys::generate(&mut rng);
    let other = DeviceKeys::generate(&mut rng);
    let key = FolderKey::generate(&mut rng);
    let id = |b: u8| EnvelopeId([b; 32]);
    let user = UserId::new("ann@example.test").unwrap();
    let wrap = |k: &DeviceKeys, rng: &mut ChaCha20Rng| KeyWrap {
        device: k.device_id(),
        sealed: key.seal_to(&k.exchange_public(), rng).unwrap(),
    };
    let point = |seq: u64| CutoffPoint { seq, id: id(seq as u8) };
    let cutoff = BTreeMap::from([(keys.device_id(), point(7)), (other.device_id(), point(2))]);
    let cutoffs = BTreeMap::from([(SpaceId([5; 32]), cutoff.clone())]);
    let membership = vec![
        MembershipOp::Found {
            nonce: [1; 16],
            wraps: vec![wrap(&keys, &mut rng)],
            exchange: keys.exchange_public(),
            team: Some(SpaceId([6; 32])),
        },
        MembershipOp::Grant {
            principal: Principal::Device(other.device_id()),
            role: Role::Editor,
            exchange: Some(other.exchange_public()),
            epoch: Some(id(2)),
            wraps: vec![wrap(&other, &mut rng)],
        },
        MembershipOp::Grant {
            principal: Principal::Group("ops".into()),
            role: Role::Manager,
            exchange: None,
            epoch: None,
            wraps: vec![],
        },
        MembershipOp::Remove {
            principal: Principal::User(user.clone()),
            to: Some(Role::Member),
            cutoff: cutoff.clone(),
        },
        MembershipOp::Rotate {
            wraps: vec![wrap(&keys, &mut rng), wrap(&other, &mut rng)],
            chain: vec![ChainLink {
                epoch: id(2),
                sealed: key.encrypt(&[9; 32], b"aad", &mut rng),
            }],
            cutoffs: vec![(id(4), cutoff.clone())],
        },
        MembershipOp::Rewrap {
            epoch: id(2),
            wraps: vec![wrap(&other, &mut rng)],
        },
    ];
    let roster = vec![
        RosterOp::Found {
            nonce: [2; 16],
            name: "Acme".into(),
            founder: user.clone(),
            exchange: keys.exchange_public(),
            transport: [8; 32],
        },
        RosterOp::AddUser { user: user.clone() },
        RosterOp::add_device(&SpaceId([6; 32]), user.clone(), &other, &[9; 32]),
        RosterOp::RevokeDevice {
            device: other.device_id(),
            cutoffs: cutoffs.clone(),
        },
        RosterOp::AddToGroup {
            group: "ops".into(),
            user: user.clone(),
        },
        RosterOp::RemoveFromGroup {
            group: "ops".into(),
            user: user.clone(),
            cutoffs,
        },
        RosterOp::HandOver { to: user },
    ];
    let ops: Vec<ControlOp> = membership
        .into_iter()
        .map(ControlOp::Membership)
        .chain(roster.into_iter().map(ControlOp::Roster))
        .collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let dir = root.join("membership_decode");
    fs::create_dir_all(&dir).unwrap();
    for (n, op) in ops.iter().enumerate() {
        fs::write(dir.join(format!("op{n:02}")), op.encode()).unwrap();
    }
    let dir = root.join("envelope_decode");
    fs::create_dir_all(&dir).unwrap();
    let body = |seq: u64, kind: Kind, payload: Vec<u8>| EnvelopeBody {
        version: ENVELOPE_VERSION,
        space: SpaceId([5; 32]),
        author: keys.device_id(),
        seq,
        prev: (seq > 1).then(|| id(seq as u8)),
        kind,
        context: vec![id(1), id(3)],
        epoch: (kind == Kind::Content || kind == Kind::Usage).then(|| id(2)),
        change: (kind == Kind::Content).then(|| ChangeHeader {
            incarnation: 1,
            seq: 4,
            deps: vec![id(6), id(7)],
        }),
        payload,
    };
    let mut envs = vec![
        body(
            3,
            Kind::Content,
            key.encrypt(b"an automerge change", b"", &mut rng),
        ),
        body(4, Kind::Usage, key.encrypt(b"revealed", b"", &mut rng)),
    ];
    for (n, op) in ops.iter().enumerate() {
        envs.push(body(n as u64 + 1, op.kind(), op.encode()));
    }
    for (n, b) in envs.into_iter().enumerate() {
        let env = Envelope::sign(b, &keys);
        fs::write(dir.join(format!("env{n:02}")), env.to_bytes()).unwrap();
    }
    // Audit records: a key record, sealed events, a shared event (sealed to
    // a folder's managers too), a checkpoint.
    let audit_dir = root.join("audit_decode");
    fs::create_dir_all(&audit_dir).unwrap();
    let mut writer = ChainWriter::new(keys.device_id());
    let readers = [(other.device_id(), other.exchange_public())];
    let mut records = Vec::new();
    let manager = DeviceKeys::generate(&mut rng);
    let managers = [(manager.device_id(), manager.exchange_public())];
    for (n, action) in [Action::Reveal, Action::TotpCopy, Action::Copy].into_iter().enumerate() {
        let event = AuditEvent {
            item_name: Some(format!("item {n}")),
            field: Some("password".into()),
            ..AuditEvent::new("ann@example.test", action)
        };
        let extra: &[_] = if n == 2 { &managers } else { &[] };
        records.extend(
            writer
                .append(&keys, &readers, extra, event, 1_000 + n as i64, &mut rng)
                .unwrap(),
        );
    }
    let through = (records[0].seq(), records[0].hash());
    records.push(writer.checkpoint(&keys, through, 1_000, 2_000));
    for (n, r) in records.iter().enumerate() {
        fs::write(audit_dir.join(format!("rec{n:02}")), r.bytes()).unwrap();
    }
    // Sync messages: one of each, the `/coffer/sync/3` ones included.
    let sync_dir = root.join("sync_decode");
    fs::create_dir_all(&sync_dir).unwrap();
    let tip = Tip {
        space: SpaceId([5; 32]),
        author: keys.device_id(),
        seq: 7,
        id: id(7),
        linked: true,
    };
    let summary = SpaceSummary {
        space: SpaceId([5; 32]),
        tips: vec![tip, Tip { linked: false, ..tip }],
    };
    let messages = [
        SyncMessage::Hello {
            version: 4,
            spaces: vec![summary.clone()],
        },
        SyncMessage::Summary {
            spaces: vec![summary.clone()],
        },
        SyncMessage::Envelopes {
            space: SpaceId([5; 32]),
            envelopes: vec![vec![1, 2, 3]],
        },
        SyncMessage::Caught {
            space: SpaceId([5; 32]),
        },
        SyncMessage::Error {
            code: PeerErrorCode::Malformed,
            text: "bad".into(),
        },
        SyncMessage::Time { unix_ms: 1_764_700_000_000 },
        SyncMessage::AuditHeads {
            heads: vec![(keys.device_id(), 3)],
        },
        SyncMessage::AuditRecords {
            records: vec![vec![9; 16]],
        },
        SyncMessage::HelloDigest {
            version: 4,
            digest: [0x42; 32],
        },
        SyncMessage::SpaceDigests {
            spaces: vec![(SpaceId([5; 32]), [0x43; 32])],
        },
        SyncMessage::Tips {
            spaces: vec![summary],
        },
    ];
    for (n, m) in messages.iter().enumerate() {
        fs::write(
            sync_dir.join(format!("msg{n:02}")),
            postcard::to_stdvec(m).unwrap(),
        )
        .unwrap();
    }
    println!("seeds written under {}", root.display());
}
