//! Cross-crate test support: realistic data sets, an in-process server, and the deterministic
//! sync simulation. The scenarios themselves live in `tests/e2e/`.

pub mod data;
pub mod harness;
pub mod sim;
