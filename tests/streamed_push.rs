//! A large file pushed to a new tag is sent while it is hashed (PATCH to an upload session, then `PUT ?digest=`),
//! on a REAL docker-registry: the bytes arrive intact, a secret never leaves, a blob the registry already has is
//! not committed twice, `--hash-first` sends nothing in that case, and a failed streamed upload falls back to
//! the ordinary one. See `stream_file` in src/artifact/push.rs and docs/PERFORMANCE.md.

mod common;

use std::fs;
use std::path::Path;

use common::cli::{TestEnv as Env, random_file, sha256_file};
use common::fault_proxy::{Fault, FaultProxy, Rule};
use common::registry::{AccessLine, Flavor, Registry};

/// Above push's streaming threshold (16 MiB).
const LARGE: u64 = 24 << 20;

/// `push FILE --to REF --plain-http --json` with its own fresh digest cache (`cache` names it), plus `extra`.
fn push(env: &Env, file: &str, to: &str, cache: &str, extra: &[&str]) -> common::cli::Run {
    let mut args = vec!["push", file, "--to", to, "--plain-http", "--json"];
    args.extend_from_slice(extra);
    env.cmd(&args)
        .env("SEALPACK_CACHE_DIR", &env.p(cache))
        .run()
}

/// [`push`] that must succeed; its `--json` report.
fn push_ok(env: &Env, file: &str, to: &str, cache: &str, extra: &[&str]) -> serde_json::Value {
    let run = push(env, file, to, cache, extra);
    assert_eq!(run.code, 0, "{}", run.stderr);
    json(&run)
}

fn json(run: &common::cli::Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

fn uploads<'a>(log: &'a [AccessLine], method: &str) -> Vec<&'a AccessLine> {
    log.iter()
        .filter(|l| l.method == method && l.is_blob_upload())
        .collect()
}

/// Every byte under `dir`, searched for `needle`.
fn tree_contains(dir: &Path, needle: &[u8]) -> Option<String> {
    for e in walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
    {
        if e.file_type().is_file() {
            let data = fs::read(e.path()).unwrap_or_default();
            if data.windows(needle.len()).any(|w| w == needle) {
                return Some(e.path().display().to_string());
            }
        }
    }
    None
}

/// Bytes of upload-session data the registry still keeps for `repo`.
fn upload_bytes_kept(reg: &Registry, repo: &str) -> u64 {
    let dir = reg
        .root
        .join("docker/registry/v2/repositories")
        .join(repo)
        .join("_uploads");
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file() && e.file_name() == "data")
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}

#[test]
fn a_large_file_to_a_new_tag_is_sent_while_hashed_and_arrives_intact() {
    let reg = Registry::start(Flavor::Plain);
    let env = Env::new();
    random_file(&env.path().join("big.bin"), LARGE + 12345, 1);
    random_file(&env.path().join("small.bin"), 1 << 20, 2);
    let big = sha256_file(&env.path().join("big.bin"));

    let report = push_ok(
        &env,
        "big.bin",
        &format!("{}/s/app:v1", reg.host),
        "c1",
        &[],
    );
    assert_eq!(report["layers"][0]["transfer"], "uploaded");
    assert_eq!(report["bytes_uploaded"], LARGE + 12345 + 2);
    assert!(report.get("discarded_bytes").is_none(), "{report}");
    let log = reg.requests();
    // the file went in one PATCH, and the session was closed by a PUT naming the digest computed locally
    let patches = uploads(&log, "PATCH");
    assert_eq!(patches.len(), 1, "{log:#?}");
    assert_eq!(patches[0].status, 202);
    let commit: Vec<_> = uploads(&log, "PUT")
        .into_iter()
        .filter(|l| l.path.contains(&format!("digest=sha256%3A{big}")) || l.path.contains(&big))
        .collect();
    assert_eq!(commit.len(), 1, "{log:#?}");
    assert_eq!(commit[0].status, 201);
    // and the registry holds exactly the file's bytes
    assert_eq!(sha256_file(&reg.blob_data_path(&big)), big);
    env.cmd(&[
        "pull",
        &format!("{}/s/app:v1", reg.host),
        "-o",
        "out",
        "--plain-http",
    ])
    .run()
    .ok();
    assert_eq!(sha256_file(&env.path().join("out/big.bin")), big);

    // below the threshold, and with --hash-first: hashed first, one monolithic PUT, no PATCH
    reg.clear_requests();
    push_ok(
        &env,
        "small.bin",
        &format!("{}/s/small:v1", reg.host),
        "c2",
        &[],
    );
    random_file(&env.path().join("big2.bin"), LARGE, 3);
    push_ok(
        &env,
        "big2.bin",
        &format!("{}/s/big2:v1", reg.host),
        "c3",
        &["--hash-first"],
    );
    let log = reg.requests();
    assert!(uploads(&log, "PATCH").is_empty(), "{log:#?}");
    assert_eq!(uploads(&log, "PUT").len(), 4, "{log:#?}"); // each file and each config
}

#[test]
fn a_secret_in_a_large_file_never_reaches_the_registry() {
    let reg = Registry::start(Flavor::Plain);
    let env = Env::new();
    let token = format!("ghp_{}", "q7W8e9R0t1Y2".repeat(3));
    // one near the start (the scanner holds the upload back at once) and one deep inside the file
    for (name, at) in [("early.bin", 4096u64), ("late.bin", 20 << 20)] {
        let path = env.path().join(name);
        random_file(&path, LARGE, 7);
        let mut data = fs::read(&path).unwrap();
        let at = at as usize;
        data[at..at + token.len() + 2].copy_from_slice(format!("\n{token}\n").as_bytes());
        fs::write(&path, &data).unwrap();
        let repo = format!("s/{}", name.trim_end_matches(".bin"));

        reg.clear_requests();
        let run = push(&env, name, &format!("{}/{repo}:v1", reg.host), name, &[]);
        assert_eq!(run.code, 2, "{name}: {}", run.stderr);
        assert!(run.stderr.contains("github-token"), "{}", run.stderr);
        let log = reg.requests();
        // the streamed upload was opened, then thrown away: nothing committed, nothing tagged, nothing kept
        assert_eq!(uploads(&log, "POST").len(), 1, "{log:#?}");
        assert!(
            uploads(&log, "DELETE").iter().any(|l| l.status == 204),
            "{log:#?}"
        );
        assert!(uploads(&log, "PUT").is_empty(), "{log:#?}");
        assert!(
            !log.iter()
                .any(|l| l.path.contains("/manifests/") && l.method == "PUT")
        );
        assert_eq!(upload_bytes_kept(&reg, &repo), 0);
        let hex = sha256_file(&path);
        assert!(!reg.blob_data_path(&hex).exists());
        assert_eq!(
            tree_contains(&reg.root, token.as_bytes()),
            None,
            "{name}: the token reached the registry's storage"
        );
    }
}

#[test]
fn a_blob_the_registry_has_is_not_committed_again_and_hash_first_sends_nothing() {
    let reg = Registry::start(Flavor::Plain);
    let env = Env::new();
    random_file(&env.path().join("model.bin"), LARGE, 11);
    let hex = sha256_file(&env.path().join("model.bin"));
    push(
        &env,
        "model.bin",
        &format!("{}/m/model:v1", reg.host),
        "a",
        &[],
    )
    .ok();

    // a fresh machine (empty caches) pushes the same file under a new tag: the hash finds the blob present,
    // the streamed session is thrown away, the layer is reported present
    reg.clear_requests();
    let report = push_ok(
        &env,
        "model.bin",
        &format!("{}/m/model:v2", reg.host),
        "b",
        &[],
    );
    assert_eq!(report["layers"][0]["transfer"], "present", "{report}");
    assert_eq!(report["bytes_uploaded"], 0, "{report}");
    let log = reg.requests();
    assert!(
        !uploads(&log, "PUT").iter().any(|l| l.path.contains(&hex)),
        "committed again: {log:#?}"
    );
    assert_eq!(upload_bytes_kept(&reg, "m/model"), 0, "{log:#?}");

    // --hash-first: only HEADs for the file, not one byte of it sent
    reg.clear_requests();
    let report = push_ok(
        &env,
        "model.bin",
        &format!("{}/m/model:v3", reg.host),
        "c",
        &["--hash-first"],
    );
    assert_eq!(report["layers"][0]["transfer"], "present", "{report}");
    assert!(report.get("discarded_bytes").is_none(), "{report}");
    let log = reg.requests();
    assert!(
        log.iter().all(|l| !l.is_blob_upload()),
        "bytes were sent: {log:#?}"
    );
    // every tag resolves to a manifest whose file is the same blob
    for tag in ["v1", "v2", "v3"] {
        env.cmd(&[
            "pull",
            &format!("{}/m/model:{tag}", reg.host),
            "-o",
            tag,
            "--plain-http",
        ])
        .run()
        .ok();
        assert_eq!(sha256_file(&env.path().join(tag).join("model.bin")), hex);
    }
}

#[test]
fn a_streamed_upload_cut_by_the_network_falls_back_to_an_ordinary_upload() {
    let reg = Registry::start(Flavor::Plain);
    let proxy = FaultProxy::start(&reg.base_url());
    let env = Env::new();
    random_file(&env.path().join("big.bin"), LARGE, 5);
    let hex = sha256_file(&env.path().join("big.bin"));
    let reset = proxy.add(
        Rule::on("PATCH", "/blobs/uploads/")
            .times(1)
            .fault(Fault::ResetBody { after: 2 << 20 }),
    );
    let run = env
        .cmd(&[
            "push",
            "big.bin",
            "--to",
            &format!("{}/s/app:v1", proxy.host),
            "--plain-http",
            "--json",
        ])
        .env("SEALPACK_LOW_SPEED_TIMEOUT", "3s")
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(proxy.hits(reset), 1, "{:#?}", proxy.requests());
    // the blob came by an ordinary PUT after the cut PATCH, and is whole
    assert_eq!(proxy.count("PUT", &hex), 1, "{:?}", proxy.requests());
    assert_eq!(sha256_file(&reg.blob_data_path(&hex)), hex);
    assert_eq!(json(&run)["layers"][0]["transfer"], "uploaded");
}

#[test]
fn a_registry_that_refuses_streamed_patches_gets_ordinary_uploads() {
    let reg = Registry::start(Flavor::Plain);
    let proxy = FaultProxy::start(&reg.base_url());
    let env = Env::new();
    // five large files: push streams four at a time, so the fifth starts after the first refusals
    let names: Vec<String> = (1..=5).map(|i| format!("f{i}.bin")).collect();
    let mut digests = Vec::new();
    for (i, n) in names.iter().enumerate() {
        random_file(&env.path().join(n), (17 << 20) + i as u64, 30 + i as u64);
        digests.push(sha256_file(&env.path().join(n)));
    }
    // as a registry that follows the OCI spec to the letter: no PATCH without Content-Range
    proxy.add(Rule::on("PATCH", "/blobs/uploads/").fault(Fault::Status {
        status: 400,
        retry_after: None,
    }));
    let rest: Vec<&str> = names[1..].iter().map(String::as_str).collect();
    let report = push_ok(
        &env,
        &names[0],
        &format!("{}/s/app:v1", proxy.host),
        "c",
        &rest,
    );
    for i in 0..5 {
        assert_eq!(report["layers"][i]["transfer"], "uploaded", "{report}");
    }
    // refused PATCHes only for the files already in flight: once refused, the rest go the ordinary way;
    // every file came by one ordinary PUT and is whole on the registry
    let patches = proxy.count("PATCH", "/blobs/uploads/");
    assert!(
        (1..=4).contains(&patches),
        "{patches} PATCHes: {:?}",
        proxy.requests()
    );
    for d in &digests {
        assert_eq!(proxy.count("PUT", d), 1, "{d}");
        assert_eq!(sha256_file(&reg.blob_data_path(d)), *d);
    }
}

#[test]
fn large_files_of_a_layer_per_file_folder_are_streamed_in_their_place() {
    let reg = Registry::start(Flavor::Plain);
    let env = Env::new();
    let model = env.path().join("model");
    fs::create_dir_all(model.join("weights")).unwrap();
    fs::write(model.join("config.json"), b"{\"layers\": 2}\n").unwrap();
    random_file(&model.join("weights/part-1.bin"), LARGE, 41);
    fs::write(model.join("weights/part-1.txt"), b"notes\n").unwrap();
    random_file(&model.join("weights/part-2.bin"), (17 << 20) + 7, 42);
    let report = push_ok(
        &env,
        "model",
        &format!("{}/m/bundle:v1", reg.host),
        "c",
        &["--layer-per-file"],
    );
    let titles: Vec<&str> = report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        [
            "model/config.json",
            "model/weights/part-1.bin",
            "model/weights/part-1.txt",
            "model/weights/part-2.bin"
        ]
    );
    // the two large files went by PATCH, the small ones by ordinary PUTs
    let log = reg.requests();
    assert_eq!(uploads(&log, "PATCH").len(), 2, "{log:#?}");
    env.cmd(&[
        "pull",
        &format!("{}/m/bundle:v1", reg.host),
        "-o",
        "out",
        "--plain-http",
    ])
    .run()
    .ok();
    assert_eq!(
        common::cli::tree_digests(&env.path().join("out/model")),
        common::cli::tree_digests(&model)
    );
}

#[test]
fn an_allowed_finding_lets_the_held_upload_go_on() {
    let reg = Registry::start(Flavor::Plain);
    let env = Env::new();
    let token = format!("ghp_{}", "q7W8e9R0t1Y2".repeat(3));
    let path = env.path().join("fixture.bin");
    random_file(&path, LARGE, 8);
    let mut data = fs::read(&path).unwrap();
    data[1000..1000 + token.len() + 2].copy_from_slice(format!("\n{token}\n").as_bytes());
    fs::write(&path, &data).unwrap();
    let hex = sha256_file(&path);
    // the scanner holds the upload at the token until the push decides; --allow-secret lets it go on
    let report = push_ok(
        &env,
        "fixture.bin",
        &format!("{}/s/fixture:v1", reg.host),
        "c",
        &["--allow-secret", "fixture.bin"],
    );
    assert_eq!(report["layers"][0]["transfer"], "uploaded");
    assert_eq!(
        report["allowed_secrets"][0]["rule"], "github-token",
        "{report}"
    );
    let log = reg.requests();
    assert_eq!(uploads(&log, "PATCH").len(), 1, "{log:#?}");
    assert_eq!(sha256_file(&reg.blob_data_path(&hex)), hex);
}
