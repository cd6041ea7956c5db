//! Record and replay end to end: a live run with TLS and plaintext findings is recorded
//! (`run --record`), and `replay` of that file must give the same findings and events, field by
//! field except times; with another `--config` the old traffic is judged by the new rules. The
//! recording must never hold a planted credential, compressed or decompressed; and
//! `--record-max-size` keeps it bounded, dropping the oldest data and saying so.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use egress_monitor_tests::{
    monitor_bin, ok, pki::Pki, python, run_client, secret, serial, Monitor, Upstream,
};
use serde_json::Value;

const HTTP: u16 = 8080;
const SELF_SIGNED: u16 = 8443;
const CA_SIGNED: u16 = 9443;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("em-record-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `egress-monitor replay FILE --format json [--config C]`: its lines, parsed.
fn replay(file: &Path, config: Option<&Path>) -> (Vec<Value>, String) {
    let mut cmd = Command::new(monitor_bin());
    cmd.arg("replay").arg(file).args(["--format", "json"]);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let out = cmd.output().expect("running egress-monitor replay");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "replay failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (lines, stdout)
}

/// Events and findings without their `time` (what replay must reproduce), in output order.
fn comparable(lines: &[Value]) -> Vec<Value> {
    lines
        .iter()
        .filter(|l| l["type"] != "status")
        .map(|l| {
            let mut l = l.clone();
            l.as_object_mut().unwrap().remove("time");
            l
        })
        .collect()
}

/// The recording's blocks, decompressed (format version 1, as `monitor/src/record` documents
/// it), read independently of the monitor's own reader.
fn decompressed(file: &Path) -> Vec<u8> {
    let bytes = std::fs::read(file).unwrap();
    assert_eq!(&bytes[..6], b"EMREC\n", "magic");
    assert_eq!(u16::from_le_bytes([bytes[6], bytes[7]]), 1, "version");
    let header = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
    let mut at = 12 + header;
    let mut out = Vec::new();
    while at < bytes.len() {
        let raw = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        at += 13;
        out.extend(lz4_flex::block::decompress(&bytes[at..at + len], raw).expect("lz4 block"));
        at += len;
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn replay_gives_the_live_findings_and_applies_a_new_config() {
    let _s = serial();
    let d = dir("replay");
    let up = Upstream::create().unwrap();
    up.tcp_server(HTTP);
    let pki = Pki::create();
    up.https_server(&pki.self_signed(), SELF_SIGNED);
    up.https_server(&pki.server(), CA_SIGNED);
    let ca = pki.ca();
    let bearer = secret("bearer");
    let password = secret("pw");
    let recording = d.join("run.emrec");
    let monitor = Monitor::start(&[
        "--comm",
        "curl",
        "python3",
        "--record",
        recording.to_str().unwrap(),
    ]);
    let curl = |scheme: &str, port: u16, args: &[&str]| {
        run_client(
            Command::new("curl")
                .args(["-sS", "--max-time", "5", "--resolve"])
                .arg(format!("api.test:{port}:{}", up.v4))
                .args(args)
                .arg(format!("{scheme}://api.test:{port}/v1/items")),
        )
    };
    let auth = format!("Authorization: Bearer {bearer}");
    let userpass = format!("svc:{password}");
    let plain = curl("http", HTTP, &["-H", &auth]);
    ok(&plain, "curl http bearer");
    let basic = curl("http", HTTP, &["-u", &userpass]);
    ok(&basic, "curl http basic");
    let insecure = curl("https", SELF_SIGNED, &["-k", "-H", &auth]);
    ok(&insecure, "curl -k");
    let untrusted = curl("https", CA_SIGNED, &[]);
    assert!(!untrusted.output.status.success(), "curl refuses the CA");
    let verified = curl("https", CA_SIGNED, &["--cacert", ca.to_str().unwrap()]);
    ok(&verified, "curl --cacert");
    // A Python client too (a second runtime, another process's records interleaved).
    let py = run_client(&mut python(&format!(
        "import http.client as h; c=h.HTTPConnection('{}', {HTTP}, timeout=5); \
         c.request('GET', '/token', headers={{'X-Api-Key': '{password}'}}); c.getresponse()",
        up.v4
    )));
    ok(&py, "python client");
    let run = monitor.stop();

    // The live run saw what it should.
    let ids = |pid: u32| -> Vec<String> {
        run.findings_of(pid)
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        ids(plain.pid).contains(&"PLAINTEXT_CREDENTIALS".into()),
        "{}",
        run.dump()
    );
    assert!(
        ids(insecure.pid).contains(&"TLS_VERIFY_DISABLED".into()),
        "{}",
        run.dump()
    );
    assert!(
        ids(untrusted.pid).contains(&"TLS_UNTRUSTED_CA".into()),
        "{}",
        run.dump()
    );
    assert!(ids(verified.pid).is_empty(), "{}", run.dump());
    let recorded = run
        .lines
        .iter()
        .find(|l| l["status"] == "recording")
        .unwrap_or_else(|| panic!("no recording status line:\n{}", run.dump()));
    assert!(
        recorded["message"]
            .as_str()
            .unwrap()
            .contains(recording.to_str().unwrap()),
        "{recorded}"
    );

    // Replay: the same events and findings, field by field except times.
    let (lines, raw) = replay(&recording, None);
    let live = comparable(&run.lines);
    let again = comparable(&lines);
    assert!(!live.is_empty());
    for (i, (a, b)) in live.iter().zip(&again).enumerate() {
        assert_eq!(a, b, "line {i} differs between the live run and its replay");
    }
    assert_eq!(
        live.len(),
        again.len(),
        "live:\n{}\nreplay:\n{raw}",
        run.dump()
    );
    // Finding times are the live ones too (the recording keeps them).
    let live_times: Vec<&Value> = run
        .lines
        .iter()
        .filter(|l| l["type"] == "finding")
        .map(|l| &l["time"])
        .collect();
    let replay_times: Vec<&Value> = lines
        .iter()
        .filter(|l| l["type"] == "finding")
        .map(|l| &l["time"])
        .collect();
    assert_eq!(live_times, replay_times);

    // Never the leak: not in the file, not in its decompressed blocks, not in the replay.
    let file = std::fs::read(&recording).unwrap();
    let blocks = decompressed(&recording);
    assert!(blocks.len() > file.len() / 2, "blocks decompressed");
    assert!(
        contains(&blocks, "api.test"),
        "the decompressed blocks hold the run"
    );
    for s in [&bearer, &password] {
        assert!(!contains(&file, s), "{s} in the recording file");
        assert!(!contains(&blocks, s), "{s} in the decompressed recording");
        assert!(!raw.contains(s.as_str()), "{s} in the replay output");
        run.assert_no_secret(s);
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&recording).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the recording is for root's eyes only");

    // A new config applies to the old traffic: a suppression hides the plaintext finding (and
    // counts it); an auth host makes the Python request an authentication endpoint.
    let config = d.join("new.toml");
    std::fs::write(
        &config,
        "[[suppress]]\nid = \"PLAINTEXT_CREDENTIALS\"\nreason = \"test\"\ncomm = \"curl\"\n\n\
         [plaintext]\nauth_hosts = ['^10\\.203\\.0\\.']\n",
    )
    .unwrap();
    let (lines, _) = replay(&recording, Some(&config));
    let of = |pid: u32, id: &str| {
        lines
            .iter()
            .filter(|l| l["type"] == "finding" && l["process"]["pid"] == pid && l["id"] == id)
            .count()
    };
    assert_eq!(of(plain.pid, "PLAINTEXT_CREDENTIALS"), 0, "suppressed");
    assert_eq!(of(insecure.pid, "TLS_VERIFY_DISABLED"), 1, "still reported");
    let before = run
        .findings_of(py.pid)
        .iter()
        .filter(|f| f["id"] == "PLAINTEXT_AUTH_ENDPOINT")
        .count();
    assert_eq!(
        before,
        1,
        "/token is an auth endpoint already:\n{}",
        run.dump()
    );
    let shutdown = lines.iter().find(|l| l["status"] == "shutdown").unwrap();
    assert!(
        shutdown["totals"]["suppressed"]
            .as_object()
            .is_some_and(|m| !m.is_empty()),
        "{shutdown}"
    );

    // `report` reads a recording as it reads JSON lines.
    let html = d.join("report.md");
    let out = Command::new(monitor_bin())
        .arg("report")
        .arg(&recording)
        .args(["--format", "markdown", "-o"])
        .arg(&html)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = std::fs::read_to_string(&html).unwrap();
    assert!(md.contains("TLS_VERIFY_DISABLED"), "{md}");
    assert!(md.contains("PLAINTEXT_CREDENTIALS"), "{md}");
    assert!(!md.contains(&bearer));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn auth_hosts_given_at_replay_judge_old_traffic() {
    let _s = serial();
    let d = dir("auth");
    let up = Upstream::create().unwrap();
    up.tcp_server(HTTP);
    let recording = d.join("run.emrec");
    let monitor = Monitor::start(&["--comm", "curl", "--record", recording.to_str().unwrap()]);
    let c = run_client(
        Command::new("curl")
            .args(["-sS", "--max-time", "5", "--resolve"])
            .arg(format!("vault.corp:{HTTP}:{}", up.v4))
            .arg(format!("http://vault.corp:{HTTP}/v1/data")),
    );
    ok(&c, "curl");
    let run = monitor.stop();
    assert!(run.findings_of(c.pid).is_empty(), "{}", run.dump());
    let config = d.join("auth.toml");
    std::fs::write(&config, "[plaintext]\nauth_hosts = ['^vault\\.corp$']\n").unwrap();
    let (lines, raw) = replay(&recording, Some(&config));
    let f = lines
        .iter()
        .find(|l| l["type"] == "finding" && l["process"]["pid"] == c.pid)
        .unwrap_or_else(|| panic!("no finding at replay:\n{raw}"));
    assert_eq!(f["id"], "PLAINTEXT_AUTH_ENDPOINT");
    assert_eq!(
        f["evidence"]["auth_endpoint"],
        "host vault.corp matches auth_hosts"
    );
    // Without the new config, the replay is as the live run was: silent.
    let (lines, _) = replay(&recording, None);
    assert!(!lines.iter().any(|l| l["type"] == "finding"));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn record_max_size_drops_the_oldest_data_and_says_so() {
    let _s = serial();
    let d = dir("bound");
    let up = Upstream::create().unwrap();
    let recording = d.join("bounded.emrec");
    let monitor = Monitor::start(&[
        "--comm",
        "python3",
        "--record",
        recording.to_str().unwrap(),
        "--record-max-size",
        "64K",
    ]);
    // Many connects over several seconds (segments turn over once a second): UDP, so the
    // upstream's pace does not matter.
    let script = format!(
        "import socket, time\n\
         end = time.time() + 6\n\
         n = 0\n\
         while time.time() < end:\n\
         \x20   for _ in range(100):\n\
         \x20       s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         \x20       s.connect(('{}', 9000 + n % 1000))\n\
         \x20       s.close()\n\
         \x20       n += 1\n\
         \x20   time.sleep(0.02)\n\
         print(n)\n",
        up.v4
    );
    let c = run_client(&mut python(&script));
    ok(&c, "python loop");
    let run = monitor.stop();
    let n: u64 = c.stdout().trim().parse().unwrap();
    assert!(n > 500, "only {n} connections");
    let size = std::fs::metadata(&recording).unwrap().len();
    // The bound, plus at most what one second adds before the next turnover.
    assert!(size < 64 * 1024 * 3, "{size} bytes");
    let dropped = run
        .lines
        .iter()
        .find(|l| {
            l["status"] == "warning"
                && l["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("--record-max-size: dropped"))
        })
        .unwrap_or_else(|| panic!("no drop status line:\n{}", run.dump()));
    assert_eq!(dropped["component"], "--record");
    let (lines, raw) = replay(&recording, None);
    let start = &lines
        .iter()
        .find(|l| l["status"] == "recording")
        .unwrap_or_else(|| panic!("{raw}"));
    assert!(
        start["message"].as_str().unwrap().contains("were dropped"),
        "{start}"
    );
    // What is left replays: the newest connections are there, the first ones are not.
    let connects: Vec<&Value> = lines
        .iter()
        .filter(|l| l["event"] == "connect" && l["process"]["pid"] == c.pid)
        .collect();
    assert!(!connects.is_empty(), "{raw}");
    assert!((connects.len() as u64) < n, "{} of {n}", connects.len());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn kernel_drops_of_the_live_run_are_in_its_replay() {
    let _s = serial();
    let d = dir("drops");
    let up = Upstream::create().unwrap();
    up.tcp_server(8080);
    let recording = d.join("drops.emrec");
    // A socket map of 16 for 64 connections at once: 48 refusals in the kernel, which the
    // analysis never sees; the replay must still say the run lost them.
    let monitor = Monitor::start(&[
        "--comm",
        "python3",
        "--map-sizes",
        "sockets=16",
        "--record",
        recording.to_str().unwrap(),
    ]);
    let c = run_client(python(egress_monitor_tests::PY_MANY_SOCKETS).args([up.v4, "8080"]));
    ok(&c, "python sockets");
    assert_eq!(c.stdout().trim(), "open 64");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let run = monitor.stop();
    let live = run.status("shutdown")[0]["totals"]["drops"]["sockets_full"].clone();
    assert_eq!(live, 48, "{}", run.dump());
    let (lines, raw) = replay(&recording, None);
    let shutdown = lines
        .iter()
        .find(|l| l["status"] == "shutdown")
        .unwrap_or_else(|| panic!("{raw}"));
    assert_eq!(shutdown["totals"]["drops"]["sockets_full"], live, "{raw}");
    // Said where the live run counted them (once per second as they grew), the last one whole.
    let said = lines
        .iter()
        .rfind(|l| l["status"] == "drops" && l["component"] == "recorded run")
        .unwrap_or_else(|| panic!("no drops status in the replay:\n{raw}"));
    assert_eq!(said["totals"]["drops"]["sockets_full"], 48, "{said}");
    // Replaying counts the analysis' own drops again, never the recording's bookkeeping.
    assert!(
        shutdown["totals"]["drops"]["recording_dropped"].is_null(),
        "{shutdown}"
    );
    let _ = std::fs::remove_dir_all(&d);
}
