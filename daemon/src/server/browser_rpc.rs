//! IPC methods of the browser extension (`browser.*`), each run on the
//! vault thread. The replica decides what a page may have
//! ([`Replica::logins_for_origin`], [`Replica::login_for_origin`]: origin
//! binding); this file only converts, and writes the activity records
//! (every fill and every TOTP insert is one).
//!
//! [`Replica::logins_for_origin`]: coffer_crdt::Replica::logins_for_origin
//! [`Replica::login_for_origin`]: coffer_crdt::Replica::login_for_origin

use coffer_crdt::audit::{Action, AuditEvent};
use coffer_crdt::folder::Item;
use coffer_crdt::replica::SavedLogin;
use coffer_crdt::totp::TotpConfig;
use coffer_crdt::SpaceId;
use coffer_ipc::methods::{self as m, Method};
use coffer_ipc::{ErrorCode, RpcError};
use rand::rngs::OsRng;

use super::convert::Failure;
use super::items_rpc::{handler, Handler, OnVault};
use super::{invalid, now};
use crate::vault::Vault;

/// The methods of this module, by name (`m::BROWSER_METHODS`).
pub(super) const METHODS: &[(&str, Handler)] = &[
    (m::BrowserFind::NAME, handler::<m::BrowserFind>),
    (m::BrowserFill::NAME, handler::<m::BrowserFill>),
    (m::BrowserTotp::NAME, handler::<m::BrowserTotp>),
    (m::BrowserSave::NAME, handler::<m::BrowserSave>),
];

fn field(item: &Item, name: &str) -> Option<String> {
    item.fields.get(name).filter(|v| !v.is_empty()).cloned()
}

/// The activity record of a fill into the page of `origin`.
fn autofill_event(
    v: &Vault,
    folder: SpaceId,
    item: &Item,
    field: &str,
    origin: &str,
) -> AuditEvent {
    let folder_name = v.replica().map(|r| r.folder_name(&folder)).ok();
    AuditEvent {
        folder: Some(folder),
        folder_name,
        item: Some(item.id),
        item_name: Some(item.name.clone()),
        field: (!field.is_empty()).then(|| field.to_string()),
        // The page's origin as the browser serialises it (login_for_origin
        // parsed it already), never its path or query.
        detail: coffer_crdt::origin::PageOrigin::parse(origin)
            .ok()
            .map(|o| o.serialize()),
        ..AuditEvent::new("", Action::Autofill)
    }
}

impl OnVault for m::BrowserFind {
    fn run(v: &mut Vault, p: m::BrowserFindParams) -> Result<Vec<m::BrowserLogin>, Failure> {
        let r = v.replica()?;
        Ok(r.logins_for_origin(&p.origin)?
            .into_iter()
            .map(|(folder, i)| m::BrowserLogin {
                id: i.id.to_hex(),
                name: i.name.clone(),
                folder: r.folder_name(&folder),
                username: i
                    .username
                    .as_deref()
                    .filter(|u| !u.is_empty())
                    .map(str::to_string),
                has_totp: i.has_totp,
            })
            .collect())
    }
}

impl OnVault for m::BrowserFill {
    fn run(v: &mut Vault, p: m::BrowserItemParams) -> Result<m::BrowserFields, Failure> {
        let (folder, item) = v.replica()?.login_for_origin(&p.origin, &p.item)?;
        let fields = m::BrowserFields {
            username: field(&item, "username"),
            password: field(&item, "password"),
        };
        // The fields actually handed over.
        let filled = match (&fields.username, &fields.password) {
            (_, Some(_)) => "password",
            (Some(_), None) => "username",
            (None, None) => "",
        };
        let event = autofill_event(v, folder, &item, filled, &p.origin);
        v.audit_note(event, now());
        Ok(fields)
    }
}

impl OnVault for m::BrowserTotp {
    fn run(v: &mut Vault, p: m::BrowserItemParams) -> Result<m::BrowserCode, Failure> {
        let (folder, item) = v.replica()?.login_for_origin(&p.origin, &p.item)?;
        let uri = field(&item, "totp").ok_or_else(|| {
            Failure(RpcError::new(
                ErrorCode::NotFound,
                format!("{} has no TOTP secret", item.name),
            ))
        })?;
        let config = TotpConfig::parse(&uri)
            .map_err(|e| Failure(invalid(format!("stored TOTP secret is invalid: {e}"))))?;
        let at = now().unix_secs();
        let code = m::BrowserCode {
            code: config.code_at(at),
            seconds_remaining: config.seconds_remaining(at),
        };
        let event = autofill_event(v, folder, &item, "totp", &p.origin);
        v.audit_note(event, now());
        Ok(code)
    }
}

impl OnVault for m::BrowserSave {
    fn run(v: &mut Vault, p: m::BrowserSaveParams) -> Result<m::BrowserSaved, Failure> {
        let login = SavedLogin {
            origin: p.origin,
            name: p.name.unwrap_or_default(),
            username: p.username,
            password: p.password,
        };
        let (folder, id) = v
            .replica_mut()?
            .save_login(login, now().unix_ms, &mut OsRng)?;
        let r = v.replica()?;
        Ok(m::BrowserSaved {
            id: id.to_hex(),
            name: r.item(&folder, &id)?.name.clone(),
            folder: r.folder_name(&folder),
        })
    }
}
