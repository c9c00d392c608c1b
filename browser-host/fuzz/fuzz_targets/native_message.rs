//! The native messaging host's input: the browser's frames (a 4-byte
//! native-endian length, then JSON), decoded with the host's own bounded
//! codec, each frame through the request filter. Nothing may panic, and a
//! frame over the limit must be refused before it is buffered.
#![no_main]

use bytes::BytesMut;
use coffer_browser_host::{parse_request, request_codec, MAX_REQUEST_BYTES};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let mut codec = request_codec();
    while let Ok(Some(frame)) = codec.decode(&mut buf) {
        assert!(frame.len() <= MAX_REQUEST_BYTES);
        if let Ok(f) = parse_request(&frame) {
            assert!(coffer_ipc_names().contains(&f.method));
        }
    }
    let _ = parse_request(data);
});

fn coffer_ipc_names() -> [&'static str; 4] {
    ["browser.find", "browser.fill", "browser.totp", "browser.save"]
}
