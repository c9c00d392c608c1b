//! TOTP one-time codes (RFC 6238 over RFC 4226) and parsing of the forms in
//! which people hand a TOTP secret to a password manager.
//!
//! Accepted inputs (see [`TotpConfig::parse`]):
//! - a bare base32 secret, as shown next to a QR code ("JBSW Y3DP EHPK 3PXP");
//! - an `otpauth://totp/...` URI in Google's Key Uri Format;
//! - Steam Guard secrets, as `steam://SECRET` (Bitwarden), as an otpauth URI
//!   with `encoder=steam` (KeePassXC) or as `otpauth://steam/...` (Aegis).
//!
//! Secret material is kept out of `Debug` output and error messages, and the
//! intermediate copies made while parsing are zeroized.

use std::fmt;

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha1::Sha1;
use sha2::{Sha256, Sha512};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Shortest secret accepted, in bytes. Short secrets are weak, but they are
/// what some services issued and what KeePassXC accepts: refusing one would
/// lose the user's second factor (issue 19).
pub const MIN_SECRET_BYTES: usize = 1;
/// Longest secret accepted, in bytes.
pub const MAX_SECRET_BYTES: usize = 1024;
/// Fewest decimal digits a (non-Steam) code may have.
pub const MIN_DIGITS: u32 = 6;
/// Most decimal digits a (non-Steam) code may have.
pub const MAX_DIGITS: u32 = 8;
/// Longest time step accepted, in seconds.
pub const MAX_PERIOD: u64 = 3600;

const DEFAULT_DIGITS: u32 = 6;
const DEFAULT_PERIOD: u64 = 30;

/// The characters of a Steam Guard code.
const STEAM_ALPHABET: &[u8; 26] = b"23456789BCDFGHJKMNPQRTVWXY";
const STEAM_DIGITS: u32 = 5;
const STEAM_PERIOD: u64 = 30;

/// Everything but RFC 3986's unreserved characters is percent-encoded in the
/// URIs we write.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The HMAC hash function of a TOTP configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    /// The name used in otpauth URIs: `SHA1`, `SHA256` or `SHA512`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha512 => "SHA512",
        }
    }

    /// Reads an `algorithm=` value: case-insensitive, `SHA-256` is also accepted.
    fn from_param(value: &str) -> Option<Algorithm> {
        let name: String = value
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .collect::<String>()
            .to_ascii_uppercase();
        match name.as_str() {
            "SHA1" => Some(Algorithm::Sha1),
            "SHA256" => Some(Algorithm::Sha256),
            "SHA512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed, validated TOTP configuration. `secret` is the raw key bytes.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, ZeroizeOnDrop)]
pub struct TotpConfig {
    pub secret: Vec<u8>,
    #[zeroize(skip)]
    pub algorithm: Algorithm,
    pub digits: u32,
    pub period: u64,
    pub steam: bool,
    pub issuer: Option<String>,
    pub account: Option<String>,
}

impl fmt::Debug for TotpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TotpConfig")
            .field("secret", &format_args!("[redacted]"))
            .field("algorithm", &self.algorithm)
            .field("digits", &self.digits)
            .field("period", &self.period)
            .field("steam", &self.steam)
            .field("issuer", &self.issuer)
            .field("account", &self.account)
            .finish()
    }
}

/// Why a TOTP secret or URI was refused. No message contains the secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TotpError {
    #[error("secret is empty")]
    EmptySecret,
    /// `position` counts characters from 1, in the secret as it was given.
    #[error("invalid base32 secret: character '{}' at position {position} is not allowed", .ch.escape_debug())]
    InvalidBase32Char { ch: char, position: usize },
    #[error(
        "invalid base32 secret: {symbols} characters is not a possible length \
         (a character may be missing or extra)"
    )]
    InvalidBase32Length { symbols: usize },
    #[error("secret too short: {bytes} bytes (need at least {MIN_SECRET_BYTES} byte)")]
    SecretTooShort { bytes: usize },
    #[error("secret too long: {bytes} bytes (at most {MAX_SECRET_BYTES} bytes are accepted)")]
    SecretTooLong { bytes: usize },
    #[error("otpauth URI has no secret parameter")]
    MissingSecret,
    #[error(
        "HOTP (counter-based) one-time codes are not supported, \
         only TOTP (time-based) ones: expected otpauth://totp/..."
    )]
    HotpNotSupported,
    #[error("unsupported one-time code type '{0}' in otpauth URI (only 'totp' is supported)")]
    UnsupportedOtpType(String),
    #[error("otpauth URI has no code type: expected otpauth://totp/...")]
    MissingOtpType,
    #[error(
        "Google Authenticator export URIs (otpauth-migration://) are not supported: \
         export or show the accounts one at a time instead"
    )]
    MigrationNotSupported,
    #[error(
        "unsupported URI scheme '{0}': expected an otpauth://totp/ URI, \
         a steam:// URI or a base32 secret"
    )]
    UnsupportedScheme(String),
    #[error("malformed {0} URI: it must start with {0}://")]
    MalformedUri(&'static str),
    #[error("unsupported algorithm '{0}' (use SHA1, SHA256 or SHA512)")]
    UnsupportedAlgorithm(String),
    /// `got` is the number given, or the quoted text when it was not a number.
    #[error("digits must be {MIN_DIGITS} to {MAX_DIGITS} (got {got})")]
    InvalidDigits { got: String },
    /// `got` is the number given, or the quoted text when it was not a number.
    #[error("period must be 1 to {MAX_PERIOD} seconds (got {got})")]
    InvalidPeriod { got: String },
    #[error("unsupported encoder '{0}' (only 'steam' is supported)")]
    UnsupportedEncoder(String),
}

impl TotpConfig {
    /// Parses a TOTP secret as a person or another app hands it over.
    ///
    /// Accepts, after trimming surrounding whitespace:
    /// - a bare base32 secret (SHA1, 6 digits, 30 s) in any case, with spaces
    ///   or `-` separators, with or without `=` padding;
    /// - an `otpauth://totp/LABEL?secret=..&issuer=..&algorithm=..&digits=..&period=..`
    ///   URI (Key Uri Format): parameter names and the algorithm in any case,
    ///   parameters in any order, unknown ones ignored, the first of repeated
    ///   ones used; label and values percent-decoded (`+` in a query value is a
    ///   space); a label `Issuer:account` gives issuer and account, and the
    ///   `issuer` parameter wins over the label's issuer;
    /// - Steam Guard: `steam://SECRET`, an otpauth URI with `encoder=steam`, or
    ///   `otpauth://steam/...`. These always give 5 characters from Steam's
    ///   alphabet with HMAC-SHA1 every 30 s; `algorithm`, `digits` and `period`
    ///   parameters are then ignored.
    ///
    /// The secret must decode to [`MIN_SECRET_BYTES`]..=[`MAX_SECRET_BYTES`] bytes.
    pub fn parse(input: &str) -> Result<TotpConfig, TotpError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(TotpError::EmptySecret);
        }
        if let Some(rest) = strip_prefix_ignore_case(input, "otpauth://") {
            return parse_otpauth(rest);
        }
        if let Some(rest) = strip_prefix_ignore_case(input, "steam://") {
            let secret = decode_component(rest, false);
            return Ok(TotpConfig::steam(decode_secret(&secret)?, None, None));
        }
        if let Some(scheme) = uri_scheme(input) {
            let lower = scheme.to_ascii_lowercase();
            match lower.as_str() {
                "otpauth" => return Err(TotpError::MalformedUri("otpauth")),
                "steam" => return Err(TotpError::MalformedUri("steam")),
                "otpauth-migration" => return Err(TotpError::MigrationNotSupported),
                // A long run of base32 letters before a ':' may be the secret
                // itself: never echo that. The bare-secret path below reports
                // the ':' instead.
                _ if !could_be_base32(scheme) => {
                    return Err(TotpError::UnsupportedScheme(shown(&lower)))
                }
                _ => {}
            }
        }
        let secret = decode_secret(input)?;
        Ok(TotpConfig {
            secret: secret_vec(secret),
            algorithm: Algorithm::Sha1,
            digits: DEFAULT_DIGITS,
            period: DEFAULT_PERIOD,
            steam: false,
            issuer: None,
            account: None,
        })
    }

    /// The code at unix time `unix_secs`: RFC 6238 with counter
    /// `unix_secs / period` and RFC 4226 dynamic truncation, zero-padded to
    /// `digits`; for Steam, 5 characters of Steam's alphabet (HMAC-SHA1).
    ///
    /// Never panics, whatever the fields hold (a period of 0 counts as 1 and
    /// digits are clamped to 1..=10).
    pub fn code_at(&self, unix_secs: u64) -> String {
        let counter = unix_secs / self.period.max(1);
        if self.steam {
            let mut value = hotp::<Hmac<Sha1>>(&self.secret, counter);
            let mut code = String::with_capacity(STEAM_DIGITS as usize);
            for _ in 0..STEAM_DIGITS {
                code.push(char::from(STEAM_ALPHABET[(value % 26) as usize]));
                value /= 26;
            }
            return code;
        }
        let value = match self.algorithm {
            Algorithm::Sha1 => hotp::<Hmac<Sha1>>(&self.secret, counter),
            Algorithm::Sha256 => hotp::<Hmac<Sha256>>(&self.secret, counter),
            Algorithm::Sha512 => hotp::<Hmac<Sha512>>(&self.secret, counter),
        };
        let digits = self.digits.clamp(1, 10);
        let code = u64::from(value) % 10u64.pow(digits);
        format!("{code:0width$}", width = digits as usize)
    }

    /// Seconds until the code changes, at unix time `unix_secs`:
    /// `period - unix_secs % period` (so 1..=period).
    pub fn seconds_remaining(&self, unix_secs: u64) -> u64 {
        let period = self.period.max(1);
        period - unix_secs % period
    }

    /// The canonical otpauth URI, for storage and export:
    /// `otpauth://totp/ISSUER:ACCOUNT?secret=BASE32&issuer=ISSUER&algorithm=SHA1&digits=6&period=30`
    /// (base32 without padding; `&encoder=steam` added for Steam).
    ///
    /// `parse(&c.to_uri())` gives back `c` for every config that `parse`
    /// produced (issuer and account trimmed and non-empty).
    pub fn to_uri(&self) -> String {
        let secret = Zeroizing::new(data_encoding::BASE32_NOPAD.encode(&self.secret));
        let encode = |s: &str| utf8_percent_encode(s, URI_COMPONENT).to_string();
        let label = match (&self.issuer, &self.account) {
            (Some(issuer), Some(account)) => format!("{}:{}", encode(issuer), encode(account)),
            (Some(issuer), None) => format!("{}:", encode(issuer)),
            // An encoded ':' alone would be read as the issuer separator, so a
            // literal one marks the issuer as absent.
            (None, Some(account)) if account.contains(':') => format!(":{}", encode(account)),
            (None, Some(account)) => encode(account),
            (None, None) => String::new(),
        };
        let (algorithm, digits, period) = if self.steam {
            (Algorithm::Sha1, STEAM_DIGITS, STEAM_PERIOD)
        } else {
            (self.algorithm, self.digits, self.period)
        };
        let mut uri = String::with_capacity(64 + label.len() + secret.len());
        uri.push_str("otpauth://totp/");
        uri.push_str(&label);
        uri.push_str("?secret=");
        uri.push_str(&secret);
        if let Some(issuer) = &self.issuer {
            uri.push_str("&issuer=");
            uri.push_str(&encode(issuer));
        }
        uri.push_str("&algorithm=");
        uri.push_str(algorithm.as_str());
        uri.push_str(&format!("&digits={digits}&period={period}"));
        if self.steam {
            uri.push_str("&encoder=steam");
        }
        uri
    }

    fn steam(
        secret: Zeroizing<Vec<u8>>,
        issuer: Option<String>,
        account: Option<String>,
    ) -> TotpConfig {
        TotpConfig {
            secret: secret_vec(secret),
            algorithm: Algorithm::Sha1,
            digits: STEAM_DIGITS,
            period: STEAM_PERIOD,
            steam: true,
            issuer,
            account,
        }
    }
}

/// HOTP value (RFC 4226 dynamic truncation, 31 bits) of `counter` under `key`.
fn hotp<M: Mac + KeyInit>(key: &[u8], counter: u64) -> u32 {
    let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(&counter.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    let bytes = [
        digest[offset],
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ];
    u32::from_be_bytes(bytes) & 0x7fff_ffff
}

/// Moves the bytes out of the zeroizing wrapper without copying them.
fn secret_vec(mut secret: Zeroizing<Vec<u8>>) -> Vec<u8> {
    std::mem::take(&mut *secret)
}

fn parse_otpauth(rest: &str) -> Result<TotpConfig, TotpError> {
    // A fragment is never part of the data.
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (otp_type, label) = path.split_once('/').unwrap_or((path, ""));
    let steam_type = match otp_type.to_ascii_lowercase().as_str() {
        "totp" => false,
        "steam" => true,
        "hotp" => return Err(TotpError::HotpNotSupported),
        "" => return Err(TotpError::MissingOtpType),
        _ => {
            let otp_type = decode_component(otp_type, false);
            return Err(TotpError::UnsupportedOtpType(shown(&otp_type)));
        }
    };

    let params = QueryParams::parse(query);
    let steam = match params.value(params.encoder) {
        None => steam_type,
        Some(encoder) if encoder.eq_ignore_ascii_case("steam") => true,
        Some(encoder) => return Err(TotpError::UnsupportedEncoder(shown(&encoder))),
    };
    let secret = params.secret.ok_or(TotpError::MissingSecret)?;
    let secret = decode_secret(&decode_component(secret, true))?;

    let (label_issuer, account) = split_label(label);
    let issuer = params.value(params.issuer).or(label_issuer);
    if steam {
        return Ok(TotpConfig::steam(secret, issuer, account));
    }

    let algorithm = match params.value(params.algorithm) {
        None => Algorithm::Sha1,
        Some(name) => Algorithm::from_param(&name)
            .ok_or_else(|| TotpError::UnsupportedAlgorithm(shown(&name)))?,
    };
    let digits = match params.value(params.digits) {
        None => DEFAULT_DIGITS,
        Some(text) => match text.parse::<u64>() {
            Ok(n) if (u64::from(MIN_DIGITS)..=u64::from(MAX_DIGITS)).contains(&n) => n as u32,
            Ok(n) => return Err(TotpError::InvalidDigits { got: n.to_string() }),
            Err(_) => return Err(TotpError::InvalidDigits { got: quoted(&text) }),
        },
    };
    let period = match params.value(params.period) {
        None => DEFAULT_PERIOD,
        Some(text) => match text.parse::<u64>() {
            Ok(n) if (1..=MAX_PERIOD).contains(&n) => n,
            Ok(n) => return Err(TotpError::InvalidPeriod { got: n.to_string() }),
            Err(_) => return Err(TotpError::InvalidPeriod { got: quoted(&text) }),
        },
    };
    Ok(TotpConfig {
        secret: secret_vec(secret),
        algorithm,
        digits,
        period,
        steam: false,
        issuer,
        account,
    })
}

/// The raw (still percent-encoded) query parameters we know; for each, the
/// first occurrence wins.
#[derive(Default)]
struct QueryParams<'a> {
    secret: Option<&'a str>,
    issuer: Option<&'a str>,
    algorithm: Option<&'a str>,
    digits: Option<&'a str>,
    period: Option<&'a str>,
    encoder: Option<&'a str>,
}

impl<'a> QueryParams<'a> {
    fn parse(query: &'a str) -> QueryParams<'a> {
        let mut params = QueryParams::default();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match name.to_ascii_lowercase().as_str() {
                "secret" => &mut params.secret,
                "issuer" => &mut params.issuer,
                "algorithm" => &mut params.algorithm,
                "digits" => &mut params.digits,
                "period" => &mut params.period,
                "encoder" => &mut params.encoder,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(value);
            }
        }
        params
    }

    /// A decoded, trimmed, non-secret value; `None` when absent or blank.
    fn value(&self, raw: Option<&str>) -> Option<String> {
        let decoded = decode_component(raw?, true);
        let trimmed = decoded.trim();
        (!trimmed.is_empty()).then(|| trimmed.to_owned())
    }
}

/// Splits a raw label into (issuer, account). The separator is the first
/// literal ':', or else the first encoded one (`%3A`).
fn split_label(raw: &str) -> (Option<String>, Option<String>) {
    let non_blank = |s: &str| {
        let s = s.trim();
        (!s.is_empty()).then(|| s.to_owned())
    };
    if let Some((issuer, account)) = raw.split_once(':') {
        return (
            non_blank(&decode_component(issuer, false)),
            non_blank(&decode_component(account, false)),
        );
    }
    let label = decode_component(raw, false);
    match label.split_once(':') {
        Some((issuer, account)) => (non_blank(issuer), non_blank(account)),
        None => (None, non_blank(&label)),
    }
}

/// Percent-decodes one URI component into zeroizing memory; with
/// `plus_is_space` (query values), a literal '+' is a space. Bytes that are
/// not UTF-8 become U+FFFD.
fn decode_component(raw: &str, plus_is_space: bool) -> Zeroizing<String> {
    let mut bytes = Zeroizing::new(Vec::with_capacity(raw.len()));
    let plus = if plus_is_space { b' ' } else { b'+' };
    for (i, part) in raw.split('+').enumerate() {
        if i > 0 {
            bytes.push(plus);
        }
        bytes.extend(percent_decode_str(part));
    }
    match String::from_utf8(std::mem::take(&mut *bytes)) {
        Ok(text) => Zeroizing::new(text),
        Err(err) => {
            let bytes = Zeroizing::new(err.into_bytes());
            Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned())
        }
    }
}

/// Decodes a base32 secret as people write it: any case, whitespace and '-'
/// ignored, '=' padding optional (but only at the end), non-zero trailing
/// bits tolerated. Checks the decoded length.
fn decode_secret(text: &str) -> Result<Zeroizing<Vec<u8>>, TotpError> {
    // Never reallocates, so no copy of the secret is left behind.
    let mut out = Zeroizing::new(Vec::with_capacity(text.len() * 5 / 8 + 1));
    let mut buffer: u32 = 0;
    let mut buffered_bits = 0u32;
    let mut symbols = 0usize;
    let mut padding_at = None;
    for (index, ch) in text.chars().enumerate() {
        let position = index + 1;
        if ch.is_whitespace() || ch == '-' {
            continue;
        }
        if ch == '=' {
            padding_at.get_or_insert(position);
            continue;
        }
        let value = match ch {
            'A'..='Z' => ch as u32 - 'A' as u32,
            'a'..='z' => ch as u32 - 'a' as u32,
            '2'..='7' => ch as u32 - '2' as u32 + 26,
            _ => {
                buffer.zeroize();
                return Err(TotpError::InvalidBase32Char { ch, position });
            }
        };
        if let Some(position) = padding_at {
            buffer.zeroize();
            return Err(TotpError::InvalidBase32Char { ch: '=', position });
        }
        buffer = (buffer << 5) | value;
        buffered_bits += 5;
        if buffered_bits >= 8 {
            buffered_bits -= 8;
            out.push((buffer >> buffered_bits) as u8);
            buffer &= (1 << buffered_bits) - 1;
        }
        symbols += 1;
    }
    buffer.zeroize();
    if symbols == 0 {
        return Err(TotpError::EmptySecret);
    }
    // 1, 3 or 6 symbols past a multiple of 8 encode no whole byte.
    if matches!(symbols % 8, 1 | 3 | 6) {
        return Err(TotpError::InvalidBase32Length { symbols });
    }
    match out.len() {
        n if n < MIN_SECRET_BYTES => Err(TotpError::SecretTooShort { bytes: n }),
        n if n > MAX_SECRET_BYTES => Err(TotpError::SecretTooLong { bytes: n }),
        _ => Ok(out),
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// The scheme of `text` if it starts like a URI (`scheme:`), per RFC 3986.
fn uri_scheme(text: &str) -> Option<&str> {
    let (scheme, _) = text.split_once(':')?;
    let mut chars = scheme.chars();
    let first_is_letter = chars.next()?.is_ascii_alphabetic();
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    (first_is_letter && rest_ok).then_some(scheme)
}

/// Whether `text` could be (part of) a base32 secret of the minimum length.
fn could_be_base32(text: &str) -> bool {
    let symbols = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect::<Vec<_>>();
    symbols.len() >= 8
        && symbols
            .iter()
            .all(|c| c.is_ascii_alphabetic() || ('2'..='7').contains(c))
}

/// A user-supplied (non-secret) value made safe to show in a message:
/// escaped and cut to 40 characters.
fn shown(text: &str) -> String {
    const LIMIT: usize = 40;
    let mut out: String = text
        .chars()
        .take(LIMIT)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(LIMIT).is_some() {
        out.push('…');
    }
    out
}

fn quoted(text: &str) -> String {
    format!("'{}'", shown(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const RFC_SHA1: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    /// KeePassXC's Steam test secret; its codes were produced by the Steam
    /// mobile app (KeePassXC tests/TestTotp.cpp, testSteamTotp).
    const STEAM_SECRET: &str = "63BEDWCQZKTQWPESARIERL5DTTQFCJTK";

    fn parse(input: &str) -> TotpConfig {
        TotpConfig::parse(input).unwrap_or_else(|e| panic!("{input:?} should parse: {e}"))
    }

    fn parse_err(input: &str) -> TotpError {
        match TotpConfig::parse(input) {
            Ok(config) => panic!("{input:?} should be refused, got {config:?}"),
            Err(err) => err,
        }
    }

    struct Vector {
        algorithm: String,
        secret: String,
        time: u64,
        digits: u32,
        period: u64,
        expected: String,
        source: String,
    }

    fn vectors() -> Vec<Vector> {
        // Compiled in: crdt does no IO, not even in its unit tests.
        let text = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/testdata/totp_vectors.tsv"
        ));
        let mut lines = text.lines().filter(|line| !line.trim().is_empty());
        let header = lines.next().expect("vector file has a header");
        assert_eq!(
            header.split('\t').collect::<Vec<_>>(),
            [
                "algorithm",
                "secret_base32",
                "unix_time",
                "digits",
                "period",
                "expected_code",
                "source"
            ]
        );
        lines
            .map(|line| {
                let cols: Vec<&str> = line.split('\t').collect();
                assert_eq!(cols.len(), 7, "bad vector row {line:?}");
                Vector {
                    algorithm: cols[0].to_owned(),
                    secret: cols[1].to_owned(),
                    time: cols[2].parse().unwrap(),
                    digits: cols[3].parse().unwrap(),
                    period: cols[4].parse().unwrap(),
                    expected: cols[5].to_owned(),
                    source: cols[6].to_owned(),
                }
            })
            .collect()
    }

    #[test]
    fn every_vector_matches() {
        let vectors = vectors();
        assert!(vectors.len() >= 40, "only {} vectors", vectors.len());
        let mut bare_checked = 0;
        for v in &vectors {
            let what = format!(
                "{} {} t={} digits={} period={} ({})",
                v.algorithm, v.secret, v.time, v.digits, v.period, v.source
            );
            let uri = format!(
                "otpauth://totp/Vectors:row?secret={}&algorithm={}&digits={}&period={}",
                v.secret, v.algorithm, v.digits, v.period
            );
            let config = parse(&uri);
            assert_eq!(config.algorithm.as_str(), v.algorithm, "{what}");
            assert_eq!(config.code_at(v.time), v.expected, "{what}");
            // The canonical URI gives the same code.
            assert_eq!(
                parse(&config.to_uri()).code_at(v.time),
                v.expected,
                "{what}"
            );
            if v.algorithm == "SHA1" && v.digits == 6 && v.period == 30 {
                assert_eq!(parse(&v.secret).code_at(v.time), v.expected, "{what}");
                bare_checked += 1;
            }
        }
        assert!(bare_checked >= 5);
    }

    #[test]
    fn bare_secret_defaults() {
        let config = parse(RFC_SHA1);
        assert_eq!(config.secret, b"12345678901234567890");
        assert_eq!(config.algorithm, Algorithm::Sha1);
        assert_eq!((config.digits, config.period), (6, 30));
        assert!(!config.steam);
        assert_eq!(
            (config.issuer.as_deref(), config.account.as_deref()),
            (None, None)
        );
    }

    #[test]
    fn bare_secret_spelling_variants() {
        let canonical = parse(RFC_SHA1);
        for input in [
            "gezdgnbvgy3tqojqgezdgnbvgy3tqojq",
            "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ",
            "gezd-gnbv-gy3t-qojq-gezd-gnbv-gy3t-qojq",
            "  \tgeZd gnbv\ngy3t qojq gezd gnbv gy3t qojq \n",
        ] {
            assert_eq!(parse(input), canonical, "{input:?}");
        }
    }

    #[test]
    fn padding_is_optional_and_may_be_percent_encoded() {
        let bytes = b"12345678901"; // 11 bytes: 18 symbols + 6 '='
        let padded = data_encoding::BASE32.encode(bytes);
        assert!(padded.ends_with("======"));
        let unpadded = padded.trim_end_matches('=');
        for input in [
            padded.clone(),
            unpadded.to_owned(),
            unpadded.to_lowercase(),
            format!("otpauth://totp/x?secret={padded}"),
            format!("otpauth://totp/x?secret={unpadded}"),
            format!("otpauth://totp/x?secret={unpadded}%3D%3D%3D%3D%3D%3D"),
            format!("otpauth://totp/x?secret={unpadded}%3d%3d"),
        ] {
            assert_eq!(parse(&input).secret, bytes, "{input}");
        }
    }

    #[test]
    fn non_canonical_trailing_bits_are_tolerated() {
        // 26 symbols carry 130 bits; the last 2 are not part of the 16 bytes.
        let canonical = data_encoding::BASE32_NOPAD.encode(&[0xAB; 16]);
        const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let mut sloppy = canonical.clone();
        let last = sloppy.pop().unwrap();
        let index = ALPHABET.find(last).unwrap() | 0b11;
        sloppy.push(ALPHABET.as_bytes()[index] as char);
        assert_ne!(sloppy, canonical);
        assert_eq!(parse(&sloppy).secret, parse(&canonical).secret);
    }

    #[test]
    fn uri_params_in_any_order_and_case() {
        let config = parse(&format!(
            "OTPAUTH://TOTP/Acme:bob?PERIOD=60&Digits=8&algorithm=sha256&foo=bar&image=https%3A%2F%2Fx&SECRET={}&issuer=Acme#frag",
            RFC_SHA1.to_lowercase()
        ));
        assert_eq!(config.secret, b"12345678901234567890");
        assert_eq!(config.algorithm, Algorithm::Sha256);
        assert_eq!((config.digits, config.period), (8, 60));
        assert_eq!(config.issuer.as_deref(), Some("Acme"));
        assert_eq!(config.account.as_deref(), Some("bob"));
        for (value, expected) in [
            ("SHA1", Algorithm::Sha1),
            ("sha1", Algorithm::Sha1),
            ("Sha512", Algorithm::Sha512),
            ("SHA-256", Algorithm::Sha256),
        ] {
            let uri = format!("otpauth://totp/x?secret={RFC_SHA1}&algorithm={value}");
            assert_eq!(parse(&uri).algorithm, expected, "{value}");
        }
    }

    #[test]
    fn uri_defaults_and_secret_spelling() {
        let config = parse(&format!("otpauth://totp/?secret={RFC_SHA1}"));
        assert_eq!(config, parse(RFC_SHA1));
        let spaced = "otpauth://totp/x?secret=GEZD%20GNBV+GY3T-QOJQ%20GEZDGNBVGY3TQOJQ";
        assert_eq!(parse(spaced).secret, b"12345678901234567890");
        // Blank optional parameters fall back to the defaults.
        let blank =
            format!("otpauth://totp/x?secret={RFC_SHA1}&digits=&period=&algorithm=&issuer=");
        let config = parse(&blank);
        assert_eq!(
            (config.algorithm, config.digits, config.period),
            (Algorithm::Sha1, 6, 30)
        );
        assert_eq!(config.issuer, None);
        // The first of repeated parameters is used.
        let repeated = format!("otpauth://totp/x?secret={RFC_SHA1}&digits=8&digits=7");
        assert_eq!(parse(&repeated).digits, 8);
    }

    #[test]
    fn label_and_issuer_are_percent_decoded() {
        let cases: &[(&str, Option<&str>, Option<&str>)] = &[
            (
                "ACME%20Co:john.doe%40email.com?issuer=ACME%20Co",
                Some("ACME Co"),
                Some("john.doe@email.com"),
            ),
            (
                "Example:alice@google.com?issuer=Example",
                Some("Example"),
                Some("alice@google.com"),
            ),
            ("Example:%20alice?", Some("Example"), Some("alice")),
            ("Escaped%3Abob?", Some("Escaped"), Some("bob")),
            ("A%3AB:carol?", Some("A:B"), Some("carol")),
            ("Old:bob?issuer=New", Some("New"), Some("bob")),
            ("bob?issuer=Param+Name", Some("Param Name"), Some("bob")),
            ("a+b?issuer=R%26D%20%2B", Some("R&D +"), Some("a+b")),
            ("just-account?", None, Some("just-account")),
            ("Issuer%20Only:?", Some("Issuer Only"), None),
            (
                "%E2%9C%93%20Caf%C3%A9:zo%C3%AB?",
                Some("✓ Café"),
                Some("zoë"),
            ),
            ("?", None, None),
        ];
        for (tail, issuer, account) in cases {
            let (label, query) = tail.split_once('?').unwrap();
            let sep = if query.is_empty() { "" } else { "&" };
            let uri = format!("otpauth://totp/{label}?secret={RFC_SHA1}{sep}{query}");
            let config = parse(&uri);
            assert_eq!(config.issuer.as_deref(), *issuer, "{uri}");
            assert_eq!(config.account.as_deref(), *account, "{uri}");
        }
    }

    #[test]
    fn steam_known_codes_in_every_form() {
        let forms = [
            format!("steam://{STEAM_SECRET}"),
            format!("  STEAM://{}  ", STEAM_SECRET.to_lowercase()),
            // KeePassXC's own test URI.
            format!(
                "otpauth://totp/test:test@example.com?secret={STEAM_SECRET}&issuer=Valve\
                 &algorithm=SHA1&digits=5&period=30&encoder=steam"
            ),
            format!("otpauth://totp/Steam:bob?secret={STEAM_SECRET}&encoder=STEAM"),
            // Aegis.
            format!("otpauth://steam/Steam:bob?secret={STEAM_SECRET}&issuer=Steam&digits=5"),
        ];
        for form in &forms {
            let config = parse(form);
            assert!(config.steam, "{form}");
            assert_eq!(config.algorithm, Algorithm::Sha1);
            assert_eq!((config.digits, config.period), (5, 30));
            // Produced by the Steam mobile app.
            assert_eq!(config.code_at(1_511_200_518), "FR8RV", "{form}");
            assert_eq!(config.code_at(1_511_200_714), "9P3VP", "{form}");
            assert_eq!(parse(&config.to_uri()), config, "{form}");
        }
        let keepass = parse(&forms[2]);
        assert_eq!(keepass.issuer.as_deref(), Some("Valve"));
        assert_eq!(keepass.account.as_deref(), Some("test@example.com"));
        let bitwarden = parse(&forms[0]);
        assert_eq!(
            (bitwarden.issuer.as_deref(), bitwarden.account.as_deref()),
            (None, None)
        );
    }

    #[test]
    fn steam_ignores_other_code_settings() {
        let uri = format!("otpauth://totp/x?secret={STEAM_SECRET}&encoder=steam&algorithm=SHA512&digits=8&period=60");
        let config = parse(&uri);
        assert_eq!(
            (config.algorithm, config.digits, config.period),
            (Algorithm::Sha1, 5, 30)
        );
        assert_eq!(config.code_at(1_511_200_518), "FR8RV");
    }

    #[test]
    fn steam_code_properties() {
        let config = parse(&format!("steam://{RFC_SHA1}"));
        let mut distinct = std::collections::HashSet::new();
        for step in 0..200u64 {
            let t = 1_700_000_000 + step * 30;
            let code = config.code_at(t);
            assert_eq!(code.len(), 5);
            assert!(code.bytes().all(|b| STEAM_ALPHABET.contains(&b)), "{code}");
            assert_eq!(
                code,
                config.code_at(t + 29 - t % 30),
                "same step, same code"
            );
            distinct.insert(code);
        }
        assert!(
            distinct.len() > 190,
            "codes should vary: {}",
            distinct.len()
        );
    }

    #[test]
    fn seconds_remaining_counts_down() {
        let config = parse(RFC_SHA1);
        assert_eq!(config.seconds_remaining(0), 30);
        assert_eq!(config.seconds_remaining(1), 29);
        assert_eq!(config.seconds_remaining(59), 1);
        assert_eq!(config.seconds_remaining(60), 30);
        let minute = parse(&format!("otpauth://totp/x?secret={RFC_SHA1}&period=60"));
        assert_eq!(minute.seconds_remaining(1_700_000_000), 40);
    }

    #[test]
    fn to_uri_is_canonical_and_round_trips() {
        let config = parse(&format!(
            "otpauth://totp/ACME%20Co:john%40x.com?secret={}&issuer=ACME+Co&algorithm=sha512&digits=8&period=60",
            RFC_SHA1.to_lowercase()
        ));
        assert_eq!(
            config.to_uri(),
            format!("otpauth://totp/ACME%20Co:john%40x.com?secret={RFC_SHA1}&issuer=ACME%20Co&algorithm=SHA512&digits=8&period=60")
        );
        assert_eq!(
            parse(&format!("steam://{STEAM_SECRET}")).to_uri(),
            format!("otpauth://totp/?secret={STEAM_SECRET}&algorithm=SHA1&digits=5&period=30&encoder=steam")
        );
        let labels: &[(Option<&str>, Option<&str>)] = &[
            (Some("ACME"), Some("bob")),
            (Some("A:B"), Some("c:d")),
            (None, Some("c:d")),
            (None, Some("plain")),
            (Some("Only"), None),
            (None, None),
            (Some("sp ace+plus&amp=eq?q#h/s%"), Some("ü@例.com")),
        ];
        for (issuer, account) in labels {
            for steam in [false, true] {
                let config = TotpConfig {
                    secret: b"12345678901".to_vec(),
                    algorithm: if steam {
                        Algorithm::Sha1
                    } else {
                        Algorithm::Sha256
                    },
                    digits: if steam { 5 } else { 7 },
                    period: if steam { 30 } else { 45 },
                    steam,
                    issuer: issuer.map(str::to_owned),
                    account: account.map(str::to_owned),
                };
                let uri = config.to_uri();
                assert_eq!(parse(&uri), config, "{uri}");
            }
        }
    }

    #[test]
    fn refusals() {
        use TotpError::*;
        let cases: Vec<(String, TotpError)> = vec![
            ("".into(), EmptySecret),
            ("   \n".into(), EmptySecret),
            ("- - -".into(), EmptySecret),
            ("====".into(), EmptySecret),
            (
                "JBS1WY3DPEHPK3PXP".into(),
                InvalidBase32Char {
                    ch: '1',
                    position: 4,
                },
            ),
            (
                "JBSWY3DP EHPK3PX0".into(),
                InvalidBase32Char {
                    ch: '0',
                    position: 17,
                },
            ),
            (
                "JBSWY3DP=EHPK3PXP".into(),
                InvalidBase32Char {
                    ch: '=',
                    position: 9,
                },
            ),
            (
                "JBSWY3DPÉHPK3PXP".into(),
                InvalidBase32Char {
                    ch: 'É',
                    position: 9,
                },
            ),
            ("JBSWY3DPEHPK3P".into(), InvalidBase32Length { symbols: 14 }),
            (
                "JBSWY3DPEHPK3PXPA".into(),
                InvalidBase32Length { symbols: 17 },
            ),
            (
                "JBSWY3DPEHPK3PXPABC".into(),
                InvalidBase32Length { symbols: 19 },
            ),
            ("JBSWY3".into(), InvalidBase32Length { symbols: 6 }),
            ("A".repeat(1640), SecretTooLong { bytes: 1025 }),
            ("otpauth://totp/x".into(), MissingSecret),
            ("otpauth://totp/x?issuer=a".into(), MissingSecret),
            ("otpauth://totp/x?secret=".into(), EmptySecret),
            (
                format!("otpauth://hotp/x?secret={RFC_SHA1}&counter=1"),
                HotpNotSupported,
            ),
            (
                format!("OTPAUTH://HOTP/x?secret={RFC_SHA1}"),
                HotpNotSupported,
            ),
            (
                format!("otpauth://yaotp/x?secret={RFC_SHA1}"),
                UnsupportedOtpType("yaotp".into()),
            ),
            (format!("otpauth://?secret={RFC_SHA1}"), MissingOtpType),
            ("otpauth://".into(), MissingOtpType),
            (
                format!("otpauth:totp/x?secret={RFC_SHA1}"),
                MalformedUri("otpauth"),
            ),
            (format!("steam:{STEAM_SECRET}"), MalformedUri("steam")),
            (
                "otpauth-migration://offline?data=CjEKCkhlbGxvId".into(),
                MigrationNotSupported,
            ),
            (
                "https://example.com/?secret=JBSWY3DPEHPK3PXP".into(),
                UnsupportedScheme("https".into()),
            ),
            ("mailto:a@b.c".into(), UnsupportedScheme("mailto".into())),
            (
                format!("otpauth://totp/x?secret={RFC_SHA1}&algorithm=MD5"),
                UnsupportedAlgorithm("MD5".into()),
            ),
            (
                format!("otpauth://totp/x?secret={RFC_SHA1}&digits=9"),
                InvalidDigits { got: "9".into() },
            ),
            (
                format!("otpauth://totp/x?secret={RFC_SHA1}&digits=5"),
                InvalidDigits { got: "5".into() },
            ),
            (
                format!("otpauth://totp/x?secret={RFC_SHA1}&digits=six"),
                InvalidDigits {
                    got: "'six'".into(),
                },
            ),
            (
                format!("otpauth://totp/x?secret={RFC_SHA1}&digits=-6"),
                InvalidDigits { got: "'-6'".into() },
            ),
            (
                format!("otpauth://totp/x?secret={RFC_SHA1}&period=0"),
                InvalidPeriod { got: "0".into() },
            ),
            (
                format!("otpauth://totp/x?secret={RFC_SHA1}&period=3601"),
                InvalidPeriod { got: "3601".into() },
            ),
            (
                format!("otpauth://totp/x?secret={RFC_SHA1}&period=99999999999999999999999"),
                InvalidPeriod {
                    got: "'99999999999999999999999'".into(),
                },
            ),
            (
                format!("otpauth://totp/x?secret={RFC_SHA1}&encoder=yandex"),
                UnsupportedEncoder("yandex".into()),
            ),
            (
                "otpauth://totp/x?secret=JBSW1Y3DPEHPK3PXP".into(),
                InvalidBase32Char {
                    ch: '1',
                    position: 5,
                },
            ),
            ("steam://".into(), EmptySecret),
            (
                "steam://JBSWY3DP!".into(),
                InvalidBase32Char {
                    ch: '!',
                    position: 9,
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_err(&input), expected, "{input:?}");
        }
    }

    #[test]
    fn secret_length_bounds() {
        assert_eq!(parse("JBSWY3DP").secret.len(), 5);
        // Issue 19: short secrets (KeePassXC accepts them) are kept.
        assert_eq!(parse("JBSWY3D").secret.len(), 4);
        assert_eq!(parse("JBSWY").secret.len(), 3);
        assert_eq!(parse("ME").secret.len(), 1);
        let longest = data_encoding::BASE32_NOPAD.encode(&[7u8; MAX_SECRET_BYTES]);
        assert_eq!(parse(&longest).secret.len(), MAX_SECRET_BYTES);
        let too_long = data_encoding::BASE32_NOPAD.encode(&[7u8; MAX_SECRET_BYTES + 1]);
        assert_eq!(
            parse_err(&too_long),
            TotpError::SecretTooLong {
                bytes: MAX_SECRET_BYTES + 1
            }
        );
    }

    #[test]
    fn error_messages_read_well() {
        let msg = |input: &str| parse_err(input).to_string();
        assert_eq!(
            msg("JBS1WY3DPEHPK3PXP"),
            "invalid base32 secret: character '1' at position 4 is not allowed"
        );
        assert_eq!(
            msg("otpauth://totp/x"),
            "otpauth URI has no secret parameter"
        );
        assert_eq!(
            msg(&format!("otpauth://totp/x?secret={RFC_SHA1}&algorithm=MD5")),
            "unsupported algorithm 'MD5' (use SHA1, SHA256 or SHA512)"
        );
        assert_eq!(
            msg(&format!("otpauth://totp/x?secret={RFC_SHA1}&digits=9")),
            "digits must be 6 to 8 (got 9)"
        );
        assert_eq!(
            msg(&format!("otpauth://totp/x?secret={RFC_SHA1}&period=0")),
            "period must be 1 to 3600 seconds (got 0)"
        );
        assert_eq!(msg(""), "secret is empty");
        assert!(msg("JBSWY3DPE").contains("not a possible length"));
        assert!(msg("otpauth://hotp/x?secret=JBSWY3DPEHPK3PXP").contains("HOTP"));
        let control = msg(&format!(
            "otpauth://totp/x?secret={RFC_SHA1}&algorithm=%0A%1B"
        ));
        assert!(
            !control.contains('\n') && !control.contains('\u{1b}'),
            "{control:?}"
        );
        let long = msg(&format!(
            "otpauth://totp/x?secret={RFC_SHA1}&algorithm={}",
            "X".repeat(500)
        ));
        assert!(long.len() < 150, "{long}");
    }

    #[test]
    fn secrets_stay_out_of_debug_and_errors() {
        let config = parse(&format!("otpauth://totp/Acme:bob?secret={RFC_SHA1}"));
        let debug = format!("{config:?}");
        assert!(debug.contains("[redacted]"), "{debug}");
        assert!(debug.contains("Acme") && debug.contains("bob"), "{debug}");
        for leak in [
            RFC_SHA1.to_owned(),
            RFC_SHA1.to_lowercase(),
            "12345678901234567890".to_owned(),
            format!("{:?}", config.secret),
            format!("{:?}", &config.secret[..4])
                .trim_end_matches(']')
                .to_owned(),
        ] {
            assert!(!debug.contains(&leak), "{debug} contains {leak}");
        }
        let alternate = format!("{config:#?}");
        assert!(!alternate.contains(RFC_SHA1) && alternate.contains("[redacted]"));

        // A secret-like text before ':' is not echoed as a "scheme", and
        // errors about a secret never repeat it.
        for input in [
            format!("{RFC_SHA1}:"),
            format!("{RFC_SHA1}1"),
            format!("otpauth://totp/x?secret={RFC_SHA1}8"),
            format!("steam://{RFC_SHA1}0"),
            format!("{RFC_SHA1}A"),
        ] {
            let message = parse_err(&input).to_string();
            assert!(
                !message.to_uppercase().contains(&RFC_SHA1[..8]),
                "{message}"
            );
        }
    }

    #[test]
    fn serde_uses_uppercase_algorithm_names() {
        let json = serde_json::to_string(&Algorithm::Sha256).unwrap();
        assert_eq!(json, "\"SHA256\"");
        let config = parse(&format!(
            "otpauth://totp/Acme:bob?secret={RFC_SHA1}&algorithm=SHA512"
        ));
        let json = serde_json::to_string(&config).unwrap();
        let back: TotpConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn code_at_survives_odd_fields() {
        let mut config = parse(RFC_SHA1);
        config.period = 0;
        config.digits = 99;
        assert_eq!(config.code_at(u64::MAX).len(), 10);
        assert_eq!(config.seconds_remaining(u64::MAX), 1);
        config.digits = 0;
        assert_eq!(config.code_at(0).len(), 1);
        config.secret.clear();
        assert_eq!(config.code_at(0).len(), 1);
    }

    fn label_text() -> impl Strategy<Value = Option<String>> {
        proptest::option::of(any::<String>())
            .prop_map(|s| s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()))
    }

    proptest! {
        #[test]
        fn parse_never_panics(input in any::<String>()) {
            let _ = TotpConfig::parse(&input);
        }

        #[test]
        fn parse_never_panics_on_uri_like_input(
            prefix in prop::sample::select(vec![
                "otpauth://totp/", "otpauth://hotp/", "otpauth://steam/", "otpauth://",
                "steam://", "OTPAUTH://TOTP/a:b?secret=", "otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&",
            ]),
            rest in "[a-zA-Z0-9%:/?&=#+ .\\-_~é]{0,80}",
        ) {
            let _ = TotpConfig::parse(&format!("{prefix}{rest}"));
        }

        #[test]
        fn to_uri_round_trips(
            secret in prop::collection::vec(any::<u8>(), MIN_SECRET_BYTES..=100),
            algorithm in prop::sample::select(vec![Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512]),
            digits in MIN_DIGITS..=MAX_DIGITS,
            period in 1..=MAX_PERIOD,
            steam in any::<bool>(),
            issuer in label_text(),
            account in label_text(),
            time in any::<u64>(),
        ) {
            let config = TotpConfig {
                secret,
                algorithm: if steam { Algorithm::Sha1 } else { algorithm },
                digits: if steam { 5 } else { digits },
                period: if steam { 30 } else { period },
                steam,
                issuer,
                account,
            };
            let parsed = TotpConfig::parse(&config.to_uri());
            prop_assert_eq!(parsed.as_ref(), Ok(&config));
            let code = config.code_at(time);
            prop_assert_eq!(code.chars().count(), config.digits as usize);
            prop_assert!((1..=config.period).contains(&config.seconds_remaining(time)));
        }

        #[test]
        fn bare_base32_of_any_key_parses_back(
            secret in prop::collection::vec(any::<u8>(), MIN_SECRET_BYTES..=64),
            lower in any::<bool>(),
        ) {
            let mut text = data_encoding::BASE32.encode(&secret);
            if lower {
                text = text.to_lowercase();
            }
            prop_assert_eq!(TotpConfig::parse(&text).map(|c| c.secret.clone()), Ok(secret));
        }
    }
}
