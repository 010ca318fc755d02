//! The OCI data model: descriptors, image manifests, image indexes, media types and annotation keys.
//!
//! A manifest is always handled as its raw bytes ([`RawManifest`]) with the digest computed from those bytes; the
//! typed view ([`Manifest`]) is parsed from them and never re-serialised for anything that is hashed or signed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result};

/// Media types (OCI image-spec v1.1, Docker schema 2, cosign).
pub mod media {
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// Docker schema 2 manifest.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker schema 2 manifest list.
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    /// OCI container image config.
    pub const OCI_IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// Docker container image config.
    pub const DOCKER_IMAGE_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// The empty descriptor's media type (content `{}`).
    pub const EMPTY_JSON: &str = "application/vnd.oci.empty.v1+json";
    /// A gzip'd tar layer.
    pub const LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// An uncompressed tar layer.
    pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    /// An opaque file layer.
    pub const OCTET_STREAM: &str = "application/octet-stream";
    /// sealpack's default artifact type.
    pub const SEALPACK_ARTIFACT: &str = "application/vnd.sealpack.artifact.v1";
    /// The manifest types sealpack sends in `Accept`.
    pub const MANIFEST_ACCEPT: &[&str] = &[OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];
}

/// Annotation keys.
pub mod annotations {
    /// The file name of a layer.
    pub const TITLE: &str = "org.opencontainers.image.title";
    /// The git commit.
    pub const REVISION: &str = "org.opencontainers.image.revision";
    /// The source repository URL.
    pub const SOURCE: &str = "org.opencontainers.image.source";
    /// The version (the tag pushed to).
    pub const VERSION: &str = "org.opencontainers.image.version";
    /// RFC 3339 creation time.
    pub const CREATED: &str = "org.opencontainers.image.created";
    /// The tag in an OCI layout's index.json.
    pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
    /// oras: unpack this tar layer into a folder on pull.
    pub const ORAS_UNPACK: &str = "io.deis.oras.content.unpack";
    /// sealpack: the permission bits of a file layer, `"0755"` for executables (absent: `0644`). Only these two
    /// values exist, as git records modes; pull refuses any other.
    pub const FILE_MODE: &str = "dev.sealpack.file.mode";
    /// oras: digest of the uncompressed tar of a folder layer.
    pub const ORAS_CONTENT_DIGEST: &str = "io.deis.oras.content.digest";
}

/// Largest manifest or index accepted from a store or written to one (distribution's own cap).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// Most layers accepted in one manifest, and entries in one index.
pub const MAX_DESCRIPTORS: usize = 10_000;

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// Digest of the content.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Foreign URLs (never fetched by sealpack).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Platform (in indexes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
    /// Artifact type (in referrers indexes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// A plain descriptor.
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            urls: None,
            annotations: None,
            platform: None,
            artifact_type: None,
        }
    }

    /// The empty JSON descriptor `{}` used as the config of artifacts.
    pub fn empty_json() -> Self {
        Descriptor::new(media::EMPTY_JSON, crate::digest::empty_json_digest(), 2)
    }

    /// An annotation value.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }

    /// The layer's file name (`org.opencontainers.image.title`).
    pub fn title(&self) -> Option<&str> {
        self.annotation(annotations::TITLE)
    }
}

/// An OCI image manifest (also reads Docker schema 2, which has the same shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The artifact type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// The layers.
    pub layers: Vec<Descriptor>,
    /// The manifest this one is about (OCI 1.1 referrers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl ImageManifest {
    /// An annotation value.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

/// An OCI image index (also reads Docker manifest lists).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    /// Always 2.
    pub schema_version: u32,
    /// The index media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The artifact type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The manifests.
    pub manifests: Vec<Descriptor>,
    /// Subject (OCI 1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// A parsed manifest or index.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // parsed once or twice per command; boxing buys nothing
pub enum Manifest {
    /// An image manifest (OCI or Docker).
    Image(ImageManifest),
    /// An index (OCI or Docker list).
    Index(ImageIndex),
}

/// A manifest's exact bytes with their digest and media type. The digest is always computed here from the bytes,
/// never taken from a registry header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawManifest {
    media_type: String,
    bytes: bytes::Bytes,
    digest: Digest,
}

impl RawManifest {
    /// Wraps bytes, computing their digest; refuses more than [`MAX_MANIFEST_BYTES`].
    pub fn new(media_type: impl Into<String>, bytes: impl Into<bytes::Bytes>) -> Result<Self> {
        let bytes = bytes.into();
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(Error::untrusted(
                "manifest",
                format!(
                    "{} bytes is over the {MAX_MANIFEST_BYTES}-byte cap",
                    bytes.len()
                ),
            ));
        }
        // a store that does not say: take the manifest's own mediaType, else go by its shape
        let mut media_type = media_type.into();
        if media_type.is_empty() {
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            media_type = match v.get("mediaType").and_then(|m| m.as_str()) {
                Some(m) => m.to_string(),
                None if v.get("manifests").is_some() => media::OCI_INDEX.to_string(),
                None => media::OCI_MANIFEST.to_string(),
            };
        }
        Ok(RawManifest {
            media_type,
            digest: Digest::of(&bytes),
            bytes,
        })
    }

    /// Serialises an image manifest (compact JSON, struct field order) into raw bytes.
    pub fn from_image(m: &ImageManifest) -> Result<Self> {
        let bytes = serde_json::to_vec(m).expect("manifest serialisation cannot fail");
        RawManifest::new(
            m.media_type
                .clone()
                .unwrap_or_else(|| media::OCI_MANIFEST.into()),
            bytes,
        )
    }

    /// The media type (from the store's Content-Type or the manifest's own field).
    pub fn media_type(&self) -> &str {
        &self.media_type
    }
    /// The exact bytes.
    pub fn bytes(&self) -> &bytes::Bytes {
        &self.bytes
    }
    /// The digest of the bytes.
    pub fn digest(&self) -> Digest {
        self.digest
    }
    /// A descriptor for this manifest.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(
            self.media_type.clone(),
            self.digest,
            self.bytes.len() as u64,
        )
    }

    /// Checks the bytes are what `expected` names.
    pub fn check_digest(&self, what: &str, expected: &Digest) -> Result<()> {
        if &self.digest != expected {
            return Err(Error::DigestMismatch {
                what: what.to_string(),
                expected: *expected,
                actual: self.digest,
            });
        }
        Ok(())
    }

    /// Parses the typed view, deciding image vs index by the manifest's own `mediaType` (falling back on the
    /// store's content type and on shape), and checking limits.
    pub fn parse(&self) -> Result<Manifest> {
        let what = || format!("manifest {}", self.digest);
        let value: serde_json::Value = serde_json::from_slice(&self.bytes)
            .map_err(|e| Error::untrusted(what(), format!("not JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| Error::untrusted(what(), "not a JSON object"))?;
        let declared = obj.get("mediaType").and_then(|v| v.as_str());
        if let Some(d) = declared
            && !self.media_type.is_empty()
            && d != self.media_type
            && media::MANIFEST_ACCEPT.contains(&self.media_type.as_str())
        {
            return Err(Error::untrusted(
                what(),
                format!("served as {} but declares mediaType {d}", self.media_type),
            ));
        }
        let kind = declared.unwrap_or(&self.media_type);
        let is_index = match kind {
            media::OCI_INDEX | media::DOCKER_LIST => true,
            media::OCI_MANIFEST | media::DOCKER_MANIFEST => false,
            _ => obj.contains_key("manifests") && !obj.contains_key("layers"),
        };
        if obj.get("schemaVersion").and_then(|v| v.as_u64()) != Some(2) {
            return Err(Error::untrusted(what(), "schemaVersion is not 2"));
        }
        if is_index {
            let idx: ImageIndex = serde_json::from_value(value)
                .map_err(|e| Error::untrusted(what(), format!("not an image index: {e}")))?;
            if idx.manifests.len() > MAX_DESCRIPTORS {
                return Err(Error::untrusted(
                    what(),
                    format!("more than {MAX_DESCRIPTORS} manifests"),
                ));
            }
            Ok(Manifest::Index(idx))
        } else {
            let m: ImageManifest = serde_json::from_value(value)
                .map_err(|e| Error::untrusted(what(), format!("not an image manifest: {e}")))?;
            if m.layers.len() > MAX_DESCRIPTORS {
                return Err(Error::untrusted(
                    what(),
                    format!("more than {MAX_DESCRIPTORS} layers"),
                ));
            }
            Ok(Manifest::Image(m))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trip_keeps_bytes_and_digest() {
        let m = ImageManifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.into()),
            artifact_type: Some(media::SEALPACK_ARTIFACT.into()),
            config: Descriptor::empty_json(),
            layers: vec![],
            subject: None,
            annotations: None,
        };
        let raw = RawManifest::from_image(&m).unwrap();
        assert_eq!(raw.digest(), Digest::of(raw.bytes()));
        assert_eq!(raw.parse().unwrap(), Manifest::Image(m));
        assert!(
            raw.bytes()
                .starts_with(b"{\"schemaVersion\":2,\"mediaType\"")
        );
    }

    #[test]
    fn parse_refuses_lies_and_junk() {
        let idx = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        let raw = RawManifest::new(media::OCI_MANIFEST, &idx[..]).unwrap();
        assert!(
            raw.parse()
                .unwrap_err()
                .to_string()
                .contains("declares mediaType")
        );
        let raw = RawManifest::new(media::OCI_INDEX, &idx[..]).unwrap();
        assert!(matches!(raw.parse().unwrap(), Manifest::Index(_)));
        for junk in [
            &b"[]"[..],
            b"not json",
            br#"{"schemaVersion":1,"layers":[]}"#,
        ] {
            assert!(
                RawManifest::new(media::OCI_MANIFEST, junk)
                    .unwrap()
                    .parse()
                    .is_err()
            );
        }
        let big = vec![b' '; MAX_MANIFEST_BYTES + 1];
        assert!(RawManifest::new(media::OCI_MANIFEST, big).is_err());
    }
}
