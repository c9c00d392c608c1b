//! Coffer's local protocol: JSON-RPC 2.0 over a Unix socket, one message per
//! line, and a blocking client.
//!
//! What it is: the wire types ([`wire`]), one typed method per request with
//! its params and result ([`methods`]), the line framing limits, the default
//! socket and data locations ([`paths`]), the [`Client`] the CLI uses, and
//! the process hardening both binaries run at start ([`process`]), and
//! `coffer doctor`'s decisions as a pure function of the daemon's facts
//! ([`doctor`]).
//!
//! What it is not: it knows nothing of Automerge, envelopes or keys; the
//! daemon translates between its vault and these plain types.

pub mod client;
pub mod doctor;
pub mod methods;
pub mod paths;
pub mod process;
pub mod wire;

pub use client::{Client, ClientError};
pub use methods::Method;
pub use wire::{
    ErrorCode, Event, ItemsNotification, Notification, Progress, ProgressNotification, Request,
    Response, RpcError,
};

/// Version of this protocol; sent in every response.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest request line the daemon accepts, in bytes.
pub const MAX_FRAME_BYTES: usize = 1 << 20;

/// Longest reply or event line the client accepts: a listing of a large vault
/// is several MiB.
pub const MAX_REPLY_BYTES: usize = 256 << 20;
