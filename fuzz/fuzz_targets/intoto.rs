//! in-toto statements (DSSE payloads) and every predicate parser that reads them: SLSA provenance v1,
//! CycloneDX and SPDX summaries, sealpack revocations, and the policy decision that reads SLSA and vulnerability
//! scan predicates (with `testdata/policy/example.toml`, whose rules ask for all of them).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sealpack::Digest;
use sealpack::formats::{self, cyclonedx, intoto, revocation, slsa, spdx};
use sealpack::verify::policy::{self, Facts, Policy};

static POLICY: LazyLock<(Policy, Vec<String>)> = LazyLock::new(|| {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/policy/example.toml"
    );
    let p = Policy::load(std::path::Path::new(path)).unwrap();
    let ids = p
        .trusted_keys()
        .iter()
        .map(|k| k.key.key_id().to_string())
        .collect();
    (p, ids)
});

fuzz_target!(|data: &[u8]| {
    // the duplicate-refusing reader agrees with plain serde_json on everything it accepts
    let Ok(value) = formats::parse_json_no_duplicates(data, intoto::MAX_STATEMENT_SIZE) else {
        return;
    };
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(data).unwrap(),
        value
    );
    assert!(formats::parse_json_no_duplicates(value.to_string().as_bytes(), usize::MAX).is_ok());

    // predicate parsers on the raw document too (a predicate file, `sealpack attest --predicate`)
    predicates(&value);

    let Ok(st) = intoto::parse(data) else {
        return;
    };
    assert!(!st.subject.is_empty() && st.subject.len() <= intoto::MAX_SUBJECTS);
    assert!(!st.predicate_type.is_empty());
    assert!(st.predicate.is_object() || st.predicate.is_null());
    for s in &st.subject {
        assert!(!s.digest.is_empty() && s.digest.len() <= intoto::MAX_DIGESTS);
        if let Some(h) = s.digest.get("sha256") {
            assert_eq!(st.binds(h), h.len() == 64);
        }
    }
    // binding is exact: a digest of the input is bound only if a subject lists it
    let own = Digest::of(data).hex();
    assert_eq!(
        st.binds(&own),
        st.subject
            .iter()
            .any(|s| s.digest.get("sha256") == Some(&own))
    );
    // one-subject statements rebuild to the same statement
    if let [s] = st.subject.as_slice()
        && s.digest.len() == 1
        && let Some(h) = s.digest.get("sha256")
        && st.predicate.is_object()
    {
        let rebuilt = intoto::build(&s.name, h, &st.predicate_type, &st.predicate);
        let again = intoto::parse(&rebuilt).unwrap_or_else(|e| panic!("rebuilt statement: {e}"));
        assert_eq!(again.subject, st.subject);
        assert_eq!(again.predicate_type, st.predicate_type);
    }

    predicates(&st.predicate);

    // the policy gate reads predicates of verified statements; hostile content gives a decision, not a panic
    let (policy, ids) = &*POLICY;
    let facts = Facts {
        digest: Digest::of(data),
        signer_key_ids: ids.clone(),
        attestations: vec![(ids.clone(), value.clone())],
        revoked_by: revocation::parse(&st.predicate)
            .map(|r| vec![(ids[0].clone(), r.reason)])
            .unwrap_or_default(),
        now: time::OffsetDateTime::from_unix_timestamp(1_790_000_000).unwrap(),
    };
    let d = policy::decide(policy, "registry.example.com/team/app", &facts);
    assert_eq!(d.allowed, d.results.iter().all(|r| r.ok));
    assert_eq!(d.unmet().count() == 0, d.allowed);
});

fn predicates(v: &serde_json::Value) {
    if let Ok(p) = slsa::parse(v) {
        assert!(!p.builder_id().is_empty());
        assert!(!p.build_type().is_empty());
        let _ = (
            p.source(),
            p.source_uri(),
            p.source_repository(),
            p.source_ref(),
        );
        let _ = (
            p.commit(),
            p.invocation_id(),
            p.started_on(),
            p.finished_on(),
        );
    }
    if let Ok(r) = revocation::parse(v) {
        assert!(Digest::parse(&r.digest).is_ok());
        assert!(r.reason.len() <= revocation::MAX_REASON);
        if !r.reason.trim().is_empty() {
            let built = revocation::build(&r.digest, &r.reason, &r.revoked_at).unwrap();
            assert_eq!(revocation::parse(&built).unwrap(), r);
        }
    }
    let _ = cyclonedx::parse_minimal(v);
    let _ = spdx::parse_minimal(v);
}
