//! Coffer's replicated vault core, sans-IO.
//!
//! What it is: the folder document model over Automerge ([`folder`]), the
//! signed envelope format ([`envelope`]), the key material and primitives
//! ([`crypto`]) and the per-space acceptance state ([`space`]).
//!
//! What it is not: there is no networking, no file or socket access, no clock
//! and no OS randomness here. Time (`now_ms`), randomness (`rng`) and keys come
//! in as arguments, so every replica's behaviour is a pure function of its
//! inputs and can be tested deterministically. The daemon drives it.

pub mod crypto;
pub mod envelope;
pub mod folder;
pub mod ids;
pub mod space;

pub use crypto::{CryptoError, DeviceKeys, FolderKey};
pub use envelope::{DecodeError, Envelope, EnvelopeBody, Kind};
pub use folder::{FolderDoc, FolderError, HistoryEntry, Item, ItemEdit, ItemType};
pub use ids::{DeviceId, EnvelopeId, ItemId, SpaceId};
pub use space::{IngestError, Outcome, Role, Space, SpaceError};
