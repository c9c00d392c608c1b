//! `coffer doctor`: why two laptops do not see each other. The daemon
//! gathers facts ([`DoctorFacts`], the `doctor` method's result);
//! [`diagnose`] turns them into a checklist, each check with a verdict and
//! a concrete next step.
//!
//! What it is not: it reads no clock (the facts carry the daemon's
//! `now_ms`), opens no socket and prints nothing, so every decision about
//! what counts as a problem is a unit test (`doctor/tests.rs`). Gathering
//! the facts is the daemon's (`net/`, `server/net_rpc.rs`); printing is
//! the CLI's.

use serde::{Deserialize, Serialize};

#[cfg(test)]
mod tests;

/// Clocks further apart than this get a warning: TOTP codes (30 s steps,
/// one step of tolerance) and audit times depend on them.
pub const CLOCK_SKEW_WARN_MS: i64 = 5 * 60 * 1000;

/// How long after the network started mDNS may have heard no one without
/// that meaning anything (a browse is answered within a second or two).
pub const MDNS_GRACE_MS: i64 = 5_000;

/// The TCP port cofferd listens on by default (for examples in hints).
pub const DEFAULT_PORT: u16 = 7373;

/// What the daemon knows, as `coffer doctor` asks for it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DoctorFacts {
    /// The daemon's wall clock (ms since the Unix epoch) as it answered.
    pub now_ms: i64,
    pub version: String,
    pub pid: u32,
    pub initialized: bool,
    pub locked: bool,
    pub device_id: Option<String>,
    /// `no_team`, `member`, `revoked` or `removed` (as `status` says).
    pub standing: Option<String>,
    /// What the team said when it took this device out.
    pub notice: Option<String>,
    /// The team's name, if this device is in one.
    pub team: Option<String>,
    pub network: NetworkFacts,
    /// The devices this one syncs with (its team's live devices, or the
    /// paired ones), but not itself.
    pub devices: Vec<DeviceFacts>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkFacts {
    /// False when cofferd runs with `--no-network`.
    pub enabled: bool,
    /// The swarm runs (it starts once the device has an identity).
    pub running: bool,
    /// When the swarm started (ms since the Unix epoch).
    pub started_ms: Option<i64>,
    /// Every address listened on.
    pub listen: Vec<String>,
    /// Those another device on the LAN can dial (no loopback, no
    /// link-local IPv6), IPv4 first: what to give the other laptop's `--peer`.
    pub reachable: Vec<String>,
    pub mdns: MdnsFacts,
    /// `--peer` addresses and what dialling them gave.
    pub static_peers: Vec<StaticPeerFacts>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MdnsFacts {
    /// Not turned off with `--no-mdns`.
    pub enabled: bool,
    /// Advertising and browsing.
    pub running: bool,
    /// Why it could not start.
    pub error: Option<String>,
    /// Every Coffer device whose announcement was heard since start, of
    /// this team or not.
    pub heard: Vec<Sighting>,
}

/// A Coffer device heard announcing itself with mDNS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sighting {
    pub peer_id: String,
    /// Whether it is a device this one syncs with.
    pub in_team: bool,
    /// Its device id, when it is one of the team's devices.
    pub device_id: Option<String>,
    /// How many announcements were resolved.
    pub count: u64,
    pub first_ms: i64,
    pub last_ms: i64,
    /// The addresses it announced that this device can dial.
    pub addresses: Vec<String>,
}

/// A `--peer` address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StaticPeerFacts {
    pub address: String,
    /// The peer found there (given in the address, or learnt on connecting).
    pub peer_id: Option<String>,
    pub connected: bool,
    pub last_error: Option<DialFailure>,
}

/// A device this one syncs with, as the network sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceFacts {
    pub device_id: String,
    pub peer_id: Option<String>,
    /// Its user (a team device) or the label it was paired under.
    pub name: Option<String>,
    pub connected: bool,
    /// Connected, but answering no ping for 20 s or more.
    pub silent: bool,
    pub address: Option<String>,
    pub last_contact_ms: Option<i64>,
    pub rtt_ms: Option<u64>,
    pub last_sync_ms: Option<i64>,
    /// Addresses known for it (mDNS, identify, `--peer`), dialled with backoff.
    pub addresses: Vec<String>,
    pub last_dial_error: Option<DialFailure>,
    /// Its clock minus this one's (ms), from the time it sent on connecting.
    pub clock_offset_ms: Option<i64>,
    /// When that was measured.
    pub clock_measured_ms: Option<i64>,
}

/// One failed dial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DialFailure {
    pub at_ms: i64,
    pub address: Option<String>,
    pub kind: DialErrorKind,
    /// The transport's own words (bounded).
    pub error: String,
}

/// What a failed dial means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DialErrorKind {
    /// Connection refused: nothing listens there, or a firewall rejects.
    Refused,
    /// No answer: a firewall drops the packets, or the host is gone.
    TimedOut,
    /// No route to the host or network.
    Unreachable,
    /// An address this device cannot dial (e.g. link-local IPv6 without a scope).
    BadAddress,
    /// Connected, but the Noise handshake (or protocol negotiation) failed.
    Handshake,
    /// Connected, but another device key answered than the one expected.
    WrongDevice,
    /// Connected, but the device that answered is not one this one syncs with.
    NotInTeam,
    /// Anything else.
    Other,
}

impl DialErrorKind {
    /// What it means, in a few words.
    pub fn meaning(self) -> &'static str {
        match self {
            DialErrorKind::Refused => "connection refused: firewall or daemon not running",
            DialErrorKind::TimedOut => "timed out: firewall dropping packets",
            DialErrorKind::Unreachable => "no route to it: not on the same network",
            DialErrorKind::BadAddress => "an address this device cannot dial",
            DialErrorKind::Handshake => {
                "the secure handshake failed: not the same device key / not trusted"
            }
            DialErrorKind::WrongDevice => "another device answered at that address",
            DialErrorKind::NotInTeam => "the device that answered is not in this team",
            DialErrorKind::Other => "the connection failed",
        }
    }

    /// The next step.
    pub fn next_step(self, port: u16) -> String {
        match self {
            DialErrorKind::Refused => format!(
                "on that laptop check that cofferd runs (`coffer doctor` there) and that its \
                 firewall accepts TCP port {port} (e.g. `sudo ufw allow {port}/tcp`)"
            ),
            DialErrorKind::TimedOut => format!(
                "a firewall drops TCP port {port} on the way or on that laptop: allow it \
                 (e.g. `sudo ufw allow {port}/tcp`); or the laptop is asleep or off this network"
            ),
            DialErrorKind::Unreachable => "connect both laptops to the same network (not a guest \
                 network or VPN that isolates clients), or give a routable address with --peer"
                .into(),
            DialErrorKind::BadAddress => {
                "give an IPv4 or global IPv6 address with --peer (`coffer doctor` on that laptop \
                 prints them)"
                    .into()
            }
            DialErrorKind::Handshake => "the program answering there is not this Coffer version \
                 or does not hold the device key this team knows (a reset laptop): compare \
                 `coffer device id` there with `coffer device ls` here"
                .into(),
            DialErrorKind::WrongDevice => "the address now belongs to another device (a reset \
                 laptop, or a new DHCP lease): run `coffer doctor` there and use its address"
                .into(),
            DialErrorKind::NotInTeam => "that device is in another team (or none): invite its \
                 user (`coffer invite EMAIL`) or link it (`coffer device link`), or fix the \
                 --peer address"
                .into(),
            DialErrorKind::Other => "run `coffer doctor` on that laptop too".into(),
        }
    }
}

/// A check's verdict. `Warn` and `Fail` are problems (`coffer doctor`
/// exits 22); `Info` is worth knowing but not wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    Info,
    Warn,
    Fail,
}

impl Verdict {
    pub fn is_problem(self) -> bool {
        matches!(self, Verdict::Warn | Verdict::Fail)
    }

    pub fn label(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Info => "info",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        }
    }
}

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Stable name: `daemon`, `vault`, `team`, `network`, `listen`,
    /// `mdns`, `strangers`, `device:SHORT`, `peer:ADDRESS`, `clock`.
    pub id: String,
    pub title: String,
    pub verdict: Verdict,
    pub detail: String,
    /// What to do, when there is something to do.
    pub next: Option<String>,
}

impl Check {
    fn new(id: impl Into<String>, title: impl Into<String>, verdict: Verdict) -> Check {
        Check {
            id: id.into(),
            title: title.into(),
            verdict,
            detail: String::new(),
            next: None,
        }
    }

    fn detail(mut self, d: impl Into<String>) -> Check {
        self.detail = d.into();
        self
    }

    fn next(mut self, n: impl Into<String>) -> Check {
        self.next = Some(n.into());
        self
    }
}

/// The report `coffer doctor` prints (`--json`: this object).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// No check found a problem.
    pub ok: bool,
    /// How many checks are `warn` or `fail`.
    pub problems: usize,
    pub checks: Vec<Check>,
    /// What the checks were decided on; null when no daemon answered.
    pub facts: Option<DoctorFacts>,
}

impl Report {
    pub fn new(checks: Vec<Check>, facts: Option<DoctorFacts>) -> Report {
        let problems = checks.iter().filter(|c| c.verdict.is_problem()).count();
        Report {
            ok: problems == 0,
            problems,
            checks,
            facts,
        }
    }
}

/// The report when no daemon answers on `socket`.
pub fn daemon_unreachable(socket: &str, error: &str) -> Report {
    let check = Check::new("daemon", "Daemon", Verdict::Fail)
        .detail(format!(
            "cofferd is not running: nothing answers on {socket} ({error})"
        ))
        .next(
            "start it: `coffer status` starts it, or `coffer service install` runs it at login; \
             then run `coffer doctor` again",
        );
    Report::new(vec![check], None)
}

/// Decides the checklist from the daemon's facts.
pub fn diagnose(f: &DoctorFacts) -> Vec<Check> {
    let mut out = vec![Check::new("daemon", "Daemon", Verdict::Ok)
        .detail(format!("cofferd {} is running (pid {})", f.version, f.pid))];
    out.push(vault(f));
    out.push(team(f));
    if !f.initialized {
        return out;
    }
    let n = &f.network;
    if !n.enabled {
        out.push(
            Check::new("network", "Network", Verdict::Fail)
                .detail("the network is off (cofferd runs with --no-network): nothing syncs")
                .next("start cofferd without --no-network (and without COFFER_NO_NETWORK)"),
        );
        return out;
    }
    if !n.running {
        out.push(
            Check::new("network", "Network", Verdict::Fail)
                .detail("the network has not started")
                .next("unlock once (`coffer unlock`): it starts with the device's identity"),
        );
        return out;
    }
    let others = !f.devices.is_empty();
    out.push(listen(n, others));
    out.push(mdns(f));
    if let Some(c) = strangers(f) {
        out.push(c);
    }
    for d in &f.devices {
        out.push(device(f, d));
    }
    for s in &n.static_peers {
        if let Some(c) = static_peer(f, s) {
            out.push(c);
        }
    }
    out.push(clock(f));
    out
}

fn vault(f: &DoctorFacts) -> Check {
    if !f.initialized {
        return Check::new("vault", "Vault", Verdict::Fail)
            .detail("no vault on this device yet")
            .next("run `coffer init --name NAME --email EMAIL`, or join a team with `coffer join CODE`");
    }
    if f.locked {
        Check::new("vault", "Vault", Verdict::Info)
            .detail("locked: sync goes on; items show after `coffer unlock`")
    } else {
        Check::new("vault", "Vault", Verdict::Ok).detail("unlocked")
    }
}

fn team(f: &DoctorFacts) -> Check {
    let name = f.team.as_deref().unwrap_or("?");
    match f.standing.as_deref() {
        Some("member") => Check::new("team", "Team", Verdict::Ok).detail(format!(
            "a member device of team {name:?} ({} other device{})",
            f.devices.len(),
            if f.devices.len() == 1 { "" } else { "s" }
        )),
        Some("revoked") | Some("removed") => Check::new("team", "Team", Verdict::Fail)
            .detail(
                f.notice
                    .clone()
                    .unwrap_or_else(|| format!("the team {name:?} took this device out")),
            )
            .next("this device no longer syncs: ask a team admin for a new invite (`coffer invite EMAIL` there), or link a new device from one of yours"),
        _ if !f.initialized => Check::new("team", "Team", Verdict::Info).detail("no vault yet"),
        _ => Check::new("team", "Team", Verdict::Info)
            .detail(format!(
                "not in a team ({} paired device{})",
                f.devices.len(),
                if f.devices.len() == 1 { "" } else { "s" }
            ))
            .next("create a team (`coffer team create NAME`) or join one (`coffer join CODE`)"),
    }
}

fn is_v6(addr: &str) -> bool {
    addr.starts_with("/ip6/")
}

fn listen(n: &NetworkFacts, others: bool) -> Check {
    if n.listen.is_empty() {
        return Check::new("listen", "Listening", Verdict::Fail)
            .detail("listening on no address: other laptops cannot connect to this one")
            .next(format!(
                "free TCP port {DEFAULT_PORT} (another cofferd?) or start cofferd with --listen /ip4/0.0.0.0/tcp/PORT"
            ));
    }
    let local: Vec<&str> = n
        .listen
        .iter()
        .filter(|a| !n.reachable.contains(a))
        .map(String::as_str)
        .collect();
    let mut parts = Vec::new();
    if !n.reachable.is_empty() {
        parts.push(format!(
            "reachable from other hosts: {}",
            n.reachable.join(", ")
        ));
    }
    if !local.is_empty() {
        parts.push(format!(
            "this host only (loopback, link-local): {}",
            local.join(", ")
        ));
    }
    let mut detail = parts.join("; ");
    let v4 = n.reachable.iter().any(|a| !is_v6(a));
    let v6 = n.listen.iter().any(|a| is_v6(a));
    if !v6 {
        detail.push_str("; no IPv6");
    } else if !v4 && !n.reachable.is_empty() {
        detail.push_str("; no IPv4");
    }
    if n.reachable.is_empty() {
        let verdict = if others { Verdict::Warn } else { Verdict::Info };
        return Check::new("listen", "Listening", verdict)
            .detail(format!("no address another host can reach; {detail}"))
            .next(format!(
                "start cofferd without --listen (every interface, port {DEFAULT_PORT}) or with --listen /ip4/0.0.0.0/tcp/{DEFAULT_PORT}"
            ));
    }
    Check::new("listen", "Listening", Verdict::Ok).detail(detail)
}

/// The `--peer` hint: what to pass on the other laptop to reach this one.
fn peer_hint(n: &NetworkFacts) -> String {
    match n.reachable.first() {
        Some(a) => format!("start the other laptop's cofferd with --peer {a} (this laptop's address), or this one's with --peer and the address `coffer doctor` prints there"),
        None => "start cofferd with --peer ADDRESS (the address `coffer doctor` prints on the other laptop, like /ip4/192.168.1.20/tcp/7373)".into(),
    }
}

fn ago(now: i64, t: i64) -> String {
    let s = (now - t).max(0) / 1000;
    match s {
        0..=1 => "just now".into(),
        2..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

fn mdns(f: &DoctorFacts) -> Check {
    let n = &f.network;
    let m = &n.mdns;
    let others = !f.devices.is_empty();
    if !m.enabled {
        if n.static_peers.is_empty() && others {
            return Check::new("mdns", "mDNS", Verdict::Warn)
                .detail(
                    "mDNS is off (--no-mdns) and no --peer is given: this laptop finds no other",
                )
                .next(format!(
                    "start cofferd without --no-mdns, or {}",
                    peer_hint(n)
                ));
        }
        return Check::new("mdns", "mDNS", Verdict::Info).detail(if n.static_peers.is_empty() {
            "mDNS is off (--no-mdns)".to_string()
        } else {
            format!(
                "mDNS is off (--no-mdns); dialling --peer {}",
                n.static_peers
                    .iter()
                    .map(|s| s.address.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
    }
    if !m.running {
        return Check::new("mdns", "mDNS", Verdict::Warn)
            .detail(format!(
                "mDNS could not start{}",
                m.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ))
            .next(peer_hint(n));
    }
    if m.heard.is_empty() {
        let since = n.started_ms.map(|t| f.now_ms - t).unwrap_or(i64::MAX);
        if since < MDNS_GRACE_MS {
            return Check::new("mdns", "mDNS", Verdict::Info)
                .detail("no announcement heard yet: the network started seconds ago")
                .next("run `coffer doctor` again in a few seconds");
        }
        if !others {
            return Check::new("mdns", "mDNS", Verdict::Info)
                .detail("mDNS sees no one (no other Coffer device announced itself; this device has no other to sync with)");
        }
        return Check::new("mdns", "mDNS", Verdict::Warn)
            .detail("mDNS sees no one: no Coffer device announced itself on this network since cofferd started")
            .next(format!(
                "multicast (UDP port 5353) is blocked here or on the network (a firewall, a guest Wi-Fi or access point that isolates clients): allow UDP 5353, or {}",
                peer_hint(n)
            ));
    }
    let team = m.heard.iter().filter(|s| s.in_team).count();
    let last = m.heard.iter().map(|s| s.last_ms).max().unwrap_or(0);
    Check::new("mdns", "mDNS", Verdict::Ok).detail(format!(
        "heard {} Coffer device{} ({team} of this team, {} not), last {}",
        m.heard.len(),
        if m.heard.len() == 1 { "" } else { "s" },
        m.heard.len() - team,
        ago(f.now_ms, last)
    ))
}

/// Whether some device this one syncs with is in contact now.
fn anyone_in_contact(f: &DoctorFacts) -> bool {
    f.devices.iter().any(|d| d.connected && !d.silent)
}

fn strangers(f: &DoctorFacts) -> Option<Check> {
    let out: Vec<&Sighting> = f.network.mdns.heard.iter().filter(|s| !s.in_team).collect();
    if out.is_empty() {
        return None;
    }
    let list: Vec<String> = out
        .iter()
        .map(|s| {
            let at = if s.addresses.is_empty() {
                String::new()
            } else {
                format!(" at {}", s.addresses.join(", "))
            };
            format!("{}{at} (last {})", s.peer_id, ago(f.now_ms, s.last_ms))
        })
        .collect();
    // Another team's laptop on the LAN is normal; it is the likely answer
    // only when this one reaches none of its own.
    let verdict = if anyone_in_contact(f) {
        Verdict::Info
    } else {
        Verdict::Warn
    };
    Some(
        Check::new("strangers", "Other Coffer devices", verdict)
            .detail(format!(
                "sees {} Coffer device{} not in this team (another team's, or one not yet joined or revoked): {}",
                out.len(),
                if out.len() == 1 { "" } else { "s" },
                list.join("; ")
            ))
            .next("devices of different teams never sync: if that laptop should sync with this one, invite its user (`coffer invite EMAIL`) or link it (`coffer device link`) and join with the code there"),
    )
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

fn device(f: &DoctorFacts, d: &DeviceFacts) -> Check {
    let id = format!("device:{}", short(&d.device_id));
    let title = match &d.name {
        Some(n) => format!("Device {} ({n})", short(&d.device_id)),
        None => format!("Device {}", short(&d.device_id)),
    };
    let contact = match d.last_contact_ms {
        Some(t) => format!("last contact {}", ago(f.now_ms, t)),
        None => "no contact yet".into(),
    };
    let addr = d.address.as_deref().unwrap_or("?");
    if d.connected && d.silent {
        return Check::new(id, title, Verdict::Warn)
            .detail(format!("connected at {addr} but not answering ({contact}): a partition, or the laptop went to sleep"))
            .next("check the network between the two laptops; the connection resumes by itself when it answers");
    }
    if d.connected {
        let rtt = d.rtt_ms.map(|r| format!(", {r} ms")).unwrap_or_default();
        return Check::new(id, title, Verdict::Ok)
            .detail(format!("connected at {addr}, {contact}{rtt}"));
    }
    if let Some(e) = &d.last_dial_error {
        return Check::new(id, title, Verdict::Fail)
            .detail(format!(
                "not connected ({contact}); the last dial{} failed {}: {} [{}]",
                e.address
                    .as_deref()
                    .map(|a| format!(" to {a}"))
                    .unwrap_or_default(),
                ago(f.now_ms, e.at_ms),
                e.kind.meaning(),
                e.error
            ))
            .next(e.kind.next_step(port_of(e.address.as_deref())));
    }
    if d.addresses.is_empty() {
        let why = if f.network.mdns.enabled {
            "no address is known for it: mDNS has not heard it announce itself"
        } else {
            "no address is known for it (mDNS is off and no --peer names it)"
        };
        return Check::new(id, title, Verdict::Warn)
            .detail(format!("not connected ({contact}); {why}"))
            .next(format!(
                "is that laptop on this network, awake, with cofferd running (`coffer doctor` there)? Else {}",
                peer_hint(&f.network)
            ));
    }
    Check::new(id, title, Verdict::Warn)
        .detail(format!(
            "not connected ({contact}); dialling {}",
            d.addresses.join(", ")
        ))
        .next("wait a few seconds and run `coffer doctor` again; `coffer sync now` redials at once")
}

fn port_of(address: Option<&str>) -> u16 {
    address
        .and_then(|a| a.split("/tcp/").nth(1))
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(DEFAULT_PORT)
}

fn static_peer(f: &DoctorFacts, s: &StaticPeerFacts) -> Option<Check> {
    if s.connected {
        return None;
    }
    // A device of the team at that address has its own check already.
    let known = s.peer_id.as_ref().is_some_and(|p| {
        f.devices
            .iter()
            .any(|d| d.peer_id.as_deref() == Some(p.as_str()))
    });
    let e = s.last_error.as_ref()?;
    if known && e.kind != DialErrorKind::NotInTeam {
        return None;
    }
    Some(
        Check::new(
            format!("peer:{}", s.address),
            format!("--peer {}", s.address),
            Verdict::Fail,
        )
        .detail(format!(
            "the last dial failed {}: {} [{}]",
            ago(f.now_ms, e.at_ms),
            e.kind.meaning(),
            e.error
        ))
        .next(e.kind.next_step(port_of(Some(&s.address)))),
    )
}

fn minutes(ms: i64) -> String {
    let s = ms.abs() / 1000;
    if s >= 120 {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

fn clock(f: &DoctorFacts) -> Check {
    let measured: Vec<(&DeviceFacts, i64)> = f
        .devices
        .iter()
        .filter_map(|d| Some((d, d.clock_offset_ms?)))
        .collect();
    if measured.is_empty() {
        return Check::new("clock", "Clocks", Verdict::Info)
            .detail("no connected device to compare clocks with");
    }
    let skewed: Vec<String> = measured
        .iter()
        .filter(|(_, off)| off.abs() > CLOCK_SKEW_WARN_MS)
        .map(|(d, off)| {
            format!(
                "{} is {} {} this one",
                d.name.as_deref().unwrap_or(short(&d.device_id)),
                minutes(*off),
                if *off > 0 { "ahead of" } else { "behind" }
            )
        })
        .collect();
    if !skewed.is_empty() {
        return Check::new("clock", "Clocks", Verdict::Warn)
            .detail(format!(
                "clocks differ by more than {}: {}; TOTP codes and audit times depend on clocks",
                minutes(CLOCK_SKEW_WARN_MS),
                skewed.join("; ")
            ))
            .next("turn on network time on every laptop (Linux: `timedatectl set-ntp true`; macOS: System Settings > General > Date & Time; Windows: Settings > Time > Sync now)");
    }
    let worst = measured.iter().map(|(_, o)| o.abs()).max().unwrap_or(0);
    Check::new("clock", "Clocks", Verdict::Ok).detail(format!(
        "within {} of {} device{}",
        if worst < 1000 {
            format!("{worst} ms")
        } else {
            minutes(worst)
        },
        measured.len(),
        if measured.len() == 1 { "" } else { "s" }
    ))
}
