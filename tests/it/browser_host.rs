//! The native messaging host against a real daemon (issue 15): the
//! browser's framing on stdin/stdout, only Coffer's extension served, only
//! the four `browser.*` methods forwarded, origin binding decided by the
//! daemon, every fill an activity record.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use coffer_tests::{native_host_bin, run_with_timeout, str_field, Daemon};
use serde_json::{json, Value};

const CHROMIUM: &str = "chrome-extension://ljbebaglikapmoonnjailinnjchcfhfh/";

fn frames(requests: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in requests {
        let body = serde_json::to_vec(r).unwrap();
        out.extend_from_slice(&(body.len() as u32).to_ne_bytes());
        out.extend_from_slice(&body);
    }
    out
}

fn unframe(mut bytes: &[u8]) -> Vec<Value> {
    let mut out = Vec::new();
    while bytes.len() >= 4 {
        let n = u32::from_ne_bytes(bytes[..4].try_into().unwrap()) as usize;
        out.push(serde_json::from_slice(&bytes[4..4 + n]).unwrap());
        bytes = &bytes[4 + n..];
    }
    out
}

/// Runs the host as the browser would (`args` after the program), sends
/// `requests`, closes stdin; returns the exit code and the replies.
fn host(d: &Daemon, args: &[&str], requests: &[Value]) -> (Option<i32>, Vec<Value>, String) {
    let mut cmd = Command::new(native_host_bin());
    cmd.args(args).env("COFFER_SOCKET", d.socket());
    let out = run_with_timeout(&mut cmd, &frames(requests), Duration::from_secs(30));
    (
        out.status.code(),
        unframe(&out.stdout),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn req(id: u64, method: &str, params: Value) -> Value {
    json!({"id": id, "method": method, "params": params})
}

#[test]
fn the_host_serves_coffers_extension_the_browser_methods_only() {
    let d = Daemon::start();
    let cli = d.cli();
    cli.init();
    let bank = cli.add_login(
        "Bank",
        "bank-pw",
        &["--username", "ada", "--url", "https://www.bank.com/login"],
    );
    let bank_id = str_field(&bank, "id").to_string();
    cli.ok(&["totp", "set", "Bank"], "JBSWY3DPEHPK3PXP\n");
    cli.add_login("Other", "other-pw", &["--url", "https://other.org"]);

    let (code, replies, _) = host(
        &d,
        &[CHROMIUM],
        &[
            req(
                1,
                "browser.find",
                json!({"origin": "https://login.bank.com"}),
            ),
            req(
                2,
                "browser.fill",
                json!({"origin": "https://login.bank.com", "item": bank_id}),
            ),
            req(
                3,
                "browser.totp",
                json!({"origin": "https://bank.com", "item": bank_id}),
            ),
            // Refusals: the daemon's (origin binding) and the host's.
            req(
                4,
                "browser.fill",
                json!({"origin": "http://bank.com", "item": bank_id}),
            ),
            req(
                5,
                "browser.fill",
                json!({"origin": "https://bank.com.evil.net", "item": bank_id}),
            ),
            req(
                6,
                "browser.find",
                json!({"origin": "https://bank.com.evil.net"}),
            ),
            req(7, "item.get", json!({"item": "Bank"})),
            req(8, "export", json!({"pin": "246813", "format": "json"})),
            req(9, "item.list", json!({})),
            req(
                10,
                "browser.save",
                json!({"origin": "https://shop.example.com/cart", "username": "ada", "password": "shop-pw"}),
            ),
        ],
    );
    assert_eq!(code, Some(0));
    let by_id = |id: u64| replies.iter().find(|r| r["id"] == id).cloned().unwrap();
    let found = by_id(1)["result"].as_array().cloned().unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["name"], "Bank");
    assert_eq!(found[0]["username"], "ada");
    assert_eq!(found[0]["has_totp"], true);
    assert!(found[0].get("password").is_none());
    assert_eq!(
        by_id(2)["result"],
        json!({"username": "ada", "password": "bank-pw"})
    );
    let code3 = by_id(3)["result"]["code"].as_str().unwrap().to_string();
    assert_eq!(code3.len(), 6);
    for id in [4, 5] {
        assert_eq!(by_id(id)["error"]["code"], "denied", "{}", by_id(id));
    }
    assert_eq!(by_id(6)["result"], json!([]));
    for id in [7, 8, 9] {
        let r = by_id(id);
        assert_eq!(r["error"]["code"], "refused", "{r}");
        assert!(!r.to_string().contains("bank-pw"));
    }
    assert_eq!(by_id(10)["result"]["folder"], "Personal");
    // The saved login is the CLI's like any other.
    let shown = cli.json(&["get", "shop.example.com", "--json"], "");
    assert_eq!(shown["urls"], json!(["https://shop.example.com"]));

    // One activity record per fill and per TOTP insert, with the page.
    let records = cli.json(&["audit", "--json", "--action", "autofill"], "");
    let rows: Vec<(String, String)> = records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                str_field(r, "field").to_string(),
                str_field(r, "detail").to_string(),
            )
        })
        .collect();
    assert_eq!(rows.len(), 2, "{records}");
    assert!(rows.contains(&("password".into(), "https://login.bank.com".into())));
    assert!(rows.contains(&("totp".into(), "https://bank.com".into())));

    // Locked: the extension is told so, nothing else.
    cli.ok(&["lock"], "");
    let (_, replies, _) = host(
        &d,
        &[CHROMIUM],
        &[req(
            1,
            "browser.find",
            json!({"origin": "https://bank.com"}),
        )],
    );
    assert_eq!(replies[0]["error"]["code"], "locked");
}

#[test]
fn another_extension_gets_nothing() {
    let d = Daemon::start();
    d.cli().init();
    let ask = [req(
        1,
        "browser.find",
        json!({"origin": "https://bank.com"}),
    )];
    for args in [
        vec!["chrome-extension://npfidpanbakohhblihpkeilnjdkhfklo/"],
        vec![
            "/home/u/.mozilla/native-messaging-hosts/dev.coffer.host.json",
            "evil@example.com",
        ],
        vec![],
    ] {
        let (code, replies, stderr) = host(&d, &args, &ask);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(replies.is_empty(), "{args:?}");
    }
    // Firefox's way of naming Coffer's extension is served.
    let (code, replies, _) = host(
        &d,
        &[
            "/home/u/.mozilla/native-messaging-hosts/dev.coffer.host.json",
            "browser@coffer.invalid",
        ],
        &ask,
    );
    assert_eq!(code, Some(0));
    assert_eq!(replies[0]["result"], json!([]));
}

#[test]
fn an_oversized_or_broken_message_ends_the_session() {
    let d = Daemon::start();
    d.cli().init();
    let mut cmd = Command::new(native_host_bin());
    cmd.arg(CHROMIUM)
        .env("COFFER_SOCKET", d.socket())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // A length of 1 GiB: refused before anything is read or allocated.
    stdin.write_all(&(1u32 << 30).to_ne_bytes()).unwrap();
    let _ = stdin.write_all(&[b'{'; 4096]);
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
}

#[test]
fn install_writes_and_uninstall_removes_the_manifests_under_home() {
    let d = Daemon::start();
    let home = d.dir.path().join("home");
    let cli = d.cli();
    let run = |args: &[&str]| {
        let mut cmd = cli.command(args);
        cmd.env("HOME", &home).env_remove("XDG_CONFIG_HOME");
        let out = run_with_timeout(&mut cmd, b"", Duration::from_secs(30));
        assert!(out.status.success(), "{args:?}: {out:?}");
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let host_bin = native_host_bin();
    let host_bin = host_bin.to_str().unwrap();
    let r = run(&["browser", "install", "--host", host_bin, "--json"]);
    assert_eq!(r["manifests"].as_array().unwrap().len(), 3, "{r}");
    let chromium = home.join(".config/chromium/NativeMessagingHosts/dev.coffer.host.json");
    let firefox = home.join(".mozilla/native-messaging-hosts/dev.coffer.host.json");
    let m: Value = serde_json::from_slice(&std::fs::read(&chromium).unwrap()).unwrap();
    assert_eq!(m["allowed_origins"], json!([CHROMIUM]));
    assert_eq!(
        m["path"],
        std::fs::canonicalize(host_bin).unwrap().to_str().unwrap()
    );
    let m: Value = serde_json::from_slice(&std::fs::read(&firefox).unwrap()).unwrap();
    assert_eq!(m["allowed_extensions"], json!(["browser@coffer.invalid"]));
    let r = run(&["browser", "uninstall", "--browser", "firefox", "--json"]);
    assert_eq!(r["manifests"].as_array().unwrap().len(), 1);
    assert!(!firefox.exists() && chromium.exists());
    run(&["browser", "uninstall", "--json"]);
    assert!(!chromium.exists());
}
