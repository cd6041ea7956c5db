//! What this kernel and machine can do, checked once and shared by `doctor` (which prints it) and
//! `run` (which decides what to load from it). One table instead of `if` chains in the loader.
//! Every row names the first mainline kernel that provides it and compares it with this one.
use std::{fmt, io, path::Path};

use aya::{
    maps::MapType,
    programs::ProgramType,
    sys::{is_helper_supported, is_map_supported, is_program_supported, BpfHelper},
};
use serde::Serialize;

use super::{btf, tracefs};
use crate::output::{Status, StatusKind};

/// A kernel release as `major.minor.patch`, ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KernelVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl KernelVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// The version at the start of a `uname -r` release: `6.18.44-fc-v669`, `5.10.0-28-amd64`,
    /// `4.19.0`, `5.15.0-rc3+`, `6.1`. `None` when it does not start with `major.minor`.
    pub fn parse(release: &str) -> Option<Self> {
        fn number(s: &str) -> Option<(u32, &str)> {
            let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            Some((s[..end].parse().ok()?, &s[end..]))
        }
        let (major, rest) = number(release.trim())?;
        let (minor, rest) = number(rest.strip_prefix('.')?)?;
        let patch = match rest.strip_prefix('.') {
            Some(rest) => number(rest)?.0,
            None => 0,
        };
        Some(Self::new(major, minor, patch))
    }

    /// The running kernel's version (`None` when its release string is not a version).
    pub fn running() -> Option<Self> {
        Self::parse(&kernel_release())
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.patch == 0 {
            write!(f, "{}.{}", self.major, self.minor)
        } else {
            write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
        }
    }
}

impl Serialize for KernelVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// First mainline releases that provide what `check` looks for. Distribution kernels may have
/// backported a feature to an older release, so these explain a result; the checks decide.
pub mod since {
    use super::KernelVersion as V;

    /// CAP_BPF and CAP_PERFMON (capabilities(7): "since Linux 5.8").
    pub const CAP_BPF: V = V::new(5, 8, 0);
    /// tracefs at /sys/kernel/tracing (Documentation/ABI/obsolete/automount-tracefs-debugfs:
    /// "added in January 2015 in the v4.1 kernel").
    pub const TRACEFS: V = V::new(4, 1, 0);
    /// BPF programs on `syscalls:sys_enter_*`/`sys_exit_*` ("bpf: add support for
    /// sys_enter_* and sys_exit_* tracepoints", net-next, August 2017, merged for 4.14; earlier
    /// kernels refuse PERF_EVENT_IOC_SET_BPF on them with EINVAL).
    pub const SYSCALL_TRACEPOINT_BPF: V = V::new(4, 14, 0);
    /// BPF programs on tracepoints (BPF_PROG_TYPE_TRACEPOINT, commit 98b5c2c65c29).
    pub const TRACEPOINT_BPF: V = V::new(4, 7, 0);
    /// The `bpf_probe_read_user` helper (commit 6ae08ae3dea2).
    pub const PROBE_READ_USER: V = V::new(5, 5, 0);
    /// Kernel BTF at /sys/kernel/btf/vmlinux (commit 341dfcf8d78e, "btf: expose BTF info
    /// through sysfs", Aug 2019; its ABI file is in the v5.4 tree although it says 5.5).
    pub const BTF_VMLINUX: V = V::new(5, 4, 0);
    /// BPF_MAP_TYPE_RINGBUF (commit 457f44363a88).
    pub const RINGBUF: V = V::new(5, 8, 0);
    /// The perf `uprobe` and `kprobe` PMUs (perf_event_open(2): "kprobe and uprobe (since
    /// Linux 4.17)"; commits e12f03d7031a, 33ea4b24277b).
    pub const PERF_PROBE_PMU: V = V::new(4, 17, 0);
    /// `bpf_get_attach_cookie` in kprobe/uprobe programs (commit 7adfc6c9b315).
    pub const ATTACH_COOKIE: V = V::new(5, 15, 0);
    /// BPF_PROG_TYPE_CGROUP_SKB (commit 0e33661de493).
    pub const CGROUP_SKB: V = V::new(4, 10, 0);
    /// BPF_PROG_TYPE_CGROUP_SOCK_ADDR: bind and connect hooks (commits 4fbac77d2d09,
    /// d74bad4e74ee).
    pub const CGROUP_SOCK_ADDR: V = V::new(4, 17, 0);
    /// BPF_CGROUP_INET_SOCK_RELEASE, the `cgroup/sock_release` hook (commit f5836749c9c0),
    /// the newest piece of the cgroup data path (its BPF links came in 5.7).
    pub const CGROUP_SOCK_RELEASE: V = V::new(5, 9, 0);
    /// BPF_MAP_TYPE_SK_STORAGE (commit 6ac99e8f23d4).
    pub const SK_STORAGE: V = V::new(5, 2, 0);
    /// BPF_MAP_TYPE_TASK_STORAGE (commit 4cf1bc1f1045).
    pub const TASK_STORAGE: V = V::new(5, 11, 0);
    /// fentry/fexit: BPF trampolines and BPF_PROG_TYPE_TRACING (commits fec56f5890d9,
    /// f1b9509c2fb0).
    pub const FENTRY: V = V::new(5, 5, 0);
    /// The lockdown LSM (kernel_lockdown(7): "added in Linux 5.4").
    pub const LOCKDOWN: V = V::new(5, 4, 0);
    /// BPF maps and programs charged to the memory cgroup instead of RLIMIT_MEMLOCK (the
    /// series whose cover letter is lore 20201201215900.3569844-1-guro@fb.com; before it,
    /// map creation fails with EPERM past the limit).
    pub const MEMCG_ACCOUNTING: V = V::new(5, 11, 0);
}

/// One capability: whether it is there, what it is used for and how to get it.
#[derive(Clone, Debug, Serialize)]
pub struct Capability {
    pub name: &'static str,
    pub available: bool,
    /// Whether `run` cannot work at all without it.
    pub required: bool,
    pub detail: String,
    pub needed_for: &'static str,
    /// How to fix it when unavailable (empty when there is nothing to fix).
    pub fix: &'static str,
    /// The first mainline kernel that provides it (`None`: no kernel needed for it).
    pub min_kernel: Option<KernelVersion>,
    /// What `min_kernel` is the version of.
    pub min_kernel_for: &'static str,
    /// Whether the running kernel is at least `min_kernel` (`None` when either is unknown).
    pub kernel_meets_min: Option<bool>,
}

impl Capability {
    /// Compare `min_kernel` with the running kernel.
    fn against(mut self, running: Option<KernelVersion>) -> Self {
        self.kernel_meets_min = running.zip(self.min_kernel).map(|(r, m)| r >= m);
        self
    }
}

const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_RESOURCE: u32 = 24;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// A Linux capability the agent uses, and what its absence breaks.
pub struct LinuxCap {
    pub name: &'static str,
    bit: u32,
    /// Also granted by CAP_SYS_ADMIN (the kernel accepts either).
    covered_by_sys_admin: bool,
    pub breaks: &'static str,
}

/// The least privilege that runs everything: exactly these capabilities (README "Least
/// privilege"; `deploy/` grants the same list). Measured with `setpriv` on this project's
/// test machines; `tests/tests/privileges.rs` runs the agent with only these.
pub const LINUX_CAPS: &[LinuxCap] = &[
    LinuxCap {
        name: "CAP_BPF",
        bit: CAP_BPF,
        covered_by_sys_admin: true,
        breaks: "creating maps and loading programs: nothing runs without it (or CAP_SYS_ADMIN)",
    },
    LinuxCap {
        name: "CAP_PERFMON",
        bit: CAP_PERFMON,
        covered_by_sys_admin: true,
        breaks: "tracing programs (tracepoints, reading process and kernel memory): nothing runs \
                 without it (or CAP_SYS_ADMIN)",
    },
    LinuxCap {
        name: "CAP_NET_ADMIN",
        bit: CAP_NET_ADMIN,
        covered_by_sys_admin: true,
        breaks: "the cgroup hooks (connect, sendmsg, packet egress, socket release): without it \
                 the data path falls back to syscall tracepoints, which every process pays for",
    },
    LinuxCap {
        name: "CAP_SYS_ADMIN",
        bit: CAP_SYS_ADMIN,
        covered_by_sys_admin: false,
        breaks: "uprobes (the kernel's uprobe PMU requires it in perf_event_open): without it no \
                 OpenSSL hooks, so no TLS findings; also mounting tracefs when it is not mounted",
    },
    LinuxCap {
        name: "CAP_SYS_PTRACE",
        bit: CAP_SYS_PTRACE,
        covered_by_sys_admin: false,
        breaks: "reading /proc/PID/{exe,maps,environ,cwd,root} of other users' processes: \
                 without it their executable, libraries, TLS bypass variables and MCP discovery \
                 are unknown",
    },
    LinuxCap {
        name: "CAP_DAC_READ_SEARCH",
        bit: CAP_DAC_READ_SEARCH,
        covered_by_sys_admin: false,
        breaks: "reading other users' binaries, scripts and package manifests: without it their \
                 libraries are not hooked and MCP discovery cannot read what they are built from",
    },
    LinuxCap {
        name: "CAP_SYS_RESOURCE",
        bit: CAP_SYS_RESOURCE,
        covered_by_sys_admin: false,
        breaks: "raising RLIMIT_MEMLOCK: only kernels before 5.11 need it (later ones charge BPF \
                 memory to the memory cgroup)",
    },
];

/// One row per capability of [`LINUX_CAPS`]: held or not, and what its absence breaks.
fn capability_rows(eff: u64, running: Option<KernelVersion>) -> Vec<Capability> {
    let memcg = running.is_some_and(|r| r >= since::MEMCG_ACCOUNTING);
    LINUX_CAPS
        .iter()
        .map(|c| {
            let held = has_cap(eff, c.bit);
            let via_admin = !held && c.covered_by_sys_admin && has_cap(eff, CAP_SYS_ADMIN);
            let moot = !held && c.bit == CAP_SYS_RESOURCE && memcg;
            Capability {
                name: c.name,
                available: held || via_admin || moot,
                required: false,
                detail: if held {
                    "held".into()
                } else if via_admin {
                    "not held; CAP_SYS_ADMIN grants the same".into()
                } else if moot {
                    "not held; not needed on this kernel".into()
                } else {
                    "missing".into()
                },
                needed_for: c.breaks,
                fix: "grant it (setpriv/capsh, systemd AmbientCapabilities, Kubernetes \
                      securityContext.capabilities.add): see the README's least privilege",
                min_kernel: None,
                min_kernel_for: "none: a privilege, not a kernel feature",
                kernel_meets_min: None,
            }
        })
        .collect()
}

fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

fn has_cap(caps: u64, bit: u32) -> bool {
    caps & (1 << bit) != 0
}

fn first_line(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.lines().next().unwrap_or_default().trim().to_string())
}

fn pmu(name: &str) -> bool {
    Path::new("/sys/bus/event_source/devices")
        .join(name)
        .join("type")
        .exists()
}

fn map_supported(kind: MapType, name: &str) -> (bool, String) {
    match is_map_supported(kind) {
        Ok(true) => (true, format!("{name} creates")),
        Ok(false) => (false, format!("{name} not supported")),
        Err(err) => (false, format!("probe failed: {err}")),
    }
}

fn helper_supported(kind: ProgramType, helper: BpfHelper, name: &str) -> (bool, String) {
    match is_helper_supported(kind, helper) {
        Ok(true) => (true, format!("{name} accepted in {kind:?} programs")),
        Ok(false) => (false, format!("{name} unknown to this kernel's verifier")),
        Err(err) => (
            false,
            format!("probe load failed: {:#}", anyhow::Error::from(err)),
        ),
    }
}

fn program_supported(kind: ProgramType) -> (bool, String) {
    match is_program_supported(kind) {
        Ok(true) => (true, "loads".into()),
        Ok(false) => (false, "the kernel rejects this program type".into()),
        Err(err) => (
            false,
            format!("probe load failed: {:#}", anyhow::Error::from(err)),
        ),
    }
}

/// What a missing cgroup capability means.
const CGROUP_FIX: &str = "without it the monitor falls back to syscall tracepoints, which every \
                          thread of the host pays for; use a kernel >= 5.9";

/// Check everything. Cheap enough to run at every start (a few small BPF loads and file reads).
pub fn check() -> Vec<Capability> {
    let mut caps = Vec::new();
    let eff = effective_caps().unwrap_or(0);
    let privileged =
        has_cap(eff, CAP_SYS_ADMIN) || (has_cap(eff, CAP_BPF) && has_cap(eff, CAP_PERFMON));
    caps.push(Capability {
        name: "privileges",
        available: privileged,
        required: true,
        detail: format!(
            "effective uid {}, CAP_SYS_ADMIN {}, CAP_BPF {}, CAP_PERFMON {}",
            // SAFETY: no preconditions.
            unsafe { libc::geteuid() },
            has_cap(eff, CAP_SYS_ADMIN),
            has_cap(eff, CAP_BPF),
            has_cap(eff, CAP_PERFMON)
        ),
        needed_for: "loading and attaching any eBPF program",
        fix: "run as root, or grant the capabilities listed below (the README's least privilege); \
              CAP_SYS_ADMIN alone on kernels older than 5.8",
        min_kernel: Some(since::CAP_BPF),
        min_kernel_for: "CAP_BPF and CAP_PERFMON; root works on any kernel",
        kernel_meets_min: None,
    });

    let mounted = tracefs::find();
    let kernel_has_tracefs = tracefs::supported_by_kernel();
    caps.push(Capability {
        name: "tracefs",
        available: mounted.is_some() || (kernel_has_tracefs && has_cap(eff, CAP_SYS_ADMIN)),
        required: true,
        detail: match (&mounted, kernel_has_tracefs) {
            (Some(path), _) => format!("mounted at {}", path.display()),
            (None, true) => format!(
                "not mounted; `run` mounts it at {} when it has CAP_SYS_ADMIN",
                tracefs::TRACEFS
            ),
            (None, false) => "the kernel has no tracefs".into(),
        },
        needed_for: "attaching tracepoints (connect, exec, exit, fork)",
        fix: "mount -t tracefs tracefs /sys/kernel/tracing (in a container: bind-mount the host's)",
        min_kernel: Some(since::TRACEFS),
        min_kernel_for: "tracefs",
        kernel_meets_min: None,
    });

    let tp_root = mounted.clone();
    let tp = |category: &str, name: &str| {
        tp_root
            .as_deref()
            .is_some_and(|t| tracefs::exists(t, category, name))
    };
    let syscalls = ["sys_enter_connect", "sys_exit_connect"]
        .iter()
        .all(|n| tp("syscalls", n));
    caps.push(Capability {
        name: "syscall tracepoints",
        available: syscalls,
        required: false,
        detail: if mounted.is_none() {
            "unknown until tracefs is mounted".into()
        } else if syscalls {
            "syscalls:sys_enter_connect / sys_exit_connect present".into()
        } else {
            "syscalls:sys_enter_connect missing (kernel built without CONFIG_FTRACE_SYSCALLS)"
                .into()
        },
        needed_for: "the fallback data path (where the cgroup hooks cannot be used, or with \
                     --syscall-tracepoints)",
        fix: "use a kernel with CONFIG_FTRACE_SYSCALLS=y (all major distributions)",
        min_kernel: Some(since::SYSCALL_TRACEPOINT_BPF),
        min_kernel_for: "BPF programs on syscalls:sys_enter_*/sys_exit_* tracepoints",
        kernel_meets_min: None,
    });
    let (read_user, read_user_detail) = helper_supported(
        ProgramType::TracePoint,
        BpfHelper::BPF_FUNC_probe_read_user,
        "bpf_probe_read_user",
    );
    caps.push(Capability {
        name: "bpf_probe_read_user",
        available: read_user,
        required: true,
        detail: read_user_detail,
        needed_for: "reading connect addresses and payloads from the traced process's memory",
        fix: "use a kernel >= 5.5",
        min_kernel: Some(since::PROBE_READ_USER),
        min_kernel_for: "the bpf_probe_read_user helper",
        kernel_meets_min: None,
    });
    let sched = [
        "sched_process_exec",
        "sched_process_exit",
        "sched_process_fork",
    ]
    .iter()
    .all(|n| tp("sched", n));
    caps.push(Capability {
        name: "sched tracepoints",
        available: sched,
        required: false,
        detail: if mounted.is_none() {
            "unknown until tracefs is mounted".into()
        } else if sched {
            "sched:sched_process_exec / exit / fork present".into()
        } else {
            "missing".into()
        },
        needed_for: "discovering processes started after the monitor; targeting children",
        fix: "use a kernel with CONFIG_TRACEPOINTS=y",
        min_kernel: Some(since::TRACEPOINT_BPF),
        min_kernel_for: "BPF programs on tracepoints",
        kernel_meets_min: None,
    });

    let (btf_ok, btf_detail) = match std::fs::read(btf::VMLINUX) {
        Ok(data) => match btf::kernel_offsets(&data) {
            Ok(o) => (
                true,
                format!("{}: socket->type at +{}", btf::VMLINUX, o.socket_type),
            ),
            Err(err) => (
                false,
                format!("{} present but unusable: {err:#}", btf::VMLINUX),
            ),
        },
        Err(err) => (false, format!("{}: {err}", btf::VMLINUX)),
    };
    caps.push(Capability {
        name: "BTF",
        available: btf_ok,
        required: false,
        detail: btf_detail,
        needed_for: "reading the socket type (tcp/udp) of a connect from the kernel",
        fix: "use a kernel with CONFIG_DEBUG_INFO_BTF=y; without it `protocol` is reported as null",
        min_kernel: Some(since::BTF_VMLINUX),
        min_kernel_for: "kernel BTF at /sys/kernel/btf/vmlinux",
        kernel_meets_min: None,
    });

    let (ringbuf, ringbuf_detail) = match is_map_supported(MapType::RingBuf) {
        Ok(true) => (true, "BPF_MAP_TYPE_RINGBUF creates".to_string()),
        Ok(false) => (false, "not supported (kernel older than 5.8)".to_string()),
        Err(err) => (false, format!("probe failed: {err}")),
    };
    caps.push(Capability {
        name: "ring buffer",
        available: ringbuf,
        required: true,
        detail: ringbuf_detail,
        needed_for: "streaming events from the kernel",
        fix: "use a kernel >= 5.8",
        min_kernel: Some(since::RINGBUF),
        min_kernel_for: "BPF_MAP_TYPE_RINGBUF",
        kernel_meets_min: None,
    });

    caps.push(Capability {
        name: "uprobes",
        available: pmu("uprobe"),
        required: false,
        detail: if pmu("uprobe") {
            "perf PMU `uprobe` present".into()
        } else {
            "no perf PMU `uprobe` (CONFIG_UPROBE_EVENTS unset)".into()
        },
        needed_for: "OpenSSL hooks: TLS verification findings",
        fix: "use a kernel with CONFIG_UPROBE_EVENTS=y; connect tracing works without it",
        min_kernel: Some(since::PERF_PROBE_PMU),
        min_kernel_for: "the perf `uprobe` PMU",
        kernel_meets_min: None,
    });
    let (cookie, cookie_detail) = helper_supported(
        ProgramType::KProbe,
        BpfHelper::BPF_FUNC_get_attach_cookie,
        "bpf_get_attach_cookie",
    );
    caps.push(Capability {
        name: "uprobe attach cookie",
        available: cookie,
        required: false,
        detail: cookie_detail,
        needed_for: "OpenSSL hooks: telling which library and function a uprobe hit",
        fix: "use a kernel >= 5.15; connect tracing works without it",
        min_kernel: Some(since::ATTACH_COOKIE),
        min_kernel_for: "the bpf_get_attach_cookie helper in uprobe programs",
        kernel_meets_min: None,
    });
    let (cgroup_sock_addr, cgroup_detail) = program_supported(ProgramType::CgroupSockAddr);
    caps.push(Capability {
        name: "cgroup sock_addr programs",
        available: cgroup_sock_addr,
        required: false,
        detail: cgroup_detail,
        needed_for: "the default data path: connects and UDP destinations of targets \
                     (cgroup/connect4|6, sendmsg4|6)",
        fix: CGROUP_FIX,
        min_kernel: Some(since::CGROUP_SOCK_ADDR),
        min_kernel_for: "BPF_PROG_TYPE_CGROUP_SOCK_ADDR, connect4/connect6 hooks",
        kernel_meets_min: None,
    });
    let (cgroup_skb, cgroup_skb_detail) = program_supported(ProgramType::CgroupSkb);
    caps.push(Capability {
        name: "cgroup_skb programs",
        available: cgroup_skb,
        required: false,
        detail: cgroup_skb_detail,
        needed_for: "the default data path: the first bytes targets send (cgroup_skb/egress)",
        fix: CGROUP_FIX,
        min_kernel: Some(since::CGROUP_SKB),
        min_kernel_for: "BPF_PROG_TYPE_CGROUP_SKB",
        kernel_meets_min: None,
    });
    let (cgroup_sock, cgroup_sock_detail) = program_supported(ProgramType::CgroupSock);
    caps.push(Capability {
        name: "cgroup sock programs",
        available: cgroup_sock,
        required: false,
        detail: cgroup_sock_detail,
        needed_for: "the default data path: connects that never left the host \
                     (cgroup/sock_release)",
        fix: CGROUP_FIX,
        min_kernel: Some(since::CGROUP_SOCK_RELEASE),
        min_kernel_for: "the cgroup/sock_release hook",
        kernel_meets_min: None,
    });
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let cgroup_root = super::cgroup2_root(&mounts);
    caps.push(Capability {
        name: "cgroup v2 hierarchy",
        available: cgroup_root.is_some(),
        required: false,
        detail: match &cgroup_root {
            Some(root) => format!("mounted at {}", root.display()),
            None => "no cgroup2 file system in /proc/mounts".into(),
        },
        needed_for: "the default data path: its hooks attach to the cgroup v2 root",
        fix: "mount -t cgroup2 none /sys/fs/cgroup/unified (in a container: bind-mount the \
              host's and share the host's cgroup namespace)",
        min_kernel: Some(since::CGROUP_SOCK_ADDR),
        min_kernel_for: "cgroup v2 with the hooks above",
        kernel_meets_min: None,
    });
    let cgroup_path = cgroup_sock_addr && cgroup_skb && cgroup_sock && cgroup_root.is_some();
    caps.push(Capability {
        name: "data path",
        available: cgroup_path || syscalls,
        required: true,
        detail: match (&cgroup_root, cgroup_path, syscalls) {
            (Some(root), true, _) => format!(
                "cgroup hooks on {}: untargeted processes pay nothing for their syscalls",
                root.display()
            ),
            (_, false, true) => "syscall tracepoints (fallback: a cgroup row above is missing); \
                                 every thread of the host pays the syscall slow path"
                .into(),
            _ => "neither the cgroup hooks nor the syscall tracepoints are usable".into(),
        },
        needed_for: "seeing connects and the first bytes of connections",
        fix: "fix a cgroup row above (the default), or the syscall tracepoints row (the fallback)",
        min_kernel: Some(since::CGROUP_SOCK_RELEASE),
        min_kernel_for: "the cgroup data path; older kernels use the syscall tracepoint fallback",
        kernel_meets_min: None,
    });
    let (sk_storage, sk_storage_detail) =
        map_supported(MapType::SkStorage, "BPF_MAP_TYPE_SK_STORAGE");
    caps.push(Capability {
        name: "sk_storage maps",
        available: sk_storage,
        required: false,
        detail: sk_storage_detail,
        needed_for: "nothing yet (optional)",
        fix: "",
        min_kernel: Some(since::SK_STORAGE),
        min_kernel_for: "BPF_MAP_TYPE_SK_STORAGE",
        kernel_meets_min: None,
    });
    let (task_storage, task_storage_detail) =
        map_supported(MapType::TaskStorage, "BPF_MAP_TYPE_TASK_STORAGE");
    caps.push(Capability {
        name: "task_storage maps",
        available: task_storage,
        required: false,
        detail: task_storage_detail,
        needed_for: "nothing yet (optional)",
        fix: "",
        min_kernel: Some(since::TASK_STORAGE),
        min_kernel_for: "BPF_MAP_TYPE_TASK_STORAGE",
        kernel_meets_min: None,
    });
    caps.push(Capability {
        name: "kprobes",
        available: pmu("kprobe"),
        required: false,
        detail: if pmu("kprobe") {
            "perf PMU `kprobe` present".into()
        } else {
            "no perf PMU `kprobe` (CONFIG_KPROBES unset)".into()
        },
        needed_for: "nothing: egress-monitor never requires kprobes",
        fix: "",
        min_kernel: Some(since::PERF_PROBE_PMU),
        min_kernel_for: "the perf `kprobe` PMU",
        kernel_meets_min: None,
    });
    let (fentry, fentry_detail) = program_supported(ProgramType::Tracing);
    caps.push(Capability {
        name: "fentry/fexit",
        available: fentry,
        required: false,
        detail: fentry_detail,
        needed_for: "nothing: egress-monitor never requires fentry",
        fix: "",
        min_kernel: Some(since::FENTRY),
        min_kernel_for: "BPF trampolines, BPF_PROG_TYPE_TRACING",
        kernel_meets_min: None,
    });
    let lockdown = first_line("/sys/kernel/security/lockdown");
    let confidentiality = lockdown
        .as_deref()
        .is_some_and(|l| l.contains("[confidentiality]"));
    caps.push(Capability {
        name: "lockdown",
        available: !confidentiality,
        required: false,
        detail: match &lockdown {
            Some(mode) => format!("lockdown: {mode}"),
            None if Path::new("/sys/kernel/security/lsm").exists() => "no lockdown LSM".into(),
            None => "unknown: securityfs is not mounted at /sys/kernel/security".into(),
        },
        needed_for: "reading kernel memory (socket type); `integrity` is fine",
        fix: "lockdown=confidentiality forbids BPF kernel reads: socket type is reported as null",
        min_kernel: None,
        min_kernel_for: "none: a restriction, not a feature (the lockdown LSM exists since 5.4; \
                         older kernels have none)",
        kernel_meets_min: None,
    });
    let running = KernelVersion::running();
    caps.extend(capability_rows(eff, running));
    caps.push(memlock_row(
        running,
        get_memlock().ok(),
        has_cap(eff, CAP_SYS_RESOURCE),
    ));
    caps.into_iter().map(|c| c.against(running)).collect()
}

/// Required capabilities that are missing, for a start-up error.
pub fn missing_required(caps: &[Capability]) -> Vec<&Capability> {
    caps.iter().filter(|c| c.required && !c.available).collect()
}

pub fn kernel_release() -> String {
    first_line("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into())
}

/// A resource limit in bytes; `None` is unlimited.
pub type Limit = Option<u64>;

/// Soft and hard RLIMIT_MEMLOCK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rlimit {
    pub soft: Limit,
    pub hard: Limit,
}

impl Rlimit {
    pub const UNLIMITED: Rlimit = Rlimit {
        soft: None,
        hard: None,
    };
}

// `rlim_t` is not 64 bits everywhere.
#[allow(clippy::unnecessary_cast)]
fn limit_from_raw(v: libc::rlim_t) -> Limit {
    (v != libc::RLIM_INFINITY).then_some(v as u64)
}

#[allow(clippy::unnecessary_cast)]
fn limit_to_raw(v: Limit) -> libc::rlim_t {
    v.map_or(libc::RLIM_INFINITY, |v| v as libc::rlim_t)
}

/// `64 KiB`, `8 MiB`, `unlimited`.
fn show_limit(v: Limit) -> String {
    match v {
        None => "unlimited".into(),
        Some(v) if v >= 1 << 30 && v % (1 << 30) == 0 => format!("{} GiB", v >> 30),
        Some(v) if v >= 1 << 20 && v % (1 << 20) == 0 => format!("{} MiB", v >> 20),
        Some(v) if v >= 1 << 10 && v % (1 << 10) == 0 => format!("{} KiB", v >> 10),
        Some(v) => format!("{v} bytes"),
    }
}

fn get_memlock() -> io::Result<Rlimit> {
    let mut raw = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid pointer to an rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut raw) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Rlimit {
        soft: limit_from_raw(raw.rlim_cur),
        hard: limit_from_raw(raw.rlim_max),
    })
}

fn set_memlock(limit: Rlimit) -> io::Result<()> {
    let raw = libc::rlimit {
        rlim_cur: limit_to_raw(limit.soft),
        rlim_max: limit_to_raw(limit.hard),
    };
    // SAFETY: a valid pointer to an rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether a kernel charges BPF maps and programs to RLIMIT_MEMLOCK: before 5.11, and when the
/// version is unknown (raising the limit is harmless where it is not needed).
pub fn memlock_charged(kernel: Option<KernelVersion>) -> bool {
    kernel.is_none_or(|k| k < since::MEMCG_ACCOUNTING)
}

fn kernel_name(kernel: Option<KernelVersion>) -> String {
    kernel.map_or_else(
        || format!("{} (version unknown)", kernel_release()),
        |k| k.to_string(),
    )
}

/// The `doctor` row: what the limit is and what `run` will do about it (nothing is changed).
fn memlock_row(
    kernel: Option<KernelVersion>,
    limit: Option<Rlimit>,
    sys_resource: bool,
) -> Capability {
    let shown = limit.map_or_else(
        || "unreadable".to_string(),
        |l| format!("soft {}, hard {}", show_limit(l.soft), show_limit(l.hard)),
    );
    let (available, detail) = if !memlock_charged(kernel) {
        (
            true,
            format!(
                "kernel {} charges BPF memory to the memory cgroup; RLIMIT_MEMLOCK ({shown}) \
                 does not apply",
                kernel_name(kernel)
            ),
        )
    } else {
        let charged = format!(
            "kernel {} charges BPF maps and programs to RLIMIT_MEMLOCK ({shown})",
            kernel_name(kernel)
        );
        match limit {
            None => (false, format!("{charged}: getrlimit failed")),
            Some(l) if l.soft.is_none() => (true, charged),
            Some(l) if l.hard.is_none() || sys_resource => (
                true,
                format!("{charged}: `run` raises the soft limit to unlimited before loading"),
            ),
            Some(l) if l.soft == l.hard => (
                false,
                format!(
                    "{charged}: the limit may not be raised (no CAP_SYS_RESOURCE); loading fails \
                     with EPERM when the maps need more (the event ring buffer alone is 8 MiB)"
                ),
            ),
            Some(l) => (
                false,
                format!(
                    "{charged}: `run` can raise the soft limit only to the hard limit of {} (no \
                     CAP_SYS_RESOURCE); loading fails with EPERM when the maps need more (the \
                     event ring buffer alone is 8 MiB)",
                    show_limit(l.hard)
                ),
            ),
        }
    };
    Capability {
        name: "RLIMIT_MEMLOCK",
        available,
        required: false,
        detail,
        needed_for: "creating BPF maps and loading programs on kernels older than 5.11",
        fix: "raise the limit: `ulimit -l unlimited`, LimitMEMLOCK=infinity in a systemd unit, \
              or grant CAP_SYS_RESOURCE",
        min_kernel: Some(since::MEMCG_ACCOUNTING),
        min_kernel_for: "BPF memory charged to the memory cgroup instead of RLIMIT_MEMLOCK",
        kernel_meets_min: None,
    }
}

/// What [`raise_memlock`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemlockAction {
    /// The kernel charges BPF memory to the memory cgroup (5.11+): the limit was left alone.
    NotNeeded,
    /// The soft limit was unlimited already.
    AlreadyUnlimited,
    /// The soft limit was raised (`after` says to what: unlimited, or the hard limit where
    /// unlimited was not permitted).
    Raised,
    /// The soft limit already equals a finite hard limit that may not be raised.
    AtHardLimit,
    /// Reading or raising the limit failed.
    Failed(String),
}

/// The outcome of [`raise_memlock`], for a status line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Memlock {
    pub kernel: Option<KernelVersion>,
    pub before: Option<Rlimit>,
    pub after: Option<Rlimit>,
    pub action: MemlockAction,
}

impl Memlock {
    /// A status line saying what was done, or `None` when nothing concerned this kernel (5.11+).
    pub fn status(&self) -> Option<Status> {
        let charged = format!(
            "kernel {} charges BPF maps and programs to RLIMIT_MEMLOCK",
            kernel_name(self.kernel)
        );
        let (kind, message) = match (&self.action, self.before, self.after) {
            (MemlockAction::NotNeeded, ..) => return None,
            (MemlockAction::AlreadyUnlimited, ..) => (
                StatusKind::Capability,
                format!("{charged}; the soft limit is unlimited already"),
            ),
            (MemlockAction::Raised, Some(before), Some(after)) => (
                StatusKind::Capability,
                format!(
                    "{charged}: soft limit raised from {} to {}",
                    show_limit(before.soft),
                    show_limit(after.soft)
                ),
            ),
            (MemlockAction::AtHardLimit, Some(before), _) => (
                StatusKind::Warning,
                format!(
                    "{charged}: the soft limit is at the hard limit of {} and may not be raised \
                     (no CAP_SYS_RESOURCE); loading fails with EPERM if the maps need more",
                    show_limit(before.hard)
                ),
            ),
            (MemlockAction::Failed(err), ..) => (
                StatusKind::Warning,
                format!("{charged}: raising the limit failed ({err}); loading may fail with EPERM"),
            ),
            (action, ..) => (StatusKind::Capability, format!("{charged}: {action:?}")),
        };
        Some(Status::new(kind, Some("RLIMIT_MEMLOCK".into()), message))
    }
}

/// Before loading: on kernels that charge BPF memory to RLIMIT_MEMLOCK (before 5.11), raise the
/// soft limit to unlimited when permitted, else to the hard limit. On 5.11+ nothing is touched.
/// Call it once, before the first BPF map or program is created.
pub fn raise_memlock() -> Memlock {
    raise_memlock_with(KernelVersion::running(), get_memlock, set_memlock)
}

/// [`raise_memlock`] with the kernel version and the limit calls given (tests simulate them).
pub fn raise_memlock_with(
    kernel: Option<KernelVersion>,
    get: impl Fn() -> io::Result<Rlimit>,
    mut set: impl FnMut(Rlimit) -> io::Result<()>,
) -> Memlock {
    let done = |before, after, action| Memlock {
        kernel,
        before,
        after,
        action,
    };
    if !memlock_charged(kernel) {
        return done(None, None, MemlockAction::NotNeeded);
    }
    let before = match get() {
        Ok(limit) => limit,
        Err(err) => {
            return done(
                None,
                None,
                MemlockAction::Failed(format!("getrlimit: {err}")),
            )
        }
    };
    if before.soft.is_none() {
        return done(Some(before), Some(before), MemlockAction::AlreadyUnlimited);
    }
    // Unlimited needs CAP_SYS_RESOURCE unless the hard limit is unlimited already.
    let unlimited_err = match set(Rlimit::UNLIMITED) {
        Ok(()) => {
            return done(Some(before), Some(Rlimit::UNLIMITED), MemlockAction::Raised);
        }
        Err(err) => err,
    };
    if before.hard.is_none() || before.soft == before.hard {
        let action = if before.hard.is_none() {
            MemlockAction::Failed(format!("setrlimit: {unlimited_err}"))
        } else {
            MemlockAction::AtHardLimit
        };
        return done(Some(before), Some(before), action);
    }
    let to_hard = Rlimit {
        soft: before.hard,
        hard: before.hard,
    };
    match set(to_hard) {
        Ok(()) => done(Some(before), Some(to_hard), MemlockAction::Raised),
        Err(err) => done(
            Some(before),
            Some(before),
            MemlockAction::Failed(format!("setrlimit: {err}")),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn kernel_releases_parse() {
        let v = KernelVersion::new;
        for (release, want) in [
            ("6.18.44-fc-v669", v(6, 18, 44)),
            ("5.10.0-28-amd64", v(5, 10, 0)),
            ("4.19.0", v(4, 19, 0)),
            ("5.15.0-rc3+", v(5, 15, 0)),
            ("6.1", v(6, 1, 0)),
            ("6.8.0-1015-azure\n", v(6, 8, 0)),
            ("4.18.0-553.el8_10.x86_64", v(4, 18, 0)),
            ("5.4.0_custom", v(5, 4, 0)),
        ] {
            assert_eq!(KernelVersion::parse(release), Some(want), "{release}");
        }
        for bad in ["", "6", "6.", "v6.1", "unknown", "6.x.1", "99999999999.1"] {
            assert_eq!(KernelVersion::parse(bad), None, "{bad}");
        }
        assert!(v(5, 10, 200) < v(5, 11, 0));
        assert!(v(6, 1, 0) > v(5, 19, 9));
        assert_eq!(v(5, 8, 0).to_string(), "5.8");
        assert_eq!(v(6, 18, 44).to_string(), "6.18.44");
        assert_eq!(serde_json::to_value(v(5, 15, 0)).unwrap(), "5.15");
    }

    #[test]
    fn memlock_matters_before_5_11_only() {
        let v = |r| KernelVersion::parse(r);
        assert!(memlock_charged(v("4.19.0")));
        assert!(memlock_charged(v("5.10.0-28-amd64")));
        assert!(memlock_charged(v("5.10.250")));
        assert!(!memlock_charged(v("5.11.0")));
        assert!(!memlock_charged(v("6.18.44-fc-v669")));
        // Unknown: raising is harmless where it is not needed.
        assert!(memlock_charged(None));
    }

    /// A fake RLIMIT_MEMLOCK: `permitted` says whether raising the hard limit is allowed.
    fn fake(limit: Rlimit, permitted: bool) -> (RefCell<Rlimit>, bool) {
        (RefCell::new(limit), permitted)
    }

    fn run(kernel: &str, state: &(RefCell<Rlimit>, bool)) -> Memlock {
        let (cell, permitted) = state;
        raise_memlock_with(
            KernelVersion::parse(kernel),
            || Ok(*cell.borrow()),
            |new: Rlimit| {
                let cur = *cell.borrow();
                let raises_hard = match (cur.hard, new.hard) {
                    (None, _) => false,
                    (Some(_), None) => true,
                    (Some(c), Some(n)) => n > c,
                };
                if raises_hard && !permitted {
                    return Err(io::Error::from_raw_os_error(libc::EPERM));
                }
                *cell.borrow_mut() = new;
                Ok(())
            },
        )
    }

    fn limit(soft: Limit, hard: Limit) -> Rlimit {
        Rlimit { soft, hard }
    }

    #[test]
    fn new_kernels_leave_the_limit_alone() {
        // This machine: 8 MiB that may not be raised, and not needed.
        let state = fake(limit(Some(8 * MIB), Some(8 * MIB)), false);
        let done = run("6.18.44-fc-v669", &state);
        assert_eq!(done.action, MemlockAction::NotNeeded);
        assert_eq!(*state.0.borrow(), limit(Some(8 * MIB), Some(8 * MIB)));
        assert!(done.status().is_none());
        let done = run("5.11.0", &fake(limit(Some(64 << 10), Some(64 << 10)), true));
        assert_eq!(done.action, MemlockAction::NotNeeded);
    }

    #[test]
    fn old_kernels_raise_to_unlimited_when_permitted() {
        let state = fake(limit(Some(64 << 10), Some(64 << 10)), true);
        let done = run("5.10.0-28-amd64", &state);
        assert_eq!(done.action, MemlockAction::Raised);
        assert_eq!(*state.0.borrow(), Rlimit::UNLIMITED);
        let status = done.status().unwrap();
        assert_eq!(status.status, StatusKind::Capability);
        assert_eq!(status.component.as_deref(), Some("RLIMIT_MEMLOCK"));
        assert!(
            status.message.contains("kernel 5.10")
                && status.message.contains("from 64 KiB to unlimited"),
            "{}",
            status.message
        );

        // An unlimited hard limit needs no privilege.
        let state = fake(limit(Some(64 << 10), None), false);
        assert_eq!(run("4.19.0", &state).action, MemlockAction::Raised);
        assert_eq!(*state.0.borrow(), Rlimit::UNLIMITED);
    }

    #[test]
    fn old_kernels_raise_to_the_hard_limit_otherwise() {
        let state = fake(limit(Some(64 << 10), Some(512 * MIB)), false);
        let done = run("4.19.0", &state);
        assert_eq!(done.action, MemlockAction::Raised);
        assert_eq!(*state.0.borrow(), limit(Some(512 * MIB), Some(512 * MIB)));
        assert!(done
            .status()
            .unwrap()
            .message
            .contains("from 64 KiB to 512 MiB"));

        // Already at a hard limit that may not be raised: a warning, nothing changed.
        let state = fake(limit(Some(8 * MIB), Some(8 * MIB)), false);
        let done = run("5.4.0", &state);
        assert_eq!(done.action, MemlockAction::AtHardLimit);
        assert_eq!(*state.0.borrow(), limit(Some(8 * MIB), Some(8 * MIB)));
        let status = done.status().unwrap();
        assert_eq!(status.status, StatusKind::Warning);
        assert!(status.message.contains("8 MiB"), "{}", status.message);

        // Already unlimited: nothing to do, said once.
        let state = fake(Rlimit::UNLIMITED, false);
        let done = run("5.4.0", &state);
        assert_eq!(done.action, MemlockAction::AlreadyUnlimited);
        assert!(done.status().unwrap().message.contains("unlimited already"));
    }

    #[test]
    fn failures_are_reported_not_fatal() {
        let done = raise_memlock_with(
            KernelVersion::parse("5.4.0"),
            || Err(io::Error::from_raw_os_error(libc::ENOSYS)),
            |_| panic!("nothing to set without a reading"),
        );
        assert!(matches!(done.action, MemlockAction::Failed(_)));
        assert_eq!(done.status().unwrap().status, StatusKind::Warning);
        let done = raise_memlock_with(
            KernelVersion::parse("5.4.0"),
            || Ok(limit(Some(64 << 10), Some(MIB))),
            |_| Err(io::Error::from_raw_os_error(libc::EPERM)),
        );
        assert!(matches!(done.action, MemlockAction::Failed(_)), "{done:?}");
    }

    #[test]
    fn doctor_row_says_what_run_will_do() {
        let v = KernelVersion::parse;
        let row = memlock_row(
            v("6.18.44"),
            Some(limit(Some(8 * MIB), Some(8 * MIB))),
            false,
        );
        assert!(row.available, "{row:?}");
        assert!(row.detail.contains("memory cgroup") && row.detail.contains("soft 8 MiB"));
        assert_eq!(row.min_kernel, Some(since::MEMCG_ACCOUNTING));

        let row = memlock_row(v("5.10.0"), Some(limit(Some(64 << 10), None)), false);
        assert!(row.available && row.detail.contains("raises the soft limit to unlimited"));
        let row = memlock_row(v("5.10.0"), Some(limit(Some(64 << 10), Some(MIB))), true);
        assert!(row.available, "{row:?}");
        let row = memlock_row(v("5.10.0"), Some(limit(Some(64 << 10), Some(MIB))), false);
        assert!(!row.available && row.detail.contains("hard limit of 1 MiB"));
        let row = memlock_row(v("5.10.0"), Some(limit(Some(MIB), Some(MIB))), false);
        assert!(!row.available && row.detail.contains("may not be raised"));
        let row = memlock_row(v("5.10.0"), Some(Rlimit::UNLIMITED), false);
        assert!(row.available);
        assert!(!row.required);
    }

    #[test]
    fn rows_compare_the_running_kernel_with_their_minimum() {
        let row = |min| Capability {
            name: "x",
            available: true,
            required: false,
            detail: String::new(),
            needed_for: "",
            fix: "",
            min_kernel: min,
            min_kernel_for: "",
            kernel_meets_min: None,
        };
        let v = KernelVersion::parse;
        assert_eq!(
            row(Some(since::RINGBUF))
                .against(v("5.8.0"))
                .kernel_meets_min,
            Some(true)
        );
        assert_eq!(
            row(Some(since::RINGBUF))
                .against(v("5.7.19"))
                .kernel_meets_min,
            Some(false)
        );
        assert_eq!(
            row(Some(since::RINGBUF)).against(None).kernel_meets_min,
            None
        );
        assert_eq!(row(None).against(v("6.1")).kernel_meets_min, None);
        // The JSON keeps its fields and gains the version ones.
        let json =
            serde_json::to_value(row(Some(since::ATTACH_COOKIE)).against(v("6.18.44"))).unwrap();
        for field in [
            "name",
            "available",
            "required",
            "detail",
            "needed_for",
            "fix",
        ] {
            assert!(json.get(field).is_some(), "{field} missing: {json}");
        }
        assert_eq!(json["min_kernel"], "5.15");
        assert_eq!(json["kernel_meets_min"], true);
        assert_eq!(
            serde_json::to_value(row(None)).unwrap()["min_kernel"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn limits_read_as_sizes() {
        assert_eq!(show_limit(None), "unlimited");
        assert_eq!(show_limit(Some(64 << 10)), "64 KiB");
        assert_eq!(show_limit(Some(8 * MIB)), "8 MiB");
        assert_eq!(show_limit(Some(2 << 30)), "2 GiB");
        assert_eq!(show_limit(Some(1000)), "1000 bytes");
        assert_eq!(limit_from_raw(libc::RLIM_INFINITY), None);
        assert_eq!(limit_to_raw(None), libc::RLIM_INFINITY);
    }
}
