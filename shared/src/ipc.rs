//! What crosses between the app's UI (`app-ui`, wasm) and its shell (`app-tauri`): command
//! names, their arguments and answers, event names, and the structured [`CommandError`].
//!
//! The answers are view models: flat, display-ready, serialisable data built from the replica by
//! `app-tauri-core`. The UI never sees Automerge documents or records; it renders these and asks
//! the shell to change things, and the shell answers with the fresh view.
//!
//! Ids cross as their text form (`DocId`'s hyphenated UUID) so the UI can use them as keys.

use serde::{Deserialize, Serialize};

use crate::dispatch::Reason;
use crate::ids::Author;
use crate::record::Scalar;

/// Command names, defined once for both sides.
pub mod cmd {
    pub const SESSION_GET: &str = "session_get";
    pub const SESSION_LOGIN: &str = "session_login";
    pub const SESSION_LOGOUT: &str = "session_logout";
    /// The login link the app was opened with, once (a link tapped while the app was closed).
    pub const LOGIN_LINK_TAKE: &str = "login_link_take";
    pub const STATUS_GET: &str = "status_get";
    pub const SYNC_NOW: &str = "sync_now";
    pub const JOB_LIST: &str = "job_list";
    pub const JOB_GET: &str = "job_get";
    pub const JOB_SET_STATUS: &str = "job_set_status";
    pub const JOB_ADD_NOTE: &str = "job_add_note";
    pub const JOB_TOGGLE_CHECK: &str = "job_toggle_check";
    pub const JOB_ADD_MATERIAL: &str = "job_add_material";
    pub const JOB_EQUIPMENT: &str = "job_equipment";
    pub const JOB_ADD_PHOTO: &str = "job_add_photo";
    pub const JOB_SIGN: &str = "job_sign";
    pub const JOB_CHECK_IN: &str = "job_check_in";
    pub const JOB_SAVE: &str = "job_save";
    pub const JOB_ASSIGN: &str = "job_assign";
    pub const JOB_SUGGEST: &str = "job_suggest";
    pub const EQUIPMENT_SEARCH: &str = "equipment_search";
    pub const LOCATION_SEARCH: &str = "location_search";
    pub const BOARD_GET: &str = "board_get";
    pub const CONFLICT_LIST: &str = "conflict_list";
    pub const CONFLICT_RESOLVE: &str = "conflict_resolve";
    /// The box behind a piece of equipment, as the ACS sees it.
    pub const NETWORK_GET: &str = "network_get";
    /// Refresh part of a box, or reboot it.
    pub const NETWORK_ACT: &str = "network_act";
    /// The access network's outages and the jobs behind them (the office).
    pub const NETWORK_PICTURE: &str = "network_picture";
}

/// Event names the shell emits.
pub mod event {
    /// Data on the device changed (a sync brought something, or another window edited).
    pub const DATA_CHANGED: &str = "data-changed";
    /// The sync state changed; the payload is a [`super::DeviceStatus`].
    pub const SYNC_STATUS: &str = "sync-status";
    /// A login link was opened (deep link); the payload is the URL.
    pub const LOGIN_LINK: &str = "login-link";
}

/// What kind of failure a command met; the UI matches on this, not on the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// No session on this device: show the login screen.
    NotLoggedIn,
    /// The input was refused; nothing changed. The message says why.
    Invalid,
    /// The role may not do this.
    Denied,
    /// The thing asked for is not on this device.
    NotFound,
    /// The server could not be reached. Local work is kept and synced later.
    Offline,
    /// The server refused (bad or expired login, app too old…).
    Server,
    /// The local database failed.
    Storage,
    /// A bug: the message is for the logs.
    Internal,
}

/// A command's failure, as the UI receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct CommandError {
    pub kind: ErrorKind,
    pub message: String,
}

impl CommandError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// Who is logged in on this device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub server: String,
    /// `technician`, `dispatcher` or `admin`.
    pub role: String,
    pub technician: Option<String>,
    pub display_name: String,
    /// Running on a phone or tablet (camera scanning and OS location through plugins).
    pub mobile: bool,
}

impl Session {
    pub fn is_office(&self) -> bool {
        self.role != "technician"
    }
}

/// `session_login` arguments: the server address and a pasted magic link (`fsm://login?token=…`)
/// or a staff token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginArgs {
    pub server: String,
    pub credential: String,
}

/// What is on the device and how sync is going.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStatus {
    pub documents: u64,
    pub jobs: u64,
    pub pending_changes: u64,
    pub conflicts: u64,
    pub rejections: u64,
    pub first_job_date: Option<String>,
    pub last_job_date: Option<String>,
    /// Unix milliseconds of the last complete sync.
    pub last_sync_ms: Option<i64>,
    pub last_error: Option<String>,
    pub syncing: bool,
    /// Whether the last attempt reached the server.
    pub online: bool,
    pub photos_waiting: u64,
}

/// A job in a list or on the board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSummary {
    pub id: String,
    pub date: String,
    pub start: Option<String>,
    pub duration_min: u32,
    pub status: String,
    pub priority: String,
    pub title: String,
    pub technician: Option<String>,
    pub customer: String,
    pub address: String,
    /// The address's town, shown on board cards.
    #[serde(default)]
    pub town: String,
    /// Open conflicts on this job.
    pub conflicts: u32,
}

/// `job_list` arguments: an inclusive date range (`YYYY-MM-DD`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DateRange {
    pub from: String,
    pub to: String,
}

/// A piece of equipment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EquipmentView {
    pub id: String,
    pub serial: String,
    pub mac: Option<String>,
    pub kind: String,
    pub status: String,
    pub model: Option<String>,
    /// The address where it is installed, if any.
    pub location: Option<String>,
}

/// A customer contact or the customer itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactView {
    pub name: String,
    pub phone: Option<String>,
    pub role: Option<String>,
}

/// A subscription at the job's location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionView {
    pub plan: String,
    pub status: String,
    pub monthly_price: String,
}

/// A job collection line (note, checklist item, material, equipment movement, photo).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineView {
    pub key: String,
    pub text: String,
    pub detail: Option<String>,
    pub done: bool,
}

/// Everything the job screen shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobDetail {
    pub summary: JobSummary,
    pub description: String,
    pub technician_name: Option<String>,
    pub customer_phone: Option<String>,
    pub customer_email: Option<String>,
    pub gps: Option<(String, String)>,
    pub olt_port: Option<String>,
    pub vlan: Option<u16>,
    pub network_notes: String,
    pub contacts: Vec<ContactView>,
    pub equipment: Vec<EquipmentView>,
    pub subscriptions: Vec<SubscriptionView>,
    pub history: Vec<JobSummary>,
    pub notes: Vec<LineView>,
    pub checklist: Vec<LineView>,
    pub materials: Vec<LineView>,
    pub equipment_moves: Vec<LineView>,
    /// `done` means uploaded to the server.
    pub photos: Vec<LineView>,
    pub signature: Option<String>,
    pub checked_in: Option<String>,
    pub time_on_site_min: Option<i64>,
    /// The statuses this user may move the job to now.
    pub next_statuses: Vec<String>,
    /// Values on this job a field's policy settled against someone (an office correction of
    /// the technician's quantity…), so whoever lost sees what was kept.
    pub overridden: Vec<ConflictView>,
}

/// Arguments naming a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRef {
    pub id: String,
}

/// `job_set_status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetStatusArgs {
    pub id: String,
    pub status: String,
}

/// `job_add_note`, `job_toggle_check` (text = item key), `job_sign` (text = signer's name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobTextArgs {
    pub id: String,
    pub text: String,
}

/// `job_add_material`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaterialArgs {
    pub id: String,
    pub item_code: String,
    pub quantity: i64,
    pub unit: String,
}

/// `job_equipment`: `install`, `swap` (needs `replaces`) or `return`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EquipmentMoveArgs {
    pub id: String,
    pub equipment: String,
    pub action: String,
    pub replaces: Option<String>,
}

/// `job_add_photo`: the image bytes, base64. `job_sign` takes the same with the signer's name as
/// the caption and the signature pad's PNG as the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhotoArgs {
    pub id: String,
    pub base64: String,
    pub caption: Option<String>,
}

/// `job_check_in`: a position from the OS or typed, or none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckInArgs {
    pub id: String,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
}

/// `job_save`: create (no id) or edit a job (dispatcher).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobDraft {
    pub id: Option<String>,
    /// A service location id; required when creating.
    pub location: Option<String>,
    pub title: String,
    pub description: String,
    pub date: String,
    pub start: Option<String>,
    pub duration_min: u32,
    pub priority: String,
}

/// `job_assign`: who and when (dispatcher). `technician: None` returns the job to the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignArgs {
    pub id: String,
    pub technician: Option<String>,
    pub date: String,
    pub start: Option<String>,
}

/// One technician's standing for a job, with the reasons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuggestionView {
    pub technician: String,
    pub name: String,
    pub eligible: bool,
    pub reasons: Vec<Reason>,
}

/// A technician on the board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TechnicianView {
    pub id: String,
    pub name: String,
    /// Shift on the board's first day (`HH:MM–HH:MM`), if working.
    pub shift: Option<String>,
}

/// The dispatcher's board for a date range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Board {
    pub from: String,
    pub to: String,
    pub technicians: Vec<TechnicianView>,
    /// Assigned jobs in the range (those the filter keeps).
    pub jobs: Vec<JobSummary>,
    /// Jobs with no technician, any date, oldest first (those the filter keeps).
    pub unassigned: Vec<JobSummary>,
    /// What the filter can pick from, read from every job of the range and the queue: towns,
    /// job types (as titles name them) and required skills.
    #[serde(default)]
    pub towns: Vec<String>,
    #[serde(default)]
    pub kinds: Vec<String>,
    #[serde(default)]
    pub skills: Vec<SkillOption>,
    /// How many jobs the filter hides.
    #[serde(default)]
    pub hidden: u32,
    /// The filter this board was read with (an answer for an older filter is dropped).
    #[serde(default)]
    pub filter: BoardFilter,
}

/// A skill the board's filter offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkillOption {
    pub id: String,
    pub label: String,
}

/// What the board shows; every part left empty shows everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardFilter {
    /// Words of the customer's name, address or phone number, or of the job's title.
    #[serde(default)]
    pub query: String,
    /// The statuses shown (`scheduled`, `en_route`…); none: all.
    #[serde(default)]
    pub statuses: Vec<String>,
    #[serde(default)]
    pub town: Option<String>,
    /// The job's type, as its title names it (« Installation fibre »).
    #[serde(default)]
    pub kind: Option<String>,
    /// A skill (tag id) the job requires.
    #[serde(default)]
    pub skill: Option<String>,
}

impl BoardFilter {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// `board_get` arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardArgs {
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub filter: BoardFilter,
}

/// `network_get`: a piece of equipment (its id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkArgs {
    pub equipment: String,
}

/// `network_act`: `hosts`, `wifi`, `optical`, `all` or `reboot` (which needs `confirm`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkActArgs {
    pub equipment: String,
    pub action: String,
    pub confirm: bool,
}

/// A box as the app can show it: the server's reading, or, offline, the last one kept on the
/// device (`offline`); `code` and `error` say why there is none (`acs_off`, `no_device`,
/// `not_your_equipment`…).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkView {
    pub equipment: String,
    pub reading: Option<crate::network::Reading>,
    pub offline: bool,
    pub code: Option<String>,
    pub error: Option<String>,
    /// The fibre line behind it as its OLT last saw it, when an OLT reports its ONU.
    #[serde(default)]
    pub line: Option<crate::network::LineView>,
}

/// `network_picture`: the access network as dispatchers see it, or why there is none (`code`
/// `olts_off` when no OLT is configured, `offline`…).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkPictureView {
    pub picture: Option<crate::network::NetworkPicture>,
    pub code: Option<String>,
    pub error: Option<String>,
}

/// What an action did (`done`, `queued`, `faulted`, `unreachable`) and the box afterwards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkActionView {
    pub action: String,
    pub outcome: String,
    pub message: String,
    pub view: NetworkView,
}

/// `equipment_search`: a serial or MAC prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchArgs {
    pub query: String,
}

/// One concurrent value in a conflict, typed: resolving with it writes exactly this value back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConflictValue {
    pub value: Scalar,
    /// Who wrote it, when known.
    pub author: Option<Author>,
    /// What the value names when it is a document on the device (the twin of a duplicate: its
    /// serial and where it is).
    pub label: Option<String>,
}

/// An inbox entry: an open conflict a dispatcher decides, or a value a field's policy settled
/// against someone (`settled`), listed so whoever lost sees what was kept instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConflictView {
    pub doc: String,
    /// What the document is (a job's title, a customer's name…).
    pub label: String,
    /// `status`, or `materials[<item>].quantity` for a collection item's field.
    pub field: String,
    pub settled: bool,
    pub shown: Scalar,
    pub values: Vec<ConflictValue>,
}

/// `conflict_resolve`: keep `value` for `field` of `doc` (a dispatcher's decision, or the
/// acknowledgement of an overridden value by keeping the value shown).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolveArgs {
    pub doc: String,
    pub field: String,
    pub value: Scalar,
}

/// A service location matching a search (for a new job).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationHit {
    pub id: String,
    pub text: String,
}
