//! The server side of targets in the event loop: listeners, accepted connections and their
//! first bytes, server-side TLS responses (see `analyze/server.rs`), and the listeners a
//! target already had when it became one, which userspace marks itself: it takes a copy of the
//! socket's descriptor (`pidfd_getfd`) and creates the socket's storage entry through it, so
//! the connections the listener accepts from then on are seen like those of any other.
use std::{
    net::SocketAddr,
    os::fd::{FromRawFd as _, OwnedFd},
    time::SystemTime,
};

use aya::{
    maps::{HashMap as BpfHashMap, MapData, MapError, SkStorage},
    Ebpf,
};
use monitor_common::{ServerSock, SockState, SslKey, TlsCall, OUTCOME_PENDING};

use super::{attach, Session};
use crate::{
    analyze::{input::Input, processes::ProcessKey, server::Response},
    decode::{Listen, RawEvent, Tls},
    detect::inbound::response_head,
    output::{Status, StatusKind},
    probes::server::SERVER_SOCKS,
    process::{listeners::open_listeners, ProcFs},
};

/// `BPF_NOEXIST`: a listener the kernel marked at its bind keeps its entry.
const BPF_NOEXIST: u64 = 1;
/// Ids userspace gives the listeners it marks: this bit and the socket's inode (the kernel's
/// are `struct sock` addresses, kernel-half pointers, which never equal these).
const ADOPTED: u64 = 1 << 63;

/// The server side's kernel maps userspace writes: `SERVER_SOCKS` (marking listeners through
/// their descriptors) and `SERVER_SSL` (server sessions of processes whose `SSL_free` went
/// unseen are swept).
pub(super) struct ListenerMarks {
    map: Option<SkStorage<MapData, ServerSock>>,
    sessions: Option<BpfHashMap<MapData, SslKey, u32>>,
    /// The receive hook was asked for (a target listens beyond loopback).
    ingress_requested: bool,
}

impl ListenerMarks {
    pub(super) fn take(ebpf: &mut Ebpf) -> Self {
        Self {
            map: ebpf
                .take_map(SERVER_SOCKS)
                .and_then(|m| SkStorage::try_from(m).ok()),
            sessions: ebpf
                .take_map("SERVER_SSL")
                .and_then(|m| BpfHashMap::try_from(m).ok()),
            ingress_requested: false,
        }
    }
}

/// A copy of descriptor `fd` of process `pid`.
fn steal_fd(pid: u32, fd: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscalls; each descriptor returned is owned here and closed on drop.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0);
        if pidfd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let pidfd = OwnedFd::from_raw_fd(pidfd as i32);
        let copy = libc::syscall(
            libc::SYS_pidfd_getfd,
            std::os::fd::AsRawFd::as_raw_fd(&pidfd),
            fd as libc::c_int,
            0,
        );
        if copy < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(copy as i32))
    }
}

impl Session {
    /// One record of the server side of a known process.
    pub(super) fn server_event(&mut self, event: RawEvent, time: SystemTime) {
        let t = time.into();
        match event {
            RawEvent::Listen(l) => self.listening(l, time),
            RawEvent::Accept(a) => {
                self.step(Input::Accept(a, t));
            }
            RawEvent::ServerPayload(p) => {
                if let Some(served) = self.analyzer.server_payload(&p) {
                    self.step(Input::Served(served, t));
                }
            }
            RawEvent::ServerClose(c) => {
                if let Some(served) = self.analyzer.server_finish(&c) {
                    self.step(Input::Served(served, t));
                }
                self.step(Input::ServerClose(c, t));
            }
            RawEvent::TlsResponse(p) => {
                if let Some(head) = response_head(&p.data) {
                    let response = Response {
                        owner: ProcessKey::new(p.tgid, p.start),
                        ssl: p.sock,
                        status: head.status,
                        hsts: head.hsts,
                    };
                    self.step(Input::Response(response, t));
                }
            }
            _ => {}
        }
    }

    /// A target took the server role in a TLS handshake: once, if it listens, its responses
    /// are read from now on (a probe on its own `SSL_write`).
    pub(super) fn server_tls_role(&mut self, t: &Tls) {
        if t.call != TlsCall::ServerRole as u32 {
            return;
        }
        if self
            .analyzer
            .wants_server_writes(ProcessKey::new(t.tgid, t.start))
        {
            let _ = self.probes_tx.send(attach::Request::ServerWrites {
                pid: t.tgid,
                start: t.start,
            });
        }
    }

    /// A target's listener: into the analysis, and the receive hook attached if it listens
    /// beyond loopback (loopback-only listeners are never reported, so they cost nothing).
    fn listening(&mut self, l: Listen, time: SystemTime) {
        let beyond_loopback = !l.addr.ip().to_canonical().is_loopback();
        self.step(Input::Listen(l, time.into()));
        if beyond_loopback && !self.listeners.ingress_requested {
            self.listeners.ingress_requested = true;
            let _ = self.probes_tx.send(attach::Request::ServerIngress);
        }
    }

    /// Server-side session entries of processes no longer watched (their `SSL_free` was never
    /// seen: killed, or exited mid-session).
    pub(super) fn sweep_server_sessions(&mut self) {
        let Some(sessions) = self.listeners.sessions.as_mut() else {
            return;
        };
        let analyzer = &self.analyzer;
        let waiting = &self.waiting;
        let stale: Vec<SslKey> = sessions
            .keys()
            .filter_map(Result::ok)
            .filter(|k| analyzer.info(k.tgid).is_none() && !waiting.contains_key(&k.tgid))
            .collect();
        for key in &stale {
            let _ = sessions.remove(key);
        }
    }

    /// The listeners a new target already had: marked through their descriptors, so their
    /// connections are seen from now on; those that cannot be marked are reported.
    pub(super) fn adopt_listeners(&mut self, key: ProcessKey) {
        if key.pid == self.own_pid {
            return;
        }
        let Some(map) = self.listeners.map.as_mut() else {
            return;
        };
        let open = open_listeners(&ProcFs::default(), key.pid);
        if open.is_empty() {
            return;
        }
        let mut adopted: Vec<(u64, SocketAddr)> = Vec::new();
        let mut unmarked: Vec<String> = Vec::new();
        for listener in open {
            let id = ADOPTED | listener.inode;
            let value = ServerSock {
                sock: SockState {
                    tgid: key.pid,
                    fd: listener.fd as i32,
                    start: key.start,
                    flags: 0,
                    captured: 0,
                    outcome: OUTCOME_PENDING,
                    next_seq: 0,
                    next_record: 0,
                    records: 0,
                    born: 0,
                },
                listener: id,
            };
            let marked = steal_fd(key.pid, listener.fd).and_then(|fd| {
                map.insert(&fd, value, BPF_NOEXIST).map_err(|e| match e {
                    MapError::SyscallError(e) => e.io_error,
                    other => std::io::Error::other(other.to_string()),
                })
            });
            match marked {
                Ok(()) => adopted.push((id, listener.local)),
                // Marked already: the kernel saw it bound (its own Listen record names it).
                Err(err) if err.raw_os_error() == Some(libc::EEXIST) => {}
                Err(err) => {
                    unmarked.push(format!("{} (fd {}: {err})", listener.local, listener.fd))
                }
            }
        }
        let now = SystemTime::now();
        for (id, addr) in &adopted {
            let listen = Listen {
                tgid: key.pid,
                start: key.start,
                tid: 0,
                ktime_ns: 0,
                sock: *id,
                addr: *addr,
            };
            self.listening(listen, now);
        }
        if !unmarked.is_empty() {
            let comm = self
                .analyzer
                .info(key.pid)
                .map(|i| i.comm.clone())
                .unwrap_or_default();
            let status = Status::new(
                StatusKind::Warning,
                Some("preexisting listeners".into()),
                format!(
                    "pid {} ({comm}) was listening before it was watched, and these listeners could not be marked: {}. Requests its clients send there are not seen (no MCP_ENDPOINT_PLAINTEXT for them); restart it under the monitor",
                    key.pid,
                    unmarked.join(", ")
                ),
            );
            let _ = self.status(status);
        }
    }
}
