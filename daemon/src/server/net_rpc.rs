//! IPC methods of peer-to-peer sync and pre-enrolment pairing: `device.*`,
//! `peers`, `sync.*`.

use coffer_crdt::replica::Trusted;
use coffer_crdt::{DeviceId, Role};
use coffer_ipc::methods::{self as m, Method};
use coffer_ipc::{ErrorCode, RpcError};
use rand::rngs::OsRng;
use serde_json::Value;

use super::convert::{Answer, Failure};
use super::{convert, invalid, now, params, reply, sync_partners, Shared};
use crate::net::peer_id_of;
use crate::vault::{parse_pairing_key, Vault, PAIRING_PREFIX};

const METHODS: &[&str] = &[
    m::DeviceId::NAME,
    m::DeviceTrust::NAME,
    m::DeviceRevoke::NAME,
    m::DeviceTrusted::NAME,
    m::Peers::NAME,
    m::SyncStatus::NAME,
    m::SyncNow::NAME,
];

/// Whether `method` is one of these.
pub(super) fn handles(method: &str) -> bool {
    METHODS.contains(&method)
}

impl Shared {
    pub(super) fn dispatch_net(&self, method: &str, raw: Value) -> Result<Value, RpcError> {
        match method {
            m::SyncNow::NAME => {
                let asked = self
                    .vault
                    .blocking_call_quiet(|v| Ok::<_, RpcError>(v.replica_mut()?.sync_now()))?;
                let (_, dialing) = self.net.sync_now();
                reply::<m::SyncNow, _>(m::SyncNowResult {
                    peers: asked,
                    dialing,
                })
            }
            m::Peers::NAME => {
                let (allowed, names) = self
                    .vault
                    .blocking_call_quiet(|v| Ok::<_, RpcError>(sync_partners(v)))?;
                reply::<m::Peers, _>(self.net.peers(allowed, &names))
            }
            m::SyncStatus::NAME => self
                .vault
                .blocking_call_quiet(|v| reply::<m::SyncStatus, RpcError>(sync_status(v)?)),
            _ => {
                let method = method.to_owned();
                self.vault
                    .blocking_call(move |v| dispatch(v, &method, raw))
                    .map_err(RpcError::from)
            }
        }
    }
}

fn dispatch(v: &mut Vault, method: &str, raw: Value) -> Answer {
    match method {
        m::DeviceId::NAME => {
            let (device, key) = v.pairing_key()?;
            let transport = v.replica()?.identity().transport;
            reply::<m::DeviceId, _>(m::DeviceIdResult {
                device_id: device.to_hex(),
                pairing_key: key,
                peer_id: peer_id_of(&transport).map(|p| p.to_string()),
            })
        }
        m::DeviceTrust::NAME => {
            let p = params::<m::DeviceTrust>(raw)?;
            let key = parse_pairing_key(&p.key).ok_or_else(|| {
                invalid(format!(
                    "not a pairing key: expected {PAIRING_PREFIX}<64 hex>:<64 hex>:<64 hex> (run `coffer device id` on the other device)"
                ))
            })?;
            let role = match p.role.as_deref() {
                Some(r) => convert::parse_role(r)?,
                None => Role::Editor,
            };
            let trusted = Trusted {
                device: key.device,
                exchange: key.exchange,
                transport: key.transport,
                name: p.name.clone(),
                added_ms: now().unix_ms,
            };
            let r = v.replica_mut()?;
            let shared = r.trust_device(trusted, &p.share, role, &mut OsRng)?;
            reply::<m::DeviceTrust, _>(m::DeviceTrustResult {
                device_id: key.device.to_hex(),
                shared: shared.iter().map(|s| s.to_hex()).collect(),
            })
        }
        m::DeviceRevoke::NAME => {
            let p = params::<m::DeviceRevoke>(raw)?;
            let r = v.replica_mut()?;
            let device = parse_pairing_key(&p.device)
                .map(|k| k.device)
                .or_else(|| DeviceId::from_hex(p.device.trim()))
                .map(Ok)
                .unwrap_or_else(|| r.resolve_device(&p.device))?;
            let change = r.revoke_device(device, &mut OsRng)?;
            reply::<m::DeviceRevoke, _>(m::DeviceRevokeResult {
                device_id: device.to_hex(),
                folders: change.rotated.iter().map(|f| f.to_hex()).collect(),
            })
        }
        m::DeviceTrusted::NAME => {
            let r = v.replica()?;
            reply::<m::DeviceTrusted, _>(
                r.trusted()
                    .iter()
                    .map(|t| m::TrustedDevice {
                        device_id: t.device.to_hex(),
                        name: t.name.clone(),
                        added_ms: t.added_ms,
                    })
                    .collect(),
            )
        }
        other => Err(Failure(RpcError::new(
            ErrorCode::MethodNotFound,
            format!("unknown method {other:?}"),
        ))),
    }
}

/// `coffer sync status`: per held space, what is held and how it was judged.
fn sync_status(v: &Vault) -> Result<m::SyncStatusResult, RpcError> {
    let Ok(r) = v.replica() else {
        return Ok(m::SyncStatusResult {
            device_id: None,
            spaces: Vec::new(),
        });
    };
    let me = r.device();
    let digests = r.digests();
    let spaces = r
        .folder_spaces()
        .map(|s| {
            let id = s.id();
            let digest = digests.iter().find(|d| d.space == id);
            m::SpaceSyncStatus {
                folder_id: id.to_hex(),
                name: r.unreadable(&id).map(|_| r.folder_name(&id)),
                envelopes: s.held().count(),
                envelope_bytes: s.held().map(|e| e.bytes().len() as u64).sum(),
                version_vector: s
                    .version_vector()
                    .into_iter()
                    .map(|(d, seq)| (d.to_hex(), seq))
                    .collect(),
                pending: s.pending_count(),
                quarantined: s
                    .quarantined()
                    .iter()
                    .map(|(eid, reason)| {
                        let env = s.get(eid);
                        m::QuarantinedEnvelope {
                            id: eid.to_hex(),
                            author: env.map(|e| e.author().to_hex()).unwrap_or_default(),
                            seq: env.map(|e| e.seq()).unwrap_or(0),
                            reason: reason.to_string(),
                        }
                    })
                    .collect(),
                endorsed: s
                    .endorsed_by()
                    .iter()
                    .map(|(eid, by)| m::EndorsedEnvelope {
                        id: eid.to_hex(),
                        author: s.get(eid).map(|e| e.author().to_hex()).unwrap_or_default(),
                        seq: s.get(eid).map(|e| e.seq()).unwrap_or(0),
                        by: by.to_hex(),
                        by_author: s.get(by).map(|e| e.author().to_hex()).unwrap_or_default(),
                    })
                    .collect(),
                members: s
                    .state()
                    .member_devices()
                    .into_keys()
                    .filter(|d| *d != me)
                    .map(|d| d.to_hex())
                    .collect(),
                digest: digest.map(|d| hex::encode(d.accepted)).unwrap_or_default(),
                items_digest: digest.and_then(|d| d.items).map(hex::encode),
            }
        })
        .collect();
    Ok(m::SyncStatusResult {
        device_id: Some(me.to_hex()),
        spaces,
    })
}
