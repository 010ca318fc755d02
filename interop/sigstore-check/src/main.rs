//! sigstore-check: an independent cosign interop checker built on sigstore-rs (the `sigstore` crate).
//!
//! TEST-ONLY. sealpack's integration tests use it to prove that
//!   (a) sigstore-rs verifies cosign `.sig` signatures that sealpack made, and
//!   (b) sealpack verifies cosign `.sig` signatures that sigstore-rs made and pushed.
//! It is never a dependency of sealpack itself.
//!
//! Exit codes: 0 success, 1 verification failed, 2 usage or any other error.
//! On failure a one-line reason is printed on stderr.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use sigstore::cosign::constraint::{AnnotationMarker, PrivateKeySigner, SignConstraintVec};
use sigstore::cosign::verification_constraint::{
    AnnotationVerifier, PublicKeyVerifier, VerificationConstraintVec,
};
use sigstore::cosign::{
    apply_constraints, verify_constraints, ClientBuilder, CosignCapabilities, SignatureLayer,
};
use sigstore::crypto::signing_key::ecdsa::ECDSAKeys;
use sigstore::crypto::signing_key::SigStoreKeyPair;
use sigstore::crypto::{CosignVerificationKey, SigningScheme};
use sigstore::registry::{
    Auth, Certificate, CertificateEncoding, ClientConfig, ClientProtocol, OciReference,
};

const USAGE: &str = "\
usage:
  sigstore-check verify --image HOST:PORT/REPO@sha256:HEX --key PUB.pem
                        [--plain-http] [--ca-cert CA.pem] [--creds USER:PASS]
                        [--annotation K=V]... [--debug]
  sigstore-check sign   --image HOST:PORT/REPO@sha256:HEX --key KEY.pem [--password PW]
                        [--plain-http] [--ca-cert CA.pem] [--creds USER:PASS]
                        [--annotation K=V]... [--append] [--sigstore-docker-reference] [--debug]
  sigstore-check generate-key --out PREFIX --password PW [--type ecdsa-p256|ed25519]

exit codes: 0 success, 1 verification failed, 2 usage/other error";

/// Error carrying the process exit code.
struct Fail {
    code: u8,
    msg: String,
}

fn usage_err(msg: impl Into<String>) -> Fail {
    Fail {
        code: 2,
        msg: msg.into(),
    }
}
fn other_err(msg: impl Into<String>) -> Fail {
    Fail {
        code: 2,
        msg: msg.into(),
    }
}
fn verify_err(msg: impl Into<String>) -> Fail {
    Fail {
        code: 1,
        msg: msg.into(),
    }
}

#[derive(Default)]
struct Opts {
    image: Option<String>,
    key: Option<PathBuf>,
    password: Option<String>,
    plain_http: bool,
    ca_cert: Option<PathBuf>,
    creds: Option<String>,
    annotations: Vec<(String, String)>,
    append: bool,
    sigstore_docker_reference: bool,
    out: Option<PathBuf>,
    key_type: Option<String>,
    debug: bool,
}

fn parse_opts(args: &[String]) -> Result<Opts, Fail> {
    let mut o = Opts::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        // accept both `--flag value` and `--flag=value`
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut val = |name: &str| -> Result<String, Fail> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| usage_err(format!("{name} needs a value"))),
            }
        };
        match flag.as_str() {
            "--image" => o.image = Some(val("--image")?),
            "--key" => o.key = Some(PathBuf::from(val("--key")?)),
            "--password" => o.password = Some(val("--password")?),
            "--ca-cert" => o.ca_cert = Some(PathBuf::from(val("--ca-cert")?)),
            "--creds" => o.creds = Some(val("--creds")?),
            "--out" => o.out = Some(PathBuf::from(val("--out")?)),
            "--type" => o.key_type = Some(val("--type")?),
            "--annotation" | "-a" => {
                let kv = val("--annotation")?;
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| usage_err(format!("--annotation wants K=V, got {kv:?}")))?;
                o.annotations.push((k.to_string(), v.to_string()));
            }
            "--plain-http" if inline.is_none() => o.plain_http = true,
            "--append" if inline.is_none() => o.append = true,
            "--sigstore-docker-reference" if inline.is_none() => o.sigstore_docker_reference = true,
            "--debug" if inline.is_none() => o.debug = true,
            other => {
                return Err(usage_err(format!(
                    "usage: unknown argument {other:?} (see --help)"
                )))
            }
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            // exactly one line on stderr (`--help` prints the usage)
            eprintln!("sigstore-check: {}", f.msg.replace(['\n', '\r'], " "));
            ExitCode::from(f.code)
        }
    }
}

fn run(args: &[String]) -> Result<(), Fail> {
    let Some(cmd) = args.first() else {
        return Err(usage_err(
            "usage: missing command (verify | sign | generate-key)",
        ));
    };
    if cmd == "-h" || cmd == "--help" || cmd == "help" {
        println!("{USAGE}");
        return Ok(());
    }
    let opts = parse_opts(&args[1..])?;
    if opts.debug {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_max_level(tracing_subscriber::filter::LevelFilter::DEBUG)
            .init();
    }
    match cmd.as_str() {
        "verify" => runtime()?.block_on(verify(opts)),
        "sign" => runtime()?.block_on(sign(opts)),
        "generate-key" => generate_key(opts),
        other => Err(usage_err(format!("usage: unknown command {other:?}"))),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Fail> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| other_err(format!("cannot start tokio runtime: {e}")))
}

fn read(path: &Path) -> Result<Vec<u8>, Fail> {
    std::fs::read(path).map_err(|e| other_err(format!("cannot read {}: {e}", path.display())))
}

fn parse_image(opts: &Opts) -> Result<OciReference, Fail> {
    let image = opts
        .image
        .as_deref()
        .ok_or_else(|| usage_err("usage: --image is required"))?;
    image
        .parse::<OciReference>()
        .map_err(|e| usage_err(format!("usage: bad --image {image:?}: {e}")))
}

fn auth(opts: &Opts) -> Result<Auth, Fail> {
    match &opts.creds {
        None => Ok(Auth::Anonymous),
        Some(c) => {
            let (u, p) = c
                .split_once(':')
                .ok_or_else(|| usage_err("usage: --creds wants USER:PASS"))?;
            Ok(Auth::Basic(u.to_string(), p.to_string()))
        }
    }
}

/// Build a key-based, offline sigstore cosign client: no Rekor keys, no Fulcio certificates
/// (so no trust root is fetched), optionally plain HTTP for exactly the image's registry.
fn cosign_client(opts: &Opts, image: &OciReference) -> Result<sigstore::cosign::Client, Fail> {
    let mut config = ClientConfig::default();
    if opts.plain_http {
        // HttpsExcept compares against the *resolved* registry string, host:port included.
        config.protocol = ClientProtocol::HttpsExcept(vec![image.resolve_registry().to_string()]);
    }
    if let Some(ca) = &opts.ca_cert {
        config.extra_root_certificates.push(Certificate {
            encoding: CertificateEncoding::Pem,
            data: read(ca)?,
        });
    }
    ClientBuilder::default()
        .with_oci_client_config(config)
        .build()
        .map_err(|e| other_err(format!("cannot build sigstore client: {e}")))
}

fn scheme_for_public_key(pem: &[u8]) -> Result<SigningScheme, Fail> {
    let key = CosignVerificationKey::try_from_pem(pem)
        .map_err(|e| other_err(format!("cannot parse public key: {e}")))?;
    Ok(match key {
        CosignVerificationKey::ECDSA_P256_SHA256_ASN1(_) => SigningScheme::ECDSA_P256_SHA256_ASN1,
        CosignVerificationKey::ECDSA_P384_SHA384_ASN1(_) => SigningScheme::ECDSA_P384_SHA384_ASN1,
        CosignVerificationKey::ECDSA_P521_SHA512_ASN1(_) => SigningScheme::ECDSA_P521_SHA512_ASN1,
        CosignVerificationKey::ED25519(_) => SigningScheme::ED25519,
        // cosign verifies RSA keys with PKCS#1 v1.5 + SHA-256.
        CosignVerificationKey::RSA_PKCS1_SHA256(_) | CosignVerificationKey::RSA_PSS_SHA256(_) => {
            SigningScheme::RSA_PKCS1_SHA256(0)
        }
    })
}

async fn verify(opts: Opts) -> Result<(), Fail> {
    let image = parse_image(&opts)?;
    let key_path = opts
        .key
        .clone()
        .ok_or_else(|| usage_err("usage: --key is required"))?;
    let pem = read(&key_path)?;
    let scheme = scheme_for_public_key(&pem)?;
    let verifier = PublicKeyVerifier::new(&pem, &scheme).map_err(|e| {
        other_err(format!(
            "cannot load public key {}: {e}",
            key_path.display()
        ))
    })?;

    let auth = auth(&opts)?;
    let mut client = cosign_client(&opts, &image)?;

    // Resolve the subject digest and the cosign `.sig` tag (HEAD on the subject manifest).
    let (sig_ref, digest) = client
        .triangulate(&image, &auth)
        .await
        .map_err(|e| other_err(format!("cannot resolve {image}: {e}")))?;
    if let Some(want) = image.digest() {
        if want != digest {
            return Err(verify_err(format!(
                "registry returned digest {digest} for {image}, expected {want}"
            )));
        }
    }
    if opts.debug {
        eprintln!("subject {digest}; signature image {sig_ref}; key scheme {scheme}");
    }

    // Offline, key-based: no Rekor/Fulcio material, so layers are trusted only by their signature
    // (any embedded certificate/bundle is ignored). Fetch errors are logged by sigstore (--debug)
    // and yield an empty list.
    let layers: Vec<SignatureLayer> = client
        .trusted_signature_layers(&auth, &image)
        .await
        .map_err(|e| other_err(format!("cannot fetch signature layers of {image}: {e}")))?;
    if layers.is_empty() {
        return Err(verify_err(format!(
            "no cosign signature layers for {digest} (tag {sig_ref} missing, empty or unparsable; --debug shows why)"
        )));
    }

    let mut constraints: VerificationConstraintVec = vec![Box::new(verifier)];
    if !opts.annotations.is_empty() {
        let annotations: BTreeMap<String, String> = opts.annotations.iter().cloned().collect();
        constraints.push(Box::new(AnnotationVerifier { annotations }));
    }

    // verify_constraints answers "does at least one layer satisfy every constraint"; run it per
    // layer to count how many layers verified.
    let mut ok = 0usize;
    for layer in &layers {
        let all_satisfied = constraints
            .iter()
            .all(|c| verify_constraints(std::slice::from_ref(layer), std::iter::once(c)).is_ok());
        if all_satisfied {
            ok += 1;
        }
    }
    // And the library's own whole-set decision, which must agree.
    let whole = verify_constraints(&layers, constraints.iter());
    if ok == 0 || whole.is_err() {
        let unsatisfied = match whole {
            Err(e) => e
                .unsatisfied_constraints
                .iter()
                .map(|c| {
                    format!("{c:?}")
                        .split([' ', '{', '('])
                        .next()
                        .unwrap_or("?")
                        .to_string()
                })
                .collect::<Vec<_>>()
                .join(","),
            Ok(()) => "none".into(),
        };
        return Err(verify_err(format!(
            "0 of {} signature layers at {sig_ref} verified with {} (unsatisfied: {unsatisfied})",
            layers.len(),
            key_path.display()
        )));
    }
    println!("verified {ok}/{} {sig_ref}", layers.len());
    Ok(())
}

/// Load a cosign/sigstore private key file the way sigstore does.
/// `SigStoreKeyPair::from_encrypted_pem` accepts `ENCRYPTED SIGSTORE PRIVATE KEY`,
/// `ENCRYPTED COSIGN PRIVATE KEY` (scrypt + nacl secretbox) and, with an empty password,
/// a plain PKCS#8 `PRIVATE KEY`. It tries ECDSA, Ed25519 and RSA in turn and swallows the
/// individual errors ("Unsupported key type"), so on failure ask the ECDSA loader for a reason.
fn load_signing_key(path: &Path, password: &str) -> Result<(SigStoreKeyPair, SigningScheme), Fail> {
    let pem = read(path)?;
    let pair = match SigStoreKeyPair::from_encrypted_pem(&pem, password.as_bytes()) {
        Ok(p) => p,
        Err(e) => {
            // sigstore reports a failed nacl/secretbox open as
            // "Failed to encrypt the private key: aead::Error"; say what it means.
            let why = match ECDSAKeys::from_encrypted_pem(&pem, password.as_bytes()) {
                Err(e2) if e2.to_string().contains("aead") => {
                    format!("wrong password (secretbox authentication failed: {e2})")
                }
                Err(e2) => format!("{e}; ECDSA loader: {e2}"),
                Ok(_) => e.to_string(),
            };
            return Err(other_err(format!(
                "cannot load private key {}: {why}",
                path.display()
            )));
        }
    };
    let scheme = match &pair {
        SigStoreKeyPair::ECDSA(ECDSAKeys::P256(_)) => SigningScheme::ECDSA_P256_SHA256_ASN1,
        SigStoreKeyPair::ECDSA(ECDSAKeys::P384(_)) => SigningScheme::ECDSA_P384_SHA384_ASN1,
        SigStoreKeyPair::ECDSA(ECDSAKeys::P521(_)) => SigningScheme::ECDSA_P521_SHA512_ASN1,
        SigStoreKeyPair::ED25519(_) => SigningScheme::ED25519,
        SigStoreKeyPair::RSA(_) => SigningScheme::RSA_PKCS1_SHA256(0),
    };
    Ok((pair, scheme))
}

async fn sign(opts: Opts) -> Result<(), Fail> {
    let image = parse_image(&opts)?;
    let key_path = opts
        .key
        .clone()
        .ok_or_else(|| usage_err("usage: --key is required"))?;
    let password = opts
        .password
        .clone()
        .or_else(|| std::env::var("COSIGN_PASSWORD").ok())
        .unwrap_or_default();
    let (pair, scheme) = load_signing_key(&key_path, &password)?;
    let signer = pair
        .to_sigstore_signer(&scheme)
        .map_err(|e| other_err(format!("cannot build signer ({scheme}): {e}")))?;

    let auth = auth(&opts)?;
    let mut client = cosign_client(&opts, &image)?;
    let (sig_ref, digest) = client
        .triangulate(&image, &auth)
        .await
        .map_err(|e| other_err(format!("cannot resolve {image}: {e}")))?;
    if let Some(want) = image.digest() {
        if want != digest {
            return Err(other_err(format!(
                "registry returned digest {digest} for {image}, expected {want}"
            )));
        }
    }

    // The simple-signing payload for the digest.
    let mut layer = SignatureLayer::new_unsigned(&image, &digest)
        .map_err(|e| other_err(format!("cannot build simple-signing payload: {e}")))?;
    if !opts.sigstore_docker_reference {
        // sigstore-rs writes the whole reference (with @sha256:...) as docker-reference;
        // cosign writes the repository name only. Default to cosign's form.
        layer.simple_signing.critical.identity.docker_reference =
            format!("{}/{}", image.registry(), image.repository());
    }

    let mut sign_constraints: SignConstraintVec = Vec::new();
    if !opts.annotations.is_empty() {
        let annotations: HashMap<String, String> = opts.annotations.iter().cloned().collect();
        sign_constraints.push(Box::new(AnnotationMarker::new(annotations)));
    }
    // PrivateKeySigner serialises simple_signing into raw_data and signs those exact bytes.
    sign_constraints.push(Box::new(PrivateKeySigner::new_with_signer(signer)));
    apply_constraints(&mut layer, sign_constraints.iter()).map_err(|e| {
        other_err(format!(
            "signing failed: {} constraint(s) not applied",
            e.unapplied_constraints.len()
        ))
    })?;

    // push_signature re-serialises simple_signing (not raw_data) into the blob; make sure the
    // pushed bytes are exactly the signed bytes.
    let reserialized = serde_json::to_vec(&layer.simple_signing)
        .map_err(|e| other_err(format!("cannot serialise payload: {e}")))?;
    if reserialized != layer.raw_data {
        return Err(other_err(
            "sigstore would push different bytes than it signed",
        ));
    }

    let mut layers = Vec::new();
    if opts.append {
        // push_signature overwrites the tag with exactly the layers passed: carry existing ones,
        // but only if sigstore's re-serialisation preserves their bytes (else their signatures break).
        let existing = client
            .trusted_signature_layers(&auth, &image)
            .await
            .unwrap_or_default();
        for l in existing {
            let bytes = serde_json::to_vec(&l.simple_signing)
                .map_err(|e| other_err(format!("cannot serialise existing payload: {e}")))?;
            if bytes != l.raw_data {
                return Err(other_err(format!(
                    "--append: existing layer {} would not survive sigstore's re-serialisation byte-exact; refusing",
                    l.oci_digest
                )));
            }
            if l.raw_data == layer.raw_data && l.signature == layer.signature {
                continue;
            }
            layers.push(l);
        }
        eprintln!("appending to {} existing layer(s)", layers.len());
    }
    layers.push(layer);

    let resp = client
        .push_signature(None, &auth, &sig_ref, layers)
        .await
        .map_err(|e| other_err(format!("cannot push signature to {sig_ref}: {e}")))?;
    eprintln!(
        "signed {digest} with {} ({scheme}); manifest {}",
        key_path.display(),
        resp.manifest_url
    );
    println!("{sig_ref}");
    Ok(())
}

fn generate_key(opts: Opts) -> Result<(), Fail> {
    let out = opts
        .out
        .clone()
        .ok_or_else(|| usage_err("usage: --out PREFIX is required"))?;
    let password = opts
        .password
        .clone()
        .ok_or_else(|| usage_err("usage: --password is required (may be empty: --password '')"))?;
    let scheme = match opts.key_type.as_deref().unwrap_or("ecdsa-p256") {
        "ecdsa-p256" | "ecdsa" | "p256" => SigningScheme::ECDSA_P256_SHA256_ASN1,
        "ed25519" => SigningScheme::ED25519,
        other => {
            return Err(usage_err(format!(
                "usage: unknown --type {other:?} (ecdsa-p256|ed25519)"
            )))
        }
    };
    let signer = scheme
        .create_signer()
        .map_err(|e| other_err(format!("key generation failed: {e}")))?;
    let pair = signer
        .to_sigstore_keypair()
        .map_err(|e| other_err(format!("key export failed: {e}")))?;
    // Written byte-exact as sigstore produces them (label ENCRYPTED SIGSTORE PRIVATE KEY;
    // the pem crate's default encoding uses CRLF line endings).
    let private = pair
        .private_key_to_encrypted_pem(password.as_bytes())
        .map_err(|e| other_err(format!("private key export failed: {e}")))?;
    let public = pair
        .public_key_to_pem()
        .map_err(|e| other_err(format!("public key export failed: {e}")))?;

    let key_path = PathBuf::from(format!("{}.key", out.display()));
    let pub_path = PathBuf::from(format!("{}.pub", out.display()));
    write_private(&key_path, private.as_bytes())?;
    std::fs::write(&pub_path, public.as_bytes())
        .map_err(|e| other_err(format!("cannot write {}: {e}", pub_path.display())))?;
    eprintln!("generated {scheme} key pair");
    println!("{}", key_path.display());
    println!("{}", pub_path.display());
    Ok(())
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), Fail> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o
        .open(path)
        .map_err(|e| other_err(format!("cannot write {}: {e}", path.display())))?;
    f.write_all(data)
        .map_err(|e| other_err(format!("cannot write {}: {e}", path.display())))
}
