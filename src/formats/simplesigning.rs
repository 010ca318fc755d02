//! cosign's "simple signing" payload: the blob a legacy `sha256-<hex>.sig` signature signs.
//!
//! ```text
//! {"critical":{"identity":{"docker-reference":REPO},"image":{"docker-manifest-digest":DIGEST},
//!  "type":"cosign container image signature"},"optional":ANNOTATIONS|null}
//! ```
//!
//! Stored as one layer of the signature manifest with media type [`MEDIA_TYPE`]; the layer's
//! [`SIGNATURE_ANNOTATION`] holds the standard base64 of the signature over the exact payload
//! bytes. See cosign `specs/SIGNATURE_SPEC.md` and sigstore/sigstore `pkg/signature/payload`.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use super::FormatError;

/// Media type of the payload layer.
pub const MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Layer annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The value of `critical.type`.
pub const TYPE: &str = "cosign container image signature";
/// Largest payload we parse; cosign's are a few hundred bytes plus annotations.
pub const MAX_PAYLOAD_SIZE: usize = 64 * 1024;
/// Largest signature annotation we decode (a P-256 DER signature is at most 72 bytes).
pub const MAX_SIGNATURE_ANNOTATION_LEN: usize = 4096;

const WHAT: &str = "simple-signing payload";

/// The checked content of a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// `critical.identity.docker-reference`: the repository the signer named (not checked here).
    pub docker_reference: String,
    /// `critical.image.docker-manifest-digest`: `sha256:` + 64 lowercase hex.
    pub manifest_digest: String,
    /// `optional`: the signer's annotations; `None` when `null` or absent.
    pub optional: Option<BTreeMap<String, Value>>,
}

/// Builds the payload bytes exactly as cosign lays them out: compact JSON, keys in this order,
/// `optional` = the annotations as an object with sorted keys (Go marshals maps sorted), or
/// `null` when `annotations` is `None`. `Some` of an empty map gives `{}`.
///
/// Strings are escaped as Go's `encoding/json` does (including `<`, `>`, `&`, U+2028 and U+2029
/// as `\u` escapes), so the same inputs give the same bytes as cosign.
pub fn build(
    docker_reference: &str,
    manifest_digest: &str,
    annotations: Option<&BTreeMap<String, String>>,
) -> Vec<u8> {
    let mut out = String::with_capacity(256);
    out.push_str(r#"{"critical":{"identity":{"docker-reference":"#);
    push_json_string(&mut out, docker_reference);
    out.push_str(r#"},"image":{"docker-manifest-digest":"#);
    push_json_string(&mut out, manifest_digest);
    out.push_str(r#"},"type":"#);
    push_json_string(&mut out, TYPE);
    out.push_str(r#"},"optional":"#);
    match annotations {
        None => out.push_str("null"),
        Some(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_string(&mut out, k);
                out.push(':');
                push_json_string(&mut out, v);
            }
            out.push('}');
        }
    }
    out.push('}');
    out.into_bytes()
}

/// Appends `s` as a JSON string literal, escaped like Go's `json.Marshal` (Go 1.22+).
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' | '\u{0}'..='\u{1f}' => {
                let code = u32::from(c);
                out.push_str("\\u");
                for shift in [12u32, 8, 4, 0] {
                    out.push(char::from_digit((code >> shift) & 0xf, 16).unwrap_or('0'));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn field_error(field: &str, reason: impl Into<String>) -> FormatError {
    FormatError::InvalidField {
        what: WHAT,
        field: field.into(),
        reason: reason.into(),
    }
}

/// Rejects keys other than `allowed` in `object` (named `name`).
fn only_keys(object: &Map<String, Value>, name: &str, allowed: &[&str]) -> Result<(), FormatError> {
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(FormatError::UnknownField {
            what: WHAT,
            field: join(name, k),
        }),
        None => Ok(()),
    }
}

/// `name.key`, or `key` at the top level.
fn join(name: &str, key: &str) -> String {
    if name.is_empty() {
        key.to_owned()
    } else {
        format!("{name}.{key}")
    }
}

fn get<'v>(
    object: &'v Map<String, Value>,
    name: &str,
    key: &str,
) -> Result<&'v Value, FormatError> {
    object.get(key).ok_or_else(|| FormatError::MissingField {
        what: WHAT,
        field: join(name, key),
    })
}

fn get_object<'v>(
    object: &'v Map<String, Value>,
    name: &str,
    key: &str,
) -> Result<&'v Map<String, Value>, FormatError> {
    get(object, name, key)?
        .as_object()
        .ok_or_else(|| field_error(&join(name, key), "is not a JSON object"))
}

fn get_string<'v>(
    object: &'v Map<String, Value>,
    name: &str,
    key: &str,
) -> Result<&'v str, FormatError> {
    get(object, name, key)?
        .as_str()
        .ok_or_else(|| field_error(&join(name, key), "is not a JSON string"))
}

/// True for `sha256:` followed by exactly 64 lowercase hex digits.
fn is_sha256_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Parses and checks a payload (at most [`MAX_PAYLOAD_SIZE`] bytes).
///
/// Rejected: anything but one JSON object; a duplicate key at any depth; `critical.type` other
/// than [`TYPE`]; a digest that is not `sha256:` + 64 lowercase hex; a missing or non-string
/// `docker-reference`; `optional` that is neither an object nor `null`; and any key not in the
/// format at the top level or anywhere under `critical` (the simple-signing spec's rule that
/// unknown critical fields must be refused; cosign only ever writes these keys). `optional` may
/// hold anything.
pub fn parse(bytes: &[u8]) -> Result<Payload, FormatError> {
    let value = super::parse_json_document(WHAT, bytes, MAX_PAYLOAD_SIZE)?;
    let top = value
        .as_object()
        .ok_or_else(|| field_error("the document", "is not a JSON object"))?;
    only_keys(top, "", &["critical", "optional"])?;
    let critical = get_object(top, "", "critical")?;
    only_keys(critical, "critical", &["identity", "image", "type"])?;

    let kind = get_string(critical, "critical", "type")?;
    if kind != TYPE {
        return Err(field_error(
            "critical.type",
            format!("is {kind:?}, expected {TYPE:?}"),
        ));
    }
    let identity = get_object(critical, "critical", "identity")?;
    only_keys(identity, "critical.identity", &["docker-reference"])?;
    let docker_reference = get_string(identity, "critical.identity", "docker-reference")?;

    let image = get_object(critical, "critical", "image")?;
    only_keys(image, "critical.image", &["docker-manifest-digest"])?;
    let manifest_digest = get_string(image, "critical.image", "docker-manifest-digest")?;
    if !is_sha256_digest(manifest_digest) {
        return Err(field_error(
            "critical.image.docker-manifest-digest",
            "is not sha256: followed by 64 lowercase hex digits",
        ));
    }

    let optional = match top.get("optional") {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(
            map.iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
        ),
        Some(_) => return Err(field_error("optional", "is neither a JSON object nor null")),
    };

    Ok(Payload {
        docker_reference: docker_reference.to_owned(),
        manifest_digest: manifest_digest.to_owned(),
        optional,
    })
}

/// Decodes the value of [`SIGNATURE_ANNOTATION`].
///
/// Strict standard base64 (RFC 4648 section 4 alphabet, `=` padding required, non-zero trailing
/// bits rejected; no URL-safe alphabet, no whitespace other than line breaks). `\n` and `\r` are
/// removed first, because Go's `base64.StdEncoding`, which cosign uses to decode this value,
/// skips them; so does every cosign-aware verifier, and a signature with a line break in its
/// annotation is one cosign accepts. Go also tolerates non-zero trailing bits; we do not, so a
/// signature whose base64 was altered in those bits (a second spelling of the same bytes) is
/// refused: cosign itself always writes canonical base64.
pub fn decode_signature_annotation(s: &str) -> Result<Vec<u8>, FormatError> {
    const WHAT_SIG: &str = "signature annotation";
    if s.len() > MAX_SIGNATURE_ANNOTATION_LEN {
        return Err(FormatError::TooLarge {
            what: WHAT_SIG,
            limit: MAX_SIGNATURE_ANNOTATION_LEN,
            actual: s.len(),
        });
    }
    let compact: String = s.chars().filter(|&c| c != '\n' && c != '\r').collect();
    if compact.is_empty() {
        return Err(FormatError::Base64 {
            what: WHAT_SIG,
            reason: "it is empty".into(),
        });
    }
    STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| FormatError::Base64 {
            what: WHAT_SIG,
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIGSTORE_RS_PAYLOAD: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/cosign-signatures/sigstore-rs/ecdsa/payload.json"
    ));
    const SIGSTORE_RS_SIG: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/cosign-signatures/sigstore-rs/ecdsa/payload.sig"
    ));
    const CONNAISSEUR_PAYLOAD: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/cosign-signatures/connaisseur/blobs/sha256-7248e52a7da336ff63192f2c0a8f12562b0d5368e9cde6ab292cbb4604074f28.json"
    ));
    const DIGEST: &str = "sha256:f3cfc9d0dbf931d3db4685ec659b7ac68e2a578219da4aae65427886e649b06b";

    #[test]
    fn parses_cosign_payloads_and_rebuilds_them_byte_for_byte() {
        let p = parse(SIGSTORE_RS_PAYLOAD).unwrap();
        assert_eq!(p.docker_reference, "registry-testing.svc.lan/busybox");
        assert_eq!(p.manifest_digest, DIGEST);
        assert_eq!(p.optional, None);
        assert_eq!(
            build(&p.docker_reference, &p.manifest_digest, None),
            SIGSTORE_RS_PAYLOAD
        );

        let p = parse(CONNAISSEUR_PAYLOAD).unwrap();
        assert_eq!(
            p.docker_reference,
            "index.docker.io/securesystemsengineering/testimage"
        );
        assert_eq!(
            p.manifest_digest,
            "sha256:bfec161fecb0a887df7cb85e4da327c65986ccda7060cf3cd92171c6c90d7533"
        );
        assert_eq!(
            build(&p.docker_reference, &p.manifest_digest, None),
            CONNAISSEUR_PAYLOAD
        );
    }

    #[test]
    fn build_lays_out_annotations_like_cosign() {
        let mut ann = BTreeMap::new();
        ann.insert("sig".to_owned(), "2".to_owned());
        ann.insert("commit".to_owned(), "abc".to_owned());
        let out = build("example.com/app", DIGEST, Some(&ann));
        let expected = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"example.com/app"}},"image":{{"docker-manifest-digest":"{DIGEST}"}},"type":"cosign container image signature"}},"optional":{{"commit":"abc","sig":"2"}}}}"#
        );
        assert_eq!(String::from_utf8(out.clone()).unwrap(), expected);
        let p = parse(&out).unwrap();
        let optional = p.optional.unwrap();
        assert_eq!(optional["commit"], "abc");
        assert_eq!(optional["sig"], "2");

        let empty = build("r", DIGEST, Some(&BTreeMap::new()));
        assert!(empty.ends_with(br#","optional":{}}"#));
        assert_eq!(parse(&empty).unwrap().optional, Some(BTreeMap::new()));
    }

    #[test]
    fn build_escapes_strings_like_go() {
        let mut ann = BTreeMap::new();
        let tricky = "a\"b\\c\n\r\t\u{8}\u{c}\u{1}\u{1f}<>&\u{2028}\u{2029}é😀";
        ann.insert(tricky.to_owned(), tricky.to_owned());
        let out = build("r", DIGEST, Some(&ann));
        let text = String::from_utf8(out.clone()).unwrap();
        let escaped = r#""a\"b\\c\n\r\t\b\f\u0001\u001f\u003c\u003e\u0026\u2028\u2029é😀""#;
        assert!(text.contains(&format!("{escaped}:{escaped}")), "{text}");
        // And it parses back to the same strings.
        let p = parse(&out).unwrap();
        assert_eq!(p.optional.unwrap()[tricky], tricky);
    }

    fn payload_with(critical: &str, optional: &str) -> String {
        format!(r#"{{"critical":{critical},"optional":{optional}}}"#)
    }

    fn critical(reference: &str, image: &str, kind: &str) -> String {
        format!(r#"{{"identity":{reference},"image":{image},"type":{kind}}}"#)
    }

    #[test]
    fn rejects_malformed_payloads() {
        let ident = r#"{"docker-reference":"r"}"#;
        let image = format!(r#"{{"docker-manifest-digest":"{DIGEST}"}}"#);
        let kind = format!("{TYPE:?}");
        let good = payload_with(&critical(ident, &image, &kind), "null");
        assert!(parse(good.as_bytes()).is_ok());
        // Without "optional" at all is fine too.
        let no_optional = format!(r#"{{"critical":{}}}"#, critical(ident, &image, &kind));
        assert_eq!(parse(no_optional.as_bytes()).unwrap().optional, None);

        let long_hex = format!("{DIGEST}0");
        let cases: Vec<(&str, String)> = vec![
            ("not JSON", "not json".into()),
            ("empty", String::new()),
            ("an array", "[]".into()),
            ("a string", r#""critical""#.into()),
            ("null", "null".into()),
            ("trailing data", format!("{good} {{}}")),
            ("two documents", format!("{good}{good}")),
            (
                "duplicate docker-manifest-digest",
                good.replace(
                    &image,
                    &format!(
                        r#"{{"docker-manifest-digest":"{DIGEST}","docker-manifest-digest":"sha256:{}"}}"#,
                        "0".repeat(64)
                    ),
                ),
            ),
            (
                "duplicate critical",
                format!(
                    r#"{{"critical":{},"critical":{},"optional":null}}"#,
                    critical(ident, &image, &kind),
                    critical(ident, &image, &kind)
                ),
            ),
            ("duplicate type", good.replace(r#","type":"#, r#","type":"x","type":"#)),
            ("duplicate key inside optional", payload_with(&critical(ident, &image, &kind), r#"{"a":1,"a":2}"#)),
            ("wrong type", payload_with(&critical(ident, &image, r#""atomic container signature""#), "null")),
            ("type not a string", payload_with(&critical(ident, &image, "1"), "null")),
            ("type missing", payload_with(&format!(r#"{{"identity":{ident},"image":{image}}}"#), "null")),
            ("critical missing", r#"{"optional":null}"#.into()),
            ("critical not an object", payload_with("[]", "null")),
            ("identity missing", payload_with(&format!(r#"{{"image":{image},"type":{kind}}}"#), "null")),
            ("reference missing", payload_with(&critical("{}", &image, &kind), "null")),
            ("reference not a string", payload_with(&critical(r#"{"docker-reference":null}"#, &image, &kind), "null")),
            ("image missing", payload_with(&format!(r#"{{"identity":{ident},"type":{kind}}}"#), "null")),
            ("digest missing", payload_with(&critical(ident, "{}", &kind), "null")),
            ("digest uppercase", good.replace(DIGEST, &DIGEST.to_uppercase().replace("SHA256", "sha256"))),
            ("digest 63 hex", good.replace(DIGEST, &DIGEST[..DIGEST.len() - 1])),
            ("digest 65 hex", good.replace(DIGEST, &long_hex)),
            ("digest sha512", good.replace("sha256:", "sha512:")),
            ("digest without algorithm", good.replace("sha256:", "")),
            ("digest with space", good.replace(DIGEST, &format!("{DIGEST} "))),
            ("unknown critical field", payload_with(&format!(r#"{{"identity":{ident},"image":{image},"type":{kind},"extra":1}}"#), "null")),
            ("unknown identity field", payload_with(&critical(r#"{"docker-reference":"r","x":1}"#, &image, &kind), "null")),
            ("unknown image field", payload_with(&critical(ident, &format!(r#"{{"docker-manifest-digest":"{DIGEST}","x":1}}"#), &kind), "null")),
            ("unknown top-level field", format!(r#"{{"critical":{},"optional":null,"x":1}}"#, critical(ident, &image, &kind))),
            ("optional a string", payload_with(&critical(ident, &image, &kind), r#""x""#)),
            ("optional an array", payload_with(&critical(ident, &image, &kind), "[]")),
        ];
        for (what, input) in cases {
            assert!(parse(input.as_bytes()).is_err(), "{what}: {input}");
        }

        match parse(
            good.replace(
                &image,
                &format!(
                    r#"{{"docker-manifest-digest":"{DIGEST}","docker-manifest-digest":"{DIGEST}"}}"#
                ),
            )
            .as_bytes(),
        ) {
            Err(FormatError::DuplicateKey { key, path, .. }) => {
                assert_eq!(
                    (key.as_str(), path.as_str()),
                    ("docker-manifest-digest", "critical.image")
                )
            }
            other => panic!("{other:?}"),
        }
        match parse(payload_with(&critical(ident, &image, r#""x""#), "null").as_bytes()) {
            Err(e @ FormatError::InvalidField { .. }) => {
                assert!(e.to_string().contains("critical.type"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        let big = payload_with(
            &critical(ident, &image, &kind),
            &format!(r#"{{"pad":"{}"}}"#, "x".repeat(MAX_PAYLOAD_SIZE)),
        );
        assert!(matches!(
            parse(big.as_bytes()),
            Err(FormatError::TooLarge { .. })
        ));
    }

    #[test]
    fn signature_annotation_base64_is_strict() {
        let sig = decode_signature_annotation(SIGSTORE_RS_SIG).unwrap();
        assert_eq!(sig.len(), 71);
        assert_eq!(sig[0], 0x30);
        // Line breaks are skipped, as Go's StdEncoding does.
        let wrapped = format!("{}\n{}\r\n", &SIGSTORE_RS_SIG[..20], &SIGSTORE_RS_SIG[20..]);
        assert_eq!(decode_signature_annotation(&wrapped).unwrap(), sig);

        let last_group = &SIGSTORE_RS_SIG[SIGSTORE_RS_SIG.len() - 4..];
        assert_eq!(last_group, "Jh8=");
        let bad_cases = [
            (
                "no padding",
                SIGSTORE_RS_SIG.trim_end_matches('=').to_owned(),
            ),
            (
                "URL-safe alphabet",
                SIGSTORE_RS_SIG.replace('+', "-").replace('/', "_"),
            ),
            (
                "space inside",
                format!("{} {}", &SIGSTORE_RS_SIG[..20], &SIGSTORE_RS_SIG[20..]),
            ),
            ("tab", format!("{SIGSTORE_RS_SIG}\t")),
            ("trailing space", format!("{SIGSTORE_RS_SIG} ")),
            (
                "non-zero trailing bits",
                format!("{}Jh9=", &SIGSTORE_RS_SIG[..SIGSTORE_RS_SIG.len() - 4]),
            ),
            ("extra padding", format!("{SIGSTORE_RS_SIG}=")),
            ("empty", String::new()),
            ("only newlines", "\n\r\n".into()),
            ("too long", "A".repeat(MAX_SIGNATURE_ANNOTATION_LEN + 4)),
        ];
        for (what, input) in bad_cases {
            assert!(
                decode_signature_annotation(&input).is_err(),
                "{what}: {input:?}"
            );
        }
    }

    #[test]
    fn constants() {
        assert_eq!(
            MEDIA_TYPE,
            "application/vnd.dev.cosign.simplesigning.v1+json"
        );
        assert_eq!(SIGNATURE_ANNOTATION, "dev.cosignproject.cosign/signature");
        assert_eq!(TYPE, "cosign container image signature");
    }
}
