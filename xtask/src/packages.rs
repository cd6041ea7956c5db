//! The external commands the end-to-end tests and the bench run, the Debian package that provides
//! each, and the check that they are all there.
//!
//! `cargo xtask setup` installs the packages of whatever is missing ([`missing`] then
//! [`install`]); `test` and `bench` call [`require`] first, so a missing `redis-server` is
//! reported by name, with the `apt-get` command that fixes it, instead of as a test that "did not
//! start". A unit test (`source_scan`) reads the test sources and fails when they run a command
//! this table does not list.
//!
//! ```text
//! Error: commands needed by the end-to-end tests are not available:
//!   mysql         (package mariadb-client)
//!   redis-server  (package redis-server)
//! install them with: apt-get install -y --no-install-recommends mariadb-client redis-server
//! (`cargo xtask setup` as root does it)
//! ```
use std::{
    env,
    fmt::Write as _,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _};

/// Who runs a command; decides whether `setup` installs it and who checks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// The end-to-end tests, their clients or `setup` itself for the test clients.
    Tests,
    /// `cargo xtask bench` only.
    Bench,
    /// Both (the test harness's network namespaces and certificates serve the bench too).
    Both,
    /// Upcoming tests: listed so the package is known, not installed yet (it costs CI time).
    Later,
}

impl Use {
    pub fn tests(self) -> bool {
        matches!(self, Use::Tests | Use::Both)
    }

    pub fn bench(self) -> bool {
        matches!(self, Use::Bench | Use::Both)
    }

    /// `setup` installs it.
    pub fn now(self) -> bool {
        self != Use::Later
    }
}

/// How to tell that a tool is there.
#[derive(Clone, Copy, Debug)]
pub enum Probe {
    /// An executable on PATH (what `Command::new` and `sh -c` find).
    Path,
    /// A PostgreSQL server binary of this name in the newest `/usr/lib/postgresql/<major>/bin`,
    /// where `tests/src/lib.rs` `postgres_bin()` looks (Debian keeps them off PATH; the client
    /// packages create that directory too, with `psql` but no server).
    PostgresServer,
    /// A file (for packages that provide no command).
    File(&'static str),
}

pub struct Tool {
    /// The command as the sources run it (or the file, for [`Probe::File`]).
    pub name: &'static str,
    pub probe: Probe,
    /// The Debian packages that provide it.
    pub packages: &'static [&'static str],
    pub used_by: Use,
}

const fn tool(name: &'static str, packages: &'static [&'static str], used_by: Use) -> Tool {
    Tool {
        name,
        probe: Probe::Path,
        packages,
        used_by,
    }
}

/// Every external command the end-to-end tests (`tests/`), their client scripts
/// (`tests/clients/`) and the bench (`xtask/src/bench.rs`) run, with its Debian package.
/// `source_scan`'s unit test keeps this in step with the sources.
pub const TOOLS: &[Tool] = &[
    // The test harness: network namespaces, veth pairs, cleanup (tests/src/lib.rs).
    tool("sh", &["dash"], Use::Both),
    tool("ip", &["iproute2"], Use::Both),
    tool("xargs", &["findutils"], Use::Both),
    // `ip netns pids NS | xargs -r kill -9` needs the program, not the shell builtin.
    tool("kill", &["procps"], Use::Both),
    tool("openssl", &["openssl"], Use::Both),
    Tool {
        name: "/etc/ssl/certs/ca-certificates.crt",
        probe: Probe::File("/etc/ssl/certs/ca-certificates.crt"),
        packages: &["ca-certificates"],
        used_by: Use::Tests,
    },
    // Clients.
    tool("curl", &["curl"], Use::Tests),
    // `python3 -m venv` (setup) needs python3-venv with Debian's Python (pyenv's has it).
    tool("python3", &["python3", "python3-venv"], Use::Both),
    // Node may come from NodeSource, whose `nodejs` bundles npm and conflicts with Debian's
    // `npm`: only what is really absent gets installed.
    tool("node", &["nodejs"], Use::Both),
    tool("npm", &["npm"], Use::Tests),
    tool("psql", &["postgresql-client"], Use::Tests),
    tool("redis-cli", &["redis-tools"], Use::Tests),
    tool("mysql", &["mariadb-client"], Use::Tests),
    // Servers (started by the tests themselves, on their own ports and directories).
    tool("redis-server", &["redis-server"], Use::Tests),
    Tool {
        name: "postgres",
        probe: Probe::PostgresServer,
        packages: &["postgresql"],
        used_by: Use::Tests,
    },
    Tool {
        name: "initdb",
        probe: Probe::PostgresServer,
        packages: &["postgresql"],
        used_by: Use::Tests,
    },
    tool("runuser", &["util-linux"], Use::Tests),
    tool("chown", &["coreutils"], Use::Tests),
    tool("chmod", &["coreutils"], Use::Tests),
    // Go programs the tests build from the standard library (offline: GOPROXY=off).
    tool("go", &["golang-go"], Use::Tests),
    // `cargo xtask check-deploy` (part of `test`): the systemd unit and logrotate snippet.
    tool("systemd-analyze", &["systemd"], Use::Tests),
    tool("logrotate", &["logrotate"], Use::Tests),
    // The bench's servers and load generators.
    tool("nginx", &["nginx"], Use::Bench),
    tool("wrk", &["wrk"], Use::Bench),
    // Upcoming tests (least privilege, metrics, screenshots, unit checks, Go TLS, containers).
    tool("setpriv", &["util-linux"], Use::Tests),
    tool("capsh", &["libcap2-bin"], Use::Later),
    // The metrics test scrapes the agent with a real Prometheus and lints it with promtool.
    tool("promtool", &["prometheus"], Use::Tests),
    tool("prometheus", &["prometheus"], Use::Tests),
    // The report test loads the HTML report in a real headless browser.
    tool("chromium", &["chromium"], Use::Tests),
    tool("podman", &["podman"], Use::Later),
];

#[cfg(test)]
pub fn find(name: &str) -> Option<&'static Tool> {
    TOOLS.iter().find(|t| t.name == name)
}

/// Why a tool cannot be used as it is.
#[derive(Debug, PartialEq, Eq)]
pub enum Problem {
    /// Not installed: these packages provide it.
    Missing(Vec<String>),
    /// Installed, but its directory is not on PATH.
    OffPath(PathBuf),
    /// A PostgreSQL server is installed, but not for the newest major version in
    /// /usr/lib/postgresql (the one the tests use, since a client package made it).
    PostgresMajor { newest: u32, package: String },
}

pub struct Missing {
    pub name: &'static str,
    pub problem: Problem,
}

/// Directories root's PATH normally has: a command found there but not on PATH is installed.
const SYSTEM_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

fn executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The program `Command::new(name)` would run (the shell's builtins do not count: `xargs kill`
/// needs the program).
pub fn on_path(name: &str) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|p| executable(p))
}

/// Major versions in /usr/lib/postgresql, newest last.
fn postgres_majors() -> Vec<u32> {
    let mut majors: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    majors.sort_unstable();
    majors
}

fn problem(tool: &Tool) -> Option<Problem> {
    let packages = || Problem::Missing(tool.packages.iter().map(|p| p.to_string()).collect());
    match tool.probe {
        Probe::Path => {
            if on_path(tool.name).is_some() {
                return None;
            }
            Some(
                SYSTEM_DIRS
                    .iter()
                    .map(|d| Path::new(d).join(tool.name))
                    .find(|p| executable(p))
                    .map_or_else(packages, Problem::OffPath),
            )
        }
        Probe::File(path) => (!Path::new(path).exists()).then(packages),
        Probe::PostgresServer => {
            let majors = postgres_majors();
            let has = |major: &u32| {
                executable(&Path::new(&format!("/usr/lib/postgresql/{major}/bin")).join(tool.name))
            };
            match majors.last() {
                Some(newest) if has(newest) => None,
                Some(&newest) if majors.iter().any(has) => Some(Problem::PostgresMajor {
                    newest,
                    package: format!("postgresql-{newest}"),
                }),
                _ => Some(packages()),
            }
        }
    }
}

/// The tools selected by `wanted` that are not usable, in table order.
pub fn missing(wanted: impl Fn(Use) -> bool) -> Vec<Missing> {
    TOOLS
        .iter()
        .filter(|t| wanted(t.used_by))
        .filter_map(|t| {
            Some(Missing {
                name: t.name,
                problem: problem(t)?,
            })
        })
        .collect()
}

/// The packages to install for `missing`, each once, in table order.
pub fn packages(missing: &[Missing]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for m in missing {
        let names = match &m.problem {
            Problem::Missing(p) => p.clone(),
            Problem::PostgresMajor { package, .. } => vec![package.clone()],
            Problem::OffPath(_) => Vec::new(),
        };
        for name in names {
            if !out.contains(&name) {
                out.push(name);
            }
        }
    }
    out
}

pub fn apt_get_install(packages: &[String], root: bool) -> String {
    format!(
        "{}apt-get install -y --no-install-recommends {}",
        if root { "" } else { "sudo " },
        packages.join(" ")
    )
}

/// One message naming every missing command, its package and the command that installs them.
pub fn report(who: &str, missing: &[Missing], root: bool) -> String {
    let width = missing.iter().map(|m| m.name.len()).max().unwrap_or(0);
    let mut out = format!("commands needed by {who} are not available:\n");
    for m in missing {
        let what = match &m.problem {
            Problem::Missing(p) => format!("(package {})", p.join(", ")),
            Problem::OffPath(path) => format!(
                "installed at {} but {} is not on PATH",
                path.display(),
                path.parent().unwrap_or(Path::new("/")).display()
            ),
            Problem::PostgresMajor { newest, package } => format!(
                "(package {package}: the tests use the newest major version in \
                 /usr/lib/postgresql, {newest}, which has no server)"
            ),
        };
        let _ = writeln!(out, "  {:<width$}  {what}", m.name);
    }
    let packages = packages(missing);
    if !packages.is_empty() {
        let _ = write!(
            out,
            "install them with: {}\n(`cargo xtask setup` as root does it)",
            apt_get_install(&packages, root)
        );
    }
    out.trim_end().to_string()
}

/// Fail with [`report`] unless every tool `wanted` selects is there.
pub fn require(who: &str, wanted: impl Fn(Use) -> bool) -> anyhow::Result<()> {
    let missing = missing(wanted);
    if missing.is_empty() {
        return Ok(());
    }
    bail!("{}", report(who, &missing, crate::is_root()))
}

/// Packages must not start their services while `setup` installs them: the tests start their
/// own servers, and machines without systemd may not start them at all. Debian's mechanism is
/// `/usr/sbin/policy-rc.d` exiting 101; one already there (container images have one) is left
/// alone.
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";
const POLICY_MARK: &str = "# egress-monitor xtask: no service starts during setup";

/// Debian's postgresql creates (and starts) a `main` cluster on first install; the tests make
/// their own in a temporary directory, so skip it (postgresql-common reads this directory from
/// createcluster.conf's `include_dir`).
const CREATECLUSTER_D: &str = "/etc/postgresql-common/createcluster.d";
const CREATECLUSTER_DROP_IN: &str =
    "/etc/postgresql-common/createcluster.d/egress-monitor-xtask.conf";

/// Files written for the time of one `apt-get install`, removed when it ends (even on error).
struct Temporary(Vec<PathBuf>);

impl Temporary {
    fn write(&mut self, path: &str, text: &str, mode: u32) -> anyhow::Result<()> {
        let path = PathBuf::from(path);
        if let Some(dir) = path.parent() {
            if !dir.exists() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                self.0.push(dir.to_path_buf());
            }
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
        self.0.push(path);
        Ok(())
    }
}

impl Drop for Temporary {
    fn drop(&mut self) {
        for path in self.0.drain(..).rev() {
            let _ = if path.is_dir() {
                std::fs::remove_dir(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
}

/// What an interrupted setup left behind (a policy-rc.d would stop every later install from
/// starting its service): remove ours, never anyone else's.
fn remove_leftovers() {
    if std::fs::read_to_string(POLICY_RC_D).is_ok_and(|s| s.contains(POLICY_MARK)) {
        let _ = std::fs::remove_file(POLICY_RC_D);
    }
    if std::fs::read_to_string(CREATECLUSTER_DROP_IN).is_ok() {
        let _ = std::fs::remove_file(CREATECLUSTER_DROP_IN);
        let _ = std::fs::remove_dir(CREATECLUSTER_D);
    }
}

/// One `apt-get update` and one `apt-get install` for `packages` (as root).
pub fn install(packages: &[String]) -> anyhow::Result<()> {
    remove_leftovers();
    let mut temporary = Temporary(Vec::new());
    if !Path::new(POLICY_RC_D).exists() {
        temporary.write(
            POLICY_RC_D,
            &format!("#!/bin/sh\n{POLICY_MARK} (removed when it ends)\nexit 101\n"),
            0o755,
        )?;
    }
    if packages.iter().any(|p| p.starts_with("postgresql")) {
        temporary.write(
            CREATECLUSTER_DROP_IN,
            "# egress-monitor xtask: the tests create their own PostgreSQL clusters\n\
             create_main_cluster = false\n",
            0o644,
        )?;
    }
    crate::step(&format!(
        "installing Debian packages: {}",
        packages.join(" ")
    ));
    crate::run(
        Command::new("apt-get")
            .args(["update", "-q"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    crate::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_command_is_listed_once_with_a_package() {
        for (i, t) in TOOLS.iter().enumerate() {
            assert!(!t.packages.is_empty(), "{} has no package", t.name);
            assert!(
                TOOLS[..i].iter().all(|u| u.name != t.name),
                "{} is listed twice",
                t.name
            );
        }
    }

    #[test]
    fn setup_does_not_install_what_only_upcoming_tests_need() {
        let now: Vec<&str> = TOOLS
            .iter()
            .filter(|t| t.used_by.now())
            .flat_map(|t| t.packages.iter().copied())
            .collect();
        // Podman (110 MB installed) has no test yet.
        assert!(
            !now.contains(&"podman"),
            "podman would be installed by setup"
        );
        for needed in [
            "golang-go",
            "redis-server",
            "redis-tools",
            "postgresql",
            "mariadb-client",
            "nginx",
            "wrk",
            "prometheus",
            "systemd",
            "logrotate",
            "chromium",
        ] {
            assert!(now.contains(&needed), "{needed} would not be installed");
        }
    }

    #[test]
    fn the_report_names_each_command_its_package_and_the_install_command() {
        let missing = [
            Missing {
                name: "redis-server",
                problem: Problem::Missing(vec!["redis-server".into()]),
            },
            Missing {
                name: "postgres",
                problem: Problem::Missing(vec!["postgresql".into()]),
            },
            Missing {
                name: "initdb",
                problem: Problem::Missing(vec!["postgresql".into()]),
            },
            Missing {
                name: "ip",
                problem: Problem::OffPath(PathBuf::from("/usr/sbin/ip")),
            },
        ];
        let text = report("the end-to-end tests", &missing, true);
        assert!(
            text.starts_with("commands needed by the end-to-end tests are not available:\n"),
            "{text}"
        );
        assert!(
            text.contains("  redis-server  (package redis-server)\n"),
            "{text}"
        );
        assert!(
            text.contains("  postgres      (package postgresql)\n"),
            "{text}"
        );
        assert!(text.contains("/usr/sbin is not on PATH"), "{text}");
        assert!(
            text.contains("apt-get install -y --no-install-recommends redis-server postgresql\n"),
            "{text}"
        );
        assert!(report("x", &missing, false).contains("sudo apt-get install"));
    }

    #[test]
    fn a_client_only_postgres_major_asks_for_its_server() {
        let missing = [Missing {
            name: "postgres",
            problem: Problem::PostgresMajor {
                newest: 17,
                package: "postgresql-17".into(),
            },
        }];
        assert_eq!(packages(&missing), ["postgresql-17"]);
    }

    #[test]
    fn commands_on_path_are_found_and_builtins_are_not() {
        assert!(on_path("sh").is_some());
        assert!(on_path("egress-monitor-no-such-command").is_none());
    }
}
