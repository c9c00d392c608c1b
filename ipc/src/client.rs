//! A blocking client: connect, call typed methods, read events.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::methods::{Empty, ItemList, ItemListParams, ItemSummary, ItemsChunk, Method, Subscribe};
use crate::wire::{
    ErrorCode, Event, ItemsNotification, Notification, Progress, ProgressNotification, Request,
    Response, RpcError,
};
use crate::{MAX_FRAME_BYTES, MAX_REPLY_BYTES};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Nothing answers on the socket.
    #[error("cannot connect to cofferd at {path}: {source}")]
    Connect {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("connection to cofferd failed: {0}")]
    Io(#[from] std::io::Error),
    /// The daemon said something that is not a valid reply.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The daemon answered with an error.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The process on the socket runs as another user: nothing (no PIN,
    /// no secret) is sent to it.
    #[error("refusing {path}: the process serving it runs as uid {uid}, not as you (uid {me}); another user may have taken the socket path")]
    NotOurs { path: String, uid: u32, me: u32 },
    /// The caller's handling of a streamed part failed (its output went
    /// away): the call stopped there.
    #[error("writing the listing failed: {0}")]
    Output(#[source] std::io::Error),
}

/// What a caller does with a line that arrives before the reply: `true`
/// when it took it as its notification.
type OnNote<'a> = &'a mut dyn FnMut(&str) -> Result<bool, ClientError>;

pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
    /// The team's notice carried by the last response (see
    /// [`Response::notice`]).
    notice: Option<String>,
}

impl Client {
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.display().to_string(),
            source,
        })?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        match crate::process::peer_of(&stream)?.uid {
            uid if uid == me => {}
            uid => {
                return Err(ClientError::NotOurs {
                    path: path.display().to_string(),
                    uid,
                    me,
                })
            }
        }
        let writer = stream.try_clone()?;
        Ok(Client {
            reader: BufReader::new(stream),
            writer,
            next_id: 1,
            notice: None,
        })
    }

    /// Bounds how long one reply may take (None: wait forever).
    pub fn set_timeout(&self, timeout: Option<Duration>) -> Result<(), ClientError> {
        self.writer.set_read_timeout(timeout)?;
        Ok(())
    }

    /// The team's notice to this device as of the last response: it was
    /// revoked, or its user removed (`None` while it is a member).
    pub fn notice(&self) -> Option<&str> {
        self.notice.as_deref()
    }

    pub fn call<M: Method>(&mut self, params: &M::Params) -> Result<M::Result, ClientError> {
        let params =
            serde_json::to_value(params).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let result = self.call_raw(M::NAME, params)?;
        serde_json::from_value(result)
            .map_err(|e| ClientError::Protocol(format!("bad {} result: {e}", M::NAME)))
    }

    /// Like [`Client::call`], handing every progress notification the daemon
    /// sends before the reply to `on_progress`.
    pub fn call_with_progress<M: Method>(
        &mut self,
        params: &M::Params,
        mut on_progress: impl FnMut(Progress),
    ) -> Result<M::Result, ClientError> {
        let params =
            serde_json::to_value(params).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let result = self.call_inner(M::NAME, params, &mut |line| match serde_json::from_str::<
            ProgressNotification,
        >(line)
        {
            Ok(n) if n.method == "progress" => {
                on_progress(n.params);
                Ok(true)
            }
            _ => Ok(false),
        })?;
        serde_json::from_value(result)
            .map_err(|e| ClientError::Protocol(format!("bad {} result: {e}", M::NAME)))
    }

    /// `item.list`, streamed: hands the listing to `on_chunk` part by part
    /// as the daemon sends it, in order (the first or second part carries
    /// the listing's head). An older daemon answers with the whole listing in
    /// its reply: that comes as one part without a head. An error of
    /// `on_chunk` stops the call with [`ClientError::Output`].
    pub fn list_streamed(
        &mut self,
        params: &ItemListParams,
        mut on_chunk: impl FnMut(ItemsChunk) -> std::io::Result<()>,
    ) -> Result<(), ClientError> {
        let params = ItemListParams {
            stream: true,
            ..params.clone()
        };
        let params =
            serde_json::to_value(params).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let result = self.call_inner(ItemList::NAME, params, &mut |line| {
            match serde_json::from_str::<ItemsNotification>(line) {
                Ok(n) if n.method == ItemsNotification::METHOD => {
                    on_chunk(n.params).map_err(ClientError::Output)?;
                    Ok(true)
                }
                Ok(_) => Ok(false),
                // The reply, an event, or a part that does not parse: a
                // part is never skipped, the listing would miss items.
                Err(e) => match serde_json::from_str::<Value>(line) {
                    Ok(v)
                        if v.get("id").is_none()
                            && v.get("method").and_then(Value::as_str)
                                == Some(ItemsNotification::METHOD) =>
                    {
                        Err(ClientError::Protocol(format!(
                            "bad items notification: {e}"
                        )))
                    }
                    _ => Ok(false),
                },
            }
        })?;
        let rest: Vec<ItemSummary> = serde_json::from_value(result)
            .map_err(|e| ClientError::Protocol(format!("bad {} result: {e}", ItemList::NAME)))?;
        if !rest.is_empty() {
            on_chunk(ItemsChunk {
                head: None,
                items: rest,
            })
            .map_err(ClientError::Output)?;
        }
        Ok(())
    }

    /// Calls a method by name with untyped params.
    pub fn call_raw(&mut self, method: &str, params: Value) -> Result<Value, ClientError> {
        self.call_inner(method, params, &mut |_| Ok(false))
    }

    fn call_inner(
        &mut self,
        method: &str,
        params: Value,
        on_note: OnNote<'_>,
    ) -> Result<Value, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut line = serde_json::to_vec(&Request::new(id, method, params))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        if line.len() > MAX_FRAME_BYTES {
            return Err(ClientError::Rpc(RpcError::new(
                ErrorCode::TooLarge,
                format!(
                    "request of {} bytes exceeds the {MAX_FRAME_BYTES} byte limit",
                    line.len()
                ),
            )));
        }
        line.push(b'\n');
        if let Err(write_err) = self.writer.write_all(&line) {
            // The daemon may have refused us and hung up: its reason beats "broken pipe".
            return match self.read_line() {
                Ok(reply) => match serde_json::from_str::<Response>(&reply) {
                    Ok(Response {
                        error: Some(error), ..
                    }) => Err(ClientError::Rpc(error)),
                    _ => Err(write_err.into()),
                },
                Err(_) => Err(write_err.into()),
            };
        }
        loop {
            let line = self.read_line()?;
            if on_note(&line)? {
                continue;
            }
            let value: Value =
                serde_json::from_str(&line).map_err(|e| ClientError::Protocol(e.to_string()))?;
            if value.get("id").is_none() {
                continue; // a notification from an earlier subscribe
            }
            let response: Response =
                serde_json::from_value(value).map_err(|e| ClientError::Protocol(e.to_string()))?;
            if response.id != id && !(response.id.is_null() && response.error.is_some()) {
                return Err(ClientError::Protocol(format!(
                    "reply to request {} while waiting for {id}",
                    response.id
                )));
            }
            self.notice = response.notice;
            if let Some(error) = response.error {
                return Err(ClientError::Rpc(error));
            }
            return Ok(response.result.unwrap_or(Value::Null));
        }
    }

    fn read_line(&mut self) -> Result<String, ClientError> {
        let mut buf = Vec::new();
        let n = (&mut self.reader)
            .take(MAX_REPLY_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Err(ClientError::Protocol(
                "cofferd closed the connection".into(),
            ));
        }
        if buf.last() != Some(&b'\n') {
            return Err(ClientError::Protocol(
                "reply longer than the frame limit".into(),
            ));
        }
        String::from_utf8(buf).map_err(|_| ClientError::Protocol("reply is not UTF-8".into()))
    }

    /// Subscribes this connection to events; then read them with [`Client::next_event`].
    pub fn subscribe(&mut self) -> Result<(), ClientError> {
        self.call::<Subscribe>(&Empty {})?;
        Ok(())
    }

    /// Blocks until the next event arrives.
    pub fn next_event(&mut self) -> Result<Event, ClientError> {
        let line = self.read_line()?;
        let notification: Notification =
            serde_json::from_str(&line).map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(notification.params)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::thread;

    use serde_json::json;

    use super::*;
    use crate::methods::ListingHead;

    fn summary(n: usize) -> ItemSummary {
        ItemSummary {
            id: format!("{n:032x}"),
            folder: "Personal".into(),
            item_type: "login".into(),
            name: format!("item {n}"),
            username: None,
            urls: vec![],
            has_totp: false,
            updated_ms: 0,
            trashed_ms: None,
            archived: false,
            conflict: false,
        }
    }

    /// A client on one end of a socket pair, and a fake daemon on the
    /// other that checks the request and answers with `lines`.
    /// Every part of a streamed listing, in order.
    fn all_parts(client: &mut Client) -> Vec<ItemsChunk> {
        let mut parts = Vec::new();
        client
            .list_streamed(&ItemListParams::default(), |p| {
                parts.push(p);
                Ok(())
            })
            .expect("listed");
        parts
    }

    fn talk(lines: Vec<String>, check: impl FnOnce(Value) + Send + 'static) -> Client {
        let (ours, theirs) = UnixStream::pair().expect("socket pair");
        thread::spawn(move || {
            let mut reader = BufReader::new(theirs.try_clone().expect("clone"));
            let mut request = String::new();
            reader.read_line(&mut request).expect("request");
            check(serde_json::from_str(&request).expect("JSON request"));
            let mut theirs = theirs;
            for line in lines {
                theirs.write_all(line.as_bytes()).expect("write");
                theirs.write_all(b"\n").expect("write");
            }
        });
        Client {
            reader: BufReader::new(ours.try_clone().expect("clone")),
            writer: ours,
            next_id: 1,
            notice: None,
        }
    }

    fn part(head: Option<ListingHead>, items: std::ops::Range<usize>) -> String {
        serde_json::to_string(&ItemsNotification::new(ItemsChunk {
            head,
            items: items.map(summary).collect(),
        }))
        .expect("serialises")
    }

    fn reply(result: Value) -> String {
        serde_json::to_string(&Response::ok(json!(1), result)).expect("serialises")
    }

    #[test]
    fn a_streamed_listing_arrives_part_by_part_and_events_are_skipped() {
        let head = ListingHead {
            total: 5,
            name_chars: 6,
            folder_chars: 8,
        };
        let event = serde_json::to_string(&Notification::event(Event::LockState {
            locked: false,
            reason: "pin".into(),
        }))
        .expect("serialises");
        let mut client = talk(
            vec![
                part(Some(head), 0..2),
                event,
                part(None, 2..5),
                reply(json!([])),
            ],
            |request| {
                assert_eq!(request["method"], "item.list");
                assert_eq!(request["params"]["stream"], true);
            },
        );
        let parts = all_parts(&mut client);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].head, Some(head));
        let items: Vec<ItemSummary> = parts.into_iter().flat_map(|p| p.items).collect();
        assert_eq!(items, (0..5).map(summary).collect::<Vec<_>>());
    }

    #[test]
    fn an_older_daemons_whole_reply_is_one_part_without_a_head() {
        let whole = serde_json::to_value((0..3).map(summary).collect::<Vec<_>>()).expect("JSON");
        let mut client = talk(vec![reply(whole)], |_| {});
        let parts = all_parts(&mut client);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].head, None);
        assert_eq!(parts[0].items.len(), 3);
    }

    #[test]
    fn a_part_that_does_not_parse_or_a_failed_output_stops_the_listing() {
        let bad = r#"{"jsonrpc":"2.0","method":"items","params":{"items":7}}"#.to_string();
        let mut client = talk(vec![bad, reply(json!([]))], |_| {});
        let err = client
            .list_streamed(&ItemListParams::default(), |_| Ok(()))
            .expect_err("a bad part");
        assert!(matches!(err, ClientError::Protocol(_)), "{err:?}");

        let mut client = talk(vec![part(None, 0..1), reply(json!([]))], |_| {});
        let err = client
            .list_streamed(&ItemListParams::default(), |_| {
                Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            })
            .expect_err("output failed");
        assert!(matches!(err, ClientError::Output(_)), "{err:?}");
    }
}
