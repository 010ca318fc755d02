//! DSSE envelopes (cosign `.att` layers, attestation bundles), parsed before any signature is checked.
#![no_main]

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use sealpack::formats::dsse;
use sealpack::keys::PublicKey;

static KEYS: LazyLock<Vec<PublicKey>> = LazyLock::new(|| {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/");
    [
        "dsse/spec-protocol-md/key.derived.pub",
        "attestations/kyverno-legacy-cosign/kyverno.pub",
        "keys/sigstore-rs/ed25519_encrypted_private.derived.pub",
    ]
    .iter()
    .map(|p| PublicKey::from_pem(&std::fs::read(format!("{root}{p}")).unwrap()).unwrap())
    .collect()
});

fuzz_target!(|data: &[u8]| {
    let Ok(env) = dsse::parse(data) else {
        return;
    };
    assert!(!env.signatures.is_empty() && env.signatures.len() <= dsse::MAX_SIGNATURES);
    assert!(env.payload_type.len() <= dsse::MAX_PAYLOAD_TYPE_LEN);
    for s in &env.signatures {
        assert!(!s.sig.is_empty());
        assert!(s.keyid.len() <= dsse::MAX_KEYID_LEN);
    }
    // PAE is a pure function of type and body: the lengths it states are the real ones
    let pae = dsse::pae(&env.payload_type, &env.payload);
    let prefix = format!(
        "DSSEv1 {} {} {} ",
        env.payload_type.len(),
        env.payload_type,
        env.payload.len()
    );
    assert!(pae.starts_with(prefix.as_bytes()));
    assert!(pae.ends_with(&env.payload));
    assert_eq!(pae.len(), prefix.len() + env.payload.len());

    // re-encoding (canonical base64, same fields) reads back to the same envelope
    let json = serde_json::json!({
        "payloadType": env.payload_type,
        "payload": STANDARD.encode(&env.payload),
        "signatures": env.signatures.iter().map(|s| serde_json::json!({
            "keyid": s.keyid,
            "sig": STANDARD.encode(&s.sig),
        })).collect::<Vec<_>>(),
    });
    let again = dsse::parse(json.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("re-encoded envelope does not parse: {e}"));
    assert_eq!(again, env);

    let _ = dsse::check_intoto(&env);
    // verification over hostile signature bytes (each signature against each key) returns, never panics; the
    // verified keys are among those given
    if env.signatures.len() <= 4 {
        for k in dsse::verify(&env, &KEYS) {
            assert!(KEYS.iter().any(|t| t.key_id() == k.key_id()));
        }
    }
});
