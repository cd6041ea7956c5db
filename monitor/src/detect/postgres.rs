//! PostgreSQL, client side: the connection preamble (SSLRequest / GSSENCRequest, StartupMessage)
//! and the first message after it, which carries the password when the server asked for one.
//!
//! - SSLRequest followed by a TLS ClientHello: the server agreed, the rest is TLS
//!   ([`Parse::StartTls`]).
//! - SSLRequest followed directly by a StartupMessage: the server refused and the client went
//!   on in the clear (`ssl_requested: true`).
//! - PasswordMessage (`'p'`) holding one NUL-terminated string: a cleartext password, or
//!   `"md5"` + 32 hex digits (a salted hash that still lets anyone replaying the handshake in
//!   with that salt log in, and can be cracked offline).
//! - SASLInitialResponse (`'p'` too, but mechanism name + length + data): SCRAM never sends the
//!   password or anything replayable, so it is not a credential. GSSAPI/SSPI tokens likewise.
//!
//! Message layouts: <https://www.postgresql.org/docs/current/protocol-message-formats.html>.
use super::redact::Fingerprinter;
use super::{printable_name, Credential, CredentialKind, PostgresStartup};

const SSL_REQUEST_CODE: u32 = 80_877_103;
const GSSENC_REQUEST_CODE: u32 = 80_877_104;
const CANCEL_REQUEST_CODE: u32 = 80_877_102;
/// Protocol major version 3 (3.0 = 196608, 3.2 = 196610) in the upper 16 bits.
const PROTOCOL_MAJOR_3: u32 = 3;
/// The server rejects longer startup packets (MAX_STARTUP_PACKET_LENGTH).
const MAX_STARTUP_LEN: usize = 10_000;
/// Negotiation requests a client sends before its startup: GSSENCRequest then SSLRequest.
const MAX_NEGOTIATIONS: usize = 2;

#[derive(Debug)]
pub enum Parse {
    /// Not a PostgreSQL client preamble.
    NotPostgres,
    /// More bytes needed (never returned when `end`).
    NeedMore,
    /// The server accepted an SSLRequest: a TLS ClientHello starts at `hello_at`.
    StartTls {
        hello_at: usize,
    },
    Done(Session),
}

/// What the preamble revealed. Holds only redacted facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// `None` for a CancelRequest, which has no startup.
    pub startup: Option<PostgresStartup>,
    pub credential: Option<Credential>,
}

/// Inspects a client stream from its first byte. `end`: no bytes will follow `buf`; whatever
/// was seen of the preamble becomes the verdict.
pub fn inspect(buf: &[u8], end: bool, fp: &Fingerprinter) -> Parse {
    let mut at = 0usize;
    let mut ssl_requested = false;
    let mut negotiations = 0;
    let startup_len = loop {
        let Some((len, code)) = header(buf, at) else {
            if at == 0 && (end || !plausible_prefix(buf)) {
                return Parse::NotPostgres;
            }
            if !end {
                return Parse::NeedMore;
            }
            return Parse::Done(Session {
                startup: Some(empty_startup(ssl_requested)),
                credential: None,
            });
        };
        match (len, code) {
            (8, SSL_REQUEST_CODE | GSSENC_REQUEST_CODE) if negotiations < MAX_NEGOTIATIONS => {
                negotiations += 1;
                at += 8;
                if code == SSL_REQUEST_CODE {
                    ssl_requested = true;
                    if buf.get(at) == Some(&0x16) {
                        return Parse::StartTls { hello_at: at };
                    }
                } else if buf.get(at).is_some_and(|&b| b != 0) {
                    // Neither a startup nor another request (both start with a zero length
                    // byte): the server accepted GSS encryption and this is wrapped traffic.
                    return Parse::Done(Session {
                        startup: Some(empty_startup(ssl_requested)),
                        credential: None,
                    });
                }
            }
            (16, CANCEL_REQUEST_CODE) if at == 0 => {
                return Parse::Done(Session {
                    startup: None,
                    credential: None,
                })
            }
            (8..=MAX_STARTUP_LEN, code) if code >> 16 == PROTOCOL_MAJOR_3 => break len,
            _ if at == 0 => return Parse::NotPostgres,
            // A real negotiation request followed by something we do not understand.
            _ => {
                return Parse::Done(Session {
                    startup: Some(empty_startup(ssl_requested)),
                    credential: None,
                })
            }
        }
    };

    let params_at = at + 8;
    let startup_end = at + startup_len;
    let complete = buf.len() >= startup_end;
    if !complete && !end {
        return Parse::NeedMore;
    }
    let params = buf
        .get(params_at..startup_end.min(buf.len()))
        .unwrap_or_default();
    let startup = parse_startup(params, ssl_requested);
    if !complete {
        return Parse::Done(Session {
            startup: Some(startup),
            credential: None,
        });
    }
    match first_message(&buf[startup_end..], end, fp) {
        None => Parse::NeedMore,
        Some(credential) => Parse::Done(Session {
            startup: Some(startup),
            credential,
        }),
    }
}

/// Length and code of the 8-byte message starting at `at`.
fn header(buf: &[u8], at: usize) -> Option<(usize, u32)> {
    let bytes = buf.get(at..at.checked_add(8)?)?;
    let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let code = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    Some((usize::try_from(len).ok()?, code))
}

/// Whether fewer than 8 bytes can still begin a preamble: a length in `8..=10000` (so the first
/// two bytes are zero) and a code starting like one of ours.
fn plausible_prefix(buf: &[u8]) -> bool {
    let mut len_bytes = [0u8; 4];
    for (i, b) in buf.iter().take(4).enumerate() {
        len_bytes[i] = *b;
    }
    if buf.len() >= 4 {
        let len = u32::from_be_bytes(len_bytes) as usize;
        if !(8..=MAX_STARTUP_LEN).contains(&len) {
            return false;
        }
    }
    buf.iter().take(2).all(|&b| b == 0) && buf.get(4).is_none_or(|&b| b == 0 || b == 0x04)
}

fn empty_startup(ssl_requested: bool) -> PostgresStartup {
    PostgresStartup {
        user: None,
        database: None,
        ssl_requested,
    }
}

/// StartupMessage parameters: NUL-terminated name/value pairs, ending with an empty name.
/// Pairs cut short are ignored.
fn parse_startup(params: &[u8], ssl_requested: bool) -> PostgresStartup {
    let mut startup = empty_startup(ssl_requested);
    let mut rest = params;
    while let Some((name, after_name)) = c_string(rest) {
        let Some((value, after_value)) = c_string(after_name) else {
            break;
        };
        if name.is_empty() {
            break;
        }
        match name {
            b"user" => startup.user = Some(printable_name(value)),
            b"database" => startup.database = Some(printable_name(value)),
            _ => {}
        }
        rest = after_value;
    }
    startup
}

/// A NUL-terminated string and what follows it; `None` if the NUL has not arrived.
fn c_string(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let nul = buf.iter().position(|&b| b == 0)?;
    Some((&buf[..nul], &buf[nul + 1..]))
}

/// The first message after the startup. `None`: wait for more bytes. `Some(None)`: decided, no
/// credential. `Some(Some(..))`: a password in the clear.
fn first_message(rest: &[u8], end: bool, fp: &Fingerprinter) -> Option<Option<Credential>> {
    let Some(header) = rest.get(..5) else {
        return end.then_some(None);
    };
    if header[0] != b'p' {
        // Trust or peer authentication: the client goes straight to queries.
        return Some(None);
    }
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    let Some(total) = usize::try_from(len).ok().and_then(|l| l.checked_add(1)) else {
        return Some(None);
    };
    if total < 5 {
        return Some(None);
    }
    let Some(message) = rest.get(..total) else {
        // A password cut by the capture limit is not reported (see module docs of `detect`).
        return end.then_some(None);
    };
    Some(password_credential(&message[5..], fp))
}

/// A PasswordMessage is exactly one NUL-terminated string; SASL and GSS responses are not.
fn password_credential(body: &[u8], fp: &Fingerprinter) -> Option<Credential> {
    let (&last, password) = body.split_last()?;
    if last != 0 || password.contains(&0) || password.is_empty() {
        return None;
    }
    let is_md5 = password.len() == 35
        && password.starts_with(b"md5")
        && password[3..].iter().all(u8::is_ascii_hexdigit);
    let kind = if is_md5 {
        CredentialKind::PostgresMd5
    } else {
        CredentialKind::PostgresPassword
    };
    Some(Credential::redacted(
        kind,
        "postgres:password_message",
        password,
        fp,
    ))
}

#[cfg(test)]
mod tests;
