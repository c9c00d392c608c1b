//! Coffer's own JSON export (`coffer export --format json`, and the inside
//! of a backup): items come back exactly, times included.

use super::{json_error, ImportError, ImportReport, ImportedItem, ItemTimes, Skipped};
use crate::export::{ExportFile, EXPORT_FORMAT, EXPORT_VERSION};
use crate::import::Format;

const F: Format = Format::CofferJson;

pub(super) fn parse_json(text: &str) -> Result<ImportReport, ImportError> {
    let file: ExportFile = serde_json::from_str(text).map_err(|e| json_error(F, "", &e))?;
    if file.format != EXPORT_FORMAT {
        return Err(ImportError::malformed(
            F,
            "top level",
            format!("\"format\" is not {EXPORT_FORMAT:?}"),
        ));
    }
    if file.version > EXPORT_VERSION {
        return Err(ImportError::malformed(
            F,
            "top level",
            format!(
                "written by a newer Coffer (export version {}; this one reads up to {EXPORT_VERSION})",
                file.version
            ),
        ));
    }
    let mut report = ImportReport::default();
    for (i, item) in file.items.into_iter().enumerate() {
        let record = format!("item {} '{}'", i + 1, item.name);
        if item.name.trim().is_empty() {
            return Err(ImportError::malformed(F, record, "the name is empty"));
        }
        if !matches!(item.item_type.as_str(), "login" | "note" | "card" | "totp") {
            report.skipped.push(Skipped {
                field: None,
                record,
                reason: format!("unknown item type {:?}", item.item_type),
            });
            continue;
        }
        let folder = item.folder.trim();
        report.items.push(ImportedItem {
            item_type: item.item_type,
            name: item.name,
            folder: (!folder.is_empty()).then(|| folder.replace('/', "-")),
            fields: item
                .fields
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .collect(),
            urls: item.urls.into_iter().filter(|u| !u.is_empty()).collect(),
            times: ItemTimes {
                created_ms: item.created_ms,
                updated_ms: item.updated_ms,
                trashed_ms: item.trashed_ms,
            },
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::ExportItem;
    use crate::import::{detect, parse};

    #[test]
    fn reads_back_what_export_writes() {
        let items = vec![ExportItem {
            item_type: "login".into(),
            name: "Ünïcode ✓".into(),
            folder: "Work > Dev".into(),
            fields: [
                ("username".to_string(), "me".to_string()),
                ("notes".to_string(), "a\nb".to_string()),
                ("password".to_string(), String::new()),
            ]
            .into(),
            urls: vec!["https://a.example".into()],
            created_ms: Some(10),
            updated_ms: Some(20),
            trashed_ms: Some(30),
        }];
        let json = ExportFile::new(items, 1).to_json();
        assert_eq!(detect(&json), Some(Format::CofferJson));
        let report = parse(Format::CofferJson, &json, None).unwrap();
        assert_eq!(report.items.len(), 1);
        let item = &report.items[0];
        assert_eq!(item.name, "Ünïcode ✓");
        assert_eq!(item.folder.as_deref(), Some("Work > Dev"));
        assert_eq!(item.fields.len(), 2, "empty values are dropped");
        assert_eq!(item.times.trashed_ms, Some(30));
    }

    #[test]
    fn refuses_other_json_and_newer_versions() {
        let err = parse(
            Format::CofferJson,
            br#"{"format":"x","version":1,"exported_at_ms":0,"items":[]}"#,
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("format"), "{err}");
        let err = parse(
            Format::CofferJson,
            br#"{"format":"coffer-export","version":9,"exported_at_ms":0,"items":[]}"#,
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("newer Coffer"), "{err}");
        let err = parse(
            Format::CofferJson,
            b"{\"format\":\"coffer-export\",\"items\":[",
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("coffer-json: "), "{err}");
    }
}
