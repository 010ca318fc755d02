//! `verify --policy` through the binary on a real registry: thresholds over distinct keys, key validity, roles,
//! provenance rules, scan freshness and severity, revocation. Each policy is written by the test.

mod common;

use std::fs;

use common::cli::TestEnv as Env;
use common::registry::{Flavor, Registry};

fn policy(env: &Env, name: &str, keys: &str, rules: &str) -> String {
    let text = format!("version = 1\n\n[defaults]\ndeny_unmatched = true\n\n{keys}\n{rules}\n");
    fs::write(env.path().join(name), text).unwrap();
    name.to_string()
}

fn key(id: &str, roles: &[&str], extra: &str) -> String {
    let roles: Vec<String> = roles.iter().map(|r| format!("{r:?}")).collect();
    format!(
        "[[keys]]\nid = \"{id}\"\npath = \"{id}.pub\"\nroles = [{}]\n{extra}\n",
        roles.join(", ")
    )
}

#[test]
fn thresholds_validity_roles_provenance_scans_and_revocation() {
    let reg = Registry::start(Flavor::Plain);
    let env = Env::new();
    for k in ["r1", "r2", "r3", "ci", "scanner", "sec"] {
        env.keygen(k, "ecdsa-p256");
    }
    fs::write(env.path().join("app.txt"), "release").unwrap();
    let target = format!("{}/team/app:v1", reg.host);
    let pinned = env
        .sp(&["--plain-http", "push", "app.txt", "--to", &target])
        .ok();
    let verify = |p: &str| env.sp(&["--plain-http", "verify", &target, "--policy", p]);
    let release_keys = format!(
        "{}{}{}",
        key("r1", &["release"], ""),
        key("r2", &["release"], ""),
        key("r3", &["release"], "")
    );
    let two_of_three =
        "[[rules]]\nscope = \"*/team/*\"\nsignatures = { threshold = 2, roles = [\"release\"] }\n";

    // 2-of-3: one signature is not enough; the same key signing twice is still one
    env.sp(&["--plain-http", "sign", &target, "--key", "r1.key"])
        .ok();
    env.sp(&[
        "--plain-http",
        "sign",
        &target,
        "--key",
        "r1.key",
        "-a",
        "again=yes",
    ])
    .ok();
    let p = policy(&env, "p1.toml", &release_keys, two_of_three);
    let r = verify(&p);
    r.expect_code(10);
    assert!(r.stderr.contains("signatures"), "{}", r.stderr);
    // the same key listed twice under two ids does not make two
    let dup = format!(
        "{release_keys}[[keys]]\nid = \"r1-again\"\npath = \"r1.pub\"\nroles = [\"release\"]\n"
    );
    verify(&policy(&env, "p1b.toml", &dup, two_of_three)).expect_code(10);
    // two distinct keys: allowed, the pinned reference printed
    env.sp(&["--plain-http", "sign", &target, "--key", "r2.key"])
        .ok();
    assert_eq!(verify(&p).ok(), pinned);
    // --json gives the decision with per-rule results
    let j = env.sp(&["--plain-http", "verify", &target, "--policy", &p, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(v["allowed"], true);
    assert!(
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["ok"] == true)
    );

    // a key whose not_after has passed no longer counts
    let expired = format!(
        "{}{}{}",
        key("r1", &["release"], ""),
        key("r2", &["release"], "not_after = \"2020-01-01T00:00:00Z\""),
        key("r3", &["release"], "")
    );
    verify(&policy(&env, "p2.toml", &expired, two_of_three)).expect_code(10);

    // provenance: signed by the builder key and matching the rules; then each rule violated flips the decision
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
    let keys = format!(
        "{release_keys}{}{}",
        key("ci", &["builder"], ""),
        key("scanner", &["scanner"], "")
    );
    let prov = |builder: &str, source: &str, git_ref: &str, signed_by: &str| {
        format!(
            "{two_of_three}\n[[rules.attestations]]\ntype = \"https://slsa.dev/provenance/v1\"\nsigned_by = [\"{signed_by}\"]\nbuilder_id = \"{builder}\"\nsource = \"{source}\"\nref = \"{git_ref}\"\nrequire_commit = true\n"
        )
    };
    let good_builder = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main";
    let good = prov(
        good_builder,
        "git+https://github.com/acme/app",
        "refs/tags/v*",
        "builder",
    );
    assert_eq!(verify(&policy(&env, "p3.toml", &keys, &good)).ok(), pinned);
    for (name, rules, want) in [
        (
            "p4.toml",
            prov(
                "https://evil.example/builder",
                "git+https://github.com/acme/app",
                "refs/tags/v*",
                "builder",
            ),
            "builder_id",
        ),
        (
            "p5.toml",
            prov(
                good_builder,
                "git+https://github.com/evil/app",
                "refs/tags/v*",
                "builder",
            ),
            "source",
        ),
        (
            "p6.toml",
            prov(
                good_builder,
                "git+https://github.com/acme/app",
                "refs/heads/*",
                "builder",
            ),
            "ref",
        ),
        (
            "p7.toml",
            prov(
                good_builder,
                "git+https://github.com/acme/app",
                "refs/tags/v*",
                "scanner",
            ),
            "signed_by",
        ),
    ] {
        let r = verify(&policy(&env, name, &keys, &rules));
        r.expect_code(10);
        assert!(
            r.stderr.contains(want),
            "{name} should name {want}: {}",
            r.stderr
        );
    }

    // scan results: fresh and clean passes; over the severity ceiling is denied
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let scan = |sev: &str, finished: &str| {
        format!(
            r#"{{"scanner":{{"uri":"pkg:github/aquasecurity/trivy","version":"0.50.0","result":{{"Results":[{{"Vulnerabilities":[{{"VulnerabilityID":"CVE-1","Severity":"{sev}"}}]}}]}}}},"metadata":{{"scanStartedOn":"{finished}","scanFinishedOn":"{finished}"}}}}"#
        )
    };
    let scan_rule = format!(
        "{two_of_three}\n[[rules.attestations]]\ntype = \"https://cosign.sigstore.dev/attestation/vuln/v1\"\nsigned_by = [\"scanner\"]\nmax_age = \"7d\"\nmax_severity = \"medium\"\n"
    );
    let p_scan = policy(&env, "p8.toml", &keys, &scan_rule);
    fs::write(env.path().join("scan-high.json"), scan("HIGH", &now)).unwrap();
    env.sp(&[
        "--plain-http",
        "attest",
        &target,
        "--key",
        "scanner.key",
        "--predicate",
        "scan-high.json",
        "--type",
        "vuln",
    ])
    .ok();
    let r = verify(&p_scan);
    r.expect_code(10);
    assert!(r.stderr.contains("max_severity"), "{}", r.stderr);
    fs::write(
        env.path().join("scan-old.json"),
        scan("LOW", "2020-01-01T00:00:00Z"),
    )
    .unwrap();
    env.sp(&[
        "--plain-http",
        "attest",
        &target,
        "--key",
        "scanner.key",
        "--predicate",
        "scan-old.json",
        "--type",
        "vuln",
    ])
    .ok();
    verify(&p_scan).expect_code(10);
    fs::write(env.path().join("scan-ok.json"), scan("LOW", &now)).unwrap();
    env.sp(&[
        "--plain-http",
        "attest",
        &target,
        "--key",
        "scanner.key",
        "--predicate",
        "scan-ok.json",
        "--type",
        "vuln",
    ])
    .ok();
    assert_eq!(verify(&p_scan).ok(), pinned);

    // revocation by a trusted key denies, even with every rule met
    let with_sec = format!("{keys}{}", key("sec", &["security"], ""));
    let p_rev = policy(&env, "p9.toml", &with_sec, &good);
    assert_eq!(verify(&p_rev).ok(), pinned);
    env.sp(&[
        "--plain-http",
        "revoke",
        &target,
        "--key",
        "sec.key",
        "--reason",
        "leaked signing key",
    ])
    .ok();
    let r = verify(&p_rev);
    r.expect_code(10);
    assert!(r.stderr.contains("leaked signing key"), "{}", r.stderr);

    // a reference no rule covers is denied; a broken policy file is a usage error naming file and line
    let other = format!("{}/elsewhere/app:v1", reg.host);
    env.sp(&["--plain-http", "push", "app.txt", "--to", &other])
        .ok();
    env.sp(&["--plain-http", "verify", &other, "--policy", &p])
        .expect_code(10);
    fs::write(
        env.path().join("bad.toml"),
        "version = 1\n[defaults]\ndeny_unmatchd = true\n",
    )
    .unwrap();
    let r = verify("bad.toml");
    r.expect_code(2);
    assert!(r.stderr.contains("bad.toml:3"), "{}", r.stderr);
}

/// The connaisseur vector: a real image signed by alice, bob and charlie with cosign (three layers under one
/// `.sig` tag). Laid into an OCI layout byte for byte, it meets 2-of-3 and 3-of-3 over {alice, bob, charlie},
/// not 3 with {alice, bob}, and nothing with `default` — as the vector's README and connaisseur's own test say.
#[test]
fn connaisseur_three_signature_vector_meets_its_thresholds() {
    use sealpack::oci::RawManifest;
    use sealpack::store::{BlobSource, Store, layout::LayoutStore, no_progress};
    let env = Env::new();
    let dir = common::cli::testdata("cosign-signatures/connaisseur");
    let subject = fs::read(format!(
        "{dir}/manifests/multi-cosigned-alice-bob-charlie.json"
    ))
    .unwrap();
    let subject_digest = sealpack::Digest::of(&subject);
    assert_eq!(
        subject_digest.hex(),
        "bfec161fecb0a887df7cb85e4da327c65986ccda7060cf3cd92171c6c90d7533"
    );
    let sig = fs::read(format!(
        "{dir}/manifests/sha256-{}.sig.json",
        subject_digest.hex()
    ))
    .unwrap();
    let payload = fs::read(format!(
        "{dir}/blobs/sha256-7248e52a7da336ff63192f2c0a8f12562b0d5368e9cde6ab292cbb4604074f28.json"
    ))
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = LayoutStore::open(&env.path().join("l"), true)
            .await
            .unwrap();
        let d = sealpack::oci::Descriptor::new(
            "application/vnd.dev.cosign.simplesigning.v1+json",
            sealpack::Digest::of(&payload),
            payload.len() as u64,
        );
        store
            .put_blob(&d, BlobSource::Bytes(payload.clone().into()), &no_progress)
            .await
            .unwrap();
        let subject = RawManifest::new(
            "application/vnd.docker.distribution.manifest.v2+json",
            subject.clone(),
        )
        .unwrap();
        store
            .put_manifest(&subject, Some("multi-cosigned-alice-bob-charlie"))
            .await
            .unwrap();
        let sig =
            RawManifest::new("application/vnd.oci.image.manifest.v1+json", sig.clone()).unwrap();
        store
            .put_manifest(&sig, Some(&format!("sha256-{}.sig", subject_digest.hex())))
            .await
            .unwrap();
    });
    for k in ["alice", "bob", "charlie", "default"] {
        fs::copy(
            format!("{dir}/keys/{k}.pub"),
            env.path().join(format!("{k}.pub")),
        )
        .unwrap();
    }
    let target = "oci:./l:multi-cosigned-alice-bob-charlie";
    let check = |keys: &[&str], threshold: u32| {
        let k: String = keys.iter().map(|k| key(k, &["release"], "")).collect();
        let rules = format!(
            "[[rules]]\nscope = \"oci:*\"\nsignatures = {{ threshold = {threshold}, roles = [\"release\"] }}\n"
        );
        let p = policy(
            &env,
            &format!("{}-{threshold}.toml", keys.join("-")),
            &k,
            &rules,
        );
        env.sp(&["verify", target, "--policy", &p]).code
    };
    assert_eq!(check(&["alice", "bob"], 2), 0);
    assert_eq!(check(&["alice", "bob"], 3), 10);
    assert_eq!(check(&["alice", "bob", "charlie"], 2), 0);
    assert_eq!(check(&["alice", "bob", "charlie"], 3), 0);
    assert_eq!(check(&["default"], 1), 10);
    // and with --key: each of the three alone verifies, default does not
    for k in ["alice", "bob", "charlie"] {
        env.sp(&["verify", target, "--key", &format!("{k}.pub")])
            .ok();
    }
    env.sp(&["verify", target, "--key", "default.pub"])
        .expect_code(10);
}
