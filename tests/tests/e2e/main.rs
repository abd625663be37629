//! Cross-crate scenarios, one test binary.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod app;
mod bad_input;
mod erpnext;
mod hub;
mod invariants;
mod mobile;
mod recording;
mod scenarios;
mod sim;
mod tidy;
mod tls;
mod world;
