//! HTTP/1.x requests: which endpoint a client calls and which authentication material it sends
//! in the clear (authorization and API-key headers, cookies, URL userinfo and query parameters,
//! credential-shaped path segments, form and JSON bodies).
//!
//! The path kept in [`HttpRequest`] (which goes into findings' evidence) has credential-shaped
//! segments replaced by `<redacted>` ([`super::token::redact_path`]); every credential keeps its
//! value in the forms it was sent in (see [`Credential::secrets`]).
//!
//! [`inspect`] looks at one request at the start of a buffer; the caller moves on to the next
//! one (keep-alive, pipelining) with [`Exchange::consumed`]. Request lines and headers are
//! parsed by `httparse`, query strings and form bodies by `form_urlencoded`, JSON bodies by
//! `serde_json`.
use std::borrow::Cow;

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

use super::redact::Fingerprinter;
use super::secret::{push_unique, Secret};
use super::{printable_name, token, Credential, CredentialKind, DetectConfig, HttpRequest};

mod auth_endpoint;
mod body;
pub(crate) mod names;

pub use auth_endpoint::{builtin_reason as builtin_auth_endpoint, reason as auth_reason};

/// Longest method token accepted while sniffing: standard and WebDAV methods are far shorter,
/// and this rejects text that is not HTTP without waiting for a whole buffer of it.
const MAX_METHOD_LEN: usize = 24;
/// Header lines parsed per request. More is not a request any real client sends.
const MAX_HEADERS: usize = 256;

/// What the bytes at the start of a buffer are, as far as HTTP is concerned.
#[derive(Debug)]
pub enum Parse {
    /// Could still be an HTTP request; more bytes needed (never returned when `end`).
    NeedMore,
    /// Not an HTTP/1.x request.
    NotHttp,
    /// An HTTP request line started, but the stream ended before it did.
    Partial,
    /// One request, inspected.
    Done(Box<Exchange>),
}

/// One inspected request. Holds only redacted facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    pub request: HttpRequest,
    pub credentials: Vec<Credential>,
    pub auth_endpoint: Option<String>,
    /// Bytes of the buffer this request used (head and body): the next request starts there.
    pub consumed: usize,
    /// Nothing after this request can be read as another request: the connection switches
    /// protocol (CONNECT, Upgrade), the body framing is unusable, or the stream ended inside
    /// this request.
    pub ends_stream: bool,
}

/// Inspects the request at the start of `buf`.
///
/// `end`: no bytes will follow `buf` (connection closed, capture cut, buffer full). Then a
/// request whose head or body is incomplete is inspected as far as it goes: complete header
/// lines and complete body fields only.
pub fn inspect(buf: &[u8], end: bool, cfg: &DetectConfig, fp: &Fingerprinter) -> Parse {
    match inspect_request(buf, end, cfg, fp) {
        Parse::Done(mut exchange) => {
            // The weakest evidence, so it only applies when nothing firmer (path, configured
            // host, grant type) gave a reason.
            if exchange.auth_endpoint.is_none() {
                exchange.auth_endpoint = auth_endpoint::identity_provider_host(&exchange.request);
            }
            Parse::Done(exchange)
        }
        other => other,
    }
}

fn inspect_request(buf: &[u8], end: bool, cfg: &DetectConfig, fp: &Fingerprinter) -> Parse {
    let mut headers = vec![httparse::EMPTY_HEADER; header_slots(buf)];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(head_len)) => {
            let line = RequestLine::from(&req);
            let Some(line) = line else {
                return Parse::NotHttp;
            };
            inspect_complete_head(buf, head_len, &line, req.headers, end, cfg, fp)
        }
        Ok(httparse::Status::Partial) => {
            if req.method.is_none() {
                // Still inside the method token (or leading blank lines).
                return if buf.len() > MAX_METHOD_LEN || end {
                    Parse::NotHttp
                } else {
                    Parse::NeedMore
                };
            }
            if !end {
                return Parse::NeedMore;
            }
            if req.version.is_none() {
                return Parse::Partial;
            }
            inspect_cut_head(buf, cfg, fp)
        }
        Err(httparse::Error::TooManyHeaders) => {
            // The request line parsed (httparse fills it in before headers); report the request
            // without header facts rather than calling it not HTTP.
            match RequestLine::from(&req) {
                Some(line) => Parse::Done(Box::new(Exchange {
                    request: line.request(None),
                    credentials: Vec::new(),
                    auth_endpoint: None,
                    consumed: buf.len(),
                    ends_stream: true,
                })),
                None => Parse::NotHttp,
            }
        }
        Err(_) => Parse::NotHttp,
    }
}

/// Header slots for httparse: one per line in the buffer (a header needs a line), capped.
fn header_slots(buf: &[u8]) -> usize {
    let lines = buf.iter().filter(|&&b| b == b'\n').count();
    lines.saturating_add(1).min(MAX_HEADERS)
}

/// The stream ended inside the head: inspect the complete header lines that came before the cut
/// by terminating the head after the last complete line.
fn inspect_cut_head(buf: &[u8], cfg: &DetectConfig, fp: &Fingerprinter) -> Parse {
    let Some(last_newline) = buf.iter().rposition(|&b| b == b'\n') else {
        return Parse::Partial;
    };
    let mut head = Vec::with_capacity(last_newline + 3);
    head.extend_from_slice(&buf[..=last_newline]);
    head.extend_from_slice(b"\r\n");
    let mut headers = vec![httparse::EMPTY_HEADER; header_slots(&head)];
    let mut req = httparse::Request::new(&mut headers);
    let parsed = req.parse(&head);
    let Some(line) = RequestLine::from(&req) else {
        return Parse::Partial;
    };
    let header_list: &[httparse::Header] = match parsed {
        Ok(httparse::Status::Complete(_)) => req.headers,
        // A malformed last line: keep the request line, skip header facts.
        _ => &[],
    };
    let mut exchange = inspect_head(&line, header_list, cfg, fp).exchange;
    exchange.consumed = buf.len();
    exchange.ends_stream = true;
    Parse::Done(Box::new(exchange))
}

fn inspect_complete_head(
    buf: &[u8],
    head_len: usize,
    line: &RequestLine<'_>,
    headers: &[httparse::Header<'_>],
    end: bool,
    cfg: &DetectConfig,
    fp: &Fingerprinter,
) -> Parse {
    let head = inspect_head(line, headers, cfg, fp);
    let mut exchange = head.exchange;
    let after_head = buf.get(head_len..).unwrap_or_default();
    let body = match head.framing {
        Framing::None => Some(BodyBytes::skipped(0)),
        Framing::Length(len) => match after_head.get(..len) {
            Some(bytes) => Some(BodyBytes {
                bytes: Cow::Borrowed(bytes),
                wire_len: len,
                cut: false,
            }),
            None if end => Some(BodyBytes {
                bytes: Cow::Borrowed(after_head),
                wire_len: after_head.len(),
                cut: true,
            }),
            None => None,
        },
        Framing::Chunked => match body::dechunk(after_head) {
            body::Dechunked::Complete { body, wire_len } => Some(BodyBytes {
                bytes: Cow::Owned(body),
                wire_len,
                cut: false,
            }),
            body::Dechunked::Incomplete { body } if end => Some(BodyBytes {
                bytes: Cow::Owned(body),
                wire_len: after_head.len(),
                cut: true,
            }),
            body::Dechunked::Incomplete { .. } => None,
            body::Dechunked::Invalid => {
                exchange.ends_stream = true;
                Some(BodyBytes::skipped(after_head.len()))
            }
        },
        Framing::Unusable => {
            // Conflicting or malformed lengths: we cannot tell where this body ends, so take
            // nothing after the head as a further request.
            exchange.ends_stream = true;
            Some(BodyBytes::skipped(after_head.len()))
        }
    };
    let Some(body) = body else {
        // Body still on its way. If it cannot hold credentials and the head already has
        // findings, the verdict need not wait for it.
        let has_findings = !exchange.credentials.is_empty() || exchange.auth_endpoint.is_some();
        if head.body_kind == body::BodyKind::Opaque && has_findings {
            exchange.consumed = buf.len();
            exchange.ends_stream = true;
            return Parse::Done(Box::new(exchange));
        }
        return Parse::NeedMore;
    };
    let found = body::inspect(head.body_kind, &body.bytes, body.cut, fp);
    exchange.credentials.extend(found.credentials);
    if exchange.auth_endpoint.is_none() {
        exchange.auth_endpoint = found.grant_type.map(|grant| format!("grant_type={grant}"));
    }
    exchange.consumed = head_len.saturating_add(body.wire_len).min(buf.len());
    exchange.ends_stream |= body.cut || head.switches_protocol;
    Parse::Done(Box::new(exchange))
}

struct BodyBytes<'a> {
    /// Body after transfer decoding.
    bytes: Cow<'a, [u8]>,
    /// Bytes the body took on the wire.
    wire_len: usize,
    /// The stream ended before the body did.
    cut: bool,
}

impl BodyBytes<'_> {
    /// No body to look into, `wire_len` bytes to step over.
    fn skipped(wire_len: usize) -> Self {
        Self {
            bytes: Cow::Borrowed(&[]),
            wire_len,
            cut: false,
        }
    }
}

/// The request line, parsed by httparse.
struct RequestLine<'a> {
    method: &'a str,
    target: &'a str,
}

impl<'a> RequestLine<'a> {
    fn from(req: &httparse::Request<'_, 'a>) -> Option<Self> {
        Some(Self {
            method: req.method?,
            target: req.path?,
        })
    }

    fn request(&self, host_header: Option<String>) -> HttpRequest {
        let target = Target::parse(self.method, self.target);
        HttpRequest {
            method: printable_name(self.method.as_bytes()),
            // Evidence shows the path: credential-shaped segments never reach it.
            path: token::redact_path(&target.path).0.into_owned(),
            host: host_header.or_else(|| target.authority.and_then(host_without_port)),
        }
    }
}

/// How the body of a request is delimited (RFC 9112 section 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    None,
    Length(usize),
    Chunked,
    Unusable,
}

struct Head {
    exchange: Exchange,
    framing: Framing,
    body_kind: body::BodyKind,
    switches_protocol: bool,
}

/// Everything the request line and headers say.
fn inspect_head(
    line: &RequestLine<'_>,
    headers: &[httparse::Header<'_>],
    cfg: &DetectConfig,
    fp: &Fingerprinter,
) -> Head {
    let mut credentials = Vec::new();
    let target = Target::parse(line.method, line.target);
    if let Some(userinfo) = target.userinfo {
        if let Some(credential) = userinfo_credential(userinfo, fp) {
            credentials.push(credential);
        }
    }
    credentials.extend(path_credentials(&target.path, fp));
    if let Some(query) = target.query {
        for field in form_fields(query.as_bytes()) {
            if !field.value.is_empty() && names::is_secret_query_parameter(&field.name) {
                credentials.push(
                    Credential::redacted(
                        CredentialKind::QueryParameter,
                        format!("query:{}", printable_name(field.name.as_bytes())),
                        field.value.as_bytes(),
                        fp,
                    )
                    .with_form(field.raw_value),
                );
            }
        }
    }

    let mut host = None;
    let mut content_type = None;
    let mut content_encoded = false;
    let mut lengths: Vec<&[u8]> = Vec::new();
    let mut transfer_encoding: Option<&[u8]> = None;
    let mut upgrade = false;
    for header in headers {
        let name = header.name;
        let value = trim_ascii(header.value);
        if name.eq_ignore_ascii_case("host") {
            if host.is_none() {
                host = std::str::from_utf8(value).ok().and_then(host_without_port);
            }
        } else if name.eq_ignore_ascii_case("authorization") {
            credentials.extend(authorization_credential(value, fp));
        } else if name.eq_ignore_ascii_case("proxy-authorization") {
            credentials.extend(proxy_authorization_credential(value, fp));
        } else if name.eq_ignore_ascii_case("cookie") {
            if !value.is_empty() {
                credentials.push(cookie_credential(value, fp));
            }
        } else if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value);
        } else if name.eq_ignore_ascii_case("content-encoding") {
            content_encoded |= !value.eq_ignore_ascii_case(b"identity");
        } else if name.eq_ignore_ascii_case("content-length") {
            lengths.push(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = Some(value);
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        } else if let Some(spelling) = names::api_key_header(name, cfg) {
            if !value.is_empty() {
                credentials.push(Credential::redacted(
                    CredentialKind::ApiKey,
                    format!("header:{spelling}"),
                    value,
                    fp,
                ));
            }
        }
    }

    let request = line.request(host);
    let auth_endpoint = auth_endpoint::reason(&request, cfg);
    let framing = framing(transfer_encoding, &lengths);
    let body_kind = if content_encoded {
        // Compressed bodies are not unpacked; their fields stay unseen.
        body::BodyKind::Opaque
    } else {
        body::BodyKind::from_content_type(content_type)
    };
    Head {
        exchange: Exchange {
            request,
            credentials,
            auth_endpoint,
            consumed: 0,
            ends_stream: false,
        },
        framing,
        body_kind,
        switches_protocol: upgrade || line.method.eq_ignore_ascii_case("CONNECT"),
    }
}

fn framing(transfer_encoding: Option<&[u8]>, lengths: &[&[u8]]) -> Framing {
    if let Some(codings) = transfer_encoding {
        // Chunked must be the final coding of a request body; anything else has no length.
        let last = codings.rsplit(|&b| b == b',').next().map(trim_ascii);
        return match last {
            Some(coding) if coding.eq_ignore_ascii_case(b"chunked") => Framing::Chunked,
            _ => Framing::Unusable,
        };
    }
    let mut length = None;
    for value in lengths {
        // A list ("5, 5") is allowed when all members agree.
        for member in value.split(|&b| b == b',').map(trim_ascii) {
            let Some(parsed) = parse_decimal(member) else {
                return Framing::Unusable;
            };
            match length {
                Some(previous) if previous != parsed => return Framing::Unusable,
                _ => length = Some(parsed),
            }
        }
    }
    match length {
        None | Some(0) => Framing::None,
        Some(len) => Framing::Length(len),
    }
}

fn parse_decimal(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0usize, |acc, &d| {
        acc.checked_mul(10)?.checked_add(usize::from(d - b'0'))
    })
}

fn trim_ascii(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &value[start..end]
}

/// The parts of a request target (RFC 9112 section 3.2).
struct Target<'a> {
    path: Cow<'a, str>,
    query: Option<&'a str>,
    authority: Option<&'a str>,
    userinfo: Option<&'a str>,
}

impl<'a> Target<'a> {
    fn parse(method: &str, target: &'a str) -> Self {
        let mut parsed = Self {
            path: Cow::Borrowed(target),
            query: None,
            authority: None,
            userinfo: None,
        };
        if method.eq_ignore_ascii_case("CONNECT") {
            // authority-form: "host:port" is the whole target.
            parsed.authority = Some(target);
            return parsed;
        }
        let mut rest = target;
        if !target.starts_with('/') {
            if let Some((scheme, after)) = target.split_once("://") {
                if !scheme.is_empty()
                    && scheme
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
                {
                    // absolute-form: scheme "://" authority path-abempty [ "?" query ]
                    let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
                    let (authority, tail) = after.split_at(authority_end);
                    match authority.rsplit_once('@') {
                        Some((userinfo, host)) => {
                            parsed.userinfo = Some(userinfo);
                            parsed.authority = Some(host);
                        }
                        None => parsed.authority = Some(authority),
                    }
                    rest = tail;
                }
            }
        }
        let rest = rest.split('#').next().unwrap_or_default();
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        parsed.query = query;
        parsed.path = if path.is_empty() {
            Cow::Borrowed("/")
        } else {
            Cow::Borrowed(path)
        };
        parsed
    }
}

/// `Host` value (or target authority) without port, lower case. IPv6 literals keep their
/// brackets; a value with several colons and no brackets is not a host:port and stays whole.
fn host_without_port(raw: &str) -> Option<String> {
    let raw = raw.trim();
    // Never let userinfo through, even from a malformed Host header.
    let raw = raw.rsplit('@').next().unwrap_or(raw);
    let host = if raw.starts_with('[') {
        match raw.find(']') {
            Some(close) => &raw[..=close],
            None => raw,
        }
    } else {
        match raw.split_once(':') {
            Some((host, port)) if !port.contains(':') => host,
            _ => raw,
        }
    };
    if host.is_empty() {
        return None;
    }
    Some(printable_name(host.to_ascii_lowercase().as_bytes()))
}

/// `http://user:pass@host/`: the password is the secret; a token given as the user name alone
/// (`https://TOKEN@host`) is the secret when there is no password. Kept decoded and as sent.
fn userinfo_credential(userinfo: &str, fp: &Fingerprinter) -> Option<Credential> {
    let secret = match userinfo.split_once(':') {
        Some((_, password)) if !password.is_empty() => password,
        Some((user, _)) => user,
        None => userinfo,
    };
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(secret).collect();
    (!decoded.is_empty()).then(|| {
        Credential::redacted(CredentialKind::UrlUserinfo, "url:userinfo", &decoded, fp)
            .with_form(secret.as_bytes())
    })
}

/// Credential-shaped path segments ([`token`] rules), located by segment number, kept decoded
/// and as sent.
fn path_credentials<'a>(
    path: &'a str,
    fp: &'a Fingerprinter,
) -> impl Iterator<Item = Credential> + 'a {
    let (_, found) = token::redact_path(path);
    found.into_iter().map(move |found| {
        let raw = &path[found.range];
        let decoded: Vec<u8> = percent_encoding::percent_decode_str(raw).collect();
        Credential::redacted(
            CredentialKind::PathToken,
            format!("path:segment{}", found.segment),
            &decoded,
            fp,
        )
        .with_form(raw.as_bytes())
    })
}

/// One `name=value` pair of a query string or form body: decoded, and the value as sent.
pub(super) struct FormField<'a> {
    pub name: Cow<'a, str>,
    pub value: Cow<'a, str>,
    pub raw_value: &'a [u8],
}

/// `application/x-www-form-urlencoded` pairs, decoded by `form_urlencoded` one pair at a time so
/// the raw value of each is at hand too.
pub(super) fn form_fields(encoded: &[u8]) -> impl Iterator<Item = FormField<'_>> {
    encoded.split(|&b| b == b'&').filter_map(|pair| {
        let raw_value = pair
            .iter()
            .position(|&b| b == b'=')
            .map_or(&pair[pair.len()..], |eq| &pair[eq + 1..]);
        let (name, value) = form_urlencoded::parse(pair).next()?;
        Some(FormField {
            name,
            value,
            raw_value,
        })
    })
}

/// Cookie values shorter than this are not kept as forms of their own: they are preferences
/// and flags (`theme=dark`, `consent=true`), and scrubbing such words from all later output
/// would mangle it. Session cookies are far longer; the whole header value is always kept.
const MIN_COOKIE_VALUE_FORM: usize = 8;

/// The whole `Cookie` value is the credential (which cookie is the session one is not known);
/// each long enough cookie value is kept as a form too, since one may be written alone.
fn cookie_credential(value: &[u8], fp: &Fingerprinter) -> Credential {
    cookie_values(value).fold(
        Credential::redacted(CredentialKind::Cookie, "header:Cookie", value, fp),
        |credential, cookie| credential.with_form(cookie),
    )
}

/// The values of a `Cookie` header (`a=1; b="2"`) at least [`MIN_COOKIE_VALUE_FORM`] long,
/// without optional DQUOTEs.
fn cookie_values(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b';').filter_map(|pair| {
        let eq = pair.iter().position(|&b| b == b'=')?;
        let cookie = trim_ascii(&pair[eq + 1..]);
        let cookie = cookie
            .strip_prefix(b"\"")
            .and_then(|c| c.strip_suffix(b"\""))
            .unwrap_or(cookie);
        (cookie.len() >= MIN_COOKIE_VALUE_FORM).then_some(cookie)
    })
}

/// Every form of the secret in the value of a sensitive header (`Authorization`,
/// `Proxy-Authorization`, `Cookie`, API-key headers), read as the parser reads it: the whole
/// value, and for authorization schemes the secret part and its other forms, for cookies each
/// cookie. For the command-line redactor, which hides headers given to `curl -H` and the like.
pub(crate) fn header_secrets(name: &str, value: &[u8]) -> Vec<Secret> {
    let value = trim_ascii(value);
    let mut secrets = Vec::new();
    push_unique(&mut secrets, value);
    if name.eq_ignore_ascii_case("authorization")
        || name.eq_ignore_ascii_case("proxy-authorization")
    {
        if let Some(auth) = authorization_secret(value) {
            push_unique(&mut secrets, &auth.secret);
            for form in &auth.forms {
                push_unique(&mut secrets, form);
            }
        }
    } else if name.eq_ignore_ascii_case("cookie") {
        for cookie in cookie_values(value) {
            push_unique(&mut secrets, cookie);
        }
    }
    secrets
}

/// Base64 as clients send it in Basic credentials, with or without padding.
const BASIC_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// How an `Authorization`-style value is read: its kind, the secret part, and the other forms
/// the secret travels in (for Basic: the decoded `user:password` and the base64 token).
struct AuthSecret<'a> {
    kind: CredentialKind,
    secret: Cow<'a, [u8]>,
    forms: Vec<Cow<'a, [u8]>>,
}

impl<'a> AuthSecret<'a> {
    fn plain(kind: CredentialKind, secret: &'a [u8]) -> Self {
        Self {
            kind,
            secret: Cow::Borrowed(secret),
            forms: Vec::new(),
        }
    }

    fn credential(self, kind: CredentialKind, location: &str, fp: &Fingerprinter) -> Credential {
        self.forms.iter().fold(
            Credential::redacted(kind, location, &self.secret, fp),
            |credential, form| credential.with_form(form),
        )
    }
}

fn authorization_secret(value: &[u8]) -> Option<AuthSecret<'_>> {
    let split = value.iter().position(|b| *b == b' ' || *b == b'\t');
    let Some(split) = split else {
        // A bare token with no scheme; a scheme with no token carries nothing.
        let scheme_only = [&b"basic"[..], b"bearer", b"digest", b"aws4-hmac-sha256"]
            .iter()
            .any(|scheme| value.eq_ignore_ascii_case(scheme));
        return (!value.is_empty() && !scheme_only)
            .then(|| AuthSecret::plain(CredentialKind::Authorization, value));
    };
    let (scheme, rest) = value.split_at(split);
    let rest = trim_ascii(rest);
    if rest.is_empty() {
        return None;
    }
    if scheme.eq_ignore_ascii_case(b"basic") {
        return basic_secret(rest);
    }
    if scheme.eq_ignore_ascii_case(b"bearer") {
        return Some(AuthSecret::plain(CredentialKind::Bearer, rest));
    }
    if scheme.eq_ignore_ascii_case(b"digest") {
        // The response is a hash over a server nonce; the whole parameter list identifies it.
        return Some(AuthSecret::plain(CredentialKind::Digest, rest));
    }
    if scheme.eq_ignore_ascii_case(b"aws4-hmac-sha256") {
        // SigV4 never sends the secret key and each signature is single-use; the access key id
        // is what repeated requests share, so that is what gets fingerprinted.
        let key_id = aws_access_key_id(rest).unwrap_or(rest);
        return Some(AuthSecret::plain(CredentialKind::AwsSigv4, key_id));
    }
    Some(AuthSecret::plain(CredentialKind::Authorization, rest))
}

/// Basic credentials: base64 of "user:password". The password is the secret (so it matches
/// the same password seen in a form or a database login); when the password is empty the user
/// part is the secret (API keys sent as the user name, e.g. `sk_live_...:`). Undecodable
/// credentials are reported whole. The decoded pair and the token as sent are kept as forms.
fn basic_secret(encoded: &[u8]) -> Option<AuthSecret<'_>> {
    let Ok(decoded) = BASIC_BASE64.decode(encoded) else {
        return Some(AuthSecret::plain(CredentialKind::Basic, encoded));
    };
    let secret = match decoded.iter().position(|&b| b == b':') {
        Some(colon) if colon + 1 < decoded.len() => decoded[colon + 1..].to_vec(),
        Some(colon) => decoded[..colon].to_vec(),
        None => decoded.clone(),
    };
    (!secret.is_empty()).then(|| AuthSecret {
        kind: CredentialKind::Basic,
        secret: Cow::Owned(secret),
        forms: vec![Cow::Owned(decoded), Cow::Borrowed(encoded)],
    })
}

/// `Credential=AKIA.../20240101/us-east-1/s3/aws4_request, SignedHeaders=..., Signature=...`
fn aws_access_key_id(params: &[u8]) -> Option<&[u8]> {
    params.split(|&b| b == b',').find_map(|param| {
        let param = trim_ascii(param);
        let value = param
            .strip_prefix(b"Credential=")
            .or_else(|| param.strip_prefix(b"credential="))?;
        value
            .split(|&b| b == b'/')
            .next()
            .filter(|id| !id.is_empty())
    })
}

fn authorization_credential(value: &[u8], fp: &Fingerprinter) -> Option<Credential> {
    let auth = authorization_secret(value)?;
    let kind = auth.kind;
    Some(auth.credential(kind, "header:Authorization", fp))
}

fn proxy_authorization_credential(value: &[u8], fp: &Fingerprinter) -> Option<Credential> {
    let auth = authorization_secret(value)?;
    Some(auth.credential(
        CredentialKind::ProxyAuthorization,
        "header:Proxy-Authorization",
        fp,
    ))
}

#[cfg(test)]
mod tests;
