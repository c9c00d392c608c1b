//! Integration tests of the replicated core: named scenarios and the
//! deterministic multi-replica simulator.

mod attacks;
mod audit;
mod browser;
mod fast_paths;
mod harness;
mod hostile_peers;
mod manage;
mod manage_attacks;
mod net;
mod recover;
mod relay;
mod replica;
mod roster_admin;
mod scenarios;
mod sim;
mod sim_space;
mod slim_hello;
