//! The MCP server's own HTTP interface, end to end: a real MCP server on the official SDK's
//! Streamable HTTP transport (`tests/clients/node/mcp-http-server.mjs`, node:http or
//! node:https) and the SDK's client sending a bearer token (`mcp-http-client.mjs`).
//!
//! - over plain HTTP on the test network's address: `MCP_ENDPOINT_PLAINTEXT`, the token never
//!   in the output, whether the server bound its listener under the monitor (`cgroup/bind4`)
//!   or before it (marked through a copy of its descriptor);
//! - the same server bound to loopback only: nothing;
//! - over HTTPS without `Strict-Transport-Security`: `HSTS_MISSING`; with
//!   `max-age=31536000`: nothing; neither is `MCP_ENDPOINT_PLAINTEXT`.
//!
//! The server listens on 10.203.0.1 (the host end of the test network) and the client runs in
//! the upstream namespace, so the requests cross the veth pair as a remote client's would.
use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use egress_monitor_tests::{
    clients_dir, pki::Pki, run_client, secret, serial, Client, Monitor, Run, Upstream,
};
use serde_json::Value;

/// The host end of the test network (see `Upstream`).
const HOST_V4: &str = "10.203.0.1";

/// An MCP server process. `deferred`: it waits for [`Server::go`] before it execs node, so a
/// monitor started meanwhile sees it bind.
struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Server {
    fn spawn(args: &[&str], deferred: bool) -> Self {
        let dir = clients_dir().join("node");
        assert!(
            dir.join("node_modules").exists(),
            "{}/node_modules is missing: run `cargo xtask setup`",
            dir.display()
        );
        let script = format!(
            "{}exec node mcp-http-server.mjs \"$@\"",
            if deferred { "read go; " } else { "" }
        );
        let mut child = Command::new("sh")
            .args(["-c", &script, "mcp-http-server"])
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting the MCP server");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stdin = child.stdin.take();
        let mut server = Self {
            child,
            stdin,
            lines,
        };
        if !deferred {
            server.wait_listening();
        }
        server
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Let a deferred server start, and wait until it listens.
    fn go(&mut self) {
        let mut stdin = self.stdin.take().expect("a deferred server");
        writeln!(stdin, "go").unwrap();
        self.wait_listening();
    }

    fn wait_listening(&mut self) {
        match self.lines.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.contains("listening") => {}
            other => panic!("the MCP server did not start: {other:?}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The SDK client with a bearer token, `rounds` times; in the upstream namespace when given.
fn client(up: Option<&Upstream>, url: &str, token: &str, rounds: u32) -> Client {
    let dir = clients_dir().join("node");
    let mut cmd = match up {
        Some(up) => {
            let mut cmd = up.command("node");
            cmd.arg("mcp-http-client.mjs");
            cmd
        }
        None => {
            let mut cmd = Command::new("node");
            cmd.arg("mcp-http-client.mjs");
            cmd
        }
    };
    cmd.arg(url)
        .current_dir(dir)
        .env("MCP_TOKEN", token)
        .env("ROUNDS", rounds.to_string())
        // The test CA's certificate names api.test, the client dials an address: the client is
        // not what is judged here.
        .env("NODE_TLS_REJECT_UNAUTHORIZED", "0")
        .env("NODE_NO_WARNINGS", "1");
    let c = run_client(&mut cmd);
    assert!(
        c.output.status.success() && c.stdout().contains("ok"),
        "the MCP client failed: {}\n{}",
        c.stdout(),
        String::from_utf8_lossy(&c.output.stderr)
    );
    c
}

fn findings<'a>(run: &'a Run, pid: u32, id: &str) -> Vec<&'a Value> {
    run.findings_of(pid)
        .into_iter()
        .filter(|f| f["id"] == id)
        .collect()
}

/// The one `MCP_ENDPOINT_PLAINTEXT` of `pid`, checked: a bearer, redacted, on `port`.
fn assert_endpoint_finding(run: &Run, pid: u32, port: u16, token: &str) {
    let found = findings(run, pid, "MCP_ENDPOINT_PLAINTEXT");
    let f = found
        .first()
        .unwrap_or_else(|| panic!("no MCP_ENDPOINT_PLAINTEXT for pid {pid}:\n{}", run.dump()));
    assert_eq!(f["severity"], "HIGH", "{f}");
    assert_eq!(f["destination"]["ip"], HOST_V4, "{f}");
    assert_eq!(f["destination"]["port"], port, "{f}");
    let e = &f["evidence"];
    assert_eq!(e["listener"], format!("{HOST_V4}:{port}"), "{f}");
    assert_eq!(e["local"], format!("{HOST_V4}:{port}"), "{f}");
    assert!(
        e["client"].as_str().unwrap().starts_with("10.203.0.2:"),
        "{f}"
    );
    assert_eq!(e["request"]["method"], "POST", "{f}");
    assert_eq!(e["request"]["path"], "/mcp", "{f}");
    assert!(e["jsonrpc_method"].is_string(), "{f}");
    assert_eq!(e["credentials"][0]["kind"], "bearer", "{f}");
    assert_eq!(
        e["credentials"][0]["location"], "header:Authorization",
        "{f}"
    );
    assert_eq!(e["credentials"][0]["length"], token.len(), "{f}");
    // One finding per (process, destination), counted.
    assert_eq!(
        found.len(),
        found
            .iter()
            .filter(|g| g["destination"] == f["destination"])
            .count()
    );
    run.assert_no_secret(token);
}

#[test]
fn plain_http_mcp_endpoint_receiving_a_bearer_is_reported() {
    let _serial = serial();
    let up = Upstream::create().unwrap();
    let port: u16 = 18080;
    let mut server = Server::spawn(&[HOST_V4, &port.to_string()], true);
    let pid = server.pid().to_string();
    let monitor = Monitor::start(&["--pid", &pid]);
    server.go();
    let token = secret("mcp-bearer");
    client(
        Some(&up),
        &format!("http://{HOST_V4}:{port}/mcp"),
        &token,
        2,
    );
    let run = monitor.stop();
    assert_endpoint_finding(&run, server.pid(), port, &token);
    let first = findings(&run, server.pid(), "MCP_ENDPOINT_PLAINTEXT")[0];
    assert_eq!(
        first["evidence"]["jsonrpc_method"], "initialize",
        "the first request of an MCP session: {first}"
    );
    assert!(
        findings(&run, server.pid(), "HSTS_MISSING").is_empty(),
        "plain HTTP has no HSTS to judge:\n{}",
        run.dump()
    );
    assert!(ingress_attached(&run), "{}", run.dump());
}

#[test]
fn listener_bound_before_the_monitor_is_marked_and_reported() {
    let _serial = serial();
    let up = Upstream::create().unwrap();
    let port: u16 = 18081;
    let server = Server::spawn(&[HOST_V4, &port.to_string()], false);
    let pid = server.pid().to_string();
    let monitor = Monitor::start(&["--pid", &pid]);
    let token = secret("mcp-early");
    client(
        Some(&up),
        &format!("http://{HOST_V4}:{port}/mcp"),
        &token,
        1,
    );
    let run = monitor.stop();
    assert_endpoint_finding(&run, server.pid(), port, &token);
    assert!(
        run.status("warning")
            .iter()
            .all(|s| s["component"] != "preexisting listeners"),
        "the listener could be marked:\n{}",
        run.dump()
    );
}

#[test]
fn loopback_only_mcp_endpoint_is_not_reported() {
    let _serial = serial();
    let port: u16 = 18082;
    let mut server = Server::spawn(&["127.0.0.1", &port.to_string()], true);
    let pid = server.pid().to_string();
    // Even with loopback traffic included: a listener on loopback only is not exposed.
    let monitor = Monitor::start(&["--pid", &pid, "--include-loopback"]);
    server.go();
    let token = secret("mcp-local");
    client(None, &format!("http://127.0.0.1:{port}/mcp"), &token, 2);
    let run = monitor.stop();
    assert!(
        findings(&run, server.pid(), "MCP_ENDPOINT_PLAINTEXT").is_empty(),
        "loopback-only listener reported:\n{}",
        run.dump()
    );
    // Nor does the host pay for it: the receive hook is attached only for a listener beyond
    // loopback.
    assert!(
        !ingress_attached(&run),
        "receive hook attached for a loopback-only listener:\n{}",
        run.dump()
    );
    run.assert_no_secret(&token);
}

/// The receive hook (`cgroup_skb/ingress`) was attached during the run.
fn ingress_attached(run: &Run) -> bool {
    run.lines
        .iter()
        .any(|l| l["component"] == "cgroup:skb_ingress" && l["status"] == "attached")
}

#[test]
fn https_mcp_endpoint_without_hsts_is_reported_and_with_it_is_not() {
    let _serial = serial();
    let up = Upstream::create().unwrap();
    let pki = Pki::create();
    let pair = pki.server();
    let (cert, key) = (pair.cert.to_str().unwrap(), pair.key.to_str().unwrap());
    let (bare_port, hsts_port): (u16, u16) = (18443, 18444);
    let mut bare = Server::spawn(&[HOST_V4, &bare_port.to_string(), "--tls", cert, key], true);
    let mut strict = Server::spawn(
        &[
            HOST_V4,
            &hsts_port.to_string(),
            "--tls",
            cert,
            key,
            "--hsts",
            "max-age=31536000; includeSubDomains",
        ],
        true,
    );
    let (bare_pid, strict_pid) = (bare.pid().to_string(), strict.pid().to_string());
    let monitor = Monitor::start(&["--pid", &bare_pid, &strict_pid]);
    bare.go();
    strict.go();
    let token = secret("mcp-tls");
    // The responses are read once the server took the TLS server role (its first handshake)
    // and the probe is attached to it: later requests are seen.
    for port in [bare_port, hsts_port] {
        client(
            Some(&up),
            &format!("https://{HOST_V4}:{port}/mcp"),
            &token,
            6,
        );
    }
    let run = monitor.stop();
    let missing = findings(&run, bare.pid(), "HSTS_MISSING");
    let f = missing
        .first()
        .unwrap_or_else(|| panic!("no HSTS_MISSING for the bare server:\n{}", run.dump()));
    assert_eq!(f["severity"], "LOW", "{f}");
    assert_eq!(f["evidence"]["header"], Value::Null, "{f}");
    assert_eq!(
        f["evidence"]["listener"],
        format!("{HOST_V4}:{bare_port}"),
        "{f}"
    );
    assert_eq!(
        f["evidence"]["local"],
        format!("{HOST_V4}:{bare_port}"),
        "{f}"
    );
    assert_eq!(f["destination"]["port"], bare_port, "{f}");
    assert!(
        run.status("attached")
            .iter()
            .any(|s| s["component"] == "uprobe:ssl_write_server"
                && s["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(&format!("pid {}", strict.pid())))),
        "the HSTS server's responses were read too:\n{}",
        run.dump()
    );
    assert!(
        findings(&run, strict.pid(), "HSTS_MISSING").is_empty(),
        "max-age=31536000 reported:\n{}",
        run.dump()
    );
    for pid in [bare.pid(), strict.pid()] {
        assert!(
            findings(&run, pid, "MCP_ENDPOINT_PLAINTEXT").is_empty(),
            "a bearer over TLS is not plaintext:\n{}",
            run.dump()
        );
    }
    run.assert_no_secret(&token);
}
