//! `egress-monitor doctor` must tell the truth about this machine. Its answers are checked
//! against independent evidence from the kernel's own files, not against themselves.
use std::{path::Path, process::Command};

use serde_json::Value;

fn doctor() -> Value {
    let bin = std::env::var("EGRESS_MONITOR_BIN")
        .expect("EGRESS_MONITOR_BIN (set by `cargo xtask test`)");
    let out = Command::new(bin)
        .args(["doctor", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "doctor says this machine is not ready: {out:?}"
    );
    let doc = serde_json::from_slice(&out.stdout).unwrap();
    egress_monitor_tests::schema::check_doctor(&doc);
    doc
}

fn capability<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("doctor does not report {name}: {doc}"))
}

#[test]
fn doctor_matches_the_kernel() {
    let _s = egress_monitor_tests::serial();
    let doc = doctor();
    assert_eq!(doc["ready"], true);
    assert_eq!(
        doc["kernel"],
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap()
            .trim()
    );
    // kprobe_events exists in tracefs only on kernels built with kprobe events.
    let tracefs = Path::new("/sys/kernel/tracing");
    assert!(
        tracefs.join("events").is_dir(),
        "tracefs is mounted by the harness/monitor"
    );
    let kprobes = capability(&doc, "kprobes");
    assert_eq!(
        kprobes["available"],
        tracefs.join("kprobe_events").exists(),
        "{kprobes}"
    );
    assert_eq!(kprobes["required"], false);
    let uprobes = capability(&doc, "uprobes");
    assert_eq!(
        uprobes["available"],
        tracefs.join("uprobe_events").exists(),
        "{uprobes}"
    );
    let btf = capability(&doc, "BTF");
    assert_eq!(
        btf["available"],
        Path::new("/sys/kernel/btf/vmlinux").exists(),
        "{btf}"
    );
    // fentry needs BTF-typed tracing programs; where they are refused, doctor must say so and
    // never call them required.
    let fentry = capability(&doc, "fentry/fexit");
    assert_eq!(fentry["required"], false);
    if fentry["available"] == false {
        assert!(!fentry["detail"].as_str().unwrap().is_empty());
    }
    for required in ["privileges", "tracefs", "data path", "ring buffer"] {
        let c = capability(&doc, required);
        assert_eq!(c["required"], true, "{c}");
        assert_eq!(c["available"], true, "{c}");
    }
    // The data path is named: the cgroup hooks wherever a cgroup v2 hierarchy is mounted (this
    // kernel has the program types), the syscall tracepoints only as a fallback.
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let cgroup2 = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(2) == Some("cgroup2"))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("this machine mounts a cgroup v2 hierarchy");
    let path = capability(&doc, "data path");
    assert_eq!(
        path["detail"].as_str().unwrap(),
        format!("cgroup hooks on {cgroup2}: untargeted processes pay nothing for their syscalls"),
        "{path}"
    );
    let syscalls = capability(&doc, "syscall tracepoints");
    assert_eq!(syscalls["required"], false, "{syscalls}");
    assert!(
        syscalls["needed_for"]
            .as_str()
            .unwrap()
            .contains("fallback"),
        "{syscalls}"
    );
}

#[test]
fn doctor_text_names_every_capability_and_how_to_fix_what_is_missing() {
    let _s = egress_monitor_tests::serial();
    let doc = doctor();
    let bin = std::env::var("EGRESS_MONITOR_BIN").unwrap();
    let out = Command::new(bin).arg("doctor").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for c in doc["capabilities"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        assert!(text.contains(name), "{name} missing from:\n{text}");
        let fix = c["fix"].as_str().unwrap();
        if c["available"] == false && !fix.is_empty() {
            assert!(text.contains(fix), "fix for {name} missing from:\n{text}");
        }
    }
    assert!(text.contains("ready:"), "{text}");
}

/// `major.minor` of a release such as `6.18.44-fc-v669`, read independently of the monitor.
fn major_minor(release: &str) -> (u32, u32) {
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let major = parts.next().unwrap().parse().unwrap();
    let minor = parts.next().unwrap().parse().unwrap();
    (major, minor)
}

/// The first mainline kernel of a few capabilities, in both outputs, compared with this kernel.
#[test]
fn doctor_states_the_minimum_kernel_of_each_capability() {
    let _s = egress_monitor_tests::serial();
    let doc = doctor();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let running = major_minor(&release);
    let expected = [
        ("ring buffer", "5.8"),
        ("BTF", "5.4"),
        ("uprobes", "4.17"),
        ("uprobe attach cookie", "5.15"),
        ("bpf_probe_read_user", "5.5"),
        ("tracefs", "4.1"),
        ("RLIMIT_MEMLOCK", "5.11"),
    ];
    for (name, min) in expected {
        let c = capability(&doc, name);
        assert_eq!(c["min_kernel"], min, "{c}");
        assert!(!c["min_kernel_for"].as_str().unwrap().is_empty(), "{c}");
        assert_eq!(c["kernel_meets_min"], running >= major_minor(min), "{c}");
        // The fields that were there before stay.
        for field in ["available", "required", "detail", "needed_for", "fix"] {
            assert!(c.get(field).is_some(), "{field} missing: {c}");
        }
    }
    // Every row has the field, null only with a reason.
    for c in doc["capabilities"].as_array().unwrap() {
        assert!(c.get("min_kernel").is_some(), "{c}");
        if c["min_kernel"].is_null() {
            assert!(!c["min_kernel_for"].as_str().unwrap().is_empty(), "{c}");
        }
    }
    // BPF memory is charged to the memory cgroup from 5.11 on: RLIMIT_MEMLOCK does not matter.
    let memlock = capability(&doc, "RLIMIT_MEMLOCK");
    if running >= (5, 11) {
        assert_eq!(memlock["available"], true, "{memlock}");
        assert!(
            memlock["detail"]
                .as_str()
                .unwrap()
                .contains("memory cgroup"),
            "{memlock}"
        );
    }
    let version = doc["kernel_version"].as_str().unwrap();
    assert_eq!(major_minor(version), running, "{doc}");

    // The text view says the same under each capability.
    let bin = std::env::var("EGRESS_MONITOR_BIN").unwrap();
    let out = Command::new(bin).arg("doctor").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for (name, min) in expected {
        let start = text
            .lines()
            .position(|l| {
                l.starts_with("  [") && l[8..].trim_start().starts_with(&format!("{name}  "))
            })
            .unwrap_or_else(|| panic!("no row for {name} in:\n{text}"));
        let block: Vec<&str> = text
            .lines()
            .skip(start + 1)
            .take_while(|l| !l.starts_with("  ["))
            .collect();
        let line = block
            .iter()
            .find(|l| l.trim_start().starts_with("min kernel:"))
            .unwrap_or_else(|| panic!("no min kernel line for {name} in:\n{text}"));
        assert!(
            line.contains(&format!("min kernel: {min} (")),
            "{name}: {line}"
        );
        let this = format!("this kernel {}.{}", running.0, running.1);
        assert!(line.contains(&this), "{name}: {line}");
    }
}
