//! Issue 19, acceptance 2: for every fixture, every value of every source
//! record is accounted for by the import report — it is in an imported
//! item (a field, custom field title or value, the name, folder or a URL,
//! in the stored form the import gives it), or the report lists it (a
//! field left out, or the whole record skipped).
//!
//! The sources are walked here independently of the parsers: JSON as a tree
//! (Bitwarden, 1PUX), CSV cell by cell (LastPass typed notes and Bitwarden's
//! `fields` line by line), KeePass XML by its `<String>` values, otpauth
//! lists by their secrets and counters. What is not the user's data (ids,
//! times, favourite flags, icons, section names, a field's label when its
//! value went to a built-in field) is listed per format as bookkeeping.
//! KDBX files are walked entry by entry through the `keepass` crate (every
//! string of every entry, and every earlier password), and Google's
//! migration export by the protobuf wire format (every secret, name,
//! issuer and counter).

use serde_json::Value;

use super::test_support::*;
use super::*;

/// One value of a source record: where it was (for messages and for
/// matching a left-out field) and what it was.
struct SourceValue {
    /// How the report names the record: `item 3`, `line 7`, ...
    record: String,
    path: String,
    value: String,
}

/// Every text an import could have put a source value into, per file.
fn haystack(report: &ImportReport) -> String {
    let mut h = String::new();
    for item in &report.items {
        h.push_str(&item.name);
        h.push('\n');
        h.push_str(item.folder.as_deref().unwrap_or(""));
        h.push('\n');
        for u in &item.urls {
            h.push_str(u);
            h.push('\n');
        }
        for (k, v) in &item.fields {
            h.push_str(k);
            h.push('=');
            h.push_str(v);
            h.push('\n');
        }
    }
    h
}

/// The forms a source value may take once imported.
fn candidates(v: &str) -> Vec<String> {
    let t = v.trim();
    let mut c = vec![t.to_string(), t.to_lowercase(), t.replace("\r\n", "\n")];
    // Card numbers, base32 secrets.
    c.push(
        t.chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect(),
    );
    c.push(
        t.chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_uppercase()
            .trim_end_matches('=')
            .to_string(),
    );
    // Nested folders.
    c.push(t.replace(['/', '\\'], FOLDER_SEPARATOR));
    if let Some((_, rest)) = t.split_once('/') {
        c.push(rest.replace('/', FOLDER_SEPARATOR));
    }
    // Checkboxes.
    match t {
        "✓" | "true" | "True" => c.push("true".into()),
        "false" | "False" => c.push("false".into()),
        _ => {}
    }
    if let Ok(n) = t.parse::<i64>() {
        // Unix seconds → a date; YYYYMM → month-year and card expiry.
        if let Some(d) = date_of_unix(n) {
            c.push(d);
        }
        if t.len() == 4 {
            // A card's expiry year.
            c.push(format!("/{}", &t[2..]));
        }
        if t.len() == 6 {
            c.push(format!("{}-{}", &t[..4], &t[4..]));
            c.push(format!("{}/{}", &t[4..], &t[2..4]));
        }
    }
    // MM/YYYY, `June,2027` (card expiry) and `Month,Day,Year` dates.
    if let Some((m, y)) = t.split_once(['/', ',']) {
        if let Some(e) = expiry(m, y) {
            c.push(e);
        }
    }
    let parts: Vec<&str> = t.split(',').collect();
    if let [m, d, y] = parts[..] {
        if let Some(mm) = expiry(m, "2000") {
            c.push(format!("{y}-{}-{d:0>2}", &mm[..2]));
        }
    }
    // RFC 3339 times → their date.
    if let Some(d) = t.get(..10).filter(|d| coffer_crdt::schema::valid_date(d)) {
        c.push(d.to_string());
    }
    // TOTP: the secret of a URI or `steam://`, in canonical base32.
    if let Some(secret) = t.split(['?', '&']).find_map(|kv| {
        kv.strip_prefix("secret=")
            .or_else(|| kv.strip_prefix("key="))
    }) {
        c.push(format!(
            "secret={}",
            secret.replace("%20", "").to_uppercase()
        ));
    }
    if let Some(s) = t.strip_prefix("steam://") {
        c.push(format!("secret={s}"));
    }
    c.retain(|s| !s.is_empty());
    c
}

/// Checks every source value of `file` against what `parse` gave.
fn check(file: &str, format: Format, values: Vec<SourceValue>) {
    check_with(file, format, None, values)
}

/// [`check`] for a file that needs a password.
fn check_with(file: &str, format: Format, password: Option<&str>, values: Vec<SourceValue>) {
    let report = parse(format, &fixture(file), password).unwrap_or_else(|e| panic!("{file}: {e}"));
    let hay = haystack(&report);
    let mut unaccounted = Vec::new();
    for v in &values {
        let in_record =
            |s: &Skipped| s.record == v.record || s.record.starts_with(&format!("{} ", v.record));
        let found = candidates(&v.value)
            .iter()
            .any(|c| hay.contains(c.as_str()));
        let skipped = report
            .skipped
            .iter()
            .any(|s| in_record(s) && s.field.is_none());
        let path = v.path.to_lowercase();
        let left_out = report.skipped.iter().any(|s| {
            let Some(field) = &s.field else { return false };
            let field = field.to_lowercase();
            in_record(s)
                && (field.contains(&v.value.to_lowercase())
                    || (field.contains("passkey")
                        && (path.contains("fido2") || path.contains("passkey")))
                    || (field.contains("attachment")
                        && (path.contains("attachment") || path.contains("file")))
                    || (field.contains("document") && path.contains("documentattributes"))
                    || (field.contains("reference") && path.contains("reference")))
        });
        if !(found || skipped || left_out) {
            unaccounted.push(format!("{} {}: {:?}", v.record, v.path, v.value));
        }
    }
    assert!(
        unaccounted.is_empty(),
        "{file}: source values neither imported nor reported:\n{}",
        unaccounted.join("\n")
    );
    assert!(!values.is_empty(), "{file}: the walker found nothing");
}

/// Leaves of a JSON record, skipping bookkeeping keys.
fn json_leaves(
    record: &str,
    path: &str,
    v: &Value,
    skip: &dyn Fn(&str) -> bool,
    out: &mut Vec<SourceValue>,
) {
    match v {
        Value::Object(o) => {
            for (k, child) in o {
                let p = format!("{path}.{k}");
                if !skip(&p) {
                    json_leaves(record, &p, child, skip, out);
                }
            }
        }
        Value::Array(a) => {
            for child in a {
                json_leaves(record, &format!("{path}[]"), child, skip, out);
            }
        }
        Value::Null => {}
        Value::String(s) if s.trim().is_empty() => {}
        leaf => out.push(SourceValue {
            record: record.to_string(),
            path: path.to_string(),
            value: match leaf {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
        }),
    }
}

fn ends_with_any(path: &str, keys: &[&str]) -> bool {
    keys.iter().any(|k| path.ends_with(&format!(".{k}")))
}

#[test]
fn bitwarden_json_accounts_for_every_value() {
    let text = String::from_utf8(fixture("bitwarden.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let skip = |p: &str| {
        ends_with_any(
            p,
            &[
                "id",
                "organizationId",
                "folderId",
                "collectionIds",
                "revisionDate",
                "creationDate",
                "deletedDate",
                "reprompt",
                "favorite",
                "type",
                "match",
                "linkedId",
                "secureNote",
                "size",
                "sizeName",
                "url",
                "keyType",
            ],
        )
    };
    let mut values = Vec::new();
    for (i, item) in doc["items"].as_array().unwrap().iter().enumerate() {
        json_leaves(&format!("item {}", i + 1), "", item, &skip, &mut values);
    }
    check("bitwarden.json", Format::BitwardenJson, values);
}

/// The `export.data` of a 1PUX fixture.
fn pux_data(file: &str) -> Value {
    use std::io::Read;
    let bytes = fixture(file);
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut text = String::new();
    zip.by_name("export.data")
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn onepassword_1pux_accounts_for_every_value() {
    let skip = |p: &str| {
        ends_with_any(
            p,
            &[
                "uuid",
                "favIndex",
                "createdAt",
                "updatedAt",
                "state",
                "categoryUuid",
                "indexAtSource",
                "guarded",
                "multiline",
                "dontGenerate",
                "inputTraits",
                "ps",
                "pbe",
                "pgrng",
                "subtitle",
                "fieldType",
                "designation",
                "id",
                "label",
                "documentId",
                "decryptedSize",
                "provider",
                "metadata",
            ],
        ) || p.ends_with("sections[].title")
            || p.ends_with("sections[].name")
            || p.ends_with("fields[].title")
            || p.ends_with("loginFields[].name")
    };
    for file in ["1password.1pux", "1password-categories.1pux"] {
        let doc = pux_data(file);
        let mut values = Vec::new();
        let mut n = 0;
        for account in doc["accounts"].as_array().unwrap() {
            for vault in account["vaults"].as_array().unwrap() {
                let name = vault["attrs"]["name"].as_str().unwrap().to_string();
                for item in vault["items"].as_array().unwrap() {
                    n += 1;
                    let record = format!("item {n}");
                    values.push(SourceValue {
                        record: record.clone(),
                        path: "vault".into(),
                        value: name.clone(),
                    });
                    json_leaves(&record, "", item, &skip, &mut values);
                }
            }
        }
        check(file, Format::OnePassword1pux, values);
    }
}

/// Every non-empty cell of a CSV fixture but the `skip` columns; `split`
/// turns one cell into several values (a typed note, Bitwarden's fields).
fn csv_values(
    file: &str,
    skip: &[&str],
    split: &dyn Fn(&str, &str) -> Vec<String>,
) -> Vec<SourceValue> {
    let mut text = String::from_utf8(fixture(file)).unwrap();
    // 1Password 7 for Windows writes `\"` for a quote in a field.
    if let Some(t) = super::onepassword::backslash_quotes_doubled(&text) {
        text = t;
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(|h| h.to_lowercase())
        .collect();
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.unwrap();
        let line = record.position().unwrap().line();
        for (i, cell) in record.iter().enumerate() {
            let col = header.get(i).map(String::as_str).unwrap_or("");
            if cell.trim().is_empty() || skip.contains(&col) {
                continue;
            }
            let cells: Vec<String> = if ["url", "login_uri", "website", "url(url)"].contains(&col) {
                cell.split([',', '\n'])
                    .filter(|u| !["http://sn", "http://"].contains(&u.trim()))
                    .map(str::to_owned)
                    .collect()
            } else {
                split(col, cell)
            };
            for value in cells {
                if !value.trim().is_empty() {
                    out.push(SourceValue {
                        record: format!("line {line}"),
                        path: col.to_string(),
                        value,
                    });
                }
            }
        }
    }
    out
}

fn whole(_: &str, cell: &str) -> Vec<String> {
    vec![cell.to_string()]
}

#[test]
fn csv_formats_account_for_every_value() {
    // Bitwarden: `fields` holds `name: value` lines.
    let bitwarden = |col: &str, cell: &str| -> Vec<String> {
        if col == "fields" {
            cell.lines()
                .flat_map(|l| {
                    l.split_once(": ")
                        .map(|(k, v)| vec![k.to_string(), v.to_string()])
                        .unwrap_or_default()
                })
                .collect()
        } else {
            vec![cell.to_string()]
        }
    };
    check(
        "bitwarden.csv",
        Format::BitwardenCsv,
        csv_values(
            "bitwarden.csv",
            &["favorite", "type", "reprompt"],
            &bitwarden,
        ),
    );
    // LastPass: a typed note's `extra` is `NoteType:`, `Key:Value` lines and
    // `Notes:`; `http://sn` and `http://` are its placeholders.
    let lastpass = |col: &str, cell: &str| -> Vec<String> {
        if col == "url" && (cell == "http://sn" || cell == "http://") {
            return vec![];
        }
        if col != "extra" || !cell.starts_with("NoteType:") {
            return vec![cell.to_string()];
        }
        let (head, notes) = cell.split_once("\nNotes:").unwrap_or((cell, ""));
        let mut out = vec![notes.to_string()];
        for line in head.lines() {
            // Values only: a key is the label of its value (a card's keys
            // name its built-in fields).
            match line.split_once(':') {
                Some(("NoteType", "Credit Card")) => {}
                Some(("NoteType", t)) => out.push(t.to_string()),
                Some(("Language", _)) => {}
                Some((_, v)) => out.push(v.to_string()),
                // A line of a multi-line value.
                None => out.push(line.to_string()),
            }
        }
        out.retain(|v| !v.trim().trim_matches(',').is_empty());
        out
    };
    for file in ["lastpass.csv", "lastpass-typed-notes.csv"] {
        check(
            file,
            Format::LastpassCsv,
            csv_values(file, &["fav", "grouping"], &lastpass),
        );
    }
    // LastPass groupings: `Work\Dev`, `(none)`.
    for file in ["chrome.csv", "chrome-windows.csv"] {
        check(file, Format::ChromeCsv, csv_values(file, &[], &whole));
    }
    check(
        "firefox.csv",
        Format::FirefoxCsv,
        csv_values(
            "firefox.csv",
            &["guid", "timecreated", "timelastused", "timepasswordchanged"],
            &whole,
        ),
    );
    // KeePassXC: the root group (first path element) is not a folder.
    for file in ["keepassxc.csv", "keepassx.csv"] {
        check(
            file,
            Format::KeepassxcCsv,
            csv_values(file, &["icon", "last modified", "created"], &|col, cell| {
                if col == "group" {
                    let rest: Vec<&str> = cell.split('/').skip(1).collect();
                    return if rest.is_empty() {
                        vec![]
                    } else {
                        vec![rest.join("/")]
                    };
                }
                vec![cell.to_string()]
            }),
        );
    }
    for file in [
        "1password.csv",
        "1password7-mac.csv",
        "1password7-windows.csv",
    ] {
        check(
            file,
            Format::OnePasswordCsv,
            csv_values(file, &["favorite", "archived"], &|col, cell| {
                // 1Password 7's category names are stored lower case; a
                // login's or card's category is its item type.
                if (col == "type" || col == "type(type)")
                    && ["login", "credit card"].contains(&cell.to_lowercase().as_str())
                {
                    return vec![];
                }
                vec![cell.to_string()]
            }),
        );
    }
}

#[test]
fn keepass_xml_accounts_for_every_value() {
    let text = String::from_utf8(fixture("keepass.xml")).unwrap();
    let unescape = |s: &str| {
        if let Some(inner) = s
            .strip_prefix("<![CDATA[")
            .and_then(|r| r.strip_suffix("]]>"))
        {
            return inner.to_string();
        }
        let mut s = s.to_string();
        while let Some(i) = s.find("&#") {
            let Some(j) = s[i..].find(';') else { break };
            let code = &s[i + 2..i + j];
            let ch = if let Some(hex) = code.strip_prefix('x') {
                u32::from_str_radix(hex, 16).ok()
            } else {
                code.parse().ok()
            }
            .and_then(char::from_u32)
            .unwrap_or('?');
            s.replace_range(i..i + j + 1, &ch.to_string());
        }
        s.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&")
    };
    // TOTP parameters live on in the canonical otpauth URI (checked in
    // fixtures_tests.rs); the secret itself is checked here.
    let parameters = [
        "TimeOtp-Length",
        "TimeOtp-Period",
        "TimeOtp-Algorithm",
        "TOTP Settings",
    ];
    let mut values = Vec::new();
    let mut entry_line = 0;
    let mut depth_history = 0;
    let mut in_history_entry = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with("<History>") {
            depth_history += 1;
        }
        if t.starts_with("</History>") {
            depth_history -= 1;
        }
        if t.starts_with("<Entry>") {
            if depth_history == 0 {
                entry_line = i + 1;
            } else {
                in_history_entry = true;
            }
        }
        if t.starts_with("</Entry>") && depth_history > 0 {
            in_history_entry = false;
        }
        let mut rest = line;
        while let Some(start) = rest.find("<Key>") {
            let after = &rest[start + 5..];
            let Some(end) = after.find("</Key>") else {
                break;
            };
            let key = unescape(&after[..end]);
            let tail = &after[end..];
            let value = tail
                .find('>')
                .and_then(|_| tail.find("<Value"))
                .and_then(|v| {
                    let open = &tail[v..];
                    let gt = open.find('>')?;
                    if open[..gt].ends_with('/') {
                        return Some(String::new());
                    }
                    let close = open.find("</Value>")?;
                    Some(unescape(&open[gt + 1..close]))
                })
                .unwrap_or_default();
            // An earlier version's password is kept; its other strings are
            // that version's, not the entry's.
            let wanted = !in_history_entry || key == "Password";
            if wanted && !parameters.contains(&key.as_str()) && !value.trim().is_empty() {
                values.push(SourceValue {
                    record: format!("line {entry_line}"),
                    path: key.clone(),
                    value,
                });
            }
            rest = &after[end..];
        }
    }
    check("keepass.xml", Format::KeepassXml, values);
}

#[test]
fn otpauth_lists_account_for_every_secret_and_counter() {
    for file in ["otpauth.txt", "otpauth-edge.txt"] {
        let text = String::from_utf8(fixture(file)).unwrap();
        let mut values = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let record = format!("line {}", i + 1);
            values.push(SourceValue {
                record: record.clone(),
                path: "uri".into(),
                value: line.to_string(),
            });
            if let Some(c) = line
                .split(['?', '&'])
                .find_map(|kv| kv.strip_prefix("counter="))
            {
                values.push(SourceValue {
                    record,
                    path: "counter".into(),
                    value: c.to_string(),
                });
            }
        }
        check(file, Format::Otpauth, values);
    }
}

/// Every string of every KDBX entry (and each earlier password of its
/// history), numbered as the importer names its records: depth first,
/// a group's entries before its subgroups.
#[test]
fn kdbx_accounts_for_every_value() {
    fn walk(
        group: &::keepass::db::GroupRef<'_>,
        n: &mut usize,
        is_root: bool,
        values: &mut Vec<SourceValue>,
    ) {
        let parameters = [
            "TimeOtp-Length",
            "TimeOtp-Period",
            "TimeOtp-Algorithm",
            "TOTP Settings",
        ];
        let first = *n + 1;
        for entry in group.entries() {
            *n += 1;
            let record = format!("entry {n}");
            for (key, value) in &entry.fields {
                let value = value.get().to_string();
                if !parameters.contains(&key.as_str()) && !value.trim().is_empty() {
                    values.push(SourceValue {
                        record: record.clone(),
                        path: key.clone(),
                        value,
                    });
                }
            }
            for old in entry.history.iter().flat_map(|h| h.get_entries()) {
                if let Some(p) = old.get_password().filter(|p| !p.is_empty()) {
                    values.push(SourceValue {
                        record: record.clone(),
                        path: "History/Password".into(),
                        value: p.to_string(),
                    });
                }
            }
        }
        if !is_root && *n >= first {
            values.push(SourceValue {
                record: format!("entry {first}"),
                path: "Group".into(),
                value: group.name.clone(),
            });
        }
        for child in group.groups() {
            walk(&child, n, false, values);
        }
    }
    for file in ["keepass.kdbx", "keepassxc-kdbx3.kdbx", "keepass-kdbx2.kdbx"] {
        let mut bytes = fixture(file);
        if bytes.get(10..12) == Some(&[2, 0]) {
            // KDBX 2 is read as 3 (see `keepass::parse_kdbx`).
            bytes[8..12].copy_from_slice(&[0, 0, 3, 0]);
        }
        let key = ::keepass::DatabaseKey::new().with_password("coffer-test");
        let db = ::keepass::Database::open(&mut &bytes[..], key)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let mut values = Vec::new();
        walk(&db.root(), &mut 0, true, &mut values);
        check_with(file, Format::Kdbx, Some("coffer-test"), values);
    }
}

/// Every OtpParameters of every batch of a Google Authenticator export,
/// read from the protobuf wire format itself: secret (as base32), name,
/// issuer and a HOTP counter.
#[test]
fn otpauth_migration_accounts_for_every_value() {
    /// (field number, varint value or bytes) of one message's fields.
    fn fields(mut b: &[u8]) -> Vec<(u64, Result<u64, Vec<u8>>)> {
        fn varint(b: &mut &[u8]) -> u64 {
            let mut n = 0u64;
            for shift in (0..64).step_by(7) {
                let (byte, rest) = b.split_first().expect("truncated varint");
                *b = rest;
                n |= u64::from(byte & 0x7F) << shift;
                if byte & 0x80 == 0 {
                    break;
                }
            }
            n
        }
        let mut out = Vec::new();
        while !b.is_empty() {
            let tag = varint(&mut b);
            match tag & 7 {
                0 => out.push((tag >> 3, Ok(varint(&mut b)))),
                2 => {
                    let len = varint(&mut b) as usize;
                    out.push((tag >> 3, Err(b[..len].to_vec())));
                    b = &b[len..];
                }
                wire => panic!("wire type {wire} is not in Google's export"),
            }
        }
        out
    }
    let text = String::from_utf8(fixture("otpauth-migration.txt")).unwrap();
    let mut values = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some(data) = line.trim().split("data=").nth(1) else {
            continue;
        };
        let data = percent_encoding::percent_decode_str(data)
            .decode_utf8()
            .unwrap();
        let payload = data_encoding::BASE64.decode(data.as_bytes()).unwrap();
        let otps = fields(&payload).into_iter().filter(|(f, _)| *f == 1);
        for (n, (_, otp)) in otps.enumerate() {
            let record = format!("line {} account {}", i + 1, n + 1);
            for (field, value) in fields(&otp.unwrap_err()) {
                let value = match (field, value) {
                    (1, Err(secret)) => data_encoding::BASE32_NOPAD.encode(&secret),
                    (2 | 3, Err(text)) => String::from_utf8(text).unwrap(),
                    (7, Ok(counter)) => counter.to_string(),
                    _ => continue, // algorithm, digits, type: in the item's TOTP URI
                };
                if !value.is_empty() {
                    values.push(SourceValue {
                        record: record.clone(),
                        path: format!("field {field}"),
                        value,
                    });
                }
            }
        }
    }
    check("otpauth-migration.txt", Format::OtpauthMigration, values);
}

/// The walkers above must fail when a value goes missing: drop one custom
/// field from a parse and the Bitwarden check names it.
#[test]
fn a_lost_value_is_caught() {
    let text = String::from_utf8(fixture("bitwarden.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let mut values = Vec::new();
    json_leaves(
        "item 1",
        "",
        &doc["items"][0],
        &|p| ends_with_any(p, &["id", "type"]),
        &mut values,
    );
    let mut report = parse(Format::BitwardenJson, text.as_bytes(), None).unwrap();
    report.items[0].fields.remove("custom:hidden:PIN");
    let hay = haystack(&report);
    let missing: Vec<&str> = values
        .iter()
        .filter(|v| {
            !candidates(&v.value)
                .iter()
                .any(|c| hay.contains(c.as_str()))
        })
        .map(|v| v.value.as_str())
        .collect();
    assert!(missing.contains(&"4711"), "{missing:?}");
}
