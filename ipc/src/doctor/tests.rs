//! The decisions of `coffer doctor`, one situation each.

use super::*;

const NOW: i64 = 1_764_770_000_000;

fn bob() -> DeviceFacts {
    DeviceFacts {
        device_id: "b0b0b0b0".repeat(8),
        peer_id: Some("12D3KooWBob".into()),
        name: Some("bob@example.com".into()),
        connected: true,
        address: Some("/ip4/192.0.2.2/tcp/7373".into()),
        last_contact_ms: Some(NOW - 3_000),
        rtt_ms: Some(1),
        addresses: vec!["/ip4/192.0.2.2/tcp/7373".into()],
        clock_offset_ms: Some(40),
        clock_measured_ms: Some(NOW - 60_000),
        ..Default::default()
    }
}

/// A healthy laptop: a member, listening on the LAN, mDNS hearing its
/// teammate, connected to it.
fn healthy() -> DoctorFacts {
    DoctorFacts {
        now_ms: NOW,
        version: "0.1.0".into(),
        pid: 42,
        initialized: true,
        locked: false,
        device_id: Some("a1".repeat(32)),
        standing: Some("member".into()),
        notice: None,
        team: Some("Acme".into()),
        network: NetworkFacts {
            enabled: true,
            running: true,
            started_ms: Some(NOW - 600_000),
            listen: vec![
                "/ip4/127.0.0.1/tcp/7373".into(),
                "/ip4/192.0.2.1/tcp/7373".into(),
                "/ip6/fe80::1/tcp/7373".into(),
            ],
            reachable: vec!["/ip4/192.0.2.1/tcp/7373".into()],
            mdns: MdnsFacts {
                enabled: true,
                running: true,
                error: None,
                heard: vec![Sighting {
                    peer_id: "12D3KooWBob".into(),
                    in_team: true,
                    device_id: Some("b0b0b0b0".repeat(8)),
                    count: 2,
                    first_ms: NOW - 590_000,
                    last_ms: NOW - 500_000,
                    addresses: vec!["/ip4/192.0.2.2/tcp/7373".into()],
                }],
            },
            static_peers: vec![],
        },
        devices: vec![bob()],
    }
}

fn check<'a>(checks: &'a [Check], id: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no check {id} in {checks:#?}"))
}

fn problems(f: &DoctorFacts) -> Vec<String> {
    diagnose(f)
        .into_iter()
        .filter(|c| c.verdict.is_problem())
        .map(|c| c.id)
        .collect()
}

#[test]
fn a_healthy_laptop_has_no_problem_and_names_its_peer() {
    let f = healthy();
    let checks = diagnose(&f);
    let report = Report::new(checks.clone(), Some(f));
    assert!(report.ok, "{checks:#?}");
    assert_eq!(report.problems, 0);
    let bob = check(&checks, "device:b0b0b0b0");
    assert_eq!(bob.verdict, Verdict::Ok);
    assert!(bob.title.contains("bob@example.com"), "{bob:?}");
    assert!(bob.detail.contains("/ip4/192.0.2.2/tcp/7373"), "{bob:?}");
    assert_eq!(check(&checks, "clock").verdict, Verdict::Ok);
    assert!(check(&checks, "listen").detail.contains("192.0.2.1"));
}

#[test]
fn no_daemon_no_vault_and_a_revoked_device_are_problems() {
    let r = daemon_unreachable("/run/user/1/coffer/cofferd.sock", "connection refused");
    assert!(!r.ok);
    assert_eq!(r.checks[0].verdict, Verdict::Fail);
    assert!(r.checks[0]
        .next
        .as_deref()
        .unwrap()
        .contains("coffer status"));

    let fresh = DoctorFacts {
        initialized: false,
        standing: None,
        ..healthy()
    };
    assert_eq!(problems(&fresh), ["vault"]);

    let mut revoked = healthy();
    revoked.standing = Some("revoked".into());
    revoked.notice = Some("this device was revoked from team \"Acme\"".into());
    let checks = diagnose(&revoked);
    let team = check(&checks, "team");
    assert_eq!(team.verdict, Verdict::Fail);
    assert!(team.detail.contains("revoked"), "{team:?}");

    // Locked is worth saying, not a problem: sync goes on.
    let locked = DoctorFacts {
        locked: true,
        ..healthy()
    };
    assert!(problems(&locked).is_empty());
    assert_eq!(check(&diagnose(&locked), "vault").verdict, Verdict::Info);
}

#[test]
fn mdns_that_hears_no_one_suggests_peer() {
    let mut f = healthy();
    f.network.mdns.heard.clear();
    f.devices[0] = DeviceFacts {
        connected: false,
        address: None,
        addresses: vec![],
        clock_offset_ms: None,
        ..bob()
    };
    let checks = diagnose(&f);
    let m = check(&checks, "mdns");
    assert_eq!(m.verdict, Verdict::Warn);
    assert!(m.detail.contains("mDNS sees no one"), "{m:?}");
    let next = m.next.as_deref().unwrap();
    assert!(
        next.contains("UDP 5353") && next.contains("--peer /ip4/192.0.2.1/tcp/7373"),
        "{m:?}"
    );
    let d = check(&checks, "device:b0b0b0b0");
    assert_eq!(d.verdict, Verdict::Warn);
    assert!(d.detail.contains("no address is known"), "{d:?}");

    // Seconds after start: not yet a verdict.
    f.network.started_ms = Some(NOW - 1_000);
    assert_eq!(check(&diagnose(&f), "mdns").verdict, Verdict::Info);
    // Nobody else to find: nothing wrong.
    f.network.started_ms = Some(NOW - 600_000);
    f.devices.clear();
    assert!(problems(&f).is_empty(), "{:#?}", diagnose(&f));

    // mDNS off and no --peer: this laptop can find no one.
    let mut off = healthy();
    off.network.mdns = MdnsFacts::default();
    off.devices[0].connected = false;
    let m = check(&diagnose(&off), "mdns").clone();
    assert_eq!(m.verdict, Verdict::Warn);
    assert!(m.next.unwrap().contains("--no-mdns"));
}

#[test]
fn a_device_of_another_team_is_named_and_a_problem_only_when_no_teammate_answers() {
    let mut f = healthy();
    f.network.mdns.heard.push(Sighting {
        peer_id: "12D3KooWCarol".into(),
        in_team: false,
        device_id: None,
        count: 1,
        first_ms: NOW - 10_000,
        last_ms: NOW - 10_000,
        addresses: vec!["/ip4/192.0.2.3/tcp/7373".into()],
    });
    let checks = diagnose(&f);
    let s = check(&checks, "strangers");
    assert_eq!(s.verdict, Verdict::Info, "bob answers: {s:?}");
    assert!(s.detail.contains("not in this team") && s.detail.contains("12D3KooWCarol"));
    // Alone in its team, or its teammates out of reach: the likely reason.
    f.devices.clear();
    let checks = diagnose(&f);
    assert_eq!(check(&checks, "strangers").verdict, Verdict::Warn);
    assert_eq!(check(&checks, "mdns").verdict, Verdict::Ok);
}

#[test]
fn each_dial_error_gets_its_meaning_and_next_step() {
    for (kind, meaning, next) in [
        (
            DialErrorKind::Refused,
            "firewall or daemon not running",
            "ufw allow 7373/tcp",
        ),
        (
            DialErrorKind::TimedOut,
            "firewall dropping packets",
            "drops TCP port 7373",
        ),
        (
            DialErrorKind::Handshake,
            "not the same device key / not trusted",
            "coffer device id",
        ),
        (
            DialErrorKind::NotInTeam,
            "not in this team",
            "coffer invite",
        ),
    ] {
        let mut f = healthy();
        f.devices[0] = DeviceFacts {
            connected: false,
            address: None,
            last_dial_error: Some(DialFailure {
                at_ms: NOW - 2_000,
                address: Some("/ip4/192.0.2.2/tcp/7373".into()),
                kind,
                error: "the transport's words".into(),
            }),
            ..bob()
        };
        let checks = diagnose(&f);
        let d = check(&checks, "device:b0b0b0b0");
        assert_eq!(d.verdict, Verdict::Fail, "{kind:?}");
        assert!(d.detail.contains(meaning), "{kind:?}: {d:?}");
        assert!(d.detail.contains("/ip4/192.0.2.2/tcp/7373"), "{d:?}");
        assert!(d.next.as_deref().unwrap().contains(next), "{kind:?}: {d:?}");
    }
}

#[test]
fn a_failing_static_peer_has_its_own_check() {
    let mut f = healthy();
    f.network.static_peers.push(StaticPeerFacts {
        address: "/ip4/198.51.100.9/tcp/7400".into(),
        peer_id: None,
        connected: false,
        last_error: Some(DialFailure {
            at_ms: NOW - 1_000,
            address: Some("/ip4/198.51.100.9/tcp/7400".into()),
            kind: DialErrorKind::Refused,
            error: "Connection refused (os error 111)".into(),
        }),
    });
    let checks = diagnose(&f);
    let p = check(&checks, "peer:/ip4/198.51.100.9/tcp/7400");
    assert_eq!(p.verdict, Verdict::Fail);
    assert!(p.next.as_deref().unwrap().contains("7400/tcp"), "{p:?}");
}

#[test]
fn clocks_more_than_five_minutes_apart_are_a_problem() {
    for (offset, verdict, says) in [
        (4 * 60_000, Verdict::Ok, "within 4 min"),
        (-(6 * 60_000), Verdict::Warn, "6 min behind"),
        (3 * 3_600_000, Verdict::Warn, "180 min ahead of"),
        (CLOCK_SKEW_WARN_MS, Verdict::Ok, "within 5 min"),
    ] {
        let mut f = healthy();
        f.devices[0].clock_offset_ms = Some(offset);
        let checks = diagnose(&f);
        let c = check(&checks, "clock");
        assert_eq!(c.verdict, verdict, "{offset}: {c:?}");
        assert!(c.detail.contains(says), "{offset}: {c:?}");
        if verdict == Verdict::Warn {
            assert!(c.detail.contains("TOTP") && c.next.as_deref().unwrap().contains("set-ntp"));
        }
    }
    let mut none = healthy();
    none.devices[0].clock_offset_ms = None;
    assert_eq!(check(&diagnose(&none), "clock").verdict, Verdict::Info);
}

#[test]
fn loopback_only_is_a_problem_when_there_is_someone_to_reach() {
    let mut f = healthy();
    f.network.listen = vec!["/ip4/127.0.0.1/tcp/40000".into()];
    f.network.reachable = vec![];
    let checks = diagnose(&f);
    let l = check(&checks, "listen");
    assert_eq!(l.verdict, Verdict::Warn);
    assert!(
        l.detail.contains("no address another host can reach") && l.detail.contains("no IPv6"),
        "{l:?}"
    );
    f.devices.clear();
    assert_eq!(check(&diagnose(&f), "listen").verdict, Verdict::Info);
    f.network.listen.clear();
    assert_eq!(check(&diagnose(&f), "listen").verdict, Verdict::Fail);
}

#[test]
fn a_silent_connection_is_not_contact() {
    let mut f = healthy();
    f.devices[0].silent = true;
    f.devices[0].last_contact_ms = Some(NOW - 45_000);
    let checks = diagnose(&f);
    let d = check(&checks, "device:b0b0b0b0");
    assert_eq!(d.verdict, Verdict::Warn);
    assert!(d.detail.contains("45 s ago"), "{d:?}");
}
