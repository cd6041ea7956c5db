//! `egress-monitor run`: check, load, attach, scan, then stream until told to stop.
use std::{
    io::{IsTerminal as _, Write},
    path::PathBuf,
    time::Duration,
};

use anyhow::Context as _;
use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use tokio::{io::unix::AsyncFd, signal::unix::SignalKind};

use crate::{
    analyze::{Analyzer, Settings},
    decode::{self, RawEvent},
    output::{Clock, Event, EventDetail, Format, Record, Sink, Status, StatusKind, Totals},
    probes::{self, caps, tracefs, LoadOptions},
    process::{
        mcp::McpMatcher,
        targets::{NewTarget, Selector, Tracker},
        ProcFs,
    },
};

pub struct RunArgs {
    pub selector: Selector,
    pub mcp_patterns: Vec<String>,
    pub format: Option<Format>,
    pub output: Option<PathBuf>,
    pub include_loopback: bool,
    pub duration: Option<Duration>,
    pub ebpf_log_level: u8,
}

type Targets = BpfHashMap<MapData, u32, u32>;

/// Everything that turns kernel records into output lines.
struct Session {
    tracker: Tracker<Targets>,
    analyzer: Analyzer,
    sink: Sink,
    clock: Clock,
    totals: Totals,
    quiet_targets: bool,
    own_pid: u32,
}

impl Session {
    fn emit(&mut self, record: Record) -> anyhow::Result<()> {
        if matches!(record, Record::Event(_)) {
            self.totals.events += 1;
        }
        self.sink.emit(&record).context("writing output")
    }

    fn target_event(&mut self, target: NewTarget) -> anyhow::Result<()> {
        // With --all every process is a target: saying so for each adds nothing.
        if self.quiet_targets {
            return Ok(());
        }
        self.emit(Record::Event(Event {
            time: std::time::SystemTime::now(),
            process: target.process,
            detail: EventDetail::Target {
                reason: target.reason,
            },
        }))
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
                if let Some(event) = self.analyzer.connect(&c, process, time) {
                    self.emit(Record::Event(event))?;
                }
            }
            RawEvent::Exec(e) => {
                if let Some(target) =
                    self.tracker
                        .on_exec(e.tgid, e.targeted, e.comm.as_str(), &e.filename)
                {
                    self.target_event(target)?;
                }
            }
            RawEvent::Exit(e) => self.tracker.on_exit(e.tgid),
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

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run_async(args))
}

async fn run_async(args: RunArgs) -> anyhow::Result<()> {
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

    let opts = LoadOptions {
        filter_all: matches!(args.selector, Selector::All),
        report_all_execs: args.selector.needs_all_execs(),
        ebpf_log_level: args.ebpf_log_level,
        ..LoadOptions::default()
    };
    let mut loaded = probes::load(&opts, &tracefs)?;
    for status in loaded.statuses.drain(..) {
        sink.emit(&Record::Status(status))?;
    }
    let ebpf = &mut loaded.ebpf;
    let targets: Targets = ebpf
        .take_map("TARGETS")
        .context("TARGETS map missing")?
        .try_into()?;
    let ring = RingBuf::try_from(ebpf.take_map("EVENTS").context("EVENTS map missing")?)?;
    let drops: PerCpuArray<MapData, u64> = ebpf
        .take_map("DROPS")
        .context("DROPS map missing")?
        .try_into()?;

    let mode = args.selector.to_string();
    let quiet_targets = matches!(args.selector, Selector::All);
    let mut session = Session {
        quiet_targets,
        own_pid: std::process::id(),
        tracker: Tracker::new(args.selector, matcher, procfs, targets),
        analyzer: Analyzer::new(Settings {
            include_loopback: args.include_loopback,
        }),
        sink,
        clock: Clock::new(),
        totals: Totals::default(),
    };
    // Probes are attached before the scan, so a process exec'd meanwhile arrives as an event.
    for target in session.tracker.scan() {
        session.target_event(target)?;
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
                    session.sink.flush()?;
                    reported_drops = now;
                }
                if ticks.is_multiple_of(30) {
                    let gone = session.tracker.collect_garbage();
                    if !gone.is_empty() {
                        tracing::debug!("forgot {} finished target(s)", gone.len());
                    }
                }
            }
        }
    };
    // Whatever the kernel queued before we stopped is still reported.
    let ring = ring.get_mut();
    while let Some(item) = ring.next() {
        session.handle(&item)?;
    }
    let mut status = Status::new(StatusKind::Shutdown, None, format!("stopped ({reason})"));
    session.totals.targets = session.tracker.target_count();
    session.totals.drops = read_drops(&drops);
    status.totals = Some(session.totals.clone());
    session.sink.emit(&Record::Status(status))?;
    session.sink.flush()?;
    Ok(())
}
