//! `coffer doctor` (issue 21): why two laptops do not see each other.
//! Namespace tests on a LAN of network namespaces around a bridge, with
//! IPv4 and link-local IPv6 addresses (`discovery.rs`'s `Lan`), mDNS only
//! inside them, firewalls made with nftables inside the namespaces (gone
//! with them). Those need root, `ip` and `nft`, and say why they skip
//! otherwise; two more run on loopback (no daemon; another team's laptop
//! at a `--peer` address). The checks' decisions themselves are unit tests of
//! `coffer_ipc::doctor`. Clock skew runs on loopback too: one laptop's
//! daemon with libfaketime preloaded (package `faketime`, installed with
//! apt-get when root and missing; the test says why it skips otherwise),
//! its wall clock 10 minutes behind and its monotonic clock (tokio's
//! timers) left alone.

use std::process::Command;
use std::time::Duration;

use coffer_tests::{run_with_timeout, Daemon, PIN};
use serde_json::Value;

use crate::discovery::{cannot_run, join_by_mdns, laptop, Lan, Netns};
use crate::sync::{addr, free_port, start_node};
use crate::team::{enrol, init_as};

/// `coffer doctor --json` exits 22 when it finds a problem (docs/cli.md).
const PROBLEMS_FOUND: i32 = 22;
const WAIT: Duration = Duration::from_secs(60);

/// `coffer doctor --json`: its exit code and the report on stdout.
fn doctor(d: &Daemon) -> (i32, Value) {
    let out = d.coffer(&["doctor", "--json"], "");
    let code = out.status.code().unwrap_or(-1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "doctor printed no JSON report ({e}): exit {code}\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(report["ok"], code == 0, "exit {code}: {report:#}");
    if code != 0 {
        assert_eq!(code, PROBLEMS_FOUND, "{report:#}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let error: Value = stderr
            .lines()
            .find_map(|l| serde_json::from_str(l).ok())
            .unwrap_or_else(|| panic!("no JSON error line on stderr: {stderr}"));
        assert_eq!(error["error"]["code"], "problems_found", "{error}");
        assert_eq!(error["error"]["exit_code"], PROBLEMS_FOUND, "{error}");
    }
    (code, report)
}

/// The check with this id, if the report has it.
fn check<'a>(report: &'a Value, id: &str) -> Option<&'a Value> {
    report["checks"].as_array()?.iter().find(|c| c["id"] == id)
}

/// The check of the one other device of the team.
fn device_check(report: &Value) -> Option<&Value> {
    report["checks"]
        .as_array()?
        .iter()
        .find(|c| c["id"].as_str().is_some_and(|id| id.starts_with("device:")))
}

/// Polls `coffer doctor` until `until` holds for its report; the last one.
fn doctor_until(d: &Daemon, what: &str, until: impl Fn(i32, &Value) -> bool) -> (i32, Value) {
    let mut last = (0, Value::Null);
    let found = (0..WAIT.as_secs()).any(|_| {
        last = doctor(d);
        let hit = until(last.0, &last.1);
        if !hit {
            std::thread::sleep(Duration::from_secs(1));
        }
        hit
    });
    assert!(
        found,
        "doctor never showed {what}; last report:\n{:#}",
        last.1
    );
    last
}

fn skip_unless_runnable(test: &str) -> bool {
    let why = cannot_run().or_else(|| {
        let nft = run_with_timeout(
            Command::new("nft").arg("--version"),
            b"",
            Duration::from_secs(10),
        );
        (!nft.status.success()).then(|| "`nft` is not available (apt-get install nftables)".into())
    });
    if let Some(why) = why {
        println!("{test}: SKIPPED: {why}");
        return true;
    }
    false
}

/// Loads an nftables ruleset inside `ns` (it goes with the namespace).
fn firewall(ns: &Netns, rules: &str) {
    let out = run_with_timeout(
        Command::new("ip").args(["netns", "exec", &ns.0, "nft", "-f", "-"]),
        rules.as_bytes(),
        Duration::from_secs(10),
    );
    assert!(out.status.success(), "nft -f in {}: {out:?}", ns.0);
}

/// A ruleset doing `verdict` to TCP connection attempts to port 7373, in
/// and out.
fn syn_rules(verdict: &str) -> String {
    let syn = "tcp dport 7373 tcp flags & (syn | ack) == syn";
    format!(
        "table inet doctor {{
           chain input {{ type filter hook input priority 0; policy accept; {syn} {verdict}; }}
           chain output {{ type filter hook output priority 0; policy accept; {syn} {verdict}; }}
         }}\n"
    )
}

fn no_firewall(ns: &Netns) {
    firewall(ns, "flush ruleset\n");
}

/// An admin on laptop 0 with team Acme, and bob's device on laptop 1,
/// joined by mDNS alone.
fn team_of_two(lan: &Lan) -> (Daemon, Daemon) {
    let admin = laptop(&lan.laptops[0]);
    admin.init();
    admin.ok(&["team", "create", "Acme"], "");
    let bob = laptop(&lan.laptops[1]);
    join_by_mdns(&admin, &bob, "bob@example.com").expect("bob joins by mDNS");
    (admin, bob)
}

/// (a) Two laptops of one team on the bridge: all is well, and the
/// report names the other laptop, its address and the clocks agree.
#[test]
fn doctor_two_laptops_of_one_team_all_ok() {
    if skip_unless_runnable("doctor_two_laptops_of_one_team_all_ok") {
        return;
    }
    let lan = Lan::tagged("da", 2);
    let (admin, _bob) = team_of_two(&lan);
    let (code, report) = doctor_until(&admin, "all checks passing", |code, r| {
        code == 0
            && ["clock", "mdns"]
                .iter()
                .all(|id| check(r, id).is_some_and(|c| c["verdict"] == "ok"))
    });
    assert_eq!(code, 0);
    assert_eq!(report["problems"], 0, "{report:#}");
    let bob = device_check(&report).expect("a check of bob's laptop");
    assert_eq!(bob["verdict"], "ok", "{bob:#}");
    assert!(
        bob["title"].as_str().unwrap().contains("bob@example.com"),
        "{bob:#}"
    );
    assert!(
        bob["detail"].as_str().unwrap().contains("192.0.2.2"),
        "{bob:#}"
    );
    let mdns = check(&report, "mdns").unwrap();
    assert_eq!(mdns["verdict"], "ok", "{mdns:#}");
    let listen = check(&report, "listen").unwrap();
    assert!(
        listen["detail"]
            .as_str()
            .unwrap()
            .contains("reachable from other hosts: /ip4/192.0.2.1/tcp/7373"),
        "{listen:#}"
    );
    assert!(check(&report, "strangers").is_none(), "{report:#}");
    // The human checklist says the same.
    let text = admin.ok(&["doctor"], "");
    assert!(text.contains("bob@example.com"), "{text}");
    assert!(text.contains("No problem found."), "{text}");
}

/// (b) mDNS blocked: laptop 0 drops UDP 5353 both ways. Its doctor says
/// mDNS sees no one and suggests `--peer` with this laptop's address.
#[test]
fn doctor_says_mdns_sees_no_one_when_multicast_is_blocked() {
    if skip_unless_runnable("doctor_says_mdns_sees_no_one_when_multicast_is_blocked") {
        return;
    }
    let lan = Lan::tagged("db", 2);
    let (mut admin, mut bob) = team_of_two(&lan);
    // Both restart behind the firewall: nothing remembers an address.
    admin.stop();
    bob.stop();
    firewall(
        &lan.laptops[0],
        "table inet doctor {
           chain input { type filter hook input priority 0; policy accept; udp dport 5353 drop; }
           chain output { type filter hook output priority 0; policy accept; udp dport 5353 drop; }
         }\n",
    );
    admin.spawn();
    bob.spawn();
    let (code, report) = doctor_until(&admin, "mDNS seeing no one", |_, r| {
        check(r, "mdns").is_some_and(|c| c["verdict"] == "warn")
    });
    assert_eq!(code, PROBLEMS_FOUND);
    let mdns = check(&report, "mdns").unwrap();
    assert!(
        mdns["detail"]
            .as_str()
            .unwrap()
            .contains("mDNS sees no one"),
        "{mdns:#}"
    );
    let next = mdns["next"].as_str().unwrap();
    assert!(
        next.contains("UDP 5353") && next.contains("--peer /ip4/192.0.2.1/tcp/7373"),
        "{mdns:#}"
    );
    let bob_check = device_check(&report).expect("a check of bob's laptop");
    assert_eq!(bob_check["verdict"], "warn", "{bob_check:#}");
    assert!(
        bob_check["detail"]
            .as_str()
            .unwrap()
            .contains("mDNS has not heard it"),
        "{bob_check:#}"
    );
}

/// (c) TCP to bob's port refused by bob's firewall (both ways, so no
/// connection is made from either side): the admin's doctor reports the
/// dial error with the firewall hint; then dropped packets: a timeout.
#[test]
fn doctor_reports_dial_errors_with_the_firewall_hint() {
    if skip_unless_runnable("doctor_reports_dial_errors_with_the_firewall_hint") {
        return;
    }
    let lan = Lan::tagged("dc", 2);
    let (mut admin, mut bob) = team_of_two(&lan);
    admin.stop();
    bob.stop();
    // Connection attempts only (SYN without ACK): the swarm dials from its
    // listen port, so a rule on every packet to port 7373 would also eat
    // the firewall's own resets, and refusing would look like dropping.
    firewall(&lan.laptops[1], &syn_rules("reject with tcp reset"));
    admin.spawn();
    bob.spawn();
    let (code, report) = doctor_until(&admin, "a refused dial", |_, r| {
        device_check(r).is_some_and(|c| c["verdict"] == "fail")
    });
    assert_eq!(code, PROBLEMS_FOUND);
    let d = device_check(&report).unwrap();
    let detail = d["detail"].as_str().unwrap();
    assert!(
        detail.contains("connection refused: firewall or daemon not running"),
        "{d:#}"
    );
    assert!(detail.contains("/tcp/7373"), "{d:#}");
    assert!(
        d["next"].as_str().unwrap().contains("allow 7373/tcp"),
        "{d:#}"
    );
    // mDNS still works: the doctor saw bob announce itself.
    assert_eq!(
        check(&report, "mdns").unwrap()["verdict"],
        "ok",
        "{report:#}"
    );

    // Now the firewall drops instead: the dial times out.
    no_firewall(&lan.laptops[1]);
    firewall(&lan.laptops[1], &syn_rules("drop"));
    admin.ok(&["sync", "now"], "");
    let (_, report) = doctor_until(&admin, "a dial timing out", |_, r| {
        device_check(r).is_some_and(|c| {
            c["detail"]
                .as_str()
                .is_some_and(|d| d.contains("timed out: firewall dropping packets"))
        })
    });
    let d = device_check(&report).unwrap();
    assert_eq!(d["verdict"], "fail", "{d:#}");
}

/// (d) A laptop of a different team on the same bridge: the doctor says
/// it sees a Coffer device that is not in this team, by its peer id.
#[test]
fn doctor_sees_a_device_of_another_team() {
    if skip_unless_runnable("doctor_sees_a_device_of_another_team") {
        return;
    }
    let lan = Lan::tagged("dd", 2);
    let acme = laptop(&lan.laptops[0]);
    acme.init();
    acme.ok(&["team", "create", "Acme"], "");
    let other = laptop(&lan.laptops[1]);
    other.init();
    other.ok(&["team", "create", "Globex"], "");
    let other_peer = other.json(&["device", "id", "--json"], "")["peer_id"]
        .as_str()
        .expect("a peer id")
        .to_string();
    let (code, report) = doctor_until(&acme, "another team's device", |_, r| {
        check(r, "strangers").is_some()
    });
    assert_eq!(code, PROBLEMS_FOUND, "{report:#}");
    let s = check(&report, "strangers").unwrap();
    assert_eq!(s["verdict"], "warn", "{s:#}");
    let detail = s["detail"].as_str().unwrap();
    assert!(detail.contains("not in this team"), "{s:#}");
    assert!(detail.contains(&other_peer), "{s:#}");
    assert!(
        s["next"].as_str().unwrap().contains("coffer invite"),
        "{s:#}"
    );
    let heard = &report["facts"]["network"]["mdns"]["heard"];
    assert!(
        heard
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["peer_id"] == other_peer.as_str() && h["in_team"] == false),
        "{heard:#}"
    );
}

/// Without namespaces: a daemon that is not running is the first finding
/// (doctor never starts one), and a lone laptop with nobody to reach has
/// no problem.
#[test]
fn doctor_without_a_daemon_and_alone() {
    let mut d = Daemon::start();
    // Before init: no vault is the finding (and the network, which has
    // not started, does not hold the answer up).
    let (code, report) = doctor(&d);
    assert_eq!(code, PROBLEMS_FOUND, "{report:#}");
    assert_eq!(check(&report, "vault").unwrap()["verdict"], "fail");
    d.init_with_pin(PIN);
    let (code, report) = doctor(&d);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(check(&report, "vault").unwrap()["verdict"], "ok");
    assert_eq!(check(&report, "mdns").unwrap()["verdict"], "info");
    d.stop();
    let (code, report) = doctor(&d);
    assert_eq!(code, PROBLEMS_FOUND);
    let daemon = check(&report, "daemon").unwrap();
    assert_eq!(daemon["verdict"], "fail", "{report:#}");
    assert!(
        daemon["next"].as_str().unwrap().contains("coffer status"),
        "{daemon:#}"
    );
    assert!(report["facts"].is_null());
    assert!(!d.socket().exists(), "doctor started a daemon");
}

/// A `--peer` address where a laptop of another team answers (loopback,
/// no mDNS, no root needed): the handshake works, the device is refused,
/// and the doctor names the address and the device as not in this team.
#[test]
fn doctor_names_a_peer_address_where_another_team_answers() {
    let (acme_port, globex_port) = (free_port(), free_port());
    let globex = start_node(globex_port, &[]);
    globex.init();
    globex.ok(&["team", "create", "Globex"], "");
    let globex_peer = globex.json(&["device", "id", "--json"], "")["peer_id"]
        .as_str()
        .expect("a peer id")
        .to_string();
    let acme = start_node(acme_port, &[globex_port]);
    acme.init();
    acme.ok(&["team", "create", "Acme"], "");
    let id = format!("peer:{}", addr(globex_port));
    let (code, report) = doctor_until(&acme, "the --peer check", |_, r| check(r, &id).is_some());
    assert_eq!(code, PROBLEMS_FOUND, "{report:#}");
    let c = check(&report, &id).unwrap();
    assert_eq!(c["verdict"], "fail", "{c:#}");
    let detail = c["detail"].as_str().unwrap();
    assert!(detail.contains("not in this team"), "{c:#}");
    assert!(detail.contains(&globex_peer), "{c:#}");
    assert!(
        c["next"].as_str().unwrap().contains("coffer invite"),
        "{c:#}"
    );
}

/// The environment that runs a program with its wall clock 10 minutes
/// behind and its monotonic clocks (tokio's timers) untouched, or why
/// there is none: libfaketime preloaded (not the `faketime` command, which
/// forks: the harness checks that the daemon answering is its child).
/// Installed with apt-get when missing and this is root, as
/// `tests/browser/run.sh` installs chromium.
fn ten_minutes_behind() -> Result<Vec<(String, String)>, String> {
    fn library() -> Option<std::path::PathBuf> {
        let dirs = std::fs::read_dir("/usr/lib")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("faketime"))
            .chain(["/usr/lib/faketime", "/usr/local/lib/faketime"].map(Into::into));
        // The multi-threaded one: cofferd runs many threads.
        dirs.map(|d| d.join("libfaketimeMT.so.1"))
            .find(|lib| lib.exists())
    }
    fn env(lib: &std::path::Path) -> Vec<(String, String)> {
        vec![
            ("LD_PRELOAD".into(), lib.display().to_string()),
            ("FAKETIME".into(), "-10m".into()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
        ]
    }
    /// `date +%s` under it says 10 minutes ago.
    fn works(lib: &std::path::Path) -> bool {
        let mut date = Command::new("date");
        date.arg("+%s").envs(env(lib));
        let out = run_with_timeout(&mut date, b"", Duration::from_secs(10));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<i64>()
            .is_ok_and(|then| (590..=610).contains(&(now - then)))
    }
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if library().is_none() {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err("libfaketime is not installed and this is not root to install it (apt-get install faketime)".into());
        }
        println!("doctor: installing faketime");
        let install = |args: &[&str]| {
            run_with_timeout(
                Command::new("apt-get")
                    .args(args)
                    .env("DEBIAN_FRONTEND", "noninteractive"),
                b"",
                Duration::from_secs(300),
            )
            .status
            .success()
        };
        let _ = install(&["install", "-y", "-q", "faketime"])
            || (install(&["update", "-q"]) && install(&["install", "-y", "-q", "faketime"]));
    }
    let lib = library().ok_or("libfaketime is not installed and apt-get could not install it")?;
    if !works(&lib) {
        return Err(format!("{} does not move the clock here", lib.display()));
    }
    Ok(env(&lib))
}

/// One laptop's clock 10 minutes behind (its daemon under libfaketime,
/// on loopback): the other laptop's doctor says the clocks disagree and
/// names it; its own doctor says the other one is ahead.
#[test]
fn doctor_says_the_clocks_disagree_when_one_laptop_is_ten_minutes_behind() {
    let faketime = match ten_minutes_behind() {
        Ok(env) => env,
        Err(why) => {
            println!(
                "doctor_says_the_clocks_disagree_when_one_laptop_is_ten_minutes_behind: SKIPPED: {why}"
            );
            return;
        }
    };
    let (pa, pb) = (free_port(), free_port());
    let admin = start_node(pa, &[]);
    let mut bob = start_node(pb, &[pa]);
    init_as(&admin, "Ada Admin", "ada@example.com");
    admin.ok(&["team", "create", "Acme"], "");
    enrol(
        &admin,
        pa,
        &bob,
        "bob@example.com",
        &["--name", "Bob Builder"],
    );
    // Joined with the clocks agreeing; now Bob's laptop loses 10 minutes.
    bob.stop();
    bob.add_env(&faketime);
    bob.spawn();
    bob.unlock();
    let real_now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as i64
    };
    let (_, bobs) = doctor_until(&bob, "the admin's clock measured", |_, r| {
        check(r, "clock").is_some_and(|c| c["verdict"] != "info")
    });
    // The preload works: Bob's daemon tells the time 10 minutes ago.
    let bob_now = bobs["facts"]["now_ms"].as_i64().expect("now_ms");
    let behind = real_now() - bob_now;
    assert!(
        (9 * 60_000..11 * 60_000).contains(&behind),
        "Bob's daemon is {behind} ms behind, not 10 minutes: {bobs:#}"
    );

    let (code, report) = doctor_until(&admin, "the clocks disagreeing", |_, r| {
        check(r, "clock").is_some_and(|c| c["verdict"] == "warn")
    });
    assert_eq!(code, PROBLEMS_FOUND, "{report:#}");
    let clock = check(&report, "clock").unwrap();
    let detail = clock["detail"].as_str().unwrap();
    assert!(
        detail.contains("clocks differ by more than 5 min"),
        "{clock:#}"
    );
    assert!(
        detail.contains("bob@example.com") && detail.contains("10 min behind this one"),
        "{clock:#}"
    );
    assert!(
        clock["next"]
            .as_str()
            .unwrap()
            .contains("timedatectl set-ntp true"),
        "{clock:#}"
    );
    let offset = report["facts"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|d| d["clock_offset_ms"].as_i64())
        .expect("a measured offset");
    assert!(
        (-11 * 60_000..-9 * 60_000).contains(&offset),
        "offset {offset} ms: {report:#}"
    );
    // Bob's laptop is still reachable and in sync: the skew is no
    // connection problem (loopback's own warnings aside).
    let bob_check = device_check(&report).expect("a check of bob's laptop");
    assert_eq!(bob_check["verdict"], "ok", "{bob_check:#}");
    let out = admin.coffer(&["doctor"], "");
    assert_eq!(out.status.code(), Some(PROBLEMS_FOUND), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("[warn] Clocks:") && text.contains("10 min behind this one"),
        "{text}"
    );

    // Bob's doctor sees the admin's laptop ahead.
    let bob_clock = check(&bobs, "clock").unwrap();
    assert_eq!(bob_clock["verdict"], "warn", "{bobs:#}");
    assert!(
        bob_clock["detail"]
            .as_str()
            .unwrap()
            .contains("min ahead of this one"),
        "{bob_clock:#}"
    );
}
