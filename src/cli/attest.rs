//! `attest` and `verify-attestation`.

use std::path::Path;

use sealpack::artifact::archive::Limits;
use sealpack::artifact::contents;
use sealpack::formats::{self, cyclonedx, intoto, slsa, spdx};
use sealpack::oci::{Manifest, annotations};
use sealpack::provenance::{BuildEnvironment, hostname, is_commit_id, now_rfc3339};
use sealpack::store;
use sealpack::{Error, Result, keys};

use super::{
    AttestArgs, Ctx, RevokeArgs, VerifyAttestationArgs, output, parse_ref, password, trusted_keys,
};

/// Largest predicate file accepted.
const MAX_PREDICATE_FILE: u64 = 16 << 20;

/// SLSA provenance from the environment, with the flags overriding each fact.
fn provenance_predicate(a: &AttestArgs, started: &str) -> Result<serde_json::Value> {
    let cwd = std::env::current_dir().map_err(|e| Error::io("reading", "the current folder", e))?;
    let env = BuildEnvironment::gather(&|k| std::env::var(k).ok(), &cwd, &hostname());
    if env.dirty && !a.allow_dirty && a.commit.is_none() {
        return Err(Error::usage_hint(
            format!(
                "the git work tree at {} has uncommitted changes: it is not the commit it would claim",
                cwd.display()
            ),
            "commit or stash the changes, or pass --allow-dirty",
        ));
    }
    let commit = a.commit.clone().or(env.commit.clone()).ok_or_else(|| {
        Error::usage_hint(
            "no commit known for the provenance",
            "run inside the git work tree that was built, or pass --commit SHA",
        )
    })?;
    if !is_commit_id(&commit) {
        return Err(Error::usage(format!(
            "--commit {commit:?} is not a full 40-hex git commit id"
        )));
    }
    let source_uri = a.source_uri.clone().or_else(|| env.source_uri()).ok_or_else(|| {
        Error::usage_hint(
            "no source repository known for the provenance",
            "run inside a git work tree with an origin remote, or pass --source-uri git+https://HOST/REPO@refs/heads/BRANCH",
        )
    })?;
    let mut external = std::collections::BTreeMap::new();
    external.insert(
        "source".to_string(),
        serde_json::Value::String(source_uri.clone()),
    );
    for (k, v) in &env.parameters {
        external.insert(k.clone(), serde_json::Value::String(v.clone()));
    }
    let facts = slsa::BuildFacts {
        source_uri,
        commit,
        builder_id: a.builder_id.clone().unwrap_or(env.builder_id),
        build_type: a.build_type.clone().unwrap_or(env.build_type),
        invocation_id: a.invocation_id.clone().or(env.invocation_id),
        started_on: Some(started.to_string()),
        finished_on: Some(now_rfc3339()),
        external_parameters: external,
        internal_parameters: Default::default(),
        builder_version: [(
            "sealpack".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        )]
        .into(),
    };
    slsa::build(&facts).map_err(|e| Error::usage(format!("cannot build the provenance: {e}")))
}

fn read_predicate(path: &Path) -> Result<serde_json::Value> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io("reading", path, e))?;
    if meta.len() > MAX_PREDICATE_FILE {
        return Err(Error::usage(format!(
            "{}: {} bytes, over the {MAX_PREDICATE_FILE}-byte cap for a predicate",
            path.display(),
            meta.len()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io("reading", path, e))?;
    let value = formats::parse_json_document("predicate file", &bytes, MAX_PREDICATE_FILE as usize)
        .map_err(|e| Error::usage(format!("{}: {e}", path.display())))?;
    if !value.is_object() {
        return Err(Error::usage(format!(
            "{}: a predicate must be a JSON object",
            path.display()
        )));
    }
    Ok(value)
}

pub(super) async fn cmd_attest(ctx: &Ctx, a: AttestArgs) -> Result<()> {
    let started = now_rfc3339();
    let reference = parse_ref(&a.reference)?;
    // everything local first: a bad predicate or key never touches the registry
    let local = if a.provenance {
        Some((
            slsa::PREDICATE_TYPE.to_string(),
            provenance_predicate(&a, &started)?,
        ))
    } else if let Some(p) = &a.predicate {
        let t = a.predicate_type.clone().unwrap_or_default();
        Some((
            intoto::resolve_type_alias(&t).to_string(),
            read_predicate(p)?,
        ))
    } else {
        None
    };
    let key = keys::load_private_key_file(
        &a.key,
        &mut password::for_existing_key,
        a.allow_insecure_key,
    )?;
    let store = store::open(&reference, &ctx.store_opts, true).await?;
    let subject = store::resolve(store.as_ref(), &reference).await?;
    let (predicate_type, predicate) = match local {
        Some(p) => p,
        None => sbom(store.as_ref(), &reference, &subject, &a.sbom_format).await?,
    };
    let report = sealpack::sign::attest(
        store.as_ref(),
        &reference,
        &subject,
        &key,
        &predicate_type,
        &predicate,
    )
    .await?;
    if ctx.json {
        return output::json(&report);
    }
    if !ctx.quiet {
        output::note(&format!(
            "{} {} by key {} in {} ({} attestation(s) there)",
            if report.added {
                "attested"
            } else {
                "already attested"
            },
            report.predicate_type,
            &report.key_id[..12],
            report.attestation_tag,
            report.attestations
        ));
    }
    output::line(&report.reference)
}

/// An SBOM of the artifact's files (every file inside folder layers too).
async fn sbom(
    store: &dyn store::Store,
    reference: &sealpack::Reference,
    subject: &sealpack::oci::RawManifest,
    format: &str,
) -> Result<(String, serde_json::Value)> {
    let manifest = match subject.parse()? {
        Manifest::Image(m) => m,
        Manifest::Index(_) => {
            return Err(Error::Unsupported {
                what: reference.pinned(subject.digest()).to_string(),
                reason: "an SBOM of files needs a file artifact, not an image index".into(),
            });
        }
    };
    if manifest.config.media_type == sealpack::oci::media::OCI_IMAGE_CONFIG
        || manifest.config.media_type == sealpack::oci::media::DOCKER_IMAGE_CONFIG
    {
        return Err(Error::Unsupported {
            what: reference.pinned(subject.digest()).to_string(),
            reason: "this is a container image; sealpack's SBOM lists the files of file artifacts. Attach the image's SBOM from your image tooling: `attest --predicate FILE --type cyclonedx`".into(),
        });
    }
    let tmp = tempfile::Builder::new()
        .prefix("sealpack-sbom-")
        .tempdir()
        .map_err(|e| Error::io("creating a temporary folder", std::env::temp_dir(), e))?;
    let spdx_format = format == "spdx";
    let files = contents::list_files(
        store,
        &manifest,
        &Limits::default(),
        tmp.path(),
        spdx_format,
    )
    .await?;
    let entries: Vec<cyclonedx::FileEntry> = files
        .into_iter()
        .map(|f| cyclonedx::FileEntry {
            path: f.path,
            sha256: f.sha256,
            size: f.size,
            sha1: f.sha1,
        })
        .collect();
    let name = store.name();
    let digest = subject.digest().to_string();
    let version = manifest.annotation(annotations::VERSION);
    let created = manifest.annotation(annotations::CREATED);
    let bad = |e: formats::FormatError| Error::usage(format!("cannot build the SBOM: {e}"));
    if spdx_format {
        let created = created.map(str::to_string).unwrap_or_else(now_rfc3339);
        Ok((
            spdx::PREDICATE_TYPE.to_string(),
            spdx::build(&name, &digest, version, &entries, &created).map_err(bad)?,
        ))
    } else {
        Ok((
            cyclonedx::PREDICATE_TYPE.to_string(),
            cyclonedx::build(&name, &digest, version, &entries, created).map_err(bad)?,
        ))
    }
}

pub(super) async fn cmd_verify_attestation(ctx: &Ctx, a: VerifyAttestationArgs) -> Result<()> {
    let reference = parse_ref(&a.reference)?;
    let trusted = trusted_keys(&a.key)?;
    let store = store::open(&reference, &ctx.store_opts, false).await?;
    let report = sealpack::verify::verify_attestation(
        store.as_ref(),
        &reference,
        &trusted,
        &a.predicate_type,
    )
    .await?;
    if ctx.json {
        return output::json(&report);
    }
    if !ctx.quiet {
        for v in &report.verified {
            output::note(&format!(
                "verified: {} attestation {} of {} by {}",
                v.predicate_type,
                v.layer,
                v.manifest.short(),
                v.keys.join(", ")
            ));
        }
    }
    // the verified statement on stdout (the first one), then the pinned reference as the last line
    let first = &report.verified[0].statement;
    output::line(&serde_json::to_string_pretty(first).expect("statement serialises"))?;
    output::line(&report.reference)
}

pub(super) async fn cmd_revoke(ctx: &Ctx, a: RevokeArgs) -> Result<()> {
    let reference = parse_ref(&a.reference)?;
    // the reason is checked before the key is unlocked or the registry asked
    formats::revocation::build(
        &sealpack::digest::empty_json_digest().to_string(),
        &a.reason,
        &now_rfc3339(),
    )
    .map_err(|e| Error::usage(e.to_string()))?;
    let key = keys::load_private_key_file(
        &a.key,
        &mut password::for_existing_key,
        a.allow_insecure_key,
    )?;
    let store = store::open(&reference, &ctx.store_opts, true).await?;
    let subject = store::resolve(store.as_ref(), &reference).await?;
    let predicate =
        formats::revocation::build(&subject.digest().to_string(), &a.reason, &now_rfc3339())
            .map_err(|e| Error::usage(e.to_string()))?;
    let report = sealpack::sign::attest(
        store.as_ref(),
        &reference,
        &subject,
        &key,
        formats::revocation::PREDICATE_TYPE,
        &predicate,
    )
    .await?;
    if ctx.json {
        return output::json(&report);
    }
    if !ctx.quiet {
        output::note(&format!(
            "revoked by key {}: every verify that trusts this key now denies {}",
            &report.key_id[..12],
            report.digest
        ));
    }
    output::line(&report.reference)
}
