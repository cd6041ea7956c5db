//! Kubernetes pod identity end to end: a real cgroup v2 subtree shaped as the kubelet (systemd
//! driver) and containerd make it for a pod's container, a pod log directory laid out as the
//! kubelet writes it, and a real client moved into the container's cgroup. The monitor must
//! name the container id and the pod (namespace, name, uid, container) of its connect, and
//! nothing for the same client outside the pod.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use egress_monitor_tests::{serial, Monitor, Upstream, Waiting};
use serde_json::{json, Value};

const PORT: u16 = 8080;

/// The mount point of the cgroup v2 hierarchy (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified`
/// on hybrid hosts).
fn cgroup2_mount() -> PathBuf {
    fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == "cgroup2")
        .map(|f| PathBuf::from(f[1]))
        .expect("no cgroup2 hierarchy mounted: the pod tests need one")
}

/// A pod UID and a container id of this run (`n` tells a test's pods apart).
fn ids(n: u32) -> (String, String) {
    let pid = std::process::id();
    let uid = format!(
        "6c8a0f1e-2b3d-4c5e-9f01-{:012x}",
        (u64::from(pid) << 8) | u64::from(n)
    );
    let container = format!(
        "3f4e8b2a9c1d0e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d{:016x}",
        (u64::from(pid) << 8) | u64::from(n)
    );
    (uid, container)
}

/// The cgroups of one BestEffort pod's containerd container under the systemd driver:
/// `kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid_>.slice/
/// cri-containerd-<id>.scope`. Whatever this creates is removed on drop (processes moved back
/// to the root first), even when the test fails.
struct PodCgroup {
    mount: PathBuf,
    /// Directories this created, outermost first.
    created: Vec<PathBuf>,
    pod_slice: PathBuf,
    scope: PathBuf,
}

impl PodCgroup {
    fn create(uid: &str, container_id: &str) -> Self {
        let mount = cgroup2_mount();
        // systemd reads `-` as nesting in a slice name: the kubelet writes the uid with `_`.
        let systemd_uid = uid.replace('-', "_");
        let mut cgroup = Self {
            mount: mount.clone(),
            created: Vec::new(),
            pod_slice: PathBuf::new(),
            scope: PathBuf::new(),
        };
        let mut dir = mount;
        for level in [
            "kubepods.slice".to_string(),
            "kubepods-besteffort.slice".to_string(),
            format!("kubepods-besteffort-pod{systemd_uid}.slice"),
            format!("cri-containerd-{container_id}.scope"),
        ] {
            dir = dir.join(level);
            if !dir.exists() {
                fs::create_dir(&dir)
                    .unwrap_or_else(|e| panic!("creating cgroup {}: {e}", dir.display()));
                cgroup.created.push(dir.clone());
            }
        }
        cgroup.scope = dir.clone();
        cgroup.pod_slice = dir.parent().unwrap().to_path_buf();
        cgroup
    }
}

impl Drop for PodCgroup {
    fn drop(&mut self) {
        for dir in self.created.iter().rev() {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                for pid in fs::read_to_string(dir.join("cgroup.procs"))
                    .unwrap_or_default()
                    .lines()
                {
                    let _ = fs::write(self.mount.join("cgroup.procs"), pid);
                }
                match fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) if Instant::now() > deadline => {
                        eprintln!("leaving cgroup {} behind: {e}", dir.display());
                        break;
                    }
                    Err(_) => thread::sleep(Duration::from_millis(50)),
                }
            }
        }
    }
}

/// A `/var/log` tree as the kubelet writes it (`pods/<ns>_<name>_<uid>/<container>/0.log`, and
/// the `containers/<pod>_<ns>_<container>-<id>.log` symlinks), with a config file naming it.
/// Removed on drop.
struct KubeletLogs(PathBuf);

impl KubeletLogs {
    fn create(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "egress-monitor-e2e-pods-{tag}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("log/pods")).unwrap();
        fs::create_dir_all(dir.join("log/containers")).unwrap();
        fs::write(
            dir.join("config.toml"),
            format!(
                "[kubernetes]\npod_log_dir = \"{}\"\n",
                dir.join("log/pods").display()
            ),
        )
        .unwrap();
        Self(dir)
    }

    fn config(&self) -> String {
        self.0.join("config.toml").to_str().unwrap().to_string()
    }

    fn pod(&self, namespace: &str, name: &str, uid: &str, containers: &[&str]) {
        let pod = self
            .0
            .join("log/pods")
            .join(format!("{namespace}_{name}_{uid}"));
        for container in containers {
            fs::create_dir_all(pod.join(container)).unwrap();
            fs::write(
                pod.join(container).join("0.log"),
                "2025-11-26T08:47:18.612685Z stdout F listening\n",
            )
            .unwrap();
        }
    }

    fn symlink(&self, namespace: &str, name: &str, uid: &str, container: &str, id: &str) {
        let target = self
            .0
            .join("log/pods")
            .join(format!("{namespace}_{name}_{uid}"))
            .join(container)
            .join("0.log");
        std::os::unix::fs::symlink(
            target,
            self.0
                .join("log/containers")
                .join(format!("{name}_{namespace}_{container}-{id}.log")),
        )
        .unwrap();
    }
}

impl Drop for KubeletLogs {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Connects, sends a request, prints the status line, and stays a second longer, so that the
/// monitor reads its /proc entry (cgroups included) before it is gone.
const PY_CONNECT_AND_LINGER: &str = r#"
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
s.sendall(b"GET / HTTP/1.0\r\n\r\n")
print(s.recv(100).split(b"\r\n")[0].decode(), flush=True)
time.sleep(1)
"#;

/// A client of the upstream, started now but held until released; with `scope`, it first
/// moves itself into that cgroup (and this waits until it is there), then execs the client
/// (same pid).
fn client(up: &Upstream, scope: Option<&Path>) -> Waiting {
    let procs = scope
        .map(|s| s.join("cgroup.procs").to_str().unwrap().to_string())
        .unwrap_or_default();
    let waiting = Waiting::spawn(
        Command::new("sh")
            .args([
                "-c",
                r#"if [ -n "$0" ]; then echo $$ > "$0" || exit 1; fi; read go && exec "$@""#,
                &procs,
                "python3",
                "-c",
                PY_CONNECT_AND_LINGER,
                up.v4,
            ])
            .arg(PORT.to_string()),
    );
    if let Some(scope) = scope {
        let pid = waiting.pid().to_string();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !fs::read_to_string(scope.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .any(|l| l == pid)
        {
            assert!(
                Instant::now() < deadline,
                "the client did not move into {}",
                scope.display()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
    waiting
}

fn release(client: Waiting) -> u32 {
    let pid = client.pid();
    let out = client.release();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "HTTP/1.1 200 OK",
        "the client reached the upstream: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    pid
}

fn process_of_connect(run: &egress_monitor_tests::Run, pid: u32) -> Value {
    let connects = run.connects_from(pid);
    assert!(
        !connects.is_empty(),
        "no connect event from pid {pid}:\n{}",
        run.dump()
    );
    assert_eq!(connects[0]["result"], "ok", "{}", connects[0]);
    connects[0]["process"].clone()
}

#[test]
fn a_containerd_container_is_named_by_its_pod() {
    let _s = serial();
    let (uid, container_id) = ids(1);
    let cgroup = PodCgroup::create(&uid, &container_id);
    let logs = KubeletLogs::create("cgroup");
    logs.pod(
        "mcp-servers",
        "github-mcp-6d9f7c4b8-q2x7z",
        &uid,
        &["server"],
    );
    let up = Upstream::create().unwrap();
    up.tcp_server(PORT);
    let inside = client(&up, Some(&cgroup.scope));
    let monitor = Monitor::start(&[
        "--config",
        &logs.config(),
        "--cgroup",
        cgroup.pod_slice.to_str().unwrap(),
    ]);
    let pid = release(inside);
    let run = monitor.stop();
    let process = process_of_connect(&run, pid);
    assert_eq!(process["comm"], "python3", "{process}");
    assert_eq!(process["container_id"], container_id.as_str(), "{process}");
    assert_eq!(
        process["pod"],
        json!({
            "namespace": "mcp-servers",
            "name": "github-mcp-6d9f7c4b8-q2x7z",
            "uid": uid,
            "container": "server",
        }),
        "{process}"
    );
}

#[test]
fn the_container_of_a_multi_container_pod_and_no_pod_outside_it() {
    let _s = serial();
    let (uid, container_id) = ids(2);
    let cgroup = PodCgroup::create(&uid, &container_id);
    let logs = KubeletLogs::create("all");
    // An init container, the server and a sidecar: the kubelet's symlink for the id tells
    // which one the process runs in.
    logs.pod(
        "prod",
        "fetch-mcp-0",
        &uid,
        &["init-config", "server", "proxy"],
    );
    logs.symlink("prod", "fetch-mcp-0", &uid, "server", &container_id);
    let up = Upstream::create().unwrap();
    up.tcp_server(PORT);
    let inside = client(&up, Some(&cgroup.scope));
    let outside = client(&up, None);
    let monitor = Monitor::start(&["--all", "--config", &logs.config()]);
    let inside_pid = release(inside);
    let outside_pid = release(outside);
    let run = monitor.stop();
    let process = process_of_connect(&run, inside_pid);
    assert_eq!(process["container_id"], container_id.as_str(), "{process}");
    assert_eq!(
        process["pod"],
        json!({"namespace": "prod", "name": "fetch-mcp-0", "uid": uid, "container": "server"}),
        "{process}"
    );
    // The same client on the host: no container, no pod (and the field is there, null).
    let process = process_of_connect(&run, outside_pid);
    assert_eq!(process["container_id"], Value::Null, "{process}");
    assert_eq!(process.get("pod"), Some(&Value::Null), "{process}");
}
