//! The health command: run with `sh -c` in the release that `current` now points at, with a time limit. Its
//! output is captured (the last few KiB of each stream), never passed through: the library does not print.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use tokio::io::AsyncReadExt;

use crate::digest::Digest;
use crate::error::{Error, Result};

/// Bytes of each output stream kept.
const TAIL: usize = 4096;

/// A health command and its time limit.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    /// Run with `sh -c`.
    pub command: String,
    /// Killed after this long (then it failed).
    pub timeout: Duration,
}

/// How a health command ended.
#[derive(Debug, Clone, Serialize)]
pub struct HealthOutcome {
    /// Exit status 0 within the time limit.
    pub passed: bool,
    /// `exit 0`, `exit 3`, `killed by signal 9`, `timed out after 30s`.
    pub status: String,
    /// The end of its standard output.
    pub stdout: String,
    /// The end of its standard error.
    pub stderr: String,
}

impl HealthOutcome {
    /// One line for history: the status and the last line the command printed.
    pub fn summary(&self) -> String {
        let last_of = |s: &str| {
            s.lines()
                .rfind(|l| !l.trim().is_empty())
                .map(str::to_string)
        };
        // what it said on stderr is usually why it failed; else the end of stdout
        let last = last_of(&self.stderr)
            .or_else(|| last_of(&self.stdout))
            .map(|l| format!(": {}", l.chars().take(200).collect::<String>()))
            .unwrap_or_default();
        format!("{}{last}", self.status)
    }
}

async fn tail(mut r: impl tokio::io::AsyncRead + Unpin) -> String {
    let mut keep: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        keep.extend_from_slice(&buf[..n]);
        if keep.len() > 2 * TAIL {
            keep.drain(..keep.len() - TAIL);
        }
    }
    if keep.len() > TAIL {
        keep.drain(..keep.len() - TAIL);
    }
    String::from_utf8_lossy(&keep).into_owned()
}

/// Runs `check` in `release_dir` with `SEALPACK_RELEASE_DIR`, `SEALPACK_DIGEST`, `SEALPACK_ENV` and
/// `SEALPACK_TARGET` set. A command that cannot be started is an error; one that fails or times out is an
/// outcome with `passed: false`.
pub async fn run(
    check: &HealthCheck,
    release_dir: &Path,
    digest: &Digest,
    env: &str,
    target: &Path,
) -> Result<HealthOutcome> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&check.command)
        .current_dir(release_dir)
        .env("SEALPACK_RELEASE_DIR", release_dir)
        .env("SEALPACK_DIGEST", digest.to_string())
        .env("SEALPACK_ENV", env)
        .env("SEALPACK_TARGET", target)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::io("starting the health command in", release_dir, e))?;
    let out = tail(child.stdout.take().expect("piped"));
    let err = tail(child.stderr.take().expect("piped"));
    let waited = tokio::time::timeout(check.timeout, async {
        let (o, e, status) = tokio::join!(out, err, child.wait());
        (o, e, status)
    })
    .await;
    match waited {
        Ok((stdout, stderr, status)) => {
            let status = status
                .map_err(|e| Error::io("waiting for the health command in", release_dir, e))?;
            let text = match (
                status.code(),
                std::os::unix::process::ExitStatusExt::signal(&status),
            ) {
                (Some(c), _) => format!("exit {c}"),
                (None, Some(s)) => format!("killed by signal {s}"),
                _ => "ended".into(),
            };
            Ok(HealthOutcome {
                passed: status.success(),
                status: text,
                stdout,
                stderr,
            })
        }
        Err(_) => {
            let _ = child.kill().await;
            Ok(HealthOutcome {
                passed: false,
                status: format!("timed out after {}s", check.timeout.as_secs_f64()),
                stdout: String::new(),
                stderr: String::new(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn go(cmd: &str, timeout_ms: u64) -> HealthOutcome {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "ok").unwrap();
        run(
            &HealthCheck {
                command: cmd.into(),
                timeout: Duration::from_millis(timeout_ms),
            },
            dir.path(),
            &Digest::of(b"x"),
            "staging",
            dir.path(),
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn outcomes() {
        let ok = go(
            "test -f index.html && test \"$SEALPACK_ENV\" = staging",
            10_000,
        )
        .await;
        assert!(ok.passed, "{ok:?}");
        let bad = go(
            "echo starting; echo 'port 8080 refused' >&2; exit 3",
            10_000,
        )
        .await;
        assert!(!bad.passed);
        assert_eq!(bad.summary(), "exit 3: port 8080 refused");
        let slow = go("sleep 5", 200).await;
        assert!(!slow.passed);
        assert!(slow.status.starts_with("timed out"), "{slow:?}");
    }
}
