//! OLT polling against a real SNMP agent: `snmpsim` from PyPI (installed by `.ci/setup` into
//! `~/.cache/fsm-snmpsim`, or where `FSM_SNMPSIM_PYTHON` points), serving the synthetic Huawei
//! and ZTE fixtures and a generated 4,096-ONU OLT; stopped mid-poll for the unreachable case.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::PathBuf;
use std::time::Duration;

use sync_server::doubles::snmpsim::{Agent, big_huawei, big_huawei_down};
use sync_server::hub::olt::{self, Finding, OnuState, PollError, Target, Vendor};

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

#[test]
fn a_cut_feeder_is_one_port_outage_and_a_lone_onu_is_the_customers() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let a = Agent::start(&python(), dir.path(), &[("big", big_huawei())]).unwrap();
        olt::poll(&target("big", a.port, "big", Vendor::Huawei)).unwrap()
    };
    // Next poll: five ONUs of 0/1/2 down together, and one of 0/3/0.
    let cut: Vec<(u32, u32, u64)> = (10..15).map(|n| (1, 2, n)).chain([(3, 0, 99)]).collect();
    let after = {
        let dir = tempfile::tempdir().unwrap();
        let a = Agent::start(&python(), dir.path(), &[("big", big_huawei_down(&cut))]).unwrap();
        olt::poll(&target("big", a.port, "big", Vendor::Huawei)).unwrap()
    };
    let changes = olt::diff(&before, &after);
    assert_eq!(changes.len(), 6, "{changes:?}");
    let findings = olt::correlate(&changes, &after);
    assert_eq!(findings.len(), 2, "{findings:?}");
    let Finding::PortOutage { port, onus, of } = &findings[0] else {
        panic!("{findings:?}");
    };
    assert_eq!(port.to_string(), "0/1/2");
    assert_eq!((onus.len(), *of), (5, 128));
    assert_eq!(
        onus[0].1.as_deref(),
        Some(format!("HWTC{:08X}", 10 * 1000 + 10).as_str())
    );
    assert!(matches!(
        &findings[1],
        Finding::CustomerFault {
            onu: 99,
            state: OnuState::Offline,
            ..
        }
    ));
}
