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

use super::{
    connections::{Connections, SockId},
    Drops,
};
use crate::{
    decode::{Cert, Tls},
    detect::x509::{self, TrustStore},
    output::{finding::FindingId, Destination},
    probes::uprobes::LibraryKind,
};

const SSL_VERIFY_PEER: i64 = 1;

mod golang;

/// Who verified a Go `crypto/tls` client's peer chain (see `golang.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GoVerify {
    /// `verifyServerCertificate` did not call `x509.(*Certificate).Verify`: InsecureSkipVerify.
    Skipped,
    /// crypto/tls verified the chain and the server name itself.
    Library,
    /// Verification skipped by crypto/tls, but application code (a `VerifyPeerCertificate` or
    /// `VerifyConnection` callback) called `Verify` during the handshake.
    Application,
}

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

/// The monitor's own check of a chain finds an untrusted issuer (or a self-signed leaf) and
/// nothing else: no other chain problem, and the name, where checked, matches.
fn only_the_issuer_is_wrong(v: Option<&x509::Verification>, name_ok: Option<bool>) -> bool {
    v.is_some_and(|v| {
        matches!(
            v.chain,
            Err(x509::Problem::UnknownIssuer | x509::Problem::SelfSigned)
        ) && v.chain_also.is_empty()
            && name_ok != Some(false)
    })
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
    library: Option<LibraryKind>,
    library_path: Option<String>,
    role: Role,
    verify_mode: Option<i64>,
    verify_callback: bool,
    hosts: Vec<String>,
    ips: Vec<String>,
    sni: Option<String>,
    fd: Option<i32>,
    /// The connection it runs on (kernel socket), once bound.
    sock: Option<SockId>,
    destination: Option<Destination>,
    certs: Vec<Vec<u8>>,
    truncated_cert: bool,
    verify_cert: Vec<i64>,
    store_errors: Vec<i64>,
    verify_result: Option<i64>,
    handshake: Handshake,
    used: bool,
    first_seen: SystemTime,
    /// A Go `crypto/tls` session: who verified the chain.
    go: Option<GoVerify>,
    /// A Go session whose client answered the handshake with an alert (Go's own verification
    /// result is not read: this is how its refusal shows).
    go_refused: bool,
}

impl Session {
    fn new(time: SystemTime) -> Self {
        Self {
            library: None,
            library_path: None,
            role: Role::Unknown,
            verify_mode: None,
            verify_callback: false,
            hosts: Vec::new(),
            ips: Vec::new(),
            sni: None,
            fd: None,
            sock: None,
            destination: None,
            certs: Vec::new(),
            truncated_cert: false,
            verify_cert: Vec::new(),
            store_errors: Vec::new(),
            verify_result: None,
            handshake: Handshake::InProgress,
            used: false,
            first_seen: time,
            go: None,
            go_refused: false,
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
            .or_else(|| {
                let d = self.destination.as_ref()?;
                d.hostname.as_deref().map(String::from)
            })
            .or_else(|| self.destination.as_ref().map(|d| d.ip.to_string()))
    }
}

#[derive(Clone, Debug, Default)]
struct CtxInfo {
    verify_mode: Option<i64>,
    verify_callback: bool,
}

/// Process-wide bypasses (environment variables).
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

/// What the tracker wants reported or done (about the process whose state it is).
#[derive(Debug)]
pub enum TlsOutput {
    Handshake {
        destination: Option<Destination>,
        tls: Value,
    },
    Finding {
        id: FindingId,
        destination: Option<Destination>,
        evidence: Value,
    },
    /// The session is settled: the kernel may stop reporting its reads and writes.
    Settle { ssl: u64 },
}

/// Sessions, contexts and verify parameters one process may have at once; beyond that new
/// ones are not followed (counted as `tls_sessions_full`).
pub const MAX_SESSIONS: usize = 4096;
const MAX_CTXS: usize = 1024;

/// One process's OpenSSL objects. SSL, SSL_CTX and X509_VERIFY_PARAM pointers only mean
/// something inside one address space, so they live here, in the process's own state: another
/// process freeing an object at the same address cannot touch them.
#[derive(Debug, Default)]
pub struct TlsProcess {
    sessions: HashMap<u64, Session>,
    /// Sessions already concluded, until they are freed (late events for them are ignored).
    settled: HashSet<u64>,
    ctxs: HashMap<u64, CtxInfo>,
    /// `X509_VERIFY_PARAM` -> the SSL object it belongs to (from `SSL_get0_param`).
    params: HashMap<u64, u64>,
    /// The process checks certificate host names in its own code (libcurl, libpq, ...).
    pub app_checks_names: bool,
    /// A process-wide bypass seen in its environment.
    pub env: Option<EnvBypass>,
    /// Go: the `*tls.Conn` each goroutine is verifying the server of.
    goroutines: HashMap<u64, u64>,
}

/// What every verdict needs besides the session: the monitor's own trust store.
pub struct TlsJudge {
    trust: TrustStore,
    /// Pins, high-value hosts and CA files from the config (`analyze::pins`).
    pins: super::pins::PinPolicy,
}

impl TlsJudge {
    pub fn new(trust: TrustStore, pins: super::pins::PinPolicy) -> Self {
        Self { trust, pins }
    }
}

impl TlsProcess {
    /// A process-wide bypass was seen (environment at start, or `setenv`): the finding, once.
    pub fn env_bypass(&mut self, bypass: EnvBypass, out: &mut Vec<TlsOutput>) {
        let evidence = json!({
            "variable": bypass.name,
            "value": bypass.value,
            "source": bypass.source,
            "reason": format!("{}={} ({})", bypass.name, bypass.value, bypass.source),
        });
        let first = self.env.is_none();
        self.env = Some(bypass);
        if first {
            out.push(TlsOutput::Finding {
                id: FindingId::TlsVerifyEnvDisabled,
                destination: None,
                evidence,
            });
        }
    }

    /// The process exited (or exec'd a new image): conclude every open session (a process may
    /// exit without `SSL_free`) and return the SSL objects the kernel may still hold state for.
    /// `refused`: whether the client's records on a connection say it refused the handshake
    /// (`TlsRecords::refused`; a Go process may exit before its socket's close is seen).
    pub fn finish(
        &mut self,
        judge: &TlsJudge,
        refused: impl Fn(SockId) -> bool,
        out: &mut Vec<TlsOutput>,
    ) -> Vec<u64> {
        let mut ssl: Vec<u64> = self.settled.drain().collect();
        let mut sessions: Vec<(u64, Session)> = self.sessions.drain().collect();
        sessions.sort_by_key(|(_, s)| s.first_seen);
        for (key, mut session) in sessions {
            session.go_refused |= session.sock.is_some_and(&refused);
            judge.conclude(&session, self, out);
            ssl.push(key);
        }
        self.ctxs.clear();
        self.params.clear();
        ssl
    }

    /// Entries in its tables (for `stats` status lines).
    pub fn table_size(&self) -> usize {
        self.sessions.len() + self.settled.len() + self.ctxs.len() + self.params.len()
    }

    fn session(&mut self, ssl: u64, time: SystemTime, drops: &mut Drops) -> Option<&mut Session> {
        if !self.sessions.contains_key(&ssl) && self.sessions.len() >= MAX_SESSIONS {
            drops.count("tls_sessions_full");
            return None;
        }
        Some(
            self.sessions
                .entry(ssl)
                .or_insert_with(|| Session::new(time)),
        )
    }

    /// Bind a session to the socket it runs on: `SSL_set_fd`, else the latest connect on the
    /// thread that drives its handshake.
    fn bind(&mut self, tid: u32, ssl: u64, conns: &Connections) {
        let Some(session) = self.sessions.get(&ssl) else {
            return;
        };
        if session.destination.is_some() {
            return;
        }
        let found = match (session.sock, session.fd) {
            (Some(sock), _) => conns.get(sock).map(|c| (sock, c)),
            (None, Some(fd)) => conns.by_fd(fd),
            (None, None) => conns.last_on_thread(tid).filter(|(id, _)| {
                !self
                    .sessions
                    .iter()
                    .any(|(k, s)| *k != ssl && s.sock == Some(*id))
            }),
        };
        if let Some((id, conn)) = found {
            let session = self.sessions.get_mut(&ssl).expect("checked above");
            session.sock = Some(id);
            session.fd = Some(conn.fd);
            session.destination = Some(conn.named_destination());
            // Application data already left on that connection.
            if conn.tls.used() {
                session.used = true;
            }
        }
    }

    /// The connection `sock` carried application data (its TLS records say so): the session on
    /// it was used. Its verdict is due now.
    pub fn app_data(&mut self, judge: &TlsJudge, sock: SockId, out: &mut Vec<TlsOutput>) -> bool {
        let Some(ssl) = self
            .sessions
            .iter()
            .find(|(_, s)| s.sock == Some(sock))
            .map(|(k, _)| *k)
        else {
            return false;
        };
        let Some(mut session) = self.sessions.remove(&ssl) else {
            return false;
        };
        session.used = true;
        if session.handshake != Handshake::Completed {
            // Data can only flow after a completed handshake.
            session.handshake = Handshake::Completed;
        }
        if session.role != Role::Server {
            judge.conclude(&session, self, out);
        }
        if session.go.is_some() {
            self.go_concluded(ssl);
        } else {
            self.settled.insert(ssl);
        }
        out.push(TlsOutput::Settle { ssl });
        true
    }

    #[allow(clippy::too_many_arguments)]
    pub fn on_tls(
        &mut self,
        judge: &TlsJudge,
        e: &Tls,
        library: Option<(&str, LibraryKind)>,
        time: SystemTime,
        conns: &Connections,
        out: &mut Vec<TlsOutput>,
        drops: &mut Drops,
    ) {
        // A concluded session only waits for its SSL_free (or its address to be reused).
        if !matches!(
            e.call(),
            TlsCall::SslNew
                | TlsCall::SslFree
                | TlsCall::CtxFree
                | TlsCall::CtxSetVerify
                | TlsCall::GoServerCert
        ) && self.settled.contains(&e.ssl)
        {
            return;
        }
        match e.call() {
            TlsCall::CtxSetVerify => {
                if !self.ctxs.contains_key(&e.ssl) && self.ctxs.len() >= MAX_CTXS {
                    drops.count("tls_sessions_full");
                    return;
                }
                let ctx = self.ctxs.entry(e.ssl).or_default();
                ctx.verify_mode = Some(e.value);
                ctx.verify_callback = e.ptr2 != 0;
            }
            TlsCall::CtxFree => {
                self.ctxs.remove(&e.ssl);
            }
            TlsCall::GetParam => {
                if self.sessions.contains_key(&e.ssl) || self.params.len() < MAX_SESSIONS {
                    self.params.insert(e.ptr2, e.ssl);
                }
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
                if let Some(ssl) = self.params.get(&e.ssl).copied() {
                    let Some(s) = self.session(ssl, time, drops) else {
                        return;
                    };
                    if e.call() == TlsCall::ParamSetIp {
                        s.ips.push(name);
                    } else {
                        s.hosts.push(name);
                    }
                }
            }
            TlsCall::SslNew => {
                let ctx = self.ctxs.get(&e.ptr2).cloned().unwrap_or_default();
                // A reused address is a new session.
                self.settled.remove(&e.ssl);
                self.sessions.remove(&e.ssl);
                let Some(s) = self.session(e.ssl, time, drops) else {
                    return;
                };
                s.verify_mode = ctx.verify_mode;
                s.verify_callback = ctx.verify_callback;
            }
            TlsCall::SslFree => {
                if let Some(session) = self.sessions.remove(&e.ssl) {
                    judge.conclude(&session, self, out);
                }
                self.settled.remove(&e.ssl);
                self.params.retain(|_, owner| *owner != e.ssl);
            }
            TlsCall::ServerRole => {
                if let Some(s) = self.sessions.get_mut(&e.ssl) {
                    s.role = Role::Server;
                }
                out.push(TlsOutput::Settle { ssl: e.ssl });
            }
            TlsCall::ClientRole => {
                if let Some(s) = self.session(e.ssl, time, drops) {
                    s.role = Role::Client;
                }
            }
            TlsCall::SetVerify => {
                if let Some(s) = self.session(e.ssl, time, drops) {
                    s.verify_mode = Some(e.value);
                    s.verify_callback = e.ptr2 != 0;
                }
            }
            TlsCall::SetSni => {
                let sni = e.text_str();
                if let Some(s) = self.session(e.ssl, time, drops) {
                    s.sni = Some(sni);
                }
            }
            TlsCall::SetHost => {
                let host = e.text_str();
                if !host.is_empty() {
                    if let Some(s) = self.session(e.ssl, time, drops) {
                        s.hosts.push(host);
                    }
                }
            }
            TlsCall::SetFd => {
                if let Some(s) = self.session(e.ssl, time, drops) {
                    s.fd = Some(e.value as i32);
                    // The kernel named the socket behind the descriptor.
                    s.sock = (e.ptr2 != 0).then_some(e.ptr2);
                }
                self.bind(e.tid, e.ssl, conns);
            }
            TlsCall::HandshakeReturn => {
                let Some(s) = self.session(e.ssl, time, drops) else {
                    return;
                };
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
                self.bind(e.tid, e.ssl, conns);
            }
            TlsCall::VerifyResult => {
                let Some(s) = self.session(e.ssl, time, drops) else {
                    return;
                };
                s.verify_result = Some(e.value);
                if s.handshake != Handshake::Completed
                    && !matches!(s.handshake, Handshake::Failed(_))
                {
                    // Read after the handshake (Node reads it from its handshake-done callback).
                    s.handshake = Handshake::Completed;
                }
                self.bind(e.tid, e.ssl, conns);
            }
            TlsCall::VerifyCert => {
                if let Some(s) = self.session(e.ssl, time, drops) {
                    if s.verify_cert.len() < MAX_CALLS_KEPT {
                        s.verify_cert.push(e.value);
                    }
                }
                self.bind(e.tid, e.ssl, conns);
            }
            TlsCall::StoreCtxError => {
                if let Some(s) = self.session(e.ssl, time, drops) {
                    if s.store_errors.len() < MAX_CALLS_KEPT {
                        s.store_errors.push(e.value);
                    }
                }
            }
            TlsCall::GoServerCert => self.go_server_cert(e, time, drops),
            TlsCall::GoX509Verify => self.go_x509_verify(e),
        }
        if let (Some((path, kind)), Some(s)) = (library, self.sessions.get_mut(&e.ssl)) {
            if s.library.is_none() || kind == LibraryKind::Embedded {
                s.library = Some(kind);
                s.library_path = Some(path.to_string());
            }
        }
    }

    pub fn on_cert(&mut self, c: &Cert, time: SystemTime, conns: &Connections, drops: &mut Drops) {
        if self.settled.contains(&c.ssl) {
            return;
        }
        let Some(s) = self.session(c.ssl, time, drops) else {
            return;
        };
        if c.truncated {
            s.truncated_cert = true;
        } else if !s.certs.contains(&c.der) && s.certs.len() < 16 {
            s.certs.push(c.der.clone());
        }
        self.bind(c.tid, c.ssl, conns);
    }
}

/// Verification calls kept per session (a handshake makes a handful).
const MAX_CALLS_KEPT: usize = 64;

impl TlsJudge {
    /// The verdict on a session: one `tls_handshake` event and the findings it warrants.
    fn conclude(&self, s: &Session, process: &TlsProcess, out: &mut Vec<TlsOutput>) {
        if s.role == Role::Server {
            return;
        }
        // A session that never started a handshake (created, then freed) says nothing.
        let started = s.handshake != Handshake::InProgress
            || !s.certs.is_empty()
            || !s.verify_cert.is_empty()
            || s.verify_result.is_some()
            || s.go.is_some();
        if !started {
            return;
        }
        let embedded = s.library == Some(LibraryKind::Embedded);
        let app_checks_names =
            embedded || process.app_checks_names || s.go == Some(GoVerify::Library);
        let openssl = s.go_verdict().unwrap_or_else(|| s.openssl_verdict());
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
        // crypto/tls verified the chain and the client's answer was an alert: Go refused it.
        let go_refused = s.go == Some(GoVerify::Library) && s.go_refused && !completed;
        let summary = match (completed, openssl) {
            (false, OpensslVerdict::Failed(code)) => {
                format!("rejected: {}", verify_error_name(code))
            }
            (false, _) if go_refused => {
                "rejected by crypto/tls (the client answered with an alert)".into()
            }
            (false, _) => "handshake did not complete".to_string(),
            (true, OpensslVerdict::Failed(code)) => {
                format!("accepted despite {}", verify_error_name(code))
            }
            (true, OpensslVerdict::Ok) if name_ok == Some(false) => {
                "verified chain, name mismatch".into()
            }
            (true, OpensslVerdict::Ok) => "verified".into(),
            (true, OpensslVerdict::Unknown) if s.go == Some(GoVerify::Application) => {
                "verified in application code (x509 Verify called from a crypto/tls callback)"
                    .into()
            }
            (true, OpensslVerdict::Unknown) if s.go.is_some() => {
                "not verified (crypto/tls InsecureSkipVerify)".into()
            }
            (true, OpensslVerdict::Unknown) if mode_none => {
                "not verified (verify mode NONE)".into()
            }
            (true, OpensslVerdict::Unknown) => "verification not observed".into(),
        };
        let tls = json!({
            "library": s.library,
            "library_path": s.library_path,
            "server_name": server_name,
            "sni": s.sni.clone().or_else(|| s.go_sni()),
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
            destination: destination.clone(),
            tls,
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
            if let Some(env) = &process.env {
                e["process_bypass"] = json!(format!("{}={}", env.name, env.value));
            }
            e
        };
        let mut pin_names: Vec<&str> = s.hosts.iter().map(String::as_str).collect();
        pin_names.extend(s.sni.as_deref().filter(|sni| !pin_names.contains(sni)));
        if pin_names.is_empty() {
            pin_names.extend(server_name.as_deref());
        }
        let pin_input = super::pins::Handshake {
            names: pin_names,
            port: s.destination.as_ref().map(|d| d.port),
            chain: &chain,
            truncated: s.truncated_cert,
            completed,
            trusted_here: verification.as_ref().map(|v| v.trusted()),
            time: s.first_seen,
        };
        let mut finding = |id: FindingId, extra: Value| {
            out.push(TlsOutput::Finding {
                id,
                destination: destination.clone(),
                evidence: evidence(extra),
            });
        };

        if completed {
            if mode_none && !embedded && s.go != Some(GoVerify::Application) {
                let off = match s.go {
                    Some(_) => {
                        "crypto/tls InsecureSkipVerify: the chain and name were not verified"
                    }
                    None => "verify mode NONE",
                };
                finding(
                    FindingId::TlsVerifyDisabled,
                    json!({"reason": format!(
                        "{off}{}",
                        reason.as_ref().map(|r| format!("; the certificate: {r}")).unwrap_or_default()
                    )}),
                );
            }
            let failed = matches!(openssl, OpensslVerdict::Failed(_))
                || (s.go == Some(GoVerify::Skipped) && reason.is_some());
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
            let go_checked = matches!(s.go, Some(GoVerify::Library | GoVerify::Application));
            if !failed && name_ok == Some(false) && s.used && !go_checked {
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
                finding(
                    FindingId::TlsUntrustedCa,
                    self.pins.untrusted_ca(&pin_input, &self.trust),
                );
            }
        } else if go_refused && !s.used && only_the_issuer_is_wrong(verification.as_ref(), name_ok)
        {
            // Go's reason is not read; it is taken to be the CA only when the monitor's own
            // check finds nothing else wrong (the name matches, nothing expired).
            finding(
                FindingId::TlsUntrustedCa,
                self.pins.untrusted_ca(&pin_input, &self.trust),
            );
        }
        for (id, extra) in self.pins.judge(&pin_input, &self.trust) {
            finding(id, extra);
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
