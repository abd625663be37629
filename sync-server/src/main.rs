//! `sync-server`: the binary. Parses arguments, wires the store, engine and router, serves.
//!
//! * `sync-server demo [--data DIR] [--listen ADDR]` — embedded SQLite with a generated Québec
//!   data set on first start; prints ready-to-use technician and dispatcher tokens.
//! * `sync-server serve --data DIR [--listen ADDR] [--postgres URL]` — needs `APP_JWT_SECRET`
//!   (32+ bytes); `--postgres` keeps the data in PostgreSQL (schema `fsm`) instead of SQLite.
//! * `sync-server token --data DIR --role technician|dispatcher|admin [--technician ID] [--days N]`
//!   (signed with `APP_JWT_SECRET`; `--demo` for the demo's own secret)
//! * `sync-server revoke --data DIR --device ID | --technician ID` — every session so far of a
//!   device (a lost phone) or of a technician (someone who left); a running server applies it
//!   within 30 seconds.
//! * `sync-server restored --data DIR [--postgres URL]` — after putting a backup in place (server
//!   stopped): records the restore, so nothing is compacted for `device_retention_days` while
//!   devices send back the work the backup lacks.
//! * `sync-server erpnext setup` — creates the custom doctypes and fields the bridge maps (and the
//!   webhooks, when `erpnext.webhook_url` and `erpnext.webhook_secret` are set) in the ERPNext of
//!   `APP_ERPNEXT__URL` / `APP_ERPNEXT__TOKEN`. Safe to run again.
//!
//! With `erpnext` settings, `serve` and `demo` also run the ERPNext bridge.
//!
//! Settings come in layers (see `sync_server::settings`): defaults, `--config FILE` (TOML), then
//! `APP_*` environment variables; the flags above override them.

#![allow(clippy::print_stdout)] // a command-line program: its output is for people

use std::path::PathBuf;

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rand::RngCore;
use shared::clock::Clock;
use shared::ids::{Author, DeviceId, DocId, Role, TechnicianId};
use shared::model::AnyEntity;
use shared::sync::server::ServerConfig;
use sync_server::auth::Keys;
use sync_server::erpnext::{Bridge, BridgeOptions, ErpClient, ErpConfig, setup};
use sync_server::service::SyncService;
use sync_server::settings::ErpSettings;
use sync_server::settings::Settings;
use sync_server::store::postgres_store::PostgresStore;
use sync_server::store::{SqliteStore, Store};
use sync_server::{AppState, ErpEdge, SystemClock, demo};

/// The command line, parsed by clap (help, errors and `--version` as people expect them).
#[derive(clap::Parser)]
#[command(name = "sync-server", version, about = "The field-service sync server")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    /// A TOML settings file (between the defaults and the APP_* environment).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The data folder (embedded store, photos).
    #[arg(long, global = true, value_name = "DIR")]
    data: Option<PathBuf>,
    /// The address to serve on, e.g. 127.0.0.1:8480.
    #[arg(long, global = true, value_name = "ADDR")]
    listen: Option<String>,
    /// Store in PostgreSQL instead of the embedded SQLite ("host=… user=… dbname=…").
    #[arg(long, global = true, value_name = "URL")]
    postgres: Option<String>,
    /// The PostgreSQL schema (default `fsm`).
    #[arg(long, global = true, value_name = "NAME")]
    postgres_schema: Option<String>,
    /// Apps older than this version are told to update.
    #[arg(long, global = true, value_name = "VERSION")]
    min_app_version: Option<String>,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// Embedded SQLite with generated Québec demo data; prints ready-to-use tokens.
    Demo,
    /// Serves (needs APP_JWT_SECRET, 32 bytes or more).
    Serve,
    /// Issues a device token.
    Token {
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// The technician a technician's token is for.
        #[arg(long, value_name = "ID")]
        technician: Option<TechnicianId>,
        /// How long the token lasts.
        #[arg(long, default_value_t = 30)]
        days: i64,
        /// Sign with the demo's own secret.
        #[arg(long)]
        demo: bool,
    },
    /// Ends every session so far of a device (a lost phone) or of a technician.
    Revoke {
        #[arg(
            long,
            value_name = "ID",
            conflicts_with = "technician",
            required_unless_present = "technician"
        )]
        device: Option<DocId>,
        #[arg(long, value_name = "ID")]
        technician: Option<TechnicianId>,
    },
    /// After putting a backup in place (server stopped): records the restore.
    Restored,
    /// ERPNext administration.
    Erpnext {
        #[command(subcommand)]
        action: ErpCmd,
    },
}

#[derive(clap::Subcommand)]
enum ErpCmd {
    /// Creates the custom doctypes, fields and webhooks the bridge needs (safe to run again).
    Setup,
}

/// How long the tokens the demo prints last.
const DEMO_TOKEN_DAYS: i64 = 30;

fn parse_role(s: &str) -> Result<Role, String> {
    match s {
        "technician" => Ok(Role::Technician),
        "dispatcher" => Ok(Role::Dispatcher),
        "admin" => Ok(Role::Admin),
        other => Err(format!(
            "unknown role `{other}` (technician, dispatcher or admin)"
        )),
    }
}

fn secret(settings: &Settings, store: &mut dyn Store, demo_mode: bool) -> Result<Vec<u8>> {
    if let Some(s) = &settings.jwt_secret {
        return Ok(s.expose().as_bytes().to_vec());
    }
    if !demo_mode {
        bail!(
            "set APP_JWT_SECRET or `jwt_secret` in the settings file (32 bytes or more) to sign device tokens (for the demo's data: `token --demo`)"
        );
    }
    // Demo only: a random secret kept with the demo data, so printed tokens survive restarts.
    if let Some(s) = store.meta("demo_jwt_secret")? {
        return Ok(s.into_bytes());
    }
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    let s: String = b.iter().map(|x| format!("{x:02x}")).collect();
    store.set_meta("demo_jwt_secret", &s)?;
    Ok(s.into_bytes())
}

fn new_device() -> DeviceId {
    let mut r = [0u8; 10];
    rand::rng().fill_bytes(&mut r);
    DeviceId(DocId::new_v7(SystemClock.now(), r))
}

fn token(keys: &Keys, role: Role, tech: Option<TechnicianId>, days: i64) -> Result<String> {
    let now_s = SystemClock.now().0 / 1000;
    keys.issue(new_device(), role, tech, now_s, days * 86_400)
        .map_err(|e| anyhow::anyhow!("{e}"))
}

fn erp_config(e: &ErpSettings) -> Result<ErpConfig> {
    let ca_pem = e
        .ca_file
        .as_ref()
        .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
        .transpose()?;
    Ok(ErpConfig {
        url: e.url.clone(),
        token: e.token.clone(),
        timeout: std::time::Duration::from_secs(e.timeout_s.max(1)),
        ca_pem,
    })
}

/// `sync-server erpnext setup`.
fn erpnext_command(settings: &Settings) -> Result<()> {
    let e = settings.erpnext.as_ref().context(
        "set APP_ERPNEXT__URL and APP_ERPNEXT__TOKEN (api_key:api_secret), or [erpnext] in the settings file",
    )?;
    let client = ErpClient::new(&erp_config(e)?)?;
    let webhook = match (&e.webhook_url, &e.webhook_secret) {
        (Some(url), Some(secret)) => Some(setup::WebhookTarget {
            url: url.clone(),
            secret: secret.clone(),
        }),
        _ => {
            println!(
                "No erpnext.webhook_url/webhook_secret: webhooks not registered (polling only)."
            );
            None
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    println!("Setting up {} …", e.url);
    let mut report = rt
        .block_on(setup::run(&client, webhook.as_ref()))
        .with_context(|| format!("setting up ERPNext at {}", e.url))?;
    if let Some(stripe) = &settings.stripe {
        let account = e.company.as_deref().zip(stripe.erp_account.as_deref());
        let paid = rt
            .block_on(setup::payments(&client, &stripe.mode_of_payment, account))
            .with_context(|| format!("setting up Stripe payments in ERPNext at {}", e.url))?;
        report.created.extend(paid.created);
        report.existing.extend(paid.existing);
    }
    for c in &report.created {
        println!("  created  {c}");
    }
    for c in &report.existing {
        println!("  present  {c}");
    }
    println!(
        "Done: {} created, {} already present.",
        report.created.len(),
        report.existing.len()
    );
    Ok(())
}

/// `sync-server revoke`: every session so far of a device or of a technician.
fn revoke_command(
    device: Option<DeviceId>,
    technician: Option<TechnicianId>,
    settings: &Settings,
    store: &mut dyn Store,
) -> Result<()> {
    use sync_server::revocation::Revocation;
    let now = SystemClock.now().0 / 1000;
    let what = match (device, technician) {
        (Some(device), None) => Revocation::Device { device, upto: now },
        (None, Some(technician)) => Revocation::Technician {
            technician,
            upto: now,
        },
        _ => bail!("usage: sync-server revoke --device ID | --technician ID"),
    };
    // Kept until no session it covers can still be valid.
    let until = now + settings.lifetimes().ttl_s.max(72 * 3600);
    store.revoke(&what.key(), until)?;
    println!(
        "Revoked {}; a running server applies it within 30 seconds.",
        what.key()
    );
    Ok(())
}

/// An OLT's polling schedule from its settings; its address resolved once, port 161 by default.
fn olt_schedule(
    o: &sync_server::settings::OltSettings,
) -> anyhow::Result<sync_server::hub::access::Schedule> {
    use std::net::ToSocketAddrs as _;
    let with_port = if sync_server::hub::access::host_of(&o.address) == o.address {
        format!("{}:161", o.address)
    } else {
        o.address.clone()
    };
    let addr = with_port
        .to_socket_addrs()
        .with_context(|| format!("the address of OLT {}: {}", o.name, o.address))?
        .next()
        .with_context(|| format!("OLT {}: {} resolves to nothing", o.name, o.address))?;
    Ok(sync_server::hub::access::Schedule {
        target: sync_server::hub::olt::Target {
            name: o.name.clone(),
            addr,
            community: o.community.expose().to_owned(),
            vendor: o.vendor,
            timeout: std::time::Duration::from_millis(o.timeout_ms.max(100)),
            tries: o.tries.max(1),
        },
        every: std::time::Duration::from_secs(o.interval_s.max(5)),
    })
}

fn server_author() -> Author {
    Author::new(Role::Server, DeviceId(DocId::from_u128(0x5e)))
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = <Cli as clap::Parser>::parse();
    // The binary is where the environment is read; everything below gets `Settings`.
    let mut settings = Settings::load(args.config.as_deref(), std::env::vars().collect())
        .context("reading settings")?;
    if let Some(d) = &args.data {
        settings.data_dir = d.clone();
    }
    if let Some(l) = &args.listen {
        settings.listen = l.clone();
    }
    if let Some(p) = &args.postgres {
        settings.postgres_url = Some(sync_server::settings::Secret::new(p.clone()));
    }
    if let Some(v) = &args.min_app_version {
        settings.min_app_version = Some(v.clone());
    }
    if let Some(v) = &args.postgres_schema {
        settings.postgres_schema = v.clone();
    }
    if let Cmd::Erpnext {
        action: ErpCmd::Setup,
    } = args.command
    {
        return erpnext_command(&settings);
    }
    let demo_mode = matches!(args.command, Cmd::Demo);
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating {}", settings.data_dir.display()))?;
    let pg_ca = settings
        .postgres_ca_file
        .as_ref()
        .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
        .transpose()?;
    let mut store: Box<dyn Store> = match &settings.postgres_url {
        Some(url) => Box::new(
            PostgresStore::connect_with(url.expose(), &settings.postgres_schema, pg_ca.as_deref())
                .context("connecting to PostgreSQL")?,
        ),
        None => Box::new(
            SqliteStore::open(
                &settings.data_dir.join("sync.sqlite3"),
                settings.sqlite_full_sync,
            )
            .context("opening the store")?,
        ),
    };
    if let Cmd::Revoke { device, technician } = args.command {
        return revoke_command(device.map(DeviceId), technician, &settings, store.as_mut());
    }
    if matches!(args.command, Cmd::Restored) {
        // The time in the store's meta; the service reads it before compacting.
        let now = SystemClock.now();
        store.set_meta(sync_server::service::RESTORED_AT, &now.0.to_string())?;
        println!(
            "restore recorded: nothing is compacted for {} days while devices send back the work the backup lacks",
            settings.device_retention_days
        );
        return Ok(());
    }
    // The demo's secret signs only for the demo, or for `token --demo`: never a silent fallback.
    let keys = Arc::new(
        Keys::from_secret(&secret(
            &settings,
            store.as_mut(),
            demo_mode || matches!(args.command, Cmd::Token { demo: true, .. }),
        )?)
        .with_lifetimes(settings.lifetimes()),
    );
    if let Cmd::Token {
        role,
        technician,
        days,
        ..
    } = args.command
    {
        if role == Role::Technician && technician.is_none() {
            bail!("a technician token needs --technician ID");
        }
        println!("{}", token(&keys, role, technician, days)?);
        return Ok(());
    }
    let empty = store.is_empty()?;
    let retention =
        std::time::Duration::from_secs(settings.device_retention_days.saturating_mul(86_400));
    let mut config = ServerConfig::new(server_author());
    // Offline work on a document that left a device's scope is accepted this long after.
    let grace = std::time::Duration::from_secs(settings.push_grace_days.saturating_mul(86_400));
    config.push_grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    let mut service =
        SyncService::open(config, store, Box::new(SystemClock))?.with_retention(grace);
    if let Some(v) = &settings.min_app_version {
        service = service.with_min_app_version(semver::Version::parse(v)?);
    }
    let service = Arc::new(service);
    if let Some(url) = &settings.postgres_url {
        // Other instances on the same schema: catch up as soon as one of them commits.
        let (url, schema, svc, ca) = (
            url.expose().to_owned(),
            settings.postgres_schema.clone(),
            Arc::clone(&service),
            pg_ca,
        );
        std::thread::spawn(move || {
            loop {
                let r = PostgresStore::listen(&url, &schema, ca.as_deref(), || {
                    tracing::debug!("store.notified");
                    if let Err(e) = svc.catch_up() {
                        tracing::warn!(error = %e, "store.catch_up_failed");
                    }
                });
                tracing::warn!(error = ?r.err(), "store.listener_stopped");
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        });
    }
    if demo_mode {
        if empty {
            let data = demo::generate(demo::DEMO_SEED, demo::DEMO_SPEC, SystemClock.now().date());
            service.seed(&data.entities, SystemClock.now())?;
            println!(
                "Seeded {} documents (Québec demo data).",
                data.entities.len()
            );
        }
        let tech = service.with_engine(|e| {
            let mut techs: Vec<(String, TechnicianId)> = e
                .doc_ids()
                .filter_map(|d| match e.entity(d) {
                    Some(AnyEntity::Technician(t)) => Some((t.name.to_string(), t.id)),
                    _ => None,
                })
                .collect();
            techs.sort();
            Ok((techs.into_iter().next(), Vec::new()))
        })?;
        println!("\nSync server (demo) on http://{}", settings.listen);
        if let Some((name, id)) = tech {
            println!(
                "Technician token ({name}):\n  {}",
                token(&keys, Role::Technician, Some(id), DEMO_TOKEN_DAYS)?
            );
        }
        println!(
            "Dispatcher token:\n  {}",
            token(&keys, Role::Dispatcher, None, DEMO_TOKEN_DAYS)?
        );
        println!("\nData in {}; Ctrl-C stops.", settings.data_dir.display());
    }
    // Revocations made from the command line (or another instance): read again every 30 s.
    {
        let svc = Arc::clone(&service);
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(30));
                if let Err(e) = svc.reload_revocations() {
                    tracing::warn!(error = %e, "auth.revocations_not_reloaded");
                }
            }
        });
    }
    // Compaction keeps documents and the log bounded by state, not history: every few minutes,
    // documents with a long history that every holder has synced past are rebuilt.
    {
        let svc = Arc::clone(&service);
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(300));
                match svc.compact(retention) {
                    Ok(n) if n > 0 => tracing::info!(documents = n, "sync.compacted"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "sync.compaction_failed"),
                }
            }
        });
    }
    // The runtime starts after the set-up: the PostgreSQL client is blocking and must not be
    // created inside it.
    // The store is blocking I/O run beside the workers (`block_in_place`): bound the threads
    // that may stand in for them, so a burst never grows the process to hundreds of threads.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(32)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let erp = match &settings.erpnext {
        Some(e) => {
            let bridge = Bridge::new(
                Arc::clone(&service),
                ErpClient::new(&erp_config(e)?)?,
                BridgeOptions {
                    concurrency: e.concurrency.max(1),
                    poll_interval: std::time::Duration::from_secs(e.poll_interval_s.max(1)),
                    ..BridgeOptions::default()
                },
            )?;
            println!("ERPNext bridge on, to {}", e.url);
            rt.spawn(Arc::clone(&bridge).run(stop_rx.clone()));
            Some(Arc::new(ErpEdge {
                bridge,
                webhook_secret: e.webhook_secret.clone(),
            }))
        }
        None => None,
    };
    let photos = sync_server::photos::PhotoStore::open(&settings.data_dir.join("photos"))
        .context("opening the photo folder")?;
    // The demo turns on every integration not configured against its local double.
    let peers = if demo_mode {
        // Read off the runtime: the store may be PostgreSQL's blocking client.
        let acs = match settings.genieacs {
            None => Some(demo_acs(&service)?),
            Some(_) => None,
        };
        let olt = if settings.olts.is_empty() {
            Some(demo_olt(&service)?)
        } else {
            None
        };
        Some(rt.block_on(demo_peers(&mut settings, acs, olt))?)
    } else {
        None
    };
    // The webhook inbox and what it feeds, in the data folder whatever the sync store.
    let hub = sync_server::hub::Hub::open(
        &settings.data_dir,
        sync_server::hub::HubSettings {
            twilio: settings.twilio.clone(),
            stripe: settings.stripe.clone(),
            public_url: peers
                .as_ref()
                .and_then(|p| p.twilio.as_ref().map(|_| DEMO_PUBLIC.to_owned()))
                .or_else(|| settings.public_url.clone()),
            full_sync: settings.sqlite_full_sync,
            uptime_kuma_secret: settings.uptime_kuma_secret.clone(),
            usp: match settings
                .oktopus
                .as_ref()
                .and_then(|o| Some((o.url.clone()?, o.email.clone()?, o.password.clone()?)))
            {
                Some((url, email, password)) => Some(Arc::new(
                    sync_server::hub::oktopus::OktopusClient::new(
                        &url,
                        &email,
                        password,
                        std::time::Duration::from_secs(30),
                    )
                    .context("the Oktopus client")?,
                )
                    as Arc<dyn sync_server::hub::oktopus::Usp>),
                None => None,
            },
            olts: settings
                .olts
                .iter()
                .map(|o| {
                    (
                        o.name.clone(),
                        sync_server::hub::access::host_of(&o.address).to_owned(),
                    )
                })
                .collect(),
            acs: match &settings.genieacs {
                Some(g) => Some(Arc::new(
                    sync_server::hub::acs::GenieAcsClient::new(
                        &g.url,
                        std::time::Duration::from_secs(g.timeout_s.max(1)),
                        std::time::Duration::from_millis(g.connection_request_ms),
                    )
                    .context("the GenieACS client")?,
                ) as Arc<dyn sync_server::hub::acs::Acs>),
                None => None,
            },
            vision: match &settings.gemini {
                Some(g) => Some((
                    Arc::new(
                        sync_server::hub::vision::GeminiClient::new(g)
                            .context("the Gemini client")?,
                    ) as Arc<dyn sync_server::hub::vision::VisionModel>,
                    g.daily_cap,
                    std::time::Duration::from_secs(g.budget_s),
                )),
                None => None,
            },
            pages: match settings
                .stripe
                .as_ref()
                .and_then(|s| s.secret_key.clone().map(|k| (s.api_url.clone(), k)))
            {
                Some((api, key)) => Some(Arc::new(
                    sync_server::hub::stripe::StripeClient::new(&api, key)
                        .context("the Stripe client")?,
                )
                    as Arc<dyn sync_server::hub::stripe::PaymentPages>),
                None => None,
            },
        },
        sync_server::hub::customers_by_phone(Arc::clone(&service)),
    )
    .context("opening the webhook inbox")?;
    if let Some(t) = &settings.twilio {
        let client = sync_server::hub::twilio::TwilioClient::new(
            t.clone(),
            std::time::Duration::from_secs(30),
        )
        .context("the Twilio client")?;
        rt.spawn(sync_server::hub::twilio::run_sender(
            Arc::clone(&hub.sms),
            Arc::new(client),
            hub.public_url.clone(),
            Arc::new(SystemClock),
            stop_rx.clone(),
        ));
        // Customers told their technician is on the way (only while it is true).
        let zone = jiff::tz::TimeZone::get(&settings.time_zone)
            .with_context(|| format!("time zone {}", settings.time_zone))?;
        rt.spawn(sync_server::hub::notify::run(
            Arc::clone(&service),
            Arc::clone(&hub.sms),
            zone,
            stop_rx.clone(),
        ));
    }
    match (
        &erp,
        settings.stripe.as_ref().and_then(|s| {
            s.erp_account
                .clone()
                .map(|a| (a, s.mode_of_payment.clone()))
        }),
    ) {
        (Some(edge), Some((paid_to, mode_of_payment))) => {
            rt.spawn(sync_server::hub::ledger::run(
                Arc::clone(&hub.ledger),
                edge.bridge.erp().clone(),
                sync_server::hub::ledger::Accounts {
                    paid_to,
                    mode_of_payment,
                },
                Arc::new(SystemClock),
                sync_server::hub::ledger::MAX_RETRY_DELAY,
                stop_rx.clone(),
            ));
        }
        (Some(_), None) if settings.stripe.is_some() => {
            println!(
                "Stripe payments are not posted to ERPNext: set stripe.erp_account (APP_STRIPE__ERP_ACCOUNT) to the account they are received into."
            );
        }
        _ => {}
    }
    if let Some((o, host)) = settings
        .oktopus
        .as_ref()
        .and_then(|o| o.mqtt_host.clone().map(|h| (o, h)))
    {
        println!(
            "Oktopus: following box presence on MQTT {host}:{}",
            o.mqtt_port
        );
        rt.spawn(sync_server::hub::usp::run(
            Arc::clone(&hub.presence),
            sync_server::hub::usp::MqttLink {
                host,
                port: o.mqtt_port,
                client_id: o.mqtt_client_id.clone(),
                credentials: o.mqtt_username.clone().map(|u| {
                    (
                        u,
                        o.mqtt_password
                            .as_ref()
                            .map(|p| p.expose().to_owned())
                            .unwrap_or_default(),
                    )
                }),
            },
            Arc::new(SystemClock),
            stop_rx.clone(),
        ));
    }
    if let Some(access) = &hub.access {
        let schedules = settings
            .olts
            .iter()
            .map(olt_schedule)
            .collect::<anyhow::Result<Vec<_>>>()?;
        println!(
            "Polling {} OLT(s) over SNMP: {}",
            schedules.len(),
            schedules
                .iter()
                .map(|s| format!("{} every {} s", s.target.name, s.every.as_secs()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        rt.spawn(sync_server::hub::access::run(
            Arc::clone(access),
            schedules,
            std::time::Duration::from_secs(settings.outage_window_s),
            Arc::new(SystemClock),
            stop_rx.clone(),
        ));
    }
    if settings.webhook_processing {
        let handlers = hub.handlers(erp.as_ref().map(|e| Arc::clone(&e.bridge)));
        rt.spawn(sync_server::hub::inbox::run(
            Arc::clone(&hub.inbox),
            handlers,
            Arc::new(SystemClock),
            stop_rx,
        ));
    } else {
        println!("Webhook processing is off: webhooks are verified and stored, not processed.");
    }
    let state = AppState {
        sync: service,
        keys,
        erp,
        photos: Some(Arc::new(photos)),
        links: Arc::new(settings.links()),
        hub: Some(hub),
    };
    // TLS served here when a certificate is configured; otherwise plain HTTP, for a reverse
    // proxy that ends TLS in front (or the demo on loopback).
    let tls = match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) if !demo_mode => Some(
            sync_server::tls::Reloading::open(sync_server::tls::CertFiles {
                cert: cert.clone(),
                key: key.clone(),
            })
            .context("loading the TLS certificate")?,
        ),
        _ => None,
    };
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&settings.listen)
            .await
            .with_context(|| format!("listening on {}", settings.listen))?;
        // The address it got (a port of 0 asks the system for a free one): whoever started the
        // server reads it here, rather than guessing a free port and polling it.
        let bound = listener.local_addr().context("the listening address")?;
        if let Some(twilio) = peers.as_ref().and_then(|p| p.twilio.as_ref()) {
            // The double's callbacks, signed over the public URL Twilio was given, come here.
            twilio.route_callbacks(DEMO_PUBLIC, &format!("http://{bound}"));
        }
        if let (Some(stripe), Some(s)) = (
            peers.as_ref().and_then(|p| p.stripe.as_ref()),
            settings.stripe.as_ref(),
        ) {
            stripe.set_webhook(
                &format!("http://{bound}/api/v1/webhooks/stripe"),
                s.webhook_secret.expose(),
            );
        }
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            writeln!(out, "Listening on {bound}")?;
            out.flush()?;
        }
        let shutdown = async move {
            let _ = tokio::signal::ctrl_c().await;
            let _ = stop_tx.send(true);
        };
        match tls {
            Some(tls) => {
                tls.watch(std::time::Duration::from_secs(60));
                let config = tls.server_config().context("TLS settings")?;
                tracing::info!(addr = %settings.listen, tls = true, "server.listening");
                let listener = sync_server::tls::TlsListener::new(listener, config)?;
                sync_server::serve(listener, state, shutdown).await?;
            }
            None => {
                tracing::info!(addr = %settings.listen, tls = false, "server.listening");
                sync_server::serve(listener, state, shutdown).await?;
            }
        }
        anyhow::Ok(())
    })
}

/// The public URL the demo's Twilio double is told about (its callbacks are delivered to the
/// address the demo listens on, signed over this one, as Twilio signs what it was given).
const DEMO_PUBLIC: &str = "http://demo.fsm.invalid";

/// The integrations the demo runs against local doubles.
struct DemoPeers {
    twilio: Option<sync_server::doubles::twilio::TwilioDouble>,
    stripe: Option<sync_server::doubles::stripe::StripeDouble>,
    _gemini: Option<sync_server::doubles::gemini::GeminiDouble>,
    _genieacs: Option<sync_server::doubles::genieacs::GenieAcsDouble>,
    _oktopus: Option<sync_server::doubles::oktopus::OktopusDouble>,
    _olt: Option<sync_server::doubles::olt::OltDouble>,
}

/// Starts a local double for each integration the settings leave off, and points the settings
/// at it; says what it did.
async fn demo_peers(
    settings: &mut sync_server::settings::Settings,
    acs: Option<sync_server::doubles::genieacs::GenieAcsDouble>,
    olt: Option<DemoOlt>,
) -> anyhow::Result<DemoPeers> {
    use sync_server::doubles::{gemini::GeminiDouble, twilio::TwilioDouble};
    use sync_server::settings::{GeminiSettings, Secret, StripeSettings, TwilioSettings};
    let secret = || format!("{:032x}", rand::random::<u128>());
    let mut peers = DemoPeers {
        twilio: None,
        stripe: None,
        _gemini: None,
        _genieacs: None,
        _oktopus: None,
        _olt: None,
    };
    if settings.twilio.is_none() {
        let sid = format!("AC{}", secret());
        let token = secret();
        let double = TwilioDouble::new(&sid, &token);
        let api = double.start().await.context("starting the Twilio double")?;
        settings.twilio = Some(TwilioSettings {
            account_sid: sid,
            auth_token: Secret::new(token),
            from: "+15005550006".into(),
            api_url: api.clone(),
        });
        println!("Twilio: local double at {api} (texts are not really sent; delivery is reported)");
        peers.twilio = Some(double);
    }
    if settings.gemini.is_none() {
        let key = secret();
        let double = GeminiDouble::new(&key);
        let api = double.start().await.context("starting the Gemini double")?;
        settings.gemini = Some(GeminiSettings {
            api_key: Secret::new(key),
            model: "gemini-2.5-flash".into(),
            api_url: api.clone(),
            daily_cap: 500,
            timeout_s: 30,
            budget_s: 30,
        });
        println!("Gemini: local double at {api} (it answers a sample label whatever the photo)");
        peers._gemini = Some(double);
    }
    if settings.stripe.is_none() {
        let webhook_secret = format!("whsec_{}", secret());
        let key = format!("sk_test_{}", secret());
        let double = sync_server::doubles::stripe::StripeDouble::new(&key);
        let api = double.start().await.context("starting the Stripe double")?;
        println!(
            "Stripe: local double at {api} (payment pages; its events are signed with {webhook_secret}, demo only)"
        );
        settings.stripe = Some(StripeSettings {
            secret_key: Some(Secret::new(key)),
            webhook_secret: Secret::new(webhook_secret),
            api_url: api,
            erp_account: None,
            mode_of_payment: "Stripe".into(),
        });
        peers.stripe = Some(double);
    }
    if let Some(double) = acs {
        let boxes = double.len();
        let url = double
            .start()
            .await
            .context("starting the GenieACS double")?;
        println!(
            "GenieACS: local double at {url}, {boxes} boxes installed at the demo's addresses (real documents of four models; every tenth box does not answer)"
        );
        settings.genieacs = Some(sync_server::settings::GenieAcsSettings {
            url,
            timeout_s: 30,
            connection_request_ms: 4000,
        });
        peers._genieacs = Some(double);
    }
    if settings.oktopus.as_ref().is_none_or(|o| o.url.is_none()) {
        let password = secret();
        let double = sync_server::doubles::oktopus::OktopusDouble::new(
            "demo@fsm.invalid",
            &password,
            Arc::new(SystemClock),
        );
        demo_usp_agents(&double);
        let url = double
            .start()
            .await
            .context("starting the Oktopus double")?;
        println!("Oktopus: local double at {url} (three USP agents, one online)");
        let o = settings
            .oktopus
            .get_or_insert_with(|| sync_server::settings::OktopusSettings {
                url: None,
                email: None,
                password: None,
                mqtt_host: None,
                mqtt_port: 1883,
                mqtt_client_id: "fsm-sync-server".into(),
                mqtt_username: None,
                mqtt_password: None,
            });
        o.url = Some(url);
        o.email = Some("demo@fsm.invalid".into());
        o.password = Some(Secret::new(password));
        peers._oktopus = Some(double);
    }
    if let Some(plan) = olt {
        let community = secret();
        let (count, cut) = (plan.onus.len(), plan.cut.len());
        let double = sync_server::doubles::olt::OltDouble::start(&community, plan.onus, plan.cut)
            .await
            .context("starting the OLT double")?;
        println!(
            "OLT: local SNMP double at {} ({count} ONUs of the demo's ONTs; after the first poll {cut} go dark: a cut feeder on one PON port and one customer's box)",
            double.addr
        );
        settings.olts.push(sync_server::settings::OltSettings {
            name: "OLT Démo".into(),
            address: double.addr.to_string(),
            community: Secret::new(community),
            vendor: sync_server::hub::olt::Vendor::Huawei,
            interval_s: 5,
            timeout_ms: 1000,
            tries: 2,
        });
        peers._olt = Some(double);
    }
    Ok(peers)
}

/// What the demo's OLT serves: its ONUs, and those that go dark after its first poll.
struct DemoOlt {
    onus: Vec<sync_server::doubles::olt::DemoOnu>,
    cut: Vec<(sync_server::hub::olt::PonPort, u32)>,
}

/// The demo's ONTs with a GPON serial on one Huawei OLT, 64 to a PON port in serial order; the
/// cut: the ONT of the first technician's first open job of today and up to four of its port
/// neighbours (a feeder cut those customers would call about), and one ONT on another port.
fn demo_olt(service: &Arc<sync_server::service::SyncService>) -> anyhow::Result<DemoOlt> {
    use shared::model::{AnyEntity, EquipmentType};
    use sync_server::doubles::olt::DemoOnu;
    use sync_server::hub::olt::{PonPort, normalize_serial};
    let today = service.now().date();
    let (mut onts, target) = service.read(|e| {
        let mut onts: Vec<(String, DocId)> = Vec::new();
        let mut jobs: Vec<(String, DocId)> = Vec::new();
        for d in e.doc_ids() {
            match e.entity(d) {
                Some(AnyEntity::Equipment(q)) if q.kind == EquipmentType::Ont => {
                    if let (Some(s), Some(l)) = (normalize_serial(q.serial.as_str()), q.location) {
                        onts.push((s, l.doc()));
                    }
                }
                Some(AnyEntity::Job(j))
                    if j.date == today && !j.status.is_terminal() && j.technician.is_some() =>
                {
                    jobs.push((
                        j.start.map(|t| t.to_string()).unwrap_or_default(),
                        j.location.doc(),
                    ));
                }
                _ => {}
            }
        }
        jobs.sort();
        (onts, jobs.first().map(|(_, l)| *l))
    })?;
    onts.sort();
    let port = |i: usize| PonPort {
        frame: 0,
        slot: u32::try_from(i / 64 / 16 + 1).unwrap_or(1),
        port: u32::try_from(i / 64 % 16).unwrap_or(0),
    };
    let onus: Vec<DemoOnu> = onts
        .iter()
        .enumerate()
        .map(|(i, (serial, _))| DemoOnu {
            port: port(i),
            onu: u32::try_from(i % 64).unwrap_or(0),
            serial: serial.clone(),
            online: true,
        })
        .collect();
    if onus.is_empty() {
        return Ok(DemoOlt {
            onus,
            cut: Vec::new(),
        });
    }
    let at = target
        .and_then(|l| onts.iter().position(|(_, loc)| *loc == l))
        .unwrap_or(0);
    let mut cut: Vec<(PonPort, u32)> = (at..onus.len())
        .map(|i| &onus[i])
        .take_while(|o| o.port == onus[at].port)
        .take(5)
        .map(|o| (o.port, o.onu))
        .collect();
    if let Some(other) = onus.iter().find(|o| o.port != onus[at].port) {
        cut.push((other.port, other.onu));
    }
    Ok(DemoOlt { onus, cut })
}

/// A GenieACS double with a box behind each of the demo's installed ONTs and routers: the real
/// document of the model the record names (XX230v, EX220, EG8145V5, BM632w), else by kind
/// (ONTs an XX230v or EG8145V5, routers an EX220 or BM632w), each with its own serial and MAC. Every tenth box does not answer connection requests.
fn demo_acs(
    service: &Arc<sync_server::service::SyncService>,
) -> anyhow::Result<sync_server::doubles::genieacs::GenieAcsDouble> {
    use shared::model::{AnyEntity, EquipmentType};
    use sync_server::doubles::genieacs::{Behaviour, GenieAcsDouble, dumps};
    let templates: std::collections::HashMap<&str, Arc<serde_json::Value>> = dumps()
        .into_iter()
        .map(|(name, doc)| (name, Arc::new(doc)))
        .collect();
    // The model the record names, when it is one of the four; else by kind.
    let pick = |model: Option<&str>, kind: EquipmentType, n: usize| match (kind, n % 2) {
        _ if model.is_some_and(|m| templates.contains_key(m)) => {
            model.and_then(|m| templates.get(m))
        }
        (EquipmentType::Ont, 0) => templates.get("XX230v"),
        (EquipmentType::Ont, _) => templates.get("EG8145V5"),
        (_, 0) => templates.get("EX220"),
        (_, _) => templates.get("BM632w"),
    };
    let boxes = service.read(|e| {
        e.doc_ids()
            .filter_map(|d| match e.entity(d) {
                Some(AnyEntity::Equipment(q))
                    if q.location.is_some()
                        && matches!(q.kind, EquipmentType::Ont | EquipmentType::Router) =>
                {
                    Some((
                        q.model.clone(),
                        q.kind,
                        q.serial.as_str().to_owned(),
                        q.mac.map(|m| m.to_string()),
                    ))
                }
                _ => None,
            })
            .collect::<Vec<_>>()
    })?;
    let double = GenieAcsDouble::new(Arc::new(SystemClock));
    for (n, (model, kind, serial, mac)) in boxes.iter().enumerate() {
        let Some(template) = pick(model.as_deref(), *kind, n) else {
            continue;
        };
        let id = double.add_as(template, serial, mac.as_deref());
        if n % 10 == 9 {
            double.set_behaviour(&id, Behaviour::Offline);
        }
    }
    Ok(double)
}

/// The demo's USP agents: one online with its DeviceInfo and Wi-Fi, one offline, one
/// associating.
fn demo_usp_agents(double: &sync_server::doubles::oktopus::OktopusDouble) {
    use sync_server::hub::oktopus::UspDevice;
    let agent = |sn: &str, status: u8| UspDevice {
        sn: sn.into(),
        model: "OB-USP".into(),
        vendor: "OB-USP-AGENT".into(),
        version: "9.0.0".into(),
        product_class: "USP Agent".into(),
        alias: String::new(),
        status,
    };
    let params: std::collections::BTreeMap<String, serde_json::Value> = [
        ("Device.DeviceInfo.Manufacturer", "OB-USP-AGENT"),
        ("Device.DeviceInfo.ModelName", "OB-USP"),
        ("Device.DeviceInfo.SoftwareVersion", "9.0.0"),
        ("Device.DeviceInfo.UpTime", "86400"),
        ("Device.WiFi.SSID.1.SSID", "Maison"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), serde_json::Value::from(v)))
    .collect();
    double.add(agent("oktopus-0-mqtt", 2), params.clone());
    double.add(agent("oktopus-1-ws", 0), params);
    double.add(
        agent("oktopus-2-stomp", 1),
        std::collections::BTreeMap::new(),
    );
}
