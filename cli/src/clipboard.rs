//! The system clipboard through the usual command-line tools (wl-copy, xclip,
//! xsel, pbcopy), cleared after a delay by a detached copy of this program,
//! only if it still holds what we put there.
//!
//! Nothing derived from the secret reaches a command line: the value goes to
//! the tool on its stdin, and the clearer (`coffer __clear-clipboard --after
//! N`) gets a random salt and SHA-256(salt ‖ value) on its stdin, so neither
//! the process list nor the clearer's memory holds the value or an unsalted
//! hash of it (a 6-digit code would fall to its hash at once).
//!
//! Clipboard managers are told the value is a password where the tool can:
//! `wl-copy --sensitive` (wl-clipboard versions whose `--help` lists it)
//! offers the `x-kde-passwordManagerHint` type that KDE's Klipper and
//! wl-clipboard-aware managers honour. xclip, xsel and pbcopy serve one type
//! only, so they cannot carry the hint.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::CliError;

/// Seconds before a copied secret is cleared, unless the flag or config say otherwise.
pub const DEFAULT_CLEAR_AFTER_SECS: u64 = 30;

struct Tool {
    copy: Vec<&'static str>,
    paste: &'static [&'static str],
    /// How to empty the clipboard (default: copy nothing).
    clear: Option<&'static [&'static str]>,
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
}

fn env_set(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty())
}

/// Whether this wl-copy knows `--sensitive` (wl-clipboard 2.2 and later).
fn wl_copy_has_sensitive() -> bool {
    Command::new("wl-copy")
        .arg("--help")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("--sensitive"))
}

fn tool() -> Option<Tool> {
    if cfg!(target_os = "macos") && on_path("pbcopy") {
        return Some(Tool {
            copy: vec!["pbcopy"],
            paste: &["pbpaste"],
            clear: None,
        });
    }
    if env_set("WAYLAND_DISPLAY") && on_path("wl-copy") {
        return Some(Tool {
            copy: vec!["wl-copy"],
            paste: &["wl-paste", "-n"],
            clear: Some(&["wl-copy", "--clear"]),
        });
    }
    if env_set("DISPLAY") {
        if on_path("xclip") {
            return Some(Tool {
                copy: vec!["xclip", "-selection", "clipboard"],
                paste: &["xclip", "-selection", "clipboard", "-o"],
                clear: None,
            });
        }
        if on_path("xsel") {
            return Some(Tool {
                copy: vec!["xsel", "--clipboard", "--input"],
                paste: &["xsel", "--clipboard", "--output"],
                clear: Some(&["xsel", "--clipboard", "--clear"]),
            });
        }
    }
    None
}

fn run_with_input(argv: &[&str], input: &[u8]) -> std::io::Result<bool> {
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    child
        .stdin
        .take()
        .map(|mut s| s.write_all(input))
        .transpose()?;
    Ok(child.wait()?.success())
}

fn salted_digest(salt: &[u8], value: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"coffer clipboard v1\0");
    h.update(salt);
    h.update(value);
    h.finalize().into()
}

/// Puts `value` on the clipboard and, unless `clear_after_secs` is 0,
/// schedules its clearing.
pub fn copy(value: &str, clear_after_secs: u64) -> Result<(), CliError> {
    let mut tool = tool().ok_or(CliError::NoClipboard)?;
    if tool.copy[0] == "wl-copy" && wl_copy_has_sensitive() {
        tool.copy.push("--sensitive");
    }
    match run_with_input(&tool.copy, value.as_bytes()) {
        Ok(true) => {}
        _ => return Err(CliError::NoClipboard),
    }
    if clear_after_secs == 0 {
        return Ok(());
    }
    let salt: [u8; 16] = rand::random();
    let tag = salted_digest(&salt, value.as_bytes());
    let exe = std::env::current_exe().map_err(|e| CliError::Other(e.to_string()))?;
    let mut cmd = Command::new(exe);
    cmd.args([
        "__clear-clipboard",
        "--after",
        &clear_after_secs.to_string(),
    ]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid is async-signal-safe; the clearer outlives this command.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let fail =
        |e: std::io::Error| CliError::Other(format!("cannot schedule clipboard clearing: {e}"));
    let mut child = cmd.spawn().map_err(fail)?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    writeln!(stdin, "{} {}", hex::encode(salt), hex::encode(tag)).map_err(fail)?;
    Ok(())
}

/// The clearer: reads `SALT_HEX TAG_HEX` from stdin, waits, then empties the
/// clipboard if it still holds the value with that salted digest.
pub fn clear_later(after_secs: u64) {
    let mut line = String::new();
    // At most one short line: never more than that from stdin.
    let _ = std::io::stdin().take(256).read_to_string(&mut line);
    let Some((salt, tag)) = line.trim().split_once(' ') else {
        return;
    };
    let (Ok(salt), Ok(tag)) = (hex::decode(salt), hex::decode(tag)) else {
        return;
    };
    std::thread::sleep(std::time::Duration::from_secs(after_secs));
    let Some(tool) = tool() else { return };
    let current = Command::new(tool.paste[0])
        .args(&tool.paste[1..])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    if let Ok(out) = current {
        let still_ours = salted_digest(&salt, &out.stdout)[..] == tag[..];
        let mut pasted = out.stdout;
        zeroize::Zeroize::zeroize(&mut pasted);
        if still_ours {
            match tool.clear {
                Some(argv) => {
                    let _ = Command::new(argv[0])
                        .args(&argv[1..])
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                }
                None => {
                    let _ = run_with_input(&tool.copy, b"");
                }
            }
        }
    }
}
