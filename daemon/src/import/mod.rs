//! Import parsers: turn another password manager's export into Coffer items.
//!
//! This module is pure: it reads bytes and returns [`ImportedItem`]s plus a
//! list of [`Skipped`] records; it never touches the vault. The caller
//! (vault/CLI) creates the folders and items, and uses [`fingerprint`] to
//! avoid creating duplicates when the same file is imported twice.
//!
//! # Rules shared by every format
//!
//! - **All or nothing per file.** A malformed file (truncated zip, bad CSV
//!   quoting, missing columns, invalid XML or JSON, a wrong KDBX password,
//!   garbage) is an [`ImportError`] naming the line or record and what is
//!   wrong. Error messages never contain a field value (no secret can leak
//!   through them).
//! - **Nothing is dropped silently.** Every record becomes an item unless
//!   it is empty, in a trash or recycle bin, or of a kind no Coffer item can
//!   hold (then [`ImportReport::skipped`] has it with `field: None`). Every
//!   source field either lands in the item — a built-in field, a URL, the
//!   notes, a custom field, an earlier password or the `archived` mark — or
//!   is listed per item in `skipped` with `field: Some(..)` and why
//!   (attachments, passkeys, links to other items, HOTP code generation).
//!   Bookkeeping that is not the user's data (ids, favourite flags, icons,
//!   times of last use) is not imported and not listed.
//! - **A TOTP secret that [`TotpConfig::parse`] refuses** does not sink its
//!   item: the value is kept as a hidden custom field `TOTP` and the report
//!   says why. Accepted TOTP values are stored canonically
//!   (`TotpConfig::to_uri`). Card values the vault would refuse (number,
//!   CVV, expiry) are kept as custom fields (number and CVV hidden).
//! - **Custom fields** (Bitwarden `fields`, 1Password section and extra
//!   login fields, KeePass custom strings, LastPass typed-note keys, a
//!   card's brand, tags, ...) become Coffer custom fields
//!   (`coffer_crdt::schema::custom_key`): title and kind kept (hidden ones
//!   stay secret, dates become `YYYY-MM-DD`, checkboxes `true`/`false`,
//!   unchecked ones included); a title is made unique in its item
//!   (`PIN (2)`). Categories Coffer has no type for (identities, passports,
//!   servers, databases, bank accounts, licences, SSH keys, ...) become a
//!   login when they hold a username, password or URL, else a note, with
//!   their other fields as custom fields and the source's category in one.
//! - **Password history** becomes hidden `history` custom fields titled
//!   `Earlier password (YYYY-MM-DD)`; an item archived at its source
//!   (1Password, Bitwarden) is imported with the `archived` field set.
//! - **Folders.** Coffer folders are flat and their names cannot contain
//!   `/`. Nested groups/folders are flattened into one folder whose name is
//!   the path joined with [`FOLDER_SEPARATOR`] (`" > "`), e.g. KeePass
//!   `Root/Work/Servers` → `Work > Servers`; a `/` inside one group's name
//!   becomes `-`. KeePass' root group and its recycle bin are not folders
//!   (entries in the recycle bin are not imported). `None` means "no folder"
//!   (the caller's default or `--folder`).
//! - **Field values are kept verbatim** (no trimming of passwords or notes),
//!   except names, usernames and URLs which are trimmed. Empty values are
//!   left out of [`ImportedItem::fields`].
//! - An entry with no username, password, URL or TOTP but with notes or
//!   custom fields is imported as a `note`.
//! - An item without a title is named after its URL's host, else its
//!   username, else `Untitled`.
//!
//! Memory is bounded: input larger than [`MAX_IMPORT_BYTES`] is refused up
//! front, text formats must be UTF-8 (checked before parsing, so garbage fails
//! at its first invalid byte), and the `export.data` of a 1PUX archive is read
//! through the same limit.

mod bitwarden;
mod browser;
mod coffer;
mod keepass;
mod lastpass;
mod onepassword;
mod otpauth;

use std::collections::BTreeMap;
use std::fmt;

use coffer_crdt::schema::{self, CustomKind};
use coffer_crdt::totp::TotpConfig;

/// The largest input accepted, in bytes (also the most a 1PUX archive's
/// `export.data` may decompress to).
pub const MAX_IMPORT_BYTES: usize = 64 << 20;

/// What nested folder names are joined with (Coffer folder names cannot
/// contain `/`).
pub const FOLDER_SEPARATOR: &str = " > ";

/// The formats `coffer import --format` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// Bitwarden's unencrypted JSON export (also organization exports).
    BitwardenJson,
    /// Bitwarden's CSV export (logins and notes).
    BitwardenCsv,
    /// 1Password's 1PUX export (a zip with `export.data`).
    OnePassword1pux,
    /// 1Password 8's CSV export.
    OnePasswordCsv,
    /// KeePass 2 / KeePassXC XML export.
    KeepassXml,
    /// KeePassXC's CSV export.
    KeepassxcCsv,
    /// A KDBX (KeePass 2 / KeePassXC) database, opened with its password.
    Kdbx,
    /// LastPass' CSV export.
    LastpassCsv,
    /// Chrome / Edge / Brave passwords CSV.
    ChromeCsv,
    /// Firefox' passwords CSV.
    FirefoxCsv,
    /// A text file of `otpauth://` (or `steam://`) URIs, one a line.
    Otpauth,
    /// Google Authenticator's `otpauth-migration://offline?data=` export.
    OtpauthMigration,
    /// Coffer's own `coffer export --format json` (and the inside of a backup).
    CofferJson,
}

impl Format {
    /// Every format, in the order shown to users.
    pub const ALL: [Format; 13] = [
        Format::BitwardenJson,
        Format::BitwardenCsv,
        Format::OnePassword1pux,
        Format::OnePasswordCsv,
        Format::KeepassXml,
        Format::KeepassxcCsv,
        Format::Kdbx,
        Format::LastpassCsv,
        Format::ChromeCsv,
        Format::FirefoxCsv,
        Format::Otpauth,
        Format::OtpauthMigration,
        Format::CofferJson,
    ];

    /// The format for a CLI name (`bitwarden-json`, ...), case-insensitive.
    pub fn parse_name(s: &str) -> Option<Format> {
        let s = s.trim();
        Format::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s))
    }

    /// The CLI name of the format.
    pub fn name(self) -> &'static str {
        match self {
            Format::BitwardenJson => "bitwarden-json",
            Format::BitwardenCsv => "bitwarden-csv",
            Format::OnePassword1pux => "1password-1pux",
            Format::OnePasswordCsv => "1password-csv",
            Format::KeepassXml => "keepass-xml",
            Format::KeepassxcCsv => "keepassxc-csv",
            Format::Kdbx => "kdbx",
            Format::LastpassCsv => "lastpass-csv",
            Format::ChromeCsv => "chrome-csv",
            Format::FirefoxCsv => "firefox-csv",
            Format::Otpauth => "otpauth",
            Format::OtpauthMigration => "otpauth-migration",
            Format::CofferJson => "coffer-json",
        }
    }

    /// Whether [`parse`] needs a password for this format.
    pub fn needs_password(self) -> bool {
        self == Format::Kdbx
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One item to create. `fields` only holds the keys the vault accepts for
/// `item_type` (see `Vault::check_fields`), never with an empty value.
/// `Debug` names the fields but never prints their values (passwords, TOTP
/// secrets, card numbers).
#[derive(Clone, PartialEq, Eq)]
pub struct ImportedItem {
    /// `login`, `note`, `card` or `totp`.
    pub item_type: String,
    /// Never empty.
    pub name: String,
    /// The folder, nested names joined with [`FOLDER_SEPARATOR`]; never
    /// contains `/`. `None`: no folder in the source.
    pub folder: Option<String>,
    pub fields: BTreeMap<String, String>,
    pub urls: Vec<String>,
    /// Times the source recorded (only Coffer's own export has them); the
    /// import time is used for any that is absent.
    pub times: ItemTimes,
}

/// When an item was created, last changed and trashed, in Unix ms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ItemTimes {
    pub created_ms: Option<i64>,
    pub updated_ms: Option<i64>,
    pub trashed_ms: Option<i64>,
}

impl fmt::Debug for ImportedItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportedItem")
            .field("item_type", &self.item_type)
            .field("name", &self.name)
            .field("folder", &self.folder)
            .field("fields", &self.fields.keys().collect::<Vec<_>>())
            .field("urls", &self.urls.len())
            .field("times", &self.times)
            .finish()
    }
}

impl ImportedItem {
    /// A field's value, or `""`.
    pub fn field(&self, key: &str) -> &str {
        self.fields.get(key).map(String::as_str).unwrap_or("")
    }
}

/// A record that was not imported, or a field of an imported item that was
/// left out (an attachment, a passkey, ...), and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// Where: `line 7`, `item 'GitHub'`, `item 3 'GitHub'`, ...
    pub record: String,
    /// `None`: the whole record. `Some`: the source field left out of the
    /// item (the item itself was imported).
    pub field: Option<String>,
    /// Why, in words. Never contains a secret.
    pub reason: String,
}

/// What a file holds: the items to create and what was left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub items: Vec<ImportedItem>,
    pub skipped: Vec<Skipped>,
}

impl ImportReport {
    /// Item counts per type (`login`, `note`, `card`, `totp`).
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for item in &self.items {
            *counts.entry(item.item_type.clone()).or_insert(0) += 1;
        }
        counts
    }
}

/// Why a file could not be imported. Messages name the line or record and
/// never contain a field value.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum ImportError {
    #[error("the file is {size} bytes, more than the {max} bytes an import may be")]
    TooLarge { size: usize, max: usize },
    #[error("the file is empty")]
    Empty,
    #[error("{format}: not UTF-8 text: invalid byte at line {line} (byte offset {offset})")]
    NotUtf8 {
        format: Format,
        line: usize,
        offset: usize,
    },
    /// A malformed file: `at` is `line 7`, `item 3 'GitHub'`, `export.data`...
    #[error("{format}: {at}: {message}")]
    Malformed {
        format: Format,
        at: String,
        message: String,
    },
    #[error("kdbx: a password is needed to open a KeePass database")]
    PasswordRequired,
    #[error(
        "kdbx: wrong password, or a damaged file \
         (a database that also needs a key file is not supported)"
    )]
    WrongPassword,
    #[error("{format}: this is an encrypted export: export again without encryption (or with the \"unencrypted\" option)")]
    Encrypted { format: Format },
}

impl ImportError {
    pub(crate) fn malformed(
        format: Format,
        at: impl Into<String>,
        message: impl Into<String>,
    ) -> ImportError {
        ImportError::Malformed {
            format,
            at: at.into(),
            message: message.into(),
        }
    }
}

/// Parses a whole file. `password` is only used for [`Format::Kdbx`].
///
/// Never panics, whatever `bytes` hold.
pub fn parse(
    format: Format,
    bytes: &[u8],
    password: Option<&str>,
) -> Result<ImportReport, ImportError> {
    if bytes.len() > MAX_IMPORT_BYTES {
        return Err(ImportError::TooLarge {
            size: bytes.len(),
            max: MAX_IMPORT_BYTES,
        });
    }
    if bytes.is_empty() {
        return Err(ImportError::Empty);
    }
    match format {
        Format::OnePassword1pux => return onepassword::parse_1pux(bytes),
        Format::Kdbx => return keepass::parse_kdbx(bytes, password),
        _ => {}
    }
    let text = text(format, bytes)?;
    let mut report = match format {
        Format::BitwardenJson => bitwarden::parse_json(text)?,
        Format::BitwardenCsv => bitwarden::parse_csv(text)?,
        Format::OnePasswordCsv => onepassword::parse_csv(text)?,
        Format::KeepassXml => keepass::parse_xml(text)?,
        Format::KeepassxcCsv => keepass::parse_csv(text)?,
        Format::LastpassCsv => lastpass::parse_csv(text)?,
        Format::ChromeCsv => browser::parse_chrome(text)?,
        Format::FirefoxCsv => browser::parse_firefox(text)?,
        Format::Otpauth => otpauth::parse_uris(text)?,
        Format::OtpauthMigration => otpauth::parse_migration(text)?,
        Format::CofferJson => coffer::parse_json(text)?,
        Format::OnePassword1pux | Format::Kdbx => ImportReport::default(),
    };
    report.items.shrink_to_fit();
    Ok(report)
}

/// Guesses the format from the content (`--format auto`). `None` when no
/// format matches; the caller then asks for `--format`.
pub fn detect(bytes: &[u8]) -> Option<Format> {
    if bytes.len() > MAX_IMPORT_BYTES || bytes.is_empty() {
        return None;
    }
    if bytes.starts_with(b"PK\x03\x04") {
        return onepassword::is_1pux(bytes).then_some(Format::OnePassword1pux);
    }
    // KeePass: signature 1 0x9AA2D903, signature 2 0xB54BFB67 (KDBX 2–4),
    // 0xB54BFB66 (KeePass 2 pre-release) or 0xB54BFB65 (KeePass 1 KDB),
    // little-endian.
    if bytes.starts_with(&[0x03, 0xD9, 0xA2, 0x9A])
        && matches!(bytes.get(4..8), Some([0x65..=0x67, 0xFB, 0x4B, 0xB5]))
    {
        return Some(Format::Kdbx);
    }
    // Only the head is looked at: a valid file's marker is near the start.
    let head = &bytes[..bytes.len().min(64 * 1024)];
    let head = match std::str::from_utf8(head) {
        Ok(s) => s,
        // The cut may fall inside a character.
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return None,
    };
    let head = head.trim_start_matches('\u{feff}').trim_start();
    if head.starts_with('{') {
        if head.contains("\"coffer-export\"") {
            return Some(Format::CofferJson);
        }
        return (head.contains("\"items\"") || head.contains("\"encrypted\""))
            .then_some(Format::BitwardenJson);
    }
    if head.starts_with('<') {
        return head.contains("<KeePassFile").then_some(Format::KeepassXml);
    }
    let first = head
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))?;
    let lower = first.to_ascii_lowercase();
    if lower.starts_with("otpauth-migration://") {
        return Some(Format::OtpauthMigration);
    }
    if lower.starts_with("otpauth://") || lower.starts_with("steam://") {
        return Some(Format::Otpauth);
    }
    detect_csv(head)
}

fn detect_csv(head: &str) -> Option<Format> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(head.as_bytes());
    let header = reader.records().next()?.ok()?;
    let cols: Vec<String> = header
        .iter()
        .map(|c| c.trim().to_ascii_lowercase())
        .collect();
    let has = |names: &[&str]| names.iter().all(|n| cols.iter().any(|c| c == n));
    if has(&["type", "name", "login_uri", "login_password"])
        && (has(&["folder"]) || has(&["collections"]))
    {
        return Some(Format::BitwardenCsv);
    }
    if has(&["url", "username", "password", "extra", "name", "grouping"]) {
        return Some(Format::LastpassCsv);
    }
    if has(&[
        "url",
        "username",
        "password",
        "httprealm",
        "formactionorigin",
    ]) {
        return Some(Format::FirefoxCsv);
    }
    if has(&["group", "title", "username", "password", "url", "notes"]) {
        return Some(Format::KeepassxcCsv);
    }
    if has(&["title", "username", "password", "otpauth"]) {
        return Some(Format::OnePasswordCsv);
    }
    // 1Password 7: `notesPlain`, or Windows' `label(id)` columns, or Mac's
    // `type` column beside title and notes.
    let windows_1p7 = cols
        .iter()
        .any(|c| c.starts_with("title(") && c.ends_with(')'))
        && cols
            .iter()
            .any(|c| c.contains("(notesplain)") || c.contains("(password)"));
    if has(&["title", "notesplain"]) || windows_1p7 || has(&["title", "notes", "type"]) {
        return Some(Format::OnePasswordCsv);
    }
    // KeePassX (0.4, 2.0): KeePassXC's columns without Group.
    if has(&["title", "username", "password", "url", "notes"]) {
        return Some(Format::KeepassxcCsv);
    }
    if has(&["name", "url", "username", "password"]) {
        return Some(Format::ChromeCsv);
    }
    None
}

/// A stable identity for an imported item, for duplicate detection: BLAKE3
/// over the type, folder, name, username, first URL and the main secret
/// (password, card number or TOTP, whichever the type has), each
/// length-prefixed. Importing the same file twice gives the same
/// fingerprints; a changed password gives a new one.
pub fn fingerprint(item: &ImportedItem) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("coffer import fingerprint v1");
    let mut part = |s: &str| {
        h.update(&(s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    part(&item.item_type);
    part(item.folder.as_deref().unwrap_or(""));
    part(&item.name);
    part(item.field("username"));
    part(item.urls.first().map(String::as_str).unwrap_or(""));
    part(item.field("password"));
    part(item.field("number"));
    part(item.field("totp"));
    *h.finalize().as_bytes()
}

// ---------------------------------------------------------------------------
// Helpers shared by the format modules.

/// For `#[serde(deserialize_with)]`: a JSON `null` (seen in real exports
/// where a list or string is expected) reads as the default value.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + Default,
{
    use serde::Deserialize;
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// For `#[serde(deserialize_with)]`: a list that may be `null` and may hold
/// `null`s (both seen in real exports) reads as the list of what is not.
fn vec_skip_null<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    use serde::Deserialize;
    let list = Option::<Vec<Option<T>>>::deserialize(d)?;
    Ok(list.into_iter().flatten().flatten().collect())
}

/// Checks UTF-8 (naming the line of the first bad byte) and strips a BOM.
fn text(format: Format, bytes: &[u8]) -> Result<&str, ImportError> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.strip_prefix('\u{feff}').unwrap_or(s)),
        Err(e) => {
            let offset = e.valid_up_to();
            let line = 1 + bytes[..offset].iter().filter(|b| **b == b'\n').count();
            Err(ImportError::NotUtf8 {
                format,
                line,
                offset,
            })
        }
    }
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    1 + text.as_bytes()[..offset]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
}

/// Replaces the contents of double-quoted runs with `…`, so that a parser's
/// message ("invalid type: string \"hunter2\"") cannot leak a value.
fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut inside = false;
    for c in message.chars() {
        if c == '"' {
            if inside {
                out.push('…');
            }
            inside = !inside;
            out.push(c);
        } else if !inside {
            out.push(c);
        }
    }
    out
}

/// A JSON parse error as a message with no value in it.
fn json_error(format: Format, at: impl Into<String>, e: &serde_json::Error) -> ImportError {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Eof => "the JSON ends too early (truncated file?)".to_string(),
        Category::Syntax => "invalid JSON".to_string(),
        Category::Data => {
            // "invalid type: ..., expected ... at line 3 column 5": strip the position
            // (given separately) and any quoted value.
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            format!("unexpected content: {}", redact_quoted(&msg))
        }
        Category::Io => "read error".to_string(),
    };
    let at = at.into();
    let at = if e.line() > 0 && at.is_empty() {
        format!("line {} column {}", e.line(), e.column())
    } else if e.line() > 0 {
        format!("{at} (line {} column {})", e.line(), e.column())
    } else {
        at
    };
    ImportError::malformed(format, at, what)
}

/// Trims and joins non-empty folder path components with
/// [`FOLDER_SEPARATOR`]; `/` inside a component becomes `-`.
fn folder_from_parts<'a>(parts: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let parts: Vec<String> = parts
        .into_iter()
        .map(|p| p.trim().replace('/', "-"))
        .filter(|p| !p.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join(FOLDER_SEPARATOR))
}

/// The host of a URL (`https://www.example.com:8443/x` → `www.example.com`),
/// or `None` when there is none.
fn url_host(url: &str) -> Option<String> {
    let url = url.trim();
    let rest = match url.find("://") {
        Some(i) => &url[i + 3..],
        None => url,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    let host = if host.starts_with('[') {
        host.split(']').next().map(|h| h.trim_start_matches('['))?
    } else {
        host.split(':').next().unwrap_or("")
    };
    (!host.is_empty() && !host.contains(char::is_whitespace)).then(|| host.to_string())
}

/// Accumulates one item while a record is read; [`ItemBuilder::finish`] turns
/// it into an [`ImportedItem`] (or a skip) by the shared rules.
#[derive(Default)]
struct ItemBuilder {
    /// Where the record is, for warnings: `line 3`, `item 2`, ...
    record: String,
    item_type: String,
    name: String,
    folder: Option<String>,
    fields: BTreeMap<String, String>,
    urls: Vec<String>,
    notes: String,
    /// Source fields left out of the item: (field, why).
    left_out: Vec<(String, String)>,
}

impl ItemBuilder {
    fn new(item_type: &str, record: impl Into<String>) -> ItemBuilder {
        ItemBuilder {
            item_type: item_type.to_string(),
            record: record.into(),
            ..ItemBuilder::default()
        }
    }

    fn name(&mut self, name: &str) {
        self.name = name.trim().to_string();
    }

    fn folder(&mut self, folder: Option<String>) {
        self.folder = folder;
    }

    /// Sets a field, unless `value` is empty (usernames are trimmed). A
    /// second value for a field already set becomes a custom field.
    fn set(&mut self, key: &str, value: &str) {
        let value = if key == "username" {
            value.trim()
        } else {
            value
        };
        if value.is_empty() {
            return;
        }
        match self.fields.get(key) {
            Some(v) if v == value => {}
            Some(_) => {
                let kind = if schema::is_secret(key) {
                    CustomKind::Hidden
                } else {
                    CustomKind::Text
                };
                self.custom(kind, key, value);
            }
            None => {
                self.fields.insert(key.to_string(), value.to_string());
            }
        }
    }

    fn notes(&mut self, notes: &str) {
        self.notes = notes.to_string();
    }

    /// Notes with Windows (`\r\n`) or old Mac (`\r`) line ends, as `\n`.
    fn notes_lf(&mut self, notes: &str) {
        self.notes = notes.replace("\r\n", "\n").replace('\r', "\n");
    }

    fn url(&mut self, url: &str) {
        let url = url.trim();
        if !url.is_empty() && !self.urls.iter().any(|u| u == url) {
            self.urls.push(url.to_string());
        }
    }

    /// A custom field (`schema::custom_key`). The title is made valid (one
    /// line, trimmed, at most 256 bytes, `Field` when empty) and unique in
    /// the item (`Title (2)`); a value its kind refuses is kept as text.
    /// Empty values are left out (they hold nothing to keep).
    fn custom(&mut self, kind: CustomKind, title: &str, value: &str) {
        if value.trim().is_empty() {
            return;
        }
        let mut kind = kind;
        let mut value = value.to_string();
        let mut probe = BTreeMap::from([(schema::custom_key(kind, "x"), value.clone())]);
        if schema::normalize(coffer_crdt::ItemType::Note, &mut probe).is_err() {
            kind = CustomKind::Text;
        } else if let Some(v) = probe.into_values().next() {
            value = v;
        }
        let title = custom_title(title);
        let mut n = 1;
        let key = loop {
            let t = if n == 1 {
                title.clone()
            } else {
                format!("{title} ({n})")
            };
            let taken = self
                .fields
                .keys()
                .any(|k| schema::parse_custom_key(k).is_some_and(|(_, existing)| existing == t));
            if !taken {
                break schema::custom_key(kind, &t);
            }
            n += 1;
        };
        self.fields.insert(key, value);
    }

    /// An earlier password, replaced at `when` (Unix seconds) if known.
    fn history(&mut self, when: Option<i64>, password: &str) {
        let title = match when.and_then(date_of_unix) {
            Some(date) => format!("Earlier password ({date})"),
            None => "Earlier password".to_string(),
        };
        self.custom(CustomKind::History, &title, password);
    }

    /// Archived at the source, at `when` (Unix seconds) if known.
    fn archived(&mut self, when: Option<i64>) {
        let value = when.and_then(date_of_unix).unwrap_or_else(|| "true".into());
        self.fields.insert(schema::ARCHIVED.into(), value);
    }

    /// A source field that is not imported, and why (listed per item in
    /// the report).
    fn leave_out(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.left_out.push((field.into(), reason.into()));
    }

    /// A TOTP value; if it cannot be read, it is kept as a hidden custom
    /// field and the report says why.
    fn totp(&mut self, value: &str) {
        let value = value.trim();
        if value.is_empty() {
            return;
        }
        if self.fields.contains_key("totp") {
            self.custom(CustomKind::Hidden, "TOTP", value);
            return;
        }
        match TotpConfig::parse(value) {
            Ok(config) => {
                self.fields.insert("totp".into(), config.to_uri());
            }
            Err(e) => {
                self.custom(CustomKind::Hidden, "TOTP", value);
                self.leave_out(
                    "TOTP",
                    format!("not usable for codes (kept as a hidden field): {e}"),
                );
            }
        }
    }

    /// A card number; one the vault would refuse is kept as a hidden field.
    fn card_number(&mut self, value: &str) {
        let digits: String = value
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect();
        if digits.is_empty() {
            return;
        }
        if digits.chars().all(|c| c.is_ascii_digit()) && (8..=19).contains(&digits.len()) {
            self.fields.insert("number".into(), digits);
        } else {
            self.custom(CustomKind::Hidden, "number", value);
        }
    }

    fn card_cvv(&mut self, value: &str) {
        let value = value.trim();
        if value.is_empty() {
            return;
        }
        if value.chars().all(|c| c.is_ascii_digit()) && (3..=4).contains(&value.len()) {
            self.fields.insert("cvv".into(), value.to_string());
        } else {
            self.custom(CustomKind::Hidden, "cvv", value);
        }
    }

    /// A card expiry from a month and a year in any common spelling
    /// (`1`/`01`/`January`, `27`/`2027`), stored as `MM/YY`; anything else
    /// is kept as a text field.
    fn card_expiry(&mut self, month: &str, year: &str) {
        let (month, year) = (month.trim(), year.trim());
        if month.is_empty() && year.is_empty() {
            return;
        }
        match expiry(month, year) {
            Some(e) => {
                self.fields.insert("expiry".into(), e);
            }
            None => self.custom(CustomKind::Text, "expiry", &format!("{month}/{year}")),
        }
    }

    fn is_empty(&self) -> bool {
        self.name.is_empty()
            && self.fields.is_empty()
            && self.urls.is_empty()
            && self.notes.trim().is_empty()
    }

    /// Builds the item into `report`, or records a skip for an empty record.
    fn finish(mut self, report: &mut ImportReport) {
        if self.is_empty() {
            report.skipped.push(Skipped {
                field: None,
                record: self.record,
                reason: "empty record".into(),
            });
            return;
        }
        let notes = std::mem::take(&mut self.notes);
        if !notes.is_empty() {
            self.fields.insert("notes".into(), notes);
        }
        // A note holding credentials is a login.
        if self.item_type == "note"
            && ["username", "password", "totp"]
                .iter()
                .any(|k| self.fields.contains_key(*k))
        {
            self.item_type = "login".into();
        }
        // A built-in field the type does not have (a card's username, ...)
        // is kept as a custom field: the item always fits the schema.
        if let Some(t) = coffer_crdt::ItemType::parse(&self.item_type) {
            let foreign: Vec<String> = self
                .fields
                .keys()
                .filter(|k| {
                    !k.starts_with(schema::CUSTOM_PREFIX)
                        && k.as_str() != schema::ARCHIVED
                        && !t.fields().iter().any(|f| f.name == k.as_str())
                })
                .cloned()
                .collect();
            for key in foreign {
                if let Some(value) = self.fields.remove(&key) {
                    let kind = if schema::is_secret(&key) {
                        CustomKind::Hidden
                    } else {
                        CustomKind::Text
                    };
                    self.custom(kind, &key, &value);
                }
            }
        }
        if self.item_type == "login"
            && self.urls.is_empty()
            && ["username", "password", "totp"]
                .iter()
                .all(|k| !self.fields.contains_key(*k))
            && self
                .fields
                .keys()
                .any(|k| k == "notes" || k.starts_with(schema::CUSTOM_PREFIX))
        {
            self.item_type = "note".into();
        }
        if self.name.is_empty() {
            self.name = self
                .urls
                .iter()
                .find_map(|u| url_host(u))
                .or_else(|| self.fields.get("username").cloned())
                .unwrap_or_else(|| "Untitled".into());
        }
        let record = format!("{} '{}'", self.record, self.name);
        for (field, reason) in self.left_out {
            report.skipped.push(Skipped {
                record: record.clone(),
                field: Some(field),
                reason,
            });
        }
        report.items.push(ImportedItem {
            item_type: self.item_type,
            name: self.name,
            folder: self.folder,
            fields: self.fields,
            urls: self.urls,
            times: ItemTimes::default(),
        });
    }
}

/// A custom field title: one line, trimmed, at most
/// [`schema::MAX_CUSTOM_TITLE`] bytes, `Field` when empty.
fn custom_title(title: &str) -> String {
    let one_line: String = title
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    let mut t = one_line.trim().to_string();
    if t.len() > schema::MAX_CUSTOM_TITLE - 8 {
        let mut cut = schema::MAX_CUSTOM_TITLE - 8;
        while !t.is_char_boundary(cut) {
            cut -= 1;
        }
        t.truncate(cut);
        t = t.trim_end().to_string();
    }
    if t.is_empty() {
        "Field".into()
    } else {
        t
    }
}

/// The Unix seconds of an RFC 3339 time's date (`2024-05-01T10:00:00.000Z`
/// → midnight UTC of that day); `None` if it does not start with a date.
fn unix_of_rfc3339(t: &str) -> Option<i64> {
    let d = t.trim().get(..10)?;
    if !schema::valid_date(d) {
        return None;
    }
    let (y, m, day): (i64, i64, i64) = (
        d[..4].parse().ok()?,
        d[5..7].parse().ok()?,
        d[8..].parse().ok()?,
    );
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) * 86_400)
}

/// `YYYY-MM-DD` (UTC) of a Unix time in seconds; `None` outside years
/// 1970–9999 (a time in milliseconds is recognised and divided).
fn date_of_unix(secs: i64) -> Option<String> {
    let secs = if secs > 253_402_300_799 {
        secs / 1000
    } else {
        secs
    };
    if !(0..=253_402_300_799).contains(&secs) {
        return None;
    }
    // Howard Hinnant's civil_from_days.
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    Some(format!("{y:04}-{m:02}-{d:02}"))
}

/// `MM/YY` from a month (number or English name) and a 2- or 4-digit year.
fn expiry(month: &str, year: &str) -> Option<String> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let m: u32 = match month.parse::<u32>() {
        Ok(m) => m,
        Err(_) => {
            let lower = month.to_ascii_lowercase();
            let i = MONTHS
                .iter()
                .position(|p| lower.len() >= 3 && lower.starts_with(p))?;
            i as u32 + 1
        }
    };
    if !(1..=12).contains(&m) || !year.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let yy = match year.len() {
        2 => year.to_string(),
        4 => year[2..].to_string(),
        _ => return None,
    };
    Some(format!("{m:02}/{yy}"))
}

/// Reads a CSV file strictly (RFC 4180 quoting, every record as wide as the
/// header) after checking that the header has every `required` column
/// (case-insensitive, any order). Calls `row(line, record)` for each record
/// (see [`Row::get`]).
fn read_csv(
    format: Format,
    text: &str,
    required: &[&str],
    row: impl FnMut(u64, &Row<'_>) -> Result<(), ImportError>,
) -> Result<(), ImportError> {
    read_csv_with(format, text, required, false, row)
}

/// [`read_csv`] for formats whose rows may be longer or shorter than the
/// header (a missing cell reads as empty).
fn read_csv_flexible(
    format: Format,
    text: &str,
    required: &[&str],
    row: impl FnMut(u64, &Row<'_>) -> Result<(), ImportError>,
) -> Result<(), ImportError> {
    read_csv_with(format, text, required, true, row)
}

fn read_csv_with(
    format: Format,
    text: &str,
    required: &[&str],
    flexible: bool,
    mut row: impl FnMut(u64, &Row<'_>) -> Result<(), ImportError>,
) -> Result<(), ImportError> {
    check_csv_quoting(format, text)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(flexible)
        .from_reader(text.as_bytes());
    let mut records = reader.records();
    let header = match records.next() {
        None => return Err(ImportError::malformed(format, "line 1", "no header line")),
        Some(r) => r.map_err(|e| csv_error(format, &e))?,
    };
    let cols: Vec<String> = header
        .iter()
        .map(|c| c.trim().to_ascii_lowercase())
        .collect();
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|r| !cols.iter().any(|c| c == r))
        .collect();
    if !missing.is_empty() {
        return Err(ImportError::malformed(
            format,
            "line 1",
            format!(
                "missing column(s) {}: the header must have {} (is this a {} file?)",
                missing.join(", "),
                required.join(", "),
                format.name()
            ),
        ));
    }
    for record in records {
        let record = record.map_err(|e| csv_error(format, &e))?;
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        if record.len() == 1 && record.get(0).is_some_and(|f| f.trim().is_empty()) {
            continue; // a blank line
        }
        row(
            line,
            &Row {
                cols: &cols,
                record: &record,
            },
        )?;
    }
    Ok(())
}

/// One CSV record, with its header's (lowercase) column names.
struct Row<'r> {
    cols: &'r [String],
    record: &'r csv::StringRecord,
}

impl Row<'_> {
    /// The value of a column, or `""` for a column the file does not have.
    fn get(&self, column: &str) -> &str {
        self.cols
            .iter()
            .position(|c| c == column)
            .and_then(|i| self.record.get(i))
            .unwrap_or("")
    }
}

fn csv_error(format: Format, e: &csv::Error) -> ImportError {
    let line = e.position().map(|p| p.line()).unwrap_or(0);
    let message = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} fields where the header has {expected_len}"),
        csv::ErrorKind::Utf8 { .. } => "not UTF-8 text".into(),
        _ => "unreadable CSV record".into(),
    };
    ImportError::malformed(format, format!("line {line}"), message)
}

/// Strict RFC 4180 quoting: a quote may only open a field, close it (followed
/// by a comma or a line end) or be doubled inside a quoted field. The `csv`
/// crate accepts anything, so a file cut in the middle of a quoted field
/// would otherwise import half a record.
fn check_csv_quoting(format: Format, text: &str) -> Result<(), ImportError> {
    let bytes = text.as_bytes();
    let mut line = 1usize;
    let mut open_line = 0usize;
    let mut in_quotes = false;
    let mut field_start = true;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_quotes {
            if b == b'"' {
                if bytes.get(i + 1) == Some(&b'"') {
                    i += 1;
                } else {
                    in_quotes = false;
                    match bytes.get(i + 1) {
                        None | Some(b',') | Some(b'\n') | Some(b'\r') => {}
                        Some(_) => {
                            return Err(ImportError::malformed(
                                format,
                                format!("line {line}"),
                                "bad CSV quoting: text after a closing quote \
                                 (a quote inside a field must be doubled)",
                            ))
                        }
                    }
                }
            } else if b == b'\n' {
                line += 1;
            }
        } else {
            match b {
                b'"' if field_start => {
                    in_quotes = true;
                    open_line = line;
                }
                b'"' => {
                    return Err(ImportError::malformed(
                        format,
                        format!("line {line}"),
                        "bad CSV quoting: a quote inside an unquoted field",
                    ))
                }
                b'\n' => line += 1,
                _ => {}
            }
            field_start = b == b',' || b == b'\n' || b == b'\r';
            if b == b'"' {
                field_start = false;
            }
        }
        i += 1;
    }
    if in_quotes {
        return Err(ImportError::malformed(
            format,
            format!("line {open_line}"),
            "bad CSV quoting: a quoted field is never closed (truncated file?)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod accounting_tests;
#[cfg(test)]
mod fixtures_tests;

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    pub fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../tests/fixtures/import/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// An item from literal parts, for exact comparisons.
    pub fn item(
        item_type: &str,
        name: &str,
        folder: Option<&str>,
        fields: &[(&str, &str)],
        urls: &[&str],
    ) -> ImportedItem {
        ImportedItem {
            item_type: item_type.into(),
            name: name.into(),
            folder: folder.map(Into::into),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            urls: urls.iter().map(|u| u.to_string()).collect(),
            times: ItemTimes::default(),
        }
    }

    /// A record not imported at all.
    pub fn skipped(record: &str, reason: &str) -> Skipped {
        Skipped {
            field: None,
            record: record.into(),
            reason: reason.into(),
        }
    }

    /// A field left out of an imported item.
    pub fn left_out(record: &str, field: &str, reason: &str) -> Skipped {
        Skipped {
            record: record.into(),
            field: Some(field.into()),
            reason: reason.into(),
        }
    }

    /// The canonical form of a TOTP input.
    pub fn uri(totp: &str) -> String {
        TotpConfig::parse(totp).unwrap().to_uri()
    }

    /// Compares item by item, so a failure shows the first differing one.
    pub fn assert_items(got: &[ImportedItem], want: &[ImportedItem]) {
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(g, w, "item {i}");
        }
        assert_eq!(got.len(), want.len(), "item count");
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_round_trip() {
        for f in Format::ALL {
            assert_eq!(Format::parse_name(f.name()), Some(f));
            assert_eq!(Format::parse_name(&f.name().to_uppercase()), Some(f));
        }
        assert_eq!(Format::parse_name("auto"), None);
        assert_eq!(Format::parse_name("csv"), None);
    }

    #[test]
    fn detect_every_fixture() {
        let cases = [
            ("bitwarden.json", Format::BitwardenJson),
            ("bitwarden.csv", Format::BitwardenCsv),
            ("1password.1pux", Format::OnePassword1pux),
            ("1password.csv", Format::OnePasswordCsv),
            ("keepass.xml", Format::KeepassXml),
            ("keepassxc.csv", Format::KeepassxcCsv),
            ("keepass.kdbx", Format::Kdbx),
            ("lastpass.csv", Format::LastpassCsv),
            ("chrome.csv", Format::ChromeCsv),
            ("firefox.csv", Format::FirefoxCsv),
            ("otpauth.txt", Format::Otpauth),
            ("otpauth-migration.txt", Format::OtpauthMigration),
        ];
        for (file, format) in cases {
            assert_eq!(detect(&fixture(file)), Some(format), "{file}");
        }
        assert_eq!(detect(b""), None);
        assert_eq!(detect(b"hello world\n"), None);
        assert_eq!(detect(b"\xff\xfe\x00garbage"), None);
        assert_eq!(detect(b"PK\x03\x04truncated"), None);
        assert_eq!(detect(b"{\"foo\": 1}"), None);
        assert_eq!(detect(b"<html></html>"), None);
    }

    #[test]
    fn every_fixture_parses_with_its_format_only_where_meant() {
        // Each fixture parses with its own format.
        for (file, format) in [
            ("bitwarden.json", Format::BitwardenJson),
            ("bitwarden.csv", Format::BitwardenCsv),
            ("1password.1pux", Format::OnePassword1pux),
            ("1password.csv", Format::OnePasswordCsv),
            ("keepass.xml", Format::KeepassXml),
            ("keepassxc.csv", Format::KeepassxcCsv),
            ("lastpass.csv", Format::LastpassCsv),
            ("chrome.csv", Format::ChromeCsv),
            ("firefox.csv", Format::FirefoxCsv),
            ("otpauth.txt", Format::Otpauth),
            ("otpauth-migration.txt", Format::OtpauthMigration),
        ] {
            let report = parse(format, &fixture(file), None).unwrap();
            assert!(!report.items.is_empty(), "{file}");
            for item in &report.items {
                assert!(!item.name.is_empty(), "{file}");
                assert!(
                    item.folder.as_deref().is_none_or(|f| !f.contains('/')),
                    "{file}"
                );
                assert!(item.fields.values().all(|v| !v.is_empty()), "{file}");
            }
        }
        // A CSV read with another CSV format's parser is refused by its header.
        let err = parse(Format::ChromeCsv, &fixture("firefox.csv"), None).unwrap_err();
        assert!(
            err.to_string().contains("line 1: missing column(s) name"),
            "{err}"
        );
    }

    #[test]
    fn too_large_and_empty() {
        let big = vec![b'a'; MAX_IMPORT_BYTES + 1];
        for f in Format::ALL {
            assert!(matches!(
                parse(f, &big, Some("x")),
                Err(ImportError::TooLarge { .. })
            ));
            assert!(matches!(parse(f, b"", Some("x")), Err(ImportError::Empty)));
        }
    }

    #[test]
    fn fifty_megabytes_of_garbage_fail_fast() {
        // xorshift: deterministic pseudo-random bytes.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let garbage: Vec<u8> = (0..50 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert_eq!(detect(&garbage), None);
        for f in Format::ALL {
            let start = std::time::Instant::now();
            let err = parse(f, &garbage, Some("password")).unwrap_err();
            let msg = err.to_string();
            assert!(!msg.is_empty());
            assert!(msg.len() < 300, "{f}: {msg}");
            assert!(
                start.elapsed() < std::time::Duration::from_secs(5),
                "{f} took {:?}",
                start.elapsed()
            );
        }
        // Garbage that is valid ASCII text: still an error, not an import.
        let text: Vec<u8> = garbage.iter().map(|b| b'!' + (b % 90)).collect();
        for f in Format::ALL {
            let r = parse(f, &text, Some("password"));
            assert!(r.is_err(), "{f} accepted garbage");
        }
    }

    #[test]
    fn csv_quoting_is_strict() {
        let f = Format::ChromeCsv;
        assert!(check_csv_quoting(f, "a,\"b\"\"c\",d\n\"x\ny\",z\r\n").is_ok());
        let e = check_csv_quoting(f, "a,b\nc,\"d\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "chrome-csv: line 2: bad CSV quoting: a quoted field is never closed (truncated file?)"
        );
        let e = check_csv_quoting(f, "a,b\nc,d\"e\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 2: bad CSV quoting: a quote inside an unquoted field"),
            "{e}"
        );
        let e = check_csv_quoting(f, "a,b\n\"c\"x,d\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 2: bad CSV quoting: text after a closing quote"),
            "{e}"
        );
    }

    #[test]
    fn helpers() {
        assert_eq!(
            url_host("https://www.example.com:8443/x?y"),
            Some("www.example.com".into())
        );
        assert_eq!(url_host("user@host.org"), Some("host.org".into()));
        assert_eq!(url_host("http://[::1]:80/"), Some("::1".into()));
        assert_eq!(url_host(""), None);
        assert_eq!(
            folder_from_parts(["", " Work ", "a/b"]),
            Some("Work > a-b".into())
        );
        assert_eq!(folder_from_parts(["  "]), None);
        assert_eq!(expiry("1", "2027"), Some("01/27".into()));
        assert_eq!(expiry("June", "2027"), Some("06/27".into()));
        assert_eq!(expiry("13", "27"), None);
        assert_eq!(expiry("1", "7"), None);
        assert_eq!(
            redact_quoted("invalid type: string \"hunter2\", expected u8"),
            "invalid type: string \"…\", expected u8"
        );
    }

    #[test]
    fn fingerprint_is_stable_and_discriminating() {
        let a = item(
            "login",
            "A",
            Some("F"),
            &[("username", "u"), ("password", "p")],
            &["https://a"],
        );
        assert_eq!(fingerprint(&a), fingerprint(&a.clone()));
        let mut b = a.clone();
        b.fields.insert("notes".into(), "changed notes".into());
        assert_eq!(fingerprint(&a), fingerprint(&b), "notes are not part of it");
        let mut c = a.clone();
        c.fields.insert("password".into(), "q".into());
        assert_ne!(fingerprint(&a), fingerprint(&c));
        let mut d = a.clone();
        d.folder = None;
        assert_ne!(fingerprint(&a), fingerprint(&d));
        // Length prefixes: moving a character between parts changes it.
        let e = item("login", "AB", Some("F"), &[("username", "")], &[]);
        let g = item("login", "A", Some("F"), &[("username", "B")], &[]);
        assert_ne!(fingerprint(&e), fingerprint(&g));
        // Re-importing a fixture gives the same fingerprints.
        let one = parse(Format::BitwardenJson, &fixture("bitwarden.json"), None).unwrap();
        let two = parse(Format::BitwardenJson, &fixture("bitwarden.json"), None).unwrap();
        let f1: Vec<_> = one.items.iter().map(fingerprint).collect();
        let f2: Vec<_> = two.items.iter().map(fingerprint).collect();
        assert_eq!(f1, f2);
        let unique: std::collections::BTreeSet<_> = f1.iter().collect();
        assert_eq!(unique.len(), f1.len());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn parse_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            for f in Format::ALL {
                let _ = parse(f, &bytes, Some("pw"));
            }
            let _ = detect(&bytes);
            // Past the KDBX signature, into the header parsing.
            let mut kdbx = vec![0x03, 0xD9, 0xA2, 0x9A, 0x67, 0xFB, 0x4B, 0xB5];
            kdbx.extend_from_slice(&bytes);
            let _ = parse(Format::Kdbx, &kdbx, Some("pw"));
        }

        /// Damaged fixtures (cut, a byte changed, a byte inserted): never a
        /// panic, and neither an error nor a skip reason shows a secret.
        #[test]
        fn damaged_fixtures_never_panic_nor_leak(
            which in 0usize..11,
            cut in any::<proptest::sample::Index>(),
            at in any::<proptest::sample::Index>(),
            byte in any::<u8>(),
            mode in 0u8..3,
        ) {
            const FILES: [(&str, Format); 11] = [
                ("bitwarden.json", Format::BitwardenJson),
                ("bitwarden.csv", Format::BitwardenCsv),
                ("1password.1pux", Format::OnePassword1pux),
                ("1password.csv", Format::OnePasswordCsv),
                ("keepass.xml", Format::KeepassXml),
                ("keepassxc.csv", Format::KeepassxcCsv),
                ("lastpass.csv", Format::LastpassCsv),
                ("chrome.csv", Format::ChromeCsv),
                ("firefox.csv", Format::FirefoxCsv),
                ("otpauth.txt", Format::Otpauth),
                ("otpauth-migration.txt", Format::OtpauthMigration),
            ];
            const SECRETS: [&str; 6] =
                ["p@ss", "4711", "s7eam", "2024", "JBSWY3DP", "GEZDGNBV"];
            let (file, format) = FILES[which];
            let mut bytes = fixture(file);
            match mode {
                0 => bytes.truncate(cut.index(bytes.len())),
                1 => {
                    let i = at.index(bytes.len());
                    bytes[i] = byte;
                }
                _ => bytes.insert(at.index(bytes.len()), byte),
            }
            let _ = detect(&bytes);
            match parse(format, &bytes, None) {
                Err(e) => {
                    let msg = e.to_string();
                    for secret in SECRETS {
                        prop_assert!(!msg.contains(secret), "{}: {}", file, msg);
                    }
                }
                Ok(report) => {
                    for s in &report.skipped {
                        for secret in SECRETS {
                            prop_assert!(!s.reason.contains(secret), "{}: {:?}", file, s);
                        }
                    }
                }
            }
        }

        #[test]
        fn parse_never_panics_on_random_text(s in "[a-z0-9,\"\n\r:/?=&%<>{}\\[\\] #-]{0,400}") {
            for f in Format::ALL {
                if f != Format::Kdbx && f != Format::OnePassword1pux {
                    let _ = parse(f, s.as_bytes(), None);
                }
            }
            let _ = detect(s.as_bytes());
        }
    }
}

#[cfg(test)]
mod debug_tests {
    use super::test_support::item;

    #[test]
    fn an_imported_item_debug_never_shows_a_field_value() {
        let it = item(
            "login",
            "GitHub",
            Some("Work"),
            &[("username", "ada"), ("password", "hunter2-secret")],
            &["https://github.com"],
        );
        let shown = format!("{it:?} {:?}", vec![it.clone()]);
        assert!(!shown.contains("hunter2-secret"), "{shown}");
        assert!(!shown.contains("ada\""), "{shown}");
        assert!(
            shown.contains("password") && shown.contains("GitHub"),
            "{shown}"
        );
    }
}
