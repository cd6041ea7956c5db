//! What operators rely on: `[[suppress]]` accepts one known risk without muting the rest (and a
//! bad entry is an error naming its line), and `--output` follows logrotate (SIGHUP reopens it).
use std::{os::unix::fs::PermissionsExt, path::PathBuf, process::Command, time::Duration};

use egress_monitor_tests::{monitor_bin, run_client, serial, Client, Monitor, Options, Upstream};
use serde_json::Value;

const ACCEPTED: u16 = 8080;
const OTHER: u16 = 8081;

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("em-ops-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn curl_bearer(up: &Upstream, port: u16, secret: &str) -> Client {
    let c = run_client(
        Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "--max-time", "5"])
            .args(["-H", &format!("Authorization: Bearer {secret}")])
            .arg(format!("http://{}:{port}/v1/tools", up.v4)),
    );
    assert!(c.output.status.success(), "curl: {:?}", c.output);
    c
}

fn ids(lines: &[Value], pid: u32) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l["type"] == "finding" && l["process"]["pid"] == pid)
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_suppression_hides_one_accepted_risk_and_counts_it() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    up.tcp_server(ACCEPTED);
    up.tcp_server(OTHER);
    let dir = scratch("suppress");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[suppress]]
id = "PLAINTEXT_CREDENTIALS"
reason = "lab upstream, plaintext by design (TICKET-42)"
comm = "curl"
ip = "{ip}"
port = {ACCEPTED}
expires = 2099-12-31

[[suppress]]
id = "PLAINTEXT_CREDENTIALS"
reason = "an old exception"
expires = 2020-01-01
"#,
            ip = up.v4
        ),
    )
    .unwrap();
    let monitor = Monitor::start(&["--config", config.to_str().unwrap(), "--comm", "curl"]);
    let secret = format!("ops-{:x}Zq", std::process::id() * 31);
    let accepted = curl_bearer(&up, ACCEPTED, &secret);
    // The same request to another port is not covered.
    let other = curl_bearer(&up, OTHER, &secret);
    let run = monitor.stop();

    assert!(
        ids(&run.lines, accepted.pid).is_empty(),
        "suppressed:\n{}",
        run.dump()
    );
    assert!(
        !run.connects_from(accepted.pid).is_empty(),
        "a suppression hides the finding, not the events"
    );
    assert_eq!(ids(&run.lines, other.pid), ["PLAINTEXT_CREDENTIALS"]);
    let active = run.status("suppressions");
    assert_eq!(active.len(), 1, "{}", run.dump());
    let message = active[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("1 active: PLAINTEXT_CREDENTIALS (comm curl")
            && message.contains("TICKET-42")
            && message.contains("until 2099-12-31"),
        "{message}"
    );
    let warnings = run.status("warning");
    assert!(
        warnings.iter().any(|w| w["message"]
            .as_str()
            .unwrap()
            .contains("expired: PLAINTEXT_CREDENTIALS")),
        "the expired entry is named: {warnings:?}"
    );
    let shutdown = run.status("shutdown");
    assert_eq!(
        shutdown[0]["totals"]["suppressed"]["PLAINTEXT_CREDENTIALS"], 1,
        "{}",
        shutdown[0]
    );
    assert_eq!(shutdown[0]["totals"]["findings"], 1);
    run.assert_no_secret(&secret);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_bad_suppression_is_an_error_naming_its_line() {
    let dir = scratch("bad");
    let config = dir.join("bad.toml");
    std::fs::write(
        &config,
        "[plaintext]\napi_key_headers = [\"X-Key\"]\n\n[[suppress]]\nid = \"PLAINTEXT_CREDENTIALS\"\ncomm = \"curl\"\n",
    )
    .unwrap();
    let out = Command::new(monitor_bin())
        .args([
            "run",
            "--config",
            config.to_str().unwrap(),
            "--duration",
            "1",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a bad config must not run: {stderr}");
    assert!(
        stderr.contains("reason") && stderr.contains("line 4") && stderr.contains("bad.toml"),
        "names the file, the line and the missing key: {stderr}"
    );
    std::fs::write(
        &config,
        "[[suppress]]\nid = \"TLS_VERIFY_OFF\"\nreason = \"typo in the id\"\n",
    )
    .unwrap();
    let out = Command::new(monitor_bin())
        .args([
            "run",
            "--config",
            config.to_str().unwrap(),
            "--duration",
            "1",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("line 2") && stderr.contains("TLS_VERIFY_OFF"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sighup_reopens_the_output_file_after_rotation() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    up.tcp_server(ACCEPTED);
    let dir = scratch("rotate");
    let out = dir.join("findings.jsonl");
    let monitor = Monitor::start_opts(
        &["--output", out.to_str().unwrap(), "--comm", "curl"],
        Options {
            output: Some(out.clone()),
            ..Options::default()
        },
    );
    let before = curl_bearer(&up, ACCEPTED, "rotate-before-Zq1");
    let pid_in = |path: &PathBuf, pid: u32| {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .contains(&format!("\"pid\":{pid},"))
    };
    // Connect events are held up to 1 s for their outcome.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !pid_in(&out, before.pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(pid_in(&out, before.pid), "the first client's lines");
    // logrotate: move the file away, then SIGHUP.
    let rotated = dir.join("findings.jsonl.1");
    std::fs::rename(&out, &rotated).unwrap();
    monitor.signal(libc::SIGHUP);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !out.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(out.exists(), "SIGHUP created a new output file");
    let after = curl_bearer(&up, ACCEPTED, "rotate-after-Zq2");
    let run = monitor.stop();

    assert!(pid_in(&rotated, before.pid));
    assert!(
        !pid_in(&rotated, after.pid),
        "nothing after the rotation goes to the old file"
    );
    assert!(
        run.findings_of(after.pid)
            .iter()
            .any(|f| f["id"] == "PLAINTEXT_CREDENTIALS"),
        "the new file has the later finding:\n{}",
        run.dump()
    );
    assert_eq!(run.lines.last().unwrap()["status"], "shutdown");
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "findings are readable by their owner only");
    let _ = std::fs::remove_dir_all(dir);
}
