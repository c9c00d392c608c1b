//! `coffer audit`: the audit trail this device holds (an admin's: the
//! team's; anyone's: their own), filtered; `audit verify` checks every
//! chain; `audit export` writes the records for a compliance archive.
//! And [`note`], which tells the daemon what this CLI did with a value it
//! was served (copied, printed): the daemon cannot see that.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use coffer_ipc::methods as m;

use crate::output;
use crate::{CliError, Ctx};

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: Option<AuditCommand>,
    #[command(flatten)]
    pub filter: Filter,
    /// Print CSV (a header line, then one line per record).
    #[arg(long, conflicts_with = "follow")]
    pub csv: bool,
    /// Keep printing new records as they arrive (Ctrl-C stops).
    #[arg(long)]
    pub follow: bool,
}

#[derive(Args, Debug, Default)]
pub struct Filter {
    /// Only records since: a duration back from now (7d, 24h, 30m) or a time (2026-12-01, 2026-12-01T09:00:00Z).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only records until: a duration back from now or a time, as --since.
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Only this user's records (email).
    #[arg(long, value_name = "EMAIL")]
    pub user: Option<String>,
    /// Only this device's records (id or a prefix of it).
    #[arg(long, value_name = "ID")]
    pub device: Option<String>,
    /// Only records about this folder (name or id prefix).
    #[arg(long, value_name = "FOLDER")]
    pub folder: Option<String>,
    /// Only records about this item (its name at the time, or id prefix).
    #[arg(long, value_name = "ITEM")]
    pub item: Option<String>,
    /// Only this action; repeat for several (reveal, copy, totp-show, totp-copy, export, backup, history-view, unlock, unlock-failed, lock, invite-created, join-confirmed, join-rejected, device-linked, secret-read).
    #[arg(long = "action", value_name = "ACTION")]
    pub actions: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check every device's chain held here: gaps, forks and bad signatures,
    /// each with its device and user. Exits 22 when it finds one.
    Verify,
    /// For a departing or removed user: every item they could read (and
    /// since which key epoch), the uses recorded, and which changed since
    /// their removal: the credentials to rotate. Admins only.
    Exposure {
        /// The user's email.
        user: String,
    },
    /// Show or set (a team admin) how many days this device keeps audit
    /// records (default 365), and prune past it: the device's own chain
    /// gets a signed checkpoint, so `audit verify` sees no gap.
    Retention {
        /// Keep this many days (1 to 36500).
        days: Option<u32>,
    },
    /// Write the records (filtered as `coffer audit`) to FILE for an archive.
    Export {
        /// The file to write (a new file, mode 0600).
        file: PathBuf,
        /// json or csv.
        #[arg(long, default_value = "json")]
        format: String,
        #[command(flatten)]
        filter: Box<Filter>,
    },
}

/// Tells the daemon what this CLI did with a value (best effort: an old
/// daemon without the method, or a locked one, records nothing).
pub fn note(ctx: &mut Ctx, action: &str, item: &str, field: &str) {
    let params = m::AuditNoteParams {
        action: action.into(),
        item: Some(item.into()),
        field: (!field.is_empty()).then(|| field.to_string()),
    };
    let _ = ctx.call::<m::AuditNote>(&params);
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A `--since`/`--until` value as unix ms.
fn parse_when(s: &str, now: i64) -> Result<i64, CliError> {
    let s = s.trim();
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(now.saturating_sub(d.as_millis() as i64));
    }
    let text = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_string()
    };
    humantime::parse_rfc3339_weak(&text)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .ok_or_else(|| {
            CliError::Usage(format!(
                "{s:?} is neither a duration (7d, 24h) nor a time (2026-12-01, 2026-12-01T09:00:00Z)"
            ))
        })
}

fn params(f: &Filter) -> Result<m::AuditQueryParams, CliError> {
    let now = now_ms();
    Ok(m::AuditQueryParams {
        since_ms: f.since.as_deref().map(|s| parse_when(s, now)).transpose()?,
        until_ms: f.until.as_deref().map(|s| parse_when(s, now)).transpose()?,
        user: f.user.clone(),
        device: f.device.clone(),
        folder: f.folder.clone(),
        item: f.item.clone(),
        actions: f.actions.clone(),
        after: None,
        limit: None,
        // Without --since: the newest records, not the oldest 10,000.
        newest: f.since.is_none(),
    })
}

pub fn run(ctx: &mut Ctx, args: AuditArgs) -> Result<(), CliError> {
    match args.command {
        Some(AuditCommand::Verify) => verify(ctx),
        Some(AuditCommand::Exposure { user }) => exposure(ctx, &user),
        Some(AuditCommand::Retention { days }) => {
            let r = ctx.call::<m::AuditRetention>(&m::AuditRetentionParams { days })?;
            ctx.print(&r, |r| {
                println!("Audit records are kept {} days on this device.", r.days);
                if let Some(t) = r.checkpoint_through {
                    println!("Checkpoint written: this device's records up to #{t} pruned.");
                }
                if r.pruned_rows > 0 {
                    println!("{} records past the retention dropped.", r.pruned_rows);
                }
            });
            Ok(())
        }
        Some(AuditCommand::Export {
            file,
            format,
            filter,
        }) => export(ctx, &file, &format, &filter),
        None => list(ctx, &args.filter, args.csv, args.follow),
    }
}

fn list(ctx: &mut Ctx, filter: &Filter, csv: bool, follow: bool) -> Result<(), CliError> {
    let mut p = params(filter)?;
    let entries = ctx.call::<m::AuditQuery>(&p)?;
    if csv {
        print!("{}", to_csv(&entries));
        return Ok(());
    }
    if !follow {
        ctx.print(&entries, |e| human(e, true));
        return Ok(());
    }
    // One JSON object (or line) per record as they come.
    let show = |ctx: &Ctx, e: &[m::AuditEntry], header: bool| {
        if ctx.json {
            for x in e {
                println!(
                    "{}",
                    serde_json::to_string(x).expect("plain data serialises")
                );
            }
        } else {
            human(e, header);
        }
        let _ = std::io::stdout().flush();
    };
    show(ctx, &entries, true);
    let mut after = entries.last().map(|e| e.cursor.clone());
    // From here on: what came after the newest shown.
    p.newest = false;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        p.after = after.clone();
        let more = ctx.call::<m::AuditQuery>(&p)?;
        if let Some(last) = more.last() {
            after = Some(last.cursor.clone());
        }
        show(ctx, &more, false);
    }
}

fn short(hex: &str) -> &str {
    hex.get(..12).unwrap_or(hex)
}

/// The record's user as "Name <email>" when the roster names them, else
/// the email (as `coffer history` names people).
fn person(e: &m::AuditEntry) -> String {
    match &e.user_name {
        Some(name) => format!("{name} <{}>", e.user),
        None => e.user.clone(),
    }
}

fn human(entries: &[m::AuditEntry], header: bool) {
    if entries.is_empty() && header {
        println!("No audit records.");
        return;
    }
    for e in entries {
        let what = match (&e.folder_name, &e.item_name) {
            (Some(f), Some(i)) => format!("{f}/{i}"),
            (None, Some(i)) => i.clone(),
            _ => String::new(),
        };
        let field = e
            .field
            .as_deref()
            .map(|f| format!(" [{f}]"))
            .unwrap_or_default();
        let detail = e
            .detail
            .as_deref()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        let device = e
            .device_name
            .clone()
            .unwrap_or_else(|| short(&e.device).into());
        println!(
            "{}  {:<24} {:<16} {:<14} {what}{field}{detail}",
            output::time(e.time_ms),
            person(e),
            device,
            e.action
        );
    }
}

fn csv_field(s: &str) -> String {
    // A leading =, +, - or @ would be a formula in a spreadsheet.
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The CSV of `coffer audit --csv` and `audit export --format csv` (and
/// the web app's export): `user_name` came last, after `detail`, so a
/// reader of the older columns by position still reads them.
fn to_csv(entries: &[m::AuditEntry]) -> String {
    let mut out = String::from(
        "time,user,device,device_name,seq,action,folder,folder_name,item,item_name,field,detail,user_name\n",
    );
    for e in entries {
        let o = |s: &Option<String>| csv_field(s.as_deref().unwrap_or(""));
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            output::time(e.time_ms),
            csv_field(&e.user),
            e.device,
            o(&e.device_name),
            e.seq,
            e.action,
            o(&e.folder),
            o(&e.folder_name),
            o(&e.item),
            o(&e.item_name),
            o(&e.field),
            o(&e.detail),
            o(&e.user_name)
        ));
    }
    out
}

fn exposure(ctx: &mut Ctx, user: &str) -> Result<(), CliError> {
    let x = ctx.call::<m::AuditExposure>(&m::AuditExposureParams { user: user.into() })?;
    ctx.print(&x, |x| {
        let state = if x.in_team {
            "still in the team"
        } else {
            "removed from the team"
        };
        println!(
            "{} ({state}, {} device(s), {} of their records held here)",
            x.user,
            x.devices.len(),
            x.records_seen
        );
        for f in &x.folders {
            let now = if f.still_member {
                "can still read it"
            } else if f.removal_known {
                "removed"
            } else {
                "removed (no cutoff known: changes not judged)"
            };
            println!(
                "folder {}: since key epoch {}, {now}",
                f.folder_name, f.since_epoch
            );
        }
        if x.items.is_empty() {
            println!("No readable items.");
        }
        for i in &x.items {
            let used = if i.uses.is_empty() {
                "not used".to_string()
            } else {
                let parts: Vec<String> = i.uses.iter().map(|(a, n)| format!("{a} {n}")).collect();
                format!("used: {}", parts.join(", "))
            };
            let changed = match i.changed_since_removal {
                Some(true) => "changed since removal",
                Some(false) => "unchanged since removal: rotate",
                None => "",
            };
            let trash = if i.trashed { " (trash)" } else { "" };
            println!(
                "  {}/{}{trash}  {used}  {changed}",
                i.folder_name, i.item_name
            );
        }
        for f in &x.unreadable_folders {
            println!(
                "folder {}: could be read by them, not by this device (items not listed)",
                short(f)
            );
        }
    });
    Ok(())
}

fn verify(ctx: &mut Ctx) -> Result<(), CliError> {
    let result = ctx.call::<m::AuditVerify>(&m::Empty {})?;
    ctx.print(&result, |r| {
        for c in &r.chains {
            let who = format!(
                "{} ({}{})",
                short(&c.device),
                c.user.as_deref().unwrap_or("unknown user"),
                c.device_name
                    .as_deref()
                    .map(|n| format!(", {n}"))
                    .unwrap_or_default()
            );
            if c.findings.is_empty() {
                println!("ok    {who}: {} records, up to #{}", c.records, c.last_seq);
            }
            for f in &c.findings {
                let at = match f.to {
                    Some(to) if to != f.seq => format!("#{}-#{to}", f.seq),
                    _ => format!("#{}", f.seq),
                };
                println!("{:<5} {who}: {at}", f.kind.to_uppercase());
            }
        }
        if r.chains.is_empty() {
            println!("No audit chains held.");
        }
    });
    let problems: usize = result.chains.iter().map(|c| c.findings.len()).sum();
    if problems > 0 {
        return Err(CliError::Problems(problems));
    }
    Ok(())
}

fn export(ctx: &mut Ctx, file: &PathBuf, format: &str, filter: &Filter) -> Result<(), CliError> {
    let mut p = params(filter)?;
    // Every record, paged oldest first.
    p.newest = false;
    p.limit = Some(100_000);
    let mut all: Vec<m::AuditEntry> = Vec::new();
    loop {
        let page = ctx.call::<m::AuditQuery>(&p)?;
        let done = page.len() < 100_000;
        p.after = page.last().map(|e| e.cursor.clone()).or(p.after);
        all.extend(page);
        if done {
            break;
        }
    }
    let text = match format {
        "json" => serde_json::to_string_pretty(&all).expect("plain data serialises") + "\n",
        "csv" => to_csv(&all),
        other => {
            return Err(CliError::Usage(format!(
                "unknown format {other:?} (json or csv)"
            )))
        }
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .map_err(|e| CliError::Other(format!("cannot create {}: {e}", file.display())))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| CliError::Other(format!("cannot write {}: {e}", file.display())))?;
    let summary = serde_json::json!({"file": file.display().to_string(), "records": all.len(), "format": format});
    ctx.print(&summary, |_| {
        println!("Wrote {} audit records to {}.", all.len(), file.display())
    });
    Ok(())
}
