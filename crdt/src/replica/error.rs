//! What a replica command can refuse, each variant saying what went wrong.

use crate::folder::FolderError;
use crate::ids::{DeviceId, SpaceId};
use crate::ops::{Role, UserId};
use crate::schema::SchemaError;
use crate::space::SpaceError;

/// What a command of [`crate::Replica`] may need that is not there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    /// Changing items: Item Manager or Folder Manager.
    Writer,
    /// Changing a folder's members: Folder Manager (or a team admin).
    Manager,
    /// A team admin.
    Admin,
    /// Renaming or deleting a folder: Folder Manager (or a team admin).
    FolderManager,
}

/// Why a replica command was refused; nothing was written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplicaError {
    /// The device's keys are not loaded (the vault is locked).
    #[error("vault is locked")]
    Locked,
    /// The keys given to unlock belong to another device.
    #[error("these keys belong to device {got}, not this device {want}")]
    WrongKeys { want: DeviceId, got: DeviceId },
    /// No folder matches.
    #[error("no folder named {query:?} (see `coffer folder ls`)")]
    NoSuchFolder { query: String },
    /// No item matches.
    #[error("no {}item matches {query:?} (see `coffer {}`)", if *.trash { "trashed " } else { "" }, if *.trash { "ls --trash" } else { "ls" })]
    NoSuchItem { query: String, trash: bool },
    /// More than one thing matches.
    #[error("{what} matches more than one: {}", candidates.join(", "))]
    Ambiguous {
        what: String,
        candidates: Vec<String>,
    },
    /// A folder of that name exists already.
    #[error("a folder named {name:?} already exists")]
    FolderExists { name: String },
    /// A name that is empty, too long, or holds a character not allowed there.
    #[error("invalid name {name:?}: {why}")]
    BadName { name: String, why: &'static str },
    /// An empty URL given to add or edit an item (an empty list, not an
    /// empty URL, is how every URL is removed).
    #[error("an empty URL: give a URL, or remove every URL with `coffer edit ITEM --clear-urls`")]
    EmptyUrl,
    /// An item's fields break the schema.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// An item edit the document refuses (too large, no such item...).
    #[error("{0}")]
    Item(FolderError),
    /// A page origin nothing is filled into (`origin.rs`).
    #[error(transparent)]
    Origin(#[from] crate::origin::OriginError),
    /// The item's URLs do not match the page (origin binding): nothing of
    /// it leaves the vault for that page.
    #[error("item {item} is not for {origin}: none of its URLs matches that page's scheme, port and registrable domain")]
    NotForThisOrigin { item: String, origin: String },
    /// Only login items are filled into pages.
    #[error("{item} is not a login: only logins are filled into pages")]
    NotALogin { item: String },
    /// An edit that changes nothing.
    #[error("nothing to change")]
    NothingToChange,
    /// `conflicts pick` of a field that holds no concurrent values.
    #[error(
        "{field:?} of this item holds no concurrent values to pick from (see `coffer conflicts`)"
    )]
    NoConflict { field: String },
    /// `conflicts pick` of a value number that is not listed.
    #[error("there is no value {choice} to pick: {field:?} holds {count} (1 is the one shown, `coffer conflicts` numbers the rest)")]
    NoSuchChoice {
        field: String,
        choice: usize,
        count: usize,
    },
    /// This device's role in the folder does not allow it.
    #[error("permission denied: your role in this folder is {}; {}", role_title(*.role), match .needs {
        Needs::Writer => "changing items needs the Item Manager (editor) or Folder Manager role",
        Needs::Manager => "changing a folder's members needs the Folder Manager role",
        Needs::Admin => "this needs a team admin",
        Needs::FolderManager => "renaming or deleting a folder needs the Folder Manager role (a member leaves with `coffer folder rm`)",
    })]
    NotAllowed { role: Option<Role>, needs: Needs },
    /// Only a team admin may do this.
    #[error("permission denied: only a team admin may {action}")]
    NotAdmin { action: &'static str },
    /// The op would not take effect under the acceptance rule (a rank too
    /// weak, the last manager leaving, ...): the rule's own words.
    #[error("refused: {0}")]
    Refused(String),
    /// The device is in no team.
    #[error("this device is in no team: run `coffer team create NAME`, or `coffer join CODE`")]
    NoTeam,
    /// The device is in a team already.
    #[error("this device is already in team {name:?}")]
    AlreadyInTeam { name: String },
    #[error("no user {user} in the team (see `coffer user ls`)")]
    NoSuchUser { user: UserId },
    #[error("no group {group:?} (see `coffer group ls`)")]
    NoSuchGroup { group: String },
    #[error("group {group:?} already exists")]
    GroupExists { group: String },
    /// A group of that name was deleted: its name is not used again, so no
    /// folder shared with the old group reaches a new one.
    #[error("group {group:?} was deleted and its name is not used again: pick another name")]
    GroupDeleted { group: String },
    /// The founding admin cannot leave: the team always has one.
    #[error("you are the team's founding admin: the founder cannot leave the team; {}", if *.other_admins == 0 { "you are its last admin: promote someone (`coffer user promote USER`), hand the team over (`coffer team handover USER`), then leave" } else { "hand the team over to another admin first (`coffer team handover USER`)" })]
    FounderCannotLeave { other_admins: usize },
    /// Only the founding admin hands the team over.
    #[error("permission denied: only the team's founding admin may hand the team over")]
    NotFounder,
    /// The principal holds no grant in the folder.
    #[error("{principal} is not a member of this folder")]
    NotAMember { principal: String },
    /// No such device (team roster, or paired).
    #[error("device {device} is neither in the team nor trusted here")]
    NoSuchDevice { device: String },
    /// The folder belongs to another team than this device's.
    #[error("the folder {folder} belongs to another team")]
    OtherTeam { folder: SpaceId },
    /// The folder is shared with a paired device outside the team.
    #[error("the folder is shared with a paired device outside the team: revoke it first (`coffer device revoke`)")]
    PairedOutsideTeam,
    /// A roster sent by an inviter that does not list this device, or does not decode.
    #[error("the team roster is invalid: {0}")]
    BadRoster(&'static str),
    /// This device was removed from the folder and added again since it
    /// opened it: reopened, nothing written; the retry works.
    #[error("this device was removed from the folder and added again since it was opened; nothing was written: run the command again")]
    StaleIncarnation,
    /// A personal folder cannot be deleted: the Personal folder (new items
    /// go there), or a folder founded outside any team by someone else
    /// (only its owner's devices may delete it: the acceptance rule).
    #[error("this personal folder cannot be deleted here: the Personal folder stays (rename it instead), and another user's personal folder is deleted only by its owner (you can leave it)")]
    PersonalFolder,
    /// `folder rm` of a folder that still holds items, without `force`.
    #[error("folder {name:?} still holds {items} item(s), trash included: move them out (`coffer mv ITEM FOLDER`) or pass --force to delete them with it")]
    FolderNotEmpty { name: String, items: usize },
    /// Leaving a folder this device's user reaches through a user group.
    #[error("you are a member of this folder through group {group:?}: a Folder Manager can take the group out (`coffer folder unshare`), or a team admin you out of the group")]
    LeaveThroughGroup { group: String },
    /// `mv` to the folder the item is in.
    #[error("the item is in folder {folder:?} already")]
    SameFolder { folder: String },
    /// A pairing request outside what pairing is for.
    #[error("{0}")]
    Pairing(&'static str),
    /// A key or envelope operation failed where it cannot for valid state.
    /// The team revoked this device or removed its user: writes would
    /// never be accepted.
    #[error("{}", .0.notice().unwrap_or_default())]
    NoLongerMember(super::Standing),

    /// A member added while another device changed the folder's key holds
    /// no copy of the new key until a Folder Manager's device re-wraps it.
    #[error("this device has not received folder {folder}'s current key yet (you were added while its key changed): it arrives when a Folder Manager's device syncs (`coffer sync`); nothing was written")]
    KeyNotYetReceived { folder: String },

    #[error("internal error: {0}")]
    Internal(String),
}

fn role_title(role: Option<Role>) -> &'static str {
    match role {
        Some(Role::Manager) => "Folder Manager",
        Some(Role::Editor) => "Item Manager",
        Some(Role::Member) => "Folder Member",
        None => "none",
    }
}

impl From<FolderError> for ReplicaError {
    fn from(e: FolderError) -> Self {
        match e {
            FolderError::NothingChanged => ReplicaError::NothingToChange,
            other => ReplicaError::Item(other),
        }
    }
}

impl From<SpaceError> for ReplicaError {
    fn from(e: SpaceError) -> Self {
        match e {
            SpaceError::Refused(why) => ReplicaError::Refused(why),
            SpaceError::StaleIncarnation { .. } => ReplicaError::StaleIncarnation,
            SpaceError::PermissionDenied => ReplicaError::NotAllowed {
                role: None,
                needs: Needs::Writer,
            },
            other => ReplicaError::Internal(other.to_string()),
        }
    }
}
