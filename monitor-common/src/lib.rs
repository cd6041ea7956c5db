//! Records shared by the kernel programs (`monitor-ebpf`) and the userspace agent (`monitor`).
//!
//! Every record that crosses the ring buffer starts with an [`EventHeader`] whose `kind` says
//! which `#[repr(C)]` struct follows. Userspace turns these into rich types once, at the edge
//! (`monitor::decode`), so nothing else depends on this layout.
//!
//! ```
//! use monitor_common::{EventHeader, EventKind};
//! let header = EventHeader::new(EventKind::Connect, 42, 43, 1_000, 7);
//! assert_eq!(EventKind::from_u32(header.kind), Some(EventKind::Connect));
//! ```
#![no_std]

/// Kind tag carried by every ring-buffer record.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A `connect(2)` on an IPv4/IPv6 socket finished (any result).
    Connect = 1,
    /// A process called `execve` and now runs a new image.
    Exec = 2,
    /// A process (thread-group leader) exited.
    Exit = 3,
    /// An OpenSSL API call of a targeted process ([`TlsEvent`], `call` says which).
    Tls = 4,
    /// A certificate decoded (`d2i_X509`) while a targeted process ran a TLS handshake.
    Cert = 5,
    /// A targeted process mapped a file executable (a library loaded at run time).
    MmapExec = 6,
    /// A targeted process set an environment variable that disables TLS verification.
    SetEnv = 7,
    /// Bytes a targeted process wrote to a TCP socket it connected ([`PayloadEvent`]).
    Payload = 8,
    /// A tracked TCP socket was closed by its process, or ended ([`SocketCloseEvent`]).
    SocketClose = 9,
    /// The outcome of a non-blocking connect, known after the syscall returned
    /// ([`ConnectResultEvent`]).
    ConnectResult = 10,
    /// A TLS record a target's connection sent ([`TlsRecordEvent`]).
    TlsRecord = 11,
    /// A targeted process binds a TCP socket (`cgroup/bind4|6`): a listener, usually
    /// ([`ListenEvent`]).
    Listen = 40,
    /// The first packet of a connection accepted on a target's listener ([`AcceptEvent`]).
    Accept = 41,
    /// Bytes arriving on such a connection ([`PayloadEvent`] layout, `source`
    /// `payload_source::PACKET`): the requests a target's server receives.
    ServerPayload = 42,
    /// A target's listener or accepted connection was released ([`ServerCloseEvent`]).
    ServerClose = 43,
    /// The start of an `SSL_write` on a server-side session of a target ([`PayloadEvent`]
    /// layout, `sock` = the SSL object, `source` `payload_source::SSL_WRITE`): its responses.
    TlsResponse = 44,
}

impl EventKind {
    pub fn from_u32(value: u32) -> Option<Self> {
        Some(match value {
            1 => Self::Connect,
            2 => Self::Exec,
            3 => Self::Exit,
            4 => Self::Tls,
            5 => Self::Cert,
            6 => Self::MmapExec,
            7 => Self::SetEnv,
            8 => Self::Payload,
            9 => Self::SocketClose,
            10 => Self::ConnectResult,
            11 => Self::TlsRecord,
            40 => Self::Listen,
            41 => Self::Accept,
            42 => Self::ServerPayload,
            43 => Self::ServerClose,
            44 => Self::TlsResponse,
            _ => return None,
        })
    }
}

/// Common prefix of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    pub kind: u32,
    /// Process id (thread-group id).
    pub tgid: u32,
    /// Thread id (0 for records written outside the process, e.g. from a TCP state change).
    pub tid: u32,
    pub _pad: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the event was recorded.
    pub ktime_ns: u64,
    /// Start time of the process (its thread-group leader) in clock ticks since boot, as
    /// `/proc/PID/stat` field 22 shows it; 0 when the kernel offsets were unavailable. With
    /// `tgid` it names one process for its whole life: a reused pid has another start time.
    pub start: u64,
}

impl EventHeader {
    pub const fn new(kind: EventKind, tgid: u32, tid: u32, ktime_ns: u64, start: u64) -> Self {
        Self {
            kind: kind as u32,
            tgid,
            tid,
            _pad: 0,
            ktime_ns,
            start,
        }
    }
}

/// `/proc/PID/stat` counts start times in `USER_HZ` ticks (100 per second on every Linux
/// architecture); the kernel keeps nanoseconds.
pub const NSEC_PER_TICK: u64 = 1_000_000_000 / 100;

pub const COMM_LEN: usize = 16;
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
pub const SOCK_STREAM: u16 = 1;
pub const SOCK_DGRAM: u16 = 2;
/// Socket type could not be read from the kernel (no BTF offsets).
pub const SOCK_TYPE_UNKNOWN: u16 = 0;

/// A finished `connect(2)`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ConnectEvent {
    pub header: EventHeader,
    pub fd: i32,
    /// Syscall return value: 0 or a negative errno (`-EINPROGRESS` for non-blocking sockets).
    pub ret: i32,
    /// `AF_INET` or `AF_INET6` as passed by the caller.
    pub family: u16,
    /// `socket->type` read from the kernel (`SOCK_STREAM`, `SOCK_DGRAM`, ...), or `SOCK_TYPE_UNKNOWN`.
    pub sock_type: u16,
    /// Destination port, host byte order.
    pub port: u16,
    pub _pad: u16,
    /// Destination address: 4 bytes for IPv4, 16 for IPv6 (network byte order).
    pub addr: [u8; 16],
    pub comm: [u8; COMM_LEN],
    /// The kernel socket (`struct sock` address): names the connection for its whole life,
    /// whatever happens to the descriptor. 0 when the socket is not tracked (UDP, map full).
    pub sock: u64,
    /// What became of a connect that returned `-EINPROGRESS` while the syscall ran:
    /// [`OUTCOME_PENDING`], 0 (established) or a negative errno.
    pub outcome: i32,
    pub _pad2: u32,
}

/// `outcome` of a non-blocking connect still under way.
pub const OUTCOME_PENDING: i32 = 1;

/// The outcome of a non-blocking connect, learned from the TCP state machine after the
/// syscall returned `-EINPROGRESS`. Written outside the process: `header.tid` is 0.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ConnectResultEvent {
    pub header: EventHeader,
    pub sock: u64,
    pub fd: i32,
    /// 0 (established) or a negative errno (`-ECONNREFUSED`, `-ETIMEDOUT`, ...;
    /// `-ECONNABORTED` when the process closed the socket before it was established).
    pub result: i32,
}

/// The header of a TLS record leaving a target's connection, seen in the packets: which
/// records a client sends (handshake, change-cipher-spec, alert, application data) tells whether
/// it used a session, without a probe on `SSL_read`/`SSL_write`. Written outside the process:
/// `header.tid` is 0.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TlsRecordEvent {
    pub header: EventHeader,
    pub sock: u64,
    /// Record content type (20 change_cipher_spec, 21 alert, 22 handshake, 23 application data).
    pub content_type: u8,
    /// The record's first content byte (for plaintext handshake records: the message type).
    pub first: u8,
    pub _pad: u16,
    /// Record length (without its 5-byte header).
    pub len: u32,
}

/// Records walked per connection at most (a handshake and the first data take a handful).
pub const MAX_TLS_RECORDS: u32 = 32;

pub const EXEC_FILENAME_LEN: usize = 256;

/// A successful `execve`. Sent for every process when userspace discovers targets by
/// command line (`--mcp`, `--comm`, `--cgroup`), otherwise only for targeted ones.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecEvent {
    pub header: EventHeader,
    /// Non-zero when the process was already in the target set (inherited from a parent).
    pub targeted: u32,
    /// Bytes of `filename` that are valid (without the terminating NUL).
    pub filename_len: u32,
    pub comm: [u8; COMM_LEN],
    pub filename: [u8; EXEC_FILENAME_LEN],
}

/// A targeted process exited (its thread-group leader ended), or one of its threads that
/// left per-thread state did.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExitEvent {
    pub header: EventHeader,
    /// Non-zero when only the thread `header.tid` ended, not the process.
    pub thread: u32,
    pub _pad: u32,
}

/// Which OpenSSL call a [`TlsEvent`] reports. The field meanings per call are given in
/// brackets: `ssl`, `ptr2`, `value`, `text`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsCall {
    /// `SSL_new(ctx)` returned [ssl, ctx, -, -].
    SslNew = 1,
    /// `SSL_free(ssl)` [ssl].
    SslFree = 2,
    /// `SSL_CTX_set_verify(ctx, mode, cb)` [ctx, cb, mode].
    CtxSetVerify = 3,
    /// `SSL_set_verify(ssl, mode, cb)` [ssl, cb, mode].
    SetVerify = 4,
    /// `SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, 0, name)` [ssl, -, -, name].
    SetSni = 5,
    /// `SSL_set_fd(ssl, fd)` [ssl, the socket (`struct sock`) behind `fd` or 0, fd].
    SetFd = 6,
    /// `SSL_set1_host(ssl, name)` [ssl, -, -, name].
    SetHost = 7,
    /// `X509_VERIFY_PARAM_set1_host(param, name, len)` [param, -, -, name].
    ParamSetHost = 8,
    /// `X509_VERIFY_PARAM_set1_ip(param, ip, len)` [param, -, len, raw ip].
    ParamSetIp = 9,
    /// `SSL_get0_param(ssl)` returned [ssl, param].
    GetParam = 10,
    /// `SSL_set_connect_state(ssl)` (`SSL_connect` calls it) [ssl].
    ClientRole = 12,
    /// `SSL_set_accept_state(ssl)` (`SSL_accept` calls it) [ssl].
    ServerRole = 13,
    /// `SSL_do_handshake` returned [ssl, -, ret].
    HandshakeReturn = 14,
    /// `SSL_get_verify_result(ssl)` returned [ssl, -, result].
    VerifyResult = 15,
    /// `X509_verify_cert(ctx)` returned, during `ssl`'s handshake [ssl, -, ret].
    VerifyCert = 16,
    /// `X509_STORE_CTX_get_error(ctx)` returned, during `ssl`'s handshake [ssl, -, error].
    StoreCtxError = 17,
    /// `SSL_CTX_free(ctx)` [ctx].
    CtxFree = 20,
    /// Go: `crypto/tls.(*Conn).verifyServerCertificate(certs)` entered, in a full client
    /// handshake [the `*tls.Conn`, the goroutine, number of certificates]. Followed by a `SetFd`
    /// [conn, socket or 0, descriptor or -1] and the chain's `Cert` events.
    GoServerCert = 30,
    /// Go: `crypto/x509.(*Certificate).Verify` entered [-, the goroutine, 1 when called by
    /// `verifyServerCertificate` itself (InsecureSkipVerify off), 0 from other code].
    GoX509Verify = 31,
}

impl TlsCall {
    pub fn from_u32(value: u32) -> Option<Self> {
        use TlsCall::*;
        const ALL: [TlsCall; 19] = [
            SslNew,
            SslFree,
            CtxSetVerify,
            SetVerify,
            SetSni,
            SetFd,
            SetHost,
            ParamSetHost,
            ParamSetIp,
            GetParam,
            ClientRole,
            ServerRole,
            HandshakeReturn,
            VerifyResult,
            VerifyCert,
            StoreCtxError,
            CtxFree,
            GoServerCert,
            GoX509Verify,
        ];
        ALL.into_iter().find(|c| *c as u32 == value)
    }
}

pub const TLS_TEXT_LEN: usize = 256;

/// One OpenSSL call of a targeted process.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TlsEvent {
    pub header: EventHeader,
    /// [`TlsCall`].
    pub call: u32,
    /// Attach cookie: which library (userspace's index) the probe sits in.
    pub library: u32,
    pub ssl: u64,
    pub ptr2: u64,
    pub value: i64,
    /// Bytes of `text` that are valid.
    pub text_len: u32,
    pub _pad: u32,
    pub text: [u8; TLS_TEXT_LEN],
}

/// Largest certificate captured whole; longer ones are cut (and flagged by `der_len`).
pub const CERT_MAX: usize = 8192;

/// Largest certificate signature captured (an RSA-4096 signature; ECDSA ones are far shorter).
pub const CERT_SIG_MAX: usize = 512;

const _: () = assert!(CERT_MAX.is_power_of_two() && CERT_SIG_MAX.is_power_of_two());

/// What a [`CertEvent`] carries.
pub mod cert_form {
    /// `der` is the certificate's DER encoding (as passed to `d2i_X509`).
    pub const DER: u8 = 0;
    /// `der` is the DER of the `tbsCertificate` only, `sig` the signature's bits: read from an
    /// OpenSSL `X509` object (see [`super::x509`]); userspace rebuilds the certificate.
    pub const TBS: u8 = 1;
}

/// Where OpenSSL keeps what a certificate is rebuilt from, in its `X509` object (`struct
/// x509_st`) and in a `STACK_OF(X509)` (`struct stack_st`). Unchanged from OpenSSL 1.1.0 to
/// 3.x: `x509_st` starts with `X509_CINF cert_info`, whose last member is the `ASN1_ENCODING
/// enc` cache of the encoded `tbsCertificate` (`unsigned char *enc; long len; ...`) at 112,
/// followed by `X509_ALGOR sig_alg` (16 bytes) and `ASN1_BIT_STRING signature` (`int length;
/// int type; unsigned char *data; long flags`). Nothing read here is trusted: userspace keeps
/// a certificate only when the rebuilt DER parses as one.
pub mod x509 {
    pub const TBS_ENC: u64 = 112;
    pub const TBS_ENC_LEN: u64 = 120;
    pub const SIG_LENGTH: u64 = 152;
    pub const SIG_DATA: u64 = 160;
    pub const SIG_FLAGS: u64 = 168;
    /// `ASN1_STRING_FLAG_BITS_LEFT`: the low 3 bits of `flags` are the unused bits.
    pub const BITS_LEFT: i64 = 0x08;
    /// `int num` and `const void **data` of `struct stack_st`.
    pub const STACK_NUM: u64 = 0;
    pub const STACK_DATA: u64 = 8;
    /// Certificates of a chain read at most (leaf first).
    pub const CHAIN_MAX: u32 = 4;
}

/// A certificate decoded during a handshake (the server's chain, in the order it was parsed).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CertEvent {
    pub header: EventHeader,
    pub library: u32,
    /// Length of the DER (may exceed `CERT_MAX`: then only a prefix is here); 0 when it could
    /// not be read.
    pub der_len: u32,
    pub ssl: u64,
    /// A [`cert_form`] value.
    pub form: u8,
    /// Unused bits in the signature's last byte (`cert_form::TBS`).
    pub sig_unused: u8,
    /// Signature length in bytes (`cert_form::TBS`).
    pub sig_len: u16,
    pub _pad: u32,
    pub sig: [u8; CERT_SIG_MAX],
    pub der: [u8; CERT_MAX],
}

/// Bytes of a mapped file's name kept in a [`MmapExecEvent`].
pub const MMAP_NAME_LEN: usize = 64;

/// A targeted process mapped a file with `PROT_EXEC`: a library (loaded at start by the
/// dynamic loader, or later by `dlopen`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MmapExecEvent {
    pub header: EventHeader,
    pub fd: i32,
    /// Bytes of `name` that are valid.
    pub name_len: u32,
    /// The file's name (its last path component), read from the kernel when the mapping is
    /// made: what it is does not depend on the process still living when userspace looks.
    pub name: [u8; MMAP_NAME_LEN],
}

pub const ENV_TEXT_LEN: usize = 64;

/// `setenv(name, value, overwrite)` of a variable the kernel program watches for.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SetEnvEvent {
    pub header: EventHeader,
    pub name_len: u32,
    pub value_len: u32,
    pub name: [u8; ENV_TEXT_LEN],
    pub value: [u8; ENV_TEXT_LEN],
}

/// Per-session state shared by the kernel programs and userspace (map `SSL_STATE`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SslState {
    /// `ssl_flags::*`.
    pub flags: u32,
    /// Certificates captured so far (capture stops at `MAX_CERTS_PER_SESSION`).
    pub certs: u32,
}

pub mod ssl_flags {
    /// The handshake finished (or its verification result was read): stop capturing certificates.
    pub const HANDSHAKE_DONE: u32 = 1;
    /// Userspace reached its verdict: the programs exit early for this session from now on.
    pub const VERDICT: u32 = 2;
}

pub const MAX_CERTS_PER_SESSION: u32 = 10;

/// What a Go `crypto/tls` hook knows about its binary (map `GO_TLS`, by attach cookie). Field
/// offsets come from userspace's table per Go version (`monitor/src/probes/gotls.rs`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoTlsConfig {
    /// `go_tls::*`.
    pub flags: u32,
    pub _pad: u32,
    /// `x509.(*Certificate).Verify` hook: `verifyServerCertificate` starts this many bytes
    /// before the hooked address (two's complement when after it)...
    pub caller_back: u64,
    /// ... and is this long.
    pub caller_len: u64,
    /// `tls.Conn.conn` (a `net.Conn`): offset of the interface's data word.
    pub conn_data: u32,
    /// `net.TCPConn` (`net.conn`): offset of `fd *netFD`.
    pub netconn_fd: u32,
    /// `netFD.pfd.Sysfd`, `netFD.family`, `netFD.sotype`.
    pub fd_sysfd: u32,
    pub fd_family: u32,
    pub fd_sotype: u32,
    pub _pad2: u32,
}

pub mod go_tls {
    /// The socket offsets of [`super::GoTlsConfig`] are known for this binary's Go version.
    pub const SOCKET_OFFSETS: u32 = 1;
}

/// Size of the kernel programs' per-thread state (map `THREADS`; userspace only counts it).
pub const THREAD_STATE_SIZE: usize = 112;

/// Attach cookies are `library_index << COOKIE_HOOK_BITS | hook_index`.
pub const COOKIE_HOOK_BITS: u32 = 8;

/// Bytes before (`lo`) and after (`hi`) a hooked function's address that belong to the same
/// executable segment (map `HOOK_TEXT`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TextRange {
    pub lo: u64,
    pub hi: u64,
}

/// Key of `SSL_STATE`: SSL pointers are only unique within a process.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SslKey {
    pub tgid: u32,
    pub _pad: u32,
    pub ssl: u64,
}

/// Largest piece of one write (or one iovec) copied into a [`PayloadEvent`].
pub const PAYLOAD_MAX: usize = 4096;
/// Bytes captured per socket at most; then the socket costs one lookup per write.
pub const SOCKET_CAPTURE_BUDGET: u32 = 16 * 1024;

/// Which syscall wrote a payload.
pub mod payload_source {
    pub const WRITE: u32 = 1;
    pub const SENDTO: u32 = 2;
    pub const WRITEV: u32 = 3;
    pub const SENDMSG: u32 = 4;
    /// A TCP segment leaving the host (`cgroup_skb/egress`); `len` is the segment's payload,
    /// and the capture may skip its start (bytes already seen, retransmitted).
    pub const PACKET: u32 = 5;
    /// `SSL_write`/`SSL_write_ex` of a server-side session (`EventKind::TlsResponse`).
    pub const SSL_WRITE: u32 = 6;
}

/// The start of a write on a tracked socket. Sent with only `captured` bytes of `data`
/// (variable-length record).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PayloadEvent {
    pub header: EventHeader,
    /// The kernel socket written to (see [`ConnectEvent::sock`]).
    pub sock: u64,
    pub fd: i32,
    /// `payload_source::*`.
    pub source: u32,
    /// Length of the write (or iovec segment) as the process asked for it.
    pub len: u32,
    /// Bytes in `data`.
    pub captured: u32,
    pub data: [u8; PAYLOAD_MAX],
}

/// Fixed part of a [`PayloadEvent`] before `data`.
pub const PAYLOAD_HEADER_LEN: usize = size_of::<EventHeader>() + 24;

/// A tracked TCP socket's process closed it (or shut down its sending side), or the
/// connection ended. Written from the TCP state machine: `header` names the process that
/// connected the socket, `header.tid` is 0.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SocketCloseEvent {
    pub header: EventHeader,
    pub sock: u64,
    /// The descriptor the socket was connected on.
    pub fd: i32,
    /// Non-zero when its first bytes were still being captured (no verdict yet).
    pub undecided: u32,
}

/// Value of the `SOCKETS` map (key: the `struct sock` address): a TCP socket a target
/// connected, from its connect until the kernel closes it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockState {
    /// The process that connected it.
    pub tgid: u32,
    pub fd: i32,
    /// [`EventHeader::start`] of that process.
    pub start: u64,
    /// `sock_flags::*`.
    pub flags: u32,
    /// Bytes sent to userspace so far.
    pub captured: u32,
    /// See [`ConnectEvent::outcome`].
    pub outcome: i32,
    /// TCP sequence number after the last payload byte seen leaving (`SEQ_KNOWN`), so
    /// retransmitted bytes are not captured twice.
    pub next_seq: u32,
    /// TLS: sequence number of the next record header.
    pub next_record: u32,
    /// TLS: records walked so far.
    pub records: u32,
    /// `bpf_ktime_get_ns()` when the entry was made (at the connect, before its record): the
    /// kernel reuses a freed `struct sock`'s memory for the next socket, so a settle meant for a
    /// connection only applies to an entry made no later than that connection's records (0:
    /// not tracked by address, as in `ServerSock`).
    pub born: u64,
}

pub mod sock_flags {
    /// Classified (TLS seen, verdict reached, or budget spent): writes are no longer copied.
    pub const DONE: u32 = 1;
    /// The connect syscall has not returned yet.
    pub const IN_CONNECT: u32 = 2;
    /// The connect returned `-EINPROGRESS` and its outcome is still owed to userspace.
    pub const AWAIT_OUTCOME: u32 = 4;
    /// The connection ended while the connect syscall still ran (the syscall's exit reports it).
    pub const CLOSED: u32 = 8;
    /// Userspace was told that the process closed the socket.
    pub const CLOSE_REPORTED: u32 = 16;
    /// The socket went to SYN_SENT: its connect got as far as sending a SYN.
    pub const SYN_SENT: u32 = 32;
    /// `SockState::next_seq` holds the sequence number after the last byte seen leaving.
    pub const SEQ_KNOWN: u32 = 64;
    /// A TLS connection: its bytes are not copied any more, its record headers are walked
    /// (`SockState::next_record`) until userspace settles it or `MAX_TLS_RECORDS`.
    pub const TLS: u32 = 128;
    /// A connection accepted on a target's listener: its `AcceptEvent` was sent.
    pub const SERVER_SEEN: u32 = 256;
}

/// `ConnectResultEvent::result` of a connect that failed before its SYN was sent (no route,
/// no local address): the kernel gives the error to the caller only.
pub const CONNECT_FAILED_EARLY: i32 = i32::MIN;

/// Value of the `TARGETS` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TargetEntry {
    /// `target::*`.
    pub flags: u32,
    pub _pad: u32,
    /// Start time ([`EventHeader::start`]) of the process this entry means, or 0 when the
    /// kernel added it for a live process itself (fork, exec). A process whose pid matches but
    /// whose start time does not is someone else: a reused pid is never watched by mistake.
    pub start: u64,
}

pub mod target {
    /// Chosen by userspace (pid, comm, cgroup, MCP discovery).
    pub const SELECTED: u32 = 1;
    /// Inherited from a targeted parent at fork.
    pub const INHERITED: u32 = 2;
}

/// Indexes of the per-CPU `DROPS` counter array. Every map the programs insert into is a
/// plain hash map (no LRU: an LRU map evicts silently), so a full map is a failed insert, and
/// every failed insert is counted here.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drop {
    /// The event ring buffer was full.
    RingBufFull = 0,
    /// The per-thread state map (connect arguments, OpenSSL call arguments) was full.
    ThreadStateFull = 1,
    /// The target set was full when a targeted process forked or a `--comm` name exec'd.
    TargetsFull = 2,
    /// The per-session OpenSSL state map was full.
    TlsStateFull = 3,
    /// The tracked-socket map rejected a new socket.
    SocketsFull = 4,
}

impl Drop {
    pub const ALL: [Drop; 5] = [
        Drop::RingBufFull,
        Drop::ThreadStateFull,
        Drop::TargetsFull,
        Drop::TlsStateFull,
        Drop::SocketsFull,
    ];
    pub const COUNT: u32 = Self::ALL.len() as u32;

    pub const fn name(self) -> &'static str {
        match self {
            Drop::RingBufFull => "ringbuf_full",
            Drop::ThreadStateFull => "thread_state_full",
            Drop::TargetsFull => "target_set_full",
            Drop::TlsStateFull => "tls_state_full",
            Drop::SocketsFull => "sockets_full",
        }
    }
}

/// Kernel struct member offsets resolved by userspace from BTF (`/sys/kernel/btf/vmlinux`) and
/// handed to the programs as a read-only global. This is CO-RE done by hand: the kernel programs
/// walk `current->files->fdt->fd[fd]` to the socket behind a descriptor (its type, and its
/// `struct sock`, which names the connection whatever happens to the descriptor), read a
/// failed connection's `sk_err`, and read the start time of the current process.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `offsets_valid::*` bits: which groups of offsets below could be resolved.
    pub valid: u32,
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdtable_max_fds: u32,
    pub fdtable_fd: u32,
    pub file_private_data: u32,
    pub socket_type: u32,
    pub file_inode: u32,
    pub inode_mode: u32,
    pub socket_sk: u32,
    pub sock_err: u32,
    pub task_group_leader: u32,
    pub task_start_boottime: u32,
    /// `file.f_path.dentry`.
    pub file_dentry: u32,
    /// `dentry.d_name.name`.
    pub dentry_name: u32,
    /// `files_struct.next_fd` (the lowest descriptor that may be free: a new socket's
    /// descriptor is usually the one just below it).
    pub files_next_fd: u32,
    /// `sock.sk_socket` and `socket.file`: from a socket to the file its descriptor holds.
    pub sock_socket: u32,
    pub socket_file: u32,
}

pub mod offsets_valid {
    /// descriptor -> file -> socket (type, `struct sock`), and `sock.sk_err`.
    pub const SOCKET: u32 = 1;
    /// `task_struct.group_leader` and `start_boottime` (process start times).
    pub const START_TIME: u32 = 2;
    /// `file.f_path.dentry` and `dentry.d_name.name` (names of mapped files).
    pub const FILE_NAME: u32 = 4;
}

/// Tracepoint field offsets that differ between kernels (read from tracefs `format` files).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TracepointOffsets {
    /// `sched_process_fork.child_pid`.
    pub fork_child_pid: u32,
    /// `sched_process_exec.filename` (`__data_loc`).
    pub exec_filename: u32,
    /// `sched_process_exit.group_dead` (kernels 6.16 and later), 0 when the field is absent.
    pub exit_group_dead: u32,
    pub _pad: u32,
}

/// A TCP socket a targeted process binds (`cgroup/bind4|6`, before the bind is done: the port
/// may be 0 for "any", and the bind may still fail).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ListenEvent {
    pub header: EventHeader,
    /// The socket (`struct sock` address): [`ServerSock::listener`] of its connections.
    pub sock: u64,
    /// `AF_INET` or `AF_INET6`.
    pub family: u16,
    /// Host byte order.
    pub port: u16,
    pub _pad: u32,
    /// 4 bytes for IPv4, 16 for IPv6 (network byte order).
    pub addr: [u8; 16],
}

/// The first packet seen on a connection a target's listener accepted, written from the
/// packet's context: `header` names the process that bound the listener (`tid` 0).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct AcceptEvent {
    pub header: EventHeader,
    /// The accepted socket (`struct sock` address).
    pub sock: u64,
    /// [`ServerSock::listener`]: which listener it came through.
    pub listener: u64,
    /// `AF_INET` or `AF_INET6`: the packet's IP version (an IPv4 client of a dual-stack
    /// listener is IPv4 here).
    pub family: u16,
    /// Host byte order.
    pub local_port: u16,
    pub peer_port: u16,
    pub _pad: u16,
    /// The address the client reached (the packet's destination) and its own.
    pub local: [u8; 16],
    pub peer: [u8; 16],
}

/// A target's listener or accepted connection was released (`cgroup/sock_release`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ServerCloseEvent {
    pub header: EventHeader,
    pub sock: u64,
    /// Non-zero: the socket is the listener itself.
    pub listener: u32,
    /// Non-zero when its first bytes were still being captured.
    pub undecided: u32,
}

/// Value of the `SERVER_SOCKS` socket storage (created with `BPF_F_CLONE`): set on a socket a
/// target binds (or, for a listener that existed before the monitor, by userspace), and
/// cloned by the kernel into every connection the listener accepts, which then captures its
/// first incoming bytes with `sock` as any tracked socket does.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerSock {
    /// Owner (`tgid`, `start`) and capture state; `flags` uses `sock_flags::*`, with
    /// `sock_flags::SERVER_SEEN` once the connection's `AcceptEvent` went out.
    pub sock: SockState,
    /// Names the listener: its `struct sock` address when marked at bind, or an id userspace
    /// chose when it marked a listener that existed before the monitor.
    pub listener: u64,
}

/// Largest start of an `SSL_write` a server response is judged from (its status line and
/// headers).
pub const RESPONSE_MAX: usize = 2048;
/// `SSL_write` calls copied per server-side session at most.
pub const RESPONSE_WRITES: u32 = 4;

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain `#[repr(C)]` integers with explicit padding.
    unsafe impl aya::Pod for super::KernelOffsets {}
    unsafe impl aya::Pod for super::TracepointOffsets {}
    unsafe impl aya::Pod for super::SslState {}
    unsafe impl aya::Pod for super::SslKey {}
    unsafe impl aya::Pod for super::TextRange {}
    unsafe impl aya::Pod for super::GoTlsConfig {}
    unsafe impl aya::Pod for super::SockState {}
    unsafe impl aya::Pod for super::TargetEntry {}
    unsafe impl aya::Pod for super::ServerSock {}
}
