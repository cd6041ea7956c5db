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
    document::{
        self, CertParts, Field, FindingParts, Markup, Section, TableRow, CREDENTIAL_COLUMNS,
        SECRETS, SECTIONS, TITLE,
    },
    model::*,
    visible,
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
    document::render(
        Html {
            out: String::with_capacity(64 * 1024),
        },
        report,
    )
}

const MCP_BADGE: &str = " <span class=\"badge mcp\">MCP</span>";

struct Html {
    out: String,
}

impl Markup for Html {
    fn esc(&self, s: &str) -> String {
        esc(s)
    }

    fn value(&self, s: &str) -> String {
        v(s)
    }

    fn code(&self, s: &str) -> String {
        code(s)
    }

    fn cell_code(&self, s: &str) -> String {
        code(s)
    }

    fn name(&self, s: &str) -> String {
        v(s)
    }

    fn muted(&self, text: &str) -> String {
        format!("<span class=\"muted\">{text}</span>")
    }

    fn process(&self, pid: u32, label: String, mcp: bool) -> String {
        let badge = if mcp { MCP_BADGE } else { "" };
        format!("<a href=\"#process-{pid}\">{label}</a>{badge}")
    }

    fn timeline_finding(
        &self,
        number: usize,
        severity: Severity,
        detail: String,
    ) -> (String, String) {
        (
            format!("{} finding", badge(severity)),
            format!("<a href=\"#finding-{number}\">{detail}</a>"),
        )
    }

    fn cell_list(&self, values: Vec<String>) -> String {
        values.join("<br>")
    }

    fn ports(&self, ports: &[(u16, &str, String)]) -> String {
        let mut s = String::from("<ul class=\"plain\">");
        for (port, transport, detail) in ports {
            let _ = write!(
                s,
                "<li>{port}: <strong>{transport}</strong> <span class=\"muted\">({detail})</span></li>"
            );
        }
        s.push_str("</ul>");
        s
    }

    fn certificates(&self, certificates: &[CertParts], uncertified: &[String]) -> String {
        let mut s = String::new();
        if certificates.is_empty() && uncertified.is_empty() {
            s.push_str(&self.muted("none"));
        }
        for c in certificates {
            s.push_str("<dl class=\"kv\">");
            for f in &c.fields {
                let _ = write!(
                    s,
                    "<dt>{}</dt><dd>{}</dd>",
                    esc(&f.label),
                    f.values.join("<br>")
                );
            }
            if !c.ports.is_empty() {
                let _ = write!(s, "<dt>On port(s)</dt><dd>{}</dd>", c.ports);
            }
            let _ = write!(
                s,
                "<dt>Verdicts</dt><dd>{}</dd></dl>",
                c.verdicts.join("; ")
            );
        }
        if !uncertified.is_empty() {
            let _ = write!(
                s,
                "<p>No certificate captured: {}</p>",
                uncertified.join("; ")
            );
        }
        s
    }

    fn start(&mut self, summary: &str) {
        let h = &mut self.out;
        h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
        h.push_str(
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'\">\n",
        );
        h.push_str("<meta name=\"referrer\" content=\"no-referrer\">\n");
        h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
        let _ = write!(h, "<title>{TITLE}</title>\n<style>");
        h.push_str(STYLE);
        h.push_str("</style>\n</head>\n<body>\n");
        let _ = write!(h, "<header>\n<h1>{TITLE}</h1>\n<p>{summary}</p>\n<nav>");
        for s in &SECTIONS {
            let _ = write!(h, "<a href=\"#{}\">{}</a>", s.id, s.short);
        }
        h.push_str("</nav>\n</header>\n<main>\n");
    }

    fn finish(mut self) -> String {
        let _ = writeln!(
            self.out,
            "</main>\n<footer>egress-monitor {} report. This page loads nothing and runs no script; \
             {SECRETS}.</footer>\n</body>\n</html>",
            env!("CARGO_PKG_VERSION")
        );
        self.out
    }

    fn open_section(&mut self, section: &Section) {
        let _ = writeln!(
            self.out,
            "<section id=\"{}\">\n<h2>{}</h2>",
            section.id, section.title
        );
    }

    fn close_section(&mut self) {
        self.out.push_str("</section>\n");
    }

    fn para(&mut self, text: &str) {
        let _ = writeln!(self.out, "<p>{text}</p>");
    }

    fn note(&mut self, text: &str) {
        let _ = writeln!(self.out, "<p class=\"muted\">{text}</p>");
    }

    fn heading(&mut self, text: &str) {
        let _ = writeln!(self.out, "<h3>{text}</h3>");
    }

    fn fields(&mut self, fields: &[Field]) {
        self.out.push_str("<dl class=\"kv\">\n");
        for f in fields {
            let _ = writeln!(
                self.out,
                "<dt>{}</dt><dd>{}</dd>",
                esc(&f.label),
                f.values.join("<br>")
            );
        }
        self.out.push_str("</dl>\n");
    }

    fn table(&mut self, class: &str, columns: &[&str], rows: &[TableRow]) {
        let h = &mut self.out;
        let _ = write!(h, "<table class=\"{class}\"><thead><tr>");
        for c in columns {
            let _ = write!(h, "<th>{c}</th>");
        }
        h.push_str("</tr></thead><tbody>\n");
        for r in rows {
            h.push_str(if r.finding {
                "<tr class=\"finding\">"
            } else {
                "<tr>"
            });
            for c in &r.cells {
                let _ = write!(h, "<td>{c}</td>");
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</tbody></table>\n");
    }

    fn toml(&mut self, text: &str) {
        let _ = writeln!(self.out, "<pre><code>{}</code></pre>", esc(text));
    }

    fn severity_counts(&mut self, counts: &[(Severity, u64, u64)]) {
        self.out.push_str("<div class=\"cards\">\n");
        for (s, n, occurrences) in counts {
            let _ = writeln!(
                self.out,
                "<div class=\"card {}\" data-severity=\"{}\"><div class=\"n\">{n}</div><div>{}</div>\
                 <div class=\"muted\">{occurrences} occurrence(s)</div></div>",
                sev_class(*s),
                s.as_str(),
                s.as_str()
            );
        }
        self.out.push_str("</div>\n");
    }

    fn finding(&mut self, entry: &FindingEntry, parts: &FindingParts) {
        let f = &entry.finding;
        let _ = writeln!(
            self.out,
            "<article class=\"finding {}\" id=\"finding-{}\" data-finding=\"{}\" data-pid=\"{}\">\n\
             <h3>{} {}</h3>",
            sev_class(f.severity),
            entry.number,
            esc(&f.id),
            f.process.pid,
            badge(f.severity),
            parts.title
        );
        self.fields(&parts.about);
        self.out.push_str("<h4>Evidence</h4>\n");
        if parts.evidence.is_empty() && parts.credentials.is_empty() && parts.certificate.is_none()
        {
            self.note("No evidence recorded.");
        }
        if !parts.evidence.is_empty() {
            self.fields(&parts.evidence);
        }
        if !parts.credentials.is_empty() {
            self.table("credentials", &CREDENTIAL_COLUMNS, &parts.credentials);
        }
        if let Some(certificate) = &parts.certificate {
            self.out.push_str("<h4>Certificate presented</h4>\n");
            self.fields(certificate);
        }
        let _ = writeln!(
            self.out,
            "<h4>Remediation</h4>\n<p class=\"remediation\">{}</p>\n</article>",
            parts.remediation
        );
    }

    fn open_process(&mut self, p: &ProcessEntry) {
        let i = &p.info;
        let _ = write!(
            self.out,
            "<section class=\"process\" id=\"process-{}\" data-pid=\"{}\">\n<h3>{} <span class=\"muted\">pid {}</span>",
            i.pid,
            i.pid,
            v(&i.comm),
            i.pid
        );
        if i.mcp {
            self.out.push_str(MCP_BADGE);
        }
        for (s, n) in &p.findings {
            let _ = write!(self.out, " {} ×{n}", badge(*s));
        }
        self.out.push_str("</h3>\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::model::tests::*;

    /// A command line, SNI and evidence full of what a hostile program would write.
    const HOSTILE: &str = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>\u{202e}gnp.exe\u{2066}\u{1b}[2J&amp;";

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
        let page = render(&a_hostile_run(HOSTILE));
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
        let page = render(&a_run(&[("ringbuf_full", 2)]));
        for s in &SECTIONS {
            assert!(
                page.contains(&format!("<section id=\"{}\">\n<h2>{}</h2>", s.id, s.title)),
                "{}",
                s.id
            );
            assert!(
                page.contains(&format!("<a href=\"#{}\">", s.id)),
                "{}",
                s.id
            );
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
