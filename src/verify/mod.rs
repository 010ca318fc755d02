//! The gate: gather the evidence for one digest, check each piece (cryptography first, then its binding to the
//! digest), and decide.
//!
//! A reference is resolved once; every check and the printed result use that digest. A signature layer counts only
//! when its payload bytes verify under one of the given keys AND its `critical.image.docker-manifest-digest` is the
//! resolved digest AND its `critical.type` is cosign's. Registry trouble while looking for evidence is an
//! operational error, never "unsigned" and never "verified".

use std::collections::BTreeSet;

use serde::Serialize;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::formats::simplesigning;
use crate::keys::PublicKey;
use crate::reference::Reference;
use crate::store::evidence::{self, Kind};
use crate::store::{self, Store};

pub mod gate;
pub mod policy;

/// A public key the caller trusts, with the name reports use for it (its file or policy id).
#[derive(Debug, Clone)]
pub struct TrustedKey {
    /// How reports name the key.
    pub name: String,
    /// The key.
    pub key: PublicKey,
}

/// A signature layer that verified.
#[derive(Debug, Clone, Serialize)]
pub struct VerifiedSignature {
    /// The signature manifest it came from.
    pub manifest: Digest,
    /// Its index in that manifest.
    pub layer: usize,
    /// The key that verified it (hex sha256 of its PKIX DER).
    pub key_id: String,
    /// The key's name.
    pub key: String,
    /// The payload's `optional` annotations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Value>,
}

/// A signature layer that did not count, and why.
#[derive(Debug, Clone, Serialize)]
pub struct RejectedSignature {
    /// The signature manifest it came from (absent for layers skipped before fetching).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Digest>,
    /// Its index in that manifest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<usize>,
    /// Why it did not count.
    pub reason: String,
}

/// The outcome of checking signatures.
#[derive(Debug, Clone, Serialize)]
pub struct SignatureReport {
    /// `REPO@sha256:...` that was checked.
    pub reference: String,
    /// The digest everything was checked against.
    pub digest: Digest,
    /// Signatures that verified.
    pub verified: Vec<VerifiedSignature>,
    /// Signatures that did not count.
    pub rejected: Vec<RejectedSignature>,
    /// Distinct keys with at least one verified signature.
    pub distinct_keys: usize,
}

/// Runs `check` on every evidence layer read, splitting them into the ones that passed (with what the check
/// returned) and the ones that did not (with why), the layers skipped while reading included.
fn sort_evidence<T>(
    layers: Vec<evidence::EvidenceLayer>,
    skipped: Vec<String>,
    check: impl Fn(&evidence::EvidenceLayer) -> std::result::Result<T, String>,
) -> (Vec<(evidence::EvidenceLayer, T)>, Vec<RejectedSignature>) {
    let mut passed = Vec::new();
    let mut rejected: Vec<RejectedSignature> = skipped
        .into_iter()
        .map(|reason| RejectedSignature {
            manifest: None,
            layer: None,
            reason,
        })
        .collect();
    for l in layers {
        match check(&l) {
            Ok(t) => passed.push((l, t)),
            Err(reason) => rejected.push(RejectedSignature {
                manifest: Some(l.manifest),
                layer: Some(l.index),
                reason,
            }),
        }
    }
    (passed, rejected)
}

/// The denial for a subject with nothing that counted: the headline, then why each piece of evidence failed.
fn denial(subject: String, headline: String, rejected: &[RejectedSignature]) -> Error {
    let mut reasons = vec![headline];
    for r in rejected {
        match r.layer {
            Some(l) => reasons.push(format!("layer {l}: {}", r.reason)),
            None => reasons.push(r.reason.clone()),
        }
    }
    Error::Denied { subject, reasons }
}

/// Checks one signature layer against the keys. Returns the key index and the parsed payload, or why not.
pub(crate) fn check_layer(
    payload: &[u8],
    signature_b64: Option<&str>,
    keys: &[TrustedKey],
    digest: &Digest,
) -> std::result::Result<(usize, simplesigning::Payload), String> {
    let b64 = signature_b64
        .ok_or_else(|| format!("no {} annotation", simplesigning::SIGNATURE_ANNOTATION))?;
    let sig = simplesigning::decode_signature_annotation(b64)
        .map_err(|e| format!("bad signature encoding: {e}"))?;
    // cryptography first, over the exact bytes fetched; nothing is parsed before a key vouches for it
    let key_index = keys
        .iter()
        .position(|k| k.key.verify(payload, &sig).is_ok())
        .ok_or_else(|| "signature does not verify under any of the given keys".to_string())?;
    let parsed = simplesigning::parse(payload).map_err(|e| {
        format!(
            "signed by {} but the payload is not a valid simple-signing payload: {e}",
            keys[key_index].name
        )
    })?;
    if parsed.manifest_digest != digest.to_string() {
        return Err(format!(
            "signed by {} for {}, not for {digest} (a signature copied from another artifact)",
            keys[key_index].name, parsed.manifest_digest
        ));
    }
    Ok((key_index, parsed))
}

/// Checks the cosign signatures of what `reference` points at (resolved once) against `keys`. Returns the report
/// when at least one signature verified; [`Error::Denied`] when none did, saying whether there were no signatures
/// at all or none valid for these keys.
pub async fn verify_signatures(
    store: &dyn Store,
    reference: &Reference,
    keys: &[TrustedKey],
) -> Result<SignatureReport> {
    let (digest, evidence) = resolve_and_gather(store, reference).await?;
    let report = evidence.signatures(reference, &digest, keys);
    let revoked = evidence.revocations(reference, &digest, keys);
    // a revocation by a trusted key denies before anything else, however good the signatures are
    if !revoked.is_empty() {
        return Err(Error::Denied {
            subject: report.reference,
            reasons: revoked
                .iter()
                .map(|r| format!("revoked by {}: {}", r.keys.join(", "), r.reason))
                .collect(),
        });
    }
    if report.verified.is_empty() {
        let headline = if report.rejected.is_empty() {
            format!(
                "no signatures found (looked for tag {})",
                Kind::Signature.tag(&digest)
            )
        } else {
            format!(
                "{} signature(s) found, none valid for the given key(s) [{}]",
                report.rejected.len(),
                keys.iter()
                    .map(|k| format!("{} ({})", k.name, &k.key.key_id().to_string()[..12]))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        return Err(denial(report.reference, headline, &report.rejected));
    }
    Ok(report)
}

/// Like [`verify_signatures`] for an already resolved digest, returning the report whatever it says (policy
/// decides thresholds).
pub async fn check_signatures(
    store: &dyn Store,
    reference: &Reference,
    digest: &Digest,
    keys: &[TrustedKey],
) -> Result<SignatureReport> {
    let (layers, skipped) = evidence::read(
        store,
        digest,
        Kind::Signature,
        simplesigning::MAX_PAYLOAD_SIZE as u64,
    )
    .await?;
    Ok(signature_report(reference, digest, keys, layers, skipped))
}

/// Checks signature layers already read against `keys` and `digest`.
fn signature_report(
    reference: &Reference,
    digest: &Digest,
    keys: &[TrustedKey],
    layers: Vec<evidence::EvidenceLayer>,
    skipped: Vec<String>,
) -> SignatureReport {
    let (passed, rejected) = sort_evidence(layers, skipped, |l| {
        check_layer(
            &l.bytes,
            l.desc.annotation(simplesigning::SIGNATURE_ANNOTATION),
            keys,
            digest,
        )
    });
    let verified: Vec<VerifiedSignature> = passed
        .into_iter()
        .map(|(l, (k, payload))| VerifiedSignature {
            manifest: l.manifest,
            layer: l.index,
            key_id: keys[k].key.key_id().to_string(),
            key: keys[k].name.clone(),
            annotations: payload
                .optional
                .map(|o| serde_json::to_value(o).unwrap_or_default()),
        })
        .collect();
    let distinct_keys = verified
        .iter()
        .map(|v| v.key_id.clone())
        .collect::<BTreeSet<_>>()
        .len();
    SignatureReport {
        reference: reference.pinned(*digest).to_string(),
        digest: *digest,
        verified,
        rejected,
        distinct_keys,
    }
}

/// An attestation that verified.
#[derive(Debug, Clone, Serialize)]
pub struct VerifiedAttestation {
    /// The attestation manifest it came from.
    pub manifest: Digest,
    /// Its index in that manifest.
    pub layer: usize,
    /// The keys whose signatures over the envelope verified.
    pub keys: Vec<String>,
    /// Their key ids.
    pub key_ids: Vec<String>,
    /// The statement's predicate type.
    pub predicate_type: String,
    /// The whole verified statement.
    pub statement: serde_json::Value,
}

/// The outcome of checking attestations of one predicate type.
#[derive(Debug, Clone, Serialize)]
pub struct AttestationReport {
    /// `REPO@sha256:...` that was checked.
    pub reference: String,
    /// The digest everything was checked against.
    pub digest: Digest,
    /// The predicate type asked for (aliases expanded).
    pub predicate_type: String,
    /// Attestations that verified, are of that type, and are about that digest.
    pub verified: Vec<VerifiedAttestation>,
    /// Attestations that did not count, and why.
    pub rejected: Vec<RejectedSignature>,
}

/// Checks one envelope: signature first (over the PAE of the exact bytes), then the in-toto payload type, the
/// statement, the predicate type and the subject binding.
pub(crate) fn check_envelope(
    bytes: &[u8],
    keys: &[TrustedKey],
    digest: &Digest,
    requested: &str,
) -> std::result::Result<
    (
        Vec<usize>,
        crate::formats::intoto::Statement,
        serde_json::Value,
    ),
    String,
> {
    use crate::formats::{dsse, intoto};
    let envelope = dsse::parse(bytes).map_err(|e| format!("not a DSSE envelope: {e}"))?;
    let public: Vec<PublicKey> = keys.iter().map(|k| k.key.clone()).collect();
    let verified = dsse::verify(&envelope, &public);
    if verified.is_empty() {
        return Err("no signature on the envelope verifies under the given keys".into());
    }
    let ids: Vec<_> = verified.iter().map(|k| k.key_id()).collect();
    let who: Vec<usize> = keys
        .iter()
        .enumerate()
        .filter(|(_, k)| ids.contains(&k.key.key_id()))
        .map(|(i, _)| i)
        .collect();
    let signer = keys[who[0]].name.clone();
    dsse::check_intoto(&envelope).map_err(|e| format!("signed by {signer}, but {e}"))?;
    let statement = intoto::parse(&envelope.payload)
        .map_err(|e| format!("signed by {signer}, but the statement is invalid: {e}"))?;
    if !intoto::predicate_type_matches(&statement.predicate_type, requested) {
        return Err(format!(
            "signed by {signer}, predicate type {:?}, not {:?}",
            statement.predicate_type, requested
        ));
    }
    if !statement.binds(&digest.hex()) {
        let subjects: Vec<String> = statement
            .subject
            .iter()
            .map(|s| {
                s.digest
                    .iter()
                    .map(|(a, h)| format!("{a}:{h}"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        return Err(format!(
            "signed by {signer}, but the statement is about {}, not {digest} (an attestation copied from another artifact)",
            if subjects.is_empty() {
                "nothing".to_string()
            } else {
                subjects.join(" ")
            }
        ));
    }
    let json = serde_json::from_slice(&envelope.payload).map_err(|e| e.to_string())?;
    Ok((who, statement, json))
}

/// Checks the attestations of `predicate_type` (a URI or an alias: `slsaprovenance`, `cyclonedx`, `spdx`, `vuln`)
/// for an already resolved digest, returning the report whatever it says.
pub async fn check_attestations(
    store: &dyn Store,
    reference: &Reference,
    digest: &Digest,
    keys: &[TrustedKey],
    predicate_type: &str,
) -> Result<AttestationReport> {
    let (layers, skipped) = evidence::read(
        store,
        digest,
        Kind::Attestation,
        crate::formats::dsse::MAX_ENVELOPE_SIZE as u64,
    )
    .await?;
    Ok(attestation_report(
        reference,
        digest,
        keys,
        predicate_type,
        layers,
        skipped,
    ))
}

/// Checks attestation layers already read against `keys`, `digest` and `predicate_type`.
fn attestation_report(
    reference: &Reference,
    digest: &Digest,
    keys: &[TrustedKey],
    predicate_type: &str,
    layers: Vec<evidence::EvidenceLayer>,
    skipped: Vec<String>,
) -> AttestationReport {
    let requested = crate::formats::intoto::resolve_type_alias(predicate_type).to_string();
    let (passed, rejected) = sort_evidence(layers, skipped, |l| {
        check_envelope(&l.bytes, keys, digest, &requested)
    });
    let verified = passed
        .into_iter()
        .map(|(l, (who, st, json))| VerifiedAttestation {
            manifest: l.manifest,
            layer: l.index,
            keys: who.iter().map(|&i| keys[i].name.clone()).collect(),
            key_ids: who
                .iter()
                .map(|&i| keys[i].key.key_id().to_string())
                .collect(),
            predicate_type: st.predicate_type,
            statement: json,
        })
        .collect();
    AttestationReport {
        reference: reference.pinned(*digest).to_string(),
        digest: *digest,
        predicate_type: requested,
        verified,
        rejected,
    }
}

/// Resolves `reference` once and requires at least one attestation of `predicate_type` signed by one of `keys`
/// about exactly that digest; [`Error::Denied`] listing each unmet condition otherwise.
pub async fn verify_attestation(
    store: &dyn Store,
    reference: &Reference,
    keys: &[TrustedKey],
    predicate_type: &str,
) -> Result<AttestationReport> {
    let subject = store::resolve(store, reference).await?;
    let digest = subject.digest();
    // one read of the attestations serves both the requested type and the revocations
    let (layers, skipped) = evidence::read(
        store,
        &digest,
        Kind::Attestation,
        crate::formats::dsse::MAX_ENVELOPE_SIZE as u64,
    )
    .await?;
    let asks_for_revocations = crate::formats::intoto::predicate_type_matches(
        crate::formats::revocation::PREDICATE_TYPE,
        predicate_type,
    );
    let revoked = if asks_for_revocations {
        Vec::new()
    } else {
        let revocations = attestation_report(
            reference,
            &digest,
            keys,
            crate::formats::revocation::PREDICATE_TYPE,
            layers.clone(),
            Vec::new(),
        );
        revocations_in(revocations, &digest)
    };
    let report = attestation_report(reference, &digest, keys, predicate_type, layers, skipped);
    // as every verify: a digest revoked by a trusted key is denied, whatever else is attached to it
    if !revoked.is_empty() {
        return Err(Error::Denied {
            subject: report.reference,
            reasons: revoked
                .iter()
                .map(|r| format!("revoked by {}: {}", r.keys.join(", "), r.reason))
                .collect(),
        });
    }
    if report.verified.is_empty() {
        let headline = if report.rejected.is_empty() {
            format!(
                "no attestations found (looked for tag {})",
                Kind::Attestation.tag(&digest)
            )
        } else {
            format!(
                "{} attestation(s) found, none a verified {} statement about this digest",
                report.rejected.len(),
                report.predicate_type
            )
        };
        return Err(denial(report.reference, headline, &report.rejected));
    }
    Ok(report)
}

/// A verified revocation of the digest.
#[derive(Debug, Clone, Serialize)]
pub struct Revoked {
    /// The keys whose signatures on it verified (their names).
    pub keys: Vec<String>,
    /// Their key ids.
    pub key_ids: Vec<String>,
    /// Why the digest must not deploy.
    pub reason: String,
    /// When it was revoked (as the statement says).
    pub revoked_at: String,
}

/// Revocation statements about `digest` signed by one of `keys` (verified like any attestation; a statement
/// whose predicate does not parse or names another digest does not count).
pub async fn check_revocations(
    store: &dyn Store,
    reference: &Reference,
    digest: &Digest,
    keys: &[TrustedKey],
) -> Result<Vec<Revoked>> {
    let report = check_attestations(
        store,
        reference,
        digest,
        keys,
        crate::formats::revocation::PREDICATE_TYPE,
    )
    .await?;
    Ok(revocations_in(report, digest))
}

/// The verified revocations of `digest` among verified revocation attestations.
fn revocations_in(report: AttestationReport, digest: &Digest) -> Vec<Revoked> {
    use crate::formats::revocation;
    let mut out = Vec::new();
    for v in report.verified {
        let Ok(r) = revocation::parse(&v.statement["predicate"]) else {
            continue;
        };
        if r.digest != digest.to_string() {
            continue;
        }
        out.push(Revoked {
            keys: v.keys,
            key_ids: v.key_ids,
            reason: r.reason,
            revoked_at: r.revoked_at,
        });
    }
    out
}

/// Resolves `reference` once and reads its evidence. A reference pinned by digest needs nothing from the
/// resolve to name the evidence, so both go out together (one round trip less); the resolve must still succeed
/// (the manifest exists and hashes to the digest) before anything counts.
async fn resolve_and_gather(
    store: &dyn Store,
    reference: &Reference,
) -> Result<(Digest, Evidence)> {
    match reference.digest() {
        Some(pinned) => {
            let (subject, evidence) = futures_util::future::try_join(
                store::resolve(store, reference),
                Evidence::gather(store, pinned),
            )
            .await?;
            Ok((subject.digest(), evidence))
        }
        None => {
            let digest = store::resolve(store, reference).await?.digest();
            Ok((digest, Evidence::gather(store, &digest).await?))
        }
    }
}

/// Every signature and attestation layer of one digest, read together in the fewest round trips (see
/// [`evidence::read_kinds`]), so that signatures, revocations and each attestation type are checked against the
/// same bytes without fetching anything twice.
struct Evidence {
    signatures: (Vec<evidence::EvidenceLayer>, Vec<String>),
    attestations: (Vec<evidence::EvidenceLayer>, Vec<String>),
}

impl Evidence {
    async fn gather(store: &dyn Store, digest: &Digest) -> Result<Self> {
        let mut read = evidence::read_kinds(
            store,
            digest,
            &[
                (Kind::Signature, simplesigning::MAX_PAYLOAD_SIZE as u64),
                (
                    Kind::Attestation,
                    crate::formats::dsse::MAX_ENVELOPE_SIZE as u64,
                ),
            ],
        )
        .await?;
        let attestations = read.pop().expect("two kinds asked");
        let signatures = read.pop().expect("two kinds asked");
        Ok(Evidence {
            signatures,
            attestations,
        })
    }

    fn signatures(
        &self,
        reference: &Reference,
        digest: &Digest,
        keys: &[TrustedKey],
    ) -> SignatureReport {
        let (layers, skipped) = self.signatures.clone();
        signature_report(reference, digest, keys, layers, skipped)
    }

    fn attestations(
        &self,
        reference: &Reference,
        digest: &Digest,
        keys: &[TrustedKey],
        predicate_type: &str,
    ) -> AttestationReport {
        let (layers, skipped) = self.attestations.clone();
        attestation_report(reference, digest, keys, predicate_type, layers, skipped)
    }

    fn revocations(
        &self,
        reference: &Reference,
        digest: &Digest,
        keys: &[TrustedKey],
    ) -> Vec<Revoked> {
        let report = self.attestations(
            reference,
            digest,
            keys,
            crate::formats::revocation::PREDICATE_TYPE,
        );
        revocations_in(report, digest)
    }
}

/// The result of verifying against a policy: the decision and the digest-pinned reference it is about.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyReport {
    /// `REPO@sha256:...` that was checked.
    pub reference: String,
    /// The decision, with every rule's result.
    #[serde(flatten)]
    pub decision: policy::Decision,
}

/// The gate with a policy file: resolves `reference` once, gathers every piece of evidence the matching rule
/// could need in one pass (signatures, revocations, and the attestations of each required type, all checked
/// against the policy's keys and the resolved digest), then lets the policy decide. A denial is returned as a
/// report with `allowed: false`, so the caller can print every unmet rule; registry trouble is an error.
pub async fn verify_policy(
    store: &dyn Store,
    reference: &Reference,
    policy: &policy::Policy,
    now: time::OffsetDateTime,
) -> Result<PolicyReport> {
    let (digest, evidence) = resolve_and_gather(store, reference).await?;
    let keys = policy.trusted_keys();
    let repository = reference.repository_name();
    let types: Vec<String> = policy
        .rule_for(&repository)
        .map(|r| {
            r.attestations
                .iter()
                .map(|a| a.predicate_type.clone())
                .collect()
        })
        .unwrap_or_default();
    let signatures = evidence.signatures(reference, &digest, &keys);
    let revoked = evidence.revocations(reference, &digest, &keys);
    let attestations: Vec<AttestationReport> = types
        .iter()
        .map(|t| evidence.attestations(reference, &digest, &keys, t))
        .collect();
    let facts = policy::Facts {
        digest,
        signer_key_ids: signatures
            .verified
            .iter()
            .map(|v| v.key_id.clone())
            .collect(),
        attestations: attestations
            .into_iter()
            .flat_map(|r| r.verified)
            .map(|v| (v.key_ids, v.statement))
            .collect(),
        revoked_by: revoked
            .into_iter()
            .flat_map(|r| {
                let reason = r.reason;
                r.key_ids.into_iter().map(move |id| (id, reason.clone()))
            })
            .collect(),
        now,
    };
    let decision = policy::decide(policy, &repository, &facts);
    Ok(PolicyReport {
        reference: reference.pinned(digest).to_string(),
        decision,
    })
}
