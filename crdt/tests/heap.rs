//! What a folder document keeps after it takes received changes: a test
//! binary of its own, counting the heap with a global allocator.
//!
//! Automerge 0.12 logs every op of an applied change into the document's
//! patch log even while the log is inactive and keeps it until a diff
//! cursor is reset; `FolderDoc` drops it after every apply. Without that,
//! a rebuilt 10,000-item folder kept ≈ 21 MB of patch events (half the
//! unlocked daemon's heap, measured with heaptrack).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicIsize, Ordering};

use coffer_crdt::{DeviceId, FolderDoc, ItemEdit, ItemId, ItemType};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counter only adds up the sizes asked for.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const ITEMS: usize = 1_000;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// The heap a document that took every change keeps, per item: applied in
/// one batch (a rebuild) or one at a time (sync), it stays within a small
/// multiple of the same document loaded from its compact save.
#[test]
fn a_document_keeps_no_log_of_the_changes_it_applied() {
    let author = DeviceId([1; 32]);
    let mut source = FolderDoc::new(author);
    let changes: Vec<Vec<u8>> = (0..ITEMS)
        .map(|i| {
            let edit = ItemEdit {
                name: None,
                fields: BTreeMap::from([
                    ("username".to_string(), format!("user{i:05}")),
                    ("password".to_string(), format!("secret-{i:05}-xyz")),
                ]),
                urls: Some(vec![format!("https://svc{i:05}.example")]),
            };
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(i as u64).to_le_bytes());
            source
                .add_item(
                    ItemId(id),
                    ItemType::Login,
                    &format!("svc{i:05}"),
                    &edit,
                    1_000 + i as i64,
                )
                .expect("an item")
        })
        .collect();
    let saved = source.save();
    drop(source);

    let before = live();
    let batch = {
        let mut doc = FolderDoc::new(DeviceId([2; 32]));
        doc.apply_changes(changes.iter().map(|c| (author, c.as_slice())))
            .expect("the changes apply");
        assert_eq!(doc.items().len(), ITEMS);
        let kept = live() - before;
        drop(doc);
        kept
    };
    let before = live();
    let one_by_one = {
        let mut doc = FolderDoc::new(DeviceId([2; 32]));
        for c in &changes {
            doc.apply_change(&author, c).expect("a change applies");
        }
        let kept = live() - before;
        drop(doc);
        kept
    };
    let before = live();
    let loaded = {
        let doc = automerge::AutoCommit::load(&saved).expect("the save loads");
        let kept = live() - before;
        drop(doc);
        kept
    };
    let per_item = |b: isize| b / ITEMS as isize;
    eprintln!(
        "kept per item: batch {} B, one by one {} B, loaded from the save {} B",
        per_item(batch),
        per_item(one_by_one),
        per_item(loaded)
    );
    for (how, kept) in [("in one batch", batch), ("one by one", one_by_one)] {
        assert!(
            kept < 3 * loaded,
            "a document that applied {ITEMS} changes {how} keeps {} B per item, \
             a loaded one {} B",
            per_item(kept),
            per_item(loaded)
        );
    }
}
