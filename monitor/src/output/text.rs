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
fn clean(s: &str) -> Cow<'_, str> {
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
    s
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
            let who = format!("{}[{}]", clean(&f.process.comm), f.process.pid);
            let sev = serde_json::to_value(f.id.severity()).map_err(io::Error::other)?;
            write!(
                out,
                "{}  {:<8} {:<10} {:<28} {}",
                Timestamp(f.time),
                "FINDING",
                sev.as_str().unwrap_or_default(),
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
}
