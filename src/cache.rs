//! Small best-effort caches on disk (`~/.cache/sealpack` by default): they only ever save work, never decide
//! anything a check does not confirm. A missing, unreadable or corrupt cache is the same as an empty one.
//!
//! - [`DigestCache`]: file identity (device, inode, size, mtime, ctime) -> sha256, so a warm push of an unchanged
//!   1 GiB file costs a `stat` instead of a full read. Entries for files modified less than [`RACY_WINDOW`]
//!   before they were hashed are not stored (git's "racy clean" rule: a write in the same timestamp tick would go
//!   unseen).
//! - [`LocationCache`]: which repositories of a registry are known to hold a blob, so a push to a new repository
//!   can ask the registry for a cross-repository mount instead of uploading. A wrong entry only costs one refused
//!   mount request.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::digest::Digest;

/// How recent a modification must not be for a digest to be cached.
pub const RACY_WINDOW: Duration = Duration::from_secs(2);
/// A cache file is cut back to its newer half beyond this size.
const MAX_CACHE_FILE: u64 = 4 << 20;

/// An append-only file of whitespace-separated records, newest last.
#[derive(Debug, Clone)]
struct LineFile {
    path: PathBuf,
}

impl LineFile {
    fn lines(&self) -> Vec<String> {
        let Ok(f) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        // the file is cut back beyond MAX_CACHE_FILE; never read more than twice that
        std::io::BufReader::new(std::io::Read::take(f, MAX_CACHE_FILE * 2))
            .lines()
            .map_while(Result::ok)
            .collect()
    }

    fn append(&self, line: &str) {
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if std::fs::metadata(&self.path).is_ok_and(|m| m.len() > MAX_CACHE_FILE) {
            let lines = self.lines();
            let keep = lines[lines.len() / 2..].join("\n") + "\n";
            let _ = crate::store::layout::write_atomic(&self.path, keep.as_bytes());
        }
        // one write(2) of one short line with O_APPEND: concurrent writers do not interleave
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
        {
            let _ = f.write_all(format!("{line}\n").as_bytes());
        }
    }
}

/// The default cache folder: `$XDG_CACHE_HOME/sealpack`, else `$HOME/.cache/sealpack`.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(x).join("sealpack"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/sealpack"))
}

/// File identity -> digest.
#[derive(Debug, Clone)]
pub struct DigestCache {
    file: LineFile,
}

fn identity(meta: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    Some(format!(
        "{} {} {} {}.{} {}.{}",
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec()
    ))
}

impl DigestCache {
    /// A cache stored in `dir`.
    pub fn new(dir: &Path) -> Self {
        DigestCache {
            file: LineFile {
                path: dir.join("digests-v1"),
            },
        }
    }

    /// The cached digest of the file with this metadata, if its identity is unchanged.
    pub fn get(&self, meta: &std::fs::Metadata) -> Option<Digest> {
        self.get_marked(meta).map(|(d, _)| d)
    }

    /// The cached digest and the marks stored with it (e.g. "scanned clean for secrets under rules v1"), if the
    /// file's identity is unchanged. A line is `IDENTITY DIGEST [MARK...]`; the newest line for an identity wins.
    pub fn get_marked(&self, meta: &std::fs::Metadata) -> Option<(Digest, Vec<String>)> {
        let id = identity(meta)?;
        let fields = id.split(' ').count();
        self.file.lines().iter().rev().find_map(|l| {
            let mut parts = l.split(' ');
            let key: Vec<&str> = parts.by_ref().take(fields).collect();
            if key.join(" ") != id {
                return None;
            }
            let d = Digest::parse(parts.next()?).ok()?;
            Some((d, parts.map(str::to_string).collect()))
        })
    }

    /// Records a digest computed from a file whose metadata was `before` when reading started and `after` when
    /// it ended. Nothing is stored if the file changed meanwhile or was modified too recently to be sure.
    pub fn put(
        &self,
        before: &std::fs::Metadata,
        after: &std::fs::Metadata,
        digest: &Digest,
        hashed_at: SystemTime,
    ) {
        self.put_marked(before, after, digest, hashed_at, &[]);
    }

    /// [`DigestCache::put`] with marks (words without spaces) that [`DigestCache::get_marked`] gives back.
    pub fn put_marked(
        &self,
        before: &std::fs::Metadata,
        after: &std::fs::Metadata,
        digest: &Digest,
        hashed_at: SystemTime,
        marks: &[String],
    ) {
        let (Some(a), Some(b)) = (identity(before), identity(after)) else {
            return;
        };
        if a != b {
            return;
        }
        let recent = |t: std::io::Result<SystemTime>| {
            t.ok()
                .and_then(|t| hashed_at.duration_since(t).ok())
                .is_none_or(|age| age < RACY_WINDOW)
        };
        use std::os::unix::fs::MetadataExt;
        let ctime = SystemTime::UNIX_EPOCH.checked_add(Duration::new(
            after.ctime().max(0) as u64,
            after.ctime_nsec().clamp(0, 999_999_999) as u32,
        ));
        if recent(after.modified()) || ctime.is_none_or(|c| recent(Ok(c))) {
            return;
        }
        let mut line = format!("{a} {digest}");
        for m in marks
            .iter()
            .filter(|m| !m.is_empty() && !m.contains(char::is_whitespace))
        {
            line.push(' ');
            line.push_str(m);
        }
        self.file.append(&line);
    }
}

/// (registry, digest) -> repositories known to hold the blob.
#[derive(Debug, Clone)]
pub struct LocationCache {
    file: LineFile,
}

impl LocationCache {
    /// A cache stored in `dir`.
    pub fn new(dir: &Path) -> Self {
        LocationCache {
            file: LineFile {
                path: dir.join("blob-locations-v1"),
            },
        }
    }

    /// Repositories of `registry` that held `digest`, newest first, without `except`.
    pub fn repositories(&self, registry: &str, digest: &Digest, except: &str) -> Vec<String> {
        let d = digest.to_string();
        let mut out: Vec<String> = Vec::new();
        for l in self.file.lines().iter().rev() {
            let mut parts = l.split(' ');
            if let (Some(r), Some(repo), Some(dd)) = (parts.next(), parts.next(), parts.next())
                && r == registry
                && dd == d
                && repo != except
                && !out.iter().any(|o| o == repo)
            {
                out.push(repo.to_string());
            }
            if out.len() >= 3 {
                break;
            }
        }
        out
    }

    /// Records that `registry/repository` holds `digest`.
    pub fn record(&self, registry: &str, repository: &str, digest: &Digest) {
        if registry.contains(' ') || repository.contains(' ') {
            return;
        }
        let d = digest.to_string();
        let line = format!("{registry} {repository} {d}");
        if self
            .file
            .lines()
            .iter()
            .rev()
            .take(1000)
            .any(|l| *l == line)
        {
            return;
        }
        self.file.append(&line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_cache_needs_an_unchanged_settled_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DigestCache::new(dir.path());
        let f = dir.path().join("f");
        std::fs::write(&f, "hello").unwrap();
        let m = std::fs::metadata(&f).unwrap();
        let d = Digest::of(b"hello");
        // just written: too recent to trust
        cache.put(&m, &m, &d, SystemTime::now());
        assert_eq!(cache.get(&m), None);
        // hashed well after the last change
        cache.put(&m, &m, &d, SystemTime::now() + Duration::from_secs(10));
        assert_eq!(cache.get(&m), Some(d));
        // any change of identity misses
        std::fs::write(&f, "hellO").unwrap();
        assert_eq!(cache.get(&std::fs::metadata(&f).unwrap()), None);
    }

    #[test]
    fn digest_cache_keeps_marks_and_reads_old_lines() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DigestCache::new(dir.path());
        let f = dir.path().join("f");
        std::fs::write(&f, "hello").unwrap();
        let m = std::fs::metadata(&f).unwrap();
        let d = Digest::of(b"hello");
        let later = SystemTime::now() + Duration::from_secs(10);
        cache.put(&m, &m, &d, later);
        assert_eq!(cache.get_marked(&m), Some((d, vec![])));
        cache.put_marked(
            &m,
            &m,
            &d,
            later,
            &["secrets-clean-v1-ab".into(), "bad mark".into()],
        );
        assert_eq!(
            cache.get_marked(&m),
            Some((d, vec!["secrets-clean-v1-ab".to_string()]))
        );
        assert_eq!(cache.get(&m), Some(d));
    }

    #[test]
    fn location_cache_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let c = LocationCache::new(dir.path());
        let d = Digest::of(b"x");
        c.record("r:5000", "a/b", &d);
        c.record("r:5000", "a/b", &d);
        c.record("r:5000", "c", &d);
        c.record("other:1", "z", &d);
        assert_eq!(c.repositories("r:5000", &d, "c"), ["a/b"]);
        assert_eq!(c.repositories("r:5000", &d, "new"), ["c", "a/b"]);
        assert!(
            c.repositories("r:5000", &Digest::of(b"y"), "new")
                .is_empty()
        );
    }
}
