//! Where artifacts live: the [`Store`] trait and its two backends, an OCI registry ([`registry`]) and an OCI image
//! layout folder ([`layout`]). Every command is written against the trait, so every command works on both.
//!
//! A store is opened for one repository (registry) or one layout folder. Untrusted bytes enter the program here and
//! leave only as checked values: manifests as [`RawManifest`] whose digest was computed from the bytes received, and
//! blobs as [`FetchedBlob`], which can only be consumed through methods that check size and digest.

pub mod evidence;
pub mod layout;
pub mod registry;
pub mod retry;

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};
use crate::oci::{Descriptor, RawManifest};
use crate::reference::Reference;

pub use registry::{ClientOptions, Credentials, RegistryClient};
pub use retry::RetryOptions;

/// A stream of blob bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// A progress callback: called with the number of bytes moved since the last call.
pub type Progress<'a> = &'a (dyn Fn(u64) + Send + Sync);

/// A progress callback that ignores everything.
pub fn no_progress(_: u64) {}

/// Where an uploaded blob's bytes come from. The caller has already computed the digest (a store is never asked to
/// trust a digest it cannot check: the registry re-hashes on commit, the layout store hashes while writing).
pub enum BlobSource<'a> {
    /// Bytes in memory (small blobs: configs, payloads).
    Bytes(Bytes),
    /// A file on disk, read from its start.
    File(PathBuf),
    /// A stream from elsewhere (another store), opened again for each attempt, so that an interrupted upload can
    /// restart from the first byte.
    Stream(Opener<'a>),
}

/// Opens a blob's bytes as a stream (see [`BlobSource::Stream`]).
pub type Opener<'a> =
    Box<dyn Fn() -> futures_util::future::BoxFuture<'a, Result<ByteStream>> + Send + Sync + 'a>;

/// Which manifest to fetch.
#[derive(Debug, Clone, Copy)]
pub enum ManifestRef<'a> {
    /// By tag: the digest is computed from the bytes received.
    Tag(&'a str),
    /// By digest: the bytes received must hash to it.
    Digest(&'a Digest),
}

impl std::fmt::Display for ManifestRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ManifestRef::Tag(t) => write!(f, ":{t}"),
            ManifestRef::Digest(d) => write!(f, "@{d}"),
        }
    }
}

/// One repository of a registry, or one layout folder.
#[async_trait]
pub trait Store: Send + Sync {
    /// `HOST/REPO` or `oci:PATH`: the name used in messages and in signatures' `docker-reference`.
    fn name(&self) -> String;

    /// Fetches a manifest; `Ok(None)` when the tag or digest does not exist. By digest, the bytes are checked
    /// against it; by tag, the digest is computed from the bytes (never read from a header).
    async fn fetch_manifest(&self, r: ManifestRef<'_>) -> Result<Option<RawManifest>>;

    /// Stores a manifest under its digest and then, if given, points `tag` at it. The blobs it references must
    /// already be in the store.
    async fn put_manifest(&self, manifest: &RawManifest, tag: Option<&str>) -> Result<()>;

    /// Whether the store has this blob.
    async fn blob_exists(&self, digest: &Digest) -> Result<bool>;

    /// Opens a blob for reading. Nothing is trusted until the [`FetchedBlob`] is consumed.
    async fn get_blob(&self, desc: &Descriptor) -> Result<FetchedBlob>;

    /// Uploads a blob whose descriptor (digest, size) the caller computed.
    async fn put_blob(
        &self,
        desc: &Descriptor,
        source: BlobSource<'_>,
        progress: Progress<'_>,
    ) -> Result<()>;

    /// Opens an upload whose digest is not known yet, so that push can send a large file while it is still
    /// hashing and scanning it (one pass of the network instead of hash-then-upload). `Ok(None)` when this store
    /// has no such upload (a layout folder: the caller hashes first).
    async fn begin_upload(&self) -> Result<Option<Box<dyn BlobUpload + '_>>> {
        Ok(None)
    }

    /// Tries to make a blob present by mounting it from another repository of the same registry. `Ok(false)` when
    /// the store cannot mount (the caller then uploads).
    async fn mount_blob(&self, _desc: &Descriptor, _from_repository: &str) -> Result<bool> {
        Ok(false)
    }

    /// Tries to make a blob present without uploading it, by mounting it from a repository of the same registry
    /// that is known to hold it. `Ok(false)` when no such repository is known or the registry refused.
    async fn try_mount(&self, _desc: &Descriptor) -> Result<bool> {
        Ok(false)
    }

    /// Whether the store serves the OCI 1.1 referrers API.
    async fn supports_referrers(&self) -> Result<bool> {
        Ok(false)
    }

    /// Manifests that name `subject` as their subject and have `artifact_type`, from the referrers API;
    /// `Ok(None)` when the store does not serve the API (the caller relies on the tag schema).
    async fn referrers(
        &self,
        _subject: &Digest,
        _artifact_type: &str,
    ) -> Result<Option<Vec<Descriptor>>> {
        Ok(None)
    }

    /// All tags.
    async fn list_tags(&self) -> Result<Vec<String>>;

    /// Deletes the manifest `digest` and every tag pointing at it (`gc`). A manifest already gone is not an
    /// error. The default refuses: a store must say how it deletes.
    async fn delete_manifest(&self, digest: &Digest) -> Result<()> {
        Err(Error::Unsupported {
            what: format!("{}@{digest}", self.name()),
            reason: "this store cannot delete manifests".into(),
        })
    }

    /// Removes the blobs no remaining manifest reaches, after [`Store::delete_manifest`], except those written or
    /// reused within `grace` (a push still running may not have tagged them yet). `Ok(None)` when the store leaves
    /// that to its own garbage collection (a registry). The default refuses.
    async fn remove_unreachable_blobs(&self, _grace: std::time::Duration) -> Result<Option<Swept>> {
        Err(Error::Unsupported {
            what: self.name(),
            reason: "this store cannot remove blobs".into(),
        })
    }
}

/// What [`Store::remove_unreachable_blobs`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Swept {
    /// Blobs removed.
    pub blobs: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Unreached blobs kept because they were written or reused within the grace period.
    pub recent: u64,
}

/// An upload session opened before the blob's digest is known (see [`Store::begin_upload`]). Nothing becomes a
/// blob until [`BlobUpload::commit`] names the digest the caller computed, which the registry checks against the
/// bytes it received; [`BlobUpload::abort`] throws the session away.
#[async_trait]
pub trait BlobUpload: Send + Sync {
    /// Sends the blob's bytes (once). The body may end early (push stops it when the store turns out to have the
    /// blob): the session then holds what was sent, for [`BlobUpload::abort`]. A failure leaves the session to
    /// `abort` too; the caller then uploads the blob the ordinary way.
    async fn send(&mut self, body: ByteStream, progress: Progress<'_>) -> Result<()>;

    /// Turns the bytes sent into the blob `desc` names.
    async fn commit(self: Box<Self>, desc: &Descriptor) -> Result<()>;

    /// Abandons the session (best effort: registries also expire abandoned sessions).
    async fn abort(self: Box<Self>);
}

/// Settings for opening stores.
#[derive(Clone)]
pub struct StoreOptions {
    /// The registry client (shared across stores so connections and tokens are reused).
    pub client: Arc<RegistryClient>,
}

/// Opens the store a reference names. `for_push` asks for push access (registry) or creates the layout folder.
pub async fn open(
    reference: &Reference,
    opts: &StoreOptions,
    for_push: bool,
) -> Result<Box<dyn Store>> {
    match reference {
        Reference::Registry(r) => Ok(Box::new(registry::RegistryStore::new(
            opts.client.clone(),
            r,
            for_push,
        ))),
        Reference::Layout(l) => Ok(Box::new(
            layout::LayoutStore::open(l.path(), for_push).await?,
        )),
    }
}

/// Resolves a reference once to a manifest: by its digest when pinned, else by its tag. Every command calls this
/// once at the top and works on the returned digest afterwards.
pub async fn resolve(store: &dyn Store, reference: &Reference) -> Result<RawManifest> {
    let r = match (reference.digest(), reference.tag()) {
        (Some(d), _) => ManifestRef::Digest(d),
        (None, Some(t)) => ManifestRef::Tag(t),
        (None, None) => {
            return Err(Error::usage_hint(
                format!("{reference} names no tag or digest"),
                format!("add :TAG or @sha256:... to {reference}"),
            ));
        }
    };
    store
        .fetch_manifest(r)
        .await?
        .ok_or_else(|| Error::NotFound {
            what: format!("{}{r}", store.name()),
        })
}

/// A blob being fetched. Its bytes are untrusted until one of the consuming methods has checked them against the
/// descriptor; each of them fails with [`Error::SizeMismatch`] or [`Error::DigestMismatch`] otherwise.
pub struct FetchedBlob {
    what: String,
    desc: Descriptor,
    stream: ByteStream,
}

impl FetchedBlob {
    /// Wraps a raw stream for the blob `desc`; `what` names it in errors (e.g. `HOST/REPO@sha256:...`).
    pub fn new(what: String, desc: Descriptor, stream: ByteStream) -> Self {
        FetchedBlob { what, desc, stream }
    }

    /// The descriptor the bytes will be checked against.
    pub fn descriptor(&self) -> &Descriptor {
        &self.desc
    }

    fn too_long(&self) -> Error {
        Error::SizeMismatch {
            what: self.what.clone(),
            expected: self.desc.size,
            actual: self.desc.size + 1,
        }
    }

    fn check_end(what: &str, desc: &Descriptor, hasher: Hasher) -> Result<()> {
        let (digest, size) = hasher.finish();
        if size != desc.size {
            return Err(Error::SizeMismatch {
                what: what.to_string(),
                expected: desc.size,
                actual: size,
            });
        }
        if digest != desc.digest {
            return Err(Error::DigestMismatch {
                what: what.to_string(),
                expected: desc.digest,
                actual: digest,
            });
        }
        Ok(())
    }

    /// Reads the whole blob into memory, refusing a descriptor over `max` bytes before reading anything.
    pub async fn into_bytes(mut self, max: u64) -> Result<Bytes> {
        if self.desc.size > max {
            return Err(Error::untrusted(
                &self.what,
                format!(
                    "declares {} bytes, over the {max}-byte cap for this kind of blob",
                    self.desc.size
                ),
            ));
        }
        let mut buf = Vec::with_capacity(self.desc.size as usize);
        let mut hasher = Hasher::new();
        while let Some(chunk) = self.stream.next().await {
            let chunk = chunk.map_err(|e| Error::io("reading", &self.what, e))?;
            if buf.len() as u64 + chunk.len() as u64 > self.desc.size {
                return Err(self.too_long());
            }
            hasher.update(&chunk);
            buf.extend_from_slice(&chunk);
        }
        Self::check_end(&self.what, &self.desc, hasher)?;
        Ok(Bytes::from(buf))
    }

    /// Writes the blob to a new file at `path` (which must not exist), hashing on one thread and writing on
    /// another while the network feeds both. On any error the file is removed; when this returns `Ok` the file
    /// holds exactly the blob.
    pub async fn write_new_file(mut self, path: &Path, progress: Progress<'_>) -> Result<()> {
        use std::io::Write;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| Error::io("creating", path, e))?;
        // network chunks are ~400 KiB: 16 in flight per thread bounds memory at a few MiB. Hashing and writing run
        // on their own threads, in parallel with each other and with the network.
        let (htx, mut hrx) = tokio::sync::mpsc::channel::<Bytes>(16);
        let (wtx, mut wrx) = tokio::sync::mpsc::channel::<Bytes>(16);
        let hash_thread = tokio::task::spawn_blocking(move || {
            let mut h = Hasher::new();
            while let Some(b) = hrx.blocking_recv() {
                h.update(&b);
            }
            h
        });
        let write_thread = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            // chunks are large already: write them as they come, no extra copy through a buffer
            // (measured: one thread hashing then writing is slower than these two in parallel)
            let mut w = file;
            while let Some(b) = wrx.blocking_recv() {
                w.write_all(&b)?;
            }
            w.flush()
        });
        let mut received: u64 = 0;
        let mut failure: Option<Error> = None;
        while let Some(chunk) = self.stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    failure = Some(Error::io("downloading", &self.what, e));
                    break;
                }
            };
            received += chunk.len() as u64;
            if received > self.desc.size {
                failure = Some(self.too_long());
                break;
            }
            progress(chunk.len() as u64);
            // a closed channel means the writer failed; its error is collected below
            if htx.send(chunk.clone()).await.is_err() || wtx.send(chunk).await.is_err() {
                break;
            }
        }
        drop(htx);
        drop(wtx);
        let hasher = hash_thread.await.expect("hash task panicked");
        let written = write_thread.await.expect("write task panicked");
        let result = match (failure, written) {
            (Some(e), _) => Err(e),
            (None, Err(e)) => Err(Error::io("writing", path, e)),
            (None, Ok(())) => Self::check_end(&self.what, &self.desc, hasher),
        };
        if result.is_err() {
            let _ = std::fs::remove_file(path);
        }
        result
    }

    /// A stream that yields the blob's bytes and ends with an error instead of its last item being trusted when the
    /// size or digest is wrong. For copying between stores: the receiving store must not commit the blob unless the
    /// stream ended cleanly.
    pub fn into_checked_stream(self) -> ByteStream {
        struct State {
            what: String,
            desc: Descriptor,
            stream: ByteStream,
            hasher: Option<Hasher>,
        }
        let state = State {
            what: self.what,
            desc: self.desc,
            stream: self.stream,
            hasher: Some(Hasher::new()),
        };
        Box::pin(futures_util::stream::unfold(state, |mut st| async move {
            let mut hasher = st.hasher.take()?;
            match st.stream.next().await {
                Some(Ok(chunk)) => {
                    if hasher.len() + chunk.len() as u64 > st.desc.size {
                        let e = Error::SizeMismatch {
                            what: st.what.clone(),
                            expected: st.desc.size,
                            actual: st.desc.size + 1,
                        };
                        return Some((Err(e.into_io()), st));
                    }
                    hasher.update(&chunk);
                    st.hasher = Some(hasher);
                    Some((Ok(chunk), st))
                }
                Some(Err(e)) => Some((Err(e), st)),
                None => match FetchedBlob::check_end(&st.what, &st.desc, hasher) {
                    Ok(()) => None,
                    Err(e) => Some((Err(e.into_io()), st)),
                },
            }
        }))
    }
}

/// Size of each read when streaming a file.
const FILE_CHUNK: usize = 1 << 20;
/// Chunks in flight per file stream (bounds memory at `FILE_CHUNKS * FILE_CHUNK`).
const FILE_CHUNKS: usize = 8;
/// Chunks in flight per paced file stream ([`file_stream_paced`]).
const PACED_CHUNKS: usize = 4;

/// A read buffer that goes back to its pool when the last `Bytes` pointing into it is dropped, so a stream
/// of a large file reuses a few buffers instead of allocating (and page-faulting) a fresh one per chunk.
struct PooledBuf {
    buf: Vec<u8>,
    len: usize,
    pool: std::sync::mpsc::Sender<Vec<u8>>,
}

impl AsRef<[u8]> for PooledBuf {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        let _ = self.pool.send(std::mem::take(&mut self.buf));
    }
}

/// Opens a file as a stream of 1 MiB chunks read by a dedicated thread into a small pool of reused buffers:
/// one read per chunk, bounded memory, no per-chunk allocation.
pub async fn file_stream(path: &Path) -> Result<ByteStream> {
    file_stream_paced(path, None).await
}

/// Waits, on the reading thread, until the bytes before an offset may be sent (or fails to stop the stream).
pub type Pace = Box<dyn FnMut(u64) -> std::io::Result<()> + Send>;

/// [`file_stream`], where each chunk is handed on only once `pace` (given the offset of the chunk's end) allows it:
/// push streams a file to the registry while the secret scanner is still reading it, never ahead of the scanner.
pub async fn file_stream_paced(path: &Path, mut pace: Option<Pace>) -> Result<ByteStream> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let mut offset = 0u64;
    // a paced stream runs beside a hashing read of the same file, and push runs up to four: fewer buffers each
    let chunks = if pace.is_some() {
        PACED_CHUNKS
    } else {
        FILE_CHUNKS
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(chunks);
    let (pool_tx, pool_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut allocated = 0;
        loop {
            let mut buf = match pool_rx.try_recv() {
                Ok(b) => b,
                Err(_) if allocated < chunks => {
                    allocated += 1;
                    vec![0u8; FILE_CHUNK]
                }
                Err(_) => match pool_rx.recv() {
                    Ok(b) => b,
                    Err(_) => return,
                },
            };
            // fill the buffer (short reads happen), so chunks stay large
            let mut len = 0;
            let read = loop {
                match file.read(&mut buf[len..]) {
                    Ok(0) => break Ok(()),
                    Ok(n) => {
                        len += n;
                        if len == buf.len() {
                            break Ok(());
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            if let Err(e) = read {
                let _ = tx.blocking_send(Err(e));
                return;
            }
            if len == 0 {
                return;
            }
            offset += len as u64;
            if let Some(Err(e)) = pace.as_mut().map(|p| p(offset)) {
                let _ = tx.blocking_send(Err(e));
                return;
            }
            let chunk = Bytes::from_owner(PooledBuf {
                buf,
                len,
                pool: pool_tx.clone(),
            });
            if tx.blocking_send(Ok(chunk)).is_err() {
                return;
            }
        }
    });
    Ok(Box::pin(futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(data: &'static [u8], desc_data: &[u8], size: u64) -> FetchedBlob {
        let desc = Descriptor::new("x", Digest::of(desc_data), size);
        let stream: ByteStream = Box::pin(futures_util::stream::iter(
            data.chunks(3)
                .map(|c| Ok(Bytes::from_static(c)))
                .collect::<Vec<_>>(),
        ));
        FetchedBlob::new("test blob".into(), desc, stream)
    }

    #[tokio::test]
    async fn fetched_blob_checks_size_and_digest() {
        assert_eq!(
            &blob(b"hello", b"hello", 5).into_bytes(10).await.unwrap()[..],
            b"hello"
        );
        assert!(matches!(
            blob(b"hellx", b"hello", 5).into_bytes(10).await,
            Err(Error::DigestMismatch { .. })
        ));
        assert!(matches!(
            blob(b"hello!", b"hello", 5).into_bytes(10).await,
            Err(Error::SizeMismatch { actual: 6, .. })
        ));
        assert!(matches!(
            blob(b"hell", b"hello", 5).into_bytes(10).await,
            Err(Error::SizeMismatch { actual: 4, .. })
        ));
        assert!(matches!(
            blob(b"hello", b"hello", 5).into_bytes(4).await,
            Err(Error::Untrusted { .. })
        ));
    }

    #[tokio::test]
    async fn write_new_file_removes_bad_content() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good");
        blob(b"hello", b"hello", 5)
            .write_new_file(&good, &no_progress)
            .await
            .unwrap();
        assert_eq!(std::fs::read(&good).unwrap(), b"hello");
        let bad = dir.path().join("bad");
        let err = blob(b"hellx", b"hello", 5)
            .write_new_file(&bad, &no_progress)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        assert!(!bad.exists());
        // never overwrites
        assert!(
            blob(b"hello", b"hello", 5)
                .write_new_file(&good, &no_progress)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn checked_stream_fails_at_the_end() {
        let items: Vec<_> = blob(b"hellx", b"hello", 5)
            .into_checked_stream()
            .collect()
            .await;
        let err = items.last().unwrap().as_ref().unwrap_err();
        assert!(err.to_string().contains("digest mismatch"), "{err}");
        let items: Vec<_> = blob(b"hello", b"hello", 5)
            .into_checked_stream()
            .collect()
            .await;
        assert!(items.iter().all(|i| i.is_ok()));
    }
}
