//! Signatures and the OCI 1.1 referrers API, through the real binary, on an in-process fake registry that serves
//! the API (no installable registry does: distribution 2.8 answers 404 there). With the API, the `.sig` manifest
//! carries `subject` and `artifactType` and reading asks the API too; without it, the plain cosign tag schema.

mod common;

use std::fs;

use common::cli::TestEnv as Env;
use common::fake_registry::{FakeOptions, FakeRegistry, OCI_INDEX, OCI_MANIFEST};

const SIG_ARTIFACT_TYPE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// `SIG_ARTIFACT_TYPE` as a query value (`/` and `+` escaped).
const SIG_ARTIFACT_TYPE_QUERY: &str = "application%2Fvnd.dev.cosign.artifact.sig.v1%2Bjson";

/// Pushes a file with `content` to `target`; returns (pinned reference, digest).
fn push(env: &Env, file: &str, content: &str, target: &str) -> (String, String) {
    fs::write(env.path().join(file), content).unwrap();
    let pinned = env.sp(&["--plain-http", "push", file, "--to", target]).ok();
    let digest = pinned.split('@').nth(1).unwrap().to_string();
    (pinned, digest)
}

/// `sha256-<hex>.sig` for a `sha256:<hex>` digest.
fn sig_tag(digest: &str) -> String {
    format!("{}.sig", digest.replace(':', "-"))
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

/// The digests listed by `GET /v2/<repo>/referrers/<digest>[?query]` on the fake.
fn listed(reg: &FakeRegistry, repo: &str, digest: &str, query: &str) -> Vec<serde_json::Value> {
    let r = reg.http(
        "GET",
        &format!("/v2/{repo}/referrers/{digest}{query}"),
        &[("Accept", OCI_INDEX)],
        None,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some(OCI_INDEX));
    let v = r.json();
    assert_eq!(v["schemaVersion"], 2);
    assert_eq!(v["mediaType"], OCI_INDEX);
    v["manifests"].as_array().unwrap().clone()
}

#[test]
fn with_the_referrers_api_signatures_carry_their_subject_and_are_listed() {
    let reg = FakeRegistry::start(FakeOptions::default());
    let env = Env::new();
    env.keygen("k", "ecdsa-p256");
    let target = format!("{}/app:v1", reg.host);
    let (pinned, digest) = push(&env, "app.txt", "release 1", &target);
    assert_eq!(
        env.sp(&["--plain-http", "sign", &target, "--key", "k.key"])
            .ok(),
        pinned
    );

    // the .sig manifest names the signed manifest as its subject and carries cosign's artifact type
    let subject = reg.manifest("app", &digest).unwrap();
    let sig_digest = reg.tag_digest("app", &sig_tag(&digest)).expect(".sig tag");
    let sig = reg.manifest("app", &sig_digest).unwrap();
    assert_eq!(sig.media_type, OCI_MANIFEST);
    let m = json(&sig.bytes);
    assert_eq!(m["mediaType"], OCI_MANIFEST);
    assert_eq!(m["artifactType"], SIG_ARTIFACT_TYPE, "{m}");
    assert_eq!(m["subject"]["digest"], digest.as_str(), "{m}");
    assert_eq!(
        m["subject"]["mediaType"],
        subject.media_type.as_str(),
        "{m}"
    );
    assert_eq!(m["subject"]["size"], subject.bytes.len() as u64, "{m}");
    assert_eq!(m["layers"].as_array().unwrap().len(), 1);

    // the referrers API lists it, with and without the artifactType filter; another type lists nothing
    for query in [
        String::new(),
        format!("?artifactType={SIG_ARTIFACT_TYPE_QUERY}"),
    ] {
        let list = listed(&reg, "app", &digest, &query);
        assert_eq!(list.len(), 1, "{query}: {list:?}");
        assert_eq!(list[0]["digest"], sig_digest.as_str());
        assert_eq!(list[0]["mediaType"], OCI_MANIFEST);
        assert_eq!(list[0]["size"], sig.bytes.len() as u64);
        assert_eq!(list[0]["artifactType"], SIG_ARTIFACT_TYPE);
    }
    let filtered = reg.http(
        "GET",
        &format!("/v2/app/referrers/{digest}?artifactType={SIG_ARTIFACT_TYPE_QUERY}"),
        &[],
        None,
    );
    assert_eq!(filtered.header("oci-filters-applied"), Some("artifactType"));
    assert!(listed(&reg, "app", &digest, "?artifactType=application%2Fother").is_empty());
    // nothing refers to the signature manifest itself
    assert!(listed(&reg, "app", &sig_digest, "").is_empty());

    // verify passes, and it asked the referrers API once, unfiltered, for signatures and revocations together
    // (split by artifactType on our side)
    reg.clear_requests();
    assert_eq!(
        env.sp(&["--plain-http", "verify", &target, "--key", "k.pub"])
            .ok(),
        pinned
    );
    let asked: Vec<_> = reg
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path_only() == format!("/v2/app/referrers/{digest}"))
        .collect();
    assert_eq!(asked.len(), 1, "{:?}", reg.requests());
    assert_eq!(asked[0].status, 200);
    assert_eq!(asked[0].query("artifactType"), None, "{}", asked[0].path);
    // verify-attestation asks for one type only, and the filter must arrive intact (a raw '+' in a query is a
    // space)
    reg.clear_requests();
    env.sp(&[
        "--plain-http",
        "verify-attestation",
        &target,
        "--key",
        "k.pub",
        "--type",
        "slsaprovenance",
    ])
    .expect_code(10);
    let asked: Vec<_> = reg
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path_only() == format!("/v2/app/referrers/{digest}"))
        .collect();
    assert_eq!(asked.len(), 1, "{:?}", reg.requests());
    assert_eq!(
        asked[0].query("artifactType").as_deref(),
        Some("application/vnd.dev.cosign.artifact.att.v1+json"),
        "{}",
        asked[0].path
    );
}

#[test]
fn a_signature_reachable_only_through_the_referrers_api_verifies() {
    let reg = FakeRegistry::start(FakeOptions::default());
    let env = Env::new();
    env.keygen("alice", "ecdsa-p256");
    env.keygen("bob", "ecdsa-p256");
    let target = format!("{}/team/app:v1", reg.host);
    let (pinned, digest) = push(&env, "app.txt", "release 1", &target);
    env.sp(&["--plain-http", "sign", &target, "--key", "alice.key"])
        .ok();
    let tag = sig_tag(&digest);
    let sig_digest = reg.tag_digest("team/app", &tag).unwrap();
    let sig = reg.manifest("team/app", &sig_digest).unwrap();

    // the same bytes by digest only, and no .sig tag: reachable through the referrers API alone
    let put = reg.http(
        "PUT",
        &format!("/v2/team/app/manifests/{sig_digest}"),
        &[("Content-Type", &sig.media_type)],
        Some(&sig.bytes),
    );
    assert_eq!(put.status, 201, "{}", String::from_utf8_lossy(&put.body));
    assert_eq!(
        put.header("docker-content-digest"),
        Some(sig_digest.as_str())
    );
    assert_eq!(put.header("oci-subject"), Some(digest.as_str()));
    assert!(reg.untag("team/app", &tag));
    let gone = reg.http("GET", &format!("/v2/team/app/manifests/{tag}"), &[], None);
    assert_eq!(gone.status, 404);
    assert_eq!(gone.json()["errors"][0]["code"], "MANIFEST_UNKNOWN");
    assert_eq!(listed(&reg, "team/app", &digest, "").len(), 1);

    reg.clear_requests();
    assert_eq!(
        env.sp(&["--plain-http", "verify", &target, "--key", "alice.pub"])
            .ok(),
        pinned
    );
    let reqs = reg.requests();
    let saw = |method: &str, path: &str, status: u16| {
        reqs.iter()
            .any(|r| r.method == method && r.path_only() == path && r.status == status)
    };
    assert!(
        saw("GET", &format!("/v2/team/app/manifests/{tag}"), 404),
        "{reqs:?}"
    );
    assert!(
        saw("GET", &format!("/v2/team/app/referrers/{digest}"), 200),
        "{reqs:?}"
    );
    assert!(
        saw("GET", &format!("/v2/team/app/manifests/{sig_digest}"), 200),
        "{reqs:?}"
    );

    // a second signer starts a new .sig manifest; both signatures are read, one through each route
    env.sp(&["--plain-http", "sign", &target, "--key", "bob.key"])
        .ok();
    let new_sig = reg.tag_digest("team/app", &tag).unwrap();
    assert_ne!(new_sig, sig_digest);
    assert_eq!(listed(&reg, "team/app", &digest, "").len(), 2);
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
    j.ok();
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(v["distinct_keys"], 2, "{v}");
}

#[test]
fn without_the_referrers_api_signatures_use_the_plain_tag_schema() {
    let reg = FakeRegistry::start(FakeOptions {
        referrers_api: false,
        ..FakeOptions::default()
    });
    let env = Env::new();
    env.keygen("k", "ecdsa-p256");
    let target = format!("{}/app:v1", reg.host);
    let (pinned, digest) = push(&env, "app.txt", "release 1", &target);

    // the API answers like distribution 2.8
    let r = reg.http("GET", &format!("/v2/app/referrers/{digest}"), &[], None);
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.body, b"404 page not found\n");

    env.sp(&["--plain-http", "sign", &target, "--key", "k.key"])
        .ok();
    let sig = reg.manifest("app", &sig_tag(&digest)).expect(".sig tag");
    let m = json(&sig.bytes);
    assert!(m.get("subject").is_none(), "{m}");
    assert!(m.get("artifactType").is_none(), "{m}");
    assert_eq!(m["layers"].as_array().unwrap().len(), 1);

    reg.clear_requests();
    assert_eq!(
        env.sp(&["--plain-http", "verify", &target, "--key", "k.pub"])
            .ok(),
        pinned
    );
    let reqs = reg.requests();
    assert!(
        reqs.iter().any(|r| r.method == "GET"
            && r.path_only() == format!("/v2/app/manifests/{}", sig_tag(&digest))
            && r.status == 200),
        "{reqs:?}"
    );
    assert!(
        reqs.iter()
            .filter(|r| r.path_only().contains("/referrers/"))
            .all(|r| r.status == 404),
        "{reqs:?}"
    );
}

#[test]
fn a_referrer_holding_a_signature_for_another_digest_is_denied() {
    let reg = FakeRegistry::start(FakeOptions::default());
    let env = Env::new();
    env.keygen("k", "ecdsa-p256");
    let (_, digest_a) = push(&env, "a.txt", "release A", &format!("{}/app:a", reg.host));
    let (pinned_b, digest_b) = push(&env, "b.txt", "release B", &format!("{}/app:b", reg.host));
    env.sp(&["--plain-http", "sign", &pinned_b, "--key", "k.key"])
        .ok();

    // B's signature manifest, re-pointed at A (subject only, no tag): the API lists it for A
    let sig_b = reg.manifest("app", &sig_tag(&digest_b)).unwrap();
    let subject_a = reg.manifest("app", &digest_a).unwrap();
    let mut m = json(&sig_b.bytes);
    m["subject"] = serde_json::json!({
        "mediaType": subject_a.media_type,
        "digest": digest_a,
        "size": subject_a.bytes.len(),
    });
    let forged = serde_json::to_vec(&m).unwrap();
    let forged_digest = sealpack::digest::Digest::of(&forged).to_string();
    let put = reg.http(
        "PUT",
        &format!("/v2/app/manifests/{forged_digest}"),
        &[("Content-Type", OCI_MANIFEST)],
        Some(&forged),
    );
    assert_eq!(put.status, 201, "{}", String::from_utf8_lossy(&put.body));
    let list = listed(&reg, "app", &digest_a, "");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["digest"], forged_digest.as_str());
    assert!(reg.tag_digest("app", &sig_tag(&digest_a)).is_none());

    let r = env.sp(&[
        "--plain-http",
        "verify",
        &format!("{}/app:a", reg.host),
        "--key",
        "k.pub",
    ]);
    r.expect_code(10);
    assert!(
        r.stderr
            .contains("a signature copied from another artifact"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&digest_a) && r.stderr.contains(&digest_b),
        "{}",
        r.stderr
    );
    // B itself still verifies
    env.sp(&["--plain-http", "verify", &pinned_b, "--key", "k.pub"])
        .ok();
}

/// The fake itself: keep-alive, chunked bodies, uploads, mounts, manifest checks, errors.
#[test]
fn the_fake_registry_speaks_enough_http_and_distribution() {
    let reg = FakeRegistry::start(FakeOptions::default());
    let data = b"hello, chunked world";
    let d = sealpack::digest::Digest::of(data).to_string();

    assert_eq!(reg.http("GET", "/v2/", &[], None).status, 200);

    // a session, then on ONE connection: a chunked PATCH, a chunked PUT ?digest=, a HEAD and a GET
    let post = reg.http("POST", "/v2/a/b/blobs/uploads/", &[], Some(b""));
    assert_eq!(post.status, 202);
    let loc = post.header("location").unwrap().to_string();
    assert!(loc.starts_with("/v2/a/b/blobs/uploads/"), "{loc}");
    let (first, second) = data.split_at(7);
    let mut raw = Vec::new();
    raw.extend_from_slice(
        format!(
            "PATCH {loc} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x};ext=1\r\n",
            first.len()
        )
        .as_bytes(),
    );
    raw.extend_from_slice(first);
    raw.extend_from_slice(b"\r\n0\r\nX-Trailer: t\r\n\r\n");
    raw.extend_from_slice(
        format!(
            "PUT {loc}?digest={} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            d.replace(':', "%3A")
        )
        .as_bytes(),
    );
    for part in second.chunks(5) {
        raw.extend_from_slice(format!("{:X}\r\n", part.len()).as_bytes());
        raw.extend_from_slice(part);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    raw.extend_from_slice(format!("HEAD /v2/a/b/blobs/{d} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    raw.extend_from_slice(
        format!("GET /v2/a/b/blobs/{d} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    let out = reg.raw_exchange(&raw, &[false, false, true, false]);
    assert_eq!(out[0].status, 202);
    assert_eq!(out[0].header("range"), Some("0-6"));
    assert_eq!(out[1].status, 201);
    assert_eq!(out[1].header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(out[2].status, 200);
    assert_eq!(out[2].header("content-length"), Some("20"));
    assert!(out[2].body.is_empty());
    assert_eq!(out[3].status, 200);
    assert_eq!(out[3].body, data);

    // a wrong digest is refused
    let post = reg.http("POST", "/v2/a/b/blobs/uploads/", &[], None);
    let loc = post.header("location").unwrap().to_string();
    let other = sealpack::digest::Digest::of(b"other").to_string();
    let bad = reg.http("PUT", &format!("{loc}?digest={other}"), &[], Some(data));
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["errors"][0]["code"], "DIGEST_INVALID");

    // blobs are per repository until mounted
    assert_eq!(
        reg.http("HEAD", &format!("/v2/c/blobs/{d}"), &[], None)
            .status,
        404
    );
    let mount = reg.http(
        "POST",
        &format!("/v2/c/blobs/uploads/?mount={d}&from=a/b"),
        &[],
        None,
    );
    assert_eq!(mount.status, 201);
    assert_eq!(
        reg.http("HEAD", &format!("/v2/c/blobs/{d}"), &[], None)
            .status,
        200
    );
    let missing = reg.http(
        "POST",
        &format!("/v2/c/blobs/uploads/?mount={other}&from=a/b"),
        &[],
        None,
    );
    assert_eq!(missing.status, 202);

    // a manifest naming a missing blob is refused; a complete one is stored, tagged and listed
    let empty = sealpack::digest::Digest::of(b"{}").to_string();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": d, "size": data.len()}],
    }))
    .unwrap();
    let put = |name: &str| {
        reg.http(
            "PUT",
            &format!("/v2/c/manifests/{name}"),
            &[("Content-Type", OCI_MANIFEST)],
            Some(&manifest),
        )
    };
    let r = put("v1");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["errors"][0]["code"], "MANIFEST_BLOB_UNKNOWN");
    let r = reg.http(
        "POST",
        &format!("/v2/c/blobs/uploads/?digest={empty}"),
        &[],
        Some(b"{}"),
    );
    assert_eq!(r.status, 201);
    let r = put("v1");
    assert_eq!(r.status, 201);
    let md = sealpack::digest::Digest::of(&manifest).to_string();
    assert_eq!(r.header("docker-content-digest"), Some(md.as_str()));
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/c/manifests/{md}").as_str())
    );
    assert_eq!(put(&other).status, 400);
    let got = reg.http("GET", "/v2/c/manifests/v1", &[], None);
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), Some(OCI_MANIFEST));
    assert_eq!(got.header("docker-content-digest"), Some(md.as_str()));
    assert_eq!(got.body, manifest);
    let head = reg.http("HEAD", &format!("/v2/c/manifests/{md}"), &[], None);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let tags = reg.http("GET", "/v2/c/tags/list", &[], None).json();
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));
    let nope = reg.http("GET", "/v2/c/manifests/v2", &[], None);
    assert_eq!(nope.status, 404);
    assert_eq!(nope.json()["errors"][0]["code"], "MANIFEST_UNKNOWN");
    // artifactType falls back on the config media type; a raw '+' in the filter is a space, as in Go
    let referrer = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/x.t+json", "digest": empty, "size": 2},
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": md, "size": manifest.len()},
        "annotations": {"k": "v"},
    }))
    .unwrap();
    let rd = sealpack::digest::Digest::of(&referrer).to_string();
    let r = reg.http(
        "PUT",
        &format!("/v2/c/manifests/{rd}"),
        &[("Content-Type", OCI_MANIFEST)],
        Some(&referrer),
    );
    assert_eq!(r.status, 201);
    let list = listed(&reg, "c", &md, "?artifactType=application%2Fx.t%2Bjson");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["artifactType"], "application/x.t+json");
    assert_eq!(list[0]["annotations"]["k"], "v");
    assert!(listed(&reg, "c", &md, "?artifactType=application/x.t+json").is_empty());

    let reqs = reg.requests();
    assert!(reqs.iter().any(|r| r.method == "PATCH" && r.status == 202));
    assert!(
        reqs.iter()
            .any(|r| r.method == "GET" && r.path == "/v2/c/tags/list")
    );
}
