//! Bounded and responsive under load, end to end: thousands of short-lived targets leave no
//! state behind, a flood of events is delivered or counted exactly, and SIGTERM ends a run
//! promptly in the middle of a flood.
use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    time::Duration,
};

use egress_monitor_tests::{clients_dir, pki::Pki, serial, Monitor, Upstream, Waiting};
use serde_json::Value;

const HTTP: u16 = 8080;
const HTTPS: u16 = 8443;

fn tables(stats: &Value) -> &serde_json::Map<String, Value> {
    stats["totals"]["tables"]
        .as_object()
        .unwrap_or_else(|| panic!("no tables in {stats}"))
}

fn drops(line: &Value) -> u64 {
    line["totals"]["drops"]
        .as_object()
        .unwrap_or_else(|| panic!("no drops in {line}"))
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum()
}

#[test]
fn ten_thousand_short_lived_targets_leave_nothing_behind() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    up.tcp_server(HTTP);
    let pki = Pki::create();
    up.https_server(&pki.server(), HTTPS);
    // Connect events are counted, not kept: 10,000 of them.
    let monitor = Monitor::start_with(&["--comm", "python3"], &[], |l| {
        !l.contains("\"event\":\"connect\"") && !l.contains("\"event\":\"tls_handshake\"")
    });
    let mut churn = Command::new("python3")
        .arg(clients_dir().join("python/churn.py"))
        .args([up.v4, &HTTP.to_string(), &HTTPS.to_string()])
        .arg(pki.ca())
        .arg("10")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting churn.py");
    let mut stdin = churn.stdin.take().unwrap();
    let mut stdout = BufReader::new(churn.stdout.take().unwrap());
    let mut round = |n: u32| {
        // Each line on stdin is a round of N children, every 10th over TLS.
        writeln!(stdin, "{n}").unwrap();
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        line
    };
    // Warm up (allocations reach their steady state), settle, measure; then the real churn.
    let warm = round(300);
    assert!(warm.starts_with("done 300 failed 0"), "{warm}");
    std::thread::sleep(Duration::from_secs(3));
    let before = monitor.stats();
    let churned = round(10_000);
    assert!(churned.starts_with("done 10000 failed 0"), "{churned}");
    std::thread::sleep(Duration::from_secs(3));
    let after = monitor.stats();
    drop(stdin);
    let _ = churn.wait();
    let run = monitor.stop();

    let (t0, t1) = (tables(&before), tables(&after));
    for (name, value) in t0 {
        assert_eq!(
            t1.get(name),
            Some(value),
            "table {name} grew with 10,000 processes: before {before}\nafter {after}"
        );
    }
    let (rss0, rss1) = (
        before["totals"]["rss_bytes"].as_u64().unwrap(),
        after["totals"]["rss_bytes"].as_u64().unwrap(),
    );
    assert!(
        rss1 as f64 <= rss0 as f64 * 1.10,
        "RSS grew from {rss0} to {rss1} bytes over 10,000 processes"
    );
    assert_eq!(drops(&after), 0, "nothing dropped: {after}");
    // Every child was seen: its connect (counted) and, for every 10th, its handshake.
    assert!(
        run.skipped >= 10_300 + 1_030,
        "connects and handshakes of 10,300 children, got {} lines",
        run.skipped
    );
    let shutdown = run.status("shutdown")[0];
    assert_eq!(drops(shutdown), 0, "{shutdown}");
}

fn flood_bin() -> &'static str {
    env!("CARGO_BIN_EXE_connect-flood")
}

#[test]
fn a_flood_is_delivered_or_counted_exactly() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    const COUNT: u64 = 1_000_000;
    // Selected by pid, so the kernel reports nothing else (no exec events of other processes
    // that could be dropped and counted too).
    let flood =
        Waiting::spawn(Command::new(flood_bin()).args([up.v4, "9", &COUNT.to_string(), "wait"]));
    let pid = flood.pid().to_string();
    // The generator's connect events are counted, everything else kept.
    let monitor = Monitor::start_with(&["--pid", &pid], &[], |l| {
        !l.contains("\"event\":\"connect\"")
    });
    let out = flood.release();
    assert!(out.status.success(), "{out:?}");
    std::thread::sleep(Duration::from_secs(2));
    let run = monitor.stop();
    let shutdown = run.status("shutdown")[0];
    let delivered = run.skipped;
    let dropped = drops(shutdown);
    assert_eq!(
        delivered + dropped,
        COUNT,
        "{delivered} delivered + {dropped} dropped: {shutdown}\n{}",
        run.dump()
    );
    eprintln!("flood: {delivered} delivered, {dropped} dropped ({shutdown})");
}

#[test]
fn sigterm_ends_a_run_within_a_second_during_a_flood() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    let monitor = Monitor::start_with(&["--comm", "connect-flood"], &[], |l| {
        !l.contains("\"event\":\"connect\"")
    });
    let mut flood = Command::new(flood_bin())
        .args([up.v4, "9", "1000000000"])
        .stdout(Stdio::null())
        .spawn()
        .expect("starting connect-flood");
    std::thread::sleep(Duration::from_millis(1500));
    let run = monitor.stop();
    let _ = flood.kill();
    let _ = flood.wait();
    assert!(run.skipped > 0, "the flood was being reported");
    assert!(
        run.exit_time <= Duration::from_secs(1),
        "SIGTERM took {:?} to end the run",
        run.exit_time
    );
    let shutdown = run.status("shutdown")[0];
    assert!(
        shutdown["message"].as_str().unwrap().contains("SIGTERM"),
        "{shutdown}"
    );
}

/// Eight threads connect at the same time and stay alive until all have.
const PY_MANY_THREADS: &str = r#"
import socket, sys, threading
barrier = threading.Barrier(8)
def work():
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
    barrier.wait()
    s.close()
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print("done")
"#;

#[test]
fn full_kernel_maps_count_what_they_refuse() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    up.tcp_server(HTTP);
    // Maps far too small for the load: nothing may be evicted silently, every refusal counts.
    // On the syscall data path, where connects need per-thread state.
    let monitor = Monitor::start(&[
        "--comm",
        "python3",
        "--map-sizes",
        "sockets=16,threads=4",
        "--syscall-tracepoints",
    ]);
    let sockets = egress_monitor_tests::run_client(
        egress_monitor_tests::python(egress_monitor_tests::PY_MANY_SOCKETS)
            .args([up.v4, &HTTP.to_string()]),
    );
    assert_eq!(sockets.stdout().trim(), "open 64", "{:?}", sockets.output);
    std::thread::sleep(Duration::from_secs(1));
    let after_sockets = monitor.stats();
    let threads = egress_monitor_tests::run_client(
        egress_monitor_tests::python(PY_MANY_THREADS).args([up.v4, &HTTP.to_string()]),
    );
    assert_eq!(threads.stdout().trim(), "done", "{:?}", threads.output);
    let run = monitor.stop();
    let shutdown = run.status("shutdown")[0];
    // 64 sockets open at once in a map of 16: 48 refused, each counted.
    assert_eq!(
        after_sockets["totals"]["drops"]["sockets_full"], 48,
        "{after_sockets}"
    );
    assert_eq!(
        run.connects_from(sockets.pid).len(),
        64,
        "an untracked socket's connect is still reported"
    );
    // Eight live threads (and the main thread, which maps libraries) in a map of 4: every
    // connect is reported or its refusal counted.
    let reported = run.connects_from(threads.pid).len() as u64;
    let refused = shutdown["totals"]["drops"]["thread_state_full"]
        .as_u64()
        .unwrap()
        - after_sockets["totals"]["drops"]["thread_state_full"]
            .as_u64()
            .unwrap();
    assert!(refused >= 4, "{shutdown}");
    assert_eq!(reported + refused, 8, "{}", run.dump());
}
