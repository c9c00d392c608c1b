//! `coffer service install|uninstall|status`: cofferd as a login service —
//! the systemd user unit on Linux, the launchd agent on macOS — and how the
//! autostart path (`connect.rs`) starts that service instead of a detached
//! daemon when one is installed, so there is only ever one daemon.
//!
//! Both platforms' code is compiled everywhere (chosen at run time), so the
//! macOS half is at least type-checked and its rendering unit-tested on Linux.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Subcommand;
use coffer_ipc::methods as m;
use serde::Serialize;

use crate::{output, CliError, Ctx};

/// The unit as packaged (ExecStart=/usr/bin/cofferd).
pub const SYSTEMD_UNIT: &str = include_str!("../../packaging/systemd/cofferd.service");
const UNIT_NAME: &str = "cofferd.service";
const PACKAGED_BINARY: &str = "/usr/bin/cofferd";
/// First line of a unit or plist this command wrote (and may replace or remove).
const MARKER: &str = "Written by `coffer service install`";
pub const LAUNCHD_LABEL: &str = "com.coffer.cofferd";

#[derive(Subcommand, Debug)]
pub enum ServiceCommand {
    /// Install cofferd as a login service (systemd user unit / launchd agent), enable and start it.
    Install {
        /// Enable it for the next login, but do not start it now.
        #[arg(long)]
        no_start: bool,
    },
    /// Stop, disable and remove the service this command installed.
    Uninstall,
    /// Whether the service is installed, enabled and running, and which daemon answers.
    Status,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Manager {
    Systemd,
    Launchd,
}

fn manager() -> Manager {
    if cfg!(target_os = "macos") {
        Manager::Launchd
    } else {
        Manager::Systemd
    }
}

/// What `coffer service status` reports (also `install`/`uninstall` with `--json`).
#[derive(Debug, Serialize)]
pub struct ServiceStatus {
    pub manager: Manager,
    /// The unit or plist file in use, if installed.
    pub file: Option<String>,
    /// Whether it starts at login.
    pub enabled: bool,
    /// Whether the service manager runs it now.
    pub active: bool,
    /// The service's process, as the manager sees it.
    pub service_pid: Option<u32>,
    /// The daemon that answers on the socket (the service's or another).
    pub daemon_pid: Option<u32>,
}

fn home() -> Result<PathBuf, CliError> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| CliError::Service("HOME is not set".into()))
}

/// `cofferd` beside this `coffer`, with links resolved.
pub fn daemon_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let exe = std::fs::canonicalize(exe).ok()?;
    let d = exe.parent()?.join("cofferd");
    d.is_file().then_some(d)
}

fn run_quiet(program: &str, args: &[&str]) -> Result<std::process::Output, CliError> {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| CliError::Service(format!("cannot run {program}: {e}")))
}

fn checked(program: &str, args: &[&str]) -> Result<String, CliError> {
    let out = run_quiet(program, args)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(CliError::Service(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

// ---------------------------------------------------------------- systemd

fn user_unit_dir() -> Result<PathBuf, CliError> {
    Ok(
        match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => home()?.join(".config"),
        }
        .join("systemd/user"),
    )
}

/// Where packages put user units (`/usr/lib/systemd/user` from the .deb).
const SYSTEM_USER_UNIT_DIRS: &[&str] = &[
    "/etc/systemd/user",
    "/usr/local/lib/systemd/user",
    "/usr/lib/systemd/user",
];

/// The unit file systemd would load: the user's own first, then the system's.
fn installed_unit() -> Option<PathBuf> {
    let user = user_unit_dir().ok().map(|d| d.join(UNIT_NAME));
    user.into_iter()
        .chain(
            SYSTEM_USER_UNIT_DIRS
                .iter()
                .map(|d| Path::new(d).join(UNIT_NAME)),
        )
        .find(|p| p.is_file())
}

/// Quotes a path for ExecStart= when it needs it (systemd.syntax(7)).
fn exec_path(path: &Path) -> String {
    let s = path.display().to_string();
    if s.contains([' ', '"', '\\', '\'']) {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        s
    }
}

/// The packaged unit with ExecStart at `cofferd`, marked as ours.
pub fn render_unit(cofferd: &Path) -> String {
    let mut out = format!("# {MARKER}; `coffer service uninstall` removes it.\n");
    for line in SYSTEMD_UNIT.lines() {
        if line.starts_with("ExecStart=") {
            out.push_str(&format!("ExecStart={}\n", exec_path(cofferd)));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn systemctl(args: &[&str]) -> Result<String, CliError> {
    let mut full = vec!["--user"];
    full.extend_from_slice(args);
    checked("systemctl", &full)
}

fn systemd_usable() -> Result<(), CliError> {
    systemctl(&["show-environment"]).map(|_| ()).map_err(|e| {
        CliError::Service(format!(
            "no systemd user manager answers here ({e}); without one, `coffer` starts cofferd itself when needed"
        ))
    })
}

fn systemd_status(daemon_pid: Option<u32>) -> ServiceStatus {
    let file = installed_unit();
    let query = |what: &str| {
        run_quiet("systemctl", &["--user", what, UNIT_NAME])
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let pid = run_quiet(
        "systemctl",
        &["--user", "show", "-p", "MainPID", "--value", UNIT_NAME],
    )
    .ok()
    .and_then(|o| {
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse::<u32>()
            .ok()
    })
    .filter(|p| *p > 0);
    ServiceStatus {
        manager: Manager::Systemd,
        file: file.map(|f| f.display().to_string()),
        enabled: query("is-enabled") == "enabled",
        active: query("is-active") == "active",
        service_pid: pid,
        daemon_pid,
    }
}

fn systemd_install(ctx: &mut Ctx, no_start: bool) -> Result<ServiceStatus, CliError> {
    systemd_usable()?;
    let cofferd = daemon_binary().ok_or_else(|| {
        CliError::Service("cofferd is not beside this coffer binary: install both together".into())
    })?;
    let user_unit = user_unit_dir()?.join(UNIT_NAME);
    let packaged = SYSTEM_USER_UNIT_DIRS
        .iter()
        .map(|d| Path::new(d).join(UNIT_NAME))
        .find(|p| p.is_file());
    let ours = |p: &Path| std::fs::read_to_string(p).is_ok_and(|t| t.contains(MARKER));
    if packaged.is_some() && cofferd == Path::new(PACKAGED_BINARY) {
        // The package's unit runs this very binary: use it as it is.
        if user_unit.is_file() && ours(&user_unit) {
            let _ = std::fs::remove_file(&user_unit);
        }
    } else {
        if user_unit.is_file() && !ours(&user_unit) {
            return Err(CliError::Service(format!(
                "{} exists and was not written by coffer: remove it first",
                user_unit.display()
            )));
        }
        let dir = user_unit_dir()?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| CliError::Service(format!("cannot create {}: {e}", dir.display())))?;
        std::fs::write(&user_unit, render_unit(&cofferd))
            .map_err(|e| CliError::Service(format!("cannot write {}: {e}", user_unit.display())))?;
    }
    systemctl(&["daemon-reload"])?;
    systemctl(&["enable", UNIT_NAME])?;
    if !no_start {
        let status = systemd_status(None);
        take_over_from_detached(ctx, status.service_pid)?;
        systemctl(&["start", UNIT_NAME])?;
    }
    Ok(systemd_status(daemon_pid(ctx)))
}

fn systemd_uninstall() -> Result<Vec<String>, CliError> {
    systemd_usable()?;
    // Not loaded or already stopped is fine.
    let _ = run_quiet("systemctl", &["--user", "disable", "--now", UNIT_NAME]);
    let mut removed = Vec::new();
    let user_unit = user_unit_dir()?.join(UNIT_NAME);
    if std::fs::read_to_string(&user_unit).is_ok_and(|t| t.contains(MARKER)) {
        std::fs::remove_file(&user_unit).map_err(|e| {
            CliError::Service(format!("cannot remove {}: {e}", user_unit.display()))
        })?;
        removed.push(user_unit.display().to_string());
    }
    systemctl(&["daemon-reload"])?;
    Ok(removed)
}

// ---------------------------------------------------------------- launchd

fn plist_path() -> Result<PathBuf, CliError> {
    Ok(home()?
        .join("Library/LaunchAgents")
        .join(format!("{LAUNCHD_LABEL}.plist")))
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The launchd agent: runs `cofferd --socket SOCKET --log-file LOG` at
/// login, restarts it only after a crash (an exit, clean or "already
/// running", stays an exit), logs to `log` (rotated by cofferd by size;
/// launchd's own redirection catches what comes before), umask 077.
pub fn render_plist(cofferd: &Path, socket: &Path, log: &Path) -> String {
    let e = |p: &Path| xml_escape(&p.display().to_string());
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- {MARKER}; `coffer service uninstall` removes it. -->
<plist version="1.0">
<dict>
  <key>Label</key><string>{LAUNCHD_LABEL}</string>
  <key>ProgramArguments</key>
  <array>
    <string>{}</string>
    <string>--socket</string>
    <string>{}</string>
    <string>--log-file</string>
    <string>{}</string>
  </array>
  <key>RunAtLoad</key><true/>
  <key>KeepAlive</key>
  <dict><key>Crashed</key><true/></dict>
  <key>ThrottleInterval</key><integer>10</integer>
  <key>ProcessType</key><string>Background</string>
  <key>Umask</key><integer>63</integer>
  <key>StandardOutPath</key><string>{}</string>
  <key>StandardErrorPath</key><string>{}</string>
</dict>
</plist>
"#,
        e(cofferd),
        e(socket),
        e(log),
        e(log),
        e(log)
    )
}

fn launchd_domain() -> String {
    // SAFETY: getuid has no preconditions and cannot fail.
    format!("gui/{}", unsafe { libc::getuid() })
}

fn launchd_status(daemon_pid: Option<u32>) -> ServiceStatus {
    let file = plist_path().ok().filter(|p| p.is_file());
    let target = format!("{}/{LAUNCHD_LABEL}", launchd_domain());
    let printed = run_quiet("launchctl", &["print", &target])
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let pid = printed.as_deref().and_then(|text| {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix("pid = "))
            .find_map(|p| p.trim().parse::<u32>().ok())
    });
    ServiceStatus {
        manager: Manager::Launchd,
        file: file.as_ref().map(|f| f.display().to_string()),
        enabled: file.is_some() && printed.is_some(),
        active: pid.is_some(),
        service_pid: pid,
        daemon_pid,
    }
}

fn launchd_install(ctx: &mut Ctx, no_start: bool) -> Result<ServiceStatus, CliError> {
    let cofferd = daemon_binary().ok_or_else(|| {
        CliError::Service("cofferd is not beside this coffer binary: install both together".into())
    })?;
    let plist = plist_path()?;
    if plist.is_file() && !std::fs::read_to_string(&plist).is_ok_and(|t| t.contains(MARKER)) {
        return Err(CliError::Service(format!(
            "{} exists and was not written by coffer: remove it first",
            plist.display()
        )));
    }
    let log_dir = home()?.join("Library/Logs/Coffer");
    std::fs::create_dir_all(&log_dir)
        .map_err(|e| CliError::Service(format!("cannot create {}: {e}", log_dir.display())))?;
    if let Some(dir) = plist.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::Service(format!("cannot create {}: {e}", dir.display())))?;
    }
    std::fs::write(
        &plist,
        render_plist(&cofferd, &ctx.target.socket, &log_dir.join("cofferd.log")),
    )
    .map_err(|e| CliError::Service(format!("cannot write {}: {e}", plist.display())))?;
    let domain = launchd_domain();
    let target = format!("{domain}/{LAUNCHD_LABEL}");
    // A previous version of the agent, if loaded, goes first.
    let _ = run_quiet("launchctl", &["bootout", &target]);
    if !no_start {
        take_over_from_detached(ctx, None)?;
    }
    let plist_arg = plist.display().to_string();
    checked("launchctl", &["bootstrap", &domain, &plist_arg])?;
    if !no_start {
        checked("launchctl", &["kickstart", &target])?;
    }
    Ok(launchd_status(daemon_pid(ctx)))
}

fn launchd_uninstall() -> Result<Vec<String>, CliError> {
    let target = format!("{}/{LAUNCHD_LABEL}", launchd_domain());
    let _ = run_quiet("launchctl", &["bootout", &target]);
    let plist = plist_path()?;
    let mut removed = Vec::new();
    if std::fs::read_to_string(&plist).is_ok_and(|t| t.contains(MARKER)) {
        std::fs::remove_file(&plist)
            .map_err(|e| CliError::Service(format!("cannot remove {}: {e}", plist.display())))?;
        removed.push(plist.display().to_string());
    }
    Ok(removed)
}

// ---------------------------------------------------------------- shared

/// The pid of the daemon answering on the socket, without starting one.
fn daemon_pid(ctx: &Ctx) -> Option<u32> {
    let mut client = coffer_ipc::Client::connect(&ctx.target.socket).ok()?;
    let _ = client.set_timeout(Some(Duration::from_secs(5)));
    client.call::<m::Status>(&m::Empty {}).ok().map(|s| s.pid)
}

/// Stops a daemon that `coffer` started detached (not the service's own),
/// so the service can take its place; the vault will need unlocking again.
fn take_over_from_detached(ctx: &Ctx, service_pid: Option<u32>) -> Result<(), CliError> {
    let Some(pid) = daemon_pid(ctx) else {
        return Ok(());
    };
    if Some(pid) == service_pid {
        return Ok(());
    }
    eprintln!(
        "Stopping the cofferd that coffer started (pid {pid}) so that the service runs it; unlock again afterwards."
    );
    // SAFETY: kill has no memory-safety preconditions; the pid answered on
    // our own socket, which only our uid can reach.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if coffer_ipc::Client::connect(&ctx.target.socket).is_err() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(CliError::Service(format!(
        "cofferd (pid {pid}) did not stop within 10 s of SIGTERM"
    )))
}

/// A service this `coffer` can start for the autostart path: the systemd
/// unit or the launchd agent, when installed and the manager answers.
pub fn start_installed() -> Option<Result<(), CliError>> {
    match manager() {
        Manager::Systemd => {
            installed_unit()?;
            if run_quiet("systemctl", &["--user", "show-environment"])
                .map(|o| !o.status.success())
                .unwrap_or(true)
            {
                return None;
            }
            // Type=notify: returns once cofferd listens (or failed).
            Some(systemctl(&["start", UNIT_NAME]).map(|_| ()))
        }
        Manager::Launchd => {
            plist_path().ok().filter(|p| p.is_file())?;
            let target = format!("{}/{LAUNCHD_LABEL}", launchd_domain());
            Some(checked("launchctl", &["kickstart", &target]).map(|_| ()))
        }
    }
}

pub fn service(ctx: &mut Ctx, cmd: ServiceCommand) -> Result<(), CliError> {
    let json = ctx.json;
    match cmd {
        ServiceCommand::Install { no_start } => {
            let status = match manager() {
                Manager::Systemd => systemd_install(ctx, no_start)?,
                Manager::Launchd => launchd_install(ctx, no_start)?,
            };
            if json {
                output::json(&status);
            } else {
                println!(
                    "Installed the {} service ({}); it starts at login{}.",
                    if status.manager == Manager::Systemd {
                        "systemd user"
                    } else {
                        "launchd"
                    },
                    status.file.as_deref().unwrap_or("?"),
                    match status.service_pid {
                        Some(pid) => format!(" and runs now (pid {pid})"),
                        None if no_start => String::new(),
                        None => " (not running yet: see `coffer service status`)".into(),
                    }
                );
            }
        }
        ServiceCommand::Uninstall => {
            let removed = match manager() {
                Manager::Systemd => systemd_uninstall()?,
                Manager::Launchd => launchd_uninstall()?,
            };
            if json {
                output::json(&serde_json::json!({ "manager": manager(), "removed": removed }));
            } else if removed.is_empty() {
                println!("The service is stopped and disabled (no file of coffer's to remove).");
            } else {
                println!(
                    "The service is stopped and disabled; removed {}.",
                    removed.join(", ")
                );
            }
        }
        ServiceCommand::Status => {
            let pid = daemon_pid(ctx);
            let status = match manager() {
                Manager::Systemd => systemd_status(pid),
                Manager::Launchd => launchd_status(pid),
            };
            if json {
                output::json(&status);
            } else {
                println!(
                    "service: {}",
                    status
                        .file
                        .as_deref()
                        .unwrap_or("not installed (`coffer service install`)")
                );
                println!(
                    "enabled at login: {}; running: {}",
                    if status.enabled { "yes" } else { "no" },
                    match status.service_pid {
                        Some(pid) => format!("yes (pid {pid})"),
                        None => "no".into(),
                    }
                );
                match (status.daemon_pid, status.service_pid) {
                    (Some(d), Some(s)) if d == s => {
                        println!("the daemon on the socket is the service's")
                    }
                    (Some(d), _) => println!("a cofferd not run by the service answers (pid {d})"),
                    (None, _) => println!("no cofferd answers on {}", ctx.target.socket.display()),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_runs_the_binary_it_was_installed_with() {
        let unit = render_unit(Path::new("/home/ada/.local/bin/cofferd"));
        assert!(unit.starts_with("# Written by `coffer service install`"));
        assert!(
            unit.contains("\nExecStart=/home/ada/.local/bin/cofferd\n"),
            "{unit}"
        );
        assert_eq!(unit.matches("ExecStart=").count(), 1);
        assert!(unit.contains("Type=notify"));
        let spaced = render_unit(Path::new("/opt/my apps/cofferd"));
        assert!(
            spaced.contains("ExecStart=\"/opt/my apps/cofferd\"\n"),
            "{spaced}"
        );
    }

    #[test]
    fn the_packaged_unit_runs_usr_bin_and_does_not_loop_on_a_running_daemon() {
        assert!(SYSTEMD_UNIT.contains("\nExecStart=/usr/bin/cofferd\n"));
        let prevent = format!("RestartPreventExitStatus={}", ALREADY_RUNNING);
        assert!(SYSTEMD_UNIT.contains(&prevent), "the unit needs {prevent}");
    }

    /// `cofferd`'s exit status when another daemon already serves its socket
    /// (daemon/src/main.rs, `EXIT_ALREADY_RUNNING`).
    const ALREADY_RUNNING: u8 = 75;

    #[test]
    fn the_plist_names_the_binary_socket_and_log() {
        let p = render_plist(
            Path::new("/Applications/Coffer & Co/cofferd"),
            Path::new("/tmp/coffer-501/cofferd.sock"),
            Path::new("/Users/ada/Library/Logs/Coffer/cofferd.log"),
        );
        assert!(
            p.contains("<string>/Applications/Coffer &amp; Co/cofferd</string>"),
            "{p}"
        );
        assert!(p.contains("<string>/tmp/coffer-501/cofferd.sock</string>"));
        assert!(p.contains("<key>StandardErrorPath</key><string>/Users/ada/Library/Logs/Coffer/cofferd.log</string>"));
        assert!(p.contains(
            "<string>--log-file</string>\n    <string>/Users/ada/Library/Logs/Coffer/cofferd.log</string>"
        ));
        assert!(p.contains("<dict><key>Crashed</key><true/></dict>"));
        assert_eq!(p.matches("<dict>").count(), p.matches("</dict>").count());
        assert_eq!(p.matches("<array>").count(), p.matches("</array>").count());
    }
}
