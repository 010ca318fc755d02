//! SPDX 2.3 JSON (<https://spdx.github.io/spdx-spec/v2.3/>): the same file list as
//! [`super::cyclonedx`], for consumers that want SPDX; predicate type [`PREDICATE_TYPE`].
//!
//! One package (`SPDXRef-Package`, the artifact, with its manifest digest as SHA256 checksum)
//! with `filesAnalyzed: true`, one file per artifact file (`SPDXRef-File-N`, sorted by path), the
//! relationships `SPDXRef-DOCUMENT DESCRIBES SPDXRef-Package` and `SPDXRef-Package CONTAINS
//! SPDXRef-File-N`. Listing files means `filesAnalyzed: true`, which in SPDX 2.3 requires the
//! package verification code (section 7.9), computed from the files' SHA-1s; and section 8.4
//! requires a SHA1 checksum on every file. So every [`FileEntry`] must carry its `sha1` here;
//! each file gets both SHA1 and SHA256.
//!
//! Deterministic: `documentNamespace` is `urn:uuid:` + a name-based UUID (v5) of the rest of
//! the document, so two documents differ in namespace exactly when they differ in content, as
//! SPDX 2.3 section 6.5 asks.

use serde_json::{Value, json};
use sha1::{Digest as _, Sha1};

use super::FormatError;
use super::cyclonedx::{
    FileEntry, artifact_sha256, input_error, normalize_timestamp, sorted_files, uuid_v5,
};

/// The predicate type of an SPDX SBOM attestation (cosign's `--type spdxjson`).
pub const PREDICATE_TYPE: &str = "https://spdx.dev/Document";
/// The SPDX version written.
pub const SPDX_VERSION: &str = "SPDX-2.3";
/// The SPDX id of the artifact's package.
pub const PACKAGE_ID: &str = "SPDXRef-Package";

const WHAT: &str = "SPDX document";

/// What [`parse_minimal`] reads from an SPDX document, for display after verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpdxSummary {
    /// `spdxVersion`, e.g. `SPDX-2.3`.
    pub spdx_version: String,
    /// `name`, when present and a string.
    pub name: Option<String>,
    /// How many entries `packages` has (0 when absent).
    pub package_count: usize,
    /// How many entries `files` has (0 when absent).
    pub file_count: usize,
}

/// The SPDX package verification code (SPDX 2.3 section 7.9.4) of files with these SHA-1s
/// (lowercase hex): SHA-1 of the ascending-sorted SHA-1s concatenated, lowercase hex. No file
/// is excluded.
pub fn package_verification_code<'a>(sha1s: impl IntoIterator<Item = &'a str>) -> String {
    let mut sorted: Vec<&str> = sha1s.into_iter().collect();
    sorted.sort_unstable();
    let mut hasher = Sha1::new();
    for s in sorted {
        hasher.update(s.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Builds the SPDX document of an artifact; the arguments are those of
/// [`super::cyclonedx::build`], except `created`: the document's creation time (RFC 3339,
/// written in UTC to the second), which SPDX requires.
///
/// Errors like [`super::cyclonedx::build`], and also when a file has no `sha1`.
pub fn build(
    artifact_name: &str,
    artifact_digest: &str,
    version: Option<&str>,
    files: &[FileEntry],
    created: &str,
) -> Result<Value, FormatError> {
    if artifact_name.is_empty() {
        return Err(input_error("artifact name", "is empty"));
    }
    let digest_hex = artifact_sha256(artifact_digest)?;
    let created = normalize_timestamp("created", created)?;
    let files = sorted_files(files)?;
    let mut sha1s = Vec::with_capacity(files.len());
    for file in &files {
        match &file.sha1 {
            Some(sha1) => sha1s.push(sha1.as_str()),
            None => {
                return Err(input_error(
                    &format!("file {:?}", file.path),
                    "has no SHA-1 (SPDX 2.3 requires a SHA1 checksum for every file)",
                ));
            }
        }
    }

    let mut package = serde_json::Map::new();
    package.insert("name".into(), artifact_name.into());
    package.insert("SPDXID".into(), PACKAGE_ID.into());
    if let Some(v) = version {
        package.insert("versionInfo".into(), v.into());
    }
    package.insert("downloadLocation".into(), "NOASSERTION".into());
    package.insert("filesAnalyzed".into(), true.into());
    package.insert(
        "packageVerificationCode".into(),
        json!({"packageVerificationCodeValue": package_verification_code(sha1s.iter().copied())}),
    );
    package.insert(
        "checksums".into(),
        json!([{"algorithm": "SHA256", "checksumValue": digest_hex}]),
    );
    package.insert("licenseConcluded".into(), "NOASSERTION".into());
    package.insert("licenseDeclared".into(), "NOASSERTION".into());
    package.insert("copyrightText".into(), "NOASSERTION".into());

    let mut file_values = Vec::with_capacity(files.len());
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": PACKAGE_ID,
    })];
    for (i, (file, sha1)) in files.iter().zip(&sha1s).enumerate() {
        let id = format!("SPDXRef-File-{}", i + 1);
        let name = if file.path.starts_with("./") {
            file.path.clone()
        } else {
            format!("./{}", file.path)
        };
        file_values.push(json!({
            "fileName": name,
            "SPDXID": id,
            "checksums": [
                {"algorithm": "SHA1", "checksumValue": sha1},
                {"algorithm": "SHA256", "checksumValue": file.sha256},
            ],
        }));
        relationships.push(json!({
            "spdxElementId": PACKAGE_ID,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }

    let mut document = serde_json::Map::new();
    document.insert("spdxVersion".into(), SPDX_VERSION.into());
    document.insert("dataLicense".into(), "CC0-1.0".into());
    document.insert("SPDXID".into(), "SPDXRef-DOCUMENT".into());
    document.insert("name".into(), artifact_name.into());
    document.insert(
        "creationInfo".into(),
        json!({
            "created": created,
            "creators": [format!("Tool: sealpack-{}", env!("CARGO_PKG_VERSION"))],
        }),
    );
    document.insert("packages".into(), json!([Value::Object(package)]));
    document.insert("files".into(), Value::Array(file_values));
    document.insert("relationships".into(), Value::Array(relationships));

    // The namespace names this exact content: a UUID v5 of the document without it.
    let seed = Value::Object(document.clone()).to_string();
    let namespace = format!("urn:uuid:{}", uuid_v5(format!("spdx:{seed}").as_bytes()));
    let mut out = serde_json::Map::new();
    for (key, value) in document {
        out.insert(key.clone(), value);
        if key == "name" {
            out.insert("documentNamespace".into(), namespace.clone().into());
        }
    }
    Ok(Value::Object(out))
}

fn field_error(field: &str, reason: impl Into<String>) -> FormatError {
    FormatError::InvalidField {
        what: WHAT,
        field: field.into(),
        reason: reason.into(),
    }
}

/// Reads what a verifier shows of an SPDX document (the `predicate` of an SPDX attestation,
/// already parsed with duplicate keys refused and size capped): `spdxVersion` must be a string
/// starting with `SPDX-2.` This is no schema validation.
pub fn parse_minimal(document: &Value) -> Result<SpdxSummary, FormatError> {
    let top = document
        .as_object()
        .ok_or_else(|| field_error("the document", "is not a JSON object"))?;
    let spdx_version = match top.get("spdxVersion") {
        Some(Value::String(s)) if s.starts_with("SPDX-2.") && s.len() <= 16 => s.clone(),
        Some(_) => {
            return Err(field_error(
                "spdxVersion",
                "is not a string of the form SPDX-2.N",
            ));
        }
        None => {
            return Err(FormatError::MissingField {
                what: WHAT,
                field: "spdxVersion".into(),
            });
        }
    };
    let count = |key: &str| top.get(key).and_then(Value::as_array).map_or(0, Vec::len);
    Ok(SpdxSummary {
        spdx_version,
        name: top.get("name").and_then(Value::as_str).map(str::to_owned),
        package_count: count("packages"),
        file_count: count("files"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:abababababababababababababababababababababababababababababababab";

    fn file(path: &str, sha1: &str) -> FileEntry {
        FileEntry {
            path: path.into(),
            sha256: "e".repeat(64),
            size: 1,
            sha1: Some(sha1.into()),
        }
    }

    #[test]
    fn package_verification_code_follows_the_spec() {
        // SHA-1 of the sorted SHA-1s of the contents "b", "a", "c" (computed with Python hashlib).
        let sha1s = [
            "e9d71f5ee7c92d6dc9e92ffdad17b8bd49418f98",
            "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8",
            "84a516841ba77a5b4648de2cd0dfcb30ea46dbb4",
        ];
        assert_eq!(
            package_verification_code(sha1s),
            "0ef42d3fb18575bc18b285423eadf13b12b6f704"
        );
        assert_eq!(
            package_verification_code([]),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
    }

    #[test]
    fn build_lays_out_the_document() {
        let a = "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8";
        let b = "e9d71f5ee7c92d6dc9e92ffdad17b8bd49418f98";
        let files = [file("z/last.txt", b), file("./first.txt", a)];
        let doc = build(
            "registry.example/app",
            DIGEST,
            Some("1.2"),
            &files,
            "2024-01-31T12:00:00.9Z",
        )
        .unwrap();
        let keys: Vec<&String> = doc.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "spdxVersion",
                "dataLicense",
                "SPDXID",
                "name",
                "documentNamespace",
                "creationInfo",
                "packages",
                "files",
                "relationships"
            ]
        );
        assert_eq!(doc["spdxVersion"], "SPDX-2.3");
        assert_eq!(doc["dataLicense"], "CC0-1.0");
        assert_eq!(doc["SPDXID"], "SPDXRef-DOCUMENT");
        assert_eq!(doc["name"], "registry.example/app");
        assert_eq!(doc["creationInfo"]["created"], "2024-01-31T12:00:00Z");
        assert_eq!(
            doc["creationInfo"]["creators"][0],
            format!("Tool: sealpack-{}", env!("CARGO_PKG_VERSION"))
        );
        let namespace = doc["documentNamespace"].as_str().unwrap();
        assert!(
            namespace.starts_with("urn:uuid:") && namespace.len() == 45,
            "{namespace}"
        );
        assert_eq!(&namespace[23..24], "5", "a version 5 UUID");

        let package = &doc["packages"][0];
        assert_eq!(package["SPDXID"], PACKAGE_ID);
        assert_eq!(package["versionInfo"], "1.2");
        assert_eq!(package["downloadLocation"], "NOASSERTION");
        assert_eq!(package["filesAnalyzed"], true);
        assert_eq!(
            package["packageVerificationCode"]["packageVerificationCodeValue"],
            package_verification_code([a, b])
        );
        assert_eq!(
            package["checksums"],
            serde_json::json!([{"algorithm": "SHA256", "checksumValue": &DIGEST[7..]}])
        );

        let files = doc["files"].as_array().unwrap();
        assert_eq!(files[0]["fileName"], "./first.txt");
        assert_eq!(files[0]["SPDXID"], "SPDXRef-File-1");
        assert_eq!(files[1]["fileName"], "./z/last.txt");
        assert_eq!(files[1]["SPDXID"], "SPDXRef-File-2");
        assert_eq!(
            files[1]["checksums"],
            serde_json::json!([{"algorithm": "SHA1", "checksumValue": b}, {"algorithm": "SHA256", "checksumValue": "e".repeat(64)}])
        );
        let relationships = doc["relationships"].as_array().unwrap();
        assert_eq!(relationships.len(), 3);
        assert_eq!(relationships[0]["relationshipType"], "DESCRIBES");
        assert_eq!(relationships[2]["relatedSpdxElement"], "SPDXRef-File-2");
        assert_eq!(relationships[2]["relationshipType"], "CONTAINS");

        // Deterministic; the namespace changes with the content.
        let same = build(
            "registry.example/app",
            DIGEST,
            Some("1.2"),
            &[file("./first.txt", a), file("z/last.txt", b)],
            "2024-01-31T12:00:00Z",
        )
        .unwrap();
        assert_eq!(same, doc);
        let later = build(
            "registry.example/app",
            DIGEST,
            Some("1.2"),
            &[file("./first.txt", a), file("z/last.txt", b)],
            "2024-01-31T12:00:01Z",
        )
        .unwrap();
        assert_ne!(later["documentNamespace"], doc["documentNamespace"]);
        let summary = parse_minimal(&doc).unwrap();
        assert_eq!(
            summary,
            SpdxSummary {
                spdx_version: "SPDX-2.3".into(),
                name: Some("registry.example/app".into()),
                package_count: 1,
                file_count: 2
            }
        );
    }

    #[test]
    fn build_requires_sha1_and_valid_inputs() {
        let a = "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8";
        assert!(build("x", DIGEST, None, &[], "2024-01-31T12:00:00Z").is_ok());
        let no_sha1 = FileEntry {
            sha1: None,
            ..file("a", a)
        };
        let err = build("x", DIGEST, None, &[no_sha1], "2024-01-31T12:00:00Z").unwrap_err();
        assert!(err.to_string().contains("SHA-1"), "{err}");
        assert!(build("x", DIGEST, None, &[file("a", a)], "2024-01-31").is_err());
        assert!(build("x", DIGEST, None, &[file("a", a)], "").is_err());
        assert!(build("", DIGEST, None, &[file("a", a)], "2024-01-31T12:00:00Z").is_err());
        assert!(
            build(
                "x",
                "sha256:00",
                None,
                &[file("a", a)],
                "2024-01-31T12:00:00Z"
            )
            .is_err()
        );
        assert!(
            build(
                "x",
                DIGEST,
                None,
                &[file("a", a), file("a", a)],
                "2024-01-31T12:00:00Z"
            )
            .is_err()
        );
    }

    #[test]
    fn parse_minimal_checks_the_version() {
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"spdxVersion": "SPDX-3.0"}),
            serde_json::json!({"spdxVersion": 2.3}),
            serde_json::json!("SPDX-2.3"),
        ] {
            assert!(parse_minimal(&bad).is_err(), "{bad}");
        }
        let ok = parse_minimal(&serde_json::json!({"spdxVersion": "SPDX-2.2"})).unwrap();
        assert_eq!((ok.package_count, ok.file_count, ok.name), (0, 0, None));
    }
}
