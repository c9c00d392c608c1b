//! The IPC server: a Unix socket speaking line-framed JSON-RPC 2.0.
//!
//! One task accepts; one task per connection reads requests and writes
//! replies (and events, once subscribed). Vault work runs on the blocking pool
//! under one mutex, so requests are serialised and never block the reactor.
//! A malformed, oversized or unknown request gets an error reply and the
//! daemon carries on; only peers with our own uid are served.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use coffer_ipc::methods::{self as m, Method};
use coffer_ipc::{
    ErrorCode, Event, Notification, Progress, ProgressNotification, Request, Response, RpcError,
    MAX_FRAME_BYTES,
};
use futures::{SinkExt, StreamExt};
use rand::rngs::OsRng;
use serde_json::{json, Value};
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{broadcast, mpsc};
use tokio_util::codec::{AnyDelimiterCodec, AnyDelimiterCodecError, Framed};

use tracing::{debug, info, warn};

use crate::config::Config;
use crate::export::{self, ExportError, ExportFile};
use crate::import;
use crate::net::Net;
use crate::vault::{ImportRequest, Now, Vault, VaultError};

mod enrol_rpc;
mod net_rpc;
mod team_rpc;

struct Shared {
    config: Config,
    vault: Arc<Mutex<Vault>>,
    events: broadcast::Sender<Event>,
    last_activity: Mutex<Instant>,
    net: Net,
    /// Joins in progress on this device (`enrol_rpc`).
    joins: Mutex<enrol_rpc::Joins>,
}

/// Where a long request reports how far it has got (see [`Progress`]).
type ProgressSink = mpsc::UnboundedSender<Progress>;

impl From<ExportError> for RpcError {
    fn from(e: ExportError) -> Self {
        let code = match e {
            ExportError::WrongPassphrase => ErrorCode::WrongPassphrase,
            ExportError::Io(_) | ExportError::Csv(_) => ErrorCode::Internal,
            _ => ErrorCode::InvalidInput,
        };
        RpcError::new(code, e.to_string())
    }
}

fn now() -> Now {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Now { unix_ms: ms }
}

impl From<VaultError> for RpcError {
    fn from(e: VaultError) -> Self {
        let code = match &e {
            VaultError::Locked => ErrorCode::Locked,
            VaultError::NotInitialized => ErrorCode::NotInitialized,
            VaultError::AlreadyInitialized => ErrorCode::AlreadyInitialized,
            VaultError::NotFound(_) => ErrorCode::NotFound,
            VaultError::Ambiguous { .. } => ErrorCode::Ambiguous,
            VaultError::WrongPin => ErrorCode::WrongPin,
            VaultError::TooManyAttempts { .. } => ErrorCode::TooManyAttempts,
            VaultError::Invalid(_) => ErrorCode::InvalidInput,
            VaultError::PermissionDenied(_) => ErrorCode::PermissionDenied,
            _ => ErrorCode::Internal,
        };
        let err = RpcError::new(code, e.to_string());
        match e {
            VaultError::Ambiguous { candidates, .. } => {
                err.with_data(json!({ "candidates": candidates }))
            }
            VaultError::TooManyAttempts { retry_after_secs } => {
                err.with_data(json!({ "retry_after_secs": retry_after_secs }))
            }
            _ => err,
        }
    }
}

fn params<M: Method>(value: Value) -> Result<M::Params, RpcError> {
    let value = if value.is_null() { json!({}) } else { value };
    serde_json::from_value(value).map_err(|e| {
        RpcError::new(
            ErrorCode::InvalidParams,
            format!("invalid params for {}: {e}", M::NAME),
        )
    })
}

fn reply<M: Method>(result: M::Result) -> Result<Value, RpcError> {
    serde_json::to_value(result).map_err(|e| RpcError::new(ErrorCode::Internal, e.to_string()))
}

impl Shared {
    fn publish(&self, events: Vec<Event>) {
        if events
            .iter()
            .any(|e| matches!(e, Event::ItemChanged { .. } | Event::FolderChanged { .. }))
        {
            self.net.changed();
        }
        for event in events {
            let _ = self.events.send(event);
        }
    }

    /// Runs one request against the vault. Blocking (Argon2, SQLite fsync).
    fn dispatch(
        &self,
        method: &str,
        raw: Value,
        progress: ProgressSink,
    ) -> Result<Value, RpcError> {
        // These do their slow parts (reading, parsing, scrypt) outside the vault lock.
        match method {
            m::Import::NAME => return self.import(raw, progress),
            m::Backup::NAME => return self.backup(raw),
            m::RestoreBackup::NAME => return self.restore_backup(raw, progress),
            _ => {}
        }
        if net_rpc::handles(method) {
            return self.dispatch_net(method, raw);
        }
        if enrol_rpc::handles(method) {
            return self.dispatch_enrol(method, raw);
        }
        if team_rpc::handles(method) {
            return self.dispatch_team(method, raw);
        }
        let mut vault = self
            .vault
            .lock()
            .map_err(|_| RpcError::new(ErrorCode::Internal, "vault state poisoned"))?;
        if method != m::Status::NAME {
            *self.last_activity.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        }
        let rng = &mut OsRng;
        match method {
            m::Status::NAME => {
                let id = vault.identity();
                let counts = vault.counts();
                reply::<m::Status>(m::StatusResult {
                    version: env!("CARGO_PKG_VERSION").into(),
                    protocol: coffer_ipc::PROTOCOL_VERSION,
                    initialized: id.is_some(),
                    locked: vault.is_locked(),
                    device_id: id.map(|i| i.device_id.clone()),
                    name: id.map(|i| i.name.clone()),
                    email: id.map(|i| i.email.clone()),
                    folders: counts.map(|c| c.0),
                    items: counts.map(|c| c.1),
                    auto_lock_secs: self.config.auto_lock.as_secs(),
                    data_dir: self.config.data_dir.display().to_string(),
                    socket: self.config.socket.display().to_string(),
                    pid: std::process::id(),
                })
            }
            m::Init::NAME => {
                let p = params::<m::Init>(raw)?;
                let (device, folder) = vault.init(&p.name, &p.email, &p.pin, now(), rng)?;
                drop(vault);
                self.net.identity_maybe_ready();
                self.publish(vec![Event::LockState {
                    locked: false,
                    reason: "init".into(),
                }]);
                reply::<m::Init>(m::InitResult {
                    device_id: device.to_hex(),
                    folder_id: folder.to_hex(),
                })
            }
            m::Unlock::NAME => {
                let p = params::<m::Unlock>(raw)?;
                let was_locked = vault.is_locked();
                vault.unlock(&p.pin, now())?;
                let upkeep = if was_locked {
                    vault.key_upkeep(&mut OsRng).unwrap_or_else(|e| {
                        warn!(error = %e, "key upkeep after unlock failed");
                        Vec::new()
                    })
                } else {
                    Vec::new()
                };
                drop(vault);
                self.net.identity_maybe_ready();
                if was_locked {
                    let mut events = vec![Event::LockState {
                        locked: false,
                        reason: "pin".into(),
                    }];
                    events.extend(upkeep);
                    self.publish(events);
                }
                reply::<m::Unlock>(m::Empty {})
            }
            m::Lock::NAME => {
                let was_locked = vault.is_locked();
                vault.lock();
                drop(vault);
                if !was_locked {
                    self.publish(vec![Event::LockState {
                        locked: true,
                        reason: "request".into(),
                    }]);
                }
                reply::<m::Lock>(m::Empty {})
            }
            m::FolderCreate::NAME => {
                let p = params::<m::FolderCreate>(raw)?;
                let (info, events) = vault.folder_create(&p.name, now(), rng)?;
                drop(vault);
                self.publish(events);
                reply::<m::FolderCreate>(info)
            }
            m::FolderList::NAME => reply::<m::FolderList>(vault.folder_list()?),
            m::ItemAdd::NAME => {
                let p = params::<m::ItemAdd>(raw)?;
                let (view, events) = vault.item_add(p, now(), rng)?;
                drop(vault);
                self.publish(events);
                reply::<m::ItemAdd>(view)
            }
            m::ItemGet::NAME => reply::<m::ItemGet>(vault.item_get(&params::<m::ItemGet>(raw)?)?),
            m::ItemList::NAME => {
                reply::<m::ItemList>(vault.item_list(&params::<m::ItemList>(raw)?)?)
            }
            m::ItemSearch::NAME => {
                reply::<m::ItemSearch>(vault.item_search(&params::<m::ItemSearch>(raw)?.query)?)
            }
            m::ItemEdit::NAME => {
                let (view, events) = vault.item_edit(params::<m::ItemEdit>(raw)?, now(), rng)?;
                drop(vault);
                self.publish(events);
                reply::<m::ItemEdit>(view)
            }
            m::ItemTrash::NAME | m::ItemRestore::NAME => {
                let p = params::<m::ItemTrash>(raw)?;
                let (summary, events) =
                    vault.item_set_trashed(&p.item, method == m::ItemTrash::NAME, now(), rng)?;
                drop(vault);
                self.publish(events);
                reply::<m::ItemTrash>(summary)
            }
            m::ItemHistory::NAME => {
                reply::<m::ItemHistory>(vault.item_history(&params::<m::ItemHistory>(raw)?)?)
            }
            m::TotpGet::NAME => {
                reply::<m::TotpGet>(vault.totp_code(&params::<m::TotpGet>(raw)?, now())?)
            }
            m::TotpSet::NAME => {
                let (view, events) = vault.totp_set(params::<m::TotpSet>(raw)?, now(), rng)?;
                drop(vault);
                self.publish(events);
                reply::<m::TotpSet>(view)
            }
            m::Export::NAME => Self::export(&vault, raw),
            other => Err(RpcError::new(
                ErrorCode::MethodNotFound,
                format!("unknown method {other:?}"),
            )),
        }
    }
}

impl Shared {
    /// Reads and parses the export outside the vault lock, then adds it.
    fn import(&self, raw: Value, progress: ProgressSink) -> Result<Value, RpcError> {
        let p = params::<m::Import>(raw)?;
        let invalid = |msg: String| RpcError::new(ErrorCode::InvalidInput, msg);
        let bytes = read_bounded(&p.path, import::MAX_IMPORT_BYTES)?;
        let format = if p.format == "auto" {
            import::detect(&bytes).ok_or_else(|| {
                invalid("cannot tell the format of this file: name it with --format".into())
            })?
        } else {
            import::Format::parse_name(&p.format).ok_or_else(|| {
                let names: Vec<&str> = import::Format::ALL.iter().map(|f| f.name()).collect();
                invalid(format!(
                    "unknown format {:?} (one of: auto, {})",
                    p.format,
                    names.join(", ")
                ))
            })?
        };
        let report = import::parse(format, &bytes, p.password.as_deref()).map_err(|e| {
            let code = match e {
                import::ImportError::WrongPassword => ErrorCode::WrongPassphrase,
                _ => ErrorCode::InvalidInput,
            };
            RpcError::new(code, e.to_string())
        })?;
        let result = self.store_import(
            report,
            format,
            p.folder.as_deref(),
            p.dry_run,
            p.progress.then_some(progress),
        )?;
        reply::<m::Import>(result)
    }

    /// Adds parsed items to the vault (all or nothing) and publishes the events.
    fn store_import(
        &self,
        report: import::ImportReport,
        format: import::Format,
        folder: Option<&str>,
        dry_run: bool,
        progress: Option<ProgressSink>,
    ) -> Result<m::ImportResult, RpcError> {
        let mut vault = self.lock_vault()?;
        let mut on_progress = |done: usize, total: usize| {
            if let Some(sink) = &progress {
                let _ = sink.send(Progress {
                    phase: "store".into(),
                    done: done as u64,
                    total: total as u64,
                });
            }
        };
        let request = ImportRequest {
            report,
            format,
            into: folder,
            dry_run,
        };
        let (result, events) = vault.import(request, now(), &mut OsRng, &mut on_progress)?;
        drop(vault);
        self.publish(events);
        Ok(result)
    }

    fn lock_vault(&self) -> Result<std::sync::MutexGuard<'_, Vault>, RpcError> {
        let vault = self
            .vault
            .lock()
            .map_err(|_| RpcError::new(ErrorCode::Internal, "vault state poisoned"))?;
        *self.last_activity.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        Ok(vault)
    }

    /// Seals everything readable (trash included) into an age file; the
    /// scrypt work runs after the vault lock is released.
    fn backup(&self, raw: Value) -> Result<Value, RpcError> {
        let p = params::<m::Backup>(raw)?;
        check_passphrase(&p.passphrase)?;
        let path = Path::new(&p.path);
        if !path.is_absolute() || path.is_dir() {
            return Err(RpcError::new(
                ErrorCode::InvalidInput,
                format!("{} is not a file path", p.path),
            ));
        }
        let vault = self.lock_vault()?;
        let items = vault.export_items(None, true)?;
        let folders = vault.folder_ids().len();
        drop(vault);
        let count = items.len();
        let plaintext = ExportFile::new(items, now().unix_ms).to_json();
        let sealed = export::seal_backup(&plaintext, &p.passphrase)?;
        write_atomically(path, &sealed).map_err(|e| {
            RpcError::new(
                ErrorCode::InvalidInput,
                format!("cannot write {}: {e}", p.path),
            )
        })?;
        info!(items = count, bytes = sealed.len(), "backup written");
        reply::<m::Backup>(m::BackupResult {
            path: p.path,
            items: count,
            folders,
            bytes: sealed.len() as u64,
        })
    }

    fn restore_backup(&self, raw: Value, progress: ProgressSink) -> Result<Value, RpcError> {
        let p = params::<m::RestoreBackup>(raw)?;
        // The age header and stream framing add a little to the plaintext limit.
        let sealed = read_bounded(&p.path, import::MAX_IMPORT_BYTES + (1 << 20))?;
        let plaintext = export::open_backup(&sealed, &p.passphrase)?;
        let format = import::Format::CofferJson;
        let report = import::parse(format, &plaintext, None).map_err(|e| {
            RpcError::new(
                ErrorCode::InvalidInput,
                format!("the backup opened but its content is not valid: {e}"),
            )
        })?;
        let result = self.store_import(
            report,
            format,
            None,
            p.dry_run,
            p.progress.then_some(progress),
        )?;
        info!(dry_run = p.dry_run, "backup restored");
        reply::<m::RestoreBackup>(result)
    }

    fn export(vault: &Vault, raw: Value) -> Result<Value, RpcError> {
        let p = params::<m::Export>(raw)?;
        let items = vault.export_items(p.folder.as_deref(), p.include_trash)?;
        let count = items.len();
        let text = match p.format.as_str() {
            "json" => ExportFile::new(items, now().unix_ms).to_json(),
            "csv" => export::to_csv(&items)?,
            other => {
                return Err(RpcError::new(
                    ErrorCode::InvalidInput,
                    format!("unknown export format {other:?} (json or csv)"),
                ))
            }
        };
        // Serde's strings are UTF-8 already; the copy is the reply's.
        let text = String::from_utf8_lossy(&text).into_owned();
        info!(items = count, format = %p.format, "plaintext export");
        reply::<m::Export>(m::ExportResult {
            format: p.format,
            items: count,
            text,
        })
    }
}

fn check_passphrase(passphrase: &str) -> Result<(), RpcError> {
    if passphrase.chars().count() < 8 {
        return Err(RpcError::new(
            ErrorCode::InvalidInput,
            "a backup passphrase needs at least 8 characters",
        ));
    }
    Ok(())
}

/// Reads a file named by a client, refusing one larger than `max` before
/// reading it.
fn read_bounded(path: &str, max: usize) -> Result<Vec<u8>, RpcError> {
    let invalid = |msg: String| RpcError::new(ErrorCode::InvalidInput, msg);
    let size = fs::metadata(path)
        .map_err(|e| invalid(format!("cannot read {path}: {e}")))?
        .len();
    if size > max as u64 {
        return Err(invalid(format!(
            "{path} is {size} bytes; the limit is {max} bytes"
        )));
    }
    fs::read(path).map_err(|e| invalid(format!("cannot read {path}: {e}")))
}

/// Writes `bytes` to `path` through a 0600 temporary file in the same folder,
/// synced and renamed, so a crash leaves the old file or the new one.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("no file name"))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates the socket's folder (0700, ours, not a link), clears a stale
/// socket only when nothing answers on it, binds, and sets the socket to 0600.
fn bind_socket(path: &Path) -> anyhow::Result<UnixListener> {
    let dir = path.parent().context("socket path has no parent folder")?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let meta = fs::symlink_metadata(dir)?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if meta.file_type().is_symlink() || meta.uid() != uid {
        bail!(
            "refusing socket folder {}: it is a link or not owned by this user",
            dir.display()
        );
    }
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("another cofferd is already serving {}", path.display());
        }
        fs::remove_file(path)
            .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot bind {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Holds an exclusive lock on the data dir for the daemon's lifetime.
fn lock_data_dir(dir: &Path) -> anyhow::Result<fs::File> {
    use std::os::fd::AsRawFd;
    let path = dir.join("cofferd.lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: the fd is valid for the life of `file`.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        bail!("another cofferd is already using {}", dir.display());
    }
    Ok(file)
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    fs::set_permissions(&config.data_dir, fs::Permissions::from_mode(0o700))?;
    let _lock = lock_data_dir(&config.data_dir)?;
    let vault = Vault::open(&config.data_dir, config.kdf).context("cannot open the vault store")?;
    let listener = bind_socket(&config.socket)?;
    let (events, _) = broadcast::channel(256);
    let vault = Arc::new(Mutex::new(vault));
    let net = Net::spawn(config.net.clone(), vault.clone(), events.clone());
    let shared = Arc::new(Shared {
        vault,
        events,
        last_activity: Mutex::new(Instant::now()),
        config,
        net,
        joins: Mutex::new(enrol_rpc::Joins::default()),
    });
    info!(socket = %shared.config.socket.display(), data = %shared.config.data_dir.display(), "cofferd ready");
    tokio::spawn(auto_lock(shared.clone()));
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        if let Err(e) = serve_connection(shared, stream, uid).await {
                            debug!(error = %e, "connection ended");
                        }
                    });
                }
                Err(e) => warn!(error = %e, "accept failed"),
            },
            _ = term.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { info!("SIGINT: shutting down"); break; }
        }
    }
    let _ = fs::remove_file(&shared.config.socket);
    if let Ok(mut vault) = shared.vault.lock() {
        vault.lock();
    }
    Ok(())
}

async fn auto_lock(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let idle = shared
            .last_activity
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default();
        if idle < shared.config.auto_lock {
            continue;
        }
        let locked_now = match shared.vault.lock() {
            Ok(mut vault) if !vault.is_locked() => {
                vault.lock();
                true
            }
            _ => false,
        };
        if locked_now {
            info!(idle_secs = idle.as_secs(), "auto-locked after idle time");
            shared.publish(vec![Event::LockState {
                locked: true,
                reason: "idle".into(),
            }]);
        }
    }
}

async fn send(
    framed: &mut Framed<UnixStream, AnyDelimiterCodec>,
    value: &impl serde::Serialize,
) -> anyhow::Result<()> {
    framed.send(serde_json::to_string(value)?).await?;
    Ok(())
}

async fn serve_connection(shared: Arc<Shared>, stream: UnixStream, uid: u32) -> anyhow::Result<()> {
    let peer = stream.peer_cred()?;
    let codec =
        AnyDelimiterCodec::new_with_max_length(b"\n".to_vec(), b"\n".to_vec(), MAX_FRAME_BYTES);
    let mut framed = Framed::new(stream, codec);
    if peer.uid() != uid {
        warn!(
            peer_uid = peer.uid(),
            "refused a connection from another user"
        );
        let err = RpcError::new(
            ErrorCode::PermissionDenied,
            "cofferd serves only its own user",
        );
        send(&mut framed, &Response::err(Value::Null, err)).await?;
        return Ok(());
    }
    let mut events: Option<broadcast::Receiver<Event>> = None;
    loop {
        let frame = tokio::select! {
            frame = framed.next() => frame,
            event = async { events.as_mut().expect("guarded by the if").recv().await }, if events.is_some() => {
                match event {
                    Ok(event) => send(&mut framed, &Notification::event(event)).await?,
                    Err(broadcast::error::RecvError::Lagged(n)) => warn!(missed = n, "a subscriber fell behind"),
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                }
                continue;
            }
        };
        let bytes = match frame {
            None => return Ok(()),
            Some(Ok(bytes)) => bytes,
            Some(Err(AnyDelimiterCodecError::MaxChunkLengthExceeded)) => {
                let err = RpcError::new(
                    ErrorCode::TooLarge,
                    format!("request longer than {MAX_FRAME_BYTES} bytes"),
                );
                send(&mut framed, &Response::err(Value::Null, err)).await?;
                return Ok(());
            }
            Some(Err(e)) => return Err(e.into()),
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let request: Request = match serde_json::from_slice::<Value>(&bytes) {
            Err(e) => {
                send(
                    &mut framed,
                    &Response::err(
                        Value::Null,
                        RpcError::new(ErrorCode::ParseError, format!("not JSON: {e}")),
                    ),
                )
                .await?;
                continue;
            }
            Ok(value) => match serde_json::from_value(value) {
                Ok(r) => r,
                Err(e) => {
                    send(
                        &mut framed,
                        &Response::err(
                            Value::Null,
                            RpcError::new(
                                ErrorCode::InvalidRequest,
                                format!("not a JSON-RPC request: {e}"),
                            ),
                        ),
                    )
                    .await?;
                    continue;
                }
            },
        };
        if request.jsonrpc != "2.0" {
            let err = RpcError::new(ErrorCode::InvalidRequest, "jsonrpc must be \"2.0\"");
            send(
                &mut framed,
                &Response::err(request.id.unwrap_or(Value::Null), err),
            )
            .await?;
            continue;
        }
        let id = request.id.clone().unwrap_or(Value::Null);
        debug!(method = %request.method, "request");
        let result = if request.method == m::Subscribe::NAME {
            events = Some(shared.events.subscribe());
            Ok(json!({}))
        } else {
            let shared = shared.clone();
            let method = request.method.clone();
            let (progress, mut progress_rx) = mpsc::unbounded_channel();
            let mut handler = tokio::task::spawn_blocking(move || {
                shared.dispatch(&method, request.params, progress)
            });
            // Progress notes go out on this connection while the request runs.
            loop {
                tokio::select! {
                    done = &mut handler => break done.unwrap_or_else(|_| {
                        Err(RpcError::new(ErrorCode::Internal, "request handler failed"))
                    }),
                    Some(note) = progress_rx.recv() => {
                        send(&mut framed, &ProgressNotification::new(note)).await?;
                    }
                }
            }
        };
        if request.id.is_none() {
            continue; // a notification: no reply
        }
        let response = match result {
            Ok(value) => Response::ok(id, value),
            Err(err) => Response::err(id, err),
        };
        send(&mut framed, &response).await?;
    }
}
