//! Signatures as a story, on a real registry: unsigned -> sign -> verify -> other key -> second signer -> a
//! signature moved to another digest. Plus the cosign key vectors through the real binary, and bad input.

mod common;

use std::fs;

use common::cli::{TestEnv as Env, sealpack, testdata};
use common::registry::{Flavor, Registry};

#[test]
fn signature_story_on_the_registry() {
    let reg = Registry::start(Flavor::Plain);
    let env = Env::new();
    env.keygen("alice", "ecdsa-p256");
    env.keygen("bob", "ed25519");
    fs::write(env.path().join("app.txt"), "release 1").unwrap();
    let target = format!("{}/team/app:v1", reg.host);
    let pinned = env
        .sp(&["--plain-http", "push", "app.txt", "--to", &target])
        .ok();
    let digest = pinned.split('@').nth(1).unwrap().to_string();

    // unsigned: denied, and the message says there is nothing
    let r = env.sp(&["--plain-http", "verify", &target, "--key", "alice.pub"]);
    r.expect_code(10);
    assert!(r.stderr.contains("no signatures found"), "{}", r.stderr);

    // sign, then verify passes and prints the pinned reference
    assert_eq!(
        env.sp(&["--plain-http", "sign", &target, "--key", "alice.key"])
            .ok(),
        pinned
    );
    assert_eq!(
        env.sp(&["--plain-http", "verify", &target, "--key", "alice.pub"])
            .ok(),
        pinned
    );

    // another key: denied, and it says signatures exist but none for this key
    let r = env.sp(&["--plain-http", "verify", &target, "--key", "bob.pub"]);
    r.expect_code(10);
    assert!(
        r.stderr.contains("1 signature(s) found, none valid"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains(&digest), "names the digest: {}", r.stderr);

    // signing twice with the same key adds nothing
    env.sp(&["--plain-http", "sign", &target, "--key", "alice.key"])
        .ok();
    // a second signer appends; both verify, each on its own
    env.sp(&[
        "--plain-http",
        "sign",
        &target,
        "--key",
        "bob.key",
        "-a",
        "approved-by=bob",
    ])
    .ok();
    let raw = reg
        .curl()
        .arg(reg.url(&format!(
            "/v2/team/app/manifests/{}",
            digest.replace(':', "-") + ".sig"
        )))
        .arg("-H")
        .arg("Accept: application/vnd.oci.image.manifest.v1+json")
        .output()
        .unwrap();
    let sig_manifest: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(
        sig_manifest["layers"].as_array().unwrap().len(),
        2,
        "{sig_manifest}"
    );
    for key in ["alice.pub", "bob.pub"] {
        env.sp(&["--plain-http", "verify", &target, "--key", key])
            .ok();
    }
    let j = env.sp(&[
        "--plain-http",
        "verify",
        &target,
        "--key",
        "alice.pub",
        "--key",
        "bob.pub",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(v["distinct_keys"], 2);
    assert_eq!(v["verified"][1]["annotations"]["approved-by"], "bob");

    // a signature copied under another artifact's .sig tag is refused
    fs::write(env.path().join("evil.txt"), "not the release").unwrap();
    let evil = format!("{}/team/app:evil", reg.host);
    let evil_pinned = env
        .sp(&["--plain-http", "push", "evil.txt", "--to", &evil])
        .ok();
    let evil_digest = evil_pinned.split('@').nth(1).unwrap();
    let copy = reg
        .curl()
        .args([
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/vnd.oci.image.manifest.v1+json",
            "--data-binary",
        ])
        .arg("@-")
        .arg(reg.url(&format!(
            "/v2/team/app/manifests/{}.sig",
            evil_digest.replace(':', "-")
        )))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(&raw.stdout)?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(copy.status.success());
    let r = env.sp(&[
        "--plain-http",
        "verify",
        &evil,
        "--key",
        "alice.pub",
        "--key",
        "bob.pub",
    ]);
    r.expect_code(10);
    assert!(
        r.stderr
            .contains("a signature copied from another artifact"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&digest) && r.stderr.contains(evil_digest),
        "{}",
        r.stderr
    );
}

#[test]
fn registry_trouble_while_verifying_is_operational_not_unsigned() {
    let reg = Registry::start(Flavor::Plain);
    let env = Env::new();
    env.keygen("k", "ecdsa-p256");
    fs::write(env.path().join("a.txt"), "x").unwrap();
    let pinned = env
        .sp(&[
            "--plain-http",
            "push",
            "a.txt",
            "--to",
            &format!("{}/app:v1", reg.host),
        ])
        .ok();
    env.sp(&["--plain-http", "sign", &pinned, "--key", "k.key"])
        .ok();
    env.sp(&["--plain-http", "verify", &pinned, "--key", "k.pub"])
        .ok();
    // the registry goes away: verify could not check, so it is 1, never 0 and never "unsigned" (10)
    drop(reg);
    let r = env.sp(&["--plain-http", "verify", &pinned, "--key", "k.pub"]);
    r.expect_code(1);
    assert!(!r.stderr.contains("no signatures found"), "{}", r.stderr);
}

#[test]
fn swapped_payload_is_refused_on_the_layer_digest() {
    let mut reg = Registry::start(Flavor::Plain);
    let env = Env::new();
    env.keygen("k", "ecdsa-p256");
    fs::write(env.path().join("a.txt"), "x").unwrap();
    let pinned = env
        .sp(&[
            "--plain-http",
            "push",
            "a.txt",
            "--to",
            &format!("{}/app:v1", reg.host),
        ])
        .ok();
    let j = env.sp(&["--plain-http", "sign", &pinned, "--key", "k.key", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    // find the payload layer of the signature manifest and overwrite its stored bytes (same length)
    let sig_digest = v["signature_manifest"].as_str().unwrap();
    let m = fs::read(reg.blob_data_path(sig_digest)).unwrap();
    let m: serde_json::Value = serde_json::from_slice(&m).unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap();
    let path = reg.blob_data_path(layer);
    let mut payload = fs::read(&path).unwrap();
    let i = payload.len() - 3;
    payload[i] = b'x';
    fs::write(&path, &payload).unwrap();
    reg.restart();
    let r = env.sp(&["--plain-http", "verify", &pinned, "--key", "k.pub"]);
    r.expect_code(10);
    assert!(r.stderr.contains("digest mismatch"), "{}", r.stderr);
}

#[test]
fn cosign_made_keys_sign_and_their_public_keys_verify() {
    let env = Env::new();
    fs::write(env.path().join("a.txt"), "x").unwrap();
    let pinned = env.sp(&["push", "a.txt", "--to", "oci:./l:v1"]).ok();
    for (key, pubkey, pw) in [
        (
            "keys/policy-controller/cosign.key",
            "keys/policy-controller/cosign.pub",
            "",
        ),
        (
            "keys/cosign/pemsigstorekey.key",
            "keys/cosign/pemsigstorekey.derived.pub",
            "hello",
        ),
        (
            "keys/sigstore-rs/ecdsa_encrypted_private.key",
            "keys/sigstore-rs/ecdsa_encrypted_private.derived.pub",
            "123",
        ),
        (
            "keys/sigstore-rs/ed25519_encrypted_private.key",
            "keys/sigstore-rs/ed25519_encrypted_private.derived.pub",
            "123",
        ),
    ] {
        let run = sealpack(
            env.path(),
            &env.docker,
            &["sign", &pinned, "--key", &testdata(key)],
        )
        .env("COSIGN_PASSWORD", pw)
        .run();
        run.ok();
        sealpack(
            env.path(),
            &env.docker,
            &["verify", &pinned, "--key", &testdata(pubkey)],
        )
        .run()
        .ok();
        // a wrong password is named as such
        let bad = sealpack(
            env.path(),
            &env.docker,
            &["sign", &pinned, "--key", &testdata(key)],
        )
        .env("COSIGN_PASSWORD", "definitely-wrong")
        .run();
        bad.expect_code(2);
        assert!(
            bad.stderr.contains("wrong password or corrupt key"),
            "{key}: {}",
            bad.stderr
        );
    }
}

#[test]
fn bad_keys_are_clear_errors_and_nothing_is_pushed() {
    let env = Env::new();
    fs::write(env.path().join("a.txt"), "x").unwrap();
    let pinned = env.sp(&["push", "a.txt", "--to", "oci:./l:v1"]).ok();
    let sig_tag_exists = || {
        fs::read_to_string(env.path().join("l/index.json"))
            .unwrap()
            .contains(".sig")
    };
    let p384 = testdata("keys/generated/p384.key");
    let rsa = testdata("keys/generated/rsa-2048.key");
    for (key, want) in [
        (p384.as_str(), "unsupported key type"),
        (rsa.as_str(), "unsupported key type"),
    ] {
        let r = env.sp(&["sign", &pinned, "--key", key, "--allow-insecure-key"]);
        assert_ne!(r.code, 0);
        assert!(r.stderr.contains(want), "{key}: {}", r.stderr);
    }
    // an unencrypted key readable by others is refused unless told otherwise
    let loose = env.path().join("loose.key");
    fs::copy(testdata("keys/generated/p256.key"), &loose).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&loose, fs::Permissions::from_mode(0o644)).unwrap();
    let r = env.sp(&["sign", &pinned, "--key", "loose.key"]);
    r.expect_code(2);
    assert!(r.stderr.contains("loose.key"), "{}", r.stderr);
    assert!(!sig_tag_exists(), "nothing pushed after a refused key");
    env.sp(&[
        "sign",
        &pinned,
        "--key",
        "loose.key",
        "--allow-insecure-key",
    ])
    .ok();
    assert!(sig_tag_exists());
    // a public key with two PEM blocks
    let two = env.path().join("two.pub");
    let one = fs::read_to_string(testdata("keys/generated/p256.pub")).unwrap();
    fs::write(&two, format!("{one}{one}")).unwrap();
    let r = env.sp(&["verify", &pinned, "--key", "two.pub"]);
    r.expect_code(2);
    // keygen never overwrites
    env.keygen("dup", "ecdsa-p256");
    let before = fs::read(env.path().join("dup.key")).unwrap();
    let r = env.sp(&["keygen", "--out", "dup"]);
    r.expect_code(2);
    assert_eq!(fs::read(env.path().join("dup.key")).unwrap(), before);
}

/// verify makes few requests, in three rounds: the manifest (resolve); then together the `.sig` and `.att`
/// manifests (signatures and revocations) with one referrers probe for both; then the payload blobs together.
#[test]
fn verify_makes_few_registry_requests() {
    let reg = Registry::start(Flavor::Plain);
    let env = Env::new();
    env.keygen("k", "ecdsa-p256");
    fs::write(env.path().join("a.txt"), "x").unwrap();
    let target = format!("{}/app:v1", reg.host);
    env.sp(&["--plain-http", "push", "a.txt", "--to", &target])
        .ok();
    env.sp(&["--plain-http", "sign", &target, "--key", "k.key"])
        .ok();
    reg.clear_requests();
    env.sp(&["--plain-http", "verify", &target, "--key", "k.pub"])
        .ok();
    let reqs = reg.requests();
    let paths: Vec<String> = reqs
        .iter()
        .map(|l| format!("{} {}", l.method, l.path_only()))
        .collect();
    assert_eq!(
        reqs.len(),
        5,
        "resolve + .sig + .att + 1 referrers probe + 1 payload: {paths:#?}"
    );
}

#[test]
fn a_revoked_digest_is_denied_even_with_valid_signatures() {
    let reg = Registry::start(Flavor::Plain);
    let env = Env::new();
    env.keygen("release", "ecdsa-p256");
    env.keygen("security", "ed25519");
    env.keygen("stranger", "ecdsa-p256");
    fs::write(env.path().join("a.txt"), "x").unwrap();
    let target = format!("{}/app:v1", reg.host);
    let pinned = env
        .sp(&["--plain-http", "push", "a.txt", "--to", &target])
        .ok();
    env.sp(&["--plain-http", "sign", &target, "--key", "release.key"])
        .ok();
    // a revocation by a key the verifier does not trust changes nothing
    env.sp(&[
        "--plain-http",
        "revoke",
        &target,
        "--key",
        "stranger.key",
        "--reason",
        "not mine",
    ])
    .ok();
    env.sp(&["--plain-http", "verify", &target, "--key", "release.pub"])
        .ok();
    // an empty reason is refused before anything is written
    env.sp(&[
        "--plain-http",
        "revoke",
        &target,
        "--key",
        "security.key",
        "--reason",
        " ",
    ])
    .expect_code(2);
    assert_eq!(
        env.sp(&[
            "--plain-http",
            "revoke",
            &target,
            "--key",
            "security.key",
            "--reason",
            "CVE-2026-0001 in libfoo"
        ])
        .ok(),
        pinned
    );
    let r = env.sp(&[
        "--plain-http",
        "verify",
        &target,
        "--key",
        "release.pub",
        "--key",
        "security.pub",
    ]);
    r.expect_code(10);
    assert!(
        r.stderr
            .contains("revoked by security.pub: CVE-2026-0001 in libfoo"),
        "{}",
        r.stderr
    );
}
