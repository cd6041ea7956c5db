//! The one owner of everything the monitor knows about a process: who it is, its connections
//! (with their held reports and plaintext streams), its TLS objects and its deduplicated
//! findings, keyed by pid *and* start time.
//!
//! A pid alone does not name a process: pids are reused. Every kernel record carries the start
//! time of its process, so a record from a new process that got an old pid never lands in the
//! old process's state, and when the old process's exit went unseen its state is concluded the
//! moment the new one shows up. Forgetting a process is one removal; a periodic liveness sweep
//! (driven by the caller, who can read /proc) catches exits that were never reported.
use std::{collections::HashMap, sync::Arc};

use super::{
    connections::{Connections, SockId},
    dedup::Dedup,
    tls::TlsProcess,
};
use crate::process::ProcessInfo;

/// One process for its whole life. `start` is its start time in clock ticks since boot (as
/// `/proc/PID/stat` shows it), 0 when unknown.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ProcessKey {
    pub pid: u32,
    pub start: u64,
}

impl ProcessKey {
    pub fn new(pid: u32, start: u64) -> Self {
        Self { pid, start }
    }

    /// Whether two keys may name the same process (an unknown start time matches any).
    pub fn same_process(&self, other: &ProcessKey) -> bool {
        self.pid == other.pid && (self.start == 0 || other.start == 0 || self.start == other.start)
    }
}

/// Everything about one process.
#[derive(Debug)]
pub struct ProcessState {
    pub key: ProcessKey,
    pub info: Arc<ProcessInfo>,
    pub conns: Connections,
    pub tls: TlsProcess,
    pub dedup: Dedup,
    /// Its mapped libraries were read since its TLS activity began (this image).
    pub libraries_checked: bool,
    /// Its listeners, the connections they accepted, its TLS server role.
    pub server: super::server::ServerProcess,
}

impl ProcessState {
    pub fn new(key: ProcessKey, info: Arc<ProcessInfo>) -> Self {
        Self {
            key,
            info,
            conns: Connections::default(),
            tls: TlsProcess::default(),
            dedup: Dedup::default(),
            libraries_checked: false,
            server: Default::default(),
        }
    }
}

/// Processes known at once, at most (the kernel's target set has the same size).
pub const MAX_PROCESSES: usize = 65_536;

/// The table holds [`MAX_PROCESSES`] already.
#[derive(Debug, PartialEq, Eq)]
pub struct TableFull;

/// The table of processes, and which process connected each tracked socket (a socket can be
/// written by a child that inherited it: its connection still belongs to the process that
/// connected it).
#[derive(Debug, Default)]
pub struct Processes {
    by_pid: HashMap<u32, ProcessState>,
    sock_owner: HashMap<SockId, u32>,
}

impl Processes {
    /// The state of this process, if known (and not a previous owner of the pid).
    pub fn get(&self, key: ProcessKey) -> Option<&ProcessState> {
        self.by_pid
            .get(&key.pid)
            .filter(|p| p.key.same_process(&key))
    }

    pub fn get_mut(&mut self, key: ProcessKey) -> Option<&mut ProcessState> {
        self.by_pid
            .get_mut(&key.pid)
            .filter(|p| p.key.same_process(&key))
    }

    /// Whatever process currently holds `pid` in the table.
    pub fn by_pid(&self, pid: u32) -> Option<&ProcessState> {
        self.by_pid.get(&pid)
    }

    /// Add a process. Returns the state of a previous process with the same pid (whose exit
    /// went unseen), for the caller to conclude.
    pub fn insert(&mut self, state: ProcessState) -> Result<Option<ProcessState>, TableFull> {
        let pid = state.key.pid;
        if !self.by_pid.contains_key(&pid) && self.by_pid.len() >= MAX_PROCESSES {
            return Err(TableFull);
        }
        let old = self.by_pid.insert(pid, state);
        if let Some(old) = &old {
            self.forget_sockets(old);
        }
        Ok(old)
    }

    /// Forget a process: one removal (plus its socket index entries).
    pub fn remove(&mut self, key: ProcessKey) -> Option<ProcessState> {
        self.get(key)?;
        let state = self.by_pid.remove(&key.pid)?;
        self.forget_sockets(&state);
        Some(state)
    }

    fn forget_sockets(&mut self, state: &ProcessState) {
        for id in state.conns.ids() {
            if self.sock_owner.get(&id) == Some(&state.key.pid) {
                self.sock_owner.remove(&id);
            }
        }
    }

    /// Record that `pid` connected socket `id`.
    pub fn own_socket(&mut self, id: SockId, pid: u32) {
        self.sock_owner.insert(id, pid);
    }

    /// `pid`'s connection on socket `id` ended. The index entry goes only if it is still
    /// `pid`'s: the address may name another process's newer socket by now.
    pub fn disown_socket(&mut self, id: SockId, pid: u32) {
        if self.sock_owner.get(&id) == Some(&pid) {
            self.sock_owner.remove(&id);
        }
    }

    /// The process that connected socket `id`.
    pub fn socket_owner(&self, id: SockId) -> Option<u32> {
        self.sock_owner.get(&id).copied()
    }

    pub fn keys(&self) -> Vec<ProcessKey> {
        self.by_pid.values().map(|p| p.key).collect()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut ProcessState> {
        self.by_pid.values_mut()
    }

    pub fn iter(&self) -> impl Iterator<Item = &ProcessState> {
        self.by_pid.values()
    }

    pub fn len(&self) -> usize {
        self.by_pid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_pid.is_empty()
    }

    pub fn socket_index_len(&self) -> usize {
        self.sock_owner.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(pid: u32, start: u64) -> ProcessState {
        ProcessState::new(
            ProcessKey::new(pid, start),
            Arc::new(ProcessInfo {
                pid,
                ..Default::default()
            }),
        )
    }

    #[test]
    fn a_reused_pid_is_another_process() {
        let mut p = Processes::default();
        assert!(p.insert(state(42, 1000)).unwrap().is_none());
        assert!(p.get(ProcessKey::new(42, 1000)).is_some());
        assert!(
            p.get(ProcessKey::new(42, 0)).is_some(),
            "unknown start time"
        );
        assert!(
            p.get(ProcessKey::new(42, 2000)).is_none(),
            "same pid, later start: someone else"
        );
        assert!(p.remove(ProcessKey::new(42, 2000)).is_none());
        // The new process replaces the old one, which is handed back to be concluded.
        let old = p.insert(state(42, 2000)).unwrap().expect("the old process");
        assert_eq!(old.key.start, 1000);
        assert_eq!(p.len(), 1);
        assert!(p.remove(ProcessKey::new(42, 2000)).is_some());
        assert!(p.is_empty());
    }

    #[test]
    fn socket_owners_go_with_their_process() {
        let mut p = Processes::default();
        let mut s = state(7, 1);
        let conn = super::super::connections::Conn::new(
            3,
            crate::output::Destination {
                ip: "10.203.0.2".parse().unwrap(),
                port: 80,
                hostname: None,
            },
            crate::output::Socket {
                family: crate::decode::Family::Ipv4,
                protocol: None,
                fd: 3,
            },
        );
        s.conns.insert(7, 0xffff_0000_0000_0001, conn);
        p.insert(s).unwrap();
        p.own_socket(0xffff_0000_0000_0001, 7);
        assert_eq!(p.socket_owner(0xffff_0000_0000_0001), Some(7));
        p.remove(ProcessKey::new(7, 1));
        assert_eq!(p.socket_owner(0xffff_0000_0000_0001), None);
        assert_eq!(p.socket_index_len(), 0);
    }
}
