//! Which programs are MCP servers by what they are built from, not by their names.
//!
//! The signals, each read from the files the process runs, in its own mount namespace (through
//! `/proc/PID/root`, symlinks resolved against that root):
//! - Node: the script's nearest `package.json` (walking up from the script's real path) names an
//!   MCP SDK or framework ([`NODE_PACKAGES`]) among its dependencies, or the script is inside
//!   such a package in `node_modules`. A script that imports only the SDK's client side is an MCP
//!   client (a host or agent), not a server.
//! - Python: the script (a bounded prefix) or the `-m` module imports `mcp` or `fastmcp`, or the
//!   interpreter's environment (a venv: `uv run`, `uvx`, `pipx`, `python -m venv`) has the `mcp`
//!   or `fastmcp` distribution installed.
//! - Go: the binary's build information lists an MCP module ([`GO_MODULES`]); stripped builds
//!   keep it.
//! - Java/Kotlin: an MCP SDK jar (`io.modelcontextprotocol.sdk` artifacts, `mcp-*.jar`) on the
//!   class path, or its classes inside the `-jar` archive.
//! - Rust: symbols of the `rmcp` crate, when the binary keeps its symbol table.
//! - The parent (a supporting signal only): started with stdio pipes by a known MCP host
//!   ([`MCP_HOSTS`]). An MCP host also starts ordinary programs, so this alone watches nothing;
//!   it is added to the reason of another signal and listed by `doctor` as a candidate.
//!
//! Bounded work: each file read has a fixed byte budget ([`SCRIPT_BUDGET`] and friends), verdicts
//! are cached per file (device, inode, size, mtime), so a program already decided costs one
//! `stat`, and anything unreadable (gone, permission, loop, garbage) is skipped quietly.
use std::{
    collections::{HashMap, VecDeque},
    ffi::OsString,
    fs,
    io::Read,
    os::unix::fs::MetadataExt,
    path::{Component, Path, PathBuf},
    sync::OnceLock,
};

use regex::bytes::Regex;

use super::{gobuild, ProcFs, ProcessInfo};

/// npm packages that make a Node program an MCP server.
pub const NODE_PACKAGES: &[&str] = &[
    "@modelcontextprotocol/sdk",
    "fastmcp",
    "mcp-framework",
    "@mastra/mcp",
    "mcp-handler",
    "@vercel/mcp-adapter",
];
/// Python distributions (and top-level modules) that make a Python program an MCP server.
pub const PYTHON_PACKAGES: &[&str] = &["mcp", "fastmcp"];
/// Go modules that make a Go binary an MCP server.
pub const GO_MODULES: &[&str] = &[
    "github.com/mark3labs/mcp-go",
    "github.com/modelcontextprotocol/go-sdk",
    "github.com/metoro-io/mcp-golang",
];
/// Programs that start MCP servers over stdio (matched on the parent's name or executable):
/// desktop assistants, IDEs and agent CLIs.
pub const MCP_HOSTS: &[&str] = &[
    "claude",
    "Claude",
    "cursor",
    "Cursor",
    "code",
    "code-insiders",
    "codium",
    "windsurf",
    "zed",
    "zed-editor",
    "goose",
    "codex",
    "gemini",
    "opencode",
];

/// Bytes read from a script (imports are at the top; bundles are scanned this far).
pub const SCRIPT_BUDGET: u64 = 64 * 1024;
/// Bytes read from a `package.json`.
pub const PACKAGE_JSON_BUDGET: u64 = 1024 * 1024;
/// Bytes of a jar's end (its central directory: the entry names) searched.
pub const JAR_BUDGET: u64 = 4 * 1024 * 1024;
/// Bytes of a Rust binary's symbol names searched.
pub const SYMBOL_BUDGET: usize = 16 * 1024 * 1024;
/// Entries read from a directory (site-packages, a class-path wildcard).
const DIR_BUDGET: usize = 4096;
/// Directories walked up from a script looking for its package.
const WALK_UP: usize = 32;
/// Symlinks followed resolving one path (the kernel's limit).
const MAX_LINKS: usize = 40;
/// Cached verdicts; the oldest go first.
const CACHE_SIZE: usize = 4096;

/// What discovery found for a process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Discovered {
    /// Why the program is an MCP server, from what it is built from.
    pub built_from: Option<String>,
    /// The MCP host that started it with stdio pipes (supporting signal).
    pub host: Option<String>,
}

/// The identity of a file's content: a changed file is read again.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl FileId {
    fn of(meta: &fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        }
    }
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum Kind {
    PackageJson,
    NodeScript,
    PythonScript,
    SitePackages,
    Elf,
    Jar,
}

/// A cached verdict on one file.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Verdict {
    /// Says nothing either way (a `package.json` that only sets `type`): look further.
    Silent,
    No,
    Yes(String),
}

#[derive(Default)]
pub struct Discovery {
    cache: HashMap<(Kind, FileId), Verdict>,
    order: VecDeque<(Kind, FileId)>,
    /// Files actually read (not answered from the cache): for tests and `doctor`.
    pub reads: u64,
}

/// A process's view of the file system.
struct View {
    /// `/proc/PID/root`: the process's root directory.
    root: PathBuf,
    /// Its working directory, as a path inside its root.
    cwd: Option<PathBuf>,
}

impl View {
    /// Resolve `path` (absolute, or relative to the working directory) the way the process
    /// would: symlinks, absolute ones included, against its root, never ours. Returns the path
    /// inside the root. `None` when a component is missing or unreadable, or for a loop.
    fn resolve(&self, path: &str) -> Option<PathBuf> {
        resolve_in(&self.root, self.cwd.as_deref(), Path::new(path))
    }

    fn host(&self, inside: &Path) -> PathBuf {
        self.root.join(inside.strip_prefix("/").unwrap_or(inside))
    }
}

fn resolve_in(root: &Path, cwd: Option<&Path>, path: &Path) -> Option<PathBuf> {
    let mut current: Vec<OsString> = Vec::new();
    if path.is_relative() {
        current.extend(cwd?.components().filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            _ => None,
        }));
    }
    let mut pending: Vec<OsString> = components(path);
    pending.reverse();
    let mut links = 0;
    while let Some(name) = pending.pop() {
        if name == ".." {
            current.pop();
            continue;
        }
        current.push(name);
        let host: PathBuf = std::iter::once(root.as_os_str().to_os_string())
            .chain(current.iter().cloned())
            .collect();
        let meta = fs::symlink_metadata(&host).ok()?;
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return None;
            }
            let target = fs::read_link(&host).ok()?;
            current.pop();
            if target.is_absolute() {
                current.clear();
            }
            let mut more = components(&target);
            more.reverse();
            pending.extend(more);
        }
    }
    Some(
        std::iter::once(OsString::from("/"))
            .chain(current)
            .collect(),
    )
}

/// The names of a path, `..` kept, `.` and the root dropped.
fn components(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// Open a regular file for reading, never blocking: a FIFO or a device named as a script is
/// refused before it is opened (opening a FIFO waits for a writer), and the open itself is
/// non-blocking in case the file was swapped meanwhile.
fn open_regular(path: &Path) -> Option<fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if !fs::metadata(path).ok()?.is_file() {
        return None;
    }
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .ok()?;
    file.metadata().ok()?.is_file().then_some(file)
}

/// At most `budget` bytes from the start of a regular file.
fn read_prefix(path: &Path, budget: u64) -> Option<Vec<u8>> {
    let file = open_regular(path)?;
    let mut data = Vec::new();
    file.take(budget).read_to_end(&mut data).ok()?;
    Some(data)
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// `python3.11` -> `python`, `node20` -> `node`.
fn program_stem(name: &str) -> &str {
    basename(name).trim_end_matches(|c: char| c.is_ascii_digit() || c == '.')
}

/// What an interpreter's command line runs.
#[derive(Debug, PartialEq, Eq)]
enum Runs<'a> {
    Script(&'a str),
    Module(&'a str),
    Nothing,
}

/// The script or module of a `node` or `python` command line (`args` without `argv[0]`).
/// `with_value`: options whose value is the next argument.
fn interpreter_program<'a>(args: &'a [String], with_value: &[&str]) -> Runs<'a> {
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "-m" => return iter.next().map_or(Runs::Nothing, |m| Runs::Module(m)),
            // Inline code (or its redacted stand-in): no file to read.
            "-c" | "-e" | "--eval" | "-p" | "--print" => return Runs::Nothing,
            "--" => return iter.next().map_or(Runs::Nothing, |s| Runs::Script(s)),
            a if with_value.contains(&a) => {
                iter.next();
            }
            a if a.starts_with('-') => {}
            script => return Runs::Script(script),
        }
    }
    Runs::Nothing
}

const NODE_VALUE_OPTIONS: &[&str] = &[
    "-r",
    "--require",
    "--import",
    "--loader",
    "--experimental-loader",
    "--env-file",
    "--conditions",
    "-C",
    "--title",
    "--inspect-port",
];
const PYTHON_VALUE_OPTIONS: &[&str] = &["-W", "-X", "--check-hash-based-pycs"];
const JAVA_CLASSPATH_OPTIONS: &[&str] = &["-cp", "-classpath", "--class-path"];

fn python_imports() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"(?m)^[ \t]*(?:from[ \t]+(mcp|fastmcp)(?:\.[A-Za-z0-9_.]+)?[ \t]+import[ \t(]|import[ \t]+(mcp|fastmcp)(?:[ \t.,;]|$))",
        )
        .expect("valid regex")
    })
}

/// A jar of the MCP Java SDK (`io.modelcontextprotocol.sdk:mcp`, `mcp-core`,
/// `mcp-spring-webmvc`, ...), by its file name.
fn mcp_jar_name(name: &str) -> bool {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"^mcp(?:-[a-z][a-z0-9]*)*-[0-9][A-Za-z0-9._-]*\.jar$").expect("valid")
    })
    .is_match(name)
}

impl Discovery {
    /// Look at what `info`'s program is built from. Nothing here fails: what cannot be read
    /// says nothing.
    pub fn examine(&mut self, procfs: &ProcFs, info: &ProcessInfo) -> Discovered {
        let view = View {
            root: procfs.path(info.pid, "root"),
            cwd: fs::read_link(procfs.path(info.pid, "cwd")).ok(),
        };
        let built_from = self.built_from(procfs, &view, info);
        let host = mcp_host(procfs, info);
        Discovered { built_from, host }
    }

    fn built_from(&mut self, procfs: &ProcFs, view: &View, info: &ProcessInfo) -> Option<String> {
        let argv0 = info.cmdline.first().map(String::as_str).unwrap_or("");
        let exe = info.exe.as_deref().unwrap_or("");
        let is = |name: &str| program_stem(argv0) == name || program_stem(exe) == name;
        let args = info.cmdline.get(1..).unwrap_or(&[]);
        if is("node") || is("nodejs") {
            if let Runs::Script(script) = interpreter_program(args, NODE_VALUE_OPTIONS) {
                return self.node(view, script);
            }
            return None;
        }
        if is("python") || is("pypy") {
            return self.python(procfs, view, info.pid, argv0, args);
        }
        if is("java") {
            return self.java(view, args);
        }
        self.native(procfs, info.pid)
    }

    /// A cached verdict on the file at `host`, computed by `judge` from it when not cached.
    fn cached(
        &mut self,
        kind: Kind,
        host: &Path,
        judge: impl FnOnce(&Path) -> Verdict,
    ) -> Option<Verdict> {
        let id = FileId::of(&fs::metadata(host).ok()?);
        if let Some(v) = self.cache.get(&(kind, id)) {
            return Some(v.clone());
        }
        self.reads += 1;
        let verdict = judge(host);
        if self.order.len() >= CACHE_SIZE {
            if let Some(old) = self.order.pop_front() {
                self.cache.remove(&old);
            }
        }
        self.order.push_back((kind, id));
        self.cache.insert((kind, id), verdict.clone());
        Some(verdict)
    }

    fn node(&mut self, view: &View, script: &str) -> Option<String> {
        let path = view.resolve(script)?;
        let host = view.host(&path);
        if self.cached(Kind::NodeScript, &host, judge_node_script)? == Verdict::No {
            return None;
        }
        // Inside an MCP package's own directory in node_modules.
        let names: Vec<String> = path
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        for (i, name) in names.iter().enumerate() {
            if name != "node_modules" {
                continue;
            }
            let package = match names.get(i + 1) {
                Some(scope) if scope.starts_with('@') => names
                    .get(i + 2)
                    .map(|n| format!("{scope}/{n}"))
                    .unwrap_or_default(),
                Some(n) => n.clone(),
                None => continue,
            };
            if NODE_PACKAGES.contains(&package.as_str()) {
                return Some(format!(
                    "the script is inside the MCP package {package} in node_modules"
                ));
            }
        }
        let mut dir = path.parent();
        for _ in 0..WALK_UP {
            let Some(d) = dir else { break };
            let manifest = d.join("package.json");
            match self.cached(Kind::PackageJson, &view.host(&manifest), judge_package_json) {
                Some(Verdict::Yes(why)) => {
                    return Some(format!("{} {why}", manifest.display()));
                }
                Some(Verdict::No) => return None,
                Some(Verdict::Silent) | None => {}
            }
            dir = d.parent();
        }
        None
    }

    fn python(
        &mut self,
        procfs: &ProcFs,
        view: &View,
        pid: u32,
        argv0: &str,
        args: &[String],
    ) -> Option<String> {
        match interpreter_program(args, PYTHON_VALUE_OPTIONS) {
            Runs::Module(module) => {
                let top = module.split('.').next().unwrap_or(module);
                if PYTHON_PACKAGES.contains(&top) {
                    return Some(format!("runs the Python module {module}"));
                }
                // A module of the working directory (`python -m weather`).
                let rel = module.replace('.', "/");
                for candidate in [
                    format!("{rel}.py"),
                    format!("{rel}/__main__.py"),
                    format!("{rel}/__init__.py"),
                ] {
                    if let Some(found) = self.python_script(view, &candidate) {
                        return Some(found);
                    }
                }
            }
            Runs::Script(script) => {
                if let Some(found) = self.python_script(view, script) {
                    return Some(found);
                }
            }
            Runs::Nothing => {}
        }
        // The environment: a venv named by the interpreter's path, or by VIRTUAL_ENV.
        let mut prefixes = Vec::new();
        if argv0.starts_with('/') {
            if let Some(prefix) = Path::new(argv0).parent().and_then(Path::parent) {
                prefixes.push(prefix.to_path_buf());
            }
        }
        if let Some(venv) = procfs.env_var(pid, "VIRTUAL_ENV") {
            prefixes.push(PathBuf::from(venv));
        }
        for prefix in prefixes {
            let Some(prefix) = view.resolve(&prefix.to_string_lossy()) else {
                continue;
            };
            if fs::metadata(view.host(&prefix.join("pyvenv.cfg"))).is_err() {
                continue;
            }
            let lib = prefix.join("lib");
            let Ok(entries) = fs::read_dir(view.host(&lib)) else {
                continue;
            };
            for entry in entries.flatten().take(DIR_BUDGET) {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !name.starts_with("python") && !name.starts_with("pypy") {
                    continue;
                }
                let site = lib.join(&name).join("site-packages");
                if let Some(Verdict::Yes(dist)) =
                    self.cached(Kind::SitePackages, &view.host(&site), judge_site_packages)
                {
                    return Some(format!(
                        "its Python environment {} has the {dist} distribution",
                        prefix.display()
                    ));
                }
            }
        }
        None
    }

    fn python_script(&mut self, view: &View, script: &str) -> Option<String> {
        let path = view.resolve(script)?;
        match self.cached(Kind::PythonScript, &view.host(&path), judge_python_script)? {
            Verdict::Yes(import) => Some(format!("{} {import}", path.display())),
            _ => None,
        }
    }

    fn java(&mut self, view: &View, args: &[String]) -> Option<String> {
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            if JAVA_CLASSPATH_OPTIONS.contains(&arg.as_str()) {
                let classpath = iter.next()?;
                if let Some(found) = self.classpath(view, classpath) {
                    return Some(found);
                }
            } else if arg == "-jar" {
                let jar = iter.next()?;
                let path = view.resolve(jar)?;
                if let Some(Verdict::Yes(why)) =
                    self.cached(Kind::Jar, &view.host(&path), judge_jar)
                {
                    return Some(format!("{} {why}", path.display()));
                }
                return None;
            } else if !arg.starts_with('-') {
                // The main class: options after it are the program's.
                break;
            }
        }
        None
    }

    fn classpath(&mut self, view: &View, classpath: &str) -> Option<String> {
        for entry in classpath.split(':').filter(|e| !e.is_empty()) {
            if mcp_jar_name(basename(entry)) {
                return Some(format!(
                    "the MCP Java SDK jar {} is on its class path",
                    basename(entry)
                ));
            }
            if let Some(dir) = entry.strip_suffix("/*").or(entry.strip_suffix("*")) {
                let dir = view.resolve(if dir.is_empty() { "." } else { dir })?;
                if let Ok(entries) = fs::read_dir(view.host(&dir)) {
                    for e in entries.flatten().take(DIR_BUDGET) {
                        let name = e.file_name().to_string_lossy().into_owned();
                        if mcp_jar_name(&name) {
                            return Some(format!(
                                "the MCP Java SDK jar {name} is on its class path ({entry})"
                            ));
                        }
                    }
                }
            } else if let Some(dir) = view.resolve(entry) {
                if fs::metadata(view.host(&dir).join("io/modelcontextprotocol")).is_ok() {
                    return Some(format!(
                        "the MCP Java SDK's classes are on its class path ({entry})"
                    ));
                }
            }
        }
        None
    }

    /// A native executable: Go build information, Rust symbols.
    fn native(&mut self, procfs: &ProcFs, pid: u32) -> Option<String> {
        match self.cached(Kind::Elf, &procfs.path(pid, "exe"), judge_elf)? {
            Verdict::Yes(why) => Some(why),
            _ => None,
        }
    }
}

fn judge_node_script(host: &Path) -> Verdict {
    let Some(text) = read_prefix(host, SCRIPT_BUDGET) else {
        return Verdict::Silent;
    };
    let sdk = memchr::memmem::find_iter(&text, b"@modelcontextprotocol/sdk/")
        .map(|at| &text[at + "@modelcontextprotocol/sdk/".len()..]);
    let (mut client, mut server) = (false, false);
    for rest in sdk {
        client |= rest.starts_with(b"client");
        server |= rest.starts_with(b"server");
    }
    // Only the client side: an MCP host or agent, not a server.
    if client && !server {
        Verdict::No
    } else {
        Verdict::Silent
    }
}

fn judge_package_json(host: &Path) -> Verdict {
    let Some(data) = read_prefix(host, PACKAGE_JSON_BUDGET) else {
        return Verdict::Silent;
    };
    let Ok(serde_json::Value::Object(manifest)) = serde_json::from_slice(&data) else {
        return Verdict::Silent;
    };
    const FIELDS: [&str; 4] = [
        "dependencies",
        "devDependencies",
        "peerDependencies",
        "optionalDependencies",
    ];
    let name = manifest.get("name").and_then(|n| n.as_str());
    if let Some(name) = name.filter(|n| NODE_PACKAGES.contains(n)) {
        return Verdict::Yes(format!("is the MCP package {name}"));
    }
    let mut is_package = name.is_some();
    for field in FIELDS {
        let Some(deps) = manifest.get(field).and_then(|d| d.as_object()) else {
            continue;
        };
        is_package = true;
        if let Some(dep) = NODE_PACKAGES.iter().find(|p| deps.contains_key(**p)) {
            return Verdict::Yes(format!("lists {dep} in {field}"));
        }
    }
    if is_package {
        Verdict::No
    } else {
        Verdict::Silent
    }
}

fn judge_python_script(host: &Path) -> Verdict {
    let Some(text) = read_prefix(host, SCRIPT_BUDGET) else {
        return Verdict::No;
    };
    match python_imports().captures(&text) {
        Some(c) => {
            let module = c
                .get(1)
                .or(c.get(2))
                .map_or("", |m| std::str::from_utf8(m.as_bytes()).unwrap_or(""));
            Verdict::Yes(format!("imports {module}"))
        }
        None => Verdict::No,
    }
}

fn judge_site_packages(host: &Path) -> Verdict {
    let Ok(entries) = fs::read_dir(host) else {
        return Verdict::No;
    };
    for entry in entries.flatten().take(DIR_BUDGET * 4) {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Some(stem) = name.strip_suffix(".dist-info") else {
            continue;
        };
        let dist = stem.split_once('-').map_or(stem, |(d, _)| d);
        if let Some(p) = PYTHON_PACKAGES
            .iter()
            .find(|p| dist.eq_ignore_ascii_case(p))
        {
            return Verdict::Yes((*p).to_string());
        }
    }
    Verdict::No
}

fn judge_jar(host: &Path) -> Verdict {
    let Some(mut file) = open_regular(host) else {
        return Verdict::No;
    };
    let Ok(size) = file.metadata().map(|m| m.len()) else {
        return Verdict::No;
    };
    use std::io::Seek;
    let start = size.saturating_sub(JAR_BUDGET);
    if file.seek(std::io::SeekFrom::Start(start)).is_err() {
        return Verdict::No;
    }
    let mut tail = Vec::new();
    if file.take(JAR_BUDGET).read_to_end(&mut tail).is_err() {
        return Verdict::No;
    }
    if memchr::memmem::find(&tail, b"io/modelcontextprotocol/").is_some() {
        return Verdict::Yes("holds the MCP Java SDK's classes".into());
    }
    // A Spring Boot or similar fat jar: nested library jars by name.
    for at in memchr::memmem::find_iter(&tail, b"lib/mcp-") {
        let name_start = at + 4;
        let window = &tail[name_start..tail.len().min(name_start + 256)];
        let Some(end) = memchr::memmem::find(window, b".jar") else {
            continue;
        };
        let name = String::from_utf8_lossy(&window[..end + 4]);
        if mcp_jar_name(&name) {
            return Verdict::Yes(format!("holds the MCP Java SDK jar {name}"));
        }
    }
    Verdict::No
}

fn judge_elf(host: &Path) -> Verdict {
    let Some(file) = open_regular(host) else {
        return Verdict::No;
    };
    // SAFETY: read-only private mapping of a file we just opened, dropped before return. A
    // binary replaced under us changes its identity, so its verdict is not cached for the new
    // one; a truncation while mapped would fault, which installed binaries do not do.
    let Ok(data) = (unsafe { memmap2::Mmap::map(&file) }) else {
        return Verdict::No;
    };
    elf_verdict(&data)
}

fn elf_verdict(data: &[u8]) -> Verdict {
    use object::{Object, ObjectSection};
    let Ok(file) = object::File::parse(data) else {
        return Verdict::No;
    };
    if let Some(section) = file.section_by_name(".go.buildinfo") {
        let Some(info) = section.data().ok().and_then(gobuild::parse) else {
            return Verdict::No;
        };
        return match info
            .modules
            .iter()
            .find(|m| GO_MODULES.contains(&m.path.as_str()))
        {
            Some(m) => Verdict::Yes(format!(
                "Go binary ({}) built with the MCP module {} {}",
                info.go_version, m.path, m.version
            )),
            None => Verdict::No,
        };
    }
    // Rust: the compiler names itself in `.comment`; the crate's mangled paths hold `4rmcp`.
    let rustc = file
        .section_by_name(".comment")
        .and_then(|s| s.data().ok())
        .is_some_and(|c| memchr::memmem::find(c, b"rustc").is_some());
    if !rustc {
        return Verdict::No;
    }
    let Some(names) = file.section_by_name(".strtab").and_then(|s| s.data().ok()) else {
        return Verdict::No;
    };
    if rmcp_symbols(&names[..names.len().min(SYMBOL_BUDGET)]) {
        Verdict::Yes("Rust binary with symbols of the rmcp crate (the MCP Rust SDK)".into())
    } else {
        Verdict::No
    }
}

/// Whether a symbol-name table holds paths of the `rmcp` crate: `_ZN4rmcp7service...` (legacy
/// mangling) or `..._4rmcp...` (v0), as a whole path component (not `14rmcpfoo`, `4rmcpx`).
fn rmcp_symbols(names: &[u8]) -> bool {
    memchr::memmem::find_iter(names, b"4rmcp").any(|at| {
        let before = at.checked_sub(1).map(|i| names[i]);
        let after = names.get(at + 5).copied();
        !before.is_some_and(|b| b.is_ascii_digit())
            && after.is_some_and(|a| a.is_ascii_digit() || a == b'E' || a == b'N')
    })
}

/// The MCP host that started this process with stdio pipes, if one did.
fn mcp_host(procfs: &ProcFs, info: &ProcessInfo) -> Option<String> {
    let ppid = info.ppid.filter(|&p| p > 1)?;
    let piped = ["fd/0", "fd/1"].iter().all(|fd| {
        fs::read_link(procfs.path(info.pid, fd))
            .is_ok_and(|t| t.to_string_lossy().starts_with("pipe:"))
    });
    if !piped {
        return None;
    }
    let comm = fs::read_to_string(procfs.path(ppid, "comm")).unwrap_or_default();
    let comm = comm.trim_end();
    let exe = fs::read_link(procfs.path(ppid, "exe"))
        .map(|p| basename(&p.to_string_lossy()).to_string())
        .unwrap_or_default();
    let host = MCP_HOSTS
        .iter()
        .find(|h| **h == comm || **h == exe.trim_end_matches(" (deleted)"))?;
    Some(format!(
        "started over stdio pipes by the MCP host {host} (pid {ppid})"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A fixture: `proc/PID/{root,cwd,exe,cmdline...}` and a root file system under `fs/`.
    struct Fixture {
        dir: PathBuf,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    impl Fixture {
        fn new() -> Self {
            static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("em-discover-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(dir.join("proc")).unwrap();
            fs::create_dir_all(dir.join("fs")).unwrap();
            Self { dir }
        }

        fn fs(&self) -> PathBuf {
            self.dir.as_path().join("fs")
        }

        fn file(&self, path: &str, content: &[u8]) {
            let p = self.fs().join(path.trim_start_matches('/'));
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, content).unwrap();
        }

        fn link(&self, path: &str, target: &str) {
            let p = self.fs().join(path.trim_start_matches('/'));
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            symlink(target, p).unwrap();
        }

        /// A process running `cmd` in `cwd`, its executable `exe` (inside the fixture's root).
        fn process(&self, pid: u32, exe: &str, cmd: &str, cwd: &str) -> ProcessInfo {
            let p = self.dir.as_path().join("proc").join(pid.to_string());
            fs::create_dir_all(&p).unwrap();
            symlink(self.fs(), p.join("root")).unwrap();
            symlink(cwd, p.join("cwd")).unwrap();
            symlink(self.fs().join(exe.trim_start_matches('/')), p.join("exe")).unwrap();
            ProcessInfo {
                pid,
                ppid: Some(1),
                exe: Some(exe.into()),
                cmdline: cmd.split_whitespace().map(String::from).collect(),
                ..Default::default()
            }
        }

        fn procfs(&self) -> ProcFs {
            ProcFs::at(self.dir.as_path().join("proc"))
        }
    }

    const SDK_SERVER_JS: &str = r#"import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
"#;

    #[test]
    fn node_quickstart_layout() {
        let f = Fixture::new();
        f.file("/usr/bin/node", b"\x7fELF");
        f.file(
            "/home/me/weather/package.json",
            br#"{"name":"weather","type":"module","dependencies":{"@modelcontextprotocol/sdk":"^1.12.0","zod":"^3"}}"#,
        );
        f.file("/home/me/weather/build/index.js", SDK_SERVER_JS.as_bytes());
        // A nested package.json that only sets the module type says nothing.
        f.file(
            "/home/me/weather/build/package.json",
            br#"{"type":"module"}"#,
        );
        let mut d = Discovery::default();
        let procfs = f.procfs();
        let p = f.process(
            10,
            "/usr/bin/node",
            "node /home/me/weather/build/index.js",
            "/",
        );
        let found = d.examine(&procfs, &p).built_from.unwrap();
        assert_eq!(
            found,
            "/home/me/weather/package.json lists @modelcontextprotocol/sdk in dependencies"
        );
        // Relative to the working directory, and cached: no file read again.
        let reads = d.reads;
        let p = f.process(
            11,
            "/usr/bin/node",
            "node build/index.js",
            "/home/me/weather",
        );
        assert_eq!(d.examine(&procfs, &p).built_from.unwrap(), found);
        assert_eq!(d.reads, reads, "verdicts are cached per file");
        // Without the SDK: nothing.
        f.file(
            "/home/me/plain/package.json",
            br#"{"name":"plain","dependencies":{"undici":"6"}}"#,
        );
        f.file("/home/me/plain/build/index.js", b"console.log(1)");
        let p = f.process(
            12,
            "/usr/bin/node",
            "node --require x /home/me/plain/build/index.js",
            "/",
        );
        assert_eq!(d.examine(&procfs, &p).built_from, None);
    }

    #[test]
    fn node_packages_in_node_modules_and_symlinked_bins() {
        let f = Fixture::new();
        f.file("/usr/bin/node", b"\x7fELF");
        let pkg = "/root/.npm/_npx/ab12/node_modules/@acme/weather-server";
        f.file(
            &format!("{pkg}/package.json"),
            br#"{"name":"@acme/weather-server","dependencies":{"fastmcp":"1"}}"#,
        );
        f.file(&format!("{pkg}/dist/index.js"), b"#!/usr/bin/env node\n");
        // npx runs the bin link; an absolute link resolves inside the process's root.
        f.link(
            "/root/.npm/_npx/ab12/node_modules/.bin/weather-server",
            &format!("{pkg}/dist/index.js"),
        );
        let mut d = Discovery::default();
        let p = f.process(
            10,
            "/usr/bin/node",
            "node /root/.npm/_npx/ab12/node_modules/.bin/weather-server",
            "/tmp",
        );
        let found = d.examine(&f.procfs(), &p).built_from.unwrap();
        assert!(found.ends_with("weather-server/package.json lists fastmcp in dependencies"));
        // The SDK's own CLI.
        let sdk = "/usr/lib/node_modules/@modelcontextprotocol/sdk";
        f.file(
            &format!("{sdk}/package.json"),
            br#"{"name":"@modelcontextprotocol/sdk"}"#,
        );
        f.file(&format!("{sdk}/dist/cli.js"), b"");
        let p = f.process(11, "/usr/bin/node", &format!("node {sdk}/dist/cli.js"), "/");
        assert!(d
            .examine(&f.procfs(), &p)
            .built_from
            .unwrap()
            .contains("inside the MCP package @modelcontextprotocol/sdk"));
    }

    #[test]
    fn an_mcp_client_is_not_a_server() {
        let f = Fixture::new();
        f.file("/usr/bin/node", b"\x7fELF");
        f.file(
            "/srv/agent/package.json",
            br#"{"name":"agent","dependencies":{"@modelcontextprotocol/sdk":"1"}}"#,
        );
        f.file(
            "/srv/agent/run.mjs",
            br#"import { Client } from "@modelcontextprotocol/sdk/client/index.js";"#,
        );
        let p = f.process(10, "/usr/bin/node", "node /srv/agent/run.mjs", "/");
        assert_eq!(
            Discovery::default().examine(&f.procfs(), &p).built_from,
            None
        );
    }

    #[test]
    fn python_scripts_modules_and_environments() {
        let f = Fixture::new();
        f.file("/usr/bin/python3.11", b"\x7fELF");
        f.file(
            "/home/me/weather/weather.py",
            b"from typing import Any\nimport httpx\nfrom mcp.server.fastmcp import FastMCP\n",
        );
        f.file(
            "/home/me/other/app.py",
            b"import httpx\n# from mcp import x\n",
        );
        f.file("/home/me/tools/fast.py", b"import fastmcp\n");
        let mut d = Discovery::default();
        let procfs = f.procfs();
        let p = f.process(
            10,
            "/usr/bin/python3.11",
            "python3 weather.py",
            "/home/me/weather",
        );
        assert_eq!(
            d.examine(&procfs, &p).built_from.unwrap(),
            "/home/me/weather/weather.py imports mcp"
        );
        let p = f.process(
            11,
            "/usr/bin/python3.11",
            "python3 -u /home/me/other/app.py",
            "/",
        );
        assert_eq!(
            d.examine(&procfs, &p).built_from,
            None,
            "a comment is not an import"
        );
        let p = f.process(
            12,
            "/usr/bin/python3.11",
            "python3 -m fast",
            "/home/me/tools",
        );
        assert_eq!(
            d.examine(&procfs, &p).built_from.unwrap(),
            "/home/me/tools/fast.py imports fastmcp"
        );
        let p = f.process(
            13,
            "/usr/bin/python3.11",
            "python3 -m mcp.cli run x.py",
            "/",
        );
        assert!(d
            .examine(&procfs, &p)
            .built_from
            .unwrap()
            .contains("module mcp.cli"));
        // A venv with the mcp distribution, named by the interpreter's path.
        f.file("/home/me/srv/.venv/pyvenv.cfg", b"home = /usr/bin\n");
        f.file(
            "/home/me/srv/.venv/lib/python3.11/site-packages/mcp-1.9.4.dist-info/METADATA",
            b"",
        );
        f.link("/home/me/srv/.venv/bin/python", "/usr/bin/python3.11");
        f.file("/home/me/srv/main.py", b"import server\n");
        let p = f.process(
            14,
            "/usr/bin/python3.11",
            "/home/me/srv/.venv/bin/python /home/me/srv/main.py",
            "/",
        );
        assert_eq!(
            d.examine(&procfs, &p).built_from.unwrap(),
            "its Python environment /home/me/srv/.venv has the mcp distribution"
        );
        // Inline code has no file; the system interpreter's environment is not a venv.
        let p = f.process(
            15,
            "/usr/bin/python3.11",
            "/usr/bin/python3 -c <inline>",
            "/",
        );
        assert_eq!(d.examine(&procfs, &p).built_from, None);
    }

    #[test]
    fn java_class_paths_and_jars() {
        let f = Fixture::new();
        f.file("/usr/bin/java", b"\x7fELF");
        f.file("/opt/app/lib/mcp-0.10.0.jar", b"PK");
        f.file("/opt/app/lib/jackson-2.17.jar", b"PK");
        let mut d = Discovery::default();
        let procfs = f.procfs();
        let p = f.process(
            10,
            "/usr/bin/java",
            "java -cp /opt/app/lib/* com.acme.Main",
            "/",
        );
        assert!(d
            .examine(&procfs, &p)
            .built_from
            .unwrap()
            .contains("mcp-0.10.0.jar"));
        let p = f.process(
            11,
            "/usr/bin/java",
            "java -classpath app.jar:lib/mcp-spring-webmvc-0.10.0.jar Main",
            "/",
        );
        assert!(d.examine(&procfs, &p).built_from.is_some());
        let mut jar = b"PK\x03\x04 lots of bytes ".repeat(100);
        jar.extend_from_slice(b"PK\x01\x02 BOOT-INF/lib/mcp-core-0.11.0.jar PK\x05\x06");
        f.file("/opt/boot.jar", &jar);
        let p = f.process(
            12,
            "/usr/bin/java",
            "java -Xmx1g -jar /opt/boot.jar --port 1",
            "/",
        );
        assert!(d
            .examine(&procfs, &p)
            .built_from
            .unwrap()
            .contains("mcp-core-0.11.0.jar"));
        f.file(
            "/opt/plain.jar",
            b"PK\x01\x02 com/acme/Main.class lib/mcp-notes.txt",
        );
        let p = f.process(13, "/usr/bin/java", "java -jar /opt/plain.jar", "/");
        assert_eq!(d.examine(&procfs, &p).built_from, None);
        assert!(!mcp_jar_name("mcpe-1.0.jar"));
        assert!(!mcp_jar_name("mcp.jar"));
    }

    #[test]
    fn go_binaries_by_build_info() {
        // A real ELF (this test binary) cannot carry a Go section; the section parser and the
        // module match are tested on the section itself, the ELF path on a non-Go binary.
        let section = gobuild::tests::section(
            "go1.19.8",
            &[
                "path\texample.com/weather",
                "mod\texample.com/weather\t(devel)\t",
                "dep\tgithub.com/mark3labs/mcp-go\tv0.0.0-00010101000000-000000000000\t",
                "=>\t./mcp-go\t(devel)\t",
            ],
        );
        let info = gobuild::parse(&section).unwrap();
        assert!(info
            .modules
            .iter()
            .any(|m| GO_MODULES.contains(&m.path.as_str())));
        let own = fs::read("/proc/self/exe").unwrap();
        assert_eq!(
            elf_verdict(&own),
            Verdict::No,
            "a Rust test binary without rmcp"
        );
    }

    #[test]
    fn nothing_crashes_discovery() {
        let f = Fixture::new();
        f.file("/usr/bin/node", b"\x7fELF");
        f.file("/usr/bin/python3", b"\x7fELF");
        // Binary garbage as a script and as a package.json.
        let garbage: Vec<u8> = (0..200_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        f.file("/g/package.json", &garbage);
        f.file("/g/x.js", &garbage);
        f.file("/g/x.py", &garbage);
        // A huge script whose import is past the budget.
        let mut huge = vec![b'#'; SCRIPT_BUDGET as usize + 10];
        huge.extend_from_slice(b"\nimport mcp\n");
        f.file("/g/huge.py", &huge);
        // Symlink loops, a dangling link, a directory as a script, an unreadable file.
        f.link("/loop/a", "/loop/b");
        f.link("/loop/b", "/loop/a");
        f.link("/loop/self", "self");
        f.link("/dangling.js", "/nowhere/x.js");
        fs::create_dir_all(f.fs().join("dir.js")).unwrap();
        f.file(
            "/locked/package.json",
            br#"{"dependencies":{"fastmcp":"1"}}"#,
        );
        f.file("/locked/x.js", b"");
        let mut d = Discovery::default();
        let procfs = f.procfs();
        let none = |d: &mut Discovery, pid, exe, cmd: &str| {
            let p = f.process(pid, exe, cmd, "/");
            assert_eq!(d.examine(&procfs, &p), Discovered::default(), "{cmd}");
        };
        none(&mut d, 1, "/usr/bin/node", "node /g/x.js");
        none(&mut d, 2, "/usr/bin/python3", "python3 /g/x.py");
        none(&mut d, 3, "/usr/bin/python3", "python3 /g/huge.py");
        none(&mut d, 4, "/usr/bin/node", "node /loop/a");
        none(&mut d, 5, "/usr/bin/node", "node /loop/self/x.js");
        none(&mut d, 6, "/usr/bin/node", "node /dangling.js");
        none(&mut d, 7, "/usr/bin/node", "node /dir.js");
        none(&mut d, 8, "/usr/bin/node", "node");
        none(&mut d, 9, "/usr/bin/node", "node ../../../../etc/x.js");
        // A process that is gone: no /proc entry at all.
        let gone = ProcessInfo {
            pid: 999,
            exe: Some("/usr/bin/node".into()),
            cmdline: vec!["node".into(), "/locked/x.js".into()],
            ..Default::default()
        };
        assert_eq!(d.examine(&procfs, &gone), Discovered::default());
        // Resolution never leaves the process's root.
        let root = f.fs();
        assert_eq!(
            resolve_in(&root, Some(Path::new("/")), Path::new("../../g/x.js")),
            Some(PathBuf::from("/g/x.js"))
        );
    }

    #[test]
    fn rust_binaries_by_rmcp_symbols() {
        assert!(rmcp_symbols(
            b"\0_ZN4core3fmt5write17h0123E\0_ZN4rmcp7service5serve17habcdE\0"
        ));
        assert!(rmcp_symbols(b"\0_RNvNtCs1234_4rmcp7service5serve\0"));
        assert!(
            !rmcp_symbols(b"\0_ZN14rmcpextras3run17hE\0"),
            "another crate"
        );
        assert!(!rmcp_symbols(b"\0_ZN5rmcpx3run17hE\x004rmcpx\0"));
        assert!(!rmcp_symbols(b""));
    }

    #[test]
    fn the_mcp_host_is_a_supporting_signal() {
        let f = Fixture::new();
        f.file("/usr/bin/node", b"\x7fELF");
        f.file("/srv/app/index.js", b"console.log(1)");
        let procfs = f.procfs();
        // The host (pid 20, comm `claude`) and its child with stdin and stdout on pipes.
        let host = f.dir.join("proc/20");
        fs::create_dir_all(&host).unwrap();
        fs::write(host.join("comm"), "claude\n").unwrap();
        let mut p = f.process(21, "/usr/bin/node", "node /srv/app/index.js", "/");
        p.ppid = Some(20);
        let fd = f.dir.join("proc/21/fd");
        fs::create_dir_all(&fd).unwrap();
        symlink("pipe:[4242]", fd.join("0")).unwrap();
        symlink("pipe:[4243]", fd.join("1")).unwrap();
        let found = Discovery::default().examine(&procfs, &p);
        assert_eq!(found.built_from, None, "nothing says MCP but the host");
        assert_eq!(
            found.host.as_deref(),
            Some("started over stdio pipes by the MCP host claude (pid 20)")
        );
        // A terminal on stdout: not how hosts start servers.
        let mut q = f.process(22, "/usr/bin/node", "node /srv/app/index.js", "/");
        q.ppid = Some(20);
        let fd = f.dir.join("proc/22/fd");
        fs::create_dir_all(&fd).unwrap();
        symlink("pipe:[4244]", fd.join("0")).unwrap();
        symlink("/dev/pts/3", fd.join("1")).unwrap();
        assert_eq!(Discovery::default().examine(&procfs, &q).host, None);
        // Another parent.
        fs::write(host.join("comm"), "bash\n").unwrap();
        assert_eq!(Discovery::default().examine(&procfs, &p).host, None);
    }

    #[test]
    fn special_files_never_block_discovery() {
        let f = Fixture::new();
        f.file("/usr/bin/node", b"\x7fELF");
        f.file("/usr/bin/java", b"\x7fELF");
        fs::create_dir_all(f.fs().join("srv")).unwrap();
        let fifo = f.fs().join("srv/fifo.js");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        std::os::unix::fs::symlink(&fifo, f.fs().join("srv/app.jar")).unwrap();
        // A character device (/dev/zero's numbers) named as a script.
        let dev = std::ffi::CString::new(f.fs().join("srv/zero.js").to_str().unwrap()).unwrap();
        // SAFETY: a valid C string; makedev(1, 5) is /dev/zero.
        let made = unsafe { libc::mknod(dev.as_ptr(), libc::S_IFCHR | 0o644, libc::makedev(1, 5)) };
        assert_eq!(made, 0, "mknod (the unit tests run as root)");
        let procfs = f.procfs();
        let started = std::time::Instant::now();
        let mut d = Discovery::default();
        for (pid, exe, cmd) in [
            (1, "/usr/bin/node", "node /srv/fifo.js"),
            (2, "/usr/bin/java", "java -jar /srv/app.jar"),
            (3, "/usr/bin/node", "node /srv/zero.js"),
        ] {
            let p = f.process(pid, exe, cmd, "/");
            assert_eq!(d.examine(&procfs, &p), Discovered::default(), "{cmd}");
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn interpreter_arguments() {
        let a = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert_eq!(
            interpreter_program(&a("--import tsx ./x.ts --flag"), NODE_VALUE_OPTIONS),
            Runs::Script("./x.ts")
        );
        assert_eq!(
            interpreter_program(&a("-u -W ignore -m pkg.mod --x"), PYTHON_VALUE_OPTIONS),
            Runs::Module("pkg.mod")
        );
        assert_eq!(
            interpreter_program(&a("-e <inline> x.js"), NODE_VALUE_OPTIONS),
            Runs::Nothing
        );
    }
}
