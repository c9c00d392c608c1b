//! The decoders of coffer-crdt under fuzzing, compiled from coffer-crdt's
//! own source files (`ids`, `crypto`, `envelope`, `ops`, `audit`, `sync_wire`) without the rest
//! of the crate: no Automerge, so a cold fuzz build takes a fraction of the
//! time (CI builds it from scratch). The code fuzzed is the code shipped.

#[path = "../../crdt/src/audit.rs"]
pub mod audit;
#[path = "../../crdt/src/crypto.rs"]
pub mod crypto;
#[path = "../../crdt/src/envelope.rs"]
pub mod envelope;
#[path = "../../crdt/src/ids.rs"]
pub mod ids;
#[path = "../../crdt/src/ops.rs"]
pub mod ops;
#[path = "../../crdt/src/sync_wire.rs"]
pub mod sync_wire;
