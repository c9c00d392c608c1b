//! Key material and the three primitives the envelopes use: Ed25519 signatures,
//! sealed boxes (X25519) to hand a folder key to a device, and
//! XChaCha20-Poly1305 for content payloads. Randomness always comes in as an
//! argument.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use rand_core::CryptoRngCore;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::ids::DeviceId;

/// Nonce length of XChaCha20-Poly1305.
pub const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// A ciphertext did not authenticate under the key it claims.
    #[error("decryption failed: wrong key or tampered data")]
    Decrypt,
    /// A sealed folder key did not open with this device's key.
    #[error("sealed key does not open with this device's key")]
    Unseal,
    /// Key bytes had the wrong length or form.
    #[error("malformed key material")]
    MalformedKey,
}

/// A device's private keys: Ed25519 for signing, X25519 for receiving folder keys.
#[derive(Clone)]
pub struct DeviceKeys {
    signing: SigningKey,
    exchange: crypto_box::SecretKey,
}

impl DeviceKeys {
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        // The seed drawn as ed25519-dalek's own `generate` does (32 bytes
        // from the rng), without tying the crate to its rand_core version.
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut *seed);
        Self {
            signing: SigningKey::from_bytes(&seed),
            exchange: crypto_box::SecretKey::generate(rng),
        }
    }

    /// 64 bytes: the Ed25519 seed, then the X25519 secret. Wipe after use.
    pub fn to_secret_bytes(&self) -> Zeroizing<[u8; 64]> {
        let mut out = Zeroizing::new([0u8; 64]);
        out[..32].copy_from_slice(&self.signing.to_bytes());
        out[32..].copy_from_slice(&self.exchange.to_bytes());
        out
    }

    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != 64 {
            return Err(CryptoError::MalformedKey);
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(&bytes[..32]);
        let mut exchange = Zeroizing::new([0u8; 32]);
        exchange.copy_from_slice(&bytes[32..]);
        Ok(Self {
            signing: SigningKey::from_bytes(&seed),
            exchange: crypto_box::SecretKey::from(*exchange),
        })
    }

    /// A key only this device can derive, for data it keeps for itself
    /// about a folder (its snapshots): BLAKE3 `derive_key` over the
    /// device's secret and the folder's epoch key, bound to `context`. A
    /// member who holds the epoch key but not this device's secret can
    /// neither read nor forge what it seals.
    pub fn local_key(&self, context: &str, folder_key: &FolderKey, bound_to: &[u8]) -> FolderKey {
        let mut hasher = blake3::Hasher::new_derive_key(context);
        hasher.update(self.to_secret_bytes().as_slice());
        hasher.update(folder_key.expose_secret());
        hasher.update(bound_to);
        let mut out = Zeroizing::new([0u8; 32]);
        hasher.finalize_xof().fill(out.as_mut_slice());
        FolderKey::from_bytes(*out)
    }

    pub fn device_id(&self) -> DeviceId {
        DeviceId(self.signing.verifying_key().to_bytes())
    }

    pub fn exchange_public(&self) -> [u8; 32] {
        self.exchange.public_key().to_bytes()
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// Opens a folder key sealed to this device.
    pub fn open_folder_key(&self, sealed: &[u8]) -> Result<FolderKey, CryptoError> {
        let plain = Zeroizing::new(
            self.exchange
                .unseal(sealed)
                .map_err(|_| CryptoError::Unseal)?,
        );
        let bytes: [u8; 32] = plain
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::MalformedKey)?;
        Ok(FolderKey(bytes))
    }
}

impl fmt::Debug for DeviceKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceKeys({:?}, ..)", self.device_id())
    }
}

/// Checks an Ed25519 signature by `device` over `message`.
/// The Ed25519 public key of a 32-byte seed: a device's transport key
/// (its network identity, separate from its signing key).
pub fn ed25519_public(seed: &[u8; 32]) -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(seed)
        .verifying_key()
        .to_bytes()
}

/// Signs `message` with the Ed25519 key of a 32-byte seed (a transport key).
pub fn sign_with_seed(seed: &[u8; 32], message: &[u8]) -> [u8; 64] {
    use ed25519_dalek::Signer;
    ed25519_dalek::SigningKey::from_bytes(seed)
        .sign(message)
        .to_bytes()
}

pub fn verify(device: &DeviceId, message: &[u8], signature: &[u8; 64]) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(&device.0) else {
        return false;
    };
    key.verify(message, &ed25519_dalek::Signature::from_bytes(signature))
        .is_ok()
}

/// The symmetric key of one folder epoch.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct FolderKey([u8; 32]);

impl FolderKey {
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }

    /// Seals this key to a device's X25519 public key (libsodium sealed box).
    pub fn seal_to(
        &self,
        exchange_public: &[u8; 32],
        rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<u8>, CryptoError> {
        crypto_box::PublicKey::from_bytes(*exchange_public)
            .seal(rng, &self.0)
            .map_err(|_| CryptoError::MalformedKey)
    }

    /// Encrypts `plaintext`, binding `aad`; output is nonce || ciphertext.
    pub fn encrypt(&self, plaintext: &[u8], aad: &[u8], rng: &mut impl CryptoRngCore) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    pub fn decrypt(&self, data: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if data.len() < NONCE_LEN {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, ciphertext) = data.split_at(NONCE_LEN);
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Decrypt)
    }
}

impl fmt::Debug for FolderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FolderKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn seal_open_roundtrip_and_wrong_device_fails() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let alice = DeviceKeys::generate(&mut rng);
        let bob = DeviceKeys::generate(&mut rng);
        let key = FolderKey::generate(&mut rng);
        let sealed = key.seal_to(&alice.exchange_public(), &mut rng).unwrap();
        assert_eq!(alice.open_folder_key(&sealed).unwrap(), key);
        assert_eq!(bob.open_folder_key(&sealed), Err(CryptoError::Unseal));
    }

    #[test]
    fn payload_binds_aad() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let key = FolderKey::generate(&mut rng);
        let ct = key.encrypt(b"hunter2", b"header", &mut rng);
        assert_eq!(key.decrypt(&ct, b"header").unwrap().as_slice(), b"hunter2");
        assert_eq!(key.decrypt(&ct, b"other"), Err(CryptoError::Decrypt));
        assert_eq!(key.decrypt(&ct[..10], b"header"), Err(CryptoError::Decrypt));
    }

    #[test]
    fn device_keys_roundtrip_and_debug_hides_secrets() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let keys = DeviceKeys::generate(&mut rng);
        let bytes = keys.to_secret_bytes();
        let again = DeviceKeys::from_secret_bytes(bytes.as_slice()).unwrap();
        assert_eq!(again.device_id(), keys.device_id());
        let debug = format!("{keys:?} {:?}", FolderKey::generate(&mut rng));
        assert!(!debug.contains(&hex::encode(&bytes[..8])));
        let sig = keys.sign(b"m");
        assert!(verify(&keys.device_id(), b"m", &sig));
        assert!(!verify(&keys.device_id(), b"n", &sig));
    }
}
