//! Plaintext streams: the first bytes a targeted process writes to each TCP connection, fed to
//! the protocol detectors until they reach a verdict; credentials and authentication endpoints
//! seen without TLS become findings, and every verdict names the destination (Host header or
//! SNI) for the connection's `connect` event.
use std::{net::IpAddr, sync::Arc};

use serde_json::{json, Value};

use crate::{
    detect::{
        redact::Fingerprinter, secret::Secret, AppProtocol, DetectConfig, Observation,
        StreamInspector,
    },
    output::finding::FindingId,
};

/// What one stream's verdict means for the report.
#[derive(Debug, PartialEq)]
pub struct Verdict {
    /// The name the client used for the destination (HTTP Host, TLS SNI), when it is a name.
    pub hostname: Option<Arc<str>>,
    /// Findings (id and evidence) for this connection.
    pub findings: Vec<(FindingId, Value)>,
    /// Every credential value seen (never output: the caller scrubs them from everything it
    /// writes from now on).
    pub secrets: Vec<Secret>,
    /// The connection speaks TLS (the kernel goes on reporting its record headers).
    pub tls: bool,
}

/// The detectors' settings, shared by every stream (the streams themselves live with their
/// connection, see `connections::Conn::stream`).
pub struct Plaintext {
    config: DetectConfig,
    fingerprints: Fingerprinter,
}

/// Streams under inspection at once, at most, over all processes; beyond that new ones are not
/// inspected, and the caller counts them as dropped (`streams_full`).
pub const MAX_STREAMS: usize = 16_384;

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
    let secrets = o
        .credentials
        .iter()
        .flat_map(|c| c.secrets.iter().cloned())
        .collect();
    Verdict {
        hostname,
        findings,
        secrets,
        tls: o.protocol == AppProtocol::Tls,
    }
}

impl Plaintext {
    pub fn new(config: DetectConfig, fingerprints: Fingerprinter) -> Self {
        Self {
            config,
            fingerprints,
        }
    }

    /// Bytes written on a connection. `Some` once the stream is decided (the caller then drops
    /// the stream and stops the kernel copying it).
    pub fn feed(
        &self,
        stream: &mut StreamInspector,
        data: &[u8],
        complete: bool,
    ) -> Option<Observation> {
        stream.feed(data, complete, &self.config, &self.fingerprints)
    }

    /// The detectors' settings and fingerprint key, for the server side's inspector.
    pub(crate) fn detectors(&self) -> (&DetectConfig, &Fingerprinter) {
        (&self.config, &self.fingerprints)
    }

    /// The connection closed (or its process exited): the best observation from what was seen.
    pub fn finish(&self, mut stream: StreamInspector) -> Option<Observation> {
        stream.finish(&self.config, &self.fingerprints)
    }

    /// What an observation means under this configuration. An HTTP request that named no
    /// authentication endpoint when it was seen is checked against the configured hosts and
    /// paths again, so a replay with a new `--config` judges old traffic by the new rules.
    pub fn verdict(&self, o: &Observation) -> Verdict {
        if o.protocol == AppProtocol::Http && o.auth_endpoint.is_none() {
            if let Some(reason) = o
                .http
                .as_ref()
                .and_then(|r| crate::detect::http::auth_reason(r, &self.config))
            {
                let mut o = o.clone();
                o.auth_endpoint = Some(reason);
                return judge(&o);
            }
        }
        judge(o)
    }

    #[cfg(test)]
    fn write(&self, stream: &mut StreamInspector, data: &[u8], complete: bool) -> Option<Verdict> {
        self.feed(stream, data, complete).map(|o| self.verdict(&o))
    }

    #[cfg(test)]
    fn close(&self, stream: StreamInspector) -> Option<Verdict> {
        self.finish(stream).map(|o| self.verdict(&o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp() -> Fingerprinter {
        Fingerprinter::new([7; 32])
    }

    #[test]
    fn bearer_token_over_http_is_reported_without_the_token() {
        let p = Plaintext::new(DetectConfig::default(), fp());
        let secret = "tok-9f8e7d6c5b4a39281706";
        let req = format!("GET /v1/items HTTP/1.1\r\nHost: api.test:8080\r\nAuthorization: Bearer {secret}\r\n\r\n");
        let v = p
            .write(&mut StreamInspector::new(), req.as_bytes(), true)
            .expect("decided at the end of the headers");
        assert!(
            v.secrets.iter().any(|s| s.as_bytes() == secret.as_bytes()),
            "the token is handed to the scrubber"
        );
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
        let p = Plaintext::new(DetectConfig::default(), fp());
        let v = p
            .write(
                &mut StreamInspector::new(),
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
                findings: vec![],
                secrets: vec![],
                tls: true,
            }
        );
    }

    #[test]
    fn clean_requests_decide_at_close() {
        let p = Plaintext::new(DetectConfig::default(), fp());
        let mut stream = StreamInspector::new();
        assert!(p
            .write(
                &mut stream,
                b"GET / HTTP/1.1\r\nHost: 10.203.0.2:8080\r\n\r\n",
                true
            )
            .is_none());
        let v = p.close(stream).expect("a verdict at close");
        assert!(v.findings.is_empty());
        assert_eq!(v.hostname, None, "an IP literal is not a hostname");
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
