//! `trace`: the audit view. For one digest: what its manifest says it was built from, every piece of evidence
//! attached to it (signatures, provenance, SBOMs, promotions, deployment records, revocations), and the deploy
//! targets whose history ever ran it. For one commit: the digests of a repository built from it, each traced.
//!
//! Trace reports; it does not gate. Evidence is read in one pass (as `verify` reads it) and each piece is shown
//! `verified` only when it verifies, with the checks `verify` uses, against one of the keys given and is bound to
//! the digest; everything else is `unverified`, with why. A statement whose subject (or whose predicate's digest)
//! is another digest is not listed with this digest's evidence: it goes to `ignored`, with the reason.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;

use crate::deploy::{Target, history};
use crate::digest::Digest;
use crate::error::Result;
use crate::formats::{cyclonedx, dsse, intoto, promotion, revocation, simplesigning, slsa, spdx};
use crate::oci::{Manifest, RawManifest, annotations};
use crate::reference::Reference;
use crate::store::evidence::{self, EvidenceLayer, Kind};
use crate::store::{self, ManifestRef, Store};
use crate::verify::{TrustedKey, check_envelope, check_layer};

/// Most tags examined when searching a repository for a commit's digests.
pub const MAX_TAGS: usize = 1000;
/// Manifests fetched at once while searching.
const PARALLEL: usize = 8;

/// Whether a piece of evidence verified, and by whom, or why not.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Check {
    /// True only when a signature over it verified under one of the keys given and it is bound to the digest.
    pub verified: bool,
    /// The names of the keys that verified it.
    pub keys: Vec<String>,
    /// Their key ids.
    pub key_ids: Vec<String>,
    /// Key ids the envelope claims it was signed with (unauthenticated hints; absent for cosign signatures,
    /// which name no key).
    pub claimed_key_ids: Vec<String>,
    /// Why it is not verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unverified_reason: Option<String>,
}

/// Where a piece of evidence is: its evidence manifest and layer index.
#[derive(Debug, Clone, Serialize)]
pub struct Location {
    /// The evidence manifest.
    pub manifest: Digest,
    /// The layer's index in it.
    pub layer: usize,
}

/// A cosign signature.
#[derive(Debug, Clone, Serialize)]
pub struct SignatureFact {
    /// Where it is.
    #[serde(flatten)]
    pub at: Location,
    /// Whether it verified.
    #[serde(flatten)]
    pub check: Check,
}

/// SLSA provenance.
#[derive(Debug, Clone, Serialize)]
pub struct ProvenanceFact {
    /// Where it is.
    #[serde(flatten)]
    pub at: Location,
    /// Whether it verified.
    #[serde(flatten)]
    pub check: Check,
    /// `runDetails.builder.id`.
    pub builder_id: String,
    /// `buildDefinition.buildType`.
    pub build_type: String,
    /// The source, `git+URL@REF`.
    pub source_uri: Option<String>,
    /// The source's `gitCommit`.
    pub commit: Option<String>,
    /// The CI run.
    pub invocation_id: Option<String>,
    /// False when the commit differs from the manifest's revision annotation (null when either is absent).
    pub commit_matches_revision: Option<bool>,
}

/// An SBOM.
#[derive(Debug, Clone, Serialize)]
pub struct SbomFact {
    /// Where it is.
    #[serde(flatten)]
    pub at: Location,
    /// Whether it verified.
    #[serde(flatten)]
    pub check: Check,
    /// `cyclonedx` or `spdx`.
    pub format: String,
    /// CycloneDX components, or SPDX files plus packages.
    pub components: usize,
}

/// A promotion statement.
#[derive(Debug, Clone, Serialize)]
pub struct PromotionFact {
    /// Where it is.
    #[serde(flatten)]
    pub at: Location,
    /// Whether it verified.
    #[serde(flatten)]
    pub check: Check,
    /// Source environment.
    pub from: String,
    /// Target environment.
    pub to: String,
    /// When.
    pub promoted_at: String,
    /// Who.
    pub promoted_by: String,
}

/// A deployment record.
#[derive(Debug, Clone, Serialize)]
pub struct DeploymentFact {
    /// Where it is.
    #[serde(flatten)]
    pub at: Location,
    /// Whether it verified.
    #[serde(flatten)]
    pub check: Check,
    /// The environment.
    pub environment: String,
    /// When.
    pub deployed_at: String,
    /// Who.
    pub deployed_by: String,
    /// Where (host and folder).
    pub target: String,
}

/// A revocation.
#[derive(Debug, Clone, Serialize)]
pub struct RevocationFact {
    /// Where it is.
    #[serde(flatten)]
    pub at: Location,
    /// Whether it verified.
    #[serde(flatten)]
    pub check: Check,
    /// Why the digest must not deploy.
    pub reason: String,
    /// When.
    pub revoked_at: String,
}

/// An attestation of another predicate type.
#[derive(Debug, Clone, Serialize)]
pub struct OtherFact {
    /// Where it is.
    #[serde(flatten)]
    pub at: Location,
    /// Whether it verified.
    #[serde(flatten)]
    pub check: Check,
    /// Its predicate type.
    pub predicate_type: String,
}

/// Evidence that is not listed as this digest's, and why (about another digest, unreadable, skipped).
#[derive(Debug, Clone, Serialize)]
pub struct Ignored {
    /// The evidence manifest (absent for layers skipped before fetching).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Digest>,
    /// The layer's index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<usize>,
    /// Why it is not listed.
    pub reason: String,
}

/// Everything attached to a digest.
#[derive(Debug, Clone, Serialize, Default)]
pub struct EvidenceFacts {
    /// The names of the keys checked against (empty: nothing can be verified).
    pub keys: Vec<String>,
    /// Cosign signatures.
    pub signatures: Vec<SignatureFact>,
    /// SLSA provenance statements.
    pub provenance: Vec<ProvenanceFact>,
    /// SBOMs.
    pub sboms: Vec<SbomFact>,
    /// Promotion statements.
    pub promotions: Vec<PromotionFact>,
    /// Deployment records.
    pub deployments: Vec<DeploymentFact>,
    /// Revocations.
    pub revocations: Vec<RevocationFact>,
    /// Attestations of other predicate types.
    pub other: Vec<OtherFact>,
    /// Evidence not listed, and why.
    pub ignored: Vec<Ignored>,
}

/// One switch of a target to the digest (deploy, promote, rollback, recover), or a health check of it.
#[derive(Debug, Clone, Serialize)]
pub struct EnvEvent {
    /// When.
    pub time: String,
    /// `deploy`, `promote`, `rollback`, `health`, `recover`.
    pub action: history::Action,
    /// `ok`, `pending-health`, `passed`, `failed`.
    pub status: String,
    /// Who.
    pub who: String,
    /// The commit the event recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

impl EnvEvent {
    /// The action as history spells it (`deploy`, `promote`, ...).
    pub fn action_name(&self) -> String {
        serde_json::to_value(self.action)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// An environment (a deploy target folder) whose history ran the digest.
#[derive(Debug, Clone, Serialize)]
pub struct EnvFacts {
    /// The environment's name.
    pub env: String,
    /// The target folder.
    pub target: PathBuf,
    /// Whether `current` points at the digest now.
    pub current: bool,
    /// The first time it was switched to the digest.
    pub first: String,
    /// The last time it was switched to the digest.
    pub last: String,
    /// The events about the digest, oldest first.
    pub events: Vec<EnvEvent>,
}

/// The trace of one digest.
#[derive(Debug, Clone, Serialize)]
pub struct DigestTrace {
    /// `REPO@sha256:...` (absent when no repository was given: a commit traced through histories only).
    pub reference: Option<String>,
    /// The digest.
    pub digest: Digest,
    /// The repository's tags that point at it (commit search only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// How a commit search found it: `revision`, `provenance`, `history` (commit search only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub matched_by: Vec<String>,
    /// The manifest's media type.
    pub media_type: Option<String>,
    /// `org.opencontainers.image.revision`: the commit it says it was built from.
    pub revision: Option<String>,
    /// `org.opencontainers.image.source`.
    pub source: Option<String>,
    /// `org.opencontainers.image.version`.
    pub version: Option<String>,
    /// `org.opencontainers.image.created`.
    pub created: Option<String>,
    /// The attached evidence (absent when no repository was given).
    pub evidence: Option<EvidenceFacts>,
    /// Environments whose history ran it.
    pub environments: Vec<EnvFacts>,
    /// Things an auditor should look at (a provenance commit that differs from the revision, ...).
    pub warnings: Vec<String>,
}

/// The trace of one commit.
#[derive(Debug, Clone, Serialize)]
pub struct CommitTrace {
    /// The commit.
    pub commit: String,
    /// The repository searched (`HOST/REPO` or `oci:PATH`), if one was given.
    pub repository: Option<String>,
    /// Tags in the repository, evidence tags (`sha256-*`) excluded.
    pub tags_total: usize,
    /// Tags examined.
    pub tags_examined: usize,
    /// True when there were more tags than the cap ([`MAX_TAGS`]) and only the first, in name order, were
    /// examined.
    pub capped: bool,
    /// The digests built from the commit.
    pub digests: Vec<DigestTrace>,
}

/// What trace checks against and where it looks for environments.
#[derive(Debug, Clone)]
pub struct TraceOptions {
    /// Keys to verify evidence against (none: everything is unverified).
    pub keys: Vec<TrustedKey>,
    /// Deploy target folders whose histories are read.
    pub targets: Vec<PathBuf>,
    /// Most tags a commit search examines ([`MAX_TAGS`] by default).
    pub max_tags: usize,
}

impl Default for TraceOptions {
    fn default() -> Self {
        TraceOptions {
            keys: Vec::new(),
            targets: Vec::new(),
            max_tags: MAX_TAGS,
        }
    }
}

/// Checks a COMMIT argument: 40 (or 64, for a SHA-256 repository) hex digits, returned lowercase.
pub fn parse_commit(s: &str) -> Option<String> {
    ((s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| s.to_ascii_lowercase())
}

/// Traces what `reference` points at (resolved once).
pub async fn trace_reference(
    store: &dyn Store,
    reference: &Reference,
    opts: &TraceOptions,
) -> Result<DigestTrace> {
    let histories = read_histories(&opts.targets)?;
    let raw = store::resolve(store, reference).await?;
    trace_manifest(store, reference, &raw, opts, &histories).await
}

/// The digests built from `commit`: from `repository` (its tags' manifests whose revision annotation is the
/// commit, or, with keys, whose verified provenance names it) and from the target histories (events that
/// recorded the commit), each traced. `repository` is optional when targets are given.
pub async fn trace_commit(
    store: Option<(&dyn Store, &Reference)>,
    commit: &str,
    opts: &TraceOptions,
) -> Result<CommitTrace> {
    use futures_util::{StreamExt, TryStreamExt};
    let histories = read_histories(&opts.targets)?;
    let mut out = CommitTrace {
        commit: commit.to_string(),
        repository: store.map(|(s, _)| s.name()),
        tags_total: 0,
        tags_examined: 0,
        capped: false,
        digests: Vec::new(),
    };
    let mut found: BTreeMap<Digest, Found> = BTreeMap::new();
    if let Some((store, _)) = store {
        let mut tags: Vec<String> = store
            .list_tags()
            .await?
            .into_iter()
            .filter(|t| !t.starts_with("sha256-"))
            .collect();
        tags.sort();
        tags.dedup();
        out.tags_total = tags.len();
        if tags.len() > opts.max_tags {
            tags.truncate(opts.max_tags);
            out.capped = true;
        }
        out.tags_examined = tags.len();
        let manifests: Vec<Option<RawManifest>> = futures_util::stream::iter(
            tags.iter()
                .map(|t| store.fetch_manifest(ManifestRef::Tag(t))),
        )
        .buffered(PARALLEL)
        .try_collect()
        .await?;
        let mut by_digest: BTreeMap<Digest, (Vec<String>, RawManifest)> = BTreeMap::new();
        for (tag, m) in tags.into_iter().zip(manifests) {
            // a tag deleted between the listing and the fetch is simply gone
            if let Some(m) = m {
                by_digest
                    .entry(m.digest())
                    .or_insert_with(|| (Vec::new(), m))
                    .0
                    .push(tag);
            }
        }
        let mut unmatched = Vec::new();
        for (d, (tags, m)) in by_digest {
            if manifest_annotations(&m)
                .get(annotations::REVISION)
                .is_some_and(|r| r.eq_ignore_ascii_case(commit))
            {
                found.insert(d, (tags, BTreeSet::from(["revision"]), Some(m)));
            } else {
                unmatched.push((d, tags, m));
            }
        }
        // with keys, a verified provenance statement naming the commit also counts (its annotation may be
        // missing or wrong); without keys, nothing unverified can make a digest "of" a commit
        if !opts.keys.is_empty() {
            let hits: Vec<bool> = futures_util::stream::iter(
                unmatched
                    .iter()
                    .map(|(d, _, _)| provenance_names(store, d, &opts.keys, commit)),
            )
            .buffered(PARALLEL)
            .try_collect()
            .await?;
            for ((d, tags, m), hit) in unmatched.into_iter().zip(hits) {
                if hit {
                    found.insert(d, (tags, BTreeSet::from(["provenance"]), Some(m)));
                }
            }
        }
    }
    for (_, events) in &histories {
        for e in events {
            if e.commit
                .as_deref()
                .is_some_and(|c| c.eq_ignore_ascii_case(commit))
            {
                found
                    .entry(e.digest)
                    .or_insert_with(|| (Vec::new(), BTreeSet::new(), None))
                    .1
                    .insert("history");
            }
        }
    }
    for (digest, (tags, matched_by, manifest)) in found {
        let mut t = match store {
            Some((store, repo)) => {
                let pinned = repo.pinned(digest);
                let raw = match manifest {
                    Some(m) => Some(m),
                    // found through a history only: the repository may still hold it by digest
                    None => store.fetch_manifest(ManifestRef::Digest(&digest)).await?,
                };
                match raw {
                    Some(raw) => trace_manifest(store, &pinned, &raw, opts, &histories).await?,
                    None => {
                        let mut t = bare(digest, &histories);
                        t.reference = Some(pinned.to_string());
                        t.warnings.push(format!(
                            "{} does not hold {digest} (a history records it)",
                            store.name()
                        ));
                        t
                    }
                }
            }
            None => bare(digest, &histories),
        };
        t.tags = tags;
        t.matched_by = matched_by.into_iter().map(str::to_string).collect();
        if let Some(r) = &t.revision
            && !r.eq_ignore_ascii_case(commit)
        {
            t.warnings
                .push(format!("its revision annotation is {r}, not {commit}"));
        }
        out.digests.push(t);
    }
    Ok(out)
}

/// Whether `digest` has a provenance statement verified under `keys`, bound to it, naming `commit`.
async fn provenance_names(
    store: &dyn Store,
    digest: &Digest,
    keys: &[TrustedKey],
    commit: &str,
) -> Result<bool> {
    let (layers, _) = evidence::read(
        store,
        digest,
        Kind::Attestation,
        dsse::MAX_ENVELOPE_SIZE as u64,
    )
    .await?;
    Ok(layers.iter().any(|l| {
        check_envelope(&l.bytes, keys, digest, slsa::PREDICATE_TYPE).is_ok_and(|(_, st, _)| {
            slsa::parse(&st.predicate)
                .ok()
                .and_then(|p| p.commit().map(|c| c.eq_ignore_ascii_case(commit)))
                .unwrap_or(false)
        })
    }))
}

/// A digest a commit search found: its tags, how it was found, its manifest (when a tag gave it).
type Found = (Vec<String>, BTreeSet<&'static str>, Option<RawManifest>);

type Histories = Vec<(PathBuf, Vec<history::Event>)>;

/// Reads each target's history (oldest first). A folder that is not a deploy target is a usage error.
fn read_histories(targets: &[PathBuf]) -> Result<Histories> {
    targets
        .iter()
        .map(|dir| {
            let t = Target::open(dir, false)?;
            let (events, _) = history::read(&t.history_path())?;
            Ok((dir.clone(), events))
        })
        .collect()
}

/// A trace with nothing from a registry: only the environments.
fn bare(digest: Digest, histories: &Histories) -> DigestTrace {
    DigestTrace {
        reference: None,
        digest,
        tags: Vec::new(),
        matched_by: Vec::new(),
        media_type: None,
        revision: None,
        source: None,
        version: None,
        created: None,
        evidence: None,
        environments: Vec::new(),
        warnings: Vec::new(),
    }
    .with_environments(histories)
}

impl DigestTrace {
    fn with_environments(mut self, histories: &Histories) -> Self {
        for (dir, events) in histories {
            let mine: Vec<&history::Event> =
                events.iter().filter(|e| e.digest == self.digest).collect();
            let switches: Vec<&&history::Event> = mine.iter().filter(|e| e.switched()).collect();
            let (Some(first), Some(last)) = (switches.first(), switches.last()) else {
                continue;
            };
            let target = Target::open(dir, false);
            let current = target
                .as_ref()
                .ok()
                .and_then(|t| t.current().ok().flatten())
                == Some(self.digest);
            let env = target
                .ok()
                .and_then(|t| t.env().ok().flatten())
                .unwrap_or_else(|| first.env.clone());
            self.environments.push(EnvFacts {
                env,
                target: dir.clone(),
                current,
                first: first.time.clone(),
                last: last.time.clone(),
                events: mine
                    .iter()
                    .map(|e| EnvEvent {
                        time: e.time.clone(),
                        action: e.action,
                        status: e.status.clone(),
                        who: e.who.clone(),
                        commit: e.commit.clone(),
                    })
                    .collect(),
            });
            if let Some(rev) = &self.revision {
                for e in &mine {
                    if let Some(c) = &e.commit
                        && !c.eq_ignore_ascii_case(rev)
                    {
                        self.warnings.push(format!(
                            "{} history records commit {c} for it at {}, but its revision annotation is {rev}",
                            dir.display(),
                            e.time
                        ));
                        break;
                    }
                }
            }
        }
        self
    }
}

fn manifest_annotations(raw: &RawManifest) -> BTreeMap<String, String> {
    match raw.parse() {
        Ok(Manifest::Image(m)) => m.annotations.unwrap_or_default(),
        Ok(Manifest::Index(i)) => i.annotations.unwrap_or_default(),
        Err(_) => BTreeMap::new(),
    }
}

/// Traces one resolved manifest: its annotations, its evidence (one read), its environments.
async fn trace_manifest(
    store: &dyn Store,
    reference: &Reference,
    raw: &RawManifest,
    opts: &TraceOptions,
    histories: &Histories,
) -> Result<DigestTrace> {
    let digest = raw.digest();
    // the manifest must parse (resolve already checked its digest)
    raw.parse()?;
    let ann = manifest_annotations(raw);
    let mut read = evidence::read_kinds(
        store,
        &digest,
        &[
            (Kind::Signature, simplesigning::MAX_PAYLOAD_SIZE as u64),
            (Kind::Attestation, dsse::MAX_ENVELOPE_SIZE as u64),
        ],
    )
    .await?;
    let (att_layers, att_skipped) = read.pop().expect("two kinds asked");
    let (sig_layers, sig_skipped) = read.pop().expect("two kinds asked");
    let revision = ann.get(annotations::REVISION).cloned();
    let mut ev = EvidenceFacts {
        keys: opts.keys.iter().map(|k| k.name.clone()).collect(),
        ..EvidenceFacts::default()
    };
    for reason in sig_skipped.into_iter().chain(att_skipped) {
        ev.ignored.push(Ignored {
            manifest: None,
            layer: None,
            reason,
        });
    }
    for l in &sig_layers {
        signature_fact(l, &digest, &opts.keys, &mut ev);
    }
    for l in &att_layers {
        attestation_fact(l, &digest, &opts.keys, revision.as_deref(), &mut ev);
    }
    let mut warnings = Vec::new();
    for p in &ev.provenance {
        if p.commit_matches_revision == Some(false) {
            warnings.push(format!(
                "{} provenance (layer {} of {}) names commit {}, but the revision annotation is {}",
                if p.check.verified {
                    "verified"
                } else {
                    "unverified"
                },
                p.at.layer,
                p.at.manifest.short(),
                p.commit.as_deref().unwrap_or("-"),
                revision.as_deref().unwrap_or("-")
            ));
        }
    }
    if ev.keys.is_empty() {
        warnings.push(
            "no keys given: nothing below is verified (add --key PUB or --policy FILE)".into(),
        );
    }
    Ok(DigestTrace {
        reference: Some(reference.pinned(digest).to_string()),
        digest,
        tags: Vec::new(),
        matched_by: Vec::new(),
        media_type: Some(raw.media_type().to_string()),
        revision,
        source: ann.get(annotations::SOURCE).cloned(),
        version: ann.get(annotations::VERSION).cloned(),
        created: ann.get(annotations::CREATED).cloned(),
        evidence: Some(ev),
        environments: Vec::new(),
        warnings,
    }
    .with_environments(histories))
}

fn at(l: &EvidenceLayer) -> Location {
    Location {
        manifest: l.manifest,
        layer: l.index,
    }
}

fn ignore(l: &EvidenceLayer, ev: &mut EvidenceFacts, reason: String) {
    ev.ignored.push(Ignored {
        manifest: Some(l.manifest),
        layer: Some(l.index),
        reason,
    });
}

fn signature_fact(l: &EvidenceLayer, digest: &Digest, keys: &[TrustedKey], ev: &mut EvidenceFacts) {
    // what the payload claims, read (capped, checked) only to decide whether it is about this digest at all
    let claimed = match simplesigning::parse(&l.bytes) {
        Ok(p) => p,
        Err(e) => return ignore(l, ev, format!("not a simple-signing payload: {e}")),
    };
    if claimed.manifest_digest != digest.to_string() {
        return ignore(
            l,
            ev,
            format!(
                "a signature payload for {}, not this digest",
                claimed.manifest_digest
            ),
        );
    }
    let check = if keys.is_empty() {
        Check {
            unverified_reason: Some(
                "no keys given, and a cosign signature does not name its signer".into(),
            ),
            ..Check::default()
        }
    } else {
        match check_layer(
            &l.bytes,
            l.desc.annotation(simplesigning::SIGNATURE_ANNOTATION),
            keys,
            digest,
        ) {
            Ok((k, _)) => Check {
                verified: true,
                keys: vec![keys[k].name.clone()],
                key_ids: vec![keys[k].key.key_id().to_string()],
                ..Check::default()
            },
            Err(reason) => Check {
                unverified_reason: Some(reason),
                ..Check::default()
            },
        }
    };
    ev.signatures.push(SignatureFact { at: at(l), check });
}

fn attestation_fact(
    l: &EvidenceLayer,
    digest: &Digest,
    keys: &[TrustedKey],
    revision: Option<&str>,
    ev: &mut EvidenceFacts,
) {
    let envelope = match dsse::parse(&l.bytes) {
        Ok(e) => e,
        Err(e) => return ignore(l, ev, format!("not a DSSE envelope: {e}")),
    };
    if let Err(e) = dsse::check_intoto(&envelope) {
        return ignore(l, ev, e.to_string());
    }
    let statement = match intoto::parse(&envelope.payload) {
        Ok(s) => s,
        Err(e) => return ignore(l, ev, format!("not an in-toto statement: {e}")),
    };
    if !statement.binds(&digest.hex()) {
        return ignore(
            l,
            ev,
            format!(
                "a {} statement about another digest",
                statement.predicate_type
            ),
        );
    }
    let claimed_key_ids: Vec<String> = envelope
        .signatures
        .iter()
        .filter(|s| !s.keyid.is_empty())
        .map(|s| s.keyid.clone())
        .collect();
    let check = if keys.is_empty() {
        Check {
            claimed_key_ids,
            unverified_reason: Some("no keys given".into()),
            ..Check::default()
        }
    } else {
        // the same check verify-attestation makes, for the statement's own type
        match check_envelope(&l.bytes, keys, digest, &statement.predicate_type) {
            Ok((who, _, _)) => Check {
                verified: true,
                keys: who.iter().map(|&i| keys[i].name.clone()).collect(),
                key_ids: who
                    .iter()
                    .map(|&i| keys[i].key.key_id().to_string())
                    .collect(),
                claimed_key_ids,
                unverified_reason: None,
            },
            Err(reason) => Check {
                claimed_key_ids,
                unverified_reason: Some(reason),
                ..Check::default()
            },
        }
    };
    let t = statement.predicate_type.as_str();
    let p = &statement.predicate;
    let same = |d: &str| d == digest.to_string();
    if intoto::predicate_type_matches(t, slsa::PREDICATE_TYPE) {
        match slsa::parse(p) {
            Ok(prov) => {
                let commit = prov.commit().map(str::to_string);
                ev.provenance.push(ProvenanceFact {
                    at: at(l),
                    check,
                    builder_id: prov.builder_id().to_string(),
                    build_type: prov.build_type().to_string(),
                    source_uri: prov.source_uri().map(str::to_string),
                    commit_matches_revision: match (&commit, revision) {
                        (Some(c), Some(r)) => Some(c.eq_ignore_ascii_case(r)),
                        _ => None,
                    },
                    commit,
                    invocation_id: prov.invocation_id().map(str::to_string),
                });
            }
            Err(e) => ignore(l, ev, format!("not valid SLSA provenance: {e}")),
        }
    } else if intoto::predicate_type_matches(t, cyclonedx::PREDICATE_TYPE) {
        match cyclonedx::parse_minimal(p) {
            Ok(b) => ev.sboms.push(SbomFact {
                at: at(l),
                check,
                format: "cyclonedx".into(),
                components: b.component_count,
            }),
            Err(e) => ignore(l, ev, format!("not a valid CycloneDX SBOM: {e}")),
        }
    } else if intoto::predicate_type_matches(t, spdx::PREDICATE_TYPE) {
        match spdx::parse_minimal(p) {
            Ok(s) => ev.sboms.push(SbomFact {
                at: at(l),
                check,
                format: "spdx".into(),
                components: s.file_count + s.package_count,
            }),
            Err(e) => ignore(l, ev, format!("not a valid SPDX document: {e}")),
        }
    } else if t == promotion::PROMOTION_TYPE {
        match promotion::parse_promotion(p) {
            Ok(pr) if same(&pr.digest) => ev.promotions.push(PromotionFact {
                at: at(l),
                check,
                from: pr.from,
                to: pr.to,
                promoted_at: pr.promoted_at,
                promoted_by: pr.promoted_by,
            }),
            Ok(pr) => ignore(
                l,
                ev,
                format!("a promotion of {}, not this digest", pr.digest),
            ),
            Err(e) => ignore(l, ev, format!("not a valid promotion statement: {e}")),
        }
    } else if t == promotion::DEPLOYMENT_TYPE {
        match promotion::parse_deployment(p) {
            Ok(d) if same(&d.digest) => ev.deployments.push(DeploymentFact {
                at: at(l),
                check,
                environment: d.environment,
                deployed_at: d.deployed_at,
                deployed_by: d.deployed_by,
                target: d.target,
            }),
            Ok(d) => ignore(
                l,
                ev,
                format!("a deployment record of {}, not this digest", d.digest),
            ),
            Err(e) => ignore(l, ev, format!("not a valid deployment record: {e}")),
        }
    } else if t == revocation::PREDICATE_TYPE {
        match revocation::parse(p) {
            Ok(r) if same(&r.digest) => ev.revocations.push(RevocationFact {
                at: at(l),
                check,
                reason: r.reason,
                revoked_at: r.revoked_at,
            }),
            Ok(r) => ignore(
                l,
                ev,
                format!("a revocation of {}, not this digest", r.digest),
            ),
            Err(e) => ignore(l, ev, format!("not a valid revocation: {e}")),
        }
    } else {
        ev.other.push(OtherFact {
            at: at(l),
            check,
            predicate_type: t.to_string(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits() {
        let c = "1111111111111111111111111111111111111111";
        assert_eq!(parse_commit(c).as_deref(), Some(c));
        assert_eq!(
            parse_commit(&"AB".repeat(20)).as_deref(),
            Some("ab".repeat(20).as_str())
        );
        assert!(parse_commit(&"a".repeat(64)).is_some());
        for bad in [
            "",
            "v1",
            &"g".repeat(40),
            &"a".repeat(39),
            "registry:5000/app:v1",
        ] {
            assert!(parse_commit(bad).is_none(), "{bad}");
        }
    }
}
