//! Bounded payload capture on plaintext sockets: the first bytes targeted processes write to
//! the TCP sockets they connected, so userspace can find credentials sent in the clear.
//!
//! A write counts when its descriptor leads to a socket tracked in `SOCKETS` (the `struct sock`,
//! not the descriptor number: a descriptor reused for a file, replaced by `dup2` or inherited
//! after `exec` never turns a file write into a "socket stream"). Untargeted processes pay the
//! one target lookup; a socket that is classified (TLS seen here, a verdict from userspace, or
//! the budget spent) costs targets a few reads more and nothing else. Copies go through a
//! per-CPU scratch record and are clamped to `PAYLOAD_MAX` per write, so the verifier sees
//! bounded sizes on older kernels too.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user, bpf_probe_read_user_buf},
    macros::{map, tracepoint},
    maps::PerCpuArray,
    programs::TracePointContext,
};
use monitor_common::{
    payload_source, sock_flags, EventKind, PayloadEvent, SockState, PAYLOAD_HEADER_LEN,
    PAYLOAD_MAX, SOCKET_CAPTURE_BUDGET,
};

use super::connect::SOCKETS;
use crate::maps::{count_drop, fd_socket, header, is_targeted, EVENTS};

#[map]
pub static SCRATCH: PerCpuArray<PayloadEvent> = PerCpuArray::with_max_entries(1, 0);

const ARG0: usize = 16;
const ARG1: usize = 24;
const ARG2: usize = 32;
/// iovecs of one `writev`/`sendmsg` copied at most.
const MAX_IOVECS: usize = 4;
/// First byte of a TLS handshake record (ClientHello).
const TLS_HANDSHAKE: u8 = 0x16;

#[repr(C)]
#[derive(Clone, Copy)]
struct Iovec {
    base: u64,
    len: u64,
}

/// The socket behind `fd` of the current (targeted) process, when it is tracked and its
/// first bytes are still wanted.
#[inline(always)]
fn capturing(fd: u64) -> Option<(u64, *mut SockState)> {
    let (sk, _) = fd_socket(fd as i32)?;
    let state = SOCKETS.get_ptr_mut(sk)?;
    // SAFETY: map value pointer.
    if unsafe { (*state).flags } & sock_flags::DONE != 0 {
        return None;
    }
    Some((sk, state))
}

/// Copy up to `PAYLOAD_MAX` bytes of `[buf, buf+len)` into one event. Returns false when the
/// socket is done (TLS seen or budget spent), so callers stop copying further segments.
#[inline(always)]
fn capture(w: &WriteCall, source: u32, buf: u64, len: u64) -> bool {
    let state = w.state;
    if len == 0 {
        return true;
    }
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: map value pointer (this CPU's scratch, and the socket's state).
    unsafe {
        let budget = SOCKET_CAPTURE_BUDGET.saturating_sub((*state).captured) as usize;
        let n = (len as usize).min(PAYLOAD_MAX).min(budget);
        if n == 0 {
            (*state).flags |= sock_flags::DONE;
            return false;
        }
        (*scratch).header = header(EventKind::Payload, w.pid_tgid);
        (*scratch).sock = w.sock;
        (*scratch).fd = w.fd as i32;
        (*scratch).source = source;
        (*scratch).len = len.min(u32::MAX as u64) as u32;
        (*scratch).captured = 0;
        // Re-derive the bound in a form the verifier tracks on any kernel: a volatile read
        // hides `n` from the compiler (which would otherwise drop the mask as redundant), and
        // the mask bounds it to [1, PAYLOAD_MAX].
        let n = core::ptr::read_volatile(&n);
        let n = ((n - 1) & (PAYLOAD_MAX - 1)) + 1;
        let data = &mut (*scratch).data;
        if bpf_probe_read_user_buf(buf as *const u8, &mut data[..n]).is_err() {
            return true;
        }
        (*scratch).captured = n as u32;
        let first = (*state).captured == 0;
        (*state).captured += n as u32;
        // An encrypted socket: the ClientHello goes to userspace (for the SNI), nothing after.
        if (first && data[0] == TLS_HANDSHAKE) || (*state).captured >= SOCKET_CAPTURE_BUDGET {
            (*state).flags |= sock_flags::DONE;
        }
        let bytes = core::slice::from_raw_parts(scratch as *const u8, PAYLOAD_HEADER_LEN + n);
        if EVENTS.output::<[u8]>(bytes, 0).is_err() {
            count_drop(monitor_common::Drop::RingBufFull);
        }
        (*state).flags & sock_flags::DONE == 0
    }
}

/// What every write-like syscall starts with: the target check (the one lookup everyone pays),
/// the socket's capture state, and the two arguments after the fd (buffer and length, or iovec
/// array and count, or message header and flags).
struct WriteCall {
    pid_tgid: u64,
    fd: u64,
    sock: u64,
    state: *mut SockState,
    arg1: u64,
    arg2: u64,
}

#[inline(always)]
fn write_call(ctx: &TracePointContext) -> Option<WriteCall> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_targeted((pid_tgid >> 32) as u32) {
        return None;
    }
    // SAFETY: stable syscall tracepoint layout (fd, then two 8-byte arguments).
    let fd = unsafe { ctx.read_at::<u64>(ARG0) }.ok()?;
    let (sock, state) = capturing(fd)?;
    // SAFETY: as above.
    let (arg1, arg2) = unsafe {
        (
            ctx.read_at::<u64>(ARG1).ok()?,
            ctx.read_at::<u64>(ARG2).ok()?,
        )
    };
    Some(WriteCall {
        pid_tgid,
        fd,
        sock,
        state,
        arg1,
        arg2,
    })
}

/// `ssize_t write(int fd, const void *buf, size_t count)`
#[tracepoint]
pub fn sys_enter_write(ctx: TracePointContext) -> u32 {
    if let Some(w) = write_call(&ctx) {
        capture(&w, payload_source::WRITE, w.arg1, w.arg2);
    }
    0
}

/// `ssize_t sendto(int fd, const void *buf, size_t len, int flags, ...)` (also `send`)
#[tracepoint]
pub fn sys_enter_sendto(ctx: TracePointContext) -> u32 {
    if let Some(w) = write_call(&ctx) {
        capture(&w, payload_source::SENDTO, w.arg1, w.arg2);
    }
    0
}

/// The first `MAX_IOVECS` segments of a vectored write, each as its own payload record.
#[inline(always)]
fn capture_iovecs(w: &WriteCall, source: u32, iov: u64, count: u64) {
    for i in 0..MAX_IOVECS {
        if i as u64 >= count {
            break;
        }
        // SAFETY: user pointer read with a faulting-safe helper.
        let Ok(v) = (unsafe { bpf_probe_read_user((iov as *const Iovec).wrapping_add(i)) }) else {
            break;
        };
        if !capture(w, source, v.base, v.len) {
            break;
        }
    }
}

/// `ssize_t writev(int fd, const struct iovec *iov, int iovcnt)`
#[tracepoint]
pub fn sys_enter_writev(ctx: TracePointContext) -> u32 {
    if let Some(w) = write_call(&ctx) {
        capture_iovecs(&w, payload_source::WRITEV, w.arg1, w.arg2);
    }
    0
}

/// `struct user_msghdr`: name, namelen (+pad), iov, iovlen, ...
#[repr(C)]
#[derive(Clone, Copy)]
struct MsgHdr {
    name: u64,
    namelen: u64,
    iov: u64,
    iovlen: u64,
}

/// `ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)`
#[tracepoint]
pub fn sys_enter_sendmsg(ctx: TracePointContext) -> u32 {
    if let Some(w) = write_call(&ctx) {
        // SAFETY: the header is read with a faulting-safe helper.
        if let Ok(hdr) = unsafe { bpf_probe_read_user(w.arg1 as *const MsgHdr) } {
            capture_iovecs(&w, payload_source::SENDMSG, hdr.iov, hdr.iovlen);
        }
    }
    0
}
