//! CycloneDX 1.6 JSON (<https://cyclonedx.org/docs/1.6/json/>): the SBOM sealpack attaches with
//! predicate type [`PREDICATE_TYPE`], listing every file of an artifact with its SHA-256.
//!
//! The document is a function of its inputs only (no clock, no randomness): files are sorted by
//! path and the `serialNumber` is a name-based UUID (v5) of the artifact digest, so building the
//! SBOM of the same artifact twice gives the same bytes. (CycloneDX suggests a fresh serial for
//! every generated BOM; a serial per artifact is the deliberate trade for reproducible output.)
//! It validates against the official
//! `bom-1.6.schema.json` (checked by the test suite with a JSON Schema validator).

use serde_json::{Value, json};
use sha1::{Digest as _, Sha1};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use super::FormatError;
use super::intoto::is_lower_hex;

/// The predicate type of a CycloneDX SBOM attestation (cosign's `--type cyclonedx`).
pub const PREDICATE_TYPE: &str = "https://cyclonedx.org/bom";
/// The CycloneDX version written.
pub const SPEC_VERSION: &str = "1.6";
/// The name of the component property holding a file's size in bytes.
pub const SIZE_PROPERTY: &str = "sealpack:file:size";

const WHAT: &str = "CycloneDX SBOM";

/// The namespace of sealpack's name-based UUIDs (a random v4 UUID fixed once:
/// `37c71841-64b2-4964-96a3-1359f21ac2c1`).
const UUID_NAMESPACE: [u8; 16] = [
    0x37, 0xc7, 0x18, 0x41, 0x64, 0xb2, 0x49, 0x64, 0x96, 0xa3, 0x13, 0x59, 0xf2, 0x1a, 0xc2, 0xc1,
];

/// One file of an artifact.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileEntry {
    /// The path inside the artifact, `/`-separated, relative (e.g. `css/site.css`).
    pub path: String,
    /// The file's SHA-256, 64 lowercase hex digits.
    pub sha256: String,
    /// The file's size in bytes.
    pub size: u64,
    /// The file's SHA-1, 40 lowercase hex digits: optional for CycloneDX, required for SPDX
    /// (SPDX 2.3 section 8.4 mandates a SHA1 file checksum).
    pub sha1: Option<String>,
}

/// What [`parse_minimal`] reads from an SBOM, for display after verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BomSummary {
    /// `specVersion`, e.g. `1.6`.
    pub spec_version: String,
    /// `serialNumber`, when present and a string.
    pub serial_number: Option<String>,
    /// `metadata.component.name`, when present and a string.
    pub component_name: Option<String>,
    /// `metadata.component.version`, when present and a string.
    pub component_version: Option<String>,
    /// How many entries the top-level `components` array has (0 when absent).
    pub component_count: usize,
}

pub(crate) fn input_error(field: &str, reason: impl Into<String>) -> FormatError {
    FormatError::InvalidField {
        what: "SBOM input",
        field: field.into(),
        reason: reason.into(),
    }
}

/// A name-based UUID, version 5 (RFC 9562 section 5.5: SHA-1 of namespace and name), of `name`
/// in sealpack's namespace, as lowercase `8-4-4-4-12` hex.
pub(crate) fn uuid_v5(name: &[u8]) -> String {
    let mut hasher = Sha1::new();
    hasher.update(UUID_NAMESPACE);
    hasher.update(name);
    let hash: [u8; 20] = hasher.finalize().into();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x50;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The 64 hex digits of `digest`, given as `sha256:<hex>` or bare `<hex>` (lowercase).
pub(crate) fn artifact_sha256(digest: &str) -> Result<&str, FormatError> {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    if hex.len() == 64 && is_lower_hex(hex) {
        Ok(hex)
    } else {
        Err(input_error(
            "artifact digest",
            "is not sha256: followed by 64 lowercase hex digits",
        ))
    }
}

/// `timestamp` (RFC 3339) in UTC as `YYYY-MM-DDThh:mm:ssZ`, fractions of a second dropped: the
/// form SPDX requires and CycloneDX accepts.
pub(crate) fn normalize_timestamp(field: &str, timestamp: &str) -> Result<String, FormatError> {
    let parsed = OffsetDateTime::parse(timestamp, &Rfc3339).map_err(|_| {
        input_error(
            field,
            "is not an RFC 3339 timestamp (e.g. 2024-01-31T12:00:00Z)",
        )
    })?;
    // `checked_`: `to_offset` panics when the UTC time falls outside the years `time` supports.
    let utc = parsed
        .checked_to_offset(UtcOffset::UTC)
        .filter(|t| (0..=9999).contains(&t.year()))
        .ok_or_else(|| input_error(field, "is outside the years 0000 to 9999 in UTC"))?;
    Ok(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        utc.year(),
        u8::from(utc.month()),
        utc.day(),
        utc.hour(),
        utc.minute(),
        utc.second()
    ))
}

/// Checks `files` and returns them sorted by path (byte order). Rejected: an empty or
/// duplicate path, a SHA-256 that is not 64 lowercase hex, a SHA-1 that is not 40.
pub(crate) fn sorted_files(files: &[FileEntry]) -> Result<Vec<&FileEntry>, FormatError> {
    let mut sorted: Vec<&FileEntry> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    for (i, file) in sorted.iter().enumerate() {
        let field = format!("file {:?}", file.path);
        if file.path.is_empty() {
            return Err(input_error("file path", "is empty"));
        }
        if i > 0 && sorted[i - 1].path == file.path {
            return Err(input_error(&field, "is listed twice"));
        }
        if file.sha256.len() != 64 || !is_lower_hex(&file.sha256) {
            return Err(input_error(
                &field,
                "has a SHA-256 that is not 64 lowercase hex digits",
            ));
        }
        if let Some(sha1) = &file.sha1
            && (sha1.len() != 40 || !is_lower_hex(sha1))
        {
            return Err(input_error(
                &field,
                "has a SHA-1 that is not 40 lowercase hex digits",
            ));
        }
    }
    Ok(sorted)
}

/// Builds the SBOM of an artifact.
///
/// - `artifact_name`: the artifact (e.g. its repository), non-empty; `metadata.component.name`.
/// - `artifact_digest`: its manifest digest, `sha256:<64 hex>` (or the bare hex); the
///   component's SHA-256 hash and the seed of `serialNumber`.
/// - `version`: `metadata.component.version`, if any (e.g. the tag).
/// - `files`: one `file` component each, sorted by path, with its SHA-256 (and SHA-1 when
///   given) and its size as the [`SIZE_PROPERTY`] property.
/// - `timestamp`: `metadata.timestamp` (RFC 3339, written in UTC to the second), if any.
///
/// Errors on inputs that would make an invalid or ambiguous document: an empty name, a
/// malformed digest, hash or timestamp, an empty or duplicate path.
pub fn build(
    artifact_name: &str,
    artifact_digest: &str,
    version: Option<&str>,
    files: &[FileEntry],
    timestamp: Option<&str>,
) -> Result<Value, FormatError> {
    if artifact_name.is_empty() {
        return Err(input_error("artifact name", "is empty"));
    }
    let digest_hex = artifact_sha256(artifact_digest)?;
    let files = sorted_files(files)?;
    let artifact_ref = format!("sha256:{digest_hex}");

    let mut metadata = serde_json::Map::new();
    if let Some(ts) = timestamp {
        metadata.insert(
            "timestamp".into(),
            normalize_timestamp("timestamp", ts)?.into(),
        );
    }
    metadata.insert(
        "tools".into(),
        json!({"components": [{
            "type": "application",
            "name": "sealpack",
            "version": env!("CARGO_PKG_VERSION"),
        }]}),
    );
    let mut component = serde_json::Map::new();
    component.insert("type".into(), "application".into());
    component.insert("bom-ref".into(), artifact_ref.clone().into());
    component.insert("name".into(), artifact_name.into());
    if let Some(v) = version {
        component.insert("version".into(), v.into());
    }
    component.insert(
        "hashes".into(),
        json!([{"alg": "SHA-256", "content": digest_hex}]),
    );
    metadata.insert("component".into(), Value::Object(component));

    let components: Vec<Value> = files
        .iter()
        .map(|file| {
            let mut hashes = vec![json!({"alg": "SHA-256", "content": file.sha256})];
            if let Some(sha1) = &file.sha1 {
                hashes.push(json!({"alg": "SHA-1", "content": sha1}));
            }
            json!({
                "type": "file",
                "bom-ref": format!("file:{}", file.path),
                "name": file.path,
                "hashes": hashes,
                "properties": [{"name": SIZE_PROPERTY, "value": file.size.to_string()}],
            })
        })
        .collect();

    Ok(json!({
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": format!("urn:uuid:{}", uuid_v5(format!("cyclonedx:{artifact_ref}").as_bytes())),
        "version": 1,
        "metadata": Value::Object(metadata),
        "components": components,
    }))
}

fn field_error(field: &str, reason: impl Into<String>) -> FormatError {
    FormatError::InvalidField {
        what: WHAT,
        field: field.into(),
        reason: reason.into(),
    }
}

/// Reads what a verifier shows of an SBOM (the `predicate` of a CycloneDX attestation, already
/// parsed with duplicate keys refused and size capped): `bomFormat` must be `CycloneDX` and
/// `specVersion` a string of the form `1.N`. This is no schema validation.
pub fn parse_minimal(bom: &Value) -> Result<BomSummary, FormatError> {
    let top = bom
        .as_object()
        .ok_or_else(|| field_error("the document", "is not a JSON object"))?;
    match top.get("bomFormat") {
        Some(Value::String(s)) if s == "CycloneDX" => {}
        Some(_) => return Err(field_error("bomFormat", "is not \"CycloneDX\"")),
        None => {
            return Err(FormatError::MissingField {
                what: WHAT,
                field: "bomFormat".into(),
            });
        }
    }
    let spec_version = match top.get("specVersion") {
        Some(Value::String(s))
            if s.strip_prefix("1.").is_some_and(|minor| {
                !minor.is_empty() && minor.len() <= 3 && minor.bytes().all(|b| b.is_ascii_digit())
            }) =>
        {
            s.clone()
        }
        Some(_) => {
            return Err(field_error(
                "specVersion",
                "is not a string of the form 1.N",
            ));
        }
        None => {
            return Err(FormatError::MissingField {
                what: WHAT,
                field: "specVersion".into(),
            });
        }
    };
    let string = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let component = top.get("metadata").and_then(|m| m.get("component"));
    Ok(BomSummary {
        spec_version,
        serial_number: string(top.get("serialNumber")),
        component_name: string(component.and_then(|c| c.get("name"))),
        component_version: string(component.and_then(|c| c.get("version"))),
        component_count: top
            .get("components")
            .and_then(Value::as_array)
            .map_or(0, Vec::len),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:abababababababababababababababababababababababababababababababab";

    pub(crate) fn file(path: &str, fill: char, size: u64) -> FileEntry {
        FileEntry {
            path: path.into(),
            sha256: fill.to_string().repeat(64),
            size,
            sha1: Some(fill.to_string().repeat(40)),
        }
    }

    #[test]
    fn uuid_v5_matches_rfc_9562() {
        // Known answers from Python's uuid.uuid5 with the same namespace.
        assert_eq!(uuid_v5(b"hello"), "0deeaeb0-6228-55da-a398-4102732cb52f");
        assert_eq!(
            uuid_v5(format!("cyclonedx:{DIGEST}").as_bytes()),
            "c5416696-154e-5837-a126-93706bb0309c"
        );
    }

    #[test]
    fn build_is_deterministic_and_complete() {
        let files = [
            file("js/app.js", 'c', 300),
            file("index.html", 'a', 12),
            file("css/site.css", 'b', 0),
        ];
        let mut reversed = files.clone();
        reversed.reverse();
        let bom = build(
            "registry.example/site",
            DIGEST,
            Some("1.0.0"),
            &files,
            Some("2024-01-31T13:00:00.25+01:00"),
        )
        .unwrap();
        let again = build(
            "registry.example/site",
            DIGEST,
            Some("1.0.0"),
            &reversed,
            Some("2024-01-31T13:00:00.25+01:00"),
        )
        .unwrap();
        assert_eq!(bom.to_string(), again.to_string());

        assert_eq!(bom["bomFormat"], "CycloneDX");
        assert_eq!(bom["specVersion"], "1.6");
        assert_eq!(bom["version"], 1);
        assert_eq!(
            bom["serialNumber"],
            "urn:uuid:c5416696-154e-5837-a126-93706bb0309c"
        );
        let keys: Vec<&String> = bom.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "bomFormat",
                "specVersion",
                "serialNumber",
                "version",
                "metadata",
                "components"
            ]
        );
        let metadata = &bom["metadata"];
        assert_eq!(metadata["timestamp"], "2024-01-31T12:00:00Z");
        assert_eq!(metadata["tools"]["components"][0]["name"], "sealpack");
        assert_eq!(
            metadata["tools"]["components"][0]["version"],
            env!("CARGO_PKG_VERSION")
        );
        let component = &metadata["component"];
        assert_eq!(component["type"], "application");
        assert_eq!(component["name"], "registry.example/site");
        assert_eq!(component["version"], "1.0.0");
        assert_eq!(component["bom-ref"], DIGEST);
        assert_eq!(
            component["hashes"],
            serde_json::json!([{"alg": "SHA-256", "content": &DIGEST[7..]}])
        );

        let components = bom["components"].as_array().unwrap();
        let names: Vec<&str> = components
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["css/site.css", "index.html", "js/app.js"]);
        let index = &components[1];
        assert_eq!(index["type"], "file");
        assert_eq!(index["bom-ref"], "file:index.html");
        assert_eq!(
            index["hashes"][0],
            serde_json::json!({"alg": "SHA-256", "content": "a".repeat(64)})
        );
        assert_eq!(
            index["hashes"][1],
            serde_json::json!({"alg": "SHA-1", "content": "a".repeat(40)})
        );
        assert_eq!(
            index["properties"],
            serde_json::json!([{"name": SIZE_PROPERTY, "value": "12"}])
        );

        // The serial follows the digest only; optional parts may be left out.
        let other = build("x", &DIGEST.replace("ab", "cd"), None, &[], None).unwrap();
        assert_ne!(other["serialNumber"], bom["serialNumber"]);
        assert!(other["metadata"].get("timestamp").is_none());
        assert!(other["metadata"]["component"].get("version").is_none());
        assert_eq!(other["components"], serde_json::json!([]));
        let bare = build("x", &DIGEST[7..], None, &[], None).unwrap();
        assert_eq!(bare["metadata"]["component"]["bom-ref"], DIGEST);
        let no_sha1 = FileEntry {
            sha1: None,
            ..file("a", 'a', 1)
        };
        let bom = build("x", DIGEST, None, &[no_sha1], None).unwrap();
        assert_eq!(bom["components"][0]["hashes"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn build_refuses_bad_inputs() {
        let ok = [file("a", 'a', 1)];
        assert!(build("x", DIGEST, None, &ok, None).is_ok());
        let bad_sha1 = FileEntry {
            sha1: Some("A".repeat(40)),
            ..file("a", 'a', 1)
        };
        let bad_sha256 = FileEntry {
            sha256: "a".repeat(63),
            ..file("a", 'a', 1)
        };
        let cases: Vec<(&str, &str, Vec<FileEntry>, Option<&str>)> = vec![
            ("empty name", "", ok.to_vec(), None),
            ("digest uppercase", "x", ok.to_vec(), None),
            (
                "duplicate path",
                "x",
                vec![file("a", 'a', 1), file("a", 'b', 2)],
                None,
            ),
            ("empty path", "x", vec![file("", 'a', 1)], None),
            ("bad sha256", "x", vec![bad_sha256], None),
            ("bad sha1", "x", vec![bad_sha1], None),
            ("bad timestamp", "x", ok.to_vec(), Some("2020-04-13")),
            (
                "year 10000 in UTC",
                "x",
                ok.to_vec(),
                Some("9999-12-31T23:00:00-05:00"),
            ),
            (
                "year -1 in UTC",
                "x",
                ok.to_vec(),
                Some("0000-01-01T00:00:00+01:00"),
            ),
        ];
        for (what, name, files, ts) in cases {
            let digest = if what == "digest uppercase" {
                DIGEST.to_uppercase()
            } else {
                DIGEST.to_owned()
            };
            assert!(build(name, &digest, None, &files, ts).is_err(), "{what}");
        }
        for digest in [
            "sha512:ab",
            "sha256:abab",
            "",
            &DIGEST.replace("sha256:", "sha256:sha256:"),
        ] {
            assert!(build("x", digest, None, &ok, None).is_err(), "{digest}");
        }
    }

    #[test]
    fn parse_minimal_reads_what_is_shown() {
        let bom = build(
            "app",
            DIGEST,
            Some("2"),
            &[file("a", 'a', 1), file("b", 'b', 2)],
            None,
        )
        .unwrap();
        let summary = parse_minimal(&bom).unwrap();
        assert_eq!(
            summary,
            BomSummary {
                spec_version: "1.6".into(),
                serial_number: Some("urn:uuid:c5416696-154e-5837-a126-93706bb0309c".into()),
                component_name: Some("app".into()),
                component_version: Some("2".into()),
                component_count: 2,
            }
        );
        let upstream: Value = serde_json::from_slice(include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/cyclonedx/1.6/valid-bom-1.6.json"
        )))
        .unwrap();
        assert_eq!(parse_minimal(&upstream).unwrap().spec_version, "1.6");
        let wrong_format: Value = serde_json::from_slice(include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/cyclonedx/1.6/invalid-bomformat-1.6.json"
        )))
        .unwrap();
        assert!(parse_minimal(&wrong_format).is_err());
        for bad in [
            serde_json::json!({"specVersion": "1.6"}),
            serde_json::json!({"bomFormat": "CycloneDX"}),
            serde_json::json!({"bomFormat": "CycloneDX", "specVersion": 1.6}),
            serde_json::json!({"bomFormat": "CycloneDX", "specVersion": "2.0"}),
            serde_json::json!({"bomFormat": "CycloneDX", "specVersion": "1."}),
            serde_json::json!({"bomFormat": "cyclonedx", "specVersion": "1.6"}),
            serde_json::json!([]),
        ] {
            assert!(parse_minimal(&bad).is_err(), "{bad}");
        }
    }
}
