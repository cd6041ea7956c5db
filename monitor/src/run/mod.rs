//! `egress-monitor run`: check, load, attach, scan, then stream until told to stop.
//!
//! One event loop (a current-thread runtime) reads the ring buffer in bounded batches and runs
//! the analysis. Two worker threads do what could hold it up: reading /proc ([`procfs`]) and
//! reading ELF files and attaching or detaching uprobes ([`probes`]). The events of a process
//! wait, in order, while what is needed to report them is read; every other process goes on.
mod attach;
mod kernel;
mod procfs;
mod server;

use std::{
    collections::{HashMap, VecDeque},
    io::{IsTerminal as _, Write},
    path::PathBuf,
    sync::{mpsc, Arc},
    time::{Duration, Instant, SystemTime},
};

use anyhow::Context as _;
use aya::{
    maps::{HashMap as BpfHashMap, MapData, RingBuf},
    Ebpf,
};
use tokio::{io::unix::AsyncFd, signal::unix::SignalKind, sync::mpsc::UnboundedReceiver};

use crate::{
    analyze::{
        input::{env_input, Input, Time},
        processes::ProcessKey,
        Action, Analyzer, Drops, Out, Settings,
    },
    config::Config,
    decode::{self, RawEvent},
    detect::{cmdline::CmdlineRedactor, redact::Fingerprinter, x509::TrustStore, DetectConfig},
    output::{Clock, Format, Record, Sink, Status, StatusKind, Totals},
    probes::{
        self, caps, tracefs,
        uprobes::{self, LibraryTable, TlsProbes},
        LoadOptions,
    },
    process::{
        discover::Discovery,
        mcp::McpMatcher,
        targets::{NewTarget, Selector, TargetMap, Targeting},
        vanished, ProcFs, ProcessInfo,
    },
};
use kernel::{KernelMaps, Targets};
use procfs::{LoadReason, Loaded};

use crate::suppress::Suppressions;

pub struct RunArgs {
    pub selector: Selector,
    pub mcp_patterns: Vec<String>,
    pub format: Option<Format>,
    pub output: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub include_loopback: bool,
    pub duration: Option<Duration>,
    pub ebpf_log_level: u8,
    /// Kernel map sizes (`LoadOptions::set_map_sizes`), when not the defaults.
    pub map_sizes: Option<String>,
    /// Force the syscall-tracepoint data path.
    pub syscall_tracepoints: bool,
    /// `--hook-cgroup`: the cgroup the hooks go on, instead of the v2 root (measurement only).
    pub hook_cgroup: Option<PathBuf>,
    /// Serve Prometheus `/metrics` and `/healthz` at this address (`--metrics-addr`).
    pub metrics_addr: Option<String>,
    /// `--record FILE`: write every analysis input to a recording.
    pub record: Option<PathBuf>,
    /// `--record-max-size BYTES`: drop the oldest recorded data beyond this.
    pub record_max_size: Option<u64>,
}

/// Ring-buffer records handled per wake-up at most, so signals and timers are served between
/// batches even while the kernel fills the buffer as fast as it can.
const BATCH: usize = 4096;
/// Records waiting for their process to be read, at most (all processes together); beyond
/// that they are dropped and counted (`waiting_full`).
const MAX_WAITING: usize = 65_536;
/// How long shutdown keeps reading what the kernel queued before it stopped, and then waits
/// for the processes still being read: together well under a second, so SIGTERM ends a run
/// promptly even during a flood.
const FINAL_DRAIN: Duration = Duration::from_millis(250);
const FINAL_WAIT: Duration = Duration::from_millis(200);
/// How far the hold of connect events may trail the clock while records are still on their
/// way to the analysis (waiting for their process to be read, or left in the ring by a full
/// batch): past this, a connect goes out as it stands (a backlog that long is the /proc
/// worker's or the ring's, and the reports of every other process must not wait on it).
const HOLD_LAG_MAX: Duration = Duration::from_secs(10);

/// Records of one process that wait until it is read.
struct Waiting {
    /// The process's start time (0: unknown): a late record of an earlier process with the same
    /// pid is not its record.
    start: u64,
    events: VecDeque<RawEvent>,
}

/// Everything that turns kernel records into output lines.
struct Session {
    targeting: Targeting<Targets>,
    analyzer: Analyzer,
    kernel: KernelMaps,
    libraries: LibraryTable,
    sink: Sink,
    clock: Clock,
    /// Totals, suppressions and the closing summary's rows.
    tally: crate::output::tally::Tally,
    out: Out,
    /// Processes being read, with the records that wait for them.
    waiting: HashMap<u32, Waiting>,
    waiting_events: usize,
    /// Userspace drops of the loop itself (the analyzer counts its own).
    drops: Drops,
    procfs_tx: mpsc::Sender<procfs::Request>,
    probes_tx: mpsc::Sender<attach::Request>,
    quiet_targets: bool,
    own_pid: u32,
    /// `--metrics-addr` (a no-op without it); the sink counts the records it writes.
    metrics: crate::metrics::Metrics,
    /// `--record`: every input of the analysis goes here too.
    recorder: Option<crate::record::Writer>,
    /// The kernel's marks on targets' listeners (`run/server.rs`).
    listeners: server::ListenerMarks,
    /// Kernel time of the last record read from the ring.
    last_read: u64,
    /// The last batch left records in the ring: they are no older than `last_read`.
    ring_behind: bool,
}

/// The records a process emits in its own context while it lives: the first of them is
/// worth reading /proc for. (Exit, close and connect results may come after it is gone.)
fn starts_process(event: &RawEvent) -> bool {
    matches!(
        event,
        RawEvent::Connect(_)
            | RawEvent::Payload(_)
            | RawEvent::Tls(_)
            | RawEvent::Cert(_)
            | RawEvent::SetEnv(_)
            | RawEvent::MmapExec(_)
            | RawEvent::Listen(_)
            | RawEvent::TlsResponse(_)
    )
}

impl Session {
    fn emit(&mut self, record: Record) -> anyhow::Result<()> {
        if !self.tally.admit(&record, SystemTime::now(), &self.metrics) {
            return Ok(());
        }
        self.sink.emit(&record).context("writing output")
    }

    fn status(&mut self, status: Status) -> anyhow::Result<()> {
        self.emit(Record::Status(status))
    }

    /// One input through the analysis, and into the recording. `false`: a process the table
    /// had no room for.
    fn step(&mut self, input: Input) -> bool {
        let installed = self.analyzer.apply(&input, &mut self.out);
        let time = input.time().map_or(Time(0), Time::from);
        self.record(Some(&input), time);
        installed
    }

    /// Write what the last step decided about connection bytes, then the step's input (none
    /// for a payload: its bytes never go into a recording). A failing recording is reported
    /// once and stops; the run goes on.
    fn record(&mut self, input: Option<&Input>, time: Time) {
        let Some(recorder) = self.recorder.as_mut() else {
            return;
        };
        for secret in &self.out.secrets {
            recorder.learn(secret);
        }
        let mut written = Ok(());
        for observed in self.out.observed.drain(..) {
            written = written.and_then(|_| recorder.write(&Input::Observed(observed, time)));
        }
        if let Some(input) = input {
            written = written.and_then(|_| recorder.write(input));
        }
        if let Err(err) = written {
            self.recording_failed(err);
        }
    }

    fn recording_failed(&mut self, err: std::io::Error) {
        let Some(recorder) = self.recorder.take() else {
            return;
        };
        let status = Status::new(
            StatusKind::Warning,
            Some("--record".into()),
            format!(
                "writing {} failed ({err}); recording stopped, the run goes on",
                recorder.path().display()
            ),
        );
        let _ = self.emit(Record::Status(status));
    }

    /// Once a second: the recording's block goes to disk; with `--record-max-size`, a full
    /// segment is closed and a new one starts with what is known of every watched process.
    fn record_tick(&mut self) -> anyhow::Result<()> {
        let Some(recorder) = self.recorder.as_mut() else {
            return Ok(());
        };
        let result = if recorder.wants_segment() {
            let now = Time::from(SystemTime::now());
            let mut snapshot = Vec::new();
            for state in self.analyzer.processes().iter() {
                snapshot.push(Input::AddProcess {
                    key: state.key,
                    info: state.info.clone(),
                    time: now,
                });
                if state.tls.app_checks_names {
                    snapshot.push(Input::AppChecksNames(state.key));
                }
                snapshot.extend(state.server.snapshot(state.key, now));
            }
            recorder.start_segment(snapshot)
        } else {
            recorder.flush().map(|_| 0)
        };
        match result {
            Ok(0) => Ok(()),
            Ok(dropped) => {
                let (_, total) = recorder.counts();
                self.drops.add("recording_dropped", dropped);
                let message = format!(
                    "--record-max-size: dropped the oldest {dropped} recorded inputs ({total} in all)"
                );
                self.status(Status::new(
                    StatusKind::Warning,
                    Some("--record".into()),
                    message,
                ))
            }
            Err(err) => {
                self.recording_failed(err);
                Ok(())
            }
        }
    }

    /// Emit what the analyzer produced (after teaching the scrubber every secret it saw) and
    /// tell the kernel and the workers what it asked for.
    fn drain(&mut self) -> anyhow::Result<()> {
        // (The recording learnt them in `record`, before writing the step that found them.)
        for secret in self.out.secrets.drain(..) {
            self.sink.learn(&secret);
        }
        let records = std::mem::take(&mut self.out.records);
        for record in records {
            self.emit(record)?;
        }
        for action in self.out.actions.drain(..) {
            match action {
                Action::SettleSocket { sock, seen } => {
                    self.kernel.settle_socket(sock, self.clock.ktime(seen));
                }
                Action::SettleTls { tgid, ssl } => self.kernel.settle_tls(tgid, ssl),
                Action::Forget {
                    tgid,
                    start,
                    ssl,
                    exited,
                } => {
                    self.kernel.forget_tls(tgid, &ssl);
                    if exited {
                        let _ = self
                            .probes_tx
                            .send(attach::Request::Release { pid: tgid, start });
                    }
                }
            }
        }
        self.out.clear();
        Ok(())
    }

    fn wait(&mut self, pid: u32, start: u64, event: Option<RawEvent>) {
        let waiting = self.waiting.entry(pid).or_insert_with(|| Waiting {
            start,
            events: VecDeque::new(),
        });
        if let Some(event) = event {
            if self.waiting_events >= MAX_WAITING {
                self.drops.count("waiting_full");
                return;
            }
            waiting.events.push_back(event);
            self.waiting_events += 1;
        }
    }

    fn load(&mut self, pid: u32, start: u64, reason: LoadReason) {
        let _ = self
            .procfs_tx
            .send(procfs::Request::Load { pid, start, reason });
    }

    fn handle(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        match decode::decode(bytes) {
            Ok(event) => {
                self.last_read = event.ktime_ns();
                self.dispatch(event)
            }
            Err(err) => {
                self.tally.totals.decode_errors += 1;
                tracing::debug!("undecodable record: {err}");
                Ok(())
            }
        }
    }

    /// Route one record: to the analysis when its process is known, else behind its process's
    /// reading.
    fn dispatch(&mut self, event: RawEvent) -> anyhow::Result<()> {
        let (pid, start) = event.process();
        // The agent never reports itself (with --all it is in the target set too).
        if pid == self.own_pid {
            return Ok(());
        }
        let same = |w: &Waiting| w.start == 0 || start == 0 || w.start == start;
        if self.waiting.get(&pid).is_some_and(same) {
            self.wait(pid, start, Some(event));
            return Ok(());
        }
        match event {
            RawEvent::Exec(e) => {
                self.wait(pid, start, None);
                let reason = LoadReason::Exec {
                    inherited: e.targeted,
                    comm: e.comm,
                    filename: e.filename,
                };
                self.load(pid, start, reason);
                Ok(())
            }
            event => {
                let key = ProcessKey::new(pid, start);
                if self.analyzer.knows(key) {
                    return self.apply(event);
                }
                if starts_process(&event) {
                    let comm = match &event {
                        RawEvent::Connect(c) => c.comm,
                        _ => decode::Comm::from(""),
                    };
                    self.wait(pid, start, Some(event));
                    self.load(pid, start, LoadReason::FirstSight { comm });
                }
                // Else: a late record of a process already concluded.
                Ok(())
            }
        }
    }

    /// One record of a known process through the analysis.
    fn apply(&mut self, event: RawEvent) -> anyhow::Result<()> {
        let time = self.clock.at(event.ktime_ns());
        match event {
            RawEvent::Connect(c) => {
                self.step(Input::Connect(c, time.into()));
            }
            RawEvent::ConnectResult(r) => {
                self.step(Input::ConnectResult(r, time.into()));
            }
            RawEvent::Payload(p) => {
                self.analyzer.payload(&p, time, &mut self.out);
                self.record(None, time.into());
            }
            RawEvent::SocketClose(c) => {
                self.step(Input::SocketClose(c, time.into()));
            }
            RawEvent::Tls(t) => {
                let library = self
                    .libraries
                    .read()
                    .expect("library table lock")
                    .get(t.library as usize)
                    .map(|l| (l.path.to_string(), l.kind));
                let key = ProcessKey::new(t.tgid, t.start);
                let first = self.analyzer.first_tls_activity(key);
                let (tgid, start) = (t.tgid, t.start);
                self.server_tls_role(&t);
                self.step(Input::Tls {
                    event: t,
                    library,
                    time: time.into(),
                });
                if first {
                    // Which client libraries it has loaded by now (libpq through psycopg,
                    // say): read before its next records, while it is busy with TLS.
                    self.wait(tgid, start, None);
                    self.load(tgid, start, LoadReason::Libraries);
                }
            }
            RawEvent::Cert(c) => {
                self.step(Input::Cert(c, time.into()));
            }
            RawEvent::TlsRecord(r) => {
                self.step(Input::TlsRecord(r, time.into()));
            }
            RawEvent::Exit(e) => {
                let key = ProcessKey::new(e.tgid, e.start);
                if e.thread_only {
                    self.step(Input::ThreadExit { key, tid: e.tid });
                } else {
                    self.step(Input::ProcessExit(key, time.into()));
                }
            }
            RawEvent::SetEnv(s) => {
                let key = ProcessKey::new(s.tgid, s.start);
                if let Some(input) = env_input(key, &s.name, &s.value, false, time) {
                    self.step(input);
                }
            }
            RawEvent::MmapExec(m) => {
                // A library mapped (by the dynamic loader, or dlopen): the kernel read its name
                // while the mapping was made, so this holds even if the process is gone now.
                let key = ProcessKey::new(m.tgid, m.start);
                if uprobes::library_checks_names(&m.name) {
                    self.step(Input::AppChecksNames(key));
                }
                // Probe the TLS libraries it maps now.
                let _ = self.probes_tx.send(attach::Request::Discover {
                    pid: m.tgid,
                    start: m.start,
                });
            }
            event @ (RawEvent::Listen(_)
            | RawEvent::Accept(_)
            | RawEvent::ServerPayload(_)
            | RawEvent::ServerClose(_)
            | RawEvent::TlsResponse(_)) => self.server_event(event, time),
            RawEvent::Exec(_) => unreachable!("exec records go through dispatch"),
        }
        self.drain()
    }

    /// What the /proc worker read about a process: install it (or decide it is no target),
    /// then run the records that waited for it.
    fn on_loaded(&mut self, loaded: Loaded) -> anyhow::Result<()> {
        let waiting = self.waiting.remove(&loaded.pid);
        if let Some(w) = &waiting {
            self.waiting_events -= w.events.len();
        }
        if let Some(read) = &loaded.read {
            for secret in &read.secrets {
                if let Some(recorder) = self.recorder.as_mut() {
                    recorder.learn(secret);
                }
                self.sink.learn(secret);
            }
        }
        let pid = loaded.pid;
        let start = match (loaded.start, &loaded.read) {
            (0, Some(read)) => read.start,
            (start, _) => start,
        };
        let key = ProcessKey::new(pid, start);
        let time = SystemTime::now();
        match loaded.reason.clone() {
            LoadReason::Exec {
                inherited,
                comm,
                filename,
            } => {
                let info = match loaded.read.as_ref().map(|r| r.info.clone()) {
                    // Exited but not reaped yet (a zombie has no /proc/PID/exe): the path the
                    // kernel saw at the exec stands in.
                    Some(mut info) => {
                        if info.exe.is_none() && filename.starts_with('/') {
                            info.exe = Some(filename.to_string());
                        }
                        info
                    }
                    // Gone already: without a command line only --all, --pid and --comm match.
                    None => vanished(
                        pid,
                        comm.as_str(),
                        (!filename.is_empty()).then_some(&*filename),
                    ),
                };
                let was_target = self.analyzer.knows(key);
                let info = self.label(info);
                if let Some(reason) = self.targeting.on_exec(&info, start, inherited, was_target) {
                    let info = Arc::new(info);
                    let time = time.into();
                    if was_target {
                        self.step(Input::Exec { key, info, time });
                    } else if !self.step(Input::AddProcess { key, info, time }) {
                        self.drain()?;
                        return self.replay(waiting);
                    }
                    if !self.quiet_targets {
                        self.step(Input::Target { key, reason, time });
                    }
                    self.install(key, &loaded);
                } else {
                    // Not watched. What waited for it is normally nothing, or the exec of its
                    // next image: a program that execs another at once (`env`, `sh -c 'exec
                    // ..'`, `ip netns exec`, rustup's and pyenv's proxies), read before that
                    // exec. The next image is judged on its own.
                    return self.abandon_until_exec(waiting);
                }
            }
            LoadReason::FirstSight { comm } => {
                let info = match loaded.read.as_ref().map(|r| r.info.clone()) {
                    Some(info) => info,
                    None => vanished(pid, comm.as_str(), None),
                };
                let info = Arc::new(self.label(info));
                let time = time.into();
                if !self.step(Input::AddProcess { key, info, time }) {
                    return self.abandon(waiting);
                }
                self.install(key, &loaded);
            }
            LoadReason::Libraries => {
                if self.analyzer.knows(key) {
                    self.set_name_checks(key, &loaded);
                }
            }
            LoadReason::Scanned => {}
        }
        self.drain()?;
        self.replay(waiting)
    }

    /// Run the records that waited for their process, in order (one of them may make the rest
    /// wait again: a second exec, say).
    fn replay(&mut self, waiting: Option<Waiting>) -> anyhow::Result<()> {
        if let Some(waiting) = waiting {
            for event in waiting.events {
                self.dispatch(event)?;
            }
        }
        Ok(())
    }

    /// The process could not be installed (the table is full, counted) or is no target: its
    /// waiting records go, counted.
    fn abandon(&mut self, waiting: Option<Waiting>) -> anyhow::Result<()> {
        if let Some(w) = waiting {
            for event in &w.events {
                tracing::debug!("record of an unwatched process dropped: {event:?}");
            }
            self.drops.add("unowned_records", w.events.len() as u64);
        }
        self.drain()
    }

    /// A process read at an exec is no target: the records that waited for it up to its next
    /// exec have no owner (counted); that exec and what came after it go through `dispatch`
    /// again, so the program it runs next is read and judged too.
    fn abandon_until_exec(&mut self, waiting: Option<Waiting>) -> anyhow::Result<()> {
        let Some(mut w) = waiting else {
            return self.drain();
        };
        let next_exec = w
            .events
            .iter()
            .position(|e| matches!(e, RawEvent::Exec(_)))
            .unwrap_or(w.events.len());
        let later = Waiting {
            start: w.start,
            events: w.events.split_off(next_exec),
        };
        self.abandon(Some(w))?;
        self.replay(Some(later))
    }

    /// A child of an MCP server counts as one.
    fn label(&self, info: ProcessInfo) -> ProcessInfo {
        let parent_mcp = info
            .ppid
            .and_then(|ppid| self.analyzer.info(ppid))
            .is_some_and(|p| p.mcp);
        self.targeting.label(info, parent_mcp)
    }

    fn set_name_checks(&mut self, key: ProcessKey, loaded: &Loaded) {
        let info = self.analyzer.info(key.pid);
        let curl = info
            .as_ref()
            .and_then(|i| i.exe.as_deref())
            .is_some_and(|e| e.ends_with("/curl"));
        // A forked child runs its parent's image (and libraries) until it execs.
        let parent = matches!(loaded.reason, LoadReason::FirstSight { .. })
            && info
                .and_then(|i| i.ppid)
                .is_some_and(|ppid| self.analyzer.app_checks_names(ppid));
        if loaded.app_checks_names || curl || parent {
            self.step(Input::AppChecksNames(key));
        }
    }

    /// A process is watched now: what its mappings and environment say, and its TLS libraries.
    fn install(&mut self, key: ProcessKey, loaded: &Loaded) {
        self.adopt_listeners(key);
        self.set_name_checks(key, loaded);
        self.env_at_start(key, loaded);
        let _ = self.probes_tx.send(attach::Request::Discover {
            pid: key.pid,
            start: key.start,
        });
    }

    /// Process-wide TLS bypasses in the environment a process started with.
    fn env_at_start(&mut self, key: ProcessKey, loaded: &Loaded) {
        let now = SystemTime::now();
        for (name, value) in &loaded.env {
            if let Some(input) = env_input(key, name, value, true, now) {
                self.step(input);
            }
        }
    }

    /// Every few seconds: processes and kernel entries whose exit went unseen are concluded
    /// and removed (the liveness answers come from the /proc worker).
    fn sweep(&mut self, alive: &HashMap<u32, Option<u64>>) -> anyhow::Result<()> {
        let time = SystemTime::now();
        for key in self.analyzer.processes().keys() {
            let gone = match alive.get(&key.pid) {
                Some(None) => true,
                Some(Some(now)) => key.start != 0 && *now != key.start,
                None => false,
            };
            if gone && !self.waiting.contains_key(&key.pid) {
                self.step(Input::ProcessExit(key, time.into()));
            }
        }
        self.drain()?;
        // A pid the answer does not cover was added after the question: leave it.
        let dropped = self.targeting.sweep(|pid, start| match alive.get(&pid) {
            Some(None) => true,
            Some(Some(now)) => start != 0 && *now != start,
            None => false,
        });
        if !dropped.is_empty() {
            tracing::debug!("forgot {} finished target(s)", dropped.len());
        }
        let analyzer = &self.analyzer;
        let waiting = &self.waiting;
        let gone = self
            .kernel
            .sweep_tls(|tgid| analyzer.info(tgid).is_some() || waiting.contains_key(&tgid));
        if gone > 0 {
            tracing::debug!("removed {gone} TLS session entries of finished processes");
        }
        self.sweep_server_sessions();
        Ok(())
    }

    /// The pids the liveness sweep asks about: everything in the process table and the
    /// kernel's target set.
    fn sweep_request(&mut self) -> procfs::Request {
        let mut pids: Vec<u32> = self
            .analyzer
            .processes()
            .keys()
            .iter()
            .map(|k| k.pid)
            .collect();
        pids.extend(self.targeting.map_mut().entries().iter().map(|(p, _)| *p));
        pids.sort_unstable();
        pids.dedup();
        procfs::Request::Liveness { pids }
    }

    /// The drops outside the analysis (kernel maps and ring buffer, this loop), as a recording
    /// keeps them (`Input::LiveDrops`); the recording's own drops are in its header.
    fn live_drops(&self) -> std::collections::BTreeMap<String, u64> {
        self.kernel
            .drops()
            .into_iter()
            .chain(self.drops.iter())
            .filter(|&(reason, n)| n > 0 && reason != "recording_dropped")
            .fold(Default::default(), |mut m, (reason, n)| {
                *m.entry(reason.to_string()).or_default() += n;
                m
            })
    }

    /// How far the analysis has seen the kernel's records, on their clock: now, or the oldest
    /// record not applied yet (waiting for its process to be read, or still in the ring after a
    /// full batch), at most `HOLD_LAG_MAX` back. Held connects are timed against it, not the
    /// wall clock: one whose first bytes (its SNI or Host) were captured but wait behind a
    /// /proc read is not given up on meanwhile.
    fn analysed_until(&self) -> SystemTime {
        let oldest = self
            .waiting
            .values()
            .filter_map(|w| w.events.front())
            .map(RawEvent::ktime_ns)
            .chain(self.ring_behind.then_some(self.last_read))
            .min();
        hold_clock(self.clock.now(), oldest.map(|k| self.clock.at(k)))
    }

    /// Every drop, kernel side and userspace.
    fn all_drops(&self) -> std::collections::BTreeMap<&'static str, u64> {
        let mut drops = self.kernel.drops();
        for (reason, n) in self.analyzer.drops().iter().chain(self.drops.iter()) {
            *drops.entry(reason).or_default() += n;
        }
        drops
    }

    /// Table sizes, memory and drops.
    fn stats(&mut self) -> Totals {
        let mut tables: std::collections::BTreeMap<String, u64> = self
            .analyzer
            .tables()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        tables.insert("waiting_processes".into(), self.waiting.len() as u64);
        tables.insert("waiting_records".into(), self.waiting_events as u64);
        tables.insert("scrubbed_secrets".into(), self.sink.secrets_known() as u64);
        tables.insert("open_descriptors".into(), open_descriptors());
        tables.extend(self.kernel.sizes(self.targeting.map_mut()));
        Totals {
            targets: self.targeting.target_count(),
            drops: self.all_drops(),
            tables,
            rss_bytes: resident_bytes(),
            ..self.tally.totals.clone()
        }
    }
}

/// The time held connects are measured against: `now`, or the time of the oldest record not
/// applied yet, but at most [`HOLD_LAG_MAX`] back.
fn hold_clock(now: SystemTime, oldest_unapplied: Option<SystemTime>) -> SystemTime {
    match oldest_unapplied {
        Some(oldest) => oldest.clamp(now.checked_sub(HOLD_LAG_MAX).unwrap_or(now), now),
        None => now,
    }
}

/// Start-up parses large things once (the kernel's BTF, ELF symbol tables, the CA bundle) and
/// frees them; give those pages back to the system, so the steady state is what stays.
fn release_startup_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free heap memory; no pointer is invalidated.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Descriptors the agent holds (maps, programs, probe links, files).
fn open_descriptors() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// The agent's resident set size, from `/proc/self/statm`.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page.max(0) as u64)
}

pub(crate) fn open_sink(format: Option<Format>, output: Option<&PathBuf>) -> anyhow::Result<Sink> {
    let (default, out): (Format, Box<dyn Write + Send>) = match output {
        Some(path) => {
            return Sink::to_file(format.unwrap_or(Format::Json), path)
                .with_context(|| format!("opening --output {}", path.display()));
        }
        None => {
            let stdout = std::io::stdout();
            let default = if stdout.is_terminal() {
                Format::Text
            } else {
                Format::Json
            };
            (
                default,
                Box::new(std::io::BufWriter::with_capacity(1 << 16, stdout)),
            )
        }
    };
    Ok(Sink::new(format.unwrap_or(default), out))
}

/// Register a BPF map's descriptor with the runtime, for readiness.
fn poll<T: std::os::fd::AsRawFd>(inner: T) -> std::io::Result<AsyncFd<T>> {
    // SAFETY: `inner` owns its descriptor (a ring-buffer map fd) for as long as the AsyncFd
    // lives, and always returns the same one.
    unsafe { AsyncFd::register_with_interest(inner, tokio::io::Interest::READABLE) }
        .map_err(Into::into)
}

/// The system trust store plus the config's CAs, for the monitor's own certificate checks.
fn trust_store(config: &Config, statuses: &mut Vec<Status>) -> TrustStore {
    let mut store = match TrustStore::system() {
        Ok(store) => store,
        Err(err) => {
            statuses.push(Status::new(
                StatusKind::Warning,
                Some("trust store".into()),
                format!(
                    "no system CA bundle ({err:#}); certificate reasons will say 'unknown issuer'"
                ),
            ));
            TrustStore::empty()
        }
    };
    for file in &config.tls.ca_files {
        match store.add_pem_file(file) {
            Ok(n) => statuses.push(Status::new(
                StatusKind::Capability,
                Some("trust store".into()),
                format!("{n} CA certificate(s) from {}", file.display()),
            )),
            Err(err) => statuses.push(Status::new(
                StatusKind::Warning,
                Some("trust store".into()),
                format!("{}: {err:#}", file.display()),
            )),
        }
    }
    store
}

fn regexes(field: &str, patterns: &[String]) -> anyhow::Result<Vec<regex::Regex>> {
    patterns
        .iter()
        .map(|p| {
            regex::Regex::new(p)
                .map_err(|e| anyhow::anyhow!("{field}: {p:?} is not a valid regex: {e}"))
        })
        .collect()
}

/// The config's `[[suppress]]` entries, with status lines for the expired ones and the list of
/// the active ones.
pub(crate) fn suppressions(config: &Config, sink: &mut Sink) -> anyhow::Result<Suppressions> {
    let (suppressions, expired) = Suppressions::new(config.suppressions.clone(), SystemTime::now());
    for s in &expired {
        sink.emit(&Record::Status(Status::new(
            StatusKind::Warning,
            Some("suppress".into()),
            format!("ignored: expired: {}", s.describe()),
        )))?;
    }
    if !suppressions.is_empty() {
        let list: Vec<String> = suppressions.iter().map(|s| s.describe()).collect();
        sink.emit(&Record::Status(Status::new(
            StatusKind::Suppressions,
            Some("suppress".into()),
            format!(
                "{} active: {} (matching findings are counted, not printed)",
                list.len(),
                list.join("; ")
            ),
        )))?;
    }
    Ok(suppressions)
}

/// The analysis as the configuration sets it up (shared by `run` and `replay`), and the
/// fingerprint key of this run. Problems that do not stop it are added to `statuses`.
pub(crate) fn analysis(
    config: &Config,
    include_loopback: bool,
    statuses: &mut Vec<Status>,
) -> anyhow::Result<(Analyzer, Fingerprinter)> {
    let trust = trust_store(config, statuses);
    let fingerprints = match config.fingerprint_key()? {
        Some(key) => Fingerprinter::new(key),
        None => Fingerprinter::try_random()
            .map_err(|e| anyhow::anyhow!("no randomness for the fingerprint key: {e}"))?,
    };
    let detect = DetectConfig {
        api_key_headers: config.plaintext.api_key_headers.clone(),
        auth_hosts: regexes("plaintext.auth_hosts", &config.plaintext.auth_hosts)?,
        auth_paths: regexes("plaintext.auth_paths", &config.plaintext.auth_paths)?,
    };
    let analyzer = Analyzer::new(
        Settings { include_loopback },
        trust,
        detect,
        fingerprints.clone(),
        crate::analyze::pins::PinPolicy::new(
            config.pinning.clone(),
            crate::pins::ca_file_stores(&config.tls.ca_files),
        ),
    );
    Ok((analyzer, fingerprints))
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run_async(args))
}

/// Everything `run` prepared before the loop starts.
struct Started {
    /// The MCP servers the start-up scan found, for the ready line.
    mcp_servers: String,
    session: Session,
    mode: String,
    duration: Option<Duration>,
    ebpf_handle: std::thread::JoinHandle<(Ebpf, TlsProbes)>,
    procfs_handle: std::thread::JoinHandle<()>,
    proc_rx: UnboundedReceiver<procfs::Reply>,
    probe_rx: UnboundedReceiver<attach::Reply>,
    ring: RingBuf<MapData>,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
}

async fn start(args: RunArgs) -> anyhow::Result<Started> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let mut sink = open_sink(args.format, args.output.as_ref())?;
    let metrics = crate::metrics::Metrics::start(args.metrics_addr.as_deref())?;
    sink.set_metrics(metrics.clone());
    let suppressions = suppressions(&config, &mut sink)?;
    let matcher = McpMatcher::new(&args.mcp_patterns)?;
    let procfs = ProcFs::default().with_pod_log_dir(&config.kubernetes.pod_log_dir);
    if let Selector::Pids(pids) = &args.selector {
        let missing: Vec<_> = pids.iter().filter(|p| !procfs.exists(**p)).collect();
        if missing.len() == pids.len() {
            anyhow::bail!("no process with pid {missing:?} exists; nothing to watch");
        }
        for pid in missing {
            sink.emit(&Record::Status(Status::new(
                StatusKind::Warning,
                Some("targets".into()),
                format!("no process with pid {pid}; watching the others"),
            )))?;
        }
    }

    let tracefs = tracefs::ensure_mounted()?;
    let capabilities = caps::check();
    let missing = caps::missing_required(&capabilities);
    if !missing.is_empty() {
        let lines: Vec<String> = missing
            .iter()
            .map(|c| format!("  {}: {} (fix: {})", c.name, c.detail, c.fix))
            .collect();
        anyhow::bail!(
            "this machine lacks what egress-monitor needs:\n{}\n(`egress-monitor doctor` shows everything)",
            lines.join("\n")
        );
    }
    for cap in capabilities
        .iter()
        .filter(|c| !c.available && !c.fix.is_empty())
    {
        sink.emit(&Record::Status(Status::new(
            StatusKind::Capability,
            Some(cap.name.to_string()),
            format!("unavailable: {}; affects {}", cap.detail, cap.needed_for),
        )))?;
    }
    if let Some(status) = caps::raise_memlock().status() {
        sink.emit(&Record::Status(status))?;
    }
    let uprobes = capabilities
        .iter()
        .any(|c| c.name == "uprobes" && c.available);

    let mut opts = LoadOptions {
        filter_all: matches!(args.selector, Selector::All),
        report_all_execs: args.selector.needs_all_execs(),
        ebpf_log_level: args.ebpf_log_level,
        syscall_tracepoints: args.syscall_tracepoints,
        hook_cgroup: args.hook_cgroup.clone(),
        ..LoadOptions::default()
    };
    if let Some(spec) = &args.map_sizes {
        opts.set_map_sizes(spec).context("--map-sizes")?;
    }
    let mut loaded = probes::load(&opts, &tracefs)?;
    let mut statuses: Vec<Status> = loaded.statuses.drain(..).collect();
    let mut ebpf = loaded.ebpf;
    let mut tls_probes = match TlsProbes::load(&mut ebpf, uprobes) {
        Ok(p) => p,
        Err(err) => {
            statuses.push(Status::new(
                StatusKind::Skipped,
                Some("uprobes".into()),
                format!("OpenSSL hooks unavailable: {err:#}; connect tracing continues"),
            ));
            TlsProbes::load(&mut ebpf, false)?
        }
    };
    if !uprobes {
        statuses.push(Status::new(
            StatusKind::Skipped,
            Some("uprobes".into()),
            "no uprobe support: TLS findings are off; connect tracing continues",
        ));
    }
    statuses.extend(tls_probes.attach_host(&mut ebpf));
    let (mut analyzer, fingerprints) = analysis(&config, args.include_loopback, &mut statuses)?;
    for status in statuses {
        sink.emit(&Record::Status(status))?;
    }
    let targets: Targets = ebpf
        .take_map("TARGETS")
        .context("TARGETS map missing")?
        .try_into()?;
    let ring = RingBuf::try_from(ebpf.take_map("EVENTS").context("EVENTS map missing")?)?;
    metrics.ring_buffer(&ring);
    let kernel = KernelMaps::take(&mut ebpf)?;
    let listeners = server::ListenerMarks::take(&mut ebpf);
    let redactor = CmdlineRedactor::new(fingerprints, config.redaction.show_inline_code);

    if let Selector::Comms(names) = &args.selector {
        let mut comms: BpfHashMap<MapData, [u8; monitor_common::COMM_LEN], u8> = ebpf
            .take_map("TARGET_COMMS")
            .context("TARGET_COMMS map missing")?
            .try_into()?;
        for name in names {
            // The kernel keeps 15 bytes of a task name.
            let mut comm = [0u8; monitor_common::COMM_LEN];
            let bytes = name.as_bytes();
            let n = bytes.len().min(monitor_common::COMM_LEN - 1);
            comm[..n].copy_from_slice(&bytes[..n]);
            comms
                .insert(comm, 1, 0)
                .with_context(|| format!("adding --comm {name} to the kernel's name set"))?;
        }
    }
    let quiet_targets = matches!(args.selector, Selector::All);
    let mode = args.selector.to_string();
    let mut targeting = Targeting::new(args.selector, matcher, targets);

    // Probes are attached before the scan, so a process exec'd meanwhile arrives as an event.
    let own_pid = std::process::id();
    let mut discovery = Discovery::default();
    let all: Vec<(ProcessInfo, u64, Vec<crate::detect::secret::Secret>)> = procfs
        .pids()
        .into_iter()
        .filter(|&pid| pid != own_pid)
        .filter_map(|pid| procfs.load(pid, &redactor))
        .map(|mut r| {
            r.info.discovered = discovery.examine(&procfs, &r.info);
            (r.info, r.start, r.secrets)
        })
        .collect();
    let mut secrets = Vec::new();
    let scan: Vec<(ProcessInfo, u64)> = all
        .into_iter()
        .map(|(info, start, s)| {
            secrets.push((info.pid, s));
            (info, start)
        })
        .collect();
    let found = targeting.scan(scan);
    let mcp_servers = mcp_servers_line(&found);
    let mut recorder = match &args.record {
        Some(path) => {
            let header = crate::record::Header {
                agent_version: env!("CARGO_PKG_VERSION").into(),
                host: crate::record::host_name(),
                started: crate::output::Timestamp(SystemTime::now()).to_string(),
                mode: mode.clone(),
                include_loopback: args.include_loopback,
                max_size: args.record_max_size,
                ..Default::default()
            };
            let writer = crate::record::Writer::create(path, header)
                .with_context(|| format!("creating --record {}", path.display()))?;
            Some(writer)
        }
        None => None,
    };
    let mut out = Out::default();
    let libraries = tls_probes.table();
    let mut initial: Vec<(ProcessKey, Loaded)> = Vec::new();
    let now = SystemTime::now();
    for target in &found {
        let key = ProcessKey::new(target.process.pid, target.start);
        if let Some((_, s)) = secrets.iter().find(|(pid, _)| *pid == key.pid) {
            for secret in s {
                if let Some(recorder) = recorder.as_mut() {
                    recorder.learn(secret);
                }
                sink.learn(secret);
            }
        }
        let info = Arc::new(target.process.clone());
        let time = now.into();
        let mut inputs = vec![Input::AddProcess { key, info, time }];
        if !quiet_targets {
            let reason = target.reason.clone();
            inputs.push(Input::Target { key, reason, time });
        }
        let mut installed = true;
        for input in &inputs {
            installed = installed && analyzer.apply(input, &mut out);
            if let Some(recorder) = recorder.as_mut() {
                recorder.write(input).context("writing --record")?;
            }
        }
        for record in out.records.drain(..) {
            sink.emit(&record)?;
        }
        if !installed {
            continue;
        }
        // What it had open already was sent before we watched: say so, per connection.
        let open = crate::process::sockets::open_sockets(&procfs, key.pid);
        if let Some(message) = crate::process::sockets::describe(
            key.pid,
            &target.process.comm,
            &open,
            args.include_loopback,
        ) {
            sink.emit(&Record::Status(Status::new(
                StatusKind::Warning,
                Some("preexisting connections".into()),
                message,
            )))?;
        }
        let found = tls_probes.discover(&mut ebpf, key.pid, key.start);
        for status in found.statuses {
            sink.emit(&Record::Status(status))?;
        }
        let loaded = procfs::load(
            &procfs,
            &redactor,
            &mut discovery,
            key.pid,
            key.start,
            LoadReason::Scanned,
        );
        initial.push((key, loaded));
    }

    let (proc_reply_tx, proc_rx) = tokio::sync::mpsc::unbounded_channel();
    let (procfs_tx, procfs_handle) = procfs::spawn(procfs, redactor, discovery, proc_reply_tx);
    let (probe_reply_tx, probe_rx) = tokio::sync::mpsc::unbounded_channel();
    let logger = loaded.logger.take();
    metrics.programs(&ebpf);
    let (probes_tx, ebpf_handle) = attach::spawn(ebpf, tls_probes, probe_reply_tx);

    let mut session = Session {
        targeting,
        analyzer,
        kernel,
        libraries,
        sink,
        clock: Clock::new(),
        out,
        waiting: HashMap::new(),
        waiting_events: 0,
        drops: Drops::default(),
        procfs_tx,
        probes_tx,
        quiet_targets,
        own_pid,
        metrics,
        tally: crate::output::tally::Tally::new(suppressions),
        recorder,
        listeners,
        last_read: 0,
        ring_behind: false,
    };
    for (key, loaded) in initial {
        session.set_name_checks(key, &loaded);
        session.env_at_start(key, &loaded);
        session.adopt_listeners(key);
    }
    session.drain()?;
    release_startup_memory();
    Ok(Started {
        session,
        mode,
        mcp_servers,
        duration: args.duration,
        ebpf_handle,
        procfs_handle,
        proc_rx,
        probe_rx,
        ring,
        logger,
    })
}

/// The MCP servers among the start-up targets, with why, for a person reading the ready line:
/// `MCP servers found: 2: pid 10 node (reason), pid 12 python3 (reason)`.
fn mcp_servers_line(found: &[NewTarget]) -> String {
    const SHOWN: usize = 10;
    let servers: Vec<String> = found
        .iter()
        .filter_map(|t| {
            let reason = t.process.mcp_reason.as_deref()?;
            Some(format!(
                "pid {} {} ({reason})",
                t.process.pid, t.process.comm
            ))
        })
        .collect();
    match servers.len() {
        0 => "MCP servers found: none".into(),
        n if n > SHOWN => format!(
            "MCP servers found: {n}: {}, and {} more (see the target events)",
            servers[..SHOWN].join(", "),
            n - SHOWN
        ),
        n => format!("MCP servers found: {n}: {}", servers.join(", ")),
    }
}

async fn run_async(args: RunArgs) -> anyhow::Result<()> {
    let Started {
        mut session,
        mode,
        mcp_servers,
        duration,
        ebpf_handle,
        procfs_handle,
        mut proc_rx,
        mut probe_rx,
        ring,
        logger,
    } = start(args).await?;
    let ready = Status::new(
        StatusKind::Ready,
        None,
        format!(
            "watching {} process(es), mode {mode}; kernel {}; {mcp_servers}",
            session.targeting.target_count(),
            caps::kernel_release()
        ),
    );
    session.emit(Record::Status(ready))?;
    session.sink.flush()?;

    let mut ring = poll(ring).context("polling the ring buffer")?;
    let mut logger = match logger {
        Some(l) => Some(poll(l).context("polling the eBPF log buffer")?),
        None => None,
    };
    let mut sigint = tokio::signal::unix::signal(SignalKind::interrupt())?;
    let mut sigterm = tokio::signal::unix::signal(SignalKind::terminate())?;
    let mut sigusr1 = tokio::signal::unix::signal(SignalKind::user_defined1())?;
    let mut sighup = tokio::signal::unix::signal(SignalKind::hangup())?;
    let deadline = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut ticks: u64 = 0;
    let mut reported_drops = session.all_drops();
    let reason = loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                let mut handled = 0;
                let mut empty = false;
                while handled < BATCH {
                    let Some(item) = guard.get_inner_mut().next() else {
                        empty = true;
                        break;
                    };
                    let bytes = item.to_vec();
                    drop(item);
                    session.handle(&bytes)?;
                    handled += 1;
                }
                // Only an empty buffer waits for the next wake-up; a full batch comes back at
                // once, after letting the runtime poll its drivers: a readiness that never
                // clears would otherwise starve signals and timers (the ring's readiness
                // future does not count against tokio's cooperative budget).
                if empty {
                    guard.clear_ready();
                }
                session.ring_behind = !empty;
                session.sink.flush()?;
                session.metrics.heartbeat();
                if !empty {
                    tokio::task::yield_now().await;
                }
            }
            Some(reply) = proc_rx.recv() => {
                match reply {
                    procfs::Reply::Loaded(loaded) => session.on_loaded(*loaded)?,
                    procfs::Reply::Liveness(alive) => session.sweep(&alive)?,
                }
                session.sink.flush()?;
            }
            Some(reply) = probe_rx.recv() => {
                let statuses = match reply {
                    attach::Reply::Discovered { statuses, .. } => statuses,
                    attach::Reply::Released { statuses } => statuses,
                };
                for status in statuses {
                    session.status(status)?;
                }
                session.sink.flush()?;
            }
            guard = async {
                match logger.as_mut() {
                    Some(l) => l.readable_mut().await,
                    None => std::future::pending().await,
                }
            } => {
                let mut guard = guard?;
                guard.get_inner_mut().flush();
                guard.clear_ready();
            }
            _ = sigint.recv() => break "SIGINT",
            _ = sigterm.recv() => break "SIGTERM",
            _ = sigusr1.recv() => {
                let mut status = Status::new(StatusKind::Stats, None, "tables, memory and drops");
                status.totals = Some(session.stats());
                session.status(status)?;
                session.sink.flush()?;
            }
            _ = sighup.recv() => {
                // logrotate moved the file away: write to a new one by the same name. A
                // failure keeps the old file and says so.
                match session.sink.reopen() {
                    Ok(true) => {}
                    Ok(false) => tracing::info!("SIGHUP: no --output file to reopen"),
                    Err(err) => {
                        let status = Status::new(
                            StatusKind::Warning,
                            Some("--output".into()),
                            format!("SIGHUP: reopening the output file failed ({err}); still writing to the old one"),
                        );
                        session.status(status)?;
                    }
                }
            }
            _ = &mut deadline => break "--duration elapsed",
            _ = tick.tick() => {
                ticks += 1;
                let now = session.all_drops();
                let targets = session.analyzer.processes().len();
                session.metrics.tick(targets, &now, session.tally.totals.decode_errors);
                if now != reported_drops {
                    let mut status = Status::new(StatusKind::Drops, None, "events were dropped");
                    status.totals = Some(Totals { drops: now.clone(), ..session.tally.totals.clone() });
                    session.emit(Record::Status(status))?;
                    reported_drops = now;
                    let live = session.live_drops();
                    if !live.is_empty() {
                        session.step(Input::LiveDrops(live));
                    }
                }
                if ticks.is_multiple_of(30) {
                    let request = session.sweep_request();
                    let _ = session.procfs_tx.send(request);
                }
                let until = session.analysed_until();
                session.step(Input::Tick(until.into()));
                if ticks.is_multiple_of(60) {
                    session.step(Input::Flush);
                }
                session.drain()?;
                session.record_tick()?;
                session.sink.flush()?;
            }
        }
    };
    // Whatever the kernel queued before we stopped is still reported (for a bounded time: a
    // process flooding the buffer must not keep the agent from stopping). Targets stop
    // producing first: the kernel's target set is emptied.
    let stopped = Instant::now();
    for (pid, _) in session.targeting.map_mut().entries() {
        TargetMap::remove(session.targeting.map_mut(), pid);
    }
    let ring = ring.get_mut();
    let mut unfinished = false;
    while let Some(item) = ring.next() {
        let bytes = item.to_vec();
        drop(item);
        session.handle(&bytes)?;
        if stopped.elapsed() > FINAL_DRAIN {
            unfinished = true;
            break;
        }
    }
    // Records still waiting for their process: give the /proc worker a moment, then report
    // them with what the kernel said.
    let deadline = Instant::now() + FINAL_WAIT;
    while !session.waiting.is_empty() && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(50), proc_rx.recv()).await {
            Ok(Some(procfs::Reply::Loaded(loaded))) => session.on_loaded(*loaded)?,
            Ok(Some(procfs::Reply::Liveness(_))) => {}
            Ok(None) => break,
            Err(_) => {}
        }
    }
    session
        .drops
        .add("waiting_at_shutdown", session.waiting_events as u64);
    let live = session.live_drops();
    if !live.is_empty() {
        session.step(Input::LiveDrops(live));
    }
    session.analyzer.finish(&mut session.out);
    session.drain()?;
    let message = if unfinished {
        format!("stopped ({reason}); records were still arriving, the last ones were not read")
    } else {
        format!("stopped ({reason})")
    };
    let drops: u64 = session.all_drops().values().sum();
    session
        .sink
        .summary(&session.tally.summary, session.tally.summary_more, drops)?;
    if let Some(mut recorder) = session.recorder.take() {
        let status = match recorder.finish() {
            Ok(()) => {
                let (written, dropped) = recorder.counts();
                let mut message = format!(
                    "{} inputs in {} ({} bytes)",
                    written - dropped,
                    recorder.path().display(),
                    recorder.file_len()
                );
                if dropped > 0 {
                    message.push_str(&format!(
                        "; the oldest {dropped} were dropped (--record-max-size)"
                    ));
                }
                Status::new(StatusKind::Recording, Some("--record".into()), message)
            }
            Err(err) => Status::new(
                StatusKind::Warning,
                Some("--record".into()),
                format!("finishing {} failed: {err}", recorder.path().display()),
            ),
        };
        session.sink.emit(&Record::Status(status))?;
    }
    let mut status = Status::new(StatusKind::Shutdown, None, message);
    status.totals = Some(session.stats());
    session.sink.emit(&Record::Status(status))?;
    session.sink.flush()?;
    // No other thread may be inside the allocator when the teardown forks.
    session.metrics.stop();
    // Stop the workers; the programs come back for the teardown.
    let Session {
        mut targeting,
        procfs_tx,
        probes_tx,
        ..
    } = session;
    drop(procfs_tx);
    drop(probes_tx);
    let _ = procfs_handle.join();
    let (ebpf, mut tls) = ebpf_handle
        .join()
        .map_err(|_| anyhow::anyhow!("the probe worker panicked"))?;
    teardown_in_background(targeting.map_mut(), &mut tls);
    drop(ebpf);
    Ok(())
}

/// Detaching a uprobe makes the kernel wait for an RCU grace period (~0.1 s), one detach after
/// another: seconds for the few dozen probes a host has. All output is written by now, so the
/// last references to the probes are handed to a forked child that drops them in the
/// background while the agent exits at once. The child first empties the target set, so the
/// probes cost the rest of the system one failed lookup until they are gone.
fn teardown_in_background(targets: &mut Targets, tls: &mut TlsProbes) {
    if tls.attached() == 0 {
        return;
    }
    // SAFETY: the agent is single-threaded here (current-thread runtime, workers joined; a
    // detach thread may still run, and the child only closes descriptors, updates a map and
    // exits).
    match unsafe { libc::fork() } {
        0 => {
            // SAFETY: plain syscalls on valid arguments.
            unsafe {
                libc::setsid();
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                if null >= 0 {
                    for fd in 0..3 {
                        libc::dup2(null, fd);
                    }
                }
            }
            for (pid, _) in targets.entries() {
                TargetMap::remove(targets, pid);
            }
            // Closing the probe descriptors is the slow part; do it while the process is still
            // whole (visible with its name), then leave.
            // SAFETY: closing descriptors this process owns; nothing uses them after this.
            unsafe {
                for fd in 3..4096 {
                    libc::close(fd);
                }
                libc::_exit(0);
            }
        }
        // The child holds its own references; closing ours on exit is cheap.
        pid if pid > 0 => {}
        // No child: detach here, slowly but surely.
        _ => tracing::debug!("fork failed; detaching uprobes in the foreground"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_connects_wait_for_the_records_still_on_their_way() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(hold_clock(now, None), now);
        // A ClientHello read 2.5 s ago waits behind its process's /proc read: the hold stops
        // there, so the connect before it is not given up on.
        let waiting = now - Duration::from_millis(2_500);
        assert_eq!(hold_clock(now, Some(waiting)), waiting);
        // A backlog longer than HOLD_LAG_MAX holds nobody longer than that.
        let stuck = now - Duration::from_secs(60);
        assert_eq!(hold_clock(now, Some(stuck)), now - HOLD_LAG_MAX);
        // A record stamped after `now` (clocks read in another order) holds nothing.
        assert_eq!(hold_clock(now, Some(now + Duration::from_millis(3))), now);
    }
}
