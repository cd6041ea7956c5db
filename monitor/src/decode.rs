//! Ring-buffer bytes -> typed events, once, at the edge. Nothing past this module knows the
//! `#[repr(C)]` layouts of `monitor-common`.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use monitor_common::{
    cert_form, CertEvent, ConnectEvent, ConnectResultEvent, EventHeader, EventKind, ExecEvent,
    ExitEvent, MmapExecEvent, PayloadEvent, SetEnvEvent, SocketCloseEvent, TlsCall, TlsEvent,
    TlsRecordEvent, AF_INET, AF_INET6, CERT_MAX, CERT_SIG_MAX, COMM_LEN, OUTCOME_PENDING,
    PAYLOAD_HEADER_LEN, PAYLOAD_MAX, SOCK_DGRAM, SOCK_STREAM, TLS_TEXT_LEN,
};
use serde::{Deserialize, Serialize};

mod server;
pub use server::{Accept, Listen, ServerClose};

/// A task name as the kernel keeps it: up to 16 bytes, NUL-padded. Stored inline so events
/// carry it without allocating.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Comm([u8; COMM_LEN]);

impl Comm {
    pub fn new(raw: [u8; COMM_LEN]) -> Self {
        Self(raw)
    }

    pub fn as_str(&self) -> &str {
        let len = self.0.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
        // Task names are set by programs; keep the valid prefix rather than failing.
        match std::str::from_utf8(&self.0[..len]) {
            Ok(s) => s,
            Err(e) => std::str::from_utf8(&self.0[..e.valid_up_to()]).unwrap_or_default(),
        }
    }
}

impl From<&str> for Comm {
    fn from(s: &str) -> Self {
        let mut raw = [0u8; COMM_LEN];
        let n = s.len().min(COMM_LEN - 1);
        raw[..n].copy_from_slice(&s.as_bytes()[..n]);
        Self(raw)
    }
}

impl std::fmt::Debug for Comm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl Serialize for Comm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Comm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Comm::from(s.as_str()))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ipv4,
    Ipv6,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connect {
    pub tgid: u32,
    /// Start time of the process (see `monitor_common::EventHeader::start`).
    pub start: u64,
    pub tid: u32,
    pub ktime_ns: u64,
    pub fd: i32,
    /// 0 or a negative errno.
    pub ret: i32,
    pub family: Family,
    /// `None` when the kernel could not tell (no BTF) or the socket is neither stream nor datagram.
    pub protocol: Option<Protocol>,
    /// The destination as given; an IPv4-mapped IPv6 address stays IPv6 here.
    pub ip: IpAddr,
    pub port: u16,
    pub comm: Comm,
    /// The kernel socket (0: not tracked, e.g. UDP).
    pub sock: u64,
    /// For a non-blocking connect: what the kernel already knew when the syscall returned
    /// (`None`: still in progress; `Some(0)`: established; `Some(-errno)`: failed).
    pub outcome: Option<i32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exec {
    pub tgid: u32,
    /// Start time of the process (see `monitor_common::EventHeader::start`).
    pub start: u64,
    pub ktime_ns: u64,
    pub targeted: bool,
    pub comm: Comm,
    pub filename: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    pub tgid: u32,
    /// Start time of the process (see `monitor_common::EventHeader::start`).
    pub start: u64,
    pub tid: u32,
    pub ktime_ns: u64,
    /// Only the thread `tid` ended, not the process.
    pub thread_only: bool,
}

/// An OpenSSL call (see `monitor_common::TlsCall` for what `ssl`, `ptr2`, `value` and `text`
/// mean for each call).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tls {
    pub tgid: u32,
    /// Start time of the process (see `monitor_common::EventHeader::start`).
    pub start: u64,
    pub tid: u32,
    pub ktime_ns: u64,
    /// `monitor_common::TlsCall` as a number (checked by `decode`).
    pub call: u32,
    /// Index of the library the probe sits in (the attach cookie).
    pub library: u32,
    pub ssl: u64,
    pub ptr2: u64,
    pub value: i64,
    pub text: Vec<u8>,
}

impl Tls {
    pub fn call(&self) -> TlsCall {
        TlsCall::from_u32(self.call).expect("checked by decode")
    }

    pub fn text_str(&self) -> String {
        String::from_utf8_lossy(&self.text).into_owned()
    }
}

/// A certificate decoded during a handshake.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cert {
    pub tgid: u32,
    /// Start time of the process (see `monitor_common::EventHeader::start`).
    pub start: u64,
    pub tid: u32,
    pub ktime_ns: u64,
    pub library: u32,
    pub ssl: u64,
    pub der: Vec<u8>,
    /// The certificate was longer than the kernel copies: `der` is a prefix.
    pub truncated: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MmapExec {
    pub tgid: u32,
    /// Start time of the process (see `monitor_common::EventHeader::start`).
    pub start: u64,
    pub ktime_ns: u64,
    /// The mapped file's name (empty when the kernel could not tell).
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetEnv {
    pub tgid: u32,
    /// Start time of the process (see `monitor_common::EventHeader::start`).
    pub start: u64,
    pub ktime_ns: u64,
    pub name: String,
    pub value: String,
}

/// The start of a write on a tracked socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    pub tgid: u32,
    /// Start time of the process (see `monitor_common::EventHeader::start`).
    pub start: u64,
    pub tid: u32,
    pub ktime_ns: u64,
    pub sock: u64,
    pub fd: i32,
    /// `monitor_common::payload_source::*`.
    pub source: u32,
    /// What the process wrote; only `data` of it was captured.
    pub len: u32,
    pub data: Vec<u8>,
}

impl Payload {
    /// The whole write was captured (nothing missing after `data`).
    pub fn complete(&self) -> bool {
        self.data.len() as u64 >= self.len as u64
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketClose {
    /// The process that connected the socket.
    pub tgid: u32,
    /// Start time of the process (see `monitor_common::EventHeader::start`).
    pub start: u64,
    pub ktime_ns: u64,
    pub sock: u64,
    pub fd: i32,
    /// Its first bytes were still being captured.
    pub undecided: bool,
}

/// The outcome of a non-blocking connect, learned after the syscall returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectResult {
    /// The process that connected the socket.
    pub tgid: u32,
    pub start: u64,
    pub ktime_ns: u64,
    pub sock: u64,
    pub fd: i32,
    /// 0 (established) or a negative errno.
    pub result: i32,
}

/// The header of a TLS record a target's connection sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsRecord {
    /// The process that connected the socket.
    pub tgid: u32,
    pub start: u64,
    pub ktime_ns: u64,
    pub sock: u64,
    pub content_type: u8,
    /// The record's first content byte.
    pub first: u8,
    pub len: u32,
}

/// One event from the kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RawEvent {
    Connect(Connect),
    Exec(Exec),
    Exit(Exit),
    Tls(Tls),
    Cert(Cert),
    MmapExec(MmapExec),
    SetEnv(SetEnv),
    Payload(Payload),
    SocketClose(SocketClose),
    ConnectResult(ConnectResult),
    TlsRecord(TlsRecord),
    /// A target binds a TCP socket (see `decode/server.rs`).
    Listen(Listen),
    /// A connection accepted on a target's listener: its addresses.
    Accept(Accept),
    /// Bytes a target's server received on such a connection (`sock`: the connection).
    ServerPayload(Payload),
    ServerClose(ServerClose),
    /// The start of an `SSL_write` of a target's server-side session (`sock`: the SSL object).
    TlsResponse(Payload),
}

impl RawEvent {
    /// The process the event is about: pid and start time.
    pub fn process(&self) -> (u32, u64) {
        match self {
            RawEvent::Connect(e) => (e.tgid, e.start),
            RawEvent::Exec(e) => (e.tgid, e.start),
            RawEvent::Exit(e) => (e.tgid, e.start),
            RawEvent::Tls(e) => (e.tgid, e.start),
            RawEvent::Cert(e) => (e.tgid, e.start),
            RawEvent::MmapExec(e) => (e.tgid, e.start),
            RawEvent::SetEnv(e) => (e.tgid, e.start),
            RawEvent::Payload(e) => (e.tgid, e.start),
            RawEvent::SocketClose(e) => (e.tgid, e.start),
            RawEvent::ConnectResult(e) => (e.tgid, e.start),
            RawEvent::TlsRecord(e) => (e.tgid, e.start),
            RawEvent::Listen(e) => (e.tgid, e.start),
            RawEvent::Accept(e) => (e.tgid, e.start),
            RawEvent::ServerPayload(e) | RawEvent::TlsResponse(e) => (e.tgid, e.start),
            RawEvent::ServerClose(e) => (e.tgid, e.start),
        }
    }

    /// Kernel time of the event.
    pub fn ktime_ns(&self) -> u64 {
        match self {
            RawEvent::Connect(e) => e.ktime_ns,
            RawEvent::Exec(e) => e.ktime_ns,
            RawEvent::Exit(e) => e.ktime_ns,
            RawEvent::Tls(e) => e.ktime_ns,
            RawEvent::Cert(e) => e.ktime_ns,
            RawEvent::MmapExec(e) => e.ktime_ns,
            RawEvent::SetEnv(e) => e.ktime_ns,
            RawEvent::Payload(e) => e.ktime_ns,
            RawEvent::SocketClose(e) => e.ktime_ns,
            RawEvent::ConnectResult(e) => e.ktime_ns,
            RawEvent::TlsRecord(e) => e.ktime_ns,
            RawEvent::Listen(e) => e.ktime_ns,
            RawEvent::Accept(e) => e.ktime_ns,
            RawEvent::ServerPayload(e) | RawEvent::TlsResponse(e) => e.ktime_ns,
            RawEvent::ServerClose(e) => e.ktime_ns,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    Short { kind: u32, len: usize, want: usize },
    UnknownKind(u32),
    UnknownFamily(u16),
    UnknownTlsCall(u32),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Short { kind, len, want } => {
                write!(
                    f,
                    "record of kind {kind} is {len} bytes, expected at least {want}"
                )
            }
            DecodeError::UnknownKind(k) => write!(f, "unknown record kind {k}"),
            DecodeError::UnknownFamily(fam) => write!(f, "unknown address family {fam}"),
            DecodeError::UnknownTlsCall(c) => write!(f, "unknown TLS call {c}"),
        }
    }
}

impl std::error::Error for DecodeError {}

fn read<T: Copy>(bytes: &[u8], kind: u32) -> Result<T, DecodeError> {
    let want = size_of::<T>();
    if bytes.len() < want {
        return Err(DecodeError::Short {
            kind,
            len: bytes.len(),
            want,
        });
    }
    // SAFETY: length checked; T is a plain-old-data `#[repr(C)]` record; unaligned read.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

pub fn decode(bytes: &[u8]) -> Result<RawEvent, DecodeError> {
    let header: EventHeader = read(bytes, 0)?;
    let kind = EventKind::from_u32(header.kind).ok_or(DecodeError::UnknownKind(header.kind))?;
    Ok(match kind {
        EventKind::Connect => {
            let e: ConnectEvent = read(bytes, header.kind)?;
            let (family, ip) = match e.family {
                AF_INET => {
                    let a = [e.addr[0], e.addr[1], e.addr[2], e.addr[3]];
                    (Family::Ipv4, IpAddr::V4(Ipv4Addr::from(a)))
                }
                AF_INET6 => (Family::Ipv6, IpAddr::V6(Ipv6Addr::from(e.addr))),
                other => return Err(DecodeError::UnknownFamily(other)),
            };
            RawEvent::Connect(Connect {
                tgid: e.header.tgid,
                start: e.header.start,
                tid: e.header.tid,
                ktime_ns: e.header.ktime_ns,
                fd: e.fd,
                ret: e.ret,
                family,
                protocol: match e.sock_type {
                    SOCK_STREAM => Some(Protocol::Tcp),
                    SOCK_DGRAM => Some(Protocol::Udp),
                    _ => None,
                },
                ip,
                port: e.port,
                comm: Comm::new(e.comm),
                sock: e.sock,
                outcome: (e.outcome != OUTCOME_PENDING).then_some(e.outcome),
            })
        }
        EventKind::Exec => {
            let e: ExecEvent = read(bytes, header.kind)?;
            let len = (e.filename_len as usize).min(e.filename.len());
            let name = &e.filename[..len];
            let name = name.split(|&b| b == 0).next().unwrap_or_default();
            RawEvent::Exec(Exec {
                tgid: e.header.tgid,
                start: e.header.start,
                ktime_ns: e.header.ktime_ns,
                targeted: e.targeted != 0,
                comm: Comm::new(e.comm),
                filename: String::from_utf8_lossy(name).into_owned(),
            })
        }
        EventKind::Exit => {
            let e: ExitEvent = read(bytes, header.kind)?;
            RawEvent::Exit(Exit {
                tgid: e.header.tgid,
                start: e.header.start,
                tid: e.header.tid,
                ktime_ns: e.header.ktime_ns,
                thread_only: e.thread != 0,
            })
        }
        EventKind::Tls => {
            let e: TlsEvent = read(bytes, header.kind)?;
            TlsCall::from_u32(e.call).ok_or(DecodeError::UnknownTlsCall(e.call))?;
            let len = (e.text_len as usize).min(TLS_TEXT_LEN);
            RawEvent::Tls(Tls {
                tgid: e.header.tgid,
                start: e.header.start,
                tid: e.header.tid,
                ktime_ns: e.header.ktime_ns,
                call: e.call,
                library: e.library,
                ssl: e.ssl,
                ptr2: e.ptr2,
                value: e.value,
                text: e.text[..len].to_vec(),
            })
        }
        EventKind::Cert => {
            // Large record: read the fixed fields, then copy only the certificate's bytes.
            let want = size_of::<CertEvent>();
            if bytes.len() < want {
                return Err(DecodeError::Short {
                    kind: header.kind,
                    len: bytes.len(),
                    want,
                });
            }
            let field = |offset: usize, len: usize| &bytes[offset..offset + len];
            let u32_at = |offset| u32::from_ne_bytes(field(offset, 4).try_into().expect("4 bytes"));
            let der_len = u32_at(std::mem::offset_of!(CertEvent, der_len));
            let library = u32_at(std::mem::offset_of!(CertEvent, library));
            let ssl_at = std::mem::offset_of!(CertEvent, ssl);
            let ssl = u64::from_ne_bytes(field(ssl_at, 8).try_into().expect("8 bytes"));
            let fixed = std::mem::offset_of!(CertEvent, der);
            let copied = (der_len as usize).min(CERT_MAX);
            let mut der = bytes[fixed..fixed + copied].to_vec();
            let mut truncated = der_len as usize > CERT_MAX;
            if bytes[std::mem::offset_of!(CertEvent, form)] == cert_form::TBS {
                let sig_at = std::mem::offset_of!(CertEvent, sig_len);
                let sig_len = u16::from_ne_bytes(field(sig_at, 2).try_into().expect("2 bytes"));
                let sig = field(
                    std::mem::offset_of!(CertEvent, sig),
                    (sig_len as usize).min(CERT_SIG_MAX),
                );
                let unused = bytes[std::mem::offset_of!(CertEvent, sig_unused)];
                // A cut tbsCertificate cannot be rebuilt; what cannot be is no certificate.
                der = (!truncated)
                    .then(|| der_from_tbs(&der, sig, unused))
                    .flatten()
                    .unwrap_or_default();
                truncated = false;
            }
            RawEvent::Cert(Cert {
                tgid: header.tgid,
                start: header.start,
                tid: header.tid,
                ktime_ns: header.ktime_ns,
                library,
                ssl,
                der,
                truncated,
            })
        }
        EventKind::Payload => RawEvent::Payload(payload(bytes, &header)?),
        EventKind::Listen
        | EventKind::Accept
        | EventKind::ServerPayload
        | EventKind::ServerClose
        | EventKind::TlsResponse => server::decode(kind, bytes, &header)?,
        EventKind::SocketClose => {
            let e: SocketCloseEvent = read(bytes, header.kind)?;
            RawEvent::SocketClose(SocketClose {
                tgid: e.header.tgid,
                start: e.header.start,
                ktime_ns: e.header.ktime_ns,
                sock: e.sock,
                fd: e.fd,
                undecided: e.undecided != 0,
            })
        }
        EventKind::ConnectResult => {
            let e: ConnectResultEvent = read(bytes, header.kind)?;
            RawEvent::ConnectResult(ConnectResult {
                tgid: e.header.tgid,
                start: e.header.start,
                ktime_ns: e.header.ktime_ns,
                sock: e.sock,
                fd: e.fd,
                result: e.result,
            })
        }
        EventKind::TlsRecord => {
            let e: TlsRecordEvent = read(bytes, header.kind)?;
            RawEvent::TlsRecord(TlsRecord {
                tgid: e.header.tgid,
                start: e.header.start,
                ktime_ns: e.header.ktime_ns,
                sock: e.sock,
                content_type: e.content_type,
                first: e.first,
                len: e.len,
            })
        }
        EventKind::MmapExec => {
            let e: MmapExecEvent = read(bytes, header.kind)?;
            let len = (e.name_len as usize).min(e.name.len());
            RawEvent::MmapExec(MmapExec {
                tgid: e.header.tgid,
                start: e.header.start,
                ktime_ns: e.header.ktime_ns,
                name: String::from_utf8_lossy(&e.name[..len]).into_owned(),
            })
        }
        EventKind::SetEnv => {
            let e: SetEnvEvent = read(bytes, header.kind)?;
            let text = |raw: &[u8], len: u32| {
                let raw = &raw[..(len as usize).min(raw.len())];
                String::from_utf8_lossy(raw.split(|&b| b == 0).next().unwrap_or_default())
                    .into_owned()
            };
            RawEvent::SetEnv(SetEnv {
                tgid: e.header.tgid,
                start: e.header.start,
                ktime_ns: e.header.ktime_ns,
                name: text(&e.name, e.name_len),
                value: text(&e.value, e.value_len),
            })
        }
    })
}

/// A [`PayloadEvent`] record: the fixed part, then `captured` bytes (variable length).
fn payload(bytes: &[u8], header: &EventHeader) -> Result<Payload, DecodeError> {
    if bytes.len() < PAYLOAD_HEADER_LEN {
        return Err(DecodeError::Short {
            kind: header.kind,
            len: bytes.len(),
            want: PAYLOAD_HEADER_LEN,
        });
    }
    let u32_at =
        |offset: usize| u32::from_ne_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes"));
    let fd = u32_at(std::mem::offset_of!(PayloadEvent, fd)) as i32;
    let sock_at = std::mem::offset_of!(PayloadEvent, sock);
    let sock = u64::from_ne_bytes(bytes[sock_at..sock_at + 8].try_into().expect("8 bytes"));
    let source = u32_at(std::mem::offset_of!(PayloadEvent, source));
    let len = u32_at(std::mem::offset_of!(PayloadEvent, len));
    let captured = (u32_at(std::mem::offset_of!(PayloadEvent, captured)) as usize).min(PAYLOAD_MAX);
    let end = (PAYLOAD_HEADER_LEN + captured).min(bytes.len());
    Ok(Payload {
        tgid: header.tgid,
        start: header.start,
        tid: header.tid,
        ktime_ns: header.ktime_ns,
        sock,
        fd,
        source,
        len,
        data: bytes[PAYLOAD_HEADER_LEN..end].to_vec(),
    })
}

/// DER tag, length and content.
fn push_tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
}

/// The certificate `SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }` from
/// its `tbsCertificate` DER and signature bits. The outer algorithm is the copy of the one
/// inside the `tbsCertificate` (RFC 5280 4.1.1.2 requires them to be the same). `None` unless
/// the result parses as an X.509 certificate, so bytes read from a layout we misjudged never
/// pass for one.
pub fn der_from_tbs(tbs: &[u8], sig: &[u8], unused_bits: u8) -> Option<Vec<u8>> {
    use x509_parser::{
        asn1_rs::{Any, FromDer, Tag},
        prelude::X509Certificate,
    };
    let (rest, outer) = Any::from_der(tbs).ok()?;
    if !rest.is_empty() || outer.tag() != Tag::Sequence || sig.is_empty() || unused_bits > 7 {
        return None;
    }
    // [0] version (optional), serialNumber, signature AlgorithmIdentifier.
    let mut fields = outer.data;
    let mut algorithm = None;
    for _ in 0..3 {
        let (rest, field) = Any::from_der(fields).ok()?;
        let raw = &fields[..fields.len() - rest.len()];
        fields = rest;
        if field.tag() == Tag::Sequence {
            algorithm = Some(raw);
            break;
        }
    }
    let mut bits = Vec::with_capacity(sig.len() + 1);
    bits.push(unused_bits);
    bits.extend_from_slice(sig);
    let mut body = Vec::with_capacity(tbs.len() + sig.len() + 32);
    body.extend_from_slice(tbs);
    body.extend_from_slice(algorithm?);
    push_tlv(&mut body, 0x03, &bits);
    let mut der = Vec::with_capacity(body.len() + 4);
    push_tlv(&mut der, 0x30, &body);
    let (rest, _) = X509Certificate::from_der(&der).ok()?;
    rest.is_empty().then_some(der)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn as_bytes<T>(value: &T) -> Vec<u8> {
        // SAFETY: reading the bytes of a plain `#[repr(C)]` value.
        unsafe {
            std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()).to_vec()
        }
    }

    pub fn connect_record(
        family: u16,
        addr: [u8; 16],
        port: u16,
        sock_type: u16,
        ret: i32,
    ) -> ConnectEvent {
        let mut comm = [0u8; COMM_LEN];
        comm[..4].copy_from_slice(b"curl");
        ConnectEvent {
            header: EventHeader::new(EventKind::Connect, 100, 101, 5_000, 77),
            fd: 3,
            ret,
            family,
            sock_type,
            port,
            _pad: 0,
            addr,
            comm,
            sock: 0xffff_8880_1234_5678,
            outcome: OUTCOME_PENDING,
            _pad2: 0,
        }
    }

    #[test]
    fn decodes_ipv4_tcp_connect() {
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&[10, 203, 0, 2]);
        let bytes = as_bytes(&connect_record(AF_INET, addr, 443, SOCK_STREAM, -115));
        let RawEvent::Connect(c) = decode(&bytes).unwrap() else {
            panic!()
        };
        assert_eq!(c.ip, "10.203.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(
            (c.port, c.fd, c.ret, c.tgid, c.tid, c.start),
            (443, 3, -115, 100, 101, 77)
        );
        assert_eq!((c.sock, c.outcome), (0xffff_8880_1234_5678, None));
        assert_eq!(c.family, Family::Ipv4);
        assert_eq!(c.protocol, Some(Protocol::Tcp));
        assert_eq!(c.comm.as_str(), "curl");
    }

    #[test]
    fn decodes_ipv6_udp_and_unknown_socket_types() {
        let ip: Ipv6Addr = "fd00:203::2".parse().unwrap();
        let bytes = as_bytes(&connect_record(AF_INET6, ip.octets(), 53, SOCK_DGRAM, 0));
        let RawEvent::Connect(c) = decode(&bytes).unwrap() else {
            panic!()
        };
        assert_eq!(
            (c.ip, c.family, c.protocol),
            (IpAddr::V6(ip), Family::Ipv6, Some(Protocol::Udp))
        );
        let bytes = as_bytes(&connect_record(AF_INET6, ip.octets(), 53, 5, 0));
        let RawEvent::Connect(c) = decode(&bytes).unwrap() else {
            panic!()
        };
        assert_eq!(c.protocol, None);
    }

    #[test]
    fn rejects_short_unknown_and_bad_family() {
        let bytes = as_bytes(&connect_record(AF_INET, [0; 16], 1, 1, 0));
        assert!(matches!(
            decode(&bytes[..20]),
            Err(DecodeError::Short { .. })
        ));
        assert!(matches!(
            decode(&bytes[..8]),
            Err(DecodeError::Short { .. })
        ));
        let mut unknown = bytes.clone();
        unknown[0] = 99;
        assert_eq!(decode(&unknown), Err(DecodeError::UnknownKind(99)));
        let bytes = as_bytes(&connect_record(1, [0; 16], 1, 1, 0));
        assert_eq!(decode(&bytes), Err(DecodeError::UnknownFamily(1)));
    }

    #[test]
    fn decodes_exec_with_odd_filenames() {
        let mut e = ExecEvent {
            header: EventHeader::new(EventKind::Exec, 7, 7, 1, 0),
            targeted: 1,
            filename_len: 400, // longer than the buffer: clamped
            comm: [0; COMM_LEN],
            filename: [b'a'; monitor_common::EXEC_FILENAME_LEN],
        };
        e.filename[3] = 0xff;
        let RawEvent::Exec(x) = decode(&as_bytes(&e)).unwrap() else {
            panic!()
        };
        assert!(x.targeted);
        assert_eq!(
            x.filename.chars().count(),
            monitor_common::EXEC_FILENAME_LEN
        );
        assert_eq!(x.comm.as_str(), "");
    }

    #[test]
    fn decodes_certificates_and_flags_truncation() {
        let mut e = Box::new(CertEvent {
            header: EventHeader::new(EventKind::Cert, 9, 10, 3, 0),
            library: 2,
            der_len: 5,
            ssl: 0xdead_beef,
            form: cert_form::DER,
            sig_unused: 0,
            sig_len: 0,
            _pad: 0,
            sig: [0; CERT_SIG_MAX],
            der: [0; CERT_MAX],
        });
        e.der[..5].copy_from_slice(b"\x30\x82\x01\x02\x03");
        let RawEvent::Cert(c) = decode(&as_bytes(&*e)).unwrap() else {
            panic!()
        };
        assert_eq!((c.library, c.ssl, c.tgid, c.tid), (2, 0xdead_beef, 9, 10));
        assert_eq!(c.der, b"\x30\x82\x01\x02\x03");
        assert!(!c.truncated);
        e.der_len = CERT_MAX as u32 + 100;
        let RawEvent::Cert(c) = decode(&as_bytes(&*e)).unwrap() else {
            panic!()
        };
        assert!(c.truncated);
        assert_eq!(c.der.len(), CERT_MAX);
        assert!(matches!(
            decode(&as_bytes(&*e)[..100]),
            Err(DecodeError::Short { .. })
        ));
    }

    /// A certificate with an RSA signature (any other would do) and one with a long
    /// `tbsCertificate` (over 127 bytes of length: long-form DER lengths).
    fn certificates() -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for sans in [
            vec!["api.test".to_string()],
            (0..40).map(|i| format!("host{i}.api.test")).collect(),
        ] {
            let key = rcgen::KeyPair::generate().unwrap();
            let params = rcgen::CertificateParams::new(sans).unwrap();
            out.push(params.self_signed(&key).unwrap().der().to_vec());
        }
        out
    }

    #[test]
    fn certificates_are_rebuilt_from_their_tbs_and_signature() {
        use x509_parser::prelude::{FromDer, X509Certificate};
        for der in certificates() {
            let (_, cert) = X509Certificate::from_der(&der).unwrap();
            let tbs = cert.tbs_certificate.as_ref();
            let sig = &cert.signature_value.data;
            assert_eq!(der_from_tbs(tbs, sig, 0).as_deref(), Some(&der[..]));
            // Through the kernel record.
            let mut e = Box::new(CertEvent {
                header: EventHeader::new(EventKind::Cert, 9, 10, 3, 0),
                library: 1,
                der_len: tbs.len() as u32,
                ssl: 7,
                form: cert_form::TBS,
                sig_unused: 0,
                sig_len: sig.len() as u16,
                _pad: 0,
                sig: [0; CERT_SIG_MAX],
                der: [0; CERT_MAX],
            });
            e.der[..tbs.len()].copy_from_slice(tbs);
            e.sig[..sig.len()].copy_from_slice(sig);
            let RawEvent::Cert(c) = decode(&as_bytes(&*e)).unwrap() else {
                panic!()
            };
            assert_eq!(c.der, der);
            assert!(!c.truncated);
            // A misread object gives no certificate, never a wrong one.
            e.der_len -= 1;
            let RawEvent::Cert(c) = decode(&as_bytes(&*e)).unwrap() else {
                panic!()
            };
            assert!(c.der.is_empty());
            assert_eq!(der_from_tbs(&tbs[..tbs.len() - 1], sig, 0), None);
            assert_eq!(der_from_tbs(tbs, sig, 9), None);
            assert_eq!(der_from_tbs(b"\x30\x03\x02\x01\x01", sig, 0), None);
            assert_eq!(der_from_tbs(b"", sig, 0), None);
        }
    }

    #[test]
    fn decodes_tls_calls_and_rejects_unknown_ones() {
        let mut e = TlsEvent {
            header: EventHeader::new(EventKind::Tls, 1, 1, 1, 0),
            call: TlsCall::SetSni as u32,
            library: 0,
            ssl: 7,
            ptr2: 0,
            value: 0,
            text_len: 8,
            _pad: 0,
            text: [0; TLS_TEXT_LEN],
        };
        e.text[..8].copy_from_slice(b"api.test");
        let RawEvent::Tls(t) = decode(&as_bytes(&e)).unwrap() else {
            panic!()
        };
        assert_eq!(
            (t.call(), t.text_str().as_str()),
            (TlsCall::SetSni, "api.test")
        );
        e.call = 999;
        assert_eq!(decode(&as_bytes(&e)), Err(DecodeError::UnknownTlsCall(999)));
    }

    #[test]
    fn decodes_variable_length_payloads() {
        let mut e = Box::new(PayloadEvent {
            header: EventHeader::new(EventKind::Payload, 4, 5, 6, 0),
            sock: 9,
            fd: 7,
            source: monitor_common::payload_source::WRITEV,
            len: 100,
            captured: 3,
            data: [0; PAYLOAD_MAX],
        });
        e.data[..3].copy_from_slice(b"GET");
        assert_eq!(std::mem::offset_of!(PayloadEvent, data), PAYLOAD_HEADER_LEN);
        let full = as_bytes(&*e);
        // The kernel sends only the header and the captured bytes.
        let RawEvent::Payload(p) = decode(&full[..PAYLOAD_HEADER_LEN + 3]).unwrap() else {
            panic!()
        };
        assert_eq!(
            (p.fd, p.sock, p.len, p.data.as_slice(), p.complete()),
            (7, 9, 100, &b"GET"[..], false)
        );
        e.len = 3;
        let RawEvent::Payload(p) = decode(&as_bytes(&*e)[..PAYLOAD_HEADER_LEN + 3]).unwrap() else {
            panic!()
        };
        assert!(p.complete());
        // A lying `captured` cannot read past the record.
        e.captured = 4000;
        let RawEvent::Payload(p) = decode(&as_bytes(&*e)[..PAYLOAD_HEADER_LEN + 10]).unwrap()
        else {
            panic!()
        };
        assert_eq!(p.data.len(), 10);
        assert!(matches!(
            decode(&full[..20]),
            Err(DecodeError::Short { .. })
        ));
    }

    #[test]
    fn decodes_connect_results_closes_and_mapped_library_names() {
        let r = ConnectResultEvent {
            header: EventHeader::new(EventKind::ConnectResult, 12, 0, 9, 34),
            sock: 0xffff_8880_0000_0001,
            fd: 4,
            result: -111,
        };
        assert_eq!(
            decode(&as_bytes(&r)).unwrap(),
            RawEvent::ConnectResult(ConnectResult {
                tgid: 12,
                start: 34,
                ktime_ns: 9,
                sock: 0xffff_8880_0000_0001,
                fd: 4,
                result: -111,
            })
        );
        let c = SocketCloseEvent {
            header: EventHeader::new(EventKind::SocketClose, 12, 0, 9, 34),
            sock: 5,
            fd: 4,
            undecided: 1,
        };
        let RawEvent::SocketClose(c) = decode(&as_bytes(&c)).unwrap() else {
            panic!()
        };
        assert!(c.undecided && c.sock == 5 && c.start == 34);
        let mut m = MmapExecEvent {
            header: EventHeader::new(EventKind::MmapExec, 12, 12, 9, 34),
            fd: 3,
            name_len: 11,
            name: [0; monitor_common::MMAP_NAME_LEN],
        };
        m.name[..11].copy_from_slice(b"libpq.so.5\xff");
        let RawEvent::MmapExec(x) = decode(&as_bytes(&m)).unwrap() else {
            panic!()
        };
        assert!(x.name.starts_with("libpq.so.5"));
        m.name_len = 999; // clamped
        assert!(decode(&as_bytes(&m)).is_ok());
        let e = ExitEvent {
            header: EventHeader::new(EventKind::Exit, 12, 13, 9, 34),
            thread: 1,
            _pad: 0,
        };
        let RawEvent::Exit(x) = decode(&as_bytes(&e)).unwrap() else {
            panic!()
        };
        assert!(x.thread_only && x.tid == 13);
    }

    #[test]
    fn comm_is_lossless_for_ascii_and_safe_for_garbage() {
        assert_eq!(Comm::from("node").as_str(), "node");
        assert_eq!(
            Comm::from("a-very-long-thread-name").as_str(),
            "a-very-long-thr"
        );
        let mut raw = [0u8; COMM_LEN];
        raw[..3].copy_from_slice(&[b'o', b'k', 0xfe]);
        assert_eq!(Comm::new(raw).as_str(), "ok");
    }
}
