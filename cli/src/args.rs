//! The command line: every command, argument and flag of `coffer`, with its
//! help text (clap derive). `main.rs` runs them; `tests.rs` walks this tree
//! and fails on a missing description; `docs.rs` turns it into completions
//! and man pages.

use std::cell::Cell;
use std::path::PathBuf;

use clap::{ArgMatches, Args, FromArgMatches, Parser, Subcommand};

use crate::{audit, enrol, service, sync, team, ui};

/// A subcommand's arguments, or a command group's subcommands, built only
/// when that subcommand runs (`Command::defer`): clap derive otherwise
/// builds every command's arguments on every start, which was most of
/// `coffer get`'s own CPU time (issue 11). Completions, man pages and the
/// tree's tests build it all at once ([`build_eagerly`]); `tests.rs` checks
/// that `--help` reads the same either way.
#[derive(Debug)]
pub struct Lazy<T>(pub T);

thread_local! {
    static EAGER: Cell<bool> = const { Cell::new(false) };
}

/// Makes every later `Cli::command()` on this thread build the whole tree
/// at once, as clap's generators need (the help subcommand's tree is copied
/// from the subcommands as they are when the root is built).
pub fn build_eagerly() {
    EAGER.with(|e| e.set(true));
}

fn eager() -> bool {
    EAGER.with(Cell::get)
}

/// Runs `add` on a subcommand as it is built, keeping the description its
/// variant's doc comment gave it: derive sets that after the arguments, so
/// a deferred `add` would otherwise replace it with its type's doc comment.
fn keeping_about(
    cmd: clap::Command,
    add: impl FnOnce(clap::Command) -> clap::Command,
) -> clap::Command {
    let about = cmd.get_about().cloned();
    let long_about = cmd.get_long_about().cloned();
    let cmd = add(cmd);
    let Some(about) = about else {
        return cmd;
    };
    let cmd = cmd.about(about);
    match long_about {
        Some(long_about) => cmd.long_about(long_about),
        None => cmd.long_about(clap::builder::Resettable::Reset),
    }
}

fn deferred_args<T: Args>(cmd: clap::Command) -> clap::Command {
    keeping_about(cmd, T::augment_args)
}

fn deferred_args_for_update<T: Args>(cmd: clap::Command) -> clap::Command {
    keeping_about(cmd, T::augment_args_for_update)
}

fn deferred_subcommands<T: Subcommand>(cmd: clap::Command) -> clap::Command {
    keeping_about(cmd, T::augment_subcommands)
}

fn deferred_subcommands_for_update<T: Subcommand>(cmd: clap::Command) -> clap::Command {
    keeping_about(cmd, T::augment_subcommands_for_update)
}

impl<T: FromArgMatches> FromArgMatches for Lazy<T> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches(matches).map(Lazy)
    }

    fn from_arg_matches_mut(matches: &mut ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches_mut(matches).map(Lazy)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(matches)
    }

    fn update_from_arg_matches_mut(&mut self, matches: &mut ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches_mut(matches)
    }
}

impl<T: Args> Args for Lazy<T> {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        if eager() {
            T::augment_args(cmd)
        } else {
            cmd.defer(deferred_args::<T>)
        }
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        if eager() {
            T::augment_args_for_update(cmd)
        } else {
            cmd.defer(deferred_args_for_update::<T>)
        }
    }

    fn group_id() -> Option<clap::Id> {
        T::group_id()
    }
}

impl<T: Subcommand> Subcommand for Lazy<T> {
    fn augment_subcommands(cmd: clap::Command) -> clap::Command {
        if eager() {
            T::augment_subcommands(cmd)
        } else {
            cmd.defer(deferred_subcommands::<T>)
        }
    }

    fn augment_subcommands_for_update(cmd: clap::Command) -> clap::Command {
        if eager() {
            T::augment_subcommands_for_update(cmd)
        } else {
            cmd.defer(deferred_subcommands_for_update::<T>)
        }
    }

    fn has_subcommand(name: &str) -> bool {
        T::has_subcommand(name)
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "coffer",
    version,
    about = "Coffer: a team password manager with no server",
    long_about = "Coffer: a team password manager with no server.\n\n\
        Every command talks to the local daemon, cofferd, and starts it when none \
        answers. Secrets are never taken from arguments: a hidden prompt asks for \
        them on a terminal, else they are read from stdin.",
    propagate_version = true
)]
pub struct Cli {
    /// The daemon's socket (default: in the runtime dir).
    #[arg(long, global = true, env = "COFFER_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// The daemon's data dir, used when this command starts it.
    #[arg(long, global = true, env = "COFFER_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Never start cofferd; fail when none answers.
    #[arg(long, global = true, env = "COFFER_NO_AUTOSTART", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_autostart: bool,
    /// Print the result as JSON on stdout, and errors as JSON on stderr.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create this device's identity and Personal folder, and set the PIN.
    Init(Lazy<InitArgs>),
    /// Unlock the vault with the PIN.
    Unlock(Lazy<UnlockArgs>),
    /// Lock the vault now (the daemon keeps running and syncing).
    Lock,
    /// Show the daemon and vault state.
    Status,
    /// Add an item.
    #[command(subcommand)]
    Add(Lazy<AddCommand>),
    /// Show an item, or one field of it.
    Get(Lazy<GetArgs>),
    /// Print one field of an item named by a secret reference, coffer://[FOLDER/]ITEM/FIELD.
    Read(Lazy<ReadArgs>),
    /// Run a command with coffer:// references in its environment resolved, for it only.
    #[command(
        long_about = "Run a command with coffer:// references in its environment resolved, for it only.\n\n\
            Every environment variable (inherited, or from --env-file) whose whole value is a \
            reference like coffer://Personal/db/password is replaced by that field's value in \
            the child's environment only: never in this process's environment nor on any \
            command line. The child's stdout and stderr pass through this process, with every \
            resolved value replaced by <concealed by coffer>. Exits with the child's exit code \
            (128+N when a signal N killed it)."
    )]
    Run(Lazy<RunArgs>),
    /// Fill a template's {{ coffer://... }} references in, writing a new 0600 file (or stdout).
    Inject(Lazy<InjectArgs>),
    /// Show an item's earlier values, with device and time.
    History(Lazy<HistoryArgs>),
    /// List every item where concurrent edits of a field were kept side
    /// by side (numbered: 1 is the value shown), or that an edit kept out
    /// of the trash; `conflicts pick` settles one.
    Conflicts(Lazy<ConflictsArgs>),
    /// List items.
    Ls(Lazy<LsArgs>),
    /// Find items by name, username, URL or folder.
    Search(Lazy<SearchArgs>),
    /// Change an item.
    Edit(Lazy<EditArgs>),
    /// Move an item to the trash.
    Rm(Lazy<RmArgs>),
    /// Move an item to another folder (needs Item or Folder Manager in both).
    #[command(
        long_about = "Move an item to another folder (needs the Item Manager or Folder Manager role in both).\n\n\
            The item is added to FOLDER as it is now (same id, name, fields, URLs and creation \
            time) and deleted from its old folder, for every member of each: members of the old \
            folder who are not in the new one no longer see it. Its earlier values stay in the old \
            folder's history and do not move."
    )]
    Mv(Lazy<MvArgs>),
    /// Take an item out of the trash.
    Restore(Lazy<RestoreArgs>),
    /// Print an item's TOTP code (`coffer totp set ITEM` links a secret).
    Totp(Lazy<TotpArgs>),
    /// Manage folders.
    #[command(subcommand)]
    Folder(Lazy<FolderCommand>),
    /// List or empty the trash.
    #[command(subcommand)]
    Trash(Lazy<TrashCommand>),
    /// Change this device's PIN.
    #[command(subcommand)]
    Pin(Lazy<PinCommand>),
    /// Generate a password (or, with --words, a passphrase).
    Generate(Lazy<GenerateArgs>),
    /// Import another password manager's export (all or nothing; no duplicates on re-import).
    Import(Lazy<ImportArgs>),
    /// Write items in plaintext, as JSON (re-importable with `coffer import`)
    /// or CSV, to standard output or --output.
    Export(Lazy<ExportArgs>),
    /// Write an encrypted backup of every item you can read, trash included
    /// (age format with a passphrase: `age -d FILE` opens it too).
    Backup(Lazy<BackupArgs>),
    /// Add the items of a backup to this vault (all or nothing; items already
    /// present are not added again).
    RestoreBackup(Lazy<RestoreBackupArgs>),
    /// Print daemon events (item changes, lock state, peers, sync) as they happen.
    Events,
    /// This team's devices; revoke one; this device's id and pairing key.
    #[command(subcommand)]
    Device(Lazy<sync::DeviceCommand>),
    /// Create or show the team.
    #[command(subcommand)]
    Team(Lazy<team::TeamCommand>),
    /// The team's users (by email).
    #[command(subcommand)]
    User(Lazy<team::UserCommand>),
    /// The team's keyless relays: add, list, remove; `status` on a relay.
    #[command(subcommand)]
    Relay(Lazy<crate::relay::RelayCommand>),
    /// User groups: folders shared with a group reach all its users.
    #[command(subcommand)]
    Group(Lazy<team::GroupCommand>),
    /// The audit trail: who used which item, when, from which device
    /// (`audit verify|exposure|export` below).
    Audit(Lazy<audit::AuditArgs>),
    /// Devices this one syncs with, and their connections.
    Peers,
    /// Why this laptop and another do not see each other: a checklist
    /// (daemon, vault, team, listen addresses, mDNS, each device's
    /// connection and last dial error, clocks) with the next step for each
    /// problem. Exits 22 when it finds one. Never starts cofferd.
    Doctor,
    /// Sync state per folder, or sync now.
    #[command(subcommand)]
    Sync(Lazy<sync::SyncCommand>),
    /// Invite a person into the team (team admins): prints a one-time code;
    /// `invite pending|confirm|reject` decide on the joins.
    Invite(Lazy<enrol::InviteArgs>),
    /// Join a team with an invite code from `coffer invite`.
    Join(Lazy<enrol::JoinArgs>),
    /// Erase this device's vault when its PIN is lost (no PIN needed): its
    /// keys and everything stored here; then `coffer init` or `coffer join`.
    Reset(Lazy<ResetArgs>),
    /// Open the vault and the admin console in a browser: prints the local
    /// web app's address with a one-time sign-in token.
    Ui(Lazy<ui::UiArgs>),
    /// Let Coffer's browser extension fill logins: install or remove the native messaging host.
    #[command(subcommand)]
    Browser(Lazy<crate::browser::BrowserCommand>),
    /// Run cofferd as a login service: the systemd user unit (Linux) or the launchd agent (macOS).
    #[command(subcommand)]
    Service(Lazy<service::ServiceCommand>),
    /// Print the shell completion script for bash, zsh, fish, elvish or powershell.
    #[command(
        long_about = "Print the shell completion script for bash, zsh, fish, elvish or powershell.\n\n\
        bash: coffer completion bash > ~/.local/share/bash-completion/completions/coffer\n\
        zsh:  coffer completion zsh > ~/.zfunc/_coffer   (with fpath+=~/.zfunc)\n\
        fish: coffer completion fish > ~/.config/fish/completions/coffer.fish"
    )]
    Completion(Lazy<CompletionArgs>),
    /// Writes the man pages (coffer.1 and one per subcommand) into DIR (packaging).
    #[command(name = "__man", hide = true)]
    Man(Lazy<ManArgs>),
    /// Clears the clipboard later if it still holds what `--copy` put there;
    /// reads a salted hash of the value from stdin (never from arguments).
    #[command(name = "__clear-clipboard", hide = true)]
    ClearClipboard(Lazy<ClearClipboardArgs>),
    /// Serves a value read from stdin on the X11 clipboard with the
    /// password-manager hint, until replaced or for --after seconds.
    #[command(name = "__clipboard-x11", hide = true)]
    ClipboardX11(Lazy<ClipboardX11Args>),
}

// Each command's arguments, one struct each so that `Lazy` can build them
// when the command runs. The variant's doc comment describes the command.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// Your name, as the team sees it.
    #[arg(long)]
    pub name: String,
    /// Your email address (your user in a team).
    #[arg(long)]
    pub email: String,
    /// Read the PIN as one line from stdin instead of prompting.
    #[arg(long)]
    pub pin_stdin: bool,
}

#[derive(Args, Debug)]
pub struct UnlockArgs {
    /// Read the PIN as one line from stdin instead of prompting.
    #[arg(long)]
    pub pin_stdin: bool,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// The item: a name, FOLDER/NAME, or an id prefix.
    pub item: String,
    /// Print only this field's value (username, password, notes, totp, number, cvv, holder, expiry, url, name, id).
    #[arg(long)]
    pub field: Option<String>,
    /// Show secret fields instead of masking them.
    #[arg(long)]
    pub reveal: bool,
    /// Copy the value (the password, or --field) to the clipboard, cleared after a delay.
    #[arg(long)]
    pub copy: bool,
    #[command(flatten)]
    pub clear: ClearAfter,
    /// Look in the trash.
    #[arg(long)]
    pub trash: bool,
}

#[derive(Args, Debug)]
pub struct ReadArgs {
    /// The reference, e.g. coffer://Personal/github/password (FIELD totp-code prints the current code).
    pub reference: String,
    /// Do not print a newline after the value.
    #[arg(long, short = 'n')]
    pub no_newline: bool,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// The item: a name, FOLDER/NAME, or an id prefix.
    pub item: String,
    /// Show secret fields instead of masking them.
    #[arg(long)]
    pub reveal: bool,
}

#[derive(Args, Debug)]
pub struct ConflictsArgs {
    /// Show the values instead of masking them.
    #[arg(long)]
    pub reveal: bool,
    #[command(subcommand)]
    pub action: Option<ConflictsCommand>,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Only this folder (name or id prefix).
    #[arg(long)]
    pub folder: Option<String>,
    /// List the trash instead.
    #[arg(long)]
    pub trash: bool,
}

#[derive(Args, Debug)]
pub struct SearchArgs {
    /// Text to look for (case-insensitive; never matched against secrets).
    pub query: String,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// The item: a name, FOLDER/NAME, or an id prefix.
    pub item: String,
}

#[derive(Args, Debug)]
pub struct MvArgs {
    /// The item: a name, FOLDER/NAME, or an id prefix.
    pub item: String,
    /// The folder to move it to (name or id prefix).
    pub folder: String,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The trashed item: a name, FOLDER/NAME, or an id prefix.
    pub item: String,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Length of the password in characters.
    #[arg(long, default_value_t = 20)]
    pub length: usize,
    /// A diceware passphrase of this many words instead.
    #[arg(long)]
    pub words: Option<usize>,
    /// Letters and digits only.
    #[arg(long)]
    pub no_symbols: bool,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// bitwarden-json, bitwarden-csv, 1password-1pux, 1password-csv, keepass-xml,
    /// keepassxc-csv, kdbx, lastpass-csv, chrome-csv, firefox-csv, otpauth,
    /// otpauth-migration, coffer-json, or auto.
    #[arg(long, default_value = "auto")]
    pub format: String,
    /// The export file.
    pub file: PathBuf,
    /// Put everything into this existing folder.
    #[arg(long)]
    pub folder: Option<String>,
    /// Report what would be imported; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// json or csv.
    #[arg(long, default_value = "json", value_parser = ["json", "csv"])]
    pub format: String,
    /// Only this folder.
    #[arg(long)]
    pub folder: Option<String>,
    /// Write to this new file (mode 0600) instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Also export the items in the trash.
    #[arg(long)]
    pub include_trash: bool,
    /// Do not ask for confirmation on a terminal.
    #[arg(long)]
    pub yes: bool,
    /// Read the PIN (asked again before an export) from one stdin line.
    #[arg(long)]
    pub pin_stdin: bool,
}

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// The new backup file.
    pub file: PathBuf,
    /// Read the passphrase from one stdin line instead of a prompt.
    #[arg(long)]
    pub passphrase_stdin: bool,
    /// Read the PIN (asked again before a backup) from one stdin line,
    /// before the passphrase's.
    #[arg(long)]
    pub pin_stdin: bool,
}

#[derive(Args, Debug)]
pub struct RestoreBackupArgs {
    /// The backup file (from `coffer backup`).
    pub file: PathBuf,
    /// Read the passphrase from one stdin line instead of a prompt.
    #[arg(long)]
    pub passphrase_stdin: bool,
    /// Report what would be restored; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct ResetArgs {
    /// Do not ask to type "reset" first.
    #[arg(long)]
    pub yes: bool,
}

#[derive(Args, Debug)]
pub struct CompletionArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// The folder to write into (created if missing).
    pub dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct ClearClipboardArgs {
    /// Seconds to wait.
    #[arg(long)]
    pub after: u64,
}

#[derive(Args, Debug)]
pub struct ClipboardX11Args {
    /// Seconds to hold it (0: until another program takes the clipboard).
    #[arg(long)]
    pub after: u64,
}

/// The clipboard's clear delay (`--copy`).
#[derive(Args, Debug, Clone, Copy)]
pub struct ClearAfter {
    /// With --copy: clear the clipboard after this many seconds (0: never; default 30,
    /// or clipboard_clear_secs in config.toml).
    #[arg(long, value_name = "SECS", env = "COFFER_CLIPBOARD_CLEAR_SECS")]
    pub clear_after: Option<u64>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Read KEY=VALUE lines from this file into the child's environment (repeatable;
    /// `#` comments, `export ` prefixes and quotes allowed). Values may be references.
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Do not mask resolved values in the child's output.
    #[arg(long)]
    pub no_masking: bool,
    /// The command and its arguments (after `--`).
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    pub command: Vec<std::ffi::OsString>,
}

#[derive(Args, Debug)]
pub struct InjectArgs {
    /// The template (default: stdin).
    #[arg(long, short = 'i', value_name = "TEMPLATE")]
    pub input: Option<PathBuf>,
    /// The file to create with mode 0600 (default: stdout). An existing file is an error.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Replace FILE if it exists (atomically; the new file is 0600 too).
    #[arg(long, requires = "output")]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct Common {
    /// Folder name or id prefix (default: Personal).
    #[arg(long)]
    pub folder: Option<String>,
    #[command(flatten)]
    pub custom: CustomFields,
}

/// Custom fields of `add` and `edit`.
#[derive(Args, Debug, Default)]
pub struct CustomFields {
    /// A custom text field, NAME=VALUE (repeatable; shown in clear). On edit an empty
    /// VALUE removes the field. Never put a secret here: use --hidden-field.
    #[arg(long = "field", value_name = "NAME=VALUE")]
    pub fields: Vec<String>,
    /// A hidden custom field NAME (repeatable; masked unless --reveal): its value is
    /// asked for on a terminal, else read from stdin, one line per field in the order
    /// given, after the item's own secrets (for a note: before its text).
    #[arg(long = "hidden-field", value_name = "NAME")]
    pub hidden_fields: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum AddCommand {
    /// A login; the password comes from stdin (or a prompt) unless --generate.
    Login {
        /// The item's name.
        name: String,
        #[command(flatten)]
        common: Common,
        /// The login's username.
        #[arg(long)]
        username: Option<String>,
        /// A URL the login is for (repeatable).
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
        /// The item's name.
        name: String,
        #[command(flatten)]
        common: Common,
    },
    /// A payment card; the number, then the CVV, come from stdin, one a line.
    Card {
        /// The item's name.
        name: String,
        #[command(flatten)]
        common: Common,
        /// The cardholder's name.
        #[arg(long)]
        holder: Option<String>,
        /// The expiry date, MM/YY.
        #[arg(long)]
        expiry: Option<String>,
    },
    /// A standalone 2FA token; the base32 secret or otpauth:// URI comes from stdin.
    Totp {
        /// The item's name.
        name: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Args, Debug)]
pub struct EditArgs {
    /// The item: a name, FOLDER/NAME, or an id prefix.
    pub item: String,
    /// New name.
    #[arg(long)]
    pub name: Option<String>,
    /// New username.
    #[arg(long)]
    pub username: Option<String>,
    /// Replace the URLs (repeatable).
    #[arg(long = "url")]
    pub urls: Vec<String>,
    /// Remove every URL.
    #[arg(long, conflicts_with = "urls")]
    pub clear_urls: bool,
    /// Read a new password (one line) from stdin.
    #[arg(long)]
    pub password_stdin: bool,
    /// Generate a new password (default length 20).
    #[arg(long, num_args = 0..=1, default_missing_value = "20", value_name = "LEN", conflicts_with = "password_stdin")]
    pub generate: Option<usize>,
    /// With --generate: letters and digits only.
    #[arg(long)]
    pub no_symbols: bool,
    /// Read new notes (all of stdin).
    #[arg(long, conflicts_with = "password_stdin")]
    pub notes_stdin: bool,
    /// New cardholder name.
    #[arg(long)]
    pub holder: Option<String>,
    /// New expiry date, MM/YY.
    #[arg(long)]
    pub expiry: Option<String>,
    #[command(flatten)]
    pub custom: CustomFields,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct TotpArgs {
    #[command(subcommand)]
    pub command: Option<TotpCommand>,
    /// The item whose code to print.
    #[arg(required = true)]
    pub item: Option<String>,
    /// Compute the code at this Unix time instead of now.
    #[arg(long, value_name = "UNIX_SECONDS")]
    pub at: Option<u64>,
    /// Copy the code to the clipboard, cleared after a delay.
    #[arg(long)]
    pub copy: bool,
    #[command(flatten)]
    pub clear: ClearAfter,
}

#[derive(Subcommand, Debug)]
pub enum TotpCommand {
    /// Link a TOTP secret (base32 or otpauth:// URI, from stdin) to an existing item.
    Set {
        /// The item: a name, FOLDER/NAME, or an id prefix.
        item: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum FolderCommand {
    /// Create a folder.
    Create {
        /// The folder's name.
        name: String,
    },
    /// List folders.
    Ls,
    /// Rename a folder, for every member (Folder Manager only).
    #[command(
        long_about = "Rename a folder (Folder Manager or team admin only).\n\n\
            The new name is replicated: every member of a shared folder sees it after their \
            next sync. Names are case-insensitively unique among the folders you see."
    )]
    Rename {
        /// The folder (name or id prefix).
        folder: String,
        /// Its new name.
        name: String,
    },
    /// Delete a folder for every member (Folder Manager), or leave it (anyone else).
    #[command(long_about = "Delete a folder for every member, or leave it.\n\n\
            A Folder Manager (or team admin) deletes it: for every member of a shared \
            folder, on every device, after their next sync; items in it go with it, so a folder \
            that still holds items (trash included) needs --force. Anyone else leaves it: \
            their user's grant is removed, their devices stop showing it and receive \
            nothing written after, and the other members keep it (the key rotates). A member \
            through a user group cannot leave by themselves: a Folder Manager removes the \
            group, or a team admin takes them out of it. --leave makes a Folder Manager leave \
            instead (refused if they are the last manager). The Personal folder cannot be deleted.")]
    Rm {
        /// The folder (name or id prefix).
        folder: String,
        /// Delete it with the items it holds.
        #[arg(long)]
        force: bool,
        /// Leave the folder instead of deleting it (for a Folder Manager).
        #[arg(long, conflicts_with = "force")]
        leave: bool,
    },
    #[command(flatten)]
    Sharing(team::ShareCommand),
}

#[derive(Subcommand, Debug)]
pub enum ConflictsCommand {
    /// Keep value N of a field (as `coffer conflicts` numbers them; 1 is
    /// the one shown) for every member; or, with FIELD `trash`, 1 keeps an
    /// item an edit kept out of the trash and 2 moves it to the trash.
    Pick {
        /// The item: a name, FOLDER/NAME, or an id prefix.
        item: String,
        /// The field (its key or custom title), or `trash`.
        field: String,
        /// Which value to keep, as numbered by `coffer conflicts`.
        choice: usize,
    },
}

#[derive(Subcommand, Debug)]
pub enum TrashCommand {
    /// List the items in the trash (like `coffer ls --trash`).
    Ls {
        /// Only this folder (name or id prefix).
        #[arg(long)]
        folder: Option<String>,
    },
    /// Delete the items in the trash for good, for every member of their folders.
    Empty {
        /// Only this folder's trash (name or id prefix).
        #[arg(long)]
        folder: Option<String>,
        /// Do not ask for confirmation on a terminal.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum PinCommand {
    /// Change the PIN: the current one, then the new one twice (hidden prompts), or
    /// two stdin lines (current, new) without a terminal.
    #[command(long_about = "Change the PIN that unlocks this device.\n\n\
            Asks for the current PIN, then the new one twice, on a terminal; without one (or \
            with --pin-stdin) reads two lines from stdin: the current PIN, then the new one. \
            The device's keys are re-wrapped under the new PIN in one write: after it, only \
            the new PIN unlocks. Items, folders and other devices are not affected; the lock \
            state stays as it is. A wrong current PIN counts as a failed unlock.")]
    Change {
        /// Read both PINs from stdin (current, then new, one a line) instead of prompting.
        #[arg(long)]
        pin_stdin: bool,
    },
}
