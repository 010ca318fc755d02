//! Making signatures (and, later, attestations) and attaching them through a [`Store`].
//!
//! A signature is cosign's simple-signing payload for the subject digest, signed over its exact bytes, stored as
//! one layer of the `sha256-<hex>.sig` manifest (SPEC §5).

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Serialize;

use crate::digest::Digest;
use crate::error::Result;
use crate::formats::simplesigning;
use crate::keys::PrivateKey;
use crate::oci::Descriptor;
use crate::reference::Reference;
use crate::store::evidence::{self, Kind};
use crate::store::{self, Store};

/// The result of `sign`.
#[derive(Debug, Clone, Serialize)]
pub struct SignReport {
    /// `REPO@sha256:...` that was signed.
    pub reference: String,
    /// The signed manifest digest.
    pub digest: Digest,
    /// The signing key's id (hex sha256 of its PKIX DER).
    pub key_id: String,
    /// The tag the signature is stored under.
    pub signature_tag: String,
    /// The signature manifest after the append.
    pub signature_manifest: Digest,
    /// Signatures in that manifest now.
    pub signatures: usize,
    /// False when this exact signature was already there.
    pub added: bool,
}

/// Signs what `reference` points at (resolved once) with `key`, appending to the signatures already stored.
/// `annotations` go into the payload's `optional` section, as cosign's `-a`.
pub async fn sign(
    store: &dyn Store,
    reference: &Reference,
    key: &PrivateKey,
    annotations: &BTreeMap<String, String>,
) -> Result<SignReport> {
    let subject = store::resolve(store, reference).await?;
    let digest = subject.digest();
    let payload = simplesigning::build(
        &store.name(),
        &digest.to_string(),
        (!annotations.is_empty()).then_some(annotations),
    );
    let signature = key.sign(&payload)?;
    let mut layer = Descriptor::new(
        simplesigning::MEDIA_TYPE,
        Digest::of(&payload),
        payload.len() as u64,
    );
    layer.annotations = Some(BTreeMap::from([(
        simplesigning::SIGNATURE_ANNOTATION.to_string(),
        base64::engine::general_purpose::STANDARD.encode(&signature),
    )]));
    let subject_desc = subject.descriptor();
    // the same key over the same payload is a duplicate even if the signature bytes differ (ECDSA may randomise)
    let (payload_digest, public) = (layer.digest, key.public_key().clone());
    let signed_here = payload.clone();
    let duplicate = move |l: &Descriptor| {
        l.digest == payload_digest
            && l.annotation(simplesigning::SIGNATURE_ANNOTATION)
                .and_then(|a| simplesigning::decode_signature_annotation(a).ok())
                .is_some_and(|sig| public.verify(&signed_here, &sig).is_ok())
    };
    let appended = evidence::append(
        store,
        &subject_desc,
        Kind::Signature,
        layer,
        payload.into(),
        &duplicate,
    )
    .await?;
    Ok(SignReport {
        reference: reference.pinned(digest).to_string(),
        digest,
        key_id: key.key_id().to_string(),
        signature_tag: appended.tag,
        signature_manifest: appended.manifest,
        signatures: appended.layers,
        added: appended.added,
    })
}

/// The result of `attest`.
#[derive(Debug, Clone, Serialize)]
pub struct AttestReport {
    /// `REPO@sha256:...` the statement is about.
    pub reference: String,
    /// The subject digest.
    pub digest: Digest,
    /// The statement's predicate type.
    pub predicate_type: String,
    /// The signing key's id.
    pub key_id: String,
    /// The tag the attestation is stored under.
    pub attestation_tag: String,
    /// The attestation manifest after the append.
    pub attestation_manifest: Digest,
    /// Attestations in that manifest now.
    pub attestations: usize,
    /// False when this exact envelope was already there.
    pub added: bool,
}

/// The layer annotation cosign puts on each attestation layer (a hint for readers; never trusted).
pub const PREDICATE_TYPE_ANNOTATION: &str = "predicateType";

/// Wraps `predicate` in an in-toto Statement v1 about `subject` (already resolved from `reference`), signs it
/// as a DSSE envelope with `key`, and appends it to the subject's `sha256-<hex>.att` manifest.
pub async fn attest(
    store: &dyn Store,
    reference: &Reference,
    subject: &crate::oci::RawManifest,
    key: &PrivateKey,
    predicate_type: &str,
    predicate: &serde_json::Value,
) -> Result<AttestReport> {
    use crate::formats::{dsse, intoto};
    let digest = subject.digest();
    let statement = intoto::build(&store.name(), &digest.hex(), predicate_type, predicate);
    let envelope = dsse::sign(dsse::PAYLOAD_TYPE_INTOTO, &statement, key)?;
    let mut layer = Descriptor::new(
        dsse::MEDIA_TYPE,
        Digest::of(&envelope),
        envelope.len() as u64,
    );
    layer.annotations = Some(BTreeMap::from([(
        PREDICATE_TYPE_ANNOTATION.to_string(),
        predicate_type.to_string(),
    )]));
    let appended = evidence::append(
        store,
        &subject.descriptor(),
        Kind::Attestation,
        layer,
        envelope.into(),
        &|_| false,
    )
    .await?;
    Ok(AttestReport {
        reference: reference.pinned(digest).to_string(),
        digest,
        predicate_type: predicate_type.to_string(),
        key_id: key.key_id().to_string(),
        attestation_tag: appended.tag,
        attestation_manifest: appended.manifest,
        attestations: appended.layers,
        added: appended.added,
    })
}
