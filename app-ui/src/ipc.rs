//! The only place that talks to the shell: `window.__TAURI__.core.invoke` for commands and
//! `window.__TAURI__.event.listen` for events (`app.withGlobalTauri` exposes them).
//!
//! Every command takes one argument named `args`, so the JSON the shell deserializes is exactly
//! the `shared::ipc` type, and every failure comes back as a [`CommandError`].

use serde::Serialize;
use serde::de::DeserializeOwned;
use shared::ipc::{
    AssignArgs, Board, BoardArgs, BoardFilter, CheckInArgs, CommandError, ConflictView, DateRange,
    DeviceStatus, EquipmentMoveArgs, EquipmentView, ErrorKind, JobDetail, JobDraft, JobRef,
    JobSummary, JobTextArgs, LocationHit, LoginArgs, MaterialArgs, NetworkActArgs,
    NetworkActionView, NetworkArgs, NetworkPictureView, NetworkView, PhotoArgs, ResolveArgs,
    SearchArgs, Session, SetStatusArgs, SuggestionView, cmd,
};
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = ["window", "__TAURI__", "core"], js_name = invoke, catch)]
    async fn tauri_invoke(cmd: &str, args: JsValue) -> Result<JsValue, JsValue>;

    #[wasm_bindgen(js_namespace = ["window", "__TAURI__", "event"], js_name = listen, catch)]
    async fn tauri_listen(
        event: &str,
        handler: &Closure<dyn FnMut(JsValue)>,
    ) -> Result<JsValue, JsValue>;
}

fn internal(e: impl std::fmt::Display) -> CommandError {
    CommandError::new(ErrorKind::Internal, e.to_string())
}

async fn call<A: Serialize, T: DeserializeOwned>(name: &str, args: &A) -> Result<T, CommandError> {
    #[derive(Serialize)]
    struct Wrapped<'a, A> {
        args: &'a A,
    }
    let ser = serde_wasm_bindgen::Serializer::json_compatible();
    let js = Wrapped { args }.serialize(&ser).map_err(internal)?;
    match tauri_invoke(name, js).await {
        Ok(v) => serde_wasm_bindgen::from_value(v).map_err(internal),
        Err(e) => Err(serde_wasm_bindgen::from_value::<CommandError>(e.clone())
            .unwrap_or_else(|_| internal(e.as_string().unwrap_or_else(|| format!("{e:?}"))))),
    }
}

/// Scans a barcode or QR code with the camera (mobile only: the barcode-scanner plugin).
pub async fn scan() -> Result<String, CommandError> {
    #[derive(Serialize)]
    struct Options {
        windowed: bool,
        formats: [&'static str; 0],
    }
    #[derive(serde::Deserialize)]
    struct Scanned {
        content: String,
    }
    let ser = serde_wasm_bindgen::Serializer::json_compatible();
    let js = Options {
        windowed: false,
        formats: [],
    }
    .serialize(&ser)
    .map_err(internal)?;
    let v = tauri_invoke("plugin:barcode-scanner|scan", js)
        .await
        .map_err(|e| internal(e.as_string().unwrap_or_else(|| "scan failed".into())))?;
    serde_wasm_bindgen::from_value::<Scanned>(v)
        .map(|s| s.content)
        .map_err(internal)
}

/// Calls `f` with each payload of event `name`, for the life of the page.
pub fn listen(name: &'static str, f: impl Fn(JsValue) + 'static) {
    let handler = Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
        let payload =
            js_sys::Reflect::get(&event, &JsValue::from_str("payload")).unwrap_or(JsValue::NULL);
        f(payload);
    });
    wasm_bindgen_futures::spawn_local(async move {
        // The listener lives as long as the page: the closure is leaked on purpose.
        if tauri_listen(name, &handler).await.is_ok() {
            handler.forget();
        }
    });
}

/// Reads an event payload.
pub fn payload<T: DeserializeOwned>(v: JsValue) -> Option<T> {
    serde_wasm_bindgen::from_value(v).ok()
}

pub async fn session_get() -> Result<Option<Session>, CommandError> {
    call(cmd::SESSION_GET, &()).await
}
pub async fn login_link_take() -> Result<Option<String>, CommandError> {
    call(cmd::LOGIN_LINK_TAKE, &()).await
}
pub async fn session_login(args: LoginArgs) -> Result<Session, CommandError> {
    call(cmd::SESSION_LOGIN, &args).await
}
pub async fn session_logout() -> Result<(), CommandError> {
    call(cmd::SESSION_LOGOUT, &()).await
}
pub async fn status_get() -> Result<DeviceStatus, CommandError> {
    call(cmd::STATUS_GET, &()).await
}
pub async fn sync_now() -> Result<DeviceStatus, CommandError> {
    call(cmd::SYNC_NOW, &()).await
}
pub async fn job_list(from: String, to: String) -> Result<Vec<JobSummary>, CommandError> {
    call(cmd::JOB_LIST, &DateRange { from, to }).await
}
pub async fn job_get(id: String) -> Result<JobDetail, CommandError> {
    call(cmd::JOB_GET, &JobRef { id }).await
}
pub async fn job_set_status(id: String, status: String) -> Result<JobDetail, CommandError> {
    call(cmd::JOB_SET_STATUS, &SetStatusArgs { id, status }).await
}
pub async fn job_add_note(id: String, text: String) -> Result<JobDetail, CommandError> {
    call(cmd::JOB_ADD_NOTE, &JobTextArgs { id, text }).await
}
pub async fn job_toggle_check(id: String, key: String) -> Result<JobDetail, CommandError> {
    call(cmd::JOB_TOGGLE_CHECK, &JobTextArgs { id, text: key }).await
}
pub async fn job_add_material(args: MaterialArgs) -> Result<JobDetail, CommandError> {
    call(cmd::JOB_ADD_MATERIAL, &args).await
}
pub async fn job_equipment(args: EquipmentMoveArgs) -> Result<JobDetail, CommandError> {
    call(cmd::JOB_EQUIPMENT, &args).await
}
pub async fn job_add_photo(args: PhotoArgs) -> Result<JobDetail, CommandError> {
    call(cmd::JOB_ADD_PHOTO, &args).await
}
pub async fn job_sign(args: PhotoArgs) -> Result<JobDetail, CommandError> {
    call(cmd::JOB_SIGN, &args).await
}
pub async fn job_check_in(args: CheckInArgs) -> Result<JobDetail, CommandError> {
    call(cmd::JOB_CHECK_IN, &args).await
}
pub async fn job_save(draft: JobDraft) -> Result<JobDetail, CommandError> {
    call(cmd::JOB_SAVE, &draft).await
}
pub async fn job_assign(args: AssignArgs) -> Result<JobDetail, CommandError> {
    call(cmd::JOB_ASSIGN, &args).await
}
pub async fn job_suggest(id: String) -> Result<Vec<SuggestionView>, CommandError> {
    call(cmd::JOB_SUGGEST, &JobRef { id }).await
}
pub async fn equipment_search(query: String) -> Result<Vec<EquipmentView>, CommandError> {
    call(cmd::EQUIPMENT_SEARCH, &SearchArgs { query }).await
}
pub async fn network_get(equipment: String) -> Result<NetworkView, CommandError> {
    call(cmd::NETWORK_GET, &NetworkArgs { equipment }).await
}
pub async fn network_act(args: NetworkActArgs) -> Result<NetworkActionView, CommandError> {
    call(cmd::NETWORK_ACT, &args).await
}
pub async fn network_picture() -> Result<NetworkPictureView, CommandError> {
    call(cmd::NETWORK_PICTURE, &()).await
}
pub async fn location_search(query: String) -> Result<Vec<LocationHit>, CommandError> {
    call(cmd::LOCATION_SEARCH, &SearchArgs { query }).await
}
pub async fn board_get(
    from: String,
    to: String,
    filter: BoardFilter,
) -> Result<Board, CommandError> {
    call(cmd::BOARD_GET, &BoardArgs { from, to, filter }).await
}
pub async fn conflict_list() -> Result<Vec<ConflictView>, CommandError> {
    call(cmd::CONFLICT_LIST, &()).await
}
pub async fn conflict_resolve(args: ResolveArgs) -> Result<Vec<ConflictView>, CommandError> {
    call(cmd::CONFLICT_RESOLVE, &args).await
}
