//! The daemon's settings: command-line flags over `config.toml` over defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::keystore::KdfParams;

/// Default idle time before the vault locks itself.
pub const DEFAULT_AUTO_LOCK_SECS: u64 = 15 * 60;

#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    pub auto_lock: Duration,
    pub kdf: KdfParams,
    /// Listen addresses, static peers, mDNS.
    pub net: crate::net::NetConfig,
    /// Where the local web app listens (a loopback address), or none.
    pub ui: Option<std::net::SocketAddr>,
    /// `--relay`: run as a keyless relay, with these limits.
    pub relay: Option<coffer_crdt::replica::relay::RelayLimits>,
}

/// The web app's default address (`--ui-listen`).
pub const DEFAULT_UI_LISTEN: &str = "127.0.0.1:7374";

/// What `config.toml` may set (every key optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub auto_lock_secs: Option<u64>,
    pub kdf_memory_kib: Option<u32>,
    pub kdf_iterations: Option<u32>,
    /// Multiaddrs to listen on (`--listen` replaces them).
    pub listen: Option<Vec<String>>,
    /// Static peers' multiaddrs (`--peer` adds to them).
    pub peers: Option<Vec<String>>,
    /// LAN discovery (default true; `--no-mdns` turns it off).
    pub mdns: Option<bool>,
    /// Read by the `coffer` CLI (the `--copy` clear delay); the daemon ignores it.
    pub clipboard_clear_secs: Option<u64>,
}

impl ConfigFile {
    /// Reads `path`; a missing file is an empty config, a malformed one an error.
    pub fn load(path: &Path) -> anyhow::Result<ConfigFile> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
            Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
        }
    }
}
