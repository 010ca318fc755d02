//! docs/CI.md's release and deploy steps (scripts/ci/release.sh and deploy.sh) under a simulated GitHub Actions
//! and GitLab CI environment, against a real registry, gated by the example policies in docs/examples/.

mod common;

use std::fs;
use std::process::Command;

use common::cli::{TEST_PASSWORD, TestEnv as Env, bin};
use common::registry::{Flavor, Registry};

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

/// Runs `scripts/ci/NAME` in the test folder with only `vars` (plus PATH/HOME) set; returns (exit code, stdout,
/// stderr).
fn script(env: &Env, name: &str, vars: &[(&str, String)]) -> (i32, String, String) {
    let mut cmd = Command::new("bash");
    cmd.arg(format!("{}/scripts/ci/{name}", env!("CARGO_MANIFEST_DIR")))
        .current_dir(env.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("HOME", env.path())
        .env("DOCKER_CONFIG", &env.docker)
        .env("SEALPACK_CACHE_DIR", env.docker.join("cache"))
        .env("SEALPACK", bin())
        .env("SEALPACK_FLAGS", "--plain-http")
        .env("SEALPACK_PASSWORD", TEST_PASSWORD);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn setup(reg: &Registry, policy: &str, registry_name: &str) -> Env {
    let env = Env::new();
    env.keygen("release", "ecdsa-p256");
    fs::create_dir(env.path().join("site")).unwrap();
    fs::write(env.path().join("site/index.html"), "<h1>site</h1>\n").unwrap();
    let text = fs::read_to_string(format!(
        "{}/docs/examples/{policy}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
    .replace(registry_name, &reg.host);
    fs::write(env.path().join("policy.toml"), text).unwrap();
    env
}

fn github(workflow: &str, tag: &str) -> Vec<(&'static str, String)> {
    vec![
        ("GITHUB_ACTIONS", "true".into()),
        ("GITHUB_SERVER_URL", "https://github.com".into()),
        ("GITHUB_REPOSITORY", "acme/site".into()),
        (
            "GITHUB_WORKFLOW_REF",
            format!("acme/site/.github/workflows/{workflow}@refs/tags/{tag}"),
        ),
        ("GITHUB_REF", format!("refs/tags/{tag}")),
        ("GITHUB_SHA", SHA.into()),
        ("GITHUB_RUN_ID", "4242".into()),
        ("GITHUB_ACTOR", "octocat".into()),
    ]
}

fn deploy(env: &Env, pinned: &str) -> (i32, String, String) {
    script(
        env,
        "deploy.sh",
        &[
            ("REF", pinned.to_string()),
            ("DEPLOY_ENV", "production".into()),
            ("TARGET", "srv".into()),
            ("POLICY", "policy.toml".into()),
            ("HEALTH_CMD", "test -f site/index.html".into()),
        ],
    )
}

#[test]
fn github_actions_release_then_gated_deploy() {
    let reg = Registry::start(Flavor::Plain);
    let env = setup(&reg, "github-policy.toml", "ghcr.io");
    let mut vars = github("release.yml", "v1.4.2");
    vars.extend([
        ("ARTIFACT", "site".to_string()),
        ("SEALPACK_REF", format!("{}/acme/site:v1.4.2", reg.host)),
        ("SEALPACK_KEY_FILE", "release.key".into()),
    ]);
    let (code, pinned, err) = script(&env, "release.sh", &vars);
    assert_eq!(code, 0, "{err}");
    assert!(
        pinned.starts_with(&format!("{}/acme/site@sha256:", reg.host)),
        "{pinned}"
    );
    let (code, out, err) = deploy(&env, &pinned);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, pinned);
    assert!(err.contains("builder_id: \"https://github.com/acme/site/.github/workflows/release.yml@refs/tags/v1.4.2\""), "{err}");
    assert!(env.path().join("srv/current/site/index.html").exists());

    // built by another workflow: the gate says no, nothing deployed
    fs::write(env.path().join("site/index.html"), "<h1>other</h1>\n").unwrap();
    let mut vars = github("other.yml", "v1.4.3");
    vars.extend([
        ("ARTIFACT", "site".to_string()),
        ("SEALPACK_REF", format!("{}/acme/site:v1.4.3", reg.host)),
        ("SEALPACK_KEY_FILE", "release.key".into()),
    ]);
    let (code, other, err) = script(&env, "release.sh", &vars);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = deploy(&env, &other);
    assert_eq!(code, 10, "{err}");
    assert!(err.contains(".builder_id: expected"), "{err}");
    assert_eq!(
        fs::read_link(env.path().join("srv/current"))
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap(),
        pinned.split("sha256:").nth(1).unwrap()
    );
}

#[test]
fn gitlab_ci_release_then_gated_deploy() {
    let reg = Registry::start(Flavor::Plain);
    let env = setup(&reg, "gitlab-policy.toml", "registry.gitlab.com");
    let vars = vec![
        ("GITLAB_CI", "true".to_string()),
        ("CI_PROJECT_URL", "https://gitlab.com/acme/site".into()),
        ("CI_COMMIT_TAG", "v2.0.0".into()),
        ("CI_COMMIT_SHA", SHA.into()),
        (
            "CI_JOB_URL",
            "https://gitlab.com/acme/site/-/jobs/77".into(),
        ),
        ("GITLAB_USER_LOGIN", "tanuki".into()),
        ("ARTIFACT", "site".into()),
        (
            "SEALPACK_REF",
            format!("{}/acme/site/site:v2.0.0", reg.host),
        ),
        ("SEALPACK_KEY_FILE", "release.key".into()),
    ];
    let (code, pinned, err) = script(&env, "release.sh", &vars);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = deploy(&env, &pinned);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, pinned);
    let h = env.sp(&["history", "--target", "srv", "--json"]);
    let events: serde_json::Value = serde_json::from_str(&h.stdout).unwrap();
    assert_eq!(events[1]["commit"], SHA);
}
