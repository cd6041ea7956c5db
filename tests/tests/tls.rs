//! TLS findings end to end: real clients (Python ssl/requests/httpx/asyncio, Node https/tls/
//! fetch, curl) against real TLS servers in the upstream namespace, with a self-signed
//! certificate, one from a test CA, and one for the wrong name. Every bypass must be reported
//! with its evidence, and the same client verifying correctly must produce a `tls_handshake`
//! event and no finding.
use std::process::Command;

use egress_monitor_tests::{
    node_module, ok, pki::Pki, run_client, serial, venv_python, Monitor, Run, Upstream,
};
use serde_json::Value;

const SELF_SIGNED: u16 = 8443;
const CA_SIGNED: u16 = 9443;
const WRONG_NAME: u16 = 10443;

/// An upstream with the three servers, the PKI, and a monitor that trusts the test CA.
struct Setup {
    up: Upstream,
    pki: Pki,
}

fn setup() -> Setup {
    let up = Upstream::create().unwrap();
    let pki = Pki::create();
    up.https_server(&pki.self_signed(), SELF_SIGNED);
    up.https_server(&pki.server(), CA_SIGNED);
    up.https_server(&pki.wrong_name(), WRONG_NAME);
    Setup { up, pki }
}

fn monitor(s: &Setup, comm: &[&str]) -> Monitor {
    let config = s.pki.config();
    let mut args = vec!["--config", config.to_str().unwrap(), "--comm"];
    args.extend_from_slice(comm);
    Monitor::start(&args)
}

/// The finding's destination and the certificate evidence a responder needs.
fn assert_tls_evidence(f: &Value, ip: &str, port: u16, subject_cn: &str) {
    assert_eq!(f["destination"]["ip"], ip, "{f}");
    assert_eq!(f["destination"]["port"], port, "{f}");
    let cert = &f["evidence"]["certificate"];
    assert!(
        cert["subject"]
            .as_str()
            .is_some_and(|s| s.contains(subject_cn)),
        "{f}"
    );
    assert!(
        cert["spki_sha256"]
            .as_str()
            .is_some_and(|s| s.starts_with("sha256/")),
        "{f}"
    );
    assert!(
        cert["not_after"].as_str().is_some() && cert["issuer"].as_str().is_some(),
        "{f}"
    );
    assert!(
        f["evidence"]["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{f}"
    );
    assert!(
        f["remediation"].as_str().is_some_and(|r| r.len() > 40),
        "{f}"
    );
}

/// Exactly one verified handshake and nothing to report.
fn assert_clean(run: &Run, pid: u32, what: &str) {
    assert_eq!(
        run.ids(pid),
        Vec::<String>::new(),
        "{what} must produce no finding:\n{}",
        run.dump()
    );
    let handshakes = run.handshakes_of(pid);
    assert!(
        !handshakes.is_empty(),
        "{what}: no tls_handshake event:\n{}",
        run.dump()
    );
    let tls = &handshakes[0]["tls"];
    assert_eq!(tls["verification"]["openssl"], "ok", "{what}: {tls}");
    assert_eq!(
        tls["verification"]["trusted_here"], true,
        "{what}: the monitor trusts the test CA too: {tls}"
    );
    assert_eq!(tls["certificate"]["sans"][0], "api.test", "{what}: {tls}");
}

/// Python resolves api.test to the upstream (the name is what the test is about, not DNS).
fn py_prelude(up: &Upstream) -> String {
    format!(
        "import socket\n_gai = socket.getaddrinfo\nsocket.getaddrinfo = lambda h, *a, **k: _gai('{}' if h == 'api.test' else h, *a, **k)\n",
        up.v4
    )
}

const PY_SSL: &str = r#"
import socket, ssl, sys
mode, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if mode == "unverified":
    ctx = ssl._create_unverified_context()
elif mode == "no-hostname-check":
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
else:
    ctx = ssl.create_default_context(cafile=ca)
with socket.create_connection(("api.test", port)) as sock:
    with ctx.wrap_socket(sock, server_hostname="api.test") as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n")
        print(s.recv(100).split(b"\r\n")[0].decode())
"#;

#[test]
fn python_ssl_module() {
    let _s = serial();
    let s = setup();
    let ca = s.pki.ca();
    let ca = ca.to_str().unwrap();
    let monitor = monitor(&s, &["python3"]);
    let code = format!("{}{PY_SSL}", py_prelude(&s.up));
    let py =
        |mode: &str, port: u16| run_client(venv_python(&code).args([mode, &port.to_string(), ca]));
    let unverified = py("unverified", SELF_SIGNED);
    let unchecked = py("no-hostname-check", CA_SIGNED);
    let unchecked_wrong = py("no-hostname-check", WRONG_NAME);
    let verified = py("default", CA_SIGNED);
    let refused_name = py("default", WRONG_NAME);
    for (c, what) in [
        (&unverified, "unverified"),
        (&unchecked, "check_hostname=False"),
        (&verified, "default"),
    ] {
        ok(c, what);
        assert_eq!(c.stdout().trim(), "HTTP/1.1 200 OK", "{what}");
    }
    assert!(
        !refused_name.output.status.success(),
        "the default context refuses the wrong name"
    );
    let run = monitor.stop();

    let f = run.finding(unverified.pid, "TLS_VERIFY_DISABLED");
    assert_tls_evidence(f, s.up.v4, SELF_SIGNED, "api.test");
    assert_eq!(f["evidence"]["verify_mode"], "none");
    assert_eq!(f["destination"]["hostname"], "api.test");
    assert!(run
        .ids(unverified.pid)
        .contains(&"TLS_INVALID_CERT_ACCEPTED".to_string()));

    let f = run.finding(unchecked.pid, "TLS_HOSTNAME_UNCHECKED");
    assert_tls_evidence(f, s.up.v4, CA_SIGNED, "api.test");
    assert_eq!(
        run.ids(unchecked.pid),
        vec!["TLS_HOSTNAME_UNCHECKED"],
        "{}",
        run.dump()
    );

    // Verified chain, wrong name, no hostname check: both the configuration and its effect.
    let wrong = run.ids(unchecked_wrong.pid);
    assert!(
        wrong.contains(&"TLS_HOSTNAME_UNCHECKED".to_string()),
        "{wrong:?}"
    );
    assert!(
        wrong.contains(&"TLS_HOSTNAME_MISMATCH_ACCEPTED".to_string()),
        "{wrong:?}"
    );
    let f = run.finding(unchecked_wrong.pid, "TLS_HOSTNAME_MISMATCH_ACCEPTED");
    assert_tls_evidence(f, s.up.v4, WRONG_NAME, "other.test");

    assert_clean(
        &run,
        verified.pid,
        "Python's default context with the CA installed",
    );
    // Refused for the wrong name: nothing was accepted, and the CA is not the problem.
    assert_eq!(
        run.ids(refused_name.pid),
        Vec::<String>::new(),
        "{}",
        run.dump()
    );
    let hs = &run.handshakes_of(refused_name.pid)[0]["tls"];
    assert_eq!(
        hs["verification"]["openssl_error"], "hostname_mismatch",
        "{hs}"
    );
}

const PY_HTTP: &str = r#"
import sys, warnings
warnings.filterwarnings("ignore")
lib, verify, url = sys.argv[1], sys.argv[2], sys.argv[3]
verify = False if verify == "off" else verify
if lib == "requests":
    import requests
    print(requests.get(url, verify=verify, timeout=5).status_code)
else:
    import httpx
    print(httpx.get(url, verify=verify, timeout=5).status_code)
"#;

#[test]
fn python_requests_and_httpx() {
    let _s = serial();
    let s = setup();
    let ca = s.pki.ca();
    let monitor = monitor(&s, &["python3"]);
    let code = format!("{}{PY_HTTP}", py_prelude(&s.up));
    let get = |lib: &str, verify: &str, port: u16| {
        let url = format!("https://api.test:{port}/");
        let c = run_client(venv_python(&code).args([lib, verify, &url]));
        ok(&c, &format!("{lib} verify={verify}"));
        assert_eq!(c.stdout().trim(), "200");
        c
    };
    let requests_off = get("requests", "off", SELF_SIGNED);
    let httpx_off = get("httpx", "off", SELF_SIGNED);
    let requests_ca = get("requests", ca.to_str().unwrap(), CA_SIGNED);
    let httpx_ca = get("httpx", ca.to_str().unwrap(), CA_SIGNED);
    let run = monitor.stop();
    for c in [&requests_off, &httpx_off] {
        let f = run.finding(c.pid, "TLS_VERIFY_DISABLED");
        assert_tls_evidence(f, s.up.v4, SELF_SIGNED, "api.test");
    }
    assert_clean(&run, requests_ca.pid, "requests with verify=CA");
    assert_clean(&run, httpx_ca.pid, "httpx with verify=CA");
}

const PY_ASYNCIO: &str = r#"
import asyncio, ssl, sys
mode, host, port, ca = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
ctx = ssl._create_unverified_context() if mode == "unverified" else ssl.create_default_context(cafile=ca)
async def main():
    r, w = await asyncio.open_connection(host, port, ssl=ctx, server_hostname="api.test")
    w.write(b"GET / HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n")
    print((await r.readline()).decode().strip())
    w.close()
asyncio.run(main())
"#;

#[test]
fn python_asyncio_memory_bios() {
    let _s = serial();
    let s = setup();
    let ca = s.pki.ca();
    let monitor = monitor(&s, &["python3"]);
    let run_mode = |mode: &str, port: u16| {
        let c = run_client(venv_python(PY_ASYNCIO).args([
            mode,
            s.up.v4,
            &port.to_string(),
            ca.to_str().unwrap(),
        ]));
        ok(&c, mode);
        assert_eq!(c.stdout().trim(), "HTTP/1.1 200 OK");
        c
    };
    let unverified = run_mode("unverified", SELF_SIGNED);
    let verified = run_mode("default", CA_SIGNED);
    let run = monitor.stop();
    // No SSL_set_fd with memory BIOs: the destination comes from the connect on the same thread.
    let f = run.finding(unverified.pid, "TLS_VERIFY_DISABLED");
    assert_tls_evidence(f, s.up.v4, SELF_SIGNED, "api.test");
    assert_clean(&run, verified.pid, "asyncio with the default context");
}

#[test]
fn curl_insecure_untrusted_ca_and_verified() {
    let _s = serial();
    let s = setup();
    let monitor = monitor(&s, &["curl"]);
    let resolve = |port: u16| format!("api.test:{port}:{}", s.up.v4);
    let curl = |port: u16, extra: &[&str]| {
        run_client(
            Command::new("curl")
                .args(["-sS", "--max-time", "5", "--resolve", &resolve(port)])
                .args(extra)
                .arg(format!("https://api.test:{port}/")),
        )
    };
    let insecure = curl(SELF_SIGNED, &["-k"]);
    ok(&insecure, "curl -k");
    let untrusted = curl(CA_SIGNED, &[]);
    assert!(
        !untrusted.output.status.success(),
        "curl without the CA refuses the server"
    );
    let ca = s.pki.ca();
    let verified = curl(CA_SIGNED, &["--cacert", ca.to_str().unwrap()]);
    ok(&verified, "curl --cacert");
    let run = monitor.stop();

    let f = run.finding(insecure.pid, "TLS_VERIFY_DISABLED");
    assert_tls_evidence(f, s.up.v4, SELF_SIGNED, "api.test");
    let f = run.finding(untrusted.pid, "TLS_UNTRUSTED_CA");
    assert_eq!(f["severity"], "MEDIUM");
    assert_tls_evidence(f, s.up.v4, CA_SIGNED, "api.test");
    assert!(
        f["evidence"]["reason"]
            .as_str()
            .unwrap()
            .contains("egress-monitor test CA")
            || f["evidence"]["openssl_verify_result"]["code"] == 20,
        "{f}"
    );
    assert_eq!(run.ids(untrusted.pid), vec!["TLS_UNTRUSTED_CA"]);
    // curl checks host names itself: a verified session is clean, not "hostname unchecked".
    assert_clean(&run, verified.pid, "curl --cacert");
}

fn node_request(options: &str, env: &[(&str, &str)], pre: &str) -> Command {
    let code = format!(
        r#"
import https from "node:https";
{pre}
const req = https.request({{ path: "/", agent: false, {options} }}, (res) => {{
  res.resume();
  res.on("end", () => console.log(res.statusCode));
}});
req.on("error", (e) => {{ console.log("error", e.code); }});
req.end();
"#
    );
    let mut cmd = node_module(&code);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

#[test]
fn node_bypasses_and_default() {
    let _s = serial();
    let s = setup();
    let ip = s.up.v4;
    let ca = s.pki.ca();
    let ca = ca.to_str().unwrap();
    let monitor = monitor(&s, &["node"]);
    let target = |port: u16| format!(r#"host: "{ip}", port: {port}, servername: "api.test""#);

    let reject_off = run_client(&mut node_request(
        &format!("{}, rejectUnauthorized: false", target(SELF_SIGNED)),
        &[],
        "",
    ));
    let env_start = run_client(&mut node_request(
        &target(SELF_SIGNED),
        &[("NODE_TLS_REJECT_UNAUTHORIZED", "0")],
        "",
    ));
    let env_runtime = run_client(&mut node_request(
        &target(SELF_SIGNED),
        &[],
        r#"process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0";"#,
    ));
    let identity_off = run_client(&mut node_request(
        &format!(
            r#"{}, ca: (await import("node:fs")).readFileSync("{ca}"), checkServerIdentity: () => undefined"#,
            target(WRONG_NAME)
        ),
        &[],
        "",
    ));
    let default_ok = run_client(&mut node_request(
        &target(CA_SIGNED),
        &[("NODE_EXTRA_CA_CERTS", ca)],
        "",
    ));
    let default_refuses = run_client(&mut node_request(&target(SELF_SIGNED), &[], ""));
    for (c, what) in [
        (&reject_off, "rejectUnauthorized:false"),
        (&env_start, "env at start"),
        (&env_runtime, "env at run time"),
        (&identity_off, "checkServerIdentity"),
        (&default_ok, "default with CA"),
    ] {
        ok(c, what);
        assert_eq!(
            c.stdout().trim(),
            "200",
            "{what}: {}",
            String::from_utf8_lossy(&c.output.stderr)
        );
    }
    assert_eq!(
        default_refuses.stdout().trim(),
        "error DEPTH_ZERO_SELF_SIGNED_CERT"
    );
    let run = monitor.stop();

    let f = run.finding(reject_off.pid, "TLS_INVALID_CERT_ACCEPTED");
    assert_tls_evidence(f, ip, SELF_SIGNED, "api.test");
    assert_eq!(f["destination"]["hostname"], "api.test");
    assert!(
        f["evidence"]["reason"]
            .as_str()
            .unwrap()
            .contains("self-signed"),
        "{f}"
    );
    // Node always runs OpenSSL with verify mode NONE: that alone is not a finding.
    assert_eq!(
        run.ids(reject_off.pid),
        vec!["TLS_INVALID_CERT_ACCEPTED"],
        "{}",
        run.dump()
    );

    for (c, source) in [
        (&env_start, "environment at start"),
        (&env_runtime, "set at run time"),
    ] {
        let env = run.finding(c.pid, "TLS_VERIFY_ENV_DISABLED");
        assert_eq!(
            env["evidence"]["variable"], "NODE_TLS_REJECT_UNAUTHORIZED",
            "{env}"
        );
        assert_eq!(env["evidence"]["source"], source, "{env}");
        let accepted = run.finding(c.pid, "TLS_INVALID_CERT_ACCEPTED");
        assert_tls_evidence(accepted, ip, SELF_SIGNED, "api.test");
        assert_eq!(
            accepted["evidence"]["process_bypass"], "NODE_TLS_REJECT_UNAUTHORIZED=0",
            "{accepted}"
        );
    }

    let f = run.finding(identity_off.pid, "TLS_HOSTNAME_MISMATCH_ACCEPTED");
    assert_tls_evidence(f, ip, WRONG_NAME, "other.test");
    assert_eq!(
        run.ids(identity_off.pid),
        vec!["TLS_HOSTNAME_MISMATCH_ACCEPTED"],
        "{}",
        run.dump()
    );

    assert_clean(&run, default_ok.pid, "Node's default with the CA installed");
    let refused = run.ids(default_refuses.pid);
    assert!(
        !refused.contains(&"TLS_INVALID_CERT_ACCEPTED".to_string()),
        "{refused:?}"
    );
}

#[test]
fn node_fetch_with_an_agent_that_disables_verification() {
    let _s = serial();
    let s = setup();
    let ip = s.up.v4;
    let ca = s.pki.ca();
    let monitor = monitor(&s, &["node"]);
    let code = |connect: &str, port: u16| {
        format!(
            r#"
import {{ Agent }} from "undici";
import fs from "node:fs";
const dispatcher = new Agent({{ connect: {{ servername: "api.test", {connect} }} }});
const res = await fetch("https://{ip}:{port}/", {{ dispatcher }});
console.log(res.status, (await res.text()).trim());
"#
        )
    };
    let insecure = run_client(&mut node_module(&code(
        "rejectUnauthorized: false",
        SELF_SIGNED,
    )));
    let verified = run_client(&mut node_module(&code(
        &format!(r#"ca: fs.readFileSync("{}")"#, ca.display()),
        CA_SIGNED,
    )));
    ok(&insecure, "fetch with rejectUnauthorized:false");
    ok(&verified, "fetch with the CA");
    assert_eq!(insecure.stdout().trim(), "200 ok");
    let run = monitor.stop();
    let f = run.finding(insecure.pid, "TLS_INVALID_CERT_ACCEPTED");
    assert_tls_evidence(f, ip, SELF_SIGNED, "api.test");
    assert_clean(&run, verified.pid, "fetch with the CA");
}
