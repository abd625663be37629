//! `cargo xtask ui [--debug]`: builds the Yew UI into `app-ui/dist` for the Tauri shell, without
//! Trunk: `cargo build --target wasm32-unknown-unknown`, then `wasm-bindgen --target web` (the
//! CLI `.ci/setup` installs at the exact version of the `wasm-bindgen` crate), then the static
//! files beside it. `app-tauri` embeds `app-ui/dist` when it compiles, so build this first.

use std::process::Command;

use anyhow::{Context, Result, bail};
// The workspace root and target directory, as the app's test harness finds them.
pub(crate) use tests::app_driver::{target_dir, workspace as root};

pub(crate) fn build(release: bool) -> Result<()> {
    let root = root();
    let profile = if release { "release" } else { "debug" };
    let mut cargo = Command::new(env!("CARGO"));
    cargo.current_dir(&root).args([
        "build",
        "-p",
        "app-ui",
        "--target",
        "wasm32-unknown-unknown",
        "--locked",
    ]);
    if release {
        cargo.arg("--release");
    }
    let status = cargo.status().context("running cargo for the UI")?;
    if !status.success() {
        bail!("the UI did not compile");
    }
    let wasm = target_dir()
        .join("wasm32-unknown-unknown")
        .join(profile)
        .join("app-ui.wasm");
    let dist = root.join("app-ui/dist");
    std::fs::create_dir_all(&dist).context("creating app-ui/dist")?;
    let status = Command::new("wasm-bindgen")
        .args([
            "--target",
            "web",
            "--no-typescript",
            "--out-name",
            "app-ui",
            "--out-dir",
        ])
        .arg(&dist)
        .arg(&wasm)
        .status()
        .context("running wasm-bindgen (install it with `bash .ci/setup`)")?;
    if !status.success() {
        bail!(
            "wasm-bindgen failed (its version must equal the wasm-bindgen crate's: `bash .ci/setup` installs it)"
        );
    }
    for f in ["index.html", "boot.js", "style.css"] {
        std::fs::copy(root.join("app-ui/static").join(f), dist.join(f))
            .with_context(|| format!("copying app-ui/static/{f}"))?;
    }
    let size = std::fs::metadata(dist.join("app-ui_bg.wasm")).map_or(0, |m| m.len());
    println!("ui: app-ui/dist ready ({profile}, wasm {} KB)", size / 1024);
    Ok(())
}
