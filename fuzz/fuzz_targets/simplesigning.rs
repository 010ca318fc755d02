//! cosign simple-signing payloads (the blob a `sha256-<hex>.sig` layer signs) and the base64 signature annotation
//! next to them, both straight from a registry.
#![no_main]

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use sealpack::formats::simplesigning::{self, MAX_SIGNATURE_ANNOTATION_LEN};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = simplesigning::parse(data) {
        assert!(p.manifest_digest.starts_with("sha256:") && p.manifest_digest.len() == 71);
        assert!(sealpack::Digest::parse(&p.manifest_digest).is_ok());
        // a payload whose annotations are strings can be rebuilt the way cosign writes it, and reads the same
        let strings: Option<Option<BTreeMap<String, String>>> = match &p.optional {
            None => Some(None),
            Some(map) => map
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Some((k.clone(), s.clone())),
                    _ => None,
                })
                .collect::<Option<BTreeMap<_, _>>>()
                .map(Some),
        };
        if let Some(annotations) = strings {
            let rebuilt = simplesigning::build(
                &p.docker_reference,
                &p.manifest_digest,
                annotations.as_ref(),
            );
            let again = simplesigning::parse(&rebuilt)
                .unwrap_or_else(|e| panic!("rebuilt payload does not parse: {e}"));
            assert_eq!(again, p);
            // and rebuilding is a fixed point
            assert_eq!(
                simplesigning::build(
                    &again.docker_reference,
                    &again.manifest_digest,
                    annotations.as_ref()
                ),
                rebuilt
            );
        }
    }

    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(sig) = simplesigning::decode_signature_annotation(s)
    {
        assert!(s.len() <= MAX_SIGNATURE_ANNOTATION_LEN);
        // strict base64: one spelling per byte string (line breaks aside)
        let compact: String = s.chars().filter(|&c| c != '\n' && c != '\r').collect();
        assert_eq!(STANDARD.encode(&sig), compact);
    }
});
