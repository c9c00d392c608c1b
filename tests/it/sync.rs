//! Peer-to-peer sync between real `cofferd` processes on loopback (issue 4):
//! static peers, `--no-mdns` (the harness adds it), pairing with
//! `coffer device trust`, propagation, offline edits, restarts, refusal of
//! unknown and revoked devices, and peers that send garbage.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use coffer_tests::{bin_dir, run_with_timeout, str_field, Cli, Daemon, Events, Options};
use serde_json::Value;

pub const SYNC_TIMEOUT: Duration = Duration::from_secs(20);

/// A port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

pub fn addr(port: u16) -> String {
    format!("/ip4/127.0.0.1/tcp/{port}")
}

/// `--listen` on `port` and `--peer` for each of `peers`.
pub fn net_args(port: u16, peers: &[u16]) -> Vec<String> {
    let mut args = vec!["--listen".to_string(), addr(port)];
    for p in peers {
        args.push("--peer".into());
        args.push(addr(*p));
    }
    args
}

pub fn start_node(port: u16, peers: &[u16]) -> Daemon {
    Daemon::start_with(Options {
        args: net_args(port, peers),
        ..Default::default()
    })
}

pub fn pairing_key(cli: &Cli) -> String {
    str_field(&cli.json(&["device", "id", "--json"], ""), "pairing_key").to_string()
}

pub fn device_id(cli: &Cli) -> String {
    str_field(&cli.json(&["device", "id", "--json"], ""), "device_id").to_string()
}

/// Polls `check` every 50 ms until it holds; panics with `what` after `timeout`.
#[track_caller]
pub fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// The item `reference` as JSON, if this daemon has it.
pub fn item(cli: &Cli, reference: &str) -> Option<Value> {
    let out = cli.coffer(&["get", reference, "--json", "--reveal"], "");
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).expect("get --json prints JSON"))
}

pub fn folder_items(cli: &Cli, folder: &str) -> usize {
    let out = cli.coffer(&["ls", "--folder", folder, "--json"], "");
    if !out.status.success() {
        return 0;
    }
    let v: Value = serde_json::from_slice(&out.stdout).expect("ls --json prints JSON");
    v.as_array().map_or(0, Vec::len)
}

pub fn has_folder(cli: &Cli, name: &str) -> bool {
    let v = cli.json(&["folder", "ls", "--json"], "");
    v.as_array()
        .is_some_and(|a| a.iter().any(|f| f["name"] == name))
}

pub fn connected(cli: &Cli, device: &str) -> bool {
    let v = cli.json(&["peers", "--json"], "");
    v["peers"].as_array().is_some_and(|a| {
        a.iter()
            .any(|p| p["device_id"] == device && p["connected"] == true)
    })
}

/// Three daemons on loopback, each with the other two as static peers,
/// paired both ways; A's folder "Team" is shared with B and C as editors.
pub struct Mesh {
    pub a: Daemon,
    pub b: Daemon,
    pub c: Daemon,
    pub ports: [u16; 3],
}

impl Mesh {
    pub fn start() -> Mesh {
        let ports = [free_port(), free_port(), free_port()];
        let a = start_node(ports[0], &[ports[1], ports[2]]);
        let b = start_node(ports[1], &[ports[0], ports[2]]);
        let c = start_node(ports[2], &[ports[0], ports[1]]);
        for d in [&a, &b, &c] {
            d.init();
        }
        let keys = [pairing_key(&a), pairing_key(&b), pairing_key(&c)];
        a.ok(&["folder", "create", "Team"], "");
        a.ok(
            &[
                "device", "trust", &keys[1], "--name", "B", "--share", "Team",
            ],
            "",
        );
        a.ok(
            &[
                "device", "trust", &keys[2], "--name", "C", "--share", "Team",
            ],
            "",
        );
        b.ok(&["device", "trust", &keys[0], "--name", "A"], "");
        b.ok(&["device", "trust", &keys[2], "--name", "C"], "");
        c.ok(&["device", "trust", &keys[0], "--name", "A"], "");
        c.ok(&["device", "trust", &keys[1], "--name", "B"], "");
        for d in [&b, &c] {
            wait_until(SYNC_TIMEOUT, "the shared folder arrives", || {
                has_folder(d, "Team")
            });
        }
        Mesh { a, b, c, ports }
    }
}

#[test]
fn item_added_on_a_is_readable_on_b_and_c() {
    let m = Mesh::start();
    let events = Events::start_synced(&m.c.cli());
    m.a.add_login(
        "GitHub",
        "hunter2-sync",
        &["--folder", "Team", "--username", "octo"],
    );
    for d in [&m.b, &m.c] {
        wait_until(SYNC_TIMEOUT, "the item arrives", || {
            item(d, "Team/GitHub").is_some()
        });
        let v = item(d, "Team/GitHub").unwrap();
        assert_eq!(v["fields"]["password"], "hunter2-sync");
        assert_eq!(v["fields"]["username"], "octo");
    }
    // C saw it as an event, and its peers and sync status say so.
    events.wait_for(SYNC_TIMEOUT, |e| {
        e["type"] == "item_changed" && e["action"] == "synced"
    });
    let a_id = device_id(&m.a);
    assert!(connected(&m.c, &a_id));
    let peers = m.c.json(&["peers", "--json"], "");
    let pa = peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["device_id"] == a_id.as_str())
        .unwrap();
    assert_eq!(pa["name"], "A");
    assert!(pa["last_sync_ms"].as_i64().is_some(), "{peers:#}");
    // An edit on B reaches A and C as well.
    m.b.ok(&["edit", "Team/GitHub", "--username", "octocat"], "");
    for d in [&m.a, &m.c] {
        wait_until(SYNC_TIMEOUT, "B's edit arrives", || {
            item(d, "Team/GitHub").is_some_and(|v| v["fields"]["username"] == "octocat")
        });
    }
    // Every replica holds the same envelopes of the folder.
    let vv = |d: &Daemon| {
        let s = d.json(&["sync", "status", "--json"], "");
        s["spaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "Team")
            .map(|s| s["version_vector"].clone())
            .unwrap()
    };
    wait_until(SYNC_TIMEOUT, "version vectors agree", || {
        vv(&m.a) == vv(&m.b) && vv(&m.b) == vv(&m.c)
    });
}

#[test]
fn concurrent_offline_edits_merge_with_both_values_visible() {
    let mut m = Mesh::start();
    m.a.add_login("Mail", "original", &["--folder", "Team"]);
    wait_until(SYNC_TIMEOUT, "the item reaches B", || {
        item(&m.b, "Team/Mail").is_some()
    });

    // B goes offline: restarted on a port nobody dials, with no peers.
    m.b.stop();
    m.b.set_args(net_args(free_port(), &[]));
    m.b.spawn();
    m.b.unlock();
    m.a.ok(&["edit", "Team/Mail", "--password-stdin"], "from-a\n");
    m.b.ok(&["edit", "Team/Mail", "--password-stdin"], "from-b\n");
    m.b.ok(&["edit", "Team/Mail", "--username", "b-user"], "");
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        item(&m.a, "Team/Mail").unwrap()["fields"]["password"],
        "from-a"
    );

    // Back on its own port with its peers: it syncs while still locked.
    m.b.stop();
    m.b.set_args(net_args(m.ports[1], &[m.ports[0], m.ports[2]]));
    m.b.spawn();
    let status = m.b.status();
    assert_eq!(status["locked"], true);
    wait_until(SYNC_TIMEOUT, "A has B's offline edits", || {
        item(&m.a, "Team/Mail").is_some_and(|v| v["fields"]["username"] == "b-user")
    });
    m.b.unlock();
    let views: Vec<Value> = [&m.a, &m.b, &m.c]
        .iter()
        .map(|d| {
            wait_until(SYNC_TIMEOUT, "all edits arrive", || {
                item(d, "Team/Mail").is_some_and(|v| v["fields"]["username"] == "b-user")
                    && item(d, "Team/Mail").is_some_and(|v| {
                        !v["conflicts"].is_null() && v["conflicts"].get("password").is_some()
                    })
            });
            item(d, "Team/Mail").unwrap()
        })
        .collect();
    // Same winner everywhere, and the other value kept as a conflict.
    let winner = views[0]["fields"]["password"].as_str().unwrap().to_string();
    assert!(winner == "from-a" || winner == "from-b", "{winner}");
    let loser = if winner == "from-a" {
        "from-b"
    } else {
        "from-a"
    };
    for v in &views {
        assert_eq!(v["fields"]["password"], winner.as_str(), "{v:#}");
        let c = v["conflicts"]["password"]
            .as_array()
            .expect("a password conflict");
        assert!(c.iter().any(|x| x == loser), "{v:#}");
    }
}

/// A Chrome CSV export with `n` logins.
fn csv_with(n: usize, dir: &std::path::Path) -> std::path::PathBuf {
    let mut text = String::from("name,url,username,password,note\n");
    for i in 0..n {
        text.push_str(&format!(
            "svc{i:05},https://svc{i:05}.example,user{i},pw-{i:05}-secret,\n"
        ));
    }
    let path = dir.join("export.csv");
    std::fs::write(&path, text).unwrap();
    path
}

/// A TCP relay on loopback to `target` that can be cut like a link that
/// drops every packet: once frozen it passes nothing on and closes
/// nothing, so a peer that dies behind it leaves a half-open connection on
/// the other side (what the chaos suite's cut links did, seed 60308).
struct Relay {
    port: u16,
    frozen: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
}

impl Relay {
    fn start(target: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let port = listener.local_addr().unwrap().port();
        let frozen = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let (f, d) = (frozen.clone(), done.clone());
        thread::spawn(move || {
            for client in listener.incoming() {
                if d.load(Ordering::SeqCst) || f.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                for (from, to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let (f, d) = (f.clone(), d.clone());
                    thread::spawn(move || pipe(from, to, &f, &d));
                }
            }
        });
        Relay { port, frozen, done }
    }

    fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, frozen: &AtomicBool, done: &AtomicBool) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf).unwrap_or(0);
        if frozen.load(Ordering::SeqCst) {
            // Cut: hold both ends open, pass nothing, tell nobody.
            while !done.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(100));
            }
            return;
        }
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// Chaos seed 60308: A dies while its link to B is cut, so B keeps a
/// half-open connection to it. A comes back and connects again; B, still
/// "connected", kept its old session: it read A's new stream but wrote its
/// hello into the dead connection, and A, waiting for that hello, sent B
/// nothing for good (A's last writes never reached B).
#[test]
fn a_peer_back_on_a_new_connection_while_the_old_one_is_half_open_syncs() {
    let pa = free_port();
    let pb = free_port();
    let relay = Relay::start(pb);
    let mut a = start_node(pa, &[relay.port]);
    let b = start_node(pb, &[]);
    a.init();
    b.init();
    a.ok(&["folder", "create", "Team"], "");
    a.ok(
        &[
            "device",
            "trust",
            &pairing_key(&b),
            "--name",
            "B",
            "--share",
            "Team",
        ],
        "",
    );
    b.ok(&["device", "trust", &pairing_key(&a), "--name", "A"], "");
    wait_until(SYNC_TIMEOUT, "the shared folder arrives", || {
        has_folder(&b, "Team")
    });
    a.add_login("before", "pw-before", &["--folder", "Team"]);
    wait_until(SYNC_TIMEOUT, "the first item arrives", || {
        item(&b, "Team/before").is_some()
    });
    let a_id = device_id(&a);
    // The link is cut and A dies: B never hears of it.
    relay.freeze();
    a.kill9();
    thread::sleep(Duration::from_millis(500));
    assert!(connected(&b, &a_id), "B should still believe A connected");
    // A is back, straight to B this time.
    a.set_args(net_args(pa, &[pb]));
    a.spawn();
    a.unlock();
    a.add_login("after", "pw-after", &["--folder", "Team"]);
    wait_until(
        SYNC_TIMEOUT,
        "A's write after its restart reaches B",
        || item(&b, "Team/after").is_some(),
    );
    b.add_login("from-b", "pw-b", &["--folder", "Team"]);
    wait_until(SYNC_TIMEOUT, "B's write reaches A", || {
        item(&a, "Team/from-b").is_some()
    });
}

#[test]
fn daemon_restarted_mid_sync_converges() {
    const N: usize = 3000;
    let pa = free_port();
    let pb = free_port();
    let a = start_node(pa, &[pb]);
    let mut b = start_node(pb, &[pa]);
    a.init();
    b.init();
    a.ok(&["folder", "create", "Bulk"], "");
    let csv = csv_with(N, a.dir.path());
    a.ok(&["import", csv.to_str().unwrap(), "--folder", "Bulk"], "");
    assert_eq!(folder_items(&a, "Bulk"), N);
    let events = Events::start_synced(&b.cli());
    b.ok(&["device", "trust", &pairing_key(&a)], "");
    a.ok(
        &["device", "trust", &pairing_key(&b), "--share", "Bulk"],
        "",
    );
    // Kill B as soon as the first batch lands.
    events.wait_for(SYNC_TIMEOUT, |e| e["type"] == "sync_progress");
    b.kill9();
    drop(events);
    b.spawn();
    b.unlock();
    wait_until(Duration::from_secs(60), "B holds every item", || {
        folder_items(&b, "Bulk") == N
    });
    let v = item(&b, "Bulk/svc01234").unwrap();
    assert_eq!(v["fields"]["password"], "pw-01234-secret");
    // The grant took effect once A's chain was complete: B may edit.
    wait_until(SYNC_TIMEOUT, "B is an editor of the folder", || {
        let folders = b.json(&["folder", "ls", "--json"], "");
        folders
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "Bulk" && f["role"] == "editor")
    });
    b.ok(&["edit", "Bulk/svc00007", "--username", "edited-on-b"], "");
    wait_until(SYNC_TIMEOUT, "B's edit reaches A", || {
        item(&a, "Bulk/svc00007").is_some_and(|v| v["fields"]["username"] == "edited-on-b")
    });
}

fn probe(args: &[&str]) -> Value {
    let out = run_with_timeout(
        Command::new(bin_dir().join("coffer-probe")).args(args),
        b"",
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "coffer-probe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the probe prints JSON")
}

#[test]
fn unknown_device_is_cut_off_and_cannot_push() {
    let pa = free_port();
    let a = start_node(pa, &[]);
    a.init();
    let personal = str_field(&a.status(), "device_id").to_string();
    let folder = a.json(&["folder", "ls", "--json"], "")[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let before = a.json(&["sync", "status", "--json"], "");
    let r = probe(&["stranger", "push", &addr(pa), &folder]);
    assert_eq!(r["connected"], true, "{r}");
    assert_eq!(
        r["closed"], true,
        "the daemon kept a stranger connected: {r}"
    );
    assert!(
        !r["received"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "hello"),
        "the daemon talked to a stranger: {r}"
    );
    // Nothing it sent was kept, and the refusal was logged.
    assert_eq!(a.json(&["sync", "status", "--json"], ""), before);
    assert!(a.log_text().contains("refused a peer"), "{}", a.log_text());
    assert!(!personal.is_empty());
    // A real device that A does not trust is refused the same way.
    let pb = free_port();
    let b = start_node(pb, &[pa]);
    b.init();
    b.ok(
        &["device", "trust", &pairing_key(&a), "--share", "Personal"],
        "",
    );
    b.add_login("Secret", "never-leaves-b", &[]);
    thread::sleep(Duration::from_secs(2));
    assert!(!connected(&a, &device_id(&b)));
    assert_eq!(
        a.json(&["folder", "ls", "--json"], "")
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// While an invite is open, an unknown device's connection is kept (for
/// enrolment): it can open the sync protocol and push, and must be refused.
#[test]
fn a_guest_cannot_push_while_an_invite_is_open() {
    let pa = free_port();
    let a = start_node(pa, &[]);
    a.init();
    a.ok(&["team", "create", "Acme"], "");
    let folder = a.json(&["folder", "ls", "--json"], "")[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    a.json(&["invite", "someone@example.com", "--json"], "");
    let before = a.json(&["sync", "status", "--json"], "");
    let r = probe(&["guest", "push", &addr(pa), &folder]);
    // The guest's connection is kept (enrolment may follow) until it opens
    // the sync protocol: then it is cut off, often before its side of the
    // stream negotiation even completes (`stream_opened` may be false);
    // the daemon's log shows the stream arrived.
    assert_eq!(r["connected"], true, "{r}");
    assert_eq!(r["closed"], true, "a guest that pushed was kept: {r}");
    assert!(
        !r["received"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "hello"),
        "the daemon synced with a guest: {r}"
    );
    assert_eq!(a.json(&["sync", "status", "--json"], ""), before);
    assert!(
        a.log_text()
            .contains("stream from a device this one does not sync with"),
        "{}",
        a.log_text()
    );
    // The invite still works afterwards (the guest did not burn it).
    assert_eq!(
        a.json(&["invite", "pending", "--json"], ""),
        serde_json::json!([])
    );
}

#[test]
fn revoked_device_is_cut_off_and_gets_nothing_new() {
    let m = Mesh::start();
    let c_id = device_id(&m.c);
    m.a.add_login("Before", "seen-by-all", &["--folder", "Team"]);
    wait_until(SYNC_TIMEOUT, "C has the first item", || {
        item(&m.c, "Team/Before").is_some()
    });

    let r = m.a.json(&["device", "revoke", &c_id, "--json"], "");
    assert_eq!(r["folders"].as_array().unwrap().len(), 1, "{r:#}");
    for d in [&m.a, &m.b] {
        wait_until(SYNC_TIMEOUT, "C is disconnected", || !connected(d, &c_id));
    }
    // B learnt of the removal: C is no longer a member anywhere.
    wait_until(SYNC_TIMEOUT, "B sees C removed", || {
        let s = m.b.json(&["sync", "status", "--json"], "");
        s["spaces"].as_array().unwrap().iter().all(|s| {
            !s["members"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x == c_id.as_str())
        })
    });
    m.a.add_login("After", "not-for-c", &["--folder", "Team"]);
    let deadline = Instant::now() + SYNC_TIMEOUT;
    while item(&m.b, "Team/After").is_none() {
        assert!(
            Instant::now() < deadline,
            "B did not get the new item\n--- A ---\n{}\n--- B ---\n{}\n{:#}",
            m.a.log_text(),
            m.b.log_text(),
            m.b.json(&["sync", "status", "--json"], "")
        );
        thread::sleep(Duration::from_millis(50));
    }
    // C tries to push (its write may already be refused locally).
    let _ = m.c.coffer(
        &["add", "login", "FromC", "--folder", "Team"],
        "pushed-by-revoked\n",
    );
    m.c.ok(&["sync", "now"], "");
    thread::sleep(Duration::from_secs(2));
    assert!(
        item(&m.c, "Team/After").is_none(),
        "C received content after its revocation"
    );
    for d in [&m.a, &m.b] {
        assert!(
            item(d, "Team/FromC").is_none(),
            "C's write arrived after its revocation"
        );
        assert!(!connected(d, &c_id));
    }
    assert!(m.a.log_text().contains("refused a peer") || m.b.log_text().contains("refused a peer"));
}

#[test]
fn peer_sending_garbage_is_cut_off_and_the_daemon_keeps_serving() {
    let pa = free_port();
    let pb = free_port();
    let a = start_node(pa, &[pb]);
    let b = start_node(pb, &[pa]);
    a.init();
    b.init();
    a.ok(&["folder", "create", "Team"], "");
    a.ok(
        &["device", "trust", &pairing_key(&b), "--share", "Team"],
        "",
    );
    b.ok(&["device", "trust", &pairing_key(&a)], "");
    wait_until(SYNC_TIMEOUT, "the folder reaches B", || {
        has_folder(&b, "Team")
    });
    // A trusted device that misbehaves.
    let key = str_field(&probe(&["mallory", "key"]), "pairing_key").to_string();
    a.ok(&["device", "trust", &key, "--name", "mallory"], "");
    for (mode, code) in [("garbage", "Malformed"), ("oversize", "Malformed")] {
        let r = probe(&["mallory", mode, &addr(pa)]);
        assert_eq!(r["connected"], true, "{mode}: {r}");
        assert_eq!(r["error"], code, "{mode}: {r}");
        assert_eq!(
            r["closed"], true,
            "{mode}: the daemon did not disconnect: {r}"
        );
    }
    // A pushed envelope from a device the folder does not name is refused
    // outright: not applied, not even kept (issue 20: nobody can fill a
    // folder's store with envelopes that could never take effect).
    let folder = a
        .json(&["folder", "ls", "--json"], "")
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "Team")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let before = a.json(&["sync", "status", "--json"], "");
    let r = probe(&["mallory", "push", &addr(pa), &folder]);
    assert_eq!(r["connected"], true, "{r}");
    let status = a.json(&["sync", "status", "--json"], "");
    let team = |status: &serde_json::Value| {
        status["spaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["folder_id"] == folder.as_str())
            .unwrap()
            .clone()
    };
    let mallory = probe(&["mallory", "key"])["device_id"].clone();
    let held_by_mallory = team(&status)["quarantined"]
        .as_array()
        .unwrap()
        .iter()
        .any(|q| q["author"] == mallory);
    assert!(
        !held_by_mallory,
        "mallory's envelope is not kept: {status:#}"
    );
    assert_eq!(team(&status)["envelopes"], team(&before)["envelopes"]);
    assert_eq!(team(&status)["pending"], 0);
    assert_eq!(folder_items(&a, "Team"), 0);
    // A still serves its CLI and still syncs with B.
    a.status();
    a.add_login("StillSyncing", "ok", &["--folder", "Team"]);
    wait_until(SYNC_TIMEOUT, "B still gets A's items", || {
        item(&b, "Team/StillSyncing").is_some()
    });
}

/// Sends SIGCONT to a stopped daemon when dropped (also when a check fails).
struct Stopped(u32);

impl Stopped {
    fn new(pid: u32) -> Stopped {
        // SAFETY: kill has no memory preconditions; the pid is our child's.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGSTOP) }, 0);
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.0 as i32, libc::SIGCONT) };
    }
}

fn peer_of(cli: &Cli, device: &str) -> Value {
    let v = cli.json(&["peers", "--json"], "");
    v["peers"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["device_id"] == device).cloned())
        .unwrap_or(Value::Null)
}

/// Issue 21: `peers` shows when a peer last answered, and a peer that
/// stops answering (here: stopped with SIGSTOP, its connection open, as a
/// partition leaves it) is shown as not answering rather than "connected".
#[test]
fn issue_21_peers_show_last_contact_and_a_peer_that_stopped_answering() {
    let (pa, pb) = (free_port(), free_port());
    let a = start_node(pa, &[pb]);
    let b = start_node(pb, &[pa]);
    a.init();
    b.init();
    a.ok(&["device", "trust", &pairing_key(&b), "--name", "B"], "");
    b.ok(&["device", "trust", &pairing_key(&a), "--name", "A"], "");
    let b_id = device_id(&b);
    wait_until(SYNC_TIMEOUT, "A has a ping answer from B", || {
        let p = peer_of(&a, &b_id);
        p["connected"] == true && p["last_contact_ms"].is_i64() && p["silent"] == false
    });
    let human = a.ok(&["peers"], "");
    assert!(human.contains("last contact"), "{human}");
    assert!(human.contains("connected"), "{human}");

    let stopped = Stopped::new(b.pid());
    wait_until(Duration::from_secs(60), "A sees B silent", || {
        let p = peer_of(&a, &b_id);
        p["silent"] == true
    });
    let human = a.ok(&["peers"], "");
    assert!(human.contains("not answering"), "{human}");
    drop(stopped);
    wait_until(Duration::from_secs(60), "B answers again", || {
        peer_of(&a, &b_id)["silent"] == false
    });
}

/// The sync protocol `cli`'s daemon negotiated with `device`, if connected.
fn sync_protocol(cli: &Cli, device: &str) -> Option<String> {
    let v = cli.json(&["peers", "--json"], "");
    v["peers"].as_array().and_then(|a| {
        a.iter()
            .find(|p| p["device_id"] == device && p["connected"] == true)
            .and_then(|p| p["sync_protocol"].as_str().map(str::to_string))
    })
}

/// Issue 18: a daemon that speaks `/coffer/sync/2` alone (the hidden
/// `--sync-v2-only`, as a daemon from before `/coffer/sync/3`) and new
/// daemons sync both ways, before and after restarts; two new daemons
/// negotiate `/coffer/sync/3`, and once the old one is upgraded so does it.
#[test]
fn a_v2_only_daemon_and_new_ones_sync_both_ways() {
    let ports = [free_port(), free_port(), free_port()];
    let a = start_node(ports[0], &[ports[1], ports[2]]);
    let mut old_args = net_args(ports[1], &[ports[0]]);
    old_args.push("--sync-v2-only".into());
    let mut b = Daemon::start_with(Options {
        args: old_args,
        ..Default::default()
    });
    let mut c = start_node(ports[2], &[ports[0]]);
    for d in [&a, &b, &c] {
        d.init();
    }
    let (ka, kb, kc) = (pairing_key(&a), pairing_key(&b), pairing_key(&c));
    a.ok(&["folder", "create", "Team"], "");
    a.ok(&["folder", "create", "Other"], "");
    for (key, name) in [(&kb, "B"), (&kc, "C")] {
        a.ok(
            &[
                "device", "trust", key, "--name", name, "--share", "Team", "--share", "Other",
            ],
            "",
        );
    }
    b.ok(&["device", "trust", &ka, "--name", "A"], "");
    c.ok(&["device", "trust", &ka, "--name", "A"], "");
    for d in [&b, &c] {
        wait_until(SYNC_TIMEOUT, "the shared folders arrive", || {
            has_folder(d, "Team") && has_folder(d, "Other")
        });
    }
    let (ida, idb, idc) = (device_id(&a), device_id(&b), device_id(&c));
    wait_until(SYNC_TIMEOUT, "the protocols show", || {
        sync_protocol(&a, &idb).as_deref() == Some("/coffer/sync/2")
            && sync_protocol(&b, &ida).as_deref() == Some("/coffer/sync/2")
            && sync_protocol(&a, &idc).as_deref() == Some("/coffer/sync/3")
            && sync_protocol(&c, &ida).as_deref() == Some("/coffer/sync/3")
    });
    // Both ways, with the old daemon.
    a.add_login("GitHub", "pw-mixed", &["--folder", "Team"]);
    b.add_login("Jira", "pw-old", &["--folder", "Other"]);
    for d in [&a, &b, &c] {
        wait_until(SYNC_TIMEOUT, "both items arrive everywhere", || {
            item(d, "Team/GitHub").is_some() && item(d, "Other/Jira").is_some()
        });
    }
    // While B and C are down, one folder changes; restarted, they get it
    // (C over `/3`: the digests differ in that folder only).
    b.stop();
    c.stop();
    a.add_login("Offline", "pw-offline", &["--folder", "Team"]);
    b.spawn();
    c.spawn();
    for d in [&b, &c] {
        d.unlock();
        wait_until(SYNC_TIMEOUT, "the offline item arrives", || {
            item(d, "Team/Offline").is_some()
        });
    }
    // B upgraded: `/coffer/sync/3` with A from now on, and still in sync.
    b.stop();
    let mut new_args = net_args(ports[1], &[ports[0]]);
    new_args.retain(|a| a != "--sync-v2-only");
    b.set_args(new_args);
    b.spawn();
    b.unlock();
    wait_until(SYNC_TIMEOUT, "the upgraded daemon speaks /3", || {
        sync_protocol(&a, &idb).as_deref() == Some("/coffer/sync/3")
            && sync_protocol(&b, &ida).as_deref() == Some("/coffer/sync/3")
    });
    b.add_login("Upgraded", "pw-new", &["--folder", "Team"]);
    wait_until(SYNC_TIMEOUT, "the upgraded daemon's item arrives", || {
        item(&a, "Team/Upgraded").is_some() && item(&c, "Team/Upgraded").is_some()
    });
}
