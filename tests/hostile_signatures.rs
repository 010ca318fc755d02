//! Signature layers an attacker (or a broken signer) could put under the `.sig` tag: each is refused for the
//! right reason, all reasons are reported together, and verify exits 10. The layers are crafted through the
//! library on an OCI layout, so every case is exact.

mod common;

use std::collections::BTreeMap;
use std::fs;

use base64::Engine as _;
use common::cli::sealpack;
use sealpack::Digest;
use sealpack::formats::simplesigning;
use sealpack::keys::{KeyType, PrivateKey};
use sealpack::oci::Descriptor;
use sealpack::reference::Reference;
use sealpack::store::evidence::{self, Kind};
use sealpack::store::{self, Store, layout::LayoutStore};

fn layer(payload: &[u8], sig_annotation: &str, media_type: &str) -> Descriptor {
    let mut d = Descriptor::new(media_type, Digest::of(payload), payload.len() as u64);
    d.annotations = Some(BTreeMap::from([(
        simplesigning::SIGNATURE_ANNOTATION.to_string(),
        sig_annotation.to_string(),
    )]));
    d
}

/// A folder with an artifact pushed to the layout `oci:./l:v1`: (folder, docker config, pinned reference).
fn subject_on_a_layout() -> (tempfile::TempDir, std::path::PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let docker = dir.path().join("dc");
    fs::create_dir(&docker).unwrap();
    fs::write(dir.path().join("a.txt"), "subject").unwrap();
    let pinned = sealpack(
        dir.path(),
        &docker,
        &["push", "a.txt", "--to", "oci:./l:v1"],
    )
    .run()
    .ok();
    (dir, docker, pinned)
}

#[test]
fn every_hostile_signature_layer_is_refused_with_its_reason() {
    let (dir, docker, pinned) = subject_on_a_layout();
    let key = PrivateKey::generate(KeyType::EcdsaP256).unwrap();
    fs::write(dir.path().join("k.pub"), key.public_key().to_pem()).unwrap();
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = LayoutStore::open(&dir.path().join("l"), false).await.unwrap();
        let reference = Reference::parse(&pinned).unwrap();
        let subject = store::resolve(&store, &reference).await.unwrap();
        let digest = subject.digest().to_string();
        let good = simplesigning::build(&store.name(), &digest, None);
        let good_sig = key.sign(&good).unwrap();
        let dup = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"x"}},"image":{{"docker-manifest-digest":"{}","docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#,
            Digest::of(b"other")
        );
        let wrong_type = String::from_utf8(good.clone()).unwrap().replace("cosign container image signature", "something else");
        let cases: Vec<(Vec<u8>, String, &str)> = vec![
            (b"not json".to_vec(), b64(&key.sign(b"not json").unwrap()), simplesigning::MEDIA_TYPE),
            (dup.clone().into_bytes(), b64(&key.sign(dup.as_bytes()).unwrap()), simplesigning::MEDIA_TYPE),
            (wrong_type.clone().into_bytes(), b64(&key.sign(wrong_type.as_bytes()).unwrap()), simplesigning::MEDIA_TYPE),
            (good.clone(), b64(&good_sig[..good_sig.len() - 3]), simplesigning::MEDIA_TYPE),
            (good.clone(), b64(&[good_sig.clone(), vec![0, 0]].concat()), simplesigning::MEDIA_TYPE),
            (good.clone(), "!!!not-base64!!!".to_string(), simplesigning::MEDIA_TYPE),
            (good.clone(), b64(&good_sig), "application/vnd.example.not-a-signature"),
        ];
        for (payload, sig, mt) in cases {
            let l = layer(&payload, &sig, mt);
            evidence::append(&store, &subject.descriptor(), Kind::Signature, l, payload.into(), &|_| false)
                .await
                .unwrap();
        }
    });

    let r = sealpack(dir.path(), &docker, &["verify", &pinned, "--key", "k.pub"]).run();
    r.expect_code(10);
    for reason in [
        "not a valid simple-signing payload", // not JSON, signed by the key
        "more than once",                     // two docker-manifest-digest keys
        "critical.type",                      // wrong type
        "does not verify",                    // truncated signature / trailing bytes
        "bad signature encoding",             // not base64
        "media type application/vnd.example", // skipped before fetching
    ] {
        assert!(
            r.stderr.contains(reason),
            "missing reason {reason:?} in: {}",
            r.stderr
        );
    }
    assert!(
        r.stderr.contains("7 signature(s) found, none valid"),
        "{}",
        r.stderr
    );
}

/// Envelopes under the `.att` tag that are signed by the trusted key yet must not count: duplicate keys in the
/// statement, a subject in uppercase or short hex, a flipped payloadType, a signature over the raw payload
/// instead of the PAE, an old Statement type and a near-miss predicate type.
#[test]
fn every_hostile_attestation_is_refused_with_its_reason() {
    use sealpack::formats::dsse;
    let (dir, docker, pinned) = subject_on_a_layout();
    let key = PrivateKey::generate(KeyType::Ed25519).unwrap();
    fs::write(dir.path().join("k.pub"), key.public_key().to_pem()).unwrap();
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    let envelope = |payload_type: &str, body: &str, signed: &[u8]| {
        serde_json::json!({
            "payloadType": payload_type,
            "payload": b64(body.as_bytes()),
            "signatures": [{"keyid": "", "sig": b64(&key.sign(signed).unwrap())}],
        })
        .to_string()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = LayoutStore::open(&dir.path().join("l"), false).await.unwrap();
        let subject = store::resolve(&store, &Reference::parse(&pinned).unwrap()).await.unwrap();
        let hex = subject.digest().hex();
        let st = |t: &str, subj: &str, pt: &str| {
            format!(r#"{{"_type":"{t}","subject":[{{"name":"x","digest":{{"sha256":"{subj}"}}}}],"predicateType":"{pt}","predicate":{{}}}}"#)
        };
        let v1 = "https://in-toto.io/Statement/v1";
        let prov = "https://slsa.dev/provenance/v1";
        let intoto = dsse::PAYLOAD_TYPE_INTOTO;
        let dup = st(v1, &hex, prov).replace(r#""predicateType""#, r#""predicateType":"https://evil/x","predicateType""#);
        let bodies = [
            (intoto.to_string(), dup),
            (intoto.to_string(), st(v1, &hex.to_uppercase(), prov)),
            (intoto.to_string(), st(v1, &hex[..63], prov)),
            ("application/json".to_string(), st(v1, &hex, prov)),
            (intoto.to_string(), st("https://in-toto.io/Statement/v0.1", &hex, prov)),
            (intoto.to_string(), st(v1, &hex, "https://slsa.dev/provenance/v1evil")),
        ];
        let mut envelopes: Vec<String> =
            bodies.iter().map(|(t, b)| envelope(t, b, &dsse::pae(t, b.as_bytes()))).collect();
        // signed over the raw payload, not over the PAE
        let good = st(v1, &hex, prov);
        envelopes.push(envelope(intoto, &good, good.as_bytes()));
        for e in envelopes {
            let bytes = e.into_bytes();
            let layer = Descriptor::new(dsse::MEDIA_TYPE, Digest::of(&bytes), bytes.len() as u64);
            evidence::append(&store, &subject.descriptor(), Kind::Attestation, layer, bytes.into(), &|_| false)
                .await
                .unwrap();
        }
    });
    let r = sealpack(
        dir.path(),
        &docker,
        &[
            "verify-attestation",
            &pinned,
            "--key",
            "k.pub",
            "--type",
            "slsaprovenance",
        ],
    )
    .run();
    r.expect_code(10);
    for reason in [
        "layer 0: signed by k.pub, but the statement is invalid", // duplicate predicateType
        "layer 1: signed by k.pub, but the statement is invalid", // uppercase hex
        "layer 2: signed by k.pub, but the statement is about",   // 63 hex: binds nothing
        "layer 3: signed by k.pub, but",                          // payloadType flipped
        "layer 4: signed by k.pub, but the statement is invalid", // Statement v0.1
        "layer 5: signed by k.pub, predicate type",               // near-miss type
        "layer 6: no signature on the envelope verifies",         // raw payload signed
    ] {
        assert!(
            r.stderr.contains(reason),
            "missing {reason:?} in: {}",
            r.stderr
        );
    }
}
