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
    serde_json::from_slice(&out.stdout).unwrap()
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
    for required in [
        "privileges",
        "tracefs",
        "syscall tracepoints",
        "ring buffer",
    ] {
        let c = capability(&doc, required);
        assert_eq!(c["required"], true, "{c}");
        assert_eq!(c["available"], true, "{c}");
    }
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
