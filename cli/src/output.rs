//! Human and JSON output.

use std::io::IsTerminal;
use std::time::{Duration, UNIX_EPOCH};

use coffer_ipc::methods::{
    FolderInfo, HistoryEntry, ImportResult, ItemSummary, ItemView, StatusResult,
};
use zeroize::Zeroizing;

use crate::CliError;

/// Fields masked unless `--reveal`.
const MASK: &str = "••••••••";

pub fn json<T: serde::Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("plain data serialises")
    );
}

/// One compact JSON value on one line (event streams, `coffer join`).
pub fn json_line<T: serde::Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string(value).expect("plain data serialises")
    );
}

/// One daemon event as a readable line, prefixed with the local time.
pub fn event(e: &coffer_ipc::Event) -> String {
    use coffer_ipc::Event;
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let what = match e {
        Event::ItemChanged {
            folder_id,
            item_id,
            action,
        } => format!(
            "item {} {action} (folder {})",
            prefix(item_id, 8),
            short(folder_id)
        ),
        Event::FolderChanged { folder_id } => format!("folder {} changed", short(folder_id)),
        Event::LockState {
            locked: true,
            reason,
        } => format!("vault locked ({reason})"),
        Event::LockState { locked: false, .. } => "vault unlocked".to_string(),
        Event::PeerUp { device_id, address } => {
            format!("peer {} connected from {address}", short(device_id))
        }
        Event::PeerDown { device_id, reason } => {
            format!("peer {} disconnected ({reason})", short(device_id))
        }
        Event::SyncProgress {
            device_id,
            folder_id,
            received,
            caught_up,
        } => format!(
            "sync: {received} new envelope(s) of folder {} from {}{}",
            short(folder_id),
            short(device_id),
            if *caught_up { ", caught up" } else { "" }
        ),
    };
    format!("{now}  {what}")
}

pub fn time(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

pub fn status(s: &StatusResult) {
    println!("cofferd {} (pid {}), socket {}", s.version, s.pid, s.socket);
    println!("data dir: {}", s.data_dir);
    if !s.initialized {
        println!("vault: not initialised (run `coffer init --name NAME --email EMAIL`)");
        return;
    }
    println!(
        "identity: {} <{}>, device {}",
        s.name.as_deref().unwrap_or("?"),
        s.email.as_deref().unwrap_or("?"),
        s.device_id.as_deref().map(short).unwrap_or("?")
    );
    if s.locked {
        println!("vault: locked");
    } else {
        println!(
            "vault: unlocked, {} folders, {} items",
            s.folders.unwrap_or(0),
            s.items.unwrap_or(0)
        );
    }
    println!("auto-lock after {} s idle", s.auto_lock_secs);
    if let Some(notice) = &s.notice {
        println!("notice: {notice}");
    }
}

fn field_line(key: &str, value: &str, secret: bool, reveal: bool) -> String {
    if secret && !reveal {
        return format!("{key}: {MASK}");
    }
    if value.contains('\n') {
        let indented: Vec<String> = value.lines().map(|l| format!("  {l}")).collect();
        return format!("{key}:\n{}", indented.join("\n"));
    }
    format!("{key}: {value}")
}

/// `v` with every secret value masked, the kept values of concurrently
/// edited secret fields too: what `get --json` prints without `--reveal`.
pub fn masked_item(mut v: ItemView) -> ItemView {
    for key in &v.secret_fields {
        if let Some(value) = v.fields.get_mut(key) {
            *value = MASK.to_string();
        }
        if let Some(others) = v.conflicts.get_mut(key) {
            others.iter_mut().for_each(|o| *o = MASK.to_string());
        }
    }
    v
}

/// `v` as `coffer conflicts` shows it without `--reveal`: secrets masked,
/// and every value of a field in conflict too (the one shown and the kept).
pub fn masked_conflicts(v: ItemView) -> ItemView {
    let mut v = masked_item(v);
    let keys: Vec<String> = v.conflicts.keys().cloned().collect();
    for key in keys {
        if let Some(value) = v.fields.get_mut(&key) {
            *value = MASK.to_string();
        }
        if let Some(others) = v.conflicts.get_mut(&key) {
            others.iter_mut().for_each(|o| *o = MASK.to_string());
        }
    }
    v
}

/// `coffer conflicts`: per item, each field in conflict with its values
/// numbered as `conflicts pick` takes them (1 is the value shown), and an
/// item an edit kept out of the trash.
pub fn conflicts(items: &[ItemView]) {
    if items.is_empty() {
        println!("(no conflicts)");
        return;
    }
    for v in items {
        println!(
            "{}/{}  ({}, id {})",
            v.folder,
            v.name,
            v.item_type,
            prefix(&v.id, 8)
        );
        for (key, kept) in &v.conflicts {
            let label = v.labels.get(key).map_or(key.as_str(), String::as_str);
            let shown = v.fields.get(key).map_or("(removed)", String::as_str);
            let others: Vec<String> = kept
                .iter()
                .enumerate()
                .map(|(i, value)| format!("{}) {value}", i + 2))
                .collect();
            println!("  {label}: 1) {shown} (shown)  {}", others.join("  "));
        }
        if v.kept_from_trash {
            println!("  trash: edited while someone moved it to the trash, so it was kept: 1) keep it  2) trash it");
        }
    }
    println!("Settle one for every member: coffer conflicts pick ITEM FIELD N");
}

/// `entries` with every secret value masked: `history --json` without
/// `--reveal`.
pub fn masked_history(mut entries: Vec<HistoryEntry>) -> Vec<HistoryEntry> {
    for e in &mut entries {
        for key in &e.secret_fields {
            if let Some(value) = e.fields.get_mut(key) {
                *value = MASK.to_string();
            }
        }
    }
    entries
}

pub fn item(v: &ItemView, reveal: bool) {
    println!(
        "{}  ({} in {}, id {})",
        v.name,
        v.item_type,
        v.folder,
        prefix(&v.id, 8)
    );
    for (key, value) in ordered(&v.fields, &v.labels) {
        let secret = v.secret_fields.iter().any(|s| s == key);
        let label = v.labels.get(key).map_or(key.as_str(), String::as_str);
        println!("{}", field_line(label, value, secret, reveal));
    }
    for url in &v.urls {
        println!("url: {url}");
    }
    for (key, others) in &v.conflicts {
        println!(
            "conflict: {key} was edited concurrently; {} other value(s) kept (`coffer conflicts` lists them, `coffer conflicts pick {} FIELD N` keeps one)",
            others.len(),
            prefix(&v.id, 8)
        );
    }
    if v.kept_from_trash {
        println!(
            "conflict: edited while someone moved it to the trash, so it was kept (`coffer conflicts pick {} trash 2` trashes it)",
            prefix(&v.id, 8)
        );
    }
    println!("updated: {}", time(v.updated_ms));
    if let Some(t) = v.trashed_ms {
        println!("in trash since {}", time(t));
    }
    if !reveal && !v.secret_fields.is_empty() {
        eprintln!("(secrets masked: --reveal shows them, --field NAME prints one)");
    }
}

/// The built-in fields first (in key order), then the custom ones (those
/// with a label) in label order.
fn ordered<'a>(
    fields: &'a std::collections::BTreeMap<String, String>,
    labels: &'a std::collections::BTreeMap<String, String>,
) -> Vec<(&'a String, &'a String)> {
    let mut out: Vec<(&String, &String)> = fields.iter().collect();
    out.sort_by_key(|(k, _)| (labels.get(*k).map(|l| l.to_lowercase()), k.as_str()));
    out
}

/// One field's raw value, as `--field` prints and `--copy` copies: by key,
/// or a custom field by its title.
pub fn field_value(v: &ItemView, field: &str) -> Result<Zeroizing<String>, CliError> {
    v.field(field).map(Zeroizing::new).ok_or_else(|| {
        let mut known: Vec<&str> = v
            .fields
            .keys()
            .map(|k| v.labels.get(k).map_or(k.as_str(), String::as_str))
            .collect();
        known.extend(["name", "id"]);
        if !v.urls.is_empty() {
            known.push("url");
        }
        CliError::Rpc(coffer_ipc::RpcError::new(
            coffer_ipc::ErrorCode::NotFound,
            format!(
                "{} has no field {field:?} (it has: {})",
                v.name,
                known.join(", ")
            ),
        ))
    })
}

pub fn summaries(items: &[ItemSummary]) {
    if items.is_empty() {
        println!("(no items)");
        return;
    }
    let table = Table::for_items(items);
    println!("{}", table.header());
    for i in items {
        println!("{}", table.row(i));
    }
}

/// The item table's columns: sized from every row's name and folder, so a
/// streamed listing takes them from its head (`ListingHead`), known before
/// the first row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Table {
    width: usize,
    fwidth: usize,
}

impl Table {
    /// Columns for the longest name and folder name (in characters).
    pub fn new(name_chars: usize, folder_chars: usize) -> Table {
        Table {
            width: name_chars.clamp(4, 40),
            fwidth: folder_chars.clamp(6, 24),
        }
    }

    pub fn for_items(items: &[ItemSummary]) -> Table {
        let longest = |f: fn(&ItemSummary) -> &str| {
            items
                .iter()
                .map(|i| f(i).chars().count())
                .max()
                .unwrap_or(0)
        };
        Table::new(longest(|i| &i.name), longest(|i| &i.folder))
    }

    pub fn header(&self) -> String {
        let (width, fwidth) = (self.width, self.fwidth);
        format!(
            "{:<8}  {:<width$}  {:<6}  {:<fwidth$}  USERNAME / URL",
            "ID", "NAME", "TYPE", "FOLDER"
        )
    }

    pub fn row(&self, i: &ItemSummary) -> String {
        let (width, fwidth) = (self.width, self.fwidth);
        let extra = i
            .username
            .as_deref()
            .or_else(|| i.urls.first().map(String::as_str))
            .unwrap_or_default();
        let totp = if i.has_totp && i.item_type != "totp" {
            " +totp"
        } else {
            ""
        };
        let archived = if i.archived { " [archived]" } else { "" };
        let conflict = if i.conflict { " [conflict]" } else { "" };
        format!(
            "{:<8}  {:<width$}  {:<6}  {:<fwidth$}  {extra}{totp}{archived}{conflict}",
            prefix(&i.id, 8),
            i.name,
            i.item_type,
            i.folder
        )
    }
}

/// One value as `json` prints it, as an element of a printed array: the
/// same text `json` gives the whole array, written one element at a time.
pub fn json_element(
    out: &mut impl std::io::Write,
    value: &impl serde::Serialize,
    first: bool,
) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    out.write_all(if first { b"[\n  " } else { b",\n  " })?;
    out.write_all(text.replace('\n', "\n  ").as_bytes())
}

/// Ends an array begun by [`json_element`] (`any`: one was written).
pub fn json_end(out: &mut impl std::io::Write, any: bool) -> std::io::Result<()> {
    out.write_all(if any { b"\n]\n" } else { b"[]\n" })
}

pub fn trash_emptied(r: &coffer_ipc::methods::TrashEmptyResult) {
    if r.deleted == 0 && r.skipped.is_empty() {
        println!("The trash is empty.");
    }
    for f in &r.folders {
        println!("Deleted {} item(s) for good from {}.", f.deleted, f.name);
    }
    for name in &r.skipped {
        println!("Left the trash of {name} as it is: your role there cannot delete items.");
    }
}

pub fn folders(folders: &[FolderInfo]) {
    println!(
        "{:<16}  {:<24}  {:<8}  {:>5}  {:>5}",
        "ID", "NAME", "ROLE", "ITEMS", "TRASH"
    );
    for f in folders {
        println!(
            "{:<16}  {:<24}  {:<8}  {:>5}  {:>5}",
            short(&f.id),
            f.name,
            f.role,
            f.items,
            f.trashed
        );
    }
}

pub fn history(entries: &[HistoryEntry], reveal: bool) {
    if entries.is_empty() {
        println!("(no history)");
        return;
    }
    for e in entries {
        let device = match (e.device.as_deref().map(short), &e.device_name) {
            (Some(d), Some(n)) => format!("{n:?} ({d})"),
            (Some(d), None) => d.to_string(),
            (None, _) => "unknown device".to_string(),
        };
        let who = match (&e.user_name, &e.user) {
            (Some(n), Some(u)) => format!("{n} <{u}> on "),
            (None, Some(u)) => format!("{u} on "),
            _ => String::new(),
        };
        let state = if e.trashed { " [in trash]" } else { "" };
        println!(
            "{}  by {who}device {device}  name {:?}{state}",
            time(e.time_ms),
            e.name
        );
        if !e.changed.is_empty() {
            let changed: Vec<&str> = e
                .changed
                .iter()
                .map(|k| e.labels.get(k).map_or(k.as_str(), String::as_str))
                .collect();
            println!("    changed: {}", changed.join(", "));
        }
        for (key, value) in ordered(&e.fields, &e.labels) {
            let label = e.labels.get(key).map_or(key.as_str(), String::as_str);
            println!(
                "    {}",
                field_line(label, value, e.secret_fields.contains(key), reveal)
                    .replace('\n', "\n    ")
            );
        }
        for url in &e.urls {
            println!("    url: {url}");
        }
    }
}

pub fn import(r: &ImportResult) {
    let total: usize = r.added.values().sum();
    let verb = if r.dry_run {
        "Would import"
    } else {
        "Imported"
    };
    let per_type: Vec<String> = r.added.iter().map(|(t, n)| format!("{n} {t}")).collect();
    println!(
        "{verb} {total} items from {} ({}).",
        r.format,
        if per_type.is_empty() {
            "none".into()
        } else {
            per_type.join(", ")
        }
    );
    if r.duplicates > 0 {
        println!("{} already in the vault, not added again.", r.duplicates);
    }
    if !r.folders_created.is_empty() {
        let verb = if r.dry_run { "Would create" } else { "Created" };
        println!("{verb} folders: {}", r.folders_created.join(", "));
    }
    let (records, fields): (Vec<_>, Vec<_>) = r.skipped.iter().partition(|s| s.field.is_none());
    if !records.is_empty() {
        println!("Skipped {} record(s):", records.len());
        for s in records {
            println!("  {}: {}", s.record, s.reason);
        }
    }
    if !fields.is_empty() {
        let items: std::collections::BTreeSet<&str> =
            fields.iter().map(|s| s.record.as_str()).collect();
        println!(
            "Left out {} field(s) of {} imported item(s):",
            fields.len(),
            items.len()
        );
        for s in fields {
            let field = s.field.as_deref().unwrap_or("");
            println!("  {}: {field}: {}", s.record, s.reason);
        }
    }
}

pub fn stderr_is_tty() -> bool {
    std::io::stderr().is_terminal()
}

/// Runs a request that reports progress, drawing a bar on stderr once it is
/// clearly large (a thousand items or more).
pub fn with_progress<T>(
    call: impl FnOnce(&mut dyn FnMut(coffer_ipc::Progress)) -> Result<T, crate::CliError>,
) -> Result<T, crate::CliError> {
    let mut bar: Option<indicatif::ProgressBar> = None;
    let result = call(&mut |p| {
        if p.total < 1000 {
            return;
        }
        let bar = bar.get_or_insert_with(|| {
            let bar = indicatif::ProgressBar::new(p.total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg:>8} [{bar:40}] {pos}/{len} items ({elapsed})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(p.phase.clone());
            bar
        });
        bar.set_position(p.done);
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    result
}

/// Creates `path` with mode 0600 and writes `bytes`; refuses to replace a file.
pub fn write_new_private_file(path: &std::path::Path, bytes: &[u8]) -> Result<(), crate::CliError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let fail =
        |e: std::io::Error| crate::CliError::Other(format!("cannot write {}: {e}", path.display()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                crate::CliError::Usage(format!(
                    "{} exists: remove it or choose another name",
                    path.display()
                ))
            } else {
                fail(e)
            }
        })?;
    file.write_all(bytes).map_err(fail)?;
    file.sync_all().map_err(fail)
}

/// The first `n` characters of an id (the whole string if shorter).
pub fn prefix(id: &str, n: usize) -> &str {
    id.get(..n).unwrap_or(id)
}

/// An id as shown in listings: its first 16 characters.
pub fn short(id: &str) -> &str {
    prefix(id, 16)
}
