//! Test support: an in-process OCI distribution server that serves the OCI 1.1 referrers API (no installable
//! registry here does: distribution 2.8 answers 404 there). Only std: a `TcpListener` on 127.0.0.1:0 and one
//! thread per connection speaking HTTP/1.1 with keep-alive; request bodies by `Content-Length` or
//! `Transfer-Encoding: chunked`.
//!
//! ```ignore
//! mod common;
//! use common::fake_registry::{FakeOptions, FakeRegistry};
//! let reg = FakeRegistry::start(FakeOptions::default());
//! // ... push to reg.host ("127.0.0.1:PORT") with --plain-http ...
//! assert!(reg.requests().iter().any(|r| r.path_only().contains("/referrers/")));
//! ```
//!
//! What it serves (all under `/v2/<name>/`, `<name>` may contain slashes), with distribution's JSON errors:
//! `GET /v2/`; `HEAD|GET|PUT manifests/<ref>`; `HEAD|GET blobs/<digest>`; `POST blobs/uploads/` (also
//! `?mount=&from=` and monolithic `?digest=`); `PATCH|PUT|GET blobs/uploads/<uuid>`; `GET tags/list` (`n`, `last`,
//! `Link`); `GET referrers/<digest>[?artifactType=]` (or distribution 2.8's plain-text 404 when
//! [`FakeOptions::referrers_api`] is off). Blob content is shared by the whole registry, but a repository sees a
//! blob only once it was uploaded or mounted into it (as distribution's repository links). Queries are decoded as
//! Go's `url.ParseQuery` does (`%XX`, and `+` is a space).
//!
//! Every request is recorded (method, target with query, status) *before* its response is written, so a test
//! that saw a response (or a finished sealpack run) always finds the request in [`FakeRegistry::requests`].
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Largest manifest accepted (distribution's own cap).
const MAX_MANIFEST: usize = 4 << 20;
/// Largest request body accepted at all.
const MAX_BODY: u64 = 1 << 30;
/// An idle keep-alive connection is dropped after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How the fake behaves.
#[derive(Clone, Debug)]
pub struct FakeOptions {
    /// Serve `GET /v2/<name>/referrers/<digest>` (OCI 1.1). When false, answer it like distribution 2.8: 404
    /// `text/plain` "404 page not found".
    pub referrers_api: bool,
    /// Require the distribution token flow: every API request needs `Authorization: Bearer <token>`, the 401
    /// challenge names the realm `http://HOST/token`, and the token endpoint hands out tokens for these basic
    /// credentials (user, password) only.
    pub bearer: Option<(String, String)>,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            referrers_api: true,
            bearer: None,
        }
    }
}

/// One request as the fake saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Req {
    pub method: String,
    /// Request target as sent, with the query string.
    pub path: String,
    pub status: u16,
}

impl Req {
    /// The path without its query string.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or("")
    }
    /// The decoded query parameter `key`, if present.
    pub fn query(&self, key: &str) -> Option<String> {
        let q = self.path.split_once('?')?.1;
        parse_query(q).remove(key)
    }
}

/// A stored manifest.
#[derive(Clone, Debug)]
pub struct StoredManifest {
    pub media_type: String,
    pub bytes: Vec<u8>,
}

#[derive(Default)]
struct Repo {
    /// Manifests by digest, and the order they were first stored in (referrers answers follow it).
    manifests: HashMap<String, StoredManifest>,
    order: Vec<String>,
    tags: BTreeMap<String, String>,
    /// Blobs this repository may serve.
    blobs: BTreeSet<String>,
}

struct Upload {
    repo: String,
    data: Vec<u8>,
}

#[derive(Default)]
struct State {
    blobs: HashMap<String, Arc<Vec<u8>>>,
    repos: BTreeMap<String, Repo>,
    uploads: HashMap<String, Upload>,
}

struct Shared {
    bearer: Option<(String, String)>,
    host: String,
    /// Scopes the token endpoint was asked for, in order.
    token_scopes: Mutex<Vec<String>>,
    state: Mutex<State>,
    requests: Mutex<Vec<Req>>,
    referrers_api: AtomicBool,
    stop: AtomicBool,
    seq: AtomicU64,
    conns: Mutex<Vec<TcpStream>>,
}

/// A running fake registry; stopped (listener closed, open connections shut down) on drop.
pub struct FakeRegistry {
    /// `"127.0.0.1:PORT"`.
    pub host: String,
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

/// A response read by [`FakeRegistry::http`] / [`FakeRegistry::raw_exchange`].
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response {} is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

impl FakeRegistry {
    /// Scopes the token endpoint was asked for (bearer mode).
    pub fn token_scopes(&self) -> Vec<String> {
        self.shared.token_scopes.lock().unwrap().clone()
    }

    /// Binds 127.0.0.1:0 and starts serving.
    pub fn start(opts: FakeOptions) -> FakeRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            bearer: opts.bearer.clone(),
            host: addr.to_string(),
            token_scopes: Mutex::new(Vec::new()),
            state: Mutex::new(State::default()),
            requests: Mutex::new(Vec::new()),
            referrers_api: AtomicBool::new(opts.referrers_api),
            stop: AtomicBool::new(false),
            seq: AtomicU64::new(0),
            conns: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let accept = std::thread::Builder::new()
            .name("fake-registry-accept".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if s.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    if let Ok(c) = conn.try_clone() {
                        s.conns.lock().unwrap().push(c);
                    }
                    let s = s.clone();
                    let _ = std::thread::Builder::new()
                        .name("fake-registry-conn".into())
                        .spawn(move || serve_connection(&s, conn));
                }
            })
            .expect("spawn accept thread");
        FakeRegistry {
            host: addr.to_string(),
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.host)
    }

    /// Every request so far, in the order they were answered.
    pub fn requests(&self) -> Vec<Req> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Forgets the requests recorded so far.
    pub fn clear_requests(&self) {
        self.shared.requests.lock().unwrap().clear();
    }

    /// Turns the referrers API on or off from now on.
    pub fn set_referrers_api(&self, on: bool) {
        self.shared.referrers_api.store(on, Ordering::SeqCst);
    }

    /// Removes the tag `tag` of `repo` (the manifest stays, reachable by digest and through referrers). Returns
    /// whether the tag existed.
    pub fn untag(&self, repo: &str, tag: &str) -> bool {
        let mut st = self.shared.state.lock().unwrap();
        st.repos
            .get_mut(repo)
            .is_some_and(|r| r.tags.remove(tag).is_some())
    }

    /// The digest `tag` points at in `repo`.
    pub fn tag_digest(&self, repo: &str, tag: &str) -> Option<String> {
        let st = self.shared.state.lock().unwrap();
        st.repos.get(repo)?.tags.get(tag).cloned()
    }

    /// All tags of `repo`, sorted.
    pub fn tags(&self, repo: &str) -> Vec<String> {
        let st = self.shared.state.lock().unwrap();
        st.repos
            .get(repo)
            .map(|r| r.tags.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// A manifest of `repo` by tag or digest.
    pub fn manifest(&self, repo: &str, reference: &str) -> Option<StoredManifest> {
        let st = self.shared.state.lock().unwrap();
        let r = st.repos.get(repo)?;
        let digest = r
            .tags
            .get(reference)
            .map(String::as_str)
            .unwrap_or(reference);
        r.manifests.get(digest).cloned()
    }

    /// A blob's bytes, wherever stored.
    pub fn blob(&self, digest: &str) -> Option<Vec<u8>> {
        let st = self.shared.state.lock().unwrap();
        st.blobs.get(digest).map(|b| b.to_vec())
    }

    /// One request on a fresh connection (`Connection: close`, body by `Content-Length` when given).
    pub fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> HttpResponse {
        let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host).into_bytes();
        for (k, v) in headers {
            raw.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        if let Some(b) = body {
            raw.extend_from_slice(format!("Content-Length: {}\r\n", b.len()).as_bytes());
        }
        raw.extend_from_slice(b"Connection: close\r\n\r\n");
        if let Some(b) = body {
            raw.extend_from_slice(b);
        }
        let mut out = self.raw_exchange(&raw, &[method == "HEAD"]);
        out.pop().unwrap()
    }

    /// Writes `raw` (one or more pipelined requests) on one connection and reads one response per entry of
    /// `heads` (true where the request was a HEAD, whose response has no body).
    pub fn raw_exchange(&self, raw: &[u8], heads: &[bool]) -> Vec<HttpResponse> {
        let mut conn = TcpStream::connect(self.addr).expect("connect to the fake registry");
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        conn.write_all(raw).unwrap();
        let mut r = BufReader::new(conn);
        heads
            .iter()
            .map(|&head| read_response(&mut r, head).expect("read a response"))
            .collect()
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // unblock accept()
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        for c in self.shared.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP/1.1

struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
    fn header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.to_string(), v.into()));
        self
    }
    fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.headers
            .push(("Content-Type".into(), content_type.to_string()));
        self.body = body.into();
        self
    }
    fn json(self, status: u16, v: &serde_json::Value) -> Self {
        let mut r = self.body(
            "application/json; charset=utf-8",
            serde_json::to_vec(v).unwrap(),
        );
        r.status = status;
        r
    }
}

/// A distribution-style error: `{"errors":[{"code":..,"message":..}]}`.
fn error(status: u16, code: &str, message: &str) -> Response {
    Response::new(status).json(
        status,
        &serde_json::json!({"errors": [{"code": code, "message": message}]}),
    )
}

/// What Go's mux answers for a route it does not know.
fn go_not_found() -> Response {
    Response::new(404)
        .header("X-Content-Type-Options", "nosniff")
        .body("text/plain; charset=utf-8", "404 page not found\n")
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        416 => "Range Not Satisfiable",
        _ => "Status",
    }
}

fn serve_connection(shared: &Shared, conn: TcpStream) {
    let _ = conn.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = conn.set_nodelay(true);
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let req = match read_request(&mut reader, &mut writer) {
            Ok(Some(r)) => r,
            Ok(None) => return, // clean end of the connection
            Err(e) => {
                let resp = error(400, "UNSUPPORTED", &format!("bad request: {e}"));
                let _ = write_response(&mut writer, &resp, false, false);
                return;
            }
        };
        let keep_alive = !req
            .header("connection")
            .is_some_and(|v| v.to_ascii_lowercase().contains("close"));
        let resp = handle(shared, &req);
        shared.requests.lock().unwrap().push(Req {
            method: req.method.clone(),
            path: req.target.clone(),
            status: resp.status,
        });
        if write_response(&mut writer, &resp, req.method == "HEAD", keep_alive).is_err()
            || !keep_alive
        {
            let _ = writer.shutdown(Shutdown::Write);
            return;
        }
    }
}

fn read_line(r: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = r.by_ref().take(64 * 1024).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "line too long or truncated",
        ));
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "line is not UTF-8"))
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Reads one request; `Ok(None)` at a clean end of the connection (EOF or idle timeout before a request line).
fn read_request(r: &mut impl BufRead, w: &mut impl Write) -> io::Result<Option<Request>> {
    let line = loop {
        match read_line(r) {
            Ok(None) => return Ok(None),
            Ok(Some(l)) if l.is_empty() => continue, // tolerated stray CRLF between requests
            Ok(Some(l)) => break l,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::ConnectionReset
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad(format!("bad request line {line:?}")));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(bad(format!("unsupported version {version}")));
    }
    let mut headers = Vec::new();
    loop {
        let h = read_line(r)?.ok_or_else(|| bad("end of stream in headers"))?;
        if h.is_empty() {
            break;
        }
        let (k, v) = h
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header line {h:?}")))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
        if headers.len() > 200 {
            return Err(bad("too many headers"));
        }
    }
    let mut req = Request {
        method: method.to_string(),
        target: target.to_string(),
        headers,
        body: Vec::new(),
    };
    if req
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        w.flush()?;
    }
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        req.body = read_chunked(r)?;
    } else if let Some(len) = req.header("content-length") {
        let len: u64 = len
            .parse()
            .map_err(|_| bad(format!("bad Content-Length {len:?}")))?;
        if len > MAX_BODY {
            return Err(bad("body too large"));
        }
        let mut body = Vec::with_capacity(len as usize);
        r.by_ref().take(len).read_to_end(&mut body)?;
        if body.len() as u64 != len {
            return Err(bad("end of stream in body"));
        }
        req.body = body;
    }
    Ok(Some(req))
}

/// A `Transfer-Encoding: chunked` body (chunk extensions ignored, trailers read and dropped).
fn read_chunked(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(r)?.ok_or_else(|| bad("end of stream in chunk size"))?;
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(size_hex, 16)
            .map_err(|_| bad(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            // trailers, up to the empty line
            loop {
                let t = read_line(r)?.ok_or_else(|| bad("end of stream in trailers"))?;
                if t.is_empty() {
                    return Ok(body);
                }
            }
        }
        if body.len() as u64 + size > MAX_BODY {
            return Err(bad("body too large"));
        }
        let before = body.len();
        r.by_ref().take(size).read_to_end(&mut body)?;
        if (body.len() - before) as u64 != size {
            return Err(bad("end of stream in chunk"));
        }
        let end = read_line(r)?.ok_or_else(|| bad("end of stream after chunk"))?;
        if !end.is_empty() {
            return Err(bad("chunk not followed by CRLF"));
        }
    }
}

fn write_response(
    w: &mut impl Write,
    resp: &Response,
    head: bool,
    keep_alive: bool,
) -> io::Result<()> {
    let mut out = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    out.push_str("Docker-Distribution-API-Version: registry/2.0\r\n");
    let mut has_len = false;
    for (k, v) in &resp.headers {
        has_len |= k.eq_ignore_ascii_case("content-length");
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_len {
        out.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
    }
    if !keep_alive {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !head {
        bytes.extend_from_slice(&resp.body);
    }
    w.write_all(&bytes)?;
    w.flush()
}

/// Reads one response (the fake always sends `Content-Length`; chunked responses are read too).
fn read_response(r: &mut impl BufRead, head: bool) -> io::Result<HttpResponse> {
    loop {
        let line = read_line(r)?.ok_or_else(|| bad("no response"))?;
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let h = read_line(r)?.ok_or_else(|| bad("end of stream in headers"))?;
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        if status == 100 {
            continue;
        }
        let get = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let body = if head || status == 204 || status == 304 {
            Vec::new()
        } else if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            read_chunked(r)?
        } else if let Some(len) = get("content-length") {
            let len: u64 = len.parse().map_err(|_| bad("bad Content-Length"))?;
            let mut b = Vec::new();
            r.by_ref().take(len).read_to_end(&mut b)?;
            b
        } else {
            let mut b = Vec::new();
            r.read_to_end(&mut b)?;
            b
        };
        return Ok(HttpResponse {
            status,
            headers,
            body,
        });
    }
}

// ---------------------------------------------------------------------------------------------------------------
// URLs

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes a query component as Go's `url.QueryUnescape`: `%XX`, and `+` is a space.
pub fn query_unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hi = hex_val(*b.get(i + 1)?)?;
                let lo = hex_val(*b.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Decodes a path as Go's `url.PathUnescape` (`+` stays).
fn path_unescape(s: &str) -> Option<String> {
    query_unescape(&s.replace('+', "%2B"))
}

/// `a=1&b=2` -> map (first value wins, as Go's `Values.Get`; undecodable pairs are dropped).
pub fn parse_query(q: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if let (Some(k), Some(v)) = (query_unescape(k), query_unescape(v)) {
            out.entry(k).or_insert(v);
        }
    }
    out
}

/// distribution's repository name grammar: path components of `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.split('/').all(|c| {
            let b = c.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|&x| x.is_ascii_lowercase() || x.is_ascii_digit() || b"._-".contains(&x))
                && !c.contains("..")
                && !c.contains("._")
                && !c.contains("_.")
                && !c.contains("___")
        })
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || b"._-".contains(&x))
}

fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

enum Route {
    Base,
    Manifest(String),
    Blob(String),
    UploadStart,
    Upload(String),
    Tags,
    Referrers(String),
}

/// Splits `/v2/<name>/<endpoint>` (name may contain slashes) into the name and the route.
fn route(path: &str) -> Option<(String, Route)> {
    if path == "/v2/" || path == "/v2" {
        return Some((String::new(), Route::Base));
    }
    let rest = path.strip_prefix("/v2/")?;
    let segs: Vec<&str> = rest.split('/').collect();
    let n = segs.len();
    let name_upto = |k: usize| -> Option<String> { (k > 0).then(|| segs[..k].join("/")) };
    if n >= 3 && segs[n - 2] == "tags" && segs[n - 1] == "list" {
        return Some((name_upto(n - 2)?, Route::Tags));
    }
    if n >= 4 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
        let id = segs[n - 1];
        let r = if id.is_empty() {
            Route::UploadStart
        } else {
            Route::Upload(id.to_string())
        };
        return Some((name_upto(n - 3)?, r));
    }
    if n >= 3 && segs[n - 2] == "blobs" && segs[n - 1] == "uploads" {
        return Some((name_upto(n - 2)?, Route::UploadStart));
    }
    if n >= 3 {
        let last = segs[n - 1].to_string();
        let r = match segs[n - 2] {
            "manifests" => Route::Manifest(last),
            "blobs" => Route::Blob(last),
            "referrers" => Route::Referrers(last),
            _ => return None,
        };
        return Some((name_upto(n - 2)?, r));
    }
    None
}

// ---------------------------------------------------------------------------------------------------------------
// the registry

/// The token flow of the distribution spec (token.md), when enabled.
fn bearer_gate(shared: &Shared, req: &Request) -> Option<Response> {
    let (user, pass) = shared.bearer.as_ref()?;
    let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
    if path == "/token" {
        use base64::Engine as _;
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        );
        if req.header("authorization") != Some(want.as_str()) {
            return Some(error(
                401,
                "UNAUTHORIZED",
                "bad credentials for the token service",
            ));
        }
        let scope = parse_query(query).remove("scope").unwrap_or_default();
        shared.token_scopes.lock().unwrap().push(scope);
        return Some(Response::new(200).body(
            "application/json",
            r#"{"token":"fake-token-1","expires_in":300}"#,
        ));
    }
    if req.header("authorization") == Some("Bearer fake-token-1") {
        return None;
    }
    Some(
        error(401, "UNAUTHORIZED", "authentication required").header(
            "WWW-Authenticate",
            format!(
                r#"Bearer realm="http://{}/token",service="fake-registry""#,
                shared.host
            ),
        ),
    )
}

fn handle(shared: &Shared, req: &Request) -> Response {
    if let Some(resp) = bearer_gate(shared, req) {
        return resp;
    }
    let (raw_path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
    let Some(path) = path_unescape(raw_path) else {
        return go_not_found();
    };
    let query = parse_query(query);
    let Some((name, route)) = route(&path) else {
        return go_not_found();
    };
    if !matches!(route, Route::Base) && !valid_name(&name) {
        return error(400, "NAME_INVALID", "invalid repository name");
    }
    let m = req.method.as_str();
    match route {
        Route::Base => match m {
            "GET" | "HEAD" => Response::new(200).body("application/json", "{}"),
            _ => unsupported(),
        },
        Route::Manifest(reference) => match m {
            "GET" | "HEAD" => get_manifest(shared, &name, &reference),
            "PUT" => put_manifest(shared, req, &name, &reference),
            _ => unsupported(),
        },
        Route::Blob(digest) => match m {
            "GET" | "HEAD" => get_blob(shared, &name, &digest),
            _ => unsupported(),
        },
        Route::UploadStart => match m {
            "POST" => start_upload(shared, req, &name, &query),
            _ => unsupported(),
        },
        Route::Upload(id) => match m {
            "PATCH" => patch_upload(shared, req, &name, &id),
            "PUT" => finish_upload(shared, req, &name, &id, &query),
            "GET" => upload_status(shared, &name, &id),
            "DELETE" => {
                let mut st = shared.state.lock().unwrap();
                match st.uploads.get(&id) {
                    Some(u) if u.repo == name => {
                        st.uploads.remove(&id);
                        Response::new(204)
                    }
                    _ => error(
                        404,
                        "BLOB_UPLOAD_UNKNOWN",
                        "blob upload unknown to registry",
                    ),
                }
            }
            _ => unsupported(),
        },
        Route::Tags => match m {
            "GET" => list_tags(shared, &name, &query),
            _ => unsupported(),
        },
        Route::Referrers(digest) => {
            if !shared.referrers_api.load(Ordering::SeqCst) {
                return go_not_found();
            }
            match m {
                "GET" => referrers(shared, &name, &digest, &query),
                _ => unsupported(),
            }
        }
    }
}

fn unsupported() -> Response {
    error(405, "UNSUPPORTED", "The operation is unsupported.")
}

fn get_manifest(shared: &Shared, name: &str, reference: &str) -> Response {
    let st = shared.state.lock().unwrap();
    let Some(repo) = st.repos.get(name) else {
        return error(404, "NAME_UNKNOWN", "repository name not known to registry");
    };
    let digest = if valid_digest(reference) {
        reference.to_string()
    } else if valid_tag(reference) {
        match repo.tags.get(reference) {
            Some(d) => d.clone(),
            None => return error(404, "MANIFEST_UNKNOWN", "manifest unknown"),
        }
    } else {
        return error(400, "TAG_INVALID", "manifest tag did not match URI");
    };
    match repo.manifests.get(&digest) {
        Some(mf) => Response::new(200)
            .header("Docker-Content-Digest", digest.clone())
            .header("Etag", format!("\"{digest}\""))
            .body(&mf.media_type, mf.bytes.clone()),
        None => error(404, "MANIFEST_UNKNOWN", "manifest unknown"),
    }
}

fn put_manifest(shared: &Shared, req: &Request, name: &str, reference: &str) -> Response {
    let body = &req.body;
    if body.len() > MAX_MANIFEST {
        return error(400, "MANIFEST_INVALID", "manifest too large");
    }
    let digest = sha256_digest(body);
    let is_digest = valid_digest(reference);
    if is_digest && reference != digest {
        return error(
            400,
            "DIGEST_INVALID",
            "provided digest did not match uploaded content",
        );
    }
    if !is_digest && !valid_tag(reference) {
        return error(400, "TAG_INVALID", "manifest tag did not match URI");
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return error(400, "MANIFEST_INVALID", "manifest invalid: not JSON");
    };
    if v.get("schemaVersion").and_then(|s| s.as_u64()) != Some(2) {
        return error(400, "MANIFEST_INVALID", "manifest invalid: schemaVersion");
    }
    let declared = v.get("mediaType").and_then(|s| s.as_str());
    let content_type = req
        .header("content-type")
        .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
        .filter(|c| !c.is_empty());
    let media_type = match (content_type, declared) {
        (Some(c), Some(d)) if c != d => {
            return error(
                400,
                "MANIFEST_INVALID",
                &format!("mediaType in manifest ({d}) does not match Content-Type ({c})"),
            );
        }
        (Some(c), _) => c,
        (None, Some(d)) => d.to_string(),
        (None, None) => {
            return error(400, "MANIFEST_INVALID", "manifest invalid: no media type");
        }
    };
    let descs = |key: &str| -> Vec<String> {
        v.get(key)
            .and_then(|l| l.as_array())
            .map(|l| {
                l.iter()
                    .filter_map(|d| d.get("digest").and_then(|x| x.as_str()).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut st = shared.state.lock().unwrap();
    let repo = st.repos.entry(name.to_string()).or_default();
    let is_index = v.get("manifests").is_some() && v.get("layers").is_none();
    if is_index {
        for d in descs("manifests") {
            if !repo.manifests.contains_key(&d) {
                return error(
                    400,
                    "MANIFEST_BLOB_UNKNOWN",
                    &format!("manifest blob unknown to registry: {d}"),
                );
            }
        }
    } else {
        let mut blobs: Vec<String> = v
            .get("config")
            .and_then(|c| c.get("digest"))
            .and_then(|d| d.as_str())
            .map(str::to_string)
            .into_iter()
            .collect();
        if blobs.is_empty() {
            return error(400, "MANIFEST_INVALID", "manifest invalid: no config");
        }
        blobs.extend(descs("layers"));
        for d in blobs {
            if !repo.blobs.contains(&d) {
                return error(
                    400,
                    "MANIFEST_BLOB_UNKNOWN",
                    &format!("blob unknown to registry: {d}"),
                );
            }
        }
    }
    if !repo.manifests.contains_key(&digest) {
        repo.order.push(digest.clone());
    }
    repo.manifests.insert(
        digest.clone(),
        StoredManifest {
            media_type,
            bytes: body.clone(),
        },
    );
    if !is_digest {
        repo.tags.insert(reference.to_string(), digest.clone());
    }
    let mut resp = Response::new(201)
        .header("Location", format!("/v2/{name}/manifests/{digest}"))
        .header("Docker-Content-Digest", digest.clone());
    if shared.referrers_api.load(Ordering::SeqCst)
        && let Some(s) = v
            .get("subject")
            .and_then(|s| s.get("digest"))
            .and_then(|d| d.as_str())
    {
        resp = resp.header("OCI-Subject", s);
    }
    resp
}

fn get_blob(shared: &Shared, name: &str, digest: &str) -> Response {
    if !valid_digest(digest) {
        return error(
            400,
            "DIGEST_INVALID",
            "provided digest did not match uploaded content",
        );
    }
    let st = shared.state.lock().unwrap();
    let linked = st.repos.get(name).is_some_and(|r| r.blobs.contains(digest));
    match st.blobs.get(digest).filter(|_| linked) {
        Some(b) => Response::new(200)
            .header("Docker-Content-Digest", digest)
            .header("Etag", format!("\"{digest}\""))
            .body("application/octet-stream", b.to_vec()),
        None => error(404, "BLOB_UNKNOWN", "blob unknown to registry"),
    }
}

fn new_upload(shared: &Shared, st: &mut State, name: &str) -> Response {
    let n = shared.seq.fetch_add(1, Ordering::SeqCst);
    let id = format!("{:08x}-0000-4000-8000-{n:012x}", std::process::id());
    st.uploads.insert(
        id.clone(),
        Upload {
            repo: name.to_string(),
            data: Vec::new(),
        },
    );
    Response::new(202)
        .header("Location", format!("/v2/{name}/blobs/uploads/{id}"))
        .header("Docker-Upload-UUID", id)
        .header("Range", "0-0")
}

/// Stores `data` as blob `digest` in `name` after checking it; the 201 answer.
fn commit_blob(st: &mut State, name: &str, digest: &str, data: Vec<u8>) -> Response {
    if !valid_digest(digest) || sha256_digest(&data) != digest {
        return error(
            400,
            "DIGEST_INVALID",
            "provided digest did not match uploaded content",
        );
    }
    st.blobs.insert(digest.to_string(), Arc::new(data));
    st.repos
        .entry(name.to_string())
        .or_default()
        .blobs
        .insert(digest.to_string());
    Response::new(201)
        .header("Location", format!("/v2/{name}/blobs/{digest}"))
        .header("Docker-Content-Digest", digest)
}

fn start_upload(
    shared: &Shared,
    req: &Request,
    name: &str,
    query: &HashMap<String, String>,
) -> Response {
    let mut st = shared.state.lock().unwrap();
    if let Some(d) = query.get("mount") {
        // mounted if the blob exists anywhere (a real registry would also check the caller may read `from`)
        if valid_digest(d) && st.blobs.contains_key(d) {
            st.repos
                .entry(name.to_string())
                .or_default()
                .blobs
                .insert(d.clone());
            return Response::new(201)
                .header("Location", format!("/v2/{name}/blobs/{d}"))
                .header("Docker-Content-Digest", d.clone());
        }
        return new_upload(shared, &mut st, name);
    }
    if let Some(d) = query.get("digest") {
        // monolithic upload in the POST
        return commit_blob(&mut st, name, d, req.body.clone());
    }
    new_upload(shared, &mut st, name)
}

fn upload_response(status: u16, name: &str, id: &str, len: usize) -> Response {
    Response::new(status)
        .header("Location", format!("/v2/{name}/blobs/uploads/{id}"))
        .header("Docker-Upload-UUID", id)
        .header("Range", format!("0-{}", len.saturating_sub(1)))
}

fn patch_upload(shared: &Shared, req: &Request, name: &str, id: &str) -> Response {
    let mut st = shared.state.lock().unwrap();
    match st.uploads.get_mut(id) {
        Some(u) if u.repo == name => {
            if let Some(range) = req.header("content-range") {
                // chunked-upload ranges must continue where the session is
                let start = range
                    .trim_start_matches("bytes ")
                    .split('-')
                    .next()
                    .and_then(|s| s.parse::<usize>().ok());
                if start != Some(u.data.len()) {
                    return error(416, "BLOB_UPLOAD_INVALID", "invalid content range");
                }
            }
            u.data.extend_from_slice(&req.body);
            let len = u.data.len();
            upload_response(202, name, id, len)
        }
        _ => error(
            404,
            "BLOB_UPLOAD_UNKNOWN",
            "blob upload unknown to registry",
        ),
    }
}

fn finish_upload(
    shared: &Shared,
    req: &Request,
    name: &str,
    id: &str,
    query: &HashMap<String, String>,
) -> Response {
    let mut st = shared.state.lock().unwrap();
    let Some(mut up) = st.uploads.remove(id).filter(|u| u.repo == name) else {
        return error(
            404,
            "BLOB_UPLOAD_UNKNOWN",
            "blob upload unknown to registry",
        );
    };
    let Some(digest) = query.get("digest") else {
        st.uploads.insert(id.to_string(), up);
        return error(400, "DIGEST_INVALID", "digest missing");
    };
    up.data.extend_from_slice(&req.body);
    commit_blob(&mut st, name, digest, up.data)
}

fn upload_status(shared: &Shared, name: &str, id: &str) -> Response {
    let st = shared.state.lock().unwrap();
    match st.uploads.get(id) {
        Some(u) if u.repo == name => upload_response(204, name, id, u.data.len()),
        _ => error(
            404,
            "BLOB_UPLOAD_UNKNOWN",
            "blob upload unknown to registry",
        ),
    }
}

fn list_tags(shared: &Shared, name: &str, query: &HashMap<String, String>) -> Response {
    let st = shared.state.lock().unwrap();
    let Some(repo) = st.repos.get(name) else {
        return error(404, "NAME_UNKNOWN", "repository name not known to registry");
    };
    let last = query.get("last").cloned().unwrap_or_default();
    let n: Option<usize> = query.get("n").and_then(|n| n.parse().ok());
    let rest: Vec<&String> = repo.tags.keys().filter(|t| **t > last).collect();
    let page: Vec<&String> = match n {
        Some(n) => rest.iter().take(n).copied().collect(),
        None => rest.clone(),
    };
    let mut resp = Response::new(200);
    if let Some(n) = n
        && rest.len() > n
        && let Some(l) = page.last()
    {
        resp = resp.header(
            "Link",
            format!("</v2/{name}/tags/list?last={l}&n={n}>; rel=\"next\""),
        );
    }
    resp.json(200, &serde_json::json!({"name": name, "tags": page}))
}

fn referrers(
    shared: &Shared,
    name: &str,
    subject: &str,
    query: &HashMap<String, String>,
) -> Response {
    if !valid_digest(subject) {
        return error(400, "DIGEST_INVALID", "invalid digest");
    }
    let filter = query.get("artifactType").filter(|t| !t.is_empty());
    let st = shared.state.lock().unwrap();
    let mut list = Vec::new();
    if let Some(repo) = st.repos.get(name) {
        for digest in &repo.order {
            let mf = &repo.manifests[digest];
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&mf.bytes) else {
                continue;
            };
            if v.get("subject")
                .and_then(|s| s.get("digest"))
                .and_then(|d| d.as_str())
                != Some(subject)
            {
                continue;
            }
            let artifact_type = v
                .get("artifactType")
                .and_then(|a| a.as_str())
                .or_else(|| {
                    v.get("config")
                        .and_then(|c| c.get("mediaType"))
                        .and_then(|m| m.as_str())
                })
                .map(str::to_string);
            if let Some(f) = filter
                && artifact_type.as_ref() != Some(f)
            {
                continue;
            }
            let mut d = serde_json::json!({
                "mediaType": mf.media_type,
                "digest": digest,
                "size": mf.bytes.len(),
            });
            if let Some(a) = artifact_type {
                d["artifactType"] = a.into();
            }
            if let Some(a) = v.get("annotations").filter(|a| a.is_object()) {
                d["annotations"] = a.clone();
            }
            list.push(d);
        }
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": list,
    });
    let mut resp = Response::new(200);
    if filter.is_some() {
        resp = resp.header("OCI-Filters-Applied", "artifactType");
    }
    resp.body(OCI_INDEX, serde_json::to_vec(&index).unwrap())
}
