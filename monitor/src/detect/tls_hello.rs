//! TLS ClientHello: the first flight of a TLS client, and the server name (SNI) it asks for.
//!
//! Records and the handshake are parsed with `tls-parser`. A ClientHello larger than one record
//! (post-quantum key shares make this common) is reassembled from consecutive handshake records
//! first. When the capture ends inside the hello, the extensions that arrived whole are still
//! searched for the server name.
use tls_parser::{
    parse_tls_client_hello_extensions, parse_tls_handshake_client_hello,
    parse_tls_message_handshake, parse_tls_raw_record, SNIType, TlsExtension, TlsMessage,
    TlsMessageHandshake, TlsRecordType,
};

/// Handshake message type of a ClientHello.
const CLIENT_HELLO: u8 = 0x01;
/// Bytes of a record header: type, version, length.
const RECORD_HEADER_LEN: usize = 5;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hello {
    /// Not a TLS ClientHello.
    NotTls,
    /// A ClientHello has started; more bytes needed (never returned when `end`).
    NeedMore,
    /// A ClientHello, whole or cut by the end of the stream, and the host name it asks for.
    ClientHello { sni: Option<String> },
}

/// Inspects a client stream starting with a TLS record. `end`: no bytes will follow `buf`.
pub fn inspect(buf: &[u8], end: bool) -> Hello {
    if !plausible_start(buf) {
        return Hello::NotTls;
    }
    let mut handshake = Vec::new();
    let mut rest = buf;
    loop {
        match parse_tls_raw_record(rest) {
            Ok((after, record)) => {
                if record.hdr.record_type != TlsRecordType::Handshake {
                    // The hello ended at the previous record without us noticing it complete:
                    // malformed lengths.
                    return malformed_or_not(&handshake);
                }
                handshake.extend_from_slice(record.data);
                rest = after;
            }
            Err(tls_parser::nom::Err::Incomplete(_)) => {
                if !end {
                    return Hello::NeedMore;
                }
                // Whatever arrived of the record being cut.
                if let Some(partial) = rest.get(RECORD_HEADER_LEN..) {
                    handshake.extend_from_slice(partial);
                }
                return cut_hello(&handshake);
            }
            Err(_) => return malformed_or_not(&handshake),
        }
        if handshake.first() != Some(&CLIENT_HELLO) {
            return Hello::NotTls;
        }
        match parse_tls_message_handshake(&handshake) {
            Ok((_, TlsMessage::Handshake(TlsMessageHandshake::ClientHello(hello)))) => {
                return Hello::ClientHello {
                    sni: hello.ext.and_then(server_name),
                };
            }
            // The hello continues in the next record.
            Err(tls_parser::nom::Err::Incomplete(_)) => {}
            _ => return Hello::ClientHello { sni: None },
        }
    }
}

/// Record type handshake (0x16), version 3.0 to 3.4 (SSL 3.0 .. TLS 1.3 record layer), and, once
/// the record body starts, a ClientHello.
fn plausible_start(buf: &[u8]) -> bool {
    let expected: [fn(u8) -> bool; 6] = [
        |b| b == 0x16,
        |b| b == 0x03,
        |b| b <= 0x04,
        |_| true,
        |_| true,
        |b| b == CLIENT_HELLO,
    ];
    !buf.is_empty() && buf.iter().zip(expected).all(|(&b, ok)| ok(b))
}

/// A handshake record that stopped making sense: TLS if a ClientHello had begun.
fn malformed_or_not(handshake: &[u8]) -> Hello {
    if handshake.first() == Some(&CLIENT_HELLO) {
        Hello::ClientHello { sni: None }
    } else {
        Hello::NotTls
    }
}

/// A ClientHello cut short: parse the fixed fields, then every extension that arrived whole.
fn cut_hello(handshake: &[u8]) -> Hello {
    if handshake.first() != Some(&CLIENT_HELLO) {
        // Only the record header (or less) arrived: too little to call it TLS.
        return Hello::NotTls;
    }
    let body = handshake.get(4..).unwrap_or_default();
    let sni = match parse_tls_handshake_client_hello(body) {
        // The extensions block did not arrive whole, so tls-parser leaves it unparsed: skip its
        // two length bytes and read the extensions that are complete.
        Ok((after_fixed, hello)) if hello.ext.is_none() => {
            after_fixed.get(2..).and_then(|partial| {
                match parse_tls_client_hello_extensions(partial) {
                    Ok((_, extensions)) => sni_of(&extensions),
                    Err(_) => None,
                }
            })
        }
        Ok((_, hello)) => hello.ext.and_then(server_name),
        Err(_) => None,
    };
    Hello::ClientHello { sni }
}

fn server_name(extensions: &[u8]) -> Option<String> {
    match parse_tls_client_hello_extensions(extensions) {
        Ok((_, extensions)) => sni_of(&extensions),
        Err(_) => None,
    }
}

fn sni_of(extensions: &[TlsExtension<'_>]) -> Option<String> {
    extensions.iter().find_map(|extension| match extension {
        TlsExtension::SNI(names) => names.iter().find_map(|(kind, name)| {
            (*kind == SNIType::HostName)
                .then(|| std::str::from_utf8(name).ok())
                .flatten()
                .filter(|name| !name.is_empty() && name.len() <= 255)
                .filter(|name| name.bytes().all(|b| b.is_ascii_graphic()))
                .map(str::to_ascii_lowercase)
        }),
        _ => None,
    })
}

#[cfg(test)]
mod tests;
