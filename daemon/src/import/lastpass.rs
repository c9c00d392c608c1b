//! LastPass' CSV export: `url,username,password,totp,extra,name,grouping,fav`
//! (`totp` is missing in older exports).
//!
//! - `url` `http://sn` marks a secure note: `extra` is its text. A typed
//!   note's `extra` starts with `NoteType:...` followed by `Key:Value`
//!   lines, and `Notes:` (last, possibly multi-line) holds its notes.
//!   `NoteType:Credit Card` becomes a card (`Name on Card`, `Number`,
//!   `Security Code`, `Expiration Date` as `June,2027`; the other keys go to
//!   the notes); addresses, passports, driver's licenses, social security
//!   numbers and SSH keys are skipped; every other note type (bank account,
//!   database, server, ...) becomes a note with its keys as `Key: Value`
//!   lines.
//! - Otherwise a login; `extra` is its notes and `url` `http://` (LastPass'
//!   placeholder for none) is left out.
//! - `grouping` is the folder, `\` separating nested folders (`Work\Dev` →
//!   `Work > Dev`); `(none)` is no folder.

use super::{folder_from_parts, read_csv, Format, ImportError, ImportReport, ItemBuilder, Skipped};

const SKIPPED_NOTE_TYPES: [&str; 5] = [
    "Address",
    "Driver's License",
    "Passport",
    "Social Security",
    "SSH Key",
];

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
            if SKIPPED_NOTE_TYPES.contains(&note_type) {
                report.skipped.push(Skipped {
                    record: format!("{record} '{}'", row.get("name").trim()),
                    reason: format!("LastPass {note_type} notes are not supported"),
                });
                return Ok(());
            }
            // Key:Value lines, then Notes: to the end.
            let (keys, notes) = match body.find("Notes:") {
                Some(i) if i == 0 || body[..i].ends_with('\n') => {
                    (&body[..i], &body[i + "Notes:".len()..])
                }
                _ => (body, ""),
            };
            let card = note_type == "Credit Card";
            let mut b = ItemBuilder::new(if card { "card" } else { "note" }, record);
            b.name(row.get("name"));
            b.folder(folder);
            b.notes(notes);
            for kv in keys.lines() {
                let Some((k, v)) = kv.split_once(':') else {
                    continue;
                };
                // LastPass metadata, and empty dates stored as ",".
                if k == "Language" || v.trim() == "," {
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
                    (true, "Type") => b.extra("type", v.trim()),
                    _ => b.extra(k, v.trim()),
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
    use super::super::test_support::*;
    use super::super::*;

    #[test]
    fn fixture_items() {
        let report = parse(Format::LastpassCsv, &fixture("lastpass.csv"), None).unwrap();
        assert_items(
            &report.items,
            &[
                item(
                    "login",
                    "GitHub",
                    Some("Work > Dev"),
                    &[
                        ("username", "octo@example.com"),
                        ("password", "gh,p@ss\"q"),
                        ("totp", &uri("JBSWY3DPEHPK3PXP")),
                        ("notes", "Line one\nLine two"),
                    ],
                    &["https://github.com/login"],
                ),
                item(
                    "login",
                    "Bücher 📚",
                    None,
                    &[("username", "leser"), ("password", "Bücher2024")],
                    &[],
                ),
                item(
                    "note",
                    "日本語のメモ",
                    Some("Privat"),
                    &[("notes", "一行目\n二行目 🎉")],
                    &[],
                ),
                item(
                    "card",
                    "Visa Gold",
                    Some("Finance"),
                    &[
                        ("holder", "Jörg Müller"),
                        ("number", "4111111111111111"),
                        ("cvv", "123"),
                        ("expiry", "06/27"),
                        ("notes", "Card notes\nsecond line\n\ntype: Visa"),
                    ],
                    &[],
                ),
                item(
                    "note",
                    "Bank",
                    None,
                    &[(
                        "notes",
                        "Bank Name: Sparkasse\nAccount Number: 12345\nPIN: 0000",
                    )],
                    &[],
                ),
            ],
        );
        assert_eq!(
            report.skipped,
            vec![
                skipped("line 22 'Home'", "LastPass Address notes are not supported"),
                skipped("line 26", "empty record"),
            ]
        );
    }

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
