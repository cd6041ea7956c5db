//! Finding the TLS libraries targeted processes use and attaching the OpenSSL uprobes to them.
//!
//! Candidates come from three places: the libraries a process has mapped (`/proc/PID/maps`),
//! the executable itself when it exports the OpenSSL API (Node links OpenSSL statically and
//! exports it), and the standard library directories of the process's root filesystem, so a
//! library a script loads later (Python imports `_ssl` lazily) is probed before it is mapped.
//! Files are opened through `/proc/PID/root` (container files work) and attached once per
//! (device, inode); the attach cookie carries the library's index so events say where they
//! came from. Symbols are resolved with the `object` crate from the dynamic symbol table.
use std::{
    collections::{HashMap, HashSet},
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

use anyhow::Context as _;
use aya::{
    maps::{HashMap as BpfHashMap, MapData},
    programs::{
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLink, UProbeScope},
        UProbe,
    },
    Ebpf,
};
use monitor_common::{TextRange, COOKIE_HOOK_BITS};
use object::{Object as _, ObjectSection as _, ObjectSegment as _, ObjectSymbol as _};

use crate::output::{Status, StatusKind};

/// What a library provides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LibraryKind {
    /// Shared `libssl`.
    Libssl,
    /// Shared `libcrypto` (certificate parsing and verification).
    Libcrypto,
    /// An executable or library exporting both (Node's `node`, `libnode.so`).
    Embedded,
    /// The C library (`setenv`).
    Libc,
    /// A Go executable: its own `crypto/tls` (see `gotls.rs`), probed per process.
    Go,
}

impl LibraryKind {
    /// What the probes in such a file watch, for status lines.
    fn describe(self) -> &'static str {
        match self {
            LibraryKind::Libssl => "OpenSSL handshakes (shared libssl)",
            LibraryKind::Libcrypto => "certificate checks (shared libcrypto)",
            LibraryKind::Embedded => "OpenSSL handshakes (embedded OpenSSL)",
            LibraryKind::Libc => "TLS bypasses set at run time (setenv)",
            LibraryKind::Go => "Go crypto/tls handshakes",
        }
    }

    fn provides(self, provider: Provider) -> bool {
        matches!(
            (self, provider),
            (LibraryKind::Libssl, Provider::Ssl)
                | (LibraryKind::Libcrypto, Provider::Crypto)
                | (
                    LibraryKind::Embedded,
                    Provider::Ssl | Provider::Crypto | Provider::EmbeddedInternals
                )
                | (LibraryKind::Libc, Provider::Libc)
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Provider {
    Ssl,
    Crypto,
    /// OpenSSL's internal functions, exported by binaries that embed it (Node exports all of
    /// its symbols); a shared libssl hides them.
    EmbeddedInternals,
    Libc,
}

/// One uprobe program and the function it hooks.
struct Hook {
    program: &'static str,
    symbol: &'static str,
    provider: Provider,
}

const fn hook(program: &'static str, symbol: &'static str, provider: Provider) -> Hook {
    Hook {
        program,
        symbol,
        provider,
    }
}

/// Every host-wide hook, by program name (entry and return programs are separate programs).
/// Each runs once per session or handshake, never per read or write, so untargeted users of
/// the same library (a web server on the host) pay nothing per request.
///
/// Kept to what the verdicts need: each attached uprobe costs the kernel an RCU grace period
/// (~0.1 s, serialized system-wide) to detach. `SSL_connect` and `SSL_accept` are covered by
/// the `SSL_do_handshake` and `SSL_set_*_state` they call; `SSL_set1_host` covers host names and
/// IP literals (OpenSSL turns the latter into `set1_ip_asc` itself).
const HOOKS: &[Hook] = &[
    hook("ssl_new", "SSL_new", Provider::Ssl),
    hook("ssl_new_ret", "SSL_new", Provider::Ssl),
    hook("ssl_free", "SSL_free", Provider::Ssl),
    hook("ssl_ctx_set_verify", "SSL_CTX_set_verify", Provider::Ssl),
    hook("ssl_ctx_free", "SSL_CTX_free", Provider::Ssl),
    hook("ssl_set_verify", "SSL_set_verify", Provider::Ssl),
    hook("ssl_ctrl", "SSL_ctrl", Provider::Ssl),
    hook("ssl_set_fd", "SSL_set_fd", Provider::Ssl),
    hook("ssl_set1_host", "SSL_set1_host", Provider::Ssl),
    hook("ssl_get0_param", "SSL_get0_param", Provider::Ssl),
    hook("ssl_get0_param_ret", "SSL_get0_param", Provider::Ssl),
    hook(
        "ssl_set_connect_state",
        "SSL_set_connect_state",
        Provider::Ssl,
    ),
    hook(
        "ssl_set_accept_state",
        "SSL_set_accept_state",
        Provider::Ssl,
    ),
    hook("ssl_handshake", "SSL_do_handshake", Provider::Ssl),
    hook("ssl_handshake_ret", "SSL_do_handshake", Provider::Ssl),
    hook(
        "ssl_get_verify_result",
        "SSL_get_verify_result",
        Provider::Ssl,
    ),
    hook(
        "ssl_get_verify_result_ret",
        "SSL_get_verify_result",
        Provider::Ssl,
    ),
    hook(
        "ssl_verify_chain",
        "ssl_verify_cert_chain",
        Provider::EmbeddedInternals,
    ),
    hook(
        "param_set1_host",
        "X509_VERIFY_PARAM_set1_host",
        Provider::Crypto,
    ),
    hook(
        "param_set1_ip",
        "X509_VERIFY_PARAM_set1_ip",
        Provider::Crypto,
    ),
    hook("x509_verify_cert_ret", "X509_verify_cert", Provider::Crypto),
    hook(
        "x509_store_ctx_get_error_ret",
        "X509_STORE_CTX_get_error",
        Provider::Crypto,
    ),
    hook("libc_setenv", "setenv", Provider::Libc),
];

/// Hooks on a shared `libssl`'s own PLT stub for a `libcrypto` function: they fire only when
/// libssl calls it. `d2i_X509` decodes the server's certificates during a handshake (once per
/// certificate), but also every certificate of each CA bundle any process loads: a probe on
/// the function itself would trap in every untargeted process that loads its trust store.
const PLT_HOOKS: &[Hook] = &[hook("d2i_x509", "d2i_X509", Provider::Ssl)];

/// The programs to load once, before any attach.
pub fn programs() -> Vec<&'static str> {
    let mut names: Vec<&str> = HOOKS.iter().chain(PLT_HOOKS).map(|h| h.program).collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Hooks that start handshakes: their library's code range tells server-certificate decoding
/// apart from trust-store loading (see `monitor-ebpf/src/probes/openssl.rs`).
const HANDSHAKE_ENTRY_PROGRAMS: [&str; 1] = ["ssl_handshake"];

/// Symbols that mark an ELF file as carrying the OpenSSL API itself.
const EMBEDDED_MARKERS: [&str; 2] = ["SSL_do_handshake", "SSL_CTX_set_verify"];

/// A library we attached to (index = attach cookie).
#[derive(Clone, Debug)]
pub struct Library {
    /// The path as the process sees it (inside its container).
    pub path: String,
    pub kind: LibraryKind,
}

/// Every library ever attached, by attach index, shared with the event loop: an index is
/// entered here *before* its probes are attached, so no event can name an unknown library.
/// Indexes are never reused (a detached library keeps its entry).
pub type LibraryTable = Arc<RwLock<Vec<Library>>>;

/// What the probes of one attached file hold.
struct Attached {
    inode: (u64, u64),
    links: Vec<UProbeLink>,
    cookies: Vec<u64>,
    /// Attached at start-up for the whole host: never detached.
    host: bool,
    /// Processes (pid, start time) that were seen to map it.
    users: HashSet<(u32, u64)>,
}

/// Classify a file by name; `None` for files that can only be told by their symbols.
pub fn kind_by_name(path: &str) -> Option<LibraryKind> {
    let name = path.rsplit('/').next().unwrap_or(path);
    if name.starts_with("libssl.so") {
        Some(LibraryKind::Libssl)
    } else if name.starts_with("libcrypto.so") {
        Some(LibraryKind::Libcrypto)
    } else if name.starts_with("libc.so")
        || name.starts_with("ld-musl-")
        || name.starts_with("libc.musl")
    {
        Some(LibraryKind::Libc)
    } else {
        None
    }
}

/// `libssl.so.3`, `libcrypto.so.1.1`, `libc.so.6`: the files a dynamic loader really maps (the
/// unversioned `libc.so` is a linker script, `libssl.so` a symlink for the compiler).
fn is_versioned_library(name: &str) -> bool {
    ["libssl.so.", "libcrypto.so.", "libc.so."]
        .iter()
        .any(|prefix| {
            name.strip_prefix(prefix)
                .is_some_and(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.'))
        })
}

/// An executable file-backed mapping of `/proc/PID/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// `start-end`, the name of the mapping in `/proc/PID/map_files`.
    pub range: String,
    pub path: String,
    /// The file was deleted (or replaced) after it was mapped.
    pub deleted: bool,
}

/// Executable file-backed mappings of `/proc/PID/maps`, one per file.
///
/// A line is `start-end perms offset dev inode`, padding, then the path: everything after the
/// inode, spaces included (`/opt/my app/libssl.so.3`), with " (deleted)" appended by the kernel
/// when the file was unlinked after it was mapped. Only that suffix says so: a directory named
/// `(deleted)` elsewhere in the path does not.
pub fn exec_mappings(maps: &str) -> Vec<Mapping> {
    /// The next space-separated field and what follows it.
    fn field(s: &str) -> Option<(&str, &str)> {
        let s = s.trim_start_matches(' ');
        let end = s.find(' ').unwrap_or(s.len());
        (end > 0).then(|| (&s[..end], &s[end..]))
    }
    let mut found: Vec<Mapping> = maps
        .lines()
        .filter_map(|line| {
            let (range, rest) = field(line)?;
            let (perms, rest) = field(rest)?;
            let (_offset, rest) = field(rest)?;
            let (_dev, rest) = field(rest)?;
            let (_inode, rest) = field(rest)?;
            // Paths of files start with '/'; pseudo-mappings (`[vdso]`, `[anon:...]`) and
            // anonymous ones (nothing after the inode) are not files.
            let path = rest.trim_start_matches(' ');
            if !perms.contains('x') || !path.starts_with('/') {
                return None;
            }
            let (path, deleted) = match path.strip_suffix(" (deleted)") {
                Some(path) => (path, true),
                None => (path, false),
            };
            Some(Mapping {
                range: range.to_string(),
                path: path.to_string(),
                deleted,
            })
        })
        .collect();
    // One per file: a library replaced on disk while mapped (the old one deleted, the new one
    // at the same path) is two files.
    found.sort_by(|a, b| (&a.path, a.deleted).cmp(&(&b.path, b.deleted)));
    found.dedup_by(|a, b| a.path == b.path && a.deleted == b.deleted);
    found
}

/// A file that may hold OpenSSL: the path the process knows it by, and where we open it.
struct Candidate {
    path: String,
    open: PathBuf,
    kind: Option<LibraryKind>,
}

/// File ranges of the executable segments of an ELF file.
pub fn exec_segments(data: &[u8]) -> Vec<(u64, u64)> {
    let Ok(file) = object::File::parse(data) else {
        return Vec::new();
    };
    file.segments()
        .filter(|seg| matches!(seg.flags(), object::SegmentFlags::Elf { p_flags } if p_flags & object::elf::PF_X != 0))
        .map(|seg| {
            let (start, len) = seg.file_range();
            (start, start + len)
        })
        .collect()
}

/// Bytes before and after `offset` inside its executable segment.
pub fn text_range(segments: &[(u64, u64)], offset: u64) -> Option<TextRange> {
    segments
        .iter()
        .find(|(start, end)| (*start..*end).contains(&offset))
        .map(|(start, end)| TextRange {
            lo: offset - start,
            hi: end - offset,
        })
}

/// File offsets of the dynamic symbols we hook (versioned names count as their base name).
pub fn resolve_symbols(data: &[u8]) -> anyhow::Result<HashMap<String, u64>> {
    let file = object::File::parse(data).context("not an ELF file object can read")?;
    let wanted: HashSet<&str> = HOOKS.iter().map(|h| h.symbol).collect();
    let mut found = HashMap::new();
    for symbol in file.dynamic_symbols() {
        if !symbol.is_definition() {
            continue;
        }
        let Ok(name) = symbol.name() else { continue };
        let name = name.split('@').next().unwrap_or(name);
        if !wanted.contains(name) || found.contains_key(name) {
            continue;
        }
        let Some(index) = symbol.section_index() else {
            continue;
        };
        let Ok(section) = file.section_by_index(index) else {
            continue;
        };
        let Some((section_offset, _)) = section.file_range() else {
            continue;
        };
        let location = UProbeAttachLocation::from_virtual_address(
            symbol.address(),
            section.address(),
            section_offset,
        );
        if let Ok(UProbeAttachLocation::AbsoluteOffset(offset)) = location {
            found.insert(name.to_string(), offset);
        }
    }
    Ok(found)
}

/// File offsets of the PLT stubs through which the file calls `names` in another library: the
/// `jmp *slot(%rip)` (with its `bnd` prefix, if any) whose slot the dynamic linker fills with
/// the function's address. Found by following the jumps of `.plt`, `.plt.sec` and `.plt.got`
/// to the slots the dynamic relocations name, so any PLT layout (lazy, `-z now`, IBT) works.
/// Empty when the file has no section headers or calls none of them through a PLT.
pub fn resolve_plt_stubs(data: &[u8], names: &[&str]) -> HashMap<String, u64> {
    use object::{Object as _, ObjectSection as _, ObjectSymbol as _, ObjectSymbolTable as _};
    let mut found = HashMap::new();
    let Ok(file) = object::File::parse(data) else {
        return found;
    };
    let (Some(relocations), Some(symbols)) =
        (file.dynamic_relocations(), file.dynamic_symbol_table())
    else {
        return found;
    };
    let slots: HashMap<u64, &str> = relocations
        .filter_map(|(slot, relocation)| {
            let object::RelocationTarget::Symbol(index) = relocation.target() else {
                return None;
            };
            let name = symbols.symbol_by_index(index).ok()?.name().ok()?;
            let name = name.split('@').next().unwrap_or(name);
            let name = names.iter().find(|n| **n == name)?;
            Some((slot, *name))
        })
        .collect();
    if slots.is_empty() {
        return found;
    }
    for section in file.sections() {
        if !matches!(section.name(), Ok(".plt" | ".plt.sec" | ".plt.got")) {
            continue;
        }
        let (Ok(code), Some((file_offset, _))) = (section.data(), section.file_range()) else {
            continue;
        };
        for at in 0..code.len().saturating_sub(5) {
            if code[at] != 0xff || code[at + 1] != 0x25 {
                continue;
            }
            let disp = i32::from_le_bytes([code[at + 2], code[at + 3], code[at + 4], code[at + 5]]);
            let next = section.address() + at as u64 + 6;
            let Some(name) = slots.get(&next.wrapping_add_signed(disp as i64)) else {
                continue;
            };
            let start = if at > 0 && code[at - 1] == 0xf2 {
                at - 1
            } else {
                at
            };
            found
                .entry(name.to_string())
                .or_insert(file_offset + start as u64);
        }
    }
    found
}

/// Where a process keeps its shared libraries (probed before they are mapped).
fn library_dirs() -> Vec<String> {
    let triple = format!("{}-linux-gnu", std::env::consts::ARCH);
    vec![
        format!("/lib/{triple}"),
        format!("/usr/lib/{triple}"),
        "/lib64".into(),
        "/usr/lib64".into(),
        "/lib".into(),
        "/usr/lib".into(),
        "/usr/local/lib".into(),
        "/usr/local/lib64".into(),
    ]
}

/// TLS libraries and the C library in these directories of a root filesystem.
fn libraries_in(root: &Path, dirs: &[String]) -> Vec<Candidate> {
    let mut found = Vec::new();
    for dir in dirs {
        let Ok(entries) = fs::read_dir(root.join(dir.trim_start_matches('/'))) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_versioned_library(&name) {
                found.push(Candidate {
                    path: format!("{}/{name}", dir.trim_end_matches('/')),
                    open: entry.path(),
                    kind: kind_by_name(&name),
                });
            }
        }
    }
    found
}

/// The directories of `LD_LIBRARY_PATH` in a process's environment (`/proc/PID/environ`
/// bytes): where its dynamic loader will look first for a library it loads later. Only this
/// variable is kept.
pub fn library_path_dirs(environ: &[u8]) -> Vec<String> {
    environ
        .split(|&b| b == 0)
        .find_map(|e| e.strip_prefix(b"LD_LIBRARY_PATH="))
        .map(|v| {
            String::from_utf8_lossy(v)
                .split(':')
                .filter(|d| d.starts_with('/'))
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Client libraries that check the server's host name in their own code rather than through
/// OpenSSL's `SSL_set1_host`: libcurl, libpq (`sslmode=verify-full`), the MySQL/MariaDB clients.
const NAME_CHECKING_LIBRARIES: [&str; 4] = [
    "libcurl.so",
    "libpq.so",
    "libmysqlclient.so",
    "libmariadb.so",
];

/// Whether a process with these mappings (`/proc/PID/maps`) uses a client library that checks
/// host names in its own code.
pub fn checks_names_itself(maps: &str) -> bool {
    exec_mappings(maps)
        .iter()
        .any(|m| library_checks_names(&m.path))
}

/// Whether a library (path or file name) checks host names in its own code.
pub fn library_checks_names(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or_default();
    NAME_CHECKING_LIBRARIES
        .iter()
        .any(|lib| name.starts_with(lib))
}

/// What looking at a process's libraries found.
#[derive(Debug, Default)]
pub struct Discovery {
    pub statuses: Vec<Status>,
    /// Attach indexes of the TLS libraries the process maps (or may map).
    pub libraries: Vec<u32>,
}

pub struct TlsProbes {
    libraries: LibraryTable,
    attached: Vec<Attached>,
    by_inode: HashMap<(u64, u64), usize>,
    /// Files that could not be attached (not retried: the reason was reported once).
    refused: HashSet<(u64, u64)>,
    /// Roots already searched for libraries, by the root directory's (device, inode).
    roots_seen: HashSet<(u64, u64)>,
    hook_text: Option<BpfHashMap<MapData, u64, TextRange>>,
    enabled: bool,
    /// Go `crypto/tls`, attached per watched process.
    go: super::gotls::GoTls,
}

impl TlsProbes {
    /// Load the uprobe programs. With `enabled == false` (no uprobe support) everything else
    /// is a no-op, reported once by the caller.
    pub fn load(ebpf: &mut Ebpf, enabled: bool) -> anyhow::Result<Self> {
        if enabled {
            for name in programs() {
                let program: &mut UProbe = ebpf
                    .program_mut(name)
                    .with_context(|| format!("program {name} missing from the eBPF object"))?
                    .try_into()?;
                program
                    .load()
                    .with_context(|| format!("loading uprobe program {name}"))?;
            }
        }
        let hook_text = if enabled {
            let map = ebpf
                .take_map("HOOK_TEXT")
                .context("HOOK_TEXT map missing")?;
            Some(map.try_into()?)
        } else {
            None
        };
        Ok(Self {
            libraries: LibraryTable::default(),
            attached: Vec::new(),
            by_inode: HashMap::new(),
            refused: HashSet::new(),
            roots_seen: HashSet::new(),
            hook_text,
            enabled,
            go: super::gotls::GoTls::load(ebpf, enabled),
        })
    }

    /// How many uprobes are attached (each costs the kernel a grace period to detach).
    pub fn attached(&self) -> usize {
        self.attached.iter().map(|a| a.links.len()).sum::<usize>() + self.go.attached()
    }

    /// Libraries with probes attached now.
    pub fn attached_libraries(&self) -> usize {
        self.attached.iter().filter(|a| !a.links.is_empty()).count()
    }

    /// The table the event loop reads library names and kinds from.
    pub fn table(&self) -> LibraryTable {
        self.libraries.clone()
    }

    /// Take every link (to drop them elsewhere: each detach waits for a grace period).
    pub fn take_links(&mut self) -> Vec<UProbeLink> {
        let mut links: Vec<UProbeLink> = self
            .attached
            .iter_mut()
            .flat_map(|a| std::mem::take(&mut a.links))
            .collect();
        links.extend(self.go.take_links());
        links
    }

    /// Process `user` (pid, start time) no longer maps anything: libraries that only it used,
    /// and that were not attached for the whole host, lose their probes. Returns the links to
    /// drop (off the caller's hot path) and a status per detached library.
    pub fn release(&mut self, user: (u32, u64)) -> (Vec<UProbeLink>, Vec<Status>) {
        let mut links = self.go.release(user);
        let mut statuses = Vec::new();
        let table = self.libraries.read().expect("library table lock");
        for (index, a) in self.attached.iter_mut().enumerate() {
            if !a.users.remove(&user) || a.host || !a.users.is_empty() || a.links.is_empty() {
                continue;
            }
            links.append(&mut a.links);
            if let Some(map) = self.hook_text.as_mut() {
                for cookie in &a.cookies {
                    let _ = map.remove(cookie);
                }
            }
            self.by_inode.remove(&a.inode);
            let path = table.get(index).map(|l| l.path.as_str()).unwrap_or("?");
            statuses.push(Status::new(
                StatusKind::Detached,
                Some(format!("uprobe:{path}")),
                "no watched process maps it any more",
            ));
        }
        (links, statuses)
    }

    /// Attach to the host's own TLS libraries and OpenSSL-embedding runtimes up front, so even
    /// a process that starts, connects and exits within milliseconds is covered: a uprobe on a
    /// file applies to every process that maps it later.
    pub fn attach_host(&mut self, ebpf: &mut Ebpf) -> Vec<Status> {
        let mut statuses = Vec::new();
        if !self.enabled {
            return statuses;
        }
        let root = PathBuf::from("/");
        let mut candidates = self.root_libraries(&root);
        let path_dirs = std::env::var("PATH").unwrap_or_default();
        let mut dirs: Vec<&str> = path_dirs
            .split(':')
            .filter(|d| d.starts_with('/'))
            .collect();
        dirs.extend(["/usr/bin", "/usr/local/bin", "/bin"]);
        for dir in dirs {
            for name in ["node", "nodejs"] {
                let path = format!("{}/{name}", dir.trim_end_matches('/'));
                if Path::new(&path).exists() {
                    candidates.push(Candidate {
                        open: PathBuf::from(&path),
                        path,
                        kind: None,
                    });
                }
            }
        }
        for candidate in candidates {
            let (_, status) = self.consider(ebpf, None, candidate);
            statuses.extend(status);
        }
        statuses
    }

    /// TLS libraries and the C library in a root filesystem's standard directories (once per
    /// root).
    fn root_libraries(&mut self, root: &Path) -> Vec<Candidate> {
        let Ok(meta) = fs::metadata(root) else {
            return Vec::new();
        };
        if !self.roots_seen.insert((meta.dev(), meta.ino())) {
            return Vec::new();
        }
        libraries_in(root, &library_dirs())
    }

    /// Attach to everything TLS-related that process `pid` (started at `start`) has mapped or
    /// may map. Returns status lines for what was attached or refused (nothing when all was
    /// known already) and the libraries it uses.
    pub fn discover(&mut self, ebpf: &mut Ebpf, pid: u32, start: u64) -> Discovery {
        let mut found = Discovery::default();
        if !self.enabled {
            return found;
        }
        found
            .statuses
            .extend(self.go.discover(ebpf, pid, start, &self.libraries));
        let maps = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
        let mappings = exec_mappings(&maps);
        let root = PathBuf::from(format!("/proc/{pid}/root"));
        let mut candidates: Vec<Candidate> = Vec::new();
        for mapping in mappings {
            let kind = kind_by_name(&mapping.path);
            let name = mapping.path.rsplit('/').next().unwrap_or_default();
            // Only files that may embed OpenSSL are worth reading symbols from.
            if kind.is_none() && !["node", "ssl", "crypto"].iter().any(|n| name.contains(n)) {
                continue;
            }
            // A deleted file is still reachable through the mapping itself.
            let open = if mapping.deleted {
                PathBuf::from(format!("/proc/{pid}/map_files/{}", mapping.range))
            } else {
                root.join(mapping.path.trim_start_matches('/'))
            };
            let path = if mapping.deleted {
                format!("{} (deleted)", mapping.path)
            } else {
                mapping.path
            };
            candidates.push(Candidate { path, open, kind });
        }
        if let Ok(exe) = fs::read_link(format!("/proc/{pid}/exe")) {
            let exe = exe
                .to_string_lossy()
                .trim_end_matches(" (deleted)")
                .to_string();
            candidates.push(Candidate {
                open: PathBuf::from(format!("/proc/{pid}/exe")),
                path: exe,
                kind: None,
            });
        }
        candidates.extend(self.root_libraries(&root));
        // A library loaded later (Python imports `_ssl` lazily) is looked for in
        // LD_LIBRARY_PATH first: probe those directories' TLS libraries now.
        let environ = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        candidates.extend(libraries_in(&root, &library_path_dirs(&environ)));
        for candidate in candidates {
            let (index, status) = self.consider(ebpf, Some(pid), candidate);
            if let Some(index) = index {
                self.attached[index].users.insert((pid, start));
                found.libraries.push(index as u32);
            }
            found.statuses.extend(status);
        }
        found
    }

    /// Attach to one candidate file unless it is known already. Returns the library's index
    /// when the file is (now) attached, and a status line when there is something to say.
    fn consider(
        &mut self,
        ebpf: &mut Ebpf,
        pid: Option<u32>,
        candidate: Candidate,
    ) -> (Option<usize>, Option<Status>) {
        let Candidate {
            path,
            open: host_path,
            kind,
        } = candidate;
        let path = path.as_str();
        let who = match pid {
            Some(pid) => format!("pid {pid}"),
            None => "host".to_string(),
        };
        let component = Some(format!("uprobe:{path}"));
        let skipped =
            |message: String| Some(Status::new(StatusKind::Skipped, component.clone(), message));
        // Open once and attach through /proc/self/fd: the file stays the one we resolved even
        // if the process (and its /proc/PID/root) goes away or the path is replaced meanwhile.
        let file = match fs::File::open(&host_path) {
            Ok(file) => file,
            Err(err) => {
                // Only libraries we know to be TLS libraries are worth a word when they vanish.
                let tls = kind.is_some_and(|k| k != LibraryKind::Libc);
                return (
                    None,
                    tls.then(|| {
                        format!("{who}: the library vanished before it could be probed ({err})")
                    })
                    .and_then(skipped),
                );
            }
        };
        let Ok(meta) = file.metadata() else {
            return (None, None);
        };
        if !meta.is_file() {
            return (None, None);
        }
        let inode = (meta.dev(), meta.ino());
        if let Some(&index) = self.by_inode.get(&inode) {
            return (Some(index), None);
        }
        if self.refused.contains(&inode) {
            return (None, None);
        }
        // SAFETY: read-only private mapping of a regular file we just opened; it is dropped
        // before this function returns.
        let data = match unsafe { memmap2::Mmap::map(&file) } {
            Ok(data) => data,
            Err(err) => {
                self.refused.insert(inode);
                return (None, skipped(format!("{who}: unreadable ({err})")));
            }
        };
        let symbols = match resolve_symbols(&data) {
            Ok(symbols) => symbols,
            Err(err) => {
                self.refused.insert(inode);
                let tls = kind.is_some_and(|k| k != LibraryKind::Libc);
                return (
                    None,
                    tls.then(|| format!("{who}: {err:#}")).and_then(skipped),
                );
            }
        };
        let segments = exec_segments(&data);
        let plt = if kind == Some(LibraryKind::Libssl) {
            let names: Vec<&str> = PLT_HOOKS.iter().map(|h| h.symbol).collect();
            resolve_plt_stubs(&data, &names)
        } else {
            HashMap::new()
        };
        drop(data);
        let kind = match kind {
            Some(kind) => kind,
            None if EMBEDDED_MARKERS.iter().all(|m| symbols.contains_key(*m)) => {
                LibraryKind::Embedded
            }
            // An ordinary executable: nothing to say.
            None => {
                self.refused.insert(inode);
                return (None, None);
            }
        };
        // Enter the library in the shared table before any probe can fire with its index.
        let index = {
            let mut table = self.libraries.write().expect("library table lock");
            table.push(Library {
                path: path.to_string(),
                kind,
            });
            table.len() - 1
        };
        let fd_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
        let mut links = Vec::new();
        let mut cookies = Vec::new();
        let mut missing = Vec::new();
        let mut errors = Vec::new();
        // Function hooks by their symbol, then PLT hooks by their stub (cookies number them
        // in that order).
        let points = HOOKS
            .iter()
            .map(|h| (h, symbols.get(h.symbol), true))
            .chain(PLT_HOOKS.iter().map(|h| (h, plt.get(h.symbol), false)));
        for (hook_index, (hook, offset, function)) in points
            .enumerate()
            .filter(|(_, (h, _, _))| kind.provides(h.provider))
        {
            let Some(&offset) = offset else {
                if function {
                    missing.push(hook.symbol);
                }
                continue;
            };
            let cookie = ((index as u64) << COOKIE_HOOK_BITS) | hook_index as u64;
            let result = (|| -> anyhow::Result<UProbeLink> {
                if HANDSHAKE_ENTRY_PROGRAMS.contains(&hook.program) {
                    if let (Some(map), Some(range)) =
                        (self.hook_text.as_mut(), text_range(&segments, offset))
                    {
                        map.insert(cookie, range, 0)?;
                        cookies.push(cookie);
                    }
                }
                let program: &mut UProbe = ebpf
                    .program_mut(hook.program)
                    .with_context(|| format!("program {} missing", hook.program))?
                    .try_into()?;
                let point = UProbeAttachPoint {
                    location: UProbeAttachLocation::AbsoluteOffset(offset),
                    cookie: Some(cookie),
                };
                let id = program.attach(point, &fd_path, UProbeScope::AllProcesses)?;
                Ok(program.take_link(id)?)
            })();
            match result {
                Ok(link) => links.push(link),
                Err(err) => errors.push(format!("{}: {err:#}", hook.symbol)),
            }
        }
        missing.sort_unstable();
        missing.dedup();
        let attached = links.len();
        self.attached.push(Attached {
            inode,
            links,
            cookies,
            host: pid.is_none(),
            users: HashSet::new(),
        });
        if attached == 0 {
            self.refused.insert(inode);
            let why = if !errors.is_empty() {
                errors.join("; ")
            } else {
                "none of the OpenSSL functions is exported (stripped or not an OpenSSL build)"
                    .into()
            };
            return (None, skipped(format!("{who}: {why}")));
        }
        self.by_inode.insert(inode, index);
        let scope = match pid {
            Some(pid) => format!("pid {pid} only"),
            None => "every process that maps it".to_string(),
        };
        let plural = if attached == 1 { "" } else { "s" };
        let mut message = format!("{} in {scope}: {attached} hook{plural}", kind.describe());
        if !missing.is_empty() && kind != LibraryKind::Libc {
            message.push_str(&format!(" (not exported: {})", missing.join(", ")));
        }
        if !errors.is_empty() {
            message.push_str(&format!(" (failed: {})", errors.join("; ")));
        }
        (
            Some(index),
            Some(Status::new(StatusKind::Attached, component, message)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_to_executable_files() {
        let maps = "\
55d0c0a00000-55d0c0a2e000 r--p 00000000 fd:01 1234 /usr/bin/python3.11
55d0c0a2e000-55d0c0c00000 r-xp 0002e000 fd:01 1234 /usr/bin/python3.11
7f1e2a000000-7f1e2a100000 r-xp 00022000 fd:01 99 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f1e2b000000-7f1e2b100000 r-xp 00022000 fd:01 98 /tmp/gone/libssl.so.3 (deleted)
7f1e2c000000-7f1e2c021000 rw-p 00000000 00:00 0 
7ffd1e000000-7ffd1e021000 r-xp 00000000 00:00 0 [vdso]
";
        let found = exec_mappings(maps);
        let paths: Vec<(&str, bool)> = found.iter().map(|m| (m.path.as_str(), m.deleted)).collect();
        assert_eq!(
            paths,
            vec![
                ("/tmp/gone/libssl.so.3", true),
                ("/usr/bin/python3.11", false),
                ("/usr/lib/x86_64-linux-gnu/libssl.so.3", false),
            ]
        );
        assert_eq!(found[0].range, "7f1e2b000000-7f1e2b100000");
    }

    #[test]
    fn maps_paths_keep_their_spaces_and_deleted_suffix() {
        // As the kernel writes them: the path starts after padding that follows the inode.
        let maps = "\
0000-1000 r-xp 00022000 fd:01 101                        /opt/my app/libssl.so.3
1000-2000 r--p 00122000 fd:01 101                        /opt/my app/libssl.so.3
2000-3000 r-xp 00000000 fd:01 102                        /srv/(deleted)/lib/libcrypto.so.3
3000-4000 r-xp 00010000 fd:01 103                        /tmp/old  build/libssl.so.3 (deleted)
4000-5000 r-xp 00010000 fd:01 104                        /usr/lib/libssl.so.3 (deleted)
5000-6000 r-xp 00010000 fd:01 105                        /usr/lib/libssl.so.3
6000-7000 r-xp 00010000 fd:01 106                        /usr/lib/libssl.so.3
7000-8000 r-xp 00000000 00:00 0                          [anon:weird name]
8000-9000 r-xp 00000000 00:00 0
9000-a000 r-xp 00000000 fd:01 107                        /opt/trailing space /libc.so.6\x20
";
        let mappings = exec_mappings(maps);
        let found: Vec<(&str, bool, &str)> = mappings
            .iter()
            .map(|m| (m.path.as_str(), m.deleted, m.range.as_str()))
            .collect();
        assert_eq!(
            found,
            vec![
                ("/opt/my app/libssl.so.3", false, "0000-1000"),
                ("/opt/trailing space /libc.so.6 ", false, "9000-a000"),
                ("/srv/(deleted)/lib/libcrypto.so.3", false, "2000-3000"),
                ("/tmp/old  build/libssl.so.3", true, "3000-4000"),
                ("/usr/lib/libssl.so.3", false, "5000-6000"),
                ("/usr/lib/libssl.so.3", true, "4000-5000"),
            ]
        );
    }

    #[test]
    fn only_versioned_libraries_are_candidates() {
        assert!(is_versioned_library("libssl.so.3"));
        assert!(is_versioned_library("libcrypto.so.1.1"));
        assert!(is_versioned_library("libc.so.6"));
        assert!(!is_versioned_library("libc.so"));
        assert!(!is_versioned_library("libssl.so"));
        assert!(!is_versioned_library("libssl.so.3.bak"));
        assert!(!is_versioned_library("libcurl.so.4"));
    }

    #[test]
    fn library_kinds_by_name() {
        assert_eq!(
            kind_by_name("/usr/lib/x86_64-linux-gnu/libssl.so.3"),
            Some(LibraryKind::Libssl)
        );
        assert_eq!(
            kind_by_name("libcrypto.so.1.1"),
            Some(LibraryKind::Libcrypto)
        );
        assert_eq!(
            kind_by_name("/lib/x86_64-linux-gnu/libc.so.6"),
            Some(LibraryKind::Libc)
        );
        assert_eq!(
            kind_by_name("/lib/ld-musl-x86_64.so.1"),
            Some(LibraryKind::Libc)
        );
        assert_eq!(kind_by_name("/usr/bin/node"), None);
        assert_eq!(kind_by_name("libsslx.a"), None);
    }

    #[test]
    fn resolves_this_machines_libssl_and_node() {
        let libssl = fs::read(format!(
            "/usr/lib/{}-linux-gnu/libssl.so.3",
            std::env::consts::ARCH
        ))
        .expect("libssl.so.3 is on this machine");
        let symbols = resolve_symbols(&libssl).unwrap();
        for name in [
            "SSL_do_handshake",
            "SSL_get_verify_result",
            "SSL_CTX_set_verify",
            "SSL_new",
            "SSL_ctrl",
        ] {
            assert!(symbols.get(name).is_some_and(|&o| o > 0), "{name} missing");
        }
        assert!(
            !symbols.contains_key("d2i_X509"),
            "d2i_X509 lives in libcrypto"
        );
        let node = fs::read("/usr/bin/node").expect("node is on this machine");
        let symbols = resolve_symbols(&node).unwrap();
        assert!(
            EMBEDDED_MARKERS.iter().all(|m| symbols.contains_key(*m)),
            "node exports OpenSSL"
        );
        assert!(
            !symbols.contains_key("SSL_read") && !symbols.contains_key("SSL_write"),
            "the read and write paths are not hooked"
        );
        assert!(symbols.contains_key("X509_verify_cert"));
        assert!(
            symbols.contains_key("ssl_verify_cert_chain"),
            "node exports OpenSSL's internals too"
        );
        assert!(
            !symbols.contains_key("d2i_X509"),
            "d2i_X509 is never hooked host-wide: every trust-store load would trap"
        );
    }

    /// libssl calls `d2i_X509` through its PLT: the stub is a jump through the slot the
    /// dynamic linker fills (libcrypto's own calls, the trust-store loads, pass through
    /// libcrypto's PLT instead, never probed).
    #[test]
    fn plt_stubs_of_this_machines_libssl() {
        let dir = format!("/usr/lib/{}-linux-gnu", std::env::consts::ARCH);
        let libssl = fs::read(format!("{dir}/libssl.so.3")).unwrap();
        let stubs = resolve_plt_stubs(&libssl, &["d2i_X509", "no_such_function"]);
        assert_eq!(stubs.len(), 1, "{stubs:?}");
        let at = stubs["d2i_X509"] as usize;
        let jump = match libssl[at] {
            0xf2 => &libssl[at + 1..at + 3],
            _ => &libssl[at..at + 2],
        };
        assert_eq!(jump, [0xff, 0x25], "an indirect jump at {at:#x}");
        assert!(resolve_plt_stubs(b"not an ELF file", &["d2i_X509"]).is_empty());
    }

    #[test]
    fn text_ranges_cover_hooked_functions() {
        let libssl = fs::read(format!(
            "/usr/lib/{}-linux-gnu/libssl.so.3",
            std::env::consts::ARCH
        ))
        .unwrap();
        let segments = exec_segments(&libssl);
        assert!(!segments.is_empty());
        let offset = resolve_symbols(&libssl).unwrap()["SSL_do_handshake"];
        let range = text_range(&segments, offset).unwrap();
        assert!(range.lo > 0 && range.hi > 0);
        assert!(
            range.lo + range.hi < 2 << 20,
            "libssl's code is well under 2 MiB"
        );
        assert!(
            text_range(&segments, 0).is_none(),
            "the ELF header is not code"
        );
    }

    #[test]
    fn library_paths_from_the_environment() {
        assert_eq!(
            library_path_dirs(b"A=1\0LD_LIBRARY_PATH=/opt/x:rel:/opt/y\0B=2\0"),
            vec!["/opt/x", "/opt/y"]
        );
        assert!(library_path_dirs(b"A=1\0").is_empty());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(resolve_symbols(b"\x7fELF garbage").is_err());
        assert!(resolve_symbols(&[]).is_err());
    }

    #[test]
    fn every_program_hooks_a_symbol_of_its_provider() {
        for hook in HOOKS {
            assert!(!hook.symbol.is_empty());
            let kinds = [
                LibraryKind::Libssl,
                LibraryKind::Libcrypto,
                LibraryKind::Embedded,
                LibraryKind::Libc,
            ];
            assert!(
                kinds.iter().any(|k| k.provides(hook.provider)),
                "{}",
                hook.program
            );
        }
        assert!(programs().len() >= 20);
    }
}
