//! Registry faults and lies, made by the fault-injecting proxy (tests/common/fault_proxy.rs) in front of a REAL
//! docker-registry. Transient faults end in success with the right digest; persistent ones in exit 1 (could not
//! do or check) or 10 (refused content) with a message naming the fault; the real registry is checked directly
//! for what was left behind, and `pull -o` folders for what was written. docs/FAULTS.md lists each case.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::cli::{Run, TestEnv as Env, random_file, sha256_file};
use common::fault_proxy::{Fault, FaultProxy, Rule, Sink, https_redirector};
use common::registry::{Flavor, Registry, make_test_pki};

/// A real registry, a proxy in front of it, and a test folder.
struct Rig {
    reg: Registry,
    proxy: FaultProxy,
    env: Env,
}

fn rig(flavor: Flavor) -> Rig {
    let reg = Registry::start(flavor);
    let proxy = FaultProxy::start(&reg.base_url());
    Rig {
        reg,
        proxy,
        env: Env::new(),
    }
}

impl Rig {
    /// `HOST/REPO[:TAG]` on the registry itself.
    fn direct(&self, r: &str) -> String {
        format!("{}/{r}", self.reg.host)
    }
    /// `HOST/REPO[:TAG]` through the proxy.
    fn via(&self, r: &str) -> String {
        format!("{}/{r}", self.proxy.host)
    }
    /// `sealpack ARGS --plain-http` with a retry budget (and a generous low-speed timeout).
    fn run(&self, args: &[&str], budget: &str) -> Run {
        self.run_env(args, &[("SEALPACK_RETRY_BUDGET", budget)])
    }
    fn run_env(&self, args: &[&str], vars: &[(&str, &str)]) -> Run {
        let mut a = args.to_vec();
        a.push("--plain-http");
        let mut c = self
            .env
            .cmd(&a)
            .env("SEALPACK_PASSWORD", common::cli::TEST_PASSWORD)
            .env("SEALPACK_LOW_SPEED_TIMEOUT", "10s");
        for (k, v) in vars {
            c = c.env(k, v);
        }
        c.run()
    }
    /// The HTTP status the registry itself gives for `GET /v2/PATH` (no proxy).
    fn direct_status(&self, method: &str, path: &str) -> String {
        let out = self
            .reg
            .curl()
            .args(["-o", "/dev/null", "-w", "%{http_code}", "-X", method])
            .args(if method == "HEAD" { vec!["-I"] } else { vec![] })
            .arg(self.reg.url(&format!("/v2/{path}")))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    }
    /// A `len`-byte random file `name` in the test folder; returns its `sha256:` digest.
    fn file(&self, name: &str, len: u64, seed: u64) -> String {
        let p = self.env.path().join(name);
        random_file(&p, len, seed);
        format!("sha256:{}", sha256_file(&p))
    }
    /// Files in `dir` of the test folder (empty when it does not exist).
    fn listing(&self, dir: &str) -> Vec<String> {
        match fs::read_dir(self.env.path().join(dir)) {
            Ok(rd) => rd
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => vec![],
        }
    }
}

#[track_caller]
fn expect_fail(run: &Run, code: i32, needles: &[&str]) {
    run.expect_code(code);
    for n in needles {
        assert!(
            run.stderr.contains(n),
            "stderr lacks {n:?}:\n{}",
            run.stderr
        );
    }
    assert!(
        !run.stdout.contains("verified"),
        "claims verified:\n{}",
        run.stdout
    );
}

// ---------------------------------------------------------------- transient faults: retried, right digest

#[test]
fn a_reset_mid_upload_restarts_the_session_and_the_digest_is_the_local_one() {
    let r = rig(Flavor::Plain);
    let file_digest = r.file("big.bin", 2 << 20, 1);
    let hex = file_digest.trim_start_matches("sha256:");
    let reset = r.proxy.add(
        Rule::on("PUT", hex)
            .times(1)
            .fault(Fault::ResetBody { after: 300 << 10 }),
    );
    let pushed = r
        .run(&["push", "big.bin", "--to", &r.via("t/app:v1")], "20s")
        .digest();
    assert_eq!(r.proxy.hits(reset), 1);
    // two upload sessions for the file: the reset one and its replacement
    assert_eq!(r.proxy.count("PUT", hex), 2, "{:?}", r.proxy.requests());
    // the registry itself has the tag on the pushed digest and the exact file bytes
    let direct = r.run(&["resolve", &r.direct("t/app:v1")], "5s").ok();
    assert!(direct.ends_with(&pushed), "{direct} vs {pushed}");
    r.run(&["pull", &r.direct("t/app:v1"), "-o", "out"], "5s")
        .ok();
    assert_eq!(
        format!("sha256:{}", sha256_file(&r.env.path().join("out/big.bin"))),
        file_digest
    );
}

#[test]
fn a_copy_whose_upload_is_reset_fetches_the_source_again_and_restarts() {
    let r = rig(Flavor::Plain);
    let file_digest = r.file("big.bin", 2 << 20, 9);
    let hex = file_digest.trim_start_matches("sha256:");
    let layout = format!("oci:{}", r.env.p("layout"));
    let pushed = r
        .run(&["push", "big.bin", "--to", &format!("{layout}:v1")], "5s")
        .digest();
    let reset = r.proxy.add(
        Rule::on("PUT", hex)
            .times(1)
            .fault(Fault::ResetBody { after: 300 << 10 }),
    );
    // layout -> registry: the blob is streamed from the layout store, so the restart must read it again
    let copied = r
        .run(
            &["copy", &format!("{layout}:v1"), &r.via("t/copy:v1")],
            "20s",
        )
        .digest();
    assert_eq!(copied, pushed);
    assert_eq!(r.proxy.hits(reset), 1);
    assert_eq!(r.proxy.count("PUT", hex), 2, "{:?}", r.proxy.requests());
    r.run(&["pull", &r.direct("t/copy:v1"), "-o", "out"], "5s")
        .ok();
    assert_eq!(
        format!("sha256:{}", sha256_file(&r.env.path().join("out/big.bin"))),
        file_digest
    );
}

#[test]
fn a_503_with_retry_after_is_waited_for_then_retried() {
    let r = rig(Flavor::Plain);
    r.file("a.bin", 4096, 2);
    let pushed = r
        .run(&["push", "a.bin", "--to", &r.direct("t/app:v1")], "5s")
        .digest();
    let busy = r.proxy.add(
        Rule::on("GET", "/manifests/v1")
            .times(1)
            .fault(Fault::Status {
                status: 503,
                retry_after: Some("1".into()),
            }),
    );
    let t = Instant::now();
    let pulled = r
        .run(&["pull", &r.via("t/app:v1"), "-o", "out"], "20s")
        .digest();
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 not honoured"
    );
    assert_eq!(pulled, pushed);
    assert_eq!(r.proxy.hits(busy), 1);
    assert_eq!(r.proxy.count("GET", "/manifests/v1"), 2);
    assert_eq!(r.listing("out"), ["a.bin"]);
}

#[test]
fn a_503_with_an_http_date_retry_after_is_honoured() {
    let r = rig(Flavor::Plain);
    r.file("a.bin", 4096, 2);
    let pushed = r
        .run(&["push", "a.bin", "--to", &r.direct("t/app:v1")], "5s")
        .digest();
    // a date in the past: retry at once
    let busy = r.proxy.add(
        Rule::on("GET", "/manifests/v1")
            .times(1)
            .fault(Fault::Status {
                status: 503,
                retry_after: Some("Wed, 21 Oct 2015 07:28:00 GMT".into()),
            }),
    );
    let resolved = r.run(&["resolve", &r.via("t/app:v1")], "20s").ok();
    assert!(resolved.ends_with(&pushed));
    assert_eq!(r.proxy.hits(busy), 1);
}

#[test]
fn a_429_on_the_upload_session_and_a_500_on_the_manifest_put_are_retried() {
    let r = rig(Flavor::Plain);
    let file_digest = r.file("a.bin", 100_000, 3);
    let limited = r.proxy.add(
        Rule::on("POST", "/blobs/uploads/")
            .times(1)
            .fault(Fault::Status {
                status: 429,
                retry_after: None,
            }),
    );
    let broken = r.proxy.add(
        Rule::on("PUT", "/manifests/")
            .times(1)
            .fault(Fault::Status {
                status: 500,
                retry_after: None,
            }),
    );
    let pushed = r
        .run(&["push", "a.bin", "--to", &r.via("t/app:v1")], "20s")
        .digest();
    assert_eq!((r.proxy.hits(limited), r.proxy.hits(broken)), (1, 1));
    let direct = r.run(&["resolve", &r.direct("t/app:v1")], "5s").ok();
    assert!(direct.ends_with(&pushed));
    assert_eq!(
        r.direct_status("HEAD", &format!("t/app/blobs/{file_digest}")),
        "200"
    );
}

// ---------------------------------------------------------------- persistent faults: exit 1, nothing left

#[test]
fn a_reset_on_every_upload_gives_up_with_exit_1_and_leaves_no_tag() {
    let r = rig(Flavor::Plain);
    let file_digest = r.file("big.bin", 1 << 20, 4);
    let reset = r.proxy.add(
        Rule::on("PUT", file_digest.trim_start_matches("sha256:"))
            .fault(Fault::ResetBody { after: 100 << 10 }),
    );
    let t = Instant::now();
    let run = r.run(&["push", "big.bin", "--to", &r.via("t/app:v1")], "2s");
    expect_fail(&run, 1, &["uploading", "attempts", "Connection reset"]);
    assert!(
        run.stderr.contains("retry budget") || run.stderr.contains("most allowed"),
        "{}",
        run.stderr
    );
    assert!(t.elapsed() < Duration::from_secs(15));
    assert!(r.proxy.hits(reset) >= 2, "no retry happened");
    // the real registry: no tag, no blob
    assert_eq!(r.direct_status("GET", "t/app/manifests/v1"), "404");
    assert_eq!(
        r.direct_status("HEAD", &format!("t/app/blobs/{file_digest}")),
        "404"
    );
}

#[test]
fn verify_through_a_registry_that_503s_forever_exits_1_never_verified() {
    let r = rig(Flavor::Plain);
    r.env.keygen("k", "ecdsa-p256");
    r.file("a.bin", 1000, 5);
    r.run(&["push", "a.bin", "--to", &r.direct("t/app:v1")], "5s")
        .ok();
    r.run(&["sign", &r.direct("t/app:v1"), "--key", "k.key"], "5s")
        .ok();
    // sanity: through a healthy proxy it verifies
    r.run(&["verify", &r.via("t/app:v1"), "--key", "k.pub"], "5s")
        .ok();

    // the signature lookup fails for good: could not check is not verified, and not denied either
    let down = r.proxy.add(Rule::on("GET", ".sig").fault(Fault::Status {
        status: 503,
        retry_after: None,
    }));
    let run = r.run(&["verify", &r.via("t/app:v1"), "--key", "k.pub"], "2s");
    expect_fail(&run, 1, &["503", "attempts"]);
    assert!(r.proxy.hits(down) >= 2, "no retry happened");

    // everything fails, with a Retry-After far beyond the budget: give up at once
    r.proxy.add(Rule::on("*", "/v2/").fault(Fault::Status {
        status: 503,
        retry_after: Some("999999".into()),
    }));
    let t = Instant::now();
    let run = r.run(&["verify", &r.via("t/app:v1"), "--key", "k.pub"], "2s");
    expect_fail(&run, 1, &["1 attempt:", "retry budget"]);
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn auth_failures_and_other_4xx_are_not_retried() {
    let r = rig(Flavor::Plain);
    let forbidden = r
        .proxy
        .add(Rule::on("GET", "/manifests/").fault(Fault::Status {
            status: 403,
            retry_after: None,
        }));
    let run = r.run(&["resolve", &r.via("t/app:v1")], "20s");
    expect_fail(&run, 1, &["403"]);
    assert_eq!(r.proxy.hits(forbidden), 1);
}

#[test]
fn a_slow_drip_and_a_silent_registry_hit_the_low_speed_timeout() {
    let r = rig(Flavor::Plain);
    let file_digest = r.file("a.bin", 64 << 10, 6);
    r.run(&["push", "a.bin", "--to", &r.direct("t/app:v1")], "5s")
        .ok();
    let drip = r.proxy.add(
        Rule::on("GET", &format!("/blobs/{file_digest}"))
            .fault(Fault::Drip(Duration::from_secs(1))),
    );
    let t = Instant::now();
    let run = r.run_env(
        &["pull", &r.via("t/app:v1"), "-o", "out"],
        &[
            ("SEALPACK_RETRY_BUDGET", "2s"),
            ("SEALPACK_LOW_SPEED_TIMEOUT", "1s"),
        ],
    );
    expect_fail(&run, 1, &["low-speed timeout"]);
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_eq!(r.proxy.hits(drip), 1);
    assert!(r.listing("out").is_empty(), "{:?}", r.listing("out"));

    // no response head at all
    r.proxy
        .add(Rule::on("GET", "/manifests/v1").fault(Fault::Stall));
    let run = r.run_env(
        &["resolve", &r.via("t/app:v1")],
        &[
            ("SEALPACK_RETRY_BUDGET", "2s"),
            ("SEALPACK_LOW_SPEED_TIMEOUT", "1s"),
        ],
    );
    expect_fail(&run, 1, &["no response within 1s"]);
}

// ---------------------------------------------------------------- lies: caught and named (exit 10)

#[test]
fn corrupted_blob_bytes_are_refused_and_nothing_is_written() {
    let r = rig(Flavor::Plain);
    let file_digest = r.file("a.bin", 100_000, 7);
    r.run(&["push", "a.bin", "--to", &r.direct("t/app:v1")], "5s")
        .ok();
    let corrupt = r
        .proxy
        .add(Rule::on("GET", &format!("/blobs/{file_digest}")).fault(Fault::CorruptBody));
    let run = r.run(&["pull", &r.via("t/app:v1"), "-o", "out"], "5s");
    expect_fail(&run, 10, &["digest mismatch", &file_digest]);
    assert_eq!(r.proxy.hits(corrupt), 1, "a lie is not retried");
    assert!(r.listing("out").is_empty(), "{:?}", r.listing("out"));
}

/// A download cut off mid-body resumes from where it broke (`Range`), and the file is exactly the blob; cut off
/// every time, it gives up after a few resumes with exit 1 and writes nothing.
#[test]
fn a_download_cut_mid_body_resumes_with_range() {
    let r = rig(Flavor::Plain);
    let file_digest = r.file("a.bin", 3 << 20, 11);
    r.run(&["push", "a.bin", "--to", &r.direct("t/app:v1")], "5s")
        .ok();
    let blob = format!("/blobs/{file_digest}");
    let cut = r.proxy.add(
        Rule::on("GET", &blob)
            .times(2)
            .fault(Fault::CutBody { after: 1 << 20 }),
    );
    let run = r.run(&["pull", &r.via("t/app:v1"), "-o", "out"], "10s");
    run.ok();
    assert_eq!(r.proxy.hits(cut), 2, "cut twice");
    assert_eq!(
        r.proxy.count("GET", &blob),
        3,
        "the first request and two resumes"
    );
    assert_eq!(
        format!("sha256:{}", sha256_file(&r.env.path().join("out/a.bin"))),
        file_digest
    );

    // cut every time: a bounded number of resumes, then exit 1, nothing written
    r.proxy
        .add(Rule::on("GET", &blob).fault(Fault::CutBody { after: 1000 }));
    let run = r.run(&["pull", &r.via("t/app:v1"), "-o", "out2"], "10s");
    expect_fail(&run, 1, &[&file_digest]);
    assert!(r.listing("out2").is_empty(), "{:?}", r.listing("out2"));
}

#[test]
fn a_blob_longer_than_its_descriptor_is_cut_at_size_plus_one() {
    let r = rig(Flavor::Plain);
    let file_digest = r.file("a.bin", 10_000, 8);
    r.run(&["push", "a.bin", "--to", &r.direct("t/app:v1")], "5s")
        .ok();
    r.proxy.add(
        Rule::on("GET", &format!("/blobs/{file_digest}"))
            .fault(Fault::AppendBody(vec![0u8; 1 << 20])),
    );
    let run = r.run(&["pull", &r.via("t/app:v1"), "-o", "out"], "5s");
    expect_fail(&run, 10, &["size mismatch", "10000 bytes, got 10001"]);
    assert!(r.listing("out").is_empty());
}

#[test]
fn a_lying_docker_content_digest_is_ignored_and_substituted_manifests_are_refused() {
    let r = rig(Flavor::Plain);
    r.file("a.bin", 1000, 9);
    r.file("b.bin", 1000, 10);
    let a = r
        .run(&["push", "a.bin", "--to", &r.direct("t/app:a")], "5s")
        .digest();
    let b = r
        .run(&["push", "b.bin", "--to", &r.direct("t/app:b")], "5s")
        .digest();
    // by tag: the header says B, the body is A; the digest is computed from the body
    r.proxy.add(
        Rule::on("GET", "/manifests/a")
            .fault(Fault::SetHeader("Docker-Content-Digest".into(), b.clone())),
    );
    let resolved = r.run(&["resolve", &r.via("t/app:a")], "5s").ok();
    assert!(resolved.ends_with(&a), "{resolved}");
    // by digest: B's bytes served for A, with a header that agrees with the request
    r.proxy.add(
        Rule::on("GET", &format!("/manifests/{a}"))
            .fault(Fault::Upstream(format!("/v2/t/app/manifests/{b}"))),
    );
    r.proxy.add(
        Rule::on("GET", &format!("/manifests/{a}"))
            .fault(Fault::SetHeader("Docker-Content-Digest".into(), a.clone())),
    );
    let run = r.run(
        &["pull", &format!("{}@{a}", r.via("t/app")), "-o", "out"],
        "5s",
    );
    expect_fail(&run, 10, &["digest mismatch", &a, &b]);
    assert!(r.listing("out").is_empty());
}

#[test]
fn a_tag_that_moves_between_reads_is_read_once() {
    let r = rig(Flavor::Plain);
    r.env.keygen("k", "ecdsa-p256");
    fs::write(r.env.path().join("f.txt"), "release A").unwrap();
    let a = r
        .run(&["push", "f.txt", "--to", &r.direct("t/app:v1")], "5s")
        .digest();
    fs::write(r.env.path().join("f.txt"), "release B").unwrap();
    let b = r
        .run(&["push", "f.txt", "--to", &r.direct("t/app:b")], "5s")
        .digest();
    r.run(&["sign", &r.direct("t/app:b"), "--key", "k.key"], "5s")
        .ok();
    // the first read of :v1 gives A, every later one B (signed)
    let moved = r.proxy.add(
        Rule::on("GET", "/manifests/v1")
            .skip(1)
            .fault(Fault::Upstream("/v2/t/app/manifests/b".into())),
    );
    let run = r.run(&["pull", &r.via("t/app:v1"), "-o", "out"], "5s");
    assert_eq!(run.digest(), a);
    assert_eq!(
        fs::read_to_string(r.env.path().join("out/f.txt")).unwrap(),
        "release A"
    );
    assert_eq!(r.proxy.hits(moved), 0, "the tag was read twice");
    // the tag now reads B: verify checks what it resolved, and says which digest
    let run = r.run(&["verify", &r.via("t/app:v1"), "--key", "k.pub"], "5s");
    run.expect_code(0);
    assert!(run.stdout.contains(&b), "{}", run.stdout);
    assert!(!run.stdout.contains(&a));
    assert_eq!(r.proxy.hits(moved), 1, "the tag was read more than once");
}

#[test]
fn oversized_manifests_too_many_layers_and_a_wrong_content_type_are_refused() {
    let r = rig(Flavor::Plain);
    let file_digest = r.file("a.bin", 100, 11);
    r.run(&["push", "a.bin", "--to", &r.direct("t/app:v1")], "5s")
        .ok();
    let manifest = |layers: usize| {
        let layer = format!(
            r#"{{"mediaType":"application/octet-stream","digest":"{file_digest}","size":100,"annotations":{{"org.opencontainers.image.title":"a.bin"}}}}"#
        );
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}},"layers":[{}]}}"#,
            vec![layer; layers].join(",")
        )
    };
    let cases: Vec<(&str, Fault, &str)> = vec![
        (
            "big",
            Fault::ReplaceBody {
                content_type: None,
                body: vec![b' '; (4 << 20) + 1],
            },
            "4194304-byte cap",
        ),
        (
            "layers",
            Fault::ReplaceBody {
                content_type: None,
                body: manifest(10_001).into_bytes(),
            },
            "more than 10000 layers",
        ),
        (
            "ctype",
            Fault::SetHeader(
                "Content-Type".into(),
                "application/vnd.oci.image.index.v1+json".into(),
            ),
            "declares mediaType",
        ),
    ];
    for (tag, fault, needle) in cases {
        // each case is served for the tag v1 in turn
        let i = r
            .proxy
            .add(Rule::on("GET", "/manifests/v1").times(1).fault(fault));
        let run = r.run(&["pull", &r.via("t/app:v1"), "-o", tag], "5s");
        expect_fail(&run, 10, &[needle]);
        assert_eq!(r.proxy.hits(i), 1);
        assert!(r.listing(tag).is_empty());
    }
}

#[test]
fn foreign_urls_are_never_fetched() {
    let r = rig(Flavor::Plain);
    let sink = Sink::start("127.0.0.2", 200, b"foreign".to_vec());
    let file_digest = r.file("a.bin", 100, 12);
    r.run(&["push", "a.bin", "--to", &r.direct("t/app:v1")], "5s")
        .ok();
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}},"layers":[{{"mediaType":"application/octet-stream","digest":"{file_digest}","size":100,"urls":["http://{}/l"],"annotations":{{"org.opencontainers.image.title":"a.bin"}}}}]}}"#,
        sink.host
    );
    r.proxy
        .add(Rule::on("GET", "/manifests/v1").fault(Fault::ReplaceBody {
            content_type: None,
            body: body.into_bytes(),
        }));
    let run = r.run(&["pull", &r.via("t/app:v1"), "-o", "out"], "5s");
    expect_fail(&run, 10, &["foreign URLs"]);
    assert!(sink.requests().is_empty());
    assert_eq!(r.proxy.count("GET", "/blobs/"), 0);
}

// ---------------------------------------------------------------- redirects and realms

#[test]
fn a_redirect_to_another_host_carries_no_credentials_and_the_digest_is_still_checked() {
    let r = rig(Flavor::Basic);
    let file_digest = r.file("a.bin", 5000, 13);
    let creds = r.reg.credentials().unwrap();
    let (user, pass) = creds.split_once(':').unwrap();
    let login = |args: &[&str], target: &str| {
        let mut a = args.to_vec();
        a.extend_from_slice(&["--username", user, "--password-stdin", "--plain-http"]);
        let _ = target;
        r.env
            .cmd(&a)
            .env("SEALPACK_RETRY_BUDGET", "5s")
            .stdin(pass.as_bytes())
            .run()
    };
    login(&["push", "a.bin", "--to", &r.direct("t/app:v1")], "").ok();
    // a sink on another host serves the right bytes: the pull succeeds, and the sink got no credentials
    let good = Sink::start(
        "127.0.0.2",
        200,
        fs::read(r.env.path().join("a.bin")).unwrap(),
    );
    let rule = r.proxy.add(
        Rule::on("GET", &format!("/blobs/{file_digest}"))
            .times(1)
            .fault(Fault::Redirect(format!("http://{}/blob", good.host))),
    );
    login(&["pull", &r.via("t/app:v1"), "-o", "out"], "").ok();
    assert_eq!(r.proxy.hits(rule), 1);
    let seen = good.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    for h in ["authorization", "proxy-authorization", "cookie"] {
        assert!(
            seen[0].header(h).is_none(),
            "{h} sent to another host: {seen:?}"
        );
    }
    assert_eq!(
        format!("sha256:{}", sha256_file(&r.env.path().join("out/a.bin"))),
        file_digest
    );
    // a sink that serves other bytes: refused on the digest
    let bad = Sink::start("127.0.0.2", 200, vec![b'x'; 5000]);
    r.proxy.add(
        Rule::on("GET", &format!("/blobs/{file_digest}"))
            .fault(Fault::Redirect(format!("http://{}/blob", bad.host))),
    );
    let run = login(&["pull", &r.via("t/app:v1"), "-o", "out2"], "");
    expect_fail(&run, 10, &["digest mismatch"]);
    assert!(bad.requests()[0].header("authorization").is_none());
    assert!(r.listing("out2").is_empty());
}

#[test]
fn redirect_loops_stop_after_five_hops() {
    let r = rig(Flavor::Plain);
    let target = format!("http://{}/v2/t/app/manifests/v1", r.proxy.host);
    let rule = r
        .proxy
        .add(Rule::on("GET", "/manifests/v1").fault(Fault::Redirect(target)));
    let run = r.run(&["resolve", &r.via("t/app:v1")], "5s");
    expect_fail(&run, 1, &["more than 5 redirects"]);
    // the first request and then at most 5 URLs in all
    let hits = r.proxy.hits(rule);
    assert!((2..=6).contains(&hits), "{:?}", r.proxy.requests());
}

#[test]
fn an_https_to_http_redirect_is_refused() {
    let env = Env::new();
    let (ca, cert, key) = make_test_pki(env.path());
    let sink = Sink::start("127.0.0.1", 200, b"{}".to_vec());
    let host = https_redirector(&cert, &key, &format!("http://{}", sink.host));
    let run = env
        .cmd(&[
            "resolve",
            &format!("{host}/t/app:v1"),
            "--ca-file",
            ca.to_str().unwrap(),
        ])
        .env("SEALPACK_RETRY_BUDGET", "5s")
        .run();
    expect_fail(&run, 1, &["refusing a redirect from https to http"]);
    assert!(sink.requests().is_empty(), "{:?}", sink.requests());
}

#[test]
fn a_token_realm_that_is_not_https_is_refused() {
    let r = rig(Flavor::Plain);
    let sink = Sink::start("127.0.0.2", 200, br#"{"token":"t"}"#.to_vec());
    // loopback over plain HTTP is allowed (local test registries), anything else must be https
    r.proxy
        .add(Rule::on("GET", "/manifests/").fault(Fault::Challenge(
            r#"Bearer realm="http://registry.example/token",service="x""#.into(),
        )));
    let run = r.run(&["resolve", &r.via("t/app:v1")], "5s");
    expect_fail(
        &run,
        1,
        &["refusing token realm http://registry.example/token: not https"],
    );
    assert!(sink.requests().is_empty());
}
