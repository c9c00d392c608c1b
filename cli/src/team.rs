//! `coffer team`, `coffer user`, `coffer group`, folder sharing and
//! `coffer device ls`: the team roster and who may use which folder.

use clap::{Args, Subcommand};
use coffer_ipc::methods as m;

use crate::output;
use crate::{CliError, Ctx};

#[derive(Subcommand, Debug)]
pub enum TeamCommand {
    /// Found a team; you become its founding admin.
    Create {
        /// The team's name.
        name: String,
    },
    /// The team: name, admins, users, groups, devices.
    Show,
    /// Rename the team (admins only).
    Rename {
        /// The team's new name.
        name: String,
    },
    /// Hand the founding-admin role to another admin (founder only); you
    /// stay an admin.
    Handover {
        /// The admin's email.
        user: String,
    },
    /// Leave the team: your devices stop syncing it and the folders you
    /// could read get new keys (the founding admin cannot leave).
    Leave {
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// List the team's users: name, email, role, devices, joined, last seen.
    Ls,
    /// Remove a user (admins only): their devices stop syncing and the keys
    /// of the folders they could read rotate.
    Remove {
        /// The user's email.
        user: String,
    },
    /// Make a user a team admin (admins only).
    Promote {
        /// The user's email.
        user: String,
    },
    /// Make a team admin a user like the others (an admin they outrank, or
    /// themselves; never the founder).
    Demote {
        /// The user's email.
        user: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// Create a user group (admins only).
    Create {
        /// The group's name.
        group: String,
    },
    /// Add a user to a group: they get every folder shared with it.
    Add {
        /// The group's name.
        group: String,
        /// The user's email.
        user: String,
    },
    /// Take a user out of a group: they lose its folders (keys rotate).
    Remove {
        /// The group's name.
        group: String,
        /// The user's email.
        user: String,
    },
    /// Delete a group (admins only): its members lose the folders it gave
    /// them (keys rotate); the name is not used again.
    Rm {
        /// The group's name.
        group: String,
    },
    /// List groups and their members.
    Ls,
}

/// Who a folder is shared with: one user or one group.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct Grantee {
    /// A user, by email.
    #[arg(long)]
    user: Option<String>,
    /// A user group.
    #[arg(long)]
    group: Option<String>,
}

/// `coffer folder share|role|unshare|members`.
#[derive(Subcommand, Debug)]
pub enum ShareCommand {
    /// Share a folder with a user or group (a personal folder becomes shared in place).
    Share {
        /// The folder: name or id prefix.
        folder: String,
        #[command(flatten)]
        to: Grantee,
        /// manager (Folder Manager), editor (Item Manager) or member (Folder Member).
        #[arg(long)]
        role: String,
    },
    /// Change a user's or group's role in a folder.
    Role {
        /// The folder: name or id prefix.
        folder: String,
        #[command(flatten)]
        to: Grantee,
        /// The new role: manager, editor or member.
        #[arg(long)]
        role: String,
    },
    /// Take a user or group out of a folder; its key rotates.
    Unshare {
        /// The folder: name or id prefix.
        folder: String,
        #[command(flatten)]
        to: Grantee,
    },
    /// Who may use a folder, with which role, and which devices hold its key.
    Members {
        /// The folder: name or id prefix.
        folder: String,
    },
}

pub fn team(ctx: &mut Ctx, cmd: TeamCommand) -> Result<(), CliError> {
    let json = ctx.json;
    let (info, json, created) = match cmd {
        TeamCommand::Rename { name } => {
            let r = ctx.call::<m::TeamRename>(&m::TeamRenameParams { name: name.clone() })?;
            print_change(json, &format!("The team is now named {name:?}."), &r);
            return Ok(());
        }
        TeamCommand::Handover { user } => {
            let r = ctx.call::<m::TeamHandOver>(&m::UserParams { user: user.clone() })?;
            print_change(
                json,
                &format!("{user} is now the team's founding admin."),
                &r,
            );
            return Ok(());
        }
        TeamCommand::Leave { yes } => {
            if crate::input::stdin_is_tty()
                && !yes
                && !crate::input::confirm(
                    "Leave the team? Your devices stop syncing it and you lose every team folder. Type \"yes\": ",
                )?
            {
                return Err(CliError::Usage("you are still in the team".into()));
            }
            let r = ctx.call::<m::TeamLeave>(&m::Empty {})?;
            print_change(json, "You left the team.", &r);
            return Ok(());
        }
        TeamCommand::Create { name } => (
            ctx.call::<m::TeamCreate>(&m::TeamCreateParams { name })?,
            json,
            true,
        ),
        TeamCommand::Show => (ctx.call::<m::TeamShow>(&m::Empty {})?, json, false),
    };
    if json {
        output::json(&info);
        return Ok(());
    }
    if created {
        println!("Created team {:?}; you are its founding admin.", info.name);
    }
    println!("team:    {} ({})", info.name, output::short(&info.team_id));
    if let Some(f) = &info.founder {
        println!("founder: {f}");
    }
    println!("admins:  {}", info.admins.join(", "));
    println!("users:   {}", info.users);
    println!("devices: {}", info.devices);
    if !info.groups.is_empty() {
        println!("groups:  {}", info.groups.join(", "));
    }
    if let Some(me) = &info.me {
        println!("you:     {me}{}", if info.admin { " (admin)" } else { "" });
    }
    Ok(())
}

fn print_change(json: bool, what: &str, change: &m::TeamChangeResult) {
    if json {
        output::json(change);
        return;
    }
    println!("{what}");
    if !change.rotated.is_empty() {
        println!("Rotated the key of: {}", change.rotated.join(", "));
    }
}

pub fn user(ctx: &mut Ctx, cmd: UserCommand) -> Result<(), CliError> {
    let json = ctx.json;
    match cmd {
        UserCommand::Ls => {
            let users = ctx.call::<m::UserList>(&m::Empty {})?;
            if json {
                output::json(&users);
                return Ok(());
            }
            for u in users {
                let mut tags = Vec::new();
                if u.founder {
                    tags.push("founder".to_string());
                } else if u.admin {
                    tags.push("admin".to_string());
                }
                if u.me {
                    tags.push("you".to_string());
                }
                let who = match &u.name {
                    Some(n) => format!("{n} <{}>", u.email),
                    None => u.email.clone(),
                };
                println!(
                    "{who}{}",
                    if tags.is_empty() {
                        String::new()
                    } else {
                        format!("  ({})", tags.join(", "))
                    }
                );
                println!(
                    "    joined {}  last seen {}{}",
                    u.joined_ms.map_or("unknown".into(), output::time),
                    u.last_seen_ms
                        .map_or("not since cofferd started".into(), crate::sync::ago),
                    if u.groups.is_empty() {
                        String::new()
                    } else {
                        format!("  groups: {}", u.groups.join(", "))
                    },
                );
                let devices: Vec<String> = u
                    .device_list
                    .iter()
                    .map(|d| {
                        let short = output::short(&d.device_id);
                        match &d.name {
                            Some(n) => format!("{short} {n:?}"),
                            None => short.to_string(),
                        }
                    })
                    .collect();
                println!("    {} device(s): {}", u.devices, devices.join(", "));
            }
        }
        UserCommand::Remove { user } => {
            let r = ctx.call::<m::UserRemove>(&m::UserParams { user: user.clone() })?;
            print_change(json, &format!("Removed {user} from the team."), &r);
        }
        UserCommand::Promote { user } => {
            let r = ctx.call::<m::UserPromote>(&m::UserParams { user: user.clone() })?;
            print_change(json, &format!("{user} is now a team admin."), &r);
        }
        UserCommand::Demote { user } => {
            let r = ctx.call::<m::UserDemote>(&m::UserParams { user: user.clone() })?;
            print_change(json, &format!("{user} is no longer a team admin."), &r);
        }
    }
    Ok(())
}

pub fn group(ctx: &mut Ctx, cmd: GroupCommand) -> Result<(), CliError> {
    let json = ctx.json;
    match cmd {
        GroupCommand::Create { group } => {
            let r = ctx.call::<m::GroupCreate>(&m::GroupParams {
                group: group.clone(),
                user: None,
            })?;
            print_change(json, &format!("Created group {group:?}."), &r);
        }
        GroupCommand::Add { group, user } => {
            let r = ctx.call::<m::GroupAdd>(&m::GroupParams {
                group: group.clone(),
                user: Some(user.clone()),
            })?;
            print_change(json, &format!("Added {user} to group {group:?}."), &r);
        }
        GroupCommand::Remove { group, user } => {
            let r = ctx.call::<m::GroupRemove>(&m::GroupParams {
                group: group.clone(),
                user: Some(user.clone()),
            })?;
            print_change(json, &format!("Took {user} out of group {group:?}."), &r);
        }
        GroupCommand::Rm { group } => {
            let r = ctx.call::<m::GroupDelete>(&m::GroupParams {
                group: group.clone(),
                user: None,
            })?;
            print_change(json, &format!("Deleted group {group:?}."), &r);
        }
        GroupCommand::Ls => {
            let groups = ctx.call::<m::GroupList>(&m::Empty {})?;
            if json {
                output::json(&groups);
                return Ok(());
            }
            if groups.is_empty() {
                println!("No groups (coffer group create NAME).");
            }
            for g in groups {
                println!("{:<24} {}", g.name, g.members.join(", "));
            }
        }
    }
    Ok(())
}

fn print_members(r: &m::FolderMembersResult) {
    println!("folder {} ({})", r.name, output::short(&r.folder_id));
    for member in &r.members {
        let name = match member.kind.as_str() {
            // A device grant: the folder's creating device, or a paired one.
            "device" => {
                let user = r
                    .devices
                    .iter()
                    .find(|d| d.device_id == member.name)
                    .and_then(|d| d.user.as_deref());
                let short = output::short(&member.name);
                match user {
                    Some(u) => format!("{short} ({u})"),
                    None => short.to_string(),
                }
            }
            _ => member.name.clone(),
        };
        println!("  {:<6} {:<32} {}", member.kind, name, member.role);
    }
    let keyless = r.devices.iter().filter(|d| !d.has_key).count();
    println!(
        "  {} device(s), key epoch {}{}",
        r.devices.len(),
        r.epochs,
        if keyless > 0 {
            format!(", {keyless} still waiting for the key")
        } else {
            String::new()
        }
    );
}

pub fn share(ctx: &mut Ctx, cmd: ShareCommand) -> Result<(), CliError> {
    let json = ctx.json;
    let r = match cmd {
        ShareCommand::Share { folder, to, role } => {
            ctx.call::<m::FolderShare>(&m::FolderShareParams {
                folder,
                user: to.user,
                group: to.group,
                role: Some(role),
            })?
        }
        ShareCommand::Role { folder, to, role } => {
            ctx.call::<m::FolderRole>(&m::FolderShareParams {
                folder,
                user: to.user,
                group: to.group,
                role: Some(role),
            })?
        }
        ShareCommand::Unshare { folder, to } => {
            ctx.call::<m::FolderUnshare>(&m::FolderShareParams {
                folder,
                user: to.user,
                group: to.group,
                role: None,
            })?
        }
        ShareCommand::Members { folder } => {
            ctx.call::<m::FolderMembers>(&m::FolderRef { folder })?
        }
    };
    if json {
        output::json(&r);
    } else {
        print_members(&r);
    }
    Ok(())
}

pub fn devices(ctx: &mut Ctx) -> Result<(), CliError> {
    let json = ctx.json;
    let devices = ctx.call::<m::DeviceList>(&m::Empty {})?;
    if json {
        output::json(&devices);
        return Ok(());
    }
    for d in devices {
        let mut line = format!(
            "{}  {:<20}  {}",
            output::short(&d.device_id),
            d.name.as_deref().unwrap_or("-"),
            d.user
        );
        if d.revoked {
            line.push_str("  revoked");
        }
        if d.this_device {
            line.push_str("  (this device)");
        }
        println!("{line}");
    }
    Ok(())
}
