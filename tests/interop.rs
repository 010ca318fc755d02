//! Interoperability with independent clients on the same real registry: skopeo and umoci (Debian), oras-py
//! (PyPI). Each test checks bytes, not just exit codes. Needs `scripts/install-test-deps.sh`.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::cli::{make_tree, random_file, sealpack, sha256_file, tree_digests};
use common::registry::{Flavor, Registry, python, run_tool};

fn env() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let docker = dir.path().join("docker-config");
    fs::create_dir(&docker).unwrap();
    (dir, docker)
}

fn skopeo(args: &[&str]) -> std::process::Output {
    run_tool(
        Command::new("skopeo").args(args),
        &format!("skopeo {}", args.join(" ")),
    )
}

fn oras_py(cwd: &Path, script: &str) -> std::process::Output {
    run_tool(
        Command::new(python())
            .current_dir(cwd)
            .arg("-c")
            .arg(script),
        "oras-py",
    )
}

#[test]
fn skopeo_reads_what_sealpack_pushed_to_a_registry() {
    let reg = Registry::start(Flavor::Plain);
    let (dir, docker) = env();
    random_file(&dir.path().join("app.bin"), 2 << 20, 11);
    let target = format!("{}/team/app:v1", reg.host);
    let digest = sealpack(
        dir.path(),
        &docker,
        &["--plain-http", "push", "app.bin", "--to", &target],
    )
    .run()
    .digest();

    // inspect --raw gives the exact manifest bytes: their sha256 is the digest sealpack printed
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ])
    .stdout;
    assert_eq!(
        format!("sha256:{}", sealpack::Digest::of(&raw).hex()),
        digest
    );
    let m: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        m["layers"][0]["annotations"]["org.opencontainers.image.title"],
        "app.bin"
    );

    // copy to an OCI layout with digests preserved, then sealpack pulls from that layout
    let layout = dir.path().join("copied");
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        &format!("docker://{target}"),
        &format!("oci:{}:v1", layout.display()),
    ]);
    let pulled = sealpack(
        dir.path(),
        &docker,
        &["pull", &format!("oci:{}:v1", layout.display()), "-o", "out"],
    )
    .run()
    .digest();
    assert_eq!(pulled, digest);
    assert_eq!(
        sha256_file(&dir.path().join("out/app.bin")),
        sha256_file(&dir.path().join("app.bin"))
    );
}

#[test]
fn skopeo_reads_and_copies_a_sealpack_layout() {
    let reg = Registry::start(Flavor::Plain);
    let (dir, docker) = env();
    make_tree(&dir.path().join("site"), 30);
    let digest = sealpack(
        dir.path(),
        &docker,
        &["push", "site", "--to", "oci:./layout:v2"],
    )
    .run()
    .digest();
    let raw = skopeo(&[
        "inspect",
        "--raw",
        &format!("oci:{}/layout:v2", dir.path().display()),
    ])
    .stdout;
    assert_eq!(
        format!("sha256:{}", sealpack::Digest::of(&raw).hex()),
        digest
    );

    // skopeo copies the layout to the registry unchanged; sealpack pulls it from there
    let target = format!("{}/site:v2", reg.host);
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &format!("oci:{}/layout:v2", dir.path().display()),
        &format!("docker://{target}"),
    ]);
    let pulled = sealpack(
        dir.path(),
        &docker,
        &["--plain-http", "pull", &target, "-o", "out"],
    )
    .run()
    .digest();
    assert_eq!(pulled, digest);
    assert_eq!(
        tree_digests(&dir.path().join("out/site")),
        tree_digests(&dir.path().join("site"))
    );
}

#[test]
fn oras_py_pulls_what_sealpack_pushed() {
    let reg = Registry::start(Flavor::Plain);
    let (dir, docker) = env();
    random_file(&dir.path().join("model.bin"), 3 << 20, 5);
    make_tree(&dir.path().join("site"), 25);
    let target = format!("{}/ml/model:v3", reg.host);
    sealpack(
        dir.path(),
        &docker,
        &["--plain-http", "push", "model.bin", "site", "--to", &target],
    )
    .run()
    .ok();
    fs::create_dir(dir.path().join("oras-out")).unwrap();
    oras_py(
        dir.path(),
        &format!(
            "import oras.client\nc = oras.client.OrasClient(hostname='{}', insecure=True)\nprint(c.pull(target='{target}', outdir='oras-out'))",
            reg.host
        ),
    );
    assert_eq!(
        sha256_file(&dir.path().join("oras-out/model.bin")),
        sha256_file(&dir.path().join("model.bin"))
    );
    // the folder layer carries oras's unpack annotation, so oras-py unpacks it into the same tree
    assert_eq!(
        tree_digests(&dir.path().join("oras-out/site")),
        tree_digests(&dir.path().join("site"))
    );
}

#[test]
fn sealpack_pulls_what_oras_py_pushed() {
    let reg = Registry::start(Flavor::Plain);
    let (dir, docker) = env();
    random_file(&dir.path().join("data.bin"), 1 << 20, 9);
    let target = format!("{}/from/oras:v1", reg.host);
    oras_py(
        dir.path(),
        &format!(
            "import oras.client\nc = oras.client.OrasClient(hostname='{}', insecure=True)\nc.push(files=['data.bin'], target='{target}', quiet=True)",
            reg.host
        ),
    );
    let run = sealpack(
        dir.path(),
        &docker,
        &["--plain-http", "pull", &target, "-o", "out"],
    )
    .run();
    run.ok();
    assert_eq!(
        sha256_file(&dir.path().join("out/data.bin")),
        sha256_file(&dir.path().join("data.bin"))
    );
}

#[test]
fn sealpack_reads_and_writes_umoci_layouts() {
    let (dir, docker) = env();
    let layout = dir.path().join("umoci-layout");
    let l = layout.to_str().unwrap();
    run_tool(
        Command::new("umoci").args(["init", "--layout", l]),
        "umoci init",
    );
    run_tool(
        Command::new("umoci").args(["new", "--image", &format!("{l}:base")]),
        "umoci new",
    );
    // sealpack resolves and inspects the image umoci wrote, with the digest umoci's index.json records
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let umoci_digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let resolved = sealpack(dir.path(), &docker, &["resolve", &format!("oci:{l}:base")])
        .run()
        .ok();
    assert_eq!(resolved, umoci_digest);
    let inspect = sealpack(
        dir.path(),
        &docker,
        &["inspect", "--json", &format!("oci:{l}:base")],
    )
    .run();
    let v: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(v["digest"], umoci_digest.as_str());
    // pulling a container image as files is refused with a clear message
    let r = sealpack(
        dir.path(),
        &docker,
        &["pull", &format!("oci:{l}:base"), "-o", "out"],
    )
    .run();
    assert_ne!(r.code, 0);

    // sealpack adds an artifact to the umoci layout; umoci still lists both tags
    fs::write(dir.path().join("a.txt"), "x").unwrap();
    sealpack(
        dir.path(),
        &docker,
        &["push", "a.txt", "--to", &format!("oci:{l}:artifact")],
    )
    .run()
    .ok();
    let ls = run_tool(
        Command::new("umoci").args(["ls", "--layout", l]),
        "umoci ls",
    );
    let tags = String::from_utf8(ls.stdout).unwrap();
    assert!(tags.contains("base") && tags.contains("artifact"), "{tags}");
}
