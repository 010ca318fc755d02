//! push / pull / resolve / inspect against a real registry (distribution 2.8, started per test) and on an OCI
//! layout folder, through the real binary. Needs `scripts/install-test-deps.sh`.

mod common;

use std::fs;

use common::cli::{TestEnv as Env, make_tree, random_file, sha256_file, tree_digests};
use common::registry::{Flavor, Registry};

/// 64 MiB file + 300-file folder: push, pull back, byte-identical; on a registry and on a layout.
fn round_trip(env: &Env, target: &str, extra: &[&str]) {
    let big = env.path().join("big.bin");
    random_file(&big, 64 << 20, 7);
    let site = env.path().join("site");
    make_tree(&site, 300);
    let mut args = vec!["push", "big.bin", "site", "--to", target];
    args.extend_from_slice(extra);
    let pushed = env.cmd(&args).run().digest();

    let mut args = vec!["pull", target, "-o", "out"];
    args.extend_from_slice(extra);
    let pulled = env.cmd(&args).run();
    assert_eq!(pulled.digest(), pushed);
    assert_eq!(
        sha256_file(&env.path().join("out/big.bin")),
        sha256_file(&big)
    );
    assert_eq!(
        tree_digests(&env.path().join("out/site")),
        tree_digests(&site)
    );
    assert_eq!(tree_digests(&site).len(), 301);
    // nothing but the results in the output folder (no staging leftovers)
    let mut names: Vec<_> = fs::read_dir(env.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["big.bin", "site"]);

    // resolve agrees, by tag and by digest
    let mut args = vec!["resolve", target];
    args.extend_from_slice(extra);
    assert_eq!(env.cmd(&args).run().ok(), pushed);
}

#[test]
fn round_trip_on_the_registry() {
    let reg = Registry::start(Flavor::Plain);
    let env = Env::new();
    round_trip(
        &env,
        &format!("{}/team/app:v1.0.0", reg.host),
        &["--plain-http"],
    );
}

#[test]
fn round_trip_on_a_layout() {
    let env = Env::new();
    round_trip(&env, "oci:./layout:v1.0.0", &[]);
}

#[test]
fn repush_uploads_no_blob() {
    let reg = Registry::start(Flavor::Plain);
    let env = Env::new();
    random_file(&env.path().join("app.bin"), 3 << 20, 1);
    make_tree(&env.path().join("site"), 20);
    let target = format!("{}/app:v1", reg.host);
    let first = env
        .cmd(&["--plain-http", "push", "app.bin", "site", "--to", &target])
        .run()
        .digest();
    assert!(
        reg.requests().iter().any(|l| l.is_blob_write()),
        "the first push uploads"
    );

    // same content, same tag: nothing is written at all
    reg.clear_requests();
    let again = env
        .cmd(&["--plain-http", "push", "app.bin", "site", "--to", &target])
        .run()
        .digest();
    assert_eq!(again, first);
    let reqs = reg.requests();
    assert!(
        reqs.iter()
            .all(|l| !l.is_blob_upload() && l.method != "PUT"),
        "{reqs:#?}"
    );

    // same content, new tag: HEADs find every blob; only the manifest is written
    reg.clear_requests();
    let v2 = format!("{}/app:v2", reg.host);
    let run = env
        .cmd(&["--plain-http", "push", "app.bin", "site", "--to", &v2])
        .run();
    let reqs = reg.requests();
    assert!(reqs.iter().all(|l| !l.is_blob_upload()), "{reqs:#?}");
    assert_eq!(
        reqs.iter().filter(|l| l.method == "HEAD").count(),
        3,
        "{reqs:#?}"
    );
    assert!(run.stderr.contains("0 B uploaded"), "{}", run.stderr);
    // the version annotation differs, so the digest does too
    assert_ne!(run.digest(), first);
}

#[test]
fn same_folder_same_digest_across_runs() {
    let env = Env::new();
    let a = env.path().join("a/site");
    make_tree(&a, 50);
    let d1 = env
        .cmd(&["push", "a/site", "--to", "oci:./l1:v1"])
        .run()
        .digest();
    // a fresh copy made later: new mtimes, new inode order
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = env.path().join("b/site");
    fs::create_dir_all(&b).unwrap();
    for (rel, _) in tree_digests(&a).iter().rev() {
        let dest = b.join(rel);
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::copy(a.join(rel), dest).unwrap();
    }
    let d2 = env
        .cmd(&["push", "b/site", "--to", "oci:./l2:v1"])
        .run()
        .digest();
    assert_eq!(d1, d2);
}

#[test]
fn reproducible_created_from_source_date_epoch() {
    let env = Env::new();
    fs::write(env.path().join("f.txt"), "x").unwrap();
    let d1 = env
        .cmd(&["push", "f.txt", "--to", "oci:./l:v1", "--json"])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .run();
    let v: serde_json::Value = serde_json::from_str(&d1.stdout).unwrap();
    assert_eq!(
        v["annotations"]["org.opencontainers.image.created"],
        "2023-11-14T22:13:20Z"
    );
    assert_eq!(v["annotations"]["org.opencontainers.image.version"], "v1");
    let d2 = env
        .cmd(&["push", "f.txt", "--to", "oci:./l2:v1", "--json"])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .run();
    let v2: serde_json::Value = serde_json::from_str(&d2.stdout).unwrap();
    assert_eq!(v["digest"], v2["digest"]);
}

#[test]
fn git_commit_and_source_are_recorded() {
    let env = Env::new();
    let repo = env.path();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .current_dir(repo)
            .args(args)
            .env("GIT_AUTHOR_DATE", "2024-01-02T03:04:05Z")
            .env("GIT_COMMITTER_DATE", "2024-01-02T03:04:05Z")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    git(&["init", "-q"]);
    git(&[
        "remote",
        "add",
        "origin",
        "https://user:secret@example.com/acme/app.git",
    ]);
    fs::write(repo.join("f.txt"), "x").unwrap();
    git(&["add", "f.txt"]);
    git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "commit",
        "-qm",
        "c",
    ]);
    let head = git(&["rev-parse", "HEAD"]);
    let run = env
        .cmd(&["push", "f.txt", "--to", "oci:./l:v1", "--json"])
        .run();
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let a = &v["annotations"];
    assert_eq!(a["org.opencontainers.image.revision"], head.as_str());
    assert_eq!(
        a["org.opencontainers.image.source"],
        "https://example.com/acme/app.git"
    );
    assert_eq!(
        a["org.opencontainers.image.created"],
        "2024-01-02T03:04:05Z"
    );
    // --commit must be a full id
    env.cmd(&["push", "f.txt", "--to", "oci:./l:v2", "--commit", "abc"])
        .run()
        .expect_code(2);
}

#[test]
fn no_clobber_and_latest_rules() {
    let reg = Registry::start(Flavor::Plain);
    let env = Env::new();
    fs::write(env.path().join("a.txt"), "one").unwrap();
    fs::write(env.path().join("b.txt"), "two").unwrap();
    let target = format!("{}/app:v1", reg.host);
    let first = env
        .cmd(&["--plain-http", "push", "a.txt", "--to", &target])
        .run()
        .digest();

    reg.clear_requests();
    let refused = env
        .cmd(&["--plain-http", "push", "b.txt", "--to", &target])
        .run();
    refused.expect_code(1);
    assert!(
        refused.stderr.contains("already points at") && refused.stderr.contains(&first),
        "{}",
        refused.stderr
    );
    assert!(
        reg.requests()
            .iter()
            .all(|l| l.method != "PUT" && l.method != "POST"),
        "a refused push writes nothing"
    );
    assert_eq!(
        env.cmd(&["--plain-http", "resolve", &target]).run().ok(),
        first
    );

    let moved = env
        .cmd(&[
            "--plain-http",
            "push",
            "b.txt",
            "--to",
            &target,
            "--allow-overwrite",
        ])
        .run()
        .digest();
    assert_ne!(moved, first);
    assert_eq!(
        env.cmd(&["--plain-http", "resolve", &target]).run().ok(),
        moved
    );

    let latest = format!("{}/app:latest", reg.host);
    let r = env
        .cmd(&["--plain-http", "push", "a.txt", "--to", &latest])
        .run();
    r.expect_code(2);
    assert!(r.stderr.contains("latest"), "{}", r.stderr);
    env.cmd(&[
        "--plain-http",
        "push",
        "a.txt",
        "--to",
        &latest,
        "--allow-latest",
    ])
    .run()
    .ok();
    let untagged = format!("{}/app", reg.host);
    env.cmd(&["--plain-http", "push", "a.txt", "--to", &untagged])
        .run()
        .expect_code(2);
}

#[test]
fn basic_auth_with_docker_config_and_password_stdin() {
    let reg = Registry::start(Flavor::Basic);
    let env = Env::new();
    fs::write(env.path().join("a.txt"), "auth").unwrap();
    let (user, pass) = (reg.username.clone().unwrap(), reg.password.clone().unwrap());
    let target = format!("{}/private/app:v1", reg.host);

    // no credentials: a clear auth error, exit 1
    let r = env
        .cmd(&["--plain-http", "push", "a.txt", "--to", &target])
        .run();
    r.expect_code(1);
    assert!(r.stderr.contains("requires credentials"), "{}", r.stderr);

    // --username + --password-stdin
    let d = env
        .cmd(&[
            "--plain-http",
            "--username",
            &user,
            "--password-stdin",
            "push",
            "a.txt",
            "--to",
            &target,
        ])
        .stdin(format!("{pass}\n").as_bytes())
        .run()
        .digest();

    // wrong password: exit 1, names the registry, never echoes the password
    let r = env
        .cmd(&[
            "--plain-http",
            "--username",
            &user,
            "--password-stdin",
            "resolve",
            &target,
        ])
        .stdin(b"wrong-password\n")
        .run();
    r.expect_code(1);
    assert!(
        r.stderr.contains(&reg.host) && r.stderr.contains("wrong user name or password"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("wrong-password"));

    // docker config.json auths entry
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    fs::write(
        env.docker.join("config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.host),
    )
    .unwrap();
    assert_eq!(env.cmd(&["--plain-http", "resolve", &target]).run().ok(), d);
    env.cmd(&["--plain-http", "pull", &target, "-o", "out"])
        .run()
        .ok();
    assert_eq!(
        fs::read_to_string(env.path().join("out/a.txt")).unwrap(),
        "auth"
    );
}

#[test]
fn tls_with_ca_file_and_the_errors_around_it() {
    let reg = Registry::start(Flavor::Tls);
    let env = Env::new();
    fs::write(env.path().join("a.txt"), "tls").unwrap();
    let target = format!("{}/app:v1", reg.host);
    let ca = reg.ca_pem.clone().unwrap();
    let ca = ca.to_str().unwrap();

    // untrusted CA: exit 1 with a hint
    let r = env.cmd(&["push", "a.txt", "--to", &target]).run();
    r.expect_code(1);
    assert!(r.stderr.contains("--ca-file"), "{}", r.stderr);

    let d = env
        .cmd(&["--ca-file", ca, "push", "a.txt", "--to", &target])
        .run()
        .digest();
    assert_eq!(
        env.cmd(&["resolve", &target, "--ca-file", ca]).run().ok(),
        d
    );
    assert_eq!(env.cmd(&["resolve", &target, "--insecure"]).run().ok(), d);

    // --plain-http against a TLS registry fails cleanly
    env.cmd(&["--plain-http", "resolve", &target])
        .run()
        .expect_code(1);

    // per-host settings from --registry-config
    fs::write(
        env.path().join("reg.json"),
        format!(r#"{{"{}": {{"ca_file": "{ca}"}}}}"#, reg.host),
    )
    .unwrap();
    assert_eq!(
        env.cmd(&["--registry-config", "reg.json", "resolve", &target])
            .run()
            .ok(),
        d
    );
}

#[test]
fn plain_http_registry_answering_an_https_client() {
    let reg = Registry::start(Flavor::Plain);
    let env = Env::new();
    fs::write(env.path().join("a.txt"), "x").unwrap();
    let r = env
        .cmd(&["push", "a.txt", "--to", &format!("{}/app:v1", reg.host)])
        .run();
    r.expect_code(1);
    assert!(r.stderr.contains("--plain-http"), "{}", r.stderr);
}

#[test]
fn bad_input_gives_one_clear_error() {
    let env = Env::new();
    fs::write(env.path().join("a.txt"), "x").unwrap();
    // malformed references: usage (2)
    for bad in ["Host.io/App:v1", "host.io/app@sha256:12", "", "oci:"] {
        let r = env.cmd(&["push", "a.txt", "--to", bad]).run();
        r.expect_code(2);
        assert!(
            r.stderr.starts_with("error: invalid reference"),
            "{bad}: {}",
            r.stderr
        );
    }
    // a missing file: named
    let r = env
        .cmd(&["push", "missing.bin", "--to", "oci:./l:v1"])
        .run();
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("missing.bin"), "{}", r.stderr);
    assert!(
        !env.path().join("l").exists(),
        "nothing created for a failed push"
    );
    // unreachable registry: operational (1), names the URL
    let port = common::registry::free_port();
    let r = env
        .cmd(&[
            "--plain-http",
            "push",
            "a.txt",
            "--to",
            &format!("127.0.0.1:{port}/app:v1"),
        ])
        .run();
    r.expect_code(1);
    assert!(
        r.stderr.contains(&format!("127.0.0.1:{port}")) && r.stderr.contains("hint:"),
        "{}",
        r.stderr
    );
    // a layout that does not exist, for reading
    env.cmd(&["resolve", "oci:./nope:v1"]).run().expect_code(1);
    // a tag that does not exist
    env.cmd(&["push", "a.txt", "--to", "oci:./l2:v1"])
        .run()
        .ok();
    let r = env.cmd(&["pull", "oci:./l2:v9", "-o", "out"]).run();
    r.expect_code(1);
    assert!(r.stderr.contains("not found"), "{}", r.stderr);
}

#[test]
fn corrupt_blob_in_the_registry_is_refused_and_nothing_is_written() {
    let mut reg = Registry::start(Flavor::Plain);
    let env = Env::new();
    let f = env.path().join("app.bin");
    random_file(&f, 1 << 20, 3);
    let target = format!("{}/app:v1", reg.host);
    env.cmd(&["--plain-http", "push", "app.bin", "--to", &target])
        .run()
        .ok();

    // surgery: flip one byte of the stored blob, same length
    let hex = sha256_file(&f);
    let data = reg.blob_data_path(&hex);
    let mut bytes = fs::read(&data).unwrap();
    bytes[1000] ^= 0xff;
    fs::write(&data, &bytes).unwrap();
    reg.restart();

    let out = env.path().join("out");
    let r = env
        .cmd(&["--plain-http", "pull", &target, "-o", "out"])
        .run();
    r.expect_code(10);
    assert!(
        r.stderr.contains("digest mismatch") && r.stderr.contains(&hex),
        "{}",
        r.stderr
    );
    assert_eq!(
        r.stderr.lines().filter(|l| l.starts_with("error:")).count(),
        1
    );
    let left: Vec<_> = fs::read_dir(&out).map(|d| d.collect()).unwrap_or_default();
    assert!(
        left.is_empty(),
        "nothing partial in the output folder: {left:?}"
    );
}

#[test]
fn inspect_shows_files_and_annotations() {
    let env = Env::new();
    fs::write(env.path().join("a.txt"), "hello").unwrap();
    env.cmd(&[
        "push",
        "a.txt",
        "--to",
        "oci:./l:v1",
        "-a",
        "com.example.team=web",
    ])
    .run()
    .ok();
    let r = env.cmd(&["inspect", "oci:./l:v1", "--json"]).run();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["entries"][0]["title"], "a.txt");
    assert_eq!(v["entries"][0]["size"], 5);
    assert_eq!(v["annotations"]["com.example.team"], "web");
    assert_eq!(v["artifact_type"], "application/vnd.sealpack.artifact.v1");
    let text = env.cmd(&["inspect", "oci:./l:v1"]).run();
    assert!(
        text.stdout.contains("a.txt") && text.stdout.contains("Evidence:"),
        "{}",
        text.stdout
    );
}

#[test]
fn push_to_a_new_repository_mounts_known_blobs() {
    let reg = Registry::start(Flavor::Plain);
    let env = Env::new();
    random_file(&env.path().join("app.bin"), 2 << 20, 21);
    env.cmd(&[
        "--plain-http",
        "push",
        "app.bin",
        "--to",
        &format!("{}/team/a:v1", reg.host),
    ])
    .run()
    .ok();
    reg.clear_requests();
    let run = env
        .cmd(&[
            "--plain-http",
            "push",
            "app.bin",
            "--to",
            &format!("{}/team/b:v1", reg.host),
            "--json",
        ])
        .run();
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["layers"][0]["transfer"], "mounted", "{}", run.stdout);
    assert_eq!(v["bytes_uploaded"], 0);
    let reqs = reg.requests();
    assert!(
        reqs.iter()
            .any(|l| l.method == "POST" && l.path.contains("mount=") && l.status == 201),
        "{reqs:#?}"
    );
    assert!(
        reqs.iter().all(|l| !l.is_blob_write()),
        "no blob bytes sent: {reqs:#?}"
    );
    // and the mounted artifact pulls back intact
    env.cmd(&[
        "--plain-http",
        "pull",
        &format!("{}/team/b:v1", reg.host),
        "-o",
        "out",
    ])
    .run()
    .ok();
    assert_eq!(
        sha256_file(&env.path().join("out/app.bin")),
        sha256_file(&env.path().join("app.bin"))
    );
}

#[test]
fn a_folder_that_cannot_be_packed_is_a_usage_error() {
    let env = Env::new();
    let site = env.path().join("site");
    fs::create_dir(&site).unwrap();
    fs::write(site.join("index.html"), "x").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", site.join("escape")).unwrap();
    let r = env.cmd(&["push", "site", "--to", "oci:./l:v1"]).run();
    r.expect_code(2);
    assert!(r.stderr.contains("escape"), "{}", r.stderr);
    assert!(!env.path().join("l").exists(), "nothing written");
}

/// A layout whose folder layer holds a path escape (made by Python's tarfile, as an attacker would): pull
/// refuses it (exit 10) and the output folder stays empty.
#[test]
fn hostile_folder_layer_is_refused_and_nothing_is_written() {
    use sealpack::oci::{Descriptor, annotations, media};
    let env = Env::new();
    let evil = env.path().join("evil.tar.gz");
    let script = format!(
        "import tarfile, io\nt = tarfile.open('{}', 'w:gz')\nfor name, data in [('site/ok.txt', b'ok'), ('site/../../escaped.txt', b'pwned')]:\n    i = tarfile.TarInfo(name); i.size = len(data); t.addfile(i, io.BytesIO(data))\nt.close()\n",
        evil.display()
    );
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let bytes = fs::read(&evil).unwrap();
    let mut layer = Descriptor::new(
        media::LAYER_TAR_GZIP,
        sealpack::Digest::of(&bytes),
        bytes.len() as u64,
    );
    layer.annotations = Some(
        [
            (annotations::TITLE, "site"),
            (annotations::ORAS_UNPACK, "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    );
    common::cli::write_layout_artifact(&env.path().join("l"), "v1", vec![(layer, bytes)]);
    let r = env.cmd(&["pull", "oci:./l:v1", "-o", "out"]).run();
    r.expect_code(10);
    assert!(r.stderr.contains("escaped.txt"), "{}", r.stderr);
    assert!(!env.path().join("escaped.txt").exists());
    let left: Vec<_> = fs::read_dir(env.path().join("out")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

/// `credHelpers` in docker's config.json: sealpack runs `docker-credential-NAME get` and uses what it answers.
#[test]
fn credential_helper_from_docker_config() {
    let reg = Registry::start(Flavor::Basic);
    let env = Env::new();
    fs::write(env.path().join("a.txt"), "helper").unwrap();
    let bin = env.path().join("bin");
    fs::create_dir(&bin).unwrap();
    let helper = bin.join("docker-credential-sealpacktest");
    fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\necho \"$server\" >> {}/helper.log\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{}\",\"Secret\":\"{}\"}}' \"$server\"\n",
            env.path().display(),
            reg.username.clone().unwrap(),
            reg.password.clone().unwrap()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(
        env.docker.join("config.json"),
        format!(r#"{{"credHelpers":{{"{}":"sealpacktest"}}}}"#, reg.host),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let target = format!("{}/private/app:v1", reg.host);
    let r = env
        .cmd(&["--plain-http", "push", "a.txt", "--to", &target])
        .env("PATH", &path)
        .run();
    r.ok();
    let asked = fs::read_to_string(env.path().join("helper.log")).unwrap();
    assert!(
        asked.contains(&reg.host),
        "the helper was asked for {}: {asked}",
        reg.host
    );
}
