//! The item schema, in one place: which fields each item type has, which of
//! them are secret (masked unless asked, never logged), and the rules a
//! value must follow (a TOTP secret is stored in canonical `otpauth://`
//! form, a card number as digits, an expiry as MM/YY). The replica checks
//! every local edit and import against it; the daemon tells clients which
//! fields to mask from it.
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

/// Every field name any type treats as secret.
pub const SECRET_FIELDS: &[&str] = &["password", "notes", "totp", "number", "cvv"];

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

    /// Whether `field` is a secret of this type.
    pub fn is_secret(self, field: &str) -> bool {
        self.fields().iter().any(|f| f.name == field && f.secret)
    }
}

/// Whether any item type keeps `field` secret.
pub fn is_secret(field: &str) -> bool {
    SECRET_FIELDS.contains(&field)
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
}

/// Checks `fields` against `item_type`'s schema and puts values in their
/// stored form. An empty value means "remove the field" and passes.
pub fn normalize(
    item_type: ItemType,
    fields: &mut BTreeMap<String, String>,
) -> Result<(), SchemaError> {
    let spec = item_type.fields();
    for key in fields.keys() {
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

/// MM/YY or MM/YYYY.
pub fn valid_expiry(s: &str) -> bool {
    let Some((mm, yy)) = s.split_once('/') else {
        return false;
    };
    let month_ok = mm.len() == 2 && mm.parse::<u8>().is_ok_and(|m| (1..=12).contains(&m));
    let year_ok = (yy.len() == 2 || yy.len() == 4) && yy.chars().all(|c| c.is_ascii_digit());
    month_ok && year_ok
}

/// What makes two items "the same" for an import: type, folder, name, the
/// first URL and the identifying fields. Re-importing an export adds nothing.
pub fn fingerprint(
    item_type: &str,
    folder: &str,
    name: &str,
    fields: &BTreeMap<String, String>,
    first_url: &str,
) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("coffer import fingerprint v1");
    let mut part = |s: &str| {
        h.update(&(s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    let field = |k: &str| fields.get(k).map(String::as_str).unwrap_or("");
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
