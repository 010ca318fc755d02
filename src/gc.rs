//! `sealpack gc`: retention that never deletes a released, deployed or promoted digest (SPEC §3).
//!
//! Everything is read before anything is deleted: every tag of the repository (evidence tags
//! `sha256-<hex>[.sig|.att|...]` apart), the manifest each points at, the evidence of every candidate digest (one
//! [`evidence::read_kinds`] pass per digest, a few at a time, as `verify` reads it) and the history of every deploy
//! target given. If any of that cannot be read, nothing is deleted ([`Error::NotChecked`]).
//!
//! A digest is kept when it is among the N newest (by `org.opencontainers.image.created`, newest first; without
//! it, oldest; ties by tag name, the greater first), or has any signature (verified or not: deleting is the
//! dangerous direction), or a promotion statement or deployment record attestation, or appears in a target's
//! deploy history, `current` or `releases/`, or is a child of a kept index. An index is also kept when one of its
//! children is protected. The rest is deleted: its tags and manifest, its evidence manifests, and the children of
//! a deleted index that nothing kept reaches. A layout then loses every blob no remaining manifest reaches; a
//! registry's blobs are left to its own garbage collection.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::deploy::{history, target::Target};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::formats::{dsse, promotion, simplesigning};
use crate::oci::{Manifest, RawManifest, annotations};
use crate::store::evidence::{self, Kind};
use crate::store::{ManifestRef, Store, Swept};

/// How many digests' evidence is read at once.
const PARALLEL: usize = 4;
/// How deep index children are followed.
const MAX_DEPTH: usize = 4;

/// What `gc` is asked to do.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Keep this many of the newest digests whatever else holds.
    pub keep: usize,
    /// Only plan: change nothing.
    pub dry_run: bool,
    /// Deploy target folders whose deployed digests are kept.
    pub targets: Vec<PathBuf>,
    /// Unreached layout blobs written or reused this recently stay (a push may be between its blobs and its tag).
    pub grace: std::time::Duration,
}

/// What happens to a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Kept (see the reasons).
    Keep,
    /// Deleted (or, in a dry run, would be).
    Delete,
}

/// One digest of the repository with its tags and fate.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// The manifest or index digest.
    pub digest: Digest,
    /// Its tags (evidence tags excepted), sorted.
    pub tags: Vec<String>,
    /// Keep or delete.
    pub action: Action,
    /// Why (every reason that holds, for a kept digest).
    pub reasons: Vec<String>,
    /// `org.opencontainers.image.created`, when the manifest has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The evidence manifests deleted with it (`.sig`, `.att`, referrers), for a deleted digest.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<Digest>,
    /// Untagged child manifests deleted with it (a deleted index's), for a deleted digest.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Digest>,
}

/// The plan, and what was done.
#[derive(Debug, Clone, Serialize)]
pub struct GcReport {
    /// `HOST/REPO` or `oci:PATH`.
    pub repository: String,
    /// `--keep`.
    pub keep: usize,
    /// Whether this was a dry run (nothing changed).
    pub dry_run: bool,
    /// Every tagged digest, newest first.
    pub entries: Vec<Entry>,
    /// Manifests deleted (subjects, children and evidence; 0 in a dry run).
    pub deleted_manifests: usize,
    /// Blobs removed from a layout; `None` for a registry (its own garbage collection frees them) and in a dry
    /// run.
    pub blobs_removed: Option<Swept>,
}

/// Whether a tag is an evidence tag: `sha256-<64 hex>` alone (the referrers tag schema) or with a suffix
/// (`.sig`, `.att`, `.sbom`, ...).
pub fn evidence_subject(tag: &str) -> Option<Digest> {
    let rest = tag.strip_prefix("sha256-")?;
    let hex = rest.get(..64)?;
    let after = &rest[64..];
    if !(after.is_empty() || after.starts_with('.')) {
        return None;
    }
    Digest::parse(&format!("sha256:{hex}")).ok()
}

fn not_checked(what: String) -> impl FnOnce(Error) -> Error {
    move |e| Error::NotChecked {
        what,
        cause: Box::new(e),
    }
}

/// A tagged digest while planning.
struct Group {
    tags: Vec<String>,
    parsed: Option<Manifest>,
    created: Option<String>,
    created_at: Option<time::OffsetDateTime>,
}

/// Digests deployed to the targets, with the targets that name them.
fn deployed(targets: &[PathBuf]) -> Result<BTreeMap<Digest, BTreeSet<String>>> {
    let mut out: BTreeMap<Digest, BTreeSet<String>> = BTreeMap::new();
    for dir in targets {
        // refuses a folder that is not a deploy target: a mistyped --target must not protect nothing silently
        let t = Target::open(dir, false)?;
        let name = dir.display().to_string();
        let (events, _) = history::read(&t.history_path())?;
        for e in events {
            out.entry(e.digest).or_default().insert(name.clone());
            if let Some(p) = e.previous {
                out.entry(p).or_default().insert(name.clone());
            }
        }
        if let Ok(link) = std::fs::read_link(t.current_link())
            && let Some(hex) = link.file_name().and_then(|n| n.to_str())
            && let Ok(d) = Digest::parse(&format!("sha256:{hex}"))
        {
            out.entry(d).or_default().insert(name.clone());
        }
        let releases = dir.join("releases");
        if let Ok(list) = std::fs::read_dir(&releases) {
            for entry in list {
                let entry = entry.map_err(|e| Error::io("reading", &releases, e))?;
                if let Some(hex) = entry.file_name().to_str()
                    && let Ok(d) = Digest::parse(&format!("sha256:{hex}"))
                {
                    out.entry(d).or_default().insert(name.clone());
                }
            }
        }
    }
    Ok(out)
}

/// Why the evidence of `digest` protects it (empty: it does not). `sig_tag` says whether a `.sig` tag exists.
async fn protection(store: &dyn Store, digest: &Digest, sig_tag: bool) -> Result<Vec<String>> {
    let mut read = evidence::read_kinds(
        store,
        digest,
        &[
            (Kind::Signature, simplesigning::MAX_PAYLOAD_SIZE as u64),
            (Kind::Attestation, dsse::MAX_ENVELOPE_SIZE as u64),
        ],
    )
    .await?;
    let (attestations, _) = read.pop().expect("two kinds asked");
    let (signatures, sig_skipped) = read.pop().expect("two kinds asked");
    let mut reasons = Vec::new();
    if sig_tag || !signatures.is_empty() || !sig_skipped.is_empty() {
        reasons.push("released (signature)".to_string());
    }
    let mut kinds = BTreeSet::new();
    for layer in &attestations {
        // verified or not: only the statement's type matters here
        let predicate_type = dsse::parse(&layer.bytes).ok().and_then(|env| {
            serde_json::from_slice::<serde_json::Value>(&env.payload)
                .ok()?
                .get("predicateType")?
                .as_str()
                .map(str::to_string)
        });
        match predicate_type.as_deref() {
            Some(promotion::PROMOTION_TYPE) => {
                kinds.insert("promoted (promotion statement)");
            }
            Some(promotion::DEPLOYMENT_TYPE) => {
                kinds.insert("promoted (deployment record)");
            }
            Some(_) => {}
            None => {
                kinds.insert("an attestation that cannot be read (kept to be safe)");
            }
        }
    }
    reasons.extend(kinds.into_iter().map(str::to_string));
    Ok(reasons)
}

/// Resolves `tags`, 8 at a time; a tag removed since the listing gives `None`.
async fn resolve_tags(
    store: &dyn Store,
    repo: &str,
    tags: Vec<String>,
) -> Result<Vec<(String, Option<RawManifest>)>> {
    futures_util::stream::iter(tags.into_iter().map(|t| async move {
        let what = match evidence_subject(&t) {
            Some(subject) => format!("the evidence of {repo}@{subject} (tag {t})"),
            None => format!("{repo}:{t}"),
        };
        let m = store
            .fetch_manifest(ManifestRef::Tag(&t))
            .await
            .map_err(not_checked(what))?;
        Ok::<_, Error>((t, m))
    }))
    .buffered(8)
    .try_collect()
    .await
}

/// Plans, and unless `dry_run`, deletes. Nothing is deleted unless everything could be read first.
pub async fn gc(store: &dyn Store, opts: &GcOptions) -> Result<GcReport> {
    let repo = store.name();
    let deployed = deployed(&opts.targets)?;

    // every tag, resolved once
    let tags = store.list_tags().await?;
    let resolved = resolve_tags(store, &repo, tags).await?;
    // tag -> digest for every tag; evidence tags by subject
    let mut tag_digest: BTreeMap<String, Digest> = BTreeMap::new();
    let mut evidence_tags: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
    let mut groups: BTreeMap<Digest, Group> = BTreeMap::new();
    for (tag, raw) in resolved {
        let Some(raw) = raw else { continue }; // removed since the listing
        tag_digest.insert(tag.clone(), raw.digest());
        if let Some(subject) = evidence_subject(&tag) {
            evidence_tags.entry(subject).or_default().push(tag);
            continue;
        }
        let g = groups.entry(raw.digest()).or_insert_with(|| {
            let parsed = raw.parse().ok();
            let created = match &parsed {
                Some(Manifest::Image(m)) => m.annotation(annotations::CREATED).map(str::to_string),
                Some(Manifest::Index(i)) => i
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(annotations::CREATED).cloned()),
                None => None,
            };
            let created_at = created.as_deref().and_then(|c| {
                time::OffsetDateTime::parse(c, &time::format_description::well_known::Rfc3339).ok()
            });
            Group {
                tags: Vec::new(),
                parsed,
                created,
                created_at,
            }
        });
        g.tags.push(tag);
    }
    for g in groups.values_mut() {
        g.tags.sort();
    }

    // newest first: by created (none counts as oldest), then by the greatest tag name
    let mut order: Vec<Digest> = groups.keys().copied().collect();
    order.sort_by(|a, b| {
        let (ga, gb) = (&groups[a], &groups[b]);
        gb.created_at
            .is_some()
            .cmp(&ga.created_at.is_some())
            .then(gb.created_at.cmp(&ga.created_at))
            .then(gb.tags.last().cmp(&ga.tags.last()))
    });

    // the descendants of every index, fetched by digest (a few levels deep)
    let mut children: BTreeMap<Digest, Vec<Digest>> = BTreeMap::new();
    let mut frontier: Vec<Digest> = Vec::new();
    for (d, g) in &groups {
        if let Some(Manifest::Index(i)) = &g.parsed {
            let kids: Vec<Digest> = i.manifests.iter().map(|c| c.digest).collect();
            frontier.extend(kids.iter().copied());
            children.insert(*d, kids);
        }
    }
    for _ in 1..MAX_DEPTH {
        let next: Vec<Digest> = frontier
            .drain(..)
            .filter(|d| !children.contains_key(d) && !groups.contains_key(d))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if next.is_empty() {
            break;
        }
        let fetched: Vec<(Digest, Option<RawManifest>)> =
            futures_util::stream::iter(next.into_iter().map(|d| {
                let repo = repo.clone();
                async move {
                    let m = store
                        .fetch_manifest(ManifestRef::Digest(&d))
                        .await
                        .map_err(not_checked(format!("{repo}@{d}")))?;
                    Ok::<_, Error>((d, m))
                }
            }))
            .buffered(8)
            .try_collect()
            .await?;
        for (d, m) in fetched {
            let kids: Vec<Digest> = match m.map(|m| m.parse()) {
                Some(Ok(Manifest::Index(i))) => i.manifests.iter().map(|c| c.digest).collect(),
                _ => Vec::new(),
            };
            frontier.extend(kids.iter().copied());
            children.insert(d, kids);
        }
    }
    let descendants = |root: &Digest| -> BTreeSet<Digest> {
        let mut out = BTreeSet::new();
        let mut todo: Vec<Digest> = children.get(root).cloned().unwrap_or_default();
        while let Some(d) = todo.pop() {
            if out.insert(d) {
                todo.extend(children.get(&d).cloned().unwrap_or_default());
            }
        }
        out
    };

    // the evidence of every tagged digest and every descendant, read before anything is decided
    let mut to_check: BTreeSet<Digest> = groups.keys().copied().collect();
    for d in groups.keys() {
        to_check.extend(descendants(d));
    }
    let sig_tag = |d: &Digest| {
        evidence_tags
            .get(d)
            .is_some_and(|t| t.iter().any(|t| t.ends_with(".sig")))
    };
    let protected: BTreeMap<Digest, Vec<String>> =
        futures_util::stream::iter(to_check.into_iter().map(|d| {
            let repo = repo.clone();
            let has_sig = sig_tag(&d);
            async move {
                let reasons = protection(store, &d, has_sig)
                    .await
                    .map_err(not_checked(format!("the evidence of {repo}@{d}")))?;
                Ok::<_, Error>((d, reasons))
            }
        }))
        .buffer_unordered(PARALLEL)
        .try_collect()
        .await?;

    // decide
    let mut reasons: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
    for (rank, d) in order.iter().enumerate() {
        let g = &groups[d];
        let r = reasons.entry(*d).or_default();
        if rank < opts.keep {
            r.push(format!("among the {} newest", opts.keep));
        }
        if g.parsed.is_none() {
            r.push("not an image manifest or index sealpack can read (left alone)".into());
        }
        r.extend(protected.get(d).cloned().unwrap_or_default());
        if let Some(targets) = deployed.get(d) {
            for t in targets {
                r.push(format!("deployed ({t})"));
            }
        }
        for c in descendants(d) {
            let why = protected.get(&c).cloned().unwrap_or_default();
            let dep = deployed.contains_key(&c);
            if !why.is_empty() || dep {
                let mut what = why;
                if dep {
                    what.push("deployed".into());
                }
                r.push(format!("child {c} is {}", what.join(", ")));
            }
        }
    }
    // the children of a kept index are kept
    let kept_roots: Vec<Digest> = order
        .iter()
        .filter(|d| !reasons[*d].is_empty())
        .copied()
        .collect();
    let mut reached_by_kept: BTreeSet<Digest> = BTreeSet::new();
    for k in &kept_roots {
        for c in descendants(k) {
            reached_by_kept.insert(c);
            if let Some(r) = reasons.get_mut(&c)
                && !r.iter().any(|x| x.starts_with("child of kept index"))
            {
                r.push(format!("child of kept index {k}"));
            }
        }
    }
    let doomed: BTreeSet<Digest> = order
        .iter()
        .filter(|d| reasons[*d].is_empty())
        .copied()
        .collect();

    // what goes with each deleted digest: untagged children nothing kept reaches, and the evidence of both
    let tag_targets: BTreeMap<Digest, Vec<&String>> = tag_digest.iter().fold(
        BTreeMap::new(),
        |mut m: BTreeMap<Digest, Vec<&String>>, (t, d)| {
            m.entry(*d).or_default().push(t);
            m
        },
    );
    let mut entries = Vec::new();
    let mut plan: Vec<(Digest, Vec<Digest>, Vec<Digest>)> = Vec::new();
    for d in &order {
        let g = &groups[d];
        let action = if doomed.contains(d) {
            Action::Delete
        } else {
            Action::Keep
        };
        let mut kids = Vec::new();
        let mut ev = Vec::new();
        if action == Action::Delete {
            kids = descendants(d)
                .into_iter()
                .filter(|c| !groups.contains_key(c) && !reached_by_kept.contains(c))
                .collect();
            let subjects: BTreeSet<Digest> =
                std::iter::once(*d).chain(kids.iter().copied()).collect();
            let mut found: BTreeSet<Digest> = BTreeSet::new();
            for s in &subjects {
                for t in evidence_tags.get(s).into_iter().flatten() {
                    found.insert(tag_digest[t]);
                }
                let referrers = store
                    .referrers(s, "")
                    .await
                    .map_err(not_checked(format!("the referrers of {repo}@{s}")))?;
                found.extend(referrers.into_iter().flatten().map(|r| r.digest));
            }
            // an evidence manifest some other tag also points at (another subject's, a release tag) stays
            for e in found {
                let safe = tag_targets.get(&e).is_none_or(|tags| {
                    tags.iter()
                        .all(|t| evidence_subject(t).is_some_and(|s| subjects.contains(&s)))
                });
                if safe && !groups.contains_key(&e) && !reached_by_kept.contains(&e) {
                    ev.push(e);
                }
            }
            plan.push((*d, kids.clone(), ev.clone()));
        }
        entries.push(Entry {
            digest: *d,
            tags: g.tags.clone(),
            action,
            reasons: if action == Action::Delete {
                vec![format!(
                    "older than the {} newest; not released, promoted or deployed",
                    opts.keep
                )]
            } else {
                reasons[d].clone()
            },
            created: g.created.clone(),
            evidence: ev,
            children: kids,
        });
    }

    let repo_name = repo.clone();
    let mut report = GcReport {
        repository: repo,
        keep: opts.keep,
        dry_run: opts.dry_run,
        entries,
        deleted_manifests: 0,
        blobs_removed: None,
    };
    if opts.dry_run {
        return Ok(report);
    }
    // a tag added or moved since the plan onto a digest about to go keeps it (deleting a manifest by digest
    // takes every tag on it, that one too)
    let release_tags: Vec<String> = store
        .list_tags()
        .await?
        .into_iter()
        .filter(|t| evidence_subject(t).is_none())
        .collect();
    let mut retagged: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
    for (t, m) in resolve_tags(store, &repo_name, release_tags).await? {
        if let Some(m) = m
            && tag_digest.get(&t) != Some(&m.digest())
        {
            retagged.entry(m.digest()).or_default().push(t);
        }
    }
    // the subject first (its tags go with it), then what hung on it: a failure midway leaves at worst
    // unreferenced evidence, never a kept digest without its signature
    for (subject, kids, ev) in &plan {
        let moved: Vec<String> = std::iter::once(subject)
            .chain(kids)
            .filter_map(|d| retagged.get(d))
            .flatten()
            .map(|t| format!("tagged {t} since the plan"))
            .collect();
        if !moved.is_empty() {
            if let Some(e) = report.entries.iter_mut().find(|e| e.digest == *subject) {
                e.action = Action::Keep;
                e.reasons = moved;
                e.evidence.clear();
                e.children.clear();
            }
            continue;
        }
        // looked at again just before: a digest signed or promoted since the plan was made stays
        let mut late = Vec::new();
        for d in std::iter::once(subject).chain(kids) {
            late.extend(
                protection(store, d, false)
                    .await
                    .map_err(not_checked(format!(
                        "the evidence of {}@{d}",
                        report.repository
                    )))?,
            );
        }
        if !late.is_empty() {
            if let Some(e) = report.entries.iter_mut().find(|e| e.digest == *subject) {
                e.action = Action::Keep;
                e.reasons = late
                    .into_iter()
                    .map(|r| format!("{r}, since the plan"))
                    .collect();
                e.evidence.clear();
                e.children.clear();
            }
            continue;
        }
        for d in std::iter::once(subject).chain(kids).chain(ev) {
            store.delete_manifest(d).await.map_err(|e| {
                if report.deleted_manifests == 0 {
                    e
                } else {
                    Error::Unsupported {
                        what: format!("{}@{d}", report.repository),
                        reason: format!(
                            "{e} (after {} manifest(s) were deleted; nothing further was deleted)",
                            report.deleted_manifests
                        ),
                    }
                }
            })?;
            report.deleted_manifests += 1;
        }
    }
    report.blobs_removed = store.remove_unreachable_blobs(opts.grace).await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{Descriptor, ImageIndex, ImageManifest, media};
    use crate::store::layout::LayoutStore;
    use crate::store::{BlobSource, no_progress};

    async fn put(store: &LayoutStore, bytes: &[u8], media_type: &str) -> Descriptor {
        let d = Descriptor::new(media_type, Digest::of(bytes), bytes.len() as u64);
        store
            .put_blob(&d, BlobSource::Bytes(bytes.to_vec().into()), &no_progress)
            .await
            .unwrap();
        d
    }

    async fn image(
        store: &LayoutStore,
        content: &[u8],
        created: &str,
        tag: Option<&str>,
    ) -> RawManifest {
        put(store, b"{}", media::EMPTY_JSON).await;
        let layer = put(store, content, media::OCTET_STREAM).await;
        let m = ImageManifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.into()),
            artifact_type: None,
            config: Descriptor::empty_json(),
            layers: vec![layer],
            subject: None,
            annotations: Some(BTreeMap::from([(
                annotations::CREATED.to_string(),
                created.to_string(),
            )])),
        };
        let raw = RawManifest::from_image(&m).unwrap();
        store.put_manifest(&raw, tag).await.unwrap();
        raw
    }

    #[tokio::test]
    async fn an_index_goes_with_its_children_unless_one_of_them_is_protected() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("l");
        let store = LayoutStore::open(&root, true).await.unwrap();
        let amd = image(&store, b"amd64 bits", "2026-01-01T00:00:00Z", None).await;
        let arm = image(&store, b"arm64 bits", "2026-01-01T00:00:00Z", None).await;
        let index = ImageIndex {
            schema_version: 2,
            media_type: Some(media::OCI_INDEX.into()),
            artifact_type: None,
            manifests: vec![amd.descriptor(), arm.descriptor()],
            subject: None,
            annotations: Some(BTreeMap::from([(
                annotations::CREATED.to_string(),
                "2026-01-01T00:00:00Z".to_string(),
            )])),
        };
        let index =
            RawManifest::new(media::OCI_INDEX, serde_json::to_vec(&index).unwrap()).unwrap();
        store.put_manifest(&index, Some("multi")).await.unwrap();
        image(&store, b"newer", "2026-01-02T00:00:00Z", Some("new")).await;
        // a signature on one child (not verified: any protects)
        let sig = put(
            &store,
            b"not even a payload",
            Kind::Signature.layer_media_type(),
        )
        .await;
        let appended = evidence::append(
            &store,
            &arm.descriptor(),
            Kind::Signature,
            sig,
            b"not even a payload".to_vec().into(),
            &|_| false,
        )
        .await
        .unwrap();
        let opts = keep_one(true);
        let r = gc(&store, &opts).await.unwrap();
        let multi = r.entries.iter().find(|e| e.tags == ["multi"]).unwrap();
        assert_eq!(multi.action, Action::Keep, "{multi:?}");
        assert!(
            multi
                .reasons
                .iter()
                .any(|x| x == &format!("child {} is released (signature)", arm.digest())),
            "{multi:?}"
        );

        // without the signature the index goes, with both children, and their blobs
        store.delete_manifest(&appended.manifest).await.unwrap();
        let r = gc(&store, &opts).await.unwrap();
        let multi = r.entries.iter().find(|e| e.tags == ["multi"]).unwrap();
        assert_eq!(multi.action, Action::Delete, "{multi:?}");
        assert_eq!(multi.children.len(), 2);
        let r = gc(&store, &keep_one(false)).await.unwrap();
        assert_eq!(r.deleted_manifests, 3, "the index and its two children");
        let blobs = root.join("blobs/sha256");
        for gone in [
            index.digest(),
            amd.digest(),
            arm.digest(),
            Digest::of(b"amd64 bits"),
        ] {
            assert!(!blobs.join(gone.hex()).exists(), "{gone}");
        }
        assert!(
            blobs
                .join(crate::digest::empty_json_digest().hex())
                .exists()
        );
        assert!(blobs.join(Digest::of(b"newer").hex()).exists());
        assert_eq!(store.list_tags().await.unwrap(), ["new"]);
    }

    /// A layout that, after the plan and before the deletion, signs `victim` (through `append`, on the second
    /// referrers query about it) or, with `retag`, points a new tag at it (on the second tag listing).
    struct SignsLate {
        inner: LayoutStore,
        victim: Descriptor,
        asked: std::sync::atomic::AtomicU32,
        retag: Option<&'static str>,
        listed: std::sync::atomic::AtomicU32,
    }

    #[async_trait::async_trait]
    impl Store for SignsLate {
        fn name(&self) -> String {
            self.inner.name()
        }
        async fn fetch_manifest(&self, r: ManifestRef<'_>) -> Result<Option<RawManifest>> {
            self.inner.fetch_manifest(r).await
        }
        async fn put_manifest(&self, m: &RawManifest, tag: Option<&str>) -> Result<()> {
            self.inner.put_manifest(m, tag).await
        }
        async fn blob_exists(&self, d: &Digest) -> Result<bool> {
            self.inner.blob_exists(d).await
        }
        async fn get_blob(&self, d: &Descriptor) -> Result<crate::store::FetchedBlob> {
            self.inner.get_blob(d).await
        }
        async fn put_blob(
            &self,
            d: &Descriptor,
            src: BlobSource<'_>,
            p: crate::store::Progress<'_>,
        ) -> Result<()> {
            self.inner.put_blob(d, src, p).await
        }
        async fn referrers(&self, subject: &Digest, t: &str) -> Result<Option<Vec<Descriptor>>> {
            if *subject == self.victim.digest
                && self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1
                && self.retag.is_none()
            {
                let sig = put(&self.inner, b"late", Kind::Signature.layer_media_type()).await;
                evidence::append(
                    &self.inner,
                    &self.victim,
                    Kind::Signature,
                    sig,
                    b"late".to_vec().into(),
                    &|_| false,
                )
                .await?;
            }
            self.inner.referrers(subject, t).await
        }
        async fn list_tags(&self) -> Result<Vec<String>> {
            if let Some(tag) = self.retag
                && self
                    .listed
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                    == 1
            {
                let raw = self
                    .inner
                    .fetch_manifest(ManifestRef::Digest(&self.victim.digest))
                    .await?
                    .expect("the victim is in the layout");
                self.inner.put_manifest(&raw, Some(tag)).await?;
            }
            self.inner.list_tags().await
        }
        async fn delete_manifest(&self, d: &Digest) -> Result<()> {
            self.inner.delete_manifest(d).await
        }
        async fn remove_unreachable_blobs(
            &self,
            grace: std::time::Duration,
        ) -> Result<Option<Swept>> {
            self.inner.remove_unreachable_blobs(grace).await
        }
    }

    /// Keep the newest digest, no grace for fresh blobs.
    fn keep_one(dry_run: bool) -> GcOptions {
        GcOptions {
            keep: 1,
            dry_run,
            targets: Vec::new(),
            grace: std::time::Duration::ZERO,
        }
    }

    /// A layout at `root` with `old` (tagged old) and a newer image, wrapped to sign `old` late, or with `retag`
    /// to tag it late.
    async fn two_images(
        root: &std::path::Path,
        retag: Option<&'static str>,
    ) -> (SignsLate, RawManifest) {
        let inner = LayoutStore::open(root, true).await.unwrap();
        let old = image(&inner, b"old", "2026-01-01T00:00:00Z", Some("old")).await;
        image(&inner, b"new", "2026-01-02T00:00:00Z", Some("new")).await;
        let store = SignsLate {
            inner,
            victim: old.descriptor(),
            asked: 0.into(),
            retag,
            listed: 0.into(),
        };
        (store, old)
    }

    #[tokio::test]
    async fn a_digest_signed_after_the_plan_is_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("l");
        let (store, old) = two_images(&root, None).await;
        let opts = keep_one(false);
        let r = gc(&store, &opts).await.unwrap();
        assert_eq!(
            store.asked.load(std::sync::atomic::Ordering::SeqCst),
            3,
            "plan, evidence list, re-check"
        );
        let e = r.entries.iter().find(|e| e.tags == ["old"]).unwrap();
        assert_eq!(e.action, Action::Keep, "{e:?}");
        assert_eq!(e.reasons, ["released (signature), since the plan"]);
        assert_eq!(r.deleted_manifests, 0);
        let tags = store.list_tags().await.unwrap();
        assert!(tags.contains(&"old".to_string()), "{tags:?}");
        assert!(root.join("blobs/sha256").join(old.digest().hex()).exists());
    }

    #[tokio::test]
    async fn a_digest_tagged_after_the_plan_is_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("l");
        let (store, old) = two_images(&root, Some("hotfix")).await;
        let opts = keep_one(false);
        let r = gc(&store, &opts).await.unwrap();
        let e = r.entries.iter().find(|e| e.tags == ["old"]).unwrap();
        assert_eq!(e.action, Action::Keep, "{e:?}");
        assert_eq!(e.reasons, ["tagged hotfix since the plan"]);
        assert_eq!(r.deleted_manifests, 0);
        let tags = store.list_tags().await.unwrap();
        assert!(
            tags.contains(&"old".to_string()) && tags.contains(&"hotfix".to_string()),
            "{tags:?}"
        );
        assert!(root.join("blobs/sha256").join(old.digest().hex()).exists());
    }

    #[test]
    fn evidence_tags_are_recognised() {
        let hex = "a".repeat(64);
        for t in [
            format!("sha256-{hex}.sig"),
            format!("sha256-{hex}.att"),
            format!("sha256-{hex}.sbom"),
            format!("sha256-{hex}"),
        ] {
            assert!(evidence_subject(&t).is_some(), "{t}");
        }
        for t in [
            "v1".to_string(),
            format!("sha256-{}", "a".repeat(63)),
            format!("sha256-{hex}x"),
            format!("sha256-{}.sig", "A".repeat(64)),
        ] {
            assert!(evidence_subject(&t).is_none(), "{t}");
        }
    }
}
