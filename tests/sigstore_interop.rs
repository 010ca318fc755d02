//! Independent cosign implementation (sigstore-rs, built by scripts/build-interop.sh into the binary named by
//! SEALPACK_SIGSTORE_CHECK) against sealpack on a real registry: each verifies what the other signed, and key
//! files cross over both ways.

mod common;

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use common::cli::TestEnv as Env;
use common::registry::{Flavor, Registry};

fn checker() -> PathBuf {
    match std::env::var_os("SEALPACK_SIGSTORE_CHECK") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!(
            "SEALPACK_SIGSTORE_CHECK is not set: run `bash scripts/test.sh`, or build the checker with scripts/build-interop.sh and export its path"
        ),
    }
}

fn check(args: &[&str]) -> (i32, String) {
    let out = Command::new(checker())
        .args(args)
        .output()
        .expect("run sigstore-check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn pushed(env: &Env, reg: &Registry, name: &str) -> String {
    fs::write(env.path().join(format!("{name}.txt")), name).unwrap();
    env.sp(&[
        "--plain-http",
        "push",
        &format!("{name}.txt"),
        "--to",
        &format!("{}/interop/{name}:v1", reg.host),
    ])
    .ok()
}

#[test]
fn sigstore_verifies_what_sealpack_signed() {
    let reg = Registry::start(Flavor::Plain);
    let env = Env::new();
    env.sp(&["keygen", "--out", "p256"]).ok();
    env.sp(&["keygen", "--type", "ed25519", "--out", "ed"]).ok();
    for (key, other) in [("p256", "ed"), ("ed", "p256")] {
        let pinned = pushed(&env, &reg, key);
        env.sp(&[
            "--plain-http",
            "sign",
            &pinned,
            "--key",
            &format!("{key}.key"),
        ])
        .ok();
        let (code, text) = check(&[
            "verify",
            "--plain-http",
            "--image",
            &pinned,
            "--key",
            &env.p(&format!("{key}.pub")),
        ]);
        assert_eq!(
            code, 0,
            "sigstore-rs must verify sealpack's {key} signature: {text}"
        );
        assert!(text.contains("verified 1/1"), "{text}");
        let (code, text) = check(&[
            "verify",
            "--plain-http",
            "--image",
            &pinned,
            "--key",
            &env.p(&format!("{other}.pub")),
        ]);
        assert_eq!(code, 1, "the wrong key must fail: {text}");
    }
}

#[test]
fn sealpack_verifies_what_sigstore_signed_with_keys_each_made() {
    let reg = Registry::start(Flavor::Plain);
    let env = Env::new();
    // a key sigstore generated (CRLF PEM) signs; sealpack verifies with its public key and can sign with it too
    let (code, text) = check(&["generate-key", "--out", &env.p("sig"), "--password", "pw"]);
    assert_eq!(code, 0, "{text}");
    let pinned = pushed(&env, &reg, "fromsigstore");
    let (code, text) = check(&[
        "sign",
        "--plain-http",
        "--image",
        &pinned,
        "--key",
        &env.p("sig.key"),
        "--password",
        "pw",
    ]);
    assert_eq!(code, 0, "{text}");
    env.sp(&["--plain-http", "verify", &pinned, "--key", "sig.pub"])
        .ok();
    // sealpack appends its own signature with a sealpack key; sigstore then sees both
    env.sp(&["keygen", "--out", "mine"]).ok();
    env.sp(&["--plain-http", "sign", &pinned, "--key", "mine.key"])
        .ok();
    env.sp(&["--plain-http", "verify", &pinned, "--key", "sig.pub"])
        .ok();
    let (code, text) = check(&[
        "verify",
        "--plain-http",
        "--image",
        &pinned,
        "--key",
        &env.p("mine.pub"),
    ]);
    assert_eq!(code, 0, "{text}");
    let (code, text) = check(&[
        "verify",
        "--plain-http",
        "--image",
        &pinned,
        "--key",
        &env.p("sig.pub"),
    ]);
    assert_eq!(
        code, 0,
        "sealpack's append kept sigstore's signature: {text}"
    );

    // sealpack signs with the sigstore-made private key; sigstore verifies it
    let other = pushed(&env, &reg, "sealpacksigned");
    env.sp(&["--plain-http", "sign", &other, "--key", "sig.key"])
        .ok();
    let (code, text) = check(&[
        "verify",
        "--plain-http",
        "--image",
        &other,
        "--key",
        &env.p("sig.pub"),
    ]);
    assert_eq!(code, 0, "{text}");
    // and sigstore loads a sealpack-made private key and signs with it
    let third = pushed(&env, &reg, "thirdimage");
    let (code, text) = check(&[
        "sign",
        "--plain-http",
        "--image",
        &third,
        "--key",
        &env.p("mine.key"),
        "--password",
        "pw",
    ]);
    assert_eq!(code, 0, "sigstore loads sealpack's encrypted key: {text}");
    env.sp(&["--plain-http", "verify", &third, "--key", "mine.pub"])
        .ok();
}
