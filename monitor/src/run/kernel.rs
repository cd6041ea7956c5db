//! The kernel maps the event loop writes to or reads: settling sockets and TLS sessions, the
//! leftovers of finished processes, drop counters and map sizes.
//!
//! Updates of entries the kernel owns use `BPF_EXIST`: a socket closed or a session freed while
//! its verdict was on the way must not come back to life.
use std::collections::{BTreeMap, HashSet};

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray};
use monitor_common::{sock_flags, ssl_flags, SockState, SslKey, SslState, TargetEntry};

/// `BPF_EXIST`: update an existing element only.
const BPF_EXIST: u64 = 2;

pub type Targets = BpfHashMap<MapData, u32, TargetEntry>;
type SslStates = BpfHashMap<MapData, SslKey, SslState>;
type Sockets = BpfHashMap<MapData, u64, SockState>;
/// The kernel programs' per-thread state: only counted here, never read.
type Threads = BpfHashMap<MapData, u64, [u8; monitor_common::THREAD_STATE_SIZE]>;

pub struct KernelMaps {
    sockets: Option<Sockets>,
    ssl: Option<SslStates>,
    threads: Option<Threads>,
    drops: PerCpuArray<MapData, u64>,
}

impl KernelMaps {
    pub fn take(ebpf: &mut aya::Ebpf) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        Ok(Self {
            sockets: ebpf.take_map("SOCKETS").and_then(|m| m.try_into().ok()),
            ssl: ebpf.take_map("SSL_STATE").and_then(|m| m.try_into().ok()),
            threads: ebpf.take_map("THREADS").and_then(|m| m.try_into().ok()),
            drops: ebpf
                .take_map("DROPS")
                .context("DROPS map missing")?
                .try_into()?,
        })
    }

    /// Stop copying a socket's writes (if the kernel still tracks it).
    pub fn settle_socket(&mut self, sock: u64) {
        let Some(sockets) = self.sockets.as_mut() else {
            return;
        };
        if let Ok(mut state) = sockets.get(&sock, 0) {
            state.flags |= sock_flags::DONE;
            // Gone meanwhile: nothing to settle (and nothing is created).
            let _ = sockets.insert(sock, state, BPF_EXIST);
        }
    }

    /// Stop reporting a TLS session's reads and writes (if the kernel still tracks it).
    pub fn settle_tls(&mut self, tgid: u32, ssl: u64) {
        if let Some(states) = self.ssl.as_mut() {
            let key = SslKey { tgid, _pad: 0, ssl };
            let state = SslState {
                flags: ssl_flags::VERDICT | ssl_flags::HANDSHAKE_DONE,
                certs: 0,
            };
            let _ = states.insert(key, state, BPF_EXIST);
        }
    }

    /// A process is gone: its sessions' kernel state goes too.
    pub fn forget_tls(&mut self, tgid: u32, ssl: &[u64]) {
        if let Some(states) = self.ssl.as_mut() {
            for &ssl in ssl {
                let _ = states.remove(&SslKey { tgid, _pad: 0, ssl });
            }
        }
    }

    /// Remove session entries of processes that are not watched any more (their exit, or the
    /// record that created them, was missed). Returns how many went.
    pub fn sweep_tls(&mut self, watched: impl Fn(u32) -> bool) -> usize {
        let Some(states) = self.ssl.as_mut() else {
            return 0;
        };
        let stale: Vec<SslKey> = states
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !watched(k.tgid))
            .collect();
        for key in &stale {
            let _ = states.remove(key);
        }
        stale.len()
    }

    /// Drops counted by the kernel programs, by reason.
    pub fn drops(&self) -> BTreeMap<&'static str, u64> {
        monitor_common::Drop::ALL
            .iter()
            .map(|d| {
                let n = self
                    .drops
                    .get(&(*d as u32), 0)
                    .map(|per_cpu| per_cpu.iter().sum())
                    .unwrap_or(0);
                (d.name(), n)
            })
            .collect()
    }

    /// Entries in the kernel maps the loop can see (one syscall per entry: on request only).
    pub fn sizes(&self, targets: &Targets) -> BTreeMap<String, u64> {
        let mut sizes = BTreeMap::new();
        sizes.insert(
            "kernel_targets".into(),
            targets.keys().filter(Result::is_ok).count() as u64,
        );
        if let Some(m) = &self.sockets {
            sizes.insert(
                "kernel_sockets".into(),
                m.keys().filter(Result::is_ok).count() as u64,
            );
        }
        if let Some(m) = &self.ssl {
            let keys: HashSet<SslKey> = m.keys().filter_map(Result::ok).collect();
            sizes.insert("kernel_tls_sessions".into(), keys.len() as u64);
        }
        if let Some(m) = &self.threads {
            sizes.insert(
                "kernel_threads".into(),
                m.keys().filter(Result::is_ok).count() as u64,
            );
        }
        sizes
    }
}
