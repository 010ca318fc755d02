//! `push`: pack files and folders into an OCI artifact and upload it, content-addressed.
//!
//! Order of work, chosen so that a failure never leaves anything half-done behind a tag:
//! 1. check the inputs and the tag rules (before any network or disk work);
//! 2. hash every file and pack every folder (deterministically) into a temporary tar+gzip, so every layer has a
//!    digest before any upload;
//! 3. build the manifest and compare with what the tag points at now (no-clobber);
//! 4. upload only the blobs the store lacks (HEAD first; cross-repository mount when a source is known);
//! 5. put the manifest by digest, and only then move the tag.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use futures_util::future::try_join_all;
use serde::Serialize;

use super::Observer;
use super::archive;
use crate::digest::{self, Digest};
use crate::error::{Error, Result};
use crate::oci::{Descriptor, ImageManifest, RawManifest, annotations, media};
use crate::provenance::{self, GitInfo};
use crate::reference::Reference;
use crate::store::{BlobSource, ManifestRef, Store};

/// What to put in the manifest besides the files.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// `artifactType` (default [`media::SEALPACK_ARTIFACT`]).
    pub artifact_type: Option<String>,
    /// Media type for file layers (default `application/octet-stream`).
    pub file_media_type: Option<String>,
    /// Extra manifest annotations; they win over the ones sealpack fills in.
    pub annotations: BTreeMap<String, String>,
    /// The git commit; default: `git rev-parse HEAD` in `work_dir` when it is inside a work tree.
    pub commit: Option<String>,
    /// Explicit creation time (RFC 3339); wins over `source_date_epoch` and the commit time.
    pub created: Option<String>,
    /// `SOURCE_DATE_EPOCH`, as read by the caller.
    pub source_date_epoch: Option<i64>,
    /// Move a tag that already points at another digest.
    pub allow_overwrite: bool,
    /// Allow the tag `latest`.
    pub allow_latest: bool,
    /// Where to look for git facts (normally the current directory).
    pub work_dir: PathBuf,
    /// Folder for temporary packed layers (default: the system temp folder).
    pub temp_dir: Option<PathBuf>,
    /// Remembers file digests so an unchanged file is not read again.
    pub digest_cache: Option<crate::cache::DigestCache>,
}

/// What happened to one layer.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Transfer {
    /// Uploaded now.
    Uploaded,
    /// The store had it already.
    Present,
    /// Mounted from another repository of the same registry.
    Mounted,
}

/// One pushed layer.
#[derive(Debug, Clone, Serialize)]
pub struct PushedLayer {
    /// File or folder name (`org.opencontainers.image.title`).
    pub title: String,
    /// Layer media type.
    pub media_type: String,
    /// Layer digest.
    pub digest: Digest,
    /// Layer size.
    pub size: u64,
    /// What was done.
    pub transfer: Transfer,
}

/// The result of a push.
#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    /// `REPO@sha256:...`.
    pub reference: String,
    /// The manifest digest.
    pub digest: Digest,
    /// The tag pushed to.
    pub tag: String,
    /// The manifest's annotations.
    pub annotations: BTreeMap<String, String>,
    /// Layers in manifest order.
    pub layers: Vec<PushedLayer>,
    /// Bytes uploaded (0 when everything was there).
    pub bytes_uploaded: u64,
    /// Whether the tag already pointed at this digest (nothing was written).
    pub unchanged: bool,
}

/// Blobs mounted or uploaded at the same time.
const UPLOADS_IN_FLIGHT: usize = 4;

/// A layer ready to upload.
struct Prepared {
    desc: Descriptor,
    source: PathBuf,
}

/// Checks the tag rules of SPEC §3 (a tag is required; `latest` only when allowed).
pub fn check_push_tag(target: &Reference, allow_latest: bool) -> Result<String> {
    if target.digest().is_some() {
        return Err(Error::usage_hint(
            format!(
                "{target}: push needs a tag, not a digest (the digest is computed from the content)"
            ),
            "push to REPO:TAG",
        ));
    }
    let tag = target.tag().ok_or_else(|| {
        Error::usage_hint(
            format!("{target} has no tag: push needs one (a version, e.g. :v1.2.3)"),
            format!("push to {target}:v1.0.0"),
        )
    })?;
    if tag == "latest" && !allow_latest {
        return Err(Error::usage_hint(
            format!(
                "{target}: refusing the tag 'latest', which moves with every push and cannot pin a release"
            ),
            "use a version tag, or pass --allow-latest",
        ));
    }
    Ok(tag.to_string())
}

fn title_of(path: &Path) -> Result<String> {
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        Error::usage(format!(
            "{}: cannot take a file name from this path",
            path.display()
        ))
    })?;
    Ok(name.to_string())
}

/// Works out the manifest annotations: git facts, version, reproducible creation time, then the user's.
fn manifest_annotations(tag: &str, opts: &PushOptions) -> Result<BTreeMap<String, String>> {
    let mut a = BTreeMap::new();
    let git = GitInfo::discover(&opts.work_dir);
    let commit = match &opts.commit {
        Some(c) => {
            if !provenance::is_commit_id(c) {
                return Err(Error::usage(format!(
                    "--commit {c:?} is not a full 40-hex git commit id"
                )));
            }
            Some(c.clone())
        }
        None => git.as_ref().map(|g| g.commit.clone()),
    };
    if let Some(c) = &commit {
        a.insert(annotations::REVISION.into(), c.clone());
    }
    if let Some(url) = git.as_ref().and_then(|g| g.remote_url.clone()) {
        a.insert(annotations::SOURCE.into(), url);
    }
    a.insert(annotations::VERSION.into(), tag.to_string());
    let created = if let Some(c) = &opts.created {
        time::OffsetDateTime::parse(c, &time::format_description::well_known::Rfc3339)
            .map_err(|e| Error::usage(format!("--created {c:?} is not an RFC 3339 time: {e}")))?;
        Some(c.clone())
    } else if let Some(epoch) = opts.source_date_epoch {
        Some(
            provenance::rfc3339(epoch).ok_or_else(|| {
                Error::usage(format!("SOURCE_DATE_EPOCH={epoch} is out of range"))
            })?,
        )
    } else {
        let time = match (&git, &commit) {
            (Some(_), Some(c)) => GitInfo::commit_time(&opts.work_dir, c),
            _ => None,
        };
        time.and_then(provenance::rfc3339)
    };
    if let Some(c) = created {
        a.insert(annotations::CREATED.into(), c);
    }
    for (k, v) in &opts.annotations {
        a.insert(k.clone(), v.clone());
    }
    Ok(a)
}

/// Hashes a file, or takes its digest from the cache when the file is unchanged since it was last hashed.
fn hash_file(path: &Path, cache: Option<&crate::cache::DigestCache>) -> Result<(Digest, u64)> {
    let f = std::fs::File::open(path).map_err(|e| Error::io("reading", path, e))?;
    let before = f.metadata().map_err(|e| Error::io("reading", path, e))?;
    if let Some(d) = cache.and_then(|c| c.get(&before)) {
        return Ok((d, before.len()));
    }
    let started = std::time::SystemTime::now();
    let (digest, size) = digest::hash_reader(&f).map_err(|e| Error::io("reading", path, e))?;
    if let (Some(c), Ok(after)) = (cache, std::fs::metadata(path)) {
        c.put(&before, &after, &digest, started);
    }
    Ok((digest, size))
}

/// Hashes files and packs folders (on blocking threads), giving one descriptor per input path.
async fn prepare(paths: &[PathBuf], opts: &PushOptions, tmp: &Path) -> Result<Vec<Prepared>> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let meta = std::fs::metadata(path).map_err(|e| Error::io("reading", path, e))?;
        let title = title_of(path)?;
        if !seen.insert(title.clone()) {
            return Err(Error::usage(format!(
                "two inputs are both named {title:?}: each file of an artifact needs its own name"
            )));
        }
        let p = path.clone();
        if meta.is_dir() {
            let packed = tmp.join(format!("layer-{i}.tar.gz"));
            let packed2 = packed.clone();
            let t = title.clone();
            let (summary, digest, size) = tokio::task::spawn_blocking(move || -> Result<_> {
                let f = std::fs::File::create(&packed2)
                    .map_err(|e| Error::io("creating", &packed2, e))?;
                let mut w =
                    digest::HashingWriter::new(std::io::BufWriter::with_capacity(1 << 20, f));
                // a folder that cannot be packed is the user's input to fix, not hostile content
                let summary = archive::pack_dir(&p, &t, &mut w).map_err(|e| match e {
                    archive::ArchiveError::Io { path, source } => {
                        Error::io("packing", path, source)
                    }
                    other => Error::usage(format!("cannot pack {}: {other}", p.display())),
                })?;
                let (digest, size, inner) = w.finish();
                // a temporary file: flushed to the kernel, no fsync (it is read back at once and deleted)
                inner
                    .into_inner()
                    .map_err(|e| Error::io("writing", &packed2, e.into_error()))?;
                Ok((summary, digest, size))
            })
            .await
            .expect("pack task panicked")?;
            let mut desc = Descriptor::new(media::LAYER_TAR_GZIP, digest, size);
            desc.annotations = Some(BTreeMap::from([
                (annotations::TITLE.to_string(), title),
                (annotations::ORAS_UNPACK.to_string(), "true".to_string()),
                (
                    annotations::ORAS_CONTENT_DIGEST.to_string(),
                    summary.tar_digest.to_string(),
                ),
            ]));
            out.push(Prepared {
                desc,
                source: packed,
            });
        } else if meta.is_file() {
            let cache = opts.digest_cache.clone();
            let (digest, size) = tokio::task::spawn_blocking(move || hash_file(&p, cache.as_ref()))
                .await
                .expect("hash task panicked")?;
            let mt = opts
                .file_media_type
                .clone()
                .unwrap_or_else(|| media::OCTET_STREAM.into());
            let mut desc = Descriptor::new(mt, digest, size);
            let mut a = BTreeMap::from([(annotations::TITLE.to_string(), title)]);
            if std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0 {
                // executables stay runnable after pull and deploy (git-like: 0755 or nothing)
                a.insert(annotations::FILE_MODE.to_string(), "0755".to_string());
            }
            desc.annotations = Some(a);
            out.push(Prepared {
                desc,
                source: path.clone(),
            });
        } else {
            return Err(Error::usage(format!(
                "{}: only regular files and folders can be pushed",
                path.display()
            )));
        }
    }
    Ok(out)
}

/// Pushes `paths` to `target` (which must carry a tag) in `store`.
pub async fn push(
    store: &dyn Store,
    target: &Reference,
    paths: &[PathBuf],
    opts: &PushOptions,
    observer: &dyn Observer,
) -> Result<PushReport> {
    let tag = check_push_tag(target, opts.allow_latest)?;
    if paths.is_empty() {
        return Err(Error::usage(
            "nothing to push: name at least one file or folder",
        ));
    }
    for p in paths {
        if let Err(e) = std::fs::symlink_metadata(p) {
            return Err(Error::io("reading", p, e));
        }
    }
    let annotations = manifest_annotations(&tag, opts)?;
    let tmp = match &opts.temp_dir {
        Some(d) => tempfile::Builder::new()
            .prefix("sealpack-push-")
            .tempdir_in(d),
        None => tempfile::Builder::new().prefix("sealpack-push-").tempdir(),
    }
    .map_err(|e| Error::io("creating a temporary folder", std::env::temp_dir(), e))?;
    let prepared = prepare(paths, opts, tmp.path()).await?;

    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        artifact_type: Some(
            opts.artifact_type
                .clone()
                .unwrap_or_else(|| media::SEALPACK_ARTIFACT.into()),
        ),
        config: Descriptor::empty_json(),
        layers: prepared.iter().map(|p| p.desc.clone()).collect(),
        subject: None,
        annotations: Some(annotations.clone()),
    };
    let raw = RawManifest::from_image(&manifest)?;
    let digest = raw.digest();
    let pinned = target.pinned(digest).to_string();

    let layer_report = |transfer: &dyn Fn(usize) -> Transfer| -> Vec<PushedLayer> {
        prepared
            .iter()
            .enumerate()
            .map(|(i, p)| PushedLayer {
                title: p.desc.title().unwrap_or_default().to_string(),
                media_type: p.desc.media_type.clone(),
                digest: p.desc.digest,
                size: p.desc.size,
                transfer: transfer(i),
            })
            .collect()
    };

    // no-clobber: a release tag never moves silently. Read first and alone: a re-push of the same artifact
    // ends here, with one request
    if let Some(existing) = store.fetch_manifest(ManifestRef::Tag(&tag)).await? {
        if existing.digest() == digest {
            return Ok(PushReport {
                reference: pinned,
                digest,
                tag,
                annotations,
                layers: layer_report(&|_| Transfer::Present),
                bytes_uploaded: 0,
                unchanged: true,
            });
        }
        if !opts.allow_overwrite {
            return Err(Error::TagExists {
                reference: target.to_string(),
                existing: existing.digest(),
                attempted: digest,
            });
        }
    }

    // which blobs are missing, the config `{}` included (HEADs in parallel); then mount or upload those, a few
    // at a time
    let config = Descriptor::empty_json();
    let blobs: Vec<&Descriptor> = std::iter::once(&config)
        .chain(prepared.iter().map(|p| &p.desc))
        .collect();
    let present = try_join_all(blobs.iter().map(|d| store.blob_exists(&d.digest))).await?;
    use futures_util::{StreamExt, TryStreamExt};
    let prepared_ref = &prepared;
    let mut transfers: Vec<Transfer> =
        futures_util::stream::iter(blobs.iter().zip(&present).enumerate().map(
            |(i, (desc, have))| async move {
                if *have {
                    return Ok::<_, Error>(Transfer::Present);
                }
                if store.try_mount(desc).await? {
                    return Ok(Transfer::Mounted);
                }
                let source = match i {
                    0 => BlobSource::Bytes(bytes::Bytes::from_static(b"{}")),
                    _ => BlobSource::File(prepared_ref[i - 1].source.clone()),
                };
                let bar = observer.transfer(desc.title().unwrap_or("config"), desc.size);
                let progress = move |n: u64| bar(n);
                store.put_blob(desc, source, &progress).await?;
                Ok(Transfer::Uploaded)
            },
        ))
        .buffered(UPLOADS_IN_FLIGHT)
        .try_collect()
        .await?;
    let uploaded: u64 = blobs
        .iter()
        .zip(&transfers)
        .filter(|(_, t)| **t == Transfer::Uploaded)
        .map(|(d, _)| d.size)
        .sum();
    transfers.remove(0); // the config
    store.put_manifest(&raw, Some(&tag)).await?;
    drop(tmp);
    Ok(PushReport {
        reference: pinned,
        digest,
        tag,
        annotations,
        layers: layer_report(&|i| transfers[i].clone()),
        bytes_uploaded: uploaded,
        unchanged: false,
    })
}
