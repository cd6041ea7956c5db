//! What the metrics read from the kernel at scrape time: each BPF program's run time and run
//! count (`BPF_OBJ_GET_INFO_BY_FD` on a duplicate of the agent's own program descriptor), the
//! ring buffer's producer and consumer positions (its first two pages, mapped read-only), and
//! the agent's CPU time and resident memory (`/proc/self/stat`, `/proc/self/statm`).
use std::{
    os::fd::{AsFd, AsRawFd as _, BorrowedFd},
    time::Duration,
};

use aya::programs::ProgramFd;

/// `BPF_OBJ_GET_INFO_BY_FD`.
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
/// Offsets in `struct bpf_prog_info` (include/uapi/linux/bpf.h; `run_time_ns` and `run_cnt`
/// since 5.1) and `struct bpf_map_info`.
const PROG_INFO_ID: usize = 4;
const PROG_INFO_RUN_TIME_NS: usize = 192;
const PROG_INFO_RUN_CNT: usize = 200;
const MAP_INFO_MAX_ENTRIES: usize = 16;
/// `struct bpf_prog_info` up to and including `run_cnt`, plus the next field: 8-aligned.
const PROG_INFO_LEN: usize = 216;

const BPF_STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// `bpf(BPF_OBJ_GET_INFO_BY_FD)`: fills `info` (zeroed by the caller: the kernel wants unknown
/// trailing bytes zero) and returns how many bytes the kernel knows.
fn obj_info(fd: BorrowedFd<'_>, info: &mut [u64]) -> std::io::Result<usize> {
    #[repr(C)]
    struct Attr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let mut attr = Attr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of_val(info) as u32,
        info: info.as_mut_ptr() as u64,
    };
    // SAFETY: `attr` describes a writable buffer of `info_len` bytes that outlives the call;
    // the kernel writes at most that many bytes and updates `attr.info_len`.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &mut attr as *mut Attr,
            std::mem::size_of::<Attr>(),
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(attr.info_len as usize)
}

fn field_u64(info: &[u64], offset: usize) -> u64 {
    info[offset / 8]
}

fn field_u32(info: &[u64], offset: usize) -> u32 {
    let word = info[offset / 8].to_ne_bytes();
    let at = offset % 8;
    u32::from_ne_bytes(word[at..at + 4].try_into().expect("4 bytes"))
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgramStats {
    pub id: u32,
    pub run_time: Duration,
    pub runs: u64,
}

/// The kernel's counters of one loaded program. `None` when the descriptor cannot be read;
/// zero run time and count before 5.1 or while `kernel.bpf_stats_enabled` is 0.
pub fn program_stats(fd: BorrowedFd<'_>) -> Option<ProgramStats> {
    let mut info = [0u64; PROG_INFO_LEN / 8];
    let len = obj_info(fd, &mut info).ok()?;
    let counted = len >= PROG_INFO_RUN_CNT + 8;
    Some(ProgramStats {
        id: field_u32(&info, PROG_INFO_ID),
        run_time: Duration::from_nanos(if counted {
            field_u64(&info, PROG_INFO_RUN_TIME_NS)
        } else {
            0
        }),
        runs: if counted {
            field_u64(&info, PROG_INFO_RUN_CNT)
        } else {
            0
        },
    })
}

/// One of the agent's programs: its name in the eBPF object and a descriptor of its own.
pub struct Program {
    name: String,
    fd: ProgramFd,
}

impl Program {
    pub fn new(name: &str, fd: ProgramFd) -> Self {
        Self {
            name: name.to_string(),
            fd,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn stats(&self) -> Option<ProgramStats> {
        program_stats(self.fd.as_fd())
    }
}

/// `kernel.bpf_stats_enabled`, when readable.
pub fn bpf_stats_enabled() -> Option<bool> {
    let text = std::fs::read_to_string(BPF_STATS_SYSCTL).ok()?;
    Some(text.trim() != "0")
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page).unwrap_or(4096)
}

/// A `BPF_MAP_TYPE_RINGBUF` map's consumer page and producer page (the first two pages of
/// the map's mmap layout), mapped read-only: the kernel only allows a writable mapping of
/// the consumer page, and a read-only one of anything. The mapping holds its own reference to
/// the map.
pub struct RingBuffer {
    pages: memmap2::MmapRaw,
    page: usize,
    size: u64,
}

impl RingBuffer {
    pub fn map(fd: BorrowedFd<'_>) -> anyhow::Result<Self> {
        let mut info = [0u64; 12];
        let len = obj_info(fd, &mut info)
            .map_err(|e| anyhow::anyhow!("BPF_OBJ_GET_INFO_BY_FD on the ring buffer: {e}"))?;
        anyhow::ensure!(
            len > MAP_INFO_MAX_ENTRIES,
            "map info too short ({len} bytes)"
        );
        let size = u64::from(field_u32(&info, MAP_INFO_MAX_ENTRIES));
        let page = page_size();
        let pages = memmap2::MmapOptions::new()
            .len(2 * page)
            .map_raw_read_only(fd.as_raw_fd())
            .map_err(|e| anyhow::anyhow!("mapping the ring buffer positions: {e}"))?;
        Ok(Self { pages, page, size })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    fn position(&self, offset: usize) -> u64 {
        // SAFETY: `offset` is 0 or one page into a live mapping of two pages; the kernel and
        // the reader update the position with 8-byte aligned stores, read here as one load.
        unsafe { std::ptr::read_volatile(self.pages.as_ptr().add(offset) as *const u64) }
    }

    /// Bytes written by the kernel and not yet consumed (records being written included).
    pub fn used(&self) -> u64 {
        let consumer = self.position(0);
        let producer = self.position(self.page);
        producer.saturating_sub(consumer).min(self.size)
    }
}

/// User and system CPU time of this process, from `/proc/self/stat`.
pub fn process_cpu_seconds() -> Option<f64> {
    cpu_seconds(
        &std::fs::read_to_string("/proc/self/stat").ok()?,
        clock_ticks(),
    )
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// utime and stime (fields 14 and 15; the command name in parentheses may hold spaces).
fn cpu_seconds(stat: &str, ticks: f64) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state is field 3, so utime is the 12th field here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / ticks)
}

/// Resident set size of this process, from `/proc/self/statm`.
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_from_a_stat_line_with_spaces_in_the_name() {
        let stat = "4242 (egress monitor) S 1 4242 4242 0 -1 4194560 2000 0 0 0 250 50 0 0 20 0 3 0 100 1000000 2000 18446744073709551615";
        assert_eq!(cpu_seconds(stat, 100.0), Some(3.0));
        assert_eq!(cpu_seconds("garbage", 100.0), None);
        assert!(process_cpu_seconds().is_some());
        assert!(resident_memory_bytes().is_some_and(|b| b > 0));
    }

    #[test]
    fn program_info_offsets_agree_with_aya() {
        // Needs root (or CAP_SYS_ADMIN) to list the host's programs, and one loaded.
        let Some(Ok(program)) = aya::programs::loaded_programs().next() else {
            eprintln!("no BPF program visible here: skipped");
            return;
        };
        let fd = program.fd().expect("program fd");
        let stats = program_stats(fd.as_fd()).expect("BPF_OBJ_GET_INFO_BY_FD");
        assert_eq!(stats.id, program.id());
        assert!(stats.runs >= program.run_count());
        assert!(stats.run_time >= program.run_time());
    }
}
