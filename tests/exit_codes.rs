//! The exit-code table in docs/EXIT_CODES.md matches what the binary does (SPEC §3).

mod common;

use std::fs;

use common::cli::sealpack;

/// Each documented code, produced by a real command.
#[test]
fn documented_codes_are_the_real_ones() {
    let dir = tempfile::tempdir().unwrap();
    let docker = dir.path().join("dc");
    fs::create_dir(&docker).unwrap();
    let sp = |args: &[&str]| sealpack(dir.path(), &docker, args).run();
    fs::write(dir.path().join("a.txt"), "a").unwrap();

    let mut seen = std::collections::BTreeMap::new();
    seen.insert(0, sp(&["push", "a.txt", "--to", "oci:./l:v1"]).code);
    seen.insert(2, sp(&["push", "a.txt", "--to", "NOT/valid:v1"]).code);
    let port = common::registry::free_port();
    seen.insert(
        1,
        sp(&["--plain-http", "resolve", &format!("127.0.0.1:{port}/a:v1")]).code,
    );
    // a blob whose bytes do not match its digest: denied
    let blobs = dir.path().join("l/blobs/sha256");
    let hex = sealpack::Digest::of(b"a").hex();
    fs::write(blobs.join(&hex), "b").unwrap();
    seen.insert(10, sp(&["pull", "oci:./l:v1", "-o", "out"]).code);
    for (want, got) in &seen {
        assert_eq!(want, got, "documented code {want}");
    }

    let doc =
        fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/EXIT_CODES.md")).unwrap();
    let documented: Vec<i32> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| ")?.split(' ').next()?.parse().ok())
        .collect();
    assert_eq!(documented, seen.keys().copied().collect::<Vec<_>>());
}

#[test]
fn clap_usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let r = sealpack(dir.path(), dir.path(), &["push"]).run();
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = sealpack(dir.path(), dir.path(), &["no-such-command"]).run();
    assert_eq!(r.code, 2, "{}", r.stderr);
}
