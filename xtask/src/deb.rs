//! `cargo xtask deb`: the desktop package, built offline by the Tauri bundler.
//!
//! Installs `tauri-cli` 2 from crates.io when it is missing (`cargo install`, a few minutes once),
//! builds the release UI bundle, then `cargo tauri build --bundles deb` in `app-tauri`. The
//! package lands in `$CARGO_TARGET_DIR/release/bundle/deb/`; install it with
//! `sudo apt install ./<file>.deb` and start it from the menu or with `app-tauri`.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::ui::{root, target_dir};

fn has_tauri_cli() -> bool {
    Command::new(env!("CARGO"))
        .args(["tauri", "--version"])
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(" 2."))
}

pub(crate) fn build() -> Result<()> {
    if !has_tauri_cli() {
        eprintln!("deb: installing tauri-cli 2 from crates.io (once)…");
        let status = Command::new(env!("CARGO"))
            .args(["install", "tauri-cli", "--locked", "--version", "^2"])
            .status()
            .context("running cargo install tauri-cli")?;
        if !status.success() {
            bail!("installing tauri-cli failed");
        }
    }
    crate::ui::build(true)?;
    let status = Command::new(env!("CARGO"))
        .current_dir(root().join("app-tauri"))
        .args(["tauri", "build", "--bundles", "deb", "--", "--locked"])
        .status()
        .context("running cargo tauri build")?;
    if !status.success() {
        bail!("the Tauri bundler failed");
    }
    let dir = target_dir().join("release/bundle/deb");
    let debs: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    let [deb] = debs.as_slice() else {
        bail!(
            "expected one .deb in {}, found {}",
            dir.display(),
            debs.len()
        );
    };
    println!("deb: {}", deb.display());
    println!("install it with: sudo apt install {}", deb.display());
    Ok(())
}
