//! BPF statistics: per-program run time and run count of the agent's programs, read from the
//! kernel (`BPF_OBJ_GET_INFO_BY_FD` through aya's `loaded_programs()`) while
//! `kernel.bpf_stats_enabled` is on.
//!
//! The kernel only counts while stats are enabled, and counting costs each program run two clock
//! reads: the bench turns them on for dedicated runs only, never during the paired runs whose
//! ratios it reports.
use std::collections::{BTreeMap, HashSet};

use anyhow::Context as _;
use aya::programs::loaded_programs;
use serde_json::{json, Value};

const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// `kernel.bpf_stats_enabled = 1` for its lifetime; the old value is put back on drop.
pub struct StatsEnabled {
    old: String,
}

impl StatsEnabled {
    pub fn on() -> anyhow::Result<Self> {
        let old = std::fs::read_to_string(SYSCTL)
            .with_context(|| format!("reading {SYSCTL}"))?
            .trim()
            .to_string();
        std::fs::write(SYSCTL, "1").with_context(|| format!("writing 1 to {SYSCTL}"))?;
        Ok(Self { old })
    }
}

impl Drop for StatsEnabled {
    fn drop(&mut self) {
        let _ = std::fs::write(SYSCTL, &self.old);
    }
}

/// One loaded program's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    pub id: u32,
    /// The kernel's name (the first 15 bytes of the program's function name).
    pub name: String,
    pub kind: String,
    pub run_time_ns: u64,
    pub run_count: u64,
}

/// Every program loaded on the host (programs that vanish while being listed are skipped).
pub fn loaded() -> Vec<Program> {
    loaded_programs()
        .filter_map(Result::ok)
        .map(|p| Program {
            id: p.id(),
            name: p.name_as_str().unwrap_or("?").to_string(),
            kind: format!("{:?}", p.program_type()),
            run_time_ns: p.run_time().as_nanos() as u64,
            run_count: p.run_count(),
        })
        .collect()
}

/// The ids of the programs loaded now.
pub fn ids() -> HashSet<u32> {
    loaded().into_iter().map(|p| p.id).collect()
}

/// The programs of `now` that were not loaded `before` (the agent's, when taken around its start).
pub fn new_since(before: &HashSet<u32>) -> Vec<Program> {
    loaded()
        .into_iter()
        .filter(|p| !before.contains(&p.id))
        .collect()
}

/// What each program of `start` did until `end` (programs gone by `end` are left out).
pub fn delta(start: &[Program], end: &[Program]) -> Vec<Program> {
    let end: BTreeMap<u32, &Program> = end.iter().map(|p| (p.id, p)).collect();
    start
        .iter()
        .filter_map(|s| {
            let e = end.get(&s.id)?;
            Some(Program {
                run_time_ns: e.run_time_ns.saturating_sub(s.run_time_ns),
                run_count: e.run_count.saturating_sub(s.run_count),
                ..s.clone()
            })
        })
        .collect()
}

fn ns_per_run(p: &Program) -> Option<f64> {
    (p.run_count > 0).then(|| p.run_time_ns as f64 / p.run_count as f64)
}

/// The counters of one run of a load: per program, and per request of the load.
pub fn json(programs: &[Program], requests: u64) -> Value {
    let total_ns: u64 = programs.iter().map(|p| p.run_time_ns).sum();
    let total_runs: u64 = programs.iter().map(|p| p.run_count).sum();
    json!({
        "requests": requests,
        "run_time_ns": total_ns,
        "run_count": total_runs,
        "ns_per_request": (requests > 0).then(|| total_ns as f64 / requests as f64),
        "runs_per_request": (requests > 0).then(|| total_runs as f64 / requests as f64),
        "programs": programs.iter().map(|p| json!({
            "id": p.id, "name": p.name, "type": p.kind,
            "run_time_ns": p.run_time_ns, "run_count": p.run_count, "ns_per_run": ns_per_run(p),
        })).collect::<Vec<_>>(),
    })
}

/// A summary line, then one line per program that ran (busiest first), with its id (the kernel
/// keeps 15 bytes of a name: `sys_enter_write` is also `sys_enter_writev`'s).
pub fn lines(label: &str, programs: &[Program], requests: u64, unit: &str) -> Vec<String> {
    let total_ns: u64 = programs.iter().map(|p| p.run_time_ns).sum();
    let total_runs: u64 = programs.iter().map(|p| p.run_count).sum();
    let mut ran: Vec<&Program> = programs.iter().filter(|p| p.run_count > 0).collect();
    ran.sort_by(|a, b| b.run_time_ns.cmp(&a.run_time_ns).then(a.id.cmp(&b.id)));
    let per = |v: u64| v as f64 / requests.max(1) as f64;
    let mut out = vec![format!(
        "bpf stats {label}: {requests} {unit}, {} of the agent's {} programs ran: {total_runs} runs \
         ({:.2} per {}), {:.1} ms ({:.0} ns per {})",
        ran.len(),
        programs.len(),
        per(total_runs),
        unit.trim_end_matches('s'),
        total_ns as f64 / 1e6,
        per(total_ns),
        unit.trim_end_matches('s'),
    )];
    for p in ran {
        out.push(format!(
            "  {:<16} {:>7} {:<11} {:>10} runs  {:>8.0} ns/run",
            p.name,
            format!("#{}", p.id),
            p.kind.trim_start_matches("BPF_PROG_TYPE_"),
            p.run_count,
            ns_per_run(p).unwrap_or(0.0),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prog(id: u32, ns: u64, runs: u64) -> Program {
        Program {
            id,
            name: format!("p{id}"),
            kind: "BPF_PROG_TYPE_CGROUP_SKB".into(),
            run_time_ns: ns,
            run_count: runs,
        }
    }

    #[test]
    fn the_delta_is_what_each_program_did_in_between() {
        let start = [prog(1, 100, 2), prog(2, 50, 1), prog(3, 0, 0)];
        let end = [prog(1, 400, 5), prog(2, 50, 1)];
        assert_eq!(delta(&start, &end), [prog(1, 300, 3), prog(2, 0, 0)]);
    }

    #[test]
    fn lines_show_the_programs_that_ran_busiest_first() {
        let programs = [prog(1, 300, 3), prog(2, 0, 0), prog(3, 1000, 2)];
        let out = lines("targeted wrk", &programs, 10, "requests");
        assert!(
            out[0].contains("2 of the agent's 3 programs ran: 5 runs (0.50 per request)"),
            "{out:?}"
        );
        assert!(out[0].ends_with("(130 ns per request)"), "{out:?}");
        assert!(out[1].starts_with("  p3 "), "{out:?}");
        assert!(out[1].ends_with("500 ns/run"), "{out:?}");
        assert_eq!(out.len(), 3);
        let v = json(&programs, 10);
        assert_eq!(v["programs"][0]["ns_per_run"], 100.0);
        assert_eq!(v["programs"][1]["ns_per_run"], Value::Null);
        assert_eq!(v["ns_per_request"], 130.0);
    }
}
