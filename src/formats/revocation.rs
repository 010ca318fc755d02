//! Revocation statements: the predicate of an in-toto statement that says a digest must never deploy again.
//! `sealpack revoke` signs one about the digest; every verify that trusts the signing key denies the digest.
//!
//! ```json
//! {"digest":"sha256:<hex>","reason":"CVE-2026-1234 in the bundled libfoo","revokedAt":"2026-11-27T10:00:00Z"}
//! ```

use serde_json::Value;

use super::FormatError;

/// The predicate type of a revocation statement.
pub const PREDICATE_TYPE: &str = "https://github.com/sealpack/sealpack/revocation/v1";
/// Longest reason accepted.
pub const MAX_REASON: usize = 4096;

const WHAT: &str = "revocation";

/// A checked revocation predicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The revoked digest, `sha256:<hex>`.
    pub digest: String,
    /// Why.
    pub reason: String,
    /// When, RFC 3339.
    pub revoked_at: String,
}

fn invalid(field: &str, reason: &str) -> FormatError {
    FormatError::InvalidField {
        what: WHAT,
        field: field.into(),
        reason: reason.into(),
    }
}

/// Builds the predicate; the reason must be non-empty and at most [`MAX_REASON`] bytes.
pub fn build(digest: &str, reason: &str, revoked_at: &str) -> Result<Value, FormatError> {
    if reason.trim().is_empty() {
        return Err(invalid(
            "reason",
            "is empty: say why the digest must not deploy",
        ));
    }
    if reason.len() > MAX_REASON {
        return Err(invalid("reason", "is longer than 4096 bytes"));
    }
    let v = serde_json::json!({"digest": digest, "reason": reason, "revokedAt": revoked_at});
    parse(&v)?;
    Ok(v)
}

/// Parses a predicate.
pub fn parse(predicate: &Value) -> Result<Revocation, FormatError> {
    let obj = predicate
        .as_object()
        .ok_or_else(|| invalid("predicate", "is not a JSON object"))?;
    let field = |name: &str| -> Result<String, FormatError> {
        obj.get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| FormatError::MissingField {
                what: WHAT,
                field: name.into(),
            })
    };
    let digest = field("digest")?;
    crate::digest::Digest::parse(&digest)
        .map_err(|_| invalid("digest", "is not sha256:<64 lowercase hex>"))?;
    let reason = field("reason")?;
    if reason.len() > MAX_REASON {
        return Err(invalid("reason", "is longer than 4096 bytes"));
    }
    Ok(Revocation {
        digest,
        reason,
        revoked_at: field("revokedAt")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let d = crate::digest::Digest::of(b"x").to_string();
        let v = build(&d, "bad build", "2026-11-27T10:00:00Z").unwrap();
        assert_eq!(parse(&v).unwrap().reason, "bad build");
        assert!(build(&d, "  ", "t").is_err());
        assert!(build("sha256:ABC", "r", "t").is_err());
        assert!(build(&d, &"x".repeat(5000), "t").is_err());
        assert!(parse(&serde_json::json!({"digest": d})).is_err());
    }
}
