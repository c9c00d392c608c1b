//! The local web app's defences (issue 14), against a real `cofferd` over
//! raw HTTP/1.1: a missing, wrong or spent token, a foreign `Host`
//! (DNS rebinding), a cross-origin POST, a request without the CSRF token,
//! a session after the vault locked: each refused, and nothing changed.
//! The same requests with the right credentials succeed, so no refusal
//! here passes for an unrelated reason.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use coffer_tests::{str_field, Daemon, Options};
use serde_json::{json, Value};

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// One request on a fresh connection; `headers` may override `Host`.
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the web app");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the reply");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

/// A daemon serving its web app on a free port, initialised, with one login.
fn web_daemon() -> (Daemon, u16) {
    let d = Daemon::start_with(Options {
        args: vec!["--ui-listen".into(), "127.0.0.1:0".into()],
        ..Options::default()
    });
    d.init();
    d.add_login("Mail", "hunter2", &[]);
    let (_, port) = ui_link(&d);
    (d, port)
}

/// A fresh one-time token and the web app's port, from `coffer ui`.
fn ui_link(d: &Daemon) -> (String, u16) {
    let opened = d.json(&["ui", "--no-open", "--json"], "");
    let url = str_field(&opened, "url");
    let (base, token) = url
        .split_once("#token=")
        .expect("the token is in the fragment");
    let port = base
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches('/')
        .parse()
        .expect("a loopback URL with a port");
    assert_eq!(base, format!("http://127.0.0.1:{port}/"));
    (token.to_string(), port)
}

struct Session {
    cookie: String,
    csrf: String,
}

fn origin(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

fn start_session(port: u16, token: &str) -> Reply {
    http(
        port,
        "POST",
        "/api/session",
        &[("Origin", &origin(port))],
        &json!({ "token": token }).to_string(),
    )
}

fn login(d: &Daemon) -> (Session, u16) {
    let (token, port) = ui_link(d);
    let r = start_session(port, &token);
    assert_eq!(r.status, 200, "{}", r.body);
    let set = r
        .header("set-cookie")
        .expect("a session cookie")
        .to_string();
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    let cookie = set.split(';').next().expect("name=value").to_string();
    let csrf = str_field(&r.json(), "csrf").to_string();
    (Session { cookie, csrf }, port)
}

fn rpc(port: u16, headers: &[(&str, &str)], method: &str, params: Value) -> Reply {
    http(
        port,
        "POST",
        "/api/rpc",
        headers,
        &json!({ "method": method, "params": params }).to_string(),
    )
}

fn trashed(d: &Daemon) -> bool {
    d.coffer(&["get", "Mail", "--json"], "").status.code() != Some(0)
}

#[test]
fn without_a_valid_token_only_the_login_page_is_served() {
    let (d, port) = web_daemon();
    let page = http(port, "GET", "/", &[], "");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("coffer ui"), "{}", page.body);
    assert!(
        !page.body.contains("app.js"),
        "the app is served without a session"
    );
    assert_eq!(http(port, "GET", "/assets/app.js", &[], "").status, 401);
    assert_eq!(http(port, "GET", "/assets/login.js", &[], "").status, 200);
    let o = origin(port);
    assert_eq!(
        rpc(port, &[("Origin", &o)], "item.list", json!({})).status,
        401
    );
    assert_eq!(http(port, "GET", "/api/events", &[], "").status, 401);
    // A wrong token, a missing one, a forged cookie: refused.
    assert_eq!(start_session(port, &"0".repeat(64)).status, 401);
    let missing = http(port, "POST", "/api/session", &[("Origin", &o)], "{}");
    assert_eq!(missing.status, 400);
    let forged = format!("coffer_session_{port}={}", "ab".repeat(32));
    let r = rpc(
        port,
        &[("Origin", &o), ("Cookie", &forged), ("X-Coffer-Csrf", "x")],
        "item.trash",
        json!({ "item": "Mail" }),
    );
    assert_eq!(r.status, 401);
    assert!(!trashed(&d));
    // A token is spent on first use.
    let (token, _) = ui_link(&d);
    assert_eq!(start_session(port, &token).status, 200);
    assert_eq!(start_session(port, &token).status, 401);
    // The daemon never logs a token or a cookie.
    let log = d.log_text();
    assert!(!log.contains(&token), "the token is in the log");
}

#[test]
fn a_foreign_host_header_is_refused() {
    let (d, port) = web_daemon();
    let (s, _) = login(&d);
    let o = origin(port);
    let evil_host = format!("rebind.example:{port}");
    for (method, path) in [("GET", "/"), ("GET", "/assets/login.js")] {
        let r = http(port, method, path, &[("Host", &evil_host)], "");
        assert_eq!(r.status, 421, "{method} {path}: {}", r.body);
    }
    let r = rpc(
        port,
        &[
            ("Host", &evil_host),
            ("Origin", &o),
            ("Cookie", &s.cookie),
            ("X-Coffer-Csrf", &s.csrf),
        ],
        "item.trash",
        json!({ "item": "Mail" }),
    );
    assert_eq!(r.status, 421);
    assert!(!trashed(&d));
    // A token sent to a rebinding name is refused and stays unspent.
    let (token, _) = ui_link(&d);
    let r = http(
        port,
        "POST",
        "/api/session",
        &[("Host", &evil_host), ("Origin", &o)],
        &json!({ "token": token }).to_string(),
    );
    assert_eq!(r.status, 421);
    assert_eq!(start_session(port, &token).status, 200);
    // `localhost` is this machine too.
    let local = format!("localhost:{port}");
    let r = rpc(
        port,
        &[
            ("Host", &local),
            ("Origin", &format!("http://{local}")),
            ("Cookie", &s.cookie),
            ("X-Coffer-Csrf", &s.csrf),
        ],
        "item.list",
        json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

/// What a case is, its request headers, the status it must get.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16);

#[test]
fn a_cross_origin_post_or_a_missing_csrf_token_changes_nothing() {
    let (d, port) = web_daemon();
    let (s, _) = login(&d);
    let o = origin(port);
    let trash = json!({ "item": "Mail" });
    let wrong = "0".repeat(64);
    let cases: [Case; 6] = [
        (
            "a foreign Origin",
            vec![
                ("Origin", "http://evil.example"),
                ("Cookie", &s.cookie),
                ("X-Coffer-Csrf", &s.csrf),
            ],
            403,
        ),
        (
            "another local port",
            vec![
                ("Origin", "http://127.0.0.1:1"),
                ("Cookie", &s.cookie),
                ("X-Coffer-Csrf", &s.csrf),
            ],
            403,
        ),
        (
            "no Origin",
            vec![("Cookie", &s.cookie), ("X-Coffer-Csrf", &s.csrf)],
            403,
        ),
        (
            "a cross-site fetch",
            vec![
                ("Origin", &o),
                ("Sec-Fetch-Site", "cross-site"),
                ("Cookie", &s.cookie),
                ("X-Coffer-Csrf", &s.csrf),
            ],
            403,
        ),
        (
            "no CSRF token",
            vec![("Origin", &o), ("Cookie", &s.cookie)],
            401,
        ),
        (
            "a wrong CSRF token",
            vec![
                ("Origin", &o),
                ("Cookie", &s.cookie),
                ("X-Coffer-Csrf", &wrong),
            ],
            401,
        ),
    ];
    for (what, headers, status) in &cases {
        let r = rpc(port, headers, "item.trash", trash.clone());
        assert_eq!(r.status, *status, "{what}: {}", r.body);
        assert!(!trashed(&d), "{what}: the item was trashed");
    }
    // Methods outside the web app's list are refused even with a session.
    let ok = [
        ("Origin", o.as_str()),
        ("Cookie", &s.cookie),
        ("X-Coffer-Csrf", &s.csrf),
    ];
    let r = rpc(port, &ok, "vault.reset", json!({ "confirm": true }));
    assert!(r.json()["error"].is_object(), "{}", r.body);
    assert!(d.status()["initialized"].as_bool().unwrap_or(false));
    // The same request from the page itself works.
    let r = rpc(port, &ok, "item.trash", trash);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["result"].is_object(), "{}", r.body);
    assert!(trashed(&d));
}

/// What the page does with a value it was served (reveal, copy, TOTP
/// copy) reaches the audit trail through `audit.note`, as the CLI's does;
/// the activity view reads it back with `audit.query`. The daemon decides:
/// an action it records itself cannot be noted by the page, and a note
/// sent cross-origin is refused like any other call.
#[test]
fn the_pages_use_of_a_secret_is_audited_and_read_back() {
    let (d, port) = web_daemon();
    let (s, _) = login(&d);
    let o = origin(port);
    let ok = [
        ("Origin", o.as_str()),
        ("Cookie", &s.cookie),
        ("X-Coffer-Csrf", &s.csrf),
    ];
    let item = rpc(port, &ok, "item.get", json!({ "item": "Mail" })).json();
    let id = str_field(&item["result"], "id").to_string();
    let copies = |d: &Daemon| -> usize {
        let all = d.json(&["audit", "--action", "copy", "--json"], "");
        all.as_array().map_or(0, Vec::len)
    };

    let note = json!({ "action": "copy", "item": id, "field": "password" });
    let evil = [
        ("Origin", "http://evil.example"),
        ("Cookie", &s.cookie),
        ("X-Coffer-Csrf", &s.csrf),
    ];
    assert_eq!(rpc(port, &evil, "audit.note", note.clone()).status, 403);
    assert_eq!(copies(&d), 0, "a cross-origin note was recorded");
    let forged = rpc(port, &ok, "audit.note", json!({ "action": "unlock" })).json();
    assert!(forged["error"].is_object(), "{forged}");

    let r = rpc(port, &ok, "audit.note", note);
    assert!(r.json()["result"].is_object(), "{}", r.body);
    for action in ["reveal", "totp-copy"] {
        let r = rpc(
            port,
            &ok,
            "audit.note",
            json!({ "action": action, "item": id, "field": "password" }),
        );
        assert!(r.json()["result"].is_object(), "{action}: {}", r.body);
    }
    assert_eq!(copies(&d), 1, "the CLI reads the page's note");

    let r = rpc(
        port,
        &ok,
        "audit.query",
        json!({ "item": "Mail", "actions": ["copy", "reveal", "totp-copy"] }),
    );
    assert!(
        !r.body.contains("hunter2"),
        "a secret in the audit: {}",
        r.body
    );
    let rows = r.json()["result"].as_array().cloned().unwrap_or_default();
    let actions: Vec<&str> = rows.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions, ["copy", "reveal", "totp-copy"], "{}", r.body);
    for e in &rows {
        assert_eq!(e["item_name"], "Mail", "{e}");
        assert_eq!(e["item"], id.as_str(), "{e}");
        assert_eq!(e["field"], "password", "{e}");
    }
    let v = rpc(port, &ok, "audit.verify", json!({})).json();
    assert_eq!(v["result"]["clean"], true, "{v}");
}

/// The page imports with the file's bytes in the body (`import.data`);
/// `import`, which names a file on this machine for the daemon to read, is
/// not offered. A bad upload changes nothing.
#[test]
fn the_web_app_imports_from_the_body_never_from_a_path() {
    let (d, port) = web_daemon();
    let (s, _) = login(&d);
    let o = origin(port);
    let ok = [
        ("Origin", o.as_str()),
        ("Cookie", &s.cookie),
        ("X-Coffer-Csrf", &s.csrf),
    ];
    let file = d.dir.path().join("chrome.csv");
    let csv = "name,url,username,password\nWiki,https://wiki.example/,ada,wiki-Secret-31\n";
    std::fs::write(&file, csv).expect("write the export");
    let by_path = rpc(
        port,
        &ok,
        "import",
        json!({ "format": "chrome-csv", "path": file.to_str().expect("utf-8") }),
    )
    .json();
    assert!(by_path["error"].is_object(), "{by_path}");
    let not_base64 = rpc(
        port,
        &ok,
        "import.data",
        json!({ "format": "chrome-csv", "data_base64": "not base64!" }),
    )
    .json();
    assert!(not_base64["error"].is_object(), "{not_base64}");
    assert!(d.coffer(&["get", "Wiki", "--json"], "").status.code() != Some(0));

    let data = data_encoding::BASE64.encode(csv.as_bytes());
    let r = rpc(
        port,
        &ok,
        "import.data",
        json!({ "format": "chrome-csv", "data_base64": data }),
    );
    assert_eq!(r.json()["result"]["added"]["login"], 1, "{}", r.body);
    let got = d.json(&["get", "Wiki", "--field", "password", "--json"], "");
    assert_eq!(str_field(&got, "value"), "wiki-Secret-31");
}

#[test]
fn the_session_ends_when_the_vault_locks() {
    let (d, port) = web_daemon();
    let (s, _) = login(&d);
    let o = origin(port);
    let h = [
        ("Origin", o.as_str()),
        ("Cookie", &s.cookie),
        ("X-Coffer-Csrf", &s.csrf),
    ];
    assert_eq!(rpc(port, &h, "item.list", json!({})).status, 200);
    let page = http(port, "GET", "/", &[("Cookie", &s.cookie)], "");
    assert!(page.body.contains("app.js"));
    // Every response carries the strict policy.
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    d.ok(&["lock"], "");
    // The lock reaches the sessions task through the event bus.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while rpc(port, &h, "status", json!({})).status != 401 {
        assert!(
            std::time::Instant::now() < deadline,
            "the session outlived the lock"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    d.unlock();
    assert_eq!(rpc(port, &h, "item.list", json!({})).status, 401);
    let page = http(port, "GET", "/", &[("Cookie", &s.cookie)], "");
    assert!(!page.body.contains("app.js"));
}

#[test]
fn a_taken_port_leaves_the_daemon_running_without_its_web_app() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let d = Daemon::start_with(Options {
        args: vec!["--ui-listen".into(), format!("127.0.0.1:{port}")],
        ..Options::default()
    });
    d.init();
    d.add_login("Mail", "hunter2", &[]);
    let err = d.fails(&["ui", "--no-open"], "", 9);
    assert!(err.contains("no web app"), "{err}");
    assert!(d.log_text().contains("cannot serve the web app"));
    // A non-loopback address is refused at start.
    let out = std::process::Command::new(coffer_tests::cofferd_bin())
        .args(["--ui-listen", "0.0.0.0:0", "--no-network", "--no-mdns"])
        .env("COFFER_DATA_DIR", d.dir.path().join("other"))
        .env("COFFER_SOCKET", d.dir.path().join("other.sock"))
        .output()
        .expect("run cofferd");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}

/// The web layer decides nothing (docs/ARCHITECTURE.md, "server/web.rs"):
/// it reaches the vault only through `Shared::dispatch`, the IPC server's
/// own function, and its page has no inline script or style (the CSP
/// would refuse them).
#[test]
fn the_web_layer_only_forwards_to_the_daemons_dispatch() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let web = root.join("daemon/src/server/web.rs");
    let mut files = coffer_tests::files_under(&root.join("daemon/src/server/web"));
    files.push(web.clone());
    let mut hits = Vec::new();
    for file in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "rs"))
    {
        let text = std::fs::read_to_string(file).expect("read");
        for pattern in [
            "replica",
            "blocking_call",
            "coffer_crdt",
            "Role::Manager",
            "Role::Editor",
            "Role::Member",
            "Vault",
        ] {
            if text
                .lines()
                .any(|l| !l.trim_start().starts_with("//") && l.contains(pattern))
            {
                hits.push(format!("{}: {pattern}", file.display()));
            }
        }
    }
    assert!(
        hits.is_empty(),
        "the web layer reaches past dispatch:\n{}",
        hits.join("\n")
    );
    let text = std::fs::read_to_string(&web).expect("read");
    assert!(
        text.contains("shared.dispatch("),
        "the web app no longer calls dispatch"
    );
    for page in ["login.html", "app.html"] {
        let html = std::fs::read_to_string(root.join("daemon/src/server/web/assets").join(page))
            .expect("read");
        for inline in ["<script>", "style=", "onclick=", "onload=", "javascript:"] {
            assert!(!html.contains(inline), "{page} has inline {inline}");
        }
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "{page} loads a third-party asset"
        );
    }
}

/// The chaos suite's setup never converged with a device whose peer port
/// was 7374, the web app's default: libp2p dials from its listen port, and
/// the web app holding it on loopback made every dial fail. The web app
/// now moves off a peer port.
#[test]
fn the_web_app_never_takes_the_peer_port() {
    let peer_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let d = Daemon::start_with(Options {
        args: vec![
            "--listen".into(),
            format!("/ip4/127.0.0.1/tcp/{peer_port}"),
            "--ui-listen".into(),
            format!("127.0.0.1:{peer_port}"),
        ],
        ..Options::default()
    });
    d.init();
    let (_, ui_port) = ui_link(&d);
    assert_ne!(ui_port, peer_port);
    assert!(d.log_text().contains("peer-to-peer listen port"));
}
