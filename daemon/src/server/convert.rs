//! The replica's types and errors as the IPC protocol shows them. The only
//! place that knows both.

use std::collections::BTreeMap;

use coffer_crdt::folder::{Item, ItemHead};
use coffer_crdt::replica::{
    Event as ReplicaEvent, FolderMembers, FolderSummary, HistoryItem, ItemChange, LockReason,
    TeamChange, TeamSummary, UserSummary,
};
use coffer_crdt::{DeviceId, Principal, Replica, ReplicaError, Role, SpaceId};
use coffer_ipc::methods as m;
use coffer_ipc::{ErrorCode, Event, RpcError};
use serde_json::json;

use crate::vault::VaultError;

impl From<VaultError> for RpcError {
    fn from(e: VaultError) -> Self {
        let code = match &e {
            VaultError::NotInitialized => ErrorCode::NotInitialized,
            VaultError::AlreadyInitialized => ErrorCode::AlreadyInitialized,
            VaultError::WrongPin => ErrorCode::WrongPin,
            VaultError::TooManyAttempts { .. } => ErrorCode::TooManyAttempts,
            VaultError::Invalid(_) => ErrorCode::InvalidInput,
            VaultError::Replica(r) => replica_code(r),
            _ => ErrorCode::Internal,
        };
        let err = RpcError::new(code, e.to_string());
        match e {
            VaultError::Replica(ReplicaError::Ambiguous { candidates, .. }) => {
                err.with_data(json!({ "candidates": candidates }))
            }
            VaultError::TooManyAttempts { retry_after_secs } => {
                err.with_data(json!({ "retry_after_secs": retry_after_secs }))
            }
            _ => err,
        }
    }
}

/// A request's failure on its way to becoming an [`RpcError`]: `?` takes
/// the vault's, the replica's and the protocol's errors alike.
#[derive(Debug)]
pub struct Failure(pub RpcError);

impl From<RpcError> for Failure {
    fn from(e: RpcError) -> Self {
        Failure(e)
    }
}

impl From<VaultError> for Failure {
    fn from(e: VaultError) -> Self {
        Failure(e.into())
    }
}

impl From<ReplicaError> for Failure {
    fn from(e: ReplicaError) -> Self {
        Failure(VaultError::from(e).into())
    }
}

impl From<Failure> for RpcError {
    fn from(f: Failure) -> Self {
        f.0
    }
}

/// A request's answer.
pub type Answer = Result<serde_json::Value, Failure>;

fn replica_code(e: &ReplicaError) -> ErrorCode {
    match e {
        ReplicaError::Locked => ErrorCode::Locked,
        ReplicaError::NoSuchFolder { .. }
        | ReplicaError::NoSuchItem { .. }
        | ReplicaError::NoTeam
        | ReplicaError::NoSuchUser { .. }
        | ReplicaError::NoSuchGroup { .. }
        | ReplicaError::NotAMember { .. }
        | ReplicaError::NoSuchDevice { .. } => ErrorCode::NotFound,
        ReplicaError::Ambiguous { .. } => ErrorCode::Ambiguous,
        ReplicaError::NotAllowed { .. }
        | ReplicaError::NotAdmin { .. }
        | ReplicaError::NotFounder
        | ReplicaError::LeaveThroughGroup { .. }
        | ReplicaError::NotForThisOrigin { .. } => ErrorCode::PermissionDenied,
        ReplicaError::WrongKeys { .. } | ReplicaError::Internal(_) => ErrorCode::Internal,
        ReplicaError::NoLongerMember(_) => ErrorCode::NoLongerMember,
        _ => ErrorCode::InvalidInput,
    }
}

/// A role as the IPC names it.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Manager => "manager",
        Role::Editor => "editor",
        Role::Member => "member",
    }
}

/// A role as a user types it.
pub fn parse_role(role: &str) -> Result<Role, RpcError> {
    match role.trim().to_ascii_lowercase().as_str() {
        "manager" | "folder-manager" => Ok(Role::Manager),
        "editor" | "item-manager" => Ok(Role::Editor),
        "member" | "folder-member" => Ok(Role::Member),
        other => Err(RpcError::new(
            ErrorCode::InvalidInput,
            format!("unknown role {other:?} (manager, editor or member)"),
        )),
    }
}

pub fn folder_info(f: &FolderSummary) -> m::FolderInfo {
    m::FolderInfo {
        id: f.id.to_hex(),
        name: f.name.clone(),
        role: f.role.map_or("none", role_name).into(),
        items: f.items,
        trashed: f.trashed,
    }
}

pub fn item_view(r: &Replica, folder: &SpaceId, item: &Item) -> m::ItemView {
    m::ItemView {
        id: item.id.to_hex(),
        folder: r.folder_name(folder),
        folder_id: folder.to_hex(),
        item_type: item.item_type.as_str().into(),
        name: item.name.clone(),
        fields: item.fields.clone().into(),
        urls: item.urls.clone(),
        created_ms: item.created_ms,
        updated_ms: item.updated_ms,
        trashed_ms: item.trashed_ms,
        conflicts: item.conflicts.clone(),
        kept_from_trash: item.kept_from_trash,
        secret_fields: item
            .fields
            .keys()
            .filter(|f| item.item_type.is_secret(f))
            .cloned()
            .collect(),
        labels: labels(&item.fields),
    }
}

/// Display titles of the custom fields among `fields` (the schema's word).
fn labels(fields: &coffer_crdt::Fields) -> std::collections::BTreeMap<String, String> {
    fields
        .keys()
        .filter(|k| coffer_crdt::schema::parse_custom_key(k).is_some())
        .map(|k| (k.clone(), coffer_crdt::schema::field_label(k).to_owned()))
        .collect()
}

pub fn item_summary(r: &Replica, folder: &SpaceId, item: &ItemHead) -> m::ItemSummary {
    summary_in(r.folder_name(folder), item)
}

/// [`item_summary`] with its folder's name already read (a listing reads
/// each folder's once, not once per item).
pub fn summary_in(folder: String, item: &ItemHead) -> m::ItemSummary {
    m::ItemSummary {
        id: item.id.to_hex(),
        folder,
        item_type: item.item_type.as_str().into(),
        name: item.name.clone(),
        username: item.username.as_deref().map(str::to_string),
        urls: item.urls.iter().map(|u| u.to_string()).collect(),
        has_totp: item.has_totp,
        updated_ms: item.updated_ms,
        trashed_ms: item.trashed_ms,
        archived: item.archived,
        conflict: item.conflict,
    }
}

/// Listings are sorted by folder, then name (case-insensitive), then id.
pub fn sort_summaries(list: &mut [m::ItemSummary]) {
    list.sort_by(|a, b| {
        (a.folder.to_lowercase(), a.name.to_lowercase(), &a.id).cmp(&(
            b.folder.to_lowercase(),
            b.name.to_lowercase(),
            &b.id,
        ))
    });
}

pub fn history_entry(h: HistoryItem) -> m::HistoryEntry {
    let secret_fields = h
        .item
        .fields
        .keys()
        .filter(|f| h.item.item_type.is_secret(f))
        .cloned()
        .collect();
    m::HistoryEntry {
        secret_fields,
        labels: labels(&h.item.fields),
        time_ms: h.time_ms,
        device: h.device.map(|d| d.to_hex()),
        device_name: h.device_name,
        user: h.user.map(|u| u.to_string()),
        user_name: h.user_name,
        name: h.item.name,
        fields: h.item.fields.into(),
        urls: h.item.urls,
        trashed: h.item.trashed_ms.is_some(),
        changed: h.changed,
    }
}

pub fn team_info(t: TeamSummary) -> m::TeamInfo {
    m::TeamInfo {
        team_id: t.id.to_hex(),
        name: t.name,
        founder: t.founder.map(|u| u.to_string()),
        admins: t.admins.iter().map(ToString::to_string).collect(),
        users: t.users,
        groups: t.groups,
        devices: t.devices,
        me: t.me.map(|u| u.to_string()),
        admin: t.admin,
    }
}

/// A user as `user.list` shows them: `seen` is the last contact this
/// device had with each peer (its own devices count as seen `now_ms`).
pub fn user_info(
    r: &Replica,
    u: UserSummary,
    seen: &BTreeMap<DeviceId, i64>,
    now_ms: i64,
) -> m::UserInfo {
    let me = r.device();
    let device_list: Vec<m::UserDevice> = u
        .devices
        .iter()
        .map(|d| m::UserDevice {
            device_id: d.to_hex(),
            name: r.device_name(d),
            last_seen_ms: if *d == me {
                Some(now_ms)
            } else {
                seen.get(d).copied()
            },
            this_device: *d == me,
        })
        .collect();
    m::UserInfo {
        email: u.user.to_string(),
        name: u.name,
        admin: u.admin,
        founder: u.founder,
        groups: u.groups,
        devices: u.devices.len(),
        joined_ms: u.joined_ms,
        last_seen_ms: device_list.iter().filter_map(|d| d.last_seen_ms).max(),
        device_list,
        me: u.me,
    }
}

pub fn team_change(r: &Replica, c: &TeamChange) -> m::TeamChangeResult {
    m::TeamChangeResult {
        rotated: c.rotated.iter().map(|f| r.folder_name(f)).collect(),
        rewrapped: Vec::new(),
    }
}

pub fn folder_members(f: FolderMembers) -> m::FolderMembersResult {
    m::FolderMembersResult {
        folder_id: f.folder.to_hex(),
        name: f.name,
        team_id: f.team.map(|t| t.to_hex()),
        members: f
            .members
            .into_iter()
            .map(|e| {
                let (kind, name) = match e.principal {
                    Principal::User(u) => ("user", u.to_string()),
                    Principal::Group(g) => ("group", g),
                    Principal::Device(d) => ("device", d.to_hex()),
                };
                m::FolderMember {
                    kind: kind.into(),
                    name,
                    role: role_name(e.role).into(),
                }
            })
            .collect(),
        devices: f
            .devices
            .into_iter()
            .map(|d| m::FolderMemberDevice {
                device_id: d.device.to_hex(),
                user: d.user.map(|u| u.to_string()),
                role: role_name(d.role).into(),
                has_key: d.has_key,
            })
            .collect(),
        epochs: f.epochs,
    }
}

/// A replica event as subscribers see it (`None`: not shown to them).
pub fn event(e: ReplicaEvent) -> Option<Event> {
    Some(match e {
        ReplicaEvent::ItemChanged {
            folder,
            item,
            change,
        } => Event::ItemChanged {
            folder_id: folder.to_hex(),
            item_id: item.to_hex(),
            action: match change {
                ItemChange::Added => "added",
                ItemChange::Edited => "edited",
                ItemChange::Trashed => "trashed",
                ItemChange::Restored => "restored",
                ItemChange::Deleted => "deleted",
                ItemChange::Synced => "synced",
            }
            .into(),
        },
        ReplicaEvent::FolderChanged { folder } => Event::FolderChanged {
            folder_id: folder.to_hex(),
        },
        ReplicaEvent::LockChanged { locked, reason } => Event::LockState {
            locked,
            reason: match reason {
                LockReason::Created => "init",
                LockReason::Pin => "pin",
                LockReason::Request => "request",
                LockReason::Idle => "idle",
            }
            .into(),
        },
        ReplicaEvent::Received { peer, space, new } => Event::SyncProgress {
            device_id: peer.to_hex(),
            folder_id: space.to_hex(),
            received: new,
            caught_up: false,
        },
        ReplicaEvent::CaughtUp { peer, space } => Event::SyncProgress {
            device_id: peer.to_hex(),
            folder_id: space.to_hex(),
            received: 0,
            caught_up: true,
        },
        ReplicaEvent::TeamChanged => return None,
    })
}
