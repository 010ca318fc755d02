//! `copy`: an artifact with all its evidence, registry <-> registry <-> layout.

use clap::Args;
use sealpack::Result;
use sealpack::artifact::copy::{self, CopyOptions, EvidenceAction};
use sealpack::store;

use super::{Ctx, output, parse_ref};

/// `copy` arguments.
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// What to copy: REPO:TAG, REPO@sha256:..., or oci:PATH:TAG (an artifact, an image or a multi-platform index)
    #[arg(value_name = "SRC")]
    pub source: String,
    /// Where to: HOST[:PORT]/REPO[:TAG] or oci:PATH[:TAG] (the tag defaults to SRC's)
    #[arg(value_name = "DST")]
    pub destination: String,
    /// Move the destination tag even if it already points at a different digest
    #[arg(long)]
    pub allow_overwrite: bool,
    /// Allow the destination tag `latest`
    #[arg(long)]
    pub allow_latest: bool,
    /// Copy only the artifact, not its signatures, attestations and referrers
    #[arg(long)]
    pub no_evidence: bool,
}

pub(super) async fn cmd_copy(ctx: &Ctx, a: CopyArgs) -> Result<()> {
    let src_ref = parse_ref(&a.source)?;
    let dst_ref = parse_ref(&a.destination)?;
    let opts = CopyOptions {
        allow_overwrite: a.allow_overwrite,
        allow_latest: a.allow_latest,
        evidence: !a.no_evidence,
    };
    let src = store::open(&src_ref, &ctx.store_opts, false).await?;
    let dst = store::open(&dst_ref, &ctx.store_opts, true).await?;
    let bars = output::Bars::new(ctx.quiet);
    let report = copy::copy(src.as_ref(), &src_ref, dst.as_ref(), &dst_ref, &opts, &bars).await?;
    if ctx.json {
        return output::json(&report);
    }
    if !ctx.quiet {
        for e in &report.evidence {
            let what = match &e.tag {
                Some(t) => t.clone(),
                None => format!("referrer {}", e.source_manifest.short()),
            };
            let action = match e.action {
                EvidenceAction::Copied => "copied",
                EvidenceAction::Merged => "merged into the destination's",
                EvidenceAction::Present => "already present",
                EvidenceAction::Kept => {
                    "differs at the destination, left as it was (--allow-overwrite replaces it)"
                }
                EvidenceAction::Replaced => "replaced the destination's",
            };
            output::note(&format!("evidence {what}: {} layer(s), {action}", e.layers));
        }
        output::note(&format!(
            "{} manifest(s); blobs: {} copied ({}), {} mounted, {} already present{}",
            report.manifests,
            report.blobs_copied,
            output::human_bytes(report.bytes_copied),
            report.blobs_mounted,
            report.blobs_present,
            match (&report.tag, report.unchanged) {
                (Some(_), true) => " (the tag already pointed at this digest)",
                (None, _) => " (no tag: copied by digest)",
                _ => "",
            }
        ));
    }
    output::line(&report.destination)
}
