//! What the report says, once for both formats: the sections and their order, their headings,
//! what an empty one says, the fields of the summary, of each finding and of each process, and
//! the columns and rows of each table. A format ([`Markup`]: the HTML page, Markdown) says only
//! how input text is escaped and how a field, a table or a heading is marked up.
//!
//! Every string from the input reaches the document through [`Markup::esc`], [`Markup::value`],
//! [`Markup::code`], [`Markup::cell_code`] or [`Markup::name`], or through the format's own
//! escaping in the headings it writes itself (of a finding, of a process); everything else is
//! text written here.
use std::fmt::Write as _;

use super::{
    certificate_lines, clock, command_line, destination, drops, drops_summary, duration, evidence,
    model::*, pins_toml, pod, process_label, row,
};

pub(crate) const TITLE: &str = "egress-monitor report";
/// What the footer of both formats promises.
pub(crate) const SECRETS: &str =
    "secrets appear only as kind, location, length and keyed fingerprint";

#[derive(Clone, Copy)]
pub(crate) struct Section {
    /// The HTML anchor.
    pub id: &'static str,
    /// Its name in the HTML page's navigation.
    pub short: &'static str,
    pub title: &'static str,
}

impl Section {
    const fn new(id: &'static str, title: &'static str) -> Self {
        Section {
            id,
            short: title,
            title,
        }
    }
}

const SUMMARY: Section = Section::new("summary", "Summary");
const FINDINGS: Section = Section::new("findings", "Findings");
const PROCESSES: Section = Section::new("processes", "Processes");
const UPSTREAMS: Section = Section::new("upstreams", "Upstreams");
const PINS: Section = Section {
    short: "Pins",
    ..Section::new("pins", "Suggested pins")
};
const RUN: Section = Section::new("run", "Run");
/// In the order of the document.
pub(crate) const SECTIONS: [Section; 6] = [SUMMARY, FINDINGS, PROCESSES, UPSTREAMS, PINS, RUN];

pub(crate) const CREDENTIAL_COLUMNS: [&str; 4] = ["Credential", "Where", "Length", "Fingerprint"];

/// A labelled value. The label is plain text (the format escapes it); the values are markup.
/// Most fields have one value; one with several (why a process was watched) is one field with
/// line breaks in HTML, one list item per value in Markdown.
pub(crate) struct Field {
    pub label: String,
    pub values: Vec<String>,
}

impl Field {
    fn new(label: impl Into<String>, value: String) -> Self {
        Self::many(label, vec![value])
    }

    fn many(label: impl Into<String>, values: Vec<String>) -> Self {
        Field {
            label: label.into(),
            values,
        }
    }
}

/// A table row: cells of markup.
pub(crate) struct TableRow {
    pub cells: Vec<String>,
    /// A timeline row about a finding (HTML highlights it).
    pub finding: bool,
}

impl TableRow {
    fn new(cells: Vec<String>) -> Self {
        TableRow {
            cells,
            finding: false,
        }
    }
}

/// A finding, ready to be laid out.
pub(crate) struct FindingParts {
    /// Its id and title.
    pub title: String,
    /// Process, destination, when seen.
    pub about: Vec<Field>,
    pub evidence: Vec<Field>,
    /// Rows of [`CREDENTIAL_COLUMNS`].
    pub credentials: Vec<TableRow>,
    /// The certificate presented.
    pub certificate: Option<Vec<Field>>,
    pub remediation: String,
}

/// A certificate an upstream presented, for its table cell.
pub(crate) struct CertParts {
    pub fields: Vec<Field>,
    /// The ports it was presented on, comma-separated (empty: none known).
    pub ports: String,
    /// `verdict ×n`
    pub verdicts: Vec<String>,
}

/// How one format marks the report up.
pub(crate) trait Markup {
    /// Input text, escaped.
    fn esc(&self, s: &str) -> String;
    /// An input value in running text or a cell (HTML also isolates it from the text around).
    fn value(&self, s: &str) -> String;
    /// An input value as code, outside tables.
    fn code(&self, s: &str) -> String;
    /// An input value as code, in a table cell.
    fn cell_code(&self, s: &str) -> String;
    /// A name from the input the text talks about (an event kind).
    fn name(&self, s: &str) -> String;
    /// Text of ours, set back.
    fn muted(&self, text: &str) -> String;
    /// A process by its label (markup), with what marks an MCP server, and a link to it.
    fn process(&self, pid: u32, label: String, mcp: bool) -> String;
    /// The "What" and "Detail" (markup) cells of a timeline row about a finding.
    fn timeline_finding(
        &self,
        number: usize,
        severity: Severity,
        detail: String,
    ) -> (String, String);
    /// Several values (markup) in one table cell.
    fn cell_list(&self, values: Vec<String>) -> String;
    /// The ports of an upstream: port, transport, what was seen on it.
    fn ports(&self, ports: &[(u16, &str, String)]) -> String;
    /// The certificates of an upstream, and the verdicts of handshakes without one.
    fn certificates(&self, certificates: &[CertParts], uncertified: &[String]) -> String;

    /// The start of the document, with its one-line summary (markup).
    fn start(&mut self, summary: &str);
    /// The end of the document; the document.
    fn finish(self) -> String;
    fn open_section(&mut self, section: &Section);
    /// Closes a section, or a process.
    fn close_section(&mut self);
    /// A paragraph (markup).
    fn para(&mut self, text: &str);
    /// A paragraph set back (markup).
    fn note(&mut self, text: &str);
    /// A heading inside a section (plain text of ours).
    fn heading(&mut self, text: &str);
    fn fields(&mut self, fields: &[Field]);
    /// `class` names the table for the HTML page's style.
    fn table(&mut self, class: &str, columns: &[&str], rows: &[TableRow]);
    /// A TOML document from [`pins_toml`] (plain text).
    fn toml(&mut self, text: &str);
    /// Findings and occurrences by severity, most severe first.
    fn severity_counts(&mut self, counts: &[(Severity, u64, u64)]);
    fn finding(&mut self, entry: &FindingEntry, parts: &FindingParts);
    /// Opens one process (closed with [`Markup::close_section`]): its heading.
    fn open_process(&mut self, p: &ProcessEntry);
}

pub(crate) fn render(mut m: impl Markup, report: &Report) -> String {
    let summary = format!(
        "{} finding(s) in {} process(es); {}",
        report.findings.len(),
        report.processes.len(),
        m.esc(&span(report))
    );
    m.start(&summary);
    self::summary(&mut m, report);
    findings(&mut m, report);
    processes(&mut m, report);
    upstreams(&mut m, report);
    m.open_section(&PINS);
    m.toml(&pins_toml(report));
    m.close_section();
    run(&mut m, report);
    m.finish()
}

fn span(report: &Report) -> String {
    match (report.first, report.last, report.span()) {
        (Some(first), Some(last), Some(d)) => format!("{first} to {last} ({})", duration(d)),
        _ => "no lines".into(),
    }
}

fn summary(m: &mut impl Markup, report: &Report) {
    m.open_section(&SUMMARY);
    let counts: Vec<(Severity, u64, u64)> = Severity::ALL
        .iter()
        .map(|&s| {
            let (n, occurrences) = report.severity_counts(s);
            (s, n, occurrences)
        })
        .collect();
    m.severity_counts(&counts);
    let mut input = format!(
        "{} event(s), {} finding line(s), {} status line(s)",
        report.input.events, report.input.finding_lines, report.input.status
    );
    for (kind, n) in &report.input.unknown_events {
        let _ = write!(
            input,
            "; {n} {} event(s) this report does not know",
            m.name(kind)
        );
    }
    let fields = [
        Field::new(
            "Processes",
            format!(
                "{} ({} MCP server(s) or started by one)",
                report.processes.len(),
                report.mcp_processes()
            ),
        ),
        Field::new(
            "Destinations",
            format!(
                "{} upstream host(s), {} address and port pair(s)",
                report.upstreams.len(),
                report.endpoints
            ),
        ),
        Field::new("Time span", m.esc(&span(report))),
        Field::new("Drops", m.esc(&drops_summary(report))),
        Field::new("Input", input),
    ];
    m.fields(&fields);
    m.close_section();
}

fn findings(m: &mut impl Markup, report: &Report) {
    m.open_section(&FINDINGS);
    if report.findings.is_empty() {
        m.para("No findings.");
    }
    for entry in &report.findings {
        let parts = finding(m, entry);
        m.finding(entry, &parts);
    }
    m.close_section();
}

fn finding(m: &impl Markup, entry: &FindingEntry) -> FindingParts {
    let f = &entry.finding;
    let p = &f.process;
    let process = format!(
        "{} {}",
        m.process(p.pid, m.value(&process_label(&p.comm, p.pid)), p.mcp),
        m.code(&command_line(&p.cmdline))
    );
    let destination = match &f.destination {
        Some(d) => m.value(&destination(d)),
        None => m.muted("none (about the process itself, or a session not tied to a connection)"),
    };
    let seen = if entry.first_seen == entry.last_seen {
        entry.first_seen.to_string()
    } else {
        format!("first {}, last {}", entry.first_seen, entry.last_seen)
    };
    let e = &f.evidence;
    FindingParts {
        title: format!("{} {}", m.code(&f.id), m.value(&f.title)),
        about: vec![
            Field::new("Process", process),
            Field::new("Destination", destination),
            Field::new("Seen", format!("{} time(s); {seen}", entry.count)),
        ],
        evidence: evidence(e)
            .into_iter()
            .map(|(label, value)| Field::new(label, m.value(&value)))
            .collect(),
        credentials: e
            .credentials
            .iter()
            .map(|c| {
                TableRow::new(vec![
                    m.value(&c.kind),
                    m.cell_code(&c.location),
                    format!("{} bytes", c.length),
                    m.cell_code(&c.fingerprint),
                ])
            })
            .collect(),
        certificate: e
            .certificate
            .as_ref()
            .map(|cert| certificate(m, cert, cert.validity_at(entry.first_seen))),
        remediation: m.value(&f.remediation),
    }
}

fn certificate(m: &impl Markup, cert: &Certificate, validity: Option<&str>) -> Vec<Field> {
    certificate_lines(cert, validity)
        .into_iter()
        .map(|(label, value)| Field::new(label, m.value(&value)))
        .collect()
}

fn processes(m: &mut impl Markup, report: &Report) {
    m.open_section(&PROCESSES);
    if report.processes.is_empty() {
        m.para("No process lines.");
    }
    for p in &report.processes {
        process(m, report, p);
    }
    m.close_section();
}

fn process(m: &mut impl Markup, report: &Report, p: &ProcessEntry) {
    let i = &p.info;
    m.open_process(p);
    let opt = |x: Option<u32>| x.map_or("unknown".to_string(), |n| n.to_string());
    let mut fields = vec![
        Field::new(
            "PID",
            format!("{} (parent {}, uid {})", i.pid, opt(i.ppid), opt(i.uid)),
        ),
        Field::new(
            "Executable",
            i.exe.as_deref().map_or("unknown".into(), |exe| m.code(exe)),
        ),
        Field::new(
            "Command line",
            if i.cmdline.is_empty() {
                m.muted("unknown")
            } else {
                m.code(&command_line(&i.cmdline))
            },
        ),
        Field::new(
            "MCP server",
            if i.mcp {
                "yes (or started by one)"
            } else {
                "no"
            }
            .into(),
        ),
    ];
    if let Some(c) = &i.container_id {
        fields.push(Field::new("Container", m.code(c)));
    }
    if let Some(pod) = pod(i) {
        fields.push(Field::new("Pod", m.value(&pod)));
    }
    if !p.reasons.is_empty() {
        let reasons = p.reasons.iter().map(|r| m.value(r)).collect();
        fields.push(Field::many("Watched because", reasons));
    }
    fields.push(Field::new(
        "Activity",
        format!(
            "{} connect(s), {} TLS handshake(s), {} finding(s)",
            p.connects,
            p.handshakes,
            p.findings.values().sum::<u64>()
        ),
    ));
    m.fields(&fields);
    if !p.timeline.is_empty() {
        let rows: Vec<TableRow> = p
            .timeline
            .iter()
            .map(|t| {
                let r = row(report, &t.what);
                let (what, detail) = match r.finding {
                    Some((number, severity)) => {
                        m.timeline_finding(number, severity, m.value(&r.detail))
                    }
                    None => (r.kind.to_string(), m.value(&r.detail)),
                };
                TableRow {
                    cells: vec![
                        m.esc(&clock(report, t.time)),
                        what,
                        m.value(&r.destination),
                        detail,
                    ],
                    finding: r.finding.is_some(),
                }
            })
            .collect();
        m.table(
            "timeline",
            &["Time (UTC)", "What", "Destination", "Detail"],
            &rows,
        );
    }
    if p.omitted > 0 {
        m.note(&format!(
            "{} later entries not shown (the first {} are).",
            p.omitted, MAX_TIMELINE
        ));
    }
    m.close_section();
}

fn upstreams(m: &mut impl Markup, report: &Report) {
    m.open_section(&UPSTREAMS);
    if report.upstreams.is_empty() {
        m.para("No upstream seen.");
    } else {
        m.note(
            "TLS is seen through OpenSSL (libssl, or embedded in Node): \"no TLS handshake seen\" \
             is not proof of plaintext.",
        );
        let rows: Vec<TableRow> = report.upstreams.iter().map(|u| upstream(m, u)).collect();
        m.table(
            "upstreams",
            &[
                "Host",
                "Addresses",
                "Ports",
                "Certificates and verification",
                "Findings",
                "Processes",
            ],
            &rows,
        );
    }
    m.close_section();
}

fn upstream(m: &impl Markup, u: &Upstream) -> TableRow {
    let ports: Vec<(u16, &str, String)> = u
        .ports
        .iter()
        .map(|(port, use_)| {
            let mut detail = vec![format!("{} connect(s)", use_.connects)];
            if use_.failed > 0 {
                detail.push(format!("{} failed", use_.failed));
            }
            if use_.tls_handshakes > 0 {
                detail.push(format!("{} handshake(s)", use_.tls_handshakes));
            }
            (*port, use_.transport(), detail.join(", "))
        })
        .collect();
    let certificates: Vec<CertParts> = u
        .certificates
        .iter()
        .map(|c| CertParts {
            fields: certificate(m, &c.certificate, c.certificate.validity_at(c.first_seen)),
            ports: c
                .ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            verdicts: verdicts(m, &c.verdicts),
        })
        .collect();
    TableRow::new(vec![
        m.cell_code(&u.host),
        m.cell_list(u.addresses.iter().map(|a| m.esc(&a.to_string())).collect()),
        m.ports(&ports),
        m.certificates(&certificates, &verdicts(m, &u.uncertified_verdicts)),
        m.cell_list(
            u.findings
                .iter()
                .map(|(id, n)| format!("{} ×{n}", m.cell_code(id)))
                .collect(),
        ),
        m.cell_list(
            u.processes
                .iter()
                .map(|(pid, comm)| m.process(*pid, m.value(&process_label(comm, *pid)), false))
                .collect(),
        ),
    ])
}

fn verdicts(m: &impl Markup, map: &std::collections::BTreeMap<String, u64>) -> Vec<String> {
    map.iter()
        .map(|(verdict, n)| format!("{} ×{n}", m.value(verdict)))
        .collect()
}

fn run(m: &mut impl Markup, report: &Report) {
    m.open_section(&RUN);
    let mut fields = Vec::new();
    if let Some(ready) = &report.ready {
        fields.push(Field::new("Ready", status(m, ready)));
    }
    match &report.totals {
        Some(t) => {
            let label = if t.final_line {
                "Shutdown"
            } else {
                "Last totals"
            };
            fields.push(Field::new(label, status(m, &t.status)));
            if let Some(totals) = &t.status.totals {
                fields.push(Field::new(
                    "Totals",
                    format!(
                        "{} event(s), {} finding(s), {} target(s){}",
                        totals.events,
                        totals.findings,
                        totals.targets,
                        totals
                            .rss_bytes
                            .map(|b| format!(", agent memory {} MiB", b >> 20))
                            .unwrap_or_default()
                    ),
                ));
                let list = drops(totals);
                let drops = if list.is_empty() {
                    "none".to_string()
                } else {
                    m.esc(&list.join(", "))
                };
                fields.push(Field::new("Drops", drops));
            }
        }
        None => fields.push(Field::new(
            "Shutdown",
            "no shutdown line: the run did not end cleanly, or the file was cut".into(),
        )),
    }
    m.fields(&fields);
    if !report.notices.is_empty() {
        m.heading("Notes from the monitor");
        let rows: Vec<TableRow> = report
            .notices
            .iter()
            .map(|n| {
                TableRow::new(vec![
                    m.esc(&clock(report, n.time)),
                    m.esc(&n.status),
                    n.component
                        .as_deref()
                        .map(|c| m.value(c))
                        .unwrap_or_default(),
                    m.value(&n.message),
                ])
            })
            .collect();
        m.table(
            "notices",
            &["Time (UTC)", "Kind", "About", "Message"],
            &rows,
        );
        if report.notices_omitted > 0 {
            m.note(&format!("{} more not shown.", report.notices_omitted));
        }
    }
    m.close_section();
}

/// A status line's time and message.
fn status(m: &impl Markup, s: &Status) -> String {
    format!("{} {}", m.esc(&s.time.to_string()), m.value(&s.message))
}
