//! Control-op payloads (membership and roster) never panic the decoder, and
//! what decodes re-encodes to the same bytes.
#![no_main]

use coffer_decoders::envelope::Kind;
use coffer_decoders::ops::ControlOp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for kind in [Kind::Membership, Kind::Roster] {
        if let Ok(op) = ControlOp::decode(kind, data) {
            assert_eq!(op.encode(), data);
            let _ = op.is_removal();
        }
    }
});
