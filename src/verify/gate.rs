//! The gate as one value: either "a signature by one of these keys" (`--key PUB...`) or a policy file
//! (`--policy FILE`). `deploy`, `rollback` and `promote` take a [`Gate`] and call [`Gate::check`] on the digest
//! they are about to act on; only an allowed verdict lets them go on.

use serde::Serialize;

use super::{TrustedKey, policy::Policy};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::store::Store;

/// What must hold for a digest to pass.
#[derive(Debug, Clone)]
pub enum Gate {
    /// At least one valid signature by one of these keys, and no revocation by any of them.
    Keys(Vec<TrustedKey>),
    /// The policy's rule for the repository (SPEC §6).
    Policy(Box<Policy>),
}

/// Why a digest passed: one line per check that held.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// `REPO@sha256:...` that was checked.
    pub reference: String,
    /// The digest that was checked.
    pub digest: Digest,
    /// The policy rule that applied (policy gates only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// What held, one line each.
    pub checks: Vec<String>,
}

impl Gate {
    /// The keys this gate trusts (for checking other signed statements, such as deployment records).
    pub fn trusted_keys(&self) -> Vec<TrustedKey> {
        match self {
            Gate::Keys(k) => k.clone(),
            Gate::Policy(p) => p.trusted_keys(),
        }
    }

    /// Checks `digest` (which `reference` resolved to; the check fetches nothing by tag). Returns the verdict when
    /// the digest passes, [`Error::Denied`] listing every unmet condition when it does not, and any other error
    /// when the evidence could not be read (never "passed" for something that could not be checked).
    pub async fn check(
        &self,
        store: &dyn Store,
        reference: &Reference,
        digest: &Digest,
        now: time::OffsetDateTime,
    ) -> Result<Verdict> {
        let pinned = reference.pinned(*digest);
        match self {
            Gate::Keys(keys) => {
                let report = super::verify_signatures(store, &pinned, keys).await?;
                if report.digest != *digest {
                    // cannot happen for a pinned reference; a store that answers otherwise is lying
                    return Err(Error::DigestMismatch {
                        what: pinned.to_string(),
                        expected: *digest,
                        actual: report.digest,
                    });
                }
                Ok(Verdict {
                    reference: report.reference,
                    digest: *digest,
                    rule: None,
                    checks: report
                        .verified
                        .iter()
                        .map(|v| format!("signature by {} ({})", v.key, &v.key_id[..12]))
                        .collect(),
                })
            }
            Gate::Policy(policy) => {
                let report = super::verify_policy(store, &pinned, policy, now).await?;
                if !report.decision.allowed {
                    return Err(Error::Denied {
                        subject: report.reference.clone(),
                        reasons: report.decision.reasons(),
                    });
                }
                Ok(Verdict {
                    reference: report.reference,
                    digest: *digest,
                    rule: report.decision.rule.clone(),
                    checks: report
                        .decision
                        .results
                        .iter()
                        .map(|r| format!("{}: {}", r.rule, r.found))
                        .collect(),
                })
            }
        }
    }
}
