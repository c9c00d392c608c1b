//! Issue 19: every fixture, every item and every field of it, and every
//! record or field the report says was left out. Generated once from the
//! parsers' output and checked by hand against the fixtures; a change in
//! what an import keeps shows here as a diff.

use super::test_support::*;
use super::*;

/// Parses `file` as `format` (which must also be what [`detect`] finds in
/// its content) and compares everything.
fn check(
    file: &str,
    format: Format,
    password: Option<&str>,
    items: &[ImportedItem],
    skipped: &[Skipped],
) {
    let bytes = fixture(file);
    assert_eq!(detect(&bytes), Some(format), "{file}: detected by content");
    let report = parse(format, &bytes, password).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert_items(&report.items, items);
    assert_eq!(report.skipped, skipped, "{file}: skipped");
    assert_fit_the_schema(&report.items);
}

/// Every item is one the vault takes as it is (so one odd field never
/// sinks a whole import).
fn assert_fit_the_schema(items: &[ImportedItem]) {
    for item in items {
        let t = coffer_crdt::ItemType::parse(&item.item_type).unwrap();
        let mut fields = item.fields.clone();
        coffer_crdt::schema::normalize_new(t, &mut fields)
            .unwrap_or_else(|e| panic!("{}: {e}", item.name));
    }
}

/// Fields in places their type has none: a 2FA secret on an identity, a
/// username on a card. The identity becomes a login, the card keeps the
/// username as a custom field.
#[test]
fn built_in_fields_a_type_lacks_are_kept_so_the_item_fits() {
    let data = r#"{"accounts": [{"vaults": [{"attrs": {"name": "V"}, "items": [
        {"categoryUuid": "004", "overview": {"title": "Me"}, "details": {"sections": [{"fields": [
            {"title": "one-time password", "id": "otp", "value": {"totp": "JBSWY3DPEHPK3PXP"}},
            {"title": "first name", "id": "firstname", "value": {"string": "Jane"}}]}]}},
        {"categoryUuid": "002", "overview": {"title": "Card"}, "details": {
            "loginFields": [{"value": "jane", "name": "user", "fieldType": "T", "designation": "username"}],
            "sections": [{"fields": [{"id": "ccnum", "value": {"creditCardNumber": "4111111111111111"}}]}]}}
    ]}]}]}"#;
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut buf);
        w.start_file("export.data", zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut w, data.as_bytes()).unwrap();
        w.finish().unwrap();
    }
    let report = parse(Format::OnePassword1pux, buf.get_ref(), None).unwrap();
    assert_items(
        &report.items,
        &[
            item(
                "login",
                "Me",
                Some("V"),
                &[
                    ("custom:text:1Password category", "identity"),
                    ("custom:text:first name", "Jane"),
                    (
                        "totp",
                        "otpauth://totp/?secret=JBSWY3DPEHPK3PXP&algorithm=SHA1&digits=6&period=30",
                    ),
                ],
                &[],
            ),
            item(
                "card",
                "Card",
                Some("V"),
                &[
                    ("custom:text:username", "jane"),
                    ("number", "4111111111111111"),
                ],
                &[],
            ),
        ],
    );
    assert_fit_the_schema(&report.items);
}

#[test]
fn f1password_1pux() {
    check(
        "1password.1pux",
        Format::OnePassword1pux,
        None,
        &[
            item("login", "GitHub", Some("Private"), &[("custom:email:Backup email", "octo+b@example.com"), ("custom:hidden:Recovery PIN", "4711"), ("custom:hidden:TOTP", "JBSWY3DPEHPK3PXQ"), ("custom:history:Earlier password (2023-07-22)", "old-password"), ("custom:text:tags", "dev, work"), ("notes", "Recovery codes in the safe.\nSecond line."), ("password", "gh-p@ss \"quoted\""), ("totp", "otpauth://totp/GitHub:octo?secret=JBSWY3DPEHPK3PXP&issuer=GitHub&algorithm=SHA1&digits=6&period=30"), ("username", "octo@example.com")], &["https://github.com/login", "https://gist.github.com"]),
            item("login", "Bücher 📚", Some("Private"), &[("password", "Bücher2024"), ("totp", "otpauth://totp/?secret=JBSWY3DPEHPK3PXP&algorithm=SHA1&digits=6&period=30"), ("username", "leser")], &["https://buecher.example.de"]),
            item("note", "日本語のメモ", Some("Private"), &[("notes", "一行目\n二行目 🎉")], &[]),
            item("card", "Visa Gold", Some("Family"), &[("custom:month-year:valid from", "2023-01"), ("custom:text:type", "visa"), ("cvv", "123"), ("expiry", "08/27"), ("holder", "Jörg Müller"), ("number", "4111111111111111")], &[]),
            item("note", "Jane Doe", Some("Family"), &[("custom:text:1Password category", "identity"), ("custom:text:first name", "Jane")], &[]),
            item("login", "Old login", Some("Family"), &[("archived", "2020-09-13"), ("username", "old")], &["https://old.example.com"]),
            item("note", "Deploy key", Some("Family"), &[("custom:hidden:private key", "-----BEGIN PRIVATE KEY-----"), ("custom:text:1Password category", "SSH key")], &[]),
            item("login", "Wi-Fi password", Some("Family"), &[("password", "correct horse battery staple")], &[]),
        ],
        &[
            left_out("item 1 'GitHub'", "attachment 'recovery-codes.txt'", "attachments are not supported"),
        ],
    );
}

#[test]
fn f1password_categories_1pux() {
    check(
        "1password-categories.1pux",
        Format::OnePassword1pux,
        None,
        &[
            item("login", "web1", Some("Infra"), &[("custom:hidden:console password", "console-pw"), ("custom:phone:support phone", "+49 911 234"), ("custom:text:1Password category", "server"), ("custom:text:admin console URL", "https://panel.example.com"), ("custom:text:admin console username", "root"), ("custom:text:name", "Hetzner"), ("custom:text:tags", "prod"), ("notes", "Rack 4, slot 2"), ("password", "srv-p@ss"), ("username", "deploy")], &["ssh://web1.example.com"]),
            item("login", "App database", Some("Infra"), &[("custom:text:1Password category", "database"), ("custom:text:connection options", "sslmode=require"), ("custom:text:database", "app"), ("custom:text:port", "5432"), ("custom:text:server", "db.internal"), ("custom:text:type", "postgresql"), ("password", "db-pw"), ("username", "app_rw")], &[]),
            item("login", "Office Wi-Fi", Some("Infra"), &[("custom:hidden:wireless network password", "wifi-pass"), ("custom:text:1Password category", "wireless router"), ("custom:text:base station name", "Office AP"), ("custom:text:network name", "OctoNet"), ("custom:text:server / IP address", "192.168.1.1"), ("custom:text:wireless security", "wpa2p"), ("password", "router-admin")], &[]),
            item("login", "Work mail", Some("Infra"), &[("custom:hidden:password", "smtp-pw"), ("custom:text:1Password category", "email account"), ("custom:text:SMTP server", "smtp.example.com"), ("custom:text:port number", "993"), ("custom:text:server", "imap.example.com"), ("custom:text:type", "imap"), ("password", "mail-pw"), ("username", "octo@example.com")], &[]),
            item("login", "Payments API", Some("Infra"), &[("custom:date:expires", "2027-01-15"), ("custom:date:valid from", "2023-11-14"), ("custom:text:1Password category", "API credential"), ("custom:text:hostname", "api.example.com"), ("custom:text:type", "bearer"), ("password", "sk_live_fake"), ("username", "ci-bot")], &[]),
            item("note", "Deploy key", Some("Infra"), &[("custom:hidden:private key", "-----BEGIN OPENSSH PRIVATE KEY-----\nZmFrZQ==\n-----END OPENSSH PRIVATE KEY-----\n"), ("custom:text:1Password category", "SSH key"), ("custom:text:fingerprint", "SHA256:fakefingerprint"), ("custom:text:key type", "ed25519"), ("custom:text:public key", "ssh-ed25519 AAAAC3NzaFAKE deploy@example")], &[]),
            item("note", "Editor Pro", Some("Personal"), &[("custom:date:purchase date", "2023-01-01"), ("custom:email:registered email", "jane@example.com"), ("custom:text:1Password category", "software license"), ("custom:text:license key", "ABCD-EFGH-IJKL"), ("custom:text:licensed to", "Jane Doe"), ("custom:text:version", "2024.1"), ("custom:url:download page", "https://example.com/download")], &[]),
            item("note", "Girokonto", Some("Personal"), &[("custom:hidden:PIN", "9999"), ("custom:text:1Password category", "bank account"), ("custom:text:IBAN", "DE89370400440532013000"), ("custom:text:account number", "12345678"), ("custom:text:bank name", "Sparkasse"), ("custom:text:name on account", "Jörg Müller"), ("custom:text:type", "checking")], &[]),
            item("note", "Alpine Club", Some("Personal"), &[("custom:hidden:PIN", "1234"), ("custom:month-year:member since", "2019-01"), ("custom:text:1Password category", "membership"), ("custom:text:group", "Alpine Club"), ("custom:text:member ID", "AC-4711")], &[]),
            item("note", "Reisepass", Some("Personal"), &[("custom:date:date of birth", "1980-01-01"), ("custom:date:expiry date", "2030-01-01"), ("custom:text:1Password category", "passport"), ("custom:text:full name", "Jörg Müller"), ("custom:text:issuing country", "Deutschland"), ("custom:text:number", "C01X00T47"), ("custom:text:sex", "male"), ("custom:text:type", "P"), ("notes", "Renew before travelling.")], &[]),
            item("note", "SSN", Some("Personal"), &[("custom:hidden:number", "078-05-1120"), ("custom:text:1Password category", "social security number"), ("custom:text:name", "Jane Doe")], &[]),
            item("note", "Driver's licence", Some("Personal"), &[("custom:month-year:expiry date", "2029-05"), ("custom:text:1Password category", "driver license"), ("custom:text:full name", "Jane Doe"), ("custom:text:license class", "B"), ("custom:text:number", "D1234567")], &[]),
            item("note", "Jane Doe", Some("Personal"), &[("custom:date:birth date", "1980-01-01"), ("custom:email:email", "jane@example.com"), ("custom:phone:default phone", "+1 555 0100"), ("custom:text:1Password category", "identity"), ("custom:text:address", "1 Main St, Springfield, IL, 12345, us"), ("custom:text:first name", "Jane"), ("custom:text:last name", "Doe"), ("custom:text:username", "jdoe")], &[]),
            item("note", "Passport scan", Some("Personal"), &[("custom:text:1Password category", "document"), ("notes", "Scan of the passport")], &[]),
            item("login", "Old forum", Some("Personal"), &[("archived", "2024-03-09"), ("custom:checkbox:remember", "false"), ("custom:checkbox:terms", "true"), ("custom:date:created on", "2020-09-13"), ("custom:history:Earlier password (2022-04-15)", "old-pw-1"), ("custom:history:Earlier password (2023-03-28)", "old-pw-2"), ("custom:text:Extra", "untitled value"), ("password", "new-pw"), ("username", "jane")], &["https://forum.example.com"]),
        ],
        &[
            left_out("item 14 'Passport scan'", "document 'passport-scan.pdf'", "attachments are not supported"),
            left_out("item 15 'Old forum'", "attachment 'codes.txt'", "attachments are not supported"),
            left_out("item 15 'Old forum'", "reference 'related'", "links to other items are not supported"),
            left_out("item 15 'Old forum'", "passkey", "passkeys are not supported"),
            skipped("item 16 'Deleted login'", "in 1Password's trash"),
        ],
    );
}

#[test]
fn f1password_csv() {
    check(
        "1password.csv",
        Format::OnePasswordCsv,
        None,
        &[
            item("login", "GitHub", None, &[("custom:text:tags", "dev"), ("notes", "Line one\nLine two"), ("password", "gh,p@ss\"q"), ("totp", "otpauth://totp/GitHub:octo?secret=JBSWY3DPEHPK3PXP&issuer=GitHub&algorithm=SHA1&digits=6&period=30"), ("username", "octo@example.com")], &["https://github.com/login"]),
            item("login", "Bücher 📚", None, &[("password", "pw"), ("totp", "otpauth://totp/?secret=JBSWY3DPEHPK3PXP&algorithm=SHA1&digits=6&period=30"), ("username", "leser")], &["https://buecher.example.de"]),
            item("note", "日本語", None, &[("notes", "メモだけ")], &[]),
            item("login", "Old", None, &[("archived", "true"), ("password", "old"), ("username", "old")], &["https://old.example.com"]),
        ],
        &[
            skipped("line 7", "empty record"),
        ],
    );
}

#[test]
fn f1password7_mac_csv() {
    check(
        "1password7-mac.csv",
        Format::OnePasswordCsv,
        None,
        &[
            item(
                "login",
                "GitHub",
                None,
                &[
                    ("notes", "two\nlines"),
                    ("password", "gh-pass"),
                    ("username", "octo@example.com"),
                ],
                &["https://github.com/login"],
            ),
            item(
                "card",
                "Visa Gold",
                None,
                &[
                    ("cvv", "123"),
                    ("expiry", "08/27"),
                    ("holder", "Jörg Müller"),
                    ("notes", "card notes"),
                    ("number", "4111111111111111"),
                ],
                &[],
            ),
            item(
                "note",
                "Jane Doe",
                None,
                &[
                    ("custom:text:1Password category", "identity"),
                    ("custom:text:email", "jane@example.com"),
                    ("custom:text:first name", "Jane"),
                    ("custom:text:last name", "Doe"),
                ],
                &[],
            ),
            item(
                "note",
                "Editor Pro",
                None,
                &[
                    ("custom:hidden:license key", "ABCD-EFGH"),
                    ("custom:text:1Password category", "software license"),
                ],
                &[],
            ),
        ],
        &[],
    );
}

#[test]
fn f1password7_windows_csv() {
    check(
        "1password7-windows.csv",
        Format::OnePasswordCsv,
        None,
        &[
            item(
                "login",
                "GitHub",
                None,
                &[("password", "gh-pass"), ("username", "octo@example.com")],
                &["https://github.com/login"],
            ),
            item(
                "card",
                "Visa Gold",
                None,
                &[
                    ("custom:text:type", "visa"),
                    ("cvv", "123"),
                    ("expiry", "08/27"),
                    ("holder", "Jörg Müller"),
                    ("notes", "card notes"),
                    ("number", "4111111111111111"),
                ],
                &[],
            ),
            item(
                "note",
                "Jane Doe",
                None,
                &[
                    ("custom:text:first name", "Jane"),
                    ("custom:text:last name", "Doe"),
                ],
                &[],
            ),
            item(
                "note",
                "Locker",
                None,
                &[("custom:hidden:PIN", "4321")],
                &[],
            ),
            item(
                "login",
                "Quoted",
                None,
                &[
                    ("notes", "say \"hi\" in C:\\temp"),
                    ("password", "pa\"ss"),
                    ("username", "q-user"),
                ],
                &["https://q.example"],
            ),
        ],
        &[],
    );
}

#[test]
fn bitwarden_json() {
    check(
        "bitwarden.json",
        Format::BitwardenJson,
        None,
        &[
            item("login", "GitHub", Some("Work > Dev"), &[("custom:checkbox:Admin", "true"), ("custom:hidden:PIN", "4711"), ("custom:text:Recovery email", "octo+recovery@example.com"), ("notes", "Recovery codes in the safe.\nSecond line."), ("password", "gh-p@ss \"quoted\" \\ back"), ("totp", "otpauth://totp/?secret=JBSWY3DPEHPK3PXP&algorithm=SHA1&digits=6&period=30"), ("username", "octo@example.com")], &["https://github.com/login", "https://gist.github.com"]),
            item("login", "Bücher & Co", Some("Privat"), &[("password", "Bücher📚2024"), ("totp", "otpauth://totp/B%C3%BCcher:leser?secret=GEZDGNBVGY3TQOJQ&issuer=B%C3%BCcher&algorithm=SHA256&digits=8&period=60"), ("username", "leser")], &["https://buecher.example.de"]),
            item("login", "Steam", None, &[("password", "s7eam"), ("totp", "otpauth://totp/?secret=JBSWY3DPEHPK3PXP&algorithm=SHA1&digits=5&period=30&encoder=steam"), ("username", "gamer")], &["https://store.steampowered.com"]),
            item("login", "Bad TOTP", None, &[("custom:hidden:TOTP", "JBS1Y3DP"), ("password", "pw"), ("username", "someone")], &[]),
            item("note", "日本語のメモ", Some("Privat"), &[("notes", "一行目\n二行目 🎉\n\n")], &[]),
            item("card", "Visa Gold", Some("Finance"), &[("custom:text:brand", "Visa"), ("cvv", "123"), ("expiry", "07/27"), ("holder", "Jörg Müller"), ("number", "4111111111111111")], &[]),
            item("card", "Odd card", None, &[("custom:hidden:cvv", "12345"), ("custom:hidden:number", "1234"), ("holder", "X")], &[]),
            item("note", "Jane Doe", None, &[("custom:email:email", "jane@example.com"), ("custom:text:Bitwarden type", "identity"), ("custom:text:first name", "Jane"), ("custom:text:last name", "Doe"), ("custom:text:title", "Ms")], &[]),
            item("note", "Server key", None, &[("custom:hidden:private key", "-----BEGIN OPENSSH PRIVATE KEY-----\n..."), ("custom:text:Bitwarden type", "SSH key"), ("custom:text:fingerprint", "SHA256:x"), ("custom:text:public key", "ssh-ed25519 AAAA")], &[]),
            item("login", "Passkey only", None, &[], &[]),
            item("login", "example.org", None, &[("password", "only-a-password")], &["https://example.org/login"]),
            item("login", "Forum", Some("Privat"), &[("archived", "2024-02-01"), ("custom:checkbox:Beta", "false"), ("custom:checkbox:Newsletter", "false"), ("custom:history:Earlier password (2023-03-01)", "old-forum-1"), ("custom:history:Earlier password (2024-01-15)", "old-forum-2"), ("custom:text:Member since", "2019"), ("custom:text:Member since (2)", "again"), ("password", "forum-now"), ("username", "jane")], &["https://forum.example.com"]),
        ],
        &[
            left_out("item 1 'GitHub'", "linked field 'Linked user'", "links to other fields are not supported"),
            left_out("item 4 'Bad TOTP'", "TOTP", "not usable for codes (kept as a hidden field): invalid base32 secret: character '1' at position 4 is not allowed"),
            left_out("item 10 'Passkey only'", "passkey", "passkeys are not supported"),
            skipped("item 11", "empty record"),
            left_out("item 13 'Forum'", "passkey", "passkeys are not supported"),
            left_out("item 13 'Forum'", "attachment 'avatar.png'", "attachments are not supported"),
        ],
    );
}

#[test]
fn bitwarden_csv() {
    check(
        "bitwarden.csv",
        Format::BitwardenCsv,
        None,
        &[
            item("login", "GitHub", Some("Work > Dev"), &[("custom:text:PIN", "4711"), ("custom:text:Secret question", "Bücher"), ("notes", "Line one\nLine two"), ("password", "gh,p@ss\"q"), ("totp", "otpauth://totp/?secret=JBSWY3DPEHPK3PXP&algorithm=SHA1&digits=6&period=30"), ("username", "octo@example.com")], &["https://github.com/login", "https://gist.github.com"]),
            item("note", "日本語", None, &[("notes", "メモ 🎉\nzweite Zeile")], &[]),
            item("login", "Steam", Some("Games"), &[("password", "s7eam"), ("totp", "otpauth://totp/?secret=JBSWY3DPEHPK3PXP&algorithm=SHA1&digits=5&period=30&encoder=steam"), ("username", "gamer")], &["https://store.steampowered.com"]),
            item("login", "Mail", None, &[("totp", "otpauth://totp/Mail:me?secret=GEZDGNBVGY3TQOJQ&issuer=Mail&algorithm=SHA1&digits=6&period=30"), ("username", "me@example.com")], &[]),
        ],
        &[
            skipped("line 9", "empty record"),
        ],
    );
}

#[test]
fn lastpass_csv() {
    check(
        "lastpass.csv",
        Format::LastpassCsv,
        None,
        &[
            item(
                "login",
                "GitHub",
                Some("Work > Dev"),
                &[
                    ("notes", "Line one\nLine two"),
                    ("password", "gh,p@ss\"q"),
                    (
                        "totp",
                        "otpauth://totp/?secret=JBSWY3DPEHPK3PXP&algorithm=SHA1&digits=6&period=30",
                    ),
                    ("username", "octo@example.com"),
                ],
                &["https://github.com/login"],
            ),
            item(
                "login",
                "Bücher 📚",
                None,
                &[("password", "Bücher2024"), ("username", "leser")],
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
                    ("custom:text:Type", "Visa"),
                    ("cvv", "123"),
                    ("expiry", "06/27"),
                    ("holder", "Jörg Müller"),
                    ("notes", "Card notes\nsecond line"),
                    ("number", "4111111111111111"),
                ],
                &[],
            ),
            item(
                "note",
                "Bank",
                None,
                &[
                    ("custom:hidden:Account Number", "12345"),
                    ("custom:hidden:PIN", "0000"),
                    ("custom:text:Bank Name", "Sparkasse"),
                    ("custom:text:LastPass type", "Bank Account"),
                ],
                &[],
            ),
            item(
                "note",
                "Home",
                None,
                &[
                    ("custom:text:First Name", "Jane"),
                    ("custom:text:LastPass type", "Address"),
                ],
                &[],
            ),
        ],
        &[skipped("line 26", "empty record")],
    );
}

#[test]
fn lastpass_typed_notes_csv() {
    check(
        "lastpass-typed-notes.csv",
        Format::LastpassCsv,
        None,
        &[
            item("note", "Passport", Some("Identity"), &[("custom:date:Date of Birth", "1980-01-01"), ("custom:date:Expiration Date", "2030-03-14"), ("custom:date:Issued Date", "2020-03-15"), ("custom:hidden:Number", "C01X00T47"), ("custom:text:Country", "Germany"), ("custom:text:Issuing Authority", "Stadt Berlin"), ("custom:text:LastPass type", "Passport"), ("custom:text:Name", "Jane Doe"), ("custom:text:Nationality", "German"), ("custom:text:Sex", "F"), ("custom:text:Type", "P"), ("notes", "Keep in the safe")], &[]),
            item("note", "Driving licence", Some("Identity"), &[("custom:date:Date of Birth", "1980-01-01"), ("custom:date:Expiration Date", "2029-05-31"), ("custom:hidden:Number", "D1234567"), ("custom:text:Address", "1 Main St"), ("custom:text:City / Town", "Springfield"), ("custom:text:Country", "US"), ("custom:text:Height", "170"), ("custom:text:LastPass type", "Driver's License"), ("custom:text:License Class", "B"), ("custom:text:Name", "Jane Doe"), ("custom:text:Sex", "F"), ("custom:text:State", "IL"), ("custom:text:ZIP / Postal Code", "12345")], &[]),
            item("note", "SSN", Some("Identity"), &[("custom:hidden:Number", "078-05-1120"), ("custom:text:LastPass type", "Social Security"), ("custom:text:Name", "Jane Doe")], &[]),
            item("note", "Deploy key", Some("Infra"), &[("custom:hidden:Passphrase", "key-pass"), ("custom:hidden:Private Key", "-----BEGIN OPENSSH PRIVATE KEY-----\nZmFrZQ==\n-----END OPENSSH PRIVATE KEY-----"), ("custom:text:Bit Strength", "256"), ("custom:text:Format", "ed25519"), ("custom:text:Hostname", "web1.example.com"), ("custom:text:LastPass type", "SSH Key"), ("custom:text:Public Key", "ssh-ed25519 AAAAC3NzaFAKE")], &[]),
            item("login", "DB server", Some("Infra"), &[("custom:text:Hostname", "db.example.com"), ("custom:text:LastPass type", "Server"), ("notes", "Primary"), ("password", "srv-pass"), ("username", "admin")], &[]),
        ],
        &[
        ],
    );
}

#[test]
fn chrome_csv() {
    check(
        "chrome.csv",
        Format::ChromeCsv,
        None,
        &[
            item(
                "login",
                "github.com",
                None,
                &[
                    ("notes", "Line one\nLine two"),
                    ("password", "gh,p@ss\"q"),
                    ("username", "octo@example.com"),
                ],
                &["https://github.com/login"],
            ),
            item(
                "login",
                "Bücher 📚",
                None,
                &[("password", "Bücher2024"), ("username", "leser")],
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
                &[("password", "app-pw"), ("username", "app-user")],
                &["android://hash@com.example.app/"],
            ),
        ],
        &[skipped("line 7", "empty record")],
    );
}

#[test]
fn chrome_windows_csv() {
    check(
        "chrome-windows.csv",
        Format::ChromeCsv,
        None,
        &[
            item(
                "login",
                "github.com",
                None,
                &[
                    ("notes", "Line one\nLine two"),
                    ("password", "gh-pass"),
                    ("username", "octo@example.com"),
                ],
                &["https://github.com/login"],
            ),
            item(
                "login",
                "example.org",
                None,
                &[("password", "pw2"), ("username", "me")],
                &["https://example.org/"],
            ),
        ],
        &[],
    );
}

#[test]
fn firefox_csv() {
    check(
        "firefox.csv",
        Format::FirefoxCsv,
        None,
        &[
            item(
                "login",
                "github.com",
                None,
                &[("password", "gh,p@ss\"q"), ("username", "octo@example.com")],
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
                &[("password", "pw"), ("username", "ユーザー")],
                &["https://日本語.example.jp"],
            ),
        ],
        &[skipped("line 6", "Firefox internal login (chrome:// URL)")],
    );
}

#[test]
fn keepass_xml() {
    check(
        "keepass.xml",
        Format::KeepassXml,
        None,
        &[
            item("login", "Steam", None, &[("password", "s7eam"), ("totp", "otpauth://totp/?secret=JBSWY3DPEHPK3PXP&algorithm=SHA1&digits=5&period=30&encoder=steam"), ("username", "gamer")], &[]),
            item("login", "Bare secret", None, &[("totp", "otpauth://totp/?secret=JBSWY3DPEHPK3PXP&algorithm=SHA1&digits=6&period=30"), ("username", "bare")], &[]),
            item("login", "Bücher 📚", Some("Work"), &[("password", "Bücher2024"), ("totp", "otpauth://totp/?secret=GEZDGNBVGY3TQOJQ&algorithm=SHA256&digits=8&period=60"), ("username", "leser")], &["https://buecher.example.de"]),
            item("login", "GitHub", Some("Work > Dev"), &[("custom:hidden:PIN", "4711"), ("custom:history:Earlier password", "old-password"), ("custom:text:Recovery", "see safe"), ("notes", "Line one\nLine two"), ("password", "gh<p@ss>&\"q\""), ("totp", "otpauth://totp/GitHub:octo?secret=JBSWY3DPEHPK3PXP&issuer=GitHub&algorithm=SHA1&digits=6&period=30"), ("username", "octo@example.com")], &["https://github.com/login", "https://gist.github.com"]),
            item("note", "日本語のメモ", Some("Privat > Bücher"), &[("notes", "一行目\n二行目 🎉")], &[]),
        ],
        &[
            left_out("line 60 'Bare secret'", "attachment 'recovery-codes.txt'", "attachments are not supported"),
            skipped("line 120", "empty record"),
            skipped("line 139 'Deleted login'", "in the recycle bin"),
        ],
    );
}

#[test]
fn keepass_kdbx() {
    check(
        "keepass.kdbx",
        Format::Kdbx,
        Some("coffer-test"),
        &[
            item("login", "Steam", None, &[("password", "s7eam"), ("totp", "otpauth://totp/?secret=JBSWY3DPEHPK3PXP&algorithm=SHA1&digits=5&period=30&encoder=steam"), ("username", "gamer")], &[]),
            item("login", "Bare secret", None, &[("totp", "otpauth://totp/?secret=JBSWY3DPEHPK3PXP&algorithm=SHA1&digits=6&period=30"), ("username", "bare")], &[]),
            item("login", "Bücher 📚", Some("Work"), &[("password", "Bücher2024"), ("totp", "otpauth://totp/?secret=GEZDGNBVGY3TQOJQ&algorithm=SHA256&digits=8&period=60"), ("username", "leser")], &["https://buecher.example.de"]),
            item("login", "GitHub", Some("Work > Dev"), &[("custom:hidden:PIN", "4711"), ("custom:text:Recovery", "see safe"), ("notes", "Line one\nLine two"), ("password", "gh<p@ss>&\"q\""), ("totp", "otpauth://totp/GitHub:octo?secret=JBSWY3DPEHPK3PXP&issuer=GitHub&algorithm=SHA1&digits=6&period=30"), ("username", "octo@example.com")], &["https://github.com/login", "https://gist.github.com"]),
            item("note", "日本語のメモ", Some("Privat > Bücher"), &[("notes", "一行目\n二行目 🎉")], &[]),
        ],
        &[
            left_out("entry 2 'Bare secret'", "attachment 'recovery-codes.txt'", "attachments are not supported"),
            skipped("entry 5", "empty record"),
            skipped("entry 7 'Deleted login'", "in the recycle bin"),
        ],
    );
}

/// KDBX 3.1 and KDBX 2 (the same database with the older version bytes,
/// which the crate reads as 3) hold the same items.
#[test]
fn keepassxc_kdbx3_and_kdbx2_kdbx() {
    for file in ["keepassxc-kdbx3.kdbx", "keepass-kdbx2.kdbx"] {
        check(
            file,
            Format::Kdbx,
            Some("coffer-test"),
            &[
                item("login", "Steam", None, &[("password", "s7eam"), ("totp", "otpauth://totp/?secret=JBSWY3DPEHPK3PXP&algorithm=SHA1&digits=5&period=30&encoder=steam"), ("username", "gamer")], &[]),
                item("login", "Bare secret", None, &[("totp", "otpauth://totp/?secret=JBSWY3DPEHPK3PXP&algorithm=SHA1&digits=6&period=30"), ("username", "bare")], &[]),
                item("login", "Bücher 📚", Some("Work"), &[("password", "Bücher2024"), ("totp", "otpauth://totp/?secret=GEZDGNBVGY3TQOJQ&algorithm=SHA256&digits=8&period=60"), ("username", "leser")], &["https://buecher.example.de"]),
                item("login", "GitHub", Some("Work > Dev"), &[("custom:hidden:PIN", "4711"), ("custom:history:Earlier password (2026-11-29)", "old-password"), ("custom:text:Recovery", "see safe"), ("notes", "Line one\nLine two"), ("password", "gh<p@ss>&\"q\""), ("totp", "otpauth://totp/GitHub:octo?secret=JBSWY3DPEHPK3PXP&issuer=GitHub&algorithm=SHA1&digits=6&period=30"), ("username", "octo@example.com")], &["https://github.com/login", "https://gist.github.com"]),
                item("note", "日本語のメモ", Some("Privat > Bücher"), &[("notes", "一行目\n二行目 🎉")], &[]),
            ],
            &[
                left_out("entry 2 'Bare secret'", "attachment 'recovery-codes.txt'", "attachments are not supported"),
                skipped("entry 5", "empty record"),
                skipped("entry 7 'Deleted login'", "in the recycle bin"),
            ],
        );
    }
}

#[test]
fn keepassxc_csv() {
    check(
        "keepassxc.csv",
        Format::KeepassxcCsv,
        None,
        &[
            item("login", "GitHub", Some("Work > Dev"), &[("notes", "Line one\nLine two"), ("password", "gh,p@ss\"q"), ("totp", "otpauth://totp/GitHub:octo?secret=JBSWY3DPEHPK3PXP&issuer=GitHub&algorithm=SHA1&digits=6&period=30"), ("username", "octo@example.com")], &["https://github.com/login"]),
            item("login", "Steam", None, &[("password", "s7eam"), ("totp", "otpauth://totp/Steam:gamer?secret=JBSWY3DPEHPK3PXP&issuer=Steam&algorithm=SHA1&digits=5&period=30&encoder=steam"), ("username", "gamer")], &[]),
            item("note", "日本語のメモ", Some("Privat > Bücher"), &[("notes", "一行目\n二行目 🎉")], &[]),
            item("login", "No TOTP", None, &[("custom:hidden:TOTP", "JBS!Y3DP"), ("username", "x")], &["https://x.example"]),
        ],
        &[
            left_out("line 7 'No TOTP'", "TOTP", "not usable for codes (kept as a hidden field): invalid base32 secret: character '!' at position 4 is not allowed"),
            skipped("line 8 'Old'", "in the recycle bin"),
            skipped("line 9", "empty record"),
        ],
    );
}

#[test]
fn keepassx_csv() {
    check(
        "keepassx.csv",
        Format::KeepassxcCsv,
        None,
        &[
            item(
                "login",
                "GitHub",
                None,
                &[
                    ("notes", "Line one\nLine two"),
                    ("password", "gh-pass"),
                    ("username", "octo@example.com"),
                ],
                &["https://github.com/login"],
            ),
            item(
                "login",
                "Bank",
                None,
                &[
                    ("notes", "PIN in the safe"),
                    ("password", "b@nk"),
                    ("username", "jdoe"),
                ],
                &[],
            ),
        ],
        &[],
    );
}

#[test]
fn otpauth_txt() {
    check(
        "otpauth.txt",
        Format::Otpauth,
        None,
        &[
            item("totp", "GitHub", None, &[("totp", "otpauth://totp/GitHub:octo%40example.com?secret=JBSWY3DPEHPK3PXP&issuer=GitHub&algorithm=SHA1&digits=6&period=30"), ("username", "octo@example.com")], &[]),
            item("totp", "Bücher", None, &[("totp", "otpauth://totp/B%C3%BCcher:leser?secret=GEZDGNBVGY3TQOJQ&issuer=B%C3%BCcher&algorithm=SHA256&digits=8&period=60"), ("username", "leser")], &[]),
            item("totp", "日本語 🎉", None, &[("totp", "otpauth://totp/%E6%97%A5%E6%9C%AC%E8%AA%9E%20%F0%9F%8E%89?secret=JBSWY3DPEHPK3PXP&algorithm=SHA1&digits=6&period=30"), ("username", "日本語 🎉")], &[]),
            item("totp", "Steam", None, &[("totp", "otpauth://totp/?secret=JBSWY3DPEHPK3PXP&algorithm=SHA1&digits=5&period=30&encoder=steam")], &[]),
            item("note", "Counter", None, &[("custom:hidden:HOTP secret", "JBSWY3DPEHPK3PXP"), ("custom:hidden:otpauth URI", "otpauth://hotp/Counter:bob?secret=JBSWY3DPEHPK3PXP&counter=3"), ("custom:text:HOTP counter", "3"), ("custom:text:account", "bob"), ("custom:text:issuer", "Counter")], &[]),
            item("totp", "Steam", None, &[("totp", "otpauth://totp/Steam:gamer?secret=JBSWY3DPEHPK3PXP&issuer=Steam&algorithm=SHA1&digits=5&period=30&encoder=steam"), ("username", "gamer")], &[]),
        ],
        &[
            left_out("line 7 'Counter'", "HOTP codes", "HOTP (counter-based) codes are not generated by Coffer; the secret and counter are kept in a note"),
        ],
    );
}

#[test]
fn otpauth_edge_txt() {
    check(
        "otpauth-edge.txt",
        Format::Otpauth,
        None,
        &[
            item("totp", "Tiny", None, &[("totp", "otpauth://totp/Tiny:Short?secret=ME&issuer=Tiny&algorithm=SHA1&digits=6&period=30"), ("username", "Short")], &[]),
            item("note", "Bank", None, &[("custom:hidden:HOTP secret", "JBSWY3DPEHPK3PXP"), ("custom:hidden:otpauth URI", "otpauth://hotp/Bank:alice?secret=JBSWY3DPEHPK3PXP&issuer=Bank&counter=42"), ("custom:text:HOTP counter", "42"), ("custom:text:account", "alice"), ("custom:text:issuer", "Bank")], &[]),
            item("note", "yubi", None, &[("custom:hidden:HOTP secret", "GEZDGNBVGY3TQOJQ"), ("custom:hidden:otpauth URI", "otpauth://hotp/yubi?secret=GEZDGNBVGY3TQOJQ"), ("custom:text:HOTP counter", "0"), ("custom:text:account", "yubi")], &[]),
        ],
        &[
            left_out("line 3 'Bank'", "HOTP codes", "HOTP (counter-based) codes are not generated by Coffer; the secret and counter are kept in a note"),
            left_out("line 4 'yubi'", "HOTP codes", "HOTP (counter-based) codes are not generated by Coffer; the secret and counter are kept in a note"),
        ],
    );
}

#[test]
fn otpauth_migration_txt() {
    check(
        "otpauth-migration.txt",
        Format::OtpauthMigration,
        None,
        &[
            item("totp", "GitHub", None, &[("totp", "otpauth://totp/GitHub:octo%40example.com?secret=JBSWY3DPEHPK3PXP&issuer=GitHub&algorithm=SHA1&digits=6&period=30"), ("username", "octo@example.com")], &[]),
            item("totp", "Bücher:leser", None, &[("totp", "otpauth://totp/:B%C3%BCcher%3Aleser?secret=GEZDGNBVGY3TQOJQ&algorithm=SHA256&digits=8&period=30"), ("username", "Bücher:leser")], &[]),
            item("totp", "日本語 🎉", None, &[("totp", "otpauth://totp/%E6%97%A5%E6%9C%AC%E8%AA%9E%20%F0%9F%8E%89?secret=JBSWY3DPEHPK3PXP&algorithm=SHA1&digits=6&period=30"), ("username", "日本語 🎉")], &[]),
            item("note", "HOTP Corp", None, &[("custom:hidden:HOTP secret", "JBSWY3DPEHPK3PXP"), ("custom:hidden:otpauth URI", "otpauth://hotp/counter?secret=JBSWY3DPEHPK3PXP&issuer=HOTP%20Corp&algorithm=SHA1&digits=6&counter=5"), ("custom:text:HOTP counter", "5"), ("custom:text:account", "counter"), ("custom:text:issuer", "HOTP Corp")], &[]),
            item("note", "Legacy", None, &[("custom:hidden:HOTP secret", "GEZDGNBVGY3TQOJQ"), ("custom:hidden:otpauth URI", "otpauth://totp/old?secret=GEZDGNBVGY3TQOJQ&issuer=Legacy&algorithm=MD5&digits=6"), ("custom:text:account", "old"), ("custom:text:issuer", "Legacy")], &[]),
            item("totp", "Example", None, &[("totp", "otpauth://totp/Example:alice?secret=GEZDGNBVGY3TQOJQ&issuer=Example&algorithm=SHA512&digits=6&period=30"), ("username", "alice")], &[]),
        ],
        &[
            left_out("line 3 account 1 'HOTP Corp'", "HOTP codes", "HOTP (counter-based) codes are not generated by Coffer; the secret and counter are kept in a note"),
            left_out("line 3 account 2 'Legacy'", "HOTP codes", "MD5 codes are not generated by Coffer; the secret is kept in a note"),
        ],
    );
}
