//! Test support: a fault-injecting HTTP/1.1 reverse proxy in front of a REAL registry (tests/common/registry.rs).
//! In-process, on its own tokio runtime; sealpack talks to the proxy's `host` with `--plain-http`, the proxy
//! forwards to the registry with reqwest (no redirects followed, headers passed through, `Authorization`
//! included) and applies the first [`Rule`] whose method and path match, counting each rule's hits.
//!
//! ```ignore
//! mod common;
//! use common::fault_proxy::{Fault, FaultProxy, Rule};
//! let reg = Registry::start(Flavor::Plain);
//! let proxy = FaultProxy::start(&reg.base_url());
//! let reset = proxy.add(Rule::on("PUT", "/blobs/uploads/").times(1).fault(Fault::ResetBody { after: 64 << 10 }));
//! // ... sealpack push ... --to {proxy.host}/repo:tag --plain-http
//! assert_eq!(proxy.hits(reset), 1);
//! ```
//!
//! Every response carries `Connection: close` (one request per connection keeps the proxy simple; reqwest opens
//! a new connection each time). Request bodies must have a `Content-Length` (sealpack always sends one).
//! [`Sink`] is a second server that records the headers it is sent (for redirect tests), and
//! [`https_redirector`] answers every request over TLS with a redirect (for https -> http downgrade tests).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener as StdListener;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};

/// Largest request head accepted.
const MAX_HEAD: usize = 64 << 10;

/// What to do to a matching request.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Forward the first `after` bytes of the request body, then reset both connections (RST to the client).
    ResetBody { after: u64 },
    /// Answer this status without forwarding (the request body is read and dropped), with `Retry-After` when
    /// given.
    Status {
        status: u16,
        retry_after: Option<String>,
    },
    /// Forward, then flip one bit in the middle of the response body (same length).
    CorruptBody,
    /// Forward, then append these bytes to the response body (and drop `Content-Length`).
    AppendBody(Vec<u8>),
    /// Forward, then answer with this body and content type instead (same status and other headers).
    ReplaceBody {
        content_type: Option<String>,
        body: Vec<u8>,
    },
    /// Forward, then set (or replace) a response header, e.g. a lying `Docker-Content-Digest`.
    SetHeader(String, String),
    /// Forward to this upstream path instead (e.g. serve another tag's manifest).
    Upstream(String),
    /// Forward, then send the response headers and only the first `after` bytes of the body, and close the
    /// connection (a download cut off mid-body).
    CutBody { after: u64 },
    /// Forward, then send the response body one byte per `interval`.
    Drip(Duration),
    /// Answer `401` with this `WWW-Authenticate` challenge without forwarding.
    Challenge(String),
    /// Answer `307 Temporary Redirect` to `location` without forwarding.
    Redirect(String),
    /// Read the request, then answer nothing (hold the connection open until the client gives up).
    Stall,
}

/// Which requests a fault applies to, and how often.
#[derive(Clone, Debug)]
pub struct Rule {
    method: Option<String>,
    path_contains: String,
    skip: u32,
    times: Option<u32>,
    fault: Option<Fault>,
}

impl Rule {
    /// Requests with this method (`"*"` for any) whose target contains `path_contains`.
    pub fn on(method: &str, path_contains: &str) -> Rule {
        Rule {
            method: (method != "*").then(|| method.to_string()),
            path_contains: path_contains.to_string(),
            skip: 0,
            times: None,
            fault: None,
        }
    }
    /// Apply only to the first `n` matching requests (default: all).
    pub fn times(mut self, n: u32) -> Rule {
        self.times = Some(n);
        self
    }
    /// Let the first `n` matching requests through untouched.
    pub fn skip(mut self, n: u32) -> Rule {
        self.skip = n;
        self
    }
    pub fn fault(mut self, f: Fault) -> Rule {
        self.fault = Some(f);
        self
    }
    fn matches(&self, method: &str, target: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m == method) && target.contains(&self.path_contains)
    }
}

struct RuleState {
    rule: Rule,
    /// Matching requests seen.
    seen: AtomicU32,
    /// Times the fault was applied.
    hits: AtomicU32,
}

/// One request as the proxy saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub target: String,
    /// The status sent to the client (0 when the connection was reset or nothing was answered).
    pub status: u16,
    /// Index of the rule applied, if any.
    pub rule: Option<usize>,
}

struct State {
    upstream: String,
    /// `http://` + the proxy's own address, put in place of the upstream in `Location` headers.
    own: Mutex<String>,
    client: reqwest::Client,
    rules: Mutex<Vec<Arc<RuleState>>>,
    log: Mutex<Vec<Seen>>,
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    /// `127.0.0.1:PORT`.
    pub host: String,
    state: Arc<State>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port in front of `upstream` (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> FaultProxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("proxy runtime");
        // the upstream is plain HTTP, but reqwest (built without a default crypto provider) wants a TLS config
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .expect("proxy upstream client");
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_string(),
            own: Mutex::new(String::new()),
            client,
            rules: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
        });
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind proxy");
        let host = listener.local_addr().unwrap().to_string();
        *state.own.lock().unwrap() = format!("http://{host}");
        let st = state.clone();
        runtime.spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let st = st.clone();
                tokio::spawn(async move {
                    let _ = serve(st, sock).await;
                });
            }
        });
        FaultProxy {
            host,
            state,
            runtime: Some(runtime),
        }
    }

    /// Adds a rule (checked in the order added; the first active match applies); returns its index.
    pub fn add(&self, rule: Rule) -> usize {
        assert!(rule.fault.is_some(), "a rule needs a fault");
        let mut rules = self.state.rules.lock().unwrap();
        rules.push(Arc::new(RuleState {
            rule,
            seen: AtomicU32::new(0),
            hits: AtomicU32::new(0),
        }));
        rules.len() - 1
    }

    /// How many times rule `i` applied its fault.
    pub fn hits(&self, i: usize) -> u32 {
        self.state.rules.lock().unwrap()[i]
            .hits
            .load(Ordering::SeqCst)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.state.log.lock().unwrap().clone()
    }

    /// Requests so far whose method matches and whose target contains `path_contains`.
    pub fn count(&self, method: &str, path_contains: &str) -> usize {
        self.requests()
            .iter()
            .filter(|s| (method == "*" || s.method == method) && s.target.contains(path_contains))
            .count()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

struct Head {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    content_length: u64,
    /// `Transfer-Encoding: chunked` (a streamed PATCH): the body is decoded and sent on chunked again.
    chunked: bool,
}

/// Reads a request head; returns it and the body bytes read past it.
async fn read_head(sock: &mut TcpStream) -> std::io::Result<Option<(Head, Vec<u8>)>> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD {
            return Err(std::io::Error::other("request head too large"));
        }
        let n = sock.read(&mut tmp).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let text = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_string();
    let target = first.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    let mut content_length = 0;
    let mut chunked = false;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_string(), v.trim().to_string());
            if k.eq_ignore_ascii_case("content-length") {
                content_length = v.parse().unwrap_or(0);
            }
            if k.eq_ignore_ascii_case("transfer-encoding") {
                if !v.eq_ignore_ascii_case("chunked") {
                    return Err(std::io::Error::other(format!(
                        "transfer-encoding {v:?} is not supported"
                    )));
                }
                chunked = true;
                continue;
            }
            headers.push((k, v));
        }
    }
    let rest = buf[end + 4..].to_vec();
    Ok(Some((
        Head {
            method,
            target,
            headers,
            content_length,
            chunked,
        },
        rest,
    )))
}

/// Hands at most `limit` bytes of a `total`-byte request body from the client to the upstream request, failing the
/// upstream request (so the registry sees a broken upload) when it stops short.
async fn pump_sized(
    mut rd: OwnedReadHalf,
    already: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    total: u64,
    limit: u64,
) -> OwnedReadHalf {
    let limit = limit.min(total);
    let mut sent = 0u64;
    let first = &already[..(already.len() as u64).min(limit) as usize];
    if !first.is_empty() {
        sent += first.len() as u64;
        if tx.send(Ok(Bytes::copy_from_slice(first))).await.is_err() {
            return rd;
        }
    }
    let mut tmp = vec![0u8; 64 << 10];
    while sent < limit {
        let want = (limit - sent).min(tmp.len() as u64) as usize;
        match rd.read(&mut tmp[..want]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                sent += n as u64;
                if tx
                    .send(Ok(Bytes::copy_from_slice(&tmp[..n])))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    if sent < total {
        // abort the upstream request so the registry sees a broken upload
        let _ = tx
            .send(Err(std::io::Error::other("fault proxy: reset")))
            .await;
    }
    rd
}

/// Decodes a chunked request body from the client and hands the data to the upstream request, stopping (and
/// failing the upstream request, so the registry sees a broken upload) after `limit` bytes.
async fn pump_chunked(
    mut rd: OwnedReadHalf,
    already: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    limit: u64,
) -> OwnedReadHalf {
    let mut buf = already;
    let mut sent = 0u64;
    let mut tmp = vec![0u8; 64 << 10];
    // reads until `buf` holds `n` bytes; false at the end of the connection
    macro_rules! need {
        ($n:expr) => {{
            let mut ok = true;
            let want = $n;
            while buf.len() < want {
                match rd.read(&mut tmp).await {
                    Ok(0) | Err(_) => {
                        ok = false;
                        break;
                    }
                    Ok(k) => buf.extend_from_slice(&tmp[..k]),
                }
            }
            ok
        }};
    }
    let complete = loop {
        // the size line
        let line_end = loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                break Some(i);
            }
            if !need!(buf.len() + 1) {
                break None;
            }
        };
        let Some(line_end) = line_end else {
            break false;
        };
        let line = String::from_utf8_lossy(&buf[..line_end]).into_owned();
        let size =
            u64::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        buf.drain(..line_end + 2);
        if size == 0 {
            // trailers end with an empty line
            while !buf.windows(2).any(|w| w == b"\r\n") {
                if !need!(buf.len() + 1) {
                    break;
                }
            }
            break true;
        }
        let mut left = size;
        let mut stop = false;
        while left > 0 {
            if buf.is_empty() && !need!(1) {
                stop = true;
                break;
            }
            let take = (buf.len() as u64).min(left).min(limit - sent) as usize;
            if take > 0 {
                let part: Vec<u8> = buf.drain(..take).collect();
                sent += take as u64;
                left -= take as u64;
                if tx.send(Ok(Bytes::from(part))).await.is_err() {
                    stop = true;
                    break;
                }
            }
            if sent >= limit {
                stop = true;
                break;
            }
        }
        if stop || !need!(2) {
            break false;
        }
        buf.drain(..2);
    };
    if !complete {
        let _ = tx
            .send(Err(std::io::Error::other("fault proxy: reset")))
            .await;
    }
    rd
}

fn record(st: &State, head: &Head, status: u16, rule: Option<usize>) {
    st.log.lock().unwrap().push(Seen {
        method: head.method.clone(),
        target: head.target.clone(),
        status,
        rule,
    });
}

/// Drains what is left of a request body.
async fn drain(sock: &mut TcpStream, mut left: u64) -> std::io::Result<()> {
    let mut tmp = vec![0u8; 64 << 10];
    while left > 0 {
        let n = sock.read(&mut tmp[..left.min(64 << 10) as usize]).await?;
        if n == 0 {
            break;
        }
        left -= n as u64;
    }
    Ok(())
}

fn reset(sock: TcpStream) {
    let _ = sock.set_zero_linger();
    drop(sock);
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        307 => "Temporary Redirect",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

async fn serve(st: Arc<State>, mut sock: TcpStream) -> std::io::Result<()> {
    let Some((head, already)) = read_head(&mut sock).await? else {
        return Ok(());
    };
    // pick the rule
    let picked = {
        let rules = st.rules.lock().unwrap();
        rules.iter().enumerate().find_map(|(i, r)| {
            if !r.rule.matches(&head.method, &head.target) {
                return None;
            }
            let n = r.seen.fetch_add(1, Ordering::SeqCst);
            let active = n >= r.rule.skip && r.rule.times.is_none_or(|t| n < r.rule.skip + t);
            active.then(|| (i, r.clone()))
        })
    };
    if let Some((_, r)) = &picked {
        r.hits.fetch_add(1, Ordering::SeqCst);
    }
    let rule_index = picked.as_ref().map(|(i, _)| *i);
    let fault = picked.and_then(|(_, r)| r.rule.fault.clone());
    let body_left = head.content_length.saturating_sub(already.len() as u64);

    // faults answered without forwarding
    match &fault {
        Some(Fault::Status {
            status,
            retry_after,
        }) => {
            drain(&mut sock, body_left).await?;
            record(&st, &head, *status, rule_index);
            let body = format!(
                "{{\"errors\":[{{\"code\":\"UNAVAILABLE\",\"message\":\"fault proxy: {status}\"}}]}}"
            );
            let mut out = format!(
                "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
                reason(*status),
                body.len()
            );
            if let Some(ra) = retry_after {
                out.push_str(&format!("Retry-After: {ra}\r\n"));
            }
            out.push_str("\r\n");
            out.push_str(&body);
            sock.write_all(out.as_bytes()).await?;
            return sock.shutdown().await;
        }
        Some(Fault::Redirect(location)) => {
            drain(&mut sock, body_left).await?;
            record(&st, &head, 307, rule_index);
            let out = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            sock.write_all(out.as_bytes()).await?;
            return sock.shutdown().await;
        }
        Some(Fault::Challenge(challenge)) => {
            drain(&mut sock, body_left).await?;
            record(&st, &head, 401, rule_index);
            let out = format!(
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: {challenge}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            sock.write_all(out.as_bytes()).await?;
            return sock.shutdown().await;
        }
        Some(Fault::Stall) => {
            drain(&mut sock, body_left).await?;
            record(&st, &head, 0, rule_index);
            // hold the connection until the client closes it
            let mut tmp = [0u8; 1];
            let _ = sock.read(&mut tmp).await;
            return Ok(());
        }
        _ => {}
    }

    // forward
    let target = match &fault {
        Some(Fault::Upstream(p)) => p.clone(),
        _ => head.target.clone(),
    };
    let method = reqwest::Method::from_bytes(head.method.as_bytes()).unwrap();
    let mut rb = st
        .client
        .request(method.clone(), format!("{}{target}", st.upstream));
    for (k, v) in &head.headers {
        let lk = k.to_ascii_lowercase();
        if ["host", "connection", "content-length", "keep-alive"].contains(&lk.as_str()) {
            continue;
        }
        rb = rb.header(k, v);
    }
    let reset_after = match &fault {
        Some(Fault::ResetBody { after }) => Some(*after),
        _ => None,
    };
    let (mut rd, mut wr) = sock.into_split();
    let resp = if head.chunked || head.content_length > 0 || reset_after.is_some() {
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
        if !head.chunked {
            rb = rb.header("content-length", head.content_length);
        }
        rb = rb.body(reqwest::Body::wrap_stream(futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|i| (i, rx)) },
        )));
        let limit = reset_after.unwrap_or(u64::MAX);
        let pump: std::pin::Pin<Box<dyn std::future::Future<Output = OwnedReadHalf> + Send>> =
            if head.chunked {
                Box::pin(pump_chunked(rd, already, tx, limit))
            } else {
                Box::pin(pump_sized(rd, already, tx, head.content_length, limit))
            };
        let (resp, back) = tokio::join!(rb.send(), pump);
        rd = back;
        if reset_after.is_some() {
            let sock = rd.reunite(wr).expect("same socket");
            record(&st, &head, 0, rule_index);
            reset(sock);
            return Ok(());
        }
        resp
    } else {
        rb.send().await
    };
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            record(&st, &head, 502, rule_index);
            let msg = format!("fault proxy: upstream failed: {e}");
            let out = format!(
                "HTTP/1.1 502 Bad Gateway\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}",
                msg.len()
            );
            wr.write_all(out.as_bytes()).await?;
            return wr.shutdown().await;
        }
    };
    let status = resp.status().as_u16();
    record(&st, &head, status, rule_index);
    let mut headers: Vec<(String, String)> = resp
        .headers()
        .iter()
        .filter(|(k, _)| !["connection", "transfer-encoding", "keep-alive"].contains(&k.as_str()))
        .map(|(k, v)| {
            let mut v = v.to_str().unwrap_or("").to_string();
            // upload session Locations are absolute (distribution builds them from its own address): keep the
            // client talking to the proxy
            if k == "location" && v.starts_with(&st.upstream) {
                v = format!("{}{}", st.own.lock().unwrap(), &v[st.upstream.len()..]);
            }
            (k.to_string(), v)
        })
        .collect();
    let set = |headers: &mut Vec<(String, String)>, name: &str, value: Option<String>| {
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        if let Some(v) = value {
            headers.push((name.to_string(), v));
        }
    };
    let is_head = head.method == "HEAD";
    // body transformations that need the whole body (small bodies only: manifests, test blobs)
    let mut resp = Some(resp);
    let body: Option<Vec<u8>> = match &fault {
        Some(Fault::CorruptBody) => {
            let mut b = resp
                .take()
                .unwrap()
                .bytes()
                .await
                .map_err(std::io::Error::other)?
                .to_vec();
            if !b.is_empty() {
                let mid = b.len() / 2;
                b[mid] ^= 0x01;
            }
            Some(b)
        }
        Some(Fault::AppendBody(extra)) => {
            let mut b = resp
                .take()
                .unwrap()
                .bytes()
                .await
                .map_err(std::io::Error::other)?
                .to_vec();
            b.extend_from_slice(extra);
            set(&mut headers, "content-length", None);
            Some(b)
        }
        Some(Fault::ReplaceBody { content_type, body }) => {
            let _ = resp.take().unwrap().bytes().await;
            if let Some(ct) = content_type {
                set(&mut headers, "content-type", Some(ct.clone()));
            }
            set(&mut headers, "content-length", Some(body.len().to_string()));
            Some(body.clone())
        }
        _ => None,
    };
    if let Some(Fault::SetHeader(k, v)) = &fault {
        set(&mut headers, k, Some(v.clone()));
    }
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in &headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    wr.write_all(out.as_bytes()).await?;
    if !is_head {
        match (body, &fault) {
            (Some(b), _) => wr.write_all(&b).await?,
            (None, Some(Fault::Drip(interval))) => {
                let mut stream = resp.take().unwrap().bytes_stream();
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(std::io::Error::other)?;
                    for byte in chunk.iter() {
                        wr.write_all(&[*byte]).await?;
                        wr.flush().await?;
                        tokio::time::sleep(*interval).await;
                    }
                }
            }
            (None, Some(Fault::CutBody { after })) => {
                let mut stream = resp.take().unwrap().bytes_stream();
                let mut left = *after;
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(std::io::Error::other)?;
                    let n = (chunk.len() as u64).min(left) as usize;
                    wr.write_all(&chunk[..n]).await?;
                    left -= n as u64;
                    if left == 0 {
                        break;
                    }
                }
            }
            (None, _) => {
                let mut stream = resp.take().unwrap().bytes_stream();
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(std::io::Error::other)?;
                    wr.write_all(&chunk).await?;
                }
            }
        }
    }
    wr.shutdown().await
}

/// What a [`Sink`] was sent.
#[derive(Clone, Debug)]
pub struct SinkRequest {
    pub method: String,
    pub target: String,
    /// Header names and values as received.
    pub headers: Vec<(String, String)>,
}

impl SinkRequest {
    /// The value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A plain-HTTP server on another loopback address that records each request and answers every one with the
/// same status and body (std threads; stops serving when dropped).
pub struct Sink {
    /// `IP:PORT`.
    pub host: String,
    seen: Arc<Mutex<Vec<SinkRequest>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Sink {
    /// Listens on `ip` (e.g. `127.0.0.2`, another host than the proxy's 127.0.0.1) and answers `status` with
    /// `body`.
    pub fn start(ip: &str, status: u16, body: Vec<u8>) -> Sink {
        let listener = StdListener::bind(format!("{ip}:0")).expect("bind sink");
        listener.set_nonblocking(true).unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                        let mut r = BufReader::new(s);
                        let mut first = String::new();
                        if r.read_line(&mut first).is_err() {
                            continue;
                        }
                        let mut parts = first.split_whitespace();
                        let method = parts.next().unwrap_or("").to_string();
                        let target = parts.next().unwrap_or("").to_string();
                        let mut headers = Vec::new();
                        loop {
                            let mut l = String::new();
                            if r.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                                break;
                            }
                            if let Some((k, v)) = l.trim_end().split_once(':') {
                                headers.push((k.trim().to_string(), v.trim().to_string()));
                            }
                        }
                        seen2.lock().unwrap().push(SinkRequest {
                            method,
                            target,
                            headers,
                        });
                        let mut s = r.into_inner();
                        let _ = write!(
                            s,
                            "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            reason(status),
                            body.len()
                        );
                        let _ = s.write_all(&body);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Sink { host, seen, stop }
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<SinkRequest> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// An HTTPS server (certificate `cert_pem`/`key_pem`, e.g. from `registry::make_test_pki`) on 127.0.0.1 that
/// answers every request with `307` to `location_base` + the request target. Returns `127.0.0.1:PORT`. Runs
/// until the test process ends.
pub fn https_redirector(cert_pem: &Path, key_pem: &Path, location_base: &str) -> String {
    let certs: Vec<_> = rustls_pemfile::certs(&mut &std::fs::read(cert_pem).unwrap()[..])
        .collect::<Result<_, _>>()
        .unwrap();
    let key = rustls_pemfile::private_key(&mut &std::fs::read(key_pem).unwrap()[..])
        .unwrap()
        .expect("a private key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let config = Arc::new(config);
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let base = location_base.trim_end_matches('/').to_string();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(s) = s else { continue };
            let config = config.clone();
            let base = base.clone();
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, s);
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut tmp) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&buf);
                let target = text.split(' ').nth(1).unwrap_or("/").to_string();
                let _ = write!(
                    tls,
                    "HTTP/1.1 307 Temporary Redirect\r\nLocation: {base}{target}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    host
}
