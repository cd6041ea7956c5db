//! Maps and load-time globals shared by all probe families, and the helpers every program uses:
//! the target check, per-thread state, record headers and drop counters.
//!
//! Every map a program inserts into is a plain hash map, never LRU: an LRU map makes room by
//! evicting silently, so a full map would lose state without a trace. Here an insert into a full
//! map fails and is counted in `DROPS`, and every entry has an owner that removes it (the thread's
//! exit, the socket's close, `SSL_free`, the process's exit swept by userspace).
use aya_ebpf::{
    bindings::{bpf_map_type::BPF_MAP_TYPE_SK_STORAGE, BPF_NOEXIST},
    helpers::{
        bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel, bpf_probe_read_kernel_buf,
    },
    macros::map,
    maps::{HashMap, PerCpuArray, RingBuf},
    Global,
};
use monitor_common::{
    offsets_valid, Drop, EventHeader, EventKind, KernelOffsets, TargetEntry, TracepointOffsets,
    COMM_LEN, NSEC_PER_TICK,
};

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
    file_inode: 0,
    inode_mode: 0,
    socket_sk: 0,
    sock_err: 0,
    task_group_leader: 0,
    task_start_boottime: 0,
    file_dentry: 0,
    dentry_name: 0,
    files_next_fd: 0,
    sock_socket: 0,
    socket_file: 0,
});

#[unsafe(no_mangle)]
pub static TRACEPOINT_OFFSETS: Global<TracepointOffsets> = Global::new(TracepointOffsets {
    fork_child_pid: 20,
    exec_filename: 8,
    exit_group_dead: 0,
    _pad: 0,
});

/// Target set: tgid (or tid of a thread created by a targeted process) -> who is meant.
/// Userspace sizes it at load time.
#[map]
pub static TARGETS: HashMap<u32, TargetEntry> = HashMap::with_max_entries(65_536, 0);

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

/// The destination of a `connect` in progress on one thread (entry to exit).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PendingConnect {
    /// Non-zero while a connect of this thread is between entry and exit.
    pub valid: u32,
    pub fd: i32,
    /// The `struct sock` tracked in `SOCKETS` for this connect, or 0.
    pub sock: u64,
    pub family: u16,
    pub port: u16,
    pub sock_type: u16,
    pub _pad: u16,
    pub addr: [u8; 16],
}

/// What a thread is doing in OpenSSL: the SSL object it last entered, and the text (code)
/// range of the library that entered it, so certificate decoding called from that library (the
/// server's chain) is told apart from the client loading its own trust store.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CurrentSsl {
    /// 0: none.
    pub ssl: u64,
    /// `[text_lo, text_hi)`; both zero when the range is unknown (then every decode counts).
    pub text_lo: u64,
    pub text_hi: u64,
}

/// Arguments an entry probe keeps for its return probe, one slot per hooked function.
pub const STASH_SLOTS: usize = 4;

/// Everything the programs remember about one thread of a targeted process, in one entry that
/// the thread's exit removes: nothing per thread outlives it, whatever the thread was doing.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ThreadState {
    pub connect: PendingConnect,
    /// Descriptor of an executable `mmap` between entry and exit (valid when `mmap_valid`).
    pub mmap_fd: i64,
    pub mmap_valid: u32,
    /// Bit `i` set: `stash[i]` holds an argument for slot `i`'s return probe.
    pub stash_valid: u32,
    pub stash: [u64; STASH_SLOTS],
    pub current: CurrentSsl,
}

const _: () = assert!(size_of::<ThreadState>() == monitor_common::THREAD_STATE_SIZE);

/// pid_tgid -> [`ThreadState`], for threads of targeted processes only.
#[map]
pub static THREADS: HashMap<u64, ThreadState> = HashMap::with_max_entries(16_384, 0);

#[inline(always)]
pub fn filter_all() -> bool {
    FILTER_ALL.load() != 0
}

#[inline(always)]
pub fn report_all_execs() -> bool {
    REPORT_ALL_EXECS.load() != 0
}

#[inline(always)]
unsafe fn read_ptr(base: *const u8, offset: u32) -> Result<*const u8, i32> {
    if base.is_null() {
        return Err(0);
    }
    // SAFETY: bpf_probe_read_kernel faults safely on bad addresses.
    unsafe { bpf_probe_read_kernel(base.add(offset as usize) as *const *const u8) }
}

/// Start time of the current process (its thread-group leader), in `/proc/PID/stat` ticks;
/// 0 when the offsets are unknown.
#[inline(always)]
pub fn current_start() -> u64 {
    let offsets = KERNEL_OFFSETS.load();
    if offsets.valid & offsets_valid::START_TIME == 0 {
        return 0;
    }
    // SAFETY: every dereference goes through bpf_probe_read_kernel, which faults safely.
    unsafe {
        let task = bpf_get_current_task() as *const u8;
        let Ok(leader) = read_ptr(task, offsets.task_group_leader) else {
            return 0;
        };
        if leader.is_null() {
            return 0;
        }
        let ns: u64 =
            bpf_probe_read_kernel(leader.add(offsets.task_start_boottime as usize) as *const u64)
                .unwrap_or(0);
        ns / NSEC_PER_TICK
    }
}

/// The one check every program makes first. Untargeted processes pay exactly one lookup; a
/// targeted one also proves it is the process userspace meant (same start time), so a pid
/// that was reused after a missed exit is never watched by mistake.
#[inline(always)]
pub fn is_targeted(tgid: u32) -> bool {
    if filter_all() {
        return true;
    }
    let Some(entry) = TARGETS.get_ptr(tgid) else {
        return false;
    };
    // SAFETY: map value pointer.
    let start = unsafe { (*entry).start };
    if start == 0 || start == current_start() {
        return true;
    }
    // Someone else now has this pid: the entry is stale.
    let _ = TARGETS.remove(tgid);
    false
}

#[inline(always)]
pub fn count_drop(reason: Drop) {
    if let Some(counter) = DROPS.get_ptr_mut(reason as u32) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU while the program runs.
        unsafe { *counter += 1 };
    }
}

/// Header of a record about the current thread.
#[inline(always)]
pub fn header(kind: EventKind, pid_tgid: u64) -> EventHeader {
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    EventHeader::new(
        kind,
        (pid_tgid >> 32) as u32,
        pid_tgid as u32,
        now,
        current_start(),
    )
}

/// Header of a record about a process written outside its context (a TCP state change runs in
/// whatever context the packet arrived in).
#[inline(always)]
pub fn header_for(kind: EventKind, tgid: u32, start: u64) -> EventHeader {
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    EventHeader::new(kind, tgid, 0, now, start)
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

/// This thread's state, if it has any.
#[inline(always)]
pub fn thread(pid_tgid: u64) -> Option<*mut ThreadState> {
    THREADS.get_ptr_mut(pid_tgid)
}

/// This thread's state, created empty on first use (a full map is counted and `None`).
#[inline(always)]
pub fn thread_or_insert(pid_tgid: u64) -> Option<*mut ThreadState> {
    if let Some(state) = THREADS.get_ptr_mut(pid_tgid) {
        return Some(state);
    }
    let empty = ThreadState {
        connect: PendingConnect {
            valid: 0,
            fd: 0,
            sock: 0,
            family: 0,
            port: 0,
            sock_type: 0,
            _pad: 0,
            addr: [0; 16],
        },
        mmap_fd: 0,
        mmap_valid: 0,
        stash_valid: 0,
        stash: [0; STASH_SLOTS],
        current: CurrentSsl {
            ssl: 0,
            text_lo: 0,
            text_hi: 0,
        },
    };
    if THREADS.insert(pid_tgid, empty, BPF_NOEXIST as u64).is_err() {
        // Either the map is full, or (never, in practice) the thread raced itself.
        if THREADS.get_ptr_mut(pid_tgid).is_none() {
            count_drop(Drop::ThreadStateFull);
            return None;
        }
    }
    THREADS.get_ptr_mut(pid_tgid)
}

/// The `struct file` behind descriptor `fd` of the current process. Reads the descriptor
/// table of the current task, which cannot go away while the task runs.
#[inline(always)]
fn fd_file(offsets: &KernelOffsets, fd: i32) -> Option<*const u8> {
    if fd < 0 {
        return None;
    }
    // SAFETY: every dereference goes through bpf_probe_read_kernel, which faults safely.
    unsafe {
        let task = bpf_get_current_task() as *const u8;
        let files = read_ptr(task, offsets.task_files).ok()?;
        let fdt = read_ptr(files, offsets.files_fdt).ok()?;
        let max_fds: u32 =
            bpf_probe_read_kernel(fdt.add(offsets.fdtable_max_fds as usize) as *const u32).ok()?;
        if fd as u32 >= max_fds {
            return None;
        }
        let fd_array = read_ptr(fdt, offsets.fdtable_fd).ok()?;
        let file: *const u8 =
            bpf_probe_read_kernel(fd_array.add(fd as usize * 8) as *const *const u8).ok()?;
        (!file.is_null()).then_some(file)
    }
}

/// The socket behind descriptor `fd` of the current process: its `struct sock` and type, or
/// `None` when `fd` is not a socket (or the offsets are unknown).
#[inline(always)]
pub fn fd_socket(fd: i32) -> Option<(u64, u16)> {
    let offsets = KERNEL_OFFSETS.load();
    if offsets.valid & offsets_valid::SOCKET == 0 {
        return None;
    }
    const S_IFMT: u16 = 0o170000;
    const S_IFSOCK: u16 = 0o140000;
    let file = fd_file(&offsets, fd)?;
    // SAFETY: every dereference goes through bpf_probe_read_kernel, which faults safely.
    unsafe {
        // Only a socket's file has a socket behind `private_data`.
        let inode = read_ptr(file, offsets.file_inode).ok()?;
        let mode: u16 =
            bpf_probe_read_kernel(inode.add(offsets.inode_mode as usize) as *const u16).ok()?;
        if mode & S_IFMT != S_IFSOCK {
            return None;
        }
        let socket = read_ptr(file, offsets.file_private_data).ok()?;
        let sock_type: i16 =
            bpf_probe_read_kernel(socket.add(offsets.socket_type as usize) as *const i16).ok()?;
        let sk = read_ptr(socket, offsets.socket_sk).ok()? as u64;
        (sk != 0).then_some((sk, sock_type as u16))
    }
}

/// The name (last path component) of the file behind descriptor `fd` of the current process,
/// copied into `out`; its length.
#[inline(always)]
pub fn fd_name(fd: i32, out: &mut [u8]) -> Option<usize> {
    let offsets = KERNEL_OFFSETS.load();
    let needed = offsets_valid::SOCKET | offsets_valid::FILE_NAME;
    if offsets.valid & needed != needed {
        return None;
    }
    let file = fd_file(&offsets, fd)?;
    // SAFETY: every dereference goes through bpf_probe_read_kernel*, which faults safely.
    unsafe {
        let dentry = read_ptr(file, offsets.file_dentry).ok()?;
        let name = read_ptr(dentry, offsets.dentry_name).ok()?;
        if name.is_null() {
            return None;
        }
        aya_ebpf::helpers::bpf_probe_read_kernel_str_bytes(name, out)
            .ok()
            .map(|s| s.len())
    }
}

/// Descriptors compared at once by [`sock_fd`].
const FD_WINDOW: usize = 128;

/// Scratch space for a window of a process's descriptor table.
#[map]
static FD_TABLE: PerCpuArray<[u64; FD_WINDOW]> = PerCpuArray::with_max_entries(1, 0);

/// The descriptor of the current process that holds socket `sk`, or -1: the slot of the
/// descriptor table that points to the socket's file (`sk->sk_socket->file`). One window of
/// `FD_WINDOW` slots is read at once and compared, centred on `files->next_fd` (the lowest free
/// descriptor: a new socket sits just below it, or above it when lower ones were closed since).
#[inline(always)]
pub fn sock_fd(sk: u64) -> i32 {
    let offsets = KERNEL_OFFSETS.load();
    if offsets.valid & offsets_valid::SOCKET == 0 || sk == 0 {
        return -1;
    }
    // SAFETY: every dereference goes through bpf_probe_read_kernel, which faults safely.
    unsafe {
        // The hooks hand a typed socket pointer, which the verifier allows no arithmetic on:
        // copied through the helper, it is a plain address.
        let Ok(sk) = bpf_probe_read_kernel(&sk as *const u64) else {
            return -1;
        };
        let Ok(socket) = read_ptr(sk as *const u8, offsets.sock_socket) else {
            return -1;
        };
        let Ok(file) = read_ptr(socket, offsets.socket_file) else {
            return -1;
        };
        let task = bpf_get_current_task() as *const u8;
        let Ok(files) = read_ptr(task, offsets.task_files) else {
            return -1;
        };
        let Ok(fdt) = read_ptr(files, offsets.files_fdt) else {
            return -1;
        };
        let Ok(max_fds) =
            bpf_probe_read_kernel(fdt.add(offsets.fdtable_max_fds as usize) as *const u32)
        else {
            return -1;
        };
        let Ok(fd_array) = read_ptr(fdt, offsets.fdtable_fd) else {
            return -1;
        };
        let next: u32 =
            bpf_probe_read_kernel(files.add(offsets.files_next_fd as usize) as *const u32)
                .unwrap_or(0);
        let Some(window) = FD_TABLE.get_ptr_mut(0) else {
            return -1;
        };
        let first = next
            .saturating_sub(FD_WINDOW as u32 / 2)
            .min(max_fds.saturating_sub(FD_WINDOW as u32));
        let slots = max_fds.saturating_sub(first).min(FD_WINDOW as u32) as usize;
        if slots == 0 {
            return -1;
        }
        // Bounded to [1, FD_WINDOW] for the verifier (a volatile read keeps the mask).
        let slots = core::ptr::read_volatile(&slots);
        let slots = ((slots - 1) & (FD_WINDOW - 1)) + 1;
        if bpf_probe_read_kernel_buf(
            fd_array.add(first as usize * 8),
            core::slice::from_raw_parts_mut(window.cast::<u8>(), slots * 8),
        )
        .is_err()
        {
            return -1;
        }
        for i in 0..FD_WINDOW {
            if i >= slots {
                break;
            }
            if (*window)[i] == file as u64 {
                return (first as usize + i) as i32;
            }
        }
        -1
    }
}

/// `sk->sk_err` of a kernel socket (the errno a failed connection reports), 0 when unknown.
#[inline(always)]
pub fn sock_error(sk: u64) -> i32 {
    let offsets = KERNEL_OFFSETS.load();
    if offsets.valid & offsets_valid::SOCKET == 0 || sk == 0 {
        return 0;
    }
    // SAFETY: faulting-safe read of a kernel address the tracepoint handed us.
    unsafe {
        bpf_probe_read_kernel((sk as *const u8).add(offsets.sock_err as usize) as *const i32)
            .unwrap_or(0)
    }
}

/// A socket storage map definition in the BTF form the loader reads (`.maps`), with its flags
/// (`BPF_F_NO_PREALLOC`, and `BPF_F_CLONE` where accepted sockets inherit the entry): aya-ebpf's
/// own `SkStorage` cannot ask for `BPF_F_CLONE`, and its helpers take a `SockAddrContext` only.
#[repr(C)]
pub struct SockStorage<T, const FLAGS: usize> {
    r#type: *const [i32; BPF_MAP_TYPE_SK_STORAGE as usize],
    key: *const i32,
    value: *const T,
    max_entries: *const [i32; 0],
    map_flags: *const [i32; FLAGS],
}

// SAFETY: placeholder pointers the loader patches; never dereferenced.
unsafe impl<T, const FLAGS: usize> Sync for SockStorage<T, FLAGS> {}

impl<T, const FLAGS: usize> SockStorage<T, FLAGS> {
    pub const fn new() -> Self {
        Self {
            r#type: core::ptr::null(),
            key: core::ptr::null(),
            value: core::ptr::null(),
            max_entries: core::ptr::null(),
            map_flags: core::ptr::null(),
        }
    }

    /// The map, for `bpf_sk_storage_get` and `bpf_sk_storage_delete`.
    #[inline(always)]
    pub fn as_ptr(&self) -> *mut core::ffi::c_void {
        core::ptr::from_ref(self).cast_mut().cast()
    }
}
