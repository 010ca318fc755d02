//! Artifacts: packing files and folders into layers, pushing them to a [`Store`](crate::store::Store), pulling
//! them back safely, and describing what a manifest holds.

pub mod archive;
pub mod contents;
pub mod copy;
pub mod inspect;
pub mod pull;
pub mod push;
pub mod secrets;

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};

/// Receives progress of long transfers; the CLI draws bars, library callers may ignore it.
pub trait Observer: Send + Sync {
    /// A transfer of `total` bytes named `label` starts; the returned callback is given each increment.
    fn transfer(&self, label: &str, total: u64) -> Arc<dyn Fn(u64) + Send + Sync>;
}

/// An observer that reports nothing.
pub struct Silent;

impl Observer for Silent {
    fn transfer(&self, _: &str, _: u64) -> Arc<dyn Fn(u64) + Send + Sync> {
        Arc::new(|_| {})
    }
}

/// Checks a layer title (a file name from a manifest) is a plain relative path that stays inside the output folder:
/// no absolute path, no `..`, no empty or `.` components, no backslash, NUL or control characters, at most 255
/// bytes a component and 4096 in all. Returns the path to join onto the output folder.
pub fn safe_relative_path(title: &str) -> Result<PathBuf> {
    let refuse = |why: &str| Error::untrusted(format!("layer title {title:?}"), why.to_string());
    if title.is_empty() {
        return Err(refuse("empty file name"));
    }
    if title.len() > 4096 {
        return Err(refuse("longer than 4096 bytes"));
    }
    if title.chars().any(|c| c.is_control() || c == '\\') {
        return Err(refuse(
            "control characters or backslashes are not allowed in file names",
        ));
    }
    let p = Path::new(title);
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => {
                if n.len() > 255 {
                    return Err(refuse("a path component is longer than 255 bytes"));
                }
                out.push(n);
            }
            Component::CurDir => return Err(refuse("'.' components are not allowed")),
            Component::ParentDir => return Err(refuse("'..' would escape the output folder")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(refuse("absolute paths are not allowed"));
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(refuse("empty file name"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_confined() {
        assert_eq!(
            safe_relative_path("app.zip").unwrap(),
            PathBuf::from("app.zip")
        );
        assert_eq!(
            safe_relative_path("dir/app.zip").unwrap(),
            PathBuf::from("dir/app.zip")
        );
        for bad in [
            "",
            "../x",
            "a/../../x",
            "/etc/passwd",
            "./x",
            "a\\..\\x",
            "a\u{0}b",
            "a\nb",
            "\u{1b}[31mred",
        ] {
            assert!(safe_relative_path(bad).is_err(), "{bad:?}");
        }
        assert!(safe_relative_path(&"a".repeat(256)).is_err());
    }
}
