//! `cargo xtask bench`: what the monitor costs and how much it can take, measured on this machine
//! with the release binary against the real kernel. Not a test: numbers to read (and to quote in
//! notes), printed as a table and written to `target/bench/results.json`.
//!
//! Scenarios (connect path):
//! - `baseline`: a load generator doing UDP `connect(2)` calls as fast as it can, no monitor;
//! - `untargeted`: the same with the monitor running in `--mcp` mode (the generator is not a
//!   target): the cost of one target-set lookup per syscall;
//! - `targeted-max`: the generator is the target (`--pid`): every connect becomes an event;
//!   events delivered, kernel drops, monitor CPU;
//! - `targeted-100k`: the generator paced at 100,000 connects per second (the budget: no drops).
use std::{
    io::{BufRead, BufReader, Write},
    net::UdpSocket,
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use egress_monitor_tests::Upstream;
use serde_json::{json, Value};

/// The load generator (`cargo xtask bench-load`): waits for a line on stdin, then does `count`
/// UDP connects to `target`, paced at `rate` per second when given, and prints
/// `<count> <seconds>`.
pub fn load(target: &str, count: u64, rate: Option<u64>) -> anyhow::Result<()> {
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let start = Instant::now();
    const BATCH: u64 = 1000;
    let mut done = 0;
    while done < count {
        for _ in 0..BATCH.min(count - done) {
            socket.connect(target)?;
            done += 1;
        }
        if let Some(rate) = rate {
            let due = Duration::from_secs_f64(done as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                thread::sleep(wait);
            }
        }
    }
    println!("{done} {}", start.elapsed().as_secs_f64());
    Ok(())
}

struct Generator {
    child: Child,
}

impl Generator {
    fn spawn(xtask: &Path, target: &str, count: u64, rate: Option<u64>) -> anyhow::Result<Self> {
        let mut cmd = Command::new(xtask);
        cmd.args(["bench-load", target, &count.to_string()]);
        if let Some(rate) = rate {
            cmd.args(["--rate", &rate.to_string()]);
        }
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the load generator")?;
        Ok(Self { child })
    }

    /// Start the load and wait for it: (connects, seconds).
    fn go(mut self) -> anyhow::Result<(u64, f64)> {
        writeln!(self.child.stdin.take().unwrap(), "go")?;
        let out = self.child.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut parts = text.split_whitespace();
        let n = parts
            .next()
            .context("load generator printed nothing")?
            .parse()?;
        let secs = parts.next().context("no duration")?.parse()?;
        Ok((n, secs))
    }
}

/// A monitor whose stdout is counted, not stored.
struct Monitor {
    child: Child,
    reader: thread::JoinHandle<(u64, Option<Value>)>,
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 (11 and 12 after the state field).
    fields
        .get(11)
        .and_then(|u| u.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
}

impl Monitor {
    fn start(bin: &Path, args: &[String], count_pid: Option<u32>) -> anyhow::Result<Self> {
        let mut child = Command::new(bin)
            .arg("run")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting egress-monitor")?;
        let stdout = child.stdout.take().unwrap();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let needle = count_pid.map(|p| format!("\"event\":\"connect\",\"process\":{{\"pid\":{p},"));
        let reader = thread::spawn(move || {
            let mut connects = 0;
            let mut shutdown = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if needle.as_deref().is_some_and(|n| line.contains(n)) {
                    connects += 1;
                } else if line.contains("\"status\":\"ready\"") {
                    let _ = ready_tx.send(());
                } else if line.contains("\"status\":\"shutdown\"") {
                    shutdown = serde_json::from_str(&line).ok();
                }
            }
            (connects, shutdown)
        });
        ready_rx
            .recv_timeout(Duration::from_secs(30))
            .context("egress-monitor did not become ready")?;
        Ok(Self { child, reader })
    }

    fn stop(mut self) -> anyhow::Result<(u64, Value)> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait()?;
        let (connects, shutdown) = self.reader.join().expect("reader thread");
        Ok((connects, shutdown.context("no shutdown line")?))
    }
}

fn ticks_per_second() -> f64 {
    // SAFETY: no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

pub fn run(root: &Path, bin: &Path, xtask: &Path) -> anyhow::Result<()> {
    // The same lock as the end-to-end tests: they use the same addresses.
    let _serial = egress_monitor_tests::serial();
    let upstream = Upstream::create()?;
    let target = format!("{}:9", upstream.v4);
    const COUNT: u64 = 1_000_000;
    let mut results = Vec::new();
    let mut table = Vec::new();

    let (n, secs) = Generator::spawn(xtask, &target, COUNT, None)?.go()?;
    let baseline_ns = secs * 1e9 / n as f64;
    table.push(format!(
        "baseline        {:>9.0} connects/s  {:>7.0} ns/connect",
        n as f64 / secs,
        baseline_ns
    ));
    results.push(json!({"scenario": "baseline", "connects": n, "seconds": secs, "ns_per_connect": baseline_ns}));

    let generator = Generator::spawn(xtask, &target, COUNT, None)?;
    let monitor = Monitor::start(bin, &["--mcp".into()], None)?;
    let (n, secs) = generator.go()?;
    monitor.stop()?;
    let ns = secs * 1e9 / n as f64;
    table.push(format!(
        "untargeted      {:>9.0} connects/s  {:>7.0} ns/connect  (+{:.0} ns with the monitor loaded)",
        n as f64 / secs,
        ns,
        ns - baseline_ns
    ));
    results.push(json!({"scenario": "untargeted", "connects": n, "seconds": secs, "ns_per_connect": ns, "overhead_ns": ns - baseline_ns}));

    for (name, rate) in [("targeted-max", None), ("targeted-100k", Some(100_000))] {
        let generator = Generator::spawn(xtask, &target, COUNT, rate)?;
        let gen_pid = generator.child.id();
        let monitor = Monitor::start(bin, &["--pid".into(), gen_pid.to_string()], Some(gen_pid))?;
        let monitor_pid = monitor.child.id();
        let cpu_before = cpu_ticks(monitor_pid);
        let (n, secs) = generator.go()?;
        let cpu_after = cpu_ticks(monitor_pid);
        let (events, shutdown) = monitor.stop()?;
        let drops: u64 = shutdown["totals"]["drops"]
            .as_object()
            .map(|d| d.values().filter_map(Value::as_u64).sum())
            .unwrap_or(0);
        let ns = secs * 1e9 / n as f64;
        let cpu = (cpu_after - cpu_before) as f64 / ticks_per_second() / secs * 100.0;
        table.push(format!(
            "{name:<15} {:>9.0} connects/s  {:>7.0} ns/connect  events {events}/{n}  drops {drops}  monitor CPU {cpu:.0}% of one core",
            n as f64 / secs, ns
        ));
        results.push(json!({
            "scenario": name, "connects": n, "seconds": secs, "ns_per_connect": ns,
            "events": events, "drops": drops, "monitor_cpu_percent": cpu,
        }));
        if rate.is_some() && (drops > 0 || events < n) {
            table.push(format!(
                "  BUDGET MISSED: {name} lost {} events",
                n - events.min(n)
            ));
        }
    }
    drop(upstream);

    println!(
        "egress-monitor bench (release build, {} connects per scenario)",
        COUNT
    );
    for line in &table {
        println!("  {line}");
    }
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("results.json");
    std::fs::write(
        &file,
        serde_json::to_string_pretty(&json!({"connect": results}))?,
    )?;
    println!("written to {}", file.display());
    if table.iter().any(|l| l.contains("BUDGET MISSED")) {
        bail!("the 100k connects/s budget was missed");
    }
    Ok(())
}
