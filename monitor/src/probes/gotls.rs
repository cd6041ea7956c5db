//! Go's `crypto/tls`: Go programs do not use OpenSSL, so their handshakes are probed in Go's own
//! code. A targeted process whose executable is a Go binary (its `.go.buildinfo` and
//! `.gopclntab` say so, stripped `-s -w` builds included) gets two entry uprobes, attached to
//! that process only (`UProbeScope::OneProcess`): other processes running the same binary, and
//! every untargeted process, never trap.
//!
//! - `crypto/tls.(*Conn).verifyServerCertificate`: once per full client handshake, whatever
//!   `InsecureSkipVerify` says; reports the connection, its socket and the server's chain.
//! - `crypto/x509.(*Certificate).Verify`: called by the former only when `InsecureSkipVerify`
//!   is false; the kernel program tells that call apart from application code's by its return
//!   address (inside `verifyServerCertificate` or not).
//!
//! Function addresses come from the function table (`gopclntab.rs`), not from symbols or DWARF.
//! Supported: Go 1.18 and later (build information and function-table formats) on amd64 (the
//! register ABI the probes read). The socket under a `tls.Conn` is read through field offsets
//! taken from Go's sources per release ([`SOCKET_LAYOUTS`]); for a release outside the table
//! the session is still judged, but not tied to its connection.
use std::{collections::HashMap, fs, num::NonZeroU32, os::unix::fs::MetadataExt as _};

use anyhow::Context as _;
use aya::{
    maps::{HashMap as BpfHashMap, MapData},
    programs::{
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLink, UProbeScope},
        UProbe,
    },
    Ebpf,
};
use monitor_common::{go_tls, GoTlsConfig, COOKIE_HOOK_BITS};
use object::{Object as _, ObjectSection as _, ObjectSegment as _};

use super::{
    gopclntab::{Function, Pclntab},
    uprobes::{Library, LibraryKind, LibraryTable},
};
use crate::{
    output::{Status, StatusKind},
    process::gobuild,
};

/// The client handshake's certificate check (runs on every full handshake).
pub const VERIFY_SERVER_CERTIFICATE: &str = "crypto/tls.(*Conn).verifyServerCertificate";
/// The chain verification it calls unless `InsecureSkipVerify` is set.
pub const X509_VERIFY: &str = "crypto/x509.(*Certificate).Verify";

/// The kernel programs, by hook index (the low bits of the attach cookie).
pub const PROGRAMS: [&str; 2] = ["go_verify_server_cert", "go_x509_verify"];

/// Oldest Go release probed: the first whose build information (`.go.buildinfo`) and function
/// table are in the formats read here. (The register ABI the probes read is Go 1.17's.)
pub const MIN_GO: (u32, u32) = (1, 18);

/// Where the socket under a `*tls.Conn` is, for a range of Go releases (amd64), from Go's
/// sources:
///
/// - `crypto/tls.Conn` starts with `conn net.Conn`: an interface, whose data word (offset 8)
///   points to the `*net.TCPConn` a dialer made;
/// - `net.TCPConn` is `struct{ conn }` and `net.conn` is `struct{ fd *netFD }` (offset 0);
/// - `net.netFD` is `struct{ pfd poll.FD; family int; sotype int; ... }`;
/// - `internal/poll.FD` is, in Go 1.18 to 1.20, `{ fdmu fdMutex; Sysfd int; pd pollDesc;
///   iovecs *[]syscall.Iovec; csema uint32; isBlocking uint32; IsStream, ZeroReadIsEOF,
///   isFile bool }`, and from Go 1.21 `{ fdmu fdMutex; Sysfd int; SysFile; pd pollDesc; csema
///   uint32; ... }` with `SysFile` holding just `iovecs`: either way `fdMutex` (`state uint64;
///   rsema, wsema uint32`) is 16 bytes, `Sysfd` is at 16 and the struct is 56 bytes long, so
///   `family` is at 56 and `sotype` at 64.
///
/// The kernel program checks what it reads (`family` an internet family, `sotype` a stream, the
/// descriptor a socket of the process), so a connection that is not a `*net.TCPConn` is not
/// mistaken for one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketLayout {
    /// First and last Go release (major, minor) the row was read from.
    pub first: (u32, u32),
    pub last: (u32, u32),
    pub conn_data: u32,
    pub netconn_fd: u32,
    pub fd_sysfd: u32,
    pub fd_family: u32,
    pub fd_sotype: u32,
}

pub const SOCKET_LAYOUTS: &[SocketLayout] = &[
    SocketLayout {
        first: (1, 18),
        last: (1, 20),
        conn_data: 8,
        netconn_fd: 0,
        fd_sysfd: 16,
        fd_family: 56,
        fd_sotype: 64,
    },
    SocketLayout {
        first: (1, 21),
        last: (1, 24),
        conn_data: 8,
        netconn_fd: 0,
        fd_sysfd: 16,
        fd_family: 56,
        fd_sotype: 64,
    },
];

/// The table row for a Go release, if any.
pub fn socket_layout(release: (u32, u32)) -> Option<&'static SocketLayout> {
    SOCKET_LAYOUTS
        .iter()
        .find(|l| l.first <= release && release <= l.last)
}

/// The release (major, minor) of a Go version string: `go1.19.8`, `go1.21rc2`, `go1.22.1
/// X:boringcrypto`, `devel go1.23-abcdef`.
pub fn go_release(version: &str) -> Option<(u32, u32)> {
    let at = version.find("go1.")?;
    let rest = &version[at + 2..];
    let mut parts = rest.splitn(2, '.');
    let major = parts.next()?.parse().ok()?;
    let minor: String = parts
        .next()?
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    Some((major, minor.parse().ok()?))
}

/// What a Go binary offers the probes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoBinary {
    /// From `.go.buildinfo` (`go1.19.8`).
    pub go_version: String,
    /// File offsets of the two hooked functions (what a uprobe is attached at).
    pub verify_server_certificate: u64,
    pub x509_verify: u64,
    /// Their code, as virtual addresses.
    pub verify_server_certificate_code: Function,
    pub x509_verify_code: Function,
    /// The socket offsets for its Go release, if the table has them.
    pub socket: Option<SocketLayout>,
}

impl GoBinary {
    /// What both kernel programs read about this binary (map `GO_TLS`).
    pub fn config(&self) -> GoTlsConfig {
        let caller = self.verify_server_certificate_code;
        let mut config = GoTlsConfig {
            caller_back: self.x509_verify_code.entry.wrapping_sub(caller.entry),
            caller_len: caller.end - caller.entry,
            ..GoTlsConfig::default()
        };
        if let Some(l) = self.socket {
            config.flags |= go_tls::SOCKET_OFFSETS;
            config.conn_data = l.conn_data;
            config.netconn_fd = l.netconn_fd;
            config.fd_sysfd = l.fd_sysfd;
            config.fd_family = l.fd_family;
            config.fd_sotype = l.fd_sotype;
        }
        config
    }
}

/// The file offset of a virtual address inside an executable segment.
fn exec_file_offset(file: &object::File, vaddr: u64) -> Option<u64> {
    file.segments()
        .filter(|seg| {
            matches!(seg.flags(), object::SegmentFlags::Elf { p_flags } if p_flags & object::elf::PF_X != 0)
        })
        .find_map(|seg| {
            let (start, len) = seg.file_range();
            let at = vaddr.checked_sub(seg.address())?;
            (at < len).then_some(start + at)
        })
}

/// Whether an ELF file is a Go binary and, if so, what the probes need from it.
/// `Ok(None)`: not a Go binary (nothing to say). `Err`: a Go binary that cannot be probed, and
/// why (said once per binary).
pub fn inspect(data: &[u8]) -> Result<Option<GoBinary>, String> {
    let Ok(file) = object::File::parse(data) else {
        return Ok(None);
    };
    let pclntab = [".gopclntab", ".data.rel.ro.gopclntab"]
        .iter()
        .find_map(|name| file.section_by_name(name));
    let buildinfo = file.section_by_name(".go.buildinfo");
    if pclntab.is_none() && buildinfo.is_none() {
        return Ok(None);
    }
    if file.architecture() != object::Architecture::X86_64 {
        return Err(format!(
            "Go binary for {:?}: only amd64 is probed (the probes read Go's amd64 register ABI)",
            file.architecture()
        ));
    }
    let Some(info) = gobuild::of_elf(data) else {
        return Err(
            "Go binary without readable build information: built with Go 1.17 or earlier \
             (Go 1.18 or later is probed)"
                .into(),
        );
    };
    let version = info.go_version;
    let Some(release) = go_release(&version) else {
        return Err(format!("Go version {version:?} not understood"));
    };
    if release < MIN_GO {
        return Err(format!(
            "built with {version}: Go {}.{} or later is probed",
            MIN_GO.0, MIN_GO.1
        ));
    }
    let Some(section) = pclntab else {
        return Err(format!(
            "{version} binary without a .gopclntab section (its section headers were stripped?): \
             the handshake functions cannot be found"
        ));
    };
    let bytes = section
        .data()
        .map_err(|e| format!("{version}: .gopclntab unreadable ({e})"))?;
    let table = Pclntab::parse(bytes).map_err(|e| format!("{version}: {e}"))?;
    // `runtime.text` as the header says, else where the linker puts it: the start of `.text`.
    let text = match table.text_start {
        0 => file
            .section_by_name(".text")
            .map(|s| s.address())
            .ok_or_else(|| format!("{version}: no .text section"))?,
        start => start,
    };
    let function = |name: &str| -> Result<(Function, u64), String> {
        let f = table.find(name).ok_or_else(|| {
            format!(
                "{version} binary without a crypto/tls client handshake ({name} is not in its \
                 function table): nothing to probe"
            )
        })?;
        let code = Function {
            entry: text + f.entry,
            end: text + f.end,
        };
        let offset = exec_file_offset(&file, code.entry).ok_or_else(|| {
            format!(
                "{version}: {name} at {:#x} is outside the executable segments",
                code.entry
            )
        })?;
        Ok((code, offset))
    };
    let (verify_server_certificate_code, verify_server_certificate) =
        function(VERIFY_SERVER_CERTIFICATE)?;
    let (x509_verify_code, x509_verify) = function(X509_VERIFY)?;
    Ok(Some(GoBinary {
        socket: socket_layout(release).copied(),
        go_version: version,
        verify_server_certificate,
        x509_verify,
        verify_server_certificate_code,
        x509_verify_code,
    }))
}

/// A binary looked at before, by (device, inode).
enum Binary {
    /// Not Go, or not probeable (said once).
    Refused,
    Probed {
        /// Its index in the library table (the attach cookies' upper bits).
        index: usize,
        info: GoBinary,
        /// Watched processes running it: its `GO_TLS` entries go with the last one.
        users: usize,
    },
}

/// The probes of one watched Go process.
struct Probed {
    inode: (u64, u64),
    links: Vec<UProbeLink>,
}

/// Go `crypto/tls` probes, per watched process.
pub struct GoTls {
    config: Option<BpfHashMap<MapData, u64, GoTlsConfig>>,
    binaries: HashMap<(u64, u64), Binary>,
    processes: HashMap<(u32, u64), Probed>,
    /// Why the programs could not be loaded (said with the first Go binary seen).
    unavailable: Option<String>,
}

impl GoTls {
    /// Load the programs. Never fails: without them (no uprobe support, or a kernel that
    /// refuses them) Go binaries are reported as not probed, and everything else goes on.
    pub fn load(ebpf: &mut Ebpf, enabled: bool) -> Self {
        let mut go = Self {
            config: None,
            binaries: HashMap::new(),
            processes: HashMap::new(),
            unavailable: None,
        };
        if !enabled {
            return go;
        }
        let loaded = (|| -> anyhow::Result<BpfHashMap<MapData, u64, GoTlsConfig>> {
            for name in PROGRAMS {
                let program: &mut UProbe = ebpf
                    .program_mut(name)
                    .with_context(|| format!("program {name} missing from the eBPF object"))?
                    .try_into()?;
                program
                    .load()
                    .with_context(|| format!("loading uprobe program {name}"))?;
            }
            let map = ebpf.take_map("GO_TLS").context("GO_TLS map missing")?;
            Ok(map.try_into()?)
        })();
        match loaded {
            Ok(map) => go.config = Some(map),
            Err(err) => {
                tracing::warn!("Go crypto/tls probes unavailable: {err:#}");
                go.unavailable = Some(format!("{err:#}"));
            }
        }
        go
    }

    /// Uprobes attached now.
    pub fn attached(&self) -> usize {
        self.processes.values().map(|p| p.links.len()).sum()
    }

    /// Every link (for a shutdown that drops them elsewhere).
    pub fn take_links(&mut self) -> Vec<UProbeLink> {
        self.processes
            .values_mut()
            .flat_map(|p| std::mem::take(&mut p.links))
            .collect()
    }

    /// Process `user` is gone: its probes (to drop off the caller's thread), and its binary's
    /// kernel entries when it was the last watched process running it.
    pub fn release(&mut self, user: (u32, u64)) -> Vec<UProbeLink> {
        let Some(probed) = self.processes.remove(&user) else {
            return Vec::new();
        };
        if let Some(Binary::Probed { index, users, .. }) = self.binaries.get_mut(&probed.inode) {
            *users = users.saturating_sub(1);
            if *users == 0 {
                // The binary keeps its library index (a new process running it reuses it).
                if let Some(map) = self.config.as_mut() {
                    for hook in 0..PROGRAMS.len() {
                        let _ = map.remove(&cookie(*index, hook));
                    }
                }
            }
        }
        probed.links
    }

    /// Probe process `pid` (started at `start`) if its executable is a Go binary. Status lines
    /// for what was attached or why not (once per binary for a refusal).
    pub fn discover(
        &mut self,
        ebpf: &mut Ebpf,
        pid: u32,
        start: u64,
        libraries: &LibraryTable,
    ) -> Vec<Status> {
        let mut statuses = Vec::new();
        let exe = fs::read_link(format!("/proc/{pid}/exe"))
            .map(|p| {
                p.to_string_lossy()
                    .trim_end_matches(" (deleted)")
                    .to_string()
            })
            .unwrap_or_default();
        let component = Some(format!("uprobe:{exe}"));
        // Open once and attach through /proc/self/fd: the file stays the one inspected.
        let Ok(file) = fs::File::open(format!("/proc/{pid}/exe")) else {
            return statuses;
        };
        let Ok(meta) = file.metadata() else {
            return statuses;
        };
        let inode = (meta.dev(), meta.ino());
        match self.processes.get(&(pid, start)) {
            Some(probed) if probed.inode == inode => return statuses,
            // It exec'd another program since: the old image's probes go.
            Some(_) => detach_in_background(self.release((pid, start))),
            None => {}
        }
        if self.binaries.len() >= MAX_BINARIES {
            // Refusals and binaries no watched process runs are forgotten (looked at again if
            // seen again).
            self.binaries
                .retain(|_, b| matches!(b, Binary::Probed { users, .. } if *users > 0));
        }
        if !self.binaries.contains_key(&inode) {
            // SAFETY: read-only private mapping of a regular file we just opened; dropped
            // before this function returns.
            let inspected = match unsafe { memmap2::Mmap::map(&file) } {
                Ok(data) => inspect(&data),
                Err(_) => Ok(None),
            };
            let binary = match inspected {
                Ok(Some(info)) => {
                    if let Some(why) = &self.unavailable {
                        statuses.push(Status::new(
                            StatusKind::Skipped,
                            component,
                            format!(
                                "pid {pid}: Go crypto/tls ({}) not probed: the programs did not load ({why})",
                                info.go_version
                            ),
                        ));
                        self.binaries.insert(inode, Binary::Refused);
                        return statuses;
                    }
                    if self.config.is_none() {
                        // Uprobes are off altogether (said once at start).
                        self.binaries.insert(inode, Binary::Refused);
                        return statuses;
                    }
                    // In the shared table before any probe can fire with its index.
                    let index = {
                        let mut table = libraries.write().expect("library table lock");
                        table.push(Library {
                            path: exe.clone(),
                            kind: LibraryKind::Go,
                        });
                        table.len() - 1
                    };
                    Binary::Probed {
                        index,
                        info,
                        users: 0,
                    }
                }
                Ok(None) => Binary::Refused,
                Err(why) => {
                    statuses.push(Status::new(
                        StatusKind::Skipped,
                        component.clone(),
                        format!("pid {pid}: Go crypto/tls not probed: {why}"),
                    ));
                    Binary::Refused
                }
            };
            self.binaries.insert(inode, binary);
        }
        let Some(Binary::Probed { index, info, users }) = self.binaries.get_mut(&inode) else {
            return statuses;
        };
        let Some(pid_nz) = NonZeroU32::new(pid) else {
            return statuses;
        };
        if *users == 0 {
            // What the kernel programs read about the binary, before they can fire for it.
            let config = info.config();
            let map = self
                .config
                .as_mut()
                .expect("a probed binary implies the map");
            for hook in 0..PROGRAMS.len() {
                if let Err(err) = map.insert(cookie(*index, hook), config, 0) {
                    statuses.push(Status::new(
                        StatusKind::Skipped,
                        component,
                        format!("pid {pid}: Go crypto/tls not probed: GO_TLS map ({err})"),
                    ));
                    return statuses;
                }
            }
        }
        let fd_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
        let mut links = Vec::new();
        let mut errors = Vec::new();
        let offsets = [info.verify_server_certificate, info.x509_verify];
        for (hook, (program, offset)) in PROGRAMS.iter().zip(offsets).enumerate() {
            let result = (|| -> anyhow::Result<UProbeLink> {
                let program: &mut UProbe = ebpf
                    .program_mut(program)
                    .with_context(|| format!("program {program} missing"))?
                    .try_into()?;
                let point = UProbeAttachPoint {
                    location: UProbeAttachLocation::AbsoluteOffset(offset),
                    cookie: Some(cookie(*index, hook)),
                };
                let id = program.attach(point, &fd_path, UProbeScope::OneProcess(pid_nz))?;
                Ok(program.take_link(id)?)
            })();
            match result {
                Ok(link) => links.push(link),
                Err(err) => errors.push(format!("{program}: {err:#}")),
            }
        }
        if links.len() < PROGRAMS.len() {
            // One hook without the other would misjudge every session: none.
            statuses.push(Status::new(
                StatusKind::Skipped,
                component,
                format!(
                    "pid {pid}: Go crypto/tls ({}) not probed: {}",
                    info.go_version,
                    errors.join("; ")
                ),
            ));
            detach_in_background(links);
            return statuses;
        }
        *users += 1;
        let socket = match info.socket {
            Some(_) => String::new(),
            None => format!(
                "; the socket offsets of {} are not in this monitor's table: sessions are judged \
                 but not tied to their connections",
                info.go_version
            ),
        };
        statuses.push(Status::new(
            StatusKind::Attached,
            component,
            format!(
                "Go crypto/tls ({}) for pid {pid}: 2 hooks ({VERIFY_SERVER_CERTIFICATE}, \
                 {X509_VERIFY}); handshakes before now are not seen{socket}",
                info.go_version
            ),
        ));
        self.processes.insert((pid, start), Probed { inode, links });
        statuses
    }
}

/// Binaries remembered at most (refusals are forgotten beyond).
const MAX_BINARIES: usize = 4096;

/// Each detach waits for a kernel grace period: never on the caller's thread.
fn detach_in_background(links: Vec<UProbeLink>) {
    if !links.is_empty() {
        let _ = std::thread::Builder::new()
            .name("em-detach".into())
            .spawn(move || drop(links));
    }
}

fn cookie(index: usize, hook: usize) -> u64 {
    ((index as u64) << COOKIE_HOOK_BITS) | hook as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{path::Path, process::Command};

    #[test]
    fn go_releases() {
        assert_eq!(go_release("go1.19.8"), Some((1, 19)));
        assert_eq!(go_release("go1.21rc2"), Some((1, 21)));
        assert_eq!(go_release("go1.22.1 X:boringcrypto"), Some((1, 22)));
        assert_eq!(go_release("devel go1.23-abcdef Tue"), Some((1, 23)));
        assert_eq!(go_release("go1.20"), Some((1, 20)));
        assert_eq!(go_release("gccgo"), None);
        assert_eq!(go_release(""), None);
    }

    #[test]
    fn socket_layouts_by_release() {
        assert_eq!(socket_layout((1, 19)).unwrap().fd_sysfd, 16);
        assert_eq!(socket_layout((1, 21)).unwrap().fd_family, 56);
        assert!(socket_layout((1, 17)).is_none());
        assert!(socket_layout((1, 99)).is_none());
        // Rows do not overlap and are in order.
        for pair in SOCKET_LAYOUTS.windows(2) {
            assert!(pair[0].last < pair[1].first);
        }
    }

    #[test]
    fn non_go_files_are_not_go() {
        assert_eq!(inspect(b"not an ELF file"), Ok(None));
        assert_eq!(inspect(&[]), Ok(None));
        let ls = fs::read("/bin/ls").unwrap();
        assert_eq!(inspect(&ls), Ok(None));
    }

    /// Build a small Go program (offline, standard library only) into `dir`.
    pub fn go_build(dir: &Path, source: &str, strip: bool) -> std::path::PathBuf {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("main.go"), source).unwrap();
        fs::write(dir.join("go.mod"), "module example.com/t\n\ngo 1.18\n").unwrap();
        let out = dir.join("prog");
        let cache = std::env::temp_dir().join("em-go-cache");
        let mut cmd = Command::new("go");
        cmd.arg("build").arg("-o").arg(&out);
        if strip {
            cmd.args(["-ldflags", "-s -w"]);
        }
        let output = cmd
            .arg(".")
            .current_dir(dir)
            .env("GOPROXY", "off")
            .env("GOFLAGS", "-mod=mod")
            .env("GOTOOLCHAIN", "local")
            .env("CGO_ENABLED", "0")
            .env("GOCACHE", &cache)
            .env("GOPATH", cache.join("gopath"))
            .output()
            .expect("running `go build` (the golang-go package; `cargo xtask setup` installs it)");
        assert!(
            output.status.success(),
            "go build: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        out
    }

    const TLS_CLIENT: &str = r#"package main

import (
	"crypto/tls"
	"fmt"
	"os"
)

func main() {
	c, err := tls.Dial("tcp", os.Args[1], &tls.Config{InsecureSkipVerify: true})
	fmt.Println(c, err)
}
"#;

    const NO_TLS: &str = r#"package main

import "fmt"

func main() { fmt.Println("hello") }
"#;

    fn scratch(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("em-gotls-{name}-{}", std::process::id()))
    }

    /// The functions are found from the function table alone: the same in a stripped build as
    /// in the symbol table of the unstripped one.
    #[test]
    fn finds_the_handshake_in_stripped_and_unstripped_builds() {
        let dir = scratch("tls");
        let full = go_build(&dir.join("full"), TLS_CLIENT, false);
        let stripped = go_build(&dir.join("stripped"), TLS_CLIENT, true);
        let full_data = fs::read(&full).unwrap();
        let a = inspect(&full_data).unwrap().expect("a Go binary");
        let b = inspect(&fs::read(&stripped).unwrap())
            .unwrap()
            .expect("a stripped Go binary");
        assert!(a.go_version.starts_with("go1."), "{a:?}");
        assert_eq!(a.verify_server_certificate, b.verify_server_certificate);
        assert_eq!(a.x509_verify_code, b.x509_verify_code);
        assert!(a.socket.is_some(), "this machine's Go is in the table");
        // The symbol table of the unstripped build agrees.
        use object::ObjectSymbol as _;
        let file = object::File::parse(&*full_data).unwrap();
        let symbol = file
            .symbols()
            .find(|s| s.name() == Ok(VERIFY_SERVER_CERTIFICATE))
            .unwrap();
        assert_eq!(symbol.address(), a.verify_server_certificate_code.entry);
        // The table's end is the next function's entry: the symbol's end plus alignment padding.
        let end = symbol.address() + symbol.size();
        let code_end = a.verify_server_certificate_code.end;
        assert!(
            end <= code_end && code_end - end < 32,
            "{end:#x} {code_end:#x}"
        );
        // A Go function starts by comparing the stack pointer with the goroutine's stack guard
        // (`CMPQ SP|R12, 16(R14)`: `49/4d 3b 66 10`), perhaps after an `LEAQ` of a large frame.
        let at = a.verify_server_certificate as usize;
        let head = &full_data[at..at + 16];
        assert!(
            head.windows(4)
                .any(|w| w[1..] == [0x3b, 0x66, 0x10] && (w[0] == 0x49 || w[0] == 0x4d)),
            "{head:02x?}"
        );
        let config = a.config();
        assert_eq!(
            config.flags & go_tls::SOCKET_OFFSETS,
            go_tls::SOCKET_OFFSETS
        );
        assert_eq!(
            a.x509_verify_code.entry.wrapping_sub(config.caller_back),
            a.verify_server_certificate_code.entry
        );
        let _ = fs::remove_dir_all(dir);
    }

    /// A stripped Go program that never makes a TLS client handshake: a clear reason, no probe.
    #[test]
    fn a_go_binary_without_crypto_tls_is_refused_with_a_reason() {
        let dir = scratch("plain");
        let plain = go_build(&dir, NO_TLS, true);
        let err = inspect(&fs::read(&plain).unwrap()).unwrap_err();
        assert!(
            err.contains("without a crypto/tls client handshake")
                && err.contains(VERIFY_SERVER_CERTIFICATE),
            "{err}"
        );
        let _ = fs::remove_dir_all(dir);
    }

    /// A Go binary whose function table is cut or overwritten: an error, never a panic.
    #[test]
    fn a_damaged_function_table_is_an_error() {
        let dir = scratch("damaged");
        let bin = go_build(&dir, TLS_CLIENT, true);
        let data = fs::read(&bin).unwrap();
        let file = object::File::parse(&*data).unwrap();
        let (start, len) = file
            .section_by_name(".gopclntab")
            .unwrap()
            .file_range()
            .unwrap();
        let (start, len) = (start as usize, len as usize);
        // Its header's pclnOffset pointed past the end, then the magic overwritten.
        let mut cut = data.clone();
        cut[start + 8 + 7 * 8..start + 8 + 8 * 8].copy_from_slice(&(len as u64 * 2).to_le_bytes());
        let err = inspect(&cut).unwrap_err();
        assert!(err.contains("pclnOffset"), "{err}");
        let mut garbage = data.clone();
        garbage[start..start + 4].copy_from_slice(&[0x11, 0x22, 0x33, 0x44]);
        let err = inspect(&garbage).unwrap_err();
        assert!(err.contains("not a Go function table"), "{err}");
        // The section's bytes alone, truncated anywhere.
        let section = &data[start..start + len];
        for cut in [0, 3, 8, 40, 72, 1000, len / 2] {
            if let Ok(t) = Pclntab::parse(&section[..cut]) {
                let _ = t.find(VERIFY_SERVER_CERTIFICATE);
            }
        }
        let _ = fs::remove_dir_all(dir);
    }
}
