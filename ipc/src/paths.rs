//! Where the socket and the data live by default. `--socket`/`COFFER_SOCKET`
//! and `--data-dir`/`COFFER_DATA_DIR` override these in both binaries.

use std::path::PathBuf;

use directories::ProjectDirs;

fn project() -> Option<ProjectDirs> {
    ProjectDirs::from("", "", "coffer")
}

/// The platform data dir (`~/.local/share/coffer` on Linux).
pub fn default_data_dir() -> PathBuf {
    project()
        .map(|p| p.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from(".coffer"))
}

/// The platform config dir (`~/.config/coffer` on Linux).
pub fn default_config_dir() -> PathBuf {
    project()
        .map(|p| p.config_dir().to_path_buf())
        .unwrap_or_else(default_data_dir)
}

/// The socket in the runtime dir (`$XDG_RUNTIME_DIR/coffer/cofferd.sock`), or
/// in `/tmp/coffer-$UID/` where no runtime dir exists. Another local user
/// can make that folder first: the daemon refuses a folder it does not own
/// (`bind_socket`), and the client refuses a socket served by another uid
/// (`Client::connect`), so no PIN goes to a stranger.
pub fn default_socket_path() -> PathBuf {
    let dir = project()
        .and_then(|p| p.runtime_dir().map(|d| d.to_path_buf()))
        .unwrap_or_else(|| {
            // SAFETY: getuid has no preconditions and cannot fail.
            let uid = unsafe { libc::getuid() };
            std::env::temp_dir().join(format!("coffer-{uid}"))
        });
    dir.join("cofferd.sock")
}
