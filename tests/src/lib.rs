//! Harness for egress-monitor's end-to-end tests: the real monitor binary, the real kernel, real
//! clients, and upstream hosts in a network namespace the test creates (10.203.0.0/24 and
//! fd00:203::/64, nothing else).
//!
//! ```no_run
//! use egress_monitor_tests::{Monitor, Upstream};
//! let _serial = egress_monitor_tests::serial();
//! let upstream = Upstream::create().unwrap();
//! let _server = upstream.tcp_server(8080);
//! let monitor = Monitor::start(&["--all"]);
//! // ... run a client that connects to upstream.v4 ...
//! let out = monitor.stop();
//! assert!(!out.connects_from(1234).is_empty());
//! ```
//!
//! Tests run one at a time (`serial()` holds a lock file), as root; a test that cannot run
//! panics with the reason instead of passing silently.
use std::{
    fs::File,
    io::{BufRead, BufReader, Write},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

pub mod pki;
pub mod schema;

/// Root of the workspace (for test client scripts).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

pub fn clients_dir() -> PathBuf {
    workspace().join("tests/clients")
}

fn require_root() {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("end-to-end tests load eBPF programs and create network namespaces: run them as root (`cargo xtask test`)");
    }
}

/// Holds the cross-process test lock: only one end-to-end test runs at a time on a machine.
pub struct Serial(#[allow(dead_code)] File);

pub fn serial() -> Serial {
    require_root();
    let file = File::create("/tmp/egress-monitor-e2e.lock").expect("creating the test lock file");
    // SAFETY: valid descriptor.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "locking /tmp/egress-monitor-e2e.lock");
    Serial(file)
}

pub fn sh(cmd: &str) -> Output {
    Command::new("sh")
        .args(["-c", cmd])
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"))
}

fn must(cmd: &str) {
    let out = sh(cmd);
    assert!(
        out.status.success(),
        "{cmd} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// An upstream host: a network namespace joined to the root namespace by a veth pair.
/// The root side has 10.203.0.1 and fd00:203::1, the upstream 10.203.0.2 and fd00:203::2.
pub struct Upstream {
    pub netns: String,
    host_if: String,
    pub v4: &'static str,
    pub v6: &'static str,
    servers: Mutex<Vec<Child>>,
}

impl Upstream {
    pub fn create() -> anyhow::Result<Self> {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}{}", std::process::id() % 100_000, n);
        let netns = format!("emt{id}");
        let host_if = format!("emh{id}");
        let peer_if = format!("emp{id}");
        // A crashed earlier run may have left the addresses behind on another interface.
        for line in String::from_utf8_lossy(&sh("ip -o addr show to 10.203.0.1/24").stdout).lines()
        {
            if let Some(dev) = line.split_whitespace().nth(1) {
                sh(&format!("ip link del {dev}"));
            }
        }
        let up = Self {
            netns: netns.clone(),
            host_if: host_if.clone(),
            v4: "10.203.0.2",
            v6: "fd00:203::2",
            servers: Mutex::new(Vec::new()),
        };
        must(&format!("ip netns add {netns}"));
        must(&format!(
            "ip link add {host_if} type veth peer name {peer_if}"
        ));
        must(&format!("ip link set {peer_if} netns {netns}"));
        must(&format!("ip addr add 10.203.0.1/24 dev {host_if}"));
        must(&format!(
            "ip -6 addr add fd00:203::1/64 dev {host_if} nodad"
        ));
        must(&format!("ip link set {host_if} up"));
        let ns = |c: &str| must(&format!("ip netns exec {netns} {c}"));
        ns(&format!("ip addr add 10.203.0.2/24 dev {peer_if}"));
        ns(&format!(
            "ip -6 addr add fd00:203::2/64 dev {peer_if} nodad"
        ));
        ns(&format!("ip link set {peer_if} up"));
        ns("ip link set lo up");
        Ok(up)
    }

    /// A command that runs inside the upstream namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns, program]);
        cmd
    }

    /// Keep a server process alive for the life of the upstream.
    pub fn keep(&self, child: Child) {
        self.servers.lock().unwrap().push(child);
    }

    /// A dual-stack HTTP/1.1 server (keep-alive, 200 "ok" to any request), on `port`.
    pub fn tcp_server(&self, port: u16) {
        self.http_server(None, port);
    }

    /// An HTTPS server (keep-alive, 200 "ok") with this certificate, on `port`.
    pub fn https_server(&self, pair: &pki::Pair, port: u16) {
        self.http_server(Some(pair), port);
    }

    fn http_server(&self, tls: Option<&pki::Pair>, port: u16) {
        let mut cmd = self.command("python3");
        cmd.arg(clients_dir().join("python/http_server.py"));
        if let Some(pair) = tls {
            cmd.arg("--tls").arg(&pair.cert).arg(&pair.key);
        }
        let child = cmd
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the upstream HTTP server");
        self.wait_listening(child, port);
    }

    /// A PostgreSQL server on `port` that asks for cleartext passwords (pg_hba `password`),
    /// with TLS available (the test PKI's server certificate), and a role `app` with
    /// `password`. Returns after the server accepts connections.
    pub fn postgres(&self, pki: &pki::Pki, password: &str, port: u16) {
        let bin = postgres_bin();
        let dir = pki.dir.join("pgdata");
        let run_dir = pki.dir.join("pgrun");
        std::fs::create_dir_all(&run_dir).unwrap();
        must(&format!(
            "chown -R postgres: {} {}",
            pki.dir.display(),
            run_dir.display()
        ));
        let as_pg = |cmd: &str| must(&format!("runuser -u postgres -- {cmd}"));
        as_pg(&format!(
            "{bin}/initdb -D {} -U postgres --auth=trust -E UTF8 --no-sync",
            dir.display()
        ));
        let server = pki.server();
        for (src, dst) in [(&server.cert, "server.crt"), (&server.key, "server.key")] {
            std::fs::copy(src, dir.join(dst)).unwrap();
        }
        must(&format!(
            "chown postgres: {0}/server.crt {0}/server.key && chmod 600 {0}/server.key",
            dir.display()
        ));
        std::fs::write(
            dir.join("pg_hba.conf"),
            "local all all trust\nhost all all 0.0.0.0/0 password\nhost all all ::/0 password\n",
        )
        .unwrap();
        let child = self
            .command("runuser")
            .args(["-u", "postgres", "--"])
            .arg(format!("{bin}/postgres"))
            .arg("-D")
            .arg(&dir)
            .args([
                "-c",
                &format!("listen_addresses={}", self.v4),
                "-c",
                &format!("port={port}"),
            ])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", run_dir.display()))
            .args([
                "-c",
                "ssl=on",
                "-c",
                "fsync=off",
                "-c",
                "logging_collector=off",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting postgres");
        self.keep(child);
        let sql = format!("CREATE ROLE app LOGIN PASSWORD '{password}'");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = Command::new("runuser")
                .args(["-u", "postgres", "--", "psql", "-h"])
                .arg(&run_dir)
                .args([
                    "-p",
                    &port.to_string(),
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-qc",
                    &sql,
                ])
                .output()
                .expect("running psql");
            if out.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not start: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// A Redis server requiring `password`, plaintext on `port` and TLS on `tls_port`.
    pub fn redis(&self, pki: &pki::Pki, password: &str, port: u16, tls_port: u16) {
        let server = pki.server();
        let dir = pki.dir.join("redis");
        std::fs::create_dir_all(&dir).unwrap();
        // The password goes in a config file, not the command line (ps would show it).
        let conf = dir.join("redis.conf");
        std::fs::write(
            &conf,
            format!(
                "bind {ip}\nport {port}\ntls-port {tls_port}\ntls-cert-file {cert}\ntls-key-file {key}\n\
                 tls-ca-cert-file {ca}\ntls-auth-clients no\nrequirepass {password}\nsave \"\"\n\
                 appendonly no\ndir {dir}\ndaemonize no\nprotected-mode no\n",
                ip = self.v4,
                cert = server.cert.display(),
                key = server.key.display(),
                ca = pki.ca().display(),
                dir = dir.display(),
            ),
        )
        .unwrap();
        let child = self
            .command("redis-server")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server");
        self.keep(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect((self.v4, port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait until a server prints its ready line, then keep it.
    fn wait_listening(&self, mut child: Child, port: u16) {
        let stdout = child.stdout.take().expect("server stdout piped");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reading the server's ready line");
        assert!(
            line.starts_with("ready"),
            "server on port {port} did not start: {line:?}"
        );
        self.keep(child);
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        for mut child in self.servers.lock().unwrap().drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Kill anything left in the namespace, then remove it (the veth pair goes with it).
        sh(&format!("ip netns pids {} | xargs -r kill -9", self.netns));
        sh(&format!("ip link del {}", self.host_if));
        sh(&format!("ip netns del {}", self.netns));
    }
}

/// Where Debian keeps the PostgreSQL server binaries (the newest installed major version).
fn postgres_bin() -> String {
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server is not installed: run `cargo xtask setup`")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort_unstable();
    let version = versions
        .last()
        .expect("no PostgreSQL server version in /usr/lib/postgresql");
    format!("/usr/lib/postgresql/{version}/bin")
}

pub fn monitor_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("EGRESS_MONITOR_BIN") {
        return PathBuf::from(bin);
    }
    let guess = workspace().join("target/debug/egress-monitor");
    assert!(
        guess.exists(),
        "no egress-monitor binary: set EGRESS_MONITOR_BIN or run `cargo xtask test` (it builds one)"
    );
    guess
}

/// How to start a monitor beyond its arguments.
#[derive(Default)]
pub struct Options<'a> {
    /// Extra environment variables.
    pub env: Vec<(&'a str, &'a str)>,
    /// Keep only the output lines this accepts (the others are counted).
    pub keep: Option<fn(&str) -> bool>,
    /// The run writes to this file (`--output`): wait for the ready line there.
    pub output: Option<PathBuf>,
    /// Working directory of the monitor.
    pub cwd: Option<PathBuf>,
    /// Run the monitor through this command (`setpriv ... --`): program and its arguments.
    pub wrapper: Vec<String>,
}

/// A running monitor whose standard output (JSON lines by default on a pipe) is collected.
pub struct Monitor {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// Lines the collector was told not to keep, counted.
    skipped: Arc<std::sync::atomic::AtomicU64>,
    /// The `--output` file, read back at the end.
    output: Option<PathBuf>,
    reader: Option<thread::JoinHandle<()>>,
    stderr: Arc<Mutex<String>>,
}

/// Everything a monitor run printed.
pub struct Run {
    pub lines: Vec<Value>,
    /// stdout and stderr verbatim (for secret searches and failure messages).
    pub raw: String,
    /// Lines that were counted instead of kept (see [`Monitor::start_with`]).
    pub skipped: u64,
    /// How long the monitor took to exit after the stop signal.
    pub exit_time: Duration,
}

impl Monitor {
    /// Start `egress-monitor run ARGS` and wait for its `ready` status line.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with(args, &[], |_| true)
    }

    /// Like [`Monitor::start`], with extra environment variables, keeping only the output
    /// lines `keep` accepts (the others are counted: a flood test prints millions).
    pub fn start_with(args: &[&str], env: &[(&str, &str)], keep: fn(&str) -> bool) -> Self {
        Self::start_opts(
            args,
            Options {
                env: env.to_vec(),
                keep: Some(keep),
                ..Options::default()
            },
        )
    }

    /// Start with every option of [`Options`].
    pub fn start_opts(args: &[&str], opts: Options) -> Self {
        let keep = opts.keep.unwrap_or(|_| true);
        let mut cmd = match opts.wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut cmd = Command::new(program);
                cmd.args(wrapper_args).arg(monitor_bin());
                cmd
            }
            None => Command::new(monitor_bin()),
        };
        cmd.arg("run")
            .args(args)
            .envs(opts.env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = &opts.cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().expect("starting egress-monitor");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let skipped = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stdout = child.stdout.take().unwrap();
        let sink = lines.clone();
        let counted = skipped.clone();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if keep(&line) {
                    sink.lock().unwrap().push(line);
                } else {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let err_pipe = child.stderr.take().unwrap();
        let err_sink = stderr.clone();
        thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                let mut s = err_sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut monitor = Self {
            child,
            lines,
            skipped,
            output: opts.output.clone(),
            reader: Some(reader),
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready_in_file = opts.output.as_ref().is_some_and(|path| {
                std::fs::read_to_string(path).is_ok_and(|text| {
                    text.contains("\"status\":\"ready\"") || text.contains(" status   ready ")
                })
            });
            if ready_in_file
                || monitor
                    .lines
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|l| l.contains("\"status\":\"ready\""))
            {
                return monitor;
            }
            if let Ok(Some(status)) = monitor.child.try_wait() {
                panic!(
                    "egress-monitor exited before it was ready ({status}):\n{}\n{}",
                    monitor.lines.lock().unwrap().join("\n"),
                    monitor.stderr.lock().unwrap()
                );
            }
            assert!(
                Instant::now() < deadline,
                "egress-monitor not ready after 30 s"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lines printed so far, parsed.
    pub fn snapshot(&self) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    /// Wait until a line satisfies `pred` (events are asynchronous), up to `timeout`.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.snapshot().iter().any(&pred) {
                return true;
            }
            thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Send a signal (to stop several monitors at once, signal them all, then `stop` each).
    pub fn signal(&self, signal: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Ask for a `stats` status line (SIGUSR1) and return it.
    pub fn stats(&self) -> Value {
        let before = self
            .snapshot()
            .iter()
            .filter(|l| l["status"] == "stats")
            .count();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGUSR1) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let stats: Vec<Value> = self
                .snapshot()
                .into_iter()
                .filter(|l| l["status"] == "stats")
                .collect();
            if stats.len() > before {
                return stats.last().unwrap().clone();
            }
            assert!(
                Instant::now() < deadline,
                "no stats line within 30 s of SIGUSR1"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, wait for the final `shutdown` line, and return everything printed.
    pub fn stop(self) -> Run {
        self.stop_with(libc::SIGTERM)
    }

    /// Stop with `signal` (SIGTERM or SIGINT) and return everything printed.
    pub fn stop_with(mut self, signal: i32) -> Run {
        let signalled = Instant::now();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waiting for egress-monitor") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("egress-monitor did not stop within 60 s of signal {signal}");
            }
            thread::sleep(Duration::from_millis(5));
        };
        let exit_time = signalled.elapsed();
        wait_for_uprobe_teardown();
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        thread::sleep(Duration::from_millis(50)); // let the stderr reader drain
        let mut raw_lines = self.lines.lock().unwrap().clone();
        let stderr = self.stderr.lock().unwrap().clone();
        // With --output, what the run wrote is in the file (JSON lines, or the text view).
        let file = self
            .output
            .as_ref()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .unwrap_or_default();
        let text_view = !file.is_empty() && !file.starts_with('{');
        if raw_lines.is_empty() && !text_view {
            raw_lines = file.lines().map(String::from).collect();
        }
        let raw = format!("{}\n{stderr}\n{file}", raw_lines.join("\n"));
        assert!(status.success(), "egress-monitor failed ({status}):\n{raw}");
        let lines: Vec<Value> = raw_lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        // The contract: every line must satisfy docs/schema/egress-monitor-1.schema.json.
        for (raw, line) in raw_lines.iter().zip(&lines) {
            schema::check_line(raw, line);
        }
        eprintln!(
            "schema: {} line(s) of this run validated ({} in this test binary)",
            lines.len(),
            schema::validated()
        );
        if text_view {
            assert!(
                file.contains(" status   shutdown "),
                "no shutdown line:\n{file}"
            );
            return Run {
                lines,
                raw,
                skipped: self.skipped.load(Ordering::Relaxed),
                exit_time,
            };
        }
        let last = lines.last().expect("no output at all");
        assert_eq!(
            last["status"], "shutdown",
            "the last line is the shutdown status:\n{raw}"
        );
        for line in &lines {
            assert_eq!(line["schema"], "egress-monitor/1", "{line}");
            assert!(
                line["time"].as_str().is_some_and(|t| t.ends_with('Z')),
                "{line}"
            );
        }
        Run {
            lines,
            raw,
            skipped: self.skipped.load(Ordering::Relaxed),
            exit_time,
        }
    }
}

/// Whether a live (not zombie) process named `egress-monitor` is left: an agent, or the child
/// it hands its uprobe detaches to. A monitor that exited but is not reaped yet (another
/// test's, stopped next) holds no probes.
pub fn agent_processes_remain() -> bool {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .any(|e| {
            let zombie = std::fs::read_to_string(e.path().join("stat")).is_ok_and(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            });
            !zombie
                && std::fs::read_to_string(e.path().join("comm"))
                    .is_ok_and(|c| c.trim_end() == "egress-monitor")
        })
}

/// The monitor hands uprobe teardown (an RCU grace period per probe, serialized in the kernel)
/// to a background child and exits. Wait for it, so the next test does not queue behind it.
pub fn wait_for_uprobe_teardown() {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if !agent_processes_remain() {
            return;
        }
        thread::sleep(Duration::from_millis(100));
    }
    panic!("egress-monitor's uprobe teardown did not finish within 120 s");
}

/// A secret nobody else would print: tests search all output for it.
pub fn secret(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{tag}-{:08x}{:04x}Zq", nanos, std::process::id() & 0xffff)
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Run {
    pub fn events(&self, kind: &str) -> Vec<&Value> {
        self.lines
            .iter()
            .filter(|l| l["type"] == "event" && l["event"] == kind)
            .collect()
    }

    pub fn connects_from(&self, pid: u32) -> Vec<&Value> {
        self.events("connect")
            .into_iter()
            .filter(|l| l["process"]["pid"] == pid)
            .collect()
    }

    pub fn connects_to(&self, ip: &str, port: u16) -> Vec<&Value> {
        self.events("connect")
            .into_iter()
            .filter(|l| l["destination"]["ip"] == ip && l["destination"]["port"] == port)
            .collect()
    }

    pub fn findings(&self, id: &str) -> Vec<&Value> {
        self.lines
            .iter()
            .filter(|l| l["type"] == "finding" && l["id"] == id)
            .collect()
    }

    /// Findings and TLS handshakes of one process.
    pub fn findings_of(&self, pid: u32) -> Vec<&Value> {
        self.lines
            .iter()
            .filter(|l| l["type"] == "finding" && l["process"]["pid"] == pid)
            .collect()
    }

    pub fn handshakes_of(&self, pid: u32) -> Vec<&Value> {
        self.events("tls_handshake")
            .into_iter()
            .filter(|l| l["process"]["pid"] == pid)
            .collect()
    }

    pub fn status(&self, kind: &str) -> Vec<&Value> {
        self.lines
            .iter()
            .filter(|l| l["type"] == "status" && l["status"] == kind)
            .collect()
    }

    /// Fail if `secret` appears anywhere in what the monitor printed.
    pub fn assert_no_secret(&self, secret: &str) {
        assert!(
            !self.raw.contains(secret),
            "the planted secret {secret:?} leaked into the monitor's output"
        );
    }

    /// The ids of a process's findings, sorted.
    pub fn ids(&self, pid: u32) -> Vec<String> {
        let mut ids: Vec<String> = self
            .findings_of(pid)
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    }

    /// A process's finding with this id (the test fails, showing the run, without one).
    pub fn finding(&self, pid: u32, id: &str) -> &Value {
        self.findings_of(pid)
            .into_iter()
            .find(|f| f["id"] == id)
            .unwrap_or_else(|| panic!("no {id} for pid {pid}:\n{}", self.dump()))
    }

    pub fn dump(&self) -> String {
        self.raw.clone()
    }
}

/// The client exited 0 (else the test fails with its output).
pub fn ok(c: &Client, what: &str) {
    assert!(
        c.output.status.success(),
        "{what} failed: {}\n{}",
        c.stdout(),
        String::from_utf8_lossy(&c.output.stderr)
    );
}

/// `go build` of the module in `dir` into `out`, offline (the Debian golang-go toolchain and
/// the standard library only; `strip`: `-s -w`, as release builds are). A failure fails the test.
pub fn go_build_dir(dir: &Path, strip: bool, out: &Path) {
    let mut cmd = Command::new("go");
    cmd.arg("build").arg("-o").arg(out);
    if strip {
        cmd.args(["-ldflags", "-s -w"]);
    }
    let cache = std::env::temp_dir().join("em-go-cache");
    let output = cmd
        .arg(".")
        .current_dir(dir)
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0")
        .env("GOCACHE", &cache)
        .env("GOPATH", cache.join("gopath"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("running `go build` (the golang-go package; `cargo xtask setup` installs it)");
    assert!(
        output.status.success(),
        "go build in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A finished client run.
pub struct Client {
    pub pid: u32,
    pub output: Output,
}

impl Client {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
}

/// Run a client to completion and return its pid (for matching events) and its output.
pub fn run_client(cmd: &mut Command) -> Client {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let pid = child.id();
    let output = child.wait_with_output().expect("waiting for the client");
    Client { pid, output }
}

pub fn python(code: &str) -> Command {
    let mut cmd = Command::new("python3");
    cmd.args(["-c", code]);
    cmd
}

/// Python from the test clients' virtualenv (requests, httpx), running `code`.
pub fn venv_python(code: &str) -> Command {
    let python = clients_dir().join("python/.venv/bin/python3");
    assert!(
        python.exists(),
        "{} is missing: run `cargo xtask setup` (it installs the Python test clients)",
        python.display()
    );
    let mut cmd = Command::new(python);
    cmd.args(["-c", code]);
    cmd
}

/// Node running an ES module script from `code`, with the test clients' packages resolvable.
pub fn node_module(code: &str) -> Command {
    let dir = clients_dir().join("node");
    assert!(
        dir.join("node_modules").exists(),
        "{}/node_modules is missing: run `cargo xtask setup`",
        dir.display()
    );
    let mut cmd = Command::new("node");
    cmd.args(["--input-type=module", "-e", code])
        .current_dir(dir);
    cmd
}

pub fn node(code: &str) -> Command {
    let mut cmd = Command::new("node");
    cmd.args(["-e", code]);
    cmd
}

/// A child that waits for a line on stdin before doing its work, so it exists (with a known
/// pid) before the monitor starts.
pub struct Waiting {
    pub child: Child,
}

impl Waiting {
    pub fn spawn(cmd: &mut Command) -> Self {
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
        Self { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Let it go and wait for it to finish.
    pub fn release(mut self) -> Output {
        let mut stdin = self.child.stdin.take().unwrap();
        writeln!(stdin, "go").unwrap();
        drop(stdin);
        self.child.wait_with_output().unwrap()
    }
}

/// A Python client (argv: host, port) that opens 64 TCP connections at once, prints `open 64`,
/// then closes them: more sockets than a small `--map-sizes sockets=16` map holds.
pub const PY_MANY_SOCKETS: &str = r#"
import socket, sys
socks = [socket.create_connection((sys.argv[1], int(sys.argv[2]))) for _ in range(64)]
print("open", len(socks), flush=True)
for s in socks:
    s.close()
"#;
