//! The app's device state: who is logged in, the replica for that login, and how sync is going.
//!
//! The shell holds one [`Device`] behind a mutex. Commands lock it briefly to read or edit the
//! replica; [`sync_shared`] locks it only to build a request and to apply an answer, never while
//! a request is on the network, so the screens stay responsive during a slow sync.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use shared::clock::Clock;
use shared::ids::{Author, DeviceId, DocId, JobId, Role, TechnicianId};
use shared::ipc::{self, CommandError, DeviceStatus, ErrorKind};
use shared::model::{DispatchJob, Photo};

use crate::secrets::{SecretError, SecretStore};
use crate::{Replica, ReplicaError, SyncReport, Transport, TransportError};

/// The device's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> shared::clock::Millis {
        // The one place the app reads the wall clock.
        #[allow(clippy::disallowed_methods, reason = "the app's clock source")]
        let now = std::time::SystemTime::now();
        let ms = now
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        shared::clock::Millis(i64::try_from(ms).unwrap_or(i64::MAX))
    }
}

/// What a device operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("not logged in")]
    NotLoggedIn,
    #[error("{0}")]
    BadCredential(String),
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("file error: {0}")]
    Io(#[from] std::io::Error),
}

impl From<ReplicaError> for CommandError {
    fn from(e: ReplicaError) -> Self {
        DeviceError::Replica(e).into()
    }
}

impl From<DeviceError> for CommandError {
    fn from(e: DeviceError) -> Self {
        let kind = match &e {
            DeviceError::NotLoggedIn => ErrorKind::NotLoggedIn,
            DeviceError::BadCredential(_) => ErrorKind::Invalid,
            DeviceError::Replica(r) => match r {
                ReplicaError::NotFound { .. } => ErrorKind::NotFound,
                ReplicaError::Invalid(_) | ReplicaError::Exists(_) => ErrorKind::Invalid,
                ReplicaError::Denied(_) => ErrorKind::Denied,
                ReplicaError::Db(_) | ReplicaError::Corrupt { .. } => ErrorKind::Storage,
                ReplicaError::BadSyncData(_) => ErrorKind::Server,
            },
            DeviceError::Transport(t) => match t {
                TransportError::Unreachable(_) => ErrorKind::Offline,
                TransportError::Insecure(_) => ErrorKind::Server,
                TransportError::Replica(_) => ErrorKind::Storage,
                _ => ErrorKind::Server,
            },
            DeviceError::Secret(_) | DeviceError::Io(_) => ErrorKind::Storage,
        };
        CommandError::new(kind, e.to_string())
    }
}

/// A login as saved (sealed) on the device.
#[derive(Clone, Serialize, Deserialize)]
pub struct Credentials {
    pub server: String,
    pub token: String,
    pub role: Role,
    pub technician: Option<TechnicianId>,
    pub device: DeviceId,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("server", &self.server)
            .field("role", &self.role)
            .field("technician", &self.technician)
            .field("token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// The claims the app reads from its session token (it cannot verify them; the server does).
#[derive(Deserialize)]
struct Claims {
    sub: String,
    role: Role,
    tech: Option<String>,
    kind: Option<String>,
}

/// Reads a token's claims without verifying its signature.
fn claims(token: &str) -> Result<Claims, DeviceError> {
    let bad = || DeviceError::BadCredential("this is not a login link or token".into());
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| bad())?;
    serde_json::from_slice(&bytes).map_err(|_| bad())
}

/// What the user pasted: a magic link (or its bare token) to exchange, or a session token.
#[derive(Debug, PartialEq, Eq)]
pub enum Credential {
    Magic(String),
    Session(String),
}

/// Understands a pasted login: `fsm://login?token=…`, any URL with `token=…`, or a bare token.
pub fn parse_credential(input: &str) -> Result<Credential, DeviceError> {
    let input = input.trim();
    let token = match input.split_once("token=") {
        Some((_, rest)) => rest.split('&').next().unwrap_or_default(),
        None => input,
    };
    let c = claims(token)?;
    match c.kind.as_deref() {
        Some("magic") => Ok(Credential::Magic(token.to_owned())),
        _ if c.sub == "magic" => Ok(Credential::Magic(token.to_owned())),
        _ => Ok(Credential::Session(token.to_owned())),
    }
}

/// Checks and normalizes a server address typed by the user.
pub fn parse_server(input: &str, allow_plain_http: bool) -> Result<String, DeviceError> {
    let s = input.trim().trim_end_matches('/');
    let (plain, rest) = match (s.strip_prefix("https://"), s.strip_prefix("http://")) {
        (Some(rest), _) => (false, rest),
        (None, Some(rest)) => (true, rest),
        (None, None) => {
            return Err(DeviceError::BadCredential(
                "the server address must start with https://".into(),
            ));
        }
    };
    let host = host_of(rest).ok_or_else(|| {
        DeviceError::BadCredential("the server address is not a valid address".into())
    })?;
    if plain && !allow_plain_http && !is_loopback(host) {
        return Err(DeviceError::BadCredential(
            "plain http:// is refused: your session and your customers' data would cross the \
             network unencrypted. Use the server's https:// address (http:// works only to this \
             device itself, or with the development setting)"
                .into(),
        ));
    }
    Ok(s.to_owned())
}

/// The host of `authority[/path]`, without port; `None` if there is none or it holds credentials
/// or spaces.
fn host_of(rest: &str) -> Option<&str> {
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.is_empty() || authority.contains(['@', ' ', '\t']) {
        return None;
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.split(':').next()?,
    };
    (!host.is_empty()).then_some(host)
}

/// Whether a host names this device itself (nothing crosses a network).
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// How the app reaches its server. HTTPS is verified against the platform's trust store, plus a
/// private deployment's CA bundle when one is configured; plain HTTP only to this device itself,
/// unless the development setting allows it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct NetSettings {
    /// PEM certificates trusted besides the platform's.
    pub ca_pem: Option<Vec<u8>>,
    /// Development only: allow `http://` to other machines.
    pub allow_plain_http: bool,
}

impl std::fmt::Debug for NetSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetSettings")
            .field("ca_pem", &self.ca_pem.as_ref().map(Vec::len))
            .field("allow_plain_http", &self.allow_plain_http)
            .finish()
    }
}

/// How sync is going, for the status indicator.
#[derive(Debug, Clone, Default)]
struct SyncState {
    last_sync_ms: Option<i64>,
    last_error: Option<String>,
    syncing: bool,
    online: bool,
}

struct Active {
    creds: Credentials,
    replica: Replica,
}

/// The logged-in device.
pub struct Device {
    dir: PathBuf,
    clock: Arc<dyn Clock>,
    net: NetSettings,
    secrets: SecretStore,
    active: Option<Active>,
    sync: SyncState,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("dir", &self.dir)
            .field("creds", &self.active.as_ref().map(|a| &a.creds))
            .finish_non_exhaustive()
    }
}

impl Device {
    /// Opens the device state in `dir`, logged in if a login was saved.
    pub fn open(dir: &Path, clock: Arc<dyn Clock>) -> Result<Self, DeviceError> {
        std::fs::create_dir_all(dir)?;
        // The replica holds customers' names, addresses and phone numbers: the folder is the
        // user's alone (the session key beside it is `0600` too).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let secrets = SecretStore::new(dir);
        let mut device = Self {
            dir: dir.to_owned(),
            clock,
            net: NetSettings::default(),
            secrets,
            active: None,
            sync: SyncState::default(),
        };
        if let Some(bytes) = device.secrets.load()? {
            let creds: Credentials = serde_json::from_slice(&bytes)
                .map_err(|_| DeviceError::Secret(SecretError::Unreadable))?;
            device.activate(creds)?;
        }
        Ok(device)
    }

    /// Sets how the server is reached (a private CA, the development setting). The saved
    /// login's address is checked again at each sync.
    pub fn set_net(&mut self, net: NetSettings) {
        self.net = net;
    }

    pub fn net(&self) -> &NetSettings {
        &self.net
    }

    fn activate(&mut self, creds: Credentials) -> Result<(), DeviceError> {
        let path = self.dir.join(format!("replica-{}.sqlite", creds.device));
        let mut replica = Replica::open(
            &path,
            Author::new(creds.role, creds.device),
            Arc::clone(&self.clock),
        )?;
        replica.set_technician(creds.technician);
        self.active = Some(Active { creds, replica });
        Ok(())
    }

    /// A device id for a magic-link exchange: kept across logins on this install.
    pub fn install_id(&self) -> Result<DeviceId, DeviceError> {
        let path = self.dir.join("install-id");
        if let Ok(s) = std::fs::read_to_string(&path)
            && let Ok(id) = s.trim().parse::<DocId>()
        {
            return Ok(DeviceId(id));
        }
        let mut r = [0u8; 10];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut r);
        let id = DocId::new_v7(self.clock.now(), r);
        std::fs::write(&path, id.to_string())?;
        Ok(DeviceId(id))
    }

    /// Logs in with a session token (already exchanged if it came from a magic link). The login
    /// is saved only once it is known to be well formed; the caller syncs next, which proves it.
    pub fn login_with_token(&mut self, server: &str, token: &str) -> Result<(), DeviceError> {
        let server = parse_server(server, self.net.allow_plain_http)?;
        let c = claims(token)?;
        if c.kind.as_deref() == Some("magic") {
            return Err(DeviceError::BadCredential(
                "a login link must be exchanged first".into(),
            ));
        }
        let device = c
            .sub
            .parse::<DocId>()
            .map(DeviceId)
            .map_err(|_| DeviceError::BadCredential("the token names no device".into()))?;
        let technician = c
            .tech
            .map(|t| t.parse::<TechnicianId>())
            .transpose()
            .map_err(|_| DeviceError::BadCredential("the token names no technician".into()))?;
        if c.role == Role::Technician && technician.is_none() {
            return Err(DeviceError::BadCredential(
                "a technician token must name its technician".into(),
            ));
        }
        let creds = Credentials {
            server,
            token: token.to_owned(),
            role: c.role,
            technician,
            device,
        };
        self.activate(creds.clone())?;
        self.secrets.save(
            &serde_json::to_vec(&creds).map_err(|e| DeviceError::BadCredential(e.to_string()))?,
        )?;
        self.sync = SyncState::default();
        Ok(())
    }

    /// Forgets the login. The replica file stays, so logging in again on this device resumes it
    /// with nothing lost (changes not yet synced included).
    pub fn logout(&mut self) -> Result<(), DeviceError> {
        self.secrets.clear()?;
        self.active = None;
        self.sync = SyncState::default();
        Ok(())
    }

    pub fn credentials(&self) -> Option<&Credentials> {
        self.active.as_ref().map(|a| &a.creds)
    }

    /// Who is logged in, for the UI.
    pub fn session(&self) -> Option<ipc::Session> {
        let a = self.active.as_ref()?;
        let display_name = match a.creds.technician {
            Some(t) => a
                .replica
                .entity(t.doc())
                .ok()
                .flatten()
                .and_then(|e| match e {
                    shared::model::AnyEntity::Technician(t) => Some(t.name.to_string()),
                    _ => None,
                })
                .unwrap_or_else(|| "technician".into()),
            None => format!("{:?}", a.creds.role).to_lowercase(),
        };
        Some(ipc::Session {
            server: a.creds.server.clone(),
            role: format!("{:?}", a.creds.role).to_lowercase(),
            technician: a.creds.technician.map(|t| t.to_string()),
            display_name,
            mobile: false,
        })
    }

    pub fn replica(&self) -> Result<&Replica, DeviceError> {
        self.active
            .as_ref()
            .map(|a| &a.replica)
            .ok_or(DeviceError::NotLoggedIn)
    }

    pub fn replica_mut(&mut self) -> Result<&mut Replica, DeviceError> {
        self.active
            .as_mut()
            .map(|a| &mut a.replica)
            .ok_or(DeviceError::NotLoggedIn)
    }

    /// The logged-in role.
    pub fn role(&self) -> Result<Role, DeviceError> {
        Ok(self.credentials().ok_or(DeviceError::NotLoggedIn)?.role)
    }

    /// The jobs list: a technician's own, everyone's for the office.
    pub fn job_list(&self, from: &str, to: &str) -> Result<Vec<ipc::JobSummary>, DeviceError> {
        let creds = self.credentials().ok_or(DeviceError::NotLoggedIn)?;
        let (from, to) = (
            crate::views::parse_date(from)?,
            crate::views::parse_date(to)?,
        );
        Ok(self.replica()?.job_summaries(from, to, creds.technician)?)
    }

    pub fn job_detail(&self, id: &str) -> Result<ipc::JobDetail, DeviceError> {
        let id = JobId(crate::views::parse_id(id)?);
        Ok(self.replica()?.job_detail(id, self.role()?)?)
    }

    /// Status for the indicator.
    pub fn status(&self) -> Result<DeviceStatus, DeviceError> {
        let Some(a) = &self.active else {
            return Ok(DeviceStatus::default());
        };
        let s = a.replica.status()?;
        Ok(DeviceStatus {
            documents: s.documents,
            jobs: s.jobs,
            pending_changes: s.pending_changes,
            conflicts: s.conflicts,
            rejections: s.rejections,
            first_job_date: s.first_job_date,
            last_job_date: s.last_job_date,
            last_sync_ms: self.sync.last_sync_ms,
            last_error: self.sync.last_error.clone(),
            syncing: self.sync.syncing,
            online: self.sync.online,
            photos_waiting: a.replica.photos_waiting()?.len() as u64,
        })
    }

    /// Keeps an image (photo or signature) in the device's photos folder under its SHA-256, and
    /// remembers it for upload. Returns the hash and the file name.
    fn store_image(&mut self, job: JobId, bytes: &[u8]) -> Result<(String, String), DeviceError> {
        if bytes.is_empty() || bytes.len() > 20 * 1024 * 1024 {
            return Err(ReplicaError::Invalid(shared::model::ModelError::new(
                "image",
                "must be between 1 byte and 20 MB",
            ))
            .into());
        }
        let sha = hex(&sha2::Sha256::digest(bytes));
        let dir = self.dir.join("photos");
        std::fs::create_dir_all(&dir)?;
        let file = format!("{sha}.img");
        let path = dir.join(&file);
        if !path.exists() {
            let tmp = dir.join(format!("{sha}.tmp"));
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &path)?;
        }
        self.replica()?.track_photo(job, &sha, &file)?;
        Ok((sha, file))
    }

    /// Stores a photo's bytes on the device and adds it to the job; it is uploaded by a later sync.
    pub fn add_photo(
        &mut self,
        job: &str,
        bytes: &[u8],
        caption: Option<String>,
    ) -> Result<DispatchJob, DeviceError> {
        let job = JobId(crate::views::parse_id(job)?);
        // Checked before the bytes are kept, so a refused edit leaves no orphan file.
        if self.replica()?.entity(job.doc())?.is_none() {
            return Err(ReplicaError::NotFound {
                kind: shared::record::EntityKind::Job,
                id: job.doc(),
            }
            .into());
        }
        let (sha, file) = self.store_image(job, bytes)?;
        let now = self.clock.now();
        let replica = self.replica_mut()?;
        let key = replica.new_id().to_string();
        let caption = caption
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty());
        Ok(replica.update::<DispatchJob>(job.doc(), |j| {
            if !j.photos.iter().any(|p| p.sha256 == sha) {
                j.photos.push(Photo {
                    key,
                    file_name: file.clone(),
                    sha256: sha.clone(),
                    taken_at: now,
                    caption,
                });
            }
            Ok(())
        })?)
    }

    /// Records the customer's signature: the pad's image is kept and uploaded like a photo.
    pub fn sign(&mut self, job: JobId, signer: &str, image: &[u8]) -> Result<(), DeviceError> {
        if signer.trim().is_empty() {
            return Err(ReplicaError::Invalid(shared::model::ModelError::new(
                "signer",
                "the signer's name is needed",
            ))
            .into());
        }
        let (sha, _) = self.store_image(job, image)?;
        self.replica_mut()?.sign(job, signer, &sha)?;
        Ok(())
    }

    /// The bytes of a photo that waits for upload.
    pub fn photo_bytes(&self, file: &str) -> Result<Vec<u8>, DeviceError> {
        Ok(std::fs::read(self.dir.join("photos").join(file))?)
    }

    /// Marks a sync as under way (the status bar shows it) before its first exchange.
    pub fn begin_sync(&mut self) {
        self.sync.syncing = true;
    }

    fn note_sync(&mut self, result: Result<&SyncReport, &DeviceError>) {
        self.sync.syncing = false;
        match result {
            Ok(_) => {
                self.sync.online = true;
                self.sync.last_error = None;
                self.sync.last_sync_ms = Some(self.clock.now().0);
            }
            // Offline is the everyday state, not an error: the screens say it calmly.
            Err(DeviceError::Transport(TransportError::Unreachable(_))) => {
                self.sync.online = false;
                self.sync.last_error = None;
            }
            Err(e) => {
                self.sync.online = true;
                self.sync.last_error = Some(e.to_string());
            }
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn lock(device: &Mutex<Device>) -> MutexGuard<'_, Device> {
    // A panic while holding the lock leaves the replica consistent (every edit is one SQLite
    // transaction), so a poisoned lock is safe to keep using.
    device
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Syncs the shared device through `transport`, holding the lock only between network calls.
pub fn sync_shared(
    device: &Mutex<Device>,
    transport: &mut dyn Transport,
) -> Result<SyncReport, DeviceError> {
    let mut report = SyncReport::default();
    lock(device).begin_sync();
    let result = (|| loop {
        let step = lock(device).replica()?.sync_frame()?;
        let answer = transport.exchange(step.frame.clone())?;
        let mut d = lock(device);
        if !d.replica_mut()?.sync_apply(&step, &answer, &mut report)? {
            return Ok(report);
        }
    })();
    lock(device).note_sync(result.as_ref());
    result
}

#[cfg(feature = "http")]
pub use http_login::{
    exchange_magic, login, network_act, network_get, network_picture, sync_over_http,
};

#[cfg(feature = "http")]
mod http_login {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::{
        Credential, Device, DeviceError, NetSettings, lock, parse_credential, parse_server,
    };
    use crate::sync_client::http::{client as http_client, failed};
    use crate::{HttpTransport, SyncReport, TransportError};
    use shared::ipc;

    /// Trades a magic link for a session token (`POST /api/v1/auth/exchange`).
    pub fn exchange_magic(
        net: &NetSettings,
        server: &str,
        magic: &str,
        device: shared::ids::DeviceId,
        timeout: Duration,
    ) -> Result<String, DeviceError> {
        let client = http_client(net, server, Some(timeout))?;
        let resp = client
            .post(format!("{server}/api/v1/auth/exchange"))
            .json(&serde_json::json!({ "magic": magic, "device": device.to_string() }))
            .send()
            .map_err(failed)?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().unwrap_or_default();
        let message = body
            .get("message")
            .and_then(|m| m.as_str())
            .unwrap_or("login refused")
            .to_owned();
        if !status.is_success() {
            return Err(TransportError::Server {
                status: status.as_u16(),
                message,
            }
            .into());
        }
        body.get("token")
            .and_then(|t| t.as_str())
            .map(str::to_owned)
            .ok_or_else(|| DeviceError::BadCredential("the server sent no session".into()))
    }

    /// The whole login: exchange a magic link if that is what was pasted, save the session, and
    /// sync once to prove it. A refused login is forgotten again; nothing is kept half-done.
    pub fn login(
        device: &Mutex<Device>,
        server: &str,
        credential: &str,
        timeout: Duration,
    ) -> Result<SyncReport, DeviceError> {
        let net = lock(device).net().clone();
        let server = parse_server(server, net.allow_plain_http)?;
        let token = match parse_credential(credential)? {
            Credential::Session(t) => t,
            Credential::Magic(m) => {
                let id = lock(device).install_id()?;
                exchange_magic(&net, &server, &m, id, timeout)?
            }
        };
        lock(device).login_with_token(&server, &token)?;
        match sync_over_http(device, timeout) {
            Err(e @ DeviceError::Transport(TransportError::Server { status: 401, .. })) => {
                lock(device).logout()?;
                Err(e)
            }
            other => other,
        }
    }

    /// One full sync with the saved login, then the upload of photos waiting on the device.
    pub fn sync_over_http(
        device: &Mutex<Device>,
        timeout: Duration,
    ) -> Result<SyncReport, DeviceError> {
        let creds = lock(device)
            .credentials()
            .cloned()
            .ok_or(DeviceError::NotLoggedIn)?;
        let net = lock(device).net().clone();
        let mut transport = HttpTransport::with_net(&net, &creds.server, &creds.token, timeout)?;
        let report = super::sync_shared(device, &mut transport)?;
        upload_photos(device, &net, &creds, timeout)?;
        Ok(report)
    }

    /// A server's refusal: its `code` and `message` (`{"code", "message"}` bodies).
    fn refusal(resp: reqwest::blocking::Response) -> (u16, String, String) {
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp.json().unwrap_or_default();
        let text = |k: &str| {
            body.get(k)
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        (status, text("code"), text("message"))
    }

    /// The saved login and a client to its server, for a call outside the sync.
    fn signed_in(
        device: &Mutex<Device>,
        timeout: Duration,
    ) -> Result<(super::Credentials, crate::sync_client::http::Http), DeviceError> {
        let creds = lock(device)
            .credentials()
            .cloned()
            .ok_or(DeviceError::NotLoggedIn)?;
        let net = lock(device).net().clone();
        let client = http_client(&net, &creds.server, Some(timeout))?;
        Ok((creds, client))
    }

    /// The box behind a piece of equipment (`GET /api/v1/equipment/{id}/device`): read now and
    /// kept on the device; when the server cannot be reached, the last reading kept, marked
    /// `offline`; a refusal (no ACS, no such box, not this technician's) in `code` and `error`.
    pub fn network_get(
        device: &Mutex<Device>,
        equipment: &str,
        timeout: Duration,
    ) -> Result<ipc::NetworkView, DeviceError> {
        let (creds, client) = signed_in(device, timeout)?;
        let sent = client
            .get(format!(
                "{}/api/v1/equipment/{equipment}/device",
                creds.server
            ))
            .bearer_auth(&creds.token)
            .send();
        let mut view = ipc::NetworkView {
            equipment: equipment.to_owned(),
            reading: None,
            offline: false,
            code: None,
            error: None,
            line: None,
        };
        match sent {
            Ok(resp) if resp.status().is_success() => {
                let reading: shared::network::Reading = resp.json().map_err(failed)?;
                lock(device).replica()?.network_keep(equipment, &reading)?;
                view.reading = Some(reading);
            }
            Ok(resp) => {
                let (_, code, message) = refusal(resp);
                // GenieACS itself unreachable and nothing kept on the server: what we kept.
                if code == "acs_unreachable" {
                    view.reading = lock(device).replica()?.network_kept(equipment)?;
                    view.offline = view.reading.is_some();
                }
                view.code = Some(code);
                view.error = Some(message);
            }
            Err(e) => {
                view.reading = lock(device).replica()?.network_kept(equipment)?;
                view.offline = true;
                view.error = Some(failed(e).to_string());
                return Ok(view);
            }
        }
        // The fibre line, when an OLT reports it (none configured, or not its ONU: nothing).
        view.line = client
            .get(format!(
                "{}/api/v1/equipment/{equipment}/line",
                creds.server
            ))
            .bearer_auth(&creds.token)
            .send()
            .ok()
            .filter(|r| r.status().is_success())
            .and_then(|r| r.json().ok());
        Ok(view)
    }

    /// The access network for dispatchers (`GET /api/v1/network`): OLTs, incidents with the
    /// customers and jobs behind them, monitors down. Not kept: it is only worth seeing live.
    pub fn network_picture(
        device: &Mutex<Device>,
        timeout: Duration,
    ) -> Result<ipc::NetworkPictureView, DeviceError> {
        let (creds, client) = signed_in(device, timeout)?;
        let sent = client
            .get(format!("{}/api/v1/network", creds.server))
            .bearer_auth(&creds.token)
            .send();
        Ok(match sent {
            Ok(resp) if resp.status().is_success() => ipc::NetworkPictureView {
                picture: Some(resp.json().map_err(failed)?),
                code: None,
                error: None,
            },
            Ok(resp) => {
                let (_, code, message) = refusal(resp);
                ipc::NetworkPictureView {
                    picture: None,
                    code: Some(code),
                    error: Some(message),
                }
            }
            Err(e) => ipc::NetworkPictureView {
                picture: None,
                code: Some("offline".into()),
                error: Some(failed(e).to_string()),
            },
        })
    }

    /// Refreshes part of a box or reboots it (`POST …/device/{action}`); then the box as it is.
    pub fn network_act(
        device: &Mutex<Device>,
        args: &ipc::NetworkActArgs,
        timeout: Duration,
    ) -> Result<ipc::NetworkActionView, DeviceError> {
        let (creds, client) = signed_in(device, timeout)?;
        let resp = client
            .post(format!(
                "{}/api/v1/equipment/{}/device/{}",
                creds.server, args.equipment, args.action
            ))
            .bearer_auth(&creds.token)
            .json(&serde_json::json!({ "confirm": args.confirm }))
            .send()
            .map_err(failed)?;
        if !resp.status().is_success() {
            let (status, _, message) = refusal(resp);
            return Err(TransportError::Server { status, message }.into());
        }
        let body: serde_json::Value = resp.json().map_err(failed)?;
        let outcome = body
            .pointer("/outcome/outcome")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let reading: Option<shared::network::Reading> = body
            .get("device")
            .filter(|d| !d.is_null())
            .and_then(|d| serde_json::from_value(d.clone()).ok());
        if let Some(r) = &reading {
            lock(device).replica()?.network_keep(&args.equipment, r)?;
        }
        Ok(ipc::NetworkActionView {
            action: args.action.clone(),
            outcome,
            message: body
                .get("message")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            view: ipc::NetworkView {
                equipment: args.equipment.clone(),
                reading,
                offline: false,
                code: None,
                error: None,
                line: None,
            },
        })
    }

    fn upload_photos(
        device: &Mutex<Device>,
        net: &NetSettings,
        creds: &super::Credentials,
        timeout: Duration,
    ) -> Result<(), DeviceError> {
        let waiting = lock(device).replica()?.photos_waiting()?;
        if waiting.is_empty() {
            return Ok(());
        }
        let client = http_client(net, &creds.server, Some(timeout))?;
        for (sha, file) in waiting {
            let bytes = lock(device).photo_bytes(&file)?;
            let resp = client
                .put(format!("{}/api/v1/photos/{sha}", creds.server))
                .bearer_auth(&creds.token)
                .body(bytes)
                .send()
                .map_err(failed)?;
            if resp.status().is_success() {
                lock(device).replica()?.photo_uploaded(&sha)?;
            } else {
                return Err(TransportError::Server {
                    status: resp.status().as_u16(),
                    message: format!("photo upload refused ({})", resp.status()),
                }
                .into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn the_data_folder_is_the_users_alone() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("fsm");
        Device::open(&dir, Arc::new(SystemClock)).expect("open");
        let mode = std::fs::metadata(&dir).expect("dir").permissions().mode();
        assert_eq!(mode & 0o077, 0, "others can read the replica: {mode:o}");
    }
}
