//! JSON-RPC 2.0 envelopes, error codes and events.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::PROTOCOL_VERSION;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub jsonrpc: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    pub method: String,
    #[serde(default)]
    pub params: Value,
}

impl Request {
    pub fn new(id: u64, method: &str, params: Value) -> Self {
        Self {
            jsonrpc: "2.0".into(),
            id: Some(Value::from(id)),
            method: method.into(),
            params,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    pub jsonrpc: String,
    pub id: Value,
    /// Coffer extension: the daemon's protocol version.
    pub protocol: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
    /// Coffer extension: the team's notice to this device when it took the
    /// device out (revoked it, removed its user); clients show it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
}

impl Response {
    pub fn ok(id: Value, result: Value) -> Self {
        Self {
            jsonrpc: "2.0".into(),
            id,
            protocol: PROTOCOL_VERSION,
            result: Some(result),
            error: None,
            notice: None,
        }
    }

    pub fn err(id: Value, error: RpcError) -> Self {
        Self {
            jsonrpc: "2.0".into(),
            id,
            protocol: PROTOCOL_VERSION,
            result: None,
            error: Some(error),
            notice: None,
        }
    }

    /// The same response, carrying `notice` (see [`Response::notice`]).
    pub fn with_notice(mut self, notice: Option<String>) -> Self {
        self.notice = notice;
        self
    }
}

/// A JSON-RPC error object. `data` carries structured details (candidates of
/// an ambiguous name, seconds to wait after failed PIN attempts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code: code as i64,
            message: message.into(),
            data: None,
        }
    }

    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    pub fn kind(&self) -> Option<ErrorCode> {
        ErrorCode::from_code(self.code)
    }
}

/// Error codes: JSON-RPC's own, then Coffer's (1000+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    ParseError = -32700,
    InvalidRequest = -32600,
    MethodNotFound = -32601,
    InvalidParams = -32602,
    Internal = -32603,
    /// The vault is locked: unlock with the PIN first.
    Locked = 1001,
    /// No identity on this device yet: run `coffer init`.
    NotInitialized = 1002,
    AlreadyInitialized = 1003,
    NotFound = 1004,
    /// An item or folder reference matches more than one; `data.candidates`.
    Ambiguous = 1005,
    WrongPin = 1006,
    /// Too many failed PIN attempts; `data.retry_after_secs`.
    TooManyAttempts = 1007,
    /// Input the daemon refuses (bad TOTP secret, empty name, ...).
    InvalidInput = 1008,
    PermissionDenied = 1009,
    /// A message longer than [`crate::MAX_FRAME_BYTES`].
    TooLarge = 1010,
    /// A backup's passphrase (or a KDBX password) does not open the file.
    WrongPassphrase = 1011,
    /// Not an invite code, or one no open invite matches (wrong code,
    /// cancelled after failed attempts, inviter restarted).
    InviteInvalid = 1012,
    InviteExpired = 1013,
    /// The invite code was used already.
    InviteUsed = 1014,
    /// The inviter rejected the join.
    JoinRejected = 1015,
    /// The inviter could not be found or reached, or did not answer in time.
    InviterUnreachable = 1016,
    /// The team revoked this device or removed its user: no writes.
    NoLongerMember = 1017,
}

impl ErrorCode {
    pub fn from_code(code: i64) -> Option<ErrorCode> {
        use ErrorCode::*;
        [
            ParseError,
            InvalidRequest,
            MethodNotFound,
            InvalidParams,
            Internal,
            Locked,
            NotInitialized,
            AlreadyInitialized,
            NotFound,
            Ambiguous,
            WrongPin,
            TooManyAttempts,
            InvalidInput,
            PermissionDenied,
            TooLarge,
            WrongPassphrase,
            InviteInvalid,
            InviteExpired,
            InviteUsed,
            JoinRejected,
            InviterUnreachable,
            NoLongerMember,
        ]
        .into_iter()
        .find(|c| *c as i64 == code)
    }
}

/// Something that happened in the daemon, pushed to subscribers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// An item was added, edited, trashed or restored (`action`).
    ItemChanged {
        folder_id: String,
        item_id: String,
        action: String,
    },
    /// A folder was created or renamed.
    FolderChanged { folder_id: String },
    /// The vault was locked (`locked: true`, with the reason) or unlocked.
    LockState { locked: bool, reason: String },
    /// A peer device connected and passed the roster check.
    PeerUp { device_id: String, address: String },
    /// A peer device disconnected (or was cut off, with the reason).
    PeerDown { device_id: String, reason: String },
    /// Envelopes of a folder arrived from a peer: how many were new, and
    /// whether the peer says this device now holds all it had (`caught_up`).
    SyncProgress {
        device_id: String,
        folder_id: String,
        received: usize,
        caught_up: bool,
    },
}

/// A JSON-RPC notification (no id): how events travel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Notification {
    pub jsonrpc: String,
    pub method: String,
    pub params: Event,
}

impl Notification {
    pub fn event(event: Event) -> Self {
        Self {
            jsonrpc: "2.0".into(),
            method: "event".into(),
            params: event,
        }
    }
}

/// How far a long request (an import) has got; sent on the request's own
/// connection before its reply, only when the request asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// `store` while items are sealed and written.
    pub phase: String,
    pub done: u64,
    pub total: u64,
}

/// The JSON-RPC notification carrying a [`Progress`] (method `progress`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProgressNotification {
    pub jsonrpc: String,
    pub method: String,
    pub params: Progress,
}

impl ProgressNotification {
    pub fn new(progress: Progress) -> Self {
        Self {
            jsonrpc: "2.0".into(),
            method: "progress".into(),
            params: progress,
        }
    }
}

/// The JSON-RPC notification carrying a part of a streamed listing
/// (method `items`, see [`crate::methods::ItemListParams::stream`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ItemsNotification {
    pub jsonrpc: String,
    pub method: String,
    pub params: crate::methods::ItemsChunk,
}

impl ItemsNotification {
    /// Its method name.
    pub const METHOD: &'static str = "items";

    pub fn new(chunk: crate::methods::ItemsChunk) -> Self {
        Self {
            jsonrpc: "2.0".into(),
            method: Self::METHOD.into(),
            params: chunk,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_roundtrip() {
        for code in [
            ErrorCode::Locked,
            ErrorCode::ParseError,
            ErrorCode::TooLarge,
        ] {
            assert_eq!(ErrorCode::from_code(code as i64), Some(code));
        }
        assert_eq!(ErrorCode::from_code(7), None);
    }

    #[test]
    fn event_json_shape() {
        let n = Notification::event(Event::LockState {
            locked: true,
            reason: "idle".into(),
        });
        let json = serde_json::to_value(&n).unwrap();
        assert_eq!(json["method"], "event");
        assert_eq!(json["params"]["type"], "lock_state");
    }
}
