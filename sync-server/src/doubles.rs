//! Local doubles of the hub's peers (Twilio, Stripe, Gemini, GenieACS, Oktopus, an OLT), behaving as those services document:
//! `sync-server demo` runs them on loopback so a newcomer sees each integration work without an
//! account anywhere, and the tests hold the real clients to them (the same contract suites run
//! against the real services when their credentials are given).

pub mod gemini;
pub mod genieacs;
pub mod oktopus;
pub mod olt;
pub mod snmpsim;
pub mod stripe;
pub mod twilio;

/// Binds `127.0.0.1:0` and serves `app` on the current tokio runtime; returns its base URL.
pub(crate) async fn serve_on_loopback(app: axum::Router) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}"))
}

/// A client for the callbacks and events a double sends (they give up after a while, as the
/// services' own do).
pub(crate) fn callback_client() -> reqwest::Client {
    crate::tls::install_crypto();
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap_or_default()
}
