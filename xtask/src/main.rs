//! Project automation.
//!
//! * `cargo xtask bench core` — replica and sync-core benchmarks (release build), one
//!   `name: value unit` line per figure.
//! * `cargo xtask bench server` — sync-server figures: merge throughput, reconnect storm, initial
//!   sync CPU, memory (release build, server in a child process over real HTTP).
//! * `cargo xtask bench app` — the real app (release) under Xvfb through tauri-driver: cold start
//!   to 300 jobs listed, job open, equipment search.
//! * `cargo xtask bench hub` — the webhook inbox: signed events from 64 concurrent senders over
//!   real HTTP, stored and synced before each answer (release build, server in a child process).
//! * `cargo xtask ui [--debug]` — builds the Yew UI into `app-ui/dist` (wasm + wasm-bindgen).
//! * `cargo xtask deb` — the desktop `.deb` through the Tauri bundler (installs `tauri-cli` once).
//! * `cargo xtask demo` — runs what exists of the product on its embedded default: an in-process
//!   sync server with a generated Québec data set, a technician and a dispatcher replica on disk.

// A command-line tool: printing its figures and messages is its job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

mod bench;
mod bench_app;
mod bench_erp;
mod bench_hub;
mod bench_network;
mod bench_server;
mod deb;
mod demo;
mod ui;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["bench", "core"] => bench::core(),
        ["bench", "server"] => bench_server::run(),
        ["bench", "app"] => bench_app::run(),
        ["bench", "hub"] => bench_hub::run(),
        ["bench", "network"] => bench_network::run(),
        ["bench-server-child", dir, port] => bench_server::child(dir, port),
        ["bench", area] => Err(anyhow::anyhow!(
            "unknown bench area `{area}` (available: core, server, app, hub, network)"
        )),
        ["bench-client", frames] => bench::client_child(frames),
        ["demo"] => demo::run(),
        ["deb"] => deb::build(),
        ["ui"] => ui::build(true),
        ["ui", "--debug"] => ui::build(false),
        _ => Err(anyhow::anyhow!(
            "usage: cargo xtask bench core|server|app|hub|network | cargo xtask ui [--debug] | cargo xtask deb | cargo xtask demo"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
