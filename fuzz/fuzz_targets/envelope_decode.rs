//! `Envelope::decode` never panics, and what it accepts re-encodes to the
//! very same bytes (one canonical form, one id).
#![no_main]

use coffer_decoders::envelope::Envelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = Envelope::decode(data) {
        assert_eq!(env.bytes(), data);
        let again = Envelope::decode(env.bytes()).expect("canonical bytes decode");
        assert_eq!(again.id(), env.id());
        let _ = env.verify_signature();
    }
});
