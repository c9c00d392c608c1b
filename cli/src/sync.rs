//! `coffer device`, `coffer peers`, `coffer sync`: pairing and peer-to-peer sync.

use clap::Subcommand;
use coffer_ipc::methods as m;

use crate::output::{self, short, time};
use crate::{CliError, Ctx};

#[derive(Subcommand, Debug)]
pub enum DeviceCommand {
    /// Print this device's id and the pairing key other devices trust it by.
    Id,
    /// Pair with another device outside any team (tests, single-user
    /// setups): sync with it, and share folders with it. Teams use
    /// `coffer invite` and `coffer device link` instead.
    #[command(hide = true)]
    Trust {
        /// The other device's pairing key (`coffer device id` there).
        key: String,
        /// A label shown by `coffer peers`.
        #[arg(long)]
        name: Option<String>,
        /// Share this folder with the device (repeatable).
        #[arg(long, value_name = "FOLDER")]
        share: Vec<String>,
        /// Its role in the shared folders: manager, editor or member.
        #[arg(long, default_value = "editor")]
        role: String,
    },
    /// The team's devices (or this one, outside a team).
    Ls,
    /// Name a team device for everyone: `device rename NAME` names this
    /// one; `device rename DEVICE NAME` another of yours, or (admins) any.
    Rename {
        /// [DEVICE] NAME: the device (id or short id from `device ls`;
        /// this device if left out) and its new name.
        #[arg(num_args = 1..=2, required = true, value_name = "[DEVICE] NAME")]
        args: Vec<String>,
    },
    /// Revoke a device: a team device (your own, or any as an admin) stops
    /// syncing at once and the keys of its folders rotate; a paired device
    /// is removed from the folders this device manages.
    Revoke {
        /// Device id (64 hex) or pairing key.
        device: String,
    },
    /// List the devices paired with `device trust`.
    #[command(hide = true)]
    Trusted,
    /// Print a one-time code for adding your new device (`coffer device join CODE` there).
    Link {
        /// How long the code stays valid: like 30m, 24h, 7d.
        #[arg(long, default_value = "24h")]
        expires: String,
    },
    /// On your new device: join your user with a code from `coffer device link`.
    Join(crate::enrol::JoinArgs),
    /// Device joins waiting for your confirmation, with their verification codes.
    Pending,
    /// Admit the new device whose screen shows this verification code.
    Confirm(crate::enrol::Verification),
    /// Refuse the new device whose screen shows this verification code.
    Reject(crate::enrol::Verification),
}

#[derive(Subcommand, Debug)]
pub enum SyncCommand {
    /// Per folder: version vector, pending and quarantined envelopes.
    Status,
    /// Ask every connected peer for what this device lacks; redial the others.
    Now,
}

pub fn device(ctx: &mut Ctx, cmd: DeviceCommand) -> Result<(), CliError> {
    let json = ctx.json;
    match cmd {
        DeviceCommand::Ls => crate::team::devices(ctx)?,
        DeviceCommand::Rename { mut args } => {
            let name = args.pop().unwrap_or_default();
            let device = args.pop();
            let r = ctx.call::<m::DeviceRename>(&m::DeviceRenameParams {
                device: device.clone(),
                name: name.clone(),
            })?;
            if json {
                output::json(&r);
            } else {
                match device {
                    Some(d) => println!("Device {d} is now named {name:?}."),
                    None => println!("This device is now named {name:?}."),
                }
            }
        }
        DeviceCommand::Id => {
            let r = ctx.call::<m::DeviceId>(&m::Empty {})?;
            if json {
                output::json(&r);
            } else {
                println!("device id:   {}", r.device_id);
                if let Some(p) = &r.peer_id {
                    println!("peer id:     {p}");
                }
                println!("pairing key: {}", r.pairing_key);
                println!(
                    "(on the other device: coffer device trust {})",
                    r.pairing_key
                );
            }
        }
        DeviceCommand::Trust {
            key,
            name,
            share,
            role,
        } => {
            let r = ctx.call::<m::DeviceTrust>(&m::DeviceTrustParams {
                key,
                name,
                share,
                role: Some(role),
            })?;
            if json {
                output::json(&r);
            } else {
                println!(
                    "Trusted device {}; shared {} folder(s) with it.",
                    short(&r.device_id),
                    r.shared.len()
                );
            }
        }
        DeviceCommand::Revoke { device } => {
            let r = ctx.call::<m::DeviceRevoke>(&m::DeviceRevokeParams { device })?;
            if json {
                output::json(&r);
            } else {
                println!(
                    "Revoked device {}; the key of {} folder(s) rotated.",
                    short(&r.device_id),
                    r.folders.len()
                );
            }
        }
        DeviceCommand::Link { expires } => crate::enrol::link(ctx, expires)?,
        DeviceCommand::Join(args) => crate::enrol::join(ctx, args, true)?,
        DeviceCommand::Pending => crate::enrol::pending(ctx, true)?,
        DeviceCommand::Confirm(v) => crate::enrol::decide(ctx, true, &v, true)?,
        DeviceCommand::Reject(v) => crate::enrol::decide(ctx, true, &v, false)?,
        DeviceCommand::Trusted => {
            let r = ctx.call::<m::DeviceTrusted>(&m::Empty {})?;
            if json {
                output::json(&r);
            } else if r.is_empty() {
                println!("No trusted devices (see `coffer device trust`).");
            } else {
                for d in r {
                    println!(
                        "{}  {}  since {}",
                        short(&d.device_id),
                        d.name.as_deref().unwrap_or("-"),
                        time(d.added_ms)
                    );
                }
            }
        }
    }
    Ok(())
}

pub fn peers(ctx: &mut Ctx) -> Result<(), CliError> {
    let json = ctx.json;
    let r = ctx.call::<m::Peers>(&m::Empty {})?;
    if json {
        output::json(&r);
        return Ok(());
    }
    if !r.running {
        println!("Network not running (it starts after `coffer init` or the first unlock).");
    } else {
        println!(
            "Listening on {} (mDNS {})",
            if r.listen.is_empty() {
                "nothing".to_string()
            } else {
                r.listen.join(", ")
            },
            if r.mdns { "on" } else { "off" }
        );
    }
    if r.peers.is_empty() {
        println!("No peers (pair with `coffer device trust KEY`).");
    }
    let label = |p: &m::PeerInfo| {
        p.name
            .as_deref()
            .or(p.user.as_deref())
            .unwrap_or("-")
            .to_string()
    };
    let width = r
        .peers
        .iter()
        .map(|p| label(p).chars().count())
        .max()
        .unwrap_or(0);
    for p in &r.peers {
        let contact = match p.last_contact_ms {
            Some(t) => format!("last contact {}", ago(t)),
            None => "no contact yet".into(),
        };
        let state = if p.connected && p.silent {
            // A half-open connection (a partition) is not "connected".
            format!(
                "not answering on {} ({contact})",
                p.address.as_deref().unwrap_or("?")
            )
        } else if p.connected {
            format!(
                "connected {} since {}, {contact}",
                p.address.as_deref().unwrap_or("?"),
                p.connected_since_ms.map(time).unwrap_or_default()
            )
        } else {
            format!("not connected ({contact})")
        };
        println!(
            "{}  {:<width$}  {}  last sync {}",
            short(&p.device_id),
            label(p),
            state,
            p.last_sync_ms.map(time).unwrap_or_else(|| "never".into())
        );
    }
    Ok(())
}

pub fn sync(ctx: &mut Ctx, cmd: SyncCommand) -> Result<(), CliError> {
    let json = ctx.json;
    match cmd {
        SyncCommand::Status => {
            let r = ctx.call::<m::SyncStatus>(&m::Empty {})?;
            if json {
                output::json(&r);
                return Ok(());
            }
            for s in &r.spaces {
                println!(
                    "{} {}: {} envelopes, {} pending, {} quarantined, shared with {} device(s)",
                    short(&s.folder_id),
                    s.name.as_deref().unwrap_or("(locked)"),
                    s.envelopes,
                    s.pending,
                    s.quarantined.len(),
                    s.members.len()
                );
                for (d, seq) in &s.version_vector {
                    println!("    {}  seq {seq}", short(d));
                }
                for q in &s.quarantined {
                    println!(
                        "    quarantined {} by {} seq {}: {}",
                        short(&q.id),
                        short(&q.author),
                        q.seq,
                        q.reason
                    );
                }
                for e in &s.endorsed {
                    println!(
                        "    kept {} by {} seq {}: {} built on it",
                        short(&e.id),
                        short(&e.author),
                        e.seq,
                        short(&e.by_author)
                    );
                }
            }
        }
        SyncCommand::Now => {
            let r = ctx.call::<m::SyncNow>(&m::Empty {})?;
            if json {
                output::json(&r);
            } else {
                println!(
                    "Asked {} connected peer(s) for news; dialling {} other(s).",
                    r.peers, r.dialing
                );
            }
        }
    }
    Ok(())
}

/// "12 s ago", "3 min ago", or the time when longer ago than an hour.
pub(crate) fn ago(ms: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(ms);
    let secs = now.saturating_sub(ms).max(0) / 1000;
    match secs {
        0..=119 => format!("{secs} s ago"),
        120..=3599 => format!("{} min ago", secs / 60),
        _ => time(ms),
    }
}
