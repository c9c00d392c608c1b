//! The sync wire protocol `/coffer/sync/1`: messages, their bounded
//! encoding and the length-prefixed framing. Pure: no sockets, no vault.
//!
//! Each side of a connection opens one outbound stream and only writes to
//! it; it only reads the stream the other side opened. A frame is a 4-byte
//! big-endian length followed by that many bytes of postcard-encoded
//! [`Message`]. `docs/protocol.md` describes every message.

use std::collections::BTreeMap;

use coffer_crdt::{DeviceId, EnvelopeId, SpaceId};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use serde::{Deserialize, Serialize};

/// The libp2p protocol name; the trailing number is the major version.
pub const PROTOCOL_NAME: &str = "/coffer/sync/1";
/// The version a [`Message::Hello`] carries (minor revisions of version 1).
pub const PROTOCOL_VERSION: u16 = 1;
/// Bytes of the Noise prologue both sides must agree on: other libp2p nodes
/// (and other apps or major versions) fail the handshake.
pub const NOISE_PROLOGUE: &[u8] = b"coffer/noise/v1";
/// Largest frame accepted or sent (one envelope may be 1 MiB).
pub const MAX_FRAME_BYTES: usize = 2 << 20;
/// A batch of envelopes is cut at this size (or [`MAX_BATCH_ENVELOPES`]).
pub const TARGET_BATCH_BYTES: usize = 1 << 20;
pub const MAX_BATCH_ENVELOPES: usize = 8192;
/// Most spaces one summary may describe.
pub const MAX_SPACES: usize = 1024;
/// Most chain tips one space summary may carry.
pub const MAX_TIPS: usize = 8192;
/// Longest error text.
pub const MAX_ERROR_TEXT: usize = 512;

/// The last envelope of one author's chain in one space, as a peer holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tip {
    /// The space the chain belongs to (a folder, or its team roster).
    pub space: SpaceId,
    pub author: DeviceId,
    /// Highest contiguous seq held.
    pub seq: u64,
    /// The id of the envelope at `seq`, so a fork is noticed.
    pub id: EnvelopeId,
}

/// What a peer holds of one space: its version vector with tip ids.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpaceSummary {
    pub space: SpaceId,
    pub tips: Vec<Tip>,
}

impl SpaceSummary {
    /// `{(space, author) -> (seq, id)}`, the form the sender compares against.
    pub fn vector(&self) -> BTreeMap<(SpaceId, DeviceId), (u64, EnvelopeId)> {
        self.tips
            .iter()
            .map(|t| ((t.space, t.author), (t.seq, t.id)))
            .collect()
    }
}

/// Why a peer is being cut off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The frame or message could not be decoded, or broke a bound.
    Malformed,
    /// An envelope failed its signature or does not belong to the space.
    InvalidEnvelope,
    /// The `Hello` named a version this side does not speak.
    Version,
    /// This device does not sync with the peer (not trusted, or revoked).
    NotAllowed,
}

/// One message of the protocol. Variant order is wire format: append only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// First message on every outbound stream: the version, and what the
    /// sender holds of each space it shares with the receiver.
    Hello {
        version: u16,
        spaces: Vec<SpaceSummary>,
    },
    /// "Here is what I hold now; send what I lack" (`coffer sync now`).
    Summary { spaces: Vec<SpaceSummary> },
    /// Envelopes of one space, control ops first, each author's chain in seq order.
    Envelopes {
        space: SpaceId,
        #[serde(with = "envelope_list")]
        envelopes: Vec<Vec<u8>>,
    },
    /// Everything the receiver lacked of `space` (per its last summary) was sent.
    Caught { space: SpaceId },
    /// The sender is closing the connection, and why.
    Error { code: ErrorCode, text: String },
}

/// Envelopes as byte strings (serde_bytes for each element).
mod envelope_list {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_bytes::{ByteBuf, Bytes};

    pub fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        let refs: Vec<&Bytes> = v.iter().map(|b| Bytes::new(b)).collect();
        refs.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let bufs: Vec<ByteBuf> = Vec::deserialize(d)?;
        Ok(bufs.into_iter().map(ByteBuf::into_vec).collect())
    }
}

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

impl Message {
    /// Encodes to postcard bytes (without the length prefix).
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("serialising to a Vec cannot fail")
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
        msg.check_bounds()?;
        Ok(msg)
    }

    fn check_bounds(&self) -> Result<(), FrameError> {
        let spaces_ok = |s: &[SpaceSummary]| {
            s.len() <= MAX_SPACES && s.iter().all(|x| x.tips.len() <= MAX_TIPS)
        };
        let ok = match self {
            Message::Hello { spaces, .. } | Message::Summary { spaces } => spaces_ok(spaces),
            Message::Envelopes { envelopes, .. } => {
                !envelopes.is_empty() && envelopes.len() <= MAX_BATCH_ENVELOPES
            }
            Message::Caught { .. } => true,
            Message::Error { text, .. } => text.len() <= MAX_ERROR_TEXT,
        };
        if ok {
            Ok(())
        } else {
            Err(FrameError::Malformed("message over its bounds"))
        }
    }

    /// A short name for logs (never the content).
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "hello",
            Message::Summary { .. } => "summary",
            Message::Envelopes { .. } => "envelopes",
            Message::Caught { .. } => "caught",
            Message::Error { .. } => "error",
        }
    }
}

/// Writes one framed message; returns the bytes put on the stream.
pub async fn write_message<W: AsyncWrite + Unpin>(
    w: &mut W,
    msg: &Message,
) -> Result<usize, FrameError> {
    let body = msg.encode();
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
    Ok(Some((Message::decode(&body)?, 4 + len)))
}

/// Splits envelopes into [`Message::Envelopes`] batches within the bounds.
pub fn batches(space: SpaceId, envelopes: Vec<Vec<u8>>) -> Vec<Message> {
    let mut out = Vec::new();
    let mut cur: Vec<Vec<u8>> = Vec::new();
    let mut size = 0;
    for e in envelopes {
        if !cur.is_empty()
            && (size + e.len() > TARGET_BATCH_BYTES || cur.len() >= MAX_BATCH_ENVELOPES)
        {
            out.push(Message::Envelopes {
                space,
                envelopes: std::mem::take(&mut cur),
            });
            size = 0;
        }
        size += e.len() + 4;
        cur.push(e);
    }
    if !cur.is_empty() {
        out.push(Message::Envelopes {
            space,
            envelopes: cur,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
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
                }],
            }],
        }
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
        }
        .encode();
        assert!(Message::decode(&empty).is_err());
        // Trailing bytes.
        let mut long = sample().encode();
        long.push(0);
        assert!(Message::decode(&long).is_err());
    }

    #[test]
    fn batches_respect_the_target_size() {
        let envs: Vec<Vec<u8>> = (0..100).map(|_| vec![7u8; 20_000]).collect();
        let out = batches(SpaceId([0; 32]), envs);
        assert!(out.len() >= 2);
        let mut total = 0;
        for m in &out {
            let Message::Envelopes { envelopes, .. } = m else {
                panic!("not envelopes")
            };
            total += envelopes.len();
            assert!(m.encode().len() <= TARGET_BATCH_BYTES + 20_100);
        }
        assert_eq!(total, 100);
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Message::decode(&bytes);
        }
    }
}
