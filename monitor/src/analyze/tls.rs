//! TLS sessions reconstructed from OpenSSL API calls, and the verdict on each: what the client
//! asked to verify, what OpenSSL concluded, what the server presented (checked again here), and
//! whether the application used the session anyway.
//!
//! Runtimes differ in where they decide:
//! - plain OpenSSL users (Python, most C programs) configure verification in OpenSSL: the verify
//!   mode and the hostname set on the SSL object are the facts;
//! - Node always runs OpenSSL with verify mode NONE and an accept-all callback, then decides in
//!   JavaScript after reading `SSL_get_verify_result`: a failed result followed by application
//!   data is the bypass, and the certificate's names against the requested server name show an
//!   overridden `checkServerIdentity`;
//! - libcurl checks host names in its own code, so a missing OpenSSL hostname is not a finding
//!   there; a certificate whose names do not match is.
use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::Arc,
    time::SystemTime,
};

use monitor_common::TlsCall;
use serde_json::{json, Value};

use super::connections::Connections;
use crate::{
    decode::{Cert, Tls},
    detect::x509::{self, TrustStore},
    output::{finding::FindingId, Destination},
    probes::uprobes::LibraryKind,
};

const SSL_VERIFY_PEER: i64 = 1;

/// OpenSSL's `X509_V_ERR_*` names for the codes a responder will meet.
pub fn verify_error_name(code: i64) -> &'static str {
    match code {
        0 => "ok",
        2 => "unable_to_get_issuer_cert",
        4 => "unable_to_decrypt_cert_signature",
        7 => "cert_signature_failure",
        9 => "cert_not_yet_valid",
        10 => "cert_has_expired",
        13 => "error_in_cert_not_before_field",
        14 => "error_in_cert_not_after_field",
        18 => "depth_zero_self_signed_cert",
        19 => "self_signed_cert_in_chain",
        20 => "unable_to_get_issuer_cert_locally",
        21 => "unable_to_verify_leaf_signature",
        22 => "cert_chain_too_long",
        23 => "cert_revoked",
        24 => "invalid_ca",
        26 => "invalid_purpose",
        27 => "cert_untrusted",
        28 => "cert_rejected",
        62 => "hostname_mismatch",
        63 => "email_mismatch",
        64 => "ip_address_mismatch",
        _ => "other",
    }
}

/// Failures that mean "the issuing CA is not trusted here".
fn untrusted_ca(code: i64) -> bool {
    matches!(code, 2 | 18 | 19 | 20 | 21 | 27)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Unknown,
    Client,
    Server,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Handshake {
    InProgress,
    Completed,
    /// The handshake function returned this (<= 0) and no later call succeeded.
    Failed(i64),
}

/// What OpenSSL concluded about the peer certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpensslVerdict {
    Unknown,
    Ok,
    Failed(i64),
}

#[derive(Clone, Debug)]
struct Session {
    pid: u32,
    library: Option<LibraryKind>,
    library_path: Option<String>,
    role: Role,
    verify_mode: Option<i64>,
    verify_callback: bool,
    hosts: Vec<String>,
    ips: Vec<String>,
    sni: Option<String>,
    fd: Option<i32>,
    destination: Option<Destination>,
    certs: Vec<Vec<u8>>,
    truncated_cert: bool,
    verify_cert: Vec<i64>,
    store_errors: Vec<i64>,
    verify_result: Option<i64>,
    handshake: Handshake,
    used: bool,
    first_seen: SystemTime,
}

impl Session {
    fn new(pid: u32, time: SystemTime) -> Self {
        Self {
            pid,
            library: None,
            library_path: None,
            role: Role::Unknown,
            verify_mode: None,
            verify_callback: false,
            hosts: Vec::new(),
            ips: Vec::new(),
            sni: None,
            fd: None,
            destination: None,
            certs: Vec::new(),
            truncated_cert: false,
            verify_cert: Vec::new(),
            store_errors: Vec::new(),
            verify_result: None,
            handshake: Handshake::InProgress,
            used: false,
            first_seen: time,
        }
    }

    fn openssl_verdict(&self) -> OpensslVerdict {
        if let Some(result) = self.verify_result {
            return if result == 0 {
                OpensslVerdict::Ok
            } else {
                OpensslVerdict::Failed(result)
            };
        }
        if let Some(&error) = self.store_errors.iter().rev().find(|&&e| e != 0) {
            return OpensslVerdict::Failed(error);
        }
        match self.verify_cert.last() {
            Some(1) => OpensslVerdict::Ok,
            Some(_) => OpensslVerdict::Failed(-1),
            None => OpensslVerdict::Unknown,
        }
    }

    /// The name the client asked for: the host it told OpenSSL to check, else the SNI, else the
    /// IP it dialled.
    fn server_name(&self) -> Option<String> {
        self.hosts
            .first()
            .cloned()
            .or_else(|| self.sni.clone())
            .or_else(|| self.ips.first().cloned())
            .or_else(|| self.destination.as_ref().map(|d| d.ip.to_string()))
    }
}

#[derive(Clone, Debug, Default)]
struct CtxInfo {
    verify_mode: Option<i64>,
    verify_callback: bool,
}

/// The SSL object an `X509_VERIFY_PARAM` belongs to (from `SSL_get0_param`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ParamOwner(u64);

/// Process-wide bypasses (environment variables), by pid.
#[derive(Clone, Debug)]
pub struct EnvBypass {
    pub name: String,
    pub value: String,
    /// "environment at start" or "set at run time".
    pub source: &'static str,
}

/// Whether a process-wide variable disables TLS verification.
pub fn env_bypass(name: &str, value: &str) -> bool {
    name == "NODE_TLS_REJECT_UNAUTHORIZED" && value == "0"
}

/// What the tracker wants reported or done.
#[derive(Debug)]
pub enum TlsOutput {
    Handshake {
        pid: u32,
        destination: Option<Destination>,
        tls: Value,
    },
    Finding {
        id: FindingId,
        pid: u32,
        destination: Option<Destination>,
        evidence: Value,
    },
    /// The session is settled: the kernel may stop reporting its reads and writes.
    Settle { tgid: u32, ssl: u64 },
}

pub struct TlsTracker {
    sessions: HashMap<(u32, u64), Session>,
    /// Sessions already concluded, until they are freed (late events for them are ignored).
    settled: HashSet<(u32, u64)>,
    ctxs: HashMap<(u32, u64), CtxInfo>,
    params: HashMap<(u32, u64), ParamOwner>,
    /// Processes that check certificate host names in their own code (libcurl).
    app_checks_names: HashSet<u32>,
    env: HashMap<u32, EnvBypass>,
    trust: TrustStore,
}

impl TlsTracker {
    pub fn new(trust: TrustStore) -> Self {
        Self {
            sessions: HashMap::new(),
            settled: HashSet::new(),
            ctxs: HashMap::new(),
            params: HashMap::new(),
            app_checks_names: HashSet::new(),
            env: HashMap::new(),
            trust,
        }
    }

    pub fn set_app_checks_names(&mut self, pid: u32) {
        self.app_checks_names.insert(pid);
    }

    /// A process-wide bypass was seen (environment at start, or `setenv`). Returns the finding
    /// the first time per process.
    pub fn env_bypass(&mut self, pid: u32, bypass: EnvBypass, out: &mut Vec<TlsOutput>) {
        let evidence = json!({
            "variable": bypass.name,
            "value": bypass.value,
            "source": bypass.source,
            "reason": format!("{}={} ({})", bypass.name, bypass.value, bypass.source),
        });
        let first = !self.env.contains_key(&pid);
        self.env.insert(pid, bypass);
        if first {
            out.push(TlsOutput::Finding {
                id: FindingId::TlsVerifyEnvDisabled,
                pid,
                destination: None,
                evidence,
            });
        }
    }

    /// A process exited: settle every open session (a process may exit without `SSL_free`).
    pub fn process_exit(&mut self, pid: u32, conns: &Connections, out: &mut Vec<TlsOutput>) {
        let keys: Vec<(u32, u64)> = self
            .sessions
            .keys()
            .filter(|k| k.0 == pid)
            .copied()
            .collect();
        for key in keys {
            if let Some(session) = self.sessions.remove(&key) {
                self.conclude(&session, conns, out);
            }
        }
        self.ctxs.retain(|k, _| k.0 != pid);
        self.settled.retain(|k| k.0 != pid);
        self.params.retain(|k, _| k.0 != pid);
        self.app_checks_names.remove(&pid);
        self.env.remove(&pid);
    }

    fn session(&mut self, pid: u32, ssl: u64, time: SystemTime) -> &mut Session {
        self.sessions
            .entry((pid, ssl))
            .or_insert_with(|| Session::new(pid, time))
    }

    /// Bind a session to the socket it runs on: `SSL_set_fd`, else the latest connect on the
    /// thread that drives its handshake.
    fn bind(&mut self, pid: u32, tid: u32, ssl: u64, conns: &Connections) {
        let Some(session) = self.sessions.get(&(pid, ssl)) else {
            return;
        };
        if session.destination.is_some() {
            return;
        }
        let bound: HashSet<i32> = self
            .sessions
            .iter()
            .filter(|(k, s)| k.0 == pid && k.1 != ssl && s.fd.is_some())
            .filter_map(|(_, s)| s.fd)
            .collect();
        let found = match session.fd {
            Some(fd) => conns.by_fd(pid, fd).map(|d| (fd, d)),
            None => conns
                .last_on_thread(pid, tid)
                .filter(|(fd, _)| !bound.contains(fd)),
        };
        if let Some((fd, destination)) = found {
            let session = self.sessions.get_mut(&(pid, ssl)).expect("checked above");
            session.fd = Some(fd);
            session.destination = Some(destination);
        }
    }

    pub fn on_tls(
        &mut self,
        e: &Tls,
        library: Option<(&str, LibraryKind)>,
        time: SystemTime,
        conns: &Connections,
        out: &mut Vec<TlsOutput>,
    ) {
        let pid = e.tgid;
        // A concluded session only waits for its SSL_free (or its address to be reused).
        if !matches!(e.call(), TlsCall::SslNew | TlsCall::SslFree)
            && self.settled.contains(&(pid, e.ssl))
        {
            return;
        }
        match e.call() {
            TlsCall::CtxSetVerify => {
                let ctx = self.ctxs.entry((pid, e.ssl)).or_default();
                ctx.verify_mode = Some(e.value);
                ctx.verify_callback = e.ptr2 != 0;
            }
            TlsCall::GetParam => {
                self.params.insert((pid, e.ptr2), ParamOwner(e.ssl));
            }
            TlsCall::ParamSetHost | TlsCall::ParamSetIp => {
                let name = if e.call() == TlsCall::ParamSetIp && e.value >= 0 {
                    ip_text(&e.text)
                } else {
                    Some(e.text_str())
                };
                let Some(name) = name.filter(|n| !n.is_empty()) else {
                    return;
                };
                if let Some(ParamOwner(ssl)) = self.params.get(&(pid, e.ssl)).copied() {
                    let s = self.session(pid, ssl, time);
                    if e.call() == TlsCall::ParamSetIp {
                        s.ips.push(name);
                    } else {
                        s.hosts.push(name);
                    }
                }
            }
            TlsCall::SslNew => {
                let ctx = self.ctxs.get(&(pid, e.ptr2)).cloned().unwrap_or_default();
                // A reused address is a new session.
                self.settled.remove(&(pid, e.ssl));
                let mut s = Session::new(pid, time);
                s.verify_mode = ctx.verify_mode;
                s.verify_callback = ctx.verify_callback;
                self.sessions.insert((pid, e.ssl), s);
            }
            TlsCall::SslFree => {
                if let Some(session) = self.sessions.remove(&(pid, e.ssl)) {
                    self.conclude(&session, conns, out);
                }
                self.settled.remove(&(pid, e.ssl));
                self.params.retain(|_, owner| *owner != ParamOwner(e.ssl));
            }
            TlsCall::UnknownSession => {
                // Created before we watched it: nothing reliable to say, stop paying for it.
                self.sessions.remove(&(pid, e.ssl));
                out.push(TlsOutput::Settle {
                    tgid: pid,
                    ssl: e.ssl,
                });
            }
            TlsCall::ServerRole => {
                if let Some(s) = self.sessions.get_mut(&(pid, e.ssl)) {
                    s.role = Role::Server;
                }
                out.push(TlsOutput::Settle {
                    tgid: pid,
                    ssl: e.ssl,
                });
            }
            TlsCall::ClientRole => self.session(pid, e.ssl, time).role = Role::Client,
            TlsCall::SetVerify => {
                let s = self.session(pid, e.ssl, time);
                s.verify_mode = Some(e.value);
                s.verify_callback = e.ptr2 != 0;
            }
            TlsCall::SetSni => {
                let sni = e.text_str();
                self.session(pid, e.ssl, time).sni = Some(sni);
            }
            TlsCall::SetHost => {
                let host = e.text_str();
                if !host.is_empty() {
                    self.session(pid, e.ssl, time).hosts.push(host);
                }
            }
            TlsCall::SetFd => {
                self.session(pid, e.ssl, time).fd = Some(e.value as i32);
                self.bind(pid, e.tid, e.ssl, conns);
            }
            TlsCall::HandshakeReturn => {
                let s = self.session(pid, e.ssl, time);
                s.role = if s.role == Role::Unknown {
                    Role::Client
                } else {
                    s.role
                };
                s.handshake = if e.value == 1 {
                    Handshake::Completed
                } else {
                    Handshake::Failed(e.value)
                };
                self.bind(pid, e.tid, e.ssl, conns);
            }
            TlsCall::VerifyResult => {
                let s = self.session(pid, e.ssl, time);
                s.verify_result = Some(e.value);
                if s.handshake != Handshake::Completed
                    && !matches!(s.handshake, Handshake::Failed(_))
                {
                    // Read after the handshake (Node reads it from its handshake-done callback).
                    s.handshake = Handshake::Completed;
                }
                self.bind(pid, e.tid, e.ssl, conns);
            }
            TlsCall::VerifyCert => {
                self.session(pid, e.ssl, time).verify_cert.push(e.value);
                self.bind(pid, e.tid, e.ssl, conns);
            }
            TlsCall::StoreCtxError => {
                self.session(pid, e.ssl, time).store_errors.push(e.value);
            }
            TlsCall::ReadData => {
                // Reads queued before the kernel learned of the verdict, or on a session we
                // never saw start: nothing to add.
                if !self.sessions.contains_key(&(pid, e.ssl)) {
                    if self.settled.insert((pid, e.ssl)) {
                        out.push(TlsOutput::Settle {
                            tgid: pid,
                            ssl: e.ssl,
                        });
                    }
                    return;
                }
                self.bind(pid, e.tid, e.ssl, conns);
                let s = self.session(pid, e.ssl, time);
                s.used = true;
                if s.handshake != Handshake::Completed {
                    // Data can only flow after a completed handshake.
                    s.handshake = Handshake::Completed;
                }
                if s.role == Role::Server {
                    return;
                }
                if let Some(session) = self.sessions.remove(&(pid, e.ssl)) {
                    let mut session = session;
                    if let Some((path, kind)) = library {
                        session.library = session.library.or(Some(kind));
                        session.library_path.get_or_insert_with(|| path.to_string());
                    }
                    self.conclude(&session, conns, out);
                    self.settled.insert((pid, e.ssl));
                    out.push(TlsOutput::Settle {
                        tgid: pid,
                        ssl: e.ssl,
                    });
                }
                return;
            }
        }
        if let (Some((path, kind)), Some(s)) = (library, self.sessions.get_mut(&(pid, e.ssl))) {
            if s.library.is_none() || kind == LibraryKind::Embedded {
                s.library = Some(kind);
                s.library_path = Some(path.to_string());
            }
        }
    }

    pub fn on_cert(&mut self, c: &Cert, time: SystemTime, conns: &Connections) {
        let s = self.session(c.tgid, c.ssl, time);
        if c.truncated {
            s.truncated_cert = true;
        } else if !s.certs.contains(&c.der) && s.certs.len() < 16 {
            s.certs.push(c.der.clone());
        }
        self.bind(c.tgid, c.tid, c.ssl, conns);
    }

    /// The verdict on a session: one `tls_handshake` event and the findings it warrants.
    fn conclude(&self, s: &Session, _conns: &Connections, out: &mut Vec<TlsOutput>) {
        if s.role == Role::Server {
            return;
        }
        // A session that never started a handshake (created, then freed) says nothing.
        let started = s.handshake != Handshake::InProgress
            || !s.certs.is_empty()
            || !s.verify_cert.is_empty()
            || s.verify_result.is_some();
        if !started {
            return;
        }
        let embedded = s.library == Some(LibraryKind::Embedded);
        let app_checks_names = embedded || self.app_checks_names.contains(&s.pid);
        let openssl = s.openssl_verdict();
        let server_name = s.server_name();
        let chain = leaf_first(&s.certs);
        let verification = (!chain.is_empty())
            .then(|| x509::verify(&chain, server_name.as_deref(), &self.trust, s.first_seen));
        let leaf = verification.as_ref().and_then(|v| v.leaf.clone());
        let name_ok = match (chain.first(), server_name.as_deref()) {
            (Some(leaf_der), Some(name)) => x509::name_matches(leaf_der, name).ok(),
            _ => None,
        };
        let completed = s.handshake == Handshake::Completed;
        let mode_none = s.verify_mode.is_some_and(|m| m & SSL_VERIFY_PEER == 0);
        let mode_peer = s.verify_mode.is_some_and(|m| m & SSL_VERIFY_PEER != 0);
        let hostname_configured = !s.hosts.is_empty() || !s.ips.is_empty();

        let reason = match (openssl, verification.as_ref().and_then(|v| v.reason())) {
            (_, Some(ours)) => Some(ours),
            (OpensslVerdict::Failed(code), None) => {
                Some(format!("OpenSSL: {}", verify_error_name(code)))
            }
            _ => None,
        };
        let (openssl_status, openssl_code) = match openssl {
            OpensslVerdict::Unknown => ("unknown", None),
            OpensslVerdict::Ok => ("ok", Some(0)),
            OpensslVerdict::Failed(code) => ("failed", Some(code)),
        };
        let summary = match (completed, openssl) {
            (false, OpensslVerdict::Failed(code)) => {
                format!("rejected: {}", verify_error_name(code))
            }
            (false, _) => "handshake did not complete".to_string(),
            (true, OpensslVerdict::Failed(code)) => {
                format!("accepted despite {}", verify_error_name(code))
            }
            (true, OpensslVerdict::Ok) if name_ok == Some(false) => {
                "verified chain, name mismatch".into()
            }
            (true, OpensslVerdict::Ok) => "verified".into(),
            (true, OpensslVerdict::Unknown) if mode_none => {
                "not verified (verify mode NONE)".into()
            }
            (true, OpensslVerdict::Unknown) => "verification not observed".into(),
        };
        let tls = json!({
            "library": s.library,
            "library_path": s.library_path,
            "server_name": server_name,
            "sni": s.sni,
            "protocol_version": Value::Null,
            "verify_mode": s.verify_mode.map(verify_mode_name),
            "hostname_check": if hostname_configured {
                json!({"configured": true, "names": s.hosts.iter().chain(&s.ips).collect::<Vec<_>>()})
            } else if app_checks_names {
                json!({"configured": "in application code"})
            } else {
                json!({"configured": false})
            },
            "handshake": match s.handshake {
                Handshake::Completed => "completed".to_string(),
                Handshake::InProgress => "incomplete".to_string(),
                Handshake::Failed(ret) => format!("failed ({ret})"),
            },
            "application_data": s.used,
            "verification": {
                "summary": summary,
                "openssl": openssl_status,
                "openssl_code": openssl_code,
                "openssl_error": openssl_code.map(verify_error_name),
                "trusted_here": verification.as_ref().map(|v| v.trusted()),
                "reason": reason,
                "name_matches": name_ok,
            },
            "certificate": leaf,
            "chain_length": chain.len(),
            "certificate_truncated": s.truncated_cert,
        });
        let destination = s.destination.clone().map(|mut d| {
            if d.hostname.is_none() {
                d.hostname = s
                    .sni
                    .clone()
                    .or_else(|| s.hosts.first().cloned())
                    .map(Arc::from);
            }
            d
        });
        out.push(TlsOutput::Handshake {
            pid: s.pid,
            destination: destination.clone(),
            tls: tls.clone(),
        });

        let evidence = |extra: Value| {
            let mut e = json!({
                "library": s.library,
                "server_name": server_name,
                "verify_mode": s.verify_mode.map(verify_mode_name),
                "openssl_verify_result": openssl_code.map(|c| json!({"code": c, "error": verify_error_name(c)})),
                "reason": reason,
                "certificate": leaf,
                "application_data": s.used,
            });
            if let (Some(map), Value::Object(extra)) = (e.as_object_mut(), extra) {
                map.extend(extra);
            }
            if let Some(env) = self.env.get(&s.pid) {
                e["process_bypass"] = json!(format!("{}={}", env.name, env.value));
            }
            e
        };
        let mut finding = |id: FindingId, extra: Value| {
            out.push(TlsOutput::Finding {
                id,
                pid: s.pid,
                destination: destination.clone(),
                evidence: evidence(extra),
            });
        };

        if completed {
            if mode_none && !embedded {
                finding(
                    FindingId::TlsVerifyDisabled,
                    json!({"reason": format!(
                        "verify mode NONE{}",
                        reason.as_ref().map(|r| format!("; the certificate: {r}")).unwrap_or_default()
                    )}),
                );
            }
            let failed = matches!(openssl, OpensslVerdict::Failed(_));
            if failed && s.used {
                let how = if embedded {
                    "the application read data after OpenSSL reported the failure"
                } else if mode_peer {
                    "a verify callback overrode the failure"
                } else {
                    "verification was off"
                };
                finding(
                    FindingId::TlsInvalidCertAccepted,
                    json!({"accepted_because": how}),
                );
            }
            if !failed && name_ok == Some(false) && s.used {
                finding(
                    FindingId::TlsHostnameMismatchAccepted,
                    json!({"reason": format!(
                        "certificate names {:?} do not cover {}",
                        leaf.as_ref().map(|l| l.sans.clone()).unwrap_or_default(),
                        server_name.clone().unwrap_or_default()
                    )}),
                );
            }
            if mode_peer
                && openssl == OpensslVerdict::Ok
                && !hostname_configured
                && !app_checks_names
            {
                finding(
                    FindingId::TlsHostnameUnchecked,
                    json!({"reason": "chain verified, but no host name was given to OpenSSL (SSL_set1_host / X509_VERIFY_PARAM_set1_host)"}),
                );
            }
        } else if let OpensslVerdict::Failed(code) = openssl {
            if untrusted_ca(code) && !s.used {
                finding(FindingId::TlsUntrustedCa, json!({}));
            }
        }
    }
}

fn verify_mode_name(mode: i64) -> &'static str {
    if mode & SSL_VERIFY_PEER != 0 {
        "peer"
    } else {
        "none"
    }
}

fn ip_text(raw: &[u8]) -> Option<String> {
    match raw.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(raw).ok()?).to_string()),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(raw).ok()?).to_string()),
        _ => None,
    }
}

/// Order captured certificates leaf first: the leaf is the one that issued none of the others.
/// (Handshakes usually decode the leaf first, but trust-store lookups can interleave.)
fn leaf_first(certs: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let summaries: Vec<Option<x509::CertSummary>> =
        certs.iter().map(|c| x509::summarize(c).ok()).collect();
    let issuers: HashSet<&str> = summaries
        .iter()
        .flatten()
        .filter(|s| s.subject != s.issuer)
        .map(|s| s.issuer.as_str())
        .collect();
    let leaf = summaries
        .iter()
        .position(|s| {
            s.as_ref()
                .is_some_and(|s| !issuers.contains(s.subject.as_str()))
        })
        .unwrap_or(0);
    let mut chain = Vec::with_capacity(certs.len());
    if let Some(l) = certs.get(leaf) {
        chain.push(l.clone());
    }
    chain.extend(
        certs
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != leaf)
            .map(|(_, c)| c.clone()),
    );
    chain
}
