//! 1Password: the 1PUX export (a zip holding `export.data`) and the
//! 1Password 8 CSV export.
//!
//! 1PUX (`export.data` = `{"accounts": [{"vaults": [{"attrs": {"name"},
//! "items": [...]}]}]}`): the vault's name is the folder. Items by
//! `categoryUuid`: `001` login (`details.loginFields` with `designation`
//! `username`/`password`, `overview.url` and `overview.urls[].url`), `005`
//! password (`details.password`), `003` secure note, `002` credit card
//! (section fields `cardholder`, `ccnum`, `cvv`, `expiry` as `monthYear`
//! `YYYYMM`; the card `type` goes to the notes). Every other category
//! (identity, document, SSH key, software license, ...) and archived items
//! are skipped. In every item, `details.notesPlain` are the notes, the first
//! section field holding a `totp` is the TOTP, and every other section field
//! with a value becomes a `title: value` line in the notes (concealed ones
//! too); login fields without a designation likewise. Tags are added as a
//! `tags:` line.
//!
//! CSV (`Title,Url,Username,Password,OTPAuth,Favorite,Archived,Tags,Notes`;
//! `Website` or `URL` also accepted for `Url`): archived rows are skipped, a
//! row with only notes is a note.

use std::io::Read;

use serde::Deserialize;
use serde_json::Value;

use super::{
    folder_from_parts, json_error, read_csv, Format, ImportError, ImportReport, ItemBuilder,
    Skipped, MAX_IMPORT_BYTES,
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
    #[serde(default)]
    state: String,
    category_uuid: String,
    #[serde(default)]
    overview: Overview,
    #[serde(default)]
    details: Details,
}

#[derive(Deserialize, Default)]
struct Overview {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    urls: Vec<OverviewUrl>,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Deserialize)]
struct OverviewUrl {
    #[serde(default)]
    url: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Details {
    #[serde(default)]
    login_fields: Vec<LoginField>,
    #[serde(default)]
    notes_plain: Option<String>,
    #[serde(default)]
    sections: Vec<Section>,
    #[serde(default)]
    password: Option<String>,
}

#[derive(Deserialize)]
struct LoginField {
    #[serde(default)]
    value: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    designation: Option<String>,
}

#[derive(Deserialize)]
struct Section {
    #[serde(default)]
    fields: Vec<SectionField>,
}

#[derive(Deserialize)]
struct SectionField {
    #[serde(default)]
    title: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    value: serde_json::Map<String, Value>,
}

/// The category names of `categoryUuid`s, for skip reasons.
fn category_name(uuid: &str) -> &'static str {
    match uuid {
        "004" => "identity",
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

/// A section field's value as text: `{"string": "x"}`, `{"concealed": "x"}`,
/// `{"monthYear": 202708}`, `{"email": {"email_address": "x"}}`, ...
fn field_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Object(o) => {
            if let Some(Value::String(s)) = o.get("email_address") {
                return Some(s.clone());
            }
            // An address: its parts, in 1Password's order.
            let parts: Vec<&str> = ["street", "city", "state", "zip", "country"]
                .iter()
                .filter_map(|k| o.get(*k)?.as_str())
                .filter(|s| !s.is_empty())
                .collect();
            (!parts.is_empty()).then(|| parts.join(", "))
        }
        _ => None,
    }
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
    let kind = match item.category_uuid.as_str() {
        "001" | "005" => "login",
        "002" => "card",
        "003" => "note",
        other => {
            report.skipped.push(Skipped {
                record: format!("{record} '{title}'"),
                reason: format!("1Password {} items are not supported", category_name(other)),
            });
            return;
        }
    };
    if item.state == "archived" {
        report.skipped.push(Skipped {
            record: format!("{record} '{title}'"),
            reason: "archived in 1Password".into(),
        });
        return;
    }
    let mut b = ItemBuilder::new(kind, record);
    b.name(&title);
    b.folder(folder);
    b.notes(item.details.notes_plain.as_deref().unwrap_or(""));
    if kind == "login" {
        if let Some(url) = &item.overview.url {
            b.url(url);
        }
        for u in &item.overview.urls {
            b.url(&u.url);
        }
        for f in &item.details.login_fields {
            match f.designation.as_deref() {
                Some("username") => b.set("username", &f.value),
                Some("password") => b.set("password", &f.value),
                _ => b.extra(&f.name, &f.value),
            }
        }
        if let Some(p) = &item.details.password {
            if !b.fields.contains_key("password") {
                b.set("password", p);
            }
        }
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
                b.warnings.push(format!(
                    "attachment '{name}' not imported (attachments are not supported)"
                ));
                continue;
            }
            let Some(text) = field_text(value) else {
                continue;
            };
            let title = if field.title.is_empty() {
                field.id.as_str()
            } else {
                field.title.as_str()
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
                        // YYYYMM
                        let (y, m) = match (text.get(..4), text.get(4..)) {
                            (Some(y), Some(m)) if text.len() == 6 => (y, m),
                            _ => (text.as_str(), ""),
                        };
                        b.card_expiry(m, y);
                        continue;
                    }
                    _ => {}
                }
            }
            b.extra(title, &text);
        }
    }
    if !item.overview.tags.is_empty() {
        b.extra("tags", &item.overview.tags.join(", "));
    }
    b.finish(report);
}

pub(super) fn parse_csv(text: &str) -> Result<ImportReport, ImportError> {
    const F: Format = Format::OnePasswordCsv;
    let mut report = ImportReport::default();
    read_csv(
        F,
        text,
        &["title", "username", "password", "notes"],
        |line, row| {
            let record = format!("line {line}");
            if row.get("archived").trim().eq_ignore_ascii_case("true") {
                report.skipped.push(Skipped {
                    record: format!("{record} '{}'", row.get("title").trim()),
                    reason: "archived in 1Password".into(),
                });
                return Ok(());
            }
            let mut b = ItemBuilder::new("login", record);
            b.name(row.get("title"));
            for col in ["url", "website"] {
                for url in row.get(col).split([',', '\n']) {
                    b.url(url);
                }
            }
            b.set("username", row.get("username"));
            b.set("password", row.get("password"));
            b.totp(row.get("otpauth"));
            b.notes(row.get("notes"));
            b.extra("tags", row.get("tags").trim());
            b.finish(&mut report);
            Ok(())
        },
    )?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::*;

    #[test]
    fn pux_fixture() {
        let report = parse(Format::OnePassword1pux, &fixture("1password.1pux"), None).unwrap();
        assert_items(
            &report.items,
            &[
                item(
                    "login",
                    "GitHub",
                    Some("Private"),
                    &[
                        ("username", "octo@example.com"),
                        ("password", "gh-p@ss \"quoted\""),
                        (
                            "totp",
                            &uri(
                                "otpauth://totp/GitHub:octo?secret=JBSWY3DPEHPK3PXP&issuer=GitHub",
                            ),
                        ),
                        (
                            "notes",
                            "Recovery codes in the safe.\nSecond line.\n\n\
                             Recovery PIN: 4711\n\
                             Backup email: octo+b@example.com\n\
                             TOTP: JBSWY3DPEHPK3PXQ\n\
                             tags: dev, work",
                        ),
                    ],
                    &["https://github.com/login", "https://gist.github.com"],
                ),
                item(
                    "login",
                    "Bücher 📚",
                    Some("Private"),
                    &[
                        ("username", "leser"),
                        ("password", "Bücher2024"),
                        ("totp", &uri("JBSW Y3DP EHPK 3PXP")),
                    ],
                    &["https://buecher.example.de"],
                ),
                item(
                    "note",
                    "日本語のメモ",
                    Some("Private"),
                    &[("notes", "一行目\n二行目 🎉")],
                    &[],
                ),
                item(
                    "card",
                    "Visa Gold",
                    Some("Family"),
                    &[
                        ("holder", "Jörg Müller"),
                        ("number", "4111111111111111"),
                        ("cvv", "123"),
                        ("expiry", "08/27"),
                        ("notes", "type: visa\nvalid from: 202301"),
                    ],
                    &[],
                ),
                item(
                    "login",
                    "Wi-Fi password",
                    Some("Family"),
                    &[("password", "correct horse battery staple")],
                    &[],
                ),
            ],
        );
        assert_eq!(
            report.skipped,
            vec![
                skipped(
                    "item 1 'GitHub'",
                    "attachment 'recovery-codes.txt' not imported (attachments are not supported)"
                ),
                skipped(
                    "item 5 'Jane Doe'",
                    "1Password identity items are not supported"
                ),
                skipped("item 6 'Old login'", "archived in 1Password"),
                skipped(
                    "item 7 'Deploy key'",
                    "1Password SSH key items are not supported"
                ),
            ]
        );
    }

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
    fn csv_fixture() {
        let report = parse(Format::OnePasswordCsv, &fixture("1password.csv"), None).unwrap();
        assert_items(
            &report.items,
            &[
                item(
                    "login",
                    "GitHub",
                    None,
                    &[
                        ("username", "octo@example.com"),
                        ("password", "gh,p@ss\"q"),
                        (
                            "totp",
                            &uri(
                                "otpauth://totp/GitHub:octo?secret=JBSWY3DPEHPK3PXP&issuer=GitHub",
                            ),
                        ),
                        ("notes", "Line one\nLine two\n\ntags: dev"),
                    ],
                    &["https://github.com/login"],
                ),
                item(
                    "login",
                    "Bücher 📚",
                    None,
                    &[
                        ("username", "leser"),
                        ("password", "pw"),
                        ("totp", &uri("JBSW Y3DP EHPK 3PXP")),
                    ],
                    &["https://buecher.example.de"],
                ),
                item("note", "日本語", None, &[("notes", "メモだけ")], &[]),
            ],
        );
        assert_eq!(
            report.skipped,
            vec![
                skipped("line 6 'Old'", "archived in 1Password"),
                skipped("line 7", "empty record"),
            ]
        );
    }

    #[test]
    fn csv_malformed() {
        let f = Format::OnePasswordCsv;
        let err = parse(f, b"Title,Url,Username\nx,y,z\n", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("1password-csv: line 1: missing column(s) password, notes"),
            "{err}"
        );
        let err = parse(f, b"Title,Url,Username,Password,Notes\nx,y,\"z,w,v\n", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2: bad CSV quoting"), "{err}");
    }
}
