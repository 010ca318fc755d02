//! `push` refuses secrets inside what it packs (issue 8 item 7): private keys, tokens by their prefixes, `.env` and
//! credential files, high-entropy values in configuration files; `--allow-secret` lets a named finding through.
//! On OCI layouts (`oci:`) and on the real registry (distribution 2.8), through the real binary.

mod common;

use std::fs;
use std::path::Path;

use common::cli::{Run, TestEnv as Env, make_tree, random_file, testdata, tree_digests};
use common::registry::{Flavor, Registry};

/// AWS's documented example access key id (not a live key).
const AWS_EXAMPLE: &str = "AKIAIOSFODNN7EXAMPLE";

/// A GitHub-token-shaped string (ghp_ + 36 alphanumerics; not a live token).
fn github_token() -> String {
    format!("ghp_{}", "a1B2c3D4e5F6".repeat(3))
}

/// A small site: pages, a script, an image.
fn clean_site(root: &Path) {
    make_tree(root, 30);
    fs::create_dir_all(root.join("js")).unwrap();
    fs::write(root.join("js/app.js"), "console.log('hello');\n").unwrap();
    random_file(&root.join("logo.png"), 200_000, 3);
}

/// Blob files in a layout (0 when it has none, or does not exist).
fn layout_blobs(layout: &Path) -> usize {
    fs::read_dir(layout.join("blobs/sha256")).map_or(0, |d| d.count())
}

/// The refusal: exit 2, every expected `PATH:LINE: RULE` named, the secrets themselves never shown, a hint.
#[track_caller]
fn assert_refused(run: &Run, expected: &[&str], never_shown: &[&str]) {
    run.expect_code(2);
    assert!(
        run.stderr.contains("refusing to push"),
        "stderr: {}",
        run.stderr
    );
    for e in expected {
        assert!(run.stderr.contains(e), "{e} not in: {}", run.stderr);
    }
    for s in never_shown {
        assert!(!run.stderr.contains(s), "{s} shown in: {}", run.stderr);
    }
    assert!(
        run.stderr.contains("hint:") && run.stderr.contains("--allow-secret"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout, "", "nothing is printed as pushed");
}

#[test]
fn folder_with_secrets_is_refused_then_pushes_without_them() {
    let env = Env::new();
    let site = env.path().join("site");
    clean_site(&site);
    // a private key (cosign's encrypted format, a real key made by keygen)
    env.keygen("signing", "ecdsa-p256");
    fs::create_dir_all(site.join("keys")).unwrap();
    fs::rename(
        env.path().join("signing.key"),
        site.join("keys/signing.key"),
    )
    .unwrap();
    let token = github_token();
    fs::write(
        site.join(".env"),
        format!("# deploy settings\nGITHUB_TOKEN={token}\n"),
    )
    .unwrap();
    fs::write(
        site.join("notes.txt"),
        format!("build notes\n\naws key: {AWS_EXAMPLE}\n"),
    )
    .unwrap();

    let run = env.cmd(&["push", "site", "--to", "oci:./l:v1"]).run();
    assert_refused(
        &run,
        &[
            "site/keys/signing.key:1: private-key (-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----)",
            "site/.env:2: dotenv-file (GITHUB_TOKEN=…)",
            "site/.env:2: github-token (ghp_… (40 chars))",
            "site/notes.txt:3: aws-access-key (AKIA… (20 chars))",
            "4 possible secret(s)",
        ],
        &[&token, AWS_EXAMPLE, &token[4..12]],
    );
    // nothing was uploaded and nothing tagged
    assert_eq!(layout_blobs(&env.path().join("l")), 0);
    env.cmd(&["resolve", "oci:./l:v1"]).run().expect_code(1);

    // the same folder without them pushes, and pulls back equal
    fs::remove_dir_all(site.join("keys")).unwrap();
    fs::remove_file(site.join(".env")).unwrap();
    fs::remove_file(site.join("notes.txt")).unwrap();
    let run = env.cmd(&["push", "site", "--to", "oci:./l:v1"]).run();
    let digest = run.digest();
    assert!(!run.stderr.contains("allowed"), "{}", run.stderr);
    env.cmd(&["pull", "oci:./l:v1", "-o", "out"]).run().ok();
    assert_eq!(
        tree_digests(&env.path().join("out/site")),
        tree_digests(&site)
    );
    let resolved = env.cmd(&["resolve", "oci:./l:v1"]).run().ok();
    assert!(resolved.ends_with(&digest), "{resolved}");
}

#[test]
fn allow_secret_lets_a_named_false_positive_through() {
    let env = Env::new();
    let site = env.path().join("site");
    clean_site(&site);
    // documentation that quotes AWS's example key: a false positive
    fs::create_dir_all(site.join("docs")).unwrap();
    fs::write(
        site.join("docs/aws.md"),
        format!("# Configure\n\nSet `aws_access_key_id` (e.g. `{AWS_EXAMPLE}`).\n"),
    )
    .unwrap();
    let push = |extra: &[&str]| {
        let mut args = vec!["push", "site", "--to", "oci:./l:v1"];
        args.extend_from_slice(extra);
        env.cmd(&args).run()
    };
    assert_refused(
        &push(&[]),
        &["site/docs/aws.md:3: aws-access-key"],
        &[AWS_EXAMPLE],
    );
    // the wrong line, the wrong rule or the wrong file let nothing through
    for wrong in [
        "site/docs/aws.md:2",
        "site/docs/aws.md:private-key",
        "site/docs/other.md",
        "docs/aws.md",
    ] {
        assert_refused(
            &push(&["--allow-secret", wrong]),
            &["site/docs/aws.md:3: aws-access-key"],
            &[],
        );
    }
    assert_eq!(layout_blobs(&env.path().join("l")), 0);
    // the right PATH:LINE, PATH:RULE, PATH, or folder: pushed, with a note naming what was allowed
    for (i, allow) in [
        "site/docs/aws.md:3",
        "site/docs/aws.md:aws-access-key",
        "site/docs/aws.md",
        "site/docs/",
    ]
    .iter()
    .enumerate()
    {
        let tag = format!("oci:./l:v{i}");
        let run = env
            .cmd(&["push", "site", "--to", &tag, "--allow-secret", allow])
            .run();
        run.digest();
        assert!(
            run.stderr
                .contains("note: allowed by --allow-secret: site/docs/aws.md:3: aws-access-key"),
            "{}",
            run.stderr
        );
        assert!(!run.stderr.contains(AWS_EXAMPLE), "{}", run.stderr);
    }
    // --json keeps the allowed findings in the report
    let run = env
        .cmd(&[
            "--json",
            "push",
            "site",
            "--to",
            "oci:./l:v9",
            "--allow-secret",
            "site/docs/aws.md",
        ])
        .run();
    run.expect_code(0);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        report["allowed_secrets"][0],
        serde_json::json!({"path": "site/docs/aws.md", "line": 3, "rule": "aws-access-key",
            "shown": "AKIA… (20 chars)"})
    );
    // a bad entry is a usage error
    env.cmd(&[
        "push",
        "site",
        "--to",
        "oci:./l:v8",
        "--allow-secret",
        "a:0",
    ])
    .run()
    .expect_code(2);
}

#[test]
fn a_single_file_with_a_github_token_is_refused() {
    let env = Env::new();
    let token = github_token();
    fs::write(
        env.path().join("bundle.js"),
        format!("var a=1;\nconst gh=\"{token}\";fetch(x)\n"),
    )
    .unwrap();
    let run = env.cmd(&["push", "bundle.js", "--to", "oci:./l:v1"]).run();
    assert_refused(&run, &["bundle.js:2: github-token"], &[&token]);
    assert_eq!(layout_blobs(&env.path().join("l")), 0);
    // also when its digest is cached (a file settled for over 2 s): the cache never skips the scan of a file
    // with findings, and an entry written by an older sealpack (no scan mark) is read again
    std::thread::sleep(std::time::Duration::from_millis(2100));
    for _ in 0..2 {
        let run = env.cmd(&["push", "bundle.js", "--to", "oci:./l:v1"]).run();
        assert_refused(&run, &["bundle.js:2: github-token"], &[&token]);
    }
    let cache = env.docker.join("sealpack-cache/digests-v1");
    let lines = fs::read_to_string(&cache).unwrap();
    assert!(
        !lines.is_empty() && !lines.contains("secrets-clean"),
        "{lines}"
    );
    // a clean file is marked clean in the cache, named by its path in the artifact
    fs::write(env.path().join("clean.js"), "var a=1;\n").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    env.cmd(&["push", "clean.js", "--to", "oci:./l:v2"])
        .run()
        .ok();
    let lines = fs::read_to_string(&cache).unwrap();
    assert!(lines.contains("secrets-clean-v1-"), "{lines}");
}

#[test]
fn a_high_entropy_password_in_config_yaml_is_refused() {
    let env = Env::new();
    let app = env.path().join("app");
    fs::create_dir_all(&app).unwrap();
    let password = "Zq8!rL2x#Vb7Nw@E4kTy6Ps";
    fs::write(
        app.join("config.yaml"),
        format!(
            "server:\n  port: 8080\ndatabase:\n  user: app\n  password: \"{password}\"\n  password_file: /run/secrets/db\n"
        ),
    )
    .unwrap();
    let run = env.cmd(&["push", "app", "--to", "oci:./l:v1"]).run();
    assert_refused(
        &run,
        &["app/config.yaml:5: high-entropy-config (password: 23 chars"],
        &[password, &password[..6]],
    );
    // a placeholder instead passes
    fs::write(
        app.join("config.yaml"),
        "database:\n  password: ${DB_PASSWORD}\n",
    )
    .unwrap();
    env.cmd(&["push", "app", "--to", "oci:./l:v1"]).run().ok();
}

#[test]
fn random_binaries_are_not_false_positives() {
    let env = Env::new();
    let bins = env.path().join("bins");
    fs::create_dir_all(&bins).unwrap();
    for i in 0..8 {
        random_file(&bins.join(format!("part-{i}.bin")), 1 << 20, 100 + i);
    }
    // binaries under config-like names, too
    random_file(&bins.join("settings.json"), 1 << 20, 99);
    random_file(&bins.join(".env"), 64 << 10, 98);
    random_file(&env.path().join("big.bin"), 32 << 20, 7);
    env.cmd(&["push", "bins", "big.bin", "--to", "oci:./l:v1"])
        .run()
        .ok();
}

#[test]
fn testdata_site_pushes_clean() {
    let env = Env::new();
    let run = env
        .cmd(&["push", &testdata("site"), "--to", "oci:./l:v1"])
        .run();
    run.digest();
    assert!(!run.stderr.contains("secret"), "{}", run.stderr);
}

#[test]
fn refused_on_the_registry_before_any_upload() {
    let reg = Registry::start(Flavor::Plain);
    let env = Env::new();
    let site = env.path().join("site");
    clean_site(&site);
    fs::create_dir_all(site.join(".aws")).unwrap();
    fs::write(
        site.join(".aws/credentials"),
        format!(
            "[default]\naws_access_key_id = {AWS_EXAMPLE}\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"
        ),
    )
    .unwrap();
    random_file(&env.path().join("app.bin"), 4 << 20, 5);
    let target = format!("{}/team/site:v1", reg.host);
    let run = env
        .cmd(&["--plain-http", "push", "app.bin", "site", "--to", &target])
        .run();
    assert_refused(
        &run,
        &[
            "site/.aws/credentials:2: aws-access-key",
            "site/.aws/credentials:3: credentials-file (aws_secret_access_key=…)",
        ],
        &["wJalrXUtnFEMI"],
    );
    // the scan ends before the push talks to the registry about blobs or manifests: no upload, no tag
    let reqs = reg.requests();
    assert!(
        reqs.iter()
            .all(|l| !l.is_blob_write() && l.method != "PUT" && l.method != "POST"),
        "{reqs:#?}"
    );
    env.cmd(&["--plain-http", "resolve", &target])
        .run()
        .expect_code(1);

    // allowed by folder: pushed, and the tag resolves to it
    let run = env
        .cmd(&[
            "--plain-http",
            "push",
            "app.bin",
            "site",
            "--to",
            &target,
            "--allow-secret",
            "site/.aws/",
        ])
        .run();
    let digest = run.digest();
    assert_eq!(
        run.stderr
            .matches("note: allowed by --allow-secret")
            .count(),
        2,
        "{}",
        run.stderr
    );
    let resolved = env.cmd(&["--plain-http", "resolve", &target]).run().ok();
    assert!(resolved.ends_with(&digest), "{resolved}");
}
