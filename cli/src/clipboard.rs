//! The system clipboard through the usual command-line tools (wl-copy, xclip,
//! xsel, pbcopy), cleared after a delay by a detached copy of this program,
//! only if it still holds what we put there.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::CliError;

/// Seconds before a copied secret is cleared.
pub const CLEAR_AFTER_SECS: u64 = 30;

struct Tool {
    copy: &'static [&'static str],
    paste: &'static [&'static str],
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
}

fn env_set(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty())
}

fn tool() -> Option<Tool> {
    if cfg!(target_os = "macos") && on_path("pbcopy") {
        return Some(Tool {
            copy: &["pbcopy"],
            paste: &["pbpaste"],
        });
    }
    if env_set("WAYLAND_DISPLAY") && on_path("wl-copy") {
        return Some(Tool {
            copy: &["wl-copy"],
            paste: &["wl-paste", "-n"],
        });
    }
    if env_set("DISPLAY") {
        if on_path("xclip") {
            return Some(Tool {
                copy: &["xclip", "-selection", "clipboard"],
                paste: &["xclip", "-selection", "clipboard", "-o"],
            });
        }
        if on_path("xsel") {
            return Some(Tool {
                copy: &["xsel", "--clipboard", "--input"],
                paste: &["xsel", "--clipboard", "--output"],
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

fn digest(value: &[u8]) -> String {
    hex::encode(Sha256::digest(value))
}

/// Puts `value` on the clipboard and schedules its clearing.
pub fn copy(value: &str) -> Result<(), CliError> {
    let tool = tool().ok_or(CliError::NoClipboard)?;
    match run_with_input(tool.copy, value.as_bytes()) {
        Ok(true) => {}
        _ => return Err(CliError::NoClipboard),
    }
    let exe = std::env::current_exe().map_err(|e| CliError::Other(e.to_string()))?;
    let mut cmd = Command::new(exe);
    cmd.args([
        "__clear-clipboard",
        "--after",
        &CLEAR_AFTER_SECS.to_string(),
        "--sha256",
        &digest(value.as_bytes()),
    ]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid is async-signal-safe; the clearer outlives this command.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    cmd.spawn()
        .map_err(|e| CliError::Other(format!("cannot schedule clipboard clearing: {e}")))?;
    Ok(())
}

/// Waits, then empties the clipboard if it still holds the value with `sha256`.
pub fn clear_later(after_secs: u64, sha256: &str) {
    std::thread::sleep(std::time::Duration::from_secs(after_secs));
    let Some(tool) = tool() else { return };
    let current = Command::new(tool.paste[0])
        .args(&tool.paste[1..])
        .stderr(Stdio::null())
        .output();
    if let Ok(out) = current {
        if digest(&out.stdout) == sha256 {
            let _ = run_with_input(tool.copy, b"");
        }
    }
}
