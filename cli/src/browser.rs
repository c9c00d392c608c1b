//! `coffer browser install|uninstall`: the native messaging host's
//! manifests, which tell a browser where `coffer-native-host` is and which
//! extension may start it (`docs/browser.md`). Per user, no root: the
//! locations each browser reads for the current user, under `$HOME` and
//! `$XDG_CONFIG_HOME`, or one folder given with `--dir` (a Chromium
//! started with `--user-data-dir=D` reads `D/NativeMessagingHosts`).

use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use coffer_browser_host::{chromium_origin, FIREFOX_EXTENSION_ID, HOST_NAME};
use serde::Serialize;
use serde_json::json;

use crate::{CliError, Ctx};

#[derive(Subcommand, Debug)]
pub enum BrowserCommand {
    /// Write the native messaging host's manifests, so Coffer's extension can reach the daemon.
    Install {
        /// Which browser's per-user folder to write to.
        #[arg(long, value_enum, default_value = "all")]
        browser: Which,
        /// Write the manifest into this folder instead (e.g. PROFILE/NativeMessagingHosts
        /// of a Chromium started with --user-data-dir=PROFILE); needs one --browser.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The host program (default: coffer-native-host beside this coffer).
        #[arg(long)]
        host: Option<PathBuf>,
    },
    /// Remove the manifests `install` wrote.
    Uninstall {
        /// Which browser's per-user folder to remove it from.
        #[arg(long, value_enum, default_value = "all")]
        browser: Which,
        /// Remove it from this folder instead (as given to install --dir).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Which {
    Chromium,
    Chrome,
    Firefox,
    All,
}

const EACH: [Which; 3] = [Which::Chromium, Which::Chrome, Which::Firefox];

#[derive(Debug, Serialize)]
struct Manifest {
    browser: Which,
    path: String,
}

#[derive(Debug, Serialize)]
struct Report {
    /// The host program the manifests name (install only).
    host: Option<String>,
    manifests: Vec<Manifest>,
}

fn home() -> Result<PathBuf, CliError> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| CliError::Usage("HOME is not set".into()))
}

fn config_home() -> Result<PathBuf, CliError> {
    match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => Ok(PathBuf::from(dir)),
        None => Ok(home()?.join(".config")),
    }
}

/// The folder a browser reads the current user's host manifests from.
fn manifest_dir(browser: Which) -> Result<PathBuf, CliError> {
    let mac = cfg!(target_os = "macos");
    let support = || home().map(|h| h.join("Library/Application Support"));
    Ok(match (browser, mac) {
        (Which::Chromium, false) => config_home()?.join("chromium/NativeMessagingHosts"),
        (Which::Chrome, false) => config_home()?.join("google-chrome/NativeMessagingHosts"),
        (Which::Firefox, false) => home()?.join(".mozilla/native-messaging-hosts"),
        (Which::Chromium, true) => support()?.join("Chromium/NativeMessagingHosts"),
        (Which::Chrome, true) => support()?.join("Google/Chrome/NativeMessagingHosts"),
        (Which::Firefox, true) => support()?.join("Mozilla/NativeMessagingHosts"),
        // `targets` expands `All` before looking folders up.
        (Which::All, _) => return Err(CliError::Usage("name one browser".into())),
    })
}

/// The manifest's text for `browser`, naming `host`.
pub fn render(browser: Which, host: &Path) -> String {
    let mut m = json!({
        "name": HOST_NAME,
        "description": "Coffer: fill logins from the cofferd vault (written by `coffer browser install`)",
        "path": host.display().to_string(),
        "type": "stdio",
    });
    if browser == Which::Firefox {
        m["allowed_extensions"] = json!([FIREFOX_EXTENSION_ID]);
    } else {
        m["allowed_origins"] = json!([chromium_origin()]);
    }
    let mut text = serde_json::to_string_pretty(&m).unwrap_or_default();
    text.push('\n');
    text
}

fn targets(browser: Which, dir: Option<PathBuf>) -> Result<Vec<(Which, PathBuf)>, CliError> {
    let file = format!("{HOST_NAME}.json");
    match (browser, dir) {
        (Which::All, Some(_)) => Err(CliError::Usage(
            "--dir needs one --browser (chromium, chrome or firefox)".into(),
        )),
        (Which::All, None) => EACH
            .iter()
            .map(|b| Ok((*b, manifest_dir(*b)?.join(&file))))
            .collect(),
        (b, Some(d)) => Ok(vec![(b, d.join(file))]),
        (b, None) => Ok(vec![(b, manifest_dir(b)?.join(file))]),
    }
}

/// `coffer-native-host` beside this `coffer`, with links resolved.
fn host_binary() -> Result<PathBuf, CliError> {
    let exe = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .map_err(|e| CliError::Other(format!("cannot find this program: {e}")))?;
    let host = exe
        .parent()
        .map(|d| d.join("coffer-native-host"))
        .filter(|h| h.is_file())
        .ok_or_else(|| {
            CliError::Usage(
                "coffer-native-host is not beside coffer: name it with --host PATH".into(),
            )
        })?;
    Ok(host)
}

pub fn browser(ctx: &mut Ctx, cmd: BrowserCommand) -> Result<(), CliError> {
    let report = match cmd {
        BrowserCommand::Install { browser, dir, host } => {
            let host = match host {
                Some(h) => std::fs::canonicalize(&h)
                    .map_err(|e| CliError::Usage(format!("--host {}: {e}", h.display())))?,
                None => host_binary()?,
            };
            let mut manifests = Vec::new();
            for (b, path) in targets(browser, dir)? {
                let io = |e: std::io::Error| CliError::Other(format!("{}: {e}", path.display()));
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
                std::fs::write(&path, render(b, &host)).map_err(io)?;
                manifests.push(Manifest {
                    browser: b,
                    path: path.display().to_string(),
                });
            }
            Report {
                host: Some(host.display().to_string()),
                manifests,
            }
        }
        BrowserCommand::Uninstall { browser, dir } => {
            let mut manifests = Vec::new();
            for (b, path) in targets(browser, dir)? {
                // Only a manifest of our host's name: never someone else's file.
                let ours = std::fs::read(&path)
                    .ok()
                    .and_then(|t| serde_json::from_slice::<serde_json::Value>(&t).ok())
                    .is_some_and(|v| v["name"] == HOST_NAME);
                if ours {
                    std::fs::remove_file(&path)
                        .map_err(|e| CliError::Other(format!("{}: {e}", path.display())))?;
                    manifests.push(Manifest {
                        browser: b,
                        path: path.display().to_string(),
                    });
                }
            }
            Report {
                host: None,
                manifests,
            }
        }
    };
    ctx.print(&report, |r| {
        if let Some(host) = &r.host {
            for m in &r.manifests {
                println!(
                    "{:<9} {}",
                    format!("{:?}", m.browser).to_lowercase(),
                    m.path
                );
            }
            println!("host: {host}");
            println!("Now load Coffer's extension (see `docs/browser.md`).");
        } else if r.manifests.is_empty() {
            println!("No Coffer host manifest was installed there.");
        } else {
            for m in &r.manifests {
                println!("removed {}", m.path);
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_name_only_coffers_extension() {
        let host = Path::new("/usr/bin/coffer-native-host");
        let c: serde_json::Value = serde_json::from_str(&render(Which::Chromium, host)).unwrap();
        assert_eq!(c["name"], HOST_NAME);
        assert_eq!(c["type"], "stdio");
        assert_eq!(c["path"], "/usr/bin/coffer-native-host");
        assert_eq!(c["allowed_origins"], json!([chromium_origin()]));
        assert!(c.get("allowed_extensions").is_none());
        let f: serde_json::Value = serde_json::from_str(&render(Which::Firefox, host)).unwrap();
        assert_eq!(f["allowed_extensions"], json!([FIREFOX_EXTENSION_ID]));
        assert!(f.get("allowed_origins").is_none());
    }

    #[test]
    fn dir_needs_one_browser() {
        assert!(targets(Which::All, Some(PathBuf::from("/x"))).is_err());
        let t = targets(Which::Chromium, Some(PathBuf::from("/x"))).unwrap();
        assert_eq!(
            t,
            [(Which::Chromium, PathBuf::from("/x/dev.coffer.host.json"))]
        );
    }
}
