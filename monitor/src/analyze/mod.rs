//! Correlation: raw kernel events plus what we know of their processes -> the records we report.
//! Pure: no I/O here, so sequences of events are unit-tested and a recording replays through the
//! same code as a live run. What the kernel should be told (a session is settled, a process's
//! leftovers can go) comes back as [`Action`]s for the caller to apply.
//!
//! All per-process state has one owner, [`processes::Processes`], keyed by pid and start time:
//! the caller installs a process (with what it read from /proc) before handing over its events,
//! and a process's exit forgets everything about it at once.
pub mod connections;
pub mod dedup;
pub mod errno;
pub mod input;
pub mod pins;
pub mod plaintext;
pub mod processes;
pub mod server;
pub mod tls;

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::Arc,
    time::{Duration, SystemTime},
};

use connections::{untracked, Conn, SockId};
use processes::{ProcessKey, ProcessState, Processes};

use crate::{
    decode::{Cert, Connect, ConnectResult, Payload, Protocol, SocketClose, Tls, TlsRecord},
    detect::{
        redact::Fingerprinter, secret::Secret, x509::TrustStore, DetectConfig, Observation,
        StreamInspector,
    },
    output::{finding::Finding, Destination, Event, EventDetail, Record, Socket},
    probes::uprobes::LibraryKind,
    process::ProcessInfo,
};

#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Report connects to loopback addresses too (off by default: local IPC is not egress).
    pub include_loopback: bool,
}

/// Something the kernel side (or the caller's own bookkeeping) should be told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Stop reporting this TLS session's reads and writes.
    SettleTls { tgid: u32, ssl: u64 },
    /// Stop copying this socket's writes. `seen`: the time of a record of the connection meant.
    /// The kernel reuses a closed socket's memory for the next one, so a socket at the same
    /// address made after that record is another connection, which this must leave alone.
    SettleSocket { sock: SockId, seen: SystemTime },
    /// The process is gone (or exec'd): the kernel's per-session state for these SSL objects
    /// can go, and (unless it exec'd) the libraries it used have one user less.
    Forget {
        tgid: u32,
        start: u64,
        ssl: Vec<u64>,
        exited: bool,
    },
}

/// How long a TCP connect event waits for its outcome and for the first bytes that name its
/// destination (TLS SNI, HTTP Host) before it is reported as it stands.
pub const CONNECT_HOLD: Duration = Duration::from_secs(1);

/// Counters of what userspace had to drop because a table was full, by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Drops(BTreeMap<&'static str, u64>);

impl Drops {
    pub fn count(&mut self, reason: &'static str) {
        *self.0.entry(reason).or_default() += 1;
    }

    pub fn add(&mut self, reason: &'static str, n: u64) {
        if n > 0 {
            *self.0.entry(reason).or_default() += n;
        }
    }

    pub fn get(&self, reason: &str) -> u64 {
        self.0.get(reason).copied().unwrap_or(0)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.0.iter().map(|(k, v)| (*k, *v))
    }
}

pub struct Analyzer {
    settings: Settings,
    processes: Processes,
    tls: tls::TlsJudge,
    plaintext: plaintext::Plaintext,
    /// Plaintext streams under inspection, over all processes.
    streams: usize,
    /// Replay: what a stream's close decided, given before the record that closes it.
    staged: HashMap<(ProcessKey, SockId), Observation>,
    drops: Drops,
    /// The recorded run's drops outside the analysis (`Input::LiveDrops`), for replay's totals.
    live_drops: BTreeMap<String, u64>,
}

/// What the detectors made of a connection's first bytes: the analysis input that stands in
/// for those bytes in a recording (it carries no credential's value: `Credential::secrets`
/// is never serialised).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Observed {
    /// The process that wrote the bytes (for a close: the connection's owner).
    pub writer: ProcessKey,
    pub sock: SockId,
    /// Decided when the connection closed (or its process ended), rather than by a write.
    pub at_close: bool,
    pub observation: Observation,
}

/// Policy: loopback destinations are local IPC, not egress, unless `--include-loopback`.
fn ignored(ip: &IpAddr, include_loopback: bool) -> bool {
    ip.is_loopback() && !include_loopback
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
    /// Credential values seen: scrub them from everything written from now on.
    pub secrets: Vec<Secret>,
    /// What the detectors decided during this step (for a recording: the bytes stay here).
    pub observed: Vec<Observed>,
    tls: Vec<tls::TlsOutput>,
}

impl Out {
    pub fn clear(&mut self) {
        self.records.clear();
        self.actions.clear();
        self.secrets.clear();
        self.observed.clear();
    }
}

#[cfg(test)]
impl Out {
    /// The findings among the records (for tests).
    pub(crate) fn findings(&self) -> Vec<&Finding> {
        self.records
            .iter()
            .filter_map(|r| match r {
                Record::Finding(f) => Some(f),
                _ => None,
            })
            .collect()
    }
}

/// Hand a held connect event over to the output, with the destination's learned name.
fn release(conn: &mut Conn, out: &mut Out) {
    if let Some(mut event) = conn.held.take() {
        if let EventDetail::Connect { destination, .. } = &mut event.detail {
            if destination.hostname.is_none() {
                destination.hostname = conn.hostname.clone();
            }
        }
        if !conn.outcome_known {
            conn.result_owed = true;
        }
        out.records.push(Record::Event(event));
    }
}

/// Report a finding through the process's deduplication.
fn report(state: &mut ProcessState, drops: &mut Drops, finding: Finding, out: &mut Out) {
    match state.dedup.observe(finding) {
        dedup::Seen::First(f) => out.records.push(Record::Finding(f)),
        dedup::Seen::Repeat => {}
        dedup::Seen::Uncounted(f) => {
            drops.count("findings_table_full");
            out.records.push(Record::Finding(f));
        }
    }
}

impl Analyzer {
    pub fn new(
        settings: Settings,
        trust: TrustStore,
        detect: DetectConfig,
        fingerprints: Fingerprinter,
        pins: pins::PinPolicy,
    ) -> Self {
        Self {
            settings,
            processes: Processes::default(),
            tls: tls::TlsJudge::new(trust, pins),
            plaintext: plaintext::Plaintext::new(detect, fingerprints),
            streams: 0,
            staged: HashMap::new(),
            drops: Drops::default(),
            live_drops: BTreeMap::new(),
        }
    }

    fn ignored(&self, ip: &IpAddr) -> bool {
        ignored(ip, self.settings.include_loopback)
    }

    /// Whether this process is installed (its events can be analysed).
    pub fn knows(&self, key: ProcessKey) -> bool {
        self.processes.get(key).is_some()
    }

    /// What is known of whichever process holds `pid` now.
    pub fn info(&self, pid: u32) -> Option<Arc<ProcessInfo>> {
        self.processes.by_pid(pid).map(|p| p.info.clone())
    }

    pub fn processes(&self) -> &Processes {
        &self.processes
    }

    /// Install a process with what was read about it. A previous process that had the pid and
    /// whose exit went unseen is concluded first. `false` when the table is full (counted).
    pub fn add_process(
        &mut self,
        key: ProcessKey,
        info: Arc<ProcessInfo>,
        time: SystemTime,
        out: &mut Out,
    ) -> bool {
        if let Some(state) = self.processes.get_mut(key) {
            state.info = info;
            return true;
        }
        match self.processes.insert(ProcessState::new(key, info)) {
            Ok(None) => true,
            Ok(Some(old)) => {
                self.conclude(old, time, out);
                true
            }
            Err(_) => {
                self.drops.count("processes_full");
                false
            }
        }
    }

    /// The process exec'd: a new program (and command line) in the same process. Its TLS
    /// objects died with the old image; its connections may live on (descriptors survive exec
    /// unless close-on-exec, and the kernel reports those it closes).
    pub fn exec(
        &mut self,
        key: ProcessKey,
        info: Arc<ProcessInfo>,
        time: SystemTime,
        out: &mut Out,
    ) {
        let Some(state) = self.processes.get_mut(key) else {
            return;
        };
        state.info = info;
        state.libraries_checked = false;
        let include_loopback = self.settings.include_loopback;
        let config = &self.tls;
        let ssl = tls_step(
            state,
            &mut self.drops,
            include_loopback,
            time,
            out,
            |s, _, p| s.tls.finish(config, |sock| s.conns.refused(sock), p),
        );
        state.tls = tls::TlsProcess::default();
        out.actions.push(Action::Forget {
            tgid: key.pid,
            start: state.key.start,
            ssl,
            exited: false,
        });
    }

    /// The first time a process image shows TLS activity: `true` once (its mapped libraries
    /// are worth reading now: it may have loaded a client library that checks host names).
    pub fn first_tls_activity(&mut self, key: ProcessKey) -> bool {
        match self.processes.get_mut(key) {
            Some(state) if !state.libraries_checked => {
                state.libraries_checked = true;
                true
            }
            _ => false,
        }
    }

    /// Whether whichever process holds `pid` checks host names in its own code.
    pub fn app_checks_names(&self, pid: u32) -> bool {
        self.processes
            .by_pid(pid)
            .is_some_and(|p| p.tls.app_checks_names)
    }

    pub fn set_app_checks_names(&mut self, key: ProcessKey, yes: bool) {
        if let Some(state) = self.processes.get_mut(key) {
            state.tls.app_checks_names = yes;
        }
    }

    /// A finished `connect`: remembered for TLS and payload correlation, and reported unless
    /// policy ignores it. A TCP connect that went through (or is still under way) is held back
    /// until its outcome is known and its first bytes name the destination (TLS SNI, HTTP Host),
    /// or [`CONNECT_HOLD`] passed.
    pub fn connect(&mut self, c: &Connect, time: SystemTime, out: &mut Out) {
        let key = ProcessKey::new(c.tgid, c.start);
        let ip = canonical(c.ip);
        let ignored = self.ignored(&ip);
        let Some(state) = self.processes.get_mut(key) else {
            return;
        };
        let destination = Destination {
            ip,
            port: c.port,
            hostname: None,
        };
        let in_progress = c.ret == -115;
        // What the process will learn of this connect: its final result when known.
        let final_ret = if in_progress { c.outcome } else { Some(c.ret) };
        let result = errno::connect_result(final_ret.unwrap_or(-115));
        let socket = Socket {
            family: c.family,
            protocol: c.protocol,
            fd: c.fd,
        };
        let event = Event {
            time,
            process: state.info.clone(),
            detail: EventDetail::Connect {
                socket: socket.clone(),
                destination: destination.clone(),
                result,
            },
        };
        let goes_through = matches!(final_ret, None | Some(0));
        let tcp = c.protocol != Some(Protocol::Udp);
        if !(goes_through && tcp) {
            if !ignored {
                out.records.push(Record::Event(event));
            }
            return;
        }
        let id = if c.sock != 0 { c.sock } else { untracked(c.fd) };
        let mut conn = Conn::new(c.fd, destination, socket);
        conn.outcome_known = final_ret.is_some();
        if ignored {
            if c.sock != 0 {
                out.actions.push(Action::SettleSocket {
                    sock: c.sock,
                    seen: time,
                });
            }
        } else if c.sock != 0 || !conn.outcome_known {
            conn.held = Some(event);
        } else {
            out.records.push(Record::Event(event));
        }
        if let Some(mut old) = state.conns.insert(c.tid, id, conn) {
            release(&mut old, out);
        }
        if c.sock != 0 {
            self.processes.own_socket(c.sock, c.tgid);
        }
    }

    /// The outcome of a non-blocking connect, after the syscall returned.
    pub fn connect_result(&mut self, r: &ConnectResult, time: SystemTime, out: &mut Out) {
        let key = ProcessKey::new(r.tgid, r.start);
        let Some(state) = self.processes.get_mut(key) else {
            return;
        };
        let Some(conn) = state.conns.get_mut(r.sock) else {
            return;
        };
        conn.outcome_known = true;
        let result = errno::connect_result(r.result);
        if let Some(Event {
            detail: EventDetail::Connect { result: held, .. },
            ..
        }) = conn.held.as_mut()
        {
            *held = result;
        }
        if conn.result_owed {
            conn.result_owed = false;
            out.records.push(Record::Event(Event {
                time,
                process: state.info.clone(),
                detail: EventDetail::ConnectResult {
                    socket: conn.socket.clone(),
                    destination: conn.named_destination(),
                    result,
                },
            }));
        }
        let failed = r.result != 0;
        // Established: wait on for the name (the first bytes come now); failed: nothing comes.
        if failed || conn.judged {
            release(conn, out);
        }
        if failed {
            if let Some(mut conn) = state.conns.remove(r.sock) {
                self.streams -= conn.stream.take().is_some() as usize;
            }
            self.processes.disown_socket(r.sock, r.tgid);
        }
    }

    /// The process whose connection `sock` is, for a record of `writer`: the writer's own
    /// connection by that id when it has one, else the process that connected the socket (a
    /// child writing to a socket it inherited). The kernel gives a closed socket's address to
    /// the next one, and one process's records may be applied after another's (they waited for
    /// its /proc read): the index by address alone can name the wrong process.
    fn conn_owner(&self, writer: ProcessKey, sock: SockId) -> Option<ProcessKey> {
        if self
            .processes
            .get(writer)
            .is_some_and(|s| s.conns.get(sock).is_some())
        {
            return Some(writer);
        }
        match self.processes.socket_owner(sock) {
            Some(pid) => self.processes.by_pid(pid).map(|s| s.key),
            None => Some(writer),
        }
    }

    /// The first bytes of a write on a tracked socket.
    pub fn payload(&mut self, p: &Payload, time: SystemTime, out: &mut Out) {
        let writer = ProcessKey::new(p.tgid, p.start);
        let owner = self.conn_owner(writer, p.sock);
        if self.processes.get(writer).is_none() {
            return;
        }
        let observation = {
            let Some(conn) = owner
                .and_then(|o| self.processes.get_mut(o))
                .and_then(|s| s.conns.get_mut(p.sock))
            else {
                // A socket whose connect we never saw (its record was dropped): stop paying.
                out.actions.push(Action::SettleSocket {
                    sock: p.sock,
                    seen: time,
                });
                return;
            };
            if conn.stream.is_none() {
                if self.streams >= plaintext::MAX_STREAMS {
                    self.drops.count("streams_full");
                    out.actions.push(Action::SettleSocket {
                        sock: p.sock,
                        seen: time,
                    });
                    return;
                }
                conn.stream = Some(StreamInspector::new());
                self.streams += 1;
            }
            let stream = conn.stream.as_mut().expect("just set");
            let Some(observation) = self.plaintext.feed(stream, &p.data, p.complete()) else {
                return;
            };
            observation
        };
        let observed = Observed {
            writer,
            sock: p.sock,
            at_close: false,
            observation,
        };
        self.observed(&observed, time, out);
        out.observed.push(observed);
    }

    /// The detectors decided a connection's first bytes (live: from [`Self::payload`]; replay:
    /// from the recording). A decision at close is kept for the record that closes it.
    pub fn observed(&mut self, o: &Observed, time: SystemTime, out: &mut Out) {
        if o.at_close {
            if self.processes.get(o.writer).is_some() && self.staged.len() < plaintext::MAX_STREAMS
            {
                self.staged
                    .insert((o.writer, o.sock), o.observation.clone());
            }
            return;
        }
        let owner = self.conn_owner(o.writer, o.sock);
        let Some(writer_info) = self.processes.get(o.writer).map(|s| s.info.clone()) else {
            return;
        };
        let verdict = self.plaintext.verdict(&o.observation);
        let Some(conn) = owner
            .and_then(|k| self.processes.get_mut(k))
            .and_then(|s| s.conns.get_mut(o.sock))
        else {
            return;
        };
        self.streams -= conn.stream.take().is_some() as usize;
        // A TLS connection goes on: its record headers tell whether the session was used.
        if !verdict.tls {
            out.actions.push(Action::SettleSocket {
                sock: o.sock,
                seen: time,
            });
        }
        self.apply_verdict(owner, o.writer, writer_info, o.sock, verdict, time, out);
    }

    /// A stream's verdict: the connection's name, its findings (for the process that wrote
    /// it), its secrets (for the scrubber), and its held connect event.
    #[allow(clippy::too_many_arguments)]
    fn apply_verdict(
        &mut self,
        owner: Option<ProcessKey>,
        writer: ProcessKey,
        writer_info: Arc<ProcessInfo>,
        sock: SockId,
        verdict: plaintext::Verdict,
        time: SystemTime,
        out: &mut Out,
    ) {
        out.secrets.extend(verdict.secrets);
        let mut destination = None;
        if let Some(conn) = owner
            .and_then(|o| self.processes.get_mut(o))
            .and_then(|s| s.conns.get_mut(sock))
        {
            if conn.hostname.is_none() {
                conn.hostname = verdict.hostname.clone();
            }
            conn.judged = true;
            if conn.outcome_known {
                release(conn, out);
            }
            destination = Some(conn.named_destination());
        }
        if destination.as_ref().is_some_and(|d| self.ignored(&d.ip)) {
            return;
        }
        let Some(state) = self.processes.get_mut(writer) else {
            return;
        };
        for (id, evidence) in verdict.findings {
            let finding = Finding {
                time,
                id,
                process: writer_info.clone(),
                destination: destination.clone(),
                evidence,
                count: 1,
            };
            report(state, &mut self.drops, finding, out);
        }
    }

    /// A tracked socket's process closed it, or the connection ended.
    pub fn socket_close(&mut self, c: &SocketClose, time: SystemTime, out: &mut Out) {
        let key = ProcessKey::new(c.tgid, c.start);
        let Some(state) = self.processes.get_mut(key) else {
            return;
        };
        // A Go TLS session on it that never sent application data is concluded with it (and
        // the client's records say whether it refused the handshake).
        let (include_loopback, config) = (self.settings.include_loopback, &self.tls);
        let refused = state.conns.refused(c.sock);
        tls_step(
            state,
            &mut self.drops,
            include_loopback,
            time,
            out,
            |s, _, p| s.tls.connection_closed(config, c.sock, refused, p),
        );
        let Some(conn) = state.conns.remove(c.sock) else {
            return;
        };
        self.processes.disown_socket(c.sock, c.tgid);
        let state = self.processes.get_mut(key).expect("looked up above");
        end_connection(
            Ends {
                staged: &mut self.staged,
                streams: &mut self.streams,
                plaintext: &self.plaintext,
                drops: &mut self.drops,
                include_loopback: self.settings.include_loopback,
            },
            state,
            c.sock,
            conn,
            time,
            out,
        );
    }

    /// An OpenSSL call. `library`: path and kind of the library the probe sits in.
    pub fn tls(
        &mut self,
        e: &Tls,
        library: Option<(&str, LibraryKind)>,
        time: SystemTime,
        out: &mut Out,
    ) {
        let key = ProcessKey::new(e.tgid, e.start);
        let include_loopback = self.settings.include_loopback;
        let Some(state) = self.processes.get_mut(key) else {
            return;
        };
        let config = &self.tls;
        tls_step(
            state,
            &mut self.drops,
            include_loopback,
            time,
            out,
            |s, d, p| s.tls.on_tls(config, e, library, time, &s.conns, p, d),
        );
    }

    /// A TLS record header a target's connection sent.
    pub fn tls_record(&mut self, r: &TlsRecord, time: SystemTime, out: &mut Out) {
        let key = ProcessKey::new(r.tgid, r.start);
        let include_loopback = self.settings.include_loopback;
        let Some(state) = self.processes.get_mut(key) else {
            return;
        };
        let Some(conn) = state.conns.get_mut(r.sock) else {
            return;
        };
        if !conn.tls.feed(r.content_type, r.first, r.len) {
            return;
        }
        // Application data left: the session on this connection was used, and the kernel can
        // stop walking its records.
        out.actions.push(Action::SettleSocket {
            sock: r.sock,
            seen: time,
        });
        let config = &self.tls;
        tls_step(
            state,
            &mut self.drops,
            include_loopback,
            time,
            out,
            |s, _, p| s.tls.app_data(config, r.sock, p),
        );
    }

    pub fn cert(&mut self, c: &Cert, time: SystemTime) {
        let key = ProcessKey::new(c.tgid, c.start);
        if let Some(state) = self.processes.get_mut(key) {
            state.tls.on_cert(c, time, &state.conns, &mut self.drops);
        }
    }

    /// A process-wide TLS bypass in a process's environment (at start or set at run time).
    pub fn env_bypass(
        &mut self,
        key: ProcessKey,
        bypass: tls::EnvBypass,
        time: SystemTime,
        out: &mut Out,
    ) {
        let include_loopback = self.settings.include_loopback;
        let Some(state) = self.processes.get_mut(key) else {
            return;
        };
        tls_step(
            state,
            &mut self.drops,
            include_loopback,
            time,
            out,
            |s, _, p| s.tls.env_bypass(bypass, p),
        );
    }

    /// A thread of a process ended: what was kept for it goes.
    pub fn thread_exit(&mut self, key: ProcessKey, tid: u32) {
        if let Some(state) = self.processes.get_mut(key) {
            state.conns.thread_exit(tid);
        }
    }

    /// A process exited: conclude its sessions and streams, report its held events and
    /// repeated findings, forget it.
    pub fn process_exit(&mut self, key: ProcessKey, time: SystemTime, out: &mut Out) {
        if let Some(state) = self.processes.remove(key) {
            self.conclude(state, time, out);
        }
    }

    /// Everything a process still owed the report, then its leftovers for the caller.
    fn conclude(&mut self, mut state: ProcessState, time: SystemTime, out: &mut Out) {
        let include_loopback = self.settings.include_loopback;
        let config = &self.tls;
        let ssl = tls_step(
            &mut state,
            &mut self.drops,
            include_loopback,
            time,
            out,
            |s, _, p| s.tls.finish(config, |sock| s.conns.refused(sock), p),
        );
        let mut conns: Vec<(SockId, SystemTime)> = state
            .conns
            .iter()
            .map(|(id, c)| (id, c.held.as_ref().map_or(time, |e| e.time)))
            .collect();
        conns.sort_by_key(|(_, t)| *t);
        for (id, _) in conns {
            let Some(conn) = state.conns.remove(id) else {
                continue;
            };
            end_connection(
                Ends {
                    staged: &mut self.staged,
                    streams: &mut self.streams,
                    plaintext: &self.plaintext,
                    drops: &mut self.drops,
                    include_loopback,
                },
                &mut state,
                id,
                conn,
                time,
                out,
            );
        }
        for f in state.dedup.flush() {
            out.records.push(Record::Finding(f));
        }
        out.actions.push(Action::Forget {
            tgid: state.key.pid,
            start: state.key.start,
            ssl,
            exited: true,
        });
    }

    /// Connect events held longer than [`CONNECT_HOLD`] go out as they stand.
    pub fn tick(&mut self, now: SystemTime, out: &mut Out) {
        let mut due: Vec<(SystemTime, ProcessKey, SockId)> = Vec::new();
        for state in self.processes.iter() {
            for (id, conn) in state.conns.iter() {
                if let Some(e) = &conn.held {
                    if now.duration_since(e.time).unwrap_or_default() >= CONNECT_HOLD {
                        due.push((e.time, state.key, id));
                    }
                }
            }
        }
        due.sort();
        for (_, key, id) in due {
            if let Some(conn) = self
                .processes
                .get_mut(key)
                .and_then(|s| s.conns.get_mut(id))
            {
                release(conn, out);
            }
        }
    }

    /// At shutdown: every held event, then findings whose count grew.
    pub fn finish(&mut self, out: &mut Out) {
        let mut held: Vec<(SystemTime, ProcessKey, SockId)> = Vec::new();
        for state in self.processes.iter() {
            for (id, conn) in state.conns.iter() {
                if let Some(e) = &conn.held {
                    held.push((e.time, state.key, id));
                }
            }
        }
        held.sort();
        for (_, key, id) in held {
            if let Some(conn) = self
                .processes
                .get_mut(key)
                .and_then(|s| s.conns.get_mut(id))
            {
                release(conn, out);
            }
        }
        self.flush(out);
    }

    /// Findings whose count grew since last reported (periodically and at shutdown).
    pub fn flush(&mut self, out: &mut Out) {
        let mut found = Vec::new();
        for state in self.processes.iter_mut() {
            found.extend(state.dedup.flush());
        }
        found.sort_by_key(|f| (f.time, f.id));
        out.records.extend(found.into_iter().map(Record::Finding));
    }

    /// What userspace dropped because a table was full.
    pub fn drops(&self) -> &Drops {
        &self.drops
    }

    /// What the recorded run had dropped outside the analysis, as last recorded (empty live).
    pub fn live_drops(&self) -> &BTreeMap<String, u64> {
        &self.live_drops
    }

    /// The size of every table, for `stats` status lines (and the churn test).
    pub fn tables(&self) -> BTreeMap<&'static str, u64> {
        let mut t = BTreeMap::new();
        let (mut conns, mut by_fd, mut threads, mut tls, mut dedup, mut held) = (0, 0, 0, 0, 0, 0);
        for state in self.processes.iter() {
            let (c, f, th) = state.conns.table_sizes();
            conns += c;
            by_fd += f;
            threads += th;
            held += state.conns.iter().filter(|(_, c)| c.held.is_some()).count();
            tls += state.tls.table_size();
            dedup += state.dedup.len();
        }
        t.insert("processes", self.processes.len() as u64);
        t.insert("connections", conns as u64);
        t.insert("descriptors", by_fd as u64);
        t.insert("threads", threads as u64);
        t.insert("held_connects", held as u64);
        t.insert("streams", self.streams as u64);
        t.insert("socket_owners", self.processes.socket_index_len() as u64);
        t.insert("tls_objects", tls as u64);
        t.insert("findings", dedup as u64);
        let (listeners, served) = self.processes.iter().fold((0, 0), |(l, c), s| {
            let (sl, sc) = s.server.table_sizes();
            (l + sl, c + sc)
        });
        t.insert("server_listeners", listeners as u64);
        t.insert("server_connections", served as u64);
        t
    }
}

/// What ending a connection touches besides its process.
struct Ends<'a> {
    staged: &'a mut HashMap<(ProcessKey, SockId), Observation>,
    streams: &'a mut usize,
    plaintext: &'a plaintext::Plaintext,
    drops: &'a mut Drops,
    include_loopback: bool,
}

/// A connection of `state`'s process ends (closed, or the process did). A stream still
/// undecided gets the best verdict from what was seen (live; handed to `out.observed` for a
/// recording) or the one the recording gives (replay). The name it learnt goes onto the held
/// connect event, which goes out; then its findings and secrets.
fn end_connection(
    e: Ends,
    state: &mut ProcessState,
    id: SockId,
    mut conn: Conn,
    time: SystemTime,
    out: &mut Out,
) {
    let stream = conn.stream.take();
    *e.streams -= stream.is_some() as usize;
    let verdict = match e.staged.remove(&(state.key, id)) {
        Some(observation) => Some(e.plaintext.verdict(&observation)),
        None => stream.and_then(|stream| {
            let observation = e.plaintext.finish(stream)?;
            let verdict = e.plaintext.verdict(&observation);
            out.observed.push(Observed {
                writer: state.key,
                sock: id,
                at_close: true,
                observation,
            });
            Some(verdict)
        }),
    };
    let Some(verdict) = verdict else {
        release(&mut conn, out);
        return;
    };
    conn.hostname = conn.hostname.clone().or(verdict.hostname.clone());
    release(&mut conn, out);
    out.secrets.extend(verdict.secrets);
    // The connection is gone from the table: report against it directly.
    let destination = conn.named_destination();
    if ignored(&destination.ip, e.include_loopback) {
        return;
    }
    for (id, evidence) in verdict.findings {
        let finding = Finding {
            time,
            id,
            process: state.info.clone(),
            destination: Some(destination.clone()),
            evidence,
            count: 1,
        };
        report(state, e.drops, finding, out);
    }
}

/// One step of a process's TLS tracker, whose output then becomes records and actions. The
/// output buffer is `out.tls`, lent to the step and returned empty (its capacity is reused).
fn tls_step<R>(
    state: &mut ProcessState,
    drops: &mut Drops,
    include_loopback: bool,
    time: SystemTime,
    out: &mut Out,
    step: impl FnOnce(&mut ProcessState, &mut Drops, &mut Vec<tls::TlsOutput>) -> R,
) -> R {
    let mut pending = std::mem::take(&mut out.tls);
    let result = step(state, drops, &mut pending);
    drain_tls(state, drops, include_loopback, &mut pending, time, out);
    out.tls = pending;
    result
}

/// Turn the TLS tracker's output for one process into records and actions.
fn drain_tls(
    state: &mut ProcessState,
    drops: &mut Drops,
    include_loopback: bool,
    pending: &mut Vec<tls::TlsOutput>,
    time: SystemTime,
    out: &mut Out,
) {
    let ignored =
        |d: &Option<Destination>| d.as_ref().is_some_and(|d| ignored(&d.ip, include_loopback));
    for item in pending.drain(..) {
        match item {
            tls::TlsOutput::Settle { ssl } => out.actions.push(Action::SettleTls {
                tgid: state.key.pid,
                ssl,
            }),
            tls::TlsOutput::Handshake { destination, tls } => {
                if ignored(&destination) {
                    continue;
                }
                out.records.push(Record::Event(Event {
                    time,
                    process: state.info.clone(),
                    detail: EventDetail::TlsHandshake { destination, tls },
                }));
            }
            tls::TlsOutput::Finding {
                id,
                destination,
                evidence,
            } => {
                if ignored(&destination) {
                    continue;
                }
                let finding = Finding {
                    time,
                    id,
                    process: state.info.clone(),
                    destination,
                    evidence,
                    count: 1,
                };
                report(state, drops, finding, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        decode::{Comm, Family, Protocol},
        output::finding::FindingId,
    };
    use monitor_common::TlsCall;

    const SK: SockId = 0xffff_8880_0000_1000;
    const T0: SystemTime = SystemTime::UNIX_EPOCH;

    fn connect(ip: &str, ret: i32) -> Connect {
        let ip: IpAddr = ip.parse().unwrap();
        Connect {
            tgid: 1,
            start: 100,
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
            sock: SK,
            outcome: None,
        }
    }

    fn analyzer(settings: Settings) -> Analyzer {
        Analyzer::new(
            settings,
            TrustStore::empty(),
            DetectConfig::default(),
            Fingerprinter::new([1; 32]),
            pins::PinPolicy::default(),
        )
    }

    fn with_process(a: &mut Analyzer, pid: u32, start: u64) -> ProcessKey {
        let key = ProcessKey::new(pid, start);
        let info = Arc::new(ProcessInfo {
            pid,
            ..Default::default()
        });
        assert!(a.add_process(key, info, T0, &mut Out::default()));
        key
    }

    fn events(out: &Out) -> Vec<&Event> {
        out.records
            .iter()
            .filter_map(|r| match r {
                Record::Event(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    fn result_of(e: &Event) -> &'static str {
        match &e.detail {
            EventDetail::Connect { result, .. } | EventDetail::ConnectResult { result, .. } => {
                result
            }
            other => panic!("not a connect: {other:?}"),
        }
    }

    /// The connect event for `c`, after the hold if there is one.
    fn run(settings: Settings, c: &Connect) -> Option<Event> {
        let mut a = analyzer(settings);
        with_process(&mut a, 1, 100);
        let mut out = Out::default();
        a.connect(c, T0, &mut out);
        a.finish(&mut out);
        events(&out).first().map(|e| (*e).clone())
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

    fn hello(tgid: u32, start: u64, sock: SockId) -> Payload {
        Payload {
            tgid,
            start,
            tid: tgid,
            ktime_ns: 0,
            sock,
            fd: 5,
            source: 1,
            len: 52,
            data: b"GET / HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n".to_vec(),
        }
    }

    fn close(tgid: u32, start: u64, sock: SockId) -> SocketClose {
        SocketClose {
            tgid,
            start,
            ktime_ns: 0,
            sock,
            fd: 5,
            undecided: true,
        }
    }

    #[test]
    fn tcp_connects_wait_for_their_hostname_udp_and_failures_do_not() {
        let mut a = analyzer(Settings::default());
        with_process(&mut a, 1, 100);
        let mut out = Out::default();
        let mut c = connect("10.203.0.2", -115);
        c.outcome = Some(0); // established while the syscall ran
        a.connect(&c, T0, &mut out);
        assert!(out.records.is_empty(), "held until the first bytes");
        a.payload(&hello(1, 100, SK), T0, &mut out);
        a.socket_close(&close(1, 100, SK), T0, &mut out);
        let [e] = events(&out)[..] else {
            panic!("{:?}", out.records)
        };
        let EventDetail::Connect { destination, .. } = &e.detail else {
            panic!()
        };
        assert_eq!(destination.hostname.as_deref(), Some("api.test"));
        assert_eq!(result_of(e), "ok", "the outcome, not in_progress");

        let mut out = Out::default();
        let mut udp = connect("10.203.0.2", 0);
        udp.protocol = Some(Protocol::Udp);
        udp.sock = 0;
        a.connect(&udp, T0, &mut out);
        let mut refused = connect("10.203.0.2", -111);
        refused.sock = 0;
        a.connect(&refused, T0, &mut out);
        assert_eq!(
            events(&out).len(),
            2,
            "UDP and refused connects go out at once"
        );
        assert_eq!(result_of(events(&out)[1]), "ECONNREFUSED");

        let mut out = Out::default();
        a.connect(&connect("10.203.0.2", 0), T0, &mut out);
        a.tick(T0 + CONNECT_HOLD / 2, &mut out);
        assert!(out.records.is_empty());
        a.tick(T0 + CONNECT_HOLD, &mut out);
        assert_eq!(
            events(&out).len(),
            1,
            "released without a name after the hold"
        );
    }

    /// Two processes' connections had the same kernel socket address, one after the other
    /// (the kernel reused the memory), and the first one's records are applied late (they
    /// waited for its /proc read) between the second one's: each connection still gets its
    /// own first bytes.
    #[test]
    fn a_reused_socket_address_names_each_connection_by_its_own_bytes() {
        let mut a = analyzer(Settings::default());
        with_process(&mut a, 1, 100);
        with_process(&mut a, 2, 200);
        let mut out = Out::default();
        let mut first = connect("10.203.0.2", 0);
        first.port = 8443;
        let mut second = connect("10.203.0.2", 0);
        (second.tgid, second.start, second.tid) = (2, 200, 2);
        a.connect(&first, T0, &mut out);
        a.connect(&second, T0, &mut out);
        // The first process's bytes come after the second process's connect.
        a.payload(&hello(1, 100, SK), T0, &mut out);
        a.socket_close(&close(1, 100, SK), T0, &mut out);
        let mut other = hello(2, 200, SK);
        other.data = b"GET / HTTP/1.1\r\nHost: other.test\r\n\r\n".to_vec();
        other.len = other.data.len() as u32;
        a.payload(&other, T0, &mut out);
        a.socket_close(&close(2, 200, SK), T0, &mut out);
        let names: Vec<(u32, Option<&str>)> = events(&out)
            .iter()
            .map(|e| match &e.detail {
                EventDetail::Connect { destination, .. } => {
                    (e.process.pid, destination.hostname.as_deref())
                }
                other => panic!("not a connect: {other:?}"),
            })
            .collect();
        assert_eq!(names, [(1, Some("api.test")), (2, Some("other.test"))]);
        assert_eq!(a.processes().socket_index_len(), 0);
    }

    fn result(sock: SockId, result: i32) -> ConnectResult {
        ConnectResult {
            tgid: 1,
            start: 100,
            ktime_ns: 0,
            sock,
            fd: 5,
            result,
        }
    }

    #[test]
    fn a_refused_non_blocking_connect_reports_its_errno() {
        let mut a = analyzer(Settings::default());
        with_process(&mut a, 1, 100);
        let mut out = Out::default();
        a.connect(&connect("10.203.0.2", -115), T0, &mut out);
        assert!(out.records.is_empty(), "held until its outcome");
        a.connect_result(&result(SK, -111), T0, &mut out);
        let [e] = events(&out)[..] else {
            panic!("{:?}", out.records)
        };
        assert_eq!(result_of(e), "ECONNREFUSED");
        assert_eq!(
            a.tables()["connections"],
            0,
            "a refused socket is forgotten"
        );
    }

    #[test]
    fn a_slow_connect_goes_out_in_progress_then_gets_its_result() {
        let mut a = analyzer(Settings::default());
        with_process(&mut a, 1, 100);
        let mut out = Out::default();
        a.connect(&connect("10.203.0.2", -115), T0, &mut out);
        a.tick(T0 + CONNECT_HOLD, &mut out);
        assert_eq!(result_of(events(&out)[0]), "in_progress");
        a.connect_result(&result(SK, -110), T0 + CONNECT_HOLD * 3, &mut out);
        let all = events(&out);
        assert_eq!(all.len(), 2, "{:?}", out.records);
        assert!(matches!(all[1].detail, EventDetail::ConnectResult { .. }));
        assert_eq!(result_of(all[1]), "ETIMEDOUT");
        // An established one that went out in progress gets its result too, once.
        let mut out = Out::default();
        let mut c = connect("10.203.0.2", -115);
        c.sock = SK + 1;
        a.connect(&c, T0, &mut out);
        a.tick(T0 + CONNECT_HOLD, &mut out);
        a.connect_result(&result(SK + 1, 0), T0, &mut out);
        a.connect_result(&result(SK + 1, 0), T0, &mut out);
        assert_eq!(
            events(&out)
                .iter()
                .map(|e| result_of(e))
                .collect::<Vec<_>>(),
            ["in_progress", "ok"]
        );
    }

    #[test]
    fn credentials_are_reported_once_and_their_values_handed_to_the_scrubber() {
        let mut a = analyzer(Settings::default());
        with_process(&mut a, 1, 100);
        let mut out = Out::default();
        a.connect(&connect("10.203.0.2", 0), T0, &mut out);
        let mut p = hello(1, 100, SK);
        p.data = b"GET /v1 HTTP/1.1\r\nHost: api.test\r\nAuthorization: Bearer tok-0123456789abcdef\r\n\r\n".to_vec();
        p.len = p.data.len() as u32;
        a.payload(&p, T0, &mut out);
        let f = out.findings();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].id, FindingId::PlaintextCredentials);
        assert_eq!(
            f[0].destination.as_ref().unwrap().hostname.as_deref(),
            Some("api.test")
        );
        assert!(out
            .secrets
            .iter()
            .any(|s| s.as_bytes() == b"tok-0123456789abcdef"));
        // Named by the payload's time: a later socket at the same address is left alone.
        assert!(out
            .actions
            .contains(&Action::SettleSocket { sock: SK, seen: T0 }));
    }

    #[test]
    fn a_reused_pid_inherits_nothing() {
        let mut a = analyzer(Settings::default());
        let old = with_process(&mut a, 42, 1000);
        let mut out = Out::default();
        let bypass = || tls::EnvBypass {
            name: "NODE_TLS_REJECT_UNAUTHORIZED".into(),
            value: "0".into(),
            source: "environment at start",
        };
        a.env_bypass(old, bypass(), T0, &mut out);
        assert_eq!(out.findings().len(), 1);
        a.set_app_checks_names(old, true);
        // The old process's exit was never seen; a new process gets pid 42.
        let new = ProcessKey::new(42, 2000);
        let mut out = Out::default();
        a.add_process(new, Arc::new(ProcessInfo::default()), T0, &mut out);
        assert!(
            out.actions
                .iter()
                .any(|x| matches!(x, Action::Forget { tgid: 42, .. })),
            "the old process is concluded"
        );
        // Events of the old process that were still in flight do not touch the new one.
        a.env_bypass(old, bypass(), T0, &mut out);
        assert!(out.findings().is_empty());
        let state = a.processes().get(new).unwrap();
        assert!(state.tls.env.is_none() && !state.tls.app_checks_names);
        let mut out = Out::default();
        a.env_bypass(new, bypass(), T0, &mut out);
        assert_eq!(
            out.findings().len(),
            1,
            "a first finding for the new process, not a repeat of the old one's"
        );
        assert_eq!(out.findings()[0].count, 1);
    }

    fn tls(tgid: u32, call: TlsCall, ssl: u64, ptr2: u64, value: i64, text: &str) -> Tls {
        Tls {
            tgid,
            start: 1,
            tid: tgid,
            ktime_ns: 0,
            call: call as u32,
            library: 0,
            ssl,
            ptr2,
            value,
            text: text.as_bytes().to_vec(),
        }
    }

    #[test]
    fn another_process_freeing_the_same_ssl_address_changes_nothing() {
        let mut a = analyzer(Settings::default());
        let pa = with_process(&mut a, 10, 1);
        let pb = with_process(&mut a, 11, 1);
        let (ssl, ctx, param) = (0x5555_0000_1000, 0x5555_0000_2000, 0x5555_0000_3000);
        let mut out = Out::default();
        let mut c = connect("10.203.0.2", -115);
        c.tgid = pa.pid;
        c.start = 1;
        c.outcome = Some(0);
        a.connect(&c, T0, &mut out);
        let feed = |a: &mut Analyzer, e: Tls, out: &mut Out| a.tls(&e, None, T0, out);
        let mut feed = |a: &mut Analyzer, e: Tls| feed(a, e, &mut out);
        feed(&mut a, tls(pa.pid, TlsCall::CtxSetVerify, ctx, 0, 1, ""));
        feed(&mut a, tls(pa.pid, TlsCall::SslNew, ssl, ctx, 0, ""));
        feed(&mut a, tls(pa.pid, TlsCall::GetParam, ssl, param, 0, ""));
        // A forked worker with the same heap layout creates and frees "the same" SSL.
        feed(&mut a, tls(pb.pid, TlsCall::SslNew, ssl, ctx, 0, ""));
        feed(&mut a, tls(pb.pid, TlsCall::SslFree, ssl, 0, 0, ""));
        feed(
            &mut a,
            tls(pa.pid, TlsCall::ParamSetHost, param, 0, 0, "api.test"),
        );
        feed(&mut a, tls(pa.pid, TlsCall::SetFd, ssl, SK, 5, ""));
        feed(&mut a, tls(pa.pid, TlsCall::HandshakeReturn, ssl, 0, 1, ""));
        feed(&mut a, tls(pa.pid, TlsCall::VerifyResult, ssl, 0, 0, ""));
        // The request leaves (TLS 1.3: ClientHello, CCS, Finished, data).
        for (content_type, first, len) in [(22, 1, 512), (20, 1, 1), (23, 9, 53), (23, 7, 90)] {
            let r = TlsRecord {
                tgid: pa.pid,
                start: 1,
                ktime_ns: 0,
                sock: SK,
                content_type,
                first,
                len,
            };
            a.tls_record(&r, T0, &mut out);
        }
        let ids: Vec<FindingId> = out.findings().iter().map(|f| f.id).collect();
        assert!(
            !ids.contains(&FindingId::TlsHostnameUnchecked),
            "process A set its host name: {ids:?}"
        );
        let handshakes: Vec<&Event> = events(&out);
        assert_eq!(handshakes.len(), 1, "{:?}", out.records);
        assert_eq!(handshakes[0].process.pid, pa.pid);
    }

    #[test]
    fn every_table_is_empty_after_the_processes_exit() {
        let mut a = analyzer(Settings::default());
        let mut out = Out::default();
        for pid in 1..200u32 {
            let key = with_process(&mut a, pid, 7);
            let mut c = connect("10.203.0.2", -115);
            c.tgid = pid;
            c.start = 7;
            c.sock = SK + pid as u64;
            a.connect(&c, T0, &mut out);
            a.payload(&hello(pid, 7, SK + pid as u64), T0, &mut out);
            a.tls(
                &tls(pid, TlsCall::SslNew, 0x1000, 0x2000, 0, ""),
                None,
                T0,
                &mut out,
            );
            a.tls(
                &tls(pid, TlsCall::CtxSetVerify, 0x2000, 0, 1, ""),
                None,
                T0,
                &mut out,
            );
            if pid % 2 == 0 {
                a.process_exit(key, T0, &mut out);
            } else {
                a.process_exit(ProcessKey::new(pid, 0), T0, &mut out);
            }
        }
        assert!(a.tables().values().all(|&n| n == 0), "{:?}", a.tables());
        assert_eq!(events(&out).len(), 199, "every held connect went out");
    }
}
