//! Correlation: raw kernel events plus what we know of their processes -> the records we report.
//! Pure: no I/O here, so sequences of events are unit-tested and a recording replays through the
//! same code as a live run. What the kernel should be told (a session is settled) comes back as
//! [`Action`]s for the caller to apply.
pub mod connections;
pub mod dedup;
pub mod errno;
pub mod plaintext;
pub mod tls;

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Arc,
    time::{Duration, SystemTime},
};

use crate::{
    decode::{Cert, Connect, Payload, Protocol, Tls},
    detect::{redact::Fingerprinter, x509::TrustStore, DetectConfig},
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
    /// Stop copying this socket's writes.
    SettleSocket { tgid: u32, fd: i32 },
}

/// How long a TCP connect event waits for the first bytes that name its destination (TLS SNI,
/// HTTP Host) before it is reported without a hostname.
pub const CONNECT_HOLD: Duration = Duration::from_secs(1);

pub struct Analyzer {
    settings: Settings,
    conns: connections::Connections,
    tls: tls::TlsTracker,
    plaintext: plaintext::Plaintext,
    /// TCP connect events waiting for a hostname, by (pid, fd).
    held: HashMap<(u32, i32), Event>,
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
    pub fn new(
        settings: Settings,
        trust: TrustStore,
        detect: DetectConfig,
        fingerprints: Fingerprinter,
    ) -> Self {
        Self {
            settings,
            conns: connections::Connections::default(),
            tls: tls::TlsTracker::new(trust),
            plaintext: plaintext::Plaintext::new(detect, fingerprints),
            held: HashMap::new(),
            dedup: dedup::Dedup::default(),
        }
    }

    fn ignored(&self, ip: &IpAddr) -> bool {
        ip.is_loopback() && !self.settings.include_loopback
    }

    /// A finished `connect`: remembered for TLS and payload correlation, and reported unless
    /// policy ignores it. A TCP connect that went through is held back briefly, until its first
    /// bytes name the destination (TLS SNI, HTTP Host): see [`CONNECT_HOLD`].
    pub fn connect(
        &mut self,
        c: &Connect,
        process: Arc<ProcessInfo>,
        time: SystemTime,
        out: &mut Out,
    ) {
        let ip = canonical(c.ip);
        let destination = Destination {
            ip,
            port: c.port,
            hostname: None,
        };
        let established = c.ret == 0 || c.ret == -115;
        let tcp = c.protocol != Some(Protocol::Udp);
        if established && tcp {
            self.conns.record(c.tgid, c.tid, c.fd, destination.clone());
            self.plaintext.reset(c.tgid, c.fd);
            // A new connection on a reused fd: whatever waited on the old one goes out now.
            if let Some(old) = self.held.remove(&(c.tgid, c.fd)) {
                out.records.push(Record::Event(old));
            }
        }
        if self.ignored(&ip) {
            if established && tcp {
                out.actions.push(Action::SettleSocket {
                    tgid: c.tgid,
                    fd: c.fd,
                });
            }
            return;
        }
        let event = Event {
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
        };
        if established && tcp {
            self.held.insert((c.tgid, c.fd), event);
        } else {
            out.records.push(Record::Event(event));
        }
    }

    /// Release a held connect event, naming its destination when a name was learned.
    fn release(&mut self, pid: u32, fd: i32, hostname: Option<&Arc<str>>, out: &mut Out) {
        if let Some(mut event) = self.held.remove(&(pid, fd)) {
            if let EventDetail::Connect { destination, .. } = &mut event.detail {
                if destination.hostname.is_none() {
                    destination.hostname = hostname.cloned();
                }
            }
            out.records.push(Record::Event(event));
        }
    }

    /// Report a plaintext verdict on a connection: its connect event, then its findings.
    fn plaintext_verdict(
        &mut self,
        pid: u32,
        fd: i32,
        verdict: plaintext::Verdict,
        time: SystemTime,
        process: &mut dyn FnMut(u32) -> Arc<ProcessInfo>,
        out: &mut Out,
    ) {
        self.release(pid, fd, verdict.hostname.as_ref(), out);
        let destination = self
            .conns
            .by_fd(pid, fd)
            .map(|d| plaintext::named(d, verdict.hostname.as_ref()));
        for (id, evidence) in verdict.findings {
            let finding = Finding {
                time,
                id,
                process: process(pid),
                destination: destination.clone(),
                evidence,
                count: 1,
            };
            if let Some(first) = self.dedup.observe(finding) {
                out.records.push(Record::Finding(first));
            }
        }
    }

    /// The first bytes of a write on a tracked socket.
    pub fn payload(
        &mut self,
        p: &Payload,
        time: SystemTime,
        process: &mut dyn FnMut(u32) -> Arc<ProcessInfo>,
        out: &mut Out,
    ) {
        if let Some(verdict) = self.plaintext.write(p.tgid, p.fd, &p.data, p.complete()) {
            out.actions.push(Action::SettleSocket {
                tgid: p.tgid,
                fd: p.fd,
            });
            self.plaintext_verdict(p.tgid, p.fd, verdict, time, process, out);
        }
    }

    /// A tracked socket closed before its stream was decided.
    pub fn socket_close(
        &mut self,
        pid: u32,
        fd: i32,
        time: SystemTime,
        process: &mut dyn FnMut(u32) -> Arc<ProcessInfo>,
        out: &mut Out,
    ) {
        match self.plaintext.close(pid, fd) {
            Some(verdict) => self.plaintext_verdict(pid, fd, verdict, time, process, out),
            None => self.release(pid, fd, None, out),
        }
        self.conns.close(pid, fd);
    }

    /// Release, oldest first and without a hostname, the held connect events `pick` selects.
    fn release_held(&mut self, pick: impl Fn(&(u32, i32), &Event) -> bool, out: &mut Out) {
        let mut due: Vec<(SystemTime, (u32, i32))> = self
            .held
            .iter()
            .filter(|(k, e)| pick(k, e))
            .map(|(k, e)| (e.time, *k))
            .collect();
        due.sort();
        for (_, (pid, fd)) in due {
            self.release(pid, fd, None, out);
        }
    }

    /// Connect events held longer than [`CONNECT_HOLD`] go out without a hostname.
    pub fn tick(&mut self, now: SystemTime, out: &mut Out) {
        self.release_held(
            |_, e| now.duration_since(e.time).unwrap_or_default() >= CONNECT_HOLD,
            out,
        );
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
        for (fd, verdict) in self.plaintext.process_exit(pid) {
            self.plaintext_verdict(pid, fd, verdict, time, process, out);
        }
        self.release_held(|k, _| k.0 == pid, out);
        for f in self.dedup.flush() {
            out.records.push(Record::Finding(f));
        }
        self.dedup.forget_process(pid);
        self.conns.forget_process(pid);
    }

    /// At shutdown: every held event, then findings whose count grew.
    pub fn finish(&mut self, out: &mut Out) {
        self.release_held(|_, _| true, out);
        self.flush(out);
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

    fn analyzer(settings: Settings) -> Analyzer {
        Analyzer::new(
            settings,
            TrustStore::empty(),
            DetectConfig::default(),
            Fingerprinter::new([1; 32]),
        )
    }

    /// The connect event for `c`, after the hold if there is one.
    fn run(settings: Settings, c: &Connect) -> Option<Event> {
        let mut a = analyzer(settings);
        let mut out = Out::default();
        a.connect(
            c,
            Arc::new(ProcessInfo::default()),
            SystemTime::UNIX_EPOCH,
            &mut out,
        );
        a.finish(&mut out);
        out.records.into_iter().find_map(|r| match r {
            Record::Event(e) => Some(e),
            _ => None,
        })
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
    fn tcp_connects_wait_for_their_hostname_udp_and_failures_do_not() {
        let mut a = analyzer(Settings::default());
        let mut out = Out::default();
        let p = Arc::new(ProcessInfo {
            pid: 1,
            ..Default::default()
        });
        a.connect(
            &connect("10.203.0.2", -115),
            p.clone(),
            SystemTime::UNIX_EPOCH,
            &mut out,
        );
        assert!(out.records.is_empty(), "held until the first bytes");
        let hello = Payload {
            tgid: 1,
            tid: 1,
            ktime_ns: 0,
            fd: 5,
            source: 1,
            len: 52,
            data: b"GET / HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n".to_vec(),
        };
        a.payload(&hello, SystemTime::UNIX_EPOCH, &mut |_| p.clone(), &mut out);
        a.socket_close(1, 5, SystemTime::UNIX_EPOCH, &mut |_| p.clone(), &mut out);
        let [Record::Event(e)] = out.records.as_slice() else {
            panic!("{:?}", out.records)
        };
        let EventDetail::Connect { destination, .. } = &e.detail else {
            panic!()
        };
        assert_eq!(destination.hostname.as_deref(), Some("api.test"));

        let mut out = Out::default();
        let mut udp = connect("10.203.0.2", 0);
        udp.protocol = Some(Protocol::Udp);
        a.connect(&udp, p.clone(), SystemTime::UNIX_EPOCH, &mut out);
        a.connect(
            &connect("10.203.0.2", -111),
            p.clone(),
            SystemTime::UNIX_EPOCH,
            &mut out,
        );
        assert_eq!(
            out.records.len(),
            2,
            "UDP and refused connects go out at once"
        );

        let mut out = Out::default();
        a.connect(
            &connect("10.203.0.2", 0),
            p,
            SystemTime::UNIX_EPOCH,
            &mut out,
        );
        a.tick(SystemTime::UNIX_EPOCH + CONNECT_HOLD / 2, &mut out);
        assert!(out.records.is_empty());
        a.tick(SystemTime::UNIX_EPOCH + CONNECT_HOLD, &mut out);
        assert_eq!(
            out.records.len(),
            1,
            "released without a name after the hold"
        );
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
