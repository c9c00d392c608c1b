//! IPC methods of the audit trail (`audit.*`), each run on the vault
//! thread: the query API `coffer audit` and the web console share.

use coffer_crdt::audit::{Action, Finding};
use coffer_crdt::replica::OpenRecord;
use coffer_crdt::{DeviceId, UserId};
use coffer_ipc::methods::{self as m, Method};

use super::convert::Failure;
use super::items_rpc::{handler, Handler, OnVault};
use super::{invalid, now};
use crate::store::AuditRange;
use crate::vault::Vault;

/// The methods of this module, by name.
pub(super) const METHODS: &[(&str, Handler)] = &[
    (m::AuditNote::NAME, handler::<m::AuditNote>),
    (m::AuditQuery::NAME, handler::<m::AuditQuery>),
    (m::AuditVerify::NAME, handler::<m::AuditVerify>),
    (m::AuditExposure::NAME, handler::<m::AuditExposure>),
    (m::AuditRetention::NAME, handler::<m::AuditRetention>),
];

/// Rows read from the store per page of a query.
const PAGE: usize = 10_000;
/// Most records one query returns.
const MAX_RESULTS: usize = 100_000;

fn action(name: &str) -> Result<Action, Failure> {
    Action::parse(name).ok_or_else(|| {
        let all: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
        Failure(invalid(format!(
            "unknown audit action {name:?} (one of: {})",
            all.join(", ")
        )))
    })
}

/// An action a client may report: only what happens on its side of the
/// socket (the daemon records the rest itself, autofill included: the
/// `browser.*` methods record it with the page's origin).
pub(super) fn client_action(name: &str) -> Result<Action, Failure> {
    let action = action(name)?;
    if !matches!(
        action,
        Action::Reveal | Action::Copy | Action::TotpCopy | Action::SecretRead
    ) {
        return Err(Failure(invalid(format!(
            "{} is recorded by the daemon itself",
            action.as_str()
        ))));
    }
    Ok(action)
}

impl OnVault for m::AuditNote {
    fn run(v: &mut Vault, p: m::AuditNoteParams) -> Result<m::Empty, Failure> {
        let action = client_action(&p.action)?;
        let field = p.field.filter(|f| !f.is_empty());
        let event = match &p.item {
            Some(item) => v.audit_item_event(action, item, field)?,
            None => coffer_crdt::audit::AuditEvent {
                field,
                ..coffer_crdt::audit::AuditEvent::new("", action)
            },
        };
        v.audit_note(event, now());
        Ok(m::Empty {})
    }
}

/// The cursor of a record: time, device, seq.
fn cursor(o: &OpenRecord) -> String {
    let r = &o.record;
    format!("{}:{}:{}", r.time_ms(), r.device().to_hex(), r.seq())
}

fn parse_cursor(s: &str) -> Result<(i64, DeviceId, u64), Failure> {
    let bad = || Failure(invalid(format!("{s:?} is not an audit cursor")));
    let mut parts = s.split(':');
    let t = parts.next().and_then(|t| t.parse().ok()).ok_or_else(bad)?;
    let d = parts.next().and_then(DeviceId::from_hex).ok_or_else(bad)?;
    let q = parts.next().and_then(|q| q.parse().ok()).ok_or_else(bad)?;
    Ok((t, d, q))
}

/// A device named by hex id or a unique prefix of one, among the chains
/// held and the roster's devices.
fn resolve_device(v: &Vault, s: &str) -> Result<DeviceId, Failure> {
    let r = v.replica()?;
    let s = s.trim().to_lowercase();
    let mut known: Vec<DeviceId> = r.audit_heads().keys().copied().collect();
    if let Some(t) = r.team_state() {
        known.extend(t.team.devices.keys().copied());
    }
    known.sort();
    known.dedup();
    let hits: Vec<DeviceId> = known
        .into_iter()
        .filter(|d| d.to_hex().starts_with(&s))
        .collect();
    match hits.as_slice() {
        [one] => Ok(*one),
        [] => Err(Failure(invalid(format!(
            "no device {s:?} in the audit trail"
        )))),
        _ => Err(Failure(invalid(format!(
            "{s:?} names more than one device: give more of its id"
        )))),
    }
}

/// Whether `want` names the (id, name) pair: its name, or its id or an id prefix.
fn names(want: &str, id: Option<String>, name: Option<&String>) -> bool {
    let want = want.trim();
    name.is_some_and(|n| n.eq_ignore_ascii_case(want))
        || id.is_some_and(|i| want.len() >= 4 && i.starts_with(&want.to_lowercase()))
}

/// A user's roster name as an audit entry shows it: not one holding `<` or
/// `>`, which shown as "Name <email>" could pass for another address.
fn shown_name(name: Option<String>) -> Option<String> {
    name.filter(|n| !n.contains(['<', '>']))
}

impl OnVault for m::AuditQuery {
    fn run(v: &mut Vault, p: m::AuditQueryParams) -> Result<Vec<m::AuditEntry>, Failure> {
        let actions: Vec<Action> = p
            .actions
            .iter()
            .map(|a| action(a))
            .collect::<Result<_, _>>()?;
        let limit = p.limit.unwrap_or(10_000).min(MAX_RESULTS);
        let mut range = AuditRange {
            since_ms: p.since_ms,
            until_ms: p.until_ms,
            user: p.user.as_ref().map(|u| u.trim().to_lowercase()),
            device: p
                .device
                .as_deref()
                .map(|d| resolve_device(v, d))
                .transpose()?,
            after: p.after.as_deref().map(parse_cursor).transpose()?,
            newest: p.newest,
            limit: PAGE,
        };
        let mut out = Vec::new();
        loop {
            let page = v.audit_query(&range)?;
            let full = page.len() == PAGE;
            if let Some(last) = page.last() {
                let r = &last.record;
                range.after = Some((r.time_ms(), r.device(), r.seq()));
            }
            let replica = v.replica()?;
            for o in page {
                let Some(e) = &o.event else { continue };
                if !actions.is_empty() && !actions.contains(&e.action) {
                    continue;
                }
                if let Some(f) = &p.folder {
                    if !names(f, e.folder.map(|x| x.to_hex()), e.folder_name.as_ref()) {
                        continue;
                    }
                }
                if let Some(i) = &p.item {
                    if !names(i, e.item.map(|x| x.to_hex()), e.item_name.as_ref()) {
                        continue;
                    }
                }
                let d = o.record.device();
                out.push(m::AuditEntry {
                    time_ms: o.record.time_ms(),
                    user: e.user.clone(),
                    user_name: shown_name(UserId::new(&e.user).and_then(|u| replica.user_name(&u))),
                    device: d.to_hex(),
                    device_name: replica.device_name(&d),
                    seq: o.record.seq(),
                    action: e.action.as_str().into(),
                    folder: e.folder.map(|x| x.to_hex()),
                    folder_name: e.folder_name.clone(),
                    item: e.item.map(|x| x.to_hex()),
                    item_name: e.item_name.clone(),
                    field: e.field.clone(),
                    detail: e.detail.clone(),
                    cursor: cursor(&o),
                });
                if out.len() >= limit {
                    break;
                }
            }
            if !full || out.len() >= limit {
                // Newest first from the store: shown oldest first.
                if p.newest {
                    out.reverse();
                }
                return Ok(out);
            }
        }
    }
}

impl OnVault for m::AuditVerify {
    fn run(v: &mut Vault, _: m::Empty) -> Result<m::AuditVerifyResult, Failure> {
        let reports = v.audit_verify()?;
        let r = v.replica()?;
        let chains: Vec<m::AuditChain> = reports
            .into_iter()
            .map(|c| m::AuditChain {
                device: c.device.to_hex(),
                device_name: r.device_name(&c.device),
                user: r
                    .team_state()
                    .and_then(|t| t.user_of(&c.device))
                    .map(|u| u.0.clone())
                    .or_else(|| {
                        (c.device == r.identity().device).then(|| r.identity().email.clone())
                    }),
                records: c.records,
                last_seq: c.last_seq,
                pruned_through: c.pruned_through,
                findings: c
                    .findings
                    .iter()
                    .map(|f| m::AuditFinding {
                        kind: f.kind().into(),
                        seq: match f {
                            Finding::Gap { from, .. } => *from,
                            Finding::Fork { seq, .. } | Finding::BadSignature { seq, .. } => *seq,
                        },
                        to: match f {
                            Finding::Gap { to, .. } => Some(*to),
                            _ => None,
                        },
                    })
                    .collect(),
            })
            .collect();
        Ok(m::AuditVerifyResult {
            clean: chains.iter().all(|c| c.findings.is_empty()),
            chains,
        })
    }
}

/// Most of a user's records `audit.exposure` reads.
const MAX_EXPOSURE_RECORDS: usize = 1_000_000;

impl OnVault for m::AuditExposure {
    fn run(v: &mut Vault, p: m::AuditExposureParams) -> Result<m::AuditExposureResult, Failure> {
        let user = p.user.trim().to_lowercase();
        // The daemon gathers the user's records; the replica decides.
        let mut range = AuditRange {
            user: Some(user.clone()),
            limit: PAGE,
            ..AuditRange::default()
        };
        let mut events = Vec::new();
        let mut seen = 0usize;
        loop {
            let page = v.audit_query(&range)?;
            let full = page.len() == PAGE;
            if let Some(last) = page.last() {
                let r = &last.record;
                range.after = Some((r.time_ms(), r.device(), r.seq()));
            }
            seen += page.len();
            events.extend(
                page.into_iter()
                    .filter_map(|o| o.event.map(|e| (o.record.time_ms(), e)))
                    .filter(|(_, e)| e.item.is_some() && e.action.is_use()),
            );
            if !full || seen >= MAX_EXPOSURE_RECORDS {
                break;
            }
        }
        let x = v.replica()?.exposure(&user, &events)?;
        Ok(m::AuditExposureResult {
            user: x.user.0.clone(),
            in_team: x.in_team,
            devices: x.devices.iter().map(|d| d.to_hex()).collect(),
            folders: x
                .folders
                .into_iter()
                .map(|f| m::ExposedFolder {
                    folder: f.folder.to_hex(),
                    folder_name: f.folder_name,
                    since_epoch: f.since_epoch,
                    still_member: f.still_member,
                    removal_known: f.removal_known,
                })
                .collect(),
            items: x
                .items
                .into_iter()
                .map(|i| m::ExposedItem {
                    folder: i.folder.to_hex(),
                    folder_name: i.folder_name,
                    item: i.item.to_hex(),
                    item_name: i.item_name,
                    trashed: i.trashed,
                    since_epoch: i.since_epoch,
                    uses: i
                        .uses
                        .into_iter()
                        .map(|(a, n)| (a.as_str().to_string(), n))
                        .collect(),
                    last_used_ms: i.last_used_ms,
                    changed_since_removal: i.changed_since_removal,
                })
                .collect(),
            unreadable_folders: x.unreadable_folders.iter().map(|f| f.to_hex()).collect(),
            records_seen: seen as u64,
        })
    }
}

impl OnVault for m::AuditRetention {
    fn run(v: &mut Vault, p: m::AuditRetentionParams) -> Result<m::AuditRetentionResult, Failure> {
        if let Some(days) = p.days {
            v.set_audit_retention(days)?;
        }
        let pruned = v.audit_prune(now())?;
        Ok(m::AuditRetentionResult {
            days: v.audit_retention()?,
            checkpoint_through: pruned.checkpoint_through,
            pruned_rows: pruned.rows as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::shown_name;

    #[test]
    fn a_name_that_could_pass_for_an_address_is_not_shown() {
        assert_eq!(shown_name(Some("Cyd Ng".into())).as_deref(), Some("Cyd Ng"));
        assert_eq!(shown_name(Some("Cyd Ng <cyd@example.com>".into())), None);
        assert_eq!(shown_name(Some("a > b".into())), None);
        assert_eq!(shown_name(None), None);
    }
}
