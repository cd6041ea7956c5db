//! `egress-monitor doctor`: what this kernel and machine support, what will and won't work, why.
use std::io::Write;

use crate::{output::Format, probes::caps};

pub fn run(format: Format) -> anyhow::Result<bool> {
    let capabilities = caps::check();
    let ready = caps::missing_required(&capabilities).is_empty();
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            let doc = serde_json::json!({
                "schema": crate::output::SCHEMA,
                "kernel": caps::kernel_release(),
                "ready": ready,
                "capabilities": capabilities,
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
                if !c.available && !c.fix.is_empty() {
                    writeln!(out, "         {:<width$}  fix: {}", "", c.fix)?;
                }
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
