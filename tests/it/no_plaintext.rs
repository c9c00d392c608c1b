//! No plaintext: after storing known unique secrets, no file under the data
//! dir (SQLite file, -wal and -shm included, while running, after kill -9
//! and after a clean stop) holds any of them, nor does the daemon's
//! `RUST_LOG=trace` log; the PIN neither.

use std::path::Path;

use coffer_tests::{contains_bytes, files_under, Daemon, Options};
use rand::Rng;

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn base32(bytes: &[u8]) -> String {
    let mut out = String::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | b as u32;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(BASE32[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Each secret as bytes, with a label for the failure message.
struct Secrets(Vec<(String, Vec<u8>)>);

impl Secrets {
    fn add(&mut self, label: &str, bytes: impl Into<Vec<u8>>) {
        self.0.push((label.to_string(), bytes.into()));
    }

    fn assert_absent(&self, what: &str, haystack: &[u8]) {
        for (label, needle) in &self.0 {
            assert!(
                !contains_bytes(haystack, needle),
                "{what} contains the {label} ({:?}) in plaintext",
                String::from_utf8_lossy(needle)
            );
        }
    }

    /// Reads every file under `dir` (returns their names).
    fn assert_absent_under(&self, dir: &Path) -> Vec<String> {
        let files = files_under(dir);
        assert!(!files.is_empty(), "nothing under {}", dir.display());
        for file in &files {
            let bytes = std::fs::read(file)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
            self.assert_absent(&file.display().to_string(), &bytes);
        }
        files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }
}

#[test]
fn secrets_never_reach_disk_or_logs_in_plaintext() {
    let mut rng = rand::thread_rng();
    let tag: String = (0..12)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.gen_range(0..36)]))
        .collect();
    let pin = format!("pin-{tag}-pin");
    let wrong_pin = format!("wrong-{tag}-pin");
    let password = format!("Pw1-{tag}-Hunter2!");
    let password2 = format!("Pw2-{tag}-Rotated#");
    let note_line1 = format!("note-{tag}-first line");
    let note_line2 = format!("second {tag} line of the note");
    let note = format!("{note_line1}\n{note_line2}");
    let card: String = std::iter::once('4')
        .chain((0..15).map(|_| char::from(b'0' + rng.gen_range(0..10u8))))
        .collect();
    let totp_key: [u8; 20] = rng.gen();
    let totp_secret = base32(&totp_key);
    let linked_key: [u8; 20] = rng.gen();
    let linked_secret = base32(&linked_key);

    let mut secrets = Secrets(Vec::new());
    secrets.add("PIN", pin.as_str());
    secrets.add("wrong PIN", wrong_pin.as_str());
    for (label, pw) in [("password", &password), ("earlier password", &password2)] {
        secrets.add(label, pw.as_str());
        secrets.add(&format!("{label} (hex)"), hex_lower(pw.as_bytes()));
    }
    secrets.add("note's first line", note_line1.as_str());
    secrets.add("note's second line", note_line2.as_str());
    secrets.add("card number", card.as_str());
    secrets.add("TOTP secret", totp_secret.as_str());
    secrets.add("TOTP secret (lowercase)", totp_secret.to_lowercase());
    secrets.add("TOTP key bytes", totp_key.to_vec());
    secrets.add("linked TOTP secret", linked_secret.as_str());
    secrets.add("linked TOTP key bytes", linked_key.to_vec());

    let mut d = Daemon::start_with(Options {
        env: vec![("RUST_LOG".into(), "trace".into())],
        ..Options::default()
    });
    d.init_with_pin(&pin);
    d.add_login(
        "bank",
        &password,
        &["--username", "jane", "--url", "https://bank.example"],
    );
    d.ok(
        &["edit", "bank", "--password-stdin"],
        format!("{password2}\n"),
    );
    d.ok(
        &["totp", "set", "bank"],
        format!("otpauth://totp/Bank:jane?secret={linked_secret}&issuer=Bank\n"),
    );
    d.ok(&["add", "note", "diary"], format!("{note}\n"));
    d.ok(
        &[
            "add", "card", "visa", "--holder", "Jane", "--expiry", "12/30",
        ],
        format!("{card}\n321\n"),
    );
    d.ok(&["add", "totp", "2fa"], format!("{totp_secret}\n"));
    // Everything reads back (so it really was stored), including history.
    let check_readback = |d: &Daemon| {
        assert_eq!(
            d.ok(&["get", "bank", "--field", "password"], ""),
            format!("{password2}\n")
        );
        assert!(d
            .ok(&["history", "bank", "--reveal"], "")
            .contains(&password));
        assert_eq!(
            d.ok(&["get", "diary", "--field", "notes"], ""),
            format!("{note}\n")
        );
        assert_eq!(
            d.ok(&["get", "visa", "--field", "number"], ""),
            format!("{card}\n")
        );
        assert!(d
            .ok(&["get", "2fa", "--field", "totp"], "")
            .contains(&totp_secret));
        d.ok(&["totp", "2fa"], "");
        d.ok(&["totp", "bank"], "");
        d.ok(&["search", "bank"], "");
    };
    check_readback(&d);

    // While running.
    secrets.assert_absent_under(d.data_dir());
    // After kill -9: the WAL still holds the recent writes.
    d.kill9();
    let files = secrets.assert_absent_under(d.data_dir());
    assert!(
        files.iter().any(|f| f.ends_with("-wal")),
        "expected a SQLite WAL after kill -9 (files: {files:?})"
    );
    assert!(files.iter().any(|f| f == "vault.sqlite3"), "{files:?}");

    // Unlock (wrong, then right PIN) and read everything with tracing on.
    d.spawn();
    d.fails(&["unlock", "--pin-stdin"], format!("{wrong_pin}\n"), 7);
    d.ok(&["unlock", "--pin-stdin"], format!("{pin}\n"));
    check_readback(&d);
    d.ok(&["lock"], "");
    d.stop();
    secrets.assert_absent_under(d.data_dir());

    let log = std::fs::read(&d.log).expect("daemon log");
    let text = String::from_utf8_lossy(&log);
    assert!(
        text.contains("DEBUG") || text.contains("TRACE"),
        "RUST_LOG=trace did not reach the daemon; log:\n{text}"
    );
    assert!(
        text.contains("wrong PIN"),
        "the failed unlock is not logged"
    );
    secrets.assert_absent("the daemon's RUST_LOG=trace log", &log);
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn base32_helper_matches_rfc4648() {
    // The helper above must agree with the RFC 4648 test vectors, or the
    // TOTP secrets it makes would test nothing.
    assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
    assert_eq!(
        base32(b"12345678901234567890"),
        "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
    );
}
