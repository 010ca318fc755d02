//! `copy`: move an artifact with all its evidence from one store to another (registry <-> registry <-> layout).
//!
//! Manifests travel as their exact bytes, so the digest, and every signature over it, is the same at the
//! destination. Order of work, chosen so that a failure never leaves a tag on missing content:
//! 1. resolve the source once; check the destination tag rules (no-clobber) before writing anything;
//! 2. walk the manifest tree (an index's children recursively, capped), refusing foreign `urls`;
//! 3. make every blob present at the destination: HEAD first (in parallel), then a cross-repository mount when
//!    both ends are repositories of one registry, else a checked stream from store to store (never whole in
//!    memory; a blob whose stream ends with a size or digest error is never committed);
//! 4. put the children and then the subject by digest;
//! 5. copy the evidence about every manifest of the tree: the `sha256-<hex>.<suffix>` tags (merging `.sig` and
//!    `.att` with what the destination already holds) and, where the source serves it, the referrers API;
//! 6. only then point the destination tag at the digest.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;

use super::Observer;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::oci::{Descriptor, Manifest, RawManifest};
use crate::reference::Reference;
use crate::store::evidence::{self, Kind};
use crate::store::{self, BlobSource, ByteStream, ManifestRef, Store};

/// Deepest nesting of indexes followed (an index of indexes of manifests is depth 2).
pub const MAX_DEPTH: usize = 4;
/// Most manifests (subject and children) in one copied tree.
pub const MAX_MANIFESTS: usize = 1000;
/// Most evidence tags copied per subject digest.
pub const MAX_EVIDENCE_TAGS: usize = 100;
/// Most tags read from the source's tag list when looking for evidence tags.
pub const MAX_TAGS_SCANNED: usize = 100_000;
/// Blob existence checks in flight at once.
const HEAD_CONCURRENCY: usize = 8;
/// Blob transfers in flight at once.
const TRANSFER_CONCURRENCY: usize = 3;

/// How to copy.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Move a destination tag that already points at a different digest.
    pub allow_overwrite: bool,
    /// Allow the destination tag `latest` (as push).
    pub allow_latest: bool,
    /// Copy the evidence (signatures, attestations, referrers) too.
    pub evidence: bool,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            allow_overwrite: false,
            allow_latest: false,
            evidence: true,
        }
    }
}

/// What happened to one piece of evidence.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EvidenceAction {
    /// Written to the destination as it was at the source (same bytes, same digest).
    Copied,
    /// The destination had its own manifest under the tag: the source's layers were added to it.
    Merged,
    /// The destination already had it (or every layer of it).
    Present,
    /// The destination has a different manifest under this tag, which is not one sealpack can merge; left as
    /// it was (pass `allow_overwrite` to replace it).
    Kept,
    /// The destination's different manifest under this tag was replaced (`allow_overwrite`).
    Replaced,
}

/// One piece of evidence copied.
#[derive(Debug, Clone, Serialize)]
pub struct CopiedEvidence {
    /// The digest it is about.
    pub subject: Digest,
    /// The tag it lives under (`sha256-<hex>.sig`, ...), absent for a referrer found only through the API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The evidence manifest at the source.
    pub source_manifest: Digest,
    /// The evidence manifest at the destination now (differs from the source's after a merge).
    pub manifest: Digest,
    /// Layers (signatures, envelopes, ...) in the source manifest.
    pub layers: usize,
    /// What was done.
    pub action: EvidenceAction,
}

/// The result of a copy.
#[derive(Debug, Clone, Serialize)]
pub struct CopyReport {
    /// The source, pinned: `REPO@sha256:...`.
    pub source: String,
    /// The destination, pinned: `REPO@sha256:...`.
    pub destination: String,
    /// The digest (the same at both ends).
    pub digest: Digest,
    /// The destination tag written, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Whether the destination tag already pointed at this digest.
    pub unchanged: bool,
    /// Manifests in the copied tree (the subject and, for an index, every child).
    pub manifests: usize,
    /// Blobs streamed from the source to the destination.
    pub blobs_copied: usize,
    /// Blobs mounted from the source repository (same registry, no bytes moved).
    pub blobs_mounted: usize,
    /// Blobs the destination already had.
    pub blobs_present: usize,
    /// Bytes streamed to the destination.
    pub bytes_copied: u64,
    /// Evidence copied, in the order handled.
    pub evidence: Vec<CopiedEvidence>,
}

/// Works out the destination tag: DST's tag, else SRC's; `None` when neither names one (copy by digest only).
fn destination_tag(
    src_ref: &Reference,
    dst_ref: &Reference,
    allow_latest: bool,
) -> Result<Option<String>> {
    let tag = dst_ref.tag().or(src_ref.tag()).map(str::to_string);
    if tag.as_deref() == Some("latest") && !allow_latest {
        return Err(Error::usage_hint(
            format!(
                "{dst_ref}: refusing the tag 'latest', which moves with every push and cannot pin a release"
            ),
            "name a version tag for the destination (DST:TAG), or pass --allow-latest",
        ));
    }
    Ok(tag)
}

/// Counts of what happened to blobs.
#[derive(Default)]
struct Tally {
    copied: usize,
    mounted: usize,
    present: usize,
    bytes: u64,
}

/// The copier: both stores and what has been done so far (so a blob shared by two manifests moves once).
struct Copier<'a> {
    src: &'a dyn Store,
    dst: &'a dyn Store,
    /// The source repository, when both ends are repositories of one registry (mounts are possible).
    mount_from: Option<String>,
    observer: &'a dyn Observer,
    done: Mutex<BTreeSet<Digest>>,
    tally: Mutex<Tally>,
}

impl Copier<'_> {
    /// Makes every blob of `blobs` present at the destination.
    async fn blobs(&self, what: &str, blobs: &[Descriptor]) -> Result<()> {
        let mut todo = Vec::new();
        {
            let mut done = self.done.lock().expect("done lock");
            for b in blobs {
                if b.urls.as_ref().is_some_and(|u| !u.is_empty()) {
                    return Err(Error::untrusted(
                        format!("blob {} of {what}", b.digest),
                        "it has foreign URLs, which sealpack never fetches",
                    ));
                }
                if done.insert(b.digest) {
                    todo.push(b.clone());
                }
            }
        }
        // which are missing? (HEADs in parallel, bounded)
        let present: Vec<bool> =
            futures_util::stream::iter(todo.iter().map(|d| self.dst.blob_exists(&d.digest)))
                .buffered(HEAD_CONCURRENCY)
                .try_collect()
                .await?;
        let missing: Vec<&Descriptor> = todo
            .iter()
            .zip(&present)
            .filter(|(_, have)| !**have)
            .map(|(d, _)| d)
            .collect();
        self.tally.lock().expect("tally lock").present += todo.len() - missing.len();
        futures_util::stream::iter(missing.into_iter().map(|d| self.one_blob(d)))
            .buffer_unordered(TRANSFER_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// Mounts or streams one blob the destination lacks.
    async fn one_blob(&self, desc: &Descriptor) -> Result<()> {
        let mounted = match &self.mount_from {
            // a refused mount (no pull access to the source repository for this token, say) is not fatal: the
            // blob is streamed instead
            Some(from) => match self.dst.mount_blob(desc, from).await {
                Ok(m) => m,
                Err(Error::Registry { .. } | Error::Auth { .. }) => false,
                Err(e) => return Err(e),
            },
            None => self.dst.try_mount(desc).await?,
        };
        if mounted {
            self.tally.lock().expect("tally lock").mounted += 1;
            return Ok(());
        }
        // the checked stream ends with an error (never a clean end) when the bytes are not the blob; the error
        // is kept here so the caller sees the integrity failure, not the upload it broke. The source is fetched
        // again for each attempt, so an upload cut by the network restarts like any other
        let failure: Arc<Mutex<Option<Error>>> = Arc::new(Mutex::new(None));
        let open = {
            let failure = failure.clone();
            move || -> futures_util::future::BoxFuture<'_, Result<ByteStream>> {
                let slot = failure.clone();
                Box::pin(async move {
                    let fetched = self.src.get_blob(desc).await?;
                    let source = format!("{}@{}", self.src.name(), desc.digest);
                    let stream: ByteStream =
                        Box::pin(fetched.into_checked_stream().map(move |item| {
                            item.map_err(|e| {
                                let message = e.to_string();
                                let err = Error::io("reading", &source, e);
                                *slot.lock().expect("failure lock") = Some(err);
                                std::io::Error::other(message)
                            })
                        }));
                    Ok(stream)
                })
            }
        };
        let bar = self
            .observer
            .transfer(&format!("blob {}", desc.digest.short()), desc.size);
        let progress = move |n: u64| bar(n);
        let result = self
            .dst
            .put_blob(desc, BlobSource::Stream(Box::new(open)), &progress)
            .await;
        if let Some(e) = failure.lock().expect("failure lock").take() {
            return Err(e);
        }
        result?;
        let mut t = self.tally.lock().expect("tally lock");
        t.copied += 1;
        t.bytes += desc.size;
        Ok(())
    }

    /// Puts a manifest by digest unless the destination has it already.
    async fn manifest(&self, raw: &RawManifest) -> Result<()> {
        let digest = raw.digest();
        if self
            .dst
            .fetch_manifest(ManifestRef::Digest(&digest))
            .await?
            .is_none()
        {
            self.dst.put_manifest(raw, None).await?;
        }
        Ok(())
    }

    /// Copies what a manifest references (blobs, or children recursively) and then the manifest itself, by
    /// digest. Appends every manifest of the tree to `tree` (children before their parent).
    async fn tree(
        &self,
        raw: RawManifest,
        depth: usize,
        tree: &mut Vec<RawManifest>,
    ) -> Result<()> {
        let what = format!("{}@{}", self.src.name(), raw.digest());
        match raw.parse()? {
            Manifest::Image(m) => {
                let mut blobs = Vec::with_capacity(m.layers.len() + 1);
                blobs.push(m.config.clone());
                blobs.extend(m.layers.iter().cloned());
                self.blobs(&what, &blobs).await?;
            }
            Manifest::Index(idx) => {
                if depth >= MAX_DEPTH {
                    return Err(Error::untrusted(
                        what,
                        format!("indexes nested more than {MAX_DEPTH} deep"),
                    ));
                }
                for child in &idx.manifests {
                    if child.urls.as_ref().is_some_and(|u| !u.is_empty()) {
                        return Err(Error::untrusted(
                            format!("manifest {} of {what}", child.digest),
                            "it has foreign URLs, which sealpack never fetches",
                        ));
                    }
                    if tree.iter().any(|m| m.digest() == child.digest) {
                        continue;
                    }
                    if tree.len() + 1 >= MAX_MANIFESTS {
                        return Err(Error::untrusted(
                            what,
                            format!("more than {MAX_MANIFESTS} manifests in the tree"),
                        ));
                    }
                    let got = self
                        .src
                        .fetch_manifest(ManifestRef::Digest(&child.digest))
                        .await?
                        .ok_or_else(|| Error::NotFound {
                            what: format!(
                                "{}@{} (a child of {what})",
                                self.src.name(),
                                child.digest
                            ),
                        })?;
                    Box::pin(self.tree(got, depth + 1, tree)).await?;
                }
            }
        }
        self.manifest(&raw).await?;
        tree.push(raw);
        Ok(())
    }

    /// The evidence tags the source holds for `subject`: the `.sig` and `.att` tags always, and every other
    /// `sha256-<hex>.<suffix>` tag in its tag list (capped).
    fn evidence_tags(all_tags: &[String], subject: &Digest) -> Vec<String> {
        let prefix = format!("{}.", subject.tag_schema_prefix());
        let mut tags = vec![Kind::Signature.tag(subject), Kind::Attestation.tag(subject)];
        for t in all_tags {
            if tags.len() >= MAX_EVIDENCE_TAGS {
                break;
            }
            if t.len() > prefix.len() && t.starts_with(&prefix) && !tags.contains(t) {
                tags.push(t.clone());
            }
        }
        tags
    }

    /// Copies one evidence manifest (fetched from the source), its blobs first.
    async fn evidence_manifest(
        &self,
        subject: &Descriptor,
        tag: Option<&str>,
        raw: RawManifest,
        allow_overwrite: bool,
    ) -> Result<CopiedEvidence> {
        let what = format!(
            "evidence {}{} of {}",
            self.src.name(),
            tag.map(|t| format!(":{t}"))
                .unwrap_or_else(|| format!("@{}", raw.digest())),
            subject.digest
        );
        let m = match raw.parse()? {
            Manifest::Image(m) => m,
            Manifest::Index(_) => {
                return Err(Error::Unsupported {
                    what,
                    reason: "an evidence tag that holds an index is not copied".into(),
                });
            }
        };
        if m.layers.len() > evidence::MAX_EVIDENCE_LAYERS {
            return Err(Error::untrusted(
                what,
                format!(
                    "{} layers, over the cap of {}",
                    m.layers.len(),
                    evidence::MAX_EVIDENCE_LAYERS
                ),
            ));
        }
        let mut blobs = vec![m.config.clone()];
        blobs.extend(m.layers.iter().cloned());
        self.blobs(&what, &blobs).await?;
        let mut out = CopiedEvidence {
            subject: subject.digest,
            tag: tag.map(str::to_string),
            source_manifest: raw.digest(),
            manifest: raw.digest(),
            layers: m.layers.len(),
            action: EvidenceAction::Copied,
        };
        let Some(tag) = tag else {
            // a referrer: by digest only
            if self
                .dst
                .fetch_manifest(ManifestRef::Digest(&raw.digest()))
                .await?
                .is_some()
            {
                out.action = EvidenceAction::Present;
            } else {
                self.dst.put_manifest(&raw, None).await?;
            }
            return Ok(out);
        };
        let existing = self.dst.fetch_manifest(ManifestRef::Tag(tag)).await?;
        let Some(existing) = existing else {
            self.dst.put_manifest(&raw, Some(tag)).await?;
            return Ok(out);
        };
        if existing.digest() == raw.digest() {
            out.action = EvidenceAction::Present;
            return Ok(out);
        }
        let kind = [Kind::Signature, Kind::Attestation]
            .into_iter()
            .find(|k| k.tag(&subject.digest) == tag);
        match kind {
            Some(kind) => {
                let merged = evidence::merge(self.dst, subject, kind, &m.layers).await?;
                out.manifest = merged.manifest;
                out.action = if merged.added {
                    EvidenceAction::Merged
                } else {
                    EvidenceAction::Present
                };
            }
            None if allow_overwrite => {
                self.dst.put_manifest(&raw, Some(tag)).await?;
                out.action = EvidenceAction::Replaced;
            }
            None => {
                out.manifest = existing.digest();
                out.action = EvidenceAction::Kept;
            }
        }
        Ok(out)
    }

    /// Copies every piece of evidence about `subject`: tag-schema manifests, then referrers not already copied.
    async fn evidence_of(
        &self,
        subject: &Descriptor,
        all_tags: &[String],
        allow_overwrite: bool,
        out: &mut Vec<CopiedEvidence>,
    ) -> Result<()> {
        let mut seen = BTreeSet::new();
        for tag in Self::evidence_tags(all_tags, &subject.digest) {
            let Some(raw) = self.src.fetch_manifest(ManifestRef::Tag(&tag)).await? else {
                continue;
            };
            seen.insert(raw.digest());
            out.push(
                self.evidence_manifest(subject, Some(&tag), raw, allow_overwrite)
                    .await?,
            );
        }
        let Some(referrers) = self.src.referrers(&subject.digest, "").await? else {
            return Ok(());
        };
        if referrers.len() > evidence::MAX_REFERRERS {
            return Err(Error::untrusted(
                format!("referrers of {}@{}", self.src.name(), subject.digest),
                format!("more than {} entries", evidence::MAX_REFERRERS),
            ));
        }
        for r in referrers {
            if !seen.insert(r.digest) {
                continue;
            }
            let Some(raw) = self
                .src
                .fetch_manifest(ManifestRef::Digest(&r.digest))
                .await?
            else {
                continue;
            };
            // a referrer must name this subject; the API's word for it is not enough
            let names_subject = match raw.parse()? {
                Manifest::Image(m) => m.subject.map(|s| s.digest),
                Manifest::Index(i) => i.subject.map(|s| s.digest),
            } == Some(subject.digest);
            if !names_subject {
                continue;
            }
            out.push(
                self.evidence_manifest(subject, None, raw, allow_overwrite)
                    .await?,
            );
        }
        Ok(())
    }
}

/// Copies what `src_ref` points at in `src` (resolved once) to `dst` under `dst_ref`'s tag (else `src_ref`'s),
/// with all its evidence unless `opts.evidence` is off. The destination tag moves last, and only when everything
/// below it is present; an existing destination tag pointing at another digest is refused unless
/// `opts.allow_overwrite`.
pub async fn copy(
    src: &dyn Store,
    src_ref: &Reference,
    dst: &dyn Store,
    dst_ref: &Reference,
    opts: &CopyOptions,
    observer: &dyn Observer,
) -> Result<CopyReport> {
    let tag = destination_tag(src_ref, dst_ref, opts.allow_latest)?;
    let raw = store::resolve(src, src_ref).await?;
    let digest = raw.digest();
    if let Some(d) = dst_ref.digest()
        && *d != digest
    {
        return Err(Error::usage_hint(
            format!("{dst_ref} names digest {d}, but {src_ref} is {digest}"),
            "name the destination by tag, or by the source's digest",
        ));
    }
    // no-clobber, before anything is written
    let mut unchanged = false;
    if let Some(t) = &tag
        && let Some(existing) = dst.fetch_manifest(ManifestRef::Tag(t)).await?
    {
        if existing.digest() == digest {
            unchanged = true;
        } else if !opts.allow_overwrite {
            return Err(Error::TagExists {
                reference: dst_ref.with_tag(t).to_string(),
                existing: existing.digest(),
                attempted: digest,
            });
        }
    }
    let mount_from = match (src_ref, dst_ref) {
        (Reference::Registry(s), Reference::Registry(d))
            if s.registry() == d.registry() && s.repository() != d.repository() =>
        {
            Some(s.repository().to_string())
        }
        _ => None,
    };
    let copier = Copier {
        src,
        dst,
        mount_from,
        observer,
        done: Mutex::new(BTreeSet::new()),
        tally: Mutex::new(Tally::default()),
    };
    let mut tree = Vec::new();
    copier.tree(raw.clone(), 0, &mut tree).await?;

    let mut copied_evidence = Vec::new();
    if opts.evidence {
        let all_tags = src.list_tags().await?;
        if all_tags.len() > MAX_TAGS_SCANNED {
            return Err(Error::untrusted(
                format!("tag list of {}", src.name()),
                format!("more than {MAX_TAGS_SCANNED} tags"),
            ));
        }
        // the subject first, then its children
        for m in std::iter::once(&raw).chain(tree.iter().filter(|m| m.digest() != digest)) {
            copier
                .evidence_of(
                    &m.descriptor(),
                    &all_tags,
                    opts.allow_overwrite,
                    &mut copied_evidence,
                )
                .await?;
        }
    }

    if let Some(t) = &tag
        && !unchanged
    {
        dst.put_manifest(&raw, Some(t)).await?;
    }
    let tally = copier.tally.into_inner().expect("tally lock");
    Ok(CopyReport {
        source: src_ref.pinned(digest).to_string(),
        destination: dst_ref.pinned(digest).to_string(),
        digest,
        tag,
        unchanged,
        manifests: tree.len(),
        blobs_copied: tally.copied,
        blobs_mounted: tally.mounted,
        blobs_present: tally.present,
        bytes_copied: tally.bytes,
        evidence: copied_evidence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_tags_are_the_subjects_only() {
        let d = Digest::of(b"x");
        let other = Digest::of(b"y");
        let all = vec![
            "v1".to_string(),
            format!("{}.sig", d.tag_schema_prefix()),
            format!("{}.sbom", d.tag_schema_prefix()),
            format!("{}.", d.tag_schema_prefix()),
            format!("{}.att", other.tag_schema_prefix()),
        ];
        let tags = Copier::evidence_tags(&all, &d);
        assert_eq!(
            tags,
            [
                format!("{}.sig", d.tag_schema_prefix()),
                format!("{}.att", d.tag_schema_prefix()),
                format!("{}.sbom", d.tag_schema_prefix()),
            ]
        );
    }

    #[test]
    fn destination_tag_rules() {
        let src = Reference::parse("r.example/a:v1").unwrap();
        let dst = Reference::parse("oci:/tmp/x").unwrap();
        assert_eq!(
            destination_tag(&src, &dst, false).unwrap().as_deref(),
            Some("v1")
        );
        let dst = Reference::parse("oci:/tmp/x:v2").unwrap();
        assert_eq!(
            destination_tag(&src, &dst, false).unwrap().as_deref(),
            Some("v2")
        );
        let latest = Reference::parse("r.example/a:latest").unwrap();
        assert!(destination_tag(&latest, &dst.pinned(Digest::of(b"x")), false).is_err());
        assert!(destination_tag(&latest, &dst.pinned(Digest::of(b"x")), true).is_ok());
        let by_digest = src.pinned(Digest::of(b"x"));
        assert_eq!(
            destination_tag(&by_digest, &dst.pinned(Digest::of(b"x")), false).unwrap(),
            None
        );
    }
}
