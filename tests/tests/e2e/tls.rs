//! TLS end to end, with a private certificate authority made at test time: the app core against
//! the sync server serving HTTPS itself (its certificate renewed without a restart), and the
//! ERPNext bridge against ERPNext behind a TLS front. A certificate from another CA, or for
//! another name, fails with a clear error and nothing reaches the server.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use app_tauri_core::device::{NetSettings, parse_server};
use app_tauri_core::{HttpTransport, Replica, TransportError};
use axum::serve::Listener;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use shared::clock::{Clock, FixedClock};
use shared::ids::{Author, DeviceId, DocId, Role};
use sync_server::auth::Keys;
use sync_server::erpnext::{ErpClient, ErpConfig, ErpError};
use sync_server::service::SyncService;
use sync_server::settings::Secret;
use sync_server::tls::{CertFiles, Reloading, TlsListener};
use sync_server::{AppState, SystemClock};
use tests::frappe::FrappeDouble;
use tests::harness::monday_9am;

use crate::world::seeded_service;

/// A certificate authority of the test's own.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Self {
            issuer: Issuer::new(params, key),
            pem: cert.pem(),
        }
    }

    /// A server certificate for `names` (host names or IP addresses), as PEM files in `dir`.
    fn leaf(&self, dir: &Path, names: &[&str]) -> CertFiles {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        let files = CertFiles {
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
        };
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        std::fs::write(&files.cert, cert.pem()).unwrap();
        files
    }

    fn trusted(&self) -> NetSettings {
        NetSettings {
            ca_pem: Some(self.pem.clone().into_bytes()),
            allow_plain_http: false,
        }
    }
}

/// The sync server serving HTTPS itself.
struct TlsServer {
    port: u16,
    svc: Arc<SyncService>,
    keys: Arc<Keys>,
    cert: Arc<Reloading>,
    _rt: tokio::runtime::Runtime,
}

fn tls_server(dir: &Path, files: CertFiles) -> TlsServer {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (svc, _) = seeded_service(dir);
    let keys = Arc::new(Keys::from_secret(
        b"tls test secret, thirty-two bytes or more",
    ));
    let cert = Reloading::open(files).unwrap();
    let state = AppState {
        sync: Arc::clone(&svc),
        keys: Arc::clone(&keys),
        erp: None,
        photos: None,
        links: Default::default(),
        hub: None,
    };
    let config = cert.server_config().unwrap();
    let port = rt.block_on(async {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        let listener = TlsListener::new(tcp, config).unwrap();
        tokio::spawn(sync_server::serve(listener, state, std::future::pending()));
        port
    });
    TlsServer {
        port,
        svc,
        keys,
        cert,
        _rt: rt,
    }
}

/// A dispatcher replica and its transport to `base` under `net`.
fn dispatcher(
    s: &TlsServer,
    n: u128,
    net: &NetSettings,
    base: &str,
) -> (Replica, Result<HttpTransport, TransportError>) {
    let device = DeviceId(DocId::from_u128(0x7150 + n));
    let token = s
        .keys
        .issue(
            device,
            Role::Dispatcher,
            None,
            SystemClock.now().0 / 1000,
            3600,
        )
        .unwrap();
    let clock: Arc<dyn Clock> = Arc::new(FixedClock::new(monday_9am()));
    let replica =
        Replica::open_in_memory(Author::new(Role::Dispatcher, device), clock, Some(1)).unwrap();
    let transport = HttpTransport::with_net(net, base, &token, Duration::from_secs(10));
    (replica, transport)
}

fn sessions(s: &TlsServer) -> usize {
    s.svc.read(|e| e.stats().clients).unwrap()
}

fn insecure(r: Result<impl std::fmt::Debug, TransportError>, says: &str) {
    match r {
        Err(TransportError::Insecure(m)) => assert!(m.contains(says), "`{m}` should say `{says}`"),
        other => panic!("expected a TLS refusal saying `{says}`, got {other:?}"),
    }
}

#[test]
fn tls_the_app_syncs_over_https_only_with_a_trusted_certificate() {
    let ca = TestCa::new("FSM test CA");
    let dir = tempfile::tempdir().unwrap();
    let s = tls_server(dir.path(), ca.leaf(dir.path(), &["localhost"]));
    let by_name = format!("https://localhost:{}", s.port);
    let by_address = format!("https://127.0.0.1:{}", s.port);

    let (mut ok, t) = dispatcher(&s, 1, &ca.trusted(), &by_name);
    ok.sync(&mut t.unwrap()).unwrap();
    assert!(!ok.doc_ids().unwrap().is_empty(), "synced over HTTPS");
    assert_eq!(sessions(&s), 1);

    // A certificate from a CA the app does not trust: refused before anything is sent.
    let stranger = TestCa::new("Someone else's CA");
    let (mut r, t) = dispatcher(&s, 2, &stranger.trusted(), &by_name);
    insecure(r.sync(&mut t.unwrap()), "UnknownIssuer");
    // The platform's roots alone do not know the private CA either.
    let (mut r, t) = dispatcher(&s, 3, &NetSettings::default(), &by_name);
    insecure(r.sync(&mut t.unwrap()), "invalid peer certificate");
    // The right CA, the wrong name.
    let (mut r, t) = dispatcher(&s, 4, &ca.trusted(), &by_address);
    insecure(r.sync(&mut t.unwrap()), "not valid for name");
    assert_eq!(sessions(&s), 1, "nothing reached the sync service");
    assert!(r.doc_ids().unwrap().is_empty());

    // The certificate is renewed (now also for the address) while the server runs.
    ca.leaf(dir.path(), &["localhost", "127.0.0.1"]);
    assert!(s.cert.refresh().unwrap(), "the new pair is loaded");
    let (mut r, t) = dispatcher(&s, 5, &ca.trusted(), &by_address);
    r.sync(&mut t.unwrap()).unwrap();
    assert_eq!(sessions(&s), 2);
    assert!(
        !s.cert.refresh().unwrap(),
        "unchanged files are not reloaded"
    );
    // A broken renewal keeps the current certificate in service.
    std::fs::write(dir.path().join("server.key"), "not a key").unwrap();
    assert!(s.cert.refresh().is_err());
    ok.sync(&mut dispatcher(&s, 1, &ca.trusted(), &by_name).1.unwrap())
        .unwrap();
}

#[test]
fn tls_plain_http_to_another_machine_is_refused_before_anything_is_sent() {
    for local in [
        "http://127.0.0.1:8480",
        "http://localhost:8480/",
        "http://[::1]:8480",
        "https://sync.example.net",
    ] {
        assert!(parse_server(local, false).is_ok(), "{local}");
    }
    let err = parse_server("http://sync.example.net", false).unwrap_err();
    assert!(
        err.to_string().contains("plain http:// is refused"),
        "{err}"
    );
    assert!(parse_server("http://10.0.0.5:8480", false).is_err());
    assert!(parse_server("http://user@127.0.0.1.example.net", false).is_err());
    assert!(
        parse_server("http://10.0.0.5:8480", true).is_ok(),
        "the development setting"
    );
    // A login saved by an older version with a plain address is refused at each sync too.
    insecure(
        HttpTransport::new("http://sync.example.net", "t", Duration::from_secs(1)),
        "plain http://",
    );
}

/// A TLS front for a plain-HTTP backend (ERPNext behind its reverse proxy): counts the
/// connections that got through the handshake to the backend.
fn tls_front(
    rt: &tokio::runtime::Runtime,
    files: CertFiles,
    backend: SocketAddr,
) -> (u16, Arc<AtomicUsize>) {
    let config = Reloading::open(files).unwrap().server_config().unwrap();
    let through = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&through);
    let port = rt.block_on(async move {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        let mut listener = TlsListener::new(tcp, config).unwrap();
        tokio::spawn(async move {
            loop {
                let (mut tls, _) = listener.accept().await;
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut plain = tokio::net::TcpStream::connect(backend).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        port
    });
    (port, through)
}

#[test]
fn tls_the_bridge_talks_to_erpnext_only_with_a_trusted_certificate() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let erp = FrappeDouble::new("tlskey", "tlssecret");
    let backend = rt.block_on(erp.start());
    let ca = TestCa::new("ERPNext private CA");
    let dir = tempfile::tempdir().unwrap();
    let (port, through) = tls_front(&rt, ca.leaf(dir.path(), &["localhost"]), backend);
    let client = |ca_pem: Option<Vec<u8>>| {
        ErpClient::new(&ErpConfig {
            url: format!("https://localhost:{port}"),
            token: Secret::new("tlskey:tlssecret"),
            timeout: Duration::from_secs(10),
            ca_pem,
        })
        .unwrap()
    };
    let trusted = client(Some(ca.pem.into_bytes()));
    assert_eq!(
        rt.block_on(trusted.logged_user()).unwrap(),
        "Administrator",
        "the bridge's API user, over HTTPS"
    );
    assert_eq!(through.load(Ordering::SeqCst), 1);
    let untrusted = client(None);
    match rt.block_on(untrusted.logged_user()) {
        Err(ErpError::Transport(m)) => assert!(m.contains("not trusted"), "{m}"),
        other => panic!("expected a TLS refusal, got {other:?}"),
    }
    assert_eq!(through.load(Ordering::SeqCst), 1, "nothing reached ERPNext");
}

#[test]
fn tls_the_dispatchers_live_stream_resumes_where_it_stopped() {
    use app_tauri_core::live::{Flow, LiveStream};
    use shared::ids::JobId;
    use shared::record::EntityKind;

    let ca = TestCa::new("FSM test CA");
    let dir = tempfile::tempdir().unwrap();
    let s = tls_server(dir.path(), ca.leaf(dir.path(), &["localhost"]));
    let base = format!("https://localhost:{}", s.port);
    let (mut office, t) = dispatcher(&s, 1, &ca.trusted(), &base);
    let mut net = t.unwrap();
    office.sync(&mut net).unwrap();
    let job = office
        .doc_ids()
        .unwrap()
        .into_iter()
        .find(|(_, k)| *k == EntityKind::Job)
        .map(|(d, _)| JobId(d))
        .unwrap();
    let token = s
        .keys
        .issue(
            DeviceId(DocId::from_u128(0x7199)),
            Role::Dispatcher,
            None,
            SystemClock.now().0 / 1000,
            3600,
        )
        .unwrap();
    let http = app_tauri_core::http_client(&ca.trusted(), &base, None).unwrap();

    // Follows until the first event, on a thread (the stream blocks), and hands the events over.
    let follow = |mut live: LiveStream| {
        let (tx, rx) = std::sync::mpsc::channel();
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        let handle = std::thread::spawn(move || {
            let r = live.follow(&http, &base, &token, |ev| {
                let _ = tx.send(ev.clone());
                Flow::Stop
            });
            r.map(|()| live)
        });
        (handle, rx)
    };

    let (first, rx) = follow(LiveStream::default());
    // Let the stream open before the edit it should announce.
    std::thread::sleep(Duration::from_millis(300));
    office.add_note(job, "Le client rappelle à 14 h").unwrap();
    office.sync(&mut net).unwrap();
    let seen = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("an event arrives live");
    let live = first.join().unwrap().unwrap();
    assert_eq!(live.last_id(), Some(seen.id.as_str()));
    assert!(!seen.id.is_empty(), "{seen:?}");

    // While nobody listens, another edit.
    office.add_note(job, "Chien dans la cour").unwrap();
    office.sync(&mut net).unwrap();

    // Following again resumes after the last event: the missed one is replayed at once.
    let (second, rx) = follow(live);
    let missed = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the missed event is replayed on resuming");
    assert!(
        missed.id.parse::<u64>().unwrap() > seen.id.parse::<u64>().unwrap(),
        "{missed:?} after {seen:?}"
    );
    second.join().unwrap().unwrap();
}
