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
    document::{
        self, CertParts, Field, FindingParts, Markup, Section, TableRow, CREDENTIAL_COLUMNS,
        SECRETS, TITLE,
    },
    model::*,
    visible,
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

pub fn render(report: &Report) -> String {
    document::render(
        Markdown {
            out: String::with_capacity(32 * 1024),
        },
        report,
    )
}

struct Markdown {
    out: String,
}

impl Markdown {
    /// List items, one per value, with no blank line after them.
    fn list(&mut self, fields: &[Field]) {
        for f in fields {
            for value in &f.values {
                let _ = writeln!(self.out, "- **{}:** {value}", text(&f.label));
            }
        }
    }
}

impl Markup for Markdown {
    fn esc(&self, s: &str) -> String {
        text(s)
    }

    fn value(&self, s: &str) -> String {
        text(s)
    }

    fn code(&self, s: &str) -> String {
        code(s)
    }

    fn cell_code(&self, s: &str) -> String {
        cell_code(s)
    }

    fn name(&self, s: &str) -> String {
        code(s)
    }

    fn muted(&self, text: &str) -> String {
        text.into()
    }

    fn process(&self, _pid: u32, label: String, mcp: bool) -> String {
        if mcp {
            label + " (MCP)"
        } else {
            label
        }
    }

    fn timeline_finding(
        &self,
        number: usize,
        severity: Severity,
        detail: String,
    ) -> (String, String) {
        (
            format!("**{} finding {number}**", severity.as_str()),
            detail,
        )
    }

    fn cell_list(&self, values: Vec<String>) -> String {
        values.join(", ")
    }

    fn ports(&self, ports: &[(u16, &str, String)]) -> String {
        ports
            .iter()
            .map(|(port, transport, detail)| format!("{port} {transport} ({detail})"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn certificates(&self, certificates: &[CertParts], uncertified: &[String]) -> String {
        let mut certs: Vec<String> = certificates
            .iter()
            .map(|c| {
                let mut parts: Vec<String> = c
                    .fields
                    .iter()
                    .map(|f| format!("{}: {}", text(&f.label), f.values.join(", ")))
                    .collect();
                parts.push(format!("verdicts: {}", c.verdicts.join(", ")));
                parts.join("; ")
            })
            .collect();
        if !uncertified.is_empty() {
            certs.push(format!(
                "no certificate captured: {}",
                uncertified.join(", ")
            ));
        }
        if certs.is_empty() {
            "none".into()
        } else {
            certs.join(" — ")
        }
    }

    fn start(&mut self, summary: &str) {
        let _ = writeln!(self.out, "# {TITLE}\n\n{summary}.\n");
    }

    fn finish(mut self) -> String {
        let _ = writeln!(
            self.out,
            "_egress-monitor {} report; {SECRETS}._",
            env!("CARGO_PKG_VERSION")
        );
        self.out
    }

    fn open_section(&mut self, section: &Section) {
        let _ = writeln!(self.out, "## {}\n", section.title);
    }

    fn close_section(&mut self) {}

    fn para(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}\n");
    }

    fn note(&mut self, text: &str) {
        self.para(text);
    }

    fn heading(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}:\n");
    }

    fn fields(&mut self, fields: &[Field]) {
        self.list(fields);
        self.out.push('\n');
    }

    fn table(&mut self, _class: &str, columns: &[&str], rows: &[TableRow]) {
        let _ = writeln!(self.out, "| {} |", columns.join(" | "));
        let _ = writeln!(
            self.out,
            "|{}",
            columns.iter().map(|_| " --- |").collect::<String>()
        );
        for r in rows {
            let _ = writeln!(self.out, "| {} |", r.cells.join(" | "));
        }
        self.out.push('\n');
    }

    fn toml(&mut self, text: &str) {
        let _ = writeln!(self.out, "```toml\n{text}```\n");
    }

    fn severity_counts(&mut self, counts: &[(Severity, u64, u64)]) {
        let rows: Vec<TableRow> = counts
            .iter()
            .map(|(s, n, occurrences)| TableRow {
                cells: vec![s.as_str().into(), n.to_string(), occurrences.to_string()],
                finding: false,
            })
            .collect();
        self.table("", &["Severity", "Findings", "Occurrences"], &rows);
    }

    /// The finding's fields and its evidence make one list; the credentials and the
    /// certificate follow it.
    fn finding(&mut self, entry: &FindingEntry, parts: &FindingParts) {
        let _ = writeln!(
            self.out,
            "### Finding {}: {} {}\n",
            entry.number,
            entry.finding.severity.as_str(),
            parts.title
        );
        self.list(&parts.about);
        self.list(&parts.evidence);
        if !parts.credentials.is_empty() {
            self.out.push('\n');
            self.table("", &CREDENTIAL_COLUMNS, &parts.credentials);
        }
        if let Some(certificate) = &parts.certificate {
            self.out.push_str("\nCertificate presented:\n\n");
            self.list(certificate);
        }
        let _ = writeln!(self.out, "\n**Remediation:** {}\n", parts.remediation);
    }

    fn open_process(&mut self, p: &ProcessEntry) {
        let i = &p.info;
        let _ = write!(self.out, "### {} (pid {})", code(&i.comm), i.pid);
        if i.mcp {
            self.out.push_str(" MCP");
        }
        for (s, n) in &p.findings {
            let _ = write!(self.out, " {} ×{n}", s.as_str());
        }
        self.out.push_str("\n\n");
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
        let md = render(&a_hostile_run(hostile));
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
        let md = render(&a_run(&[]));
        for s in &document::SECTIONS {
            assert!(md.contains(&format!("\n## {}\n", s.title)), "{}", s.title);
        }
        assert!(md.contains("### Finding 1: HIGH `PLAINTEXT_CREDENTIALS`"));
        assert!(md.contains("### Finding 2: MEDIUM `TLS_UNTRUSTED_CA`"));
        assert!(md.contains("| HIGH | 1 | 3 |"));
        assert!(md.contains(
            "| bearer | `header:Authorization` | 24 bytes | `hmac-sha256:0123456789ab` |"
        ));
        assert!(md.contains("- **Drops:** none (from the shutdown line)"));
        assert!(md.contains("```toml\n") && md.contains(SPKI_A));
    }
}
