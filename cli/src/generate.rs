//! Password and passphrase generation from the operating system's CSPRNG.

use std::sync::LazyLock;

use rand::rngs::OsRng;
use rand::seq::SliceRandom;
use zeroize::{Zeroize, Zeroizing};

/// Shortest password [`password`] generates.
pub const MIN_PASSWORD_LENGTH: usize = 8;
/// Longest password [`password`] generates.
pub const MAX_PASSWORD_LENGTH: usize = 1024;
/// Fewest words [`passphrase`] generates.
pub const MIN_PASSPHRASE_WORDS: usize = 3;
/// Most words [`passphrase`] generates.
pub const MAX_PASSPHRASE_WORDS: usize = 64;

const LOWERCASE: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
const UPPERCASE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const DIGITS: &[u8] = b"0123456789";
const SYMBOLS: &[u8] = b"!@#$%^&*()-_=+[]{};:,.<>?/~";

/// What [`password`] generates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PasswordSpec {
    /// Number of characters, 8..=1024.
    pub length: usize,
    /// Whether symbols are used besides letters and digits.
    pub symbols: bool,
}

/// The character classes a spec enables; each must appear in the password.
fn classes(spec: &PasswordSpec) -> Vec<&'static [u8]> {
    let mut classes = vec![LOWERCASE, UPPERCASE, DIGITS];
    if spec.symbols {
        classes.push(SYMBOLS);
    }
    classes
}

/// A random password from the OS CSPRNG: lowercase and uppercase letters,
/// digits and, with `spec.symbols`, the symbols `!@#$%^&*()-_=+[]{};:,.<>?/~`.
///
/// Each character is drawn uniformly from the whole alphabet. Passwords
/// missing an enabled class are thrown away whole and drawn again, so the
/// result is uniform among the passwords that contain every class.
pub fn password(spec: &PasswordSpec) -> Result<Zeroizing<String>, String> {
    if !(MIN_PASSWORD_LENGTH..=MAX_PASSWORD_LENGTH).contains(&spec.length) {
        return Err(format!(
            "password length must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters (got {})",
            spec.length
        ));
    }
    let classes = classes(spec);
    let alphabet: Vec<u8> = classes.concat();
    let mut rng = OsRng;
    // Reused across attempts and never grown, so no copy is left behind.
    let mut candidate = Zeroizing::new(Vec::with_capacity(spec.length));
    loop {
        candidate.clear();
        for _ in 0..spec.length {
            candidate.push(*alphabet.choose(&mut rng).expect("alphabet is not empty"));
        }
        let complete = classes
            .iter()
            .all(|class| candidate.iter().any(|c| class.contains(c)));
        if complete {
            break;
        }
    }
    let mut password = Zeroizing::new(String::with_capacity(spec.length));
    password.extend(candidate.iter().map(|&c| char::from(c)));
    candidate.zeroize();
    Ok(password)
}

/// The EFF large wordlist less its four words that contain '-' ("drop-down",
/// "felt-tip", "t-shirt", "yo-yo"), so that a passphrase joined by '-' always
/// splits back into the words it was made of: 7772 words.
fn wordlist() -> &'static [&'static str] {
    static WORDS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
        diceware_wordlists::EFF_LONG_WORDLIST
            .iter()
            .copied()
            .filter(|word| !word.contains('-'))
            .collect()
    });
    &WORDS
}

/// A diceware passphrase: `words` (3..=64) words drawn uniformly with the OS
/// CSPRNG from the EFF large wordlist, joined by '-'. The list's four
/// hyphenated words are left out (see [`passphrase_entropy_bits`]).
pub fn passphrase(words: usize) -> Result<Zeroizing<String>, String> {
    if !(MIN_PASSPHRASE_WORDS..=MAX_PASSPHRASE_WORDS).contains(&words) {
        return Err(format!(
            "passphrase must have {MIN_PASSPHRASE_WORDS} to {MAX_PASSPHRASE_WORDS} words (got {words})"
        ));
    }
    let list = wordlist();
    let mut rng = OsRng;
    let longest = list.iter().map(|word| word.len()).max().unwrap_or(0);
    // Never grown, so no partial copy is left behind.
    let mut phrase = Zeroizing::new(String::with_capacity(words * (longest + 1)));
    for i in 0..words {
        if i > 0 {
            phrase.push('-');
        }
        phrase.push_str(list.choose(&mut rng).expect("wordlist is not empty"));
    }
    Ok(phrase)
}

/// Entropy in bits of a password generated from `spec`, for display:
/// `length * log2(alphabet size)` (62 or 89 characters). The rule that every
/// class appears lowers it by well under a bit for lengths of 8 or more.
pub fn password_entropy_bits(spec: &PasswordSpec) -> f64 {
    let alphabet: usize = classes(spec).iter().map(|class| class.len()).sum();
    spec.length as f64 * (alphabet as f64).log2()
}

/// Entropy in bits of a passphrase of `words` words: `words * log2(list
/// size)`, the list being EFF's 7776 words less the 4 hyphenated ones
/// (12.92 bits a word, 0.001 less than log2(7776)).
pub fn passphrase_entropy_bits(words: usize) -> f64 {
    words as f64 * (wordlist().len() as f64).log2()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(length: usize, symbols: bool) -> PasswordSpec {
        PasswordSpec { length, symbols }
    }

    #[test]
    fn password_has_the_requested_length() {
        for length in [8, 9, 16, 33, 100, 1024] {
            for symbols in [false, true] {
                let pw = password(&spec(length, symbols)).unwrap();
                assert_eq!(pw.len(), length);
                assert_eq!(pw.chars().count(), length);
            }
        }
    }

    #[test]
    fn password_contains_every_enabled_class() {
        // Length 8 is where a class is most often missing before resampling.
        for _ in 0..500 {
            for symbols in [false, true] {
                let pw = password(&spec(8, symbols)).unwrap();
                let bytes = pw.as_bytes();
                assert!(bytes.iter().any(|c| c.is_ascii_lowercase()), "{}", *pw);
                assert!(bytes.iter().any(|c| c.is_ascii_uppercase()), "{}", *pw);
                assert!(bytes.iter().any(|c| c.is_ascii_digit()), "{}", *pw);
                if symbols {
                    assert!(bytes.iter().any(|c| SYMBOLS.contains(c)), "{}", *pw);
                }
            }
        }
    }

    #[test]
    fn password_uses_only_the_enabled_alphabet() {
        for _ in 0..200 {
            let pw = password(&spec(64, false)).unwrap();
            assert!(pw.bytes().all(|c| c.is_ascii_alphanumeric()), "{}", *pw);
            let pw = password(&spec(64, true)).unwrap();
            assert!(
                pw.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || SYMBOLS.contains(&c)),
                "{}",
                *pw
            );
        }
    }

    #[test]
    fn every_symbol_can_appear() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100 {
            seen.extend(password(&spec(256, true)).unwrap().bytes());
        }
        assert_eq!(seen.len(), 26 + 26 + 10 + SYMBOLS.len());
        assert_eq!(SYMBOLS.len(), 27);
    }

    #[test]
    fn password_length_bounds() {
        for length in [0, 1, 7, 1025, usize::MAX] {
            let err = password(&spec(length, true)).unwrap_err();
            assert!(err.contains("8 to 1024"), "{err}");
            assert!(err.contains(&length.to_string()), "{err}");
        }
        assert!(password(&spec(8, false)).is_ok());
        assert!(password(&spec(1024, true)).is_ok());
    }

    #[test]
    fn two_passwords_differ() {
        let a = password(&spec(20, true)).unwrap();
        let b = password(&spec(20, true)).unwrap();
        assert_ne!(*a, *b);
    }

    #[test]
    fn passphrase_has_the_requested_words() {
        let list: std::collections::HashSet<&str> = wordlist().iter().copied().collect();
        assert_eq!(list.len(), 7772);
        assert_eq!(diceware_wordlists::EFF_LONG_WORDLIST.len(), 7776);
        // The EFF large list: its first and last words, and the four with '-'.
        assert_eq!(diceware_wordlists::EFF_LONG_WORDLIST[0], "abacus");
        assert_eq!(diceware_wordlists::EFF_LONG_WORDLIST[7775], "zoom");
        for w in ["drop-down", "felt-tip", "t-shirt", "yo-yo"] {
            assert!(diceware_wordlists::EFF_LONG_WORDLIST.contains(&w), "{w}");
        }
        for words in [3, 4, 6, 10, 64] {
            for _ in 0..50 {
                let phrase = passphrase(words).unwrap();
                let parts: Vec<&str> = phrase.split('-').collect();
                assert_eq!(parts.len(), words, "{}", *phrase);
                for part in parts {
                    assert!(list.contains(part), "{part:?} in {}", *phrase);
                }
            }
        }
    }

    #[test]
    fn passphrase_word_bounds() {
        for words in [0, 1, 2, 65, usize::MAX] {
            let err = passphrase(words).unwrap_err();
            assert!(err.contains("3 to 64"), "{err}");
        }
        assert!(passphrase(3).is_ok());
        assert!(passphrase(64).is_ok());
    }

    #[test]
    fn two_passphrases_differ() {
        let a = passphrase(6).unwrap();
        let b = passphrase(6).unwrap();
        assert_ne!(*a, *b);
    }

    #[test]
    fn entropy_figures() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(
            password_entropy_bits(&spec(16, false)),
            16.0 * 62f64.log2()
        ));
        assert!(close(
            password_entropy_bits(&spec(20, true)),
            20.0 * 89f64.log2()
        ));
        assert!(close(passphrase_entropy_bits(6), 6.0 * 7772f64.log2()));
        assert!((passphrase_entropy_bits(6) - 6.0 * 7776f64.log2()).abs() < 0.01);
        // A 6-word passphrase is about 77.5 bits.
        assert!((77.0..78.0).contains(&passphrase_entropy_bits(6)));
    }
}
