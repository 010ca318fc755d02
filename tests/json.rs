//! `--json` on every command has the shape docs/JSON.md documents: each command's output deserialises into the
//! documented fields (unknown fields are allowed: new fields may be added; these may not change).

mod common;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use common::cli::TestEnv as Env;

fn json<T: DeserializeOwned>(env: &Env, args: &[&str]) -> T {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let r = env.sp(&all);
    r.expect_code(0);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}\n{}", r.stdout))
}

#[derive(Deserialize)]
struct Layer {
    title: String,
    media_type: String,
    digest: String,
    size: u64,
    transfer: String,
}
#[derive(Deserialize)]
struct Push {
    reference: String,
    digest: String,
    tag: String,
    annotations: std::collections::BTreeMap<String, String>,
    layers: Vec<Layer>,
    bytes_uploaded: u64,
    unchanged: bool,
}
#[derive(Deserialize)]
struct PulledFile {
    path: String,
    digest: String,
    size: u64,
    unpacked: bool,
}
#[derive(Deserialize)]
struct Pull {
    reference: String,
    digest: String,
    files: Vec<PulledFile>,
}
#[derive(Deserialize)]
struct Resolve {
    reference: String,
    digest: String,
    media_type: String,
    size: u64,
}
#[derive(Deserialize)]
struct Entry {
    title: Option<String>,
    media_type: String,
    digest: String,
    size: u64,
}
#[derive(Deserialize)]
struct Attachment {
    kind: String,
    tag: String,
    digest: String,
    entries: usize,
}
#[derive(Deserialize)]
struct Inspect {
    reference: String,
    digest: String,
    media_type: String,
    size: u64,
    artifact_type: Option<String>,
    annotations: std::collections::BTreeMap<String, String>,
    entries: Vec<Entry>,
    total_size: u64,
    attachments: Vec<Attachment>,
}
#[derive(Deserialize)]
struct Keygen {
    private_key: String,
    public_key: String,
    key_id: String,
    #[serde(rename = "type")]
    kind: String,
}
#[derive(Deserialize)]
struct Sign {
    reference: String,
    digest: String,
    key_id: String,
    signature_tag: String,
    signature_manifest: String,
    signatures: usize,
    added: bool,
}
#[derive(Deserialize)]
struct Attest {
    reference: String,
    digest: String,
    predicate_type: String,
    key_id: String,
    attestation_tag: String,
    attestation_manifest: String,
    attestations: usize,
    added: bool,
}
#[derive(Deserialize)]
struct Verified {
    manifest: String,
    layer: usize,
    key_id: String,
    key: String,
}
#[derive(Deserialize)]
struct Rejected {
    #[allow(dead_code)] // deserialised to check it is there; no rejected layer in this story
    reason: String,
}
#[derive(Deserialize)]
struct Verify {
    reference: String,
    digest: String,
    verified: Vec<Verified>,
    rejected: Vec<Rejected>,
    distinct_keys: usize,
}
#[derive(Deserialize)]
struct RuleResult {
    rule: String,
    ok: bool,
    expected: String,
    found: String,
}
#[derive(Deserialize)]
struct PolicyVerify {
    reference: String,
    allowed: bool,
    digest: String,
    rule: Option<String>,
    results: Vec<RuleResult>,
}
#[derive(Deserialize)]
struct VerifiedAttestation {
    manifest: String,
    layer: usize,
    keys: Vec<String>,
    key_ids: Vec<String>,
    predicate_type: String,
    statement: serde_json::Value,
}
#[derive(Deserialize)]
struct VerifyAttestation {
    reference: String,
    digest: String,
    predicate_type: String,
    verified: Vec<VerifiedAttestation>,
    rejected: Vec<Rejected>,
}
#[derive(Deserialize)]
struct Verdict {
    reference: String,
    digest: String,
    checks: Vec<String>,
}
#[derive(Deserialize)]
struct Health {
    passed: bool,
    status: String,
    stdout: String,
    stderr: String,
}
#[derive(Deserialize)]
struct Deploy {
    action: String,
    env: String,
    reference: String,
    digest: String,
    release_dir: String,
    previous: Option<String>,
    reused: bool,
    version: Option<String>,
    commit: Option<String>,
    verdict: Verdict,
    health: Option<Health>,
    notes: Vec<String>,
    deployment_record: Option<Attest>,
}
#[derive(Deserialize)]
struct Promote {
    reference: String,
    digest: String,
    from: String,
    to: String,
    evidence: String,
    verdict: Verdict,
    statement: Attest,
    deploy: Option<Deploy>,
}
#[derive(Deserialize)]
struct CopiedEvidence {
    subject: String,
    tag: Option<String>,
    source_manifest: String,
    manifest: String,
    layers: usize,
    action: String,
}
#[derive(Deserialize)]
struct Copy {
    source: String,
    destination: String,
    digest: String,
    tag: Option<String>,
    unchanged: bool,
    manifests: usize,
    blobs_copied: usize,
    blobs_mounted: usize,
    blobs_present: usize,
    bytes_copied: u64,
    evidence: Vec<CopiedEvidence>,
}
#[derive(Deserialize)]
struct Event {
    time: String,
    action: String,
    env: String,
    digest: String,
    reference: Option<String>,
    version: Option<String>,
    commit: Option<String>,
    previous: Option<String>,
    who: String,
    status: String,
    detail: Option<String>,
}

#[derive(Deserialize)]
struct TraceCheck {
    verified: bool,
    keys: Vec<String>,
    key_ids: Vec<String>,
    claimed_key_ids: Vec<String>,
    unverified_reason: Option<String>,
    manifest: String,
    layer: usize,
}
#[derive(Deserialize)]
struct TraceSbom {
    #[serde(flatten)]
    check: TraceCheck,
    format: String,
    components: usize,
}
#[derive(Deserialize)]
struct TracePromotion {
    #[serde(flatten)]
    check: TraceCheck,
    from: String,
    to: String,
    promoted_at: String,
    promoted_by: String,
}
#[derive(Deserialize)]
struct TraceDeployment {
    #[serde(flatten)]
    check: TraceCheck,
    environment: String,
    deployed_at: String,
    deployed_by: String,
    target: String,
}
#[derive(Deserialize)]
struct TraceRevocation {
    #[serde(flatten)]
    check: TraceCheck,
    reason: String,
    revoked_at: String,
}
#[derive(Deserialize)]
struct TraceEvidence {
    keys: Vec<String>,
    signatures: Vec<TraceCheck>,
    provenance: Vec<serde_json::Value>,
    sboms: Vec<TraceSbom>,
    promotions: Vec<TracePromotion>,
    deployments: Vec<TraceDeployment>,
    revocations: Vec<TraceRevocation>,
    other: Vec<serde_json::Value>,
    ignored: Vec<serde_json::Value>,
}
#[derive(Deserialize)]
struct TraceEnvEvent {
    time: String,
    action: String,
    status: String,
    who: String,
    commit: Option<String>,
}
#[derive(Deserialize)]
struct TraceEnv {
    env: String,
    target: String,
    current: bool,
    first: String,
    last: String,
    events: Vec<TraceEnvEvent>,
}
#[derive(Deserialize)]
struct Trace {
    reference: Option<String>,
    digest: String,
    media_type: Option<String>,
    revision: Option<String>,
    source: Option<String>,
    version: Option<String>,
    created: Option<String>,
    evidence: Option<TraceEvidence>,
    environments: Vec<TraceEnv>,
    warnings: Vec<String>,
}
#[derive(Deserialize)]
struct TraceCommit {
    commit: String,
    repository: Option<String>,
    tags_total: usize,
    tags_examined: usize,
    capped: bool,
    digests: Vec<Trace>,
}

#[test]
fn every_command_prints_the_documented_shape() {
    let env = Env::new();
    let commit = "1111111111111111111111111111111111111111";
    std::fs::create_dir_all(env.path().join("site")).unwrap();
    std::fs::write(env.path().join("site/index.html"), "hi").unwrap();

    let k: Keygen = json(&env, &["keygen", "--out", "rel"]);
    assert_eq!((k.kind.as_str(), k.key_id.len()), ("ecdsa-p256", 64));
    assert!(k.private_key.ends_with("rel.key") && k.public_key.ends_with("rel.pub"));

    let p: Push = json(
        &env,
        &["push", "site", "--to", "oci:./s:v1", "--commit", commit],
    );
    assert_eq!(
        (p.tag.as_str(), p.layers.len(), p.unchanged),
        ("v1", 1, false)
    );
    assert_eq!(p.annotations["org.opencontainers.image.revision"], commit);
    let l = &p.layers[0];
    assert_eq!(
        (l.title.as_str(), l.transfer.as_str()),
        ("site", "uploaded")
    );
    assert!(l.media_type.ends_with("tar+gzip") && l.digest.starts_with("sha256:") && l.size > 0);
    assert_eq!(
        p.bytes_uploaded,
        l.size + 2,
        "the layer and the empty config"
    );
    assert_eq!(p.reference, format!("oci:./s@{}", p.digest));

    let r: Resolve = json(&env, &["resolve", "oci:./s:v1"]);
    assert_eq!(
        (r.digest.as_str(), r.reference.as_str()),
        (p.digest.as_str(), p.reference.as_str())
    );
    assert!(r.media_type.contains("manifest") && r.size > 0);

    let s: Sign = json(&env, &["sign", "oci:./s:v1", "--key", "rel.key"]);
    assert_eq!(
        (s.digest.as_str(), s.key_id.as_str(), s.signatures, s.added),
        (p.digest.as_str(), k.key_id.as_str(), 1, true)
    );
    assert!(
        s.signature_tag.ends_with(".sig")
            && s.signature_manifest.starts_with("sha256:")
            && s.reference == p.reference
    );

    let a: Attest = json(
        &env,
        &["attest", "oci:./s:v1", "--key", "rel.key", "--sbom"],
    );
    assert_eq!(
        (a.predicate_type.as_str(), a.attestations, a.added),
        ("https://cyclonedx.org/bom", 1, true)
    );
    assert!(a.attestation_tag.ends_with(".att") && a.attestation_manifest.starts_with("sha256:"));
    assert_eq!(
        (a.reference.as_str(), a.digest.as_str(), a.key_id.as_str()),
        (p.reference.as_str(), p.digest.as_str(), k.key_id.as_str())
    );

    let i: Inspect = json(&env, &["inspect", "oci:./s:v1"]);
    assert_eq!((i.entries.len(), i.attachments.len()), (1, 2));
    assert_eq!(i.entries[0].title.as_deref(), Some("site"));
    assert_eq!(i.total_size, i.entries[0].size);
    assert!(i.artifact_type.is_some() && i.media_type.ends_with("manifest.v1+json") && i.size > 0);
    assert_eq!(i.annotations["org.opencontainers.image.version"], "v1");
    assert_eq!(
        (i.reference.as_str(), i.digest.as_str()),
        (p.reference.as_str(), p.digest.as_str())
    );
    assert!(i.entries[0].digest.starts_with("sha256:") && !i.entries[0].media_type.is_empty());
    let kinds: Vec<&str> = i.attachments.iter().map(|a| a.kind.as_str()).collect();
    assert_eq!(kinds, ["signature", "attestation"]);
    assert!(i.attachments.iter().all(|a| a.entries == 1
        && a.tag.starts_with("sha256-")
        && a.digest.starts_with("sha256:")));

    let v: Verify = json(&env, &["verify", "oci:./s:v1", "--key", "rel.pub"]);
    assert_eq!(
        (v.verified.len(), v.rejected.len(), v.distinct_keys),
        (1, 0, 1)
    );
    assert_eq!(
        (
            v.verified[0].key_id.as_str(),
            v.verified[0].key.as_str(),
            v.verified[0].layer
        ),
        (k.key_id.as_str(), "rel.pub", 0)
    );
    assert!(
        v.verified[0].manifest.starts_with("sha256:")
            && v.reference == p.reference
            && v.digest == p.digest
    );

    let va: VerifyAttestation = json(
        &env,
        &[
            "verify-attestation",
            "oci:./s:v1",
            "--key",
            "rel.pub",
            "--type",
            "cyclonedx",
        ],
    );
    assert_eq!((va.verified.len(), va.rejected.len()), (1, 0));
    let v0 = &va.verified[0];
    assert_eq!(
        (v0.keys.len(), v0.key_ids[0].as_str(), v0.layer),
        (1, k.key_id.as_str(), 0)
    );
    assert_eq!(v0.predicate_type, va.predicate_type);
    assert!(
        v0.manifest.starts_with("sha256:") && va.reference == p.reference && va.digest == p.digest
    );
    assert_eq!(
        v0.statement["subject"][0]["digest"]["sha256"],
        p.digest.trim_start_matches("sha256:")
    );

    std::fs::write(
        env.path().join("policy.toml"),
        "version = 1\n[[keys]]\nid = \"rel\"\npath = \"rel.pub\"\nroles = [\"release\"]\n[[rules]]\nscope = \"oci:*\"\nsignatures = { threshold = 1, roles = [\"release\"] }\n",
    )
    .unwrap();
    let pv: PolicyVerify = json(&env, &["verify", "oci:./s:v1", "--policy", "policy.toml"]);
    assert!(
        pv.allowed
            && pv.results.iter().all(|r| r.ok
                && !r.rule.is_empty()
                && !r.expected.is_empty()
                && !r.found.is_empty())
    );
    assert_eq!(
        (
            pv.rule.as_deref(),
            pv.digest.as_str(),
            pv.reference.as_str()
        ),
        (Some("oci:*"), p.digest.as_str(), p.reference.as_str())
    );
    // a denial prints the decision too, then exits 10
    let r = env.sp(&["--json", "verify", "oci:./s:v1", "--policy", "policy.toml"]);
    r.expect_code(0);
    std::fs::write(env.path().join("site/index.html"), "v2").unwrap();
    env.sp(&["push", "site", "--to", "oci:./s:v2", "--commit", commit])
        .ok();
    let r = env.sp(&["--json", "verify", "oci:./s:v2", "--policy", "policy.toml"]);
    r.expect_code(10);
    let denied: PolicyVerify = serde_json::from_str(&r.stdout).unwrap();
    assert!(!denied.allowed && denied.results.iter().any(|r| !r.ok));

    let c: Copy = json(&env, &["copy", "oci:./s:v1", "oci:./mirror"]);
    assert_eq!(
        (
            c.digest.as_str(),
            c.tag.as_deref(),
            c.unchanged,
            c.manifests
        ),
        (p.digest.as_str(), Some("v1"), false, 1)
    );
    assert_eq!(
        (c.source.as_str(), c.destination.as_str()),
        (
            p.reference.as_str(),
            format!("oci:./mirror@{}", p.digest).as_str()
        )
    );
    assert!(
        c.blobs_copied >= 2
            && c.blobs_mounted == 0
            && c.blobs_present == 0
            && c.bytes_copied > l.size
    );
    assert_eq!(c.evidence.len(), 2, "the .sig and the .att");
    for e in &c.evidence {
        assert_eq!(
            (e.subject.as_str(), e.action.as_str(), e.layers),
            (p.digest.as_str(), "copied", 1)
        );
        assert!(
            e.tag.as_deref().unwrap().starts_with("sha256-") && e.manifest == e.source_manifest
        );
    }

    let pl: Pull = json(&env, &["pull", "oci:./s:v1", "-o", "out"]);
    assert_eq!(
        (
            pl.files.len(),
            pl.files[0].unpacked,
            pl.files[0].path.as_str()
        ),
        (1, true, "out/site")
    );
    assert_eq!(
        (pl.files[0].digest.as_str(), pl.files[0].size),
        (l.digest.as_str(), l.size)
    );
    assert_eq!(
        (pl.reference.as_str(), pl.digest.as_str()),
        (p.reference.as_str(), p.digest.as_str())
    );

    let d: Deploy = json(
        &env,
        &[
            "deploy",
            "oci:./s:v1",
            "--env",
            "staging",
            "--target",
            "stg",
            "--key",
            "rel.pub",
            "--health-cmd",
            "true",
            "--sign-key",
            "rel.key",
        ],
    );
    assert_eq!(
        (d.action.as_str(), d.env.as_str(), d.reused, d.previous),
        ("deploy", "staging", false, None)
    );
    assert_eq!(
        (d.version.as_deref(), d.commit.as_deref()),
        (Some("v1"), Some(commit))
    );
    assert!(
        d.release_dir
            .ends_with(p.digest.trim_start_matches("sha256:"))
    );
    assert_eq!(
        (
            d.verdict.digest.as_str(),
            d.verdict.reference.as_str(),
            d.verdict.checks.len()
        ),
        (p.digest.as_str(), p.reference.as_str(), 1)
    );
    let h = d.health.unwrap();
    assert!(h.passed && h.status == "exit 0" && h.stdout.is_empty() && h.stderr.is_empty());
    assert!(d.notes.is_empty() && d.reference == p.reference && d.digest == p.digest);
    assert_eq!(
        d.deployment_record.unwrap().predicate_type,
        "https://github.com/sealpack/sealpack/deployment/v1"
    );

    let pr: Promote = json(
        &env,
        &[
            &["promote", "oci:./s"][..],
            &common::cli::PROMOTE_STG_TO_PROD[..],
        ]
        .concat(),
    );
    assert_eq!(
        (pr.from.as_str(), pr.to.as_str(), pr.digest.as_str()),
        ("staging", "production", p.digest.as_str())
    );
    assert_eq!(
        pr.statement.predicate_type,
        "https://github.com/sealpack/sealpack/promotion/v1"
    );
    assert!(
        pr.evidence.contains("stg") && pr.verdict.digest == p.digest && pr.reference == p.reference
    );
    assert_eq!(pr.deploy.unwrap().action, "promote");

    let rb_target = env.sp(&[
        "deploy",
        "oci:./s:v2",
        "--env",
        "staging",
        "--target",
        "stg",
        "--key",
        "rel.pub",
    ]);
    rb_target.expect_code(10); // v2 is unsigned
    env.sp(&["sign", "oci:./s:v2", "--key", "rel.key"]).ok();
    env.sp(&[
        "deploy",
        "oci:./s:v2",
        "--env",
        "staging",
        "--target",
        "stg",
        "--key",
        "rel.pub",
    ])
    .ok();
    let rb: Deploy = json(
        &env,
        &[
            "rollback", "--env", "staging", "--target", "stg", "--key", "rel.pub",
        ],
    );
    assert_eq!(
        (rb.action.as_str(), rb.digest.as_str(), rb.reused),
        ("rollback", p.digest.as_str(), true)
    );
    assert!(rb.previous.is_some() && rb.health.is_none() && rb.deployment_record.is_none());

    let ev: Vec<Event> = json(&env, &["history", "--target", "stg"]);
    let actions: Vec<&str> = ev.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["rollback", "deploy", "health", "deploy"]);
    let e = &ev[0];
    assert!(
        e.time.ends_with('Z')
            && e.env == "staging"
            && e.digest == p.digest
            && e.status == "ok"
            && !e.who.is_empty()
    );
    assert_eq!(
        (
            e.reference.as_deref(),
            e.version.as_deref(),
            e.commit.as_deref()
        ),
        (Some(p.reference.as_str()), Some("v1"), Some(commit))
    );
    assert!(e.previous.is_some() && e.detail.is_some());

    let rv: Attest = json(
        &env,
        &[
            "revoke",
            "oci:./s:v2",
            "--key",
            "rel.key",
            "--reason",
            "bad build",
        ],
    );
    assert_eq!(
        rv.predicate_type,
        "https://github.com/sealpack/sealpack/revocation/v1"
    );

    let t: Trace = json(
        &env,
        &[
            "trace",
            "oci:./s:v1",
            "--key",
            "rel.pub",
            "--target",
            "stg",
            "--target",
            "prod",
        ],
    );
    assert_eq!(
        (
            t.reference.as_deref(),
            t.digest.as_str(),
            t.revision.as_deref(),
            t.version.as_deref()
        ),
        (
            Some(p.reference.as_str()),
            p.digest.as_str(),
            Some(commit),
            Some("v1")
        )
    );
    assert!(
        t.media_type.is_some()
            && t.created.is_none()
            && t.source.is_none()
            && t.warnings.is_empty()
    );
    let ev = t.evidence.unwrap();
    assert_eq!(ev.keys, ["rel.pub"]);
    assert_eq!(
        (
            ev.signatures.len(),
            ev.sboms.len(),
            ev.promotions.len(),
            ev.deployments.len()
        ),
        (1, 1, 1, 1)
    );
    assert!(
        ev.provenance.is_empty()
            && ev.revocations.is_empty()
            && ev.other.is_empty()
            && ev.ignored.is_empty()
    );
    let s0 = &ev.signatures[0];
    assert!(
        s0.verified
            && s0.keys == ["rel.pub"]
            && s0.key_ids == [k.key_id.clone()]
            && s0.claimed_key_ids.is_empty()
    );
    assert!(s0.unverified_reason.is_none() && s0.manifest.starts_with("sha256:") && s0.layer == 0);
    assert_eq!(
        (ev.sboms[0].format.as_str(), ev.sboms[0].check.verified),
        ("cyclonedx", true)
    );
    assert!(ev.sboms[0].components >= 1);
    let pr0 = &ev.promotions[0];
    assert_eq!(
        (pr0.from.as_str(), pr0.to.as_str()),
        ("staging", "production")
    );
    assert!(
        pr0.check.claimed_key_ids == [k.key_id.clone()]
            && !pr0.promoted_at.is_empty()
            && !pr0.promoted_by.is_empty()
    );
    let d0 = &ev.deployments[0];
    assert!(
        d0.check.verified
            && d0.environment == "staging"
            && !d0.deployed_at.is_empty()
            && !d0.deployed_by.is_empty()
            && !d0.target.is_empty()
    );
    let envs: Vec<(&str, bool)> = t
        .environments
        .iter()
        .map(|e| (e.env.as_str(), e.current))
        .collect();
    assert_eq!(envs, [("staging", true), ("production", true)]);
    let e0 = &t.environments[0];
    assert!(e0.target.ends_with("stg") && e0.first <= e0.last && e0.events.len() >= 2);
    assert!(e0.events.iter().all(|e| !e.time.is_empty()
        && !e.action.is_empty()
        && !e.status.is_empty()
        && !e.who.is_empty()
        && e.commit.as_deref() == Some(commit)));
    let t: Trace = json(&env, &["trace", "oci:./s:v2", "--key", "rel.pub"]);
    let rv0 = &t.evidence.unwrap().revocations[0];
    assert!(rv0.check.verified && rv0.reason == "bad build" && !rv0.revoked_at.is_empty());
    let tc: TraceCommit = json(
        &env,
        &["trace", commit, "--repo", "oci:./s", "--target", "prod"],
    );
    assert_eq!(
        (
            tc.commit.as_str(),
            tc.repository.as_deref(),
            tc.tags_total,
            tc.tags_examined,
            tc.capped
        ),
        (commit, Some("oci:./s"), 2, 2, false)
    );
    let found: Vec<&str> = tc.digests.iter().map(|d| d.digest.as_str()).collect();
    assert_eq!(found.len(), 2, "v1 and v2 were both pushed with the commit");
    assert!(found.contains(&p.digest.as_str()));
}

#[derive(Deserialize)]
struct Gc {
    repository: String,
    keep: usize,
    dry_run: bool,
    entries: Vec<GcEntry>,
    deleted_manifests: usize,
    blobs_removed: Option<GcSwept>,
}

#[derive(Deserialize)]
struct GcEntry {
    digest: String,
    tags: Vec<String>,
    action: String,
    reasons: Vec<String>,
    created: Option<String>,
    #[serde(default)]
    evidence: Vec<String>,
    #[serde(default)]
    children: Vec<String>,
}

#[derive(Deserialize)]
struct GcSwept {
    blobs: u64,
    bytes: u64,
    recent: u64,
}

#[test]
fn gc_prints_the_documented_shape() {
    let env = Env::new();
    let commit = "1111111111111111111111111111111111111111";
    for v in ["v1", "v2"] {
        std::fs::create_dir_all(env.path().join(v)).unwrap();
        std::fs::write(env.path().join(v).join("f"), v).unwrap();
        let created = if v == "v1" {
            "2026-01-01T00:00:00Z"
        } else {
            "2026-01-02T00:00:00Z"
        };
        env.sp(&[
            "push",
            v,
            "--to",
            &format!("oci:./s:{v}"),
            "--commit",
            commit,
            "--created",
            created,
        ])
        .ok();
    }
    let plan: Gc = json(&env, &["gc", "oci:./s", "--keep", "1", "--dry-run"]);
    assert!(plan.dry_run && plan.keep == 1 && plan.repository == "oci:./s");
    assert_eq!(
        (plan.deleted_manifests, plan.blobs_removed.is_none()),
        (0, true)
    );
    let actions: Vec<(&str, &str)> = plan
        .entries
        .iter()
        .map(|e| (e.tags[0].as_str(), e.action.as_str()))
        .collect();
    assert_eq!(actions, [("v2", "keep"), ("v1", "delete")]);
    let e = &plan.entries[1];
    assert!(e.digest.starts_with("sha256:") && e.reasons.len() == 1);
    assert_eq!(e.created.as_deref(), Some("2026-01-01T00:00:00Z"));
    assert!(e.evidence.is_empty() && e.children.is_empty());
    let done: Gc = json(&env, &["gc", "oci:./s", "--keep", "1", "--grace", "0s"]);
    assert!(!done.dry_run && done.deleted_manifests == 1);
    let swept = done.blobs_removed.unwrap();
    assert!(
        swept.blobs == 2 && swept.bytes > 0 && swept.recent == 0,
        "v1's manifest and layer"
    );
}
