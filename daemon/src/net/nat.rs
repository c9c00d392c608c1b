//! Paths beyond one LAN (issue 16): how a connection runs — on the LAN,
//! direct over the internet, or through a relay's circuit — and the
//! addresses to reach a team device through the team's relays. Pure:
//! the swarm actor asks, this answers.

use std::net::IpAddr;

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

/// How a connection runs (`coffer peers` shows it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// To a private, loopback or link-local address: the same network.
    Lan,
    /// To a public address: across the internet, no relay (possibly a
    /// hole punched by DCUtR).
    Direct,
    /// Through a relay's circuit (`/p2p-circuit`): still Noise end to end.
    Relayed,
}

impl Path {
    pub fn as_str(self) -> &'static str {
        match self {
            Path::Lan => "lan",
            Path::Direct => "direct",
            Path::Relayed => "relayed",
        }
    }
}

fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private() || v4.is_loopback() || v4.is_link_local() || v4.is_unspecified()
        }
        IpAddr::V6(v6) => {
            let s = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (s & 0xfe00) == 0xfc00 // unique local
                || (s & 0xffc0) == 0xfe80 // link local
        }
    }
}

/// The path of a connection whose remote address is `addr`.
pub fn path_of(addr: &Multiaddr) -> Path {
    let mut ip = None;
    for p in addr.iter() {
        match p {
            Protocol::P2pCircuit => return Path::Relayed,
            Protocol::Ip4(a) if ip.is_none() => ip = Some(IpAddr::V4(a)),
            Protocol::Ip6(a) if ip.is_none() => ip = Some(IpAddr::V6(a)),
            _ => {}
        }
    }
    match ip {
        Some(ip) if !is_local(ip) => Path::Direct,
        _ => Path::Lan,
    }
}

/// The address to reserve a circuit at `relay` (listen through it).
pub fn circuit_listen(relay_addr: &Multiaddr, relay: PeerId) -> Multiaddr {
    relay_addr
        .clone()
        .with(Protocol::P2p(relay))
        .with(Protocol::P2pCircuit)
}

/// The address to reach `target` through `relay` (the swarm adds `/p2p/target`).
pub fn circuit_to(relay_addr: &Multiaddr, relay: PeerId) -> Multiaddr {
    circuit_listen(relay_addr, relay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_by_address() {
        let p = |s: &str| path_of(&s.parse().unwrap());
        assert_eq!(p("/ip4/192.168.1.7/tcp/7373"), Path::Lan);
        assert_eq!(p("/ip4/127.0.0.1/tcp/7373"), Path::Lan);
        assert_eq!(p("/ip6/fd00::1/tcp/7373"), Path::Lan);
        assert_eq!(p("/ip4/11.0.0.2/tcp/7373"), Path::Direct);
        assert_eq!(p("/ip6/2001:db8::1/tcp/7373"), Path::Direct);
        let relay = libp2p::identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id();
        let c = circuit_to(&"/ip4/11.0.0.1/tcp/7373".parse().unwrap(), relay);
        assert_eq!(path_of(&c), Path::Relayed);
        assert_eq!(
            c.to_string(),
            format!("/ip4/11.0.0.1/tcp/7373/p2p/{relay}/p2p-circuit")
        );
    }
}
