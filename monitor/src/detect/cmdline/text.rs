//! Secrets in free text: an argument that is not a known flag's value, or inline code. Each
//! rule rewrites the text and records what it removed; later rules see `<redacted>` where
//! earlier ones cut, which none of them matches again.
use std::sync::LazyLock;

use regex::Regex;

use super::{is_secret_name, is_sensitive_header, Found, REDACTED};
use crate::detect::http::{self, names::is_secret_query_parameter};
use crate::detect::token;

/// All rules, in order: URLs first (their parts have rules of their own), then quoted values
/// after secret names, header lines, unquoted assignments, `Bearer`/`Basic` tokens, and
/// credential-shaped words.
pub(super) fn redact(text: &str, found: &mut Found) -> String {
    let text = urls(text, found);
    let text = quoted_values(&text, found);
    let text = header_lines(&text, found);
    let text = assignments(&text, found);
    let text = auth_schemes(&text, found);
    shaped_tokens(&text, found)
}

/// Replaces `ranges` (in order, not overlapping) of `text` by [`REDACTED`].
fn replace(text: &str, ranges: &[std::ops::Range<usize>]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for range in ranges {
        out.push_str(&text[at..range.start]);
        out.push_str(REDACTED);
        at = range.end;
    }
    out.push_str(&text[at..]);
    out
}

// --- URLs -------------------------------------------------------------------------------------

/// Every `scheme://...` in the text, up to whitespace or a quote.
fn urls(text: &str, found: &mut Found) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    let mut search = 0;
    while let Some(offset) = text[search..].find("://") {
        let separator = search + offset;
        let mut start = separator;
        while start > at
            && (bytes[start - 1].is_ascii_alphanumeric() || b"+-.".contains(&bytes[start - 1]))
        {
            start -= 1;
        }
        if start == separator || !bytes[start].is_ascii_alphabetic() {
            search = separator + 3;
            continue;
        }
        let end = text[separator + 3..]
            .find(|c: char| c.is_whitespace() || "\"'`<>".contains(c))
            .map_or(text.len(), |i| separator + 3 + i);
        out.push_str(&text[at..start]);
        out.push_str(&url(&text[start..end], found));
        at = end;
        search = end;
    }
    out.push_str(&text[at..]);
    out
}

/// One URL: userinfo, credential-shaped path segments, secret query parameters.
pub(super) fn url(url: &str, found: &mut Found) -> String {
    let Some(separator) = url.find("://") else {
        return url.to_owned();
    };
    let authority_start = separator + 3;
    let authority_end = url[authority_start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| authority_start + i);
    let authority = &url[authority_start..authority_end];
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..authority_start]);
    match authority.rfind('@') {
        Some(at) => {
            out.push_str(&userinfo(&authority[..at], found));
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let rest = &url[authority_end..];
    let path_end = rest.find(['?', '#']).unwrap_or(rest.len());
    let (path, rest) = rest.split_at(path_end);
    let (redacted_path, tokens) = token::redact_path(path);
    for found_token in tokens {
        found.add_url_value(&path[found_token.range]);
    }
    out.push_str(&redacted_path);
    let Some(query) = rest.strip_prefix('?') else {
        out.push_str(rest);
        return out;
    };
    let (query, fragment) = query.split_at(query.find('#').unwrap_or(query.len()));
    out.push('?');
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((name, value)) if !value.is_empty() && is_secret_parameter(name) => {
                found.add_form_value(value);
                out.push_str(name);
                out.push('=');
                out.push_str(REDACTED);
            }
            _ => out.push_str(pair),
        }
    }
    out.push_str(fragment);
    out
}

fn is_secret_parameter(raw_name: &str) -> bool {
    form_urlencoded::parse(raw_name.as_bytes())
        .next()
        .is_some_and(|(name, _)| is_secret_query_parameter(&name))
}

/// `user:password` keeps the user; a userinfo without a password is a token given as the
/// user name (`https://ghp_...@github.com`), and a token-shaped user hides everything too.
fn userinfo(userinfo: &str, found: &mut Found) -> String {
    if userinfo.is_empty() {
        return String::new();
    }
    match userinfo.split_once(':') {
        Some((user, password)) if !password.is_empty() && !user_is_token(user) => {
            found.add_url_value(password);
            format!("{user}:{REDACTED}")
        }
        _ => {
            found.add_url_value(userinfo);
            if let Some((user, password)) = userinfo.split_once(':') {
                found.add_url_value(user);
                found.add_url_value(password);
            }
            REDACTED.to_owned()
        }
    }
}

fn user_is_token(user: &str) -> bool {
    percent_encoding::percent_decode_str(user)
        .decode_utf8()
        .is_ok_and(|user| token::is_token(&user))
}

// --- libpq conninfo ---------------------------------------------------------------------------

/// A libpq connection string (`host=db user=u password='a b'`, at least two pairs, the whole
/// argument in that syntax) with its secret values replaced; `None` when the argument is not
/// one or has no secret.
pub(super) fn conninfo(text: &str, found: &mut Found) -> Option<String> {
    let pairs = conninfo_pairs(text)?;
    let mut ranges = Vec::new();
    for pair in pairs {
        if is_secret_name(&text[pair.key.clone()]) && !pair.value.is_empty() {
            found.add(&pair.decoded);
            let raw = &text[pair.value.clone()];
            found.add(
                raw.strip_prefix('\'')
                    .and_then(|r| r.strip_suffix('\''))
                    .unwrap_or(raw),
            );
            ranges.push(pair.value);
        }
    }
    (!ranges.is_empty()).then(|| replace(text, &ranges))
}

struct Pair {
    key: std::ops::Range<usize>,
    /// The value as written, quotes included.
    value: std::ops::Range<usize>,
    /// The value with quotes and backslash escapes undone.
    decoded: String,
}

/// `keyword = value` pairs separated by whitespace; a value is single-quoted (`\'` and `\\`
/// escaped) or runs to the next whitespace (libpq, "Keyword/Value Connection Strings").
fn conninfo_pairs(text: &str) -> Option<Vec<Pair>> {
    let bytes = text.as_bytes();
    let skip_spaces = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let mut pairs = Vec::new();
    let mut i = skip_spaces(0);
    while i < bytes.len() {
        let key_start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
            i += 1;
        }
        if i == key_start {
            return None;
        }
        let key = key_start..i;
        i = skip_spaces(i);
        if bytes.get(i) != Some(&b'=') {
            return None;
        }
        i = skip_spaces(i + 1);
        let value_start = i;
        let mut decoded = Vec::new();
        if bytes.get(i) == Some(&b'\'') {
            i += 1;
            loop {
                match bytes.get(i) {
                    None => return None,
                    Some(b'\\') if i + 1 < bytes.len() => {
                        decoded.push(bytes[i + 1]);
                        i += 2;
                    }
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(&b) => {
                        decoded.push(b);
                        i += 1;
                    }
                }
            }
        } else {
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                if bytes[i] == b'\\' && i + 1 < bytes.len() {
                    i += 1;
                }
                decoded.push(bytes[i]);
                i += 1;
            }
        }
        pairs.push(Pair {
            key,
            value: value_start..i,
            decoded: String::from_utf8_lossy(&decoded).into_owned(),
        });
        i = skip_spaces(i);
    }
    (pairs.len() >= 2).then_some(pairs)
}

// --- Quoted values after secret names ---------------------------------------------------------

/// A name, maybe quoted (also with escaped quotes, as in JSON inside a string), an assignment
/// or key separator, and an opening quote: `"password": "`, `client_secret='`,
/// `'X-API-Key': '`, `token => "`, `key := "`, `\"password\":\"`.
static QUOTED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"\\?["'`]?([A-Za-z_][A-Za-z0-9_.\-]{0,63})\\?["'`]?[ \t]*(?::=|=>|:|=)[ \t]*(\\?["'`])"#,
    )
    .expect("valid regex")
});

/// Shell variable references are not values (`PASSWORD="$DB_PASSWORD"`, `"${TOKEN}"`).
fn is_variable_reference(value: &str) -> bool {
    let name = value
        .strip_prefix("${")
        .and_then(|v| v.strip_suffix('}'))
        .or_else(|| value.strip_prefix('$'));
    name.is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
}

fn quoted_values(text: &str, found: &mut Found) -> String {
    let mut ranges = Vec::new();
    let mut search = 0;
    while let Some(caps) = QUOTED.captures_at(text, search) {
        let (Some(name), Some(quote)) = (caps.get(1), caps.get(2)) else {
            break;
        };
        let value_start = quote.end();
        // Not a secret name: look inside the value too (a JSON document in a string).
        search = value_start;
        if !is_secret_name(name.as_str()) {
            continue;
        }
        let value_end = closing_quote(text, value_start, quote.as_str()).unwrap_or(text.len());
        let raw = &text[value_start..value_end];
        search = value_end;
        if raw.is_empty() || raw.starts_with(REDACTED) || is_variable_reference(raw) {
            continue;
        }
        found.add(raw);
        let unescaped = unescape(raw);
        found.add(&unescaped);
        if is_sensitive_header(name.as_str()) {
            found.extend(http::header_secrets(name.as_str(), unescaped.as_bytes()));
        }
        ranges.push(value_start..value_end);
    }
    replace(text, &ranges)
}

/// Where the string opened by `quote` at `from` closes: the same quote not escaped by a
/// backslash, or for an escaped opening quote (`\"`) the next `\"`.
fn closing_quote(text: &str, from: usize, quote: &str) -> Option<usize> {
    if quote.len() == 2 {
        return text[from..].find(quote).map(|i| from + i);
    }
    let quote = quote.as_bytes()[0];
    let bytes = text.as_bytes();
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b if b == quote => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// Backslash escapes of a quoted string, undone (`\'` -> `'`, `\\` -> `\`, `\n` -> newline).
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

// --- Header lines -----------------------------------------------------------------------------

/// A header line at the start of the text, of a line or of a quoted string:
/// `curl -H "Authorization: Bearer x"` inside shell code, `Cookie: a=b` in a here-document.
static HEADER_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?:^|[\n"'`])[ \t]*([A-Za-z][A-Za-z0-9\-]{0,63})[ \t]*:[ \t]*([^"'`\r\n]+)"#)
        .expect("valid regex")
});

fn header_lines(text: &str, found: &mut Found) -> String {
    let mut ranges = Vec::new();
    for caps in HEADER_LINE.captures_iter(text) {
        let (Some(name), Some(value)) = (caps.get(1), caps.get(2)) else {
            continue;
        };
        if !is_sensitive_header(name.as_str()) {
            continue;
        }
        let raw = value.as_str();
        let trimmed = raw.trim_end().trim_end_matches('\\').trim_end();
        if trimmed.is_empty() || trimmed.starts_with(REDACTED) {
            continue;
        }
        found.extend(http::header_secrets(name.as_str(), trimmed.as_bytes()));
        ranges.push(value.start()..value.start() + trimmed.len());
    }
    replace(text, &ranges)
}

// --- Unquoted assignments ---------------------------------------------------------------------

/// `name=value` with the value unquoted, up to whitespace, a quote, or a list or shell
/// separator: `export API_TOKEN=x; ...`, `Server=s;Password=p;`, `user=u&password=p`,
/// `#access_token=x&...`. No spaces around `=`, so `password = get_password()` in code is not
/// taken for a value.
static ASSIGNMENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"([A-Za-z_][A-Za-z0-9_.\-]{0,63})={1,2}([^ \t\r\n"'`;&|<>(),{}\[\]\\]+)"#)
        .expect("valid regex")
});

fn assignments(text: &str, found: &mut Found) -> String {
    let mut ranges = Vec::new();
    for caps in ASSIGNMENT.captures_iter(text) {
        let (Some(name), Some(value)) = (caps.get(1), caps.get(2)) else {
            continue;
        };
        let raw = value.as_str();
        if raw.starts_with('$') || !is_secret_name(name.as_str()) {
            continue;
        }
        found.add_form_value(raw);
        ranges.push(value.range());
    }
    replace(text, &ranges)
}

// --- Authorization schemes --------------------------------------------------------------------

/// `Bearer <token>` and `Basic <credentials>` anywhere (`curl -H "...: Bearer x"` was caught as
/// a header line already; this covers the rest, such as a token in a string being built).
static AUTH_SCHEME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:^|[^A-Za-z0-9_])(bearer|basic)[ \t]+([A-Za-z0-9\-._~+/]+=*)")
        .expect("valid regex")
});

fn auth_schemes(text: &str, found: &mut Found) -> String {
    let mut ranges = Vec::new();
    for caps in AUTH_SCHEME.captures_iter(text) {
        let (Some(scheme), Some(credentials)) = (caps.get(1), caps.get(2)) else {
            continue;
        };
        let value = credentials.as_str();
        // Prose ("Basic authentication", "bearer token") is words: require a digit or a
        // length no word has.
        let plausible =
            value.len() >= 6 && (value.bytes().any(|b| b.is_ascii_digit()) || value.len() >= 16);
        if !plausible {
            continue;
        }
        let header_value = format!("{} {value}", scheme.as_str());
        found.extend(http::header_secrets(
            "authorization",
            header_value.as_bytes(),
        ));
        ranges.push(credentials.range());
    }
    replace(text, &ranges)
}

// --- Credential shapes ------------------------------------------------------------------------

fn shaped_tokens(text: &str, found: &mut Found) -> String {
    let ranges = token::find_in_text(text);
    for range in &ranges {
        found.add(&text[range.clone()]);
    }
    replace(text, &ranges)
}
