//! The server side of a watched process: the listeners it binds, the connections they accept
//! and what their clients send (`MCP_ENDPOINT_PLAINTEXT`), and the responses it writes as a
//! TLS server (`HSTS_MISSING`).
//!
//! Live, the bytes of an accepted connection go through [`Analyzer::server_payload`], which
//! only inspects them and hands back a [`Served`] verdict once one is reached; the caller then
//! applies it ([`Analyzer::served`]) as an input of its own, so a recording holds the verdict
//! (redacted credentials) and never the bytes. A response's head is reduced to a [`Response`]
//! (status and the `Strict-Transport-Security` value) the same way, before it is applied.
//!
//! State lives in the process's [`ProcessState`](super::processes::ProcessState) and goes with
//! it; listeners and connections are bounded per process (a connection evicted before its
//! verdict is counted as `server_conns_evicted`).
use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::Arc,
    time::SystemTime,
};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{
    connections::SockId,
    input::{Input, Time},
    processes::ProcessKey,
    report, Analyzer, Out,
};
use crate::{
    decode::{Accept, Listen, Payload, ServerClose},
    detect::{
        inbound::{hsts_max_age, InboundInspector, InboundRequest},
        AppProtocol,
    },
    output::{
        finding::{Finding, FindingId},
        Destination,
    },
};

/// Listeners remembered per process.
pub const MAX_LISTENERS: usize = 256;
/// Accepted connections remembered per process (the oldest goes first).
pub const MAX_SERVER_CONNS: usize = 1024;
/// The `max-age` HSTS needs at least: one year.
pub const HSTS_MIN_MAX_AGE: u64 = 31_536_000;

#[derive(Clone, Copy, Debug)]
struct Listener {
    /// The address it was bound to (the unspecified address for "all").
    addr: SocketAddr,
}

#[derive(Debug)]
struct ServerConn {
    listener: u64,
    local: SocketAddr,
    peer: SocketAddr,
    stream: Option<InboundInspector>,
}

/// What is known of one process's server side.
#[derive(Debug, Default)]
pub struct ServerProcess {
    listeners: HashMap<u64, Listener>,
    conns: HashMap<SockId, ServerConn>,
    /// Accept order, for eviction (may hold connections that closed since).
    order: VecDeque<SockId>,
    /// The last connection a TLS client opened to it: its listener and the address it reached.
    tls_local: Option<(u64, SocketAddr)>,
    /// Its server-side `SSL_write`s were asked for.
    writes_requested: bool,
}

impl ServerProcess {
    /// Listeners and connections remembered.
    pub fn table_sizes(&self) -> (usize, usize) {
        (self.listeners.len(), self.conns.len())
    }

    /// The inputs that rebuild this state (a recording's new segment starts with them).
    pub fn snapshot(&self, key: ProcessKey, time: Time) -> Vec<Input> {
        let mut inputs: Vec<Input> = self
            .listeners
            .iter()
            .map(|(&sock, l)| {
                Input::Listen(
                    Listen {
                        tgid: key.pid,
                        start: key.start,
                        tid: 0,
                        ktime_ns: 0,
                        sock,
                        addr: l.addr,
                    },
                    time,
                )
            })
            .collect();
        inputs.extend(self.order.iter().filter_map(|sock| {
            let c = self.conns.get(sock)?;
            Some(Input::Accept(
                Accept {
                    tgid: key.pid,
                    start: key.start,
                    ktime_ns: 0,
                    sock: *sock,
                    listener: c.listener,
                    local: c.local,
                    peer: c.peer,
                },
                time,
            ))
        }));
        inputs
    }
}

/// What the inspector made of one accepted connection's first bytes: the analysis input that
/// stands in for them in a recording (credentials are redacted; their values are never
/// serialised).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Served {
    /// The process whose listener accepted the connection.
    pub owner: ProcessKey,
    pub sock: SockId,
    pub request: InboundRequest,
}

/// The head of a response a TLS server wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub owner: ProcessKey,
    /// The server-side SSL object.
    pub ssl: u64,
    pub status: u16,
    /// `Strict-Transport-Security` as sent, `None` when absent.
    pub hsts: Option<String>,
}

fn loopback(addr: &SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// `bearer in header:Authorization, api_key in header:X-Api-Key`.
fn credential_kinds(request: &InboundRequest) -> String {
    request
        .credentials
        .iter()
        .map(|c| {
            let kind = serde_json::to_value(c.kind)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            format!("{kind} in {}", c.location)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `MCP_ENDPOINT_PLAINTEXT` for a request a server received, or `None`. Not for listeners
/// bound to loopback only, nor (unless `include_loopback`) for connections that came in over
/// loopback, nor for requests that are not MCP in a process not known as an MCP server.
pub fn judge_request(
    request: &InboundRequest,
    listener: Option<SocketAddr>,
    local: SocketAddr,
    client: SocketAddr,
    process_mcp: bool,
    include_loopback: bool,
) -> Option<Value> {
    if request.protocol != AppProtocol::Http || request.credentials.is_empty() {
        return None;
    }
    if listener.as_ref().is_some_and(loopback) || (loopback(&local) && !include_loopback) {
        return None;
    }
    if !(request.mcp || process_mcp) {
        return None;
    }
    let listening = listener.map_or(local, |l| {
        if l.port() == 0 {
            SocketAddr::new(l.ip(), local.port())
        } else {
            l
        }
    });
    Some(json!({
        "listener": listening.to_string(),
        "local": local.to_string(),
        "client": client.to_string(),
        "request": request.http,
        "jsonrpc_method": request.jsonrpc_method,
        "credentials": request.credentials,
        "reason": format!(
            "{} received over plain HTTP on {local} (listening on {listening})",
            credential_kinds(request)
        ),
    }))
}

/// `HSTS_MISSING` for a response head, or `None` (the header is there with a `max-age` of a
/// year or more).
pub fn judge_response(
    response: &Response,
    listener: Option<SocketAddr>,
    local: SocketAddr,
) -> Option<Value> {
    let max_age = response.hsts.as_deref().and_then(hsts_max_age);
    if max_age.is_some_and(|age| age >= HSTS_MIN_MAX_AGE) {
        return None;
    }
    let reason = match (&response.hsts, max_age) {
        (None, _) => format!(
            "HTTPS response (status {}) without Strict-Transport-Security",
            response.status
        ),
        (Some(_), Some(age)) => format!(
            "Strict-Transport-Security max-age={age} is under one year ({HSTS_MIN_MAX_AGE} s)"
        ),
        (Some(_), None) => "Strict-Transport-Security without a valid max-age".to_string(),
    };
    Some(json!({
        "listener": listener.unwrap_or(local).to_string(),
        "local": local.to_string(),
        "status": response.status,
        "header": response.hsts,
        "max_age": max_age,
        "reason": reason,
    }))
}

impl Analyzer {
    /// A watched process binds a TCP socket (or had a listener open when it became a target).
    pub fn listen(&mut self, l: &Listen) {
        let Some(state) = self.processes.get_mut(ProcessKey::new(l.tgid, l.start)) else {
            return;
        };
        let listeners = &mut state.server.listeners;
        if listeners.len() >= MAX_LISTENERS && !listeners.contains_key(&l.sock) {
            self.drops.count("listeners_full");
            return;
        }
        listeners.insert(
            l.sock,
            Listener {
                addr: canonical(l.addr),
            },
        );
    }

    /// A connection one of its listeners accepted.
    pub fn accept(&mut self, a: &Accept) {
        let Some(state) = self.processes.get_mut(ProcessKey::new(a.tgid, a.start)) else {
            return;
        };
        let server = &mut state.server;
        while server.conns.len() >= MAX_SERVER_CONNS {
            let Some(oldest) = server.order.pop_front() else {
                break;
            };
            if let Some(conn) = server.conns.remove(&oldest) {
                if conn.stream.as_ref().is_some_and(|s| !s.is_decided()) {
                    self.drops.count("server_conns_evicted");
                }
            }
        }
        if server.order.len() >= 2 * MAX_SERVER_CONNS {
            let conns = &server.conns;
            server.order.retain(|id| conns.contains_key(id));
        }
        server.conns.insert(
            a.sock,
            ServerConn {
                listener: a.listener,
                local: canonical(a.local),
                peer: canonical(a.peer),
                stream: None,
            },
        );
        server.order.push_back(a.sock);
    }

    /// Bytes a client sent to a watched server: inspected; the verdict, once reached, is for
    /// the caller to apply with [`Self::served`].
    pub fn server_payload(&mut self, p: &Payload) -> Option<Served> {
        let owner = ProcessKey::new(p.tgid, p.start);
        let state = self.processes.get_mut(owner)?;
        let conn = state.server.conns.get_mut(&p.sock)?;
        let stream = conn.stream.get_or_insert_with(InboundInspector::new);
        let (cfg, fp) = self.plaintext.detectors();
        let request = stream.feed(&p.data, p.complete(), cfg, fp)?;
        Some(Served {
            owner,
            sock: p.sock,
            request,
        })
    }

    /// A connection ends: the verdict from what was seen, if none was reached yet (for the
    /// caller to apply before the close).
    pub fn server_finish(&mut self, c: &ServerClose) -> Option<Served> {
        if c.listener {
            return None;
        }
        let owner = ProcessKey::new(c.tgid, c.start);
        let state = self.processes.get_mut(owner)?;
        let stream = state.server.conns.get_mut(&c.sock)?.stream.as_mut()?;
        let (cfg, fp) = self.plaintext.detectors();
        let request = stream.finish(cfg, fp)?;
        Some(Served {
            owner,
            sock: c.sock,
            request,
        })
    }

    /// What a connection's client sent, decided.
    pub fn served(&mut self, s: &Served, time: SystemTime, out: &mut Out) {
        let include_loopback = self.settings.include_loopback;
        out.secrets.extend(
            s.request
                .credentials
                .iter()
                .flat_map(|c| c.secrets.iter().cloned()),
        );
        let Some(state) = self.processes.get_mut(s.owner) else {
            return;
        };
        let Some(conn) = state.server.conns.get(&s.sock) else {
            return;
        };
        let (listener_id, local, peer) = (conn.listener, conn.local, conn.peer);
        let listener = state.server.listeners.get(&listener_id).map(|l| l.addr);
        if s.request.protocol == AppProtocol::Tls {
            if !listener.as_ref().is_some_and(loopback) {
                state.server.tls_local = Some((listener_id, local));
            }
            return;
        }
        let Some(evidence) = judge_request(
            &s.request,
            listener,
            local,
            peer,
            state.info.mcp,
            include_loopback,
        ) else {
            return;
        };
        let hostname = s
            .request
            .http
            .as_ref()
            .and_then(|h| h.host.as_deref())
            .filter(|h| h.parse::<std::net::IpAddr>().is_err() && !h.starts_with('['))
            .map(Arc::<str>::from);
        let finding = Finding {
            time,
            id: FindingId::McpEndpointPlaintext,
            process: state.info.clone(),
            destination: Some(Destination {
                ip: local.ip(),
                port: local.port(),
                hostname,
            }),
            evidence,
            count: 1,
        };
        report(state, &mut self.drops, finding, out);
    }

    /// A listener or connection of a watched server was released.
    pub fn server_close(&mut self, c: &ServerClose) {
        let Some(state) = self.processes.get_mut(ProcessKey::new(c.tgid, c.start)) else {
            return;
        };
        if c.listener {
            state.server.listeners.remove(&c.sock);
        } else {
            state.server.conns.remove(&c.sock);
        }
    }

    /// A response a watched TLS server wrote. Reported against the listener its TLS clients
    /// came through (the last one seen), else its one listener not on loopback.
    pub fn response(&mut self, r: &Response, time: SystemTime, out: &mut Out) {
        let include_loopback = self.settings.include_loopback;
        let Some(state) = self.processes.get_mut(r.owner) else {
            return;
        };
        let server = &state.server;
        let (listener, local) = match server.tls_local {
            Some((id, local)) => (server.listeners.get(&id).map(|l| l.addr), local),
            None => {
                let mut open = server.listeners.values().filter(|l| !loopback(&l.addr));
                match (open.next(), open.next()) {
                    (Some(l), None) => (Some(l.addr), l.addr),
                    // None, or several: which one answered cannot be told.
                    _ => return,
                }
            }
        };
        if listener.as_ref().is_some_and(loopback) || (loopback(&local) && !include_loopback) {
            return;
        }
        let Some(evidence) = judge_response(r, listener, local) else {
            return;
        };
        let finding = Finding {
            time,
            id: FindingId::HstsMissing,
            process: state.info.clone(),
            destination: Some(Destination {
                ip: local.ip(),
                port: local.port(),
                hostname: None,
            }),
            evidence,
            count: 1,
        };
        report(state, &mut self.drops, finding, out);
    }

    /// The process took the server role in a TLS handshake: `true` once, if it has a
    /// listener, for the caller to attach the probe that reads its responses.
    pub fn wants_server_writes(&mut self, key: ProcessKey) -> bool {
        match self.processes.get_mut(key) {
            Some(state) if !state.server.writes_requested && !state.server.listeners.is_empty() => {
                state.server.writes_requested = true;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        detect::{redact::Fingerprinter, x509::TrustStore, DetectConfig},
        process::ProcessInfo,
    };

    const T0: SystemTime = SystemTime::UNIX_EPOCH;
    const LISTENER: u64 = 0xffff_0001;
    const CONN: u64 = 0xffff_0002;

    fn analyzer(include_loopback: bool, mcp: bool) -> (Analyzer, ProcessKey) {
        let mut a = Analyzer::new(
            super::super::Settings { include_loopback },
            TrustStore::empty(),
            DetectConfig::default(),
            Fingerprinter::new([9; 32]),
            Default::default(),
        );
        let key = ProcessKey::new(10, 500);
        let info = Arc::new(ProcessInfo {
            pid: 10,
            mcp,
            ..Default::default()
        });
        assert!(a.add_process(key, info, T0, &mut Out::default()));
        (a, key)
    }

    fn listen(a: &mut Analyzer, key: ProcessKey, addr: &str) {
        a.listen(&Listen {
            tgid: key.pid,
            start: key.start,
            tid: key.pid,
            ktime_ns: 0,
            sock: LISTENER,
            addr: addr.parse().unwrap(),
        });
    }

    fn accept(a: &mut Analyzer, key: ProcessKey, local: &str) {
        a.accept(&Accept {
            tgid: key.pid,
            start: key.start,
            ktime_ns: 0,
            sock: CONN,
            listener: LISTENER,
            local: local.parse().unwrap(),
            peer: "10.203.0.2:40000".parse().unwrap(),
        });
    }

    fn payload(key: ProcessKey, data: &[u8]) -> Payload {
        Payload {
            tgid: key.pid,
            start: key.start,
            tid: 0,
            ktime_ns: 0,
            sock: CONN,
            fd: -1,
            source: monitor_common::payload_source::PACKET,
            len: data.len() as u32,
            data: data.to_vec(),
        }
    }

    const TOKEN: &str = "mcp-token-8b7a6c5d4e3f2a19";

    fn initialize() -> Vec<u8> {
        let body = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}"#;
        format!(
            "POST /mcp HTTP/1.1\r\nHost: 10.203.0.1:3000\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    /// Listen, accept, the request; the findings and secrets of applying its verdict.
    fn serve(bound: &str, local: &str, include_loopback: bool) -> Out {
        let (mut a, key) = analyzer(include_loopback, false);
        listen(&mut a, key, bound);
        accept(&mut a, key, local);
        let served = a
            .server_payload(&payload(key, &initialize()))
            .expect("decided at the request");
        // What a recording holds: no token.
        let recorded = serde_json::to_string(&served).unwrap();
        assert!(!recorded.contains(TOKEN), "{recorded}");
        let mut out = Out::default();
        a.served(&served, T0, &mut out);
        out
    }

    #[test]
    fn bearer_on_a_network_listener_is_reported_redacted() {
        let out = serve("0.0.0.0:3000", "10.203.0.1:3000", false);
        let f = out.findings();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].id, FindingId::McpEndpointPlaintext);
        let e = &f[0].evidence;
        assert_eq!(e["listener"], "0.0.0.0:3000");
        assert_eq!(e["local"], "10.203.0.1:3000");
        assert_eq!(e["client"], "10.203.0.2:40000");
        assert_eq!(e["jsonrpc_method"], "initialize");
        assert_eq!(e["request"]["method"], "POST");
        assert_eq!(e["request"]["path"], "/mcp");
        assert_eq!(e["credentials"][0]["kind"], "bearer");
        assert!(!e.to_string().contains(TOKEN));
        assert_eq!(f[0].destination.as_ref().unwrap().port, 3000);
        assert!(
            out.secrets.iter().any(|s| s.as_bytes() == TOKEN.as_bytes()),
            "the token is handed to the scrubber"
        );
    }

    #[test]
    fn loopback_listeners_are_never_reported() {
        assert!(serve("127.0.0.1:3000", "127.0.0.1:3000", true)
            .findings()
            .is_empty());
        assert!(serve("[::1]:3000", "[::1]:3000", true)
            .findings()
            .is_empty());
        // A listener on all addresses, reached over loopback: only with --include-loopback.
        assert!(serve("0.0.0.0:3000", "127.0.0.1:3000", false)
            .findings()
            .is_empty());
        assert_eq!(
            serve("0.0.0.0:3000", "127.0.0.1:3000", true)
                .findings()
                .len(),
            1
        );
    }

    #[test]
    fn requests_that_are_not_mcp_need_an_mcp_server() {
        let request = b"GET /items HTTP/1.1\r\nAuthorization: Bearer abcdefgh12345678\r\n\r\n";
        for mcp in [false, true] {
            let (mut a, key) = analyzer(false, mcp);
            listen(&mut a, key, "0.0.0.0:8080");
            accept(&mut a, key, "10.203.0.1:8080");
            let served = a.server_payload(&payload(key, request)).unwrap();
            let mut out = Out::default();
            a.served(&served, T0, &mut out);
            assert_eq!(out.findings().len(), mcp as usize, "mcp process: {mcp}");
        }
    }

    #[test]
    fn connections_are_bounded_and_closed() {
        let (mut a, key) = analyzer(false, true);
        listen(&mut a, key, "0.0.0.0:3000");
        for i in 0..(MAX_SERVER_CONNS as u64 + 10) {
            a.accept(&Accept {
                tgid: key.pid,
                start: key.start,
                ktime_ns: 0,
                sock: 1000 + i,
                listener: LISTENER,
                local: "10.203.0.1:3000".parse().unwrap(),
                peer: "10.203.0.2:40000".parse().unwrap(),
            });
        }
        let state = a.processes.get(key).unwrap();
        assert_eq!(state.server.table_sizes(), (1, MAX_SERVER_CONNS));
        a.server_close(&ServerClose {
            tgid: key.pid,
            start: key.start,
            ktime_ns: 0,
            sock: LISTENER,
            listener: true,
            undecided: false,
        });
        assert_eq!(a.processes.get(key).unwrap().server.table_sizes().0, 0);
    }

    fn response(key: ProcessKey, hsts: Option<&str>) -> Response {
        Response {
            owner: key,
            ssl: 0x5000,
            status: 200,
            hsts: hsts.map(String::from),
        }
    }

    #[test]
    fn hsts_is_judged_against_the_tls_listener() {
        let (mut a, key) = analyzer(false, true);
        listen(&mut a, key, "0.0.0.0:8443");
        accept(&mut a, key, "10.203.0.1:8443");
        let hello = [0x16, 3, 1, 0, 5, 1, 0, 0, 1, 0];
        let served = a.server_payload(&payload(key, &hello)).unwrap();
        let mut out = Out::default();
        a.served(&served, T0, &mut out);
        assert!(out.findings().is_empty());
        a.response(&response(key, None), T0, &mut out);
        a.response(&response(key, Some("max-age=300")), T0, &mut out);
        a.response(&response(key, Some("max-age=31536000")), T0, &mut out);
        let f = out.findings();
        assert_eq!(f.len(), 1, "one finding per destination, counted");
        assert_eq!(f[0].id, FindingId::HstsMissing);
        assert_eq!(f[0].evidence["header"], Value::Null);
        assert_eq!(f[0].evidence["local"], "10.203.0.1:8443");
        assert_eq!(f[0].destination.as_ref().unwrap().port, 8443);
        a.flush(&mut out);
        assert_eq!(out.findings().last().unwrap().count, 2);
    }

    #[test]
    fn hsts_not_for_loopback_listeners() {
        let (mut a, key) = analyzer(true, true);
        listen(&mut a, key, "127.0.0.1:8443");
        let mut out = Out::default();
        a.response(&response(key, None), T0, &mut out);
        assert!(out.findings().is_empty());
    }

    #[test]
    fn a_snapshot_rebuilds_listeners_and_connections() {
        let (mut a, key) = analyzer(false, true);
        listen(&mut a, key, "0.0.0.0:3000");
        accept(&mut a, key, "10.203.0.1:3000");
        let inputs = a.processes.get(key).unwrap().server.snapshot(key, Time(0));
        assert_eq!(inputs.len(), 2);
        let (mut b, _) = analyzer(false, true);
        for input in &inputs {
            b.apply(input, &mut Out::default());
        }
        assert_eq!(b.processes.get(key).unwrap().server.table_sizes(), (1, 1));
        // And the connection's verdict judges as before.
        let served = a.server_payload(&payload(key, &initialize())).unwrap();
        let mut out = Out::default();
        b.served(&served, T0, &mut out);
        assert_eq!(out.findings().len(), 1);
    }

    #[test]
    fn server_writes_are_wanted_once_and_only_with_a_listener() {
        let (mut a, key) = analyzer(false, true);
        assert!(!a.wants_server_writes(key));
        listen(&mut a, key, "0.0.0.0:8443");
        assert!(a.wants_server_writes(key));
        assert!(!a.wants_server_writes(key));
    }
}
