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

/// What settling needs of a kernel hash map (a BPF map here, a model of one in tests).
pub trait KernelTable<K, V> {
    fn get(&self, key: &K) -> Option<V>;
    /// `bpf_map_update_elem` with `flags`; `false` when the kernel refused.
    fn update(&mut self, key: K, value: V, flags: u64) -> bool;
}

impl<K: aya::Pod, V: aya::Pod> KernelTable<K, V> for BpfHashMap<MapData, K, V> {
    fn get(&self, key: &K) -> Option<V> {
        BpfHashMap::get(self, key, 0).ok()
    }

    fn update(&mut self, key: K, value: V, flags: u64) -> bool {
        self.insert(key, value, flags).is_ok()
    }
}

/// Mark a tracked socket done. Between the read and the write the kernel may close the socket
/// and drop its entry: the write only updates an existing entry, so it cannot bring it back.
/// `seen` (kernel time) is a record of the connection meant: an entry made after it is a new
/// socket the kernel put at the same address once the old one was freed (a verdict that comes
/// late, after its process's records waited for /proc, must not stop the capture of another
/// connection's first bytes).
fn settle_socket(sockets: &mut impl KernelTable<u64, SockState>, sock: u64, seen: u64) {
    if let Some(mut state) = sockets.get(&sock) {
        if state.born > seen {
            return;
        }
        state.flags |= sock_flags::DONE;
        sockets.update(sock, state, BPF_EXIST);
    }
}

/// Mark a session's verdict. A session freed meanwhile stays freed (its address may be
/// reused by a new session, which must start unsettled).
fn settle_tls(states: &mut impl KernelTable<SslKey, SslState>, tgid: u32, ssl: u64) {
    let key = SslKey { tgid, _pad: 0, ssl };
    let state = SslState {
        flags: ssl_flags::VERDICT | ssl_flags::HANDSHAKE_DONE,
        certs: 0,
    };
    states.update(key, state, BPF_EXIST);
}

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

    /// Stop copying a socket's writes (if the kernel still tracks the connection that had a
    /// record at kernel time `seen`).
    pub fn settle_socket(&mut self, sock: u64, seen: u64) {
        if let Some(sockets) = self.sockets.as_mut() {
            settle_socket(sockets, sock, seen);
        }
    }

    /// Stop reporting a TLS session's reads and writes (if the kernel still tracks it).
    pub fn settle_tls(&mut self, tgid: u32, ssl: u64) {
        if let Some(states) = self.ssl.as_mut() {
            settle_tls(states, tgid, ssl);
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

#[cfg(test)]
mod tests {
    use std::{cell::Cell, collections::HashMap};

    use super::*;

    /// A hash map with the kernel's update semantics, whose entry can vanish between a read
    /// and the next write (the socket closed, the session freed, on another CPU).
    struct Racy<K, V> {
        entries: HashMap<K, V>,
        vanish_after_get: Cell<bool>,
        pending_removal: Cell<Option<K>>,
    }

    impl<K: std::hash::Hash + Eq + Copy, V: Copy> KernelTable<K, V> for Racy<K, V> {
        fn get(&self, key: &K) -> Option<V> {
            let v = self.entries.get(key).copied();
            if self.vanish_after_get.get() {
                self.pending_removal.set(Some(*key));
            }
            v
        }

        fn update(&mut self, key: K, value: V, flags: u64) -> bool {
            if let Some(k) = self.pending_removal.take() {
                self.entries.remove(&k);
            }
            let exists = self.entries.contains_key(&key);
            match flags {
                BPF_EXIST if !exists => false,
                1 /* BPF_NOEXIST */ if exists => false,
                _ => {
                    self.entries.insert(key, value);
                    true
                }
            }
        }
    }

    fn racy<K, V>(entries: HashMap<K, V>, vanish: bool) -> Racy<K, V> {
        Racy {
            entries,
            vanish_after_get: Cell::new(vanish),
            pending_removal: Cell::new(None),
        }
    }

    #[test]
    fn a_close_racing_a_verdict_does_not_bring_the_socket_back() {
        let sk = 0xffff_8880_0000_1000;
        let state = SockState {
            tgid: 7,
            fd: 5,
            ..SockState::default()
        };
        let mut map = racy(HashMap::from([(sk, state)]), false);
        settle_socket(&mut map, sk, 1_000);
        assert_eq!(map.entries[&sk].flags & sock_flags::DONE, sock_flags::DONE);
        // The socket is closed between the read and the write.
        let mut map = racy(HashMap::from([(sk, state)]), true);
        settle_socket(&mut map, sk, 1_000);
        assert!(map.entries.is_empty(), "a closed socket stays gone");
    }

    #[test]
    fn a_late_verdict_leaves_the_next_socket_at_the_same_address_alone() {
        let sk = 0xffff_8880_0000_1000;
        // One process's connection had its records at 1,000..2,000 ns and closed; the kernel
        // gave its memory to another process's socket, connected at 5,000 ns.
        let next = SockState {
            tgid: 8,
            fd: 5,
            born: 5_000,
            ..SockState::default()
        };
        let mut map = racy(HashMap::from([(sk, next)]), false);
        settle_socket(&mut map, sk, 1_500);
        assert_eq!(map.entries[&sk], next, "its first bytes are still captured");
        // The new connection's own verdict (its payload at 6,000 ns) settles it.
        settle_socket(&mut map, sk, 6_000);
        assert_eq!(map.entries[&sk].flags & sock_flags::DONE, sock_flags::DONE);
    }

    #[test]
    fn a_freed_session_is_not_resurrected_by_its_verdict() {
        let mut map: Racy<SslKey, SslState> = racy(HashMap::new(), false);
        settle_tls(&mut map, 7, 0x5555_0000);
        assert!(
            map.entries.is_empty(),
            "SSL_free came first: nothing is created"
        );
        let key = SslKey {
            tgid: 7,
            _pad: 0,
            ssl: 0x5555_0000,
        };
        map.entries.insert(key, SslState::default());
        settle_tls(&mut map, 7, 0x5555_0000);
        assert_eq!(
            map.entries[&key].flags & ssl_flags::VERDICT,
            ssl_flags::VERDICT
        );
    }
}
