//! The host side (SPEC §7): install a verified digest into a target folder, switch `current` to it atomically,
//! record it, run a health command and switch back when it fails; roll back to the last known good release;
//! promote the digest an environment runs to the next one.
//!
//! Order of work in a deploy, each step only after the one before succeeded:
//! lock the target -> clean what an interrupted run left -> resolve the reference once -> the gate (on the digest)
//! -> install `releases/<hex>` (fetched by that digest only; every blob checked; archives unpacked with the
//! guards; renamed into place only when complete) -> switch `current` -> append to history -> health command ->
//! on failure switch back and record that.

pub mod health;
pub mod history;
pub mod target;

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::artifact::{Observer, archive, pull};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::formats::promotion;
use crate::oci::{Manifest, RawManifest, annotations, media};
use crate::provenance::now_rfc3339;
use crate::reference::Reference;
use crate::store::{self, Store, StoreOptions};
use crate::verify::gate::{Gate, Verdict};

pub use health::{HealthCheck, HealthOutcome};
pub use history::{Action, Event};
pub use target::Target;

/// A point where a test can make a deploy stop and wait to be killed (crash-safety tests).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// While the release is being fetched into its staging folder.
    Install,
    /// Just after `current` was switched, before history was written.
    Switched,
}

impl std::str::FromStr for Pause {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "install" => Ok(Pause::Install),
            "switched" => Ok(Pause::Switched),
            _ => Err(Error::usage(format!("unknown pause point {s:?}"))),
        }
    }
}

fn pause(target: &Target, point: Pause) {
    let _ = std::fs::write(
        target.root().join(format!(".sealpack/paused-{point:?}")),
        b"",
    );
    // blocks this thread until the test kills the process (or a minute passes)
    std::thread::sleep(Duration::from_secs(60));
}

/// Settings shared by deploy, rollback and promote.
#[derive(Debug, Clone)]
pub struct DeployOptions {
    /// The environment (`staging`, `production`, ...).
    pub env: String,
    /// Who is acting (recorded in history).
    pub who: String,
    /// Run after the switch; failure switches back.
    pub health: Option<HealthCheck>,
    /// Archive budgets for folder layers.
    pub limits: archive::Limits,
    /// How long to wait for another deploy on the same target.
    pub lock_wait: Duration,
    /// Test hook.
    #[doc(hidden)]
    pub pause_at: Option<Pause>,
}

/// What a deploy, promote or rollback did.
#[derive(Debug, Clone, Serialize)]
pub struct DeployReport {
    /// `deploy`, `promote` or `rollback`.
    pub action: Action,
    /// The environment.
    pub env: String,
    /// `REPO@sha256:...` now current.
    pub reference: String,
    /// The digest now current.
    pub digest: Digest,
    /// The release folder.
    pub release_dir: std::path::PathBuf,
    /// What was current before.
    pub previous: Option<Digest>,
    /// Whether the release folder was already installed (and intact) and reused.
    pub reused: bool,
    /// `org.opencontainers.image.version`.
    pub version: Option<String>,
    /// The git commit.
    pub commit: Option<String>,
    /// Why the gate let it through.
    pub verdict: Verdict,
    /// The health command's outcome, if one ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthOutcome>,
    /// Leftovers of interrupted runs that were removed, and other things worth saying.
    pub notes: Vec<String>,
}

/// Checks the manifest is a file artifact (deploy installs files; container images and indexes are run by a
/// container runtime) and returns its version and commit annotations, from one parse.
fn file_artifact(
    manifest: &RawManifest,
    pinned: &Reference,
) -> Result<(Option<String>, Option<String>)> {
    let why = match manifest.parse()? {
        Manifest::Index(_) => "an image index (a multi-platform container image)",
        Manifest::Image(m)
            if m.config.media_type == media::OCI_IMAGE_CONFIG
                || m.config.media_type == media::DOCKER_IMAGE_CONFIG =>
        {
            "a container image"
        }
        Manifest::Image(m) => {
            return Ok((
                m.annotation(annotations::VERSION).map(str::to_string),
                m.annotation(annotations::REVISION).map(str::to_string),
            ));
        }
    };
    Err(Error::Unsupported {
        what: pinned.to_string(),
        reason: format!(
            "this is {why}; deploy installs file artifacts into a folder. Run container images with your container runtime (sealpack can still sign, attest, verify, copy and promote them)"
        ),
    })
}

/// An observer that pauses (test hook) at the first progress of the install, and forwards to another.
struct PausingObserver<'a> {
    inner: &'a dyn Observer,
    target: Target,
}

impl Observer for PausingObserver<'_> {
    fn transfer(&self, label: &str, total: u64) -> std::sync::Arc<dyn Fn(u64) + Send + Sync> {
        let inner = self.inner.transfer(label, total);
        let target = self.target.clone();
        std::sync::Arc::new(move |n| {
            inner(n);
            pause(&target, Pause::Install);
        })
    }
}

/// A target locked for this run, with leftovers cleaned and an unrecorded `current` reconciled.
struct Session {
    target: Target,
    _lock: target::TargetLock,
    events: Vec<Event>,
    notes: Vec<String>,
}

impl Session {
    fn open(dir: &Path, opts: &DeployOptions, doing: &str, create: bool) -> Result<Self> {
        promotion::check_env(&opts.env).map_err(|e| Error::usage(e.to_string()))?;
        let target = Target::open(dir, create)?;
        let holder = format!(
            "pid {} ({}) {doing} since {}",
            std::process::id(),
            opts.who,
            now_rfc3339()
        );
        let lock = target.lock(opts.lock_wait, &holder)?;
        target.bind_env(&opts.env)?;
        let mut notes: Vec<String> = target
            .clean_leftovers()?
            .into_iter()
            .map(|p| {
                format!(
                    "removed {} left by an interrupted run",
                    p.strip_prefix(dir).unwrap_or(&p).display()
                )
            })
            .collect();
        let (mut events, skipped) = history::read(&target.history_path())?;
        if skipped > 0 {
            notes.push(format!(
                "{skipped} unreadable line(s) in {} skipped",
                target.history_path().display()
            ));
        }
        // a run that died between the switch and the history append: record what current is
        if let Some(cur) = target.current()?
            && history::last_switched(&events) != Some(cur)
        {
            let e = Event {
                time: now_rfc3339(),
                action: Action::Recover,
                env: opts.env.clone(),
                digest: cur,
                reference: target.release_record(&cur)?.map(|r| r.reference),
                version: None,
                commit: None,
                previous: history::last_switched(&events),
                who: opts.who.clone(),
                status: "ok".into(),
                detail: Some("current was switched by a run that did not record it".into()),
            };
            history::append(&target.history_path(), &e)?;
            notes.push(format!(
                "recorded that current is {} (an interrupted run switched it)",
                cur.short()
            ));
            events.push(e);
        }
        Ok(Session {
            target,
            _lock: lock,
            events,
            notes,
        })
    }

    fn record(&mut self, e: Event) -> Result<()> {
        history::append(&self.target.history_path(), &e)?;
        self.events.push(e);
        Ok(())
    }

    /// Makes `releases/<hex>` hold exactly the artifact: reuses an intact installed folder, else fetches it by
    /// digest into a staging folder and renames it into place. Returns whether it was reused.
    async fn install(
        &mut self,
        store: &dyn Store,
        pinned: &Reference,
        digest: &Digest,
        opts: &DeployOptions,
        observer: &dyn Observer,
    ) -> Result<bool> {
        if self.target.release_intact(digest)? {
            return Ok(true);
        }
        if self.target.release_dir(digest).exists() {
            self.notes.push(format!(
                "releases/{} differs from what was installed; reinstalling it (the modified copy goes to .sealpack/quarantine)",
                &digest.hex()[..12]
            ));
        }
        let staging = self.target.staging_dir(digest)?;
        let pausing;
        let observer: &dyn Observer = if opts.pause_at == Some(Pause::Install) {
            pausing = PausingObserver {
                inner: observer,
                target: self.target.clone(),
            };
            &pausing
        } else {
            observer
        };
        let pulled = pull::pull(store, pinned, &staging, &opts.limits, observer).await;
        if let Err(e) = pulled {
            // nothing of it may remain; current was never touched
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        if let Err(e) = self
            .target
            .commit_release(&staging, digest, &pinned.to_string())
        {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        Ok(false)
    }

    /// Switches `current` to `digest`, records `event`, runs the health command, and switches back (recording
    /// that) when it fails.
    async fn switch_and_check(
        &mut self,
        event: Event,
        opts: &DeployOptions,
    ) -> Result<Option<HealthOutcome>> {
        let digest = event.digest;
        let previous = event.previous;
        self.target.switch(&digest)?;
        if opts.pause_at == Some(Pause::Switched) {
            pause(&self.target, Pause::Switched);
        }
        self.record(event.clone())?;
        let Some(check) = &opts.health else {
            return Ok(None);
        };
        let outcome = health::run(
            check,
            &self.target.release_dir(&digest),
            &digest,
            &opts.env,
            self.target.root(),
        )
        .await?;
        self.record(Event {
            time: now_rfc3339(),
            action: Action::Health,
            status: if outcome.passed { "passed" } else { "failed" }.into(),
            detail: Some(outcome.summary()),
            previous: None,
            ..event.clone()
        })?;
        if outcome.passed {
            return Ok(Some(outcome));
        }
        // switch back to what ran before (or to nothing, as before a first deploy)
        let (now_current, switched_back) = match previous {
            Some(p) if p != digest && self.target.release_intact(&p)? => {
                self.target.switch(&p)?;
                let prev_event = self
                    .events
                    .iter()
                    .rev()
                    .find(|e| e.switched() && e.digest == p)
                    .cloned();
                self.record(Event {
                    time: now_rfc3339(),
                    action: Action::Rollback,
                    digest: p,
                    reference: prev_event.as_ref().and_then(|e| e.reference.clone()),
                    version: prev_event.as_ref().and_then(|e| e.version.clone()),
                    commit: prev_event.as_ref().and_then(|e| e.commit.clone()),
                    previous: Some(digest),
                    status: "ok".into(),
                    detail: Some(format!(
                        "automatic: the health command failed for {}",
                        digest.short()
                    )),
                    ..event.clone()
                })?;
                (Some(p), true)
            }
            Some(p) if p == digest => (Some(p), false),
            _ => {
                self.target.unset_current()?;
                (None, false)
            }
        };
        Err(Error::HealthCheck {
            subject: event
                .reference
                .clone()
                .unwrap_or_else(|| digest.to_string()),
            outcome: outcome.summary(),
            now_current,
            switched_back,
        })
    }
}

/// Verifies `reference` through `gate`, installs it into `target_dir` and makes it current (module docs).
pub async fn deploy(
    store: &dyn Store,
    reference: &Reference,
    gate: &Gate,
    target_dir: &Path,
    opts: &DeployOptions,
    observer: &dyn Observer,
) -> Result<DeployReport> {
    deploy_as(
        store,
        reference,
        gate,
        target_dir,
        opts,
        observer,
        Action::Deploy,
        None,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn deploy_as(
    store: &dyn Store,
    reference: &Reference,
    gate: &Gate,
    target_dir: &Path,
    opts: &DeployOptions,
    observer: &dyn Observer,
    action: Action,
    detail: Option<String>,
) -> Result<DeployReport> {
    let mut session = Session::open(target_dir, opts, &format!("deploying {reference}"), true)?;
    let subject = store::resolve(store, reference).await?;
    let digest = subject.digest();
    let pinned = reference.pinned(digest);
    let (version, commit) = file_artifact(&subject, &pinned)?;
    let verdict = gate
        .check(store, &pinned, &digest, time::OffsetDateTime::now_utc())
        .await?;
    let reused = session
        .install(store, &pinned, &digest, opts, observer)
        .await?;
    let previous = session.target.current()?;
    let event = Event {
        time: now_rfc3339(),
        action,
        env: opts.env.clone(),
        digest,
        reference: Some(pinned.to_string()),
        version: version.clone(),
        commit: commit.clone(),
        previous,
        who: opts.who.clone(),
        status: if opts.health.is_some() {
            "pending-health"
        } else {
            "ok"
        }
        .into(),
        detail,
    };
    let health = session.switch_and_check(event, opts).await?;
    Ok(DeployReport {
        action,
        env: opts.env.clone(),
        reference: pinned.to_string(),
        digest,
        release_dir: session.target.release_dir(&digest),
        previous,
        reused,
        version,
        commit,
        verdict,
        health,
        notes: std::mem::take(&mut session.notes),
    })
}

/// Switches `target_dir` back to the newest known good release before the current one (or to `to`), after
/// re-verifying it through `gate` against the repository it was deployed from. Releases the gate now denies
/// (revoked, signature withdrawn, policy changed) are skipped with a note; a registry that cannot be reached is an
/// error, never a reason to skip the check.
pub async fn rollback(
    stores: &StoreOptions,
    gate: &Gate,
    target_dir: &Path,
    to: Option<&Digest>,
    opts: &DeployOptions,
    observer: &dyn Observer,
) -> Result<DeployReport> {
    let mut session = Session::open(target_dir, opts, "rolling back", false)?;
    let current = session.target.current()?;
    let candidates: Vec<Event> = match to {
        Some(d) => {
            let e = session
                .events
                .iter()
                .rev()
                .find(|e| e.switched() && e.digest == *d && e.reference.is_some())
                .cloned()
                .ok_or_else(|| {
                    Error::usage_hint(
                        format!(
                            "{d} was never deployed to {} (nothing in its history says where it came from)",
                            target_dir.display()
                        ),
                        "see `sealpack history`, or deploy it with `sealpack deploy REPO@DIGEST`",
                    )
                })?;
            vec![e]
        }
        None => history::known_good(&session.events)
            .into_iter()
            .filter(|e| Some(e.digest) != current && e.reference.is_some())
            .cloned()
            .collect(),
    };
    let mut skipped = Vec::new();
    for candidate in candidates {
        let digest = candidate.digest;
        let reference = Reference::parse(candidate.reference.as_deref().unwrap_or_default())?;
        let pinned = reference.pinned(digest);
        let store = store::open(&pinned, stores, false).await?;
        let verdict = match gate
            .check(
                store.as_ref(),
                &pinned,
                &digest,
                time::OffsetDateTime::now_utc(),
            )
            .await
        {
            Ok(v) => v,
            Err(e @ Error::Denied { .. }) if to.is_none() => {
                skipped.push(format!("skipped {}: {e}", digest.short()));
                continue;
            }
            Err(e) => return Err(e),
        };
        let reused = session
            .install(store.as_ref(), &pinned, &digest, opts, observer)
            .await?;
        let event = Event {
            time: now_rfc3339(),
            action: Action::Rollback,
            env: opts.env.clone(),
            digest,
            reference: Some(pinned.to_string()),
            version: candidate.version.clone(),
            commit: candidate.commit.clone(),
            previous: current,
            who: opts.who.clone(),
            status: if opts.health.is_some() {
                "pending-health"
            } else {
                "ok"
            }
            .into(),
            detail: Some(match to {
                Some(_) => "requested".to_string(),
                None => "to the last known good release".to_string(),
            }),
        };
        let health = session.switch_and_check(event, opts).await?;
        let mut notes = std::mem::take(&mut session.notes);
        notes.extend(skipped);
        return Ok(DeployReport {
            action: Action::Rollback,
            env: opts.env.clone(),
            reference: pinned.to_string(),
            digest,
            release_dir: session.target.release_dir(&digest),
            previous: current,
            reused,
            version: candidate.version,
            commit: candidate.commit,
            verdict,
            health,
            notes,
        });
    }
    let nothing = format!(
        "a known good release to roll back to in {} (current: {})",
        target_dir.display(),
        current.map_or("none".to_string(), |d| d.to_string())
    );
    if skipped.is_empty() {
        return Err(Error::NotFound { what: nothing });
    }
    // every candidate was there but the gate denies each now
    let mut reasons = vec![format!("no release the gate allows: {nothing}")];
    reasons.extend(skipped);
    Err(Error::Denied {
        subject: format!("{} ({})", target_dir.display(), opts.env),
        reasons,
    })
}

/// The history of `target_dir`, newest first, for `env` (all environments when `None`).
pub fn history(target_dir: &Path, env: Option<&str>) -> Result<Vec<Event>> {
    let target = Target::open(target_dir, false)?;
    if let Some(env) = env {
        target.check_env(env)?;
    }
    let (events, _) = history::read(&target.history_path())?;
    Ok(events
        .into_iter()
        .rev()
        .filter(|e| env.is_none_or(|v| e.env == v))
        .collect())
}

/// The digest an environment runs, from its target folder: what `current` points at, with the folder's
/// environment checked.
pub fn running(target_dir: &Path, env: &str) -> Result<Digest> {
    let target = Target::open(target_dir, false)?;
    match target.env()? {
        Some(e) if e == env => {}
        Some(e) => {
            return Err(Error::usage(format!(
                "{} serves {e:?}, not {env:?}",
                target_dir.display()
            )));
        }
        None => {
            return Err(Error::usage(format!(
                "{} has never been deployed to",
                target_dir.display()
            )));
        }
    }
    target.current()?.ok_or_else(|| {
        Error::usage(format!(
            "nothing is current in {} ({env} runs nothing)",
            target_dir.display()
        ))
    })
}

/// What `promote` did.
#[derive(Debug, Clone, Serialize)]
pub struct PromoteReport {
    /// `REPO@sha256:...` promoted.
    pub reference: String,
    /// The digest.
    pub digest: Digest,
    /// Source environment.
    pub from: String,
    /// Target environment.
    pub to: String,
    /// How the source environment's digest was established.
    pub evidence: String,
    /// Why the target's gate let it through.
    pub verdict: Verdict,
    /// The signed promotion statement.
    pub statement: crate::sign::AttestReport,
    /// The deploy to the target folder, when one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deploy: Option<DeployReport>,
}

/// Where `promote` learns what the source environment runs.
pub enum Source<'a> {
    /// Its target folder's `current`.
    Target(&'a Path),
    /// A deployment record in the registry, signed by a key the gate trusts.
    Record,
}

/// Promotes the digest `from_env` runs to `to_env`: it must be the digest `reference` names (when it names one),
/// it is re-verified through the target's `gate`, a promotion statement signed by `key` is attached to it, and,
/// with `target_dir`, it is deployed there (fetched by that digest).
#[allow(clippy::too_many_arguments)]
pub async fn promote(
    store: &dyn Store,
    reference: &Reference,
    gate: &Gate,
    source: Source<'_>,
    from_env: &str,
    key: &crate::keys::PrivateKey,
    target_dir: Option<&Path>,
    opts: &DeployOptions,
    observer: &dyn Observer,
) -> Result<PromoteReport> {
    promotion::check_env(from_env).map_err(|e| Error::usage(e.to_string()))?;
    promotion::check_env(&opts.env).map_err(|e| Error::usage(e.to_string()))?;
    if from_env == opts.env {
        return Err(Error::usage("--from and --to name the same environment"));
    }
    let (digest, evidence) = match source {
        Source::Target(dir) => {
            let running = running(dir, from_env)?;
            if let Some(named) = reference.digest() {
                check_same(reference, named, &running, from_env)?;
            }
            if reference.tag().is_some() {
                let raw = store::resolve(store, reference).await?;
                check_same(reference, &raw.digest(), &running, from_env)?;
            }
            (running, format!("{from_env} runs it in {}", dir.display()))
        }
        Source::Record => {
            let raw = store::resolve(store, reference).await?;
            let digest = raw.digest();
            let pinned = reference.pinned(digest);
            let report = crate::verify::check_attestations(
                store,
                &pinned,
                &digest,
                &gate.trusted_keys(),
                promotion::DEPLOYMENT_TYPE,
            )
            .await?;
            let record = report.verified.iter().find_map(|v| {
                promotion::parse_deployment(&v.statement["predicate"])
                    .ok()
                    .filter(|d| d.environment == from_env && d.digest == digest.to_string())
                    .map(|d| (d, v.keys.join(", ")))
            });
            match record {
                Some((d, by)) => (
                    digest,
                    format!(
                        "deployment record: {from_env} since {} ({} in {}), signed by {by}",
                        d.deployed_at, d.deployed_by, d.target
                    ),
                ),
                None => {
                    return Err(Error::Denied {
                        subject: pinned.to_string(),
                        reasons: vec![format!(
                            "no deployment record signed by a trusted key says {from_env} runs it; pass --from-target DIR (the {from_env} folder), or deploy with --sign-key"
                        )],
                    });
                }
            }
        }
    };
    let pinned = reference.pinned(digest);
    let verdict = gate
        .check(store, &pinned, &digest, time::OffsetDateTime::now_utc())
        .await?;
    let subject = store
        .fetch_manifest(store::ManifestRef::Digest(&digest))
        .await?
        .ok_or_else(|| Error::NotFound {
            what: pinned.to_string(),
        })?;
    let predicate = promotion::build_promotion(
        &digest.to_string(),
        from_env,
        &opts.env,
        &now_rfc3339(),
        &opts.who,
    )?;
    let statement = crate::sign::attest(
        store,
        &pinned,
        &subject,
        key,
        promotion::PROMOTION_TYPE,
        &predicate,
    )
    .await?;
    let deploy = match target_dir {
        Some(dir) => Some(
            deploy_as(
                store,
                &pinned,
                gate,
                dir,
                opts,
                observer,
                Action::Promote,
                Some(format!("promoted from {from_env}")),
            )
            .await?,
        ),
        None => None,
    };
    Ok(PromoteReport {
        reference: pinned.to_string(),
        digest,
        from: from_env.to_string(),
        to: opts.env.clone(),
        evidence,
        verdict,
        statement,
        deploy,
    })
}

fn check_same(reference: &Reference, named: &Digest, running: &Digest, env: &str) -> Result<()> {
    if named == running {
        return Ok(());
    }
    Err(Error::Denied {
        subject: reference.pinned(*named).to_string(),
        reasons: vec![format!(
            "promotion moves the digest {env} runs, {running}; {reference} is {named}"
        )],
    })
}

/// Signs a deployment record for what was just deployed (so a later `promote` without the source folder can
/// trust that this environment runs it).
pub async fn sign_deployment_record(
    store: &dyn Store,
    report: &DeployReport,
    key: &crate::keys::PrivateKey,
    target_dir: &Path,
    who: &str,
) -> Result<crate::sign::AttestReport> {
    let reference = Reference::parse(&report.reference)?;
    let subject = store
        .fetch_manifest(store::ManifestRef::Digest(&report.digest))
        .await?
        .ok_or_else(|| Error::NotFound {
            what: report.reference.clone(),
        })?;
    let host = crate::provenance::hostname();
    let abs = std::path::absolute(target_dir).unwrap_or_else(|_| target_dir.to_path_buf());
    let predicate = promotion::build_deployment(
        &report.digest.to_string(),
        &report.env,
        &now_rfc3339(),
        who,
        &format!("{host}:{}", abs.display()),
    )?;
    crate::sign::attest(
        store,
        &reference,
        &subject,
        key,
        promotion::DEPLOYMENT_TYPE,
        &predicate,
    )
    .await
}
