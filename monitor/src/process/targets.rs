//! Which processes are watched. A [`Selector`] is the user's choice (`--mcp`, `--all`, `--pid`,
//! `--comm`, `--cgroup`); [`Tracker`] applies it at start-up (a /proc scan) and at every exec,
//! keeps the kernel's target set in step, and hands out process details for events.
//!
//! Children of a watched process are watched too: the kernel adds them at fork (before they run),
//! and the start-up scan adds descendants of selected processes.
use std::{collections::HashMap, sync::Arc};

use super::{cgroup::Selection, mcp::McpMatcher, vanished, ProcFs, ProcessInfo, ProcessTable};

/// The kernel's target set (a BPF hash map in production, a plain set in tests).
pub trait TargetMap {
    fn add(&mut self, pid: u32) -> anyhow::Result<()>;
    fn remove(&mut self, pid: u32);
    fn pids(&self) -> Vec<u32>;
}

impl TargetMap for aya::maps::HashMap<aya::maps::MapData, u32, u32> {
    fn add(&mut self, pid: u32) -> anyhow::Result<()> {
        self.insert(pid, monitor_common::target::SELECTED, 0)
            .map_err(|e| anyhow::anyhow!("adding pid {pid} to the kernel target set: {e}"))
    }

    fn remove(&mut self, pid: u32) {
        let _ = aya::maps::HashMap::remove(self, &pid);
    }

    fn pids(&self) -> Vec<u32> {
        self.keys().filter_map(Result::ok).collect()
    }
}

impl TargetMap for std::collections::BTreeSet<u32> {
    fn add(&mut self, pid: u32) -> anyhow::Result<()> {
        self.insert(pid);
        Ok(())
    }

    fn remove(&mut self, pid: u32) {
        std::collections::BTreeSet::remove(self, &pid);
    }

    fn pids(&self) -> Vec<u32> {
        self.iter().copied().collect()
    }
}

/// The user's choice of targets.
#[derive(Debug)]
pub enum Selector {
    /// MCP servers found by the heuristics of [`McpMatcher`] (the default).
    Mcp,
    All,
    Pids(Vec<u32>),
    Comms(Vec<String>),
    /// cgroups (and everything below them).
    Cgroups(Vec<Selection>),
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |items: Vec<String>| items.join(" ");
        match self {
            Selector::Mcp => write!(f, "--mcp"),
            Selector::All => write!(f, "--all"),
            Selector::Pids(p) => {
                write!(f, "--pid {}", list(p.iter().map(u32::to_string).collect()))
            }
            Selector::Comms(c) => write!(f, "--comm {}", list(c.clone())),
            Selector::Cgroups(c) => write!(
                f,
                "--cgroup {}",
                list(c.iter().map(ToString::to_string).collect())
            ),
        }
    }
}

const COMM_MAX: usize = 15;

impl Selector {
    /// Why this mode selects `info` by itself (inheritance aside).
    pub fn reason(&self, info: &ProcessInfo) -> Option<String> {
        match self {
            Selector::Mcp => info.mcp_reason.clone(),
            Selector::All => Some("--all".into()),
            Selector::Pids(pids) => pids
                .contains(&info.pid)
                .then(|| format!("--pid {}", info.pid)),
            Selector::Comms(names) => names.iter().find_map(|name| {
                let short: String = name.chars().take(COMM_MAX).collect();
                let exe_name = info
                    .exe
                    .as_deref()
                    .map(|e| e.rsplit('/').next().unwrap_or(e));
                (info.comm == short || exe_name == Some(name.as_str()))
                    .then(|| format!("--comm {name}"))
            }),
            Selector::Cgroups(selections) => selections
                .iter()
                .find(|sel| sel.contains(&info.cgroups))
                .map(|sel| format!("--cgroup {sel}")),
        }
    }

    /// Whether the kernel must report every exec (to discover new targets) or only targeted ones.
    pub fn needs_all_execs(&self) -> bool {
        !matches!(self, Selector::Pids(_))
    }
}

/// A process that became a target, with the reason to show the user.
#[derive(Debug, Clone)]
pub struct NewTarget {
    pub process: Arc<ProcessInfo>,
    pub reason: String,
}

pub struct Tracker<M> {
    selector: Selector,
    matcher: McpMatcher,
    procfs: ProcFs,
    map: M,
    table: ProcessTable,
    /// Start times of targeted processes, to tell a reused pid from the one we targeted.
    start_times: HashMap<u32, u64>,
}

impl<M: TargetMap> Tracker<M> {
    pub fn new(selector: Selector, matcher: McpMatcher, procfs: ProcFs, map: M) -> Self {
        Self {
            selector,
            matcher,
            procfs,
            map,
            table: ProcessTable::default(),
            start_times: HashMap::new(),
        }
    }

    fn label(&self, mut info: ProcessInfo) -> ProcessInfo {
        info.mcp_reason = self.matcher.reason(info.exe.as_deref(), &info.cmdline);
        let parent_mcp = info
            .ppid
            .and_then(|ppid| self.table.get(ppid))
            .is_some_and(|p| p.mcp);
        info.mcp = info.mcp_reason.is_some() || parent_mcp;
        info
    }

    fn remember(&mut self, info: ProcessInfo) -> Arc<ProcessInfo> {
        if let Some(stat) = self.procfs.stat(info.pid) {
            self.start_times.insert(info.pid, stat.start_time);
        }
        self.table.insert(info)
    }

    /// Scan /proc once at start-up: selected processes and all their descendants become targets.
    pub fn scan(&mut self) -> Vec<NewTarget> {
        let mut all: HashMap<u32, ProcessInfo> = HashMap::new();
        for pid in self.procfs.pids() {
            if pid == std::process::id() {
                continue;
            }
            if let Some(info) = self.procfs.load(pid) {
                all.insert(pid, info);
            }
        }
        // Label MCP servers first; descendants inherit the label below.
        let mut reasons: HashMap<u32, String> = HashMap::new();
        for info in all.values_mut() {
            info.mcp_reason = self.matcher.reason(info.exe.as_deref(), &info.cmdline);
            info.mcp = info.mcp_reason.is_some();
            if let Some(reason) = self.selector.reason(info) {
                reasons.insert(info.pid, reason);
            }
        }
        let mut found = Vec::new();
        let pids: Vec<u32> = all.keys().copied().collect();
        for pid in pids {
            // Walk up the parent chain (bounded: pid cycles cannot happen, but /proc can lie).
            let mut reason = reasons.get(&pid).cloned();
            let mut mcp_ancestor = false;
            let mut cur = all[&pid].ppid;
            for _ in 0..64 {
                let Some(ppid) = cur.filter(|&p| p != 0) else {
                    break;
                };
                let Some(parent) = all.get(&ppid) else { break };
                mcp_ancestor |= parent.mcp;
                if reason.is_none() {
                    if let Some(r) = reasons.get(&ppid) {
                        reason = Some(format!("descendant of pid {ppid} ({r})"));
                    }
                }
                cur = parent.ppid;
            }
            let Some(reason) = reason else { continue };
            let mut info = all[&pid].clone();
            info.mcp |= mcp_ancestor;
            if let Err(err) = self.map.add(pid) {
                tracing::warn!("{err:#}");
                continue;
            }
            let process = self.remember(info);
            found.push(NewTarget { process, reason });
        }
        found.sort_by_key(|t| t.process.pid);
        found
    }

    /// A process exec'd. `inherited`: the kernel already targets it (a child of a target).
    /// Returns the process when it is (now) a target.
    pub fn on_exec(
        &mut self,
        pid: u32,
        inherited: bool,
        comm: &str,
        filename: &str,
    ) -> Option<NewTarget> {
        let was_known = self.table.remove(pid);
        let info = match self.procfs.load(pid) {
            Some(info) => info,
            // Gone already: without a command line only --all, --pid and --comm can still match.
            None => vanished(pid, comm, (!filename.is_empty()).then_some(filename)),
        };
        let info = self.label(info);
        let reason = if let Some(reason) = self.selector.reason(&info) {
            if !inherited {
                if let Err(err) = self.map.add(pid) {
                    tracing::warn!("{err:#}");
                    return None;
                }
            }
            reason
        } else if inherited || was_known.is_some() {
            match info.ppid {
                Some(ppid) => format!("child of targeted pid {ppid}"),
                None => "child of a targeted process".into(),
            }
        } else {
            return None;
        };
        let process = self.remember(info);
        Some(NewTarget { process, reason })
    }

    pub fn on_exit(&mut self, pid: u32) {
        self.table.remove(pid);
        self.start_times.remove(&pid);
        // The kernel removed the entry already; this covers an add that raced with the exit.
        self.map.remove(pid);
    }

    /// Details of the process behind an event: cached, loaded on first sight, or what the event
    /// itself says when the process is gone.
    pub fn process(&mut self, pid: u32, comm: &str) -> Arc<ProcessInfo> {
        if let Some(info) = self.table.get(pid) {
            return info.clone();
        }
        let info = match self.procfs.load(pid) {
            Some(info) => self.label(info),
            None => vanished(pid, comm, None),
        };
        self.remember(info)
    }

    /// Forget targets whose process is gone or whose pid now belongs to someone else (an add
    /// can race with an exit that the kernel never reported). Returns the pids dropped.
    pub fn collect_garbage(&mut self) -> Vec<u32> {
        let mut dropped = Vec::new();
        for pid in self.map.pids() {
            let current = self.procfs.stat(pid).map(|s| s.start_time);
            let stale = match (current, self.start_times.get(&pid)) {
                (None, _) => true,
                (Some(now), Some(&known)) => now != known,
                // Inherited thread or child we have not seen yet: keep while it lives.
                (Some(_), None) => false,
            };
            if stale {
                self.map.remove(pid);
                self.table.remove(pid);
                self.start_times.remove(&pid);
                dropped.push(pid);
            }
        }
        dropped
    }

    pub fn target_count(&self) -> usize {
        self.map.pids().len()
    }

    pub fn map_mut(&mut self) -> &mut M {
        &mut self.map
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::process::cgroup::parse_proc;

    fn info(pid: u32, comm: &str, exe: &str, cmd: &str, cgroup: &str) -> ProcessInfo {
        ProcessInfo {
            pid,
            ppid: Some(1),
            comm: comm.into(),
            exe: Some(exe.into()),
            cmdline: cmd.split_whitespace().map(String::from).collect(),
            cgroups: parse_proc(&format!("0::{cgroup}\n")),
            ..Default::default()
        }
    }

    #[test]
    fn selectors() {
        let p = info(
            10,
            "python3",
            "/usr/bin/python3.11",
            "python3 app.py",
            "/system.slice/app.service",
        );
        assert!(Selector::All.reason(&p).is_some());
        assert!(Selector::Pids(vec![10]).reason(&p).is_some());
        assert!(Selector::Pids(vec![11]).reason(&p).is_none());
        assert!(Selector::Comms(vec!["python3".into()]).reason(&p).is_some());
        assert!(
            Selector::Comms(vec!["python3.11".into()])
                .reason(&p)
                .is_some(),
            "exe name"
        );
        assert!(Selector::Comms(vec!["python".into()]).reason(&p).is_none());
        let mounts = "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n";
        let cg = |p: &str| Selector::Cgroups(vec![crate::process::cgroup::selection(p, mounts)]);
        assert!(cg("/sys/fs/cgroup/system.slice").reason(&p).is_some());
        assert!(cg("system.slice/app.service/").reason(&p).is_some());
        assert!(
            cg("/system.sl").reason(&p).is_none(),
            "prefix must end at a path separator"
        );
        assert!(Selector::Mcp.reason(&p).is_none());
    }

    #[test]
    fn long_comm_names_match_truncated() {
        let p = info(
            10,
            "very-long-progr",
            "/opt/very-long-program-name",
            "x",
            "/",
        );
        assert!(Selector::Comms(vec!["very-long-program-name".into()])
            .reason(&p)
            .is_some());
    }

    #[test]
    fn exec_of_vanished_process_is_tolerated() {
        let procfs = ProcFs::at("/nonexistent-proc");
        let mut t = Tracker::new(
            Selector::Comms(vec!["curl".into()]),
            McpMatcher::default(),
            procfs,
            BTreeSet::new(),
        );
        let target = t
            .on_exec(4242, false, "curl", "/usr/bin/curl")
            .expect("comm still matches");
        assert_eq!(target.process.comm, "curl");
        assert_eq!(target.process.exe.as_deref(), Some("/usr/bin/curl"));
        assert_eq!(t.map_mut().pids(), vec![4242]);
        assert!(t.on_exec(4243, false, "bash", "/bin/bash").is_none());
        let inherited = t
            .on_exec(4244, true, "sh", "/bin/sh")
            .expect("children stay targeted");
        assert!(inherited.reason.contains("child"));
        t.on_exit(4242);
        assert!(t.map_mut().pids().is_empty());
        assert_eq!(t.collect_garbage(), Vec::<u32>::new());
    }

    #[test]
    fn scan_finds_this_test_process_by_pid() {
        // The scan skips the agent's own pid, so target our parent (cargo/nextest) instead.
        let parent = ProcFs::default().stat(std::process::id()).unwrap().ppid;
        let mut t = Tracker::new(
            Selector::Pids(vec![parent]),
            McpMatcher::default(),
            ProcFs::default(),
            BTreeSet::new(),
        );
        let found = t.scan();
        assert!(found
            .iter()
            .any(|n| n.process.pid == parent && n.reason == format!("--pid {parent}")));
        assert!(t.map_mut().pids().contains(&parent));
        assert!(found.iter().all(|n| n.process.pid != std::process::id()));
    }
}
