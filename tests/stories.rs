//! Every artifact kind from build to production (issue 8), one story each on a REAL registry
//! (`docker-registry`, plain HTTP): push -> sign -> attest (SLSA provenance and a CycloneDX SBOM) -> verify with a
//! policy requiring all three -> deploy to staging -> promote the same digest to production -> deploy a second
//! version -> roll back -> history shows it. Container images take the path that fits them: deploy refuses them,
//! promote goes by a signed deployment record.
//!
//! The kinds: a zip file, a static-site folder, a single binary, an OCI container image (umoci + skopeo), a qcow2
//! VM image (peak RSS measured with `/usr/bin/time -v`), an .apk-like mobile build, and a model bundle pushed
//! with `--layer-per-file`.

mod common;

use std::cell::RefCell;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::cli::{
    Run, TEST_PASSWORD, TestEnv as Env, bin, random_file, sha256_file, tree_digests,
};
use common::registry::{Flavor, Registry};

const C1: &str = "1111111111111111111111111111111111111111";
const C2: &str = "2222222222222222222222222222222222222222";
const SOURCE: &str = "git+https://example.com/acme/stories";
const BUILDER: &str = "https://ci.example.com/acme/stories/release";
const PROVENANCE: &str = "https://slsa.dev/provenance/v1";
const CYCLONEDX: &str = "https://cyclonedx.org/bom";
const PROMOTION: &str = "https://github.com/sealpack/sealpack/promotion/v1";
const DEPLOYMENT: &str = "https://github.com/sealpack/sealpack/deployment/v1";

/// A registry, a working folder with the release key, and the policy (signature + provenance + SBOM) scoped to
/// the registry's `stories/*` repositories.
struct Story {
    reg: Registry,
    env: Env,
    /// Run every command under `/usr/bin/time -v` and keep (command, peak RSS in KiB).
    measure: bool,
    rss: RefCell<Vec<(String, u64)>>,
}

impl Story {
    fn new() -> Story {
        let reg = Registry::start(Flavor::Plain);
        let env = Env::new();
        env.keygen("rel", "ecdsa-p256");
        let policy = format!(
            r#"version = 1

[defaults]
deny_unmatched = true

[[keys]]
id = "rel"
path = "rel.pub"
roles = ["release", "builder"]

[[rules]]
scope = "{host}/stories/*"
signatures = {{ threshold = 1, roles = ["release"] }}

[[rules.attestations]]
type = "{PROVENANCE}"
signed_by = ["builder"]
source = "{SOURCE}"
ref = "refs/tags/v*"
require_commit = true

[[rules.attestations]]
type = "{CYCLONEDX}"
signed_by = ["builder"]
"#,
            host = reg.host
        );
        fs::write(env.path().join("policy.toml"), policy).unwrap();
        Story {
            reg,
            env,
            measure: false,
            rss: RefCell::new(Vec::new()),
        }
    }

    fn path(&self) -> &Path {
        self.env.path()
    }

    /// `HOST/stories/NAME`.
    fn repo(&self, name: &str) -> String {
        format!("{}/stories/{name}", self.reg.host)
    }

    /// `sealpack --plain-http ARGS` with the key password, in the working folder.
    fn sp(&self, args: &[&str]) -> Run {
        let mut all = vec!["--plain-http"];
        all.extend_from_slice(args);
        if !self.measure {
            return self.env.sp(&all);
        }
        let mut cmd = Command::new("/usr/bin/time");
        cmd.arg("-v")
            .arg(bin())
            .args(&all)
            .current_dir(self.path())
            .env("DOCKER_CONFIG", &self.env.docker)
            .env("SEALPACK_CACHE_DIR", self.env.docker.join("sealpack-cache"))
            .env("SEALPACK_PASSWORD", TEST_PASSWORD)
            .env_remove("SOURCE_DATE_EPOCH")
            .env_remove("COSIGN_PASSWORD")
            .stdin(Stdio::null());
        let out = cmd.output().expect("run /usr/bin/time");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let kib = stderr
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("Maximum resident set size (kbytes): ")
            })
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no peak RSS in {stderr}"));
        self.rss.borrow_mut().push((args[0].to_string(), kib));
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr,
        }
    }

    /// The build side for `NAME:VERSION`: push (with `push_args` before `--to`), sign, attest provenance and the
    /// SBOM, and pass the policy. Returns `REPO@sha256:...`.
    fn build(&self, name: &str, version: &str, commit: &str, push_args: &[&str]) -> String {
        let to = format!("{}:{version}", self.repo(name));
        let mut args = vec!["push"];
        args.extend_from_slice(push_args);
        args.extend(["--to", &to, "--commit", commit]);
        let pinned = self.sp(&args).ok();
        assert!(pinned.starts_with(&self.repo(name)), "{pinned}");
        self.sign_attest_verify(&pinned, version, commit, true);
        pinned
    }

    /// Sign, attest provenance (and the SBOM sealpack makes, with `sbom`), and verify with the policy.
    fn sign_attest_verify(&self, pinned: &str, version: &str, commit: &str, sbom: bool) {
        self.sp(&["sign", pinned, "--key", "rel.key"]).ok();
        let source = format!("{SOURCE}@refs/tags/{version}");
        self.sp(&[
            "attest",
            pinned,
            "--key",
            "rel.key",
            "--provenance",
            "--commit",
            commit,
            "--source-uri",
            &source,
            "--builder-id",
            BUILDER,
        ])
        .ok();
        if sbom {
            self.sp(&["attest", pinned, "--key", "rel.key", "--sbom"])
                .ok();
        }
        if sbom {
            assert_eq!(self.verify(pinned).ok(), pinned);
        }
    }

    fn verify(&self, reference: &str) -> Run {
        self.sp(&["verify", reference, "--policy", "policy.toml"])
    }

    /// The host side: deploy v1 to staging, promote it to production, deploy v2 to staging (`on_v2` sees staging's
    /// `current` then), roll back, and check history. Staging and production end on v1; returns their folders.
    fn ship(
        &self,
        name: &str,
        v1: &str,
        v2: &str,
        deploy_args: &[&str],
        on_v2: &dyn Fn(&Path),
    ) -> (PathBuf, PathBuf) {
        let repo = self.repo(name);
        let deploy = |reference: &str| {
            let mut args = vec![
                "deploy",
                reference,
                "--env",
                "staging",
                "--target",
                "stg",
                "--policy",
                "policy.toml",
            ];
            args.extend_from_slice(deploy_args);
            self.sp(&args)
        };
        let (stg, prod) = (self.path().join("stg"), self.path().join("prod"));

        let r = deploy(&format!("{repo}:v1"));
        assert_eq!(r.ok(), v1);
        assert!(r.stderr.contains("verified:"), "{}", r.stderr);
        assert_eq!(current(&stg).as_deref(), Some(digest_of(v1)));

        let mut args = vec![
            "promote",
            &repo,
            "--from",
            "staging",
            "--to",
            "production",
            "--from-target",
            "stg",
            "--target",
            "prod",
            "--policy",
            "policy.toml",
            "--sign-key",
            "rel.key",
        ];
        args.extend_from_slice(deploy_args);
        assert_eq!(self.sp(&args).ok(), v1);
        assert_eq!(
            current(&prod),
            current(&stg),
            "production runs staging's digest"
        );
        self.sp(&[
            "verify-attestation",
            v1,
            "--key",
            "rel.pub",
            "--type",
            PROMOTION,
        ])
        .ok();

        assert_eq!(deploy(&format!("{repo}:v2")).ok(), v2);
        assert_eq!(current(&stg).as_deref(), Some(digest_of(v2)));
        on_v2(&stg.join("current"));

        let mut args = vec![
            "rollback",
            "--env",
            "staging",
            "--target",
            "stg",
            "--policy",
            "policy.toml",
        ];
        args.extend_from_slice(deploy_args);
        let r = self.sp(&args);
        assert_eq!(r.ok(), v1);
        assert!(r.stderr.contains("reused releases/"), "{}", r.stderr);
        assert_eq!(current(&stg).as_deref(), Some(digest_of(v1)));

        let h = self.history("stg");
        assert_eq!(
            h,
            vec![
                (
                    "rollback".to_string(),
                    digest_of(v1).to_string(),
                    C1.to_string()
                ),
                (
                    "deploy".to_string(),
                    digest_of(v2).to_string(),
                    C2.to_string()
                ),
                (
                    "deploy".to_string(),
                    digest_of(v1).to_string(),
                    C1.to_string()
                ),
            ]
        );
        assert_eq!(
            self.history("prod"),
            vec![(
                "promote".to_string(),
                digest_of(v1).to_string(),
                C1.to_string()
            )]
        );
        let text = self.sp(&["history", "--env", "staging", "--target", "stg"]);
        assert!(text.ok().contains(&digest_of(v1)[7..19]), "{}", text.stdout);
        (stg, prod)
    }

    /// (action, digest, commit) of the switches in a target's history, newest first (health results left out).
    fn history(&self, target: &str) -> Vec<(String, String, String)> {
        let r = self.sp(&["history", "--target", target, "--json"]);
        r.expect_code(0);
        let events: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).unwrap();
        events
            .iter()
            .filter(|e| e["action"] != "health")
            .map(|e| {
                (
                    e["action"].as_str().unwrap().to_string(),
                    e["digest"].as_str().unwrap().to_string(),
                    e["commit"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// The verified CycloneDX statement of `pinned`.
    fn sbom(&self, pinned: &str) -> serde_json::Value {
        let r = self.sp(&[
            "verify-attestation",
            pinned,
            "--key",
            "rel.pub",
            "--type",
            "cyclonedx",
            "--json",
        ]);
        r.expect_code(0);
        serde_json::from_str(&r.stdout).unwrap()
    }
}

/// The digest `DIR/current` points at (`sha256:<hex>`), if any.
fn current(dir: &Path) -> Option<String> {
    fs::read_link(dir.join("current")).ok().map(|t| {
        format!(
            "sha256:{}",
            t.strip_prefix("releases").unwrap().to_str().unwrap()
        )
    })
}

fn digest_of(pinned: &str) -> &str {
    pinned.split('@').nth(1).unwrap()
}

/// Runs `program args` in `dir` and insists it succeeds; returns stdout.
fn run_tool(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Zips `entries` (name, file to read) into `dest` with Python's zipfile, deflated, fixed timestamps.
fn zip(dest: &Path, entries: &[(String, PathBuf)]) {
    let list: Vec<String> = entries
        .iter()
        .map(|(n, p)| format!("({n:?}, {:?})", p.display().to_string()))
        .collect();
    let script = format!(
        "import zipfile\nwith zipfile.ZipFile({:?}, 'w', zipfile.ZIP_DEFLATED) as z:\n    for n, p in [{}]:\n        i = zipfile.ZipInfo(n, (2024, 1, 1, 0, 0, 0))\n        i.compress_type = zipfile.ZIP_DEFLATED\n        z.writestr(i, open(p, 'rb').read())\n",
        dest.display().to_string(),
        list.join(", ")
    );
    run_tool(Path::new("/"), "python3", &["-c", &script]);
}

/// Every file below `root` as (relative path, path).
fn files_of(root: &Path) -> Vec<(String, PathBuf)> {
    tree_digests(root)
        .into_keys()
        .map(|rel| (rel.clone(), root.join(rel)))
        .collect()
}

/// A copy of testdata/site at `dest` with a version file.
fn site(dest: &Path, version: &str) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/site");
    for (rel, p) in files_of(&src) {
        let to = dest.join(&rel);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(p, to).unwrap();
    }
    fs::write(dest.join("version.txt"), version).unwrap();
}

#[test]
fn zip_file() {
    let s = Story::new();
    let mut built = Vec::new();
    for (v, c) in [("v1", C1), ("v2", C2)] {
        let dir = s.path().join(format!("site-{v}"));
        site(&dir, v);
        fs::create_dir_all(s.path().join(v)).unwrap();
        let zip_path = s.path().join(v).join("site.zip");
        zip(&zip_path, &files_of(&dir));
        let pinned = s.build("zip", v, c, &[&zip_path.display().to_string()]);
        built.push((pinned, sha256_file(&zip_path)));
    }
    let (v1, v2) = (&built[0], &built[1]);
    let (stg, prod) = s.ship("zip", &v1.0, &v2.0, &[], &|cur| {
        assert_eq!(sha256_file(&cur.join("site.zip")), v2.1);
    });
    // deployed as the same file: the sha256 of the zip that was built
    for t in [&stg, &prod] {
        assert_eq!(sha256_file(&t.join("current/site.zip")), v1.1);
        assert_eq!(fs::read_dir(t.join("current")).unwrap().count(), 1);
    }
    // the SBOM names the zip with its sha256
    let sbom = s.sbom(&v1.0);
    assert!(sbom.to_string().contains(&v1.1), "{sbom}");
}

#[test]
fn static_site_folder() {
    let s = Story::new();
    site(&s.path().join("site"), "v1");
    let v1 = s.build("site", "v1", C1, &["site"]);
    let built_v1 = tree_digests(&s.path().join("site"));
    fs::write(s.path().join("site/version.txt"), "v2").unwrap();
    let v2 = s.build("site", "v2", C2, &["site"]);
    let built_v2 = tree_digests(&s.path().join("site"));
    let (stg, prod) = s.ship("site", &v1, &v2, &[], &|cur| {
        assert_eq!(tree_digests(&cur.join("site")), built_v2);
    });
    // unpacked on deploy: every file with the sha256 it was built with
    for t in [&stg, &prod] {
        assert_eq!(tree_digests(&t.join("current/site")), built_v1);
    }
    assert!(built_v1.len() >= 6, "{built_v1:?}");
    // the SBOM lists every file inside the folder layer
    let sbom = s.sbom(&v1).to_string();
    for (rel, sha) in &built_v1 {
        assert!(sbom.contains(&format!("site/{rel}")), "{rel} missing");
        assert!(sbom.contains(sha.as_str()), "{rel}'s sha256 missing");
    }
}

#[test]
fn single_binary() {
    let s = Story::new();
    let bin_path = s.path().join("hello");
    let mut built = Vec::new();
    for (v, c) in [("v1", C1), ("v2", C2)] {
        fs::write(&bin_path, format!("#!/bin/sh\necho \"hello {v}\"\n")).unwrap();
        fs::set_permissions(&bin_path, fs::Permissions::from_mode(0o755)).unwrap();
        built.push((s.build("hello", v, c, &["hello"]), sha256_file(&bin_path)));
    }
    // the health command runs the binary inside the new release
    let health = ["--health-cmd", "./hello | grep -q '^hello v'"];
    let (stg, prod) = s.ship("hello", &built[0].0, &built[1].0, &health, &|cur| {
        assert_eq!(run_tool(cur, "./hello", &[]), "hello v2\n");
    });
    for t in [&stg, &prod] {
        let exe = t.join("current/hello");
        assert_eq!(
            fs::metadata(&exe).unwrap().permissions().mode() & 0o777,
            0o755
        );
        assert_eq!(sha256_file(&exe), built[0].1);
        assert_eq!(run_tool(&t.join("current"), "./hello", &[]), "hello v1\n");
    }
    // the health command ran and passed for each switch
    let r = s.sp(&["history", "--target", "stg", "--json"]);
    let events: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).unwrap();
    let passed = events
        .iter()
        .filter(|e| e["action"] == "health" && e["status"] == "passed")
        .count();
    assert_eq!(passed, 3, "{}", r.stdout);
}

/// An OCI image built with umoci into a layout and pushed with skopeo, tagged `v1` in `repo`.
fn container_image(s: &Story, repo: &str) -> String {
    let dir = s.path();
    run_tool(dir, "umoci", &["init", "--layout", "img"]);
    run_tool(dir, "umoci", &["new", "--image", "img:v1"]);
    fs::write(dir.join("app.txt"), "served by the image\n").unwrap();
    run_tool(
        dir,
        "umoci",
        &[
            "insert",
            "--rootless",
            "--image",
            "img:v1",
            "app.txt",
            "/srv/app.txt",
        ],
    );
    run_tool(
        dir,
        "umoci",
        &["config", "--image", "img:v1", "--config.cmd", "/srv/app"],
    );
    run_tool(
        dir,
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            "oci:img:v1",
            &format!("docker://{repo}:v1"),
        ],
    );
    let digest = s.sp(&["resolve", &format!("{repo}:v1")]).ok();
    format!("{repo}@{digest}")
}

/// An image SBOM as an image builder's tool would write it (sealpack's own `--sbom` lists file artifacts).
fn image_sbom(s: &Story, pinned: &str) {
    let sbom = serde_json::json!({
        "bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
        "metadata": {"component": {"type": "container", "name": pinned}},
        "components": [{"type": "file", "name": "/srv/app.txt",
            "hashes": [{"alg": "SHA-256", "content": sha256_file(&s.path().join("app.txt"))}]}],
    });
    fs::write(s.path().join("image-sbom.json"), sbom.to_string()).unwrap();
    s.sp(&[
        "attest",
        pinned,
        "--key",
        "rel.key",
        "--predicate",
        "image-sbom.json",
        "--type",
        "cyclonedx",
    ])
    .ok();
}

/// What the cluster's deployer records when staging runs the image: a deployment record signed by a trusted key
/// (sealpack writes the same with `deploy --sign-key` for file artifacts).
fn deployment_record(s: &Story, pinned: &str) {
    let record = serde_json::json!({
        "digest": digest_of(pinned), "environment": "staging", "deployedAt": "2026-01-01T00:00:00Z",
        "deployedBy": "deployer (test)", "target": "k8s://staging/web",
    });
    fs::write(s.path().join("deployment.json"), record.to_string()).unwrap();
    s.sp(&[
        "attest",
        pinned,
        "--key",
        "rel.key",
        "--predicate",
        "deployment.json",
        "--type",
        DEPLOYMENT,
    ])
    .ok();
}

#[test]
fn oci_container_image() {
    let s = Story::new();
    let repo = s.repo("image");
    let pinned = container_image(&s, &repo);
    s.sign_attest_verify(&pinned, "v1", C1, false);
    // sealpack's file SBOM is for file artifacts; the image's SBOM comes from the image tooling
    let r = s.sp(&["attest", &pinned, "--key", "rel.key", "--sbom"]);
    r.expect_code(1);
    assert!(r.stderr.contains("container image"), "{}", r.stderr);
    image_sbom(&s, &pinned);
    assert_eq!(s.verify(&format!("{repo}:v1")).ok(), pinned);

    // deploy is for file artifacts and says so; nothing is created in the target
    let r = s.sp(&[
        "deploy",
        &format!("{repo}:v1"),
        "--env",
        "staging",
        "--target",
        "stg",
        "--policy",
        "policy.toml",
    ]);
    r.expect_code(1);
    assert!(r.stderr.contains("container image"), "{}", r.stderr);
    assert_eq!(current(&s.path().join("stg")), None);

    // production pulls from its own repository: copy carries the image with its signatures and attestations
    // (same manifest bytes, same digest), and the policy passes there too
    deployment_record(&s, &pinned);
    let prod_repo = s.repo("image-prod");
    let copied = s.sp(&["copy", &format!("{repo}:v1"), &prod_repo]).ok();
    assert_eq!(copied, format!("{prod_repo}@{}", digest_of(&pinned)));
    assert_eq!(s.verify(&format!("{prod_repo}:v1")).ok(), copied);

    // promote there: the cluster runs it in staging (the signed deployment record, copied along, says so);
    // production gets that digest, re-verified, with a signed promotion statement (no --target: a container
    // runtime runs it)
    let r = s.sp(&[
        "promote",
        &format!("{prod_repo}:v1"),
        "--from",
        "staging",
        "--to",
        "production",
        "--policy",
        "policy.toml",
        "--sign-key",
        "rel.key",
    ]);
    assert_eq!(r.ok(), copied);
    assert!(r.stderr.contains("deployment record"), "{}", r.stderr);
    s.sp(&[
        "verify-attestation",
        &copied,
        "--key",
        "rel.pub",
        "--type",
        PROMOTION,
    ])
    .ok();
    // without a record for the source environment, promote refuses (exit 10)
    let r = s.sp(&[
        "promote",
        &copied,
        "--from",
        "qa",
        "--to",
        "production",
        "--policy",
        "policy.toml",
        "--sign-key",
        "rel.key",
    ]);
    r.expect_code(10);
    // the image is untouched: skopeo still reads it, same digest
    let inspected = run_tool(
        s.path(),
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{prod_repo}:v1"),
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&inspected).unwrap();
    assert_eq!(v["Digest"], digest_of(&pinned));
}

#[test]
fn vm_image_qcow2() {
    let mut s = Story::new();
    s.measure = true;
    // a 512 MiB virtual disk with 96 MiB written: the qcow2 file holds only what was written
    let mut built = Vec::new();
    for (v, c) in [("v1", C1), ("v2", C2)] {
        let dir = s.path().join(v);
        fs::create_dir(&dir).unwrap();
        run_tool(
            &dir,
            "qemu-img",
            &["create", "-q", "-f", "qcow2", "disk.qcow2", "512M"],
        );
        let pattern = if v == "v1" { "0x11" } else { "0x22" };
        for (off, len) in [("0", "32M"), ("200M", "32M"), ("480M", "32M")] {
            run_tool(
                &dir,
                "qemu-io",
                &[
                    "-f",
                    "qcow2",
                    "-c",
                    &format!("write -q -P {pattern} {off} {len}"),
                    "disk.qcow2",
                ],
            );
        }
        let disk = dir.join("disk.qcow2");
        let size = fs::metadata(&disk).unwrap().len();
        assert!(size > 96 << 20 && size < 128 << 20, "{size}");
        let pinned = s.build("vm", v, c, &[&disk.display().to_string()]);
        built.push((pinned, sha256_file(&disk), size));
    }
    let (stg, prod) = s.ship("vm", &built[0].0, &built[1].0, &[], &|cur| {
        assert_eq!(sha256_file(&cur.join("disk.qcow2")), built[1].1);
    });
    for t in [&stg, &prod] {
        let disk = t.join("current/disk.qcow2");
        let m = fs::metadata(&disk).unwrap();
        assert_eq!(sha256_file(&disk), built[0].1);
        // no blow-up on disk: the deployed file takes about its real size
        assert_eq!(m.len(), built[0].2);
        assert!(
            m.blocks() * 512 <= m.len() + (1 << 20),
            "{} blocks",
            m.blocks()
        );
        let info = run_tool(&t.join("current"), "qemu-img", &["info", "disk.qcow2"]);
        assert!(info.contains("virtual size: 512 MiB"), "{info}");
    }
    // memory: push and deploy stream; their peak RSS stays far below the 100+ MiB they moved. (Commands that
    // open the encrypted key -- sign, attest, promote -- peak higher: cosign's scrypt KDF alone takes 64 MiB.)
    let rss = s.rss.borrow();
    let peak = |cmd: &str| {
        rss.iter()
            .filter(|(c, _)| c == cmd)
            .map(|(_, k)| *k)
            .max()
            .unwrap_or_else(|| panic!("{cmd} not measured"))
    };
    for cmd in ["push", "deploy", "rollback", "promote", "sign"] {
        eprintln!("{cmd}: peak RSS {} KiB", peak(cmd));
    }
    for cmd in ["push", "deploy", "rollback"] {
        assert!(peak(cmd) < 64 * 1024, "{cmd} peaked at {} KiB", peak(cmd));
    }
}

#[test]
fn mobile_build_apk() {
    let s = Story::new();
    const APK: &str = "application/vnd.android.package-archive";
    let mut built = Vec::new();
    for (v, c) in [("v1", C1), ("v2", C2)] {
        let src = s.path().join(format!("apk-{v}"));
        let files = [
            (
                "AndroidManifest.xml",
                format!("<manifest package=\"com.example.app\" versionName=\"{v}\"/>"),
            ),
            ("classes.dex", format!("dex\n035\0{v}")),
            ("resources.arsc", "arsc".to_string()),
            ("res/layout/main.xml", "<LinearLayout/>".to_string()),
            ("res/values/strings.xml", "<resources/>".to_string()),
            (
                "META-INF/MANIFEST.MF",
                "Manifest-Version: 1.0\n".to_string(),
            ),
        ];
        for (n, body) in &files {
            let p = src.join(n);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, body).unwrap();
        }
        fs::create_dir(s.path().join(v)).unwrap();
        let apk = s.path().join(v).join("app-release.apk");
        zip(
            &apk,
            &files
                .iter()
                .map(|(n, _)| (n.to_string(), src.join(n)))
                .collect::<Vec<_>>(),
        );
        let apk_s = apk.display().to_string();
        let pinned = s.build("android", v, c, &["--artifact-type", APK, &apk_s]);
        built.push((pinned, sha256_file(&apk)));
    }
    let r = s.sp(&["inspect", &built[0].0, "--json"]);
    assert!(
        r.ok().contains(APK) || r.stdout.contains(APK),
        "{}",
        r.stdout
    );
    let (stg, prod) = s.ship("android", &built[0].0, &built[1].0, &[], &|cur| {
        assert_eq!(sha256_file(&cur.join("app-release.apk")), built[1].1);
    });
    for t in [&stg, &prod] {
        assert_eq!(sha256_file(&t.join("current/app-release.apk")), built[0].1);
    }
    // still a zip with its entries
    let listed = run_tool(
        s.path(),
        "python3",
        &[
            "-c",
            "import sys, zipfile; print('\\n'.join(zipfile.ZipFile(sys.argv[1]).namelist()))",
            &stg.join("current/app-release.apk").display().to_string(),
        ],
    );
    assert!(listed.contains("classes.dex") && listed.contains("res/layout/main.xml"));
}

#[test]
fn model_bundle_layer_per_file() {
    let s = Story::new();
    let model = s.path().join("model");
    fs::create_dir_all(model.join("weights")).unwrap();
    for i in 1..=3 {
        random_file(&model.join(format!("weights/part-{i:02}.bin")), 64 << 20, i);
    }
    for i in 0..500 {
        let dir = model.join(format!("tokenizer/shard-{}", i % 10));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join(format!("vocab-{i:03}.txt")),
            format!("token {i}\n"),
        )
        .unwrap();
    }
    fs::write(model.join("config.json"), r#"{"version":"v1"}"#).unwrap();
    let built_v1 = tree_digests(&model);
    assert_eq!(built_v1.len(), 504);
    let v1 = s.build("model", "v1", C1, &["--layer-per-file", "model"]);

    // one layer per file, titled by its path under the folder's parent, sorted
    let manifest = fetch_manifest(&s, "model", digest_of(&v1));
    let titles: Vec<String> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            l["annotations"]["org.opencontainers.image.title"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let want: Vec<String> = built_v1.keys().map(|k| format!("model/{k}")).collect();
    let mut sorted = titles.clone();
    sorted.sort();
    assert_eq!(titles, sorted);
    assert_eq!(sorted, want);

    // v2 changes one small file: only that layer is uploaded
    fs::write(model.join("config.json"), r#"{"version":"v2"}"#).unwrap();
    let built_v2 = tree_digests(&model);
    let r = s.sp(&[
        "push",
        "--layer-per-file",
        "model",
        "--to",
        &format!("{}:v2", s.repo("model")),
        "--commit",
        C2,
    ]);
    let v2 = r.ok();
    assert!(r.stderr.contains("503 already present"), "{}", r.stderr);
    s.sign_attest_verify(&v2, "v2", C2, true);

    // pull recreates the tree
    s.sp(&["pull", &v1, "-o", "pulled"]).ok();
    assert_eq!(tree_digests(&s.path().join("pulled/model")), built_v1);

    let (stg, prod) = s.ship("model", &v1, &v2, &[], &|cur| {
        assert_eq!(tree_digests(&cur.join("model")), built_v2);
    });
    for t in [&stg, &prod] {
        assert_eq!(tree_digests(&t.join("current/model")), built_v1);
    }

    // the SBOM lists every file with its sha256
    let sbom = s.sbom(&v1).to_string();
    for (rel, sha) in &built_v1 {
        assert!(sbom.contains(&format!("model/{rel}")), "{rel} missing");
        assert!(sbom.contains(sha.as_str()), "{rel}'s sha256 missing");
    }
}

/// The manifest bytes from the registry's API, parsed.
fn fetch_manifest(s: &Story, name: &str, digest: &str) -> serde_json::Value {
    let out = run_tool(
        s.path(),
        "curl",
        &[
            "-fsS",
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json",
            &format!("http://{}/v2/stories/{name}/manifests/{digest}", s.reg.host),
        ],
    );
    serde_json::from_str(&out).unwrap()
}
