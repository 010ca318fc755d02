//! The SBOMs sealpack writes validate against the official JSON Schemas: CycloneDX 1.6
//! (`bom-1.6.schema.json`, with its `spdx.schema.json` and `jsf-0.82.schema.json`) and SPDX 2.3
//! (`spdx-2.3.schema.json`), all under `testdata/schemas/`.
//!
//! The validator is python-jsonschema (draft-07) from the test venv (`scripts/install-test-deps.sh`),
//! with format checking on, including `date-time`, `iri-reference` and `uri`. That it really
//! validates is shown by the official CycloneDX valid/invalid examples, which must classify
//! correctly, and by broken variants of our own documents, which must fail.

use std::path::{Path, PathBuf};
use std::process::Command;

use sealpack::formats::cyclonedx::{self, FileEntry};
use sealpack::formats::spdx;
use serde_json::Value;

const HINT: &str = "run scripts/install-test-deps.sh (it creates the venv with jsonschema and its format checkers)";

/// Validates each `docs` file against `schema` (a file name in testdata/schemas); prints
/// `VALID <file>` or `INVALID <file>: <first error>` per file.
const VALIDATOR: &str = r#"
import json, pathlib, sys
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

schema_dir = pathlib.Path(sys.argv[1])
resources = []
for p in sorted(schema_dir.glob("*.json")):
    doc = json.loads(p.read_text(encoding="utf-8"))
    resources.append((doc["$id"], Resource.from_contents(doc, default_specification=DRAFT7)))
registry = Registry().with_resources(resources)
schema = json.loads((schema_dir / sys.argv[2]).read_text(encoding="utf-8"))
checker = Draft7Validator.FORMAT_CHECKER
missing = [f for f in ("date-time", "iri-reference", "uri", "idn-email") if f not in checker.checkers]
if missing:
    print("MISSING-FORMAT-CHECKERS " + " ".join(missing))
    sys.exit(3)
Draft7Validator.check_schema(schema)
validator = Draft7Validator(schema, registry=registry, format_checker=checker)
for f in sys.argv[3:]:
    instance = json.loads(pathlib.Path(f).read_text(encoding="utf-8"))
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        e = errors[0]
        print("INVALID " + f + ": " + "/".join(map(str, e.absolute_path)) + ": " + e.message[:300])
    else:
        print("VALID " + f)
"#;

fn venv_python() -> PathBuf {
    let venv = match std::env::var_os("SEALPACK_TEST_VENV") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/root"));
            home.join(".cache/sealpack/venv")
        }
    };
    let py = venv.join("bin/python");
    assert!(
        py.exists(),
        "test venv python {} not found: {HINT}",
        py.display()
    );
    py
}

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

/// Runs the validator; returns, per file, `None` if valid or `Some(first error)`.
fn validate(schema: &str, files: &[PathBuf]) -> Vec<(PathBuf, Option<String>)> {
    let out = Command::new(venv_python())
        .arg("-c")
        .arg(VALIDATOR)
        .arg(testdata().join("schemas"))
        .arg(schema)
        .args(files)
        .output()
        .expect("run the venv python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "validator failed ({}): {stdout}{stderr}\n{HINT}",
        out.status
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), files.len(), "{stdout}{stderr}");
    files
        .iter()
        .zip(lines)
        .map(|(f, line)| {
            let verdict = if line.starts_with("VALID ") {
                None
            } else {
                assert!(line.starts_with("INVALID "), "{line}");
                Some(line.to_owned())
            };
            (f.clone(), verdict)
        })
        .collect()
}

fn write_docs(dir: &Path, docs: &[(&str, &Value)]) -> Vec<PathBuf> {
    docs.iter()
        .map(|(name, doc)| {
            let path = dir.join(format!("{name}.json"));
            std::fs::write(&path, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
            path
        })
        .collect()
}

const DIGEST: &str = "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

fn files() -> Vec<FileEntry> {
    let entry = |path: &str, n: u8, size: u64| FileEntry {
        path: path.into(),
        sha256: format!("{n:02x}").repeat(32),
        size,
        sha1: Some(format!("{n:02x}").repeat(20)),
    };
    vec![
        entry("index.html", 1, 1234),
        entry("css/site.css", 2, 0),
        entry("js/app.js", 3, 99_999_999_999),
        entry("docs/with space/ünïcødé \"quoted\" #1.md", 4, 7),
        entry("img/logo.svg", 0xff, 42),
    ]
}

#[test]
fn official_cyclonedx_examples_classify_correctly() {
    let dir = testdata().join("cyclonedx/1.6");
    let mut examples: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    examples.sort();
    assert_eq!(examples.len(), 16);
    for (file, verdict) in validate("bom-1.6.schema.json", &examples) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("valid-") {
            assert_eq!(verdict, None, "{name} must be valid");
        } else {
            assert!(name.starts_with("invalid-"), "{name}");
            assert!(verdict.is_some(), "{name} must be invalid");
        }
    }
}

#[test]
fn cyclonedx_sboms_validate_against_bom_1_6() {
    let tmp = tempfile::tempdir().unwrap();
    let full = cyclonedx::build(
        "registry.example/acme/site",
        DIGEST,
        Some("1.2.3"),
        &files(),
        Some("2024-01-31T12:00:00+01:00"),
    )
    .unwrap();
    let minimal = cyclonedx::build("x", DIGEST, None, &[], None).unwrap();
    let no_sha1: Vec<FileEntry> = files()
        .into_iter()
        .map(|f| FileEntry { sha1: None, ..f })
        .collect();
    let without_sha1 = cyclonedx::build("app", DIGEST, None, &no_sha1, None).unwrap();

    // Broken variants, to show that the validator looks at our documents.
    let mut bad_serial = full.clone();
    bad_serial["serialNumber"] = "urn:uuid:not-a-uuid".into();
    let mut bad_hash = full.clone();
    bad_hash["components"][0]["hashes"][0]["content"] = "abc".into();
    let mut bad_timestamp = full.clone();
    bad_timestamp["metadata"]["timestamp"] = "2024-01-31".into();
    let mut bad_type = full.clone();
    bad_type["components"][1]["type"] = "folder".into();

    let paths = write_docs(
        tmp.path(),
        &[
            ("full", &full),
            ("minimal", &minimal),
            ("without-sha1", &without_sha1),
            ("bad-serial", &bad_serial),
            ("bad-hash", &bad_hash),
            ("bad-timestamp", &bad_timestamp),
            ("bad-type", &bad_type),
        ],
    );
    let verdicts = validate("bom-1.6.schema.json", &paths);
    for (file, verdict) in &verdicts[..3] {
        assert_eq!(verdict, &None, "{}", file.display());
    }
    for (file, verdict) in &verdicts[3..] {
        assert!(verdict.is_some(), "{} must be invalid", file.display());
    }
}

#[test]
fn spdx_documents_validate_against_spdx_2_3() {
    let tmp = tempfile::tempdir().unwrap();
    let full = spdx::build(
        "registry.example/acme/site",
        DIGEST,
        Some("1.2.3"),
        &files(),
        "2024-01-31T12:00:00Z",
    )
    .unwrap();
    let empty = spdx::build("x", DIGEST, None, &[], "2024-01-31T12:00:00Z").unwrap();

    let mut no_checksums = full.clone();
    no_checksums["files"][0]["checksums"] = serde_json::json!([]);
    let mut bad_relationship = full.clone();
    bad_relationship["relationships"][0]["relationshipType"] = "OWNS".into();
    let mut extra = full.clone();
    extra["packages"][0]["size"] = 1.into();
    let mut no_name = full.clone();
    no_name.as_object_mut().unwrap().remove("name");

    let paths = write_docs(
        tmp.path(),
        &[
            ("full", &full),
            ("empty", &empty),
            ("no-checksums", &no_checksums),
            ("bad-relationship", &bad_relationship),
            ("extra-field", &extra),
            ("no-name", &no_name),
        ],
    );
    let verdicts = validate("spdx-2.3.schema.json", &paths);
    for (file, verdict) in &verdicts[..2] {
        assert_eq!(verdict, &None, "{}", file.display());
    }
    for (file, verdict) in &verdicts[2..] {
        assert!(verdict.is_some(), "{} must be invalid", file.display());
    }
}
