//! An OCI image layout folder (image-spec `image-layout.md`): `oci-layout`, `index.json` (tags in
//! `org.opencontainers.image.ref.name`), `blobs/sha256/<hex>`. This is skopeo's and umoci's `oci:` format.
//!
//! Safe under concurrent writers: blobs are written to a temporary file, hashed while written, and renamed into
//! place only when the digest matches; `index.json` is rewritten the same way under an exclusive lock on
//! `index.json.lock`, so two processes adding tags never lose each other's update.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use futures_util::StreamExt;

use super::{BlobSource, FetchedBlob, ManifestRef, Progress, Store};
use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};
use crate::oci::{Descriptor, ImageIndex, MAX_MANIFEST_BYTES, RawManifest, annotations, media};

const OCI_LAYOUT: &str = "oci-layout";
const OCI_LAYOUT_CONTENT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;
/// A cap on index.json (it grows with tags; 64 MiB is far beyond any real layout).
const MAX_INDEX_BYTES: u64 = 64 << 20;

/// An OCI image layout folder.
pub struct LayoutStore {
    root: PathBuf,
    /// The folder did not exist when opened for writing: it is created by the first write, so a command that
    /// fails before writing leaves nothing behind.
    pending_create: std::sync::atomic::AtomicBool,
    /// Blobs this handle wrote or found present: a tag is only written if those a manifest names are still there
    /// (a gc may have removed them meanwhile). Blobs it never handled are not checked: the OCI layout lets a
    /// manifest name blobs kept elsewhere (foreign layers).
    handled: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<Digest>>>,
}

impl LayoutStore {
    /// Opens a layout. With `create`, a missing folder is accepted and made (with its skeleton) by the first
    /// write; an existing folder must be a layout either way.
    pub async fn open(root: &Path, create: bool) -> Result<Self> {
        let r = root.to_path_buf();
        let missing = tokio::task::spawn_blocking(move || -> Result<bool> {
            if create && !r.join(OCI_LAYOUT).exists() && !r.exists() {
                return Ok(true);
            }
            Self::check_or_create(&r, create)?;
            Ok(false)
        })
        .await
        .expect("layout open task panicked")?;
        Ok(LayoutStore {
            root: root.to_path_buf(),
            pending_create: std::sync::atomic::AtomicBool::new(missing),
            handled: Default::default(),
        })
    }

    fn is_pending(&self) -> bool {
        self.pending_create
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Creates the layout skeleton if this store was opened on a missing folder.
    fn ensure_created(&self) -> Result<()> {
        if self.is_pending() {
            Self::check_or_create(&self.root, true)?;
            self.pending_create
                .store(false, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(())
    }

    fn check_or_create(root: &Path, create: bool) -> Result<()> {
        let marker = root.join(OCI_LAYOUT);
        match std::fs::read(&marker) {
            Ok(bytes) => {
                let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                    Error::untrusted(marker.display().to_string(), format!("not JSON: {e}"))
                })?;
                if v.get("imageLayoutVersion")
                    .and_then(|v| v.as_str())
                    .is_none()
                {
                    return Err(Error::untrusted(
                        marker.display().to_string(),
                        "no imageLayoutVersion: not an OCI image layout",
                    ));
                }
                std::fs::create_dir_all(root.join("blobs/sha256"))
                    .or_else(|e| if create { Err(e) } else { Ok(()) })
                    .map_err(|e| Error::io("creating", root.join("blobs/sha256"), e))?;
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                if root.exists()
                    && std::fs::read_dir(root)
                        .map(|mut d| d.next().is_some())
                        .unwrap_or(false)
                {
                    return Err(Error::usage_hint(
                        format!(
                            "{} exists and is not an OCI image layout (no oci-layout file)",
                            root.display()
                        ),
                        "name a new or empty folder for the layout",
                    ));
                }
                std::fs::create_dir_all(root.join("blobs/sha256"))
                    .map_err(|e| Error::io("creating", root.join("blobs/sha256"), e))?;
                // never clobber an index.json another writer made in the meantime: link, which fails if it exists
                let idx = root.join("index.json");
                let mut tmp = tempfile::Builder::new()
                    .prefix(".tmp-")
                    .tempfile_in(root)
                    .map_err(|e| Error::io("creating a temporary file in", root, e))?;
                tmp.write_all(
                    br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#,
                )
                .map_err(|e| Error::io("writing", tmp.path().to_path_buf(), e))?;
                let linked = std::fs::hard_link(tmp.path(), &idx);
                match linked {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(Error::io("creating", idx, e)),
                }
                write_atomic(&marker, OCI_LAYOUT_CONTENT.as_bytes())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NotFound {
                what: format!("OCI image layout {} (no oci-layout file)", root.display()),
            }),
            Err(e) => Err(Error::io("reading", marker, e)),
        }
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    fn read_index(&self) -> Result<ImageIndex> {
        let path = self.index_path();
        let bytes = read_capped(&path, MAX_INDEX_BYTES)?;
        let raw = serde_json::from_slice::<ImageIndex>(&bytes).map_err(|e| {
            Error::untrusted(
                path.display().to_string(),
                format!("not an image index: {e}"),
            )
        })?;
        Ok(raw)
    }

    /// Reads a blob that must be small (a manifest), checking it hashes to its name.
    fn read_manifest_blob(&self, desc: &Descriptor) -> Result<Option<RawManifest>> {
        let path = self.blob_path(&desc.digest);
        let bytes = match read_capped(&path, MAX_MANIFEST_BYTES as u64) {
            Ok(b) => b,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let raw = RawManifest::new(desc.media_type.clone(), bytes)?;
        raw.check_digest(
            &format!("oci:{}@{}", self.root.display(), desc.digest),
            &desc.digest,
        )?;
        Ok(Some(raw))
    }

    fn find_tag(&self, tag: &str) -> Result<Option<Descriptor>> {
        let idx = self.read_index()?;
        let mut found = idx
            .manifests
            .into_iter()
            .filter(|d| d.annotation(annotations::REF_NAME) == Some(tag));
        let first = found.next();
        if found.next().is_some() {
            return Err(Error::untrusted(
                format!("{} tag {tag}", self.index_path().display()),
                "the tag is listed more than once in index.json",
            ));
        }
        Ok(first)
    }

    /// Runs `f` holding the exclusive lock on `index.json.lock` (the lock every writer of index.json takes).
    fn locked<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let lock_path = self.root.join("index.json.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io("opening", &lock_path, e))?;
        lock.lock()
            .map_err(|e| Error::io("locking", &lock_path, e))?;
        let r = f();
        let _ = lock.unlock();
        r
    }

    /// Removes every index.json entry for `digest` (all its tags), under the lock.
    fn untag_digest(&self, digest: &Digest) -> Result<()> {
        self.locked(|| {
            let mut idx = self.read_index()?;
            let before = idx.manifests.len();
            idx.manifests.retain(|d| d.digest != *digest);
            if idx.manifests.len() == before {
                return Ok(());
            }
            let bytes = serde_json::to_vec(&idx).expect("index serialisation cannot fail");
            write_atomic(&self.index_path(), &bytes)
        })
    }

    /// Every blob reachable from index.json: each entry, and for manifests and indexes what they name (config,
    /// layers, child manifests, recursively). Subjects are not followed (a referrer does not keep its subject).
    /// A reachable manifest that cannot be read or parsed is an error: reachability is then unknown.
    fn reachable(&self) -> Result<std::collections::BTreeSet<Digest>> {
        use crate::oci::Manifest;
        let idx = self.read_index()?;
        let mut marked = std::collections::BTreeSet::new();
        // (descriptor, whether it stands where a manifest belongs: an index.json entry or an index's child)
        let mut todo: Vec<(Descriptor, bool)> =
            idx.manifests.into_iter().map(|d| (d, true)).collect();
        while let Some((desc, manifest_position)) = todo.pop() {
            if !marked.insert(desc.digest) {
                continue;
            }
            if !manifest_position {
                continue;
            }
            if !is_manifest_type(&desc.media_type) {
                return Err(Error::Unsupported {
                    what: self.name_of(format!("@{}", desc.digest)),
                    reason: format!(
                        "media type {:?} is not a manifest or index sealpack can read, so what it reaches is \
                         unknown; no blob was removed",
                        desc.media_type
                    ),
                });
            }
            let Some(raw) = self.read_manifest_blob(&desc)? else {
                continue; // a dangling entry: nothing below it to keep
            };
            match raw.parse()? {
                Manifest::Image(m) => {
                    todo.push((m.config, false));
                    todo.extend(m.layers.into_iter().map(|l| (l, false)));
                }
                Manifest::Index(i) => todo.extend(i.manifests.into_iter().map(|c| (c, true))),
            }
        }
        Ok(marked)
    }

    /// Deletes the files of `blobs/sha256/` that [`LayoutStore::reachable`] does not reach, under the lock.
    /// Temporary files (`.tmp-*`, uploads in progress) and names that are not a sha256 hex are left alone.
    fn sweep(&self, grace: std::time::Duration) -> Result<super::Swept> {
        self.locked(|| {
            let keep = self.reachable()?;
            let cutoff = std::time::SystemTime::now()
                .checked_sub(grace)
                .unwrap_or(std::time::UNIX_EPOCH);
            let dir = self.root.join("blobs/sha256");
            let mut swept = super::Swept::default();
            let entries = std::fs::read_dir(&dir).map_err(|e| Error::io("reading", &dir, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| Error::io("reading", &dir, e))?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                let Ok(digest) = Digest::parse(&format!("sha256:{name}")) else {
                    continue;
                };
                if keep.contains(&digest) {
                    continue;
                }
                let path = entry.path();
                let meta = entry.metadata().ok();
                // written (or reused: put_blob touches a blob it finds) within the grace period: a push may be
                // between its blobs and its tag
                if meta
                    .as_ref()
                    .and_then(|m| m.modified().ok())
                    .is_none_or(|t| t > cutoff)
                {
                    swept.recent += 1;
                    continue;
                }
                let size = meta.map(|m| m.len()).unwrap_or(0);
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        swept.blobs += 1;
                        swept.bytes += size;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io("removing", path, e)),
                }
            }
            Ok(swept)
        })
    }

    fn set_tag(&self, desc: &Descriptor, tag: &str) -> Result<()> {
        self.locked(|| self.set_tag_locked(desc, tag))
    }

    fn set_tag_locked(&self, desc: &Descriptor, tag: &str) -> Result<()> {
        // under the lock gc sweeps under: a blob removed since this push wrote or found it fails the push here,
        // instead of leaving a tag on a manifest with a missing blob
        let handled = self.handled.lock().expect("handled lock").clone();
        if handled.contains(&desc.digest)
            && let Some(raw) = self.read_manifest_blob(desc)?
        {
            use crate::oci::Manifest;
            let named: Vec<Descriptor> = match raw.parse()? {
                Manifest::Image(m) => std::iter::once(m.config).chain(m.layers).collect(),
                Manifest::Index(i) => i.manifests,
            };
            let gone = std::iter::once(desc.digest)
                .chain(named.iter().map(|d| d.digest))
                .find(|d| handled.contains(d) && !self.blob_path(d).is_file());
            if let Some(d) = gone {
                return Err(Error::Unsupported {
                    what: self.name_of(format!(":{tag}")),
                    reason: format!(
                        "blob {d} of manifest {} was removed while this push ran (a gc with a short --grace?); \
                         the tag was not written: push again",
                        desc.digest
                    ),
                });
            }
        } else if handled.contains(&desc.digest) {
            return Err(Error::Unsupported {
                what: self.name_of(format!(":{tag}")),
                reason: format!(
                    "manifest {} was removed while this push ran; the tag was not written: push again",
                    desc.digest
                ),
            });
        }
        let mut idx = self.read_index()?;
        idx.manifests
            .retain(|d| d.annotation(annotations::REF_NAME) != Some(tag));
        let mut entry = Descriptor::new(desc.media_type.clone(), desc.digest, desc.size);
        entry.annotations = Some(BTreeMap::from([(
            annotations::REF_NAME.to_string(),
            tag.to_string(),
        )]));
        idx.manifests.push(entry);
        if idx.media_type.is_none() {
            idx.media_type = Some(media::OCI_INDEX.into());
        }
        let bytes = serde_json::to_vec(&idx).expect("index serialisation cannot fail");
        write_atomic(&self.index_path(), &bytes)
    }

    /// A second handle on the same folder, for blocking work on another thread.
    fn handle(&self) -> LayoutStore {
        LayoutStore {
            root: self.root.clone(),
            pending_create: false.into(),
            handled: self.handled.clone(),
        }
    }

    fn name_of(&self, r: impl std::fmt::Display) -> String {
        format!("oci:{}{r}", self.root.display())
    }
}

/// Whether a descriptor's media type names a manifest or index (whose content names further blobs).
fn is_manifest_type(media_type: &str) -> bool {
    media::MANIFEST_ACCEPT.contains(&media_type)
}

fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| Error::io("reading", path, e))?;
    let mut buf = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io("reading", path, e))?;
    if buf.len() as u64 > max {
        return Err(Error::untrusted(
            path.display().to_string(),
            format!("larger than the {max}-byte cap"),
        ));
    }
    Ok(buf)
}

/// Writes a file by writing a temporary file beside it and renaming it over the target.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| Error::io("creating a temporary file in", dir, e))?;
    tmp.write_all(bytes)
        .map_err(|e| Error::io("writing", tmp.path().to_path_buf(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io("syncing", tmp.path().to_path_buf(), e))?;
    tmp.persist(path)
        .map_err(|e| Error::io("renaming into place", path, e.error))?;
    Ok(())
}

#[async_trait]
impl Store for LayoutStore {
    fn name(&self) -> String {
        format!("oci:{}", self.root.display())
    }

    async fn fetch_manifest(&self, r: ManifestRef<'_>) -> Result<Option<RawManifest>> {
        if self.is_pending() {
            return Ok(None);
        }
        let desc = match r {
            ManifestRef::Tag(t) => match self.find_tag(t)? {
                Some(d) => d,
                None => return Ok(None),
            },
            ManifestRef::Digest(d) => {
                // the media type is not recorded for untagged blobs; the manifest's own mediaType decides
                Descriptor::new("", *d, 0)
            }
        };
        // by digest the media type is not recorded: RawManifest takes it from the content
        self.read_manifest_blob(&desc)
    }

    async fn put_manifest(&self, manifest: &RawManifest, tag: Option<&str>) -> Result<()> {
        let desc = manifest.descriptor();
        self.put_blob(
            &desc,
            BlobSource::Bytes(manifest.bytes().clone()),
            &super::no_progress,
        )
        .await?;
        if let Some(tag) = tag {
            let this = self.handle();
            let tag = tag.to_string();
            tokio::task::spawn_blocking(move || this.set_tag(&desc, &tag))
                .await
                .expect("tag task panicked")?;
        }
        Ok(())
    }

    async fn blob_exists(&self, digest: &Digest) -> Result<bool> {
        if self.is_pending() {
            return Ok(false);
        }
        match tokio::fs::metadata(self.blob_path(digest)).await {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("checking", self.blob_path(digest), e)),
        }
    }

    async fn get_blob(&self, desc: &Descriptor) -> Result<FetchedBlob> {
        let path = self.blob_path(&desc.digest);
        let what = self.name_of(format!("@{}", desc.digest));
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.len() != desc.size => {
                return Err(Error::SizeMismatch {
                    what,
                    expected: desc.size,
                    actual: m.len(),
                });
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound { what });
            }
            Err(e) => return Err(Error::io("reading", path, e)),
        }
        let stream = super::file_stream(&path).await?;
        Ok(FetchedBlob::new(what, desc.clone(), stream))
    }

    async fn put_blob(
        &self,
        desc: &Descriptor,
        source: BlobSource<'_>,
        progress: Progress<'_>,
    ) -> Result<()> {
        self.ensure_created()?;
        if self.blob_exists(&desc.digest).await? {
            // reused: mark it recent, so a gc running now keeps it for its grace period (best effort; the tag is
            // only written if every blob is still there)
            if let Ok(f) = std::fs::File::open(self.blob_path(&desc.digest)) {
                let _ = f.set_modified(std::time::SystemTime::now());
            }
            self.handled
                .lock()
                .expect("handled lock")
                .insert(desc.digest);
            return Ok(());
        }
        let dir = self.root.join("blobs/sha256");
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&dir)
            .map_err(|e| Error::io("creating a temporary file in", &dir, e))?;
        let mut stream = match source {
            BlobSource::Bytes(b) => Box::pin(futures_util::stream::once(async move { Ok(b) })),
            BlobSource::File(p) => super::file_stream(&p).await?,
            BlobSource::Stream(open) => open().await?,
        };
        let (file, tmp_path) = tmp.into_parts();
        let mut file = tokio::fs::File::from_std(file);
        let mut hasher = Hasher::new();
        let what = self.name_of(format!("@{}", desc.digest));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Error::io("reading the source of", &what, e))?;
            if hasher.len() + chunk.len() as u64 > desc.size {
                return Err(Error::SizeMismatch {
                    what,
                    expected: desc.size,
                    actual: desc.size + 1,
                });
            }
            hasher.update(&chunk);
            tokio::io::AsyncWriteExt::write_all(&mut file, &chunk)
                .await
                .map_err(|e| Error::io("writing", tmp_path.to_path_buf(), e))?;
            progress(chunk.len() as u64);
        }
        tokio::io::AsyncWriteExt::flush(&mut file)
            .await
            .map_err(|e| Error::io("writing", tmp_path.to_path_buf(), e))?;
        file.sync_all()
            .await
            .map_err(|e| Error::io("syncing", tmp_path.to_path_buf(), e))?;
        let (digest, size) = hasher.finish();
        if size != desc.size {
            return Err(Error::SizeMismatch {
                what,
                expected: desc.size,
                actual: size,
            });
        }
        if digest != desc.digest {
            return Err(Error::DigestMismatch {
                what,
                expected: desc.digest,
                actual: digest,
            });
        }
        let dest = self.blob_path(&desc.digest);
        tmp_path
            .persist(&dest)
            .map_err(|e| Error::io("renaming into place", &dest, e.error))?;
        self.handled
            .lock()
            .expect("handled lock")
            .insert(desc.digest);
        Ok(())
    }

    async fn delete_manifest(&self, digest: &Digest) -> Result<()> {
        if self.is_pending() {
            return Ok(());
        }
        let this = self.handle();
        let digest = *digest;
        tokio::task::spawn_blocking(move || this.untag_digest(&digest))
            .await
            .expect("untag task panicked")
    }

    async fn remove_unreachable_blobs(
        &self,
        grace: std::time::Duration,
    ) -> Result<Option<super::Swept>> {
        if self.is_pending() {
            return Ok(Some(super::Swept::default()));
        }
        let this = self.handle();
        tokio::task::spawn_blocking(move || this.sweep(grace))
            .await
            .expect("sweep task panicked")
            .map(Some)
    }

    async fn list_tags(&self) -> Result<Vec<String>> {
        if self.is_pending() {
            return Ok(Vec::new());
        }
        let idx = self.read_index()?;
        let mut tags: Vec<String> = idx
            .manifests
            .iter()
            .filter_map(|d| d.annotation(annotations::REF_NAME).map(str::to_string))
            .collect();
        tags.sort();
        tags.dedup();
        Ok(tags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::ImageManifest;

    /// A gc that removed a blob while a push ran (between the push's blobs and its tag) fails the push's tag
    /// instead of leaving a tag on a manifest with a missing blob; a reused blob is marked recent for gc's grace.
    #[tokio::test]
    async fn a_tag_is_written_only_when_every_blob_is_there() {
        async fn put(store: &LayoutStore, data: &'static [u8]) -> Descriptor {
            let d = Descriptor::new(media::OCTET_STREAM, Digest::of(data), data.len() as u64);
            let b = bytes::Bytes::from_static(data);
            store
                .put_blob(&d, BlobSource::Bytes(b), &super::super::no_progress)
                .await
                .unwrap();
            d
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("layout");
        let store = LayoutStore::open(&root, true).await.unwrap();
        let layer = put(&store, b"layer bytes").await;
        put(&store, b"{}").await;
        let m = ImageManifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.into()),
            artifact_type: None,
            config: Descriptor::empty_json(),
            layers: vec![layer.clone()],
            subject: None,
            annotations: None,
        };
        let raw = RawManifest::from_image(&m).unwrap();
        // "gc" removes the layer now
        std::fs::remove_file(store.blob_path(&layer.digest)).unwrap();
        let err = store.put_manifest(&raw, Some("v1")).await.unwrap_err();
        assert!(
            err.to_string().contains("was removed while this push ran"),
            "{err}"
        );
        assert!(store.list_tags().await.unwrap().is_empty());
        // the push again: the layer is written anew, the tag goes in
        put(&store, b"layer bytes").await;
        store.put_manifest(&raw, Some("v1")).await.unwrap();
        assert_eq!(store.list_tags().await.unwrap(), ["v1"]);

        // reusing a blob makes it recent: a sweep with a grace period keeps it even when nothing reaches it
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        let set_old = |d: &Descriptor| {
            std::fs::File::open(store.blob_path(&d.digest))
                .unwrap()
                .set_modified(old)
                .unwrap()
        };
        let orphan = put(&store, b"orphan").await;
        set_old(&orphan);
        put(&store, b"orphan").await;
        let hour = std::time::Duration::from_secs(3600);
        let swept = store.sweep(hour).unwrap();
        assert_eq!((swept.blobs, swept.recent), (0, 1));
        set_old(&orphan);
        let swept = store.sweep(hour).unwrap();
        assert_eq!(swept.blobs, 1);
        assert!(!store.blob_path(&orphan.digest).exists());
        assert!(store.blob_path(&layer.digest).exists());
    }

    #[tokio::test]
    async fn layout_round_trip_and_tags() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("layout");
        assert!(LayoutStore::open(&root, false).await.is_err());
        let store = LayoutStore::open(&root, true).await.unwrap();
        assert!(!root.exists(), "created on the first write only");
        let data = bytes::Bytes::from_static(b"payload");
        let desc = Descriptor::new(media::OCTET_STREAM, Digest::of(&data), data.len() as u64);
        store
            .put_blob(
                &desc,
                BlobSource::Bytes(data.clone()),
                &super::super::no_progress,
            )
            .await
            .unwrap();
        assert!(store.blob_exists(&desc.digest).await.unwrap());
        let got = store
            .get_blob(&desc)
            .await
            .unwrap()
            .into_bytes(100)
            .await
            .unwrap();
        assert_eq!(got, data);

        // a lying source is refused and leaves nothing behind
        let lie = Descriptor::new(media::OCTET_STREAM, Digest::of(b"other"), 7);
        let err = store
            .put_blob(
                &lie,
                BlobSource::Bytes(data.clone()),
                &super::super::no_progress,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }));
        assert!(!store.blob_exists(&lie.digest).await.unwrap());
        let leftovers: Vec<_> = std::fs::read_dir(root.join("blobs/sha256"))
            .unwrap()
            .collect();
        assert_eq!(leftovers.len(), 1, "only the good blob remains");

        let m = ImageManifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.into()),
            artifact_type: None,
            config: Descriptor::empty_json(),
            layers: vec![desc.clone()],
            subject: None,
            annotations: None,
        };
        let raw = RawManifest::from_image(&m).unwrap();
        store.put_manifest(&raw, Some("v1")).await.unwrap();
        store.put_manifest(&raw, Some("v2")).await.unwrap();
        store.put_manifest(&raw, Some("v1")).await.unwrap();
        assert_eq!(store.list_tags().await.unwrap(), ["v1", "v2"]);
        let got = store
            .fetch_manifest(ManifestRef::Tag("v1"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.digest(), raw.digest());
        let got = store
            .fetch_manifest(ManifestRef::Digest(&raw.digest()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.media_type(), media::OCI_MANIFEST);
        assert!(
            store
                .fetch_manifest(ManifestRef::Tag("nope"))
                .await
                .unwrap()
                .is_none()
        );

        // surgery on the manifest blob is caught
        std::fs::write(store.blob_path(&raw.digest()), b"{}").unwrap();
        let err = store
            .fetch_manifest(ManifestRef::Tag("v1"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    }

    #[tokio::test]
    async fn concurrent_taggers_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("l");
        std::fs::create_dir(&root).unwrap();
        LayoutStore::open(&root, true).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..16 {
            let root = root.clone();
            tasks.push(tokio::spawn(async move {
                let store = LayoutStore::open(&root, true).await.unwrap();
                let m = format!(r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"a","digest":"{}","size":2}},"layers":[],"annotations":{{"i":"{i}"}}}}"#, media::OCI_MANIFEST, crate::digest::empty_json_digest());
                let raw = RawManifest::new(media::OCI_MANIFEST, m.into_bytes()).unwrap();
                store.put_manifest(&raw, Some(&format!("t{i}"))).await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let store = LayoutStore::open(&root, false).await.unwrap();
        assert_eq!(store.list_tags().await.unwrap().len(), 16);
    }

    #[tokio::test]
    async fn refuses_a_non_layout_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x"), b"x").unwrap();
        let err = LayoutStore::open(dir.path(), true).await.err().unwrap();
        assert!(err.to_string().contains("not an OCI image layout"), "{err}");
    }
}
