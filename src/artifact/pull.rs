//! `pull`: fetch an artifact by digest and write its files safely.
//!
//! The reference is resolved once; every blob is then fetched by digest and checked (size and sha256) while it
//! streams into a staging folder inside the output folder. Folder layers are unpacked there with the archive
//! guards. Only when every layer has been checked are the results renamed into place, so a failure leaves the
//! output folder as it was.

use std::path::{Path, PathBuf};

use futures_util::{StreamExt, stream};
use serde::Serialize;

use super::{Observer, archive, safe_relative_path};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::oci::{Descriptor, Manifest, annotations, media};
use crate::reference::Reference;
use crate::store::{self, Store};

/// One file or folder written.
#[derive(Debug, Clone, Serialize)]
pub struct PulledFile {
    /// Where it was written.
    pub path: PathBuf,
    /// The layer digest it came from.
    pub digest: Digest,
    /// The layer size.
    pub size: u64,
    /// Whether it was a folder layer that was unpacked.
    pub unpacked: bool,
}

/// The result of a pull.
#[derive(Debug, Clone, Serialize)]
pub struct PullReport {
    /// `REPO@sha256:...` that was pulled.
    pub reference: String,
    /// The manifest digest.
    pub digest: Digest,
    /// What was written.
    pub files: Vec<PulledFile>,
}

/// How many layers a pull fetches at once.
const PARALLEL_LAYERS: usize = 4;

/// A layer fetched and checked into the staging folder: where it is, where it goes, and what it was.
type Fetched = (PathBuf, PathBuf, Descriptor, bool);

/// Fetches one layer by digest into `staging` (checked while streaming) and, for a folder layer, unpacks it
/// there with the archive guards.
#[allow(clippy::too_many_arguments)]
async fn fetch_layer(
    store: &dyn Store,
    layer: &Descriptor,
    rel: &Path,
    unpack: bool,
    i: usize,
    staging: &Path,
    limits: &archive::Limits,
    pinned: &Reference,
    observer: &dyn Observer,
) -> Result<Fetched> {
    let blob = store.get_blob(layer).await?;
    let bar = observer.transfer(&rel.display().to_string(), layer.size);
    let progress = move |n: u64| bar(n);
    if !unpack {
        let dest = staging.join(format!("file-{i}"));
        blob.write_new_file(&dest, &progress).await?;
        if layer.annotation(annotations::FILE_MODE) == Some("0755") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| Error::io("setting the mode of", &dest, e))?;
        }
        return Ok((dest, rel.to_path_buf(), layer.clone(), false));
    }
    let packed = staging.join(format!("layer-{i}.tar"));
    blob.write_new_file(&packed, &progress).await?;
    let unpack_dir = staging.join(format!("unpack-{i}"));
    std::fs::create_dir(&unpack_dir).map_err(|e| Error::io("creating", &unpack_dir, e))?;
    let (ud, lim, gz) = (
        unpack_dir.clone(),
        *limits,
        layer.media_type == media::LAYER_TAR_GZIP,
    );
    let p2 = packed.clone();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let f = std::fs::File::open(&p2).map_err(|e| Error::io("opening", &p2, e))?;
        let r = std::io::BufReader::with_capacity(1 << 20, f);
        if gz {
            archive::unpack_tar_gz(r, &ud, &lim)?;
        } else {
            archive::unpack_tar(r, &ud, &lim)?;
        }
        Ok(())
    })
    .await
    .expect("unpack task panicked")?;
    let _ = std::fs::remove_file(&packed);
    // a folder layer holds exactly one top-level entry: the folder named by its title
    let entries: Vec<_> = std::fs::read_dir(&unpack_dir)
        .map_err(|e| Error::io("reading", &unpack_dir, e))?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    if entries.len() != 1 || Path::new(&entries[0]) != rel {
        return Err(Error::untrusted(
            format!("folder layer {:?} of {pinned}", rel.display()),
            format!("its archive must hold only the folder {:?}", rel.display()),
        ));
    }
    Ok((unpack_dir.join(rel), rel.to_path_buf(), layer.clone(), true))
}

/// Pulls `reference` from `store` into `out_dir` (created if missing). Existing files are never overwritten.
pub async fn pull(
    store: &dyn Store,
    reference: &Reference,
    out_dir: &Path,
    limits: &archive::Limits,
    observer: &dyn Observer,
) -> Result<PullReport> {
    let raw = store::resolve(store, reference).await?;
    let digest = raw.digest();
    let pinned = reference.pinned(digest);
    let manifest = match raw.parse()? {
        Manifest::Image(m) => m,
        Manifest::Index(_) => {
            return Err(Error::Unsupported {
                what: pinned.to_string(),
                reason: "this is an image index (a multi-platform image), not a file artifact; use `sealpack copy` to move container images".into(),
            });
        }
    };
    if manifest.config.media_type == media::OCI_IMAGE_CONFIG
        || manifest.config.media_type == media::DOCKER_IMAGE_CONFIG
    {
        return Err(Error::Unsupported {
            what: pinned.to_string(),
            reason: "this is a container image (its config is an image config), not a file artifact; use `sealpack copy` to move container images".into(),
        });
    }
    // check every title before touching the disk
    let mut plan = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for layer in &manifest.layers {
        if layer.urls.is_some() {
            return Err(Error::untrusted(
                format!("layer {} of {pinned}", layer.digest),
                "it has foreign URLs, which sealpack never fetches",
            ));
        }
        let title = layer.title().ok_or_else(|| Error::Unsupported {
            what: format!("layer {} of {pinned}", layer.digest),
            reason: format!(
                "it has no {} annotation, so it is not a file; this looks like a container image (use `sealpack copy`)",
                annotations::TITLE
            ),
        })?;
        let rel = safe_relative_path(title)?;
        let top = rel
            .components()
            .next()
            .map(|c| c.as_os_str().to_owned())
            .unwrap_or_default();
        if !names.insert(rel.clone()) {
            return Err(Error::untrusted(
                format!("layer title {title:?} of {pinned}"),
                "two layers have the same name",
            ));
        }
        let unpack = layer.annotation(annotations::ORAS_UNPACK) == Some("true");
        if unpack
            && layer.media_type != media::LAYER_TAR_GZIP
            && layer.media_type != media::LAYER_TAR
        {
            return Err(Error::Unsupported {
                what: format!("layer {title:?} of {pinned}"),
                reason: format!(
                    "marked for unpacking but its media type is {}",
                    layer.media_type
                ),
            });
        }
        match layer.annotation(annotations::FILE_MODE) {
            None | Some("0644") => {}
            Some("0755") if !unpack => {}
            Some(other) => {
                return Err(Error::untrusted(
                    format!("layer {title:?} of {pinned}"),
                    format!(
                        "{} is {other:?}; only \"0755\" on a file layer is allowed",
                        annotations::FILE_MODE
                    ),
                ));
            }
        }
        plan.push((layer.clone(), rel, top, unpack));
    }

    // a title must not name a folder of another (`a` and `a/b`): the second could not be moved into place
    for (_, rel, _, _) in &plan {
        if let Some(a) = rel.ancestors().skip(1).find(|a| names.contains(*a)) {
            return Err(Error::untrusted(
                format!("layer title {:?} of {pinned}", rel.display()),
                format!("another layer is named {:?}, its folder", a.display()),
            ));
        }
    }

    std::fs::create_dir_all(out_dir).map_err(|e| Error::io("creating", out_dir, e))?;
    for (_, rel, _, _) in &plan {
        let dest = out_dir.join(rel);
        // the folders a nested title goes into are written through only when they are real folders
        for a in rel
            .ancestors()
            .skip(1)
            .filter(|a| !a.as_os_str().is_empty())
        {
            let p = out_dir.join(a);
            match std::fs::symlink_metadata(&p) {
                Ok(m) if !m.is_dir() => {
                    return Err(Error::usage(format!(
                        "{} exists and is not a folder; pull needs a folder there for {}",
                        p.display(),
                        rel.display()
                    )));
                }
                _ => {}
            }
        }
        if std::fs::symlink_metadata(&dest).is_ok() {
            return Err(Error::usage_hint(
                format!(
                    "{} already exists; pull never overwrites files",
                    dest.display()
                ),
                "pull into an empty folder, or remove the file first",
            ));
        }
    }
    let staging = tempfile::Builder::new()
        .prefix(".sealpack-pull-")
        .tempdir_in(out_dir)
        .map_err(|e| Error::io("creating a staging folder in", out_dir, e))?;

    // fetch PARALLEL_LAYERS at a time; after a failure no further layer starts, the ones in flight finish (so
    // nothing still writes into the staging folder when it is removed), and the first error is returned
    let failed = std::sync::atomic::AtomicBool::new(false);
    let results: Vec<Option<Result<Fetched>>> = stream::iter(plan.iter().enumerate())
        .map(|(i, (layer, rel, _, unpack))| {
            let (failed, staging, pinned) = (&failed, staging.path(), &pinned);
            async move {
                if failed.load(std::sync::atomic::Ordering::Relaxed) {
                    return None;
                }
                let r = fetch_layer(
                    store, layer, rel, *unpack, i, staging, limits, pinned, observer,
                )
                .await;
                if r.is_err() {
                    failed.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                Some(r)
            }
        })
        .buffered(PARALLEL_LAYERS)
        .collect()
        .await;
    let mut files = Vec::new();
    let mut first_error = None;
    for r in results.into_iter().flatten() {
        match r {
            Ok(f) => files.push(f),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }

    // everything is checked: move into place
    let mut written = Vec::new();
    for (src, rel, layer, unpacked) in files {
        let dest = out_dir.join(&rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
        }
        if std::fs::symlink_metadata(&dest).is_ok() {
            return Err(Error::usage(format!(
                "{} appeared while pulling; not overwriting it",
                dest.display()
            )));
        }
        std::fs::rename(&src, &dest).map_err(|e| Error::io("moving into place", &dest, e))?;
        written.push(PulledFile {
            path: dest,
            digest: layer.digest,
            size: layer.size,
            unpacked,
        });
    }
    drop(staging);
    Ok(PullReport {
        reference: pinned.to_string(),
        digest,
        files: written,
    })
}
