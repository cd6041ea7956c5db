//! `connect(2)` through the syscall tracepoints, the one probe type every kernel has.
//!
//! The destination is read from user memory at entry (the caller may reuse the buffer once the
//! syscall returns) and parked per thread; the exit reports it with the result, so non-blocking
//! sockets show `-EINPROGRESS` and refused ones their errno.
use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task,
        bpf_probe_read_kernel, bpf_probe_read_user,
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use aya_log_ebpf::debug;
use monitor_common::{
    ConnectEvent, Drop, EventKind, AF_INET, AF_INET6, SOCK_DGRAM, SOCK_TYPE_UNKNOWN,
};

use crate::maps::{count_drop, header, is_targeted, reserve, KERNEL_OFFSETS, PENDING_CONNECTS};

/// The destination of a `connect` in progress on one thread.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PendingConnect {
    fd: i32,
    family: u16,
    port: u16,
    addr: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct SockaddrIn {
    family: u16,
    port_be: u16,
    addr: [u8; 4],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct SockaddrIn6 {
    family: u16,
    port_be: u16,
    flowinfo: u32,
    addr: [u8; 16],
}

const EBADF: i64 = 9;
const EINPROGRESS: i64 = 115;
const ENOTSOCK: i64 = 88;

// Offsets in the syscall tracepoint records (stable ABI: see
// /sys/kernel/tracing/events/syscalls/sys_{enter,exit}_connect/format).
const ARG0: usize = 16;
const ARG1: usize = 24;
const ARG2: usize = 32;
const RET: usize = 16;

/// `int connect(int fd, const struct sockaddr *uservaddr, int addrlen)`: entry.
#[tracepoint]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_targeted((pid_tgid >> 32) as u32) {
        return 0;
    }
    let _ = enter(&ctx, pid_tgid);
    0
}

fn enter(ctx: &TracePointContext, pid_tgid: u64) -> Result<(), i32> {
    // SAFETY: offsets come from the tracepoint's format (stable syscall ABI).
    let (fd, uaddr, addrlen) = unsafe {
        (
            ctx.read_at::<u64>(ARG0)?,
            ctx.read_at::<u64>(ARG1)?,
            ctx.read_at::<u64>(ARG2)?,
        )
    };
    // SAFETY: bpf_probe_read_user checks the user pointer.
    let family = unsafe { bpf_probe_read_user(uaddr as *const u16)? };
    let mut pending = PendingConnect {
        fd: fd as i32,
        family,
        port: 0,
        addr: [0; 16],
    };
    match family {
        AF_INET if addrlen >= size_of::<SockaddrIn>() as u64 => {
            // SAFETY: as above.
            let sin = unsafe { bpf_probe_read_user(uaddr as *const SockaddrIn)? };
            pending.port = u16::from_be(sin.port_be);
            pending.addr[..4].copy_from_slice(&sin.addr);
        }
        AF_INET6 if addrlen >= size_of::<SockaddrIn6>() as u64 => {
            // SAFETY: as above.
            let sin6 = unsafe { bpf_probe_read_user(uaddr as *const SockaddrIn6)? };
            pending.port = u16::from_be(sin6.port_be);
            pending.addr = sin6.addr;
        }
        // AF_UNIX, AF_NETLINK, AF_UNSPEC (disconnect), short addresses: not egress.
        _ => return Ok(()),
    }
    PENDING_CONNECTS
        .insert(pid_tgid, pending, 0)
        .inspect_err(|_| {
            count_drop(Drop::PendingFull);
        })
}

/// `connect` exit: `long ret`.
#[tracepoint]
pub fn sys_exit_connect(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    // Only threads that passed the target check at entry have an entry: one lookup for the rest.
    let Some(pending) = PENDING_CONNECTS.get_ptr(pid_tgid) else {
        return 0;
    };
    // SAFETY: the entry belongs to this thread; copy it out before removing it.
    let pending = unsafe { *pending };
    let _ = PENDING_CONNECTS.remove(pid_tgid);
    let _ = exit(&ctx, pid_tgid, &pending);
    0
}

fn exit(ctx: &TracePointContext, pid_tgid: u64, pending: &PendingConnect) -> Result<(), i32> {
    // SAFETY: stable syscall tracepoint layout.
    let ret = unsafe { ctx.read_at::<i64>(RET)? };
    if ret == -EBADF || ret == -ENOTSOCK {
        return Ok(());
    }
    let sock_type = socket_type(pending.fd).unwrap_or(SOCK_TYPE_UNKNOWN);
    // A TCP socket that is (being) connected: watch its first bytes for plaintext credentials.
    if (ret == 0 || ret == -EINPROGRESS) && sock_type != SOCK_DGRAM {
        crate::probes::payload::track(pid_tgid, pending.fd);
    }
    if sock_type == SOCK_TYPE_UNKNOWN {
        debug!(ctx, "connect: socket type of fd {} unreadable", pending.fd);
    }
    let Some(mut entry) = reserve::<ConnectEvent>() else {
        return Ok(());
    };
    entry.write(ConnectEvent {
        header: header(EventKind::Connect, pid_tgid),
        fd: pending.fd,
        ret: ret as i32,
        family: pending.family,
        sock_type,
        port: pending.port,
        _pad: 0,
        addr: pending.addr,
        comm: bpf_get_current_comm().unwrap_or_default(),
    });
    entry.submit(0);
    Ok(())
}

/// `current->files->fdt->fd[fd]->private_data->type`, with offsets userspace resolved from BTF.
/// Called in the connecting task itself, so its file table cannot go away underneath us.
#[inline(always)]
fn socket_type(fd: i32) -> Result<u16, i32> {
    let offsets = KERNEL_OFFSETS.load();
    if offsets.valid == 0 || fd < 0 {
        return Err(0);
    }
    // SAFETY: every dereference goes through bpf_probe_read_kernel, which faults safely.
    unsafe {
        let task = bpf_get_current_task() as *const u8;
        let files: *const u8 = read_ptr(task, offsets.task_files)?;
        let fdt: *const u8 = read_ptr(files, offsets.files_fdt)?;
        let max_fds: u32 =
            bpf_probe_read_kernel(fdt.add(offsets.fdtable_max_fds as usize) as *const u32)?;
        if fd as u32 >= max_fds {
            return Err(0);
        }
        let fd_array: *const u8 = read_ptr(fdt, offsets.fdtable_fd)?;
        let file: *const u8 =
            bpf_probe_read_kernel(fd_array.add(fd as usize * 8) as *const *const u8)?;
        let socket: *const u8 = read_ptr(file, offsets.file_private_data)?;
        let sock_type: i16 =
            bpf_probe_read_kernel(socket.add(offsets.socket_type as usize) as *const i16)?;
        Ok(sock_type as u16)
    }
}

#[inline(always)]
unsafe fn read_ptr(base: *const u8, offset: u32) -> Result<*const u8, i32> {
    if base.is_null() {
        return Err(0);
    }
    // SAFETY: bpf_probe_read_kernel faults safely on bad addresses.
    unsafe { bpf_probe_read_kernel(base.add(offset as usize) as *const *const u8) }
}
