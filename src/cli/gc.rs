//! `gc`: retention that never deletes a released, deployed or promoted digest.

use std::path::PathBuf;

use clap::Args;
use sealpack::gc::{self, Action, GcOptions};
use sealpack::{Error, Reference, Result, store};

use super::{Ctx, output, parse_ref};

/// `gc` arguments.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// The repository: HOST[:PORT]/REPO or oci:PATH (no tag, no digest)
    #[arg(value_name = "REPO")]
    pub repository: String,
    /// Keep the N newest digests (by org.opencontainers.image.created); older ones go unless protected
    #[arg(long, value_name = "N", required = true)]
    pub keep: usize,
    /// Print the plan (what is kept and why, what would be deleted) and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// A deploy target folder whose deployed digests (history, current, releases) are kept; may be repeated
    #[arg(long = "target", value_name = "DIR")]
    pub targets: Vec<PathBuf>,
    /// Layout only: an unreached blob written or reused within this time stays (a push may not have tagged it
    /// yet), e.g. 30m, 2h, 0s
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub grace: String,
}

pub(super) async fn cmd_gc(ctx: &Ctx, a: GcArgs) -> Result<()> {
    let reference = parse_ref(&a.repository)?;
    if reference.tag().is_some() || reference.digest().is_some() {
        return Err(Error::usage_hint(
            format!(
                "gc takes a repository, not a tag or digest: {}",
                a.repository
            ),
            format!("name the repository alone: {}", reference.repository_name()),
        ));
    }
    // a registry needs push (delete) access; a layout must already exist
    let for_push = matches!(reference, Reference::Registry(_));
    let store = store::open(&reference, &ctx.store_opts, for_push).await?;
    let grace = store::retry::parse_duration(&a.grace).ok_or_else(|| {
        Error::usage(format!(
            "--grace {:?} is not a duration (e.g. 30m, 2h, 0s)",
            a.grace
        ))
    })?;
    let a_grace = a.grace.clone();
    let opts = GcOptions {
        keep: a.keep,
        dry_run: a.dry_run,
        targets: a.targets,
        grace,
    };
    let report = gc::gc(store.as_ref(), &opts).await?;
    if ctx.json {
        return output::json(&report);
    }
    for e in &report.entries {
        output::line(&format!(
            "{:<6}  {}  {}  {}",
            match e.action {
                Action::Keep => "keep",
                Action::Delete => "delete",
            },
            e.digest,
            if e.tags.is_empty() {
                "-".to_string()
            } else {
                e.tags.join(",")
            },
            e.reasons.join("; ")
        ))?;
    }
    if !ctx.quiet {
        let doomed = report
            .entries
            .iter()
            .filter(|e| e.action == Action::Delete)
            .count();
        if report.dry_run {
            output::note(&format!(
                "dry run: nothing was changed; {doomed} digest(s) would be deleted, {} kept",
                report.entries.len() - doomed
            ));
        } else {
            output::note(&format!(
                "deleted {doomed} digest(s) ({} manifest(s) with evidence and children), kept {}",
                report.deleted_manifests,
                report.entries.len() - doomed
            ));
            match report.blobs_removed {
                Some(s) => output::note(&format!(
                    "removed {} unreachable blob(s) ({}){}",
                    s.blobs,
                    output::human_bytes(s.bytes),
                    if s.recent > 0 {
                        format!(
                            "; kept {} unreachable blob(s) written or reused within --grace {}                              (a push may still tag them; run again later, or with --grace 0s when no push runs)",
                            s.recent, a_grace
                        )
                    } else {
                        String::new()
                    }
                )),
                None => output::note(
                    "blobs are left to the registry's own garbage collection \
                     (distribution: `registry garbage-collect CONFIG`)",
                ),
            }
        }
    }
    Ok(())
}
