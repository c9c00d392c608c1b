//! cofferd's library: everything with IO lives here.
//!
//! What it is: the PIN keystore ([`keystore`]), the SQLite store ([`store`]),
//! the vault that ties keys, spaces and folder documents together
//! ([`vault`]), TOTP ([`totp`]), the JSON-RPC server over the Unix socket
//! ([`server`]) and peer-to-peer sync over libp2p with mDNS discovery
//! ([`net`]). What it is not: the replication rules (those are in
//! `coffer-crdt`, which this crate drives) or the wire types (`coffer-ipc`).

pub mod config;
pub mod export;
pub mod import;
pub mod keystore;
pub mod logfile;
pub mod net;
pub mod server;
pub mod store;

pub mod vault;
