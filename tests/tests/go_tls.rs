//! Go `crypto/tls` end to end: real Go clients (standard library only, built offline by the
//! test, with and without `-ldflags "-s -w"`) against real TLS servers in the upstream
//! namespace. `InsecureSkipVerify` and an accept-everything `VerifyPeerCertificate` must be
//! reported with the same finding ids and evidence as OpenSSL clients; the same client trusting
//! the test CA (through `tls.Config.RootCAs` or `SSL_CERT_FILE`) must produce a verified
//! `tls_handshake` event and no finding. A bearer token rides every request and must never
//! appear in the monitor's output.
//!
//! Each client waits for a line on stdin (as a stdio MCP server waits for its client) until the
//! monitor says its probes are attached: a Go process is covered from then on.
use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use egress_monitor_tests::{
    go_build_dir, pki::Pki, secret, serial, Monitor, Run, Upstream, Waiting,
};

const SELF_SIGNED: u16 = 8443;
const CA_SIGNED: u16 = 9443;

/// `client MODE URL UPSTREAM_IP TOKEN_FILE [CA_FILE]`: one HTTPS GET with a bearer token, after
/// a line on stdin. `api.test` is dialled at the upstream's address (the name is what the test
/// is about, not DNS); the dialer returns a `*net.TCPConn`, as Go's own does.
const GO_CLIENT: &str = r#"package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
)

func main() {
	mode, url, ip, tokenFile := os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	cfg := &tls.Config{}
	switch mode {
	case "insecure":
		cfg.InsecureSkipVerify = true
	case "callback":
		// The usual "fix" for a certificate error: skip verification, accept anything.
		cfg.InsecureSkipVerify = true
		cfg.VerifyPeerCertificate = func([][]byte, [][]*x509.Certificate) error { return nil }
	case "rootcas":
		pem, err := os.ReadFile(os.Args[5])
		if err != nil {
			panic(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		cfg.RootCAs = pool
	case "system":
		// The system roots: SSL_CERT_FILE names the test CA.
	}
	dialer := &net.Dialer{}
	transport := &http.Transport{
		TLSClientConfig: cfg,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, strings.Replace(addr, "api.test", ip, 1))
		},
	}
	bufio.NewReader(os.Stdin).ReadString('\n')
	token, _ := os.ReadFile(tokenFile)
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := (&http.Client{Transport: transport}).Do(req)
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode)
}
"#;

/// A Go program that makes no TLS connection: its binary has no crypto/tls client code.
const GO_PLAIN: &str = r#"package main

import (
	"bufio"
	"fmt"
	"os"
)

func main() {
	bufio.NewReader(os.Stdin).ReadString('\n')
	fmt.Println("200")
}
"#;

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("em-go-tls-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Build a Go program offline (standard library only) into `out`.
fn go_build_source(dir: &Path, source: &str, strip: bool, out: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("main.go"), source).unwrap();
    std::fs::write(dir.join("go.mod"), "module example.com/client\n\ngo 1.18\n").unwrap();
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    go_build_dir(dir, strip, out);
}

/// Build the client into `out`.
fn go_build(dir: &Path, strip: bool, out: &Path) {
    go_build_source(dir, GO_CLIENT, strip, out);
}

struct Setup {
    up: Upstream,
    pki: Pki,
    root: PathBuf,
    token: String,
}

fn setup(tag: &str) -> Setup {
    let up = Upstream::create().unwrap();
    let pki = Pki::create();
    up.https_server(&pki.self_signed(), SELF_SIGNED);
    up.https_server(&pki.server(), CA_SIGNED);
    let root = scratch(tag);
    let token = secret("go-tls-token");
    std::fs::write(root.join("token"), &token).unwrap();
    Setup {
        up,
        pki,
        root,
        token,
    }
}

/// A client run: its pid and what it printed.
struct Ran {
    pid: u32,
    output: Output,
}

impl Ran {
    fn succeeded(&self, what: &str) {
        assert!(
            self.output.status.success()
                && String::from_utf8_lossy(&self.output.stdout).trim() == "200",
            "{what}: {}{}",
            String::from_utf8_lossy(&self.output.stdout),
            String::from_utf8_lossy(&self.output.stderr)
        );
    }
}

/// Start `bin` in `mode` against `port`, wait until the monitor has probed it, let it go.
fn client(
    s: &Setup,
    monitor: &Monitor,
    bin: &Path,
    mode: &str,
    port: u16,
    env: &[(&str, &str)],
) -> Ran {
    let url = format!("https://api.test:{port}/v1/items");
    let mut cmd = Command::new(bin);
    cmd.args([mode, &url, s.up.v4])
        .arg(s.root.join("token"))
        .arg(s.pki.ca())
        .envs(env.iter().copied());
    let client = Waiting::spawn(&mut cmd);
    let pid = client.pid();
    let attached = monitor.wait_for(Duration::from_secs(20), |l| {
        l["type"] == "status"
            && l["status"] == "attached"
            && l["message"]
                .as_str()
                .is_some_and(|m| m.contains("Go crypto/tls") && m.contains(&format!("pid {pid}:")))
    });
    assert!(
        attached,
        "no Go crypto/tls probes for pid {pid} ({mode}):\n{}",
        monitor
            .snapshot()
            .iter()
            .filter(|l| l["type"] == "status")
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    Ran {
        pid,
        output: client.release(),
    }
}

/// The bypass findings, with the evidence shapes OpenSSL clients get.
fn assert_bypass(run: &Run, s: &Setup, pid: u32, what: &str) {
    assert_eq!(
        run.ids(pid),
        vec!["TLS_INVALID_CERT_ACCEPTED", "TLS_VERIFY_DISABLED"],
        "{what}:\n{}",
        run.dump()
    );
    for id in ["TLS_VERIFY_DISABLED", "TLS_INVALID_CERT_ACCEPTED"] {
        let f = run.finding(pid, id);
        assert_eq!(f["severity"], "HIGH", "{what}: {f}");
        assert_eq!(f["destination"]["ip"], s.up.v4, "{what}: {f}");
        assert_eq!(f["destination"]["port"], SELF_SIGNED, "{what}: {f}");
        assert_eq!(f["destination"]["hostname"], "api.test", "{what}: {f}");
        let e = &f["evidence"];
        assert_eq!(e["library"], "go", "{what}: {f}");
        assert_eq!(e["verify_mode"], "none", "{what}: {f}");
        assert_eq!(e["server_name"], "api.test", "{what}: {f}");
        assert_eq!(e["application_data"], true, "{what}: {f}");
        assert!(
            e["certificate"]["subject"]
                .as_str()
                .is_some_and(|s| s.contains("api.test")),
            "{what}: {f}"
        );
        assert_eq!(e["certificate"]["self_signed"], true, "{what}: {f}");
        assert!(
            e["certificate"]["spki_sha256"]
                .as_str()
                .is_some_and(|p| p.starts_with("sha256/")),
            "{what}: {f}"
        );
        assert!(
            e["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{what}: {f}"
        );
    }
    let f = run.finding(pid, "TLS_VERIFY_DISABLED");
    assert!(
        f["evidence"]["reason"]
            .as_str()
            .unwrap()
            .contains("InsecureSkipVerify"),
        "{what}: {f}"
    );
    let f = run.finding(pid, "TLS_INVALID_CERT_ACCEPTED");
    assert_eq!(
        f["evidence"]["accepted_because"], "verification was off",
        "{what}: {f}"
    );
    let handshakes = run.handshakes_of(pid);
    assert_eq!(handshakes.len(), 1, "{what}:\n{}", run.dump());
    let tls = &handshakes[0]["tls"];
    assert_eq!(tls["library"], "go", "{what}: {tls}");
    assert!(
        tls["library_path"]
            .as_str()
            .is_some_and(|p| p.starts_with('/')),
        "{what}: {tls}"
    );
    assert_eq!(tls["handshake"], "completed", "{what}: {tls}");
    assert_eq!(tls["application_data"], true, "{what}: {tls}");
    assert_eq!(tls["verification"]["trusted_here"], false, "{what}: {tls}");
    assert_eq!(tls["chain_length"], 1, "{what}: {tls}");
}

/// A verified session: a `tls_handshake` event saying so, and nothing to report.
fn assert_verified(run: &Run, pid: u32, what: &str) {
    assert_eq!(
        run.ids(pid),
        Vec::<String>::new(),
        "{what} must produce no finding:\n{}",
        run.dump()
    );
    let handshakes = run.handshakes_of(pid);
    assert_eq!(handshakes.len(), 1, "{what}:\n{}", run.dump());
    let tls = &handshakes[0]["tls"];
    assert_eq!(tls["library"], "go", "{what}: {tls}");
    assert_eq!(tls["verify_mode"], "peer", "{what}: {tls}");
    assert_eq!(tls["verification"]["openssl"], "ok", "{what}: {tls}");
    assert_eq!(tls["verification"]["summary"], "verified", "{what}: {tls}");
    assert_eq!(
        tls["verification"]["trusted_here"], true,
        "{what}: the monitor trusts the test CA too: {tls}"
    );
    assert_eq!(tls["certificate"]["sans"][0], "api.test", "{what}: {tls}");
    assert_eq!(tls["chain_length"], 1, "{what}: {tls}");
    assert_eq!(handshakes[0]["destination"]["port"], CA_SIGNED, "{what}");
}

#[test]
fn go_clients_skipping_verification_and_their_verifying_twins() {
    let _s = serial();
    let s = setup("clients");
    let full = s.root.join("full/go-tls-client");
    let stripped = s.root.join("stripped/go-tls-client");
    go_build(&s.root.join("src-full"), false, &full);
    go_build(&s.root.join("src-stripped"), true, &stripped);
    let plain = s.root.join("plain/go-plain");
    go_build_source(&s.root.join("src-plain"), GO_PLAIN, true, &plain);
    let config = s.pki.config();
    let monitor = Monitor::start(&[
        "--config",
        config.to_str().unwrap(),
        "--comm",
        "go-tls-client",
        "go-plain",
    ]);

    // A stripped Go binary without crypto/tls client code: said once, and the run goes on.
    let waiting = Waiting::spawn(&mut Command::new(&plain));
    let plain_pid = waiting.pid();
    let said = monitor.wait_for(Duration::from_secs(20), |l| {
        l["type"] == "status"
            && l["status"] == "skipped"
            && l["message"].as_str().is_some_and(|m| {
                m.contains(&format!("pid {plain_pid}:"))
                    && m.contains("without a crypto/tls client handshake")
            })
    });
    let out = waiting.release();
    assert!(
        said,
        "no skipped status for the Go binary without crypto/tls"
    );
    assert!(out.status.success());

    let ca = s.pki.ca();
    let ca_env = [("SSL_CERT_FILE", ca.to_str().unwrap())];

    let insecure = client(&s, &monitor, &full, "insecure", SELF_SIGNED, &[]);
    let insecure_stripped = client(&s, &monitor, &stripped, "insecure", SELF_SIGNED, &[]);
    let callback = client(&s, &monitor, &stripped, "callback", SELF_SIGNED, &[]);
    let rootcas = client(&s, &monitor, &full, "rootcas", CA_SIGNED, &[]);
    let system = client(&s, &monitor, &stripped, "system", CA_SIGNED, &ca_env);
    // Verification on, the self-signed peer: Go refuses (an alert instead of its Finished),
    // nothing is accepted, and the refusal is reported as the untrusted CA it is.
    let refused = client(&s, &monitor, &full, "rootcas", SELF_SIGNED, &[]);
    let run = monitor.stop();

    insecure.succeeded("InsecureSkipVerify");
    insecure_stripped.succeeded("InsecureSkipVerify, stripped");
    callback.succeeded("VerifyPeerCertificate returning nil");
    rootcas.succeeded("RootCAs");
    system.succeeded("SSL_CERT_FILE");
    assert!(
        !refused.output.status.success(),
        "Go must refuse the self-signed certificate with verification on"
    );

    assert_bypass(&run, &s, insecure.pid, "InsecureSkipVerify");
    assert_bypass(
        &run,
        &s,
        insecure_stripped.pid,
        "InsecureSkipVerify (stripped -s -w)",
    );
    assert_bypass(
        &run,
        &s,
        callback.pid,
        "InsecureSkipVerify with an accept-all VerifyPeerCertificate",
    );
    assert_verified(&run, rootcas.pid, "tls.Config.RootCAs");
    assert_verified(&run, system.pid, "SSL_CERT_FILE");
    assert_eq!(
        run.ids(refused.pid),
        vec!["TLS_UNTRUSTED_CA".to_string()],
        "a refused handshake accepted nothing, and its CA is not trusted:\n{}",
        run.dump()
    );
    let handshakes = run.handshakes_of(refused.pid);
    assert!(!handshakes.is_empty(), "{}", run.dump());
    for handshake in handshakes {
        assert_eq!(handshake["tls"]["application_data"], false, "{handshake}");
        assert_eq!(handshake["tls"]["verify_mode"], "peer", "{handshake}");
        assert_eq!(
            handshake["tls"]["verification"]["summary"],
            "rejected by crypto/tls (the client answered with an alert)",
            "{handshake}"
        );
    }
    run.assert_no_secret(&s.token);
    let _ = std::fs::remove_dir_all(&s.root);
}

#[test]
fn a_go_mcp_server_started_after_the_monitor() {
    let _s = serial();
    let s = setup("mcp");
    let server = s.root.join("bin/github-mcp-server");
    go_build(&s.root.join("src"), true, &server);
    let config = s.pki.config();
    // `--mcp` (the default): found by its name when it starts.
    let monitor = Monitor::start(&["--config", config.to_str().unwrap()]);
    let ran = client(&s, &monitor, &server, "insecure", SELF_SIGNED, &[]);
    let run = monitor.stop();
    ran.succeeded("the Go MCP server");
    let target = run
        .events("target")
        .into_iter()
        .find(|l| l["process"]["pid"] == ran.pid)
        .unwrap_or_else(|| panic!("pid {} was not targeted:\n{}", ran.pid, run.dump()));
    assert_eq!(target["process"]["mcp"], true, "{target}");
    assert_bypass(&run, &s, ran.pid, "a Go MCP server with InsecureSkipVerify");
    run.assert_no_secret(&s.token);
    let _ = std::fs::remove_dir_all(&s.root);
}
