//! `sealpack copy` through the binary between real registries (distribution 2.8, one per side) and OCI layout
//! folders: the digest is kept, every blob and child manifest arrives, the evidence follows and still verifies,
//! a re-run moves nothing, a corrupt source is refused with no tag written, and tag rules hold.

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use common::cli::{Run, TestEnv as Env, random_file, sha256_file};
use common::registry::{Flavor, Registry, run_tool};

fn json(run: &Run) -> serde_json::Value {
    run.expect_code(0);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

fn skopeo(args: &[&str]) -> std::process::Output {
    run_tool(
        Command::new("skopeo").args(args),
        &format!("skopeo {}", args.join(" ")),
    )
}

/// sha256 of what skopeo reads as the raw manifest at `reference` (`docker://...` or `oci:...`).
fn skopeo_raw_digest(reference: &str) -> String {
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", reference]).stdout;
    sealpack::Digest::of(&raw).to_string()
}

/// The manifest at `repo:reference` on `reg`, as JSON, or `None` on 404.
fn manifest(reg: &Registry, repo: &str, reference: &str) -> Option<serde_json::Value> {
    let out = reg
        .curl()
        .args(["-w", "\n%{http_code}"])
        .arg(reg.url(&format!("/v2/{repo}/manifests/{reference}")))
        .args([
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    match code {
        "200" => Some(serde_json::from_str(body).unwrap()),
        "404" => None,
        other => panic!("GET manifest {repo}:{reference}: HTTP {other}: {body}"),
    }
}

fn sig_tag(digest: &str) -> String {
    format!("{}.sig", digest.replace(':', "-"))
}

#[test]
fn registry_to_layout_to_registry_keeps_digest_and_evidence() {
    let a = Registry::start(Flavor::Plain);
    let b = Registry::start(Flavor::Plain);
    let env = Env::new();
    env.keygen("release", "ecdsa-p256");
    env.keygen("builder", "ed25519");
    random_file(&env.path().join("app.bin"), 3 << 20, 5);
    fs::write(env.path().join("notes.txt"), "release notes").unwrap();
    let src = format!("{}/team/app:v1.2.0", a.host);
    let pinned = env
        .sp(&["--plain-http", "push", "app.bin", "notes.txt", "--to", &src])
        .ok();
    let digest = pinned.split('@').nth(1).unwrap().to_string();
    env.sp(&["--plain-http", "sign", &src, "--key", "release.key"])
        .ok();
    env.sp(&[
        "--plain-http",
        "attest",
        &src,
        "--key",
        "builder.key",
        "--provenance",
        "--commit",
        "0123456789abcdef0123456789abcdef01234567",
        "--source-uri",
        "git+https://github.com/acme/app@refs/tags/v1.2.0",
        "--builder-id",
        "https://ci.example/acme/app/release",
    ])
    .ok();
    env.sp(&[
        "--plain-http",
        "attest",
        &src,
        "--key",
        "builder.key",
        "--sbom",
    ])
    .ok();

    // A -> layout (the air-gapped hop): the tag defaults to the source's
    let to_layout = json(&env.sp(&["--plain-http", "copy", &src, "oci:./airgap", "--json"]));
    assert_eq!(to_layout["digest"], digest.as_str());
    assert_eq!(to_layout["tag"], "v1.2.0");
    // config {} + two files, then the evidence: a signature payload and two envelopes, with a config each
    assert_eq!(to_layout["blobs_copied"], 8, "{to_layout}");
    assert!(to_layout["bytes_copied"].as_u64().unwrap() > 3 << 20);
    let tags: Vec<&str> = to_layout["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["tag"].as_str().unwrap())
        .collect();
    assert_eq!(
        tags,
        [
            sig_tag(&digest),
            format!("{}.att", digest.replace(':', "-"))
        ],
        "{to_layout}"
    );
    // the layout verifies on its own, and skopeo reads the same manifest bytes
    env.sp(&["verify", "oci:./airgap:v1.2.0", "--key", "release.pub"])
        .ok();
    assert_eq!(
        skopeo_raw_digest(&format!("oci:{}:v1.2.0", env.p("airgap"))),
        digest
    );

    // layout -> B, into another repository name and tag
    let dst = format!("{}/prod/app:release", b.host);
    let run = env.sp(&["--plain-http", "copy", "oci:./airgap:v1.2.0", &dst]);
    assert_eq!(run.ok(), format!("{}/prod/app@{digest}", b.host));
    assert!(
        run.stderr.contains(&format!(
            "evidence {}: 1 layer(s), copied",
            sig_tag(&digest)
        )),
        "{}",
        run.stderr
    );

    // at B: same digest, and every gate passes
    assert_eq!(env.sp(&["--plain-http", "resolve", &dst]).ok(), digest);
    assert_eq!(
        skopeo_raw_digest(&format!("docker://{dst}")),
        digest,
        "skopeo reads the same bytes at B"
    );
    env.sp(&["--plain-http", "verify", &dst, "--key", "release.pub"])
        .ok();
    for t in ["slsaprovenance", "cyclonedx"] {
        env.sp(&[
            "--plain-http",
            "verify-attestation",
            &dst,
            "--key",
            "builder.pub",
            "--type",
            t,
        ])
        .ok();
    }
    let policy = "version = 1\n\n[defaults]\ndeny_unmatched = true\n\n\
        [[keys]]\nid = \"release\"\npath = \"release.pub\"\nroles = [\"release\"]\n\n\
        [[keys]]\nid = \"builder\"\npath = \"builder.pub\"\nroles = [\"builder\"]\n\n\
        [[rules]]\nscope = \"*/prod/*\"\nsignatures = { threshold = 1, roles = [\"release\"] }\n\n\
        [[rules.attestations]]\ntype = \"https://slsa.dev/provenance/v1\"\nsigned_by = [\"builder\"]\n\
        builder_id = \"https://ci.example/acme/app/release\"\nsource = \"git+https://github.com/acme/app\"\n\
        ref = \"refs/tags/v*\"\nrequire_commit = true\n\n\
        [[rules.attestations]]\ntype = \"https://cyclonedx.org/bom\"\nsigned_by = [\"builder\"]\n";
    fs::write(env.path().join("policy.toml"), policy).unwrap();
    assert_eq!(
        env.sp(&["--plain-http", "verify", &dst, "--policy", "policy.toml"])
            .ok(),
        format!("{}/prod/app@{digest}", b.host)
    );
    // the files arrive intact
    env.sp(&["--plain-http", "pull", &dst, "-o", "out"]).ok();
    assert_eq!(
        sha256_file(&env.path().join("out/app.bin")),
        sha256_file(&env.path().join("app.bin"))
    );
}

/// Writes `bytes` as a blob of the layout at `root`; returns its descriptor fields (digest, size).
fn layout_blob(root: &Path, bytes: &[u8]) -> (String, usize) {
    let d = sealpack::Digest::of(bytes);
    fs::write(root.join("blobs/sha256").join(d.hex()), bytes).unwrap();
    (d.to_string(), bytes.len())
}

/// An OCI layout holding a two-platform container image (index -> two image manifests, each with an image
/// config and one tar+gzip layer) tagged `v1`. Returns the index digest and the two child digests.
fn multi_platform_layout(root: &Path) -> (String, Vec<String>) {
    fs::create_dir_all(root.join("blobs/sha256")).unwrap();
    fs::write(root.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut children = Vec::new();
    let mut entries = Vec::new();
    for arch in ["amd64", "arm64"] {
        let mut tar = tar::Builder::new(Vec::new());
        let body = format!("hello from {arch}\n");
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        tar.append_data(&mut h, format!("hello-{arch}.txt"), body.as_bytes())
            .unwrap();
        let tar = tar.into_inner().unwrap();
        let diff_id = sealpack::Digest::of(&tar).to_string();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).unwrap();
        let (layer, layer_size) = layout_blob(root, &gz.finish().unwrap());
        let config = serde_json::json!({
            "architecture": arch, "os": "linux", "config": {},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        });
        let (config, config_size) = layout_blob(root, config.to_string().as_bytes());
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": layer_size}],
        });
        let (m, m_size) = layout_blob(root, m.to_string().as_bytes());
        entries.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m, "size": m_size,
            "platform": {"architecture": arch, "os": "linux"},
        }));
        children.push(m);
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    });
    let (index, index_size) = layout_blob(root, index.to_string().as_bytes());
    let top = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json", "digest": index, "size": index_size,
            "annotations": {"org.opencontainers.image.ref.name": "v1"},
        }],
    });
    fs::write(root.join("index.json"), top.to_string()).unwrap();
    (index, children)
}

#[test]
fn multi_platform_index_copies_with_every_child_and_its_signature() {
    let a = Registry::start(Flavor::Plain);
    let b = Registry::start(Flavor::Plain);
    let env = Env::new();
    env.keygen("k", "ecdsa-p256");
    let (index, children) = multi_platform_layout(&env.path().join("img"));
    // an independent tool puts the image in the source registry
    let src = format!("{}/base/img:v1", a.host);
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", env.p("img")),
        &format!("docker://{src}"),
    ]);
    assert_eq!(env.sp(&["--plain-http", "resolve", &src]).ok(), index);
    // sign the index at the source, and one child too
    env.sp(&["--plain-http", "sign", &src, "--key", "k.key"])
        .ok();
    env.sp(&[
        "--plain-http",
        "sign",
        &format!("{}/base/img@{}", a.host, children[0]),
        "--key",
        "k.key",
    ])
    .ok();

    let dst = format!("{}/mirror/img:v1", b.host);
    let report = json(&env.sp(&["--plain-http", "copy", &src, &dst, "--json"]));
    assert_eq!(report["digest"], index.as_str());
    assert_eq!(report["manifests"], 3, "{report}");
    // two configs and two layers, then two signature payloads with a config each
    assert_eq!(report["blobs_copied"], 8, "{report}");
    let evidence = report["evidence"].as_array().unwrap();
    assert!(
        evidence.iter().any(|e| e["subject"] == index.as_str()
            && e["tag"] == sig_tag(&index).as_str()
            && e["action"] == "copied"),
        "{report}"
    );
    assert!(
        evidence
            .iter()
            .any(|e| e["subject"] == children[0].as_str() && e["action"] == "copied"),
        "the child's signature follows: {report}"
    );

    // every child is at B, byte for byte, and the index verifies there
    assert_eq!(skopeo_raw_digest(&format!("docker://{dst}")), index);
    for c in &children {
        assert_eq!(
            skopeo_raw_digest(&format!("docker://{}/mirror/img@{c}", b.host)),
            *c
        );
    }
    env.sp(&["--plain-http", "verify", &dst, "--key", "k.pub"])
        .ok();
    env.sp(&[
        "--plain-http",
        "verify",
        &format!("{}/mirror/img@{}", b.host, children[0]),
        "--key",
        "k.pub",
    ])
    .ok();
    // skopeo can take the whole image back out of B into a layout
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        &format!("docker://{dst}"),
        &format!("oci:{}:v1", env.p("back")),
    ]);
    assert_eq!(
        skopeo_raw_digest(&format!("oci:{}:v1", env.p("back"))),
        index
    );
}

#[test]
fn rerun_moves_no_blob_bytes() {
    let a = Registry::start(Flavor::Plain);
    let b = Registry::start(Flavor::Plain);
    let env = Env::new();
    env.keygen("k", "ecdsa-p256");
    random_file(&env.path().join("app.bin"), 2 << 20, 9);
    let src = format!("{}/app:v1", a.host);
    env.sp(&["--plain-http", "push", "app.bin", "--to", &src])
        .ok();
    env.sp(&["--plain-http", "sign", &src, "--key", "k.key"])
        .ok();
    let dst = format!("{}/app:v1", b.host);
    let first = env.sp(&["--plain-http", "copy", &src, &dst]).digest();
    assert!(b.requests().iter().any(|l| l.is_blob_write()));

    b.clear_requests();
    let again = env.sp(&["--plain-http", "copy", &src, &dst, "--json"]);
    let v = json(&again);
    assert_eq!(v["digest"], first.as_str());
    assert_eq!(v["unchanged"], true);
    assert_eq!(v["bytes_copied"], 0);
    assert_eq!(v["blobs_copied"], 0);
    assert!(
        v["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["action"] == "present"),
        "{v}"
    );
    let reqs = b.requests();
    assert!(
        reqs.iter()
            .all(|l| !l.is_blob_upload() && l.method != "PUT" && l.method != "PATCH"),
        "nothing written on a re-run: {reqs:#?}"
    );
}

#[test]
fn signatures_by_other_keys_at_the_destination_are_merged_not_replaced() {
    let a = Registry::start(Flavor::Plain);
    let b = Registry::start(Flavor::Plain);
    let env = Env::new();
    env.keygen("ours", "ecdsa-p256");
    env.keygen("theirs", "ed25519");
    fs::write(env.path().join("app.txt"), "app").unwrap();
    let src = format!("{}/app:v1", a.host);
    let digest = env
        .sp(&["--plain-http", "push", "app.txt", "--to", &src])
        .digest();
    let dst = format!("{}/app:v1", b.host);
    // the artifact reaches B first, and B's own team signs it there
    env.sp(&["--plain-http", "copy", &src, &dst, "--no-evidence"])
        .ok();
    env.sp(&["--plain-http", "sign", &dst, "--key", "theirs.key"])
        .ok();
    // meanwhile A signs, and the copy brings A's signature over
    env.sp(&["--plain-http", "sign", &src, "--key", "ours.key"])
        .ok();
    let run = env.sp(&["--plain-http", "copy", &src, &dst]);
    run.ok();
    assert!(
        run.stderr.contains("merged into the destination's"),
        "{}",
        run.stderr
    );

    let sig = manifest(&b, "app", &sig_tag(&digest)).unwrap();
    assert_eq!(sig["layers"].as_array().unwrap().len(), 2, "{sig}");
    for k in ["ours.pub", "theirs.pub"] {
        env.sp(&["--plain-http", "verify", &dst, "--key", k]).ok();
    }
    // a second copy adds nothing
    env.sp(&["--plain-http", "copy", &src, &dst]).ok();
    let sig = manifest(&b, "app", &sig_tag(&digest)).unwrap();
    assert_eq!(sig["layers"].as_array().unwrap().len(), 2, "{sig}");
}

#[test]
fn corrupt_source_blob_is_refused_and_no_tag_is_written() {
    let mut a = Registry::start(Flavor::Plain);
    let b = Registry::start(Flavor::Plain);
    let env = Env::new();
    let f = env.path().join("app.bin");
    random_file(&f, 1 << 20, 3);
    let src = format!("{}/app:v1", a.host);
    env.sp(&["--plain-http", "push", "app.bin", "--to", &src])
        .ok();
    // a good copy into a layout first, for the layout variant below
    env.sp(&["--plain-http", "copy", &src, "oci:./l"]).ok();

    // surgery: flip one byte of the stored blob, same length
    let hex = sha256_file(&f);
    let data = a.blob_data_path(&hex);
    let mut bytes = fs::read(&data).unwrap();
    bytes[1000] ^= 0xff;
    fs::write(&data, &bytes).unwrap();
    a.restart();

    let dst = format!("{}/app:v1", b.host);
    let r = env.sp(&["--plain-http", "copy", &src, &dst]);
    r.expect_code(10);
    assert!(
        r.stderr.contains("digest mismatch") && r.stderr.contains(&hex),
        "{}",
        r.stderr
    );
    assert!(manifest(&b, "app", "v1").is_none(), "no tag at B");
    assert!(
        !b.requests()
            .iter()
            .any(|l| l.method == "PUT" && l.path.contains("/manifests/")),
        "no manifest written at B"
    );

    // the same from a layout whose blob was tampered with
    let blob = env.path().join("l/blobs/sha256").join(&hex);
    let mut bytes = fs::read(&blob).unwrap();
    bytes[10] ^= 0x01;
    fs::write(&blob, &bytes).unwrap();
    let r = env.sp(&["--plain-http", "copy", "oci:./l:v1", &dst]);
    r.expect_code(10);
    assert!(r.stderr.contains(&hex), "{}", r.stderr);
    assert!(manifest(&b, "app", "v1").is_none(), "no tag at B");
    // and into a layout: nothing tagged there either
    let r = env.sp(&["--plain-http", "copy", &src, "oci:./l2"]);
    r.expect_code(10);
    env.sp(&["resolve", "oci:./l2:v1"]).expect_code(1);
}

#[test]
fn destination_tag_is_not_clobbered_without_allow_overwrite() {
    let a = Registry::start(Flavor::Plain);
    let b = Registry::start(Flavor::Plain);
    let env = Env::new();
    fs::write(env.path().join("new.txt"), "new").unwrap();
    fs::write(env.path().join("old.txt"), "old").unwrap();
    let src = format!("{}/app:v1", a.host);
    let new = env
        .sp(&["--plain-http", "push", "new.txt", "--to", &src])
        .digest();
    let dst = format!("{}/app:v1", b.host);
    let old = env
        .sp(&["--plain-http", "push", "old.txt", "--to", &dst])
        .digest();

    b.clear_requests();
    let r = env.sp(&["--plain-http", "copy", &src, &dst]);
    r.expect_code(1);
    assert!(
        r.stderr.contains("already points at") && r.stderr.contains(&old),
        "{}",
        r.stderr
    );
    assert!(
        b.requests()
            .iter()
            .all(|l| l.method == "GET" || l.method == "HEAD"),
        "nothing written at B"
    );
    assert_eq!(env.sp(&["--plain-http", "resolve", &dst]).ok(), old);

    let moved = env
        .sp(&["--plain-http", "copy", &src, &dst, "--allow-overwrite"])
        .digest();
    assert_eq!(moved, new);
    assert_eq!(env.sp(&["--plain-http", "resolve", &dst]).ok(), new);

    // a destination naming another digest is a usage error
    let r = env.sp(&[
        "--plain-http",
        "copy",
        &src,
        &format!("{}/app@{old}", b.host),
    ]);
    r.expect_code(2);
}

#[test]
fn copy_within_one_registry_mounts_every_blob() {
    let reg = Registry::start(Flavor::Plain);
    let env = Env::new();
    env.keygen("k", "ecdsa-p256");
    random_file(&env.path().join("app.bin"), 2 << 20, 21);
    let src = format!("{}/team/build:v1", reg.host);
    let digest = env
        .sp(&["--plain-http", "push", "app.bin", "--to", &src])
        .digest();
    env.sp(&["--plain-http", "sign", &src, "--key", "k.key"])
        .ok();
    // a fresh cache: mounts must come from knowing the source repository, not from remembered locations
    fs::remove_dir_all(env.docker.join("sealpack-cache")).ok();

    reg.clear_requests();
    let dst = format!("{}/team/prod:v1", reg.host);
    let v = json(&env.sp(&["--plain-http", "copy", &src, &dst, "--json"]));
    assert_eq!(v["digest"], digest.as_str());
    assert_eq!(v["bytes_copied"], 0, "{v}");
    assert_eq!(v["blobs_copied"], 0, "{v}");
    assert!(v["blobs_mounted"].as_u64().unwrap() >= 2, "{v}");
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
    env.sp(&["--plain-http", "verify", &dst, "--key", "k.pub"])
        .ok();
    env.sp(&["--plain-http", "pull", &dst, "-o", "out"]).ok();
    assert_eq!(
        sha256_file(&env.path().join("out/app.bin")),
        sha256_file(&env.path().join("app.bin"))
    );
}
