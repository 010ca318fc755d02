//! Signing keys: ECDSA P-256 (cosign's default) and Ed25519.
//!
//! - Public keys are PKIX `PUBLIC KEY` PEM (SubjectPublicKeyInfo). A key's id is the lowercase hex
//!   SHA-256 of its SubjectPublicKeyInfo DER.
//! - Private keys are read from cosign's encrypted format (scrypt + NaCl secretbox over PKCS#8),
//!   from unencrypted PKCS#8 `PRIVATE KEY` (v1 and v2/RFC 5958) and from SEC 1 `EC PRIVATE KEY`;
//!   they are written only in cosign's encrypted format, so that `cosign sign --key` can use them.
//! - Signatures: ECDSA over SHA-256 as strict ASN.1 DER (written low-S; both S forms accepted on
//!   verify, as Go cosign does not normalise S); Ed25519 pure (RFC 8032), verified strictly.
//!
//! This module does no I/O beyond reading and writing key files, never prints and never panics on
//! its inputs.

mod cosign_format;
mod pem;
#[cfg(test)]
mod tests;

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _};
use p256::pkcs8::{EncodePublicKey as _, ObjectIdentifier};
use pkcs8::der::Decode as _;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

/// Largest key file (private or public) we read: real ones are well under 1 KiB.
pub const MAX_KEY_FILE_SIZE: u64 = 64 * 1024;

/// PEM label of the private keys we write (current cosign).
pub const ENCRYPTED_PRIVATE_KEY_LABEL: &str = cosign_format::LABEL;
/// PEM label of the private keys written by cosign before v2; read, never written.
pub const LEGACY_ENCRYPTED_PRIVATE_KEY_LABEL: &str = cosign_format::LEGACY_LABEL;
const PUBLIC_KEY_LABEL: &str = "PUBLIC KEY";
const PKCS8_LABEL: &str = "PRIVATE KEY";
const SEC1_LABEL: &str = "EC PRIVATE KEY";

// Algorithm identifiers (RFC 5480, RFC 8410) and a few others we name in errors.
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// A name for an algorithm or curve OID, for error messages.
fn oid_name(oid: &ObjectIdentifier) -> String {
    let name = match oid.to_string().as_str() {
        "1.2.840.113549.1.1.1" => "RSA",
        "1.2.840.113549.1.1.10" => "RSASSA-PSS",
        "1.2.840.10040.4.1" => "DSA",
        "1.2.840.10045.2.1" => "EC",
        "1.2.840.10045.3.1.7" => "P-256",
        "1.3.132.0.34" => "P-384 (secp384r1)",
        "1.3.132.0.35" => "P-521 (secp521r1)",
        "1.3.132.0.10" => "secp256k1",
        "1.2.840.10045.3.1.1" => "P-192 (prime192v1)",
        "1.3.132.0.33" => "P-224 (secp224r1)",
        "1.3.36.3.3.2.8.1.1.7" => "brainpoolP256r1",
        "1.3.101.110" => "X25519",
        "1.3.101.111" => "X448",
        "1.3.101.112" => "Ed25519",
        "1.3.101.113" => "Ed448",
        "1.2.156.10197.1.301" => "SM2",
        _ => "unknown algorithm",
    };
    format!("{name} ({oid})")
}

/// Errors of this module. Messages name the file (where there is one) and what was wrong; they
/// never contain a password or key material.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing a key file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The key file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The key file is larger than [`MAX_KEY_FILE_SIZE`].
    #[error("{}: the file is larger than {limit} bytes, too large to be a key", path.display())]
    FileTooLarge {
        /// The key file.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
    },
    /// The path is a directory, device, FIFO or socket.
    #[error("{}: not a regular file", path.display())]
    NotAFile {
        /// The path given as a key file.
        path: PathBuf,
    },
    /// The PEM framing is wrong: no block, several blocks, a wrong label, headers, extra data.
    #[error("{}invalid PEM: {reason}", in_path(path))]
    Pem {
        /// The key file, when the PEM came from one.
        path: Option<PathBuf>,
        /// What is wrong.
        reason: String,
    },
    /// The key (or the encrypted key envelope) is malformed.
    #[error("{}malformed key: {reason}", in_path(path))]
    MalformedKey {
        /// The key file, when the key came from one.
        path: Option<PathBuf>,
        /// What is wrong.
        reason: String,
    },
    /// A well-formed key of an algorithm or curve sealpack does not support.
    #[error(
        "{}unsupported key type: {algorithm}; sealpack supports ECDSA P-256 and Ed25519 keys",
        in_path(path)
    )]
    UnsupportedKeyType {
        /// The key file, when the key came from one.
        path: Option<PathBuf>,
        /// The algorithm or curve, by name and OID, e.g. `EC curve P-384 (secp384r1)
        /// (1.3.132.0.34)`.
        algorithm: String,
    },
    /// Decrypting an encrypted private key failed authentication: the password is wrong, or the
    /// ciphertext was changed or truncated (secretbox cannot tell these apart).
    #[error("{}wrong password or corrupt key", in_path(path))]
    WrongPassword {
        /// The key file, when the key came from one.
        path: Option<PathBuf>,
    },
    /// The password callback could not produce a password (no terminal, no variable, ...).
    #[error("could not get the key password: {reason}")]
    PasswordUnavailable {
        /// Why not.
        reason: String,
    },
    /// An unencrypted private key file that others can read or change, or reached via a symlink.
    #[error(
        "{}: refusing to use an unencrypted private key that {reason} (mode {mode:04o}); \
         make it a regular file with mode 0600 or encrypt it, or override explicitly",
        path.display()
    )]
    InsecureKeyFile {
        /// The key file (as given, i.e. the symlink if it is one).
        path: PathBuf,
        /// The file's permission bits.
        mode: u32,
        /// What is insecure about it.
        reason: &'static str,
    },
    /// A key file we were about to write already exists.
    #[error("{}: already exists; refusing to overwrite it", path.display())]
    Exists {
        /// The existing file.
        path: PathBuf,
    },
    /// A key type name that is not `ecdsa-p256` or `ed25519`.
    #[error("unknown key type {input:?}; expected \"ecdsa-p256\" or \"ed25519\"")]
    UnknownKeyType {
        /// The name given (at most 64 characters of it).
        input: String,
    },
    /// A key id that is not 64 lowercase hex digits.
    #[error("invalid key id {input:?}; expected 64 lowercase hex digits")]
    InvalidKeyId {
        /// The text given (at most 80 characters of it).
        input: String,
    },
    /// The signature bytes cannot be a signature of this key type.
    #[error("malformed {key_type} signature: {reason}")]
    MalformedSignature {
        /// The type of the key it was checked against.
        key_type: KeyType,
        /// What is wrong.
        reason: String,
    },
    /// A well-formed signature that does not verify with this key over this message.
    #[error("the signature does not verify with key {key_id}")]
    BadSignature {
        /// The key it was checked against.
        key_id: KeyId,
    },
    /// Signing failed (in practice unreachable for valid keys).
    #[error("signing with key {key_id} failed")]
    SigningFailed {
        /// The signing key.
        key_id: KeyId,
    },
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed: {reason}")]
    Rng {
        /// What failed.
        reason: String,
    },
}

fn in_path(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => format!("{}: ", p.display()),
        None => String::new(),
    }
}

impl KeyError {
    /// Fills in the file path of a path-less error raised while parsing that file's content.
    fn at(mut self, file: &Path) -> Self {
        match &mut self {
            KeyError::Pem { path, .. }
            | KeyError::MalformedKey { path, .. }
            | KeyError::UnsupportedKeyType { path, .. }
            | KeyError::WrongPassword { path }
                if path.is_none() =>
            {
                *path = Some(file.to_path_buf());
            }
            _ => {}
        }
        self
    }
}

fn malformed(reason: impl Into<String>) -> KeyError {
    KeyError::MalformedKey {
        path: None,
        reason: reason.into(),
    }
}

fn unsupported(algorithm: impl Into<String>) -> KeyError {
    KeyError::UnsupportedKeyType {
        path: None,
        algorithm: algorithm.into(),
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The signature algorithms sealpack supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// ECDSA on NIST P-256 with SHA-256 (cosign's default).
    EcdsaP256,
    /// Ed25519 (pure EdDSA, RFC 8032).
    Ed25519,
}

impl KeyType {
    /// The name used on the command line and in policies.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::Ed25519 => "ed25519",
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyType {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ecdsa-p256" => Ok(KeyType::EcdsaP256),
            "ed25519" => Ok(KeyType::Ed25519),
            _ => Err(KeyError::UnknownKeyType {
                input: s.chars().take(64).collect(),
            }),
        }
    }
}

/// A key id: the SHA-256 of the key's PKIX SubjectPublicKeyInfo DER. Shown as 64 lowercase hex.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; 32]);

impl KeyId {
    /// The key id of a SubjectPublicKeyInfo DER document.
    pub fn of_spki_der(der: &[u8]) -> Self {
        KeyId(Sha256::digest(der).into())
    }

    /// The raw 32 digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for KeyId {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || KeyError::InvalidKeyId {
            input: s.chars().take(80).collect(),
        };
        if s.len() != 64
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(invalid());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| invalid())?;
        Ok(KeyId(out))
    }
}

#[derive(Clone)]
enum Verifying {
    P256(p256::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

/// A public key (ECDSA P-256 or Ed25519) that verifies signatures.
#[derive(Clone)]
pub struct PublicKey {
    key: Verifying,
    /// Canonical SubjectPublicKeyInfo DER (uncompressed point for P-256), as Go marshals it.
    spki_der: Vec<u8>,
    key_id: KeyId,
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.spki_der == other.spki_der
    }
}

impl Eq for PublicKey {}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("key_type", &self.key_type())
            .field("key_id", &self.key_id)
            .finish()
    }
}

impl PublicKey {
    fn from_verifying(key: Verifying) -> Result<Self, KeyError> {
        let doc = match &key {
            Verifying::P256(k) => k.to_public_key_der(),
            Verifying::Ed25519(k) => k.to_public_key_der(),
        }
        .map_err(|e| malformed(format!("could not encode the public key: {e}")))?;
        let spki_der = doc.as_bytes().to_vec();
        let key_id = KeyId::of_spki_der(&spki_der);
        Ok(PublicKey {
            key,
            spki_der,
            key_id,
        })
    }

    /// Parses a PEM file holding exactly one `PUBLIC KEY` block (PKIX SubjectPublicKeyInfo) with
    /// only whitespace around it. Only P-256 and Ed25519 keys are accepted.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let block =
            pem::decode_single(pem).map_err(|reason| KeyError::Pem { path: None, reason })?;
        if block.label != PUBLIC_KEY_LABEL {
            return Err(KeyError::Pem {
                path: None,
                reason: format!(
                    "expected a {PUBLIC_KEY_LABEL:?} block, found {:?}",
                    block.label
                ),
            });
        }
        Self::from_spki_der(&block.der)
    }

    /// Parses a DER SubjectPublicKeyInfo. The encoding must be canonical (what Go's
    /// `x509.MarshalPKIXPublicKey` writes: an uncompressed point for P-256), so that the key id is
    /// the same whoever computes it.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        let spki = spki::SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|e| malformed(format!("not a DER SubjectPublicKeyInfo: {e}")))?;
        let key = match spki.algorithm.oid {
            OID_ED25519 => {
                if spki.algorithm.parameters.is_some() {
                    return Err(malformed("Ed25519 key with algorithm parameters"));
                }
                let key = ed25519_dalek::VerifyingKey::from_public_key_der(der)
                    .map_err(|e| malformed(format!("invalid Ed25519 public key: {e}")))?;
                if key.is_weak() {
                    return Err(malformed("Ed25519 public key is of small order (weak key)"));
                }
                Verifying::Ed25519(key)
            }
            OID_EC_PUBLIC_KEY => {
                let curve = spki.algorithm.parameters_oid().map_err(|_| {
                    unsupported("EC key without a named curve (explicit or implicit parameters)")
                })?;
                if curve != OID_P256 {
                    return Err(unsupported(format!("EC curve {}", oid_name(&curve))));
                }
                let key = p256::ecdsa::VerifyingKey::from_public_key_der(der)
                    .map_err(|e| malformed(format!("invalid P-256 public key: {e}")))?;
                Verifying::P256(key)
            }
            other => return Err(unsupported(oid_name(&other))),
        };
        let public = Self::from_verifying(key)?;
        if public.spki_der != der {
            return Err(malformed(
                "non-canonical SubjectPublicKeyInfo encoding (e.g. a compressed point)",
            ));
        }
        Ok(public)
    }

    /// The key as a `PUBLIC KEY` PEM block (LF line endings), as `cosign generate-key-pair`
    /// writes `cosign.pub`.
    pub fn to_pem(&self) -> String {
        pem::encode(PUBLIC_KEY_LABEL, &self.spki_der)
    }

    /// The canonical SubjectPublicKeyInfo DER.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The key id: hex SHA-256 of [`Self::spki_der`].
    pub fn key_id(&self) -> KeyId {
        self.key_id.clone()
    }

    /// The key's algorithm.
    pub fn key_type(&self) -> KeyType {
        match self.key {
            Verifying::P256(_) => KeyType::EcdsaP256,
            Verifying::Ed25519(_) => KeyType::Ed25519,
        }
    }

    /// Verifies `sig` over `msg`.
    ///
    /// ECDSA P-256: SHA-256 of `msg`, `sig` in strict ASN.1 DER (no BER, no trailing bytes); a
    /// high-S signature is accepted, because Go cosign neither normalises nor rejects it.
    /// Ed25519: pure Ed25519 over `msg`, `sig` exactly 64 bytes, with `verify_strict` (canonical
    /// S, no small-order R or key).
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), KeyError> {
        let ok = match &self.key {
            Verifying::P256(key) => {
                let sig = p256::ecdsa::Signature::from_der(sig).map_err(|_| {
                    KeyError::MalformedSignature {
                        key_type: KeyType::EcdsaP256,
                        reason: format!(
                            "{} bytes that are not a strict ASN.1 DER ECDSA signature",
                            sig.len()
                        ),
                    }
                })?;
                key.verify(msg, &sig).is_ok()
            }
            Verifying::Ed25519(key) => {
                let sig = ed25519_dalek::Signature::from_slice(sig).map_err(|_| {
                    KeyError::MalformedSignature {
                        key_type: KeyType::Ed25519,
                        reason: format!("{} bytes (expected 64)", sig.len()),
                    }
                })?;
                key.verify_strict(msg, &sig).is_ok()
            }
        };
        if ok {
            Ok(())
        } else {
            Err(KeyError::BadSignature {
                key_id: self.key_id(),
            })
        }
    }
}

enum Signing {
    P256(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

/// A private key. Its secret is zeroized on drop and never shown by `Debug`.
pub struct PrivateKey {
    key: Signing,
    public: PublicKey,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("key_type", &self.key_type())
            .field("key_id", &self.public.key_id)
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    fn from_signing(key: Signing) -> Result<Self, KeyError> {
        let verifying = match &key {
            Signing::P256(k) => Verifying::P256(*k.verifying_key()),
            Signing::Ed25519(k) => Verifying::Ed25519(k.verifying_key()),
        };
        let public = PublicKey::from_verifying(verifying)?;
        Ok(PrivateKey { key, public })
    }

    /// Generates a new key with the operating system's random number generator.
    pub fn generate(key_type: KeyType) -> Result<Self, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        let key = match key_type {
            KeyType::Ed25519 => {
                os_random(seed.as_mut_slice())?;
                Signing::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed))
            }
            KeyType::EcdsaP256 => {
                // Rejection sampling: a uniformly random 32-byte string is a valid scalar
                // (1..n-1) except with probability about 2^-32.
                let mut found = None;
                for _ in 0..64 {
                    os_random(seed.as_mut_slice())?;
                    if let Ok(key) = p256::ecdsa::SigningKey::from_slice(seed.as_slice()) {
                        found = Some(key);
                        break;
                    }
                }
                Signing::P256(found.ok_or_else(|| KeyError::Rng {
                    reason: "no valid P-256 scalar in 64 draws".into(),
                })?)
            }
        };
        Self::from_signing(key)
    }

    /// The matching public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The key's algorithm.
    pub fn key_type(&self) -> KeyType {
        self.public.key_type()
    }

    /// The key id of the matching public key.
    pub fn key_id(&self) -> KeyId {
        self.public.key_id()
    }

    /// Signs `msg`: ECDSA P-256 over SHA-256(msg) as ASN.1 DER with low S (deterministic nonces,
    /// RFC 6979); Ed25519 pure, 64 bytes.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.key {
            Signing::P256(key) => {
                let sig: p256::ecdsa::Signature =
                    key.try_sign(msg).map_err(|_| KeyError::SigningFailed {
                        key_id: self.key_id(),
                    })?;
                Ok(sig.normalize_s().to_der().as_bytes().to_vec())
            }
            Signing::Ed25519(key) => Ok(key.sign(msg).to_bytes().to_vec()),
        }
    }

    /// The key as PKCS#8 v1 DER (what Go's `x509.MarshalPKCS8PrivateKey` writes, so cosign and
    /// OpenSSL can read it).
    fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let doc = match &self.key {
            Signing::P256(key) => key.to_pkcs8_der(),
            Signing::Ed25519(key) => ed25519_dalek::pkcs8::KeypairBytes {
                secret_key: key.to_bytes(),
                public_key: None,
            }
            .to_pkcs8_der(),
        }
        .map_err(|e| malformed(format!("could not encode the private key as PKCS#8: {e}")))?;
        Ok(Zeroizing::new(doc.as_bytes().to_vec()))
    }

    /// The key in cosign's encrypted format: an `ENCRYPTED SIGSTORE PRIVATE KEY` PEM block with
    /// scrypt (N=65536, r=8, p=1) and NaCl secretbox over the PKCS#8 DER.
    pub fn to_encrypted_pem(&self, password: &[u8]) -> Result<String, KeyError> {
        let der = self.to_pkcs8_der()?;
        cosign_format::encrypt(&der, password)
    }

    /// Reads a private key from PEM: `ENCRYPTED SIGSTORE PRIVATE KEY` and `ENCRYPTED COSIGN
    /// PRIVATE KEY` (cosign's format; only then is `password` called, once, after the envelope
    /// has been checked), unencrypted PKCS#8 `PRIVATE KEY` (v1 or v2) and SEC 1 `EC PRIVATE KEY`.
    ///
    /// Loading an unencrypted key this way performs no file permission check; see
    /// [`load_private_key_file`].
    pub fn from_pem(
        pem: &[u8],
        password: &mut dyn FnMut() -> Result<Zeroizing<Vec<u8>>, KeyError>,
    ) -> Result<Self, KeyError> {
        let block =
            pem::decode_single(pem).map_err(|reason| KeyError::Pem { path: None, reason })?;
        Self::from_block(&block, password)
    }

    fn from_block(
        block: &pem::PemBlock,
        password: &mut dyn FnMut() -> Result<Zeroizing<Vec<u8>>, KeyError>,
    ) -> Result<Self, KeyError> {
        match block.label.as_str() {
            cosign_format::LABEL | cosign_format::LEGACY_LABEL => {
                let der = cosign_format::decrypt(&block.der, password)?;
                Self::from_pkcs8_der(&der)
            }
            PKCS8_LABEL => Self::from_pkcs8_der(&block.der),
            SEC1_LABEL => Self::from_sec1_der(&block.der),
            other => Err(KeyError::Pem {
                path: None,
                reason: format!(
                    "unexpected label {other:?}; expected {:?}, {:?}, {PKCS8_LABEL:?} or \
                     {SEC1_LABEL:?}",
                    cosign_format::LABEL,
                    cosign_format::LEGACY_LABEL
                ),
            }),
        }
    }

    fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let info = pkcs8::PrivateKeyInfoRef::from_der(der)
            .map_err(|e| malformed(format!("not a PKCS#8 PrivateKeyInfo: {e}")))?;
        let key = match info.algorithm.oid {
            OID_ED25519 => {
                // Handles v1 and v2 (RFC 5958 [1] publicKey, checked against the seed).
                let key = ed25519_dalek::SigningKey::try_from(info)
                    .map_err(|e| malformed(format!("invalid Ed25519 PKCS#8 key: {e}")))?;
                Signing::Ed25519(key)
            }
            OID_EC_PUBLIC_KEY => {
                let curve = info.algorithm.parameters_oid().map_err(|_| {
                    unsupported("EC key without a named curve (explicit or implicit parameters)")
                })?;
                if curve != OID_P256 {
                    return Err(unsupported(format!("EC curve {}", oid_name(&curve))));
                }
                let key = p256::ecdsa::SigningKey::from_pkcs8_der(der)
                    .map_err(|e| malformed(format!("invalid P-256 PKCS#8 key: {e}")))?;
                // The SEC 1 publicKey inside is checked by p256; check a v2 outer one here.
                if let Some(public) = info.public_key {
                    let expected = key.verifying_key().to_sec1_point(false);
                    if public.as_bytes() != Some(expected.as_bytes()) {
                        return Err(malformed(
                            "the PKCS#8 publicKey does not match the private key",
                        ));
                    }
                }
                Signing::P256(key)
            }
            other => return Err(unsupported(oid_name(&other))),
        };
        Self::from_signing(key)
    }

    fn from_sec1_der(der: &[u8]) -> Result<Self, KeyError> {
        let sec1_key = sec1::EcPrivateKey::from_der(der)
            .map_err(|e| malformed(format!("not a SEC 1 ECPrivateKey: {e}")))?;
        if let Some(curve) = sec1_key.parameters.and_then(|p| p.named_curve())
            && curve != OID_P256
        {
            return Err(unsupported(format!("EC curve {}", oid_name(&curve))));
        }
        let secret = p256::SecretKey::from_sec1_der(der)
            .map_err(|e| malformed(format!("invalid P-256 SEC 1 key: {e}")))?;
        Self::from_signing(Signing::P256(secret.into()))
    }
}

pub(crate) fn os_random(buf: &mut [u8]) -> Result<(), KeyError> {
    getrandom::fill(buf).map_err(|e| KeyError::Rng {
        reason: e.to_string(),
    })
}

/// Opens `path` (following a symlink only if `lstat` saw one), checks it is a regular file no
/// larger than [`MAX_KEY_FILE_SIZE`] and reads it. Returns the content, the permission bits and
/// whether the path is a symlink.
fn read_key_file(path: &Path) -> Result<(Zeroizing<Vec<u8>>, u32, bool), KeyError> {
    let link_meta = fs::symlink_metadata(path).map_err(io_error(path))?;
    let is_symlink = link_meta.file_type().is_symlink();
    let target_meta = if is_symlink {
        fs::metadata(path).map_err(io_error(path))?
    } else {
        link_meta
    };
    if !target_meta.is_file() {
        return Err(KeyError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let file = File::open(path).map_err(io_error(path))?;
    let meta = file.metadata().map_err(io_error(path))?;
    // The path must still name what we looked at (no swap between the checks and the open).
    if meta.dev() != target_meta.dev() || meta.ino() != target_meta.ino() || !meta.is_file() {
        return Err(KeyError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other("the file changed while it was being opened"),
        });
    }
    if meta.len() > MAX_KEY_FILE_SIZE {
        return Err(KeyError::FileTooLarge {
            path: path.to_path_buf(),
            limit: MAX_KEY_FILE_SIZE,
        });
    }
    // Capacity for the whole cap plus one byte: no reallocation leaves a copy of a key behind.
    let capacity = usize::try_from(MAX_KEY_FILE_SIZE.saturating_add(1)).unwrap_or(0);
    let mut content = Zeroizing::new(Vec::with_capacity(capacity));
    file.take(MAX_KEY_FILE_SIZE + 1)
        .read_to_end(&mut content)
        .map_err(io_error(path))?;
    if u64::try_from(content.len()).map_or(true, |n| n > MAX_KEY_FILE_SIZE) {
        return Err(KeyError::FileTooLarge {
            path: path.to_path_buf(),
            limit: MAX_KEY_FILE_SIZE,
        });
    }
    Ok((content, meta.mode() & 0o7777, is_symlink))
}

/// Loads a private key file (see [`PrivateKey::from_pem`] for the formats).
///
/// An unencrypted key (`PRIVATE KEY`, `EC PRIVATE KEY`) is refused with
/// [`KeyError::InsecureKeyFile`] when the file has any group or other permission bit or the path
/// is a symlink, unless `allow_insecure`. Encrypted keys are not checked: their secrecy rests on
/// the password, as in cosign. `password` is called only for encrypted keys.
pub fn load_private_key_file(
    path: &Path,
    password: &mut dyn FnMut() -> Result<Zeroizing<Vec<u8>>, KeyError>,
    allow_insecure: bool,
) -> Result<PrivateKey, KeyError> {
    let (content, mode, is_symlink) = read_key_file(path)?;
    let block = pem::decode_single(&content).map_err(|reason| KeyError::Pem {
        path: Some(path.to_path_buf()),
        reason,
    })?;
    let encrypted = matches!(
        block.label.as_str(),
        cosign_format::LABEL | cosign_format::LEGACY_LABEL
    );
    if !encrypted && !allow_insecure {
        let reason = if is_symlink {
            Some("is reached through a symlink")
        } else if mode & 0o077 != 0 {
            Some("other users can access (group or other permission bits are set)")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(KeyError::InsecureKeyFile {
                path: path.to_path_buf(),
                mode,
                reason,
            });
        }
    }
    PrivateKey::from_block(&block, password).map_err(|e| e.at(path))
}

/// Loads a `PUBLIC KEY` PEM file (see [`PublicKey::from_pem`]).
pub fn load_public_key_file(path: &Path) -> Result<PublicKey, KeyError> {
    let (content, _, _) = read_key_file(path)?;
    PublicKey::from_pem(&content).map_err(|e| e.at(path))
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Creates `path` (never overwriting) with `mode` and writes `data` to disk. On a failure after
/// the file was created, removes it.
fn write_new_file(path: &Path, data: &[u8], mode: u32) -> Result<(), KeyError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                KeyError::Io {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
    let written = file.write_all(data).and_then(|()| file.sync_all());
    if let Err(source) = written {
        drop(file);
        let _ = fs::remove_file(path);
        return Err(KeyError::Io {
            path: path.to_path_buf(),
            source,
        });
    }
    Ok(())
}

/// Writes `PREFIX.key` (cosign's encrypted format, mode 0600) and `PREFIX.pub` (PKIX PEM, mode
/// 0644, before the umask), as `cosign generate-key-pair` does. Refuses with
/// [`KeyError::Exists`] if either path exists (checked before anything is written) and never
/// overwrites; if writing the second file fails, the first is removed again.
pub fn write_key_pair(
    prefix: &Path,
    key: &PrivateKey,
    password: &[u8],
) -> Result<(PathBuf, PathBuf), KeyError> {
    let key_path = with_suffix(prefix, ".key");
    let pub_path = with_suffix(prefix, ".pub");
    for path in [&key_path, &pub_path] {
        match fs::symlink_metadata(path) {
            Ok(_) => return Err(KeyError::Exists { path: path.clone() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(KeyError::Io {
                    path: path.clone(),
                    source,
                });
            }
        }
    }
    let private_pem = Zeroizing::new(key.to_encrypted_pem(password)?);
    let public_pem = key.public_key().to_pem();
    write_pair(
        (&key_path, private_pem.as_bytes()),
        (&pub_path, public_pem.as_bytes()),
        &mut write_new_file,
    )?;
    Ok((key_path, pub_path))
}

type FileWriter<'a> = dyn FnMut(&Path, &[u8], u32) -> Result<(), KeyError> + 'a;

/// Writes the private then the public file; if the second fails, removes the first.
fn write_pair(
    (key_path, private_pem): (&Path, &[u8]),
    (pub_path, public_pem): (&Path, &[u8]),
    write: &mut FileWriter<'_>,
) -> Result<(), KeyError> {
    write(key_path, private_pem, 0o600)?;
    if let Err(e) = write(pub_path, public_pem, 0o644) {
        let _ = fs::remove_file(key_path);
        return Err(e);
    }
    Ok(())
}
