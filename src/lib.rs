//! sealpack: build once, deploy the same bytes many times.
//!
//! The library behind the `sealpack` command: push build artifacts to any OCI registry (or an OCI image layout
//! folder) as content-addressed blobs, pull them back with every digest checked, and — in later modules — sign,
//! attest, verify and deploy them. Data flows one way:
//! `artifact -> store -> oci / digest / reference`. Nothing here prints or exits; errors are [`Error`] values whose
//! [`ErrorKind`] decides the exit code.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod artifact;
pub mod cache;
pub mod deploy;
pub mod digest;
pub mod error;
pub mod formats;
pub mod gc;
pub mod keys;
pub mod oci;
pub mod provenance;
pub mod reference;
pub mod sign;
pub mod store;
pub mod trace;
pub mod verify;

pub use digest::Digest;
pub use error::{Error, ErrorKind, Result};
pub use reference::Reference;
