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

/// Now, UTC, whole seconds, RFC 3339 (the time stamps of statements and history events).
pub fn now_rfc3339() -> String {
    rfc3339(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or_default()
}

/// This host's name (`/proc/sys/kernel/hostname`), `localhost` when it cannot be read.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
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

/// Which CI system ran the build, as read from its environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CiSystem {
    /// GitHub Actions (`GITHUB_ACTIONS=true`).
    GithubActions,
    /// GitLab CI (`GITLAB_CI=true`).
    GitlabCi,
    /// No CI recognised: a developer's machine or an unknown CI.
    Local,
}

/// Where and how an artifact was built: the facts SLSA provenance records. Every field can be overridden by the
/// caller (command-line flags) after [`BuildEnvironment::gather`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BuildEnvironment {
    /// The CI system.
    pub ci: CiSystem,
    /// `runDetails.builder.id`: who built it (a workflow, a pipeline, a host).
    pub builder_id: String,
    /// `buildDefinition.buildType`.
    pub build_type: String,
    /// A URI for this particular run, when the CI has one.
    pub invocation_id: Option<String>,
    /// The source repository URL (no credentials), without the `git+` prefix.
    pub source_repo: Option<String>,
    /// The git ref built (`refs/heads/main`, `refs/tags/v1.2.3`).
    pub source_ref: Option<String>,
    /// The commit built, 40 hex.
    pub commit: Option<String>,
    /// Whether the work tree had uncommitted changes (only knowable for a local work tree).
    pub dirty: bool,
    /// CI facts worth recording as external parameters (workflow, event, job).
    pub parameters: std::collections::BTreeMap<String, String>,
}

/// The build type sealpack writes: provenance generated by sealpack from CI environment facts.
pub const BUILD_TYPE: &str = "https://github.com/sealpack/sealpack/buildtypes/ci-environment/v1";

impl BuildEnvironment {
    /// Reads the CI environment through `env` (normally `std::env::var`) and the git work tree at `dir`.
    /// GitHub Actions and GitLab CI are recognised by their variables; anything else is `local` with a builder id
    /// naming the host.
    pub fn gather(
        env: &dyn Fn(&str) -> Option<String>,
        dir: &Path,
        hostname: &str,
    ) -> BuildEnvironment {
        let get = |k: &str| env(k).filter(|v| !v.is_empty());
        let git = GitInfo::discover(dir);
        let mut parameters = std::collections::BTreeMap::new();
        let mut out = if get("GITHUB_ACTIONS").as_deref() == Some("true") {
            let server = get("GITHUB_SERVER_URL").unwrap_or_else(|| "https://github.com".into());
            let repo = get("GITHUB_REPOSITORY");
            for (k, v) in [
                ("workflow", "GITHUB_WORKFLOW_REF"),
                ("event_name", "GITHUB_EVENT_NAME"),
                ("repository_id", "GITHUB_REPOSITORY_ID"),
                ("repository_owner_id", "GITHUB_REPOSITORY_OWNER_ID"),
            ] {
                if let Some(val) = get(v) {
                    parameters.insert(k.to_string(), val);
                }
            }
            BuildEnvironment {
                ci: CiSystem::GithubActions,
                // the workflow file at its ref: what SLSA's GitHub builders use and policies pin
                builder_id: match get("GITHUB_WORKFLOW_REF") {
                    Some(w) => format!("{server}/{w}"),
                    None => format!("{server}/{}", repo.clone().unwrap_or_default()),
                },
                build_type: BUILD_TYPE.into(),
                invocation_id: match (&repo, get("GITHUB_RUN_ID")) {
                    (Some(r), Some(id)) => Some(format!(
                        "{server}/{r}/actions/runs/{id}/attempts/{}",
                        get("GITHUB_RUN_ATTEMPT").unwrap_or_else(|| "1".into())
                    )),
                    _ => None,
                },
                source_repo: repo.map(|r| format!("{server}/{r}")),
                source_ref: get("GITHUB_REF"),
                commit: get("GITHUB_SHA"),
                dirty: false,
                parameters: Default::default(),
            }
        } else if get("GITLAB_CI").as_deref() == Some("true") {
            let project = get("CI_PROJECT_URL");
            let git_ref = get("CI_COMMIT_TAG")
                .map(|t| format!("refs/tags/{t}"))
                .or_else(|| get("CI_COMMIT_BRANCH").map(|b| format!("refs/heads/{b}")))
                .or_else(|| get("CI_COMMIT_REF_NAME").map(|b| format!("refs/heads/{b}")));
            for (k, v) in [
                ("pipeline_source", "CI_PIPELINE_SOURCE"),
                ("job_name", "CI_JOB_NAME"),
                ("project_id", "CI_PROJECT_ID"),
            ] {
                if let Some(val) = get(v) {
                    parameters.insert(k.to_string(), val);
                }
            }
            BuildEnvironment {
                ci: CiSystem::GitlabCi,
                builder_id: match (&project, &git_ref) {
                    (Some(p), Some(r)) => format!("{p}/-/blob/{r}/.gitlab-ci.yml"),
                    (Some(p), None) => format!("{p}/-/blob/.gitlab-ci.yml"),
                    _ => "https://gitlab.com".into(),
                },
                build_type: BUILD_TYPE.into(),
                invocation_id: get("CI_JOB_URL"),
                source_repo: project,
                source_ref: git_ref,
                commit: get("CI_COMMIT_SHA"),
                dirty: false,
                parameters: Default::default(),
            }
        } else {
            BuildEnvironment {
                ci: CiSystem::Local,
                builder_id: format!("local://{hostname}"),
                build_type: BUILD_TYPE.into(),
                invocation_id: None,
                source_repo: None,
                source_ref: None,
                commit: None,
                dirty: false,
                parameters: Default::default(),
            }
        };
        out.parameters = parameters;
        // the work tree fills what the CI did not say, and is the only judge of dirtiness
        if let Some(g) = git {
            out.dirty = g.dirty;
            if out.commit.is_none() {
                out.commit = Some(g.commit.clone());
            }
            if out.source_repo.is_none() {
                out.source_repo = g.remote_url.clone().map(|u| normalise_remote(&u));
            }
            if out.source_ref.is_none() {
                out.source_ref = git_ref(dir);
            }
        }
        out
    }

    /// The SLSA source URI: `git+REPO@REF` (or without `@REF` when the ref is unknown).
    pub fn source_uri(&self) -> Option<String> {
        let repo = self.source_repo.as_ref()?;
        Some(match &self.source_ref {
            Some(r) => format!("git+{repo}@{r}"),
            None => format!("git+{repo}"),
        })
    }
}

/// The ref the work tree is on: a tag pointing exactly at HEAD wins (a release), else the branch.
fn git_ref(dir: &Path) -> Option<String> {
    if let Some(tag) = git(dir, &["describe", "--tags", "--exact-match", "HEAD"]) {
        return Some(format!("refs/tags/{tag}"));
    }
    git(dir, &["symbolic-ref", "-q", "HEAD"])
}

/// `git@github.com:acme/app.git` -> `https://github.com/acme/app`; https URLs lose `.git` and credentials.
pub fn normalise_remote(url: &str) -> String {
    let url = strip_userinfo(url);
    let https = if let Some(rest) = url.strip_prefix("git@") {
        match rest.split_once(':') {
            Some((host, path)) => format!("https://{host}/{path}"),
            None => url.clone(),
        }
    } else {
        url.clone()
    };
    https
        .trim_end_matches('/')
        .trim_end_matches(".git")
        .to_string()
}

#[cfg(test)]
mod ci_tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn github_actions() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_of(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_SERVER_URL", "https://github.com"),
            ("GITHUB_REPOSITORY", "acme/app"),
            (
                "GITHUB_WORKFLOW_REF",
                "acme/app/.github/workflows/release.yml@refs/heads/main",
            ),
            ("GITHUB_REF", "refs/tags/v1.2.3"),
            ("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567"),
            ("GITHUB_RUN_ID", "42"),
            ("GITHUB_RUN_ATTEMPT", "2"),
            ("GITHUB_EVENT_NAME", "push"),
        ]);
        let b = BuildEnvironment::gather(&env, dir.path(), "host");
        assert_eq!(b.ci, CiSystem::GithubActions);
        assert_eq!(
            b.builder_id,
            "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
        );
        assert_eq!(
            b.source_uri().unwrap(),
            "git+https://github.com/acme/app@refs/tags/v1.2.3"
        );
        assert_eq!(
            b.invocation_id.unwrap(),
            "https://github.com/acme/app/actions/runs/42/attempts/2"
        );
        assert_eq!(
            b.commit.unwrap(),
            "0123456789abcdef0123456789abcdef01234567"
        );
        assert_eq!(b.parameters["event_name"], "push");
    }

    #[test]
    fn gitlab_ci() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_of(&[
            ("GITLAB_CI", "true"),
            ("CI_PROJECT_URL", "https://gitlab.com/acme/app"),
            ("CI_COMMIT_TAG", "v2"),
            ("CI_COMMIT_SHA", "89abcdef0123456789abcdef0123456789abcdef"),
            ("CI_JOB_URL", "https://gitlab.com/acme/app/-/jobs/7"),
        ]);
        let b = BuildEnvironment::gather(&env, dir.path(), "host");
        assert_eq!(b.ci, CiSystem::GitlabCi);
        assert_eq!(
            b.source_uri().unwrap(),
            "git+https://gitlab.com/acme/app@refs/tags/v2"
        );
        assert_eq!(
            b.builder_id,
            "https://gitlab.com/acme/app/-/blob/refs/tags/v2/.gitlab-ci.yml"
        );
        assert_eq!(
            b.invocation_id.unwrap(),
            "https://gitlab.com/acme/app/-/jobs/7"
        );
    }

    #[test]
    fn local_and_remote_forms() {
        let dir = tempfile::tempdir().unwrap();
        let b = BuildEnvironment::gather(&env_of(&[]), dir.path(), "buildbox");
        assert_eq!(
            (b.ci, b.builder_id.as_str()),
            (CiSystem::Local, "local://buildbox")
        );
        assert_eq!(b.source_uri(), None);
        assert_eq!(
            normalise_remote("git@github.com:acme/app.git"),
            "https://github.com/acme/app"
        );
        assert_eq!(
            normalise_remote("https://u:p@gitlab.com/a/b.git"),
            "https://gitlab.com/a/b"
        );
    }
}
