//! IPC methods of folders, items and TOTP, each run on the vault thread.
//! A method's params and result are its `Method` types: [`OnVault`] binds
//! them, and [`handler`] is the one place that parses and serialises.

use coffer_crdt::audit::Action;
use coffer_crdt::folder::{ItemEdit, ItemType};
use coffer_crdt::replica::{FolderRemoval, ItemQuery, LockReason, NewItemSpec};
use coffer_ipc::methods::{self as m, Method};
use coffer_ipc::{ErrorCode, RpcError};
use rand::rngs::OsRng;
use serde_json::Value;

use super::convert::{self, Answer, Failure};
use super::{export_text, invalid, now, params, reply};
use crate::vault::Vault;

/// An IPC method that runs on the vault thread.
pub(super) trait OnVault: Method {
    fn run(v: &mut Vault, p: Self::Params) -> Result<Self::Result, Failure>;
}

/// What the dispatch table holds: parse, run, serialise.
pub(super) type Handler = fn(&mut Vault, Value) -> Answer;

/// The [`Handler`] of `M`: its params type is `M::Params`, by the type system.
pub(super) fn handler<M: OnVault>(v: &mut Vault, raw: Value) -> Answer {
    let p = params::<M>(raw)?;
    reply::<M, _>(M::run(v, p)?)
}

/// The methods of this module, by name.
pub(super) const METHODS: &[(&str, Handler)] = &[
    (m::Lock::NAME, handler::<m::Lock>),
    (m::FolderCreate::NAME, handler::<m::FolderCreate>),
    (m::FolderList::NAME, handler::<m::FolderList>),
    (m::ItemAdd::NAME, handler::<m::ItemAdd>),
    (m::ItemGet::NAME, handler::<m::ItemGet>),
    (m::ItemList::NAME, handler::<m::ItemList>),
    (m::ItemSearch::NAME, handler::<m::ItemSearch>),
    (m::ItemListPage::NAME, handler::<m::ItemListPage>),
    (m::ItemEdit::NAME, handler::<m::ItemEdit>),
    (m::ItemTrash::NAME, handler::<m::ItemTrash>),
    (m::ItemRestore::NAME, handler::<m::ItemRestore>),
    (m::ItemHistory::NAME, handler::<m::ItemHistory>),
    (m::ItemConflicts::NAME, handler::<m::ItemConflicts>),
    (m::ItemPickConflict::NAME, handler::<m::ItemPickConflict>),
    (m::TotpGet::NAME, handler::<m::TotpGet>),
    (m::TotpSet::NAME, handler::<m::TotpSet>),
    (m::Export::NAME, handler::<m::Export>),
    (m::PinChange::NAME, handler::<m::PinChange>),
    (m::FolderRename::NAME, handler::<m::FolderRename>),
    (m::FolderRemove::NAME, handler::<m::FolderRemove>),
    (m::ItemMove::NAME, handler::<m::ItemMove>),
    (m::TrashEmpty::NAME, handler::<m::TrashEmpty>),
];

fn item_type(name: &str) -> Result<ItemType, Failure> {
    ItemType::parse(name).ok_or_else(|| {
        Failure(invalid(format!(
            "unknown item type {name:?} (login, note, card, totp)"
        )))
    })
}

/// The item at (folder, id) as the IPC shows it.
fn view(
    v: &Vault,
    folder: coffer_crdt::SpaceId,
    id: coffer_crdt::ItemId,
) -> Result<m::ItemView, Failure> {
    let r = v.replica()?;
    Ok(convert::item_view(r, &folder, &r.item(&folder, &id)?))
}

fn summaries<'a>(
    v: &'a Vault,
    items: impl Iterator<Item = (coffer_crdt::SpaceId, &'a coffer_crdt::ItemHead)>,
) -> Result<Vec<m::ItemSummary>, Failure> {
    let r = v.replica()?;
    let mut list: Vec<m::ItemSummary> = items
        .map(|(f, i)| convert::item_summary(r, &f, i))
        .collect();
    convert::sort_summaries(&mut list);
    Ok(list)
}

impl OnVault for m::Lock {
    fn run(v: &mut Vault, _: m::Empty) -> Result<m::Empty, Failure> {
        v.lock(LockReason::Request);
        Ok(m::Empty {})
    }
}

impl OnVault for m::FolderCreate {
    fn run(v: &mut Vault, p: m::FolderCreateParams) -> Result<m::FolderInfo, Failure> {
        let f = v
            .replica_mut()?
            .create_folder(&p.name, now().unix_ms, &mut OsRng)?;
        Ok(convert::folder_info(&f))
    }
}

impl OnVault for m::FolderList {
    fn run(v: &mut Vault, _: m::Empty) -> Result<Vec<m::FolderInfo>, Failure> {
        Ok(v.replica()?
            .folders()?
            .iter()
            .map(convert::folder_info)
            .collect())
    }
}

impl OnVault for m::ItemAdd {
    fn run(v: &mut Vault, p: m::ItemAddParams) -> Result<m::ItemView, Failure> {
        let spec = NewItemSpec {
            folder: p.folder,
            item_type: item_type(&p.item_type)?,
            name: p.name,
            fields: p.fields,
            urls: p.urls,
        };
        let (folder, id) = v.add_item(spec, now(), &mut OsRng)?;
        view(v, folder, id)
    }
}

impl OnVault for m::ItemGet {
    fn run(v: &mut Vault, p: m::ItemRef) -> Result<m::ItemView, Failure> {
        let action = p
            .record
            .as_ref()
            .map(|u| super::audit_rpc::client_action(&u.action))
            .transpose()?;
        let (folder, id, found) = v.find_item(&ItemQuery {
            item: p.item,
            trash: p.trash,
        })?;
        let name = found.name.clone();
        let view = view(v, folder, id)?;
        if let (Some(action), Some(used)) = (action, p.record) {
            let field = used.field.filter(|f| !f.is_empty());
            // A field the item lacks is an error at the client: nothing
            // was shown, so nothing is recorded.
            if field.as_deref().is_none_or(|f| view.field(f).is_some()) {
                let event = v.audit_event_for(folder, id, name, action, field)?;
                v.audit_note(event, now());
            }
        }
        Ok(view)
    }
}

impl OnVault for m::ItemList {
    fn run(v: &mut Vault, p: m::ItemListParams) -> Result<Vec<m::ItemSummary>, Failure> {
        let items = v.replica()?.items(p.folder.as_deref(), p.trash)?;
        summaries(v, items.into_iter())
    }
}

/// The largest page `item.page` returns.
const MAX_PAGE: usize = 1000;

impl OnVault for m::ItemListPage {
    fn run(v: &mut Vault, p: m::ItemPageParams) -> Result<m::ItemPage, Failure> {
        // The listing is in memory and sorted like `item.list`; only the
        // page is converted (the cost of a long listing is its summaries).
        let items = v.replica()?.items(p.folder.as_deref(), p.trash)?;
        let total = items.len();
        let limit = p.limit.unwrap_or(MAX_PAGE).min(MAX_PAGE);
        let page = items.into_iter().skip(p.offset).take(limit);
        Ok(m::ItemPage {
            total,
            items: summaries(v, page)?,
        })
    }
}

impl OnVault for m::ItemSearch {
    fn run(v: &mut Vault, p: m::SearchParams) -> Result<Vec<m::ItemSummary>, Failure> {
        let items = v.replica()?.search(&p.query)?;
        summaries(v, items.into_iter())
    }
}

impl OnVault for m::ItemConflicts {
    fn run(v: &mut Vault, _: m::Empty) -> Result<Vec<m::ItemView>, Failure> {
        let r = v.replica()?;
        Ok(r.conflicted()?
            .into_iter()
            .map(|(f, i)| convert::item_view(r, &f, &i))
            .collect())
    }
}

impl OnVault for m::ItemPickConflict {
    fn run(v: &mut Vault, p: m::PickConflictParams) -> Result<m::ItemView, Failure> {
        let (folder, id) = v.replica_mut()?.pick_conflict(
            &p.item,
            &p.field,
            p.choice,
            now().unix_ms,
            &mut OsRng,
        )?;
        view(v, folder, id)
    }
}

impl OnVault for m::ItemEdit {
    fn run(v: &mut Vault, p: m::ItemEditParams) -> Result<m::ItemView, Failure> {
        let edit = ItemEdit {
            name: p.name,
            fields: p.fields,
            urls: p.urls,
        };
        let (folder, id) = v.edit_item(&ItemQuery::live(&p.item), edit, now(), &mut OsRng)?;
        view(v, folder, id)
    }
}

fn set_trashed(v: &mut Vault, item: &str, trash: bool) -> Result<m::ItemSummary, Failure> {
    let (folder, id) = v
        .replica_mut()?
        .set_trashed(item, trash, now().unix_ms, &mut OsRng)?;
    let r = v.replica()?;
    Ok(convert::item_summary(
        r,
        &folder,
        r.item_head(&folder, &id)?,
    ))
}

impl OnVault for m::ItemTrash {
    fn run(v: &mut Vault, p: m::ItemRef) -> Result<m::ItemSummary, Failure> {
        set_trashed(v, &p.item, true)
    }
}

impl OnVault for m::ItemRestore {
    fn run(v: &mut Vault, p: m::ItemRef) -> Result<m::ItemSummary, Failure> {
        set_trashed(v, &p.item, false)
    }
}

impl OnVault for m::ItemHistory {
    fn run(v: &mut Vault, p: m::ItemRef) -> Result<Vec<m::HistoryEntry>, Failure> {
        let list = v.replica()?.history(&p.item)?;
        let event = v.audit_item_event(Action::HistoryView, &p.item, None)?;
        v.audit_note(event, now());
        Ok(list.into_iter().map(convert::history_entry).collect())
    }
}

impl OnVault for m::TotpGet {
    fn run(v: &mut Vault, p: m::TotpParams) -> Result<m::TotpCode, Failure> {
        let (_, _, item) = v.find_item(&ItemQuery::live(&p.item))?;
        let uri = item
            .fields
            .get("totp")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Failure(RpcError::new(
                    ErrorCode::NotFound,
                    format!(
                        "{} has no TOTP secret (link one with `coffer totp set`)",
                        item.name
                    ),
                ))
            })?;
        let config = coffer_crdt::totp::TotpConfig::parse(uri)
            .map_err(|e| Failure(invalid(format!("stored TOTP secret is invalid: {e}"))))?;
        let at = p.at.unwrap_or(now().unix_secs());
        let code = m::TotpCode {
            code: config.code_at(at),
            seconds_remaining: config.seconds_remaining(at),
            period: config.period,
            digits: if config.steam { 5 } else { config.digits },
            algorithm: if config.steam {
                "STEAM".into()
            } else {
                format!("{:?}", config.algorithm).to_uppercase()
            },
            item: item.name.clone(),
        };
        let event = v.audit_item_event(Action::TotpShow, &p.item, Some("totp".into()))?;
        v.audit_note(event, now());
        Ok(code)
    }
}

impl OnVault for m::TotpSet {
    fn run(v: &mut Vault, p: m::TotpSetParams) -> Result<m::ItemView, Failure> {
        let (folder, id) = v.replica_mut()?.set_totp(
            &ItemQuery::live(&p.item),
            &p.secret,
            now().unix_ms,
            &mut OsRng,
        )?;
        view(v, folder, id)
    }
}

impl OnVault for m::Export {
    fn run(v: &mut Vault, p: m::ExportParams) -> Result<m::ExportResult, Failure> {
        export_text(v, p)
    }
}

impl OnVault for m::PinChange {
    fn run(v: &mut Vault, p: m::PinChangeParams) -> Result<m::Empty, Failure> {
        v.change_pin(&p.old_pin, &p.new_pin, now(), &mut OsRng)?;
        Ok(m::Empty {})
    }
}

impl OnVault for m::FolderRename {
    fn run(v: &mut Vault, p: m::FolderRenameParams) -> Result<m::FolderInfo, Failure> {
        let f = v
            .replica_mut()?
            .rename_folder(&p.folder, &p.name, now().unix_ms, &mut OsRng)?;
        Ok(convert::folder_info(&f))
    }
}

impl OnVault for m::FolderRemove {
    fn run(v: &mut Vault, p: m::FolderRemoveParams) -> Result<m::FolderRemoveResult, Failure> {
        let (id, name, outcome) = v
            .replica_mut()?
            .remove_folder(&p.folder, p.force, p.leave)?;
        Ok(m::FolderRemoveResult {
            id: id.to_hex(),
            name,
            outcome: match outcome {
                FolderRemoval::Deleted => "deleted",
                FolderRemoval::Left => "left",
            }
            .into(),
        })
    }
}

impl OnVault for m::ItemMove {
    fn run(v: &mut Vault, p: m::ItemMoveParams) -> Result<m::ItemView, Failure> {
        let (_, folder, id) =
            v.replica_mut()?
                .move_item(&p.item, &p.folder, now().unix_ms, &mut OsRng)?;
        view(v, folder, id)
    }
}

impl OnVault for m::TrashEmpty {
    fn run(v: &mut Vault, p: m::TrashEmptyParams) -> Result<m::TrashEmptyResult, Failure> {
        let done = v
            .replica_mut()?
            .empty_trash(p.folder.as_deref(), now().unix_ms, &mut OsRng)?;
        let r = v.replica()?;
        Ok(m::TrashEmptyResult {
            deleted: done.purged.values().sum(),
            folders: done
                .purged
                .iter()
                .map(|(id, n)| m::TrashEmptied {
                    id: id.to_hex(),
                    name: r.folder_name(id),
                    deleted: *n,
                })
                .collect(),
            skipped: done.skipped.iter().map(|id| r.folder_name(id)).collect(),
        })
    }
}
