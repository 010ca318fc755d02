//! Folder layers: deterministic packing and hardened unpacking of tar / tar+gzip streams.
//!
//! # Packing ([`pack_dir`])
//!
//! A folder becomes one `application/vnd.oci.image.layer.v1.tar+gzip` layer laid out the way
//! oras lays out a folder (oras-go `file.Store`, oras-py `make_targz`): a directory entry
//! `PREFIX/` first, then every entry named `PREFIX/<relative path>`, so `oras pull` unpacks it
//! into `PREFIX/`. The output depends only on the folder's names, file contents, symlink
//! targets and executable bits:
//!
//! * order: depth first, a directory right before its children, siblings in byte order of
//!   their names (the order of Go's `filepath.Walk`, which oras-go uses);
//! * headers: GNU format (names over 100 bytes get a GNU `././@LongLink` entry, which GNU tar,
//!   Go's `archive/tar` and Python's `tarfile` read), mtime 0 (1970-01-01: there is no
//!   meaningful "build time" for a content-addressed layer, and the manifest carries `created`),
//!   uid/gid 0, empty user and group names;
//! * modes, normalised the way git records them so that the umask of a checkout cannot change
//!   the digest: directories `0755`, files `0755` when the owner may execute them else `0644`,
//!   symlinks `0777`. Setuid, setgid and sticky bits are never stored;
//! * hard links are stored as independent regular files; symlinks only when their target is
//!   relative and stays inside the folder; FIFOs, sockets and devices are refused;
//! * names must also pass every rule that [`unpack_tar_gz`] applies with default [`Limits`]
//!   (UTF-8, no control characters, no backslash, no two siblings differing only in case or
//!   Unicode normalisation, ...), so whatever is pushed can be deployed;
//! * gzip: level [`PACK_LEVEL`], mtime 0, no file name, OS byte 255 ("unknown", as Go and
//!   Python write).
//!
//! The stream is never held in memory: file data is copied through a tee that hashes the
//! uncompressed tar bytes ([`PackSummary::tar_digest`], the layer's `diff_id`) on their way to
//! the gzip encoder. The compressed bytes are stable for one build of sealpack; an upgrade of
//! the deflate implementation may change them, never `tar_digest`.
//!
//! # Unpacking ([`unpack_tar_gz`], [`unpack_tar`])
//!
//! Built against the whole class of extraction attacks (traversal, link escapes, special files,
//! name collisions, decompression bombs; see `notes/security.md` section C):
//!
//! * every name is checked before anything is created for it: no absolute path, no `..`
//!   component (even one that would stay inside), no empty name, NUL, backslash, control
//!   character or invalid UTF-8, components of at most 255 bytes, bounded length and depth;
//!   `.` components and repeated slashes are dropped;
//! * no two entries may name the same path, nor paths that differ only in letter case or in
//!   Unicode normalisation (NFC vs NFD), so a case-insensitive or normalising file system cannot
//!   merge them;
//! * only regular files, directories, symlinks and hard links are created; devices, FIFOs,
//!   sockets, GNU and PAX sparse files and unknown entry types are refused;
//! * a symlink target must be relative, in the form `../../a/b` (`..` only at its start) and
//!   its lexical resolution from the link's directory must stay inside the destination. With
//!   `..` only leading, and every link's directory a real directory, no chain of links can
//!   lead out;
//! * nothing is ever created or written through a symlink: an entry below an earlier symlink
//!   is refused; every parent is a real directory this function created; every creation is
//!   exclusive (`mkdir`, `O_CREAT|O_EXCL|O_NOFOLLOW`, `symlink`, `link` all fail on any
//!   existing name, dangling links included), and the parent is `lstat`-checked first;
//! * a hard link must name an earlier regular file of the same archive, resolved from the
//!   destination root (never the working directory), and is linked from that resolved path;
//! * modes: permission bits only, minus setuid/setgid/sticky and minus `o+w`; directories also
//!   get `u+rwx` so that the tree can always be filled and removed; modes are applied through
//!   an `O_NOFOLLOW` descriptor (`fchmod`), never through a link; ownership is never changed;
//!   modification times are not restored;
//! * budgets: file bytes actually written (`max_bytes`), entries (`max_entries`), expansion of
//!   the gzip stream (`max_ratio`, counted on compressed bytes actually read), and at most
//!   [`MAX_METADATA`] bytes of headers, long names and PAX records between two entries (the tar
//!   crate would otherwise buffer a long name of any declared size in memory);
//! * PAX records must be well formed and unique, a GNU long name must agree with a PAX `path`,
//!   and only zero bytes may follow the end-of-archive marker, so that other tar readers cannot
//!   see a different archive than this one did;
//! * on the first error the functions return at once; `dest` then holds a partial tree that
//!   the caller removes.
//!
//! Nothing here prints, panics or uses `unsafe`.
#![forbid(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use flate2::{Compression, GzBuilder, read::MultiGzDecoder};
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};
use unicode_normalization::UnicodeNormalization;

/// gzip level used by [`pack_dir`]; part of the layer's identity (changing it changes digests).
///
/// Measured by the `bench_pack_levels` test (10,000 files, 33 MB: 70% markup text, 30% random
/// bytes) on the 2-core machine, best of 5, with flate2's `runtime_detection` (SIMD zlib-rs):
/// level 1: 0.31 s, 62.5% of input; 4: 0.61 s, 56.1%; 6: 1.27 s, 54.7%; 9: 1.81 s, 54.4%.
/// On markup alone, level 1 leaves 30.4%, level 4 17.9%, level 6 16.2%. Level 4 is the best
/// compression within the one-second budget: within 3% of level 6 in size at half its time,
/// while level 1's layers are 1.7x larger on text-heavy sites (every pull pays for that, the
/// pack only once). Scalar and SIMD zlib-rs give the same bytes.
pub const PACK_LEVEL: u32 = 4;

/// Longest path component accepted anywhere (Linux `NAME_MAX`).
pub const MAX_COMPONENT_LEN: usize = 255;

/// Most bytes of tar headers, GNU long names / long links, PAX records and skipped data
/// allowed before one entry (and after the end-of-archive marker). A real entry needs a few
/// KiB at most; the tar crate buffers these bytes in memory, so this bounds memory use.
pub const MAX_METADATA: u64 = 1 << 20;

/// Decompressed bytes allowed before [`Limits::max_ratio`] is checked, so that small or
/// highly compressible archives (a 1 MiB file of zeros is 1000:1) are never refused for it.
pub const RATIO_GRACE: u64 = 16 << 20;

/// The failed check, with the entry it failed on.
///
/// Every `path`, `target`, `link`, `parent` and `after` field is escaped for display: control
/// characters, bidi and zero-width characters become `\u{..}`, invalid UTF-8 bytes `\xNN`, a
/// backslash `\\`, and names over 256 bytes are cut (with `…` and the full length).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// A `..` component (Unix or Windows separator), even one that would stay inside.
    #[error("archive entry {path}: a '..' component is not allowed")]
    PathEscape {
        /// The entry name, escaped.
        path: String,
    },
    /// A name starting with `/` (or `\`).
    #[error("archive entry {path}: absolute paths are not allowed")]
    AbsolutePath {
        /// The entry name, escaped.
        path: String,
    },
    /// Empty, NUL, backslash, control character, invalid UTF-8, or names the folder itself.
    #[error("archive entry {path}: invalid name: {reason}")]
    InvalidName {
        /// The entry name, escaped.
        path: String,
        /// Which rule the name breaks.
        reason: &'static str,
    },
    /// One path component is longer than [`MAX_COMPONENT_LEN`].
    #[error("archive entry {path}: a path component of {len} bytes is longer than {max}")]
    ComponentTooLong {
        /// The entry name, escaped.
        path: String,
        /// Length of the longest component, in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The whole name is longer than [`Limits::max_path_len`].
    #[error("archive entry {path}: name of {len} bytes is longer than the limit of {max}")]
    PathTooLong {
        /// The entry name, escaped (and cut).
        path: String,
        /// Length of the name, in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// More components than [`Limits::max_depth`].
    #[error("archive entry {path}: {depth} levels deep, over the limit of {max}")]
    TooDeep {
        /// The entry name, escaped.
        path: String,
        /// Number of components.
        depth: usize,
        /// The limit.
        max: usize,
    },
    /// A symlink whose target is absolute, leaves the folder, or is otherwise refused.
    #[error("archive entry {path}: symbolic link to {target} refused: {reason}")]
    LinkEscape {
        /// The link's name, escaped.
        path: String,
        /// The link's target, escaped.
        target: String,
        /// Which rule the target breaks.
        reason: &'static str,
    },
    /// An entry below an earlier symlink entry: it would be written through the link.
    #[error("archive entry {path}: goes through the symbolic link {link}")]
    ThroughSymlink {
        /// The entry name, escaped.
        path: String,
        /// The symlink on its path, escaped.
        link: String,
    },
    /// An entry below an earlier non-directory entry.
    #[error("archive entry {path}: {parent} is not a directory")]
    NotADirectory {
        /// The entry name, escaped.
        path: String,
        /// The file on its path, escaped.
        parent: String,
    },
    /// A hard link that does not name an earlier regular file of this archive.
    #[error("archive entry {path}: hard link to {target} refused: {reason}")]
    HardLinkEscape {
        /// The link's name, escaped.
        path: String,
        /// The link's target, escaped.
        target: String,
        /// Which rule the target breaks.
        reason: &'static str,
    },
    /// A device, FIFO, socket, sparse file or unknown entry type.
    #[error("archive entry {path}: {kind} not allowed")]
    SpecialFile {
        /// The entry name (for [`pack_dir`], the file's path), escaped.
        path: String,
        /// What it is: "character device", "FIFO", "GNU sparse file", "entry type 'V'", ...
        kind: String,
    },
    /// The same path as an earlier entry.
    #[error("archive entry {path}: the same path appears twice")]
    Duplicate {
        /// The entry name, escaped.
        path: String,
    },
    /// A path equal to an earlier one but for letter case or Unicode normalisation.
    #[error(
        "archive entry {path}: collides with an earlier entry whose name differs only in \
         letter case or Unicode normalisation"
    )]
    NameCollision {
        /// The entry name, escaped.
        path: String,
    },
    /// More entries than [`Limits::max_entries`].
    #[error("archive has more than {max} entries")]
    TooManyEntries {
        /// The limit.
        max: u64,
    },
    /// File contents beyond [`Limits::max_bytes`] (counted on bytes actually written).
    #[error("archive entry {path}: file contents exceed the limit of {max} bytes")]
    TooLarge {
        /// The entry that would cross the limit, escaped.
        path: String,
        /// The limit.
        max: u64,
    },
    /// The gzip stream expands more than [`Limits::max_ratio`] times.
    #[error(
        "archive expands more than {max_ratio} times: {decompressed} bytes from {compressed} \
         compressed bytes"
    )]
    RatioExceeded {
        /// The limit.
        max_ratio: u64,
        /// Compressed bytes read so far.
        compressed: u64,
        /// Decompressed bytes produced so far.
        decompressed: u64,
    },
    /// More than [`MAX_METADATA`] bytes of headers before one entry.
    #[error("archive: more than {max} bytes of headers and names after entry {after}")]
    MetadataTooLarge {
        /// The last entry read before them, escaped.
        after: String,
        /// The limit.
        max: u64,
    },
    /// A file-system or stream error.
    #[error("{path}: {source}")]
    Io {
        /// A file or entry path, escaped, or `<archive stream>` / `<output>` for the caller's
        /// reader / writer.
        path: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A malformed tar or gzip stream.
    #[error("archive is corrupt at {path}: {detail}")]
    Corrupt {
        /// The entry (or `<end of archive>`, `the header after ...`), escaped.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// Something in the folder given to [`pack_dir`] that cannot be packed.
    #[error("cannot pack {path}: {what}")]
    UnsupportedSource {
        /// The file's path or the prefix, escaped.
        path: String,
        /// Why.
        what: String,
    },
    /// The destination is not an existing, empty, real directory.
    #[error("destination {path}: {what}")]
    BadDestination {
        /// The destination given, escaped.
        path: String,
        /// Why.
        what: &'static str,
    },
}

/// What [`pack_dir`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackSummary {
    /// Tar entries, the `PREFIX/` entry included (GNU long-name records not counted).
    pub entries: u64,
    /// Regular files.
    pub files: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// `sha256:<hex>` of the uncompressed tar stream (the layer's `diff_id`).
    pub tar_digest: String,
}

/// Budgets for [`unpack_tar_gz`] and [`unpack_tar`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes of file content written in all. Default 8 GiB.
    pub max_bytes: u64,
    /// Most tar entries (of any type). Default 250,000.
    pub max_entries: u64,
    /// Most decompressed bytes per compressed byte read, checked past [`RATIO_GRACE`].
    /// Default 200. `u64::MAX` turns the check off.
    pub max_ratio: u64,
    /// Longest entry name or link target, in bytes. Default 4096 (`PATH_MAX`).
    pub max_path_len: usize,
    /// Most components in an entry name. Default 128.
    pub max_depth: usize,
}

impl Default for Limits {
    /// Chosen for folder artifacts (sites, bundles, app trees) deployed on a host:
    ///
    /// * `max_bytes` 8 GiB: above any site or app tree, low enough to fail before a typical
    ///   deploy volume fills; raise it for large model bundles.
    /// * `max_entries` 250,000: large node_modules trees hold ~100k files; the "1M empty files"
    ///   bomb is refused, and name tracking (~40 bytes per entry) stays near 10 MiB.
    /// * `max_ratio` 200: deflate tops out near 1032:1, which only a stream of (almost) only
    ///   zeros reaches; text, JSON and markup expand 3–30x. 200 caps an attacker at 200x the
    ///   blob size once past the 16 MiB grace, while mixed real trees stay far below it.
    /// * `max_path_len` 4096 (`PATH_MAX`), `max_depth` 128: far beyond real trees (deep
    ///   node_modules nests stay under 40 levels), yet they bound per-entry work.
    fn default() -> Self {
        Limits {
            max_bytes: 8 << 30,
            max_entries: 250_000,
            max_ratio: 200,
            max_path_len: 4096,
            max_depth: 128,
        }
    }
}

/// What an unpack created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackSummary {
    /// Tar entries read (every type, PAX global headers included).
    pub entries: u64,
    /// Regular files written (hard links not counted).
    pub files: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

// ---------------------------------------------------------------------------------------------
// Display escaping

const SHOW_MAX: usize = 256;

/// Escapes a name for error messages: no raw control characters or terminal escapes.
fn show(bytes: &[u8]) -> String {
    let mut end = bytes.len().min(SHOW_MAX);
    // Back off to a UTF-8 boundary so that a cut never shows a broken character.
    while end > 0 && end < bytes.len() && bytes.get(end).is_some_and(|b| b & 0xC0 == 0x80) {
        end -= 1;
    }
    let head = bytes.get(..end).unwrap_or(bytes);
    let mut out = String::with_capacity(head.len() + 8);
    for chunk in head.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else if c.is_control() || is_invisible(c) {
                out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    if end < bytes.len() {
        out.push_str(&format!("…({} bytes)", bytes.len()));
    }
    out
}

fn show_path(p: &Path) -> String {
    show(p.as_os_str().as_bytes())
}

/// Characters that are not control characters but can hide or reorder text on a terminal.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
}

// ---------------------------------------------------------------------------------------------
// Names

/// Why a name was refused (before it is attached to an entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameErr {
    Empty,
    Nul,
    Backslash,
    NotUtf8,
    Control,
    Absolute,
    DotDot,
    Root,
    ComponentTooLong(usize),
    TooLong(usize),
    TooDeep(usize),
}

impl NameErr {
    fn reason(self) -> &'static str {
        match self {
            NameErr::Empty => "empty name",
            NameErr::Nul => "contains a NUL byte",
            NameErr::Backslash => "contains a backslash",
            NameErr::NotUtf8 => "not valid UTF-8",
            NameErr::Control => "contains a control character",
            NameErr::Absolute => "absolute path",
            NameErr::DotDot => "contains a '..' component",
            NameErr::Root => "names the destination folder itself",
            NameErr::ComponentTooLong(_) => "a path component is too long",
            NameErr::TooLong(_) => "name too long",
            NameErr::TooDeep(_) => "too many path components",
        }
    }

    fn into_error(self, path: String, max_path_len: usize, max_depth: usize) -> ArchiveError {
        match self {
            NameErr::Absolute => ArchiveError::AbsolutePath { path },
            NameErr::DotDot => ArchiveError::PathEscape { path },
            NameErr::ComponentTooLong(len) => ArchiveError::ComponentTooLong {
                path,
                len,
                max: MAX_COMPONENT_LEN,
            },
            NameErr::TooLong(len) => ArchiveError::PathTooLong {
                path,
                len,
                max: max_path_len,
            },
            NameErr::TooDeep(depth) => ArchiveError::TooDeep {
                path,
                depth,
                max: max_depth,
            },
            other => ArchiveError::InvalidName {
                path,
                reason: other.reason(),
            },
        }
    }
}

/// Common byte-level checks for names and link targets; returns the UTF-8 text.
fn check_text(raw: &[u8], max_len: usize) -> Result<&str, NameErr> {
    if raw.is_empty() {
        return Err(NameErr::Empty);
    }
    if raw.len() > max_len {
        return Err(NameErr::TooLong(raw.len()));
    }
    if raw.contains(&0) {
        return Err(NameErr::Nul);
    }
    if raw.contains(&b'\\') {
        // `..\x` is a traversal on Windows-style extractors; report it as one.
        if raw.split(|b| *b == b'/' || *b == b'\\').any(|c| c == b"..") {
            return Err(NameErr::DotDot);
        }
        if raw.first() == Some(&b'\\') {
            return Err(NameErr::Absolute);
        }
        return Err(NameErr::Backslash);
    }
    let text = std::str::from_utf8(raw).map_err(|_| NameErr::NotUtf8)?;
    if text.chars().any(char::is_control) {
        return Err(NameErr::Control);
    }
    Ok(text)
}

/// Normalises an entry name to its components: no `.`/empty components, no `..`, relative.
/// An empty result is the destination folder itself (`./`).
fn parse_name(raw: &[u8], max_path_len: usize, max_depth: usize) -> Result<Vec<&str>, NameErr> {
    let text = check_text(raw, max_path_len)?;
    if text.starts_with('/') {
        return Err(NameErr::Absolute);
    }
    let mut comps = Vec::new();
    for comp in text.split('/') {
        match comp {
            "" | "." => {}
            ".." => return Err(NameErr::DotDot),
            _ if comp.len() > MAX_COMPONENT_LEN => {
                return Err(NameErr::ComponentTooLong(comp.len()));
            }
            _ => comps.push(comp),
        }
    }
    if comps.len() > max_depth {
        return Err(NameErr::TooDeep(comps.len()));
    }
    Ok(comps)
}

/// Checks a symlink target for a link whose directory is `parent_depth` levels below the
/// root: relative, `..` only as leading components, and not climbing above the root.
fn check_symlink_target(
    raw: &[u8],
    parent_depth: usize,
    max_len: usize,
) -> Result<(), &'static str> {
    let text = check_text(raw, max_len).map_err(|e| match e {
        NameErr::DotDot => "contains '..' with a backslash",
        NameErr::Absolute => "absolute target",
        other => other.reason(),
    })?;
    if text.starts_with('/') {
        return Err("absolute target");
    }
    let mut ups = 0usize;
    let mut below = false;
    for comp in text.split('/') {
        match comp {
            "" | "." => {}
            ".." if below => return Err("'..' after a name could leave the folder through a link"),
            ".." => ups += 1,
            _ if comp.len() > MAX_COMPONENT_LEN => return Err("a target component is too long"),
            _ => below = true,
        }
    }
    if ups > parent_depth {
        return Err("target leaves the folder");
    }
    Ok(())
}

/// 128 bits of SHA-256: collision-free in practice, and a (harmless) collision could only
/// make an archive be refused.
type Key = [u8; 16];

/// Stands for the destination root in [`Unpacker::checked_parent`].
const ROOT_KEY: Key = [0xff; 16];

fn key_of(h: &Sha256) -> Key {
    let digest = h.clone().finalize();
    let mut k = [0u8; 16];
    for (dst, src) in k.iter_mut().zip(digest.iter()) {
        *dst = *src;
    }
    k
}

/// Appends the folded form of one component: lower case, NFD, final sigma as sigma. Names
/// equal under this folding would be merged by a case-insensitive or normalising file system.
fn fold_into(comp: &str, out: &mut String) {
    if comp.is_ascii() {
        out.extend(comp.chars().map(|c| c.to_ascii_lowercase()));
        return;
    }
    let lowered: String = comp
        .nfd()
        .flat_map(char::to_lowercase)
        .map(|c| if c == 'ς' { 'σ' } else { c })
        .collect();
    out.extend(lowered.nfd());
}

/// (exact, folded) keys of every prefix of `comps`: `a`, `a/b`, `a/b/c`.
fn prefix_keys(comps: &[&str], scratch: &mut String) -> Vec<(Key, Key)> {
    let mut exact = Sha256::new();
    let mut folded = Sha256::new();
    let mut out = Vec::with_capacity(comps.len());
    for comp in comps {
        exact.update(comp.as_bytes());
        exact.update(b"/");
        scratch.clear();
        fold_into(comp, scratch);
        folded.update(scratch.as_bytes());
        folded.update(b"/");
        out.push((key_of(&exact), key_of(&folded)));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Packing

/// Permission bits stored for a directory / file / symlink (see the module docs).
fn pack_mode(kind: EntryType, fs_mode: u32) -> u32 {
    match kind {
        EntryType::Directory => 0o755,
        EntryType::Symlink => 0o777,
        _ if fs_mode & 0o100 != 0 => 0o755,
        _ => 0o644,
    }
}

/// Passes written bytes on while hashing and counting them.
struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let done = buf.get(..n).unwrap_or(buf);
        self.hasher.update(done);
        self.len = self.len.saturating_add(done.len() as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads exactly `remaining` bytes of a file being packed, and fails if the file turns out
/// shorter or longer (it changed while being packed), remembering that it was the source.
struct ExactReader<'a, R: Read> {
    inner: R,
    remaining: u64,
    failed: &'a RefCell<Option<io::Error>>,
}

impl<R: Read> ExactReader<'_, R> {
    fn fail(&self, e: io::Error) -> io::Error {
        let msg = e.to_string();
        *self.failed.borrow_mut() = Some(e);
        io::Error::other(msg)
    }
}

impl<R: Read> Read for ExactReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            // One probe byte: data beyond the size we announced means the file grew.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe) {
                Ok(0) => Ok(0),
                Ok(_) => Err(self.fail(io::Error::other("file grew while it was being packed"))),
                Err(e) => Err(self.fail(e)),
            };
        }
        let want = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let slot = buf.get_mut(..want).unwrap_or_default();
        match self.inner.read(slot) {
            Ok(0) if want > 0 => Err(self.fail(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while it was being packed",
            ))),
            Ok(n) => {
                self.remaining = self.remaining.saturating_sub(n as u64);
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => Err(self.fail(e)),
        }
    }
}

fn new_header(kind: EntryType, mode: u32, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(size);
    h
}

fn out_err(source: io::Error) -> ArchiveError {
    ArchiveError::Io {
        path: "<output>".to_string(),
        source,
    }
}

/// Packs folder `dir` into a deterministic gzip'd tar written to `out`, every entry named
/// `prefix/<relative path>` after a `prefix/` directory entry (see the module docs for the
/// exact format). The same folder always gives the same bytes, whatever its mtimes, owners,
/// umask or directory order. `prefix` is usually the folder's name; it must be a valid
/// relative name without `..`.
///
/// `dir` itself may be a symlink to a folder; nothing below it is followed. `out` receives the
/// gzip stream in chunks and is flushed at the end; wrap it to count or hash the layer.
pub fn pack_dir<W: Write + Send>(
    dir: &Path,
    prefix: &str,
    out: W,
) -> Result<PackSummary, ArchiveError> {
    pack_dir_level(dir, prefix, out, PACK_LEVEL)
}

/// Sees the content of every regular file [`pack_dir_tapped`] packs, in the same read (the secret scanner).
pub trait FileTap {
    /// A file named `name` inside the archive (`prefix/<relative path>`) starts.
    fn start(&mut self, name: &str);
    /// Its next bytes, in order.
    fn data(&mut self, bytes: &[u8]);
    /// It was packed whole.
    fn end(&mut self);
}

impl FileTap for () {
    fn start(&mut self, _: &str) {}
    fn data(&mut self, _: &[u8]) {}
    fn end(&mut self) {}
}

/// Passes a file's bytes to a [`FileTap`] as they are read.
struct TapReader<'t, R: Read> {
    inner: R,
    tap: &'t mut dyn FileTap,
}

impl<R: Read> Read for TapReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.tap.data(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
}

/// [`pack_dir`], also giving every file's bytes to `tap` as they are packed (no second read).
pub fn pack_dir_tapped<W: Write + Send>(
    dir: &Path,
    prefix: &str,
    out: W,
    tap: &mut dyn FileTap,
) -> Result<PackSummary, ArchiveError> {
    pack_dir_with(dir, prefix, out, PACK_LEVEL, tap)
}

/// Uncompressed tar bytes handed to the deflate thread at a time.
const PIPE_CHUNK: usize = 256 << 10;
/// Chunks in flight between the tar and deflate threads (bounds memory at a few MiB).
const PIPE_DEPTH: usize = 4;

/// The tar side of the tar -> deflate pipe: batches the tar stream into [`PIPE_CHUNK`]s.
struct PipeWriter {
    buf: Vec<u8>,
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
    spare: std::sync::mpsc::Receiver<Vec<u8>>,
}

impl PipeWriter {
    fn send(&mut self) -> io::Result<()> {
        let next = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(PIPE_CHUNK));
        let full = std::mem::replace(&mut self.buf, next);
        // a closed pipe means the deflate side failed; its error is the one reported
        self.tx
            .send(full)
            .map_err(|_| io::Error::other("the compressor stopped"))
    }
}

impl Write for PipeWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() >= PIPE_CHUNK {
            self.send()?;
        }
        let n = data.len().min(PIPE_CHUNK - self.buf.len());
        self.buf.extend_from_slice(data.get(..n).unwrap_or(data));
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.send()
    }
}

/// [`pack_dir`] at a given gzip level.
fn pack_dir_level<W: Write + Send>(
    dir: &Path,
    prefix: &str,
    out: W,
    level: u32,
) -> Result<PackSummary, ArchiveError> {
    pack_dir_with(dir, prefix, out, level, &mut ())
}

/// Packs on two threads: this one walks the folder, reads the files (giving their bytes to `tap`) and builds
/// and hashes the tar stream; a scoped thread deflates it into `out` (deflate is ~3/4 of the work, so the
/// two overlap well). The bytes are exactly those of a single-threaded pack.
fn pack_dir_with<W: Write + Send>(
    dir: &Path,
    prefix: &str,
    out: W,
    level: u32,
    tap: &mut dyn FileTap,
) -> Result<PackSummary, ArchiveError> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(PIPE_DEPTH);
    let (spare_tx, spare_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::scope(|s| {
        let deflater = s.spawn(move || -> io::Result<flate2::write::GzEncoder<W>> {
            let mut gz = GzBuilder::new()
                .mtime(0)
                .operating_system(255)
                .write(out, Compression::new(level));
            for mut chunk in rx {
                gz.write_all(&chunk)?;
                chunk.clear();
                let _ = spare_tx.send(chunk);
            }
            Ok(gz)
        });
        let mut pipe = PipeWriter {
            buf: Vec::with_capacity(PIPE_CHUNK),
            tx,
            spare: spare_rx,
        };
        let packed = pack_tar(dir, prefix, &mut pipe, tap)
            .and_then(|summary| pipe.flush().map(|()| summary).map_err(out_err));
        drop(pipe);
        let deflated = deflater
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the compressor thread panicked")));
        match (packed, deflated) {
            (Ok(summary), Ok(gz)) => {
                let mut out = gz.finish().map_err(out_err)?;
                out.flush().map_err(out_err)?;
                Ok(summary)
            }
            (Err(ArchiveError::Io { path, .. }), Err(e)) if path == "<output>" => Err(out_err(e)),
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(out_err(e)),
        }
    })
}

/// The tar half of [`pack_dir`]: writes the uncompressed tar stream to `tar_out`.
fn pack_tar<T: Write>(
    dir: &Path,
    prefix: &str,
    tar_out: T,
    tap: &mut dyn FileTap,
) -> Result<PackSummary, ArchiveError> {
    let defaults = Limits::default();
    let prefix_comps = parse_name(prefix.as_bytes(), defaults.max_path_len, defaults.max_depth)
        .map_err(|e| ArchiveError::UnsupportedSource {
            path: show(prefix.as_bytes()),
            what: format!("the name prefix is refused: {}", e.reason()),
        })?;
    if prefix_comps.is_empty() {
        return Err(ArchiveError::UnsupportedSource {
            path: show(prefix.as_bytes()),
            what: "the name prefix is empty".to_string(),
        });
    }
    let prefix = prefix_comps.join("/");

    let root_meta = fs::metadata(dir).map_err(|source| ArchiveError::Io {
        path: show_path(dir),
        source,
    })?;
    if !root_meta.is_dir() {
        return Err(ArchiveError::UnsupportedSource {
            path: show_path(dir),
            what: "not a directory".to_string(),
        });
    }

    let tee = HashingWriter {
        inner: tar_out,
        hasher: Sha256::new(),
        len: 0,
    };
    let mut builder = tar::Builder::new(tee);
    let mut summary = PackSummary {
        entries: 0,
        files: 0,
        bytes: 0,
        tar_digest: String::new(),
    };

    let root_name = format!("{prefix}/");
    let mut header = new_header(EntryType::Directory, 0o755, 0);
    builder
        .append_data(&mut header, Path::new(&root_name), io::empty())
        .map_err(out_err)?;
    summary.entries += 1;

    // Folded names of the siblings seen so far, one set per depth below `dir`.
    let mut siblings: Vec<HashSet<String>> = Vec::new();
    let mut fold_buf = String::new();
    let source_error: RefCell<Option<io::Error>> = RefCell::new(None);

    let walker = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .follow_links(false)
        .sort_by(|a, b| a.file_name().as_bytes().cmp(b.file_name().as_bytes()));
    for item in walker {
        let item = item.map_err(|e| {
            let path = e.path().map_or_else(|| show_path(dir), show_path);
            ArchiveError::Io {
                path,
                source: e
                    .into_io_error()
                    .unwrap_or_else(|| io::Error::other("directory walk failed")),
            }
        })?;
        let fs_path = item.path();
        let rel = fs_path
            .strip_prefix(dir)
            .map_err(|_| ArchiveError::UnsupportedSource {
                path: show_path(fs_path),
                what: "walked outside the folder".to_string(),
            })?;
        let rel_text = rel.to_str().ok_or_else(|| ArchiveError::InvalidName {
            path: show_path(rel),
            reason: NameErr::NotUtf8.reason(),
        })?;
        let name = format!("{prefix}/{rel_text}");
        let comps = parse_name(name.as_bytes(), defaults.max_path_len, defaults.max_depth)
            .map_err(|e| {
                e.into_error(
                    show(name.as_bytes()),
                    defaults.max_path_len,
                    defaults.max_depth,
                )
            })?;

        // Sibling collisions (README vs readme, NFC vs NFD) would be refused on unpack.
        let depth = item.depth().saturating_sub(1);
        siblings.truncate(depth + 1);
        while siblings.len() < depth + 1 {
            siblings.push(HashSet::new());
        }
        fold_buf.clear();
        fold_into(comps.last().copied().unwrap_or_default(), &mut fold_buf);
        if let Some(level_set) = siblings.get_mut(depth)
            && !level_set.insert(fold_buf.clone())
        {
            return Err(ArchiveError::NameCollision {
                path: show(name.as_bytes()),
            });
        }

        let ft = item.file_type();
        if ft.is_dir() {
            let dir_name = format!("{name}/");
            let mut header =
                new_header(EntryType::Directory, pack_mode(EntryType::Directory, 0), 0);
            builder
                .append_data(&mut header, Path::new(&dir_name), io::empty())
                .map_err(out_err)?;
        } else if ft.is_file() {
            let file = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(fs_path)
                .map_err(|source| ArchiveError::Io {
                    path: show_path(fs_path),
                    source,
                })?;
            let meta = file.metadata().map_err(|source| ArchiveError::Io {
                path: show_path(fs_path),
                source,
            })?;
            if !meta.is_file() {
                return Err(ArchiveError::UnsupportedSource {
                    path: show_path(fs_path),
                    what: "changed type while being packed".to_string(),
                });
            }
            let size = meta.len();
            let mode = pack_mode(EntryType::Regular, meta.permissions().mode());
            let mut header = new_header(EntryType::Regular, mode, size);
            let reader = ExactReader {
                inner: file,
                remaining: size,
                failed: &source_error,
            };
            tap.start(&name);
            let reader = TapReader {
                inner: reader,
                tap: &mut *tap,
            };
            if let Err(e) = builder.append_data(&mut header, Path::new(&name), reader) {
                return Err(match source_error.borrow_mut().take() {
                    Some(source) => ArchiveError::Io {
                        path: show_path(fs_path),
                        source,
                    },
                    None => out_err(e),
                });
            }
            tap.end();
            summary.files += 1;
            summary.bytes = summary.bytes.saturating_add(size);
        } else if ft.is_symlink() {
            let target = fs::read_link(fs_path).map_err(|source| ArchiveError::Io {
                path: show_path(fs_path),
                source,
            })?;
            let target_bytes = target.as_os_str().as_bytes();
            let parent_depth = rel.components().count().saturating_sub(1);
            check_symlink_target(target_bytes, parent_depth, defaults.max_path_len).map_err(
                |reason| ArchiveError::LinkEscape {
                    path: show(name.as_bytes()),
                    target: show(target_bytes),
                    reason,
                },
            )?;
            let mut header = new_header(EntryType::Symlink, pack_mode(EntryType::Symlink, 0), 0);
            builder
                .append_link(&mut header, Path::new(&name), &target)
                .map_err(out_err)?;
        } else {
            let kind = if ft.is_fifo() {
                "FIFO"
            } else if ft.is_socket() {
                "socket"
            } else if ft.is_char_device() {
                "character device"
            } else if ft.is_block_device() {
                "block device"
            } else {
                "special file"
            };
            return Err(ArchiveError::SpecialFile {
                path: show_path(fs_path),
                kind: kind.to_string(),
            });
        }
        summary.entries += 1;
    }

    let tee = builder.into_inner().map_err(out_err)?;
    summary.tar_digest = format!("sha256:{}", hex::encode(tee.hasher.finalize()));
    let mut out = tee.inner;
    out.flush().map_err(out_err)?;
    Ok(summary)
}

// ---------------------------------------------------------------------------------------------
// Unpacking: metering

#[derive(Debug, Clone, Copy)]
enum Trip {
    Ratio,
    Metadata,
}

/// Shared counters between the layers of the reading stack.
struct Meter {
    /// `None`: no ratio check (uncompressed input).
    max_ratio: Option<u64>,
    compressed: Cell<u64>,
    expanded: Cell<u64>,
    /// `Some(n)`: metadata mode, `n` bytes left before [`Trip::Metadata`].
    meta_left: Cell<Option<u64>>,
    trip: Cell<Option<Trip>>,
    source_error: RefCell<Option<io::Error>>,
}

impl Meter {
    fn new(max_ratio: Option<u64>) -> Self {
        Meter {
            max_ratio,
            compressed: Cell::new(0),
            expanded: Cell::new(0),
            meta_left: Cell::new(Some(MAX_METADATA)),
            trip: Cell::new(None),
            source_error: RefCell::new(None),
        }
    }

    fn metadata_mode(&self, budget: u64) {
        self.meta_left.set(Some(budget));
    }

    fn data_mode(&self) {
        self.meta_left.set(None);
    }

    fn tripped(&self, trip: Trip) -> io::Error {
        self.trip.set(Some(trip));
        io::Error::other("archive limit exceeded")
    }
}

/// Counts the caller's (compressed) bytes and keeps the caller's own I/O error.
struct SourceReader<'m, R: Read> {
    inner: R,
    meter: &'m Meter,
}

impl<R: Read> Read for SourceReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.meter
                    .compressed
                    .set(self.meter.compressed.get().saturating_add(n as u64));
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let msg = e.to_string();
                *self.meter.source_error.borrow_mut() = Some(e);
                Err(io::Error::other(msg))
            }
        }
    }
}

/// Sits right under the tar parser: enforces the metadata and ratio budgets.
struct MeterReader<'m, R: Read> {
    inner: R,
    meter: &'m Meter,
}

impl<R: Read> Read for MeterReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let meter = self.meter;
        if meter.trip.get().is_some() {
            return Err(io::Error::other("archive limit exceeded"));
        }
        let mut want = buf.len();
        let meta_left = meter.meta_left.get();
        if let Some(left) = meta_left {
            if left == 0 && want > 0 {
                return Err(meter.tripped(Trip::Metadata));
            }
            want = want.min(usize::try_from(left).unwrap_or(usize::MAX));
        }
        let slot = buf.get_mut(..want).unwrap_or_default();
        let n = self.inner.read(slot)?;
        if let Some(left) = meta_left {
            meter.meta_left.set(Some(left.saturating_sub(n as u64)));
        }
        let expanded = meter.expanded.get().saturating_add(n as u64);
        meter.expanded.set(expanded);
        if let Some(max_ratio) = meter.max_ratio {
            let compressed = meter.compressed.get();
            if expanded.saturating_sub(RATIO_GRACE) > max_ratio.saturating_mul(compressed) {
                return Err(meter.tripped(Trip::Ratio));
            }
        }
        Ok(n)
    }
}

// ---------------------------------------------------------------------------------------------
// Unpacking: the extractor

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir { explicit: bool },
    File,
    Symlink,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    exact: Key,
    kind: Kind,
}

struct Unpacker<'a> {
    root: PathBuf,
    limits: &'a Limits,
    meter: &'a Meter,
    /// Every path created so far, by folded key.
    nodes: HashMap<Key, Node>,
    summary: UnpackSummary,
    /// Display name of the last entry, for errors raised while reading the next header.
    last: String,
    /// The parent directory last checked with `lstat`.
    checked_parent: Option<Key>,
    scratch: String,
    buf: Vec<u8>,
}

/// Unpacks a gzip'd tar (one or more gzip members) into `dest`, an existing, empty, real
/// directory that the caller created and removes if this fails. See the module docs for
/// every rule; the first broken rule is returned at once.
pub fn unpack_tar_gz<R: Read>(
    compressed: R,
    dest: &Path,
    limits: &Limits,
) -> Result<UnpackSummary, ArchiveError> {
    let meter = Meter::new(Some(limits.max_ratio));
    let source = SourceReader {
        inner: compressed,
        meter: &meter,
    };
    unpack_stream(MultiGzDecoder::new(source), &meter, dest, limits)
}

/// Same as [`unpack_tar_gz`] for an uncompressed tar (`max_ratio` does not apply).
pub fn unpack_tar<R: Read>(
    tar: R,
    dest: &Path,
    limits: &Limits,
) -> Result<UnpackSummary, ArchiveError> {
    let meter = Meter::new(None);
    let source = SourceReader {
        inner: tar,
        meter: &meter,
    };
    unpack_stream(source, &meter, dest, limits)
}

fn prepare_dest(dest: &Path) -> Result<PathBuf, ArchiveError> {
    let io_err = |source| ArchiveError::Io {
        path: show_path(dest),
        source,
    };
    let meta = fs::symlink_metadata(dest).map_err(io_err)?;
    if meta.file_type().is_symlink() {
        return Err(ArchiveError::BadDestination {
            path: show_path(dest),
            what: "is a symbolic link",
        });
    }
    if !meta.is_dir() {
        return Err(ArchiveError::BadDestination {
            path: show_path(dest),
            what: "is not a directory",
        });
    }
    if fs::read_dir(dest).map_err(io_err)?.next().is_some() {
        return Err(ArchiveError::BadDestination {
            path: show_path(dest),
            what: "is not empty",
        });
    }
    // Absolute from here on: nothing depends on the working directory.
    fs::canonicalize(dest).map_err(io_err)
}

fn unpack_stream<S: Read>(
    stream: S,
    meter: &Meter,
    dest: &Path,
    limits: &Limits,
) -> Result<UnpackSummary, ArchiveError> {
    let root = prepare_dest(dest)?;
    let mut ctx = Unpacker {
        root,
        limits,
        meter,
        nodes: HashMap::new(),
        summary: UnpackSummary::default(),
        last: "<start of archive>".to_string(),
        checked_parent: None,
        scratch: String::new(),
        buf: vec![0u8; 64 * 1024],
    };
    let mut archive = tar::Archive::new(MeterReader {
        inner: stream,
        meter,
    });
    {
        meter.metadata_mode(MAX_METADATA);
        let mut entries = archive.entries().map_err(|e| ctx.stream_error(e, None))?;
        loop {
            meter.metadata_mode(MAX_METADATA);
            let mut entry = match entries.next() {
                None => break,
                Some(Err(e)) => return Err(ctx.stream_error(e, None)),
                Some(Ok(entry)) => entry,
            };
            ctx.summary.entries = ctx.summary.entries.saturating_add(1);
            if ctx.summary.entries > limits.max_entries {
                return Err(ArchiveError::TooManyEntries {
                    max: limits.max_entries,
                });
            }
            ctx.entry(&mut entry)?;
        }
    }
    // Past the end-of-archive marker: only zero padding may follow. Reading to the end also
    // makes the gzip decoder check its CRC and length trailer.
    meter.metadata_mode(MAX_METADATA);
    let mut rest = archive.into_inner();
    loop {
        let n = match rest.read(&mut ctx.buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                ctx.last = "<end of archive>".to_string();
                if matches!(meter.trip.get(), Some(Trip::Metadata)) {
                    return Err(ArchiveError::Corrupt {
                        path: ctx.last.clone(),
                        detail: format!(
                            "more than {MAX_METADATA} bytes after the end-of-archive marker"
                        ),
                    });
                }
                return Err(ctx.stream_error(e, Some("<end of archive>")));
            }
        };
        if ctx.buf.get(..n).is_some_and(|b| b.iter().any(|&x| x != 0)) {
            return Err(ArchiveError::Corrupt {
                path: "<end of archive>".to_string(),
                detail: "data after the end-of-archive marker".to_string(),
            });
        }
    }
    Ok(ctx.summary)
}

impl Unpacker<'_> {
    /// Maps an error from the reading stack to the check that caused it. `at`: the entry
    /// being read, or `None` while reading the header after [`Unpacker::last`].
    fn stream_error(&self, e: io::Error, at: Option<&str>) -> ArchiveError {
        match self.meter.trip.get() {
            Some(Trip::Ratio) => ArchiveError::RatioExceeded {
                max_ratio: self.limits.max_ratio,
                compressed: self.meter.compressed.get(),
                decompressed: self.meter.expanded.get(),
            },
            Some(Trip::Metadata) => ArchiveError::MetadataTooLarge {
                after: self.last.clone(),
                max: MAX_METADATA,
            },
            None => match self.meter.source_error.borrow_mut().take() {
                Some(source) => ArchiveError::Io {
                    path: "<archive stream>".to_string(),
                    source,
                },
                None => ArchiveError::Corrupt {
                    path: at
                        .map_or_else(|| format!("the header after {}", self.last), str::to_string),
                    detail: e.to_string(),
                },
            },
        }
    }

    fn corrupt(&self, path: &str, detail: impl Into<String>) -> ArchiveError {
        ArchiveError::Corrupt {
            path: path.to_string(),
            detail: detail.into(),
        }
    }

    fn io_at(&self, rel: &str, source: io::Error) -> ArchiveError {
        ArchiveError::Io {
            path: show(rel.as_bytes()),
            source,
        }
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), ArchiveError> {
        let raw_name = entry.path_bytes().into_owned();
        let shown = show(&raw_name);
        self.last.clone_from(&shown);
        let mut kind = entry.header().entry_type();
        if matches!(kind, EntryType::Regular | EntryType::Continuous) && raw_name.ends_with(b"/") {
            // Pre-POSIX tars mark directories with type NUL and a trailing slash, and Go and
            // Python read them so; any other "file" named like a directory is refused.
            if entry.header().as_bytes().get(156) == Some(&0) {
                kind = EntryType::Directory;
            } else {
                return Err(ArchiveError::InvalidName {
                    path: shown,
                    reason: "a file entry whose name ends with '/'",
                });
            }
        }

        // Entry types first: nothing else about a device or sparse file matters.
        let special = match kind {
            EntryType::Regular
            | EntryType::Continuous
            | EntryType::Directory
            | EntryType::Symlink
            | EntryType::Link => None,
            // Global PAX headers (e.g. `git archive`'s commit id) describe nothing we use.
            EntryType::XGlobalHeader => return Ok(()),
            EntryType::Char => Some("character device".to_string()),
            EntryType::Block => Some("block device".to_string()),
            EntryType::Fifo => Some("FIFO".to_string()),
            EntryType::GNUSparse => Some("GNU sparse file".to_string()),
            EntryType::GNULongName | EntryType::GNULongLink | EntryType::XHeader => {
                return Err(self.corrupt(&shown, "misplaced extension header"));
            }
            other => Some(format!("entry type {:?}", char::from(other.as_byte()))),
        };
        if let Some(kind) = special {
            return Err(ArchiveError::SpecialFile { path: shown, kind });
        }
        self.check_pax(entry, &raw_name, &shown)?;

        let limits = self.limits;
        let comps = parse_name(&raw_name, limits.max_path_len, limits.max_depth)
            .map_err(|e| e.into_error(shown.clone(), limits.max_path_len, limits.max_depth))?;
        if comps.is_empty() {
            // `./`: the destination itself. Its mode stays the caller's.
            if kind == EntryType::Directory {
                return Ok(());
            }
            return Err(ArchiveError::InvalidName {
                path: shown,
                reason: NameErr::Root.reason(),
            });
        }
        let rel = comps.join("/");
        let keys = prefix_keys(&comps, &mut self.scratch);
        self.ensure_parents(&comps, &keys, &shown)?;
        let Some(&(exact, folded)) = keys.last() else {
            return Err(self.corrupt(&shown, "empty name"));
        };

        // The leaf may only exist already as an implied directory, and only for a directory.
        match self.nodes.get(&folded).copied() {
            None => {}
            Some(node) if node.exact != exact => {
                return Err(ArchiveError::NameCollision { path: shown });
            }
            Some(Node {
                kind: Kind::Dir { explicit: false },
                ..
            }) if kind == EntryType::Directory => {
                let mode = dir_mode(
                    entry
                        .header()
                        .mode()
                        .map_err(|e| self.corrupt(&shown, e.to_string()))?,
                );
                self.chmod_dir(&rel, mode)?;
                self.nodes.insert(
                    folded,
                    Node {
                        exact,
                        kind: Kind::Dir { explicit: true },
                    },
                );
                return Ok(());
            }
            Some(_) => return Err(ArchiveError::Duplicate { path: shown }),
        }

        self.check_parent_on_disk(&comps, &keys, &shown)?;
        let new_kind = match kind {
            EntryType::Directory => {
                let mode = dir_mode(
                    entry
                        .header()
                        .mode()
                        .map_err(|e| self.corrupt(&shown, e.to_string()))?,
                );
                self.make_dir(&rel, &shown, mode)?;
                Kind::Dir { explicit: true }
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                check_symlink_target(&target, comps.len().saturating_sub(1), limits.max_path_len)
                    .map_err(|reason| ArchiveError::LinkEscape {
                    path: shown.clone(),
                    target: show(&target),
                    reason,
                })?;
                let target_path = Path::new(std::ffi::OsStr::from_bytes(&target));
                std::os::unix::fs::symlink(target_path, self.root.join(&rel))
                    .map_err(|e| self.create_error(&rel, &shown, e))?;
                Kind::Symlink
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let source_rel = self.hard_link_source(&target, &shown)?;
                fs::hard_link(self.root.join(&source_rel), self.root.join(&rel))
                    .map_err(|e| self.create_error(&rel, &shown, e))?;
                Kind::File
            }
            _ => {
                let mode = file_mode(
                    entry
                        .header()
                        .mode()
                        .map_err(|e| self.corrupt(&shown, e.to_string()))?,
                );
                self.write_file(entry, &rel, &shown, mode)?;
                Kind::File
            }
        };
        self.nodes.insert(
            folded,
            Node {
                exact,
                kind: new_kind,
            },
        );
        Ok(())
    }

    /// PAX records must parse, keys must be unique, `path`/`linkpath` must agree with the
    /// name the tar crate chose (it prefers a GNU long name), and no PAX sparse files.
    fn check_pax<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        raw_name: &[u8],
        shown: &str,
    ) -> Result<(), ArchiveError> {
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        let size = entry.size();
        let Some(exts) = entry
            .pax_extensions()
            .map_err(|e| self.corrupt(shown, e.to_string()))?
        else {
            return Ok(());
        };
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        for ext in exts {
            let ext = ext.map_err(|_| self.corrupt(shown, "malformed PAX record"))?;
            let key = ext.key_bytes();
            if !seen.insert(key.to_vec()) {
                return Err(self.corrupt(shown, format!("PAX key {} appears twice", show(key))));
            }
            let value = ext.value_bytes();
            if key.starts_with(b"GNU.sparse.") {
                return Err(ArchiveError::SpecialFile {
                    path: shown.to_string(),
                    kind: "PAX sparse file".to_string(),
                });
            }
            match key {
                b"path" if value != raw_name => {
                    return Err(self.corrupt(shown, "GNU long name and PAX path disagree"));
                }
                b"linkpath" if link.as_deref() != Some(value) => {
                    return Err(self.corrupt(shown, "GNU long link and PAX linkpath disagree"));
                }
                b"size" => {
                    let parsed = std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.parse::<u64>().ok());
                    if parsed != Some(size) {
                        return Err(self.corrupt(shown, "invalid PAX size"));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Creates the parents implied by an entry, refusing to pass symlinks or files.
    fn ensure_parents(
        &mut self,
        comps: &[&str],
        keys: &[(Key, Key)],
        shown: &str,
    ) -> Result<(), ArchiveError> {
        let parents = comps.len().saturating_sub(1);
        for (i, &(exact, folded)) in keys.iter().take(parents).enumerate() {
            match self.nodes.get(&folded).copied() {
                Some(node) if node.exact != exact => {
                    return Err(ArchiveError::NameCollision {
                        path: shown.to_string(),
                    });
                }
                Some(Node {
                    kind: Kind::Dir { .. },
                    ..
                }) => {}
                Some(Node {
                    kind: Kind::Symlink,
                    ..
                }) => {
                    return Err(ArchiveError::ThroughSymlink {
                        path: shown.to_string(),
                        link: show(comps.get(..=i).unwrap_or_default().join("/").as_bytes()),
                    });
                }
                Some(Node {
                    kind: Kind::File, ..
                }) => {
                    return Err(ArchiveError::NotADirectory {
                        path: shown.to_string(),
                        parent: show(comps.get(..=i).unwrap_or_default().join("/").as_bytes()),
                    });
                }
                None => {
                    let parent_comps = comps.get(..=i).unwrap_or_default();
                    let parent_keys = keys.get(..=i).unwrap_or_default();
                    self.check_parent_on_disk(parent_comps, parent_keys, shown)?;
                    let rel = parent_comps.join("/");
                    self.make_dir(&rel, shown, 0o755)?;
                    self.nodes.insert(
                        folded,
                        Node {
                            exact,
                            kind: Kind::Dir { explicit: false },
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// `lstat`s the directory that will hold `comps`'s last component: it must be a real
    /// directory (belt and braces: every parent was made by `make_dir`).
    fn check_parent_on_disk(
        &mut self,
        comps: &[&str],
        keys: &[(Key, Key)],
        shown: &str,
    ) -> Result<(), ArchiveError> {
        let depth = comps.len().saturating_sub(1);
        let parent_key = match depth.checked_sub(1) {
            None => ROOT_KEY,
            Some(i) => keys.get(i).map_or(ROOT_KEY, |k| k.0),
        };
        if self.checked_parent == Some(parent_key) {
            return Ok(());
        }
        let parent = match comps.get(..depth) {
            Some(p) if !p.is_empty() => self.root.join(p.join("/")),
            _ => self.root.clone(),
        };
        let meta = fs::symlink_metadata(&parent).map_err(|e| self.io_at(shown, e))?;
        let parent_shown = show_path(parent.strip_prefix(&self.root).unwrap_or(&parent));
        if meta.file_type().is_symlink() {
            return Err(ArchiveError::ThroughSymlink {
                path: shown.to_string(),
                link: parent_shown,
            });
        }
        if !meta.is_dir() {
            return Err(ArchiveError::NotADirectory {
                path: shown.to_string(),
                parent: parent_shown,
            });
        }
        self.checked_parent = Some(parent_key);
        Ok(())
    }

    fn create_error(&self, rel: &str, shown: &str, e: io::Error) -> ArchiveError {
        if e.kind() == io::ErrorKind::AlreadyExists {
            // Not in our table but present on disk: the file system merged two names.
            ArchiveError::NameCollision {
                path: shown.to_string(),
            }
        } else {
            self.io_at(rel, e)
        }
    }

    fn make_dir(&self, rel: &str, shown: &str, mode: u32) -> Result<(), ArchiveError> {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(self.root.join(rel))
            .map_err(|e| self.create_error(rel, shown, e))?;
        self.chmod_dir(rel, mode)
    }

    /// `fchmod` through an `O_NOFOLLOW | O_DIRECTORY` descriptor: never through a link.
    fn chmod_dir(&self, rel: &str, mode: u32) -> Result<(), ArchiveError> {
        let dir = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY)
            .open(self.root.join(rel))
            .map_err(|e| self.io_at(rel, e))?;
        dir.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| self.io_at(rel, e))
    }

    /// Resolves a hard link's target from the destination root: it must be an earlier
    /// regular-file entry of this archive, reached through real directories only.
    fn hard_link_source(&mut self, target: &[u8], shown: &str) -> Result<String, ArchiveError> {
        let refuse = |reason: &'static str| ArchiveError::HardLinkEscape {
            path: shown.to_string(),
            target: show(target),
            reason,
        };
        let comps = parse_name(target, self.limits.max_path_len, self.limits.max_depth).map_err(
            |e| match e {
                NameErr::Absolute => refuse("absolute target"),
                NameErr::DotDot => refuse("'..' in target"),
                NameErr::Empty => refuse("empty target"),
                _ => refuse("invalid target name"),
            },
        )?;
        if comps.is_empty() {
            return Err(refuse("target is the destination folder"));
        }
        let keys = prefix_keys(&comps, &mut self.scratch);
        for (i, &(exact, folded)) in keys.iter().enumerate() {
            let node = self.nodes.get(&folded).copied();
            let last = i + 1 == keys.len();
            match node {
                Some(n) if n.exact == exact && !last && matches!(n.kind, Kind::Dir { .. }) => {}
                Some(n) if n.exact == exact && last && n.kind == Kind::File => {}
                Some(n) if n.exact == exact && n.kind == Kind::Symlink => {
                    return Err(refuse("target goes through or is a symbolic link"));
                }
                _ => {
                    return Err(refuse(
                        "target is not an earlier regular file of this archive",
                    ));
                }
            }
        }
        let rel = comps.join("/");
        let meta = fs::symlink_metadata(self.root.join(&rel)).map_err(|e| self.io_at(&rel, e))?;
        if !meta.file_type().is_file() {
            return Err(refuse("target is not a regular file"));
        }
        Ok(rel)
    }

    fn write_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        rel: &str,
        shown: &str,
        mode: u32,
    ) -> Result<(), ArchiveError> {
        let max = self.limits.max_bytes;
        let declared = entry.size();
        if declared > max.saturating_sub(self.summary.bytes) {
            return Err(ArchiveError::TooLarge {
                path: shown.to_string(),
                max,
            });
        }
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.root.join(rel))
            .map_err(|e| self.create_error(rel, shown, e))?;
        self.meter.data_mode();
        let mut written: u64 = 0;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.stream_error(e, Some(shown))),
            };
            // Budgets count bytes actually read, whatever the header said.
            if (n as u64) > max.saturating_sub(self.summary.bytes) {
                return Err(ArchiveError::TooLarge {
                    path: shown.to_string(),
                    max,
                });
            }
            let chunk = self.buf.get(..n).unwrap_or_default();
            file.write_all(chunk).map_err(|e| self.io_at(rel, e))?;
            self.summary.bytes = self.summary.bytes.saturating_add(n as u64);
            written = written.saturating_add(n as u64);
        }
        self.meter.metadata_mode(MAX_METADATA);
        if written != declared {
            return Err(self.corrupt(shown, format!("truncated: {written} of {declared} bytes")));
        }
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| self.io_at(rel, e))?;
        self.summary.files = self.summary.files.saturating_add(1);
        Ok(())
    }
}

/// Permission bits only; no setuid/setgid/sticky, no `o+w`.
fn file_mode(mode: u32) -> u32 {
    mode & 0o775
}

/// As [`file_mode`], plus `u+rwx` so the tree can always be filled and removed.
fn dir_mode(mode: u32) -> u32 {
    (mode & 0o775) | 0o700
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::process::Command;
    use std::time::{Duration, Instant, SystemTime};

    // -----------------------------------------------------------------------------------------
    // Hand-made archives: raw GNU headers, so that names the tar crate's Builder would refuse
    // (`..`, absolute, NUL, ...) can be written.

    #[derive(Default)]
    struct Tb {
        out: Vec<u8>,
    }

    fn pad(out: &mut Vec<u8>) {
        while !out.len().is_multiple_of(512) {
            out.push(0);
        }
    }

    impl Tb {
        fn new() -> Self {
            Tb::default()
        }

        /// A GNU `././@LongLink` record of type `L` (name) or `K` (link target).
        fn long(&mut self, kind: u8, bytes: &[u8]) -> &mut Self {
            let mut data = bytes.to_vec();
            data.push(0);
            let mut h = Header::new_gnu();
            h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
            h.set_entry_type(EntryType::new(kind));
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_size(data.len() as u64);
            h.set_cksum();
            self.out.extend_from_slice(h.as_bytes());
            self.out.extend_from_slice(&data);
            pad(&mut self.out);
            self
        }

        fn header(
            &mut self,
            name: &[u8],
            kind: EntryType,
            mode: u32,
            size: u64,
            link: &[u8],
        ) -> &mut Self {
            if name.len() > 100 {
                self.long(b'L', name);
            }
            if link.len() > 100 {
                self.long(b'K', link);
            }
            let mut h = Header::new_gnu();
            {
                let g = h.as_gnu_mut().unwrap();
                let n = name.len().min(100);
                g.name[..n].copy_from_slice(&name[..n]);
                let l = link.len().min(100);
                g.linkname[..l].copy_from_slice(&link[..l]);
            }
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_size(size);
            h.set_mtime(0);
            h.set_uid(0);
            h.set_gid(0);
            h.set_cksum();
            self.out.extend_from_slice(h.as_bytes());
            self
        }

        fn data(&mut self, data: &[u8]) -> &mut Self {
            self.out.extend_from_slice(data);
            pad(&mut self.out);
            self
        }

        fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
            self.file_b(name.as_bytes(), data, 0o644)
        }

        fn file_b(&mut self, name: &[u8], data: &[u8], mode: u32) -> &mut Self {
            self.header(name, EntryType::Regular, mode, data.len() as u64, b"");
            self.data(data)
        }

        fn dir(&mut self, name: &str) -> &mut Self {
            self.header(name.as_bytes(), EntryType::Directory, 0o755, 0, b"")
        }

        fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
            self.header(
                name.as_bytes(),
                EntryType::Symlink,
                0o777,
                0,
                target.as_bytes(),
            )
        }

        fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
            self.header(
                name.as_bytes(),
                EntryType::Link,
                0o644,
                0,
                target.as_bytes(),
            )
        }

        fn special(&mut self, name: &str, kind: EntryType) -> &mut Self {
            self.header(name.as_bytes(), kind, 0o644, 0, b"")
        }

        /// A PAX `x` header with correctly length-prefixed records.
        fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
            let mut data = Vec::new();
            for (k, v) in records {
                data.extend_from_slice(&pax_record(k, v));
            }
            self.pax_raw(&data)
        }

        fn pax_raw(&mut self, data: &[u8]) -> &mut Self {
            self.header(
                b"PaxHeaders/x",
                EntryType::XHeader,
                0o644,
                data.len() as u64,
                b"",
            );
            self.data(data)
        }

        fn build(&mut self) -> Vec<u8> {
            let mut out = std::mem::take(&mut self.out);
            out.extend_from_slice(&[0u8; 1024]);
            out
        }
    }

    fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
        let body_len = 1 + key.len() + 1 + value.len() + 1;
        let mut len = body_len + 1;
        while len.to_string().len() + body_len != len {
            len = len.to_string().len() + body_len;
        }
        let mut rec = format!("{len} {key}=").into_bytes();
        rec.extend_from_slice(value);
        rec.push(b'\n');
        assert_eq!(rec.len(), len);
        rec
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), Compression::new(6));
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        MultiGzDecoder::new(data).read_to_end(&mut out).unwrap();
        out
    }

    // -----------------------------------------------------------------------------------------
    // A sandbox: ROOT/dest (empty, the target) and ROOT/outside (a sentinel that must survive).

    struct Sandbox {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        dest: PathBuf,
        outside: PathBuf,
    }

    fn sandbox() -> Sandbox {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let dest = root.join("dest");
        let outside = root.join("outside");
        fs::create_dir(&dest).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("sentinel"), b"keep").unwrap();
        Sandbox {
            _tmp: tmp,
            root,
            dest,
            outside,
        }
    }

    impl Sandbox {
        /// Nothing was created, changed or removed next to `dest`.
        fn assert_outside_untouched(&self) {
            let mut top: Vec<_> = fs::read_dir(&self.root)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            top.sort();
            assert_eq!(
                top,
                ["dest", "outside"],
                "something was created next to dest"
            );
            let inside: Vec<_> = fs::read_dir(&self.outside)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            assert_eq!(inside, ["sentinel"], "something was created outside dest");
            let md = fs::symlink_metadata(self.outside.join("sentinel")).unwrap();
            assert!(md.is_file());
            assert_eq!(fs::read(self.outside.join("sentinel")).unwrap(), b"keep");
            assert_eq!(md.mode() & 0o7777, 0o644, "sentinel mode changed");
        }

        fn unpack(&self, tar: &[u8], limits: &Limits) -> Result<UnpackSummary, ArchiveError> {
            let r = unpack_tar_gz(&gz(tar)[..], &self.dest, limits);
            self.assert_outside_untouched();
            r
        }

        fn unpack_err(&self, tar: &[u8], limits: &Limits) -> ArchiveError {
            let err = self
                .unpack(tar, limits)
                .expect_err("archive must be refused");
            let text = err.to_string();
            assert!(
                !text.chars().any(|c| c.is_control()),
                "raw control character in error message: {text:?}"
            );
            err
        }
    }

    /// Unpacks `tar` into a fresh sandbox and returns the error, checking nothing escaped.
    fn refused(tar: &[u8]) -> ArchiveError {
        refused_with(tar, &Limits::default())
    }

    fn refused_with(tar: &[u8], limits: &Limits) -> ArchiveError {
        let sb = sandbox();
        sb.unpack_err(tar, limits)
    }

    fn accepted(tar: &[u8]) -> (Sandbox, UnpackSummary) {
        let sb = sandbox();
        let s = sb
            .unpack(tar, &Limits::default())
            .expect("archive must be accepted");
        (sb, s)
    }

    fn mode_of(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    // -----------------------------------------------------------------------------------------
    // Names and helpers

    #[test]
    fn show_escapes_control_and_invisible_characters() {
        assert_eq!(show(b"a\x1b[31mb"), "a\\u{1b}[31mb");
        assert_eq!(show(b"new\nline"), "new\\u{a}line");
        assert_eq!(show("rlo\u{202e}txt".as_bytes()), "rlo\\u{202e}txt");
        assert_eq!(show(b"bad\xffbyte"), "bad\\xffbyte");
        assert_eq!(show(b"back\\slash"), "back\\\\slash");
        let long = "é".repeat(300);
        let shown = show(long.as_bytes());
        assert!(shown.ends_with("…(600 bytes)"), "{shown}");
        assert!(shown.chars().filter(|&c| c == 'é').count() == 128);
    }

    #[test]
    fn parse_name_normalises_and_refuses() {
        assert_eq!(
            parse_name(b"./a//b/./c/", 4096, 128).unwrap(),
            ["a", "b", "c"]
        );
        assert_eq!(parse_name(b"./", 4096, 128).unwrap(), Vec::<&str>::new());
        assert_eq!(parse_name(b"../x", 4096, 128), Err(NameErr::DotDot));
        assert_eq!(parse_name(b"a/../b", 4096, 128), Err(NameErr::DotDot));
        assert_eq!(parse_name(b"..\\x", 4096, 128), Err(NameErr::DotDot));
        assert_eq!(parse_name(b"\\x", 4096, 128), Err(NameErr::Absolute));
        assert_eq!(parse_name(b"a\\x", 4096, 128), Err(NameErr::Backslash));
        assert_eq!(parse_name(b"/etc/x", 4096, 128), Err(NameErr::Absolute));
        assert_eq!(parse_name(b"", 4096, 128), Err(NameErr::Empty));
        assert_eq!(parse_name(b"a\0b", 4096, 128), Err(NameErr::Nul));
        assert_eq!(parse_name(b"a\xff", 4096, 128), Err(NameErr::NotUtf8));
        assert_eq!(parse_name(b"a\nb", 4096, 128), Err(NameErr::Control));
        assert_eq!(
            parse_name("a\u{85}b".as_bytes(), 4096, 128),
            Err(NameErr::Control)
        );
        assert_eq!(parse_name(b"a/b/c", 4096, 2), Err(NameErr::TooDeep(3)));
        assert_eq!(parse_name(b"abcdef", 5, 128), Err(NameErr::TooLong(6)));
        let c = "x".repeat(256);
        assert_eq!(
            parse_name(c.as_bytes(), 4096, 128),
            Err(NameErr::ComponentTooLong(256))
        );
    }

    #[test]
    fn symlink_targets() {
        assert!(check_symlink_target(b"b", 0, 4096).is_ok());
        assert!(check_symlink_target(b"./b/c", 0, 4096).is_ok());
        assert!(check_symlink_target(b"../b", 1, 4096).is_ok());
        assert!(check_symlink_target(b"..", 1, 4096).is_ok());
        assert!(check_symlink_target(b".", 0, 4096).is_ok());
        assert!(check_symlink_target(b"../b", 0, 4096).is_err());
        assert!(check_symlink_target(b"../../b", 1, 4096).is_err());
        assert!(check_symlink_target(b"/etc", 3, 4096).is_err());
        assert!(check_symlink_target(b"s/..", 3, 4096).is_err());
        assert!(check_symlink_target(b"a/../b", 3, 4096).is_err());
        assert!(check_symlink_target(b"", 3, 4096).is_err());
        assert!(check_symlink_target(b"..\\x", 3, 4096).is_err());
        assert!(check_symlink_target(b"a\0b", 3, 4096).is_err());
    }

    #[test]
    fn folding_catches_case_and_normalisation() {
        let mut s = String::new();
        let key = |x: &str, s: &mut String| prefix_keys(&[x], s)[0];
        assert_eq!(key("README", &mut s).1, key("readme", &mut s).1);
        assert_ne!(key("README", &mut s).0, key("readme", &mut s).0);
        assert_eq!(key("caf\u{e9}", &mut s).1, key("cafe\u{301}", &mut s).1);
        assert_eq!(key("CAF\u{c9}", &mut s).1, key("cafe\u{301}", &mut s).1);
        assert_eq!(key("ΟΔΟΣ", &mut s).1, key("οδος", &mut s).1);
        assert_eq!(key("οδος", &mut s).1, key("οδοσ", &mut s).1);
        assert_ne!(key("a", &mut s).1, key("b", &mut s).1);
        // Prefix keys are prefix-free: "ab" is not "a" + "b".
        let k1 = prefix_keys(&["a", "b"], &mut s);
        let k2 = prefix_keys(&["ab"], &mut s);
        assert_ne!(k1[1].0, k2[0].0);
    }

    // -----------------------------------------------------------------------------------------
    // Packing

    /// Builds the same logical tree in `dir`, creating entries in `order` (forward or
    /// reverse), with the given file permission variant and mtime.
    type Step = Box<dyn Fn(&Path)>;

    fn make_tree(dir: &Path, reverse: bool, loose_modes: bool, mtime: SystemTime) {
        let long_dir = "L".repeat(120);
        let mut steps: Vec<Step> = vec![
            Box::new(|d: &Path| fs::create_dir_all(d.join("a/b/c")).unwrap()),
            Box::new(|d: &Path| fs::create_dir_all(d.join("empty")).unwrap()),
            Box::new(move |d: &Path| fs::create_dir_all(d.join(&long_dir)).unwrap()),
        ];
        let files: Vec<(String, Vec<u8>, bool)> = vec![
            ("a/b/c/deep.txt".into(), b"deep\n".to_vec(), false),
            ("a/x.txt".into(), b"x\n".to_vec(), false),
            (
                "a.txt".into(),
                b"sorted before a/ in byte order\n".to_vec(),
                false,
            ),
            ("run.sh".into(), b"#!/bin/sh\necho hi\n".to_vec(), true),
            ("zero".into(), Vec::new(), false),
            (
                format!("{}/{}", "L".repeat(120), "f".repeat(99)),
                b"long\n".to_vec(),
                false,
            ),
            (
                "big.bin".into(),
                (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect(),
                false,
            ),
        ];
        for (name, data, exec) in files {
            steps.push(Box::new(move |d: &Path| {
                let p = d.join(&name);
                fs::create_dir_all(p.parent().unwrap()).unwrap();
                fs::write(&p, &data).unwrap();
                let mode = match (exec, loose_modes) {
                    (true, false) => 0o755,
                    (true, true) => 0o4775,
                    (false, false) => 0o644,
                    (false, true) => 0o664,
                };
                fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            }));
        }
        steps.push(Box::new(|d: &Path| {
            std::os::unix::fs::symlink("b/c/deep.txt", d.join("a/to-deep")).unwrap()
        }));
        steps.push(Box::new(|d: &Path| {
            std::os::unix::fs::symlink("../a.txt", d.join("a/up")).unwrap()
        }));
        if reverse {
            steps.reverse();
            // Parents must exist first: make them up front in reverse runs.
            fs::create_dir_all(dir.join("a/b/c")).unwrap();
            fs::create_dir_all(dir.join("L".repeat(120))).unwrap();
        }
        for s in &steps {
            s(dir);
        }
        if loose_modes {
            fs::set_permissions(dir.join("a"), fs::Permissions::from_mode(0o3777)).unwrap();
            fs::set_permissions(dir.join("empty"), fs::Permissions::from_mode(0o700)).unwrap();
        }
        for e in walkdir::WalkDir::new(dir).min_depth(1) {
            let e = e.unwrap();
            if e.file_type().is_file() {
                fs::File::options()
                    .write(true)
                    .open(e.path())
                    .unwrap()
                    .set_modified(mtime)
                    .unwrap();
            }
        }
    }

    fn pack_to_vec(dir: &Path, prefix: &str) -> (Vec<u8>, PackSummary) {
        let mut out = Vec::new();
        let s = pack_dir(dir, prefix, &mut out).unwrap();
        (out, s)
    }

    #[test]
    fn pack_is_deterministic() {
        let t1 = tempfile::tempdir().unwrap();
        let t2 = tempfile::tempdir().unwrap();
        make_tree(
            t1.path(),
            false,
            false,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
        );
        make_tree(t2.path(), true, true, SystemTime::now());
        let (b1, s1) = pack_to_vec(t1.path(), "site");
        let (b1_again, s1_again) = pack_to_vec(t1.path(), "site");
        let (b2, s2) = pack_to_vec(t2.path(), "site");
        assert_eq!(b1, b1_again);
        assert_eq!(s1, s1_again);
        assert_eq!(
            b1, b2,
            "same tree, other mtimes/modes/creation order: different bytes"
        );
        assert_eq!(s1, s2);
        // The digest is that of the uncompressed tar stream.
        let tar = gunzip(&b1);
        assert_eq!(
            s1.tar_digest,
            format!("sha256:{}", hex::encode(Sha256::digest(&tar)))
        );
        // gzip header: no mtime, no name, OS 255.
        assert_eq!(&b1[..4], &[0x1f, 0x8b, 8, 0]);
        assert_eq!(&b1[4..8], &[0, 0, 0, 0]);
        assert_eq!(b1[9], 255);
        // Counts: site/, a, a/b, a/b/c, deep, to-deep, up, x, a.txt, big.bin, empty, L..., long file, run.sh, zero.
        assert_eq!(s1.entries, 15);
        assert_eq!(s1.files, 7);
        assert_eq!(s1.bytes, 5 + 2 + 31 + 18 + 5 + 200_000);
    }

    #[test]
    fn pack_layout_order_and_headers() {
        let t = tempfile::tempdir().unwrap();
        make_tree(t.path(), false, true, SystemTime::now());
        let (bytes, _) = pack_to_vec(t.path(), "site");
        let tar = gunzip(&bytes);
        let mut ar = tar::Archive::new(&tar[..]);
        let mut names = Vec::new();
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            assert!(h.as_gnu().is_some());
            assert_eq!(h.mtime().unwrap(), 0);
            assert_eq!(h.uid().unwrap(), 0);
            assert_eq!(h.gid().unwrap(), 0);
            assert_eq!(h.username_bytes().unwrap_or_default(), b"");
            assert_eq!(h.groupname_bytes().unwrap_or_default(), b"");
            let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let mode = h.mode().unwrap();
            match h.entry_type() {
                EntryType::Directory => {
                    assert!(name.ends_with('/'));
                    assert_eq!(mode, 0o755, "{name}");
                }
                EntryType::Symlink => assert_eq!(mode, 0o777),
                EntryType::Regular if name.ends_with("run.sh") => assert_eq!(mode, 0o755),
                EntryType::Regular => assert_eq!(mode, 0o644, "{name}"),
                other => panic!("unexpected {other:?}"),
            }
            names.push(name);
        }
        let l = "L".repeat(120);
        let f = "f".repeat(99);
        let expected = vec![
            "site/".to_string(),
            format!("site/{l}/"),
            format!("site/{l}/{f}"),
            "site/a/".into(),
            "site/a/b/".into(),
            "site/a/b/c/".into(),
            "site/a/b/c/deep.txt".into(),
            "site/a/to-deep".into(),
            "site/a/up".into(),
            "site/a/x.txt".into(),
            "site/a.txt".into(),
            "site/big.bin".into(),
            "site/empty/".into(),
            "site/run.sh".into(),
            "site/zero".into(),
        ];
        assert_eq!(names, expected);
    }

    #[test]
    fn pack_unpack_round_trip() {
        let src = tempfile::tempdir().unwrap();
        make_tree(src.path(), false, false, SystemTime::now());
        // A 200-byte single component path and a hard-linked pair (stored as two files).
        let c200 = "c".repeat(200);
        fs::write(src.path().join(&c200), b"two hundred\n").unwrap();
        fs::hard_link(src.path().join("a.txt"), src.path().join("a-hard.txt")).unwrap();
        let (bytes, ps) = pack_to_vec(src.path(), "site");
        let sb = sandbox();
        let us = unpack_tar_gz(&bytes[..], &sb.dest, &Limits::default()).unwrap();
        sb.assert_outside_untouched();
        assert_eq!(us.entries, ps.entries);
        assert_eq!(us.files, ps.files);
        assert_eq!(us.bytes, ps.bytes);
        let out = sb.dest.join("site");
        for e in walkdir::WalkDir::new(src.path()).min_depth(1) {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(src.path()).unwrap();
            let got = out.join(rel);
            let md = fs::symlink_metadata(&got).unwrap_or_else(|_| panic!("missing {rel:?}"));
            let ft = e.file_type();
            if ft.is_symlink() {
                assert!(md.file_type().is_symlink());
                assert_eq!(
                    fs::read_link(&got).unwrap(),
                    fs::read_link(e.path()).unwrap()
                );
            } else if ft.is_dir() {
                assert!(md.is_dir());
                assert_eq!(md.mode() & 0o7777, 0o755);
            } else {
                assert!(md.is_file());
                assert_eq!(md.nlink(), 1, "hard links come back as separate files");
                assert_eq!(fs::read(&got).unwrap(), fs::read(e.path()).unwrap());
                let want = if rel.ends_with("run.sh") {
                    0o755
                } else {
                    0o644
                };
                assert_eq!(md.mode() & 0o7777, want, "{rel:?}");
            }
        }
        assert_eq!(fs::read(out.join("a/to-deep")).unwrap(), b"deep\n");
        assert_eq!(
            fs::read(out.join("a/up")).unwrap(),
            b"sorted before a/ in byte order\n"
        );
        // Repacking the unpacked tree gives the same layer.
        let (again, _) = pack_to_vec(&out, "site");
        assert_eq!(again, bytes);
    }

    #[test]
    fn python_tarfile_reads_and_extracts_our_output() {
        let src = tempfile::tempdir().unwrap();
        make_tree(src.path(), false, false, SystemTime::now());
        let work = tempfile::tempdir().unwrap();
        let layer = work.path().join("layer.tar.gz");
        let s = pack_dir(src.path(), "site", fs::File::create(&layer).unwrap()).unwrap();
        let out = work.path().join("out");
        let script = r#"
import sys, tarfile
with tarfile.open(sys.argv[1], "r:gz") as t:
    for m in t.getmembers():
        kind = "d" if m.isdir() else "l" if m.issym() else "f" if m.isreg() else "?"
        print(kind, oct(m.mode), m.size, m.name, m.linkname, sep="\t")
    # The "data" filter (3.11.4+) also refuses anything unsafe in our output.
    kw = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    t.extractall(sys.argv[2], **kw)
"#;
        let res = Command::new("python3")
            .args(["-c", script])
            .arg(&layer)
            .arg(&out)
            .output()
            .expect("python3 is needed for this test");
        assert!(
            res.status.success(),
            "{}",
            String::from_utf8_lossy(&res.stderr)
        );
        let listing = String::from_utf8(res.stdout).unwrap();
        let lines: Vec<&str> = listing.lines().collect();
        assert_eq!(lines.len() as u64, s.entries, "{listing}");
        let long = format!("site/{}/{}", "L".repeat(120), "f".repeat(99));
        assert!(
            lines.iter().any(|l| l.ends_with(&format!("\t{long}\t"))),
            "{listing}"
        );
        assert!(
            lines.contains(&"l\t0o777\t0\tsite/a/to-deep\tb/c/deep.txt"),
            "{listing}"
        );
        assert!(lines.contains(&"f\t0o755\t18\tsite/run.sh\t"), "{listing}");
        assert_eq!(fs::read(out.join(&long)).unwrap(), b"long\n");
        assert_eq!(fs::read(out.join("site/a/to-deep")).unwrap(), b"deep\n");
        assert_eq!(mode_of(&out.join("site/run.sh")), 0o755);
    }

    #[test]
    fn gnu_tar_lists_our_output() {
        let src = tempfile::tempdir().unwrap();
        make_tree(src.path(), false, false, SystemTime::now());
        let work = tempfile::tempdir().unwrap();
        let layer = work.path().join("layer.tar.gz");
        pack_dir(src.path(), "site", fs::File::create(&layer).unwrap()).unwrap();
        let res = match Command::new("tar").arg("-tzf").arg(&layer).output() {
            Ok(r) => r,
            Err(_) => return, // no tar binary: Python's check above covers readers
        };
        assert!(
            res.status.success(),
            "{}",
            String::from_utf8_lossy(&res.stderr)
        );
        let listing = String::from_utf8(res.stdout).unwrap();
        assert!(listing.contains(&format!("site/{}/{}\n", "L".repeat(120), "f".repeat(99))));
    }

    #[test]
    fn pack_follows_a_symlinked_root_only() {
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("real");
        fs::create_dir(&real).unwrap();
        fs::write(real.join("f"), b"x").unwrap();
        std::os::unix::fs::symlink("real", t.path().join("alias")).unwrap();
        let (a, sa) = pack_to_vec(&real, "site");
        let (b, sb) = pack_to_vec(&t.path().join("alias"), "site");
        assert_eq!(a, b);
        assert_eq!(sa, sb);
        assert_eq!(sa.entries, 2);
    }

    #[test]
    fn pack_refuses_escaping_symlinks() {
        for target in ["/etc", "../../outside", "a/../../x", "../sub/..", "x/.."] {
            let t = tempfile::tempdir().unwrap();
            fs::create_dir(t.path().join("sub")).unwrap();
            std::os::unix::fs::symlink(target, t.path().join("sub/l")).unwrap();
            let err = pack_dir(t.path(), "site", io::sink()).unwrap_err();
            assert!(
                matches!(err, ArchiveError::LinkEscape { .. }),
                "{target}: {err}"
            );
        }
        // Inside targets are kept, `..` included.
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("sub")).unwrap();
        std::os::unix::fs::symlink("../sub", t.path().join("sub/l")).unwrap();
        pack_dir(t.path(), "site", io::sink()).unwrap();
    }

    #[test]
    fn pack_refuses_special_files() {
        let t = tempfile::tempdir().unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(t.path().join("sock")).unwrap();
        let err = pack_dir(t.path(), "site", io::sink()).unwrap_err();
        assert!(
            matches!(err, ArchiveError::SpecialFile { ref kind, .. } if kind == "socket"),
            "{err}"
        );

        let t = tempfile::tempdir().unwrap();
        let st = Command::new("mkfifo")
            .arg(t.path().join("fifo"))
            .status()
            .unwrap();
        assert!(st.success());
        let err = pack_dir(t.path(), "site", io::sink()).unwrap_err();
        assert!(
            matches!(err, ArchiveError::SpecialFile { ref kind, .. } if kind == "FIFO"),
            "{err}"
        );
    }

    #[test]
    fn pack_refuses_names_that_would_not_unpack() {
        // Case collision between siblings.
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("README"), b"1").unwrap();
        fs::write(t.path().join("readme"), b"2").unwrap();
        let err = pack_dir(t.path(), "site", io::sink()).unwrap_err();
        assert!(matches!(err, ArchiveError::NameCollision { .. }), "{err}");
        // NFC vs NFD.
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("d")).unwrap();
        fs::write(t.path().join("d/caf\u{e9}"), b"1").unwrap();
        fs::write(t.path().join("d/cafe\u{301}"), b"2").unwrap();
        let err = pack_dir(t.path(), "site", io::sink()).unwrap_err();
        assert!(matches!(err, ArchiveError::NameCollision { .. }), "{err}");
        // Same name in different folders is fine.
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("x")).unwrap();
        fs::create_dir(t.path().join("y")).unwrap();
        fs::write(t.path().join("x/README"), b"1").unwrap();
        fs::write(t.path().join("y/readme"), b"2").unwrap();
        pack_dir(t.path(), "site", io::sink()).unwrap();
        // Not UTF-8, control characters, backslashes.
        for bad in [&b"bad\xff"[..], b"new\nline", b"esc\x1b[0m", b"back\\slash"] {
            let t = tempfile::tempdir().unwrap();
            fs::write(t.path().join(std::ffi::OsStr::from_bytes(bad)), b"1").unwrap();
            let err = pack_dir(t.path(), "site", io::sink()).unwrap_err();
            assert!(matches!(err, ArchiveError::InvalidName { .. }), "{err}");
            assert!(!err.to_string().chars().any(char::is_control));
        }
        // Bad prefixes.
        let t = tempfile::tempdir().unwrap();
        for p in ["", ".", "../x", "/abs", "a\\b"] {
            let err = pack_dir(t.path(), p, io::sink()).unwrap_err();
            assert!(
                matches!(err, ArchiveError::UnsupportedSource { .. }),
                "{p}: {err}"
            );
        }
        // Not a directory.
        let f = t.path().join("file");
        fs::write(&f, b"").unwrap();
        let err = pack_dir(&f, "site", io::sink()).unwrap_err();
        assert!(
            matches!(err, ArchiveError::UnsupportedSource { .. }),
            "{err}"
        );
    }

    #[test]
    fn pack_reports_writer_errors() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("f"), vec![7u8; 1 << 20]).unwrap();
        let err = pack_dir(t.path(), "site", Broken).unwrap_err();
        assert!(
            matches!(err, ArchiveError::Io { ref path, .. } if path == "<output>"),
            "{err}"
        );
    }

    // -----------------------------------------------------------------------------------------
    // Unpacking: what must work

    #[test]
    fn unpacks_plain_and_gzip_and_multi_member() {
        let tar = Tb::new()
            .dir("top/")
            .file("top/a.txt", b"hello")
            .file_b(b"top/bin/run", b"#!/bin/sh\n", 0o755)
            .symlink("top/bin/a", "../a.txt")
            .hardlink("top/a-hard", "top/a.txt")
            .build();
        let (sb, s) = accepted(&tar);
        assert_eq!(
            s,
            UnpackSummary {
                entries: 5,
                files: 2,
                bytes: 15
            }
        );
        let top = sb.dest.join("top");
        assert_eq!(fs::read(top.join("bin/a")).unwrap(), b"hello");
        assert_eq!(
            fs::metadata(top.join("a-hard")).unwrap().ino(),
            fs::metadata(top.join("a.txt")).unwrap().ino()
        );
        assert_eq!(mode_of(&top.join("bin")), 0o755, "implied directory");
        assert_eq!(mode_of(&top.join("bin/run")), 0o755);

        let sb = sandbox();
        unpack_tar(&tar[..], &sb.dest, &Limits::default()).unwrap();
        assert_eq!(fs::read(sb.dest.join("top/a.txt")).unwrap(), b"hello");

        // Two gzip members.
        let mut two = gz(&tar[..1024]);
        two.extend(gz(&tar[1024..]));
        let sb = sandbox();
        unpack_tar_gz(&two[..], &sb.dest, &Limits::default()).unwrap();
        assert_eq!(fs::read(sb.dest.join("top/bin/a")).unwrap(), b"hello");
    }

    #[test]
    fn unpacks_gnu_tar_fixture() {
        let data = include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/archives/gnutar-gnu-longnames.tar.gz"
        ));
        let sb = sandbox();
        let s = unpack_tar_gz(&data[..], &sb.dest, &Limits::default()).unwrap();
        assert_eq!(s.entries, 7);
        let long = "d".repeat(120);
        assert_eq!(
            fs::read(sb.dest.join(format!("gnu/{long}/sub/file.txt"))).unwrap(),
            b"hello\n"
        );
        assert_eq!(fs::read(sb.dest.join("gnu/link")).unwrap(), b"hello\n");
        assert_eq!(mode_of(&sb.dest.join("gnu/run.sh")), 0o755);
        assert!(sb.dest.join("gnu/empty").is_dir());
    }

    #[test]
    fn unpacks_python_pax_fixture() {
        let data = include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/archives/python-pax.tar.gz"
        ));
        let sb = sandbox();
        let s = unpack_tar_gz(&data[..], &sb.dest, &Limits::default()).unwrap();
        assert_eq!(s.entries, 7, "global header + 6 entries");
        assert_eq!(s.files, 3);
        let py = sb.dest.join("py");
        assert_eq!(fs::read(py.join("caf\u{e9}.txt")).unwrap(), b"NFC name\n");
        assert_eq!(
            fs::read(py.join("\u{65e5}\u{672c}.txt")).unwrap(),
            b"CJK name\n"
        );
        assert_eq!(fs::read(py.join("n".repeat(180))).unwrap(), b"long name\n");
        assert_eq!(fs::read(py.join("link")).unwrap(), b"NFC name\n");
        assert_eq!(
            fs::metadata(py.join("hard")).unwrap().ino(),
            fs::metadata(py.join("caf\u{e9}.txt")).unwrap().ino()
        );
    }

    #[test]
    fn root_dot_entries_and_redundant_slashes() {
        let tar = Tb::new()
            .dir("./")
            .dir("./a/")
            .file("./a//b", b"x")
            .dir("a/c/")
            .build();
        let (sb, s) = accepted(&tar);
        assert_eq!(s.entries, 4);
        assert_eq!(fs::read(sb.dest.join("a/b")).unwrap(), b"x");
    }

    #[test]
    fn explicit_directory_after_implied_one_sets_its_mode() {
        let tar = Tb::new()
            .file("d/f", b"x")
            .header(b"d/", EntryType::Directory, 0o750, 0, b"")
            .build();
        let (sb, _) = accepted(&tar);
        assert_eq!(mode_of(&sb.dest.join("d")), 0o750);
        // But a second explicit one is a duplicate.
        let tar = Tb::new().dir("d/").dir("d/").build();
        assert!(matches!(refused(&tar), ArchiveError::Duplicate { .. }));
    }

    #[test]
    fn modes_are_sanitised() {
        let tar = Tb::new()
            .file_b(b"suid", b"x", 0o4755)
            .file_b(b"sgid", b"x", 0o2777)
            .file_b(b"ro", b"x", 0o444)
            .file_b(b"typebits", b"x", 0o100_644)
            .header(b"sticky/", EntryType::Directory, 0o1777, 0, b"")
            .header(b"locked/", EntryType::Directory, 0o000, 0, b"")
            .file("locked/inside", b"can still be written")
            .build();
        let (sb, _) = accepted(&tar);
        assert_eq!(mode_of(&sb.dest.join("suid")), 0o755);
        assert_eq!(mode_of(&sb.dest.join("sgid")), 0o775);
        assert_eq!(mode_of(&sb.dest.join("ro")), 0o444);
        assert_eq!(mode_of(&sb.dest.join("typebits")), 0o644);
        assert_eq!(mode_of(&sb.dest.join("sticky")), 0o775);
        assert_eq!(mode_of(&sb.dest.join("locked")), 0o700);
        assert_eq!(
            fs::read(sb.dest.join("locked/inside")).unwrap(),
            b"can still be written"
        );
    }

    #[test]
    fn pax_global_header_is_ignored_and_pax_path_used() {
        let tar = Tb::new()
            .header(
                b"pax_global_header",
                EntryType::XGlobalHeader,
                0o644,
                0,
                b"",
            )
            .pax(&[
                ("path", format!("{}f", "long/".repeat(40)).as_bytes()),
                ("mtime", b"1.5"),
            ])
            .file("placeholder", b"pax named")
            .build();
        let (sb, s) = accepted(&tar);
        assert_eq!(s.entries, 2);
        let name = format!("{}f", "long/".repeat(40));
        assert_eq!(fs::read(sb.dest.join(name)).unwrap(), b"pax named");
    }

    #[test]
    fn file_entries_named_like_directories() {
        // Type NUL + trailing slash: a pre-POSIX directory, read as one (as Go and Python do).
        let mut tb = Tb::new();
        tb.header(b"old/", EntryType::Regular, 0o755, 0, b"");
        let mut tar = tb.build();
        tar[156] = 0;
        let mut h = Header::new_old();
        h.as_mut_bytes().copy_from_slice(&tar[..512]);
        h.set_cksum();
        tar[..512].copy_from_slice(h.as_bytes());
        let (sb, _) = accepted(&tar);
        assert!(sb.dest.join("old").is_dir());
        // Type '0' + trailing slash: refused.
        let tar = Tb::new().file("new/", b"").build();
        assert!(matches!(refused(&tar), ArchiveError::InvalidName { .. }));
    }

    // -----------------------------------------------------------------------------------------
    // D1 traversal

    #[test]
    fn refuses_traversal() {
        assert!(matches!(
            refused(&Tb::new().file("../../x", b"x").build()),
            ArchiveError::PathEscape { .. }
        ));
        assert!(matches!(
            refused(&Tb::new().file("a/../../x", b"x").build()),
            ArchiveError::PathEscape { .. }
        ));
        assert!(matches!(
            refused(&Tb::new().file("a/../b", b"x").build()),
            ArchiveError::PathEscape { .. }
        ));
        assert!(matches!(
            refused(&Tb::new().file("..\\x", b"x").build()),
            ArchiveError::PathEscape { .. }
        ));
        assert!(matches!(
            refused(&Tb::new().file("a\\b", b"x").build()),
            ArchiveError::InvalidName { .. }
        ));
        assert!(matches!(
            refused(&Tb::new().dir("../").build()),
            ArchiveError::PathEscape { .. }
        ));
        // Traversal after good entries: refused, and nothing outside.
        let tar = Tb::new()
            .file("ok", b"1")
            .file("../outside/evil", b"x")
            .build();
        assert!(matches!(refused(&tar), ArchiveError::PathEscape { .. }));
        // Long names go through the same checks.
        let long = format!("{}/../../../x", "a".repeat(150));
        assert!(matches!(
            refused(&Tb::new().file(&long, b"x").build()),
            ArchiveError::PathEscape { .. }
        ));
        // PAX path too.
        let tar = Tb::new()
            .pax(&[("path", b"../../pax-evil")])
            .file("innocent", b"x")
            .build();
        assert!(matches!(refused(&tar), ArchiveError::PathEscape { .. }));
    }

    #[test]
    fn refuses_absolute_paths() {
        let err = refused(&Tb::new().file("/etc/x", b"x").build());
        assert!(matches!(err, ArchiveError::AbsolutePath { .. }), "{err}");
        assert!(!Path::new("/etc/x").exists());
        let sb = sandbox();
        let abs = sb.outside.join("abs");
        let err = sb.unpack_err(
            &Tb::new().file(abs.to_str().unwrap(), b"x").build(),
            &Limits::default(),
        );
        assert!(matches!(err, ArchiveError::AbsolutePath { .. }), "{err}");
        assert!(matches!(
            refused(&Tb::new().file("\\x", b"x").build()),
            ArchiveError::AbsolutePath { .. }
        ));
        assert!(matches!(
            refused(&Tb::new().dir("/").build()),
            ArchiveError::AbsolutePath { .. }
        ));
    }

    #[test]
    fn refuses_nul_empty_control_and_non_utf8_names() {
        let nul = Tb::new()
            .long(b'L', b"a\0b")
            .file("placeholder", b"x")
            .build();
        assert!(
            matches!(refused(&nul), ArchiveError::InvalidName { reason, .. } if reason.contains("NUL"))
        );
        let pax_nul = Tb::new()
            .pax(&[("path", b"a\0/../../x")])
            .file("p", b"x")
            .build();
        assert!(matches!(
            refused(&pax_nul),
            ArchiveError::InvalidName { .. }
        ));
        let empty = Tb::new().file("", b"x").build();
        // An all-zero name makes the header look like the end marker only if the whole block is
        // zero; here the rest of the header is set, so it is an entry with an empty name.
        assert!(matches!(refused(&empty), ArchiveError::InvalidName { .. }));
        let ansi = Tb::new().file("evil\x1b[2J\x1b[31mred", b"x").build();
        let err = refused(&ansi);
        assert!(matches!(err, ArchiveError::InvalidName { .. }));
        assert!(err.to_string().contains("\\u{1b}[2J"), "{err}");
        let nl = Tb::new().file("two\nlines", b"x").build();
        assert!(matches!(refused(&nl), ArchiveError::InvalidName { .. }));
        let latin1 = Tb::new().file_b(b"caf\xe9", b"x", 0o644).build();
        assert!(
            matches!(refused(&latin1), ArchiveError::InvalidName { reason, .. } if reason.contains("UTF-8"))
        );
        let root_file = Tb::new().file("./", b"x").build();
        assert!(matches!(
            refused(&root_file),
            ArchiveError::InvalidName { .. }
        ));
    }

    // -----------------------------------------------------------------------------------------
    // D2 symlinks

    #[test]
    fn refuses_symlink_escapes() {
        // l -> /etc, then l/passwd.
        let tar = Tb::new()
            .symlink("l", "/etc")
            .file("l/passwd", b"root::0:0::/:/bin/sh\n")
            .build();
        assert!(matches!(
            refused(&tar),
            ArchiveError::LinkEscape {
                reason: "absolute target",
                ..
            }
        ));
        // Relative escape into the sandbox's sibling.
        let tar = Tb::new()
            .symlink("l", "../outside")
            .file("l/evil", b"x")
            .build();
        assert!(matches!(refused(&tar), ArchiveError::LinkEscape { .. }));
        // Chains: a -> b, b -> ../.., then a/x.
        let tar = Tb::new()
            .symlink("a", "b")
            .symlink("b", "../..")
            .file("a/x", b"x")
            .build();
        assert!(matches!(refused(&tar), ArchiveError::LinkEscape { .. }));
        let tar = Tb::new()
            .symlink("d/b", "../..")
            .symlink("a", "d/b")
            .file("a/x", b"x")
            .build();
        assert!(matches!(refused(&tar), ArchiveError::LinkEscape { .. }));
        // s -> . is fine on its own, but t -> s/.. would resolve to the parent of dest.
        let tar = Tb::new()
            .symlink("s", ".")
            .symlink("t", "s/..")
            .file("t/outside/evil", b"x")
            .build();
        assert!(matches!(refused(&tar), ArchiveError::LinkEscape { .. }));
        // Long link target with an escape.
        let target = format!("{}../../../../etc", "../".repeat(40));
        let tar = Tb::new().symlink("deep/l", &target).build();
        assert!(matches!(refused(&tar), ArchiveError::LinkEscape { .. }));
        // Empty target.
        assert!(matches!(
            refused(&Tb::new().symlink("l", "").build()),
            ArchiveError::LinkEscape { .. }
        ));
    }

    #[test]
    fn never_writes_through_a_symlink() {
        // An inside link, then an entry below it.
        let tar = Tb::new()
            .dir("sub/")
            .symlink("l", "sub")
            .file("l/passwd", b"x")
            .build();
        assert!(matches!(refused(&tar), ArchiveError::ThroughSymlink { .. }));
        let tar = Tb::new()
            .dir("sub/")
            .symlink("l", "sub")
            .dir("l/x/")
            .build();
        assert!(matches!(refused(&tar), ArchiveError::ThroughSymlink { .. }));
        let tar = Tb::new()
            .dir("sub/")
            .symlink("l", "sub")
            .symlink("l/m", "x")
            .build();
        assert!(matches!(refused(&tar), ArchiveError::ThroughSymlink { .. }));
        // A symlink, then a directory or a file of the same name.
        let tar = Tb::new().dir("sub/").symlink("l", "sub").dir("l/").build();
        assert!(matches!(refused(&tar), ArchiveError::Duplicate { .. }));
        let tar = Tb::new()
            .file("sub", b"x")
            .symlink("l", "sub")
            .file("l", b"overwrite")
            .build();
        assert!(matches!(refused(&tar), ArchiveError::Duplicate { .. }));
        // Case variant of a symlink as a parent.
        let tar = Tb::new()
            .dir("sub/")
            .symlink("L", "sub")
            .file("l/x", b"x")
            .build();
        assert!(matches!(refused(&tar), ArchiveError::NameCollision { .. }));
        // A file used as a parent.
        let tar = Tb::new().file("f", b"x").file("f/g", b"x").build();
        assert!(matches!(refused(&tar), ArchiveError::NotADirectory { .. }));
    }

    #[test]
    fn symlink_that_stays_inside_is_kept() {
        let tar = Tb::new()
            .dir("a/b/")
            .file("a/t", b"t")
            .symlink("a/b/up", "../t")
            .symlink("a/b/root", "../..")
            .symlink("dangling", "nowhere/yet")
            .build();
        let (sb, _) = accepted(&tar);
        assert_eq!(fs::read(sb.dest.join("a/b/up")).unwrap(), b"t");
        assert_eq!(
            fs::read_link(sb.dest.join("a/b/root")).unwrap(),
            Path::new("../..")
        );
        assert!(
            fs::symlink_metadata(sb.dest.join("dangling"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    // -----------------------------------------------------------------------------------------
    // D3 hard links

    #[test]
    fn refuses_hard_link_escapes() {
        let err = refused(&Tb::new().hardlink("pw", "/etc/passwd").build());
        assert!(
            matches!(
                err,
                ArchiveError::HardLinkEscape {
                    reason: "absolute target",
                    ..
                }
            ),
            "{err}"
        );
        let err = refused(&Tb::new().hardlink("x", "../x").build());
        assert!(matches!(err, ArchiveError::HardLinkEscape { .. }), "{err}");
        let err = refused(&Tb::new().hardlink("x", "../outside/sentinel").build());
        assert!(matches!(err, ArchiveError::HardLinkEscape { .. }), "{err}");
        // A relative name that exists in the working directory but not in the archive.
        assert!(Path::new("Cargo.toml").exists());
        let err = refused(&Tb::new().hardlink("x", "Cargo.toml").build());
        assert!(matches!(err, ArchiveError::HardLinkEscape { .. }), "{err}");
        // A link, then a regular file of the same name (would write through the link).
        let tar = Tb::new()
            .file("victim", b"v")
            .hardlink("x", "victim")
            .file("x", b"overwrite")
            .build();
        assert!(matches!(refused(&tar), ArchiveError::Duplicate { .. }));
        // Targets that are not earlier regular files.
        let tar = Tb::new().hardlink("x", "later").file("later", b"l").build();
        assert!(matches!(refused(&tar), ArchiveError::HardLinkEscape { .. }));
        let tar = Tb::new().dir("d/").hardlink("x", "d").build();
        assert!(matches!(refused(&tar), ArchiveError::HardLinkEscape { .. }));
        let tar = Tb::new()
            .file("f", b"f")
            .symlink("s", "f")
            .hardlink("x", "s")
            .build();
        assert!(matches!(refused(&tar), ArchiveError::HardLinkEscape { .. }));
        let tar = Tb::new()
            .dir("d/")
            .file("d/f", b"f")
            .symlink("s", "d")
            .hardlink("x", "s/f")
            .build();
        assert!(matches!(refused(&tar), ArchiveError::HardLinkEscape { .. }));
        let tar = Tb::new().file("F", b"f").hardlink("x", "f").build();
        assert!(matches!(refused(&tar), ArchiveError::HardLinkEscape { .. }));
    }

    // -----------------------------------------------------------------------------------------
    // D4 special files

    #[test]
    fn refuses_special_files() {
        for (kind, label) in [
            (EntryType::Char, "character device"),
            (EntryType::Block, "block device"),
            (EntryType::Fifo, "FIFO"),
            (EntryType::new(b'Z'), "entry type 'Z'"),
            (EntryType::new(b'V'), "entry type 'V'"),
        ] {
            let err = refused(&Tb::new().special("dev", kind).build());
            assert!(
                matches!(err, ArchiveError::SpecialFile { ref kind, .. } if kind == label),
                "{err}"
            );
        }
    }

    #[test]
    fn refuses_sparse_fixtures() {
        for (data, label) in [
            (
                &include_bytes!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/testdata/archives/gnutar-sparse.tar.gz"
                ))[..],
                "GNU sparse file",
            ),
            (
                &include_bytes!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/testdata/archives/gnutar-pax-sparse.tar.gz"
                ))[..],
                "PAX sparse file",
            ),
        ] {
            let sb = sandbox();
            let err = unpack_tar_gz(data, &sb.dest, &Limits::default()).unwrap_err();
            sb.assert_outside_untouched();
            assert!(
                matches!(err, ArchiveError::SpecialFile { ref kind, .. } if kind == label),
                "{err}"
            );
            assert!(!sb.dest.join("sparse/holes").exists());
        }
    }

    // -----------------------------------------------------------------------------------------
    // D5 names

    #[test]
    fn refuses_duplicates_and_collisions() {
        let tar = Tb::new().file("a", b"1").file("a", b"2").build();
        assert!(matches!(refused(&tar), ArchiveError::Duplicate { .. }));
        let tar = Tb::new().file("a/b", b"1").file("./a//b", b"2").build();
        assert!(matches!(refused(&tar), ArchiveError::Duplicate { .. }));
        let tar = Tb::new().dir("a/").file("a", b"2").build();
        assert!(matches!(refused(&tar), ArchiveError::Duplicate { .. }));
        let tar = Tb::new().file("d/x", b"1").file("d", b"2").build();
        assert!(matches!(refused(&tar), ArchiveError::Duplicate { .. }));
        let tar = Tb::new().file("A", b"1").file("a", b"2").build();
        assert!(matches!(refused(&tar), ArchiveError::NameCollision { .. }));
        let tar = Tb::new().file("Dir/x", b"1").file("dir/y", b"2").build();
        assert!(matches!(refused(&tar), ArchiveError::NameCollision { .. }));
        let tar = Tb::new()
            .file("caf\u{e9}", b"1")
            .file("cafe\u{301}", b"2")
            .build();
        assert!(matches!(refused(&tar), ArchiveError::NameCollision { .. }));
        let tar = Tb::new().symlink("x", "y").file("X", b"2").build();
        assert!(matches!(refused(&tar), ArchiveError::NameCollision { .. }));
    }

    #[test]
    fn refuses_long_components_and_deep_or_long_paths() {
        let c300 = "c".repeat(300);
        let err = refused(&Tb::new().file(&c300, b"x").build());
        assert!(
            matches!(
                err,
                ArchiveError::ComponentTooLong {
                    len: 300,
                    max: 255,
                    ..
                }
            ),
            "{err}"
        );
        let c300_link = format!("ok/{c300}");
        let err = refused(&Tb::new().symlink("l", &c300_link).build());
        assert!(matches!(err, ArchiveError::LinkEscape { .. }), "{err}");

        let deep = "d/".repeat(200);
        let err = refused(&Tb::new().dir(&deep).build());
        assert!(
            matches!(
                err,
                ArchiveError::TooDeep {
                    depth: 200,
                    max: 128,
                    ..
                }
            ),
            "{err}"
        );
        let limits = Limits {
            max_depth: 20,
            ..Limits::default()
        };
        let err = refused_with(
            &Tb::new()
                .file(&format!("{}f", "d/".repeat(25)), b"x")
                .build(),
            &limits,
        );
        assert!(
            matches!(err, ArchiveError::TooDeep { max: 20, .. }),
            "{err}"
        );
        // 200 directory entries, one level each, with a lower limit.
        let mut tb = Tb::new();
        for i in 1..=200 {
            tb.dir(&"d/".repeat(i));
        }
        let err = refused_with(&tb.build(), &limits);
        assert!(
            matches!(
                err,
                ArchiveError::TooDeep {
                    depth: 21,
                    max: 20,
                    ..
                }
            ),
            "{err}"
        );

        let limits = Limits {
            max_path_len: 64,
            ..Limits::default()
        };
        let err = refused_with(&Tb::new().file(&"p".repeat(65), b"x").build(), &limits);
        assert!(
            matches!(
                err,
                ArchiveError::PathTooLong {
                    len: 65,
                    max: 64,
                    ..
                }
            ),
            "{err}"
        );
        // An oversized name is refused before anything else is done with it.
        let huge = format!("{}h", "h/".repeat(100_000));
        let err = refused(&Tb::new().file(&huge, b"x").build());
        assert!(matches!(err, ArchiveError::PathTooLong { .. }), "{err}");
        assert!(err.to_string().len() < 600, "error message must be bounded");
    }

    // -----------------------------------------------------------------------------------------
    // D6 bombs and budgets

    /// A tar+gzip whose one file is `len` zero bytes, made of concatenated gzip members (one
    /// compressed MiB of zeros repeated) so that building it costs nothing.
    fn zero_bomb(len: u64) -> Vec<u8> {
        const MIB: u64 = 1 << 20;
        assert_eq!(len % MIB, 0);
        let mut header = Vec::new();
        Tb { out: Vec::new() }
            .header(b"zeros", EntryType::Regular, 0o644, len, b"")
            .out
            .clone_into(&mut header);
        let mut out = gz(&header);
        let mib = gz(&vec![0u8; MIB as usize]);
        for _ in 0..len / MIB {
            out.extend_from_slice(&mib);
        }
        out.extend(gz(&[0u8; 1024]));
        out
    }

    #[test]
    fn gzip_bomb_stops_on_bytes_and_ratio() {
        // 10 MB of zeros with max_bytes 1 MiB: refused before anything is written.
        let bomb = zero_bomb(10 << 20);
        assert!(bomb.len() < 200_000, "{}", bomb.len());
        let sb = sandbox();
        let limits = Limits {
            max_bytes: 1 << 20,
            ..Limits::default()
        };
        let err = unpack_tar_gz(&bomb[..], &sb.dest, &limits).unwrap_err();
        sb.assert_outside_untouched();
        assert!(
            matches!(err, ArchiveError::TooLarge { max, .. } if max == 1 << 20),
            "{err}"
        );
        assert!(
            !sb.dest.join("zeros").exists(),
            "declared size is checked before writing"
        );

        // 10 MB is within the ratio grace; 64 MiB is not (ratio ~1000 > 200).
        let sb = sandbox();
        unpack_tar_gz(&bomb[..], &sb.dest, &Limits::default()).unwrap();
        let bomb = zero_bomb(64 << 20);
        let sb = sandbox();
        let err = unpack_tar_gz(&bomb[..], &sb.dest, &Limits::default()).unwrap_err();
        sb.assert_outside_untouched();
        match err {
            ArchiveError::RatioExceeded {
                max_ratio,
                compressed,
                decompressed,
            } => {
                assert_eq!(max_ratio, 200);
                // The decoder reads the compressed stream 32 KiB at a time, so the check fires
                // within one buffer of the bound.
                assert!(compressed > 0 && compressed <= 64 << 10, "{compressed}");
                assert!(
                    decompressed > RATIO_GRACE + 200 * compressed,
                    "{decompressed} {compressed}"
                );
                assert!(
                    decompressed <= RATIO_GRACE + 200 * compressed + (1 << 20),
                    "{decompressed}"
                );
            }
            other => panic!("{other}"),
        }
        let written = fs::metadata(sb.dest.join("zeros")).unwrap().len();
        assert!(written <= RATIO_GRACE + (8 << 20), "{written}");
        // A low max_ratio trips early (once past the grace).
        let sb = sandbox();
        let limits = Limits {
            max_ratio: 10,
            ..Limits::default()
        };
        let err = unpack_tar_gz(&zero_bomb(20 << 20)[..], &sb.dest, &limits).unwrap_err();
        assert!(
            matches!(err, ArchiveError::RatioExceeded { max_ratio: 10, .. }),
            "{err}"
        );
    }

    #[test]
    fn max_bytes_counts_real_bytes_across_files() {
        let chunk = vec![1u8; 600_000];
        let tar = Tb::new().file("a", &chunk).file("b", &chunk).build();
        let limits = Limits {
            max_bytes: 1_000_000,
            ..Limits::default()
        };
        let sb = sandbox();
        let err = sb.unpack_err(&tar, &limits);
        assert!(
            matches!(err, ArchiveError::TooLarge { ref path, .. } if path == "b"),
            "{err}"
        );
        assert_eq!(fs::metadata(sb.dest.join("a")).unwrap().len(), 600_000);
        // Exactly at the limit is fine.
        let limits = Limits {
            max_bytes: 1_200_000,
            ..Limits::default()
        };
        let sb = sandbox();
        assert_eq!(sb.unpack(&tar, &limits).unwrap().bytes, 1_200_000);
    }

    #[test]
    fn a_lying_header_size_is_not_trusted() {
        // The ustar size says 10 bytes, a PAX record says 5 MiB: the tar crate reads 5 MiB, and
        // so does the budget.
        let data = vec![b'z'; 5 << 20];
        let mut tb = Tb::new();
        tb.pax(&[("size", (5u64 << 20).to_string().as_bytes())]);
        tb.header(b"liar", EntryType::Regular, 0o644, 10, b"");
        tb.data(&data);
        let tar = tb.build();
        let limits = Limits {
            max_bytes: 1 << 20,
            ..Limits::default()
        };
        let err = refused_with(&tar, &limits);
        assert!(matches!(err, ArchiveError::TooLarge { .. }), "{err}");
        // Without the limit the 5 MiB arrive in full.
        let (sb, s) = accepted(&tar);
        assert_eq!(s.bytes, 5 << 20);
        assert_eq!(fs::metadata(sb.dest.join("liar")).unwrap().len(), 5 << 20);
        // A header that declares more than the stream holds.
        let mut tb = Tb::new();
        tb.header(b"short", EntryType::Regular, 0o644, 100_000, b"")
            .data(b"only a little");
        let tar = tb.out.clone();
        let err = refused(&tar);
        assert!(matches!(err, ArchiveError::Corrupt { .. }), "{err}");
        // Invalid PAX size.
        let tar = Tb::new().pax(&[("size", b"12abc")]).file("f", b"x").build();
        assert!(matches!(refused(&tar), ArchiveError::Corrupt { .. }));
    }

    #[test]
    fn entry_count_limit() {
        /// 100,000 empty files, generated as they are read.
        struct ManyEmpty {
            next: u32,
            block: Vec<u8>,
        }
        impl Read for ManyEmpty {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.block.is_empty() {
                    if self.next < 100_000 {
                        self.block = Tb::new().file(&format!("e/{}", self.next), b"").out.clone();
                    } else if self.next == 100_000 {
                        self.block = vec![0; 1024];
                    } else {
                        return Ok(0);
                    }
                    self.next += 1;
                }
                let n = buf.len().min(self.block.len());
                buf[..n].copy_from_slice(&self.block[..n]);
                self.block.drain(..n);
                Ok(n)
            }
        }
        let tar = ManyEmpty {
            next: 0,
            block: Vec::new(),
        };
        // (File creation costs ~0.25 ms on this CI disk, so the limit is kept small.)
        let limits = Limits {
            max_entries: 2_000,
            ..Limits::default()
        };
        let sb = sandbox();
        let err = unpack_tar(tar, &sb.dest, &limits).unwrap_err();
        sb.assert_outside_untouched();
        assert!(
            matches!(err, ArchiveError::TooManyEntries { max: 2_000 }),
            "{err}"
        );
        assert_eq!(fs::read_dir(sb.dest.join("e")).unwrap().count(), 2_000);
    }

    #[test]
    fn metadata_bombs_are_bounded() {
        // A GNU long name that declares 100 MiB: refused without buffering it.
        let mut h = Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
        h.set_entry_type(EntryType::GNULongName);
        h.set_size(100 << 20);
        h.set_cksum();
        let stream = h
            .as_bytes()
            .as_slice()
            .chain(io::repeat(b'a').take(100 << 20));
        let sb = sandbox();
        let err = unpack_tar(stream, &sb.dest, &Limits::default()).unwrap_err();
        assert!(
            matches!(err, ArchiveError::MetadataTooLarge { .. }),
            "{err}"
        );
        // Same with a PAX header.
        let mut h = Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..4].copy_from_slice(b"paxx");
        h.set_entry_type(EntryType::XHeader);
        h.set_size(100 << 20);
        h.set_cksum();
        let stream = h
            .as_bytes()
            .as_slice()
            .chain(io::repeat(b'a').take(100 << 20));
        let sb = sandbox();
        let err = unpack_tar(stream, &sb.dest, &Limits::default()).unwrap_err();
        assert!(
            matches!(err, ArchiveError::MetadataTooLarge { .. }),
            "{err}"
        );
        // A directory entry that carries 100 MiB of data (skipped by the parser).
        let mut h = Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..2].copy_from_slice(b"d/");
        h.set_entry_type(EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(100 << 20);
        h.set_cksum();
        let stream = h
            .as_bytes()
            .as_slice()
            .chain(io::repeat(0).take(100 << 20))
            .chain(&[0u8; 1024][..]);
        let sb = sandbox();
        let err = unpack_tar(stream, &sb.dest, &Limits::default()).unwrap_err();
        assert!(
            matches!(err, ArchiveError::MetadataTooLarge { ref after, .. } if after == "d/"),
            "{err}"
        );
    }

    // -----------------------------------------------------------------------------------------
    // Parser differentials and corruption

    #[test]
    fn refuses_ambiguous_pax_and_trailing_data() {
        let tar = Tb::new()
            .pax(&[("path", b"one"), ("path", b"two")])
            .file("p", b"x")
            .build();
        assert!(matches!(refused(&tar), ArchiveError::Corrupt { .. }));
        let tar = Tb::new()
            .long(b'L', b"gnu-name")
            .pax(&[("path", b"pax-name")])
            .file("p", b"x")
            .build();
        assert!(matches!(refused(&tar), ArchiveError::Corrupt { .. }));
        let tar = Tb::new().pax_raw(b"99 path=x\n").file("p", b"x").build();
        assert!(matches!(refused(&tar), ArchiveError::Corrupt { .. }));
        // A newline inside a PAX value (the tar crate splits records on newlines).
        let mut rec = pax_record("comment", b"a\n12 path=zz\n");
        rec.extend(pax_record("mtime", b"0"));
        let tar = Tb::new().pax_raw(&rec).file("p", b"x").build();
        assert!(matches!(refused(&tar), ArchiveError::Corrupt { .. }));
        // Entries hidden after the end-of-archive marker.
        let mut tar = Tb::new().file("shown", b"x").build();
        tar.extend(Tb::new().file("hidden", b"x").build());
        let err = refused(&tar);
        assert!(
            matches!(err, ArchiveError::Corrupt { ref detail, .. } if detail.contains("after the end")),
            "{err}"
        );
        // Zero padding after the marker is fine (GNU tar pads to 10 KiB).
        let mut tar = Tb::new().file("shown", b"x").build();
        tar.extend(vec![0u8; 10240]);
        accepted(&tar);
    }

    #[test]
    fn corrupt_streams_are_errors() {
        let mut tar = Tb::new().file("f", b"x").build();
        tar[0] ^= 1; // checksum mismatch
        assert!(matches!(refused(&tar), ArchiveError::Corrupt { .. }));
        let sb = sandbox();
        let err = unpack_tar_gz(&b"not gzip at all"[..], &sb.dest, &Limits::default()).unwrap_err();
        assert!(matches!(err, ArchiveError::Corrupt { .. }), "{err}");
        // Bad gzip CRC.
        let mut g = gz(&Tb::new().file("f", b"x").build());
        let n = g.len();
        g[n - 8] ^= 0xff;
        let sb = sandbox();
        let err = unpack_tar_gz(&g[..], &sb.dest, &Limits::default()).unwrap_err();
        assert!(matches!(err, ArchiveError::Corrupt { .. }), "{err}");
        // A reader that fails is an Io error on the stream.
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset"))
            }
        }
        let sb = sandbox();
        let err = unpack_tar_gz(Failing, &sb.dest, &Limits::default()).unwrap_err();
        assert!(
            matches!(err, ArchiveError::Io { ref path, ref source } if path == "<archive stream>" && source.kind() == io::ErrorKind::ConnectionReset),
            "{err}"
        );
    }

    #[test]
    fn no_panic_on_truncated_or_mangled_input() {
        let src = tempfile::tempdir().unwrap();
        fs::create_dir_all(src.path().join("d/e")).unwrap();
        fs::write(src.path().join("d/e/f"), b"some text\n").unwrap();
        fs::write(src.path().join("x".repeat(150)), b"long name").unwrap();
        std::os::unix::fs::symlink("d/e/f", src.path().join("l")).unwrap();
        let (layer, _) = pack_to_vec(src.path(), "site");
        let mut tar = gunzip(&layer);
        // Add the entry kinds pack never writes: hard link, PAX record.
        let extra = Tb::new()
            .hardlink("site/h", "site/d/e/f")
            .pax(&[("path", b"site/pax")])
            .file("p", b"pax")
            .build();
        tar.truncate(tar.len() - 1024);
        tar.extend(extra);
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let tmp = tempfile::tempdir().unwrap();
        for i in 0..200 {
            let dest = tmp.path().join(format!("d{i}"));
            fs::create_dir(&dest).unwrap();
            let mut t = tar.clone();
            match i % 3 {
                0 => t.truncate((next() % t.len() as u64) as usize),
                1 => {
                    for _ in 0..1 + next() % 8 {
                        let at = (next() % t.len() as u64) as usize;
                        t[at] = next() as u8;
                    }
                }
                _ => {
                    // Mangle a header field and fix the checksum, so the parser goes deeper.
                    let block = (next() % (t.len() as u64 / 512)) as usize * 512;
                    let at = block + (next() % 500) as usize;
                    t[at] = next() as u8;
                    if let Some(h) = t.get_mut(block..block + 512) {
                        let mut hdr = Header::new_old();
                        hdr.as_mut_bytes().copy_from_slice(h);
                        hdr.set_cksum();
                        h.copy_from_slice(hdr.as_bytes());
                    }
                }
            }
            let _ = unpack_tar(&t[..], &dest, &Limits::default());
            let _ = unpack_tar_gz(
                &gz(&t)[..],
                &tmp.path().join(format!("d{i}")),
                &Limits::default(),
            );
            let mut g = layer.clone();
            let at = (next() % g.len() as u64) as usize;
            g[at] ^= 1 << (next() % 8);
            let d2 = tmp.path().join(format!("g{i}"));
            fs::create_dir(&d2).unwrap();
            let _ = unpack_tar_gz(&g[..], &d2, &Limits::default());
        }
    }

    #[test]
    fn destination_must_be_an_empty_real_directory() {
        let sb = sandbox();
        let tar = gz(&Tb::new().file("f", b"x").build());
        fs::write(sb.dest.join("existing"), b"").unwrap();
        let err = unpack_tar_gz(&tar[..], &sb.dest, &Limits::default()).unwrap_err();
        assert!(
            matches!(
                err,
                ArchiveError::BadDestination {
                    what: "is not empty",
                    ..
                }
            ),
            "{err}"
        );
        let link = sb.root.join("link");
        std::os::unix::fs::symlink(&sb.outside, &link).unwrap();
        let err = unpack_tar_gz(&tar[..], &link, &Limits::default()).unwrap_err();
        assert!(
            matches!(
                err,
                ArchiveError::BadDestination {
                    what: "is a symbolic link",
                    ..
                }
            ),
            "{err}"
        );
        let err =
            unpack_tar_gz(&tar[..], &sb.outside.join("sentinel"), &Limits::default()).unwrap_err();
        assert!(matches!(err, ArchiveError::BadDestination { .. }), "{err}");
        let err =
            unpack_tar_gz(&tar[..], &sb.root.join("missing"), &Limits::default()).unwrap_err();
        assert!(matches!(err, ArchiveError::Io { .. }), "{err}");
    }

    // -----------------------------------------------------------------------------------------
    // Measurement (run with: cargo test --release -- --ignored --nocapture bench_pack)

    /// 10,000 files, ~33 MB: 70% text (markup-like, compressible), 30% random bytes.
    fn make_site(dir: &Path) -> u64 {
        let mut seed: u64 = 42;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let words = [
            "<div>",
            "class=\"card\"",
            "lorem",
            "ipsum",
            "</div>",
            "\n",
            "<p>",
            "dolor",
            "sit",
            "amet",
            "</p>",
            "href=\"/docs/",
            "index.html\"",
            "{",
            "}",
            "color:",
            "#fff;",
        ];
        let mut total = 0u64;
        for d in 0..100 {
            let sub = dir.join(format!("section-{d:03}"));
            fs::create_dir_all(&sub).unwrap();
            for f in 0..100 {
                let n = d * 100 + f;
                let data: Vec<u8> = if n % 10 < 7 {
                    let target = 1500 + (rnd() % 2800) as usize;
                    let mut s = String::with_capacity(target + 32);
                    while s.len() < target {
                        s.push_str(words[(rnd() % words.len() as u64) as usize]);
                        s.push(' ');
                        if rnd() % 50 == 0 {
                            s.push_str(&format!("{}", rnd()));
                        }
                    }
                    s.into_bytes()
                } else {
                    let len = 3000 + (rnd() % 2600) as usize;
                    (0..len).map(|_| rnd() as u8).collect()
                };
                total += data.len() as u64;
                let ext = if n % 10 < 7 { "html" } else { "bin" };
                fs::write(sub.join(format!("page-{f:03}.{ext}")), data).unwrap();
            }
        }
        total
    }

    /// CPU time of this thread (user + system), from the scheduler's accounting.
    fn thread_cpu_ns() -> u64 {
        let s = fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
        s.split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    #[test]
    #[ignore = "measurement"]
    fn bench_pack_levels() {
        let tmp = tempfile::tempdir().unwrap();
        // BENCH_DIR: an existing folder to pack instead of a fresh one (no page-cache noise
        // from just-written files).
        let (site, total) = match std::env::var_os("BENCH_DIR") {
            Some(d) => {
                let d = PathBuf::from(d);
                let total = walkdir::WalkDir::new(&d)
                    .into_iter()
                    .map(|e| e.unwrap().metadata().unwrap())
                    .filter(|m| m.is_file())
                    .map(|m| m.len())
                    .sum();
                (d, total)
            }
            None => {
                let site = tmp.path().join("site");
                let total = make_site(&site);
                (site, total)
            }
        };
        println!("site: {}, {total} bytes", site.display());
        // Warm the page cache once.
        pack_dir_level(&site, "site", io::sink(), 1).unwrap();
        let levels: Vec<u32> = match std::env::var("LEVELS") {
            Ok(v) => v.split(',').map(|x| x.parse().unwrap()).collect(),
            Err(_) => vec![0, 1, 2, 3, 4, 5, 6, 9],
        };
        for level in levels {
            let mut best = Duration::MAX;
            let mut best_cpu = u64::MAX;
            let mut out = Vec::new();
            for _ in 0..5 {
                out = Vec::with_capacity(48 << 20);
                let cpu = thread_cpu_ns();
                let t = Instant::now();
                pack_dir_level(&site, "site", &mut out, level).unwrap();
                best = best.min(t.elapsed());
                best_cpu = best_cpu.min(thread_cpu_ns() - cpu);
            }
            println!(
                "level {level}: {:>7.1} ms wall, {:>7.1} ms cpu  {} bytes ({:.1}% of input)  layer sha256:{}",
                best.as_secs_f64() * 1e3,
                best_cpu as f64 / 1e6,
                out.len(),
                out.len() as f64 * 100.0 / total as f64,
                hex::encode(Sha256::digest(&out))
            );
        }
        if std::env::var_os("BENCH_NO_UNPACK").is_some() {
            return;
        }
        let mut out = Vec::new();
        pack_dir(&site, "site", &mut out).unwrap();
        let dest = tmp.path().join("dest");
        fs::create_dir(&dest).unwrap();
        let t = Instant::now();
        let s = unpack_tar_gz(&out[..], &dest, &Limits::default()).unwrap();
        println!(
            "unpack: {:.1} ms, {} entries",
            t.elapsed().as_secs_f64() * 1e3,
            s.entries
        );
    }
}
