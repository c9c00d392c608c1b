//! `coffer-native-host`: started by the browser for Coffer's extension
//! (see the library's docs and `docs/browser.md`).
//!
//! Exit codes: 0 the browser closed the connection; 1 reading from or
//! writing to the browser failed (a message over the size limit, a
//! broken frame); 2 not started for Coffer's own extension.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use coffer_browser_host::{caller, daemon_reply, error_reply, serve, ErrorKind, Forward};
use coffer_ipc::Client;
use serde_json::Value;

/// The daemon's socket: `COFFER_SOCKET`, else the default path.
fn socket() -> PathBuf {
    std::env::var_os("COFFER_SOCKET")
        .map(PathBuf::from)
        .unwrap_or_else(coffer_ipc::paths::default_socket_path)
}

/// One request to the daemon (a blocking call: run off the runtime).
fn call_daemon(socket: &Path, request: Forward) -> Value {
    let answer = Client::connect(socket).and_then(|mut c| {
        c.set_timeout(Some(std::time::Duration::from_secs(30)))?;
        c.call_raw(request.method, request.params)
    });
    daemon_reply(request.id, answer)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let Err(e) = caller(&args) {
        eprintln!("coffer-native-host: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("coffer-native-host: {e}");
            return ExitCode::from(1);
        }
    };
    let socket = socket();
    let served = runtime.block_on(serve(tokio::io::stdin(), tokio::io::stdout(), |request| {
        let socket = socket.clone();
        async move {
            let id = request.id;
            tokio::task::spawn_blocking(move || call_daemon(&socket, request))
                .await
                .unwrap_or_else(|e| error_reply(Some(id), ErrorKind::Error, &e.to_string()))
        }
    }));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coffer-native-host: {e}");
            ExitCode::from(1)
        }
    }
}
