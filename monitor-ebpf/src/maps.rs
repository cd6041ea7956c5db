//! Maps and load-time globals shared by all probe families.
use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
    Global,
};
use monitor_common::{Drop, EventHeader, EventKind, KernelOffsets, TracepointOffsets, COMM_LEN};

/// Non-zero: every process is a target (`--all`); the target set is not consulted.
#[unsafe(no_mangle)]
static FILTER_ALL: Global<u8> = Global::new(0);

/// Non-zero: send an exec event for every process, so userspace can discover targets by command
/// line, name or cgroup. Zero (`--pid` only): exec events for targeted processes only.
#[unsafe(no_mangle)]
static REPORT_ALL_EXECS: Global<u8> = Global::new(1);

#[unsafe(no_mangle)]
pub static KERNEL_OFFSETS: Global<KernelOffsets> = Global::new(KernelOffsets {
    valid: 0,
    task_files: 0,
    files_fdt: 0,
    fdtable_max_fds: 0,
    fdtable_fd: 0,
    file_private_data: 0,
    socket_type: 0,
    _pad: 0,
});

#[unsafe(no_mangle)]
pub static TRACEPOINT_OFFSETS: Global<TracepointOffsets> = Global::new(TracepointOffsets {
    fork_child_pid: 20,
    exec_filename: 8,
});

/// Target set: tgid (or tid of a thread created by a targeted process) -> `target::*` flags.
/// Userspace sizes it at load time.
#[map]
pub static TARGETS: HashMap<u32, u32> = HashMap::with_max_entries(65_536, 0);

/// Task names selected with `--comm`: a process that execs into one is targeted in the kernel,
/// before it runs a single instruction (userspace would be too late for a quick `curl`).
#[map]
pub static TARGET_COMMS: HashMap<[u8; COMM_LEN], u8> = HashMap::with_max_entries(256, 0);

/// All events, in order. Userspace sizes it at load time.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(8 << 20, 0);

/// Per-CPU drop counters, indexed by `monitor_common::Drop`.
#[map]
pub static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Drop::COUNT, 0);

/// Per-thread state carried from a syscall's entry to its exit (key: pid_tgid). LRU so that a
/// thread killed inside a syscall cannot leak an entry forever.
#[map]
pub static PENDING_CONNECTS: LruHashMap<u64, crate::probes::connect::PendingConnect> =
    LruHashMap::with_max_entries(16_384, 0);

#[inline(always)]
pub fn filter_all() -> bool {
    FILTER_ALL.load() != 0
}

#[inline(always)]
pub fn report_all_execs() -> bool {
    REPORT_ALL_EXECS.load() != 0
}

/// The one check every program makes first. Untargeted processes pay exactly one lookup.
#[inline(always)]
pub fn is_targeted(tgid: u32) -> bool {
    filter_all() || TARGETS.get_ptr(tgid).is_some()
}

#[inline(always)]
pub fn count_drop(reason: Drop) {
    if let Some(counter) = DROPS.get_ptr_mut(reason as u32) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU while the program runs.
        unsafe { *counter += 1 };
    }
}

#[inline(always)]
pub fn header(kind: EventKind, pid_tgid: u64) -> EventHeader {
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    EventHeader::new(kind, (pid_tgid >> 32) as u32, pid_tgid as u32, now)
}

/// Reserve a ring-buffer slot for `T`, counting a drop when the buffer is full.
#[inline(always)]
pub fn reserve<T: 'static>() -> Option<aya_ebpf::maps::ring_buf::RingBufEntry<T>> {
    let entry = EVENTS.reserve::<T>(0);
    if entry.is_none() {
        count_drop(Drop::RingBufFull);
    }
    entry
}
