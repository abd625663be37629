//! Generates the app's permissions: one `allow-<command>` per command, so capabilities grant
//! exactly the commands a window may call and nothing else.

fn main() {
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
        ]),
    ))
    .expect("the Tauri build step failed (see the message above)");
}
