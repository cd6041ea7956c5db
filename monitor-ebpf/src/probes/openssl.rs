//! The OpenSSL API through uprobes, attached by userspace to shared `libssl`/`libcrypto` and to
//! binaries that embed OpenSSL and export its API (Node's `node`, `libnode.so`).
//!
//! Facts come from calls' arguments and return values (the one exception: the certificates of
//! `ssl_verify_cert_chain`, see there), and every hook here runs once per session or
//! handshake, never per read or write: `SSL_read`/`SSL_write` are not hooked host-wide (whether
//! a session carried application data is seen in the packets, see `skb.rs`; the responses of a
//! target serving TLS are read by a probe attached to that process only, see `tls_server.rs`,
//! for the server sessions `SSL_set_accept_state` names). Per thread
//! (`THREADS`, removed at the thread's exit) we remember which SSL object the thread is
//! handshaking (inside `SSL_do_handshake`, which `SSL_connect` calls), so calls that do not
//! name it (`d2i_X509`, `X509_verify_cert`, `X509_STORE_CTX_get_error`) are tied to it.
//! `d2i_X509` is hooked at libssl's own PLT stub (userspace finds it), so only libssl's calls
//! trap, never the CA-bundle loads of any process.
use aya_ebpf::{
    helpers::{
        bpf_get_attach_cookie, bpf_get_current_pid_tgid, bpf_probe_read_user,
        bpf_probe_read_user_buf, bpf_probe_read_user_str_bytes,
    },
    macros::{map, uprobe, uretprobe},
    maps::HashMap,
    programs::{ProbeContext, RetProbeContext},
};
use monitor_common::{
    cert_form, ssl_flags, x509, CertEvent, Drop, EventKind, SslKey, SslState, TextRange, TlsCall,
    TlsEvent, CERT_MAX, CERT_SIG_MAX, MAX_CERTS_PER_SESSION, TLS_TEXT_LEN,
};

use crate::maps::{
    count_drop, fd_socket, header, is_targeted, reserve, thread, thread_or_insert, CurrentSsl,
};

/// Per session: handshake finished, verdict reached, certificates captured.
#[map]
pub static SSL_STATE: HashMap<SslKey, SslState> = HashMap::with_max_entries(65_536, 0);

/// The code around a hooked function, by attach cookie: `lo` bytes before the hooked address
/// and `hi` bytes after it still belong to the library's executable segment. Set by userspace
/// for the hooks that start handshakes.
#[map]
pub static HOOK_TEXT: HashMap<u64, TextRange> = HashMap::with_max_entries(4_096, 0);

// Stash slots (`ThreadState::stash`): one per function whose return probe needs an argument.
const F_SSL_NEW: usize = 0;
const F_GET0_PARAM: usize = 1;
const F_HANDSHAKE: usize = 2;
const F_VERIFY_RESULT: usize = 3;

/// `SSL_CTRL_SET_TLSEXT_HOSTNAME`
const SSL_CTRL_SET_TLSEXT_HOSTNAME: i64 = 55;

#[inline(always)]
fn tgid(pid_tgid: u64) -> u32 {
    (pid_tgid >> 32) as u32
}

#[inline(always)]
fn key(pid_tgid: u64, ssl: u64) -> SslKey {
    SslKey {
        tgid: tgid(pid_tgid),
        _pad: 0,
        ssl,
    }
}

#[inline(always)]
fn cookie<C: aya_ebpf::EbpfContext>(ctx: &C) -> u64 {
    // SAFETY: uprobe programs may read their attach cookie.
    unsafe { bpf_get_attach_cookie(ctx.as_ptr()) }
}

/// The library a probe sits in (the cookie's upper bits; the low byte is the hook).
#[inline(always)]
fn library<C: aya_ebpf::EbpfContext>(ctx: &C) -> u32 {
    (cookie(ctx) >> monitor_common::COOKIE_HOOK_BITS) as u32
}

/// Instruction pointer at a uprobe (the hooked function's address in this process).
#[cfg(bpf_target_arch = "x86_64")]
#[inline(always)]
fn probe_ip(ctx: &ProbeContext) -> u64 {
    // SAFETY: the context points to the saved registers.
    unsafe { (*ctx.regs).rip }
}

/// Where the function that just got control will return to (entry probes only).
#[cfg(bpf_target_arch = "x86_64")]
#[inline(always)]
fn return_address(ctx: &ProbeContext) -> Option<u64> {
    // SAFETY: the return address is the top of the user stack at function entry.
    unsafe { bpf_probe_read_user((*ctx.regs).rsp as *const u64).ok() }
}

#[cfg(not(bpf_target_arch = "x86_64"))]
#[inline(always)]
fn probe_ip(_ctx: &ProbeContext) -> u64 {
    0
}

#[cfg(not(bpf_target_arch = "x86_64"))]
#[inline(always)]
fn return_address(_ctx: &ProbeContext) -> Option<u64> {
    None
}

#[inline(always)]
fn stash(pid_tgid: u64, slot: usize, value: u64) {
    let Some(state) = thread_or_insert(pid_tgid) else {
        return;
    };
    if slot < crate::maps::STASH_SLOTS {
        // SAFETY: this thread's own entry; the slot index is bounds-checked.
        unsafe {
            (*state).stash[slot] = value;
            (*state).stash_valid |= 1 << slot;
        }
    }
}

#[inline(always)]
fn take(pid_tgid: u64, slot: usize) -> Option<u64> {
    let state = thread(pid_tgid)?;
    if slot >= crate::maps::STASH_SLOTS {
        return None;
    }
    // SAFETY: this thread's own entry; the slot index is bounds-checked.
    unsafe {
        if (*state).stash_valid & (1 << slot) == 0 {
            return None;
        }
        (*state).stash_valid &= !(1 << slot);
        Some((*state).stash[slot])
    }
}

/// The SSL object this thread last entered (0: none).
#[inline(always)]
fn current(pid_tgid: u64) -> Option<CurrentSsl> {
    // SAFETY: this thread's own entry.
    let current = unsafe { (*thread(pid_tgid)?).current };
    (current.ssl != 0).then_some(current)
}

/// Where a string argument is read from.
enum Text {
    None,
    /// NUL-terminated user string.
    Str(u64),
    /// `len` bytes of user memory (not NUL-terminated).
    Bytes(u64, u64),
}

#[inline(always)]
fn emit<C: aya_ebpf::EbpfContext>(
    ctx: &C,
    pid_tgid: u64,
    call: TlsCall,
    ssl: u64,
    ptr2: u64,
    value: i64,
    text: Text,
) {
    let Some(mut entry) = reserve::<TlsEvent>() else {
        return;
    };
    let event = entry.as_mut_ptr();
    // SAFETY: exclusive reserved slot; every field is written before submit; user memory is
    // read with bpf_probe_read_user*, which faults safely.
    unsafe {
        (*event).header = header(EventKind::Tls, pid_tgid);
        (*event).call = call as u32;
        (*event).library = library(ctx);
        (*event).ssl = ssl;
        (*event).ptr2 = ptr2;
        (*event).value = value;
        (*event)._pad = 0;
        (*event).text_len = 0;
        match text {
            Text::None => {}
            Text::Str(ptr) => {
                if let Ok(s) = bpf_probe_read_user_str_bytes(ptr as *const u8, &mut (*event).text) {
                    (*event).text_len = s.len() as u32;
                }
            }
            Text::Bytes(ptr, len) => {
                let len = (len as usize).min(TLS_TEXT_LEN);
                if len > 0
                    && bpf_probe_read_user_buf(ptr as *const u8, &mut (&mut (*event).text)[..len])
                        .is_ok()
                {
                    (*event).text_len = len as u32;
                }
            }
        }
    }
    entry.submit(0);
}

/// Arguments of a targeted call, or `None` for everyone else (one lookup).
#[inline(always)]
fn targeted() -> Option<u64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    is_targeted(tgid(pid_tgid)).then_some(pid_tgid)
}

#[inline(always)]
fn arg(ctx: &ProbeContext, n: usize) -> u64 {
    ctx.arg::<u64>(n).unwrap_or(0)
}

/// `SSL *SSL_new(SSL_CTX *ctx)`
#[uprobe]
pub fn ssl_new(ctx: ProbeContext) -> u32 {
    if let Some(pid_tgid) = targeted() {
        stash(pid_tgid, F_SSL_NEW, arg(&ctx, 0));
    }
    0
}

#[uretprobe]
pub fn ssl_new_ret(ctx: RetProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(ssl_ctx) = take(pid_tgid, F_SSL_NEW) else {
        return 0;
    };
    let ssl: u64 = ctx.ret();
    if ssl == 0 {
        return 0;
    }
    if SSL_STATE
        .insert(key(pid_tgid, ssl), SslState::default(), 0)
        .is_err()
    {
        count_drop(Drop::TlsStateFull);
    }
    emit(&ctx, pid_tgid, TlsCall::SslNew, ssl, ssl_ctx, 0, Text::None);
    0
}

/// `void SSL_free(SSL *ssl)`
#[uprobe]
pub fn ssl_free(ctx: ProbeContext) -> u32 {
    let Some(pid_tgid) = targeted() else {
        return 0;
    };
    let ssl = arg(&ctx, 0);
    let _ = SSL_STATE.remove(key(pid_tgid, ssl));
    super::tls_server::forget_session(pid_tgid, ssl);
    if let Some(state) = thread(pid_tgid) {
        // SAFETY: this thread's own entry.
        unsafe {
            if (*state).current.ssl == ssl {
                (*state).current.ssl = 0;
            }
        }
    }
    emit(&ctx, pid_tgid, TlsCall::SslFree, ssl, 0, 0, Text::None);
    0
}

/// `void SSL_CTX_free(SSL_CTX *ctx)`: userspace forgets the context's verify settings.
#[uprobe]
pub fn ssl_ctx_free(ctx: ProbeContext) -> u32 {
    if let Some(pid_tgid) = targeted() {
        emit(
            &ctx,
            pid_tgid,
            TlsCall::CtxFree,
            arg(&ctx, 0),
            0,
            0,
            Text::None,
        );
    }
    0
}

/// `void SSL_CTX_set_verify(SSL_CTX *ctx, int mode, SSL_verify_cb cb)`
#[uprobe]
pub fn ssl_ctx_set_verify(ctx: ProbeContext) -> u32 {
    if let Some(pid_tgid) = targeted() {
        let mode = arg(&ctx, 1) as i32 as i64;
        emit(
            &ctx,
            pid_tgid,
            TlsCall::CtxSetVerify,
            arg(&ctx, 0),
            arg(&ctx, 2),
            mode,
            Text::None,
        );
    }
    0
}

/// `void SSL_set_verify(SSL *ssl, int mode, SSL_verify_cb cb)`
#[uprobe]
pub fn ssl_set_verify(ctx: ProbeContext) -> u32 {
    if let Some(pid_tgid) = targeted() {
        let mode = arg(&ctx, 1) as i32 as i64;
        emit(
            &ctx,
            pid_tgid,
            TlsCall::SetVerify,
            arg(&ctx, 0),
            arg(&ctx, 2),
            mode,
            Text::None,
        );
    }
    0
}

/// `long SSL_ctrl(SSL *ssl, int cmd, long larg, void *parg)`: only the SNI command.
#[uprobe]
pub fn ssl_ctrl(ctx: ProbeContext) -> u32 {
    if arg(&ctx, 1) as i32 as i64 != SSL_CTRL_SET_TLSEXT_HOSTNAME {
        return 0;
    }
    if let Some(pid_tgid) = targeted() {
        let name = arg(&ctx, 3);
        emit(
            &ctx,
            pid_tgid,
            TlsCall::SetSni,
            arg(&ctx, 0),
            0,
            0,
            Text::Str(name),
        );
    }
    0
}

/// `int SSL_set_fd(SSL *ssl, int fd)`: the session's socket, named by its `struct sock`.
#[uprobe]
pub fn ssl_set_fd(ctx: ProbeContext) -> u32 {
    if let Some(pid_tgid) = targeted() {
        let fd = arg(&ctx, 1) as i32;
        let sock = fd_socket(fd).map_or(0, |(sk, _)| sk);
        emit(
            &ctx,
            pid_tgid,
            TlsCall::SetFd,
            arg(&ctx, 0),
            sock,
            fd as i64,
            Text::None,
        );
    }
    0
}

/// `int SSL_set1_host(SSL *s, const char *hostname)`
#[uprobe]
pub fn ssl_set1_host(ctx: ProbeContext) -> u32 {
    if let Some(pid_tgid) = targeted() {
        let name = arg(&ctx, 1);
        emit(
            &ctx,
            pid_tgid,
            TlsCall::SetHost,
            arg(&ctx, 0),
            0,
            0,
            Text::Str(name),
        );
    }
    0
}

/// `int X509_VERIFY_PARAM_set1_host(X509_VERIFY_PARAM *param, const char *name, size_t namelen)`
/// `namelen == 0` means NUL-terminated.
#[uprobe]
pub fn param_set1_host(ctx: ProbeContext) -> u32 {
    if let Some(pid_tgid) = targeted() {
        let (name, len) = (arg(&ctx, 1), arg(&ctx, 2));
        let text = if len == 0 {
            Text::Str(name)
        } else {
            Text::Bytes(name, len)
        };
        emit(
            &ctx,
            pid_tgid,
            TlsCall::ParamSetHost,
            arg(&ctx, 0),
            0,
            0,
            text,
        );
    }
    0
}

/// `int X509_VERIFY_PARAM_set1_ip(X509_VERIFY_PARAM *param, const unsigned char *ip, size_t iplen)`
#[uprobe]
pub fn param_set1_ip(ctx: ProbeContext) -> u32 {
    if let Some(pid_tgid) = targeted() {
        let (ip, len) = (arg(&ctx, 1), arg(&ctx, 2));
        let text = Text::Bytes(ip, len.min(16));
        emit(
            &ctx,
            pid_tgid,
            TlsCall::ParamSetIp,
            arg(&ctx, 0),
            0,
            len as i64,
            text,
        );
    }
    0
}

/// `X509_VERIFY_PARAM *SSL_get0_param(SSL *ssl)`
#[uprobe]
pub fn ssl_get0_param(ctx: ProbeContext) -> u32 {
    if let Some(pid_tgid) = targeted() {
        stash(pid_tgid, F_GET0_PARAM, arg(&ctx, 0));
    }
    0
}

#[uretprobe]
pub fn ssl_get0_param_ret(ctx: RetProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if let Some(ssl) = take(pid_tgid, F_GET0_PARAM) {
        let param: u64 = ctx.ret();
        emit(&ctx, pid_tgid, TlsCall::GetParam, ssl, param, 0, Text::None);
    }
    0
}

/// `void SSL_set_connect_state(SSL *ssl)` (also reached from `SSL_connect`)
#[uprobe]
pub fn ssl_set_connect_state(ctx: ProbeContext) -> u32 {
    if let Some(pid_tgid) = targeted() {
        emit(
            &ctx,
            pid_tgid,
            TlsCall::ClientRole,
            arg(&ctx, 0),
            0,
            0,
            Text::None,
        );
    }
    0
}

/// `void SSL_set_accept_state(SSL *ssl)` (also reached from `SSL_accept`)
#[uprobe]
pub fn ssl_set_accept_state(ctx: ProbeContext) -> u32 {
    if let Some(pid_tgid) = targeted() {
        super::tls_server::server_session(pid_tgid, arg(&ctx, 0));
        emit(
            &ctx,
            pid_tgid,
            TlsCall::ServerRole,
            arg(&ctx, 0),
            0,
            0,
            Text::None,
        );
    }
    0
}

#[inline(always)]
fn enter_session(ctx: &ProbeContext, pid_tgid: u64, ssl: u64) {
    let mut current = CurrentSsl {
        ssl,
        text_lo: 0,
        text_hi: 0,
    };
    if let Some(range) = HOOK_TEXT.get_ptr(cookie(ctx)) {
        let ip = probe_ip(ctx);
        // SAFETY: map value pointer.
        let range = unsafe { *range };
        if ip != 0 {
            current.text_lo = ip.saturating_sub(range.lo);
            current.text_hi = ip.saturating_add(range.hi);
        }
    }
    if let Some(state) = thread_or_insert(pid_tgid) {
        // SAFETY: this thread's own entry.
        unsafe { (*state).current = current };
    }
}

#[inline(always)]
fn set_flag(pid_tgid: u64, ssl: u64, flag: u32) {
    if let Some(state) = SSL_STATE.get_ptr_mut(key(pid_tgid, ssl)) {
        // SAFETY: map value pointer; a racing update at worst loses a flag that is set again.
        unsafe { (*state).flags |= flag };
    }
}

/// `int SSL_do_handshake(SSL *s)` (also reached from `SSL_connect`/`SSL_accept`)
#[uprobe]
pub fn ssl_handshake(ctx: ProbeContext) -> u32 {
    if let Some(pid_tgid) = targeted() {
        let ssl = arg(&ctx, 0);
        enter_session(&ctx, pid_tgid, ssl);
        stash(pid_tgid, F_HANDSHAKE, ssl);
    }
    0
}

#[uretprobe]
pub fn ssl_handshake_ret(ctx: RetProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(ssl) = take(pid_tgid, F_HANDSHAKE) else {
        return 0;
    };
    let ret: i32 = ctx.ret();
    if ret == 1 {
        set_flag(pid_tgid, ssl, ssl_flags::HANDSHAKE_DONE);
    }
    // Out of the handshake: certificate decoding on this thread is not this session's now.
    if let Some(state) = thread(pid_tgid) {
        // SAFETY: this thread's own entry.
        unsafe {
            if (*state).current.ssl == ssl {
                (*state).current.ssl = 0;
            }
        }
    }
    emit(
        &ctx,
        pid_tgid,
        TlsCall::HandshakeReturn,
        ssl,
        0,
        ret as i64,
        Text::None,
    );
    0
}

/// `long SSL_get_verify_result(const SSL *ssl)`: read after the handshake.
#[uprobe]
pub fn ssl_get_verify_result(ctx: ProbeContext) -> u32 {
    if let Some(pid_tgid) = targeted() {
        stash(pid_tgid, F_VERIFY_RESULT, arg(&ctx, 0));
    }
    0
}

#[uretprobe]
pub fn ssl_get_verify_result_ret(ctx: RetProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(ssl) = take(pid_tgid, F_VERIFY_RESULT) else {
        return 0;
    };
    let result: i64 = ctx.ret();
    set_flag(pid_tgid, ssl, ssl_flags::HANDSHAKE_DONE);
    emit(
        &ctx,
        pid_tgid,
        TlsCall::VerifyResult,
        ssl,
        0,
        result,
        Text::None,
    );
    0
}

/// The session whose handshake this thread is running, if it still collects facts.
#[inline(always)]
fn in_handshake(pid_tgid: u64) -> Option<(CurrentSsl, *mut SslState)> {
    let current = current(pid_tgid)?;
    let state = SSL_STATE.get_ptr_mut(key(pid_tgid, current.ssl))?;
    // SAFETY: map value pointer.
    let flags = unsafe { (*state).flags };
    (flags & (ssl_flags::HANDSHAKE_DONE | ssl_flags::VERDICT) == 0).then_some((current, state))
}

/// `int X509_verify_cert(X509_STORE_CTX *ctx)` returned.
#[uretprobe]
pub fn x509_verify_cert_ret(ctx: RetProbeContext) -> u32 {
    let Some(pid_tgid) = targeted() else {
        return 0;
    };
    if let Some((current, _)) = in_handshake(pid_tgid) {
        let ret: i32 = ctx.ret();
        emit(
            &ctx,
            pid_tgid,
            TlsCall::VerifyCert,
            current.ssl,
            0,
            ret as i64,
            Text::None,
        );
    }
    0
}

/// `int X509_STORE_CTX_get_error(const X509_STORE_CTX *ctx)` returned (verify callbacks and
/// OpenSSL itself read the verification error this way).
#[uretprobe]
pub fn x509_store_ctx_get_error_ret(ctx: RetProbeContext) -> u32 {
    let Some(pid_tgid) = targeted() else {
        return 0;
    };
    if let Some((current, _)) = in_handshake(pid_tgid) {
        let error: i32 = ctx.ret();
        emit(
            &ctx,
            pid_tgid,
            TlsCall::StoreCtxError,
            current.ssl,
            0,
            error as i64,
            Text::None,
        );
    }
    0
}

/// `X509 *d2i_X509(X509 **a, const unsigned char **in, long len)`: during a handshake this is
/// the server's certificate chain being decoded.
#[uprobe]
pub fn d2i_x509(ctx: ProbeContext) -> u32 {
    let Some(pid_tgid) = targeted() else {
        return 0;
    };
    let Some((current, state)) = in_handshake(pid_tgid) else {
        return 0;
    };
    // Called from inside the TLS library (the certificate message), not by a trust-store
    // loader elsewhere that happens to run during the handshake (curl loads its CA bundle there).
    if current.text_hi != 0 {
        match return_address(&ctx) {
            Some(ret) if ret >= current.text_lo && ret < current.text_hi => {}
            _ => return 0,
        }
    }
    let ssl = current.ssl;
    // SAFETY: map value pointer.
    unsafe {
        if (*state).certs >= MAX_CERTS_PER_SESSION {
            return 0;
        }
        (*state).certs += 1;
    }
    let (inp, len) = (arg(&ctx, 1), arg(&ctx, 2) as i64);
    if inp == 0 || len <= 0 {
        return 0;
    }
    // SAFETY: user pointer read with a faulting-safe helper.
    let Ok(der) = (unsafe { bpf_probe_read_user(inp as *const u64) }) else {
        return 0;
    };
    let Some(mut entry) = reserve::<CertEvent>() else {
        return 0;
    };
    let event = entry.as_mut_ptr();
    let copy = (len as usize).min(CERT_MAX);
    // SAFETY: exclusive reserved slot; bounded copy from user memory.
    unsafe {
        (*event).header = header(EventKind::Cert, pid_tgid);
        (*event).library = library(&ctx);
        (*event).ssl = ssl;
        (*event).der_len = len as u32;
        (*event).form = cert_form::DER;
        (*event).sig_len = 0;
        if copy == 0
            || bpf_probe_read_user_buf(der as *const u8, &mut (&mut (*event).der)[..copy]).is_err()
        {
            (*event).der_len = 0;
        }
    }
    entry.submit(0);
    0
}

/// `int ssl_verify_cert_chain(SSL *s, STACK_OF(X509) *sk)`: libssl's own verification of the
/// server's chain, called once per full handshake whatever the verify mode. Hooked only where
/// it is exported (Node's `node`, which also exports its internal OpenSSL symbols): there,
/// `d2i_X509` is a direct call that cannot be told apart from the trust-store loads, and the
/// application may never ask for the certificate (Node does not, when verification failed).
/// The certificates are read from OpenSSL's decoded objects (see `monitor_common::x509`):
/// the cached DER of each `tbsCertificate` and the signature; userspace rebuilds the
/// certificate from them and drops anything that does not parse as one.
#[uprobe]
pub fn ssl_verify_chain(ctx: ProbeContext) -> u32 {
    let Some(pid_tgid) = targeted() else {
        return 0;
    };
    let (ssl, chain) = (arg(&ctx, 0), arg(&ctx, 1));
    if ssl == 0 || chain == 0 {
        return 0;
    }
    // SAFETY: user pointers read with faulting-safe helpers.
    let (num, items) = unsafe {
        (
            bpf_probe_read_user((chain + x509::STACK_NUM) as *const i32).unwrap_or(0),
            bpf_probe_read_user((chain + x509::STACK_DATA) as *const u64).unwrap_or(0),
        )
    };
    if num <= 0 || items == 0 {
        return 0;
    }
    let state = SSL_STATE.get_ptr_mut(key(pid_tgid, ssl));
    for i in 0..x509::CHAIN_MAX {
        if i >= num as u32 {
            break;
        }
        if let Some(state) = state {
            // SAFETY: map value pointer.
            unsafe {
                if (*state).certs >= MAX_CERTS_PER_SESSION {
                    break;
                }
                (*state).certs += 1;
            }
        }
        // SAFETY: as above.
        let Ok(cert) = (unsafe { bpf_probe_read_user((items + 8 * i as u64) as *const u64) })
        else {
            break;
        };
        if cert == 0 || !tbs_cert(&ctx, pid_tgid, ssl, cert) {
            break;
        }
    }
    0
}

/// One certificate from an `X509` object: its `tbsCertificate` DER and signature. False when
/// the object does not look like one (nothing is sent then).
#[inline(always)]
fn tbs_cert(ctx: &ProbeContext, pid_tgid: u64, ssl: u64, cert: u64) -> bool {
    // SAFETY: user pointers read with faulting-safe helpers.
    let (tbs, tbs_len, sig_len, sig, sig_flags) = unsafe {
        (
            bpf_probe_read_user((cert + x509::TBS_ENC) as *const u64).unwrap_or(0),
            bpf_probe_read_user((cert + x509::TBS_ENC_LEN) as *const i64).unwrap_or(0),
            bpf_probe_read_user((cert + x509::SIG_LENGTH) as *const i32).unwrap_or(0),
            bpf_probe_read_user((cert + x509::SIG_DATA) as *const u64).unwrap_or(0),
            bpf_probe_read_user((cert + x509::SIG_FLAGS) as *const i64).unwrap_or(0),
        )
    };
    if tbs == 0 || tbs_len <= 0 || sig == 0 || sig_len <= 0 || sig_len as usize > CERT_SIG_MAX {
        return false;
    }
    let Some(mut entry) = reserve::<CertEvent>() else {
        return false;
    };
    let event = entry.as_mut_ptr();
    // Lengths in [1, max]: a volatile read hides them from the compiler (which would drop the
    // masks), the masks bound them for the verifier (both maxima are powers of two).
    // SAFETY: reads of a local.
    let copy = unsafe { core::ptr::read_volatile(&(tbs_len as usize).min(CERT_MAX)) };
    let copy = ((copy - 1) & (CERT_MAX - 1)) + 1;
    // SAFETY: as above.
    let sig_copy = unsafe { core::ptr::read_volatile(&(sig_len as usize)) };
    let sig_copy = ((sig_copy - 1) & (CERT_SIG_MAX - 1)) + 1;
    // SAFETY: exclusive reserved slot; bounded copies from user memory.
    unsafe {
        (*event).header = header(EventKind::Cert, pid_tgid);
        (*event).library = library(ctx);
        (*event).ssl = ssl;
        (*event).form = cert_form::TBS;
        (*event).der_len = tbs_len as u32;
        (*event).sig_len = sig_len as u16;
        (*event).sig_unused = if sig_flags & x509::BITS_LEFT != 0 {
            (sig_flags & 7) as u8
        } else {
            0
        };
        if bpf_probe_read_user_buf(tbs as *const u8, &mut (&mut (*event).der)[..copy]).is_err()
            || bpf_probe_read_user_buf(sig as *const u8, &mut (&mut (*event).sig)[..sig_copy])
                .is_err()
        {
            (*event).der_len = 0;
        }
    }
    entry.submit(0);
    true
}
