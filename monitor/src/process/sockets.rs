//! The connections a process already had when the monitor started: their first bytes and TLS
//! handshakes happened before, so nothing can be judged about them, and the user must be told.
//!
//! Read from `/proc/PID/fd` (socket inodes) and the process's own network namespace tables
//! (`/proc/PID/net/{tcp,tcp6,udp,udp6}`), with bounds on both.
use std::{
    collections::HashMap,
    fs,
    io::{BufRead, BufReader, Read},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use super::ProcFs;

/// Descriptors looked at per process.
const MAX_FDS: usize = 65_536;
/// Bytes of each /proc/PID/net table read (about 150 bytes a socket).
const TABLE_BUDGET: u64 = 16 << 20;

/// A connected socket found open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenSocket {
    pub fd: u32,
    pub protocol: &'static str,
    pub remote: SocketAddr,
}

/// `0100007F:1F90` (IPv4, the kernel's byte order) or 32 hex digits (IPv6, four host-order
/// words) and a hex port.
pub(crate) fn parse_address(field: &str) -> Option<SocketAddr> {
    let (ip, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(
            u32::from_str_radix(ip, 16).ok()?.to_le_bytes(),
        )),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                let word = u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok()?;
                chunk.copy_from_slice(&word.to_le_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// One row of a `/proc/net/{tcp,udp}*` table.
pub(crate) struct Row {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// State `0A` (TCP_LISTEN).
    pub listening: bool,
    pub inode: u64,
}

/// The rows of one table (header skipped, malformed rows and inode 0 left out).
pub(crate) fn rows(text: impl BufRead) -> impl Iterator<Item = Row> {
    const LISTEN: &str = "0A";
    text.lines()
        .skip(1)
        .map_while(Result::ok)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let row = Row {
                local: parse_address(fields.get(1)?)?,
                remote: parse_address(fields.get(2)?)?,
                listening: *fields.get(3)? == LISTEN,
                inode: fields.get(9)?.parse().ok()?,
            };
            (row.inode != 0).then_some(row)
        })
}

/// Connected sockets of one `/proc/net/{tcp,udp}*` table: inode -> remote address. Listening
/// and unconnected sockets (remote port 0) are left out.
pub fn parse_table(text: impl BufRead) -> HashMap<u64, SocketAddr> {
    rows(text)
        .filter(|r| !r.listening && r.remote.port() != 0)
        .map(|r| (r.inode, r.remote))
        .collect()
}

/// The sockets among `pid`'s descriptors: (fd, inode), at most [`MAX_FDS`] descriptors looked at.
pub(crate) fn socket_inodes(procfs: &ProcFs, pid: u32) -> Vec<(u32, u64)> {
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
    inodes
}

/// One of `pid`'s network namespace tables (`tcp`, `tcp6`, ...), at most [`TABLE_BUDGET`] read.
pub(crate) fn table(procfs: &ProcFs, pid: u32, name: &str) -> Option<impl BufRead> {
    let file = fs::File::open(procfs.path(pid, &format!("net/{name}"))).ok()?;
    Some(BufReader::new(file.take(TABLE_BUDGET)))
}

/// The connected sockets `pid` has open now, by descriptor.
pub fn open_sockets(procfs: &ProcFs, pid: u32) -> Vec<OpenSocket> {
    let inodes = socket_inodes(procfs, pid);
    if inodes.is_empty() {
        return Vec::new();
    }
    let mut found = Vec::new();
    for (name, protocol) in [
        ("tcp", "tcp"),
        ("tcp6", "tcp"),
        ("udp", "udp"),
        ("udp6", "udp"),
    ] {
        let Some(text) = table(procfs, pid, name) else {
            continue;
        };
        let sockets = parse_table(text);
        for (fd, inode) in &inodes {
            if let Some(remote) = sockets.get(inode) {
                found.push(OpenSocket {
                    fd: *fd,
                    protocol,
                    remote: *remote,
                });
            }
        }
    }
    found.sort_by_key(|s| s.fd);
    found
}

/// The status message for a process that had connections before the monitor started, or
/// `None` when it had none worth saying (`include_loopback`: as `run --include-loopback`).
pub fn describe(
    pid: u32,
    comm: &str,
    sockets: &[OpenSocket],
    include_loopback: bool,
) -> Option<String> {
    const SHOWN: usize = 20;
    let shown: Vec<&OpenSocket> = sockets
        .iter()
        .filter(|s| include_loopback || !s.remote.ip().is_loopback())
        .collect();
    if shown.is_empty() {
        return None;
    }
    let mut list: Vec<String> = shown
        .iter()
        .take(SHOWN)
        .map(|s| format!("{} {} (fd {})", s.protocol, s.remote, s.fd))
        .collect();
    if shown.len() > SHOWN {
        list.push(format!("and {} more", shown.len() - SHOWN));
    }
    Some(format!(
        "pid {pid} ({comm}) had {} connection(s) open before the monitor started: {}. What they \
         sent and their TLS handshakes happened before and cannot be judged; connections it \
         opens from now on are watched",
        shown.len(),
        list.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0
   1: 0100CB0A:C350 0200CB0A:01BB 01 00000000:00000000 00:00000000 00000000     0        0 1002 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:C351 0100007F:1538 01 00000000:00000000 00:00000000 00000000     0        0 1003 1 0000000000000000 20 4 30 10 -1
   3: garbage
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0000000000000000FFFF00000100007F:A0B2 030200FD000000000000000002000000:1F90 01 00000000:00000000 00:00000000 00000000     0        0 2001 1 0000000000000000 20 4 0 10 -1
";

    #[test]
    fn tables_of_connected_sockets() {
        let v4 = parse_table(TCP.as_bytes());
        assert_eq!(
            v4.len(),
            2,
            "the listener and the garbage line are left out"
        );
        assert_eq!(v4[&1002], "10.203.0.2:443".parse().unwrap());
        assert_eq!(v4[&1003], "127.0.0.1:5432".parse().unwrap());
        let v6 = parse_table(TCP6.as_bytes());
        assert_eq!(v6[&2001], "[fd00:203::2]:8080".parse().unwrap());
    }

    #[test]
    fn the_message_names_each_connection() {
        let sockets = [
            OpenSocket {
                fd: 5,
                protocol: "tcp",
                remote: "10.203.0.2:443".parse().unwrap(),
            },
            OpenSocket {
                fd: 6,
                protocol: "tcp",
                remote: "127.0.0.1:5432".parse().unwrap(),
            },
        ];
        let m = describe(7, "node", &sockets, false).unwrap();
        assert!(
            m.starts_with(
                "pid 7 (node) had 1 connection(s) open before the monitor started: \
                 tcp 10.203.0.2:443 (fd 5). "
            ),
            "{m}"
        );
        assert!(describe(7, "node", &sockets, true)
            .unwrap()
            .contains("tcp 127.0.0.1:5432 (fd 6)"));
        assert_eq!(describe(7, "node", &sockets[1..], false), None);
    }

    #[test]
    fn this_process_sockets() {
        // A real connected socket of this test process, through /proc.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(addr).unwrap();
        let found = open_sockets(&ProcFs::default(), std::process::id());
        use std::os::fd::AsRawFd;
        assert!(
            found
                .iter()
                .any(|s| s.fd == client.as_raw_fd() as u32 && s.remote == addr),
            "{found:?}"
        );
        assert!(open_sockets(&ProcFs::default(), u32::MAX).is_empty());
    }
}
