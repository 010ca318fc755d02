//! `trace`: commit -> digests and environments, or digest -> commit, builder, evidence, environments.

use std::path::PathBuf;

use clap::Args;
use sealpack::trace::{self, Check, CommitTrace, DigestTrace, TraceOptions};
use sealpack::{Error, Result, store};

use super::{Ctx, output, parse_ref};

/// `trace` arguments.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// REPO:TAG, REPO@sha256:..., oci:PATH[:TAG|@DIGEST], or a git COMMIT (40 hex digits) with --repo or --target
    #[arg(value_name = "REF|COMMIT")]
    pub what: String,
    /// With a COMMIT: the repository whose tags are searched (REPO or oci:PATH; at most 1000 tags are examined)
    #[arg(long, value_name = "REPO")]
    pub repo: Option<String>,
    /// A public key (PEM) to verify evidence against; may be repeated. Without keys nothing is shown verified
    #[arg(long, value_name = "PUB", conflicts_with = "policy")]
    pub key: Vec<PathBuf>,
    /// Verify evidence against this policy file's keys (docs/POLICY.md); the policy's rules do not gate
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// A deploy target folder whose history is read for the environments; may be repeated
    #[arg(long = "target", value_name = "DIR")]
    pub targets: Vec<PathBuf>,
}

pub(super) async fn cmd_trace(ctx: &Ctx, a: TraceArgs) -> Result<()> {
    let keys = match &a.policy {
        Some(p) => sealpack::verify::policy::Policy::load(p)?.trusted_keys(),
        None => super::trusted_keys(&a.key)?,
    };
    let opts = TraceOptions {
        keys,
        targets: a.targets.clone(),
        ..TraceOptions::default()
    };
    if let Some(commit) = trace::parse_commit(&a.what) {
        if a.repo.is_none() && a.targets.is_empty() {
            return Err(Error::usage_hint(
                format!(
                    "{} is a commit: trace needs somewhere to look for it",
                    a.what
                ),
                "add --repo REPO (the repository whose tags to search) and/or --target DIR (a deploy target)",
            ));
        }
        let report = match &a.repo {
            Some(r) => {
                let repo = parse_ref(r)?;
                if repo.digest().is_some() {
                    return Err(Error::usage(format!(
                        "--repo {r} names a digest; give the repository (REPO or oci:PATH)"
                    )));
                }
                let store = store::open(&repo, &ctx.store_opts, false).await?;
                trace::trace_commit(Some((store.as_ref(), &repo)), &commit, &opts).await?
            }
            None => trace::trace_commit(None, &commit, &opts).await?,
        };
        if ctx.json {
            return output::json(&report);
        }
        return print_commit(ctx, &report);
    }
    if let Some(r) = &a.repo {
        return Err(Error::usage_hint(
            format!(
                "--repo {r} is for tracing a COMMIT, and {} is not one (40 hex digits)",
                a.what
            ),
            "trace a reference without --repo: sealpack trace REPO:TAG",
        ));
    }
    let reference = parse_ref(&a.what)?;
    let store = store::open(&reference, &ctx.store_opts, false).await?;
    let report = trace::trace_reference(store.as_ref(), &reference, &opts).await?;
    if ctx.json {
        return output::json(&report);
    }
    print_digest(&report, "")
}

fn print_commit(ctx: &Ctx, r: &CommitTrace) -> Result<()> {
    output::line(&format!("commit {}", r.commit))?;
    if let Some(repo) = &r.repository {
        output::line(&format!(
            "  searched {}: {} of {} tag(s){}",
            repo,
            r.tags_examined,
            r.tags_total,
            if r.capped {
                format!(
                    " (capped at {}; the rest were not examined)",
                    r.tags_examined
                )
            } else {
                String::new()
            }
        ))?;
    }
    if r.capped && !ctx.quiet {
        output::note(&format!(
            "note: only the first {} of {} tags were examined",
            r.tags_examined, r.tags_total
        ));
    }
    if r.digests.is_empty() {
        output::line("  no digest found for this commit")?;
    }
    for d in &r.digests {
        print_digest(d, "  ")?;
    }
    Ok(())
}

fn status(c: &Check) -> String {
    if c.verified {
        format!(
            "verified by {}",
            c.keys
                .iter()
                .zip(&c.key_ids)
                .map(|(k, id)| format!("{k} ({})", &id[..id.len().min(12)]))
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        let reason = c.unverified_reason.as_deref().unwrap_or("not checked");
        if c.claimed_key_ids.is_empty() {
            return format!("unverified ({reason})");
        }
        format!(
            "unverified (signed by key id {}; {reason})",
            c.claimed_key_ids
                .iter()
                .map(|k| k[..k.len().min(12)].to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

fn print_digest(d: &DigestTrace, indent: &str) -> Result<()> {
    // one fact per line: a line break inside an (untrusted) value must not start a line of its own
    let line =
        |s: String| output::line(&format!("{indent}{}", s.replace(['\n', '\r'], "\u{fffd}")));
    line(d.reference.clone().unwrap_or_else(|| d.digest.to_string()))?;
    if !d.tags.is_empty() {
        line(format!("  tags        {}", d.tags.join(", ")))?;
    }
    if !d.matched_by.is_empty() {
        line(format!("  found by    {}", d.matched_by.join(", ")))?;
    }
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    if d.reference.is_some() {
        line(format!(
            "  commit      {} (revision annotation)",
            opt(&d.revision)
        ))?;
        line(format!("  source      {}", opt(&d.source)))?;
        line(format!("  version     {}", opt(&d.version)))?;
        line(format!("  created     {}", opt(&d.created)))?;
    }
    if let Some(ev) = &d.evidence {
        if ev.signatures.is_empty() {
            line("  signature   none".into())?;
        }
        for s in &ev.signatures {
            line(format!("  signature   {}", status(&s.check)))?;
        }
        for p in &ev.provenance {
            line(format!(
                "  provenance  builder {}, source {}, commit {}{}: {}",
                p.builder_id,
                p.source_uri.as_deref().unwrap_or("-"),
                p.commit.as_deref().unwrap_or("-"),
                if p.commit_matches_revision == Some(false) {
                    " (DIFFERS from the revision annotation)"
                } else {
                    ""
                },
                status(&p.check)
            ))?;
        }
        for s in &ev.sboms {
            line(format!(
                "  sbom        {}, {} component(s): {}",
                s.format,
                s.components,
                status(&s.check)
            ))?;
        }
        for p in &ev.promotions {
            line(format!(
                "  promotion   {} -> {} at {} by {}: {}",
                p.from,
                p.to,
                p.promoted_at,
                p.promoted_by,
                status(&p.check)
            ))?;
        }
        for r in &ev.deployments {
            line(format!(
                "  deployment  {} at {} by {} ({}): {}",
                r.environment,
                r.deployed_at,
                r.deployed_by,
                r.target,
                status(&r.check)
            ))?;
        }
        for r in &ev.revocations {
            line(format!(
                "  revocation  {:?} at {}: {}",
                r.reason,
                r.revoked_at,
                status(&r.check)
            ))?;
        }
        for o in &ev.other {
            line(format!(
                "  attestation {}: {}",
                o.predicate_type,
                status(&o.check)
            ))?;
        }
        for i in &ev.ignored {
            let at = match (i.layer, &i.manifest) {
                (Some(l), Some(m)) => format!("layer {l} of {}: ", m.short()),
                _ => String::new(),
            };
            line(format!("  ignored     {at}{}", i.reason))?;
        }
    }
    for e in &d.environments {
        const SHOWN: usize = 5;
        let mut events: Vec<String> = e
            .events
            .iter()
            .rev()
            .take(SHOWN)
            .map(|v| format!("{} {} ({})", v.action_name(), v.time, v.status))
            .collect();
        if e.events.len() > SHOWN {
            events.push(format!("and {} earlier", e.events.len() - SHOWN));
        }
        line(format!(
            "  environment {} ({}): {}; {}",
            e.env,
            e.target.display(),
            if e.current { "current" } else { "not current" },
            events.join(", ")
        ))?;
    }
    for w in &d.warnings {
        line(format!("  warning     {w}"))?;
    }
    Ok(())
}
