//! The sync wire protocol `/coffer/sync/3` (and `/coffer/sync/2`, which
//! older daemons speak): the framing of the replica's [`SyncMessage`]s.
//! Pure: no sockets, no vault. What a message means, and what to send, is
//! the replica's (`coffer_crdt::replica::sync`). Both wires frame the same
//! messages; which one a session's outbound stream negotiated decides the
//! hello the replica sends ([`SyncWire`]).
//!
//! Each side of a connection opens one outbound stream and only writes to
//! it; it only reads the stream the other side opened. A frame is a 4-byte
//! big-endian length followed by that many bytes of postcard-encoded
//! [`Message`]. `docs/protocol.md` describes every message.

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub use coffer_crdt::replica::{
    PeerErrorCode as ErrorCode, SpaceSummary, SyncMessage as Message, SyncWire, Tip,
    MAX_BATCH_BYTES as TARGET_BATCH_BYTES, MAX_BATCH_ENVELOPES, MAX_SPACES, MAX_TIPS,
    SYNC_VERSION as PROTOCOL_VERSION, TIME_SINCE_VERSION,
};

/// The libp2p protocol name of `/coffer/sync/2` (today's `Hello`, every
/// head); the trailing number is the major version.
pub const PROTOCOL_NAME: &str = "/coffer/sync/2";
/// The libp2p protocol name of `/coffer/sync/3` (`HelloDigest`), offered
/// first; a peer that does not speak it gets `/coffer/sync/2`.
pub const PROTOCOL_NAME_V3: &str = "/coffer/sync/3";
/// Bytes of the Noise prologue both sides must agree on: other libp2p nodes
/// (and other apps or major versions) fail the handshake.
pub const NOISE_PROLOGUE: &[u8] = b"coffer/noise/v1";
/// Largest frame accepted or sent (one envelope may be 1 MiB).
pub const MAX_FRAME_BYTES: usize = 2 << 20;
/// Longest error text.
pub const MAX_ERROR_TEXT: usize = 512;

/// What went wrong reading or decoding a frame.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The stream failed or ended.
    #[error("stream error: {0}")]
    Io(#[from] std::io::Error),
    /// The length prefix exceeds [`MAX_FRAME_BYTES`].
    #[error("frame of {len} bytes exceeds the {max} byte limit")]
    TooLarge { len: usize, max: usize },
    /// The bytes are not a message, or the message breaks a bound.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
}

/// Encodes to postcard bytes (without the length prefix).
pub fn encode(msg: &Message) -> Vec<u8> {
    postcard::to_stdvec(msg).expect("serialising to a Vec cannot fail")
}

/// Decodes untrusted bytes: never panics; checks every bound.
pub fn decode(bytes: &[u8]) -> Result<Message, FrameError> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge {
            len: bytes.len(),
            max: MAX_FRAME_BYTES,
        });
    }
    let (msg, rest): (Message, _) =
        postcard::take_from_bytes(bytes).map_err(|_| FrameError::Malformed("not a message"))?;
    if !rest.is_empty() {
        return Err(FrameError::Malformed("trailing bytes"));
    }
    let empty_batch = matches!(&msg, Message::Envelopes { envelopes, .. } if envelopes.is_empty());
    if empty_batch || !msg.within_bounds() {
        return Err(FrameError::Malformed("message over its bounds"));
    }
    Ok(msg)
}

/// A short name for logs (never the content).
pub fn name(msg: &Message) -> &'static str {
    match msg {
        Message::Hello { .. } => "hello",
        Message::Summary { .. } => "summary",
        Message::Envelopes { .. } => "envelopes",
        Message::Caught { .. } => "caught",
        Message::Error { .. } => "error",
        Message::Time { .. } => "time",
        Message::AuditHeads { .. } => "audit-heads",
        Message::AuditRecords { .. } => "audit-records",
        Message::HelloDigest { .. } => "hello-digest",
        Message::SpaceDigests { .. } => "space-digests",
        Message::Tips { .. } => "tips",
    }
}

/// Writes one framed message; returns the bytes put on the stream.
pub async fn write_message<W: AsyncWrite + Unpin>(
    w: &mut W,
    msg: &Message,
) -> Result<usize, FrameError> {
    let body = encode(msg);
    if body.len() > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge {
            len: body.len(),
            max: MAX_FRAME_BYTES,
        });
    }
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    w.write_all(&frame).await?;
    w.flush().await?;
    Ok(frame.len())
}

/// Reads one framed message (`Ok(None)` at a clean end of stream between
/// frames); returns it with the bytes it took.
pub async fn read_message<R: AsyncRead + Unpin>(
    r: &mut R,
) -> Result<Option<(Message, usize)>, FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut len[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(FrameError::Malformed("stream ended inside a length prefix"));
        }
        got += n;
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge {
            len,
            max: MAX_FRAME_BYTES,
        });
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(Some((decode(&body)?, 4 + len)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_crdt::{DeviceId, EnvelopeId, SpaceId};
    use futures::executor::block_on;
    use proptest::prelude::*;

    fn sample() -> Message {
        Message::Hello {
            version: PROTOCOL_VERSION,
            spaces: vec![SpaceSummary {
                space: SpaceId([1; 32]),
                tips: vec![Tip {
                    space: SpaceId([1; 32]),
                    author: DeviceId([2; 32]),
                    seq: 7,
                    id: EnvelopeId([3; 32]),
                    linked: true,
                }],
            }],
        }
    }

    fn sample_tips() -> Message {
        let Message::Hello { spaces, .. } = sample() else {
            unreachable!()
        };
        Message::Tips { spaces }
    }

    #[test]
    fn frames_round_trip() {
        let msgs = vec![
            sample(),
            Message::Envelopes {
                space: SpaceId([9; 32]),
                envelopes: vec![vec![1, 2, 3], vec![4; 300]],
            },
            Message::Caught {
                space: SpaceId([9; 32]),
            },
            Message::Error {
                code: ErrorCode::Malformed,
                text: "bad".into(),
            },
            Message::Time {
                unix_ms: 1_764_700_000_000,
            },
            Message::HelloDigest {
                version: PROTOCOL_VERSION,
                digest: [5; 32],
            },
            Message::SpaceDigests {
                spaces: vec![(SpaceId([1; 32]), [6; 32])],
            },
            Message::Tips {
                spaces: vec![SpaceSummary {
                    space: SpaceId([1; 32]),
                    tips: vec![],
                }],
            },
        ];
        let mut wire = Vec::new();
        for m in &msgs {
            block_on(write_message(&mut wire, m)).unwrap();
        }
        let mut r = futures::io::Cursor::new(wire);
        for m in &msgs {
            let (got, _) = block_on(read_message(&mut r)).unwrap().unwrap();
            assert_eq!(&got, m);
        }
        assert!(block_on(read_message(&mut r)).unwrap().is_none());
    }

    #[test]
    fn oversized_and_garbage_frames_are_refused() {
        let mut wire = ((MAX_FRAME_BYTES + 1) as u32).to_be_bytes().to_vec();
        wire.extend_from_slice(&[0; 16]);
        let err = block_on(read_message(&mut futures::io::Cursor::new(wire))).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { .. }), "{err}");

        let mut wire = 5u32.to_be_bytes().to_vec();
        wire.extend_from_slice(&[0xff; 5]);
        let err = block_on(read_message(&mut futures::io::Cursor::new(wire))).unwrap_err();
        assert!(matches!(err, FrameError::Malformed(_)), "{err}");

        // An empty envelope batch breaks a bound.
        let empty = Message::Envelopes {
            space: SpaceId([0; 32]),
            envelopes: vec![],
        };
        assert!(decode(&encode(&empty)).is_err());
        // More spaces than a summary may describe, in the /3 messages too.
        let digests = Message::SpaceDigests {
            spaces: vec![(SpaceId([0; 32]), [0; 32]); MAX_SPACES + 1],
        };
        assert!(decode(&encode(&digests)).is_err());
        let tips = Message::Tips {
            spaces: vec![
                SpaceSummary {
                    space: SpaceId([0; 32]),
                    tips: vec![],
                };
                MAX_SPACES + 1
            ],
        };
        assert!(decode(&encode(&tips)).is_err());
        // The /3 hello is of constant size: a version and a digest.
        let hello = Message::HelloDigest {
            version: PROTOCOL_VERSION,
            digest: [0xff; 32],
        };
        assert!(encode(&hello).len() <= 40, "{}", encode(&hello).len());
        // Trailing bytes.
        let mut long = encode(&sample());
        long.push(0);
        assert!(decode(&long).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }

        /// The `/coffer/sync/3` messages, cut or altered anywhere.
        #[test]
        fn altered_v3_messages_never_panic(
            cut in 0usize..200,
            at in 0usize..200,
            byte in any::<u8>(),
            which in 0u8..3,
        ) {
            let msg = match which {
                0 => Message::HelloDigest { version: PROTOCOL_VERSION, digest: [7; 32] },
                1 => Message::SpaceDigests { spaces: vec![(SpaceId([1; 32]), [2; 32]); 2] },
                _ => sample_tips(),
            };
            let mut bytes = encode(&msg);
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] = byte;
            }
            bytes.truncate(cut.min(bytes.len()));
            let _ = decode(&bytes);
        }
    }
}
