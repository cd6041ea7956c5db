//! Which processes are watched. A [`Selector`] is the user's choice (`--mcp`, `--all`, `--pid`,
//! `--comm`, `--cgroup`); [`Targeting`] applies it at start-up (to a /proc scan) and at every
//! exec (to what was read about the process), and keeps the kernel's target set in step.
//! It holds no per-process state of its own: what is known of each process lives in the
//! analyzer's process table, and the caller reads /proc.
//!
//! Children of a watched process are watched too: the kernel adds them at fork (before they run),
//! and the start-up scan adds descendants of selected processes.
use std::collections::HashMap;

use super::{cgroup::Selection, mcp::McpMatcher, ProcessInfo};

/// The kernel's target set (a BPF hash map in production, a plain map in tests). Entries name
/// a process by pid *and* start time, so a reused pid is never watched by mistake.
pub trait TargetMap {
    fn add(&mut self, pid: u32, start: u64) -> anyhow::Result<()>;
    fn remove(&mut self, pid: u32);
    /// Every entry: pid and the start time it was added for (0: any, set by the kernel).
    fn entries(&self) -> Vec<(u32, u64)>;
}

impl TargetMap for aya::maps::HashMap<aya::maps::MapData, u32, monitor_common::TargetEntry> {
    fn add(&mut self, pid: u32, start: u64) -> anyhow::Result<()> {
        let entry = monitor_common::TargetEntry {
            flags: monitor_common::target::SELECTED,
            _pad: 0,
            start,
        };
        self.insert(pid, entry, 0)
            .map_err(|e| anyhow::anyhow!("adding pid {pid} to the kernel target set: {e}"))
    }

    fn remove(&mut self, pid: u32) {
        let _ = aya::maps::HashMap::remove(self, &pid);
    }

    fn entries(&self) -> Vec<(u32, u64)> {
        self.iter()
            .filter_map(Result::ok)
            .map(|(pid, e)| (pid, e.start))
            .collect()
    }
}

impl TargetMap for std::collections::BTreeMap<u32, u64> {
    fn add(&mut self, pid: u32, start: u64) -> anyhow::Result<()> {
        self.insert(pid, start);
        Ok(())
    }

    fn remove(&mut self, pid: u32) {
        std::collections::BTreeMap::remove(self, &pid);
    }

    fn entries(&self) -> Vec<(u32, u64)> {
        self.iter().map(|(p, s)| (*p, *s)).collect()
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
    pub process: ProcessInfo,
    /// Its start time (see `analyze::processes::ProcessKey`).
    pub start: u64,
    pub reason: String,
}

pub struct Targeting<M> {
    selector: Selector,
    matcher: McpMatcher,
    map: M,
}

impl<M: TargetMap> Targeting<M> {
    pub fn new(selector: Selector, matcher: McpMatcher, map: M) -> Self {
        Self {
            selector,
            matcher,
            map,
        }
    }

    pub fn selector(&self) -> &Selector {
        &self.selector
    }

    /// Name a process an MCP server (or not), with the reason; a child of an MCP server is one.
    pub fn label(&self, mut info: ProcessInfo, parent_mcp: bool) -> ProcessInfo {
        info.mcp_reason = self.matcher.reason(&info);
        info.mcp = info.mcp_reason.is_some() || parent_mcp;
        info
    }

    /// Start-up: every selected process and all its descendants become targets. `all` is
    /// every process read from /proc, with its start time.
    pub fn scan(&mut self, all: Vec<(ProcessInfo, u64)>) -> Vec<NewTarget> {
        let mut all: HashMap<u32, (ProcessInfo, u64)> = all
            .into_iter()
            .map(|(info, start)| (info.pid, (info, start)))
            .collect();
        // Label MCP servers first; descendants inherit the label below.
        let mut reasons: HashMap<u32, String> = HashMap::new();
        for (info, _) in all.values_mut() {
            info.mcp_reason = self.matcher.reason(info);
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
            let mut cur = all[&pid].0.ppid;
            for _ in 0..64 {
                let Some(ppid) = cur.filter(|&p| p != 0) else {
                    break;
                };
                let Some((parent, _)) = all.get(&ppid) else {
                    break;
                };
                mcp_ancestor |= parent.mcp;
                if reason.is_none() {
                    if let Some(r) = reasons.get(&ppid) {
                        reason = Some(format!("descendant of pid {ppid} ({r})"));
                    }
                }
                cur = parent.ppid;
            }
            let Some(reason) = reason else { continue };
            let (mut info, start) = all[&pid].clone();
            info.mcp |= mcp_ancestor;
            if let Err(err) = self.map.add(pid, start) {
                tracing::warn!("{err:#}");
                continue;
            }
            found.push(NewTarget {
                process: info,
                start,
                reason,
            });
        }
        found.sort_by_key(|t| t.process.pid);
        found
    }

    /// A process exec'd; `info` is what was read about it (already labelled). `inherited`: the
    /// kernel already targets it (a child of a target); `was_target`: it was one before the
    /// exec. Returns the reason when it is (now) a target.
    pub fn on_exec(
        &mut self,
        info: &ProcessInfo,
        start: u64,
        inherited: bool,
        was_target: bool,
    ) -> Option<String> {
        if let Some(reason) = self.selector.reason(info) {
            if !inherited {
                if let Err(err) = self.map.add(info.pid, start) {
                    tracing::warn!("{err:#}");
                    return None;
                }
            }
            return Some(reason);
        }
        (inherited || was_target).then(|| match info.ppid {
            Some(ppid) => format!("child of targeted pid {ppid}"),
            None => "child of a targeted process".into(),
        })
    }

    /// Forget kernel entries whose process is gone or whose pid now belongs to someone else
    /// (an add can race with an exit the kernel never saw). `stale` says, for an entry (pid and
    /// the start time it was added for, 0 for any), whether it no longer names a live process.
    /// Returns the pids dropped.
    pub fn sweep(&mut self, stale: impl Fn(u32, u64) -> bool) -> Vec<u32> {
        let mut dropped = Vec::new();
        for (pid, start) in self.map.entries() {
            if stale(pid, start) {
                self.map.remove(pid);
                dropped.push(pid);
            }
        }
        dropped
    }

    pub fn target_count(&self) -> usize {
        self.map.entries().len()
    }

    pub fn map_mut(&mut self) -> &mut M {
        &mut self.map
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

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

    fn targeting(selector: Selector) -> Targeting<BTreeMap<u32, u64>> {
        Targeting::new(selector, McpMatcher::default(), BTreeMap::new())
    }

    #[test]
    fn exec_decisions() {
        let mut t = targeting(Selector::Comms(vec!["curl".into()]));
        let curl = info(4242, "curl", "/usr/bin/curl", "curl http://x/", "/");
        assert_eq!(
            t.on_exec(&curl, 77, false, false).as_deref(),
            Some("--comm curl")
        );
        assert_eq!(
            t.map_mut().entries(),
            vec![(4242, 77)],
            "added with its start time"
        );
        let bash = info(4243, "bash", "/bin/bash", "bash", "/");
        assert!(t.on_exec(&bash, 1, false, false).is_none());
        let child = info(4244, "sh", "/bin/sh", "sh -c x", "/");
        assert!(t
            .on_exec(&child, 1, true, false)
            .unwrap()
            .contains("child of targeted pid 1"));
        assert_eq!(
            t.map_mut().entries().len(),
            1,
            "the kernel added the child itself"
        );
    }

    #[test]
    fn sweep_drops_gone_and_reused_pids() {
        let mut t = targeting(Selector::All);
        t.map_mut().add(10, 100).unwrap();
        t.map_mut().add(11, 100).unwrap();
        t.map_mut().add(12, 0).unwrap();
        t.map_mut().add(13, 100).unwrap();
        let now = |pid: u32| match pid {
            10 => Some(100),
            11 => Some(999), // reused
            12 => Some(5),   // kernel-added: any start
            _ => None,       // gone
        };
        let stale = |pid: u32, start: u64| match now(pid) {
            None => true,
            Some(now) => start != 0 && now != start,
        };
        assert_eq!(t.sweep(stale), vec![11, 13]);
        assert_eq!(t.target_count(), 2);
    }

    #[test]
    fn scan_selects_descendants_with_their_start_times() {
        let mut t = targeting(Selector::Pids(vec![10]));
        let mut parent = info(10, "node", "/usr/bin/node", "node mcp-server.js", "/");
        parent.ppid = Some(1);
        let mut child = info(11, "curl", "/usr/bin/curl", "curl x", "/");
        child.ppid = Some(10);
        let other = info(12, "vim", "/usr/bin/vim", "vim", "/");
        let found = t.scan(vec![(parent, 500), (child, 600), (other, 700)]);
        let got: Vec<(u32, u64, bool)> = found
            .iter()
            .map(|n| (n.process.pid, n.start, n.reason.contains("descendant")))
            .collect();
        assert_eq!(got, vec![(10, 500, false), (11, 600, true)]);
        assert_eq!(t.map_mut().entries(), vec![(10, 500), (11, 600)]);
        assert!(found[1].process.mcp, "a child of an MCP server is one");
    }
}
