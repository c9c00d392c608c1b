//! Coffer's replicated vault core, sans-IO.
//!
//! What it is: the folder document model over Automerge ([`folder`]), the
//! signed envelope format ([`envelope`]), the key material and primitives
//! ([`crypto`]), the control ops of folders and the team roster ([`ops`]),
//! the membership state and the per-op rule ([`state`]), the acceptance rule
//! that decides which envelopes take effect ([`accept`]) and the per-space
//! state machine the daemon drives ([`space`]). `docs/security.md` states the
//! rules in words.
//!
//! What it is not: there is no networking, no file or socket access, no clock
//! and no OS randomness here. Time (`now_ms`), randomness (`rng`) and keys come
//! in as arguments, so every replica's behaviour is a pure function of its
//! inputs and can be tested deterministically. The daemon drives it.
//!
//! Principal types: [`Space`] (ingest envelopes, write ops, read the accepted
//! state), [`Envelope`], [`FolderDoc`], [`ops::ControlOp`], [`state::State`].

pub mod accept;
pub mod audit;
pub mod bounds;
pub mod crypto;
pub mod envelope;
pub mod folder;
pub mod ids;
pub mod ops;
pub mod origin;
pub mod replica;
pub mod schema;
pub mod space;
pub mod state;
pub mod sync_wire;
pub mod totp;

pub use accept::{ChangeMeta, Limits, Reason, RosterJudgements};
pub use crypto::{CryptoError, DeviceKeys, FolderKey};
pub use envelope::{ChangeHeader, DecodeError, Envelope, EnvelopeBody, Kind};
pub use folder::{
    Fields, FolderDoc, FolderError, HistoryEntry, Item, ItemEdit, ItemHead, ItemType, NewItem,
};
pub use ids::{DeviceId, EnvelopeId, ItemId, SpaceId};
pub use ops::{ControlOp, MembershipOp, Principal, Role, RosterOp, UserId};
pub use replica::{Effect, Event, Replica, ReplicaError};
pub use space::{IngestError, Outcome, Report, Space, SpaceError};
