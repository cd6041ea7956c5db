//! The /proc worker: everything the event loop needs to read from /proc (a process's identity
//! and command line, its mappings, the few environment variables that disable TLS checks,
//! whether processes still live) is read on this thread, so a slow or huge /proc entry never
//! holds up the ring buffer.
use std::{
    collections::HashMap,
    sync::mpsc,
    thread::{self, JoinHandle},
};

use tokio::sync::mpsc::UnboundedSender;

use crate::{
    decode::Comm,
    detect::cmdline::CmdlineRedactor,
    probes::uprobes,
    process::{discover::Discovery, ProcFs, ReadProcess},
};

/// The environment variables that switch TLS verification off process-wide. Only these are
/// read from a process's environment; nothing else of it (secrets included) is kept.
pub const BYPASS_VARIABLES: [&str; 1] = ["NODE_TLS_REJECT_UNAUTHORIZED"];

/// Why a process is read.
#[derive(Clone, Debug)]
pub enum LoadReason {
    /// Its first event (a child a target forked, that did not exec).
    FirstSight { comm: Comm },
    /// It exec'd: a new program and command line. `inherited`: the kernel targets it already.
    Exec {
        inherited: bool,
        comm: Comm,
        filename: String,
    },
    /// Read at the start-up scan already: only its mappings and environment.
    Scanned,
    /// Its first TLS activity: which libraries it has mapped by now.
    Libraries,
}

pub enum Request {
    Load {
        pid: u32,
        /// Start time from the kernel record (0: unknown).
        start: u64,
        reason: LoadReason,
    },
    /// For each pid, the start time of the process that has it now (`None`: no such process).
    Liveness { pids: Vec<u32> },
}

/// What was read about one process.
#[derive(Debug)]
pub struct Loaded {
    pub pid: u32,
    pub start: u64,
    pub reason: LoadReason,
    /// `None` when the process is gone (or was read already, for `Scanned`).
    pub read: Option<ReadProcess>,
    /// It maps a client library that checks host names itself (libcurl, libpq, ...).
    pub app_checks_names: bool,
    /// Values of [`BYPASS_VARIABLES`] set in its environment.
    pub env: Vec<(String, String)>,
}

pub enum Reply {
    Loaded(Box<Loaded>),
    Liveness(HashMap<u32, Option<u64>>),
}

/// Start the worker. It ends when the request sender is dropped.
pub fn spawn(
    procfs: ProcFs,
    redactor: CmdlineRedactor,
    mut discovery: Discovery,
    replies: UnboundedSender<Reply>,
) -> (mpsc::Sender<Request>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel::<Request>();
    let handle = thread::Builder::new()
        .name("em-procfs".into())
        .spawn(move || {
            for request in rx {
                let reply = match request {
                    Request::Load { pid, start, reason } => Reply::Loaded(Box::new(load(
                        &procfs,
                        &redactor,
                        &mut discovery,
                        pid,
                        start,
                        reason,
                    ))),
                    Request::Liveness { pids } => Reply::Liveness(
                        pids.into_iter()
                            .map(|pid| (pid, procfs.stat(pid).map(|s| s.start_time)))
                            .collect(),
                    ),
                };
                if replies.send(reply).is_err() {
                    break;
                }
            }
        })
        .expect("spawning the /proc worker thread");
    (tx, handle)
}

/// Read one process (also used at start-up, before the worker runs).
pub fn load(
    procfs: &ProcFs,
    redactor: &CmdlineRedactor,
    discovery: &mut Discovery,
    pid: u32,
    start: u64,
    reason: LoadReason,
) -> Loaded {
    let read = match reason {
        LoadReason::Scanned | LoadReason::Libraries => None,
        _ => procfs.load(pid, redactor).map(|mut read| {
            read.info.discovered = discovery.examine(procfs, &read.info);
            read
        }),
    };
    // Mapped already, or named by the executable (the dynamic loader maps those before the
    // program runs: this holds even when the process is gone before its maps are read).
    let executable = match &reason {
        LoadReason::Exec { filename, .. } => Some(filename.as_str()),
        _ => None,
    };
    let app_checks_names = uprobes::checks_names_itself(&procfs.maps(pid))
        || procfs
            .needed_libraries(pid, executable)
            .iter()
            .any(|name| uprobes::library_checks_names(name));
    let env = match reason {
        LoadReason::Libraries => Vec::new(),
        _ => bypass_env(procfs, pid),
    };
    Loaded {
        pid,
        start,
        reason,
        read,
        app_checks_names,
        env,
    }
}

/// Values of [`BYPASS_VARIABLES`] set in a process's environment.
fn bypass_env(procfs: &ProcFs, pid: u32) -> Vec<(String, String)> {
    BYPASS_VARIABLES
        .iter()
        .filter_map(|name| procfs.env_var(pid, name).map(|v| (name.to_string(), v)))
        .collect()
}
