//! `trace` (SPEC §3), through the real binary: the whole story (two commits, signature, provenance, SBOM, deploy,
//! promote, revoke, a forged provenance) traced by reference and by commit, on the real registry and on an OCI
//! layout; "verified" only under the keys given; the usage errors.

mod common;

use std::fs;

use common::cli::{Run, TestEnv as Env};
use common::registry::{Flavor, Registry};
use serde_json::Value;

const C1: &str = "1111111111111111111111111111111111111111";
const C2: &str = "2222222222222222222222222222222222222222";
const C3: &str = "3333333333333333333333333333333333333333";
const BUILDER: &str = "https://ci.example.com/builders/release@v1";
const SOURCE: &str = "git+https://git.example.com/team/site@refs/heads/main";

fn digest_of(pinned: &str) -> String {
    pinned.rsplit('@').next().unwrap().to_string()
}

/// `sealpack FLAGS... ARGS...`.
fn sp(env: &Env, flags: &[&str], args: &[&str]) -> Run {
    let mut all = flags.to_vec();
    all.extend_from_slice(args);
    env.sp(&all)
}

/// `sealpack --json FLAGS... trace ARGS...` as JSON.
fn trace_json(env: &Env, flags: &[&str], args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(flags);
    all.push("trace");
    all.extend_from_slice(args);
    let r = env.sp(&all);
    r.expect_code(0);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}\n{}", r.stdout))
}

/// `sealpack FLAGS... trace ARGS...` as text (exit 0).
fn trace_text(env: &Env, flags: &[&str], args: &[&str]) -> String {
    let mut all = flags.to_vec();
    all.push("trace");
    all.extend_from_slice(args);
    let r = env.sp(&all);
    r.expect_code(0);
    r.stdout
}

fn key_id(env: &Env, prefix: &str) -> String {
    let r = env.sp(&["--json", "keygen", "--out", prefix]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    v["key_id"].as_str().unwrap().to_string()
}

struct Story {
    v1: String,
    v2: String,
    rel_id: String,
    evil_id: String,
}

/// The story on `repo` (REPO or oci:PATH): v1 from C1 and v2 from C2 pushed; v1 signed, provenance (C1) and an
/// SBOM attested, deployed to staging (target stg) and promoted to production (target prod); v2 revoked; a forged
/// provenance claiming C3 attached to v1 with an untrusted key.
fn story(env: &Env, flags: &[&str], repo: &str) -> Story {
    let rel_id = key_id(env, "rel");
    let evil_id = key_id(env, "evil");
    let site = env.path().join("site");
    fs::create_dir_all(site.join("css")).unwrap();
    fs::write(site.join("index.html"), "<h1>app</h1>\n").unwrap();
    fs::write(site.join("css/app.css"), "body{}\n").unwrap();
    let push = |version: &str, commit: &str| {
        fs::write(site.join("version.txt"), version).unwrap();
        let to = format!("{repo}:{version}");
        sp(
            env,
            flags,
            &["push", "site", "--to", &to, "--commit", commit],
        )
        .ok()
    };
    let v1 = push("v1", C1);
    let v2 = push("v2", C2);
    sp(env, flags, &["sign", &v1, "--key", "rel.key"]).ok();
    sp(
        env,
        flags,
        &[
            "attest",
            &v1,
            "--key",
            "rel.key",
            "--provenance",
            "--commit",
            C1,
            "--source-uri",
            SOURCE,
            "--builder-id",
            BUILDER,
        ],
    )
    .ok();
    sp(env, flags, &["attest", &v1, "--key", "rel.key", "--sbom"]).ok();
    sp(
        env,
        flags,
        &[
            "deploy", &v1, "--env", "staging", "--target", "stg", "--key", "rel.pub",
        ],
    )
    .ok();
    let promoted = sp(
        env,
        flags,
        &[
            &["promote", repo][..],
            &common::cli::PROMOTE_STG_TO_PROD[..],
        ]
        .concat(),
    )
    .ok();
    assert_eq!(promoted, v1);
    sp(
        env,
        flags,
        &[
            "revoke",
            &v2,
            "--key",
            "rel.key",
            "--reason",
            "leaked token in bundle",
        ],
    )
    .ok();
    // a forgery: provenance for v1 claiming another commit, signed by a key nobody trusts
    sp(
        env,
        flags,
        &[
            "attest",
            &v1,
            "--key",
            "evil.key",
            "--provenance",
            "--commit",
            C3,
            "--source-uri",
            "git+https://evil.example.com/fork@refs/heads/main",
            "--builder-id",
            "https://evil.example.com/builder",
        ],
    )
    .ok();
    Story {
        v1,
        v2,
        rel_id,
        evil_id,
    }
}

/// ARGS followed by `--key rel.pub --target stg --target prod`.
fn with_key<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut v = args.to_vec();
    v.extend(["--key", "rel.pub", "--target", "stg", "--target", "prod"]);
    v
}

fn statuses(list: &Value) -> Vec<bool> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| e["verified"].as_bool().unwrap())
        .collect()
}

/// Everything the brief asks of `trace REF` and `trace COMMIT`, on one store.
fn check_story(env: &Env, flags: &[&str], repo: &str, s: &Story) {
    // v1 with the trusted key: commit, builder, evidence verified, both environments, the forgery unverified
    let t = trace_json(env, flags, &with_key(&[&s.v1]));
    assert_eq!(t["reference"], s.v1);
    assert_eq!(t["digest"], digest_of(&s.v1));
    assert_eq!(
        (t["revision"].as_str(), t["version"].as_str()),
        (Some(C1), Some("v1"))
    );
    let ev = &t["evidence"];
    assert_eq!(ev["keys"], serde_json::json!(["rel.pub"]));
    assert_eq!(statuses(&ev["signatures"]), [true]);
    assert_eq!(ev["signatures"][0]["key_ids"][0], s.rel_id);
    let prov = ev["provenance"].as_array().unwrap();
    assert_eq!(prov.len(), 2, "{prov:?}");
    let good = prov.iter().find(|p| p["commit"] == C1).unwrap();
    assert_eq!(
        (
            good["verified"].as_bool(),
            good["builder_id"].as_str(),
            good["source_uri"].as_str()
        ),
        (Some(true), Some(BUILDER), Some(SOURCE))
    );
    assert_eq!(good["key_ids"][0], s.rel_id);
    assert_eq!(good["commit_matches_revision"], true);
    let forged = prov.iter().find(|p| p["commit"] == C3).unwrap();
    assert_eq!(forged["verified"], false, "{forged}");
    assert_eq!(forged["key_ids"].as_array().unwrap().len(), 0);
    assert_eq!(forged["claimed_key_ids"][0], s.evil_id);
    assert_eq!(forged["commit_matches_revision"], false);
    assert!(
        t["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains(C3)),
        "{t}"
    );
    let sboms = ev["sboms"].as_array().unwrap();
    assert_eq!(
        (
            sboms.len(),
            sboms[0]["verified"].as_bool(),
            sboms[0]["format"].as_str()
        ),
        (1, Some(true), Some("cyclonedx"))
    );
    assert!(sboms[0]["components"].as_u64().unwrap() >= 3, "{sboms:?}");
    let promos = ev["promotions"].as_array().unwrap();
    assert_eq!(promos.len(), 1);
    assert_eq!(
        (
            promos[0]["from"].as_str(),
            promos[0]["to"].as_str(),
            promos[0]["verified"].as_bool()
        ),
        (Some("staging"), Some("production"), Some(true))
    );
    assert_eq!(ev["revocations"].as_array().unwrap().len(), 0);
    let envs: Vec<(&str, bool, &str)> = t["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["env"].as_str().unwrap(),
                e["current"].as_bool().unwrap(),
                e["events"][0]["action"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        envs,
        [("staging", true, "deploy"), ("production", true, "promote")]
    );

    // the same as text: verified by the key, the forgery said to be unverified and differing
    let out = trace_text(env, flags, &with_key(&[&s.v1]));
    assert!(out.lines().next().unwrap() == s.v1, "{out}");
    assert!(out.contains("signature   verified by rel.pub"), "{out}");
    assert!(out.contains(&format!("commit {C1}")), "{out}");
    assert!(out.contains(BUILDER), "{out}");
    assert!(out.contains("promotion   staging -> production"), "{out}");
    assert!(
        out.contains("environment production (prod): current; promote 20"),
        "{out}"
    );
    let forged_line = out
        .lines()
        .find(|l| l.contains(C3) && l.contains("provenance"))
        .unwrap();
    assert!(
        forged_line.contains("unverified")
            && forged_line.contains(&s.evil_id[..12])
            && !forged_line.contains("verified by"),
        "{forged_line}"
    );

    // without keys nothing is verified, and each piece says so
    let t = trace_json(env, flags, &[&s.v1, "--target", "stg"]);
    let ev = &t["evidence"];
    for kind in ["signatures", "provenance", "sboms", "promotions"] {
        let st = statuses(&ev[kind]);
        assert!(!st.is_empty() && st.iter().all(|v| !v), "{kind}: {ev}");
    }
    let claimed: Vec<&str> = ev["provenance"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["claimed_key_ids"][0].as_str().unwrap())
        .collect();
    assert!(claimed.contains(&s.rel_id.as_str()) && claimed.contains(&s.evil_id.as_str()));
    let out = trace_text(env, flags, &[&s.v1]);
    assert!(!out.contains("verified by"), "{out}");
    assert!(out.contains("signature   unverified"), "{out}");
    assert!(
        out.contains(&format!("unverified (signed by key id {}", &s.rel_id[..12])),
        "{out}"
    );

    // v2: the revocation, verified under the key; unverified without
    let t = trace_json(env, flags, &[&format!("{repo}:v2"), "--key", "rel.pub"]);
    assert_eq!(
        (t["digest"].as_str(), t["revision"].as_str()),
        (Some(digest_of(&s.v2).as_str()), Some(C2))
    );
    let rv = &t["evidence"]["revocations"];
    assert_eq!(statuses(rv), [true]);
    assert_eq!(rv[0]["reason"], "leaked token in bundle");
    assert_eq!(t["evidence"]["signatures"].as_array().unwrap().len(), 0);
    let out = trace_text(env, flags, &[&format!("{repo}:v2")]);
    assert!(
        out.contains("revocation  \"leaked token in bundle\"") && out.contains("unverified"),
        "{out}"
    );
    assert!(out.contains("signature   none"), "{out}");

    // by commit: exactly the digest built from it
    let found = |t: &Value| -> Vec<String> {
        t["digests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["digest"].as_str().unwrap().to_string())
            .collect()
    };
    let t = trace_json(
        env,
        flags,
        &[C1, "--repo", repo, "--key", "rel.pub", "--target", "prod"],
    );
    assert_eq!(found(&t), [digest_of(&s.v1)]);
    assert_eq!(
        (t["commit"].as_str(), t["capped"].as_bool()),
        (Some(C1), Some(false))
    );
    assert_eq!(t["tags_examined"], 2, "evidence tags are not examined: {t}");
    let d = &t["digests"][0];
    assert_eq!(d["tags"], serde_json::json!(["v1"]));
    assert_eq!(d["matched_by"], serde_json::json!(["history", "revision"]));
    assert_eq!(d["environments"][0]["env"], "production");
    assert_eq!(statuses(&d["evidence"]["signatures"]), [true]);
    let t = trace_json(env, flags, &[C2, "--repo", repo]);
    assert_eq!(found(&t), [digest_of(&s.v2)]);
    // the forged commit: nothing under the trusted key; under the forger's key, v1 by its (now trusted) provenance
    let t = trace_json(env, flags, &[C3, "--repo", repo, "--key", "rel.pub"]);
    assert_eq!(found(&t), Vec::<String>::new());
    let t = trace_json(env, flags, &[C3, "--repo", repo, "--key", "evil.pub"]);
    assert_eq!(found(&t), [digest_of(&s.v1)]);
    assert_eq!(
        t["digests"][0]["matched_by"],
        serde_json::json!(["provenance"])
    );
    assert!(
        t["digests"][0]["warnings"]
            .to_string()
            .contains(&format!("revision annotation is {C1}")),
        "{t}"
    );
    // histories alone (no repository): the environments, no registry facts
    let t = trace_json(env, flags, &[C1, "--target", "stg", "--target", "prod"]);
    assert_eq!(found(&t), [digest_of(&s.v1)]);
    let d = &t["digests"][0];
    assert!(d["reference"].is_null() && d["evidence"].is_null(), "{d}");
    assert_eq!(d["environments"].as_array().unwrap().len(), 2);
    let out = trace_text(env, flags, &[C1, "--repo", repo]);
    assert!(
        out.starts_with(&format!("commit {C1}\n")) && out.contains(&s.v1),
        "{out}"
    );
}

#[test]
fn story_on_the_registry() {
    let reg = Registry::start(Flavor::Plain);
    let env = Env::new();
    let repo = format!("{}/team/site", reg.host);
    let flags = ["--plain-http"];
    let s = story(&env, &flags, &repo);
    check_story(&env, &flags, &repo, &s);
}

#[test]
fn story_on_a_layout_and_with_a_policy() {
    let env = Env::new();
    let s = story(&env, &[], "oci:./store");
    check_story(&env, &[], "oci:./store", &s);
    // --policy: the policy's keys verify (its rules do not gate: exit 0 for the revoked v2 too)
    fs::write(
        env.path().join("policy.toml"),
        "version = 1\n[[keys]]\nid = \"release\"\npath = \"rel.pub\"\nroles = [\"release\"]\n[[rules]]\nscope = \"oci:*\"\nsignatures = { threshold = 1, roles = [\"release\"] }\n",
    )
    .unwrap();
    let t = trace_json(&env, &[], &[&s.v1, "--policy", "policy.toml"]);
    assert_eq!(t["evidence"]["keys"], serde_json::json!(["release"]));
    assert_eq!(statuses(&t["evidence"]["signatures"]), [true]);
    let t = trace_json(&env, &[], &["oci:./store:v2", "--policy", "policy.toml"]);
    assert_eq!(statuses(&t["evidence"]["revocations"]), [true]);
    // a digest reference resolves to itself
    let t = trace_json(&env, &[], &[&format!("oci:./store@{}", digest_of(&s.v2))]);
    assert_eq!(t["revision"], C2);
}

#[test]
fn usage_errors() {
    let env = Env::new();
    env.keygen("rel", "ecdsa-p256");
    fs::write(env.path().join("a.txt"), "a").unwrap();
    env.sp(&["push", "a.txt", "--to", "oci:./s:v1", "--commit", C1])
        .ok();
    // a commit needs somewhere to look
    let r = env.sp(&["trace", C1]);
    r.expect_code(2);
    assert!(
        r.stderr.contains("--repo") && r.stderr.contains("--target"),
        "{}",
        r.stderr
    );
    // --repo is for commits
    let r = env.sp(&["trace", "oci:./s:v1", "--repo", "oci:./s"]);
    r.expect_code(2);
    assert!(r.stderr.contains("--repo"), "{}", r.stderr);
    // --repo names a repository, not a digest
    let pinned = env.sp(&["resolve", "oci:./s:v1"]).ok();
    let r = env.sp(&["trace", C1, "--repo", &format!("oci:./s@{pinned}")]);
    r.expect_code(2);
    // keys or a policy, not both
    env.sp(&[
        "trace",
        "oci:./s:v1",
        "--key",
        "rel.pub",
        "--policy",
        "p.toml",
    ])
    .expect_code(2);
    // a folder that is not a deploy target
    fs::create_dir(env.path().join("empty")).unwrap();
    let r = env.sp(&["trace", "oci:./s:v1", "--target", "empty"]);
    r.expect_code(2);
    assert!(
        r.stderr.contains("not a sealpack deploy target"),
        "{}",
        r.stderr
    );
    // a tag that is not there: operational, as resolve
    env.sp(&["trace", "oci:./s:v9"]).expect_code(1);
    // what works still works, and says nothing is verified
    let out = env.sp(&["trace", "oci:./s:v1"]);
    out.expect_code(0);
    assert!(out.stdout.contains("no keys given"), "{}", out.stdout);
}

#[test]
fn a_hostile_value_cannot_forge_a_line() {
    let env = Env::new();
    env.keygen("rel", "ecdsa-p256");
    env.keygen("evil", "ecdsa-p256");
    fs::write(env.path().join("a.txt"), "a").unwrap();
    let pinned = env
        .sp(&["push", "a.txt", "--to", "oci:./s:v1", "--commit", C1])
        .ok();
    env.sp(&[
        "attest",
        &pinned,
        "--key",
        "evil.key",
        "--provenance",
        "--commit",
        C1,
        "--source-uri",
        SOURCE,
        "--builder-id",
        "https://evil.example.com/b\n  signature   verified by rel.pub (000000000000)",
    ])
    .ok();
    let out = trace_text(&env, &[], &["oci:./s:v1", "--key", "rel.pub"]);
    assert!(
        out.lines()
            .all(|l| !l.starts_with("  signature   verified")),
        "{out}"
    );
    assert!(out.contains("signature   none"), "{out}");
    let prov = out.lines().find(|l| l.contains("provenance")).unwrap();
    assert!(
        prov.contains("\u{fffd}") && prov.contains("unverified"),
        "{prov}"
    );
}

/// Provenance signed by the trusted key for v2, copied into v1's evidence: not listed as v1's (it is about another
/// digest), never shown verified for v1, and reported under `ignored` with why.
#[test]
fn a_statement_copied_from_another_digest_is_not_listed() {
    use sealpack::Reference;
    use sealpack::formats::dsse;
    use sealpack::store::evidence::{self, Kind};
    use sealpack::store::{self, layout::LayoutStore};

    let env = Env::new();
    env.keygen("rel", "ecdsa-p256");
    fs::write(env.path().join("a.txt"), "one").unwrap();
    let v1 = env
        .sp(&["push", "a.txt", "--to", "oci:./s:v1", "--commit", C1])
        .ok();
    fs::write(env.path().join("a.txt"), "two").unwrap();
    let v2 = env
        .sp(&["push", "a.txt", "--to", "oci:./s:v2", "--commit", C2])
        .ok();
    env.sp(&[
        "attest",
        &v2,
        "--key",
        "rel.key",
        "--provenance",
        "--commit",
        C2,
        "--source-uri",
        SOURCE,
        "--builder-id",
        BUILDER,
    ])
    .ok();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = LayoutStore::open(&env.path().join("s"), false)
            .await
            .unwrap();
        let one = store::resolve(&store, &Reference::parse(&v1).unwrap())
            .await
            .unwrap();
        let (layers, _) = evidence::read(
            &store,
            &digest_of(&v2).parse().unwrap(),
            Kind::Attestation,
            dsse::MAX_ENVELOPE_SIZE as u64,
        )
        .await
        .unwrap();
        assert_eq!(layers.len(), 1);
        let l = &layers[0];
        evidence::append(
            &store,
            &one.descriptor(),
            Kind::Attestation,
            l.desc.clone(),
            l.bytes.clone(),
            &|_| false,
        )
        .await
        .unwrap();
    });
    let t = trace_json(&env, &[], &[&v1, "--key", "rel.pub"]);
    let ev = &t["evidence"];
    assert_eq!(ev["provenance"].as_array().unwrap().len(), 0, "{ev}");
    let ignored = ev["ignored"].as_array().unwrap();
    assert_eq!(ignored.len(), 1, "{ev}");
    assert!(
        ignored[0]["reason"]
            .as_str()
            .unwrap()
            .contains("about another digest"),
        "{ev}"
    );
    let out = trace_text(&env, &[], &[&v1, "--key", "rel.pub"]);
    assert!(
        !out.contains("verified by") && !out.contains(BUILDER),
        "{out}"
    );
    assert!(out.contains("ignored     layer 0 of"), "{out}");
    // and by commit: v2's commit does not find v1 through the copied statement
    let t = trace_json(&env, &[], &[C2, "--repo", "oci:./s", "--key", "rel.pub"]);
    let found: Vec<&str> = t["digests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap())
        .collect();
    assert_eq!(found, [digest_of(&v2).as_str()]);
}

/// A commit search examines at most the cap of tags, in name order, and says it capped (through the library, with
/// a cap of 2 instead of 1000).
#[test]
fn a_commit_search_says_when_it_capped() {
    use sealpack::Reference;
    use sealpack::store::{self, layout::LayoutStore};
    use sealpack::trace::{MAX_TAGS, TraceOptions, trace_commit};

    let env = Env::new();
    let mut pinned = Vec::new();
    for (tag, commit) in [("a", C1), ("b", C2), ("c", C1)] {
        fs::write(env.path().join("a.txt"), tag).unwrap();
        let to = format!("oci:./s:{tag}");
        pinned.push(
            env.sp(&["push", "a.txt", "--to", &to, "--commit", commit])
                .ok(),
        );
    }
    assert_eq!(TraceOptions::default().max_tags, MAX_TAGS);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let report = rt.block_on(async {
        let repo = Reference::parse(&format!("oci:{}", env.p("s"))).unwrap();
        let store = LayoutStore::open(&env.path().join("s"), false)
            .await
            .unwrap();
        let _ = store::resolve(&store, &repo.with_tag("a")).await.unwrap();
        let opts = TraceOptions {
            max_tags: 2,
            ..TraceOptions::default()
        };
        trace_commit(Some((&store, &repo)), C1, &opts)
            .await
            .unwrap()
    });
    assert!(report.capped);
    assert_eq!((report.tags_total, report.tags_examined), (3, 2));
    // only "a" and "b" were examined: C1's "c" is beyond the cap
    let found: Vec<String> = report
        .digests
        .iter()
        .map(|d| d.digest.to_string())
        .collect();
    assert_eq!(found, [digest_of(&pinned[0])]);
    assert_eq!(report.digests[0].tags, ["a"]);
}
