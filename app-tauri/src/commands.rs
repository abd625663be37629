//! The commands the UI calls. Each one takes a single `args` value of a `shared::ipc` type, locks
//! the device, calls `app-tauri-core` and maps the error; edits then wake the sync task.
//! Every command runs off the main thread (`async`), so the window never waits on the database.

#![allow(
    clippy::needless_pass_by_value,
    reason = "Tauri hands a command its state and arguments by value"
)]

use std::sync::MutexGuard;
use std::time::Duration;

use app_tauri_core::device::{self, Device, DeviceError};
use app_tauri_core::views::parse_id;
use base64::Engine as _;
use shared::ids::JobId;
use shared::ipc::{
    AssignArgs, Board, BoardArgs, CheckInArgs, CommandError, ConflictView, DateRange, DeviceStatus,
    EquipmentMoveArgs, EquipmentView, ErrorKind, JobDetail, JobDraft, JobRef, JobSummary,
    JobTextArgs, LocationHit, LoginArgs, MaterialArgs, NetworkActArgs, NetworkActionView,
    NetworkArgs, NetworkPictureView, NetworkView, PhotoArgs, ResolveArgs, SearchArgs, Session,
    SetStatusArgs, SuggestionView,
};
use shared::model::JobStatus;
use shared::record::EntityKind;
use tauri::{Runtime, State};

use crate::AppState;

type Answer<T> = Result<T, CommandError>;

/// How long a login's requests may take.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long reading a customer's box may take (the ACS may ask the box itself).
const NETWORK_TIMEOUT: Duration = Duration::from_secs(45);

/// The commands, for `invoke_handler`.
pub fn handler<R: Runtime>() -> impl Fn(tauri::ipc::Invoke<R>) -> bool + Send + Sync + 'static {
    tauri::generate_handler![
        session_get,
        session_login,
        session_logout,
        login_link_take,
        status_get,
        sync_now,
        job_list,
        job_get,
        job_set_status,
        job_add_note,
        job_toggle_check,
        job_add_material,
        job_equipment,
        job_add_photo,
        job_sign,
        job_check_in,
        job_save,
        job_assign,
        job_suggest,
        equipment_search,
        location_search,
        board_get,
        conflict_list,
        conflict_resolve,
        network_get,
        network_act,
        network_picture,
    ]
}

fn lock(state: &AppState) -> MutexGuard<'_, Device> {
    // Every edit is one SQLite transaction: a panic elsewhere cannot leave the replica half-written.
    state
        .device
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn job_id(s: &str) -> Result<JobId, DeviceError> {
    Ok(JobId(parse_id(s)?))
}

/// Runs an edit, then answers with the job's fresh detail and wakes the sync.
/// The office's screens (board, job editor, suggestions, conflict resolution) refuse other roles.
fn office(d: &Device) -> Answer<()> {
    if d.role()?.is_office() {
        Ok(())
    } else {
        Err(CommandError::new(
            ErrorKind::Denied,
            "this is for the office (dispatchers and admins)",
        ))
    }
}

fn edit_job(
    state: &AppState,
    id: &str,
    f: impl FnOnce(&mut Device, JobId) -> Result<(), DeviceError>,
) -> Answer<JobDetail> {
    let job = job_id(id)?;
    let detail = {
        let mut d = lock(state);
        f(&mut d, job)?;
        d.job_detail(id)?
    };
    state.sync.poke();
    Ok(detail)
}

fn decode_base64(s: &str) -> Answer<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|_| CommandError::new(ErrorKind::Invalid, "the image is not valid base64"))
}

#[tauri::command(async)]
fn session_get(state: State<'_, AppState>) -> Answer<Option<Session>> {
    Ok(lock(&state).session().map(|mut s| {
        s.mobile = cfg!(mobile);
        s
    }))
}

/// The login link that opened the app before its screen could listen for `login-link`, once.
#[tauri::command]
fn login_link_take(state: State<'_, AppState>) -> Option<String> {
    state
        .pending_link
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
}

#[tauri::command]
async fn session_login(state: State<'_, AppState>, args: LoginArgs) -> Answer<Session> {
    let dev = std::sync::Arc::clone(&state.device);
    tauri::async_runtime::spawn_blocking(move || {
        device::login(&dev, &args.server, &args.credential, LOGIN_TIMEOUT)
    })
    .await
    .map_err(|e| CommandError::new(ErrorKind::Internal, e.to_string()))??;
    state.sync.session_changed();
    let mut s = lock(&state)
        .session()
        .ok_or_else(|| CommandError::new(ErrorKind::NotLoggedIn, "login did not complete"))?;
    s.mobile = cfg!(mobile);
    Ok(s)
}

#[tauri::command(async)]
fn session_logout(state: State<'_, AppState>) -> Answer<()> {
    lock(&state).logout()?;
    state.sync.session_changed();
    Ok(())
}

#[tauri::command(async)]
fn status_get(state: State<'_, AppState>) -> Answer<DeviceStatus> {
    Ok(lock(&state).status()?)
}

#[tauri::command]
async fn sync_now(state: State<'_, AppState>) -> Answer<DeviceStatus> {
    state.sync.sync_and_wait().await;
    Ok(lock(&state).status()?)
}

#[tauri::command(async)]
fn job_list(state: State<'_, AppState>, args: DateRange) -> Answer<Vec<JobSummary>> {
    Ok(lock(&state).job_list(&args.from, &args.to)?)
}

#[tauri::command(async)]
fn job_get(state: State<'_, AppState>, args: JobRef) -> Answer<JobDetail> {
    Ok(lock(&state).job_detail(&args.id)?)
}

#[tauri::command(async)]
fn job_set_status(state: State<'_, AppState>, args: SetStatusArgs) -> Answer<JobDetail> {
    let to: JobStatus = args
        .status
        .parse()
        .map_err(|e: String| CommandError::new(ErrorKind::Invalid, e))?;
    edit_job(&state, &args.id, |d, job| {
        d.replica_mut()?.set_job_status(job, to)?;
        Ok(())
    })
}

#[tauri::command(async)]
fn job_add_note(state: State<'_, AppState>, args: JobTextArgs) -> Answer<JobDetail> {
    edit_job(&state, &args.id, |d, job| {
        d.replica_mut()?.add_note(job, &args.text)?;
        Ok(())
    })
}

#[tauri::command(async)]
fn job_toggle_check(state: State<'_, AppState>, args: JobTextArgs) -> Answer<JobDetail> {
    edit_job(&state, &args.id, |d, job| {
        d.replica_mut()?.toggle_check(job, &args.text)?;
        Ok(())
    })
}

#[tauri::command(async)]
fn job_add_material(state: State<'_, AppState>, args: MaterialArgs) -> Answer<JobDetail> {
    edit_job(&state, &args.id, |d, job| {
        d.replica_mut()?
            .add_material(job, &args.item_code, args.quantity, &args.unit)?;
        Ok(())
    })
}

#[tauri::command(async)]
fn job_equipment(state: State<'_, AppState>, args: EquipmentMoveArgs) -> Answer<JobDetail> {
    edit_job(&state, &args.id, |d, job| {
        d.replica_mut()?.move_equipment(
            job,
            &args.equipment,
            &args.action,
            args.replaces.as_deref(),
        )?;
        Ok(())
    })
}

#[tauri::command(async)]
fn job_add_photo(state: State<'_, AppState>, args: PhotoArgs) -> Answer<JobDetail> {
    let bytes = decode_base64(&args.base64)?;
    edit_job(&state, &args.id, |d, _| {
        d.add_photo(&args.id, &bytes, args.caption.clone())?;
        Ok(())
    })
}

#[tauri::command(async)]
fn job_sign(state: State<'_, AppState>, args: PhotoArgs) -> Answer<JobDetail> {
    let bytes = decode_base64(&args.base64)?;
    let signer = args.caption.clone().unwrap_or_default();
    edit_job(&state, &args.id, |d, job| d.sign(job, &signer, &bytes))
}

#[tauri::command(async)]
fn job_check_in(state: State<'_, AppState>, args: CheckInArgs) -> Answer<JobDetail> {
    let position = args.lat.zip(args.lon);
    edit_job(&state, &args.id, |d, job| {
        d.replica_mut()?.check_in(job, position)?;
        Ok(())
    })
}

#[tauri::command(async)]
fn job_save(state: State<'_, AppState>, args: JobDraft) -> Answer<JobDetail> {
    let detail = {
        let mut d = lock(&state);
        office(&d)?;
        let id = d.replica_mut()?.save_job(&args)?;
        d.job_detail(&id.to_string())?
    };
    state.sync.poke();
    Ok(detail)
}

#[tauri::command(async)]
fn job_assign(state: State<'_, AppState>, args: AssignArgs) -> Answer<JobDetail> {
    office(&lock(&state))?;
    edit_job(&state, &args.id.clone(), |d, _| {
        d.replica_mut()?.assign(&args)?;
        Ok(())
    })
}

#[tauri::command(async)]
fn job_suggest(state: State<'_, AppState>, args: JobRef) -> Answer<Vec<SuggestionView>> {
    let job = job_id(&args.id)?;
    let d = lock(&state);
    office(&d)?;
    Ok(d.replica()?.suggestions(job).map_err(DeviceError::from)?)
}

#[tauri::command(async)]
fn equipment_search(state: State<'_, AppState>, args: SearchArgs) -> Answer<Vec<EquipmentView>> {
    Ok(lock(&state)
        .replica()?
        .equipment_search(&args.query, 20)
        .map_err(DeviceError::from)?)
}

/// The box behind a piece of equipment, read through the server (or the last reading kept).
#[tauri::command]
async fn network_get(state: State<'_, AppState>, args: NetworkArgs) -> Answer<NetworkView> {
    let dev = std::sync::Arc::clone(&state.device);
    Ok(tauri::async_runtime::spawn_blocking(move || {
        device::network_get(&dev, &args.equipment, NETWORK_TIMEOUT)
    })
    .await
    .map_err(|e| CommandError::new(ErrorKind::Internal, e.to_string()))??)
}

/// Refreshes part of a box or reboots it.
#[tauri::command]
async fn network_act(
    state: State<'_, AppState>,
    args: NetworkActArgs,
) -> Answer<NetworkActionView> {
    let dev = std::sync::Arc::clone(&state.device);
    Ok(tauri::async_runtime::spawn_blocking(move || {
        device::network_act(&dev, &args, NETWORK_TIMEOUT)
    })
    .await
    .map_err(|e| CommandError::new(ErrorKind::Internal, e.to_string()))??)
}

/// The access network's outages and the jobs behind them, for the office.
#[tauri::command]
async fn network_picture(state: State<'_, AppState>) -> Answer<NetworkPictureView> {
    office(&lock(&state))?;
    let dev = std::sync::Arc::clone(&state.device);
    Ok(
        tauri::async_runtime::spawn_blocking(move || {
            device::network_picture(&dev, NETWORK_TIMEOUT)
        })
        .await
        .map_err(|e| CommandError::new(ErrorKind::Internal, e.to_string()))??,
    )
}

#[tauri::command(async)]
fn location_search(state: State<'_, AppState>, args: SearchArgs) -> Answer<Vec<LocationHit>> {
    let d = lock(&state);
    office(&d)?;
    let hits = d
        .replica()?
        .search(&args.query, 20)
        .map_err(DeviceError::from)?;
    Ok(hits
        .into_iter()
        .filter(|h| h.kind == EntityKind::Location)
        .map(|h| LocationHit {
            id: h.id.to_string(),
            text: h.text,
        })
        .collect())
}

#[tauri::command(async)]
fn board_get(state: State<'_, AppState>, args: BoardArgs) -> Answer<Board> {
    let d = lock(&state);
    office(&d)?;
    let from = app_tauri_core::views::parse_date(&args.from).map_err(DeviceError::from)?;
    let to = app_tauri_core::views::parse_date(&args.to).map_err(DeviceError::from)?;
    Ok(d.replica()?
        .board(from, to, &args.filter)
        .map_err(DeviceError::from)?)
}

#[tauri::command(async)]
fn conflict_list(state: State<'_, AppState>) -> Answer<Vec<ConflictView>> {
    Ok(lock(&state)
        .replica()?
        .conflict_views()
        .map_err(DeviceError::from)?)
}

#[tauri::command(async)]
fn conflict_resolve(state: State<'_, AppState>, args: ResolveArgs) -> Answer<Vec<ConflictView>> {
    let list = {
        let mut d = lock(&state);
        office(&d)?;
        d.replica_mut()?
            .resolve_with(&args.doc, &args.field, &args.value)
            .map_err(DeviceError::from)?;
        d.replica()?.conflict_views().map_err(DeviceError::from)?
    };
    state.sync.poke();
    Ok(list)
}

#[cfg(test)]
mod tests;
