//! Bounds on an untrusted Automerge change, checked before Automerge parses
//! it. Automerge inflates a compressed change chunk with no size limit and
//! decodes every op a run-length-encoded column claims (a few bytes can
//! claim billions), so a writer's malicious change could exhaust every key
//! holder's memory or CPU at each unlock. This reads only the chunk header,
//! the change header and the run lengths of the action column (one row per
//! op), and refuses what is over [`MAX_INFLATED_BYTES`] or [`MAX_CHANGE_OPS`].
//!
//! What it is not: a parser of Automerge's format. Whatever passes here is
//! still parsed and validated by Automerge itself.

use std::io::Read;

/// Largest change body accepted after inflating a compressed chunk.
pub const MAX_INFLATED_BYTES: usize = 4 << 20;
/// Most ops one change may hold (an import batch of 500 items is ~5,000).
pub const MAX_CHANGE_OPS: u64 = 200_000;

const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const CHUNK_CHANGE: u8 = 1;
const CHUNK_COMPRESSED: u8 = 2;
/// The action column of a change's ops: column id 4, unsigned LEB128 RLE.
const ACTION_COLUMN: u32 = (4 << 4) | 2;
/// Bit of a column spec that marks a DEFLATE-compressed column.
const DEFLATE_BIT: u32 = 1 << 3;

/// Why a change was refused before parsing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChangeBoundsError {
    /// Not an Automerge change chunk (or cut short).
    #[error("not an Automerge change")]
    Malformed,
    /// Inflates to more than [`MAX_INFLATED_BYTES`].
    #[error("the change inflates to more than {MAX_INFLATED_BYTES} bytes")]
    TooLarge,
    /// Holds more than [`MAX_CHANGE_OPS`] ops.
    #[error("the change holds more than {MAX_CHANGE_OPS} ops")]
    TooManyOps,
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ChangeBoundsError> {
        let end = self.at.checked_add(n).ok_or(ChangeBoundsError::Malformed)?;
        let out = self
            .bytes
            .get(self.at..end)
            .ok_or(ChangeBoundsError::Malformed)?;
        self.at = end;
        Ok(out)
    }

    fn uleb(&mut self) -> Result<u64, ChangeBoundsError> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1)?[0];
            value |= u64::from(byte & 0x7f)
                .checked_shl(shift)
                .ok_or(ChangeBoundsError::Malformed)?;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ChangeBoundsError::Malformed)
    }

    fn sleb(&mut self) -> Result<i64, ChangeBoundsError> {
        let mut value: i64 = 0;
        let mut shift = 0u32;
        loop {
            let byte = self.take(1)?[0];
            if shift >= 64 {
                return Err(ChangeBoundsError::Malformed);
            }
            value |= i64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                if shift < 64 && byte & 0x40 != 0 {
                    value |= -1i64 << shift;
                }
                return Ok(value);
            }
        }
    }

    fn len_prefixed(&mut self) -> Result<&'a [u8], ChangeBoundsError> {
        let n = usize::try_from(self.uleb()?).map_err(|_| ChangeBoundsError::Malformed)?;
        self.take(n)
    }

    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }
}

/// Checks an encoded change against the bounds; `Ok` means Automerge may
/// parse it.
pub fn check_change(bytes: &[u8]) -> Result<(), ChangeBoundsError> {
    let mut r = Reader { bytes, at: 0 };
    if r.take(4)? != MAGIC {
        return Err(ChangeBoundsError::Malformed);
    }
    r.take(4)?; // checksum: Automerge verifies it
    let kind = r.take(1)?[0];
    let len = usize::try_from(r.uleb()?).map_err(|_| ChangeBoundsError::Malformed)?;
    let data = r.take(len)?;
    if !r.done() {
        return Err(ChangeBoundsError::Malformed);
    }
    match kind {
        CHUNK_CHANGE => count_ops(data),
        CHUNK_COMPRESSED => {
            let mut inflated = Vec::new();
            flate2::read::DeflateDecoder::new(data)
                .take(MAX_INFLATED_BYTES as u64 + 1)
                .read_to_end(&mut inflated)
                .map_err(|_| ChangeBoundsError::Malformed)?;
            if inflated.len() > MAX_INFLATED_BYTES {
                return Err(ChangeBoundsError::TooLarge);
            }
            count_ops(&inflated)
        }
        _ => Err(ChangeBoundsError::Malformed),
    }
}

/// Reads the change header up to its columns and sums the action column's
/// run lengths, stopping at the bound.
fn count_ops(body: &[u8]) -> Result<(), ChangeBoundsError> {
    let mut r = Reader { bytes: body, at: 0 };
    let deps = r.uleb()?;
    for _ in 0..deps {
        r.take(32)?;
    }
    r.len_prefixed()?; // actor
    r.uleb()?; // seq
    r.uleb()?; // start op
    r.sleb()?; // time
    r.len_prefixed()?; // message
    let others = r.uleb()?;
    for _ in 0..others {
        r.len_prefixed()?;
    }
    let columns = r.uleb()?;
    let mut specs = Vec::new();
    for _ in 0..columns.min(1024) {
        let spec = u32::try_from(r.uleb()?).map_err(|_| ChangeBoundsError::Malformed)?;
        let len = usize::try_from(r.uleb()?).map_err(|_| ChangeBoundsError::Malformed)?;
        specs.push((spec, len));
    }
    if columns > 1024 {
        return Err(ChangeBoundsError::Malformed);
    }
    let mut action: Option<&[u8]> = None;
    for (spec, len) in specs {
        let data = r.take(len)?;
        if spec & !DEFLATE_BIT == ACTION_COLUMN {
            action = Some(data);
        }
    }
    let Some(action) = action else {
        return Ok(());
    };
    let mut c = Reader {
        bytes: action,
        at: 0,
    };
    let mut rows: u64 = 0;
    while !c.done() {
        let count = c.sleb()?;
        let run = if count > 0 {
            c.uleb()?; // the repeated value
            count.unsigned_abs()
        } else if count < 0 {
            let n = count.unsigned_abs();
            if n > MAX_CHANGE_OPS {
                return Err(ChangeBoundsError::TooManyOps);
            }
            for _ in 0..n {
                c.uleb()?;
            }
            n
        } else {
            c.uleb()?
        };
        rows = rows.saturating_add(run);
        if rows > MAX_CHANGE_OPS {
            return Err(ChangeBoundsError::TooManyOps);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::folder::FolderDoc;
    use crate::ids::{DeviceId, ItemId};
    use crate::{ItemEdit, ItemType};
    use proptest::prelude::*;

    fn leb(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn sleb(v: i64, out: &mut Vec<u8>) {
        let mut v = v;
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            let done = (v == 0 && byte & 0x40 == 0) || (v == -1 && byte & 0x40 != 0);
            out.push(if done { byte } else { byte | 0x80 });
            if done {
                return;
            }
        }
    }

    /// A change chunk whose action column claims `ops` rows in one run.
    fn bomb(ops: i64, compress: bool) -> Vec<u8> {
        let mut body = Vec::new();
        leb(0, &mut body); // no deps
        leb(16, &mut body);
        body.extend([7u8; 16]); // actor
        leb(1, &mut body); // seq
        leb(1, &mut body); // start op
        sleb(0, &mut body); // time
        leb(0, &mut body); // message
        leb(0, &mut body); // other actors
        let mut action = Vec::new();
        sleb(ops, &mut action);
        leb(1, &mut action); // "set"
        leb(1, &mut body); // one column
        leb(u64::from(ACTION_COLUMN), &mut body);
        leb(action.len() as u64, &mut body);
        body.extend(&action);
        let mut chunk = MAGIC.to_vec();
        chunk.extend([0u8; 4]);
        let data = if compress {
            let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
            std::io::Write::write_all(&mut e, &body).unwrap();
            chunk.push(CHUNK_COMPRESSED);
            e.finish().unwrap()
        } else {
            chunk.push(CHUNK_CHANGE);
            body
        };
        leb(data.len() as u64, &mut chunk);
        chunk.extend(data);
        chunk
    }

    #[test]
    fn real_changes_pass_compressed_or_not() {
        let mut doc = FolderDoc::new(DeviceId([1; 32]));
        let small = doc.set_name("n", 1).unwrap();
        assert_eq!(check_change(&small), Ok(()));
        let notes = "x".repeat(20_000);
        let edit = ItemEdit {
            fields: [("notes".to_string(), notes)].into(),
            ..Default::default()
        };
        let big = doc
            .add_item(ItemId([2; 16]), ItemType::Note, "big", &edit, 2)
            .unwrap();
        assert_eq!(big[8], CHUNK_COMPRESSED, "Automerge compresses this one");
        assert_eq!(check_change(&big), Ok(()));
    }

    #[test]
    fn a_run_length_bomb_is_refused_before_automerge_sees_it() {
        assert_eq!(check_change(&bomb(1000, false)), Ok(()));
        for compress in [false, true] {
            assert_eq!(
                check_change(&bomb(1 << 40, compress)),
                Err(ChangeBoundsError::TooManyOps)
            );
        }
    }

    #[test]
    fn an_inflation_bomb_is_refused() {
        let zeros = vec![0u8; MAX_INFLATED_BYTES + 10];
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut e, &zeros).unwrap();
        let data = e.finish().unwrap();
        let mut chunk = MAGIC.to_vec();
        chunk.extend([0u8; 4]);
        chunk.push(CHUNK_COMPRESSED);
        leb(data.len() as u64, &mut chunk);
        chunk.extend(data);
        assert!(chunk.len() < 16 * 1024, "a small chunk");
        assert_eq!(check_change(&chunk), Err(ChangeBoundsError::TooLarge));
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = check_change(&bytes);
            let mut chunk = MAGIC.to_vec();
            chunk.extend(&bytes);
            let _ = check_change(&chunk);
        }
    }
}
