use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, TcpStream},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use super::*;
use crate::{
    decode::{Family as AddrFamily, Protocol},
    output::{finding::Finding, Destination, Event, EventDetail, Socket, Status},
    process::vanished,
};

fn connect() -> Record {
    Record::Event(Event {
        time: SystemTime::now(),
        process: Arc::new(vanished(42, "curl", Some("/usr/bin/curl"))),
        detail: EventDetail::Connect {
            socket: Socket {
                family: AddrFamily::Ipv4,
                protocol: Some(Protocol::Tcp),
                fd: 5,
            },
            destination: Destination {
                ip: IpAddr::V4(Ipv4Addr::new(10, 203, 0, 2)),
                port: 8080,
                hostname: Some("api.test".into()),
            },
            result: "ok",
        },
    })
}

fn target() -> Record {
    Record::Event(Event {
        time: SystemTime::now(),
        process: Arc::new(vanished(42, "curl", None)),
        detail: EventDetail::Target {
            reason: "--comm curl".into(),
        },
    })
}

fn finding(id: FindingId) -> Record {
    Record::Finding(Finding {
        time: SystemTime::now(),
        id,
        process: Arc::new(vanished(42, "curl", None)),
        destination: None,
        evidence: serde_json::json!({"reason": "test"}),
        count: 1,
    })
}

fn status(kind: StatusKind, component: Option<&str>, message: &str) -> Record {
    Record::Status(Status::new(kind, component.map(String::from), message))
}

/// The value of the sample `name{labels}` in an exposition.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let prefix = if labels.is_empty() {
        format!("{name} ")
    } else {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        format!("{name}{{{}}} ", labels.join(","))
    };
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse().expect("a number"))
}

/// `# TYPE name type` lines.
fn types(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').expect("name and type");
            (name.to_string(), kind.to_string())
        })
        .collect()
}

#[test]
fn off_does_nothing() {
    let m = Metrics::off();
    m.observe(&connect());
    m.suppressed(FindingId::PlaintextCredentials);
    m.heartbeat();
    m.tick(3, &BTreeMap::new(), 0);
    m.stop();
    assert!(!m.enabled());
    assert_eq!(m.exposition(), "");
    assert_eq!(Metrics::start(None).unwrap().local_addr(), None);
}

#[test]
fn families_follow_prometheus_naming() {
    let m = Metrics::collecting();
    // Families without a series yet are left out of the exposition.
    m.observe(&finding(FindingId::PlaintextCredentials));
    m.suppressed(FindingId::TlsVerifyDisabled);
    m.observe(&status(StatusKind::Attached, Some("tracepoint:a/b"), "x"));
    m.observe(&status(StatusKind::Skipped, Some("BTF"), "x"));
    m.tick(1, &BTreeMap::from([("ringbuf_full", 0)]), 0);
    let text = m.exposition();
    let types = types(&text);
    for (name, kind) in &types {
        assert!(name.starts_with("egress_monitor_"), "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{name}"
        );
        assert_eq!(kind == "counter", name.ends_with("_total"), "{name} {kind}");
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has no help"
        );
    }
    for expected in [
        "egress_monitor_events_total",
        "egress_monitor_findings_total",
        "egress_monitor_findings_suppressed_total",
        "egress_monitor_drops_total",
        "egress_monitor_targets_watched",
        "egress_monitor_probes_attached",
        "egress_monitor_probes_skipped_total",
        "egress_monitor_bpf_stats_enabled",
        "egress_monitor_bpf_program_run_time_seconds_total",
        "egress_monitor_bpf_program_runs_total",
        "egress_monitor_process_cpu_seconds_total",
        "egress_monitor_process_resident_memory_bytes",
        "egress_monitor_build_info",
        "egress_monitor_ready",
        "egress_monitor_event_loop_idle_seconds",
    ] {
        assert!(
            types.iter().any(|(n, _)| n == expected),
            "{expected} missing from:\n{text}"
        );
    }
    assert_eq!(
        value(
            &text,
            "egress_monitor_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    // Every event kind is there from the start.
    for kind in EVENT_KINDS {
        assert_eq!(
            value(&text, "egress_monitor_events_total", &[("kind", kind)]),
            Some(0.0),
            "{kind}"
        );
    }
    assert!(value(&text, "egress_monitor_process_cpu_seconds_total", &[]).is_some());
    assert!(value(&text, "egress_monitor_process_resident_memory_bytes", &[]).unwrap() > 0.0);
}

#[test]
fn records_are_counted() {
    let m = Metrics::collecting();
    m.observe(&connect());
    m.observe(&connect());
    m.observe(&target());
    m.observe(&finding(FindingId::PlaintextCredentials));
    m.observe(&finding(FindingId::TlsUntrustedCa));
    m.observe(&finding(FindingId::TlsUntrustedCa));
    m.suppressed(FindingId::TlsVerifyDisabled);
    m.observe(&status(
        StatusKind::Attached,
        Some("tracepoint:sched/sched_process_exec"),
        "execs",
    ));
    m.observe(&status(
        StatusKind::Attached,
        Some("tracepoint:sched/sched_process_fork"),
        "forks",
    ));
    m.observe(&status(
        StatusKind::Attached,
        Some("data path"),
        "cgroup hooks on /sys/fs/cgroup (connect4/6, ...)",
    ));
    m.observe(&status(
        StatusKind::Attached,
        Some("data path"),
        "syscall tracepoints (fallback): ...",
    ));
    m.observe(&status(
        StatusKind::Attached,
        Some("uprobe:/usr/lib/x86_64-linux-gnu/libssl.so.3"),
        "OpenSSL handshakes (shared libssl) in every process that maps it: 9 hooks",
    ));
    m.observe(&status(
        StatusKind::Attached,
        Some("uprobe:/srv/app/secret-token-in-a-path/libssl.so"),
        "OpenSSL handshakes (shared libssl) in pid 7 only: 9 hooks",
    ));
    m.observe(&status(
        StatusKind::Detached,
        Some("uprobe:/srv/app/secret-token-in-a-path/libssl.so"),
        "no watched process maps it any more",
    ));
    m.observe(&status(StatusKind::Skipped, Some("BTF"), "no offsets"));
    m.observe(&status(
        StatusKind::Skipped,
        Some("uprobes"),
        "no uprobe support",
    ));
    m.observe(&status(StatusKind::Warning, Some("trust store"), "x"));
    let drops = BTreeMap::from([
        ("ringbuf_full", 3),
        ("sockets_full", 0),
        ("streams_full", 2),
    ]);
    m.tick(5, &drops, 1);
    let text = m.exposition();
    let v = |name: &str, labels: &[(&str, &str)]| {
        value(&text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
    };
    assert_eq!(
        v("egress_monitor_events_total", &[("kind", "connect")]),
        2.0
    );
    assert_eq!(v("egress_monitor_events_total", &[("kind", "target")]), 1.0);
    assert_eq!(
        v("egress_monitor_events_total", &[("kind", "tls_handshake")]),
        0.0
    );
    assert_eq!(
        v(
            "egress_monitor_findings_total",
            &[("id", "PLAINTEXT_CREDENTIALS"), ("severity", "HIGH")]
        ),
        1.0
    );
    assert_eq!(
        v(
            "egress_monitor_findings_total",
            &[("id", "TLS_UNTRUSTED_CA"), ("severity", "MEDIUM")]
        ),
        2.0
    );
    assert_eq!(
        v(
            "egress_monitor_findings_suppressed_total",
            &[("id", "TLS_VERIFY_DISABLED")]
        ),
        1.0
    );
    assert_eq!(
        v("egress_monitor_probes_attached", &[("kind", "tracepoint")]),
        2.0
    );
    assert_eq!(
        v("egress_monitor_probes_attached", &[("kind", "cgroup")]),
        1.0
    );
    assert_eq!(
        v("egress_monitor_probes_attached", &[("kind", "uprobe")]),
        1.0
    );
    assert_eq!(
        v("egress_monitor_probes_skipped_total", &[("kind", "btf")]),
        1.0
    );
    assert_eq!(
        v("egress_monitor_probes_skipped_total", &[("kind", "uprobe")]),
        1.0
    );
    assert_eq!(
        v(
            "egress_monitor_drops_total",
            &[("reason", "ringbuf_full"), ("side", "kernel")]
        ),
        3.0
    );
    assert_eq!(
        v(
            "egress_monitor_drops_total",
            &[("reason", "sockets_full"), ("side", "kernel")]
        ),
        0.0
    );
    assert_eq!(
        v(
            "egress_monitor_drops_total",
            &[("reason", "streams_full"), ("side", "userspace")]
        ),
        2.0
    );
    assert_eq!(
        v(
            "egress_monitor_drops_total",
            &[("reason", "undecodable"), ("side", "userspace")]
        ),
        1.0
    );
    assert_eq!(v("egress_monitor_targets_watched", &[]), 5.0);
    // Paths, host names and messages never become labels.
    for leak in [
        "secret-token",
        "libssl",
        "api.test",
        "curl",
        "/usr",
        "9 hooks",
        "maps it",
    ] {
        assert!(!text.contains(leak), "{leak} in\n{text}");
    }
    // A later tick replaces the snapshot.
    m.tick(0, &BTreeMap::from([("ringbuf_full", 4)]), 1);
    let text = m.exposition();
    assert_eq!(
        value(&text, "egress_monitor_targets_watched", &[]),
        Some(0.0)
    );
    assert_eq!(
        value(
            &text,
            "egress_monitor_drops_total",
            &[("reason", "ringbuf_full"), ("side", "kernel")]
        ),
        Some(4.0)
    );
}

#[test]
fn health_follows_ready_heartbeats_and_shutdown() {
    let m = Metrics::collecting_since(Instant::now() - Duration::from_secs(3600));
    assert_eq!(m.health(), Health::Starting);
    m.heartbeat();
    assert_eq!(
        m.health(),
        Health::Starting,
        "ready only after the ready line"
    );
    m.observe(&status(StatusKind::Ready, None, "watching 0 process(es)"));
    assert_eq!(m.health(), Health::Ready);
    let state = &m.0.as_ref().unwrap().state;
    let now = state.now_ms();
    state.heartbeat_ms.store(now - 4_000, Ordering::Release);
    assert_eq!(m.health(), Health::Ready, "4 s without a heartbeat is fine");
    state.heartbeat_ms.store(now - 6_000, Ordering::Release);
    assert!(matches!(m.health(), Health::Stalled(d) if d >= Duration::from_secs(6)));
    assert_eq!(
        value(&m.exposition(), "egress_monitor_ready", &[]),
        Some(0.0)
    );
    m.tick(0, &BTreeMap::new(), 0);
    assert_eq!(m.health(), Health::Ready, "a tick is a heartbeat");
    assert_eq!(
        value(&m.exposition(), "egress_monitor_ready", &[]),
        Some(1.0)
    );
    m.observe(&status(StatusKind::Shutdown, None, "stopped (SIGTERM)"));
    assert_eq!(m.health(), Health::Stopping);
}

/// One request over a fresh connection: status, head, body.
fn request(addr: SocketAddr, raw: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(raw.as_bytes()).unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head[9..12].parse().unwrap();
    (status, head.to_string(), body.to_string())
}

fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\n\r\n"),
    )
}

#[test]
fn the_server_answers_get_metrics_and_healthz_only() {
    let m = Metrics::start(Some("127.0.0.1:0")).unwrap();
    let addr = m.local_addr().expect("listening");
    let (status, head, body) = get(addr, "/healthz");
    assert_eq!(status, 503, "{head}\n{body}");
    assert!(body.starts_with("starting"), "{body}");
    m.observe(&status_ready());
    m.observe(&connect());
    let (status, head, body) = get(addr, "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"), "{head}");
    let (status, head, body) = get(addr, "/metrics");
    assert_eq!(status, 200, "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    assert!(head.contains("Connection: close"), "{head}");
    assert!(
        head.contains(&format!("Content-Length: {}", body.len())),
        "{head}"
    );
    assert_eq!(
        value(&body, "egress_monitor_events_total", &[("kind", "connect")]),
        Some(1.0)
    );
    assert_eq!(get(addr, "/metrics?x=1").0, 200);
    assert_eq!(get(addr, "/").0, 404);
    assert_eq!(get(addr, "/metrics/../etc/passwd").0, 404);
    let (status, head, _) = request(addr, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(status, 405);
    assert!(head.contains("Allow: GET"), "{head}");
    assert_eq!(request(addr, "HEAD /healthz HTTP/1.1\r\n\r\n").0, 405);
    assert_eq!(request(addr, "\x16\x03\x01 garbage\r\n\r\n").0, 400);
    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n", "a".repeat(20_000));
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // The server answers once its buffer is full, and may close before reading the rest.
    let _ = stream.write_all(huge.as_bytes());
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    assert!(
        String::from_utf8_lossy(&bytes).starts_with("HTTP/1.1 431 "),
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    m.stop();
    assert!(
        TcpStream::connect(addr).is_err(),
        "stopped: nothing listens"
    );
}

fn status_ready() -> Record {
    status(StatusKind::Ready, None, "watching")
}

#[test]
fn a_request_that_never_finishes_does_not_block_others() {
    let m = Metrics::start(Some("127.0.0.1:0")).unwrap();
    let addr = m.local_addr().unwrap();
    m.observe(&status_ready());
    // Half a request head, never finished, and connections that send nothing at all.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET /metr").unwrap();
    let silent: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(get(addr, "/healthz").0, 200);
        assert_eq!(get(addr, "/metrics").0, 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answers took {:?}",
        started.elapsed()
    );
    drop(silent);
    // The slow one is cut off at the deadline, not answered.
    slow.set_read_timeout(Some(http::DEADLINE + Duration::from_secs(5)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    m.stop();
}

#[test]
fn a_bind_failure_names_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = Metrics::start(Some(&addr)).unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains(&addr), "{message}");
    assert!(message.contains("--metrics-addr"), "{message}");
    let err = Metrics::start(Some("not an address")).unwrap_err();
    assert!(format!("{err:#}").contains("not an address"));
}

/// A ring buffer map made here (root only): its size, and nothing in use.
#[test]
fn ring_buffer_positions() {
    #[repr(C)]
    struct MapCreate {
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
    }
    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_MAP_TYPE_RINGBUF: u32 = 27;
    let attr = MapCreate {
        map_type: BPF_MAP_TYPE_RINGBUF,
        key_size: 0,
        value_size: 0,
        max_entries: 64 * 1024,
    };
    // SAFETY: a valid attribute block for BPF_MAP_CREATE.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_CREATE,
            &attr as *const MapCreate,
            std::mem::size_of::<MapCreate>(),
        )
    };
    if fd < 0 {
        eprintln!(
            "cannot create a ring buffer here ({}): skipped",
            std::io::Error::last_os_error()
        );
        return;
    }
    // SAFETY: a descriptor this test just got and owns.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
    let m = Metrics::collecting();
    m.ring_buffer(&fd);
    drop(fd); // The mapping keeps the map.
    let text = m.exposition();
    assert_eq!(
        value(&text, "egress_monitor_ring_buffer_size_bytes", &[]),
        Some(65536.0)
    );
    assert_eq!(
        value(&text, "egress_monitor_ring_buffer_used_bytes", &[]),
        Some(0.0)
    );
}
