//! Secrets inside packages: a streaming scanner fed by the reads that pack folders and hash files.
//!
//! `push` must never publish a private key or a live token by accident. Every byte of every file it packs or
//! hashes also passes through a [`FileScanner`] (see `archive::pack_dir_tapped` and `push::hash_file`), so the
//! scan costs no second read of any file. Memory is bounded whatever the input: the prefix rules keep a window of
//! at most [`CONTEXT`] bytes between chunks, the line rules at most [`MAX_LINE`] bytes of one line (the rest of a
//! longer line is skipped, and scanning goes on at the next line).
//!
//! Rules ([`Rule`]), applied to every file, text or binary:
//! - `private-key`: a PEM header `-----BEGIN <label>-----` whose label contains `PRIVATE KEY` (PKCS#8, RSA, EC,
//!   DSA, OPENSSH, ENCRYPTED, PGP, cosign's `ENCRYPTED SIGSTORE`/`ENCRYPTED COSIGN`), followed by a line break
//!   (or a JSON `\n` escape) and a base64 body or a `Proc-Type:` header. A bare header in code (a PEM parser's
//!   string constant) is not a key and is not reported.
//! - tokens by their documented prefixes, with exact lengths and word boundaries: `aws-access-key`
//!   (`AKIA`/`ASIA` + 16 of `[A-Z0-9]`), `github-token` (`ghp_`/`gho_`/`ghu_`/`ghs_`/`ghr_` + 36 alphanumerics,
//!   `github_pat_` + 82 of `[A-Za-z0-9_]`), `gitlab-token` (`glpat-` + 20 or more), `slack-token`
//!   (`xox[abprs]-` with 10 or more after it, a digit among them), `google-api-key` (`AIza` + 35), `stripe-key`
//!   (`sk_live_`/`rk_live_` + 20 or more), `npm-token` (`npm_` + 36), `pypi-token` (`pypi-AgEIcHlwaS5vcmc` + 50
//!   or more).
//!
//! Rules applied to text files only (a NUL byte in a line ends them for that file), chosen by the file's name:
//! - `dotenv-file`: `.env` and `.env.*` (but `.env.example`, `.sample`, `.template`, `.dist`, `.defaults`, which
//!   get the entropy rule instead): every `KEY=VALUE` line with a non-empty value.
//! - `credentials-file`: `.npmrc` with `_authToken`/`_auth`/`_password` (not a `${VAR}` reference), `.pypirc`
//!   with a `password`, `.netrc`/`_netrc` with a `password`, `.aws/credentials` with a secret key or session
//!   token, `.docker/config.json` with an `auth` or `identitytoken`, and, when not empty, `.git-credentials`,
//!   `.pgpass` and SSH private keys by name (`id_rsa`, `id_dsa`, `id_ecdsa`, `id_ed25519`, and `_sk` variants).
//! - `high-entropy-config`: in `*.json`, `*.yaml`, `*.yml`, `*.toml`, `*.ini`, `*.conf`, `*.cfg`,
//!   `*.properties` and `*.env` files, a value assigned to a key whose name contains `secret`, `token`,
//!   `password`, `passwd`, `pwd`, `apikey`, `accesskey`, `privatekey`, `credential` or `authkey` (ignoring case,
//!   `-`, `_` and `.`), at least [`MIN_ENTROPY_LEN`] bytes long, without whitespace, not a reference (`${X}`,
//!   `{{ x }}`, `$X`, `%(x)s`, `<x>`) nor a URL or path, whose Shannon entropy reaches [`entropy_threshold`].
//!
//! A finding names the file (its path inside the artifact), the line (1-based; for binary files the count of
//! `\n` bytes before the match, plus one) and the rule, and shows at most a redacted prefix: the well-known
//! token prefix, a key's name, or a PEM label, never the secret itself.

use std::fmt;
use std::sync::{Condvar, Mutex, OnceLock};

use aho_corasick::{AhoCorasick, MatchKind};
use serde::Serialize;

/// Version of the rule set; a digest-cache entry marked clean under another version is scanned again.
pub const RULES_VERSION: u32 = 1;
/// Longest line kept for the line rules; the rest of a longer line is skipped.
pub const MAX_LINE: usize = 64 << 10;
/// Bytes kept from one chunk to the next for the prefix rules (longer than any token and its context).
pub const CONTEXT: usize = 256;
/// Findings kept per file; further ones are only counted.
pub const MAX_FINDINGS_PER_FILE: usize = 20;
/// Shortest value the high-entropy rule considers.
pub const MIN_ENTROPY_LEN: usize = 20;

/// A rule of the scanner, by its stable id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// A PEM private key block.
    PrivateKey,
    /// An AWS access key id (`AKIA...`, `ASIA...`).
    AwsAccessKey,
    /// A GitHub token (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`).
    GithubToken,
    /// A GitLab personal access token (`glpat-`).
    GitlabToken,
    /// A Slack token (`xoxa-`, `xoxb-`, `xoxp-`, `xoxr-`, `xoxs-`).
    SlackToken,
    /// A Google API key (`AIza`).
    GoogleApiKey,
    /// A Stripe live secret or restricted key (`sk_live_`, `rk_live_`).
    StripeKey,
    /// An npm access token (`npm_`).
    NpmToken,
    /// A PyPI upload token (`pypi-AgEIcHlwaS5vcmc`).
    PypiToken,
    /// A `.env` file holding an assignment.
    DotenvFile,
    /// A credential file known by its name (`.npmrc`, `.pypirc`, `.netrc`, `.aws/credentials`, `id_rsa`, ...).
    CredentialsFile,
    /// A high-entropy value under a secret-like key in a configuration file.
    HighEntropyConfig,
}

impl Rule {
    /// Every rule.
    pub const ALL: [Rule; 12] = [
        Rule::PrivateKey,
        Rule::AwsAccessKey,
        Rule::GithubToken,
        Rule::GitlabToken,
        Rule::SlackToken,
        Rule::GoogleApiKey,
        Rule::StripeKey,
        Rule::NpmToken,
        Rule::PypiToken,
        Rule::DotenvFile,
        Rule::CredentialsFile,
        Rule::HighEntropyConfig,
    ];

    /// The rule's id, as shown in findings and accepted by `--allow-secret PATH:RULE`.
    pub fn id(self) -> &'static str {
        match self {
            Rule::PrivateKey => "private-key",
            Rule::AwsAccessKey => "aws-access-key",
            Rule::GithubToken => "github-token",
            Rule::GitlabToken => "gitlab-token",
            Rule::SlackToken => "slack-token",
            Rule::GoogleApiKey => "google-api-key",
            Rule::StripeKey => "stripe-key",
            Rule::NpmToken => "npm-token",
            Rule::PypiToken => "pypi-token",
            Rule::DotenvFile => "dotenv-file",
            Rule::CredentialsFile => "credentials-file",
            Rule::HighEntropyConfig => "high-entropy-config",
        }
    }

    /// The rule with this id.
    pub fn from_id(id: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.id() == id)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

/// One possible secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The file's path inside the artifact (`site/.env`, or the title of a file layer).
    pub path: String,
    /// 1-based line number.
    pub line: u64,
    /// The rule that matched.
    pub rule: Rule,
    /// What matched, redacted: a token prefix, a key name or a PEM label, never the secret.
    pub shown: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {} ({})",
            self.path, self.line, self.rule, self.shown
        )
    }
}

/// What a scan of one file found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileFindings {
    /// The first [`MAX_FINDINGS_PER_FILE`] findings, in file order (prefix rules and line rules interleaved).
    pub findings: Vec<Finding>,
    /// Findings beyond those, counted only.
    pub more: u64,
}

// ---------------------------------------------------------------------------------------------------------------
// Allowing findings

/// One `--allow-secret` entry: `PATH`, `PATH:LINE` or `PATH:RULE`; a `PATH` ending in `/` covers every file
/// below that folder of the artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allow {
    /// Path inside the artifact (exact, or a folder prefix when it ends with `/`).
    pub path: String,
    /// Only this line.
    pub line: Option<u64>,
    /// Only this rule.
    pub rule: Option<Rule>,
}

impl Allow {
    /// Parses `PATH`, `PATH:LINE` or `PATH:RULE`. A suffix after the last `:` that is neither a number nor a
    /// rule id is part of the path (paths may contain `:`).
    pub fn parse(s: &str) -> Result<Allow, String> {
        let s = s.strip_prefix("./").unwrap_or(s);
        if s.is_empty() {
            return Err("an empty path allows nothing".into());
        }
        if let Some((p, tail)) = s.rsplit_once(':')
            && !p.is_empty()
        {
            if !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit()) {
                let line = tail.parse::<u64>().ok().filter(|&l| l > 0).ok_or_else(|| {
                    format!("line {tail:?} is not a line number (they start at 1)")
                })?;
                return Ok(Allow {
                    path: p.to_string(),
                    line: Some(line),
                    rule: None,
                });
            }
            if let Some(rule) = Rule::from_id(tail) {
                return Ok(Allow {
                    path: p.to_string(),
                    line: None,
                    rule: Some(rule),
                });
            }
        }
        Ok(Allow {
            path: s.to_string(),
            line: None,
            rule: None,
        })
    }

    /// Whether this entry lets `f` through.
    pub fn matches(&self, f: &Finding) -> bool {
        self.matches_path(&f.path)
            && self.line.is_none_or(|l| l == f.line)
            && self.rule.is_none_or(|r| r == f.rule)
    }

    /// Whether this entry names the file at `path` inside the artifact (or a folder above it).
    pub fn matches_path(&self, path: &str) -> bool {
        if self.path.ends_with('/') {
            path.starts_with(&self.path)
        } else {
            path == self.path
        }
    }
}

impl fmt::Display for Allow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(r) = self.rule {
            write!(f, ":{r}")?;
        }
        Ok(())
    }
}

/// The digest-cache mark saying a file was scanned clean, under these rules, as this artifact path (name rules
/// depend on the path, so a renamed or hard-linked file is scanned again).
pub fn clean_mark(path: &str) -> String {
    use sha2::Digest as _;
    let h = sha2::Sha256::digest(path.as_bytes());
    format!("secrets-clean-v{RULES_VERSION}-{}", hex::encode(&h[..6]))
}

// ---------------------------------------------------------------------------------------------------------------
// Prefix rules

struct Prefix {
    pat: &'static str,
    rule: Rule,
    /// Body characters allowed after the prefix.
    body: fn(u8) -> bool,
    /// Fewest body characters.
    min: usize,
    /// Most body characters (`min == max`: exact length); a longer run is not this token.
    max: usize,
}

fn upper_alnum(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit()
}
fn alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}
fn alnum_us(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}
fn alnum_dash(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}
fn alnum_us_dash(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}
fn pem_body(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'='
}

const PEM_BEGIN: &str = "-----BEGIN ";

const PREFIXES: &[Prefix] = &[
    Prefix {
        pat: PEM_BEGIN,
        rule: Rule::PrivateKey,
        body: pem_body,
        min: 0,
        max: 0,
    },
    Prefix {
        pat: "AKIA",
        rule: Rule::AwsAccessKey,
        body: upper_alnum,
        min: 16,
        max: 16,
    },
    Prefix {
        pat: "ASIA",
        rule: Rule::AwsAccessKey,
        body: upper_alnum,
        min: 16,
        max: 16,
    },
    Prefix {
        pat: "ghp_",
        rule: Rule::GithubToken,
        body: alnum,
        min: 36,
        max: 36,
    },
    Prefix {
        pat: "gho_",
        rule: Rule::GithubToken,
        body: alnum,
        min: 36,
        max: 36,
    },
    Prefix {
        pat: "ghu_",
        rule: Rule::GithubToken,
        body: alnum,
        min: 36,
        max: 36,
    },
    Prefix {
        pat: "ghs_",
        rule: Rule::GithubToken,
        body: alnum,
        min: 36,
        max: 36,
    },
    Prefix {
        pat: "ghr_",
        rule: Rule::GithubToken,
        body: alnum,
        min: 36,
        max: 36,
    },
    Prefix {
        pat: "github_pat_",
        rule: Rule::GithubToken,
        body: alnum_us,
        min: 82,
        max: 82,
    },
    Prefix {
        pat: "glpat-",
        rule: Rule::GitlabToken,
        body: alnum_us_dash,
        min: 20,
        max: 128,
    },
    Prefix {
        pat: "xoxa-",
        rule: Rule::SlackToken,
        body: alnum_dash,
        min: 10,
        max: 200,
    },
    Prefix {
        pat: "xoxb-",
        rule: Rule::SlackToken,
        body: alnum_dash,
        min: 10,
        max: 200,
    },
    Prefix {
        pat: "xoxp-",
        rule: Rule::SlackToken,
        body: alnum_dash,
        min: 10,
        max: 200,
    },
    Prefix {
        pat: "xoxr-",
        rule: Rule::SlackToken,
        body: alnum_dash,
        min: 10,
        max: 200,
    },
    Prefix {
        pat: "xoxs-",
        rule: Rule::SlackToken,
        body: alnum_dash,
        min: 10,
        max: 200,
    },
    Prefix {
        pat: "AIza",
        rule: Rule::GoogleApiKey,
        body: alnum_us_dash,
        min: 35,
        max: 35,
    },
    Prefix {
        pat: "sk_live_",
        rule: Rule::StripeKey,
        body: alnum,
        min: 20,
        max: 200,
    },
    Prefix {
        pat: "rk_live_",
        rule: Rule::StripeKey,
        body: alnum,
        min: 20,
        max: 200,
    },
    Prefix {
        pat: "npm_",
        rule: Rule::NpmToken,
        body: alnum,
        min: 36,
        max: 36,
    },
    Prefix {
        pat: "pypi-AgEIcHlwaS5vcmc",
        rule: Rule::PypiToken,
        body: alnum_us_dash,
        min: 50,
        max: 200,
    },
];

fn automaton() -> &'static AhoCorasick {
    static AC: OnceLock<AhoCorasick> = OnceLock::new();
    // leftmost-first lets the search use its SIMD prefilter (Teddy); the patterns never overlap usefully
    AC.get_or_init(|| {
        AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostFirst)
            .build(PREFIXES.iter().map(|p| p.pat))
            .expect("fixed patterns build")
    })
}

/// Checks a prefix match at `at` of `win` (`before`: the byte before `win`). Returns what to show.
fn check_prefix(p: &Prefix, win: &[u8], at: usize, before: u8) -> Option<String> {
    let prev = if at == 0 { before } else { *win.get(at - 1)? };
    let body_start = at + p.pat.len();
    if p.rule == Rule::PrivateKey {
        return check_pem(win, body_start);
    }
    // a token starts a word: "xghp_..." or "base64AKIA..." is not one
    if prev.is_ascii_alphanumeric() {
        return None;
    }
    let rest = win.get(body_start..)?;
    let run = rest
        .iter()
        .take(p.max + 1)
        .take_while(|&&b| (p.body)(b))
        .count();
    if run < p.min || run > p.max {
        return None;
    }
    // and ends one: a longer alphanumeric run is something else
    if rest.get(run).is_some_and(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    if p.rule == Rule::SlackToken && !rest[..run].iter().any(u8::is_ascii_digit) {
        return None;
    }
    Some(format!("{}… ({} chars)", p.pat, p.pat.len() + run))
}

/// After `-----BEGIN `: a label with `PRIVATE KEY`, `-----`, a line break (or `\n` escape), then a body.
fn check_pem(win: &[u8], label_start: usize) -> Option<String> {
    let rest = win.get(label_start..)?;
    let label_len = rest
        .iter()
        .take(81)
        .take_while(|&&b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ')
        .count();
    let label = std::str::from_utf8(&rest[..label_len]).ok()?;
    if label_len > 80 || !label.contains("PRIVATE KEY") {
        return None;
    }
    let mut i = label_len;
    if rest.get(i..i + 5)? != b"-----" {
        return None;
    }
    i += 5;
    // one line break: CR? LF, or the two-character escapes \r?\n as inside JSON or code strings
    let after = rest.get(i..)?;
    let skip = [&b"\r\n"[..], b"\n", b"\\r\\n", b"\\n"]
        .iter()
        .find(|nl| after.starts_with(nl))
        .map(|nl| nl.len())?;
    i += skip;
    // indentation (a YAML block scalar)
    while rest.get(i).is_some_and(|&b| b == b' ' || b == b'\t') {
        i += 1;
    }
    let body = rest.get(i..)?;
    let run = body.iter().take(16).take_while(|&&b| pem_body(b)).count();
    if run < 16 && !body.starts_with(b"Proc-Type:") {
        return None;
    }
    Some(format!("-----BEGIN {label}-----"))
}

const WINDOW: usize = 64 << 10;

/// Prefix rules over a stream: a window of the last bytes, scanned up to [`CONTEXT`] bytes before its end.
struct PrefixScan {
    win: Vec<u8>,
    /// The byte just before `win` (a newline at the start of the file).
    before: u8,
    /// Newlines before `win`.
    lines_before: u64,
}

impl PrefixScan {
    fn new() -> Self {
        PrefixScan {
            win: Vec::with_capacity(16 << 10),
            before: b'\n',
            lines_before: 0,
        }
    }

    fn update(&mut self, data: &[u8], out: &mut Sink<'_>) {
        let mut data = data;
        while !data.is_empty() {
            // a bounded window: at most 64 KiB at a time (after a scan it holds CONTEXT bytes)
            let take = data.len().min(WINDOW - self.win.len());
            self.win.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.win.len() >= 4 * CONTEXT {
                self.scan(self.win.len() - CONTEXT, out);
            }
        }
    }

    fn finish(&mut self, out: &mut Sink<'_>) {
        self.scan(self.win.len(), out);
    }

    /// Reports matches starting before `limit`, then drops the bytes before it.
    fn scan(&mut self, limit: usize, out: &mut Sink<'_>) {
        let win = &self.win[..];
        let mut counted = 0usize;
        let mut lines = self.lines_before;
        for m in automaton().find_iter(win) {
            if m.start() >= limit {
                break;
            }
            let p = &PREFIXES[m.pattern().as_usize()];
            if let Some(shown) = check_prefix(p, win, m.start(), self.before) {
                lines += count_newlines(&win[counted..m.start()]);
                counted = m.start();
                out.push(lines + 1, p.rule, shown);
            }
        }
        self.lines_before = lines + count_newlines(&win[counted..limit]);
        if limit > 0 {
            self.before = self.win[limit - 1];
        }
        self.win.drain(..limit);
    }
}

fn count_newlines(b: &[u8]) -> u64 {
    b.iter().filter(|&&c| c == b'\n').count() as u64
}

// ---------------------------------------------------------------------------------------------------------------
// File classes and line rules

/// Credential files known by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cred {
    Npmrc,
    Pypirc,
    Netrc,
    AwsCredentials,
    DockerConfig,
    /// Any non-empty line is a credential (`.git-credentials`, `.pgpass`, SSH private keys).
    Whole,
}

const CONFIG_EXTS: [&str; 9] = [
    "json",
    "yaml",
    "yml",
    "toml",
    "ini",
    "conf",
    "cfg",
    "properties",
    "env",
];

const DOTENV_EXAMPLES: [&str; 5] = ["example", "sample", "template", "dist", "defaults"];

#[derive(Debug, Clone, Copy, Default)]
struct Class {
    dotenv: bool,
    cred: Option<Cred>,
    config: bool,
}

impl Class {
    fn of(path: &str) -> Class {
        let mut parts = path.rsplit('/');
        let base = parts.next().unwrap_or_default();
        let parent = parts.next().unwrap_or_default();
        let lower = base.to_ascii_lowercase();
        let mut c = Class::default();
        if lower == ".env" {
            c.dotenv = true;
        } else if let Some(rest) = lower.strip_prefix(".env.") {
            if DOTENV_EXAMPLES.contains(&rest) {
                c.config = true;
            } else {
                c.dotenv = true;
            }
        }
        c.cred = match (parent, base) {
            (_, ".npmrc") => Some(Cred::Npmrc),
            (_, ".pypirc") => Some(Cred::Pypirc),
            (_, ".netrc" | "_netrc") => Some(Cred::Netrc),
            (".aws", "credentials") => Some(Cred::AwsCredentials),
            (".docker", "config.json") => Some(Cred::DockerConfig),
            (
                _,
                ".git-credentials" | ".pgpass" | "id_rsa" | "id_dsa" | "id_ecdsa" | "id_ed25519"
                | "id_ecdsa_sk" | "id_ed25519_sk",
            ) => Some(Cred::Whole),
            _ => None,
        };
        if let Some((stem, ext)) = lower.rsplit_once('.')
            && !stem.is_empty()
            && CONFIG_EXTS.contains(&ext)
        {
            c.config = true;
        }
        c
    }

    fn needs_lines(self) -> bool {
        self.dotenv || self.cred.is_some() || self.config
    }
}

/// Line rules over a stream: the current line (at most [`MAX_LINE`] bytes of it) and its number.
struct LineScan {
    class: Class,
    buf: Vec<u8>,
    line: u64,
    binary: bool,
    /// A `Cred::Whole` file was reported already.
    whole_done: bool,
}

impl LineScan {
    fn update(&mut self, mut data: &[u8], out: &mut Sink<'_>) {
        while !data.is_empty() && !self.binary {
            match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.append(&data[..i]);
                    self.end_line(out);
                    data = &data[i + 1..];
                }
                None => {
                    self.append(data);
                    data = &[];
                }
            }
        }
    }

    fn append(&mut self, part: &[u8]) {
        let room = MAX_LINE.saturating_sub(self.buf.len());
        self.buf.extend_from_slice(&part[..part.len().min(room)]);
    }

    fn end_line(&mut self, out: &mut Sink<'_>) {
        self.line += 1;
        let mut buf = std::mem::take(&mut self.buf);
        if buf.contains(&0) {
            self.binary = true;
        } else {
            let text = String::from_utf8_lossy(&buf);
            let text = text.strip_suffix('\r').unwrap_or(&text);
            self.check(text, out);
        }
        buf.clear();
        self.buf = buf;
    }

    fn finish(&mut self, out: &mut Sink<'_>) {
        if !self.buf.is_empty() && !self.binary {
            self.end_line(out);
        }
    }

    fn check(&mut self, line: &str, out: &mut Sink<'_>) {
        let t = line.trim();
        if t.is_empty() {
            return;
        }
        // (`//` starts a comment in JSON5-like configs, but is the registry URL in .npmrc)
        let comment = t.starts_with('#') || t.starts_with(';');
        if self.class.dotenv && !comment {
            let body = t.strip_prefix("export ").map_or(t, str::trim_start);
            if let Some((k, v)) = body.split_once('=') {
                let k = k.trim();
                if is_env_key(k) && !plain_value(v).is_empty() {
                    out.push(self.line, Rule::DotenvFile, format!("{k}=…"));
                }
            }
        }
        if let Some(cred) = self.class.cred
            && !comment
            && let Some(shown) = self.cred_line(cred, t)
        {
            out.push(self.line, Rule::CredentialsFile, shown);
        }
        // (most lines name no secret-like key: one case-insensitive search skips them)
        if self.class.config && !comment && !t.starts_with("//") && key_words().is_match(t) {
            for (k, v) in pairs(t) {
                if v.len() >= MIN_ENTROPY_LEN
                    && secret_key(&k)
                    && let Some(h) = high_entropy(&v)
                {
                    out.push(
                        self.line,
                        Rule::HighEntropyConfig,
                        format!("{k}: {} chars, {h:.1} bits/char", v.len()),
                    );
                }
            }
        }
    }

    fn cred_line(&mut self, cred: Cred, t: &str) -> Option<String> {
        let kv = |keys: &[&str]| -> Option<String> {
            let (k, v) = t.split_once('=').or_else(|| t.split_once(':'))?;
            let k = k.trim();
            let key_ok = keys
                .iter()
                .any(|want| k == *want || k.ends_with(&format!(":{want}")));
            let v = plain_value(v);
            (key_ok && !v.is_empty() && !is_reference(v))
                .then(|| format!("{}=…", k.rsplit(':').next().unwrap_or(k)))
        };
        match cred {
            Cred::Npmrc => kv(&["_authToken", "_auth", "_password"]),
            Cred::Pypirc => kv(&["password"]),
            Cred::AwsCredentials => kv(&["aws_secret_access_key", "aws_session_token"]),
            Cred::Netrc => {
                let mut words = t.split_whitespace();
                while let Some(w) = words.next() {
                    if w == "password" && words.next().is_some() {
                        return Some("password …".into());
                    }
                }
                None
            }
            Cred::DockerConfig => pairs(t)
                .into_iter()
                .find(|(k, v)| (k == "auth" || k == "identitytoken") && !v.is_empty())
                .map(|(k, _)| format!("\"{k}\": …")),
            Cred::Whole => {
                if self.whole_done {
                    return None;
                }
                self.whole_done = true;
                Some("a credential file".into())
            }
        }
    }
}

fn is_env_key(k: &str) -> bool {
    let mut b = k.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-')
}

/// A value as written after `=` or `:`: quotes removed, or, unquoted, without a trailing comment or comma.
fn plain_value(v: &str) -> &str {
    let v = v.trim();
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q) {
            return inner.split(q).next().unwrap_or_default();
        }
    }
    let v = match v.find(" #").or_else(|| v.find(" ;")) {
        Some(i) => &v[..i],
        None => v,
    };
    v.trim().trim_end_matches(',').trim()
}

/// `${X}`, `$X`, `{{ x }}`, `%(x)s`, `<x>`: a value filled in elsewhere, not a secret.
fn is_reference(v: &str) -> bool {
    v.starts_with('$')
        || v.contains("${")
        || v.contains("{{")
        || v.contains("%(")
        || (v.starts_with('<') && v.ends_with('>'))
}

/// Key/value pairs of one configuration line: JSON-style `"k": "v"` pairs anywhere in the line, else one
/// `k = v` / `k: v` assignment (YAML, TOML, INI, properties, dotenv).
fn pairs(line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let strings = quoted_strings(line);
    for w in strings.windows(2) {
        let (ks, ke, k) = &w[0];
        let (vs, _, v) = &w[1];
        let between = &line[*ke..*vs];
        if between.trim() == ":" && *ks < *ke {
            out.push((k.clone(), v.clone()));
        }
    }
    if !out.is_empty() {
        return out;
    }
    let t = line.trim_start_matches("- ").trim();
    let t = t.strip_prefix("export ").unwrap_or(t);
    let cut = t.find(['=', ':']);
    if let Some(i) = cut {
        let k = t[..i].trim().trim_matches(['"', '\'']);
        let v = plain_value(&t[i + 1..]);
        if !k.is_empty() && !v.is_empty() {
            out.push((k.to_string(), v.to_string()));
        }
    }
    out
}

/// `"..."` strings of a line, with their byte span (quote to quote, inclusive start, exclusive end).
fn quoted_strings(line: &str) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'"' {
            let start = i;
            let mut s = String::new();
            i += 1;
            let mut closed = false;
            while i < b.len() {
                match b[i] {
                    b'\\' if i + 1 < b.len() => {
                        s.push(b[i + 1] as char);
                        i += 2;
                    }
                    b'"' => {
                        closed = true;
                        i += 1;
                        break;
                    }
                    _ => {
                        let ch = line[i..].chars().next().unwrap_or('?');
                        s.push(ch);
                        i += ch.len_utf8();
                    }
                }
            }
            if closed {
                out.push((start, i, s));
            }
            if out.len() > 1000 {
                break;
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Finds any of the words [`secret_key`] looks for, in any case, with or without `_`, `-` or `.` inside.
fn key_words() -> &'static AhoCorasick {
    static AC: OnceLock<AhoCorasick> = OnceLock::new();
    AC.get_or_init(|| {
        let mut words = Vec::new();
        for w in [
            "secret",
            "token",
            "passw",
            "pwd",
            "api?key",
            "access?key",
            "private?key",
            "credential",
            "auth?key",
        ] {
            for sep in ["", "_", "-", "."] {
                words.push(w.replace('?', sep));
            }
        }
        AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostFirst)
            .build(words)
            .expect("fixed patterns build")
    })
}

/// Whether a key names a secret (ignoring case, `-`, `_`, `.`), and not merely something about one.
fn secret_key(k: &str) -> bool {
    let n: String = k
        .chars()
        .filter(|c| !matches!(c, '-' | '_' | '.' | ' '))
        .flat_map(char::to_lowercase)
        .collect();
    const NAMES: [&str; 10] = [
        "secret",
        "token",
        "password",
        "passwd",
        "pwd",
        "apikey",
        "accesskey",
        "privatekey",
        "credential",
        "authkey",
    ];
    const ABOUT: [&str; 12] = [
        "url", "uri", "endpoint", "file", "path", "dir", "name", "type", "length", "policy", "ref",
        "env",
    ];
    NAMES.iter().any(|w| n.contains(w)) && !ABOUT.iter().any(|a| n.ends_with(a))
}

/// Shannon entropy, in bits per byte.
pub fn shannon_entropy(s: &[u8]) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in s {
        counts[b as usize] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// The entropy a value of `len` bytes must reach to be reported: 3.0 bits for hexadecimal values, else
/// `min(4.0, log2(len) - 0.7)`. Measured on 5,000 random strings per length: this catches 99% of random base62 or
/// base64 values of 20 characters (whose median entropy is only 4.02, the maximum being log2(20) = 4.32) and all
/// longer ones, 95% of random hex values of 20 characters, while English-like values stay below it
/// (`correcthorsebatterystaple` 3.36, `my_super_secret_password_123` 3.82).
pub fn entropy_threshold(len: usize, hex: bool) -> f64 {
    if hex {
        3.0
    } else {
        ((len as f64).log2() - 0.7).min(4.0)
    }
}

/// The entropy of `v` if it looks like a generated secret.
fn high_entropy(v: &str) -> Option<f64> {
    if v.len() < MIN_ENTROPY_LEN
        || v.len() > 4096
        || v.chars().any(char::is_whitespace)
        || is_reference(v)
        || v.contains("://")
        || v.starts_with('/')
        || v.starts_with("./")
    {
        return None;
    }
    let hex = v.bytes().all(|b| b.is_ascii_hexdigit());
    let h = shannon_entropy(v.as_bytes());
    (h >= entropy_threshold(v.len(), hex)).then_some(h)
}

// ---------------------------------------------------------------------------------------------------------------
// The scanner

/// Collects findings of one file, keeping the first [`MAX_FINDINGS_PER_FILE`].
struct Sink<'a> {
    path: &'a str,
    found: &'a mut FileFindings,
}

impl Sink<'_> {
    fn push(&mut self, line: u64, rule: Rule, shown: String) {
        if self.found.findings.len() < MAX_FINDINGS_PER_FILE {
            self.found.findings.push(Finding {
                path: self.path.to_string(),
                line,
                rule,
                shown,
            });
        } else {
            self.found.more += 1;
        }
    }
}

/// Scans one file, fed in chunks of any size, in order.
pub struct FileScanner {
    path: String,
    prefix: PrefixScan,
    lines: Option<LineScan>,
    found: FileFindings,
    /// Bytes fed so far.
    fed: u64,
}

/// Whether only the prefix rules apply to a file of this name (no line rules, which decide at the end of each
/// line): then [`FileScanner::clean_before`] follows the scan closely, and push may send the file while the
/// scanner is still reading it.
pub fn prefix_rules_only(path: &str) -> bool {
    !Class::of(path).needs_lines()
}

impl FileScanner {
    /// A scanner for the file at `path` inside the artifact (its name chooses the line rules).
    pub fn new(path: &str) -> Self {
        let class = Class::of(path);
        FileScanner {
            path: path.to_string(),
            prefix: PrefixScan::new(),
            lines: class.needs_lines().then(|| LineScan {
                class,
                buf: Vec::new(),
                line: 0,
                binary: false,
                whole_done: false,
            }),
            found: FileFindings::default(),
            fed: 0,
        }
    }

    /// How far the file is known to hold no secret: no byte before this offset is part of a secret any rule that
    /// applies to this file could still report. 0 once anything was found, and always 0 for files the line rules
    /// apply to (see [`prefix_rules_only`]). The prefix rules have reported every match starting before the bytes
    /// they still hold, so the offset trails the bytes fed by less than 1 KiB.
    pub fn clean_before(&self) -> u64 {
        if self.lines.is_some() || !self.found.findings.is_empty() || self.found.more > 0 {
            return 0;
        }
        self.fed - self.prefix.win.len() as u64
    }

    /// The next bytes of the file.
    pub fn update(&mut self, data: &[u8]) {
        self.fed += data.len() as u64;
        let mut sink = Sink {
            path: &self.path,
            found: &mut self.found,
        };
        self.prefix.update(data, &mut sink);
        if let Some(l) = &mut self.lines {
            l.update(data, &mut sink);
        }
    }

    /// The end of the file: what was found, in line order.
    pub fn finish(mut self) -> FileFindings {
        let mut sink = Sink {
            path: &self.path,
            found: &mut self.found,
        };
        self.prefix.finish(&mut sink);
        if let Some(l) = &mut self.lines {
            l.finish(&mut sink);
        }
        self.found.findings.sort_by_key(|f| (f.line, f.rule));
        self.found
    }
}

/// How far an upload may read a file that the scanner is still reading: raised as the scan proves bytes clean
/// ([`FileScanner::clean_before`]), opened once the whole file passed (or its findings were allowed), closed for
/// good when a finding is refused. The upload's reading thread waits on it ([`ScanGate::wait_until`]).
#[derive(Default)]
pub struct ScanGate {
    state: Mutex<GateState>,
    moved: Condvar,
}

#[derive(Default, Clone, Copy)]
struct GateState {
    clean: u64,
    open: bool,
    closed: bool,
}

impl ScanGate {
    fn update(&self, f: impl FnOnce(&mut GateState)) {
        let mut st = self.state.lock().expect("scan gate lock");
        f(&mut st);
        drop(st);
        self.moved.notify_all();
    }

    /// The bytes before `clean` passed the scan.
    pub fn raise(&self, clean: u64) {
        self.update(|st| st.clean = st.clean.max(clean));
    }

    /// The whole file may go.
    pub fn open(&self) {
        self.update(|st| st.open = true);
    }

    /// Nothing more may go (a refused finding, or the scan failed).
    pub fn close(&self) {
        self.update(|st| st.closed = true);
    }

    /// Blocks until the bytes before `end` may be sent; an error once the gate is closed.
    pub fn wait_until(&self, end: u64) -> std::io::Result<()> {
        let mut st = self.state.lock().expect("scan gate lock");
        loop {
            if st.closed {
                return Err(std::io::Error::other(
                    "held back: the secret scan stopped this file",
                ));
            }
            if st.open || st.clean >= end {
                return Ok(());
            }
            st = self.moved.wait(st).expect("scan gate lock");
        }
    }
}

/// Scans a whole file held in memory (tests, small inputs).
pub fn scan_bytes(path: &str, data: &[u8]) -> FileFindings {
    let mut s = FileScanner::new(path);
    s.update(data);
    s.finish()
}

/// Scans every file of a folder as `pack_dir_tapped` packs it.
#[derive(Default)]
pub struct FolderScanner {
    current: Option<FileScanner>,
    /// What was found so far, file by file.
    pub found: Vec<FileFindings>,
}

impl super::archive::FileTap for FolderScanner {
    fn start(&mut self, name: &str) {
        self.current = Some(FileScanner::new(name));
    }
    fn data(&mut self, bytes: &[u8]) {
        if let Some(s) = &mut self.current {
            s.update(bytes);
        }
    }
    fn end(&mut self) {
        if let Some(s) = self.current.take() {
            let f = s.finish();
            if !f.findings.is_empty() {
                self.found.push(f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What push's streamed upload relies on: the offset the scanner calls clean never reaches a secret's first
    /// byte, whatever the chunking, and otherwise follows the bytes fed closely.
    #[test]
    fn clean_before_never_passes_a_secret() {
        let token = format!("ghp_{}", "a1B2c3D4e5F6".repeat(3));
        let len = 300_000usize;
        for at in [
            0usize, 1, 255, 256, 1023, 1024, 5000, 65_535, 65_536, 200_000,
        ] {
            let mut data = vec![b' '; len];
            data[at..at + token.len()].copy_from_slice(token.as_bytes());
            for chunk in [1usize, 7, 256, 1000, 4096, 65_536, 1 << 20] {
                let mut s = FileScanner::new("model/blob.bin");
                for c in data.chunks(chunk) {
                    s.update(c);
                    assert!(
                        s.clean_before() <= at as u64,
                        "token at {at}, chunks of {chunk}: clean before {}",
                        s.clean_before()
                    );
                }
                assert_eq!(
                    s.finish().findings.len(),
                    1,
                    "token at {at}, chunks of {chunk}"
                );
            }
        }
        // clean data: the offset trails the bytes fed by less than 1 KiB
        let mut s = FileScanner::new("model/blob.bin");
        for c in vec![b'a'; len].chunks(4096) {
            s.update(c);
        }
        assert!(s.clean_before() + 1024 > len as u64, "{}", s.clean_before());
        // line rules decide at line ends: nothing is called clean early
        let mut s = FileScanner::new("site/app.json");
        s.update(&vec![b'a'; len]);
        assert_eq!(s.clean_before(), 0);
        assert!(!prefix_rules_only("site/app.json") && !prefix_rules_only(".env"));
        assert!(prefix_rules_only("model/blob.bin"));
    }

    #[test]
    fn scan_gate_holds_until_raised_opened_or_closed() {
        let gate = std::sync::Arc::new(ScanGate::default());
        gate.raise(100);
        assert!(gate.wait_until(100).is_ok());
        let g = gate.clone();
        let waiter = std::thread::spawn(move || g.wait_until(1000));
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !waiter.is_finished(),
            "passed the gate before it was raised"
        );
        gate.raise(1000);
        assert!(waiter.join().unwrap().is_ok());
        let g = gate.clone();
        let waiter = std::thread::spawn(move || g.wait_until(5000));
        gate.close();
        assert!(waiter.join().unwrap().is_err());
        let open = ScanGate::default();
        open.open();
        assert!(open.wait_until(u64::MAX).is_ok());
    }

    fn rules(path: &str, data: &[u8]) -> Vec<(u64, Rule)> {
        scan_bytes(path, data)
            .findings
            .iter()
            .map(|f| (f.line, f.rule))
            .collect()
    }

    /// The same result whatever the chunking (1 byte, 7 bytes, 4 KiB, whole).
    fn chunked(path: &str, data: &[u8]) -> Vec<(u64, Rule)> {
        let whole = rules(path, data);
        for size in [1, 7, 4096] {
            let mut s = FileScanner::new(path);
            for c in data.chunks(size) {
                s.update(c);
            }
            let got: Vec<_> = s
                .finish()
                .findings
                .iter()
                .map(|f| (f.line, f.rule))
                .collect();
            assert_eq!(got, whole, "chunks of {size}");
        }
        whole
    }

    const KEY_BODY: &str = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7";

    #[test]
    fn private_keys() {
        for label in [
            "PRIVATE KEY",
            "RSA PRIVATE KEY",
            "EC PRIVATE KEY",
            "DSA PRIVATE KEY",
            "OPENSSH PRIVATE KEY",
            "ENCRYPTED PRIVATE KEY",
            "ENCRYPTED SIGSTORE PRIVATE KEY",
            "ENCRYPTED COSIGN PRIVATE KEY",
        ] {
            let text = format!("x\n-----BEGIN {label}-----\n{KEY_BODY}\n-----END {label}-----\n");
            assert_eq!(
                chunked("k.pem", text.as_bytes()),
                [(2, Rule::PrivateKey)],
                "{label}"
            );
        }
        // inside JSON (a cloud service-account file), with the \n escape
        let json = format!(
            "{{\n  \"private_key\": \"-----BEGIN PRIVATE KEY-----\\n{KEY_BODY}\\n-----END PRIVATE KEY-----\\n\"\n}}\n"
        );
        assert_eq!(chunked("sa.txt", json.as_bytes()), [(2, Rule::PrivateKey)]);
        // CRLF, indented (YAML block), legacy encrypted
        let yaml = format!("key: |\r\n  -----BEGIN RSA PRIVATE KEY-----\r\n  {KEY_BODY}\r\n");
        assert_eq!(chunked("k.txt", yaml.as_bytes()), [(2, Rule::PrivateKey)]);
        let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n";
        assert_eq!(chunked("k", legacy.as_bytes()), [(1, Rule::PrivateKey)]);
        // the demo key (cosign's encrypted format, made by `sealpack keygen`) is found
        let cosign = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/keys.example/release.key"
        ))
        .unwrap();
        assert_eq!(chunked("release.key", &cosign), [(1, Rule::PrivateKey)]);
        // not keys: public keys, certificates, a PEM parser's constants, a header without a body
        for text in [
            format!("-----BEGIN PUBLIC KEY-----\n{KEY_BODY}\n"),
            format!("-----BEGIN CERTIFICATE-----\n{KEY_BODY}\n"),
            "const H = \"-----BEGIN PRIVATE KEY-----\";\nif (s.startsWith(H)) {}\n".to_string(),
            "var h = \"-----BEGIN RSA PRIVATE KEY-----\\n\" + body;\n".to_string(),
            "-----BEGIN PRIVATE KEY-----".to_string(),
        ] {
            assert_eq!(chunked("a.js", text.as_bytes()), [], "{text}");
        }
        // the label is shown, never the body
        let f = scan_bytes(
            "k",
            format!("-----BEGIN EC PRIVATE KEY-----\n{KEY_BODY}\n").as_bytes(),
        );
        assert_eq!(f.findings[0].shown, "-----BEGIN EC PRIVATE KEY-----");
    }

    #[test]
    fn aws_access_keys() {
        // AWS's documented example key id
        let t = b"[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n";
        assert_eq!(chunked("notes.txt", t), [(2, Rule::AwsAccessKey)]);
        assert_eq!(
            chunked("x", b"k=\"ASIAY34FZKBOKMUTVV7A\""),
            [(1, Rule::AwsAccessKey)]
        );
        // too short, too long, lower case, inside a longer word
        for t in [
            &b"AKIAIOSFODNN7EXAMPL "[..],
            b"AKIAIOSFODNN7EXAMPLE1",
            b"AKIAiosfodnn7example",
            b"XAKIAIOSFODNN7EXAMPLE",
        ] {
            assert_eq!(chunked("x", t), [], "{}", String::from_utf8_lossy(t));
        }
        let f = scan_bytes("x", b"AKIAIOSFODNN7EXAMPLE");
        assert_eq!(f.findings[0].shown, "AKIA… (20 chars)");
        assert!(!f.findings[0].to_string().contains("IOSFODNN"));
    }

    #[test]
    fn github_tokens() {
        let body = "a".repeat(30) + "B1c2D3";
        for p in ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"] {
            let t = format!("token: {p}{body}\n");
            assert_eq!(
                chunked("x.md", t.as_bytes()),
                [(1, Rule::GithubToken)],
                "{p}"
            );
            let short = format!("{p}{}\n", &body[1..]);
            assert_eq!(chunked("x.md", short.as_bytes()), [], "{p} short");
        }
        let pat = format!("github_pat_11ABCDEFG0{}_{}", "x".repeat(12), "Y".repeat(59));
        assert_eq!(pat.len(), 11 + 82);
        assert_eq!(chunked("x", pat.as_bytes()), [(1, Rule::GithubToken)]);
    }

    #[test]
    fn other_tokens() {
        let cases: [(String, Rule); 8] = [
            (format!("glpat-{}", "Ab1_-".repeat(4)), Rule::GitlabToken),
            (
                "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx".into(),
                Rule::SlackToken,
            ),
            (
                format!("AIza{}", "SyA1b2C3d4E5f6G7h8I9j0K_L-M1n2O3p4Q"),
                Rule::GoogleApiKey,
            ),
            (
                format!("sk_live_{}", "4eC39HqLyjWDarjtT1zdp7dc"),
                Rule::StripeKey,
            ),
            (
                format!("rk_live_{}", "4eC39HqLyjWDarjtT1zdp7dc"),
                Rule::StripeKey,
            ),
            (format!("npm_{}", "aB3".repeat(12)), Rule::NpmToken),
            (
                format!("pypi-AgEIcHlwaS5vcmc{}", "CJDU2NzY1ZjRmLTk".repeat(4)),
                Rule::PypiToken,
            ),
            (
                "xoxp-2222222222-3333333333-4444444444-abcdef".into(),
                Rule::SlackToken,
            ),
        ];
        for (t, rule) in cases {
            let text = format!("const k = '{t}';\n");
            assert_eq!(chunked("app.js", text.as_bytes()), [(1, rule)], "{t}");
        }
        // near misses: test keys, a Slack-like word without digits, npm_ in a name
        for t in [
            "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
            "xoxb-notatokenatall",
            "npm_config_registry",
            "glpat-short",
            "AIzaShort",
        ] {
            assert_eq!(chunked("app.js", t.as_bytes()), [], "{t}");
        }
    }

    #[test]
    fn dotenv_files() {
        let t = b"# settings\nexport API_TOKEN=abc123\nEMPTY=\nQUOTED=\"\"\nNAME='x' # comment\n\nnot an assignment\n";
        assert_eq!(
            chunked(".env", t),
            [(2, Rule::DotenvFile), (5, Rule::DotenvFile)]
        );
        assert_eq!(chunked("app/.env.production", t).len(), 2);
        // examples get the entropy rule only; other names are not dotenv files
        assert_eq!(chunked("app/.env.example", t), []);
        assert_eq!(chunked("env.txt", t), []);
        let f = scan_bytes(".env", t);
        assert_eq!(f.findings[0].shown, "API_TOKEN=…");
        assert!(!f.findings[0].to_string().contains("abc123"));
    }

    #[test]
    fn credential_files() {
        let cases: [(&str, &[u8], Vec<u64>); 12] = [
            (
                "a/.npmrc",
                b"registry=https://r\n//registry.npmjs.org/:_authToken=npmsecretvalue\n",
                vec![2],
            ),
            (
                ".npmrc",
                b"//registry.npmjs.org/:_authToken=${NPM_TOKEN}\n",
                vec![],
            ),
            (
                ".pypirc",
                b"[pypi]\nusername = __token__\npassword = pypi-secret\n",
                vec![3],
            ),
            (".pypirc", b"[pypi]\nusername = me\n", vec![]),
            (".netrc", b"machine h login me password hunter2\n", vec![1]),
            ("home/.aws/credentials", b"[default]\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n", vec![2]),
            ("credentials", b"aws_secret_access_key = x\n", vec![]),
            (
                ".docker/config.json",
                b"{\n  \"auths\": {\n    \"r.io\": {\n      \"auth\": \"dXNlcjpwYXNz\"\n    }\n  }\n}\n",
                vec![4],
            ),
            (".git-credentials", b"\nhttps://me:pw@github.com\nhttps://x\n", vec![2]),
            (".ssh/id_ed25519", b"anything\n", vec![1]),
            ("id_rsa.pub", b"ssh-rsa AAAA me\n", vec![]),
            (".pgpass", b"", vec![]),
        ];
        for (path, data, lines) in cases {
            let got: Vec<u64> = chunked(path, data)
                .into_iter()
                .filter(|(_, r)| *r == Rule::CredentialsFile)
                .map(|(l, _)| l)
                .collect();
            assert_eq!(got, lines, "{path}");
        }
    }

    #[test]
    fn high_entropy_config_values() {
        let y = b"db:\n  host: db.internal\n  password: \"Tr0ub4dor&3xY!pQz9#Lm\"\n  password_hint: correcthorsebatterystaple\n";
        assert_eq!(chunked("config.yaml", y), [(3, Rule::HighEntropyConfig)]);
        // JSON, one line, several pairs
        let j = br#"{"name":"app","client_secret":"q8Zr2Lx0Vb7NwE4kTy6PsGh1","token_url":"https://oauth2.example.com/token"}"#;
        assert_eq!(chunked("settings.json", j), [(1, Rule::HighEntropyConfig)]);
        // hex secrets, TOML, properties, INI
        assert_eq!(
            chunked(
                "c.toml",
                b"api_key = \"9f86d081884c7d659a2feaa0c55ad015\"\n"
            ),
            [(1, Rule::HighEntropyConfig)]
        );
        assert_eq!(
            chunked("app.properties", b"jdbc.password=Zx81!kQm27#pLw09vBn5\n"),
            [(1, Rule::HighEntropyConfig)]
        );
        // not secrets: low entropy, references, sentences, URLs, paths, short, non-secret keys, other files
        for line in [
            "password: changeme-changeme-changeme",
            "password: ${DB_PASSWORD}",
            "token: \"{{ .Values.token }}\"",
            "secret: Your password must contain at least 8 characters",
            "token_endpoint: https://oauth2.googleapis.com/token",
            "secret_file: /run/secrets/db-password-file",
            "password: Xk9#mQ2",
            "checksum: q8Zr2Lx0Vb7NwE4kTy6PsGh1",
        ] {
            assert_eq!(chunked("values.yaml", line.as_bytes()), [], "{line}");
        }
        assert_eq!(
            chunked("notes.txt", b"password: q8Zr2Lx0Vb7NwE4kTy6PsGh1\n"),
            []
        );
        let f = scan_bytes("config.yaml", y);
        assert!(
            f.findings[0].shown.starts_with("password: 21 chars"),
            "{}",
            f.findings[0].shown
        );
        assert!(!f.findings[0].to_string().contains("Tr0ub"));
    }

    #[test]
    fn entropy_threshold_is_tuned() {
        assert!((shannon_entropy(b"abcd") - 2.0).abs() < 1e-9);
        assert_eq!(shannon_entropy(b"aaaa"), 0.0);
        assert!(entropy_threshold(20, false) < 3.7);
        assert_eq!(entropy_threshold(64, false), 4.0);
        assert_eq!(entropy_threshold(40, true), 3.0);
    }

    #[test]
    fn binary_files_are_not_false_positives() {
        // 4 MiB of pseudo-random bytes: no token, no key, no line rule (even under a config name)
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let data: Vec<u8> = (0..4 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert_eq!(rules("blob.bin", &data), []);
        assert_eq!(rules("data.json", &data), []);
        // but a token inside a binary is found, with its line (newlines counted)
        let mut bin = data[..100_000].to_vec();
        bin.extend_from_slice(b"\0AKIAIOSFODNN7EXAMPLE\0");
        bin.extend_from_slice(&data[100_000..200_000]);
        let lines = 1 + bin[..100_001].iter().filter(|&&b| b == b'\n').count() as u64;
        assert_eq!(chunked("app.bin", &bin), [(lines, Rule::AwsAccessKey)]);
        // a NUL ends the line rules of a config-named file
        assert_eq!(rules(".env", b"\0\nA=b\n"), []);
    }

    #[test]
    fn long_lines_are_capped_and_scanning_goes_on() {
        let mut t = vec![b'x'; 3 * MAX_LINE];
        t.extend_from_slice(b"\nTOKEN=abc\n");
        t.extend(vec![b'y'; 200_000]);
        t.extend_from_slice(b" ghp_abcdefghijklmnopqrstuvwxyz0123456789 ");
        assert_eq!(
            chunked(".env", &t),
            [(2, Rule::DotenvFile), (3, Rule::GithubToken)]
        );
    }

    #[test]
    fn findings_per_file_are_capped() {
        let t = "A=1\n".repeat(30);
        let f = scan_bytes(".env", t.as_bytes());
        assert_eq!(f.findings.len(), MAX_FINDINGS_PER_FILE);
        assert_eq!(f.more, 10);
    }

    #[test]
    fn allow_entries() {
        let f = Finding {
            path: "site/.env".into(),
            line: 3,
            rule: Rule::DotenvFile,
            shown: String::new(),
        };
        for (spec, ok) in [
            ("site/.env", true),
            ("./site/.env", true),
            ("site/.env:3", true),
            ("site/.env:4", false),
            ("site/.env:dotenv-file", true),
            ("site/.env:private-key", false),
            ("site/", true),
            ("site", false),
            ("other/.env", false),
        ] {
            assert_eq!(Allow::parse(spec).unwrap().matches(&f), ok, "{spec}");
        }
        // a path with a colon that is neither a line nor a rule
        assert_eq!(Allow::parse("a:b").unwrap().path, "a:b");
        assert!(Allow::parse("a:0").is_err());
        assert!(Allow::parse("").is_err());
        assert_eq!(Allow::parse("x:7").unwrap().to_string(), "x:7");
    }

    // -----------------------------------------------------------------------------------------------------------
    // Measurement (run with: cargo test --release --lib -- --ignored --nocapture bench_scan_cost)

    /// CPU time of this thread (user + system), from the scheduler's accounting.
    fn thread_cpu_ns() -> u64 {
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .unwrap_or_default()
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    fn xorshift(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed | 1;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    /// Median (wall ms, CPU ms) of `runs` runs of `f`.
    fn median_of(runs: usize, mut f: impl FnMut()) -> (f64, f64) {
        let mut wall = Vec::new();
        let mut cpu = Vec::new();
        for _ in 0..runs {
            let c = thread_cpu_ns();
            let t = std::time::Instant::now();
            f();
            wall.push(t.elapsed().as_secs_f64() * 1e3);
            cpu.push((thread_cpu_ns() - c) as f64 / 1e6);
        }
        wall.sort_by(f64::total_cmp);
        cpu.sort_by(f64::total_cmp);
        (wall[runs / 2], cpu[runs / 2])
    }

    /// Reads a file through the SHA-256 hasher, as push does, with or without the scanner.
    fn hash_file(path: &std::path::Path, title: &str, scan: bool) -> usize {
        use std::io::Read;
        struct Tee<'a>(std::fs::File, Option<&'a mut FileScanner>);
        impl Read for Tee<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.read(buf)?;
                if let Some(s) = &mut self.1 {
                    s.update(&buf[..n]);
                }
                Ok(n)
            }
        }
        let mut scanner = FileScanner::new(title);
        let f = std::fs::File::open(path).unwrap();
        crate::digest::hash_reader(Tee(f, scan.then_some(&mut scanner))).unwrap();
        scanner.finish().findings.len()
    }

    #[test]
    #[ignore = "measurement"]
    fn bench_scan_cost() {
        use std::io::Write;
        let runs: usize = std::env::var("RUNS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5);
        let tmp = tempfile::tempdir_in(std::env::var_os("BENCH_TMP").unwrap_or_else(|| ".".into()))
            .unwrap();
        // 10,000 files, ~33 MB: 70% markup-like text, 30% random bytes (as archive's bench_pack_levels)
        let site = tmp.path().join("site");
        let mut rnd = xorshift(42);
        let words = [
            "<div>",
            "class=\"card\"",
            "lorem",
            "ipsum",
            "</div>",
            "\n",
            "<p>",
            "dolor",
            "{",
            "}",
        ];
        for d in 0..100 {
            let sub = site.join(format!("section-{d:03}"));
            std::fs::create_dir_all(&sub).unwrap();
            for f in 0..100 {
                let n = d * 100 + f;
                let data: Vec<u8> = if n % 10 < 7 {
                    let target = 1500 + (rnd() % 2800) as usize;
                    let mut s = String::new();
                    while s.len() < target {
                        s.push_str(words[(rnd() % words.len() as u64) as usize]);
                        s.push(' ');
                    }
                    s.into_bytes()
                } else {
                    (0..3000 + rnd() % 2600).map(|_| rnd() as u8).collect()
                };
                let ext = if n % 10 < 7 { "html" } else { "bin" };
                std::fs::write(sub.join(format!("page-{f:03}.{ext}")), data).unwrap();
            }
        }
        // 1 GiB of random bytes (a binary), and 256 MiB of text under a config name (every line rule runs)
        let big = tmp.path().join("big.bin");
        let mut w = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
        let mut rnd = xorshift(7);
        for _ in 0..(1u64 << 30) / 8 {
            w.write_all(&rnd().to_le_bytes()).unwrap();
        }
        w.flush().unwrap();
        drop(w);
        let text = tmp.path().join("data.json");
        let mut w = std::io::BufWriter::new(std::fs::File::create(&text).unwrap());
        let mut n = 0u64;
        while n < 256 << 20 {
            let line = format!(
                "  \"key_{n}\": \"value {}\", \"token\": \"{:x}\",\n",
                n * 7,
                rnd() % 1000
            );
            n += line.len() as u64;
            w.write_all(line.as_bytes()).unwrap();
        }
        w.flush().unwrap();
        drop(w);

        let pack = |scan: bool| {
            let mut tap = FolderScanner::default();
            if scan {
                crate::artifact::archive::pack_dir_tapped(&site, "site", std::io::sink(), &mut tap)
                    .unwrap();
            } else {
                crate::artifact::archive::pack_dir(&site, "site", std::io::sink()).unwrap();
            }
            assert!(tap.found.is_empty());
        };
        pack(true); // warm the page cache
        for (what, scan) in [
            ("pack 10,000 files, no scan", false),
            ("pack 10,000 files, scan", true),
        ] {
            let (wall, cpu) = median_of(runs, || pack(scan));
            println!("{what:36} median {wall:8.1} ms wall {cpu:8.1} ms cpu");
        }
        for (path, title) in [(&big, "big.bin"), (&text, "data.json")] {
            hash_file(path, title, false);
            for scan in [false, true] {
                let (wall, cpu) = median_of(runs, || {
                    assert_eq!(hash_file(path, title, scan), 0);
                });
                let mb = std::fs::metadata(path).unwrap().len() as f64 / 1048576.0;
                println!(
                    "hash {title:9} {mb:5.0} MiB, scan={scan:5}   median {wall:8.1} ms wall {cpu:8.1} ms cpu  ({:.0} MiB/s)",
                    mb / (wall / 1e3)
                );
            }
        }
    }
}
