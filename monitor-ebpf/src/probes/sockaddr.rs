//! `connect(2)` through the `cgroup/connect4` and `cgroup/connect6` hooks on the cgroup v2
//! root: the data path of the default modes. They run for connects only (no syscall
//! tracepoint puts the host's threads on the slow path), before the connection is attempted;
//! untargeted processes pay one lookup. The outcome comes later from the TCP state machine
//! (`connect.rs`): established, refused, timed out, or, when no SYN was ever sent (no route),
//! a failure seen at the socket's release (`sock.rs`).
//!
//! Datagrams sent with an explicit destination on an unconnected UDP socket (`sendto`,
//! `sendmsg`) come through `cgroup/sendmsg4|6` and are reported like a UDP connect whenever the
//! socket turns to a new destination (not for every datagram).
use aya_ebpf::{
    bindings::BPF_SK_STORAGE_GET_F_CREATE,
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, generated::bpf_sk_storage_get},
    macros::{cgroup_sock_addr, map},
    maps::LruHashMap,
    programs::SockAddrContext,
};
use monitor_common::{
    sock_flags, ConnectEvent, Drop, EventKind, AF_INET, AF_INET6, OUTCOME_PENDING, SOCK_DGRAM,
    SOCK_STREAM,
};

use super::{connect::insert_socket, skb::CLIENT_SOCKS};
use crate::maps::{count_drop, header, is_targeted, reserve, sock_fd};

const EINPROGRESS: i32 = 115;

/// The last destination reported for an unconnected UDP socket of a target (address, port,
/// then the sending process, so a socket reused by another process is reported afresh), so
/// that a socket sending to the same peer again is not reported again. The one LRU map of the
/// program: an evicted entry loses nothing but means the destination is reported a second time.
#[map]
static UDP_PEERS: LruHashMap<u64, [u32; 6]> = LruHashMap::with_max_entries(4_096, 0);

/// `int connect(...)` on an IPv4 socket, before it is attempted.
#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    on_connect(&ctx, AF_INET);
    1
}

/// `int connect(...)` on an IPv6 socket (IPv4-mapped destinations included).
#[cgroup_sock_addr(connect6)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    on_connect(&ctx, AF_INET6);
    1
}

/// `sendto`/`sendmsg` with a destination on an unconnected IPv4 UDP socket.
#[cgroup_sock_addr(sendmsg4)]
pub fn sendmsg4(ctx: SockAddrContext) -> i32 {
    on_sendmsg(&ctx, AF_INET);
    1
}

/// `sendto`/`sendmsg` with a destination on an unconnected IPv6 UDP socket.
#[cgroup_sock_addr(sendmsg6)]
pub fn sendmsg6(ctx: SockAddrContext) -> i32 {
    on_sendmsg(&ctx, AF_INET6);
    1
}

#[inline(always)]
fn on_sendmsg(ctx: &SockAddrContext, family: u16) {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if !is_targeted(tgid) {
        return;
    }
    // SAFETY: the context is the kernel's `bpf_sock_addr` for this call.
    let (peer, sk) = unsafe {
        let a = &*ctx.sock_addr;
        let mut peer = [a.user_ip4, 0, 0, 0, a.user_port, tgid];
        if family == AF_INET6 {
            peer[..4].copy_from_slice(&a.user_ip6);
        }
        (peer, a.__bindgen_anon_1.sk as u64)
    };
    // SAFETY: plain map read.
    if unsafe { UDP_PEERS.get(sk) } == Some(&peer) {
        return;
    }
    let _ = UDP_PEERS.insert(sk, peer, 0);
    on_connect(ctx, family);
}

/// Mark the context's socket for the egress hook (`skb::CLIENT_SOCKS`). A failure (no memory
/// for the storage) leaves the connection reported but its bytes unread: counted as a socket the
/// kernel could not track.
#[inline(always)]
fn mark_client(ctx: &SockAddrContext) {
    let mut one = 1u8;
    // SAFETY: the context's own socket; the helper creates the entry or returns the existing one.
    let mark = unsafe {
        bpf_sk_storage_get(
            CLIENT_SOCKS.as_ptr(),
            (*ctx.sock_addr).__bindgen_anon_1.sk.cast(),
            core::ptr::from_mut(&mut one).cast(),
            BPF_SK_STORAGE_GET_F_CREATE.into(),
        )
    };
    if mark.is_null() {
        count_drop(Drop::SocketsFull);
    }
}

#[inline(always)]
fn on_connect(ctx: &SockAddrContext, family: u16) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if !is_targeted(tgid) {
        return;
    }
    // SAFETY: the context is the kernel's `bpf_sock_addr` for this call.
    let (sock_type, port_be, ip4, ip6, sk) = unsafe {
        let a = &*ctx.sock_addr;
        (
            a.type_,
            a.user_port,
            a.user_ip4,
            a.user_ip6,
            a.__bindgen_anon_1.sk as u64,
        )
    };
    let mut addr = [0u8; 16];
    if family == AF_INET {
        addr[..4].copy_from_slice(&ip4.to_ne_bytes());
    } else {
        for (i, word) in ip6.iter().enumerate() {
            addr[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
        }
    }
    let fd = sock_fd(sk);
    let tcp = sock_type == SOCK_STREAM as u32;
    // TCP: tracked until it closes; its outcome comes from the state machine. UDP: a connect
    // only sets the peer and cannot be refused: reported as done.
    let tracked = tcp && insert_socket(sk, tgid, fd, sock_flags::AWAIT_OUTCOME);
    if tracked {
        mark_client(ctx);
    }
    let Some(mut entry) = reserve::<ConnectEvent>() else {
        return;
    };
    entry.write(ConnectEvent {
        header: header(EventKind::Connect, pid_tgid),
        fd,
        ret: if tcp { -EINPROGRESS } else { 0 },
        family,
        sock_type: if tcp { SOCK_STREAM } else { SOCK_DGRAM },
        port: u16::from_be(port_be as u16),
        _pad: 0,
        addr,
        comm: bpf_get_current_comm().unwrap_or_default(),
        sock: if tracked { sk } else { 0 },
        outcome: OUTCOME_PENDING,
        _pad2: 0,
    });
    entry.submit(0);
}
