//! Go's `crypto/tls` client handshake through uprobes, attached by userspace to the executable of
//! each targeted Go process only (`UProbeScope::OneProcess`: other processes running the same
//! binary never trap), at function entries found in the binary's `.gopclntab`.
//!
//! Go code runs on goroutines that move between threads and whose stacks move, so there are no
//! return probes here and nothing is kept per thread: each probe reads the registers of Go's
//! register ABI (Go 1.17+ on amd64: arguments in RAX, RBX, RCX, ...; the goroutine `g` in R14)
//! and reports what it saw; userspace ties the two probes together by goroutine.
//!
//! - `crypto/tls.(*Conn).verifyServerCertificate(certificates [][]byte) error` runs once per
//!   full client handshake (TLS 1.2 and 1.3), whatever `InsecureSkipVerify` says: the
//!   connection (`c` in RAX), the server's chain (RBX, RCX: the slice's pointer and length), and
//!   the socket under the connection (read through the field offsets userspace took from its
//!   per-Go-version table, and checked: see [`conn_socket`]).
//! - `crypto/x509.(*Certificate).Verify` is called by it only when `InsecureSkipVerify` is
//!   false. Whether a call comes from crypto/tls itself or from application code (a
//!   `VerifyPeerCertificate` callback that verifies on its own) is told by its return address:
//!   inside `verifyServerCertificate`'s code or not.
use aya_ebpf::{
    helpers::{
        bpf_get_attach_cookie, bpf_get_current_pid_tgid, bpf_probe_read_user,
        bpf_probe_read_user_buf,
    },
    macros::{map, uprobe},
    maps::HashMap,
    programs::ProbeContext,
    EbpfContext as _,
};
use monitor_common::{
    cert_form, go_tls, x509, CertEvent, EventKind, GoTlsConfig, TlsCall, TlsEvent, AF_INET,
    AF_INET6, CERT_MAX, SOCK_STREAM,
};

use crate::maps::{fd_socket, header, is_targeted, reserve};

/// What each hook needs to know about its binary, by attach cookie (set by userspace before the
/// probe is attached, removed when no process of the binary is watched any more).
#[map]
pub static GO_TLS: HashMap<u64, GoTlsConfig> = HashMap::with_max_entries(4_096, 0);

/// Registers of a uprobe on a Go function (register ABI).
struct GoRegs {
    /// Return address (the top of the stack at entry: Go calls with CALL too).
    sp: u64,
    ip: u64,
    rax: u64,
    rbx: u64,
    rcx: u64,
    /// The current goroutine.
    g: u64,
}

#[cfg(bpf_target_arch = "x86_64")]
#[inline(always)]
fn regs(ctx: &ProbeContext) -> Option<GoRegs> {
    // SAFETY: the context points to the saved user registers.
    unsafe {
        let r = &*ctx.regs;
        Some(GoRegs {
            sp: r.rsp,
            ip: r.rip,
            rax: r.rax,
            rbx: r.rbx,
            rcx: r.rcx,
            g: r.r14,
        })
    }
}

/// Go's register ABI is only read on amd64: elsewhere the probes report nothing (userspace does
/// not attach them either).
#[cfg(not(bpf_target_arch = "x86_64"))]
#[inline(always)]
fn regs(_ctx: &ProbeContext) -> Option<GoRegs> {
    None
}

#[inline(always)]
fn cookie(ctx: &ProbeContext) -> u64 {
    // SAFETY: uprobe programs may read their attach cookie.
    unsafe { bpf_get_attach_cookie(ctx.as_ptr()) }
}

#[inline(always)]
fn emit(ctx: &ProbeContext, pid_tgid: u64, call: TlsCall, ssl: u64, ptr2: u64, value: i64) {
    let Some(mut entry) = reserve::<TlsEvent>() else {
        return;
    };
    let event = entry.as_mut_ptr();
    // SAFETY: exclusive reserved slot; every field is written before submit.
    unsafe {
        (*event).header = header(EventKind::Tls, pid_tgid);
        (*event).call = call as u32;
        (*event).library = (cookie(ctx) >> monitor_common::COOKIE_HOOK_BITS) as u32;
        (*event).ssl = ssl;
        (*event).ptr2 = ptr2;
        (*event).value = value;
        (*event).text_len = 0;
        (*event)._pad = 0;
    }
    entry.submit(0);
}

#[inline(always)]
fn read_u64(addr: u64) -> Option<u64> {
    if addr == 0 {
        return None;
    }
    // SAFETY: user memory read with a faulting-safe helper.
    unsafe { bpf_probe_read_user(addr as *const u64).ok() }
}

/// The kernel socket (and descriptor) under a `*tls.Conn`, through `c.conn` (a `net.Conn`
/// interface whose data word points to a `*net.TCPConn`), its `*netFD` and `pfd.Sysfd`. Only
/// when the binary's Go version is in userspace's table; and nothing read here is trusted: the
/// `netFD` must say it is a stream socket of an internet family, and the descriptor must be a
/// socket of this process (userspace then ties it to a connection it saw this process make, or
/// to none). A connection that is not a `*net.TCPConn` (a wrapper from a custom dialer) fails
/// these checks.
#[inline(always)]
fn conn_socket(config: &GoTlsConfig, conn: u64) -> Option<(u64, i32)> {
    if config.flags & go_tls::SOCKET_OFFSETS == 0 {
        return None;
    }
    let data = read_u64(conn + config.conn_data as u64)?;
    let fd = read_u64(data + config.netconn_fd as u64)?;
    let sysfd = read_u64(fd + config.fd_sysfd as u64)? as i64;
    let family = read_u64(fd + config.fd_family as u64)?;
    let sotype = read_u64(fd + config.fd_sotype as u64)?;
    if !(0..=i32::MAX as i64).contains(&sysfd)
        || (family != AF_INET as u64 && family != AF_INET6 as u64)
        || sotype != SOCK_STREAM as u64
    {
        return None;
    }
    let (sock, _) = fd_socket(sysfd as i32)?;
    Some((sock, sysfd as i32))
}

/// Slice header of one `[]byte` of the chain: pointer, length, capacity.
const SLICE_HEADER: u64 = 24;

/// One certificate of the chain (DER, as the server sent it).
#[inline(always)]
fn send_cert(ctx: &ProbeContext, pid_tgid: u64, conn: u64, der: u64, len: u64) -> bool {
    if der == 0 || len == 0 || len > u32::MAX as u64 {
        return false;
    }
    let Some(mut entry) = reserve::<CertEvent>() else {
        return false;
    };
    let event = entry.as_mut_ptr();
    // Length in [1, CERT_MAX]: a volatile read hides it from the compiler (which would drop the
    // mask), the mask bounds it for the verifier (CERT_MAX is a power of two).
    // SAFETY: read of a local.
    let copy = unsafe { core::ptr::read_volatile(&(len as usize).min(CERT_MAX)) };
    let copy = ((copy - 1) & (CERT_MAX - 1)) + 1;
    // SAFETY: exclusive reserved slot; bounded copy from user memory.
    unsafe {
        (*event).header = header(EventKind::Cert, pid_tgid);
        (*event).library = (cookie(ctx) >> monitor_common::COOKIE_HOOK_BITS) as u32;
        (*event).ssl = conn;
        (*event).der_len = len as u32;
        (*event).form = cert_form::DER;
        (*event).sig_unused = 0;
        (*event).sig_len = 0;
        (*event)._pad = 0;
        if bpf_probe_read_user_buf(der as *const u8, &mut (&mut (*event).der)[..copy]).is_err() {
            (*event).der_len = 0;
        }
    }
    entry.submit(0);
    true
}

/// `func (c *Conn) verifyServerCertificate(certificates [][]byte) error`
#[uprobe]
pub fn go_verify_server_cert(ctx: ProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_targeted((pid_tgid >> 32) as u32) {
        return 0;
    }
    let Some(r) = regs(&ctx) else {
        return 0;
    };
    let Some(config) = GO_TLS.get_ptr(cookie(&ctx)) else {
        return 0;
    };
    // SAFETY: map value pointer.
    let config = unsafe { *config };
    let (conn, chain, count) = (r.rax, r.rbx, r.rcx);
    if conn == 0 {
        return 0;
    }
    emit(
        &ctx,
        pid_tgid,
        TlsCall::GoServerCert,
        conn,
        r.g,
        count as i64,
    );
    // Always said, found or not: a session without a socket is never tied to a connection by
    // guesswork in userspace.
    let (sock, fd) = conn_socket(&config, conn).unwrap_or((0, -1));
    emit(&ctx, pid_tgid, TlsCall::SetFd, conn, sock, fd as i64);
    for i in 0..x509::CHAIN_MAX {
        if i as u64 >= count {
            break;
        }
        let at = chain + i as u64 * SLICE_HEADER;
        let (Some(der), Some(len)) = (read_u64(at), read_u64(at + 8)) else {
            break;
        };
        if !send_cert(&ctx, pid_tgid, conn, der, len) {
            break;
        }
    }
    0
}

/// `func (c *Certificate) Verify(opts VerifyOptions) (chains [][]*Certificate, err error)`
#[uprobe]
pub fn go_x509_verify(ctx: ProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_targeted((pid_tgid >> 32) as u32) {
        return 0;
    }
    let Some(r) = regs(&ctx) else {
        return 0;
    };
    let Some(config) = GO_TLS.get_ptr(cookie(&ctx)) else {
        return 0;
    };
    // SAFETY: map value pointer.
    let config = unsafe { *config };
    let Some(ret) = read_u64(r.sp) else {
        return 0;
    };
    // verifyServerCertificate's code, where it is mapped in this process: `caller_back` bytes
    // before this function's entry (two's complement when it lies after it).
    let start = r.ip.wrapping_sub(config.caller_back);
    let from_crypto_tls = ret.wrapping_sub(start) < config.caller_len;
    emit(
        &ctx,
        pid_tgid,
        TlsCall::GoX509Verify,
        0,
        r.g,
        from_crypto_tls as i64,
    );
    0
}
