//! Records shared by the kernel programs (`monitor-ebpf`) and the userspace agent (`monitor`).
//!
//! Every record that crosses the ring buffer starts with an [`EventHeader`] whose `kind` says
//! which `#[repr(C)]` struct follows. Userspace turns these into rich types once, at the edge
//! (`monitor::decode`), so nothing else depends on this layout.
//!
//! ```
//! use monitor_common::{EventHeader, EventKind};
//! let header = EventHeader::new(EventKind::Connect, 42, 43, 1_000);
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
}

impl EventKind {
    pub fn from_u32(value: u32) -> Option<Self> {
        Some(match value {
            1 => Self::Connect,
            2 => Self::Exec,
            3 => Self::Exit,
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
    /// Thread id.
    pub tid: u32,
    pub _pad: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the event was recorded.
    pub ktime_ns: u64,
}

impl EventHeader {
    pub const fn new(kind: EventKind, tgid: u32, tid: u32, ktime_ns: u64) -> Self {
        Self {
            kind: kind as u32,
            tgid,
            tid,
            _pad: 0,
            ktime_ns,
        }
    }
}

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
}

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

/// A targeted process exited (its thread-group leader ended).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExitEvent {
    pub header: EventHeader,
}

/// Value stored in the `TARGETS` map.
pub mod target {
    /// Chosen by userspace (pid, comm, cgroup, MCP discovery).
    pub const SELECTED: u32 = 1;
    /// Inherited from a targeted parent at fork.
    pub const INHERITED: u32 = 2;
}

/// Indexes of the per-CPU `DROPS` counter array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drop {
    /// The event ring buffer was full.
    RingBufFull = 0,
    /// The per-thread pending-connect map was full.
    PendingFull = 1,
    /// The target set was full when a targeted process forked.
    TargetsFull = 2,
}

impl Drop {
    pub const ALL: [Drop; 3] = [Drop::RingBufFull, Drop::PendingFull, Drop::TargetsFull];
    pub const COUNT: u32 = Self::ALL.len() as u32;

    pub const fn name(self) -> &'static str {
        match self {
            Drop::RingBufFull => "ringbuf_full",
            Drop::PendingFull => "pending_connect_full",
            Drop::TargetsFull => "target_set_full",
        }
    }
}

/// Kernel struct member offsets resolved by userspace from BTF (`/sys/kernel/btf/vmlinux`) and
/// handed to the programs as a read-only global. This is CO-RE done by hand: the kernel programs
/// walk `current->files->fdt->fd[fd]->private_data` to read `socket->type` for a connecting fd,
/// so the protocol comes from the kernel rather than being guessed from the port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// Zero when BTF was unavailable: programs then report `SOCK_TYPE_UNKNOWN`.
    pub valid: u32,
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdtable_max_fds: u32,
    pub fdtable_fd: u32,
    pub file_private_data: u32,
    pub socket_type: u32,
    pub _pad: u32,
}

/// Tracepoint field offsets that differ between kernels (read from tracefs `format` files).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TracepointOffsets {
    /// `sched_process_fork.child_pid`.
    pub fork_child_pid: u32,
    /// `sched_process_exec.filename` (`__data_loc`).
    pub exec_filename: u32,
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain `#[repr(C)]` integers with explicit padding.
    unsafe impl aya::Pod for super::KernelOffsets {}
    unsafe impl aya::Pod for super::TracepointOffsets {}
}
