//! References: where an artifact lives.
//!
//! Two forms (SPEC §2):
//! - registry, docker grammar: `HOST[:PORT]/REPO[:TAG][@sha256:HEX]`; a name without a host is Docker Hub's, as
//!   docker, crane and cosign read it (`alpine` is `docker.io/library/alpine`);
//! - OCI image layout folder, skopeo's form: `oci:PATH[:TAG|@sha256:HEX]`.
//!
//! A reference carrying both a tag and a digest is pinned to the digest: the tag is kept only for display.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::digest::Digest;

/// Docker Hub's canonical registry name.
pub const DOCKER_HUB: &str = "docker.io";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A parsed, checked reference.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    /// A repository in an OCI registry.
    Registry(RegistryRef),
    /// An OCI image layout folder on disk.
    Layout(LayoutRef),
}

/// `HOST[:PORT]/REPO[:TAG][@DIGEST]`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct RegistryRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// `oci:PATH[:TAG|@DIGEST]`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct LayoutRef {
    path: PathBuf,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a string is not a reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid reference {input:?}: {reason}")]
pub struct ReferenceError {
    /// The rejected text (truncated).
    pub input: String,
    /// What was wrong.
    pub reason: String,
}

fn refuse(input: &str, reason: impl Into<String>) -> ReferenceError {
    ReferenceError {
        input: input.chars().take(200).collect(),
        reason: reason.into(),
    }
}

/// Checks a tag against the distribution grammar `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn check_tag(tag: &str) -> Result<(), String> {
    let mut bytes = tag.bytes();
    let Some(first) = bytes.next() else {
        return Err("the tag is empty".into());
    };
    if tag.len() > MAX_TAG_LEN {
        return Err(format!("a tag has at most {MAX_TAG_LEN} characters"));
    }
    if !(first.is_ascii_alphanumeric() || first == b'_') {
        return Err(format!(
            "tag {tag:?} must start with a letter, digit or '_'"
        ));
    }
    if !bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
        return Err(format!(
            "tag {tag:?} may hold only letters, digits, '_', '.' and '-'"
        ));
    }
    Ok(())
}

/// Checks one repository path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn check_component(c: &str) -> Result<(), String> {
    if c.is_empty() {
        return Err("empty path component in repository name".into());
    }
    if c.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("repository name must be lowercase (found {c:?})"));
    }
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return Err(format!(
            "repository component {c:?} must start and end with a letter or digit"
        ));
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // a separator run: ".", "_", "__" or "-+"
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return Err(format!(
                "repository component {c:?} has an invalid separator {sep:?}"
            ));
        }
    }
    Ok(())
}

fn check_host(host: &str) -> Result<(), String> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        // [ipv6]:port
        let (v6, after) = rest
            .split_once(']')
            .ok_or("unclosed '[' in registry host")?;
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{v6:?} is not an IPv6 address"));
        }
        (None, after.strip_prefix(':'))
    } else {
        match host.split_once(':') {
            Some((n, p)) => (Some(n), Some(p)),
            None => (Some(host), None),
        }
    };
    if let Some(p) = port
        && (p.is_empty()
            || p.len() > 5
            || !p.bytes().all(|b| b.is_ascii_digit())
            || p.parse::<u16>().is_err())
    {
        return Err(format!("bad port {p:?} in registry host"));
    }
    if let Some(n) = name {
        if n.is_empty() {
            return Err("empty registry host".into());
        }
        for label in n.split('.') {
            let lb = label.as_bytes();
            let ok = !lb.is_empty()
                && lb.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                && lb[0] != b'-'
                && lb[lb.len() - 1] != b'-';
            if !ok {
                return Err(format!("bad registry host {host:?}"));
            }
        }
    }
    Ok(())
}

/// Splits `NAME[:TAG][@DIGEST]` into its parts (the name is returned unchecked).
fn split_tag_digest<'a>(
    input: &str,
    s: &'a str,
) -> Result<(&'a str, Option<String>, Option<Digest>), ReferenceError> {
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (
            r,
            Some(Digest::parse(d).map_err(|e| refuse(input, e.reason.to_string()))?),
        ),
        None => (s, None),
    };
    // a ':' after the last '/' separates the tag (a ':' before it is a port)
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => {
            let tag = &rest[last_slash + i + 1..];
            check_tag(tag).map_err(|r| refuse(input, r))?;
            (&rest[..last_slash + i], Some(tag.to_string()))
        }
        None => (rest, None),
    };
    Ok((name, tag, digest))
}

impl Reference {
    /// Parses either form; see the module docs.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        if input.is_empty() {
            return Err(refuse(input, "the reference is empty"));
        }
        if input.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(refuse(
                input,
                "whitespace or control characters are not allowed",
            ));
        }
        if let Some(rest) = input.strip_prefix("oci:") {
            return LayoutRef::parse_body(input, rest).map(Reference::Layout);
        }
        RegistryRef::parse(input).map(Reference::Registry)
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        match self {
            Reference::Registry(r) => r.tag.as_deref(),
            Reference::Layout(l) => l.tag.as_deref(),
        }
    }

    /// The digest, if the reference is pinned.
    pub fn digest(&self) -> Option<&Digest> {
        match self {
            Reference::Registry(r) => r.digest.as_ref(),
            Reference::Layout(l) => l.digest.as_ref(),
        }
    }

    /// The same repository pinned to `digest` (the tag is dropped).
    pub fn pinned(&self, digest: Digest) -> Reference {
        match self {
            Reference::Registry(r) => Reference::Registry(RegistryRef {
                tag: None,
                digest: Some(digest),
                ..r.clone()
            }),
            Reference::Layout(l) => Reference::Layout(LayoutRef {
                tag: None,
                digest: Some(digest),
                ..l.clone()
            }),
        }
    }

    /// The same repository with `tag` and no digest.
    pub fn with_tag(&self, tag: &str) -> Reference {
        match self {
            Reference::Registry(r) => Reference::Registry(RegistryRef {
                tag: Some(tag.to_string()),
                digest: None,
                ..r.clone()
            }),
            Reference::Layout(l) => Reference::Layout(LayoutRef {
                tag: Some(tag.to_string()),
                digest: None,
                ..l.clone()
            }),
        }
    }

    /// The repository part without tag or digest: `HOST/REPO` or `oci:PATH`. This is what policy scopes match and
    /// what cosign's `docker-reference` holds.
    pub fn repository_name(&self) -> String {
        match self {
            Reference::Registry(r) => format!("{}/{}", r.registry, r.repository),
            Reference::Layout(l) => format!("oci:{}", l.path.display()),
        }
    }
}

impl RegistryRef {
    /// Parses the docker grammar.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let (name, tag, digest) = split_tag_digest(input, input)?;
        if name.is_empty() {
            return Err(refuse(input, "no repository name"));
        }
        // checked on the written name first (bounds the work below), then on the normalised one
        if name.len() > MAX_NAME_LEN {
            return Err(refuse(
                input,
                format!("the name is longer than {MAX_NAME_LEN} characters"),
            ));
        }
        let (first, rest) = match name.split_once('/') {
            Some((f, r)) => (f, Some(r)),
            None => (name, None),
        };
        let first_is_host = rest.is_some()
            && (first.contains('.')
                || first.contains(':')
                || first.starts_with('[')
                || first == "localhost");
        let (registry, repository) = if first_is_host {
            check_host(first).map_err(|r| refuse(input, r))?;
            (first.to_string(), rest.unwrap_or_default().to_string())
        } else if rest.is_none() {
            (DOCKER_HUB.to_string(), format!("library/{name}"))
        } else {
            (DOCKER_HUB.to_string(), name.to_string())
        };
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        if repository.is_empty() {
            return Err(refuse(input, "no repository after the registry host"));
        }
        // Docker Hub names grow when normalised (`app` is `docker.io/library/app`); the cap is on the full name, as
        // docker's ParseNormalizedNamed applies it, so that the name we display parses again
        let full_len = registry.len() + 1 + repository.len();
        if full_len > MAX_NAME_LEN {
            return Err(refuse(
                input,
                format!(
                    "the name is longer than {MAX_NAME_LEN} characters once normalised to {registry}/{}...",
                    repository.chars().take(32).collect::<String>()
                ),
            ));
        }
        for c in repository.split('/') {
            check_component(c).map_err(|r| refuse(input, r))?;
        }
        Ok(RegistryRef {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `HOST[:PORT]` as written (docker.io for Docker Hub).
    pub fn registry(&self) -> &str {
        &self.registry
    }
    /// The host the API is served from (Docker Hub's API lives at registry-1.docker.io).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }
    /// The repository path, e.g. `team/app`.
    pub fn repository(&self) -> &str {
        &self.repository
    }
    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    /// The digest, if pinned.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }
}

impl LayoutRef {
    fn parse_body(input: &str, body: &str) -> Result<Self, ReferenceError> {
        let (path, tag, digest) = if let Some((p, d)) = body.rsplit_once('@') {
            let d = Digest::parse(d).map_err(|e| refuse(input, e.reason.to_string()))?;
            (p, None, Some(d))
        } else {
            // skopeo's oci:PATH:REF — the tag follows the last ':' that comes after the last '/'
            let last_slash = body.rfind('/').map_or(0, |i| i + 1);
            match body[last_slash..].rfind(':') {
                Some(i) => {
                    let tag = &body[last_slash + i + 1..];
                    check_tag(tag).map_err(|r| refuse(input, r))?;
                    (&body[..last_slash + i], Some(tag.to_string()), None)
                }
                None => (body, None, None),
            }
        };
        if path.is_empty() {
            return Err(refuse(input, "no layout folder path after 'oci:'"));
        }
        // one reading only: with an '@' in the folder, `oci:a@b:tag` and the same reference pinned would split
        // differently
        if path.contains('@') {
            return Err(refuse(
                input,
                "a layout folder path may not contain '@' (it introduces the digest)",
            ));
        }
        Ok(LayoutRef {
            path: PathBuf::from(path),
            tag,
            digest,
        })
    }

    /// The layout folder.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The tag (`org.opencontainers.image.ref.name`), if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    /// The digest, if pinned.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repository_name())?;
        if let Some(d) = self.digest() {
            write!(f, "@{d}")
        } else if let Some(t) = self.tag() {
            write!(f, ":{t}")
        } else {
            Ok(())
        }
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

    fn reg(s: &str) -> RegistryRef {
        match Reference::parse(s).unwrap() {
            Reference::Registry(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn registry_forms() {
        let r = reg("127.0.0.1:5000/team/app:v1.0.0");
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("127.0.0.1:5000", "team/app", Some("v1.0.0"))
        );
        let r = reg(&format!("ghcr.io/acme/app:v1@sha256:{HEX}"));
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(r.digest().unwrap().hex(), HEX);
        let r = reg("alpine");
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("docker.io", "library/alpine", None)
        );
        assert_eq!(r.api_host(), "registry-1.docker.io");
        let r = reg("acme/app:1");
        assert_eq!((r.registry(), r.repository()), ("docker.io", "acme/app"));
        let r = reg("localhost/app");
        assert_eq!((r.registry(), r.repository()), ("localhost", "app"));
        let r = reg("[::1]:5000/app:v2");
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("[::1]:5000", "app", Some("v2"))
        );
        let r = reg("registry.example.com/a__b/c-d/e.f/g--h:tag_1.2-3");
        assert_eq!(r.repository(), "a__b/c-d/e.f/g--h");
    }

    #[test]
    fn display_pins_to_digest() {
        let r = Reference::parse(&format!("host.io/app:v1@sha256:{HEX}")).unwrap();
        assert_eq!(r.to_string(), format!("host.io/app@sha256:{HEX}"));
        assert_eq!(r.repository_name(), "host.io/app");
        let p = Reference::parse("host.io/app:v1")
            .unwrap()
            .pinned(Digest::parse(&format!("sha256:{HEX}")).unwrap());
        assert_eq!(p.to_string(), format!("host.io/app@sha256:{HEX}"));
    }

    #[test]
    fn layout_forms() {
        for (s, path, tag, dig) in [
            (
                "oci:./out/layout:v1.0.0",
                "./out/layout",
                Some("v1.0.0"),
                false,
            ),
            ("oci:/abs/path", "/abs/path", None, false),
            ("oci:rel", "rel", None, false),
            (&*format!("oci:dir@sha256:{HEX}"), "dir", None, true),
            ("oci:a:b/c:t", "a:b/c", Some("t"), false),
        ] {
            match Reference::parse(s).unwrap() {
                Reference::Layout(l) => {
                    assert_eq!(l.path(), Path::new(path), "{s}");
                    assert_eq!(l.tag(), tag, "{s}");
                    assert_eq!(l.digest().is_some(), dig, "{s}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn bad_references_are_named() {
        for (s, why) in [
            ("", "empty"),
            ("host.io/App:v1", "lowercase"),
            ("host.io/app:", "tag is empty"),
            ("host.io/app:-bad", "must start"),
            ("host.io/app:a/b", "separator"), // the ':' comes before the last '/', so it is not a tag
            ("host.io/app@sha256:abc", "64 hex"),
            ("host.io/app@md5:abc", "only sha256"),
            ("host.io/", "no repository"),
            ("host.io//app", "empty path component"),
            ("host.io/app_", "start and end"),
            ("host.io/a...b", "separator"),
            ("oci:", "no layout"),
            ("oci::tag", "no layout"),
            ("host.io/app v1", "whitespace"),
            ("host.io:99999/app", "bad port"),
        ] {
            let e = Reference::parse(s).expect_err(s);
            assert!(e.to_string().contains(why), "{s:?}: {e} (wanted {why:?})");
        }
        let long_tag = format!("h.io/app:{}", "a".repeat(129));
        assert!(Reference::parse(&long_tag).is_err());
    }

    /// Inputs found by the `reference` fuzz target (`testdata/fuzz-regressions/reference/`): whatever parses must
    /// display as a reference that parses back to the same thing.
    #[test]
    fn fuzz_regressions() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/fuzz-regressions/reference");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let input = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
            if let Ok(r) = Reference::parse(&input) {
                let shown = r.to_string();
                let again = Reference::parse(&shown).unwrap_or_else(|e| {
                    panic!("{}: display {shown:?} does not parse: {e}", path.display())
                });
                assert_eq!(again.to_string(), shown, "{}", path.display());
                // and so do the forms derived from it
                let tagged = r.with_tag("latest");
                assert_eq!(
                    Reference::parse(&tagged.to_string()).as_ref(),
                    Ok(&tagged),
                    "{}",
                    path.display()
                );
                let pinned = r.pinned(Digest::of(b""));
                assert_eq!(
                    Reference::parse(&pinned.to_string()).as_ref(),
                    Ok(&pinned),
                    "{}",
                    path.display()
                );
            }
        }
        let e = Reference::parse(&format!("oci:a@b@sha256:{HEX}")).unwrap_err();
        assert!(e.reason.contains("may not contain '@'"), "{e}");
        // 238 characters as written, 256 as docker.io/library/...: refused, not accepted and then unprintable
        let e = Reference::parse(&"a".repeat(238)).unwrap_err();
        assert!(
            e.reason.contains("once normalised to docker.io/library"),
            "{e}"
        );
        assert!(Reference::parse(&"a".repeat(237)).is_ok());
    }
}
