//! IPC methods of teams: `team.*`, `user.*`, `group.*`, folder sharing
//! (`folder.share|role|unshare|members`) and `device.list`. Each runs on
//! the vault thread; the replica decides, this only translates.

use coffer_crdt::replica::{GroupChange, ShareChange};
use coffer_crdt::{Principal, UserId};
use coffer_ipc::methods::{self as m, Method};
use coffer_ipc::{ErrorCode, RpcError};
use rand::rngs::OsRng;
use serde_json::Value;

use super::convert::{Answer, Failure};
use super::{convert, invalid, params, reply};
use crate::vault::Vault;

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

pub(super) fn dispatch(v: &mut Vault, method: &str, raw: Value) -> Answer {
    let rng = &mut OsRng;
    match method {
        m::TeamCreate::NAME => {
            let p = params::<m::TeamCreate>(raw)?;
            let team = v.replica_mut()?.create_team(&p.name, rng)?;
            reply::<m::TeamCreate, _>(convert::team_info(team))
        }
        m::TeamShow::NAME => reply::<m::TeamShow, _>(convert::team_info(v.replica()?.team()?)),
        m::UserList::NAME => {
            let users = v.replica()?.users()?;
            reply::<m::UserList, _>(users.into_iter().map(convert::user_info).collect())
        }
        m::UserRemove::NAME => {
            let p = params::<m::UserRemove>(raw)?;
            let change = v.replica_mut()?.remove_user(&p.user, rng)?;
            reply::<m::UserRemove, _>(convert::team_change(v.replica()?, &change))
        }
        m::GroupCreate::NAME | m::GroupAdd::NAME | m::GroupRemove::NAME => {
            let p = params::<m::GroupAdd>(raw)?;
            let user = p.user.as_deref();
            let change = match (method, user) {
                (m::GroupCreate::NAME, _) => GroupChange::Create,
                (m::GroupAdd::NAME, Some(u)) => GroupChange::Add(u),
                (_, Some(u)) => GroupChange::Remove(u),
                (_, None) => return Err(Failure(invalid("name the user to add or remove"))),
            };
            let change = v.replica_mut()?.group_change(&p.group, change, rng)?;
            reply::<m::GroupAdd, _>(convert::team_change(v.replica()?, &change))
        }
        m::GroupList::NAME => {
            let groups = v.replica()?.groups()?;
            reply::<m::GroupList, _>(
                groups
                    .into_iter()
                    .map(|(name, members)| m::GroupInfo {
                        name,
                        members: members.iter().map(ToString::to_string).collect(),
                    })
                    .collect(),
            )
        }
        m::FolderShare::NAME | m::FolderRole::NAME | m::FolderUnshare::NAME => {
            let p = params::<m::FolderShare>(raw)?;
            let principal = match (p.user.as_deref(), p.group.as_deref()) {
                (Some(email), None) => Principal::User(
                    UserId::new(email)
                        .ok_or_else(|| invalid(format!("{email:?} is not an email address")))?,
                ),
                (None, Some(g)) => Principal::Group(g.trim().to_string()),
                _ => {
                    return Err(Failure(invalid(
                        "name exactly one of --user EMAIL or --group GROUP",
                    )))
                }
            };
            let change = match (method, p.role.as_deref()) {
                (m::FolderUnshare::NAME, _) => ShareChange::Unshare,
                (_, None) => {
                    return Err(Failure(invalid("--role manager|editor|member is required")))
                }
                (m::FolderShare::NAME, Some(r)) => ShareChange::Share(convert::parse_role(r)?),
                (_, Some(r)) => ShareChange::Role(convert::parse_role(r)?),
            };
            v.replica_mut()?
                .folder_share(&p.folder, principal, change, rng)?;
            let members = v.replica()?.folder_members(&p.folder)?;
            reply::<m::FolderShare, _>(convert::folder_members(members))
        }
        m::FolderMembers::NAME => {
            let p = params::<m::FolderMembers>(raw)?;
            let members = v.replica()?.folder_members(&p.folder)?;
            reply::<m::FolderMembers, _>(convert::folder_members(members))
        }
        m::DeviceList::NAME => {
            let r = v.replica()?;
            let me = r.device();
            reply::<m::DeviceList, _>(
                r.devices()
                    .into_iter()
                    .map(|(d, user, revoked)| m::DeviceInfo {
                        device_id: d.to_hex(),
                        user: user.to_string(),
                        revoked,
                        this_device: d == me,
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
