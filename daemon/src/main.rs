//! `cofferd`: the Coffer daemon. Runs in the foreground; the CLI starts it
//! when none answers (directly, or through the installed systemd user unit
//! or launchd agent).
//!
//! Exit status: 0 after SIGTERM/SIGINT, 1 on an error, 2 on bad flags, and
//! [`EXIT_ALREADY_RUNNING`] when another cofferd already serves the socket
//! (the systemd unit does not restart on it). Under systemd (`NOTIFY_SOCKET`)
//! it sends `READY=1` once it answers on its socket (`Type=notify`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use coffer_daemon::config::{Config, ConfigFile, DEFAULT_AUTO_LOCK_SECS};
use coffer_daemon::keystore::KdfParams;
use coffer_daemon::net::NetConfig;

#[derive(Parser, Debug)]
#[command(
    name = "cofferd",
    version,
    about = "The Coffer daemon: holds the vault and serves the coffer CLI"
)]
struct Args {
    /// Where the vault lives (default: the platform data dir).
    #[arg(long, env = "COFFER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The IPC socket (default: in the runtime dir).
    #[arg(long, env = "COFFER_SOCKET")]
    socket: Option<PathBuf>,
    /// Settings file (default: config.toml in the platform config dir).
    #[arg(long, env = "COFFER_CONFIG")]
    config: Option<PathBuf>,
    /// Lock the vault after this many idle seconds (default 900).
    #[arg(long)]
    auto_lock_secs: Option<u64>,
    /// Argon2id memory for a new PIN keystore, KiB (default 65536). For tests.
    #[arg(long)]
    kdf_memory_kib: Option<u32>,
    /// Argon2id passes for a new PIN keystore (default 3). For tests.
    #[arg(long)]
    kdf_iterations: Option<u32>,
    /// Listen for peers on this multiaddr (repeatable; default
    /// /ip4/0.0.0.0/tcp/7373 and /ip6/::/tcp/7373, or an ephemeral IPv4
    /// port when 7373 is taken).
    #[arg(
        long,
        value_name = "MULTIADDR",
        env = "COFFER_LISTEN",
        value_delimiter = ','
    )]
    listen: Vec<String>,
    /// Dial this peer (repeatable; added to `peers` in the config file).
    #[arg(long, value_name = "MULTIADDR")]
    peer: Vec<String>,
    /// Neither advertise nor browse for peers on the LAN (mDNS).
    #[arg(long, env = "COFFER_NO_MDNS", value_parser = clap::builder::BoolishValueParser::new())]
    no_mdns: bool,
    /// No peer-to-peer networking at all.
    #[arg(long, env = "COFFER_NO_NETWORK", value_parser = clap::builder::BoolishValueParser::new())]
    no_network: bool,
    /// Serve the local web app on this loopback address (default
    /// 127.0.0.1:7374; port 0 picks a free one). `coffer ui` opens it.
    #[arg(long, value_name = "ADDR", env = "COFFER_UI_LISTEN")]
    ui_listen: Option<std::net::SocketAddr>,
    /// Do not serve the local web app.
    #[arg(long, env = "COFFER_NO_UI", value_parser = clap::builder::BoolishValueParser::new())]
    no_ui: bool,
    /// Log to this file instead of stderr (stderr follows it), rotated by
    /// size: past --log-max-bytes it becomes FILE.1 and a fresh FILE starts.
    /// For daemons no journal collects (coffer's autostart, launchd).
    #[arg(long, value_name = "FILE")]
    log_file: Option<PathBuf>,
    /// With --log-file: the size at which it rotates (default 4 MiB).
    #[arg(long, value_name = "BYTES", default_value_t = coffer_daemon::logfile::DEFAULT_MAX_BYTES)]
    log_max_bytes: u64,
    /// Run as a keyless relay (docs/relay.md): hold and forward the
    /// envelopes of every team whose admin added this relay (`coffer relay
    /// add`), with no PIN and no key that opens them. Use a data dir of
    /// its own; no mDNS, no web app.
    #[arg(long)]
    relay: bool,
    /// Do not try to punch a direct connection (DCUtR) through NATs to a
    /// device reached through a relay: stay relayed.
    #[arg(long)]
    no_hole_punch: bool,
    /// With --relay: the envelope bytes kept per team at most (default 1 GiB).
    #[arg(long, value_name = "BYTES")]
    relay_max_team_bytes: Option<u64>,
    /// Print the cofferd(1) man page (roff) and exit (for packaging).
    #[arg(long, hide = true)]
    man_page: bool,
    /// For tests only: speak the sync protocol `/coffer/sync/2` alone (no
    /// `/coffer/sync/3`), as a daemon from before it did, so that tests
    /// can run a mixed pair.
    #[arg(long, hide = true)]
    sync_v2_only: bool,
}

/// Exit status when another cofferd already serves the socket.
pub const EXIT_ALREADY_RUNNING: u8 = 75;

/// Whether a process answers on `socket`, and which (Linux: its pid).
fn serving(socket: &std::path::Path) -> Option<Option<u32>> {
    let stream = std::os::unix::net::UnixStream::connect(socket).ok()?;
    Some(
        coffer_ipc::process::peer_of(&stream)
            .ok()
            .and_then(|p| p.pid),
    )
}

/// Under systemd: tells the manager `READY=1` once this very process
/// answers on `socket` (the peer pid of a connection is ours), so
/// `systemctl --user start` returns when the CLI can connect.
fn notify_when_ready(socket: PathBuf) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let me = std::process::id();
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while std::time::Instant::now() < deadline {
            if serving(&socket) == Some(Some(me)) {
                let status = format!("serving {}", socket.display());
                if let Err(e) = sd_notify::notify(&[
                    sd_notify::NotifyState::Ready,
                    sd_notify::NotifyState::Status(&status),
                ]) {
                    tracing::warn!(error = %e, "cannot notify systemd of readiness");
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
}

fn multiaddrs(list: &[String], what: &str) -> anyhow::Result<Vec<libp2p::Multiaddr>> {
    list.iter()
        .map(|a| {
            a.parse().map_err(|e| {
                anyhow::anyhow!(
                    "{what} {a:?} is not a multiaddr ({e}); e.g. /ip4/192.168.1.20/tcp/7373"
                )
            })
        })
        .collect()
}

/// glibc raises its mmap threshold after the first large free, so Automerge's
/// short-lived encode buffers then fragment the heap: measured 90 MB RSS
/// after 300 adds instead of 9 MB. A fixed threshold and two arenas keep RSS
/// proportional to the live vault.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn main() -> ExitCode {
    // Before anything holds a secret: no core dumps, no debugger attach.
    let hardened = coffer_ipc::process::harden();
    tune_allocator();
    let args = Args::parse();
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| "info".into())
    };
    match &args.log_file {
        Some(path) => {
            let log = match coffer_daemon::logfile::RotatingStderr::open(path, args.log_max_bytes) {
                Ok(log) => log,
                Err(e) => {
                    eprintln!(
                        "cofferd: error: cannot open the log file {}: {e}",
                        path.display()
                    );
                    return ExitCode::from(1);
                }
            };
            tracing_subscriber::fmt()
                .with_env_filter(filter())
                .with_writer(std::sync::Mutex::new(log))
                .with_ansi(false)
                .init();
        }
        None => tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    if let Err(e) = hardened {
        tracing::warn!(error = %e, "cannot turn core dumps off");
    }
    if args.man_page {
        let mut page = Vec::new();
        return match clap_mangen::Man::new(Args::command()).render(&mut page) {
            Ok(()) => {
                use std::io::Write;
                let _ = std::io::stdout().write_all(&page);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cofferd: error: {e}");
                ExitCode::from(1)
            }
        };
    }
    let socket = args
        .socket
        .clone()
        .unwrap_or_else(coffer_ipc::paths::default_socket_path);
    if let Some(pid) = serving(&socket) {
        eprintln!(
            "cofferd: another cofferd{} already serves {}; not starting a second one",
            pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
            socket.display()
        );
        return ExitCode::from(EXIT_ALREADY_RUNNING);
    }
    notify_when_ready(socket);
    let result = run(args);
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cofferd: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let config_path = args
        .config
        .unwrap_or_else(|| coffer_ipc::paths::default_config_dir().join("config.toml"));
    let file = ConfigFile::load(&config_path)?;
    let defaults = KdfParams::default();
    let config = Config {
        data_dir: args
            .data_dir
            .unwrap_or_else(coffer_ipc::paths::default_data_dir),
        socket: args
            .socket
            .unwrap_or_else(coffer_ipc::paths::default_socket_path),
        auto_lock: Duration::from_secs(
            args.auto_lock_secs
                .or(file.auto_lock_secs)
                .unwrap_or(DEFAULT_AUTO_LOCK_SECS),
        ),
        kdf: KdfParams {
            memory_kib: args
                .kdf_memory_kib
                .or(file.kdf_memory_kib)
                .unwrap_or(defaults.memory_kib),
            iterations: args
                .kdf_iterations
                .or(file.kdf_iterations)
                .unwrap_or(defaults.iterations),
            parallelism: defaults.parallelism,
        },
        net: NetConfig {
            listen: multiaddrs(
                if args.listen.is_empty() {
                    file.listen.as_deref().unwrap_or_default()
                } else {
                    &args.listen
                },
                "--listen",
            )?,
            peers: multiaddrs(
                &file
                    .peers
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .chain(args.peer)
                    .collect::<Vec<_>>(),
                "--peer",
            )?,
            mdns: !args.relay && !args.no_mdns && file.mdns.unwrap_or(true),
            disabled: args.no_network,
            relay: args.relay,
            no_hole_punch: args.no_hole_punch,
            sync_v2_only: args.sync_v2_only,
        },
        relay: args.relay.then(|| {
            let mut limits = coffer_crdt::replica::relay::RelayLimits::default();
            if let Some(max) = args.relay_max_team_bytes {
                limits.max_team_bytes = max;
            }
            limits
        }),
        ui: match (args.no_ui || args.relay, args.ui_listen) {
            (true, _) => None,
            (false, Some(addr)) => Some(addr),
            (false, None) => coffer_daemon::config::DEFAULT_UI_LISTEN.parse().ok(),
        },
    };
    if let Some(addr) = config.ui.filter(|a| !a.ip().is_loopback()) {
        anyhow::bail!("--ui-listen {addr} is not a loopback address: the web app serves this machine only (e.g. 127.0.0.1:7374)");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(coffer_daemon::server::run(config))
}
