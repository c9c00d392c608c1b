//! `cofferd`: the Coffer daemon. Runs in the foreground; the CLI starts it
//! when none answers.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
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
    /// /ip4/0.0.0.0/tcp/7373, or an ephemeral port when that is taken).
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
    tune_allocator();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    match run(args) {
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
            mdns: !args.no_mdns && file.mdns.unwrap_or(true),
            disabled: args.no_network,
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(coffer_daemon::server::run(config))
}
