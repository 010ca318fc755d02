use super::*;
use crate::keys::{KeyType, PrivateKey};
use serde_json::json;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const BUILDER: &str = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main";
const PROV: &str = "https://slsa.dev/provenance/v1";
const SBOM: &str = "https://cyclonedx.org/bom";
const VULN: &str = "https://cosign.sigstore.dev/attestation/vuln/v1";
fn t(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap()
}

/// A temporary folder with key files `NAME.pub` for each name, and their key ids.
struct Env {
    dir: tempfile::TempDir,
    ids: BTreeMap<String, String>,
}

impl Env {
    fn new(names: &[&str]) -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("keys")).unwrap();
        let mut ids = BTreeMap::new();
        for n in names {
            let k = PrivateKey::generate(KeyType::EcdsaP256).unwrap();
            std::fs::write(
                dir.path().join(format!("keys/{n}.pub")),
                k.public_key().to_pem(),
            )
            .unwrap();
            ids.insert(n.to_string(), k.key_id().to_string());
        }
        Env { dir, ids }
    }

    fn id(&self, name: &str) -> String {
        self.ids[name].clone()
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("policy.toml")
    }

    fn load(&self, text: &str) -> Result<Policy, PolicyError> {
        std::fs::write(self.path(), text).unwrap();
        Policy::load(&self.path())
    }
}

/// The SPEC §6 example with three release keys (`r1`, `r2`, `r3`), a builder/scanner `ci`, and an `old` release key
/// that expired.
const POLICY: &str = r#"
version = 1

[defaults]
deny_unmatched = true

[[keys]]
id = "r1"
path = "keys/r1.pub"
roles = ["release"]
not_after = "2027-12-31T00:00:00Z"

[[keys]]
id = "r2"
path = "keys/r2.pub"
roles = ["release"]

[[keys]]
id = "r3"
path = "keys/r3.pub"
roles = ["release"]

[[keys]]
id = "r3-again"
path = "keys/r3.pub"
roles = ["release"]

[[keys]]
id = "old"
path = "keys/old.pub"
roles = ["release"]
not_before = "2020-01-01T00:00:00Z"
not_after = "2026-01-01T00:00:00Z"

[[keys]]
id = "ci"
path = "keys/ci.pub"
roles = ["builder", "scanner"]

[[keys]]
id = "other"
path = "keys/other.pub"
roles = ["tester"]

[[rules]]
scope = "registry.example.com/team/*"
signatures = { threshold = 2, roles = ["release"] }

[[rules.attestations]]
type = "https://slsa.dev/provenance/v1"
signed_by = ["builder"]
builder_id = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
source = "git+https://github.com/acme/app"
ref = "refs/tags/v*"
require_commit = true

[[rules.attestations]]
type = "https://cyclonedx.org/bom"
signed_by = ["builder"]

[[rules.attestations]]
type = "https://cosign.sigstore.dev/attestation/vuln/v1"
signed_by = ["scanner"]
max_age = "7d"
max_severity = "medium"
"#;

fn env() -> (Env, Policy) {
    let e = Env::new(&["r1", "r2", "r3", "old", "ci", "other"]);
    let p = e.load(POLICY).unwrap();
    (e, p)
}

fn provenance(builder: &str, uri: &str, commit: Option<&str>) -> Value {
    let mut dep = json!({"uri": uri});
    if let Some(c) = commit {
        dep["digest"] = json!({"gitCommit": c});
    }
    json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "app", "digest": {"sha256": "00".repeat(32)}}],
        "predicateType": PROV,
        "predicate": {
            "buildDefinition": {"buildType": "https://example.com/build", "externalParameters": {},
                                "resolvedDependencies": [dep]},
            "runDetails": {"builder": {"id": builder}}
        }
    })
}

fn good_provenance() -> Value {
    provenance(
        BUILDER,
        "git+https://github.com/acme/app@refs/tags/v1.2.3",
        Some(COMMIT),
    )
}

fn scan(finished: &str, result: Value) -> Value {
    json!({
        "predicateType": VULN,
        "predicate": {
            "invocation": {"parameters": null, "uri": "", "event_id": "", "builder.id": ""},
            "scanner": {"uri": "pkg:github/aquasecurity/trivy", "version": "0.50.0",
                        "db": {"uri": "", "version": ""}, "result": result},
            "metadata": {"scanStartedOn": finished, "scanFinishedOn": finished}
        }
    })
}

fn trivy(severities: &[&str]) -> Value {
    let vulns: Vec<Value> = severities
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"VulnerabilityID": format!("CVE-2026-{i}"), "Severity": s}))
        .collect();
    json!({"SchemaVersion": 2, "Results": [{"Target": "app", "Vulnerabilities": vulns}, {"Target": "os"}]})
}

fn good_scan() -> Value {
    scan("2026-05-30T12:00:00Z", trivy(&["LOW", "MEDIUM"]))
}

fn sbom() -> Value {
    json!({"predicateType": SBOM, "predicate": {"bomFormat": "CycloneDX"}})
}

/// Facts that satisfy the policy: r1 and r2 signed, ci signed provenance, SBOM and scan.
fn good(e: &Env) -> Facts {
    Facts {
        digest: Digest::of(b"app"),
        signer_key_ids: vec![e.id("r1"), e.id("r2")],
        attestations: vec![
            (vec![e.id("ci")], good_provenance()),
            (vec![e.id("ci")], sbom()),
            (vec![e.id("ci")], good_scan()),
        ],
        revoked_by: vec![],
        now: t("2026-06-01T12:00:00Z"),
    }
}

const REPO: &str = "registry.example.com/team/app";

fn unmet(d: &Decision) -> Vec<&str> {
    d.unmet().map(|r| r.rule.as_str()).collect()
}

#[test]
fn the_good_case_is_allowed_and_lists_every_rule() {
    let (e, p) = env();
    let d = decide(&p, REPO, &good(&e));
    assert!(d.allowed, "{:#?}", d.results);
    assert_eq!(d.rule.as_deref(), Some("registry.example.com/team/*"));
    let rules: Vec<&str> = d.results.iter().map(|r| r.rule.as_str()).collect();
    assert_eq!(
        rules,
        [
            "revocation",
            "signatures.threshold",
            "attestations[https://slsa.dev/provenance/v1]",
            "attestations[https://slsa.dev/provenance/v1].signed_by",
            "attestations[https://slsa.dev/provenance/v1].builder_id",
            "attestations[https://slsa.dev/provenance/v1].source",
            "attestations[https://slsa.dev/provenance/v1].ref",
            "attestations[https://slsa.dev/provenance/v1].require_commit",
            "attestations[https://cyclonedx.org/bom]",
            "attestations[https://cyclonedx.org/bom].signed_by",
            "attestations[https://cosign.sigstore.dev/attestation/vuln/v1]",
            "attestations[https://cosign.sigstore.dev/attestation/vuln/v1].signed_by",
            "attestations[https://cosign.sigstore.dev/attestation/vuln/v1].max_age",
            "attestations[https://cosign.sigstore.dev/attestation/vuln/v1].max_severity",
        ]
    );
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["allowed"], true);
    assert!(json["results"][1]["found"].as_str().unwrap().contains("r1"));
}

#[test]
fn threshold_counts_distinct_valid_keys_with_the_role() {
    let (e, p) = env();
    // (signers, allowed)
    let cases: Vec<(Vec<String>, bool, &str)> = vec![
        (vec![e.id("r1")], false, "one signature"),
        (vec![e.id("r1"), e.id("r1")], false, "same key twice"),
        (
            vec![e.id("r1"), e.id("r1"), e.id("r1")],
            false,
            "same key thrice",
        ),
        (vec![e.id("r1"), e.id("r2")], true, "two distinct"),
        (
            vec![e.id("r1"), e.id("r2"), e.id("r3")],
            true,
            "three distinct",
        ),
        (
            vec![e.id("r1"), e.id("ci")],
            false,
            "second key has the wrong role",
        ),
        (vec![e.id("r1"), e.id("old")], false, "second key expired"),
        (
            vec![e.id("r1"), "ab".repeat(32)],
            false,
            "second key unknown",
        ),
        (vec![], false, "no signatures"),
    ];
    for (signers, allowed, what) in cases {
        let mut f = good(&e);
        f.signer_key_ids = signers;
        let d = decide(&p, REPO, &f);
        assert_eq!(d.allowed, allowed, "{what}: {:#?}", d.results);
        if !allowed {
            assert_eq!(unmet(&d), ["signatures.threshold"], "{what}");
        }
    }
}

#[test]
fn a_key_listed_twice_under_two_ids_counts_once() {
    let (e, p) = env();
    assert_eq!(p.keys.iter().filter(|k| k.key_id == e.id("r3")).count(), 2);
    assert_eq!(p.trusted_keys().len(), 6);
    let mut f = good(&e);
    f.signer_key_ids = vec![e.id("r3"), e.id("r3")];
    let d = decide(&p, REPO, &f);
    assert!(!d.allowed);
    let r = d.unmet().next().unwrap();
    assert!(r.found.starts_with("1 (r3)"), "{}", r.found);
    assert!(r.expected.contains("at least 2 distinct"), "{}", r.expected);
}

#[test]
fn a_key_counts_only_inside_its_window() {
    let (e, p) = env();
    let mut f = good(&e);
    // r1's not_after is 2027-12-31: at that instant it no longer counts
    f.now = t("2027-12-31T00:00:00Z");
    f.attestations[2] = (vec![e.id("ci")], scan("2027-12-30T00:00:00Z", trivy(&[])));
    let d = decide(&p, REPO, &f);
    assert_eq!(unmet(&d), ["signatures.threshold"]);
    assert!(
        d.results[1]
            .found
            .contains("r1 expired at 2027-12-31T00:00:00Z"),
        "{}",
        d.results[1].found
    );
    // one second earlier it does
    f.now = t("2027-12-30T23:59:59Z");
    assert!(decide(&p, REPO, &f).allowed);
    // before not_before
    f.now = t("2019-06-01T00:00:00Z");
    f.signer_key_ids = vec![e.id("old"), e.id("r2")];
    f.attestations[2] = (vec![e.id("ci")], scan("2019-05-31T00:00:00Z", trivy(&[])));
    let d = decide(&p, REPO, &f);
    assert_eq!(unmet(&d), ["signatures.threshold"]);
    assert!(d.results[1].found.contains("old not valid before"));
}

#[test]
fn provenance_rules_each_flip_the_decision() {
    let (e, p) = env();
    let pr = "attestations[https://slsa.dev/provenance/v1]";
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            provenance(
                "https://evil.example/builder",
                "git+https://github.com/acme/app@refs/tags/v1",
                Some(COMMIT),
            ),
            "builder_id",
            "evil.example",
        ),
        (
            provenance(
                BUILDER,
                "git+https://github.com/acme/fork@refs/tags/v1",
                Some(COMMIT),
            ),
            "source",
            "acme/fork",
        ),
        (
            provenance(
                BUILDER,
                "git+https://github.com/acme/app.git@refs/tags/v1",
                Some(COMMIT),
            ),
            "source",
            "app.git",
        ),
        (
            provenance(
                BUILDER,
                "git+https://github.com/acme/app@refs/heads/main",
                Some(COMMIT),
            ),
            "ref",
            "refs/heads/main",
        ),
        (
            provenance(BUILDER, "git+https://github.com/acme/app", Some(COMMIT)),
            "ref",
            "none",
        ),
        (
            provenance(
                BUILDER,
                "git+https://github.com/acme/app@refs/tags/v1/x",
                Some(COMMIT),
            ),
            "ref",
            "refs/tags/v1/x",
        ),
        (
            provenance(
                BUILDER,
                "git+https://github.com/acme/app@refs/tags/v1",
                None,
            ),
            "require_commit",
            "no valid",
        ),
        (
            provenance(
                BUILDER,
                "git+https://github.com/acme/app@refs/tags/v1",
                Some("0123abc"),
            ),
            "require_commit",
            "no valid",
        ),
    ];
    for (statement, rule, found) in cases {
        let mut f = good(&e);
        f.attestations[0].1 = statement;
        let d = decide(&p, REPO, &f);
        assert!(!d.allowed, "{rule}");
        let name = format!("{pr}.{rule}");
        assert_eq!(unmet(&d), [name.as_str()], "{rule}");
        let r = d.unmet().next().unwrap();
        assert!(r.found.contains(found), "{rule}: {}", r.found);
    }
}

#[test]
fn all_unmet_rules_are_listed() {
    let (e, p) = env();
    let mut f = good(&e);
    f.signer_key_ids = vec![e.id("r1")];
    f.attestations[0].1 = provenance(
        "https://x",
        "git+https://github.com/x/y@refs/heads/dev",
        None,
    );
    f.attestations.remove(1);
    let d = decide(&p, REPO, &f);
    let pr = "attestations[https://slsa.dev/provenance/v1]";
    assert_eq!(
        unmet(&d),
        [
            "signatures.threshold".to_string(),
            format!("{pr}.builder_id"),
            format!("{pr}.source"),
            format!("{pr}.ref"),
            format!("{pr}.require_commit"),
            "attestations[https://cyclonedx.org/bom]".to_string(),
        ]
    );
    assert_eq!(d.reasons().len(), 6);
    assert!(
        d.reasons()[5]
            .contains("expected a verified https://cyclonedx.org/bom attestation, found none")
    );
}

#[test]
fn an_attestation_signed_by_a_key_without_the_role_does_not_count() {
    let (e, p) = env();
    for (signers, what) in [
        (vec![e.id("r1")], "release key"),
        (vec![e.id("other")], "tester key"),
        (vec!["cd".repeat(32)], "unknown key"),
    ] {
        let mut f = good(&e);
        f.attestations[0].0 = signers;
        let d = decide(&p, REPO, &f);
        assert_eq!(
            unmet(&d),
            ["attestations[https://slsa.dev/provenance/v1].signed_by"],
            "{what}"
        );
    }
    // ci signed it as well as a release key: counts
    let mut f = good(&e);
    f.attestations[0].0 = vec![e.id("r1"), e.id("ci")];
    assert!(decide(&p, REPO, &f).allowed);
}

#[test]
fn one_attestation_must_meet_every_rule() {
    let (e, p) = env();
    let mut f = good(&e);
    // one good provenance signed by the wrong key, one signed by ci with the wrong builder: no mixing
    f.attestations[0] = (vec![e.id("r1")], good_provenance());
    f.attestations.push((
        vec![e.id("ci")],
        provenance(
            "https://x",
            "git+https://github.com/acme/app@refs/tags/v1",
            Some(COMMIT),
        ),
    ));
    let d = decide(&p, REPO, &f);
    assert!(!d.allowed);
    assert_eq!(d.unmet().count(), 1);
    assert!(
        d.results[2]
            .found
            .contains("2 verified, none meets every rule"),
        "{}",
        d.results[2].found
    );
    // adding a good one allows
    f.attestations.push((vec![e.id("ci")], good_provenance()));
    let d = decide(&p, REPO, &f);
    assert!(d.allowed, "{:#?}", d.results);
    assert!(d.results[2].found.contains("number 3 meets every rule"));
}

#[test]
fn scan_age_and_severity() {
    let (e, p) = env();
    let vr = "attestations[https://cosign.sigstore.dev/attestation/vuln/v1]";
    let grype = |s: &[&str]| json!({"matches": s.iter().map(|s| json!({"vulnerability": {"id": "GHSA-1", "severity": s}})).collect::<Vec<_>>()});
    let plain = |s: &[&str]| json!({"vulnerabilities": s.iter().map(|s| json!({"id": "X-1", "severity": s})).collect::<Vec<_>>()});
    // (scan, unmet rule or None)
    let cases: Vec<(Value, Option<&str>)> = vec![
        (good_scan(), None),
        (scan("2026-06-01T11:59:00Z", trivy(&[])), None),
        (scan("2026-06-01T12:04:00Z", trivy(&[])), None),
        (scan("2026-05-25T12:00:00Z", trivy(&[])), None), // exactly 7 days
        (scan("2026-05-25T11:59:59Z", trivy(&[])), Some("max_age")),
        (
            scan("2026-01-01T00:00:00Z", trivy(&["LOW"])),
            Some("max_age"),
        ),
        (scan("2026-06-02T00:00:00Z", trivy(&[])), Some("max_age")), // future
        (scan("yesterday", trivy(&[])), Some("max_age")),
        (
            scan("2026-05-31T00:00:00Z", trivy(&["LOW", "HIGH"])),
            Some("max_severity"),
        ),
        (
            scan("2026-05-31T00:00:00Z", trivy(&["critical"])),
            Some("max_severity"),
        ),
        (
            scan("2026-05-31T00:00:00Z", trivy(&["UNKNOWN"])),
            Some("max_severity"),
        ),
        (
            scan("2026-05-31T00:00:00Z", trivy(&["negligible", "moderate"])),
            None,
        ),
        (scan("2026-05-31T00:00:00Z", grype(&["Medium"])), None),
        (
            scan("2026-05-31T00:00:00Z", grype(&["High"])),
            Some("max_severity"),
        ),
        (scan("2026-05-31T00:00:00Z", plain(&["low"])), None),
        (
            scan("2026-05-31T00:00:00Z", plain(&["critical"])),
            Some("max_severity"),
        ),
        (
            scan("2026-05-31T00:00:00Z", json!({"something": "else"})),
            Some("max_severity"),
        ),
        (scan("2026-05-31T00:00:00Z", json!({"Results": []})), None),
    ];
    for (i, (statement, rule)) in cases.into_iter().enumerate() {
        let mut f = good(&e);
        f.attestations[2].1 = statement;
        let d = decide(&p, REPO, &f);
        match rule {
            None => assert!(d.allowed, "case {i}: {:#?}", d.results),
            Some(rule) => assert_eq!(unmet(&d), [format!("{vr}.{rule}")], "case {i}"),
        }
    }
    // the scan must be signed by a scanner
    let mut f = good(&e);
    f.attestations[2].0 = vec![e.id("r1")];
    assert_eq!(unmet(&decide(&p, REPO, &f)), [format!("{vr}.signed_by")]);
}

#[test]
fn severity_found_names_the_highest() {
    let (e, p) = env();
    let mut f = good(&e);
    f.attestations[2].1 = scan(
        "2026-05-31T00:00:00Z",
        trivy(&["LOW", "HIGH", "HIGH", "UNKNOWN"]),
    );
    let d = decide(&p, REPO, &f);
    let r = d.unmet().next().unwrap();
    assert_eq!(r.expected, "no finding above medium");
    assert!(
        r.found
            .starts_with("highest critical (1 finding(s), e.g. CVE-2026-3, 1 of unknown"),
        "{}",
        r.found
    );
}

#[test]
fn revocation_denies_first_even_when_everything_else_holds() {
    let (e, p) = env();
    let mut f = good(&e);
    f.revoked_by = vec![(e.id("other"), "CVE-2026-1234 in the base image".into())];
    let d = decide(&p, REPO, &f);
    assert!(!d.allowed);
    assert_eq!(unmet(&d), ["revocation"]);
    assert_eq!(
        d.results[0].found,
        "revoked by other: CVE-2026-1234 in the base image"
    );
    // also where no rule applies and unmatched references are allowed
    let e2 = Env::new(&["k"]);
    let p2 = e2
        .load("version = 1\n[defaults]\ndeny_unmatched = false\n[[keys]]\nid = \"k\"\npath = \"keys/k.pub\"\n")
        .unwrap();
    let mut f2 = Facts {
        signer_key_ids: vec![],
        attestations: vec![],
        ..good(&e)
    };
    assert!(decide(&p2, "x.io/y", &f2).allowed);
    f2.revoked_by = vec![(e2.id("k"), "bad".into())];
    assert_eq!(unmet(&decide(&p2, "x.io/y", &f2)), ["revocation"]);
}

#[test]
fn revocations_by_untrusted_or_expired_keys_are_ignored() {
    let (e, p) = env();
    let mut f = good(&e);
    f.revoked_by = vec![
        ("ef".repeat(32), "spam".into()),
        (e.id("old"), "too late".into()),
    ];
    let d = decide(&p, REPO, &f);
    assert!(d.allowed, "{:#?}", d.results);
    assert!(d.results[0].found.contains("ignored"));
}

#[test]
fn unmatched_references_are_denied_by_default() {
    let (e, p) = env();
    for name in [
        "registry.example.com/other/app",
        "registry.example.com/team/app/sub",
        "oci:/tmp/layout",
    ] {
        let d = decide(&p, name, &good(&e));
        assert!(!d.allowed, "{name}");
        assert_eq!(d.rule, None);
        assert_eq!(unmet(&d), ["scope"]);
    }
    // deny_unmatched defaults to true when [defaults] is absent
    let p = e.load("version = 1\n").unwrap();
    assert!(p.deny_unmatched);
    assert!(!decide(&p, REPO, &good(&e)).allowed);
}

#[test]
fn globs() {
    // (pattern, text, matches)
    let cases = [
        (
            "registry.example.com/team/*",
            "registry.example.com/team/app",
            true,
        ),
        (
            "registry.example.com/team/*",
            "registry.example.com/team/a/b",
            false,
        ),
        (
            "registry.example.com/team/**",
            "registry.example.com/team/a/b",
            true,
        ),
        (
            "registry.example.com/team/*",
            "registry.example.com/team/",
            true,
        ),
        (
            "registry.example.com/team/*",
            "registry.example.com/teams/app",
            false,
        ),
        ("*/team/app", "localhost:5000/team/app", true),
        ("*/team/app", "a/b/team/app", false),
        ("host/app-?", "host/app-1", true),
        ("host/app-?", "host/app-12", false),
        ("host/app-?", "host/app-/", false),
        ("host/*-*", "host/a-b-c", true),
        ("refs/tags/v*", "refs/tags/v1.2.3", true),
        ("refs/tags/v*", "refs/tags/v1/x", false),
        ("refs/tags/v*", "refs/heads/v1", false),
        ("refs/**", "refs/heads/a/b", true),
        ("a**b", "a/x/b", true),
        ("exact/name", "exact/name", true),
        ("exact/name", "exact/names", false),
    ];
    for (pattern, text, want) in cases {
        assert_eq!(
            Glob::new(pattern).unwrap().matches(text),
            want,
            "{pattern} {text}"
        );
    }
    for bad in ["", "a/***", "a/[ab]", "a/{x,y}", "a\\*"] {
        assert!(Glob::new(bad).is_err(), "{bad:?}");
    }
    // oci:* covers every layout path, other oci: scopes follow the usual rules
    let oci = Scope(Glob::new("oci:*").unwrap());
    assert!(oci.matches("oci:/var/lib/layouts/app"));
    assert!(oci.matches("oci:relative/path"));
    assert!(!oci.matches("registry.example.com/oci"));
    let oci_dir = Scope(Glob::new("oci:/srv/*").unwrap());
    assert!(oci_dir.matches("oci:/srv/app"));
    assert!(!oci_dir.matches("oci:/srv/app/sub"));
}

fn scopes_policy(scopes: &[&str]) -> String {
    let mut s = String::from("version = 1\n");
    for sc in scopes {
        s.push_str(&format!("[[rules]]\nscope = \"{sc}\"\n"));
    }
    s
}

#[test]
fn the_most_specific_scope_wins() {
    let e = Env::new(&[]);
    // (scopes in file order, name, winner)
    let cases: &[(&[&str], &str, Option<&str>)] = &[
        (
            &["r.io/**", "r.io/team/*"],
            "r.io/team/app",
            Some("r.io/team/*"),
        ),
        (
            &["r.io/team/*", "r.io/**"],
            "r.io/team/app",
            Some("r.io/team/*"),
        ),
        (
            &["r.io/team/*", "r.io/team/app"],
            "r.io/team/app",
            Some("r.io/team/app"),
        ),
        (
            &["r.io/team/app*", "r.io/team/*"],
            "r.io/team/app-x",
            Some("r.io/team/app*"),
        ),
        (
            &["*/team/app", "r.io/*/app"],
            "r.io/team/app",
            Some("r.io/*/app"),
        ),
        (
            &["r.io/team/*", "r.io/team/?*"],
            "r.io/team/app",
            Some("r.io/team/*"),
        ),
        (
            &["r.io/team/a*", "r.io/team/a?*"],
            "r.io/team/app",
            Some("r.io/team/a*"),
        ),
        // a real tie: same prefix, same wildcard count, same literal count; the first in the file wins
        (
            &["r.io/team/*p", "r.io/team/a*"],
            "r.io/team/app",
            Some("r.io/team/a*"),
        ),
        (
            &["r.io/team/x*", "r.io/team/*x"],
            "r.io/team/xx",
            Some("r.io/team/x*"),
        ),
        (
            &["r.io/team/*x", "r.io/team/x*"],
            "r.io/team/xx",
            Some("r.io/team/x*"),
        ),
        (
            &["r.io/t/a*b", "r.io/t/a*c"],
            "r.io/t/ab",
            Some("r.io/t/a*b"),
        ),
        (&["oci:*", "r.io/**"], "oci:/srv/app", Some("oci:*")),
        (&["oci:*", "oci:/srv/*"], "oci:/srv/app", Some("oci:/srv/*")),
        (&["r.io/team/*"], "other.io/team/app", None),
    ];
    for (scopes, name, want) in cases {
        let p = e.load(&scopes_policy(scopes)).unwrap();
        assert_eq!(
            p.rule_for(name).map(|r| r.scope.as_str()),
            *want,
            "{scopes:?} {name}"
        );
    }
}

#[test]
fn a_rule_with_no_requirements_allows_its_scope() {
    let e = Env::new(&[]);
    let p = e.load(&scopes_policy(&["dev.io/**"])).unwrap();
    let d = decide(&p, "dev.io/x/y", &good(&Env::new(&["r1", "r2", "ci"])));
    assert!(d.allowed);
}

#[test]
fn the_spec_example_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/policy/example.toml");
    let p = Policy::load(&path).unwrap();
    assert!(p.deny_unmatched);
    assert_eq!(p.keys.len(), 2);
    assert_eq!(p.keys[0].id, "release-1");
    assert_eq!(p.keys[0].not_after, Some(t("2027-12-31T00:00:00Z")));
    assert_eq!(p.keys[1].roles, ["builder", "scanner"]);
    assert_ne!(p.keys[0].key_id, p.keys[1].key_id);
    let r = p.rule_for("registry.example.com/team/app").unwrap();
    assert_eq!(r.signatures.as_ref().unwrap().threshold, 2);
    assert_eq!(r.attestations.len(), 3);
    let prov = &r.attestations[0];
    assert_eq!(prov.source.as_deref(), Some("https://github.com/acme/app"));
    assert_eq!(prov.ref_glob.as_ref().unwrap().as_str(), "refs/tags/v*");
    assert!(prov.require_commit);
    assert_eq!(r.attestations[2].max_age, Some(time::Duration::days(7)));
    assert_eq!(r.attestations[2].max_severity, Some(Severity::Medium));
}

#[test]
fn durations() {
    for (s, secs) in [
        ("7d", 604_800),
        ("24h", 86_400),
        ("30m", 1_800),
        ("45s", 45),
        ("1d", 86_400),
    ] {
        assert_eq!(MaxAge::parse(s).unwrap().0.whole_seconds(), secs, "{s}");
    }
    for bad in [
        "",
        "7",
        "d",
        "0d",
        "-1d",
        "7w",
        "7 d",
        "1.5h",
        "7D",
        "99999999999999999d",
    ] {
        assert!(MaxAge::parse(bad).is_err(), "{bad:?}");
    }
    assert_eq!(human(time::Duration::seconds(90_061)), "1d 1h 1m 1s");
}

const KEYS: &str =
    "version = 1\n[[keys]]\nid = \"ci\"\npath = \"keys/ci.pub\"\nroles = [\"builder\"]\n";

#[test]
fn bad_policy_files_name_file_and_line() {
    let e = Env::new(&["ci"]);
    // (text, line, message part)
    let cases: Vec<(String, Option<usize>, &str)> = vec![
        (
            "version = 1\nverison = 2\n".into(),
            Some(2),
            "unknown field",
        ),
        (format!("{KEYS}rols = [\"x\"]\n"), Some(6), "unknown field"),
        (
            format!(
                "{KEYS}[[rules]]\nscope = \"r.io/*\"\nsignature = {{ threshold = 1, roles = [\"builder\"] }}\n"
            ),
            Some(8),
            "unknown field",
        ),
        (
            format!(
                "{KEYS}[[rules]]\nscope = \"r.io/*\"\n[[rules.attestations]]\ntype = \"x\"\nsigned_by = [\"builder\"]\nbuilderid = \"y\"\n"
            ),
            Some(11),
            "unknown field",
        ),
        (
            "version = 2\n".into(),
            Some(1),
            "unsupported policy version 2",
        ),
        ("\n\nversion = \"1\"\n".into(), Some(3), "invalid type"),
        (
            "[defaults]\ndeny_unmatched = true\n".into(),
            Some(1),
            "missing field `version`",
        ),
        (
            "version = 1\n[[keys]]\nid = \"a\"\n\npath = \"keys/missing.pub\"\n".into(),
            Some(5),
            "missing.pub",
        ),
        (
            format!(
                "{KEYS}[[rules]]\nscope = \"r.io/*\"\n[[rules.attestations]]\ntype = \"vuln\"\nmax_age = \"7 days\"\n"
            ),
            Some(10),
            "bad duration",
        ),
        (
            format!(
                "{KEYS}[[rules]]\nscope = \"r.io/*\"\n[[rules.attestations]]\ntype = \"vuln\"\nmax_severity = \"severe\"\n"
            ),
            Some(10),
            "severe",
        ),
        (
            format!("{KEYS}[[rules]]\nscope = \"r.io/[ab]\"\n"),
            Some(7),
            "reserved",
        ),
        (
            format!("{KEYS}[[rules]]\nscope = \"r.io/***\"\n"),
            Some(7),
            "bad glob",
        ),
        (
            format!("{KEYS}[[rules]]\nscope = \"r.io\"\n"),
            Some(7),
            "neither",
        ),
        (
            format!("{KEYS}[[rules]]\nscope = \"R.io/app\"\n"),
            Some(7),
            "upper-case",
        ),
        (
            format!(
                "{KEYS}[[rules]]\nscope = \"r.io/*\"\n[[rules.attestations]]\ntype = \"slsaprovenance\"\nref = \"refs/{{a,b}}\"\n"
            ),
            Some(10),
            "reserved",
        ),
        (
            format!("{KEYS}[[rules]]\nscope = \"r.io/*\"\n[[rules]]\nscope = \"r.io/*\"\n"),
            Some(9),
            "two rules",
        ),
        (
            format!(
                "{KEYS}[[rules]]\nscope = \"r.io/*\"\nsignatures = {{ threshold = 0, roles = [\"builder\"] }}\n"
            ),
            Some(8),
            "at least 1",
        ),
        (
            format!(
                "{KEYS}[[rules]]\nscope = \"r.io/*\"\nsignatures = {{ threshold = 1, roles = [\"relase\"] }}\n"
            ),
            Some(8),
            "no key has the role \"relase\"",
        ),
        (
            format!(
                "{KEYS}[[rules]]\nscope = \"r.io/*\"\n[[rules.attestations]]\ntype = \"cyclonedx\"\nsigned_by = [\"builder\"]\nbuilder_id = \"x\"\n"
            ),
            Some(8),
            "apply to https://slsa.dev/provenance/v1",
        ),
        (
            format!(
                "{KEYS}[[rules]]\nscope = \"r.io/*\"\n[[rules.attestations]]\ntype = \"cyclonedx\"\nmax_age = \"1d\"\n"
            ),
            Some(8),
            "apply to https://cosign",
        ),
        (
            format!("{KEYS}[[keys]]\nid = \"ci\"\npath = \"keys/ci.pub\"\n"),
            Some(7),
            "used twice",
        ),
        (
            format!("{KEYS}not_after = \"2027-13-01T00:00:00Z\"\n"),
            Some(6),
            "RFC 3339",
        ),
        (
            format!(
                "{KEYS}not_before = \"2027-01-01T00:00:00Z\"\nnot_after = \"2026-01-01T00:00:00Z\"\n"
            ),
            Some(7),
            "not after not_before",
        ),
        ("version = 1\n[[rules]\n".into(), Some(2), ""),
    ];
    for (text, line, part) in cases {
        let err = e.load(&text).unwrap_err();
        assert_eq!(err.path(), e.path(), "{text}");
        assert_eq!(err.line(), line, "{text}\n{err}");
        let msg = err.to_string();
        assert!(msg.contains(part), "{text}\n{msg}");
        let prefix = match line {
            Some(l) => format!("{}:{l}: ", e.path().display()),
            None => format!("{}: ", e.path().display()),
        };
        assert!(msg.starts_with(&prefix), "{msg}");
    }
    let missing = Policy::load(&e.dir.path().join("nope.toml")).unwrap_err();
    assert!(matches!(missing, PolicyError::Io { .. }));
    assert!(missing.to_string().contains("nope.toml"));
}

/// `builder_id` is a glob: a release workflow run at any tag can be pinned; without wildcards it is exact.
#[test]
fn builder_id_is_a_glob() {
    let (e, _) = env();
    let glob = POLICY.replace(
        "release.yml@refs/heads/main\"",
        "release.yml@refs/tags/v*\"",
    );
    let p = e.load(&glob).unwrap();
    let mut f = good(&e);
    let tagged = "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.4.2";
    f.attestations[0].1 = provenance(
        tagged,
        "git+https://github.com/acme/app@refs/tags/v1.4.2",
        Some(COMMIT),
    );
    assert!(decide(&p, REPO, &f).allowed);
    // `*` stops at `/`: another workflow file or a branch does not match
    for other in [
        "https://github.com/acme/app/.github/workflows/other.yml@refs/tags/v1",
        "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main",
        "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1/evil",
    ] {
        f.attestations[0].1 = provenance(
            other,
            "git+https://github.com/acme/app@refs/tags/v1",
            Some(COMMIT),
        );
        assert_eq!(
            unmet(&decide(&p, REPO, &f)),
            ["attestations[https://slsa.dev/provenance/v1].builder_id".to_string()],
            "{other}"
        );
    }
    // the exact form still needs equality
    let (_, exact) = env();
    f.attestations[0].1 = provenance(
        tagged,
        "git+https://github.com/acme/app@refs/tags/v1.4.2",
        Some(COMMIT),
    );
    assert!(!decide(&exact, REPO, &f).allowed);
}
