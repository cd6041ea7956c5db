//! Where the OpenSSL probes attach, and what happens when a library is odd: loaded after the
//! monitor started, without the OpenSSL symbols, deleted while mapped. Each case must leave a
//! status line and keep connect tracing working.
use std::{path::Path, process::Stdio, time::Duration};

use egress_monitor_tests::{
    pki::Pki, python, run_client, serial, venv_python, Monitor, Upstream, Waiting,
};

const TLS_PORT: u16 = 8443;
const TCP_PORT: u16 = 8080;

fn lib(name: &str) -> String {
    let dir = format!("/usr/lib/{}-linux-gnu", std::env::consts::ARCH);
    let path = format!("{dir}/{name}");
    assert!(
        Path::new(&path).exists(),
        "{path} is missing on this machine"
    );
    path
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("egress-monitor-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const LATE_SSL: &str = r#"
import sys, time
time.sleep(0.5)
import socket, ssl          # loads libssl from LD_LIBRARY_PATH only now
time.sleep(1.5)
ctx = ssl._create_unverified_context()
with socket.create_connection((sys.argv[1], int(sys.argv[2]))) as sock:
    with ctx.wrap_socket(sock, server_hostname="api.test") as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n")
        print(s.recv(100).split(b"\r\n")[0].decode())
"#;

#[test]
fn a_libssl_loaded_after_start_is_still_covered() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    let pki = Pki::create();
    up.https_server(&pki.self_signed(), TLS_PORT);
    // A private copy: another inode than the host's libssl, so only run-time discovery
    // (the process mapping it) can attach to it.
    let dir = temp_dir("late-libssl");
    for name in ["libssl.so.3", "libcrypto.so.3"] {
        std::fs::copy(lib(name), dir.join(name)).unwrap();
    }
    let monitor = Monitor::start(&["--comm", "python3"]);
    let c = run_client(
        venv_python(LATE_SSL)
            .args([up.v4, &TLS_PORT.to_string()])
            .env("LD_LIBRARY_PATH", &dir),
    );
    assert!(c.output.status.success(), "{:?}", c.output);
    // Nobody maps the private copy any more: its probes go (in the background).
    let copy = format!("{}/libssl.so.3", dir.display());
    assert!(
        monitor.wait_for(Duration::from_secs(10), |l| l["status"] == "detached"
            && l["component"] == format!("uprobe:{copy}")),
        "the late library's probes were not detached after its last user exited"
    );
    let run = monitor.stop();
    let attached = run
        .status("attached")
        .into_iter()
        .find(|s| s["component"] == format!("uprobe:{copy}"))
        .unwrap_or_else(|| panic!("the late library was not attached:\n{}", run.dump()));
    assert!(
        attached["message"]
            .as_str()
            .unwrap()
            .contains(&format!("pid {}", c.pid)),
        "{attached}"
    );
    let hs = &run.handshakes_of(c.pid)[0]["tls"];
    assert_eq!(hs["library_path"], copy, "{hs}");
    assert!(
        run.findings_of(c.pid)
            .iter()
            .any(|f| f["id"] == "TLS_VERIFY_DISABLED"),
        "{}",
        run.dump()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

const ODD_LIBRARIES: &str = r#"
import ctypes, os, socket, sys
fake, deleted = sys.argv[3], sys.argv[4]
ctypes.CDLL(fake)            # named libssl, but no OpenSSL inside
ctypes.CDLL(deleted)         # a real libcrypto ...
os.remove(deleted)           # ... deleted while mapped
print("loaded", flush=True)
sys.stdin.readline()
socket.create_connection((sys.argv[1], int(sys.argv[2]))).close()
"#;

#[test]
fn odd_libraries_leave_status_lines_and_connect_tracing_works() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    up.tcp_server(TCP_PORT);
    let dir = temp_dir("odd-libs");
    let fake = dir.join("libssl.so.3");
    std::fs::copy(lib("libz.so.1"), &fake).unwrap();
    let deleted_dir = dir.join("gone");
    std::fs::create_dir_all(&deleted_dir).unwrap();
    let deleted = deleted_dir.join("libcrypto.so.3");
    std::fs::copy(lib("libcrypto.so.3"), &deleted).unwrap();
    let mut waiting = Waiting::spawn(python(ODD_LIBRARIES).args([
        up.v4,
        &TCP_PORT.to_string(),
        fake.to_str().unwrap(),
        deleted.to_str().unwrap(),
    ]));
    // Wait until both libraries are mapped and the copy is deleted.
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(waiting.child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "loaded");
    assert!(!deleted.exists());
    let pid = waiting.pid();
    let monitor = Monitor::start(&["--pid", &pid.to_string()]);
    waiting.child.stdout = None;
    let out = waiting.release();
    assert!(out.status.success(), "{out:?}");
    std::thread::sleep(Duration::from_millis(100));
    let run = monitor.stop();

    let skipped = run
        .status("skipped")
        .into_iter()
        .find(|s| s["component"] == format!("uprobe:{}", fake.display()))
        .unwrap_or_else(|| panic!("no status line for the symbol-less libssl:\n{}", run.dump()));
    assert!(
        skipped["message"]
            .as_str()
            .unwrap()
            .contains("none of the OpenSSL functions"),
        "{skipped}"
    );
    let attached = run
        .status("attached")
        .into_iter()
        .find(|s| s["component"] == format!("uprobe:{} (deleted)", deleted.display()))
        .unwrap_or_else(|| {
            panic!(
                "the deleted library was not attached through its mapping:\n{}",
                run.dump()
            )
        });
    assert!(
        attached["message"]
            .as_str()
            .unwrap()
            .contains("certificate checks (shared libcrypto)"),
        "{attached}"
    );
    assert!(
        !run.connects_from(pid).is_empty(),
        "connect tracing must keep working:\n{}",
        run.dump()
    );
    let _ = Stdio::null();
    std::fs::remove_dir_all(dir).unwrap();
}
