//! MCP discovery end to end, in the default mode (`--mcp`): servers whose names say nothing about
//! MCP are found by what they are built from (the Node quickstart's `package.json`, the Python
//! quickstart's `from mcp.server.fastmcp import FastMCP`, a Go binary's module list), started
//! after the monitor; the same programs without an MCP SDK are not watched at all.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use egress_monitor_tests::{
    clients_dir, go_build_dir, monitor_bin, ok, pki::Pki, run_client, secret, serial, Monitor, Run,
    Upstream, Waiting,
};
use serde_json::Value;

const HTTP: u16 = 8080;
const HTTPS: u16 = 8443;

/// A scratch directory whose path has no MCP-looking word in it (names must not decide here).
fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("em-discovery-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

fn lines_of(run: &Run, pid: u32) -> Vec<&Value> {
    run.lines
        .iter()
        .filter(|l| l["process"]["pid"] == pid)
        .collect()
}

/// The `target` event of `pid`, whose reason must contain `because`.
fn assert_target(run: &Run, pid: u32, because: &str) {
    let targets = run.events("target");
    let t = targets
        .iter()
        .find(|t| t["process"]["pid"] == pid)
        .unwrap_or_else(|| panic!("pid {pid} was not watched:\n{}", run.dump()));
    let reason = t["reason"].as_str().unwrap();
    assert!(
        reason.contains(because),
        "pid {pid} watched for {reason:?}, expected {because:?}"
    );
    assert_eq!(t["process"]["mcp"], true, "{t}");
}

fn assert_finding(run: &Run, pid: u32, id: &str) {
    let f = run
        .findings_of(pid)
        .into_iter()
        .find(|f| f["id"] == id)
        .unwrap_or_else(|| panic!("no {id} for pid {pid}:\n{}", run.dump()));
    assert_eq!(f["process"]["mcp"], true, "{f}");
}

fn assert_unwatched(run: &Run, pid: u32, what: &str) {
    let lines = lines_of(run, pid);
    assert!(
        lines.is_empty(),
        "{what} (pid {pid}) is not an MCP server, yet the monitor printed:\n{lines:#?}"
    );
}

/// The Node quickstart layout: `package.json` (with the SDK or without), `build/index.js`, the
/// API token in `.token`, the test clients' `node_modules`.
fn node_layout(root: &Path, name: &str, with_sdk: bool, token: &str) -> PathBuf {
    let dir = root.join(name);
    let deps = if with_sdk {
        r#""@modelcontextprotocol/sdk": "1.32.2", "zod": "3.25.76""#
    } else {
        r#""undici": "6.29.1""#
    };
    write(
        &dir.join("package.json"),
        &format!(
            r#"{{"name": "{name}", "version": "1.0.0", "type": "module", "bin": {{"{name}": "./build/index.js"}}, "dependencies": {{{deps}}}}}"#
        ),
    );
    write(&dir.join(".token"), token);
    let request = r#"
import http from "node:http";
import fs from "node:fs";
const token = fs.readFileSync(new URL("../.token", import.meta.url), "utf8").trim();
const forecast = (url) =>
  new Promise((resolve, reject) => {
    http
      .get(url, { headers: { Authorization: `Bearer ${token}` } }, (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode));
      })
      .on("error", reject);
  });
"#;
    let script = if with_sdk {
        format!(
            r#"#!/usr/bin/env node
import {{ McpServer }} from "@modelcontextprotocol/sdk/server/mcp.js";
import {{ StdioServerTransport }} from "@modelcontextprotocol/sdk/server/stdio.js";
import {{ z }} from "zod";
{request}
const server = new McpServer({{ name: "{name}", version: "1.0.0" }});
server.registerTool(
  "get_forecast",
  {{ description: "Get the forecast", inputSchema: {{ url: z.string() }} }},
  async ({{ url }}) => ({{ content: [{{ type: "text", text: `status ${{await forecast(url)}}` }}] }}),
);
await server.connect(new StdioServerTransport());
"#
        )
    } else {
        format!("#!/usr/bin/env node\n{request}\nconsole.log(await forecast(process.argv[2]));\n")
    };
    write(&dir.join("build/index.js"), &script);
    std::os::unix::fs::symlink(
        clients_dir().join("node/node_modules"),
        dir.join("node_modules"),
    )
    .unwrap();
    dir
}

#[test]
fn node_quickstart_server_is_found_by_its_package() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    up.tcp_server(HTTP);
    let root = scratch("node");
    let token = secret("weather-token");
    let weather = node_layout(&root, "weather", true, &token);
    let plain = node_layout(&root, "plain", false, &token);
    let url = format!("http://{}:{HTTP}/points", up.v4);

    let monitor = Monitor::start(&[]);
    // An MCP client on the official SDK starts the server over stdio, as desktop hosts do.
    let client = run_client(
        Command::new("node")
            .arg(clients_dir().join("node/run-tool.mjs"))
            .arg(weather.join("build/index.js"))
            .arg("get_forecast")
            .arg(serde_json::json!({ "url": url }).to_string()),
    );
    ok(&client, "the MCP client");
    let reply: Value = serde_json::from_str(client.stdout().trim()).unwrap();
    let server = reply["serverPid"].as_u64().unwrap() as u32;
    assert!(
        reply["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("status 200"),
        "{reply}"
    );
    let twin = run_client(
        Command::new("node")
            .arg(plain.join("build/index.js"))
            .arg(&url),
    );
    ok(&twin, "the same client without the SDK");
    let run = monitor.stop();

    assert_target(
        &run,
        server,
        "package.json lists @modelcontextprotocol/sdk in dependencies",
    );
    assert_finding(&run, server, "PLAINTEXT_CREDENTIALS");
    assert_unwatched(&run, twin.pid, "the Node layout without the SDK");
    assert_unwatched(
        &run,
        client.pid,
        "the MCP client (it imports only the SDK's client side)",
    );
    run.assert_no_secret(&token);
    let _ = std::fs::remove_dir_all(root);
}

const WEATHER_PY: &str = r#"import sys
from typing import Any

import httpx
from mcp.server.fastmcp import FastMCP

mcp = FastMCP("weather")


@mcp.tool()
async def get_alerts(state: str) -> str:
    """Get weather alerts for a US state."""
    return state


if __name__ == "__main__":
    # The upstream's health check, with verification off (its certificate is self-signed).
    print(httpx.get(sys.argv[1], verify=False).status_code)
"#;

#[test]
fn python_quickstart_server_is_found_by_its_imports() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    let pki = Pki::create();
    up.https_server(&pki.self_signed(), HTTPS);
    let root = scratch("python");
    let weather = root.join("weather");
    write(&weather.join("weather.py"), WEATHER_PY);
    // The same program without the SDK, in a venv without it.
    let plain = root.join("plain");
    let plain_py: String = WEATHER_PY
        .lines()
        .filter(|l| !l.contains("mcp") && !l.starts_with('@'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("async def get_alerts", "def get_alerts");
    write(&plain.join("weather.py"), &plain_py);
    let url = format!("https://{}:{HTTPS}/", up.v4);
    let mcp_python = clients_dir().join("python-mcp/.venv/bin/python3");
    let plain_python = clients_dir().join("python/.venv/bin/python3");
    for p in [&mcp_python, &plain_python] {
        assert!(
            p.exists(),
            "{} is missing: run `cargo xtask setup`",
            p.display()
        );
    }

    let monitor = Monitor::start(&[]);
    // As `uv --directory weather run weather.py` runs it: the venv's interpreter, a relative
    // script in the project directory.
    let server = run_client(
        Command::new(&mcp_python)
            .arg("weather.py")
            .arg(&url)
            .current_dir(&weather),
    );
    ok(&server, "the Python MCP server");
    let twin = run_client(
        Command::new(&plain_python)
            .arg("weather.py")
            .arg(&url)
            .current_dir(&plain),
    );
    ok(&twin, "the same program without the SDK");
    let run = monitor.stop();

    assert_target(&run, server.pid, "weather.py imports mcp");
    assert_finding(&run, server.pid, "TLS_VERIFY_DISABLED");
    assert_unwatched(&run, twin.pid, "the Python program without the SDK");
    let _ = std::fs::remove_dir_all(root);
}

const GO_MAIN: &str = r#"package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"strings"
	MCPIMPORT
)

func main() {
	MCPUSE
	// A stdio server calls upstream when its client asks: wait for a request line.
	bufio.NewReader(os.Stdin).ReadString('\n')
	token, _ := os.ReadFile(os.Args[2])
	req, _ := http.NewRequest("GET", os.Args[1], nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode)
}
"#;

/// Build a Go program offline: with `mcp`, it depends on a local module that has the path of
/// mark3labs/mcp-go (a `replace` directive), so its build information lists that module.
fn go_build(dir: &Path, mcp: bool, strip: bool, out: &Path) {
    let (import, usage) = if mcp {
        (
            r#"mcpserver "github.com/mark3labs/mcp-go/server""#,
            "_ = mcpserver.Name",
        )
    } else {
        ("", "")
    };
    write(
        &dir.join("main.go"),
        &GO_MAIN
            .replace("MCPIMPORT", import)
            .replace("MCPUSE", usage),
    );
    let mut gomod = "module example.com/weather\n\ngo 1.19\n".to_string();
    if mcp {
        gomod.push_str(
            "\nrequire github.com/mark3labs/mcp-go v0.0.0\n\nreplace github.com/mark3labs/mcp-go => ./mcp-go\n",
        );
        write(
            &dir.join("mcp-go/go.mod"),
            "module github.com/mark3labs/mcp-go\n\ngo 1.19\n",
        );
        write(
            &dir.join("mcp-go/server/server.go"),
            "package server\n\n// Name of this server framework.\nconst Name = \"mcp-go\"\n",
        );
    }
    write(&dir.join("go.mod"), &gomod);
    go_build_dir(dir, strip, out);
}

#[test]
fn go_server_is_found_by_its_build_info() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    up.tcp_server(HTTP);
    let root = scratch("go");
    let token = secret("go-token");
    write(&root.join("token"), &token);
    // A stripped release build keeps its build information.
    let server = root.join("weather-server");
    go_build(&root.join("src-server"), true, true, &server);
    let plain = root.join("weather-plain");
    go_build(&root.join("src-plain"), false, true, &plain);
    let url = format!("http://{}:{HTTP}/points", up.v4);

    let monitor = Monitor::start(&[]);
    // Started after the monitor; each waits for its client's request (a line on stdin).
    let s = Waiting::spawn(Command::new(&server).arg(&url).arg(root.join("token")));
    let twin = Waiting::spawn(Command::new(&plain).arg(&url).arg(root.join("token")));
    let (s_pid, twin_pid) = (s.pid(), twin.pid());
    assert!(
        monitor.wait_for(Duration::from_secs(10), |l| l["event"] == "target"
            && l["process"]["pid"] == s_pid),
        "the Go MCP server (pid {s_pid}) was not found"
    );
    for (w, what) in [
        (s, "the Go MCP server"),
        (twin, "the program without the module"),
    ] {
        let out = w.release();
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let run = monitor.stop();

    assert_target(
        &run,
        s_pid,
        "built with the MCP module github.com/mark3labs/mcp-go",
    );
    assert_finding(&run, s_pid, "PLAINTEXT_CREDENTIALS");
    assert_unwatched(&run, twin_pid, "the Go program without the MCP module");
    run.assert_no_secret(&token);
    let _ = std::fs::remove_dir_all(root);
}

/// A server already running when the monitor starts: the ready line names it with its reason,
/// and so does `doctor`.
#[test]
fn running_servers_are_listed_by_the_ready_line_and_doctor() {
    let _s = serial();
    let root = scratch("listed");
    let weather = node_layout(&root, "weather", true, "unused");
    // A stdio MCP server waits for its client on stdin.
    let mut server = Command::new("node")
        .arg(weather.join("build/index.js"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = server.id();
    std::thread::sleep(Duration::from_millis(500));

    let doctor = Command::new(monitor_bin())
        .args(["doctor", "--format", "json"])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&doctor.stdout).unwrap();
    egress_monitor_tests::schema::check_doctor(&doc);
    let listed = doc["mcp_servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["pid"] == pid)
        .unwrap_or_else(|| panic!("doctor does not list pid {pid}: {doc}"));
    assert!(
        listed["reason"]
            .as_str()
            .unwrap()
            .contains("lists @modelcontextprotocol/sdk"),
        "{listed}"
    );
    let text = Command::new(monitor_bin()).arg("doctor").output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!("pid {pid} node: ")),
        "doctor's text names the server:\n{text}"
    );

    let monitor = Monitor::start(&[]);
    let run = monitor.stop();
    let _ = server.kill();
    let _ = server.wait();
    let ready = run.status("ready");
    let message = ready[0]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("pid {pid} node (")) && message.contains("package.json"),
        "the ready line lists the server: {message}"
    );
    assert_target(&run, pid, "lists @modelcontextprotocol/sdk");
    let _ = std::fs::remove_dir_all(root);
}
