//! LAN discovery with mDNS (issue 4), only ever inside network namespaces
//! this test creates and removes: one loopback-only namespace with two
//! daemons, and two namespaces joined by a veth pair. No `--peer`: the
//! daemons must find each other. Multicast never leaves the namespaces.
//! Needs root and `ip`; skipped with a message otherwise.

use std::process::Command;
use std::time::Duration;

use coffer_tests::{run_with_timeout, Daemon, Options};

use coffer_tests::{str_field, PIN};

use crate::enrol::{one_pending, users, Joining};
use crate::sync::{has_folder, item, pairing_key, wait_until};

const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(30);

fn ip(args: &[&str]) -> bool {
    run_with_timeout(Command::new("ip").args(args), b"", Duration::from_secs(10))
        .status
        .success()
}

/// Why this machine cannot run the test, if it cannot.
fn cannot_run() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (network namespaces need CAP_SYS_ADMIN)".into());
    }
    if !ip(&["netns", "list"]) {
        return Some("`ip netns` is not available (apt-get install iproute2)".into());
    }
    let probe = format!("cf{}probe", std::process::id());
    if !ip(&["netns", "add", &probe]) {
        return Some("this sandbox does not allow creating network namespaces".into());
    }
    let _ = ip(&["netns", "del", &probe]);
    None
}

/// A network namespace, deleted (with its veth ends) on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("cf{}{tag}", std::process::id());
        let _ = ip(&["netns", "del", &name]);
        assert!(ip(&["netns", "add", &name]), "ip netns add {name}");
        let ns = Netns(name);
        assert!(ip(&["-n", &ns.0, "link", "set", "lo", "up"]));
        // Loopback carries no multicast by default; mDNS needs it.
        assert!(ip(&["-n", &ns.0, "link", "set", "lo", "multicast", "on"]));
        ns
    }

    fn wrapper(&self) -> Vec<String> {
        ["ip", "netns", "exec", &self.0]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.0]);
    }
}

fn start_in(ns: &Netns, listen: &str) -> Daemon {
    Daemon::start_with(Options {
        wrapper: ns.wrapper(),
        mdns: true,
        args: vec!["--listen".into(), listen.into()],
        ..Default::default()
    })
}

/// Pairs two daemons (no addresses given: they must discover each other)
/// and checks an item written on one is read on the other.
fn pair_and_sync(a: &Daemon, b: &Daemon) {
    a.init();
    b.init();
    a.ok(&["folder", "create", "Found"], "");
    a.ok(
        &["device", "trust", &pairing_key(b), "--share", "Found"],
        "",
    );
    b.ok(&["device", "trust", &pairing_key(a)], "");
    wait_until(DISCOVERY_TIMEOUT, "the daemons find each other", || {
        has_folder(b, "Found")
    });
    a.add_login("ViaMdns", "discovered", &["--folder", "Found"]);
    wait_until(DISCOVERY_TIMEOUT, "the item arrives", || {
        item(b, "Found/ViaMdns").is_some()
    });
    let peers = a.json(&["peers", "--json"], "");
    assert_eq!(peers["mdns"], true, "{peers:#}");
}

#[test]
fn daemons_discover_each_other_in_network_namespaces() {
    if let Some(why) = cannot_run() {
        println!("daemons_discover_each_other_in_network_namespaces: SKIPPED: {why}");
        return;
    }
    // 1. One loopback-only namespace, two daemons.
    {
        let ns = Netns::new("lo");
        let a = start_in(&ns, "/ip4/127.0.0.1/tcp/0");
        let b = start_in(&ns, "/ip4/127.0.0.1/tcp/0");
        pair_and_sync(&a, &b);
        drop((a, b));
    }
    // 2. Two namespaces joined by a veth pair (documentation addresses,
    //    which exist only inside the two namespaces).
    {
        let na = Netns::new("a");
        let nb = Netns::new("b");
        let (va, vb) = (format!("{}v", na.0), format!("{}v", nb.0));
        assert!(ip(&[
            "link", "add", &va, "netns", &na.0, "type", "veth", "peer", "name", &vb, "netns", &nb.0
        ]));
        assert!(ip(&[
            "-n",
            &na.0,
            "addr",
            "add",
            "192.0.2.1/24",
            "dev",
            &va
        ]));
        assert!(ip(&[
            "-n",
            &nb.0,
            "addr",
            "add",
            "192.0.2.2/24",
            "dev",
            &vb
        ]));
        assert!(ip(&["-n", &na.0, "link", "set", &va, "up"]));
        assert!(ip(&["-n", &nb.0, "link", "set", &vb, "up"]));
        let a = start_in(&na, "/ip4/0.0.0.0/tcp/0");
        let b = start_in(&nb, "/ip4/0.0.0.0/tcp/0");
        pair_and_sync(&a, &b);
        drop((a, b));
    }
}

/// `coffer join CODE` without `--peer`: the joiner's daemon finds the
/// inviter's record with mDNS (inside one loopback-only namespace).
#[test]
fn join_finds_the_inviter_with_mdns_in_a_namespace() {
    if let Some(why) = cannot_run() {
        println!("join_finds_the_inviter_with_mdns_in_a_namespace: SKIPPED: {why}");
        return;
    }
    let ns = Netns::new("jn");
    let a = start_in(&ns, "/ip4/127.0.0.1/tcp/0");
    let b = start_in(&ns, "/ip4/127.0.0.1/tcp/0");
    a.init();
    a.ok(&["team", "create", "Acme"], "");
    let code = str_field(
        &a.json(&["invite", "bob@example.com", "--json"], ""),
        "code",
    )
    .to_string();
    let mut join = Joining::spawn(&b, &["join", &code, "--pin-stdin"], &format!("{PIN}\n"));
    let shown = join.verification_code();
    assert_eq!(
        one_pending(&a, "invite")["verification_code"],
        shown.as_str()
    );
    a.ok(&["invite", "confirm", &shown], "");
    let (exit, out, err) = join.finish();
    assert_eq!(exit, 0, "{out}\n{err}");
    assert_eq!(b.status()["email"], "bob@example.com");
    assert_eq!(users(&a).len(), 2);
}
