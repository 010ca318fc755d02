//! Attestations as a story on the real registry (provenance from a git work tree, SBOM), checked by independent
//! tools (securesystemslib for DSSE, python-jsonschema for CycloneDX), and hostile envelopes.

mod common;

use std::fs;
use std::process::Command;

use common::cli::{Run, TestEnv as Env, make_tree, sha256_file, testdata};
use common::registry::{Flavor, Registry, python, run_tool};

fn git(env: &Env, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(env.path())
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

#[test]
fn provenance_story_on_the_registry() {
    let reg = Registry::start(Flavor::Plain);
    let env = Env::new();
    git(&env, &["init", "-q", "-b", "main"]);
    git(
        &env,
        &["remote", "add", "origin", "https://github.com/acme/app.git"],
    );
    fs::write(env.path().join(".gitignore"), "*.key\n*.pub\ndc/\n").unwrap();
    fs::write(env.path().join("app.txt"), "release").unwrap();
    git(&env, &["add", "."]);
    git(&env, &["commit", "-qm", "release"]);
    git(&env, &["tag", "v1.0.0"]);
    let head = git(&env, &["rev-parse", "HEAD"]);
    env.sp(&["keygen", "--out", "builder"]).ok();
    env.sp(&["keygen", "--out", "other"]).ok();
    let target = format!("{}/acme/app:v1.0.0", reg.host);
    let pinned = env
        .sp(&["--plain-http", "push", "app.txt", "--to", &target])
        .ok();
    let digest = pinned.split('@').nth(1).unwrap().to_string();

    // no attestation yet
    let r = env.sp(&[
        "--plain-http",
        "verify-attestation",
        &target,
        "--key",
        "builder.pub",
        "--type",
        "slsaprovenance",
    ]);
    r.expect_code(10);
    assert!(r.stderr.contains("no attestations found"), "{}", r.stderr);

    assert_eq!(
        env.sp(&[
            "--plain-http",
            "attest",
            &target,
            "--key",
            "builder.key",
            "--provenance"
        ])
        .ok(),
        pinned
    );

    // the .att manifest holds one DSSE layer annotated with its predicate type
    let att_tag = format!("{}.att", digest.replace(':', "-"));
    let raw = reg
        .curl()
        .arg(reg.url(&format!("/v2/acme/app/manifests/{att_tag}")))
        .args(["-H", "Accept: application/vnd.oci.image.manifest.v1+json"])
        .output()
        .unwrap();
    let att: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(att["layers"].as_array().unwrap().len(), 1, "{att}");
    assert_eq!(
        att["layers"][0]["mediaType"],
        "application/vnd.dsse.envelope.v1+json"
    );
    assert_eq!(
        att["layers"][0]["annotations"]["predicateType"],
        "https://slsa.dev/provenance/v1"
    );

    // verify-attestation passes; the statement binds the pushed digest and records the commit git has
    let v = json(&env.sp(&[
        "--plain-http",
        "verify-attestation",
        &target,
        "--key",
        "builder.pub",
        "--type",
        "slsaprovenance",
        "--json",
    ]));
    let st = &v["verified"][0]["statement"];
    assert_eq!(
        st["subject"][0]["digest"]["sha256"],
        digest.trim_start_matches("sha256:")
    );
    let dep = &st["predicate"]["buildDefinition"]["resolvedDependencies"][0];
    assert_eq!(dep["digest"]["gitCommit"], head.as_str());
    assert_eq!(
        dep["uri"],
        "git+https://github.com/acme/app@refs/tags/v1.0.0"
    );
    assert!(
        st["predicate"]["runDetails"]["builder"]["id"]
            .as_str()
            .unwrap()
            .starts_with("local://")
    );

    // the wrong key, the wrong type: denied
    env.sp(&[
        "--plain-http",
        "verify-attestation",
        &target,
        "--key",
        "other.pub",
        "--type",
        "slsaprovenance",
    ])
    .expect_code(10);
    let r = env.sp(&[
        "--plain-http",
        "verify-attestation",
        &target,
        "--key",
        "builder.pub",
        "--type",
        "cyclonedx",
    ]);
    r.expect_code(10);
    assert!(
        r.stderr.contains("not \"https://cyclonedx.org/bom\""),
        "{}",
        r.stderr
    );

    // an envelope copied under another artifact's .att tag: denied, naming both digests
    fs::write(env.path().join("evil.txt"), "evil").unwrap();
    let evil = format!("{}/acme/app:evil", reg.host);
    let evil_pinned = env
        .sp(&["--plain-http", "push", "evil.txt", "--to", &evil])
        .ok();
    let evil_digest = evil_pinned.split('@').nth(1).unwrap();
    let mut put = reg
        .curl()
        .args([
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/vnd.oci.image.manifest.v1+json",
            "--data-binary",
            "@-",
        ])
        .arg(reg.url(&format!(
            "/v2/acme/app/manifests/{}.att",
            evil_digest.replace(':', "-")
        )))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    put.stdin.take().unwrap().write_all(&raw.stdout).unwrap();
    assert!(put.wait().unwrap().success());
    let r = env.sp(&[
        "--plain-http",
        "verify-attestation",
        &evil,
        "--key",
        "builder.pub",
        "--type",
        "slsaprovenance",
    ]);
    r.expect_code(10);
    assert!(
        r.stderr.contains("copied from another artifact") && r.stderr.contains(evil_digest),
        "{}",
        r.stderr
    );

    // a dirty work tree is not the commit it claims
    fs::write(env.path().join("app.txt"), "changed").unwrap();
    let r = env.sp(&[
        "--plain-http",
        "attest",
        &target,
        "--key",
        "builder.key",
        "--provenance",
    ]);
    r.expect_code(2);
    assert!(r.stderr.contains("uncommitted changes"), "{}", r.stderr);
    env.sp(&[
        "--plain-http",
        "attest",
        &target,
        "--key",
        "builder.key",
        "--provenance",
        "--allow-dirty",
    ])
    .ok();
}

#[test]
fn sbom_lists_every_file_and_validates_against_the_official_schema() {
    let env = Env::new();
    env.sp(&["keygen", "--out", "k"]).ok();
    make_tree(&env.path().join("site"), 40);
    fs::write(env.path().join("app.bin"), "binary").unwrap();
    let pinned = env
        .sp(&["push", "site", "app.bin", "--to", "oci:./l:v2"])
        .ok();
    env.sp(&["attest", &pinned, "--key", "k.key", "--sbom"])
        .ok();
    env.sp(&[
        "attest",
        &pinned,
        "--key",
        "k.key",
        "--sbom",
        "--sbom-format",
        "spdx",
    ])
    .ok();

    let v = json(&env.sp(&[
        "verify-attestation",
        &pinned,
        "--key",
        "k.pub",
        "--type",
        "cyclonedx",
        "--json",
    ]));
    let bom = &v["verified"][0]["statement"]["predicate"];
    let components = bom["components"].as_array().unwrap();
    assert_eq!(components.len(), 42, "40 pages + index.html + app.bin");
    for c in components {
        let name = c["name"].as_str().unwrap();
        let local = env.path().join(name);
        assert_eq!(
            c["hashes"][0]["content"].as_str().unwrap(),
            sha256_file(&local),
            "{name}"
        );
    }
    let bom_file = env.path().join("bom.json");
    fs::write(&bom_file, serde_json::to_vec(bom).unwrap()).unwrap();
    let spdx = json(&env.sp(&[
        "verify-attestation",
        &pinned,
        "--key",
        "k.pub",
        "--type",
        "spdx",
        "--json",
    ]));
    let spdx_file = env.path().join("spdx.json");
    fs::write(
        &spdx_file,
        serde_json::to_vec(&spdx["verified"][0]["statement"]["predicate"]).unwrap(),
    )
    .unwrap();

    // the official schemas, with format checking, through python-jsonschema
    let script = format!(
        r#"
import json, jsonschema, referencing
def load(p): return json.load(open(p))
bom_schema = load("{bom}"); spdx_schema = load("{spdx}")
res = [referencing.Resource.from_contents(load("{jsf}")), referencing.Resource.from_contents(load("{spdxlic}"))]
reg = referencing.Registry().with_resources([(r.contents["$id"], r) for r in res if "$id" in r.contents])
fc = jsonschema.Draft7Validator.FORMAT_CHECKER
jsonschema.Draft7Validator(bom_schema, registry=reg, format_checker=fc).validate(load("{b}"))
jsonschema.validators.validator_for(spdx_schema)(spdx_schema, format_checker=fc).validate(load("{s}"))
print("valid")
"#,
        bom = testdata("schemas/bom-1.6.schema.json"),
        spdx = testdata("schemas/spdx-2.3.schema.json"),
        jsf = testdata("schemas/jsf-0.82.schema.json"),
        spdxlic = testdata("schemas/spdx.schema.json"),
        b = bom_file.display(),
        s = spdx_file.display(),
    );
    let out = run_tool(
        Command::new(python()).arg("-c").arg(&script),
        "python jsonschema",
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
}

#[test]
fn securesystemslib_verifies_sealpack_envelopes() {
    let env = Env::new();
    fs::write(env.path().join("a.txt"), "x").unwrap();
    let pinned = env.sp(&["push", "a.txt", "--to", "oci:./l:v1"]).ok();
    for (kind, scheme) in [
        ("ecdsa-p256", "ecdsa-sha2-nistp256"),
        ("ed25519", "ed25519"),
    ] {
        env.sp(&["keygen", "--type", kind, "--out", kind]).ok();
        fs::write(
            env.path().join("pred.json"),
            format!(r#"{{"scanner":"{kind}"}}"#),
        )
        .unwrap();
        let a = json(&env.sp(&[
            "attest",
            &pinned,
            "--key",
            &format!("{kind}.key"),
            "--predicate",
            "pred.json",
            "--type",
            "https://example.com/custom/v1",
            "--json",
        ]));
        // the envelope blob: last layer of the .att manifest
        let blob = |d: &str| {
            env.path()
                .join("l/blobs/sha256")
                .join(d.trim_start_matches("sha256:"))
        };
        let att: serde_json::Value = serde_json::from_slice(
            &fs::read(blob(a["attestation_manifest"].as_str().unwrap())).unwrap(),
        )
        .unwrap();
        let layers = att["layers"].as_array().unwrap();
        let envelope = blob(layers.last().unwrap()["digest"].as_str().unwrap());
        let script = format!(
            r#"
import json, hashlib
from cryptography.hazmat.primitives import serialization
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey
pem = open("{pubkey}", "rb").read()
pub = serialization.load_pem_public_key(pem)
der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
keyid = hashlib.sha256(der).hexdigest()
key = SSlibKey.from_crypto(pub, keyid=keyid, scheme="{scheme}")
env = Envelope.from_dict(json.load(open("{envelope}")))
env.verify([key], 1)
print("verified", env.payload_type)
"#,
            pubkey = env.path().join(format!("{kind}.pub")).display(),
            envelope = envelope.display(),
        );
        let out = run_tool(
            Command::new(python()).arg("-c").arg(&script),
            "securesystemslib",
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("verified application/vnd.in-toto+json"),
            "{kind}: {text}"
        );
    }
}

#[test]
fn bad_predicate_files_are_usage_errors_and_nothing_is_written() {
    let env = Env::new();
    env.sp(&["keygen", "--out", "k"]).ok();
    fs::write(env.path().join("a.txt"), "x").unwrap();
    let pinned = env.sp(&["push", "a.txt", "--to", "oci:./l:v1"]).ok();
    fs::write(env.path().join("not.json"), "{not json").unwrap();
    fs::write(env.path().join("dup.json"), r#"{"a":1,"a":2}"#).unwrap();
    fs::write(env.path().join("array.json"), "[1,2]").unwrap();
    let big = fs::File::create(env.path().join("big.json")).unwrap();
    big.set_len((16 << 20) + 1).unwrap();
    for (file, want) in [
        ("not.json", "not.json"),
        ("dup.json", "more than once"),
        ("array.json", "JSON object"),
        ("big.json", "cap"),
        ("missing.json", "missing.json"),
    ] {
        let r = env.sp(&[
            "attest",
            &pinned,
            "--key",
            "k.key",
            "--predicate",
            file,
            "--type",
            "https://e.com/x",
        ]);
        assert_ne!(r.code, 0, "{file}");
        assert!(r.stderr.contains(want), "{file}: {}", r.stderr);
    }
    assert!(
        !fs::read_to_string(env.path().join("l/index.json"))
            .unwrap()
            .contains(".att"),
        "nothing attached"
    );
}

/// A revoked digest is denied by verify-attestation too (as by every verify), while the revocation statement
/// itself stays readable.
#[test]
fn verify_attestation_denies_a_revoked_digest() {
    let env = Env::new();
    env.keygen("k", "ecdsa-p256");
    fs::write(env.path().join("a.txt"), "a").unwrap();
    env.sp(&[
        "push",
        "a.txt",
        "--to",
        "oci:./l:v1",
        "--commit",
        &"1".repeat(40),
    ])
    .ok();
    env.sp(&["attest", "oci:./l:v1", "--key", "k.key", "--sbom"])
        .ok();
    env.sp(&[
        "verify-attestation",
        "oci:./l:v1",
        "--key",
        "k.pub",
        "--type",
        "cyclonedx",
    ])
    .ok();
    env.sp(&[
        "revoke",
        "oci:./l:v1",
        "--key",
        "k.key",
        "--reason",
        "bad build",
    ])
    .ok();
    let r = env.sp(&[
        "verify-attestation",
        "oci:./l:v1",
        "--key",
        "k.pub",
        "--type",
        "cyclonedx",
    ]);
    r.expect_code(10);
    assert!(
        r.stderr.contains("revoked by k.pub: bad build"),
        "{}",
        r.stderr
    );
    env.sp(&[
        "verify-attestation",
        "oci:./l:v1",
        "--key",
        "k.pub",
        "--type",
        "https://github.com/sealpack/sealpack/revocation/v1",
    ])
    .ok();
}
