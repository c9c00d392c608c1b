//! `coffer`: the command-line client. Every command is a JSON-RPC call to
//! `cofferd` through `coffer-ipc`'s client; this crate only parses arguments,
//! reads secrets from stdin or a prompt, and prints.

mod args;
mod audit;
mod browser;
mod clipboard;
mod config;
mod connect;
mod docs;
mod doctor;
mod enrol;
mod generate;
mod input;
mod ls;
mod output;
mod refs;
mod relay;
mod service;
mod sync;
mod team;
#[cfg(test)]
mod tests;
mod ui;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use coffer_ipc::methods::{self as m};
use coffer_ipc::{Client, ClientError, ErrorCode, RpcError};
use serde_json::json;

use crate::args::{
    AddCommand, BackupArgs, ClearClipboardArgs, Cli, ClipboardX11Args, Command, CompletionArgs,
    ConflictsArgs, ConflictsCommand, CustomFields, EditArgs, ExportArgs, FolderCommand,
    GenerateArgs, GetArgs, HistoryArgs, ImportArgs, InitArgs, Lazy, LsArgs, ManArgs, MvArgs,
    PinCommand, ReadArgs, ResetArgs, RestoreArgs, RestoreBackupArgs, RmArgs, SearchArgs, TotpArgs,
    TotpCommand, TrashCommand, UnlockArgs,
};
use crate::connect::Target;
use crate::input::Secret;

/// Exit codes, documented in docs/cli.md.
pub mod exit {
    pub const ERROR: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const LOCKED: u8 = 3;
    pub const NOT_INITIALIZED: u8 = 4;
    pub const NOT_FOUND: u8 = 5;
    pub const AMBIGUOUS: u8 = 6;
    pub const WRONG_PIN: u8 = 7;
    pub const TOO_MANY_ATTEMPTS: u8 = 8;
    pub const INVALID_INPUT: u8 = 9;
    pub const PERMISSION_DENIED: u8 = 10;
    pub const UNAVAILABLE: u8 = 11;
    pub const NO_CLIPBOARD: u8 = 12;
    pub const ALREADY_INITIALIZED: u8 = 13;
    pub const WRONG_PASSPHRASE: u8 = 14;
    pub const INVITE_INVALID: u8 = 15;
    pub const INVITE_EXPIRED: u8 = 16;
    pub const INVITE_USED: u8 = 17;
    pub const JOIN_REJECTED: u8 = 18;
    pub const INVITER_UNREACHABLE: u8 = 19;
    pub const SERVICE: u8 = 20;
    /// The team revoked this device or removed its user.
    pub const NOT_A_MEMBER: u8 = 21;
    /// `coffer doctor` found a problem (its report is on stdout).
    pub const PROBLEMS_FOUND: u8 = 22;
    /// `coffer run`: the command could not be run (not executable).
    pub const CANNOT_EXECUTE: u8 = 126;
    /// `coffer run`: the command was not found.
    pub const COMMAND_NOT_FOUND: u8 = 127;
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The daemon refused the request.
    #[error("{0}")]
    Rpc(RpcError),
    /// No daemon answered and none could be started.
    #[error("cofferd is not available: {0}")]
    Unavailable(String),
    /// Bad arguments or input, or no terminal for a prompt.
    #[error("{0}")]
    Usage(String),
    /// `--copy` without a clipboard tool.
    #[error("no clipboard available: needs a graphical session (an X11 DISPLAY, or WAYLAND_DISPLAY with wl-copy); print the value without --copy instead")]
    NoClipboard,
    /// `coffer service`: the service manager refused or is missing.
    #[error("{0}")]
    Service(String),
    /// `coffer run`: the command could not be started.
    #[error("cannot run {command}: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    /// `coffer doctor` found this many problems (the report is on stdout).
    #[error("coffer doctor found {0} problem(s)")]
    Problems(usize),
    /// Anything else (local IO).
    #[error("{0}")]
    Other(String),
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Rpc(rpc) => CliError::Rpc(rpc),
            other => CliError::Unavailable(other.to_string()),
        }
    }
}

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            CliError::Rpc(rpc) => match rpc.kind() {
                Some(ErrorCode::Locked) => exit::LOCKED,
                Some(ErrorCode::NotInitialized) => exit::NOT_INITIALIZED,
                Some(ErrorCode::AlreadyInitialized) => exit::ALREADY_INITIALIZED,
                Some(ErrorCode::NotFound) => exit::NOT_FOUND,
                Some(ErrorCode::Ambiguous) => exit::AMBIGUOUS,
                Some(ErrorCode::WrongPin) => exit::WRONG_PIN,
                Some(ErrorCode::TooManyAttempts) => exit::TOO_MANY_ATTEMPTS,
                Some(ErrorCode::InvalidInput | ErrorCode::InvalidParams | ErrorCode::TooLarge) => {
                    exit::INVALID_INPUT
                }
                Some(ErrorCode::PermissionDenied) => exit::PERMISSION_DENIED,
                Some(ErrorCode::WrongPassphrase) => exit::WRONG_PASSPHRASE,
                Some(ErrorCode::InviteInvalid) => exit::INVITE_INVALID,
                Some(ErrorCode::InviteExpired) => exit::INVITE_EXPIRED,
                Some(ErrorCode::InviteUsed) => exit::INVITE_USED,
                Some(ErrorCode::JoinRejected) => exit::JOIN_REJECTED,
                Some(ErrorCode::InviterUnreachable) => exit::INVITER_UNREACHABLE,
                Some(ErrorCode::NoLongerMember) => exit::NOT_A_MEMBER,
                _ => exit::ERROR,
            },
            CliError::Unavailable(_) => exit::UNAVAILABLE,
            CliError::Usage(_) => exit::USAGE,
            CliError::NoClipboard => exit::NO_CLIPBOARD,
            CliError::Service(_) => exit::SERVICE,
            CliError::Spawn { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => exit::COMMAND_NOT_FOUND,
                _ => exit::CANNOT_EXECUTE,
            },
            CliError::Problems(_) => exit::PROBLEMS_FOUND,
            CliError::Other(_) => exit::ERROR,
        }
    }

    /// The stable name of the error in `--json` output (docs/cli.md).
    fn code_name(&self) -> &'static str {
        match self.exit_code() {
            exit::LOCKED => "locked",
            exit::NOT_INITIALIZED => "not_initialized",
            exit::NOT_FOUND => "not_found",
            exit::AMBIGUOUS => "ambiguous",
            exit::WRONG_PIN => "wrong_pin",
            exit::TOO_MANY_ATTEMPTS => "too_many_attempts",
            exit::INVALID_INPUT => "invalid_input",
            exit::PERMISSION_DENIED => "permission_denied",
            exit::UNAVAILABLE => "unavailable",
            exit::NO_CLIPBOARD => "no_clipboard",
            exit::ALREADY_INITIALIZED => "already_initialized",
            exit::WRONG_PASSPHRASE => "wrong_passphrase",
            exit::INVITE_INVALID => "invite_invalid",
            exit::INVITE_EXPIRED => "invite_expired",
            exit::INVITE_USED => "invite_used",
            exit::JOIN_REJECTED => "join_rejected",
            exit::INVITER_UNREACHABLE => "inviter_unreachable",
            exit::USAGE => "usage",
            exit::SERVICE => "service",
            exit::NOT_A_MEMBER => "not_a_member",
            exit::PROBLEMS_FOUND => "problems_found",
            exit::CANNOT_EXECUTE => "cannot_execute",
            exit::COMMAND_NOT_FOUND => "command_not_found",
            _ => "error",
        }
    }

    /// What to do next, where there is an obvious next step.
    fn hint(&self) -> Option<String> {
        let CliError::Rpc(rpc) = self else {
            return None;
        };
        match rpc.kind()? {
            ErrorCode::Locked => Some("run `coffer unlock`".into()),
            ErrorCode::NotInitialized => Some("run `coffer init --name NAME --email EMAIL`".into()),
            ErrorCode::Ambiguous => {
                let candidates = rpc.data.as_ref()?.get("candidates")?.as_array()?;
                let list: Vec<String> = candidates
                    .iter()
                    .filter_map(|c| c.as_str())
                    .map(|c| format!("  {c}"))
                    .collect();
                Some(format!(
                    "name one of these as FOLDER/NAME or by id prefix:\n{}",
                    list.join("\n")
                ))
            }
            _ => None,
        }
    }

    /// The error as `--json` prints it on stderr (docs/cli.md, "JSON output").
    fn to_json(&self) -> serde_json::Value {
        let mut error = json!({
            "code": self.code_name(),
            "exit_code": self.exit_code(),
            "message": self.to_string(),
            "hint": self.hint(),
        });
        if let CliError::Rpc(rpc) = self {
            error["rpc_code"] = json!(rpc.code);
            if let Some(data) = &rpc.data {
                error["data"] = data.clone();
            }
        }
        json!({ "error": error })
    }

    /// Prints the error on stderr: one JSON line with `--json`, else text.
    fn report(&self, json: bool) {
        if json {
            eprintln!("{}", self.to_json());
        } else if !matches!(self, CliError::Problems(_)) {
            // (`coffer doctor`'s report on stdout says that one.)
            eprintln!("coffer: error: {self}");
            if let Some(hint) = self.hint() {
                eprintln!("hint: {hint}");
            }
        }
    }
}

/// Whether `--json` is among the arguments before any `--` (for errors that
/// happen before or while clap parses them).
fn json_requested() -> bool {
    std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

/// Whether the file starts with a KeePass database signature (KDBX 2–4,
/// KeePass 1 KDB): the daemon's `import::detect` rule, read here because
/// the CLI asks for the password before the daemon sees the file.
fn is_keepass_database(path: &std::path::Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && head[..4] == [0x03, 0xD9, 0xA2, 0x9A]
        && matches!(head[4..], [0x65..=0x67, 0xFB, 0x4B, 0xB5])
}

/// `coffer ls | head -1`: once the reader of our output is gone, `println!`
/// panics on the broken pipe (Rust ignores SIGPIPE). The reader has what it
/// wanted: exit 0 without a word, as ripgrep does. Any other panic goes to
/// the default hook. (SIGPIPE back at its default would do it too, but
/// would also kill `coffer` silently on a write to a daemon socket or a
/// clipboard tool that went away, where an error message is due.)
fn exit_quietly_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        let epipe = format!("(os error {})", libc::EPIPE);
        if message.starts_with("failed printing to std") && message.contains(&epipe) {
            std::process::exit(0);
        }
        default(info)
    }));
}

fn main() -> ExitCode {
    // Before anything holds a secret: no core dumps, no debugger attach.
    let core_limit = match coffer_ipc::process::harden() {
        Ok(limit) => Some(limit),
        Err(e) => {
            eprintln!("coffer: warning: cannot turn core dumps off: {e}");
            None
        }
    };
    exit_quietly_on_broken_pipe();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { exit::USAGE } else { 0 };
            if code != 0 && json_requested() {
                CliError::Usage(e.kind().to_string()).report(true);
                let _ = e.print();
            } else {
                let _ = e.print();
            }
            return ExitCode::from(code);
        }
    };
    let json = cli.json;
    match run(cli, core_limit) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            e.report(json);
            ExitCode::from(e.exit_code())
        }
    }
}

struct Ctx {
    target: Target,
    client: Option<Client>,
    /// `--json`: print results as JSON.
    json: bool,
}

impl Ctx {
    fn client(&mut self) -> Result<&mut Client, CliError> {
        if self.client.is_none() {
            self.client = Some(connect::connect_or_start(&self.target)?);
        }
        Ok(self.client.as_mut().expect("just set"))
    }

    fn call<M: m::Method>(&mut self, params: &M::Params) -> Result<M::Result, CliError> {
        Ok(self.client()?.call::<M>(params)?)
    }

    /// Asks the daemon whether `pin` may be a PIN (length, strength), before
    /// a prompt asks for it again.
    fn check_pin(&mut self, pin: &Secret) -> Result<(), CliError> {
        self.call::<m::PinCheck>(&m::UnlockParams {
            pin: pin.expose().to_string(),
        })
        .map(|_| ())
    }

    /// Prints `value` as JSON with `--json`, else runs `human`.
    fn print<T: serde::Serialize>(&self, value: &T, human: impl FnOnce(&T)) {
        if self.json {
            output::json(value);
        } else {
            human(value);
        }
    }
}

/// `path` made absolute against the current folder (the daemon has its own).
fn absolute(path: &std::path::Path) -> Result<PathBuf, CliError> {
    std::path::absolute(path)
        .map_err(|e| CliError::Usage(format!("bad path {}: {e}", path.display())))
}

/// The clipboard's clear delay: the flag (or its environment variable), else
/// `clipboard_clear_secs` in config.toml, else 30 s.
fn clear_after(flag: args::ClearAfter) -> Result<u64, CliError> {
    match flag.clear_after {
        Some(secs) => Ok(secs),
        None => Ok(config::CliConfig::load()?
            .clipboard_clear_secs
            .unwrap_or(clipboard::DEFAULT_CLEAR_AFTER_SECS)),
    }
}

fn cleared_in(secs: u64) -> String {
    if secs == 0 {
        "it is not cleared (--clear-after 0)".into()
    } else {
        format!("it is cleared in {secs} s")
    }
}

/// Runs one command; `Ok` carries the exit code (0 but for `coffer run`).
fn run(cli: Cli, core_limit: Option<coffer_ipc::process::CoreLimit>) -> Result<u8, CliError> {
    let mut ctx = Ctx {
        target: Target {
            socket: cli
                .socket
                .unwrap_or_else(coffer_ipc::paths::default_socket_path),
            data_dir: cli.data_dir,
            autostart: !cli.no_autostart,
        },
        client: None,
        json: cli.json,
    };
    // Both say themselves what the team's notice says.
    let status = matches!(cli.command, Command::Status | Command::Doctor);
    let code = dispatch(&mut ctx, cli.command, core_limit)?;
    if !status && !ctx.json && ctx.client.is_some() {
        notice(&mut ctx);
    }
    Ok(code)
}

/// After a command that reached the daemon: when the team took this device
/// out (revoked it, or removed its user), says so on stderr, every time.
/// Every response carries the notice: no second request.
fn notice(ctx: &mut Ctx) {
    if let Some(notice) = ctx.client.as_ref().and_then(|c| c.notice()) {
        eprintln!("coffer: notice: {notice}");
    }
}

fn dispatch(
    ctx: &mut Ctx,
    command: Command,
    core_limit: Option<coffer_ipc::process::CoreLimit>,
) -> Result<u8, CliError> {
    let json = ctx.json;
    match command {
        Command::Init(Lazy(InitArgs {
            name,
            email,
            pin_stdin,
        })) => {
            let pin = input::new_pin(pin_stdin, |pin| ctx.check_pin(pin))?;
            let r = ctx.call::<m::Init>(&m::InitParams {
                name,
                email,
                pin: pin.expose().to_string(),
            })?;
            ctx.print(&r, |r| {
                println!(
                    "Initialised device {} with a Personal folder. The vault is unlocked.",
                    output::short(&r.device_id)
                )
            });
        }
        Command::Unlock(Lazy(UnlockArgs { pin_stdin })) => {
            let pin = input::pin(pin_stdin, false)?;
            ctx.call::<m::Unlock>(&m::UnlockParams {
                pin: pin.expose().to_string(),
            })?;
            ctx.print(&json!({ "locked": false }), |_| println!("Unlocked."));
        }
        Command::Lock => {
            ctx.call::<m::Lock>(&m::Empty {})?;
            ctx.print(&json!({ "locked": true }), |_| println!("Locked."));
        }
        Command::Status => {
            let s = ctx.call::<m::Status>(&m::Empty {})?;
            ctx.print(&s, output::status);
        }
        Command::Add(Lazy(add)) => add_item(ctx, add)?,
        Command::Get(Lazy(GetArgs {
            item,
            field,
            reveal,
            copy,
            clear,
            trash,
        })) => {
            // The use is recorded by the daemon in the request that serves
            // the item; `--copy` without `--field` needs the item's type to
            // pick the field, so it is told afterwards.
            let action = if copy { "copy" } else { "reveal" };
            let record = (field.is_some() || reveal).then(|| m::ItemUse {
                action: action.into(),
                field: field.clone(),
            });
            let recorded = record.is_some();
            let view = ctx.call::<m::ItemGet>(&m::ItemRef {
                item,
                trash,
                record,
            })?;
            let field = field.or_else(|| copy.then(|| default_copy_field(&view).to_string()));
            match field {
                Some(field) => {
                    let value = output::field_value(&view, &field)?;
                    if !recorded {
                        audit::note(ctx, action, &view.id, &field);
                    }
                    if copy {
                        let secs = clear_after(clear)?;
                        clipboard::copy(&value, secs)?;
                        ctx.print(
                            &json!({
                                "copied": true,
                                "item": view.name,
                                "field": field,
                                "clear_after_secs": secs,
                            }),
                            |_| {
                                eprintln!(
                                    "Copied {field} of {} to the clipboard; {}.",
                                    view.name,
                                    cleared_in(secs)
                                )
                            },
                        );
                    } else if json {
                        output::json(&json!({
                            "item": view.name,
                            "field": field,
                            "value": *value,
                        }));
                    } else {
                        println!("{}", *value);
                    }
                }
                // Secrets stay masked in JSON too unless asked for.
                None if reveal => ctx.print(&view, |v| output::item(v, true)),
                None => ctx.print(&output::masked_item(view), |v| output::item(v, false)),
            }
        }
        Command::Read(Lazy(ReadArgs {
            reference,
            no_newline,
        })) => refs::read(ctx, &reference, no_newline)?,
        Command::Run(Lazy(args)) => return refs::run(ctx, args, core_limit),
        Command::Inject(Lazy(args)) => refs::inject(ctx, args)?,
        Command::Ls(Lazy(LsArgs { folder, trash })) => ls::ls(ctx, folder, trash)?,
        Command::Search(Lazy(SearchArgs { query })) => {
            let items = ctx.call::<m::ItemSearch>(&m::SearchParams { query })?;
            ctx.print(&items, |i| output::summaries(i));
        }
        Command::Edit(Lazy(args)) => edit_item(ctx, args)?,
        Command::Rm(Lazy(RmArgs { item })) => {
            let s = ctx.call::<m::ItemTrash>(&m::ItemRef::live(item))?;
            ctx.print(&s, |s| {
                println!(
                    "Moved {}/{} to the trash (`coffer restore {}` brings it back).",
                    s.folder,
                    s.name,
                    output::prefix(&s.id, 8)
                )
            });
        }
        Command::Mv(Lazy(MvArgs { item, folder })) => {
            let view = ctx.call::<m::ItemMove>(&m::ItemMoveParams { item, folder })?;
            ctx.print(&view, |v| {
                println!(
                    "Moved {} to folder {} ({}).",
                    v.name,
                    v.folder,
                    output::prefix(&v.id, 8)
                )
            });
        }
        Command::Trash(Lazy(TrashCommand::Ls { folder })) => ls::ls(ctx, folder, true)?,
        Command::Trash(Lazy(TrashCommand::Empty { folder, yes })) => {
            if input::stdin_is_tty()
                && !yes
                && !input::confirm(
                    "Delete every item in the trash for good, for every member? Type \"yes\": ",
                )?
            {
                return Err(CliError::Usage("trash not emptied".into()));
            }
            let r = ctx.call::<m::TrashEmpty>(&m::TrashEmptyParams { folder })?;
            ctx.print(&r, output::trash_emptied);
        }
        Command::Pin(Lazy(PinCommand::Change { pin_stdin })) => {
            let (old, new) = input::pin_change(pin_stdin, |pin| ctx.check_pin(pin))?;
            ctx.call::<m::PinChange>(&m::PinChangeParams {
                old_pin: old.expose().to_string(),
                new_pin: new.expose().to_string(),
            })?;
            ctx.print(&json!({ "pin_changed": true }), |_| {
                println!("PIN changed: the new PIN unlocks this device from now on.")
            });
        }
        Command::Restore(Lazy(RestoreArgs { item })) => {
            let s = ctx.call::<m::ItemRestore>(&m::ItemRef {
                item,
                trash: true,
                record: None,
            })?;
            ctx.print(&s, |s| println!("Restored {}/{}.", s.folder, s.name));
        }
        Command::History(Lazy(HistoryArgs { item, reveal })) => {
            let mut entries = ctx.call::<m::ItemHistory>(&m::ItemRef::live(item))?;
            if !reveal {
                entries = output::masked_history(entries);
            }
            ctx.print(&entries, |e| output::history(e, reveal));
        }
        Command::Conflicts(Lazy(ConflictsArgs {
            action:
                Some(ConflictsCommand::Pick {
                    item,
                    field,
                    choice,
                }),
            ..
        })) => {
            // A custom field may be named by its title, as `--field` allows.
            let view = ctx.call::<m::ItemGet>(&m::ItemRef::live(item.clone()))?;
            let field = view
                .labels
                .iter()
                .find(|(_, title)| **title == field)
                .map_or(field, |(key, _)| key.clone());
            let v = ctx.call::<m::ItemPickConflict>(&m::PickConflictParams {
                item: view.id,
                field: field.clone(),
                choice,
            })?;
            ctx.print(&output::masked_item(v), |v| {
                if field == "trash" && v.trashed_ms.is_some() {
                    println!(
                        "Moved {}/{} to the trash for every member.",
                        v.folder, v.name
                    );
                } else if field == "trash" {
                    println!(
                        "Kept {}/{} out of the trash for every member.",
                        v.folder, v.name
                    );
                } else {
                    println!(
                        "Settled {}/{}: {field} keeps value {choice} for every member.",
                        v.folder, v.name
                    );
                }
            });
        }
        Command::Conflicts(Lazy(ConflictsArgs {
            reveal,
            action: None,
        })) => {
            let mut items = ctx.call::<m::ItemConflicts>(&m::Empty {})?;
            if !reveal {
                items = items.into_iter().map(output::masked_conflicts).collect();
            }
            ctx.print(&items, |i| output::conflicts(i));
        }
        Command::Totp(Lazy(args)) => totp(ctx, args)?,
        Command::Folder(Lazy(FolderCommand::Create { name })) => {
            let f = ctx.call::<m::FolderCreate>(&m::FolderCreateParams { name })?;
            ctx.print(&f, |f| {
                println!("Created folder {} ({}).", f.name, output::short(&f.id))
            });
        }
        Command::Folder(Lazy(FolderCommand::Rename { folder, name })) => {
            let f = ctx.call::<m::FolderRename>(&m::FolderRenameParams { folder, name })?;
            ctx.print(&f, |f| {
                println!(
                    "Renamed folder {} to {}; every member sees the new name.",
                    output::short(&f.id),
                    f.name
                )
            });
        }
        Command::Folder(Lazy(FolderCommand::Rm {
            folder,
            force,
            leave,
        })) => {
            let r = ctx.call::<m::FolderRemove>(&m::FolderRemoveParams {
                folder,
                force,
                leave,
            })?;
            ctx.print(&r, |r| match r.outcome.as_str() {
                "left" => println!("Left folder {}; its other members keep it.", r.name),
                _ => println!("Deleted folder {} for every member.", r.name),
            });
        }
        Command::Folder(Lazy(FolderCommand::Sharing(cmd))) => team::share(ctx, cmd)?,
        Command::Team(Lazy(cmd)) => team::team(ctx, cmd)?,
        Command::Relay(Lazy(cmd)) => relay::relay(ctx, cmd)?,
        Command::Audit(Lazy(args)) => audit::run(ctx, args)?,
        Command::User(Lazy(cmd)) => team::user(ctx, cmd)?,
        Command::Group(Lazy(cmd)) => team::group(ctx, cmd)?,
        Command::Folder(Lazy(FolderCommand::Ls)) => {
            let folders = ctx.call::<m::FolderList>(&m::Empty {})?;
            ctx.print(&folders, |f| output::folders(f));
        }
        Command::Generate(Lazy(GenerateArgs {
            length,
            words,
            no_symbols,
        })) => {
            let spec = generate::PasswordSpec {
                length,
                symbols: !no_symbols,
            };
            let (kind, value, bits) = match words {
                Some(words) => (
                    "passphrase",
                    generate::passphrase(words),
                    generate::passphrase_entropy_bits(words),
                ),
                None => (
                    "password",
                    generate::password(&spec),
                    generate::password_entropy_bits(&spec),
                ),
            };
            let value = value.map_err(CliError::Usage)?;
            if json {
                output::json(&json!({
                    "kind": kind,
                    "value": *value,
                    "entropy_bits": bits.floor(),
                }));
            } else {
                println!("{}", *value);
                if input::stdout_is_tty() {
                    eprintln!("({bits:.0} bits of entropy)");
                }
            }
        }
        Command::Import(Lazy(ImportArgs {
            format,
            file,
            folder,
            dry_run,
        })) => {
            let path = std::fs::canonicalize(&file)
                .map_err(|e| CliError::Usage(format!("cannot open {}: {e}", file.display())))?;
            // By content, never by the file's name: a KeePass database
            // starts with its signature whatever it is called.
            let is_kdbx = format == "kdbx" || (format == "auto" && is_keepass_database(&path));
            let password = if is_kdbx {
                input::optional_secret_line("KeePass database password (Enter if it has none): ")?
            } else {
                None
            };
            let params = m::ImportParams {
                format,
                path: path.display().to_string(),
                folder,
                dry_run,
                password: password.as_ref().map(|p| p.expose().to_string()),
                progress: !json && output::stderr_is_tty(),
            };
            let r = output::with_progress(|on_progress| {
                Ok(ctx
                    .client()?
                    .call_with_progress::<m::Import>(&params, on_progress)?)
            })?;
            ctx.print(&r, output::import);
        }
        Command::Export(Lazy(ExportArgs {
            format,
            folder,
            output,
            include_trash,
            yes,
            pin_stdin,
        })) => {
            let what = folder.as_deref().unwrap_or("every folder");
            eprintln!(
                "Warning: the export holds your passwords and TOTP secrets in plaintext ({what}). \
                 Store it encrypted, or use `coffer backup` instead."
            );
            if input::stdin_is_tty() && !yes && !input::confirm("Type \"yes\" to export: ")? {
                return Err(CliError::Usage("export cancelled".into()));
            }
            let pin = input::pin_again(pin_stdin, "export")?;
            let r = ctx.call::<m::Export>(&m::ExportParams {
                pin: pin.expose().to_string(),
                format: format.clone(),
                folder,
                include_trash,
            })?;
            let text = zeroize::Zeroizing::new(r.text);
            match output {
                Some(path) => {
                    output::write_new_private_file(&path, text.as_bytes())?;
                    ctx.print(
                        &json!({
                            "format": format,
                            "items": r.items,
                            "path": path.display().to_string(),
                        }),
                        |_| eprintln!("Exported {} items to {}.", r.items, path.display()),
                    );
                }
                None if json => output::json(&json!({
                    "format": format,
                    "items": r.items,
                    "text": *text,
                })),
                None => {
                    use std::io::Write;
                    match std::io::stdout().write_all(text.as_bytes()) {
                        // The reader went away (`coffer export | head`): quietly.
                        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                        r => {
                            r.map_err(|e| CliError::Other(format!("cannot write the export: {e}")))?
                        }
                    }
                }
            }
        }
        Command::Backup(Lazy(BackupArgs {
            file,
            passphrase_stdin,
            pin_stdin,
        })) => {
            let path = absolute(&file)?;
            let pin = input::pin_again(pin_stdin, "backup")?;
            let passphrase = input::passphrase(passphrase_stdin, true)?;
            let r = ctx.call::<m::Backup>(&m::BackupParams {
                path: path.display().to_string(),
                passphrase: passphrase.expose().to_string(),
                pin: pin.expose().to_string(),
            })?;
            ctx.print(&r, |r| {
                println!(
                    "Backed up {} items from {} folders to {} ({} bytes, age-encrypted).",
                    r.items, r.folders, r.path, r.bytes
                )
            });
        }
        Command::RestoreBackup(Lazy(RestoreBackupArgs {
            file,
            passphrase_stdin,
            dry_run,
        })) => {
            let path = std::fs::canonicalize(&file)
                .map_err(|e| CliError::Usage(format!("cannot open {}: {e}", file.display())))?;
            let passphrase = input::passphrase(passphrase_stdin, false)?;
            let params = m::RestoreBackupParams {
                path: path.display().to_string(),
                passphrase: passphrase.expose().to_string(),
                dry_run,
                progress: !json && output::stderr_is_tty(),
            };
            let r = output::with_progress(|on_progress| {
                Ok(ctx
                    .client()?
                    .call_with_progress::<m::RestoreBackup>(&params, on_progress)?)
            })?;
            ctx.print(&r, output::import);
        }
        Command::Events => {
            let client = ctx.client()?;
            client.subscribe()?;
            loop {
                let event = client.next_event()?;
                if json {
                    // One compact object a line, for scripts.
                    output::json_line(&event);
                } else {
                    println!("{}", output::event(&event));
                }
            }
        }
        Command::Service(Lazy(cmd)) => service::service(ctx, cmd)?,
        Command::Browser(Lazy(cmd)) => browser::browser(ctx, cmd)?,
        Command::Completion(Lazy(CompletionArgs { shell })) => docs::completion(shell, json)?,
        Command::Man(Lazy(ManArgs { dir })) => docs::man_pages(&dir, json)?,
        Command::ClearClipboard(Lazy(ClearClipboardArgs { after })) => {
            clipboard::clear_later(after)
        }
        Command::ClipboardX11(Lazy(ClipboardX11Args { after })) => {
            return Ok(clipboard::serve_x11(after))
        }
        Command::Device(Lazy(cmd)) => sync::device(ctx, cmd)?,
        Command::Peers => sync::peers(ctx)?,
        Command::Doctor => doctor::doctor(ctx)?,
        Command::Sync(Lazy(cmd)) => sync::sync(ctx, cmd)?,
        Command::Invite(Lazy(args)) => enrol::invite(ctx, args)?,
        Command::Join(Lazy(args)) => enrol::join(ctx, args, false)?,
        Command::Reset(Lazy(ResetArgs { yes })) => enrol::reset(ctx, yes)?,
        Command::Ui(Lazy(args)) => ui::open(ctx, args)?,
    }
    Ok(0)
}

fn default_copy_field(view: &m::ItemView) -> &'static str {
    match view.item_type.as_str() {
        "note" => "notes",
        "card" => "number",
        "totp" => "totp",
        _ => "password",
    }
}

fn generated(len: usize, no_symbols: bool) -> Result<Secret, CliError> {
    let value = generate::password(&generate::PasswordSpec {
        length: len,
        symbols: !no_symbols,
    })
    .map_err(CliError::Usage)?;
    Ok(Secret::new(value.to_string()))
}

/// Reads the value of each `--hidden-field NAME`, in order: a hidden
/// prompt on a terminal, else one stdin line each.
fn read_hidden(names: &[String]) -> Result<Vec<(String, Secret)>, CliError> {
    names
        .iter()
        .map(|name| {
            Ok((
                name.clone(),
                input::secret_line(&format!("{name}: "), false)?,
            ))
        })
        .collect()
}

/// `--field NAME=VALUE` split at the first `=`.
fn split_field(arg: &str) -> Result<(String, String), CliError> {
    match arg.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_string(), value.to_string()))
        }
        _ => Err(CliError::Usage(format!(
            "--field wants NAME=VALUE, got {arg:?} (a secret goes in --hidden-field NAME)"
        ))),
    }
}

/// The `fields` keys of new custom fields: `custom:text:NAME` and
/// `custom:hidden:NAME` (the item schema's keys, as importers write them).
fn new_custom_fields(
    custom: &CustomFields,
    hidden: Vec<(String, Secret)>,
    fields: &mut BTreeMap<String, String>,
) -> Result<(), CliError> {
    let mut titles = std::collections::BTreeSet::new();
    for arg in &custom.fields {
        let (name, value) = split_field(arg)?;
        if !titles.insert(name.clone()) {
            return Err(CliError::Usage(format!("field {name:?} given twice")));
        }
        fields.insert(format!("custom:text:{name}"), value);
    }
    for (name, value) in hidden {
        if !titles.insert(name.clone()) {
            return Err(CliError::Usage(format!("field {name:?} given twice")));
        }
        fields.insert(format!("custom:hidden:{name}"), value.expose().to_string());
    }
    Ok(())
}

fn add_item(ctx: &mut Ctx, add: AddCommand) -> Result<(), CliError> {
    let mut fields = BTreeMap::new();
    let mut hidden_first = Vec::new();
    let (item_type, name, common, urls) = match add {
        AddCommand::Login {
            name,
            common,
            username,
            urls,
            generate,
            no_symbols,
        } => {
            let password = match generate {
                Some(len) => generated(len, no_symbols)?,
                None => input::secret_line("Password: ", true)?,
            };
            if let Some(u) = username {
                fields.insert("username".to_string(), u);
            }
            fields.insert("password".to_string(), password.expose().to_string());
            ("login", name, common, urls)
        }
        AddCommand::Note { name, common } => {
            // The text takes the rest of stdin: hidden fields come first.
            hidden_first = read_hidden(&common.custom.hidden_fields)?;
            let text = input::all_stdin("Note text (end with Ctrl-D):")?;
            fields.insert("notes".to_string(), text.expose().to_string());
            ("note", name, common, Vec::new())
        }
        AddCommand::Card {
            name,
            common,
            holder,
            expiry,
        } => {
            let number = input::secret_line("Card number: ", false)?;
            let cvv = input::secret_line("CVV: ", false)?;
            fields.insert("number".to_string(), number.expose().to_string());
            if !cvv.expose().is_empty() {
                fields.insert("cvv".to_string(), cvv.expose().to_string());
            }
            if let Some(h) = holder {
                fields.insert("holder".to_string(), h);
            }
            if let Some(e) = expiry {
                fields.insert("expiry".to_string(), e);
            }
            ("card", name, common, Vec::new())
        }
        AddCommand::Totp { name, common } => {
            let secret = input::secret_line("TOTP secret or otpauth:// URI: ", false)?;
            fields.insert("totp".to_string(), secret.expose().to_string());
            ("totp", name, common, Vec::new())
        }
    };
    let hidden = if common.custom.hidden_fields.is_empty() || !hidden_first.is_empty() {
        hidden_first
    } else {
        read_hidden(&common.custom.hidden_fields)?
    };
    new_custom_fields(&common.custom, hidden, &mut fields)?;
    let view = ctx.call::<m::ItemAdd>(&m::ItemAddParams {
        folder: common.folder,
        item_type: item_type.into(),
        name,
        fields,
        urls,
    })?;
    ctx.print(&view, |view| {
        println!(
            "Added {} {}/{} ({}).",
            view.item_type,
            view.folder,
            view.name,
            output::prefix(&view.id, 8)
        )
    });
    Ok(())
}

fn edit_item(ctx: &mut Ctx, args: EditArgs) -> Result<(), CliError> {
    if args.notes_stdin && !args.custom.hidden_fields.is_empty() && !input::stdin_is_tty() {
        return Err(CliError::Usage(
            "--notes-stdin takes all of stdin: set hidden fields in a separate `coffer edit`"
                .into(),
        ));
    }
    let mut fields = BTreeMap::new();
    if let Some(u) = args.username {
        fields.insert("username".to_string(), u);
    }
    if args.password_stdin {
        fields.insert(
            "password".to_string(),
            input::secret_line("New password: ", true)?
                .expose()
                .to_string(),
        );
    }
    if let Some(len) = args.generate {
        fields.insert(
            "password".to_string(),
            generated(len, args.no_symbols)?.expose().to_string(),
        );
    }
    if args.notes_stdin {
        fields.insert(
            "notes".to_string(),
            input::all_stdin("Notes (end with Ctrl-D):")?
                .expose()
                .to_string(),
        );
    }
    if let Some(h) = args.holder {
        fields.insert("holder".to_string(), h);
    }
    if let Some(e) = args.expiry {
        fields.insert("expiry".to_string(), e);
    }
    if !args.custom.fields.is_empty() || !args.custom.hidden_fields.is_empty() {
        edit_custom_fields(ctx, &args.item, &args.custom, &mut fields)?;
    }
    let urls = if args.clear_urls {
        Some(Vec::new())
    } else if args.urls.is_empty() {
        None
    } else {
        Some(args.urls)
    };
    let view = ctx.call::<m::ItemEdit>(&m::ItemEditParams {
        item: args.item,
        name: args.name,
        fields,
        urls,
    })?;
    ctx.print(&view, |view| {
        println!("Updated {}/{}.", view.folder, view.name)
    });
    Ok(())
}

/// `edit --field/--hidden-field`: a title the item has already keeps its
/// key (and kind: a URL field stays one), unless --hidden-field makes a
/// shown field hidden; an empty `--field NAME=` removes the field; a
/// hidden field's value never comes from `--field`.
fn edit_custom_fields(
    ctx: &mut Ctx,
    item: &str,
    custom: &CustomFields,
    fields: &mut BTreeMap<String, String>,
) -> Result<(), CliError> {
    let view = ctx.call::<m::ItemGet>(&m::ItemRef::live(item))?;
    let existing = |title: &str| -> Option<(String, bool)> {
        view.labels
            .iter()
            .find(|(_, label)| label.as_str() == title)
            .map(|(key, _)| (key.clone(), view.secret_fields.contains(key)))
    };
    let mut titles = std::collections::BTreeSet::new();
    for arg in &custom.fields {
        let (name, value) = split_field(arg)?;
        if !titles.insert(name.clone()) {
            return Err(CliError::Usage(format!("field {name:?} given twice")));
        }
        match existing(&name) {
            Some((key, _)) if value.is_empty() => {
                fields.insert(key, String::new());
            }
            None if value.is_empty() => {
                return Err(CliError::Usage(format!(
                    "{} has no custom field {name:?} to remove",
                    view.name
                )))
            }
            Some((_, true)) => {
                return Err(CliError::Usage(format!(
                    "{name:?} is a hidden field: its value is never taken from the command \
                     line; use --hidden-field {name:?}"
                )))
            }
            Some((key, false)) => {
                fields.insert(key, value);
            }
            None => {
                fields.insert(format!("custom:text:{name}"), value);
            }
        }
    }
    for (name, value) in read_hidden(&custom.hidden_fields)? {
        if !titles.insert(name.clone()) {
            return Err(CliError::Usage(format!("field {name:?} given twice")));
        }
        match existing(&name) {
            Some((key, true)) => {
                fields.insert(key, value.expose().to_string());
            }
            other => {
                if let Some((shown, false)) = other {
                    fields.insert(shown, String::new());
                }
                fields.insert(format!("custom:hidden:{name}"), value.expose().to_string());
            }
        }
    }
    Ok(())
}

fn totp(ctx: &mut Ctx, args: TotpArgs) -> Result<(), CliError> {
    if let Some(TotpCommand::Set { item }) = args.command {
        let secret = input::secret_line("TOTP secret or otpauth:// URI: ", false)?;
        let view = ctx.call::<m::TotpSet>(&m::TotpSetParams {
            item,
            secret: secret.expose().to_string(),
        })?;
        ctx.print(&view, |view| {
            println!("Linked a TOTP secret to {}/{}.", view.folder, view.name)
        });
        return Ok(());
    }
    let item = args
        .item
        .ok_or_else(|| CliError::Usage("name the item: coffer totp ITEM".into()))?;
    let code = ctx.call::<m::TotpGet>(&m::TotpParams {
        item: item.clone(),
        at: args.at,
    })?;
    if args.copy {
        audit::note(ctx, "totp-copy", &item, "totp");
        let secs = clear_after(args.clear)?;
        clipboard::copy(&code.code, secs)?;
        ctx.print(
            &json!({
                "copied": true,
                "item": code.item,
                "seconds_remaining": code.seconds_remaining,
                "clear_after_secs": secs,
            }),
            |_| {
                eprintln!(
                    "Copied the code for {} ({} s left); {}.",
                    code.item,
                    code.seconds_remaining,
                    cleared_in(secs)
                )
            },
        );
    } else if ctx.json {
        output::json(&json!({
            "code": code.code,
            "seconds_remaining": code.seconds_remaining,
            "period": code.period,
            "digits": code.digits,
            "algorithm": code.algorithm,
            "item": code.item,
        }));
    } else {
        println!("{}", code.code);
        if input::stdout_is_tty() {
            eprintln!("({} s left)", code.seconds_remaining);
        }
    }
    Ok(())
}
