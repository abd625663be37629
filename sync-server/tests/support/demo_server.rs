//! Running the real `sync-server demo` binary for a test, and devices that talk to it.
//! Included by the tests that need a server process (`#[path]`), not a test of its own.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use app_tauri_core::{HttpTransport, Replica};
use shared::clock::{Clock, FixedClock};
use shared::ids::{Author, DeviceId, DocId, Role};
use sync_server::auth::Keys;
use sync_server::{SystemClock, demo};

/// The signing secret the test servers run with.
pub(crate) const SECRET: &str = "test servers' secret, long enough to sign";

/// A server process, killed when dropped.
pub(crate) struct Server(pub(crate) Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `sync-server demo` with data in `dir` (and `extra` arguments) on `port`, or on a port
/// the system picks when `None`; returns once it listens, with the port it got (the server
/// prints it: no port is guessed, nothing is polled).
pub(crate) fn spawn_demo(
    dir: &std::path::Path,
    port: Option<u16>,
    extra: &[&str],
) -> (Server, u16) {
    spawn_demo_with(dir, port, extra, &[])
}

/// [`spawn_demo`] with settings from environment variables (`APP_…`).
pub(crate) fn spawn_demo_with(
    dir: &std::path::Path,
    port: Option<u16>,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Server, u16) {
    spawn_command(("demo", dir), port, extra, env)
}

/// `sync-server <command> --data <dir>` (`demo` or `serve`), as [`spawn_demo`] does.
pub(crate) fn spawn_command(
    (command, dir): (&str, &std::path::Path),
    port: Option<u16>,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Server, u16) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_sync-server"))
        .args([
            command,
            "--data",
            dir.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{}", port.unwrap_or(0)),
        ])
        .args(extra)
        .env("APP_JWT_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(out).lines();
    let bound = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(addr) = line.strip_prefix("Listening on ") {
                    break addr.parse::<std::net::SocketAddr>().unwrap().port();
                }
            }
            other => panic!("the server stopped before listening: {other:?}"),
        }
    };
    // Whatever it prints later is read and dropped, so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (Server(child), bound)
}

/// A device's token; a technician's is for the demo data set's first technician.
pub(crate) fn token(role: Role, device: DeviceId) -> String {
    let tech = (role == Role::Technician).then(|| {
        demo::generate(demo::DEMO_SEED, demo::DEMO_SPEC, SystemClock.now().date()).technicians[0]
    });
    Keys::from_secret(SECRET.as_bytes())
        .issue(device, role, tech, SystemClock.now().0 / 1000, 3600)
        .unwrap()
}

/// An in-memory replica for device `n` of a role.
pub(crate) fn device(role: Role, n: u128) -> (Replica, Author) {
    let author = Author::new(role, DeviceId(DocId::from_u128(0xd000 + n)));
    let clock: Arc<dyn Clock> = Arc::new(FixedClock::new(SystemClock.now()));
    (
        Replica::open_in_memory(author, clock, Some(n as u64)).unwrap(),
        author,
    )
}

/// The HTTP transport of a device to the server on `port`.
pub(crate) fn transport(port: u16, author: Author) -> HttpTransport {
    HttpTransport::new(
        &format!("http://127.0.0.1:{port}"),
        &token(author.role, author.device),
        Duration::from_secs(10),
    )
    .unwrap()
}
