//! `Envelope::decode` never panics, and what it accepts re-encodes to the
//! very same bytes (one canonical form, one id).
#![no_main]

use coffer_decoders::envelope::Envelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = Envelope::decode(data) {
        assert_eq!(env.to_bytes(), data);
        assert_eq!(env.wire_len(), data.len());
        let again = Envelope::decode(&env.to_bytes()).expect("canonical bytes decode");
        assert_eq!(again.id(), env.id());
        let _ = env.verify_signature();
    }
});
