//! The command line: every command, argument and flag of `coffer`, with its
//! help text (clap derive). `main.rs` runs them; `tests.rs` walks this tree
//! and fails on a missing description; `docs.rs` turns it into completions
//! and man pages.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::{enrol, service, sync, team};

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
    Init {
        /// Your name, as the team sees it.
        #[arg(long)]
        name: String,
        /// Your email address (your user in a team).
        #[arg(long)]
        email: String,
        /// Read the PIN as one line from stdin instead of prompting.
        #[arg(long)]
        pin_stdin: bool,
    },
    /// Unlock the vault with the PIN.
    Unlock {
        /// Read the PIN as one line from stdin instead of prompting.
        #[arg(long)]
        pin_stdin: bool,
    },
    /// Lock the vault now (the daemon keeps running and syncing).
    Lock,
    /// Show the daemon and vault state.
    Status,
    /// Add an item.
    #[command(subcommand)]
    Add(AddCommand),
    /// Show an item, or one field of it.
    Get {
        /// The item: a name, FOLDER/NAME, or an id prefix.
        item: String,
        /// Print only this field's value (username, password, notes, totp, number, cvv, holder, expiry, url, name, id).
        #[arg(long)]
        field: Option<String>,
        /// Show secret fields instead of masking them.
        #[arg(long)]
        reveal: bool,
        /// Copy the value (the password, or --field) to the clipboard, cleared after a delay.
        #[arg(long)]
        copy: bool,
        #[command(flatten)]
        clear: ClearAfter,
        /// Look in the trash.
        #[arg(long)]
        trash: bool,
    },
    /// Print one field of an item named by a secret reference, coffer://[FOLDER/]ITEM/FIELD.
    Read {
        /// The reference, e.g. coffer://Personal/github/password (FIELD totp-code prints the current code).
        reference: String,
        /// Do not print a newline after the value.
        #[arg(long, short = 'n')]
        no_newline: bool,
    },
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
    Run(RunArgs),
    /// Fill a template's {{ coffer://... }} references in, writing a new 0600 file (or stdout).
    Inject(InjectArgs),
    /// Show an item's earlier values, with device and time.
    History {
        /// The item: a name, FOLDER/NAME, or an id prefix.
        item: String,
        /// Show secret fields instead of masking them.
        #[arg(long)]
        reveal: bool,
    },
    /// List every item where concurrent edits of a field were kept side
    /// by side (numbered: 1 is the value shown), or that an edit kept out
    /// of the trash; `conflicts pick` settles one.
    Conflicts {
        /// Show the values instead of masking them.
        #[arg(long)]
        reveal: bool,
        #[command(subcommand)]
        action: Option<ConflictsCommand>,
    },
    /// List items.
    Ls {
        /// Only this folder (name or id prefix).
        #[arg(long)]
        folder: Option<String>,
        /// List the trash instead.
        #[arg(long)]
        trash: bool,
    },
    /// Find items by name, username, URL or folder.
    Search {
        /// Text to look for (case-insensitive; never matched against secrets).
        query: String,
    },
    /// Change an item.
    Edit(EditArgs),
    /// Move an item to the trash.
    Rm {
        /// The item: a name, FOLDER/NAME, or an id prefix.
        item: String,
    },
    /// Move an item to another folder (needs Item or Folder Manager in both).
    #[command(
        long_about = "Move an item to another folder (needs the Item Manager or Folder Manager role in both).\n\n\
            The item is added to FOLDER as it is now (same id, name, fields, URLs and creation \
            time) and deleted from its old folder, for every member of each: members of the old \
            folder who are not in the new one no longer see it. Its earlier values stay in the old \
            folder's history and do not move."
    )]
    Mv {
        /// The item: a name, FOLDER/NAME, or an id prefix.
        item: String,
        /// The folder to move it to (name or id prefix).
        folder: String,
    },
    /// Take an item out of the trash.
    Restore {
        /// The trashed item: a name, FOLDER/NAME, or an id prefix.
        item: String,
    },
    /// Print an item's TOTP code (`coffer totp set ITEM` links a secret).
    Totp(TotpArgs),
    /// Manage folders.
    #[command(subcommand)]
    Folder(FolderCommand),
    /// List or empty the trash.
    #[command(subcommand)]
    Trash(TrashCommand),
    /// Change this device's PIN.
    #[command(subcommand)]
    Pin(PinCommand),
    /// Generate a password (or, with --words, a passphrase).
    Generate {
        /// Length of the password in characters.
        #[arg(long, default_value_t = 20)]
        length: usize,
        /// A diceware passphrase of this many words instead.
        #[arg(long)]
        words: Option<usize>,
        /// Letters and digits only.
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
        /// The export file.
        file: PathBuf,
        /// Put everything into this existing folder.
        #[arg(long)]
        folder: Option<String>,
        /// Report what would be imported; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write items in plaintext, as JSON (re-importable with `coffer import`)
    /// or CSV, to standard output or --output.
    Export {
        /// json or csv.
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
        /// Read the PIN (asked again before an export) from one stdin line.
        #[arg(long)]
        pin_stdin: bool,
    },
    /// Write an encrypted backup of every item you can read, trash included
    /// (age format with a passphrase: `age -d FILE` opens it too).
    Backup {
        /// The new backup file.
        file: PathBuf,
        /// Read the passphrase from one stdin line instead of a prompt.
        #[arg(long)]
        passphrase_stdin: bool,
        /// Read the PIN (asked again before a backup) from one stdin line,
        /// before the passphrase's.
        #[arg(long)]
        pin_stdin: bool,
    },
    /// Add the items of a backup to this vault (all or nothing; items already
    /// present are not added again).
    RestoreBackup {
        /// The backup file (from `coffer backup`).
        file: PathBuf,
        /// Read the passphrase from one stdin line instead of a prompt.
        #[arg(long)]
        passphrase_stdin: bool,
        /// Report what would be restored; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print daemon events (item changes, lock state, peers, sync) as they happen.
    Events,
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
    Peers,
    /// Why this laptop and another do not see each other: a checklist
    /// (daemon, vault, team, listen addresses, mDNS, each device's
    /// connection and last dial error, clocks) with the next step for each
    /// problem. Exits 22 when it finds one. Never starts cofferd.
    Doctor,
    /// Sync state per folder, or sync now.
    #[command(subcommand)]
    Sync(sync::SyncCommand),
    /// Invite a person into the team (team admins): prints a one-time code;
    /// `invite pending|confirm|reject` decide on the joins.
    Invite(enrol::InviteArgs),
    /// Join a team with an invite code from `coffer invite`.
    Join(enrol::JoinArgs),
    /// Erase this device's vault when its PIN is lost (no PIN needed): its
    /// keys and everything stored here; then `coffer init` or `coffer join`.
    Reset {
        /// Do not ask to type "reset" first.
        #[arg(long)]
        yes: bool,
    },
    /// Run cofferd as a login service: the systemd user unit (Linux) or the launchd agent (macOS).
    #[command(subcommand)]
    Service(service::ServiceCommand),
    /// Print the shell completion script for bash, zsh, fish, elvish or powershell.
    #[command(
        long_about = "Print the shell completion script for bash, zsh, fish, elvish or powershell.\n\n\
        bash: coffer completion bash > ~/.local/share/bash-completion/completions/coffer\n\
        zsh:  coffer completion zsh > ~/.zfunc/_coffer   (with fpath+=~/.zfunc)\n\
        fish: coffer completion fish > ~/.config/fish/completions/coffer.fish"
    )]
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Writes the man pages (coffer.1 and one per subcommand) into DIR (packaging).
    #[command(name = "__man", hide = true)]
    Man {
        /// The folder to write into (created if missing).
        dir: PathBuf,
    },
    /// Clears the clipboard later if it still holds what `--copy` put there;
    /// reads a salted hash of the value from stdin (never from arguments).
    #[command(name = "__clear-clipboard", hide = true)]
    ClearClipboard {
        /// Seconds to wait.
        #[arg(long)]
        after: u64,
    },
    /// Serves a value read from stdin on the X11 clipboard with the
    /// password-manager hint, until replaced or for --after seconds.
    #[command(name = "__clipboard-x11", hide = true)]
    ClipboardX11 {
        /// Seconds to hold it (0: until another program takes the clipboard).
        #[arg(long)]
        after: u64,
    },
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
