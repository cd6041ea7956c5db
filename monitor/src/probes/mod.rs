//! Capability checks, loading the embedded kernel programs, and attaching them.
pub mod btf;
pub mod caps;
pub mod gopclntab;
pub mod gotls;
pub mod server;
pub mod tls_server;
pub mod tracefs;
pub mod uprobes;

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use aya::{programs::TracePoint, Ebpf, EbpfLoader};
use monitor_common::{KernelOffsets, TracepointOffsets};

use crate::output::{Status, StatusKind};

/// The kernel programs, built by `build.rs` from `monitor-ebpf`.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/monitor-ebpf"));

#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// `--all`: programs skip the target-set check.
    pub filter_all: bool,
    /// Send exec events for every process (target discovery by command line, name or cgroup).
    pub report_all_execs: bool,
    /// aya-log level for kernel-side diagnostics: 0 (off, the default) .. 5 (trace).
    pub ebpf_log_level: u8,
    /// Size of the event ring buffer. Its data pages are mapped twice into the agent (the
    /// ring's wrap-around trick), so they count twice in its resident memory.
    pub ringbuf_bytes: u32,
    /// Entries of the kernel maps: the target set, tracked sockets, per-thread state, TLS
    /// sessions. A full map refuses and counts the drop.
    pub max_targets: u32,
    pub max_sockets: u32,
    pub max_threads: u32,
    pub max_tls_sessions: u32,
    /// Use the syscall tracepoints even where the cgroup hooks work.
    pub syscall_tracepoints: bool,
    /// Attach the cgroup hooks here instead of the v2 root (`--hook-cgroup`).
    pub hook_cgroup: Option<PathBuf>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            filter_all: false,
            report_all_execs: true,
            ebpf_log_level: 0,
            // 8 MiB hold about 80,000 connect records: almost a second at 100,000 connects a
            // second, far more than the loop ever lags.
            ringbuf_bytes: 8 << 20,
            max_targets: 65_536,
            max_sockets: 65_536,
            max_threads: 16_384,
            max_tls_sessions: 65_536,
            syscall_tracepoints: false,
            hook_cgroup: None,
        }
    }
}

/// A tracepoint program and what it is for. Required ones abort the start when they fail;
/// the others are reported as skipped and the rest keeps working.
struct TracepointSpec {
    program: &'static str,
    category: &'static str,
    name: &'static str,
    /// Required on the syscall data path (the cgroup path has its own connect hooks).
    required: bool,
    purpose: &'static str,
}

impl TracepointSpec {
    /// A syscall tracepoint: attached only on the fallback data path (one attached syscall
    /// tracepoint puts every thread of the host on the syscall slow path).
    fn is_syscall(&self) -> bool {
        self.category == "syscalls"
    }
}

const TRACEPOINTS: &[TracepointSpec] = &[
    TracepointSpec {
        program: "sys_enter_connect",
        category: "syscalls",
        name: "sys_enter_connect",
        required: true,
        purpose: "connect tracing",
    },
    TracepointSpec {
        program: "sys_exit_connect",
        category: "syscalls",
        name: "sys_exit_connect",
        required: true,
        purpose: "connect results",
    },
    TracepointSpec {
        program: "sys_enter_write",
        category: "syscalls",
        name: "sys_enter_write",
        required: false,
        purpose: "plaintext credential detection",
    },
    TracepointSpec {
        program: "sys_enter_sendto",
        category: "syscalls",
        name: "sys_enter_sendto",
        required: false,
        purpose: "plaintext credential detection",
    },
    TracepointSpec {
        program: "sys_enter_writev",
        category: "syscalls",
        name: "sys_enter_writev",
        required: false,
        purpose: "plaintext credential detection",
    },
    TracepointSpec {
        program: "sys_enter_sendmsg",
        category: "syscalls",
        name: "sys_enter_sendmsg",
        required: false,
        purpose: "plaintext credential detection",
    },
    TracepointSpec {
        program: "inet_sock_set_state",
        category: "sock",
        name: "inet_sock_set_state",
        required: false,
        purpose: "connect outcomes and socket ends",
    },
    TracepointSpec {
        program: "sys_enter_mmap",
        category: "syscalls",
        name: "sys_enter_mmap",
        required: false,
        purpose: "finding TLS libraries loaded at run time",
    },
    TracepointSpec {
        program: "sys_exit_mmap",
        category: "syscalls",
        name: "sys_exit_mmap",
        required: false,
        purpose: "finding TLS libraries loaded at run time",
    },
    TracepointSpec {
        program: "sched_process_exec",
        category: "sched",
        name: "sched_process_exec",
        required: false,
        purpose: "discovering processes started after the monitor",
    },
    TracepointSpec {
        program: "sched_process_fork",
        category: "sched",
        name: "sched_process_fork",
        required: false,
        purpose: "targeting children of targets before they run",
    },
    TracepointSpec {
        program: "sched_process_exit",
        category: "sched",
        name: "sched_process_exit",
        required: false,
        purpose: "forgetting finished processes",
    },
];

pub struct Loaded {
    pub ebpf: Ebpf,
    /// Reader of kernel-side diagnostics when `ebpf_log_level > 0`.
    pub logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    pub statuses: Vec<Status>,
    pub data_path: DataPath,
}

/// Where connects and the first bytes of connections are seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataPath {
    /// `cgroup/connect4|6`, `cgroup_skb/egress` and `cgroup/sock_release` on the cgroup v2 root
    /// (this path): untargeted processes pay one lookup per connect and per packet, and
    /// nothing for other syscalls.
    Cgroup(PathBuf),
    /// Syscall tracepoints (`connect`, `write`, `sendto`, `writev`, `sendmsg`, `mmap`), when
    /// the cgroup hooks cannot be used: every thread of the host pays the syscall slow path.
    Syscalls,
}

/// The cgroup v2 hierarchy's mount point (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on
/// hybrid hosts), from `/proc/mounts` text.
pub fn cgroup2_root(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_, mount_point, fstype) = (fields.next()?, fields.next()?, fields.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(mount_point))
    })
}

/// Programs of the cgroup data path.
const CGROUP_PROGRAMS: [&str; 6] = [
    "connect4",
    "connect6",
    "sendmsg4",
    "sendmsg6",
    "sock_release",
    "skb_egress",
];

/// Undo a partial attach of the cgroup data path (both paths at once would report twice).
fn detach_cgroup_path(ebpf: &mut Ebpf) {
    use aya::programs::{CgroupSkb, CgroupSock, CgroupSockAddr};
    for name in CGROUP_PROGRAMS {
        let Some(program) = ebpf.program_mut(name) else {
            continue;
        };
        let _ = match name {
            "connect4" | "connect6" | "sendmsg4" | "sendmsg6" => {
                <&mut CgroupSockAddr>::try_from(program).map(|p| p.unload().is_ok())
            }
            "sock_release" => <&mut CgroupSock>::try_from(program).map(|p| p.unload().is_ok()),
            _ => <&mut CgroupSkb>::try_from(program).map(|p| p.unload().is_ok()),
        };
    }
}

/// Attach the cgroup data path's programs to `root`. Through BPF links (kernels 5.7 and later),
/// which always coexist with other programs on the cgroup: the attach mode is the default
/// (a link refuses the multi-attach flag).
fn attach_cgroup_path(ebpf: &mut Ebpf, root: &Path) -> anyhow::Result<()> {
    use aya::programs::{
        cgroup_skb::CgroupSkbAttachType, CgroupAttachMode, CgroupSkb, CgroupSock, CgroupSockAddr,
    };
    let cgroup = std::fs::File::open(root)
        .with_context(|| format!("opening the cgroup v2 root {}", root.display()))?;
    for name in ["connect4", "connect6", "sendmsg4", "sendmsg6"] {
        let program: &mut CgroupSockAddr = ebpf
            .program_mut(name)
            .with_context(|| format!("program {name} missing from the eBPF object"))?
            .try_into()?;
        program.load().with_context(|| format!("loading {name}"))?;
        program
            .attach(&cgroup, CgroupAttachMode::Single)
            .with_context(|| format!("attaching {name}"))?;
    }
    let program: &mut CgroupSock = ebpf
        .program_mut("sock_release")
        .context("program sock_release missing from the eBPF object")?
        .try_into()?;
    program.load().context("loading sock_release")?;
    program
        .attach(&cgroup, CgroupAttachMode::Single)
        .context("attaching sock_release")?;
    let program: &mut CgroupSkb = ebpf
        .program_mut("skb_egress")
        .context("program skb_egress missing from the eBPF object")?
        .try_into()?;
    program.load().context("loading skb_egress")?;
    program
        .attach(
            &cgroup,
            CgroupSkbAttachType::Egress,
            CgroupAttachMode::Single,
        )
        .context("attaching skb_egress")?;
    Ok(())
}

fn tracepoint_offsets(tracefs: &Path, statuses: &mut Vec<Status>) -> TracepointOffsets {
    let mut offsets = TracepointOffsets {
        fork_child_pid: 20,
        exec_filename: 8,
        exit_group_dead: 0,
        _pad: 0,
    };
    let group_dead = tracefs::read_format(tracefs, "sched", "sched_process_exit")
        .ok()
        .and_then(|fields| fields.get("group_dead").map(|f| f.offset));
    if let Some(o) = group_dead {
        offsets.exit_group_dead = o;
    }
    let mut read = |category: &str, name: &str, field: &str| -> Option<u32> {
        match tracefs::read_format(tracefs, category, name) {
            Ok(fields) => match fields.get(field) {
                Some(f) => Some(f.offset),
                None => {
                    statuses.push(Status::new(
                        StatusKind::Warning,
                        Some(format!("tracepoint:{category}/{name}")),
                        format!("format has no field {field}; using the default offset"),
                    ));
                    None
                }
            },
            Err(_) => None, // reported when attaching
        }
    };
    if let Some(o) = read("sched", "sched_process_fork", "child_pid") {
        offsets.fork_child_pid = o;
    }
    if let Some(o) = read("sched", "sched_process_exec", "filename") {
        offsets.exec_filename = o;
    }
    offsets
}

/// Load the programs with this machine's offsets and options, and attach every tracepoint.
pub fn load(opts: &LoadOptions, tracefs: &Path) -> anyhow::Result<Loaded> {
    let mut statuses = Vec::new();
    let kernel_offsets = match std::fs::read(btf::VMLINUX)
        .map_err(anyhow::Error::from)
        .and_then(|data| btf::kernel_offsets(&data))
    {
        Ok(offsets) => {
            if offsets.valid & monitor_common::offsets_valid::SOCKET == 0 {
                statuses.push(Status::new(
                    StatusKind::Skipped,
                    Some("BTF".into()),
                    "socket offsets unavailable: `protocol` will be null, and no payload capture or connect outcomes",
                ));
            }
            if offsets.valid & monitor_common::offsets_valid::START_TIME == 0 {
                statuses.push(Status::new(
                    StatusKind::Skipped,
                    Some("BTF".into()),
                    "process start times unavailable: processes are told apart by pid and exit events only",
                ));
            }
            offsets
        }
        Err(err) => {
            statuses.push(Status::new(
                StatusKind::Skipped,
                Some("BTF".into()),
                format!("kernel offsets unavailable (`protocol` will be null, no payload capture, no connect outcomes): {err:#}"),
            ));
            KernelOffsets::default()
        }
    };
    let tp_offsets = tracepoint_offsets(tracefs, &mut statuses);
    let filter_all = opts.filter_all as u8;
    let report_all_execs = opts.report_all_execs as u8;
    let log_level = opts.ebpf_log_level;

    let mut ebpf = EbpfLoader::new()
        .override_global("FILTER_ALL", &filter_all, true)
        .override_global("REPORT_ALL_EXECS", &report_all_execs, true)
        .override_global("KERNEL_OFFSETS", &kernel_offsets, true)
        .override_global("TRACEPOINT_OFFSETS", &tp_offsets, true)
        .override_global(aya_log::LEVEL, &log_level, false)
        .map_max_entries("EVENTS", opts.ringbuf_bytes)
        .map_max_entries("TARGETS", opts.max_targets)
        .map_max_entries("SOCKETS", opts.max_sockets)
        .map_max_entries("THREADS", opts.max_threads)
        .map_max_entries("SSL_STATE", opts.max_tls_sessions)
        .load(EBPF_OBJECT)
        .context("loading the eBPF object into the kernel")?;

    let logger = if log_level > 0 {
        match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(logger) => Some(logger),
            Err(err) => {
                statuses.push(Status::new(
                    StatusKind::Warning,
                    Some("ebpf-log".into()),
                    format!("kernel-side logging unavailable: {err}"),
                ));
                None
            }
        }
    } else {
        None
    };

    // The data path: the cgroup hooks unless told otherwise or impossible here.
    let mut data_path = DataPath::Syscalls;
    if !opts.syscall_tracepoints {
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        match opts.hook_cgroup.clone().or_else(|| cgroup2_root(&mounts)) {
            Some(root) => match attach_cgroup_path(&mut ebpf, &root) {
                Ok(()) => data_path = DataPath::Cgroup(root),
                // Asked for by name (a measurement): no silent fallback to another data path.
                Err(err) if opts.hook_cgroup.is_some() => {
                    return Err(err.context(format!("--hook-cgroup {}", root.display())));
                }
                Err(err) => {
                    detach_cgroup_path(&mut ebpf);
                    statuses.push(Status::new(
                    StatusKind::Warning,
                    Some("data path".into()),
                    format!(
                        "the cgroup hooks could not be attached ({err:#}); falling back to syscall tracepoints"
                    ),
                ))
                }
            },
            None => statuses.push(Status::new(
                StatusKind::Warning,
                Some("data path".into()),
                "no cgroup v2 hierarchy is mounted; falling back to syscall tracepoints",
            )),
        }
    }
    statuses.push(match &data_path {
        DataPath::Cgroup(root) => Status::new(
            StatusKind::Attached,
            Some("data path".into()),
            format!(
                "cgroup hooks on {} (connect4/6, sendmsg4/6, skb egress, sock_release): untargeted processes pay one target lookup per connect and one socket-storage check per packet",
                root.display()
            ),
        ),
        DataPath::Syscalls => Status::new(
            StatusKind::Attached,
            Some("data path".into()),
            "syscall tracepoints (fallback): every thread of the host pays the syscall slow path",
        ),
    });

    if let DataPath::Cgroup(root) = &data_path {
        statuses.extend(server::attach(&mut ebpf, root));
    }

    for spec in TRACEPOINTS {
        if spec.is_syscall() && data_path != DataPath::Syscalls {
            continue;
        }
        let component = format!("tracepoint:{}/{}", spec.category, spec.name);
        let result = (|| -> anyhow::Result<()> {
            if !tracefs::exists(tracefs, spec.category, spec.name) {
                anyhow::bail!("this kernel has no such tracepoint");
            }
            let program: &mut TracePoint = ebpf
                .program_mut(spec.program)
                .with_context(|| format!("program {} missing from the eBPF object", spec.program))?
                .try_into()?;
            program.load()?;
            program.attach(spec.category, spec.name)?;
            Ok(())
        })();
        match result {
            Ok(()) => statuses.push(Status::new(
                StatusKind::Attached,
                Some(component),
                spec.purpose,
            )),
            Err(err) if spec.required => {
                return Err(err.context(format!(
                    "attaching {component} (needed for {})",
                    spec.purpose
                )));
            }
            Err(err) => statuses.push(Status::new(
                StatusKind::Skipped,
                Some(component),
                format!("{err:#}; without it: no {}", spec.purpose),
            )),
        }
    }
    Ok(Loaded {
        ebpf,
        logger,
        statuses,
        data_path,
    })
}

impl LoadOptions {
    /// Apply `name=entries,...` (`targets`, `sockets`, `threads`, `tls`, `ringbuf` in bytes):
    /// a hidden option for tests that need full maps, and for operators who must size them.
    pub fn set_map_sizes(&mut self, spec: &str) -> anyhow::Result<()> {
        for item in spec.split(',').filter(|s| !s.is_empty()) {
            let (name, value) = item
                .split_once('=')
                .with_context(|| format!("map size {item:?}: expected NAME=ENTRIES"))?;
            let value: u32 = value
                .parse()
                .ok()
                .filter(|v| *v > 0)
                .with_context(|| format!("map size {item:?}: not a positive number"))?;
            match name {
                "targets" => self.max_targets = value,
                "sockets" => self.max_sockets = value,
                "threads" => self.max_threads = value,
                "tls" => self.max_tls_sessions = value,
                "ringbuf" => self.ringbuf_bytes = value,
                other => {
                    anyhow::bail!("unknown map {other:?} (targets, sockets, threads, tls, ringbuf)")
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup2_root_on_pure_and_hybrid_hosts() {
        assert_eq!(
            cgroup2_root("cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n"),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        let hybrid = "tmpfs /sys/fs/cgroup tmpfs ro 0 0\n\
                      cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n\
                      cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n";
        assert_eq!(
            cgroup2_root(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            cgroup2_root("cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n"),
            None
        );
    }

    #[test]
    fn map_sizes_are_parsed_strictly() {
        let mut o = LoadOptions::default();
        o.set_map_sizes("sockets=16,threads=4").unwrap();
        assert_eq!((o.max_sockets, o.max_threads), (16, 4));
        assert!(o.set_map_sizes("sockets=0").is_err());
        assert!(o.set_map_sizes("bogus=3").is_err());
        assert!(o.set_map_sizes("sockets").is_err());
    }
}
