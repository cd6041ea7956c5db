//! Deterministic fuzz-style tests that run in every `cargo test`: every prefix and two-way split
//! of valid samples, byte-flip mutations, and seeded random buffers through `StreamInspector`
//! and every parser. They assert no panic, bounded memory, and a verdict that is returned once.
//! (`monitor/fuzz/` has the coverage-guided libFuzzer target for longer runs.)
use super::test_support::*;
use super::*;

/// xorshift64*: tiny, seeded, good enough to spread bytes and lengths.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn samples() -> Vec<Vec<u8>> {
    let form = "grant_type=password&username=u&password=hunter2";
    let json = r#"{"password":"hunter2","auth":{"api_key":"k"},"list":[{"token":"t"}]}"#;
    vec![
        format!("POST /oauth/token HTTP/1.1\r\nHost: idp.example.com:8443\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}", form.len()).into_bytes(),
        format!("POST http://u:p@h/api?api_key=k HTTP/1.1\r\nAuthorization: Basic dTpw\r\nCookie: a=b\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}", json.len()).into_bytes(),
        b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n9\r\npassword=\r\n7\r\nhunter2\r\n0\r\nTrailer: x\r\n\r\n".to_vec(),
        b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\nX-API-Key: k\r\n\r\n".to_vec(),
        b"CONNECT h:443 HTTP/1.1\r\nProxy-Authorization: Basic dTpw\r\n\r\n".to_vec(),
        client_hello(Some("api.example.com")),
        tls_records(&client_hello_handshake(Some("big.example"), 600), 256),
        [pg_startup(&[("user", "app"), ("database", "db")]), pg_password("hunter2")].concat(),
        [pg_ssl_request(), client_hello(Some("db.example"))].concat(),
        [pg_ssl_request(), pg_startup(&[("user", "app")]), pg_sasl_initial_response()].concat(),
        [resp(&["PING"]), resp(&["HELLO", "3", "AUTH", "default", "hunter2"])].concat(),
        b"PING\r\nAUTH \"hun\\x74er2\" \r\n".to_vec(),
    ]
}

/// Feeds `chunks` and checks the inspector's invariants along the way.
fn run(chunks: &[&[u8]], complete: &[bool]) -> Option<Observation> {
    let fp = fp();
    let cfg = DetectConfig {
        api_key_headers: vec!["X-Custom".into()],
        auth_hosts: vec![regex::Regex::new("^h$").unwrap()],
        auth_paths: vec![regex::Regex::new("^/api").unwrap()],
    };
    let mut inspector = StreamInspector::new();
    let mut verdict = None;
    for (i, chunk) in chunks.iter().enumerate() {
        let outcome = inspector.feed(chunk, complete.get(i).copied().unwrap_or(true), &cfg, &fp);
        assert!(inspector.buffered_bytes() <= MAX_INSPECTED);
        assert!(inspector.buffer_capacity() <= MAX_INSPECTED);
        if outcome.is_some() {
            assert!(verdict.is_none(), "verdict returned twice");
            assert!(inspector.is_decided());
            verdict = outcome;
        }
    }
    let finished = inspector.finish(&cfg, &fp);
    if verdict.is_some() {
        assert!(finished.is_none(), "verdict returned twice");
    }
    assert!(inspector.finish(&cfg, &fp).is_none());
    for observation in verdict.iter().chain(finished.iter()) {
        check_observation(observation);
    }
    verdict.or(finished)
}

/// Observation invariants that hold for any input.
fn check_observation(observation: &Observation) {
    for credential in &observation.credentials {
        assert!(credential.length > 0);
        assert!(credential.length <= MAX_INSPECTED);
        assert_eq!(credential.fingerprint.len(), "hmac-sha256:".len() + 12);
    }
    if observation.protocol != AppProtocol::Http {
        assert!(observation.http.is_none());
    }
    serde_json::to_string(observation).unwrap();
}

/// Every parser on its own, with and without `end`.
fn parse_everything(buf: &[u8]) {
    let fp = fp();
    let cfg = cfg();
    for end in [false, true] {
        if let http::Parse::Done(exchange) = http::inspect(buf, end, &cfg, &fp) {
            assert!(exchange.consumed <= buf.len());
        }
        let _ = postgres::inspect(buf, end, &fp);
        let _ = tls_hello::inspect(buf, end);
    }
    if let redis::Parse::Done(command) = redis::inspect(buf, &fp) {
        assert!(command.consumed <= buf.len());
        assert!(command.consumed > 0);
    }
}

#[test]
fn every_prefix_of_every_sample_is_handled() {
    for sample in samples() {
        for len in 0..=sample.len() {
            let prefix = &sample[..len];
            run(&[prefix], &[true]);
            run(&[prefix], &[false]);
            parse_everything(prefix);
        }
    }
}

#[test]
fn every_two_way_split_of_every_sample_gives_the_one_write_verdict() {
    for sample in samples() {
        let whole = run(&[&sample], &[true]);
        assert!(whole.is_some());
        for split in 0..=sample.len() {
            let (a, b) = sample.split_at(split);
            assert_eq!(
                run(&[a, b], &[true, true]),
                whole,
                "split at {split} of {sample:?}"
            );
            // The first part captured only in part: decided from what came before the hole.
            run(&[a, b], &[false, true]);
        }
    }
}

#[test]
fn byte_flip_mutations_of_samples_are_handled() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for sample in samples() {
        for pos in 0..sample.len() {
            for flip in [0x01u8, 0x20, 0x80, 0xff] {
                let mut mutated = sample.clone();
                mutated[pos] ^= flip;
                run(&[&mutated], &[true]);
                let a = rng.below(mutated.len() + 1);
                let b = a + rng.below(mutated.len() - a + 1);
                run(
                    &[&mutated[..a], &mutated[a..b], &mutated[b..]],
                    &[true, true, true],
                );
                parse_everything(&mutated);
            }
            let mut truncated_length = sample.clone();
            truncated_length[pos] = 0xff;
            parse_everything(&truncated_length);
        }
    }
}

#[test]
fn seeded_random_buffers_are_handled() {
    let mut rng = XorShift(0x0123_4567_89ab_cdef);
    let prefixes: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"POST /oauth/token HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 64\r\n\r\n"
            .to_vec(),
        b"GET /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
        vec![0x16, 0x03, 0x01, 0x01, 0x00, 0x01, 0x00, 0x00, 0xfc, 0x03, 0x03],
        pg_startup(&[("user", "u")]),
        pg_ssl_request(),
        b"*3\r\n$4\r\nAUTH\r\n".to_vec(),
        b"AUTH ".to_vec(),
    ];
    for round in 0..3000 {
        let prefix = &prefixes[round % prefixes.len()];
        let len = rng.below(2048);
        let mut buf = prefix.clone();
        buf.extend(rng.bytes(len));
        parse_everything(&buf);
        // Random chunking and truncation flags.
        let mut chunks = Vec::new();
        let mut complete = Vec::new();
        let mut at = 0;
        while at < buf.len() {
            let size = 1 + rng.below(buf.len() - at);
            chunks.push(&buf[at..at + size]);
            complete.push(rng.below(8) != 0);
            at += size;
        }
        run(&chunks, &complete);
    }
}

#[test]
fn random_text_with_protocol_tokens_is_handled() {
    // Random mixes of the tokens parsers branch on, to reach deeper states than random bytes.
    const TOKENS: &[&[u8]] = &[
        b"\r\n",
        b"\n",
        b" ",
        b":",
        b"=",
        b"&",
        b"?",
        b"@",
        b"/",
        b"\"",
        b"'",
        b"\\",
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b"GET ",
        b"POST ",
        b" HTTP/1.1",
        b"Host: ",
        b"Authorization: Basic ",
        b"Bearer ",
        b"Content-Length: ",
        b"5",
        b"99999999999999999999",
        b"Transfer-Encoding: chunked",
        b"Content-Type: application/json",
        b"password",
        b"api_key",
        b"*2",
        b"$4",
        b"AUTH",
        b"HELLO",
        b"\x00",
        b"\x16\x03\x01",
        b"p",
        b"\x00\x03\x00\x00",
        b"user",
        b"md5",
    ];
    let mut rng = XorShift(42);
    for _ in 0..3000 {
        let mut buf = Vec::new();
        for _ in 0..rng.below(64) {
            buf.extend_from_slice(TOKENS[rng.below(TOKENS.len())]);
        }
        parse_everything(&buf);
        let split = rng.below(buf.len() + 1);
        run(&[&buf[..split], &buf[split..]], &[true, rng.below(2) == 0]);
    }
}

#[test]
fn endless_streams_stay_within_the_inspection_limit() {
    let mut rng = XorShift(7);
    // Keep-alive requests without findings, then random bytes, in many writes.
    let mut stream = Vec::new();
    while stream.len() < 3 * MAX_INSPECTED {
        stream.extend_from_slice(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
    }
    let chunks: Vec<&[u8]> = stream.chunks(1 + rng.below(700)).collect();
    let observation = run(&chunks, &[]).unwrap();
    assert_eq!(observation.protocol, AppProtocol::Http);

    let commands: Vec<u8> = std::iter::repeat_n(resp(&["PING"]), 5000)
        .flatten()
        .collect();
    let chunks: Vec<&[u8]> = commands.chunks(333).collect();
    assert_eq!(run(&chunks, &[]).unwrap().protocol, AppProtocol::Redis);

    let noise = rng.bytes(4 * MAX_INSPECTED);
    let chunks: Vec<&[u8]> = noise.chunks(1000).collect();
    run(&chunks, &[]);
}
