//! `mmap(2)` with `PROT_EXEC` by targeted processes: a library loaded by the dynamic loader, or
//! at run time (Python imports `_ssl`, and with it libssl, only when a script first uses TLS).
//! The file's name is read here, while the mapping is made: userspace learns which client
//! library a process uses (libcurl and libpq check host names themselves) even when the process
//! is gone by the time it looks, and attaches the TLS probes to new libraries.
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};
use monitor_common::{EventKind, MmapExecEvent, MMAP_NAME_LEN};

use crate::maps::{fd_name, header, is_targeted, reserve, thread, thread_or_insert};

const PROT_EXEC: u64 = 4;
// syscalls:sys_enter_mmap: addr, len, prot, flags, fd, off at 16, 24, 32, 40, 48, 56.
const PROT: usize = 32;
const FD: usize = 48;

/// `void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)`: entry.
#[tracepoint]
pub fn sys_enter_mmap(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_targeted((pid_tgid >> 32) as u32) {
        return 0;
    }
    // SAFETY: stable syscall tracepoint layout.
    let (prot, fd) = unsafe { (ctx.read_at::<u64>(PROT), ctx.read_at::<i64>(FD)) };
    let (Ok(prot), Ok(fd)) = (prot, fd) else {
        return 0;
    };
    if prot & PROT_EXEC != 0 && fd as i32 >= 0 {
        if let Some(state) = thread_or_insert(pid_tgid) {
            // SAFETY: this thread's own entry.
            unsafe {
                (*state).mmap_fd = fd;
                (*state).mmap_valid = 1;
            }
        }
    }
    0
}

/// `mmap` exit: report only mappings that succeeded (the library is in /proc/PID/maps now).
#[tracepoint]
pub fn sys_exit_mmap(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(state) = thread(pid_tgid) else {
        return 0;
    };
    // SAFETY: this thread's own entry: copied out, then marked consumed.
    let fd = unsafe {
        if (*state).mmap_valid == 0 {
            return 0;
        }
        (*state).mmap_valid = 0;
        (*state).mmap_fd
    };
    // SAFETY: stable syscall tracepoint layout (`long ret` at 16).
    let ret = unsafe { ctx.read_at::<i64>(16) }.unwrap_or(-1);
    // A failed mmap returns a small negative errno; an address is never in that range.
    if (-4095..0).contains(&ret) {
        return 0;
    }
    let Some(mut entry) = reserve::<MmapExecEvent>() else {
        return 0;
    };
    let event = entry.as_mut_ptr();
    // SAFETY: exclusive reserved slot; every field is written before submit.
    unsafe {
        (*event).header = header(EventKind::MmapExec, pid_tgid);
        (*event).fd = fd as i32;
        (*event).name = [0; MMAP_NAME_LEN];
        (*event).name_len = fd_name(fd as i32, &mut (*event).name).unwrap_or(0) as u32;
    }
    entry.submit(0);
    0
}
