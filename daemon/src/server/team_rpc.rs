//! IPC methods of teams: `team.*`, `user.*` (but `user.list`, which needs
//! the network's last contacts: `net_rpc.rs`), `group.*`, folder sharing
//! (`folder.share|role|unshare|members`), `device.list` and `device.rename`. Each runs on
//! the vault thread ([`OnVault`]); the replica decides, this translates.

use coffer_crdt::replica::{GroupChange, ShareChange};
use coffer_crdt::{Principal, UserId};
use coffer_ipc::methods as m;
use coffer_ipc::methods::Method;
use rand::rngs::OsRng;

use super::convert::{self, Failure};
use super::items_rpc::{handler, Handler, OnVault};
use super::{hostname, invalid, now};
use crate::vault::Vault;

/// The methods of this module, by name.
pub(super) const METHODS: &[(&str, Handler)] = &[
    (m::TeamCreate::NAME, handler::<m::TeamCreate>),
    (m::TeamShow::NAME, handler::<m::TeamShow>),
    (m::UserRemove::NAME, handler::<m::UserRemove>),
    (m::UserPromote::NAME, handler::<m::UserPromote>),
    (m::UserDemote::NAME, handler::<m::UserDemote>),
    (m::TeamRename::NAME, handler::<m::TeamRename>),
    (m::TeamLeave::NAME, handler::<m::TeamLeave>),
    (m::TeamHandOver::NAME, handler::<m::TeamHandOver>),
    (m::GroupCreate::NAME, handler::<m::GroupCreate>),
    (m::GroupDelete::NAME, handler::<m::GroupDelete>),
    (m::DeviceRename::NAME, handler::<m::DeviceRename>),
    (m::GroupAdd::NAME, handler::<m::GroupAdd>),
    (m::GroupRemove::NAME, handler::<m::GroupRemove>),
    (m::GroupList::NAME, handler::<m::GroupList>),
    (m::FolderShare::NAME, handler::<m::FolderShare>),
    (m::FolderRole::NAME, handler::<m::FolderRole>),
    (m::FolderUnshare::NAME, handler::<m::FolderUnshare>),
    (m::FolderMembers::NAME, handler::<m::FolderMembers>),
    (m::DeviceList::NAME, handler::<m::DeviceList>),
];

impl OnVault for m::TeamCreate {
    fn run(v: &mut Vault, p: m::TeamCreateParams) -> Result<m::TeamInfo, Failure> {
        let r = v.replica_mut()?;
        r.create_team(&p.name, now().unix_ms, &mut OsRng)?;
        // The founder's device is named like a joining one: its host name
        // (a host name the rule refuses leaves it unnamed).
        if let Err(e) = r.rename_device(None, &hostname(), &mut OsRng) {
            tracing::info!(error = %e, "this device keeps no name");
        }
        Ok(convert::team_info(v.replica()?.team()?))
    }
}

impl OnVault for m::TeamRename {
    fn run(v: &mut Vault, p: m::TeamRenameParams) -> Result<m::TeamChangeResult, Failure> {
        let change = v.replica_mut()?.rename_team(&p.name, &mut OsRng)?;
        Ok(convert::team_change(v.replica()?, &change))
    }
}

impl OnVault for m::TeamLeave {
    fn run(v: &mut Vault, _: m::Empty) -> Result<m::TeamChangeResult, Failure> {
        let change = v.replica_mut()?.leave_team(&mut OsRng)?;
        Ok(convert::team_change(v.replica()?, &change))
    }
}

impl OnVault for m::TeamHandOver {
    fn run(v: &mut Vault, p: m::UserParams) -> Result<m::TeamChangeResult, Failure> {
        let change = v.replica_mut()?.hand_over(&p.user, &mut OsRng)?;
        Ok(convert::team_change(v.replica()?, &change))
    }
}

impl OnVault for m::DeviceRename {
    fn run(v: &mut Vault, p: m::DeviceRenameParams) -> Result<m::TeamChangeResult, Failure> {
        let r = v.replica_mut()?;
        let device = p
            .device
            .as_deref()
            .map(|d| r.resolve_device(d))
            .transpose()?;
        let change = r.rename_device(device, &p.name, &mut OsRng)?;
        Ok(convert::team_change(v.replica()?, &change))
    }
}

impl OnVault for m::TeamShow {
    fn run(v: &mut Vault, _: m::Empty) -> Result<m::TeamInfo, Failure> {
        Ok(convert::team_info(v.replica()?.team()?))
    }
}

impl OnVault for m::UserRemove {
    fn run(v: &mut Vault, p: m::UserParams) -> Result<m::TeamChangeResult, Failure> {
        let change = v.replica_mut()?.remove_user(&p.user, &mut OsRng)?;
        Ok(convert::team_change(v.replica()?, &change))
    }
}

impl OnVault for m::UserPromote {
    fn run(v: &mut Vault, p: m::UserParams) -> Result<m::TeamChangeResult, Failure> {
        let change = v.replica_mut()?.set_admin(&p.user, true, &mut OsRng)?;
        Ok(convert::team_change(v.replica()?, &change))
    }
}

impl OnVault for m::UserDemote {
    fn run(v: &mut Vault, p: m::UserParams) -> Result<m::TeamChangeResult, Failure> {
        let change = v.replica_mut()?.set_admin(&p.user, false, &mut OsRng)?;
        Ok(convert::team_change(v.replica()?, &change))
    }
}

fn group(
    v: &mut Vault,
    p: &m::GroupParams,
    change: GroupChange<'_>,
) -> Result<m::TeamChangeResult, Failure> {
    let change = v
        .replica_mut()?
        .group_change(&p.group, change, &mut OsRng)?;
    Ok(convert::team_change(v.replica()?, &change))
}

fn group_user(p: &m::GroupParams) -> Result<&str, Failure> {
    p.user
        .as_deref()
        .ok_or_else(|| Failure(invalid("name the user to add or remove")))
}

impl OnVault for m::GroupCreate {
    fn run(v: &mut Vault, p: m::GroupParams) -> Result<m::TeamChangeResult, Failure> {
        group(v, &p, GroupChange::Create)
    }
}

impl OnVault for m::GroupDelete {
    fn run(v: &mut Vault, p: m::GroupParams) -> Result<m::TeamChangeResult, Failure> {
        group(v, &p, GroupChange::Delete)
    }
}

impl OnVault for m::GroupAdd {
    fn run(v: &mut Vault, p: m::GroupParams) -> Result<m::TeamChangeResult, Failure> {
        group(v, &p, GroupChange::Add(group_user(&p)?))
    }
}

impl OnVault for m::GroupRemove {
    fn run(v: &mut Vault, p: m::GroupParams) -> Result<m::TeamChangeResult, Failure> {
        group(v, &p, GroupChange::Remove(group_user(&p)?))
    }
}

impl OnVault for m::GroupList {
    fn run(v: &mut Vault, _: m::Empty) -> Result<Vec<m::GroupInfo>, Failure> {
        let groups = v.replica()?.groups()?;
        Ok(groups
            .into_iter()
            .map(|(name, members)| m::GroupInfo {
                name,
                members: members.iter().map(ToString::to_string).collect(),
            })
            .collect())
    }
}

/// The user or group a share names: exactly one.
fn principal(p: &m::FolderShareParams) -> Result<Principal, Failure> {
    match (p.user.as_deref(), p.group.as_deref()) {
        (Some(email), None) => {
            Ok(Principal::User(UserId::new(email).ok_or_else(|| {
                Failure(invalid(format!("{email:?} is not an email address")))
            })?))
        }
        (None, Some(g)) => Ok(Principal::Group(g.trim().to_string())),
        _ => Err(Failure(invalid(
            "name exactly one of --user EMAIL or --group GROUP",
        ))),
    }
}

fn role(p: &m::FolderShareParams) -> Result<coffer_crdt::Role, Failure> {
    match p.role.as_deref() {
        Some(r) => Ok(convert::parse_role(r)?),
        None => Err(Failure(invalid("--role manager|editor|member is required"))),
    }
}

fn share(
    v: &mut Vault,
    p: &m::FolderShareParams,
    change: ShareChange,
) -> Result<m::FolderMembersResult, Failure> {
    v.replica_mut()?
        .folder_share(&p.folder, principal(p)?, change, &mut OsRng)?;
    Ok(convert::folder_members(
        v.replica()?.folder_members(&p.folder)?,
    ))
}

impl OnVault for m::FolderShare {
    fn run(v: &mut Vault, p: m::FolderShareParams) -> Result<m::FolderMembersResult, Failure> {
        let r = role(&p)?;
        share(v, &p, ShareChange::Share(r))
    }
}

impl OnVault for m::FolderRole {
    fn run(v: &mut Vault, p: m::FolderShareParams) -> Result<m::FolderMembersResult, Failure> {
        let r = role(&p)?;
        share(v, &p, ShareChange::Role(r))
    }
}

impl OnVault for m::FolderUnshare {
    fn run(v: &mut Vault, p: m::FolderShareParams) -> Result<m::FolderMembersResult, Failure> {
        share(v, &p, ShareChange::Unshare)
    }
}

impl OnVault for m::FolderMembers {
    fn run(v: &mut Vault, p: m::FolderRef) -> Result<m::FolderMembersResult, Failure> {
        Ok(convert::folder_members(
            v.replica()?.folder_members(&p.folder)?,
        ))
    }
}

impl OnVault for m::DeviceList {
    fn run(v: &mut Vault, _: m::Empty) -> Result<Vec<m::DeviceInfo>, Failure> {
        let r = v.replica()?;
        let me = r.device();
        Ok(r.devices()
            .into_iter()
            .map(|(d, user, revoked)| m::DeviceInfo {
                device_id: d.to_hex(),
                name: r.device_name(&d),
                user: user.to_string(),
                revoked,
                this_device: d == me,
            })
            .collect())
    }
}
