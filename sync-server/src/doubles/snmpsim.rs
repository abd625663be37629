//! The real `snmpsim` agent (PyPI), run for the OLT tests and `cargo xtask bench network`: it
//! serves snmprec files on a free UDP port of loopback, and [`big_huawei`] writes a 4,096-ONU
//! Huawei OLT for it. Not a double: the agent is the real SNMP peer, only its data is ours.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::hub::olt;

/// The agent, killed when dropped.
#[derive(Debug)]
pub struct Agent {
    child: Child,
    pub port: u16,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn other_error(what: impl Into<String>) -> std::io::Error {
    std::io::Error::other(what.into())
}

impl Agent {
    /// Starts snmpsim (`python`: the interpreter it is installed for) serving `files`
    /// (community → snmprec text) from a folder it makes in `dir`, on a free UDP port of
    /// loopback; returns once it answers.
    pub fn start(python: &Path, dir: &Path, files: &[(&str, String)]) -> std::io::Result<Agent> {
        use std::os::unix::fs::PermissionsExt;
        let (data, cache) = (dir.join("snmp-data"), dir.join("snmp-cache"));
        std::fs::create_dir_all(&data)?;
        std::fs::create_dir_all(&cache)?;
        for (community, text) in files {
            let file = data.join(format!("{community}.snmprec"));
            std::fs::write(&file, text)?;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))?;
        }
        // As root, snmpsim drops to nobody: what it reads must be readable by nobody.
        for (p, mode) in [
            (dir, 0o755),
            (data.as_path(), 0o755),
            (cache.as_path(), 0o777),
        ] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))?;
        }
        let port = std::net::UdpSocket::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut args = vec![
            "snmpsim".to_owned(),
            format!("--data-dir={}", data.display()),
            format!("--agent-udpv4-endpoint=127.0.0.1:{port}"),
            format!("--cache-dir={}", cache.display()),
        ];
        if is_root() {
            args.push("--process-user=nobody".into());
            args.push("--process-group=nogroup".into());
        }
        // The modules it imports lazily are imported first: once it runs as nobody it cannot
        // read a Python that lives under /root.
        let argv = serde_json::to_string(&args).map_err(|e| other_error(e.to_string()))?;
        let script = format!(
            "import dbm,dbm.dumb,encodings.latin_1,encodings.ascii,encodings.utf_8,encodings.idna,sys; sys.argv={argv}; from snmpsim.commands.responder import main; main()"
        );
        let child = Command::new(python)
            .args(["-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let agent = Agent { child, port };
        let community = files.first().map_or("public", |f| f.0);
        let start = Instant::now();
        loop {
            let mut s = snmp::SyncSession::new(
                ("127.0.0.1", port),
                community.as_bytes(),
                Some(Duration::from_millis(300)),
                1,
            )?;
            if s.get(&[1, 3, 6, 1, 2, 1, 1, 5, 0]).is_ok() {
                return Ok(agent);
            }
            if start.elapsed() > Duration::from_secs(30) {
                return Err(other_error("snmpsim did not answer within 30 s"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A Huawei OLT with 32 PON ports of 128 ONUs (4,096), in snmprec form: ONU `n` of port `p`
/// (`p` = slot·8 + port) has serial `HWTC` + `p·1000+n` in hex, description `client-<that>`,
/// is online unless `n % 50 == 7`, Tx 2.15 dBm, Rx `−(15 + n/100)` dBm.
pub fn big_huawei() -> String {
    big_huawei_down(&[])
}

/// [`big_huawei`] with the ONUs `(slot, port, n)` of `down` offline too (a cut, a power loss).
pub fn big_huawei_down(down: &[(u32, u32, u64)]) -> String {
    let base = "1.3.6.1.4.1.2011.6.128.1.1.2";
    let mut lines: Vec<(Vec<u64>, String)> = Vec::new();
    for slot in 0..4u32 {
        for port in 0..8u32 {
            let if_index = olt::huawei_if_index(olt::PonPort {
                frame: 0,
                slot,
                port,
            });
            for n in 0..128u64 {
                let id = u64::from(slot * 8 + port) * 1000 + n;
                let mut row = |col: &str, tag: &str, value: String| {
                    let oid = format!("{base}.{col}.{if_index}.{n}");
                    let key: Vec<u64> = oid.split('.').filter_map(|x| x.parse().ok()).collect();
                    lines.push((key, format!("{oid}|{tag}|{value}")));
                };
                row("43.1.3", "4x", format!("48575443{id:08X}"));
                row("43.1.9", "4", format!("client-{id}"));
                let off = n % 50 == 7 || down.contains(&(slot, port, n));
                row("46.1.15", "2", if off { "2" } else { "1" }.into());
                row("51.1.3", "2", "215".into());
                row("51.1.4", "2", format!("-{}", 1500 + n));
            }
        }
    }
    lines.sort();
    let mut out = String::from("1.3.6.1.2.1.1.5.0|4|olt-big\n");
    for (_, l) in lines {
        out.push_str(&l);
        out.push('\n');
    }
    out
}
