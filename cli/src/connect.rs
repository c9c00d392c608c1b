//! Finding the daemon: connect to the socket, or start `cofferd` and wait for
//! it (as gpg does with gpg-agent), so a newcomer never has to.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use coffer_ipc::{Client, ClientError};

use crate::CliError;

/// How to reach (or start) the daemon.
pub struct Target {
    pub socket: PathBuf,
    pub data_dir: Option<PathBuf>,
    pub autostart: bool,
}

fn daemon_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("cofferd")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("cofferd"))
}

fn nobody_listening(err: &ClientError) -> bool {
    matches!(err, ClientError::Connect { source, .. }
        if matches!(source.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused))
}

/// Whether this command runs with the default socket, data dir and daemon
/// settings: only then may an installed service (which knows no others)
/// stand in for a daemon started here.
fn default_settings(target: &Target) -> bool {
    let custom_env = [
        "COFFER_CONFIG",
        "COFFER_LISTEN",
        "COFFER_NO_MDNS",
        "COFFER_NO_NETWORK",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some());
    !custom_env
        && target.socket == coffer_ipc::paths::default_socket_path()
        && target
            .data_dir
            .as_ref()
            .is_none_or(|d| *d == coffer_ipc::paths::default_data_dir())
}

/// Waits up to `within` for a daemon to answer on the socket.
fn wait_for_socket(socket: &Path, within: Duration) -> Option<Client> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(client) = Client::connect(socket) {
            return Some(client);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Connects to the daemon, starting it first when nothing answers: through
/// the installed login service (systemd user unit, launchd agent) when there
/// is one and the settings are the defaults, else as a detached process.
pub fn connect_or_start(target: &Target) -> Result<Client, CliError> {
    match Client::connect(&target.socket) {
        Ok(client) => return Ok(client),
        Err(e) if target.autostart && nobody_listening(&e) => {}
        Err(e) => return Err(CliError::Unavailable(e.to_string())),
    }
    if default_settings(target) {
        if let Some(started) = crate::service::start_installed() {
            let within = Duration::from_secs(if started.is_ok() { 15 } else { 1 });
            if let Some(client) = wait_for_socket(&target.socket, within) {
                return Ok(client);
            }
            if let Err(e) = started {
                eprintln!("coffer: warning: the installed service did not start ({e}); starting cofferd directly");
            }
        }
    }
    let data_dir = target
        .data_dir
        .clone()
        .unwrap_or_else(coffer_ipc::paths::default_data_dir);
    fs::create_dir_all(&data_dir)
        .map_err(|e| CliError::Unavailable(format!("cannot create {}: {e}", data_dir.display())))?;
    let log_path = data_dir.join("cofferd.log");
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| CliError::Unavailable(format!("cannot open {}: {e}", log_path.display())))?;
    let mut cmd = Command::new(daemon_binary());
    cmd.arg("--socket")
        .arg(&target.socket)
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--log-file")
        .arg(&log_path);
    // stderr too, for what cofferd says before it opens the log itself.
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
    // SAFETY: setsid is async-signal-safe; it detaches the daemon from our
    // terminal so Ctrl-C on this command does not stop it.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        CliError::Unavailable(format!(
            "cannot start cofferd ({e}); is it installed beside coffer?"
        ))
    })?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match Client::connect(&target.socket) {
            Ok(client) => return Ok(client),
            Err(e) if !nobody_listening(&e) => return Err(CliError::Unavailable(e.to_string())),
            Err(_) => {}
        }
        if let Ok(Some(status)) = child.try_wait() {
            // Usually another CLI started a daemon first and ours lost the
            // data-dir lock: wait a little for the winner to listen.
            let grace = Instant::now() + Duration::from_secs(5);
            while Instant::now() < grace.min(deadline) {
                if let Ok(client) = Client::connect(&target.socket) {
                    return Ok(client);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            return Err(CliError::Unavailable(format!(
                "cofferd exited ({status}) before it was ready; see {}:\n{}",
                log_path.display(),
                tail(&log_path)
            )));
        }
        if Instant::now() > deadline {
            return Err(CliError::Unavailable(format!(
                "cofferd did not answer on {} within 15 s",
                target.socket.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}
