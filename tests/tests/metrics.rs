//! `run --metrics-addr`: a real Prometheus scrapes the agent while curl sends a bearer token
//! over plain HTTP, and what it stored is read back through its HTTP API (the finding, the
//! connect event, the targets gauge, build info, BPF program runs). The exposition passes
//! `promtool check metrics` with no lint warning and never holds the planted secret;
//! `/healthz` answers 200. Without the flag the agent listens nowhere, and an address in use
//! is a start-up error naming it.
use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use egress_monitor_tests::{monitor_bin, run_client, secret, serial, Monitor, Upstream};
use serde_json::Value;

const HTTP: u16 = 8080;

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on `addr` (one request per connection): status, head, body.
fn http_get(addr: &str, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response from {addr}{path}: {text:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, head.to_string(), body.to_string())
}

/// Percent-encoding of a query value (everything but unreserved characters).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus server on loopback with a temporary config and storage, scraping `target`
/// every second; killed and removed on drop.
struct Prometheus {
    child: Child,
    dir: PathBuf,
    addr: String,
}

impl Prometheus {
    fn start(target: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "egress-monitor-prometheus-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: egress-monitor\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting prometheus (Debian package `prometheus`; `cargo xtask setup` installs it)");
        let prometheus = Self { child, dir, addr };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = TcpStream::connect(&prometheus.addr).is_ok()
                && http_get(&prometheus.addr, "/-/ready").0 == 200;
            if ready {
                return prometheus;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready after 60 s:\n{}",
                prometheus.log()
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// `/api/v1/query`: the result vector.
    fn query(&self, query: &str) -> Vec<Value> {
        let (status, _, body) = http_get(
            &self.addr,
            &format!("/api/v1/query?query={}", encode(query)),
        );
        assert_eq!(status, 200, "{query}: {body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["status"], "success", "{query}: {body}");
        answer["data"]["result"].as_array().unwrap().clone()
    }

    /// The value of a query's first series, once there is one satisfying `accept`.
    fn wait_value(&self, query: &str, accept: impl Fn(f64) -> bool) -> (Value, f64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = Vec::new();
        while Instant::now() < deadline {
            last = self.query(query);
            for series in &last {
                let value: f64 = series["value"][1].as_str().unwrap().parse().unwrap();
                if accept(value) {
                    return (series["metric"].clone(), value);
                }
            }
            thread::sleep(Duration::from_millis(500));
        }
        panic!(
            "{query}: no acceptable value within 30 s (last answer {last:?})\n{}",
            self.log()
        );
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `kernel.bpf_stats_enabled = 1` while it lives (the old value comes back on drop, panics
/// included).
struct BpfStats(String);

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    fn on() -> Self {
        let old = std::fs::read_to_string(BPF_STATS)
            .unwrap()
            .trim()
            .to_string();
        std::fs::write(BPF_STATS, "1").unwrap();
        Self(old)
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write(BPF_STATS, &self.0);
    }
}

/// Socket inodes of `pid`'s descriptors.
fn socket_inodes(pid: u32) -> Vec<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_string_lossy();
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// The TCP ports `pid` listens on (its sockets in LISTEN state in /proc/net/tcp and tcp6).
fn listening_ports(pid: u32) -> Vec<u16> {
    let inodes = socket_inodes(pid);
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let inode: u64 = inode.parse().unwrap_or(0);
            if *state == "0A" && inodes.contains(&inode) {
                let port = local.rsplit(':').next().unwrap();
                ports.push(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports
}

#[test]
fn prometheus_scrapes_findings_events_targets_and_program_stats() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    up.tcp_server(HTTP);
    let bearer = secret("metrics-bearer");
    let _stats = BpfStats::on();
    let addr = format!("127.0.0.1:{}", free_port());
    let monitor = Monitor::start(&["--comm", "curl", "--metrics-addr", &addr]);
    assert_eq!(
        listening_ports(monitor.pid()),
        [addr.rsplit(':').next().unwrap().parse::<u16>().unwrap()],
        "the agent listens on the metrics port only"
    );
    let (status, _, body) = http_get(&addr, "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"), "ready: /healthz");
    let prometheus = Prometheus::start(&addr);
    // Its first scrape comes a few seconds after it is ready: the scenario starts after it.
    prometheus.wait_value(r#"up{job="egress-monitor"}"#, |v| v == 1.0);

    // A target that lives a few seconds (for the gauge): curl waiting for an answer that never
    // comes from a listener that never accepts. Then the finding.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let started = Instant::now();
    run_client(Command::new("curl").args([
        "-s",
        "--max-time",
        "3",
        &format!("http://{}/", silent.local_addr().unwrap()),
    ]));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "curl --max-time 3 took {:?}",
        started.elapsed()
    );
    drop(silent);
    let c = run_client(Command::new("curl").args([
        "-sS",
        "--max-time",
        "5",
        "--resolve",
        &format!("api.test:{HTTP}:{}", up.v4),
        "-H",
        &format!("Authorization: Bearer {bearer}"),
        &format!("http://api.test:{HTTP}/v1/items"),
    ]));
    assert!(c.output.status.success(), "curl failed: {:?}", c.output);
    assert!(
        monitor.wait_for(Duration::from_secs(10), |l| l["type"] == "finding"
            && l["id"] == "PLAINTEXT_CREDENTIALS"),
        "no PLAINTEXT_CREDENTIALS finding:\n{:?}",
        monitor.snapshot()
    );

    // What Prometheus stored.
    let (labels, _) = prometheus.wait_value(
        r#"egress_monitor_findings_total{id="PLAINTEXT_CREDENTIALS"}"#,
        |v| v >= 1.0,
    );
    assert_eq!(labels["severity"], "HIGH", "{labels}");
    prometheus.wait_value(r#"egress_monitor_events_total{kind="connect"}"#, |v| {
        v >= 1.0
    });
    prometheus.wait_value(r#"egress_monitor_events_total{kind="target"}"#, |v| {
        v >= 2.0
    });
    prometheus.wait_value("max_over_time(egress_monitor_targets_watched[5m])", |v| {
        v >= 1.0
    });
    let (labels, _) = prometheus.wait_value("egress_monitor_build_info", |v| v == 1.0);
    assert_eq!(labels["version"], env!("CARGO_PKG_VERSION"), "{labels}");
    prometheus.wait_value(
        r#"egress_monitor_probes_attached{kind="tracepoint"}"#,
        |v| v >= 1.0,
    );
    prometheus.wait_value(
        r#"egress_monitor_drops_total{reason="ringbuf_full",side="kernel"}"#,
        |v| v == 0.0,
    );
    prometheus.wait_value("egress_monitor_ring_buffer_size_bytes", |v| v > 0.0);
    prometheus.wait_value("egress_monitor_ring_buffer_used_bytes", |v| v >= 0.0);
    prometheus.wait_value("egress_monitor_process_resident_memory_bytes", |v| v > 1e6);
    prometheus.wait_value("egress_monitor_process_cpu_seconds_total", |v| v > 0.0);
    // BPF statistics were on: the exec tracepoint ran for each curl, and took time.
    prometheus.wait_value("egress_monitor_bpf_stats_enabled", |v| v == 1.0);
    prometheus.wait_value(
        r#"egress_monitor_bpf_program_runs_total{program="sched_process_exec"}"#,
        |v| v >= 2.0,
    );
    prometheus.wait_value(
        r#"egress_monitor_bpf_program_run_time_seconds_total{program="sched_process_exec"}"#,
        |v| v > 0.0,
    );
    prometheus.wait_value(r#"egress_monitor_ready"#, |v| v == 1.0);

    // The exposition itself: content type, no secret, promtool's lint is silent.
    let (status, head, exposition) = http_get(&addr, "/metrics");
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(
        !exposition.contains(&bearer),
        "the planted secret leaked into /metrics"
    );
    assert!(!exposition.contains("api.test") && !exposition.contains(up.v4));
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting promtool");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let lint = promtool.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
    assert!(
        lint.status.success() && said.trim().is_empty(),
        "promtool check metrics: {}\n{said}\n{exposition}",
        lint.status
    );
    assert_eq!(http_get(&addr, "/healthz").0, 200);
    assert_eq!(http_get(&addr, "/nothing").0, 404);

    drop(prometheus);
    let run = monitor.stop();
    run.assert_no_secret(&bearer);
}

#[test]
fn without_the_flag_nothing_listens() {
    let _s = serial();
    let monitor = Monitor::start(&["--comm", "curl"]);
    assert_eq!(
        listening_ports(monitor.pid()),
        Vec::<u16>::new(),
        "no --metrics-addr: no listening socket"
    );
    monitor.stop();
}

#[test]
fn an_address_in_use_stops_the_start_with_its_name() {
    let _s = serial();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(monitor_bin())
        .args(["run", "--comm", "curl", "--metrics-addr", &addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&addr) && stderr.contains("--metrics-addr"),
        "{stderr}"
    );
    // Nothing was started: no output lines at all.
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
