//! `push`: pack files and folders into an OCI artifact and upload it, content-addressed.
//!
//! Order of work, chosen so that a failure never leaves anything half-done behind a tag:
//! 1. check the inputs and the tag rules (before any network or disk work);
//! 2. hash every file and pack every folder (deterministically) into a temporary tar+gzip, so every layer has a
//!    digest before any upload, scanning every byte for secrets in the same read (see [`super::secrets`]); a
//!    finding not allowed by [`PushOptions::allow_secrets`] stops the push here, before any upload;
//! 3. build the manifest and compare with what the tag points at now (no-clobber);
//! 4. upload only the blobs the store lacks (HEAD first; cross-repository mount when a source is known);
//! 5. put the manifest by digest, and only then move the tag.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use futures_util::{StreamExt, TryStreamExt, stream};
use serde::Serialize;

use super::Observer;
use super::archive;
use super::secrets::{self, FileFindings, Finding};
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
    /// Push a folder as one layer per regular file (titled `FOLDER/REL/PATH`) instead of one tar+gzip layer.
    pub layer_per_file: bool,
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
    /// Secret-scan findings to let through (`--allow-secret`).
    pub allow_secrets: Vec<secrets::Allow>,
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
    /// Possible secrets that were pushed because `--allow-secret` named them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_secrets: Vec<Finding>,
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

/// Read size of [`hash_and_scan`].
const SCAN_CHUNK: usize = 1 << 20;
/// Chunks in flight between the hashing and the scanning thread (bounds memory at a few MiB).
const SCAN_DEPTH: usize = 4;

/// One read of `f` feeds SHA-256 on this thread and the secret scanner on another, so on two cores the scan costs
/// no wall time (measured: scanning inline after hashing added ~0.6 s per GiB to every push of a large file).
fn hash_and_scan(
    mut f: &std::fs::File,
    title: &str,
) -> std::io::Result<(Digest, u64, FileFindings)> {
    use std::io::Read;
    let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<u8>, usize)>(SCAN_DEPTH);
    let (back_tx, back_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::scope(|s| {
        let scan = s.spawn(move || {
            let mut scanner = secrets::FileScanner::new(title);
            for (buf, n) in rx {
                scanner.update(&buf[..n]);
                let _ = back_tx.send(buf);
            }
            scanner
        });
        let mut hasher = digest::Hasher::new();
        let mut allocated = 0;
        let read = loop {
            let mut buf = match back_rx.try_recv() {
                Ok(b) => b,
                Err(_) if allocated < SCAN_DEPTH + 2 => {
                    allocated += 1;
                    vec![0u8; SCAN_CHUNK]
                }
                Err(_) => match back_rx.recv() {
                    Ok(b) => b,
                    Err(_) => break Err(std::io::Error::other("the secret scanner stopped")),
                },
            };
            // fill the buffer (short reads happen) so chunks stay large
            let mut n = 0;
            let filled = loop {
                match f.read(&mut buf[n..]) {
                    Ok(0) => break Ok(()),
                    Ok(k) => {
                        n += k;
                        if n == buf.len() {
                            break Ok(());
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            if let Err(e) = filled {
                break Err(e);
            }
            if n == 0 {
                break Ok(());
            }
            hasher.update(&buf[..n]);
            if tx.send((buf, n)).is_err() {
                break Err(std::io::Error::other("the secret scanner stopped"));
            }
        };
        drop(tx);
        let scanner = scan.join().expect("secret scanner panicked");
        read?;
        let (digest, size) = hasher.finish();
        Ok((digest, size, scanner.finish()))
    })
}

/// Hashes a file and scans it for secrets (as `title`, its path inside the artifact) in the same read, or takes
/// both from the cache when the file is unchanged since it was last hashed and was then scanned clean under the
/// current rules. A cached digest without that mark (an older sealpack, or a file with findings) is read again.
fn hash_file(
    path: &Path,
    title: &str,
    cache: Option<&crate::cache::DigestCache>,
) -> Result<(Digest, u64, FileFindings)> {
    let f = std::fs::File::open(path).map_err(|e| Error::io("reading", path, e))?;
    let before = f.metadata().map_err(|e| Error::io("reading", path, e))?;
    let clean = secrets::clean_mark(title);
    if let Some((d, marks)) = cache.and_then(|c| c.get_marked(&before))
        && marks.contains(&clean)
    {
        return Ok((d, before.len(), FileFindings::default()));
    }
    let started = std::time::SystemTime::now();
    let (digest, size, found) =
        hash_and_scan(&f, title).map_err(|e| Error::io("reading", path, e))?;
    if let (Some(c), Ok(after)) = (cache, std::fs::metadata(path)) {
        let marks = if found.findings.is_empty() {
            vec![clean]
        } else {
            vec![]
        };
        c.put_marked(&before, &after, &digest, started, &marks);
    }
    Ok((digest, size, found))
}

/// Hashes files and packs folders (on blocking threads), giving one descriptor per input path, and what the secret
/// scan found in them.
async fn prepare(
    paths: &[PathBuf],
    opts: &PushOptions,
    tmp: &Path,
) -> Result<(Vec<Prepared>, Vec<FileFindings>)> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut found = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let meta = std::fs::metadata(path).map_err(|e| Error::io("reading", path, e))?;
        let title = title_of(path)?;
        if !seen.insert(title.clone()) {
            return Err(Error::usage(format!(
                "two inputs are both named {title:?}: each file of an artifact needs its own name"
            )));
        }
        let p = path.clone();
        if meta.is_dir() && opts.layer_per_file {
            let (files, scan) = prepare_files_of_folder(path, &title, opts).await?;
            out.extend(files);
            found.extend(scan);
        } else if meta.is_dir() {
            let packed = tmp.join(format!("layer-{i}.tar.gz"));
            let packed2 = packed.clone();
            let t = title.clone();
            let (summary, digest, size, scan) =
                tokio::task::spawn_blocking(move || -> Result<_> {
                    let f = std::fs::File::create(&packed2)
                        .map_err(|e| Error::io("creating", &packed2, e))?;
                    let mut w =
                        digest::HashingWriter::new(std::io::BufWriter::with_capacity(1 << 20, f));
                    let mut scan = secrets::FolderScanner::default();
                    // a folder that cannot be packed is the user's input to fix, not hostile content
                    let summary = archive::pack_dir_tapped(&p, &t, &mut w, &mut scan).map_err(
                        |e| match e {
                            archive::ArchiveError::Io { path, source } => {
                                Error::io("packing", path, source)
                            }
                            other => Error::usage(format!("cannot pack {}: {other}", p.display())),
                        },
                    )?;
                    let (digest, size, inner) = w.finish();
                    // a temporary file: flushed to the kernel, no fsync (it is read back at once and deleted)
                    inner
                        .into_inner()
                        .map_err(|e| Error::io("writing", &packed2, e.into_error()))?;
                    Ok((summary, digest, size, scan.found))
                })
                .await
                .expect("pack task panicked")?;
            found.extend(scan);
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
            let t = title.clone();
            let (digest, size, scan) =
                tokio::task::spawn_blocking(move || hash_file(&p, &t, cache.as_ref()))
                    .await
                    .expect("hash task panicked")?;
            if !scan.findings.is_empty() {
                found.push(scan);
            }
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
    Ok((out, found))
}

/// Splits findings into those `allow` lets through and the rest; an error lists the rest, if any.
pub fn check_findings(found: Vec<FileFindings>, allow: &[secrets::Allow]) -> Result<Vec<Finding>> {
    let mut allowed = Vec::new();
    let mut refused = Vec::new();
    let mut more = 0;
    for file in found {
        // findings beyond the listed ones were only counted: an allow of the whole file covers them
        let whole_file = file.findings.first().is_some_and(|f| {
            allow
                .iter()
                .any(|a| a.line.is_none() && a.rule.is_none() && a.matches_path(&f.path))
        });
        if !whole_file {
            more += file.more;
        }
        for f in file.findings {
            if allow.iter().any(|a| a.matches(&f)) {
                allowed.push(f);
            } else {
                refused.push(f);
            }
        }
    }
    if refused.is_empty() && more == 0 {
        Ok(allowed)
    } else {
        Err(Error::Secrets {
            findings: refused,
            more,
        })
    }
}

/// How many files `--layer-per-file` hashes at once.
const PARALLEL_FILES: usize = 4;
/// How many HEAD requests a push has in flight at once.
const PARALLEL_HEADS: usize = 16;
/// Most files `--layer-per-file` takes from one folder (each is a descriptor in a manifest capped at 4 MiB).
pub const MAX_LAYER_FILES: usize = 10_000;

/// `--layer-per-file`: one layer per regular file below `dir`, titled by its path relative to the folder's parent
/// (`model/weights/part-01.bin`), so pull recreates the tree. Files are hashed [`PARALLEL_FILES`] at a time;
/// layers come sorted by title whatever the hashing order. Refused, as in folder packing: special files
/// (FIFOs, sockets, devices) and names that would not come back as the same path; also every symlink (a file
/// layer cannot be a link: push the folder as one layer to keep links). Folders come back only as the parents
/// of their files (an empty folder is not pushed).
async fn prepare_files_of_folder(
    dir: &Path,
    folder_title: &str,
    opts: &PushOptions,
) -> Result<(Vec<Prepared>, Vec<FileFindings>)> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    let refuse = |path: &Path, why: String| {
        Error::usage_hint(
            format!(
                "cannot push {} with --layer-per-file: {why}",
                path.display()
            ),
            "fix or remove it, or push the folder as one layer (without --layer-per-file)",
        )
    };
    let mut files: Vec<(String, PathBuf, bool)> = Vec::new();
    let walker = walkdir::WalkDir::new(dir).min_depth(1).follow_links(false);
    for item in walker {
        let item = item.map_err(|e| {
            let path = e.path().unwrap_or(dir).to_path_buf();
            let source = e
                .into_io_error()
                .unwrap_or_else(|| std::io::Error::other("directory walk failed"));
            Error::io("reading", path, source)
        })?;
        let ft = item.file_type();
        if ft.is_dir() {
            continue;
        }
        let path = item.path();
        if ft.is_symlink() {
            return Err(refuse(
                path,
                "it is a symlink, and a file layer cannot be a link".into(),
            ));
        }
        if !ft.is_file() {
            let kind = if ft.is_fifo() {
                "FIFO"
            } else if ft.is_socket() {
                "socket"
            } else if ft.is_char_device() {
                "character device"
            } else if ft.is_block_device() {
                "block device"
            } else {
                "special file"
            };
            return Err(refuse(path, format!("it is a {kind}")));
        }
        let rel = path
            .strip_prefix(dir)
            .ok()
            .and_then(Path::to_str)
            .ok_or_else(|| refuse(path, "its name is not UTF-8".into()))?;
        let title = format!("{folder_title}/{rel}");
        // pull takes titles through the same check: refuse here what it would refuse there
        super::safe_relative_path(&title).map_err(|e| refuse(path, e.to_string()))?;
        let meta = item
            .metadata()
            .map_err(|e| Error::io("reading", path, e.into()))?;
        files.push((
            title,
            path.to_path_buf(),
            meta.permissions().mode() & 0o111 != 0,
        ));
        if files.len() > MAX_LAYER_FILES {
            return Err(refuse(
                dir,
                format!("it holds more than {MAX_LAYER_FILES} files (one layer each)"),
            ));
        }
    }
    if files.is_empty() {
        return Err(refuse(dir, "it holds no files".into()));
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));

    let media_type = opts
        .file_media_type
        .clone()
        .unwrap_or_else(|| media::OCTET_STREAM.into());
    let hashed: Vec<(Prepared, FileFindings)> = stream::iter(files)
        .map(|(title, path, executable)| {
            let cache = opts.digest_cache.clone();
            let media_type = media_type.clone();
            async move {
                // hashed and scanned for secrets in one read, as a single file is (by its title in the artifact)
                let (p, t) = (path.clone(), title.clone());
                let (digest, size, scan) =
                    tokio::task::spawn_blocking(move || hash_file(&p, &t, cache.as_ref()))
                        .await
                        .expect("hash task panicked")?;
                let mut a = BTreeMap::from([(annotations::TITLE.to_string(), title)]);
                if executable {
                    a.insert(annotations::FILE_MODE.to_string(), "0755".to_string());
                }
                let mut desc = Descriptor::new(media_type, digest, size);
                desc.annotations = Some(a);
                Ok::<_, Error>((Prepared { desc, source: path }, scan))
            }
        })
        .buffered(PARALLEL_FILES)
        .try_collect()
        .await?;
    let (prepared, scans): (Vec<_>, Vec<_>) = hashed.into_iter().unzip();
    let found = scans
        .into_iter()
        .filter(|s| !s.findings.is_empty() || s.more > 0)
        .collect();
    Ok((prepared, found))
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
    let (prepared, found) = prepare(paths, opts, tmp.path()).await?;
    let allowed_secrets = check_findings(found, &opts.allow_secrets)?;

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
                allowed_secrets,
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

    // which blobs are missing? (HEADs in parallel, bounded); then mount or upload each missing one, a few at a
    // time, the config `{}` included; a digest shared by several layers (two equal files) is sent once
    let config = Descriptor::empty_json();
    let mut unique: Vec<(&Descriptor, BlobSource)> =
        vec![(&config, BlobSource::Bytes(bytes::Bytes::from_static(b"{}")))];
    let mut seen_digests = BTreeSet::from([config.digest]);
    for p in &prepared {
        if seen_digests.insert(p.desc.digest) {
            unique.push((&p.desc, BlobSource::File(p.source.clone())));
        }
    }
    let present: Vec<bool> = stream::iter(unique.iter().map(|(d, _)| store.blob_exists(&d.digest)))
        .buffered(PARALLEL_HEADS)
        .try_collect()
        .await?;
    let done: Vec<(Digest, Transfer, u64)> = stream::iter(unique.into_iter().zip(present))
        .map(|((desc, source), have)| async move {
            if have {
                return Ok::<_, Error>((desc.digest, Transfer::Present, 0));
            }
            if store.try_mount(desc).await? {
                return Ok((desc.digest, Transfer::Mounted, 0));
            }
            let bar = observer.transfer(desc.title().unwrap_or("config"), desc.size);
            let progress = move |n: u64| bar(n);
            store.put_blob(desc, source, &progress).await?;
            Ok((desc.digest, Transfer::Uploaded, desc.size))
        })
        .buffered(UPLOADS_IN_FLIGHT)
        .try_collect()
        .await?;
    let uploaded = done.iter().map(|(_, _, n)| n).sum();
    let by_digest: BTreeMap<Digest, Transfer> = done.into_iter().map(|(d, t, _)| (d, t)).collect();
    let transfers: Vec<Transfer> = prepared
        .iter()
        .map(|p| by_digest[&p.desc.digest].clone())
        .collect();
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
        allowed_secrets,
    })
}
