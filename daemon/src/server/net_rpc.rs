//! IPC methods of peer-to-peer sync and pre-enrolment pairing: `device.*`,
//! `peers`, `sync.*`.

use coffer_ipc::methods::{self as m, Method};
use coffer_ipc::{ErrorCode, RpcError};
use rand::rngs::OsRng;
use serde_json::Value;

use super::{now, params, reply, Shared};
use crate::net::peer_id_of;

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
        if method == m::SyncNow::NAME {
            let (peers, dialing) = self.net.sync_now();
            return reply::<m::SyncNow>(m::SyncNowResult { peers, dialing });
        }
        let mut vault = self
            .vault
            .lock()
            .map_err(|_| RpcError::new(ErrorCode::Internal, "vault state poisoned"))?;
        match method {
            m::DeviceId::NAME => {
                let (device, key) = vault.pairing_key()?;
                reply::<m::DeviceId>(m::DeviceIdResult {
                    device_id: device.to_hex(),
                    pairing_key: key,
                    peer_id: peer_id_of(&device).map(|p| p.to_string()),
                })
            }
            m::DeviceTrust::NAME => {
                let p = params::<m::DeviceTrust>(raw)?;
                let (result, events) = vault.trust_device(&p, now(), &mut OsRng)?;
                self.net.allowed_changed(&vault);
                drop(vault);
                self.publish(events);
                reply::<m::DeviceTrust>(result)
            }
            m::DeviceRevoke::NAME => {
                let p = params::<m::DeviceRevoke>(raw)?;
                let (result, events) = vault.revoke_device(&p.device, &mut OsRng)?;
                self.net.allowed_changed(&vault);
                drop(vault);
                self.publish(events);
                reply::<m::DeviceRevoke>(result)
            }
            m::DeviceTrusted::NAME => reply::<m::DeviceTrusted>(vault.trusted_devices()?),
            m::Peers::NAME => reply::<m::Peers>(self.net.peers(&vault)),
            m::SyncStatus::NAME => reply::<m::SyncStatus>(vault.sync_status()),
            other => Err(RpcError::new(
                ErrorCode::MethodNotFound,
                format!("unknown method {other:?}"),
            )),
        }
    }
}
