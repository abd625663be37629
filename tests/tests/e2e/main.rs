//! Cross-crate scenarios, one test binary.

mod bad_input;
mod sim;
mod tidy;
