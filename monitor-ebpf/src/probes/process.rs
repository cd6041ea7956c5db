//! Process lifecycle through the scheduler tracepoints, so userspace learns about new and
//! finished processes without polling /proc, and children of targets are targeted before they
//! can run a single instruction.
use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_probe_read_kernel_str_bytes},
    macros::tracepoint,
    programs::TracePointContext,
    EbpfContext as _,
};
use aya_log_ebpf::debug;
use monitor_common::{target, Drop, EventKind, ExecEvent, ExitEvent, TargetEntry};

use crate::maps::{
    count_drop, current_start, filter_all, header, is_targeted, report_all_execs, reserve, TARGETS,
    TARGET_COMMS, THREADS, TRACEPOINT_OFFSETS,
};

/// `trace_sched_process_exec(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)`
#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let mut targeted = is_targeted(tgid);
    let comm = bpf_get_current_comm().unwrap_or_default();
    if !targeted && TARGET_COMMS.get_ptr(comm).is_some() {
        let entry = TargetEntry {
            flags: target::SELECTED,
            _pad: 0,
            start: current_start(),
        };
        targeted = TARGETS.insert(tgid, entry, 0).is_ok();
        if !targeted {
            count_drop(Drop::TargetsFull);
        }
    }
    if !targeted && !report_all_execs() {
        return 0;
    }
    let Some(mut entry) = reserve::<ExecEvent>() else {
        return 0;
    };
    let event = entry.as_mut_ptr();
    // SAFETY: `event` points to a reserved, exclusively owned ring-buffer slot; every field is
    // written before submit.
    unsafe {
        (*event).header = header(EventKind::Exec, pid_tgid);
        (*event).targeted = targeted as u32;
        (*event).comm = comm;
        (*event).filename_len = 0;
        let data_loc = ctx
            .read_at::<u32>(TRACEPOINT_OFFSETS.load().exec_filename as usize)
            .unwrap_or(0);
        let offset = (data_loc & 0xffff) as usize;
        if offset != 0 {
            let src = (ctx.as_ptr() as *const u8).add(offset);
            if let Ok(name) = bpf_probe_read_kernel_str_bytes(src, &mut (*event).filename) {
                (*event).filename_len = name.len() as u32;
            }
        }
    }
    entry.submit(0);
    0
}

/// `trace_sched_process_fork(struct task_struct *parent, struct task_struct *child)`, in the
/// parent's context. Fires for new threads too: their tid is added and removed again at exit.
#[tracepoint]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_targeted((pid_tgid >> 32) as u32) {
        return 0;
    }
    // SAFETY: the offset comes from this kernel's tracepoint format.
    let Ok(child) =
        (unsafe { ctx.read_at::<u32>(TRACEPOINT_OFFSETS.load().fork_child_pid as usize) })
    else {
        return 0;
    };
    // The child has not run yet and the kernel removes the entry at its exit: no start time
    // needed to know it is the one meant.
    let entry = TargetEntry {
        flags: target::INHERITED,
        _pad: 0,
        start: 0,
    };
    if TARGETS.insert(child, entry, 0).is_err() {
        count_drop(Drop::TargetsFull);
    } else {
        debug!(
            &ctx,
            "fork: {} inherits target from {}",
            child,
            (pid_tgid >> 32) as u32
        );
    }
    0
}

/// `trace_sched_process_exit(struct task_struct *p, bool group_dead)`, once per exiting
/// thread: whatever the programs kept for the thread goes with it, and the process's target
/// entry goes with its last thread (`group_dead`; on kernels without that field, with the
/// leader).
#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let tgid = (pid_tgid >> 32) as u32;
    // SAFETY: this thread's own entry, copied out before removal.
    let had_state = match THREADS.get_ptr(pid_tgid).map(|s| unsafe { *s }) {
        Some(state) => {
            crate::probes::connect::thread_gone(&state.connect);
            let _ = THREADS.remove(pid_tgid);
            true
        }
        None => false,
    };
    if tid != tgid && TARGETS.get_ptr(tid).is_some() {
        let _ = TARGETS.remove(tid);
    }
    let group_dead_at = TRACEPOINT_OFFSETS.load().exit_group_dead;
    let process_ends = if group_dead_at != 0 {
        // SAFETY: the offset comes from this kernel's tracepoint format.
        unsafe { ctx.read_at::<u8>(group_dead_at as usize) }.unwrap_or(0) != 0
    } else {
        tid == tgid
    };
    let report = if process_ends {
        let known = TARGETS.get_ptr(tgid).is_some();
        if known {
            let _ = TARGETS.remove(tgid);
        }
        known || filter_all()
    } else {
        had_state
    };
    if !report {
        return 0;
    }
    if let Some(mut entry) = reserve::<ExitEvent>() {
        entry.write(ExitEvent {
            header: header(EventKind::Exit, pid_tgid),
            thread: (!process_ends) as u32,
            _pad: 0,
        });
        entry.submit(0);
    }
    0
}
