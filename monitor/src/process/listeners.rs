//! The TCP listeners a process already had open when it became a target: the kernel marks a
//! target's listeners when it binds them, so these were never marked, and the connections
//! they accept would go unseen unless userspace marks them through their descriptors.
//!
//! Read from `/proc/PID/fd` (socket inodes) and the process's own network namespace tables
//! (`/proc/PID/net/{tcp,tcp6}`, state `0A`), with the same bounds as [`super::sockets`].
use std::{
    collections::HashMap,
    fs,
    io::{BufRead, BufReader, Read},
    net::SocketAddr,
};

use super::{sockets::parse_address, ProcFs};

/// Descriptors looked at per process.
const MAX_FDS: usize = 65_536;
/// Bytes of each /proc/PID/net table read.
const TABLE_BUDGET: u64 = 16 << 20;

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
    const LISTEN: &str = "0A";
    let mut out = HashMap::new();
    for line in text.lines().skip(1).map_while(Result::ok) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(state), Some(inode)) = (fields.get(1), fields.get(3), fields.get(9))
        else {
            continue;
        };
        let (Some(local), Ok(inode)) = (parse_address(local), inode.parse::<u64>()) else {
            continue;
        };
        if *state == LISTEN && inode != 0 {
            out.insert(inode, local);
        }
    }
    out
}

/// The TCP listeners `pid` has open now, by descriptor (one per socket: the lowest descriptor).
pub fn open_listeners(procfs: &ProcFs, pid: u32) -> Vec<OpenListener> {
    let Ok(dir) = fs::read_dir(procfs.path(pid, "fd")) else {
        return Vec::new();
    };
    let mut inodes: Vec<(u32, u64)> = Vec::new();
    for entry in dir.flatten().take(MAX_FDS) {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(target) = fs::read_link(entry.path()) else {
            continue;
        };
        if let Some(inode) = target
            .to_string_lossy()
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.parse().ok())
        {
            inodes.push((fd, inode));
        }
    }
    if inodes.is_empty() {
        return Vec::new();
    }
    inodes.sort_unstable();
    let mut found: Vec<OpenListener> = Vec::new();
    for table in ["tcp", "tcp6"] {
        let Ok(file) = fs::File::open(procfs.path(pid, &format!("net/{table}"))) else {
            continue;
        };
        let listeners = parse_listeners(BufReader::new(file.take(TABLE_BUDGET)));
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
