//! `coffer invite`, `coffer join` and the device-link commands (`coffer
//! device link|join|pending|confirm|reject`): enrolment with a one-time
//! code and a verification code both screens show.

use std::io::Write;

use clap::{Args, Subcommand};
use coffer_ipc::methods as m;
use coffer_ipc::ErrorCode;

use crate::output::{self, time};
use crate::{input, CliError, Ctx};

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct InviteArgs {
    #[command(subcommand)]
    pub command: Option<InviteCommand>,
    /// The invitee's email address.
    #[arg(required = true)]
    pub email: Option<String>,
    /// The invitee's name (default: the email).
    #[arg(long)]
    pub name: Option<String>,
    /// A user group the invitee joins (repeatable; created if new).
    #[arg(long = "group", value_name = "G")]
    pub groups: Vec<String>,
    /// Make the invitee a team admin.
    #[arg(long)]
    pub admin: bool,
    /// How long the code stays valid: like 30m, 24h, 7d.
    #[arg(long, default_value = "24h")]
    pub expires: String,
    /// Re-invite an existing user to a fresh device (lost device or
    /// forgotten PIN): confirming revokes their other devices; their
    /// Personal folder cannot come back.
    #[arg(long, conflicts_with_all = ["groups", "admin"])]
    pub recover: bool,
}

#[derive(Subcommand, Debug)]
pub enum InviteCommand {
    /// Invites and device links this daemon keeps: open ones, and closed
    /// ones for an hour (id, state, created, expires).
    #[command(visible_alias = "list")]
    Ls,
    /// Cancel an open invite or device link: its code stops working.
    Cancel {
        /// The invite's id from `coffer invite ls` (4 or more hex digits),
        /// or the invitee's email.
        invite: String,
    },
    /// Joins waiting for your confirmation, with their verification codes.
    Pending,
    /// Admit the join whose screen shows this verification code.
    Confirm(Verification),
    /// Refuse the join whose screen shows this verification code.
    Reject(Verification),
}

/// The verification code a joiner's screen shows (`confirm` / `reject`).
#[derive(Args, Debug)]
pub struct Verification {
    /// The 6 digits (`123 456` or `123456`).
    #[arg(num_args = 1..=2, required = true)]
    verification_code: Vec<String>,
}

#[derive(Args, Debug)]
pub struct JoinArgs {
    /// The invite code (`coffer invite` on the inviter's device).
    pub code: String,
    /// The inviter's address, e.g. /ip4/192.168.1.5/tcp/7373 (default: find it with mDNS).
    #[arg(long = "peer", value_name = "MULTIADDR")]
    pub peers: Vec<String>,
    /// Read the new PIN as one line from stdin (read first, set once admitted).
    #[arg(long)]
    pub pin_stdin: bool,
    /// This device's name in the team (default: the host name).
    #[arg(long)]
    pub name: Option<String>,
}

fn kind_name(device: bool) -> &'static str {
    if device {
        "device"
    } else {
        "user"
    }
}

fn print_code(r: &m::InviteResult, json: bool, device: bool) {
    if json {
        output::json(r);
        return;
    }
    let (what, join) = if device {
        ("Device link code", "coffer device join")
    } else {
        ("Invite code", "coffer join")
    };
    eprintln!(
        "{what} for {} (single use, valid until {}); give it to them privately:",
        r.email,
        time(r.expires_ms)
    );
    println!("{}", r.code);
    // The daemon lists only addresses another device can dial (no
    // loopback, no link-local IPv6), the best first.
    eprintln!(
        "On the new device: {join} CODE{}",
        r.addresses
            .first()
            .map(|a| format!("   (or with --peer {a} if mDNS cannot find this device)"))
            .unwrap_or_default()
    );
    eprintln!(
        "Then compare the verification codes: `coffer {} pending`, and `coffer {} confirm VERIFICATION_CODE`.",
        if device { "device" } else { "invite" },
        if device { "device" } else { "invite" }
    );
}

pub fn invite(ctx: &mut Ctx, args: InviteArgs) -> Result<(), CliError> {
    let json = ctx.json;
    match args.command {
        Some(InviteCommand::Ls) => list(ctx),
        Some(InviteCommand::Cancel { invite }) => cancel(ctx, invite),
        Some(InviteCommand::Pending) => pending(ctx, false),
        Some(InviteCommand::Confirm(v)) => decide(ctx, false, &v, true),
        Some(InviteCommand::Reject(v)) => decide(ctx, false, &v, false),
        None => {
            let email = args
                .email
                .ok_or_else(|| CliError::Usage("an email address is needed".into()))?;
            let r = ctx.call::<m::InviteCreate>(&m::InviteParams {
                email,
                name: args.name,
                groups: args.groups,
                admin: args.admin,
                expires: Some(args.expires),
                recover: args.recover,
            })?;
            print_code(&r, json, false);
            if let (Some(note), false) = (&r.note, json) {
                eprintln!("{note}");
            }
            Ok(())
        }
    }
}

/// `coffer device link`.
pub fn link(ctx: &mut Ctx, expires: String) -> Result<(), CliError> {
    let json = ctx.json;
    let r = ctx.call::<m::DeviceLink>(&m::LinkParams {
        expires: Some(expires),
    })?;
    print_code(&r, json, true);
    Ok(())
}

fn invite_line(i: &m::InviteInfo) -> String {
    let what = if i.kind == "device" {
        "device link"
    } else {
        "invite"
    };
    format!(
        "{}  {what} for {} <{}>  {}  created {}  expires {}",
        &i.id[..i.id.len().min(8)],
        i.name,
        i.email,
        i.state,
        time(i.created_ms),
        time(i.expires_ms)
    )
}

/// `coffer invite ls`.
pub fn list(ctx: &mut Ctx) -> Result<(), CliError> {
    let list = ctx.call::<m::InviteList>(&m::Empty {})?;
    if ctx.json {
        output::json(&list);
        return Ok(());
    }
    if list.is_empty() {
        println!("No invites (restarting the daemon cancels open ones).");
        return Ok(());
    }
    for i in &list {
        println!("{}", invite_line(i));
    }
    Ok(())
}

/// `coffer invite cancel ID|EMAIL`.
pub fn cancel(ctx: &mut Ctx, invite: String) -> Result<(), CliError> {
    let r = ctx.call::<m::InviteCancel>(&m::InviteCancelParams { invite })?;
    if ctx.json {
        output::json(&r);
        return Ok(());
    }
    println!("Cancelled: {}", invite_line(&r));
    Ok(())
}

/// `coffer invite pending` / `coffer device pending`.
pub fn pending(ctx: &mut Ctx, device: bool) -> Result<(), CliError> {
    let json = ctx.json;
    let list = ctx.call::<m::InvitePending>(&m::PendingParams {
        kind: kind_name(device).into(),
    })?;
    if json {
        output::json(&list);
        return Ok(());
    }
    if list.is_empty() {
        println!("No join is waiting for confirmation.");
        return Ok(());
    }
    for p in &list {
        let mut extra = Vec::new();
        if !p.groups.is_empty() {
            extra.push(format!("groups {}", p.groups.join(", ")));
        }
        if p.admin {
            extra.push("admin".into());
        }
        if p.recover {
            extra.push("recovery: confirming revokes their other devices".into());
        }
        println!(
            "{}  {} <{}>  device {} ({}){}  since {}",
            p.verification_code,
            p.name,
            p.email,
            output::short(&p.device_id),
            p.device_name,
            if extra.is_empty() {
                String::new()
            } else {
                format!("  [{}]", extra.join("; "))
            },
            time(p.since_ms)
        );
    }
    println!(
        "Confirm only the code the new device shows: coffer {} confirm VERIFICATION_CODE",
        if device { "device" } else { "invite" }
    );
    Ok(())
}

/// `coffer invite confirm|reject` / `coffer device confirm|reject`.
pub fn decide(ctx: &mut Ctx, device: bool, v: &Verification, admit: bool) -> Result<(), CliError> {
    let json = ctx.json;
    let params = m::DecideParams {
        kind: kind_name(device).into(),
        verification_code: v.verification_code.join(" "),
    };
    let r = if admit {
        ctx.call::<m::InviteConfirm>(&params)?
    } else {
        ctx.call::<m::InviteReject>(&params)?
    };
    if json {
        output::json(&r);
        return Ok(());
    }
    let who = format!("{} (device {})", r.email, output::short(&r.device_id));
    if let (true, Some(rec)) = (admit, &r.recovery) {
        print_recovery(&who, r.delivered, rec);
        return Ok(());
    }
    match (admit, r.delivered) {
        (true, true) => println!("Admitted {who}."),
        (true, false) => println!(
            "Admitted {who} to the roster, but the joiner had gone: they can run the same join again with a new code from you, and it will finish."
        ),
        (false, _) => println!("Rejected {who}."),
    }
    Ok(())
}

/// `coffer join` / `coffer device join`.
pub fn join(ctx: &mut Ctx, args: JoinArgs, device: bool) -> Result<(), CliError> {
    let json = ctx.json;
    // The PIN is read first (the stdin line), and set once admitted.
    let pin = if args.pin_stdin {
        Some(input::pin(true, false)?)
    } else {
        None
    };
    // A fresh device will need a PIN once admitted: fail now, not then.
    if pin.is_none() && !input::stdin_is_tty() && !ctx.call::<m::Status>(&m::Empty {})?.initialized
    {
        return Err(CliError::Usage(
            "no terminal to ask for this device's new PIN: pass --pin-stdin and give it on stdin"
                .into(),
        ));
    }
    let started = ctx.call::<m::JoinStart>(&m::JoinStartParams {
        code: args.code,
        kind: kind_name(device).into(),
        peers: args.peers,
        pin: pin.as_ref().map(|p| p.expose().to_string()),
        device_name: args.name,
    })?;
    if json {
        output::json_line(&started);
    } else {
        println!(
            "Found the inviter: team {:?}, joining as {} <{}>.",
            started.team_name, started.name, started.email
        );
        println!("Verification code: {}", started.verification_code);
        println!(
            "Check that the inviter's `coffer {} pending` shows the same code; waiting for their confirmation...",
            if device { "device" } else { "invite" }
        );
    }
    let _ = std::io::stdout().flush();
    let mut r = ctx.call::<m::JoinWait>(&m::JoinIdParams {
        join_id: started.join_id,
    })?;
    let mut attempts = 0;
    while r.needs_pin {
        attempts += 1;
        if !json {
            println!("Admitted. Choose a PIN for this device.");
        }
        let pin = match input::new_pin(false, |pin| ctx.check_pin(pin)) {
            Ok(pin) => pin,
            Err(CliError::Rpc(e)) if e.kind() == Some(ErrorCode::InvalidInput) && attempts < 3 => {
                eprintln!("error: {}", e.message);
                continue;
            }
            Err(e) => return Err(e),
        };
        match ctx.call::<m::JoinFinish>(&m::JoinFinishParams {
            join_id: started.join_id,
            pin: pin.expose().to_string(),
        }) {
            Ok(done) => r = done,
            Err(CliError::Rpc(e)) if e.kind() == Some(ErrorCode::InvalidInput) && attempts < 3 => {
                eprintln!("error: {}", e.message);
            }
            Err(e) => return Err(e),
        }
    }
    if json {
        output::json_line(&r);
    } else {
        println!(
            "Enrolled: this device is in team {:?} as {}{}.",
            r.team_name,
            r.email,
            if started.fresh {
                "; the vault is unlocked"
            } else {
                ""
            }
        );
    }
    Ok(())
}

fn print_recovery(who: &str, delivered: bool, rec: &m::RecoveryResult) {
    println!("Recovered {who}.");
    if rec.revoked.is_empty() {
        println!("No other device of theirs was live.");
    } else {
        let ids: Vec<&str> = rec.revoked.iter().map(|d| output::short(d)).collect();
        println!("Revoked their old device(s): {}.", ids.join(", "));
    }
    let (ready, waiting): (Vec<_>, Vec<_>) = rec.folders.iter().partition(|f| f.has_key);
    if !ready.is_empty() {
        let names: Vec<&str> = ready.iter().map(|f| f.name.as_str()).collect();
        println!("Handed to the new device: {}.", names.join(", "));
    }
    if !waiting.is_empty() {
        let names: Vec<&str> = waiting.iter().map(|f| f.name.as_str()).collect();
        println!(
            "Keys still to hand over (a Folder or Item Manager's device does it when it next syncs): {}.",
            names.join(", ")
        );
    }
    println!(
        "Folders shared with them that this device does not hold reach the new device from their other members. Their old Personal folder stays behind: they start with an empty one."
    );
    if !delivered {
        println!(
            "The joiner had gone before hearing the answer: they can run the same join again with a new `--recover` code from you, and it will finish."
        );
    }
}

/// `coffer reset`: erases this device's vault (for a forgotten PIN).
pub fn reset(ctx: &mut Ctx, yes: bool) -> Result<(), CliError> {
    let status = ctx.call::<m::Status>(&m::Empty {})?;
    if !yes && !input::stdin_is_tty() {
        return Err(CliError::Usage(
            "`coffer reset` erases this device's vault: run it on a terminal to confirm, or pass --yes".into(),
        ));
    }
    if !ctx.json {
        eprintln!("{}", reset_warning(&status));
    }
    if !yes && !input::confirm_word("Type \"reset\" to erase this device's vault: ", "reset")? {
        return Err(CliError::Usage("not confirmed: nothing was erased".into()));
    }
    let r = ctx.call::<m::Reset>(&m::ResetParams { confirm: true })?;
    ctx.print(&r, |r| {
        match &r.device_id {
            Some(d) => println!(
                "Erased the vault of device {}{}.",
                output::short(d),
                r.email.as_ref().map(|e| format!(" ({e})")).unwrap_or_default()
            ),
            None => println!("There was no vault on this device; its data folder is empty now."),
        }
        println!(
            "The daemon stopped. Start again with `coffer init` (a new vault) or `coffer join CODE` (a code from a team admin's `coffer invite EMAIL --recover`)."
        );
    });
    Ok(())
}

/// What `coffer reset` warns about before it erases anything.
fn reset_warning(s: &m::StatusResult) -> String {
    let who = match (&s.device_id, &s.email) {
        (Some(d), Some(e)) => format!(" (device {} of {e})", output::short(d)),
        _ => String::new(),
    };
    let counts = match (s.folders, s.items) {
        (Some(f), Some(i)) => format!(": {f} folder(s), {i} item(s) readable here now"),
        _ => String::new(),
    };
    let email = s.email.as_deref().unwrap_or("EMAIL");
    format!(
        "This erases this device's vault{who}{counts}. Its keys and everything stored on it are \
         deleted, and no PIN is needed or asked for.\n\
         - Folders shared with you come back: a team admin re-invites you with \
         `coffer invite {email} --recover`, you join with the code, and your new device gets \
         every folder shared with you or your groups; this device is revoked.\n\
         - Your Personal folder is held only by your own devices: if this is your only device, \
         its items are LOST for good (no admin holds its key).\n\
         - If you have another device that still works, link this one again from there after \
         the reset (`coffer device link` there, `coffer device join CODE` here) and you keep \
         everything, Personal folder included."
    )
}
