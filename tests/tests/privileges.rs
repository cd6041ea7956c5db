//! Least privilege: the agent run by `setpriv` with exactly the documented capability set (uid 0
//! kept, every other capability gone from its bounding set, so not "full root") still reports
//! connects, TLS verification bypasses and plaintext credentials, and their secure twins stay
//! clean; `doctor` names each missing capability and what it breaks.
use std::process::Command;

use egress_monitor_tests::{
    monitor_bin, ok, pki::Pki, run_client, serial, Monitor, Options, Upstream,
};
use serde_json::Value;

const HTTP: u16 = 8080;
const SELF_SIGNED: u16 = 8443;
const CA_SIGNED: u16 = 9443;

/// The README's least-privilege set (`monitor/src/probes/caps.rs` `LINUX_CAPS`), as setpriv
/// names them, with their bit numbers (capabilities(7)).
const SET: &[(&str, u32)] = &[
    ("bpf", 39),
    ("perfmon", 38),
    ("net_admin", 12),
    ("sys_admin", 21),
    ("sys_ptrace", 19),
    ("dac_read_search", 2),
    ("sys_resource", 24),
];

/// The capabilities of `SET` this test process may pass on: a sandbox may lack some in its own
/// bounding set (these machines have no CAP_SYS_RESOURCE, which kernels >= 5.11 do not need).
fn grantable() -> Vec<(&'static str, u32)> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap()
        .trim();
    let bounding = u64::from_str_radix(hex, 16).unwrap();
    SET.iter()
        .copied()
        .filter(|(_, bit)| bounding & (1 << bit) != 0)
        .collect()
}

/// `setpriv` keeping only `caps`: for uid 0 the permitted and effective sets after exec are the
/// bounding set.
fn setpriv(caps: &[&str]) -> Vec<String> {
    let list = std::iter::once("-all".to_string())
        .chain(caps.iter().map(|c| format!("+{c}")))
        .collect::<Vec<_>>()
        .join(",");
    vec![
        "setpriv".into(),
        format!("--bounding-set={list}"),
        format!("--inh-caps={list}"),
        "--".into(),
    ]
}

fn effective_caps(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    u64::from_str_radix(hex, 16).unwrap()
}

fn ids(lines: &[Value], pid: u32) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l["type"] == "finding" && l["process"]["pid"] == pid)
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn findings_work_with_only_the_documented_capabilities() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    let pki = Pki::create();
    up.tcp_server(HTTP);
    up.https_server(&pki.self_signed(), SELF_SIGNED);
    up.https_server(&pki.server(), CA_SIGNED);
    let set = grantable();
    let names: Vec<&str> = set.iter().map(|(n, _)| *n).collect();
    let config = pki.config();
    let monitor = Monitor::start_opts(
        &["--config", config.to_str().unwrap(), "--comm", "curl"],
        Options {
            wrapper: setpriv(&names),
            ..Options::default()
        },
    );
    let expected: u64 = set.iter().map(|(_, bit)| 1u64 << bit).sum();
    assert_eq!(
        effective_caps(monitor.pid()),
        expected,
        "the agent runs with exactly the documented set"
    );

    let secret = format!("lp-{:x}Zq", std::process::id() * 7919);
    let resolve = |port: u16| format!("api.test:{port}:{}", up.v4);
    let plain = run_client(
        Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "--max-time", "5"])
            .args(["-H", &format!("Authorization: Bearer {secret}")])
            .arg(format!("http://{}:{HTTP}/v1/tools", up.v4)),
    );
    ok(&plain, "curl over plain HTTP");
    let insecure = run_client(
        Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "--max-time", "5", "-k"])
            .args(["--resolve", &resolve(SELF_SIGNED)])
            .arg(format!("https://api.test:{SELF_SIGNED}/")),
    );
    ok(&insecure, "curl -k");
    // The secure twins: the same request over verified TLS, with the same bearer.
    let ca = pki.ca();
    let verified = run_client(
        Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "--max-time", "5"])
            .args(["--cacert", ca.to_str().unwrap()])
            .args(["-H", &format!("Authorization: Bearer {secret}")])
            .args(["--resolve", &resolve(CA_SIGNED)])
            .arg(format!("https://api.test:{CA_SIGNED}/v1/tools")),
    );
    ok(&verified, "curl --cacert");
    let run = monitor.stop();

    assert!(
        !run.connects_from(plain.pid).is_empty(),
        "no connect event:\n{}",
        run.dump()
    );
    assert_eq!(ids(&run.lines, plain.pid), ["PLAINTEXT_CREDENTIALS"]);
    let tls = ids(&run.lines, insecure.pid);
    assert!(
        tls.iter().any(|id| id == "TLS_VERIFY_DISABLED"),
        "curl -k: {tls:?}\n{}",
        run.dump()
    );
    assert!(
        ids(&run.lines, verified.pid).is_empty(),
        "verified TLS is clean:\n{}",
        run.dump()
    );
    assert!(
        !run.handshakes_of(verified.pid).is_empty(),
        "the verified handshake is seen (the OpenSSL hooks are attached)"
    );
    // Nothing was skipped for want of a privilege: every probe attached, the cgroup data path.
    let mut statuses = run.status("skipped");
    statuses.extend(run.status("capability"));
    let skipped: Vec<&Value> = statuses
        .into_iter()
        .filter(|s| {
            let m = s["message"].as_str().unwrap_or("");
            m.contains("ermission") || m.contains("not permitted") || m.contains("missing")
        })
        .collect();
    assert!(skipped.is_empty(), "skipped for privileges: {skipped:#?}");
    assert!(
        run.lines.iter().any(|l| l["component"] == "data path"
            && l["message"].as_str().unwrap_or("").contains("cgroup hooks")),
        "the cgroup data path is in use"
    );
    run.assert_no_secret(&secret);
}

#[test]
fn doctor_names_each_missing_capability_and_what_it_breaks() {
    let _s = serial();
    let doctor = |caps: &[&str]| -> Value {
        let out = Command::new("setpriv")
            .args(&setpriv(caps)[1..])
            .arg(monitor_bin())
            .args(["doctor", "--format", "json"])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("doctor JSON ({e}): {:?}", out))
    };
    let row = |doc: &Value, name: &str| -> Value {
        doc["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name} row: {doc}"))
            .clone()
    };
    let set = grantable();
    let all: Vec<&str> = set.iter().map(|(n, _)| *n).collect();
    let full = doctor(&all);
    for (name, _) in SET {
        let r = row(&full, &format!("CAP_{}", name.to_uppercase()));
        assert_eq!(r["available"], true, "{r}");
    }
    // Without the two that only some features need: the agent still starts (ready), and the
    // rows say what is lost.
    let reduced: Vec<&str> = all
        .iter()
        .copied()
        .filter(|c| *c != "sys_admin" && *c != "net_admin")
        .collect();
    let doc = doctor(&reduced);
    assert_eq!(doc["ready"], true, "{doc}");
    let admin = row(&doc, "CAP_SYS_ADMIN");
    assert_eq!(admin["available"], false);
    assert!(
        admin["needed_for"]
            .as_str()
            .unwrap()
            .contains("TLS findings"),
        "{admin}"
    );
    let net = row(&doc, "CAP_NET_ADMIN");
    assert_eq!(net["available"], false);
    assert!(
        net["needed_for"]
            .as_str()
            .unwrap()
            .contains("falls back to syscall tracepoints"),
        "{net}"
    );
    // Without CAP_BPF and CAP_SYS_ADMIN nothing can load: not ready, and the row says why.
    let none: Vec<&str> = all
        .iter()
        .copied()
        .filter(|c| *c != "bpf" && *c != "sys_admin")
        .collect();
    let doc = doctor(&none);
    assert_eq!(doc["ready"], false, "{doc}");
    assert_eq!(row(&doc, "CAP_BPF")["available"], false);
}
