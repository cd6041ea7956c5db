//! The human view: one aligned line per record, newest last, easy to scan in a terminal.
use std::{
    borrow::Cow,
    io::{self, Write},
};

use super::{Event, EventDetail, Record, Status, Timestamp};

/// Control characters (a newline in a command line, an escape sequence in a task name) must not
/// break the one-line-per-record layout or drive the terminal.
fn clean(s: &str) -> Cow<'_, str> {
    if s.chars().any(char::is_control) {
        Cow::Owned(s.chars().flat_map(char::escape_debug).collect())
    } else {
        Cow::Borrowed(s)
    }
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
                        write!(out, " ({host})")?;
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
                write!(out, "{c}: ")?;
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
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::SystemTime};

    use super::*;
    use crate::process::ProcessInfo;

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
        let mut out = Vec::new();
        write(&mut out, &record).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.chars().any(char::is_control), "{text:?}");
        assert!(text.contains("import os\\nprint(1)"));
    }
}
