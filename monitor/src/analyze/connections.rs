//! A process's connections: by kernel socket, by descriptor, and the latest connect of each
//! thread, so TLS sessions and payloads are tied to a destination, and each connection's
//! pending report (its held `connect` event) and plaintext stream live and die with it.
//!
//! A TCP connection is named by its kernel socket (`struct sock` address), not by its
//! descriptor: a descriptor can be closed and reused, replaced by `dup2`, or inherited by a
//! child, while the socket is one connection from connect to close. Connections the kernel
//! does not track (UDP, or no socket offsets) get an id derived from their descriptor.
use std::{collections::HashMap, sync::Arc};

use crate::{
    detect::StreamInspector,
    output::{Destination, Event, Socket},
};

/// A connection's id: the kernel socket address, or for untracked ones [`untracked`]`(fd)`.
pub type SockId = u64;

/// Id of a connection the kernel does not track. Kernel addresses are far above `u32::MAX`, so
/// these never collide with a real socket.
pub fn untracked(fd: i32) -> SockId {
    fd as u32 as u64 + 1
}

/// One connection of a process.
#[derive(Debug)]
pub struct Conn {
    pub fd: i32,
    /// The thread that connected it.
    pub tid: u32,
    pub destination: Destination,
    pub socket: Socket,
    /// Its `connect` event, held until the destination has a name and the outcome is known, or
    /// until `CONNECT_HOLD` passed.
    pub held: Option<Event>,
    /// The outcome of the connect is known (it returned a final result, or the kernel told).
    pub outcome_known: bool,
    /// The `connect` event went out as `in_progress`: a `connect_result` event is owed.
    pub result_owed: bool,
    /// The first bytes the process writes, until the plaintext detectors reach a verdict.
    pub stream: Option<StreamInspector>,
    /// The name the client used for the destination (HTTP Host, TLS SNI), once known.
    pub hostname: Option<Arc<str>>,
    /// Its first bytes were judged (the name, if any, is known).
    pub judged: bool,
    /// What its TLS record headers said so far (TLS connections).
    pub tls: TlsRecords,
}

/// What the headers of the TLS records a client sends say about its session: which version it
/// speaks, and whether application data left (which the kernel sees in the packets, without a
/// probe on `SSL_write`).
///
/// TLS 1.2 clients send their key exchange in the clear (a handshake record whose message is a
/// ClientKeyExchange, Certificate or CertificateVerify) and their Finished as an encrypted
/// handshake record after ChangeCipherSpec; every application-data record after that is data.
/// TLS 1.3 clients send everything after the ClientHello as application-data records: the first
/// is their Finished, and an alert is one too (19 bytes with a 16-byte tag), so data is a later
/// application-data record longer than an alert.
///
/// A client that answers the server's certificate with an alert sends it as its first record
/// after the ClientHello (and TLS 1.3's compatibility ChangeCipherSpec): in the clear under
/// TLS 1.2 (an alert record), encrypted under TLS 1.3 (an application-data record no longer
/// than an alert). That is how a refusal is told from a session that merely went unused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsRecords {
    after_ccs: bool,
    tls12: bool,
    encrypted: u32,
    used: bool,
    /// A record other than a ClientHello or ChangeCipherSpec was seen.
    answered: bool,
    refused: bool,
}

const CHANGE_CIPHER_SPEC: u8 = 20;
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;
/// An encrypted TLS 1.3 alert: 2 bytes, the inner content type and a 16-byte tag (8 with the
/// CCM_8 suites).
const LONGEST_ALERT: u32 = 2 + 1 + 16;

impl TlsRecords {
    /// One record header (`first`: its first content byte). `true` when this record is the
    /// first application data.
    pub fn feed(&mut self, content_type: u8, first: u8, len: u32) -> bool {
        let hello = content_type == HANDSHAKE && first == 1;
        if !self.answered && content_type != CHANGE_CIPHER_SPEC && !hello {
            self.answered = true;
            self.refused = content_type == ALERT
                || (content_type == APPLICATION_DATA && !self.tls12 && len <= LONGEST_ALERT);
        }
        match content_type {
            CHANGE_CIPHER_SPEC => self.after_ccs = true,
            HANDSHAKE => {
                let clear_key_exchange = !self.after_ccs && matches!(first, 11 | 15 | 16);
                // After ChangeCipherSpec a handshake record is TLS 1.2's encrypted Finished,
                // unless it is TLS 1.3's second ClientHello (after a HelloRetryRequest).
                let encrypted_finished = self.after_ccs && first != 1;
                if clear_key_exchange || encrypted_finished {
                    self.tls12 = true;
                }
            }
            APPLICATION_DATA if !self.used => {
                self.encrypted += 1;
                let data = if self.tls12 {
                    true
                } else {
                    self.encrypted >= 2 && len > LONGEST_ALERT
                };
                if data {
                    self.used = true;
                    return true;
                }
            }
            _ => {}
        }
        false
    }

    pub fn used(&self) -> bool {
        self.used
    }

    /// The client's first answer after its ClientHello was an alert: it refused the handshake
    /// (in practice, the server's certificate).
    pub fn refused(&self) -> bool {
        self.refused
    }
}

impl Conn {
    pub fn new(fd: i32, destination: Destination, socket: Socket) -> Self {
        Self {
            fd,
            tid: 0,
            destination,
            socket,
            held: None,
            outcome_known: true,
            result_owed: false,
            stream: None,
            hostname: None,
            judged: false,
            tls: TlsRecords::default(),
        }
    }

    /// The destination with the learned name, if any.
    pub fn named_destination(&self) -> Destination {
        let mut d = self.destination.clone();
        if d.hostname.is_none() {
            d.hostname = self.hostname.clone();
        }
        d
    }
}

/// Threads whose latest connect is remembered, per process, at most (oldest forgotten first).
pub const MAX_THREADS: usize = 4096;

#[derive(Debug, Default)]
pub struct Connections {
    by_sock: HashMap<SockId, Conn>,
    by_fd: HashMap<i32, SockId>,
    last_on_thread: HashMap<u32, SockId>,
}

impl Connections {
    /// A new connection on `fd` (the one it replaces on that descriptor, if any, is returned:
    /// its socket is another connection now, whatever the kernel says of it later).
    pub fn insert(&mut self, tid: u32, id: SockId, mut conn: Conn) -> Option<Conn> {
        conn.tid = tid;
        let fd = conn.fd;
        let old = self.by_fd.insert(fd, id).filter(|old| *old != id);
        // A tracked socket stays until the kernel reports its end; an untracked one was only
        // ever known by this descriptor.
        let replaced = old
            .filter(|old| *old == untracked(fd))
            .and_then(|old| self.remove(old));
        if self.last_on_thread.len() >= MAX_THREADS && !self.last_on_thread.contains_key(&tid) {
            if let Some(&any) = self.last_on_thread.keys().next() {
                self.last_on_thread.remove(&any);
            }
        }
        self.last_on_thread.insert(tid, id);
        self.by_sock.insert(id, conn);
        replaced
    }

    pub fn get(&self, id: SockId) -> Option<&Conn> {
        self.by_sock.get(&id)
    }

    /// The client on connection `id` refused its TLS handshake (`TlsRecords::refused`).
    pub fn refused(&self, id: SockId) -> bool {
        self.get(id).is_some_and(|c| c.tls.refused())
    }

    pub fn get_mut(&mut self, id: SockId) -> Option<&mut Conn> {
        self.by_sock.get_mut(&id)
    }

    /// The connection currently on descriptor `fd`.
    pub fn by_fd(&self, fd: i32) -> Option<(SockId, &Conn)> {
        let id = *self.by_fd.get(&fd)?;
        self.by_sock.get(&id).map(|c| (id, c))
    }

    /// The most recent connect made by this thread, if its connection is still open.
    pub fn last_on_thread(&self, tid: u32) -> Option<(SockId, &Conn)> {
        let id = *self.last_on_thread.get(&tid)?;
        self.by_sock.get(&id).map(|c| (id, c))
    }

    /// The connection ended: forget it.
    pub fn remove(&mut self, id: SockId) -> Option<Conn> {
        let conn = self.by_sock.remove(&id)?;
        if self.by_fd.get(&conn.fd) == Some(&id) {
            self.by_fd.remove(&conn.fd);
        }
        if self.last_on_thread.get(&conn.tid) == Some(&id) {
            self.last_on_thread.remove(&conn.tid);
        }
        Some(conn)
    }

    /// A thread ended: forget its latest connect.
    pub fn thread_exit(&mut self, tid: u32) {
        self.last_on_thread.remove(&tid);
    }

    pub fn ids(&self) -> Vec<SockId> {
        self.by_sock.keys().copied().collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = (SockId, &Conn)> {
        self.by_sock.iter().map(|(id, c)| (*id, c))
    }

    pub fn len(&self) -> usize {
        self.by_sock.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_sock.is_empty()
    }

    /// Entries in every index (for the table-size figures of `stats` status lines).
    pub fn table_sizes(&self) -> (usize, usize, usize) {
        (
            self.by_sock.len(),
            self.by_fd.len(),
            self.last_on_thread.len(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Family, Protocol};

    fn conn(fd: i32, port: u16) -> Conn {
        Conn::new(
            fd,
            Destination {
                ip: "10.203.0.2".parse().unwrap(),
                port,
                hostname: None,
            },
            Socket {
                family: Family::Ipv4,
                protocol: Some(Protocol::Tcp),
                fd,
            },
        )
    }

    const SK1: SockId = 0xffff_8880_0000_1000;
    const SK2: SockId = 0xffff_8880_0000_2000;

    #[test]
    fn sockets_outlive_descriptor_reuse() {
        let mut c = Connections::default();
        c.insert(10, SK1, conn(5, 443));
        assert_eq!(c.by_fd(5).unwrap().0, SK1);
        assert_eq!(c.last_on_thread(10).unwrap().0, SK1);
        assert!(c.last_on_thread(11).is_none());
        // fd 5 is reused (after dup2 or close) for another connection by another thread.
        assert!(c.insert(11, SK2, conn(5, 8443)).is_none());
        assert_eq!(c.by_fd(5).unwrap().1.destination.port, 8443);
        // The first socket is still a connection until the kernel reports its end.
        assert_eq!(c.get(SK1).unwrap().destination.port, 443);
        assert_eq!(c.last_on_thread(10).unwrap().0, SK1);
        // Its end does not disturb the descriptor's new owner.
        c.remove(SK1);
        assert_eq!(c.by_fd(5).unwrap().0, SK2);
        assert!(c.last_on_thread(10).is_none());
        c.thread_exit(11);
        assert!(c.last_on_thread(11).is_none());
        c.remove(SK2);
        assert!(c.is_empty());
        assert_eq!(c.table_sizes(), (0, 0, 0));
    }

    #[test]
    fn untracked_connections_are_replaced_on_their_descriptor() {
        let mut c = Connections::default();
        c.insert(1, untracked(7), conn(7, 53));
        let old = c.insert(1, untracked(7), conn(7, 54));
        assert!(old.is_none(), "same id: an update, not a replacement");
        assert_eq!(c.len(), 1);
        c.insert(1, SK1, conn(7, 443));
        assert_eq!(c.len(), 1, "the UDP socket on fd 7 is gone");
    }

    /// Feed `(type, first byte, length)` records; the index of the one that counts as data.
    fn first_data(records: &[(u8, u8, u32)]) -> Option<usize> {
        let mut t = TlsRecords::default();
        records
            .iter()
            .position(|&(ty, first, len)| t.feed(ty, first, len))
    }

    #[test]
    fn tls_records_tell_a_refusal_from_an_unused_session() {
        let refused = |records: &[(u8, u8, u32)]| {
            let mut t = TlsRecords::default();
            for &(ct, first, len) in records {
                t.feed(ct, first, len);
            }
            t.refused()
        };
        // TLS 1.3: ClientHello, CCS, then an encrypted alert instead of the Finished.
        assert!(refused(&[(22, 1, 512), (20, 1, 1), (23, 0x17, 19)]));
        assert!(refused(&[(22, 1, 512), (23, 0x17, 19)]));
        // TLS 1.2: a plain alert right after the ClientHello.
        assert!(refused(&[(22, 1, 300), (21, 2, 2)]));
        // A Finished, then the alert (the server's refusal, or a closed session): not the client
        // refusing the certificate. Nothing sent after the ClientHello: not a refusal either.
        assert!(!refused(&[
            (22, 1, 512),
            (20, 1, 1),
            (23, 0x9a, 53),
            (23, 7, 19)
        ]));
        assert!(!refused(&[
            (22, 1, 300),
            (22, 16, 70),
            (20, 1, 1),
            (21, 0, 26)
        ]));
        assert!(!refused(&[(22, 1, 512)]));
        // After a HelloRetryRequest the second ClientHello is not an answer.
        assert!(refused(&[
            (22, 1, 512),
            (20, 1, 1),
            (22, 1, 530),
            (23, 3, 19)
        ]));
    }

    #[test]
    fn tls_records_tell_application_data_from_the_handshake() {
        // TLS 1.3 (compat mode): ClientHello, CCS, Finished, then the request.
        assert_eq!(
            first_data(&[(22, 1, 512), (20, 1, 1), (23, 0x9a, 53), (23, 0x31, 90)]),
            Some(3)
        );
        // TLS 1.3 without CCS; a rejected session sends only an alert after its Finished.
        assert_eq!(
            first_data(&[(22, 1, 512), (23, 0x9a, 53), (23, 0x44, 90)]),
            Some(2)
        );
        assert_eq!(
            first_data(&[(22, 1, 512), (20, 1, 1), (23, 0x9a, 53), (23, 7, 19)]),
            None
        );
        // TLS 1.3 after a HelloRetryRequest: a second ClientHello after the CCS.
        assert_eq!(
            first_data(&[
                (22, 1, 512),
                (20, 1, 1),
                (22, 1, 530),
                (23, 1, 53),
                (23, 2, 80)
            ]),
            Some(4)
        );
        // TLS 1.2: ClientKeyExchange in the clear, CCS, encrypted Finished, then data.
        assert_eq!(
            first_data(&[
                (22, 1, 300),
                (22, 16, 70),
                (20, 1, 1),
                (22, 0, 40),
                (23, 0, 60)
            ]),
            Some(4)
        );
        // TLS 1.2 resumption: no key exchange, the Finished after CCS says 1.2.
        assert_eq!(
            first_data(&[(22, 1, 300), (20, 1, 1), (22, 0, 40), (23, 0, 30)]),
            Some(3)
        );
        // TLS 1.2 closing without data: an alert is its own type.
        assert_eq!(
            first_data(&[
                (22, 1, 300),
                (22, 16, 70),
                (20, 1, 1),
                (22, 0, 40),
                (21, 0, 26)
            ]),
            None
        );
    }

    #[test]
    fn thread_memory_is_bounded() {
        let mut c = Connections::default();
        for tid in 0..(MAX_THREADS as u32 + 100) {
            c.insert(tid, untracked(3), conn(3, 1));
        }
        assert!(c.table_sizes().2 <= MAX_THREADS);
    }
}
