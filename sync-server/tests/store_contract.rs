//! One contract for every store: SQLite (embedded) and PostgreSQL (the real server on this
//! machine; `FSM_TEST_PG_URL` points elsewhere). A missing PostgreSQL fails the test with a
//! message saying so: it is never skipped silently.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;

use shared::clock::Millis;
use shared::ids::{Author, DeviceId, DocId, Role};
use shared::model::AnyEntity;
use shared::record::{FieldChange, Record, Scalar};
use shared::sync::server::{ServerConfig, ServerEffect, ServerEngine};
use sync_server::demo;
use sync_server::store::postgres_store::PostgresStore;
use sync_server::store::{SqliteStore, Store};

const NOW: Millis = Millis(1_795_424_400_000);

fn config() -> ServerConfig {
    let mut c = ServerConfig::new(Author::new(Role::Server, DeviceId(DocId::from_u128(0x5e))));
    c.compact_after = 3;
    c
}

/// Each document's record, epoch and bytes.
type Snapshot = BTreeMap<DocId, (Record, Option<(u32, Vec<u8>)>)>;

fn records(e: &ServerEngine) -> Snapshot {
    e.doc_ids()
        .map(|d| {
            (
                d,
                (
                    e.record(d).unwrap().clone(),
                    e.doc_bytes(d).map(|(ep, b)| (ep, b.to_vec())),
                ),
            )
        })
        .collect()
}

fn contract(store: &mut dyn Store) {
    assert!(store.is_empty().unwrap(), "a new store is empty");
    store.persist(&[]).unwrap();

    // Real effects: seeding, edits, a compaction.
    let mut engine = ServerEngine::new(config());
    let spec = demo::Spec {
        technicians: 1,
        jobs_per_technician: 3,
        locations: 3,
        subscribers_per_location: 1,
        equipment_per_location: 1,
        days_back: 1,
        days_ahead: 2,
    };
    let data = demo::generate(3, spec, NOW.date());
    let batch = engine.insert_all(&data.entities, NOW).unwrap();
    store.persist(&batch).unwrap();
    let job = data.jobs[0].doc();
    for i in 0..4 {
        let fx = engine
            .edit(
                job,
                &[FieldChange::Set {
                    field: "description".into(),
                    value: Scalar::str(format!("v{i}")),
                }],
                NOW,
            )
            .unwrap();
        store.persist(&fx).unwrap();
    }
    let fx = engine.compact(NOW, u64::MAX).unwrap();
    assert!(
        fx.iter()
            .any(|e| matches!(e, ServerEffect::Compacted { .. })),
        "the test compacts something"
    );
    store.persist(&fx).unwrap();
    let fx = engine
        .edit(
            job,
            &[FieldChange::Set {
                field: "description".into(),
                value: Scalar::str("after compaction"),
            }],
            NOW,
        )
        .unwrap();
    store.persist(&fx).unwrap();
    assert!(!store.is_empty().unwrap());

    // Rebuilt from the store, the engine is the same.
    let (docs, log) = store.load().unwrap();
    let restored = ServerEngine::restore(config(), docs, log, 42).unwrap();
    assert_eq!(records(&restored), records(&engine));
    assert_eq!(restored.stats().head_seq, engine.stats().head_seq);
    assert_eq!(
        restored.stats().log_entries,
        engine.stats().log_entries,
        "compacted history is gone from the store too"
    );
    assert_eq!(
        restored.record(job).unwrap().get("description"),
        &Scalar::str("after compaction")
    );
    assert!(matches!(restored.entity(job), Some(AnyEntity::Job(_))));

    // A batch is all or nothing: a clashing log sequence undoes the document write before it.
    let before = store.load().unwrap();
    let clash = vec![
        ServerEffect::PutDoc {
            doc: job,
            kind: shared::record::EntityKind::Job,
            epoch: 9,
            bytes: b"junk".to_vec(),
        },
        ServerEffect::AppendLog {
            seq: 1,
            doc: job,
            origin: None,
            change: vec![1],
        },
    ];
    assert!(store.persist(&clash).is_err());
    let after = store.load().unwrap();
    assert_eq!(after.0.len(), before.0.len());
    assert_eq!(
        after
            .0
            .iter()
            .find(|d| d.doc == job)
            .map(|d| (d.epoch, d.bytes.clone())),
        before
            .0
            .iter()
            .find(|d| d.doc == job)
            .map(|d| (d.epoch, d.bytes.clone()))
    );

    assert_eq!(store.meta("k").unwrap(), None);
    store.set_meta("k", "v1").unwrap();
    store.set_meta("k", "v2").unwrap();
    assert_eq!(store.meta("k").unwrap().as_deref(), Some("v2"));
    store.set_meta("erp:shadow:b", "2").unwrap();
    store.set_meta("erp:shadow:a", "1").unwrap();
    store.set_meta("erp:shadowy", "no").unwrap();
    store.set_meta("erp:shado", "no").unwrap();
    assert_eq!(
        store.meta_prefix("erp:shadow:").unwrap(),
        vec![
            ("erp:shadow:a".to_owned(), "1".to_owned()),
            ("erp:shadow:b".to_owned(), "2".to_owned())
        ],
        "a prefix scan returns exactly the keys under the prefix, in key order"
    );
    store.delete_meta("erp:shadow:a").unwrap();
    store.delete_meta("never-set").unwrap();
    assert_eq!(store.meta("erp:shadow:a").unwrap(), None);
    assert_eq!(store.meta_prefix("erp:shadow:").unwrap().len(), 1);

    // Revocation is single-use and forgets what has expired anyway.
    assert!(store.revoke("a", 2_000).unwrap());
    assert!(
        !store.revoke("a", 2_000).unwrap(),
        "a second use is refused"
    );
    assert!(store.revoke("old", 10).unwrap());
    assert_eq!(store.revoked(1_000).unwrap(), vec!["a".to_owned()]);
}

#[test]
fn sqlite_store_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(&dir.path().join("s.sqlite3"), true).unwrap();
    contract(&mut store);
}

#[test]
fn postgres_store_meets_the_contract() {
    #[allow(clippy::disallowed_methods)] // test configuration
    let url = std::env::var("FSM_TEST_PG_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 user=postgres dbname=test".into());
    let schema = format!("fsm_test_{}_{}", std::process::id(), NOW.0 % 1000);
    let mut store = PostgresStore::connect(&url, &schema).unwrap_or_else(|e| {
        panic!("PostgreSQL is needed for this test and is not reachable at `{url}` ({e}); start it or set FSM_TEST_PG_URL")
    });
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| contract(&mut store)));
    drop(store);
    PostgresStore::drop_schema(&url, &schema).unwrap();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

#[test]
fn postgres_commits_are_announced_to_listeners() {
    #[allow(clippy::disallowed_methods)] // test configuration
    let url = std::env::var("FSM_TEST_PG_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 user=postgres dbname=test".into());
    let schema = format!("fsm_notify_{}", std::process::id());
    let mut store = PostgresStore::connect(&url, &schema).unwrap_or_else(|e| {
        panic!("PostgreSQL is needed for this test and is not reachable at `{url}` ({e}); start it or set FSM_TEST_PG_URL")
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let (u, s) = (url.clone(), schema.clone());
    std::thread::spawn(move || {
        let _ = PostgresStore::listen(&u, &s, None, || {
            let _ = tx.send(());
        });
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    store
        .persist(&[ServerEffect::AppendLog {
            seq: 1,
            doc: DocId::from_u128(1),
            origin: None,
            change: vec![1],
        }])
        .unwrap();
    let got = rx.recv_timeout(std::time::Duration::from_secs(2));
    drop(store);
    PostgresStore::drop_schema(&url, &schema).unwrap();
    assert!(got.is_ok(), "the commit was not announced");
}

#[test]
fn postgres_over_tls_honours_sslmode() {
    #[allow(clippy::disallowed_methods)] // test configuration
    let url = std::env::var("FSM_TEST_PG_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 user=postgres dbname=test".into());
    let schema = format!("fsm_tls_{}", std::process::id());
    // Encrypted, the certificate unchecked (libpq's `require`): this machine's PostgreSQL has
    // a self-signed certificate.
    let mut store = PostgresStore::connect(&format!("{url} sslmode=require"), &schema)
        .unwrap_or_else(|e| {
            panic!("PostgreSQL with TLS is needed for this test and is not reachable at `{url}` ({e}); start it with ssl=on or set FSM_TEST_PG_URL")
        });
    assert!(store.encrypted().unwrap(), "the connection is TLS");
    let mut plain = PostgresStore::connect(&format!("{url} sslmode=disable"), &schema).unwrap();
    assert!(!plain.encrypted().unwrap());
    drop((store, plain));
    // `verify-full` checks the certificate: a self-signed one nobody trusts is refused.
    let Err(err) = PostgresStore::connect(&format!("{url} sslmode=verify-full"), &schema) else {
        panic!("an untrusted certificate is refused")
    };
    assert!(err.to_string().contains("certificate"), "{err}");
    PostgresStore::drop_schema(&url, &schema).unwrap();
}

/// Ends every connection the store holds, as a PostgreSQL restart does.
fn end_connections(url: &str, application: &str) {
    let mut admin = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let ended = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&application],
        )
        .unwrap();
    assert!(!ended.is_empty(), "the store had a connection to end");
}

#[test]
fn postgres_restarts_are_survived_with_503_meanwhile_and_nothing_acknowledged_lost() {
    use shared::clock::FixedClock;
    use sync_server::service::{ServiceError, SyncService};

    #[allow(clippy::disallowed_methods)] // test configuration
    let url = std::env::var("FSM_TEST_PG_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 user=postgres dbname=test".into());
    let schema = format!("fsm_reconnect_{}", std::process::id());
    let store_url = format!("{url} application_name={schema}");
    let store = PostgresStore::connect(&store_url, &schema).unwrap_or_else(|e| {
        panic!("PostgreSQL is needed for this test and is not reachable at `{url}` ({e}); start it or set FSM_TEST_PG_URL")
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let service = std::sync::Arc::new(
        SyncService::open(config(), Box::new(store), Box::new(FixedClock::new(NOW))).unwrap(),
    );
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let spec = demo::Spec {
            technicians: 1,
            locations: 2,
            ..demo::DEMO_SPEC
        };
        let data = demo::generate(3, spec, NOW.date());
        service.seed(&data.entities, NOW).unwrap();
        let doc = data
            .entities
            .iter()
            .find(|e| e.kind() == shared::record::EntityKind::Job)
            .unwrap()
            .doc_id();
        let title = |t: &str| {
            vec![FieldChange::Set {
                field: "title".into(),
                value: Scalar::str(t),
            }]
        };
        let edit = |t: &str| service.with_engine(|e| Ok(((), e.edit(doc, &title(t), NOW)?)));
        edit("before the restart").unwrap();

        // Between exchanges: the next one connects again and goes through.
        end_connections(&url, &schema);
        edit("after the restart").unwrap();
        assert!(service.is_ready());

        // In the middle of one: it fails, unacknowledged, and the service refuses work (503)
        // until it has rebuilt itself from the database, on its own.
        rt.spawn(
            std::sync::Arc::clone(&service).keep_recovering(std::time::Duration::from_millis(50)),
        );
        let failed = service.with_engine(|e| {
            end_connections(&url, &schema);
            Ok(((), e.edit(doc, &title("never acknowledged"), NOW)?))
        });
        assert!(
            failed.is_err(),
            "a commit on a dead connection is not acknowledged"
        );
        assert!(!service.is_ready());
        let refused = service.read(|e| e.head());
        assert!(
            matches!(refused, Err(ServiceError::Poisoned)),
            "work is refused meanwhile: {refused:?}"
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !service.is_ready() {
            assert!(
                std::time::Instant::now() < deadline,
                "the service never recovered"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let read = service
            .read(|e| e.record(doc).unwrap().get("title").clone())
            .unwrap();
        assert_eq!(
            read,
            Scalar::str("after the restart"),
            "what was acknowledged, only"
        );
        edit("after the recovery").unwrap();

        // What a fresh process reads from the database is what was acknowledged.
        let fresh = SyncService::open(
            config(),
            Box::new(PostgresStore::connect(&url, &schema).unwrap()),
            Box::new(FixedClock::new(NOW)),
        )
        .unwrap();
        let stored = fresh
            .read(|e| e.record(doc).unwrap().get("title").clone())
            .unwrap();
        assert_eq!(stored, Scalar::str("after the recovery"));
    }));
    drop(rt);
    drop(service);
    PostgresStore::drop_schema(&url, &schema).unwrap();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}
