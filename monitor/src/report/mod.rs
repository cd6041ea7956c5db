//! `egress-monitor report FILE`: a run's JSON lines turned into one document for a person: a
//! self-contained HTML page (default) or Markdown for tickets and chat.
//!
//! Sections, in both formats: a summary (findings by severity, processes, destinations, time
//! span, drops from the `shutdown` line), every finding with its evidence and remediation, a
//! chronological timeline per process, the upstreams (ports, TLS or not, certificates,
//! verdicts, who used them), the suggested `[[pins]]` for upstreams that verified cleanly, and
//! the run's own notes (warnings, skipped probes).
//!
//! Everything in the input comes from monitored programs (command lines, host names, paths) or
//! may have been edited by anyone: every string is escaped for the format it goes into, and
//! control and bidi characters are shown as escapes (`\u{202e}`), as in the text view. The
//! report adds nothing secret: credentials are only in the input as kind, location, length and
//! keyed fingerprint.
//!
//! A line that is not an `egress-monitor/1` JSON line (unreadable, not UTF-8, not JSON, a field
//! of the wrong type, longer than [`MAX_LINE`]) stops the report with an error naming its line
//! number: a report built from part of a file would look complete and not be. Blank lines are
//! skipped; unknown event kinds and evidence keys (from a newer monitor) are shown as they are.
//!
//! ```text
//! egress-monitor run --output run.jsonl --duration 600
//! egress-monitor report run.jsonl -o report.html
//! egress-monitor report run.jsonl --format markdown
//! ```
mod document;
pub mod html;
pub mod markdown;
pub mod model;

use std::{
    borrow::Cow,
    fmt,
    io::{self, BufRead, Read as _, Write as _},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context as _;

use model::{Builder, Certificate, Destination, Happening, Process, Record, Report};

/// The longest line read (the monitor's lines are a few KiB; a command line can be long).
pub const MAX_LINE: usize = 4 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// One self-contained HTML page (no scripts, no external resources).
    Html,
    /// GitHub-flavoured Markdown.
    Markdown,
}

pub struct ReportArgs {
    /// JSON lines as `run` writes them; `-` reads standard input.
    pub input: PathBuf,
    /// Standard output when `None`.
    pub output: Option<PathBuf>,
    pub format: ReportFormat,
}

/// A line that cannot be read, by number (1-based).
#[derive(Debug, PartialEq, Eq)]
pub struct InputError {
    pub line: u64,
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The message may quote the line: it goes to a terminal, so only printable text, and
        // not all of it.
        let message = crate::output::text::clean(&self.message);
        let short: String = message.chars().take(300).collect();
        let cut = if short.len() < message.len() {
            "…"
        } else {
            ""
        };
        write!(f, "line {}: {short}{cut}", self.line)
    }
}

impl std::error::Error for InputError {}

/// The records of a JSON lines stream, in order; the first bad line ends it with an error.
pub struct JsonLines<R> {
    reader: R,
    line: u64,
    buf: Vec<u8>,
    failed: bool,
}

impl<R: BufRead> JsonLines<R> {
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            line: 0,
            buf: Vec::new(),
            failed: false,
        }
    }

    fn fail(&mut self, message: String) -> Option<Result<Record, InputError>> {
        self.failed = true;
        Some(Err(InputError {
            line: self.line,
            message,
        }))
    }
}

impl<R: BufRead> Iterator for JsonLines<R> {
    type Item = Result<Record, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.failed {
            self.buf.clear();
            let read = (&mut self.reader)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut self.buf);
            self.line += 1;
            match read {
                Err(e) => return self.fail(format!("unreadable: {e}")),
                Ok(0) => return None,
                Ok(_) => {}
            }
            if self.buf.last() == Some(&b'\n') {
                self.buf.pop();
            } else if self.buf.len() > MAX_LINE {
                return self.fail(format!("longer than {} MiB", MAX_LINE >> 20));
            }
            if self.buf.last() == Some(&b'\r') {
                self.buf.pop();
            }
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let parsed = match std::str::from_utf8(&self.buf) {
                Ok(text) => model::parse_line(text),
                Err(e) => Err(format!("not UTF-8 ({e})")),
            };
            return match parsed {
                Ok(record) => Some(Ok(record)),
                Err(message) => self.fail(message),
            };
        }
        None
    }
}

/// The records of the input file (`-`: standard input): JSON lines, or a recording
/// (`run --record`), replayed through the analysis with the default configuration into the
/// JSON lines the live run printed.
pub fn records(input: &Path) -> anyhow::Result<JsonLines<Box<dyn BufRead>>> {
    let reader: Box<dyn BufRead> = if input == Path::new("-") {
        Box::new(io::BufReader::new(io::stdin()))
    } else if crate::record::is_recording(input) {
        // A recording: what `replay` prints of it, with the default configuration.
        Box::new(io::Cursor::new(crate::replay::json_lines(input)?))
    } else {
        let file = std::fs::File::open(input)
            .with_context(|| format!("cannot read {}", input.display()))?;
        Box::new(io::BufReader::new(file))
    };
    Ok(JsonLines::new(reader))
}

pub fn render(report: &Report, format: ReportFormat) -> String {
    match format {
        ReportFormat::Html => html::render(report),
        ReportFormat::Markdown => markdown::render(report),
    }
}

/// The report of the input file (see [`records`]); the first bad line is an error.
pub fn load(input: &Path) -> anyhow::Result<Report> {
    let mut builder = Builder::default();
    for record in records(input)? {
        let record = record.map_err(|e| anyhow::anyhow!("{}: {e}", input.display()))?;
        builder.add(record);
    }
    Ok(builder.finish())
}

pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    let text = render(&load(&args.input)?, args.format);
    emit(args.output.as_deref(), &text, "the report")
}

/// `egress-monitor pins FILE`: the suggested `[[pins]]` of a run ([`pins_toml`]), from the same
/// input as `report` (JSON lines or a recording).
pub fn pins(input: &Path, output: Option<&Path>) -> anyhow::Result<()> {
    emit(output, &pins_toml(&load(input)?), "the pins")
}

/// Write `text` to `output` (private, whole) or standard output.
fn emit(output: Option<&Path>, text: &str, what: &str) -> anyhow::Result<()> {
    match output {
        Some(path) => write_private(path, text.as_bytes())
            .with_context(|| format!("cannot write {what} to {}", path.display())),
        None => {
            let mut out = io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
            Ok(())
        }
    }
}

/// Write `bytes` to `path` readable by its owner only (a report says where a host's
/// credentials are exposed), through a temporary file renamed into place: a reader never sees
/// half a report, and an existing file is replaced whatever its mode was.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

// Text the report's document (`document.rs`) is made of. Everything here is plain text from the
// input: the format escapes it.

/// Printable text only: control, bidi and other invisible characters become escapes.
pub(crate) fn visible(s: &str) -> Cow<'_, str> {
    crate::output::text::clean(s)
}

/// A command line as a person would type it: arguments with spaces or quotes single-quoted.
pub(crate) fn command_line(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b));
            if plain {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `comm[pid]`
pub(crate) fn process_label(comm: &str, pid: u32) -> String {
    format!("{comm}[{pid}]")
}

/// `namespace/name (container c)`, or the pod UID when its names are unknown.
pub(crate) fn pod(p: &Process) -> Option<String> {
    let pod = p.pod.as_ref()?;
    let mut s = match (&pod.namespace, &pod.name) {
        (Some(ns), Some(name)) => format!("{ns}/{name}"),
        _ => format!("uid {}", pod.uid),
    };
    if let Some(c) = &pod.container {
        s.push_str(&format!(" (container {c})"));
    }
    Some(s)
}

/// `host:port (address)`, or `address:port` when no name was seen.
pub(crate) fn destination(d: &Destination) -> String {
    let addr = match d.ip {
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    match &d.hostname {
        Some(name) if !name.is_empty() => format!("{name}:{} ({addr})", d.port),
        _ => format!("{addr}:{}", d.port),
    }
}

pub(crate) fn duration(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        return format!("{} µs", d.as_micros());
    }
    humantime::format_duration(Duration::from_millis(d.as_millis() as u64)).to_string()
}

/// A time in a timeline: the time of day when the run fits in one UTC day.
pub(crate) fn clock(report: &Report, t: model::Time) -> String {
    let full = t.to_string();
    if report.single_day() {
        full.get(11..).unwrap_or(&full).to_string()
    } else {
        full
    }
}

pub(crate) fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// A finding's evidence as labelled text, in the order a person reads it (its credentials and
/// certificate follow these, each shown on its own).
pub(crate) fn evidence(e: &model::Evidence) -> Vec<(String, String)> {
    let mut items = Vec::new();
    let mut field = |label: &str, value: Option<String>| {
        if let Some(value) = value {
            items.push((label.to_string(), value));
        }
    };
    field("Reason", e.reason.clone());
    field("Accepted because", e.accepted_because.clone());
    field("Protocol", e.protocol.clone());
    field(
        "Request",
        e.request.as_ref().map(|r| match &r.host {
            Some(host) => format!("{} {} (Host: {host})", r.method, r.path),
            None => format!("{} {}", r.method, r.path),
        }),
    );
    field("Authentication endpoint", e.auth_endpoint.clone());
    field(
        "Credentials seen",
        e.credentials_seen.map(|b| yes_no(b).into()),
    );
    field(
        "PostgreSQL",
        e.postgres.as_ref().map(|p| {
            format!(
                "user {}, database {}, asked for TLS first: {}",
                p.user.as_deref().unwrap_or("(none)"),
                p.database.as_deref().unwrap_or("(none)"),
                yes_no(p.ssl_requested)
            )
        }),
    );
    field(
        "Environment",
        e.variable.as_ref().map(|var| {
            format!(
                "{var}={} ({})",
                e.value.as_deref().unwrap_or(""),
                e.source.as_deref().unwrap_or("source unknown")
            )
        }),
    );
    field("Server name", e.server_name.clone());
    field("TLS library", e.library.clone());
    field("Verify mode", e.verify_mode.clone());
    field(
        "OpenSSL verification",
        e.openssl_verify_result
            .as_ref()
            .map(|r| format!("code {}: {}", r.code, r.error)),
    );
    field(
        "Application data",
        e.application_data.map(|used| {
            if used {
                "the session was used".to_string()
            } else {
                "the session was not used".to_string()
            }
        }),
    );
    field("Process-wide bypass", e.process_bypass.clone());
    for (key, value) in &e.other {
        let text = match value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let short: String = text.chars().take(2000).collect();
        items.push((key.clone(), short));
    }
    items
}

/// A timeline row: what happened, where, and the details.
pub(crate) struct Row {
    pub kind: &'static str,
    pub destination: String,
    pub detail: String,
    /// For a finding: its number and severity (the renderers link to it).
    pub finding: Option<(usize, model::Severity)>,
}

pub(crate) fn row(report: &Report, what: &Happening) -> Row {
    let dest = |d: &Option<Destination>| d.as_ref().map(destination).unwrap_or_default();
    match what {
        Happening::Connect {
            destination: d,
            protocol,
            result,
            late_result,
        } => Row {
            kind: if *late_result {
                "connect result"
            } else {
                "connect"
            },
            destination: destination(d),
            detail: format!(
                "{} {result}",
                protocol.as_deref().unwrap_or("(protocol unknown)")
            ),
            finding: None,
        },
        Happening::Handshake {
            destination: d,
            tls,
        } => {
            let mut detail = tls.verdict();
            if let Some(name) = &tls.server_name {
                detail.push_str(&format!("; server name {name}"));
            }
            if let Some(mode) = &tls.verify_mode {
                detail.push_str(&format!("; verify mode {mode}"));
            }
            detail.push_str(&format!("; host name check: {}", tls.hostname_check()));
            if let Some(used) = tls.application_data {
                detail.push_str(if used { "; used" } else { "; not used" });
            }
            if let Some(pin) = tls.certificate.as_ref().and_then(Certificate::pin) {
                detail.push_str(&format!("; SPKI {pin}"));
            }
            Row {
                kind: "TLS handshake",
                destination: dest(d),
                detail,
                finding: None,
            }
        }
        Happening::Finding {
            number,
            id,
            severity,
            destination: d,
        } => {
            let title = report
                .finding(*number)
                .map(|f| f.finding.title.clone())
                .unwrap_or_default();
            Row {
                kind: "finding",
                destination: dest(d),
                detail: format!("{id}: {title}"),
                finding: Some((*number, *severity)),
            }
        }
        Happening::Target { reason } => Row {
            kind: "watched",
            destination: String::new(),
            detail: reason.clone(),
            finding: None,
        },
        Happening::Other { event } => Row {
            kind: "other event",
            destination: String::new(),
            detail: event.clone(),
            finding: None,
        },
    }
}

/// What the drop counters say, one line per nonzero counter (empty: nothing dropped).
pub(crate) fn drops(totals: &model::Totals) -> Vec<String> {
    let mut out: Vec<String> = totals
        .drops
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(name, n)| format!("{name}: {n}"))
        .collect();
    if totals.decode_errors > 0 {
        out.push(format!("undecodable records: {}", totals.decode_errors));
    }
    out
}

/// The summary's "Drops" line.
pub(crate) fn drops_summary(report: &Report) -> String {
    let Some(t) = &report.totals else {
        return "unknown: no shutdown line (the run did not end cleanly, or the file was cut)"
            .into();
    };
    let from = if t.final_line {
        "from the shutdown line".to_string()
    } else {
        format!(
            "from the last {} line at {}: no shutdown line (the run did not end cleanly, or the file was cut)",
            t.status.status, t.status.time
        )
    };
    let totals = t.status.totals.clone().unwrap_or_default();
    let list = drops(&totals);
    let mut s = if list.is_empty() {
        format!("none ({from})")
    } else {
        format!("{} ({from})", list.join(", "))
    };
    let suppressed: Vec<String> = totals
        .suppressed
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(id, n)| format!("{id}: {n}"))
        .collect();
    if !suppressed.is_empty() {
        s.push_str(&format!(
            "; findings suppressed by the config: {}",
            suppressed.join(", ")
        ));
    }
    s
}

/// What the monitor saw of a certificate, for tables.
pub(crate) fn certificate_lines(c: &Certificate, validity: Option<&str>) -> Vec<(String, String)> {
    let mut v = vec![
        ("Subject".to_string(), c.subject.clone()),
        ("Issuer".to_string(), c.issuer.clone()),
    ];
    if !c.sans.is_empty() {
        v.push(("Names (SAN)".into(), c.sans.join(", ")));
    }
    let mut valid = format!("{} to {}", c.not_before, c.not_after);
    if let Some(problem) = validity {
        valid.push_str(&format!(" ({problem} when seen)"));
    }
    v.push(("Valid".into(), valid));
    if c.self_signed {
        v.push(("Self-signed".into(), "yes".into()));
    }
    if !c.serial.is_empty() {
        v.push(("Serial".into(), c.serial.clone()));
    }
    if !c.spki_sha256.is_empty() {
        v.push(("SPKI pin".into(), c.spki_sha256.clone()));
    }
    v
}

/// What the monitor does with the suggested pins once they are in `--config`.
const PINS_CHECKED: &str =
    "# Add them to egress-monitor's --config: a handshake to a pinned host whose chain holds\n\
     # none of its keys is TLS_PIN_MISMATCH; a host with a single pin is TLS_SINGLE_PIN.\n";

/// The suggested `[[pins]]` block (TOML). Only host names made of host-name characters and
/// pins of the monitor's own shape are written, so nothing from the input needs quoting.
pub fn pins_toml(report: &Report) -> String {
    let mut out = String::from(
        "# Suggested [[pins]] from this run: the SPKI SHA-256 pins of the upstreams whose TLS\n\
         # handshakes verified cleanly (handshake completed, OpenSSL verified the chain, the\n\
         # certificate covers the name, and no finding on that connection).\n",
    );
    out.push_str(PINS_CHECKED);
    let suggested: Vec<&model::PinSuggestion> =
        report.pins.iter().filter(|p| !p.pins.is_empty()).collect();
    if report.pins.is_empty() {
        out.push_str(
            "# No TLS handshake with a captured certificate in this run: nothing to pin.\n",
        );
    }
    for p in &suggested {
        out.push_str(&format!("\n[[pins]]\nhost = \"{}\"\nspki = [\n", p.host));
        for pin in &p.pins {
            out.push_str(&format!("  \"{pin}\",\n"));
        }
        out.push_str("]\n");
        if p.pins.len() == 1 {
            out.push_str(
                "# One key seen: pin the next key (or the issuing CA's) as well before\n\
                 # enforcing, or a key rotation breaks the connection.\n",
            );
        }
        for key in &p.other_keys {
            out.push_str(&format!(
                "# Also presented {key} in a handshake that did not verify cleanly: not pinned.\n"
            ));
        }
    }
    let unverified: Vec<&str> = report
        .pins
        .iter()
        .filter(|p| p.pins.is_empty())
        .map(|p| p.host.as_str())
        .collect();
    if !unverified.is_empty() {
        out.push_str(&format!(
            "\n# Not suggested, no handshake verified cleanly: {}\n",
            unverified.join(", ")
        ));
    }
    if report.pins_unusable_hosts > 0 {
        out.push_str(&format!(
            "\n# {} handshake(s) left out: their host names have characters a host name does not.\n",
            report.pins_unusable_hosts
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::tests::*;

    fn lines(text: &str) -> Vec<Result<Record, InputError>> {
        JsonLines::new(io::Cursor::new(text.as_bytes().to_vec())).collect()
    }

    #[test]
    fn report_input_errors_name_the_line_and_stop() {
        let good = serde_json::json!({"schema": "egress-monitor/1", "type": "status",
            "time": "2026-11-26T10:00:00Z", "status": "ready", "message": "ok"})
        .to_string();
        let text =
            format!("{good}\n\n{good}\r\n{{\"schema\": \"egress-monitor/1\", \"type\n{good}\n");
        let read = lines(&text);
        assert_eq!(read.len(), 3, "two records, then the error, then nothing");
        assert!(read[0].is_ok() && read[1].is_ok());
        let err = read[2].as_ref().unwrap_err();
        assert_eq!(err.line, 4, "blank lines count");
        assert!(err.to_string().starts_with("line 4: not JSON"), "{err}");
    }

    #[test]
    fn report_input_errors_are_safe_to_print() {
        // A JSON escape gives a valid line with an escape character and a bidi override.
        let hostile = r#"{"schema": "egress-monitor/1\u001b[2J\u202eevil"}"#;
        let err = lines(hostile).pop().unwrap().unwrap_err();
        let text = err.to_string();
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{202e}'),
            "{text}"
        );
        assert!(text.contains("\\u{202e}"), "{text}");
        let invalid = lines("{\"a\": \"\u{ff}\"}\n\u{0}\n");
        assert!(invalid[0].is_err());
        let not_utf8 = JsonLines::new(io::Cursor::new(b"\xff\xfe\n".to_vec()))
            .next()
            .unwrap()
            .unwrap_err();
        assert!(not_utf8.to_string().contains("not UTF-8"), "{not_utf8}");
    }

    #[test]
    fn report_input_lines_are_bounded() {
        let long = format!("{{\"x\": \"{}\"}}", "a".repeat(MAX_LINE));
        let err = lines(&long).pop().unwrap().unwrap_err();
        assert_eq!(err.line, 1);
        assert!(err.message.contains("longer than"), "{err}");
    }

    #[test]
    fn report_file_is_written_private_and_replaces_what_was_there() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("em-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("report.html");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn report_command_lines_read_as_typed() {
        let args: Vec<String> = ["curl", "-H", "Authorization: <redacted>", "it's", ""]
            .map(String::from)
            .to_vec();
        assert_eq!(
            command_line(&args),
            r"curl -H 'Authorization: <redacted>' 'it'\''s' ''"
        );
    }

    /// Every finding id of the catalogue. No wildcard below: a new id does not compile here
    /// until it is added (and so is shown by the report tests).
    fn every_finding_id() -> Vec<crate::output::finding::FindingId> {
        use crate::output::finding::FindingId::{self, *};
        let all = [
            TlsVerifyDisabled,
            TlsInvalidCertAccepted,
            TlsHostnameUnchecked,
            TlsHostnameMismatchAccepted,
            TlsVerifyEnvDisabled,
            PlaintextCredentials,
            PlaintextAuthEndpoint,
            TlsUntrustedCa,
            TlsPinMismatch,
            TlsUnpinnedHighValue,
            TlsSinglePin,
            HstsMissing,
            McpEndpointPlaintext,
        ];
        for id in all {
            match id {
                FindingId::TlsVerifyDisabled
                | FindingId::TlsInvalidCertAccepted
                | FindingId::TlsHostnameUnchecked
                | FindingId::TlsHostnameMismatchAccepted
                | FindingId::TlsVerifyEnvDisabled
                | FindingId::PlaintextCredentials
                | FindingId::PlaintextAuthEndpoint
                | FindingId::TlsUntrustedCa
                | FindingId::TlsPinMismatch
                | FindingId::TlsUnpinnedHighValue
                | FindingId::TlsSinglePin
                | FindingId::HstsMissing
                | FindingId::McpEndpointPlaintext => {}
            }
        }
        all.to_vec()
    }

    #[test]
    fn report_shows_every_finding_id_in_both_formats() {
        use crate::output::{self, finding::FindingId};
        let records: Vec<Record> = every_finding_id()
            .into_iter()
            .enumerate()
            .map(|(i, id)| {
                let process = std::sync::Arc::new(crate::process::ProcessInfo {
                    pid: 1000 + i as u32,
                    comm: "node".into(),
                    cmdline: vec!["node".into(), "server.js".into()],
                    ..Default::default()
                });
                let destination =
                    (id != FindingId::TlsVerifyEnvDisabled).then(|| output::Destination {
                        ip: "10.203.0.2".parse().unwrap(),
                        port: 443,
                        hostname: Some("api.test".into()),
                    });
                let record = output::Record::Finding(output::finding::Finding {
                    time: std::time::SystemTime::now(),
                    id,
                    process,
                    destination,
                    evidence: serde_json::json!({"reason": format!("why {}", id.as_str())}),
                    count: 1,
                });
                Record::from_output(&record).unwrap()
            })
            .collect();
        let report = Report::build(records);
        let page = html::render(&report);
        let md = markdown::render(&report);
        for (i, id) in every_finding_id().into_iter().enumerate() {
            let pid = 1000 + i;
            let tag = format!("data-finding=\"{}\" data-pid=\"{pid}\"", id.as_str());
            assert!(page.contains(&tag), "{tag}");
            assert!(page.contains(&html::esc(id.title())), "{}", id.title());
            assert!(page.contains(&html::esc(id.remediation())), "{:?}", id);
            assert!(page.contains(&format!("why {}", id.as_str())));
            assert!(md.contains(&format!("`{}` {}", id.as_str(), markdown::text(id.title()))));
            assert!(md.contains(&markdown::text(id.remediation())), "{:?}", id);
            assert!(md.contains(&format!("node\\[{pid}\\]")), "{pid}");
        }
    }

    #[test]
    fn report_pins_block_is_toml_with_only_clean_keys() {
        let report = Report::build([
            a_handshake(
                "2026-11-26T10:00:00Z",
                7,
                "api.test",
                8443,
                SPKI_A,
                "verified",
            ),
            a_handshake(
                "2026-11-26T10:00:01Z",
                8,
                "api.test",
                9443,
                SPKI_B,
                "accepted despite self-signed certificate",
            ),
            a_handshake(
                "2026-11-26T10:00:01Z",
                8,
                "self.test",
                9443,
                SPKI_B,
                "accepted despite self-signed certificate",
            ),
        ]);
        let toml_text = pins_toml(&report);
        let parsed: toml::Value = toml::from_str(&toml_text).expect("valid TOML");
        let pins = parsed["pins"].as_array().unwrap();
        assert_eq!(pins.len(), 1, "{toml_text}");
        assert_eq!(pins[0]["host"].as_str(), Some("api.test"));
        assert_eq!(pins[0]["spki"].as_array().unwrap().len(), 1);
        assert_eq!(pins[0]["spki"][0].as_str(), Some(SPKI_A));
        assert!(toml_text.contains("Not suggested, no handshake verified cleanly: self.test"));
        assert!(toml_text.contains(&format!("Also presented {SPKI_B}")));
        let config = crate::config::Config::parse(&toml_text).expect("--config accepts it");
        let pinned = config
            .pinning
            .pins_for("api.test")
            .expect("api.test is pinned");
        assert!(pinned.holds(SPKI_A), "{toml_text}");
        let empty = pins_toml(&Report::build([]));
        assert!(empty.contains("nothing to pin"), "{empty}");
        assert!(toml::from_str::<toml::Value>(&empty).is_ok());
    }
}
