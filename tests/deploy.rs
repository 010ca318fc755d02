//! Deploy, rollback, promote and history (SPEC §7), through the real binary: the story on a real registry, the
//! gate's refusals, health checks, hostile archives, crashes (kill -9 at the pause hooks) and concurrent deploys.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cli::{Run, TEST_PASSWORD, TestEnv as Env, bin, tree_digests};
use common::registry::{Flavor, Registry};

const C1: &str = "1111111111111111111111111111111111111111";
const C2: &str = "2222222222222222222222222222222222222222";
const C3: &str = "3333333333333333333333333333333333333333";

/// The digest `DIR/current` points at (`sha256:<hex>`), if any.
fn current(dir: &Path) -> Option<String> {
    fs::read_link(dir.join("current")).ok().map(|t| {
        format!(
            "sha256:{}",
            t.strip_prefix("releases").unwrap().to_str().unwrap()
        )
    })
}

fn digest_of(pinned: &str) -> String {
    pinned.split('@').nth(1).unwrap().to_string()
}

/// A site folder `name` with a version file, pushed to `to` with `commit` and signed by `key`.
fn push_signed(
    env: &Env,
    flags: &[&str],
    name: &str,
    version: &str,
    to: &str,
    commit: &str,
) -> String {
    let site = env.path().join(name);
    if !site.exists() {
        fs::create_dir_all(site.join("css")).unwrap();
        fs::write(site.join("index.html"), "<h1>app</h1>\n").unwrap();
        fs::write(site.join("css/app.css"), "body{}\n").unwrap();
    }
    fs::write(site.join("version.txt"), version).unwrap();
    let mut args = flags.to_vec();
    args.extend(["push", name, "--to", to, "--commit", commit]);
    let pinned = env.sp(&args).ok();
    let mut args = flags.to_vec();
    args.extend(["sign", to, "--key", "rel.key"]);
    env.sp(&args).ok();
    pinned
}

/// `sealpack ARGS... --env staging --target stg --key rel.pub EXTRA...` in the test folder.
fn staging(env: &Env, args: &[&str], extra: &[&str]) -> Run {
    let mut all = args.to_vec();
    all.extend(["--env", "staging", "--target", "stg", "--key", "rel.pub"]);
    all.extend_from_slice(extra);
    env.sp(&all)
}

/// The history as JSON events.
fn history(env: &Env, target: &str) -> Vec<serde_json::Value> {
    let r = env.sp(&["history", "--target", target, "--json"]);
    r.expect_code(0);
    serde_json::from_str(&r.stdout).unwrap()
}

/// Files under `dir` other than `except`, by relative path (to show nothing was written outside the target).
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| {
            e.unwrap()
                .path()
                .strip_prefix(dir)
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    v.sort();
    v
}

#[test]
fn story_deploy_rollback_promote_history_on_the_registry() {
    let reg = Registry::start(Flavor::Plain);
    let env = Env::new();
    env.keygen("rel", "ecdsa-p256");
    let ph = ["--plain-http"];
    let repo = format!("{}/team/site", reg.host);
    let v1 = push_signed(&env, &ph, "site", "v1", &format!("{repo}:v1"), C1);
    let v2 = push_signed(&env, &ph, "site", "v2", &format!("{repo}:v2"), C2);
    let stg = env.path().join("stg");

    // deploy v1: current serves v1's files, byte for byte
    let r = env.sp(&[
        "--plain-http",
        "deploy",
        &format!("{repo}:v1"),
        "--env",
        "staging",
        "--target",
        "stg",
        "--key",
        "rel.pub",
    ]);
    assert_eq!(r.ok(), v1);
    assert!(
        r.stderr.contains("verified: signature by rel.pub"),
        "{}",
        r.stderr
    );
    assert_eq!(current(&stg).as_deref(), Some(digest_of(&v1).as_str()));
    fs::write(env.path().join("site/version.txt"), "v1").unwrap();
    let built_v1 = tree_digests(&env.path().join("site"));
    assert_eq!(tree_digests(&stg.join("current/site")), built_v1);

    // deploy v2, then roll back: v1 again, the same bytes, and the release folder was reused
    env.sp(&[
        "--plain-http",
        "deploy",
        &format!("{repo}:v2"),
        "--env",
        "staging",
        "--target",
        "stg",
        "--key",
        "rel.pub",
    ])
    .ok();
    assert_eq!(current(&stg).as_deref(), Some(digest_of(&v2).as_str()));
    assert_eq!(
        fs::read_to_string(stg.join("current/site/version.txt")).unwrap(),
        "v2"
    );
    let r = env.sp(&[
        "--plain-http",
        "rollback",
        "--env",
        "staging",
        "--target",
        "stg",
        "--key",
        "rel.pub",
    ]);
    assert_eq!(r.ok(), v1);
    assert!(r.stderr.contains("reused releases/"), "{}", r.stderr);
    assert_eq!(current(&stg).as_deref(), Some(digest_of(&v1).as_str()));
    assert_eq!(tree_digests(&stg.join("current/site")), built_v1);

    // promote what staging runs to production: the identical digest, a signed promotion statement, deployed
    let r = env.sp(&[
        &["--plain-http", "promote", &repo][..],
        &common::cli::PROMOTE_STG_TO_PROD[..],
    ]
    .concat());
    assert_eq!(r.ok(), v1);
    let prod = env.path().join("prod");
    assert_eq!(current(&prod), current(&stg));
    assert_eq!(tree_digests(&prod.join("current/site")), built_v1);
    env.sp(&[
        "--plain-http",
        "verify-attestation",
        &v1,
        "--key",
        "rel.pub",
        "--type",
        "https://github.com/sealpack/sealpack/promotion/v1",
    ])
    .ok();

    // history says all of it, newest first, with versions and commits
    let h = history(&env, "stg");
    let actions: Vec<(&str, &str)> = h
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["commit"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        vec![("rollback", C1), ("deploy", C2), ("deploy", C1)]
    );
    assert_eq!(h[0]["previous"], digest_of(&v2));
    assert_eq!(h[0]["version"], "v1");
    let h = history(&env, "prod");
    assert_eq!(h.len(), 1);
    assert_eq!(h[0]["action"], "promote");
    assert_eq!(h[0]["env"], "production");
    assert_eq!(h[0]["digest"], digest_of(&v1));
    assert_eq!(h[0]["commit"], C1);
    let text = env.sp(&["history", "--env", "staging", "--target", "stg"]);
    text.expect_code(0);
    assert_eq!(text.stdout.lines().count(), 3);
    assert!(
        text.stdout.lines().next().unwrap().contains(&C1[..12]),
        "{}",
        text.stdout
    );

    // a folder serves one environment
    let r = env.sp(&[
        "--plain-http",
        "deploy",
        &format!("{repo}:v2"),
        "--env",
        "production",
        "--target",
        "stg",
        "--key",
        "rel.pub",
    ]);
    r.expect_code(2);
    assert!(r.stderr.contains("\"staging\""), "{}", r.stderr);

    // promoting a digest staging does not run is refused
    let r = env.sp(&[
        "--plain-http",
        "promote",
        &format!("{repo}:v2"),
        "--from",
        "staging",
        "--to",
        "production",
        "--from-target",
        "stg",
        "--key",
        "rel.pub",
        "--sign-key",
        "rel.key",
    ]);
    r.expect_code(10);
    assert!(
        r.stderr.contains("promotion moves the digest staging runs"),
        "{}",
        r.stderr
    );
}

#[test]
fn promote_on_a_signed_deployment_record() {
    let env = Env::new();
    env.keygen("rel", "ecdsa-p256");
    let v1 = push_signed(&env, &[], "site", "v1", "oci:./store:v1", C1);
    // no record yet: refused, and it says what would do
    let r = env.sp(&[
        "promote",
        "oci:./store:v1",
        "--from",
        "staging",
        "--to",
        "production",
        "--key",
        "rel.pub",
        "--sign-key",
        "rel.key",
    ]);
    r.expect_code(10);
    assert!(r.stderr.contains("no deployment record"), "{}", r.stderr);
    staging(
        &env,
        &["deploy", "oci:./store:v1"],
        &["--sign-key", "rel.key"],
    )
    .ok();
    let r = env.sp(&[
        "promote",
        "oci:./store:v1",
        "--from",
        "staging",
        "--to",
        "production",
        "--key",
        "rel.pub",
        "--sign-key",
        "rel.key",
    ]);
    assert_eq!(r.ok(), v1);
    assert!(
        r.stderr.contains("deployment record: staging since"),
        "{}",
        r.stderr
    );
    // a record for another environment does not count
    let r = env.sp(&[
        "promote",
        "oci:./store:v1",
        "--from",
        "qa",
        "--to",
        "production",
        "--key",
        "rel.pub",
        "--sign-key",
        "rel.key",
    ]);
    r.expect_code(10);
}

/// Unsigned, signed by an untrusted key, revoked, or denied by policy: exit 10 and `current` untouched.
#[test]
fn the_gate_refuses_and_current_stays() {
    let env = Env::new();
    env.keygen("rel", "ecdsa-p256");
    env.keygen("other", "ed25519");
    let v1 = push_signed(&env, &[], "site", "v1", "oci:./store:v1", C1);
    staging(&env, &["deploy", "oci:./store:v1"], &[]).ok();
    let before = listing(&env.path().join("stg"));
    let hist_before = history(&env, "stg").len();

    fs::write(env.path().join("site/version.txt"), "unsigned").unwrap();
    env.sp(&[
        "push",
        "site",
        "--to",
        "oci:./store:unsigned",
        "--commit",
        C2,
    ])
    .ok();
    let r = staging(&env, &["deploy", "oci:./store:unsigned"], &[]);
    r.expect_code(10);
    assert!(r.stderr.contains("no signatures found"), "{}", r.stderr);

    let r = env.sp(&[
        "deploy",
        "oci:./store:v1",
        "--env",
        "staging",
        "--target",
        "stg",
        "--key",
        "other.pub",
    ]);
    r.expect_code(10);

    let v3 = push_signed(&env, &[], "site", "v3", "oci:./store:v3", C3);
    env.sp(&[
        "revoke",
        "oci:./store:v3",
        "--key",
        "rel.key",
        "--reason",
        "CVE-2026-0001",
    ])
    .ok();
    let r = staging(&env, &["deploy", "oci:./store:v3"], &[]);
    r.expect_code(10);
    assert!(r.stderr.contains("CVE-2026-0001"), "{}", r.stderr);

    // a policy that wants provenance the artifact does not have
    fs::write(
        env.path().join("policy.toml"),
        "version = 1\n[[keys]]\nid = \"rel\"\npath = \"rel.pub\"\nroles = [\"release\"]\n[[rules]]\nscope = \"oci:*\"\nsignatures = { threshold = 1, roles = [\"release\"] }\n[[rules.attestations]]\ntype = \"https://slsa.dev/provenance/v1\"\nsigned_by = [\"release\"]\n",
    )
    .unwrap();
    let r = env.sp(&[
        "deploy",
        &v1,
        "--env",
        "staging",
        "--target",
        "stg",
        "--policy",
        "policy.toml",
    ]);
    r.expect_code(10);
    assert!(
        r.stderr.contains("https://slsa.dev/provenance/v1"),
        "{}",
        r.stderr
    );

    assert_eq!(listing(&env.path().join("stg")), before);
    assert_eq!(current(&env.path().join("stg")).unwrap(), digest_of(&v1));
    assert_eq!(
        history(&env, "stg").len(),
        hist_before,
        "refusals are not deploys"
    );
    let _ = v3;
}

#[test]
fn failing_health_command_switches_back_and_history_says_so() {
    let env = Env::new();
    env.keygen("rel", "ecdsa-p256");
    let v1 = push_signed(&env, &[], "site", "v1", "oci:./store:v1", C1);
    let v2 = push_signed(&env, &[], "site", "v2", "oci:./store:v2", C2);
    let stg = env.path().join("stg");
    let health = "grep -q v1 site/version.txt || { echo \"v2 answers 500\" >&2; exit 3; }";
    staging(
        &env,
        &["deploy", "oci:./store:v1"],
        &["--health-cmd", health],
    )
    .ok();
    let r = staging(
        &env,
        &["deploy", "oci:./store:v2"],
        &["--health-cmd", health],
    );
    r.expect_code(1);
    assert!(r.stderr.contains("v2 answers 500"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("switched back to {}", digest_of(&v1))),
        "{}",
        r.stderr
    );
    assert_eq!(current(&stg).unwrap(), digest_of(&v1));
    let h = history(&env, "stg");
    let seq: Vec<(String, String)> = h
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        seq,
        [
            ("rollback", "ok"),
            ("health", "failed"),
            ("deploy", "pending-health"),
            ("health", "passed"),
            ("deploy", "pending-health")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    assert!(
        h[0]["detail"]
            .as_str()
            .unwrap()
            .contains("health command failed"),
        "{:?}",
        h[0]
    );
    assert_eq!(h[1]["detail"], "exit 3: v2 answers 500");
    // v2 is not a rollback candidate: it never passed
    staging(&env, &["deploy", "oci:./store:v2"], &[]).ok();
    let r = staging(&env, &["rollback"], &[]);
    assert_eq!(r.ok(), v1);
    let _ = v2;

    // a first deploy whose health fails leaves nothing current, as before
    let r = env.sp(&[
        "deploy",
        "oci:./store:v2",
        "--env",
        "qa",
        "--target",
        "qa",
        "--key",
        "rel.pub",
        "--health-cmd",
        "false",
    ]);
    r.expect_code(1);
    assert!(current(&env.path().join("qa")).is_none());
}

#[test]
fn rollback_skips_revoked_releases() {
    let env = Env::new();
    env.keygen("rel", "ecdsa-p256");
    let v1 = push_signed(&env, &[], "site", "v1", "oci:./store:v1", C1);
    let v2 = push_signed(&env, &[], "site", "v2", "oci:./store:v2", C2);
    let v3 = push_signed(&env, &[], "site", "v3", "oci:./store:v3", C3);
    for v in ["v1", "v2", "v3"] {
        staging(&env, &["deploy", &format!("oci:./store:{v}")], &[]).ok();
    }
    env.sp(&[
        "revoke",
        &v2,
        "--key",
        "rel.key",
        "--reason",
        "leaked key in bundle",
    ])
    .ok();
    let r = staging(&env, &["rollback"], &[]);
    assert_eq!(r.ok(), v1);
    assert!(
        r.stderr
            .contains(&format!("skipped {}", &digest_of(&v2)[7..19])),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("leaked key in bundle"), "{}", r.stderr);
    // --to a revoked digest is refused outright
    let r = staging(&env, &["rollback"], &["--to", &digest_of(&v2)]);
    r.expect_code(10);
    assert_eq!(current(&env.path().join("stg")).unwrap(), digest_of(&v1));
    // --to the newest works
    assert_eq!(
        staging(&env, &["rollback"], &["--to", &digest_of(&v3)]).ok(),
        v3
    );
}

/// A single executable keeps its mode through push and deploy and runs from `current`.
#[test]
fn a_binary_stays_runnable() {
    let env = Env::new();
    env.keygen("rel", "ecdsa-p256");
    let tool = env.path().join("tool");
    fs::write(&tool, "#!/bin/sh\necho tool-ok\n").unwrap();
    fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).unwrap();
    env.sp(&["push", "tool", "--to", "oci:./store:v1", "--commit", C1])
        .ok();
    env.sp(&["sign", "oci:./store:v1", "--key", "rel.key"]).ok();
    staging(
        &env,
        &["deploy", "oci:./store:v1"],
        &["--health-cmd", "./tool | grep -q tool-ok"],
    )
    .ok();
    let out = Command::new(env.path().join("stg/current/tool"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "tool-ok\n");
}

/// Writes a layout at `dir` whose tag `tag` is an artifact with one folder layer `bytes` titled `site`.
fn layout_with_folder_layer(dir: &Path, tag: &str, bytes: Vec<u8>) {
    use sealpack::oci::{Descriptor, annotations, media};
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
    common::cli::write_layout_artifact(dir, tag, vec![(layer, bytes)]);
}

/// A tar.gz made by Python's tarfile (as an attacker would) from `body` (Python using `f`, `d`, `l`, `t`).
fn evil_tar_gz(env: &Env, body: &str, outside: &Path) -> Vec<u8> {
    let path = env.path().join("evil.tar.gz");
    let script = format!(
        r#"import tarfile, io, sys
OUT = {outside:?}
t = tarfile.open(sys.argv[1], 'w:gz')
def f(name, data=b'x', mode=0o644):
    i = tarfile.TarInfo(name); i.size = len(data); i.mode = mode; t.addfile(i, io.BytesIO(data))
def d(name):
    i = tarfile.TarInfo(name); i.type = tarfile.DIRTYPE; i.mode = 0o755; t.addfile(i)
def l(name, target, kind=tarfile.SYMTYPE):
    i = tarfile.TarInfo(name); i.type = kind; i.linkname = target; t.addfile(i)
d('site'); f('site/index.html', b'ok')
{body}
t.close()
"#,
        outside = outside.display().to_string()
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    fs::read(&path).unwrap()
}

#[test]
fn hostile_archives_are_refused_before_current_changes() {
    let env = Env::new();
    env.keygen("rel", "ecdsa-p256");
    let outside = env.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret.txt"), "keep").unwrap();
    let v1 = push_signed(&env, &[], "site", "v1", "oci:./store:v1", C1);
    staging(&env, &["deploy", "oci:./store:v1"], &[]).ok();
    let stg = env.path().join("stg");
    let before = listing(&stg);
    let cases = [
        (
            "dotdot",
            "f('site/../../escaped.txt', b'pwned')",
            "escaped.txt",
        ),
        ("absolute", "f(OUT + '/abs.txt', b'pwned')", "abs.txt"),
        (
            "symlink-then-file",
            "l('site/link', OUT); f('site/link/via-link.txt', b'pwned')",
            "link",
        ),
        (
            "hardlink-out",
            "l('site/hl', OUT + '/secret.txt', tarfile.LNKTYPE)",
            "hl",
        ),
        (
            "hardlink-up",
            "l('site/hl2', '../../../outside/secret.txt', tarfile.LNKTYPE)",
            "hl2",
        ),
        (
            "device",
            "i = tarfile.TarInfo('site/null'); i.type = tarfile.CHRTYPE; i.devmajor = 1; i.devminor = 3; t.addfile(i)",
            "null",
        ),
        (
            "fifo",
            "i = tarfile.TarInfo('site/pipe'); i.type = tarfile.FIFOTYPE; t.addfile(i)",
            "pipe",
        ),
        (
            "bomb",
            "f('site/zeros', bytes(256 << 20))",
            "expands more than",
        ),
        (
            "duplicate",
            "f('site/a.txt', b'one'); f('site/a.txt', b'two')",
            "a.txt",
        ),
    ];
    for (name, body, mention) in cases {
        let bytes = evil_tar_gz(&env, body, &outside);
        if name == "bomb" {
            assert!(bytes.len() < 1 << 20, "a bomb is small: {}", bytes.len());
        }
        layout_with_folder_layer(&env.path().join("store"), name, bytes);
        env.sp(&["sign", &format!("oci:./store:{name}"), "--key", "rel.key"])
            .ok();
        let r = staging(&env, &["deploy", &format!("oci:./store:{name}")], &[]);
        assert_eq!(r.code, 10, "{name}: {}", r.stderr);
        assert!(r.stderr.contains(mention), "{name}: {}", r.stderr);
        assert_eq!(current(&stg).unwrap(), digest_of(&v1), "{name}");
        assert_eq!(listing(&stg), before, "{name}: the target changed");
        assert_eq!(
            listing(&outside),
            vec!["".to_string(), "secret.txt".into()],
            "{name}: wrote outside"
        );
        assert_eq!(
            fs::read_to_string(outside.join("secret.txt")).unwrap(),
            "keep"
        );
        assert!(!env.path().join("escaped.txt").exists());
    }
    // setuid and setgid bits never survive into a release
    let bytes = evil_tar_gz(&env, "f('site/suid', b'#!/bin/sh\\n', 0o6755)", &outside);
    layout_with_folder_layer(&env.path().join("store"), "suid", bytes);
    env.sp(&["sign", "oci:./store:suid", "--key", "rel.key"])
        .ok();
    let r = staging(&env, &["deploy", "oci:./store:suid"], &[]);
    if r.code == 0 {
        let mode = fs::metadata(stg.join("current/site/suid"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7000, 0, "setuid kept: {mode:o}");
    } else {
        assert_eq!(r.code, 10, "{}", r.stderr);
        assert_eq!(current(&stg).unwrap(), digest_of(&v1));
    }
}

/// Starts a deploy that pauses at `point` and returns it once it is paused there.
fn paused_deploy(env: &Env, reference: &str, target: &str, point: &str) -> std::process::Child {
    let mut child = Command::new(bin())
        .current_dir(env.path())
        .args([
            "deploy", reference, "--env", "staging", "--target", target, "--key", "rel.pub", "-q",
        ])
        .env("DOCKER_CONFIG", &env.docker)
        .env("SEALPACK_CACHE_DIR", env.docker.join("cache"))
        .env("SEALPACK_PASSWORD", TEST_PASSWORD)
        .env("SEALPACK_TEST_PAUSE_AT", point)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let marker: PathBuf = env.path().join(target).join(format!(
        ".sealpack/paused-{}",
        if point == "install" {
            "Install"
        } else {
            "Switched"
        }
    ));
    let start = Instant::now();
    while !marker.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("deploy ended before pausing at {point}: {status}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "never paused at {point}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    fs::remove_file(&marker).unwrap();
    child
}

#[test]
fn kill_9_during_install_and_after_the_switch() {
    let env = Env::new();
    env.keygen("rel", "ecdsa-p256");
    let v1 = push_signed(&env, &[], "site", "v1", "oci:./store:v1", C1);
    // v2 carries a big file so the install is caught mid-transfer
    common::cli::random_file(&env.path().join("site/big.bin"), 32 << 20, 7);
    let v2 = push_signed(&env, &[], "site", "v2", "oci:./store:v2", C2);
    let stg = env.path().join("stg");
    staging(&env, &["deploy", "oci:./store:v1"], &[]).ok();
    let v1_files = tree_digests(&stg.join("current"));

    // killed while the release is being fetched: current is still v1, complete
    let mut child = paused_deploy(&env, "oci:./store:v2", "stg", "install");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(current(&stg).unwrap(), digest_of(&v1));
    assert_eq!(tree_digests(&stg.join("current")), v1_files);
    let leftovers: Vec<String> = listing(&stg.join("releases"))
        .into_iter()
        .filter(|p| p.starts_with(".staging-") && !p.contains('/'))
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "the interrupted staging folder is there: {leftovers:?}"
    );

    // the next deploy cleans up and succeeds
    let r = staging(&env, &["deploy", "oci:./store:v2"], &[]);
    assert_eq!(r.ok(), v2);
    assert!(
        r.stderr.contains("left by an interrupted run"),
        "{}",
        r.stderr
    );
    assert!(
        listing(&stg.join("releases"))
            .iter()
            .all(|p| !p.starts_with(".staging-"))
    );
    let v2_files = tree_digests(&stg.join("current"));

    // killed just after the switch, before history: current is v1, complete; the next run records it
    let mut child = paused_deploy(&env, "oci:./store:v1", "stg", "switched");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(current(&stg).unwrap(), digest_of(&v1));
    assert_eq!(tree_digests(&stg.join("current")), v1_files);
    assert_eq!(
        history(&env, "stg")[0]["digest"],
        digest_of(&v2),
        "not recorded yet"
    );
    let r = staging(&env, &["deploy", "oci:./store:v2"], &[]);
    assert_eq!(r.ok(), v2);
    assert_eq!(tree_digests(&stg.join("current")), v2_files);
    let h = history(&env, "stg");
    assert_eq!(h[0]["action"], "deploy");
    assert_eq!(h[1]["action"], "recover");
    assert_eq!(h[1]["digest"], digest_of(&v1));
    assert_eq!(h[0]["previous"], digest_of(&v1));
}

#[test]
fn two_deploys_to_one_target_never_run_at_once() {
    let env = Env::new();
    env.keygen("rel", "ecdsa-p256");
    let v1 = push_signed(&env, &[], "site", "v1", "oci:./store:v1", C1);
    let v2 = push_signed(&env, &[], "site", "v2", "oci:./store:v2", C2);
    let stg = env.path().join("stg");

    // one holds the lock (paused mid-install); the other waits briefly, then fails clearly
    let mut holder = paused_deploy(&env, "oci:./store:v1", "stg", "install");
    let start = Instant::now();
    let r = staging(&env, &["deploy", "oci:./store:v2"], &["--lock-wait", "1"]);
    r.expect_code(1);
    assert!(start.elapsed() >= Duration::from_secs(1));
    assert!(
        r.stderr.contains("is locked by another run (pid"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("deploying oci:./store:v1"),
        "{}",
        r.stderr
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(current(&stg).is_none());

    // a real race: both start together; each either wins or fails with the lock error; the result is consistent
    let spawn = |v: &str| {
        Command::new(bin())
            .current_dir(env.path())
            .args([
                "deploy",
                &format!("oci:./store:{v}"),
                "--env",
                "staging",
                "--target",
                "stg",
                "--key",
                "rel.pub",
                "--lock-wait",
                "0",
            ])
            .env("DOCKER_CONFIG", &env.docker)
            .env("SEALPACK_CACHE_DIR", env.docker.join("cache"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("v1"), spawn("v2"));
    let runs: Vec<Run> = [a, b]
        .into_iter()
        .map(|c| {
            let o = c.wait_with_output().unwrap();
            Run {
                code: o.status.code().unwrap(),
                stdout: String::from_utf8_lossy(&o.stdout).into(),
                stderr: String::from_utf8_lossy(&o.stderr).into(),
            }
        })
        .collect();
    assert!(runs.iter().any(|r| r.code == 0), "{runs:?}");
    for r in &runs {
        assert!(
            r.code == 0 || r.stderr.contains("is locked by another run"),
            "{r:?}"
        );
    }
    let h = history(&env, "stg");
    let cur = current(&stg).unwrap();
    assert_eq!(
        h[0]["digest"], cur,
        "the last recorded switch is what is current"
    );
    assert!(cur == digest_of(&v1) || cur == digest_of(&v2));
    assert_eq!(h.len(), runs.iter().filter(|r| r.code == 0).count());
    assert!(
        listing(&stg.join("releases"))
            .iter()
            .all(|p| !p.starts_with(".staging-"))
    );
}

#[test]
fn container_images_are_not_deployed() {
    use sealpack::oci::{Descriptor, ImageManifest, RawManifest, media};
    use sealpack::store::{BlobSource, Store, layout::LayoutStore, no_progress};
    let env = Env::new();
    env.keygen("rel", "ecdsa-p256");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = LayoutStore::open(&env.path().join("img"), true)
            .await
            .unwrap();
        let cfg =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let config = Descriptor::new(
            media::OCI_IMAGE_CONFIG,
            sealpack::Digest::of(cfg),
            cfg.len() as u64,
        );
        store
            .put_blob(
                &config,
                BlobSource::Bytes(bytes::Bytes::from_static(cfg)),
                &no_progress,
            )
            .await
            .unwrap();
        let m = ImageManifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.into()),
            artifact_type: None,
            config,
            layers: vec![],
            subject: None,
            annotations: None,
        };
        store
            .put_manifest(&RawManifest::from_image(&m).unwrap(), Some("v1"))
            .await
            .unwrap();
    });
    env.sp(&["sign", "oci:./img:v1", "--key", "rel.key"]).ok();
    let r = staging(&env, &["deploy", "oci:./img:v1"], &[]);
    r.expect_code(1);
    assert!(r.stderr.contains("container image"), "{}", r.stderr);
    assert!(current(&env.path().join("stg")).is_none());
}

#[test]
fn rollback_with_nothing_earlier_is_an_error_and_changes_nothing() {
    let env = Env::new();
    env.keygen("rel", "ecdsa-p256");
    let v1 = push_signed(&env, &[], "site", "v1", "oci:./store:v1", C1);
    let r = staging(&env, &["rollback"], &[]);
    r.expect_code(2);
    assert!(
        r.stderr.contains("not a sealpack deploy target"),
        "{}",
        r.stderr
    );
    assert!(!env.path().join("stg").exists());
    staging(&env, &["deploy", "oci:./store:v1"], &[]).ok();
    let r = staging(&env, &["rollback"], &[]);
    r.expect_code(1);
    assert!(
        r.stderr.contains("a known good release to roll back to"),
        "{}",
        r.stderr
    );
    assert_eq!(current(&env.path().join("stg")).unwrap(), digest_of(&v1));
    assert_eq!(history(&env, "stg").len(), 1);
    // history of a folder that was never a target is a usage error
    env.sp(&["history", "--target", "nowhere"]).expect_code(2);
}
