//! cosign's encrypted private key format.
//!
//! cosign (through sigstore/sigstore `cryptoutils` and go-securesystemslib's `encrypted` package)
//! stores a private key as a PEM block labelled `ENCRYPTED SIGSTORE PRIVATE KEY` (older versions:
//! `ENCRYPTED COSIGN PRIVATE KEY`) whose body is this JSON, compact, in this field order:
//!
//! ```text
//! {"kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1},"salt":"<base64>"},
//!  "cipher":{"name":"nacl/secretbox","nonce":"<base64>"},"ciphertext":"<base64>"}
//! ```
//!
//! Byte fields are Go `[]byte` values, i.e. standard base64 with padding. The key is
//! scrypt(password, salt, N, r, p, 32 bytes); the ciphertext is NaCl secretbox (XSalsa20-Poly1305,
//! 16-byte tag first) over the PKCS#8 DER of the private key. go-securesystemslib writes a 32-byte
//! salt and a 24-byte nonce, and accepts only its Legacy (N=2^15), Standard (N=2^16, the default)
//! and OWASP (N=2^17) parameter sets, all with r=8, p=1; so do we, checked before deriving, so
//! that a file cannot make us allocate 2^30 * 1 KiB.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use crypto_secretbox::aead::{AeadInPlace, KeyInit};
use crypto_secretbox::{Nonce, XSalsa20Poly1305};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{KeyError, malformed, os_random};

pub(crate) const LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
pub(crate) const LEGACY_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";

const KDF_NAME: &str = "scrypt";
const CIPHER_NAME: &str = "nacl/secretbox";
/// log2(N) for what we write: go-securesystemslib's "Standard" parameters, cosign's default.
const WRITE_LOG_N: u8 = 16;
/// log2(N) we read: Legacy 2^15, Standard 2^16, OWASP 2^17.
const ACCEPTED_LOG_N: [u8; 3] = [15, 16, 17];
const SCRYPT_R: u32 = 8;
const SCRYPT_P: u32 = 1;
const SALT_LEN: usize = 32;
const MAX_SALT_LEN: usize = 1024;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// The smallest private key we could hold: an Ed25519 PKCS#8 v1 document is 48 bytes.
const MIN_PLAINTEXT_LEN: usize = 48;

#[derive(Serialize, Deserialize)]
struct Envelope {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    salt: String,
}

#[derive(Serialize, Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u64,
    p: u64,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

fn decode_b64(field: &str, value: &str) -> Result<Vec<u8>, KeyError> {
    STANDARD
        .decode(value)
        .map_err(|e| malformed(format!("encrypted key: {field} is not valid base64: {e}")))
}

fn derive_key(password: &[u8], salt: &[u8], log_n: u8) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let params = scrypt::Params::new(log_n, SCRYPT_R, SCRYPT_P)
        .map_err(|e| malformed(format!("encrypted key: invalid scrypt parameters: {e}")))?;
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(password, salt, &params, key.as_mut_slice())
        .map_err(|e| malformed(format!("encrypted key: scrypt failed: {e}")))?;
    Ok(key)
}

/// Decrypts the JSON body of an encrypted key block and returns the PKCS#8 DER inside.
///
/// The envelope is checked completely before the password is asked for and before any key
/// derivation. A ciphertext that fails authentication is [`KeyError::WrongPassword`]: secretbox
/// cannot tell a wrong password from a corrupted or truncated file.
pub(crate) fn decrypt(
    body: &[u8],
    password: &mut dyn FnMut() -> Result<Zeroizing<Vec<u8>>, KeyError>,
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let envelope: Envelope = serde_json::from_slice(body).map_err(|e| {
        malformed(format!(
            "encrypted key: the body is not the expected JSON: {e}"
        ))
    })?;

    if envelope.kdf.name != KDF_NAME {
        return Err(malformed(format!(
            "encrypted key: unsupported kdf {:?} (expected {KDF_NAME:?})",
            envelope.kdf.name
        )));
    }
    if envelope.cipher.name != CIPHER_NAME {
        return Err(malformed(format!(
            "encrypted key: unsupported cipher {:?} (expected {CIPHER_NAME:?})",
            envelope.cipher.name
        )));
    }
    let ScryptParams { n, r, p } = envelope.kdf.params;
    let log_n = ACCEPTED_LOG_N
        .into_iter()
        .find(|&log_n| n == 1u64 << log_n)
        .filter(|_| r == u64::from(SCRYPT_R) && p == u64::from(SCRYPT_P))
        .ok_or_else(|| {
            malformed(format!(
                "encrypted key: scrypt parameters N={n}, r={r}, p={p} are not accepted \
                 (N must be 32768, 65536 or 131072, r=8, p=1)"
            ))
        })?;

    let salt = decode_b64("kdf.salt", &envelope.kdf.salt)?;
    if salt.is_empty() || salt.len() > MAX_SALT_LEN {
        return Err(malformed(format!(
            "encrypted key: the scrypt salt is {} bytes (expected 1 to {MAX_SALT_LEN})",
            salt.len()
        )));
    }
    let nonce = decode_b64("cipher.nonce", &envelope.cipher.nonce)?;
    let nonce: [u8; NONCE_LEN] = nonce.as_slice().try_into().map_err(|_| {
        malformed(format!(
            "encrypted key: the secretbox nonce is {} bytes (expected {NONCE_LEN})",
            nonce.len()
        ))
    })?;
    let mut buffer = Zeroizing::new(decode_b64("ciphertext", &envelope.ciphertext)?);
    if buffer.len() < TAG_LEN + MIN_PLAINTEXT_LEN {
        return Err(malformed(format!(
            "encrypted key: the ciphertext is {} bytes, too short to hold a private key \
             (truncated file?)",
            buffer.len()
        )));
    }

    let password = password()?;
    let key = derive_key(&password, &salt, log_n)?;
    let cipher = XSalsa20Poly1305::new(&(*key).into());
    cipher
        .decrypt_in_place(&Nonce::from(nonce), b"", &mut *buffer)
        .map_err(|_| KeyError::WrongPassword { path: None })?;
    Ok(buffer)
}

/// Encrypts PKCS#8 DER into the PEM text of an `ENCRYPTED SIGSTORE PRIVATE KEY` block, with a
/// fresh random salt and nonce and N=2^16, r=8, p=1 (what current cosign writes).
pub(crate) fn encrypt(pkcs8_der: &[u8], password: &[u8]) -> Result<String, KeyError> {
    let mut salt = [0u8; SALT_LEN];
    os_random(&mut salt)?;
    let mut nonce = [0u8; NONCE_LEN];
    os_random(&mut nonce)?;
    let key = derive_key(password, &salt, WRITE_LOG_N)?;
    let cipher = XSalsa20Poly1305::new(&(*key).into());
    // Room for the tag up front: a reallocation would leave a copy of the plaintext behind.
    let mut buffer = Zeroizing::new(Vec::with_capacity(pkcs8_der.len().saturating_add(TAG_LEN)));
    buffer.extend_from_slice(pkcs8_der);
    cipher
        .encrypt_in_place(&Nonce::from(nonce), b"", &mut *buffer)
        .map_err(|_| malformed("could not encrypt the private key"))?;
    let envelope = Envelope {
        kdf: Kdf {
            name: KDF_NAME.into(),
            params: ScryptParams {
                n: 1u64 << WRITE_LOG_N,
                r: u64::from(SCRYPT_R),
                p: u64::from(SCRYPT_P),
            },
            salt: STANDARD.encode(salt),
        },
        cipher: Cipher {
            name: CIPHER_NAME.into(),
            nonce: STANDARD.encode(nonce),
        },
        ciphertext: STANDARD.encode(buffer.as_slice()),
    };
    let json = serde_json::to_vec(&envelope)
        .map_err(|e| malformed(format!("could not serialise the encrypted key: {e}")))?;
    Ok(super::pem::encode(LABEL, &json))
}
