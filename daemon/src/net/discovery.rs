//! LAN discovery: a DNS-SD service `_coffer._tcp.local.` advertised and
//! browsed with `mdns-sd` (so `avahi-browse -a` lists the team's daemons;
//! it also works on loopback, which libp2p's own mDNS skips). The TXT
//! record carries the PeerId and the protocol version; finds go to the
//! swarm actor, which dials only devices it syncs with.
//!
//! Tests never run this outside a network namespace: every other daemon in
//! the test suite passes `--no-mdns`.

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::Command;

/// The DNS-SD service type.
pub const SERVICE_TYPE: &str = "_coffer._tcp.local.";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    #[error("mDNS: {0}")]
    Mdns(#[from] mdns_sd::Error),
}

/// A running advertiser and browser; stops when dropped.
pub struct Discovery {
    daemon: ServiceDaemon,
}

impl Drop for Discovery {
    fn drop(&mut self) {
        let _ = self.daemon.shutdown();
    }
}

impl Discovery {
    /// Advertises this peer on `port` and browses for others.
    pub(crate) fn start(
        local: PeerId,
        port: u16,
        cmd: mpsc::Sender<Command>,
    ) -> Result<Discovery, DiscoveryError> {
        let daemon = ServiceDaemon::new()?;
        let id = local.to_base58();
        // DNS labels are at most 63 bytes; a PeerId in base58 is 52.
        let instance = format!("coffer-{}", &id[id.len().saturating_sub(52)..]);
        let host = format!("{instance}.local.");
        let props = [("peer", id.as_str()), ("v", "1")];
        let info = ServiceInfo::new(SERVICE_TYPE, &instance, &host, (), port, &props[..])?
            .enable_addr_auto();
        daemon.register(info)?;
        let events = daemon.browse(SERVICE_TYPE)?;
        info!(port, "mDNS: advertising and browsing {SERVICE_TYPE}");
        tokio::spawn(async move {
            while let Ok(event) = events.recv_async().await {
                let ServiceEvent::ServiceResolved(svc) = event else {
                    continue;
                };
                let Some(peer) = svc
                    .get_property_val_str("peer")
                    .and_then(|p| p.parse::<PeerId>().ok())
                else {
                    debug!(name = %svc.fullname, "mDNS: a record without a PeerId");
                    continue;
                };
                if peer == local {
                    continue;
                }
                let addrs = tcp_addrs(svc.addresses.iter().map(|ip| ip.to_ip_addr()), svc.port);
                debug!(%peer, ?addrs, "mDNS: found a peer");
                let found = Command::Discovered {
                    peer,
                    addrs,
                    mdns: true,
                };
                if cmd.send(found).await.is_err() {
                    return;
                }
            }
            warn!("mDNS: browsing stopped");
        });
        Ok(Discovery { daemon })
    }
}

/// The TCP multiaddrs of a DNS-SD record's addresses and port that this
/// device can dial ([`dialable`]), IPv4 first.
pub(crate) fn tcp_addrs(ips: impl Iterator<Item = std::net::IpAddr>, port: u16) -> Vec<Multiaddr> {
    let mut ips: Vec<_> = ips.filter(|ip| dialable_ip(*ip)).collect();
    ips.sort_by_key(|ip| ip.is_ipv6());
    ips.dedup();
    ips.into_iter()
        .map(|ip| {
            let mut a = Multiaddr::empty();
            match ip {
                std::net::IpAddr::V4(v4) => a.push(Protocol::Ip4(v4)),
                std::net::IpAddr::V6(v6) => a.push(Protocol::Ip6(v6)),
            }
            a.push(Protocol::Tcp(port));
            a
        })
        .collect()
}

/// Whether a TCP dial to `ip` can work from here. Not an unspecified or
/// multicast address, and not an IPv6 link-local one (`fe80::/10`): those
/// need an interface scope, which a multiaddr cannot carry to libp2p's TCP
/// transport, and connecting without one fails with EINVAL (issue 21).
pub(crate) fn dialable_ip(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            !v4.is_unspecified() && !v4.is_multicast() && !v4.is_broadcast()
        }
        std::net::IpAddr::V6(v6) => {
            !v6.is_unspecified() && !v6.is_multicast() && !v6.is_unicast_link_local()
        }
    }
}

/// The IP address of a multiaddr, if it has one.
fn ip_of(addr: &Multiaddr) -> Option<std::net::IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(ip.into()),
        Protocol::Ip6(ip) => Some(ip.into()),
        _ => None,
    })
}

/// Whether `addr` can be dialled from here (see [`dialable_ip`]); an
/// address with no IP (DNS, memory) is left to the transport.
pub(crate) fn dialable(addr: &Multiaddr) -> bool {
    ip_of(addr).is_none_or(dialable_ip)
}

/// The addresses among `listen` another device on the LAN can dial: no
/// loopback, unspecified or link-local IPv6 ones; IPv4 first. For the
/// `--peer` hint of `coffer invite` and `coffer device link`.
pub(crate) fn reachable_by_others(listen: &[String]) -> Vec<String> {
    let mut out: Vec<(bool, String)> = listen
        .iter()
        .filter_map(|s| {
            let a: Multiaddr = s.parse().ok()?;
            let ip = ip_of(&a)?;
            (dialable_ip(ip) && !ip.is_loopback()).then(|| (ip.is_ipv6(), s.clone()))
        })
        .collect();
    out.sort_by_key(|(v6, _)| *v6);
    out.dedup();
    out.into_iter().map(|(_, s)| s).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 21: a record's link-local IPv6 address is not dialled (no
    /// scope), IPv4 comes first, and loopback is never offered to others.
    #[test]
    fn only_dialable_addresses_are_dialled_and_offered() {
        let ips = ["fe80::1", "192.168.1.7", "fd00::7", "::", "224.0.0.251"]
            .map(|s| s.parse::<std::net::IpAddr>().unwrap());
        let addrs: Vec<String> = tcp_addrs(ips.into_iter(), 7373)
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(
            addrs,
            ["/ip4/192.168.1.7/tcp/7373", "/ip6/fd00::7/tcp/7373"]
        );
        assert!(!dialable(&"/ip6/fe80::1/tcp/1".parse().unwrap()));
        assert!(dialable(&"/ip4/127.0.0.1/tcp/1".parse().unwrap()));
        let listen = [
            "/ip6/::1/tcp/7373",
            "/ip6/fe80::2/tcp/7373",
            "/ip6/2001:db8::5/tcp/7373",
            "/ip4/127.0.0.1/tcp/7373",
            "/ip4/192.0.2.5/tcp/7373",
        ]
        .map(String::from);
        assert_eq!(
            reachable_by_others(&listen),
            ["/ip4/192.0.2.5/tcp/7373", "/ip6/2001:db8::5/tcp/7373"]
        );
    }
}
