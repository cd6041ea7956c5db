//! A synthetic recording for the replay benchmark (`cargo xtask bench`): busy MCP servers
//! making short connections, a quarter of them plain HTTP carrying a bearer token, the rest
//! TLS with a few records each, and the once-a-second tick. Every input kind the hot path of a
//! real recording has, in realistic proportions.
use std::{net::IpAddr, path::Path, sync::Arc};

use anyhow::Context as _;

use super::{Header, Writer};
use crate::{
    analyze::{
        input::{Input, Time},
        processes::ProcessKey,
        Observed,
    },
    decode::{Comm, Connect, Family, Protocol, SocketClose, TlsRecord},
    detect::{AppProtocol, Credential, CredentialKind, HttpRequest, Observation},
    process::ProcessInfo,
};

const PROCESSES: u32 = 16;

fn observation(plain: bool, n: u64) -> Observation {
    if plain {
        Observation {
            protocol: AppProtocol::Http,
            tls_sni: None,
            http: Some(HttpRequest {
                method: "POST".into(),
                path: "/v1/query".into(),
                host: Some(format!("api{}.example", n % 8)),
            }),
            postgres: None,
            credentials: vec![Credential {
                kind: CredentialKind::Bearer,
                location: "header:Authorization".into(),
                length: 40,
                fingerprint: "fp:0123456789abcdef".into(),
                secrets: Vec::new(),
            }],
            auth_endpoint: None,
        }
    } else {
        Observation {
            protocol: AppProtocol::Tls,
            tls_sni: Some(format!("api{}.example", n % 8)),
            http: None,
            postgres: None,
            credentials: Vec::new(),
            auth_endpoint: None,
        }
    }
}

/// Write `inputs` inputs (at least) to `path`.
pub fn write(path: &Path, inputs: u64) -> anyhow::Result<()> {
    let header = Header {
        agent_version: env!("CARGO_PKG_VERSION").into(),
        host: "synthetic".into(),
        started: "2026-01-01T00:00:00Z".into(),
        mode: "--mcp".into(),
        ..Header::default()
    };
    let mut w =
        Writer::create(path, header).with_context(|| format!("creating {}", path.display()))?;
    let mut t: u64 = 1_767_225_600_000_000_000;
    let put = |w: &mut Writer, input: Input| -> anyhow::Result<()> {
        w.write(&input)?;
        Ok(())
    };
    let keys: Vec<ProcessKey> = (0..PROCESSES)
        .map(|i| ProcessKey::new(10_000 + i, 1_000 + u64::from(i)))
        .collect();
    for key in &keys {
        let info = ProcessInfo {
            pid: key.pid,
            ppid: Some(1),
            uid: Some(1000),
            comm: "node".into(),
            exe: Some("/usr/bin/node".into()),
            cmdline: vec!["node".into(), "build/index.js".into()],
            mcp: true,
            ..ProcessInfo::default()
        };
        put(
            &mut w,
            Input::AddProcess {
                key: *key,
                info: Arc::new(info),
                time: Time(t),
            },
        )?;
        put(
            &mut w,
            Input::Target {
                key: *key,
                reason: "package.json lists @modelcontextprotocol/sdk in dependencies".into(),
                time: Time(t),
            },
        )?;
    }
    let mut n: u64 = 0;
    while w.counts().0 < inputs {
        n += 1;
        let key = keys[(n % u64::from(PROCESSES)) as usize];
        let sock = 0xffff_8880_0000_0000 + n * 64;
        let plain = n.is_multiple_of(4);
        let ip: IpAddr = [10, 203, 0, 2 + (n % 8) as u8].into();
        t += 10_000;
        let connect = Connect {
            tgid: key.pid,
            start: key.start,
            tid: key.pid,
            ktime_ns: 0,
            fd: 20,
            ret: 0,
            family: Family::Ipv4,
            protocol: Some(Protocol::Tcp),
            ip,
            port: if plain { 80 } else { 443 },
            comm: Comm::from("node"),
            sock,
            outcome: Some(0),
        };
        put(&mut w, Input::Connect(connect, Time(t)))?;
        t += 10_000;
        let observed = Observed {
            writer: key,
            sock,
            at_close: false,
            observation: observation(plain, n),
        };
        put(&mut w, Input::Observed(observed, Time(t)))?;
        if !plain {
            for (content_type, first) in [(22u8, 16u8), (20, 1), (23, 0), (23, 0)] {
                t += 10_000;
                let record = TlsRecord {
                    tgid: key.pid,
                    start: key.start,
                    ktime_ns: 0,
                    sock,
                    content_type,
                    first,
                    len: 300,
                };
                put(&mut w, Input::TlsRecord(record, Time(t)))?;
            }
        }
        t += 10_000;
        let close = SocketClose {
            tgid: key.pid,
            start: key.start,
            ktime_ns: 0,
            sock,
            fd: 20,
            undecided: false,
        };
        put(&mut w, Input::SocketClose(close, Time(t)))?;
        if n.is_multiple_of(1000) {
            put(&mut w, Input::Tick(Time(t)))?;
        }
    }
    for key in &keys {
        put(&mut w, Input::ProcessExit(*key, Time(t)))?;
    }
    w.finish()?;
    Ok(())
}
