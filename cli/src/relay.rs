//! `coffer relay`: the team's keyless relays (`add`, `ls`, `remove`: a
//! signed roster op, admins only) and, asked of `cofferd --relay` itself
//! (`--socket` or `COFFER_SOCKET` pointing at it), `status`.

use clap::Subcommand;
use coffer_ipc::methods as m;
use coffer_ipc::Client;

use crate::{output, CliError, Ctx};

#[derive(Subcommand, Debug)]
pub enum RelayCommand {
    /// Add a keyless relay to the team (admins only): every device then
    /// syncs the team's envelopes with it, which it stores and forwards
    /// without any key. Give its address with /p2p/PEER_ID (what
    /// `coffer relay status` prints on the relay).
    Add {
        /// The relay's multiaddr(s), e.g. /ip4/203.0.113.7/tcp/7373/p2p/12D3KooW...
        #[arg(required = true, num_args = 1..)]
        multiaddr: Vec<String>,
    },
    /// The team's relays: peer id, addresses, connected now.
    Ls,
    /// Remove a relay (admins only): devices stop syncing with it, and it
    /// drops every envelope of the team once told.
    Remove {
        /// The relay's peer id (or device id).
        relay: String,
    },
    /// Asked of a relay (`cofferd --relay`): the teams it holds, their
    /// envelopes and bytes, what it refused. Never starts a daemon.
    Status,
    /// Asked of a relay by its operator: hold the team with this id (from
    /// `coffer team show --json` on one of its devices). A relay takes no
    /// team its operator did not accept, so nobody can store things on it
    /// by founding a team and adding it. Never starts a daemon.
    Accept {
        /// The team's id (hex).
        team: String,
    },
    /// Asked of a relay by its operator: stop holding the team with this
    /// id (undoes `accept`): everything the relay holds of it is deleted and
    /// its devices are refused. Never starts a daemon.
    Forget {
        /// The team's id (hex).
        team: String,
    },
}

pub fn relay(ctx: &mut Ctx, cmd: RelayCommand) -> Result<(), CliError> {
    let json = ctx.json;
    match cmd {
        RelayCommand::Add { multiaddr } => {
            ctx.call::<m::RelayAdd>(&m::RelayAddParams { addrs: multiaddr })?;
            if json {
                output::json(&serde_json::json!({"added": true}));
            } else {
                println!("Relay added: the team's devices sync with it from now on.");
            }
        }
        RelayCommand::Ls => {
            let r = ctx.call::<m::RelayList>(&m::Empty {})?;
            ctx.print(&r, |r| {
                if r.relays.is_empty() {
                    println!("No relay: add one with `coffer relay add MULTIADDR`.");
                }
                for relay in &r.relays {
                    let state = if relay.connected {
                        "connected"
                    } else {
                        "not connected"
                    };
                    println!("{}  {}  {}", relay.peer_id, state, relay.addrs.join(" "));
                }
            });
        }
        RelayCommand::Remove { relay } => {
            ctx.call::<m::RelayRemove>(&m::RelayRemoveParams { relay })?;
            if json {
                output::json(&serde_json::json!({"removed": true}));
            } else {
                println!("Relay removed: the team's devices no longer sync with it.");
            }
        }
        RelayCommand::Accept { team } => {
            connect_relay(ctx)?;
            let s = ctx.call::<m::RelayAccept>(&m::RelayAcceptParams { team })?;
            ctx.print(&s, |s| {
                println!(
                    "Accepted: the relay holds the team once one of its devices connects ({} team(s) accepted).",
                    s.accepted.len()
                )
            });
        }
        RelayCommand::Forget { team } => {
            connect_relay(ctx)?;
            let s = ctx.call::<m::RelayForget>(&m::RelayAcceptParams { team })?;
            ctx.print(&s, |s| {
                println!(
                    "Forgotten: the relay no longer holds the team and refuses its devices ({} team(s) accepted).",
                    s.accepted.len()
                )
            });
        }
        RelayCommand::Status => {
            connect_relay(ctx)?;
            let s = ctx.call::<m::RelayStatus>(&m::Empty {})?;
            ctx.print(&s, |s| {
                println!("Relay {}", s.peer_id);
                for a in &s.listen {
                    println!("  listening on {a}/p2p/{}", s.peer_id);
                }
                println!(
                    "{} team(s); {} peer(s) without a team; {} session(s) refused; {} batch(es) not kept (team full)",
                    s.teams.len(),
                    s.pending,
                    s.refused_sessions,
                    s.dropped_full
                );
                for t in &s.teams {
                    println!(
                        "  {} ({}): {} spaces, {} envelopes, {} bytes, {} refused by the rule, {} device(s) connected{}",
                        t.name,
                        &t.team_id[..16],
                        t.spaces,
                        t.envelopes,
                        t.bytes,
                        t.quarantined,
                        t.connected,
                        if t.full { ", FULL" } else { "" }
                    );
                }
            });
        }
    }
    Ok(())
}

/// Talks to the relay at the target socket: never starts a daemon.
fn connect_relay(ctx: &mut Ctx) -> Result<(), CliError> {
    let client = Client::connect(&ctx.target.socket).map_err(|e| {
        CliError::Unavailable(format!(
            "no relay answers on {}: {e} (start it with `cofferd --relay`)",
            ctx.target.socket.display()
        ))
    })?;
    ctx.client = Some(client);
    Ok(())
}
