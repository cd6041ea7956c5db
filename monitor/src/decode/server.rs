//! Records of the server side of targets (`monitor-ebpf/src/probes/server.rs` and
//! `tls_server.rs`): listeners, accepted connections, their first incoming bytes, their ends,
//! and the start of server-side `SSL_write`s.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use monitor_common::{
    AcceptEvent, EventHeader, EventKind, ListenEvent, ServerCloseEvent, AF_INET, AF_INET6,
};
use serde::{Deserialize, Serialize};

use super::{payload, read, DecodeError, RawEvent};

/// A target binds a TCP socket (before the bind is done: `addr`'s port may be 0, the bind may
/// still fail).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listen {
    pub tgid: u32,
    pub start: u64,
    pub tid: u32,
    pub ktime_ns: u64,
    /// Names the listener ([`Accept::listener`]).
    pub sock: u64,
    /// The address asked for (an IPv4-mapped IPv6 address stays IPv6 here).
    pub addr: SocketAddr,
}

/// The first packet of a connection a target's listener accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accept {
    /// The process that bound the listener.
    pub tgid: u32,
    pub start: u64,
    pub ktime_ns: u64,
    /// The connection's socket.
    pub sock: u64,
    /// The listener's id ([`Listen::sock`], or the id userspace gave a listener it found open).
    pub listener: u64,
    /// The address the client reached.
    pub local: SocketAddr,
    /// The client's address.
    pub peer: SocketAddr,
}

/// A target's listener, or a connection it accepted, was released.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerClose {
    pub tgid: u32,
    pub start: u64,
    pub ktime_ns: u64,
    pub sock: u64,
    /// The listener itself (else one of its connections).
    pub listener: bool,
    /// The connection's first bytes were still being captured.
    pub undecided: bool,
}

fn ip(family: u16, raw: [u8; 16]) -> Result<IpAddr, DecodeError> {
    match family {
        AF_INET => Ok(IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))),
        AF_INET6 => Ok(IpAddr::V6(Ipv6Addr::from(raw))),
        other => Err(DecodeError::UnknownFamily(other)),
    }
}

pub(super) fn decode(
    kind: EventKind,
    bytes: &[u8],
    header: &EventHeader,
) -> Result<RawEvent, DecodeError> {
    Ok(match kind {
        EventKind::Listen => {
            let e: ListenEvent = read(bytes, header.kind)?;
            RawEvent::Listen(Listen {
                tgid: e.header.tgid,
                start: e.header.start,
                tid: e.header.tid,
                ktime_ns: e.header.ktime_ns,
                sock: e.sock,
                addr: SocketAddr::new(ip(e.family, e.addr)?, e.port),
            })
        }
        EventKind::Accept => {
            let e: AcceptEvent = read(bytes, header.kind)?;
            RawEvent::Accept(Accept {
                tgid: e.header.tgid,
                start: e.header.start,
                ktime_ns: e.header.ktime_ns,
                sock: e.sock,
                listener: e.listener,
                local: SocketAddr::new(ip(e.family, e.local)?, e.local_port),
                peer: SocketAddr::new(ip(e.family, e.peer)?, e.peer_port),
            })
        }
        EventKind::ServerClose => {
            let e: ServerCloseEvent = read(bytes, header.kind)?;
            RawEvent::ServerClose(ServerClose {
                tgid: e.header.tgid,
                start: e.header.start,
                ktime_ns: e.header.ktime_ns,
                sock: e.sock,
                listener: e.listener != 0,
                undecided: e.undecided != 0,
            })
        }
        EventKind::ServerPayload => RawEvent::ServerPayload(payload(bytes, header)?),
        EventKind::TlsResponse => RawEvent::TlsResponse(payload(bytes, header)?),
        _ => return Err(DecodeError::UnknownKind(header.kind)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode as decode_record, tests::as_bytes};

    #[test]
    fn decodes_listen_and_accept() {
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&[10, 203, 0, 1]);
        let listen = ListenEvent {
            header: EventHeader::new(EventKind::Listen, 7, 8, 1, 99),
            sock: 0xffff_0001,
            family: AF_INET,
            port: 3000,
            _pad: 0,
            addr,
        };
        let RawEvent::Listen(l) = decode_record(&as_bytes(&listen)).unwrap() else {
            panic!()
        };
        assert_eq!(l.addr, "10.203.0.1:3000".parse().unwrap());
        assert_eq!((l.tgid, l.start, l.sock), (7, 99, 0xffff_0001));

        let mut peer = [0u8; 16];
        peer[..4].copy_from_slice(&[10, 203, 0, 2]);
        let accept = AcceptEvent {
            header: EventHeader::new(EventKind::Accept, 7, 0, 2, 99),
            sock: 0xffff_0002,
            listener: 0xffff_0001,
            family: AF_INET,
            local_port: 3000,
            peer_port: 40000,
            _pad: 0,
            local: addr,
            peer,
        };
        let RawEvent::Accept(a) = decode_record(&as_bytes(&accept)).unwrap() else {
            panic!()
        };
        assert_eq!(a.local, "10.203.0.1:3000".parse().unwrap());
        assert_eq!(a.peer, "10.203.0.2:40000".parse().unwrap());
        assert_eq!(a.listener, 0xffff_0001);
    }
}
