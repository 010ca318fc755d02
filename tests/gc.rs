//! `sealpack gc` (SPEC §3) through the real binary, on a real registry (delete enabled) and on an OCI layout:
//! v1..v5 pushed, v2 signed, v3 promoted, v1 deployed, v4 attested with an SBOM only; `gc --keep 1 --target DIR`
//! deletes exactly v4 (its manifest, tag and evidence), and everything else still resolves and verifies. A dry run
//! changes nothing; evidence that cannot be read, or a registry refusing DELETE, deletes nothing.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::cli::{Run, TestEnv as Env};
use common::fault_proxy::{Fault, FaultProxy, Rule};
use common::registry::{Flavor, Registry};

const COMMIT: &str = "1111111111111111111111111111111111111111";
const PROMOTION: &str = "https://github.com/sealpack/sealpack/promotion/v1";

fn digest_of(pinned: &str) -> String {
    pinned.split('@').nth(1).unwrap().to_string()
}

/// The repository's story: returns the digests of v1..v5 (index 0 is v1) and the v4 SBOM attestation tag.
struct Story {
    digests: Vec<String>,
}

/// Pushes v1..v5 to `repo` (distinct content, `--created` increasing), signs v2, attaches a promotion statement to
/// v3 (an attestation of that type only: v3 has no signature), an SBOM to v4 (which protects nothing), and deploys
/// v1 to `stg` from a signed copy in a side layout (so v1 in `repo` is protected by the deployment alone).
fn story(env: &Env, flags: &[&str], repo: &str) -> Story {
    env.keygen("rel", "ecdsa-p256");
    let sp = |args: &[&str]| -> Run {
        let mut all = flags.to_vec();
        all.extend_from_slice(args);
        env.sp(&all)
    };
    let mut digests = Vec::new();
    for i in 1..=5 {
        let site = env.path().join(format!("site{i}"));
        fs::create_dir_all(&site).unwrap();
        fs::write(site.join("index.html"), format!("<h1>v{i}</h1>\n")).unwrap();
        let created = format!("2026-01-0{i}T00:00:00Z");
        let to = format!("{repo}:v{i}");
        let pinned = sp(&[
            "push",
            &format!("site{i}"),
            "--to",
            &to,
            "--commit",
            COMMIT,
            "--created",
            &created,
        ])
        .ok();
        digests.push(digest_of(&pinned));
    }
    sp(&["sign", &format!("{repo}:v2"), "--key", "rel.key"]).ok();
    let predicate = format!(
        r#"{{"digest":"{}","from":"staging","to":"production","promotedAt":"2026-11-27T10:00:00Z","promotedBy":"ci@host"}}"#,
        digests[2]
    );
    fs::write(env.path().join("promotion.json"), predicate).unwrap();
    sp(&[
        "attest",
        &format!("{repo}:v3"),
        "--key",
        "rel.key",
        "--predicate",
        "promotion.json",
        "--type",
        PROMOTION,
    ])
    .ok();
    sp(&[
        "attest",
        &format!("{repo}:v4"),
        "--key",
        "rel.key",
        "--sbom",
    ])
    .ok();
    // the same v1 (same bytes, tag and annotations: the same digest) in a side layout, signed there, deployed
    let side = env
        .sp(&[
            "push",
            "site1",
            "--to",
            "oci:./side:v1",
            "--commit",
            COMMIT,
            "--created",
            "2026-01-01T00:00:00Z",
        ])
        .ok();
    assert_eq!(digest_of(&side), digests[0], "the side copy is v1");
    env.sp(&["sign", "oci:./side:v1", "--key", "rel.key"]).ok();
    env.sp(&[
        "deploy",
        "oci:./side:v1",
        "--env",
        "staging",
        "--target",
        "stg",
        "--key",
        "rel.pub",
    ])
    .ok();
    Story { digests }
}

#[derive(serde::Deserialize, Debug)]
struct Report {
    repository: String,
    keep: usize,
    dry_run: bool,
    entries: Vec<Entry>,
    deleted_manifests: usize,
}

#[derive(serde::Deserialize, Debug)]
struct Entry {
    digest: String,
    tags: Vec<String>,
    action: String,
    reasons: Vec<String>,
    #[serde(default)]
    evidence: Vec<String>,
}

fn parse(run: &Run) -> Report {
    run.expect_code(0);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

/// Checks the plan: v4 alone is deleted; the others are kept for the expected reason.
fn check_plan(r: &Report, s: &Story) {
    assert_eq!(r.entries.len(), 5, "{r:?}");
    let by_tag = |t: &str| r.entries.iter().find(|e| e.tags == [t]).unwrap();
    // newest first
    let order: Vec<&str> = r.entries.iter().map(|e| e.tags[0].as_str()).collect();
    assert_eq!(order, ["v5", "v4", "v3", "v2", "v1"]);
    for (i, e) in ["v1", "v2", "v3", "v4", "v5"].iter().enumerate() {
        assert_eq!(by_tag(e).digest, s.digests[i]);
    }
    assert_eq!(by_tag("v4").action, "delete");
    assert_eq!(by_tag("v4").evidence.len(), 1, "the SBOM .att manifest");
    for (t, why) in [
        ("v5", "among the 1 newest"),
        ("v3", "promoted (promotion statement)"),
        ("v2", "released (signature)"),
        ("v1", "deployed ("),
    ] {
        let e = by_tag(t);
        assert_eq!(e.action, "keep", "{t}: {e:?}");
        assert!(e.reasons.iter().any(|x| x.starts_with(why)), "{t}: {e:?}");
    }
}

/// Everything under `dir`, with each file's content hash.
fn listing(dir: &Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .map(|e| {
            let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
            let h = if e.file_type().is_file() {
                common::cli::sha256_file(e.path())
            } else {
                String::new()
            };
            (rel, h)
        })
        .collect();
    v.sort();
    v
}

fn tags(reg: &Registry, repo: &str) -> Vec<String> {
    let out = reg
        .curl()
        .arg(reg.url(&format!("/v2/{repo}/tags/list")))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut t: Vec<String> = v["tags"]
        .as_array()
        .map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    t.sort();
    t
}

/// HTTP status of a manifest GET by digest or tag, straight to the registry.
fn manifest_status(reg: &Registry, repo: &str, r: &str) -> String {
    let out = reg
        .curl()
        .args(["-o", "/dev/null", "-w", "%{http_code}"])
        .args([
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
        ])
        .arg(reg.url(&format!("/v2/{repo}/manifests/{r}")))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn evidence_tag(digest: &str, kind: &str) -> String {
    format!("{}.{kind}", digest.replace(':', "-"))
}

/// After the gc: v1, v2, v3, v5 resolve to their digests and verify as before.
fn check_survivors(env: &Env, flags: &[&str], repo: &str, s: &Story) {
    let sp = |args: &[&str]| -> Run {
        let mut all = flags.to_vec();
        all.extend_from_slice(args);
        env.sp(&all)
    };
    for i in [0, 1, 2, 4] {
        let r = sp(&["resolve", &format!("{repo}:v{}", i + 1)]);
        assert_eq!(r.ok(), s.digests[i]);
    }
    sp(&["verify", &format!("{repo}:v2"), "--key", "rel.pub"]).ok();
    sp(&[
        "verify-attestation",
        &format!("{repo}:v3"),
        "--key",
        "rel.pub",
        "--type",
        PROMOTION,
    ])
    .ok();
    // v4 is gone by tag
    sp(&["resolve", &format!("{repo}:v4")]).expect_code(1);
}

#[test]
fn gc_on_the_registry_deletes_exactly_the_unprotected_digest() {
    let reg = Registry::start(Flavor::Plain);
    let env = Env::new();
    let ph = ["--plain-http"];
    let name = "team/site";
    let repo = format!("{}/{name}", reg.host);
    let s = story(&env, &ph, &repo);
    let v4 = s.digests[3].clone();
    let v4_att = evidence_tag(&v4, "att");
    let before = tags(&reg, name);
    assert!(before.contains(&v4_att), "{before:?}");
    let att_manifest = {
        let r = env.sp(&["--plain-http", "resolve", &format!("{repo}:{v4_att}")]);
        r.ok()
    };

    // without the target, v1 would go too: the deployment is what protects it
    let r = parse(&env.sp(&[
        "--plain-http",
        "--json",
        "gc",
        &repo,
        "--keep",
        "1",
        "--dry-run",
    ]));
    let v1 = r.entries.iter().find(|e| e.tags == ["v1"]).unwrap();
    assert_eq!(v1.action, "delete");

    // the dry run plans exactly v4 and changes nothing
    let r = parse(&env.sp(&[
        "--plain-http",
        "--json",
        "gc",
        &repo,
        "--keep",
        "1",
        "--target",
        "stg",
        "--dry-run",
    ]));
    assert!(r.dry_run && r.keep == 1 && r.repository == repo && r.deleted_manifests == 0);
    check_plan(&r, &s);
    assert_eq!(tags(&reg, name), before);
    assert_eq!(manifest_status(&reg, name, &v4), "200");

    // the real thing, in text
    let r = env.sp(&[
        "--plain-http",
        "gc",
        &repo,
        "--keep",
        "1",
        "--target",
        "stg",
    ]);
    r.expect_code(0);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{}", r.stdout);
    let deleted: Vec<&&str> = lines.iter().filter(|l| l.starts_with("delete")).collect();
    assert_eq!(deleted.len(), 1, "{}", r.stdout);
    assert!(
        deleted[0].contains(&v4) && deleted[0].contains(" v4 "),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr.contains("registry's own garbage collection"),
        "{}",
        r.stderr
    );

    // v4: manifest 404 by digest, tag gone, evidence gone
    assert_eq!(manifest_status(&reg, name, &v4), "404");
    assert_eq!(manifest_status(&reg, name, &att_manifest), "404");
    let after = tags(&reg, name);
    let mut expected: Vec<String> = before
        .iter()
        .filter(|t| *t != "v4" && **t != v4_att)
        .cloned()
        .collect();
    expected.sort();
    assert_eq!(after, expected);
    check_survivors(&env, &ph, &repo, &s);

    // a second run finds nothing more to delete
    let r = parse(&env.sp(&[
        "--plain-http",
        "--json",
        "gc",
        &repo,
        "--keep",
        "1",
        "--target",
        "stg",
    ]));
    assert!(r.entries.iter().all(|e| e.action == "keep"), "{r:?}");
    assert_eq!(r.deleted_manifests, 0);
}

#[test]
fn gc_on_a_layout_removes_manifests_and_unreachable_blobs() {
    let env = Env::new();
    let repo = "oci:./store";
    let s = story(&env, &[], repo);
    let layout = env.path().join("store");
    let v4 = s.digests[3].clone();
    let v4_hex = v4.trim_start_matches("sha256:").to_string();
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(&v4_hex)).unwrap())
            .unwrap();
    let v4_layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let config = manifest["config"]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let v4_att = evidence_tag(&v4, "att");
    let att_manifest = env.sp(&["resolve", &format!("{repo}:{v4_att}")]).ok();
    let att_hex = att_manifest.trim_start_matches("sha256:").to_string();

    // the dry run plans exactly v4 and changes no file
    let before = listing(&layout);
    let r = parse(&env.sp(&[
        "--json",
        "gc",
        repo,
        "--keep",
        "1",
        "--target",
        "stg",
        "--dry-run",
    ]));
    check_plan(&r, &s);
    let text = env.sp(&["gc", repo, "--keep", "1", "--target", "stg", "--dry-run"]);
    text.expect_code(0);
    assert!(
        text.stderr.contains("dry run: nothing was changed"),
        "{}",
        text.stderr
    );
    assert_eq!(listing(&layout), before);

    // with the default grace (1h) v4 goes from the index, but its blobs were written moments ago (as by a push
    // that has not tagged yet): they stay, and the output says why
    let r = env.sp(&["gc", repo, "--keep", "1", "--target", "stg"]);
    r.expect_code(0);
    assert!(
        r.stderr.contains("written or reused within --grace 1h"),
        "{}",
        r.stderr
    );
    let blobs = layout.join("blobs/sha256");
    assert!(blobs.join(&v4_layer).exists(), "a recent blob was removed");
    let index = fs::read_to_string(layout.join("index.json")).unwrap();
    assert!(!index.contains(&v4_hex), "{index}");
    // no push runs: --grace 0s removes what nothing reaches
    let r = env.sp(&[
        "gc", repo, "--keep", "1", "--target", "stg", "--grace", "0s",
    ]);
    r.expect_code(0);
    assert!(r.stderr.contains("unreachable blob(s)"), "{}", r.stderr);
    assert!(!blobs.join(&v4_hex).exists(), "v4's manifest is gone");
    assert!(!blobs.join(&v4_layer).exists(), "v4's layer is gone");
    assert!(
        !blobs.join(&att_hex).exists(),
        "v4's attestation manifest is gone"
    );
    assert!(
        blobs.join(&config).exists(),
        "the shared empty config stays"
    );
    let index = fs::read_to_string(layout.join("index.json")).unwrap();
    assert!(!index.contains(&v4_hex), "{index}");
    env.sp(&["resolve", &format!("{repo}@{v4}")]).expect_code(1);
    check_survivors(&env, &[], repo, &s);

    // other tools still read the layout
    let out = Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:v5", layout.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(raw["schemaVersion"], 2);
    let out = Command::new("umoci")
        .args(["ls", "--layout"])
        .arg(&layout)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8_lossy(&out.stdout);
    for t in ["v1", "v2", "v3", "v5"] {
        assert!(listed.lines().any(|l| l == t), "{listed}");
    }
    assert!(!listed.lines().any(|l| l == "v4"), "{listed}");
    // every blob left is reachable: a second run removes nothing
    let r = parse(&env.sp(&["--json", "gc", repo, "--keep", "1", "--target", "stg"]));
    assert_eq!(r.deleted_manifests, 0);
}

#[test]
fn evidence_that_cannot_be_read_deletes_nothing() {
    let reg = Registry::start(Flavor::Plain);
    let env = Env::new();
    let name = "team/site";
    let direct = format!("{}/{name}", reg.host);
    let s = story(&env, &["--plain-http"], &direct);
    let before = tags(&reg, name);
    let proxy = FaultProxy::start(&reg.base_url());
    let via = format!("{}/{name}", proxy.host);
    let gc = |repo: &str, extra: &[(&str, &str)]| -> Run {
        let mut c = env.cmd(&["--plain-http", "gc", repo, "--keep", "1", "--target", "stg"]);
        c = c.env("SEALPACK_RETRY_BUDGET", "2s");
        for (k, v) in extra {
            c = c.env(k, v);
        }
        c.run()
    };

    // a 503 on v4's evidence (the other digests' reads succeed)
    let v4_hex = s.digests[3].trim_start_matches("sha256:").to_string();
    let fault = proxy.add(
        Rule::on("GET", &format!("sha256-{v4_hex}")).fault(Fault::Status {
            status: 503,
            retry_after: None,
        }),
    );
    let r = gc(&via, &[]);
    r.expect_code(1);
    assert!(proxy.hits(fault) > 0);
    assert!(r.stderr.contains("could not check"), "{}", r.stderr);
    assert!(r.stderr.contains(&s.digests[3]), "{}", r.stderr);
    assert!(r.stderr.contains("nothing was deleted"), "{}", r.stderr);
    assert_eq!(proxy.count("DELETE", "/"), 0);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert_eq!(tags(&reg, name), before);
    assert_eq!(manifest_status(&reg, name, &s.digests[3]), "200");

    // the same, when listing and resolving the tags went through and the evidence read itself fails
    let proxy = FaultProxy::start(&reg.base_url());
    let via = format!("{}/{name}", proxy.host);
    let fault = proxy.add(
        Rule::on("GET", &format!("sha256-{v4_hex}.att"))
            .skip(1)
            .fault(Fault::Status {
                status: 503,
                retry_after: None,
            }),
    );
    let r = gc(&via, &[]);
    r.expect_code(1);
    assert!(proxy.hits(fault) > 0);
    assert!(
        r.stderr.contains(&format!(
            "could not check the evidence of {via}@{}",
            s.digests[3]
        )),
        "{}",
        r.stderr
    );
    assert_eq!(proxy.count("DELETE", "/"), 0);
    assert_eq!(tags(&reg, name), before);

    // an unreachable registry
    let port = common::registry::free_port();
    let r = gc(&format!("127.0.0.1:{port}/{name}"), &[]);
    r.expect_code(1);
    assert_eq!(tags(&reg, name), before);
}

#[test]
fn a_registry_refusing_delete_is_a_clear_error_and_nothing_further_goes() {
    let reg = Registry::start(Flavor::Plain);
    let env = Env::new();
    let name = "team/site";
    let direct = format!("{}/{name}", reg.host);
    let s = story(&env, &["--plain-http"], &direct);
    let before = tags(&reg, name);
    let proxy = FaultProxy::start(&reg.base_url());
    let refuse = proxy.add(Rule::on("DELETE", "/manifests/").fault(Fault::Status {
        status: 405,
        retry_after: None,
    }));
    let r = env
        .cmd(&[
            "--plain-http",
            "gc",
            &format!("{}/{name}", proxy.host),
            "--keep",
            "1",
            "--target",
            "stg",
        ])
        .env("SEALPACK_RETRY_BUDGET", "2s")
        .run();
    r.expect_code(1);
    assert_eq!(proxy.hits(refuse), 1, "one refusal, no further attempt");
    assert!(r.stderr.contains("storage.delete.enabled"), "{}", r.stderr);
    assert_eq!(tags(&reg, name), before);
    assert_eq!(manifest_status(&reg, name, &s.digests[3]), "200");
}

#[test]
fn usage_errors_exit_2() {
    let env = Env::new();
    for args in [
        vec!["gc", "oci:./x"],
        vec!["gc", "oci:./x:v1", "--keep", "1"],
        vec![
            "gc",
            "127.0.0.1:5000/a@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "--keep",
            "1",
        ],
        vec!["gc", "oci:./x", "--keep", "many"],
        vec!["gc", "oci:./x", "--keep", "-1"],
    ] {
        env.sp(&args).expect_code(2);
    }
    // a --target that is not a deploy target protects nothing silently: refused
    fs::create_dir_all(env.path().join("site")).unwrap();
    fs::write(env.path().join("site/a"), "a").unwrap();
    env.sp(&["push", "site", "--to", "oci:./x:v1", "--commit", COMMIT])
        .ok();
    fs::create_dir_all(env.path().join("notatarget")).unwrap();
    let r = env.sp(&["gc", "oci:./x", "--keep", "0", "--target", "notatarget"]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("notatarget"), "{}", r.stderr);
    assert!(env.path().join("x/index.json").exists());
    env.sp(&["resolve", "oci:./x:v1"]).ok();
}
