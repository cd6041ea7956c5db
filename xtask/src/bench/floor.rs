//! The kernel's own floor: what an *empty* program on a cgroup hook costs, so a ratio goal this
//! kernel cannot reach with any program there is shown as such, with the measurement.
//!
//! Two programs of two instructions (`r0 = 1; exit`: allow, look at nothing) are loaded and
//! linked to the cgroup v2 root with raw `bpf(2)` calls (no eBPF toolchain needed): one on
//! `cgroup/connect4`, one on `cgroup_skb/egress`. Whatever a run with them costs over a run
//! without is the hook itself (the kernel's dispatch, context set-up and locking), not a program.
use std::{
    fs::File,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_CGROUP_SKB: u32 = 8;
const BPF_PROG_TYPE_CGROUP_SOCK_ADDR: u32 = 18;
const BPF_CGROUP_INET_EGRESS: u32 = 1;
const BPF_CGROUP_INET4_CONNECT: u32 = 10;

/// `union bpf_attr` as `BPF_PROG_LOAD` reads it (the fields up to `expected_attach_type`; the
/// rest of the union stays zero).
#[repr(C)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    _rest: [u8; 64],
}

/// `union bpf_attr` as `BPF_LINK_CREATE` reads it.
#[repr(C)]
struct LinkCreate {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    _rest: [u8; 112],
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T, what: &str) -> anyhow::Result<OwnedFd> {
    // SAFETY: `attr` is a live, zero-padded `union bpf_attr` prefix of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if fd < 0 {
        bail!("{what}: {}", std::io::Error::last_os_error());
    }
    // SAFETY: the kernel handed us this new descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `r0 = 1; exit`.
const ALLOW: [u64; 2] = [
    // BPF_ALU64 | BPF_MOV | BPF_K, dst r0, imm 1.
    0xb7 | (1 << 32),
    // BPF_JMP | BPF_EXIT.
    0x95,
];

fn empty_program(prog_type: u32, attach_type: u32) -> anyhow::Result<OwnedFd> {
    let license = c"GPL";
    let mut attr = ProgLoad {
        prog_type,
        insn_cnt: ALLOW.len() as u32,
        insns: ALLOW.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name: *b"bench_floor\0\0\0\0\0",
        prog_ifindex: 0,
        expected_attach_type: attach_type,
        _rest: [0; 64],
    };
    bpf(BPF_PROG_LOAD, &mut attr, "loading an empty program")
}

fn link(program: &OwnedFd, cgroup: &File, attach_type: u32) -> anyhow::Result<OwnedFd> {
    let mut attr = LinkCreate {
        prog_fd: program.as_raw_fd() as u32,
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type,
        flags: 0,
        _rest: [0; 112],
    };
    bpf(BPF_LINK_CREATE, &mut attr, "linking it to the cgroup root")
}

/// The cgroup v2 root (from /proc/mounts).
pub fn cgroup_root() -> anyhow::Result<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts")?;
    mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .context("no cgroup v2 hierarchy is mounted")
}

/// Empty programs on `cgroup/connect4` and `cgroup_skb/egress` of the cgroup v2 root for as
/// long as this lives (dropping the links detaches them).
pub struct EmptyHooks {
    _links: Vec<OwnedFd>,
    _programs: Vec<OwnedFd>,
}

impl EmptyHooks {
    pub fn attach(root: &Path) -> anyhow::Result<Self> {
        let cgroup = File::open(root).with_context(|| format!("opening {}", root.display()))?;
        let mut links = Vec::new();
        let mut programs = Vec::new();
        for (prog_type, attach_type) in [
            (BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET4_CONNECT),
            (BPF_PROG_TYPE_CGROUP_SKB, BPF_CGROUP_INET_EGRESS),
        ] {
            let program = empty_program(prog_type, attach_type)?;
            links.push(link(&program, &cgroup, attach_type)?);
            programs.push(program);
        }
        Ok(Self {
            _links: links,
            _programs: programs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layouts the kernel reads: `union bpf_attr` is 8-byte aligned and these prefixes put
    /// each field where the UAPI header does.
    #[test]
    fn attr_layouts_match_the_uapi() {
        assert_eq!(std::mem::offset_of!(ProgLoad, insns), 8);
        assert_eq!(std::mem::offset_of!(ProgLoad, license), 16);
        assert_eq!(std::mem::offset_of!(ProgLoad, log_buf), 32);
        assert_eq!(std::mem::offset_of!(ProgLoad, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoad, expected_attach_type), 68);
        assert_eq!(std::mem::offset_of!(LinkCreate, attach_type), 8);
        assert_eq!(std::mem::size_of::<LinkCreate>(), 128);
    }
}
