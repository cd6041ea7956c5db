//! The responses of targets that serve TLS: the start of the first `SSL_write` calls of each
//! server-side OpenSSL session, where an HTTPS server's status line and headers are in the
//! clear (for `Strict-Transport-Security`).
//!
//! `SSL_write` runs per write, so this probe is never attached host-wide: userspace attaches
//! it to one process at a time (a uprobe scoped to that process), and only to targets that
//! listen and took the server role in a handshake. A session is a server's when it went
//! through `SSL_set_accept_state` (`openssl.rs` calls [`server_session`]); client sessions of
//! the same process cost one lookup per write, server sessions stop being copied after
//! `RESPONSE_WRITES` writes.
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user_buf},
    macros::{map, uprobe},
    maps::{HashMap, PerCpuArray},
    programs::ProbeContext,
};
use monitor_common::{
    payload_source, Drop, EventKind, PayloadEvent, SslKey, PAYLOAD_HEADER_LEN, RESPONSE_MAX,
    RESPONSE_WRITES,
};

use crate::maps::{count_drop, header, EVENTS};

/// Server-side sessions of targets: writes copied so far. Inserted at
/// `SSL_set_accept_state`, removed at `SSL_free` (and by userspace for a process that ended).
#[map]
pub static SERVER_SSL: HashMap<SslKey, u32> = HashMap::with_max_entries(16_384, 0);

#[map]
static RESPONSE_SCRATCH: PerCpuArray<PayloadEvent> = PerCpuArray::with_max_entries(1, 0);

const _: () =
    assert!(RESPONSE_MAX.is_power_of_two() && RESPONSE_MAX <= monitor_common::PAYLOAD_MAX);

#[inline(always)]
fn key(pid_tgid: u64, ssl: u64) -> SslKey {
    SslKey {
        tgid: (pid_tgid >> 32) as u32,
        _pad: 0,
        ssl,
    }
}

/// A target's session took the server role.
#[inline(always)]
pub fn server_session(pid_tgid: u64, ssl: u64) {
    if SERVER_SSL
        .insert(key(pid_tgid, ssl), 0, BPF_NOEXIST as u64)
        .is_err()
        && SERVER_SSL.get_ptr(key(pid_tgid, ssl)).is_none()
    {
        count_drop(Drop::TlsStateFull);
    }
}

/// A target's session was freed.
#[inline(always)]
pub fn forget_session(pid_tgid: u64, ssl: u64) {
    let _ = SERVER_SSL.remove(key(pid_tgid, ssl));
}

/// `int SSL_write(SSL *ssl, const void *buf, int num)`, and
/// `int SSL_write_ex(SSL *ssl, const void *buf, size_t num, size_t *written)`.
#[uprobe]
pub fn ssl_write_server(ctx: ProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let ssl: u64 = ctx.arg(0).unwrap_or(0);
    let Some(count) = SERVER_SSL.get_ptr_mut(key(pid_tgid, ssl)) else {
        return 0;
    };
    // SAFETY: map value pointer.
    unsafe {
        if *count >= RESPONSE_WRITES {
            return 0;
        }
        *count += 1;
    }
    let buf: u64 = ctx.arg(1).unwrap_or(0);
    let len: u64 = ctx.arg(2).unwrap_or(0);
    // `int num` of SSL_write: only the low 32 bits are the argument.
    let len = len & 0xffff_ffff;
    if buf == 0 || len == 0 {
        return 0;
    }
    let Some(scratch) = RESPONSE_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    let n = (len as usize).min(RESPONSE_MAX);
    // SAFETY: this CPU's scratch record; user memory is read with a faulting-safe helper.
    unsafe {
        (*scratch).header = header(EventKind::TlsResponse, pid_tgid);
        (*scratch).sock = ssl;
        (*scratch).fd = -1;
        (*scratch).source = payload_source::SSL_WRITE;
        (*scratch).len = len as u32;
        // Bounded to [1, RESPONSE_MAX] in a form the verifier tracks (see `payload.rs`).
        let n = core::ptr::read_volatile(&n);
        let n = ((n - 1) & (RESPONSE_MAX - 1)) + 1;
        let data = &mut (*scratch).data;
        if bpf_probe_read_user_buf(buf as *const u8, &mut data[..n]).is_err() {
            return 0;
        }
        (*scratch).captured = n as u32;
        let bytes = core::slice::from_raw_parts(scratch as *const u8, PAYLOAD_HEADER_LEN + n);
        if EVENTS.output::<[u8]>(bytes, 0).is_err() {
            count_drop(Drop::RingBufFull);
        }
    }
    0
}
