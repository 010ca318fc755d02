//! in-toto Statement v1 (in-toto/attestation `spec/v1/statement.md`): what a DSSE envelope
//! with payload type `application/vnd.in-toto+json` says about which artifacts.
//!
//! ```text
//! {"_type":"https://in-toto.io/Statement/v1","subject":[{"name":…,"digest":{"sha256":…}}],
//!  "predicateType":…,"predicate":{…}}
//! ```
//!
//! Parse a statement only from a payload whose envelope signature was verified first: [`parse`]
//! reads the whole document into memory (up to [`MAX_STATEMENT_SIZE`] bytes) to check every key,
//! which is fine for signed input and not meant for anyone's bytes.
//! Predicate types are compared by exact string equality, after [`resolve_type_alias`] has
//! expanded a short name the user typed: no prefix, case or trailing-slash matching.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::FormatError;

/// `_type` of an in-toto Statement v1, the only version accepted.
pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
/// Largest statement we parse (the largest payload a [`super::dsse`] envelope can carry).
pub const MAX_STATEMENT_SIZE: usize = super::dsse::MAX_ENVELOPE_SIZE;
/// Most subjects one statement may list.
pub const MAX_SUBJECTS: usize = 1000;
/// Most digests one subject may carry.
pub const MAX_DIGESTS: usize = 16;
/// Longest digest value (hex characters) we accept: SHA-512 and friends are 128.
pub const MAX_DIGEST_LEN: usize = 256;

const WHAT: &str = "in-toto statement";

/// Short names accepted for predicate types, and what they stand for (cosign's names).
pub const TYPE_ALIASES: &[(&str, &str)] = &[
    ("slsaprovenance", "https://slsa.dev/provenance/v1"),
    ("cyclonedx", "https://cyclonedx.org/bom"),
    ("spdx", "https://spdx.dev/Document"),
    ("vuln", "https://cosign.sigstore.dev/attestation/vuln/v1"),
];

/// One subject: an artifact the statement is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// The subject's name (empty when absent). Informational only: binding is by digest.
    pub name: String,
    /// Algorithm name to lowercase hex digest (1 to [`MAX_DIGESTS`] entries).
    pub digest: BTreeMap<String, String>,
}

/// A checked Statement v1.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// The artifacts (1 to [`MAX_SUBJECTS`]).
    pub subject: Vec<Subject>,
    /// `predicateType`, exactly as written (non-empty).
    pub predicate_type: String,
    /// `predicate`: a JSON object, or `Null` when absent.
    pub predicate: Value,
}

/// Expands a short predicate type name (`slsaprovenance`, `cyclonedx`, `spdx`, `vuln`; exact,
/// case-sensitive) to its URI; anything else is returned unchanged.
pub fn resolve_type_alias(name: &str) -> &str {
    TYPE_ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name, |(_, uri)| uri)
}

/// True if a statement's `predicateType` is the `requested` one (a URI or a short name):
/// exact string equality after [`resolve_type_alias`].
pub fn predicate_type_matches(predicate_type: &str, requested: &str) -> bool {
    predicate_type == resolve_type_alias(requested)
}

/// Builds a statement about one artifact as compact JSON, keys in the order `_type`, `subject`,
/// `predicateType`, `predicate` (the predicate's own keys keep their order).
///
/// `sha256_hex` is the artifact's SHA-256 as 64 lowercase hex digits, without `sha256:`; a
/// value that is not will give a statement that [`parse`] accepts but [`Statement::binds`]
/// never matches.
pub fn build(
    subject_name: &str,
    sha256_hex: &str,
    predicate_type: &str,
    predicate: &Value,
) -> Vec<u8> {
    let statement = serde_json::json!({
        "_type": STATEMENT_V1,
        "subject": [{"name": subject_name, "digest": {"sha256": sha256_hex}}],
        "predicateType": predicate_type,
        "predicate": predicate,
    });
    statement.to_string().into_bytes()
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

fn get_str<'v>(
    object: &'v Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<&'v str, FormatError> {
    object
        .get(key)
        .ok_or_else(|| missing(field))?
        .as_str()
        .ok_or_else(|| field_error(field, "is not a JSON string"))
}

/// True for a non-empty string of lowercase hex digits.
pub(crate) fn is_lower_hex(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Parses and checks a statement of at most [`MAX_STATEMENT_SIZE`] bytes.
///
/// Rejected: anything but one JSON object; a duplicate key at any depth (so two `predicateType`
/// or two `subject` keys cannot be read differently by two readers); `_type` other than
/// exactly [`STATEMENT_V1`] (v0.1 included); a missing, empty or non-string `predicateType`;
/// `subject` that is not an array of 1 to [`MAX_SUBJECTS`] objects; a subject `name` that is not a
/// string; a subject `digest` that is not an object of 1 to [`MAX_DIGESTS`] entries, each a
/// non-empty algorithm name with a lowercase hex value of at most [`MAX_DIGEST_LEN`]
/// characters; `predicate` that is neither an object nor absent. Unknown fields are ignored,
/// as the in-toto spec asks of consumers.
pub fn parse(bytes: &[u8]) -> Result<Statement, FormatError> {
    let value = super::parse_json_document(WHAT, bytes, MAX_STATEMENT_SIZE)?;
    let Value::Object(mut top) = value else {
        return Err(field_error("the document", "is not a JSON object"));
    };

    let kind = get_str(&top, "_type", "_type")?;
    if kind != STATEMENT_V1 {
        return Err(field_error(
            "_type",
            format!(
                "is {:?}, expected {STATEMENT_V1:?}",
                kind.chars().take(200).collect::<String>()
            ),
        ));
    }

    let predicate_type = get_str(&top, "predicateType", "predicateType")?;
    if predicate_type.is_empty() {
        return Err(field_error("predicateType", "is empty"));
    }
    let predicate_type = predicate_type.to_owned();

    let subjects = top
        .get("subject")
        .ok_or_else(|| missing("subject"))?
        .as_array()
        .ok_or_else(|| field_error("subject", "is not a JSON array"))?;
    if subjects.is_empty() {
        return Err(field_error("subject", "is empty"));
    }
    if subjects.len() > MAX_SUBJECTS {
        return Err(field_error(
            "subject",
            format!(
                "has {} entries, more than the limit of {MAX_SUBJECTS}",
                subjects.len()
            ),
        ));
    }
    let mut subject = Vec::with_capacity(subjects.len());
    for (i, entry) in subjects.iter().enumerate() {
        subject.push(parse_subject(entry, &format!("subject[{i}]"))?);
    }

    let predicate = match top.remove("predicate") {
        None => Value::Null,
        Some(v @ Value::Object(_)) => v,
        Some(_) => return Err(field_error("predicate", "is not a JSON object")),
    };

    Ok(Statement {
        subject,
        predicate_type,
        predicate,
    })
}

fn parse_subject(entry: &Value, name: &str) -> Result<Subject, FormatError> {
    let entry = entry
        .as_object()
        .ok_or_else(|| field_error(name, "is not a JSON object"))?;
    let subject_name = match entry.get("name") {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(field_error(&format!("{name}.name"), "is not a JSON string")),
    };
    let field = format!("{name}.digest");
    let digests = entry
        .get("digest")
        .ok_or_else(|| missing(&field))?
        .as_object()
        .ok_or_else(|| field_error(&field, "is not a JSON object"))?;
    if digests.is_empty() {
        return Err(field_error(&field, "is empty"));
    }
    if digests.len() > MAX_DIGESTS {
        return Err(field_error(
            &field,
            format!(
                "has {} entries, more than the limit of {MAX_DIGESTS}",
                digests.len()
            ),
        ));
    }
    let mut digest = BTreeMap::new();
    for (algorithm, value) in digests {
        if algorithm.is_empty() || algorithm.len() > 64 {
            return Err(field_error(
                &field,
                "has an algorithm name that is empty or longer than 64 bytes",
            ));
        }
        let value = value
            .as_str()
            .ok_or_else(|| field_error(&format!("{field}.{algorithm}"), "is not a JSON string"))?;
        if value.len() > MAX_DIGEST_LEN || !is_lower_hex(value) {
            return Err(field_error(
                &format!("{field}.{algorithm}"),
                format!("is not 1 to {MAX_DIGEST_LEN} lowercase hex digits"),
            ));
        }
        digest.insert(algorithm.clone(), value.to_owned());
    }
    Ok(Subject {
        name: subject_name,
        digest,
    })
}

impl Statement {
    /// True if some subject's `sha256` digest equals `sha256_hex`, which must itself be exactly
    /// 64 lowercase hex digits (no `sha256:` prefix). Nothing else binds: not another
    /// algorithm, not a prefix, not another case.
    pub fn binds(&self, sha256_hex: &str) -> bool {
        sha256_hex.len() == 64
            && is_lower_hex(sha256_hex)
            && self
                .subject
                .iter()
                .any(|s| s.digest.get("sha256").is_some_and(|d| d == sha256_hex))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::dsse;
    use serde_json::json;

    const DIGEST: &str = "7e9b6e7ba2842c91cf49f3e214d04a7a496f8214356f41d81a6e6dcad11f11e3";
    const OTHER: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
    const SLSA_BUNDLE: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/attestations/slsa-github-generator/v1-delegator-v2.1.0/binary-linux-amd64-push-v14.build.slsa"
    ));
    const KYVERNO_1: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/attestations/kyverno-legacy-cosign/envelope-1-codereview.json"
    ));

    fn statement(subject: &str, predicate_type: &str) -> String {
        format!(
            r#"{{"_type":"{STATEMENT_V1}","subject":{subject},"predicateType":"{predicate_type}","predicate":{{}}}}"#
        )
    }

    fn one_subject(digest: &str) -> String {
        format!(r#"[{{"name":"app","digest":{digest}}}]"#)
    }

    #[test]
    fn build_and_parse_round_trip() {
        let predicate = json!({"z": 1, "a": {"nested": [1, 2]}});
        let bytes = build(
            "registry.example/app",
            DIGEST,
            "https://slsa.dev/provenance/v1",
            &predicate,
        );
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"_type":"https://in-toto.io/Statement/v1","subject":[{{"name":"registry.example/app","digest":{{"sha256":"{DIGEST}"}}}}],"predicateType":"https://slsa.dev/provenance/v1","predicate":{{"z":1,"a":{{"nested":[1,2]}}}}}}"#
            )
        );
        let s = parse(&bytes).unwrap();
        assert_eq!(s.predicate_type, "https://slsa.dev/provenance/v1");
        assert_eq!(s.predicate, predicate);
        assert_eq!(s.subject.len(), 1);
        assert_eq!(s.subject[0].name, "registry.example/app");
        assert_eq!(s.subject[0].digest["sha256"], DIGEST);
        assert!(s.binds(DIGEST));
        assert!(!s.binds(OTHER));
    }

    #[test]
    fn subject_binding_is_exact_lowercase_sha256() {
        let parsed = |subject: &str| parse(statement(subject, "p").as_bytes());
        let s = parsed(&one_subject(&format!(r#"{{"sha256":"{DIGEST}"}}"#))).unwrap();
        assert!(s.binds(DIGEST));
        // A valid statement about another digest.
        assert!(!s.binds(OTHER));
        // What the caller asks for must itself be exact.
        for probe in [
            DIGEST.to_uppercase(),
            format!("sha256:{DIGEST}"),
            DIGEST[..63].to_owned(),
            format!("{DIGEST}0"),
            format!("{DIGEST} "),
            String::new(),
        ] {
            assert!(!s.binds(&probe), "{probe:?}");
        }
        // sha512 only: parses, binds nothing.
        let sha512 = "ab".repeat(64);
        let s = parsed(&one_subject(&format!(r#"{{"sha512":"{sha512}"}}"#))).unwrap();
        assert!(!s.binds(DIGEST));
        // Several subjects: any one binds.
        let two = format!(
            r#"[{{"name":"a","digest":{{"sha256":"{OTHER}"}}}},{{"name":"b","digest":{{"sha1":"{}","sha256":"{DIGEST}"}}}}]"#,
            "1".repeat(40)
        );
        assert!(parsed(&two).unwrap().binds(DIGEST));

        // Refused at parse: empty subject, uppercase or malformed digests.
        for subject in [
            "[]".to_owned(),
            one_subject(&format!(r#"{{"sha256":"{}"}}"#, DIGEST.to_uppercase())),
            one_subject(r#"{"sha256":""}"#),
            one_subject(r#"{"sha256":"xyz"}"#),
            one_subject(r#"{"sha256":1}"#),
            one_subject("{}"),
            one_subject("[]"),
        ] {
            assert!(parsed(&subject).is_err(), "{subject}");
        }
        // And a statement built by hand with those subjects binds nothing either.
        let by_hand = |digest: &[(&str, &str)]| Statement {
            subject: vec![Subject {
                name: "x".into(),
                digest: digest
                    .iter()
                    .map(|(a, d)| (a.to_string(), d.to_string()))
                    .collect(),
            }],
            predicate_type: "p".into(),
            predicate: Value::Null,
        };
        let upper = DIGEST.to_uppercase();
        for digest in [
            vec![],
            vec![("sha512", sha512.as_str())],
            vec![("sha256", upper.as_str())],
            vec![("sha256", &DIGEST[..63])],
            vec![("SHA256", DIGEST)],
            vec![("sha-256", DIGEST)],
        ] {
            assert!(!by_hand(&digest).binds(DIGEST), "{digest:?}");
            assert!(!by_hand(&digest).binds(&DIGEST[..63]), "{digest:?}");
        }
        let empty = Statement {
            subject: vec![],
            predicate_type: "p".into(),
            predicate: Value::Null,
        };
        assert!(!empty.binds(DIGEST));
    }

    #[test]
    fn statement_type_must_be_v1_exactly() {
        let subject = one_subject(&format!(r#"{{"sha256":"{DIGEST}"}}"#));
        for kind in [
            "https://in-toto.io/Statement/v0.1",
            "https://in-toto.io/Statement/v1/",
            "http://in-toto.io/Statement/v1",
            "https://in-toto.io/Statement/V1",
            "https://in-toto.io/Statement/v1evil",
            "https://in-toto.io/Statement/v2",
            "",
        ] {
            let doc = statement(&subject, "p").replace(STATEMENT_V1, kind);
            assert!(parse(doc.as_bytes()).is_err(), "{kind}");
        }
        let no_type = format!(r#"{{"subject":{subject},"predicateType":"p"}}"#);
        assert!(matches!(
            parse(no_type.as_bytes()),
            Err(FormatError::MissingField { .. })
        ));
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        let subject = one_subject(&format!(r#"{{"sha256":"{DIGEST}"}}"#));
        let cases = [
            (
                format!(
                    r#"{{"_type":"{STATEMENT_V1}","subject":{subject},"predicateType":"a","predicateType":"b","predicate":{{}}}}"#
                ),
                "predicateType",
            ),
            (
                format!(
                    r#"{{"_type":"{STATEMENT_V1}","subject":{subject},"subject":{subject},"predicateType":"a"}}"#
                ),
                "subject",
            ),
            (
                format!(
                    r#"{{"_type":"{STATEMENT_V1}","_type":"{STATEMENT_V1}","subject":{subject},"predicateType":"a"}}"#
                ),
                "_type",
            ),
            (
                statement(
                    &one_subject(&format!(r#"{{"sha256":"{OTHER}","sha256":"{DIGEST}"}}"#)),
                    "a",
                ),
                "sha256",
            ),
            (
                format!(
                    r#"{{"_type":"{STATEMENT_V1}","subject":{subject},"predicateType":"a","predicate":{{"builder":{{"id":"x","id":"y"}}}}}}"#
                ),
                "id",
            ),
        ];
        for (doc, key) in cases {
            match parse(doc.as_bytes()) {
                Err(FormatError::DuplicateKey { key: k, .. }) => assert_eq!(k, key, "{doc}"),
                other => panic!("{doc}: {other:?}"),
            }
        }
    }

    #[test]
    fn parse_rejects_malformed_statements() {
        let subject = one_subject(&format!(r#"{{"sha256":"{DIGEST}"}}"#));
        assert!(parse(statement(&subject, "p").as_bytes()).is_ok());
        // predicate may be absent; unknown fields are ignored; name may be absent.
        let minimal = format!(
            r#"{{"_type":"{STATEMENT_V1}","subject":[{{"digest":{{"sha256":"{DIGEST}"}}}}],"predicateType":"p","extra":[1]}}"#
        );
        let s = parse(minimal.as_bytes()).unwrap();
        assert_eq!(
            (s.subject[0].name.as_str(), &s.predicate),
            ("", &Value::Null)
        );

        let top = |rest: &str| format!(r#"{{"_type":"{STATEMENT_V1}",{rest}}}"#);
        let cases = [
            "not json".to_owned(),
            "[]".into(),
            "null".into(),
            statement(&subject, ""),
            top(&format!(r#""subject":{subject}"#)),
            top(&format!(r#""subject":{subject},"predicateType":1"#)),
            top(r#""predicateType":"p""#),
            top(r#""subject":{},"predicateType":"p""#),
            top(r#""subject":["x"],"predicateType":"p""#),
            top(&format!(
                r#""subject":{subject},"predicateType":"p","predicate":[]"#
            )),
            top(&format!(
                r#""subject":{subject},"predicateType":"p","predicate":"x""#
            )),
            top(&format!(
                r#""subject":[{{"name":1,"digest":{{"sha256":"{DIGEST}"}}}}],"predicateType":"p""#
            )),
            top(&format!(
                r#""subject":[{{"name":"n","digest":{{"":"{DIGEST}"}}}}],"predicateType":"p""#
            )),
            statement(
                &one_subject(&format!(
                    r#"{{"sha256":"{}"}}"#,
                    "a".repeat(MAX_DIGEST_LEN + 1)
                )),
                "p",
            ),
        ];
        for doc in cases {
            assert!(parse(doc.as_bytes()).is_err(), "{doc}");
        }
        // The payload of a valid signature that is not JSON (S5).
        assert!(matches!(parse(b"not json"), Err(FormatError::Json { .. })));
    }

    #[test]
    fn caps_on_subjects_and_digests() {
        let entry = format!(r#"{{"name":"n","digest":{{"sha256":"{DIGEST}"}}}}"#);
        let at_cap = format!("[{}]", vec![entry.as_str(); MAX_SUBJECTS].join(","));
        assert_eq!(
            parse(statement(&at_cap, "p").as_bytes())
                .unwrap()
                .subject
                .len(),
            MAX_SUBJECTS
        );
        let over = format!("[{}]", vec![entry.as_str(); MAX_SUBJECTS + 1].join(","));
        assert!(parse(statement(&over, "p").as_bytes()).is_err());

        let digests = |n: usize| {
            let d: Vec<String> = (0..n).map(|i| format!(r#""alg{i}":"{DIGEST}""#)).collect();
            one_subject(&format!("{{{}}}", d.join(",")))
        };
        assert!(parse(statement(&digests(MAX_DIGESTS), "p").as_bytes()).is_ok());
        assert!(parse(statement(&digests(MAX_DIGESTS + 1), "p").as_bytes()).is_err());

        // S10: 5000 subjects x 100 digests is refused on size before any JSON is read.
        let d: Vec<String> = (0..100).map(|i| format!(r#""a{i}":"{DIGEST}""#)).collect();
        let fat = format!(r#"{{"name":"n","digest":{{{}}}}}"#, d.join(","));
        let huge = format!("[{}]", vec![fat.as_str(); 5000].join(","));
        let started = std::time::Instant::now();
        assert!(matches!(
            parse(statement(&huge, "p").as_bytes()),
            Err(FormatError::TooLarge { .. })
        ));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn predicate_type_aliases_and_near_misses() {
        assert_eq!(
            resolve_type_alias("slsaprovenance"),
            "https://slsa.dev/provenance/v1"
        );
        assert_eq!(resolve_type_alias("cyclonedx"), "https://cyclonedx.org/bom");
        assert_eq!(resolve_type_alias("spdx"), "https://spdx.dev/Document");
        assert_eq!(
            resolve_type_alias("vuln"),
            "https://cosign.sigstore.dev/attestation/vuln/v1"
        );
        assert_eq!(
            resolve_type_alias("https://example.com/x"),
            "https://example.com/x"
        );
        assert_eq!(resolve_type_alias("SLSAProvenance"), "SLSAProvenance");
        assert_eq!(resolve_type_alias("custom"), "custom");

        assert!(predicate_type_matches(
            "https://slsa.dev/provenance/v1",
            "slsaprovenance"
        ));
        assert!(predicate_type_matches(
            "https://slsa.dev/provenance/v1",
            "https://slsa.dev/provenance/v1"
        ));
        for near_miss in [
            "https://slsa.dev/provenance/v0.2",
            "https://slsa.dev/provenance/v1/",
            "http://slsa.dev/provenance/v1",
            "https://slsa.dev/provenance/v1evil",
            "https://slsa.dev/provenance/V1",
            "https://slsa.dev/provenance/v1 ",
            "https://slsa.dev/provenance",
            "slsaprovenance",
            "",
        ] {
            assert!(
                !predicate_type_matches(near_miss, "slsaprovenance"),
                "{near_miss}"
            );
            assert!(
                !predicate_type_matches(near_miss, "https://slsa.dev/provenance/v1"),
                "{near_miss}"
            );
        }
        assert!(!predicate_type_matches(
            "https://cyclonedx.org/bom/v1.6",
            "cyclonedx"
        ));
        assert!(!predicate_type_matches(
            "https://spdx.dev/Document/v2.3",
            "spdx"
        ));
    }

    #[test]
    fn statement_v0_1_vectors_are_refused() {
        // slsa-github-generator v2.1.0 wraps a v0.1 statement in a Sigstore bundle.
        let bundle: Value = serde_json::from_slice(SLSA_BUNDLE).unwrap();
        let env = dsse::parse(bundle["dsseEnvelope"].to_string().as_bytes()).unwrap();
        dsse::check_intoto(&env).unwrap();
        let err = parse(&env.payload).unwrap_err();
        assert!(err.to_string().contains("Statement/v0.1"), "{err}");
        // The kyverno (cosign < 1.5) statements are v0.1 as well.
        let env = dsse::parse(KYVERNO_1).unwrap();
        assert!(parse(&env.payload).is_err());
    }
}
