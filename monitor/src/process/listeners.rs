//! The TCP listeners a process already had open when it became a target: the kernel marks a
//! target's listeners when it binds them, so these were never marked, and the connections
//! they accept would go unseen unless userspace marks them through their descriptors.
//!
//! Read from `/proc/PID/fd` (socket inodes) and the process's own network namespace tables
//! (`/proc/PID/net/{tcp,tcp6}`, state `0A`), with the same bounds as [`super::sockets`].
use std::{collections::HashMap, io::BufRead, net::SocketAddr};

use super::{
    sockets::{rows, socket_inodes, table},
    ProcFs,
};

/// A listening TCP socket found open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenListener {
    pub fd: u32,
    pub inode: u64,
    /// The address it is bound to (the unspecified address for "all").
    pub local: SocketAddr,
}

/// Listening sockets of one `/proc/net/tcp*` table: inode -> local address.
pub fn parse_listeners(text: impl BufRead) -> HashMap<u64, SocketAddr> {
    rows(text)
        .filter(|r| r.listening)
        .map(|r| (r.inode, r.local))
        .collect()
}

/// The TCP listeners `pid` has open now, by descriptor (one per socket: the lowest descriptor).
pub fn open_listeners(procfs: &ProcFs, pid: u32) -> Vec<OpenListener> {
    let mut inodes = socket_inodes(procfs, pid);
    if inodes.is_empty() {
        return Vec::new();
    }
    inodes.sort_unstable();
    let mut found: Vec<OpenListener> = Vec::new();
    for name in ["tcp", "tcp6"] {
        let Some(text) = table(procfs, pid, name) else {
            continue;
        };
        let listeners = parse_listeners(text);
        for (fd, inode) in &inodes {
            if let Some(local) = listeners.get(inode) {
                if !found.iter().any(|l| l.inode == *inode) {
                    found.push(OpenListener {
                        fd: *fd,
                        inode: *inode,
                        local: *local,
                    });
                }
            }
        }
    }
    found.sort_by_key(|l| l.fd);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0
   1: 0100CB0A:C350 0200CB0A:01BB 01 00000000:00000000 00:00000000 00000000     0        0 1002 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1003 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn tables_of_listeners() {
        let found = parse_listeners(TCP.as_bytes());
        assert_eq!(found.len(), 2, "the connection is left out");
        assert_eq!(found[&1001], "0.0.0.0:8080".parse().unwrap());
        assert_eq!(found[&1003], "127.0.0.1:3000".parse().unwrap());
    }

    #[test]
    fn this_process_listeners() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let found = open_listeners(&ProcFs::default(), std::process::id());
        use std::os::fd::AsRawFd;
        assert!(
            found
                .iter()
                .any(|l| l.fd == listener.as_raw_fd() as u32 && l.local == addr),
            "{found:?}"
        );
    }
}
