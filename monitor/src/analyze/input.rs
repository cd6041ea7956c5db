//! Everything the analysis is told, as one type: `run` builds an [`Input`] for each step and
//! applies it (and writes it to `--record`); `replay` reads them back and applies them the same
//! way. So a recording holds what the analysis consumed, not what the kernel sent: the payload
//! bytes of a connection are never in it, only what the detectors decided about them
//! ([`Observed`]).
use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use super::{
    processes::ProcessKey,
    server::{Response, Served},
    tls::{self, EnvBypass},
    Analyzer, Observed, Out,
};
use crate::{
    decode::{
        Accept, Cert, Connect, ConnectResult, Listen, ServerClose, SocketClose, Tls, TlsRecord,
    },
    output::{Event, EventDetail, Record},
    probes::uprobes::LibraryKind,
    process::ProcessInfo,
};

/// Wall-clock time as nanoseconds since the Unix epoch (compact, and exact both ways).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Time(pub u64);

impl From<SystemTime> for Time {
    fn from(t: SystemTime) -> Self {
        Time(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64)
    }
}

impl From<Time> for SystemTime {
    fn from(t: Time) -> Self {
        UNIX_EPOCH + Duration::from_nanos(t.0)
    }
}

/// One step of the analysis.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Input {
    /// A process is watched from now on (or what is known of it changed).
    AddProcess {
        key: ProcessKey,
        info: Arc<ProcessInfo>,
        time: Time,
    },
    /// A watched process exec'd.
    Exec {
        key: ProcessKey,
        info: Arc<ProcessInfo>,
        time: Time,
    },
    /// The `target` event announcing a watched process (written by `run`, not the analysis).
    Target {
        key: ProcessKey,
        reason: String,
        time: Time,
    },
    Connect(Connect, Time),
    ConnectResult(ConnectResult, Time),
    SocketClose(SocketClose, Time),
    /// What the detectors made of a connection's first bytes.
    Observed(Observed, Time),
    Tls {
        event: Tls,
        /// Path and kind of the library the probe sits in.
        library: Option<(String, LibraryKind)>,
        time: Time,
    },
    TlsRecord(TlsRecord, Time),
    Cert(Cert, Time),
    /// A watched process binds a TCP socket, or had a listener open when it became a target.
    Listen(Listen, Time),
    /// A connection one of its listeners accepted.
    Accept(Accept, Time),
    /// What the client of such a connection sent, decided (it stands in for the bytes).
    Served(Served, Time),
    /// One of its listeners or accepted connections was released.
    ServerClose(ServerClose, Time),
    /// The head of a response it wrote as a TLS server.
    Response(Response, Time),
    /// A process-wide TLS bypass in the environment.
    EnvBypass {
        key: ProcessKey,
        name: String,
        value: String,
        /// In the environment at start (else set at run time).
        at_start: bool,
        time: Time,
    },
    /// The process checks host names in its own code (or a library it loaded does).
    AppChecksNames(ProcessKey),
    ThreadExit {
        key: ProcessKey,
        tid: u32,
    },
    ProcessExit(ProcessKey, Time),
    /// The once-a-second timer: held connects that waited long enough go out.
    Tick(Time),
    /// The periodic report of findings whose count grew.
    Flush,
    /// What the live run had dropped outside the analysis so far (kernel maps, ring buffer,
    /// its event loop), by reason: written when it changes, so a replay says what the recorded
    /// run did not see. Appended last: older recordings keep their variant numbers.
    LiveDrops(BTreeMap<String, u64>),
}

impl Input {
    /// When it happened, for inputs that carry a time.
    pub fn time(&self) -> Option<SystemTime> {
        let t = match self {
            Input::AddProcess { time, .. }
            | Input::Exec { time, .. }
            | Input::Target { time, .. }
            | Input::Tls { time, .. }
            | Input::EnvBypass { time, .. } => *time,
            Input::Connect(_, t)
            | Input::ConnectResult(_, t)
            | Input::SocketClose(_, t)
            | Input::Observed(_, t)
            | Input::TlsRecord(_, t)
            | Input::Cert(_, t)
            | Input::Listen(_, t)
            | Input::Accept(_, t)
            | Input::Served(_, t)
            | Input::ServerClose(_, t)
            | Input::Response(_, t)
            | Input::ProcessExit(_, t)
            | Input::Tick(t) => *t,
            Input::AppChecksNames(_)
            | Input::ThreadExit { .. }
            | Input::Flush
            | Input::LiveDrops(_) => return None,
        };
        Some(t.into())
    }
}

impl Analyzer {
    /// Apply one input. `false` only for an [`Input::AddProcess`] the process table had no room
    /// for (counted); `Input::Target` puts its event in `out.records` when its process is known.
    pub fn apply(&mut self, input: &Input, out: &mut Out) -> bool {
        match input {
            Input::AddProcess { key, info, time } => {
                return self.add_process(*key, info.clone(), (*time).into(), out);
            }
            Input::Exec { key, info, time } => self.exec(*key, info.clone(), (*time).into(), out),
            Input::Target { key, reason, time } => {
                if let Some(state) = self.processes.get(*key) {
                    out.records.push(Record::Event(Event {
                        time: (*time).into(),
                        process: state.info.clone(),
                        detail: EventDetail::Target {
                            reason: reason.clone(),
                        },
                    }));
                }
            }
            Input::Connect(c, t) => self.connect(c, (*t).into(), out),
            Input::ConnectResult(r, t) => self.connect_result(r, (*t).into(), out),
            Input::SocketClose(c, t) => self.socket_close(c, (*t).into(), out),
            Input::Observed(o, t) => self.observed(o, (*t).into(), out),
            Input::Tls {
                event,
                library,
                time,
            } => {
                let key = ProcessKey::new(event.tgid, event.start);
                self.first_tls_activity(key);
                let library = library.as_ref().map(|(p, k)| (p.as_str(), *k));
                self.tls(event, library, (*time).into(), out);
            }
            Input::TlsRecord(r, t) => self.tls_record(r, (*t).into(), out),
            Input::Cert(c, t) => self.cert(c, (*t).into()),
            Input::Listen(l, _) => self.listen(l),
            Input::Accept(a, _) => self.accept(a),
            Input::Served(s, t) => self.served(s, (*t).into(), out),
            Input::ServerClose(c, _) => self.server_close(c),
            Input::Response(r, t) => self.response(r, (*t).into(), out),
            Input::EnvBypass {
                key,
                name,
                value,
                at_start,
                time,
            } => {
                let bypass = EnvBypass {
                    name: name.clone(),
                    value: value.clone(),
                    source: if *at_start {
                        "environment at start"
                    } else {
                        "set at run time"
                    },
                };
                self.env_bypass(*key, bypass, (*time).into(), out);
            }
            Input::AppChecksNames(key) => self.set_app_checks_names(*key, true),
            Input::ThreadExit { key, tid } => self.thread_exit(*key, *tid),
            Input::ProcessExit(key, t) => self.process_exit(*key, (*t).into(), out),
            Input::Tick(t) => self.tick((*t).into(), out),
            Input::Flush => self.flush(out),
            Input::LiveDrops(drops) => self.live_drops.clone_from(drops),
        }
        true
    }
}

/// An environment variable that disables TLS verification, as an input (`None`: harmless).
pub fn env_input(
    key: ProcessKey,
    name: &str,
    value: &str,
    at_start: bool,
    time: SystemTime,
) -> Option<Input> {
    tls::env_bypass(name, value).then(|| Input::EnvBypass {
        key,
        name: name.to_string(),
        value: value.to_string(),
        at_start,
        time: time.into(),
    })
}
