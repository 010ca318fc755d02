//! Shared test support for integration tests (`mod common;`).
#![allow(dead_code)]

pub mod cli;
pub mod fake_registry;
pub mod fault_proxy;
pub mod registry;
