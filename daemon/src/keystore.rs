//! The PIN unlock: a random root secret encrypted under a key derived from the
//! PIN with Argon2id, peppered with a second secret kept in a 0600 file beside
//! the store (the brief's "keyring or 0600 file"), so a copied database alone
//! does not fall to a PIN brute-force.
//!
//! Failed attempts are counted in the store; from the third on, the next
//! attempt must wait 2^(n-3) seconds (capped at an hour), across restarts.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Argon2id cost. Users get [`KdfParams::default`]; tests pass cheaper ones
/// explicitly (`cofferd --kdf-memory-kib --kdf-iterations`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for KdfParams {
    fn default() -> Self {
        Self {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
        }
    }
}

/// Argon2id as cheap as it goes, for unit tests.
#[cfg(test)]
pub(crate) const TEST_KDF: KdfParams = KdfParams {
    memory_kib: 64,
    iterations: 1,
    parallelism: 1,
};

/// What the store keeps of the keystore: nothing here is secret on its own.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeystoreRecord {
    pub version: u32,
    pub kdf: KdfParams,
    pub salt: [u8; 16],
    /// nonce || XChaCha20-Poly1305(root secret)
    pub sealed_root: Vec<u8>,
}

/// Consecutive failed PIN attempts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failures {
    pub count: u32,
    pub last_unix: u64,
}

impl Failures {
    /// Seconds until another attempt is allowed at `now_unix` (0: now).
    pub fn wait_secs(&self, now_unix: u64) -> u64 {
        if self.count < 3 {
            return 0;
        }
        let delay = 1u64 << (self.count - 3).min(12);
        let delay = delay.min(3600);
        (self.last_unix + delay).saturating_sub(now_unix)
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeystoreError {
    #[error("wrong PIN")]
    WrongPin,
    #[error("a PIN needs 6 to 128 characters and not one repeated or counted up or down (like 111111 or 123456): the PIN is all that stands between a copied disk and the vault")]
    BadPin,
    #[error("the device secret file {path} is missing or unreadable: {source}")]
    SecretFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the device secret file {0} has the wrong size or permissions (expected 32 bytes, mode 0600)")]
    SecretFileInvalid(PathBuf),
    #[error("invalid key derivation parameters: {0}")]
    Kdf(String),
}

/// The 32-byte root secret: everything else at rest is encrypted under keys derived from it.
pub struct RootSecret(Zeroizing<[u8; 32]>);

impl RootSecret {
    /// A purpose-bound subkey (BLAKE3 derive_key).
    pub fn derive(&self, purpose: &str) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(blake3::derive_key(purpose, self.0.as_slice()))
    }
}

impl std::fmt::Debug for RootSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RootSecret(..)")
    }
}

/// The least PIN length: 10^6 Argon2id guesses for digits alone.
pub const MIN_PIN_CHARS: usize = 6;

/// A new PIN's strength: 6 to 128 characters, not one character repeated,
/// and not a run counting up or down (`123456`, `987654`, `abcdef`).
pub fn check_pin(pin: &str) -> Result<(), KeystoreError> {
    let chars: Vec<char> = pin.chars().collect();
    if !(MIN_PIN_CHARS..=128).contains(&chars.len()) {
        return Err(KeystoreError::BadPin);
    }
    let steps: Vec<i64> = chars
        .windows(2)
        .map(|w| w[1] as i64 - w[0] as i64)
        .collect();
    let run = steps.iter().all(|d| *d == steps[0]) && steps[0].abs() <= 1;
    if run {
        return Err(KeystoreError::BadPin);
    }
    Ok(())
}

/// Path of the pepper file inside the data dir.
pub fn secret_file_path(data_dir: &Path) -> PathBuf {
    data_dir.join("device.secret")
}

fn read_secret_file(path: &Path) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
    let meta = fs::metadata(path).map_err(|source| KeystoreError::SecretFile {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(KeystoreError::SecretFileInvalid(path.to_path_buf()));
    }
    let bytes = Zeroizing::new(fs::read(path).map_err(|source| KeystoreError::SecretFile {
        path: path.to_path_buf(),
        source,
    })?);
    let arr: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| KeystoreError::SecretFileInvalid(path.to_path_buf()))?;
    Ok(Zeroizing::new(arr))
}

fn write_secret_file(path: &Path, secret: &[u8; 32]) -> Result<(), KeystoreError> {
    let io_err = |source| KeystoreError::SecretFile {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err)?;
    f.write_all(secret).map_err(io_err)?;
    f.sync_all().map_err(io_err)?;
    fs::rename(&tmp, path).map_err(io_err)?;
    Ok(())
}

fn derive_kek(
    pin: &str,
    salt: &[u8; 16],
    pepper: &[u8; 32],
    kdf: &KdfParams,
) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
    let params = Params::new(kdf.memory_kib, kdf.iterations, kdf.parallelism, Some(32))
        .map_err(|e| KeystoreError::Kdf(e.to_string()))?;
    let argon = Argon2::new_with_secret(pepper, Algorithm::Argon2id, Version::V0x13, params)
        .map_err(|e| KeystoreError::Kdf(e.to_string()))?;
    let mut out = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(pin.as_bytes(), salt, out.as_mut_slice())
        .map_err(|e| KeystoreError::Kdf(e.to_string()))?;
    Ok(out)
}

/// Encrypts `plain` under `key` with a fresh nonce: nonce || ciphertext.
pub fn seal(key: &[u8; 32], plain: &[u8], aad: &[u8], rng: &mut impl CryptoRngCore) -> Vec<u8> {
    let mut nonce = [0u8; 24];
    rng.fill_bytes(&mut nonce);
    let ct = XChaCha20Poly1305::new(key.into())
        .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad })
        .expect("encrypting an in-memory buffer cannot fail");
    [nonce.as_slice(), &ct].concat()
}

/// Opens what [`seal`] made; `None` when the key or data is wrong.
pub fn open(key: &[u8; 32], sealed: &[u8], aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if sealed.len() < 24 {
        return None;
    }
    let (nonce, ct) = sealed.split_at(24);
    XChaCha20Poly1305::new(key.into())
        .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
        .ok()
        .map(Zeroizing::new)
}

/// A purpose-bound key derived from the pepper file alone (no PIN): for the
/// few things a locked daemon must open, such as its network identity.
pub fn pepper_subkey(data_dir: &Path, purpose: &str) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
    let pepper = read_secret_file(&secret_file_path(data_dir))?;
    Ok(Zeroizing::new(blake3::derive_key(
        purpose,
        pepper.as_slice(),
    )))
}

const ROOT_AAD: &[u8] = b"coffer/root-secret/v1";

/// Deletes the pepper file (`coffer reset`): without it the sealed root
/// secret no longer opens, whatever the PIN. A missing file is fine.
pub fn destroy(data_dir: &Path) -> Result<(), KeystoreError> {
    let path = secret_file_path(data_dir);
    for p in [path.with_extension("tmp"), path.clone()] {
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(KeystoreError::SecretFile { path: p, source }),
        }
    }
    // The removal survives a power cut once the folder is synced.
    if let Ok(dir) = fs::File::open(data_dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Creates a new root secret protected by `pin`; writes the pepper file.
pub fn create(
    data_dir: &Path,
    pin: &str,
    kdf: KdfParams,
    rng: &mut impl CryptoRngCore,
) -> Result<(KeystoreRecord, RootSecret), KeystoreError> {
    check_pin(pin)?;
    let mut pepper = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(pepper.as_mut_slice());
    let mut root = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(root.as_mut_slice());
    let mut salt = [0u8; 16];
    rng.fill_bytes(&mut salt);
    let kek = derive_kek(pin, &salt, &pepper, &kdf)?;
    let sealed_root = seal(&kek, root.as_slice(), ROOT_AAD, rng);
    let path = secret_file_path(data_dir);
    write_secret_file(&path, &pepper)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
        .map_err(|source| KeystoreError::SecretFile { path, source })?;
    Ok((
        KeystoreRecord {
            version: 1,
            kdf,
            salt,
            sealed_root,
        },
        RootSecret(root),
    ))
}

/// Derives the key from `pin` and opens the root secret.
pub fn unlock(
    data_dir: &Path,
    record: &KeystoreRecord,
    pin: &str,
) -> Result<RootSecret, KeystoreError> {
    let pepper = read_secret_file(&secret_file_path(data_dir))?;
    let kek = derive_kek(pin, &record.salt, &pepper, &record.kdf)?;
    let plain = open(&kek, &record.sealed_root, ROOT_AAD).ok_or(KeystoreError::WrongPin)?;
    let root: [u8; 32] = plain
        .as_slice()
        .try_into()
        .map_err(|_| KeystoreError::WrongPin)?;
    Ok(RootSecret(Zeroizing::new(root)))
}

/// The record that protects the same root secret under `new_pin`: a fresh
/// salt, the same KDF cost and pepper. `old_pin` must open `record`. The
/// caller stores the new record in place of the old one in one transaction:
/// nothing else changes (the root secret, so every key sealed under it, and
/// the pepper file stay), so a crash leaves one PIN or the other in force.
pub fn change_pin(
    data_dir: &Path,
    record: &KeystoreRecord,
    old_pin: &str,
    new_pin: &str,
    rng: &mut impl CryptoRngCore,
) -> Result<KeystoreRecord, KeystoreError> {
    let root = unlock(data_dir, record, old_pin)?;
    check_pin(new_pin)?;
    let pepper = read_secret_file(&secret_file_path(data_dir))?;
    let mut salt = [0u8; 16];
    rng.fill_bytes(&mut salt);
    let kek = derive_kek(new_pin, &salt, &pepper, &record.kdf)?;
    Ok(KeystoreRecord {
        version: record.version,
        kdf: record.kdf,
        salt,
        sealed_root: seal(&kek, root.0.as_slice(), ROOT_AAD, rng),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: KdfParams = TEST_KDF;

    #[test]
    fn right_pin_opens_wrong_pin_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let (record, root) = create(dir.path(), "190372", CHEAP, &mut rand::rngs::OsRng).unwrap();
        let again = unlock(dir.path(), &record, "190372").unwrap();
        assert_eq!(*root.derive("x"), *again.derive("x"));
        assert!(matches!(
            unlock(dir.path(), &record, "273910"),
            Err(KeystoreError::WrongPin)
        ));
        let mode = fs::metadata(secret_file_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn database_without_the_pepper_file_does_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let (record, _) = create(dir.path(), "190372", CHEAP, &mut rand::rngs::OsRng).unwrap();
        fs::write(secret_file_path(dir.path()), [0u8; 32]).unwrap();
        fs::set_permissions(
            secret_file_path(dir.path()),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        assert!(matches!(
            unlock(dir.path(), &record, "190372"),
            Err(KeystoreError::WrongPin)
        ));
        fs::remove_file(secret_file_path(dir.path())).unwrap();
        assert!(matches!(
            unlock(dir.path(), &record, "190372"),
            Err(KeystoreError::SecretFile { .. })
        ));
    }

    #[test]
    fn a_changed_pin_opens_the_same_root_and_the_old_one_does_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rng = rand::rngs::OsRng;
        let (record, root) = create(dir.path(), "483920", CHEAP, &mut rng).expect("create");
        assert!(matches!(
            change_pin(dir.path(), &record, "999111", "572018", &mut rng),
            Err(KeystoreError::WrongPin)
        ));
        assert!(matches!(
            change_pin(dir.path(), &record, "483920", "123456", &mut rng),
            Err(KeystoreError::BadPin)
        ));
        let new = change_pin(dir.path(), &record, "483920", "572018", &mut rng).expect("change");
        assert_ne!(new.salt, record.salt);
        let opened = unlock(dir.path(), &new, "572018").expect("new PIN opens");
        assert_eq!(opened.0.as_slice(), root.0.as_slice());
        assert!(matches!(
            unlock(dir.path(), &new, "483920"),
            Err(KeystoreError::WrongPin)
        ));
    }

    #[test]
    fn backoff_grows_exponentially() {
        let f = |count| Failures {
            count,
            last_unix: 100,
        };
        assert_eq!(f(2).wait_secs(100), 0);
        assert_eq!(f(3).wait_secs(100), 1);
        assert_eq!(f(4).wait_secs(100), 2);
        assert_eq!(f(6).wait_secs(100), 8);
        assert_eq!(f(6).wait_secs(108), 0);
        assert_eq!(f(40).wait_secs(100), 3600);
        for weak in ["12", "2468", "111111", "123456", "987654", "abcdef"] {
            assert!(
                matches!(check_pin(weak), Err(KeystoreError::BadPin)),
                "{weak}"
            );
        }
        for fine in ["246813", "correct horse", "190372"] {
            assert!(check_pin(fine).is_ok(), "{fine}");
        }
    }

    #[test]
    fn debug_does_not_show_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let (_, root) = create(dir.path(), "190372", CHEAP, &mut rand::rngs::OsRng).unwrap();
        assert_eq!(format!("{root:?}"), "RootSecret(..)");
    }
}
