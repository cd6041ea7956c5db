//! The HTML report: one self-contained page. Inline CSS, no script, no image, no font, no link
//! outside the page; a Content-Security-Policy of `default-src 'none'` says so to the browser
//! too, so even a page that was tampered with loads and runs nothing.
//!
//! Every string from the input goes through [`esc`] (character references for `& < > " '`,
//! after control and bidi characters became visible escapes) and, in running text, inside
//! `<bdi>` so right-to-left text cannot reorder what surrounds it. Attributes are always
//! double-quoted, and ids are built from numbers only.
use std::fmt::Write as _;

use super::{
    certificate_lines, clock, command_line, destination, drops, drops_summary, duration, evidence,
    model::*, pins_toml, pod, process_label, row, visible, Item,
};

/// Text from the input, escaped for HTML text and double-quoted attribute values.
pub(crate) fn esc(s: &str) -> String {
    let s = visible(s);
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An input value in running text: escaped and isolated.
fn v(s: &str) -> String {
    format!("<bdi>{}</bdi>", esc(s))
}

/// An input value shown as code.
fn code(s: &str) -> String {
    format!("<code><bdi>{}</bdi></code>", esc(s))
}

fn sev_class(s: Severity) -> &'static str {
    match s {
        Severity::High => "high",
        Severity::Medium => "medium",
        Severity::Low => "low",
        Severity::Info => "info",
    }
}

fn badge(s: Severity) -> String {
    format!(
        "<span class=\"badge {}\">{}</span>",
        sev_class(s),
        s.as_str()
    )
}

const STYLE: &str = r#"
:root{--high:#b42318;--medium:#c4540a;--low:#8a6100;--info:#175cd3;--border:#d0d5dd;--muted:#475467;--soft:#f9fafb}
*{box-sizing:border-box}
body{margin:0;font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#101828;background:#fff}
header{background:#101828;color:#fff;padding:20px 32px}
header h1{margin:0 0 4px;font-size:22px}
header p{margin:0 0 8px;color:#d0d5dd}
nav a{color:#fff;margin-right:18px;text-decoration:none;border-bottom:1px solid #667085}
main{padding:4px 32px 48px;max-width:1500px}
h2{margin:32px 0 8px;border-bottom:2px solid var(--border);padding-bottom:4px;font-size:19px}
h3{margin:8px 0;font-size:16px}
h4{margin:12px 0 4px;font-size:14px;color:var(--muted)}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:12px 0}
.card{border:1px solid var(--border);border-left:6px solid var(--muted);border-radius:6px;padding:8px 16px;min-width:160px;background:var(--soft)}
.card .n{font-size:30px;font-weight:700;line-height:1.2}
.card.high{border-left-color:var(--high)}.card.high .n{color:var(--high)}
.card.medium{border-left-color:var(--medium)}.card.medium .n{color:var(--medium)}
.card.low{border-left-color:var(--low)}.card.low .n{color:var(--low)}
.card.info{border-left-color:var(--info)}.card.info .n{color:var(--info)}
table{border-collapse:collapse;width:100%;margin:8px 0}
th,td{border:1px solid var(--border);padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f2f4f7;font-weight:600}
td,dd{overflow-wrap:anywhere}
.timeline td:nth-child(1),.timeline td:nth-child(2),.upstreams td:nth-child(5),.upstreams td:nth-child(6){white-space:nowrap}
.timeline td:nth-child(3),.upstreams td:nth-child(1){min-width:12em}
.upstreams td:nth-child(3){min-width:14em}.upstreams td:nth-child(4){min-width:24em}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace;font-size:12.5px}
code{background:#f2f4f7;border-radius:3px;padding:0 3px}
pre{background:var(--soft);border:1px solid var(--border);border-radius:6px;padding:12px;overflow:auto;white-space:pre-wrap}
pre code{background:none;padding:0}
.badge{display:inline-block;padding:0 8px;border-radius:10px;color:#fff;font-weight:600;font-size:12px;vertical-align:1px}
.badge.high{background:var(--high)}.badge.medium{background:var(--medium)}
.badge.low{background:var(--low)}.badge.info{background:var(--info)}.badge.mcp{background:#344054}
article.finding{border:1px solid var(--border);border-left:6px solid var(--muted);border-radius:6px;padding:4px 16px 8px;margin:12px 0}
article.finding.high{border-left-color:var(--high)}article.finding.medium{border-left-color:var(--medium)}
article.finding.low{border-left-color:var(--low)}article.finding.info{border-left-color:var(--info)}
section.process{border-top:1px solid var(--border);margin-top:16px;padding-top:4px}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:6px 0}
dl.kv dt{color:var(--muted);font-weight:600}
dl.kv dd{margin:0}
ul.plain{margin:0;padding-left:18px}
tr.finding td{background:#fef3f2}
.muted{color:var(--muted)}
.remediation{background:#ecfdf3;border:1px solid #abefc6;border-radius:6px;padding:6px 12px;margin:4px 0}
footer{color:var(--muted);padding:16px 32px;border-top:1px solid var(--border)}
@media print{header{background:none;color:#000}header p{color:#000}nav{display:none}}
"#;

pub fn render(report: &Report) -> String {
    let mut h = String::with_capacity(64 * 1024);
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    h.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'\">\n",
    );
    h.push_str("<meta name=\"referrer\" content=\"no-referrer\">\n");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    h.push_str("<title>egress-monitor report</title>\n<style>");
    h.push_str(STYLE);
    h.push_str("</style>\n</head>\n<body>\n");
    header(&mut h, report);
    h.push_str("<main>\n");
    summary(&mut h, report);
    findings(&mut h, report);
    processes(&mut h, report);
    upstreams(&mut h, report);
    pins(&mut h, report);
    run_notes(&mut h, report);
    h.push_str("</main>\n");
    let _ = writeln!(
        h,
        "<footer>egress-monitor {} report. This page loads nothing and runs no script; \
         secrets appear only as kind, location, length and keyed fingerprint.</footer>",
        env!("CARGO_PKG_VERSION")
    );
    h.push_str("</body>\n</html>\n");
    h
}

fn span(report: &Report) -> String {
    match (report.first, report.last, report.span()) {
        (Some(first), Some(last), Some(d)) => {
            format!("{first} to {last} ({})", duration(d))
        }
        _ => "no lines".into(),
    }
}

fn header(h: &mut String, report: &Report) {
    let total: usize = report.findings.len();
    let _ = writeln!(
        h,
        "<header>\n<h1>egress-monitor report</h1>\n<p>{total} finding(s) in {} process(es); {}</p>\n\
         <nav><a href=\"#summary\">Summary</a><a href=\"#findings\">Findings</a>\
         <a href=\"#processes\">Processes</a><a href=\"#upstreams\">Upstreams</a>\
         <a href=\"#pins\">Pins</a><a href=\"#run\">Run</a></nav>\n</header>",
        report.processes.len(),
        span(report)
    );
}

fn summary(h: &mut String, report: &Report) {
    h.push_str("<section id=\"summary\">\n<h2>Summary</h2>\n<div class=\"cards\">\n");
    for s in Severity::ALL {
        let (n, occurrences) = report.severity_counts(s);
        let _ = writeln!(
            h,
            "<div class=\"card {}\" data-severity=\"{}\"><div class=\"n\">{n}</div><div>{}</div>\
             <div class=\"muted\">{occurrences} occurrence(s)</div></div>",
            sev_class(s),
            s.as_str(),
            s.as_str()
        );
    }
    h.push_str("</div>\n<dl class=\"kv\">\n");
    let mut kv = |k: &str, v: String| {
        let _ = writeln!(h, "<dt>{k}</dt><dd>{v}</dd>");
    };
    kv(
        "Processes",
        format!(
            "{} ({} MCP server(s) or started by one)",
            report.processes.len(),
            report.mcp_processes()
        ),
    );
    kv(
        "Destinations",
        format!(
            "{} upstream host(s), {} address and port pair(s)",
            report.upstreams.len(),
            report.endpoints
        ),
    );
    kv("Time span", esc(&span(report)));
    kv("Drops", esc(&drops_summary(report)));
    let mut input = format!(
        "{} event(s), {} finding line(s), {} status line(s)",
        report.input.events, report.input.finding_lines, report.input.status
    );
    for (kind, n) in &report.input.unknown_events {
        let _ = write!(
            input,
            "; {n} {} event(s) this report does not know",
            v(kind)
        );
    }
    kv("Input", input);
    h.push_str("</dl>\n</section>\n");
}

fn findings(h: &mut String, report: &Report) {
    h.push_str("<section id=\"findings\">\n<h2>Findings</h2>\n");
    if report.findings.is_empty() {
        h.push_str("<p>No findings.</p>\n");
    }
    for entry in &report.findings {
        finding(h, entry);
    }
    h.push_str("</section>\n");
}

fn finding(h: &mut String, entry: &FindingEntry) {
    let f = &entry.finding;
    let _ = writeln!(
        h,
        "<article class=\"finding {}\" id=\"finding-{}\" data-finding=\"{}\" data-pid=\"{}\">",
        sev_class(f.severity),
        entry.number,
        esc(&f.id),
        f.process.pid
    );
    let _ = writeln!(
        h,
        "<h3>{} {} {}</h3>",
        badge(f.severity),
        code(&f.id),
        v(&f.title)
    );
    h.push_str("<dl class=\"kv\">\n");
    let _ = writeln!(
        h,
        "<dt>Process</dt><dd><a href=\"#process-{}\">{}</a>{} {}</dd>",
        f.process.pid,
        v(&process_label(&f.process)),
        if f.process.mcp {
            " <span class=\"badge mcp\">MCP</span>"
        } else {
            ""
        },
        code(&command_line(&f.process.cmdline))
    );
    let _ = writeln!(
        h,
        "<dt>Destination</dt><dd>{}</dd>",
        match &f.destination {
            Some(d) => v(&destination(d)),
            None => "<span class=\"muted\">none (about the process itself, or a session not tied to a connection)</span>".into(),
        }
    );
    let seen = if entry.first_seen == entry.last_seen {
        format!("{}", entry.first_seen)
    } else {
        format!("first {}, last {}", entry.first_seen, entry.last_seen)
    };
    let _ = writeln!(h, "<dt>Seen</dt><dd>{} time(s); {seen}</dd>", entry.count);
    h.push_str("</dl>\n<h4>Evidence</h4>\n");
    let items = evidence(entry);
    if items.is_empty() {
        h.push_str("<p class=\"muted\">No evidence recorded.</p>\n");
    }
    let mut open = false;
    for item in items {
        match item {
            Item::Field(label, value) => {
                if !open {
                    h.push_str("<dl class=\"kv\">\n");
                    open = true;
                }
                let _ = writeln!(h, "<dt>{}</dt><dd>{}</dd>", esc(&label), v(&value));
            }
            Item::Credentials(creds) => {
                if open {
                    h.push_str("</dl>\n");
                    open = false;
                }
                h.push_str(
                    "<table class=\"credentials\"><thead><tr><th>Credential</th><th>Where</th>\
                     <th>Length</th><th>Fingerprint</th></tr></thead><tbody>\n",
                );
                for c in creds {
                    let _ = writeln!(
                        h,
                        "<tr><td>{}</td><td>{}</td><td>{} bytes</td><td>{}</td></tr>",
                        v(&c.kind),
                        code(&c.location),
                        c.length,
                        code(&c.fingerprint)
                    );
                }
                h.push_str("</tbody></table>\n");
            }
            Item::Certificate(cert, validity) => {
                if open {
                    h.push_str("</dl>\n");
                    open = false;
                }
                h.push_str("<h4>Certificate presented</h4>\n<dl class=\"kv\">\n");
                for (k, val) in certificate_lines(&cert, validity) {
                    let _ = writeln!(h, "<dt>{}</dt><dd>{}</dd>", esc(&k), v(&val));
                }
                h.push_str("</dl>\n");
            }
        }
    }
    if open {
        h.push_str("</dl>\n");
    }
    let _ = writeln!(
        h,
        "<h4>Remediation</h4>\n<p class=\"remediation\">{}</p>\n</article>",
        v(&f.remediation)
    );
}

fn processes(h: &mut String, report: &Report) {
    h.push_str("<section id=\"processes\">\n<h2>Processes</h2>\n");
    if report.processes.is_empty() {
        h.push_str("<p>No process lines.</p>\n");
    }
    for p in &report.processes {
        process(h, report, p);
    }
    h.push_str("</section>\n");
}

fn process(h: &mut String, report: &Report, p: &ProcessEntry) {
    let i = &p.info;
    let _ = write!(
        h,
        "<section class=\"process\" id=\"process-{}\" data-pid=\"{}\">\n<h3>{} <span class=\"muted\">pid {}</span>",
        i.pid,
        i.pid,
        v(&i.comm),
        i.pid
    );
    if i.mcp {
        h.push_str(" <span class=\"badge mcp\">MCP</span>");
    }
    for (s, n) in &p.findings {
        let _ = write!(h, " {} ×{n}", badge(*s));
    }
    h.push_str("</h3>\n<dl class=\"kv\">\n");
    let opt = |x: Option<u32>| x.map_or("unknown".to_string(), |n| n.to_string());
    let _ = writeln!(
        h,
        "<dt>PID</dt><dd>{} (parent {}, uid {})</dd>",
        i.pid,
        opt(i.ppid),
        opt(i.uid)
    );
    let _ = writeln!(
        h,
        "<dt>Executable</dt><dd>{}</dd>",
        i.exe.as_deref().map_or("unknown".into(), code)
    );
    let _ = writeln!(
        h,
        "<dt>Command line</dt><dd>{}</dd>",
        if i.cmdline.is_empty() {
            "<span class=\"muted\">unknown</span>".into()
        } else {
            code(&command_line(&i.cmdline))
        }
    );
    let _ = writeln!(
        h,
        "<dt>MCP server</dt><dd>{}</dd>",
        if i.mcp {
            "yes (or started by one)"
        } else {
            "no"
        }
    );
    if let Some(c) = &i.container_id {
        let _ = writeln!(h, "<dt>Container</dt><dd>{}</dd>", code(c));
    }
    if let Some(pod) = pod(i) {
        let _ = writeln!(h, "<dt>Pod</dt><dd>{}</dd>", v(&pod));
    }
    if !p.reasons.is_empty() {
        let reasons: Vec<String> = p.reasons.iter().map(|r| v(r)).collect();
        let _ = writeln!(
            h,
            "<dt>Watched because</dt><dd>{}</dd>",
            reasons.join("<br>")
        );
    }
    let _ = writeln!(
        h,
        "<dt>Activity</dt><dd>{} connect(s), {} TLS handshake(s), {} finding(s)</dd>\n</dl>",
        p.connects,
        p.handshakes,
        p.findings.values().sum::<u64>()
    );
    if !p.timeline.is_empty() {
        h.push_str(
            "<table class=\"timeline\"><thead><tr><th>Time (UTC)</th><th>What</th>\
             <th>Destination</th><th>Detail</th></tr></thead><tbody>\n",
        );
        for t in &p.timeline {
            let r = row(report, &t.what);
            let (class, what, detail) = match r.finding {
                Some((number, severity)) => (
                    " class=\"finding\"",
                    format!("{} finding", badge(severity)),
                    format!("<a href=\"#finding-{number}\">{}</a>", v(&r.detail)),
                ),
                None => ("", r.kind.to_string(), v(&r.detail)),
            };
            let _ = writeln!(
                h,
                "<tr{class}><td>{}</td><td>{what}</td><td>{}</td><td>{detail}</td></tr>",
                esc(&clock(report, t.time)),
                v(&r.destination)
            );
        }
        h.push_str("</tbody></table>\n");
    }
    if p.omitted > 0 {
        let _ = writeln!(
            h,
            "<p class=\"muted\">{} later entries not shown (the first {} are).</p>",
            p.omitted, MAX_TIMELINE
        );
    }
    h.push_str("</section>\n");
}

fn upstreams(h: &mut String, report: &Report) {
    h.push_str("<section id=\"upstreams\">\n<h2>Upstreams</h2>\n");
    if report.upstreams.is_empty() {
        h.push_str("<p>No upstream seen.</p>\n</section>\n");
        return;
    }
    h.push_str(
        "<p class=\"muted\">TLS is seen through OpenSSL (libssl, or embedded in Node): \
         \"no TLS handshake seen\" is not proof of plaintext.</p>\n\
         <table class=\"upstreams\"><thead><tr><th>Host</th><th>Addresses</th><th>Ports</th>\
         <th>Certificates and verification</th><th>Findings</th><th>Processes</th></tr></thead><tbody>\n",
    );
    for u in &report.upstreams {
        let _ = write!(h, "<tr><td>{}</td><td>", code(&u.host));
        let addrs: Vec<String> = u.addresses.iter().map(|a| esc(&a.to_string())).collect();
        h.push_str(&addrs.join("<br>"));
        h.push_str("</td><td><ul class=\"plain\">");
        for (port, use_) in &u.ports {
            let mut detail = vec![format!("{} connect(s)", use_.connects)];
            if use_.failed > 0 {
                detail.push(format!("{} failed", use_.failed));
            }
            if use_.tls_handshakes > 0 {
                detail.push(format!("{} handshake(s)", use_.tls_handshakes));
            }
            let _ = write!(
                h,
                "<li>{port}: <strong>{}</strong> <span class=\"muted\">({})</span></li>",
                use_.transport(),
                detail.join(", ")
            );
        }
        h.push_str("</ul></td><td>");
        if u.certificates.is_empty() && u.uncertified_verdicts.is_empty() {
            h.push_str("<span class=\"muted\">none</span>");
        }
        for c in &u.certificates {
            h.push_str("<dl class=\"kv\">");
            for (k, val) in
                certificate_lines(&c.certificate, c.certificate.validity_at(c.first_seen))
            {
                let _ = write!(h, "<dt>{}</dt><dd>{}</dd>", esc(&k), v(&val));
            }
            let ports: Vec<String> = c.ports.iter().map(u16::to_string).collect();
            if !ports.is_empty() {
                let _ = write!(h, "<dt>On port(s)</dt><dd>{}</dd>", ports.join(", "));
            }
            let _ = write!(
                h,
                "<dt>Verdicts</dt><dd>{}</dd></dl>",
                verdicts(&c.verdicts)
            );
        }
        if !u.uncertified_verdicts.is_empty() {
            let _ = write!(
                h,
                "<p>No certificate captured: {}</p>",
                verdicts(&u.uncertified_verdicts)
            );
        }
        h.push_str("</td><td>");
        let ids: Vec<String> = u
            .findings
            .iter()
            .map(|(id, n)| format!("{} ×{n}", code(id)))
            .collect();
        h.push_str(&ids.join("<br>"));
        h.push_str("</td><td>");
        let procs: Vec<String> = u
            .processes
            .iter()
            .map(|(pid, comm)| {
                format!(
                    "<a href=\"#process-{pid}\">{}</a>",
                    v(&format!("{comm}[{pid}]"))
                )
            })
            .collect();
        h.push_str(&procs.join("<br>"));
        h.push_str("</td></tr>\n");
    }
    h.push_str("</tbody></table>\n</section>\n");
}

fn verdicts(map: &std::collections::BTreeMap<String, u64>) -> String {
    map.iter()
        .map(|(verdict, n)| format!("{} ×{n}", v(verdict)))
        .collect::<Vec<_>>()
        .join("; ")
}

fn pins(h: &mut String, report: &Report) {
    let _ = writeln!(
        h,
        "<section id=\"pins\">\n<h2>Suggested pins</h2>\n<pre><code>{}</code></pre>\n</section>",
        esc(&pins_toml(report))
    );
}

fn run_notes(h: &mut String, report: &Report) {
    h.push_str("<section id=\"run\">\n<h2>Run</h2>\n<dl class=\"kv\">\n");
    if let Some(ready) = &report.ready {
        let _ = writeln!(
            h,
            "<dt>Ready</dt><dd>{} {}</dd>",
            esc(&ready.time.to_string()),
            v(&ready.message)
        );
    }
    match &report.totals {
        Some(t) => {
            let _ = writeln!(
                h,
                "<dt>{}</dt><dd>{} {}</dd>",
                if t.final_line {
                    "Shutdown"
                } else {
                    "Last totals"
                },
                esc(&t.status.time.to_string()),
                v(&t.status.message)
            );
            if let Some(totals) = &t.status.totals {
                let _ = writeln!(
                    h,
                    "<dt>Totals</dt><dd>{} event(s), {} finding(s), {} target(s){}</dd>",
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
                    h,
                    "<dt>Drops</dt><dd>{}</dd>",
                    if list.is_empty() {
                        "none".to_string()
                    } else {
                        esc(&list.join(", "))
                    }
                );
            }
        }
        None => h.push_str("<dt>Shutdown</dt><dd>no shutdown line: the run did not end cleanly, or the file was cut</dd>\n"),
    }
    h.push_str("</dl>\n");
    if !report.notices.is_empty() {
        h.push_str(
            "<h3>Notes from the monitor</h3>\n<table class=\"notices\"><thead><tr><th>Time (UTC)</th>\
             <th>Kind</th><th>About</th><th>Message</th></tr></thead><tbody>\n",
        );
        for n in &report.notices {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&clock(report, n.time)),
                esc(&n.status),
                n.component.as_deref().map(v).unwrap_or_default(),
                v(&n.message)
            );
        }
        h.push_str("</tbody></table>\n");
        if report.notices_omitted > 0 {
            let _ = writeln!(
                h,
                "<p class=\"muted\">{} more not shown.</p>",
                report.notices_omitted
            );
        }
    }
    h.push_str("</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::model::tests::*;

    /// A command line, SNI and evidence full of what a hostile program would write.
    const HOSTILE: &str = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>\u{202e}gnp.exe\u{2066}\u{1b}[2J&amp;";

    fn hostile_report() -> Report {
        let process = serde_json::json!({"pid": 66, "ppid": 1, "uid": 0, "comm": HOSTILE,
            "exe": HOSTILE, "cmdline": ["node", HOSTILE, "--x=`|`"], "container_id": HOSTILE,
            "pod": {"namespace": HOSTILE, "name": "n", "uid": "u", "container": HOSTILE}, "mcp": true});
        Report::build([
            line(
                serde_json::json!({"schema": "egress-monitor/1", "type": "event",
                "time": "2026-11-26T10:00:00Z", "event": "target", "process": process, "reason": HOSTILE}),
            ),
            line(
                serde_json::json!({"schema": "egress-monitor/1", "type": "finding",
                "time": "2026-11-26T10:00:01Z", "id": HOSTILE, "severity": "HIGH", "title": HOSTILE,
                "process": process,
                "destination": {"ip": "10.203.0.2", "port": 80, "hostname": HOSTILE},
                "evidence": {"reason": HOSTILE, "credentials": [{"kind": HOSTILE, "location": HOSTILE,
                    "length": 3, "fingerprint": HOSTILE}], "request": {"method": HOSTILE,
                    "path": HOSTILE, "host": HOSTILE}, HOSTILE: HOSTILE,
                    "certificate": {"subject": HOSTILE, "issuer": HOSTILE, "sans": [HOSTILE],
                    "not_before": HOSTILE, "not_after": HOSTILE, "serial": HOSTILE,
                    "spki_sha256": HOSTILE, "self_signed": true}},
                "remediation": HOSTILE, "count": 1}),
            ),
            line(
                serde_json::json!({"schema": "egress-monitor/1", "type": "event",
                "time": "2026-11-26T10:00:02Z", "event": HOSTILE, "process": process}),
            ),
            line(
                serde_json::json!({"schema": "egress-monitor/1", "type": "status",
                "time": "2026-11-26T10:00:03Z", "status": "warning", "component": HOSTILE,
                "message": HOSTILE}),
            ),
        ])
    }

    /// The tags of a page (escaped text has no `<`): name and attributes, values unquoted.
    /// Panics on an attribute value that is not double-quoted.
    fn tags(page: &str) -> Vec<(String, Vec<(String, String)>)> {
        page.split('<')
            .skip(1)
            .map(|rest| {
                let name: String = rest
                    .trim_start_matches('/')
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '!')
                    .collect();
                let mut attrs = Vec::new();
                let mut s = rest.trim_start_matches('/')[name.len()..].trim_start();
                if name == "!DOCTYPE" {
                    return (name, attrs);
                }
                while !s.starts_with('>') {
                    let end = s.find(['=', ' ', '>']).unwrap();
                    let attr = s[..end].to_string();
                    s = &s[end..];
                    let value = match s.strip_prefix("=\"") {
                        Some(v) => {
                            let close = v.find('"').unwrap();
                            s = &v[close + 1..];
                            v[..close].to_string()
                        }
                        None => {
                            assert!(!s.starts_with('='), "unquoted value of {attr}: <{rest}");
                            String::new()
                        }
                    };
                    attrs.push((attr, value));
                    s = s.trim_start();
                }
                (name, attrs)
            })
            .collect()
    }

    #[test]
    fn report_html_escapes_everything_from_the_input() {
        let page = render(&hostile_report());
        assert!(!page.contains("<script"), "no script element");
        assert!(!page.contains("<img"), "no image element");
        assert!(
            !page.contains('\u{202e}') && !page.contains('\u{2066}'),
            "no bidi control"
        );
        assert!(!page.contains('\u{1b}'), "no escape character");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&gt;&lt;img src=x"));
        assert!(page.contains("\\u{202e}gnp.exe\\u{2066}\\u{1b}[2J&amp;amp;"));
        // Every tag and attribute is one the renderer writes, every value double-quoted:
        // nothing loads, nothing runs.
        for (name, attrs) in tags(&page) {
            assert!(
                [
                    "!DOCTYPE", "html", "head", "meta", "title", "style", "body", "header", "h1",
                    "h2", "h3", "h4", "p", "nav", "a", "main", "section", "div", "dl", "dt", "dd",
                    "span", "bdi", "code", "pre", "table", "thead", "tbody", "tr", "th", "td",
                    "ul", "li", "strong", "br", "article", "footer"
                ]
                .contains(&name.as_str()),
                "unexpected tag <{name}>"
            );
            for (attr, value) in attrs {
                assert!(
                    [
                        "lang",
                        "charset",
                        "http-equiv",
                        "content",
                        "name",
                        "class",
                        "id",
                        "href",
                        "data-finding",
                        "data-pid",
                        "data-severity"
                    ]
                    .contains(&attr.as_str()),
                    "unexpected attribute {attr} in <{name}>"
                );
                if attr == "href" {
                    assert!(value.starts_with('#'), "a link out of the page: {value}");
                }
            }
        }
        assert!(!page.contains("url("), "no CSS resource");
        assert!(page.contains("default-src 'none'"));
    }

    #[test]
    fn report_html_shows_the_sections_and_the_evidence() {
        let report = Report::build([
            a_connect("2026-11-26T10:00:00Z", 7, "curl", "api.test", 8080),
            a_finding(
                "2026-11-26T10:00:01Z",
                "PLAINTEXT_CREDENTIALS",
                "HIGH",
                7,
                8080,
                3,
            ),
            a_handshake(
                "2026-11-26T10:00:02Z",
                7,
                "api.test",
                8443,
                SPKI_A,
                "verified",
            ),
            a_shutdown("2026-11-26T10:00:05Z", &[("ringbuf_full", 2)]),
        ]);
        let page = render(&report);
        for id in [
            "summary",
            "findings",
            "processes",
            "upstreams",
            "pins",
            "run",
        ] {
            assert!(page.contains(&format!("<section id=\"{id}\">")), "{id}");
        }
        assert!(page.contains("data-finding=\"PLAINTEXT_CREDENTIALS\" data-pid=\"7\""));
        for text in [
            "hmac-sha256:0123456789ab",
            "header:Authorization",
            "24 bytes",
            "GET /v1 (Host: api.test)",
            "fix it",
            "ringbuf_full: 2 (from the shutdown line)",
            "3 time(s)",
            "CN=test CA",
            "2026-11-25T00:00:00Z to 2026-11-28T00:00:00Z",
            SPKI_A,
            "host = &quot;api.test&quot;",
            "8080: <strong>plaintext</strong>",
            "8443: <strong>TLS</strong>",
            "<bdi>verified</bdi> ×1",
            "<a href=\"#finding-1\">",
        ] {
            assert!(page.contains(text), "{text} missing");
        }
    }
}
