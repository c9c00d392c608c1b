//! The enrolment messages a peer sends and the codes a user types.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    coffer_daemon::net::enrol::fuzz_decoders(data);
});
