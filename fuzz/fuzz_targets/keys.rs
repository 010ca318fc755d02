//! Key files: `PUBLIC KEY` PEM (policy keys, `--key cosign.pub`), DER SubjectPublicKeyInfo, and private keys in
//! cosign's encrypted format, PKCS#8 and SEC 1. The password callback refuses, so an encrypted key is checked up
//! to the point where scrypt would run (the envelope is fully validated first, by design).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealpack::keys::{KeyError, PrivateKey, PublicKey};
use sha2::{Digest as _, Sha256};

fn check_public(k: &PublicKey) {
    // the key id is the SHA-256 of the canonical SPKI DER, and the PEM round-trips
    assert_eq!(
        k.key_id().to_string(),
        hex::encode(Sha256::digest(k.spki_der()))
    );
    let again = PublicKey::from_pem(k.to_pem().as_bytes()).expect("own PEM reads back");
    assert_eq!(&again, k);
    assert_eq!(
        PublicKey::from_spki_der(k.spki_der()).expect("own DER reads back"),
        *k
    );
}

fuzz_target!(|data: &[u8]| {
    if let Ok(k) = PublicKey::from_pem(data) {
        check_public(&k);
    }
    if let Ok(k) = PublicKey::from_spki_der(data) {
        // only the canonical encoding is accepted: the input is the key's own DER
        assert_eq!(k.spki_der(), data);
        check_public(&k);
    }
    let mut asked = 0u32;
    let mut refuse = || {
        asked += 1;
        Err(KeyError::Rng {
            reason: "fuzzing: no password".into(),
        })
    };
    match PrivateKey::from_pem(data, &mut refuse) {
        Ok(k) => {
            check_public(k.public_key());
            // a parsed private key signs, and its public key verifies that
            let sig = k.sign(b"fuzz").expect("sign");
            k.public_key()
                .verify(b"fuzz", &sig)
                .expect("verify own signature");
        }
        Err(KeyError::Rng { .. }) => assert_eq!(asked, 1),
        Err(_) => {}
    }
    assert!(asked <= 1, "the password is asked for at most once");
});
