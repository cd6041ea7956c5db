//! The probe worker: finding the TLS libraries of targets (reading ELF files, some of them
//! large) and attaching or detaching uprobes (each detach waits for a kernel grace period)
//! happens on this thread, never on the event loop. The loaded programs live here.
use std::{
    sync::mpsc,
    thread::{self, JoinHandle},
};

use aya::Ebpf;
use tokio::sync::mpsc::UnboundedSender;

use crate::{
    output::Status,
    probes::{tls_server::ServerWrites, uprobes::TlsProbes},
};

pub enum Request {
    /// Attach to the TLS libraries this process (pid, start time) maps or may map.
    Discover { pid: u32, start: u64 },
    /// This process is gone: libraries only it used lose their probes.
    Release { pid: u32, start: u64 },
    /// This process serves TLS: read its responses (`probes::tls_server`).
    ServerWrites { pid: u32, start: u64 },
    /// A target listens beyond loopback: attach the receive hook (`probes::server`), once.
    ServerIngress,
}

pub enum Reply {
    Discovered { statuses: Vec<Status> },
    Released { statuses: Vec<Status> },
}

/// Start the worker with the loaded programs. It ends when the request sender is dropped, and
/// hands the programs back through its join handle (their detach is left to the caller).
pub fn spawn(
    mut ebpf: Ebpf,
    mut tls: TlsProbes,
    replies: UnboundedSender<Reply>,
) -> (mpsc::Sender<Request>, JoinHandle<(Ebpf, TlsProbes)>) {
    let (tx, rx) = mpsc::channel::<Request>();
    let handle = thread::Builder::new()
        .name("em-probes".into())
        .spawn(move || {
            let (mut server_writes, status) = ServerWrites::load(&mut ebpf);
            if let Some(status) = status {
                let _ = replies.send(Reply::Discovered {
                    statuses: vec![status],
                });
            }
            let mut ingress = false;
            for request in rx {
                let reply = match request {
                    Request::ServerIngress if ingress => continue,
                    Request::ServerIngress => {
                        ingress = true;
                        Reply::Discovered {
                            statuses: vec![crate::probes::server::attach_ingress(&mut ebpf)],
                        }
                    }
                    Request::Discover { pid, start } => {
                        let found = tls.discover(&mut ebpf, pid, start);
                        Reply::Discovered {
                            statuses: found.statuses,
                        }
                    }
                    Request::ServerWrites { pid, start } => Reply::Discovered {
                        statuses: server_writes.attach(&mut ebpf, pid, start),
                    },
                    Request::Release { pid, start } => {
                        let (mut links, statuses) = tls.release((pid, start));
                        links.extend(server_writes.release((pid, start)));
                        if !links.is_empty() {
                            // Each detach waits for a grace period: not on this thread either.
                            let _ = thread::Builder::new()
                                .name("em-detach".into())
                                .spawn(move || drop(links));
                        }
                        Reply::Released { statuses }
                    }
                };
                if replies.send(reply).is_err() {
                    break;
                }
            }
            // Left to the process's exit (the kernel detaches them as their descriptors close).
            std::mem::forget(server_writes.release_all());
            (ebpf, tls)
        })
        .expect("spawning the probe worker thread");
    (tx, handle)
}
