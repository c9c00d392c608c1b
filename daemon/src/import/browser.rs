//! Browsers' password CSV exports.
//!
//! - Chrome, Edge, Brave: `name,url,username,password,note` (`note` is
//!   missing in older exports). `name` is usually the site's host.
//! - Firefox: `url,username,password,httpRealm,formActionOrigin,guid,
//!   timeCreated,timeLastUsed,timePasswordChanged`. There is no name: the
//!   URL's host is used. Firefox' own `chrome://` logins (Firefox Accounts)
//!   are skipped.
//!
//! Neither has folders or TOTP. Chrome's notes keep `\n` line ends (Chrome
//! on Windows writes `\r\n`); Firefox' `httpRealm` and a `formActionOrigin`
//! other than the URL are custom fields; its `guid` and times are
//! bookkeeping.

use coffer_crdt::schema::CustomKind;

use super::{read_csv, url_host, Format, ImportError, ImportReport, ItemBuilder, Skipped};

pub(super) fn parse_chrome(text: &str) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport::default();
    read_csv(
        Format::ChromeCsv,
        text,
        &["name", "url", "username", "password"],
        |line, row| {
            let mut b = ItemBuilder::new("login", format!("line {line}"));
            b.name(row.get("name"));
            b.url(row.get("url"));
            b.set("username", row.get("username"));
            b.set("password", row.get("password"));
            // Chrome on Windows writes its notes' line ends as \r\n.
            b.notes_lf(row.get("note"));
            b.finish(&mut report);
            Ok(())
        },
    )?;
    Ok(report)
}

pub(super) fn parse_firefox(text: &str) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport::default();
    read_csv(
        Format::FirefoxCsv,
        text,
        &[
            "url",
            "username",
            "password",
            "httprealm",
            "formactionorigin",
        ],
        |line, row| {
            let record = format!("line {line}");
            let url = row.get("url").trim();
            if url.to_ascii_lowercase().starts_with("chrome://") {
                report.skipped.push(Skipped {
                    field: None,
                    record,
                    reason: "Firefox internal login (chrome:// URL)".into(),
                });
                return Ok(());
            }
            let mut b = ItemBuilder::new("login", record);
            b.name(&url_host(url).unwrap_or_default());
            b.url(url);
            b.set("username", row.get("username"));
            b.set("password", row.get("password"));
            b.custom(CustomKind::Text, "HTTP realm", row.get("httprealm").trim());
            let action = row.get("formactionorigin").trim();
            if !action.eq_ignore_ascii_case(url) {
                b.custom(CustomKind::Url, "form action", action);
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
    fn chrome_fixture() {
        let report = parse(Format::ChromeCsv, &fixture("chrome.csv"), None).unwrap();
        assert_items(
            &report.items,
            &[
                item(
                    "login",
                    "github.com",
                    None,
                    &[
                        ("username", "octo@example.com"),
                        ("password", "gh,p@ss\"q"),
                        ("notes", "Line one\nLine two"),
                    ],
                    &["https://github.com/login"],
                ),
                item(
                    "login",
                    "Bücher 📚",
                    None,
                    &[("username", "leser"), ("password", "Bücher2024")],
                    &["https://buecher.example.de/"],
                ),
                item(
                    "login",
                    "日本語.example.jp",
                    None,
                    &[("password", "パスワード")],
                    &["https://日本語.example.jp/"],
                ),
                item(
                    "login",
                    "android://hash@com.example.app/",
                    None,
                    &[("username", "app-user"), ("password", "app-pw")],
                    &["android://hash@com.example.app/"],
                ),
            ],
        );
        assert_eq!(report.skipped, vec![skipped("line 7", "empty record")]);
    }

    #[test]
    fn firefox_fixture() {
        let report = parse(Format::FirefoxCsv, &fixture("firefox.csv"), None).unwrap();
        assert_items(
            &report.items,
            &[
                item(
                    "login",
                    "github.com",
                    None,
                    &[("username", "octo@example.com"), ("password", "gh,p@ss\"q")],
                    &["https://github.com"],
                ),
                item(
                    "login",
                    "buecher.example.de",
                    None,
                    &[("password", "Bücher📚2024 \"multi\"\nline")],
                    &["https://buecher.example.de:8443"],
                ),
                item(
                    "login",
                    "日本語.example.jp",
                    None,
                    &[("username", "ユーザー"), ("password", "pw")],
                    &["https://日本語.example.jp"],
                ),
            ],
        );
        assert_eq!(
            report.skipped,
            vec![skipped("line 6", "Firefox internal login (chrome:// URL)")]
        );
    }

    #[test]
    fn malformed() {
        let err = parse(Format::ChromeCsv, b"name,url\na,b\n", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("chrome-csv: line 1: missing column(s) username, password"),
            "{err}"
        );
        let err = parse(
            Format::ChromeCsv,
            b"name,url,username,password\na,b,c,\"d\n",
            None,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "chrome-csv: line 2: bad CSV quoting: a quoted field is never closed (truncated file?)"
        );
        let err = parse(
            Format::FirefoxCsv,
            b"\"url\",\"username\",\"password\",\"httpRealm\",\"formActionOrigin\"\n\"a\",\"b\"\n",
            None,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(err, "firefox-csv: line 2: 2 fields where the header has 5");
        let err = parse(
            Format::FirefoxCsv,
            b"\xef\xbb\xbfurl,username,password,httpRealm,formActionOrigin\nhttps://a,\xff,c,,\n",
            None,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "firefox-csv: not UTF-8 text: invalid byte at line 2 (byte offset 62)"
        );
    }
}
