//! IPC methods of teams: `team.*`, `user.*`, `group.*`, folder sharing
//! (`folder.share|role|unshare|members`) and `device.list`.

use coffer_ipc::methods::{self as m, Method};
use coffer_ipc::{ErrorCode, RpcError};
use rand::rngs::OsRng;
use serde_json::Value;

use super::{params, reply, Shared};
use crate::vault::team::{GroupAction, ShareChange};

const METHODS: &[&str] = &[
    m::TeamCreate::NAME,
    m::TeamShow::NAME,
    m::UserList::NAME,
    m::UserRemove::NAME,
    m::GroupCreate::NAME,
    m::GroupAdd::NAME,
    m::GroupRemove::NAME,
    m::GroupList::NAME,
    m::FolderShare::NAME,
    m::FolderRole::NAME,
    m::FolderUnshare::NAME,
    m::FolderMembers::NAME,
    m::DeviceList::NAME,
];

/// Whether `method` is one of these.
pub(super) fn handles(method: &str) -> bool {
    METHODS.contains(&method)
}

impl Shared {
    pub(super) fn dispatch_team(&self, method: &str, raw: Value) -> Result<Value, RpcError> {
        let mut vault = self
            .vault
            .lock()
            .map_err(|_| RpcError::new(ErrorCode::Internal, "vault state poisoned"))?;
        // Roster and membership changes: new peers may be allowed (or cut
        // off) and the new envelopes are pushed at once.
        let changed = |vault: &crate::vault::Vault, events| {
            self.net.allowed_changed(vault);
            self.net.changed();
            self.publish(events);
        };
        match method {
            m::TeamCreate::NAME => {
                let p = params::<m::TeamCreate>(raw)?;
                let info = vault.team_create(&p.name, &mut OsRng)?;
                changed(&vault, Vec::new());
                reply::<m::TeamCreate>(info)
            }
            m::TeamShow::NAME => reply::<m::TeamShow>(vault.team_show()?),
            m::UserList::NAME => reply::<m::UserList>(vault.user_list()?),
            m::UserRemove::NAME => {
                let p = params::<m::UserRemove>(raw)?;
                let (result, events) = vault.user_remove(&p.user, &mut OsRng)?;
                changed(&vault, events);
                reply::<m::UserRemove>(result)
            }
            m::GroupCreate::NAME | m::GroupAdd::NAME | m::GroupRemove::NAME => {
                let p = params::<m::GroupAdd>(raw)?;
                let action = match method {
                    m::GroupCreate::NAME => GroupAction::Create,
                    m::GroupAdd::NAME => GroupAction::Add,
                    _ => GroupAction::Remove,
                };
                let (result, events) = vault.group_change(&p, action, &mut OsRng)?;
                changed(&vault, events);
                reply::<m::GroupAdd>(result)
            }
            m::GroupList::NAME => reply::<m::GroupList>(vault.group_list()?),
            m::FolderShare::NAME | m::FolderRole::NAME | m::FolderUnshare::NAME => {
                let p = params::<m::FolderShare>(raw)?;
                let how = match method {
                    m::FolderShare::NAME => ShareChange::Share,
                    m::FolderRole::NAME => ShareChange::Role,
                    _ => ShareChange::Unshare,
                };
                let (result, events) = vault.folder_share(&p, how, &mut OsRng)?;
                changed(&vault, events);
                reply::<m::FolderShare>(result)
            }
            m::FolderMembers::NAME => {
                let p = params::<m::FolderMembers>(raw)?;
                reply::<m::FolderMembers>(vault.folder_members(&p.folder)?)
            }
            m::DeviceList::NAME => reply::<m::DeviceList>(vault.device_list()?),
            other => Err(RpcError::new(
                ErrorCode::MethodNotFound,
                format!("unknown method {other:?}"),
            )),
        }
    }
}
