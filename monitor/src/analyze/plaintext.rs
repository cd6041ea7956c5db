//! Plaintext streams: the first bytes a targeted process writes to each TCP connection, fed to
//! the protocol detectors until they reach a verdict; credentials and authentication endpoints
//! seen without TLS become findings, and every verdict names the destination (Host header or
//! SNI) for the connection's `connect` event.
use std::{collections::HashMap, net::IpAddr, sync::Arc};

use serde_json::{json, Value};

use crate::{
    detect::{redact::Fingerprinter, AppProtocol, DetectConfig, Observation, StreamInspector},
    output::{finding::FindingId, Destination},
};

/// What one stream's verdict means for the report.
#[derive(Debug, PartialEq)]
pub struct Verdict {
    /// The name the client used for the destination (HTTP Host, TLS SNI), when it is a name.
    pub hostname: Option<Arc<str>>,
    /// Findings (id and evidence) for this connection.
    pub findings: Vec<(FindingId, Value)>,
}

struct Stream {
    inspector: StreamInspector,
}

pub struct Plaintext {
    streams: HashMap<(u32, i32), Stream>,
    config: DetectConfig,
    fingerprints: Fingerprinter,
}

/// Streams open at once, at most; beyond that new ones are not inspected (and say so in the
/// drop counters of the caller).
const MAX_STREAMS: usize = 16_384;

/// `api.test:8080` -> `api.test`; IP literals are not names.
fn host_name(host: &str) -> Option<Arc<str>> {
    let bare = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(h, _)| h)
    };
    (!bare.is_empty() && bare.parse::<IpAddr>().is_err())
        .then(|| Arc::from(bare.to_ascii_lowercase()))
}

fn protocol_name(p: AppProtocol) -> &'static str {
    match p {
        AppProtocol::Tls => "tls",
        AppProtocol::Http => "http",
        AppProtocol::Postgres => "postgresql",
        AppProtocol::Redis => "redis",
        AppProtocol::Unknown => "unknown",
    }
}

/// Findings for a verdict. Pure and separate so it is tested on observations directly.
pub fn judge(o: &Observation) -> Verdict {
    let hostname = o
        .http
        .as_ref()
        .and_then(|h| h.host.as_deref())
        .or(o.tls_sni.as_deref())
        .and_then(host_name);
    let mut findings = Vec::new();
    if o.protocol != AppProtocol::Tls {
        let base = json!({
            "protocol": protocol_name(o.protocol),
            "request": o.http,
            "postgres": o.postgres,
        });
        if !o.credentials.is_empty() {
            let mut evidence = base.clone();
            let kinds: Vec<String> = o
                .credentials
                .iter()
                .map(|c| {
                    format!(
                        "{} in {}",
                        serde_json::to_value(c.kind)
                            .ok()
                            .and_then(|v| v.as_str().map(String::from))
                            .unwrap_or_default(),
                        c.location
                    )
                })
                .collect();
            evidence["credentials"] = json!(o.credentials);
            evidence["reason"] = json!(format!(
                "{} sent over plaintext {}",
                kinds.join(", "),
                protocol_name(o.protocol)
            ));
            findings.push((FindingId::PlaintextCredentials, evidence));
        }
        if o.protocol == AppProtocol::Http {
            if let Some(why) = &o.auth_endpoint {
                let mut evidence = base;
                evidence["auth_endpoint"] = json!(why);
                evidence["credentials_seen"] = json!(!o.credentials.is_empty());
                evidence["reason"] =
                    json!(format!("authentication endpoint over plain HTTP: {why}"));
                findings.push((FindingId::PlaintextAuthEndpoint, evidence));
            }
        }
    }
    Verdict { hostname, findings }
}

impl Plaintext {
    pub fn new(config: DetectConfig, fingerprints: Fingerprinter) -> Self {
        Self {
            streams: HashMap::new(),
            config,
            fingerprints,
        }
    }

    /// Bytes written on a connection. `Some` once the stream is decided (the caller then stops
    /// the kernel copying it).
    pub fn write(&mut self, pid: u32, fd: i32, data: &[u8], complete: bool) -> Option<Verdict> {
        if !self.streams.contains_key(&(pid, fd)) && self.streams.len() >= MAX_STREAMS {
            return None;
        }
        let stream = self.streams.entry((pid, fd)).or_insert_with(|| Stream {
            inspector: StreamInspector::new(),
        });
        let observation =
            stream
                .inspector
                .feed(data, complete, &self.config, &self.fingerprints)?;
        self.streams.remove(&(pid, fd));
        Some(judge(&observation))
    }

    /// The connection closed (or its process exited): the best verdict from what was seen.
    pub fn close(&mut self, pid: u32, fd: i32) -> Option<Verdict> {
        let mut stream = self.streams.remove(&(pid, fd))?;
        stream
            .inspector
            .finish(&self.config, &self.fingerprints)
            .map(|o| judge(&o))
    }

    /// A new connect on an fd: whatever was there before is gone.
    pub fn reset(&mut self, pid: u32, fd: i32) {
        self.streams.remove(&(pid, fd));
    }

    pub fn process_exit(&mut self, pid: u32) -> Vec<(i32, Verdict)> {
        let fds: Vec<i32> = self
            .streams
            .keys()
            .filter(|k| k.0 == pid)
            .map(|k| k.1)
            .collect();
        fds.into_iter()
            .filter_map(|fd| self.close(pid, fd).map(|v| (fd, v)))
            .collect()
    }
}

/// Attach the learned hostname to a destination.
pub fn named(mut destination: Destination, hostname: Option<&Arc<str>>) -> Destination {
    if destination.hostname.is_none() {
        destination.hostname = hostname.cloned();
    }
    destination
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp() -> Fingerprinter {
        Fingerprinter::new([7; 32])
    }

    #[test]
    fn bearer_token_over_http_is_reported_without_the_token() {
        let mut p = Plaintext::new(DetectConfig::default(), fp());
        let secret = "tok-9f8e7d6c5b4a39281706";
        let req = format!("GET /v1/items HTTP/1.1\r\nHost: api.test:8080\r\nAuthorization: Bearer {secret}\r\n\r\n");
        let v = p
            .write(1, 5, req.as_bytes(), true)
            .expect("decided at the end of the headers");
        assert_eq!(v.hostname.as_deref(), Some("api.test"));
        assert_eq!(v.findings.len(), 1);
        let (id, evidence) = &v.findings[0];
        assert_eq!(*id, FindingId::PlaintextCredentials);
        assert_eq!(evidence["credentials"][0]["kind"], "bearer");
        assert_eq!(
            evidence["credentials"][0]["location"],
            "header:Authorization"
        );
        assert_eq!(evidence["credentials"][0]["length"], secret.len());
        assert_eq!(evidence["request"]["path"], "/v1/items");
        assert!(!evidence.to_string().contains(secret));
    }

    #[test]
    fn token_endpoint_is_reported_even_without_credentials() {
        let mut p = Plaintext::new(DetectConfig::default(), fp());
        let v = p
            .write(
                1,
                5,
                b"POST /oauth/token HTTP/1.1\r\nHost: auth.test\r\nContent-Length: 0\r\n\r\n",
                true,
            )
            .unwrap();
        let ids: Vec<FindingId> = v.findings.iter().map(|f| f.0).collect();
        assert_eq!(ids, vec![FindingId::PlaintextAuthEndpoint]);
        assert_eq!(v.findings[0].1["credentials_seen"], false);
    }

    #[test]
    fn tls_gives_the_sni_and_no_finding() {
        let o = Observation {
            protocol: AppProtocol::Tls,
            tls_sni: Some("API.test".into()),
            http: None,
            postgres: None,
            credentials: Vec::new(),
            auth_endpoint: None,
        };
        assert_eq!(
            judge(&o),
            Verdict {
                hostname: Some("api.test".into()),
                findings: vec![]
            }
        );
    }

    #[test]
    fn clean_requests_decide_at_close() {
        let mut p = Plaintext::new(DetectConfig::default(), fp());
        assert!(p
            .write(
                2,
                9,
                b"GET / HTTP/1.1\r\nHost: 10.203.0.2:8080\r\n\r\n",
                true
            )
            .is_none());
        let v = p.close(2, 9).expect("a verdict at close");
        assert!(v.findings.is_empty());
        assert_eq!(v.hostname, None, "an IP literal is not a hostname");
        assert!(p.close(2, 9).is_none());
    }

    #[test]
    fn host_names() {
        assert_eq!(host_name("api.test:8080").as_deref(), Some("api.test"));
        assert_eq!(host_name("[fd00:203::2]:8080"), None);
        assert_eq!(host_name("10.203.0.2"), None);
        assert_eq!(host_name(""), None);
        assert_eq!(host_name("Example.COM").as_deref(), Some("example.com"));
    }
}
