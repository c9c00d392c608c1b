//! TOTP-only sources: a text file of `otpauth://` URIs, and Google
//! Authenticator's `otpauth-migration://offline?data=...` export.
//!
//! Both give `totp` items: the name is the issuer (else the account), the
//! username the account. In a text file, blank lines and lines starting with
//! `#` are ignored, `steam://` URIs are accepted too, and a line that is not
//! a TOTP URI or whose secret is invalid makes the file malformed.
//!
//! HOTP (counter-based) tokens are kept, never dropped: Coffer makes TOTP
//! codes only, so each becomes a `note` named after its issuer (else
//! account) with hidden `HOTP secret` (base32) and `otpauth URI` fields and
//! `HOTP counter`, `account` and `issuer` text fields; the report lists each
//! one (`HOTP codes`: not generated).
//!
//! A migration line's `data` is base64 (percent-encoded or not) of a
//! protobuf `MigrationPayload`; a file may hold several lines (batches).
//! Its `name` is the account, prefixed `issuer:` when an issuer is set (a
//! name with a colon but no issuer is all account: nothing is split off).
//! MD5 accounts are kept like HOTP ones (as a note with their secret).

use percent_encoding::percent_decode_str;

use coffer_crdt::schema::CustomKind;

use super::{Format, ImportError, ImportReport, ItemBuilder, Skipped};
use coffer_crdt::totp::{Algorithm, TotpConfig, TotpError};

pub(super) fn parse_uris(text: &str) -> Result<ImportReport, ImportError> {
    const F: Format = Format::Otpauth;
    let mut report = ImportReport::default();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let record = format!("line {line_no}");
        let lower = line.get(..10).unwrap_or("").to_ascii_lowercase();
        if !lower.starts_with("otpauth://") && !lower.starts_with("steam://") {
            return Err(ImportError::malformed(
                F,
                record,
                "not an otpauth:// or steam:// URI",
            ));
        }
        match TotpConfig::parse(line) {
            Ok(config) => push(&config, record, &mut report),
            Err(TotpError::HotpNotSupported) => hotp_from_uri(line, record, &mut report),
            Err(e @ TotpError::UnsupportedOtpType(_)) => {
                report.skipped.push(Skipped {
                    field: None,
                    record,
                    reason: e.to_string(),
                });
            }
            Err(e) => return Err(ImportError::malformed(F, record, e.to_string())),
        }
    }
    if report.items.is_empty() && report.skipped.is_empty() {
        return Err(ImportError::malformed(
            F,
            "file",
            "no otpauth:// URI in the file",
        ));
    }
    Ok(report)
}

fn push(config: &TotpConfig, record: String, report: &mut ImportReport) {
    let mut b = ItemBuilder::new("totp", record);
    let name = config
        .issuer
        .as_deref()
        .or(config.account.as_deref())
        .unwrap_or(if config.steam { "Steam" } else { "TOTP" });
    b.name(name);
    b.set("username", config.account.as_deref().unwrap_or(""));
    b.fields.insert("totp".into(), config.to_uri());
    b.finish(report);
}

/// An HOTP token (or one whose codes Coffer cannot make) kept as a note.
struct KeptOtp<'a> {
    issuer: &'a str,
    account: &'a str,
    secret_base32: &'a str,
    counter: Option<&'a str>,
    uri: &'a str,
    why: &'a str,
}

fn keep_otp(k: KeptOtp<'_>, record: String, report: &mut ImportReport) {
    let mut b = ItemBuilder::new("note", record);
    b.name(if !k.issuer.is_empty() {
        k.issuer
    } else if !k.account.is_empty() {
        k.account
    } else {
        "HOTP"
    });
    b.custom(CustomKind::Hidden, "HOTP secret", k.secret_base32);
    if let Some(c) = k.counter {
        b.custom(CustomKind::Text, "HOTP counter", c);
    }
    b.custom(CustomKind::Text, "account", k.account);
    b.custom(CustomKind::Text, "issuer", k.issuer);
    b.custom(CustomKind::Hidden, "otpauth URI", k.uri);
    b.leave_out("HOTP codes", k.why);
    b.finish(report);
}

/// An `otpauth://hotp/LABEL?secret=..&counter=..` line, kept as a note.
fn hotp_from_uri(line: &str, record: String, report: &mut ImportReport) {
    let decode = |s: &str| {
        percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .trim()
            .to_string()
    };
    let rest = line.get("otpauth://hotp/".len()..).unwrap_or("");
    let (label, query) = rest.split_once('?').unwrap_or((rest, ""));
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| decode(v))
            .unwrap_or_default()
    };
    let label = decode(label);
    let issuer = param("issuer");
    let account = match label.split_once(':') {
        Some((prefix, account)) if issuer.is_empty() || prefix.trim() == issuer => {
            account.trim().to_string()
        }
        _ => label.clone(),
    };
    let issuer = if issuer.is_empty() {
        label
            .split_once(':')
            .map(|(p, _)| p.trim().to_string())
            .unwrap_or_default()
    } else {
        issuer
    };
    let counter = param("counter");
    keep_otp(
        KeptOtp {
            issuer: &issuer,
            account: &account,
            secret_base32: &param("secret"),
            counter: Some(if counter.is_empty() { "0" } else { &counter }),
            uri: line,
            why: "HOTP (counter-based) codes are not generated by Coffer; \
                  the secret and counter are kept in a note",
        },
        record,
        report,
    );
}

#[derive(Clone, PartialEq, prost::Message)]
struct MigrationPayload {
    #[prost(message, repeated, tag = "1")]
    otp_parameters: Vec<OtpParameters>,
    #[prost(int32, tag = "2")]
    version: i32,
    #[prost(int32, tag = "3")]
    batch_size: i32,
    #[prost(int32, tag = "4")]
    batch_index: i32,
    #[prost(int32, tag = "5")]
    batch_id: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct OtpParameters {
    #[prost(bytes = "vec", tag = "1")]
    secret: Vec<u8>,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(string, tag = "3")]
    issuer: String,
    /// 0 unspecified, 1 SHA1, 2 SHA256, 3 SHA512, 4 MD5.
    #[prost(int32, tag = "4")]
    algorithm: i32,
    /// 0 unspecified, 1 six, 2 eight.
    #[prost(int32, tag = "5")]
    digits: i32,
    /// 0 unspecified, 1 HOTP, 2 TOTP.
    #[prost(int32, tag = "6")]
    kind: i32,
    #[prost(int64, tag = "7")]
    counter: i64,
}

pub(super) fn parse_migration(text: &str) -> Result<ImportReport, ImportError> {
    const F: Format = Format::OtpauthMigration;
    let mut report = ImportReport::default();
    let mut seen = false;
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let record = format!("line {line_no}");
        const PREFIX: &str = "otpauth-migration://offline?";
        let query = line
            .get(..PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(PREFIX))
            .and_then(|_| line.get(PREFIX.len()..))
            .ok_or_else(|| {
                ImportError::malformed(F, record.clone(), "not an otpauth-migration://offline? URI")
            })?;
        let data = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("data="))
            .ok_or_else(|| ImportError::malformed(F, record.clone(), "no data= parameter"))?;
        let data: String = percent_decode_str(data)
            .decode_utf8()
            .map_err(|_| ImportError::malformed(F, record.clone(), "data is not valid base64"))?
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let bytes = [
            data_encoding::BASE64,
            data_encoding::BASE64_NOPAD,
            data_encoding::BASE64URL,
            data_encoding::BASE64URL_NOPAD,
        ]
        .iter()
        .find_map(|enc| enc.decode(data.as_bytes()).ok())
        .ok_or_else(|| ImportError::malformed(F, record.clone(), "data is not valid base64"))?;
        let payload =
            <MigrationPayload as prost::Message>::decode(bytes.as_slice()).map_err(|_| {
                ImportError::malformed(
                    F,
                    record.clone(),
                    "data is not a Google Authenticator export (invalid payload)",
                )
            })?;
        seen = true;
        for (n, otp) in payload.otp_parameters.into_iter().enumerate() {
            one(otp, format!("{record} account {}", n + 1), &mut report);
        }
    }
    if !seen {
        return Err(ImportError::malformed(
            F,
            "file",
            "no otpauth-migration:// URI in the file",
        ));
    }
    Ok(report)
}

fn one(otp: OtpParameters, record: String, report: &mut ImportReport) {
    // Google writes "Issuer:account" as the name when an issuer is set; a
    // name without an issuer is all account, colons included.
    let issuer = otp.issuer.trim();
    let account = match otp.name.split_once(':') {
        Some((prefix, account)) if !issuer.is_empty() && prefix.trim() == issuer => account.trim(),
        _ => otp.name.trim(),
    };
    let skip = |report: &mut ImportReport, reason: &str| {
        let shown = if issuer.is_empty() { account } else { issuer };
        report.skipped.push(Skipped {
            field: None,
            record: format!("{record} '{shown}'"),
            reason: reason.into(),
        });
    };
    let keep = |report: &mut ImportReport, why: &str| {
        let secret = data_encoding::BASE32_NOPAD.encode(&otp.secret);
        let kind = if otp.kind == 1 { "hotp" } else { "totp" };
        let algorithm = match otp.algorithm {
            2 => "SHA256",
            3 => "SHA512",
            4 => "MD5",
            _ => "SHA1",
        };
        let enc = |s: &str| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        let digits = if otp.digits == 2 { 8 } else { 6 };
        let mut uri = format!("otpauth://{kind}/{}?secret={secret}", enc(&otp.name));
        if !issuer.is_empty() {
            uri.push_str(&format!("&issuer={}", enc(issuer)));
        }
        uri.push_str(&format!("&algorithm={algorithm}&digits={digits}"));
        let counter = otp.counter.to_string();
        if otp.kind == 1 {
            uri.push_str(&format!("&counter={counter}"));
        }
        keep_otp(
            KeptOtp {
                issuer,
                account,
                secret_base32: &secret,
                counter: (otp.kind == 1).then_some(counter.as_str()),
                uri: &uri,
                why,
            },
            record.clone(),
            report,
        );
    };
    if otp.kind == 1 {
        return keep(
            report,
            "HOTP (counter-based) codes are not generated by Coffer; \
             the secret and counter are kept in a note",
        );
    }
    let algorithm = match otp.algorithm {
        0 | 1 => Algorithm::Sha1,
        2 => Algorithm::Sha256,
        3 => Algorithm::Sha512,
        4 => {
            return keep(
                report,
                "MD5 codes are not generated by Coffer; the secret is kept in a note",
            )
        }
        _ => return skip(report, "unknown algorithm"),
    };
    let config = TotpConfig {
        secret: otp.secret.clone(),
        algorithm,
        digits: if otp.digits == 2 { 8 } else { 6 },
        period: 30,
        steam: false,
        issuer: (!issuer.is_empty()).then(|| issuer.to_string()),
        account: (!account.is_empty()).then(|| account.to_string()),
    };
    // Validated like any TOTP value (secret length, ...).
    match TotpConfig::parse(&config.to_uri()) {
        Ok(config) => push(&config, record, report),
        Err(e) => skip(report, &format!("TOTP not imported: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;

    #[test]
    fn uris_malformed() {
        let f = Format::Otpauth;
        let err = parse(
            f,
            b"# header\notpauth://totp/x?secret=JBSWY3DPEHPK3PXP\nhttps://example.com\n",
            None,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(err, "otpauth: line 3: not an otpauth:// or steam:// URI");
        let err = parse(f, b"otpauth://totp/x?secret=JBSW1\n", None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "otpauth: line 1: invalid base32 secret: character '1' at position 5 is not allowed"
        );
        let err = parse(f, b"# nothing\n\n", None).unwrap_err().to_string();
        assert_eq!(err, "otpauth: file: no otpauth:// URI in the file");
    }

    #[test]
    fn migration_malformed() {
        let f = Format::OtpauthMigration;
        let err = parse(f, b"otpauth-migration://offline?data=!!!notbase64\n", None)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "otpauth-migration: line 1: data is not valid base64");
        let err = parse(f, b"otpauth-migration://offline?data=CiwKCkhlbGxv\n", None)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "otpauth-migration: line 1: data is not a Google Authenticator export (invalid payload)");
        let err = parse(f, b"\notpauth://totp/x?secret=JBSWY3DPEHPK3PXP\n", None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "otpauth-migration: line 2: not an otpauth-migration://offline? URI"
        );
        let err = parse(f, b"otpauth-migration://offline?foo=bar\n", None)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "otpauth-migration: line 1: no data= parameter");
    }

    #[test]
    fn migration_round_trip_with_prost() {
        use prost::Message;
        let payload = super::MigrationPayload {
            otp_parameters: vec![super::OtpParameters {
                secret: b"Hello!\xde\xad\xbe\xef".to_vec(),
                name: "a@b".into(),
                issuer: "X".into(),
                algorithm: 1,
                digits: 1,
                kind: 2,
                counter: 0,
            }],
            version: 1,
            batch_size: 1,
            batch_index: 0,
            batch_id: 7,
        };
        let data = data_encoding::BASE64URL_NOPAD.encode(&payload.encode_to_vec());
        let line = format!("otpauth-migration://offline?data={data}");
        let report = parse(Format::OtpauthMigration, line.as_bytes(), None).unwrap();
        assert_eq!(report.items.len(), 1);
        assert_eq!(report.items[0].name, "X");
        assert_eq!(report.items[0].field("username"), "a@b");
    }
}
