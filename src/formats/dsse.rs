//! DSSE, the Dead Simple Signing Envelope v1 (secure-systems-lab/dsse `envelope.md` and
//! `protocol.md`): the envelope an attestation layer holds.
//!
//! ```text
//! {"payloadType":"application/vnd.in-toto+json","payload":BASE64,"signatures":[{"keyid":"…","sig":BASE64}]}
//! ```
//!
//! A signature is over the pre-authentication encoding [`pae`] of `payloadType` and the *decoded*
//! payload bytes, never over the JSON. The order a verifier must follow:
//!
//! 1. [`parse`] the envelope (size cap, signature cap, no repeated field, base64 decoding; the
//!    payload is not parsed);
//! 2. [`verify`] the signatures against the trusted keys, and stop if no key verified;
//! 3. [`check_intoto`] that the payload type is in-toto's;
//! 4. only then parse the payload (`intoto::parse`).
//!
//! Signatures are checked with [`PublicKey::verify`]: ECDSA P-256 signatures must be ASN.1 DER,
//! as cosign and every Sigstore client write and read them (sigstore/sigstore's `ECDSAVerifier`
//! calls Go's `ecdsa.VerifyASN1`). The raw `r‖s` (IEEE P1363) form used by the DSSE spec's own
//! test vector is therefore refused, as cosign refuses it.

use std::cell::RefCell;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{
    STANDARD, STANDARD_PAD_INDIFFERENT, URL_SAFE_PAD_INDIFFERENT,
};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::FormatError;
use crate::keys::{KeyError, KeyId, PrivateKey, PublicKey};

/// `payloadType` of an in-toto attestation (in-toto/attestation `envelope.md`).
pub const PAYLOAD_TYPE_INTOTO: &str = "application/vnd.in-toto+json";
/// Media type of an OCI layer holding one envelope (cosign's `.att` layers).
pub const MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// Largest envelope we parse. Well under cosign's 128 MiB attachment cap; real attestations,
/// even SBOMs of large images, are far smaller.
pub const MAX_ENVELOPE_SIZE: usize = 16 * 1024 * 1024;
/// Most signatures one envelope may carry; each is tried against every trusted key.
pub const MAX_SIGNATURES: usize = 100;
/// Longest `payloadType` we accept, in bytes.
pub const MAX_PAYLOAD_TYPE_LEN: usize = 1024;
/// Longest `keyid` hint we accept, in bytes (a KMS resource name is about 120).
pub const MAX_KEYID_LEN: usize = 1024;
/// Longest base64 `sig` we decode (an RSA-4096 signature is 684 characters).
pub const MAX_SIG_LEN: usize = 4096;

const WHAT: &str = "DSSE envelope";

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The signer's key id hint (empty when absent). Unauthenticated: never used to pick,
    /// trust or count keys.
    pub keyid: String,
    /// The decoded signature bytes.
    pub sig: Vec<u8>,
}

/// A parsed envelope. Nothing in it is authenticated until [`verify`] says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// `payloadType`, exactly as written.
    pub payload_type: String,
    /// The decoded payload bytes (not parsed).
    pub payload: Vec<u8>,
    /// The signatures, in envelope order (1 to [`MAX_SIGNATURES`]).
    pub signatures: Vec<Signature>,
}

/// The DSSE v1 pre-authentication encoding, the bytes a signature covers:
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, where `LEN` is the byte count in ASCII
/// decimal without leading zeros and `SP` is one space.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let type_len = payload_type.len().to_string();
    let body_len = body.len().to_string();
    let mut out = Vec::with_capacity(
        7 + type_len.len() + 1 + payload_type.len() + 1 + body_len.len() + 1 + body.len(),
    );
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(type_len.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(body_len.as_bytes());
    out.push(b' ');
    out.extend_from_slice(body);
    out
}

/// Signs `body` as a `payload_type` payload with `key` and returns the envelope as compact JSON:
/// `{"payloadType":…,"payload":<standard base64>,"signatures":[{"keyid":<hex key id>,"sig":<standard base64>}]}`.
pub fn sign(payload_type: &str, body: &[u8], key: &PrivateKey) -> Result<Vec<u8>, KeyError> {
    let sig = key.sign(&pae(payload_type, body))?;
    let envelope = serde_json::json!({
        "payloadType": payload_type,
        "payload": STANDARD.encode(body),
        "signatures": [{
            "keyid": key.key_id().to_string(),
            "sig": STANDARD.encode(sig),
        }],
    });
    Ok(envelope.to_string().into_bytes())
}

fn field_error(field: &str, reason: impl Into<String>) -> FormatError {
    FormatError::InvalidField {
        what: WHAT,
        field: field.into(),
        reason: reason.into(),
    }
}

fn missing(field: &str) -> FormatError {
    FormatError::MissingField {
        what: WHAT,
        field: field.into(),
    }
}

/// Decodes DSSE base64: the standard or the URL-safe alphabet (DSSE `envelope.md` allows
/// either), with or without `=` padding. One alphabet per value; no whitespace; non-zero
/// trailing bits are refused, so each byte string has one spelling per alphabet.
pub fn decode_base64(what: &'static str, s: &str) -> Result<Vec<u8>, FormatError> {
    let standard = s.bytes().any(|b| b == b'+' || b == b'/');
    let url_safe = s.bytes().any(|b| b == b'-' || b == b'_');
    let engine = match (standard, url_safe) {
        (true, true) => {
            return Err(FormatError::Base64 {
                what,
                reason: "it mixes the standard and the URL-safe alphabets".into(),
            });
        }
        (false, true) => &URL_SAFE_PAD_INDIFFERENT,
        _ => &STANDARD_PAD_INDIFFERENT,
    };
    engine
        .decode(s.as_bytes())
        .map_err(|e| FormatError::Base64 {
            what,
            reason: e.to_string(),
        })
}

/// Parses an envelope of at most [`MAX_ENVELOPE_SIZE`] bytes. Only the envelope is read: the
/// payload is base64-decoded but not parsed.
///
/// This runs before any signature is checked, so it reads the JSON as a stream into exactly the
/// fields it needs: unknown fields are skipped without being kept (they are not signed and
/// nothing reads them), and the signature count is capped while reading, so an envelope of
/// `[]`s or of a million empty signatures costs no more memory than its bytes.
///
/// Rejected: anything but one JSON object; `payloadType`, `payload` or `signatures` (or, in a
/// signature, `keyid` or `sig`) twice; a missing or non-string `payloadType` (or one longer than
/// [`MAX_PAYLOAD_TYPE_LEN`]) or `payload`; payload or `sig` that is not DSSE base64 (see
/// [`decode_base64`]); `signatures` that is not an array of 1 to [`MAX_SIGNATURES`] objects; a
/// signature without `sig`, with an empty one or one longer than [`MAX_SIG_LEN`]; a `keyid`
/// that is not a string or is longer than [`MAX_KEYID_LEN`]. `keyid` may be absent (read as
/// empty), as in the DSSE spec's own example.
pub fn parse(bytes: &[u8]) -> Result<Envelope, FormatError> {
    if bytes.len() > MAX_ENVELOPE_SIZE {
        return Err(FormatError::TooLarge {
            what: WHAT,
            limit: MAX_ENVELOPE_SIZE,
            actual: bytes.len(),
        });
    }
    let state = ReadState::default();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let raw = de
        .deserialize_map(EnvelopeVisitor { state: &state })
        .and_then(|raw| de.end().map(|()| raw))
        .map_err(|e| state.into_error(&e))?;

    if raw.payload_type.len() > MAX_PAYLOAD_TYPE_LEN {
        return Err(field_error(
            "payloadType",
            format!("is longer than {MAX_PAYLOAD_TYPE_LEN} bytes"),
        ));
    }
    let payload = decode_base64("DSSE payload", &raw.payload)?;
    if raw.signatures.is_empty() {
        return Err(field_error("signatures", "is empty"));
    }
    let mut signatures = Vec::with_capacity(raw.signatures.len());
    for (i, entry) in raw.signatures.into_iter().enumerate() {
        if entry.keyid.len() > MAX_KEYID_LEN {
            return Err(field_error(
                &format!("signatures[{i}].keyid"),
                format!("is longer than {MAX_KEYID_LEN} bytes"),
            ));
        }
        if entry.sig.len() > MAX_SIG_LEN {
            return Err(field_error(
                &format!("signatures[{i}].sig"),
                format!("is longer than {MAX_SIG_LEN} characters"),
            ));
        }
        let sig = decode_base64("DSSE signature", &entry.sig)?;
        if sig.is_empty() {
            return Err(field_error(&format!("signatures[{i}].sig"), "is empty"));
        }
        signatures.push(Signature {
            keyid: entry.keyid,
            sig,
        });
    }
    Ok(Envelope {
        payload_type: raw.payload_type,
        payload,
        signatures,
    })
}

/// The envelope's fields as read, before any check of their values.
struct RawEnvelope {
    payload_type: String,
    payload: String,
    signatures: Vec<RawSignature>,
}

struct RawSignature {
    keyid: String,
    sig: String,
}

/// What the streaming reader knows when serde gives up: a precise error it raised itself, or
/// the field it was reading (serde's own errors only carry a message).
#[derive(Default)]
struct ReadState {
    error: RefCell<Option<FormatError>>,
    field: RefCell<String>,
}

impl ReadState {
    /// Records `error` and returns a serde error that stops the reader.
    fn fail<E: de::Error>(&self, error: FormatError) -> E {
        let message = error.to_string();
        *self.error.borrow_mut() = Some(error);
        E::custom(message)
    }

    fn set_field(&self, field: &str) {
        let mut current = self.field.borrow_mut();
        current.clear();
        current.push_str(field);
    }

    fn into_error(self, e: &serde_json::Error) -> FormatError {
        use serde_json::error::Category;
        match (e.classify(), self.error.into_inner()) {
            (Category::Data, Some(error)) => error,
            (Category::Data, None) => {
                let field = self.field.into_inner();
                field_error(
                    if field.is_empty() {
                        "the document"
                    } else {
                        &field
                    },
                    e.to_string(),
                )
            }
            _ => FormatError::Json {
                what: WHAT,
                reason: e.to_string(),
            },
        }
    }
}

fn duplicate(key: &str, path: &str) -> FormatError {
    FormatError::DuplicateKey {
        what: WHAT,
        key: key.to_owned(),
        path: path.to_owned(),
    }
}

struct EnvelopeVisitor<'s> {
    state: &'s ReadState,
}

impl<'de> Visitor<'de> for EnvelopeVisitor<'_> {
    type Value = RawEnvelope;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a DSSE envelope (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawEnvelope, A::Error> {
        let state = self.state;
        let mut payload_type: Option<String> = None;
        let mut payload: Option<String> = None;
        let mut signatures: Option<Vec<RawSignature>> = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "payloadType" | "payload" => {
                    let slot = if key == "payload" {
                        &mut payload
                    } else {
                        &mut payload_type
                    };
                    if slot.is_some() {
                        return Err(state.fail(duplicate(&key, "")));
                    }
                    state.set_field(&key);
                    *slot = Some(map.next_value()?);
                }
                "signatures" => {
                    if signatures.is_some() {
                        return Err(state.fail(duplicate(&key, "")));
                    }
                    state.set_field("signatures");
                    signatures = Some(map.next_value_seed(SignaturesSeed { state })?);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            state.set_field("");
        }
        Ok(RawEnvelope {
            payload_type: payload_type.ok_or_else(|| state.fail(missing("payloadType")))?,
            payload: payload.ok_or_else(|| state.fail(missing("payload")))?,
            signatures: signatures.ok_or_else(|| state.fail(missing("signatures")))?,
        })
    }
}

struct SignaturesSeed<'s> {
    state: &'s ReadState,
}

impl<'de> DeserializeSeed<'de> for SignaturesSeed<'_> {
    type Value = Vec<RawSignature>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for SignaturesSeed<'_> {
    type Value = Vec<RawSignature>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of signatures")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let state = self.state;
        let mut out = Vec::new();
        loop {
            if out.len() == MAX_SIGNATURES {
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    return Err(state.fail(field_error(
                        "signatures",
                        format!("has more than {MAX_SIGNATURES} entries"),
                    )));
                }
                return Ok(out);
            }
            let path = format!("signatures[{}]", out.len());
            state.set_field(&path);
            match seq.next_element_seed(SignatureSeed { state, path })? {
                Some(signature) => out.push(signature),
                None => return Ok(out),
            }
        }
    }
}

struct SignatureSeed<'s> {
    state: &'s ReadState,
    path: String,
}

impl<'de> DeserializeSeed<'de> for SignatureSeed<'_> {
    type Value = RawSignature;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for SignatureSeed<'_> {
    type Value = RawSignature;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a signature (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawSignature, A::Error> {
        let state = self.state;
        let mut keyid: Option<String> = None;
        let mut sig: Option<String> = None;
        while let Some(key) = map.next_key::<String>()? {
            let slot = match key.as_str() {
                "keyid" => &mut keyid,
                "sig" => &mut sig,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            if slot.is_some() {
                return Err(state.fail(duplicate(&key, &self.path)));
            }
            state.set_field(&format!("{}.{key}", self.path));
            *slot = Some(map.next_value()?);
        }
        let sig = sig.ok_or_else(|| state.fail(missing(&format!("{}.sig", self.path))))?;
        Ok(RawSignature {
            keyid: keyid.unwrap_or_default(),
            sig,
        })
    }
}

/// The distinct trusted keys that made a valid signature over the envelope's PAE, in the order
/// of `keys`, without repeats.
///
/// Every signature is tried against every key; the `keyid` hints are ignored (DSSE
/// `protocol.md`: they are unauthenticated), so a wrong or missing hint costs nothing and a
/// forged one gains nothing. Keys are counted by [`KeyId`], i.e. by their public key bytes: the
/// same key listed twice in `keys`, or two signatures by one key, count once, which is what a
/// threshold needs. An empty result means "not verified".
pub fn verify<'k>(envelope: &Envelope, keys: &'k [PublicKey]) -> Vec<&'k PublicKey> {
    let message = pae(&envelope.payload_type, &envelope.payload);
    let mut seen: Vec<KeyId> = Vec::new();
    let mut verified = Vec::new();
    for key in keys {
        let id = key.key_id();
        if seen.contains(&id) {
            continue;
        }
        seen.push(id);
        if envelope
            .signatures
            .iter()
            .any(|s| key.verify(&message, &s.sig).is_ok())
        {
            verified.push(key);
        }
    }
    verified
}

/// Checks that the envelope carries an in-toto statement: `payloadType` must equal
/// [`PAYLOAD_TYPE_INTOTO`] exactly. Envelopes from cosign before v1.5.0, which wrote the
/// predicate type there, are refused.
pub fn check_intoto(envelope: &Envelope) -> Result<(), FormatError> {
    if envelope.payload_type == PAYLOAD_TYPE_INTOTO {
        Ok(())
    } else {
        Err(field_error(
            "payloadType",
            format!(
                "is {:?}, expected {PAYLOAD_TYPE_INTOTO:?}",
                envelope.payload_type.chars().take(200).collect::<String>()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyType;
    use serde_json::Value;

    macro_rules! testdata {
        ($path:literal) => {
            include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/", $path))
        };
    }

    const SPEC_PAE: &[u8] = testdata!("dsse/spec-protocol-md/pae.txt");
    const SPEC_TYPE: &[u8] = testdata!("dsse/spec-protocol-md/payload_type.txt");
    const SPEC_BODY: &[u8] = testdata!("dsse/spec-protocol-md/serialized_body.txt");
    const SPEC_ENVELOPE: &[u8] = testdata!("dsse/spec-protocol-md/envelope.json");
    const SPEC_KEY: &[u8] = testdata!("dsse/spec-protocol-md/key.derived.pub");
    const GCB: &[u8] = testdata!("attestations/gcb/v1.0-gcloud-container-github-single.json");
    const GCB_INVALID: &[u8] =
        testdata!("attestations/gcb/v1.0-gcloud-container-github-single-invalid-sig.json");
    const GCB_KEY: &[u8] = testdata!("attestations/gcb/keys/global-pae-google-hosted-worker_1.key");
    const KYVERNO_1: &[u8] =
        testdata!("attestations/kyverno-legacy-cosign/envelope-1-codereview.json");
    const KYVERNO_2: &[u8] =
        testdata!("attestations/kyverno-legacy-cosign/envelope-2-cosign-custom.json");
    const KYVERNO_KEY: &[u8] = testdata!("attestations/kyverno-legacy-cosign/kyverno.pub");

    /// The envelope of a `gcloud … --show-provenance` output, as JSON bytes.
    fn gcb_envelope(describe: &[u8]) -> Vec<u8> {
        let v: Value = serde_json::from_slice(describe).unwrap();
        v["provenance_summary"]["provenance"][0]["envelope"]
            .to_string()
            .into_bytes()
    }

    fn key(pem: &[u8]) -> PublicKey {
        PublicKey::from_pem(pem).unwrap()
    }

    #[test]
    fn pae_matches_the_spec_vector_byte_for_byte() {
        let payload_type = std::str::from_utf8(SPEC_TYPE).unwrap();
        assert_eq!(payload_type, "http://example.com/HelloWorld");
        assert_eq!(SPEC_BODY, b"hello world");
        assert_eq!(pae(payload_type, SPEC_BODY), SPEC_PAE);
        assert_eq!(
            SPEC_PAE,
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
        // Lengths are byte counts, not characters; empty parts keep their spaces.
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ");
        assert_eq!(
            pae("\u{e9}", "\u{e9}".as_bytes()),
            "DSSEv1 2 \u{e9} 2 \u{e9}".as_bytes()
        );
        let big = vec![b'x'; 1234];
        assert!(pae("t", &big).starts_with(b"DSSEv1 1 t 1234 x"));
    }

    #[test]
    fn the_spec_vector_p1363_signature_is_refused_der_only() {
        let env = parse(SPEC_ENVELOPE).unwrap();
        assert_eq!(env.payload_type, "http://example.com/HelloWorld");
        assert_eq!(env.payload, b"hello world");
        assert_eq!(env.signatures.len(), 1);
        assert_eq!(
            env.signatures[0].keyid, "",
            "keyid is absent in the spec example"
        );
        assert_eq!(env.signatures[0].sig.len(), 64, "raw r||s");
        let spec_key = key(SPEC_KEY);
        assert_eq!(
            spec_key.key_id().to_string(),
            "f793580060562d6ff075d814ea698c282fcc779b0cde64d79ffc6301df00d14b"
        );
        // sealpack, like cosign (sigstore/sigstore ECDSAVerifier: ecdsa.VerifyASN1), reads DER only.
        let keys = [spec_key.clone()];
        assert!(verify(&env, &keys).is_empty());
        // The very same (r, s) in DER verifies over our PAE: only the encoding is refused.
        let rs = p256::ecdsa::Signature::from_slice(&env.signatures[0].sig).unwrap();
        let der = rs.to_der().as_bytes().to_vec();
        spec_key.verify(SPEC_PAE, &der).unwrap();
        let mut as_der = env.clone();
        as_der.signatures[0].sig = der;
        assert_eq!(verify(&as_der, &keys), vec![&keys[0]]);
    }

    #[test]
    fn gcb_provenance_verifies_with_base64url_signature() {
        let raw = gcb_envelope(GCB);
        let sig_text = serde_json::from_slice::<Value>(&raw).unwrap()["signatures"][0]["sig"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            sig_text.contains('_'),
            "the vector uses the URL-safe alphabet"
        );
        let env = parse(&raw).unwrap();
        assert_eq!(env.payload_type, PAYLOAD_TYPE_INTOTO);
        assert_eq!(
            env.signatures[0].keyid,
            "projects/verified-builder/locations/global/keyRings/attestor/cryptoKeys/google-hosted-worker/cryptoKeyVersions/1"
        );
        let gcb_key = key(GCB_KEY);
        let kyverno = key(KYVERNO_KEY);
        let keys = [kyverno, gcb_key.clone(), gcb_key];
        let verified = verify(&env, &keys);
        assert_eq!(verified, vec![&keys[1]], "one distinct key, not two");
        check_intoto(&env).unwrap();
        assert!(
            env.payload
                .starts_with(br#"{"_type":"https://in-toto.io/Statement/v1""#)
        );
    }

    #[test]
    fn gcb_invalid_signature_fails_before_the_payload_is_read() {
        let env = parse(&gcb_envelope(GCB_INVALID)).unwrap();
        // The tampered payload is not even JSON; verification refuses it without reading it.
        assert!(env.payload.ends_with(b"|"));
        assert!(verify(&env, &[key(GCB_KEY)]).is_empty());
    }

    #[test]
    fn kyverno_legacy_envelopes_verify_but_are_not_in_toto() {
        let keys = [key(KYVERNO_KEY)];
        assert_eq!(
            keys[0].key_id().to_string(),
            "23909c84110f5d3c88cec2e65c532e23a2bea75e944468f1451b65554c92761c"
        );
        for (raw, payload_type) in [
            (KYVERNO_1, "https://example.com/CodeReview/v1"),
            (KYVERNO_2, "cosign.sigstore.dev/attestation/v1"),
        ] {
            let env = parse(raw).unwrap();
            assert_eq!(env.payload_type, payload_type);
            assert_eq!(env.signatures[0].keyid, "");
            assert_eq!(verify(&env, &keys).len(), 1, "{payload_type}");
            let err = check_intoto(&env).unwrap_err();
            assert!(err.to_string().contains("payloadType"), "{err}");
            // Under the in-toto payload type the same signature is worthless.
            let mut relabelled = env.clone();
            relabelled.payload_type = PAYLOAD_TYPE_INTOTO.into();
            assert!(verify(&relabelled, &keys).is_empty());
        }
    }

    #[test]
    fn sign_parse_verify_round_trip_for_both_key_types() {
        let body = br#"{"_type":"https://in-toto.io/Statement/v1"}"#;
        for key_type in [KeyType::EcdsaP256, KeyType::Ed25519] {
            let signer = PrivateKey::generate(key_type).unwrap();
            let other = PrivateKey::generate(key_type).unwrap();
            let bytes = sign(PAYLOAD_TYPE_INTOTO, body, &signer).unwrap();
            let text = std::str::from_utf8(&bytes).unwrap();
            assert!(
                text.starts_with(r#"{"payloadType":"application/vnd.in-toto+json","payload":""#),
                "{text}"
            );
            let env = parse(&bytes).unwrap();
            assert_eq!(env.payload, body);
            assert_eq!(env.signatures[0].keyid, signer.key_id().to_string());
            let keys = [
                other.public_key().clone(),
                signer.public_key().clone(),
                signer.public_key().clone(),
            ];
            assert_eq!(verify(&env, &keys), vec![&keys[1]], "{key_type}");
            assert!(verify(&env, &keys[..1]).is_empty());
            assert!(verify(&env, &[]).is_empty());

            // A changed payload or payload type no longer verifies.
            let mut changed = env.clone();
            changed.payload.push(b' ');
            assert!(verify(&changed, &keys).is_empty());
            let mut retyped = env.clone();
            retyped.payload_type.push('x');
            assert!(verify(&retyped, &keys).is_empty());

            // keyid hints are ignored: a lying or empty hint changes nothing.
            let mut lying = env.clone();
            lying.signatures[0].keyid = other.key_id().to_string();
            assert_eq!(verify(&lying, &keys), vec![&keys[1]]);

            // Two signatures by one key count once; a second signer counts too.
            let mut twice = env.clone();
            twice.signatures.push(env.signatures[0].clone());
            assert_eq!(verify(&twice, &keys).len(), 1);
            let second = parse(&sign(PAYLOAD_TYPE_INTOTO, body, &other).unwrap()).unwrap();
            let mut both = env.clone();
            both.signatures.push(second.signatures[0].clone());
            both.signatures.reverse();
            assert_eq!(verify(&both, &keys), vec![&keys[0], &keys[1]]);
        }
    }

    #[test]
    fn base64_accepts_both_alphabets_with_or_without_padding() {
        let bytes: Vec<u8> = (0u8..=255).collect();
        for engine in [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ] {
            let text = engine.encode(&bytes);
            assert_eq!(decode_base64("x", &text).unwrap(), bytes, "{text}");
        }
        assert_eq!(decode_base64("x", "").unwrap(), b"");
        for bad in [
            "+-AA",       // two alphabets
            "aGVsbG8=\n", // whitespace
            "aGVs bG8=",
            "aGVsbG9=", // non-zero trailing bits
            "aGVsbG8==",
            "a",
            "aGVsbG8*",
        ] {
            assert!(decode_base64("x", bad).is_err(), "{bad:?}");
        }
    }

    fn envelope_with(payload_type: &str, payload: &str, signatures: &str) -> String {
        format!(r#"{{"payloadType":{payload_type},"payload":{payload},"signatures":{signatures}}}"#)
    }

    #[test]
    fn parse_rejects_malformed_envelopes() {
        let good_sigs = r#"[{"keyid":"k","sig":"MEUCIQ=="}]"#;
        let good = envelope_with(r#""t""#, r#""aGk=""#, good_sigs);
        let env = parse(good.as_bytes()).unwrap();
        assert_eq!(
            (env.payload_type.as_str(), env.payload.as_slice()),
            ("t", &b"hi"[..])
        );
        // Unknown fields are ignored; they are not signed.
        assert!(
            parse(br#"{"payloadType":"t","payload":"","signatures":[{"sig":"AA","x":1}],"y":2}"#)
                .is_ok()
        );

        let many = format!(
            "[{}]",
            vec![r#"{"sig":"AA"}"#; MAX_SIGNATURES + 1].join(",")
        );
        let max = format!("[{}]", vec![r#"{"sig":"AA"}"#; MAX_SIGNATURES].join(","));
        assert_eq!(
            parse(envelope_with(r#""t""#, r#""""#, &max).as_bytes())
                .unwrap()
                .signatures
                .len(),
            MAX_SIGNATURES
        );
        let cases: Vec<(&str, String)> = vec![
            ("not JSON", "not json".into()),
            ("array", "[]".into()),
            ("trailing data", format!("{good} {{}}")),
            ("no payloadType", format!(r#"{{"payload":"aGk=","signatures":{good_sigs}}}"#)),
            ("no payload", format!(r#"{{"payloadType":"t","signatures":{good_sigs}}}"#)),
            ("no signatures", r#"{"payloadType":"t","payload":"aGk="}"#.into()),
            ("payloadType null", envelope_with("null", r#""aGk=""#, good_sigs)),
            ("payloadType too long", envelope_with(&format!("{:?}", "t".repeat(MAX_PAYLOAD_TYPE_LEN + 1)), r#""aGk=""#, good_sigs)),
            ("payload number", envelope_with(r#""t""#, "1", good_sigs)),
            ("payload bad base64", envelope_with(r#""t""#, r#""a!""#, good_sigs)),
            ("signatures object", envelope_with(r#""t""#, r#""aGk=""#, r#"{"sig":"AA"}"#)),
            ("signatures empty", envelope_with(r#""t""#, r#""aGk=""#, "[]")),
            ("too many signatures", envelope_with(r#""t""#, r#""aGk=""#, &many)),
            ("signature not object", envelope_with(r#""t""#, r#""aGk=""#, r#"["AA"]"#)),
            ("sig missing", envelope_with(r#""t""#, r#""aGk=""#, r#"[{"keyid":"k"}]"#)),
            ("sig null", envelope_with(r#""t""#, r#""aGk=""#, r#"[{"sig":null}]"#)),
            ("sig empty", envelope_with(r#""t""#, r#""aGk=""#, r#"[{"sig":""}]"#)),
            ("sig bad base64", envelope_with(r#""t""#, r#""aGk=""#, r#"[{"sig":"@@"}]"#)),
            ("sig too long", envelope_with(r#""t""#, r#""aGk=""#, &format!(r#"[{{"sig":"{}"}}]"#, "A".repeat(MAX_SIG_LEN + 4)))),
            ("keyid number", envelope_with(r#""t""#, r#""aGk=""#, r#"[{"keyid":1,"sig":"AA"}]"#)),
            ("keyid too long", envelope_with(r#""t""#, r#""aGk=""#, &format!(r#"[{{"keyid":"{}","sig":"AA"}}]"#, "k".repeat(MAX_KEYID_LEN + 1)))),
            ("duplicate payloadType", r#"{"payloadType":"t","payloadType":"u","payload":"aGk=","signatures":[{"sig":"AA"}]}"#.into()),
            ("duplicate payload", r#"{"payloadType":"t","payload":"aGk=","payload":"","signatures":[{"sig":"AA"}]}"#.into()),
            ("duplicate sig", envelope_with(r#""t""#, r#""aGk=""#, r#"[{"sig":"AA","sig":"AB"}]"#)),
        ];
        for (what, input) in cases {
            assert!(parse(input.as_bytes()).is_err(), "{what}: {input}");
        }
        let big = envelope_with(
            r#""t""#,
            &format!("{:?}", "A".repeat(MAX_ENVELOPE_SIZE)),
            good_sigs,
        );
        assert!(matches!(
            parse(big.as_bytes()),
            Err(FormatError::TooLarge { .. })
        ));
    }

    #[test]
    fn errors_name_the_field() {
        let check = |doc: &str, expected: &str| {
            let err = parse(doc.as_bytes()).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(expected), "{doc}: {text}");
            err
        };
        assert!(matches!(
            check(
                r#"{"payloadType":"t","payloadType":"t","payload":"","signatures":[{"sig":"AA"}]}"#,
                "payloadType"
            ),
            FormatError::DuplicateKey { .. }
        ));
        assert!(matches!(
            check(
                r#"{"payloadType":"t","payload":"","signatures":[{"sig":"AA"},{"sig":"AA","keyid":"","keyid":""}]}"#,
                "signatures[1]"
            ),
            FormatError::DuplicateKey { .. }
        ));
        assert!(matches!(
            check(
                r#"{"payload":"","signatures":[{"sig":"AA"}]}"#,
                "payloadType"
            ),
            FormatError::MissingField { .. }
        ));
        assert!(matches!(
            check(
                r#"{"payloadType":"t","payload":"","signatures":[{"sig":"AA"},{"keyid":"k"}]}"#,
                "signatures[1].sig"
            ),
            FormatError::MissingField { .. }
        ));
        assert!(matches!(
            check(
                r#"{"payloadType":7,"payload":"","signatures":[{"sig":"AA"}]}"#,
                "payloadType"
            ),
            FormatError::InvalidField { .. }
        ));
        assert!(matches!(
            check(
                r#"{"payloadType":"t","payload":"","signatures":[{"sig":"AA","keyid":[]}]}"#,
                "signatures[0].keyid"
            ),
            FormatError::InvalidField { .. }
        ));
        assert!(matches!(
            check(
                r#"{"payloadType":"t","payload":"","signatures":"AA"}"#,
                "signatures"
            ),
            FormatError::InvalidField { .. }
        ));
        assert!(matches!(
            check("[]", "the document"),
            FormatError::InvalidField { .. }
        ));
        assert!(matches!(
            check(
                r#"{"payloadType":"t","payload":"","signatures":[{"sig":"AA"}"#,
                "JSON"
            ),
            FormatError::Json { .. }
        ));
        assert!(matches!(
            check(
                r#"{"payloadType":"t","payload":"","signatures":[{"sig":"AA"}]} x"#,
                "JSON"
            ),
            FormatError::Json { .. }
        ));
    }

    #[test]
    fn hostile_envelopes_are_refused_without_building_them() {
        // A million signatures: refused at the 101st, not after reading them all.
        let sigs = format!("[{}]", vec![r#"{"sig":"AA"}"#; 1_000_000].join(","));
        let doc = format!(r#"{{"payloadType":"t","payload":"","signatures":{sigs}}}"#);
        let err = parse(doc.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("more than 100"), "{err}");
        // A 15 MiB unknown field of tiny values is skipped, not materialised.
        let junk = format!("[{}]", vec!["[]"; 5_000_000].join(","));
        // Unknown fields, even repeated ones, are skipped: nobody reads them.
        let small = r#"{"payloadType":"t","payload":"aGk=","x":{"a":[1,{"b":null}]},"signatures":[{"sig":"AA","y":[[]],"y":1}],"x":2}"#;
        assert!(parse(small.as_bytes()).is_ok());
        let doc = format!(
            r#"{{"payloadType":"t","payload":"aGk=","x":{junk},"signatures":[{{"sig":"AA"}}]}}"#
        );
        assert!(doc.len() > 14 << 20 && doc.len() < MAX_ENVELOPE_SIZE);
        let started = std::time::Instant::now();
        assert_eq!(parse(doc.as_bytes()).unwrap().payload, b"hi");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // Deep nesting is a JSON error, not a stack overflow.
        let deep = format!(
            r#"{{"payloadType":"t","payload":"","x":{}}}"#,
            "[".repeat(100_000)
        );
        assert!(matches!(
            parse(deep.as_bytes()),
            Err(FormatError::Json { .. })
        ));
    }

    #[test]
    fn constants() {
        assert_eq!(PAYLOAD_TYPE_INTOTO, "application/vnd.in-toto+json");
        assert_eq!(MEDIA_TYPE, "application/vnd.dsse.envelope.v1+json");
    }
}
