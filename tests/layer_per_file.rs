//! `push --layer-per-file` and the parallel pull around it: what is refused, what is sent once, and that a pull
//! failing in one of many layers fetched at once still writes nothing. (The full story is in tests/stories.rs.)

mod common;

use std::fs;
use std::path::Path;

use common::cli::{TestEnv as Env, tree_digests};
use common::registry::{Flavor, Registry};

#[test]
fn symlinks_and_special_files_are_refused_and_nothing_is_written() {
    let env = Env::new();
    let dir = env.path().join("bundle");
    fs::create_dir_all(dir.join("sub")).unwrap();
    fs::write(dir.join("sub/a.txt"), "a").unwrap();
    std::os::unix::fs::symlink("a.txt", dir.join("sub/link")).unwrap();
    let r = env
        .cmd(&["push", "--layer-per-file", "bundle", "--to", "oci:./l:v1"])
        .run();
    r.expect_code(2);
    assert!(
        r.stderr.contains("sub/link") && r.stderr.contains("symlink"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("hint:"), "{}", r.stderr);
    assert!(!env.path().join("l").exists(), "nothing written");

    fs::remove_file(dir.join("sub/link")).unwrap();
    let fifo = dir.join("sub/pipe");
    let out = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .output()
        .unwrap();
    assert!(out.status.success());
    let r = env
        .cmd(&["push", "--layer-per-file", "bundle", "--to", "oci:./l:v1"])
        .run();
    r.expect_code(2);
    assert!(r.stderr.contains("FIFO"), "{}", r.stderr);
    assert!(!env.path().join("l").exists(), "nothing written");

    // without them it pushes, and pull recreates the tree under the folder's name
    fs::remove_file(&fifo).unwrap();
    env.cmd(&["push", "--layer-per-file", "bundle", "--to", "oci:./l:v1"])
        .run()
        .ok();
    env.cmd(&["pull", "oci:./l:v1", "-o", "out"]).run().ok();
    assert_eq!(
        tree_digests(&env.path().join("out/bundle")),
        tree_digests(&dir)
    );
}

#[test]
fn equal_files_are_uploaded_once_and_both_come_back() {
    let reg = Registry::start(Flavor::Plain);
    let env = Env::new();
    let dir = env.path().join("bundle");
    fs::create_dir_all(dir.join("x")).unwrap();
    for name in ["one.bin", "x/two.bin", "x/three.bin"] {
        fs::write(dir.join(name), "same bytes").unwrap();
    }
    fs::write(dir.join("other.bin"), "other bytes").unwrap();
    fs::set_permissions(
        dir.join("other.bin"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let to = format!("{}/t/bundle:v1", reg.host);
    let r = env.sp(&[
        "--plain-http",
        "push",
        "--layer-per-file",
        "bundle",
        "--to",
        &to,
    ]);
    r.ok();
    assert!(r.stderr.contains("4 layer(s)"), "{}", r.stderr);
    // two distinct files and the config: three blob uploads finished, no more
    let puts = reg
        .requests()
        .iter()
        .filter(|l| l.method == "PUT" && l.is_blob_upload())
        .count();
    assert_eq!(puts, 3);
    env.sp(&["--plain-http", "pull", &to, "-o", "out"]).ok();
    let out = env.path().join("out/bundle");
    assert_eq!(tree_digests(&out), tree_digests(&dir));
    let mode = fs::metadata(out.join("other.bin")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o755
    );
}

/// A layout with many file layers, one of them corrupted on disk: the pull fetching them in parallel fails on it
/// (exit 10) and moves nothing into the output folder.
#[test]
fn a_bad_layer_among_many_fetched_at_once_leaves_nothing() {
    let env = Env::new();
    let dir = env.path().join("bundle");
    fs::create_dir_all(&dir).unwrap();
    for i in 0..24 {
        fs::write(dir.join(format!("f{i:02}.txt")), format!("file {i}\n")).unwrap();
    }
    env.cmd(&["push", "--layer-per-file", "bundle", "--to", "oci:./l:v1"])
        .run()
        .ok();
    let victim = sealpack::digest::hash_reader(&b"file 17\n"[..]).unwrap().0;
    let blob = env.path().join(format!("l/blobs/sha256/{}", victim.hex()));
    fs::write(&blob, "file 71\n").unwrap();
    let r = env.cmd(&["pull", "oci:./l:v1", "-o", "out"]).run();
    r.expect_code(10);
    assert!(r.stderr.contains(&victim.hex()[..12]), "{}", r.stderr);
    let left: Vec<_> = fs::read_dir(env.path().join("out")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Layers titled `a` and `a/b`: the second could never be moved into place; pull refuses before writing.
#[test]
fn a_title_that_is_another_titles_folder_is_refused() {
    use sealpack::oci::{Descriptor, annotations, media};
    let env = Env::new();
    let layers = [("a", &b"file a"[..]), ("a/b", &b"file b"[..])]
        .into_iter()
        .map(|(title, body)| {
            let mut d = Descriptor::new(
                media::OCTET_STREAM,
                sealpack::Digest::of(body),
                body.len() as u64,
            );
            d.annotations = Some([(annotations::TITLE.to_string(), title.to_string())].into());
            (d, body.to_vec())
        })
        .collect();
    common::cli::write_layout_artifact(&env.path().join("l"), "v1", layers);
    let r = env.cmd(&["pull", "oci:./l:v1", "-o", "out"]).run();
    r.expect_code(10);
    assert!(r.stderr.contains("\"a/b\""), "{}", r.stderr);
    assert!(!Path::new(&env.path().join("out/a")).exists());
}

/// Each file layer is scanned for secrets in the same read that hashes it, named by its title; `--allow-secret`
/// lets a named false positive through, as for folder layers.
#[test]
fn secrets_in_a_layer_per_file_folder_are_refused_by_title() {
    let env = Env::new();
    let dir = env.path().join("bundle");
    fs::create_dir_all(dir.join("conf")).unwrap();
    fs::write(dir.join("weights.bin"), "not a secret").unwrap();
    let token = format!("ghp_{}", "a1B2c3D4e5F6".repeat(3));
    fs::write(
        dir.join("conf/.env"),
        format!("# settings\nGITHUB_TOKEN={token}\n"),
    )
    .unwrap();
    let push = |extra: &[&str]| {
        let mut args = vec!["push", "--layer-per-file", "bundle", "--to", "oci:./l:v1"];
        args.extend_from_slice(extra);
        env.cmd(&args).run()
    };
    let r = push(&[]);
    r.expect_code(2);
    assert!(
        r.stderr.contains("bundle/conf/.env:2: github-token"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains(&token),
        "the token itself is never shown"
    );
    let blobs = env.path().join("l/blobs/sha256");
    assert!(!blobs.exists() || fs::read_dir(&blobs).unwrap().count() == 0);
    push(&["--allow-secret", "bundle/conf/.env"]).ok();
}
