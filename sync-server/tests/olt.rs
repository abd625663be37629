//! OLT polling against a real SNMP agent: `snmpsim` from PyPI (installed by `.ci/setup` into
//! `~/.cache/fsm-snmpsim`, or where `FSM_SNMPSIM_PYTHON` points), serving the synthetic Huawei
//! and ZTE fixtures and a generated 4,096-ONU OLT; stopped mid-poll for the unreachable case.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::PathBuf;
use std::time::Duration;

use shared::clock::{Clock as _, FixedClock, Millis};
use shared::network::IncidentKind;
use sync_server::doubles::snmpsim::{Agent, big_huawei, big_huawei_down};
use sync_server::hub::access::{Access, NetworkEvent, Schedule, poll_once};
use sync_server::hub::olt::{self, OnuState, PollError, Target, Vendor};

#[allow(clippy::disallowed_methods)] // where the agent lives is the environment's to say
fn python() -> PathBuf {
    let p = std::env::var("FSM_SNMPSIM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/fsm-snmpsim/bin/python")
        });
    assert!(
        p.exists(),
        "snmpsim is not installed at {}: run .ci/setup (it installs snmpsim 1.2.2 from PyPI there)",
        p.display()
    );
    p
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/data/snmp/{name}")),
    )
    .unwrap()
}

fn target(name: &str, port: u16, community: &str, vendor: Vendor) -> Target {
    Target {
        name: name.into(),
        addr: ([127, 0, 0, 1], port).into(),
        community: community.into(),
        vendor,
        timeout: Duration::from_millis(1500),
        tries: 2,
    }
}

#[test]
fn huawei_and_zte_tables_are_read_value_by_value() {
    let dir = tempfile::tempdir().unwrap();
    let a = Agent::start(
        &python(),
        dir.path(),
        &[
            ("huawei", fixture("huawei-ma5800-gpon.SYNTHETIC.snmprec")),
            ("zte", fixture("zte-c300-gpon.SYNTHETIC.snmprec")),
        ],
    )
    .unwrap();
    let h = olt::poll(&target("huawei", a.port, "huawei", Vendor::Huawei)).unwrap();
    assert_eq!(h.len(), 3, "{h:?}");
    let first = &h[0];
    assert_eq!(first.port.to_string(), "0/1/0");
    assert_eq!(first.onu, 0);
    assert_eq!(first.serial.as_deref(), Some("HWTCA94196A5"));
    assert_eq!(first.description.as_deref(), Some("cliente-0001"));
    assert_eq!(first.state, OnuState::Online);
    assert_eq!((first.rx_dbm, first.tx_dbm), (Some(-19.5), Some(2.32)));
    let second = &h[1];
    assert_eq!((second.onu, second.state), (1, OnuState::Offline));
    assert_eq!(second.rx_dbm, None, "2147483647 is no reading");
    let third = &h[2];
    assert_eq!(third.port.to_string(), "0/1/3");
    assert_eq!(third.serial.as_deref(), Some("TPLGB4FB2AC8"));
    assert_eq!(third.rx_dbm, Some(-23.18));
    let z = olt::poll(&target("zte", a.port, "zte", Vendor::Zte)).unwrap();
    assert_eq!(z.len(), 2, "{z:?}");
    assert_eq!(z[0].port.to_string(), "1/2/1");
    assert_eq!(z[0].serial.as_deref(), Some("ZTEG001122FF"));
    assert_eq!(z[0].description.as_deref(), Some("ONU-1"));
    assert_eq!((z[0].state, z[0].rx_dbm), (OnuState::Online, Some(-18.9)));
    assert_eq!((z[1].state, z[1].rx_dbm), (OnuState::Offline, None));
    // A wrong community is no answer: unreachable, not an empty OLT.
    let wrong = olt::poll(&Target {
        timeout: Duration::from_millis(300),
        ..target("huawei", a.port, "nope", Vendor::Huawei)
    });
    assert_eq!(wrong, Err(PollError::Unreachable("huawei".into())));
}

#[test]
fn a_4096_onu_olt_is_read_whole_and_a_stopped_agent_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let a = Agent::start(&python(), dir.path(), &[("big", big_huawei())]).unwrap();
    let t = target("big", a.port, "big", Vendor::Huawei);
    let onus = olt::poll(&t).unwrap();
    assert_eq!(onus.len(), 4096);
    assert_eq!(
        onus.iter().filter(|o| o.state == OnuState::Offline).count(),
        32 * 3
    );
    let last = onus.last().unwrap();
    assert_eq!(last.port.to_string(), "0/3/7");
    assert_eq!(
        last.serial.as_deref(),
        Some(format!("HWTC{:08X}", 31 * 1000 + 127).as_str())
    );
    assert_eq!(last.rx_dbm, Some(-16.27));
    // The agent stops in the middle of a poll.
    let poll = std::thread::spawn(move || olt::poll(&t));
    std::thread::sleep(Duration::from_millis(150));
    drop(a);
    assert_eq!(
        poll.join().unwrap(),
        Err(PollError::Unreachable("big".into()))
    );
}

/// Polls `olt` through the access network's store, against the agent's `community`.
fn poll_into(access: &Access, port: u16, community: &str, clock: &FixedClock) {
    let schedule = Schedule {
        target: target("big", port, community, Vendor::Huawei),
        every: Duration::from_secs(60),
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(poll_once(
            access,
            &schedule,
            clock,
            Duration::from_secs(180),
        ))
        .unwrap();
}

#[test]
fn a_cut_feeder_is_one_port_outage_a_lone_onu_the_customers_and_a_silent_olt_neither() {
    let dir = tempfile::tempdir().unwrap();
    let access = Access::open(
        &dir.path().join("hub.sqlite3"),
        true,
        vec![("big".into(), "127.0.0.1".into())],
    )
    .unwrap();
    let clock = FixedClock::new(Millis(1_764_547_200_000));
    // Five ONUs of 0/1/2 cut together, and one of 0/3/0; the agent serves the OLT before
    // (community `big`) and after (`cut`).
    let cut: Vec<(u32, u32, u64)> = (10..15).map(|n| (1, 2, n)).chain([(3, 0, 99)]).collect();
    let a = Agent::start(
        &python(),
        dir.path(),
        &[("big", big_huawei()), ("cut", big_huawei_down(&cut))],
    )
    .unwrap();
    poll_into(&access, a.port, "big", &clock);
    let first = access.picture(clock.now().0, &[]).unwrap();
    assert!(
        first.incidents.is_empty(),
        "the 96 ONUs already offline at the first poll are old news: {:?}",
        first.incidents.len()
    );
    assert_eq!((first.olts[0].onus, first.olts[0].onus_down), (4096, 96));

    clock.advance(60_000);
    poll_into(&access, a.port, "cut", &clock);
    let open = access.open_incidents("big").unwrap();
    assert_eq!(open.len(), 2, "{open:?}");
    let outage = open
        .iter()
        .find(|i| i.kind == IncidentKind::PortOutage)
        .unwrap();
    assert_eq!(outage.port.as_deref(), Some("0/1/2"));
    assert_eq!((outage.onus.len(), outage.of), (5, Some(128)));
    assert_eq!(
        outage.onus[0].serial.as_deref(),
        Some(format!("HWTC{:08X}", 10 * 1000 + 10).as_str())
    );
    let fault = open
        .iter()
        .find(|i| i.kind == IncidentKind::CustomerFault)
        .unwrap();
    assert_eq!(fault.port.as_deref(), Some("0/3/0"));
    assert_eq!(fault.onus[0].onu, 99);
    assert_eq!(fault.onus[0].state, OnuState::Offline);
    let line = access
        .line(&format!("HWTC{:08X}", 10 * 1000 + 12))
        .unwrap()
        .unwrap();
    assert_eq!(line.incident.as_ref().map(|i| i.id), Some(outage.id));

    // The OLT goes silent: one "unreachable" incident, and its ONUs' incidents as they were.
    drop(a);
    clock.advance(60_000);
    poll_into(&access, 9, "cut", &clock);
    let open = access.open_incidents("big").unwrap();
    assert_eq!(open.len(), 3, "{open:?}");
    assert!(open.iter().any(|i| i.kind == IncidentKind::OltUnreachable));
    let status = &access.picture(clock.now().0, &[]).unwrap().olts[0];
    assert_eq!(status.reachable, Some(false));
    assert_eq!(status.onus_down, 96 + 6, "silence changes no ONU");
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("does not answer")),
        "{status:?}"
    );

    // Back, with the feeder mended: every incident ends, and the live log tells each step.
    let a = Agent::start(
        &python(),
        &dir.path().join("again"),
        &[("big", big_huawei())],
    )
    .unwrap();
    clock.advance(60_000);
    poll_into(&access, a.port, "big", &clock);
    assert_eq!(access.open_incidents("big").unwrap(), vec![]);
    let events = access.events_after(0, 100).unwrap();
    let ended = events
        .iter()
        .filter(
            |e| matches!(e, NetworkEvent::Incident { incident, .. } if incident.ended.is_some()),
        )
        .count();
    assert_eq!(ended, 3, "{events:?}");
}
