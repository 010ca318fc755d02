//! What an artifact contains, file by file, with sha256s: the inventory an SBOM lists. File layers are one file
//! each (their digest is the file's sha256); folder layers are read as tar streams, every regular file hashed.

use std::io::Read;
use std::path::Path;

use serde::Serialize;

use super::archive::Limits;
use super::safe_relative_path;
use crate::digest::Hasher;
use crate::error::{Error, Result};
use crate::oci::{ImageManifest, annotations, media};
use crate::store::{Store, no_progress};

/// One file of an artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileEntry {
    /// Path inside the artifact (`app.zip`, `site/index.html`).
    pub path: String,
    /// Lowercase hex sha256 of the file's bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex SHA-1, only when asked for (SPDX 2.3 requires it for files).
    pub sha1: Option<String>,
}

/// Lists every file of the artifact `manifest` describes, sorted by path. Folder layers are fetched (checked by
/// digest) into `tmp` and read with the same limits as unpacking. With `with_sha1`, file layers are fetched too,
/// to compute their SHA-1.
pub async fn list_files(
    store: &dyn Store,
    manifest: &ImageManifest,
    limits: &Limits,
    tmp: &Path,
    with_sha1: bool,
) -> Result<Vec<FileEntry>> {
    let mut out = Vec::new();
    for (i, layer) in manifest.layers.iter().enumerate() {
        let title = layer.title().ok_or_else(|| Error::Unsupported {
            what: format!("layer {}", layer.digest),
            reason: "it has no file name (org.opencontainers.image.title); not a file artifact"
                .into(),
        })?;
        safe_relative_path(title)?;
        let folder = layer.annotation(annotations::ORAS_UNPACK) == Some("true");
        if !folder {
            let sha1 = if with_sha1 {
                use futures_util::StreamExt;
                use sha1::Digest as _;
                let mut h = sha1::Sha1::new();
                let mut stream = store.get_blob(layer).await?.into_checked_stream();
                while let Some(chunk) = stream.next().await {
                    h.update(chunk.map_err(|e| Error::io("reading", title, e))?);
                }
                Some(hex::encode(h.finalize()))
            } else {
                None
            };
            out.push(FileEntry {
                path: title.to_string(),
                sha256: layer.digest.hex(),
                size: layer.size,
                sha1,
            });
            continue;
        }
        let gz = match layer.media_type.as_str() {
            media::LAYER_TAR_GZIP => true,
            media::LAYER_TAR => false,
            other => {
                return Err(Error::Unsupported {
                    what: format!("layer {title:?}"),
                    reason: format!("marked for unpacking but its media type is {other}"),
                });
            }
        };
        let path = tmp.join(format!("contents-{i}"));
        store
            .get_blob(layer)
            .await?
            .write_new_file(&path, &no_progress)
            .await?;
        let limits = *limits;
        let files = tokio::task::spawn_blocking(move || {
            let f = std::fs::File::open(&path).map_err(|e| Error::io("opening", &path, e))?;
            let r = std::io::BufReader::with_capacity(1 << 20, f);
            let listed = if gz {
                list_tar(flate2::read::GzDecoder::new(r), &limits, with_sha1)
            } else {
                list_tar(r, &limits, with_sha1)
            };
            let _ = std::fs::remove_file(&path);
            listed
        })
        .await
        .expect("listing task panicked")?;
        out.extend(files);
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Hashes every regular file of a tar stream, within the byte and entry budgets.
fn list_tar<R: Read>(r: R, limits: &Limits, with_sha1: bool) -> Result<Vec<FileEntry>> {
    use sha1::Digest as _;
    let mut archive = tar::Archive::new(r);
    let mut out = Vec::new();
    let mut entries = 0u64;
    let mut bytes = 0u64;
    let bad = |e: std::io::Error| Error::untrusted("folder layer", format!("unreadable tar: {e}"));
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        entries += 1;
        if entries > limits.max_entries {
            return Err(Error::untrusted(
                "folder layer",
                format!("more than {} entries", limits.max_entries),
            ));
        }
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().map_err(bad)?.to_string_lossy().into_owned();
        let name = name.trim_start_matches("./").to_string();
        safe_relative_path(&name)?;
        let mut hasher = Hasher::new();
        let mut sha1 = with_sha1.then(sha1::Sha1::new);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = entry.read(&mut buf).map_err(bad)?;
            if n == 0 {
                break;
            }
            bytes += n as u64;
            if bytes > limits.max_bytes {
                return Err(Error::untrusted(
                    "folder layer",
                    format!("more than {} bytes", limits.max_bytes),
                ));
            }
            hasher.update(&buf[..n]);
            if let Some(s) = &mut sha1 {
                s.update(&buf[..n]);
            }
        }
        let (digest, size) = hasher.finish();
        out.push(FileEntry {
            path: name,
            sha256: digest.hex(),
            size,
            sha1: sha1.map(|s| hex::encode(s.finalize())),
        });
    }
    Ok(out)
}
