//! The server side: what a watched process's clients send it on a connection it accepted (the
//! first bytes, as the kernel captured them), and what a TLS server answers.
//!
//! [`InboundInspector`] walks the HTTP/1.x requests of one accepted connection with the same
//! request parser and credential detectors as the client side ([`super::http::inspect`]), so
//! a bearer token an MCP client sends is a [`Credential`] (kind, location, length, keyed
//! fingerprint, the value only in [`Credential::secrets`] for the scrubber) and never more.
//! On top of that it tells whether the request is MCP: a JSON-RPC 2.0 body (whose `method`
//! it keeps: `initialize`, `tools/call`, ...) or the `Mcp-Session-Id` /
//! `MCP-Protocol-Version` headers of the Streamable HTTP transport.
//!
//! [`response_head`] reads the status and `Strict-Transport-Security` header of the start of
//! a response a TLS server wrote, for `HSTS_MISSING`.
use serde::{Deserialize, Serialize};

use super::{
    http, printable_name, redact::Fingerprinter, AppProtocol, Credential, DetectConfig,
    HttpRequest, MAX_INSPECTED,
};

/// What one accepted connection's client sent (the verdict of an [`InboundInspector`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundRequest {
    /// `Http`, `Tls` (a ClientHello: the listener serves TLS) or `Unknown`.
    pub protocol: AppProtocol,
    /// The request judged: the first with credentials, else the first seen.
    pub http: Option<HttpRequest>,
    pub credentials: Vec<Credential>,
    /// The JSON-RPC `method` of the request's body (the first of a batch), when it has one.
    pub jsonrpc_method: Option<String>,
    /// A request on this connection was MCP (JSON-RPC 2.0 body or an MCP transport header).
    pub mcp: bool,
}

impl InboundRequest {
    fn bare(protocol: AppProtocol) -> Self {
        Self {
            protocol,
            http: None,
            credentials: Vec::new(),
            jsonrpc_method: None,
            mcp: false,
        }
    }
}

/// Header names of the MCP Streamable HTTP transport.
const MCP_HEADERS: [&str; 2] = ["mcp-session-id", "mcp-protocol-version"];

/// What the MCP layer of one request says: its JSON-RPC method, and whether it is MCP.
fn mcp_facts(request: &[u8]) -> (Option<String>, bool) {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(head_len)) = parsed.parse(request) else {
        return (None, false);
    };
    let mut mcp = parsed
        .headers
        .iter()
        .any(|h| MCP_HEADERS.iter().any(|m| h.name.eq_ignore_ascii_case(m)));
    let chunked = parsed.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            && String::from_utf8_lossy(h.value)
                .to_ascii_lowercase()
                .contains("chunked")
    });
    let body = request.get(head_len..).unwrap_or_default();
    let mut method = None;
    // A chunked body is not unframed here: its JSON-RPC method stays unknown.
    if !chunked && !body.is_empty() {
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
            let first = match &value {
                serde_json::Value::Array(items) => items.first(),
                other => Some(other),
            };
            if let Some(message) = first.and_then(|m| m.as_object()) {
                if message.get("jsonrpc").and_then(|v| v.as_str()) == Some("2.0") {
                    mcp = true;
                }
                method = message
                    .get("method")
                    .and_then(|m| m.as_str())
                    .map(|m| printable_name(m.as_bytes()));
            }
        }
    }
    (method, mcp)
}

/// Per-connection inspector of what a server receives, fed with successive captured
/// segments. Buffers at most [`MAX_INSPECTED`] bytes; the buffer's `Debug` shows its size only.
#[derive(Default)]
pub struct InboundInspector {
    buf: Vec<u8>,
    /// Where the next request starts (keep-alive: requests without credentials are skipped).
    next: usize,
    /// The first request, kept for a verdict without credentials.
    first: Option<InboundRequest>,
    /// A request on the connection was MCP.
    mcp: bool,
    decided: bool,
}

impl std::fmt::Debug for InboundInspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundInspector")
            .field("buffered", &self.buf.len())
            .field("decided", &self.decided)
            .finish()
    }
}

impl InboundInspector {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next captured bytes (`complete == false`: bytes are missing after them). `Some`
    /// once decided: at the first request carrying credentials, when the stream cannot be
    /// read further, or at a TLS ClientHello.
    pub fn feed(
        &mut self,
        data: &[u8],
        complete: bool,
        cfg: &DetectConfig,
        fp: &Fingerprinter,
    ) -> Option<InboundRequest> {
        if self.decided {
            return None;
        }
        let room = MAX_INSPECTED.saturating_sub(self.buf.len());
        self.buf.extend_from_slice(&data[..data.len().min(room)]);
        let end = !complete || self.buf.len() >= MAX_INSPECTED;
        self.decide(end, cfg, fp)
    }

    /// The connection ended: the verdict from what was seen (`None`: nothing was, or the
    /// verdict was given already).
    pub fn finish(&mut self, cfg: &DetectConfig, fp: &Fingerprinter) -> Option<InboundRequest> {
        if self.decided || (self.buf.is_empty() && self.first.is_none()) {
            self.conclude();
            return None;
        }
        self.decide(true, cfg, fp)
    }

    pub fn is_decided(&self) -> bool {
        self.decided
    }

    fn conclude(&mut self) {
        self.decided = true;
        self.buf = Vec::new();
    }

    fn decide(
        &mut self,
        end: bool,
        cfg: &DetectConfig,
        fp: &Fingerprinter,
    ) -> Option<InboundRequest> {
        let verdict = self.step(end, cfg, fp);
        if verdict.is_some() {
            self.conclude();
        }
        verdict
    }

    fn fallback(&mut self, partial_http: bool) -> InboundRequest {
        let mut verdict = match self.first.take() {
            Some(first) => first,
            None if partial_http => InboundRequest::bare(AppProtocol::Http),
            None => InboundRequest::bare(AppProtocol::Unknown),
        };
        verdict.mcp |= self.mcp;
        verdict
    }

    fn step(
        &mut self,
        end: bool,
        cfg: &DetectConfig,
        fp: &Fingerprinter,
    ) -> Option<InboundRequest> {
        if self.next == 0 && self.buf.first() == Some(&0x16) {
            // A TLS ClientHello (the kernel stops copying after it): a TLS listener.
            return Some(InboundRequest::bare(AppProtocol::Tls));
        }
        loop {
            let rest = self.buf.get(self.next..).unwrap_or_default();
            if rest.is_empty() {
                return end.then(|| self.fallback(false));
            }
            match http::inspect(rest, end, cfg, fp) {
                http::Parse::NeedMore => return end.then(|| self.fallback(true)),
                http::Parse::Partial => return Some(self.fallback(true)),
                http::Parse::NotHttp => return Some(self.fallback(false)),
                http::Parse::Done(exchange) => {
                    let consumed = exchange.consumed.min(rest.len());
                    let (jsonrpc_method, mcp) = mcp_facts(&rest[..consumed]);
                    self.mcp |= mcp;
                    let request = InboundRequest {
                        protocol: AppProtocol::Http,
                        http: Some(exchange.request),
                        credentials: exchange.credentials,
                        jsonrpc_method,
                        mcp: self.mcp,
                    };
                    if !request.credentials.is_empty() {
                        return Some(request);
                    }
                    if self.first.is_none() {
                        self.first = Some(request);
                    }
                    if exchange.ends_stream || consumed == 0 {
                        return Some(self.fallback(false));
                    }
                    self.next += consumed;
                }
            }
        }
    }
}

/// The status line and `Strict-Transport-Security` of the start of a server's response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseHead {
    pub status: u16,
    /// The header's value as sent (printable ASCII, bounded), `None` when the response has none.
    pub hsts: Option<String>,
}

/// The head of the HTTP/1.x response at the start of `data`, when it can be told whether it
/// carries `Strict-Transport-Security`: the head is complete, or the header is among its
/// complete lines. `None` for anything else (a body chunk, HTTP/2 frames, a head cut before
/// the header could be seen).
pub fn response_head(data: &[u8]) -> Option<ResponseHead> {
    if !data.starts_with(b"HTTP/1.") {
        return None;
    }
    let lines = data.iter().filter(|&&b| b == b'\n').count();
    let mut headers = vec![httparse::EMPTY_HEADER; lines.clamp(1, 256)];
    let mut response = httparse::Response::new(&mut headers);
    let complete = match response.parse(data) {
        Ok(httparse::Status::Complete(_)) => true,
        Ok(httparse::Status::Partial) => false,
        Err(_) => return None,
    };
    let status = response.code?;
    let hsts = |headers: &[httparse::Header<'_>]| {
        headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("strict-transport-security"))
            .map(|h| printable_name(h.value.trim_ascii()))
    };
    if complete {
        return Some(ResponseHead {
            status,
            hsts: hsts(response.headers),
        });
    }
    // Cut inside the head: parse its complete lines only, and say nothing unless the header
    // is among them.
    let last = data.iter().rposition(|&b| b == b'\n')?;
    let mut head = data[..=last].to_vec();
    head.extend_from_slice(b"\r\n");
    let mut headers = vec![httparse::EMPTY_HEADER; lines.clamp(1, 256)];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(&head) {
        Ok(httparse::Status::Complete(_)) => hsts(response.headers).map(|value| ResponseHead {
            status,
            hsts: Some(value),
        }),
        _ => None,
    }
}

/// `max-age` of a `Strict-Transport-Security` value, in seconds (`None`: absent or malformed).
pub fn hsts_max_age(value: &str) -> Option<u64> {
    value.split(';').find_map(|directive| {
        let (name, v) = directive.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| v.trim().trim_matches('"').parse::<u64>().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp() -> Fingerprinter {
        Fingerprinter::new([3; 32])
    }

    fn feed_all(data: &[u8]) -> Option<InboundRequest> {
        let mut i = InboundInspector::new();
        i.feed(data, true, &DetectConfig::default(), &fp())
            .or_else(|| i.finish(&DetectConfig::default(), &fp()))
    }

    #[test]
    fn bearer_on_an_mcp_initialize_is_a_redacted_credential() {
        let token = "sk-mcp-5c1b8e2f9a7d4b3c";
        let body = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}"#;
        let req = format!(
            "POST /mcp HTTP/1.1\r\nHost: 10.203.0.1:3000\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut i = InboundInspector::new();
        let v = i
            .feed(req.as_bytes(), true, &DetectConfig::default(), &fp())
            .expect("decided at the request with credentials");
        assert_eq!(v.protocol, AppProtocol::Http);
        assert_eq!(v.jsonrpc_method.as_deref(), Some("initialize"));
        assert!(v.mcp);
        assert_eq!(v.credentials.len(), 1);
        assert_eq!(v.credentials[0].location, "header:Authorization");
        assert!(v.credentials[0]
            .secrets
            .iter()
            .any(|s| s.as_bytes() == token.as_bytes()));
        let json = serde_json::to_string(&v).unwrap();
        assert!(!json.contains(token), "{json}");
        assert_eq!(v.http.unwrap().path, "/mcp");
    }

    #[test]
    fn keep_alive_requests_without_credentials_are_skipped() {
        let first = "GET /health HTTP/1.1\r\nHost: a\r\n\r\n";
        let second = "GET /mcp HTTP/1.1\r\nHost: a\r\nMcp-Session-Id: 1\r\nX-Api-Key: abcdefgh12345678\r\n\r\n";
        let v = feed_all(format!("{first}{second}").as_bytes()).unwrap();
        assert_eq!(v.http.as_ref().unwrap().path, "/mcp");
        assert_eq!(v.credentials.len(), 1);
        assert!(v.mcp);
        assert_eq!(v.jsonrpc_method, None);
    }

    #[test]
    fn clean_connection_decides_at_its_end() {
        let mut i = InboundInspector::new();
        let req = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(i.feed(req, true, &DetectConfig::default(), &fp()), None);
        let v = i.finish(&DetectConfig::default(), &fp()).unwrap();
        assert!(v.credentials.is_empty());
        assert!(!v.mcp);
        assert_eq!(i.finish(&DetectConfig::default(), &fp()), None);
    }

    #[test]
    fn tls_and_garbage() {
        assert_eq!(
            feed_all(&[0x16, 3, 1, 0, 5, 1, 0, 0, 1, 0])
                .unwrap()
                .protocol,
            AppProtocol::Tls
        );
        assert_eq!(
            feed_all(b"\x00\x01binary").unwrap().protocol,
            AppProtocol::Unknown
        );
    }

    #[test]
    fn jsonrpc_batches_name_their_first_method() {
        let body = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call"},{"jsonrpc":"2.0","id":2,"method":"ping"}]"#;
        let req = format!(
            "POST /mcp HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        assert_eq!(
            mcp_facts(req.as_bytes()),
            (Some("tools/call".to_string()), true)
        );
    }

    #[test]
    fn response_heads() {
        let r = response_head(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nok").unwrap();
        assert_eq!((r.status, r.hsts), (200, None));
        let r = response_head(
            b"HTTP/1.1 200 OK\r\nStrict-Transport-Security:  max-age=31536000; includeSubDomains\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            r.hsts.as_deref(),
            Some("max-age=31536000; includeSubDomains")
        );
        // Cut before the end of the head: nothing can be said unless the header was seen.
        assert_eq!(
            response_head(b"HTTP/1.1 200 OK\r\nContent-Type: a\r\nX-Lo"),
            None
        );
        let r = response_head(b"HTTP/1.1 200 OK\r\nStrict-Transport-Security: max-age=5\r\nX-Lo")
            .unwrap();
        assert_eq!(r.hsts.as_deref(), Some("max-age=5"));
        assert_eq!(response_head(b"\x00\x00\x12\x04"), None);
        assert_eq!(response_head(b"{\"jsonrpc\":\"2.0\"}"), None);
    }

    #[test]
    fn max_age() {
        assert_eq!(hsts_max_age("max-age=31536000"), Some(31_536_000));
        assert_eq!(
            hsts_max_age("includeSubDomains; MAX-AGE=\"300\""),
            Some(300)
        );
        assert_eq!(hsts_max_age("includeSubDomains"), None);
        assert_eq!(hsts_max_age("max-age=abc"), None);
    }
}
