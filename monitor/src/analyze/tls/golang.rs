//! Go `crypto/tls` sessions (see `probes/gotls.rs`): the same [`Session`]s OpenSSL clients make,
//! built from Go's handshake instead of OpenSSL's API, so one verdict serves both.
//!
//! A session is a `*tls.Conn` in a full client handshake: `GoServerCert` opens it (with the
//! goroutine running it), the kernel's `SetFd` ties it to its connection and `Cert` events bring
//! the server's chain. `crypto/x509.(*Certificate).Verify` called by `verifyServerCertificate`
//! on the same goroutine means `InsecureSkipVerify` was off: Go then checked the chain and the
//! server name, and a failure ends the handshake, so a session that sent application data was
//! verified. No such call means verification was skipped (`InsecureSkipVerify: true`, with or
//! without a `VerifyPeerCertificate` callback): verify mode NONE, and the monitor's own X.509
//! check says whether the certificate would have passed. The verdict is due when the
//! connection sends application data, or when it closes or its process ends without.
use std::time::SystemTime;

use super::{
    Drops, GoVerify, Handshake, OpensslVerdict, Role, Session, TlsJudge, TlsOutput, TlsProcess,
    MAX_SESSIONS, SSL_VERIFY_PEER,
};
use crate::{analyze::connections::SockId, decode::Tls};

impl TlsProcess {
    /// `verifyServerCertificate` entered: a new session on connection object `e.ssl`, run by
    /// goroutine `e.ptr2`. (The probe fires again for the same call when Go grows the
    /// goroutine's stack and restarts the function: the session is kept then.)
    pub(super) fn go_server_cert(&mut self, e: &Tls, time: SystemTime, drops: &mut Drops) {
        let conn = e.ssl;
        if self.settled.remove(&conn) {
            self.sessions.remove(&conn);
        }
        let Some(s) = self.session(conn, time, drops) else {
            return;
        };
        if s.go.is_none() {
            s.role = Role::Client;
            s.go = Some(GoVerify::Skipped);
            s.verify_mode = Some(0);
        }
        let goroutine = e.ptr2;
        if !self.goroutines.contains_key(&goroutine) && self.goroutines.len() >= MAX_SESSIONS {
            drops.count("tls_sessions_full");
            return;
        }
        self.goroutines.insert(goroutine, conn);
    }

    /// `x509.(*Certificate).Verify` entered on goroutine `e.ptr2`; `e.value` 1 when
    /// `verifyServerCertificate` called it.
    pub(super) fn go_x509_verify(&mut self, e: &Tls) {
        let Some(&conn) = self.goroutines.get(&e.ptr2) else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        match (e.value, s.go) {
            (1, _) => {
                s.go = Some(GoVerify::Library);
                s.verify_mode = Some(SSL_VERIFY_PEER);
            }
            (_, Some(GoVerify::Skipped)) => {
                s.go = Some(GoVerify::Application);
                s.verify_callback = true;
            }
            _ => {}
        }
    }

    /// A Go session's verdict was reached: its goroutine's entry goes. (Go sessions are not
    /// kept as settled: no late event comes for them, and no `free` would ever remove them.)
    pub(super) fn go_concluded(&mut self, conn: u64) {
        self.goroutines.retain(|_, c| *c != conn);
    }

    /// Connection `sock` closed (or ended): a Go session on it that never sent application data
    /// is concluded now (a failed or unused handshake). `refused`: the client answered the
    /// server's handshake with an alert (`TlsRecords::refused`).
    pub fn connection_closed(
        &mut self,
        judge: &TlsJudge,
        sock: SockId,
        refused: bool,
        out: &mut Vec<TlsOutput>,
    ) {
        let conns: Vec<u64> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.go.is_some() && s.sock == Some(sock))
            .map(|(k, _)| *k)
            .collect();
        for conn in conns {
            if let Some(mut session) = self.sessions.remove(&conn) {
                session.go_refused = refused;
                judge.conclude(&session, self, out);
            }
            self.go_concluded(conn);
        }
    }
}

impl Session {
    /// A Go session's SNI: Go sends `ServerName` (unless it is an IP address), and the monitor
    /// read it from the ClientHello on the connection.
    pub(super) fn go_sni(&self) -> Option<String> {
        self.go?;
        let name = self.destination.as_ref()?.hostname.as_deref()?;
        name.parse::<std::net::IpAddr>()
            .is_err()
            .then(|| name.to_string())
    }

    /// What Go's own verification concluded, where it is known: verified when crypto/tls
    /// checked the chain and the session went on to complete (a failure ends the handshake).
    pub(super) fn go_verdict(&self) -> Option<OpensslVerdict> {
        self.go.map(|go| match (go, self.handshake) {
            (GoVerify::Library, Handshake::Completed) => OpensslVerdict::Ok,
            _ => OpensslVerdict::Unknown,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::{net::IpAddr, sync::Arc};

    use monitor_common::TlsCall;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use serde_json::Value;

    use super::super::*;
    use crate::{
        analyze::connections::{Conn, Connections},
        decode::{Cert, Family, Protocol},
        detect::x509::TrustStore,
        output::{finding::FindingId, Destination, Socket},
        probes::uprobes::LibraryKind,
    };

    const CONN: u64 = 0xc000_1a2000;
    const G: u64 = 0xc000_0071e0;
    const SK: SockId = 0xffff_8880_0000_2000;

    fn self_signed(name: &str) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec![name.to_string()]).unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    /// A CA and a leaf for `name` it signed.
    fn ca_and_leaf(name: &str) -> (Vec<u8>, Vec<u8>) {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca_der = ca.self_signed(&ca_key).unwrap().der().to_vec();
        let issuer = Issuer::from_params(&ca, &ca_key);
        let leaf = CertificateParams::new(vec![name.to_string()]).unwrap();
        let leaf_der = leaf
            .signed_by(&KeyPair::generate().unwrap(), &issuer)
            .unwrap()
            .der()
            .to_vec();
        (ca_der, leaf_der)
    }

    fn tls(call: TlsCall, ssl: u64, ptr2: u64, value: i64) -> Tls {
        Tls {
            tgid: 7,
            start: 1,
            tid: 8,
            ktime_ns: 0,
            call: call as u32,
            library: 0,
            ssl,
            ptr2,
            value,
            text: Vec::new(),
        }
    }

    fn conns() -> Connections {
        let mut c = Connections::default();
        let ip: IpAddr = "10.203.0.2".parse().unwrap();
        let socket = Socket {
            family: Family::Ipv4,
            protocol: Some(Protocol::Tcp),
            fd: 7,
        };
        let mut conn = Conn::new(
            7,
            Destination {
                ip,
                port: 8443,
                hostname: None,
            },
            socket,
        );
        conn.hostname = Some(Arc::from("api.test"));
        c.insert(3, SK, conn);
        c
    }

    /// One Go handshake: entry, socket, chain, the Verify call if any, then application data.
    fn handshake(
        judge: &TlsJudge,
        chain: &[Vec<u8>],
        verify: Option<i64>,
        used: bool,
        refused: bool,
    ) -> Vec<TlsOutput> {
        let mut p = TlsProcess::default();
        let conns = conns();
        let mut out = Vec::new();
        let mut drops = Drops::default();
        let go = Some(("/srv/github-mcp-server", LibraryKind::Go));
        let step = |p: &mut TlsProcess, e: Tls, out: &mut Vec<TlsOutput>, drops: &mut Drops| {
            p.on_tls(judge, &e, go, SystemTime::now(), &conns, out, drops)
        };
        step(
            &mut p,
            tls(TlsCall::GoServerCert, CONN, G, 1),
            &mut out,
            &mut drops,
        );
        // Go grew the goroutine's stack and entered again: the same session.
        step(
            &mut p,
            tls(TlsCall::GoServerCert, CONN, G, 1),
            &mut out,
            &mut drops,
        );
        step(
            &mut p,
            tls(TlsCall::SetFd, CONN, SK, 7),
            &mut out,
            &mut drops,
        );
        for der in chain {
            let cert = Cert {
                tgid: 7,
                start: 1,
                tid: 9,
                ktime_ns: 0,
                library: 0,
                ssl: CONN,
                der: der.clone(),
                truncated: false,
            };
            p.on_cert(&cert, SystemTime::now(), &conns, &mut drops);
        }
        if let Some(v) = verify {
            step(
                &mut p,
                tls(TlsCall::GoX509Verify, 0, G, v),
                &mut out,
                &mut drops,
            );
        }
        if used {
            assert!(p.app_data(judge, SK, &mut out));
        } else {
            p.connection_closed(judge, SK, refused, &mut out);
        }
        assert!(p.sessions.is_empty() && p.settled.is_empty() && p.goroutines.is_empty());
        out
    }

    fn ids(out: &[TlsOutput]) -> Vec<FindingId> {
        out.iter()
            .filter_map(|o| match o {
                TlsOutput::Finding { id, .. } => Some(*id),
                _ => None,
            })
            .collect()
    }

    fn handshake_event(out: &[TlsOutput]) -> &Value {
        out.iter()
            .find_map(|o| match o {
                TlsOutput::Handshake { tls, .. } => Some(tls),
                _ => None,
            })
            .expect("a tls_handshake event")
    }

    fn judge(trust: TrustStore) -> TlsJudge {
        TlsJudge::new(trust, Default::default())
    }

    #[test]
    fn insecure_skip_verify_with_a_self_signed_peer() {
        let der = self_signed("api.test");
        let out = handshake(&judge(TrustStore::empty()), &[der], None, true, false);
        assert_eq!(
            ids(&out),
            vec![
                FindingId::TlsVerifyDisabled,
                FindingId::TlsInvalidCertAccepted
            ]
        );
        let tls = handshake_event(&out);
        assert_eq!(tls["library"], "go");
        assert_eq!(tls["verify_mode"], "none");
        assert_eq!(tls["server_name"], "api.test");
        assert_eq!(tls["handshake"], "completed");
        assert!(tls["verification"]["summary"]
            .as_str()
            .unwrap()
            .contains("InsecureSkipVerify"));
        let (evidence, destination) = out
            .iter()
            .find_map(|o| match o {
                TlsOutput::Finding {
                    id: FindingId::TlsVerifyDisabled,
                    evidence,
                    destination,
                } => Some((evidence, destination)),
                _ => None,
            })
            .unwrap();
        assert!(evidence["reason"]
            .as_str()
            .unwrap()
            .contains("InsecureSkipVerify"));
        assert_eq!(destination.as_ref().unwrap().port, 8443);
    }

    #[test]
    fn crypto_tls_verified_the_chain() {
        let der = self_signed("api.test");
        // The monitor does not trust it, but Go did (its RootCAs): Go's verdict stands.
        let out = handshake(&judge(TrustStore::empty()), &[der], Some(1), true, false);
        assert_eq!(ids(&out), vec![]);
        let tls = handshake_event(&out);
        assert_eq!(tls["verify_mode"], "peer");
        assert_eq!(tls["verification"]["openssl"], "ok");
        assert_eq!(tls["verification"]["summary"], "verified");
    }

    #[test]
    fn a_callback_that_verifies_itself_is_not_called_disabled() {
        let der = self_signed("api.test");
        let out = handshake(&judge(TrustStore::empty()), &[der], Some(0), true, false);
        assert_eq!(ids(&out), vec![]);
        let tls = handshake_event(&out);
        assert!(tls["verification"]["summary"]
            .as_str()
            .unwrap()
            .contains("application code"));
    }

    #[test]
    fn a_valid_certificate_with_verification_off_is_still_disabled() {
        let (ca, leaf) = ca_and_leaf("api.test");
        let mut trust = TrustStore::empty();
        trust.add_der(&ca).unwrap();
        let out = handshake(&judge(trust), &[leaf, ca], None, true, false);
        assert_eq!(ids(&out), vec![FindingId::TlsVerifyDisabled]);
    }

    #[test]
    fn an_unused_session_is_concluded_at_close_without_a_finding() {
        let der = self_signed("api.test");
        let out = handshake(&judge(TrustStore::empty()), &[der], None, false, false);
        assert_eq!(ids(&out), vec![]);
        assert_eq!(handshake_event(&out)["handshake"], "incomplete");
    }

    #[test]
    fn a_refusal_of_an_untrusted_chain_is_an_untrusted_ca() {
        let der = self_signed("api.test");
        // crypto/tls verified (Verify called from verifyServerCertificate) and the client
        // answered with an alert: Go refused the CA the monitor does not trust either.
        let out = handshake(
            &judge(TrustStore::empty()),
            std::slice::from_ref(&der),
            Some(1),
            false,
            true,
        );
        assert_eq!(ids(&out), vec![FindingId::TlsUntrustedCa]);
        let tls = handshake_event(&out);
        assert_eq!(tls["handshake"], "incomplete");
        assert!(tls["verification"]["summary"]
            .as_str()
            .unwrap()
            .contains("rejected by crypto/tls"));
        // Closed without an alert: unused, not refused; nothing to say.
        let out = handshake(&judge(TrustStore::empty()), &[der], Some(1), false, false);
        assert_eq!(ids(&out), vec![]);
    }

    #[test]
    fn a_refusal_for_another_reason_is_not_blamed_on_the_ca() {
        // The chain is trusted here but names another host: the name, not the CA, was wrong.
        let (ca, leaf) = ca_and_leaf("other.test");
        let mut trust = TrustStore::empty();
        trust.add_der(&ca).unwrap();
        let out = handshake(&judge(trust), &[leaf.clone(), ca], Some(1), false, true);
        assert_eq!(ids(&out), vec![]);
        // Untrusted and misnamed: the reason cannot be told, so no finding either.
        let out = handshake(&judge(TrustStore::empty()), &[leaf], Some(1), false, true);
        assert_eq!(ids(&out), vec![]);
    }
}
