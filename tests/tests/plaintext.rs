//! Plaintext credentials end to end: real clients send authentication material to real servers
//! in the upstream namespace. Over plain HTTP, PostgreSQL and Redis the monitor must report it
//! (kind, location, length, fingerprint), never the secret itself; the same requests over TLS
//! must be silent.
use std::process::Command;

use egress_monitor_tests::{
    node_module, ok, pki::Pki, python, run_client, secret, serial, venv_python, Monitor, Run,
    Upstream,
};
use serde_json::Value;

const HTTP: u16 = 8080;
const HTTPS: u16 = 8443;

fn findings<'a>(run: &'a Run, pid: u32, id: &str) -> Vec<&'a Value> {
    run.findings_of(pid)
        .into_iter()
        .filter(|f| f["id"] == id)
        .collect()
}

/// The credential evidence: kind and location as expected, the secret's length, a fingerprint.
fn assert_credential(run: &Run, pid: u32, kind: &str, location: &str, secret_len: usize) -> Value {
    let found = findings(run, pid, "PLAINTEXT_CREDENTIALS");
    let f = found
        .iter()
        .find(|f| {
            f["evidence"]["credentials"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["kind"] == kind && c["location"] == location)
        })
        .unwrap_or_else(|| {
            panic!(
                "no {kind} credential in {location} for pid {pid}:\n{}",
                run.dump()
            )
        });
    let c = f["evidence"]["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == kind)
        .unwrap();
    assert_eq!(c["length"], secret_len, "{f}");
    assert!(
        c["fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("hmac-sha256:"),
        "{f}"
    );
    assert_eq!(f["severity"], "HIGH");
    (*f).clone()
}

fn https_pki(up: &Upstream) -> Pki {
    let pki = Pki::create();
    up.https_server(&pki.server(), HTTPS);
    pki
}

#[test]
fn curl_credentials_over_http_and_not_over_https() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    up.tcp_server(HTTP);
    let pki = https_pki(&up);
    let ca = pki.ca();
    let (bearer, password, api_key) = (secret("bearer"), secret("pw"), secret("key"));
    let monitor = Monitor::start(&["--comm", "curl"]);
    let curl = |scheme: &str, port: u16, args: &[&str], path: &str| {
        let url = format!("{scheme}://api.test:{port}{path}");
        let c = run_client(
            Command::new("curl")
                .args([
                    "-sS",
                    "--max-time",
                    "5",
                    "--resolve",
                    &format!("api.test:{port}:{}", up.v4),
                ])
                .arg("--cacert")
                .arg(&ca)
                .args(args)
                .arg(url),
        );
        ok(&c, &format!("curl {args:?} {scheme}"));
        c
    };
    let auth = format!("Authorization: Bearer {bearer}");
    let userpass = format!("svc:{password}");
    let query = format!("/v1/items?api_key={api_key}&q=1");
    let b_http = curl("http", HTTP, &["-H", &auth], "/v1/items");
    let u_http = curl("http", HTTP, &["-u", &userpass], "/v1/items");
    let q_http = curl("http", HTTP, &[], &query);
    let b_https = curl("https", HTTPS, &["-H", &auth], "/v1/items");
    let u_https = curl("https", HTTPS, &["-u", &userpass], "/v1/items");
    let q_https = curl("https", HTTPS, &[], &query);
    let plain = curl("http", HTTP, &[], "/index.html");
    let run = monitor.stop();

    let f = assert_credential(
        &run,
        b_http.pid,
        "bearer",
        "header:Authorization",
        bearer.len(),
    );
    assert_eq!(f["destination"]["ip"], up.v4);
    assert_eq!(f["destination"]["port"], HTTP);
    assert_eq!(f["destination"]["hostname"], "api.test");
    assert_eq!(f["evidence"]["request"]["path"], "/v1/items");
    assert_credential(
        &run,
        u_http.pid,
        "basic",
        "header:Authorization",
        password.len(),
    );
    assert_credential(
        &run,
        q_http.pid,
        "query_parameter",
        "query:api_key",
        api_key.len(),
    );
    for c in [&b_https, &u_https, &q_https, &plain] {
        assert!(
            run.findings_of(c.pid).is_empty(),
            "pid {} must be silent:\n{}",
            c.pid,
            run.dump()
        );
    }
    // The clean request is a connect event, named by its Host header, and nothing more.
    let connects = run.connects_from(plain.pid);
    assert_eq!(connects.len(), 1, "{}", run.dump());
    assert_eq!(connects[0]["destination"]["hostname"], "api.test");
    // The encrypted ones are named by their SNI.
    let connects = run.connects_from(b_https.pid);
    assert_eq!(connects.len(), 1, "{}", run.dump());
    assert_eq!(
        connects[0]["destination"]["hostname"],
        "api.test",
        "{}",
        run.dump()
    );
    for planted in [&bearer, &password, &api_key] {
        run.assert_no_secret(planted);
    }
}

const NODE_API_KEY: &str = r#"
import http from "node:http";
import https from "node:https";
import fs from "node:fs";
const [mode, scheme, host, port, ca] = process.argv.slice(1);
const key = process.env.SECRET; // secrets come from the environment, as for MCP servers
const url = `${scheme}://${host}:${port}/v1/search`;
const headers = { "X-API-Key": key };
if (mode === "fetch") {
  if (scheme === "https") {
    const { Agent } = await import("undici");
    const dispatcher = new Agent({ connect: { ca: fs.readFileSync(ca), servername: "api.test" } });
    const res = await fetch(url, { headers, dispatcher });
    console.log(res.status);
  } else {
    const res = await fetch(url, { headers });
    console.log(res.status);
  }
} else {
  const lib = scheme === "https" ? https : http;
  const req = lib.request(url, { headers, ca: scheme === "https" ? fs.readFileSync(ca) : undefined, servername: "api.test" }, (res) => {
    res.resume();
    res.on("end", () => console.log(res.statusCode));
  });
  req.end();
}
"#;

#[test]
fn node_fetch_and_http_request_with_an_api_key() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    up.tcp_server(HTTP);
    let pki = https_pki(&up);
    let ca = pki.ca();
    let key = secret("apikey");
    let monitor = Monitor::start(&["--comm", "node"]);
    let node = |mode: &str, scheme: &str, port: u16| {
        let c = run_client(
            node_module(NODE_API_KEY)
                .args([mode, scheme, up.v4, &port.to_string(), ca.to_str().unwrap()])
                .env("SECRET", &key),
        );
        ok(&c, &format!("node {mode} {scheme}"));
        assert_eq!(c.stdout().trim(), "200");
        c
    };
    let fetch_http = node("fetch", "http", HTTP);
    let request_http = node("request", "http", HTTP);
    let fetch_https = node("fetch", "https", HTTPS);
    let request_https = node("request", "https", HTTPS);
    let run = monitor.stop();
    // Header names keep the case the client sent (undici lower-cases them).
    for c in [&fetch_http, &request_http] {
        let f = findings(&run, c.pid, "PLAINTEXT_CREDENTIALS");
        assert_eq!(f.len(), 1, "{}", run.dump());
        let cred = &f[0]["evidence"]["credentials"][0];
        assert_eq!(cred["kind"], "api_key", "{cred}");
        assert!(
            cred["location"]
                .as_str()
                .unwrap()
                .eq_ignore_ascii_case("header:X-API-Key"),
            "{cred}"
        );
        assert_eq!(cred["length"], key.len());
    }
    for c in [&fetch_https, &request_https] {
        assert!(
            run.findings_of(c.pid).is_empty(),
            "HTTPS must be silent:\n{}",
            run.dump()
        );
    }
    run.assert_no_secret(&key);
}

const PY_TOKEN: &str = r#"
import os, sys, urllib.parse, urllib.request
lib, scheme, host, port, ca = sys.argv[1:6]
secret = os.environ["SECRET"]
import socket
_gai = socket.getaddrinfo
socket.getaddrinfo = lambda h, *a, **k: _gai(host if h == "auth.test" else h, *a, **k)
url = f"{scheme}://auth.test:{port}/oauth/token"
form = {"grant_type": "client_credentials", "client_id": "mcp-server", "client_secret": secret}
if lib == "urllib":
    import ssl
    ctx = ssl.create_default_context(cafile=ca) if scheme == "https" else None
    req = urllib.request.Request(url, data=urllib.parse.urlencode(form).encode())
    print(urllib.request.urlopen(req, context=ctx, timeout=5).status)
else:
    import requests
    print(requests.post(url, data=form, verify=ca, timeout=5).status_code)
"#;

#[test]
fn python_client_secret_to_the_token_endpoint() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    up.tcp_server(HTTP);
    let pki = Pki::create();
    // The HTTPS server's certificate must name auth.test for the negative twin.
    up.https_server(&pki.server(), HTTPS);
    let ca = pki.ca();
    let client_secret = secret("cs");
    let monitor = Monitor::start(&["--comm", "python3"]);
    let py = |lib: &str, scheme: &str, port: u16| {
        run_client(
            venv_python(PY_TOKEN)
                .args([lib, scheme, up.v4, &port.to_string(), ca.to_str().unwrap()])
                .env("SECRET", &client_secret),
        )
    };
    let urllib_http = py("urllib", "http", HTTP);
    let requests_http = py("requests", "http", HTTP);
    // Over HTTPS the name check fails (the test certificate is for api.test): the secret is
    // never sent, which is what a verifying client must do; no plaintext finding either way.
    let requests_https = py("requests", "https", HTTPS);
    ok(&urllib_http, "urllib over http");
    ok(&requests_http, "requests over http");
    let run = monitor.stop();
    for c in [&urllib_http, &requests_http] {
        let f = assert_credential(
            &run,
            c.pid,
            "form_field",
            "form:client_secret",
            client_secret.len(),
        );
        assert_eq!(f["evidence"]["request"]["path"], "/oauth/token");
        assert_eq!(f["destination"]["hostname"], "auth.test");
        let endpoint = findings(&run, c.pid, "PLAINTEXT_AUTH_ENDPOINT");
        assert_eq!(endpoint.len(), 1, "{}", run.dump());
        assert!(endpoint[0]["evidence"]["auth_endpoint"]
            .as_str()
            .unwrap()
            .contains("/oauth/token"));
    }
    assert!(findings(&run, requests_https.pid, "PLAINTEXT_CREDENTIALS").is_empty());
    assert!(findings(&run, requests_https.pid, "PLAINTEXT_AUTH_ENDPOINT").is_empty());
    run.assert_no_secret(&client_secret);
}

const PY_SPLIT: &str = r#"
import os, socket, sys, time
host, port, secret = sys.argv[1], int(sys.argv[2]), os.environ["SECRET"]
body = ("grant_type=password&username=svc&password=" + secret).encode()
s = socket.create_connection((host, port))
s.send(b"POST /login HTTP/1.1\r\nHost: api.test\r\n")
time.sleep(0.05)
s.send(b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n" % len(body))
time.sleep(0.05)
s.send(body)
print(s.recv(100).split(b"\r\n")[0].decode())
s.close()
"#;

#[test]
fn a_request_split_across_writes_is_still_caught() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    up.tcp_server(HTTP);
    let password = secret("split");
    let monitor = Monitor::start(&["--comm", "python3"]);
    let c = run_client(
        python(PY_SPLIT)
            .args([up.v4, &HTTP.to_string()])
            .env("SECRET", &password),
    );
    ok(&c, "split request");
    assert_eq!(c.stdout().trim(), "HTTP/1.1 200 OK");
    let run = monitor.stop();
    assert_credential(&run, c.pid, "form_field", "form:password", password.len());
    assert_eq!(
        findings(&run, c.pid, "PLAINTEXT_AUTH_ENDPOINT").len(),
        1,
        "{}",
        run.dump()
    );
    run.assert_no_secret(&password);
}

#[test]
fn psql_password_without_tls_and_not_with_sslmode_require() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    let pki = Pki::create();
    let password = secret("pgpw");
    up.postgres(&pki, &password, 5432);
    let monitor = Monitor::start(&["--comm", "psql"]);
    let psql = |sslmode: &str| {
        run_client(
            Command::new("psql")
                .arg(format!(
                    "host={} port=5432 user=app dbname=postgres sslmode={sslmode}",
                    up.v4
                ))
                .args(["-tAc", "select 42"])
                .env("PGPASSWORD", &password),
        )
    };
    let plain = psql("disable");
    let encrypted = psql("require");
    ok(&plain, "psql sslmode=disable");
    ok(&encrypted, "psql sslmode=require");
    // The fully secure twin: TLS with the server certificate verified for its name.
    let ca = pki.ca();
    let verified = run_client(
        Command::new("psql")
            .arg(format!(
                "host=api.test hostaddr={} port=5432 user=app dbname=postgres sslmode=verify-full sslrootcert={}",
                up.v4,
                ca.display()
            ))
            .args(["-tAc", "select 42"])
            .env("PGPASSWORD", &password),
    );
    ok(&verified, "psql sslmode=verify-full");
    assert_eq!(plain.stdout().trim(), "42");
    let run = monitor.stop();
    let f = assert_credential(
        &run,
        plain.pid,
        "postgres_password",
        "postgres:password_message",
        password.len(),
    );
    assert_eq!(f["evidence"]["protocol"], "postgresql");
    assert_eq!(f["evidence"]["postgres"]["user"], "app");
    assert_eq!(f["destination"]["port"], 5432);
    // sslmode=require encrypts, so nothing is sent in the clear. (It does not verify the
    // certificate either: libpq's `require` is encryption without authentication, which the
    // TLS checks report as an accepted invalid certificate.)
    let require: Vec<&str> = run
        .findings_of(encrypted.pid)
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert!(
        !require.iter().any(|id| id.starts_with("PLAINTEXT")),
        "{require:?}"
    );
    assert_eq!(require, vec!["TLS_INVALID_CERT_ACCEPTED"], "{}", run.dump());
    assert!(
        run.findings_of(verified.pid).is_empty(),
        "verify-full must be silent:\n{}",
        run.dump()
    );
    run.assert_no_secret(&password);
}

#[test]
fn redis_cli_auth_in_the_clear_and_not_over_tls() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    let pki = Pki::create();
    let password = secret("redispw");
    up.redis(&pki, &password, 6379, 6380);
    let monitor = Monitor::start(&["--comm", "redis-cli"]);
    let ca = pki.ca();
    let cli = |extra: &[&str], port: u16| {
        run_client(
            Command::new("redis-cli")
                .args([
                    "-h",
                    up.v4,
                    "-p",
                    &port.to_string(),
                    "--no-auth-warning",
                    "-a",
                    &password,
                ])
                .args(extra)
                .arg("PING"),
        )
    };
    let plain = cli(&[], 6379);
    let tls = cli(
        &[
            "--tls",
            "--cacert",
            ca.to_str().unwrap(),
            "--sni",
            "api.test",
        ],
        6380,
    );
    ok(&plain, "redis-cli");
    ok(&tls, "redis-cli --tls");
    assert_eq!(plain.stdout().trim(), "PONG");
    assert_eq!(tls.stdout().trim(), "PONG");
    let run = monitor.stop();
    let f = assert_credential(&run, plain.pid, "redis_auth", "redis:AUTH", password.len());
    assert_eq!(f["evidence"]["protocol"], "redis");
    // Over TLS nothing is sent in the clear. redis-cli (hiredis) verifies the chain but never
    // gives OpenSSL a host name to check, which the TLS checks rightly report.
    let over_tls: Vec<&str> = run
        .findings_of(tls.pid)
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(over_tls, vec!["TLS_HOSTNAME_UNCHECKED"], "{}", run.dump());
    run.assert_no_secret(&password);
}
