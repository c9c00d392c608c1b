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
//! Clipboard managers are told the value is a password: `wl-copy
//! --sensitive` on Wayland (wl-clipboard versions whose `--help` lists it),
//! and on X11 a detached `coffer __clipboard-x11` that serves the value
//! itself (arboard) beside the `x-kde-passwordManagerHint` target, which
//! KDE's Klipper and most X11 clipboard managers honour by not keeping it.
//! That server gets the value on its stdin, exits when another program takes
//! the clipboard, and at the deadline gives the selection up (the
//! clipboard empties) if it still holds it. xclip and xsel are used only when
//! that server cannot connect; pbcopy (macOS) cannot carry the hint.

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
    let wayland = env_set("WAYLAND_DISPLAY") && on_path("wl-copy");
    let x11 = !cfg!(target_os = "macos") && !wayland && env_set("DISPLAY");
    if x11 && x11::copy(value, clear_after_secs).is_ok() {
        return Ok(());
    }
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
    let fail =
        |e: std::io::Error| CliError::Other(format!("cannot schedule clipboard clearing: {e}"));
    let after = clear_after_secs.to_string();
    let mut child = spawn_detached(&["__clear-clipboard", "--after", &after]).map_err(fail)?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    writeln!(stdin, "{} {}", hex::encode(salt), hex::encode(tag)).map_err(fail)?;
    Ok(())
}

/// A detached copy of this program, started with `args` in a session of its
/// own, stdin and stdout piped, stderr to /dev/null.
fn spawn_detached(args: &[&str]) -> std::io::Result<std::process::Child> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // SAFETY: setsid is async-signal-safe; the child outlives this command.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    cmd.spawn()
}

/// The X11 clipboard, served by `coffer __clipboard-x11` with the
/// password-manager hint.
mod x11 {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::time::{Duration, Instant};

    use zeroize::Zeroizing;

    /// The most `__clipboard-x11` reads from stdin.
    const MAX_VALUE: u64 = 1 << 20;

    /// Starts the server, hands it the value and waits for its "ok" (it
    /// then holds the selection).
    pub fn copy(value: &str, clear_after_secs: u64) -> Result<(), String> {
        let after = clear_after_secs.to_string();
        let mut child = super::spawn_detached(&["__clipboard-x11", "--after", &after])
            .map_err(|e| e.to_string())?;
        {
            let mut stdin = child.stdin.take().expect("piped stdin");
            stdin
                .write_all(value.as_bytes())
                .map_err(|e| e.to_string())?;
        }
        // Its answer, or nothing within 10 s (an X server that hangs): then
        // it is stopped and the caller falls back to a tool.
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout.take(512)).read_line(&mut line);
            let _ = tx.send(line);
        });
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(line) if line.trim_end() == "ok" => Ok(()),
            Ok(line) => {
                let _ = child.wait();
                Err(line.trim_end().to_string())
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                Err("the X11 clipboard server did not answer within 10 s".into())
            }
        }
    }

    /// `coffer __clipboard-x11 --after SECS`: reads the value from stdin,
    /// owns the X11 clipboard with it (and the hint), says "ok" (or
    /// "error: ...") on stdout, then serves it until another program takes
    /// the clipboard or, unless `after_secs` is 0, until the deadline, when
    /// it gives the selection up if it still holds it.
    #[cfg(all(unix, not(target_os = "macos")))]
    pub fn serve(after_secs: u64) -> u8 {
        use arboard::{Clipboard, SetExtLinux};

        let mut value = Zeroizing::new(String::new());
        if std::io::stdin()
            .take(MAX_VALUE)
            .read_to_string(&mut value)
            .is_err()
        {
            println!("error: the value on stdin is not UTF-8");
            return 1;
        }
        let mut clipboard = match Clipboard::new() {
            Ok(c) => c,
            Err(e) => {
                println!("error: {e}");
                return 1;
            }
        };
        if let Err(e) = clipboard
            .set()
            .exclude_from_history()
            .text(value.as_str().to_owned())
        {
            println!("error: {e}");
            return 1;
        }
        println!("ok");
        let _ = std::io::stdout().flush();
        let deadline = (after_secs > 0).then(|| Instant::now() + Duration::from_secs(after_secs));
        loop {
            let wait = Duration::from_millis(250);
            match deadline {
                Some(d) if Instant::now() >= d => break,
                Some(d) => {
                    std::thread::sleep(wait.min(d.saturating_duration_since(Instant::now())))
                }
                None => std::thread::sleep(wait),
            }
            let current = clipboard.get_text().map(Zeroizing::new);
            if !current.is_ok_and(|c| *c == *value) {
                // Another program owns the clipboard now: leave it alone.
                return 0;
            }
        }
        // Dropping the last handle gives the selection up when this process
        // still owns it (arboard does so for data with the hint), so the
        // clipboard empties and no manager takes the value over.
        drop(clipboard);
        0
    }

    #[cfg(not(all(unix, not(target_os = "macos"))))]
    pub fn serve(_after_secs: u64) -> u8 {
        println!("error: no X11 clipboard on this platform");
        1
    }
}

pub use x11::serve as serve_x11;

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
