//! Error types.
//!
//! Two kinds of "no" must never be confused (SPEC §3): a verification that said no ([`ErrorKind::Denied`], exit 10)
//! and an operation that could not be done or could not be checked ([`ErrorKind::Operational`], exit 1). Bad input
//! from the user is [`ErrorKind::Usage`] (exit 2). Every variant names the reference, digest, path or rule involved;
//! [`Error::hint`] suggests the next step where one helps.

use std::path::PathBuf;

use crate::digest::{Digest, DigestError};
use crate::reference::ReferenceError;

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How an error is classed, which decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad command line, configuration, key or policy file (exit 2).
    Usage,
    /// Network, registry or I/O trouble: the result is unknown (exit 1).
    Operational,
    /// Verification said no: bad or missing signature, digest or size mismatch, hostile content (exit 10).
    Denied,
}

/// Everything that can go wrong in sealpack.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A reference did not parse.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// A digest did not parse.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// The command line or a configuration value is wrong.
    #[error("{message}")]
    Usage {
        /// What was wrong.
        message: String,
        /// The next step.
        hint: Option<String>,
    },
    /// A local file operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done ("reading", "creating", ...).
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The connection to a registry failed (DNS, TCP, TLS, timeout).
    #[error("cannot reach {url}: {message}")]
    Transport {
        /// The URL requested.
        url: String,
        /// The underlying error chain, flattened.
        message: String,
        /// The next step, when the cause is recognisable.
        hint: Option<&'static str>,
    },
    /// The registry answered with an error status.
    #[error("{method} {url}: HTTP {status}{}{}", code.as_ref().map(|c| format!(" {c}")).unwrap_or_default(), if message.is_empty() { String::new() } else { format!(": {message}") })]
    Registry {
        /// HTTP method.
        method: String,
        /// URL requested.
        url: String,
        /// HTTP status.
        status: u16,
        /// The distribution error code (e.g. `MANIFEST_BLOB_UNKNOWN`).
        code: Option<String>,
        /// The registry's message.
        message: String,
    },
    /// A request kept failing in ways that may pass (network, 5xx, 429) until the retries ran out.
    #[error("{what} failed after {attempts} attempt{}: {why}; last error: {last}", if *attempts == 1 { "" } else { "s" })]
    GaveUp {
        /// The request or operation (`GET URL`, `uploading HOST/REPO@DIGEST`).
        what: String,
        /// Attempts made.
        attempts: u32,
        /// Why no further attempt was made (attempt cap, time budget, a source that cannot be replayed).
        why: String,
        /// The last failure.
        last: Box<Error>,
    },
    /// Authentication was refused or could not be done.
    #[error("authentication to {registry} failed: {reason}")]
    Auth {
        /// The registry host.
        registry: String,
        /// What went wrong.
        reason: String,
    },
    /// A tag or manifest does not exist.
    #[error("{what} not found")]
    NotFound {
        /// The reference or digest looked up.
        what: String,
    },
    /// Pushing would move a tag that already points elsewhere.
    #[error(
        "tag {reference} already points at {existing}, not at the pushed {attempted}; the tag was left as it was"
    )]
    TagExists {
        /// The tagged reference.
        reference: String,
        /// What the tag points at now.
        existing: Digest,
        /// What the push would have pointed it at.
        attempted: Digest,
    },
    /// Content does not hash to the digest it was fetched by (a corrupt or lying store).
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The blob or manifest.
        what: String,
        /// The digest we asked for.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },
    /// Content is not the size its descriptor says.
    #[error("size mismatch for {what}: descriptor says {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The blob or manifest.
        what: String,
        /// The descriptor's size.
        expected: u64,
        /// Bytes received (may be "more than expected": expected + 1).
        actual: u64,
    },
    /// Content from a store or archive is malformed, oversized or unsafe, and was refused before use.
    #[error("refused {what}: {reason}")]
    Untrusted {
        /// The manifest, blob, entry or file.
        what: String,
        /// Which rule it broke.
        reason: String,
    },
    /// An archive layer broke an extraction rule, or a folder could not be packed.
    #[error(transparent)]
    Archive(#[from] crate::artifact::archive::ArchiveError),
    /// A key file could not be read, decrypted or used.
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    /// A signed payload, envelope or statement from a store is malformed.
    #[error(transparent)]
    Format(#[from] crate::formats::FormatError),
    /// A policy file is unreadable or invalid (names the file and line).
    #[error(transparent)]
    Policy(#[from] crate::verify::policy::PolicyError),
    /// Verification said no. Every reason found is listed, not just the first.
    #[error("verification of {subject} denied: {}", reasons.join("; "))]
    Denied {
        /// The digest-pinned reference that was checked.
        subject: String,
        /// Each unmet condition, with what was expected and what was found.
        reasons: Vec<String>,
    },
    /// Another deploy, rollback or promote holds the target folder's lock.
    #[error("{} is locked by another run ({holder}); gave up after {}s", path.display(), waited.as_secs_f64())]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// What the lock file says about its holder.
        holder: String,
        /// How long this run waited.
        waited: std::time::Duration,
    },
    /// The health command failed after a switch; `current` was switched back where possible.
    #[error("health check of {subject} failed ({outcome}); {}", match (now_current, switched_back) {
        (Some(d), true) => format!("current switched back to {d}"),
        (Some(d), false) => format!("current stays on {d}: it was already current before this run"),
        (None, _) => "nothing was current before, so current was removed".to_string(),
    })]
    HealthCheck {
        /// The pinned reference deployed.
        subject: String,
        /// How the command ended, with its last line of output.
        outcome: String,
        /// What `current` points at now.
        now_current: Option<Digest>,
        /// Whether `current` was switched back to an earlier release.
        switched_back: bool,
    },
    /// `push` found possible secrets (private keys, tokens, credential files) in what it was packing; nothing was
    /// pushed. Every finding is listed (file inside the artifact, line, rule), never the secret itself.
    #[error("refusing to push: {} possible secret(s) found:{}{}", findings.len() as u64 + more, findings.iter().map(|f| format!("\n  {f}")).collect::<String>(), if *more > 0 { format!("\n  ... and {more} more") } else { String::new() })]
    Secrets {
        /// What was found (at most a few per file).
        findings: Vec<crate::artifact::secrets::Finding>,
        /// Findings beyond those listed.
        more: u64,
    },
    /// Content is well formed but not something this command can handle.
    #[error("{what}: {reason}")]
    Unsupported {
        /// The thing.
        what: String,
        /// Why.
        reason: String,
    },
    /// `gc` could not tell whether a digest is protected (its manifest or evidence could not be read), so it
    /// deleted nothing: "could not check" never becomes "safe to delete".
    #[error("could not check {what}: {cause}; nothing was deleted")]
    NotChecked {
        /// The digest (or tag) that could not be checked.
        what: String,
        /// What went wrong.
        cause: Box<Error>,
    },
}

impl Error {
    /// The class of the error, which decides the exit code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Reference(_)
            | Error::Digest(_)
            | Error::Usage { .. }
            | Error::Key(_)
            | Error::Policy(_)
            | Error::Secrets { .. } => ErrorKind::Usage,
            Error::Denied { .. } | Error::Format(_) => ErrorKind::Denied,
            Error::Archive(crate::artifact::archive::ArchiveError::Io { .. }) => {
                ErrorKind::Operational
            }
            Error::DigestMismatch { .. }
            | Error::SizeMismatch { .. }
            | Error::Untrusted { .. }
            | Error::Archive(_) => ErrorKind::Denied,
            Error::Io { .. }
            | Error::Transport { .. }
            | Error::Registry { .. }
            | Error::GaveUp { .. }
            | Error::Auth { .. }
            | Error::NotFound { .. }
            | Error::TagExists { .. }
            | Error::Locked { .. }
            | Error::HealthCheck { .. }
            | Error::Unsupported { .. } => ErrorKind::Operational,
            Error::NotChecked { .. } => ErrorKind::Operational,
        }
    }

    /// A suggested next step, if there is an obvious one.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Usage { hint, .. } => hint.clone(),
            Error::Transport { hint, .. } => hint.map(str::to_string),
            // a guess about plain HTTP from one reset does not fit a registry that answered before
            Error::GaveUp { last, .. } => Some(last.hint().filter(|h| !h.contains("--plain-http")).unwrap_or_else(|| {
                "the registry or the network kept failing: try again later, or allow more time with SEALPACK_RETRY_BUDGET (default 5m)".into()
            })),
            Error::Auth { .. } => Some(
                "check the credentials in ~/.docker/config.json (or DOCKER_CONFIG), or pass --username with --password-stdin"
                    .into(),
            ),
            Error::TagExists { .. } => {
                Some("push to a new tag (a release tag should never move), or pass --allow-overwrite".into())
            }
            Error::DigestMismatch { .. } | Error::SizeMismatch { .. } => Some(
                "the store returned content that is not what was asked for; do not use it, and check the registry or layout for tampering or corruption"
                    .into(),
            ),
            Error::Locked { .. } => Some(
                "two deploys to one target never run at once; run this again when the other one has finished".into(),
            ),
            Error::HealthCheck { .. } => Some(
                "see `sealpack history` for the health command's output; fix the release and deploy a new digest".into(),
            ),
            Error::Secrets { findings, .. } => Some(format!(
                "remove them from what you push (and revoke any real one); if a finding is a false positive, \
                 allow it by path with --allow-secret {} (or PATH:LINE, PATH:RULE)",
                findings.first().map_or("PATH", |f| f.path.as_str())
            )),
            Error::Registry { status: 401 | 403, .. } => {
                Some("the registry refused these credentials for this repository".into())
            }
            Error::NotChecked { cause, .. } => cause.hint(),
            _ => None,
        }
    }

    /// Shorthand for a usage error.
    pub fn usage(message: impl Into<String>) -> Self {
        Error::Usage {
            message: message.into(),
            hint: None,
        }
    }

    /// Shorthand for a usage error with a hint.
    pub fn usage_hint(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Usage {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// Shorthand for an I/O error on a path.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        // an integrity error travelling inside an io::Error (from a verifying stream) keeps its identity
        if source.get_ref().is_some_and(|e| e.is::<Error>()) {
            return *source
                .into_inner()
                .and_then(|e| e.downcast::<Error>().ok())
                .expect("checked above");
        }
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Shorthand for refused content.
    pub fn untrusted(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Untrusted {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// Wraps this error in an `io::Error` so it can travel through `Read`/`Write` plumbing and come back intact via
    /// [`Error::io`].
    pub fn into_io(self) -> std::io::Error {
        std::io::Error::other(self)
    }
}
