//! The CLI's settings in `config.toml` (the file `cofferd` reads too:
//! `COFFER_CONFIG`, default `~/.config/coffer/config.toml`). The CLI reads
//! only its own keys and ignores the daemon's.

use std::path::PathBuf;

use serde::Deserialize;

use crate::CliError;

#[derive(Debug, Default, Deserialize)]
pub struct CliConfig {
    /// Seconds before `--copy` clears the clipboard (0: never).
    pub clipboard_clear_secs: Option<u64>,
}

fn path() -> PathBuf {
    std::env::var_os("COFFER_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| coffer_ipc::paths::default_config_dir().join("config.toml"))
}

impl CliConfig {
    /// Reads the file; a missing file is the defaults, a malformed one an error.
    pub fn load() -> Result<CliConfig, CliError> {
        let path = path();
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| CliError::Usage(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CliConfig::default()),
            Err(e) => Err(CliError::Other(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }
}
