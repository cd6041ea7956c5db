//! `egress-monitor doctor`: what this kernel and machine support, what will and won't work, why.
use std::io::Write;

use serde::Serialize;

use crate::{
    detect::{cmdline::CmdlineRedactor, redact::Fingerprinter},
    output::Format,
    probes::caps::{self, Capability, KernelVersion},
    process::{discover::Discovery, mcp::McpMatcher, ProcFs},
};

/// A process `run --mcp` would watch (or a candidate it would not), and why.
#[derive(Debug, Serialize)]
struct McpServer {
    pid: u32,
    comm: String,
    /// Secrets redacted.
    cmdline: Vec<String>,
    reason: String,
}

/// The MCP servers on this host by the rules of `run --mcp`, and the candidates: processes an
/// MCP host started over stdio that nothing else marks as MCP servers.
fn mcp_servers(matcher: &McpMatcher) -> (Vec<McpServer>, Vec<McpServer>) {
    let procfs = ProcFs::default();
    let redactor = CmdlineRedactor::new(Fingerprinter::random(), false);
    let mut discovery = Discovery::default();
    let own = std::process::id();
    let (mut servers, mut candidates) = (Vec::new(), Vec::new());
    let mut pids = procfs.pids();
    pids.sort_unstable();
    for pid in pids.into_iter().filter(|&p| p != own) {
        let Some(mut read) = procfs.load(pid, &redactor) else {
            continue;
        };
        read.info.discovered = discovery.examine(&procfs, &read.info);
        let info = read.info;
        let server = |reason: String| McpServer {
            pid,
            comm: info.comm.clone(),
            cmdline: info.cmdline.clone(),
            reason,
        };
        if let Some(reason) = matcher.reason(&info) {
            servers.push(server(reason));
        } else if let Some(host) = &info.discovered.host {
            candidates.push(server(host.clone()));
        }
    }
    (servers, candidates)
}

/// The line under a capability that gives the first kernel providing it and how this one
/// compares, so a missing capability reads as "upgrade the kernel" or as "configure it".
fn kernel_line(c: &Capability, running: Option<KernelVersion>) -> String {
    let Some(min) = c.min_kernel else {
        return format!("min kernel: {}", c.min_kernel_for);
    };
    let mut line = format!("min kernel: {min} ({})", c.min_kernel_for);
    if let Some(running) = running {
        line.push_str(&match (c.kernel_meets_min, c.available) {
            (Some(true), true) => format!("; this kernel {running} is recent enough"),
            (Some(true), false) => format!(
                "; this kernel {running} is recent enough, so its configuration or the \
                 permissions are the cause"
            ),
            (Some(false), true) => {
                format!("; this kernel {running} is older, but the check above passed")
            }
            (Some(false), false) => {
                format!("; this kernel {running} is older: upgrade the kernel")
            }
            (None, _) => String::new(),
        });
    }
    line
}

pub fn run(format: Format, mcp_patterns: &[String]) -> anyhow::Result<bool> {
    let matcher = McpMatcher::new(mcp_patterns)?;
    let capabilities = caps::check();
    let (servers, candidates) = mcp_servers(&matcher);
    let ready = caps::missing_required(&capabilities).is_empty();
    let running = KernelVersion::running();
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            let doc = serde_json::json!({
                "schema": crate::output::SCHEMA,
                "kernel": caps::kernel_release(),
                "kernel_version": running,
                "ready": ready,
                "capabilities": capabilities,
                "mcp_servers": servers,
                "mcp_candidates": candidates,
            });
            writeln!(out, "{doc}")?;
        }
        Format::Text => {
            writeln!(
                out,
                "egress-monitor doctor: kernel {}",
                caps::kernel_release()
            )?;
            let width = capabilities.iter().map(|c| c.name.len()).max().unwrap_or(0);
            for c in &capabilities {
                let mark = match (c.available, c.required) {
                    (true, _) => "ok  ",
                    (false, true) => "FAIL",
                    (false, false) => "no  ",
                };
                writeln!(out, "  [{mark}] {:<width$}  {}", c.name, c.detail)?;
                writeln!(out, "         {:<width$}  needed for: {}", "", c.needed_for)?;
                writeln!(out, "         {:<width$}  {}", "", kernel_line(c, running))?;
                if !c.available && !c.fix.is_empty() {
                    writeln!(out, "         {:<width$}  fix: {}", "", c.fix)?;
                }
            }
            let list = |out: &mut std::io::StdoutLock, list: &[McpServer]| {
                for s in list {
                    writeln!(out, "  pid {} {}: {}", s.pid, s.comm, s.reason)?;
                    writeln!(out, "      {}", s.cmdline.join(" "))?;
                }
                std::io::Result::Ok(())
            };
            if servers.is_empty() {
                writeln!(
                    out,
                    "MCP servers running now: none found (`run --mcp` also watches those that \
                     start later; `--mcp-pattern` adds your own)"
                )?;
            } else {
                writeln!(
                    out,
                    "MCP servers running now ({}, watched by `run --mcp`):",
                    servers.len()
                )?;
                list(&mut out, &servers)?;
            }
            if !candidates.is_empty() {
                writeln!(
                    out,
                    "candidates, not watched (an MCP host started them over stdio, nothing else \
                     says MCP; `--mcp-pattern` or `--pid` watches them):"
                )?;
                list(&mut out, &candidates)?;
            }
            if ready {
                writeln!(
                    out,
                    "ready: `egress-monitor run` can trace connects on this machine"
                )?;
            } else {
                writeln!(out, "NOT READY: fix the FAIL lines above")?;
            }
        }
    }
    Ok(ready)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::caps::since;

    fn row(
        available: bool,
        min: Option<KernelVersion>,
        running: &str,
    ) -> (Capability, Option<KernelVersion>) {
        let running = KernelVersion::parse(running);
        let c = Capability {
            name: "ring buffer",
            available,
            required: true,
            detail: String::new(),
            needed_for: "",
            fix: "",
            min_kernel: min,
            min_kernel_for: "BPF_MAP_TYPE_RINGBUF",
            kernel_meets_min: running.zip(min).map(|(r, m)| r >= m),
        };
        (c, running)
    }

    #[test]
    fn kernel_line_compares_with_the_minimum() {
        let line = |available, running| {
            let (c, running) = row(available, Some(since::RINGBUF), running);
            kernel_line(&c, running)
        };
        assert_eq!(
            line(true, "6.18.44-fc-v669"),
            "min kernel: 5.8 (BPF_MAP_TYPE_RINGBUF); this kernel 6.18.44 is recent enough"
        );
        assert!(line(false, "5.4.0-100-generic")
            .ends_with("this kernel 5.4 is older: upgrade the kernel"));
        assert!(line(false, "6.1.0").contains("configuration or the permissions"));
        assert!(line(true, "4.18.0-553.el8").contains("older, but the check above passed"));
        assert_eq!(
            line(true, "weird"),
            "min kernel: 5.8 (BPF_MAP_TYPE_RINGBUF)"
        );
        let (c, running) = row(true, None, "6.1.0");
        assert_eq!(kernel_line(&c, running), "min kernel: BPF_MAP_TYPE_RINGBUF");
    }
}
