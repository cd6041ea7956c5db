//! The `egress-monitor` command line. Everything else lives in the `monitor` library.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use monitor::{doctor, output::Format, process, process::targets::Selector, run};

#[derive(Parser)]
#[command(
    name = "egress-monitor",
    version,
    about = "eBPF runtime egress monitor for MCP servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Watch processes and stream events, findings and status lines.
    Run(Box<RunCli>),
    /// Check what this kernel and machine support, and what will and won't work.
    Doctor {
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Also treat processes whose command line matches REGEX as MCP servers (as `run`).
        #[arg(long, value_name = "REGEX")]
        mcp_pattern: Vec<String>,
    },
    /// Turn a run's JSON lines (or a recording) into a report for a person: a self-contained
    /// HTML page or Markdown. A malformed line stops it with an error naming the line.
    Report {
        /// JSON lines as `run` writes them, or a recording (`-`: standard input).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Write the report to OUT (created 0600, replaced whole) instead of standard output.
        #[arg(short = 'o', long = "output", value_name = "OUT")]
        output: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "html")]
        format: monitor::report::ReportFormat,
    },
    /// Suggest a `[[pins]]` block for every upstream whose TLS handshakes verified cleanly in
    /// a run (its JSON lines or a recording), for `--config`.
    Pins {
        /// JSON lines as `run` writes them, or a recording (`-`: standard input).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Write the block to OUT (created 0600, replaced whole) instead of standard output.
        #[arg(short = 'o', long = "output", value_name = "OUT")]
        output: Option<PathBuf>,
    },
    /// Run a recording (`run --record`) through the analysis again: the findings of the run
    /// that wrote it, judged with this configuration (pins, suppressions, auth hosts).
    Replay {
        /// A recording written by `run --record`.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Output format (default: text on a terminal, JSON lines otherwise).
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Write to OUT instead of standard output.
        #[arg(short = 'o', long = "output", value_name = "OUT")]
        output: Option<PathBuf>,
        /// Deployment settings (TOML), as for `run`.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Write a synthetic recording of N inputs (for `cargo xtask bench`).
    #[command(hide = true)]
    SyntheticRecording {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[arg(long, default_value_t = 10_000_000)]
        inputs: u64,
    },
}

#[derive(Args)]
#[group(id = "mode", multiple = false)]
struct Mode {
    /// Watch MCP servers, found by their command lines (the default).
    #[arg(long, group = "mode")]
    mcp: bool,
    /// Watch every process.
    #[arg(long, group = "mode")]
    all: bool,
    /// Watch these processes (and their children).
    #[arg(long, num_args = 1.., value_name = "PID", group = "mode")]
    pid: Vec<u32>,
    /// Watch processes with this name (task name or executable name).
    #[arg(long, num_args = 1.., value_name = "NAME", group = "mode")]
    comm: Vec<String>,
    /// Watch processes in this cgroup and below it (a path under a cgroup mount, or relative
    /// to the cgroup root).
    #[arg(long, num_args = 1.., value_name = "PATH", group = "mode")]
    cgroup: Vec<String>,
}

#[derive(Args)]
struct RunCli {
    #[command(flatten)]
    mode: Mode,
    /// Also treat processes whose command line matches REGEX as MCP servers.
    #[arg(long, value_name = "REGEX")]
    mcp_pattern: Vec<String>,
    /// Output format (default: text on a terminal, JSON lines otherwise).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Append output to FILE instead of standard output (JSON lines by default).
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Deployment settings (TOML): extra trusted CAs, API-key headers, auth hosts, the
    /// fingerprint key.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Report connects to loopback addresses too.
    #[arg(long)]
    include_loopback: bool,
    /// Stop after SECONDS (fractions allowed).
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    duration: Option<Duration>,
    /// Kernel-side diagnostics through aya-log (off by default; costs nothing when off).
    #[arg(long, value_name = "LEVEL", value_parser = ["error", "warn", "info", "debug", "trace"])]
    ebpf_log: Option<String>,
    /// Kernel map sizes, e.g. `sockets=16,threads=4` (targets, sockets, threads, tls, ringbuf).
    #[arg(long, value_name = "NAME=ENTRIES,...", hide = true)]
    map_sizes: Option<String>,
    /// Use the syscall tracepoints for connects and payloads even where the cgroup hooks work
    /// (the fallback data path; every thread of the host pays the syscall slow path).
    #[arg(long, hide = true)]
    syscall_tracepoints: bool,
    /// Attach the cgroup hooks to this cgroup v2 directory instead of the hierarchy's root:
    /// processes outside it are not seen on the data path. For measurement (`cargo xtask
    /// bench` runs a hooked and an unhooked load side by side).
    #[arg(long, value_name = "DIR", hide = true)]
    hook_cgroup: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics and a health check at /healthz
    /// (e.g. 127.0.0.1:9464; off by default).
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<String>,
    /// Also write everything the analysis consumed to FILE (created 0600), for `replay` and
    /// `report`. Credentials are never in it: the bytes a connection carried are analysed
    /// now, and only what the detectors decided is kept.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Keep the recording under SIZE (bytes, or with a K, M or G suffix) by dropping its
    /// oldest data, counted in the file and in a status line.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, requires = "record")]
    record_max_size: Option<u64>,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size (bytes, or a number with K, M or G)"))?;
    let factor: u64 = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use K, M or G)")),
    };
    let size = n
        .checked_mul(factor)
        .ok_or_else(|| format!("{s:?} is too large"))?;
    if size < 64 * 1024 {
        return Err("the recording needs at least 64K".into());
    }
    Ok(size)
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(secs.is_finite() && secs > 0.0) {
        return Err("the duration must be a positive number of seconds".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

impl Mode {
    fn selector(self) -> Selector {
        if self.all {
            Selector::All
        } else if !self.pid.is_empty() {
            Selector::Pids(self.pid)
        } else if !self.comm.is_empty() {
            Selector::Comms(self.comm)
        } else if !self.cgroup.is_empty() {
            let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
            Selector::Cgroups(
                self.cgroup
                    .iter()
                    .map(|p| process::cgroup::selection(p, &mounts))
                    .collect(),
            )
        } else {
            Selector::Mcp
        }
    }
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EGRESS_MONITOR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Doctor {
            format,
            mcp_pattern,
        } => doctor::run(format, &mcp_pattern).map(|ready| ready.then_some(()).is_some()),
        Command::Report {
            file,
            output,
            format,
        } => monitor::report::run(monitor::report::ReportArgs {
            input: file,
            output,
            format,
        })
        .map(|()| true),
        Command::Run(args) => {
            let level = match args.ebpf_log.as_deref() {
                None => 0,
                Some("error") => 1,
                Some("warn") => 2,
                Some("info") => 3,
                Some("debug") => 4,
                Some(_) => 5,
            };
            if !args.mcp_pattern.is_empty()
                && (args.mode.all
                    || !args.mode.pid.is_empty()
                    || !args.mode.comm.is_empty()
                    || !args.mode.cgroup.is_empty())
            {
                tracing::warn!("--mcp-pattern only labels processes as MCP servers in this mode; it selects targets with --mcp");
            }
            run::run(run::RunArgs {
                selector: args.mode.selector(),
                mcp_patterns: args.mcp_pattern,
                format: args.format,
                output: args.output,
                config: args.config,
                include_loopback: args.include_loopback,
                duration: args.duration,
                ebpf_log_level: level,
                map_sizes: args.map_sizes,
                syscall_tracepoints: args.syscall_tracepoints,
                hook_cgroup: args.hook_cgroup,
                metrics_addr: args.metrics_addr,
                record: args.record,
                record_max_size: args.record_max_size,
            })
            .map(|()| true)
        }
        Command::Replay {
            file,
            format,
            output,
            config,
        } => monitor::replay::run(monitor::replay::ReplayArgs {
            file,
            format,
            output,
            config,
        })
        .map(|_| true),
        Command::Pins { file, output } => {
            monitor::report::pins(&file, output.as_deref()).map(|()| true)
        }
        Command::SyntheticRecording { file, inputs } => {
            monitor::record::synthetic::write(&file, inputs).map(|()| true)
        }
    };
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(err) => {
            eprintln!("egress-monitor: error: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}
