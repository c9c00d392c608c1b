//! LastPass' CSV export: `url,username,password,totp,extra,name,grouping,fav`
//! (`totp` is missing in older exports).
//!
//! - `url` `http://sn` marks a secure note: `extra` is its text. A typed
//!   note's `extra` starts with `NoteType:...` followed by `Key:Value`
//!   lines, and `Notes:` (last, possibly multi-line) holds its notes.
//!   `NoteType:Credit Card` becomes a card (`Name on Card`, `Number`,
//!   `Security Code`, `Expiration Date` as `June,2027`; the other keys are
//!   custom fields). Every other note type (address, passport, driver's
//!   license, social security number, SSH key, bank account, database,
//!   server, ...) keeps its keys as custom fields (numbers, PINs, passwords
//!   and keys hidden, `Month,Day,Year` dates as dates) and a `LastPass type`
//!   field; one with a `Username`/`Password`/`URL` is a login, else a note.
//! - Otherwise a login; `extra` is its notes and `url` `http://` (LastPass'
//!   placeholder for none) is left out.
//! - `grouping` is the folder, `\` separating nested folders (`Work\Dev` →
//!   `Work > Dev`); `(none)` is no folder.

use coffer_crdt::schema::CustomKind;

use super::{folder_from_parts, read_csv, Format, ImportError, ImportReport, ItemBuilder};

/// The kind of a typed note's `Key:Value`: secrets hidden, `Month,Day,Year`
/// dates as dates.
fn kind_of(note_type: &str, key: &str, value: &str) -> (CustomKind, String) {
    let k = key.to_ascii_lowercase();
    let secret = [
        "password",
        "pin",
        "passphrase",
        "private key",
        "security code",
        "license key",
    ]
    .iter()
    .any(|s| k.contains(s))
        || (k == "number"
            && matches!(
                note_type,
                "Social Security" | "Passport" | "Driver's License"
            ))
        || k == "account number";
    if secret {
        return (CustomKind::Hidden, value.to_string());
    }
    if k.contains("date") || k == "expires" || k == "issued" {
        if let Some(d) = lastpass_date(value) {
            return (CustomKind::Date, d);
        }
    }
    if k == "email address" || k == "email" {
        return (CustomKind::Email, value.to_string());
    }
    (CustomKind::Text, value.to_string())
}

/// LastPass' `Month,Day,Year` (`June,15,1980`) as `YYYY-MM-DD`.
fn lastpass_date(v: &str) -> Option<String> {
    let parts: Vec<&str> = v.split(',').map(str::trim).collect();
    let [month, day, year] = parts[..] else {
        return None;
    };
    let mm = super::expiry(month, "2000")?;
    let d = format!("{year}-{}-{:0>2}", &mm[..2], day);
    coffer_crdt::schema::valid_date(&d).then_some(d)
}

pub(super) fn parse_csv(text: &str) -> Result<ImportReport, ImportError> {
    const F: Format = Format::LastpassCsv;
    let mut report = ImportReport::default();
    read_csv(
        F,
        text,
        &["url", "username", "password", "extra", "name", "grouping"],
        |line, row| {
            let record = format!("line {line}");
            let grouping = row.get("grouping").trim();
            let folder = if grouping == "(none)" {
                None
            } else {
                folder_from_parts(grouping.split('\\'))
            };
            let url = row.get("url").trim();
            let extra = row.get("extra");
            if url != "http://sn" {
                let mut b = ItemBuilder::new("login", record);
                b.name(row.get("name"));
                b.folder(folder);
                if url != "http://" && url != "https://" {
                    b.url(url);
                }
                b.set("username", row.get("username"));
                b.set("password", row.get("password"));
                b.totp(row.get("totp"));
                b.notes(extra);
                b.finish(&mut report);
                return Ok(());
            }
            let Some(rest) = extra.strip_prefix("NoteType:") else {
                let mut b = ItemBuilder::new("note", record);
                b.name(row.get("name"));
                b.folder(folder);
                b.notes(extra);
                b.finish(&mut report);
                return Ok(());
            };
            let (note_type, body) = rest.split_once('\n').unwrap_or((rest, ""));
            let note_type = note_type.trim();
            // Key:Value lines, then Notes: to the end.
            let (keys, notes) = match body.find("Notes:") {
                Some(i) if i == 0 || body[..i].ends_with('\n') => {
                    (&body[..i], &body[i + "Notes:".len()..])
                }
                _ => (body, ""),
            };
            let card = note_type == "Credit Card";
            let mut b = ItemBuilder::new(if card { "card" } else { "login" }, record);
            b.name(row.get("name"));
            b.folder(folder);
            b.notes(notes);
            if !card {
                b.custom(CustomKind::Text, "LastPass type", note_type);
            }
            let mut last: Option<String> = None;
            for kv in keys.lines() {
                let Some((k, v)) = kv.split_once(':') else {
                    // A line of a multi-line value (an SSH key, an address).
                    if let Some(key) = &last {
                        if let Some(value) = b.fields.get_mut(key) {
                            value.push('\n');
                            value.push_str(kv);
                        }
                    }
                    continue;
                };
                last = None;
                // LastPass metadata, and empty dates stored as ",".
                if k == "Language" || v.trim().trim_matches(',').is_empty() {
                    continue;
                }
                match (card, k) {
                    (true, "Name on Card") => b.set("holder", v.trim()),
                    (true, "Number") => b.card_number(v),
                    (true, "Security Code") => b.card_cvv(v),
                    (true, "Expiration Date") => {
                        let (m, y) = v.split_once(',').unwrap_or((v, ""));
                        b.card_expiry(m, y);
                    }
                    (false, "Username") if !b.fields.contains_key("username") => {
                        b.set("username", v.trim())
                    }
                    (false, "Password") if !b.fields.contains_key("password") => {
                        b.set("password", v)
                    }
                    (false, "URL") | (false, "Website") => b.url(v),
                    _ => {
                        let (kind, value) = kind_of(note_type, k, v.trim());
                        let before: Vec<String> = b.fields.keys().cloned().collect();
                        b.custom(kind, k, &value);
                        last = b.fields.keys().find(|key| !before.contains(key)).cloned();
                    }
                }
            }
            b.finish(&mut report);
            Ok(())
        },
    )?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::super::*;

    #[test]
    fn malformed() {
        let f = Format::LastpassCsv;
        let err = parse(f, b"url,username,password\nx,y,z\n", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("lastpass-csv: line 1: missing column(s) extra, name, grouping"),
            "{err}"
        );
        let err = parse(
            f,
            b"url,username,password,totp,extra,name,grouping,fav\nhttp://x,a,b,,\"notes\"x,n,,0\n",
            None,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(err, "lastpass-csv: line 2: bad CSV quoting: text after a closing quote (a quote inside a field must be doubled)");
        let err = parse(
            f,
            b"url,username,password,totp,extra,name,grouping,fav\nhttp://x,a,b\n",
            None,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(err, "lastpass-csv: line 2: 3 fields where the header has 8");
    }
}
