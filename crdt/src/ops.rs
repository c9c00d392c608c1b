//! The plaintext (signed) payloads of control envelopes: folder membership
//! ops ([`Kind::Membership`]) and team roster ops ([`Kind::Roster`]).
//!
//! Control ops carry no secrets in the clear: folder keys travel only as
//! sealed boxes ([`KeyWrap`]) and chained epoch keys ([`ChainLink`]), so a
//! locked peer (or a keyless relay) can validate and forward them.
//! Decoding is canonical (re-encoding must give the same bytes) and bounded.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::envelope::Kind;
use crate::ids::{DeviceId, EnvelopeId, SpaceId};

/// Most key wraps, members or cutoff entries one op may carry (a rotation
/// wraps the key for every member device: about 115 bytes each, so 8,192
/// fit in one envelope).
pub const MAX_OP_ENTRIES: usize = 8192;
/// Longest user id (email), group, team or person name (bytes).
pub const MAX_NAME: usize = 256;
/// Longest device name (bytes): it fits a table column.
pub const MAX_DEVICE_NAME: usize = 64;

/// A member's role in a folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Folder Manager: the folder, its members and its items.
    Manager,
    /// Item Manager: view, add, edit, delete items.
    Editor,
    /// Folder Member: use items only.
    Member,
}

impl Role {
    pub fn can_write_items(self) -> bool {
        matches!(self, Role::Manager | Role::Editor)
    }

    pub fn can_manage(self) -> bool {
        self == Role::Manager
    }

    /// Larger is more powerful.
    pub fn strength(self) -> u8 {
        match self {
            Role::Manager => 3,
            Role::Editor => 2,
            Role::Member => 1,
        }
    }
}

/// A user of the team, named by their (lower-case) email address.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UserId(pub String);

impl UserId {
    /// Normalises an email address (trimmed, lower-case); `None` if it is not one.
    pub fn new(email: &str) -> Option<UserId> {
        let e = email.trim().to_lowercase();
        let ok = e.len() <= MAX_NAME
            && e.contains('@')
            && !e.starts_with('@')
            && !e.ends_with('@')
            && !e.chars().any(char::is_whitespace);
        ok.then_some(UserId(e))
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({})", self.0)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who a folder grant names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Principal {
    /// One device (personal folders; devices not in a team roster).
    Device(DeviceId),
    /// A user of the team roster: all their unrevoked devices.
    User(UserId),
    /// A user group of the team roster: all its users' devices.
    Group(String),
}

/// A folder key sealed to one device's X25519 key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyWrap {
    pub device: DeviceId,
    #[serde(with = "serde_bytes")]
    pub sealed: Vec<u8>,
}

/// An earlier epoch's key, encrypted under the key of the epoch that carries
/// this link, so holders of the newer key can read older content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainLink {
    pub epoch: EnvelopeId,
    #[serde(with = "serde_bytes")]
    pub sealed: Vec<u8>,
}

/// The last envelope of one device's chain in one space that a remover had
/// seen. Naming the envelope, not only its seq, means a fork signed later at
/// an old seq is not "seen": only that envelope and its own ancestors are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CutoffPoint {
    pub seq: u64,
    pub id: EnvelopeId,
}

/// {device -> last envelope seen} of one space: the remover's view.
pub type Cutoff = BTreeMap<DeviceId, CutoffPoint>;
/// Cutoffs per space (roster removals reach every folder).
pub type Cutoffs = BTreeMap<SpaceId, Cutoff>;

/// A folder membership op (payload of a [`Kind::Membership`] envelope).
///
/// Variant order is part of the wire format: append only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipOp {
    /// Founds the folder: its author's device becomes Folder Manager (rank
    /// [`crate::state::FOLDER_CREATOR_RANK`]); this envelope's id names the
    /// first key epoch. The folder's id is derived from the author and this
    /// op ([`crate::space::space_id_for`]), so it has exactly one founding,
    /// and so does its `team`: the roster whose users and groups may be
    /// its members (none for a personal folder).
    Found {
        nonce: [u8; 16],
        wraps: Vec<KeyWrap>,
        exchange: [u8; 32],
        team: Option<SpaceId>,
    },
    /// Adds a principal with a role, or raises its role. `wraps` hand the
    /// key of `epoch` to the new member's devices; `exchange` is the
    /// X25519 key of a [`Principal::Device`] that no roster describes.
    Grant {
        principal: Principal,
        role: Role,
        exchange: Option<[u8; 32]>,
        /// The epoch whose key `wraps` carry (the author's current epoch).
        epoch: Option<EnvelopeId>,
        wraps: Vec<KeyWrap>,
    },
    /// Removes a principal (`to: None`) or demotes it (`to: Some(lower role)`).
    /// `cutoff` is the folder content the remover had seen.
    Remove {
        principal: Principal,
        to: Option<Role>,
        cutoff: Cutoff,
    },
    /// Starts a new key epoch named by this envelope's id. `wraps` must only
    /// name current member devices; `chain` encrypts the previous epoch
    /// key(s) under the new key; `cutoffs` supplies this folder's cutoff for
    /// roster removals whose author did not hold the folder.
    Rotate {
        wraps: Vec<KeyWrap>,
        chain: Vec<ChainLink>,
        cutoffs: Vec<(EnvelopeId, Cutoff)>,
    },
    /// Hands an existing epoch's key to member devices that lack it.
    Rewrap {
        epoch: EnvelopeId,
        wraps: Vec<KeyWrap>,
    },
    /// Binds a folder founded outside any team to `team` (a personal folder
    /// being shared in place): by a Folder Manager, once.
    BindTeam { team: SpaceId },
    /// Deletes the folder for every member (`coffer folder rm` by a Folder
    /// Manager or team admin): every replica stops showing it and writes
    /// nothing more to it. Refused on a folder founded outside any team (a
    /// personal folder). Voided by any concurrent removal that took its
    /// author's right to delete, whatever its cutoffs (fail closed: see
    /// `docs/security.md` §5); no op undoes one that stands. Its
    /// envelopes are kept and forwarded like any others, so members
    /// offline now learn of it later.
    Delete,
}

/// A team roster op (payload of a [`Kind::Roster`] envelope).
///
/// Variant order is part of the wire format: append only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RosterOp {
    /// Founds the team: `founder` is its founding admin (rank 0), the
    /// author's device its first device (with its X25519 `exchange` key and
    /// the Ed25519 `transport` key it connects with). The team's id is
    /// derived from the author and this op.
    Found {
        nonce: [u8; 16],
        name: String,
        founder: UserId,
        exchange: [u8; 32],
        transport: [u8; 32],
    },
    AddUser {
        user: UserId,
    },
    RemoveUser {
        user: UserId,
        cutoffs: Cutoffs,
    },
    /// Adds a device to a user (by an admin, or by one of the user's own
    /// devices for its first few). `proof` is the new device's signature
    /// over the team, the user and both keys ([`device_proof_message`]);
    /// `transport_proof` the transport key's over the team, the user, the
    /// device and its exchange key ([`transport_proof_message`]), so nobody
    /// binds a transport key they do not hold (another device's) to theirs.
    AddDevice {
        user: UserId,
        device: DeviceId,
        exchange: [u8; 32],
        transport: [u8; 32],
        #[serde(with = "serde_bytes")]
        proof: Vec<u8>,
        #[serde(with = "serde_bytes")]
        transport_proof: Vec<u8>,
    },
    RevokeDevice {
        device: DeviceId,
        cutoffs: Cutoffs,
    },
    AddAdmin {
        user: UserId,
    },
    RemoveAdmin {
        user: UserId,
        cutoffs: Cutoffs,
    },
    AddToGroup {
        group: String,
        user: UserId,
    },
    RemoveFromGroup {
        group: String,
        user: UserId,
        cutoffs: Cutoffs,
    },
    /// The founder hands the founding-admin role to another admin.
    HandOver {
        to: UserId,
    },
    /// Creates an empty user group (groups also appear with their first member).
    CreateGroup {
        group: String,
    },
    /// Names a device (`coffer join --name`, `coffer device rename`): by
    /// a device of the same user, or by a team admin. Every replica shows
    /// the name of the last one in the control order.
    NameDevice {
        device: DeviceId,
        name: String,
    },
    /// Deletes a user group (admins only): a removal of every member from
    /// every folder the group reached, so those folders' keys rotate. The
    /// name is not used again (a folder grant to it must never come back
    /// to life for a new group of that name).
    DeleteGroup {
        group: String,
        cutoffs: Cutoffs,
    },
    /// Renames the team (admins only).
    RenameTeam {
        name: String,
    },
    /// A user's display name, and when they joined by the admitting
    /// device's clock (written with `AddUser`, and with the team for its
    /// founder): by a team admin, or by the user. The first one after
    /// the user was added sets `joined_ms`; the last one sets the name.
    NameUser {
        user: UserId,
        name: String,
        joined_ms: i64,
    },
    /// Adds a keyless relay (admins only): an always-on peer that holds
    /// and forwards the team's envelopes without any key. It is named by
    /// its Ed25519 transport key (its libp2p identity; its device id in
    /// the roster is that key), and `addrs` are the multiaddrs devices
    /// dial it at. Adding it again replaces its addresses.
    AddRelay {
        transport: [u8; 32],
        addrs: Vec<String>,
    },
    /// Removes a relay (admins only): devices stop syncing with it, and
    /// the relay, seeing the op, drops every envelope of the team.
    RemoveRelay {
        transport: [u8; 32],
    },
}

/// Most addresses one [`RosterOp::AddRelay`] may carry, and the longest.
pub const MAX_RELAY_ADDRS: usize = 8;
pub const MAX_RELAY_ADDR_LEN: usize = 256;

impl RosterOp {
    /// An [`RosterOp::AddDevice`] for `device`'s keys, with its proof: the
    /// new device signs it (during enrolment, on the joining side).
    pub fn add_device(
        team: &SpaceId,
        user: UserId,
        device: &crate::crypto::DeviceKeys,
        transport_seed: &[u8; 32],
    ) -> RosterOp {
        let exchange = device.exchange_public();
        let transport = crate::crypto::ed25519_public(transport_seed);
        let proof = device
            .sign(&device_proof_message(team, &user, &exchange, &transport))
            .to_vec();
        let transport_proof = crate::crypto::sign_with_seed(
            transport_seed,
            &transport_proof_message(team, &user, &device.device_id(), &exchange),
        )
        .to_vec();
        RosterOp::AddDevice {
            user,
            device: device.device_id(),
            exchange,
            transport,
            proof,
            transport_proof,
        }
    }
}

/// What a device signs to prove it holds the keys an [`RosterOp::AddDevice`]
/// names, for that user of that team.
pub fn device_proof_message(
    team: &SpaceId,
    user: &UserId,
    exchange: &[u8; 32],
    transport: &[u8; 32],
) -> Vec<u8> {
    let mut m = b"coffer/device-proof/v1\0".to_vec();
    m.extend_from_slice(&team.0);
    m.extend_from_slice(&(user.0.len() as u32).to_be_bytes());
    m.extend_from_slice(user.0.as_bytes());
    m.extend_from_slice(exchange);
    m.extend_from_slice(transport);
    m
}

/// What a transport key signs to prove it is that device's, for that
/// user of that team.
pub fn transport_proof_message(
    team: &SpaceId,
    user: &UserId,
    device: &DeviceId,
    exchange: &[u8; 32],
) -> Vec<u8> {
    let mut m = b"coffer/transport-proof/v1\0".to_vec();
    m.extend_from_slice(&team.0);
    m.extend_from_slice(&(user.0.len() as u32).to_be_bytes());
    m.extend_from_slice(user.0.as_bytes());
    m.extend_from_slice(&device.0);
    m.extend_from_slice(exchange);
    m
}

/// Either kind of control op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlOp {
    Membership(MembershipOp),
    Roster(RosterOp),
}

/// Why a control payload did not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpDecodeError {
    /// Not a control kind, not postcard, or trailing bytes.
    #[error("malformed control op")]
    Malformed,
    /// Decodes, but is not the canonical encoding.
    #[error("non-canonical control op")]
    NonCanonical,
    /// Over a size bound (entries, names).
    #[error("control op over its size bounds")]
    TooLarge,
}

fn decode_exact<T: Serialize + for<'a> Deserialize<'a>>(bytes: &[u8]) -> Result<T, OpDecodeError> {
    let (value, rest): (T, _) =
        postcard::take_from_bytes(bytes).map_err(|_| OpDecodeError::Malformed)?;
    if !rest.is_empty() {
        return Err(OpDecodeError::Malformed);
    }
    let again = postcard::to_stdvec(&value).map_err(|_| OpDecodeError::Malformed)?;
    if again != bytes {
        return Err(OpDecodeError::NonCanonical);
    }
    Ok(value)
}

impl ControlOp {
    /// Decodes a control payload of the given envelope kind. Never panics.
    pub fn decode(kind: Kind, bytes: &[u8]) -> Result<ControlOp, OpDecodeError> {
        let op = match kind {
            Kind::Membership => ControlOp::Membership(decode_exact(bytes)?),
            Kind::Roster => ControlOp::Roster(decode_exact(bytes)?),
            Kind::Content | Kind::Usage => return Err(OpDecodeError::Malformed),
        };
        if !op.within_bounds() {
            return Err(OpDecodeError::TooLarge);
        }
        Ok(op)
    }

    pub fn kind(&self) -> Kind {
        match self {
            ControlOp::Membership(_) => Kind::Membership,
            ControlOp::Roster(_) => Kind::Roster,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        match self {
            ControlOp::Membership(op) => postcard::to_stdvec(op),
            ControlOp::Roster(op) => postcard::to_stdvec(op),
        }
        .expect("serialising to a Vec cannot fail")
    }

    /// Removals sort first among concurrent ops and carry cutoffs.
    pub fn is_removal(&self) -> bool {
        matches!(
            self,
            ControlOp::Membership(MembershipOp::Remove { .. })
                | ControlOp::Roster(
                    RosterOp::RemoveUser { .. }
                        | RosterOp::RevokeDevice { .. }
                        | RosterOp::RemoveAdmin { .. }
                        | RosterOp::RemoveFromGroup { .. }
                        | RosterOp::DeleteGroup { .. }
                )
        )
    }

    fn within_bounds(&self) -> bool {
        let name_ok = |s: &str| s.len() <= MAX_NAME;
        let user_ok = |u: &UserId| name_ok(&u.0);
        let cutoffs_ok = |c: &Cutoffs| {
            c.len() <= MAX_OP_ENTRIES && c.values().all(|x| x.len() <= MAX_OP_ENTRIES)
        };
        let principal_ok = |p: &Principal| match p {
            Principal::Device(_) => true,
            Principal::User(u) => user_ok(u),
            Principal::Group(g) => name_ok(g),
        };
        match self {
            ControlOp::Membership(op) => match op {
                MembershipOp::Found { wraps, .. } => wraps.len() <= MAX_OP_ENTRIES,
                MembershipOp::Grant {
                    principal, wraps, ..
                } => principal_ok(principal) && wraps.len() <= MAX_OP_ENTRIES,
                MembershipOp::Remove {
                    principal, cutoff, ..
                } => principal_ok(principal) && cutoff.len() <= MAX_OP_ENTRIES,
                MembershipOp::Rotate {
                    wraps,
                    chain,
                    cutoffs,
                } => {
                    wraps.len() <= MAX_OP_ENTRIES
                        && chain.len() <= MAX_OP_ENTRIES
                        && cutoffs.len() <= MAX_OP_ENTRIES
                        && cutoffs.iter().all(|(_, c)| c.len() <= MAX_OP_ENTRIES)
                }
                MembershipOp::Rewrap { wraps, .. } => wraps.len() <= MAX_OP_ENTRIES,
                MembershipOp::BindTeam { .. } | MembershipOp::Delete => true,
            },
            ControlOp::Roster(op) => match op {
                RosterOp::Found { name, founder, .. } => name_ok(name) && user_ok(founder),
                RosterOp::AddDevice {
                    user,
                    proof,
                    transport_proof,
                    ..
                } => user_ok(user) && proof.len() == 64 && transport_proof.len() == 64,
                RosterOp::AddUser { user }
                | RosterOp::AddAdmin { user }
                | RosterOp::HandOver { to: user } => user_ok(user),
                RosterOp::RemoveUser { user, cutoffs }
                | RosterOp::RemoveAdmin { user, cutoffs } => user_ok(user) && cutoffs_ok(cutoffs),
                RosterOp::RevokeDevice { cutoffs, .. } => cutoffs_ok(cutoffs),
                RosterOp::AddToGroup { group, user } => name_ok(group) && user_ok(user),
                RosterOp::CreateGroup { group } => name_ok(group),
                RosterOp::NameDevice { name, .. } => name.len() <= MAX_DEVICE_NAME,
                RosterOp::DeleteGroup { group, cutoffs } => name_ok(group) && cutoffs_ok(cutoffs),
                RosterOp::RenameTeam { name } => name_ok(name),
                RosterOp::AddRelay { addrs, .. } => {
                    addrs.len() <= MAX_RELAY_ADDRS
                        && addrs.iter().all(|a| a.len() <= MAX_RELAY_ADDR_LEN)
                }
                RosterOp::RemoveRelay { .. } => true,
                RosterOp::NameUser { user, name, .. } => user_ok(user) && name_ok(name),
                RosterOp::RemoveFromGroup {
                    group,
                    user,
                    cutoffs,
                } => name_ok(group) && user_ok(user) && cutoffs_ok(cutoffs),
            },
        }
    }

    /// Whether this op founds its space (a folder's or the team's first op).
    pub fn is_founding(&self) -> bool {
        matches!(
            self,
            ControlOp::Membership(MembershipOp::Found { .. })
                | ControlOp::Roster(RosterOp::Found { .. })
        )
    }

    /// The cutoff this op gives for `space`, if it is a removal that names one.
    pub fn cutoff_for(&self, space: &SpaceId, folder: &SpaceId) -> Option<&Cutoff> {
        match self {
            ControlOp::Membership(MembershipOp::Remove { cutoff, .. }) => {
                (space == folder).then_some(cutoff)
            }
            ControlOp::Roster(
                RosterOp::RemoveUser { cutoffs, .. }
                | RosterOp::RevokeDevice { cutoffs, .. }
                | RosterOp::RemoveAdmin { cutoffs, .. }
                | RosterOp::RemoveFromGroup { cutoffs, .. }
                | RosterOp::DeleteGroup { cutoffs, .. },
            ) => cutoffs.get(space),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn roundtrip_and_canonical() {
        let op = ControlOp::Roster(RosterOp::AddToGroup {
            group: "ops".into(),
            user: UserId::new("A@b.c").unwrap(),
        });
        let bytes = op.encode();
        assert_eq!(ControlOp::decode(Kind::Roster, &bytes), Ok(op));
        assert!(
            ControlOp::decode(Kind::Membership, &bytes).is_err(),
            "a roster op is not a membership op"
        );
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            ControlOp::decode(Kind::Roster, &long),
            Err(OpDecodeError::Malformed)
        );
        assert!(UserId::new("no-at").is_none());
        assert_eq!(UserId::new(" X@Y.z ").unwrap().0, "x@y.z");
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = ControlOp::decode(Kind::Membership, &bytes);
            let _ = ControlOp::decode(Kind::Roster, &bytes);
        }
    }
}
