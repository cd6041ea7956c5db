//! The human view: one aligned line per record, newest last, easy to scan in a terminal.
use std::{
    borrow::Cow,
    io::{self, Write},
};

use super::{Event, EventDetail, Record, Status, Timestamp};

/// Whether `c` may be written as it is. Everything a monitored program controls (task names,
/// command lines, HTTP `Host` headers, SNI, library paths) reaches this view, so only characters
/// that print as themselves pass: not control characters (C0, DEL, C1: cursor movement, screen
/// clearing, new lines), not format characters (bidi overrides and isolates such as U+202E,
/// zero-width characters, soft hyphens, tag characters: text that reads differently from what it
/// is), not line or paragraph separators, not spaces other than U+0020, not private-use or
/// unassigned code points.
fn printable(c: char) -> bool {
    if c.is_ascii() {
        return matches!(c, ' '..='~');
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    // The standard library's `Debug` escaping knows the Unicode categories (Cc, Cf, Zl, Zp, Zs,
    // Co, Cn) that do not print as themselves. It also escapes a grapheme extender (a combining
    // accent) when it starts a string, which is harmless in the middle of a name; so ask about
    // `c` after a printable character: the answer is "x" plus `c` exactly when `c` prints.
    let mut buf = [0u8; 8];
    buf[0] = b'x';
    let len = 1 + c.encode_utf8(&mut buf[1..]).len();
    let s = std::str::from_utf8(&buf[..len]).expect("valid UTF-8");
    s.escape_debug().eq(s.chars())
}

/// Every string that comes from outside the agent goes through here before it is written: what
/// does not print as itself is written as an escape (`\n`, `\u{1b}`, `\u{202e}`), so nothing a
/// monitored program controls can drive the terminal, break the one-line-per-record layout, or
/// make a line read differently from what it holds.
pub(crate) fn clean(s: &str) -> Cow<'_, str> {
    if s.chars().all(printable) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if printable(c) {
            out.push(c);
        } else {
            out.extend(c.escape_debug());
            // Should `escape_debug` ever leave a character as it is, write its code point.
            if out.ends_with(c) {
                out.pop();
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
        }
    }
    Cow::Owned(out)
}

fn who(e: &Event) -> String {
    let p = &e.process;
    let mut s = format!("{}[{}]", clean(&p.comm), p.pid);
    if p.mcp {
        s.push_str(" mcp");
    }
    s.push_str(&pod(p));
    s
}

/// ` pod NAMESPACE/NAME` for a process in a Kubernetes pod (` pod UID` when its names are
/// unknown), else nothing.
fn pod(p: &crate::process::ProcessInfo) -> String {
    match &p.pod {
        Some(pod) => match (&pod.namespace, &pod.name) {
            (Some(ns), Some(name)) => format!(" pod {}/{}", clean(ns), clean(name)),
            _ => format!(" pod {}", clean(&pod.uid)),
        },
        None => String::new(),
    }
}

pub fn write(out: &mut Vec<u8>, record: &Record) -> io::Result<()> {
    match record {
        Record::Event(e) => {
            write!(
                out,
                "{}  {:<8} {:<10} {:<28} ",
                Timestamp(e.time),
                "event",
                e.detail.name(),
                who(e)
            )?;
            match &e.detail {
                EventDetail::Connect {
                    socket,
                    destination,
                    result,
                }
                | EventDetail::ConnectResult {
                    socket,
                    destination,
                    result,
                } => {
                    let proto = match socket.protocol {
                        Some(crate::decode::Protocol::Tcp) => "tcp",
                        Some(crate::decode::Protocol::Udp) => "udp",
                        None => "?",
                    };
                    let dest = match destination.ip {
                        std::net::IpAddr::V6(ip) => format!("[{ip}]:{}", destination.port),
                        ip => format!("{ip}:{}", destination.port),
                    };
                    write!(out, "{proto:<4} {dest:<30} {result}")?;
                    if let Some(host) = &destination.hostname {
                        write!(out, " ({})", clean(host))?;
                    }
                }
                EventDetail::TlsHandshake { destination, tls } => {
                    let dest = destination
                        .as_ref()
                        .map(|d| format!("{}:{}", d.ip, d.port))
                        .unwrap_or_else(|| "?".into());
                    let sni = tls["server_name"].as_str().unwrap_or("-");
                    let outcome = tls["verification"]["summary"].as_str().unwrap_or("-");
                    write!(
                        out,
                        "{:<4} {dest:<30} {} ({})",
                        "tls",
                        clean(sni),
                        clean(outcome)
                    )?;
                }
                EventDetail::Target { reason } => {
                    write!(
                        out,
                        "{}  [{}]",
                        clean(&e.process.cmdline.join(" ")),
                        clean(reason)
                    )?;
                }
            }
        }
        Record::Finding(f) => {
            let who = format!(
                "{}[{}]{}",
                clean(&f.process.comm),
                f.process.pid,
                pod(&f.process)
            );
            write!(
                out,
                "{}  {:<8} {:<10} {:<28} {}",
                Timestamp(f.time),
                "FINDING",
                f.id.severity().as_str(),
                who,
                f.id.as_str()
            )?;
            if let Some(d) = &f.destination {
                write!(out, " -> {}:{}", d.ip, d.port)?;
                if let Some(h) = &d.hostname {
                    write!(out, " ({})", clean(h))?;
                }
            }
            if let Some(reason) = f.evidence.get("reason").and_then(|r| r.as_str()) {
                write!(out, ": {}", clean(reason))?;
            }
            // The ready [[pins]] block is multi-line (JSON and reports carry it); one line here.
            if let (Some(pin), false) = (
                f.evidence.get("observed_pin").and_then(|p| p.as_str()),
                f.evidence.get("snippet").is_none_or(|s| s.is_null()),
            ) {
                write!(
                    out,
                    "; its key is {} (`egress-monitor pins` writes the [[pins]] entry)",
                    clean(pin)
                )?;
            }
            if f.count > 1 {
                write!(out, " [x{}]", f.count)?;
            }
        }
        Record::Status(Status {
            time,
            status,
            component,
            message,
            totals,
        }) => {
            let status = serde_json::to_value(status).map_err(io::Error::other)?;
            let status = status.as_str().unwrap_or_default();
            write!(out, "{}  {:<8} {:<10} ", Timestamp(*time), "status", status)?;
            if let Some(c) = component {
                write!(out, "{}: ", clean(c))?;
            }
            write!(out, "{}", clean(message))?;
            if let Some(t) = totals {
                write!(
                    out,
                    " (events {}, findings {}, targets {}, undecodable {}",
                    t.events, t.findings, t.targets, t.decode_errors
                )?;
                for (reason, n) in &t.drops {
                    write!(out, ", {reason} {n}")?;
                }
                write!(out, ")")?;
                if !t.suppressed.is_empty() {
                    write!(out, " suppressed:")?;
                    for (id, n) in &t.suppressed {
                        write!(out, " {} {n}", clean(id))?;
                    }
                }
                if !t.tables.is_empty() {
                    write!(out, " tables:")?;
                    for (table, n) in &t.tables {
                        write!(out, " {} {n}", clean(table))?;
                    }
                }
                if let Some(rss) = t.rss_bytes {
                    write!(out, " rss {} MiB", rss >> 20)?;
                }
            }
        }
    }
    Ok(())
}

/// One row of the closing summary: a finding id for one process and destination.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SummaryKey {
    pub severity: crate::output::finding::Severity,
    pub id: &'static str,
    pub pid: u32,
    pub comm: String,
    /// `host (ip):port`, `ip:port`, or empty.
    pub destination: String,
}

/// The table `run --format text` ends with: findings by process and destination, with how
/// many times each was seen, and the drops. `rows`: counts by key; `more`: rows not kept
/// (the table is bounded).
pub fn write_summary(
    out: &mut impl Write,
    rows: &std::collections::BTreeMap<SummaryKey, u64>,
    more: u64,
    drops: u64,
) -> io::Result<()> {
    let mut by_severity = std::collections::BTreeMap::new();
    for (k, n) in rows {
        *by_severity.entry(k.severity).or_insert(0u64) += n;
    }
    let severities: Vec<String> = by_severity
        .iter()
        .map(|(s, n)| format!("{n} {}", s.as_str()))
        .collect();
    let processes: std::collections::BTreeSet<u32> = rows.keys().map(|k| k.pid).collect();
    writeln!(out)?;
    if rows.is_empty() {
        writeln!(out, "summary: no findings; {drops} event(s) dropped")?;
        return Ok(());
    }
    writeln!(
        out,
        "summary: {} finding(s) ({}) from {} process(es); {drops} event(s) dropped",
        rows.values().sum::<u64>(),
        severities.join(", "),
        processes.len()
    )?;
    let who = |k: &SummaryKey| format!("{}[{}]", clean(&k.comm), k.pid);
    let width_id = rows.keys().map(|k| k.id.len()).max().unwrap_or(0).max(7);
    let width_who = rows.keys().map(|k| who(k).len()).max().unwrap_or(0).max(7);
    let width_dest = rows
        .keys()
        .map(|k| clean(&k.destination).len())
        .max()
        .unwrap_or(0)
        .max(11);
    writeln!(
        out,
        "  {:<8}  {:<width_id$}  {:<width_who$}  {:<width_dest$}  count",
        "severity", "finding", "process", "destination"
    )?;
    for (k, n) in rows {
        writeln!(
            out,
            "  {:<8}  {:<width_id$}  {:<width_who$}  {:<width_dest$}  {n}",
            k.severity.as_str(),
            k.id,
            who(k),
            clean(&k.destination)
        )?;
    }
    if more > 0 {
        writeln!(out, "  ... and {more} more row(s) not kept")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::SystemTime};

    use super::*;
    use crate::{
        decode::{Family, Protocol},
        output::{
            finding::{Finding, FindingId},
            Destination, Socket, StatusKind, Totals,
        },
        process::ProcessInfo,
    };

    /// Terminal controls and text that lies: clear screen, cursor home, carriage return, new
    /// line, an 8-bit CSI, bell, backspace, tab, DEL, NEL, bidi override and isolates, marks,
    /// zero-width space and joiner, BOM, soft hyphen, line and paragraph separators, tag
    /// characters, non-breaking and wide spaces.
    const HOSTILE: &[char] = &[
        '\x1b',
        '\r',
        '\n',
        '\u{9b}',
        '\x07',
        '\x08',
        '\t',
        '\x7f',
        '\0',
        '\u{85}',
        '\u{202e}',
        '\u{202d}',
        '\u{2066}',
        '\u{2067}',
        '\u{2069}',
        '\u{200e}',
        '\u{200f}',
        '\u{61c}',
        '\u{200b}',
        '\u{200d}',
        '\u{feff}',
        '\u{ad}',
        '\u{2028}',
        '\u{2029}',
        '\u{e0041}',
        '\u{e007f}',
        '\u{a0}',
        '\u{3000}',
        '\u{f8ff}',
    ];

    fn hostile(tag: &str) -> String {
        format!(
            "{tag}\x1b[2J\x1b[H\r\n\u{9b}31m\x07\x08\t\x7f\0\u{85}x\u{202e}gnp.exe\u{202d}\
             \u{2066}\u{2067}\u{2069}\u{200e}\u{200f}\u{61c}\u{200b}\u{200d}\u{feff}\u{ad}\
             \u{2028}\u{2029}\u{e0041}\u{e007f}\u{a0}\u{3000}\u{f8ff}end"
        )
    }

    fn render(record: &Record) -> String {
        let mut out = Vec::new();
        write(&mut out, record).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn assert_inert(text: &str) {
        assert_eq!(text.lines().count(), 1, "{text:?}");
        for c in text.chars() {
            assert!(
                !c.is_control() && !HOSTILE.contains(&c) && (c == ' ' || !c.is_whitespace()),
                "{c:?} written raw in {text:?}"
            );
        }
    }

    fn process() -> Arc<ProcessInfo> {
        Arc::new(ProcessInfo {
            pid: 9,
            comm: hostile("comm"),
            exe: Some(hostile("/exe")),
            cmdline: vec![hostile("argv0"), "-c".into(), hostile("argv2")],
            mcp: true,
            pod: Some(crate::process::pod::Pod {
                namespace: Some(hostile("ns")),
                name: Some(hostile("pod")),
                uid: "6c8a0f1e-2b3d-4c5e-9f01-23456789abcd".into(),
                container: Some(hostile("container")),
            }),
            ..Default::default()
        })
    }

    fn destination() -> Destination {
        Destination {
            ip: "10.203.0.2".parse().unwrap(),
            port: 443,
            hostname: Some(hostile("host").into()),
        }
    }

    #[test]
    fn nothing_from_outside_reaches_the_terminal_raw() {
        let time = SystemTime::UNIX_EPOCH;
        let records = [
            Record::Event(Event {
                time,
                process: process(),
                detail: EventDetail::Connect {
                    socket: Socket {
                        family: Family::Ipv4,
                        protocol: Some(Protocol::Tcp),
                        fd: 3,
                    },
                    destination: destination(),
                    result: "ok",
                },
            }),
            Record::Event(Event {
                time,
                process: process(),
                detail: EventDetail::ConnectResult {
                    socket: Socket {
                        family: Family::Ipv6,
                        protocol: Some(Protocol::Tcp),
                        fd: 3,
                    },
                    destination: destination(),
                    result: "ECONNREFUSED",
                },
            }),
            Record::Event(Event {
                time,
                process: process(),
                detail: EventDetail::Target {
                    reason: hostile("reason"),
                },
            }),
            Record::Event(Event {
                time,
                process: process(),
                detail: EventDetail::TlsHandshake {
                    destination: Some(destination()),
                    tls: serde_json::json!({
                        "server_name": hostile("sni"),
                        "verification": {"summary": hostile("summary")},
                    }),
                },
            }),
            Record::Finding(Finding {
                time,
                id: FindingId::PlaintextCredentials,
                process: process(),
                destination: Some(destination()),
                evidence: serde_json::json!({"reason": hostile("why")}),
                count: 2,
            }),
            Record::Status(Status {
                time,
                status: StatusKind::Skipped,
                component: Some(hostile("uprobe:/opt/lib")),
                message: hostile("message"),
                totals: Some(Totals {
                    tables: [(hostile("table"), 3)].into_iter().collect(),
                    rss_bytes: Some(64 << 20),
                    ..Default::default()
                }),
            }),
        ];
        for record in &records {
            let text = render(record);
            assert_inert(&text);
            // What was escaped is still there to read.
            assert!(text.contains(r"\u{1b}[2J"), "{text}");
            assert!(text.contains(r"\u{202e}gnp.exe"), "{text}");
            assert!(text.contains(r"\r\n"), "{text}");
        }
        // Each field of each kind, escaped.
        let all: Vec<String> = records.iter().map(render).collect();
        for tag in [
            "comm",
            "argv0",
            "argv2",
            "ns",
            "pod",
            "host",
            "reason",
            "sni",
            "summary",
            "why",
            "uprobe:/opt/lib",
            "message",
        ] {
            assert!(
                all.iter()
                    .any(|t| t.contains(&format!(r"{tag}\u{{1b}}[2J"))),
                "{tag} not found escaped in {all:#?}"
            );
        }
    }

    #[test]
    fn printable_text_is_written_as_it_is() {
        // Names in other scripts, combining accents (even first), quotes and backslashes print
        // as themselves and stay untouched.
        for s in [
            "café",
            "cafe\u{301}",
            "\u{301}x",
            "日本語",
            "ñandú-mcp",
            r#"say "hi" \ 'there'"#,
            "-w %{http_code}\\n",
        ] {
            assert!(matches!(clean(s), Cow::Borrowed(_)), "{s:?}");
        }
        assert_eq!(clean("a\u{202e}b"), r"a\u{202e}b");
        assert_eq!(clean("a\nb\x1bc\u{85}"), r"a\nb\u{1b}c\u{85}");
        for &c in HOSTILE {
            assert!(!printable(c), "{c:?}");
        }
    }

    #[test]
    fn the_pod_is_named_briefly() {
        let event = |pod: Option<crate::process::pod::Pod>| {
            render(&Record::Event(Event {
                time: SystemTime::UNIX_EPOCH,
                process: Arc::new(ProcessInfo {
                    pid: 9,
                    comm: "node".into(),
                    pod,
                    ..Default::default()
                }),
                detail: EventDetail::Target {
                    reason: "--all".into(),
                },
            }))
        };
        let uid = "6c8a0f1e-2b3d-4c5e-9f01-23456789abcd";
        let named = event(Some(crate::process::pod::Pod {
            namespace: Some("mcp".into()),
            name: Some("github-0".into()),
            uid: uid.into(),
            container: Some("server".into()),
        }));
        assert!(named.contains("node[9] pod mcp/github-0 "), "{named}");
        let unnamed = event(Some(crate::process::pod::Pod {
            namespace: None,
            name: None,
            uid: uid.into(),
            container: None,
        }));
        assert!(
            unnamed.contains(&format!("node[9] pod {uid} ")),
            "{unnamed}"
        );
        assert!(!event(None).contains("pod"));
    }

    #[test]
    fn an_unpinned_high_value_host_names_its_key_on_one_line() {
        let finding = |snippet: serde_json::Value| {
            render(&Record::Finding(crate::output::finding::Finding {
                time: SystemTime::UNIX_EPOCH,
                id: crate::output::finding::FindingId::TlsUnpinnedHighValue,
                process: Arc::new(ProcessInfo::default()),
                destination: None,
                evidence: serde_json::json!({
                    "reason": "api.stripe.com is high-value",
                    "observed_pin": "sha256/AAAA",
                    "snippet": snippet,
                }),
                count: 1,
            }))
        };
        let text = finding(serde_json::json!("[[pins]]\nhost = \"api.stripe.com\"\n"));
        assert_inert(&text);
        assert!(text.contains("its key is sha256/AAAA"), "{text}");
        // Withheld (the chain did not verify here): no key offered.
        assert!(!finding(serde_json::Value::Null).contains("its key"));
    }

    #[test]
    fn control_characters_cannot_break_lines() {
        let process = Arc::new(ProcessInfo {
            pid: 9,
            comm: "evil\x1b[2J".into(),
            cmdline: vec!["python3".into(), "-c".into(), "import os\nprint(1)".into()],
            ..Default::default()
        });
        let record = Record::Event(Event {
            time: SystemTime::UNIX_EPOCH,
            process,
            detail: EventDetail::Target {
                reason: "x\ry".into(),
            },
        });
        let text = render(&record);
        assert!(!text.chars().any(char::is_control), "{text:?}");
        assert!(text.contains("import os\\nprint(1)"));
    }

    #[test]
    fn the_closing_summary_lists_findings_by_process_and_destination() {
        use crate::output::finding::Severity;
        let key = |severity, id, pid, comm: &str, destination: &str| SummaryKey {
            severity,
            id,
            pid,
            comm: comm.into(),
            destination: destination.into(),
        };
        let rows: std::collections::BTreeMap<SummaryKey, u64> = [
            (
                key(
                    Severity::Medium,
                    "TLS_UNTRUSTED_CA",
                    9,
                    "curl",
                    "10.0.0.2:443",
                ),
                1,
            ),
            (
                key(
                    Severity::High,
                    "PLAINTEXT_CREDENTIALS",
                    7,
                    "evil\u{1b}[2J",
                    "api (10.0.0.2:80)",
                ),
                3,
            ),
        ]
        .into_iter()
        .collect();
        let mut out = Vec::new();
        write_summary(&mut out, &rows, 2, 5).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[1],
            "summary: 4 finding(s) (3 HIGH, 1 MEDIUM) from 2 process(es); 5 event(s) dropped"
        );
        assert!(lines[3].contains("HIGH") && lines[3].contains("PLAINTEXT_CREDENTIALS"));
        assert!(lines[3].contains("api (10.0.0.2:80)") && lines[3].ends_with(" 3"));
        assert!(
            lines[3].contains("evil\\u{1b}[2J[7]"),
            "escaped: {}",
            lines[3]
        );
        assert!(lines[4].starts_with("  MEDIUM"), "HIGH first: {text}");
        assert_eq!(lines[5], "  ... and 2 more row(s) not kept");
        let mut out = Vec::new();
        write_summary(&mut out, &Default::default(), 0, 0).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\nsummary: no findings; 0 event(s) dropped\n"
        );
    }
}
