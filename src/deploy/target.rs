//! A deploy target folder and the file-system work on it.
//!
//! ```text
//! TARGET/
//!   current -> releases/<hex>        the release being served (a relative symlink, replaced by rename)
//!   releases/<hex>/                  one folder per installed digest; complete by construction (renamed in
//!                                    only after every blob was checked and every file written)
//!   releases/.staging-<hex>-*/       an install in progress (removed at the next run if a deploy died)
//!   .current-*                       a symlink about to replace `current` (removed at the next run)
//!   .sealpack/env                    the environment this folder serves (set by the first deploy)
//!   .sealpack/history                append-only, one JSON event per line
//!   .sealpack/lock                   held (flock) by the one deploy, rollback or promote running here
//!   .sealpack/releases/<hex>.json    what each release holds (file list with sha256 and modes)
//!   .sealpack/quarantine/            releases found modified on disk, moved aside
//! ```
//!
//! Every change that `current` sees is a rename: a crash at any point leaves `current` on a complete release
//! (or absent, before the first deploy).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, hash_reader};
use crate::error::{Error, Result};

/// Longest `.sealpack/env` or release record read back.
const MAX_RECORD: u64 = 64 << 20;

/// An opened target folder.
#[derive(Debug, Clone)]
pub struct Target {
    root: PathBuf,
}

/// Holds the target's lock until dropped.
#[derive(Debug)]
pub struct TargetLock {
    file: fs::File,
}

impl Drop for TargetLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

/// One entry of a release's file list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Path inside the release folder.
    pub path: String,
    /// `file`, `dir` or `symlink`.
    pub kind: String,
    /// Permission bits.
    pub mode: u32,
    /// Bytes (files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// sha256 of the content (files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Digest>,
    /// Link target (symlinks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// What an installed release holds, written when it is installed and checked before it is switched to again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRecord {
    /// The artifact digest.
    pub digest: Digest,
    /// The reference it was installed from (pinned).
    pub reference: String,
    /// Every entry, sorted by path.
    pub entries: Vec<Entry>,
}

fn mkdir(path: &Path, mode: u32) -> Result<()> {
    match fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let meta = fs::symlink_metadata(path).map_err(|e| Error::io("reading", path, e))?;
            if meta.is_dir() {
                Ok(())
            } else {
                Err(Error::usage(format!(
                    "{} exists and is not a folder",
                    path.display()
                )))
            }
        }
        Err(e) => Err(Error::io("creating", path, e)),
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder, synced, then renamed into place.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| Error::io("creating a temporary file in", dir, e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| Error::io("writing", tmp.path().to_path_buf(), e))?;
    tmp.persist(path)
        .map_err(|e| Error::io("renaming into place", path, e.error))?;
    sync_dir(dir)
}

/// Makes a rename or create in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("syncing", dir, e))
}

fn random_suffix() -> String {
    let mut b = [0u8; 6];
    let _ = getrandom::fill(&mut b);
    hex::encode(b)
}

impl Target {
    /// Opens `root`; with `create`, makes it and its `releases/` and `.sealpack/` folders when missing.
    pub fn open(root: &Path, create: bool) -> Result<Self> {
        let t = Target {
            root: root.to_path_buf(),
        };
        if create {
            fs::create_dir_all(root).map_err(|e| Error::io("creating", root, e))?;
            mkdir(&t.releases(), 0o755)?;
            mkdir(&t.meta(), 0o700)?;
            mkdir(&t.meta().join("releases"), 0o700)?;
        } else if !t.meta().is_dir() {
            return Err(Error::usage_hint(
                format!(
                    "{} is not a sealpack deploy target (no .sealpack folder)",
                    root.display()
                ),
                "deploy to it first: sealpack deploy REF --env ENV --target DIR ...",
            ));
        }
        Ok(t)
    }

    /// The target folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn releases(&self) -> PathBuf {
        self.root.join("releases")
    }

    fn meta(&self) -> PathBuf {
        self.root.join(".sealpack")
    }

    /// `TARGET/current`.
    pub fn current_link(&self) -> PathBuf {
        self.root.join("current")
    }

    /// `TARGET/.sealpack/history`.
    pub fn history_path(&self) -> PathBuf {
        self.meta().join("history")
    }

    /// `TARGET/releases/<hex>`.
    pub fn release_dir(&self, digest: &Digest) -> PathBuf {
        self.releases().join(digest.hex())
    }

    fn record_path(&self, digest: &Digest) -> PathBuf {
        self.meta()
            .join("releases")
            .join(format!("{}.json", digest.hex()))
    }

    /// Takes the target's exclusive lock, waiting up to `wait` for another deploy to finish. The lock file then
    /// says who holds it (`holder`), so the one that gives up can say whom it waited for.
    pub fn lock(&self, wait: Duration, holder: &str) -> Result<TargetLock> {
        let path = self.meta().join("lock");
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("opening", &path, e))?;
        let start = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) if start.elapsed() < wait => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(fs::TryLockError::WouldBlock) => {
                    let other = fs::read_to_string(&path).unwrap_or_default();
                    return Err(Error::Locked {
                        path,
                        holder: other.trim().chars().take(512).collect(),
                        waited: wait,
                    });
                }
                Err(fs::TryLockError::Error(e)) => return Err(Error::io("locking", &path, e)),
            }
        }
        // the holder line is informational; a failure to write it does not matter
        let _ = file.set_len(0).and_then(|()| {
            use std::io::Seek;
            file.seek(std::io::SeekFrom::Start(0))?;
            file.write_all(holder.as_bytes())
        });
        Ok(TargetLock { file })
    }

    /// The environment this folder serves, if a deploy has set it.
    pub fn env(&self) -> Result<Option<String>> {
        let path = self.meta().join("env");
        match fs::read(&path) {
            Ok(b) => {
                let s = String::from_utf8_lossy(&b[..b.len().min(256)])
                    .trim()
                    .to_string();
                Ok(Some(s))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("reading", path, e)),
        }
    }

    /// Binds the folder to `env` on first use; refuses a folder that serves another environment.
    pub fn bind_env(&self, env: &str) -> Result<()> {
        match self.env()? {
            Some(e) if e == env => Ok(()),
            Some(e) => Err(Error::usage_hint(
                format!(
                    "{} is the {e:?} environment's target, not {env:?}'s",
                    self.root.display()
                ),
                format!("use --env {e}, or give {env} a folder of its own"),
            )),
            None => write_atomically(&self.meta().join("env"), format!("{env}\n").as_bytes()),
        }
    }

    /// Refuses to act for `env` on a folder bound to another environment (reads never bind).
    pub fn check_env(&self, env: &str) -> Result<()> {
        match self.env()? {
            Some(e) if e != env => Err(Error::usage_hint(
                format!(
                    "{} is the {e:?} environment's target, not {env:?}'s",
                    self.root.display()
                ),
                format!("use --env {e}"),
            )),
            _ => Ok(()),
        }
    }

    /// The digest `current` points at; `None` before the first deploy. A `current` that is not a link to
    /// `releases/<hex>` is refused: sealpack does not guess what someone else put there.
    pub fn current(&self) -> Result<Option<Digest>> {
        let link = self.current_link();
        let target = match fs::read_link(&link) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                return Err(Error::usage(format!(
                    "{} is not a symbolic link; move it away so sealpack can manage it",
                    link.display()
                )));
            }
            Err(e) => return Err(Error::io("reading the link", link, e)),
        };
        let hex = target
            .strip_prefix("releases")
            .ok()
            .and_then(|p| p.to_str())
            .filter(|h| !h.contains('/'))
            .map(str::to_string);
        match hex.and_then(|h| Digest::parse(&format!("sha256:{h}")).ok()) {
            Some(d) => Ok(Some(d)),
            None => Err(Error::usage(format!(
                "{} points at {}, not at a release folder releases/<digest>",
                link.display(),
                target.display()
            ))),
        }
    }

    /// Points `current` at `releases/<hex>` atomically: a new link made beside it is renamed over it.
    pub fn switch(&self, digest: &Digest) -> Result<()> {
        let tmp = self.root.join(format!(".current-{}", random_suffix()));
        std::os::unix::fs::symlink(Path::new("releases").join(digest.hex()), &tmp)
            .map_err(|e| Error::io("creating the link", &tmp, e))?;
        if let Err(e) = fs::rename(&tmp, self.current_link()) {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io("switching", self.current_link(), e));
        }
        sync_dir(&self.root)
    }

    /// Removes `current` (a first deploy whose health check failed leaves nothing served, as before it).
    pub fn unset_current(&self) -> Result<()> {
        match fs::remove_file(self.current_link()) {
            Ok(()) => sync_dir(&self.root),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("removing", self.current_link(), e)),
        }
    }

    /// Removes what an interrupted run left: staging folders and temporary links. Returns what it removed.
    /// Call with the lock held.
    pub fn clean_leftovers(&self) -> Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        for (dir, prefix) in [
            (self.releases(), ".staging-"),
            (self.root.clone(), ".current-"),
        ] {
            let entries = fs::read_dir(&dir).map_err(|e| Error::io("reading", &dir, e))?;
            for entry in entries.flatten() {
                let name = entry.file_name();
                if !name.to_string_lossy().starts_with(prefix) {
                    continue;
                }
                let path = entry.path();
                let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
                let r = if is_dir {
                    make_removable(&path);
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
                r.map_err(|e| Error::io("removing the leftover", &path, e))?;
                removed.push(path);
            }
        }
        Ok(removed)
    }

    /// Creates a fresh staging folder (mode 0700) for installing `digest`.
    pub fn staging_dir(&self, digest: &Digest) -> Result<PathBuf> {
        let path = self.releases().join(format!(
            ".staging-{}-{}",
            &digest.hex()[..16],
            random_suffix()
        ));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| Error::io("creating", &path, e))?;
        Ok(path)
    }

    /// Makes a fully written staging folder the release folder of `digest`: lists what it holds, records that,
    /// opens its mode to 0755, and renames it into place. If a release folder for the digest exists (a modified
    /// one being replaced), it is moved to quarantine first.
    pub fn commit_release(
        &self,
        staging: &Path,
        digest: &Digest,
        reference: &str,
    ) -> Result<ReleaseRecord> {
        let record = ReleaseRecord {
            digest: *digest,
            reference: reference.to_string(),
            entries: list_entries(staging)?,
        };
        let json = serde_json::to_vec(&record).expect("a release record serialises");
        write_atomically(&self.record_path(digest), &json)?;
        fs::set_permissions(staging, fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io("setting the mode of", staging, e))?;
        let dest = self.release_dir(digest);
        if fs::symlink_metadata(&dest).is_ok() {
            self.quarantine(digest)?;
        }
        fs::rename(staging, &dest).map_err(|e| Error::io("moving into place", &dest, e))?;
        sync_dir(&self.releases())?;
        Ok(record)
    }

    /// Moves a release folder aside to `.sealpack/quarantine/<hex>-<suffix>`; returns where.
    pub fn quarantine(&self, digest: &Digest) -> Result<PathBuf> {
        let q = self.meta().join("quarantine");
        mkdir(&q, 0o700)?;
        let to = q.join(format!("{}-{}", digest.hex(), random_suffix()));
        let from = self.release_dir(digest);
        fs::rename(&from, &to).map_err(|e| Error::io("moving to quarantine", from, e))?;
        Ok(to)
    }

    /// Whether the release folder of `digest` exists and still holds exactly what was installed. A folder
    /// without a record, or that differs from it, is not trusted (`Ok(false)`).
    pub fn release_intact(&self, digest: &Digest) -> Result<bool> {
        let dir = self.release_dir(digest);
        if !dir.is_dir() {
            return Ok(false);
        }
        let path = self.record_path(digest);
        let bytes = match read_capped(&path)? {
            Some(b) => b,
            None => return Ok(false),
        };
        let Ok(record) = serde_json::from_slice::<ReleaseRecord>(&bytes) else {
            return Ok(false);
        };
        if record.digest != *digest {
            return Ok(false);
        }
        Ok(list_entries(&dir)? == record.entries)
    }

    /// The release record of `digest`, if one was written.
    pub fn release_record(&self, digest: &Digest) -> Result<Option<ReleaseRecord>> {
        Ok(read_capped(&self.record_path(digest))?
            .and_then(|b| serde_json::from_slice::<ReleaseRecord>(&b).ok()))
    }
}

fn read_capped(path: &Path) -> Result<Option<Vec<u8>>> {
    use std::io::Read;
    let f = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("opening", path, e)),
    };
    let mut buf = Vec::new();
    f.take(MAX_RECORD)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io("reading", path, e))?;
    Ok(Some(buf))
}

/// Gives the owner write access to every folder under `path`, so a release with read-only folders can be removed.
fn make_removable(path: &Path) {
    for entry in walkdir::WalkDir::new(path).into_iter().flatten() {
        if entry.file_type().is_dir()
            && let Ok(m) = entry.metadata()
        {
            let mode = m.permissions().mode();
            if mode & 0o700 != 0o700 {
                let _ = fs::set_permissions(entry.path(), fs::Permissions::from_mode(mode | 0o700));
            }
        }
    }
}

/// Lists every entry under `dir` (not following links) with its kind, mode, and content hash or link target.
pub fn list_entries(dir: &Path) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(dir).to_path_buf();
            Error::io(
                "listing",
                path,
                e.into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("file system loop")),
            )
        })?;
        let path = entry.path();
        let rel = path
            .strip_prefix(dir)
            .expect("walkdir yields paths under its root")
            .to_string_lossy()
            .into_owned();
        let meta = entry.metadata().map_err(|e| {
            Error::io(
                "reading",
                path,
                e.into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("metadata")),
            )
        })?;
        let mode = meta.mode() & 0o7777;
        let ft = entry.file_type();
        let e = if ft.is_symlink() {
            let t = fs::read_link(path).map_err(|e| Error::io("reading the link", path, e))?;
            Entry {
                path: rel,
                kind: "symlink".into(),
                mode: 0,
                size: None,
                sha256: None,
                target: Some(t.to_string_lossy().into_owned()),
            }
        } else if ft.is_dir() {
            Entry {
                path: rel,
                kind: "dir".into(),
                mode,
                size: None,
                sha256: None,
                target: None,
            }
        } else if ft.is_file() {
            let f = fs::File::open(path).map_err(|e| Error::io("opening", path, e))?;
            let (digest, size) = hash_reader(f).map_err(|e| Error::io("reading", path, e))?;
            Entry {
                path: rel,
                kind: "file".into(),
                mode,
                size: Some(size),
                sha256: Some(digest),
                target: None,
            }
        } else {
            return Err(Error::untrusted(
                path.display().to_string(),
                "a release holds only files, folders and links",
            ));
        };
        out.push(e);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_and_current() {
        let dir = tempfile::tempdir().unwrap();
        let t = Target::open(dir.path(), true).unwrap();
        assert_eq!(t.current().unwrap(), None);
        let d = Digest::of(b"one");
        fs::create_dir(t.release_dir(&d)).unwrap();
        t.switch(&d).unwrap();
        assert_eq!(t.current().unwrap(), Some(d));
        assert_eq!(
            fs::read_link(t.current_link()).unwrap(),
            Path::new("releases").join(d.hex())
        );
        t.unset_current().unwrap();
        assert_eq!(t.current().unwrap(), None);
        // nothing left beside it
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            names.iter().all(|n| !n.starts_with(".current-")),
            "{names:?}"
        );
    }

    #[test]
    fn foreign_current_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let t = Target::open(dir.path(), true).unwrap();
        std::os::unix::fs::symlink("/etc", t.current_link()).unwrap();
        assert!(t.current().is_err());
        fs::remove_file(t.current_link()).unwrap();
        fs::create_dir(t.current_link()).unwrap();
        assert!(t.current().is_err());
    }

    #[test]
    fn env_binding() {
        let dir = tempfile::tempdir().unwrap();
        let t = Target::open(dir.path(), true).unwrap();
        t.check_env("staging").unwrap();
        t.bind_env("staging").unwrap();
        t.bind_env("staging").unwrap();
        let e = t.bind_env("production").unwrap_err();
        assert!(e.to_string().contains("staging"), "{e}");
        assert!(t.check_env("production").is_err());
    }

    #[test]
    fn release_commit_record_and_tamper_check() {
        let dir = tempfile::tempdir().unwrap();
        let t = Target::open(dir.path(), true).unwrap();
        let d = Digest::of(b"rel");
        let s = t.staging_dir(&d).unwrap();
        assert_eq!(fs::metadata(&s).unwrap().mode() & 0o777, 0o700);
        fs::write(s.join("index.html"), "hi").unwrap();
        fs::create_dir(s.join("css")).unwrap();
        std::os::unix::fs::symlink("index.html", s.join("home.html")).unwrap();
        let rec = t.commit_release(&s, &d, "oci:x@sha256:...").unwrap();
        assert_eq!(rec.entries.len(), 3);
        assert_eq!(
            fs::metadata(t.release_dir(&d)).unwrap().mode() & 0o777,
            0o755
        );
        assert!(t.release_intact(&d).unwrap());
        fs::write(t.release_dir(&d).join("index.html"), "tampered").unwrap();
        assert!(!t.release_intact(&d).unwrap());
        assert!(!t.release_intact(&Digest::of(b"absent")).unwrap());
        // a replacement moves the modified one to quarantine
        let s2 = t.staging_dir(&d).unwrap();
        fs::write(s2.join("index.html"), "hi").unwrap();
        fs::create_dir(s2.join("css")).unwrap();
        std::os::unix::fs::symlink("index.html", s2.join("home.html")).unwrap();
        t.commit_release(&s2, &d, "x").unwrap();
        assert!(t.release_intact(&d).unwrap());
        assert_eq!(
            fs::read_dir(dir.path().join(".sealpack/quarantine"))
                .unwrap()
                .count(),
            1
        );
    }

    #[test]
    fn leftovers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let t = Target::open(dir.path(), true).unwrap();
        let d = Digest::of(b"x");
        let s = t.staging_dir(&d).unwrap();
        fs::create_dir(s.join("ro")).unwrap();
        fs::write(s.join("ro/f"), "x").unwrap();
        fs::set_permissions(s.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
        std::os::unix::fs::symlink("releases/x", dir.path().join(".current-abc")).unwrap();
        let removed = t.clean_leftovers().unwrap();
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert!(!s.exists());
    }

    #[test]
    fn lock_is_exclusive_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let t = Target::open(dir.path(), true).unwrap();
        let held = t.lock(Duration::ZERO, "pid 1 deploying x").unwrap();
        let e = t.lock(Duration::from_millis(200), "pid 2").unwrap_err();
        assert!(e.to_string().contains("pid 1 deploying x"), "{e}");
        drop(held);
        t.lock(Duration::ZERO, "pid 2").unwrap();
    }
}
