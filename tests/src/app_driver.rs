//! Driving the real app: a virtual X display (Xvfb), `tauri-driver` in front of WebKitWebDriver,
//! the built `app-tauri` binary in a WebKitGTK webview, and a `sync-server demo` child process.
//! The app's end-to-end tests and `cargo xtask bench app` share it.
//!
//! Every child runs in its own process group and is stopped with its children when its guard is
//! dropped, so a failed test leaves no browser, driver or server behind. A missing tool fails with
//! the command that installs it, never a silent skip.

use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The target directory cargo builds into (honours `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    #[allow(
        clippy::disallowed_methods,
        reason = "cargo's own setting, read like cargo does"
    )]
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                workspace().join(p)
            }
        })
        .unwrap_or_else(|| workspace().join("target"))
}

/// Where the end-to-end tests put their screenshots (README.md names it).
pub fn screenshots_dir() -> PathBuf {
    workspace().join("screenshots")
}

/// Builds the app and the server binaries (a no-op when they are up to date) and returns their
/// paths. The app embeds `app-ui/dist`: `cargo xtask ui` must have run.
pub fn build_binaries(release: bool) -> Result<(PathBuf, PathBuf)> {
    let root = workspace();
    if !root.join("app-ui/dist/index.html").exists() {
        bail!("app-ui/dist is missing: run `cargo xtask ui` first (the app embeds the UI bundle)");
    }
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .current_dir(&root)
        .args(["build", "--locked", "-p", "app-tauri", "-p", "sync-server"]);
    if release {
        cargo.arg("--release");
    }
    let status = cargo.status().context("running cargo build")?;
    if !status.success() {
        bail!("building app-tauri and sync-server failed");
    }
    let dir = target_dir().join(if release { "release" } else { "debug" });
    Ok((dir.join("app-tauri"), dir.join("sync-server")))
}

/// A child process stopped, with its whole process group, when dropped.
#[derive(Debug)]
pub struct Guarded {
    child: Child,
    name: &'static str,
}

impl Guarded {
    fn spawn(name: &'static str, cmd: &mut Command) -> Result<Self> {
        let child = cmd
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {name} (install it with `bash .ci/setup`)"))?;
        Ok(Self { child, name })
    }

    /// Sends `signal` to the group, then waits up to `grace` before killing it.
    pub fn stop(&mut self, signal: &str, grace: Duration) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args([signal, "--", &group])
            .stderr(Stdio::null())
            .status();
        let until = Instant::now() + grace;
        while Instant::now() < until {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
        note_killed(self.name);
    }
}

/// A process that had to be killed is worth a line in the test output.
fn note_killed(name: &str) {
    #[allow(clippy::print_stderr, reason = "test-harness diagnostics")]
    {
        eprintln!("note: {name} did not stop in time and was killed");
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.stop("-TERM", Duration::from_secs(5));
    }
}

/// A port nothing listens on now.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_for_port(port: u16, within: Duration, what: &str) -> Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let until = Instant::now() + within;
    while Instant::now() < until {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{what} did not listen on port {port} within {within:?}")
}

fn require(tool: &str, package: &str) -> Result<()> {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        bail!(
            "`{tool}` is missing: the app's WebDriver tests need {package} (`bash .ci/setup` installs it)"
        );
    }
    Ok(())
}

/// Xvfb and tauri-driver, ready for sessions.
#[derive(Debug)]
pub struct Stage {
    // Dropped in this order: the driver (and any app it started), then the display.
    driver: Guarded,
    _display: Guarded,
    driver_port: u16,
}

impl Stage {
    pub fn start() -> Result<Self> {
        require("Xvfb", "Debian's `xvfb`")?;
        require("WebKitWebDriver", "Debian's `webkit2gtk-driver`")?;
        require(
            "tauri-driver",
            "`cargo install tauri-driver --locked --version '^2'`",
        )?;
        // A display number nobody uses: no lock file and no socket.
        let n = (90..200)
            .find(|n| {
                !Path::new(&format!("/tmp/.X{n}-lock")).exists()
                    && !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
            })
            .context("no free X display number between :90 and :199")?;
        let display = format!(":{n}");
        let xvfb = Guarded::spawn(
            "Xvfb",
            Command::new("Xvfb")
                .args([&display, "-screen", "0", "2560x1440x24", "-nolisten", "tcp"])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )?;
        let until = Instant::now() + Duration::from_secs(10);
        while !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() {
            if Instant::now() > until {
                bail!("Xvfb did not open display {display}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let (port, native) = (free_port()?, free_port()?);
        let driver = Guarded::spawn(
            "tauri-driver",
            Command::new("tauri-driver")
                .args([
                    "--port",
                    &port.to_string(),
                    "--native-port",
                    &native.to_string(),
                ])
                .env("DISPLAY", &display)
                // Software rendering: there is no GPU under Xvfb.
                .env("WEBKIT_DISABLE_DMABUF_RENDERER", "1")
                .env("LIBGL_ALWAYS_SOFTWARE", "1")
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )?;
        wait_for_port(port, Duration::from_secs(20), "tauri-driver")?;
        wait_for_port(native, Duration::from_secs(20), "WebKitWebDriver")?;
        Ok(Self {
            driver,
            _display: xvfb,
            driver_port: port,
        })
    }

    /// Starts the app binary with its own data folder and returns the WebDriver client.
    pub async fn launch(&self, app: &Path, data_dir: &Path) -> Result<App> {
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("wry"));
        caps.insert(
            "tauri:options".into(),
            json!({ "application": app, "args": ["--data-dir", data_dir] }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.driver_port))
            .await
            .context("opening a WebDriver session on the app")?;
        Ok(App { client })
    }

    /// Stops the driver now (and with it any app still open).
    pub fn stop(mut self) {
        self.driver.stop("-TERM", Duration::from_secs(5));
    }
}

/// One running app, driven through WebDriver.
#[derive(Debug)]
pub struct App {
    pub client: Client,
}

/// How long a step may take to show on screen before the test fails.
pub const STEP: Duration = Duration::from_secs(30);

impl App {
    /// Waits for `css` and returns the element.
    pub async fn find(&self, css: &str) -> Result<fantoccini::elements::Element> {
        match self
            .client
            .wait()
            .at_most(STEP)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => Ok(e),
            Err(e) => {
                let body = self
                    .js("return document.body.innerText", vec![])
                    .await
                    .unwrap_or_default();
                let _ = self.screenshot("failure").await;
                bail!("`{css}` did not appear within {STEP:?} ({e}); the screen shows:\n{body}")
            }
        }
    }

    pub async fn click(&self, css: &str) -> Result<()> {
        self.find(css)
            .await?
            .click()
            .await
            .with_context(|| format!("clicking `{css}`"))
    }

    /// Replaces the text of an input or textarea.
    pub async fn type_into(&self, css: &str, text: &str) -> Result<()> {
        let e = self.find(css).await?;
        e.clear()
            .await
            .with_context(|| format!("clearing `{css}`"))?;
        e.send_keys(text)
            .await
            .with_context(|| format!("typing into `{css}`"))
    }

    pub async fn text(&self, css: &str) -> Result<String> {
        Ok(self.find(css).await?.text().await?)
    }

    /// Runs `script` (a function body) in the page and returns its value.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        Ok(self.client.execute(script, args).await?)
    }

    /// Waits until `script` (a function body returning a boolean) is true.
    pub async fn until(&self, what: &str, script: &str, args: Vec<Value>) -> Result<()> {
        let until = Instant::now() + STEP;
        loop {
            if self.js(script, args.clone()).await? == Value::Bool(true) {
                return Ok(());
            }
            if Instant::now() > until {
                let body = self
                    .js("return document.body.innerText", vec![])
                    .await
                    .unwrap_or_default();
                let _ = self.screenshot("failure").await;
                bail!("{what}: not seen within {STEP:?}; the screen shows:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the text of `css` contains `needle`.
    pub async fn until_text(&self, css: &str, needle: &str) -> Result<()> {
        self.until(
            &format!("`{css}` containing {needle:?}"),
            "const e = document.querySelector(arguments[0]); \
             return !!e && e.textContent.includes(arguments[1]);",
            vec![json!(css), json!(needle)],
        )
        .await
    }

    /// Resizes the window, failing after [`STEP`] rather than waiting forever on a driver that
    /// never sees the window change.
    pub async fn resize(&self, width: u32, height: u32) -> Result<()> {
        tokio::time::timeout(STEP, self.client.set_window_size(width, height))
            .await
            .with_context(|| {
                format!("resizing the window to {width}x{height} took over {STEP:?}")
            })??;
        Ok(())
    }

    /// Saves a PNG of the window.
    pub async fn screenshot(&self, name: &str) -> Result<PathBuf> {
        let png = self.client.screenshot().await?;
        if !png.starts_with(b"\x89PNG") {
            bail!("the driver's screenshot is not a PNG");
        }
        let dir = screenshots_dir();
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    /// Closes the app (its data stays in its folder).
    pub async fn close(self) -> Result<()> {
        self.client.close().await?;
        Ok(())
    }
}

/// `sync-server demo` in a child process, on a fixed port and data folder so it can be stopped
/// and started again.
#[derive(Debug)]
pub struct DemoServer {
    binary: PathBuf,
    data: PathBuf,
    port: u16,
    child: Option<Guarded>,
    pub url: String,
    pub dispatcher_token: String,
    /// The technician the demo prints a token for.
    pub technician: String,
}

impl DemoServer {
    pub fn start(binary: &Path, data: &Path) -> Result<Self> {
        let mut s = Self {
            binary: binary.to_owned(),
            data: data.to_owned(),
            // The system picks the port on the first start; restarts reuse it.
            port: 0,
            child: None,
            url: String::new(),
            dispatcher_token: String::new(),
            technician: String::new(),
        };
        let lines = s.up()?;
        s.url = format!("http://127.0.0.1:{}", s.port);
        let after = |label: &str| {
            lines
                .iter()
                .position(|l| l.starts_with(label))
                .and_then(|i| lines.get(i + 1))
                .map(|l| l.trim().to_owned())
        };
        s.dispatcher_token =
            after("Dispatcher token").context("the demo printed no dispatcher token")?;
        let tech_token =
            after("Technician token").context("the demo printed no technician token")?;
        s.technician =
            jwt_claim(&tech_token, "tech").context("the technician token names no technician")?;
        Ok(s)
    }

    /// Starts the server; returns what it printed until it listened (it prints the address it
    /// got, so nothing is polled).
    fn up(&mut self) -> Result<Vec<String>> {
        if self.port != 0 && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            bail!(
                "port {} is already taken: refusing to start the demo server there",
                self.port
            );
        }
        let mut child = Guarded::spawn(
            "sync-server",
            Command::new(&self.binary)
                .args(["demo", "--data"])
                .arg(&self.data)
                .args(["--listen", &format!("127.0.0.1:{}", self.port)])
                .env("RUST_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        )?;
        let out = child.child.stdout.take().context("server stdout")?;
        let mut lines = Vec::new();
        let mut reader = BufReader::new(out).lines();
        let bound = loop {
            let line = reader
                .next()
                .context("the server stopped before listening")??;
            if let Some(addr) = line.strip_prefix("Listening on ") {
                break addr
                    .parse::<SocketAddr>()
                    .with_context(|| format!("an address: {addr}"))?;
            }
            lines.push(line);
        };
        self.port = bound.port();
        // Whatever it prints later is read and dropped, so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in reader {});
        self.child = Some(child);
        Ok(lines)
    }

    /// Stops the server as an operator would (SIGINT, graceful).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.stop("-INT", Duration::from_secs(10));
        }
    }

    /// Starts it again on the same port and data.
    pub fn restart(&mut self) -> Result<()> {
        self.up().map(|_| ())
    }

    /// A one-time login link for `technician`, as the office would send it.
    pub async fn magic_link(&self, technician: &str) -> Result<String> {
        sync_server::tls::install_crypto();
        let body = reqwest::Client::new()
            .post(format!("{}/api/v1/auth/magic", self.url))
            .bearer_auth(&self.dispatcher_token)
            .header("content-type", "application/json")
            .body(json!({ "technician": technician }).to_string())
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        let r: Value = serde_json::from_slice(&body)?;
        r["link"]
            .as_str()
            .map(str::to_owned)
            .context("the magic-link answer has no link")
    }
}

/// One claim of a JWT, read without verification (test support).
pub fn jwt_claim(token: &str, claim: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v[claim].as_str().map(str::to_owned)
}
