//! SLSA provenance v1 (<https://slsa.dev/spec/v1.0/provenance>): the predicate that says how an
//! artifact was built, from which source, by which builder.
//!
//! ```text
//! {"buildDefinition":{"buildType":…,"externalParameters":{…},"internalParameters":{…},
//!   "resolvedDependencies":[{"uri":"git+https://github.com/acme/app@refs/heads/main",
//!                            "digest":{"gitCommit":"<40 hex>"}}]},
//!  "runDetails":{"builder":{"id":…,"version":{…}},
//!                "metadata":{"invocationId":…,"startedOn":…,"finishedOn":…}}}
//! ```
//!
//! The required fields are those of the spec's schema (slsa-framework/slsa
//! `spec/schema/provenance.cue`): `buildDefinition.buildType`, `buildDefinition.externalParameters`
//! and `runDetails.builder.id`; everything else is optional. Unknown fields are ignored, as the
//! spec asks of consumers. The source is the first `resolvedDependencies` entry whose `uri` starts
//! with `git+`, the convention of slsa-github-generator and Google Cloud Build.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::FormatError;
use super::intoto::is_lower_hex;

/// The predicate type of SLSA provenance v1.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// Most entries `resolvedDependencies` (and `byproducts`, `builderDependencies`) may have.
pub const MAX_RESOURCES: usize = 10_000;

const WHAT: &str = "SLSA provenance";

/// A ResourceDescriptor (in-toto/attestation `spec/v1/resource_descriptor.md`), as SLSA uses it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceDescriptor {
    /// Where the resource is, e.g. `git+https://github.com/acme/app@refs/heads/main`.
    #[serde(default)]
    pub uri: Option<String>,
    /// Algorithm name (`gitCommit`, `sha1`, `sha256`, …) to digest.
    #[serde(default)]
    pub digest: BTreeMap<String, String>,
    /// A name for the resource.
    #[serde(default)]
    pub name: Option<String>,
    /// Where it can be downloaded from.
    #[serde(default)]
    pub download_location: Option<String>,
    /// Its media type.
    #[serde(default)]
    pub media_type: Option<String>,
}

/// `buildDefinition`: the inputs of the build.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildDefinition {
    /// The URI of the template that `externalParameters` fill (non-empty).
    pub build_type: String,
    /// The parameters that whoever started the build controlled (a JSON object).
    pub external_parameters: Map<String, Value>,
    /// The builder's own parameters (a JSON object), when given.
    #[serde(default)]
    pub internal_parameters: Option<Map<String, Value>>,
    /// The artifacts the build read: sources, tools, base images.
    #[serde(default)]
    pub resolved_dependencies: Vec<ResourceDescriptor>,
}

/// `runDetails.builder`: who ran the build.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Builder {
    /// The builder's identity, a URI (non-empty). What a policy trusts.
    pub id: String,
    /// Versions of the builder's components.
    #[serde(default)]
    pub version: Option<BTreeMap<String, String>>,
    /// The builder's own dependencies.
    #[serde(default)]
    pub builder_dependencies: Vec<ResourceDescriptor>,
}

/// `runDetails.metadata`: facts about this run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildMetadata {
    /// The builder's identifier of this run (often a URL of the CI job).
    #[serde(default)]
    pub invocation_id: Option<String>,
    /// When the build started, RFC 3339.
    #[serde(default)]
    pub started_on: Option<String>,
    /// When the build finished, RFC 3339.
    #[serde(default)]
    pub finished_on: Option<String>,
}

/// `runDetails`: how the build ran.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunDetails {
    /// The builder.
    pub builder: Builder,
    /// Facts about the run, when given.
    #[serde(default)]
    pub metadata: Option<BuildMetadata>,
    /// Other artifacts the build produced.
    #[serde(default)]
    pub byproducts: Vec<ResourceDescriptor>,
}

/// A checked SLSA provenance v1 predicate.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    /// The build's inputs.
    pub build_definition: BuildDefinition,
    /// The build's run.
    pub run_details: RunDetails,
}

/// What sealpack knows about a build, to write as provenance with [`build`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BuildFacts {
    /// The source as `git+URL@REF`, e.g. `git+https://github.com/acme/app@refs/heads/main`.
    pub source_uri: String,
    /// The source commit, 40 lowercase hex digits (64 for a SHA-256 repository).
    pub commit: String,
    /// The builder's identity, e.g. `https://github.com/acme/app/.github/workflows/ci.yml@refs/heads/main`.
    pub builder_id: String,
    /// The build type URI.
    pub build_type: String,
    /// The CI's identifier of this run, if known.
    pub invocation_id: Option<String>,
    /// When the build started, RFC 3339, if known.
    pub started_on: Option<String>,
    /// When the build finished, RFC 3339, if known.
    pub finished_on: Option<String>,
    /// `buildDefinition.externalParameters` (written with sorted keys).
    pub external_parameters: BTreeMap<String, Value>,
    /// `buildDefinition.internalParameters` (written with sorted keys); omitted when empty.
    pub internal_parameters: BTreeMap<String, Value>,
    /// `runDetails.builder.version`; omitted when empty.
    pub builder_version: BTreeMap<String, String>,
}

/// Builds the predicate from `facts`, then checks it with [`parse`], so what is written is what
/// a verifier reads back (e.g. a commit that is not 40 lowercase hex, an empty builder id or a
/// timestamp that is not RFC 3339 is an error here, not an unverifiable attestation later).
///
/// Key order is fixed: `buildDefinition` {`buildType`, `externalParameters`,
/// `internalParameters`, `resolvedDependencies`}, `runDetails` {`builder` {`id`, `version`},
/// `metadata` {`invocationId`, `startedOn`, `finishedOn`}}; absent optional values are omitted.
pub fn build(facts: &BuildFacts) -> Result<Value, FormatError> {
    let mut definition = Map::new();
    definition.insert("buildType".into(), facts.build_type.clone().into());
    definition.insert(
        "externalParameters".into(),
        Value::Object(facts.external_parameters.clone().into_iter().collect()),
    );
    if !facts.internal_parameters.is_empty() {
        definition.insert(
            "internalParameters".into(),
            Value::Object(facts.internal_parameters.clone().into_iter().collect()),
        );
    }
    definition.insert(
        "resolvedDependencies".into(),
        serde_json::json!([{
            "uri": facts.source_uri,
            "digest": {"gitCommit": facts.commit},
        }]),
    );

    let mut builder = Map::new();
    builder.insert("id".into(), facts.builder_id.clone().into());
    if !facts.builder_version.is_empty() {
        builder.insert(
            "version".into(),
            Value::Object(
                facts
                    .builder_version
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            ),
        );
    }
    let mut metadata = Map::new();
    for (key, value) in [
        ("invocationId", &facts.invocation_id),
        ("startedOn", &facts.started_on),
        ("finishedOn", &facts.finished_on),
    ] {
        if let Some(v) = value {
            metadata.insert(key.into(), v.clone().into());
        }
    }
    let mut run = Map::new();
    run.insert("builder".into(), Value::Object(builder));
    if !metadata.is_empty() {
        run.insert("metadata".into(), Value::Object(metadata));
    }

    let mut top = Map::new();
    top.insert("buildDefinition".into(), Value::Object(definition));
    top.insert("runDetails".into(), Value::Object(run));
    let value = Value::Object(top);

    let parsed = parse(&value)?;
    if parsed.source_uri() != Some(facts.source_uri.as_str()) {
        return Err(field_error(
            "buildDefinition.resolvedDependencies[0].uri",
            "does not start with git+",
        ));
    }
    if parsed.source_ref().is_none() {
        return Err(field_error(
            "buildDefinition.resolvedDependencies[0].uri",
            "has no @REF",
        ));
    }
    if parsed.commit() != Some(facts.commit.as_str()) {
        return Err(field_error(
            "buildDefinition.resolvedDependencies[0].digest.gitCommit",
            "is not 40 (or 64) lowercase hex digits",
        ));
    }
    Ok(value)
}

fn field_error(field: &str, reason: impl Into<String>) -> FormatError {
    FormatError::InvalidField {
        what: WHAT,
        field: field.into(),
        reason: reason.into(),
    }
}

fn check_timestamp(field: &str, value: Option<&str>) -> Result<(), FormatError> {
    match value {
        Some(v) if OffsetDateTime::parse(v, &Rfc3339).is_err() => Err(field_error(
            field,
            "is not an RFC 3339 timestamp (e.g. 2024-01-31T12:00:00Z)",
        )),
        _ => Ok(()),
    }
}

fn check_resources(field: &str, resources: &[ResourceDescriptor]) -> Result<(), FormatError> {
    if resources.len() > MAX_RESOURCES {
        return Err(field_error(
            field,
            format!(
                "has {} entries, more than the limit of {MAX_RESOURCES}",
                resources.len()
            ),
        ));
    }
    Ok(())
}

/// Parses and checks a provenance predicate (the `predicate` of a statement whose
/// `predicateType` is [`PREDICATE_TYPE`]; the statement parser has already refused duplicate
/// keys and capped the size).
///
/// Rejected: a missing or mistyped required field (`buildDefinition.buildType` and
/// `runDetails.builder.id` non-empty strings, `externalParameters` an object); mistyped optional
/// fields; more than [`MAX_RESOURCES`] entries in a list; `startedOn` or `finishedOn` that is not
/// RFC 3339.
pub fn parse(predicate: &Value) -> Result<Provenance, FormatError> {
    if !predicate.is_object() {
        return Err(field_error("the predicate", "is not a JSON object"));
    }
    let provenance = Provenance::deserialize(predicate)
        .map_err(|e| field_error("the predicate", e.to_string()))?;
    let definition = &provenance.build_definition;
    if definition.build_type.is_empty() {
        return Err(field_error("buildDefinition.buildType", "is empty"));
    }
    if provenance.run_details.builder.id.is_empty() {
        return Err(field_error("runDetails.builder.id", "is empty"));
    }
    check_resources(
        "buildDefinition.resolvedDependencies",
        &definition.resolved_dependencies,
    )?;
    check_resources("runDetails.byproducts", &provenance.run_details.byproducts)?;
    check_resources(
        "runDetails.builder.builderDependencies",
        &provenance.run_details.builder.builder_dependencies,
    )?;
    if let Some(metadata) = &provenance.run_details.metadata {
        check_timestamp(
            "runDetails.metadata.startedOn",
            metadata.started_on.as_deref(),
        )?;
        check_timestamp(
            "runDetails.metadata.finishedOn",
            metadata.finished_on.as_deref(),
        )?;
    }
    Ok(provenance)
}

/// The index in `uri` (which starts with `git+`) of the `@` that starts the ref, if any: the
/// first `@` in the path, so that `git+ssh://git@host/repo@ref` splits after `repo`.
fn ref_separator(uri: &str) -> Option<usize> {
    let path_start = match uri.find("://") {
        Some(scheme_end) => {
            let authority = scheme_end + 3;
            authority + uri[authority..].find('/')?
        }
        // No authority (`git+file:/path@ref`, scp-like `git+git@host:repo@ref`): after the
        // first `:`.
        None => uri.find(':').map_or(0, |i| i + 1),
    };
    uri[path_start..].find('@').map(|i| path_start + i)
}

impl Provenance {
    /// `runDetails.builder.id`.
    pub fn builder_id(&self) -> &str {
        &self.run_details.builder.id
    }

    /// `buildDefinition.buildType`.
    pub fn build_type(&self) -> &str {
        &self.build_definition.build_type
    }

    /// The source: the first `resolvedDependencies` entry whose `uri` starts with `git+`.
    pub fn source(&self) -> Option<&ResourceDescriptor> {
        self.build_definition
            .resolved_dependencies
            .iter()
            .find(|r| r.uri.as_deref().is_some_and(|u| u.starts_with("git+")))
    }

    /// The source's full `uri`, e.g. `git+https://github.com/acme/app@refs/heads/main`.
    pub fn source_uri(&self) -> Option<&str> {
        self.source()?.uri.as_deref()
    }

    /// The source repository: [`Self::source_uri`] without `git+` and without `@REF`, e.g.
    /// `https://github.com/acme/app`.
    pub fn source_repository(&self) -> Option<&str> {
        let uri = self.source_uri()?;
        let end = ref_separator(uri).unwrap_or(uri.len());
        uri.get(4..end)
    }

    /// The source ref: what follows the `@` in [`Self::source_uri`], e.g. `refs/heads/main`;
    /// `None` if there is no `@` in the path or nothing after it.
    pub fn source_ref(&self) -> Option<&str> {
        let uri = self.source_uri()?;
        let at = ref_separator(uri)?;
        uri.get(at + 1..).filter(|r| !r.is_empty())
    }

    /// The source commit: the source's `digest.gitCommit` if present (40 lowercase hex digits,
    /// or 64 for a SHA-256 repository), else its `digest.sha1` (40 lowercase hex digits);
    /// `None` if the value is not of that form.
    pub fn commit(&self) -> Option<&str> {
        let digest = &self.source()?.digest;
        match digest.get("gitCommit") {
            Some(c) => {
                Some(c.as_str()).filter(|c| (c.len() == 40 || c.len() == 64) && is_lower_hex(c))
            }
            None => digest
                .get("sha1")
                .map(String::as_str)
                .filter(|c| c.len() == 40 && is_lower_hex(c)),
        }
    }

    /// `runDetails.metadata.invocationId`.
    pub fn invocation_id(&self) -> Option<&str> {
        self.run_details.metadata.as_ref()?.invocation_id.as_deref()
    }

    /// `runDetails.metadata.startedOn`, parsed (it was checked by [`parse`]).
    pub fn started_on(&self) -> Option<OffsetDateTime> {
        let s = self.run_details.metadata.as_ref()?.started_on.as_deref()?;
        OffsetDateTime::parse(s, &Rfc3339).ok()
    }

    /// `runDetails.metadata.finishedOn`, parsed (it was checked by [`parse`]).
    pub fn finished_on(&self) -> Option<OffsetDateTime> {
        let s = self.run_details.metadata.as_ref()?.finished_on.as_deref()?;
        OffsetDateTime::parse(s, &Rfc3339).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::{dsse, intoto};
    use crate::keys::PublicKey;
    use serde_json::json;
    use sha2::{Digest as _, Sha256};

    macro_rules! testdata {
        ($path:literal) => {
            include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/", $path))
        };
    }

    const GCB: &[u8] = testdata!("attestations/gcb/v1.0-gcloud-container-github-single.json");
    const GCB_KEY: &[u8] = testdata!("attestations/gcb/keys/global-pae-google-hosted-worker_1.key");
    const GHA_BUNDLE: &[u8] = testdata!(
        "attestations/slsa-github-generator/v1-delegator-v2.1.0/binary-linux-amd64-push-v14.build.slsa"
    );
    const GHA_ARTIFACT: &[u8] = testdata!(
        "attestations/slsa-github-generator/v1-delegator-v2.1.0/binary-linux-amd64-push-v14"
    );
    const COMMIT: &str = "4d329c75e7ec1725f7c9ce917a8799d408d06be3";

    fn facts() -> BuildFacts {
        BuildFacts {
            source_uri: "git+https://github.com/acme/app@refs/heads/main".into(),
            commit: COMMIT.into(),
            builder_id: "https://github.com/acme/app/.github/workflows/ci.yml@refs/heads/main"
                .into(),
            build_type: "https://sealpack.dev/build/v1".into(),
            invocation_id: Some("https://github.com/acme/app/actions/runs/1/attempts/1".into()),
            started_on: Some("2024-01-31T12:00:00Z".into()),
            finished_on: Some("2024-01-31T12:03:10.5+01:00".into()),
            external_parameters: [(
                "workflow".to_owned(),
                json!({"path": ".github/workflows/ci.yml"}),
            )]
            .into_iter()
            .collect(),
            internal_parameters: BTreeMap::new(),
            builder_version: BTreeMap::new(),
        }
    }

    #[test]
    fn gcb_provenance_verified_then_parsed() {
        // The full verifier order: envelope, signature, payload type, statement, predicate.
        let describe: Value = serde_json::from_slice(GCB).unwrap();
        let raw = describe["provenance_summary"]["provenance"][0]["envelope"].to_string();
        let env = dsse::parse(raw.as_bytes()).unwrap();
        let keys = [PublicKey::from_pem(GCB_KEY).unwrap()];
        assert_eq!(dsse::verify(&env, &keys).len(), 1);
        dsse::check_intoto(&env).unwrap();
        let statement = intoto::parse(&env.payload).unwrap();
        let digest = "7e9b6e7ba2842c91cf49f3e214d04a7a496f8214356f41d81a6e6dcad11f11e3";
        assert!(statement.binds(digest));
        assert_eq!(
            describe["image_summary"]["digest"],
            format!("sha256:{digest}").as_str()
        );
        assert!(intoto::predicate_type_matches(
            &statement.predicate_type,
            "slsaprovenance"
        ));
        assert_eq!(statement.predicate_type, PREDICATE_TYPE);

        let p = parse(&statement.predicate).unwrap();
        assert_eq!(
            p.builder_id(),
            "https://cloudbuild.googleapis.com/GoogleHostedWorker"
        );
        assert_eq!(
            p.build_type(),
            "https://cloud.google.com/build/gcb-buildtypes/google-worker/v1"
        );
        assert_eq!(
            p.source_uri(),
            Some("git+https://github.com/khalkie/gcb-prod-prov@refs/heads/main")
        );
        assert_eq!(
            p.source_repository(),
            Some("https://github.com/khalkie/gcb-prod-prov")
        );
        assert_eq!(p.source_ref(), Some("refs/heads/main"));
        assert_eq!(p.commit(), Some("2ce3f90facdb51aeb950d5bc641e981be61fdf48"));
        assert_eq!(p.build_definition.resolved_dependencies.len(), 2);
        assert!(
            p.invocation_id()
                .unwrap()
                .starts_with("https://cloudbuild.googleapis.com/v1/")
        );
        let started = p.started_on().unwrap();
        let finished = p.finished_on().unwrap();
        assert!(started < finished);
        assert_eq!(started.unix_timestamp(), 1_691_520_021);
        // `byproducts: [{}]` is a valid (empty) descriptor.
        assert_eq!(
            p.run_details.byproducts,
            vec![ResourceDescriptor {
                uri: None,
                digest: BTreeMap::new(),
                name: None,
                download_location: None,
                media_type: None,
            }]
        );
    }

    #[test]
    fn slsa_github_generator_predicate() {
        // The statement is v0.1 (refused by `intoto::parse`); its predicate is SLSA v1.
        let bundle: Value = serde_json::from_slice(GHA_BUNDLE).unwrap();
        let env = dsse::parse(bundle["dsseEnvelope"].to_string().as_bytes()).unwrap();
        let statement = crate::formats::parse_json_no_duplicates(&env.payload, 1 << 20).unwrap();
        assert_eq!(statement["predicateType"], PREDICATE_TYPE);
        let artifact_sha256 = hex::encode(Sha256::digest(GHA_ARTIFACT));
        assert_eq!(
            statement["subject"][0]["digest"]["sha256"],
            artifact_sha256.as_str()
        );

        let p = parse(&statement["predicate"]).unwrap();
        assert_eq!(
            p.builder_id(),
            "https://github.com/slsa-framework/example-trw/.github/workflows/builder_high-perms_slsa3.yml@refs/tags/v2.1.0"
        );
        assert_eq!(
            p.source_uri(),
            Some("git+https://github.com/slsa-framework/example-package@refs/tags/v14")
        );
        assert_eq!(p.source_ref(), Some("refs/tags/v14"));
        assert_eq!(p.commit(), Some(COMMIT));
    }

    #[test]
    fn build_round_trips_through_statement_and_parse() {
        let predicate = build(&facts()).unwrap();
        let text = predicate.to_string();
        assert!(
            text.starts_with(r#"{"buildDefinition":{"buildType":"https://sealpack.dev/build/v1","externalParameters":{"workflow":"#),
            "{text}"
        );
        assert!(text.contains(&format!(
            r#""resolvedDependencies":[{{"uri":"git+https://github.com/acme/app@refs/heads/main","digest":{{"gitCommit":"{COMMIT}"}}}}]"#
        )));
        assert!(!text.contains("internalParameters"));
        let digest = "ab".repeat(32);
        let bytes = intoto::build("app", &digest, PREDICATE_TYPE, &predicate);
        let statement = intoto::parse(&bytes).unwrap();
        assert!(statement.binds(&digest));
        let p = parse(&statement.predicate).unwrap();
        let f = facts();
        assert_eq!(p.builder_id(), f.builder_id);
        assert_eq!(p.source_uri(), Some(f.source_uri.as_str()));
        assert_eq!(p.source_repository(), Some("https://github.com/acme/app"));
        assert_eq!(p.source_ref(), Some("refs/heads/main"));
        assert_eq!(p.commit(), Some(COMMIT));
        assert_eq!(p.invocation_id(), f.invocation_id.as_deref());
        assert_eq!(p.build_type(), f.build_type);
        assert_eq!(p.started_on().unwrap().unix_timestamp(), 1_706_702_400);
        assert_eq!(
            p.finished_on().unwrap().unix_timestamp(),
            1_706_702_400 - 3600 + 190
        );
        assert_eq!(
            p.build_definition.external_parameters["workflow"]["path"],
            ".github/workflows/ci.yml"
        );

        // Optional parts.
        let mut more = facts();
        more.internal_parameters
            .insert("runner".into(), json!("linux"));
        more.builder_version
            .insert("sealpack".into(), "0.1.0".into());
        more.invocation_id = None;
        more.started_on = None;
        more.finished_on = None;
        let p = parse(&build(&more).unwrap()).unwrap();
        assert_eq!(
            p.run_details.builder.version.as_ref().unwrap()["sealpack"],
            "0.1.0"
        );
        assert_eq!(
            p.build_definition.internal_parameters.as_ref().unwrap()["runner"],
            "linux"
        );
        assert_eq!(p.run_details.metadata, None);
        // A SHA-256 repository's commit.
        let mut sha256_repo = facts();
        sha256_repo.commit = "c".repeat(64);
        assert_eq!(
            parse(&build(&sha256_repo).unwrap()).unwrap().commit(),
            Some("c".repeat(64).as_str())
        );
    }

    #[test]
    fn build_refuses_facts_that_would_not_verify() {
        type Change = fn(&mut BuildFacts);
        let cases: Vec<(&str, Change)> = vec![
            ("empty builder id", |f| f.builder_id.clear()),
            ("empty build type", |f| f.build_type.clear()),
            ("short commit", |f| f.commit.truncate(39)),
            ("uppercase commit", |f| f.commit = f.commit.to_uppercase()),
            ("no commit", |f| f.commit.clear()),
            ("source without git+", |f| {
                f.source_uri = "https://github.com/acme/app@refs/heads/main".into()
            }),
            ("source without ref", |f| {
                f.source_uri = "git+https://github.com/acme/app".into()
            }),
            ("source with empty ref", |f| {
                f.source_uri = "git+https://github.com/acme/app@".into()
            }),
            ("bad startedOn", |f| {
                f.started_on = Some("2024-01-31".into())
            }),
            ("bad finishedOn", |f| {
                f.finished_on = Some("yesterday".into())
            }),
        ];
        for (what, change) in cases {
            let mut f = facts();
            change(&mut f);
            assert!(build(&f).is_err(), "{what}");
        }
    }

    #[test]
    fn parse_checks_the_schema_required_fields() {
        let good = build(&facts()).unwrap();
        assert!(parse(&good).is_ok());
        let without = |pointer: &str, key: &str| {
            let mut v = good.clone();
            v.pointer_mut(pointer)
                .unwrap()
                .as_object_mut()
                .unwrap()
                .remove(key);
            v
        };
        let with = |pointer: &str, value: Value| {
            let mut v = good.clone();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            let parent = v.pointer_mut(parent).unwrap().as_object_mut().unwrap();
            parent.insert(key.to_owned(), value);
            v
        };
        let cases = [
            ("no buildDefinition", without("", "buildDefinition")),
            ("no runDetails", without("", "runDetails")),
            ("no buildType", without("/buildDefinition", "buildType")),
            (
                "no externalParameters",
                without("/buildDefinition", "externalParameters"),
            ),
            ("no builder", without("/runDetails", "builder")),
            ("no builder.id", without("/runDetails/builder", "id")),
            (
                "buildType number",
                with("/buildDefinition/buildType", json!(1)),
            ),
            (
                "buildType empty",
                with("/buildDefinition/buildType", json!("")),
            ),
            (
                "externalParameters array",
                with("/buildDefinition/externalParameters", json!([])),
            ),
            (
                "internalParameters string",
                with("/buildDefinition/internalParameters", json!("x")),
            ),
            (
                "resolvedDependencies object",
                with("/buildDefinition/resolvedDependencies", json!({})),
            ),
            (
                "digest value number",
                with(
                    "/buildDefinition/resolvedDependencies/0/digest",
                    json!({"gitCommit": 1}),
                ),
            ),
            (
                "uri number",
                with("/buildDefinition/resolvedDependencies/0/uri", json!(1)),
            ),
            (
                "builder.id empty",
                with("/runDetails/builder/id", json!("")),
            ),
            (
                "builder.version array",
                with("/runDetails/builder", json!({"id": "x", "version": []})),
            ),
            ("metadata string", with("/runDetails/metadata", json!("x"))),
            (
                "startedOn not RFC 3339",
                with(
                    "/runDetails/metadata/startedOn",
                    json!("2024-01-31 12:00:00"),
                ),
            ),
            (
                "finishedOn number",
                with("/runDetails/metadata/finishedOn", json!(1)),
            ),
            ("not an object", json!([good.clone()])),
            ("null", Value::Null),
        ];
        for (what, value) in cases {
            assert!(parse(&value).is_err(), "{what}");
        }
        let too_many = with(
            "/buildDefinition/resolvedDependencies",
            Value::Array(vec![json!({}); MAX_RESOURCES + 1]),
        );
        assert!(parse(&too_many).is_err());
        // Unknown fields are ignored, optional ones may be missing.
        let mut extra = good.clone();
        extra["runDetails"]["future"] = json!({"x": 1});
        extra["buildDefinition"]["resolvedDependencies"][0]["annotations"] = json!({"k": [1]});
        assert!(parse(&extra).is_ok());
        assert!(
            parse(&json!({
                "buildDefinition": {"buildType": "t", "externalParameters": {}},
                "runDetails": {"builder": {"id": "b"}}
            }))
            .is_ok()
        );
    }

    #[test]
    fn source_accessors() {
        let with_deps = |deps: Value| {
            parse(&json!({
                "buildDefinition": {"buildType": "t", "externalParameters": {}, "resolvedDependencies": deps},
                "runDetails": {"builder": {"id": "b"}}
            }))
            .unwrap()
        };
        // The first git+ entry is the source; others are skipped.
        let p = with_deps(json!([
            {"uri": "https://example.com/tool.tar.gz", "digest": {"sha256": "00"}},
            {"uri": "git+ssh://git@github.com/acme/app@refs/tags/v1.2.3", "digest": {"sha1": COMMIT}},
            {"uri": "git+https://github.com/acme/other@refs/heads/x", "digest": {"gitCommit": "f".repeat(40)}},
        ]));
        assert_eq!(
            p.source_uri(),
            Some("git+ssh://git@github.com/acme/app@refs/tags/v1.2.3")
        );
        assert_eq!(p.source_repository(), Some("ssh://git@github.com/acme/app"));
        assert_eq!(p.source_ref(), Some("refs/tags/v1.2.3"));
        assert_eq!(p.commit(), Some(COMMIT), "sha1 when there is no gitCommit");

        let p = with_deps(
            json!([{"uri": "git+ssh://git@github.com/acme/app", "digest": {"gitCommit": COMMIT}}]),
        );
        assert_eq!(p.source_ref(), None, "the @ of the user name is not a ref");
        assert_eq!(p.source_repository(), Some("ssh://git@github.com/acme/app"));

        let p = with_deps(
            json!([{"uri": "git+https://h/r@refs/heads/a@b", "digest": {"gitCommit": COMMIT}}]),
        );
        assert_eq!(p.source_ref(), Some("refs/heads/a@b"));

        // Malformed commits are not commits; gitCommit wins over sha1.
        for digest in [
            json!({"gitCommit": COMMIT.to_uppercase()}),
            json!({"gitCommit": &COMMIT[..39]}),
            json!({"gitCommit": "", "sha1": COMMIT}),
            json!({"sha1": "c".repeat(64)}),
            json!({"sha256": "c".repeat(64)}),
            json!({}),
        ] {
            let p = with_deps(json!([{"uri": "git+https://h/r@main", "digest": digest}]));
            assert_eq!(p.commit(), None, "{digest}");
        }
        // No git+ dependency: no source at all.
        let p = with_deps(
            json!([{"uri": "https://h/r@main", "digest": {"gitCommit": COMMIT}}, {"digest": {}}]),
        );
        assert_eq!(
            (p.source(), p.source_uri(), p.source_ref(), p.commit()),
            (None, None, None, None)
        );
        let p = with_deps(json!([]));
        assert_eq!(p.source_repository(), None);
    }
}
