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
//!
//! TLS path: a Node HTTPS client looping keep-alive requests against nginx in the upstream
//! namespace, without the monitor and with the monitor targeting it: the per-request cost of
//! the OpenSSL uprobes once the session's verdict is known.
//!
//! Bounds: the agent's resident memory idle and under the 100k/s load; 10,000 short-lived
//! targeted processes (every 10th over TLS) with every table compared before and after; and
//! the flood (`targeted-max`): every event delivered or counted.
use std::{
    io::{BufRead, BufReader, Write},
    net::UdpSocket,
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use egress_monitor_tests::{pki::Pki, Upstream};
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

/// A monitor whose stdout is counted, not stored (`stats` lines are kept).
struct Monitor {
    child: Child,
    reader: thread::JoinHandle<(u64, Option<Value>)>,
    stats: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
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
        let stats = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = stats.clone();
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
                } else if line.contains("\"status\":\"stats\"") {
                    if let Ok(v) = serde_json::from_str(&line) {
                        kept.lock().unwrap().push(v);
                    }
                }
            }
            (connects, shutdown)
        });
        ready_rx
            .recv_timeout(Duration::from_secs(30))
            .context("egress-monitor did not become ready")?;
        Ok(Self {
            child,
            reader,
            stats,
        })
    }

    /// A `stats` line, on request (SIGUSR1).
    fn stats(&self) -> anyhow::Result<Value> {
        let before = self.stats.lock().unwrap().len();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGUSR1) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(v) = self.stats.lock().unwrap().get(before) {
                return Ok(v.clone());
            }
            if Instant::now() > deadline {
                bail!("no stats line within 30 s of SIGUSR1");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(mut self) -> anyhow::Result<(u64, Value)> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait()?;
        // Measurements without the monitor must not overlap its uprobes' background teardown.
        egress_monitor_tests::wait_for_uprobe_teardown();
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
    thread::sleep(Duration::from_secs(2));
    let idle_rss = rss(&monitor.stats()?);
    monitor.stop()?;
    let ns = secs * 1e9 / n as f64;
    table.push(format!(
        "untargeted      {:>9.0} connects/s  {:>7.0} ns/connect  (+{:.0} ns with the monitor loaded)",
        n as f64 / secs,
        ns,
        ns - baseline_ns
    ));
    results.push(json!({"scenario": "untargeted", "connects": n, "seconds": secs, "ns_per_connect": ns, "overhead_ns": ns - baseline_ns}));
    let mut memory = json!({"idle_rss_bytes": idle_rss});

    for (name, rate) in [("targeted-max", None), ("targeted-100k", Some(100_000))] {
        let generator = Generator::spawn(xtask, &target, COUNT, rate)?;
        let gen_pid = generator.child.id();
        let monitor = Monitor::start(bin, &["--pid".into(), gen_pid.to_string()], Some(gen_pid))?;
        let monitor_pid = monitor.child.id();
        let cpu_before = cpu_ticks(monitor_pid);
        let (n, secs) = generator.go()?;
        let cpu_after = cpu_ticks(monitor_pid);
        let loaded_rss = rss(&monitor.stats()?);
        let (events, shutdown) = monitor.stop()?;
        if rate.is_some() {
            memory["rss_bytes_after_100k_per_second"] = json!(loaded_rss);
        }
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
        if events + drops != n {
            table.push(format!(
                "  COUNT MISMATCH: {name}: {events} delivered + {drops} dropped != {n} generated"
            ));
        }
        if rate.is_some() && (drops > 0 || events < n) {
            table.push(format!(
                "  BUDGET MISSED: {name} lost {} events",
                n - events.min(n)
            ));
        }
    }
    table.push(format!(
        "memory          {:.1} MiB resident idle (--mcp), {:.1} MiB after 1,000,000 targeted connects at 100k/s (goal <= 40 MiB)",
        mib(memory["idle_rss_bytes"].as_u64().unwrap_or(0)),
        mib(memory["rss_bytes_after_100k_per_second"].as_u64().unwrap_or(0)),
    ));
    let churn = churn(root, bin, &upstream, &mut table)?;
    let tls = tls_keepalive(root, bin, &upstream, &mut table)?;
    let http = http_load(bin, &upstream, &mut table)?;
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
        serde_json::to_string_pretty(&json!({
            "connect": results, "memory": memory, "churn": churn, "tls": tls, "http": http,
        }))?,
    )?;
    println!("written to {}", file.display());
    if table.iter().any(|l| l.contains("BUDGET MISSED")) {
        bail!("the 100k connects/s budget was missed");
    }
    if table
        .iter()
        .any(|l| l.contains("COUNT MISMATCH") || l.contains("GREW"))
    {
        bail!("events were lost uncounted, or a table grew with process churn");
    }
    Ok(())
}

fn rss(stats: &Value) -> u64 {
    stats["totals"]["rss_bytes"].as_u64().unwrap_or(0)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// 10,000 short-lived targeted processes (every 10th over TLS), after a warm-up of 300:
/// resident memory and every table before and after.
fn churn(
    root: &Path,
    bin: &Path,
    upstream: &Upstream,
    table: &mut Vec<String>,
) -> anyhow::Result<Value> {
    const HTTP: u16 = 18080;
    const HTTPS: u16 = 18443;
    const N: u32 = 10_000;
    upstream.tcp_server(HTTP);
    let pki = Pki::create();
    upstream.https_server(&pki.server(), HTTPS);
    let monitor = Monitor::start(bin, &["--comm".into(), "python3".into()], None)?;
    let mut churn = Command::new("python3")
        .arg(root.join("tests/clients/python/churn.py"))
        .args([upstream.v4, &HTTP.to_string(), &HTTPS.to_string()])
        .arg(pki.ca())
        .arg("10")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting churn.py")?;
    let mut stdin = churn.stdin.take().unwrap();
    let mut stdout = BufReader::new(churn.stdout.take().unwrap());
    let mut round = |n: u32| -> anyhow::Result<f64> {
        let start = Instant::now();
        writeln!(stdin, "{n}")?;
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        if !line.starts_with(&format!("done {n} failed 0")) {
            bail!("churn round of {n}: {line}");
        }
        Ok(start.elapsed().as_secs_f64())
    };
    round(300)?;
    thread::sleep(Duration::from_secs(3));
    let before = monitor.stats()?;
    let secs = round(N)?;
    thread::sleep(Duration::from_secs(3));
    let after = monitor.stats()?;
    drop(stdin);
    let _ = churn.wait();
    monitor.stop()?;
    let tables_before = &before["totals"]["tables"];
    let tables_after = &after["totals"]["tables"];
    let grown: Vec<String> = tables_before
        .as_object()
        .map(|t| {
            t.iter()
                .filter(|(k, v)| tables_after.get(k.as_str()) != Some(*v))
                .map(|(k, v)| format!("{k} {v} -> {}", tables_after[k.as_str()]))
                .collect()
        })
        .unwrap_or_default();
    let (rss0, rss1) = (rss(&before), rss(&after));
    table.push(format!(
        "churn           {N} processes in {secs:.1} s: resident {:.1} -> {:.1} MiB ({:+.1}%), tables {}",
        mib(rss0),
        mib(rss1),
        (rss1 as f64 / rss0.max(1) as f64 - 1.0) * 100.0,
        if grown.is_empty() {
            "back to baseline".to_string()
        } else {
            format!("GREW: {}", grown.join(", "))
        }
    ));
    Ok(json!({
        "processes": N, "seconds": secs, "rss_before": rss0, "rss_after": rss1,
        "tables_before": tables_before, "tables_after": tables_after,
    }))
}

/// Plain HTTP port of the benchmark nginx.
const HTTP_PORT: u16 = 8080;

/// nginx with a test certificate in the upstream namespace: HTTPS on `port`, HTTP on
/// `HTTP_PORT`.
struct Nginx {
    child: Child,
    _pki: Pki,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx(upstream: &Upstream, port: u16) -> anyhow::Result<Nginx> {
    let pki = Pki::create();
    let pair = pki.server();
    let conf = pki.dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{ access_log off; keepalive_requests 1000000; \
             client_body_temp_path {dir}; proxy_temp_path {dir}; fastcgi_temp_path {dir}; \
             uwsgi_temp_path {dir}; scgi_temp_path {dir};\n\
             server {{ listen {ip}:{port} ssl; ssl_certificate {cert}; ssl_certificate_key {key};\n\
             location / {{ return 200 \"ok\\n\"; }} }}\n\
             server {{ listen {ip}:{http}; location / {{ return 200 \"ok\\n\"; }} }} }}\n",
            dir = pki.dir.display(),
            ip = upstream.v4,
            http = HTTP_PORT,
            cert = pair.cert.display(),
            key = pair.key.display(),
        ),
    )?;
    let child = upstream
        .command("nginx")
        .args(["-c", conf.to_str().unwrap(), "-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting nginx (Debian package nginx)")?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect((upstream.v4, port)).is_err() {
        if std::time::Instant::now() > deadline {
            bail!("nginx did not start listening on {}:{port}", upstream.v4);
        }
        thread::sleep(Duration::from_millis(50));
    }
    Ok(Nginx { child, _pki: pki })
}

/// Node HTTPS keep-alive requests with and without the monitor targeting the client.
fn tls_keepalive(
    root: &Path,
    bin: &Path,
    upstream: &Upstream,
    table: &mut Vec<String>,
) -> anyhow::Result<Value> {
    const PORT: u16 = 9443;
    const REQUESTS: u64 = 20_000;
    let server = nginx(upstream, PORT)?;
    let script = root.join("tests/clients/node/https-keepalive-loop.mjs");
    let ca = server._pki.ca();
    let spawn = || -> anyhow::Result<Child> {
        Command::new("node")
            .arg(&script)
            .args([upstream.v4, &PORT.to_string(), "api.test"])
            .arg(&ca)
            .arg(REQUESTS.to_string())
            .current_dir(root.join("tests/clients/node"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the Node HTTPS client")
    };
    let go = |mut child: Child| -> anyhow::Result<f64> {
        writeln!(child.stdin.take().unwrap(), "go")?;
        let out = child.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let secs: f64 = text
            .split_whitespace()
            .nth(1)
            .context("the Node client printed no timing")?
            .parse()?;
        Ok(secs * 1e6 / REQUESTS as f64)
    };
    let mut rows = Vec::new();
    for round in 0..2 {
        let without = go(spawn()?)?;
        let client = spawn()?;
        let monitor = Monitor::start(bin, &["--pid".into(), client.id().to_string()], None)?;
        let with = go(client)?;
        monitor.stop()?;
        table.push(format!(
            "tls-keepalive   run {}: {without:>7.1} us/request without the monitor, {with:>7.1} with it (+{:.1} us, node https, {REQUESTS} requests)",
            round + 1,
            with - without
        ));
        rows.push(json!({"us_per_request_without": without, "us_per_request_with": with, "requests": REQUESTS}));
    }
    drop(server);
    Ok(Value::Array(rows))
}

/// wrk against nginx over plain HTTP (keep-alive), without the monitor and with it targeting
/// wrk: payload capture costs a copy of the first bytes of each connection, then one lookup
/// per write.
fn http_load(bin: &Path, upstream: &Upstream, table: &mut Vec<String>) -> anyhow::Result<Value> {
    let server = nginx(upstream, 9443)?;
    let url = format!("http://{}:{HTTP_PORT}/", upstream.v4);
    let wrk = || -> anyhow::Result<f64> {
        let out = Command::new("wrk")
            .args(["-t1", "-c16", "-d5s", &url])
            .output()
            .context("running wrk (Debian package wrk)")?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| l.strip_prefix("Requests/sec:"))
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("wrk printed no rate:\n{text}"))
    };
    let mut rows = Vec::new();
    for round in 0..2 {
        let without = wrk()?;
        let monitor = Monitor::start(bin, &["--comm".into(), "wrk".into()], None)?;
        let with = wrk()?;
        monitor.stop()?;
        table.push(format!(
            "http-wrk        run {}: {without:>9.0} requests/s without the monitor, {with:>9.0} with it ({:+.1}%, nginx, 16 connections)",
            round + 1,
            (with - without) / without * 100.0
        ));
        rows.push(
            json!({"requests_per_second_without": without, "requests_per_second_with": with}),
        );
    }
    drop(server);
    Ok(Value::Array(rows))
}
