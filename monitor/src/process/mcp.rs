//! Which processes are MCP servers. What a program is built from decides first (see
//! [`super::discover`]: its package manifest, imports, build information, class path); then its
//! name; then the user's patterns.
//!
//! The name heuristics, all applied to the *program names* of a command line (the executable, `argv[0]`
//! and, for interpreters and package runners, the script, module or package they run), never to
//! arbitrary arguments, so `vim mcp.txt` is not an MCP server:
//!
//! 1. an official SDK server package: `@modelcontextprotocol/...` anywhere in the name or path;
//! 2. `mcp-server-*` / `mcp_server_*` packages and modules, and `*-mcp-server` binaries;
//! 3. `mcp` as a word of the name (`mcp`, `mcp-proxy`, `context7-mcp`, `McpServer.js`,
//!    `@playwright/mcp`, `docker-mcp`, the Python SDK's `mcp run server.py`), and for a
//!    script, as a word of a directory it sits in (`/srv/mcp/weather/index.js`);
//! 4. well-known MCP runners whose names do not say so: `fastmcp`, `supergateway`;
//! 5. user patterns (`--mcp-pattern REGEX`), matched against the whole command line.
use regex::Regex;

use super::ProcessInfo;

/// Interpreters and package runners: the program they run is the first non-option argument
/// (after a sub-command such as `exec`, `run`, `dlx`), or the value of `-m` / `-jar`.
const LAUNCHERS: &[&str] = &[
    "node", "nodejs", "deno", "bun", "bunx", "tsx", "ts-node", "npx", "npm", "pnpm", "pnpx",
    "yarn", "python", "pypy", "pypy3", "uv", "uvx", "pipx", "poetry", "java", "ruby", "php",
    "dotnet", "go",
];
const SUBCOMMANDS: &[&str] = &["exec", "run", "x", "dlx", "tool", "start"];
/// Options whose value is itself the program (`python -m mod`, `java -jar x.jar`, `npx -p pkg`).
const PROGRAM_OPTIONS: &[&str] = &["-m", "-jar", "-p", "--package", "--from", "--with"];
const KNOWN_RUNNERS: &[&str] = &["fastmcp", "supergateway"];
const SCRIPT_EXTENSIONS: &[&str] = &[
    ".js", ".mjs", ".cjs", ".ts", ".mts", ".py", ".pyz", ".jar", ".rb", ".php", ".exe", ".dll",
];

#[derive(Debug, Default)]
pub struct McpMatcher {
    patterns: Vec<Regex>,
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn is_launcher(name: &str) -> bool {
    let name = basename(name);
    // python3, python3.11, node20 ...
    let stem = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    LAUNCHERS.contains(&name) || LAUNCHERS.contains(&stem)
}

/// Split a name into lower-case words at separators and camelCase boundaries.
fn words(name: &str) -> impl Iterator<Item = String> + '_ {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .flat_map(|part| {
            let chars: Vec<char> = part.chars().collect();
            let mut out = Vec::new();
            let mut start = 0;
            for i in 1..chars.len() {
                let (prev, cur) = (chars[i - 1], chars[i]);
                let next_lower = chars.get(i + 1).is_some_and(|c| c.is_ascii_lowercase());
                // fooBar | FOOBar -> FOO Bar | foo2Bar
                if cur.is_ascii_uppercase()
                    && (prev.is_ascii_lowercase()
                        || prev.is_ascii_digit()
                        || (prev.is_ascii_uppercase() && next_lower))
                {
                    out.push(
                        chars[start..i]
                            .iter()
                            .collect::<String>()
                            .to_ascii_lowercase(),
                    );
                    start = i;
                }
            }
            if start < chars.len() {
                out.push(
                    chars[start..]
                        .iter()
                        .collect::<String>()
                        .to_ascii_lowercase(),
                );
            }
            out
        })
}

fn strip_extension(name: &str) -> &str {
    SCRIPT_EXTENSIONS
        .iter()
        .find_map(|ext| name.strip_suffix(ext))
        .unwrap_or(name)
}

/// Strip an npm version (`pkg@1.2.3`, `@scope/pkg@latest`) or a Python extra (`mcp[cli]`).
fn strip_version(spec: &str) -> &str {
    let spec = spec.split('[').next().unwrap_or(spec);
    let last = spec.rfind('/').map_or(0, |slash| slash + 1);
    match spec[last..].rfind('@') {
        Some(at) if last + at > 0 => &spec[..last + at],
        _ => spec,
    }
}

/// Why a program name looks like an MCP server, if it does.
fn name_reason(name: &str, whole_path: bool) -> Option<String> {
    if name.contains("@modelcontextprotocol/") {
        return Some(format!("runs an official MCP SDK server package ({name})"));
    }
    let spec = strip_version(name);
    let base = strip_extension(basename(spec));
    let lower = base.to_ascii_lowercase();
    if lower.starts_with("mcp-server")
        || lower.starts_with("mcp_server")
        || lower.ends_with("-mcp-server")
    {
        return Some(format!("runs an mcp-server package or binary ({base})"));
    }
    if KNOWN_RUNNERS.contains(&lower.as_str()) {
        return Some(format!("runs the MCP runner {base}"));
    }
    if words(base).any(|w| w == "mcp") {
        return Some(format!("`mcp` is a word of the program name ({base})"));
    }
    // `@playwright/mcp`: the package is the last path component after the scope.
    if spec.starts_with('@') && words(spec).any(|w| w == "mcp") {
        return Some(format!("`mcp` is a word of the package name ({spec})"));
    }
    if whole_path {
        let dirs = spec.rsplit('/').skip(1);
        for dir in dirs {
            let dlow = dir.to_ascii_lowercase();
            if dlow.starts_with("mcp-server")
                || dlow.starts_with("mcp_server")
                || words(dir).any(|w| w == "mcp")
            {
                return Some(format!("the script lives in an MCP directory ({dir}/)"));
            }
        }
    }
    None
}

impl McpMatcher {
    pub fn new(patterns: &[String]) -> anyhow::Result<Self> {
        let patterns = patterns
            .iter()
            .map(|p| {
                Regex::new(p)
                    .map_err(|e| anyhow::anyhow!("--mcp-pattern {p:?} is not a valid regex: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { patterns })
    }

    /// Why this process is an MCP server, or `None`: what it is built from, else its name, else
    /// a user pattern; with the MCP host that started it, when one did.
    pub fn reason(&self, info: &ProcessInfo) -> Option<String> {
        let reason = info
            .discovered
            .built_from
            .clone()
            .or_else(|| self.by_name(info.exe.as_deref(), &info.cmdline))?;
        Some(match &info.discovered.host {
            Some(host) => format!("{reason}; {host}"),
            None => reason,
        })
    }

    /// Why this process's names look like an MCP server's, or `None`.
    pub fn by_name(&self, exe: Option<&str>, cmdline: &[String]) -> Option<String> {
        if let Some(reason) = exe.and_then(|e| name_reason(basename(e), false)) {
            return Some(reason);
        }
        if let Some(argv0) = cmdline.first() {
            if let Some(reason) = name_reason(basename(argv0), false) {
                return Some(reason);
            }
            let launcher = is_launcher(argv0) || exe.is_some_and(is_launcher);
            if launcher {
                for program in launched_programs(&cmdline[1..]) {
                    if let Some(reason) = name_reason(program, true) {
                        return Some(reason);
                    }
                }
            }
        }
        if !self.patterns.is_empty() {
            let joined = cmdline.join(" ");
            if let Some(p) = self.patterns.iter().find(|p| p.is_match(&joined)) {
                return Some(format!("command line matches --mcp-pattern {}", p.as_str()));
            }
        }
        None
    }
}

/// The programs an interpreter or package runner runs: values of `-m`/`-jar`/`-p`, and the first
/// positional argument that is not a sub-command.
fn launched_programs(args: &[String]) -> Vec<&str> {
    let mut programs = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if PROGRAM_OPTIONS.contains(&arg.as_str()) {
            if let Some(value) = iter.next() {
                programs.push(value.as_str());
            }
            continue;
        }
        if let Some((opt, value)) = arg.split_once('=') {
            if PROGRAM_OPTIONS.contains(&opt) {
                programs.push(value);
                continue;
            }
        }
        if arg.starts_with('-') || SUBCOMMANDS.contains(&arg.as_str()) {
            continue;
        }
        programs.push(arg.as_str());
        break;
    }
    programs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn matches(exe: &str, cmd: &str) -> bool {
        McpMatcher::default()
            .by_name(Some(exe), &argv(cmd))
            .is_some()
    }

    #[test]
    fn official_sdk_servers() {
        assert!(matches(
            "/usr/bin/node",
            "npm exec @modelcontextprotocol/server-filesystem /tmp"
        ));
        assert!(matches(
            "/usr/bin/node",
            "npx -y @modelcontextprotocol/server-github"
        ));
        assert!(matches(
            "/usr/bin/node",
            "node /usr/lib/node_modules/@modelcontextprotocol/server-memory/dist/index.js"
        ));
        assert!(matches(
            "/usr/bin/node",
            "node /root/.npm/_npx/1a2b/node_modules/.bin/mcp-server-filesystem /srv"
        ));
    }

    #[test]
    fn python_servers() {
        assert!(matches(
            "/usr/bin/python3.11",
            "/root/.cache/uv/x/bin/python /root/.cache/uv/x/bin/mcp-server-fetch"
        ));
        assert!(matches(
            "/usr/bin/python3.11",
            "python3 -m mcp_server_git --repository ."
        ));
        assert!(matches("/usr/bin/python3.11", "python3 -m mcp_server_time"));
        assert!(matches(
            "/usr/local/bin/mcp",
            "/usr/local/bin/mcp run server.py"
        ));
        assert!(matches(
            "/usr/bin/python3.11",
            "/usr/bin/python3 /usr/local/bin/fastmcp run server.py:mcp"
        ));
        assert!(matches(
            "/usr/bin/python3.11",
            "uvx awslabs.aws-documentation-mcp-server@latest"
        ));
        assert!(matches(
            "/usr/bin/python3.11",
            "python3 /srv/weather_mcp.py"
        ));
    }

    #[test]
    fn other_servers_and_bridges() {
        assert!(matches(
            "/server/github-mcp-server",
            "/server/github-mcp-server stdio"
        ));
        assert!(matches("/usr/bin/node", "npx -y @playwright/mcp@latest"));
        assert!(matches("/usr/bin/node", "npx -y @upstash/context7-mcp"));
        assert!(matches(
            "/usr/bin/node",
            "npx mcp-remote https://example.invalid/sse"
        ));
        assert!(matches("/usr/bin/node", "node build/McpServer.js"));
        assert!(matches("/usr/bin/node", "node /srv/mcp/weather/index.js"));
        assert!(matches(
            "/usr/lib/docker/cli-plugins/docker-mcp",
            "docker-mcp gateway run"
        ));
        assert!(matches(
            "/usr/bin/java",
            "java -jar /opt/weather-mcp-server-0.1.jar"
        ));
        assert!(matches(
            "/usr/bin/node",
            "node /usr/bin/supergateway --stdio x"
        ));
    }

    #[test]
    fn ordinary_processes_are_not_servers() {
        assert!(!matches("/usr/bin/vim", "vim mcp.txt"));
        assert!(!matches("/usr/bin/grep", "grep -r mcp-server-foo /var/log"));
        assert!(!matches("/usr/bin/cat", "cat /tmp/mcp/notes"));
        assert!(!matches("/usr/bin/node", "node server.js --name mcp"));
        assert!(!matches(
            "/usr/bin/python3.11",
            "python3 -m http.server 8000"
        ));
        assert!(!matches(
            "/usr/bin/curl",
            "curl https://mcp.example.invalid/"
        ));
        assert!(!matches("/usr/bin/python3.11", "python3 /srv/mcpeople.py"));
        assert!(!matches("/usr/sbin/nginx", "nginx: worker process"));
        assert!(McpMatcher::default().by_name(None, &[]).is_none());
    }

    #[test]
    fn user_patterns_extend_the_heuristics() {
        let m = McpMatcher::new(&["^python3 .*/tools/agent_bridge\\.py".into()]).unwrap();
        assert!(m
            .by_name(
                Some("/usr/bin/python3.11"),
                &argv("python3 /opt/tools/agent_bridge.py")
            )
            .is_some());
        assert!(m
            .by_name(
                Some("/usr/bin/python3.11"),
                &argv("python3 /opt/tools/other.py")
            )
            .is_none());
        assert!(McpMatcher::new(&["(".into()]).is_err());
    }

    #[test]
    fn what_a_program_is_built_from_comes_first() {
        let mut info = ProcessInfo {
            exe: Some("/usr/bin/node".into()),
            cmdline: argv("node /srv/mcp/weather/index.js"),
            ..Default::default()
        };
        let m = McpMatcher::default();
        assert!(m.reason(&info).unwrap().contains("MCP directory"));
        info.discovered.built_from = Some("package.json lists fastmcp".into());
        assert_eq!(m.reason(&info).unwrap(), "package.json lists fastmcp");
        info.discovered.host = Some("started by claude".into());
        assert_eq!(
            m.reason(&info).unwrap(),
            "package.json lists fastmcp; started by claude"
        );
        // The host alone is a candidate, not a reason.
        info.discovered.built_from = None;
        info.cmdline = argv("node /srv/app/index.js");
        assert_eq!(m.reason(&info), None);
    }

    #[test]
    fn versions_and_scopes() {
        assert_eq!(strip_version("@playwright/mcp@latest"), "@playwright/mcp");
        assert_eq!(strip_version("mcp-server-fetch@1.2"), "mcp-server-fetch");
        assert_eq!(strip_version("mcp[cli]"), "mcp");
        assert_eq!(
            strip_version("/x/node_modules/@scope/pkg/index.js"),
            "/x/node_modules/@scope/pkg/index.js"
        );
    }

    #[test]
    fn word_splitting() {
        let w: Vec<String> = words("MCPServer-foo_barBaz2Qux").collect();
        assert_eq!(w, ["mcp", "server", "foo", "bar", "baz2", "qux"]);
    }
}
