//! Bitwarden: the unencrypted JSON export and the CSV export.
//!
//! JSON (`{"encrypted": false, "folders": [...], "items": [...]}`; an
//! organization export has `collections` instead of `folders`):
//! - type 1 login: `login.username`, `password`, `totp`, `uris[].uri`;
//!   passkeys (`fido2Credentials`) are listed as left out;
//! - type 2 secure note: `notes`;
//! - type 3 card: `card.cardholderName`, `number`, `code` (CVV),
//!   `expMonth`/`expYear` (→ `MM/YY`); `brand` is a custom field;
//! - type 4 identity and type 5 SSH key: notes (see below).
//!
//! `fields[]` (type 0 text, 1 hidden, 2 boolean) become custom fields of
//! that kind (an unset boolean is unchecked); type 3 (linked) fields hold
//! no value, only a link to another field: they are listed as left out.
//! `passwordHistory` becomes earlier passwords, `archivedDate` the
//! `archived` mark; identities (type 4) and SSH keys (type 5) become notes
//! with their fields as custom fields; passkeys and attachments are listed
//! as left out. A `null` inside any list (seen in real exports) is ignored.
//! Folder names use `/` for nesting in Bitwarden (`Work/Dev`), which
//! becomes `Work > Dev`. An encrypted export is refused.
//!
//! CSV (`folder,favorite,type,name,notes,fields,reprompt,login_uri,
//! login_username,login_password,login_totp`; `collections` instead of
//! `folder` for organizations): `type` is `login` or `note`; `login_uri`
//! holds one or more URIs separated by commas or newlines; `fields` holds
//! `name: value` lines, each a text custom field (a line without `: `
//! continues the value before it).

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use coffer_crdt::schema::CustomKind;

use super::{
    folder_from_parts, json_error, null_default, read_csv, unix_of_rfc3339, Format, ImportError,
    ImportReport, ItemBuilder, Skipped,
};

#[derive(Deserialize)]
struct Export {
    #[serde(default)]
    encrypted: bool,
    #[serde(default, deserialize_with = "null_default")]
    folders: Vec<Option<Folder>>,
    #[serde(default, deserialize_with = "null_default")]
    collections: Vec<Option<Folder>>,
    items: Option<Vec<Value>>,
}

#[derive(Deserialize)]
struct Folder {
    id: String,
    #[serde(default, deserialize_with = "null_default")]
    name: String,
}

/// A list that may be `null` and may hold `null`s (both seen in real
/// exports): what is not `null` in it.
type List<T> = Option<Vec<Option<T>>>;

fn each<T>(list: &List<T>) -> impl Iterator<Item = &T> {
    list.iter().flatten().flatten()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    #[serde(rename = "type")]
    kind: u8,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    notes: Option<String>,
    #[serde(default)]
    folder_id: Option<String>,
    #[serde(default)]
    collection_ids: List<String>,
    #[serde(default)]
    fields: List<Field>,
    #[serde(default)]
    login: Option<Login>,
    #[serde(default)]
    card: Option<Card>,
    #[serde(default)]
    identity: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    ssh_key: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    password_history: List<PasswordHistory>,
    #[serde(default)]
    archived_date: Option<String>,
    #[serde(default)]
    attachments: List<Attachment>,
}

#[derive(Deserialize)]
struct Field {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    value: Option<Value>,
    #[serde(rename = "type", default)]
    kind: u8,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Login {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    totp: Option<String>,
    #[serde(default)]
    uris: List<Uri>,
    #[serde(default)]
    fido2_credentials: List<Value>,
}

#[derive(Deserialize)]
struct Uri {
    #[serde(default)]
    uri: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Card {
    #[serde(default)]
    cardholder_name: Option<String>,
    #[serde(default)]
    brand: Option<String>,
    #[serde(default)]
    number: Option<String>,
    #[serde(default)]
    exp_month: Option<String>,
    #[serde(default)]
    exp_year: Option<String>,
    #[serde(default)]
    code: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PasswordHistory {
    #[serde(default)]
    last_used_date: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Attachment {
    #[serde(default)]
    file_name: Option<String>,
}

fn s(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

/// The identity fields of Bitwarden's export, in its order, with titles.
const IDENTITY: [(&str, &str, CustomKind); 18] = [
    ("title", "title", CustomKind::Text),
    ("firstName", "first name", CustomKind::Text),
    ("middleName", "middle name", CustomKind::Text),
    ("lastName", "last name", CustomKind::Text),
    ("address1", "address 1", CustomKind::Text),
    ("address2", "address 2", CustomKind::Text),
    ("address3", "address 3", CustomKind::Text),
    ("city", "city", CustomKind::Text),
    ("state", "state", CustomKind::Text),
    ("postalCode", "postal code", CustomKind::Text),
    ("country", "country", CustomKind::Text),
    ("company", "company", CustomKind::Text),
    ("email", "email", CustomKind::Email),
    ("phone", "phone", CustomKind::Phone),
    ("ssn", "social security number", CustomKind::Hidden),
    ("username", "username", CustomKind::Text),
    ("passportNumber", "passport number", CustomKind::Hidden),
    ("licenseNumber", "license number", CustomKind::Hidden),
];

pub(super) fn parse_json(text: &str) -> Result<ImportReport, ImportError> {
    const F: Format = Format::BitwardenJson;
    let export: Export = serde_json::from_str(text).map_err(|e| json_error(F, "", &e))?;
    if export.encrypted {
        return Err(ImportError::Encrypted { format: F });
    }
    let Some(items) = export.items else {
        return Err(ImportError::malformed(
            F,
            "top level",
            "no \"items\" list: not a Bitwarden JSON export",
        ));
    };
    let folders: HashMap<&str, Option<String>> = export
        .folders
        .iter()
        .chain(&export.collections)
        .flatten()
        .map(|f| (f.id.as_str(), folder_from_parts(f.name.split('/'))))
        .collect();
    let mut report = ImportReport::default();
    for (i, value) in items.into_iter().enumerate() {
        let record = format!("item {}", i + 1);
        if value.is_null() {
            continue;
        }
        let item: Item =
            serde_json::from_value(value).map_err(|e| json_error(F, record.clone(), &e))?;
        let name = s(&item.name).trim().to_string();
        let kind = match item.kind {
            1 => "login",
            2 | 4 | 5 => "note",
            3 => "card",
            other => {
                report.skipped.push(Skipped {
                    field: None,
                    record: format!("{record} '{name}'"),
                    reason: format!("unknown Bitwarden item type {other}"),
                });
                continue;
            }
        };
        let mut b = ItemBuilder::new(kind, record.clone());
        b.name(&name);
        let folder_id = item
            .folder_id
            .as_deref()
            .or_else(|| each(&item.collection_ids).next().map(String::as_str));
        b.folder(folder_id.and_then(|id| folders.get(id).cloned().flatten()));
        b.notes(s(&item.notes));
        if let Some(login) = item.login.as_ref().filter(|_| kind == "login") {
            b.set("username", s(&login.username));
            b.set("password", s(&login.password));
            for uri in each(&login.uris) {
                b.url(s(&uri.uri));
            }
            b.totp(s(&login.totp));
            let passkeys = each(&login.fido2_credentials).count();
            if passkeys > 0 {
                b.leave_out(
                    if passkeys == 1 {
                        "passkey".to_string()
                    } else {
                        format!("{passkeys} passkeys")
                    },
                    "passkeys are not supported",
                );
            }
        }
        if let Some(card) = item.card.as_ref().filter(|_| kind == "card") {
            b.set("holder", s(&card.cardholder_name));
            b.card_number(s(&card.number));
            b.card_cvv(s(&card.code));
            b.card_expiry(s(&card.exp_month), s(&card.exp_year));
            b.custom(CustomKind::Text, "brand", s(&card.brand));
        }
        if let Some(identity) = item.identity.as_ref().filter(|_| item.kind == 4) {
            b.custom(CustomKind::Text, "Bitwarden type", "identity");
            for (key, title, ckind) in IDENTITY {
                if let Some(Value::String(v)) = identity.get(key) {
                    b.custom(ckind, title, v);
                }
            }
        }
        if let Some(key) = item.ssh_key.as_ref().filter(|_| item.kind == 5) {
            b.custom(CustomKind::Text, "Bitwarden type", "SSH key");
            for (k, title, ckind) in [
                ("privateKey", "private key", CustomKind::Hidden),
                ("publicKey", "public key", CustomKind::Text),
                ("keyFingerprint", "fingerprint", CustomKind::Text),
            ] {
                if let Some(Value::String(v)) = key.get(k) {
                    b.custom(ckind, title, v);
                }
            }
        }
        for field in each(&item.fields) {
            let value = match &field.value {
                Some(Value::String(v)) => v.clone(),
                Some(Value::Bool(v)) => v.to_string(),
                Some(Value::Number(v)) => v.to_string(),
                _ => String::new(),
            };
            let title = s(&field.name);
            match field.kind {
                0 => b.custom(CustomKind::Text, title, &value),
                1 => b.custom(CustomKind::Hidden, title, &value),
                // A boolean: an unset one is unchecked.
                2 => {
                    let checked = value.trim().eq_ignore_ascii_case("true");
                    b.custom(CustomKind::Checkbox, title, &checked.to_string());
                }
                // Linked: names another field of the item (its username,
                // a card's number, ...) and holds no value of its own.
                3 => b.leave_out(
                    format!("linked field '{}'", title.trim()),
                    "links to other fields are not supported",
                ),
                _ => b.custom(CustomKind::Text, title, &value),
            }
        }
        for h in each(&item.password_history) {
            b.history(
                h.last_used_date.as_deref().and_then(unix_of_rfc3339),
                s(&h.password),
            );
        }
        if let Some(date) = item.archived_date.as_deref() {
            b.archived(unix_of_rfc3339(date));
        }
        for a in each(&item.attachments) {
            b.leave_out(
                format!("attachment '{}'", s(&a.file_name)),
                "attachments are not supported",
            );
        }
        b.finish(&mut report);
    }
    Ok(report)
}

pub(super) fn parse_csv(text: &str) -> Result<ImportReport, ImportError> {
    const F: Format = Format::BitwardenCsv;
    let mut report = ImportReport::default();
    let required = [
        "type",
        "name",
        "notes",
        "fields",
        "login_uri",
        "login_username",
    ];
    let header_has_folder = {
        let first = text.lines().next().unwrap_or("").to_ascii_lowercase();
        first.split(',').any(|c| {
            let c = c.trim().trim_matches('"');
            c == "folder" || c == "collections"
        })
    };
    if !header_has_folder {
        return Err(ImportError::malformed(
            F,
            "line 1",
            "missing column(s) folder (or collections): the header must have folder, \
             favorite, type, name, notes, fields, reprompt, login_uri, login_username, \
             login_password, login_totp (is this a bitwarden-csv file?)",
        ));
    }
    read_csv(F, text, &required, |line, row| {
        let record = format!("line {line}");
        let kind = match row.get("type").trim().to_ascii_lowercase().as_str() {
            "login" | "" => "login",
            "note" => "note",
            other => {
                report.skipped.push(Skipped {
                    field: None,
                    record: format!("{record} '{}'", row.get("name").trim()),
                    reason: format!("item type {other:?} is not supported"),
                });
                return Ok(());
            }
        };
        let mut b = ItemBuilder::new(kind, record);
        b.name(row.get("name"));
        let folder = if row.get("folder").is_empty() {
            row.get("collections").split(',').next().unwrap_or("")
        } else {
            row.get("folder")
        };
        b.folder(folder_from_parts(folder.split('/')));
        b.notes(row.get("notes"));
        // `name: value` lines; a line without `: ` continues the value
        // before it.
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in row.get("fields").lines() {
            match line.split_once(": ") {
                Some((k, v)) => fields.push((k.to_string(), v.to_string())),
                None => match fields.last_mut() {
                    Some((_, v)) => {
                        v.push('\n');
                        v.push_str(line);
                    }
                    None if !line.trim().is_empty() => fields.push(("field".into(), line.into())),
                    None => {}
                },
            }
        }
        for (k, v) in fields {
            b.custom(CustomKind::Text, &k, &v);
        }
        if kind == "login" {
            for uri in row.get("login_uri").split([',', '\n']) {
                b.url(uri);
            }
            b.set("username", row.get("login_username"));
            b.set("password", row.get("login_password"));
            b.totp(row.get("login_totp"));
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
    fn json_organization_export() {
        // Organization exports have collections instead of folders.
        let json = br#"{
            "encrypted": false,
            "collections": [{"id": "c1", "organizationId": "o1", "name": "Team/Ops", "externalId": null}],
            "items": [
                {"type": 1, "name": "Router", "folderId": null, "organizationId": "o1",
                 "collectionIds": ["c1"], "notes": null,
                 "login": {"username": "admin", "password": "r0uter", "totp": null, "uris": null}}
            ]
        }"#;
        let report = parse(Format::BitwardenJson, json, None).unwrap();
        assert_items(
            &report.items,
            &[item(
                "login",
                "Router",
                Some("Team > Ops"),
                &[("username", "admin"), ("password", "r0uter")],
                &[],
            )],
        );
        assert!(report.skipped.is_empty());
    }

    /// The parsing part of the issue's benchmark (10,000 items, under 2 s);
    /// generous here since tests are not optimised.
    #[test]
    fn ten_thousand_items() {
        let items: Vec<String> = (0..10_000)
            .map(|i| {
                format!(
                    r#"{{"type": 1, "name": "Site {i}", "folderId": "f{}", "notes": "n {i}",
                      "fields": [{{"name": "k", "value": "v", "type": 0}}],
                      "login": {{"username": "user{i}", "password": "pw{i}",
                      "totp": "JBSWY3DPEHPK3PXP", "uris": [{{"uri": "https://s{i}.example"}}]}}}}"#,
                    i % 10
                )
            })
            .collect();
        let folders: Vec<String> = (0..10)
            .map(|i| format!(r#"{{"id": "f{i}", "name": "Folder {i}"}}"#))
            .collect();
        let json = format!(
            r#"{{"encrypted": false, "folders": [{}], "items": [{}]}}"#,
            folders.join(","),
            items.join(",")
        );
        let start = std::time::Instant::now();
        let report = parse(Format::BitwardenJson, json.as_bytes(), None).unwrap();
        let took = start.elapsed();
        assert_eq!(report.items.len(), 10_000);
        assert!(report.skipped.is_empty());
        assert!(took < std::time::Duration::from_secs(10), "{took:?}");
        eprintln!("parsed 10,000 Bitwarden items in {took:?}");
    }

    #[test]
    fn json_malformed() {
        let f = Format::BitwardenJson;
        let good = fixture("bitwarden.json");
        let err = parse(f, &good[..good.len() / 2], None)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("bitwarden-json: line "), "{err}");
        assert!(err.contains("the JSON ends too early"), "{err}");
        let err = parse(
            f,
            b"{\"items\": [{\"type\": \"login\", \"name\": \"x\"}]}",
            None,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "bitwarden-json: item 1: unexpected content: invalid type: string \"…\", expected u8"
        );
        let err = parse(
            f,
            b"{\"items\": [{\"type\": 1, \"login\": {\"password\": 42}}]}",
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("item 1"), "{err}");
        let err = parse(
            f,
            b"{\"encrypted\": true, \"encKeyValidation_DO_NOT_EDIT\": \"2.x\", \"data\": \"2.y\"}",
            None,
        )
        .unwrap_err();
        assert!(matches!(err, ImportError::Encrypted { .. }));
        let err = parse(f, b"{\"folders\": []}", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no \"items\" list"), "{err}");
        let err = parse(f, b"[1,2", None).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
        // A value never shows up in a message.
        let err = parse(f, b"{\"items\": [{\"type\": \"hunter2\"}]}", None)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn csv_malformed() {
        let f = Format::BitwardenCsv;
        let header = "folder,favorite,type,name,notes,fields,reprompt,login_uri,login_username,login_password,login_totp\n";
        let err = parse(
            f,
            format!("{header},,login,x,\"unterminated,,,,,,\n").as_bytes(),
            None,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "bitwarden-csv: line 2: bad CSV quoting: a quoted field is never closed (truncated file?)"
        );
        let err = parse(f, format!("{header},,login,x,,\n").as_bytes(), None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "bitwarden-csv: line 2: 6 fields where the header has 11"
        );
        let err = parse(f, b"name,url,username,password\nx,y,z,w\n", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("bitwarden-csv: line 1: missing column(s) folder"),
            "{err}"
        );
        let err = parse(f, b"folder,name,url\nx,y,z\n", None)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("bitwarden-csv: line 1: missing column(s) type, notes, fields, login_uri, login_username"), "{err}");
    }
}
