//! `inspect`: what a reference points at, what it holds, and which evidence is attached to it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::digest::Digest;
use crate::error::Result;
use crate::oci::{Manifest, annotations};
use crate::reference::Reference;
use crate::store::{self, ManifestRef, Store};

/// A layer or a child manifest.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// File name, for layers that have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Media type.
    pub media_type: String,
    /// Digest.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Platform (index entries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
    /// Annotations other than the title.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Evidence found in the cosign tag schema (`sha256-<hex>.sig`, `.att`, `.sbom`).
#[derive(Debug, Clone, Serialize)]
pub struct Attachment {
    /// `signature`, `attestation` or `sbom`.
    pub kind: String,
    /// The tag it is stored under.
    pub tag: String,
    /// Digest of the attachment manifest.
    pub digest: Digest,
    /// How many layers (signatures, envelopes) it holds.
    pub entries: usize,
}

/// Everything `inspect` shows.
#[derive(Debug, Clone, Serialize)]
pub struct InspectReport {
    /// `REPO@sha256:...`.
    pub reference: String,
    /// Manifest digest.
    pub digest: Digest,
    /// Manifest media type.
    pub media_type: String,
    /// Manifest size in bytes.
    pub size: u64,
    /// `artifactType`, if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Manifest annotations.
    pub annotations: BTreeMap<String, String>,
    /// Layers (image manifest) or manifests (index).
    pub entries: Vec<Entry>,
    /// Total bytes of the entries.
    pub total_size: u64,
    /// Attached evidence.
    pub attachments: Vec<Attachment>,
}

/// Inspects `reference` (resolved once) in `store`.
pub async fn inspect(store: &dyn Store, reference: &Reference) -> Result<InspectReport> {
    let raw = store::resolve(store, reference).await?;
    let digest = raw.digest();
    let parsed = raw.parse()?;
    let (artifact_type, annotations_map, descs) = match &parsed {
        Manifest::Image(m) => (
            m.artifact_type.clone(),
            m.annotations.clone(),
            m.layers.clone(),
        ),
        Manifest::Index(i) => (
            i.artifact_type.clone(),
            i.annotations.clone(),
            i.manifests.clone(),
        ),
    };
    let entries: Vec<Entry> = descs
        .into_iter()
        .map(|d| {
            let mut ann = d.annotations.clone().unwrap_or_default();
            let title = ann.remove(annotations::TITLE);
            Entry {
                title,
                media_type: d.media_type,
                digest: d.digest,
                size: d.size,
                platform: d.platform,
                annotations: ann,
            }
        })
        .collect();
    let prefix = digest.tag_schema_prefix();
    let kinds = [
        ("signature", "sig"),
        ("attestation", "att"),
        ("sbom", "sbom"),
    ];
    let found = futures_util::future::try_join_all(kinds.iter().map(|(_, suffix)| {
        let tag = format!("{prefix}.{suffix}");
        async move {
            store
                .fetch_manifest(ManifestRef::Tag(&tag))
                .await
                .map(|m| (tag, m))
        }
    }))
    .await?;
    let mut attachments = Vec::new();
    for ((kind, _), (tag, m)) in kinds.iter().zip(found) {
        if let Some(m) = m {
            let entries = match m.parse()? {
                Manifest::Image(im) => im.layers.len(),
                Manifest::Index(ix) => ix.manifests.len(),
            };
            attachments.push(Attachment {
                kind: kind.to_string(),
                tag,
                digest: m.digest(),
                entries,
            });
        }
    }
    Ok(InspectReport {
        reference: reference.pinned(digest).to_string(),
        digest,
        media_type: raw.media_type().to_string(),
        size: raw.bytes().len() as u64,
        artifact_type,
        annotations: annotations_map.unwrap_or_default(),
        total_size: entries.iter().map(|e| e.size).sum(),
        entries,
        attachments,
    })
}
