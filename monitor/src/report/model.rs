//! What a report is made of: the lines of a run read into typed records, and what a person
//! needs from them: findings deduplicated (a later line for the same finding carries its grown
//! count), each process with its chronological timeline, the upstreams with the certificates
//! and verdicts seen for them, and the SPKI pins of the upstreams that verified cleanly.
//!
//! Pure: no I/O. [`Report::build`] takes any iterator of [`Record`]s, so JSON lines and (later)
//! a recording replayed through the analysis feed the same aggregation.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    net::IpAddr,
    time::{Duration, SystemTime},
};

use serde::Deserialize;
use serde_json::Value;

use crate::output::SCHEMA;

/// Entries kept in one process's timeline; later ones are counted, not kept (a busy process
/// makes thousands of connects, and a person reads the first ones).
pub const MAX_TIMELINE: usize = 1000;
/// Status lines (warnings, skipped probes) kept for the "Run" section.
pub const MAX_NOTICES: usize = 100;
/// Distinct `target` reasons kept per process.
const MAX_REASONS: usize = 8;
/// Distinct handshakes remembered for the pin suggestions.
const MAX_PIN_CANDIDATES: usize = 100_000;

/// The severities of the output contract (the report reads them back).
pub use crate::output::finding::Severity;

/// A line's `time` (RFC 3339 UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(pub SystemTime);

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_rfc3339(&text)
            .map(Time)
            .map_err(|_| serde::de::Error::custom("`time` is not an RFC 3339 UTC time"))
    }
}

impl std::fmt::Display for Time {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        humantime::format_rfc3339_micros(self.0).fmt(f)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Pod {
    pub namespace: Option<String>,
    pub name: Option<String>,
    #[serde(default)]
    pub uid: String,
    pub container: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Process {
    pub pid: u32,
    pub ppid: Option<u32>,
    pub uid: Option<u32>,
    #[serde(default)]
    pub comm: String,
    pub exe: Option<String>,
    #[serde(default)]
    pub cmdline: Vec<String>,
    pub container_id: Option<String>,
    pub pod: Option<Pod>,
    #[serde(default)]
    pub mcp: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
pub struct Destination {
    pub ip: IpAddr,
    pub port: u16,
    pub hostname: Option<String>,
}

impl Destination {
    /// The name a person knows the upstream by: its host name, else its address.
    pub fn host(&self) -> String {
        match &self.hostname {
            Some(name) if !name.is_empty() => name.to_ascii_lowercase(),
            _ => self.ip.to_string(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Socket {
    #[serde(default)]
    pub family: String,
    pub protocol: Option<String>,
    #[serde(default)]
    pub fd: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Certificate {
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub issuer: String,
    #[serde(default)]
    pub sans: Vec<String>,
    #[serde(default)]
    pub not_before: String,
    #[serde(default)]
    pub not_after: String,
    #[serde(default)]
    pub serial: String,
    #[serde(default)]
    pub spki_sha256: String,
    #[serde(default)]
    pub self_signed: bool,
}

impl Certificate {
    /// The SPKI pin, when it has the shape the monitor writes (`sha256/` and 44 base64
    /// characters): only such a pin goes into a suggested config.
    pub fn pin(&self) -> Option<&str> {
        let b64 = self.spki_sha256.strip_prefix("sha256/")?;
        let ok = b64.len() == 44
            && b64.ends_with('=')
            && b64.as_bytes()[..43]
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/');
        ok.then_some(self.spki_sha256.as_str())
    }

    /// "expired" / "not yet valid" at `time`, from the RFC 3339 dates (compared as text: the
    /// monitor writes both as `YYYY-MM-DDTHH:MM:SS`, and certificates may predate 1970).
    pub fn validity_at(&self, time: Time) -> Option<&'static str> {
        let at = time.to_string();
        let prefix = |s: &str| s.get(..19).filter(|p| p.is_ascii()).map(str::to_owned);
        let (at, before, after) = (
            prefix(&at)?,
            prefix(&self.not_before),
            prefix(&self.not_after),
        );
        if after.as_ref().is_some_and(|a| at > *a) {
            Some("expired")
        } else if before.as_ref().is_some_and(|b| at < *b) {
            Some("not yet valid")
        } else {
            None
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Verification {
    pub summary: Option<String>,
    pub openssl: Option<String>,
    pub openssl_code: Option<i64>,
    pub openssl_error: Option<String>,
    pub trusted_here: Option<bool>,
    pub reason: Option<String>,
    pub name_matches: Option<bool>,
}

/// The `tls` object of a `tls_handshake` event.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Tls {
    pub library: Option<String>,
    pub library_path: Option<String>,
    pub server_name: Option<String>,
    pub sni: Option<String>,
    pub verify_mode: Option<String>,
    pub hostname_check: Option<Value>,
    pub handshake: Option<String>,
    pub application_data: Option<bool>,
    pub verification: Option<Verification>,
    pub certificate: Option<Certificate>,
    pub chain_length: Option<u64>,
    pub certificate_truncated: Option<bool>,
}

impl Tls {
    /// What was concluded, in a few words ("verified", "accepted despite ...").
    pub fn verdict(&self) -> String {
        let v = self.verification.as_ref();
        match v.and_then(|v| v.summary.as_deref()) {
            Some(summary) if !summary.is_empty() => summary.to_string(),
            _ => match self.handshake.as_deref() {
                Some(h) => format!("handshake {h}"),
                None => "unknown".to_string(),
            },
        }
    }

    /// How the host name was checked.
    pub fn hostname_check(&self) -> String {
        let Some(check) = &self.hostname_check else {
            return "not observed".into();
        };
        match check.get("configured") {
            Some(Value::Bool(true)) => {
                let names: Vec<&str> = check
                    .get("names")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                format!("by OpenSSL, for {}", names.join(", "))
            }
            Some(Value::Bool(false)) => "not configured".into(),
            Some(Value::String(s)) => s.clone(),
            _ => "not observed".into(),
        }
    }

    /// A session that verified cleanly: the handshake completed, OpenSSL's verification
    /// passed, the certificate covers the name, and its pin is known.
    pub fn verified_pin(&self) -> Option<&str> {
        let v = self.verification.as_ref()?;
        let clean = self.handshake.as_deref() == Some("completed")
            && v.openssl.as_deref() == Some("ok")
            && v.name_matches != Some(false);
        clean.then(|| self.certificate.as_ref()?.pin()).flatten()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Credential {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub location: String,
    #[serde(default)]
    pub length: u64,
    #[serde(default)]
    pub fingerprint: String,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Request {
    #[serde(default)]
    pub method: String,
    #[serde(default)]
    pub path: String,
    pub host: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Postgres {
    pub user: Option<String>,
    pub database: Option<String>,
    #[serde(default)]
    pub ssl_requested: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct VerifyResult {
    #[serde(default)]
    pub code: i64,
    #[serde(default)]
    pub error: String,
}

/// A finding's evidence: every key the monitor writes today, typed; keys it may write later
/// (new finding ids bring their own) are kept in `other` and shown as they are.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Evidence {
    pub reason: Option<String>,
    // Plaintext findings.
    pub protocol: Option<String>,
    #[serde(default)]
    pub credentials: Vec<Credential>,
    pub request: Option<Request>,
    pub postgres: Option<Postgres>,
    pub auth_endpoint: Option<String>,
    pub credentials_seen: Option<bool>,
    // TLS session findings.
    pub library: Option<String>,
    pub server_name: Option<String>,
    pub verify_mode: Option<String>,
    pub openssl_verify_result: Option<VerifyResult>,
    pub certificate: Option<Certificate>,
    pub application_data: Option<bool>,
    pub accepted_because: Option<String>,
    pub process_bypass: Option<String>,
    // A process-wide bypass in the environment.
    pub variable: Option<String>,
    pub value: Option<String>,
    pub source: Option<String>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Event {
    pub time: Time,
    pub event: String,
    pub process: Process,
    pub socket: Option<Socket>,
    pub destination: Option<Destination>,
    pub result: Option<String>,
    pub reason: Option<String>,
    pub tls: Option<Tls>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Finding {
    pub time: Time,
    pub id: String,
    pub severity: Severity,
    #[serde(default)]
    pub title: String,
    pub process: Process,
    pub destination: Option<Destination>,
    #[serde(default)]
    pub evidence: Evidence,
    #[serde(default)]
    pub remediation: String,
    #[serde(default = "one")]
    pub count: u64,
}

fn one() -> u64 {
    1
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Totals {
    pub events: u64,
    pub findings: u64,
    pub targets: u64,
    pub decode_errors: u64,
    pub drops: BTreeMap<String, u64>,
    pub tables: BTreeMap<String, u64>,
    pub rss_bytes: Option<u64>,
    pub suppressed: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Status {
    pub time: Time,
    pub status: String,
    pub component: Option<String>,
    #[serde(default)]
    pub message: String,
    pub totals: Option<Totals>,
}

/// One line of a run.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    Event(Box<Event>),
    Finding(Box<Finding>),
    Status(Status),
}

/// Read one JSON line (`egress-monitor/1`). The error says what is wrong with it; it may quote
/// the line, so whoever prints it must make it safe for where it goes.
pub fn parse_line(text: &str) -> Result<Record, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))?;
    let object = value.as_object().ok_or("not a JSON object")?;
    match object.get("schema") {
        Some(Value::String(s)) if s == SCHEMA => {}
        Some(other) => return Err(format!("schema {other} is not \"{SCHEMA}\"")),
        None => return Err("no \"schema\" key: not an egress-monitor line".into()),
    }
    let kind = match object.get("type") {
        Some(Value::String(kind)) => kind.clone(),
        Some(other) => return Err(format!("\"type\" {other} is not a line type")),
        None => return Err("no \"type\" key".into()),
    };
    let invalid = |e: serde_json::Error| format!("invalid {kind} line: {e}");
    match kind.as_str() {
        "event" => serde_json::from_value(value)
            .map(|e| Record::Event(Box::new(e)))
            .map_err(invalid),
        "finding" => serde_json::from_value(value)
            .map(|f| Record::Finding(Box::new(f)))
            .map_err(invalid),
        "status" => serde_json::from_value(value)
            .map(Record::Status)
            .map_err(invalid),
        _ => Err(format!("unknown line type {kind:?}")),
    }
}

impl Record {
    pub fn time(&self) -> Time {
        match self {
            Record::Event(e) => e.time,
            Record::Finding(f) => f.time,
            Record::Status(s) => s.time,
        }
    }

    /// The record the agent itself holds (a recording replayed through the analysis produces
    /// these), read through its JSON line so both inputs agree field for field.
    pub fn from_output(record: &crate::output::Record) -> Result<Self, String> {
        let mut line = Vec::new();
        crate::output::json::write(&mut line, record).map_err(|e| e.to_string())?;
        parse_line(std::str::from_utf8(&line).map_err(|e| e.to_string())?)
    }
}

/// One finding as the report shows it: the first line's time, the last line's count.
#[derive(Clone, Debug, PartialEq)]
pub struct FindingEntry {
    /// Its number in the report (anchors and timeline links), in order of appearance.
    pub number: usize,
    pub first_seen: Time,
    pub last_seen: Time,
    /// The grown count of the last line (the monitor counts repeats).
    pub count: u64,
    /// How many lines reported it.
    pub lines: u64,
    pub finding: Finding,
}

/// What happened, in a process's timeline.
#[derive(Clone, Debug, PartialEq)]
pub enum Happening {
    /// A connect (`connect`) or the late result of one (`connect_result`).
    Connect {
        destination: Destination,
        protocol: Option<String>,
        result: String,
        late_result: bool,
    },
    Handshake {
        destination: Option<Destination>,
        tls: Box<Tls>,
    },
    Finding {
        number: usize,
        id: String,
        severity: Severity,
        destination: Option<Destination>,
    },
    Target {
        reason: String,
    },
    /// An event kind this report does not know (from a newer monitor).
    Other {
        event: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct TimelineEntry {
    pub time: Time,
    /// Input order, for entries with the same time.
    pub seq: u64,
    pub what: Happening,
}

/// One process, by pid: the lines carry no start time, so a pid the kernel reused within one
/// run shares its timeline (its command line changes in the `target` rows).
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessEntry {
    /// As the last line about it said (an exec changes the command line).
    pub info: Process,
    /// Why it was watched (`target` events).
    pub reasons: Vec<String>,
    /// Chronological (sorted by [`Report::build`]).
    pub timeline: Vec<TimelineEntry>,
    /// Timeline entries beyond [`MAX_TIMELINE`], counted.
    pub omitted: u64,
    pub connects: u64,
    pub handshakes: u64,
    /// Distinct findings by severity.
    pub findings: BTreeMap<Severity, u64>,
}

/// How one port of an upstream was used.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PortUse {
    pub connects: u64,
    /// Connects whose result was an error.
    pub failed: u64,
    pub tls_handshakes: u64,
    /// A plaintext finding (credentials or an auth endpoint without TLS) was on this port.
    pub plaintext_findings: u64,
}

impl PortUse {
    /// TLS or not, as far as the monitor saw: it sees TLS through OpenSSL only, so "no
    /// handshake seen" is not "plaintext".
    pub fn transport(&self) -> &'static str {
        match (self.tls_handshakes > 0, self.plaintext_findings > 0) {
            (true, true) => "TLS and plaintext",
            (true, false) => "TLS",
            (false, true) => "plaintext",
            (false, false) => "no TLS handshake seen",
        }
    }
}

/// A certificate an upstream presented, and what was concluded each time.
#[derive(Clone, Debug, PartialEq)]
pub struct CertUse {
    pub certificate: Certificate,
    /// Verdict summaries ("verified", "accepted despite ..."), counted.
    pub verdicts: BTreeMap<String, u64>,
    pub ports: BTreeSet<u16>,
    /// When it was first seen (validity is judged then).
    pub first_seen: Time,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Upstream {
    /// Host name, or the address when no name was seen.
    pub host: String,
    pub addresses: BTreeSet<IpAddr>,
    pub ports: BTreeMap<u16, PortUse>,
    pub certificates: Vec<CertUse>,
    /// Verdicts of handshakes whose certificate was not captured.
    pub uncertified_verdicts: BTreeMap<String, u64>,
    /// (pid, comm)
    pub processes: BTreeSet<(u32, String)>,
    /// Finding ids, counted per distinct finding.
    pub findings: BTreeMap<String, u64>,
}

/// Suggested `[[pins]]` for one host.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PinSuggestion {
    pub host: String,
    /// Keys of handshakes that verified cleanly (no finding on that connection).
    pub pins: BTreeSet<String>,
    /// Keys the host presented in handshakes that did not verify cleanly: not pinned.
    pub other_keys: BTreeSet<String>,
}

/// Where the counters of the run come from.
#[derive(Clone, Debug, PartialEq)]
pub struct RunTotals {
    pub status: Status,
    /// From the `shutdown` line (else the last `drops`/`stats` line: the run did not end
    /// cleanly, or the file was cut).
    pub final_line: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct InputCounts {
    pub events: u64,
    pub finding_lines: u64,
    pub status: u64,
    /// Event kinds this report does not know, by name.
    pub unknown_events: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub input: InputCounts,
    pub first: Option<Time>,
    pub last: Option<Time>,
    /// By severity, then first seen.
    pub findings: Vec<FindingEntry>,
    /// Processes with findings first (most severe first), then by pid.
    pub processes: Vec<ProcessEntry>,
    /// Upstreams with findings first, then by host.
    pub upstreams: Vec<Upstream>,
    /// Distinct (address, port) pairs connected to or talked to.
    pub endpoints: usize,
    pub pins: Vec<PinSuggestion>,
    /// Hosts left out of the pin suggestions because their names have characters a host name
    /// does not (they are never written into the TOML).
    pub pins_unusable_hosts: u64,
    pub ready: Option<Status>,
    pub totals: Option<RunTotals>,
    /// `warning`, `skipped`, `suppressions` lines (the first [`MAX_NOTICES`]).
    pub notices: Vec<Status>,
    pub notices_omitted: u64,
}

impl Report {
    /// Distinct findings and their occurrences, for one severity.
    pub fn severity_counts(&self, severity: Severity) -> (u64, u64) {
        self.findings
            .iter()
            .filter(|f| f.finding.severity == severity)
            .fold((0, 0), |(n, total), f| (n + 1, total + f.count))
    }

    pub fn mcp_processes(&self) -> usize {
        self.processes.iter().filter(|p| p.info.mcp).count()
    }

    pub fn span(&self) -> Option<Duration> {
        Some(
            self.last?
                .0
                .duration_since(self.first?.0)
                .unwrap_or_default(),
        )
    }

    /// Every time of the run falls on one UTC day (timelines then show the time of day only).
    pub fn single_day(&self) -> bool {
        match (self.first, self.last) {
            (Some(a), Some(b)) => a.to_string().get(..10) == b.to_string().get(..10),
            _ => true,
        }
    }

    pub fn finding(&self, number: usize) -> Option<&FindingEntry> {
        self.findings.iter().find(|f| f.number == number)
    }

    /// Aggregate the records of a run (in file order).
    pub fn build(records: impl IntoIterator<Item = Record>) -> Self {
        let mut builder = Builder::default();
        for record in records {
            builder.add(record);
        }
        builder.finish()
    }
}

type FindingKey = (String, u32, Option<(IpAddr, u16)>);

/// A handshake seen, for the pin suggestions (decided once every finding is known: a finding
/// may come before or after its session's event).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PinCandidate {
    pid: u32,
    endpoint: Option<(IpAddr, u16)>,
    host: String,
    spki: String,
    verified: bool,
}

/// Folds records into a [`Report`]; [`Report::build`] drives it.
#[derive(Default)]
pub struct Builder {
    report: Report,
    seq: u64,
    findings: HashMap<FindingKey, usize>,
    processes: HashMap<u32, ProcessEntry>,
    upstreams: HashMap<String, Upstream>,
    endpoints: HashSet<(IpAddr, u16)>,
    pin_candidates: HashSet<PinCandidate>,
    /// (pid, endpoint) of every TLS finding: a handshake there did not verify cleanly.
    tls_findings: HashSet<(u32, Option<(IpAddr, u16)>)>,
}

fn endpoint(d: &Option<Destination>) -> Option<(IpAddr, u16)> {
    d.as_ref().map(|d| (d.ip, d.port))
}

/// A host name that can go into a TOML string as it is: DNS characters, IPv6 colons, a
/// wildcard; nothing that needs escaping.
fn plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'*'))
}

impl Builder {
    pub fn add(&mut self, record: Record) {
        let time = record.time();
        self.report.first = Some(self.report.first.map_or(time, |t| t.min(time)));
        self.report.last = Some(self.report.last.map_or(time, |t| t.max(time)));
        self.seq += 1;
        match record {
            Record::Event(e) => self.event(*e),
            Record::Finding(f) => self.finding(*f),
            Record::Status(s) => self.status(s),
        }
    }

    fn process(&mut self, info: &Process) -> &mut ProcessEntry {
        let entry = self
            .processes
            .entry(info.pid)
            .or_insert_with(|| ProcessEntry {
                info: info.clone(),
                reasons: Vec::new(),
                timeline: Vec::new(),
                omitted: 0,
                connects: 0,
                handshakes: 0,
                findings: BTreeMap::new(),
            });
        if entry.info != *info {
            entry.info = info.clone();
        }
        entry
    }

    fn timeline(&mut self, info: &Process, time: Time, what: Happening) {
        let seq = self.seq;
        let entry = self.process(info);
        if entry.timeline.len() < MAX_TIMELINE {
            entry.timeline.push(TimelineEntry { time, seq, what });
        } else {
            entry.omitted += 1;
        }
    }

    fn upstream(&mut self, host: String) -> &mut Upstream {
        self.upstreams
            .entry(host.clone())
            .or_insert_with(|| Upstream {
                host,
                addresses: BTreeSet::new(),
                ports: BTreeMap::new(),
                certificates: Vec::new(),
                uncertified_verdicts: BTreeMap::new(),
                processes: BTreeSet::new(),
                findings: BTreeMap::new(),
            })
    }

    /// The upstream a destination names (its address and port recorded), used by `process`.
    fn upstream_at(&mut self, d: &Destination, process: &Process) -> &mut Upstream {
        self.endpoints.insert((d.ip, d.port));
        let up = self.upstream(d.host());
        up.addresses.insert(d.ip);
        up.processes.insert((process.pid, process.comm.clone()));
        up
    }

    fn event(&mut self, e: Event) {
        self.report.input.events += 1;
        match e.event.as_str() {
            "connect" | "connect_result" => {
                let late = e.event == "connect_result";
                let Some(destination) = e.destination else {
                    return self.other_event(&e.process, e.time, e.event);
                };
                let result = e.result.unwrap_or_else(|| "unknown".into());
                let failed = result != "ok" && result != "in_progress";
                if !late {
                    self.process(&e.process).connects += 1;
                }
                let port = self
                    .upstream_at(&destination, &e.process)
                    .ports
                    .entry(destination.port)
                    .or_default();
                // A late result replaces the `in_progress` of its connect.
                if !late {
                    port.connects += 1;
                }
                if failed {
                    port.failed += 1;
                }
                let protocol = e.socket.and_then(|s| s.protocol);
                self.timeline(
                    &e.process,
                    e.time,
                    Happening::Connect {
                        destination,
                        protocol,
                        result,
                        late_result: late,
                    },
                );
            }
            "tls_handshake" => {
                let tls = e.tls.unwrap_or_default();
                self.process(&e.process).handshakes += 1;
                self.handshake(&e.process, e.time, e.destination.as_ref(), &tls);
                self.timeline(
                    &e.process,
                    e.time,
                    Happening::Handshake {
                        destination: e.destination,
                        tls: Box::new(tls),
                    },
                );
            }
            "target" => {
                let reason = e.reason.unwrap_or_default();
                let entry = self.process(&e.process);
                if !reason.is_empty()
                    && entry.reasons.len() < MAX_REASONS
                    && !entry.reasons.contains(&reason)
                {
                    entry.reasons.push(reason.clone());
                }
                self.timeline(&e.process, e.time, Happening::Target { reason });
            }
            _ => self.other_event(&e.process, e.time, e.event),
        }
    }

    fn other_event(&mut self, process: &Process, time: Time, event: String) {
        *self
            .report
            .input
            .unknown_events
            .entry(event.clone())
            .or_default() += 1;
        self.timeline(process, time, Happening::Other { event });
    }

    fn handshake(
        &mut self,
        process: &Process,
        time: Time,
        destination: Option<&Destination>,
        tls: &Tls,
    ) {
        let verdict = tls.verdict();
        let host = match destination {
            Some(d) => d.host(),
            None => match tls.server_name.as_deref().or(tls.sni.as_deref()) {
                Some(name) if !name.is_empty() => name.to_ascii_lowercase(),
                _ => return, // nothing to tie it to an upstream
            },
        };
        let up = match destination {
            Some(d) => {
                let up = self.upstream_at(d, process);
                up.ports.entry(d.port).or_default().tls_handshakes += 1;
                up
            }
            None => {
                let up = self.upstream(host.clone());
                up.processes.insert((process.pid, process.comm.clone()));
                up
            }
        };
        match &tls.certificate {
            Some(cert) => {
                let known = up.certificates.iter_mut().find(|c| {
                    c.certificate.spki_sha256 == cert.spki_sha256
                        && c.certificate.serial == cert.serial
                });
                let cert_use = match known {
                    Some(c) => c,
                    None => {
                        up.certificates.push(CertUse {
                            certificate: cert.clone(),
                            verdicts: BTreeMap::new(),
                            ports: BTreeSet::new(),
                            first_seen: time,
                        });
                        up.certificates.last_mut().expect("just pushed")
                    }
                };
                *cert_use.verdicts.entry(verdict).or_default() += 1;
                if let Some(d) = destination {
                    cert_use.ports.insert(d.port);
                }
                if let Some(spki) = cert.pin() {
                    let candidate = PinCandidate {
                        pid: process.pid,
                        endpoint: destination.map(|d| (d.ip, d.port)),
                        host,
                        spki: spki.to_string(),
                        verified: tls.verified_pin().is_some(),
                    };
                    if self.pin_candidates.len() < MAX_PIN_CANDIDATES {
                        self.pin_candidates.insert(candidate);
                    }
                }
            }
            None => *up.uncertified_verdicts.entry(verdict).or_default() += 1,
        }
    }

    fn finding(&mut self, f: Finding) {
        self.report.input.finding_lines += 1;
        let key = (f.id.clone(), f.process.pid, endpoint(&f.destination));
        if let Some(&index) = self.findings.get(&key) {
            // A later line for the same finding: its count grew.
            let entry = &mut self.report.findings[index];
            entry.count = entry.count.max(f.count);
            entry.lines += 1;
            entry.first_seen = entry.first_seen.min(f.time);
            entry.last_seen = entry.last_seen.max(f.time);
            return;
        }
        let number = self.report.findings.len() + 1;
        self.findings.insert(key, self.report.findings.len());
        // Findings about the pin configuration say nothing against the key the host showed.
        let about_config = matches!(f.id.as_str(), "TLS_UNPINNED_HIGH_VALUE" | "TLS_SINGLE_PIN");
        if f.id.starts_with("TLS_") && !about_config {
            self.tls_findings
                .insert((f.process.pid, endpoint(&f.destination)));
        }
        *self
            .process(&f.process)
            .findings
            .entry(f.severity)
            .or_default() += 1;
        if let Some(d) = &f.destination {
            let plaintext = f.id.starts_with("PLAINTEXT_");
            let up = self.upstream_at(d, &f.process);
            *up.findings.entry(f.id.clone()).or_default() += 1;
            if plaintext {
                up.ports.entry(d.port).or_default().plaintext_findings += 1;
            }
        }
        self.timeline(
            &f.process,
            f.time,
            Happening::Finding {
                number,
                id: f.id.clone(),
                severity: f.severity,
                destination: f.destination.clone(),
            },
        );
        self.report.findings.push(FindingEntry {
            number,
            first_seen: f.time,
            last_seen: f.time,
            count: f.count,
            lines: 1,
            finding: f,
        });
    }

    fn status(&mut self, s: Status) {
        self.report.input.status += 1;
        let final_totals = self.report.totals.as_ref().is_some_and(|t| t.final_line);
        match s.status.as_str() {
            "ready" if self.report.ready.is_none() => self.report.ready = Some(s),
            "shutdown" => {
                self.report.totals = Some(RunTotals {
                    status: s,
                    final_line: true,
                })
            }
            // Totals so far, for a run that has no shutdown line.
            "drops" | "stats" if s.totals.is_some() && !final_totals => {
                self.report.totals = Some(RunTotals {
                    status: s,
                    final_line: false,
                })
            }
            "warning" | "skipped" | "suppressions" => {
                if self.report.notices.len() < MAX_NOTICES {
                    self.report.notices.push(s);
                } else {
                    self.report.notices_omitted += 1;
                }
            }
            _ => {}
        }
    }

    pub fn finish(mut self) -> Report {
        let mut report = std::mem::take(&mut self.report);
        report.findings.sort_by(|a, b| {
            (a.finding.severity, a.first_seen, a.number).cmp(&(
                b.finding.severity,
                b.first_seen,
                b.number,
            ))
        });

        let mut processes: Vec<ProcessEntry> = self.processes.into_values().collect();
        for p in &mut processes {
            p.timeline.sort_by_key(|t| (t.time, t.seq));
        }
        let rank = |p: &ProcessEntry| {
            let by_severity: Vec<std::cmp::Reverse<u64>> = Severity::ALL
                .iter()
                .map(|s| std::cmp::Reverse(p.findings.get(s).copied().unwrap_or(0)))
                .collect();
            (by_severity, p.info.pid)
        };
        processes.sort_by_cached_key(rank);
        report.processes = processes;

        let mut upstreams: Vec<Upstream> = self.upstreams.into_values().collect();
        upstreams.sort_by(|a, b| {
            let total = |u: &Upstream| u.findings.values().sum::<u64>();
            total(b).cmp(&total(a)).then_with(|| a.host.cmp(&b.host))
        });
        report.upstreams = upstreams;
        report.endpoints = self.endpoints.len();

        let mut pins: BTreeMap<String, PinSuggestion> = BTreeMap::new();
        for c in self.pin_candidates {
            if !plain_host(&c.host) {
                report.pins_unusable_hosts += 1;
                continue;
            }
            let clean = c.verified && !self.tls_findings.contains(&(c.pid, c.endpoint));
            let entry = pins.entry(c.host.clone()).or_insert_with(|| PinSuggestion {
                host: c.host.clone(),
                ..PinSuggestion::default()
            });
            if clean {
                entry.pins.insert(c.spki);
            } else {
                entry.other_keys.insert(c.spki);
            }
        }
        for p in pins.values_mut() {
            let pinned = p.pins.clone();
            p.other_keys.retain(|k| !pinned.contains(k));
        }
        report.pins = pins.into_values().collect();
        report
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const SPKI_A: &str = "sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    pub(crate) const SPKI_B: &str = "sha256/BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB=";

    pub(crate) fn process_json(pid: u32, comm: &str, cmdline: &[&str]) -> Value {
        serde_json::json!({"pid": pid, "ppid": 1, "uid": 0, "comm": comm, "exe": format!("/usr/bin/{comm}"),
            "cmdline": cmdline, "container_id": null, "pod": null, "mcp": pid == 100})
    }

    pub(crate) fn line(v: Value) -> Record {
        parse_line(&v.to_string()).unwrap_or_else(|e| panic!("{e}: {v}"))
    }

    pub(crate) fn a_connect(t: &str, pid: u32, comm: &str, host: &str, port: u16) -> Record {
        line(
            serde_json::json!({"schema": SCHEMA, "type": "event", "time": t, "event": "connect",
            "process": process_json(pid, comm, &[comm]),
            "socket": {"family": "ipv4", "protocol": "tcp", "fd": 5},
            "destination": {"ip": "10.203.0.2", "port": port, "hostname": host}, "result": "ok"}),
        )
    }

    pub(crate) fn a_handshake(
        t: &str,
        pid: u32,
        host: &str,
        port: u16,
        spki: &str,
        summary: &str,
    ) -> Record {
        let ok = summary == "verified";
        line(
            serde_json::json!({"schema": SCHEMA, "type": "event", "time": t, "event": "tls_handshake",
            "process": process_json(pid, "curl", &["curl"]),
            "destination": {"ip": "10.203.0.2", "port": port, "hostname": host},
            "tls": {"library": "libssl", "library_path": "/usr/lib/libssl.so.3", "server_name": host,
                "sni": host, "protocol_version": null, "verify_mode": if ok { "peer" } else { "none" },
                "hostname_check": {"configured": "in application code"}, "handshake": "completed",
                "application_data": true,
                "verification": {"summary": summary, "openssl": if ok { "ok" } else { "failed" },
                    "openssl_code": if ok { 0 } else { 18 }, "openssl_error": null, "trusted_here": ok,
                    "reason": null, "name_matches": true},
                "certificate": {"subject": format!("CN={host}"), "issuer": "CN=test CA", "sans": [host],
                    "not_before": "2026-11-25T00:00:00Z", "not_after": "2026-11-28T00:00:00Z",
                    "serial": "0A", "spki_sha256": spki, "self_signed": !ok},
                "chain_length": 1, "certificate_truncated": false}}),
        )
    }

    pub(crate) fn a_finding(
        t: &str,
        id: &str,
        severity: &str,
        pid: u32,
        port: u16,
        count: u64,
    ) -> Record {
        line(
            serde_json::json!({"schema": SCHEMA, "type": "finding", "time": t, "id": id,
            "severity": severity, "title": format!("title of {id}"),
            "process": process_json(pid, "curl", &["curl"]),
            "destination": {"ip": "10.203.0.2", "port": port, "hostname": "api.test"},
            "evidence": {"reason": "because", "credentials": [{"kind": "bearer",
                "location": "header:Authorization", "length": 24, "fingerprint": "hmac-sha256:0123456789ab"}],
                "protocol": "http", "postgres": null,
                "request": {"method": "GET", "path": "/v1", "host": "api.test"}},
            "remediation": "fix it", "count": count}),
        )
    }

    pub(crate) fn a_shutdown(t: &str, drops: &[(&str, u64)]) -> Record {
        let drops: serde_json::Map<String, Value> = drops
            .iter()
            .map(|(k, v)| (k.to_string(), (*v).into()))
            .collect();
        line(
            serde_json::json!({"schema": SCHEMA, "type": "status", "time": t, "status": "shutdown",
            "message": "stopped", "totals": {"events": 3, "findings": 2, "targets": 1,
            "decode_errors": 0, "drops": drops}}),
        )
    }

    /// A small run for the renderers: a connect, two findings (the first seen 3 times), a
    /// verified handshake and a shutdown line with these drops.
    pub(crate) fn a_run(drops: &[(&str, u64)]) -> Report {
        Report::build([
            a_connect("2026-11-26T10:00:00Z", 7, "curl", "api.test", 8080),
            a_finding(
                "2026-11-26T10:00:01Z",
                "PLAINTEXT_CREDENTIALS",
                "HIGH",
                7,
                8080,
                3,
            ),
            a_finding(
                "2026-11-26T10:00:01Z",
                "TLS_UNTRUSTED_CA",
                "MEDIUM",
                8,
                8443,
                1,
            ),
            a_handshake(
                "2026-11-26T10:00:02Z",
                7,
                "api.test",
                8443,
                SPKI_A,
                "verified",
            ),
            a_shutdown("2026-11-26T10:00:05Z", drops),
        ])
    }

    /// A run whose every string from the monitored program is `hostile`: command line, names,
    /// SNI, evidence, event kinds, status lines.
    pub(crate) fn a_hostile_run(hostile: &str) -> Report {
        let process = serde_json::json!({"pid": 66, "ppid": 1, "uid": 0, "comm": hostile,
            "exe": hostile, "cmdline": ["node", hostile, "--x=`|`"], "container_id": hostile,
            "pod": {"namespace": hostile, "name": "n", "uid": "u", "container": hostile}, "mcp": true});
        let destination = serde_json::json!({"ip": "10.203.0.2", "port": 80, "hostname": hostile});
        Report::build([
            line(
                serde_json::json!({"schema": SCHEMA, "type": "event", "time": "2026-11-26T10:00:00Z",
                "event": "target", "process": process, "reason": hostile}),
            ),
            line(
                serde_json::json!({"schema": SCHEMA, "type": "event", "time": "2026-11-26T10:00:00Z",
                "event": "connect", "process": process,
                "socket": {"family": "ipv4", "protocol": hostile, "fd": 3},
                "destination": destination, "result": hostile}),
            ),
            line(
                serde_json::json!({"schema": SCHEMA, "type": "finding", "time": "2026-11-26T10:00:01Z",
                "id": hostile, "severity": "HIGH", "title": hostile, "process": process,
                "destination": destination,
                "evidence": {"reason": hostile, "credentials": [{"kind": hostile, "location": hostile,
                    "length": 3, "fingerprint": hostile}], "request": {"method": hostile,
                    "path": hostile, "host": hostile}, hostile: hostile,
                    "certificate": {"subject": hostile, "issuer": hostile, "sans": [hostile],
                    "not_before": hostile, "not_after": hostile, "serial": hostile,
                    "spki_sha256": hostile, "self_signed": true}},
                "remediation": hostile, "count": 1}),
            ),
            line(
                serde_json::json!({"schema": SCHEMA, "type": "event", "time": "2026-11-26T10:00:02Z",
                "event": hostile, "process": process}),
            ),
            line(
                serde_json::json!({"schema": SCHEMA, "type": "status", "time": "2026-11-26T10:00:03Z",
                "status": "warning", "component": hostile, "message": hostile}),
            ),
        ])
    }

    const T0: &str = "2026-11-26T10:00:00.000001Z";
    const T1: &str = "2026-11-26T10:00:01.000000Z";
    const T2: &str = "2026-11-26T10:00:02.000000Z";
    const T3: &str = "2026-11-26T10:00:03.000000Z";

    #[test]
    fn report_counts_distinct_findings_by_severity_with_their_grown_counts() {
        let report = Report::build([
            a_finding(T0, "PLAINTEXT_CREDENTIALS", "HIGH", 7, 8080, 1),
            a_finding(T1, "TLS_UNTRUSTED_CA", "MEDIUM", 7, 8443, 1),
            // The same finding again: its count grew to 5.
            a_finding(T3, "PLAINTEXT_CREDENTIALS", "HIGH", 7, 8080, 5),
            // Same id, another destination: another finding.
            a_finding(T2, "PLAINTEXT_CREDENTIALS", "HIGH", 7, 9090, 1),
            a_finding(T2, "SOMETHING_NEW", "INFO", 8, 9090, 2),
        ]);
        assert_eq!(report.severity_counts(Severity::High), (2, 6));
        assert_eq!(report.severity_counts(Severity::Medium), (1, 1));
        assert_eq!(report.severity_counts(Severity::Low), (0, 0));
        assert_eq!(report.severity_counts(Severity::Info), (1, 2));
        let first = &report.findings[0];
        assert_eq!(first.finding.id, "PLAINTEXT_CREDENTIALS");
        assert_eq!((first.count, first.lines), (5, 2));
        assert_eq!(
            (first.first_seen.to_string(), first.last_seen.to_string()),
            (T0.into(), T3.into())
        );
        let order: Vec<Severity> = report.findings.iter().map(|f| f.finding.severity).collect();
        assert_eq!(
            order,
            [
                Severity::High,
                Severity::High,
                Severity::Medium,
                Severity::Info
            ]
        );
        assert_eq!(report.input.finding_lines, 5);
        // The repeat adds nothing to the timeline.
        let p7 = report.processes.iter().find(|p| p.info.pid == 7).unwrap();
        assert_eq!(p7.timeline.len(), 3);
        assert_eq!(report.processes[0].info.pid, 7, "most severe first");
    }

    #[test]
    fn report_timeline_is_chronological_whatever_the_line_order() {
        // Connect events are held until their outcome is known, so they come late.
        let report = Report::build([
            a_handshake(T2, 9, "api.test", 8443, SPKI_A, "verified"),
            a_connect(T1, 9, "curl", "api.test", 8443),
            a_finding(T3, "PLAINTEXT_CREDENTIALS", "HIGH", 9, 8080, 1),
            a_connect(T0, 9, "curl", "api.test", 8080),
            a_connect(T1, 9, "curl", "api.test", 8081),
        ]);
        let p = &report.processes[0];
        let kinds: Vec<String> = p
            .timeline
            .iter()
            .map(|t| match &t.what {
                Happening::Connect { destination, .. } => format!("connect {}", destination.port),
                Happening::Handshake { .. } => "tls".into(),
                Happening::Finding { id, .. } => id.clone(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "connect 8080",
                "connect 8443",
                "connect 8081",
                "tls",
                "PLAINTEXT_CREDENTIALS"
            ],
            "by time, then input order"
        );
        assert_eq!((p.connects, p.handshakes), (3, 1));
        assert_eq!(report.first.unwrap().to_string(), T0);
        assert_eq!(report.last.unwrap().to_string(), T3);
        assert_eq!(report.span(), Some(Duration::from_micros(2_999_999)));
    }

    #[test]
    fn report_upstreams_gather_ports_transport_certificates_and_processes() {
        let report = Report::build([
            a_connect(T0, 7, "curl", "api.test", 8080),
            a_connect(T0, 7, "curl", "API.test", 8443),
            a_handshake(T1, 7, "api.test", 8443, SPKI_A, "verified"),
            a_handshake(T1, 8, "api.test", 8443, SPKI_A, "verified"),
            a_handshake(
                T1,
                8,
                "api.test",
                9443,
                SPKI_B,
                "accepted despite self-signed certificate",
            ),
            a_finding(T2, "PLAINTEXT_CREDENTIALS", "HIGH", 7, 8080, 1),
            a_connect(T0, 7, "curl", "other.test", 443),
        ]);
        assert_eq!(report.upstreams.len(), 2);
        let up = &report.upstreams[0];
        assert_eq!(
            up.host, "api.test",
            "with findings first; names are case-insensitive"
        );
        assert_eq!(
            up.ports.keys().copied().collect::<Vec<_>>(),
            [8080, 8443, 9443]
        );
        assert_eq!(up.ports[&8080].transport(), "plaintext");
        assert_eq!(up.ports[&8443].transport(), "TLS");
        assert_eq!(up.ports[&8443].connects, 1);
        assert_eq!(up.certificates.len(), 2);
        assert_eq!(up.certificates[0].verdicts["verified"], 2);
        assert_eq!(up.findings["PLAINTEXT_CREDENTIALS"], 1);
        let pids: Vec<u32> = up.processes.iter().map(|p| p.0).collect();
        assert_eq!(pids, [7, 8]);
        assert_eq!(
            report.upstreams[1].ports[&443].transport(),
            "no TLS handshake seen"
        );
        assert_eq!(report.endpoints, 4);
    }

    #[test]
    fn report_pins_only_keys_of_handshakes_that_verified_without_finding() {
        let report = Report::build([
            a_handshake(T1, 7, "api.test", 8443, SPKI_A, "verified"),
            // Verified, but this connection has a TLS finding (hostname unchecked).
            a_handshake(T1, 8, "other.test", 8443, SPKI_B, "verified"),
            a_finding(T2, "TLS_HOSTNAME_UNCHECKED", "HIGH", 8, 8443, 1),
            a_handshake(
                T1,
                9,
                "api.test",
                9443,
                SPKI_B,
                "accepted despite self-signed certificate",
            ),
            a_handshake(T1, 9, "evil\"\n[x]", 9443, SPKI_B, "verified"),
        ]);
        assert_eq!(report.pins.len(), 2, "{:?}", report.pins);
        let api = &report.pins[0];
        assert_eq!(api.host, "api.test");
        assert_eq!(api.pins.iter().collect::<Vec<_>>(), [SPKI_A]);
        assert_eq!(api.other_keys.iter().collect::<Vec<_>>(), [SPKI_B]);
        let other = &report.pins[1];
        assert!(
            other.pins.is_empty(),
            "a finding on the connection: not clean"
        );
        assert_eq!(report.pins_unusable_hosts, 1);
    }

    #[test]
    fn report_pins_keys_of_hosts_whose_only_findings_are_about_the_pin_config() {
        let report = Report::build([
            a_handshake(T1, 7, "api.test", 8443, SPKI_A, "verified"),
            a_finding(T2, "TLS_UNPINNED_HIGH_VALUE", "MEDIUM", 7, 8443, 1),
            a_finding(T2, "TLS_SINGLE_PIN", "INFO", 7, 8443, 1),
        ]);
        assert_eq!(report.pins[0].pins.iter().collect::<Vec<_>>(), [SPKI_A]);
    }

    #[test]
    fn report_takes_drops_from_the_shutdown_line() {
        let mut drops_line = a_shutdown(T1, &[("ringbuf_full", 3)]);
        if let Record::Status(s) = &mut drops_line {
            s.status = "drops".into();
        }
        let report = Report::build([drops_line.clone()]);
        assert!(!report.totals.as_ref().unwrap().final_line);
        let report = Report::build([
            drops_line.clone(),
            a_shutdown(T2, &[("ringbuf_full", 4), ("sockets_full", 0)]),
            drops_line,
        ]);
        let totals = report.totals.unwrap();
        assert!(totals.final_line);
        assert_eq!(totals.status.totals.unwrap().drops["ringbuf_full"], 4);
    }

    #[test]
    fn report_reads_what_the_agent_writes() {
        use crate::output::{self, finding::FindingId};
        let process = std::sync::Arc::new(crate::process::ProcessInfo {
            pid: 42,
            comm: "node".into(),
            cmdline: vec!["node".into(), "server.js".into()],
            mcp: true,
            ..Default::default()
        });
        let record = output::Record::Finding(output::finding::Finding {
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000),
            id: FindingId::TlsVerifyEnvDisabled,
            process,
            destination: None,
            evidence: serde_json::json!({"variable": "NODE_TLS_REJECT_UNAUTHORIZED", "value": "0",
                "source": "environment at start", "reason": "NODE_TLS_REJECT_UNAUTHORIZED=0",
                "new_key": [1, 2]}),
            count: 1,
        });
        let Record::Finding(f) = Record::from_output(&record).unwrap() else {
            panic!("not a finding");
        };
        assert_eq!(f.id, "TLS_VERIFY_ENV_DISABLED");
        assert_eq!(f.severity, Severity::High);
        assert_eq!(f.title, FindingId::TlsVerifyEnvDisabled.title());
        assert_eq!(
            f.evidence.variable.as_deref(),
            Some("NODE_TLS_REJECT_UNAUTHORIZED")
        );
        assert_eq!(
            f.evidence.other["new_key"],
            serde_json::json!([1, 2]),
            "unknown keys kept"
        );
        assert!(f.process.mcp);
    }

    #[test]
    fn report_rejects_what_is_not_an_egress_monitor_line() {
        for (text, why) in [
            ("not json", "not JSON"),
            ("[1]", "not a JSON object"),
            (r#"{"type":"event"}"#, "no \"schema\""),
            (
                r#"{"schema":"egress-monitor/2","type":"event"}"#,
                "is not \"egress-monitor/1\"",
            ),
            (
                r#"{"schema":"egress-monitor/1","type":"gossip","time":"2026-11-26T10:00:00Z"}"#,
                "unknown line type",
            ),
            (
                r#"{"schema":"egress-monitor/1","type":"event","time":"yesterday","event":"x","process":{"pid":1}}"#,
                "RFC 3339",
            ),
            (
                r#"{"schema":"egress-monitor/1","type":"finding","time":"2026-11-26T10:00:00Z","id":"X","severity":"SEVERE","process":{"pid":1},"destination":null}"#,
                "invalid finding line",
            ),
        ] {
            let err = parse_line(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn certificate_validity_and_pin_shape() {
        let cert = Certificate {
            not_before: "2026-11-25T00:00:00Z".into(),
            not_after: "2026-11-28T00:00:00Z".into(),
            spki_sha256: SPKI_A.into(),
            ..Default::default()
        };
        let at = |s: &str| Time(humantime::parse_rfc3339(s).unwrap());
        assert_eq!(cert.validity_at(at("2026-11-26T00:00:00Z")), None);
        assert_eq!(
            cert.validity_at(at("2026-11-29T00:00:00Z")),
            Some("expired")
        );
        assert_eq!(
            cert.validity_at(at("2026-11-24T00:00:00Z")),
            Some("not yet valid")
        );
        assert_eq!(cert.pin(), Some(SPKI_A));
        let odd = Certificate {
            spki_sha256: "sha256/\"]\n[[pins]]".into(),
            ..cert
        };
        assert_eq!(odd.pin(), None);
    }
}
