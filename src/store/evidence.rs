//! Evidence attached to a subject digest, stored the way cosign stores it so cosign-aware tools read it:
//! an OCI manifest at the tag `sha256-<hex>.sig` (signatures) or `sha256-<hex>.att` (attestations) in the subject's
//! repository, one layer per signature or envelope. Where the registry serves the OCI 1.1 referrers API, the same
//! manifest also carries `subject` and `artifactType`, and reading also asks the API.
//!
//! Appending keeps every existing layer (never drops another signer's work) and adds nothing that is already
//! there. Reading enforces caps before any blob is fetched: layer count, media type, declared size.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::{BlobSource, ManifestRef, Store, no_progress};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::oci::{Descriptor, ImageManifest, Manifest, RawManifest, media};

/// Most layers read from one evidence manifest (cosign's own cap is far lower in practice).
pub const MAX_EVIDENCE_LAYERS: usize = 1000;
/// Most referrer manifests read for one subject.
pub const MAX_REFERRERS: usize = 1000;

/// What kind of evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Simple-signing signatures (`.sig`).
    Signature,
    /// DSSE envelopes (`.att`).
    Attestation,
}

impl Kind {
    /// The tag suffix.
    pub fn suffix(self) -> &'static str {
        match self {
            Kind::Signature => "sig",
            Kind::Attestation => "att",
        }
    }
    /// The media type of each layer.
    pub fn layer_media_type(self) -> &'static str {
        match self {
            Kind::Signature => "application/vnd.dev.cosign.simplesigning.v1+json",
            Kind::Attestation => "application/vnd.dsse.envelope.v1+json",
        }
    }
    /// The `artifactType` used for referrers (cosign's OCI 1.1 types).
    pub fn artifact_type(self) -> &'static str {
        match self {
            Kind::Signature => "application/vnd.dev.cosign.artifact.sig.v1+json",
            Kind::Attestation => "application/vnd.dev.cosign.artifact.att.v1+json",
        }
    }
    /// The tag holding this kind of evidence for `subject`.
    pub fn tag(self, subject: &Digest) -> String {
        format!("{}.{}", subject.tag_schema_prefix(), self.suffix())
    }
}

/// One piece of evidence read from a store: its layer descriptor (with annotations) and its checked bytes.
#[derive(Debug, Clone)]
pub struct EvidenceLayer {
    /// Index in the manifest it came from.
    pub index: usize,
    /// The evidence manifest it came from.
    pub manifest: Digest,
    /// The layer descriptor.
    pub desc: Descriptor,
    /// The blob, checked against the descriptor.
    pub bytes: Bytes,
}

/// The result of appending.
#[derive(Debug, Clone)]
pub struct Appended {
    /// The tag written.
    pub tag: String,
    /// The evidence manifest's digest after the append.
    pub manifest: Digest,
    /// False when an identical layer was already there (nothing was written).
    pub added: bool,
    /// Layers in the manifest now.
    pub layers: usize,
}

fn image_config(layers: &[Descriptor]) -> Bytes {
    // the config go-containerregistry writes for cosign's signature images
    let diff_ids: Vec<String> = layers.iter().map(|l| l.digest.to_string()).collect();
    let v = serde_json::json!({
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {}
    });
    Bytes::from(serde_json::to_vec(&v).expect("config serialises"))
}

fn same_layer(a: &Descriptor, b: &Descriptor) -> bool {
    a.digest == b.digest && a.media_type == b.media_type && a.annotations == b.annotations
}

/// Appends one evidence layer (`blob` described by `layer`, annotations included) to the evidence of `subject`,
/// unless a layer for which `duplicate` answers true (or an identical layer) is already there. Re-reads after
/// writing and tries again (a few times) if a concurrent writer replaced the manifest, so two signers racing on
/// one tag both end up in it.
pub async fn append(
    store: &dyn Store,
    subject: &Descriptor,
    kind: Kind,
    layer: Descriptor,
    blob: Bytes,
    duplicate: &(dyn Fn(&Descriptor) -> bool + Send + Sync),
) -> Result<Appended> {
    if !store.blob_exists(&layer.digest).await? {
        store
            .put_blob(&layer, BlobSource::Bytes(blob), &no_progress)
            .await?;
    }
    add_layers(
        store,
        subject,
        kind,
        std::slice::from_ref(&layer),
        duplicate,
    )
    .await
}

/// Merges `incoming` evidence layers (whose blobs must already be in `store`) into the evidence of `subject`:
/// the result holds the store's existing layers first, then each incoming layer not already there (no
/// duplicates). Used when copying evidence onto a store that has its own. `added` is false when every incoming
/// layer was there already (nothing was written).
pub async fn merge(
    store: &dyn Store,
    subject: &Descriptor,
    kind: Kind,
    incoming: &[Descriptor],
) -> Result<Appended> {
    add_layers(store, subject, kind, incoming, &|_| false).await
}

/// The append loop shared by [`append`] and [`merge`]: adds each of `incoming` that is not already in the tag's
/// manifest (identical, or `duplicate`), writes the new manifest, and checks afterwards that a concurrent writer
/// did not replace it (retrying a few times if one did).
async fn add_layers(
    store: &dyn Store,
    subject: &Descriptor,
    kind: Kind,
    incoming: &[Descriptor],
    duplicate: &(dyn Fn(&Descriptor) -> bool + Send + Sync),
) -> Result<Appended> {
    let tag = kind.tag(&subject.digest);
    let referrers = store.supports_referrers().await?;
    for _attempt in 0..5 {
        let current = store.fetch_manifest(ManifestRef::Tag(&tag)).await?;
        let mut layers = match &current {
            Some(raw) => match raw.parse()? {
                Manifest::Image(m) => m.layers,
                Manifest::Index(_) => {
                    return Err(Error::untrusted(
                        format!("{}:{tag}", store.name()),
                        "the evidence tag holds an index, not a manifest",
                    ));
                }
            },
            None => Vec::new(),
        };
        let before = layers.len();
        for layer in incoming {
            if !layers.iter().any(|l| same_layer(l, layer) || duplicate(l)) {
                layers.push(layer.clone());
            }
        }
        if layers.len() == before
            && let Some(raw) = &current
        {
            return Ok(Appended {
                tag,
                manifest: raw.digest(),
                added: false,
                layers: layers.len(),
            });
        }
        if layers.len() > MAX_EVIDENCE_LAYERS {
            return Err(Error::untrusted(
                format!("{}:{tag}", store.name()),
                format!(
                    "would hold {} layers, over the {MAX_EVIDENCE_LAYERS} sealpack writes",
                    layers.len()
                ),
            ));
        }
        let config_bytes = image_config(&layers);
        let config = Descriptor::new(
            media::OCI_IMAGE_CONFIG,
            Digest::of(&config_bytes),
            config_bytes.len() as u64,
        );
        if !store.blob_exists(&config.digest).await? {
            store
                .put_blob(&config, BlobSource::Bytes(config_bytes), &no_progress)
                .await?;
        }
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.into()),
            artifact_type: referrers.then(|| kind.artifact_type().to_string()),
            config,
            layers,
            subject: referrers
                .then(|| Descriptor::new(subject.media_type.clone(), subject.digest, subject.size)),
            annotations: None,
        };
        let raw = RawManifest::from_image(&manifest)?;
        store.put_manifest(&raw, Some(&tag)).await?;
        // lost-update check: the tag must now hold every incoming layer
        if let Some(now) = store.fetch_manifest(ManifestRef::Tag(&tag)).await?
            && let Manifest::Image(m) = now.parse()?
            && incoming
                .iter()
                .all(|i| m.layers.iter().any(|l| same_layer(l, i) || duplicate(l)))
        {
            return Ok(Appended {
                tag,
                manifest: now.digest(),
                added: true,
                layers: m.layers.len(),
            });
        }
    }
    Err(Error::Registry {
        method: "PUT".into(),
        url: format!("{}:{tag}", store.name()),
        status: 409,
        code: None,
        message: "another writer kept replacing the evidence manifest; try again".into(),
    })
}

/// Reads every evidence layer of `kind` for `subject`: from the tag schema always, and from the referrers API
/// where served. Layers of another media type, over `max_layer_size`, or with foreign URLs are skipped and
/// reported in the second list (so a verifier can say what it ignored); anything the store fails to deliver is
/// an error (never "no evidence").
pub async fn read(
    store: &dyn Store,
    subject: &Digest,
    kind: Kind,
    max_layer_size: u64,
) -> Result<(Vec<EvidenceLayer>, Vec<String>)> {
    let mut all = read_kinds(store, subject, &[(kind, max_layer_size)]).await?;
    Ok(all.pop().expect("one kind asked, one answer"))
}

/// Like [`read`] for several kinds at once (each with its layer size cap), in as few registry round trips as
/// the formats allow: every kind's tag and one referrers query (filtered by `artifactType` when one kind is
/// asked, else unfiltered and split here) together; then, only when the referrers API lists manifests the tags
/// do not hold, those manifests together; then every blob of every kind together. Returns one result per kind,
/// in the order asked.
pub async fn read_kinds(
    store: &dyn Store,
    subject: &Digest,
    kinds: &[(Kind, u64)],
) -> Result<Vec<(Vec<EvidenceLayer>, Vec<String>)>> {
    use futures_util::{StreamExt, TryStreamExt};
    let tags: Vec<String> = kinds.iter().map(|(k, _)| k.tag(subject)).collect();
    let filter = match kinds {
        [(k, _)] => k.artifact_type(),
        _ => "",
    };
    let (tagged, referrers) = futures_util::future::try_join(
        futures_util::future::try_join_all(
            tags.iter()
                .map(|t| store.fetch_manifest(ManifestRef::Tag(t))),
        ),
        store.referrers(subject, filter),
    )
    .await?;
    let mut per_kind: Vec<Vec<RawManifest>> = tagged
        .into_iter()
        .map(|t| t.into_iter().collect())
        .collect();
    if let Some(list) = referrers {
        if list.len() > MAX_REFERRERS {
            return Err(Error::untrusted(
                format!("referrers of {}@{subject}", store.name()),
                format!("more than {MAX_REFERRERS} entries"),
            ));
        }
        // which kind each listed manifest belongs to (by its artifactType), minus those a tag already gave
        let mut missing: Vec<(usize, Digest)> = Vec::new();
        for d in list {
            let Some(i) = kinds
                .iter()
                .position(|(k, _)| d.artifact_type.as_deref() == Some(k.artifact_type()))
            else {
                continue;
            };
            if per_kind[i].iter().any(|m| m.digest() == d.digest)
                || missing.iter().any(|(j, m)| *j == i && *m == d.digest)
            {
                continue;
            }
            missing.push((i, d.digest));
        }
        let fetched: Vec<Option<RawManifest>> = futures_util::stream::iter(
            missing
                .iter()
                .map(|(_, d)| store.fetch_manifest(ManifestRef::Digest(d))),
        )
        .buffered(8)
        .try_collect()
        .await?;
        for ((i, _), m) in missing.iter().zip(fetched) {
            if let Some(m) = m {
                per_kind[*i].push(m);
            }
        }
    }
    let mut wanted = Vec::new();
    let mut skipped: Vec<Vec<String>> = vec![Vec::new(); kinds.len()];
    for (k, ((kind, max_layer_size), manifests)) in kinds.iter().zip(per_kind).enumerate() {
        let (w, s) = wanted_layers(subject, *kind, *max_layer_size, manifests)?;
        wanted.extend(
            w.into_iter()
                .map(|(index, manifest, desc)| (k, index, manifest, desc)),
        );
        skipped[k] = s;
    }
    // the blobs of every kind are fetched concurrently (in order, a few at a time): one round trip for all of
    // them in practice
    let fetched: Vec<(usize, EvidenceLayer)> = futures_util::stream::iter(wanted.into_iter().map(
        |(k, index, manifest, desc)| async move {
            let bytes = store.get_blob(&desc).await?.into_bytes(kinds[k].1).await?;
            Ok::<_, Error>((
                k,
                EvidenceLayer {
                    index,
                    manifest,
                    desc,
                    bytes,
                },
            ))
        },
    ))
    .buffered(8)
    .try_collect()
    .await?;
    let mut out: Vec<Vec<EvidenceLayer>> = vec![Vec::new(); kinds.len()];
    for (k, layer) in fetched {
        out[k].push(layer);
    }
    Ok(out.into_iter().zip(skipped).collect())
}

/// The layers of `manifests` worth fetching as evidence of `kind`, with the reasons for the ones skipped.
#[allow(clippy::type_complexity)]
fn wanted_layers(
    subject: &Digest,
    kind: Kind,
    max_layer_size: u64,
    manifests: Vec<RawManifest>,
) -> Result<(Vec<(usize, Digest, Descriptor)>, Vec<String>)> {
    let mut wanted = Vec::new();
    let mut skipped = Vec::new();
    let mut seen: BTreeMap<(Digest, String), ()> = BTreeMap::new();
    for raw in manifests {
        let m = match raw.parse()? {
            Manifest::Image(m) => m,
            Manifest::Index(_) => {
                skipped.push(format!(
                    "{} is an index, not an evidence manifest",
                    raw.digest()
                ));
                continue;
            }
        };
        // a referrer must name this subject (the tag-schema manifest may carry none)
        if let Some(s) = &m.subject
            && s.digest != *subject
        {
            skipped.push(format!(
                "{} names subject {}, not {subject}",
                raw.digest(),
                s.digest
            ));
            continue;
        }
        if m.layers.len() > MAX_EVIDENCE_LAYERS {
            return Err(Error::untrusted(
                format!("evidence manifest {}", raw.digest()),
                format!(
                    "{} layers, over the cap of {MAX_EVIDENCE_LAYERS}",
                    m.layers.len()
                ),
            ));
        }
        for (index, layer) in m.layers.into_iter().enumerate() {
            let why = if layer.media_type != kind.layer_media_type() {
                Some(format!("media type {}", layer.media_type))
            } else if layer.size > max_layer_size {
                Some(format!(
                    "declares {} bytes, over the {max_layer_size}-byte cap",
                    layer.size
                ))
            } else if layer.urls.is_some() {
                Some("has foreign URLs".to_string())
            } else {
                None
            };
            if let Some(why) = why {
                skipped.push(format!(
                    "layer {index} ({}) of {}: {why}",
                    layer.digest,
                    raw.digest()
                ));
                continue;
            }
            let key = (
                layer.digest,
                serde_json::to_string(&layer.annotations).unwrap_or_default(),
            );
            if seen.insert(key, ()).is_some() {
                continue;
            }
            wanted.push((index, raw.digest(), layer));
        }
    }
    Ok((wanted, skipped))
}
