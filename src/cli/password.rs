//! Key passwords: `SEALPACK_PASSWORD`, else `COSIGN_PASSWORD` (set, even to the empty string, means explicit),
//! else a prompt on the terminal. Never a command-line flag.

use std::io::IsTerminal;

use sealpack::keys::KeyError;
use sealpack::{Error, Result};
use zeroize::Zeroizing;

fn from_env() -> Option<Zeroizing<Vec<u8>>> {
    ["SEALPACK_PASSWORD", "COSIGN_PASSWORD"]
        .iter()
        .find_map(std::env::var_os)
        .map(|v| Zeroizing::new(v.into_encoded_bytes()))
}

fn prompt(label: &str) -> std::io::Result<Zeroizing<Vec<u8>>> {
    rpassword::prompt_password(label).map(|s| Zeroizing::new(s.into_bytes()))
}

fn terminal() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// The password of an existing encrypted key (called only for encrypted keys).
pub fn for_existing_key() -> std::result::Result<Zeroizing<Vec<u8>>, KeyError> {
    if let Some(p) = from_env() {
        return Ok(p);
    }
    if !terminal() {
        return Err(KeyError::PasswordUnavailable {
            reason: "no terminal to ask on: set SEALPACK_PASSWORD (or COSIGN_PASSWORD)".into(),
        });
    }
    prompt("Enter password for private key: ").map_err(|e| KeyError::PasswordUnavailable {
        reason: e.to_string(),
    })
}

/// The password for a new key: from the environment (an empty value is allowed there, as an explicit choice),
/// else asked twice on the terminal (an empty answer is refused).
pub fn for_new_key() -> Result<Zeroizing<Vec<u8>>> {
    if let Some(p) = from_env() {
        return Ok(p);
    }
    if !terminal() {
        return Err(Error::usage_hint(
            "no password for the new key and no terminal to ask on",
            "set SEALPACK_PASSWORD (or COSIGN_PASSWORD); an empty value makes a key with an empty password",
        ));
    }
    let io = |e: std::io::Error| Error::io("reading the password from", "the terminal", e);
    let first = prompt("Enter password for private key: ").map_err(io)?;
    if first.is_empty() {
        return Err(Error::usage_hint(
            "refusing an empty password typed at the prompt",
            "type a password, or set SEALPACK_PASSWORD='' to choose an empty one explicitly",
        ));
    }
    let second = prompt("Enter password for private key again: ").map_err(io)?;
    if *first != *second {
        return Err(Error::usage("the two passwords differ; no key was written"));
    }
    Ok(first)
}
