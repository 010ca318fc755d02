//! Running the real `sealpack` binary in tests.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What a run of sealpack produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panics with the output unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "expected exit {code}, got {}\nstdout: {}\nstderr: {}",
            self.code, self.stdout, self.stderr
        );
        self
    }
    /// Panics unless it succeeded; returns the last stdout line.
    #[track_caller]
    pub fn ok(&self) -> String {
        self.expect_code(0);
        self.stdout.lines().last().unwrap_or_default().to_string()
    }
    /// The `sha256:...` digest in the last stdout line.
    #[track_caller]
    pub fn digest(&self) -> String {
        let line = self.ok();
        let i = line
            .rfind("sha256:")
            .unwrap_or_else(|| panic!("no digest in {line:?}"));
        line[i..].to_string()
    }
}

/// A sealpack invocation with an isolated environment (no host docker config, no SOURCE_DATE_EPOCH).
pub struct Sealpack {
    cmd: Command,
    stdin: Option<Vec<u8>>,
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sealpack"))
}

/// `sealpack ARGS...` run in `cwd` with `DOCKER_CONFIG` pointing at `docker_config` (an empty folder if you
/// want no credentials).
pub fn sealpack(cwd: &Path, docker_config: &Path, args: &[&str]) -> Sealpack {
    let mut cmd = Command::new(bin());
    cmd.current_dir(cwd)
        .args(args)
        .env("DOCKER_CONFIG", docker_config)
        .env("SEALPACK_CACHE_DIR", docker_config.join("sealpack-cache"))
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("SEALPACK_PASSWORD")
        .env_remove("COSIGN_PASSWORD");
    Sealpack { cmd, stdin: None }
}

impl Sealpack {
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.cmd.env(k, v);
        self
    }
    pub fn stdin(mut self, data: &[u8]) -> Self {
        self.stdin = Some(data.to_vec());
        self
    }
    pub fn run(mut self) -> Run {
        self.cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        self.cmd.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = self.cmd.spawn().expect("spawn sealpack");
        if let Some(data) = self.stdin.take() {
            child.stdin.take().unwrap().write_all(&data).unwrap();
        }
        let out = child.wait_with_output().expect("wait for sealpack");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// sha256 hex of a file.
pub fn sha256_file(path: &Path) -> String {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    sealpack::digest::hash_reader(f).unwrap().0.hex()
}

/// A file of `len` pseudo-random bytes (fast, deterministic for a seed).
pub fn random_file(path: &Path, len: u64, seed: u64) {
    let f = std::fs::File::create(path).unwrap();
    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    let mut left = len;
    let mut buf = [0u8; 8192];
    while left > 0 {
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        let n = left.min(buf.len() as u64) as usize;
        w.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    w.flush().unwrap();
}

/// A folder of `n` small files in nested subfolders (a static site stand-in).
pub fn make_tree(root: &Path, n: usize) {
    for i in 0..n {
        let dir = root.join(format!("d{}/e{}", i % 7, i % 3));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(format!("page-{i}.html")),
            format!("<h1>page {i}</h1>\n{}", "x".repeat(i % 97)),
        )
        .unwrap();
    }
    std::fs::write(root.join("index.html"), "<h1>home</h1>\n").unwrap();
}

/// sha256 of every file below `root`, by relative path.
pub fn tree_digests(root: &Path) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    for e in walkdir::WalkDir::new(root).sort_by_file_name() {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let rel = e
                .path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.insert(rel, sha256_file(e.path()));
        }
    }
    out
}

/// A test's working folder with its own (empty) docker config and sealpack cache.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub docker: PathBuf,
}

/// The password every test key gets (`SEALPACK_PASSWORD` in [`TestEnv::sp`]).
pub const TEST_PASSWORD: &str = "pw";

impl TestEnv {
    pub fn new() -> TestEnv {
        let dir = tempfile::tempdir().unwrap();
        let docker = dir.path().join("docker-config");
        std::fs::create_dir(&docker).unwrap();
        TestEnv { dir, docker }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    /// A path inside the folder, as a string.
    pub fn p(&self, name: &str) -> String {
        self.path().join(name).display().to_string()
    }
    /// `sealpack ARGS` in the folder, to be adjusted (env, stdin) and run.
    pub fn cmd(&self, args: &[&str]) -> Sealpack {
        sealpack(self.path(), &self.docker, args)
    }
    /// `sealpack ARGS` run with the test key password.
    pub fn sp(&self, args: &[&str]) -> Run {
        self.cmd(args).env("SEALPACK_PASSWORD", TEST_PASSWORD).run()
    }
    /// `sealpack keygen --type KIND --out PREFIX`.
    pub fn keygen(&self, prefix: &str, kind: &str) {
        self.sp(&["keygen", "--type", kind, "--out", prefix]).ok();
    }
}

/// A path under the project's testdata/.
pub fn testdata(rel: &str) -> String {
    format!("{}/testdata/{rel}", env!("CARGO_MANIFEST_DIR"))
}

/// Writes an artifact straight into the OCI layout at `dir`, as a foreign or hostile producer would (none of
/// push's checks apply): every layer with its bytes, the empty config, and the manifest tagged `tag`.
pub fn write_layout_artifact(
    dir: &Path,
    tag: &str,
    layers: Vec<(sealpack::oci::Descriptor, Vec<u8>)>,
) {
    use sealpack::oci::{Descriptor, ImageManifest, RawManifest, media};
    use sealpack::store::{BlobSource, Store, layout::LayoutStore, no_progress};
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = LayoutStore::open(dir, true).await.unwrap();
        let config = Descriptor::empty_json();
        let mut descs = Vec::new();
        for (desc, bytes) in std::iter::once((config.clone(), b"{}".to_vec())).chain(layers) {
            store
                .put_blob(&desc, BlobSource::Bytes(bytes.into()), &no_progress)
                .await
                .unwrap();
            descs.push(desc);
        }
        descs.remove(0);
        let m = ImageManifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.into()),
            artifact_type: Some(media::SEALPACK_ARTIFACT.into()),
            config,
            layers: descs,
            subject: None,
            annotations: None,
        };
        store
            .put_manifest(&RawManifest::from_image(&m).unwrap(), Some(tag))
            .await
            .unwrap();
    });
}

/// `promote REPO` + these: staging (target folder `stg`) to production (target folder `prod`), gated and signed
/// with the `rel` key pair, as the deploy stories run it.
pub const PROMOTE_STG_TO_PROD: [&str; 12] = [
    "--from",
    "staging",
    "--to",
    "production",
    "--from-target",
    "stg",
    "--target",
    "prod",
    "--key",
    "rel.pub",
    "--sign-key",
    "rel.key",
];
