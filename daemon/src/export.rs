//! Getting data out: Coffer's own plaintext export (JSON, CSV) and the
//! encrypted backup, which is that JSON inside an age file with a passphrase
//! (scrypt), so the standard `age -d` opens it too.
//!
//! The JSON is also an import format (`coffer-json`, see
//! `import::coffer`): export → import and backup → restore-backup round-trip
//! every item's type, name, folder, fields, URLs and times.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use age::secrecy::SecretString;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::import::MAX_IMPORT_BYTES;

/// The `format` marker of an export file.
pub const EXPORT_FORMAT: &str = "coffer-export";
/// The version of the export layout this build writes and reads.
pub const EXPORT_VERSION: u32 = 1;
/// scrypt work factor of new backups (N = 2^18: ≈256 MiB, about a second).
pub const BACKUP_WORK_FACTOR: u8 = 18;
/// Largest scrypt work factor a backup may ask for when opened (N = 2^20:
/// 1 GiB of memory), so a crafted file cannot take hours or all memory.
pub const BACKUP_MAX_WORK_FACTOR: u8 = 20;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the passphrase does not open this backup")]
    WrongPassphrase,
    #[error("not a Coffer backup (an age file encrypted with a passphrase): {0}")]
    NotABackup(String),
    #[error("the backup asks for more scrypt work than allowed (work factor above {BACKUP_MAX_WORK_FACTOR})")]
    ExcessiveWork,
    #[error("the backup is larger than {} MiB once decrypted", MAX_IMPORT_BYTES >> 20)]
    TooLarge,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("CSV: {0}")]
    Csv(#[from] csv::Error),
}

/// A whole export file (`--format json`, and the inside of a backup).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportFile {
    /// Always [`EXPORT_FORMAT`]; written first so the format is detectable.
    pub format: String,
    pub version: u32,
    pub exported_at_ms: i64,
    pub items: Vec<ExportItem>,
}

/// One item as exported: everything a user sees of it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ExportItem {
    /// `login`, `note`, `card` or `totp`.
    #[serde(rename = "type")]
    pub item_type: String,
    pub name: String,
    /// The folder's name (nested folders as `A > B`).
    pub folder: String,
    /// Field name → value (`username`, `password`, `totp` as an otpauth URI, ...).
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    #[serde(default)]
    pub urls: Vec<String>,
    #[serde(default)]
    pub created_ms: Option<i64>,
    #[serde(default)]
    pub updated_ms: Option<i64>,
    /// When it was put in the trash; absent for items not in the trash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trashed_ms: Option<i64>,
}

impl ExportFile {
    pub fn new(items: Vec<ExportItem>, now_ms: i64) -> Self {
        Self {
            format: EXPORT_FORMAT.into(),
            version: EXPORT_VERSION,
            exported_at_ms: now_ms,
            items,
        }
    }

    /// Pretty JSON; the caller owns (and should zeroize) the plaintext.
    pub fn to_json(&self) -> Zeroizing<Vec<u8>> {
        // Serialising plain strings and maps cannot fail.
        let mut out = Zeroizing::new(serde_json::to_vec_pretty(self).unwrap_or_default());
        out.push(b'\n');
        out
    }
}

/// The CSV columns: one row per item, URLs newline-joined in one cell,
/// custom fields as `title: value` lines in one cell (`custom`).
pub const CSV_HEADER: [&str; 15] = [
    "folder", "type", "name", "username", "password", "urls", "totp", "notes", "holder", "number",
    "cvv", "expiry", "trashed", "custom", "archived",
];

/// A spreadsheet-friendly CSV of the items (RFC 4180 quoting).
pub fn to_csv(items: &[ExportItem]) -> Result<Zeroizing<Vec<u8>>, ExportError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(CSV_HEADER)?;
    for item in items {
        let field = |k: &str| item.fields.get(k).map(String::as_str).unwrap_or("");
        let urls = item.urls.join("\n");
        let trashed = if item.trashed_ms.is_some() { "yes" } else { "" };
        let custom: Vec<String> = item
            .fields
            .iter()
            .filter_map(|(k, v)| {
                let (_, title) = coffer_crdt::schema::parse_custom_key(k)?;
                Some(format!("{title}: {v}"))
            })
            .collect();
        let custom = custom.join("\n");
        writer.write_record([
            item.folder.as_str(),
            &item.item_type,
            &item.name,
            field("username"),
            field("password"),
            &urls,
            field("totp"),
            field("notes"),
            field("holder"),
            field("number"),
            field("cvv"),
            field("expiry"),
            trashed,
            &custom,
            field(coffer_crdt::schema::ARCHIVED),
        ])?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| ExportError::Io(e.into_error()))?;
    Ok(Zeroizing::new(bytes))
}

/// Encrypts `plaintext` to an age file with a scrypt passphrase stanza.
pub fn seal_backup(plaintext: &[u8], passphrase: &str) -> Result<Vec<u8>, ExportError> {
    let mut recipient = age::scrypt::Recipient::new(SecretString::from(passphrase.to_owned()));
    recipient.set_work_factor(BACKUP_WORK_FACTOR);
    let encryptor = age::Encryptor::with_recipients(std::iter::once(&recipient as _))
        .map_err(|e| ExportError::Io(std::io::Error::other(e.to_string())))?;
    let mut out = Vec::with_capacity(plaintext.len() + 512);
    let mut writer = encryptor.wrap_output(&mut out)?;
    writer.write_all(plaintext)?;
    writer.finish()?;
    Ok(out)
}

/// Decrypts a backup made by [`seal_backup`] (or `age -p`), bounded in work
/// and in size.
pub fn open_backup(bytes: &[u8], passphrase: &str) -> Result<Zeroizing<Vec<u8>>, ExportError> {
    let decryptor = age::Decryptor::new(bytes).map_err(|e| match e {
        age::DecryptError::Io(e) => ExportError::NotABackup(e.to_string()),
        other => ExportError::NotABackup(other.to_string()),
    })?;
    if !decryptor.is_scrypt() {
        return Err(ExportError::NotABackup(
            "it is encrypted to keys, not to a passphrase".into(),
        ));
    }
    let mut identity = age::scrypt::Identity::new(SecretString::from(passphrase.to_owned()));
    identity.set_max_work_factor(BACKUP_MAX_WORK_FACTOR);
    let reader = decryptor
        .decrypt(std::iter::once(&identity as _))
        .map_err(|e| match e {
            age::DecryptError::DecryptionFailed
            | age::DecryptError::KeyDecryptionFailed
            | age::DecryptError::NoMatchingKeys => ExportError::WrongPassphrase,
            age::DecryptError::ExcessiveWork { .. } => ExportError::ExcessiveWork,
            other => ExportError::NotABackup(other.to_string()),
        })?;
    let mut plaintext = Zeroizing::new(Vec::new());
    reader
        .take(MAX_IMPORT_BYTES as u64 + 1)
        .read_to_end(&mut plaintext)
        .map_err(|e| ExportError::NotABackup(format!("damaged payload: {e}")))?;
    if plaintext.len() > MAX_IMPORT_BYTES {
        return Err(ExportError::TooLarge);
    }
    Ok(plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<ExportItem> {
        vec![
            ExportItem {
                item_type: "login".into(),
                name: "GitHub, \"work\"".into(),
                folder: "Work > Dev".into(),
                fields: [
                    ("username".to_string(), "octo".to_string()),
                    ("password".to_string(), "p,a\"ss\nword".to_string()),
                ]
                .into(),
                urls: vec![
                    "https://github.com".into(),
                    "https://gist.github.com".into(),
                ],
                created_ms: Some(1),
                updated_ms: Some(2),
                trashed_ms: None,
            },
            ExportItem {
                item_type: "card".into(),
                name: "Visa".into(),
                folder: "Personal".into(),
                fields: [("number".to_string(), "4111111111111111".to_string())].into(),
                urls: vec![],
                created_ms: Some(3),
                updated_ms: Some(3),
                trashed_ms: Some(4),
            },
        ]
    }

    #[test]
    fn json_round_trips_and_names_its_format_first() {
        let file = ExportFile::new(sample(), 99);
        let json = file.to_json();
        assert!(json.starts_with(b"{\n  \"format\": \"coffer-export\""));
        let back: ExportFile = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, file);
    }

    #[test]
    fn csv_quotes_commas_quotes_and_newlines() {
        let csv = to_csv(&sample()).unwrap();
        let mut reader = csv::Reader::from_reader(csv.as_slice());
        assert_eq!(reader.headers().unwrap(), CSV_HEADER.as_slice());
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(&rows[0][2], "GitHub, \"work\"");
        assert_eq!(&rows[0][4], "p,a\"ss\nword");
        assert_eq!(&rows[0][5], "https://github.com\nhttps://gist.github.com");
        assert_eq!(&rows[1][9], "4111111111111111");
        assert_eq!(&rows[1][12], "yes");
    }

    #[test]
    fn backup_opens_with_its_passphrase_only() {
        let plaintext = ExportFile::new(sample(), 5).to_json();
        let sealed = seal_backup(&plaintext, "correct horse").unwrap();
        assert!(sealed.starts_with(b"age-encryption.org/v1\n-> scrypt "));
        assert!(!sealed
            .windows(b"octo".len())
            .any(|w| w == b"octo".as_slice()));
        assert_eq!(
            open_backup(&sealed, "correct horse").unwrap().as_slice(),
            plaintext.as_slice()
        );
        assert!(matches!(
            open_backup(&sealed, "wrong horse"),
            Err(ExportError::WrongPassphrase)
        ));
        assert!(matches!(
            open_backup(b"not an age file", "x"),
            Err(ExportError::NotABackup(_))
        ));
        let mut truncated = sealed.clone();
        truncated.truncate(sealed.len() - 20);
        assert!(open_backup(&truncated, "correct horse").is_err());
    }
}
