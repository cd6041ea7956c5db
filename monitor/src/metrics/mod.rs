//! `run --metrics-addr ADDR`: Prometheus metrics at `http://ADDR/metrics` and a health check at
//! `http://ADDR/healthz`, off unless the flag is given.
//!
//! The event loop holds a [`Metrics`] handle (it does nothing when the flag is absent):
//! - [`Metrics::observe`] for every record written (the [`Sink`](crate::output::Sink) calls
//!   it): events by kind, findings by id and severity, probes attached, detached and skipped,
//!   readiness (the `ready` status line) and the end of the run (`shutdown`);
//! - [`Metrics::suppressed`] for a finding a `[[suppress]]` rule kept out of the output;
//! - [`Metrics::heartbeat`] on every ring-buffer batch and [`Metrics::tick`] every second (the
//!   targets watched and every drop): `/healthz` answers 503 when neither came for
//!   [`STALL_AFTER`];
//! - [`Metrics::programs`] and [`Metrics::ring_buffer`] once at start-up: the kernel's run time
//!   and run count of each of the agent's BPF programs, and the ring buffer's fill level, read
//!   at scrape time;
//! - [`Metrics::stop`] before the run forks its teardown child.
//!
//! The HTTP server ([`http`]) runs on its own thread with its own runtime, so neither a slow
//! client nor a stuck event loop holds the other up, and it reads only shared counters,
//! atomics and snapshots. No label carries anything a monitored program controls (kinds, ids,
//! reasons and program names come from the agent's own code), so a secret cannot reach the
//! exposition.
mod http;
mod kernel;

use std::{
    collections::BTreeMap,
    fmt,
    net::SocketAddr,
    os::fd::AsFd,
    sync::{
        atomic::{AtomicU64, AtomicU8, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
        MetricType,
    },
    registry::Registry,
};

use crate::output::{
    finding::{FindingId, Severity},
    Record, StatusKind,
};

/// `/healthz` says the event loop is stuck when it has not come round for this long.
pub const STALL_AFTER: Duration = Duration::from_secs(5);

/// The content type of `/metrics`: the Prometheus text format, version 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The event kinds a run reports, exported at 0 from the start (so `rate()` and `increase()`
/// see the first one).
const EVENT_KINDS: [&str; 4] = ["connect", "connect_result", "target", "tls_handshake"];

type Labels1 = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];

/// The metrics of one run; cheap to clone, and a no-op without `--metrics-addr`.
#[derive(Clone, Default)]
pub struct Metrics(Option<Arc<Shared>>);

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("enabled", &self.0.is_some())
            .finish()
    }
}

/// Where the loop is, for `/healthz`.
const STARTING: u8 = 0;
const READY: u8 = 1;
const STOPPING: u8 = 2;

/// What the loop last said, read by the server at scrape time.
struct State {
    phase: AtomicU8,
    epoch: Instant,
    /// Milliseconds since `epoch` at the loop's last iteration.
    heartbeat_ms: AtomicU64,
    tick: Mutex<LoopSnapshot>,
    programs: Mutex<Vec<kernel::Program>>,
    ring: Mutex<Option<kernel::RingBuffer>>,
}

#[derive(Clone, Debug, Default)]
struct LoopSnapshot {
    targets: u64,
    /// (reason, side, count).
    drops: Vec<(&'static str, &'static str, u64)>,
}

struct Shared {
    registry: Registry,
    events: Family<Labels1, Counter>,
    findings: Family<Labels2, Counter>,
    suppressed: Family<Labels1, Counter>,
    attached: Family<[(&'static str, String); 1], Gauge>,
    skipped: Family<[(&'static str, String); 1], Counter>,
    state: Arc<State>,
    server: Mutex<Option<http::Server>>,
}

/// Health as `/healthz` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Before the `ready` line.
    Starting,
    Ready,
    /// No loop iteration for this long.
    Stalled(Duration),
    /// After the `shutdown` line.
    Stopping,
}

impl Health {
    pub fn ok(&self) -> bool {
        *self == Health::Ready
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Health::Starting => f.write_str("starting: probes and targets not ready yet"),
            Health::Ready => f.write_str("ok"),
            Health::Stalled(d) => write!(
                f,
                "stalled: the event loop has not run for {:.1} s",
                d.as_secs_f64()
            ),
            Health::Stopping => f.write_str("stopping"),
        }
    }
}

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::High => "HIGH",
        Severity::Medium => "MEDIUM",
        Severity::Low => "LOW",
        Severity::Info => "INFO",
    }
}

/// The `kind` label of a probe status line, from its component (`tracepoint:sched/...`,
/// `uprobe:/usr/lib/...`, `data path`, `BTF`): only the part the agent names, never a path.
fn probe_kind(component: Option<&str>, message: &str) -> Option<String> {
    let component = component?;
    let kind = match component {
        // The cgroup hooks come as one line; the syscall fallback's tracepoints have their own.
        "data path" => return message.starts_with("cgroup").then(|| "cgroup".into()),
        "uprobes" => "uprobe",
        c => c.split(':').next().unwrap_or(c),
    };
    Some(
        kind.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect(),
    )
}

/// Drops the kernel programs count (the rest are the agent's own tables).
fn drop_side(reason: &str) -> &'static str {
    if monitor_common::Drop::ALL.iter().any(|d| d.name() == reason) {
        "kernel"
    } else {
        "userspace"
    }
}

impl Metrics {
    /// No metrics (no `--metrics-addr`): every method returns at once.
    pub fn off() -> Self {
        Self(None)
    }

    /// With `Some(ADDR)`: bind ADDR (`127.0.0.1:9464`, `[::1]:9464`, `localhost:9464`) and
    /// serve `/metrics` and `/healthz` from a thread of their own. A bind failure is an error
    /// naming the address.
    pub fn start(addr: Option<&str>) -> anyhow::Result<Self> {
        let Some(addr) = addr else {
            return Ok(Self::off());
        };
        let listener = std::net::TcpListener::bind(addr)
            .with_context(|| format!("--metrics-addr {addr}: cannot listen there"))?;
        let metrics = Self::collecting();
        let shared = metrics.0.clone().expect("collecting");
        let server = http::Server::spawn(listener, shared.clone())
            .with_context(|| format!("--metrics-addr {addr}: starting the HTTP server"))?;
        tracing::info!(
            "metrics at http://{}/metrics, health at /healthz",
            server.local_addr
        );
        *shared.server.lock().unwrap_or_else(|e| e.into_inner()) = Some(server);
        Ok(metrics)
    }

    /// Counting, but not served (tests, and the server's own state).
    fn collecting() -> Self {
        Self::collecting_since(Instant::now())
    }

    /// `epoch`: what heartbeats are measured from.
    fn collecting_since(epoch: Instant) -> Self {
        let state = Arc::new(State {
            phase: AtomicU8::new(STARTING),
            epoch,
            heartbeat_ms: AtomicU64::new(0),
            tick: Mutex::new(LoopSnapshot::default()),
            programs: Mutex::new(Vec::new()),
            ring: Mutex::new(None),
        });
        let mut registry = Registry::default();
        let events = Family::<Labels1, Counter>::default();
        registry.register(
            "egress_monitor_events",
            "Event lines written, by kind",
            events.clone(),
        );
        for kind in EVENT_KINDS {
            let _ = events.get_or_create(&[("kind", kind)]);
        }
        let findings = Family::<Labels2, Counter>::default();
        registry.register(
            "egress_monitor_findings",
            "Finding lines written, by id and severity (a deduplicated finding whose count grew is written again)",
            findings.clone(),
        );
        let suppressed = Family::<Labels1, Counter>::default();
        registry.register(
            "egress_monitor_findings_suppressed",
            "Findings a [[suppress]] rule kept out of the output, by id",
            suppressed.clone(),
        );
        let attached = Family::<[(&'static str, String); 1], Gauge>::default();
        registry.register(
            "egress_monitor_probes_attached",
            "Probes attached now, by kind (one per tracepoint, per library for uprobes, one for the cgroup hooks)",
            attached.clone(),
        );
        let skipped = Family::<[(&'static str, String); 1], Counter>::default();
        registry.register(
            "egress_monitor_probes_skipped",
            "Probes or features skipped (a skipped status line), by kind",
            skipped.clone(),
        );
        let build = Family::<Labels1, Gauge>::default();
        registry.register(
            "egress_monitor_build_info",
            "The agent's version, as a label; always 1",
            build.clone(),
        );
        build
            .get_or_create(&[("version", env!("CARGO_PKG_VERSION"))])
            .set(1);
        registry.register_collector(Box::new(Scraped(state.clone())));
        Self(Some(Arc::new(Shared {
            registry,
            events,
            findings,
            suppressed,
            attached,
            skipped,
            state,
            server: Mutex::new(None),
        })))
    }

    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// Where the server listens (the port chosen for `:0`).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        let shared = self.0.as_ref()?;
        let server = shared.server.lock().unwrap_or_else(|e| e.into_inner());
        server.as_ref().map(|s| s.local_addr)
    }

    /// One record written.
    pub fn observe(&self, record: &Record) {
        let Some(s) = &self.0 else {
            return;
        };
        match record {
            Record::Event(e) => {
                s.events.get_or_create(&[("kind", e.detail.name())]).inc();
            }
            Record::Finding(f) => {
                s.findings
                    .get_or_create(&[
                        ("id", f.id.as_str()),
                        ("severity", severity(f.id.severity())),
                    ])
                    .inc();
            }
            Record::Status(status) => {
                let kind = || probe_kind(status.component.as_deref(), &status.message);
                match status.status {
                    StatusKind::Ready => {
                        s.state.beat();
                        s.state.phase.store(READY, Ordering::Release);
                    }
                    StatusKind::Shutdown => s.state.phase.store(STOPPING, Ordering::Release),
                    StatusKind::Attached => {
                        if let Some(kind) = kind() {
                            s.attached.get_or_create(&[("kind", kind)]).inc();
                        }
                    }
                    StatusKind::Detached => {
                        if let Some(kind) = kind() {
                            s.attached.get_or_create(&[("kind", kind)]).dec();
                        }
                    }
                    StatusKind::Skipped => {
                        if let Some(kind) = kind() {
                            s.skipped.get_or_create(&[("kind", kind)]).inc();
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// A finding a `[[suppress]]` rule kept out of the output.
    pub fn suppressed(&self, id: FindingId) {
        if let Some(s) = &self.0 {
            s.suppressed.get_or_create(&[("id", id.as_str())]).inc();
        }
    }

    /// The event loop came round (a ring-buffer batch).
    pub fn heartbeat(&self) {
        if let Some(s) = &self.0 {
            s.state.beat();
        }
    }

    /// Every second from the loop's timer: a heartbeat, the targets watched and every drop so
    /// far (kernel and userspace, by reason; records that could not be decoded count as
    /// `undecodable`).
    pub fn tick(&self, targets: usize, drops: &BTreeMap<&'static str, u64>, undecodable: u64) {
        let Some(s) = &self.0 else {
            return;
        };
        s.state.beat();
        let mut snapshot = LoopSnapshot {
            targets: targets as u64,
            drops: drops
                .iter()
                .map(|(reason, n)| (*reason, drop_side(reason), *n))
                .collect(),
        };
        snapshot
            .drops
            .push(("undecodable", "userspace", undecodable));
        *s.state.tick.lock().unwrap_or_else(|e| e.into_inner()) = snapshot;
    }

    /// The agent's loaded programs (before the probe worker takes them): their descriptors are
    /// duplicated, so their run time and count can be read at each scrape.
    pub fn programs(&self, ebpf: &aya::Ebpf) {
        let Some(s) = &self.0 else {
            return;
        };
        let mut programs: Vec<kernel::Program> = ebpf
            .programs()
            .filter_map(|(name, program)| {
                let fd = program.fd().ok()?.try_clone().ok()?;
                Some(kernel::Program::new(name, fd))
            })
            .collect();
        programs.sort_by(|a, b| a.name().cmp(b.name()));
        *s.state.programs.lock().unwrap_or_else(|e| e.into_inner()) = programs;
    }

    /// The event ring buffer (a `BPF_MAP_TYPE_RINGBUF` descriptor): its size, and its
    /// positions mapped read-only, for the bytes in use at each scrape.
    pub fn ring_buffer(&self, fd: impl AsFd) {
        let Some(s) = &self.0 else {
            return;
        };
        match kernel::RingBuffer::map(fd.as_fd()) {
            Ok(ring) => *s.state.ring.lock().unwrap_or_else(|e| e.into_inner()) = Some(ring),
            Err(err) => tracing::warn!("metrics: ring buffer positions unavailable: {err:#}"),
        }
    }

    /// Stop serving and wait for the server thread (before the run forks: a child of a
    /// multi-threaded process must not find another thread inside the allocator).
    pub fn stop(&self) {
        if let Some(s) = &self.0 {
            let server = s.server.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(server) = server {
                server.stop();
            }
        }
    }

    /// The exposition, as `/metrics` serves it (empty when off).
    pub fn exposition(&self) -> String {
        self.0.as_ref().map(|s| s.exposition()).unwrap_or_default()
    }

    /// What `/healthz` says now.
    pub fn health(&self) -> Health {
        self.0
            .as_ref()
            .map_or(Health::Starting, |s| s.state.health())
    }
}

impl Shared {
    fn exposition(&self) -> String {
        let mut text = String::with_capacity(8192);
        if let Err(err) =
            prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
        {
            tracing::warn!("metrics: encoding failed: {err}");
        }
        text
    }
}

impl State {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn beat(&self) {
        self.heartbeat_ms.store(self.now_ms(), Ordering::Release);
    }

    fn since_heartbeat(&self) -> Duration {
        let last = self.heartbeat_ms.load(Ordering::Acquire);
        Duration::from_millis(self.now_ms().saturating_sub(last))
    }

    fn health(&self) -> Health {
        match self.phase.load(Ordering::Acquire) {
            STARTING => Health::Starting,
            STOPPING => Health::Stopping,
            _ => match self.since_heartbeat() {
                d if d > STALL_AFTER => Health::Stalled(d),
                _ => Health::Ready,
            },
        }
    }
}

/// The families read at scrape time: the loop's last snapshot, the kernel's counters, the
/// agent's CPU and memory.
#[derive(Debug)]
struct Scraped(Arc<State>);

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State").finish_non_exhaustive()
    }
}

fn gauge<V: prometheus_client::encoding::EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: V,
) -> fmt::Result {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

fn counter<V: prometheus_client::encoding::EncodeCounterValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: V,
) -> fmt::Result {
    let counter = ConstCounter::new(value);
    counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)
}

impl Collector for Scraped {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let state = &self.0;
        let snapshot = state.tick.lock().unwrap_or_else(|e| e.into_inner()).clone();

        let mut family = encoder.encode_descriptor(
            "egress_monitor_drops",
            "Records and table entries lost, by reason and side (kernel: the BPF programs' maps and ring buffer; userspace: the agent's tables)",
            None,
            MetricType::Counter,
        )?;
        for (reason, side, n) in &snapshot.drops {
            let labels = [("reason", *reason), ("side", *side)];
            ConstCounter::new(*n).encode(family.encode_family(&labels)?)?;
        }
        gauge(
            &mut encoder,
            "egress_monitor_targets_watched",
            "Processes watched now (targets and their children)",
            snapshot.targets,
        )?;

        let ring = state.ring.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ring) = ring.as_ref() {
            gauge(
                &mut encoder,
                "egress_monitor_ring_buffer_size_bytes",
                "Size of the kernel-to-agent event ring buffer",
                ring.size(),
            )?;
            gauge(
                &mut encoder,
                "egress_monitor_ring_buffer_used_bytes",
                "Bytes in the event ring buffer not yet read by the agent (producer minus consumer position)",
                ring.used(),
            )?;
        }
        drop(ring);

        let stats = kernel::bpf_stats_enabled();
        gauge(
            &mut encoder,
            "egress_monitor_bpf_stats_enabled",
            "kernel.bpf_stats_enabled (1: the kernel counts BPF program run time and runs; 0: the bpf_program families stay at 0)",
            i64::from(stats.unwrap_or(false)),
        )?;
        let stats: Vec<(String, kernel::ProgramStats)> = state
            .programs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|p| Some((p.name().to_string(), p.stats()?)))
            .collect();
        let mut family = encoder.encode_descriptor(
            "egress_monitor_bpf_program_run_time_seconds",
            "Time the kernel spent running each of the agent's BPF programs (counted while kernel.bpf_stats_enabled=1)",
            None,
            MetricType::Counter,
        )?;
        for (name, s) in &stats {
            let labels = [("program", name.as_str())];
            ConstCounter::new(s.run_time.as_secs_f64()).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "egress_monitor_bpf_program_runs",
            "Runs of each of the agent's BPF programs (counted while kernel.bpf_stats_enabled=1)",
            None,
            MetricType::Counter,
        )?;
        for (name, s) in &stats {
            let labels = [("program", name.as_str())];
            ConstCounter::new(s.runs).encode(family.encode_family(&labels)?)?;
        }

        if let Some(cpu) = kernel::process_cpu_seconds() {
            counter(
                &mut encoder,
                "egress_monitor_process_cpu_seconds",
                "CPU time of the agent (user and system, all threads)",
                cpu,
            )?;
        }
        if let Some(rss) = kernel::resident_memory_bytes() {
            gauge(
                &mut encoder,
                "egress_monitor_process_resident_memory_bytes",
                "Resident memory of the agent",
                rss,
            )?;
        }
        let health = state.health();
        gauge(
            &mut encoder,
            "egress_monitor_ready",
            "1 when /healthz answers 200: ready, and the event loop ran within the last 5 s",
            i64::from(health.ok()),
        )?;
        gauge(
            &mut encoder,
            "egress_monitor_event_loop_idle_seconds",
            "Time since the event loop last came round (it does at least every second)",
            state.since_heartbeat().as_secs_f64(),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
