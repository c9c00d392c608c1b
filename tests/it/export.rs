//! Getting data out: `coffer export` (JSON, CSV), `coffer backup` and
//! `coffer restore-backup`, each round-tripped into a fresh vault; the backup
//! also opened with the standard `age` tool; progress notes of a large import.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use coffer_ipc::methods as m;
use coffer_tests::{Daemon, PIN};
use serde_json::Value;

const PASSPHRASE: &str = "correct horse battery staple";

fn fixture(name: &str) -> String {
    format!("{}/fixtures/import/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A vault with every item type, nested folders, unicode, multi-line notes,
/// TOTP secrets and one item in the trash.
fn populated() -> Daemon {
    let d = Daemon::start();
    d.init();
    d.ok(&["import", &fixture("bitwarden.json")], "");
    d.ok(&["import", &fixture("keepass.xml")], "");
    d.ok(&["import", &fixture("otpauth.txt")], "");
    d.add_login(
        "Ünïcode ✓ login",
        "pässwörd\"with,comma",
        &["--username", "zoë"],
    );
    d.add_login("to be trashed", "old-secret", &[]);
    d.ok(&["rm", "to be trashed"], "");
    d
}

/// Every item (trash included) as the JSON export lists them.
fn all_items(d: &Daemon) -> Vec<Value> {
    let out = d.ok(
        &[
            "export",
            "--format",
            "json",
            "--include-trash",
            "--yes",
            "--pin-stdin",
        ],
        format!("{PIN}\n"),
    );
    let file: Value = serde_json::from_str(&out).expect("export is JSON");
    assert_eq!(file["format"], "coffer-export");
    file["items"].as_array().unwrap().clone()
}

#[test]
fn json_export_imports_into_an_empty_vault_identically() {
    let a = populated();
    let items = all_items(&a);
    assert!(items.len() >= 15, "only {} items", items.len());
    for kind in ["login", "note", "card", "totp"] {
        assert!(items.iter().any(|i| i["type"] == kind), "no {kind} item");
    }
    assert!(items.iter().any(|i| i["trashed_ms"].is_i64()));

    // Without --include-trash the trashed item stays out; stderr warns.
    let out = a.coffer(
        &["export", "--format", "json", "--pin-stdin"],
        format!("{PIN}\n"),
    );
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("plaintext"), "{stderr}");
    let plain: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plain["items"].as_array().unwrap().len(), items.len() - 1);

    let dir = coffer_tests::short_tempdir();
    let file = dir.path().join("export.json");
    a.ok(
        &[
            "export",
            "--include-trash",
            "--pin-stdin",
            "--output",
            file.to_str().unwrap(),
        ],
        format!("{PIN}\n"),
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "export file mode {mode:o}");
    // An existing file is never replaced.
    let err = a.fails(
        &["export", "--pin-stdin", "--output", file.to_str().unwrap()],
        format!("{PIN}\n"),
        2,
    );
    assert!(err.contains("exists"), "{err}");

    let b = Daemon::start();
    b.init();
    let r = b.json(&["import", file.to_str().unwrap(), "--json"], "");
    assert_eq!(r["format"], "coffer-json", "auto-detected");
    assert_eq!(all_items(&b), items, "items differ after the round trip");
    // Field by field through `get` for one login with a TOTP.
    let got = b.json(&["get", "Ünïcode ✓ login", "--json", "--reveal"], "");
    assert_eq!(got["fields"]["password"], "pässwörd\"with,comma");
    assert_eq!(got["fields"]["username"], "zoë");
    let code = |d: &Daemon| d.ok(&["totp", "Bücher & Co", "--at", "1700000000"], "");
    assert_eq!(code(&b), code(&a));
    assert_eq!(code(&b).trim().len(), 8, "SHA256, 8 digits");
    // Importing the same export again adds nothing.
    let again = b.json(&["import", file.to_str().unwrap(), "--json"], "");
    assert_eq!(again["duplicates"].as_u64().unwrap() as usize, items.len());
    assert!(again["added"].as_object().unwrap().is_empty());
}

#[test]
fn csv_export_has_one_row_per_item_with_quoting() {
    let a = populated();
    let csv = a.ok(
        &["export", "--format", "csv", "--pin-stdin"],
        format!("{PIN}\n"),
    );
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "folder,type,name,username,password,urls,totp,notes,holder,number,cvv,expiry,trashed,custom,archived"
    );
    assert!(
        csv.contains("login,Ünïcode ✓ login,zoë,\"pässwörd\"\"with,comma\""),
        "{csv}"
    );
    assert!(!csv.contains("old-secret"), "trashed item exported");
    // One folder only.
    let finance = a.ok(
        &[
            "export",
            "--format",
            "csv",
            "--folder",
            "Finance",
            "--pin-stdin",
        ],
        format!("{PIN}\n"),
    );
    let rows: Vec<&str> = finance.lines().skip(1).collect();
    assert_eq!(
        rows,
        ["Finance,card,Visa Gold,,,,,,Jörg Müller,4111111111111111,123,07/27,,brand: Visa,"]
    );
}

#[test]
fn backup_restores_on_a_fresh_device_and_opens_with_age() {
    let a = populated();
    let items = all_items(&a);
    let dir = coffer_tests::short_tempdir();
    let backup = dir.path().join("vault.age");
    let backup_s = backup.to_str().unwrap();
    // Too short a passphrase is refused before anything is written.
    a.fails(
        &["backup", backup_s, "--passphrase-stdin", "--pin-stdin"],
        format!("{PIN}\nshort\n"),
        9,
    );
    assert!(!backup.exists());
    let r = a.json(
        &[
            "backup",
            backup_s,
            "--passphrase-stdin",
            "--pin-stdin",
            "--json",
        ],
        format!("{PIN}\n{PASSPHRASE}\n"),
    );
    assert_eq!(r["items"].as_u64().unwrap() as usize, items.len());
    let bytes = std::fs::read(&backup).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n-> scrypt "));
    assert!(!coffer_tests::contains_bytes(&bytes, b"old-secret"));
    let mode = std::fs::metadata(&backup).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "backup mode {mode:o}");

    // A fresh data dir: wrong passphrase changes nothing, the right one restores all.
    let b = Daemon::start();
    b.init();
    let before = all_items(&b);
    let err = b.fails(
        &["restore-backup", backup_s, "--passphrase-stdin"],
        "not the passphrase\n",
        14,
    );
    assert!(err.contains("passphrase"), "{err}");
    assert_eq!(all_items(&b), before);
    let dry = b.json(
        &[
            "restore-backup",
            backup_s,
            "--passphrase-stdin",
            "--dry-run",
            "--json",
        ],
        format!("{PASSPHRASE}\n"),
    );
    assert_eq!(dry["dry_run"], true);
    assert_eq!(all_items(&b), before);
    b.ok(
        &["restore-backup", backup_s, "--passphrase-stdin"],
        format!("{PASSPHRASE}\n"),
    );
    assert_eq!(all_items(&b), items, "restored items differ");
    // A second restore finds everything already there.
    let again = b.json(
        &["restore-backup", backup_s, "--passphrase-stdin", "--json"],
        format!("{PASSPHRASE}\n"),
    );
    assert_eq!(again["duplicates"].as_u64().unwrap() as usize, items.len());

    // The standard tool opens it: age reads the passphrase from a terminal,
    // so give it one with script(1).
    if Command::new("age").arg("--version").output().is_err() {
        eprintln!(
            "SKIPPED the `age -d` check: the age tool is not installed (apt-get install age)"
        );
        return;
    }
    let out_path = dir.path().join("plain.json");
    let mut child = Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "age -d -o {} {}",
            out_path.display(),
            backup.display()
        ))
        .arg("/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("script(1) runs");
    std::thread::sleep(std::time::Duration::from_millis(300));
    use std::io::Write;
    writeln!(child.stdin.take().unwrap(), "{PASSPHRASE}").unwrap();
    assert!(child.wait().unwrap().success(), "age -d failed");
    let plain: Value = serde_json::from_slice(&std::fs::read(&out_path).unwrap()).unwrap();
    assert_eq!(plain["items"].as_array().unwrap(), &items);
}

#[test]
fn a_large_import_reports_progress_until_done() {
    let d = Daemon::start();
    d.init();
    let dir = coffer_tests::short_tempdir();
    let path = dir.path().join("big.json");
    let items: Vec<Value> = (0..1200)
        .map(|i| {
            serde_json::json!({
                "type": 1, "name": format!("svc {i}"), "folderId": null,
                "login": {"username": format!("u{i}"), "password": format!("p{i}"),
                          "uris": [{"uri": format!("https://s{i}.example")}]}
            })
        })
        .collect();
    std::fs::write(
        &path,
        serde_json::to_vec(&serde_json::json!({"encrypted": false, "folders": [], "items": items}))
            .unwrap(),
    )
    .unwrap();
    let mut client = d.client();
    let mut notes = Vec::new();
    let r = client
        .call_with_progress::<m::Import>(
            &m::ImportParams {
                format: "auto".into(),
                path: path.display().to_string(),
                folder: None,
                dry_run: false,
                password: None,
                progress: true,
            },
            |p| notes.push(p),
        )
        .expect("import");
    assert_eq!(r.added["login"], 1200);
    assert!(notes.len() >= 3, "{notes:?}");
    assert!(notes.windows(2).all(|w| w[0].done < w[1].done));
    let last = notes.last().unwrap();
    assert_eq!((last.done, last.total), (1200, 1200));
    // Everything is there after a restart (three changes, not 1,200).
    let mut d = d;
    d.restart();
    d.unlock();
    let list = d.json(&["ls", "--json"], "");
    assert_eq!(list.as_array().unwrap().len(), 1200);
}

#[test]
fn export_and_backup_ask_for_the_pin_again() {
    let a = Daemon::start();
    a.init();
    a.add_login("mail", "pw-mail-secret", &[]);
    let dir = coffer_tests::short_tempdir();
    let backup = dir.path().join("vault.age");
    let backup_s = backup.to_str().unwrap();
    // No terminal and no --pin-stdin: a usage error, nothing printed.
    let out = a.coffer(&["export", "--yes"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--pin-stdin"));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("pw-mail-secret"));
    // A wrong PIN: refused (exit 7) and counted like a failed unlock.
    let err = a.fails(&["export", "--pin-stdin"], "999-wrong\n", 7);
    assert!(err.to_lowercase().contains("pin"), "{err}");
    a.fails(
        &["backup", backup_s, "--passphrase-stdin", "--pin-stdin"],
        format!("999-wrong\n{PASSPHRASE}\n"),
        7,
    );
    assert!(!backup.exists(), "no backup written after a wrong PIN");
    // A third wrong PIN: the next try, even the right PIN, waits as an
    // unlock after three failures would (exit 8).
    a.fails(&["export", "--pin-stdin"], "999-wrong\n", 7);
    a.fails(&["export", "--pin-stdin"], format!("{PIN}\n"), 8);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    // The right PIN: the export and the backup are made.
    let out = a.ok(&["export", "--pin-stdin"], format!("{PIN}\n"));
    assert!(out.contains("pw-mail-secret"));
    a.ok(
        &["backup", backup_s, "--passphrase-stdin", "--pin-stdin"],
        format!("{PIN}\n{PASSPHRASE}\n"),
    );
    assert!(backup.exists());
}
