//! A sync frame's body as `cofferd` decodes it (`net/protocol.rs::decode`:
//! postcard, no trailing bytes, the message's bounds) never panics, and
//! what it accepts encodes and decodes back to the same message. Covers
//! every `SyncMessage`, the `/coffer/sync/3` ones (`HelloDigest`,
//! `SpaceDigests`, `Tips`) included.
#![no_main]

use coffer_decoders::sync_wire::SyncMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok((msg, rest)) = postcard::take_from_bytes::<SyncMessage>(data) else {
        return;
    };
    if !rest.is_empty() || !msg.within_bounds() {
        return;
    }
    let bytes = postcard::to_stdvec(&msg).expect("a decoded message encodes");
    let again: SyncMessage = postcard::from_bytes(&bytes).expect("its encoding decodes");
    assert_eq!(again, msg);
});
