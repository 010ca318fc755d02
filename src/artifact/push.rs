//! `push`: pack files and folders into an OCI artifact and upload it, content-addressed.
//!
//! Order of work, chosen so that a failure never leaves anything half-done behind a tag:
//! 1. check the inputs and the tag rules (before any network or disk work), then read what the tag points at;
//! 2. hash every file and pack every folder (deterministically) into a temporary tar+gzip, scanning every byte for
//!    secrets in the same read (see [`super::secrets`]); when the tag is new, a large file is sent to the registry
//!    while it is hashed, never ahead of the scanner, into an upload session committed only at step 4
//!    (`stream_file`); a finding not allowed by [`PushOptions::allow_secrets`] stops the push here, before any
//!    byte of the secret is sent and before anything is committed;
//! 3. build the manifest and compare with what the tag points at (no-clobber);
//! 4. upload only the blobs the store lacks (HEAD first; cross-repository mount when a source is known), and
//!    commit the streamed ones under their locally computed digests;
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
use crate::store::{BlobSource, BlobUpload, ManifestRef, Store};

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
    /// Hash every file before uploading any byte of it (`--hash-first`), even a large file to a new tag: slower,
    /// but a blob the registry already has then costs no upload at all, even unknown to the local caches.
    pub hash_first: bool,
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
    /// Bytes of large files sent while they were hashed, to a store that turned out to have them already (the
    /// upload session was thrown away): see `--hash-first`.
    #[serde(skip_serializing_if = "is_zero")]
    pub discarded_bytes: u64,
    /// Whether the tag already pointed at this digest (nothing was written).
    pub unchanged: bool,
    /// Possible secrets that were pushed because `--allow-secret` named them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_secrets: Vec<Finding>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
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
    gate: Option<&secrets::ScanGate>,
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
                if let Some(g) = gate {
                    g.raise(scanner.clean_before());
                }
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
    gate: Option<&secrets::ScanGate>,
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
        hash_and_scan(&f, title, gate).map_err(|e| Error::io("reading", path, e))?;
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

/// Files at least this large are sent to the store while they are hashed, when the tag is new (see
/// [`stream_file`]); hashing a smaller file first costs a few milliseconds.
const STREAM_MIN: u64 = 16 << 20;

/// A file whose bytes went to the store while it was being hashed.
enum Streamed<'s> {
    /// All bytes sent, in a session committed once the whole push checks out.
    Pending(Box<dyn BlobUpload + 's>),
    /// The store turned out to have the blob (or mounted it): the session was thrown away with the bytes it had.
    Known(Transfer, u64),
}

/// A file to send while it is hashed: (its position among the layers hashed first, path, title, size,
/// executable).
type Deferred = (usize, PathBuf, String, u64, bool);

/// Whether a file is sent while it is hashed (when the tag is new): large, with a name only the prefix rules of the
/// secret scanner apply to, and not known to the digest cache.
fn streams(path: &Path, title: &str, size: u64, opts: &PushOptions) -> bool {
    size >= STREAM_MIN
        && secrets::prefix_rules_only(title)
        && !cached_clean(path, title, opts.digest_cache.as_ref())
}

/// Whether the digest cache knows `path` unchanged and scanned clean as `title` (then it is not read at all).
fn cached_clean(path: &Path, title: &str, cache: Option<&crate::cache::DigestCache>) -> bool {
    let (Some(cache), Ok(meta)) = (cache, std::fs::metadata(path)) else {
        return false;
    };
    cache
        .get_marked(&meta)
        .is_some_and(|(_, marks)| marks.contains(&secrets::clean_mark(title)))
}

/// Sends a large file to the store while hashing and scanning it, instead of hashing first and uploading after:
/// the upload overlaps the hash, so a cold push of a large file costs one upload, not a hash plus an upload.
///
/// - The upload never runs ahead of the secret scanner: the reading thread of the upload waits on a
///   [`secrets::ScanGate`] that the scanner raises as bytes prove clean, so no byte of a secret the scanner reports
///   leaves the machine; a refused finding stops the upload and throws the session away (nothing is committed).
/// - The hash (read ahead at disk speed) finishes long before the upload: the store is then asked whether it has
///   the blob already (or can mount it), and if so the upload is stopped and its session thrown away. The bytes
///   sent until then are reported as discarded: this is why push streams only when the tag is new (a re-push of
///   the same release hashes first and sends nothing) and never with `--hash-first`.
/// - Nothing becomes a blob until [`BlobUpload::commit`] names the locally computed digest, which the registry
///   checks against what it received. Any failure of the streamed upload is not retried here: the caller uploads
///   the file the ordinary way.
///
/// `Ok(None)`: the store has no such upload; hash first.
async fn stream_file<'s>(
    store: &'s dyn Store,
    path: &Path,
    title: &str,
    size: u64,
    opts: &PushOptions,
    observer: &dyn Observer,
) -> Result<Option<(Digest, u64, FileFindings, Option<Streamed<'s>>)>> {
    let Some(mut upload) = store.begin_upload().await? else {
        return Ok(None);
    };
    let gate = std::sync::Arc::new(secrets::ScanGate::default());
    let hashing = {
        let (p, t, cache, gate) = (
            path.to_path_buf(),
            title.to_string(),
            opts.digest_cache.clone(),
            gate.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let r = hash_file(&p, &t, cache.as_ref(), Some(&gate));
            if r.is_err() {
                gate.close();
            }
            r
        })
    };
    let paced = {
        let gate = gate.clone();
        crate::store::file_stream_paced(path, Some(Box::new(move |end| gate.wait_until(end)))).await
    };
    let body = match paced {
        Ok(b) => b,
        Err(e) => {
            gate.close();
            upload.abort().await;
            let _ = hashing.await;
            return Err(e);
        }
    };
    // ending the body early (not dropping the request) lets the registry answer with the session's state,
    // which it needs to delete the session
    let (stop, stopped) = futures_util::future::AbortHandle::new_pair();
    let body: crate::store::ByteStream =
        Box::pin(futures_util::stream::Abortable::new(body, stopped));
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let bar = observer.transfer(title, size);
    let counted = sent.clone();
    let progress = move |n: u64| {
        counted.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        bar(n)
    };
    let mut send = Box::pin(upload.send(body, &progress));
    let mut sent_result = None;
    let mut hashing = std::pin::pin!(hashing);
    let hashed = loop {
        tokio::select! {
            h = &mut hashing => break h.expect("hash task panicked"),
            r = &mut send, if sent_result.is_none() => sent_result = Some(r),
        }
    };
    // Stops the upload: the body ends, the gate lets the reading thread go, the session is thrown away.
    macro_rules! give_up {
        () => {{
            stop.abort();
            gate.close();
            if sent_result.is_none() {
                let _ = send.await;
            } else {
                drop(send);
            }
            upload.abort().await;
        }};
    }
    let (digest, hashed_size, found) = match hashed {
        Ok(h) => h,
        Err(e) => {
            give_up!();
            return Err(e);
        }
    };
    if check_findings(vec![found.clone()], &opts.allow_secrets).is_err() {
        give_up!();
        return Ok(Some((digest, hashed_size, found, None)));
    }
    gate.open();
    let desc = Descriptor::new(media::OCTET_STREAM, digest, hashed_size);
    let known = if store.blob_exists(&digest).await? {
        Some(Transfer::Present)
    } else if store.try_mount(&desc).await? {
        Some(Transfer::Mounted)
    } else {
        None
    };
    if let Some(t) = known {
        give_up!();
        let discarded = sent.load(std::sync::atomic::Ordering::Relaxed);
        return Ok(Some((
            digest,
            hashed_size,
            found,
            Some(Streamed::Known(t, discarded)),
        )));
    }
    let sent_result = match sent_result {
        Some(r) => {
            drop(send);
            r
        }
        None => send.await,
    };
    if sent_result.is_err() || hashed_size != size {
        // the caller uploads it again, with retries (the file may also have changed while it was read)
        upload.abort().await;
        return Ok(Some((digest, hashed_size, found, None)));
    }
    Ok(Some((
        digest,
        hashed_size,
        found,
        Some(Streamed::Pending(upload)),
    )))
}

/// Hashes files and packs folders (on blocking threads), giving one descriptor per input path, and what the secret
/// scan found in them.
async fn prepare<'s>(
    paths: &[PathBuf],
    opts: &PushOptions,
    tmp: &Path,
    streaming: Option<&'s dyn Store>,
    observer: &dyn Observer,
) -> Result<(
    Vec<Prepared>,
    Vec<FileFindings>,
    Vec<(Digest, Streamed<'s>)>,
)> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut found = Vec::new();
    let mut deferred: Vec<Deferred> = Vec::new();
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
            let (files, scan, later) =
                prepare_files_of_folder(path, &title, opts, streaming.is_some()).await?;
            let base = out.len();
            deferred.extend(
                later
                    .into_iter()
                    .map(|(at, p, t, n, x)| (base + at, p, t, n, x)),
            );
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
            let executable =
                std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0;
            if streaming.is_some() && streams(path, &title, meta.len(), opts) {
                deferred.push((out.len(), path.clone(), title, meta.len(), executable));
                continue;
            }
            let cache = opts.digest_cache.clone();
            let t = title.clone();
            let (digest, size, scan) =
                tokio::task::spawn_blocking(move || hash_file(&p, &t, cache.as_ref(), None))
                    .await
                    .expect("hash task panicked")?;
            if !scan.findings.is_empty() {
                found.push(scan);
            }
            out.push(file_layer(path, title, digest, size, executable, opts));
        } else {
            return Err(Error::usage(format!(
                "{}: only regular files and folders can be pushed",
                path.display()
            )));
        }
    }
    let mut streamed = Vec::new();
    if let Some(store) = streaming {
        let results: Vec<_> = stream::iter(deferred.into_iter().map(
            |(at, path, title, size, x)| async move {
                let r = match stream_file(store, &path, &title, size, opts, observer).await {
                    Ok(Some(r)) => Ok(r),
                    // the store has no streamed upload (a layout folder): hash first, still in parallel
                    Ok(None) => {
                        let (p, t, cache) =
                            (path.clone(), title.clone(), opts.digest_cache.clone());
                        tokio::task::spawn_blocking(move || hash_file(&p, &t, cache.as_ref(), None))
                            .await
                            .expect("hash task panicked")
                            .map(|(d, n, f)| (d, n, f, None))
                    }
                    Err(e) => Err(e),
                };
                (at, path, title, x, r)
            },
        ))
        .buffered(UPLOADS_IN_FLIGHT)
        .collect()
        .await;
        let mut failure = None;
        let mut inserted = 0;
        for (at, path, title, x, r) in results {
            match r {
                Ok((digest, size, scan, upload)) => {
                    if !scan.findings.is_empty() {
                        found.push(scan);
                    }
                    if let Some(u) = upload {
                        streamed.push((digest, u));
                    }
                    out.insert(
                        at + inserted,
                        file_layer(&path, title, digest, size, x, opts),
                    );
                    inserted += 1;
                }
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        if let Some(e) = failure {
            abort_streamed(streamed).await;
            return Err(e);
        }
    }
    Ok((out, found, streamed))
}

/// The layer of one file: its title, and its mode when executable (git-like: 0755 or nothing), so it stays
/// runnable after pull and deploy.
fn file_layer(
    path: &Path,
    title: String,
    digest: Digest,
    size: u64,
    executable: bool,
    opts: &PushOptions,
) -> Prepared {
    let mt = opts
        .file_media_type
        .clone()
        .unwrap_or_else(|| media::OCTET_STREAM.into());
    let mut desc = Descriptor::new(mt, digest, size);
    let mut a = BTreeMap::from([(annotations::TITLE.to_string(), title)]);
    if executable {
        a.insert(annotations::FILE_MODE.to_string(), "0755".to_string());
    }
    desc.annotations = Some(a);
    Prepared {
        desc,
        source: path.to_path_buf(),
    }
}

/// Throws away the sessions of streamed uploads that will not be committed.
async fn abort_streamed(streamed: Vec<(Digest, Streamed<'_>)>) {
    for (_, s) in streamed {
        if let Streamed::Pending(u) = s {
            u.abort().await;
        }
    }
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
    streaming: bool,
) -> Result<(Vec<Prepared>, Vec<FileFindings>, Vec<Deferred>)> {
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
    let mut files: Vec<(String, PathBuf, bool, u64)> = Vec::new();
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
            meta.len(),
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
    // large files are sent while hashed, like large files named on the command line; their place in the sorted
    // list is kept
    let mut deferred = Vec::new();
    let mut hashed_first = Vec::new();
    for (title, path, executable, size) in files {
        if streaming && streams(&path, &title, size, opts) {
            deferred.push((hashed_first.len(), path, title, size, executable));
        } else {
            hashed_first.push((title, path, executable));
        }
    }
    let files = hashed_first;

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
                    tokio::task::spawn_blocking(move || hash_file(&p, &t, cache.as_ref(), None))
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
    Ok((prepared, found, deferred))
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
    // no-clobber: a release tag never moves silently. The tag is read before any file is: a re-push of the same
    // artifact then ends with this one request, and a new tag lets large files go while they are hashed
    let existing = store.fetch_manifest(ManifestRef::Tag(&tag)).await?;
    let streaming = (existing.is_none() && !opts.hash_first).then_some(store);
    let (prepared, found, streamed) = prepare(paths, opts, tmp.path(), streaming, observer).await?;
    let allowed_secrets = match check_findings(found, &opts.allow_secrets) {
        Ok(a) => a,
        Err(e) => {
            abort_streamed(streamed).await;
            return Err(e);
        }
    };

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
    let raw = match RawManifest::from_image(&manifest) {
        Ok(r) => r,
        Err(e) => {
            abort_streamed(streamed).await;
            return Err(e);
        }
    };
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

    if let Some(existing) = existing {
        if existing.digest() == digest {
            return Ok(PushReport {
                reference: pinned,
                digest,
                tag,
                annotations,
                layers: layer_report(&|_| Transfer::Present),
                bytes_uploaded: 0,
                discarded_bytes: 0,
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

    // which blobs are missing? (HEADs in parallel, bounded; not for files sent while hashed, whose state is
    // known); then mount or upload each missing one, a few at a time, the config `{}` included; a digest shared
    // by several layers (two equal files) is sent once
    let config = Descriptor::empty_json();
    let mut streamed: BTreeMap<Digest, Streamed<'_>> = streamed.into_iter().collect();
    let discarded_bytes = streamed
        .values()
        .map(|s| match s {
            Streamed::Known(_, n) => *n,
            Streamed::Pending(_) => 0,
        })
        .sum();
    let mut unique: Vec<(&Descriptor, BlobSource, Option<Streamed<'_>>)> = vec![(
        &config,
        BlobSource::Bytes(bytes::Bytes::from_static(b"{}")),
        None,
    )];
    let mut seen_digests = BTreeSet::from([config.digest]);
    for p in &prepared {
        if seen_digests.insert(p.desc.digest) {
            let s = streamed.remove(&p.desc.digest);
            unique.push((&p.desc, BlobSource::File(p.source.clone()), s));
        }
    }
    let present: Vec<bool> = stream::iter(unique.iter().map(|(d, _, s)| async move {
        match s {
            Some(_) => Ok(false),
            None => store.blob_exists(&d.digest).await,
        }
    }))
    .buffered(PARALLEL_HEADS)
    .try_collect()
    .await?;
    let done: Vec<(Digest, Transfer, u64)> = stream::iter(unique.into_iter().zip(present))
        .map(|((desc, source, streamed), have)| async move {
            if have {
                return Ok::<_, Error>((desc.digest, Transfer::Present, 0));
            }
            if let Some(Streamed::Known(t, _)) = streamed {
                return Ok((desc.digest, t, 0));
            }
            // committed under the digest computed here; if the registry will not, upload it again
            if let Some(Streamed::Pending(u)) = streamed
                && u.commit(desc).await.is_ok()
            {
                return Ok((desc.digest, Transfer::Uploaded, desc.size));
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
        discarded_bytes,
        unchanged: false,
        allowed_secrets,
    })
}
