//! Self-test of the real-registry harness (tests/common/registry.rs): a real docker-registry per flavor,
//! driven by curl. Needs `scripts/install-test-deps.sh`.

mod common;

use common::registry::{AccessLine, Flavor, Registry, python, run_tool};
use std::fs;
use std::process::{Command, Stdio};

struct Resp {
    status: u16,
    headers: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// Run curl (already configured with TLS trust / credentials), return status and response headers.
fn curl(mut cmd: Command, args: &[&str]) -> Resp {
    cmd.args(["-o", "/dev/null", "-D", "-", "-w", "\n%{http_code}"])
        .args(args)
        .stdin(Stdio::null());
    let out = run_tool(&mut cmd, "curl");
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    let (headers, code) = text.trim_end().rsplit_once('\n').expect("curl output");
    Resp {
        status: code.trim().parse().expect("http code"),
        headers: headers.to_string(),
    }
}

fn sha256_hex(path: &std::path::Path) -> String {
    let out = run_tool(Command::new("sha256sum").arg(path), "sha256sum");
    String::from_utf8_lossy(&out.stdout)[..64].to_string()
}

/// Monolithic blob upload: POST /v2/<repo>/blobs/uploads/ then PUT <Location>&digest=. Returns
/// (POST response, PUT response, digest hex).
fn push_blob(reg: &Registry, repo: &str, content: &[u8]) -> (Resp, Resp, String) {
    let file = reg
        .dir()
        .join(format!("blob-{}", common::registry::random_hex(4)));
    fs::write(&file, content).unwrap();
    let hex = sha256_hex(&file);
    let post = curl(
        reg.curl(),
        &[
            "-X",
            "POST",
            &reg.url(&format!("/v2/{repo}/blobs/uploads/")),
        ],
    );
    assert_eq!(post.status, 202, "POST upload: {}", post.headers);
    let loc = post.header("location").expect("Location header");
    let loc = if loc.starts_with('/') {
        reg.url(&loc)
    } else {
        loc
    };
    let sep = if loc.contains('?') { '&' } else { '?' };
    let put_url = format!("{loc}{sep}digest=sha256:{hex}");
    let put = curl(
        reg.curl(),
        &[
            "-T",
            file.to_str().unwrap(),
            "-H",
            "Content-Type: application/octet-stream",
            &put_url,
        ],
    );
    (post, put, hex)
}

fn check_push(flavor: Flavor) {
    let reg = Registry::start(flavor);
    assert!(reg.host.starts_with("127.0.0.1:"), "{}", reg.host);
    assert_eq!(reg.ca_pem.is_some(), flavor.tls());
    assert_eq!(reg.username.is_some(), flavor.basic());

    let (_, put, hex) = push_blob(&reg, "t", b"hello sealpack harness\n");
    assert_eq!(put.status, 201, "PUT upload: {}", put.headers);
    assert_eq!(
        put.header("docker-content-digest").as_deref(),
        Some(format!("sha256:{hex}").as_str())
    );
    assert_eq!(
        fs::read(reg.blob_data_path(&hex)).unwrap(),
        b"hello sealpack harness\n"
    );
    let head = curl(
        reg.curl(),
        &["-I", &reg.url(&format!("/v2/t/blobs/sha256:{hex}"))],
    );
    assert_eq!(head.status, 200);

    let reqs = reg.requests();
    let puts: Vec<&AccessLine> = reqs.iter().filter(|r| r.method == "PUT").collect();
    assert_eq!(puts.len(), 1, "{reqs:#?}");
    assert_eq!(puts[0].status, 201);
    assert!(
        puts[0].is_blob_write() && puts[0].path.contains(&format!("digest=sha256:{hex}")),
        "{:?}",
        puts[0]
    );
    assert_eq!(puts[0].user_agent.split('/').next(), Some("curl"));
    assert!(
        reqs.iter().any(|r| r.method == "POST"
            && r.path_only() == "/v2/t/blobs/uploads/"
            && r.status == 202)
    );
    assert!(reqs.iter().any(|r| r.method == "HEAD" && r.status == 200));
    assert!(
        !reqs.iter().any(|r| r.path.contains("sentinel")),
        "sentinel lines leak: {reqs:#?}"
    );

    // A cleared log sees only what comes after.
    reg.clear_requests();
    let head = curl(
        reg.curl(),
        &["-I", &reg.url(&format!("/v2/t/blobs/sha256:{hex}"))],
    );
    assert_eq!(head.status, 200);
    let reqs = reg.requests();
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    assert_eq!((reqs[0].method.as_str(), reqs[0].status), ("HEAD", 200));
}

#[test]
fn plain_push_blob() {
    check_push(Flavor::Plain);
}

#[test]
fn basic_push_blob() {
    check_push(Flavor::Basic);
}

#[test]
fn tls_push_blob() {
    check_push(Flavor::Tls);
}

#[test]
fn basic_tls_push_blob() {
    check_push(Flavor::BasicTls);
}

fn check_basic_auth(flavor: Flavor) {
    let reg = Registry::start(flavor);
    let upload = reg.url("/v2/t/blobs/uploads/");
    let anon = curl(reg.curl_noauth(), &["-X", "POST", &upload]);
    assert_eq!(anon.status, 401);
    assert!(
        anon.header("www-authenticate")
            .unwrap()
            .starts_with("Basic realm="),
        "{}",
        anon.headers
    );
    let anon_v2 = curl(reg.curl_noauth(), &[&reg.url("/v2/")]);
    assert_eq!(anon_v2.status, 401);
    let wrong = curl(
        reg.curl_noauth(),
        &[
            "-u",
            &format!("{}:wrong", reg.username.as_ref().unwrap()),
            "-X",
            "POST",
            &upload,
        ],
    );
    assert_eq!(wrong.status, 401);
    let authed = curl(reg.curl(), &["-X", "POST", &upload]);
    assert_eq!(authed.status, 202, "{}", authed.headers);
    let statuses: Vec<u16> = reg
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![401, 401, 202]);
}

#[test]
fn basic_auth_required() {
    check_basic_auth(Flavor::Basic);
}

#[test]
fn basic_tls_auth_required() {
    check_basic_auth(Flavor::BasicTls);
}

#[test]
fn tls_needs_the_test_ca_and_cert_is_not_a_ca() {
    let reg = Registry::start(Flavor::Tls);
    // Without trusting the test CA, verification fails (curl exit 60).
    let st = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "--max-time", "10"])
        .arg(reg.url("/v2/"))
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(60));
    // The server certificate is a leaf (CA:FALSE) signed by the CA, valid for 127.0.0.1.
    let dir = reg.dir();
    let text = run_tool(
        Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(dir.join("cert.pem")),
        "openssl x509",
    );
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("CA:FALSE") && text.contains("IP Address:127.0.0.1"),
        "{text}"
    );
    run_tool(
        Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(reg.ca_pem.as_ref().unwrap())
            .arg(dir.join("cert.pem")),
        "openssl verify",
    );
    let ok = curl(reg.curl(), &[&reg.url("/v2/")]);
    assert_eq!(ok.status, 200);
}

#[test]
fn surgery_then_restart_serves_the_edited_blob() {
    let mut reg = Registry::start(Flavor::Plain);
    let host = reg.host.clone();
    let (_, put, hex) = push_blob(&reg, "s", b"original bytes");
    assert_eq!(put.status, 201);
    let data = reg.blob_data_path(&format!("sha256:{hex}"));
    fs::write(&data, b"tampered bytes").unwrap();
    let old_pid = reg.pid();
    reg.restart();
    assert_eq!(reg.host, host, "restart keeps the port");
    assert_ne!(reg.pid(), old_pid);
    assert!(
        !std::path::Path::new(&format!("/proc/{old_pid}")).exists(),
        "old registry still running"
    );
    let out = run_tool(
        reg.curl()
            .arg(reg.url(&format!("/v2/s/blobs/sha256:{hex}"))),
        "curl GET blob",
    );
    assert_eq!(
        out.stdout, b"tampered bytes",
        "distribution serves stored bytes without re-hashing"
    );
    // The log survives the restart.
    let reqs = reg.requests();
    assert!(
        reqs.iter().any(|r| r.method == "PUT" && r.status == 201),
        "{reqs:#?}"
    );
    assert!(
        reqs.iter()
            .any(|r| r.method == "GET" && r.path_only().ends_with(&hex) && r.status == 200)
    );
}

#[test]
fn drop_kills_the_registry_and_removes_its_dir() {
    let reg = Registry::start(Flavor::Basic);
    let pid = reg.pid();
    let dir = reg.dir().to_path_buf();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    drop(reg);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "registry {pid} survived drop"
    );
    assert!(!dir.exists(), "{} not removed", dir.display());
}

#[test]
fn two_registries_at_once_get_different_ports() {
    let a = Registry::start(Flavor::Plain);
    let b = Registry::start(Flavor::Plain);
    assert_ne!(a.host, b.host);
    assert_ne!(a.root, b.root);
}

#[test]
fn access_line_parse() {
    let l = AccessLine::parse(
        r#"127.0.0.1 - - [27/Nov/2026:09:11:21 +0000] "HEAD /v2/t/blobs/sha256:ab HTTP/1.1" 200 0 "" "curl/7.88.1""#,
    )
    .unwrap();
    assert_eq!(
        (l.method.as_str(), l.path.as_str(), l.status, l.bytes),
        ("HEAD", "/v2/t/blobs/sha256:ab", 200, 0)
    );
    assert_eq!(l.user_agent, "curl/7.88.1");
    assert!(AccessLine::parse(r#"time="2026-11-27T09:11:20Z" level=warning msg="x""#).is_none());
}

#[test]
fn venv_python_has_the_pinned_peers() {
    let out = run_tool(
        Command::new(python()).args([
            "-c",
            "import oras, securesystemslib, nacl, cryptography; print('ok')",
        ]),
        "venv python",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}
