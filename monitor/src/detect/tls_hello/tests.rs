use super::*;
use crate::detect::test_support::{client_hello, client_hello_handshake, tls_records};

#[test]
fn client_hello_yields_sni() {
    assert_eq!(
        inspect(&client_hello(Some("API.Example.com")), false),
        Hello::ClientHello {
            sni: Some("api.example.com".into())
        }
    );
}

#[test]
fn client_hello_without_sni() {
    assert_eq!(
        inspect(&client_hello(None), false),
        Hello::ClientHello { sni: None }
    );
}

#[test]
fn every_prefix_of_a_hello_needs_more() {
    let hello = client_hello(Some("a.example"));
    for len in 1..hello.len() {
        assert_eq!(inspect(&hello[..len], false), Hello::NeedMore, "{len}");
    }
}

#[test]
fn hello_spanning_several_records_is_reassembled() {
    let handshake = client_hello_handshake(Some("big.example"), 3000);
    let stream = tls_records(&handshake, 1000);
    assert_eq!(
        inspect(&stream, false),
        Hello::ClientHello {
            sni: Some("big.example".into())
        }
    );
    assert_eq!(inspect(&stream[..1500], false), Hello::NeedMore);
}

#[test]
fn cut_hello_still_yields_sni_from_complete_extensions() {
    // SNI comes first; the padding extension is cut.
    let stream = tls_records(&client_hello_handshake(Some("cut.example"), 3000), 16_000);
    assert_eq!(
        inspect(&stream[..400], true),
        Hello::ClientHello {
            sni: Some("cut.example".into())
        }
    );
    // Cut inside the fixed fields: TLS, but no name.
    assert_eq!(
        inspect(&stream[..20], true),
        Hello::ClientHello { sni: None }
    );
    // Only a record header: too little to say.
    assert_eq!(inspect(&stream[..5], true), Hello::NotTls);
}

#[test]
fn other_bytes_are_not_tls() {
    for raw in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"\x16\x02\x01",
        b"\x16\x03\x05",
        b"\x17\x03\x03\x00\x10",
        b"\x16\x03\x03\x00\x04\x02\x00\x00\x00",
        b"",
    ] {
        assert_eq!(inspect(raw, false), Hello::NotTls, "{raw:?}");
    }
}

#[test]
fn malformed_hello_body_is_still_tls() {
    let mut stream = client_hello(Some("x.example"));
    // Session id length beyond 32 makes the body invalid, framing stays consistent.
    stream[9 + 2 + 32] = 200;
    assert_eq!(inspect(&stream, false), Hello::ClientHello { sni: None });
}
