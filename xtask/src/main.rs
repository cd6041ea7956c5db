//! Project tasks: `cargo xtask setup | build | run | test | bench`.
//!
//! `setup` makes a fresh machine of the project's kind ready (nightly rust-src, a bpf-linker built
//! against nightly's own LLVM, the Debian packages of every command the tests and the bench run,
//! listed in `packages.rs`, and the npm and PyPI packages of the test clients) and is quick when
//! everything is already there. `test` runs setup, the lints, the unit tests and the real-kernel
//! end-to-end tests, after checking that every command they run is there; `bench` checks its own.
use std::{
    env,
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};

mod bench;
mod deploy;
mod packages;
#[cfg(test)]
mod source_scan;

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need (idempotent).
    Setup,
    /// Build the eBPF object and the egress-monitor binary (object embedded).
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build, then run egress-monitor with ARGS (e.g. `cargo xtask run -- run --all`).
    Run {
        #[arg(long)]
        release: bool,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Setup, lints, unit tests and real-kernel end-to-end tests (as root).
    Test {
        /// Only run end-to-end tests whose name contains this filter.
        filter: Option<String>,
    },
    /// Measure the monitor's cost and capacity on this machine (release build, as root).
    Bench(bench::Options),
    /// UDP connect load generator used by `bench` (not for direct use).
    #[command(hide = true)]
    BenchLoad {
        target: String,
        count: u64,
        #[arg(long)]
        rate: Option<u64>,
    },
    /// `getppid()` loop used by `bench` (not for direct use): prints calls and ns per call.
    #[command(hide = true)]
    BenchSyscalls { count: u64 },
    /// Check deploy/ offline (systemd-analyze, logrotate, kubernetes-validate, the DaemonSet's
    /// security rules); part of `test`.
    #[command(hide = true)]
    CheckDeploy,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn step(msg: &str) {
    eprintln!("xtask: {msg}");
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

fn cargo_home() -> PathBuf {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env::var_os("HOME").unwrap_or_default()).join(".cargo"))
}

/// Nightly's sysroot and LLVM major version, installing nightly if it is missing.
fn nightly() -> anyhow::Result<(PathBuf, u32)> {
    let version = match output(Command::new("rustup").args(["run", "nightly", "rustc", "-vV"])) {
        Ok(v) => v,
        Err(_) => {
            step("installing the nightly toolchain");
            run(Command::new("rustup").args([
                "toolchain",
                "install",
                "nightly",
                "--profile",
                "minimal",
            ]))?;
            output(Command::new("rustup").args(["run", "nightly", "rustc", "-vV"]))?
        }
    };
    let llvm = version
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .context("`rustc +nightly -vV` does not say its LLVM version")?;
    let major: u32 = llvm
        .split('.')
        .next()
        .unwrap_or_default()
        .parse()
        .with_context(|| format!("unexpected LLVM version {llvm:?}"))?;
    let sysroot =
        output(Command::new("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"]))?;
    Ok((PathBuf::from(sysroot.trim()), major))
}

fn ensure_rust_src(sysroot: &Path) -> anyhow::Result<()> {
    if sysroot.join("lib/rustlib/src/rust/library/core").is_dir() {
        return Ok(());
    }
    step("adding rust-src to the nightly toolchain");
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

fn bpf_linker_works() -> bool {
    Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// bpf-linker linked against the LLVM shared library inside the nightly toolchain (a plain
/// `cargo install bpf-linker` wants a system LLVM this machine does not have).
fn ensure_bpf_linker(sysroot: &Path, llvm_major: u32) -> anyhow::Result<()> {
    if bpf_linker_works() {
        return Ok(());
    }
    step(&format!(
        "building bpf-linker against nightly's LLVM {llvm_major}"
    ));
    let lib = sysroot.join("lib");
    let libllvm = std::fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM") && n.contains(".so"))
        })
        .with_context(|| format!("no libLLVM*.so in {}", lib.display()))?;
    let prefix = cargo_home().join("egress-monitor-llvm");
    let prefix_lib = prefix.join("lib");
    std::fs::create_dir_all(&prefix_lib)?;
    let link = prefix_lib.join("libLLVM.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&libllvm, &link)
        .with_context(|| format!("linking {}", link.display()))?;
    run(Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--version",
            "0.13.0",
            "--force",
            "--no-default-features",
            "--features",
            &format!("llvm-{llvm_major}"),
        ])
        .env("LLVM_PREFIX", &prefix)
        .env(
            "RUSTFLAGS",
            format!("-C link-arg=-Wl,-rpath,{}", lib.display()),
        ))?;
    if !bpf_linker_works() {
        bail!(
            "bpf-linker was installed but does not run; is {} on PATH?",
            cargo_home().join("bin").display()
        );
    }
    Ok(())
}

/// The Debian packages of every command the tests and the bench run that is missing here
/// (`packages::TOOLS`), in one `apt-get install`; nothing at all when none is.
fn ensure_debian_packages() -> anyhow::Result<()> {
    let needed = |u: packages::Use| u.now();
    let mut missing = packages::missing(needed);
    if !is_root() {
        // A user's PATH often lacks the sbin directories (`ip`, `nginx`, `runuser`); root's,
        // which runs the tests and checks them again, has them.
        missing.retain(|m| !matches!(m.problem, packages::Problem::OffPath(_)));
        if missing.is_empty() {
            return Ok(());
        }
        bail!(
            "{}",
            packages::report("the end-to-end tests and the bench", &missing, false)
        );
    }
    if missing.is_empty() {
        return Ok(());
    }
    let to_install = packages::packages(&missing);
    if !to_install.is_empty() {
        packages::install(&to_install)?;
    }
    packages::require("the end-to-end tests and the bench", needed)
}

/// npm packages for the Node test clients (the official MCP SDK), from the committed lock file.
fn ensure_node_clients(root: &Path) -> anyhow::Result<()> {
    let dir = root.join("tests/clients/node");
    let stamp = dir.join("node_modules/.package-lock.json");
    let lock = dir.join("package-lock.json");
    let fresh = match (std::fs::metadata(&stamp), std::fs::metadata(&lock)) {
        (Ok(s), Ok(l)) => s.modified()? >= l.modified()?,
        _ => false,
    };
    if fresh {
        return Ok(());
    }
    step("installing the Node test clients' packages (npm ci)");
    run(Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir))
}

/// Tracepoints need tracefs; a fresh machine does not mount it.
fn mount_tracefs() -> anyhow::Result<()> {
    if Path::new("/sys/kernel/tracing/events").is_dir() {
        return Ok(());
    }
    step("mounting tracefs at /sys/kernel/tracing");
    run(Command::new("mount").args(["-t", "tracefs", "tracefs", "/sys/kernel/tracing"]))
}

/// PyPI packages for the Python test clients, each set in a virtualenv next to its
/// requirements: `python` (HTTP clients) and `python-mcp` (the official MCP SDK; its own venv,
/// because a venv with `mcp` installed makes every Python in it an MCP server to the monitor).
fn ensure_python_clients(root: &Path) -> anyhow::Result<()> {
    for name in ["python", "python-mcp"] {
        let dir = root.join("tests/clients").join(name);
        let requirements = std::fs::read_to_string(dir.join("requirements.txt"))?;
        let venv = dir.join(".venv");
        let stamp = venv.join("installed-requirements.txt");
        if std::fs::read_to_string(&stamp).is_ok_and(|s| s == requirements) {
            continue;
        }
        step(&format!(
            "installing the Python test clients' packages (venv + pip): tests/clients/{name}"
        ));
        if !venv.join("bin/python3").exists() {
            run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
        }
        run(Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(dir.join("requirements.txt")))?;
        std::fs::write(stamp, requirements)?;
    }
    Ok(())
}

fn setup(root: &Path, for_tests: bool) -> anyhow::Result<()> {
    let (sysroot, llvm_major) = nightly()?;
    ensure_rust_src(&sysroot)?;
    ensure_bpf_linker(&sysroot, llvm_major)?;
    if for_tests {
        ensure_debian_packages()?;
        ensure_node_clients(root)?;
        ensure_python_clients(root)?;
    }
    Ok(())
}

fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root);
    cmd
}

fn build(root: &Path, release: bool) -> anyhow::Result<PathBuf> {
    let mut cmd = cargo(root);
    cmd.args(["build", "--package", "monitor", "--bin", "egress-monitor"]);
    if release {
        cmd.arg("--release");
    }
    run(&mut cmd)?;
    // Where cargo put it: `CARGO_TARGET_DIR` (relative to the workspace, where cargo ran) or
    // `target/`.
    let target =
        env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |d| root.join(d));
    Ok(target
        .join(if release { "release" } else { "debug" })
        .join("egress-monitor"))
}

fn test(root: &Path, filter: Option<String>) -> anyhow::Result<()> {
    if !is_root() {
        bail!(
            "the real-kernel tests load eBPF programs and create network namespaces: run as root"
        );
    }
    setup(root, true)?;
    mount_tracefs()?;
    step("cargo fmt --check");
    run(cargo(root).args(["fmt", "--all", "--check"]))?;
    step("cargo clippy -D warnings");
    run(cargo(root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    deploy::check(root)?;
    step("unit tests");
    run(cargo(root).args(["test", "--workspace", "--exclude", "egress-monitor-tests"]))?;
    let bin = build(root, false)?;
    packages::require("the end-to-end tests", packages::Use::tests)?;
    step("real-kernel end-to-end tests");
    let mut cmd = cargo(root);
    cmd.args(["test", "--package", "egress-monitor-tests", "--"])
        .args(filter)
        .args(["--test-threads=1"])
        .env("EGRESS_MONITOR_BIN", &bin);
    run(&mut cmd)
}

fn main() -> anyhow::Result<()> {
    let root = workspace_root();
    match Cli::parse().task {
        Task::Setup => setup(&root, true),
        Task::Build { release } => {
            setup(&root, false)?;
            let bin = build(&root, release)?;
            step(&format!("built {}", bin.display()));
            Ok(())
        }
        Task::Run { release, args } => {
            setup(&root, false)?;
            let bin = build(&root, release)?;
            let status = Command::new(&bin)
                .args(&args)
                .status()
                .with_context(|| format!("starting {}", bin.display()))?;
            std::process::exit(status.code().unwrap_or(1));
        }
        Task::Test { filter } => test(&root, filter),
        Task::Bench(opts) => {
            if !is_root() {
                bail!("the benchmark loads eBPF programs and creates a network namespace: run as root");
            }
            packages::require("the bench", packages::Use::bench)?;
            let bin = match &opts.bin {
                Some(bin) => std::path::absolute(bin)?,
                None => {
                    setup(&root, false)?;
                    build(&root, true)?
                }
            };
            bench::run(&root, &bin, &env::current_exe()?, &opts)
        }
        Task::BenchLoad {
            target,
            count,
            rate,
        } => bench::load(&target, count, rate),
        Task::BenchSyscalls { count } => bench::syscalls(count),
        Task::CheckDeploy => deploy::check(&root),
    }
}
