//! Processes: who they are (enrichment from /proc) and which ones are watched (targets).
pub mod cgroup;
pub mod discover;
pub mod gobuild;
pub mod listeners;
pub mod mcp;
pub mod pod;
pub mod sockets;
pub mod targets;

use std::{fs, path::PathBuf, sync::Arc};

use serde::Serialize;

use crate::detect::{cmdline::CmdlineRedactor, secret::Secret};

/// What a finding or event says about the process behind it (`process` in the JSON contract).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ProcessInfo {
    pub pid: u32,
    pub ppid: Option<u32>,
    pub uid: Option<u32>,
    pub comm: String,
    pub exe: Option<String>,
    pub cmdline: Vec<String>,
    pub container_id: Option<String>,
    /// The Kubernetes pod it runs in (see [`pod`]), when its cgroup path names one.
    pub pod: Option<pod::Pod>,
    /// Identified as an MCP server, or started by one.
    pub mcp: bool,
    #[serde(skip)]
    pub cgroups: Vec<cgroup::Membership>,
    /// Why the process is watched (for `target` events), when it is.
    #[serde(skip)]
    pub mcp_reason: Option<String>,
    /// What its program is built from (see [`discover`]).
    #[serde(skip)]
    pub discovered: discover::Discovered,
}

/// Where /proc is (tests point this at a fixture tree), and where pods are named (the
/// kubelet's pod log directory, shared by every clone).
#[derive(Clone, Debug)]
pub struct ProcFs {
    root: PathBuf,
    pods: Arc<pod::PodNames>,
}

impl Default for ProcFs {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/proc"),
            pods: Arc::default(),
        }
    }
}

/// The fields of `/proc/PID/stat` we use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub ppid: u32,
    /// Start time in clock ticks since boot: tells a reused pid from the process we knew.
    pub start_time: u64,
}

/// Parse `/proc/PID/stat`. `comm` may contain spaces and parentheses, so fields are counted from
/// the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): ppid is field 4, starttime field 22.
    Some(Stat {
        ppid: fields.get(1)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// Real uid from `/proc/PID/status`.
pub fn parse_status_uid(text: &str) -> Option<u32> {
    text.lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

pub fn parse_cmdline(raw: &[u8]) -> Vec<String> {
    raw.split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

impl ProcFs {
    #[cfg(test)]
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            ..Self::default()
        }
    }

    /// Name pods from this kubelet pod log directory (`[kubernetes] pod_log_dir`).
    pub fn with_pod_log_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.pods = Arc::new(pod::PodNames::new(dir));
        self
    }

    pub(crate) fn path(&self, pid: u32, file: &str) -> PathBuf {
        self.root.join(pid.to_string()).join(file)
    }

    pub fn stat(&self, pid: u32) -> Option<Stat> {
        parse_stat(&fs::read_to_string(self.path(pid, "stat")).ok()?)
    }

    /// Read everything the JSON contract wants about `pid`. `None` when the process is gone
    /// (or its /proc entry is unreadable). Fields that alone are unreadable stay empty.
    pub fn load(&self, pid: u32, redactor: &CmdlineRedactor) -> Option<ReadProcess> {
        let stat = self.stat(pid)?;
        let comm = fs::read_to_string(self.path(pid, "comm"))
            .map(|s| s.trim_end_matches('\n').to_string())
            .unwrap_or_default();
        // Secrets on command lines never reach a record; those found are handed back so the
        // caller scrubs them from everything else it writes.
        let (cmdline, secrets) = match fs::read(self.path(pid, "cmdline")) {
            Ok(raw) => {
                let redacted = redactor.redact(&parse_cmdline(&raw));
                (redacted.argv, redacted.secrets)
            }
            Err(_) => (Vec::new(), Vec::new()),
        };
        let exe = fs::read_link(self.path(pid, "exe")).ok().map(|p| {
            p.to_string_lossy()
                .trim_end_matches(" (deleted)")
                .to_string()
        });
        let uid = fs::read_to_string(self.path(pid, "status"))
            .ok()
            .and_then(|s| parse_status_uid(&s));
        let cgroups = fs::read_to_string(self.path(pid, "cgroup"))
            .map(|s| cgroup::parse_proc(&s))
            .unwrap_or_default();
        let container_id = cgroup::container_of(&cgroups).map(String::from);
        // Only a cgroup path that names a pod leads to the pod log directory.
        let pod =
            cgroup::pod_of(&cgroups).map(|uid| self.pods.lookup(&uid, container_id.as_deref()));
        let info = ProcessInfo {
            pid,
            ppid: Some(stat.ppid),
            uid,
            comm,
            exe,
            cmdline,
            container_id,
            pod,
            mcp: false,
            cgroups,
            mcp_reason: None,
            discovered: Default::default(),
        };
        Some(ReadProcess {
            info,
            start: stat.start_time,
            secrets,
        })
    }

    /// The libraries the process's executable names as needed (`DT_NEEDED`): read through
    /// `/proc/PID/exe`, or from `fallback` (the path an exec event named) when the process is
    /// gone. Empty when neither can be read.
    pub fn needed_libraries(&self, pid: u32, fallback: Option<&str>) -> Vec<String> {
        let file = fs::File::open(self.path(pid, "exe"))
            .or_else(|_| fs::File::open(fallback.ok_or(std::io::ErrorKind::NotFound)?));
        let Ok(file) = file else {
            return Vec::new();
        };
        // SAFETY: read-only private mapping of a file we just opened, dropped before return.
        match unsafe { memmap2::Mmap::map(&file) } {
            Ok(data) => needed_libraries(&data),
            Err(_) => Vec::new(),
        }
    }

    /// `/proc/PID/maps` (empty when unreadable).
    pub fn maps(&self, pid: u32) -> String {
        fs::read_to_string(self.path(pid, "maps")).unwrap_or_default()
    }

    /// All numeric entries of /proc.
    pub fn pids(&self) -> Vec<u32> {
        let Ok(dir) = fs::read_dir(&self.root) else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect()
    }

    /// The value of one environment variable of `pid`, read from `/proc/PID/environ`. Only the
    /// requested variable is kept: the rest of a process's environment (secrets included) is
    /// dropped here.
    pub fn env_var(&self, pid: u32, name: &str) -> Option<String> {
        let raw = fs::read(self.path(pid, "environ")).ok()?;
        let prefix = format!("{name}=");
        raw.split(|&b| b == 0)
            .find_map(|entry| entry.strip_prefix(prefix.as_bytes()))
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    pub fn exists(&self, pid: u32) -> bool {
        self.root.join(pid.to_string()).exists()
    }
}

/// The libraries an ELF executable names as needed (`DT_NEEDED`), without loading it.
pub fn needed_libraries(data: &[u8]) -> Vec<String> {
    use object::read::elf::{Dyn as _, FileHeader as _, SectionHeader as _};
    let Ok(header) = object::elf::FileHeader64::<object::Endianness>::parse(data) else {
        return Vec::new();
    };
    let Ok(endian) = header.endian() else {
        return Vec::new();
    };
    let Ok(sections) = header.sections(endian, data) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    for section in sections.iter() {
        let Ok(Some((entries, link))) = section.dynamic(endian, data) else {
            continue;
        };
        let Ok(strings) = sections.strings(endian, data, link) else {
            continue;
        };
        for entry in entries {
            if entry.tag32(endian) == Some(object::elf::DT_NEEDED as i32) {
                if let Ok(name) = entry.string(endian, strings) {
                    names.push(String::from_utf8_lossy(name).into_owned());
                }
            }
        }
    }
    names
}

/// What reading a process from /proc gave.
#[derive(Debug)]
pub struct ReadProcess {
    pub info: ProcessInfo,
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start: u64,
    /// Secrets its command line held (redacted from `info.cmdline`).
    pub secrets: Vec<Secret>,
}

/// A process whose /proc entry could not be read (it exited before we looked): what the kernel
/// told us is all there is.
pub fn vanished(pid: u32, comm: &str, exe: Option<&str>) -> ProcessInfo {
    ProcessInfo {
        pid,
        comm: comm.to_string(),
        exe: exe.map(String::from),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor() -> CmdlineRedactor {
        CmdlineRedactor::new(crate::detect::redact::Fingerprinter::new([3; 32]), false)
    }

    #[test]
    fn stat_with_hostile_comm() {
        let text =
            "4242 (a) b) (c) S 17 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 0 0";
        assert_eq!(
            parse_stat(text),
            Some(Stat {
                ppid: 17,
                start_time: 987654
            })
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S"), None);
    }

    #[test]
    fn status_uid_and_cmdline() {
        assert_eq!(
            parse_status_uid("Name:\tx\nUid:\t1000\t1000\t1000\t1000\n"),
            Some(1000)
        );
        assert_eq!(parse_status_uid("Name:\tx\n"), None);
        assert_eq!(
            parse_cmdline(b"node\0/srv/a b.js\0\0"),
            vec!["node", "/srv/a b.js"]
        );
        assert!(parse_cmdline(b"").is_empty());
    }

    #[test]
    fn loads_from_a_proc_tree_and_tolerates_missing_files() {
        let dir = std::env::temp_dir().join(format!("em-proc-{}", std::process::id()));
        let pid_dir = dir.join("77");
        fs::create_dir_all(&pid_dir).unwrap();
        fs::write(
            pid_dir.join("stat"),
            "77 (node) S 1 77 77 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 555 0",
        )
        .unwrap();
        fs::write(pid_dir.join("comm"), "node\n").unwrap();
        fs::write(pid_dir.join("cmdline"), b"node\0server.js\0").unwrap();
        fs::write(
            pid_dir.join("cgroup"),
            "0::/system.slice/docker-3f4e8b2a9c1d0e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f.scope\n",
        )
        .unwrap();
        let procfs = ProcFs::at(&dir);
        let read = procfs.load(77, &redactor()).unwrap();
        assert_eq!(read.start, 555);
        let info = read.info;
        assert_eq!(info.ppid, Some(1));
        assert_eq!(info.comm, "node");
        assert_eq!(info.cmdline, vec!["node", "server.js"]);
        assert_eq!(info.uid, None, "no status file: uid unknown, not an error");
        assert_eq!(info.exe, None);
        assert!(info.container_id.unwrap().starts_with("3f4e8b2a"));
        assert!(procfs.load(78, &redactor()).is_none(), "vanished process");
        assert_eq!(procfs.pids(), vec![77]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn loads_the_pod_of_a_kubernetes_process_and_nothing_for_others() {
        const UID: &str = "6c8a0f1e-2b3d-4c5e-9f01-23456789abcd";
        const ID: &str = "3f4e8b2a9c1d0e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f";
        let dir = std::env::temp_dir().join(format!("em-proc-pod-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let proc_dir = |pid: u32, cgroup: &str| {
            let p = dir.join("proc").join(pid.to_string());
            fs::create_dir_all(&p).unwrap();
            fs::write(
                p.join("stat"),
                format!("{pid} (mcp) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 9 0"),
            )
            .unwrap();
            fs::write(p.join("cgroup"), cgroup).unwrap();
        };
        let systemd_uid = UID.replace('-', "_");
        proc_dir(
            10,
            &format!(
                "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{systemd_uid}.slice/cri-containerd-{ID}.scope\n"
            ),
        );
        proc_dir(11, "0::/system.slice/mcp.service\n");
        // As the kubelet writes it.
        let log = dir
            .join("log/pods")
            .join(format!("mcp-servers_github-5f7c_{UID}/server"));
        fs::create_dir_all(&log).unwrap();
        fs::write(log.join("0.log"), "").unwrap();
        let procfs = ProcFs::at(dir.join("proc")).with_pod_log_dir(dir.join("log/pods"));
        let info = procfs.load(10, &redactor()).unwrap().info;
        assert_eq!(info.container_id.as_deref(), Some(ID));
        assert_eq!(
            info.pod,
            Some(pod::Pod {
                namespace: Some("mcp-servers".into()),
                name: Some("github-5f7c".into()),
                uid: UID.into(),
                container: Some("server".into()),
            })
        );
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(
            json["pod"],
            serde_json::json!({"namespace": "mcp-servers", "name": "github-5f7c", "uid": UID, "container": "server"})
        );
        let host = procfs.load(11, &redactor()).unwrap().info;
        assert_eq!(host.pod, None);
        assert_eq!(
            serde_json::to_value(&host).unwrap()["pod"],
            serde_json::Value::Null
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn needed_libraries_of_an_executable() {
        let curl = fs::read("/usr/bin/curl").expect("curl is on this machine");
        let needed = needed_libraries(&curl);
        assert!(
            needed.iter().any(|n| n.starts_with("libcurl.so")),
            "{needed:?}"
        );
        assert!(needed_libraries(b"not an elf").is_empty());
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let info = ProcFs::default().load(me, &redactor()).unwrap().info;
        assert_eq!(info.pid, me);
        assert!(info.ppid.is_some() && info.uid.is_some() && !info.cmdline.is_empty());
    }
}
