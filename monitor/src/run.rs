//! `egress-monitor run`: check, load, attach, scan, then stream until told to stop.
use std::{
    io::{IsTerminal as _, Write},
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use anyhow::Context as _;
use aya::{
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    Ebpf,
};
use monitor_common::{sock_flags, ssl_flags, SockKey, SockState, SslKey, SslState};
use tokio::{io::unix::AsyncFd, signal::unix::SignalKind};

use crate::{
    analyze::{
        tls::{env_bypass, EnvBypass},
        Action, Analyzer, Out, Settings,
    },
    config::Config,
    decode::{self, RawEvent},
    detect::{redact::Fingerprinter, x509::TrustStore, DetectConfig},
    output::{Clock, Event, EventDetail, Format, Record, Sink, Status, StatusKind, Totals},
    probes::{self, caps, tracefs, uprobes::TlsProbes, LoadOptions},
    process::{
        mcp::McpMatcher,
        targets::{NewTarget, Selector, Tracker},
        ProcFs, ProcessInfo,
    },
};

pub struct RunArgs {
    pub selector: Selector,
    pub mcp_patterns: Vec<String>,
    pub format: Option<Format>,
    pub output: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub include_loopback: bool,
    pub duration: Option<Duration>,
    pub ebpf_log_level: u8,
}

type Targets = BpfHashMap<MapData, u32, u32>;
type SslStates = BpfHashMap<MapData, SslKey, SslState>;
type Sockets = BpfHashMap<MapData, SockKey, SockState>;

/// The environment variables that switch TLS verification off process-wide.
const BYPASS_VARIABLES: [&str; 1] = ["NODE_TLS_REJECT_UNAUTHORIZED"];

/// Everything that turns kernel records into output lines.
struct Session {
    ebpf: Ebpf,
    tracker: Tracker<Targets>,
    analyzer: Analyzer,
    tls_probes: TlsProbes,
    ssl_states: Option<SslStates>,
    sockets: Option<Sockets>,
    procfs: ProcFs,
    sink: Sink,
    clock: Clock,
    totals: Totals,
    out: Out,
    quiet_targets: bool,
    own_pid: u32,
}

impl Session {
    fn emit(&mut self, record: Record) -> anyhow::Result<()> {
        match record {
            Record::Event(_) => self.totals.events += 1,
            Record::Finding(_) => self.totals.findings += 1,
            Record::Status(_) => {}
        }
        self.sink.emit(&record).context("writing output")
    }

    fn status(&mut self, status: Status) -> anyhow::Result<()> {
        self.emit(Record::Status(status))
    }

    /// Emit what the analyzer produced and tell the kernel what it asked for.
    fn drain(&mut self) -> anyhow::Result<()> {
        let records = std::mem::take(&mut self.out.records);
        for record in records {
            self.emit(record)?;
        }
        for action in self.out.actions.drain(..) {
            match action {
                Action::SettleSocket { tgid, fd } => {
                    if let Some(sockets) = self.sockets.as_mut() {
                        let key = SockKey {
                            tgid,
                            fd: fd as u32,
                        };
                        let state = SockState {
                            flags: sock_flags::DONE,
                            captured: 0,
                        };
                        // Only update sockets the kernel still tracks (a closed one is gone).
                        if sockets.get(&key, 0).is_ok() {
                            let _ = sockets.insert(key, state, 0);
                        }
                    }
                }
                Action::SettleTls { tgid, ssl } => {
                    if let Some(states) = self.ssl_states.as_mut() {
                        let key = SslKey { tgid, _pad: 0, ssl };
                        let state = SslState {
                            flags: ssl_flags::VERDICT | ssl_flags::HANDSHAKE_DONE,
                            certs: 0,
                        };
                        // A full map only means the session keeps reporting (counted in drops).
                        let _ = states.insert(key, state, 0);
                    }
                }
            }
        }
        self.out.clear();
        Ok(())
    }

    /// A process became a target: say so, probe its TLS libraries, check its environment.
    fn on_target(&mut self, target: NewTarget) -> anyhow::Result<()> {
        let pid = target.process.pid;
        if !self.quiet_targets {
            self.emit(Record::Event(Event {
                time: SystemTime::now(),
                process: target.process.clone(),
                detail: EventDetail::Target {
                    reason: target.reason,
                },
            }))?;
        }
        self.discover(pid, &target.process)?;
        for name in BYPASS_VARIABLES {
            if let Some(value) = self.procfs.env_var(pid, name) {
                if env_bypass(name, &value) {
                    let bypass = EnvBypass {
                        name: name.to_string(),
                        value,
                        source: "environment at start",
                    };
                    self.env_bypass(pid, bypass)?;
                }
            }
        }
        Ok(())
    }

    /// One analyzer step, with process details looked up as it needs them, then its output.
    fn analyze(
        &mut self,
        step: impl FnOnce(&mut Analyzer, &mut dyn FnMut(u32) -> Arc<ProcessInfo>, &mut Out),
    ) -> anyhow::Result<()> {
        let tracker = &mut self.tracker;
        let mut process = |pid: u32| tracker.process(pid, "");
        step(&mut self.analyzer, &mut process, &mut self.out);
        self.drain()
    }

    fn env_bypass(&mut self, pid: u32, bypass: EnvBypass) -> anyhow::Result<()> {
        self.analyze(|a, process, out| a.env_bypass(pid, bypass, SystemTime::now(), process, out))
    }

    fn discover(&mut self, pid: u32, process: &ProcessInfo) -> anyhow::Result<()> {
        let found = self.tls_probes.discover(&mut self.ebpf, pid);
        let curl = process.exe.as_deref().is_some_and(|e| e.ends_with("/curl"));
        if found.app_checks_names || curl {
            self.analyzer.app_checks_names(pid);
        }
        for status in found.statuses {
            self.status(status)?;
        }
        Ok(())
    }

    fn handle(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let event = match decode::decode(bytes) {
            Ok(event) => event,
            Err(err) => {
                self.totals.decode_errors += 1;
                tracing::debug!("undecodable record: {err}");
                return Ok(());
            }
        };
        match event {
            // The agent never reports itself (with --all it is in the target set too).
            RawEvent::Connect(c) if c.tgid == self.own_pid => {}
            RawEvent::Connect(c) => {
                let process = self.tracker.process(c.tgid, c.comm.as_str());
                let time = self.clock.at(c.ktime_ns);
                self.analyzer.connect(&c, process, time, &mut self.out);
                self.drain()?;
            }
            RawEvent::Payload(p) => {
                let time = self.clock.at(p.ktime_ns);
                self.analyze(|a, process, out| a.payload(&p, time, process, out))?;
            }
            RawEvent::SocketClose(c) => {
                let time = self.clock.at(c.ktime_ns);
                self.analyze(|a, process, out| a.socket_close(c.tgid, c.fd, time, process, out))?;
            }
            RawEvent::Exec(e) => {
                if let Some(target) =
                    self.tracker
                        .on_exec(e.tgid, e.targeted, e.comm.as_str(), &e.filename)
                {
                    self.on_target(target)?;
                }
            }
            RawEvent::Exit(e) => {
                let time = self.clock.at(e.ktime_ns);
                self.analyze(|a, process, out| a.process_exit(e.tgid, time, process, out))?;
                self.tracker.on_exit(e.tgid);
            }
            RawEvent::Tls(t) => {
                let time = self.clock.at(t.ktime_ns);
                let library = self
                    .tls_probes
                    .library(t.library)
                    .map(|l| (l.path.clone(), l.kind));
                self.analyze(|a, process, out| {
                    let library = library.as_ref().map(|(path, kind)| (path.as_str(), *kind));
                    a.tls(&t, library, time, process, out)
                })?;
            }
            RawEvent::Cert(c) => {
                let time = self.clock.at(c.ktime_ns);
                self.analyzer.cert(&c, time);
            }
            RawEvent::MmapExec(m) => {
                let process = self.tracker.process(m.tgid, "");
                self.discover(m.tgid, &process)?;
            }
            RawEvent::SetEnv(s) => {
                if env_bypass(&s.name, &s.value) {
                    let bypass = EnvBypass {
                        name: s.name,
                        value: s.value,
                        source: "set at run time",
                    };
                    self.env_bypass(s.tgid, bypass)?;
                }
            }
        }
        Ok(())
    }
}

fn open_sink(format: Option<Format>, output: Option<&PathBuf>) -> anyhow::Result<Sink> {
    let (default, out): (Format, Box<dyn Write + Send>) = match output {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening --output {}", path.display()))?;
            (Format::Json, Box::new(std::io::BufWriter::new(file)))
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

fn read_drops(drops: &PerCpuArray<MapData, u64>) -> std::collections::BTreeMap<&'static str, u64> {
    monitor_common::Drop::ALL
        .iter()
        .map(|d| {
            let n = drops
                .get(&(*d as u32), 0)
                .map(|per_cpu| per_cpu.iter().sum())
                .unwrap_or(0);
            (d.name(), n)
        })
        .collect()
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

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run_async(args))
}

async fn run_async(args: RunArgs) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let mut sink = open_sink(args.format, args.output.as_ref())?;
    let matcher = McpMatcher::new(&args.mcp_patterns)?;
    let procfs = ProcFs::default();
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
    let uprobes = capabilities
        .iter()
        .any(|c| c.name == "uprobes" && c.available);

    let opts = LoadOptions {
        filter_all: matches!(args.selector, Selector::All),
        report_all_execs: args.selector.needs_all_execs(),
        ebpf_log_level: args.ebpf_log_level,
        ..LoadOptions::default()
    };
    let mut loaded = probes::load(&opts, &tracefs)?;
    let mut statuses: Vec<Status> = loaded.statuses.drain(..).collect();
    let mut ebpf = loaded.ebpf;
    let tls_probes = match TlsProbes::load(&mut ebpf, uprobes) {
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
    let mut tls_probes = tls_probes;
    statuses.extend(tls_probes.attach_host(&mut ebpf));
    let trust = trust_store(&config, &mut statuses);
    for status in statuses {
        sink.emit(&Record::Status(status))?;
    }
    let targets: Targets = ebpf
        .take_map("TARGETS")
        .context("TARGETS map missing")?
        .try_into()?;
    let ring = RingBuf::try_from(ebpf.take_map("EVENTS").context("EVENTS map missing")?)?;
    let drops: PerCpuArray<MapData, u64> = ebpf
        .take_map("DROPS")
        .context("DROPS map missing")?
        .try_into()?;
    let ssl_states: Option<SslStates> = ebpf.take_map("SSL_STATE").and_then(|m| m.try_into().ok());
    let sockets: Option<Sockets> = ebpf.take_map("SOCKETS").and_then(|m| m.try_into().ok());
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
    let mode = args.selector.to_string();
    let quiet_targets = matches!(args.selector, Selector::All);
    let mut session = Session {
        ebpf,
        tracker: Tracker::new(args.selector, matcher, procfs.clone(), targets),
        analyzer: Analyzer::new(
            Settings {
                include_loopback: args.include_loopback,
            },
            trust,
            detect,
            fingerprints,
        ),
        tls_probes,
        ssl_states,
        sockets,
        procfs,
        sink,
        clock: Clock::new(),
        totals: Totals::default(),
        out: Out::default(),
        quiet_targets,
        own_pid: std::process::id(),
    };
    // Probes are attached before the scan, so a process exec'd meanwhile arrives as an event.
    for target in session.tracker.scan() {
        session.on_target(target)?;
    }
    let ready = Status::new(
        StatusKind::Ready,
        None,
        format!(
            "watching {} process(es), mode {mode}; kernel {}",
            session.tracker.target_count(),
            caps::kernel_release()
        ),
    );
    session.emit(Record::Status(ready))?;
    session.sink.flush()?;

    let mut ring = poll(ring).context("polling the ring buffer")?;
    let mut logger = match loaded.logger.take() {
        Some(l) => Some(poll(l).context("polling the eBPF log buffer")?),
        None => None,
    };
    let mut sigint = tokio::signal::unix::signal(SignalKind::interrupt())?;
    let mut sigterm = tokio::signal::unix::signal(SignalKind::terminate())?;
    let deadline = async {
        match args.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut ticks: u64 = 0;
    let mut reported_drops = read_drops(&drops);
    let reason = loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                let ring = guard.get_inner_mut();
                while let Some(item) = ring.next() {
                    session.handle(&item)?;
                }
                guard.clear_ready();
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
            _ = &mut deadline => break "--duration elapsed",
            _ = tick.tick() => {
                ticks += 1;
                let now = read_drops(&drops);
                if now != reported_drops {
                    let mut status = Status::new(StatusKind::Drops, None, "the kernel dropped events");
                    status.totals = Some(Totals { drops: now.clone(), ..session.totals.clone() });
                    session.emit(Record::Status(status))?;
                    reported_drops = now;
                }
                if ticks.is_multiple_of(30) {
                    let gone = session.tracker.collect_garbage();
                    if !gone.is_empty() {
                        tracing::debug!("forgot {} finished target(s)", gone.len());
                    }
                }
                session.analyzer.tick(SystemTime::now(), &mut session.out);
                if ticks.is_multiple_of(60) {
                    session.analyzer.flush(&mut session.out);
                }
                session.drain()?;
                session.sink.flush()?;
            }
        }
    };
    // Whatever the kernel queued before we stopped is still reported.
    let ring = ring.get_mut();
    while let Some(item) = ring.next() {
        session.handle(&item)?;
    }
    session.analyzer.finish(&mut session.out);
    session.drain()?;
    let mut status = Status::new(StatusKind::Shutdown, None, format!("stopped ({reason})"));
    session.totals.targets = session.tracker.target_count();
    session.totals.drops = read_drops(&drops);
    status.totals = Some(session.totals.clone());
    session.sink.emit(&Record::Status(status))?;
    session.sink.flush()?;
    teardown_in_background(&mut session);
    Ok(())
}

/// Detaching a uprobe makes the kernel wait for an RCU grace period (~0.1 s), one detach after
/// another: seconds for the few dozen probes a host has. All output is written by now, so the
/// last references to the probes are handed to a forked child that drops them in the
/// background while the agent exits at once. The child first empties the target set, so the
/// probes cost the rest of the system one failed lookup until they are gone.
fn teardown_in_background(session: &mut Session) {
    if session.tls_probes.attached() == 0 {
        return;
    }
    // SAFETY: the agent is single-threaded here (current-thread runtime, no helper threads);
    // the child only closes descriptors, updates a map and exits.
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
            let map = session.tracker.map_mut();
            for pid in crate::process::targets::TargetMap::pids(map) {
                crate::process::targets::TargetMap::remove(map, pid);
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
