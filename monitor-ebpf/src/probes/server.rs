//! The server side of targets: the sockets they listen on and the first bytes their clients
//! send them, for MCP servers that take credentials over plain HTTP.
//!
//! A TCP socket a target binds (`cgroup/bind4|6`, in the binding process's context) gets a
//! `SERVER_SOCKS` socket storage entry naming the process. The map is created with
//! `BPF_F_CLONE`, so the kernel copies the entry into every connection the listener accepts;
//! `cgroup_skb/ingress` on the cgroup v2 root then finds it on those connections' packets and
//! captures their first bytes exactly as the egress side does for connections a target opens
//! (`skb::capture`: sequence order, retransmits skipped, a per-socket budget, drops counted).
//! Every other packet of the host costs one socket storage lookup. `cgroup/sock_release`
//! tells userspace when a listener or connection goes.
//!
//! A listener bound before the monitor started has no entry: userspace adds one through the
//! socket's descriptor (`pidfd_getfd`), with an id of its own in `ServerSock::listener`.
use aya_ebpf::{
    bindings::{BPF_F_CLONE, BPF_F_NO_PREALLOC},
    helpers::{
        bpf_get_current_pid_tgid,
        generated::{bpf_sk_fullsock, bpf_sk_storage_get},
    },
    macros::{btf_map, cgroup_skb, cgroup_sock, cgroup_sock_addr, map},
    maps::PerCpuArray,
    programs::{SkBuffContext, SockAddrContext, SockContext},
};
use monitor_common::{
    sock_flags, AcceptEvent, EventKind, ListenEvent, PayloadEvent, ServerCloseEvent, ServerSock,
    SockState, AF_INET, AF_INET6, OUTCOME_PENDING, SOCK_STREAM,
};

use super::skb::capture;
use crate::maps::{current_start, header, header_for, is_targeted, reserve, SockStorage};

const BPF_SK_STORAGE_GET_F_CREATE: u64 = 1;
const TCP_LISTEN: u32 = 10;

/// Listeners of targets and the connections they accepted (see the module docs).
#[btf_map]
pub static SERVER_SOCKS: SockStorage<ServerSock, { (BPF_F_NO_PREALLOC | BPF_F_CLONE) as usize }> =
    SockStorage::new();

/// The record ingress payloads are built in (its own: ingress runs in softirq context and may
/// interrupt a capture of the egress side on the same CPU).
#[map]
static SERVER_SCRATCH: PerCpuArray<PayloadEvent> = PerCpuArray::with_max_entries(1, 0);

/// `int bind(...)` on an IPv4 socket, before it is done.
#[cgroup_sock_addr(bind4)]
pub fn bind4(ctx: SockAddrContext) -> i32 {
    on_bind(&ctx, AF_INET);
    1
}

/// `int bind(...)` on an IPv6 socket.
#[cgroup_sock_addr(bind6)]
pub fn bind6(ctx: SockAddrContext) -> i32 {
    on_bind(&ctx, AF_INET6);
    1
}

#[inline(always)]
fn on_bind(ctx: &SockAddrContext, family: u16) {
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
            a.__bindgen_anon_1.sk,
        )
    };
    if sock_type != SOCK_STREAM as u32 || sk.is_null() {
        return;
    }
    // The typed socket pointer allows no arithmetic; as a number it names the listener.
    // SAFETY: copying a pointer value through the helper.
    let id = unsafe { aya_ebpf::helpers::bpf_probe_read_kernel(&(sk as u64)) }.unwrap_or(0);
    let mut init = ServerSock {
        sock: SockState {
            tgid,
            fd: -1,
            start: current_start(),
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
    // SAFETY: `sk` is the context's socket; the helper returns the entry (existing or new).
    let entry = unsafe {
        bpf_sk_storage_get(
            SERVER_SOCKS.as_ptr(),
            sk.cast(),
            core::ptr::from_mut(&mut init).cast(),
            BPF_SK_STORAGE_GET_F_CREATE,
        )
    };
    if entry.is_null() {
        return;
    }
    let mut addr = [0u8; 16];
    if family == AF_INET {
        addr[..4].copy_from_slice(&ip4.to_ne_bytes());
    } else {
        for (i, word) in ip6.iter().enumerate() {
            addr[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
        }
    }
    let Some(mut event) = reserve::<ListenEvent>() else {
        return;
    };
    event.write(ListenEvent {
        header: header(EventKind::Listen, pid_tgid),
        sock: id,
        family,
        port: u16::from_be(port_be as u16),
        _pad: 0,
        addr,
    });
    event.submit(0);
}

#[cgroup_skb(ingress)]
pub fn skb_ingress(ctx: SkBuffContext) -> i32 {
    // SAFETY: `sk` of the context is the socket the packet was delivered to (or null).
    let sk = unsafe { (*ctx.skb.skb).__bindgen_anon_2.sk };
    if sk.is_null() {
        return 1;
    }
    // SAFETY: helper on the context's socket; request and time-wait sockets give null.
    let full = unsafe { bpf_sk_fullsock(sk) };
    if full.is_null() {
        return 1;
    }
    // SAFETY: lookup only (no create): the one cost of every other packet.
    let state =
        unsafe { bpf_sk_storage_get(SERVER_SOCKS.as_ptr(), full.cast(), core::ptr::null_mut(), 0) }
            .cast::<ServerSock>();
    if state.is_null() {
        return 1;
    }
    // SAFETY: map value pointer (the socket's own entry) and a socket field the verifier allows.
    let (flags, listener, tcp_state) =
        unsafe { ((*state).sock.flags, (*state).listener, (*full).state) };
    if flags & sock_flags::DONE != 0 || tcp_state == TCP_LISTEN {
        return 1;
    }
    let id = sk as u64;
    if listener == id {
        // The bound socket itself (a client that bound before connecting): not a server's.
        return 1;
    }
    if flags & sock_flags::SERVER_SEEN == 0 {
        // SAFETY: as above.
        unsafe { (*state).sock.flags |= sock_flags::SERVER_SEEN };
        accepted(&ctx, id, state);
    }
    // SAFETY: the `SockState` at the start of the entry, which `capture` keeps up to date.
    let sock = unsafe { core::ptr::addr_of_mut!((*state).sock) };
    let _ = capture(
        &ctx,
        id,
        sock,
        EventKind::ServerPayload,
        &SERVER_SCRATCH,
        false,
    );
    1
}

/// The connection's addresses from its first packet: the client's and the one it reached.
#[inline(always)]
fn accepted(ctx: &SkBuffContext, sk: u64, state: *const ServerSock) {
    let Ok(first) = ctx.load::<u8>(0) else {
        return;
    };
    let mut local = [0u8; 16];
    let mut peer = [0u8; 16];
    let (family, ports_at) = match first >> 4 {
        4 => {
            let (Ok(src), Ok(dst)) = (ctx.load::<[u8; 4]>(12), ctx.load::<[u8; 4]>(16)) else {
                return;
            };
            peer[..4].copy_from_slice(&src);
            local[..4].copy_from_slice(&dst);
            (AF_INET, ((first & 0x0f) as usize) * 4)
        }
        6 => {
            let (Ok(src), Ok(dst)) = (ctx.load::<[u8; 16]>(8), ctx.load::<[u8; 16]>(24)) else {
                return;
            };
            peer = src;
            local = dst;
            (AF_INET6, 40)
        }
        _ => return,
    };
    let (Ok(src_port), Ok(dst_port)) = (ctx.load::<u16>(ports_at), ctx.load::<u16>(ports_at + 2))
    else {
        return;
    };
    // SAFETY: map value pointer, copied out.
    let s = unsafe { *state };
    let Some(mut event) = reserve::<AcceptEvent>() else {
        return;
    };
    event.write(AcceptEvent {
        header: header_for(EventKind::Accept, s.sock.tgid, s.sock.start),
        sock: sk,
        listener: s.listener,
        family,
        local_port: u16::from_be(dst_port),
        peer_port: u16::from_be(src_port),
        _pad: 0,
        local,
        peer,
    });
    event.submit(0);
}

/// A socket's last descriptor is closed: a target's listener, or one of its connections.
#[cgroup_sock(sock_release)]
pub fn server_release(ctx: SockContext) -> i32 {
    // SAFETY: the context is the socket; lookup only.
    let state = unsafe {
        bpf_sk_storage_get(
            SERVER_SOCKS.as_ptr(),
            ctx.sock.cast(),
            core::ptr::null_mut(),
            0,
        )
    }
    .cast::<ServerSock>();
    if state.is_null() {
        return 1;
    }
    // SAFETY: map value pointer, copied out.
    let s = unsafe { *state };
    let id = ctx.sock as u64;
    let listener = s.listener == id;
    if !listener && s.sock.flags & sock_flags::SERVER_SEEN == 0 {
        // A connection nothing was seen of, or a listener userspace marked (it knows its end
        // from the process's).
        return 1;
    }
    if let Some(mut event) = reserve::<ServerCloseEvent>() {
        event.write(ServerCloseEvent {
            header: header_for(EventKind::ServerClose, s.sock.tgid, s.sock.start),
            sock: id,
            listener: listener as u32,
            undecided: (s.sock.flags & sock_flags::DONE == 0) as u32,
        });
        event.submit(0);
    }
    1
}
