//! Cross-crate test support: realistic data sets, an in-process server, and the deterministic
//! sync simulation. The scenarios themselves live in `tests/e2e/`.

/// The demo data generator lives with the server (its `demo` command uses it).
pub use sync_server::demo as data;
pub mod app_driver;
pub mod frappe;
pub mod harness;
pub mod sim;
