//! TOTP-only sources: a text file of `otpauth://` URIs, and Google
//! Authenticator's `otpauth-migration://offline?data=...` export.
//!
//! Both give `totp` items: the name is the issuer (else the account), the
//! username the account. In a text file, blank lines and lines starting with
//! `#` are ignored, `steam://` URIs are accepted too, and a line that is not
//! a TOTP URI or whose secret is invalid makes the file malformed; HOTP URIs
//! are skipped.
//!
//! A migration line's `data` is base64 (percent-encoded or not) of a
//! protobuf `MigrationPayload`; a file may hold several lines (batches).
//! HOTP accounts and MD5 ones are skipped.

use percent_encoding::percent_decode_str;

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
            Err(e @ (TotpError::HotpNotSupported | TotpError::UnsupportedOtpType(_))) => {
                report.skipped.push(Skipped {
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
    // Google writes "Issuer:account" as the name when an issuer is known.
    let (label_issuer, account) = match otp.name.split_once(':') {
        Some((i, a)) => (i.trim(), a.trim()),
        None => ("", otp.name.trim()),
    };
    let issuer = if otp.issuer.trim().is_empty() {
        label_issuer
    } else {
        otp.issuer.trim()
    };
    let shown = if issuer.is_empty() { account } else { issuer };
    let skip = |report: &mut ImportReport, reason: &str| {
        report.skipped.push(Skipped {
            record: format!("{record} '{shown}'"),
            reason: reason.into(),
        });
    };
    if otp.kind == 1 {
        return skip(
            report,
            "HOTP (counter-based) one-time codes are not supported, only TOTP",
        );
    }
    let algorithm = match otp.algorithm {
        0 | 1 => Algorithm::Sha1,
        2 => Algorithm::Sha256,
        3 => Algorithm::Sha512,
        4 => return skip(report, "MD5 one-time codes are not supported"),
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
    use super::super::test_support::*;
    use super::super::*;

    #[test]
    fn uris_fixture() {
        let report = parse(Format::Otpauth, &fixture("otpauth.txt"), None).unwrap();
        assert_items(
            &report.items,
            &[
                item(
                    "totp",
                    "GitHub",
                    None,
                    &[
                        ("username", "octo@example.com"),
                        ("totp", "otpauth://totp/GitHub:octo%40example.com?secret=JBSWY3DPEHPK3PXP&issuer=GitHub&algorithm=SHA1&digits=6&period=30"),
                    ],
                    &[],
                ),
                item(
                    "totp",
                    "Bücher",
                    None,
                    &[
                        ("username", "leser"),
                        ("totp", "otpauth://totp/B%C3%BCcher:leser?secret=GEZDGNBVGY3TQOJQ&issuer=B%C3%BCcher&algorithm=SHA256&digits=8&period=60"),
                    ],
                    &[],
                ),
                item(
                    "totp",
                    "日本語 🎉",
                    None,
                    &[
                        ("username", "日本語 🎉"),
                        ("totp", &uri("otpauth://totp/%E6%97%A5%E6%9C%AC%E8%AA%9E%20%F0%9F%8E%89?secret=JBSWY3DPEHPK3PXP")),
                    ],
                    &[],
                ),
                item(
                    "totp",
                    "Steam",
                    None,
                    &[("totp", "otpauth://totp/?secret=JBSWY3DPEHPK3PXP&algorithm=SHA1&digits=5&period=30&encoder=steam")],
                    &[],
                ),
                item(
                    "totp",
                    "Steam",
                    None,
                    &[
                        ("username", "gamer"),
                        ("totp", &uri("otpauth://totp/Aegis%20Steam:gamer?secret=JBSWY3DPEHPK3PXP&issuer=Steam&encoder=steam")),
                    ],
                    &[],
                ),
            ],
        );
        assert_eq!(
            report.skipped,
            vec![skipped(
                "line 7",
                "HOTP (counter-based) one-time codes are not supported, only TOTP (time-based) ones: expected otpauth://totp/..."
            )]
        );
    }

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
    fn migration_fixture() {
        let report = parse(
            Format::OtpauthMigration,
            &fixture("otpauth-migration.txt"),
            None,
        )
        .unwrap();
        assert_items(
            &report.items,
            &[
                item(
                    "totp",
                    "GitHub",
                    None,
                    &[
                        ("username", "octo@example.com"),
                        ("totp", "otpauth://totp/GitHub:octo%40example.com?secret=JBSWY3DPEHPK3PXP&issuer=GitHub&algorithm=SHA1&digits=6&period=30"),
                    ],
                    &[],
                ),
                item(
                    "totp",
                    "Bücher",
                    None,
                    &[
                        ("username", "leser"),
                        ("totp", "otpauth://totp/B%C3%BCcher:leser?secret=GEZDGNBVGY3TQOJQ&issuer=B%C3%BCcher&algorithm=SHA256&digits=8&period=30"),
                    ],
                    &[],
                ),
                item(
                    "totp",
                    "日本語 🎉",
                    None,
                    &[
                        ("username", "日本語 🎉"),
                        ("totp", "otpauth://totp/%E6%97%A5%E6%9C%AC%E8%AA%9E%20%F0%9F%8E%89?secret=JBSWY3DPEHPK3PXP&algorithm=SHA1&digits=6&period=30"),
                    ],
                    &[],
                ),
                item(
                    "totp",
                    "Example",
                    None,
                    &[
                        ("username", "alice"),
                        ("totp", "otpauth://totp/Example:alice?secret=GEZDGNBVGY3TQOJQ&issuer=Example&algorithm=SHA512&digits=6&period=30"),
                    ],
                    &[],
                ),
            ],
        );
        assert_eq!(
            report.skipped,
            vec![
                skipped(
                    "line 3 account 1 'HOTP Corp'",
                    "HOTP (counter-based) one-time codes are not supported, only TOTP"
                ),
                skipped(
                    "line 3 account 2 'Legacy'",
                    "MD5 one-time codes are not supported"
                ),
            ]
        );
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
