//! IPC methods of peer-to-peer sync and pre-enrolment pairing: `device.*`,
//! `peers`, `sync.*`.

use std::collections::{BTreeMap, BTreeSet};

use coffer_crdt::replica::Trusted;
use coffer_crdt::{DeviceId, Role};
use coffer_ipc::methods::{self as m, Method};
use coffer_ipc::RpcError;
use rand::rngs::OsRng;
use serde_json::Value;

use super::convert::Failure;
use super::items_rpc::{handler, Handler, OnVault};
use super::{convert, invalid, now, params, reply, sync_partners, Shared};
use crate::net::peer_id_of;
use crate::vault::{parse_pairing_key, Vault, VaultError, PAIRING_PREFIX};

const ALL: &[&str] = &[
    m::DeviceId::NAME,
    m::DeviceTrust::NAME,
    m::DeviceRevoke::NAME,
    m::DeviceTrusted::NAME,
    m::Peers::NAME,
    m::Doctor::NAME,
    m::UserList::NAME,
    m::SyncStatus::NAME,
    m::SyncNow::NAME,
];

/// Whether `method` is one of these.
pub(super) fn handles(method: &str) -> bool {
    ALL.contains(&method)
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
            m::Doctor::NAME => {
                let mut facts = self
                    .vault
                    .blocking_call_quiet(|v| Ok::<_, RpcError>(doctor_facts(v)))?;
                let (partners, names) = self
                    .vault
                    .blocking_call_quiet(|v| Ok::<_, RpcError>(doctor_partners(v)))?;
                let (network, devices) = self.net.doctor(partners, &names);
                facts.network = network;
                facts.devices = devices;
                facts.now_ms = now().unix_ms;
                reply::<m::Doctor, _>(facts)
            }
            m::UserList::NAME => {
                params::<m::UserList>(raw)?;
                let seen = self.net.last_seen();
                self.vault.blocking_call(move |v| {
                    let r = v.replica()?;
                    let now = now().unix_ms;
                    let users = r.users().map_err(|e| RpcError::from(VaultError::from(e)))?;
                    reply::<m::UserList, RpcError>(
                        users
                            .into_iter()
                            .map(|u| convert::user_info(r, u, &seen, now))
                            .collect(),
                    )
                })
            }
            m::SyncStatus::NAME => self
                .vault
                .blocking_call_quiet(|v| reply::<m::SyncStatus, RpcError>(sync_status(v)?)),
            _ => self.run_on_vault(method, raw),
        }
    }
}

/// The methods of this module that run on the vault thread, by name.
pub(super) const METHODS: &[(&str, Handler)] = &[
    (m::DeviceId::NAME, handler::<m::DeviceId>),
    (m::DeviceTrust::NAME, handler::<m::DeviceTrust>),
    (m::DeviceRevoke::NAME, handler::<m::DeviceRevoke>),
    (m::DeviceTrusted::NAME, handler::<m::DeviceTrusted>),
];

impl OnVault for m::DeviceId {
    fn run(v: &mut Vault, _: m::Empty) -> Result<m::DeviceIdResult, Failure> {
        let (device, key) = v.pairing_key()?;
        let transport = v.replica()?.identity().transport;
        Ok(m::DeviceIdResult {
            device_id: device.to_hex(),
            pairing_key: key,
            peer_id: peer_id_of(&transport).map(|p| p.to_string()),
        })
    }
}

impl OnVault for m::DeviceTrust {
    fn run(v: &mut Vault, p: m::DeviceTrustParams) -> Result<m::DeviceTrustResult, Failure> {
        let key = parse_pairing_key(&p.key).ok_or_else(|| {
            Failure(invalid(format!(
                "not a pairing key: expected {PAIRING_PREFIX}<64 hex>:<64 hex>:<64 hex> (run `coffer device id` on the other device)"
            )))
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
        let shared = v
            .replica_mut()?
            .trust_device(trusted, &p.share, role, &mut OsRng)?;
        Ok(m::DeviceTrustResult {
            device_id: key.device.to_hex(),
            shared: shared.iter().map(|s| s.to_hex()).collect(),
        })
    }
}

impl OnVault for m::DeviceRevoke {
    fn run(v: &mut Vault, p: m::DeviceRevokeParams) -> Result<m::DeviceRevokeResult, Failure> {
        let r = v.replica_mut()?;
        let device = match parse_pairing_key(&p.device)
            .map(|k| k.device)
            .or_else(|| DeviceId::from_hex(p.device.trim()))
        {
            Some(d) => d,
            None => r.resolve_device(&p.device)?,
        };
        let change = r.revoke_device(device, &mut OsRng)?;
        Ok(m::DeviceRevokeResult {
            device_id: device.to_hex(),
            folders: change.rotated.iter().map(|f| f.to_hex()).collect(),
        })
    }
}

impl OnVault for m::DeviceTrusted {
    fn run(v: &mut Vault, _: m::Empty) -> Result<Vec<m::TrustedDevice>, Failure> {
        Ok(v.replica()?
            .trusted()
            .iter()
            .map(|t| m::TrustedDevice {
                device_id: t.device.to_hex(),
                name: t.name.clone(),
                added_ms: t.added_ms,
            })
            .collect())
    }
}

/// `coffer doctor`: the vault's and the team's facts (the network's are
/// added by the caller; the decisions are `coffer_ipc::doctor::diagnose`).
fn doctor_facts(v: &Vault) -> m::DoctorFacts {
    let r = v.replica().ok();
    m::DoctorFacts {
        version: env!("CARGO_PKG_VERSION").into(),
        pid: std::process::id(),
        initialized: r.is_some(),
        locked: v.is_locked(),
        device_id: r.map(|r| r.device().to_hex()),
        standing: r.map(|r| r.standing().name().to_string()),
        notice: r.and_then(|r| r.standing().notice()),
        team: r.and_then(|r| r.team().ok()).map(|t| t.name),
        ..Default::default()
    }
}

/// The devices this one syncs with, labelled by their user (a team
/// device) or the name they were paired under.
fn doctor_partners(v: &Vault) -> (BTreeSet<DeviceId>, BTreeMap<DeviceId, String>) {
    let (partners, mut names) = sync_partners(v);
    if let Ok(r) = v.replica() {
        for (d, user, _) in r.devices() {
            names.insert(d, user.to_string());
        }
    }
    (partners, names)
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
                envelope_bytes: s.held().map(|e| e.wire_len() as u64).sum(),
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
