//! The IPC server: a Unix socket speaking line-framed JSON-RPC 2.0.
//!
//! One task accepts; one task per connection reads requests and writes
//! replies (and events, once subscribed). A request runs on the blocking
//! pool; what touches the vault is a closure sent to the vault actor
//! ([`crate::vault::actor`]), which runs requests one at a time and never
//! on a runtime worker. A malformed, oversized or unknown request gets an
//! error reply and the daemon carries on; only peers with our own uid are
//! served.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use coffer_crdt::DeviceId;
use coffer_ipc::methods::{self as m, Method};
use coffer_ipc::{
    ErrorCode, Event, ItemsNotification, Notification, Progress, ProgressNotification, Request,
    Response, RpcError, MAX_FRAME_BYTES,
};
use futures::{SinkExt, StreamExt};
use rand::rngs::OsRng;
use serde_json::{json, Value};
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::codec::{AnyDelimiterCodec, AnyDelimiterCodecError, Framed};

use tracing::{debug, info, warn};

use crate::config::Config;
use crate::export::{self, ExportError, ExportFile};
use crate::import;
use crate::net::Net;
use crate::vault::actor::{Router, VaultHandle};
use crate::vault::{Now, Output, Vault};

mod audit_rpc;
mod browser_rpc;
mod convert;
mod items_rpc;
mod listing;

use convert::{Answer, Failure};
mod enrol_rpc;
mod net_rpc;
mod relay_rpc;
mod team_rpc;
mod web;

struct Shared {
    config: Config,
    vault: VaultHandle,
    events: broadcast::Sender<Event>,
    net: Net,
    /// Joins in progress on this device (`enrol_rpc`).
    joins: enrol_rpc::JoinsHandle,
    /// Stops the daemon once notified (after `coffer reset` is answered).
    shutdown: tokio::sync::Notify,
    /// The local web app's address and sessions, when it serves (`web`).
    web: Option<(std::net::SocketAddr, web::sessions::Sessions)>,
}

/// What a request sends on its own connection before its reply.
#[derive(Debug)]
enum Note {
    /// How far a long request has got (see [`Progress`]); lossy: a note
    /// that finds the queue full is dropped.
    Progress(Progress),
    /// A part of a streamed listing (`listing`); never dropped: its
    /// sender waits for room.
    Items(m::ItemsChunk),
}

/// Where a request sends its [`Note`]s: to the connection's writer.
type NoteSink = mpsc::Sender<Note>;
/// Notes waiting to be written, at most (a listing's parts included).
const NOTE_QUEUE: usize = 16;

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

/// This machine's host name: a device's name unless given one.
pub(super) fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // within it or truncates.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let mut name = match std::str::from_utf8(&buf[..end]) {
        Ok(s) if ok && !s.is_empty() => s.to_string(),
        _ => "new device".into(),
    };
    let mut cut = name.len().min(coffer_crdt::ops::MAX_DEVICE_NAME);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    name.truncate(cut);
    name
}

fn now() -> Now {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Now { unix_ms: ms }
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

fn reply<M: Method, E: From<RpcError>>(result: M::Result) -> Result<Value, E> {
    serde_json::to_value(result)
        .map_err(|e| E::from(RpcError::new(ErrorCode::Internal, e.to_string())))
}

fn invalid(msg: impl Into<String>) -> RpcError {
    RpcError::new(ErrorCode::InvalidInput, msg.into())
}

/// Routes what the replica says: events to subscribers, the devices it
/// syncs with to the network.
struct Bus {
    events: broadcast::Sender<Event>,
    allowed: watch::Sender<BTreeMap<DeviceId, [u8; 32]>>,
    relays: watch::Sender<BTreeMap<DeviceId, Vec<String>>>,
}

impl Router for Bus {
    fn route(&mut self, output: Output) {
        match output {
            Output::Event(e) => {
                if let Some(e) = convert::event(e) {
                    let _ = self.events.send(e);
                }
            }
            Output::AllowedPeers(a) => {
                self.allowed.send_replace(a);
            }
            Output::Relays(r) => {
                self.relays.send_replace(r);
            }
            Output::Transmit(_) => {}
        }
    }
}

impl Shared {
    /// Runs one request. On the blocking pool (the vault calls wait for
    /// the vault thread; import parsing and scrypt run here).
    fn dispatch(&self, method: &str, raw: Value, progress: NoteSink) -> Result<Value, RpcError> {
        match method {
            m::ItemList::NAME => {
                let p = params::<m::ItemList>(raw.clone())?;
                // Streamed only to a reader (the web app passes none).
                if p.stream && !progress.is_closed() {
                    return listing::stream(&self.vault, p, progress);
                }
            }
            m::Import::NAME => return self.import(raw, progress),
            m::ImportData::NAME => return self.import_data(raw),
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
        if relay_rpc::handles(method) {
            return self.dispatch_relay(method, raw);
        }
        match method {
            m::UiOpen::NAME => {
                let Some((addr, sessions)) = &self.web else {
                    return Err(invalid("cofferd serves no web app (started with --no-ui, or its port was taken: see its log)"));
                };
                let token = sessions
                    .blocking_issue()
                    .map_err(|e| RpcError::new(ErrorCode::Internal, e.to_string()))?;
                reply::<m::UiOpen, _>(m::UiOpenResult {
                    url: format!("http://{addr}/"),
                    token: token.to_string(),
                })
            }
            m::Status::NAME => {
                let config = (
                    self.config.auto_lock.as_secs(),
                    self.config.data_dir.display().to_string(),
                    self.config.socket.display().to_string(),
                );
                self.vault
                    .blocking_call_quiet(move |v| status(v, config))
                    .map_err(RpcError::from)
            }
            m::Init::NAME => {
                let p = params::<m::Init>(raw)?;
                let result = self.vault.blocking_call(move |v| {
                    let (device, folder) = v.init(&p.name, &p.email, &p.pin, now(), &mut OsRng)?;
                    reply::<m::Init, _>(m::InitResult {
                        device_id: device.to_hex(),
                        folder_id: folder.to_hex(),
                    })
                });
                self.net.identity_maybe_ready();
                result
            }
            m::Reset::NAME => {
                let p = params::<m::Reset>(raw)?;
                if !p.confirm {
                    return Err(invalid(
                        "a reset erases this device's vault: confirm it (`coffer reset` asks)",
                    ));
                }
                let data_dir = self.config.data_dir.display().to_string();
                let erased = self.vault.blocking_call(|v| v.reset())?;
                reply::<m::Reset, _>(m::ResetResult {
                    reset: true,
                    device_id: erased.device.map(|d| d.to_hex()),
                    email: erased.email,
                    team: erased.team,
                    data_dir,
                    daemon_stopped: true,
                })
            }
            m::PinCheck::NAME => {
                let p = params::<m::PinCheck>(raw)?;
                crate::keystore::check_pin(&p.pin)
                    .map_err(|e| RpcError::from(crate::vault::VaultError::from(e)))?;
                reply::<m::PinCheck, RpcError>(m::Empty {})
            }
            m::Unlock::NAME => {
                let p = params::<m::Unlock>(raw)?;
                let result = self.vault.blocking_call(move |v| {
                    v.unlock(&p.pin, now())?;
                    reply::<m::Unlock, _>(m::Empty {})
                });
                self.net.identity_maybe_ready();
                result
            }
            _ => self.run_on_vault(method, raw),
        }
    }

    /// Runs a method of the vault thread's tables (`on_vault`).
    fn run_on_vault(&self, method: &str, raw: Value) -> Result<Value, RpcError> {
        let Some(handler) = on_vault(method) else {
            return Err(RpcError::new(
                ErrorCode::MethodNotFound,
                format!("unknown method {method:?}"),
            ));
        };
        self.vault
            .blocking_call(move |v| handler(v, raw))
            .map_err(RpcError::from)
    }
}

fn status(v: &mut Vault, (auto_lock_secs, data_dir, socket): (u64, String, String)) -> Answer {
    let r = v.replica().ok();
    let counts = r.and_then(|r| r.counts());
    reply::<m::Status, Failure>(m::StatusResult {
        version: env!("CARGO_PKG_VERSION").into(),
        protocol: coffer_ipc::PROTOCOL_VERSION,
        initialized: r.is_some(),
        locked: v.is_locked(),
        device_id: r.map(|r| r.device().to_hex()),
        name: r.map(|r| r.identity().name.clone()),
        email: r.map(|r| r.identity().email.clone()),
        folders: counts.map(|c| c.0),
        items: counts.map(|c| c.1),
        auto_lock_secs,
        data_dir,
        socket,
        pid: std::process::id(),
        standing: r.map(|r| r.standing().name().to_string()),
        notice: r.and_then(|r| r.standing().notice()),
    })
}

impl Shared {
    /// Reads and parses the export here, then adds it on the vault thread.
    fn import(&self, raw: Value, progress: NoteSink) -> Result<Value, RpcError> {
        let p = params::<m::Import>(raw)?;
        let bytes = read_bounded(&p.path, import::MAX_IMPORT_BYTES)?;
        let result = self.import_bytes(
            &bytes,
            &p.format,
            p.password.as_deref(),
            p.folder,
            p.dry_run,
            p.progress.then_some(progress),
        )?;
        reply::<m::Import, _>(result)
    }

    /// As [`Self::import`], with the export's bytes in the request (the
    /// web app's upload) rather than a path.
    fn import_data(&self, raw: Value) -> Result<Value, RpcError> {
        let p = params::<m::ImportData>(raw)?;
        let max_encoded = import::MAX_IMPORT_BYTES.div_ceil(3) * 4;
        if p.data_base64.len() > max_encoded {
            return Err(invalid(format!(
                "the export is larger than {} bytes",
                import::MAX_IMPORT_BYTES
            )));
        }
        let bytes = data_encoding::BASE64
            .decode(p.data_base64.trim().as_bytes())
            .map_err(|_| invalid("data_base64 is not base64"))?;
        let result = self.import_bytes(
            &bytes,
            &p.format,
            p.password.as_deref(),
            p.folder,
            p.dry_run,
            None,
        )?;
        reply::<m::ImportData, _>(result)
    }

    /// Parses an export here, then adds its items on the vault thread.
    fn import_bytes(
        &self,
        bytes: &[u8],
        format: &str,
        password: Option<&str>,
        folder: Option<String>,
        dry_run: bool,
        progress: Option<NoteSink>,
    ) -> Result<m::ImportResult, RpcError> {
        let name = format;
        let format = if name == "auto" {
            import::detect(bytes).ok_or_else(|| {
                invalid("cannot tell the format of this file: name it with --format")
            })?
        } else {
            import::Format::parse_name(name).ok_or_else(|| {
                let names: Vec<&str> = import::Format::ALL.iter().map(|f| f.name()).collect();
                invalid(format!(
                    "unknown format {name:?} (one of: auto, {})",
                    names.join(", ")
                ))
            })?
        };
        let report = import::parse(format, bytes, password).map_err(|e| {
            let code = match e {
                import::ImportError::WrongPassword => ErrorCode::WrongPassphrase,
                _ => ErrorCode::InvalidInput,
            };
            RpcError::new(code, e.to_string())
        })?;
        self.store_import(report, format, folder, dry_run, progress)
    }

    /// Adds parsed items to the vault (all or nothing).
    fn store_import(
        &self,
        report: import::ImportReport,
        format: import::Format,
        folder: Option<String>,
        dry_run: bool,
        progress: Option<NoteSink>,
    ) -> Result<m::ImportResult, RpcError> {
        let skipped: Vec<m::SkippedRecord> = report
            .skipped
            .iter()
            .map(|s| m::SkippedRecord {
                record: s.record.clone(),
                field: s.field.clone(),
                reason: s.reason.clone(),
            })
            .collect();
        let fields_left_out = skipped.iter().filter(|s| s.field.is_some()).count();
        let records_skipped = skipped.len() - fields_left_out;
        let plan = self.vault.blocking_call(move |v| {
            let mut on_progress = |done: usize, total: usize| {
                if let Some(sink) = &progress {
                    let _ = sink.try_send(Note::Progress(Progress {
                        phase: "store".into(),
                        done: done as u64,
                        total: total as u64,
                    }));
                }
            };
            v.import(
                report,
                folder.as_deref(),
                dry_run,
                now(),
                &mut OsRng,
                &mut on_progress,
            )
            .map_err(RpcError::from)
        })?;
        info!(
            format = format.name(),
            added = plan.added.values().sum::<usize>(),
            duplicates = plan.duplicates,
            dry_run,
            "import done"
        );
        Ok(m::ImportResult {
            format: format.name().into(),
            dry_run,
            added: plan
                .added
                .iter()
                .map(|(t, n)| (t.as_str().to_string(), *n))
                .collect(),
            duplicates: plan.duplicates,
            folders_created: plan.folders_created,
            skipped,
            records_skipped,
            fields_left_out,
        })
    }

    /// Seals everything readable (trash included) into an age file; the
    /// scrypt work runs here, not on the vault thread.
    fn backup(&self, raw: Value) -> Result<Value, RpcError> {
        let p = params::<m::Backup>(raw)?;
        check_passphrase(&p.passphrase)?;
        let path = Path::new(&p.path);
        if !path.is_absolute() || path.is_dir() {
            return Err(invalid(format!("{} is not a file path", p.path)));
        }
        let pin = zeroize::Zeroizing::new(p.pin.clone());
        let (items, folders) = self.vault.blocking_call(move |v| {
            v.confirm_pin(&pin, now())?;
            let items = v.export_items(None, true)?;
            let folders = v.replica()?.folder_spaces().count();
            let mut ev =
                coffer_crdt::audit::AuditEvent::new("", coffer_crdt::audit::Action::Backup);
            ev.detail = Some(format!("{} items", items.len()));
            v.audit_note(ev, now());
            Ok::<_, RpcError>((items, folders))
        })?;
        let count = items.len();
        let plaintext = ExportFile::new(items, now().unix_ms).to_json();
        let sealed = export::seal_backup(&plaintext, &p.passphrase)?;
        write_atomically(path, &sealed)
            .map_err(|e| invalid(format!("cannot write {}: {e}", p.path)))?;
        info!(items = count, bytes = sealed.len(), "backup written");
        reply::<m::Backup, _>(m::BackupResult {
            path: p.path,
            items: count,
            folders,
            bytes: sealed.len() as u64,
        })
    }

    fn restore_backup(&self, raw: Value, progress: NoteSink) -> Result<Value, RpcError> {
        let p = params::<m::RestoreBackup>(raw)?;
        // The age header and stream framing add a little to the plaintext limit.
        let sealed = read_bounded(&p.path, import::MAX_IMPORT_BYTES + (1 << 20))?;
        let plaintext = export::open_backup(&sealed, &p.passphrase)?;
        let format = import::Format::CofferJson;
        let report = import::parse(format, &plaintext, None).map_err(|e| {
            invalid(format!(
                "the backup opened but its content is not valid: {e}"
            ))
        })?;
        let result = self.store_import(
            report,
            format,
            None,
            p.dry_run,
            p.progress.then_some(progress),
        )?;
        info!(dry_run = p.dry_run, "backup restored");
        reply::<m::RestoreBackup, _>(result)
    }
}

fn export_text(v: &mut Vault, p: m::ExportParams) -> Result<m::ExportResult, Failure> {
    v.confirm_pin(&p.pin, now())?;
    let items = v.export_items(p.folder.as_deref(), p.include_trash)?;
    let count = items.len();
    let text = match p.format.as_str() {
        "json" => ExportFile::new(items, now().unix_ms).to_json(),
        "csv" => export::to_csv(&items).map_err(RpcError::from)?,
        other => {
            return Err(Failure(invalid(format!(
                "unknown export format {other:?} (json or csv)"
            ))))
        }
    };
    // Serde's strings are UTF-8 already; the copy is the reply's.
    let text = String::from_utf8_lossy(&text).into_owned();
    info!(items = count, format = %p.format, "plaintext export");
    let mut ev = coffer_crdt::audit::AuditEvent::new("", coffer_crdt::audit::Action::Export);
    ev.detail = Some(format!("{count} items as {}", p.format));
    v.audit_note(ev, now());
    Ok(m::ExportResult {
        format: p.format,
        items: count,
        text,
    })
}

/// The handler of a method that runs on the vault thread, by name.
fn on_vault(method: &str) -> Option<items_rpc::Handler> {
    items_rpc::METHODS
        .iter()
        .chain(team_rpc::METHODS.iter())
        .chain(net_rpc::METHODS.iter())
        .chain(audit_rpc::METHODS.iter())
        .chain(browser_rpc::METHODS.iter())
        .find(|(name, _)| *name == method)
        .map(|(_, h)| *h)
}

/// The devices this one syncs with, and their names (the team roster's,
/// else the one they were paired under).
fn sync_partners(v: &Vault) -> (BTreeSet<DeviceId>, BTreeMap<DeviceId, String>) {
    let Ok(r) = v.replica() else {
        return Default::default();
    };
    let mut names: BTreeMap<DeviceId, String> = r
        .trusted()
        .iter()
        .filter_map(|t| Some((t.device, t.name.clone()?)))
        .collect();
    if let Some(t) = r.team_state() {
        names.extend(t.team.device_names.iter().map(|(d, n)| (*d, n.clone())));
        names.extend(t.team.relays.keys().map(|d| (*d, "relay".to_string())));
    }
    // A device the team took out stays connectable only to be told so:
    // no partner to list.
    // Nor a relay the team removed.
    let out = |d: &DeviceId| {
        r.team_state()
            .is_some_and(|t| t.is_dead(d) || t.team.removed_relays.contains(d))
    };
    let partners = r.allowed_peers().keys().filter(|d| !out(d)).copied();
    (partners.collect(), names)
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
    let mode = meta.permissions().mode();
    if mode & 0o1002 != 0 {
        // A shared folder such as /tmp (owned by root when root runs this):
        // tightening it would lock every other user out of it.
        bail!(
            "refusing socket folder {}: it is shared (world-writable or sticky); give the socket a folder of its own",
            dir.display()
        );
    }
    if mode & 0o077 != 0 {
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
    let vault = match config.relay {
        Some(limits) => Vault::open_relay(&config.data_dir, limits, &mut rand::rngs::OsRng)
            .context("cannot open the relay's store")?,
        None => Vault::open(&config.data_dir, config.kdf).context("cannot open the vault store")?,
    };
    let listener = bind_socket(&config.socket)?;
    let (events, _) = broadcast::channel(256);
    let (allowed, allowed_rx) = watch::channel(BTreeMap::new());
    let (relays, relays_rx) = watch::channel(BTreeMap::new());
    let bus = Bus {
        events: events.clone(),
        allowed,
        relays,
    };
    let vault = VaultHandle::spawn(vault, config.auto_lock, bus);
    let net = Net::spawn(
        config.net.clone(),
        vault.clone(),
        events.clone(),
        allowed_rx,
        relays_rx,
    );
    let ui = config
        .ui
        .map(|addr| web::off_peer_ports(addr, &config.net.tcp_listen_ports()))
        .and_then(web::bind);
    let web = ui.as_ref().and_then(|l| {
        let addr = l.local_addr().ok()?;
        Some((addr, web::sessions::Sessions::spawn(events.subscribe())))
    });
    let shared = Arc::new(Shared {
        vault,
        events,
        config,
        net,
        joins: enrol_rpc::JoinsHandle::spawn(),
        shutdown: tokio::sync::Notify::new(),
        web,
    });
    if let (Some(listener), Some((_, sessions))) = (ui, &shared.web) {
        web::spawn(listener, shared.clone(), sessions.clone());
    }
    info!(socket = %shared.config.socket.display(), data = %shared.config.data_dir.display(), "cofferd ready");
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
            _ = shared.shutdown.notified() => { info!("vault erased: shutting down"); break; }
        }
    }
    let _ = fs::remove_file(&shared.config.socket);
    shared.vault.stop().await;
    Ok(())
}

async fn send(
    framed: &mut Framed<UnixStream, AnyDelimiterCodec>,
    value: &impl serde::Serialize,
) -> anyhow::Result<()> {
    framed.send(serde_json::to_string(value)?).await?;
    Ok(())
}

async fn send_note(
    framed: &mut Framed<UnixStream, AnyDelimiterCodec>,
    note: Note,
) -> anyhow::Result<()> {
    match note {
        Note::Progress(p) => send(framed, &ProgressNotification::new(p)).await,
        Note::Items(part) => send(framed, &ItemsNotification::new(part)).await,
    }
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
        let reset = request.method == m::Reset::NAME;
        let result = if request.method == m::Subscribe::NAME {
            events = Some(shared.events.subscribe());
            Ok(json!({}))
        } else {
            let shared = shared.clone();
            let method = request.method.clone();
            let (notes, mut notes_rx) = mpsc::channel(NOTE_QUEUE);
            let mut handler = tokio::task::spawn_blocking(move || {
                shared.dispatch(&method, request.params, notes)
            });
            // Notes go out on this connection while the request runs, and
            // those still queued when it ends before its reply (every note
            // was queued before the handler returned).
            let result = loop {
                tokio::select! {
                    done = &mut handler => break done.unwrap_or_else(|_| {
                        Err(RpcError::new(ErrorCode::Internal, "request handler failed"))
                    }),
                    Some(note) = notes_rx.recv() => send_note(&mut framed, note).await?,
                }
            };
            while let Ok(note) = notes_rx.try_recv() {
                send_note(&mut framed, note).await?;
            }
            result
        };
        if request.id.is_none() {
            continue; // a notification: no reply
        }
        let erased = reset && result.is_ok();
        let response = match result {
            Ok(value) => Response::ok(id, value),
            Err(err) => Response::err(id, err),
        }
        .with_notice(shared.vault.notice());
        let sent = send(&mut framed, &response).await;
        if erased {
            // The vault is gone: this process's network identity and
            // sessions were the erased device's. Stop once answered.
            shared.shutdown.notify_one();
        }
        sent?;
    }
}
