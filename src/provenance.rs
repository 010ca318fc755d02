//! Build facts from the source tree: the git commit, its time and the remote it came from.
//!
//! Only read here; what is done with them (annotations now, SLSA provenance later) is decided by the callers.

use std::path::Path;
use std::process::Command;

/// What git says about a work tree.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GitInfo {
    /// The commit (`git rev-parse HEAD`), 40 hex.
    pub commit: String,
    /// The commit time, seconds since the epoch (committer date).
    pub commit_time: Option<i64>,
    /// The `origin` remote URL with any user name or password removed.
    pub remote_url: Option<String>,
    /// Whether the work tree has uncommitted changes.
    pub dirty: bool,
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// Whether `s` is a full git commit id (40 or 64 lowercase hex).
pub fn is_commit_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl GitInfo {
    /// Reads git facts for the work tree containing `dir`; `None` outside a work tree or without git.
    pub fn discover(dir: &Path) -> Option<GitInfo> {
        if git(dir, &["rev-parse", "--is-inside-work-tree"]).as_deref() != Some("true") {
            return None;
        }
        let commit = git(dir, &["rev-parse", "HEAD"])?;
        Some(GitInfo {
            commit_time: Self::commit_time(dir, &commit),
            remote_url: git(dir, &["remote", "get-url", "origin"]).map(|u| strip_userinfo(&u)),
            dirty: git(dir, &["status", "--porcelain", "--untracked-files=no"]).is_some(),
            commit,
        })
    }

    /// The committer time of `commit` in the repository at `dir`.
    pub fn commit_time(dir: &Path, commit: &str) -> Option<i64> {
        git(dir, &["log", "-1", "--format=%ct", commit, "--"])?
            .parse()
            .ok()
    }
}

/// Removes `user:password@` from a URL so credentials never end up in an annotation.
pub fn strip_userinfo(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Formats seconds since the epoch as RFC 3339 UTC (`2026-11-27T09:00:00Z`).
pub fn rfc3339(epoch: i64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp(epoch).ok()?;
    t.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_stripped() {
        assert_eq!(
            strip_userinfo("https://user:tok@github.com/acme/app.git"),
            "https://github.com/acme/app.git"
        );
        assert_eq!(
            strip_userinfo("git@github.com:acme/app.git"),
            "git@github.com:acme/app.git"
        );
    }

    #[test]
    fn times_format() {
        assert_eq!(rfc3339(0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000).unwrap(), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn commit_ids() {
        assert!(is_commit_id(&"a".repeat(40)));
        assert!(!is_commit_id(&"A".repeat(40)));
        assert!(!is_commit_id("abc"));
    }
}
