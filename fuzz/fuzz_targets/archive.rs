//! Folder layers from a registry: tar and tar+gzip (chosen by the gzip magic) unpacked into a fresh empty folder.
//! After every run, Ok or Err, nothing may exist or have changed outside that folder, and what is inside must keep
//! the unpacker's promises (no special files, links that stay inside, sanitised modes, honest counts).
#![no_main]

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sealpack::artifact::archive::{self, Limits};

const SENTINEL: &[u8] = b"must not change\n";

struct Sandbox {
    _dir: tempfile::TempDir,
    base: PathBuf,
}

static SANDBOX: LazyLock<Sandbox> = LazyLock::new(|| {
    // tmpfs when there is one: this target creates and removes a tree per run
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::Builder::new()
            .prefix("sealpack-fuzz-")
            .tempdir_in(shm)
    } else {
        tempfile::Builder::new().prefix("sealpack-fuzz-").tempdir()
    }
    .unwrap();
    let base = fs::canonicalize(dir.path()).unwrap();
    fs::create_dir(base.join("outside")).unwrap();
    fs::write(base.join("outside/keep"), SENTINEL).unwrap();
    Sandbox { _dir: dir, base }
});

/// Lexical resolution of `target` from `dir`, both relative to the destination root; `None` if it climbs out.
fn resolve_inside(dir: &Path, target: &Path) -> Option<PathBuf> {
    let mut parts: Vec<_> = dir.components().collect();
    for c in target.components() {
        match c {
            Component::Normal(_) => parts.push(c),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.iter().collect())
}

fn check_tree(dest: &Path, summary: Option<&archive::UnpackSummary>) {
    let sentinel = fs::metadata(SANDBOX.base.join("outside/keep"))
        .unwrap()
        .ino();
    let mut inodes = HashSet::new();
    let mut bytes = 0u64;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in fs::read_dir(dest.join(&rel)).unwrap() {
            let entry = entry.unwrap();
            let rel = rel.join(entry.file_name());
            let meta = fs::symlink_metadata(dest.join(&rel)).unwrap();
            let ft = meta.file_type();
            let mode = meta.permissions().mode();
            if ft.is_symlink() {
                let target = fs::read_link(dest.join(&rel)).unwrap();
                assert!(
                    target.is_relative(),
                    "absolute symlink {rel:?} -> {target:?}"
                );
                let dir = rel.parent().unwrap_or(Path::new(""));
                assert!(
                    resolve_inside(dir, &target).is_some(),
                    "symlink {rel:?} -> {target:?} leaves the destination"
                );
            } else if ft.is_dir() {
                assert_eq!(mode & 0o7002, 0, "directory {rel:?} mode {mode:o}");
                assert_eq!(mode & 0o700, 0o700, "directory {rel:?} mode {mode:o}");
                stack.push(rel);
            } else if ft.is_file() {
                assert_eq!(mode & 0o7002, 0, "file {rel:?} mode {mode:o}");
                assert_ne!(
                    meta.ino(),
                    sentinel,
                    "{rel:?} is a hard link to a file outside"
                );
                if inodes.insert(meta.ino()) {
                    bytes += meta.len();
                }
            } else {
                panic!("special file {rel:?} ({ft:?}) was created");
            }
        }
    }
    if let Some(s) = summary {
        assert_eq!(
            s.files,
            inodes.len() as u64,
            "files counted vs files on disk"
        );
        assert_eq!(s.bytes, bytes, "bytes counted vs bytes on disk");
    }
}

fuzz_target!(|data: &[u8]| {
    let base = &SANDBOX.base;
    let dest = base.join("dest");
    if dest.exists() {
        if fs::remove_dir_all(&dest).is_err() {
            // make every folder writable whatever modes the last run left, then again
            let mut stack = vec![dest.clone()];
            while let Some(d) = stack.pop() {
                let _ = fs::set_permissions(&d, fs::Permissions::from_mode(0o700));
                for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push(e.path());
                    }
                }
            }
            fs::remove_dir_all(&dest).unwrap();
        }
    }
    fs::create_dir(&dest).unwrap();

    let limits = Limits {
        max_bytes: 4 << 20,
        max_entries: 10_000,
        ..Limits::default()
    };
    let result = if data.starts_with(&[0x1f, 0x8b]) {
        archive::unpack_tar_gz(data, &dest, &limits)
    } else {
        archive::unpack_tar(data, &dest, &limits)
    };

    // nothing outside the destination: the sandbox holds exactly `dest` and the untouched sentinel
    let mut names: Vec<_> = fs::read_dir(base)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["dest", "outside"],
        "something was created next to the destination"
    );
    let outside: Vec<_> = fs::read_dir(base.join("outside")).unwrap().collect();
    assert_eq!(
        outside.len(),
        1,
        "something was created in a sibling folder"
    );
    assert_eq!(fs::read(base.join("outside/keep")).unwrap(), SENTINEL);
    assert!(fs::symlink_metadata(&dest).unwrap().is_dir());

    match result {
        Ok(summary) => {
            assert!(summary.bytes <= limits.max_bytes);
            assert!(summary.entries <= limits.max_entries);
            check_tree(&dest, Some(&summary));
        }
        Err(_) => check_tree(&dest, None),
    }
});
