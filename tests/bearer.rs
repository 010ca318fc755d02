//! The distribution token flow (bearer auth with a token service), on the in-memory registry: real registries
//! here are htpasswd-only, and a JWT-signing token server is more than the tests need.

mod common;

use std::fs;

use common::cli::sealpack;
use common::fake_registry::{FakeOptions, FakeRegistry};

#[test]
fn bearer_token_flow_with_basic_credentials_for_the_token_service() {
    let reg = FakeRegistry::start(FakeOptions {
        bearer: Some(("ci".into(), "s3cret".into())),
        ..FakeOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let docker = dir.path().join("dc");
    fs::create_dir(&docker).unwrap();
    fs::write(dir.path().join("a.txt"), "bearer").unwrap();
    let target = format!("{}/team/app:v1", reg.host);

    // no credentials: the token service refuses; a clear auth error, exit 1
    let r = sealpack(
        dir.path(),
        &docker,
        &["--plain-http", "push", "a.txt", "--to", &target],
    )
    .run();
    r.expect_code(1);
    assert!(
        r.stderr.contains("authentication") && r.stderr.contains(&reg.host),
        "{}",
        r.stderr
    );

    // with credentials: token obtained for pull,push on the repository, push and pull work
    let pinned = sealpack(
        dir.path(),
        &docker,
        &[
            "--plain-http",
            "--username",
            "ci",
            "--password-stdin",
            "push",
            "a.txt",
            "--to",
            &target,
        ],
    )
    .stdin(b"s3cret\n")
    .run()
    .ok();
    assert!(
        reg.token_scopes()
            .iter()
            .any(|s| s == "repository:team/app:pull,push"),
        "{:?}",
        reg.token_scopes()
    );
    let r = sealpack(
        dir.path(),
        &docker,
        &[
            "--plain-http",
            "--username",
            "ci",
            "--password-stdin",
            "pull",
            &pinned,
            "-o",
            "out",
        ],
    )
    .stdin(b"s3cret\n")
    .run();
    r.ok();
    assert_eq!(
        fs::read_to_string(dir.path().join("out/a.txt")).unwrap(),
        "bearer"
    );
    assert!(
        reg.token_scopes()
            .iter()
            .any(|s| s == "repository:team/app:pull"),
        "{:?}",
        reg.token_scopes()
    );
}
