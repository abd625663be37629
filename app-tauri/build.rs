//! Generates the app's permissions: one `allow-<command>` per command, so capabilities grant
//! exactly the commands a window may call and nothing else.

use std::io::Write;

fn main() {
    // The shell embeds the UI bundle at compile time; without it Tauri's macro fails deep inside
    // generated code. Say what to run instead (`cargo::error` fails the build with this line).
    let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../app-ui/dist/index.html");
    let mut out = std::io::stdout();
    let _ = writeln!(out, "cargo::rerun-if-changed=../app-ui/dist/index.html");
    if !dist.exists() {
        let _ = writeln!(
            out,
            "cargo::error=app-ui/dist is missing: build the UI bundle first with `cargo xtask ui` (the app embeds it)"
        );
        return;
    }
    tauri_build::try_build(tauri_build::Attributes::new().app_manifest(
        tauri_build::AppManifest::new().commands(&[
            "session_get",
            "session_login",
            "session_logout",
            "login_link_take",
            "status_get",
            "sync_now",
            "job_list",
            "job_get",
            "job_set_status",
            "job_add_note",
            "job_toggle_check",
            "job_add_material",
            "job_equipment",
            "job_add_photo",
            "job_sign",
            "job_check_in",
            "job_save",
            "job_assign",
            "job_suggest",
            "equipment_search",
            "location_search",
            "board_get",
            "conflict_list",
            "conflict_resolve",
            "network_get",
            "network_act",
            "network_picture",
        ]),
    ))
    .expect("the Tauri build step failed (see the message above)");
}
