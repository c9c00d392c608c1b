//! Every import parser on arbitrary bytes: the first byte picks the format
//! (or auto-detection), the rest is the file. Must never panic.
#![no_main]

use coffer_daemon::import::{detect, parse, Format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, file)) = data.split_first() else {
        return;
    };
    let format = match Format::ALL.get(usize::from(pick) % (Format::ALL.len() + 1)) {
        Some(f) => *f,
        None => match detect(file) {
            Some(f) => f,
            None => return,
        },
    };
    // KDBX with a fixed password: the parser must fail cleanly on garbage.
    let _ = parse(format, file, Some("fuzz"));
});
