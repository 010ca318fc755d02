//! TEMPORARY placeholder until the archive module lands (same API).
#![allow(missing_docs, unused)]
use std::path::Path;
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    #[error("archive support not built yet")]
    NotYet,
}
pub struct PackSummary {
    pub entries: u64,
    pub files: u64,
    pub bytes: u64,
    pub tar_digest: String,
}
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_bytes: u64,
    pub max_entries: u64,
    pub max_ratio: u64,
    pub max_path_len: usize,
    pub max_depth: usize,
}
impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 8 << 30,
            max_entries: 1_000_000,
            max_ratio: 1000,
            max_path_len: 4096,
            max_depth: 128,
        }
    }
}
pub struct UnpackSummary {
    pub entries: u64,
    pub files: u64,
    pub bytes: u64,
}
pub fn pack_dir<W: std::io::Write>(
    dir: &Path,
    prefix: &str,
    out: W,
) -> Result<PackSummary, ArchiveError> {
    Err(ArchiveError::NotYet)
}
pub fn unpack_tar_gz<R: std::io::Read>(
    compressed: R,
    dest: &Path,
    limits: &Limits,
) -> Result<UnpackSummary, ArchiveError> {
    Err(ArchiveError::NotYet)
}
pub fn unpack_tar<R: std::io::Read>(
    tar: R,
    dest: &Path,
    limits: &Limits,
) -> Result<UnpackSummary, ArchiveError> {
    Err(ArchiveError::NotYet)
}
