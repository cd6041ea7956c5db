//! Which socket goes where: TCP connects by (process, fd), and the latest connect of each
//! thread, so TLS sessions and payloads can be tied to a destination.
use std::collections::HashMap;

use crate::output::Destination;

#[derive(Debug, Default)]
pub struct Connections {
    by_fd: HashMap<(u32, i32), Destination>,
    last_on_thread: HashMap<(u32, u32), (i32, Destination)>,
}

impl Connections {
    pub fn record(&mut self, pid: u32, tid: u32, fd: i32, destination: Destination) {
        self.by_fd.insert((pid, fd), destination.clone());
        self.last_on_thread.insert((pid, tid), (fd, destination));
    }

    pub fn by_fd(&self, pid: u32, fd: i32) -> Option<Destination> {
        self.by_fd.get(&(pid, fd)).cloned()
    }

    /// The most recent connect made by this thread, if its socket is still known.
    pub fn last_on_thread(&self, pid: u32, tid: u32) -> Option<(i32, Destination)> {
        let (fd, dest) = self.last_on_thread.get(&(pid, tid))?;
        // The fd may have been reused for another connect since.
        (self.by_fd.get(&(pid, *fd)) == Some(dest)).then(|| (*fd, dest.clone()))
    }

    pub fn close(&mut self, pid: u32, fd: i32) {
        self.by_fd.remove(&(pid, fd));
    }

    pub fn forget_process(&mut self, pid: u32) {
        self.by_fd.retain(|k, _| k.0 != pid);
        self.last_on_thread.retain(|k, _| k.0 != pid);
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.by_fd.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(port: u16) -> Destination {
        Destination {
            ip: "10.203.0.2".parse().unwrap(),
            port,
            hostname: None,
        }
    }

    #[test]
    fn last_connect_per_thread_and_fd_reuse() {
        let mut c = Connections::default();
        c.record(1, 10, 5, dest(443));
        assert_eq!(c.last_on_thread(1, 10), Some((5, dest(443))));
        assert_eq!(c.last_on_thread(1, 11), None);
        // Another thread reuses fd 5 for another destination: thread 10's record is stale.
        c.record(1, 11, 5, dest(8443));
        assert_eq!(c.last_on_thread(1, 10), None);
        assert_eq!(c.by_fd(1, 5), Some(dest(8443)));
        c.close(1, 5);
        assert_eq!(c.by_fd(1, 5), None);
        c.forget_process(1);
        assert!(c.is_empty());
    }
}
