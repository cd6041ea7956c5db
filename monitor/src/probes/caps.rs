//! What this kernel and machine can do, checked once and shared by `doctor` (which prints it) and
//! `run` (which decides what to load from it). One table instead of `if` chains in the loader.
use std::path::Path;

use aya::{
    maps::MapType,
    programs::ProgramType,
    sys::{is_map_supported, is_program_supported},
};
use serde::Serialize;

use super::{btf, tracefs};

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
}

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

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
        fix: "run as root, or grant CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH \
              (CAP_SYS_ADMIN on kernels older than 5.8)",
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
        required: true,
        detail: if mounted.is_none() {
            "unknown until tracefs is mounted".into()
        } else if syscalls {
            "syscalls:sys_enter_connect / sys_exit_connect present".into()
        } else {
            "syscalls:sys_enter_connect missing (kernel built without CONFIG_FTRACE_SYSCALLS)"
                .into()
        },
        needed_for: "connect tracing (the core of every mode)",
        fix: "use a kernel with CONFIG_FTRACE_SYSCALLS=y (all major distributions)",
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
    });
    let (cgroup_sock, cgroup_detail) = program_supported(ProgramType::CgroupSockAddr);
    caps.push(Capability {
        name: "cgroup sock_addr programs",
        available: cgroup_sock,
        required: false,
        detail: cgroup_detail,
        needed_for: "nothing yet (optional)",
        fix: "",
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
    });
    let (fentry, fentry_detail) = program_supported(ProgramType::Tracing);
    caps.push(Capability {
        name: "fentry/fexit",
        available: fentry,
        required: false,
        detail: fentry_detail,
        needed_for: "nothing: egress-monitor never requires fentry",
        fix: "",
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
    });
    caps
}

/// Required capabilities that are missing, for a start-up error.
pub fn missing_required(caps: &[Capability]) -> Vec<&Capability> {
    caps.iter().filter(|c| c.required && !c.available).collect()
}

pub fn kernel_release() -> String {
    first_line("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into())
}
