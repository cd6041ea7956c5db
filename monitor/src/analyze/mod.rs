//! Correlation: raw kernel events plus what we know of their processes -> the records we report.
//! Pure: no I/O here, so sequences of events are unit-tested and a recording replays through the
//! same code as a live run. What the kernel should be told (a session is settled) comes back as
//! [`Action`]s for the caller to apply.
pub mod connections;
pub mod dedup;
pub mod errno;
pub mod tls;

use std::{net::IpAddr, sync::Arc, time::SystemTime};

use crate::{
    decode::{Cert, Connect, Protocol, Tls},
    detect::x509::TrustStore,
    output::{finding::Finding, Destination, Event, EventDetail, Record, Socket},
    probes::uprobes::LibraryKind,
    process::ProcessInfo,
};

#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Report connects to loopback addresses too (off by default: local IPC is not egress).
    pub include_loopback: bool,
}

/// Something the kernel side should be told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Stop reporting this TLS session's reads and writes.
    SettleTls { tgid: u32, ssl: u64 },
}

pub struct Analyzer {
    settings: Settings,
    conns: connections::Connections,
    tls: tls::TlsTracker,
    dedup: dedup::Dedup,
}

/// The address that was really dialled: an IPv4-mapped IPv6 address is the IPv4 peer.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// Where records and actions go (reused buffers: no allocation per event on the hot path).
#[derive(Default)]
pub struct Out {
    pub records: Vec<Record>,
    pub actions: Vec<Action>,
    tls: Vec<tls::TlsOutput>,
}

impl Out {
    pub fn clear(&mut self) {
        self.records.clear();
        self.actions.clear();
    }
}

impl Analyzer {
    pub fn new(settings: Settings, trust: TrustStore) -> Self {
        Self {
            settings,
            conns: connections::Connections::default(),
            tls: tls::TlsTracker::new(trust),
            dedup: dedup::Dedup::default(),
        }
    }

    fn ignored(&self, ip: &IpAddr) -> bool {
        ip.is_loopback() && !self.settings.include_loopback
    }

    /// A finished `connect`: remembered for TLS and payload correlation, and reported unless
    /// policy ignores it.
    pub fn connect(
        &mut self,
        c: &Connect,
        process: Arc<ProcessInfo>,
        time: SystemTime,
    ) -> Option<Event> {
        let ip = canonical(c.ip);
        let destination = Destination {
            ip,
            port: c.port,
            hostname: None,
        };
        let established = c.ret == 0 || c.ret == -115;
        if established && c.protocol != Some(Protocol::Udp) {
            self.conns.record(c.tgid, c.tid, c.fd, destination.clone());
        }
        if self.ignored(&ip) {
            return None;
        }
        Some(Event {
            time,
            process,
            detail: EventDetail::Connect {
                socket: Socket {
                    family: c.family,
                    protocol: c.protocol,
                    fd: c.fd,
                },
                destination,
                result: errno::connect_result(c.ret),
            },
        })
    }

    /// An OpenSSL call. `library`: path and kind of the library the probe sits in.
    pub fn tls(
        &mut self,
        e: &Tls,
        library: Option<(&str, LibraryKind)>,
        time: SystemTime,
        process: &mut dyn FnMut(u32) -> Arc<ProcessInfo>,
        out: &mut Out,
    ) {
        let mut pending = std::mem::take(&mut out.tls);
        self.tls.on_tls(e, library, time, &self.conns, &mut pending);
        self.drain_tls(&mut pending, time, process, out);
        out.tls = pending;
    }

    pub fn cert(&mut self, c: &Cert, time: SystemTime) {
        self.tls.on_cert(c, time, &self.conns);
    }

    /// A process-wide TLS bypass in a process's environment (at start or set at run time).
    pub fn env_bypass(
        &mut self,
        pid: u32,
        bypass: tls::EnvBypass,
        time: SystemTime,
        process: &mut dyn FnMut(u32) -> Arc<ProcessInfo>,
        out: &mut Out,
    ) {
        let mut pending = std::mem::take(&mut out.tls);
        self.tls.env_bypass(pid, bypass, &mut pending);
        self.drain_tls(&mut pending, time, process, out);
        out.tls = pending;
    }

    pub fn app_checks_names(&mut self, pid: u32) {
        self.tls.set_app_checks_names(pid);
    }

    /// A process exited: conclude its sessions, report its repeated findings, forget it.
    pub fn process_exit(
        &mut self,
        pid: u32,
        time: SystemTime,
        process: &mut dyn FnMut(u32) -> Arc<ProcessInfo>,
        out: &mut Out,
    ) {
        let mut pending = std::mem::take(&mut out.tls);
        self.tls.process_exit(pid, &self.conns, &mut pending);
        self.drain_tls(&mut pending, time, process, out);
        out.tls = pending;
        for f in self.dedup.flush() {
            out.records.push(Record::Finding(f));
        }
        self.dedup.forget_process(pid);
        self.conns.forget_process(pid);
    }

    /// Findings whose count grew since last reported (periodically and at shutdown).
    pub fn flush(&mut self, out: &mut Out) {
        for f in self.dedup.flush() {
            out.records.push(Record::Finding(f));
        }
    }

    fn drain_tls(
        &mut self,
        pending: &mut Vec<tls::TlsOutput>,
        time: SystemTime,
        process: &mut dyn FnMut(u32) -> Arc<ProcessInfo>,
        out: &mut Out,
    ) {
        for item in pending.drain(..) {
            match item {
                tls::TlsOutput::Settle { tgid, ssl } => {
                    out.actions.push(Action::SettleTls { tgid, ssl })
                }
                tls::TlsOutput::Handshake {
                    pid,
                    destination,
                    tls,
                } => {
                    if destination.as_ref().is_some_and(|d| self.ignored(&d.ip)) {
                        continue;
                    }
                    out.records.push(Record::Event(Event {
                        time,
                        process: process(pid),
                        detail: EventDetail::TlsHandshake { destination, tls },
                    }));
                }
                tls::TlsOutput::Finding {
                    id,
                    pid,
                    destination,
                    evidence,
                } => {
                    if destination.as_ref().is_some_and(|d| self.ignored(&d.ip)) {
                        continue;
                    }
                    let finding = Finding {
                        time,
                        id,
                        process: process(pid),
                        destination,
                        evidence,
                        count: 1,
                    };
                    if let Some(first) = self.dedup.observe(finding) {
                        out.records.push(Record::Finding(first));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Comm, Family, Protocol};

    fn connect(ip: &str, ret: i32) -> Connect {
        let ip: IpAddr = ip.parse().unwrap();
        Connect {
            tgid: 1,
            tid: 1,
            ktime_ns: 0,
            fd: 5,
            ret,
            family: if ip.is_ipv4() {
                Family::Ipv4
            } else {
                Family::Ipv6
            },
            protocol: Some(Protocol::Tcp),
            ip,
            port: 80,
            comm: Comm::from("curl"),
        }
    }

    fn run(settings: Settings, c: &Connect) -> Option<Event> {
        Analyzer::new(settings, TrustStore::empty()).connect(
            c,
            Arc::new(ProcessInfo::default()),
            SystemTime::UNIX_EPOCH,
        )
    }

    #[test]
    fn loopback_is_ignored_unless_asked_for() {
        for ip in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
            assert!(run(Settings::default(), &connect(ip, 0)).is_none(), "{ip}");
            assert!(
                run(
                    Settings {
                        include_loopback: true
                    },
                    &connect(ip, 0)
                )
                .is_some(),
                "{ip}"
            );
        }
        assert!(run(Settings::default(), &connect("10.203.0.2", 0)).is_some());
    }

    #[test]
    fn v4_mapped_destinations_are_reported_as_ipv4_on_an_ipv6_socket() {
        let e = run(Settings::default(), &connect("::ffff:10.203.0.2", -115)).unwrap();
        let EventDetail::Connect {
            socket,
            destination,
            result,
        } = e.detail
        else {
            panic!()
        };
        assert_eq!(socket.family, Family::Ipv6);
        assert_eq!(destination.ip, "10.203.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(result, "in_progress");
    }

    #[test]
    fn refused_connects_carry_the_errno_name() {
        let e = run(Settings::default(), &connect("10.203.0.2", -111)).unwrap();
        assert!(matches!(
            e.detail,
            EventDetail::Connect {
                result: "ECONNREFUSED",
                ..
            }
        ));
    }
}
