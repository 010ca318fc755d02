//! Promotion and deployment records: predicates of in-toto statements that say where a digest went.
//!
//! `sealpack promote` signs a promotion statement about the digest it moved from one environment to another;
//! `sealpack deploy --sign-key` signs a deployment record, which a later `promote` without `--from-target` uses
//! as proof of what the source environment runs. Both are ordinary attestations (DSSE, stored in the subject's
//! `.att` manifest), so `verify-attestation` and policy rules can require them.
//!
//! ```json
//! {"digest":"sha256:<hex>","from":"staging","to":"production","promotedAt":"2026-11-27T10:00:00Z","promotedBy":"ci@host"}
//! {"digest":"sha256:<hex>","environment":"staging","deployedAt":"2026-11-27T10:00:00Z","deployedBy":"ci@host","target":"host:/srv/app"}
//! ```

use serde_json::Value;

use super::FormatError;

/// The predicate type of a promotion statement.
pub const PROMOTION_TYPE: &str = "https://github.com/sealpack/sealpack/promotion/v1";
/// The predicate type of a deployment record.
pub const DEPLOYMENT_TYPE: &str = "https://github.com/sealpack/sealpack/deployment/v1";
/// Longest environment name.
pub const MAX_ENV: usize = 64;
/// Longest free-text field (who, target).
const MAX_TEXT: usize = 1024;

/// A checked promotion predicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    /// The promoted digest, `sha256:<hex>`.
    pub digest: String,
    /// The source environment.
    pub from: String,
    /// The target environment.
    pub to: String,
    /// When, RFC 3339.
    pub promoted_at: String,
    /// Who (user@host or the CI actor).
    pub promoted_by: String,
}

/// A checked deployment record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// The deployed digest, `sha256:<hex>`.
    pub digest: String,
    /// The environment it runs in.
    pub environment: String,
    /// When, RFC 3339.
    pub deployed_at: String,
    /// Who.
    pub deployed_by: String,
    /// Where (host and folder), informational.
    pub target: String,
}

fn invalid(what: &'static str, field: &str, reason: &str) -> FormatError {
    FormatError::InvalidField {
        what,
        field: field.into(),
        reason: reason.into(),
    }
}

/// Checks an environment name: 1 to 64 of `[a-z0-9._-]`, starting with a letter or digit.
pub fn check_env(name: &str) -> Result<(), FormatError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_ENV
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "environment",
            "name",
            &format!("{name:?} is not 1-64 of a-z 0-9 . _ - starting with a letter or digit"),
        ))
    }
}

fn fields<'a>(
    what: &'static str,
    predicate: &'a Value,
) -> Result<impl Fn(&str) -> Result<String, FormatError> + 'a, FormatError> {
    let obj = predicate
        .as_object()
        .ok_or_else(|| invalid(what, "predicate", "is not a JSON object"))?;
    Ok(move |name: &str| -> Result<String, FormatError> {
        let s = obj
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| FormatError::MissingField {
                what,
                field: name.into(),
            })?;
        if s.len() > MAX_TEXT {
            return Err(invalid(what, name, "is longer than 1024 bytes"));
        }
        Ok(s.to_string())
    })
}

fn check_digest(what: &'static str, digest: &str) -> Result<(), FormatError> {
    crate::digest::Digest::parse(digest)
        .map(|_| ())
        .map_err(|_| invalid(what, "digest", "is not sha256:<64 lowercase hex>"))
}

/// Builds a promotion predicate (checked by [`parse_promotion`]).
pub fn build_promotion(
    digest: &str,
    from: &str,
    to: &str,
    promoted_at: &str,
    promoted_by: &str,
) -> Result<Value, FormatError> {
    let v = serde_json::json!({
        "digest": digest, "from": from, "to": to, "promotedAt": promoted_at, "promotedBy": promoted_by,
    });
    parse_promotion(&v)?;
    Ok(v)
}

/// Parses a promotion predicate.
pub fn parse_promotion(predicate: &Value) -> Result<Promotion, FormatError> {
    const WHAT: &str = "promotion";
    let field = fields(WHAT, predicate)?;
    let p = Promotion {
        digest: field("digest")?,
        from: field("from")?,
        to: field("to")?,
        promoted_at: field("promotedAt")?,
        promoted_by: field("promotedBy")?,
    };
    check_digest(WHAT, &p.digest)?;
    check_env(&p.from)?;
    check_env(&p.to)?;
    if p.from == p.to {
        return Err(invalid(WHAT, "to", "is the same environment as from"));
    }
    Ok(p)
}

/// Builds a deployment record (checked by [`parse_deployment`]).
pub fn build_deployment(
    digest: &str,
    environment: &str,
    deployed_at: &str,
    deployed_by: &str,
    target: &str,
) -> Result<Value, FormatError> {
    let v = serde_json::json!({
        "digest": digest, "environment": environment, "deployedAt": deployed_at,
        "deployedBy": deployed_by, "target": target,
    });
    parse_deployment(&v)?;
    Ok(v)
}

/// Parses a deployment record.
pub fn parse_deployment(predicate: &Value) -> Result<Deployment, FormatError> {
    const WHAT: &str = "deployment record";
    let field = fields(WHAT, predicate)?;
    let d = Deployment {
        digest: field("digest")?,
        environment: field("environment")?,
        deployed_at: field("deployedAt")?,
        deployed_by: field("deployedBy")?,
        target: field("target")?,
    };
    check_digest(WHAT, &d.digest)?;
    check_env(&d.environment)?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let d = crate::digest::Digest::of(b"x").to_string();
        let v = build_promotion(&d, "staging", "production", "2026-11-27T10:00:00Z", "ci").unwrap();
        let p = parse_promotion(&v).unwrap();
        assert_eq!((p.from.as_str(), p.to.as_str()), ("staging", "production"));
        assert!(build_promotion(&d, "staging", "staging", "t", "ci").is_err());
        assert!(build_promotion("sha256:AB", "a", "b", "t", "ci").is_err());
        assert!(build_promotion(&d, "Prod", "b", "t", "ci").is_err());
        assert!(parse_promotion(&serde_json::json!({"digest": d})).is_err());
        let v = build_deployment(&d, "staging", "t", "ci", "host:/srv").unwrap();
        assert_eq!(parse_deployment(&v).unwrap().environment, "staging");
        assert!(build_deployment(&d, "", "t", "ci", "x").is_err());
        assert!(build_deployment(&d, "a", "t", &"x".repeat(2000), "x").is_err());
    }

    #[test]
    fn environment_names() {
        for ok in ["staging", "production", "eu-west.1", "a", "0"] {
            check_env(ok).unwrap();
        }
        for bad in [
            "",
            "-x",
            ".x",
            "Prod",
            "a b",
            "a/b",
            "../x",
            &"a".repeat(65),
        ] {
            assert!(check_env(bad).is_err(), "{bad:?}");
        }
    }
}
