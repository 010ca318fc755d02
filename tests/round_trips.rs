//! Registry round trips of `verify` on the real registry (distribution 2.8, which has no referrers API): every
//! request counted from the registry's access log, so a regression in the number of requests shows.
//!
//! Issue 7's bar: a signed and attested artifact verifies in at most 4 round trips after the tag is resolved,
//! where requests sent together count once. sealpack makes 2: the `.sig` tag, the `.att` tag and one referrers
//! probe together; then every evidence blob together.

mod common;

use std::fs;

use common::cli::TestEnv as Env;
use common::registry::{AccessLine, Flavor, Registry};

fn show(reqs: &[AccessLine]) -> Vec<String> {
    reqs.iter()
        .map(|l| format!("{} {} {}", l.method, l.path_only(), l.status))
        .collect()
}

/// A pushed file, signed by `release`, with a provenance and an SBOM attestation signed by `ci`.
fn signed_and_attested(reg: &Registry, env: &Env) -> (String, String, String) {
    env.keygen("release", "ecdsa-p256");
    env.keygen("ci", "ed25519");
    fs::write(env.path().join("app.txt"), "release 1").unwrap();
    let target = format!("{}/team/app:v1", reg.host);
    let pinned = env
        .sp(&["--plain-http", "push", "app.txt", "--to", &target])
        .ok();
    let digest = pinned.rsplit('@').next().unwrap().to_string();
    env.sp(&["--plain-http", "sign", &target, "--key", "release.key"])
        .ok();
    env.sp(&[
        "--plain-http",
        "attest",
        &target,
        "--key",
        "ci.key",
        "--provenance",
        "--commit",
        "0123456789abcdef0123456789abcdef01234567",
        "--source-uri",
        "git+https://github.com/acme/app@refs/tags/v1.0.0",
        "--builder-id",
        "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main",
    ])
    .ok();
    env.sp(&[
        "--plain-http",
        "attest",
        &target,
        "--key",
        "ci.key",
        "--sbom",
    ])
    .ok();
    (target, pinned, digest)
}

#[test]
fn verify_policy_of_a_signed_and_attested_artifact_makes_seven_requests() {
    let reg = Registry::start(Flavor::Plain);
    let env = Env::new();
    let (target, pinned, digest) = signed_and_attested(&reg, &env);
    fs::write(
        env.path().join("policy.toml"),
        "version = 1\n\n[defaults]\ndeny_unmatched = true\n\n\
         [[keys]]\nid = \"release\"\npath = \"release.pub\"\nroles = [\"release\"]\n\n\
         [[keys]]\nid = \"ci\"\npath = \"ci.pub\"\nroles = [\"builder\"]\n\n\
         [[rules]]\nscope = \"*/team/*\"\nsignatures = { threshold = 1, roles = [\"release\"] }\n\n\
         [[rules.attestations]]\ntype = \"https://slsa.dev/provenance/v1\"\nsigned_by = [\"builder\"]\n\n\
         [[rules.attestations]]\ntype = \"https://cyclonedx.org/bom\"\nsigned_by = [\"builder\"]\n",
    )
    .unwrap();

    reg.clear_requests();
    assert_eq!(
        env.sp(&["--plain-http", "verify", &target, "--policy", "policy.toml"])
            .ok(),
        pinned
    );
    let reqs = reg.requests();
    let seen = show(&reqs);
    let tag = digest.replace(':', "-");
    // resolve: the tag, once, first
    assert_eq!(seen[0], "GET /v2/team/app/manifests/v1 200", "{seen:#?}");
    // then the evidence tags and one referrers probe (404 on distribution 2.8: the tag schema is what counts)
    for want in [
        format!("GET /v2/team/app/manifests/{tag}.sig 200"),
        format!("GET /v2/team/app/manifests/{tag}.att 200"),
        format!("GET /v2/team/app/referrers/{digest} 404"),
    ] {
        assert_eq!(
            seen.iter().filter(|s| **s == want).count(),
            1,
            "{want}: {seen:#?}"
        );
    }
    // then each blob once: the signature payload and the two envelopes
    let mut blobs: Vec<&String> = seen
        .iter()
        .filter(|s| s.starts_with("GET /v2/team/app/blobs/") && s.ends_with(" 200"))
        .collect();
    assert_eq!(blobs.len(), 3, "{seen:#?}");
    blobs.dedup();
    assert_eq!(blobs.len(), 3, "a blob fetched twice: {seen:#?}");
    assert_eq!(
        reqs.len(),
        7,
        "resolve + .sig + .att + referrers probe + 3 blobs: {seen:#?}"
    );

    // pinned by digest: the same requests, the manifest read by its digest (sent with the evidence reads)
    reg.clear_requests();
    assert_eq!(
        env.sp(&["--plain-http", "verify", &pinned, "--policy", "policy.toml"])
            .ok(),
        pinned
    );
    let seen = show(&reg.requests());
    assert!(
        seen.contains(&format!("GET /v2/team/app/manifests/{digest} 200")),
        "{seen:#?}"
    );
    assert_eq!(seen.len(), 7, "{seen:#?}");
}

#[test]
fn verify_with_keys_reads_signatures_and_revocations_together() {
    let reg = Registry::start(Flavor::Plain);
    let env = Env::new();
    let (target, pinned, digest) = signed_and_attested(&reg, &env);
    reg.clear_requests();
    assert_eq!(
        env.sp(&["--plain-http", "verify", &target, "--key", "release.pub"])
            .ok(),
        pinned
    );
    let seen = show(&reg.requests());
    // the revocation check reads the attestations too (a revocation is one), with the same single probe
    assert_eq!(
        seen.iter().filter(|s| s.contains("/referrers/")).count(),
        1,
        "{seen:#?}"
    );
    assert!(
        seen.contains(&format!("GET /v2/team/app/referrers/{digest} 404")),
        "{seen:#?}"
    );
    assert_eq!(seen.len(), 7, "{seen:#?}");
}
