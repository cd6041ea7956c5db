//! The Markdown report (GitHub-flavoured) for tickets and chat: the sections of the HTML page,
//! with GFM tables.
//!
//! Input strings never become markup. In running text and table cells ([`text`]) the characters
//! Markdown reads as syntax are backslash-escaped (emphasis, code, links, HTML, tables, math),
//! and `://` and `www.` are broken so nothing becomes a link. Outside tables, values that read
//! best as code go in code spans ([`code`]) fenced with more backticks than they hold. A code
//! span cannot hold `\|` inside a GFM table cell (the table's pipe unescaping runs first), so
//! there such values are written as escaped text instead.
use std::fmt::Write as _;

use super::{
    certificate_lines, clock, command_line, destination, drops, drops_summary, duration, evidence,
    model::*, pins_toml, pod, process_label, row, visible, Item,
};

/// Input text in running text or a table cell.
pub(crate) fn text(s: &str) -> String {
    let s = visible(s);
    let mut out = String::with_capacity(s.len() + 8);
    for (i, c) in s.char_indices() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '~' | '&' | '$' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            // `https://x` and `www.x` would become links (GFM autolinks).
            ':' if s[i..].starts_with("://") => out.push_str("\\:"),
            '.' if s
                .get(i.saturating_sub(3)..i)
                .is_some_and(|p| p.eq_ignore_ascii_case("www")) =>
            {
                out.push_str("\\.")
            }
            c => out.push(c),
        }
    }
    out
}

/// Input text as a code span (outside tables).
pub(crate) fn code(s: &str) -> String {
    let s = visible(s);
    if s.is_empty() {
        return "(empty)".into();
    }
    let mut longest = 0;
    let mut run = 0;
    for c in s.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    let pad = if s.starts_with(['`', ' ']) || s.ends_with(['`', ' ']) {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{s}{pad}{fence}")
}

/// Input text in a table cell: a code span when it can be one, else escaped text.
pub(crate) fn cell_code(s: &str) -> String {
    if s.contains(['|', '\\']) {
        text(s)
    } else {
        code(s)
    }
}

fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(
        out,
        "|{}",
        header.iter().map(|_| " --- |").collect::<String>()
    );
    for r in rows {
        let _ = writeln!(out, "| {} |", r.join(" | "));
    }
    out.push('\n');
}

pub fn render(report: &Report) -> String {
    let mut m = String::with_capacity(32 * 1024);
    let span = match (report.first, report.last, report.span()) {
        (Some(first), Some(last), Some(d)) => format!("{first} to {last} ({})", duration(d)),
        _ => "no lines".into(),
    };
    let _ = writeln!(
        m,
        "# egress-monitor report\n\n{} finding(s) in {} process(es); {}.\n",
        report.findings.len(),
        report.processes.len(),
        text(&span)
    );

    m.push_str("## Summary\n\n");
    let rows: Vec<Vec<String>> = Severity::ALL
        .iter()
        .map(|s| {
            let (n, occurrences) = report.severity_counts(*s);
            vec![s.as_str().into(), n.to_string(), occurrences.to_string()]
        })
        .collect();
    table(&mut m, &["Severity", "Findings", "Occurrences"], &rows);
    let _ = writeln!(
        m,
        "- **Processes:** {} ({} MCP server(s) or started by one)",
        report.processes.len(),
        report.mcp_processes()
    );
    let _ = writeln!(
        m,
        "- **Destinations:** {} upstream host(s), {} address and port pair(s)",
        report.upstreams.len(),
        report.endpoints
    );
    let _ = writeln!(m, "- **Time span:** {}", text(&span));
    let _ = writeln!(m, "- **Drops:** {}", text(&drops_summary(report)));
    let mut input = format!(
        "{} event(s), {} finding line(s), {} status line(s)",
        report.input.events, report.input.finding_lines, report.input.status
    );
    for (kind, n) in &report.input.unknown_events {
        let _ = write!(
            input,
            "; {n} {} event(s) this report does not know",
            code(kind)
        );
    }
    let _ = writeln!(m, "- **Input:** {input}\n");

    m.push_str("## Findings\n\n");
    if report.findings.is_empty() {
        m.push_str("No findings.\n\n");
    }
    for entry in &report.findings {
        finding(&mut m, entry);
    }

    m.push_str("## Processes\n\n");
    if report.processes.is_empty() {
        m.push_str("No process lines.\n\n");
    }
    for p in &report.processes {
        process(&mut m, report, p);
    }

    upstreams(&mut m, report);

    let _ = writeln!(
        m,
        "## Suggested pins\n\n```toml\n{}```\n",
        pins_toml(report)
    );

    run_notes(&mut m, report);
    let _ = writeln!(
        m,
        "_egress-monitor {} report; secrets appear only as kind, location, length and keyed fingerprint._",
        env!("CARGO_PKG_VERSION")
    );
    m
}

fn finding(m: &mut String, entry: &FindingEntry) {
    let f = &entry.finding;
    let _ = writeln!(
        m,
        "### Finding {}: {} {} {}\n",
        entry.number,
        f.severity.as_str(),
        code(&f.id),
        text(&f.title)
    );
    let _ = writeln!(
        m,
        "- **Process:** {}{} {}",
        text(&process_label(&f.process)),
        if f.process.mcp { " (MCP)" } else { "" },
        code(&command_line(&f.process.cmdline))
    );
    let _ = writeln!(
        m,
        "- **Destination:** {}",
        match &f.destination {
            Some(d) => text(&destination(d)),
            None => "none (about the process itself, or a session not tied to a connection)".into(),
        }
    );
    let seen = if entry.first_seen == entry.last_seen {
        entry.first_seen.to_string()
    } else {
        format!("first {}, last {}", entry.first_seen, entry.last_seen)
    };
    let _ = writeln!(m, "- **Seen:** {} time(s); {seen}", entry.count);
    let mut after_list = String::new();
    for item in evidence(entry) {
        match item {
            Item::Field(label, value) => {
                let _ = writeln!(m, "- **{}:** {}", text(&label), text(&value));
            }
            Item::Credentials(creds) => {
                let rows: Vec<Vec<String>> = creds
                    .iter()
                    .map(|c| {
                        vec![
                            text(&c.kind),
                            cell_code(&c.location),
                            format!("{} bytes", c.length),
                            cell_code(&c.fingerprint),
                        ]
                    })
                    .collect();
                after_list.push('\n');
                table(
                    &mut after_list,
                    &["Credential", "Where", "Length", "Fingerprint"],
                    &rows,
                );
            }
            Item::Certificate(cert, validity) => {
                after_list.push_str("\nCertificate presented:\n\n");
                for (k, v) in certificate_lines(&cert, validity) {
                    let _ = writeln!(after_list, "- **{k}:** {}", text(&v));
                }
            }
        }
    }
    m.push_str(&after_list);
    let _ = writeln!(m, "\n**Remediation:** {}\n", text(&f.remediation));
}

fn process(m: &mut String, report: &Report, p: &ProcessEntry) {
    let i = &p.info;
    let _ = write!(m, "### {} (pid {})", code(&i.comm), i.pid);
    if i.mcp {
        m.push_str(" MCP");
    }
    for (s, n) in &p.findings {
        let _ = write!(m, " {} ×{n}", s.as_str());
    }
    m.push_str("\n\n");
    let opt = |x: Option<u32>| x.map_or("unknown".to_string(), |n| n.to_string());
    let _ = writeln!(
        m,
        "- **PID:** {} (parent {}, uid {})",
        i.pid,
        opt(i.ppid),
        opt(i.uid)
    );
    let _ = writeln!(
        m,
        "- **Executable:** {}",
        i.exe.as_deref().map_or("unknown".into(), code)
    );
    let _ = writeln!(
        m,
        "- **Command line:** {}",
        if i.cmdline.is_empty() {
            "unknown".into()
        } else {
            code(&command_line(&i.cmdline))
        }
    );
    let _ = writeln!(
        m,
        "- **MCP server:** {}",
        if i.mcp {
            "yes (or started by one)"
        } else {
            "no"
        }
    );
    if let Some(c) = &i.container_id {
        let _ = writeln!(m, "- **Container:** {}", code(c));
    }
    if let Some(pod) = pod(i) {
        let _ = writeln!(m, "- **Pod:** {}", text(&pod));
    }
    for r in &p.reasons {
        let _ = writeln!(m, "- **Watched because:** {}", text(r));
    }
    let _ = writeln!(
        m,
        "- **Activity:** {} connect(s), {} TLS handshake(s), {} finding(s)\n",
        p.connects,
        p.handshakes,
        p.findings.values().sum::<u64>()
    );
    if !p.timeline.is_empty() {
        let rows: Vec<Vec<String>> = p
            .timeline
            .iter()
            .map(|t| {
                let r = row(report, &t.what);
                let (what, detail) = match r.finding {
                    Some((number, severity)) => (
                        format!("**{} finding {number}**", severity.as_str()),
                        text(&r.detail),
                    ),
                    None => (r.kind.to_string(), text(&r.detail)),
                };
                vec![
                    text(&clock(report, t.time)),
                    what,
                    text(&r.destination),
                    detail,
                ]
            })
            .collect();
        table(m, &["Time (UTC)", "What", "Destination", "Detail"], &rows);
    }
    if p.omitted > 0 {
        let _ = writeln!(
            m,
            "{} later entries not shown (the first {} are).\n",
            p.omitted, MAX_TIMELINE
        );
    }
}

fn verdicts(map: &std::collections::BTreeMap<String, u64>) -> String {
    map.iter()
        .map(|(verdict, n)| format!("{} ×{n}", text(verdict)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn upstreams(m: &mut String, report: &Report) {
    m.push_str("## Upstreams\n\n");
    if report.upstreams.is_empty() {
        m.push_str("No upstream seen.\n\n");
        return;
    }
    m.push_str(
        "TLS is seen through OpenSSL (libssl, or embedded in Node): \"no TLS handshake seen\" \
         is not proof of plaintext.\n\n",
    );
    let rows: Vec<Vec<String>> = report
        .upstreams
        .iter()
        .map(|u| {
            let addresses: Vec<String> = u.addresses.iter().map(|a| a.to_string()).collect();
            let ports: Vec<String> = u
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
                    format!("{port} {} ({})", use_.transport(), detail.join(", "))
                })
                .collect();
            let mut certs: Vec<String> = u
                .certificates
                .iter()
                .map(|c| {
                    let mut parts: Vec<String> =
                        certificate_lines(&c.certificate, c.certificate.validity_at(c.first_seen))
                            .iter()
                            .map(|(k, v)| format!("{k}: {}", text(v)))
                            .collect();
                    parts.push(format!("verdicts: {}", verdicts(&c.verdicts)));
                    parts.join("; ")
                })
                .collect();
            if !u.uncertified_verdicts.is_empty() {
                certs.push(format!(
                    "no certificate captured: {}",
                    verdicts(&u.uncertified_verdicts)
                ));
            }
            let findings: Vec<String> = u
                .findings
                .iter()
                .map(|(id, n)| format!("{} ×{n}", cell_code(id)))
                .collect();
            let processes: Vec<String> = u
                .processes
                .iter()
                .map(|(pid, comm)| text(&format!("{comm}[{pid}]")))
                .collect();
            vec![
                cell_code(&u.host),
                addresses.join(", "),
                ports.join("; "),
                if certs.is_empty() {
                    "none".into()
                } else {
                    certs.join(" — ")
                },
                findings.join(", "),
                processes.join(", "),
            ]
        })
        .collect();
    table(
        m,
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

fn run_notes(m: &mut String, report: &Report) {
    m.push_str("## Run\n\n");
    if let Some(ready) = &report.ready {
        let _ = writeln!(m, "- **Ready:** {} {}", ready.time, text(&ready.message));
    }
    match &report.totals {
        Some(t) => {
            let _ = writeln!(
                m,
                "- **{}:** {} {}",
                if t.final_line {
                    "Shutdown"
                } else {
                    "Last totals"
                },
                t.status.time,
                text(&t.status.message)
            );
            if let Some(totals) = &t.status.totals {
                let _ = writeln!(
                    m,
                    "- **Totals:** {} event(s), {} finding(s), {} target(s){}",
                    totals.events,
                    totals.findings,
                    totals.targets,
                    totals
                        .rss_bytes
                        .map(|b| format!(", agent memory {} MiB", b >> 20))
                        .unwrap_or_default()
                );
                let list = drops(totals);
                let _ = writeln!(
                    m,
                    "- **Drops:** {}",
                    if list.is_empty() {
                        "none".to_string()
                    } else {
                        text(&list.join(", "))
                    }
                );
            }
        }
        None => m.push_str(
            "- **Shutdown:** no shutdown line: the run did not end cleanly, or the file was cut\n",
        ),
    }
    m.push('\n');
    if !report.notices.is_empty() {
        m.push_str("Notes from the monitor:\n\n");
        let rows: Vec<Vec<String>> = report
            .notices
            .iter()
            .map(|n| {
                vec![
                    text(&clock(report, n.time)),
                    text(&n.status),
                    n.component.as_deref().map(text).unwrap_or_default(),
                    text(&n.message),
                ]
            })
            .collect();
        table(m, &["Time (UTC)", "Kind", "About", "Message"], &rows);
        if report.notices_omitted > 0 {
            let _ = writeln!(m, "{} more not shown.\n", report.notices_omitted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::model::tests::*;

    #[test]
    fn report_markdown_text_escapes_markup() {
        assert_eq!(
            text("a|b `c` *d* _e_ [f](g) <h> ~i~ & $j$ \\ #k !l"),
            r"a\|b \`c\` \*d\* \_e\_ \[f\](g) \<h\> \~i\~ \& \$j\$ \\ \#k \!l"
        );
        assert_eq!(text("see https://evil.test/x"), r"see https\://evil.test/x");
        assert_eq!(text("www.evil.test"), r"www\.evil.test");
        assert_eq!(text("a\u{202e}b\nc"), r"a\\u{202e}b\\nc");
    }

    #[test]
    fn report_markdown_code_spans_hold_any_backticks() {
        assert_eq!(code("ls -l"), "`ls -l`");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(code("``x"), "``` ``x ```");
        assert_eq!(code("x|y"), "`x|y`", "pipes are literal outside tables");
        assert_eq!(code(""), "(empty)");
        assert_eq!(cell_code("x|y"), r"x\|y", "a table cell escapes its pipes");
        assert_eq!(cell_code(r"a\|b"), r"a\\\|b");
        assert_eq!(cell_code("plain"), "`plain`");
    }

    /// Split a GFM table row the way cmark-gfm does: a backslash escapes the next character,
    /// an unescaped pipe ends a cell.
    fn cells(row: &str) -> Vec<String> {
        let inner = row.trim().trim_start_matches('|');
        let mut cells = vec![String::new()];
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    cells.last_mut().unwrap().push(c);
                    if let Some(next) = chars.next() {
                        cells.last_mut().unwrap().push(next);
                    }
                }
                '|' => cells.push(String::new()),
                c => cells.last_mut().unwrap().push(c),
            }
        }
        if cells.last().is_some_and(|c| c.trim().is_empty()) {
            cells.pop();
        }
        cells
    }

    /// The text outside code spans (a run of N backticks up to the next run of exactly N).
    fn outside_code_spans(md: &str) -> String {
        let chars: Vec<char> = md.chars().collect();
        let mut out = String::new();
        let mut i = 0;
        while i < chars.len() {
            let escaped = i > 0 && chars[i - 1] == '\\';
            if chars[i] != '`' || escaped {
                out.push(chars[i]);
                i += 1;
                continue;
            }
            let n = chars[i..].iter().take_while(|c| **c == '`').count();
            let mut j = i + n;
            let close = loop {
                if j >= chars.len() {
                    break None;
                }
                let m = chars[j..].iter().take_while(|c| **c == '`').count();
                if m == n {
                    break Some(j + m);
                }
                j += m.max(1);
            };
            match close {
                Some(end) => i = end,
                None => {
                    out.extend(&chars[i..i + n]);
                    i += n;
                }
            }
        }
        out
    }

    #[test]
    fn report_markdown_tables_keep_their_columns_whatever_the_input() {
        let hostile = "a|b\\|c`|`\n| --- |<script>";
        let process = serde_json::json!({"pid": 5, "ppid": 1, "uid": 0, "comm": hostile,
            "exe": hostile, "cmdline": [hostile], "container_id": null, "pod": null, "mcp": false});
        let report = Report::build([
            line(
                serde_json::json!({"schema": "egress-monitor/1", "type": "finding",
                "time": "2026-11-26T10:00:01Z", "id": hostile, "severity": "LOW", "title": hostile,
                "process": process,
                "destination": {"ip": "10.203.0.2", "port": 80, "hostname": hostile},
                "evidence": {"reason": hostile, "credentials": [{"kind": hostile, "location": hostile,
                    "length": 3, "fingerprint": hostile}]},
                "remediation": hostile, "count": 1}),
            ),
            line(
                serde_json::json!({"schema": "egress-monitor/1", "type": "event",
                "time": "2026-11-26T10:00:00Z", "event": "connect", "process": process,
                "socket": {"family": "ipv4", "protocol": hostile, "fd": 3},
                "destination": {"ip": "10.203.0.2", "port": 80, "hostname": hostile}, "result": hostile}),
            ),
        ]);
        let md = render(&report);
        let prose = outside_code_spans(&md);
        // No HTML, no link: every `<` and `[` outside code spans is escaped.
        for (i, _) in prose.match_indices(['<', '[']) {
            let backslashes = prose[..i].chars().rev().take_while(|c| *c == '\\').count();
            assert!(
                backslashes % 2 == 1,
                "markup outside code spans at {i}: {}",
                &prose[i.saturating_sub(40)..]
            );
        }
        let mut width = None;
        let mut tables = 0;
        for l in md.lines() {
            if !l.starts_with('|') {
                width = None;
                continue;
            }
            let n = cells(l).len();
            match width {
                None => {
                    width = Some(n);
                    tables += 1;
                }
                Some(w) => assert_eq!(n, w, "a row with {n} cells in a table of {w}: {l}"),
            }
        }
        assert!(
            tables >= 4,
            "summary, credentials, timeline, upstreams: {md}"
        );
    }

    #[test]
    fn report_markdown_has_the_sections_and_every_finding() {
        let report = Report::build([
            a_connect("2026-11-26T10:00:00Z", 7, "curl", "api.test", 8080),
            a_finding(
                "2026-11-26T10:00:01Z",
                "PLAINTEXT_CREDENTIALS",
                "HIGH",
                7,
                8080,
                2,
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
            a_shutdown("2026-11-26T10:00:05Z", &[]),
        ]);
        let md = render(&report);
        for heading in [
            "## Summary",
            "## Findings",
            "## Processes",
            "## Upstreams",
            "## Suggested pins",
            "## Run",
        ] {
            assert!(md.contains(&format!("\n{heading}\n")), "{heading}");
        }
        assert!(md.contains("### Finding 1: HIGH `PLAINTEXT_CREDENTIALS`"));
        assert!(md.contains("### Finding 2: MEDIUM `TLS_UNTRUSTED_CA`"));
        assert!(md.contains("| HIGH | 1 | 2 |"));
        assert!(md.contains(
            "| bearer | `header:Authorization` | 24 bytes | `hmac-sha256:0123456789ab` |"
        ));
        assert!(md.contains("- **Drops:** none (from the shutdown line)"));
        assert!(md.contains("```toml\n") && md.contains(SPKI_A));
    }
}
