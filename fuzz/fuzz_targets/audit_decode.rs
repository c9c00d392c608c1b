//! `audit::Record::decode` never panics, what it accepts re-encodes to the
//! very same bytes (one canonical form, one hash), and the chain verifier
//! takes any bytes filed anywhere without panicking.
#![no_main]

use coffer_decoders::audit::{verify, Record, Row};
use coffer_decoders::ids::DeviceId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoded = Record::decode(data);
    if let Ok(r) = &decoded {
        assert_eq!(r.bytes(), data);
        let again = Record::decode(r.bytes()).expect("canonical bytes decode");
        assert_eq!(again.hash(), r.hash());
        let _ = r.verify_signature();
    }
    let (device, seq) = decoded
        .as_ref()
        .map(|r| (r.device(), r.seq()))
        .unwrap_or((DeviceId([7; 32]), 1));
    let reports = verify([
        Row {
            device,
            seq,
            bytes: data.to_vec(),
        },
        Row {
            device,
            seq: seq.saturating_add(2),
            bytes: data.to_vec(),
        },
    ]);
    assert_eq!(reports.len(), 1);
});
