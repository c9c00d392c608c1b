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
                if cmd.send(Command::Discovered { peer, addrs }).await.is_err() {
                    return;
                }
            }
            warn!("mDNS: browsing stopped");
        });
        Ok(Discovery { daemon })
    }
}

/// The TCP multiaddrs of a DNS-SD record's addresses and port.
pub(crate) fn tcp_addrs(ips: impl Iterator<Item = std::net::IpAddr>, port: u16) -> Vec<Multiaddr> {
    ips.map(|ip| {
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
