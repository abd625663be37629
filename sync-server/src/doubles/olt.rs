//! An OLT for `sync-server demo`: an SNMP v2c agent on a loopback UDP port answering GETNEXT
//! and GETBULK over a Huawei MA5800's ONU table (HUAWEI-XPON-MIB columns, as
//! [`olt::columns`] reads them). The tests poll the real `snmpsim` agent instead
//! ([`super::snmpsim`]); this one exists so the demo needs no Python, and it can play an
//! outage: after the first full poll, the ONUs it was told to cut go dark (offline, no light).
//!
//! Requests are decoded with the `snmp` crate's reader; answers are encoded here (BER: the
//! crate only builds requests). A request for another community gets no answer, as a real
//! agent does.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::hub::olt::{self, PonPort};

/// One ONU the double serves.
#[derive(Debug, Clone)]
pub struct DemoOnu {
    pub port: PonPort,
    pub onu: u32,
    /// A GPON serial as people write it (`HWTCA94196A5`).
    pub serial: String,
    pub online: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Int(i64),
    Bytes(Vec<u8>),
}

/// The table as OIDs in order.
type Mib = BTreeMap<Vec<u32>, Value>;

fn mib(onus: &[DemoOnu], cut: &[(PonPort, u32)]) -> Mib {
    let cols = olt::columns(olt::Vendor::Huawei);
    let col = |name: &str| -> Vec<u32> {
        cols.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, oid)| oid.split('.').filter_map(|p| p.parse().ok()).collect())
            .unwrap_or_default()
    };
    let mut out = Mib::new();
    for o in onus {
        let Ok(if_index) = u32::try_from(olt::huawei_if_index(o.port)) else {
            continue;
        };
        let at = |name: &str| {
            let mut k = col(name);
            k.extend([if_index, o.onu]);
            k
        };
        let down = !o.online || cut.contains(&(o.port, o.onu));
        let serial = serial_bytes(&o.serial);
        out.insert(at("serial"), Value::Bytes(serial));
        out.insert(
            at("description"),
            Value::Bytes(format!("client-{}", o.serial).into_bytes()),
        );
        out.insert(at("state"), Value::Int(if down { 2 } else { 1 }));
        out.insert(at("tx"), Value::Int(if down { 2_147_483_647 } else { 221 }));
        out.insert(
            at("rx"),
            Value::Int(if down {
                2_147_483_647
            } else {
                -1700 - i64::from(o.onu % 60) * 10
            }),
        );
    }
    out
}

/// The 8 bytes an OLT reports for a serial written `HWTCA94196A5`.
fn serial_bytes(s: &str) -> Vec<u8> {
    let mut b: Vec<u8> = s.bytes().take(4).collect();
    b.extend(
        (4..s.len().min(12))
            .step_by(2)
            .filter_map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()),
    );
    b
}

// ---- BER, the little an answer needs ------------------------------------------------------

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(u8::try_from(n).unwrap_or(0));
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | u8::try_from(bytes.len()).unwrap_or(0));
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn int(v: i64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    // The shortest two's complement form.
    let mut start = 0;
    while start < 7 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    tlv(0x02, &bytes[start..])
}

fn oid(arcs: &[u32]) -> Vec<u8> {
    let mut content = Vec::new();
    if let [a, b, rest @ ..] = arcs {
        content.push(u8::try_from(a * 40 + b).unwrap_or(0));
        for &arc in rest {
            let mut groups = vec![u8::try_from(arc & 0x7f).unwrap_or(0)];
            let mut v = arc >> 7;
            while v > 0 {
                groups.push(0x80 | u8::try_from(v & 0x7f).unwrap_or(0));
                v >>= 7;
            }
            content.extend(groups.into_iter().rev());
        }
    }
    tlv(0x06, &content)
}

/// A GetResponse-PDU with `(name, value)` varbinds; `None` is endOfMibView.
fn response(community: &[u8], req_id: i64, binds: &[(Vec<u32>, Option<&Value>)]) -> Vec<u8> {
    let mut list = Vec::new();
    for (name, value) in binds {
        let v = match value {
            Some(Value::Int(i)) => int(*i),
            Some(Value::Bytes(b)) => tlv(0x04, b),
            None => vec![0x82, 0x00],
        };
        list.extend(tlv(0x30, &[oid(name), v].concat()));
    }
    let pdu = [int(req_id), int(0), int(0), tlv(0x30, &list)].concat();
    tlv(
        0x30,
        &[int(1), tlv(0x04, community), tlv(0xa2, &pdu)].concat(),
    )
}

/// The answer to one datagram, if it is a v2c GETNEXT or GETBULK for `community`.
fn answer(packet: &[u8], community: &[u8], table: &Mib) -> Option<Vec<u8>> {
    let mut outer = snmp::AsnReader::from_bytes(packet);
    let mut body = snmp::AsnReader::from_bytes(outer.read_raw(0x30).ok()?);
    let _version = body.read_asn_integer().ok()?;
    if body.read_asn_octetstring().ok()? != community {
        return None;
    }
    let pdu = snmp::SnmpPdu::from_bytes(packet).ok()?;
    let names: Vec<Vec<u32>> = pdu
        .varbinds
        .clone()
        .filter_map(|(name, _)| {
            let mut buf = [0u32; 128];
            name.read_name(&mut buf).ok().map(<[u32]>::to_vec)
        })
        .collect();
    let (non_repeaters, repetitions) = match pdu.message_type {
        snmp::SnmpMessageType::GetNextRequest => (names.len(), 1),
        // In a GETBULK the two error fields carry non-repeaters and max-repetitions.
        snmp::SnmpMessageType::GetBulkRequest => (
            usize::try_from(pdu.error_status).unwrap_or(0),
            usize::try_from(pdu.error_index).unwrap_or(0).clamp(1, 60),
        ),
        _ => return None,
    };
    let next = |from: &[u32]| {
        table
            .range::<[u32], _>((std::ops::Bound::Excluded(from), std::ops::Bound::Unbounded))
            .next()
    };
    let mut binds = Vec::new();
    for name in names.iter().take(non_repeaters) {
        binds.push(match next(name) {
            Some((k, v)) => (k.clone(), Some(v)),
            None => (name.clone(), None),
        });
    }
    let repeaters = &names[non_repeaters.min(names.len())..];
    let mut cursors: Vec<Vec<u32>> = repeaters.to_vec();
    for _ in 0..repetitions {
        for c in &mut cursors {
            match next(c) {
                Some((k, v)) => {
                    binds.push((k.clone(), Some(v)));
                    c.clone_from(k);
                }
                None => binds.push((c.clone(), None)),
            }
        }
    }
    Some(response(community, i64::from(pdu.req_id), &binds))
}

/// The demo's OLT: serving until dropped.
#[derive(Debug)]
pub struct OltDouble {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OltDouble {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OltDouble {
    /// Serves `onus` for `community` on a free loopback port of the current runtime; from the
    /// second poll on, the ONUs in `cut` are dark. A poll walks every column from its base, so
    /// the walk that starts a column beyond the first poll's is the second poll's first.
    pub async fn start(
        community: &str,
        onus: Vec<DemoOnu>,
        cut: Vec<(PonPort, u32)>,
    ) -> std::io::Result<Self> {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        let addr = socket.local_addr()?;
        let community = community.as_bytes().to_vec();
        let bases: Vec<Vec<u32>> = olt::columns(olt::Vendor::Huawei)
            .iter()
            .map(|(_, oid)| oid.split('.').filter_map(|p| p.parse().ok()).collect())
            .collect();
        let (before, after) = (mib(&onus, &[]), mib(&onus, &cut));
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            let mut walks = 0usize;
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let packet = &buf[..n];
                // Each walk of a column starts at its base.
                if snmp::SnmpPdu::from_bytes(packet).is_ok_and(|p| {
                    p.varbinds.clone().any(|(name, _)| {
                        let mut b = [0u32; 128];
                        name.read_name(&mut b)
                            .is_ok_and(|o| bases.iter().any(|c| c.as_slice() == o))
                    })
                }) {
                    walks += 1;
                }
                let table = if walks > bases.len() { &after } else { &before };
                if let Some(out) = answer(packet, &community, table) {
                    let _ = socket.send_to(&out, from).await;
                }
            }
        });
        Ok(Self { addr, task })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_oids_encode_as_ber_does() {
        assert_eq!(int(0), vec![2, 1, 0]);
        assert_eq!(int(127), vec![2, 1, 127]);
        assert_eq!(int(128), vec![2, 2, 0, 128]);
        assert_eq!(int(-1), vec![2, 1, 0xff]);
        assert_eq!(int(-1700), vec![2, 2, 0xf9, 0x5c]);
        assert_eq!(
            oid(&[1, 3, 6, 1, 4, 1, 2011]),
            vec![6, 7, 43, 6, 1, 4, 1, 0x8f, 0x5b]
        );
        assert_eq!(
            serial_bytes("HWTCA94196A5"),
            vec![0x48, 0x57, 0x54, 0x43, 0xa9, 0x41, 0x96, 0xa5]
        );
    }

    #[test]
    fn the_pollers_walk_reads_back_what_the_double_serves_and_the_cut_after_one_poll() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let port = |slot| PonPort {
            frame: 0,
            slot,
            port: 3,
        };
        let onus: Vec<DemoOnu> = (0..70u32)
            .map(|n| DemoOnu {
                port: port(n / 64),
                onu: n % 64,
                serial: format!("HWTC{:08X}", 0xA941_0000 + n),
                online: n != 5,
            })
            .collect();
        let cut: Vec<(PonPort, u32)> = (10..14).map(|n| (port(0), n)).collect();
        let double = rt.block_on(OltDouble::start("demo", onus, cut)).unwrap();
        let target = olt::Target {
            name: "demo".into(),
            addr: double.addr,
            community: "demo".into(),
            vendor: olt::Vendor::Huawei,
            timeout: std::time::Duration::from_millis(500),
            tries: 2,
        };
        let first = olt::poll(&target).unwrap();
        assert_eq!(first.len(), 70);
        assert_eq!(first[5].state, olt::OnuState::Offline);
        assert_eq!(first[6].serial.as_deref(), Some("HWTCA9410006"));
        assert_eq!(first[6].rx_dbm, Some(-17.6));
        assert_eq!(first[69].port.to_string(), "0/1/3");
        let second = olt::poll(&target).unwrap();
        let down: Vec<u32> = second
            .iter()
            .filter(|o| o.state.is_down())
            .map(|o| o.onu)
            .collect();
        assert_eq!(down, vec![5, 10, 11, 12, 13]);
        assert_eq!(second[10].rx_dbm, None);
        let wrong = olt::poll(&olt::Target {
            community: "other".into(),
            ..target
        });
        assert!(matches!(wrong, Err(olt::PollError::Unreachable(_))));
    }
}
