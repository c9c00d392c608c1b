//! The native messaging host: what stands between the browser extension
//! and the daemon. The browser starts `coffer-native-host` and speaks to it
//! on stdin/stdout with its native messaging framing (a 4-byte length in
//! native byte order, then that many bytes of JSON; tokio-util's
//! [`LengthDelimitedCodec`]). The host
//!
//! - checks who called it ([`caller`]): the browser names the calling
//!   extension (Chromium: its origin as the first argument; Firefox: the
//!   manifest's path, then the extension's id), and only Coffer's own
//!   extension ids, the ones `coffer browser install` writes into the host
//!   manifests, are served;
//! - forwards only the four `browser.*` methods
//!   ([`coffer_ipc::methods::BROWSER_METHODS`]), their params re-encoded
//!   from their typed form ([`parse_request`]); anything else of the IPC
//!   API is refused here, and the daemon decides the rest (origin binding);
//! - bounds what it reads: a message from the browser over
//!   [`MAX_REQUEST_BYTES`] ends the session, one request at a time.
//!
//! Wire form of a request: `{"id": N, "method": "browser.find", "params":
//! {...}}`; of a reply: `{"id": N, "result": ...}` or `{"id": N, "error":
//! {"code": "locked", "message": "..."}}` ([`ErrorKind`]).

use std::future::Future;

use bytes::Bytes;
use coffer_ipc::methods::{self as m, Method};
use coffer_ipc::{ClientError, ErrorCode};
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
use zeroize::Zeroize;

/// The host's name in its manifests (`NativeMessagingHosts/NAME.json`),
/// the name the extension passes to `connectNative`.
pub const HOST_NAME: &str = "dev.coffer.host";
/// The Chromium extension's id: fixed by the public `key` in
/// `browser/manifest.json` (the SHA-256 of the key, `a`-`p` for hex).
pub const CHROMIUM_EXTENSION_ID: &str = "ljbebaglikapmoonnjailinnjchcfhfh";
/// The Firefox extension's id (`browser_specific_settings.gecko.id`).
pub const FIREFOX_EXTENSION_ID: &str = "browser@coffer.invalid";
/// The largest message the browser may send; a larger one ends the session.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// The largest message a browser accepts from a host (Chromium's limit).
pub const MAX_REPLY_BYTES: usize = 1024 * 1024;

/// Chromium's origin of the one extension allowed to call.
pub fn chromium_origin() -> String {
    format!("chrome-extension://{CHROMIUM_EXTENSION_ID}/")
}

/// Who started the host, as the browser said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A Chromium-family browser, with the calling extension's origin.
    Chromium(String),
    /// Firefox, with the calling extension's id.
    Firefox(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CallerError {
    #[error("not started by a browser: no calling extension named (the browser starts this program; see `coffer browser install`)")]
    NoCaller,
    #[error("refusing extension {0}: only Coffer's own extension may use this host")]
    NotAllowed(String),
}

/// The calling extension, from the host's arguments (`args[0]` is the
/// program): refused unless it is Coffer's own.
pub fn caller(args: &[String]) -> Result<Caller, CallerError> {
    match (args.get(1), args.get(2)) {
        (Some(origin), _) if origin.starts_with("chrome-extension://") => {
            if *origin == chromium_origin() {
                Ok(Caller::Chromium(origin.clone()))
            } else {
                Err(CallerError::NotAllowed(origin.clone()))
            }
        }
        // Firefox: the manifest's path, then the extension's id.
        (Some(_manifest), Some(id)) => {
            if id == FIREFOX_EXTENSION_ID {
                Ok(Caller::Firefox(id.clone()))
            } else {
                Err(CallerError::NotAllowed(id.clone()))
            }
        }
        _ => Err(CallerError::NoCaller),
    }
}

/// A request the host forwards: one of the `browser.*` methods with its
/// params in their typed form.
#[derive(Clone, PartialEq)]
pub struct Forward {
    pub id: u64,
    pub method: &'static str,
    pub params: Value,
}

/// A request refused by the host itself; the daemon never sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Refused {
    /// The request's id, when it had one.
    pub id: Option<u64>,
    pub reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Incoming {
    id: u64,
    method: String,
    #[serde(default)]
    params: Value,
}

/// The id of a request that did not parse, if it has one, for the reply.
fn id_of(frame: &[u8]) -> Option<u64> {
    #[derive(Deserialize)]
    struct Id {
        id: u64,
    }
    serde_json::from_slice::<Id>(frame).ok().map(|i| i.id)
}

/// `params` as `M` takes them, or why not.
fn typed<M: Method>(params: Value) -> Result<Value, String> {
    let p: M::Params =
        serde_json::from_value(params).map_err(|e| format!("bad params for {}: {e}", M::NAME))?;
    serde_json::to_value(&p).map_err(|e| e.to_string())
}

/// One message from the browser: a request to forward, or refused.
pub fn parse_request(frame: &[u8]) -> Result<Forward, Refused> {
    let incoming: Incoming = serde_json::from_slice(frame).map_err(|e| Refused {
        id: id_of(frame),
        reason: format!("not a request: {e}"),
    })?;
    let id = incoming.id;
    let refuse = |reason: String| Refused {
        id: Some(id),
        reason,
    };
    let (method, params) = match incoming.method.as_str() {
        m::BrowserFind::NAME => (
            m::BrowserFind::NAME,
            typed::<m::BrowserFind>(incoming.params),
        ),
        m::BrowserFill::NAME => (
            m::BrowserFill::NAME,
            typed::<m::BrowserFill>(incoming.params),
        ),
        m::BrowserTotp::NAME => (
            m::BrowserTotp::NAME,
            typed::<m::BrowserTotp>(incoming.params),
        ),
        m::BrowserSave::NAME => (
            m::BrowserSave::NAME,
            typed::<m::BrowserSave>(incoming.params),
        ),
        other => {
            let shown: String = other.chars().take(64).collect();
            return Err(refuse(format!(
                "method {shown:?} is not served to the browser (only {})",
                m::BROWSER_METHODS.join(", ")
            )));
        }
    };
    Ok(Forward {
        id,
        method,
        params: params.map_err(refuse)?,
    })
}

/// What went wrong, as the extension tells it apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The host refused the request (not one of the browser's methods).
    Refused,
    /// No daemon answers: start it (`coffer status` starts it).
    NoDaemon,
    /// No vault on this device yet (`coffer init`).
    NotInitialized,
    /// The vault is locked: `coffer unlock` or the web app.
    Locked,
    /// Not for this page (origin binding), or the role forbids it.
    Denied,
    NotFound,
    Invalid,
    Error,
}

/// The error reply to request `id`.
pub fn error_reply(id: Option<u64>, kind: ErrorKind, message: &str) -> Value {
    json!({"id": id, "error": {"code": kind, "message": message}})
}

/// The reply to a forwarded request, from the daemon's answer.
pub fn daemon_reply(id: u64, answer: Result<Value, ClientError>) -> Value {
    match answer {
        Ok(result) => json!({"id": id, "result": result}),
        Err(e) => {
            let kind = match &e {
                ClientError::Connect { .. } => ErrorKind::NoDaemon,
                ClientError::Rpc(r) => match ErrorCode::from_code(r.code) {
                    Some(ErrorCode::Locked) => ErrorKind::Locked,
                    Some(ErrorCode::NotInitialized) => ErrorKind::NotInitialized,
                    Some(ErrorCode::PermissionDenied) => ErrorKind::Denied,
                    Some(ErrorCode::NotFound) => ErrorKind::NotFound,
                    Some(ErrorCode::InvalidInput | ErrorCode::InvalidParams) => ErrorKind::Invalid,
                    _ => ErrorKind::Error,
                },
                _ => ErrorKind::Error,
            };
            error_reply(Some(id), kind, &e.to_string())
        }
    }
}

/// The framing of messages from the browser (bounded).
pub fn request_codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .native_endian()
        .max_frame_length(MAX_REQUEST_BYTES)
        .new_codec()
}

/// The framing of messages to the browser.
pub fn reply_codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .native_endian()
        .max_frame_length(MAX_REPLY_BYTES)
        .new_codec()
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The browser's message was not framed as native messaging frames,
    /// or longer than [`MAX_REQUEST_BYTES`].
    #[error("reading from the browser: {0}")]
    Read(std::io::Error),
    #[error("writing to the browser: {0}")]
    Write(std::io::Error),
}

/// Serves the browser until it closes the input: each request is parsed
/// and filtered, then handed to `forward` (the daemon), one at a time.
pub async fn serve<R, W, F, Fut>(input: R, output: W, mut forward: F) -> Result<(), HostError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    F: FnMut(Forward) -> Fut,
    Fut: Future<Output = Value>,
{
    let mut reader = FramedRead::new(input, request_codec());
    let mut writer = FramedWrite::new(output, reply_codec());
    while let Some(frame) = reader.next().await {
        let mut frame = frame.map_err(HostError::Read)?;
        let parsed = parse_request(&frame);
        // A save request carries a password: wipe our copy of it.
        frame.as_mut().zeroize();
        let reply = match parsed {
            Ok(request) => forward(request).await,
            Err(refused) => error_reply(refused.id, ErrorKind::Refused, &refused.reason),
        };
        let mut bytes = serde_json::to_vec(&reply).unwrap_or_default();
        if bytes.len() > MAX_REPLY_BYTES {
            bytes.zeroize();
            let id = reply.get("id").and_then(Value::as_u64);
            let too_large = error_reply(
                id,
                ErrorKind::Error,
                "the answer is too large for the browser",
            );
            bytes = serde_json::to_vec(&too_large).unwrap_or_default();
        }
        let sent = writer.send(Bytes::copy_from_slice(&bytes)).await;
        bytes.zeroize();
        sent.map_err(HostError::Write)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn only_coffers_extensions_are_callers() {
        let chromium = chromium_origin();
        assert_eq!(
            caller(&s(&["host", &chromium])),
            Ok(Caller::Chromium(chromium.clone()))
        );
        assert_eq!(
            caller(&s(&[
                "host",
                "/x/dev.coffer.host.json",
                FIREFOX_EXTENSION_ID
            ])),
            Ok(Caller::Firefox(FIREFOX_EXTENSION_ID.into()))
        );
        for other in [
            "chrome-extension://npfidpanbakohhblihpkeilnjdkhfklo/",
            "chrome-extension://ljbebaglikapmoonnjailinnjchcfhfh",
            "chrome-extension://ljbebaglikapmoonnjailinnjchcfhfh/x",
        ] {
            assert_eq!(
                caller(&s(&["host", other])),
                Err(CallerError::NotAllowed(other.into()))
            );
        }
        assert!(matches!(
            caller(&s(&["host", "/m.json", "evil@example.com"])),
            Err(CallerError::NotAllowed(_))
        ));
        assert_eq!(caller(&s(&["host"])), Err(CallerError::NoCaller));
        assert_eq!(caller(&s(&["host", "/m.json"])), Err(CallerError::NoCaller));
    }

    #[test]
    fn the_four_browser_methods_pass_typed() {
        let f = parse_request(
            br#"{"id":7,"method":"browser.fill","params":{"origin":"https://a.com","item":"ab","extra":1}}"#,
        )
        .unwrap();
        assert_eq!(f.id, 7);
        assert_eq!(f.method, "browser.fill");
        // Re-encoded from the typed params: unknown keys do not travel.
        assert_eq!(f.params, json!({"origin":"https://a.com","item":"ab"}));
        for method in m::BROWSER_METHODS {
            let params = json!({"origin":"https://a.com","item":"ab","password":"p"});
            let r = parse_request(
                serde_json::to_string(&json!({"id":1,"method":method,"params":params}))
                    .unwrap()
                    .as_bytes(),
            );
            assert!(r.is_ok(), "{method}");
        }
    }

    #[test]
    fn every_other_request_is_refused() {
        for (frame, id) in [
            (
                r#"{"id":1,"method":"item.get","params":{"item":"Bank"}}"#,
                Some(1),
            ),
            (
                r#"{"id":2,"method":"export","params":{"pin":"1","format":"json"}}"#,
                Some(2),
            ),
            (
                r#"{"id":3,"method":"unlock","params":{"pin":"123456"}}"#,
                Some(3),
            ),
            (
                r#"{"id":4,"method":"totp.code","params":{"item":"x"}}"#,
                Some(4),
            ),
            (r#"{"id":5,"method":"subscribe"}"#, Some(5)),
            (
                r#"{"id":6,"method":"browser.fill","params":{"origin":"x"}}"#,
                Some(6),
            ),
            (r#"{"id":7,"method":"browser.find","params":[]}"#, Some(7)),
            (
                r#"{"id":8,"method":"browser.find","params":{"origin":"x"},"x":1}"#,
                Some(8),
            ),
            (r#"{"method":"browser.find","params":{"origin":"x"}}"#, None),
            (r#"[1,2]"#, None),
            ("\u{0}\u{ff}", None),
            ("", None),
        ] {
            let r = parse_request(frame.as_bytes());
            assert_eq!(r.as_ref().err().map(|e| e.id), Some(id), "{frame}");
        }
    }

    fn framed(json: &str) -> Vec<u8> {
        let mut out = (json.len() as u32).to_ne_bytes().to_vec();
        out.extend_from_slice(json.as_bytes());
        out
    }

    fn unframe(mut bytes: &[u8]) -> Vec<Value> {
        let mut out = Vec::new();
        while bytes.len() >= 4 {
            let n = u32::from_ne_bytes(bytes[..4].try_into().unwrap()) as usize;
            out.push(serde_json::from_slice(&bytes[4..4 + n]).unwrap());
            bytes = &bytes[4 + n..];
        }
        out
    }

    #[tokio::test]
    async fn serve_forwards_allowed_and_answers_refusals_itself() {
        let mut input =
            framed(r#"{"id":1,"method":"browser.find","params":{"origin":"https://a.com"}}"#);
        input.extend(framed(r#"{"id":2,"method":"item.list","params":{}}"#));
        let mut output = Vec::new();
        let mut forwarded = Vec::new();
        serve(&input[..], &mut output, |f| {
            forwarded.push(f.method);
            async move { json!({"id": f.id, "result": []}) }
        })
        .await
        .unwrap();
        assert_eq!(forwarded, ["browser.find"]);
        let replies = unframe(&output);
        assert_eq!(replies[0], json!({"id":1,"result":[]}));
        assert_eq!(replies[1]["id"], 2);
        assert_eq!(replies[1]["error"]["code"], "refused");
    }

    #[tokio::test]
    async fn an_oversized_message_ends_the_session_unread() {
        let mut input = ((MAX_REQUEST_BYTES + 1) as u32).to_ne_bytes().to_vec();
        input.extend(vec![b' '; MAX_REQUEST_BYTES + 1]);
        let mut output = Vec::new();
        let mut called = false;
        let r = serve(&input[..], &mut output, |_| {
            called = true;
            async { Value::Null }
        })
        .await;
        assert!(matches!(r, Err(HostError::Read(_))));
        assert!(!called);
        assert!(output.is_empty());
    }
}
