//! Protocol parsers and detection rules. Pure: bytes in, facts out, no I/O.
//!
//! The kernel hands userspace a bounded prefix of what a monitored client writes to each TCP
//! socket. [`StreamInspector`] accumulates those writes per connection, works out which protocol
//! the client speaks (TLS, HTTP/1.x, PostgreSQL, Redis) and whether it sends authentication
//! material in the clear, and returns one [`Observation`] per connection.
//!
//! Secrets never reach output from this module: every value found is turned into a
//! [`Credential`] at the point it is parsed. What is shown of it (serialised, in findings) is its
//! kind, location, length and keyed fingerprint. The raw value is kept too, in
//! [`Credential::secrets`], in every form it could be written in later (decoded and as sent:
//! the base64 of Basic credentials, the percent-encoded form of a URL or form value, each
//! cookie and the whole `Cookie` header), so that the writer can scrub those bytes from
//! everything it writes afterwards (`output::scrub`). That field cannot leak itself: it is
//! `#[serde(skip)]`, and a [`Secret`]'s `Debug` shows its length only and its bytes are zeroed
//! when dropped. The request path kept for evidence has credential-shaped segments replaced by
//! `<redacted>` (see [`token`]). The only other raw bytes held are the inspector's input
//! buffer, whose `Debug` shows its size only and which is freed with the verdict.
//!
//! Rules common to all protocols:
//! - Only the first [`MAX_INSPECTED`] bytes of a connection are looked at.
//! - The verdict comes as soon as it is certain: at the first HTTP request or Redis command
//!   carrying credentials (or an HTTP request to an authentication endpoint), after the
//!   PostgreSQL password message, at the end of a ClientHello. Requests and commands without
//!   findings are skipped (keep-alive, `PING` before `AUTH`), so a clean connection gets its
//!   verdict from [`StreamInspector::finish`] or when the buffer fills.
//! - A value cut by the capture limit is not reported: its length and fingerprint would be
//!   wrong, and a wrong fingerprint would make two sightings of one secret look different.
//! - After a write captured only in part (`complete == false`) the stream has a hole, so the
//!   verdict is given from what came before the hole.
//!
//! Not covered: HTTP/2 in the clear (h2c), compressed request bodies, path segments that are
//! secrets without a recognisable shape (a UUID or hex string used as a key: see [`token`]),
//! and protocols other than the four above (reported [`AppProtocol::Unknown`]).
use serde::{Deserialize, Serialize};

pub mod cmdline;
pub mod http;
pub mod inbound;
pub mod postgres;
pub mod redact;
pub mod redis;
pub mod secret;
pub mod tls_hello;
pub mod token;
pub mod x509;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod secret_tests;
#[cfg(test)]
mod stream_tests;
#[cfg(test)]
pub(crate) mod test_support;

use redact::Fingerprinter;
pub use secret::Secret;

/// Bytes of a connection's client stream that are buffered and inspected, at most.
pub const MAX_INSPECTED: usize = 16 * 1024;

/// User-tunable detection settings (built-ins always apply; these extend them).
#[derive(Clone, Debug, Default)]
pub struct DetectConfig {
    /// Extra API-key header names, case-insensitive.
    pub api_key_headers: Vec<String>,
    /// Hosts (HTTP `Host` header, lower case, without port) that are authentication endpoints.
    pub auth_hosts: Vec<regex::Regex>,
    /// Extra authentication endpoint path patterns, matched against the path without query, as
    /// shown in evidence (credential-shaped segments already replaced by `<redacted>`).
    pub auth_paths: Vec<regex::Regex>,
}

/// What sort of authentication material a [`Credential`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    Basic,
    Bearer,
    Digest,
    AwsSigv4,
    /// `Authorization` with any other scheme, or with a bare token.
    Authorization,
    ProxyAuthorization,
    ApiKey,
    Cookie,
    UrlUserinfo,
    QueryParameter,
    FormField,
    JsonField,
    PostgresPassword,
    PostgresMd5,
    RedisAuth,
    /// A request path segment shaped like a credential (`/bot<token>/getUpdates`, a GitHub or
    /// Slack token, a long random string): see [`token`].
    PathToken,
}

/// A secret seen in the clear, redacted: what kind, where, how long, and a keyed fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub kind: CredentialKind,
    /// Where it appeared, e.g. `header:Authorization`, `query:api_key`, `json:password`,
    /// `postgres:password_message`, `redis:AUTH`, `path:segment2`. Names only, never values.
    pub location: String,
    /// Byte length of the secret value only: for Basic the decoded password (the user part when
    /// the password is empty), for Bearer the token, for AWS SigV4 the access key id (the secret
    /// key never travels), for cookies the whole header value, for PostgreSQL MD5 the whole
    /// `md5...` string (35).
    pub length: usize,
    /// [`Fingerprinter::fingerprint`] of the secret value.
    pub fingerprint: String,
    /// The value itself (first) and every other form of it that could be written somewhere:
    /// for Basic the decoded `user:password` and the base64 token as sent, for URL userinfo,
    /// query and form values the raw percent-encoded text, for path tokens the raw segment,
    /// for cookies each cookie value of 8 bytes or more besides the whole header. Never
    /// serialised, `Debug` shows lengths only; kept so the output can be scrubbed of these
    /// bytes (see the module docs).
    #[serde(skip)]
    pub secrets: Vec<Secret>,
}

impl Credential {
    /// The only way parsers turn a secret into something they keep: the value's length and
    /// fingerprint are what is shown; the value itself goes into [`Credential::secrets`].
    pub fn redacted(
        kind: CredentialKind,
        location: impl Into<String>,
        secret: &[u8],
        fp: &Fingerprinter,
    ) -> Self {
        let mut secrets = Vec::new();
        secret::push_unique(&mut secrets, secret);
        Self {
            kind,
            location: location.into(),
            length: secret.len(),
            fingerprint: fp.fingerprint(secret),
            secrets,
        }
    }

    /// Adds another form of the value (as sent on the wire, encoded, or a larger string that
    /// contains it) to [`Credential::secrets`]; empty and repeated forms are skipped.
    pub fn with_form(mut self, form: &[u8]) -> Self {
        secret::push_unique(&mut self.secrets, form);
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppProtocol {
    Tls,
    Http,
    Postgres,
    Redis,
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRequest {
    pub method: String,
    /// The request path without query string (and without scheme and authority for
    /// absolute-form targets, so URL userinfo never lands here).
    pub path: String,
    /// `Host` header (or the authority of an absolute-form target), lower case, without port;
    /// IPv6 literals keep their brackets.
    pub host: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostgresStartup {
    pub user: Option<String>,
    pub database: Option<String>,
    /// The client asked for TLS first (SSLRequest); if a startup message follows in the clear,
    /// the server refused and the client carried on without TLS.
    pub ssl_requested: bool,
}

/// What a client->server stream revealed (the verdict).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub protocol: AppProtocol,
    pub tls_sni: Option<String>,
    pub http: Option<HttpRequest>,
    pub postgres: Option<PostgresStartup>,
    pub credentials: Vec<Credential>,
    /// Why the request goes to an authentication endpoint, e.g. "path /oauth/token" or
    /// "host auth.example.com matches auth_hosts".
    pub auth_endpoint: Option<String>,
}

impl Observation {
    fn bare(protocol: AppProtocol) -> Self {
        Self {
            protocol,
            tls_sni: None,
            http: None,
            postgres: None,
            credentials: Vec::new(),
            auth_endpoint: None,
        }
    }

    fn tls(sni: Option<String>, postgres: Option<PostgresStartup>) -> Self {
        Self {
            tls_sni: sni,
            postgres,
            ..Self::bare(AppProtocol::Tls)
        }
    }

    fn http(request: Option<HttpRequest>) -> Self {
        Self {
            http: request,
            ..Self::bare(AppProtocol::Http)
        }
    }

    fn from_exchange(exchange: http::Exchange) -> Self {
        Self {
            http: Some(exchange.request),
            credentials: exchange.credentials,
            auth_endpoint: exchange.auth_endpoint,
            ..Self::bare(AppProtocol::Http)
        }
    }

    fn from_postgres(session: postgres::Session) -> Self {
        Self {
            postgres: session.startup,
            credentials: session.credential.into_iter().collect(),
            ..Self::bare(AppProtocol::Postgres)
        }
    }

    fn redis(credential: Option<Credential>) -> Self {
        Self {
            credentials: credential.into_iter().collect(),
            ..Self::bare(AppProtocol::Redis)
        }
    }
}

/// Where a connection's inspection stands.
enum Stage {
    /// Protocol not known yet: every parser still in the running is asked.
    Sniffing,
    /// HTTP/1.x. `next` is where the next request starts (keep-alive: requests without findings
    /// are skipped, the first is kept for the verdict in case none has findings).
    Http {
        next: usize,
        first: Option<HttpRequest>,
    },
    /// Redis; `next` is where the next command starts.
    Redis {
        next: usize,
    },
    Postgres,
    /// A ClientHello starting at `hello_at` (after a PostgreSQL SSLRequest when `postgres` is
    /// set).
    Tls {
        hello_at: usize,
        postgres: Option<PostgresStartup>,
    },
    /// The verdict was returned; nothing more is buffered.
    Decided,
}

/// What sniffing concluded on the bytes so far.
enum Sniff {
    Wait,
    Switch(Stage),
    Verdict(Observation),
}

/// Per-connection inspector fed with successive client writes.
///
/// Buffers at most [`MAX_INSPECTED`] bytes. Each feed re-runs the parser of the current stage
/// from the start of the message it is waiting on (the parsers are not incremental), which is
/// cheap at this size and keeps the parsers pure functions of a byte slice.
pub struct StreamInspector {
    buf: Vec<u8>,
    stage: Stage,
}

impl std::fmt::Debug for StreamInspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The buffer holds raw client bytes, secrets included: show its size only.
        let stage = match self.stage {
            Stage::Sniffing => "sniffing",
            Stage::Http { .. } => "http",
            Stage::Redis { .. } => "redis",
            Stage::Postgres => "postgres",
            Stage::Tls { .. } => "tls",
            Stage::Decided => "decided",
        };
        f.debug_struct("StreamInspector")
            .field("stage", &stage)
            .field("buffered", &self.buf.len())
            .finish()
    }
}

impl Default for StreamInspector {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamInspector {
    pub fn new() -> Self {
        Self {
            buf: Vec::new(),
            stage: Stage::Sniffing,
        }
    }

    /// Feed the next client write.
    ///
    /// `complete == false`: the kernel captured only a prefix of this write; bytes are missing
    /// after it, so never wait for them (e.g. a body whose rest was cut).
    /// Returns `Some(verdict)` once decided (then further feeds return `None`); `None` while
    /// more bytes are needed.
    pub fn feed(
        &mut self,
        data: &[u8],
        complete: bool,
        cfg: &DetectConfig,
        fp: &Fingerprinter,
    ) -> Option<Observation> {
        if matches!(self.stage, Stage::Decided) {
            return None;
        }
        let room = MAX_INSPECTED.saturating_sub(self.buf.len());
        let taken = data.len().min(room);
        self.append(&data[..taken]);
        // A full buffer is as final as a hole: nothing after it will ever be inspected.
        let end = !complete || self.buf.len() >= MAX_INSPECTED;
        self.decide(end, cfg, fp)
    }

    /// The connection closed or the capture limit was reached: best verdict from what was seen
    /// (`None` if nothing was seen, or the verdict was already returned).
    pub fn finish(&mut self, cfg: &DetectConfig, fp: &Fingerprinter) -> Option<Observation> {
        if matches!(self.stage, Stage::Decided) {
            return None;
        }
        if self.buf.is_empty() {
            self.conclude();
            return None;
        }
        self.decide(true, cfg, fp)
    }

    /// Bytes currently buffered (at most [`MAX_INSPECTED`]; 0 once decided).
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Memory held for the buffer, for tests and metrics.
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Whether the verdict has been returned.
    pub fn is_decided(&self) -> bool {
        matches!(self.stage, Stage::Decided)
    }

    fn append(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let needed = self.buf.len() + data.len();
        if needed > self.buf.capacity() {
            // Grow geometrically but never past the inspection limit, so a connection costs at
            // most MAX_INSPECTED bytes of memory.
            let target = needed
                .max(self.buf.capacity().saturating_mul(2))
                .clamp(512, MAX_INSPECTED);
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.extend_from_slice(data);
    }

    fn conclude(&mut self) {
        self.stage = Stage::Decided;
        self.buf = Vec::new();
    }

    fn decide(&mut self, end: bool, cfg: &DetectConfig, fp: &Fingerprinter) -> Option<Observation> {
        if self.buf.is_empty() {
            // Nothing to judge yet; after a hole at the very start, nothing ever.
            if end {
                self.conclude();
            }
            return None;
        }
        let verdict = self.step(end, cfg, fp);
        if verdict.is_some() {
            self.conclude();
        }
        verdict
    }

    /// Runs the stage machine on the buffer. With `end`, always returns a verdict.
    fn step(&mut self, end: bool, cfg: &DetectConfig, fp: &Fingerprinter) -> Option<Observation> {
        // Stage switches happen at most twice (sniff -> postgres -> tls), bound the loop anyway.
        for _ in 0..4 {
            let Self { buf, stage } = self;
            match stage {
                Stage::Sniffing => match sniff(buf, end, cfg, fp) {
                    Sniff::Wait => return None,
                    Sniff::Verdict(observation) => return Some(observation),
                    Sniff::Switch(next) => *stage = next,
                },
                Stage::Http { next, first } => return http_step(buf, next, first, end, cfg, fp),
                Stage::Redis { next } => return redis_step(buf, next, end, fp),
                Stage::Postgres => match postgres::inspect(buf, end, fp) {
                    postgres::Parse::NotPostgres => {
                        return Some(Observation::bare(AppProtocol::Unknown))
                    }
                    postgres::Parse::NeedMore => return None,
                    postgres::Parse::Done(session) => {
                        return Some(Observation::from_postgres(session))
                    }
                    postgres::Parse::StartTls { hello_at } => {
                        *stage = Stage::Tls {
                            hello_at,
                            postgres: Some(PostgresStartup {
                                user: None,
                                database: None,
                                ssl_requested: true,
                            }),
                        }
                    }
                },
                Stage::Tls { hello_at, postgres } => {
                    let hello = buf.get(*hello_at..).unwrap_or_default();
                    return match tls_hello::inspect(hello, end) {
                        tls_hello::Hello::NeedMore => None,
                        tls_hello::Hello::ClientHello { sni } => {
                            Some(Observation::tls(sni, postgres.take()))
                        }
                        tls_hello::Hello::NotTls => Some(match postgres.take() {
                            // The SSLRequest was real even if what followed was not a
                            // ClientHello we understand.
                            Some(startup) => Observation {
                                postgres: Some(startup),
                                ..Observation::bare(AppProtocol::Postgres)
                            },
                            None => Observation::bare(AppProtocol::Unknown),
                        }),
                    };
                }
                Stage::Decided => return None,
            }
        }
        end.then(|| Observation::bare(AppProtocol::Unknown))
    }
}

/// Asks every parser about the first bytes. TLS and PostgreSQL are recognised from their first
/// bytes alone (0x16 and 0x00, which no text protocol starts with); HTTP and inline Redis are
/// both text, so HTTP, which validates its request line, wins while it is still possible.
fn sniff(buf: &[u8], end: bool, cfg: &DetectConfig, fp: &Fingerprinter) -> Sniff {
    match tls_hello::inspect(buf, end) {
        tls_hello::Hello::ClientHello { sni } => {
            return Sniff::Verdict(Observation::tls(sni, None))
        }
        tls_hello::Hello::NeedMore => {
            return Sniff::Switch(Stage::Tls {
                hello_at: 0,
                postgres: None,
            })
        }
        tls_hello::Hello::NotTls => {}
    }
    if !matches!(
        postgres::inspect(buf, end, fp),
        postgres::Parse::NotPostgres
    ) {
        return Sniff::Switch(Stage::Postgres);
    }
    let http = http::inspect(buf, end, cfg, fp);
    let redis = redis::inspect(buf, fp);
    let redis_possible = !matches!(redis, redis::Parse::NotRedis);
    match http {
        http::Parse::Done(_) | http::Parse::Partial => Sniff::Switch(Stage::Http {
            next: 0,
            first: None,
        }),
        http::Parse::NeedMore if redis_possible && !end => Sniff::Wait,
        http::Parse::NeedMore => Sniff::Switch(Stage::Http {
            next: 0,
            first: None,
        }),
        http::Parse::NotHttp if redis_possible => Sniff::Switch(Stage::Redis { next: 0 }),
        http::Parse::NotHttp => Sniff::Verdict(Observation::bare(AppProtocol::Unknown)),
    }
}

fn http_step(
    buf: &[u8],
    next: &mut usize,
    first: &mut Option<HttpRequest>,
    end: bool,
    cfg: &DetectConfig,
    fp: &Fingerprinter,
) -> Option<Observation> {
    // Whether the bytes after the last complete request still looked like HTTP.
    let fallback = |first: &mut Option<HttpRequest>, partial: bool| match first.take() {
        Some(request) => Observation::http(Some(request)),
        None if partial => Observation::http(None),
        None => Observation::bare(AppProtocol::Unknown),
    };
    loop {
        let rest = buf.get(*next..).unwrap_or_default();
        if rest.is_empty() {
            return end.then(|| fallback(first, false));
        }
        match http::inspect(rest, end, cfg, fp) {
            http::Parse::NeedMore => {
                return end.then(|| fallback(first, true));
            }
            http::Parse::Partial => return Some(fallback(first, true)),
            http::Parse::NotHttp => return Some(fallback(first, false)),
            http::Parse::Done(exchange) => {
                let has_findings =
                    !exchange.credentials.is_empty() || exchange.auth_endpoint.is_some();
                if has_findings {
                    return Some(Observation::from_exchange(*exchange));
                }
                if exchange.ends_stream || exchange.consumed == 0 {
                    // Nothing further to read: the verdict names the first request.
                    let request = first.take().unwrap_or(exchange.request);
                    return Some(Observation::http(Some(request)));
                }
                *next = next.saturating_add(exchange.consumed);
                first.get_or_insert(exchange.request);
            }
        }
    }
}

fn redis_step(buf: &[u8], next: &mut usize, end: bool, fp: &Fingerprinter) -> Option<Observation> {
    loop {
        let rest = buf.get(*next..).unwrap_or_default();
        if rest.is_empty() {
            return end.then(|| Observation::redis(None));
        }
        match redis::inspect(rest, fp) {
            // A command cut by the end: a RESP array is distinctive enough to call Redis even if
            // it is the first; a partial text line alone is not.
            redis::Parse::NeedMore => {
                return end.then(|| {
                    if *next > 0 || rest.first() == Some(&b'*') {
                        Observation::redis(None)
                    } else {
                        Observation::bare(AppProtocol::Unknown)
                    }
                })
            }
            // Something that is not Redis after commands that were: stop looking, the stream
            // has been identified already.
            redis::Parse::NotRedis if *next > 0 => return Some(Observation::redis(None)),
            redis::Parse::NotRedis => return Some(Observation::bare(AppProtocol::Unknown)),
            redis::Parse::Done(command) => {
                if command.credential.is_some() || command.consumed == 0 {
                    return Some(Observation::redis(command.credential));
                }
                *next = next.saturating_add(command.consumed);
            }
        }
    }
}

/// A name taken from the wire (header, field, user) made safe to print: printable ASCII only,
/// at most 64 bytes. Names are not secrets, but a hostile peer should not be able to put control
/// characters or megabytes into our output through them.
pub(crate) fn printable_name(raw: &[u8]) -> String {
    const MAX: usize = 64;
    let mut out: String = raw
        .iter()
        .take(MAX)
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect();
    if raw.len() > MAX {
        out.push_str("...");
    }
    out
}
