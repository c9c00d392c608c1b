//! `coffer import` end to end: every fixture format through the daemon,
//! duplicates on re-import, all-or-nothing on a malformed file, KDBX password.

use coffer_tests::Daemon;
use serde_json::Value;

fn fixture(name: &str) -> String {
    format!("{}/fixtures/import/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn item_names(d: &Daemon) -> Vec<String> {
    let list = d.json(&["ls", "--json"], "");
    let mut names: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn bitwarden_json_imports_once_and_fields_arrive() {
    let d = Daemon::start();
    d.init();
    let dry = d.json(
        &[
            "import",
            "--format",
            "bitwarden-json",
            &fixture("bitwarden.json"),
            "--dry-run",
            "--json",
        ],
        "",
    );
    assert_eq!(dry["dry_run"], true);
    assert!(item_names(&d).is_empty(), "a dry run stored items");
    let r = d.json(&["import", &fixture("bitwarden.json"), "--json"], "");
    assert_eq!(r["format"], "bitwarden-json", "auto-detected");
    assert_eq!(r["added"], dry["added"]);
    let total: u64 = r["added"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(item_names(&d).len() as u64, total);
    assert!(r["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["reason"].as_str().unwrap().contains("identity")));

    // A login from the file, field by field through the CLI.
    let github: Value = d.json(&["get", "GitHub", "--json"], "");
    assert_eq!(github["folder"], "Work > Dev");
    assert_eq!(github["fields"]["username"], "octo@example.com");
    assert!(github["fields"]["totp"]
        .as_str()
        .unwrap()
        .starts_with("otpauth://totp/"));
    d.ok(&["totp", "GitHub", "--at", "59"], "");

    // The same file again adds nothing.
    let again = d.json(&["import", &fixture("bitwarden.json"), "--json"], "");
    assert_eq!(again["duplicates"].as_u64().unwrap(), total);
    assert!(again["added"].as_object().unwrap().is_empty());
    assert_eq!(item_names(&d).len() as u64, total);
}

#[test]
fn every_fixture_format_imports() {
    let d = Daemon::start();
    d.init();
    for (format, file) in [
        ("bitwarden-csv", "bitwarden.csv"),
        ("1password-1pux", "1password.1pux"),
        ("1password-csv", "1password.csv"),
        ("keepass-xml", "keepass.xml"),
        ("keepassxc-csv", "keepassxc.csv"),
        ("lastpass-csv", "lastpass.csv"),
        ("chrome-csv", "chrome.csv"),
        ("firefox-csv", "firefox.csv"),
        ("otpauth", "otpauth.txt"),
        ("otpauth-migration", "otpauth-migration.txt"),
    ] {
        let before = item_names(&d).len() as u64;
        let r = d.json(
            &[
                "import",
                "--format",
                format,
                &fixture(file),
                "--folder",
                "Personal",
                "--json",
            ],
            "",
        );
        let added: u64 = r["added"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert!(
            added + r["duplicates"].as_u64().unwrap() > 0,
            "{format}: nothing imported"
        );
        assert_eq!(item_names(&d).len() as u64, before + added, "{format}");
    }
}

#[test]
fn malformed_files_and_wrong_kdbx_password_change_nothing() {
    let d = Daemon::start();
    d.init();
    let dir = coffer_tests::short_tempdir();
    let bad_csv = dir.path().join("bad.csv");
    std::fs::write(
        &bad_csv,
        "name,url,username,password,note\n\"unclosed,https://x,u,p,n\n",
    )
    .unwrap();
    let err = d.fails(
        &[
            "import",
            "--format",
            "chrome-csv",
            bad_csv.to_str().unwrap(),
        ],
        "",
        9,
    );
    assert!(err.contains("line"), "{err}");
    let garbage = dir.path().join("garbage.bin");
    std::fs::write(&garbage, vec![0x9cu8; 1 << 20]).unwrap();
    d.fails(&["import", garbage.to_str().unwrap()], "", 9);
    let err = d.fails(
        &["import", "--format", "kdbx", &fixture("keepass.kdbx")],
        "not-the-password\n",
        14,
    );
    assert!(err.to_lowercase().contains("password"), "{err}");
    assert!(item_names(&d).is_empty());
    let r = d.json(
        &[
            "import",
            "--format",
            "kdbx",
            &fixture("keepass.kdbx"),
            "--json",
        ],
        "coffer-test\n",
    );
    let added: u64 = r["added"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert!(added > 0);
}
