//! Test support: a REAL `/usr/bin/docker-registry` (CNCF distribution 2.8, Debian package `docker-registry`)
//! started per test on a free loopback port, with its own storage directory, config and access log.
//!
//! ```ignore
//! mod common;
//! use common::registry::{Flavor, Registry};
//! let reg = Registry::start(Flavor::Plain);
//! // ... push to reg.host ("127.0.0.1:PORT") ...
//! let puts = reg.requests().iter().filter(|r| r.method == "PUT").count();
//! ```
//!
//! Install the peers first: `scripts/install-test-deps.sh`.
//!
//! - Access log: distribution writes one combined-format line per request to stdout *after* the response has
//!   been sent, so [`Registry::requests`] first sends a sentinel request and waits for its line; every request
//!   the test made before calling it is then in the list (sentinel lines are filtered out).
//! - The registry is run under a tiny `sh` watchdog whose stdin is a pipe from this process: when the test
//!   process dies without running `Drop` (a nextest timeout, SIGKILL), the pipe closes and the watchdog kills
//!   the registry, so no orphan registry outlives the test.
//! - No blob-descriptor cache is configured, but the registry still keeps upload state and may hold things
//!   in memory: call [`Registry::restart`] after editing files under [`Registry::root`] ("surgery").
#![allow(dead_code)]

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
const HINT: &str = "run scripts/install-test-deps.sh";
const SENTINEL_PREFIX: &str = "/sealpack-harness-sentinel/";
const READY_TIMEOUT: Duration = Duration::from_secs(10);
const PORT_ATTEMPTS: usize = 8;

/// How the registry is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// http://, no auth.
    Plain,
    /// http://, HTTP Basic auth from an htpasswd file (random user and password).
    Basic,
    /// https:// with a server certificate signed by a test CA ([`Registry::ca_pem`]), no auth.
    Tls,
    /// https:// and Basic auth.
    BasicTls,
}

impl Flavor {
    pub fn tls(self) -> bool {
        matches!(self, Flavor::Tls | Flavor::BasicTls)
    }
    pub fn basic(self) -> bool {
        matches!(self, Flavor::Basic | Flavor::BasicTls)
    }
}

/// One line of the registry's access log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessLine {
    pub method: String,
    /// Request target as sent, with the query string (e.g. `/v2/t/blobs/uploads/UUID?_state=..&digest=sha256:..`).
    pub path: String,
    pub status: u16,
    /// Response body bytes as logged (0 for HEAD).
    pub bytes: u64,
    pub user_agent: String,
}

impl AccessLine {
    /// The path without its query string.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or("")
    }
    /// A blob upload request (POST/PATCH/PUT under `/blobs/uploads/`).
    pub fn is_blob_upload(&self) -> bool {
        self.path_only().contains("/blobs/uploads/")
    }
    /// A request that sent blob bytes: PATCH to an upload, or PUT to an upload (the final PUT, possibly empty).
    pub fn is_blob_write(&self) -> bool {
        self.is_blob_upload() && (self.method == "PATCH" || self.method == "PUT")
    }
    /// Parse one combined-log-format line:
    /// `127.0.0.1 - - [27/Nov/2026:09:11:20 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "curl/7.88.1"`.
    pub fn parse(line: &str) -> Option<AccessLine> {
        let start = line.find("] \"")? + 3;
        let rest = &line[start..];
        let end = rest.find('"')?;
        let mut req = rest[..end].split(' ');
        let method = req.next()?.to_string();
        let path = req.next()?.to_string();
        let proto = req.next()?;
        if !proto.starts_with("HTTP/") || method.is_empty() {
            return None;
        }
        let mut after = rest[end + 1..].trim_start().splitn(3, ' ');
        let status: u16 = after.next()?.parse().ok()?;
        let bytes: u64 = after.next()?.parse().unwrap_or(0);
        let tail = after.next().unwrap_or("");
        // tail: "referer" "user-agent"
        let quoted: Vec<&str> = tail.split('"').collect();
        let user_agent = quoted.get(3).copied().unwrap_or("").to_string();
        Some(AccessLine {
            method,
            path,
            status,
            bytes,
            user_agent,
        })
    }
}

/// A running docker-registry. Killed (and its temporary directory removed) on drop.
pub struct Registry {
    /// `"127.0.0.1:PORT"`.
    pub host: String,
    /// Storage root directory; blobs are at `docker/registry/v2/blobs/sha256/xx/HEX/data`.
    pub root: PathBuf,
    /// The registry's stdout+stderr: access log lines and its own (warn-level) messages.
    pub log: PathBuf,
    /// The test CA that signed the server certificate (TLS flavors).
    pub ca_pem: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub flavor: Flavor,
    port: u16,
    config: PathBuf,
    pid_file: PathBuf,
    child: Option<Child>,
    watchdog: Option<ChildStdin>,
    sentinel_seq: AtomicU64,
    // Last, so that it is removed after the process is gone.
    dir: tempfile::TempDir,
}

impl Registry {
    /// Start a registry of this flavor on a free loopback port and wait until it answers (max ~10 s).
    pub fn start(flavor: Flavor) -> Registry {
        if !Path::new(REGISTRY_BIN).exists() {
            panic!("{REGISTRY_BIN} not found: {HINT}");
        }
        let dir = tempfile::Builder::new()
            .prefix("sealpack-registry-")
            .tempdir()
            .expect("create registry tempdir");
        let d = dir.path();
        let root = d.join("data");
        fs::create_dir_all(&root).unwrap();
        let log = d.join("registry.log");
        File::create(&log).unwrap();

        let (username, password, htpasswd) = if flavor.basic() {
            let user = format!("user-{}", random_hex(4));
            let pass = random_hex(16);
            let out = run_tool(
                Command::new("htpasswd").args(["-Bbn", &user, &pass]),
                "htpasswd",
            );
            let file = d.join("htpasswd");
            fs::write(&file, &out.stdout).unwrap();
            (Some(user), Some(pass), Some(file))
        } else {
            (None, None, None)
        };
        let (ca_pem, tls) = if flavor.tls() {
            let (ca, cert, key) = make_test_pki(d);
            (Some(ca), Some((cert, key)))
        } else {
            (None, None)
        };

        let mut reg = Registry {
            host: String::new(),
            root,
            log,
            ca_pem,
            username,
            password,
            flavor,
            port: 0,
            config: d.join("config.yml"),
            pid_file: d.join("registry.pid"),
            child: None,
            watchdog: None,
            sentinel_seq: AtomicU64::new(0),
            dir,
        };
        let secret = random_hex(16);
        let mut last_err = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            reg.write_config(port, &secret, htpasswd.as_deref(), tls.as_ref());
            match reg.spawn_and_wait(port) {
                Ok(()) => return reg,
                Err(e) => last_err = e, // port race or slow start: try another port
            }
        }
        panic!(
            "docker-registry did not start after {PORT_ATTEMPTS} attempts: {last_err}\n--- log:\n{}",
            fs::read_to_string(&reg.log).unwrap_or_default()
        );
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!(
            "{}://{}",
            if self.flavor.tls() { "https" } else { "http" },
            self.host
        )
    }

    /// `base_url() + path` (path starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url(), path)
    }

    /// The temporary directory holding config, log, storage, certificates.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `user:password` for Basic flavors.
    pub fn credentials(&self) -> Option<String> {
        Some(format!(
            "{}:{}",
            self.username.as_ref()?,
            self.password.as_ref()?
        ))
    }

    /// A `curl -sS` command that trusts the test CA and, for Basic flavors, sends the credentials.
    pub fn curl(&self) -> Command {
        let mut c = self.curl_noauth();
        if let Some(cred) = self.credentials() {
            c.arg("-u").arg(cred);
        }
        c
    }

    /// Like [`Registry::curl`] but without credentials.
    pub fn curl_noauth(&self) -> Command {
        let mut c = Command::new("curl");
        c.args(["-sS", "--max-time", "60"]);
        if let Some(ca) = &self.ca_pem {
            c.arg("--cacert").arg(ca);
        }
        c
    }

    /// PID of the docker-registry process itself.
    pub fn pid(&self) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(s) = fs::read_to_string(&self.pid_file)
                && let Ok(p) = s.trim().parse()
            {
                return p;
            }
            assert!(Instant::now() < deadline, "registry pid file never written");
            sleep(Duration::from_millis(10));
        }
    }

    /// Path of a stored blob's bytes (accepts `HEX` or `sha256:HEX`).
    pub fn blob_data_path(&self, digest_hex: &str) -> PathBuf {
        let hex = digest_hex.strip_prefix("sha256:").unwrap_or(digest_hex);
        assert!(hex.len() >= 2, "bad digest {digest_hex:?}");
        self.root
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Every request in the access log so far (since start or [`Registry::clear_requests`]), in log order.
    /// Waits until the log has caught up with all requests answered before this call.
    pub fn requests(&self) -> Vec<AccessLine> {
        self.sync_log();
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(AccessLine::parse)
            .filter(|l| !l.path.starts_with(SENTINEL_PREFIX))
            .collect()
    }

    /// Forget the requests logged so far (truncates the log file; the registry appends after it).
    pub fn clear_requests(&self) {
        self.sync_log();
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&self.log)
            .expect("truncate registry log");
    }

    /// Stop and start the registry again on the same port, storage and credentials (clears in-memory state,
    /// e.g. after editing blob files). The log is kept and appended to.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.spawn_and_wait(self.port) {
                Ok(()) => return,
                Err(e) if Instant::now() >= deadline => {
                    panic!("docker-registry did not restart on port {}: {e}", self.port)
                }
                Err(_) => sleep(Duration::from_millis(100)),
            }
        }
    }

    // ------------------------------------------------------------------ internals

    fn write_config(
        &mut self,
        port: u16,
        secret: &str,
        htpasswd: Option<&Path>,
        tls: Option<&(PathBuf, PathBuf)>,
    ) {
        let mut y = String::new();
        y.push_str("version: 0.1\n");
        y.push_str("log:\n  level: warn\n  accesslog:\n    disabled: false\n");
        y.push_str(&format!(
            "storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\n",
            yaml_str(&self.root)
        ));
        y.push_str(&format!(
            "http:\n  addr: 127.0.0.1:{port}\n  secret: {secret}\n"
        ));
        if let Some((cert, key)) = tls {
            y.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                yaml_str(cert),
                yaml_str(key)
            ));
        }
        if let Some(h) = htpasswd {
            y.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: basic-realm\n    path: {}\n",
                yaml_str(h)
            ));
        }
        fs::write(&self.config, y).unwrap();
        self.port = port;
        self.host = format!("127.0.0.1:{port}");
    }

    /// Spawn the registry (under the watchdog) and wait until it answers a sentinel request that shows up in
    /// OUR log (so a foreign server that grabbed the port cannot pass for ours). On failure the process is
    /// stopped and an error returned.
    fn spawn_and_wait(&mut self, port: u16) -> Result<(), String> {
        let _ = fs::remove_file(&self.pid_file);
        let logf = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        // fd 3 keeps the pipe for the watcher; the registry gets neither it nor the pipe on its stdin.
        let script = r#"exec 3<&0
"$0" serve "$1" </dev/null 3<&- &
p=$!
echo "$p" > "$2"
( read -r x <&3; kill -9 "$p" 2>/dev/null ) </dev/null &
exec 3<&-
wait "$p""#;
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(REGISTRY_BIN)
            .arg(&self.config)
            .arg(&self.pid_file)
            .stdin(Stdio::piped())
            .stdout(Stdio::from(logf.try_clone().unwrap()))
            .stderr(Stdio::from(logf))
            .spawn()
            .map_err(|e| format!("spawn sh/{REGISTRY_BIN}: {e}"))?;
        self.watchdog = None;
        let mut child = child;
        self.watchdog = child.stdin.take();
        self.child = Some(child);

        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + READY_TIMEOUT;
        // 1. wait for the port to accept connections, watching for an early exit (port taken).
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                self.watchdog = None;
                return Err(format!("registry exited early on port {port}: {st}"));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            if Instant::now() >= deadline {
                self.stop();
                return Err(format!(
                    "registry not listening on port {port} after {READY_TIMEOUT:?}"
                ));
            }
            sleep(Duration::from_millis(20));
        }
        // 2. a sentinel request must reach THIS registry (its log) - proves the listener is ours, and TLS works.
        loop {
            if self.try_sentinel(Duration::from_millis(1500)) {
                return Ok(());
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                self.watchdog = None;
                return Err(format!("registry exited on port {port}: {st}"));
            }
            if Instant::now() >= deadline {
                self.stop();
                return Err(format!(
                    "registry on port {port} never answered a sentinel request"
                ));
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// Send one sentinel request and wait up to `wait` for its access-log line.
    fn try_sentinel(&self, wait: Duration) -> bool {
        let n = self.sentinel_seq.fetch_add(1, Ordering::Relaxed) + 1;
        let marker = format!("{SENTINEL_PREFIX}{}-{n}", std::process::id());
        let out = self
            .curl_noauth()
            .args(["-o", "/dev/null", "--max-time", "5"])
            .arg(self.url(&marker))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output();
        if !matches!(out, Ok(ref o) if o.status.success()) {
            return false;
        }
        let needle = format!("\"GET {marker} ");
        let deadline = Instant::now() + wait;
        loop {
            if fs::read_to_string(&self.log)
                .map(|s| s.contains(&needle))
                .unwrap_or(false)
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            sleep(Duration::from_millis(5));
        }
    }

    fn sync_log(&self) {
        for _ in 0..3 {
            if self.try_sentinel(Duration::from_secs(3)) {
                return;
            }
        }
        panic!("registry at {} does not answer (is it running?)", self.host);
    }

    fn stop(&mut self) {
        // Closing the watchdog's stdin makes it SIGKILL the registry; then the sh exits.
        self.watchdog = None;
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(5)),
                    _ => {
                        // Should not happen; kill what we can.
                        if let Ok(p) = fs::read_to_string(&self.pid_file) {
                            let _ = Command::new("kill").args(["-9", p.trim()]).status();
                        }
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The Python of the test venv: `$SEALPACK_TEST_VENV/bin/python`, default `$HOME/.cache/sealpack/venv`.
pub fn venv_python() -> PathBuf {
    let venv = match std::env::var_os("SEALPACK_TEST_VENV") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/root"));
            home.join(".cache/sealpack/venv")
        }
    };
    venv.join("bin/python")
}

/// [`venv_python`], panicking with the install hint if the venv is missing.
pub fn python() -> PathBuf {
    let py = venv_python();
    if !py.exists() {
        panic!("test venv python {} not found: {HINT}", py.display());
    }
    py
}

/// A port that was free a moment ago (bind :0, read, drop). Racy by nature: callers retry.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// `n` random bytes from /dev/urandom, hex-encoded.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Run a tool to completion; panic with its stderr (and the install hint if it is missing) on failure.
pub fn run_tool(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}: {HINT}"));
    if !out.status.success() {
        panic!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// A test CA and a server certificate for 127.0.0.1/localhost signed by it (CA:FALSE, serverAuth): rustls
/// refuses a self-signed CA:TRUE certificate as a server certificate. Returns (ca.pem, cert.pem, key.pem).
pub fn make_test_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = dir.join("ca.key");
    let ca = dir.join("ca.pem");
    let key = dir.join("key.pem");
    let csr = dir.join("srv.csr");
    let cert = dir.join("cert.pem");
    let ext = dir.join("srv.ext");
    fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run_tool(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
            ])
            .arg("-keyout")
            .arg(&ca_key)
            .arg("-out")
            .arg(&ca)
            .args(["-subj", "/CN=sealpack test CA"]),
        "openssl req -x509 (test CA)",
    );
    run_tool(
        Command::new("openssl")
            .args([
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&csr)
            .args(["-subj", "/CN=localhost"]),
        "openssl req (server key)",
    );
    run_tool(
        Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
            .arg("-in")
            .arg(&csr)
            .arg("-CA")
            .arg(&ca)
            .arg("-CAkey")
            .arg(&ca_key)
            .arg("-out")
            .arg(&cert)
            .arg("-extfile")
            .arg(&ext),
        "openssl x509 -req (server cert)",
    );
    (ca, cert, key)
}

fn yaml_str(p: &Path) -> String {
    // Single-quoted YAML scalar: only ' needs escaping (as '').
    format!("'{}'", p.display().to_string().replace('\'', "''"))
}
