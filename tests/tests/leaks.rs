//! Never become the leak, end to end: distinct secrets are planted in every channel a monitored
//! process can put them in (command-line forms, environment, URLs, headers, cookies, bodies,
//! paths, PostgreSQL, Redis, inline code) and must be absent from everything the monitor
//! writes: standard output (JSON lines), standard error (with debug logging on), an `--output`
//! file in the text view, and its working directory.
use std::{path::PathBuf, process::Command};

use egress_monitor_tests::{
    node, node_module, pki::Pki, python, run_client, serial, Client, Monitor, Options, Upstream,
};

const HTTP: u16 = 8080;
const HTTPS: u16 = 8443;

/// A secret nobody else would print, distinct per channel.
fn secret(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{tag}{:08x}{:04x}Qx", nanos, std::process::id() & 0xffff)
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("em-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn curl(up: &Upstream, ca: &std::path::Path, args: &[&str]) -> Client {
    run_client(
        Command::new("curl")
            .args(["-s", "-o", "/dev/null", "--max-time", "5"])
            .args([
                "--resolve",
                &format!("api.test:{HTTP}:{}", up.v4),
                "--resolve",
                &format!("api.test:{HTTPS}:{}", up.v4),
            ])
            .arg("--cacert")
            .arg(ca)
            .args(args),
    )
}

#[test]
fn planted_secrets_never_reach_any_output() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    up.tcp_server(HTTP);
    let pki = Pki::create();
    up.https_server(&pki.server(), HTTPS);
    let pg_password = secret("pgpw");
    up.postgres(&pki, &pg_password, 5432);
    let redis_password = secret("redispw");
    up.redis(&pki, &redis_password, 6379, 6380);
    let ca = pki.ca();

    // Two monitors at once: JSON on stdout with debug logs on stderr, and the text view in an
    // --output file; each in an empty working directory of its own.
    let names = [
        "curl",
        "node",
        "python3",
        "psql",
        "redis-cli",
        "mysql",
        "mariadb",
    ];
    let mut args: Vec<&str> = vec!["--comm"];
    args.extend(names);
    let work_a = temp_dir("leak-a");
    let work_b = temp_dir("leak-b");
    let text_out = work_b.join("out.txt");
    let json = Monitor::start_opts(
        &args,
        Options {
            env: vec![("EGRESS_MONITOR_LOG", "debug")],
            cwd: Some(work_a.clone()),
            ..Options::default()
        },
    );
    let mut text_args = args.clone();
    let text_path = text_out.to_str().unwrap().to_string();
    text_args.extend(["--output", &text_path, "--format", "text"]);
    let text = Monitor::start_opts(
        &text_args,
        Options {
            output: Some(text_out.clone()),
            cwd: Some(work_b.clone()),
            ..Options::default()
        },
    );

    let mut planted: Vec<(&str, String)> = Vec::new();
    let mut plant = |what: &'static str, s: &str| planted.push((what, s.to_string()));

    // Command-line forms.
    let key = secret("nodekey");
    plant("node -e inline code", &key);
    let c = run_client(&mut node(&format!(
        "fetch('http://{}:{HTTP}/v1/inline', {{headers: {{'X-API-Key': '{key}'}}}}).then(r => console.log(r.status))",
        up.v4
    )));
    assert_eq!(c.stdout().trim(), "200", "{:?}", c.output);

    let client_secret = secret("pysecret");
    plant("python -c inline code", &client_secret);
    let c = run_client(&mut python(&format!(
        "import urllib.request\nclient_secret='{client_secret}'\nurllib.request.urlopen('http://{}:{HTTP}/oauth/token', data=('grant_type=client_credentials&client_secret=' + client_secret).encode()).read()",
        up.v4
    )));
    assert!(c.output.status.success(), "{:?}", c.output);

    let ghp = format!("ghp_{}", secret("tok").to_ascii_lowercase());
    plant("URL userinfo without a colon (https)", &ghp);
    let c = curl(
        &up,
        &ca,
        &[&format!("https://{ghp}@api.test:{HTTPS}/repos")],
    );
    assert!(c.output.status.success(), "{:?}", c.output);
    let ghp2 = format!("ghp_{}", secret("tok2").to_ascii_lowercase());
    plant("URL userinfo without a colon (http)", &ghp2);
    curl(&up, &ca, &[&format!("http://{ghp2}@api.test:{HTTP}/repos")]);

    let mysql_pw = secret("mysqlpw");
    plant("mysql -p<pass>", &mysql_pw);
    // Nothing listens for MySQL: the client fails, its command line is what matters.
    run_client(Command::new("mysql").args([
        "-h",
        up.v4,
        "-P",
        "3306",
        "-u",
        "app",
        &format!("-p{mysql_pw}"),
        "-e",
        "select 1",
    ]));

    let redis_attached = secret("redisattached");
    plant("redis-cli -a<pass>", &redis_attached);
    run_client(Command::new("redis-cli").args([
        "-h",
        up.v4,
        "-p",
        "6379",
        &format!("-a{redis_attached}"),
        "PING",
    ]));

    let conninfo_pw = secret("conninfo");
    plant("psql conninfo password", &conninfo_pw);
    run_client(Command::new("psql").args([
        &format!(
            "host={} port=5432 user=app password={conninfo_pw} dbname=postgres sslmode=disable connect_timeout=5",
            up.v4
        ),
        "-c",
        "select 1",
    ]));

    // Network channels, from the environment (as MCP servers get them).
    let env_only = secret("envonly");
    plant("environment variable", &env_only);
    let bearer = secret("bearer");
    plant("Authorization: Bearer header", &bearer);
    let api_key = secret("apikey");
    plant("X-API-Key header", &api_key);
    let cookie = secret("cookie");
    plant("cookie", &cookie);
    let query = secret("query");
    plant("URL query", &query);
    let userinfo = secret("userinfo");
    plant("URL userinfo password", &userinfo);
    let basic = secret("basic");
    plant("Basic password", &basic);
    let form = secret("form");
    plant("form body", &form);
    let json_secret = secret("json");
    plant("JSON body", &json_secret);
    // A bot token has the shape of Telegram's: digits, a colon, 35 characters.
    let tail: String = secret("tg")
        .chars()
        .chain("hJ7kLm9QwErTyUiOpAsDfGhJkLzXcVbNm".chars())
        .take(33)
        .collect();
    let telegram = format!("123456789:AA{tail}");
    plant("token in the request path", &telegram);
    // One process per channel: findings are deduplicated per process and destination.
    let send = |path: &str, init: &str, name: &str, value: &str| {
        let code = format!(
            "const v = process.env.V; const r = await fetch('http://{}:{HTTP}' + {path}, {init}); await r.text(); console.log('sent');",
            up.v4
        );
        let c = run_client(
            node_module(&code)
                .env("V", value)
                .env("ENV_ONLY_SECRET", &env_only),
        );
        assert_eq!(c.stdout().trim(), "sent", "{name}: {:?}", c.output);
    };
    send(
        "'/v1/items'",
        "{ headers: { Authorization: 'Bearer ' + v } }",
        "bearer",
        &bearer,
    );
    send(
        "'/v1/search'",
        "{ headers: { 'X-API-Key': v } }",
        "api key",
        &api_key,
    );
    send(
        "'/v1/me'",
        "{ headers: { Cookie: 'session=' + v } }",
        "cookie",
        &cookie,
    );
    send("'/v1/q?api_key=' + v", "{}", "query", &query);
    send(
        "'/v1/basic'",
        "{ headers: { Authorization: 'Basic ' + Buffer.from('svc:' + v).toString('base64') } }",
        "basic",
        &basic,
    );
    send(
        "'/login'",
        "{ method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'user=svc&password=' + v }",
        "form",
        &form,
    );
    send(
        "'/v1/token'",
        "{ method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ client_secret: v }) }",
        "json",
        &json_secret,
    );
    send("'/bot' + v + '/getUpdates'", "{}", "path", &telegram);
    let c = curl(
        &up,
        &ca,
        &[&format!(
            "http://svc:{userinfo}@api.test:{HTTP}/v1/userinfo"
        )],
    );
    assert!(c.output.status.success(), "{:?}", c.output);

    // PostgreSQL and Redis, passwords from the environment.
    plant("PostgreSQL password", &pg_password);
    let c = run_client(
        Command::new("psql")
            .args(["-h", up.v4, "-p", "5432", "-U", "app", "-d", "postgres"])
            .args(["-c", "select 1"])
            .env("PGPASSWORD", &pg_password)
            .env("PGSSLMODE", "disable"),
    );
    assert!(c.output.status.success(), "{:?}", c.output);
    plant("Redis password", &redis_password);
    let c = run_client(
        Command::new("redis-cli")
            .args(["-h", up.v4, "-p", "6379", "--no-auth-warning", "PING"])
            .env("REDISCLI_AUTH", &redis_password),
    );
    assert_eq!(c.stdout().trim(), "PONG", "{:?}", c.output);

    text.signal(libc::SIGTERM);
    let run = json.stop();
    let text_run = text.stop();

    // The monitor saw the traffic: the credential findings are there.
    let findings = run.findings("PLAINTEXT_CREDENTIALS");
    assert!(
        findings.len() >= 10,
        "credential findings for the planted channels:\n{}",
        run.dump()
    );
    let kinds: Vec<String> = findings
        .iter()
        .flat_map(|f| f["evidence"]["credentials"].as_array().unwrap().clone())
        .map(|c| c["kind"].as_str().unwrap().to_string())
        .collect();
    for kind in [
        "bearer",
        "api_key",
        "cookie",
        "query_parameter",
        "basic",
        "form_field",
        "json_field",
        "path_token",
        "postgres_password",
        "redis_auth",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "no {kind} credential: {kinds:?}"
        );
    }
    assert!(
        text_run.raw.contains("PLAINTEXT_CREDENTIALS"),
        "the text view saw them too"
    );
    // And nothing it wrote holds a planted secret, in any form.
    use base64::Engine as _;
    for (what, value) in &planted {
        let forms = [
            value.clone(),
            base64::engine::general_purpose::STANDARD.encode(value),
            base64::engine::general_purpose::STANDARD.encode(format!("svc:{value}")),
        ];
        for form in &forms {
            for (output, text) in [
                ("stdout/stderr", &run.raw),
                ("--output text", &text_run.raw),
            ] {
                assert!(
                    !text.contains(form.as_str()),
                    "{what}: {form:?} leaked into {output}"
                );
            }
        }
    }
    for dir in [&work_a, &work_b] {
        let extra: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| n != "out.txt")
            .collect();
        assert!(
            extra.is_empty(),
            "the monitor wrote {extra:?} in {}",
            dir.display()
        );
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&text_out).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the --output file is the owner's only");
    std::fs::remove_dir_all(&work_a).unwrap();
    std::fs::remove_dir_all(&work_b).unwrap();
}

/// A secret in a form no pattern knows (`--token-file-content VALUE`), sent as a bearer token:
/// once the monitor has seen the token on the wire, nothing it writes afterwards shows it, the
/// command line of the process and of its children included.
const PY_UNKNOWN_FORM: &str = r#"
import socket, subprocess, sys, time
host, port, token = sys.argv[1], int(sys.argv[2]), sys.argv[4]
s = socket.create_connection((host, port))
s.sendall(("GET /v1 HTTP/1.1\r\nHost: api.test\r\nAuthorization: Bearer %s\r\n\r\n" % token).encode())
s.recv(100)
time.sleep(1)
# After the finding: another connection, and a child with the same argument.
socket.create_connection((host, port)).close()
subprocess.run([sys.executable, "-c", "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2]))).close()", host, str(port), "--opaque", token])
"#;

#[test]
fn a_secret_seen_on_the_wire_is_scrubbed_from_everything_after() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    up.tcp_server(HTTP);
    let token = secret("opaque");
    let monitor = Monitor::start(&["--comm", "python3"]);
    let c =
        run_client(python(PY_UNKNOWN_FORM).args([up.v4, &HTTP.to_string(), "--opaque", &token]));
    assert!(c.output.status.success(), "{:?}", c.output);
    let run = monitor.stop();
    assert!(
        run.lines
            .iter()
            .any(|l| l["type"] == "finding" && l["process"]["pid"] == c.pid),
        "no finding:\n{}",
        run.dump()
    );
    // Its target line came before the monitor could know. Its first connect was held until
    // the verdict, so from that connect on, everything must be clean.
    let finding_at = run
        .lines
        .iter()
        .position(|l| l["event"] == "connect" && l["process"]["pid"] == c.pid)
        .unwrap();
    for line in &run.lines[finding_at..] {
        assert!(
            !line.to_string().contains(&token),
            "the token leaked after it was detected: {line}"
        );
    }
    let later: Vec<_> = run.lines[finding_at..]
        .iter()
        .filter(|l| l["event"] == "connect" || l["event"] == "target")
        .collect();
    assert!(
        later.len() >= 2,
        "later records of the process and its child:\n{}",
        run.dump()
    );
    assert!(
        later
            .iter()
            .any(|l| l["process"]["cmdline"].to_string().contains("<redacted>")),
        "{later:?}"
    );
}
