//! `item.list` with `stream`: the listing sent in parts (`items`
//! notifications on the request's connection) before its reply, so the
//! first items reach the client before the last are sorted.
//!
//! The vault thread reads the listing ([`Replica::listing`]), sorts only
//! its first [`FIRST_PART`] rows (looking only at the folders they come
//! from), hands them to the connection's writer without waiting (the
//! channel is fresh, so there is room), then the listing's head, and
//! copies the rest out as summaries; nothing on the vault thread waits for
//! the socket. This blocking-pool thread then sorts the rest and sends it in
//! parts of [`PART`] through the same bounded channel, waiting when the
//! client reads slowly: at most the channel's few parts are queued.
//!
//! Not here: the order (the replica's, [`coffer_crdt::replica::ListKey`]),
//! the summary (`convert`), the writing (the connection task).

use std::collections::BTreeSet;
use std::time::Instant;

use coffer_crdt::replica::{sort_first, ListKey, Replica};
use coffer_crdt::SpaceId;
use coffer_ipc::methods::{self as m, ItemsChunk, ListingHead};
use coffer_ipc::{ErrorCode, RpcError};
use serde_json::Value;
use tokio::sync::mpsc::error::TrySendError;
use tracing::debug;

use super::convert::{self, Failure};
use super::{reply, Note, NoteSink};
use crate::vault::actor::VaultHandle;

/// The first part: small, so it is sorted and sent at once.
pub(super) const FIRST_PART: usize = 64;
/// Every later part, at most (about 100 KiB of JSON).
pub(super) const PART: usize = 500;

/// Runs `item.list` with `stream` (the sink has a reader). Errors (locked,
/// no such folder) come before any part, as the plain call's would.
pub(super) fn stream(
    vault: &VaultHandle,
    p: m::ItemListParams,
    sink: NoteSink,
) -> Result<Value, RpcError> {
    let first = sink.clone();
    let start = Instant::now();
    let (first_ms, unsent, mut rest) = vault.blocking_call(move |v| -> Result<_, Failure> {
        let r = v.replica()?;
        let mut first_ms = None;
        let (unsent, rest) = read(r, &p, |part| {
            first_ms.get_or_insert_with(|| start.elapsed().as_secs_f64() * 1e3);
            match first.try_send(Note::Items(part)) {
                Ok(()) => None,
                Err(
                    TrySendError::Full(Note::Items(part)) | TrySendError::Closed(Note::Items(part)),
                ) => Some(part),
                Err(_) => None,
            }
        })?;
        Ok((first_ms, unsent, rest))
    })?;
    let read_ms = start.elapsed().as_secs_f64() * 1e3;
    let gone = || {
        RpcError::new(
            ErrorCode::Internal,
            "the client stopped reading the listing",
        )
    };
    for part in unsent {
        sink.blocking_send(Note::Items(part)).map_err(|_| gone())?;
    }
    let rest_len = rest.len();
    rest.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut rest = rest.into_iter().map(|(_, s)| s);
    loop {
        let items: Vec<m::ItemSummary> = rest.by_ref().take(PART).collect();
        if items.is_empty() {
            break;
        }
        let part = ItemsChunk { head: None, items };
        sink.blocking_send(Note::Items(part)).map_err(|_| gone())?;
    }
    debug!(
        rest = rest_len,
        first_ms,
        read_ms,
        total_ms = start.elapsed().as_secs_f64() * 1e3,
        "streamed listing queued"
    );
    // Every item went in a part: the reply's result carries none.
    reply::<m::ItemList, RpcError>(Vec::new())
}

/// Items not yet in order, each with its place.
type Rest = Vec<(ListKey, m::ItemSummary)>;

/// On the vault thread: the listing's first part, then its head, given to
/// `send` as soon as each is ready (`send` hands a part back when it could
/// not queue it; those after it are then kept too, in order), and the rest
/// as summaries in no order.
fn read(
    r: &Replica,
    p: &m::ItemListParams,
    mut send: impl FnMut(ItemsChunk) -> Option<ItemsChunk>,
) -> Result<(Vec<ItemsChunk>, Rest), Failure> {
    let listing = r.listing(p.folder.as_deref(), p.trash)?;
    let mut rows = listing.rows;
    let names = listing.folder_names;
    let name_of = |f: &SpaceId| names.get(f).cloned().unwrap_or_default();
    let mut unsent = Vec::new();
    let mut queue = |part| {
        if !unsent.is_empty() {
            unsent.push(part);
        } else if let Some(part) = send(part) {
            unsent.push(part);
        }
    };
    let first = FIRST_PART.min(rows.len());
    sort_first(&mut rows, first);
    queue(ItemsChunk {
        head: None,
        items: rows[..first]
            .iter()
            .map(|row| convert::summary_in(name_of(&row.folder), row.item))
            .collect(),
    });
    // The head after the first part: a table waits for it, `--json` not.
    let mut folders = BTreeSet::new();
    let mut last = None;
    let mut name_chars = 0;
    for row in &rows {
        name_chars = name_chars.max(row.item.name.chars().count());
        if last != Some(row.folder) {
            last = Some(row.folder);
            folders.insert(row.folder);
        }
    }
    let head = ListingHead {
        total: rows.len(),
        name_chars,
        folder_chars: folders
            .iter()
            .map(|f| names.get(f).map_or(0, |n| n.chars().count()))
            .max()
            .unwrap_or(0),
    };
    queue(ItemsChunk {
        head: Some(head),
        items: Vec::new(),
    });
    let rest = rows
        .into_iter()
        .skip(first)
        .map(|row| {
            (
                row.key(),
                convert::summary_in(name_of(&row.folder), row.item),
            )
        })
        .collect();
    Ok((unsent, rest))
}
