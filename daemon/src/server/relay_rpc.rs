//! IPC methods of relays: `relay.add|remove|list` on a team device (the
//! replica decides: a signed roster op, admins only) and `relay.status`,
//! asked of `cofferd --relay` itself.

use coffer_crdt::DeviceId;
use coffer_ipc::methods as m;
use coffer_ipc::methods::Method;
use coffer_ipc::{ErrorCode, RpcError};
use libp2p::Multiaddr;
use rand::rngs::OsRng;
use serde_json::Value;

use super::convert;
use super::{invalid, params, reply, Shared};
use crate::net::{peer_id_of, transport_of, without_p2p};
use crate::vault::VaultError;

const ALL: &[&str] = &[
    m::RelayAdd::NAME,
    m::RelayRemove::NAME,
    m::RelayList::NAME,
    m::RelayStatus::NAME,
    m::RelayAccept::NAME,
    m::RelayForget::NAME,
];

/// Whether `method` is one of these.
pub(super) fn handles(method: &str) -> bool {
    ALL.contains(&method)
}

/// The relay's transport key and its addresses (without `/p2p`), from
/// multiaddrs that each end in the same `/p2p/PEER_ID`.
fn parse_relay_addrs(addrs: &[String]) -> Result<([u8; 32], Vec<String>), RpcError> {
    if addrs.is_empty() {
        return Err(invalid(
            "give the relay's address, e.g. /ip4/203.0.113.7/tcp/7373/p2p/12D3KooW... (cofferd --relay prints it)",
        ));
    }
    let mut key = None;
    let mut out = Vec::new();
    for a in addrs {
        let addr: Multiaddr = a
            .trim()
            .parse()
            .map_err(|e| invalid(format!("{a:?} is not a multiaddr: {e}")))?;
        let (bare, peer) = without_p2p(&addr);
        let peer = peer.ok_or_else(|| {
            invalid(format!(
                "{a:?} names no peer: end it with /p2p/PEER_ID (the relay's, from `coffer relay status` on it)"
            ))
        })?;
        let t = transport_of(&peer)
            .ok_or_else(|| invalid(format!("{peer} is not an Ed25519 peer id")))?;
        if key.is_some_and(|k| k != t) {
            return Err(invalid(
                "the addresses name different peers: add one relay at a time",
            ));
        }
        key = Some(t);
        if bare.is_empty() {
            return Err(invalid(format!("{a:?} has no network address before /p2p")));
        }
        out.push(bare.to_string());
    }
    Ok((key.expect("one address at least"), out))
}

/// A relay named by its peer id or device id (hex).
fn parse_relay(s: &str) -> Result<[u8; 32], RpcError> {
    let s = s.trim();
    if let Some(d) = DeviceId::from_hex(s) {
        return Ok(d.0);
    }
    let peer: libp2p::PeerId = s
        .parse()
        .map_err(|_| invalid(format!("{s:?} is neither a peer id nor a device id")))?;
    transport_of(&peer).ok_or_else(|| invalid(format!("{peer} is not an Ed25519 peer id")))
}

impl Shared {
    pub(super) fn dispatch_relay(&self, method: &str, raw: Value) -> Result<Value, RpcError> {
        match method {
            m::RelayAdd::NAME => {
                let p = params::<m::RelayAdd>(raw)?;
                let (transport, addrs) = parse_relay_addrs(&p.addrs)?;
                let result = self.vault.blocking_call(move |v| {
                    let r = v.replica_mut()?;
                    let change = r
                        .add_relay(transport, addrs, &mut OsRng)
                        .map_err(|e| RpcError::from(VaultError::from(e)))?;
                    Ok::<_, RpcError>(convert::team_change(v.replica()?, &change))
                })?;
                reply::<m::RelayAdd, _>(result)
            }
            m::RelayRemove::NAME => {
                let p = params::<m::RelayRemove>(raw)?;
                let transport = parse_relay(&p.relay)?;
                let result = self.vault.blocking_call(move |v| {
                    let r = v.replica_mut()?;
                    let change = r
                        .remove_relay(transport, &mut OsRng)
                        .map_err(|e| RpcError::from(VaultError::from(e)))?;
                    Ok::<_, RpcError>(convert::team_change(v.replica()?, &change))
                })?;
                reply::<m::RelayRemove, _>(result)
            }
            m::RelayList::NAME => {
                let relays = self
                    .vault
                    .blocking_call_quiet(|v| Ok::<_, RpcError>(v.replica()?.relays()))?;
                let relays = relays
                    .into_iter()
                    .map(|(d, addrs)| m::RelayInfo {
                        peer_id: peer_id_of(&d.0).map(|p| p.to_string()).unwrap_or_default(),
                        device_id: d.to_hex(),
                        addrs,
                        connected: self.net.is_connected(&d),
                    })
                    .collect();
                reply::<m::RelayList, _>(m::RelayListResult { relays })
            }
            m::RelayAccept::NAME => {
                let team = team_id(&params::<m::RelayAccept>(raw)?.team)?;
                self.vault.blocking_call(move |v| {
                    v.relay_accept(team).map_err(RpcError::from)?;
                    Ok::<_, RpcError>(())
                })?;
                self.relay_status()
            }
            m::RelayForget::NAME => {
                let p = params::<m::RelayForget>(raw)?;
                let team = team_id(&p.team)?;
                let known = self
                    .vault
                    .blocking_call(move |v| v.relay_forget(team).map_err(RpcError::from))?;
                if !known {
                    return Err(RpcError::new(
                        ErrorCode::NotFound,
                        format!(
                            "this relay neither accepted nor holds team {}",
                            p.team.trim()
                        ),
                    ));
                }
                self.relay_status()
            }
            m::RelayStatus::NAME => self.relay_status(),
            _ => Err(RpcError::new(ErrorCode::MethodNotFound, method.to_string())),
        }
    }

    fn relay_status(&self) -> Result<Value, RpcError> {
        let (device, status, accepted) = self.vault.blocking_call_quiet(|v| {
            Ok::<_, RpcError>((v.relay_device(), v.relay_status(), v.relay_accepted()))
        })?;
        let (Some(device), Some(status)) = (device, status) else {
            return Err(RpcError::new(
                ErrorCode::InvalidInput,
                "this cofferd is not a relay: `coffer relay ls` lists the team's relays",
            ));
        };
        let teams = status
            .teams
            .into_iter()
            .map(|t| m::RelayTeamHeld {
                team_id: t.team.to_hex(),
                name: t.name,
                spaces: t.spaces,
                envelopes: t.envelopes,
                bytes: t.bytes,
                quarantined: t.quarantined,
                connected: t.connected,
                full: t.full,
            })
            .collect();
        reply::<m::RelayStatus, _>(m::RelayStatusResult {
            peer_id: peer_id_of(&device.0)
                .map(|p| p.to_string())
                .unwrap_or_default(),
            listen: self.net.listen_addrs(),
            teams,
            pending: status.pending,
            refused_sessions: status.refused_sessions,
            dropped_full: status.dropped_full,
            accepted,
        })
    }
}

/// A team id as its operator typed it.
fn team_id(text: &str) -> Result<coffer_crdt::SpaceId, RpcError> {
    coffer_crdt::SpaceId::from_hex(text.trim()).ok_or_else(|| {
        invalid(format!(
            "{text:?} is not a team id: `coffer team show --json` on a team device prints it (team_id)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_addresses_must_name_one_ed25519_peer() {
        let key = libp2p::identity::Keypair::generate_ed25519();
        let peer = key.public().to_peer_id();
        let a = format!("/ip4/192.0.2.1/tcp/7373/p2p/{peer}");
        let (t, addrs) = parse_relay_addrs(&[a]).unwrap();
        assert_eq!(Some(t), transport_of(&peer));
        assert_eq!(addrs, ["/ip4/192.0.2.1/tcp/7373"]);
        assert!(parse_relay_addrs(&["/ip4/192.0.2.1/tcp/7373".into()]).is_err());
        assert!(parse_relay_addrs(&["not an address".into()]).is_err());
        assert!(parse_relay_addrs(&[]).is_err());
        let other = libp2p::identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id();
        let two = [
            format!("/ip4/192.0.2.1/tcp/1/p2p/{peer}"),
            format!("/ip4/192.0.2.2/tcp/1/p2p/{other}"),
        ];
        assert!(parse_relay_addrs(&two).is_err());
        assert_eq!(parse_relay(&peer.to_string()).unwrap(), t);
        assert_eq!(parse_relay(&hex::encode(t)).unwrap(), t);
    }
}
