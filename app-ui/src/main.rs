//! The app's UI: a Yew single-page app compiled to wasm and served by the Tauri shell.
//!
//! State lives in one reducer ([`state`], plain Rust, tested natively); pages render it and
//! dispatch actions; [`ipc`] is the only module that calls the shell. Strings come from [`i18n`]
//! (French by default, English available).

#![allow(
    unreachable_pub,
    reason = "a binary crate: `pub` marks what its modules share"
)]
#![cfg_attr(
    not(target_arch = "wasm32"),
    allow(
        dead_code,
        reason = "natively only the reducers and helpers run, under test"
    )
)]

mod app;
mod i18n;
mod ipc;
mod pages;
mod state;

fn main() {
    #[cfg(target_arch = "wasm32")]
    yew::Renderer::<app::App>::new().render();
}
