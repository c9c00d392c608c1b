//! The `coffer` CLI end to end against a real `cofferd`: every item type,
//! get/edit/history/trash, TOTP linking, folders and item references,
//! lock/unlock, restart, auto-lock, events and status.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use coffer_tests::{run_with_timeout, str_field, Daemon, Events, Options};
use serde_json::Value;

const MASK: &str = "••••••••";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list:#}"))
        .iter()
        .map(|i| str_field(i, "name").to_string())
        .collect()
}

#[test]
fn every_item_type_round_trips() {
    let d = Daemon::start();
    // Before init every item command says so, with its own exit code.
    let err = d.fails(&["get", "anything"], "", 4);
    assert!(err.contains("coffer init"), "{err}");
    d.init();

    // A login with a username and two URLs.
    let login = d.add_login(
        "GitHub",
        "s3cret-login-pw",
        &[
            "--username",
            "octo",
            "--url",
            "https://github.com",
            "--url",
            "https://gist.github.com",
        ],
    );
    assert_eq!(login["item_type"], "login");
    assert_eq!(login["folder"], "Personal");

    // A multi-line note (the final newline of stdin is dropped).
    let note_text = "line one\nline two\n\n  indented line four";
    d.ok(&["add", "note", "diary"], format!("{note_text}\n"));

    // A card: number (spaces are dropped) then CVV on stdin.
    let out = d.ok(
        &[
            "add", "card", "visa", "--holder", "Jane Doe", "--expiry", "09/29",
        ],
        "4111 1111 1111 1111\n737\n",
    );
    assert!(out.starts_with("Added card Personal/visa"), "{out}");

    // A standalone TOTP from an otpauth URI with every parameter.
    d.ok(
        &["add", "totp", "bank"],
        "otpauth://totp/Bank:jane%40example.org?secret=JBSWY3DPEHPK3PXP&issuer=Bank&algorithm=SHA256&digits=8&period=60\n",
    );

    // Human output masks secrets (and says how to see them).
    let out = d.coffer(&["get", "GitHub"], "");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("password: {MASK}")), "{stdout}");
    assert!(stdout.contains("username: octo"), "{stdout}");
    assert!(stdout.contains("url: https://github.com"), "{stdout}");
    assert!(stdout.contains("url: https://gist.github.com"), "{stdout}");
    assert!(!stdout.contains("s3cret-login-pw"), "{stdout}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--reveal"),
        "no hint about --reveal"
    );
    assert!(d
        .ok(&["get", "GitHub", "--reveal"], "")
        .contains("password: s3cret-login-pw"));

    let note = d.ok(&["get", "diary"], "");
    assert!(note.contains(&format!("notes: {MASK}")), "{note}");
    assert!(!note.contains("line one"), "{note}");
    let card = d.ok(&["get", "visa"], "");
    assert!(card.contains(&format!("number: {MASK}")), "{card}");
    assert!(card.contains(&format!("cvv: {MASK}")), "{card}");
    assert!(card.contains("holder: Jane Doe"), "{card}");
    assert!(card.contains("expiry: 09/29"), "{card}");
    assert!(!card.contains("4111"), "{card}");
    let totp = d.ok(&["get", "bank"], "");
    assert!(totp.contains(&format!("totp: {MASK}")), "{totp}");
    assert!(!totp.contains("JBSWY3DPEHPK3PXP"), "{totp}");

    // --field prints the raw value, nothing else.
    assert_eq!(
        d.ok(&["get", "GitHub", "--field", "password"], ""),
        "s3cret-login-pw\n"
    );
    assert_eq!(
        d.ok(&["get", "GitHub", "--field", "username"], ""),
        "octo\n"
    );
    assert_eq!(
        d.ok(&["get", "GitHub", "--field", "url"], ""),
        "https://github.com\nhttps://gist.github.com\n"
    );
    assert_eq!(
        d.ok(&["get", "diary", "--field", "notes"], ""),
        format!("{note_text}\n")
    );
    assert_eq!(
        d.ok(&["get", "visa", "--field", "number"], ""),
        "4111111111111111\n"
    );
    assert_eq!(d.ok(&["get", "visa", "--field", "cvv"], ""), "737\n");
    let err = d.fails(&["get", "GitHub", "--field", "cvv"], "", 5);
    assert!(err.contains("no field \"cvv\""), "{err}");

    // --json has every field.
    let j = d.json(&["get", "GitHub", "--json", "--reveal"], "");
    assert_eq!(j["id"], login["id"]);
    assert_eq!(str_field(&j, "id").len(), 32);
    assert_eq!(j["name"], "GitHub");
    assert_eq!(j["item_type"], "login");
    assert_eq!(j["folder"], "Personal");
    assert_eq!(str_field(&j, "folder_id").len(), 64);
    assert_eq!(j["fields"]["password"], "s3cret-login-pw");
    assert_eq!(j["fields"]["username"], "octo");
    assert_eq!(
        j["urls"],
        serde_json::json!(["https://github.com", "https://gist.github.com"])
    );
    assert!(j["created_ms"].as_i64().unwrap() > 0);
    assert_eq!(j["created_ms"], j["updated_ms"]);
    assert!(j["trashed_ms"].is_null());
    assert_eq!(j["conflicts"], serde_json::json!({}));

    let j = d.json(&["get", "diary", "--json", "--reveal"], "");
    assert_eq!(j["item_type"], "note");
    assert_eq!(j["fields"]["notes"], note_text);
    let j = d.json(&["get", "visa", "--json", "--reveal"], "");
    assert_eq!(j["item_type"], "card");
    assert_eq!(
        j["fields"],
        serde_json::json!({
            "number": "4111111111111111",
            "cvv": "737",
            "holder": "Jane Doe",
            "expiry": "09/29"
        })
    );
    let j = d.json(&["get", "bank", "--json", "--reveal"], "");
    assert_eq!(j["item_type"], "totp");
    let uri = str_field(&j["fields"], "totp");
    for part in [
        "otpauth://totp/",
        "secret=JBSWY3DPEHPK3PXP",
        "issuer=Bank",
        "algorithm=SHA256",
        "digits=8",
        "period=60",
    ] {
        assert!(uri.contains(part), "{part} missing from {uri}");
    }
    let code = d.json(&["totp", "bank", "--json", "--at", "59"], "");
    assert_eq!(code["digits"], 8);
    assert_eq!(code["period"], 60);
    assert_eq!(code["algorithm"], "SHA256");
    assert_eq!(code["seconds_remaining"], 1);
    assert_eq!(code["item"], "bank");
    let digits = str_field(&code, "code");
    assert!(
        digits.len() == 8 && digits.chars().all(|c| c.is_ascii_digit()),
        "{code}"
    );

    // Listings never carry secrets; search looks at names, usernames, URLs.
    let ls = d.ok(&["ls"], "");
    let ls_json = d.json(&["ls", "--json"], "");
    assert_eq!(names(&ls_json), ["bank", "diary", "GitHub", "visa"]);
    for text in [ls.as_str(), &ls_json.to_string()] {
        for secret in ["s3cret-login-pw", "line one", "4111", "JBSWY3DPEHPK3PXP"] {
            assert!(!text.contains(secret), "listing shows {secret}: {text}");
        }
    }
    let bank = &ls_json[0];
    assert_eq!(bank["has_totp"], true);
    assert_eq!(ls_json[2]["username"], "octo");
    assert_eq!(names(&d.json(&["search", "git", "--json"], "")), ["GitHub"]);
    assert_eq!(
        names(&d.json(&["search", "OCTO", "--json"], "")),
        ["GitHub"]
    );
    assert_eq!(
        names(&d.json(&["search", "gist.github", "--json"], "")),
        ["GitHub"]
    );
    assert!(names(&d.json(&["search", "s3cret", "--json"], "")).is_empty());
    assert_eq!(d.status()["items"], 4);

    // A generated password has the asked length and is stored.
    let generated = d.json(&["add", "login", "gen", "--generate", "24", "--json"], "");
    assert_eq!(str_field(&generated["fields"], "password").len(), 24);
    let pw = d.ok(&["get", "gen", "--field", "password"], "");
    assert_eq!(pw.trim_end(), str_field(&generated["fields"], "password"));
}

#[test]
fn edit_and_history() {
    let d = Daemon::start();
    d.init();
    let device = str_field(&d.status(), "device_id").to_string();
    let before = now_ms();
    d.add_login(
        "mail",
        "first-password-1",
        &["--username", "a@x.org", "--url", "https://old.example"],
    );
    let out = d.ok(
        &[
            "edit",
            "mail",
            "--name",
            "webmail",
            "--username",
            "b@x.org",
            "--url",
            "https://new.example",
            "--url",
            "https://alt.example",
            "--password-stdin",
        ],
        "second-password-2\n",
    );
    assert_eq!(out, "Updated Personal/webmail.\n");
    let after = now_ms();

    let j = d.json(&["get", "webmail", "--json", "--reveal"], "");
    assert_eq!(j["name"], "webmail");
    assert_eq!(j["fields"]["username"], "b@x.org");
    assert_eq!(j["fields"]["password"], "second-password-2");
    assert_eq!(
        j["urls"],
        serde_json::json!(["https://new.example", "https://alt.example"])
    );
    assert!(j["updated_ms"].as_i64() >= j["created_ms"].as_i64());
    d.fails(&["get", "mail"], "", 5);

    // History: the earlier values, with this device and a plausible time.
    let history = d.json(&["history", "webmail", "--json", "--reveal"], "");
    let entries = history.as_array().expect("history is a list");
    assert!(entries.len() >= 2, "{history:#}");
    let old = entries
        .iter()
        .find(|e| e["fields"]["password"] == "first-password-1")
        .unwrap_or_else(|| panic!("earlier password missing from {history:#}"));
    assert_eq!(old["name"], "mail");
    assert_eq!(old["fields"]["username"], "a@x.org");
    assert_eq!(old["urls"], serde_json::json!(["https://old.example"]));
    assert_eq!(old["device"], device.as_str());
    let t = old["time_ms"].as_i64().expect("time_ms");
    assert!(
        before - 1000 <= t && t <= after + 1000,
        "{t} not in [{before}, {after}]"
    );
    let last = entries.last().unwrap();
    assert_eq!(last["fields"]["password"], "second-password-2");
    assert_eq!(last["name"], "webmail");
    assert_eq!(last["device"], device.as_str());

    // The human form masks the values unless --reveal, and names the device.
    let human = d.ok(&["history", "webmail"], "");
    assert!(!human.contains("first-password-1"), "{human}");
    assert!(
        human.contains(&format!("device {}", &device[..16])),
        "{human}"
    );
    assert!(human.contains("name \"mail\""), "{human}");
    let revealed = d.ok(&["history", "webmail", "--reveal"], "");
    assert!(
        revealed.contains("password: first-password-1"),
        "{revealed}"
    );
    assert!(
        revealed.contains("password: second-password-2"),
        "{revealed}"
    );

    // Notes, and an edit with nothing to change is refused.
    d.ok(
        &["edit", "webmail", "--notes-stdin"],
        "recovery codes\nin the safe\n",
    );
    assert_eq!(
        d.ok(&["get", "webmail", "--field", "notes"], ""),
        "recovery codes\nin the safe\n"
    );
    let err = d.fails(&["edit", "webmail"], "", 9);
    assert!(err.contains("nothing to change"), "{err}");
    // An invalid edit changes nothing.
    d.fails(&["edit", "webmail", "--expiry", "13/99"], "", 9);
    assert_eq!(
        d.ok(&["get", "webmail", "--field", "password"], ""),
        "second-password-2\n"
    );
}

#[test]
fn trash_and_restore() {
    let d = Daemon::start();
    d.init();
    d.add_login("keep", "pw-keep", &[]);
    let toss = d.add_login("toss", "pw-toss", &[]);
    let out = d.ok(&["rm", "toss"], "");
    assert!(out.starts_with("Moved Personal/toss to the trash"), "{out}");

    assert_eq!(names(&d.json(&["ls", "--json"], "")), ["keep"]);
    let trash = d.json(&["ls", "--trash", "--json"], "");
    assert_eq!(names(&trash), ["toss"]);
    assert!(trash[0]["trashed_ms"].as_i64().is_some(), "{trash:#}");
    assert!(d.ok(&["ls", "--trash"], "").contains("toss"));
    d.fails(&["get", "toss"], "", 5);
    assert_eq!(
        d.ok(&["get", "toss", "--trash", "--field", "password"], ""),
        "pw-toss\n"
    );
    // The history of an item in the trash is shown too (its audit record
    // once looked the item up among live items only: chaos seed 12829).
    let in_trash = d.json(&["history", "toss", "--json", "--reveal"], "");
    assert!(
        in_trash
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["trashed"] == true),
        "history of a trashed item: {in_trash:#}"
    );
    let folders = d.json(&["folder", "ls", "--json"], "");
    assert_eq!(folders[0]["items"], 1);
    assert_eq!(folders[0]["trashed"], 1);
    // Restoring something not in the trash is "not found".
    d.fails(&["restore", "keep"], "", 5);

    let out = d.ok(&["restore", "toss"], "");
    assert_eq!(out, "Restored Personal/toss.\n");
    assert_eq!(names(&d.json(&["ls", "--json"], "")), ["keep", "toss"]);
    assert_eq!(
        d.json(&["ls", "--trash", "--json"], ""),
        serde_json::json!([])
    );
    let j = d.json(&["get", "toss", "--json", "--reveal"], "");
    assert_eq!(j["id"], toss["id"]);
    assert!(j["trashed_ms"].is_null());
    assert_eq!(j["fields"]["password"], "pw-toss");
    let history = d.json(&["history", "toss", "--json"], "");
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["trashed"] == true),
        "history does not show the trashed state: {history:#}"
    );
}

#[test]
fn totp_linked_to_a_login() {
    let d = Daemon::start();
    d.init();
    d.add_login("aws", "aws-password", &["--username", "root"]);
    let err = d.fails(&["totp", "aws"], "", 5);
    assert!(err.contains("totp set"), "{err}");

    let out = d.ok(
        &["totp", "set", "aws"],
        "otpauth://totp/AWS:root?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=AWS&digits=8\n",
    );
    assert_eq!(out, "Linked a TOTP secret to Personal/aws.\n");
    // RFC 6238 Appendix B, SHA1.
    assert_eq!(d.ok(&["totp", "aws", "--at", "59"], ""), "94287082\n");
    let code = d.json(&["totp", "aws", "--at", "1111111109", "--json"], "");
    assert_eq!(code["code"], "07081804");
    assert_eq!(code["seconds_remaining"], 1);
    assert_eq!(code["period"], 30);
    assert_eq!(code["digits"], 8);
    assert_eq!(code["algorithm"], "SHA1");
    assert_eq!(code["item"], "aws");
    // Without --at: a current code and a sane countdown.
    let now = d.json(&["totp", "aws", "--json"], "");
    let left = now["seconds_remaining"].as_u64().unwrap();
    assert!((1..=30).contains(&left), "{now}");
    assert_eq!(str_field(&now, "code").len(), 8);

    // The login keeps its password; listings flag the TOTP.
    assert_eq!(
        d.ok(&["get", "aws", "--field", "password"], ""),
        "aws-password\n"
    );
    let ls = d.json(&["ls", "--json"], "");
    assert_eq!(ls[0]["has_totp"], true);
    assert!(d.ok(&["ls"], "").contains("+totp"));

    // Replacing it with a bare secret works; a note cannot hold one.
    d.ok(
        &["totp", "set", "aws"],
        "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n",
    );
    assert_eq!(d.ok(&["totp", "aws", "--at", "59"], ""), "287082\n");
    d.ok(&["add", "note", "memo"], "text\n");
    let err = d.fails(&["totp", "set", "memo"], "JBSWY3DPEHPK3PXP\n", 9);
    assert!(err.contains("cannot hold a TOTP"), "{err}");
}

#[test]
fn folders_and_item_references() {
    let d = Daemon::start();
    d.init();
    let out = d.ok(&["folder", "create", "Work"], "");
    assert!(out.starts_with("Created folder Work"), "{out}");
    d.fails(&["folder", "create", "work"], "", 9);
    d.fails(&["folder", "create", "a/b"], "", 9);

    let work = d.add_login("vpn", "work-vpn", &["--folder", "Work"]);
    assert_eq!(work["folder"], "Work");
    let home = d.add_login("vpn", "home-vpn", &[]);
    assert_eq!(home["folder"], "Personal");
    d.fails(&["add", "login", "x", "--folder", "Nope"], "pw\n", 5);

    // The bare name is ambiguous: exit 6, every candidate listed.
    let err = d.fails(&["get", "vpn"], "", 6);
    let work_id = str_field(&work, "id");
    let home_id = str_field(&home, "id");
    for expected in [
        "Personal/vpn",
        "Work/vpn",
        &work_id[..8],
        &home_id[..8],
        "FOLDER/NAME",
    ] {
        assert!(err.contains(expected), "{expected} missing from: {err}");
    }

    // FOLDER/NAME (folder case-insensitive) and id prefixes pick one.
    assert_eq!(
        d.ok(&["get", "Work/vpn", "--field", "password"], ""),
        "work-vpn\n"
    );
    assert_eq!(
        d.ok(&["get", "personal/vpn", "--field", "password"], ""),
        "home-vpn\n"
    );
    assert_eq!(
        d.ok(&["get", &work_id[..8], "--field", "password"], ""),
        "work-vpn\n"
    );
    assert_eq!(
        d.ok(
            &["get", &home_id.to_uppercase()[..10], "--field", "password"],
            ""
        ),
        "home-vpn\n"
    );
    assert_eq!(
        d.ok(&["get", work_id, "--field", "password"], ""),
        "work-vpn\n"
    );

    // Listing by folder, and folder ls.
    let ls = d.json(&["ls", "--folder", "Work", "--json"], "");
    assert_eq!(names(&ls), ["vpn"]);
    assert_eq!(ls[0]["folder"], "Work");
    assert_eq!(ls[0]["id"], work["id"]);
    d.fails(&["ls", "--folder", "Nope"], "", 5);
    let folders = d.json(&["folder", "ls", "--json"], "");
    assert_eq!(names(&folders), ["Personal", "Work"]);
    for f in folders.as_array().unwrap() {
        assert_eq!(f["items"], 1, "{f}");
        assert_eq!(f["role"], "manager", "{f}");
    }
    assert!(d.ok(&["folder", "ls"], "").contains("Work"));

    // Two items of one name in one folder: ambiguous too, and rm changes nothing.
    let a = d.add_login("dup", "dup-a", &[]);
    let b = d.add_login("dup", "dup-b", &[]);
    let err = d.fails(&["rm", "dup"], "", 6);
    assert!(err.contains(&str_field(&a, "id")[..8]), "{err}");
    assert!(err.contains(&str_field(&b, "id")[..8]), "{err}");
    assert_eq!(
        d.json(&["ls", "--trash", "--json"], ""),
        serde_json::json!([])
    );
    d.fails(&["edit", "Personal/dup", "--username", "x"], "", 6);
    d.ok(&["rm", &str_field(&b, "id")[..8]], "");
    assert_eq!(d.ok(&["get", "dup", "--field", "password"], ""), "dup-a\n");
}

#[test]
fn lock_get_fails_unlock_get_works() {
    let d = Daemon::start();
    d.init();
    d.add_login("bank", "bank-pw", &[]);
    d.ok(&["add", "totp", "otp"], "JBSWY3DPEHPK3PXP\n");
    assert_eq!(d.ok(&["lock"], ""), "Locked.\n");

    let status = d.status();
    assert_eq!(status["locked"], true);
    assert_eq!(status["initialized"], true);
    assert!(
        status["items"].is_null(),
        "counts leak while locked: {status}"
    );

    let err = d.fails(&["get", "bank", "--field", "password"], "", 3);
    assert!(err.contains("locked"), "{err}");
    assert!(err.contains("coffer unlock"), "{err}");
    for args in [
        &["ls"][..],
        &["search", "bank"],
        &["history", "bank"],
        &["totp", "otp"],
        &["folder", "ls"],
        &["rm", "bank"],
    ] {
        d.fails(args, "", 3);
    }
    d.fails(&["add", "login", "while-locked"], "pw\n", 3);
    d.fails(&["folder", "create", "While"], "", 3);
    // Locking twice is fine.
    d.ok(&["lock"], "");

    assert_eq!(d.ok(&["unlock", "--pin-stdin"], "246813\n"), "Unlocked.\n");
    assert_eq!(
        d.ok(&["get", "bank", "--field", "password"], ""),
        "bank-pw\n"
    );
    assert_eq!(names(&d.json(&["ls", "--json"], "")), ["bank", "otp"]);
    assert_eq!(d.status()["locked"], false);
    // Nothing attempted while locked happened.
    d.fails(&["get", "while-locked"], "", 5);
    assert_eq!(
        names(&d.json(&["folder", "ls", "--json"], "")),
        ["Personal"]
    );
}

#[test]
fn restart_keeps_data_and_starts_locked() {
    let mut d = Daemon::start();
    d.init();
    d.ok(&["folder", "create", "Work"], "");
    d.add_login(
        "GitHub",
        "gh-pw-1",
        &["--username", "octo", "--url", "https://github.com"],
    );
    d.ok(&["edit", "GitHub", "--password-stdin"], "gh-pw-2\n");
    d.ok(
        &["add", "note", "diary", "--folder", "Work"],
        "dear diary\nline 2\n",
    );
    d.ok(
        &["add", "card", "visa", "--holder", "J", "--expiry", "01/30"],
        "4111111111111111\n123\n",
    );
    d.ok(
        &["add", "totp", "otp"],
        "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n",
    );
    d.add_login("trashed", "t-pw", &[]);
    d.ok(&["rm", "trashed"], "");
    let device = d.status()["device_id"].clone();
    let ls = d.json(&["ls", "--json"], "");
    let trash = d.json(&["ls", "--trash", "--json"], "");
    let views: Vec<Value> = ["GitHub", "diary", "visa", "otp"]
        .iter()
        .map(|n| d.json(&["get", n, "--json"], ""))
        .collect();
    let history = d.json(&["history", "GitHub", "--json"], "");
    let old_pid = d.pid();

    d.restart();
    assert_ne!(d.pid(), old_pid);
    let status = d.status();
    assert_eq!(status["initialized"], true);
    assert_eq!(status["locked"], true);
    assert_eq!(status["device_id"], device);
    assert_eq!(status["name"], "Test User");
    d.fails(&["get", "GitHub"], "", 3);
    d.fails(&["unlock", "--pin-stdin"], "1357\n", 7);
    d.unlock();

    assert_eq!(d.json(&["ls", "--json"], ""), ls);
    assert_eq!(d.json(&["ls", "--trash", "--json"], ""), trash);
    for (name, view) in ["GitHub", "diary", "visa", "otp"].iter().zip(&views) {
        assert_eq!(&d.json(&["get", name, "--json"], ""), view, "{name}");
    }
    assert_eq!(d.json(&["history", "GitHub", "--json"], ""), history);
    assert_eq!(d.ok(&["totp", "otp", "--at", "59"], ""), "287082\n");
    assert_eq!(
        names(&d.json(&["folder", "ls", "--json"], "")),
        ["Personal", "Work"]
    );
    // And it keeps taking writes.
    d.add_login("after-restart", "ar-pw", &[]);
    d.restart();
    d.unlock();
    assert_eq!(
        d.ok(&["get", "after-restart", "--field", "password"], ""),
        "ar-pw\n"
    );
}

#[test]
fn auto_lock_after_idle_time() {
    let d = Daemon::start_with(Options {
        auto_lock_secs: Some(1),
        ..Options::default()
    });
    d.init();
    d.add_login("idle", "idle-pw", &[]);
    assert_eq!(d.status()["auto_lock_secs"], 1);
    let events = Events::start_synced(&d);
    // Whatever the sync dance left behind, this resets the idle clock.
    d.unlock();
    assert_eq!(
        d.ok(&["get", "idle", "--field", "password"], ""),
        "idle-pw\n"
    );

    std::thread::sleep(Duration::from_millis(2500));
    let err = d.fails(&["get", "idle", "--field", "password"], "", 3);
    assert!(err.contains("locked"), "{err}");
    assert_eq!(d.status()["locked"], true);
    let event = events.wait_for(Duration::from_secs(5), |e| {
        e["type"] == "lock_state" && e["reason"] == "idle"
    });
    assert_eq!(event["locked"], true);

    d.unlock();
    assert_eq!(
        d.ok(&["get", "idle", "--field", "password"], ""),
        "idle-pw\n"
    );
}

#[test]
fn events_report_changes_and_lock_state() {
    let d = Daemon::start();
    d.init();
    let events = Events::start_synced(&d);
    let wait = Duration::from_secs(5);

    let item = d.add_login("watched", "w-pw", &[]);
    let id = str_field(&item, "id").to_string();
    let folder_id = str_field(&item, "folder_id").to_string();
    let e = events.wait_for(wait, |e| e["type"] == "item_changed");
    assert_eq!(e["item_id"], id.as_str());
    assert_eq!(e["folder_id"], folder_id.as_str());
    assert_eq!(e["action"], "added");
    // Secrets never travel in events.
    assert!(!e.to_string().contains("w-pw"));

    d.ok(&["edit", "watched", "--username", "u"], "");
    let e = events.wait_for(wait, |e| e["type"] == "item_changed");
    assert_eq!(
        (e["item_id"].clone(), e["action"].clone()),
        (id.as_str().into(), "edited".into())
    );
    d.ok(&["rm", "watched"], "");
    let e = events.wait_for(wait, |e| e["type"] == "item_changed");
    assert_eq!(e["action"], "trashed");
    d.ok(&["restore", "watched"], "");
    let e = events.wait_for(wait, |e| e["type"] == "item_changed");
    assert_eq!(e["action"], "restored");

    let folder = d.json(&["folder", "create", "Work", "--json"], "");
    let e = events.wait_for(wait, |e| e["type"] == "folder_changed");
    assert_eq!(e["folder_id"], folder["id"]);

    d.ok(&["lock"], "");
    let e = events.wait_for(wait, |e| e["type"] == "lock_state");
    assert_eq!(
        (e["locked"].clone(), e["reason"].clone()),
        (true.into(), "request".into())
    );
    d.unlock();
    let e = events.wait_for(wait, |e| e["type"] == "lock_state");
    assert_eq!(
        (e["locked"].clone(), e["reason"].clone()),
        (false.into(), "pin".into())
    );

    // A failed write sends nothing.
    d.fails(&["add", "totp", "bad"], "not base32!\n", 9);
    assert!(events.next(Duration::from_millis(300)).is_none());
}

#[test]
fn status_json_and_socket_permissions() {
    let d = Daemon::start();
    let s = d.status();
    assert_eq!(s["initialized"], false);
    assert_eq!(s["locked"], true);
    assert!(s["device_id"].is_null());
    assert_eq!(s["protocol"], 1);
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(s["pid"], d.pid());
    assert_eq!(s["socket"], d.socket().to_str().unwrap());
    assert_eq!(s["data_dir"], d.data_dir().to_str().unwrap());
    assert_eq!(s["auto_lock_secs"], 900);
    assert!(d.ok(&["status"], "").contains("not initialised"));

    d.init();
    d.fails(
        &[
            "init",
            "--name",
            "Again",
            "--email",
            "a@b.org",
            "--pin-stdin",
        ],
        "9999\n",
        13,
    );
    d.add_login("one", "pw", &[]);
    let s = d.status();
    assert_eq!(s["initialized"], true);
    assert_eq!(s["locked"], false);
    assert_eq!(s["name"], "Test User");
    assert_eq!(s["email"], "test@example.org");
    let device = str_field(&s, "device_id");
    assert!(
        device.len() == 64 && device.chars().all(|c| c.is_ascii_hexdigit()),
        "{device}"
    );
    assert_eq!(s["folders"], 1);
    assert_eq!(s["items"], 1);
    let human = d.ok(&["status"], "");
    assert!(human.contains("unlocked"), "{human}");
    assert!(human.contains(&device[..16]), "{human}");

    // Socket 0600 in a 0700 folder; the data dir 0700.
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(d.socket()), 0o600);
    assert_eq!(mode(d.socket().parent().unwrap()), 0o700);
    assert_eq!(mode(d.data_dir()), 0o700);
}

/// A socket in a shared folder such as /tmp is refused, and the folder's
/// mode is left alone (the daemon once tightened its socket's folder to
/// 0700 whatever it was: run as root with the socket in /tmp, it locked
/// every other user out of /tmp).
#[test]
fn a_socket_in_a_shared_folder_is_refused_and_the_folder_left_alone() {
    let shared = coffer_tests::short_tempdir();
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let data = coffer_tests::short_tempdir();
    let mut cmd = std::process::Command::new(coffer_tests::cofferd_bin());
    cmd.args(["--no-mdns", "--no-ui"])
        .env("COFFER_DATA_DIR", data.path())
        .env("COFFER_SOCKET", shared.path().join("cofferd.sock"))
        .env("COFFER_NO_NETWORK", "1");
    let out = run_with_timeout(&mut cmd, b"", Duration::from_secs(20));
    assert!(
        !out.status.success(),
        "cofferd ran with its socket in a shared folder"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("shared"), "{err}");
    let mode = std::fs::metadata(shared.path())
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o1777);
}

#[test]
fn generate_and_clipboard_errors() {
    let d = Daemon::start();
    let pw = d.ok(&["generate", "--length", "32"], "");
    assert_eq!(pw.trim_end().chars().count(), 32, "{pw}");
    let pw2 = d.ok(&["generate", "--length", "32"], "");
    assert_ne!(pw, pw2, "two generated passwords are equal");
    let plain = d.ok(&["generate", "--length", "40", "--no-symbols"], "");
    assert!(
        plain.trim_end().chars().all(|c| c.is_ascii_alphanumeric()),
        "{plain}"
    );
    let words = d.ok(&["generate", "--words", "5"], "");
    assert_eq!(words.trim_end().split('-').count(), 5, "{words}");
    d.fails(&["generate", "--length", "0"], "", 2);
    d.fails(&["get"], "", 2);

    // --copy with no graphical session: its own exit code, nothing printed.
    d.init();
    d.add_login("clip", "clip-pw", &[]);
    let mut cmd = d.command(&["get", "clip", "--copy"]);
    cmd.env_remove("DISPLAY").env_remove("WAYLAND_DISPLAY");
    let out = run_with_timeout(&mut cmd, b"", Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(12), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("clip-pw"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("clipboard"));
}
