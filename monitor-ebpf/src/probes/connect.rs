//! `connect(2)` through the syscall tracepoints, and what became of it through
//! `sock:inet_sock_set_state`.
//!
//! The destination is read from user memory at entry (the caller may reuse the buffer once the
//! syscall returns) and parked in the thread's state; the exit reports it with the result. A TCP
//! socket is tracked from the entry on, by its `struct sock` (`SOCKETS`): the state machine then
//! tells the outcome of a non-blocking connect (established, refused, timed out) even when it
//! arrives while the syscall still runs, and the socket's end, which removes the entry whatever
//! happened to the descriptor (`close`, `dup2` over it, `close_range`, close-on-exec, exit).
use aya_ebpf::{
    bindings::BPF_ANY,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user,
    },
    macros::{map, tracepoint},
    maps::HashMap,
    programs::TracePointContext,
};
use aya_log_ebpf::debug;
use monitor_common::{
    sock_flags, ConnectEvent, ConnectResultEvent, Drop, EventKind, SockState, SocketCloseEvent,
    AF_INET, AF_INET6, OUTCOME_PENDING, SOCK_STREAM, SOCK_TYPE_UNKNOWN,
};

use crate::maps::{
    count_drop, current_start, fd_socket, header, header_for, is_targeted, reserve, sock_error,
    thread, thread_or_insert, PendingConnect,
};

/// TCP sockets targets connected, by `struct sock` address, from their connect until the kernel
/// closes them.
#[map]
pub static SOCKETS: HashMap<u64, SockState> = HashMap::with_max_entries(65_536, 0);

#[repr(C)]
#[derive(Clone, Copy)]
struct SockaddrIn {
    family: u16,
    port_be: u16,
    addr: [u8; 4],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct SockaddrIn6 {
    family: u16,
    port_be: u16,
    flowinfo: u32,
    addr: [u8; 16],
}

const EBADF: i64 = 9;
const ENOTSOCK: i64 = 88;
const EALREADY: i64 = 114;
const EINPROGRESS: i64 = 115;
const EISCONN: i64 = 106;
const ECONNABORTED: i32 = 103;

// Offsets in the syscall tracepoint records (stable ABI: see
// /sys/kernel/tracing/events/syscalls/sys_{enter,exit}_connect/format).
const ARG0: usize = 16;
const ARG1: usize = 24;
const ARG2: usize = 32;
const RET: usize = 16;

// sock:inet_sock_set_state (see its format file): a stable tracepoint since 4.16.
const TP_SKADDR: usize = 8;
const TP_OLDSTATE: usize = 16;
const TP_NEWSTATE: usize = 20;
const TP_PROTOCOL: usize = 30;
const IPPROTO_TCP: u16 = 6;
const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_SENT: i32 = 2;
const TCP_CLOSE: i32 = 7;

/// `int connect(int fd, const struct sockaddr *uservaddr, int addrlen)`: entry.
#[tracepoint]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_targeted((pid_tgid >> 32) as u32) {
        return 0;
    }
    let _ = enter(&ctx, pid_tgid);
    0
}

fn enter(ctx: &TracePointContext, pid_tgid: u64) -> Result<(), i32> {
    // SAFETY: offsets come from the tracepoint's format (stable syscall ABI).
    let (fd, uaddr, addrlen) = unsafe {
        (
            ctx.read_at::<u64>(ARG0)?,
            ctx.read_at::<u64>(ARG1)?,
            ctx.read_at::<u64>(ARG2)?,
        )
    };
    // SAFETY: bpf_probe_read_user checks the user pointer.
    let family = unsafe { bpf_probe_read_user(uaddr as *const u16)? };
    let mut pending = PendingConnect {
        valid: 1,
        fd: fd as i32,
        sock: 0,
        family,
        port: 0,
        sock_type: SOCK_TYPE_UNKNOWN,
        _pad: 0,
        addr: [0; 16],
    };
    match family {
        AF_INET if addrlen >= size_of::<SockaddrIn>() as u64 => {
            // SAFETY: as above.
            let sin = unsafe { bpf_probe_read_user(uaddr as *const SockaddrIn)? };
            pending.port = u16::from_be(sin.port_be);
            pending.addr[..4].copy_from_slice(&sin.addr);
        }
        AF_INET6 if addrlen >= size_of::<SockaddrIn6>() as u64 => {
            // SAFETY: as above.
            let sin6 = unsafe { bpf_probe_read_user(uaddr as *const SockaddrIn6)? };
            pending.port = u16::from_be(sin6.port_be);
            pending.addr = sin6.addr;
        }
        // AF_UNIX, AF_NETLINK, AF_UNSPEC (disconnect), short addresses: not egress.
        _ => return Ok(()),
    }
    if let Some((sk, sock_type)) = fd_socket(pending.fd) {
        pending.sock_type = sock_type;
        if sock_type == SOCK_STREAM {
            pending.sock = track(pid_tgid, pending.fd, sk);
        }
    }
    let Some(state) = thread_or_insert(pid_tgid) else {
        // Not reported (the drop is counted); forget the socket we just tracked.
        if pending.sock != 0 {
            let _ = SOCKETS.remove(pending.sock);
        }
        return Ok(());
    };
    // SAFETY: this thread's own entry.
    unsafe { (*state).connect = pending };
    Ok(())
}

/// Start tracking a TCP socket at its connect. A socket already tracked (a second `connect` on
/// it, which only reports `EALREADY`/`EISCONN`) keeps its state. Returns the tracked socket or 0.
#[inline(always)]
fn track(pid_tgid: u64, fd: i32, sk: u64) -> u64 {
    if SOCKETS.get_ptr(sk).is_some() {
        return 0;
    }
    let tgid = (pid_tgid >> 32) as u32;
    if insert_socket(sk, tgid, fd, sock_flags::IN_CONNECT) {
        sk
    } else {
        0
    }
}

/// Track a TCP socket a target connects (`flags`: how its outcome will be learned). Counts a
/// full map; `false` then. Called before the connect's record is made: the entry's `born` is
/// then no later than any record of the connection (see `SockState::born`).
#[inline(always)]
pub fn insert_socket(sk: u64, tgid: u32, fd: i32, flags: u32) -> bool {
    let state = SockState {
        tgid,
        fd,
        start: current_start(),
        flags,
        captured: 0,
        outcome: OUTCOME_PENDING,
        next_seq: 0,
        next_record: 0,
        records: 0,
        // SAFETY: helper without preconditions.
        born: unsafe { bpf_ktime_get_ns() },
    };
    if SOCKETS.insert(sk, state, BPF_ANY as u64).is_err() {
        count_drop(Drop::SocketsFull);
        return false;
    }
    true
}

/// `connect` exit: `long ret`.
#[tracepoint]
pub fn sys_exit_connect(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    // Only threads of targets have state: one lookup for the rest.
    let Some(state) = thread(pid_tgid) else {
        return 0;
    };
    // SAFETY: this thread's own entry; copied out, then marked consumed.
    let pending = unsafe {
        let pending = (*state).connect;
        (*state).connect.valid = 0;
        pending
    };
    if pending.valid == 0 {
        return 0;
    }
    let _ = exit(&ctx, pid_tgid, &pending);
    0
}

fn exit(ctx: &TracePointContext, pid_tgid: u64, pending: &PendingConnect) -> Result<(), i32> {
    // SAFETY: stable syscall tracepoint layout.
    let ret = unsafe { ctx.read_at::<i64>(RET)? };
    let (sock, outcome) = settle_connect(pending.sock, ret);
    // Not a socket, or a repeated connect on a socket already reported: no new egress.
    if ret == -EBADF || ret == -ENOTSOCK || ret == -EALREADY || ret == -EISCONN {
        return Ok(());
    }
    if pending.sock_type == SOCK_TYPE_UNKNOWN {
        debug!(ctx, "connect: socket type of fd {} unreadable", pending.fd);
    }
    let Some(mut entry) = reserve::<ConnectEvent>() else {
        return Ok(());
    };
    entry.write(ConnectEvent {
        header: header(EventKind::Connect, pid_tgid),
        fd: pending.fd,
        ret: ret as i32,
        family: pending.family,
        sock_type: pending.sock_type,
        port: pending.port,
        _pad: 0,
        addr: pending.addr,
        comm: bpf_get_current_comm().unwrap_or_default(),
        sock,
        outcome,
        _pad2: 0,
    });
    entry.submit(0);
    Ok(())
}

/// The connect syscall of socket `sk` returned `ret`: keep tracking a socket that connects,
/// forget one that failed or already ended. Returns the socket if it is still tracked (0
/// otherwise), and what the state machine already said of a non-blocking connect (see
/// `ConnectEvent::outcome`).
#[inline(always)]
fn settle_connect(sk: u64, ret: i64) -> (u64, i32) {
    if sk == 0 {
        return (0, OUTCOME_PENDING);
    }
    let Some(state) = SOCKETS.get_ptr_mut(sk) else {
        return (0, OUTCOME_PENDING);
    };
    // SAFETY: map value pointer.
    unsafe {
        let flags = (*state).flags;
        let outcome = (*state).outcome;
        if flags & sock_flags::IN_CONNECT == 0 {
            // Not ours to settle (a repeated connect found the socket tracked already).
            return (0, OUTCOME_PENDING);
        }
        let connecting = ret == 0 || ret == -EINPROGRESS;
        if !connecting || flags & sock_flags::CLOSED != 0 {
            let _ = SOCKETS.remove(sk);
            let outcome = if ret == -EINPROGRESS {
                outcome
            } else {
                OUTCOME_PENDING
            };
            return (0, outcome);
        }
        (*state).flags = flags & !sock_flags::IN_CONNECT;
        if ret == 0 {
            (*state).outcome = 0;
            return (sk, OUTCOME_PENDING);
        }
        if outcome == OUTCOME_PENDING {
            (*state).flags |= sock_flags::AWAIT_OUTCOME;
        }
        (sk, outcome)
    }
}

/// A thread ended inside `connect` (killed): its socket is no longer "in connect".
#[inline(always)]
pub fn thread_gone(pending: &PendingConnect) {
    if pending.valid != 0 {
        let _ = settle_connect(pending.sock, -EINPROGRESS);
    }
}

/// `trace_inet_sock_set_state(sk, oldstate, newstate)`: every TCP state change on the host, in
/// whatever context caused it. Untracked sockets cost one lookup.
#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets from the tracepoint's format file.
    let (protocol, sk) = unsafe {
        (
            ctx.read_at::<u16>(TP_PROTOCOL).unwrap_or(0),
            ctx.read_at::<u64>(TP_SKADDR).unwrap_or(0),
        )
    };
    if protocol != IPPROTO_TCP {
        return 0;
    }
    let Some(state) = SOCKETS.get_ptr_mut(sk) else {
        return 0;
    };
    // SAFETY: as above.
    let (old, new) = unsafe {
        (
            ctx.read_at::<i32>(TP_OLDSTATE).unwrap_or(0),
            ctx.read_at::<i32>(TP_NEWSTATE).unwrap_or(0),
        )
    };
    // SAFETY: map value pointer, copied out and updated in place.
    let s = unsafe { *state };
    let in_connect = s.flags & sock_flags::IN_CONNECT != 0;
    if new == TCP_SYN_SENT {
        // SAFETY: map value pointer.
        unsafe { (*state).flags |= sock_flags::SYN_SENT };
        return 0;
    }
    if old == TCP_SYN_SENT && (new == TCP_ESTABLISHED || new == TCP_CLOSE) {
        let outcome = if new == TCP_ESTABLISHED {
            0
        } else {
            match sock_error(sk) {
                0 => -ECONNABORTED,
                err => -err,
            }
        };
        if in_connect {
            // The syscall has not returned: its exit reports this.
            // SAFETY: map value pointer.
            unsafe { (*state).outcome = outcome };
        } else if s.flags & sock_flags::AWAIT_OUTCOME != 0 {
            // SAFETY: map value pointer.
            unsafe {
                (*state).flags &= !sock_flags::AWAIT_OUTCOME;
                (*state).outcome = outcome;
            }
            connect_result(sk, &s, outcome);
        }
    }
    if new != TCP_CLOSE {
        return 0;
    }
    if in_connect {
        // Ended before the syscall returned: the exit forgets the socket.
        // SAFETY: map value pointer.
        unsafe { (*state).flags |= sock_flags::CLOSED };
        return 0;
    }
    // The connection is over (every byte it will send has left): tell userspace, unless it
    // never got through (its result said so already).
    if s.flags & sock_flags::CLOSE_REPORTED == 0 && old != TCP_SYN_SENT {
        socket_close(sk, &s);
    }
    let _ = SOCKETS.remove(sk);
    0
}

/// Report the outcome of a connect (written outside the process's context).
#[inline(always)]
pub fn connect_result(sk: u64, s: &SockState, result: i32) {
    if let Some(mut entry) = reserve::<ConnectResultEvent>() {
        entry.write(ConnectResultEvent {
            header: header_for(EventKind::ConnectResult, s.tgid, s.start),
            sock: sk,
            fd: s.fd,
            result,
        });
        entry.submit(0);
    }
}

/// Report the end of a tracked socket.
#[inline(always)]
pub fn socket_close(sk: u64, s: &SockState) {
    if let Some(mut entry) = reserve::<SocketCloseEvent>() {
        entry.write(SocketCloseEvent {
            header: header_for(EventKind::SocketClose, s.tgid, s.start),
            sock: sk,
            fd: s.fd,
            undecided: (s.flags & sock_flags::DONE == 0) as u32,
        });
        entry.submit(0);
    }
}
