//! The policy file (SPEC §6): which keys are trusted for what, and what each repository must show before it may
//! be deployed. Pure: no store, no network, no printing. The verifier gathers and checks the evidence
//! cryptographically, fills a [`Facts`], and [`decide`] turns the facts and the [`Policy`] into a [`Decision`]
//! that lists every rule with what was expected and what was found. See `docs/POLICY.md` for the file format.
//!
//! # Scopes
//!
//! A rule's `scope` is a glob over a repository name as [`crate::Reference::repository_name`] prints it:
//! `HOST[:PORT]/REPO` for registries, `oci:PATH` for image layout folders. In a [`Glob`], `*` matches any run of
//! characters except `/`, `**` any run including `/`, `?` one character except `/`; everything else is literal
//! (`[`, `]`, `{`, `}` and `\` are reserved and rejected). The one exception is the scope `oci:*`, which matches
//! every layout whatever its path (SPEC §6). The rule for a name is the most specific matching one: the longest
//! literal prefix (the characters before the first wildcard) wins, then the fewest wildcards, then the most literal
//! characters; if two rules still tie, the first in the file wins. Two rules with the same scope are an error.
//!
//! # Counting keys
//!
//! Keys are counted by key id (hex SHA-256 of the PKIX DER), never by signature layers or key id hints: a key
//! listed twice in `[[keys]]` (even under two ids) counts once. A key counts toward a rule only if at the decision
//! time it is inside its window (`not_before <= now < not_after`) and has one of the rule's roles. The same
//! window applies to attestation signers and to revocations.
//!
//! # Attestation rules
//!
//! A required attestation is satisfied by ONE verified attestation of its predicate type that meets every one of
//! its rules (rules are never satisfied by different attestations each). When none does, the decision reports the
//! closest one (fewest unmet rules, the first on ties).
//!
//! * SLSA provenance v1 (`https://slsa.dev/provenance/v1`), read by [`crate::formats::slsa::parse`]:
//!   `builder_id` is a [`Glob`] over `runDetails.builder.id` (exact without wildcards); `source` (with or without `git+`) equals the source repository
//!   (the `git+` dependency URI without `git+` and without `@REF`); `ref` is a [`Glob`] over the source ref (so
//!   `refs/heads/*` does not match `refs/heads/a/b`; use `**` for that); `require_commit` asks for a source commit
//!   of 40 (or, for SHA-256 repositories, 64) lowercase hex digits.
//! * cosign's vulnerability scan record (`https://cosign.sigstore.dev/attestation/vuln/v1`: `{"invocation":…,
//!   "scanner":{"uri","version","db","result"},"metadata":{"scanStartedOn","scanFinishedOn"}}`): `max_age`
//!   bounds `now - predicate.metadata.scanFinishedOn` (RFC 3339; a finish time more than five minutes in the
//!   future fails); `max_severity` is a ceiling on the highest severity in `predicate.scanner.result`, which is
//!   the scanner's own report. Three shapes are read, the first one present wins: Trivy's
//!   `Results[].Vulnerabilities[].Severity` (an absent `Vulnerabilities` is none), Grype's
//!   `matches[].vulnerability.severity`, and a plain `vulnerabilities[].severity`. Severities compare
//!   case-insensitively as `none` (also `negligible`, `info`, `informational`) < `low` < `medium` (also
//!   `moderate`) < `high` < `critical`; any other value (Trivy's `UNKNOWN`, a missing field) counts as `critical`
//!   (fail closed). A result with none of these shapes fails `max_severity`.
//!
//! Provenance fields are rejected on other predicate types and scan fields on other types, so that a rule cannot
//! silently check nothing.
//!
//! # Revocation
//!
//! A revocation (a key id and a reason in [`Facts::revoked_by`]) from a policy key that is valid now, of any role,
//! denies the digest whatever else holds, in every scope, and is listed first.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use toml::Spanned;

use super::TrustedKey;
use crate::digest::Digest;
use crate::formats::{intoto, slsa};
use crate::keys::{self, KeyError, PublicKey};

/// The predicate type of cosign's vulnerability scan record.
pub const VULN_PREDICATE_TYPE: &str = "https://cosign.sigstore.dev/attestation/vuln/v1";
/// Largest policy file read, in bytes.
pub const MAX_POLICY_SIZE: u64 = 1 << 20;
/// How far in the future a scan's finish time may be (clock skew) before `max_age` fails.
const FUTURE_SKEW: time::Duration = time::Duration::minutes(5);

/// Why a policy file could not be used. Each names the file and, where known, the line.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The policy file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid policy: TOML syntax, an unknown or missing field, a bad value.
    #[error("{}{}: {message}", path.display(), line_suffix(*line))]
    Invalid {
        /// The policy file.
        path: PathBuf,
        /// The 1-based line of the offending value, when known.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// A key file named by the policy could not be loaded.
    #[error("{}{}: key {id:?}: {source}", path.display(), line_suffix(*line))]
    Key {
        /// The policy file.
        path: PathBuf,
        /// The line of the key's `path`.
        line: Option<usize>,
        /// The key's id in the policy.
        id: String,
        /// Why the key file could not be used (it names the key file).
        #[source]
        source: KeyError,
    },
}

fn line_suffix(line: Option<usize>) -> String {
    line.map(|l| format!(":{l}")).unwrap_or_default()
}

impl PolicyError {
    /// The policy file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            PolicyError::Io { path, .. }
            | PolicyError::Invalid { path, .. }
            | PolicyError::Key { path, .. } => path,
        }
    }

    /// The 1-based line the error is about, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            PolicyError::Io { .. } => None,
            PolicyError::Invalid { line, .. } | PolicyError::Key { line, .. } => *line,
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Globs

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `?`: one character except `/`.
    One,
    /// `*`: any run except `/`.
    Star,
    /// `**`: any run.
    DoubleStar,
}

/// A glob: `*` (no `/`), `**` (anything), `?` (one character, not `/`), everything else literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    tokens: Vec<Token>,
}

impl Glob {
    /// Compiles `pattern`. Rejected: an empty pattern, `***`, and the reserved characters `[ ] { } \`.
    pub fn new(pattern: &str) -> Result<Glob, String> {
        if pattern.is_empty() {
            return Err("empty glob".into());
        }
        let mut tokens = Vec::new();
        let chars: Vec<char> = pattern.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '*' => {
                    let mut n = 0;
                    while i + n < chars.len() && chars[i + n] == '*' {
                        n += 1;
                    }
                    match n {
                        1 => tokens.push(Token::Star),
                        2 => tokens.push(Token::DoubleStar),
                        _ => return Err(format!("bad glob {pattern:?}: {n} `*` in a row")),
                    }
                    i += n;
                    continue;
                }
                '?' => tokens.push(Token::One),
                c @ ('[' | ']' | '{' | '}' | '\\') => {
                    return Err(format!(
                        "bad glob {pattern:?}: {c:?} is reserved (only `*`, `**` and `?` are wildcards)"
                    ));
                }
                c if c.is_control() => {
                    return Err(format!("bad glob {pattern:?}: control character"));
                }
                c => tokens.push(Token::Literal(c)),
            }
            i += 1;
        }
        Ok(Glob {
            pattern: pattern.to_string(),
            tokens,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// True if the whole of `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        // ok[j]: the tokens so far match text[..j]
        let mut ok = vec![false; text.len() + 1];
        ok[0] = true;
        for t in &self.tokens {
            let mut next = vec![false; text.len() + 1];
            match t {
                Token::Literal(c) => {
                    for j in 0..text.len() {
                        next[j + 1] = ok[j] && text[j] == *c;
                    }
                }
                Token::One => {
                    for j in 0..text.len() {
                        next[j + 1] = ok[j] && text[j] != '/';
                    }
                }
                Token::Star => {
                    for j in 0..=text.len() {
                        next[j] = ok[j] || (j > 0 && next[j - 1] && text[j - 1] != '/');
                    }
                }
                Token::DoubleStar => {
                    for j in 0..=text.len() {
                        next[j] = ok[j] || (j > 0 && next[j - 1]);
                    }
                }
            }
            ok = next;
        }
        ok[text.len()]
    }

    /// How specific the glob is, larger is more specific: (literal prefix length, minus the wildcard count,
    /// literal character count).
    fn specificity(&self) -> (usize, isize, usize) {
        let prefix = self
            .tokens
            .iter()
            .take_while(|t| matches!(t, Token::Literal(_)))
            .count();
        let literals = self
            .tokens
            .iter()
            .filter(|t| matches!(t, Token::Literal(_)))
            .count();
        let wildcards = self.tokens.len() - literals;
        (prefix, -(wildcards as isize), literals)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

impl<'de> Deserialize<'de> for Glob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Glob::new(&s).map_err(serde::de::Error::custom)
    }
}

/// A rule's scope: a [`Glob`] over repository names, or `oci:*` for every layout.
#[derive(Debug, Clone)]
struct Scope(Glob);

impl Scope {
    fn matches(&self, name: &str) -> bool {
        if self.0.as_str() == "oci:*" {
            return name.starts_with("oci:");
        }
        self.0.matches(name)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let s = String::deserialize(d)?;
        let glob = Glob::new(&s).map_err(D::Error::custom)?;
        if !s.starts_with("oci:") {
            if !s.contains('/') {
                return Err(D::Error::custom(format!(
                    "scope {s:?} is neither HOST[:PORT]/REPO nor oci:PATH (a registry scope needs a `/`, e.g. \"{s}/*\")"
                )));
            }
            if s.chars().any(|c| c.is_ascii_uppercase()) {
                return Err(D::Error::custom(format!(
                    "scope {s:?} has upper-case letters; repository names are lower-case, so it would never match"
                )));
            }
        }
        Ok(Scope(glob))
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Values with their own syntax

/// A maximum age: a positive whole number and a unit, `d`, `h`, `m` or `s` (`7d`, `24h`, `30m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxAge(pub time::Duration);

impl MaxAge {
    /// Parses `7d`, `24h`, `30m`, `45s`.
    pub fn parse(s: &str) -> Result<MaxAge, String> {
        let bad = || {
            format!(
                "bad duration {s:?}: expected a positive whole number and d, h, m or s (\"7d\")"
            )
        };
        let unit = s.chars().last().ok_or_else(bad)?;
        let number = &s[..s.len() - unit.len_utf8()];
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: i64 = number.parse().map_err(|_| bad())?;
        let seconds = match unit {
            'd' => n.checked_mul(86_400),
            'h' => n.checked_mul(3_600),
            'm' => n.checked_mul(60),
            's' => Some(n),
            _ => None,
        }
        .filter(|&s| s > 0 && s <= 100 * 366 * 86_400)
        .ok_or_else(bad)?;
        Ok(MaxAge(time::Duration::seconds(seconds)))
    }
}

impl<'de> Deserialize<'de> for MaxAge {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        MaxAge::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Writes a duration as `1d 2h 3m 4s`, leaving out zero parts.
fn human(d: time::Duration) -> String {
    let mut s = d.whole_seconds().max(0);
    let mut parts = Vec::new();
    for (unit, len) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if s >= len {
            parts.push(format!("{}{unit}", s / len));
            s %= len;
        }
    }
    if parts.is_empty() {
        "0s".into()
    } else {
        parts.join(" ")
    }
}

/// A vulnerability severity, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// No vulnerability (also what `negligible` and `info` findings count as).
    None,
    /// Low.
    Low,
    /// Medium (also `moderate`).
    Medium,
    /// High.
    High,
    /// Critical (also what unknown severities count as).
    Critical,
}

impl Severity {
    /// The name used in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::None => "none",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Reads a scanner's severity, case-insensitively; `None` for a value it does not know.
    pub fn from_scanner(s: &str) -> Option<Severity> {
        match s.to_ascii_lowercase().as_str() {
            "none" | "negligible" | "info" | "informational" => Some(Severity::None),
            "low" => Some(Severity::Low),
            "medium" | "moderate" => Some(Severity::Medium),
            "high" => Some(Severity::High),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

/// An RFC 3339 time written as a TOML string.
#[derive(Debug, Clone, Copy)]
struct Rfc3339Time(OffsetDateTime);

impl<'de> Deserialize<'de> for Rfc3339Time {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        OffsetDateTime::parse(&s, &Rfc3339)
            .map(Rfc3339Time)
            .map_err(|e| serde::de::Error::custom(format!("bad RFC 3339 time {s:?}: {e}")))
    }
}

/// A signature threshold: at least 1.
#[derive(Debug, Clone, Copy)]
struct Threshold(u32);

impl<'de> Deserialize<'de> for Threshold {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u32::deserialize(d)?;
        if n == 0 {
            return Err(serde::de::Error::custom("threshold must be at least 1"));
        }
        Ok(Threshold(n))
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The file as written

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    version: Spanned<i64>,
    #[serde(default)]
    defaults: DefaultsToml,
    #[serde(default)]
    keys: Vec<KeyToml>,
    #[serde(default)]
    rules: Vec<RuleToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DefaultsToml {
    #[serde(default = "yes")]
    deny_unmatched: bool,
}

impl Default for DefaultsToml {
    fn default() -> Self {
        DefaultsToml {
            deny_unmatched: true,
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyToml {
    id: Spanned<String>,
    path: Spanned<String>,
    #[serde(default)]
    roles: Vec<String>,
    not_before: Option<Rfc3339Time>,
    not_after: Option<Spanned<Rfc3339Time>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignaturesToml {
    threshold: Threshold,
    roles: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleToml {
    scope: Spanned<Scope>,
    signatures: Option<SignaturesToml>,
    #[serde(default)]
    attestations: Vec<Spanned<AttestationToml>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttestationToml {
    #[serde(rename = "type")]
    predicate_type: String,
    #[serde(default)]
    signed_by: Vec<Spanned<String>>,
    builder_id: Option<Glob>,
    source: Option<String>,
    #[serde(rename = "ref")]
    ref_glob: Option<Glob>,
    #[serde(default)]
    require_commit: bool,
    max_age: Option<MaxAge>,
    max_severity: Option<Severity>,
}

// ---------------------------------------------------------------------------------------------------------------
// The loaded policy

/// A loaded, checked policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The file it was read from.
    pub path: PathBuf,
    /// `[defaults] deny_unmatched`: deny a reference no rule covers (default true).
    pub deny_unmatched: bool,
    /// The trusted keys, in file order.
    pub keys: Vec<PolicyKey>,
    /// The rules, in file order.
    pub rules: Vec<Rule>,
}

/// A trusted key from `[[keys]]`.
#[derive(Debug, Clone)]
pub struct PolicyKey {
    /// The name rules and reports use.
    pub id: String,
    /// The key file, resolved against the policy's folder.
    pub path: PathBuf,
    /// The key.
    pub key: PublicKey,
    /// Its key id (hex SHA-256 of the PKIX DER).
    pub key_id: String,
    /// Its roles.
    pub roles: Vec<String>,
    /// It does not count before this time.
    pub not_before: Option<OffsetDateTime>,
    /// It does not count from this time on.
    pub not_after: Option<OffsetDateTime>,
}

impl PolicyKey {
    /// True if `now` is inside the key's window (`not_before <= now < not_after`).
    pub fn valid_at(&self, now: OffsetDateTime) -> bool {
        self.not_before.is_none_or(|t| now >= t) && self.not_after.is_none_or(|t| now < t)
    }

    /// Why the key does not count at `now`, if it does not.
    fn window_problem(&self, now: OffsetDateTime) -> Option<String> {
        let fmt = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
        if let Some(t) = self.not_before.filter(|&t| now < t) {
            return Some(format!("{} not valid before {}", self.id, fmt(t)));
        }
        if let Some(t) = self.not_after.filter(|&t| now >= t) {
            return Some(format!("{} expired at {}", self.id, fmt(t)));
        }
        None
    }

    fn has_role(&self, roles: &[String]) -> bool {
        roles.is_empty() || self.roles.iter().any(|r| roles.contains(r))
    }
}

/// A `[[rules]]` entry.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The scope as written.
    pub scope: String,
    glob: Scope,
    /// The signature requirement, if any.
    pub signatures: Option<SignatureRule>,
    /// The required attestations.
    pub attestations: Vec<AttestationRule>,
}

impl Rule {
    /// True if the rule's scope covers `repository_name`.
    pub fn covers(&self, repository_name: &str) -> bool {
        self.glob.matches(repository_name)
    }
}

/// `signatures = { threshold = N, roles = [...] }`.
#[derive(Debug, Clone)]
pub struct SignatureRule {
    /// How many distinct valid keys with one of `roles` must have signed.
    pub threshold: u32,
    /// The roles that count.
    pub roles: Vec<String>,
}

/// A `[[rules.attestations]]` entry.
#[derive(Debug, Clone)]
pub struct AttestationRule {
    /// The predicate type (aliases such as `slsaprovenance` expanded).
    pub predicate_type: String,
    /// The roles whose keys may sign it (empty: any policy key).
    pub signed_by: Vec<String>,
    /// SLSA: `runDetails.builder.id` must match this glob (without wildcards: equal it), e.g.
    /// `https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v*`.
    pub builder_id: Option<Glob>,
    /// SLSA: the source repository must equal this (without `git+`).
    pub source: Option<String>,
    /// SLSA: the source ref must match this.
    pub ref_glob: Option<Glob>,
    /// SLSA: a source commit must be present.
    pub require_commit: bool,
    /// Scan: the scan must have finished at most this long ago.
    pub max_age: Option<time::Duration>,
    /// Scan: no finding may be more severe than this.
    pub max_severity: Option<Severity>,
}

fn line_of(source: &str, offset: usize) -> usize {
    source[..offset.min(source.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

impl Policy {
    /// Reads and checks the policy at `path`, loading every key file (relative to the policy's folder).
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        use std::io::Read;
        let io = |source| PolicyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut text = String::new();
        file.take(MAX_POLICY_SIZE + 1)
            .read_to_string(&mut text)
            .map_err(io)?;
        if text.len() as u64 > MAX_POLICY_SIZE {
            return Err(PolicyError::Invalid {
                path: path.to_path_buf(),
                line: None,
                message: format!("larger than {MAX_POLICY_SIZE} bytes"),
            });
        }
        Policy::from_toml(&text, path)
    }

    /// Checks the policy text `source`, as if read from `path` (which names it in errors and anchors key paths).
    pub fn from_toml(source: &str, path: &Path) -> Result<Policy, PolicyError> {
        let invalid =
            |span: Option<std::ops::Range<usize>>, message: String| PolicyError::Invalid {
                path: path.to_path_buf(),
                line: span.map(|s| line_of(source, s.start)),
                message,
            };
        let file: FileToml = toml::from_str(source)
            .map_err(|e| invalid(e.span(), e.message().trim().to_string()))?;
        if *file.version.get_ref() != 1 {
            return Err(invalid(
                Some(file.version.span()),
                format!(
                    "unsupported policy version {} (this sealpack reads version 1)",
                    file.version.get_ref()
                ),
            ));
        }
        let base = path.parent().unwrap_or(Path::new(""));
        let mut keys = Vec::new();
        let mut ids = HashSet::new();
        for k in file.keys {
            let id = k.id.get_ref().clone();
            if id.is_empty() {
                return Err(invalid(Some(k.id.span()), "empty key id".into()));
            }
            if !ids.insert(id.clone()) {
                return Err(invalid(
                    Some(k.id.span()),
                    format!("key id {id:?} is used twice"),
                ));
            }
            let key_path = base.join(k.path.get_ref());
            let line = Some(line_of(source, k.path.span().start));
            let key = keys::load_public_key_file(&key_path).map_err(|e| PolicyError::Key {
                path: path.to_path_buf(),
                line,
                id: id.clone(),
                source: e,
            })?;
            let not_before = k.not_before.map(|t| t.0);
            let not_after = k.not_after.as_ref().map(|t| t.get_ref().0);
            if let (Some(b), Some(a), Some(span)) = (
                not_before,
                not_after,
                k.not_after.as_ref().map(|t| t.span()),
            ) && a <= b
            {
                return Err(invalid(
                    Some(span),
                    format!("key {id:?}: not_after is not after not_before"),
                ));
            }
            keys.push(PolicyKey {
                id,
                path: key_path,
                key_id: key.key_id().to_string(),
                key,
                roles: k.roles,
                not_before,
                not_after,
            });
        }
        let known_roles: BTreeSet<&str> = keys
            .iter()
            .flat_map(|k| k.roles.iter().map(String::as_str))
            .collect();
        let check_roles = |roles: &[Spanned<String>]| -> Result<Vec<String>, PolicyError> {
            for r in roles {
                if !known_roles.contains(r.get_ref().as_str()) {
                    return Err(invalid(
                        Some(r.span()),
                        format!(
                            "no key has the role {:?} (roles: {})",
                            r.get_ref(),
                            known_roles.iter().copied().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
            }
            Ok(roles.iter().map(|r| r.get_ref().clone()).collect())
        };
        let mut rules: Vec<Rule> = Vec::new();
        for r in file.rules {
            let scope_span = r.scope.span();
            let scope = r.scope.into_inner();
            if rules.iter().any(|o| o.scope == scope.0.as_str()) {
                return Err(invalid(
                    Some(scope_span),
                    format!("two rules have the scope {:?}", scope.0.as_str()),
                ));
            }
            let signatures = match r.signatures {
                None => None,
                Some(s) => {
                    if s.roles.is_empty() {
                        return Err(invalid(
                            Some(scope_span),
                            "signatures.roles is empty".into(),
                        ));
                    }
                    Some(SignatureRule {
                        threshold: s.threshold.0,
                        roles: check_roles(&s.roles)?,
                    })
                }
            };
            let mut attestations: Vec<AttestationRule> = Vec::new();
            for a in r.attestations {
                let span = a.span();
                let a = a.into_inner();
                let predicate_type = intoto::resolve_type_alias(&a.predicate_type).to_string();
                if predicate_type.is_empty() {
                    return Err(invalid(Some(span), "empty attestation type".into()));
                }
                if attestations
                    .iter()
                    .any(|o| o.predicate_type == predicate_type)
                {
                    return Err(invalid(
                        Some(span),
                        format!(
                            "attestation type {predicate_type:?} is required twice in the scope {:?}",
                            scope.0.as_str()
                        ),
                    ));
                }
                let slsa_fields = a.builder_id.is_some()
                    || a.source.is_some()
                    || a.ref_glob.is_some()
                    || a.require_commit;
                if slsa_fields && predicate_type != slsa::PREDICATE_TYPE {
                    return Err(invalid(
                        Some(span),
                        format!(
                            "builder_id, source, ref and require_commit apply to {}, not to {predicate_type}",
                            slsa::PREDICATE_TYPE
                        ),
                    ));
                }
                if (a.max_age.is_some() || a.max_severity.is_some())
                    && predicate_type != VULN_PREDICATE_TYPE
                {
                    return Err(invalid(
                        Some(span),
                        format!(
                            "max_age and max_severity apply to {VULN_PREDICATE_TYPE}, not to {predicate_type}"
                        ),
                    ));
                }
                attestations.push(AttestationRule {
                    predicate_type,
                    signed_by: check_roles(&a.signed_by)?,
                    builder_id: a.builder_id,
                    source: a
                        .source
                        .map(|s| s.strip_prefix("git+").map(str::to_string).unwrap_or(s)),
                    ref_glob: a.ref_glob,
                    require_commit: a.require_commit,
                    max_age: a.max_age.map(|m| m.0),
                    max_severity: a.max_severity,
                });
            }
            rules.push(Rule {
                scope: scope.0.as_str().to_string(),
                glob: scope,
                signatures,
                attestations,
            });
        }
        Ok(Policy {
            path: path.to_path_buf(),
            deny_unmatched: file.defaults.deny_unmatched,
            keys,
            rules,
        })
    }

    /// The rule for `repository_name` (`HOST[:PORT]/REPO` or `oci:PATH`): the most specific matching scope (see
    /// the module documentation), or `None`.
    pub fn rule_for(&self, repository_name: &str) -> Option<&Rule> {
        let mut best: Option<&Rule> = None;
        for r in self.rules.iter().filter(|r| r.covers(repository_name)) {
            // strictly more specific replaces; a tie keeps the earlier rule
            if best.is_none_or(|b| r.glob.0.specificity() > b.glob.0.specificity()) {
                best = Some(r);
            }
        }
        best
    }

    /// The policy's keys for the verifier's cryptographic checks, one per distinct key, named by policy id.
    pub fn trusted_keys(&self) -> Vec<TrustedKey> {
        let mut seen = HashSet::new();
        self.keys
            .iter()
            .filter(|k| seen.insert(k.key_id.clone()))
            .map(|k| TrustedKey {
                name: k.id.clone(),
                key: k.key.clone(),
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Deciding

/// What the verifier established about one digest, all of it already checked cryptographically and bound to the
/// digest. Only key ids are trusted here: the decision looks up roles and windows in the policy.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The digest the facts are about.
    pub digest: Digest,
    /// The key ids of every verified signature (repeats are harmless: keys count once).
    pub signer_key_ids: Vec<String>,
    /// Each verified attestation: the key ids whose signatures over the envelope verified, and the statement.
    pub attestations: Vec<(Vec<String>, Value)>,
    /// Verified revocations of the digest: the revoking key id and the reason given.
    pub revoked_by: Vec<(String, String)>,
    /// The time of the decision (key windows, scan age).
    pub now: OffsetDateTime,
}

/// One checked rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleResult {
    /// The rule's name, e.g. `signatures.threshold`, `attestations[https://slsa.dev/provenance/v1].builder_id`.
    pub rule: String,
    /// True if it was met.
    pub ok: bool,
    /// What the policy asked for.
    pub expected: String,
    /// What the evidence showed.
    pub found: String,
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// True if every rule was met.
    pub allowed: bool,
    /// The digest decided about.
    pub digest: Digest,
    /// The scope of the rule applied, if one covered the reference.
    pub rule: Option<String>,
    /// Every rule checked, the unmet ones with what was expected and found.
    pub results: Vec<RuleResult>,
}

impl Decision {
    /// The rules that were not met.
    pub fn unmet(&self) -> impl Iterator<Item = &RuleResult> {
        self.results.iter().filter(|r| !r.ok)
    }

    /// One line per unmet rule: `RULE: expected ..., found ...`.
    pub fn reasons(&self) -> Vec<String> {
        self.unmet()
            .map(|r| format!("{}: expected {}, found {}", r.rule, r.expected, r.found))
            .collect()
    }
}

fn result(
    rule: impl Into<String>,
    ok: bool,
    expected: impl Into<String>,
    found: impl Into<String>,
) -> RuleResult {
    RuleResult {
        rule: rule.into(),
        ok,
        expected: expected.into(),
        found: found.into(),
    }
}

fn short(key_id: &str) -> &str {
    key_id.get(..12).unwrap_or(key_id)
}

fn roles_text(roles: &[String]) -> String {
    if roles.is_empty() {
        "any role".into()
    } else {
        format!("role {}", roles.join(" or "))
    }
}

/// Of `key_ids`, the distinct keys that count for `roles` at `now` (by policy id, the first entry listing the key
/// that counts), and why each other one does not.
fn count_keys<'p>(
    policy: &'p Policy,
    key_ids: &[String],
    roles: &[String],
    now: OffsetDateTime,
) -> (Vec<&'p PolicyKey>, Vec<String>) {
    let distinct: BTreeSet<&str> = key_ids.iter().map(String::as_str).collect();
    let mut counted = Vec::new();
    let mut not = Vec::new();
    // policy file order, for stable reports
    let mut order: Vec<&str> = Vec::new();
    for k in &policy.keys {
        if distinct.contains(k.key_id.as_str()) && !order.contains(&k.key_id.as_str()) {
            order.push(&k.key_id);
        }
    }
    for id in &distinct {
        if !order.contains(id) {
            not.push(format!("{} (not a policy key)", short(id)));
        }
    }
    for id in order {
        let entries: Vec<&PolicyKey> = policy.keys.iter().filter(|k| k.key_id == id).collect();
        if let Some(k) = entries
            .iter()
            .find(|k| k.valid_at(now) && k.has_role(roles))
        {
            counted.push(*k);
            continue;
        }
        for k in entries {
            match k.window_problem(now) {
                Some(p) => not.push(p),
                None => not.push(format!("{} (roles [{}])", k.id, k.roles.join(", "))),
            }
        }
    }
    (counted, not)
}

fn describe(counted: &[&PolicyKey], not: &[String]) -> String {
    let mut s = if counted.is_empty() {
        "0 keys".to_string()
    } else {
        format!(
            "{} ({})",
            counted.len(),
            counted
                .iter()
                .map(|k| k.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    if !not.is_empty() {
        s.push_str(&format!("; not counted: {}", not.join(", ")));
    }
    s
}

/// Decides whether the digest in `facts`, reached as `repository_name`, may be used under `policy`.
pub fn decide(policy: &Policy, repository_name: &str, facts: &Facts) -> Decision {
    let mut results = Vec::new();
    let now = facts.now;

    // revocation first, in every scope
    let mut revoked = Vec::new();
    let mut ignored = Vec::new();
    for (key_id, reason) in &facts.revoked_by {
        match policy
            .keys
            .iter()
            .find(|k| &k.key_id == key_id && k.valid_at(now))
        {
            Some(k) => revoked.push(format!("revoked by {}: {reason}", k.id)),
            None => ignored.push(short(key_id).to_string()),
        }
    }
    let expected = "no revocation by a valid policy key";
    if revoked.is_empty() {
        let found = if ignored.is_empty() {
            "none".to_string()
        } else {
            format!(
                "none (ignored revocations by keys not trusted now: {})",
                ignored.join(", ")
            )
        };
        results.push(result("revocation", true, expected, found));
    } else {
        results.push(result("revocation", false, expected, revoked.join("; ")));
    }

    let Some(rule) = policy.rule_for(repository_name) else {
        results.push(result(
            "scope",
            !policy.deny_unmatched,
            format!("a rule whose scope covers {repository_name}"),
            if policy.deny_unmatched {
                "no rule matches (deny_unmatched = true)".to_string()
            } else {
                "no rule matches; allowed by deny_unmatched = false".to_string()
            },
        ));
        return finish(facts, None, results);
    };

    if let Some(s) = &rule.signatures {
        let (counted, not) = count_keys(policy, &facts.signer_key_ids, &s.roles, now);
        results.push(result(
            "signatures.threshold",
            counted.len() >= s.threshold as usize,
            format!(
                "signatures by at least {} distinct valid key(s) with {}",
                s.threshold,
                roles_text(&s.roles)
            ),
            describe(&counted, &not),
        ));
    }

    for a in &rule.attestations {
        results.extend(check_attestation_rule(policy, a, facts));
    }
    finish(facts, Some(rule.scope.clone()), results)
}

fn finish(facts: &Facts, rule: Option<String>, results: Vec<RuleResult>) -> Decision {
    Decision {
        allowed: results.iter().all(|r| r.ok),
        digest: facts.digest,
        rule,
        results,
    }
}

/// The results for one required attestation: its presence, then the rules checked on the best candidate.
fn check_attestation_rule(policy: &Policy, a: &AttestationRule, facts: &Facts) -> Vec<RuleResult> {
    let name = format!("attestations[{}]", a.predicate_type);
    let candidates: Vec<&(Vec<String>, Value)> = facts
        .attestations
        .iter()
        .filter(|(_, st)| {
            st.get("predicateType")
                .and_then(Value::as_str)
                .is_some_and(|t| intoto::predicate_type_matches(t, &a.predicate_type))
        })
        .collect();
    let expected = format!("a verified {} attestation", a.predicate_type);
    if candidates.is_empty() {
        return vec![result(name, false, expected, "none")];
    }
    let evaluated: Vec<Vec<RuleResult>> = candidates
        .iter()
        .map(|(ids, st)| check_candidate(policy, a, &name, ids, st, facts.now))
        .collect();
    let best = evaluated
        .iter()
        .enumerate()
        .min_by_key(|(i, rs)| (rs.iter().filter(|r| !r.ok).count(), *i))
        .map(|(i, _)| i)
        .unwrap_or(0);
    let best_ok = evaluated[best].iter().all(|r| r.ok);
    let found = match (candidates.len(), best_ok) {
        (1, _) => "1 verified".to_string(),
        (n, true) => format!("{n} verified, number {} meets every rule", best + 1),
        (n, false) => format!(
            "{n} verified, none meets every rule; number {} (closest) is reported",
            best + 1
        ),
    };
    let mut out = vec![result(name, true, expected, found)];
    out.extend(evaluated.into_iter().nth(best).unwrap_or_default());
    out
}

fn check_candidate(
    policy: &Policy,
    a: &AttestationRule,
    name: &str,
    key_ids: &[String],
    statement: &Value,
    now: OffsetDateTime,
) -> Vec<RuleResult> {
    let mut out = Vec::new();
    let (counted, not) = count_keys(policy, key_ids, &a.signed_by, now);
    out.push(result(
        format!("{name}.signed_by"),
        !counted.is_empty(),
        format!(
            "signed by a valid policy key with {}",
            roles_text(&a.signed_by)
        ),
        describe(&counted, &not),
    ));
    let predicate = statement.get("predicate").unwrap_or(&Value::Null);
    if a.predicate_type == slsa::PREDICATE_TYPE
        && (a.builder_id.is_some()
            || a.source.is_some()
            || a.ref_glob.is_some()
            || a.require_commit)
    {
        check_provenance(a, name, predicate, &mut out);
    }
    if a.predicate_type == VULN_PREDICATE_TYPE {
        check_scan(a, name, predicate, now, &mut out);
    }
    out
}

fn shown(v: Option<&str>) -> String {
    v.map_or_else(|| "none".to_string(), |s| format!("{s:?}"))
}

fn check_provenance(a: &AttestationRule, name: &str, predicate: &Value, out: &mut Vec<RuleResult>) {
    let p = match slsa::parse(predicate) {
        Ok(p) => p,
        Err(e) => {
            out.push(result(
                format!("{name}.predicate"),
                false,
                "a valid SLSA provenance v1 predicate",
                e.to_string(),
            ));
            return;
        }
    };
    if let Some(want) = &a.builder_id {
        out.push(result(
            format!("{name}.builder_id"),
            want.matches(p.builder_id()),
            format!("{:?}", want.to_string()),
            format!("{:?}", p.builder_id()),
        ));
    }
    if let Some(want) = &a.source {
        let got = p.source_repository();
        out.push(result(
            format!("{name}.source"),
            got == Some(want.as_str()),
            format!("{:?}", format!("git+{want}")),
            shown(p.source_uri()),
        ));
    }
    if let Some(glob) = &a.ref_glob {
        let got = p.source_ref();
        out.push(result(
            format!("{name}.ref"),
            got.is_some_and(|r| glob.matches(r)),
            format!("a source ref matching {:?}", glob.as_str()),
            shown(got),
        ));
    }
    if a.require_commit {
        let got = p.commit();
        out.push(result(
            format!("{name}.require_commit"),
            got.is_some(),
            "a source commit (40 or 64 lowercase hex digits)",
            match got {
                Some(c) => c.to_string(),
                None => "no valid gitCommit or sha1 digest on the source".to_string(),
            },
        ));
    }
}

fn check_scan(
    a: &AttestationRule,
    name: &str,
    predicate: &Value,
    now: OffsetDateTime,
    out: &mut Vec<RuleResult>,
) {
    if let Some(max) = a.max_age {
        let expected = format!("a scan finished at most {} ago", human(max));
        let finished = predicate
            .pointer("/metadata/scanFinishedOn")
            .and_then(Value::as_str);
        let (ok, found) = match finished.map(|s| (s, OffsetDateTime::parse(s, &Rfc3339))) {
            None => (false, "no predicate.metadata.scanFinishedOn".to_string()),
            Some((s, Err(_))) => (false, format!("scanFinishedOn {s:?} is not RFC 3339")),
            Some((s, Ok(t))) => {
                let age = now - t;
                if age < -FUTURE_SKEW {
                    (false, format!("scanFinishedOn {s} is in the future"))
                } else {
                    (age <= max, format!("finished {s}, {} ago", human(age)))
                }
            }
        };
        out.push(result(format!("{name}.max_age"), ok, expected, found));
    }
    if let Some(ceiling) = a.max_severity {
        let expected = format!("no finding above {}", ceiling.as_str());
        let (ok, found) = match highest_severity(predicate.pointer("/scanner/result")) {
            Err(e) => (false, e),
            Ok(None) => (true, "no findings".to_string()),
            Ok(Some(h)) => {
                let mut found = format!("highest {} ({} finding(s)", h.severity.as_str(), h.count);
                if let Some(id) = &h.example {
                    found.push_str(&format!(", e.g. {id}"));
                }
                if h.unknown > 0 {
                    found.push_str(&format!(
                        ", {} of unknown severity counted as critical",
                        h.unknown
                    ));
                }
                found.push(')');
                (h.severity <= ceiling, found)
            }
        };
        out.push(result(format!("{name}.max_severity"), ok, expected, found));
    }
}

/// The highest severity in a scan result.
struct Highest {
    severity: Severity,
    /// Findings of that severity.
    count: usize,
    /// One of their ids.
    example: Option<String>,
    /// Findings of an unknown severity (counted as critical).
    unknown: usize,
}

/// Reads the findings of a scanner's result (Trivy, Grype or plain shape) and returns the highest severity, `None`
/// when there are no findings, or why the result cannot be read.
fn highest_severity(result: Option<&Value>) -> Result<Option<Highest>, String> {
    let result = result.ok_or("no predicate.scanner.result")?;
    // (severity, id) of each finding
    let mut findings: Vec<(Option<&str>, Option<&str>)> = Vec::new();
    let not_list = |what: &str| format!("predicate.scanner.result.{what} is not a list");
    if let Some(results) = result.get("Results") {
        for r in results.as_array().ok_or_else(|| not_list("Results"))? {
            match r.get("Vulnerabilities") {
                None | Some(Value::Null) => {}
                Some(v) => {
                    for v in v
                        .as_array()
                        .ok_or_else(|| not_list("Results[].Vulnerabilities"))?
                    {
                        findings.push((
                            v.get("Severity").and_then(Value::as_str),
                            v.get("VulnerabilityID").and_then(Value::as_str),
                        ));
                    }
                }
            }
        }
    } else if let Some(matches) = result.get("matches") {
        for m in matches.as_array().ok_or_else(|| not_list("matches"))? {
            let v = m.get("vulnerability");
            findings.push((
                v.and_then(|v| v.get("severity")).and_then(Value::as_str),
                v.and_then(|v| v.get("id")).and_then(Value::as_str),
            ));
        }
    } else if let Some(vulns) = result.get("vulnerabilities") {
        for v in vulns
            .as_array()
            .ok_or_else(|| not_list("vulnerabilities"))?
        {
            findings.push((
                v.get("severity").and_then(Value::as_str),
                v.get("id").and_then(Value::as_str),
            ));
        }
    } else {
        return Err("predicate.scanner.result has no recognised findings list (Trivy Results[].Vulnerabilities[], \
                    Grype matches[], or vulnerabilities[])"
            .into());
    }
    let mut by: BTreeMap<Severity, (usize, Option<String>)> = BTreeMap::new();
    let mut unknown = 0;
    for (sev, id) in findings {
        let s = match sev.and_then(Severity::from_scanner) {
            Some(s) => s,
            None => {
                unknown += 1;
                Severity::Critical
            }
        };
        let e = by.entry(s).or_insert((0, None));
        e.0 += 1;
        if e.1.is_none() {
            e.1 = id.map(str::to_string);
        }
    }
    Ok(by
        .into_iter()
        .next_back()
        .map(|(severity, (count, example))| Highest {
            severity,
            count,
            example,
            unknown,
        }))
}

#[cfg(test)]
mod tests;
