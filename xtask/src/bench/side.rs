//! Side by side: two copies of a load at once, each in a cgroup of its own, one of them under the
//! agent's hooks (`egress-monitor run --hook-cgroup`), compared by what each copy got done per
//! CPU second in the same seconds. The machine's speed, which drifts by ±20 % from one second to
//! the next on these VMs, is then the same for both sides and cancels out of the ratio.
//!
//! A side's CPU time is its cgroup's `cpu.stat` `usage_usec` (the scheduler's exact run time of
//! its tasks, present in every cgroup v2 directory whether or not the cpu controller is enabled).
//! On these kernels (no `CONFIG_IRQ_TIME_ACCOUNTING`) the softirq work of loopback and veth
//! packets runs in, and is charged to, the task that sent them: the hooked side pays for its own
//! packets.
use std::{
    fs::{File, OpenOptions},
    io::ErrorKind,
    os::{fd::AsRawFd, unix::process::CommandExt as _},
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

/// A cgroup v2 directory the bench created, removed again when dropped (once its processes are
/// gone).
pub struct Cgroup {
    pub path: PathBuf,
    procs: File,
}

impl Cgroup {
    /// Create `root/name` (or take it over if a killed bench left it behind).
    pub fn create(root: &Path, name: &str) -> anyhow::Result<Self> {
        let path = root.join(name);
        match std::fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
        }
        let procs = OpenOptions::new()
            .write(true)
            .open(path.join("cgroup.procs"))
            .with_context(|| format!("opening {}/cgroup.procs", path.display()))?;
        Ok(Self { path, procs })
    }

    /// CPU time of everything that ran in this cgroup so far, in µs.
    pub fn usage_usec(&self) -> anyhow::Result<u64> {
        let file = self.path.join("cpu.stat");
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        usage_usec(&text).with_context(|| format!("no usage_usec in {}", file.display()))
    }

    /// Make `cmd` start inside this cgroup: the child moves itself between fork and exec, so
    /// every socket it creates belongs to the cgroup from the first one.
    pub fn enter(&self, cmd: &mut Command) {
        let fd = self.procs.as_raw_fd();
        // SAFETY: only write(2), which is async-signal-safe, runs in the forked child; the
        // descriptor stays open as long as `self`, which outlives the spawn.
        unsafe {
            cmd.pre_exec(move || {
                // "0": the writing process itself.
                if libc::write(fd, b"0".as_ptr().cast(), 1) == 1 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Busy until its last process has exited (killed ones take a moment); a directory left
        // behind is taken over by the next bench.
        for _ in 0..100 {
            match std::fs::remove_dir(&self.path) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                _ => return,
            }
        }
    }
}

/// `usage_usec` of a `cpu.stat` text.
fn usage_usec(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
}

/// Work per CPU second: `done` units over `usec` µs of CPU.
pub fn per_cpu_second(done: u64, usec: u64) -> Option<f64> {
    (usec > 0).then(|| done as f64 * 1e6 / usec as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_comes_from_cpu_stat() {
        let text = "usage_usec 9222255\nuser_usec 1099493\nsystem_usec 8122761\nnice_usec 0\n";
        assert_eq!(usage_usec(text), Some(9_222_255));
        assert_eq!(usage_usec("user_usec 5\n"), None);
        assert_eq!(per_cpu_second(100_000, 2_000_000), Some(50_000.0));
        assert_eq!(per_cpu_second(100, 0), None);
    }
}
