//! `coffer`: the command-line client. Every command is a JSON-RPC call to
//! `cofferd` through `coffer-ipc`'s client; this crate only parses arguments,
//! reads secrets from stdin or a prompt, and prints.

mod clipboard;
mod connect;
mod enrol;
mod generate;
mod input;
mod output;
mod sync;
mod team;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use coffer_ipc::methods::{self as m};
use coffer_ipc::{Client, ClientError, ErrorCode, RpcError};
use serde_json::json;

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
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Rpc(RpcError),
    #[error("cofferd is not available: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Usage(String),
    #[error("no clipboard available: needs a graphical session (DISPLAY or WAYLAND_DISPLAY) with wl-copy, xclip or xsel; print the value without --copy instead")]
    NoClipboard,
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
                _ => exit::ERROR,
            },
            CliError::Unavailable(_) => exit::UNAVAILABLE,
            CliError::Usage(_) => exit::USAGE,
            CliError::NoClipboard => exit::NO_CLIPBOARD,
            CliError::Other(_) => exit::ERROR,
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
}

#[derive(Parser, Debug)]
#[command(
    name = "coffer",
    version,
    about = "Coffer: a team password manager with no server",
    propagate_version = true
)]
struct Cli {
    /// The daemon's socket (default: in the runtime dir).
    #[arg(long, global = true, env = "COFFER_SOCKET")]
    socket: Option<PathBuf>,
    /// The daemon's data dir, used when this command starts it.
    #[arg(long, global = true, env = "COFFER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Never start cofferd; fail when none answers.
    #[arg(long, global = true, env = "COFFER_NO_AUTOSTART", value_parser = clap::builder::BoolishValueParser::new())]
    no_autostart: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create this device's identity and Personal folder, and set the PIN.
    Init {
        #[arg(long)]
        name: String,
        #[arg(long)]
        email: String,
        /// Read the PIN as one line from stdin instead of prompting.
        #[arg(long)]
        pin_stdin: bool,
    },
    /// Unlock the vault with the PIN.
    Unlock {
        #[arg(long)]
        pin_stdin: bool,
    },
    /// Lock the vault now (the daemon keeps running and syncing).
    Lock,
    /// Show the daemon and vault state.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Add an item.
    #[command(subcommand)]
    Add(AddCommand),
    /// Show an item, or one field of it.
    Get {
        item: String,
        /// Print only this field's value (username, password, notes, totp, number, cvv, holder, expiry, url, name, id).
        #[arg(long)]
        field: Option<String>,
        #[arg(long)]
        json: bool,
        /// Show secret fields instead of masking them.
        #[arg(long)]
        reveal: bool,
        /// Copy the value (the password, or --field) to the clipboard, cleared after 30 s.
        #[arg(long)]
        copy: bool,
        /// Look in the trash.
        #[arg(long)]
        trash: bool,
    },
    /// List items.
    Ls {
        #[arg(long)]
        folder: Option<String>,
        /// List the trash instead.
        #[arg(long)]
        trash: bool,
        #[arg(long)]
        json: bool,
    },
    /// Find items by name, username, URL or folder.
    Search {
        query: String,
        #[arg(long)]
        json: bool,
    },
    /// Change an item.
    Edit(EditArgs),
    /// Move an item to the trash.
    Rm { item: String },
    /// Take an item out of the trash.
    Restore { item: String },
    /// Show an item's earlier values, with device and time.
    History {
        item: String,
        #[arg(long)]
        json: bool,
        #[arg(long)]
        reveal: bool,
    },
    /// Print an item's TOTP code (`coffer totp set ITEM` links a secret).
    Totp(TotpArgs),
    /// Manage folders.
    #[command(subcommand)]
    Folder(FolderCommand),
    /// Generate a password (or, with --words, a passphrase).
    Generate {
        #[arg(long, default_value_t = 20)]
        length: usize,
        /// A diceware passphrase of this many words instead.
        #[arg(long)]
        words: Option<usize>,
        #[arg(long)]
        no_symbols: bool,
    },
    /// Import another password manager's export (all or nothing; no duplicates on re-import).
    Import {
        /// bitwarden-json, bitwarden-csv, 1password-1pux, 1password-csv, keepass-xml,
        /// keepassxc-csv, kdbx, lastpass-csv, chrome-csv, firefox-csv, otpauth,
        /// otpauth-migration, coffer-json, or auto.
        #[arg(long, default_value = "auto")]
        format: String,
        file: PathBuf,
        /// Put everything into this existing folder.
        #[arg(long)]
        folder: Option<String>,
        /// Report what would be imported; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Write items in plaintext, as JSON (re-importable with `coffer import`)
    /// or CSV, to standard output or --output.
    Export {
        #[arg(long, default_value = "json", value_parser = ["json", "csv"])]
        format: String,
        /// Only this folder.
        #[arg(long)]
        folder: Option<String>,
        /// Write to this new file (mode 0600) instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Also export the items in the trash.
        #[arg(long)]
        include_trash: bool,
        /// Do not ask for confirmation on a terminal.
        #[arg(long)]
        yes: bool,
    },
    /// Write an encrypted backup of every item you can read, trash included
    /// (age format with a passphrase: `age -d FILE` opens it too).
    Backup {
        file: PathBuf,
        /// Read the passphrase from one stdin line instead of a prompt.
        #[arg(long)]
        passphrase_stdin: bool,
        #[arg(long)]
        json: bool,
    },
    /// Add the items of a backup to this vault (all or nothing; items already
    /// present are not added again).
    RestoreBackup {
        file: PathBuf,
        /// Read the passphrase from one stdin line instead of a prompt.
        #[arg(long)]
        passphrase_stdin: bool,
        /// Report what would be restored; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Print daemon events (item changes, lock state) as they happen.
    Events {
        #[arg(long)]
        json: bool,
    },
    /// This team's devices; revoke one; this device's id and pairing key.
    #[command(subcommand)]
    Device(sync::DeviceCommand),
    /// Create or show the team.
    #[command(subcommand)]
    Team(team::TeamCommand),
    /// The team's users (by email).
    #[command(subcommand)]
    User(team::UserCommand),
    /// User groups: folders shared with a group reach all its users.
    #[command(subcommand)]
    Group(team::GroupCommand),
    /// Devices this one syncs with, and their connections.
    Peers {
        #[arg(long)]
        json: bool,
    },
    /// Sync state per folder, or sync now.
    #[command(subcommand)]
    Sync(sync::SyncCommand),
    /// Invite a person into the team (team admins): prints a one-time code;
    /// `invite pending|confirm|reject` decide on the joins.
    Invite(enrol::InviteArgs),
    /// Join a team with an invite code from `coffer invite`.
    Join(enrol::JoinArgs),
    #[command(name = "__clear-clipboard", hide = true)]
    ClearClipboard {
        #[arg(long)]
        after: u64,
        #[arg(long)]
        sha256: String,
    },
}

#[derive(Args, Debug)]
struct Common {
    /// Folder name or id prefix (default: Personal).
    #[arg(long)]
    folder: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum AddCommand {
    /// A login; the password comes from stdin (or a prompt) unless --generate.
    Login {
        name: String,
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        username: Option<String>,
        #[arg(long = "url")]
        urls: Vec<String>,
        /// Generate the password (default length 20).
        #[arg(long, num_args = 0..=1, default_missing_value = "20", value_name = "LEN")]
        generate: Option<usize>,
        /// With --generate: letters and digits only.
        #[arg(long)]
        no_symbols: bool,
    },
    /// A secure note; the text comes from stdin.
    Note {
        name: String,
        #[command(flatten)]
        common: Common,
    },
    /// A payment card; the number, then the CVV, come from stdin, one a line.
    Card {
        name: String,
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        holder: Option<String>,
        /// MM/YY
        #[arg(long)]
        expiry: Option<String>,
    },
    /// A standalone 2FA token; the base32 secret or otpauth:// URI comes from stdin.
    Totp {
        name: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Args, Debug)]
struct EditArgs {
    item: String,
    /// New name.
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    username: Option<String>,
    /// Replace the URLs (repeatable).
    #[arg(long = "url")]
    urls: Vec<String>,
    /// Remove every URL.
    #[arg(long, conflicts_with = "urls")]
    clear_urls: bool,
    /// Read a new password (one line) from stdin.
    #[arg(long)]
    password_stdin: bool,
    /// Generate a new password (default length 20).
    #[arg(long, num_args = 0..=1, default_missing_value = "20", value_name = "LEN", conflicts_with = "password_stdin")]
    generate: Option<usize>,
    #[arg(long)]
    no_symbols: bool,
    /// Read new notes (all of stdin).
    #[arg(long, conflicts_with = "password_stdin")]
    notes_stdin: bool,
    #[arg(long)]
    holder: Option<String>,
    #[arg(long)]
    expiry: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct TotpArgs {
    #[command(subcommand)]
    command: Option<TotpCommand>,
    /// The item whose code to print.
    #[arg(required = true)]
    item: Option<String>,
    #[arg(long)]
    json: bool,
    /// Compute the code at this Unix time instead of now.
    #[arg(long, value_name = "UNIX_SECONDS")]
    at: Option<u64>,
    /// Copy the code to the clipboard, cleared after 30 s.
    #[arg(long)]
    copy: bool,
}

#[derive(Subcommand, Debug)]
enum TotpCommand {
    /// Link a TOTP secret (base32 or otpauth:// URI, from stdin) to an existing item.
    Set {
        item: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum FolderCommand {
    /// Create a folder.
    Create {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// List folders.
    Ls {
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    Sharing(team::ShareCommand),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { 0 });
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coffer: error: {e}");
            if let Some(hint) = e.hint() {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

struct Ctx {
    target: Target,
    client: Option<Client>,
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
}

/// `path` made absolute against the current folder (the daemon has its own).
fn absolute(path: &std::path::Path) -> Result<PathBuf, CliError> {
    std::path::absolute(path)
        .map_err(|e| CliError::Usage(format!("bad path {}: {e}", path.display())))
}

fn run(cli: Cli) -> Result<(), CliError> {
    let mut ctx = Ctx {
        target: Target {
            socket: cli
                .socket
                .unwrap_or_else(coffer_ipc::paths::default_socket_path),
            data_dir: cli.data_dir,
            autostart: !cli.no_autostart,
        },
        client: None,
    };
    match cli.command {
        Command::Init {
            name,
            email,
            pin_stdin,
        } => {
            let pin = input::pin(pin_stdin, true)?;
            let r = ctx.call::<m::Init>(&m::InitParams {
                name,
                email,
                pin: pin.expose().to_string(),
            })?;
            println!(
                "Initialised device {} with a Personal folder. The vault is unlocked.",
                output::short(&r.device_id)
            );
        }
        Command::Unlock { pin_stdin } => {
            let pin = input::pin(pin_stdin, false)?;
            ctx.call::<m::Unlock>(&m::UnlockParams {
                pin: pin.expose().to_string(),
            })?;
            println!("Unlocked.");
        }
        Command::Lock => {
            ctx.call::<m::Lock>(&m::Empty {})?;
            println!("Locked.");
        }
        Command::Status { json } => {
            let s = ctx.call::<m::Status>(&m::Empty {})?;
            if json {
                output::json(&s);
            } else {
                output::status(&s);
            }
        }
        Command::Add(add) => add_item(&mut ctx, add)?,
        Command::Get {
            item,
            field,
            json,
            reveal,
            copy,
            trash,
        } => {
            let view = ctx.call::<m::ItemGet>(&m::ItemRef { item, trash })?;
            let field = field.or_else(|| copy.then(|| default_copy_field(&view).to_string()));
            match field {
                Some(field) => {
                    let value = output::field_value(&view, &field)?;
                    if copy {
                        clipboard::copy(&value)?;
                        eprintln!(
                            "Copied {field} of {} to the clipboard; it is cleared in {} s.",
                            view.name,
                            clipboard::CLEAR_AFTER_SECS
                        );
                    } else {
                        println!("{}", *value);
                    }
                }
                None if json => output::json(&view),
                None => output::item(&view, reveal),
            }
        }
        Command::Ls {
            folder,
            trash,
            json,
        } => {
            let items = ctx.call::<m::ItemList>(&m::ItemListParams { folder, trash })?;
            if json {
                output::json(&items);
            } else {
                output::summaries(&items);
            }
        }
        Command::Search { query, json } => {
            let items = ctx.call::<m::ItemSearch>(&m::SearchParams { query })?;
            if json {
                output::json(&items);
            } else {
                output::summaries(&items);
            }
        }
        Command::Edit(args) => edit_item(&mut ctx, args)?,
        Command::Rm { item } => {
            let s = ctx.call::<m::ItemTrash>(&m::ItemRef { item, trash: false })?;
            println!(
                "Moved {}/{} to the trash (`coffer restore {}` brings it back).",
                s.folder,
                s.name,
                output::prefix(&s.id, 8)
            );
        }
        Command::Restore { item } => {
            let s = ctx.call::<m::ItemRestore>(&m::ItemRef { item, trash: true })?;
            println!("Restored {}/{}.", s.folder, s.name);
        }
        Command::History { item, json, reveal } => {
            let entries = ctx.call::<m::ItemHistory>(&m::ItemRef { item, trash: false })?;
            if json {
                output::json(&entries);
            } else {
                output::history(&entries, reveal);
            }
        }
        Command::Totp(args) => totp(&mut ctx, args)?,
        Command::Folder(FolderCommand::Create { name, json }) => {
            let f = ctx.call::<m::FolderCreate>(&m::FolderCreateParams { name })?;
            if json {
                output::json(&f);
            } else {
                println!("Created folder {} ({}).", f.name, output::short(&f.id));
            }
        }
        Command::Folder(FolderCommand::Sharing(cmd)) => team::share(&mut ctx, cmd)?,
        Command::Team(cmd) => team::team(&mut ctx, cmd)?,
        Command::User(cmd) => team::user(&mut ctx, cmd)?,
        Command::Group(cmd) => team::group(&mut ctx, cmd)?,
        Command::Folder(FolderCommand::Ls { json }) => {
            let folders = ctx.call::<m::FolderList>(&m::Empty {})?;
            if json {
                output::json(&folders);
            } else {
                output::folders(&folders);
            }
        }
        Command::Generate {
            length,
            words,
            no_symbols,
        } => {
            let spec = generate::PasswordSpec {
                length,
                symbols: !no_symbols,
            };
            let (value, bits) = match words {
                Some(words) => (
                    generate::passphrase(words),
                    generate::passphrase_entropy_bits(words),
                ),
                None => (
                    generate::password(&spec),
                    generate::password_entropy_bits(&spec),
                ),
            };
            println!("{}", *value.map_err(CliError::Usage)?);
            if input::stdout_is_tty() {
                eprintln!("({bits:.0} bits of entropy)");
            }
        }
        Command::Import {
            format,
            file,
            folder,
            dry_run,
            json,
        } => {
            let path = std::fs::canonicalize(&file)
                .map_err(|e| CliError::Usage(format!("cannot open {}: {e}", file.display())))?;
            let is_kdbx = format == "kdbx"
                || (format == "auto"
                    && path
                        .extension()
                        .is_some_and(|e| e.eq_ignore_ascii_case("kdbx")));
            let password = if is_kdbx {
                Some(input::secret_line("KeePass database password: ", false)?)
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
            if json {
                output::json(&r);
            } else {
                output::import(&r);
            }
        }
        Command::Export {
            format,
            folder,
            output,
            include_trash,
            yes,
        } => {
            let what = folder.as_deref().unwrap_or("every folder");
            eprintln!(
                "Warning: the export holds your passwords and TOTP secrets in plaintext ({what}). \
                 Store it encrypted, or use `coffer backup` instead."
            );
            if input::stdin_is_tty() && !yes && !input::confirm("Type \"yes\" to export: ")? {
                return Err(CliError::Usage("export cancelled".into()));
            }
            let r = ctx.call::<m::Export>(&m::ExportParams {
                format,
                folder,
                include_trash,
            })?;
            let text = zeroize::Zeroizing::new(r.text);
            match output {
                Some(path) => {
                    output::write_new_private_file(&path, text.as_bytes())?;
                    eprintln!("Exported {} items to {}.", r.items, path.display());
                }
                None => {
                    use std::io::Write;
                    std::io::stdout()
                        .write_all(text.as_bytes())
                        .map_err(|e| CliError::Other(format!("cannot write the export: {e}")))?;
                }
            }
        }
        Command::Backup {
            file,
            passphrase_stdin,
            json,
        } => {
            let path = absolute(&file)?;
            let passphrase = input::passphrase(passphrase_stdin, true)?;
            let r = ctx.call::<m::Backup>(&m::BackupParams {
                path: path.display().to_string(),
                passphrase: passphrase.expose().to_string(),
            })?;
            if json {
                output::json(&r);
            } else {
                println!(
                    "Backed up {} items from {} folders to {} ({} bytes, age-encrypted).",
                    r.items, r.folders, r.path, r.bytes
                );
            }
        }
        Command::RestoreBackup {
            file,
            passphrase_stdin,
            dry_run,
            json,
        } => {
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
            if json {
                output::json(&r);
            } else {
                output::import(&r);
            }
        }
        Command::Events { json } => {
            let client = ctx.client()?;
            client.subscribe()?;
            loop {
                let event = client.next_event()?;
                if json {
                    // One compact object a line, for scripts.
                    println!(
                        "{}",
                        serde_json::to_string(&event).expect("plain data serialises")
                    );
                } else {
                    println!("{event:?}");
                }
            }
        }
        Command::ClearClipboard { after, sha256 } => clipboard::clear_later(after, &sha256),
        Command::Device(cmd) => sync::device(&mut ctx, cmd)?,
        Command::Peers { json } => sync::peers(&mut ctx, json)?,
        Command::Sync(cmd) => sync::sync(&mut ctx, cmd)?,
        Command::Invite(args) => enrol::invite(&mut ctx, args)?,
        Command::Join(args) => enrol::join(&mut ctx, args, false)?,
    }
    Ok(())
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

fn add_item(ctx: &mut Ctx, add: AddCommand) -> Result<(), CliError> {
    let mut fields = BTreeMap::new();
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
    let view = ctx.call::<m::ItemAdd>(&m::ItemAddParams {
        folder: common.folder,
        item_type: item_type.into(),
        name,
        fields,
        urls,
    })?;
    if common.json {
        output::json(&view);
    } else {
        println!(
            "Added {} {}/{} ({}).",
            view.item_type,
            view.folder,
            view.name,
            output::prefix(&view.id, 8)
        );
    }
    Ok(())
}

fn edit_item(ctx: &mut Ctx, args: EditArgs) -> Result<(), CliError> {
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
    if args.json {
        output::json(&view);
    } else {
        println!("Updated {}/{}.", view.folder, view.name);
    }
    Ok(())
}

fn totp(ctx: &mut Ctx, args: TotpArgs) -> Result<(), CliError> {
    if let Some(TotpCommand::Set { item, json }) = args.command {
        let secret = input::secret_line("TOTP secret or otpauth:// URI: ", false)?;
        let view = ctx.call::<m::TotpSet>(&m::TotpSetParams {
            item,
            secret: secret.expose().to_string(),
        })?;
        if json {
            output::json(&view);
        } else {
            println!("Linked a TOTP secret to {}/{}.", view.folder, view.name);
        }
        return Ok(());
    }
    let item = args
        .item
        .ok_or_else(|| CliError::Usage("name the item: coffer totp ITEM".into()))?;
    let code = ctx.call::<m::TotpGet>(&m::TotpParams { item, at: args.at })?;
    if args.copy {
        clipboard::copy(&code.code)?;
        eprintln!(
            "Copied the code for {} ({} s left); it is cleared in {} s.",
            code.item,
            code.seconds_remaining,
            clipboard::CLEAR_AFTER_SECS
        );
    } else if args.json {
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
