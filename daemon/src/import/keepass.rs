//! KeePass: the KeePass 2 / KeePassXC XML export, KeePassXC's CSV export and
//! KDBX databases (through the `keepass` crate).
//!
//! XML and KDBX share one mapping ([`entry_item`]):
//! - groups → folders: the root group is left out, nested groups are joined
//!   with `" > "`; entries in the recycle bin (`Meta/RecycleBinUUID`) and in
//!   `History` are not imported;
//! - strings `Title`, `UserName`, `Password`, `URL`, `Notes` are the item's
//!   name and fields; `KP2A_URL`, `KP2A_URL_1`, ... are more URLs;
//! - TOTP, first found of: `otp` (KeePassXC: an otpauth URI; KeeOtp:
//!   `key=BASE32&size=6&step=30`; or a bare secret), KeePass 2.47+
//!   `TimeOtp-Secret-Base32` / `-Hex` / `-Base64` / `TimeOtp-Secret` with
//!   `TimeOtp-Length`, `TimeOtp-Period`, `TimeOtp-Algorithm`, and the older
//!   `TOTP Seed` + `TOTP Settings` (`30;6`, `30;S` for Steam);
//! - every other string is a custom field: a `key: value` line in the
//!   notes, in key order.
//!
//! KeePassXC CSV (`"Group","Title","Username","Password","URL","Notes",
//! "TOTP","Icon","Last Modified","Created"`; `TOTP` optional for older
//! versions): `Group` is the full path with `/` between groups, starting
//! with the root group, which is left out; `Recycle Bin` entries are skipped.

use std::collections::{BTreeMap, BTreeSet};

use coffer_crdt::schema::CustomKind;
use quick_xml::events::Event;
use quick_xml::Reader;

use super::{
    folder_from_parts, line_of, read_csv, Format, ImportError, ImportReport, ItemBuilder, Skipped,
};

/// One KeePass entry, as read from XML or KDBX.
#[derive(Default)]
struct KpEntry {
    record: String,
    groups: Vec<String>,
    strings: BTreeMap<String, String>,
    /// Keys of the strings KeePass keeps protected (in memory and in the
    /// file): hidden custom fields.
    protected: BTreeSet<String>,
    /// Names of attached files (not imported: a warning each).
    attachments: Vec<String>,
    tags: Vec<String>,
    /// When the entry expires (Unix seconds), if it does.
    expires: Option<i64>,
    /// Earlier versions' passwords and their times (Unix seconds), oldest
    /// first.
    history: Vec<(Option<i64>, String)>,
}

/// Maps one entry (see the module doc).
fn entry_item(mut e: KpEntry, report: &mut ImportReport) {
    let mut take = |k: &str| e.strings.remove(k).unwrap_or_default();
    let title = take("Title");
    let username = take("UserName");
    let password = take("Password");
    let url = take("URL");
    let notes = take("Notes");
    let mut b = ItemBuilder::new("login", e.record.clone());
    b.name(&title);
    b.folder(folder_from_parts(e.groups.iter().map(String::as_str)));
    b.set("username", &username);
    b.set("password", &password);
    b.url(&url);
    b.notes(&notes);
    let extra_urls: Vec<String> = e
        .strings
        .keys()
        .filter(|k| k.starts_with("KP2A_URL"))
        .cloned()
        .collect();
    for k in extra_urls {
        let u = e.strings.remove(&k).unwrap_or_default();
        b.url(&u);
    }
    if let Some(totp) = totp_of(&mut e.strings) {
        b.totp(&totp);
    }
    for (k, v) in &e.strings {
        let kind = if e.protected.contains(k) {
            CustomKind::Hidden
        } else {
            CustomKind::Text
        };
        b.custom(kind, k, v);
    }
    if !e.tags.is_empty() {
        b.custom(CustomKind::Text, "tags", &e.tags.join(", "));
    }
    if let Some(date) = e.expires.and_then(super::date_of_unix) {
        b.custom(CustomKind::Date, "expires", &date);
    }
    // Each earlier password once, newest kept last.
    let mut seen: Vec<&str> = vec![password.as_str()];
    for (when, old) in e.history.iter().rev() {
        if !old.is_empty() && !seen.contains(&old.as_str()) {
            seen.push(old);
            b.history(*when, old);
        }
    }
    for name in &e.attachments {
        b.leave_out(
            format!("attachment '{name}'"),
            "attachments are not supported",
        );
    }
    b.finish(report);
}

/// Finds (and removes) the entry's TOTP strings, as one value for
/// `TotpConfig::parse`.
fn totp_of(strings: &mut BTreeMap<String, String>) -> Option<String> {
    if let Some(otp) = strings.remove("otp").filter(|s| !s.trim().is_empty()) {
        let t = otp.trim();
        if t.to_ascii_lowercase().starts_with("otpauth://") || !t.contains("key=") {
            return Some(otp);
        }
        // KeeOtp: key=BASE32&size=6&step=30&otpHashMode=Sha256
        let mut uri = String::from("otpauth://totp/?");
        for pair in t.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let param = match k {
                "key" => "secret",
                "size" => "digits",
                "step" => "period",
                "otpHashMode" => "algorithm",
                _ => continue,
            };
            uri.push_str(&format!("{param}={v}&"));
        }
        return Some(uri.trim_end_matches('&').to_string());
    }
    let secret = if let Some(s) = strings.remove("TimeOtp-Secret-Base32") {
        Some(s)
    } else if let Some(s) = strings.remove("TimeOtp-Secret-Hex") {
        let hex: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        Some(
            hex::decode(hex)
                .map(|b| data_encoding::BASE32_NOPAD.encode(&b))
                .unwrap_or_else(|_| "(invalid hex)".into()),
        )
    } else if let Some(s) = strings.remove("TimeOtp-Secret-Base64") {
        Some(
            data_encoding::BASE64
                .decode(s.trim().as_bytes())
                .map(|b| data_encoding::BASE32_NOPAD.encode(&b))
                .unwrap_or_else(|_| "(invalid base64)".into()),
        )
    } else {
        strings
            .remove("TimeOtp-Secret")
            .map(|s| data_encoding::BASE32_NOPAD.encode(s.as_bytes()))
    };
    if let Some(secret) = secret {
        let mut uri = format!("otpauth://totp/?secret={}", secret.replace(' ', ""));
        if let Some(n) = strings.remove("TimeOtp-Length") {
            uri.push_str(&format!("&digits={}", n.trim()));
        }
        if let Some(p) = strings.remove("TimeOtp-Period") {
            uri.push_str(&format!("&period={}", p.trim()));
        }
        if let Some(a) = strings.remove("TimeOtp-Algorithm") {
            let a = a.trim().to_ascii_uppercase();
            let a = a.strip_prefix("HMAC-").unwrap_or(&a);
            uri.push_str(&format!("&algorithm={a}"));
        }
        return Some(uri);
    }
    if let Some(seed) = strings.remove("TOTP Seed") {
        let settings = strings.remove("TOTP Settings").unwrap_or_default();
        let mut parts = settings.split(';').map(str::trim);
        let period = parts.next().filter(|p| !p.is_empty()).unwrap_or("30");
        let digits = parts.next().unwrap_or("6");
        let seed: String = seed.chars().filter(|c| !c.is_whitespace()).collect();
        return Some(if digits.eq_ignore_ascii_case("S") {
            format!("steam://{seed}")
        } else {
            format!("otpauth://totp/?secret={seed}&digits={digits}&period={period}")
        });
    }
    None
}

// ---------------------------------------------------------------------------
// XML

#[derive(Default)]
struct XmlGroup {
    name: String,
    uuid: String,
}

#[derive(Default)]
struct XmlEntry {
    line: usize,
    kp: KpEntry,
    key: String,
    value: String,
    value_protected: bool,
    expires: bool,
    expiry_time: Option<i64>,
    /// The `<History>` entry being read: its password and time.
    hist_key: String,
    hist_value: String,
    hist_password: String,
    hist_time: Option<i64>,
}

fn xml_error(text: &str, pos: u64, e: &quick_xml::Error) -> ImportError {
    use quick_xml::errors::IllFormedError as I;
    let message = match e {
        quick_xml::Error::Syntax(s) => format!("invalid XML: {s}"),
        quick_xml::Error::IllFormed(I::MismatchedEndTag { .. }) => {
            "invalid XML: an end tag does not match its start tag".into()
        }
        quick_xml::Error::IllFormed(I::UnmatchedEndTag(_)) => {
            "invalid XML: an end tag without a start tag".into()
        }
        quick_xml::Error::IllFormed(I::MissingEndTag(_)) => {
            "invalid XML: an element is not closed (truncated file?)".into()
        }
        quick_xml::Error::IllFormed(_) => "invalid XML: not well-formed".into(),
        quick_xml::Error::Escape(_) => "invalid XML: bad character or entity reference".into(),
        quick_xml::Error::InvalidAttr(_) => "invalid XML: bad attribute".into(),
        _ => "invalid XML".into(),
    };
    ImportError::malformed(
        Format::KeepassXml,
        format!("line {}", line_of(text, pos as usize)),
        message,
    )
}

fn qname(e: &quick_xml::events::BytesStart<'_>) -> String {
    let name = e.name();
    let name: &str = name.as_ref();
    name.to_string()
}

fn resolve_entity(name: &str) -> Option<char> {
    match name {
        "lt" => Some('<'),
        "gt" => Some('>'),
        "amp" => Some('&'),
        "apos" => Some('\''),
        "quot" => Some('"'),
        _ => {
            let num = name.strip_prefix('#')?;
            let code = match num.strip_prefix('x') {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => num.parse().ok()?,
            };
            char::from_u32(code).filter(|c| *c != '\0')
        }
    }
}

pub(super) fn parse_xml(text: &str) -> Result<ImportReport, ImportError> {
    const F: Format = Format::KeepassXml;
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<String> = Vec::new();
    let mut groups: Vec<XmlGroup> = Vec::new();
    let mut entry: Option<XmlEntry> = None;
    let mut buf = String::new();
    let mut recycle_bin: Option<String> = None;
    let mut recycle_enabled = true;
    let mut seen_keepass_file = false;
    let mut seen_root = false;
    let mut report = ImportReport::default();
    loop {
        let pos = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| xml_error(text, reader.error_position(), &e))?;
        let (name, is_empty) = match &event {
            Event::Start(e) => (qname(e), false),
            Event::Empty(e) => (qname(e), true),
            Event::Text(t) => {
                buf.push_str(&t.xml10_content());
                continue;
            }
            Event::CData(t) => {
                buf.push_str(&t.clone().into_inner());
                continue;
            }
            Event::GeneralRef(r) => {
                let ch = resolve_entity(r).ok_or_else(|| {
                    ImportError::malformed(
                        F,
                        format!("line {}", line_of(text, pos as usize)),
                        "invalid XML: unknown entity or character reference",
                    )
                })?;
                buf.push(ch);
                continue;
            }
            Event::End(_) => {
                let name = stack.pop().unwrap_or_default();
                end_element(
                    &name,
                    &stack,
                    std::mem::take(&mut buf),
                    &mut groups,
                    &mut entry,
                    &mut recycle_bin,
                    &mut recycle_enabled,
                    &mut report,
                );
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        // A start (or empty) element.
        if stack.is_empty() {
            if name != "KeePassFile" {
                return Err(ImportError::malformed(
                    F,
                    format!("line {}", line_of(text, pos as usize)),
                    "not a KeePass XML export (the root element is not <KeePassFile>)",
                ));
            }
            seen_keepass_file = true;
        }
        buf.clear();
        let parent = stack.last().map(String::as_str).unwrap_or("");
        let in_history = stack.iter().any(|s| s == "History");
        if name == "Value" && parent == "String" && !in_history {
            if let (Event::Start(e), Some(entry)) = (&event, entry.as_mut()) {
                // `Protected` in a KDBX's inner XML, `ProtectInMemory` in
                // KeePass' XML export.
                entry.value_protected = ["Protected", "ProtectInMemory"].iter().any(|name| {
                    e.try_get_attribute(name)
                        .ok()
                        .flatten()
                        .is_some_and(|a| a.value.eq_ignore_ascii_case("true"))
                });
            }
        }
        match (name.as_str(), parent) {
            ("Root", "KeePassFile") => seen_root = true,
            ("Group", "Root" | "Group") if !is_empty => groups.push(XmlGroup::default()),
            ("Entry", "Group") if !in_history && !is_empty => {
                entry = Some(XmlEntry {
                    line: line_of(text, pos as usize),
                    ..XmlEntry::default()
                });
            }
            _ => {}
        }
        if is_empty {
            end_element(
                &name,
                &stack,
                String::new(),
                &mut groups,
                &mut entry,
                &mut recycle_bin,
                &mut recycle_enabled,
                &mut report,
            );
        } else {
            stack.push(name);
        }
    }
    if !seen_keepass_file {
        return Err(ImportError::malformed(
            F,
            "line 1",
            "not a KeePass XML export (no <KeePassFile> element)",
        ));
    }
    if let Some(open) = stack.last() {
        return Err(ImportError::malformed(
            F,
            format!("line {}", line_of(text, text.len())),
            format!("invalid XML: <{open}> is not closed (truncated file?)"),
        ));
    }
    if !seen_root {
        return Err(ImportError::malformed(
            F,
            format!("line {}", line_of(text, text.len())),
            "no <Root> element: the export holds no groups or entries (truncated or not a full KeePass XML export?)",
        ));
    }
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
fn end_element(
    name: &str,
    stack: &[String],
    text: String,
    groups: &mut Vec<XmlGroup>,
    entry: &mut Option<XmlEntry>,
    recycle_bin: &mut Option<String>,
    recycle_enabled: &mut bool,
    report: &mut ImportReport,
) {
    let parent = stack.last().map(String::as_str).unwrap_or("");
    let in_history = stack.iter().any(|s| s == "History");
    match (name, parent) {
        ("RecycleBinUUID", "Meta") => *recycle_bin = Some(text.trim().to_string()),
        ("RecycleBinEnabled", "Meta") => {
            *recycle_enabled = !text.trim().eq_ignore_ascii_case("false")
        }
        ("Name", "Group") => {
            if let Some(g) = groups.last_mut() {
                g.name = text;
            }
        }
        ("UUID", "Group") => {
            if let Some(g) = groups.last_mut() {
                g.uuid = text.trim().to_string();
            }
        }
        ("Key", "String") if !in_history => {
            if let Some(e) = entry {
                e.key = text;
            }
        }
        ("Value", "String") if !in_history => {
            if let Some(e) = entry {
                e.value = text;
            }
        }
        ("Key", "String") => {
            if let Some(e) = entry {
                e.hist_key = text;
            }
        }
        ("Value", "String") => {
            if let Some(e) = entry {
                e.hist_value = text;
            }
        }
        ("String", "Entry") if in_history => {
            if let Some(e) = entry {
                if e.hist_key == "Password" {
                    e.hist_password = std::mem::take(&mut e.hist_value);
                }
            }
        }
        ("LastModificationTime", "Times") if in_history => {
            if let Some(e) = entry {
                e.hist_time = super::unix_of_rfc3339(&text);
            }
        }
        ("Entry", "History") => {
            if let Some(e) = entry {
                let password = std::mem::take(&mut e.hist_password);
                e.kp.history.push((e.hist_time.take(), password));
            }
        }
        ("Expires", "Times") if !in_history => {
            if let Some(e) = entry {
                e.expires = text.trim().eq_ignore_ascii_case("true");
            }
        }
        ("ExpiryTime", "Times") if !in_history => {
            if let Some(e) = entry {
                e.expiry_time = super::unix_of_rfc3339(&text);
            }
        }
        ("Tags", "Entry") if !in_history => {
            if let Some(e) = entry {
                e.kp.tags = split_tags(&text);
            }
        }
        ("Key", "Binary") if !in_history => {
            if let Some(e) = entry {
                e.kp.attachments.push(text.trim().to_string());
            }
        }
        ("String", "Entry") if !in_history => {
            if let Some(e) = entry {
                let key = std::mem::take(&mut e.key);
                let value = std::mem::take(&mut e.value);
                if std::mem::take(&mut e.value_protected) {
                    e.kp.protected.insert(key.clone());
                }
                e.kp.strings.insert(key, value);
            }
        }
        ("Entry", "Group") if !in_history => {
            if let Some(mut e) = entry.take() {
                let record = format!("line {}", e.line);
                let in_bin = *recycle_enabled
                    && recycle_bin.as_ref().is_some_and(|bin| {
                        !bin.is_empty() && groups.iter().any(|g| &g.uuid == bin)
                    });
                if in_bin {
                    let title = e.kp.strings.get("Title").cloned().unwrap_or_default();
                    report.skipped.push(Skipped {
                        field: None,
                        record: format!("{record} '{}'", title.trim()),
                        reason: "in the recycle bin".into(),
                    });
                    return;
                }
                e.kp.record = record;
                e.kp.groups = groups.iter().skip(1).map(|g| g.name.clone()).collect();
                if e.expires {
                    e.kp.expires = e.expiry_time;
                }
                entry_item(e.kp, report);
            }
        }
        ("Group", _) => {
            groups.pop();
        }
        _ => {}
    }
}

/// KeePass tags: separated by `;` or `,`.
fn split_tags(text: &str) -> Vec<String> {
    text.split([';', ','])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------
// KeePassXC CSV

pub(super) fn parse_csv(text: &str) -> Result<ImportReport, ImportError> {
    const F: Format = Format::KeepassxcCsv;
    let mut report = ImportReport::default();
    read_csv(
        F,
        text,
        &["title", "username", "password", "url", "notes"],
        |line, row| {
            let record = format!("line {line}");
            // KeePassX 0.4 and 2.0 wrote no Group column.
            let path: Vec<&str> = row.get("group").split('/').skip(1).collect();
            if path.first().is_some_and(|g| g.trim() == "Recycle Bin") {
                report.skipped.push(Skipped {
                    field: None,
                    record: format!("{record} '{}'", row.get("title").trim()),
                    reason: "in the recycle bin".into(),
                });
                return Ok(());
            }
            let mut b = ItemBuilder::new("login", record);
            b.name(row.get("title"));
            b.folder(folder_from_parts(path));
            b.set("username", row.get("username"));
            b.set("password", row.get("password"));
            b.url(row.get("url"));
            b.notes(row.get("notes"));
            b.totp(row.get("totp"));
            let tags = split_tags(row.get("tags"));
            if !tags.is_empty() {
                b.custom(CustomKind::Text, "tags", &tags.join(", "));
            }
            b.finish(&mut report);
            Ok(())
        },
    )?;
    Ok(report)
}

// ---------------------------------------------------------------------------
// KDBX

pub(super) fn parse_kdbx(
    bytes: &[u8],
    password: Option<&str>,
) -> Result<ImportReport, ImportError> {
    const F: Format = Format::Kdbx;
    if !bytes.starts_with(&[0x03, 0xD9, 0xA2, 0x9A]) {
        return Err(ImportError::malformed(
            F,
            "header",
            "not a KeePass database (no KDBX signature)",
        ));
    }
    // KeePass 1 (KDB): its AES-KDF rounds are a u32 at byte 120.
    if bytes.get(4..8) == Some(&[0x65, 0xFB, 0x4B, 0xB5]) {
        let rounds = bytes
            .get(120..124)
            .map(|r| u32::from_le_bytes([r[0], r[1], r[2], r[3]]))
            .unwrap_or(0);
        if u64::from(rounds) > MAX_AES_ROUNDS {
            return Err(ImportError::malformed(
                F,
                "header",
                format!(
                    "the key derivation settings are too costly to open here ({rounds} AES rounds)"
                ),
            ));
        }
    }
    check_kdf_cost(bytes)?;
    // KDBX 2.x (KeePass 2.00–2.19) is read as KDBX 3, as KeePass and
    // KeePassXC read it: the same outer header and inner format.
    let upgraded;
    let bytes = match (bytes.get(4..8), bytes.get(10..12)) {
        (Some([0x67, 0xFB, 0x4B, 0xB5]), Some([2, 0])) => {
            let mut copy = bytes.to_vec();
            copy[8..12].copy_from_slice(&[0, 0, 3, 0]);
            upgraded = copy;
            &upgraded[..]
        }
        (Some([0x66, 0xFB, 0x4B, 0xB5]), _) => {
            return Err(ImportError::malformed(
                F,
                "header",
                "a database of a KeePass 2 pre-release: open it in KeePass or KeePassXC \
                 and save it, then import that file",
            ))
        }
        _ => bytes,
    };
    // No password given: the database may have an empty one (KeePass and
    // KeePassXC allow it).
    let db = match password {
        Some(p) => open_kdbx(bytes, p)?,
        None => open_kdbx(bytes, "").map_err(|e| match e {
            ImportError::WrongPassword => ImportError::PasswordRequired,
            e => e,
        })?,
    };
    let bin = db.recycle_bin().map(|g| g.id());
    let mut report = ImportReport::default();
    let mut n = 0usize;
    walk(&db.root(), &mut Vec::new(), bin, &mut n, &mut report, true);
    Ok(report)
}

/// Opens a KDBX (or KeePass 1 KDB) database with a password.
fn open_kdbx(bytes: &[u8], password: &str) -> Result<::keepass::Database, ImportError> {
    const F: Format = Format::Kdbx;
    use ::keepass::db::DatabaseOpenError as E;
    use ::keepass::error::DatabaseKeyError as K;
    let key = ::keepass::DatabaseKey::new().with_password(password);
    // The keepass crate (0.17) panics on some malformed headers (a slice
    // index in its KDBX 4 outer-header parser, found by daemon/fuzz): a
    // damaged file must be an error, never a crash.
    let parsed = std::panic::catch_unwind(|| ::keepass::Database::parse(bytes, key))
        .map_err(|_| ImportError::malformed(F, "header", "damaged database header"))?;
    parsed.map_err(|e| match e {
        E::Key(K::IncorrectKey) => ImportError::WrongPassword,
        E::Key(_) => ImportError::WrongPassword,
        E::UnsupportedVersion => {
            ImportError::malformed(F, "header", "unsupported KeePass database version")
        }
        E::UnexpectedEof | E::Io(_) => {
            ImportError::malformed(F, "file", "the database ends too early (truncated file?)")
        }
        E::VersionParse(_) => ImportError::malformed(F, "header", "invalid KDBX header"),
        // KDBX 3 has no key check before decryption: a wrong key shows as
        // bad padding.
        E::Cryptography(_) => ImportError::WrongPassword,
        E::Format(_) => ImportError::malformed(F, "file", "damaged database (invalid content)"),
        _ => ImportError::malformed(F, "file", "cannot be opened"),
    })
}

/// Most memory a KDBX 4 file's Argon2 may ask for.
const MAX_ARGON2_MEMORY: u64 = 2 << 30;
/// Most Argon2 work (memory in bytes × iterations): 1 GiB × 64 passes.
const MAX_ARGON2_WORK: u128 = (1u128 << 30) * 64;
/// Most AES-KDF rounds.
const MAX_AES_ROUNDS: u64 = 200_000_000;

/// Refuses, before any key derivation, a file whose KDF settings would take
/// more memory or time than an import should (a hostile file could ask for
/// terabytes). Reads the outer header only; anything it does not understand
/// is left to the `keepass` crate to report.
fn check_kdf_cost(bytes: &[u8]) -> Result<(), ImportError> {
    let too_costly = |what: String| {
        ImportError::malformed(
            Format::Kdbx,
            "header",
            format!("the key derivation settings are too costly to open here ({what})"),
        )
    };
    let u16_at = |b: &[u8], i: usize| -> Option<u16> {
        Some(u16::from_le_bytes(
            b.get(i..i.checked_add(2)?)?.try_into().ok()?,
        ))
    };
    let u32_at = |b: &[u8], i: usize| -> Option<u32> {
        Some(u32::from_le_bytes(
            b.get(i..i.checked_add(4)?)?.try_into().ok()?,
        ))
    };
    let u64_of = |b: &[u8]| -> Option<u64> { Some(u64::from_le_bytes(b.try_into().ok()?)) };
    let Some(major) = u16_at(bytes, 10) else {
        return Ok(());
    };
    let mut pos = 12;
    loop {
        let Some(&id) = bytes.get(pos) else {
            return Ok(());
        };
        let (size, start) = if major >= 4 {
            match u32_at(bytes, pos + 1) {
                Some(n) => (n as usize, pos + 5),
                None => return Ok(()),
            }
        } else {
            match u16_at(bytes, pos + 1) {
                Some(n) => (n as usize, pos + 3),
                None => return Ok(()),
            }
        };
        let Some(data) = start
            .checked_add(size)
            .and_then(|end| bytes.get(start..end))
        else {
            return Ok(());
        };
        pos = start + size;
        match (id, major >= 4) {
            (0, _) => return Ok(()),
            // KDBX 3: TransformRounds.
            (6, false) => {
                if let Some(rounds) = u64_of(data) {
                    if rounds > MAX_AES_ROUNDS {
                        return Err(too_costly(format!(
                            "{rounds} AES-KDF rounds, more than {MAX_AES_ROUNDS}"
                        )));
                    }
                }
            }
            // KDBX 4: KdfParameters, a variant dictionary.
            (11, true) => {
                let (mut memory, mut iterations, mut rounds) = (0u64, 1u64, 0u64);
                let mut i = 2; // version
                while let Some(&kind) = data.get(i) {
                    if kind == 0 {
                        break;
                    }
                    let Some(key_len) = u32_at(data, i + 1).map(|n| n as usize) else {
                        break;
                    };
                    let key = data.get(i + 5..(i + 5).saturating_add(key_len));
                    let Some(val_len) =
                        u32_at(data, (i + 5).saturating_add(key_len)).map(|n| n as usize)
                    else {
                        break;
                    };
                    let value_start = (i + 9).saturating_add(key_len);
                    let value = data.get(value_start..value_start.saturating_add(val_len));
                    match (key, value.and_then(u64_of)) {
                        (Some(b"M"), Some(v)) => memory = v,
                        (Some(b"I"), Some(v)) => iterations = v,
                        (Some(b"R"), Some(v)) => rounds = v,
                        _ => {}
                    }
                    i = value_start.saturating_add(val_len);
                }
                if memory > MAX_ARGON2_MEMORY {
                    return Err(too_costly(format!(
                        "Argon2 memory {} MiB, more than {} MiB",
                        memory >> 20,
                        MAX_ARGON2_MEMORY >> 20
                    )));
                }
                if u128::from(memory) * u128::from(iterations) > MAX_ARGON2_WORK {
                    return Err(too_costly(format!(
                        "Argon2 {} MiB × {iterations} iterations",
                        memory >> 20
                    )));
                }
                if rounds > MAX_AES_ROUNDS {
                    return Err(too_costly(format!(
                        "{rounds} AES-KDF rounds, more than {MAX_AES_ROUNDS}"
                    )));
                }
            }
            _ => {}
        }
    }
}

fn walk(
    group: &::keepass::db::GroupRef<'_>,
    path: &mut Vec<String>,
    bin: Option<::keepass::db::GroupId>,
    n: &mut usize,
    report: &mut ImportReport,
    is_root: bool,
) {
    if !is_root {
        path.push(group.name.clone());
    }
    let in_bin = Some(group.id()) == bin;
    for entry in group.entries() {
        *n += 1;
        let record = format!("entry {n}");
        let strings: BTreeMap<String, String> = entry
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), v.get().clone()))
            .collect();
        let protected: BTreeSet<String> = entry
            .fields
            .iter()
            .filter(|(_, v)| v.is_protected())
            .map(|(k, _)| k.clone())
            .collect();
        let history: Vec<(Option<i64>, String)> = entry
            .history
            .as_ref()
            .map(|h| {
                h.get_entries()
                    .iter()
                    .map(|old| {
                        (
                            old.times.last_modification.map(|t| t.and_utc().timestamp()),
                            old.get_password().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        if in_bin {
            let title = strings.get("Title").cloned().unwrap_or_default();
            report.skipped.push(Skipped {
                field: None,
                record: format!("{record} '{}'", title.trim()),
                reason: "in the recycle bin".into(),
            });
            continue;
        }
        entry_item(
            KpEntry {
                record,
                groups: path.clone(),
                strings,
                protected,
                attachments: entry
                    .attachments_named()
                    .map(|(name, _)| name.to_string())
                    .collect(),
                tags: entry.tags.clone(),
                expires: (entry.times.expires == Some(true))
                    .then(|| entry.times.expiry.and_utc().timestamp()),
                history,
            },
            report,
        );
    }
    if !in_bin {
        for child in group.groups() {
            walk(&child, path, bin, n, report, false);
        }
    } else {
        // Whole subtrees of the recycle bin are skipped, counted as one.
        let count = count_entries(group) - group.entries().count();
        if count > 0 {
            report.skipped.push(Skipped {
                field: None,
                record: format!("{count} entries in recycle bin subgroups"),
                reason: "in the recycle bin".into(),
            });
        }
    }
    if !is_root {
        path.pop();
    }
}

fn count_entries(group: &::keepass::db::GroupRef<'_>) -> usize {
    group.entries().count() + group.groups().map(|g| count_entries(&g)).sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::*;

    /// Found by `daemon/fuzz` (import_parse): the keepass crate panics in
    /// its KDBX 4 outer-header parser on this file.
    #[test]
    fn kdbx_header_that_panics_the_parser_is_an_error() {
        let bytes = fixture("keepass-bad-header.kdbx");
        let err = parse(Format::Kdbx, &bytes, Some("coffer-test"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("kdbx: header:"), "{err}");
    }

    #[test]
    fn kdbx_costly_kdf_is_refused_before_deriving() {
        // KDBX 4: the Argon2 "M" (memory) entry of the KDF parameters.
        let mut bytes = fixture("keepass.kdbx");
        let key = b"\x05\x01\x00\x00\x00M\x08\x00\x00\x00";
        let at = bytes
            .windows(key.len())
            .position(|w| w == key)
            .expect("Argon2 M entry")
            + key.len();
        bytes[at..at + 8].copy_from_slice(&(64u64 << 30).to_le_bytes());
        let err = parse(Format::Kdbx, &bytes, Some("coffer-test"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "kdbx: header: the key derivation settings are too costly to open here \
             (Argon2 memory 65536 MiB, more than 2048 MiB)"
        );
        // KDBX 3.1: TransformRounds (header field 6, 8 bytes).
        let mut bytes = fixture("keepassxc-kdbx3.kdbx");
        let mut pos = 12;
        while bytes[pos] != 6 {
            let size = u16::from_le_bytes([bytes[pos + 1], bytes[pos + 2]]) as usize;
            pos += 3 + size;
        }
        bytes[pos + 3..pos + 11].copy_from_slice(&u64::MAX.to_le_bytes());
        let err = parse(Format::Kdbx, &bytes, Some("coffer-test"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("18446744073709551615 AES-KDF rounds"), "{err}");
    }

    /// `keepass.kdbx`: KDBX 4.1 written by the `keepass` crate (see
    /// `write_kdbx_fixture`), password `coffer-test`.
    #[test]
    fn kdbx4_fixture() {
        let bytes = fixture("keepass.kdbx");
        assert_eq!(&bytes[10..12], &[0x04, 0x00], "KDBX 4.x");
        // Items and report: `fixtures_tests.rs`.
        assert!(parse(Format::Kdbx, &bytes, Some("coffer-test")).is_ok());
    }

    /// `keepassxc-kdbx3.kdbx` is `keepass.xml` imported by KeePassXC 2.7
    /// (`keepassxc-cli import -p -t 100 keepass.xml keepassxc-kdbx3.kdbx`,
    /// password `coffer-test`): KDBX 3.1 from another implementation.
    #[test]
    fn kdbx3_fixture_from_keepassxc() {
        let bytes = fixture("keepassxc-kdbx3.kdbx");
        assert_eq!(&bytes[8..12], &[0x01, 0x00, 0x03, 0x00], "KDBX 3.1");
        assert_eq!(detect(&bytes), Some(Format::Kdbx));
        // Items and report: `fixtures_tests.rs`.
        assert!(parse(Format::Kdbx, &bytes, Some("coffer-test")).is_ok());
        let r = parse(Format::Kdbx, &bytes, Some("wrong password"));
        assert!(matches!(r, Err(ImportError::WrongPassword)), "{r:?}");
    }

    /// Issue 19: a database with an empty password (KeePass and KeePassXC
    /// allow one) opens with no password given, and with an empty one.
    #[test]
    fn kdbx_with_an_empty_password() {
        use ::keepass::db::Value;
        let mut db = ::keepass::Database::new();
        {
            let mut root = db.root_mut();
            root.name = "Root".into();
            let mut e = root.add_entry();
            e.fields
                .insert("Title".into(), Value::unprotected("Router"));
            e.fields
                .insert("Password".into(), Value::protected("r0uter"));
        }
        let mut bytes = Vec::new();
        db.save(&mut bytes, ::keepass::DatabaseKey::new().with_password(""))
            .unwrap();
        assert_eq!(detect(&bytes), Some(Format::Kdbx));
        let want = [item(
            "login",
            "Router",
            None,
            &[("password", "r0uter")],
            &[],
        )];
        for password in [None, Some("")] {
            let report = parse(Format::Kdbx, &bytes, password).unwrap();
            assert_items(&report.items, &want);
        }
        assert!(matches!(
            parse(Format::Kdbx, &bytes, Some("not empty")),
            Err(ImportError::WrongPassword)
        ));
    }

    /// Issue 19: KDBX 2.x (KeePass 2.00–2.19) is read as KDBX 3; a KeePass 2
    /// pre-release database is refused with what to do.
    #[test]
    fn kdbx2_is_read_and_prerelease_refused() {
        let bytes = fixture("keepass-kdbx2.kdbx");
        assert_eq!(&bytes[8..12], &[0x00, 0x00, 0x02, 0x00], "KDBX 2.0");
        assert_eq!(
            parse(Format::Kdbx, &bytes, Some("coffer-test"))
                .unwrap()
                .items
                .len(),
            5
        );
        let mut pre = bytes.clone();
        pre[4] = 0x66;
        assert_eq!(detect(&pre), Some(Format::Kdbx));
        let err = parse(Format::Kdbx, &pre, Some("coffer-test"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("pre-release"), "{err}");
    }

    /// Issue 19: an XML export without `<Root>` holds no entries at all: it
    /// is refused, not imported as nothing.
    #[test]
    fn xml_without_root_is_refused() {
        let bytes = fixture("keepass-no-root.xml");
        assert_eq!(detect(&bytes), Some(Format::KeepassXml));
        let err = parse(Format::KeepassXml, &bytes, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no <Root> element"), "{err}");
    }

    /// How `tests/fixtures/import/keepass.kdbx` is made (KDBX 4, by the
    /// `keepass` crate, with the content of `keepass.xml` in the same
    /// order): a database written now parses to the fixture's items (the
    /// bytes differ: fresh salts). `COFFER_WRITE_FIXTURES=1 cargo test -p
    /// coffer-daemon kdbx_fixture` writes the fixture again. (`keepassxc-cli`
    /// 2.7 only writes KDBX 3.1, which is the other fixture; it opens this
    /// one too: `keepassxc-cli ls -R keepass.kdbx`.)
    #[test]
    fn a_kdbx_written_now_parses_like_the_kdbx_fixture() {
        use ::keepass::db::Value;
        let mut db = ::keepass::Database::new();
        db.meta.database_name = Some("Coffer import fixture".into());
        let set = |e: &mut ::keepass::db::EntryMut<'_>, k: &str, v: &str, protect: bool| {
            let v = if protect {
                Value::protected(v)
            } else {
                Value::unprotected(v)
            };
            e.fields.insert(k.to_string(), v);
        };
        let bin_id = {
            let mut root = db.root_mut();
            root.name = "Passwords".into();
            {
                let mut e = root.add_entry();
                set(&mut e, "Title", "Steam", false);
                set(&mut e, "UserName", "gamer", false);
                set(&mut e, "Password", "s7eam", true);
                set(&mut e, "URL", "", false);
                set(&mut e, "Notes", "", false);
                set(&mut e, "TOTP Seed", "JBSWY3DPEHPK3PXP", true);
                set(&mut e, "TOTP Settings", "30;S", false);
            }
            {
                let mut e = root.add_entry();
                set(&mut e, "Title", "Bare secret", false);
                set(&mut e, "UserName", "bare", false);
                set(&mut e, "Password", "", true);
                set(&mut e, "otp", "JBSW Y3DP EHPK 3PXP", true);
                e.add_attachment(
                    "recovery-codes.txt",
                    Value::unprotected(b"recovery codes: 12345678".to_vec()),
                );
            }
            {
                let mut work = root.add_group();
                work.name = "Work".into();
                {
                    let mut e = work.add_entry();
                    set(&mut e, "Title", "Bücher 📚", false);
                    set(&mut e, "UserName", "leser", false);
                    set(&mut e, "Password", "Bücher2024", true);
                    set(&mut e, "URL", "https://buecher.example.de", false);
                    set(&mut e, "TimeOtp-Secret-Base32", "GEZDGNBVGY3TQOJQ", true);
                    set(&mut e, "TimeOtp-Length", "8", false);
                    set(&mut e, "TimeOtp-Period", "60", false);
                    set(&mut e, "TimeOtp-Algorithm", "HMAC-SHA-256", false);
                }
                let mut dev = work.add_group();
                dev.name = "Dev".into();
                let mut e = dev.add_entry();
                set(&mut e, "Title", "GitHub", false);
                set(&mut e, "UserName", "octo@example.com", false);
                set(&mut e, "Password", "gh<p@ss>&\"q\"", true);
                set(&mut e, "URL", "https://github.com/login", false);
                set(&mut e, "KP2A_URL", "https://gist.github.com", false);
                set(&mut e, "Notes", "Line one\nLine two", false);
                let otp = "otpauth://totp/GitHub:octo?secret=JBSWY3DPEHPK3PXP&issuer=GitHub";
                set(&mut e, "otp", otp, true);
                set(&mut e, "PIN", "4711", true);
                set(&mut e, "Recovery", "see safe", false);
            }
            {
                let mut privat = root.add_group();
                privat.name = "Privat".into();
                {
                    let mut e = privat.add_entry();
                    set(&mut e, "Title", "", false);
                    set(&mut e, "Password", "", true);
                }
                let mut books = privat.add_group();
                books.name = "Bücher".into();
                let mut e = books.add_entry();
                set(&mut e, "Title", "日本語のメモ", false);
                set(&mut e, "Notes", "一行目\n二行目 🎉", false);
            }
            let mut bin = root.add_group();
            bin.name = "Recycle Bin".into();
            let id = bin.as_ref().id();
            let mut e = bin.add_entry();
            set(&mut e, "Title", "Deleted login", false);
            set(&mut e, "Password", "gone", true);
            id
        };
        db.meta.recyclebin_enabled = Some(true);
        db.meta.recyclebin_uuid = Some(bin_id.uuid());
        let mut written = Vec::new();
        db.save(
            &mut written,
            ::keepass::DatabaseKey::new().with_password("coffer-test"),
        )
        .unwrap();
        if std::env::var_os("COFFER_WRITE_FIXTURES").is_some() {
            let path = format!(
                "{}/../tests/fixtures/import/keepass.kdbx",
                env!("CARGO_MANIFEST_DIR")
            );
            std::fs::write(&path, &written).unwrap();
        }
        let now = parse(Format::Kdbx, &written, Some("coffer-test")).unwrap();
        let fixture = parse(Format::Kdbx, &fixture("keepass.kdbx"), Some("coffer-test")).unwrap();
        assert!(!now.items.is_empty());
        assert!(now == fixture, "the fixture is not what this test writes");
    }

    #[test]
    fn kdbx_errors() {
        let bytes = fixture("keepass.kdbx");
        let r = parse(Format::Kdbx, &bytes, Some("wrong password"));
        assert!(matches!(r, Err(ImportError::WrongPassword)), "{r:?}");
        assert!(matches!(
            parse(Format::Kdbx, &bytes, None),
            Err(ImportError::PasswordRequired)
        ));
        let err = parse(Format::Kdbx, &bytes[..bytes.len() / 2], Some("coffer-test"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("kdbx: "), "{err}");
        let err = parse(Format::Kdbx, b"garbage", Some("x"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "kdbx: header: not a KeePass database (no KDBX signature)"
        );
        // Damaged in the middle of the encrypted payload.
        let mut damaged = bytes.clone();
        let mid = damaged.len() * 3 / 4;
        damaged[mid] ^= 0xff;
        assert!(parse(Format::Kdbx, &damaged, Some("coffer-test")).is_err());
    }

    #[test]
    fn xml_malformed() {
        let f = Format::KeepassXml;
        let good = fixture("keepass.xml");
        let err = parse(f, &good[..good.len() / 2], None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "keepass-xml: line 80: invalid XML: <Key> is not closed (truncated file?)"
        );
        let cut = String::from_utf8(good.clone())
            .unwrap()
            .find("</Root>")
            .unwrap();
        let err = parse(f, &good[..cut], None).unwrap_err().to_string();
        assert_eq!(
            err,
            "keepass-xml: line 147: invalid XML: <Root> is not closed (truncated file?)"
        );
        let err = parse(
            f,
            b"<KeePassFile><Root><Group><Name>x</Nam></Group></Root></KeePassFile>",
            None,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "keepass-xml: line 1: invalid XML: an end tag does not match its start tag"
        );
        let err = parse(f, b"<?xml version=\"1.0\"?>\n<html><body/></html>", None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "keepass-xml: line 2: not a KeePass XML export (the root element is not <KeePassFile>)"
        );
        let err = parse(f, b"<KeePassFile><Root><Group><Entry><String><Key>Password</Key><Value>a&secret;b</Value></String></Entry></Group></Root></KeePassFile>", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown entity"), "{err}");
        assert!(!err.contains("secret"), "{err}");
        let err = parse(f, b"just text", None).unwrap_err().to_string();
        assert!(err.contains("no <KeePassFile> element"), "{err}");
    }

    #[test]
    fn keeotp_and_timeotp_forms() {
        let mut s = std::collections::BTreeMap::new();
        s.insert(
            "otp".to_string(),
            "key=JBSWY3DPEHPK3PXP&size=8&step=60&otpHashMode=Sha256".to_string(),
        );
        let v = super::totp_of(&mut s).unwrap();
        assert_eq!(
            uri(&v),
            uri("otpauth://totp/?secret=JBSWY3DPEHPK3PXP&digits=8&period=60&algorithm=SHA256")
        );
        let mut s = std::collections::BTreeMap::new();
        s.insert(
            "TimeOtp-Secret-Hex".to_string(),
            "48656c6c6f21deadbeef".to_string(),
        );
        let v = super::totp_of(&mut s).unwrap();
        assert_eq!(uri(&v), uri("JBSWY3DPEHPK3PXP"));
        assert!(s.is_empty());
    }
}
