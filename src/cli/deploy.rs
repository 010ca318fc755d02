//! `deploy`, `promote`, `rollback` and `history`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use sealpack::deploy::{self, DeployOptions, DeployReport, Event, HealthCheck};
use sealpack::verify::gate::Gate;
use sealpack::{Digest, Result, keys, store};

use super::{Ctx, output, parse_ref, password};

/// The gate: trusted keys or a policy file (exactly one).
#[derive(Debug, Args)]
pub struct GateArgs {
    /// A trusted public key (PEM); may be repeated: a signature by any of them counts, a revocation by any denies
    #[arg(
        long,
        value_name = "PUB",
        required_unless_present = "policy",
        conflicts_with = "policy"
    )]
    pub key: Vec<PathBuf>,
    /// A policy file (TOML, docs/POLICY.md): thresholds, key roles and validity, attestation rules, revocations
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
}

/// How the switched-to release is checked, and how long to wait for the target.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run with `sh -c` in the new release after the switch; if it fails, current switches back
    #[arg(long, value_name = "CMD")]
    pub health_cmd: Option<String>,
    /// Seconds the health command may take before it counts as failed
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub health_timeout: u64,
    /// Seconds to wait for another deploy to the same target to finish
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub lock_wait: u64,
}

/// `deploy` arguments.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// What to deploy: REPO:TAG, REPO@sha256:..., or oci:PATH:TAG (resolved once; fetched by digest)
    #[arg(value_name = "REF")]
    pub reference: String,
    /// The environment this target serves (staging, production, ...)
    #[arg(long, value_name = "ENV")]
    pub env: String,
    /// The target folder: releases/<digest>, current, .sealpack/history
    #[arg(long, value_name = "DIR")]
    pub target: PathBuf,
    #[command(flatten)]
    pub gate: GateArgs,
    #[command(flatten)]
    pub run: RunArgs,
    /// Also attach a deployment record signed by this key (lets `promote` prove what this environment runs)
    #[arg(long, value_name = "KEY")]
    pub sign_key: Option<PathBuf>,
    /// Accept an unencrypted private key that other users can read
    #[arg(long)]
    pub allow_insecure_key: bool,
}

/// `promote` arguments.
#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The artifact's repository (REPO, REPO:TAG or REPO@sha256:...); the digest must be the one --from runs
    #[arg(value_name = "REF")]
    pub reference: String,
    /// The source environment
    #[arg(long, value_name = "ENV")]
    pub from: String,
    /// The target environment
    #[arg(long, value_name = "ENV")]
    pub to: String,
    /// The source environment's target folder (else a signed deployment record in the registry is required)
    #[arg(long, value_name = "DIR")]
    pub from_target: Option<PathBuf>,
    /// Deploy to this folder as the target environment after recording the promotion
    #[arg(long, value_name = "DIR")]
    pub target: Option<PathBuf>,
    #[command(flatten)]
    pub gate: GateArgs,
    /// The key that signs the promotion statement
    #[arg(long, value_name = "KEY")]
    pub sign_key: PathBuf,
    #[command(flatten)]
    pub run: RunArgs,
    /// Accept an unencrypted private key that other users can read
    #[arg(long)]
    pub allow_insecure_key: bool,
}

/// `rollback` arguments.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The environment
    #[arg(long, value_name = "ENV")]
    pub env: String,
    /// The target folder
    #[arg(long, value_name = "DIR")]
    pub target: PathBuf,
    /// Roll back to this digest (one deployed here before) instead of the last known good release
    #[arg(long, value_name = "DIGEST")]
    pub to: Option<String>,
    #[command(flatten)]
    pub gate: GateArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

/// `history` arguments.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only this environment's events (a target folder serves one environment)
    #[arg(long, value_name = "ENV")]
    pub env: Option<String>,
    /// The target folder
    #[arg(long, value_name = "DIR")]
    pub target: PathBuf,
}

fn gate(a: &GateArgs) -> Result<Gate> {
    match &a.policy {
        Some(p) => Ok(Gate::Policy(Box::new(
            sealpack::verify::policy::Policy::load(p)?,
        ))),
        None => Ok(Gate::Keys(super::trusted_keys(&a.key)?)),
    }
}

/// Who is acting: `SEALPACK_ACTOR`, else the CI's actor, else user@host.
fn who() -> String {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let Some(a) = var("SEALPACK_ACTOR") {
        return a;
    }
    if let Some(a) = var("GITHUB_ACTOR") {
        return format!("{a} (GitHub Actions)");
    }
    if let Some(a) = var("GITLAB_USER_LOGIN") {
        return format!("{a} (GitLab CI)");
    }
    let user = var("USER").or_else(|| var("LOGNAME")).unwrap_or_else(|| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").map_or("unknown".into(), |m| format!("uid {}", m.uid()))
    });
    let host = sealpack::provenance::hostname();
    format!("{user}@{host}")
}

fn options(env: &str, run: &RunArgs) -> Result<DeployOptions> {
    Ok(DeployOptions {
        env: env.to_string(),
        who: who(),
        health: run.health_cmd.as_ref().map(|c| HealthCheck {
            command: c.clone(),
            timeout: Duration::from_secs(run.health_timeout),
        }),
        limits: sealpack::artifact::archive::Limits::default(),
        lock_wait: Duration::from_secs(run.lock_wait),
        pause_at: match std::env::var("SEALPACK_TEST_PAUSE_AT") {
            Ok(p) if !p.is_empty() => Some(p.parse()?),
            _ => None,
        },
    })
}

fn load_sign_key(path: &std::path::Path, allow_insecure: bool) -> Result<keys::PrivateKey> {
    Ok(keys::load_private_key_file(
        path,
        &mut password::for_existing_key,
        allow_insecure,
    )?)
}

fn print_report(ctx: &Ctx, r: &DeployReport) {
    if ctx.quiet {
        return;
    }
    for n in &r.notes {
        output::note(n);
    }
    for c in &r.verdict.checks {
        output::note(&format!("verified: {c}"));
    }
    output::note(&format!(
        "{} releases/{} ({})",
        if r.reused { "reused" } else { "installed" },
        &r.digest.hex()[..12],
        [
            r.version.as_deref(),
            r.commit.as_deref().map(|c| &c[..c.len().min(12)])
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ")
    ));
    output::note(&format!(
        "{}: current -> {}{}",
        r.env,
        r.digest.short(),
        r.previous
            .map(|p| format!(" (was {})", p.short()))
            .unwrap_or_default()
    ));
    if let Some(h) = &r.health {
        output::note(&format!("health: {}", h.summary()));
    }
}

pub(super) async fn cmd_deploy(ctx: &Ctx, a: DeployArgs) -> Result<()> {
    let reference = parse_ref(&a.reference)?;
    let gate = gate(&a.gate)?;
    let opts = options(&a.env, &a.run)?;
    let sign_key = match &a.sign_key {
        Some(p) => Some(load_sign_key(p, a.allow_insecure_key)?),
        None => None,
    };
    let store = store::open(&reference, &ctx.store_opts, sign_key.is_some()).await?;
    let bars = output::Bars::new(ctx.quiet);
    let report = deploy::deploy(store.as_ref(), &reference, &gate, &a.target, &opts, &bars).await?;
    let record = match &sign_key {
        Some(k) => Some(
            deploy::sign_deployment_record(store.as_ref(), &report, k, &a.target, &opts.who)
                .await?,
        ),
        None => None,
    };
    if ctx.json {
        // the deploy report, plus the deployment record when one was signed
        let mut v = serde_json::to_value(&report).expect("a report serialises");
        if let Some(r) = &record {
            v["deployment_record"] = serde_json::to_value(r).expect("a report serialises");
        }
        return output::json(&v);
    }
    print_report(ctx, &report);
    if let Some(r) = &record
        && !ctx.quiet
    {
        output::note(&format!(
            "deployment record signed by {} in {}",
            &r.key_id[..12],
            r.attestation_tag
        ));
    }
    output::line(&report.reference)
}

pub(super) async fn cmd_promote(ctx: &Ctx, a: PromoteArgs) -> Result<()> {
    let reference = parse_ref(&a.reference)?;
    let gate = gate(&a.gate)?;
    let opts = options(&a.to, &a.run)?;
    let key = load_sign_key(&a.sign_key, a.allow_insecure_key)?;
    let store = store::open(&reference, &ctx.store_opts, true).await?;
    let source = match &a.from_target {
        Some(dir) => deploy::Source::Target(dir),
        None => deploy::Source::Record,
    };
    let bars = output::Bars::new(ctx.quiet);
    let report = deploy::promote(
        store.as_ref(),
        &reference,
        &gate,
        source,
        &a.from,
        &key,
        a.target.as_deref(),
        &opts,
        &bars,
    )
    .await?;
    if ctx.json {
        return output::json(&report);
    }
    if !ctx.quiet {
        output::note(&format!("{}: {}", a.from, report.evidence));
        for c in &report.verdict.checks {
            output::note(&format!("verified for {}: {c}", a.to));
        }
        output::note(&format!(
            "promotion {} -> {} signed by {} in {}",
            a.from,
            a.to,
            &report.statement.key_id[..12],
            report.statement.attestation_tag
        ));
        if let Some(d) = &report.deploy {
            print_report(ctx, d);
        }
    }
    output::line(&report.reference)
}

pub(super) async fn cmd_rollback(ctx: &Ctx, a: RollbackArgs) -> Result<()> {
    let gate = gate(&a.gate)?;
    let opts = options(&a.env, &a.run)?;
    let to = a.to.as_deref().map(Digest::parse).transpose()?;
    let bars = output::Bars::new(ctx.quiet);
    let report =
        deploy::rollback(&ctx.store_opts, &gate, &a.target, to.as_ref(), &opts, &bars).await?;
    if ctx.json {
        return output::json(&report);
    }
    print_report(ctx, &report);
    output::line(&report.reference)
}

pub(super) fn cmd_history(ctx: &Ctx, a: HistoryArgs) -> Result<()> {
    let events = deploy::history(&a.target, a.env.as_deref())?;
    if ctx.json {
        return output::json(&events);
    }
    if events.is_empty() {
        if !ctx.quiet {
            output::note(&format!("no events in {}", a.target.display()));
        }
        return Ok(());
    }
    for e in &events {
        output::line(&history_line(e))?;
    }
    Ok(())
}

fn history_line(e: &Event) -> String {
    let action = serde_json::to_value(e.action)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    format!(
        "{}  {:<11} {:<10} {}  {:<14} {:<12} {:<14} {}{}",
        e.time,
        e.env,
        action,
        e.digest.short(),
        e.status,
        e.version.as_deref().unwrap_or("-"),
        e.commit
            .as_deref()
            .map(|c| &c[..c.len().min(12)])
            .unwrap_or("-"),
        e.who,
        e.detail
            .as_deref()
            .map(|d| format!("  ({d})"))
            .unwrap_or_default()
    )
}
