//! The OCI distribution API over HTTP(S).
//!
//! Written on reqwest rather than on oci-client because sealpack needs control that oci-client does not give:
//! single-request streaming uploads (oci-client turns every stream item into its own PATCH), the bearer token and
//! its scope (for cross-repository mounts), size caps on everything read, digests computed from received bytes
//! instead of headers, redirect rules that never carry credentials to another host, and docker config.json
//! credential helpers. What it implements is the distribution spec's pull, push, tag listing and mount endpoints,
//! and the token and basic authentication flows.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION,
    RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode};

use super::retry::{self, Budget, LowSpeed, RetryOptions};
use super::{BlobSource, BlobUpload, ByteStream, FetchedBlob, ManifestRef, Progress, Store};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::oci::{Descriptor, MAX_MANIFEST_BYTES, RawManifest, media};
use crate::reference::RegistryRef;

/// Largest error body or token response read from a registry.
const MAX_SMALL_BODY: usize = 64 * 1024;
/// Largest tag list page read.
const MAX_TAGS_BODY: usize = 16 << 20;
const USER_AGENT: &str = concat!("sealpack/", env!("CARGO_PKG_VERSION"));

/// Username and password (or identity token) for a registry. `Debug` never shows the secret.
#[derive(Clone)]
pub enum Credentials {
    /// Basic credentials.
    UserPassword {
        /// The user name.
        username: String,
        /// The password or access token.
        password: String,
    },
    /// An OAuth2 refresh token (docker config `identitytoken`).
    IdentityToken(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::UserPassword { username, .. } => {
                write!(f, "UserPassword({username}, <redacted>)")
            }
            Credentials::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

/// How to talk to registries.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Use `http://` instead of `https://` (as oras's `--plain-http`).
    pub plain_http: bool,
    /// Extra CA certificates (PEM files) to trust.
    pub ca_files: Vec<std::path::PathBuf>,
    /// Skip TLS certificate verification.
    pub insecure: bool,
    /// Credentials given on the command line; they win over docker config for every registry.
    pub credentials: Option<Credentials>,
    /// Ignore docker config (tests, hermetic CI).
    pub no_docker_config: bool,
    /// Where to remember which repositories hold which blobs (for cross-repository mounts); `None` disables it.
    pub cache_dir: Option<std::path::PathBuf>,
    /// Per-host settings (`--registry-config`), keyed by `HOST[:PORT]`; they replace the global TLS and
    /// plain-HTTP settings for that host.
    pub hosts: std::collections::BTreeMap<String, HostOptions>,
    /// Retries, the command's retry budget, and the low-speed and connect timeouts.
    pub retry: RetryOptions,
}

/// Settings for one registry host.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostOptions {
    /// Plain HTTP for this host.
    #[serde(default)]
    pub plain_http: bool,
    /// Skip TLS verification for this host.
    #[serde(default)]
    pub insecure: bool,
    /// Extra CA file for this host.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
}

/// A shared HTTP client for registries: connection pool, TLS settings and credentials.
pub struct RegistryClient {
    http: reqwest::Client,
    locations: Option<crate::cache::LocationCache>,
    /// Clients for hosts with their own settings: (client, plain_http).
    per_host: std::collections::BTreeMap<String, (reqwest::Client, bool)>,
    /// The retry budget, started when the client is made (one command).
    budget: Budget,
    opts: ClientOptions,
}

impl RegistryClient {
    /// Builds the client; fails on unreadable CA files.
    pub fn new(opts: ClientOptions) -> Result<Self> {
        let http = Self::build_http(&opts)?;
        let mut per_host = std::collections::BTreeMap::new();
        for (host, h) in &opts.hosts {
            let host_opts = ClientOptions {
                plain_http: h.plain_http,
                insecure: h.insecure,
                ca_files: opts
                    .ca_files
                    .iter()
                    .cloned()
                    .chain(h.ca_file.clone())
                    .collect(),
                retry: opts.retry.clone(),
                ..ClientOptions::default()
            };
            per_host.insert(host.clone(), (Self::build_http(&host_opts)?, h.plain_http));
        }
        let locations = opts
            .cache_dir
            .as_deref()
            .map(crate::cache::LocationCache::new);
        Ok(RegistryClient {
            http,
            locations,
            per_host,
            budget: Budget::start(opts.retry.clone()),
            opts,
        })
    }

    /// The HTTP client and scheme for a host.
    fn for_host(&self, host: &str) -> (&reqwest::Client, &'static str) {
        match self.per_host.get(host) {
            Some((c, plain)) => (c, if *plain { "http" } else { "https" }),
            None => (
                &self.http,
                if self.opts.plain_http {
                    "http"
                } else {
                    "https"
                },
            ),
        }
    }

    fn build_http(opts: &ClientOptions) -> Result<reqwest::Client> {
        let tls = tls_config(opts)?;
        let policy = reqwest::redirect::Policy::custom(|attempt| {
            if attempt.previous().len() >= 5 {
                return attempt.error("more than 5 redirects");
            }
            let from_https = attempt
                .previous()
                .last()
                .is_some_and(|u| u.scheme() == "https");
            if from_https && attempt.url().scheme() != "https" {
                return attempt.error("refusing a redirect from https to http");
            }
            // reqwest drops Authorization and Cookie headers when the host changes
            attempt.follow()
        });
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .user_agent(USER_AGENT)
            .redirect(policy)
            // no read_timeout: reqwest's runs from the start of the request to the response head, so it would
            // bound a whole upload; the low-speed checks below (head wait, body watchdog, upload stall) replace it
            .connect_timeout(opts.retry.connect_timeout)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| Error::usage(format!("cannot set up the HTTP client: {e}")))?;
        Ok(http)
    }

    /// Looks up credentials for a registry host: command line first, then docker config (including credential
    /// helpers and credsStore).
    async fn credentials_for(&self, registry: &str) -> Option<Credentials> {
        if let Some(c) = &self.opts.credentials {
            return Some(c.clone());
        }
        if self.opts.no_docker_config {
            return None;
        }
        let registry = registry.to_string();
        tokio::task::spawn_blocking(move || {
            let keys: Vec<String> = if registry == crate::reference::DOCKER_HUB {
                vec![
                    "https://index.docker.io/v1/".into(),
                    "index.docker.io".into(),
                    "docker.io".into(),
                ]
            } else {
                vec![
                    registry.clone(),
                    format!("https://{registry}"),
                    format!("http://{registry}"),
                ]
            };
            keys.iter()
                .find_map(|k| match docker_credential::get_credential(k) {
                    Ok(docker_credential::DockerCredential::UsernamePassword(u, p)) => {
                        Some(Credentials::UserPassword {
                            username: u,
                            password: p,
                        })
                    }
                    Ok(docker_credential::DockerCredential::IdentityToken(t)) => {
                        Some(Credentials::IdentityToken(t))
                    }
                    Err(_) => None,
                })
        })
        .await
        .ok()
        .flatten()
    }
}

fn tls_config(opts: &ClientOptions) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::usage(format!("TLS setup: {e}")))?;
    if opts.insecure {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(insecure::NoVerify(provider)))
            .with_no_client_auth());
    }
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    for path in &opts.ca_files {
        let pem = std::fs::read(path).map_err(|e| Error::io("reading CA file", path, e))?;
        let mut n = 0;
        for cert in rustls_pemfile::certs(&mut &pem[..]) {
            let cert =
                cert.map_err(|e| Error::usage(format!("CA file {}: {e}", path.display())))?;
            roots
                .add(cert)
                .map_err(|e| Error::usage(format!("CA file {}: {e}", path.display())))?;
            n += 1;
        }
        if n == 0 {
            return Err(Error::usage(format!(
                "CA file {} holds no PEM certificate",
                path.display()
            )));
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

mod insecure {
    //! `--insecure`: accept any server certificate (signatures are still checked, so the handshake stays sound).
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::CryptoProvider;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};

    #[derive(Debug)]
    pub struct NoVerify(pub Arc<CryptoProvider>);

    impl ServerCertVerifier for NoVerify {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
}

/// A parsed `WWW-Authenticate` challenge (public only for the fuzz targets).
#[doc(hidden)]
#[derive(Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

#[doc(hidden)]
pub fn parse_challenge(h: &str) -> Option<Challenge> {
    let (scheme, rest) = h.trim().split_once(' ').unwrap_or((h.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    // key="value" pairs separated by commas; values may contain commas inside quotes
    let mut s = rest;
    while !s.is_empty() {
        let (key, after) = s.split_once('=')?;
        let key = key.trim().trim_start_matches(',').trim();
        let after = after.trim_start();
        let (value, remaining) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        match key.to_ascii_lowercase().as_str() {
            "realm" => realm = Some(value.to_string()),
            "service" => service = Some(value.to_string()),
            _ => {}
        }
        s = remaining.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
    }
    Some(Challenge::Bearer {
        realm: realm?,
        service,
    })
}

/// One repository in a registry.
pub struct RegistryStore {
    client: Arc<RegistryClient>,
    registry: String,
    api_host: String,
    repository: String,
    push: bool,
    /// The Authorization header that worked last, reused until the registry asks again.
    auth: Mutex<Option<HeaderValue>>,
    /// Extra token scopes (e.g. pull on a mount source repository).
    extra_scopes: Mutex<Vec<String>>,
    /// Whether the referrers API answered, once asked.
    referrers_api: Mutex<Option<bool>>,
    /// Cleared when the registry refuses a streamed (chunked, no `Content-Range`) `PATCH`, which the OCI spec
    /// leaves out and some registries refuse: later blobs go the ordinary way.
    streamed_patch: std::sync::atomic::AtomicBool,
}

/// A request that can be rebuilt for a retry after authenticating (so it has no streaming body).
struct Req {
    method: Method,
    url: String,
    headers: HeaderMap,
    body: Option<Bytes>,
}

impl RegistryStore {
    /// A store for `r`'s repository; `push` asks for push access when authenticating.
    pub fn new(client: Arc<RegistryClient>, r: &RegistryRef, push: bool) -> Self {
        RegistryStore {
            client,
            registry: r.registry().to_string(),
            api_host: r.api_host().to_string(),
            repository: r.repository().to_string(),
            push,
            auth: Mutex::new(None),
            extra_scopes: Mutex::new(Vec::new()),
            referrers_api: Mutex::new(None),
            streamed_patch: std::sync::atomic::AtomicBool::new(true),
        }
    }

    fn remember(&self, digest: &Digest) {
        if let Some(c) = &self.client.locations {
            c.record(&self.registry, &self.repository, digest);
        }
    }

    fn http(&self) -> &reqwest::Client {
        self.client.for_host(&self.api_host).0
    }

    fn scheme(&self) -> &'static str {
        self.client.for_host(&self.api_host).1
    }

    fn base(&self) -> String {
        format!(
            "{}://{}/v2/{}",
            self.scheme(),
            self.api_host,
            self.repository
        )
    }

    fn low_speed(&self) -> Duration {
        self.client.budget.options().low_speed_timeout
    }

    fn what(&self, r: impl std::fmt::Display) -> String {
        format!("{}/{}{r}", self.registry, self.repository)
    }

    /// A handle on the same repository that a download stream can own (to ask for the rest of a blob), carrying
    /// the credentials that worked.
    fn fork(&self) -> RegistryStore {
        RegistryStore {
            client: self.client.clone(),
            registry: self.registry.clone(),
            api_host: self.api_host.clone(),
            repository: self.repository.clone(),
            push: self.push,
            auth: Mutex::new(self.auth.lock().expect("auth lock").clone()),
            extra_scopes: Mutex::new(self.extra_scopes.lock().expect("scopes lock").clone()),
            referrers_api: Mutex::new(None),
            streamed_patch: std::sync::atomic::AtomicBool::new(
                self.streamed_patch
                    .load(std::sync::atomic::Ordering::Relaxed),
            ),
        }
    }

    /// The bytes of a blob from offset `from` on (`Range: bytes=FROM-`), for resuming a broken download. Only a
    /// `206` whose `Content-Range` starts at `from` is used: a registry that ignores the range cannot resume.
    async fn range_get(&self, url: &str, from: u64) -> Result<ByteStream> {
        let mut req = self.req(Method::GET, url.to_string());
        req.headers.insert(
            reqwest::header::RANGE,
            HeaderValue::from_str(&format!("bytes={from}-")).expect("ascii"),
        );
        let resp = self.send(req).await?;
        if resp.status() != StatusCode::PARTIAL_CONTENT {
            return Err(Error::Unsupported {
                what: url.to_string(),
                reason: format!(
                    "answered HTTP {} to a range request, so the broken download cannot resume",
                    resp.status().as_u16()
                ),
            });
        }
        let starts = resp
            .headers()
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(&format!("bytes {from}-")));
        if !starts {
            return Err(Error::untrusted(
                url.to_string(),
                format!("a range request from byte {from} was answered with another range"),
            ));
        }
        Ok(Box::pin(LowSpeed::new(
            Box::pin(resp.bytes_stream()),
            url.to_string(),
            self.low_speed(),
        )))
    }

    fn transport_error(&self, url: &str, e: reqwest::Error) -> Error {
        let mut message = e.to_string();
        let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&e);
        while let Some(s) = src {
            message.push_str(": ");
            message.push_str(&s.to_string());
            src = s.source();
        }
        let lower = message.to_ascii_lowercase();
        let hint = if lower.contains("invalidcontenttype") || lower.contains("corrupt message") {
            Some(
                "the registry answered plain HTTP on an HTTPS request: if it really serves plain HTTP, pass --plain-http",
            )
        } else if lower.contains("certificate") || lower.contains("unknownissuer") {
            Some(
                "the registry's TLS certificate is not trusted: pass --ca-file with its CA certificate (or --insecure to skip the check)",
            )
        } else if lower.contains("connection refused") {
            Some(
                "nothing is listening there: check the registry host and port, and that the registry is running",
            )
        } else if lower.contains("dns error") || lower.contains("failed to lookup") {
            Some("the registry host name does not resolve: check the reference")
        } else if self.scheme() == "http"
            && (lower.contains("connection closed") || lower.contains("reset"))
        {
            Some("the registry may only speak HTTPS: drop --plain-http")
        } else {
            None
        };
        Error::Transport {
            url: url.to_string(),
            message,
            hint,
        }
    }

    async fn status_error(&self, method: &Method, url: &str, resp: reqwest::Response) -> Error {
        let status = resp.status().as_u16();
        let body = read_capped(resp, MAX_SMALL_BODY, self.low_speed())
            .await
            .unwrap_or_default();
        let (code, message) = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                let e = v.get("errors")?.get(0)?;
                Some((
                    e.get("code").and_then(|c| c.as_str()).map(str::to_string),
                    e.get("message")
                        .and_then(|c| c.as_str())
                        .unwrap_or_default()
                        .to_string(),
                ))
            })
            .unwrap_or((
                None,
                String::from_utf8_lossy(&body)
                    .trim()
                    .chars()
                    .take(200)
                    .collect(),
            ));
        Error::Registry {
            method: method.to_string(),
            url: url.to_string(),
            status,
            code,
            message,
        }
    }

    fn scope(&self) -> String {
        let mut scopes = vec![format!(
            "repository:{}:{}",
            self.repository,
            if self.push { "pull,push" } else { "pull" }
        )];
        scopes.extend(
            self.extra_scopes
                .lock()
                .expect("scope lock")
                .iter()
                .cloned(),
        );
        scopes.join(" ")
    }

    /// Answers a 401 challenge, storing the Authorization header to use from now on.
    async fn authenticate(&self, challenge: &str) -> Result<()> {
        let creds = self.client.credentials_for(&self.registry).await;
        let header = match parse_challenge(challenge) {
            Some(Challenge::Basic) => match creds {
                Some(Credentials::UserPassword { username, password }) => {
                    basic(&username, &password)
                }
                Some(Credentials::IdentityToken(_)) => {
                    return Err(Error::Auth {
                        registry: self.registry.clone(),
                        reason: "the registry asks for basic auth but only an identity token is configured".into(),
                    });
                }
                None => {
                    return Err(Error::Auth {
                        registry: self.registry.clone(),
                        reason: "the registry requires credentials and none were found".into(),
                    });
                }
            },
            Some(Challenge::Bearer { realm, service }) => {
                self.fetch_token(&realm, service.as_deref(), creds).await?
            }
            None => {
                return Err(Error::Auth {
                    registry: self.registry.clone(),
                    reason: format!("unsupported authentication challenge {challenge:?}"),
                });
            }
        };
        *self.auth.lock().expect("auth lock") = Some(header);
        Ok(())
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        creds: Option<Credentials>,
    ) -> Result<HeaderValue> {
        let realm_url = url::Url::parse(realm).map_err(|e| Error::Auth {
            registry: self.registry.clone(),
            reason: format!("bad token realm {realm:?}: {e}"),
        })?;
        let loopback = realm_url.host_str().is_some_and(|h| {
            h == "localhost"
                || h.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        });
        if realm_url.scheme() != "https" && !(self.scheme() == "http" && loopback) {
            return Err(Error::Auth {
                registry: self.registry.clone(),
                reason: format!("refusing token realm {realm}: not https"),
            });
        }
        if let Some(why) = realm_url.host_str().and_then(forbidden_realm_host) {
            return Err(Error::Auth {
                registry: self.registry.clone(),
                reason: format!("refusing token realm {realm}: {why}"),
            });
        }
        let scope = self.scope();
        let mut query: Vec<(&str, &str)> = vec![("scope", &scope)];
        if let Some(s) = service {
            query.push(("service", s));
        }
        let make = || match &creds {
            Some(Credentials::IdentityToken(t)) => {
                let mut form = vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", t.as_str()),
                    ("client_id", "sealpack"),
                    ("scope", scope.as_str()),
                ];
                if let Some(s) = service {
                    form.push(("service", s));
                }
                let body = url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(form)
                    .finish();
                self.http()
                    .post(realm_url.clone())
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(body)
            }
            Some(Credentials::UserPassword { username, password }) => self
                .http()
                .get(realm_url.clone())
                .query(&query)
                .header(AUTHORIZATION, basic(username, password)),
            None => self.http().get(realm_url.clone()).query(&query),
        };
        let method = if matches!(creds, Some(Credentials::IdentityToken(_))) {
            Method::POST
        } else {
            Method::GET
        };
        let resp = self.exchange(&method, realm, make).await?;
        if !resp.status().is_success() {
            let status = resp.status();
            return Err(Error::Auth {
                registry: self.registry.clone(),
                reason: format!(
                    "the token service {realm} answered {status}{}",
                    if creds.is_some() {
                        " for these credentials"
                    } else {
                        " (no credentials found)"
                    }
                ),
            });
        }
        let body = read_capped(resp, MAX_SMALL_BODY, self.low_speed()).await?;
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|_| Error::Auth {
            registry: self.registry.clone(),
            reason: format!("the token service {realm} sent something that is not JSON"),
        })?;
        let token = v
            .get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Auth {
                registry: self.registry.clone(),
                reason: format!("the token service {realm} sent no token"),
            })?;
        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| Error::Auth {
            registry: self.registry.clone(),
            reason: "the token holds characters not allowed in a header".into(),
        })
    }

    /// One HTTP exchange with retries: `make` builds the request afresh for each attempt. Transport failures
    /// that may pass (resets, timeouts, refused connections), 408, 429 and 5xx are retried within the command's
    /// budget, waiting as `Retry-After` asks or with jittered exponential backoff; any other response is returned
    /// as it is. Giving up is [`Error::GaveUp`] with the attempt count and the last failure, never a response.
    async fn exchange(
        &self,
        method: &Method,
        url: &str,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let budget = &self.client.budget;
        let head_wait = budget.options().low_speed_timeout;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let (failure, retry_after) = match tokio::time::timeout(head_wait, make().send()).await
            {
                Err(_) => (
                    Error::Transport {
                        url: url.to_string(),
                        message: format!(
                            "no response within {} (low-speed timeout, {})",
                            retry::human(head_wait),
                            retry::ENV_LOW_SPEED_TIMEOUT
                        ),
                        hint: Some("the registry or the network stalled; try again later"),
                    },
                    None,
                ),
                Ok(Err(e)) => {
                    let err = self.transport_error(url, e);
                    if !matches!(&err, Error::Transport { message, .. } if retry::transient_transport(message))
                    {
                        return Err(err);
                    }
                    (err, None)
                }
                Ok(Ok(resp)) if retry::retryable_status(resp.status().as_u16()) => {
                    let ra = retry_after(resp.headers());
                    (self.status_error(method, url, resp).await, ra)
                }
                Ok(Ok(resp)) => return Ok(resp),
            };
            match budget.next(attempts, retry_after) {
                Ok(wait) => tokio::time::sleep(wait).await,
                Err(why) => {
                    return Err(Error::GaveUp {
                        what: format!("{method} {url}"),
                        attempts,
                        why,
                        last: Box::new(failure),
                    });
                }
            }
        }
    }

    /// Sends a request (with retries), authenticating once on a 401.
    async fn send(&self, req: Req) -> Result<reqwest::Response> {
        let mut tried_auth = false;
        loop {
            let make = || {
                let mut rb = self
                    .http()
                    .request(req.method.clone(), &req.url)
                    .headers(req.headers.clone());
                if let Some(h) = self.auth.lock().expect("auth lock").clone() {
                    rb = rb.header(AUTHORIZATION, h);
                }
                if let Some(b) = &req.body {
                    rb = rb.body(b.clone());
                }
                rb
            };
            let resp = self.exchange(&req.method, &req.url, make).await?;
            if resp.status() == StatusCode::UNAUTHORIZED && !tried_auth {
                let challenge = resp
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                match challenge {
                    Some(c) => {
                        self.authenticate(&c).await?;
                        tried_auth = true;
                        continue;
                    }
                    None => return Err(self.status_error(&req.method, &req.url, resp).await),
                }
            }
            if resp.status() == StatusCode::UNAUTHORIZED {
                return Err(Error::Auth {
                    registry: self.registry.clone(),
                    reason: format!(
                        "{} {} was refused (HTTP 401): wrong user name or password, or no access to {}",
                        req.method, req.url, self.repository
                    ),
                });
            }
            return Ok(resp);
        }
    }

    fn req(&self, method: Method, url: String) -> Req {
        Req {
            method,
            url,
            headers: HeaderMap::new(),
            body: None,
        }
    }

    /// Finishes an upload session with a streamed monolithic PUT of the whole blob (one request, as `curl -T`).
    /// A failure says whether a new session may be tried: not when the source itself failed (a local read error,
    /// or a copied blob that did not match its digest), nor on a definite refusal from the registry.
    async fn upload(
        &self,
        location: &str,
        desc: &Descriptor,
        body: ByteStream,
        progress: Progress<'_>,
    ) -> std::result::Result<(), UploadFailure> {
        let mut url = self.absolute(location).map_err(UploadFailure::Final)?;
        url.query_pairs_mut()
            .append_pair("digest", &desc.digest.to_string());
        let what = self.what(format!("@{}", desc.digest));
        let resp = self
            .stream_body(Method::PUT, &url, Some(desc.size), body, &what, progress)
            .await?;
        if resp.status() == StatusCode::CREATED {
            return Ok(());
        }
        Err(self.upload_refused(&Method::PUT, &url, resp).await)
    }

    /// A failed upload request, sorted: a status a new session may get past (5xx, 429, 408) or a refusal.
    async fn upload_refused(
        &self,
        method: &Method,
        url: &url::Url,
        resp: reqwest::Response,
    ) -> UploadFailure {
        let transient = retry::retryable_status(resp.status().as_u16());
        let ra = retry_after(resp.headers());
        let err = self.status_error(method, url.as_str(), resp).await;
        if transient {
            UploadFailure::Transient(err, ra)
        } else {
            UploadFailure::Final(err)
        }
    }

    /// Sends `body` as the body of one request (PUT or PATCH to an upload session) and returns the registry's
    /// answer, whatever its status: `size` bytes with a `Content-Length`, or, with no size, chunked (the body may
    /// then end anywhere). Stalls (no bytes taken for the low-speed timeout, or no answer long after the last
    /// byte) and dropped connections are transient; a failing source is final.
    async fn stream_body(
        &self,
        method: Method,
        url: &url::Url,
        size: Option<u64>,
        body: ByteStream,
        what: &str,
        progress: Progress<'_>,
    ) -> std::result::Result<reqwest::Response, UploadFailure> {
        let counted = body.map(move |chunk| {
            if let Ok(c) = &chunk {
                progress(c.len() as u64);
            }
            chunk
        });
        // reqwest needs a 'static body but the progress callback is only borrowed: this task reads and counts,
        // and hands the chunks to the request through a small channel (4 chunks of up to 4 MiB in flight).
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
        let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
        let auth = self.auth.lock().expect("auth lock").clone();
        let mut rb = self
            .http()
            .request(method, url.clone())
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(body);
        if let Some(n) = size {
            rb = rb.header(CONTENT_LENGTH, n);
        }
        if let Some(h) = auth {
            rb = rb.header(AUTHORIZATION, h);
        }
        let stall = self.client.budget.options().low_speed_timeout;
        let commit_wait = stall.saturating_mul(10);
        let send = rb.send();
        let feed = async move {
            let mut counted = std::pin::pin!(counted);
            while let Some(chunk) = counted.next().await {
                match chunk {
                    Ok(c) => match tokio::time::timeout(stall, tx.send(Ok(c))).await {
                        Ok(Ok(())) => {}
                        // the request ended (an error, or an early answer): its outcome tells
                        Ok(Err(_)) => return Feed::Closed,
                        Err(_) => return Feed::Stalled,
                    },
                    Err(e) => {
                        // abort the request (so the registry never commits), and keep the error for the caller
                        let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                        return Feed::Source(e);
                    }
                }
            }
            Feed::Done
        };
        let mut send = std::pin::pin!(send);
        let mut feed = std::pin::pin!(feed);
        let mut fed: Option<Feed> = None;
        let mut answer_by: Option<tokio::time::Instant> = None;
        let outcome = loop {
            let no_answer = async {
                match answer_by {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = &mut send => break Ok(r),
                f = &mut feed, if fed.is_none() => {
                    if matches!(f, Feed::Stalled) {
                        break Err(format!(
                            "the upload stalled: the registry took no bytes for {} (low-speed timeout, {})",
                            retry::human(stall),
                            retry::ENV_LOW_SPEED_TIMEOUT
                        ));
                    }
                    fed = Some(f);
                    // committing a large blob can take a registry a while (a copy in object storage)
                    answer_by = Some(tokio::time::Instant::now() + commit_wait);
                }
                () = no_answer => break Err(format!(
                    "no answer within {} after the whole blob was sent",
                    retry::human(commit_wait)
                )),
            }
        };
        if let Some(Feed::Source(e)) = fed {
            return Err(UploadFailure::Final(Error::io(
                "reading the upload source of",
                what,
                e,
            )));
        }
        match outcome {
            Err(message) => Err(UploadFailure::Transient(
                Error::Transport {
                    url: url.to_string(),
                    message,
                    hint: Some("the registry or the network stalled; try again later"),
                },
                None,
            )),
            Ok(Err(e)) => {
                let err = self.transport_error(url.as_str(), e);
                Err(match &err {
                    Error::Transport { message, .. } if retry::transient_transport(message) => {
                        UploadFailure::Transient(err, None)
                    }
                    _ => UploadFailure::Final(err),
                })
            }
            Ok(Ok(resp)) => Ok(resp),
        }
    }

    /// The next page from a `Link: <URL>; rel="next"` header (tag lists, referrers), made absolute.
    fn next_page(&self, headers: &HeaderMap) -> Option<String> {
        let link = headers.get("link")?.to_str().ok()?;
        let (_, rest) = link.split_once('<')?;
        let (target, params) = rest.split_once('>')?;
        if !params.contains("next") {
            return None;
        }
        self.absolute(target).ok().map(|u| u.to_string())
    }

    fn absolute(&self, location: &str) -> Result<url::Url> {
        let base = url::Url::parse(&format!("{}://{}/", self.scheme(), self.api_host))
            .map_err(|e| Error::usage(format!("bad registry URL: {e}")))?;
        base.join(location).map_err(|e| Error::Registry {
            method: "POST".into(),
            url: self.base(),
            status: 202,
            code: None,
            message: format!("bad upload Location {location:?}: {e}"),
        })
    }

    async fn start_upload(&self, mount: Option<(&Digest, &str)>) -> Result<Option<String>> {
        let mut url = format!("{}/blobs/uploads/", self.base());
        if let Some((d, from)) = mount {
            url.push_str(&format!("?mount={d}&from={from}"));
        }
        let resp = self.send(self.req(Method::POST, url.clone())).await?;
        match resp.status() {
            StatusCode::CREATED if mount.is_some() => Ok(None),
            StatusCode::ACCEPTED => {
                let loc = resp
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| Error::Registry {
                        method: "POST".into(),
                        url: url.clone(),
                        status: 202,
                        code: None,
                        message: "no Location header on the upload session".into(),
                    })?;
                Ok(Some(loc.to_string()))
            }
            _ => Err(self.status_error(&Method::POST, &url, resp).await),
        }
    }
}

/// An upload session fed by one streamed `PATCH` before the digest is known, then closed by a `PUT ?digest=` with
/// no body (distribution spec, "chunked" upload with a single chunk): the registry hashes what it received and
/// refuses the commit unless it matches the digest we computed.
struct SessionUpload<'a> {
    store: &'a RegistryStore,
    /// Where the session continues (each answer may move it).
    location: String,
}

#[async_trait]
impl BlobUpload for SessionUpload<'_> {
    async fn send(&mut self, body: ByteStream, progress: Progress<'_>) -> Result<()> {
        let url = self.store.absolute(&self.location)?;
        let what = self.store.what(" (a blob still being hashed)");
        // chunked, so that the caller can end the body early and still get the session's new state back (which
        // distribution needs to delete the session: a stale `_state` gets 404 and the data stays)
        let resp = match self
            .store
            .stream_body(Method::PATCH, &url, None, body, &what, progress)
            .await
        {
            Ok(r) => r,
            Err(UploadFailure::Final(e) | UploadFailure::Transient(e, _)) => return Err(e),
        };
        if resp.status() != StatusCode::ACCEPTED {
            if resp.status().is_client_error() {
                // no more streamed uploads to this registry in this run (the caller uploads this blob again)
                self.store
                    .streamed_patch
                    .store(false, std::sync::atomic::Ordering::Relaxed);
            }
            return Err(self
                .store
                .status_error(&Method::PATCH, url.as_str(), resp)
                .await);
        }
        if let Some(next) = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()) {
            self.location = next.to_string();
        }
        Ok(())
    }

    async fn commit(self: Box<Self>, desc: &Descriptor) -> Result<()> {
        let mut url = self.store.absolute(&self.location)?;
        url.query_pairs_mut()
            .append_pair("digest", &desc.digest.to_string());
        let mut req = self.store.req(Method::PUT, url.to_string());
        req.headers
            .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        let resp = self.store.send(req).await?;
        if resp.status() != StatusCode::CREATED {
            return Err(self
                .store
                .status_error(&Method::PUT, url.as_str(), resp)
                .await);
        }
        self.store.remember(&desc.digest);
        Ok(())
    }

    async fn abort(self: Box<Self>) {
        // one try, no retries: an abandoned session also expires on its own
        let Ok(url) = self.store.absolute(&self.location) else {
            return;
        };
        let mut rb = self.store.http().delete(url).timeout(ABORT_TIMEOUT);
        if let Some(h) = self.store.auth.lock().expect("auth lock").clone() {
            rb = rb.header(AUTHORIZATION, h);
        }
        let _ = rb.send().await;
    }
}

/// How long aborting an upload session may take.
const ABORT_TIMEOUT: Duration = Duration::from_secs(10);

/// How a blob upload ended when it did not succeed.
enum UploadFailure {
    /// Do not try again (the source failed, or the registry refused for good).
    Final(Error),
    /// A new session may succeed, after the registry's `Retry-After` if it sent one.
    Transient(Error, Option<Duration>),
}

/// How feeding an upload's body ended.
enum Feed {
    /// All bytes handed over.
    Done,
    /// The request stopped taking bytes (it failed or was answered early).
    Closed,
    /// The registry took no bytes for the low-speed timeout.
    Stalled,
    /// Reading the source failed.
    Source(std::io::Error),
}

/// The wait a response's `Retry-After` header asks for.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?;
    retry::parse_retry_after(v, time::OffsetDateTime::now_utc())
}

fn tokio_stream_from(
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

/// Why a token realm host must not receive credentials: link-local addresses (cloud metadata services live at
/// 169.254.169.254 and fd00:ec2::254) and unspecified addresses are never token services.
fn forbidden_realm_host(host: &str) -> Option<&'static str> {
    let ip: std::net::IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    let bad = match ip {
        std::net::IpAddr::V4(v4) => v4.is_link_local() || v4.is_unspecified() || v4.is_broadcast(),
        std::net::IpAddr::V6(v6) => {
            v6.is_unspecified()
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.segments()[..4] == [0xfd00, 0xec2, 0, 0]
        }
    };
    bad.then_some("a link-local or unspecified address (a metadata service, not a token service)")
}

fn basic(user: &str, pass: &str) -> HeaderValue {
    let enc = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    let mut h =
        HeaderValue::from_str(&format!("Basic {enc}")).expect("base64 is a valid header value");
    h.set_sensitive(true);
    h
}

/// Reads a response body, refusing more than `max` bytes (checked while streaming, not just by Content-Length).
async fn read_capped(resp: reqwest::Response, max: usize, low_speed: Duration) -> Result<Bytes> {
    let url = resp.url().to_string();
    if resp.content_length().is_some_and(|l| l > max as u64) {
        return Err(Error::untrusted(
            url,
            format!("response is over the {max}-byte cap"),
        ));
    }
    let mut stream = LowSpeed::new(Box::pin(resp.bytes_stream()), url.clone(), low_speed);
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| match Error::io("reading", &url, e) {
            Error::Io { source, .. } => Error::Transport {
                url: url.clone(),
                message: source.to_string(),
                hint: None,
            },
            other => other,
        })?;
        if buf.len() + chunk.len() > max {
            return Err(Error::untrusted(
                url,
                format!("response is over the {max}-byte cap"),
            ));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

#[async_trait]
impl Store for RegistryStore {
    fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    async fn fetch_manifest(&self, r: ManifestRef<'_>) -> Result<Option<RawManifest>> {
        let key = match r {
            ManifestRef::Tag(t) => t.to_string(),
            ManifestRef::Digest(d) => d.to_string(),
        };
        let url = format!("{}/manifests/{key}", self.base());
        let mut req = self.req(Method::GET, url.clone());
        req.headers.insert(
            ACCEPT,
            HeaderValue::from_str(&media::MANIFEST_ACCEPT.join(", ")).expect("static header"),
        );
        let resp = self.send(req).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(self.status_error(&Method::GET, &url, resp).await);
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        let body = read_capped(resp, MAX_MANIFEST_BYTES, self.low_speed()).await?;
        let raw = RawManifest::new(content_type, body)?;
        if let ManifestRef::Digest(d) = r {
            raw.check_digest(&self.what(format!("@{d}")), d)?;
        }
        Ok(Some(raw))
    }

    async fn put_manifest(&self, manifest: &RawManifest, tag: Option<&str>) -> Result<()> {
        let digest = manifest.digest().to_string();
        let refs: Vec<&str> = std::iter::once(digest.as_str()).chain(tag).collect();
        // by digest first, the tag last: a failure in between never leaves a tag on missing content
        for key in refs {
            let url = format!("{}/manifests/{key}", self.base());
            let mut req = self.req(Method::PUT, url.clone());
            req.headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_str(manifest.media_type()).map_err(|_| {
                    Error::untrusted(
                        "manifest",
                        format!(
                            "media type {:?} is not a header value",
                            manifest.media_type()
                        ),
                    )
                })?,
            );
            req.body = Some(manifest.bytes().clone());
            let resp = self.send(req).await?;
            if resp.status() != StatusCode::CREATED {
                return Err(self.status_error(&Method::PUT, &url, resp).await);
            }
        }
        Ok(())
    }

    async fn blob_exists(&self, digest: &Digest) -> Result<bool> {
        let url = format!("{}/blobs/{digest}", self.base());
        let resp = self.send(self.req(Method::HEAD, url.clone())).await?;
        match resp.status() {
            s if s.is_success() => {
                self.remember(digest);
                Ok(true)
            }
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.status_error(&Method::HEAD, &url, resp).await),
        }
    }

    async fn get_blob(&self, desc: &Descriptor) -> Result<FetchedBlob> {
        let url = format!("{}/blobs/{}", self.base(), desc.digest);
        let what = self.what(format!("@{}", desc.digest));
        let resp = self.send(self.req(Method::GET, url.clone())).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(Error::NotFound { what });
        }
        if !resp.status().is_success() {
            return Err(self.status_error(&Method::GET, &url, resp).await);
        }
        if let Some(len) = resp.content_length()
            && len != desc.size
        {
            return Err(Error::SizeMismatch {
                what,
                expected: desc.size,
                actual: len,
            });
        }
        let stream = LowSpeed::new(Box::pin(resp.bytes_stream()), url.clone(), self.low_speed());
        let resuming = Resuming {
            store: self.fork(),
            url,
            size: desc.size,
            received: 0,
            inner: Box::pin(stream),
            resumes: 0,
            failed: false,
        };
        Ok(FetchedBlob::new(what, desc.clone(), resuming.into_stream()))
    }

    async fn put_blob(
        &self,
        desc: &Descriptor,
        source: BlobSource<'_>,
        progress: Progress<'_>,
    ) -> Result<()> {
        // an interrupted upload restarts in a new session from the start of the source (distribution 2.8 gives
        // no usable resume point for a monolithic PUT); the registry re-hashes on commit against our digest
        let what = || format!("uploading {}", self.what(format!("@{}", desc.digest)));
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let location = self
                .start_upload(None)
                .await?
                .expect("a plain upload session always has a Location");
            let body: ByteStream = match &source {
                BlobSource::Bytes(b) => {
                    let b = b.clone();
                    Box::pin(futures_util::stream::once(async move { Ok(b) }))
                }
                BlobSource::File(p) => super::file_stream(p).await?,
                BlobSource::Stream(open) => open().await?,
            };
            let (failure, ra) = match self.upload(&location, desc, body, progress).await {
                Ok(()) => break,
                Err(UploadFailure::Final(e)) => return Err(e),
                Err(UploadFailure::Transient(e, ra)) => (e, ra),
            };
            // the registry may have committed the blob before the connection dropped
            if self.blob_exists(&desc.digest).await.unwrap_or(false) {
                break;
            }
            match self.client.budget.next(attempts, ra) {
                Ok(wait) => tokio::time::sleep(wait).await,
                Err(why) => {
                    return Err(Error::GaveUp {
                        what: what(),
                        attempts,
                        why,
                        last: Box::new(failure),
                    });
                }
            }
        }
        self.remember(&desc.digest);
        Ok(())
    }

    async fn begin_upload(&self) -> Result<Option<Box<dyn BlobUpload + '_>>> {
        if !self
            .streamed_patch
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Ok(None);
        }
        let location = self
            .start_upload(None)
            .await?
            .expect("a plain upload session always has a Location");
        Ok(Some(Box::new(SessionUpload {
            store: self,
            location,
        })))
    }

    async fn try_mount(&self, desc: &Descriptor) -> Result<bool> {
        let Some(cache) = &self.client.locations else {
            return Ok(false);
        };
        for from in cache.repositories(&self.registry, &desc.digest, &self.repository) {
            if self.mount_blob(desc, &from).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn mount_blob(&self, desc: &Descriptor, from_repository: &str) -> Result<bool> {
        if from_repository == self.repository {
            return Ok(false);
        }
        let scope = format!("repository:{from_repository}:pull");
        {
            let mut scopes = self.extra_scopes.lock().expect("scope lock");
            if !scopes.contains(&scope) {
                scopes.push(scope);
                // the token in hand does not cover the source repository: ask again
                *self.auth.lock().expect("auth lock") = None;
            }
        }
        match self
            .start_upload(Some((&desc.digest, from_repository)))
            .await?
        {
            None => Ok(true),
            // the registry opened a normal upload session instead of mounting; leave it to expire
            Some(_) => Ok(false),
        }
    }

    async fn supports_referrers(&self) -> Result<bool> {
        if let Some(known) = *self.referrers_api.lock().expect("referrers lock") {
            return Ok(known);
        }
        // any digest will do: a registry with the API answers 200 and an (empty) index
        let probe = crate::digest::empty_json_digest();
        Ok(self.referrers(&probe, "").await?.is_some())
    }

    async fn referrers(
        &self,
        subject: &Digest,
        artifact_type: &str,
    ) -> Result<Option<Vec<Descriptor>>> {
        if *self.referrers_api.lock().expect("referrers lock") == Some(false) {
            return Ok(None);
        }
        let mut url = format!("{}/referrers/{subject}", self.base());
        if !artifact_type.is_empty() {
            // form-encoded: media types hold '+', which a server decodes as a space when sent raw
            let encoded: String =
                url::form_urlencoded::byte_serialize(artifact_type.as_bytes()).collect();
            url.push_str(&format!("?artifactType={encoded}"));
        }
        let mut list = Vec::new();
        let mut next = Some(url);
        while let Some(url) = next.take() {
            let mut req = self.req(Method::GET, url.clone());
            req.headers
                .insert(ACCEPT, HeaderValue::from_static(media::OCI_INDEX));
            let resp = self.send(req).await?;
            if resp.status() == StatusCode::NOT_FOUND
                || resp.status() == StatusCode::METHOD_NOT_ALLOWED
            {
                *self.referrers_api.lock().expect("referrers lock") = Some(false);
                return Ok(None);
            }
            if !resp.status().is_success() {
                return Err(self.status_error(&Method::GET, &url, resp).await);
            }
            next = self.next_page(resp.headers());
            let body = read_capped(resp, MAX_MANIFEST_BYTES, self.low_speed()).await?;
            let raw = RawManifest::new(media::OCI_INDEX, body)?;
            match raw.parse()? {
                crate::oci::Manifest::Index(i) => list.extend(i.manifests),
                crate::oci::Manifest::Image(_) => {
                    return Err(Error::untrusted(
                        url,
                        "the referrers API answered with a manifest, not an index",
                    ));
                }
            }
            if list.len() > super::evidence::MAX_REFERRERS {
                return Err(Error::untrusted(
                    url,
                    format!("more than {} referrers", super::evidence::MAX_REFERRERS),
                ));
            }
        }
        *self.referrers_api.lock().expect("referrers lock") = Some(true);
        // the server may ignore the filter: apply it here too
        Ok(Some(
            list.into_iter()
                .filter(|d| {
                    artifact_type.is_empty() || d.artifact_type.as_deref() == Some(artifact_type)
                })
                .collect(),
        ))
    }

    async fn delete_manifest(&self, digest: &Digest) -> Result<()> {
        // token registries grant DELETE under its own action: a 401 re-authenticates asking for it too
        let scope = format!("repository:{}:delete", self.repository);
        {
            let mut scopes = self.extra_scopes.lock().expect("scope lock");
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        let url = format!("{}/manifests/{digest}", self.base());
        let resp = self.send(self.req(Method::DELETE, url.clone())).await?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            // already gone (another gc, or the registry untagged it): nothing to do
            StatusCode::NOT_FOUND => Ok(()),
            StatusCode::METHOD_NOT_ALLOWED => Err(Error::Unsupported {
                what: format!("DELETE {url}"),
                reason: "the registry refuses to delete manifests (HTTP 405); a distribution registry needs \
                         storage.delete.enabled: true (REGISTRY_STORAGE_DELETE_ENABLED=true)"
                    .into(),
            }),
            _ => {
                let e = self.status_error(&Method::DELETE, &url, resp).await;
                match e {
                    Error::Registry { code: Some(c), .. } if c == "UNSUPPORTED" => {
                        Err(Error::Unsupported {
                            what: format!("DELETE {url}"),
                            reason: "the registry answered UNSUPPORTED; a distribution registry needs \
                                     storage.delete.enabled: true (REGISTRY_STORAGE_DELETE_ENABLED=true)"
                                .into(),
                        })
                    }
                    e => Err(e),
                }
            }
        }
    }

    async fn remove_unreachable_blobs(
        &self,
        _grace: std::time::Duration,
    ) -> Result<Option<super::Swept>> {
        // blobs are the registry's own garbage collection's business (`registry garbage-collect`)
        Ok(None)
    }

    async fn list_tags(&self) -> Result<Vec<String>> {
        let mut tags = Vec::new();
        let mut next = Some(format!("{}/tags/list?n=1000", self.base()));
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > 1000 {
                return Err(Error::untrusted(
                    self.what(""),
                    "tag list has more than 1000 pages",
                ));
            }
            let resp = self.send(self.req(Method::GET, url.clone())).await?;
            if resp.status() == StatusCode::NOT_FOUND {
                return Ok(tags);
            }
            if !resp.status().is_success() {
                return Err(self.status_error(&Method::GET, &url, resp).await);
            }
            next = self.next_page(resp.headers());
            let body = read_capped(resp, MAX_TAGS_BODY, self.low_speed()).await?;
            let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
                Error::untrusted(format!("tag list of {}", self.name()), e.to_string())
            })?;
            if let Some(list) = v.get("tags").and_then(|t| t.as_array()) {
                tags.extend(list.iter().filter_map(|t| t.as_str().map(str::to_string)));
            }
        }
        Ok(tags)
    }
}

/// Most times one download resumes after its connection broke.
const MAX_RESUMES: u32 = 3;

/// A blob download that, when the connection breaks mid-body, asks for the rest (`Range`) and goes on, at most
/// [`MAX_RESUMES`] times. Nothing is trusted here: every byte, first request or resumed, still goes through
/// [`FetchedBlob`]'s size and digest check, so a resumed range that does not fit fails as a digest mismatch.
struct Resuming {
    store: RegistryStore,
    url: String,
    size: u64,
    received: u64,
    inner: ByteStream,
    resumes: u32,
    failed: bool,
}

impl Resuming {
    fn into_stream(self) -> ByteStream {
        Box::pin(futures_util::stream::unfold(self, |mut st| async move {
            if st.failed {
                return None;
            }
            loop {
                match st.inner.next().await {
                    Some(Ok(chunk)) => {
                        st.received += chunk.len() as u64;
                        return Some((Ok(chunk), st));
                    }
                    None => return None,
                    // a broken connection resumes; a registry too slow to meet the low-speed limit (our own
                    // typed error) does not, and neither does anything past the command's retry budget
                    Some(Err(e))
                        if st.resumes < MAX_RESUMES
                            && st.received < st.size
                            && !e.get_ref().is_some_and(|x| x.is::<Error>()) =>
                    {
                        st.resumes += 1;
                        match st.store.client.budget.next(st.resumes, None) {
                            Ok(wait) => tokio::time::sleep(wait).await,
                            Err(_) => {
                                st.failed = true;
                                return Some((Err(e), st));
                            }
                        }
                        match st.store.range_get(&st.url, st.received).await {
                            Ok(rest) => st.inner = rest,
                            Err(_) => {
                                // the original break is the error worth reporting
                                st.failed = true;
                                return Some((Err(e), st));
                            }
                        }
                    }
                    Some(Err(e)) => {
                        st.failed = true;
                        return Some((Err(e), st));
                    }
                }
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(parse_challenge("Basic realm=\"x\""), Some(Challenge::Basic));
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.io/token",service="registry.io",scope="repository:a/b:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.io/token".into(),
                service: Some("registry.io".into())
            })
        );
        assert_eq!(parse_challenge("Bearer service=\"x\""), None);
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn metadata_and_link_local_realms_are_refused() {
        for bad in ["169.254.169.254", "[fe80::1]", "0.0.0.0", "[fd00:ec2::254]"] {
            assert!(forbidden_realm_host(bad).is_some(), "{bad}");
        }
        for ok in ["auth.docker.io", "127.0.0.1", "10.0.0.5", "[::1]"] {
            assert!(forbidden_realm_host(ok).is_none(), "{ok}");
        }
    }

    #[test]
    fn credentials_debug_is_redacted() {
        let c = Credentials::UserPassword {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{:?}", Credentials::IdentityToken("tok".into())).contains("tok"));
    }
}
