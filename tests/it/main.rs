//! Coffer's process-level integration tests: the real `cofferd` and `coffer`
//! binaries as separate processes, each test in its own temp dir with its
//! own daemon. Build first: `cargo build --workspace && cargo test --workspace`.

mod admins;
mod audit;
mod autostart;
mod bad_input;
mod browser_host;
mod cli_e2e;
mod clipboard;
mod conflicts;
mod crash;
mod daily;
mod discovery;
mod doctor;
mod enrol;
mod export;
mod hostile;
mod import;
mod json_output;
mod ls_stream;
mod no_plaintext;
mod personal;
mod recover;
mod relay;
mod relay_nat;
mod removal;
mod roster_names;
mod rough_edges;
mod secret_refs;
mod service;
mod standing;
mod sync;
mod team;
mod tidy;
mod totp_vectors;
mod web;
