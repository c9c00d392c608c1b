//! 1Password: the 1PUX export (a zip holding `export.data`) and the
//! 1Password 8 CSV export.
//!
//! 1PUX (`export.data` = `{"accounts": [{"vaults": [{"attrs": {"name"},
//! "items": [...]}]}]}`): the vault's name is the folder. Items by
//! `categoryUuid`: `001` login (`details.loginFields` with `designation`
//! `username`/`password`, `overview.url` and `overview.urls[].url`), `005`
//! password (`details.password`), `003` secure note, `002` credit card
//! (section fields `cardholder`, `ccnum`, `cvv`, `expiry` as `monthYear`
//! `YYYYMM`). Every other category (identity, server, database, wireless
//! router, email account, API credential, software licence, bank account,
//! membership, passport, SSN, driver licence, document, SSH key, ...) is a
//! login when its fields give a username, password (`password`,
//! `credential`, `pop_password`, `wireless_password`) or URL, else a note,
//! with a `1Password category` field. In every item `details.notesPlain`
//! are the notes, the first section field holding a `totp` is the TOTP, and
//! every other section field with a value is a custom field of its kind
//! (`concealed` hidden, `date` from Unix seconds to `YYYY-MM-DD`,
//! `monthYear` to `YYYY-MM`, `email`, `phone`, `url`, address parts
//! joined), titled by its title, else 1Password's name for the well-known
//! id, else its section's title, else its kind — never an internal id.
//! Login fields without a designation are custom fields too (checkboxes
//! `true`/`false`: an unchecked box is kept). `passwordHistory` becomes
//! earlier passwords, tags a `tags` field, `state: archived` the
//! `archived` mark (trashed items are skipped). Attachments, documents,
//! passkeys and references to other items are listed as left out.
//!
//! CSV: see [`parse_csv`] (1Password 8, and 1Password 7 for Mac and for
//! Windows).

use std::io::Read;

use serde::Deserialize;
use serde_json::Value;

use coffer_crdt::schema::CustomKind;

use super::{
    date_of_unix, folder_from_parts, json_error, null_default, vec_skip_null, Format, ImportError,
    ImportReport, ItemBuilder, Skipped, MAX_IMPORT_BYTES,
};

const F: Format = Format::OnePassword1pux;

/// Whether a zip archive holds `export.data` (for [`super::detect`]).
pub(super) fn is_1pux(bytes: &[u8]) -> bool {
    zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map(|mut z| z.by_name("export.data").is_ok())
        .unwrap_or(false)
}

#[derive(Deserialize)]
struct ExportData {
    accounts: Vec<Account>,
}

#[derive(Deserialize)]
struct Account {
    #[serde(default)]
    vaults: Vec<Vault>,
}

#[derive(Deserialize)]
struct Vault {
    #[serde(default)]
    attrs: VaultAttrs,
    #[serde(default)]
    items: Vec<Value>,
}

#[derive(Deserialize, Default)]
struct VaultAttrs {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    #[serde(default, deserialize_with = "null_default")]
    state: String,
    category_uuid: String,
    #[serde(default, deserialize_with = "null_default")]
    updated_at: i64,
    #[serde(default, deserialize_with = "null_default")]
    overview: Overview,
    #[serde(default, deserialize_with = "null_default")]
    details: Details,
}

#[derive(Deserialize, Default)]
struct Overview {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default, deserialize_with = "vec_skip_null")]
    urls: Vec<OverviewUrl>,
    #[serde(default, deserialize_with = "vec_skip_null")]
    tags: Vec<String>,
}

#[derive(Deserialize, Default)]
struct OverviewUrl {
    #[serde(default, deserialize_with = "null_default")]
    url: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Details {
    #[serde(default, deserialize_with = "vec_skip_null")]
    login_fields: Vec<LoginField>,
    #[serde(default)]
    notes_plain: Option<String>,
    #[serde(default, deserialize_with = "vec_skip_null")]
    sections: Vec<Section>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default, deserialize_with = "vec_skip_null")]
    password_history: Vec<PasswordHistory>,
    #[serde(default)]
    document_attributes: Option<Value>,
    /// Anything else 1Password may write (passkeys, ...): reported.
    #[serde(flatten)]
    other: serde_json::Map<String, Value>,
}

#[derive(Deserialize, Default)]
struct LoginField {
    #[serde(default, deserialize_with = "null_default")]
    value: String,
    #[serde(default, deserialize_with = "null_default")]
    name: String,
    #[serde(default, rename = "fieldType", deserialize_with = "null_default")]
    field_type: String,
    #[serde(default)]
    designation: Option<String>,
}

#[derive(Deserialize, Default)]
struct Section {
    #[serde(default, deserialize_with = "null_default")]
    title: String,
    #[serde(default, deserialize_with = "vec_skip_null")]
    fields: Vec<SectionField>,
}

#[derive(Deserialize, Default)]
struct SectionField {
    #[serde(default, deserialize_with = "null_default")]
    title: String,
    #[serde(default, deserialize_with = "null_default")]
    id: String,
    #[serde(default, deserialize_with = "null_default")]
    value: serde_json::Map<String, Value>,
}

#[derive(Deserialize, Default)]
struct PasswordHistory {
    #[serde(default, deserialize_with = "null_default")]
    value: String,
    #[serde(default)]
    time: Option<i64>,
}

/// The category names of `categoryUuid`s.
fn category_name(uuid: &str) -> &'static str {
    match uuid {
        "001" => "login",
        "002" => "credit card",
        "003" => "secure note",
        "004" => "identity",
        "005" => "password",
        "006" => "document",
        "100" => "software license",
        "101" => "bank account",
        "102" => "database",
        "103" => "driver license",
        "104" => "outdoor license",
        "105" => "membership",
        "106" => "passport",
        "107" => "reward program",
        "108" => "social security number",
        "109" => "wireless router",
        "110" => "server",
        "111" => "email account",
        "112" => "API credential",
        "113" => "medical record",
        "114" => "SSH key",
        "115" => "crypto wallet",
        _ => "unknown category",
    }
}

/// Section field ids of the built-in categories that are the item's
/// username or password, and the title of those 1Password shows without
/// writing one (`fields without a title`).
fn known_field(id: &str) -> (Option<&'static str>, Option<&'static str>) {
    match id {
        "username" | "pop_username" => (Some("username"), Some("username")),
        "password" | "credential" | "pop_password" | "wireless_password" => {
            (Some("password"), Some("password"))
        }
        "url" => (None, Some("URL")),
        "hostname" | "server" | "pop_server" => (None, Some("server")),
        "port" | "pop_port" => (None, Some("port")),
        "database" => (None, Some("database")),
        "reg_code" => (None, Some("license key")),
        "reg_name" => (None, Some("licensed to")),
        "accountNo" => (None, Some("account number")),
        "routingNo" => (None, Some("routing number")),
        "telephonePin" => (None, Some("telephone PIN")),
        "number" => (None, Some("number")),
        "expiry_date" => (None, Some("expiry date")),
        "issue_date" => (None, Some("issue date")),
        "birthdate" => (None, Some("date of birth")),
        "firstname" => (None, Some("first name")),
        "lastname" => (None, Some("last name")),
        "private_key" => (None, Some("private key")),
        "public_key" => (None, Some("public key")),
        _ => (None, None),
    }
}

/// A section field's value as text and the custom field kind it keeps:
/// `{"string": "x"}`, `{"concealed": "x"}`, `{"date": 1700000000}`,
/// `{"monthYear": 202708}`, `{"email": {"email_address": "x"}}`, ...
/// `None` for a value with nothing in it.
fn field_value(key: &str, value: &Value) -> Option<(CustomKind, String)> {
    let kind = match key {
        "concealed" | "totp" | "creditCardNumber" => CustomKind::Hidden,
        "url" => CustomKind::Url,
        "email" => CustomKind::Email,
        "phone" => CustomKind::Phone,
        _ => CustomKind::Text,
    };
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => {
            return Some((CustomKind::Checkbox, b.to_string()));
        }
        Value::Object(o) => {
            if let Some(Value::String(s)) = o.get("email_address") {
                s.clone()
            } else {
                // An address: its parts, in 1Password's order.
                let parts: Vec<&str> = ["street", "city", "state", "zip", "country"]
                    .iter()
                    .filter_map(|k| o.get(*k)?.as_str())
                    .filter(|s| !s.is_empty())
                    .collect();
                parts.join(", ")
            }
        }
        _ => String::new(),
    };
    if text.trim().is_empty() {
        return None;
    }
    match (key, value.as_i64()) {
        ("date", Some(secs)) => {
            if let Some(d) = date_of_unix(secs) {
                return Some((CustomKind::Date, d));
            }
        }
        ("monthYear", Some(ym)) if (100_001..=999_912).contains(&ym) => {
            return Some((
                CustomKind::MonthYear,
                format!("{:04}-{:02}", ym / 100, ym % 100),
            ));
        }
        _ => {}
    }
    Some((kind, text))
}

pub(super) fn parse_1pux(bytes: &[u8]) -> Result<ImportReport, ImportError> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|_| {
        ImportError::malformed(
            F,
            "archive",
            "not a readable zip archive (truncated or damaged file?)",
        )
    })?;
    let file = archive.by_name("export.data").map_err(|e| match e {
        zip::result::ZipError::FileNotFound => ImportError::malformed(
            F,
            "archive",
            "no export.data in the archive: not a 1PUX export",
        ),
        _ => ImportError::malformed(F, "export.data", "cannot be read (damaged archive?)"),
    })?;
    let mut data = Vec::new();
    file.take(MAX_IMPORT_BYTES as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|_| {
            ImportError::malformed(
                F,
                "export.data",
                "damaged (truncated archive or bad checksum)",
            )
        })?;
    if data.len() > MAX_IMPORT_BYTES {
        return Err(ImportError::malformed(
            F,
            "export.data",
            format!("decompresses to more than {MAX_IMPORT_BYTES} bytes"),
        ));
    }
    let text = std::str::from_utf8(&data)
        .map_err(|_| ImportError::malformed(F, "export.data", "not UTF-8 text"))?;
    let export: ExportData =
        serde_json::from_str(text).map_err(|e| json_error(F, "export.data", &e))?;
    let mut report = ImportReport::default();
    let mut n = 0usize;
    for account in export.accounts {
        for vault in account.vaults {
            let folder = folder_from_parts([vault.attrs.name.as_str()]);
            for value in vault.items {
                n += 1;
                let record = format!("item {n}");
                let item: Item = serde_json::from_value(value)
                    .map_err(|e| json_error(F, format!("export.data {record}"), &e))?;
                one_item(item, record, folder.clone(), &mut report);
            }
        }
    }
    Ok(report)
}

fn one_item(item: Item, record: String, folder: Option<String>, report: &mut ImportReport) {
    let title = item
        .overview
        .title
        .as_deref()
        .unwrap_or("")
        .trim()
        .to_string();
    let category = item.category_uuid.as_str();
    // Categories that hold credentials: their username, password and URL
    // fields are the item's own (a login, or a note when it has none).
    let credentials = matches!(
        category,
        "001" | "005" | "102" | "109" | "110" | "111" | "112"
    );
    let kind = match category {
        "002" => "card",
        _ if credentials => "login",
        // Notes, documents, identities, passports, licences, ...: every
        // field is a custom field.
        _ => "note",
    };
    if item.state == "trashed" || item.state == "deleted" {
        report.skipped.push(Skipped {
            field: None,
            record: format!("{record} '{title}'"),
            reason: "in 1Password's trash".into(),
        });
        return;
    }
    let mut b = ItemBuilder::new(kind, record);
    b.name(&title);
    b.folder(folder);
    b.notes(item.details.notes_plain.as_deref().unwrap_or(""));
    if !matches!(category, "001" | "002" | "003" | "005") {
        b.custom(
            CustomKind::Text,
            "1Password category",
            category_name(category),
        );
    }
    if item.state == "archived" {
        b.archived(Some(item.updated_at));
    }
    if let Some(url) = &item.overview.url {
        b.url(url);
    }
    for u in &item.overview.urls {
        b.url(&u.url);
    }
    for f in &item.details.login_fields {
        let name = if f.name.trim().is_empty() {
            "field"
        } else {
            f.name.as_str()
        };
        match (f.designation.as_deref(), f.field_type.as_str()) {
            (Some("username"), _) => b.set("username", &f.value),
            (Some("password"), _) => b.set("password", &f.value),
            // A checkbox: `✓` when checked, empty when not.
            (_, "C") => {
                let checked = !f.value.trim().is_empty();
                b.custom(CustomKind::Checkbox, name, &checked.to_string());
            }
            (_, "P") => b.custom(CustomKind::Hidden, name, &f.value),
            (_, "E") => b.custom(CustomKind::Email, name, &f.value),
            (_, "U") => b.custom(CustomKind::Url, name, &f.value),
            (_, "TEL") => b.custom(CustomKind::Phone, name, &f.value),
            // Buttons and submit fields hold no data.
            (_, "B" | "I" | "S") => {}
            _ => b.custom(CustomKind::Text, name, &f.value),
        }
    }
    if let Some(p) = &item.details.password {
        b.set("password", p);
    }
    let mut expiry_seen = false;
    for section in &item.details.sections {
        for field in &section.fields {
            let Some((key, value)) = field.value.iter().next() else {
                continue;
            };
            if key == "file" {
                let name = value
                    .get("fileName")
                    .and_then(Value::as_str)
                    .unwrap_or(field.title.as_str());
                b.leave_out(
                    format!("attachment '{name}'"),
                    "attachments are not supported",
                );
                continue;
            }
            if key == "passkey" {
                b.leave_out("passkey", "passkeys are not supported");
                continue;
            }
            if key == "sshKey" {
                let get = |k: &str| {
                    value
                        .get(k)
                        .or_else(|| value.get("metadata")?.get(k))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                };
                b.custom(CustomKind::Hidden, "private key", get("privateKey"));
                b.custom(CustomKind::Text, "public key", get("publicKey"));
                b.custom(CustomKind::Text, "fingerprint", get("fingerprint"));
                b.custom(CustomKind::Text, "key type", get("keyType"));
                continue;
            }
            if key == "reference" {
                b.leave_out(
                    format!("reference '{}'", field.title.trim()),
                    "links to other items are not supported",
                );
                continue;
            }
            let Some((ckind, text)) = field_value(key, value) else {
                continue;
            };
            let (builtin, default_title) = known_field(&field.id);
            let title = if !field.title.trim().is_empty() {
                field.title.clone()
            } else if let Some(t) = default_title {
                t.to_string()
            } else if !section.title.trim().is_empty() {
                section.title.clone()
            } else {
                match key.as_str() {
                    "totp" => "one-time password".into(),
                    "concealed" => "password".into(),
                    other => other.to_string(),
                }
            };
            if key == "totp" && !b.fields.contains_key("totp") {
                b.totp(&text);
                continue;
            }
            if kind == "card" {
                match (field.id.as_str(), key.as_str()) {
                    ("cardholder", _) => {
                        b.set("holder", &text);
                        continue;
                    }
                    ("ccnum", _) | (_, "creditCardNumber") if !b.fields.contains_key("number") => {
                        b.card_number(&text);
                        continue;
                    }
                    ("cvv", _) => {
                        b.card_cvv(&text);
                        continue;
                    }
                    ("expiry", "monthYear") if !expiry_seen => {
                        expiry_seen = true;
                        // YYYY-MM (from YYYYMM), else as 1Password wrote it.
                        let (y, m) = match text.split_once('-') {
                            Some((y, m)) if ckind == CustomKind::MonthYear => (y, m),
                            _ => (text.as_str(), ""),
                        };
                        b.card_expiry(m, y);
                        continue;
                    }
                    _ => {}
                }
            }
            if credentials {
                if let Some(builtin) = builtin {
                    if !b.fields.contains_key(builtin) {
                        b.set(builtin, &text);
                        continue;
                    }
                }
                if field.id == "url" && (key == "url" || key == "string") {
                    b.url(&text);
                    continue;
                }
            }
            b.custom(ckind, &title, &text);
        }
    }
    for h in &item.details.password_history {
        b.history(h.time, &h.value);
    }
    if let Some(doc) = &item.details.document_attributes {
        let name = doc.get("fileName").and_then(Value::as_str).unwrap_or("");
        b.leave_out(
            format!("document '{name}'"),
            "attachments are not supported",
        );
    }
    for (key, value) in &item.details.other {
        let empty = match value {
            Value::Null => true,
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            _ => false,
        };
        if !empty {
            let why = if key.starts_with("passkey") {
                "passkeys are not supported"
            } else {
                "not a kind of field Coffer knows"
            };
            b.leave_out(key.clone(), why);
        }
    }
    if !item.overview.tags.is_empty() {
        b.custom(CustomKind::Text, "tags", &item.overview.tags.join(", "));
    }
    b.finish(report);
}

/// `text` with each `\"` inside a quoted field written as `""`, when that
/// is what makes the quoting valid: a `\"` followed by a comma or a line
/// end closes the field after a backslash. `None` when there is no `\"`.
pub(super) fn backslash_quotes_doubled(text: &str) -> Option<String> {
    if !text.contains("\\\"") {
        return None;
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let (mut in_quotes, mut field_start) = (false, true);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_quotes {
            let next = bytes.get(i + 1).copied();
            let after = bytes.get(i + 2).copied();
            if b == b'\\'
                && next == Some(b'"')
                && !matches!(after, None | Some(b',' | b'\n' | b'\r'))
            {
                out.extend_from_slice(b"\"\"");
                i += 2;
                continue;
            }
            if b == b'"' {
                if next == Some(b'"') {
                    out.extend_from_slice(b"\"\"");
                    i += 2;
                    continue;
                }
                in_quotes = false;
            }
            out.push(b);
        } else {
            if b == b'"' && field_start {
                in_quotes = true;
            }
            field_start = matches!(b, b',' | b'\n' | b'\r');
            out.push(b);
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The 1Password categories a CSV `type` (or `category`) column names.
const CSV_CATEGORIES: [&str; 22] = [
    "login",
    "credit card",
    "secure note",
    "identity",
    "password",
    "document",
    "software license",
    "bank account",
    "database",
    "driver license",
    "outdoor license",
    "membership",
    "passport",
    "reward program",
    "social security number",
    "wireless router",
    "server",
    "email account",
    "api credential",
    "medical record",
    "ssh key",
    "crypto wallet",
];

/// A 1Password CSV column: its label and the field id 1Password 7 for
/// Windows writes in parentheses (`number(ccnum)`), else the label.
struct Column {
    label: String,
    id: String,
}

fn column(header: &str) -> Column {
    let h = header.trim();
    match h.strip_suffix(')').and_then(|rest| rest.rsplit_once('(')) {
        Some((label, id)) if !id.is_empty() => Column {
            label: label.trim().to_string(),
            id: id.trim().to_ascii_lowercase(),
        },
        _ => Column {
            label: h.to_string(),
            id: h.to_ascii_lowercase(),
        },
    }
}

/// Whether a column's values are secrets.
fn secret_column(c: &Column) -> bool {
    let l = format!("{} {}", c.label.to_ascii_lowercase(), c.id);
    [
        "password",
        "pin",
        "cvv",
        "verification",
        "reg_code",
        "license key",
        "accountno",
        "account number",
        "concealed",
        "credential",
        "secret",
    ]
    .iter()
    .any(|s| l.contains(s))
}

/// 1Password's CSV exports: 1Password 8 (`Title,Url,Username,Password,
/// OTPAuth,Favorite,Archived,Tags,Notes`) and 1Password 7, whose Mac
/// variant names columns by their labels (`cardholder name`, `number`, ...)
/// with a `type` column for the category and its Windows variant as
/// `label(id)` (`number(ccnum)`), both with `notesPlain`. Rows may be one
/// field longer or shorter than the header (1Password 7 ends rows with a
/// comma), and a `\"` for a quote inside a field (1Password 7 for Windows)
/// is read as one quote. Every column without a place in Coffer's model is a custom
/// field titled by its label; archived rows are kept, marked archived.
pub(super) fn parse_csv(text: &str) -> Result<ImportReport, ImportError> {
    const F: Format = Format::OnePasswordCsv;
    // 1Password 7 for Windows escapes a quote inside a field as `\"`
    // instead of doubling it: read such a file as if it doubled them.
    let unescaped;
    let text = if super::check_csv_quoting(F, text).is_err() {
        match backslash_quotes_doubled(text) {
            Some(t) => {
                unescaped = t;
                unescaped.as_str()
            }
            None => text,
        }
    } else {
        text
    };
    let mut report = ImportReport::default();
    let header = text.lines().next().unwrap_or("");
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(header.as_bytes());
    let columns: Vec<Column> = reader
        .records()
        .next()
        .and_then(Result::ok)
        .map(|r| r.iter().map(column).collect())
        .unwrap_or_default();
    let has = |id: &str| {
        columns
            .iter()
            .any(|c| c.id == id || c.label.eq_ignore_ascii_case(id))
    };
    if !has("title") || !(has("notes") || has("notesplain")) {
        return Err(ImportError::malformed(
            F,
            "line 1",
            "missing column(s) title, notes: the header must have title and notes \
             (or notesPlain) (is this a 1password-csv file?)",
        ));
    }
    super::read_csv_flexible(F, text, &[], |line, row| {
        let record = format!("line {line}");
        let cell = |i: usize| row.record.get(i).unwrap_or("");
        let find = |ids: &[&str]| -> &str {
            columns
                .iter()
                .enumerate()
                .find(|(i, c)| {
                    !cell(*i).trim().is_empty()
                        && ids
                            .iter()
                            .any(|id| c.id == *id || c.label.eq_ignore_ascii_case(id))
                })
                .map(|(i, _)| cell(i))
                .unwrap_or("")
        };
        let category_cell = columns.iter().enumerate().find_map(|(i, c)| {
            let v = cell(i).trim();
            (matches!(c.id.as_str(), "type" | "category" | "kind")
                && CSV_CATEGORIES.contains(&v.to_ascii_lowercase().as_str()))
            .then_some((i, v.to_ascii_lowercase()))
        });
        let category = category_cell
            .as_ref()
            .map(|(_, c)| c.as_str())
            .unwrap_or("");
        let number = find(&["ccnum", "card number", "number"]);
        let card = category == "credit card"
            || (category.is_empty() && !find(&["ccnum", "card number"]).is_empty());
        let kind = match category {
            _ if card => "card",
            "secure note" => "note",
            _ => "login",
        };
        let mut b = ItemBuilder::new(kind, record);
        if !matches!(
            category,
            "" | "login" | "password" | "credit card" | "secure note"
        ) {
            b.custom(CustomKind::Text, "1Password category", category);
        }
        let mut used = vec![false; columns.len()];
        if let Some((i, _)) = category_cell {
            used[i] = true;
        }
        for (i, c) in columns.iter().enumerate() {
            let v = cell(i);
            if v.trim().is_empty() || used[i] {
                continue;
            }
            used[i] = true;
            match c.id.as_str() {
                "title" => b.name(v),
                "url" | "website" | "urls" => {
                    for url in v.split([',', '\n']) {
                        b.url(url);
                    }
                }
                "username" | "password" if kind != "card" => b.set(&c.id, v),
                "notes" | "notesplain" => b.notes(v),
                "otpauth" | "one-time password" | "totp" => b.totp(v),
                "archived" => {
                    if v.trim().eq_ignore_ascii_case("true") {
                        b.archived(None);
                    }
                }
                // Bookkeeping: not data of the item.
                "favorite" | "uuid" | "createdat" | "updatedat" => {}
                "tags" => b.custom(CustomKind::Text, "tags", v.trim()),
                "cardholder" | "cardholder name" if card => b.set("holder", v.trim()),
                "ccnum" | "card number" | "number" if card && v == number => b.card_number(v),
                "cvv" | "verification number" if card => b.card_cvv(v),
                "expiry" | "expiry date" | "expires" if card => {
                    let v = v.trim();
                    // YYYYMM (1Password 7), MM/YYYY or MM/YY.
                    let (m, y) = match v.split_once('/') {
                        Some((m, y)) => (m, y),
                        None if v.len() == 6 => (&v[4..], &v[..4]),
                        None => (v, ""),
                    };
                    b.card_expiry(m, y);
                }
                _ => {
                    let kind = if secret_column(c) {
                        CustomKind::Hidden
                    } else {
                        CustomKind::Text
                    };
                    b.custom(kind, &c.label, v);
                }
            }
        }
        b.finish(&mut report);
        Ok(())
    })?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::*;

    #[test]
    fn pux_malformed() {
        let f = Format::OnePassword1pux;
        let good = fixture("1password.1pux");
        let err = parse(f, &good[..good.len() - 30], None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "1password-1pux: archive: not a readable zip archive (truncated or damaged file?)"
        );
        let err = parse(f, b"PK\x03\x04 not really", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a readable zip archive"), "{err}");
        // A zip without export.data.
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut w = zip_writer(&mut buf);
            w.start_file("other.txt", zip::write::SimpleFileOptions::default())
                .unwrap();
            std::io::Write::write_all(&mut w, b"hello").unwrap();
            w.finish().unwrap();
        }
        let err = parse(f, buf.get_ref(), None).unwrap_err().to_string();
        assert_eq!(
            err,
            "1password-1pux: archive: no export.data in the archive: not a 1PUX export"
        );
        // export.data that is not the expected JSON.
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut w = zip_writer(&mut buf);
            w.start_file("export.data", zip::write::SimpleFileOptions::default())
                .unwrap();
            std::io::Write::write_all(
                &mut w,
                b"{\"accounts\": [{\"vaults\": [{\"items\": [{\"overview\": {}}]}]}]}",
            )
            .unwrap();
            w.finish().unwrap();
        }
        let err = parse(f, buf.get_ref(), None).unwrap_err().to_string();
        assert!(
            err.starts_with("1password-1pux: export.data item 1"),
            "{err}"
        );
        assert!(err.contains("missing field `categoryUuid`"), "{err}");
    }

    /// A 1PUX whose export.data is `data`.
    fn pux(data: &str) -> Vec<u8> {
        let mut buf = std::io::Cursor::new(Vec::new());
        let mut w = zip_writer(&mut buf);
        w.start_file("export.data", zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut w, data.as_bytes()).unwrap();
        w.finish().unwrap();
        buf.into_inner()
    }

    #[test]
    fn pux_odd_values_do_not_panic() {
        for my in [
            "\"abcéx\"",
            "\"é\"",
            "202713",
            "1",
            "\"\"",
            "null",
            "{}",
            "[1]",
        ] {
            let data = format!(
                r#"{{"accounts": [{{"vaults": [{{"attrs": {{"name": "V"}}, "items": [
                    {{"categoryUuid": "002", "overview": {{"title": "C"}},
                      "details": {{"sections": [{{"fields": [
                        {{"id": "expiry", "value": {{"monthYear": {my}}}}},
                        {{"id": "ccnum", "value": {{"creditCardNumber": {my}}}}},
                        {{"id": "cvv", "value": {{"concealed": {my}}}}}
                      ]}}]}}}}]}}]}}]}}"#
            );
            let report = parse(Format::OnePassword1pux, &pux(&data), None).unwrap();
            assert_eq!(report.items.len(), 1, "{my}");
        }
    }

    fn zip_writer<W: std::io::Write + std::io::Seek>(w: W) -> zip::ZipWriter<W> {
        zip::ZipWriter::new(w)
    }

    #[test]
    fn csv_malformed() {
        let f = Format::OnePasswordCsv;
        let err = parse(f, b"Title,Url,Username\nx,y,z\n", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("1password-csv: line 1: missing column(s) title, notes"),
            "{err}"
        );
        let err = parse(f, b"Title,Url,Username,Password,Notes\nx,y,\"z,w,v\n", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2: bad CSV quoting"), "{err}");
    }
}
