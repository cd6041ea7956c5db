//! What the agent says: records (events, findings, status) and the writers that put them on a
//! stream as JSON lines (the contract in DESIGN.md) or as aligned text for a person.
pub mod finding;
pub mod json;
pub mod scrub;
pub mod tally;
pub mod text;

use std::{
    io::{self, Write},
    net::IpAddr,
    sync::Arc,
    time::{Duration, SystemTime},
};

use serde::Serialize;

use crate::{
    decode::{Family, Protocol},
    process::ProcessInfo,
};

pub const SCHEMA: &str = "egress-monitor/1";

/// Kernel monotonic time (`bpf_ktime_get_ns`) -> wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Wall clock at the moment the monotonic clock read zero.
    boot: SystemTime,
}

fn monotonic_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

impl Clock {
    pub fn new() -> Self {
        let now = SystemTime::now();
        Self {
            boot: now.checked_sub(monotonic_now()).unwrap_or(now),
        }
    }

    pub fn at(&self, ktime_ns: u64) -> SystemTime {
        self.boot + Duration::from_nanos(ktime_ns)
    }

    /// The kernel time `at` turned into `time` (exact both ways; 0 for a time before boot).
    pub fn ktime(&self, time: SystemTime) -> u64 {
        time.duration_since(self.boot)
            .map_or(0, |d| d.as_nanos() as u64)
    }

    /// Now, on the clock of the records (the kernel's monotonic clock): a step of the wall
    /// clock does not age or rejuvenate what the records timed.
    pub fn now(&self) -> SystemTime {
        self.at(monotonic_now().as_nanos() as u64)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// RFC 3339 UTC with microseconds, written straight into the output (no allocation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timestamp(pub SystemTime);

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_micros(self.0))
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        humantime::format_rfc3339_micros(self.0).fmt(f)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Socket {
    pub family: Family,
    pub protocol: Option<Protocol>,
    pub fd: i32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Destination {
    pub ip: IpAddr,
    pub port: u16,
    pub hostname: Option<Arc<str>>,
}

/// What an `event` line reports.
#[derive(Clone, Debug, PartialEq)]
pub enum EventDetail {
    Connect {
        socket: Socket,
        destination: Destination,
        /// "ok", "in_progress" or an errno name.
        result: &'static str,
    },
    /// The final result of a connect that went out as `in_progress` (a non-blocking connect
    /// whose outcome came after the hold).
    ConnectResult {
        socket: Socket,
        destination: Destination,
        /// "ok" or an errno name.
        result: &'static str,
    },
    /// A process became a target (at start-up or at exec), and why.
    Target { reason: String },
    /// One client TLS session: what was negotiated, verified and presented.
    TlsHandshake {
        destination: Option<Destination>,
        tls: serde_json::Value,
    },
}

impl EventDetail {
    pub fn name(&self) -> &'static str {
        match self {
            EventDetail::Connect { .. } => "connect",
            EventDetail::ConnectResult { .. } => "connect_result",
            EventDetail::Target { .. } => "target",
            EventDetail::TlsHandshake { .. } => "tls_handshake",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub time: SystemTime,
    pub process: Arc<ProcessInfo>,
    pub detail: EventDetail,
}

/// Kinds of `status` lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusKind {
    /// A capability check at start-up.
    Capability,
    /// A probe was attached.
    Attached,
    /// Probes were detached (their library is no longer used by any watched process).
    Detached,
    /// A probe (or feature) was skipped, with why.
    Skipped,
    /// Probes attached and targets scanned: events from now on are seen.
    Ready,
    /// Something was lost (ring buffer full, map full, undecodable record).
    Drops,
    Warning,
    /// Table sizes, memory and drops, on request (SIGUSR1) and at shutdown.
    Stats,
    /// The active `[[suppress]]` entries, at start.
    Suppressions,
    /// What `--record` wrote (at shutdown), or what `replay` is reading (at start).
    Recording,
    /// Final line with totals.
    Shutdown,
}

/// Counters for `drops` and `shutdown` lines.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub events: u64,
    pub findings: u64,
    pub targets: usize,
    pub decode_errors: u64,
    /// Everything dropped, by reason: kernel side (ring buffer, maps) and userspace (tables
    /// at their bounds).
    pub drops: std::collections::BTreeMap<&'static str, u64>,
    /// Entries in every userspace table and kernel map (`stats` and `shutdown` lines).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub tables: std::collections::BTreeMap<String, u64>,
    /// The agent's resident memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    /// Findings a `[[suppress]]` entry covered (counted, not printed), by id.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub suppressed: std::collections::BTreeMap<String, u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub time: SystemTime,
    pub status: StatusKind,
    /// What the line is about (`tracepoint:syscalls/sys_enter_connect`, `BTF`, ...).
    pub component: Option<String>,
    pub message: String,
    pub totals: Option<Totals>,
}

impl Status {
    pub fn new(status: StatusKind, component: Option<String>, message: impl Into<String>) -> Self {
        Self {
            time: SystemTime::now(),
            status,
            component,
            message: message.into(),
            totals: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    Event(Event),
    Finding(finding::Finding),
    Status(Status),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Text,
}

/// A stream of records in one format. Lines are built in a reused buffer, so writing an event
/// allocates nothing, and every line passes the scrubber on its way out: a credential value the
/// monitor has seen anywhere never appears in anything it writes afterwards, whatever field it
/// turned up in (a command line, a path, a host name).
pub struct Sink {
    format: Format,
    out: Box<dyn Write + Send>,
    line: Vec<u8>,
    scrubber: scrub::Scrubber,
    /// The `--output` file, reopened on SIGHUP (after logrotate moved it away).
    path: Option<std::path::PathBuf>,
    /// Counts every record written (`run --metrics-addr`; off otherwise).
    metrics: crate::metrics::Metrics,
}

/// Open (append to) an output file, creating it readable by its owner only: findings describe
/// where a host's credentials are exposed.
pub fn open_output_file(path: &std::path::Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

impl Sink {
    pub fn new(format: Format, out: Box<dyn Write + Send>) -> Self {
        Self {
            format,
            out,
            line: Vec::with_capacity(1024),
            scrubber: scrub::Scrubber::new(scrub::DEFAULT_CAPACITY),
            path: None,
            metrics: crate::metrics::Metrics::off(),
        }
    }

    /// Count every record written from now on in these metrics.
    pub fn set_metrics(&mut self, metrics: crate::metrics::Metrics) {
        self.metrics = metrics;
    }

    /// A sink appending to the file at `path` (created 0600), which [`Sink::reopen`] opens again.
    pub fn to_file(format: Format, path: &std::path::Path) -> io::Result<Self> {
        let file = open_output_file(path)?;
        let mut sink = Self::new(format, Box::new(io::BufWriter::new(file)));
        sink.path = Some(path.to_path_buf());
        Ok(sink)
    }

    /// Flush, then open the output file again by its name (SIGHUP): after a rotation, lines go
    /// to the new file. On failure the old file stays in use. `false` without an output file.
    pub fn reopen(&mut self) -> io::Result<bool> {
        let Some(path) = &self.path else {
            return Ok(false);
        };
        self.out.flush()?;
        let file = open_output_file(path)?;
        self.out = Box::new(io::BufWriter::new(file));
        Ok(true)
    }

    /// Never write this secret (in any of its encodings) again.
    pub fn learn(&mut self, secret: &crate::detect::secret::Secret) {
        self.scrubber.learn(secret);
    }

    /// How many secrets the output is scrubbed of.
    pub fn secrets_known(&self) -> usize {
        self.scrubber.len()
    }

    pub fn emit(&mut self, record: &Record) -> io::Result<()> {
        self.metrics.observe(record);
        self.line.clear();
        match self.format {
            Format::Json => json::write(&mut self.line, record)?,
            Format::Text => text::write(&mut self.line, record)?,
        }
        match self.format {
            Format::Json => self.scrubber.scrub_json(&mut self.line),
            Format::Text => self.scrubber.scrub(&mut self.line),
        };
        self.line.push(b'\n');
        self.out.write_all(&self.line)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The text view's closing summary table (nothing in JSON: the findings and the shutdown
    /// totals already carry it).
    pub fn summary(
        &mut self,
        rows: &std::collections::BTreeMap<text::SummaryKey, u64>,
        more: u64,
        drops: u64,
    ) -> io::Result<()> {
        if self.format != Format::Text {
            return Ok(());
        }
        self.line.clear();
        text::write_summary(&mut self.line, rows, more, drops)?;
        self.scrubber.scrub(&mut self.line);
        self.out.write_all(&self.line)
    }
}

#[cfg(test)]
mod clock_tests {
    use super::Clock;

    #[test]
    fn record_times_turn_back_into_kernel_times_exactly() {
        let clock = Clock::new();
        for ktime in [0, 1, 999_999_999, 39_684_133_111_496] {
            assert_eq!(clock.ktime(clock.at(ktime)), ktime);
        }
        let now = clock.now();
        assert!(clock.ktime(now) > 0);
        assert_eq!(clock.ktime(std::time::UNIX_EPOCH), 0, "before boot");
    }
}
