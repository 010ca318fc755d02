//! The command line: clap definitions, one handler per command, human and `--json` output, progress bars.
//! This is the only part of sealpack that prints or reads the terminal.

mod attest;
mod copy;
mod deploy;
mod docs;
mod gc;
mod output;
mod password;
mod trace;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use sealpack::artifact::{archive, inspect, pull, push};
use sealpack::store::{self, ClientOptions, Credentials, RegistryClient, StoreOptions};
use sealpack::{Error, Reference, Result, keys};

/// Build once, deploy the same bytes many times: push build artifacts to any OCI registry (or an OCI layout
/// folder) content-addressed, pull them back with every digest checked.
#[derive(Debug, Parser)]
#[command(name = "sealpack", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes (before or after the subcommand).
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Talk plain HTTP to the registry instead of HTTPS (as oras's --plain-http)
    #[arg(long, global = true)]
    pub plain_http: bool,
    /// Trust this extra CA certificate (PEM) for registry TLS; may be repeated
    #[arg(long = "ca-file", value_name = "PATH", global = true)]
    pub ca_files: Vec<PathBuf>,
    /// Skip TLS certificate verification (never for production)
    #[arg(long, global = true)]
    pub insecure: bool,
    /// Per-host registry settings (JSON: {"HOST": {"plain_http": bool, "ca_file": PATH, "insecure": bool}})
    #[arg(long, value_name = "PATH", global = true)]
    pub registry_config: Option<PathBuf>,
    /// Registry user name (with --password-stdin); wins over ~/.docker/config.json
    #[arg(long, global = true, requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the registry password from standard input (with --username)
    #[arg(long, global = true, requires = "username")]
    pub password_stdin: bool,
    /// Print one JSON document on stdout instead of text
    #[arg(long, global = true)]
    pub json: bool,
    /// More detail on stderr
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// No progress bars or notes on stderr (errors still go there)
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pack files and folders into an OCI artifact and upload it; prints REPO@sha256:...
    Push(PushArgs),
    /// Download an artifact, check every digest, and write its files into a folder
    Pull(PullArgs),
    /// Print the digest a reference points to
    Resolve(RefArgs),
    /// Show a manifest: its files, sizes, annotations and attached evidence
    Inspect(RefArgs),
    /// Create a cosign-compatible key pair: PREFIX.key (encrypted, mode 0600) and PREFIX.pub
    Keygen(KeygenArgs),
    /// Sign the manifest digest a reference points to (cosign's .sig format); prints REPO@sha256:...
    Sign(SignArgs),
    /// The gate: exit 0 only if a signature by one of the keys verifies for the exact digest
    Verify(VerifyArgs),
    /// Attach a signed in-toto attestation (DSSE): SLSA provenance, an SBOM, or any predicate
    Attest(AttestArgs),
    /// Exit 0 only if a statement of that exact type, signed by one of the keys, is about the exact digest
    VerifyAttestation(VerifyAttestationArgs),
    /// Sign a statement that a digest must never deploy again; every verify trusting the key denies it
    Revoke(RevokeArgs),
    /// Copy an artifact with all its evidence (registry <-> registry <-> layout); prints REPO@sha256:...
    Copy(copy::CopyArgs),
    /// Verify, fetch by digest, install into TARGET/releases/<digest> and switch TARGET/current atomically
    Deploy(deploy::DeployArgs),
    /// Move the digest one environment runs to the next: re-verified, signed promotion statement, deployed
    Promote(deploy::PromoteArgs),
    /// Switch a target back to its last known good release (re-verified; revoked ones are skipped)
    Rollback(deploy::RollbackArgs),
    /// What ran where, when, from which commit (newest first)
    History(deploy::HistoryArgs),
    /// The audit view: a digest's commit, builder, evidence and environments, or a commit's digests
    Trace(trace::TraceArgs),
    /// Delete all but the N newest digests of a repository, never a released, deployed or promoted one
    Gc(gc::GcArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions(docs::CompletionsArgs),
    /// Print the man page, or write every command's page (roff or Markdown) into a folder
    Man(docs::ManArgs),
}

/// `revoke` arguments.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// What to revoke: REPO:TAG, REPO@sha256:..., or oci:PATH:TAG (the digest it resolves to is revoked)
    #[arg(value_name = "REF")]
    pub reference: String,
    /// The private key (password from SEALPACK_PASSWORD, COSIGN_PASSWORD or a prompt)
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,
    /// Why the digest must not deploy (recorded in the signed statement)
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// Accept an unencrypted private key that other users can read
    #[arg(long)]
    pub allow_insecure_key: bool,
}

/// `attest` arguments.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["provenance", "sbom", "predicate"])))]
pub struct AttestArgs {
    /// What to attest: REPO:TAG, REPO@sha256:..., or oci:PATH:TAG
    #[arg(value_name = "REF")]
    pub reference: String,
    /// The private key (password from SEALPACK_PASSWORD, COSIGN_PASSWORD or a prompt)
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,
    /// SLSA provenance v1 from git and the CI environment (GitHub Actions, GitLab CI, or local)
    #[arg(long)]
    pub provenance: bool,
    /// An SBOM listing every file of the artifact with its sha256
    #[arg(long)]
    pub sbom: bool,
    /// SBOM format
    #[arg(long, value_name = "FORMAT", default_value = "cyclonedx", value_parser = ["cyclonedx", "spdx"], requires = "sbom")]
    pub sbom_format: String,
    /// A predicate JSON file (e.g. a vulnerability scan result), with --type
    #[arg(long, value_name = "FILE", requires = "predicate_type")]
    pub predicate: Option<PathBuf>,
    /// The predicate type URI for --predicate (or slsaprovenance, cyclonedx, spdx, vuln)
    #[arg(long = "type", value_name = "URI")]
    pub predicate_type: Option<String>,
    /// Provenance: the source as git+URL@REF (default: from CI, else the work tree's origin and ref)
    #[arg(long, value_name = "URI")]
    pub source_uri: Option<String>,
    /// Provenance: the commit built (default: from CI, else git rev-parse HEAD)
    #[arg(long, value_name = "SHA")]
    pub commit: Option<String>,
    /// Provenance: the builder id (default: the CI workflow, else local://HOST)
    #[arg(long, value_name = "ID")]
    pub builder_id: Option<String>,
    /// Provenance: the build type URI
    #[arg(long, value_name = "URI")]
    pub build_type: Option<String>,
    /// Provenance: the CI run's id
    #[arg(long, value_name = "ID")]
    pub invocation_id: Option<String>,
    /// Provenance: allow a work tree with uncommitted changes (it is not the commit it claims)
    #[arg(long)]
    pub allow_dirty: bool,
    /// Accept an unencrypted private key that other users can read
    #[arg(long)]
    pub allow_insecure_key: bool,
}

/// `verify-attestation` arguments.
#[derive(Debug, Args)]
pub struct VerifyAttestationArgs {
    /// What to verify: REPO:TAG, REPO@sha256:..., or oci:PATH:TAG
    #[arg(value_name = "REF")]
    pub reference: String,
    /// A trusted public key (PEM); may be repeated
    #[arg(long, value_name = "PUB", required = true)]
    pub key: Vec<PathBuf>,
    /// The predicate type: a URI, or slsaprovenance, cyclonedx, spdx, vuln
    #[arg(long = "type", value_name = "URI")]
    pub predicate_type: String,
}

/// `keygen` arguments.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Key type
    #[arg(long = "type", value_name = "TYPE", default_value = "ecdsa-p256", value_parser = ["ecdsa-p256", "ed25519"])]
    pub key_type: String,
    /// Write PREFIX.key and PREFIX.pub (never overwritten)
    #[arg(long, value_name = "PREFIX", default_value = "cosign")]
    pub out: PathBuf,
}

/// `sign` arguments.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// What to sign: REPO:TAG, REPO@sha256:..., or oci:PATH:TAG (any manifest or index)
    #[arg(value_name = "REF")]
    pub reference: String,
    /// The private key (cosign's encrypted format; password from SEALPACK_PASSWORD, COSIGN_PASSWORD or a prompt)
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,
    /// An annotation KEY=VALUE for the signed payload's `optional` section; may be repeated
    #[arg(long = "annotation", short = 'a', value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
    /// Accept an unencrypted private key that other users can read
    #[arg(long)]
    pub allow_insecure_key: bool,
}

/// `verify` arguments.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// What to verify: REPO:TAG, REPO@sha256:..., or oci:PATH:TAG
    #[arg(value_name = "REF")]
    pub reference: String,
    /// The gate: trusted keys, or a policy file
    #[command(flatten)]
    pub gate: deploy::GateArgs,
}

/// `push` arguments.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Files and folders to pack (a folder becomes one deterministic tar+gzip layer)
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Where to push: HOST[:PORT]/REPO:TAG or oci:PATH:TAG
    #[arg(long, value_name = "REF")]
    pub to: String,
    /// The manifest's artifactType
    #[arg(long, value_name = "TYPE")]
    pub artifact_type: Option<String>,
    /// Media type of file layers (default application/octet-stream)
    #[arg(long, value_name = "TYPE")]
    pub media_type: Option<String>,
    /// Push each folder as one layer per file (titled FOLDER/PATH), hashed and uploaded in parallel
    #[arg(long)]
    pub layer_per_file: bool,
    /// A manifest annotation KEY=VALUE; may be repeated
    #[arg(long = "annotation", short = 'a', value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
    /// The git commit the artifact was built from (default: HEAD of the current work tree)
    #[arg(long, value_name = "SHA")]
    pub commit: Option<String>,
    /// Creation time (RFC 3339) for org.opencontainers.image.created (default: SOURCE_DATE_EPOCH, else the commit time)
    #[arg(long, value_name = "TIME")]
    pub created: Option<String>,
    /// Move the tag even if it already points at a different digest
    #[arg(long)]
    pub allow_overwrite: bool,
    /// Allow pushing to the tag `latest`
    #[arg(long)]
    pub allow_latest: bool,
    /// Let a secret-scan finding through: PATH inside the artifact (e.g. site/.env), PATH:LINE or PATH:RULE;
    /// a PATH ending in / covers the folder; may be repeated
    #[arg(long = "allow-secret", value_name = "PATH[:LINE|:RULE]")]
    pub allow_secrets: Vec<String>,
    /// Hash every file before sending any byte of it. By default a file of 16 MiB or more going to a new tag
    /// of a registry is sent while it is hashed (scanned first, never ahead of the secret scan); if the registry
    /// turns out to have it already, the bytes sent are thrown away. With this flag such a push sends nothing
    #[arg(long)]
    pub hash_first: bool,
}

/// `pull` arguments.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// What to pull: REPO:TAG, REPO@sha256:..., or oci:PATH:TAG
    #[arg(value_name = "REF")]
    pub reference: String,
    /// Output folder (created if missing; existing files are never overwritten)
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    pub output: PathBuf,
}

/// Arguments of commands that take one reference.
#[derive(Debug, Args)]
pub struct RefArgs {
    /// REPO:TAG, REPO@sha256:..., or oci:PATH[:TAG|@DIGEST]
    #[arg(value_name = "REF")]
    pub reference: String,
}

/// Everything a handler needs from the global flags.
struct Ctx {
    store_opts: StoreOptions,
    json: bool,
    quiet: bool,
}

fn parse_ref(s: &str) -> Result<Reference> {
    Ok(Reference::parse(s)?)
}

fn parse_annotations(list: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for a in list {
        let (k, v) = a
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| Error::usage(format!("--annotation {a:?} is not KEY=VALUE")))?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

fn client_options(g: &GlobalArgs) -> Result<ClientOptions> {
    let credentials = match (&g.username, g.password_stdin) {
        (Some(u), true) => {
            let mut pw = String::new();
            std::io::stdin()
                .take(64 * 1024)
                .read_to_string(&mut pw)
                .map_err(|e| Error::io("reading the password from", "standard input", e))?;
            let pw = pw.trim_end_matches(['\n', '\r']).to_string();
            if pw.is_empty() {
                return Err(Error::usage("--password-stdin read an empty password"));
            }
            Some(Credentials::UserPassword {
                username: u.clone(),
                password: pw,
            })
        }
        _ => None,
    };
    let mut opts = ClientOptions {
        plain_http: g.plain_http,
        ca_files: g.ca_files.clone(),
        insecure: g.insecure,
        credentials,
        no_docker_config: false,
        cache_dir: cache_dir(),
        hosts: BTreeMap::new(),
        retry: store::RetryOptions::from_env(|k| std::env::var(k).ok())?,
    };
    if let Some(path) = &g.registry_config {
        output::apply_registry_config(path, &mut opts)?;
    }
    Ok(opts)
}

/// The cache folder: `SEALPACK_CACHE_DIR`, else the user's cache folder; `SEALPACK_NO_CACHE=1` disables caching.
fn cache_dir() -> Option<PathBuf> {
    if std::env::var_os("SEALPACK_NO_CACHE").is_some_and(|v| v == "1") {
        return None;
    }
    match std::env::var_os("SEALPACK_CACHE_DIR") {
        Some(d) if !d.is_empty() => Some(PathBuf::from(d)),
        _ => sealpack::cache::default_dir(),
    }
}

/// Parses the command line, runs the command, and returns the process exit code.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let quiet = cli.global.quiet;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot start the async runtime");
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            output::print_error(&e, quiet);
            std::process::ExitCode::from(output::exit_code(&e))
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let client = Arc::new(RegistryClient::new(client_options(&cli.global)?)?);
    let ctx = Ctx {
        store_opts: StoreOptions { client },
        json: cli.global.json,
        quiet: cli.global.quiet,
    };
    match cli.command {
        Command::Push(a) => cmd_push(&ctx, a).await,
        Command::Pull(a) => cmd_pull(&ctx, a).await,
        Command::Resolve(a) => cmd_resolve(&ctx, a).await,
        Command::Inspect(a) => cmd_inspect(&ctx, a).await,
        Command::Keygen(a) => cmd_keygen(&ctx, a),
        Command::Sign(a) => cmd_sign(&ctx, a).await,
        Command::Verify(a) => cmd_verify(&ctx, a).await,
        Command::Attest(a) => attest::cmd_attest(&ctx, a).await,
        Command::VerifyAttestation(a) => attest::cmd_verify_attestation(&ctx, a).await,
        Command::Revoke(a) => attest::cmd_revoke(&ctx, a).await,
        Command::Copy(a) => copy::cmd_copy(&ctx, a).await,
        Command::Deploy(a) => deploy::cmd_deploy(&ctx, a).await,
        Command::Promote(a) => deploy::cmd_promote(&ctx, a).await,
        Command::Rollback(a) => deploy::cmd_rollback(&ctx, a).await,
        Command::History(a) => deploy::cmd_history(&ctx, a),
        Command::Trace(a) => trace::cmd_trace(&ctx, a).await,
        Command::Gc(a) => gc::cmd_gc(&ctx, a).await,
        Command::Completions(a) => docs::cmd_completions(a),
        Command::Man(a) => docs::cmd_man(a),
    }
}

async fn cmd_push(ctx: &Ctx, a: PushArgs) -> Result<()> {
    let target = parse_ref(&a.to)?;
    push::check_push_tag(&target, a.allow_latest)?;
    let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) if !s.is_empty() => Some(s.trim().parse::<i64>().map_err(|_| {
            Error::usage(format!(
                "SOURCE_DATE_EPOCH={s:?} is not a whole number of seconds"
            ))
        })?),
        _ => None,
    };
    let opts = push::PushOptions {
        artifact_type: a.artifact_type,
        file_media_type: a.media_type,
        layer_per_file: a.layer_per_file,
        annotations: parse_annotations(&a.annotations)?,
        commit: a.commit,
        created: a.created,
        source_date_epoch,
        allow_overwrite: a.allow_overwrite,
        allow_latest: a.allow_latest,
        work_dir: std::env::current_dir()
            .map_err(|e| Error::io("reading", "the current folder", e))?,
        temp_dir: None,
        digest_cache: cache_dir().map(|d| sealpack::cache::DigestCache::new(&d)),
        hash_first: a.hash_first,
        allow_secrets: a
            .allow_secrets
            .iter()
            .map(|s| {
                sealpack::artifact::secrets::Allow::parse(s)
                    .map_err(|why| Error::usage(format!("--allow-secret {s:?}: {why}")))
            })
            .collect::<Result<_>>()?,
    };
    let store = store::open(&target, &ctx.store_opts, true).await?;
    let bars = output::Bars::new(ctx.quiet);
    let report = push::push(store.as_ref(), &target, &a.paths, &opts, &bars).await?;
    // allowed findings are shown even with -q and --json: a secret should never go out unremarked
    for f in &report.allowed_secrets {
        output::note(&format!("note: allowed by --allow-secret: {f}"));
    }
    if ctx.json {
        return output::json(&report);
    }
    if !ctx.quiet {
        let present = report
            .layers
            .iter()
            .filter(|l| l.transfer != push::Transfer::Uploaded)
            .count();
        output::note(&format!(
            "{} layer(s), {} uploaded, {present} already present{}{}",
            report.layers.len(),
            output::human_bytes(report.bytes_uploaded),
            if report.unchanged {
                " (the tag already pointed at this digest)"
            } else {
                ""
            },
            if report.discarded_bytes > 0 {
                format!(
                    " ({} sent while hashing were thrown away: the registry had them; --hash-first avoids that)",
                    output::human_bytes(report.discarded_bytes)
                )
            } else {
                String::new()
            }
        ));
    }
    output::line(&report.reference)
}

async fn cmd_pull(ctx: &Ctx, a: PullArgs) -> Result<()> {
    let reference = parse_ref(&a.reference)?;
    let store = store::open(&reference, &ctx.store_opts, false).await?;
    let bars = output::Bars::new(ctx.quiet);
    let report = pull::pull(
        store.as_ref(),
        &reference,
        &a.output,
        &archive::Limits::default(),
        &bars,
    )
    .await?;
    if ctx.json {
        return output::json(&report);
    }
    if !ctx.quiet {
        for f in &report.files {
            output::note(&format!(
                "{}  {}  {}",
                f.digest.short(),
                output::human_bytes(f.size),
                f.path.display()
            ));
        }
    }
    output::line(&report.reference)
}

async fn cmd_resolve(ctx: &Ctx, a: RefArgs) -> Result<()> {
    let reference = parse_ref(&a.reference)?;
    let store = store::open(&reference, &ctx.store_opts, false).await?;
    let raw = store::resolve(store.as_ref(), &reference).await?;
    if ctx.json {
        return output::json(&serde_json::json!({
            "reference": reference.pinned(raw.digest()).to_string(),
            "digest": raw.digest(),
            "media_type": raw.media_type(),
            "size": raw.bytes().len(),
        }));
    }
    output::line(&raw.digest().to_string())
}

async fn cmd_inspect(ctx: &Ctx, a: RefArgs) -> Result<()> {
    let reference = parse_ref(&a.reference)?;
    let store = store::open(&reference, &ctx.store_opts, false).await?;
    let report = inspect::inspect(store.as_ref(), &reference).await?;
    if ctx.json {
        return output::json(&report);
    }
    output::print_inspect(&report)
}

fn cmd_keygen(ctx: &Ctx, a: KeygenArgs) -> Result<()> {
    let key_type: keys::KeyType = a
        .key_type
        .parse()
        .map_err(|e: keys::KeyError| Error::usage(e.to_string()))?;
    let key = keys::PrivateKey::generate(key_type)?;
    let pw = password::for_new_key()?;
    let (key_path, pub_path) = keys::write_key_pair(&a.out, &key, &pw)?;
    if ctx.json {
        return output::json(&serde_json::json!({
            "private_key": key_path,
            "public_key": pub_path,
            "key_id": key.key_id().to_string(),
            "type": key_type.as_str(),
        }));
    }
    if !ctx.quiet {
        output::note(&format!(
            "private key written to {} (mode 0600); keep it secret",
            key_path.display()
        ));
        output::note(&format!("key id {}", key.key_id()));
    }
    output::line(&pub_path.display().to_string())
}

async fn cmd_sign(ctx: &Ctx, a: SignArgs) -> Result<()> {
    let reference = parse_ref(&a.reference)?;
    let annotations = parse_annotations(&a.annotations)?;
    // the key (and its password) before any network work
    let key = keys::load_private_key_file(
        &a.key,
        &mut password::for_existing_key,
        a.allow_insecure_key,
    )?;
    let store = store::open(&reference, &ctx.store_opts, true).await?;
    let report = sealpack::sign::sign(store.as_ref(), &reference, &key, &annotations).await?;
    if ctx.json {
        return output::json(&report);
    }
    if !ctx.quiet {
        output::note(&format!(
            "{} by key {} in {} ({} signature(s) there)",
            if report.added {
                "signed"
            } else {
                "already signed"
            },
            &report.key_id[..12],
            report.signature_tag,
            report.signatures
        ));
    }
    output::line(&report.reference)
}

/// Loads `--key PUB` files as trusted keys named by their paths.
fn trusted_keys(paths: &[PathBuf]) -> Result<Vec<sealpack::verify::TrustedKey>> {
    paths
        .iter()
        .map(|path| {
            Ok(sealpack::verify::TrustedKey {
                name: path.display().to_string(),
                key: keys::load_public_key_file(path)?,
            })
        })
        .collect()
}

async fn cmd_verify(ctx: &Ctx, a: VerifyArgs) -> Result<()> {
    let reference = parse_ref(&a.reference)?;
    if let Some(path) = &a.gate.policy {
        return verify_with_policy(ctx, &reference, path).await;
    }
    let trusted = trusted_keys(&a.gate.key)?;
    let store = store::open(&reference, &ctx.store_opts, false).await?;
    let report = sealpack::verify::verify_signatures(store.as_ref(), &reference, &trusted).await?;
    if ctx.json {
        return output::json(&report);
    }
    if !ctx.quiet {
        for v in &report.verified {
            output::note(&format!(
                "verified: signature {} of {} by {} ({})",
                v.layer,
                v.manifest.short(),
                v.key,
                &v.key_id[..12]
            ));
        }
    }
    output::line(&report.reference)
}

async fn verify_with_policy(
    ctx: &Ctx,
    reference: &Reference,
    path: &std::path::Path,
) -> Result<()> {
    let policy = sealpack::verify::policy::Policy::load(path)?;
    let store = store::open(reference, &ctx.store_opts, false).await?;
    let report = sealpack::verify::verify_policy(
        store.as_ref(),
        reference,
        &policy,
        time::OffsetDateTime::now_utc(),
    )
    .await?;
    if ctx.json {
        output::json(&report)?;
    } else if !ctx.quiet {
        output::note(&format!(
            "policy {}: rule {}",
            path.display(),
            report.decision.rule.as_deref().unwrap_or("(none matches)")
        ));
        for r in &report.decision.results {
            output::note(&format!(
                "  {} {}: expected {}, found {}",
                if r.ok { "ok  " } else { "FAIL" },
                r.rule,
                r.expected,
                r.found
            ));
        }
    }
    if !report.decision.allowed {
        return Err(Error::Denied {
            subject: report.reference.clone(),
            reasons: report.decision.reasons(),
        });
    }
    if ctx.json {
        return Ok(());
    }
    output::line(&report.reference)
}
