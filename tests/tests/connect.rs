//! Connect tracing end to end: real clients in the root namespace connect to an upstream host in
//! a network namespace; the real monitor must report each connect with the right process,
//! socket, destination and result, and nothing for processes it does not target.
use std::{process::Command, time::Duration};

use egress_monitor_tests::{
    clients_dir, node, python, run_client, serial, Monitor, Upstream, Waiting,
};
use serde_json::Value;

const PORT: u16 = 8080;

fn one_connect(run: &egress_monitor_tests::Run, pid: u32) -> &Value {
    let connects = run.connects_from(pid);
    assert!(
        !connects.is_empty(),
        "no connect event from pid {pid}:\n{}",
        run.dump()
    );
    connects[0]
}

fn assert_connect(event: &Value, family: &str, protocol: &str, ip: &str, port: u16, result: &str) {
    assert_eq!(event["socket"]["family"], family, "{event}");
    assert_eq!(event["socket"]["protocol"], protocol, "{event}");
    assert!(event["socket"]["fd"].as_i64().unwrap() >= 0, "{event}");
    assert_eq!(event["destination"]["ip"], ip, "{event}");
    assert_eq!(event["destination"]["port"], port, "{event}");
    assert_eq!(event["destination"]["hostname"], Value::Null, "{event}");
    assert_eq!(event["result"], result, "{event}");
    let process = &event["process"];
    for field in [
        "pid",
        "ppid",
        "uid",
        "comm",
        "exe",
        "cmdline",
        "container_id",
        "mcp",
    ] {
        assert!(
            process.get(field).is_some(),
            "process.{field} missing: {event}"
        );
    }
}

#[test]
fn curl_over_ipv4_and_ipv6() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    up.tcp_server(PORT);
    let monitor = Monitor::start(&["--comm", "curl"]);
    let v4 = run_client(Command::new("curl").args([
        "-sS",
        "--max-time",
        "5",
        &format!("http://{}:{PORT}/", up.v4),
    ]));
    let v6 = run_client(Command::new("curl").args([
        "-sS",
        "--max-time",
        "5",
        &format!("http://[{}]:{PORT}/", up.v6),
    ]));
    assert_eq!(v4.stdout(), "ok\n", "curl over IPv4 reached the upstream");
    assert_eq!(v6.stdout(), "ok\n", "curl over IPv6 reached the upstream");
    let run = monitor.stop();
    // curl connects non-blocking: the syscall returns EINPROGRESS, and the event waits for the
    // outcome the TCP state machine reports.
    let e = one_connect(&run, v4.pid);
    assert_connect(e, "ipv4", "tcp", up.v4, PORT, "ok");
    assert_eq!(e["process"]["comm"], "curl");
    assert_eq!(e["process"]["exe"], "/usr/bin/curl");
    assert_eq!(e["process"]["cmdline"][0], "curl");
    assert_eq!(e["process"]["uid"], 0);
    assert_eq!(e["process"]["ppid"], std::process::id());
    assert_connect(one_connect(&run, v6.pid), "ipv6", "tcp", up.v6, PORT, "ok");
}

const PY_CONNECT: &str = r#"
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.connect((host, port))
s.sendall(b"GET / HTTP/1.0\r\n\r\n")
print(s.recv(100).split(b"\r\n")[0].decode())
"#;

const PY_ASYNCIO: &str = r#"
import asyncio, sys
async def main(host, port):
    r, w = await asyncio.open_connection(host, port)
    w.write(b"GET / HTTP/1.0\r\n\r\n")
    print((await r.readline()).decode().strip())
    w.close()
asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"#;

const NODE_CONNECT: &str = r#"
const net = require("net");
const [host, port] = process.argv.slice(1);
const s = net.connect({ host, port: Number(port) }, () => s.write("GET / HTTP/1.0\r\n\r\n"));
s.on("data", (d) => { console.log(d.toString().split("\r\n")[0]); s.destroy(); });
s.on("error", (e) => { console.error(e.message); process.exit(1); });
"#;

fn client_both_families(code_runner: fn(&str) -> Command, code: &str, comm: &str, result: &str) {
    let _s = serial();
    let up = Upstream::create().unwrap();
    up.tcp_server(PORT);
    let monitor = Monitor::start(&["--all"]);
    let mut pids = Vec::new();
    for host in [up.v4, up.v6] {
        let c = run_client(code_runner(code).args([host, &PORT.to_string()]));
        assert_eq!(
            c.stdout().trim(),
            "HTTP/1.1 200 OK",
            "{comm} client to {host}: {:?}",
            c.output
        );
        pids.push(c.pid);
    }
    let run = monitor.stop();
    let e4 = one_connect(&run, pids[0]);
    assert_connect(e4, "ipv4", "tcp", up.v4, PORT, result);
    assert_eq!(e4["process"]["comm"], comm);
    assert_connect(
        one_connect(&run, pids[1]),
        "ipv6",
        "tcp",
        up.v6,
        PORT,
        result,
    );
}

#[test]
fn python_blocking_over_ipv4_and_ipv6() {
    client_both_families(python, PY_CONNECT, "python3", "ok");
}

#[test]
fn python_asyncio_over_ipv4_and_ipv6() {
    // asyncio uses non-blocking sockets: the outcome comes from the TCP state machine.
    client_both_families(python, PY_ASYNCIO, "python3", "ok");
}

#[test]
fn node_over_ipv4_and_ipv6() {
    client_both_families(node, NODE_CONNECT, "node", "ok");
}

#[test]
fn v4_mapped_ipv6_destination() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    up.tcp_server(PORT);
    let monitor = Monitor::start(&["--all"]);
    let c = run_client(python(PY_CONNECT).args([&format!("::ffff:{}", up.v4), &PORT.to_string()]));
    assert_eq!(c.stdout().trim(), "HTTP/1.1 200 OK");
    let run = monitor.stop();
    // An IPv6 socket dialling an IPv4 peer: the family is the socket's, the address the peer's.
    assert_connect(one_connect(&run, c.pid), "ipv6", "tcp", up.v4, PORT, "ok");
}

#[test]
fn refused_connect_shows_its_errno() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    let monitor = Monitor::start(&["--all"]);
    let c = run_client(python(PY_CONNECT).args([up.v4, "9"]));
    assert!(!c.output.status.success(), "nothing listens on port 9");
    let run = monitor.stop();
    assert_connect(
        one_connect(&run, c.pid),
        "ipv4",
        "tcp",
        up.v4,
        9,
        "ECONNREFUSED",
    );
}

#[test]
fn udp_connect_is_reported_as_udp() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    let monitor = Monitor::start(&["--all"]);
    let code = "import socket,sys\nfor h in sys.argv[1:]:\n    f = socket.AF_INET6 if ':' in h else socket.AF_INET\n    s = socket.socket(f, socket.SOCK_DGRAM)\n    s.connect((h, 5353))\n    s.send(b'x')";
    let c = run_client(python(code).args([up.v4, up.v6]));
    assert!(c.output.status.success(), "{:?}", c.output);
    let run = monitor.stop();
    let connects = run.connects_from(c.pid);
    assert_eq!(connects.len(), 2, "{}", run.dump());
    assert_connect(connects[0], "ipv4", "udp", up.v4, 5353, "ok");
    assert_connect(connects[1], "ipv6", "udp", up.v6, 5353, "ok");
}

/// Datagrams with an explicit destination on unconnected sockets (`sendto`): each destination
/// is reported when the socket turns to it, not for every datagram that follows.
#[test]
fn unconnected_udp_destinations_are_reported_as_they_change() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    let monitor = Monitor::start(&["--all"]);
    let code = "import socket,sys\nfor h in sys.argv[1:]:\n    f = socket.AF_INET6 if ':' in h else socket.AF_INET\n    s = socket.socket(f, socket.SOCK_DGRAM)\n    for port in (5353, 5353, 5354, 5353):\n        s.sendto(b'x', (h, port))";
    let c = run_client(python(code).args([up.v4, up.v6]));
    assert!(c.output.status.success(), "{:?}", c.output);
    let run = monitor.stop();
    let connects = run.connects_from(c.pid);
    let got: Vec<(String, u64)> = connects
        .iter()
        .map(|c| {
            (
                c["destination"]["ip"].as_str().unwrap().to_string(),
                c["destination"]["port"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, u64)> = [up.v4, up.v6]
        .iter()
        .flat_map(|ip| [5353, 5354, 5353].map(|port| (ip.to_string(), port)))
        .collect();
    assert_eq!(got, want, "{}", run.dump());
    assert_connect(connects[0], "ipv4", "udp", up.v4, 5353, "ok");
    assert_connect(connects[3], "ipv6", "udp", up.v6, 5353, "ok");
}

const PY_WAIT_THEN_CONNECT: &str = r#"
import socket, sys
sys.stdin.readline()
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
s.close()
"#;

/// Two identical clients exist before the monitor starts; `select` gets the first one's pid and
/// returns the monitor arguments that select it. Both then connect to the upstream.
/// Returns what the monitor printed and the two pids (selected, other).
fn one_selected_of_two(
    up: &Upstream,
    select: impl FnOnce(u32) -> Vec<String>,
) -> (egress_monitor_tests::Run, u32, u32) {
    let port = PORT.to_string();
    let selected = Waiting::spawn(python(PY_WAIT_THEN_CONNECT).args([up.v4, &port]));
    let other = Waiting::spawn(python(PY_WAIT_THEN_CONNECT).args([up.v4, &port]));
    let pids = (selected.pid(), other.pid());
    let args = select(pids.0);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let monitor = Monitor::start(&args);
    assert!(selected.release().status.success());
    assert!(other.release().status.success());
    (monitor.stop(), pids.0, pids.1)
}

#[test]
fn pid_mode_sees_only_that_process() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    up.tcp_server(PORT);
    let (run, watched_pid, other_pid) =
        one_selected_of_two(&up, |watched| vec!["--pid".into(), watched.to_string()]);
    assert_connect(
        one_connect(&run, watched_pid),
        "ipv4",
        "tcp",
        up.v4,
        PORT,
        "ok",
    );
    assert!(
        run.connects_from(other_pid).is_empty(),
        "an untargeted process was reported:\n{}",
        run.dump()
    );
    assert!(
        run.events("connect")
            .iter()
            .all(|e| e["process"]["pid"] == watched_pid),
        "only the chosen pid:\n{}",
        run.dump()
    );
}

#[test]
fn pid_mode_refuses_a_missing_process() {
    let _s = serial();
    let out = Command::new(
        std::env::var("EGRESS_MONITOR_BIN")
            .unwrap_or_else(|_| "target/debug/egress-monitor".into()),
    )
    .args(["run", "--pid", "4194303", "--duration", "1"])
    .output()
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no process with pid"), "{stderr}");
}

/// A fresh cgroup under the unified (v2) hierarchy, removed on drop.
struct TestCgroup(std::path::PathBuf);

impl TestCgroup {
    fn create() -> Self {
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
        let root = mounts
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.len() > 2 && f[2] == "cgroup2")
            .map(|f| f[1].to_string())
            .expect("no cgroup2 hierarchy mounted: the --cgroup test needs one");
        let dir =
            std::path::Path::new(&root).join(format!("egress-monitor-e2e-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn adopt(&self, pid: u32) {
        std::fs::write(self.0.join("cgroup.procs"), pid.to_string()).unwrap();
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn cgroup_mode_selects_processes_in_the_cgroup() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    up.tcp_server(PORT);
    let cgroup = TestCgroup::create();
    let (run, inside_pid, outside_pid) = one_selected_of_two(&up, |inside| {
        cgroup.adopt(inside);
        vec!["--cgroup".into(), cgroup.0.to_str().unwrap().into()]
    });
    assert_connect(
        one_connect(&run, inside_pid),
        "ipv4",
        "tcp",
        up.v4,
        PORT,
        "ok",
    );
    assert!(
        run.connects_from(outside_pid).is_empty(),
        "a process outside the cgroup was reported:\n{}",
        run.dump()
    );
}

#[test]
fn sigint_stops_cleanly_and_reports_what_was_queued() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    up.tcp_server(PORT);
    let monitor = Monitor::start(&["--all"]);
    let c = run_client(python(PY_CONNECT).args([up.v4, &PORT.to_string()]));
    let run = monitor.stop_with(libc::SIGINT);
    assert!(run.status("shutdown")[0]["message"]
        .as_str()
        .unwrap()
        .contains("SIGINT"));
    assert_connect(one_connect(&run, c.pid), "ipv4", "tcp", up.v4, PORT, "ok");
}

#[test]
fn comm_mode_selects_by_name() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    up.tcp_server(PORT);
    let monitor = Monitor::start(&["--comm", "curl"]);
    let curl = run_client(Command::new("curl").args([
        "-s",
        "--max-time",
        "5",
        &format!("http://{}:{PORT}/", up.v4),
    ]));
    let py = run_client(python(PY_CONNECT).args([up.v4, &PORT.to_string()]));
    assert!(curl.output.status.success() && py.output.status.success());
    let run = monitor.stop();
    assert!(!run.connects_from(curl.pid).is_empty(), "{}", run.dump());
    assert!(
        run.connects_from(py.pid).is_empty(),
        "python is not curl:\n{}",
        run.dump()
    );
}

#[test]
fn mcp_mode_finds_a_server_started_later_and_its_child_but_not_others() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    up.tcp_server(PORT);
    // Default mode: --mcp.
    let monitor = Monitor::start(&[]);
    let ordinary = run_client(python(PY_CONNECT).args([up.v4, &PORT.to_string()]));
    assert!(ordinary.output.status.success());
    let node_dir = clients_dir().join("node");
    let args = format!(r#"{{"host":"{}","port":{PORT}}}"#, up.v4);
    let tool = run_client(
        Command::new("node")
            .arg(node_dir.join("run-tool.mjs"))
            .arg(node_dir.join("mcp-server-upstream.mjs"))
            .args(["fetch_upstream", &args]),
    );
    assert!(
        tool.output.status.success(),
        "MCP client failed: {:?}",
        tool.output
    );
    let reply: Value = serde_json::from_str(tool.stdout().trim()).expect("client prints JSON");
    assert_eq!(
        reply["result"]["content"][0]["text"], "direct ok, curl 200",
        "{reply}"
    );
    let server_pid = reply["serverPid"].as_u64().unwrap() as u32;
    let run = monitor.stop();

    let target = run
        .events("target")
        .into_iter()
        .find(|e| e["process"]["pid"] == server_pid)
        .unwrap_or_else(|| panic!("the MCP server was not targeted:\n{}", run.dump()));
    assert_eq!(target["process"]["mcp"], true);
    // What it is built from decides first: its package depends on the official SDK.
    assert!(
        target["reason"]
            .as_str()
            .unwrap()
            .contains("package.json lists @modelcontextprotocol/sdk"),
        "{target}"
    );

    let direct = one_connect(&run, server_pid);
    assert_connect(direct, "ipv4", "tcp", up.v4, PORT, "ok");
    assert_eq!(direct["process"]["mcp"], true);
    // The helper child (curl) inherits the target and the MCP label from its parent.
    let child = run
        .events("connect")
        .into_iter()
        .find(|e| e["process"]["ppid"] == server_pid && e["process"]["comm"] == "curl")
        .unwrap_or_else(|| panic!("no connect from the server's child:\n{}", run.dump()));
    assert_connect(child, "ipv4", "tcp", up.v4, PORT, "ok");
    assert_eq!(child["process"]["mcp"], true);
    assert!(
        run.connects_from(ordinary.pid).is_empty(),
        "an ordinary process was reported:\n{}",
        run.dump()
    );
}

#[test]
fn loopback_is_ignored_unless_included() {
    let _s = serial();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let connect =
        "import socket,sys\nsocket.create_connection(('127.0.0.1', int(sys.argv[1]))).close()";
    for include in [false, true] {
        let args: &[&str] = if include {
            &["--all", "--include-loopback"]
        } else {
            &["--all"]
        };
        let monitor = Monitor::start(args);
        let c = run_client(python(connect).arg(&port));
        assert!(c.output.status.success(), "{:?}", c.output);
        let run = monitor.stop();
        let seen = run.connects_from(c.pid);
        if include {
            assert_connect(
                seen.first().expect("loopback included"),
                "ipv4",
                "tcp",
                "127.0.0.1",
                port.parse().unwrap(),
                "ok",
            );
        } else {
            assert!(
                seen.is_empty(),
                "loopback must be ignored by default:\n{}",
                run.dump()
            );
        }
    }
}

#[test]
fn status_lines_report_attachments_and_totals() {
    let _s = serial();
    let attached = |run: &egress_monitor_tests::Run| -> Vec<String> {
        run.status("attached")
            .iter()
            .filter_map(|s| s["component"].as_str().map(String::from))
            .collect()
    };
    // The default data path: cgroup hooks, no syscall tracepoint (which would put every thread
    // of the host on the syscall slow path).
    let monitor = Monitor::start(&["--all", "--duration", "30"]);
    std::thread::sleep(Duration::from_millis(200));
    let run = monitor.stop();
    let names = attached(&run);
    let path = run
        .status("attached")
        .into_iter()
        .find(|s| s["component"] == "data path")
        .unwrap_or_else(|| panic!("no data path status:\n{}", run.dump()));
    assert!(
        path["message"]
            .as_str()
            .unwrap()
            .starts_with("cgroup hooks on "),
        "{path}"
    );
    assert!(
        !names.iter().any(|n| n.starts_with("tracepoint:syscalls/")),
        "a syscall tracepoint on the default path: {names:?}"
    );
    for tp in [
        "sock/inet_sock_set_state",
        "sched/sched_process_exec",
        "sched/sched_process_exit",
        "sched/sched_process_fork",
    ] {
        assert!(
            names.contains(&format!("tracepoint:{tp}")),
            "{tp} not attached:\n{}",
            run.dump()
        );
    }
    let shutdown = run.status("shutdown")[0];
    assert!(shutdown["message"].as_str().unwrap().contains("SIGTERM"));
    let drops = &shutdown["totals"]["drops"];
    for reason in ["ringbuf_full", "thread_state_full", "target_set_full"] {
        assert_eq!(drops[reason], 0, "{shutdown}");
    }
    // The fallback, named as such.
    let monitor = Monitor::start(&["--all", "--syscall-tracepoints"]);
    let run = monitor.stop();
    let names = attached(&run);
    for tp in ["syscalls/sys_enter_connect", "syscalls/sys_exit_connect"] {
        assert!(
            names.contains(&format!("tracepoint:{tp}")),
            "{tp} not attached:\n{}",
            run.dump()
        );
    }
    assert!(
        run.raw.contains("syscall tracepoints (fallback)"),
        "{}",
        run.dump()
    );
}

#[test]
fn duration_ends_the_run_with_a_shutdown_line() {
    let _s = serial();
    let bin = std::env::var("EGRESS_MONITOR_BIN")
        .unwrap_or_else(|_| "target/debug/egress-monitor".into());
    let start = std::time::Instant::now();
    let out = Command::new(bin)
        .args(["run", "--all", "--duration", "1.5"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(start.elapsed() >= Duration::from_millis(1500));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in stdout.lines() {
        let value: Value = serde_json::from_str(line).unwrap();
        egress_monitor_tests::schema::check_line(line, &value);
    }
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(
        last["status"], "shutdown",
        "piped stdout defaults to JSON lines"
    );
    assert!(last["message"].as_str().unwrap().contains("--duration"));
}
