//! Builders for protocol samples and helpers shared by the detector tests.
use super::redact::Fingerprinter;
use super::{DetectConfig, Observation, StreamInspector};

pub(crate) fn fp() -> Fingerprinter {
    Fingerprinter::new([0x42; 32])
}

pub(crate) fn cfg() -> DetectConfig {
    DetectConfig::default()
}

/// Feeds `writes` as complete writes; the first verdict, or the one `finish` gives.
pub(crate) fn verdict(writes: &[&[u8]]) -> Option<Observation> {
    verdict_with(&cfg(), writes)
}

pub(crate) fn verdict_with(cfg: &DetectConfig, writes: &[&[u8]]) -> Option<Observation> {
    let fp = fp();
    let mut inspector = StreamInspector::new();
    for write in writes {
        if let Some(observation) = inspector.feed(write, true, cfg, &fp) {
            assert!(inspector.feed(b"more", true, cfg, &fp).is_none());
            assert!(inspector.finish(cfg, &fp).is_none());
            return Some(observation);
        }
    }
    inspector.finish(cfg, &fp)
}

/// The verdict is reached on the writes alone, without `finish`.
pub(crate) fn verdict_without_finish(writes: &[&[u8]]) -> Option<Observation> {
    let fp = fp();
    let cfg = cfg();
    let mut inspector = StreamInspector::new();
    writes
        .iter()
        .find_map(|write| inspector.feed(write, true, &cfg, &fp))
}

/// Neither `{:?}` nor the JSON form of the observation contains `secret`.
pub(crate) fn assert_secret_absent(observation: &Observation, secret: &str) {
    let debug = format!("{observation:?}");
    let json = serde_json::to_string(observation).unwrap();
    assert!(!debug.contains(secret), "secret in Debug output: {debug}");
    assert!(!json.contains(secret), "secret in JSON output: {json}");
}

/// Every way of splitting `stream` into two writes gives the same verdict as one write.
pub(crate) fn assert_same_verdict_at_every_split(stream: &[u8]) {
    let whole = verdict(&[stream]);
    for split in 0..=stream.len() {
        let (a, b) = stream.split_at(split);
        assert_eq!(verdict(&[a, b]), whole, "split at {split}");
    }
}

// --- TLS ---------------------------------------------------------------------------------

/// A ClientHello handshake message (no record header) with an optional server name and
/// `padding` bytes of padding extension (to make it span records).
pub(crate) fn client_hello_handshake(sni: Option<&str>, padding: usize) -> Vec<u8> {
    let mut extensions = Vec::new();
    if let Some(name) = sni {
        let name = name.as_bytes();
        let list_len = name.len() + 3;
        extensions.extend_from_slice(&[0x00, 0x00]);
        extensions.extend_from_slice(&u16_be(list_len + 2));
        extensions.extend_from_slice(&u16_be(list_len));
        extensions.push(0x00);
        extensions.extend_from_slice(&u16_be(name.len()));
        extensions.extend_from_slice(name);
    }
    // supported_versions: TLS 1.3, 1.2
    extensions.extend_from_slice(&[0x00, 0x2b, 0x00, 0x05, 0x04, 0x03, 0x04, 0x03, 0x03]);
    if padding > 0 {
        extensions.extend_from_slice(&[0x00, 0x15]);
        extensions.extend_from_slice(&u16_be(padding));
        extensions.extend(std::iter::repeat_n(0u8, padding));
    }
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[0x11; 32]); // random
    body.push(32);
    body.extend_from_slice(&[0x22; 32]); // session id
    body.extend_from_slice(&[0x00, 0x04, 0x13, 0x01, 0xc0, 0x2f]); // cipher suites
    body.extend_from_slice(&[0x01, 0x00]); // compression: null
    body.extend_from_slice(&u16_be(extensions.len()));
    body.extend_from_slice(&extensions);
    let mut handshake = vec![0x01];
    handshake.extend_from_slice(&u24_be(body.len()));
    handshake.extend_from_slice(&body);
    handshake
}

/// Wraps a handshake in TLS records of at most `max_record` bytes each.
pub(crate) fn tls_records(handshake: &[u8], max_record: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for fragment in handshake.chunks(max_record) {
        out.extend_from_slice(&[0x16, 0x03, 0x01]);
        out.extend_from_slice(&u16_be(fragment.len()));
        out.extend_from_slice(fragment);
    }
    out
}

pub(crate) fn client_hello(sni: Option<&str>) -> Vec<u8> {
    tls_records(&client_hello_handshake(sni, 0), 16 * 1024)
}

// --- PostgreSQL ----------------------------------------------------------------------------

pub(crate) fn pg_ssl_request() -> Vec<u8> {
    let mut out = 8u32.to_be_bytes().to_vec();
    out.extend_from_slice(&80_877_103u32.to_be_bytes());
    out
}

pub(crate) fn pg_startup(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for (name, value) in params {
        body.extend_from_slice(name.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = u32::try_from(body.len() + 4)
        .unwrap()
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(&body);
    out
}

pub(crate) fn pg_message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&u32::try_from(body.len() + 4).unwrap().to_be_bytes());
    out.extend_from_slice(body);
    out
}

pub(crate) fn pg_password(password: &str) -> Vec<u8> {
    let mut body = password.as_bytes().to_vec();
    body.push(0);
    pg_message(b'p', &body)
}

pub(crate) fn pg_sasl_initial_response() -> Vec<u8> {
    let data = b"n,,n=,r=rOprNGfwEbeRWgbNEkqO";
    let mut body = b"SCRAM-SHA-256\0".to_vec();
    body.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
    body.extend_from_slice(data);
    pg_message(b'p', &body)
}

// --- Redis ----------------------------------------------------------------------------------

pub(crate) fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn u16_be(n: usize) -> [u8; 2] {
    u16::try_from(n).unwrap().to_be_bytes()
}

fn u24_be(n: usize) -> [u8; 3] {
    let [_, a, b, c] = u32::try_from(n).unwrap().to_be_bytes();
    [a, b, c]
}
