//! The item schema, in one place: which fields each item type has, which of
//! them are secret (masked unless asked, never logged), and the rules a
//! value must follow (a TOTP secret is stored in canonical `otpauth://`
//! form, a card number as digits, an expiry as MM/YY). The replica checks
//! every local edit and import against it; the daemon tells clients which
//! fields to mask from it.
//!
//! Beside each type's own fields, every item may hold
//!
//! - **custom fields** — what other managers call custom, section or
//!   extra fields: a title, a [`CustomKind`] and a value, stored in the
//!   same `fields` map under the key `custom:<kind>:<title>`
//!   ([`custom_key`], [`parse_custom_key`]), so they are replicated,
//!   conflict-checked, kept in history, exported and backed up exactly like
//!   the built-in fields, and a document written before they existed reads
//!   as it did. `hidden` and `history` (an earlier password) values are
//!   secrets; a checkbox is `true`/`false`, a date `YYYY-MM-DD`, a
//!   month-year `YYYY-MM`.
//! - **`archived`**: when an item was archived in the manager it came
//!   from (an RFC 3339 date or date-time, or `true` when the source does
//!   not say when); the item is kept and shown with it.
//!
//! What it is not: a check of what peers write — a synced change is judged
//! by the acceptance rule, and read whatever it holds.

use std::collections::BTreeMap;

use crate::folder::ItemType;
use crate::totp::{TotpConfig, TotpError};

/// One field of an item type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    pub name: &'static str,
    /// Masked unless revealed; never in logs or listings.
    pub secret: bool,
}

const fn field(name: &'static str, secret: bool) -> FieldSpec {
    FieldSpec { name, secret }
}

const LOGIN: &[FieldSpec] = &[
    field("username", false),
    field("password", true),
    field("notes", true),
    field("totp", true),
];
const NOTE: &[FieldSpec] = &[field("notes", true)];
const CARD: &[FieldSpec] = &[
    field("holder", false),
    field("number", true),
    field("cvv", true),
    field("expiry", false),
    field("notes", true),
];
const TOTP: &[FieldSpec] = &[
    field("totp", true),
    field("notes", true),
    field("username", false),
];

/// Every built-in field name any type treats as secret (custom fields of a
/// secret [`CustomKind`] are secret too: see [`is_secret`]).
pub const SECRET_FIELDS: &[&str] = &["password", "notes", "totp", "number", "cvv"];

/// The field every type may hold: when the item was archived at its source.
pub const ARCHIVED: &str = "archived";

/// What the key of a custom field starts with.
pub const CUSTOM_PREFIX: &str = "custom:";

/// Longest title of a custom field, in bytes.
pub const MAX_CUSTOM_TITLE: usize = 256;

/// The kind of a custom field: how its value is checked and shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum CustomKind {
    /// Plain text, one line or several.
    Text,
    /// A secret (1Password "concealed", Bitwarden "hidden", a KeePass
    /// protected string): masked unless revealed, never logged.
    Hidden,
    Url,
    Email,
    Phone,
    /// `YYYY-MM-DD`.
    Date,
    /// `YYYY-MM`.
    MonthYear,
    /// `true` or `false` (an unchecked box is kept as `false`).
    Checkbox,
    /// An earlier password of the item; the title says when it was
    /// replaced (or its rank when the source gives no date). Secret.
    History,
}

impl CustomKind {
    /// Every kind, in the order shown to users.
    pub const ALL: [CustomKind; 9] = [
        CustomKind::Text,
        CustomKind::Hidden,
        CustomKind::Url,
        CustomKind::Email,
        CustomKind::Phone,
        CustomKind::Date,
        CustomKind::MonthYear,
        CustomKind::Checkbox,
        CustomKind::History,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CustomKind::Text => "text",
            CustomKind::Hidden => "hidden",
            CustomKind::Url => "url",
            CustomKind::Email => "email",
            CustomKind::Phone => "phone",
            CustomKind::Date => "date",
            CustomKind::MonthYear => "month-year",
            CustomKind::Checkbox => "checkbox",
            CustomKind::History => "history",
        }
    }

    pub fn parse(s: &str) -> Option<CustomKind> {
        CustomKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether values of this kind are secrets.
    pub fn is_secret(self) -> bool {
        matches!(self, CustomKind::Hidden | CustomKind::History)
    }
}

/// The `fields` key of a custom field: `custom:<kind>:<title>`.
pub fn custom_key(kind: CustomKind, title: &str) -> String {
    format!("{CUSTOM_PREFIX}{}:{title}", kind.as_str())
}

/// The kind and title of a custom field's key; `None` for any other key.
pub fn parse_custom_key(key: &str) -> Option<(CustomKind, &str)> {
    let rest = key.strip_prefix(CUSTOM_PREFIX)?;
    let (kind, title) = rest.split_once(':')?;
    Some((CustomKind::parse(kind)?, title))
}

/// How a field is shown to a person: a custom field by its title, any
/// other by its key.
pub fn field_label(key: &str) -> &str {
    parse_custom_key(key).map_or(key, |(_, title)| title)
}

impl ItemType {
    /// The fields of this type, in display order.
    pub fn fields(self) -> &'static [FieldSpec] {
        match self {
            ItemType::Login => LOGIN,
            ItemType::Note => NOTE,
            ItemType::Card => CARD,
            ItemType::Totp => TOTP,
        }
    }

    /// Whether `field` is a secret of this type (a secret custom field is,
    /// whatever the type).
    pub fn is_secret(self, field: &str) -> bool {
        if let Some((kind, _)) = parse_custom_key(field) {
            return kind.is_secret();
        }
        self.fields().iter().any(|f| f.name == field && f.secret)
    }
}

/// Whether any item type keeps `field` secret.
pub fn is_secret(field: &str) -> bool {
    match parse_custom_key(field) {
        Some((kind, _)) => kind.is_secret(),
        None => SECRET_FIELDS.contains(&field),
    }
}

/// What is wrong with an item's fields.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SchemaError {
    /// The type has no such field.
    #[error("a {} item has no field {field:?} (fields: {})", item_type.as_str(), allowed.join(", "))]
    UnknownField {
        item_type: ItemType,
        field: String,
        allowed: Vec<&'static str>,
    },
    /// A TOTP value that is not a secret, otpauth URI or Steam secret.
    #[error("TOTP secret rejected: {0}")]
    Totp(#[from] TotpError),
    /// A 2FA item without its secret.
    #[error("a totp item needs a secret")]
    TotpRequired,
    /// Only logins and 2FA items hold a TOTP secret.
    #[error("a {} item cannot hold a TOTP secret (only login and totp items can)", .0.as_str())]
    NoTotp(ItemType),
    /// A card expiry that is not MM/YY (or MM/YYYY).
    #[error("expiry {0:?} is not MM/YY")]
    Expiry(String),
    #[error("card number must be 8 to 19 digits")]
    CardNumber,
    #[error("CVV must be 3 or 4 digits")]
    Cvv,
    /// A custom field key (`custom:KIND:TITLE`) with an unknown kind, or a
    /// title that is empty, too long or holds a line break.
    #[error("custom field {key:?}: {problem}")]
    CustomField { key: String, problem: &'static str },
    /// A custom field value its kind refuses (a date that is not
    /// `YYYY-MM-DD`, a checkbox that is not `true`/`false`, ...).
    #[error("custom field {title:?} ({kind}): {expected}")]
    CustomValue {
        title: String,
        kind: &'static str,
        expected: &'static str,
    },
    /// `archived` that is not `true` or an RFC 3339 date or date-time.
    #[error("archived {0:?} is not a date (YYYY-MM-DD or RFC 3339) or true")]
    Archived(String),
}

/// Checks `fields` against `item_type`'s schema and puts values in their
/// stored form. An empty value means "remove the field" and passes.
pub fn normalize(
    item_type: ItemType,
    fields: &mut BTreeMap<String, String>,
) -> Result<(), SchemaError> {
    let spec = item_type.fields();
    for (key, value) in fields.iter_mut() {
        if key == ARCHIVED {
            if !value.is_empty() && !valid_archived(value) {
                return Err(SchemaError::Archived(value.clone()));
            }
            continue;
        }
        if key.starts_with(CUSTOM_PREFIX) {
            check_custom(key, value)?;
            continue;
        }
        if !spec.iter().any(|f| f.name == key) {
            return Err(SchemaError::UnknownField {
                item_type,
                field: key.clone(),
                allowed: spec.iter().map(|f| f.name).collect(),
            });
        }
    }
    if let Some(totp) = fields.get_mut("totp") {
        if !totp.is_empty() {
            *totp = TotpConfig::parse(totp)?.to_uri();
        }
    }
    if let Some(expiry) = fields.get("expiry") {
        if !expiry.is_empty() && !valid_expiry(expiry) {
            return Err(SchemaError::Expiry(expiry.clone()));
        }
    }
    if let Some(number) = fields.get_mut("number") {
        let digits: String = number
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect();
        if !digits.is_empty()
            && (!digits.chars().all(|c| c.is_ascii_digit()) || !(8..=19).contains(&digits.len()))
        {
            return Err(SchemaError::CardNumber);
        }
        *number = digits;
    }
    if let Some(cvv) = fields.get("cvv") {
        if !cvv.is_empty()
            && (!cvv.chars().all(|c| c.is_ascii_digit()) || !(3..=4).contains(&cvv.len()))
        {
            return Err(SchemaError::Cvv);
        }
    }
    Ok(())
}

/// [`normalize`] for a new item: also checks what the type requires.
pub fn normalize_new(
    item_type: ItemType,
    fields: &mut BTreeMap<String, String>,
) -> Result<(), SchemaError> {
    normalize(item_type, fields)?;
    if item_type == ItemType::Totp && fields.get("totp").is_none_or(|t| t.is_empty()) {
        return Err(SchemaError::TotpRequired);
    }
    Ok(())
}

/// Checks a custom field's key and puts its value in stored form (a
/// checkbox's `TRUE`/`1`/`yes` becomes `true`).
fn check_custom(key: &str, value: &mut String) -> Result<(), SchemaError> {
    let bad_key = |problem| SchemaError::CustomField {
        key: key.chars().take(80).collect(),
        problem,
    };
    let rest = &key[CUSTOM_PREFIX.len()..];
    let Some((kind, title)) = rest.split_once(':') else {
        return Err(bad_key("expected custom:KIND:TITLE"));
    };
    let Some(kind) = CustomKind::parse(kind) else {
        return Err(bad_key(
            "unknown kind (text, hidden, url, email, phone, date, month-year, checkbox, history)",
        ));
    };
    if title.trim().is_empty() {
        return Err(bad_key("empty title"));
    }
    if title.len() > MAX_CUSTOM_TITLE {
        return Err(bad_key("title longer than 256 bytes"));
    }
    if title.contains(['\n', '\r']) || title != title.trim() {
        return Err(bad_key("title with a line break or surrounding spaces"));
    }
    if value.is_empty() {
        return Ok(());
    }
    let bad_value = |expected| SchemaError::CustomValue {
        title: title.chars().take(80).collect(),
        kind: kind.as_str(),
        expected,
    };
    match kind {
        CustomKind::Checkbox => {
            *value = match value.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" | "checked" => "true".into(),
                "false" | "0" | "no" | "off" | "unchecked" => "false".into(),
                _ => return Err(bad_value("true or false")),
            }
        }
        CustomKind::Date if !valid_date(value) => return Err(bad_value("a date YYYY-MM-DD")),
        CustomKind::MonthYear if !valid_month_year(value) => {
            return Err(bad_value("a month YYYY-MM"))
        }
        _ => {}
    }
    Ok(())
}

/// `YYYY-MM`.
pub fn valid_month_year(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 7
        && b[4] == b'-'
        && s[..4].chars().all(|c| c.is_ascii_digit())
        && s[5..].parse::<u8>().is_ok_and(|m| (1..=12).contains(&m))
}

/// `YYYY-MM-DD` (a real day of that month).
pub fn valid_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[7] != b'-' || !valid_month_year(&s[..7]) {
        return false;
    }
    let (Ok(y), Ok(m), Ok(d)) = (
        s[..4].parse::<u32>(),
        s[5..7].parse::<u32>(),
        s[8..].parse::<u32>(),
    ) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    (1..=days).contains(&d)
}

/// `true`, a date, or an RFC 3339 date-time whose date part is valid.
fn valid_archived(s: &str) -> bool {
    s == "true"
        || s.len() <= 40
            && s.get(..10).is_some_and(valid_date)
            && (s.len() == 10 || s.as_bytes()[10] == b'T')
}

/// MM/YY or MM/YYYY.
pub fn valid_expiry(s: &str) -> bool {
    let Some((mm, yy)) = s.split_once('/') else {
        return false;
    };
    let month_ok = mm.len() == 2 && mm.parse::<u8>().is_ok_and(|m| (1..=12).contains(&m));
    let year_ok = (yy.len() == 2 || yy.len() == 4) && yy.chars().all(|c| c.is_ascii_digit());
    month_ok && year_ok
}

/// A field's value by its name: an item's [`crate::Fields`], or an
/// import's map of them.
pub trait FieldLookup {
    fn field(&self, name: &str) -> Option<&str>;
}

impl FieldLookup for BTreeMap<String, String> {
    fn field(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl FieldLookup for crate::folder::Fields {
    fn field(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// What makes two items "the same" for an import: type, folder, name, the
/// first URL and the identifying fields. Re-importing an export adds nothing.
pub fn fingerprint(
    item_type: &str,
    folder: &str,
    name: &str,
    fields: &impl FieldLookup,
    first_url: &str,
) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("coffer import fingerprint v1");
    let mut part = |s: &str| {
        h.update(&(s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    let field = |k: &str| fields.field(k).unwrap_or("");
    part(item_type);
    part(folder);
    part(name);
    part(field("username"));
    part(first_url);
    part(field("password"));
    part(field("number"));
    part(field("totp"));
    *h.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn values_take_their_stored_form_or_are_refused() {
        let mut f = fields(&[("number", "4111 1111-1111 1111"), ("expiry", "01/27")]);
        normalize(ItemType::Card, &mut f).unwrap();
        assert_eq!(f["number"], "4111111111111111");
        let mut f = fields(&[("totp", "jbsw y3dp ehpk 3pxp")]);
        normalize(ItemType::Login, &mut f).unwrap();
        assert!(f["totp"].starts_with("otpauth://totp/"));
        for (t, bad, err) in [
            (
                ItemType::Card,
                ("expiry", "13/27"),
                SchemaError::Expiry("13/27".into()),
            ),
            (ItemType::Card, ("number", "12ab"), SchemaError::CardNumber),
            (ItemType::Card, ("cvv", "12345"), SchemaError::Cvv),
        ] {
            assert_eq!(normalize(t, &mut fields(&[bad])), Err(err));
        }
        assert!(matches!(
            normalize(ItemType::Note, &mut fields(&[("password", "x")])),
            Err(SchemaError::UnknownField { .. })
        ));
        assert_eq!(
            normalize_new(ItemType::Totp, &mut fields(&[("notes", "n")])),
            Err(SchemaError::TotpRequired)
        );
        assert!(valid_expiry("12/2031") && !valid_expiry("1/27") && !valid_expiry("0127"));
    }

    #[test]
    fn custom_fields_are_checked_on_every_type_and_hidden_ones_are_secret() {
        let pin = custom_key(CustomKind::Hidden, "PIN");
        assert_eq!(pin, "custom:hidden:PIN");
        assert_eq!(parse_custom_key(&pin), Some((CustomKind::Hidden, "PIN")));
        assert_eq!(
            parse_custom_key("custom:text:a: b"),
            Some((CustomKind::Text, "a: b"))
        );
        assert_eq!(parse_custom_key("custom:nope:x"), None);
        assert_eq!(parse_custom_key("password"), None);
        assert_eq!(field_label(&pin), "PIN");
        assert_eq!(field_label("username"), "username");
        for t in [
            ItemType::Login,
            ItemType::Note,
            ItemType::Card,
            ItemType::Totp,
        ] {
            assert!(t.is_secret(&pin));
            assert!(t.is_secret(&custom_key(CustomKind::History, "2024-01-02")));
            assert!(!t.is_secret(&custom_key(CustomKind::Text, "password")));
            let mut f = fields(&[
                (pin.as_str(), "1234"),
                ("custom:checkbox:Pets", "FALSE"),
                ("custom:date:Born", "2000-02-29"),
                ("custom:month-year:Valid from", "2023-01"),
                ("archived", "2024-05-01T10:00:00Z"),
            ]);
            normalize(t, &mut f).unwrap();
            assert_eq!(f["custom:checkbox:Pets"], "false");
        }
        assert!(is_secret(&pin) && is_secret("password") && !is_secret("custom:url:Site"));
        for (key, value) in [
            ("custom:date:Born", "2001-02-29"),
            ("custom:checkbox:Pets", "maybe"),
            ("custom:month-year:From", "2023-13"),
        ] {
            assert!(matches!(
                normalize(ItemType::Note, &mut fields(&[(key, value)])),
                Err(SchemaError::CustomValue { .. })
            ));
        }
        for key in [
            "custom:text:",
            "custom:text: x",
            "custom:what:x",
            "custom:x",
            "custom:text:a\nb",
        ] {
            assert!(
                matches!(
                    normalize(ItemType::Note, &mut fields(&[(key, "v")])),
                    Err(SchemaError::CustomField { .. })
                ),
                "{key}"
            );
        }
        assert!(matches!(
            normalize(ItemType::Note, &mut fields(&[("archived", "yesterday")])),
            Err(SchemaError::Archived(_))
        ));
    }

    #[test]
    fn secret_fields_are_the_ones_the_types_mark() {
        let marked: std::collections::BTreeSet<&str> = [
            ItemType::Login,
            ItemType::Note,
            ItemType::Card,
            ItemType::Totp,
        ]
        .iter()
        .flat_map(|t| t.fields().iter().filter(|f| f.secret).map(|f| f.name))
        .collect();
        let listed: std::collections::BTreeSet<&str> = SECRET_FIELDS.iter().copied().collect();
        assert_eq!(marked, listed);
        assert!(ItemType::Login.is_secret("password") && !ItemType::Login.is_secret("username"));
    }
}
