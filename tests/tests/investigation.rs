//! Investigating a process that is already running: `run --pid PID` says which connections it
//! had open before the monitor started (nothing can be judged about them), and watches the
//! connections it opens afterwards.
use std::io::BufRead;

use egress_monitor_tests::{python, serial, Monitor, Upstream, Waiting};

const PORT: u16 = 8080;

/// Opens a connection at once (printing its descriptor), waits for a line on stdin, then opens
/// a second one and sends a bearer token on it (from its environment: a bare command-line
/// argument cannot be told from any other word, and command lines are printed).
const CLIENT: &str = r#"
import os, socket, sys
host, port, token = sys.argv[1], int(sys.argv[2]), os.environ["API_TOKEN"]
old = socket.create_connection((host, port))
print(old.fileno(), flush=True)
sys.stdin.readline()
new = socket.create_connection((host, port))
new.sendall(b"GET /v1/tools HTTP/1.1\r\nHost: api.test\r\nAuthorization: Bearer " + token.encode() + b"\r\nConnection: close\r\n\r\n")
new.recv(1000)
"#;

#[test]
fn pid_mode_names_the_connections_opened_before_it_started() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    up.tcp_server(PORT);
    let token = format!("inv-{:x}Zq", std::process::id() * 13);
    let mut client = Waiting::spawn(
        python(CLIENT)
            .args([up.v4, &PORT.to_string()])
            .env("API_TOKEN", &token),
    );
    let mut line = String::new();
    std::io::BufReader::new(client.child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let old_fd: u32 = line
        .trim()
        .parse()
        .expect("the client prints its descriptor");
    // A process with no connection: nothing to say about it.
    let idle = Waiting::spawn(&mut python("import sys; sys.stdin.readline()"));
    let (pid, idle_pid) = (client.pid(), idle.pid());

    let monitor = Monitor::start(&["--pid", &pid.to_string(), &idle_pid.to_string()]);
    let out = client.release();
    assert!(out.status.success(), "{out:?}");
    idle.release();
    let run = monitor.stop();

    let notes = run.status("warning");
    let preexisting: Vec<_> = notes
        .iter()
        .filter(|s| s["component"] == "preexisting connections")
        .collect();
    assert_eq!(preexisting.len(), 1, "{}", run.dump());
    let message = preexisting[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "pid {pid} (python3) had 1 connection(s) open before the monitor started: tcp {}:{PORT} (fd {old_fd})",
            up.v4
        )) && message.contains("cannot be judged"),
        "{message}"
    );
    // The connection opened afterwards is watched.
    let findings = run.findings_of(pid);
    assert!(
        findings.iter().any(|f| f["id"] == "PLAINTEXT_CREDENTIALS"),
        "{}",
        run.dump()
    );
    assert_eq!(run.connects_from(pid).len(), 1, "only the new connection");
    run.assert_no_secret(&token);
}
