//! What happens to connections and processes over their life, end to end: non-blocking
//! connects get their real outcome (from the TCP state machine), descriptor tricks never turn a
//! file write into a "socket stream", and a reused pid never inherits a watched process's
//! state.
use std::{process::Command, time::Duration};

use egress_monitor_tests::{node, python, run_client, serial, Monitor, Run, Upstream, Waiting};
use serde_json::Value;

const PORT: u16 = 8080;
/// Nothing listens there: the upstream answers with a reset.
const CLOSED: u16 = 8081;

fn connects(run: &Run, pid: u32) -> Vec<&Value> {
    run.lines
        .iter()
        .filter(|l| {
            l["type"] == "event"
                && (l["event"] == "connect" || l["event"] == "connect_result")
                && l["process"]["pid"] == pid
        })
        .collect()
}

fn results(run: &Run, pid: u32) -> Vec<(String, String)> {
    connects(run, pid)
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_string(),
                e["result"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

const PY_ASYNCIO: &str = r#"
import asyncio, sys
async def main(host, port):
    try:
        r, w = await asyncio.open_connection(host, port)
        w.close()
        print("connected")
    except OSError as e:
        print("failed", e.errno)
asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"#;

const PY_TIMEOUT: &str = r#"
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).close()
    print("connected")
except OSError as e:
    print("failed", e.errno)
"#;

const NODE_CONNECT: &str = r#"
const net = require("net");
const [host, port] = process.argv.slice(1);
const s = net.connect({ host, port: Number(port) }, () => { console.log("connected"); s.destroy(); });
s.on("error", (e) => console.log("failed", e.code));
"#;

#[test]
fn non_blocking_connects_report_their_outcome() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    up.tcp_server(PORT);
    let monitor = Monitor::start(&["--comm", "curl", "python3", "node"]);
    let curl = |port: u16| {
        run_client(Command::new("curl").args([
            "-s",
            "--max-time",
            "5",
            &format!("http://{}:{port}/", up.v4),
        ]))
    };
    let curl_ok = curl(PORT);
    let curl_refused = curl(CLOSED);
    let asyncio_refused = run_client(python(PY_ASYNCIO).args([up.v4, &CLOSED.to_string()]));
    let timeout_refused = run_client(python(PY_TIMEOUT).args([up.v4, &CLOSED.to_string()]));
    let node_refused = run_client(node(NODE_CONNECT).args([up.v4, &CLOSED.to_string()]));
    let node_ok = run_client(node(NODE_CONNECT).args([up.v6, &PORT.to_string()]));
    for (c, what) in [
        (&asyncio_refused, "asyncio"),
        (&timeout_refused, "python with a timeout"),
    ] {
        assert_eq!(c.stdout().trim(), "failed 111", "{what}: {:?}", c.output);
    }
    assert_eq!(node_refused.stdout().trim(), "failed ECONNREFUSED");
    assert_eq!(node_ok.stdout().trim(), "connected");
    let run = monitor.stop();
    let one = |pid: u32, want: &str| {
        assert_eq!(
            results(&run, pid),
            vec![("connect".to_string(), want.to_string())],
            "pid {pid}:\n{}",
            run.dump()
        );
    };
    one(curl_ok.pid, "ok");
    one(curl_refused.pid, "ECONNREFUSED");
    one(asyncio_refused.pid, "ECONNREFUSED");
    one(timeout_refused.pid, "ECONNREFUSED");
    one(node_refused.pid, "ECONNREFUSED");
    one(node_ok.pid, "ok");
}

#[test]
fn a_slow_connect_goes_out_in_progress_and_its_result_follows() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    // No host has this address: neighbour resolution fails after a few seconds and the kernel
    // reports EHOSTUNREACH to the connecting socket.
    let nobody = "10.203.0.3";
    let monitor = Monitor::start(&["--comm", "python3"]);
    let c = run_client(python(PY_TIMEOUT).args([nobody, &PORT.to_string()]));
    assert_eq!(c.stdout().trim(), "failed 113", "{:?}", c.output);
    let run = monitor.stop();
    let got = results(&run, c.pid);
    assert_eq!(
        got,
        vec![
            ("connect".to_string(), "in_progress".to_string()),
            ("connect_result".to_string(), "EHOSTUNREACH".to_string())
        ],
        "{}",
        run.dump()
    );
    let first = connects(&run, c.pid)[0];
    let second = connects(&run, c.pid)[1];
    assert_eq!(first["socket"], second["socket"], "the same socket");
    assert_eq!(first["destination"], second["destination"]);
    assert_eq!(second["destination"]["ip"], nobody);
    assert_eq!(second["destination"]["port"], PORT);
    drop(up);
}

/// A socket's descriptor is replaced by a file (`dup2`), closed with `close_range` and reused
/// for a file, or closed at exec and reused by the new program: every write below goes to a
/// file, and none of it may be read as a plaintext stream.
const PY_DESCRIPTOR_GAMES: &str = r#"
import os, socket, sys
host, port, tmp = sys.argv[1], int(sys.argv[2]), sys.argv[3]
secret = os.environ["SECRET"]
def request(tag):
    return ("GET /%s HTTP/1.1\r\nHost: api.test\r\nAuthorization: Bearer %s-%s\r\n\r\n" % (tag, secret, tag)).encode()

# dup2: a file takes over the socket's descriptor.
s = socket.create_connection((host, port))
fd = s.fileno()
f = os.open(tmp + "/dup2", os.O_WRONLY | os.O_CREAT, 0o600)
os.dup2(f, fd)
os.write(fd, request("dup2"))

# close_range: the socket's descriptor is closed without close(2), then reused by a file.
s2 = socket.create_connection((host, port))
fd2 = s2.detach()
os.closerange(fd2, fd2 + 1)
g = os.open(tmp + "/closerange", os.O_WRONLY | os.O_CREAT, 0o600)
assert g == fd2, (g, fd2)
os.write(g, request("closerange"))

# close-on-exec: the new program finds the descriptor free and opens a file on it.
s3 = socket.create_connection((host, port))
fd3 = s3.fileno()
script = 'exec %d>"%s/exec"; printf "%%s" "$REQUEST" >&%d' % (fd3, tmp, fd3)
os.environ["REQUEST"] = request("exec").decode()
os.execv("/bin/sh", ["sh", "-c", script])
"#;

#[test]
fn descriptor_games_never_turn_file_writes_into_streams() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    up.tcp_server(PORT);
    let tmp = std::env::temp_dir().join(format!("em-fdgames-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let secret = format!("fdgame{:x}", std::process::id() * 7919);
    let monitor = Monitor::start(&["--comm", "python3"]);
    // Secrets come from the environment (as for MCP servers): never from the command line.
    let c = run_client(
        python(PY_DESCRIPTOR_GAMES)
            .args([up.v4, &PORT.to_string(), tmp.to_str().unwrap()])
            .env("SECRET", &secret),
    );
    assert!(c.output.status.success(), "{:?}", c.output);
    for name in ["dup2", "closerange", "exec"] {
        let written = std::fs::read_to_string(tmp.join(name)).unwrap();
        assert!(
            written.contains(&secret),
            "{name}: the client wrote its file"
        );
    }
    let run = monitor.stop();
    assert_eq!(
        connects(&run, c.pid).len(),
        3,
        "the three connects are reported:\n{}",
        run.dump()
    );
    assert!(
        run.findings("PLAINTEXT_CREDENTIALS").is_empty(),
        "a file write was read as a socket stream:\n{}",
        run.dump()
    );
    run.assert_no_secret(&secret);
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// Writes `pid - 1` to the kernel's last-pid counter and forks until the child gets `pid`
/// (other processes may take it first: a few tries). The child then connects and sends a
/// bearer token. Prints whether the pid was taken.
const PY_TAKE_PID: &str = r#"
import os, socket, sys
pid, host, port, secret = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
for _ in range(50):
    with open("/proc/sys/kernel/ns_last_pid", "w") as f:
        f.write(str(pid - 1))
    child = os.fork()
    if child == 0:
        if os.getpid() != pid:
            os._exit(3)
        s = socket.create_connection((host, port))
        s.sendall(("GET /reused HTTP/1.1\r\nHost: api.test\r\nAuthorization: Bearer %s\r\n\r\n" % secret).encode())
        s.recv(100)
        os._exit(0)
    _, status = os.waitpid(child, 0)
    if os.waitstatus_to_exitcode(status) == 0:
        print("took", pid)
        sys.exit(0)
print("pid not free")
sys.exit(1)
"#;

const PY_WAIT_THEN_SEND: &str = r#"
import socket, sys
sys.stdin.readline()
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
s.sendall(b"GET /watched HTTP/1.1\r\nHost: api.test\r\n")
s.recv(1)
"#;

#[test]
fn a_reused_pid_is_not_the_watched_process() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    up.tcp_server(PORT);
    let watched = Waiting::spawn(python(PY_WAIT_THEN_SEND).args([up.v4, &PORT.to_string()]));
    let pid = watched.pid();
    let monitor = Monitor::start(&["--pid", &pid.to_string()]);
    // The watched process connects, starts a request (its stream stays undecided) and dies.
    let mut child = watched.child;
    {
        use std::io::Write as _;
        writeln!(child.stdin.take().unwrap(), "go").unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        monitor.wait_for(Duration::from_secs(5), |l| l["event"] == "connect"
            && l["process"]["pid"] == pid),
        "the watched process's connect"
    );
    // An unwatched process gets the same pid and sends a token on a socket of its own.
    let secret = format!("reused{:x}", std::process::id() * 104_729);
    let taker =
        run_client(python(PY_TAKE_PID).args([&pid.to_string(), up.v4, &PORT.to_string(), &secret]));
    assert_eq!(
        taker.stdout().trim(),
        format!("took {pid}"),
        "{:?}",
        taker.output
    );
    let run = monitor.stop();
    let from_pid = connects(&run, pid);
    assert_eq!(
        from_pid.len(),
        1,
        "only the watched process's connect:\n{}",
        run.dump()
    );
    assert!(
        run.findings("PLAINTEXT_CREDENTIALS").is_empty(),
        "{}",
        run.dump()
    );
    run.assert_no_secret(&secret);
}
