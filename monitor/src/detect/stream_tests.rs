//! `StreamInspector` behaviour: protocol choice, write boundaries, truncation, keep-alive, and
//! that no secret ever reaches an observation.
use super::test_support::*;
use super::*;

const SECRET: &str = "Sup3r-Secr3t-Value";

fn kinds(observation: &Observation) -> Vec<(CredentialKind, &str)> {
    observation
        .credentials
        .iter()
        .map(|c| (c.kind, c.location.as_str()))
        .collect()
}

fn form_login() -> Vec<u8> {
    let body = format!("grant_type=password&username=alice&password={SECRET}");
    format!(
        "POST /oauth/token HTTP/1.1\r\nHost: idp.example.com\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn pg_login() -> Vec<u8> {
    [
        pg_startup(&[("user", "app"), ("database", "orders")]),
        pg_password(SECRET),
    ]
    .concat()
}

// --- HTTP --------------------------------------------------------------------------------

#[test]
fn http_form_login_is_decided_without_waiting_for_close() {
    let observation = verdict_without_finish(&[&form_login()]).unwrap();
    assert_eq!(observation.protocol, AppProtocol::Http);
    assert_eq!(
        kinds(&observation),
        [(CredentialKind::FormField, "form:password")]
    );
    assert_eq!(
        observation.auth_endpoint.as_deref(),
        Some("path /oauth/token")
    );
    assert_eq!(
        observation.http,
        Some(HttpRequest {
            method: "POST".into(),
            path: "/oauth/token".into(),
            host: Some("idp.example.com".into()),
        })
    );
}

#[test]
fn http_request_split_at_every_byte_gives_the_same_verdict() {
    assert_same_verdict_at_every_split(&form_login());
}

#[test]
fn http_json_request_split_at_every_byte_gives_the_same_verdict() {
    let body = format!(r#"{{"client_id":"a","client_secret":"{SECRET}"}}"#);
    let raw = format!(
        "POST /api/session HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {SECRET}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_same_verdict_at_every_split(raw.as_bytes());
    let observation = verdict(&[raw.as_bytes()]).unwrap();
    assert_eq!(
        kinds(&observation),
        [
            (CredentialKind::Bearer, "header:Authorization"),
            (CredentialKind::JsonField, "json:client_secret")
        ]
    );
}

#[test]
fn http_body_in_a_later_write_is_still_inspected() {
    let raw = form_login();
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let fp = fp();
    let cfg = cfg();
    let mut inspector = StreamInspector::new();
    assert_eq!(inspector.feed(&raw[..head_end], true, &cfg, &fp), None);
    let observation = inspector.feed(&raw[head_end..], true, &cfg, &fp).unwrap();
    assert_eq!(
        kinds(&observation),
        [(CredentialKind::FormField, "form:password")]
    );
}

#[test]
fn http_truncated_write_is_decided_at_once_from_complete_fields() {
    let raw = form_login();
    // The kernel captured the write only up to the middle of the secret.
    let cut = raw.len() - 5;
    let fp = fp();
    let cfg = cfg();
    let mut inspector = StreamInspector::new();
    let observation = inspector.feed(&raw[..cut], false, &cfg, &fp).unwrap();
    assert_eq!(observation.protocol, AppProtocol::Http);
    // The password value was cut, so it is not reported; the endpoint still is.
    assert!(observation.credentials.is_empty());
    assert_eq!(
        observation.auth_endpoint.as_deref(),
        Some("path /oauth/token")
    );
    assert_eq!(inspector.feed(b"rest", true, &cfg, &fp), None);
}

#[test]
fn http_truncated_body_keeps_fields_before_the_cut() {
    let body = format!("password={SECRET}&client_secret=abcdef");
    let raw = format!(
        "POST /x HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let fp = fp();
    let mut inspector = StreamInspector::new();
    let observation = inspector
        .feed(&raw.as_bytes()[..raw.len() - 3], false, &cfg(), &fp)
        .unwrap();
    assert_eq!(
        kinds(&observation),
        [(CredentialKind::FormField, "form:password")]
    );
}

#[test]
fn http_truncated_head_keeps_complete_header_lines() {
    let raw = format!("GET /v1/x HTTP/1.1\r\nHost: h\r\nX-API-Key: {SECRET}\r\nCookie: abc");
    let fp = fp();
    let mut inspector = StreamInspector::new();
    let observation = inspector.feed(raw.as_bytes(), false, &cfg(), &fp).unwrap();
    assert_eq!(
        kinds(&observation),
        [(CredentialKind::ApiKey, "header:X-API-Key")]
    );
}

#[test]
fn http_keep_alive_finds_credentials_in_a_later_request() {
    let fp = fp();
    let cfg = cfg();
    let mut inspector = StreamInspector::new();
    let first = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
    assert_eq!(inspector.feed(first, true, &cfg, &fp), None);
    let second = format!("GET /b HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {SECRET}\r\n\r\n");
    let observation = inspector.feed(second.as_bytes(), true, &cfg, &fp).unwrap();
    assert_eq!(observation.http.as_ref().unwrap().path, "/b");
    assert_eq!(
        kinds(&observation),
        [(CredentialKind::Bearer, "header:Authorization")]
    );
}

#[test]
fn http_pipelined_requests_in_one_write() {
    let raw = format!(
        "GET /a HTTP/1.1\r\nHost: h\r\n\r\nPOST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhiGET /c?api_key={SECRET} HTTP/1.1\r\nHost: h\r\n\r\n"
    );
    let observation = verdict_without_finish(&[raw.as_bytes()]).unwrap();
    assert_eq!(observation.http.as_ref().unwrap().path, "/c");
    assert_eq!(
        kinds(&observation),
        [(CredentialKind::QueryParameter, "query:api_key")]
    );
}

#[test]
fn http_keep_alive_without_credentials_reports_the_first_request_on_finish() {
    let writes: [&[u8]; 2] = [
        b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n",
    ];
    assert_eq!(verdict_without_finish(&writes), None);
    let observation = verdict(&writes).unwrap();
    assert_eq!(observation.protocol, AppProtocol::Http);
    assert_eq!(observation.http.unwrap().path, "/a");
    assert!(observation.credentials.is_empty());
}

#[test]
fn http_without_authorization_has_no_credentials() {
    let observation = verdict(&[
        b"GET /v1/models HTTP/1.1\r\nHost: api.example.com\r\nAccept: application/json\r\n\r\n",
    ])
    .unwrap();
    assert_eq!(observation.protocol, AppProtocol::Http);
    assert!(observation.credentials.is_empty());
    assert_eq!(observation.auth_endpoint, None);
}

#[test]
fn http_auth_endpoint_without_credentials_is_decided_at_once() {
    let observation = verdict_without_finish(&[
        b"GET /oauth/authorize?client_id=app&response_type=code HTTP/1.1\r\nHost: h\r\n\r\n",
    ])
    .unwrap();
    assert!(observation.credentials.is_empty());
    assert_eq!(
        observation.auth_endpoint.as_deref(),
        Some("path /oauth/authorize")
    );
}

#[test]
fn http_tokenizer_path_is_not_an_auth_endpoint() {
    let observation =
        verdict(&[b"POST /v1/tokenizer HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"]).unwrap();
    assert_eq!(observation.auth_endpoint, None);
}

#[test]
fn https_client_hello_is_tls_not_http() {
    let observation = verdict_without_finish(&[&client_hello(Some("api.example.com"))]).unwrap();
    assert_eq!(observation.protocol, AppProtocol::Tls);
    assert_eq!(observation.tls_sni.as_deref(), Some("api.example.com"));
    assert_eq!(observation.http, None);
    assert!(observation.credentials.is_empty());
}

#[test]
fn tls_hello_in_one_byte_writes() {
    let hello = client_hello(Some("slow.example"));
    let writes: Vec<&[u8]> = hello.chunks(1).collect();
    let observation = verdict_without_finish(&writes).unwrap();
    assert_eq!(observation.tls_sni.as_deref(), Some("slow.example"));
}

#[test]
fn tls_hello_cut_by_capture_limit_is_tls() {
    let hello = tls_records(&client_hello_handshake(Some("cut.example"), 2000), 16_000);
    let fp = fp();
    let mut inspector = StreamInspector::new();
    let observation = inspector.feed(&hello[..300], false, &cfg(), &fp).unwrap();
    assert_eq!(observation.protocol, AppProtocol::Tls);
    assert_eq!(observation.tls_sni.as_deref(), Some("cut.example"));
}

#[test]
fn oversized_write_is_decided_at_the_inspection_limit() {
    let mut raw = b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n".to_vec();
    raw.resize(40_000, b'x');
    let fp = fp();
    let mut inspector = StreamInspector::new();
    let observation = inspector.feed(&raw, true, &cfg(), &fp).unwrap();
    assert_eq!(observation.protocol, AppProtocol::Http);
    assert_eq!(inspector.buffered_bytes(), 0);
}

#[test]
fn opaque_body_with_header_credential_does_not_wait_for_the_body() {
    let raw = format!("PUT /blob HTTP/1.1\r\nHost: h\r\nX-API-Key: {SECRET}\r\nContent-Type: application/octet-stream\r\nContent-Length: 5000\r\n\r\nfirst-bytes");
    let observation = verdict_without_finish(&[raw.as_bytes()]).unwrap();
    assert_eq!(
        kinds(&observation),
        [(CredentialKind::ApiKey, "header:X-API-Key")]
    );
}

#[test]
fn http_secrets_never_reach_the_observation() {
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("alice:{SECRET}"),
    );
    let body = format!(r#"{{"password":"{SECRET}","nested":{{"api_key":"{SECRET}"}}}}"#);
    let raw = format!(
        "POST http://bob:{SECRET}@proxy.example/login?access_token={SECRET} HTTP/1.1\r\nHost: proxy.example\r\nAuthorization: Basic {basic}\r\nProxy-Authorization: Bearer {SECRET}\r\nX-API-Key: {SECRET}\r\nCookie: sid={SECRET}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let observation = verdict(&[raw.as_bytes()]).unwrap();
    assert_eq!(
        observation.credentials.len(),
        8,
        "{:?}",
        observation.credentials
    );
    assert_secret_absent(&observation, SECRET);
    assert_secret_absent(&observation, &basic);
    let form = verdict(&[&form_login()]).unwrap();
    assert_secret_absent(&form, SECRET);
}

// --- PostgreSQL -----------------------------------------------------------------------------

#[test]
fn postgres_password_is_found_and_decided_after_the_password_message() {
    let observation = verdict_without_finish(&[&pg_login()]).unwrap();
    assert_eq!(observation.protocol, AppProtocol::Postgres);
    assert_eq!(
        kinds(&observation),
        [(
            CredentialKind::PostgresPassword,
            "postgres:password_message"
        )]
    );
    assert_eq!(
        observation.postgres,
        Some(PostgresStartup {
            user: Some("app".into()),
            database: Some("orders".into()),
            ssl_requested: false,
        })
    );
}

#[test]
fn postgres_split_at_every_byte_gives_the_same_verdict() {
    assert_same_verdict_at_every_split(&pg_login());
}

#[test]
fn postgres_startup_only_is_reported_on_finish() {
    let startup = pg_startup(&[("user", "app")]);
    assert_eq!(verdict_without_finish(&[&startup]), None);
    let observation = verdict(&[&startup]).unwrap();
    assert_eq!(observation.protocol, AppProtocol::Postgres);
    assert_eq!(observation.postgres.unwrap().user.as_deref(), Some("app"));
}

#[test]
fn postgres_ssl_request_followed_by_client_hello_is_tls() {
    let writes = [pg_ssl_request(), client_hello(Some("db.internal"))];
    let observation = verdict_without_finish(&[&writes[0], &writes[1]]).unwrap();
    assert_eq!(observation.protocol, AppProtocol::Tls);
    assert_eq!(observation.tls_sni.as_deref(), Some("db.internal"));
    assert!(observation.postgres.unwrap().ssl_requested);
}

#[test]
fn postgres_ssl_refused_then_cleartext_login_is_flagged() {
    let writes = [pg_ssl_request(), pg_login()];
    let observation = verdict_without_finish(&[&writes[0], &writes[1]]).unwrap();
    assert_eq!(observation.protocol, AppProtocol::Postgres);
    assert!(observation.postgres.unwrap().ssl_requested);
    assert_eq!(observation.credentials.len(), 1);
}

#[test]
fn postgres_scram_is_not_a_credential() {
    let stream = [pg_startup(&[("user", "app")]), pg_sasl_initial_response()].concat();
    let observation = verdict_without_finish(&[&stream]).unwrap();
    assert_eq!(observation.protocol, AppProtocol::Postgres);
    assert!(observation.credentials.is_empty());
}

#[test]
fn postgres_secrets_never_reach_the_observation() {
    let observation = verdict(&[&pg_login()]).unwrap();
    assert_eq!(observation.credentials.len(), 1);
    assert_secret_absent(&observation, SECRET);

    let md5 = "md5a3556571e93b0d20722ba62be61e8c2d";
    let stream = [pg_startup(&[("user", "app")]), pg_password(md5)].concat();
    let observation = verdict(&[&stream]).unwrap();
    assert_eq!(observation.credentials[0].kind, CredentialKind::PostgresMd5);
    assert_secret_absent(&observation, md5);
    assert_secret_absent(&observation, &md5[3..]);
}

// --- Redis ----------------------------------------------------------------------------------

#[test]
fn redis_auth_after_other_commands_is_found() {
    let ping = resp(&["PING"]);
    let select = resp(&["SELECT", "2"]);
    let auth = resp(&["AUTH", "default", SECRET]);
    let observation = verdict_without_finish(&[&ping, &select, &auth]).unwrap();
    assert_eq!(observation.protocol, AppProtocol::Redis);
    assert_eq!(
        kinds(&observation),
        [(CredentialKind::RedisAuth, "redis:AUTH")]
    );
}

#[test]
fn redis_split_at_every_byte_gives_the_same_verdict() {
    let stream = [resp(&["PING"]), resp(&["HELLO", "3", "AUTH", "u", SECRET])].concat();
    assert_same_verdict_at_every_split(&stream);
}

#[test]
fn redis_commands_without_auth_are_redis_on_finish() {
    let writes = [resp(&["GET", "k"]), resp(&["SET", "k", "v"])];
    assert_eq!(verdict_without_finish(&[&writes[0], &writes[1]]), None);
    let observation = verdict(&[&writes[0], &writes[1]]).unwrap();
    assert_eq!(observation.protocol, AppProtocol::Redis);
    assert!(observation.credentials.is_empty());
}

#[test]
fn redis_inline_auth_is_found() {
    let line = format!("AUTH {SECRET}\r\n");
    let observation = verdict_without_finish(&[line.as_bytes()]).unwrap();
    assert_eq!(observation.protocol, AppProtocol::Redis);
    assert_eq!(observation.credentials.len(), 1);
}

#[test]
fn redis_inline_get_is_not_mistaken_for_http() {
    let observation = verdict(&[b"GET mykey\r\n"]).unwrap();
    assert_eq!(observation.protocol, AppProtocol::Redis);
}

#[test]
fn redis_secrets_never_reach_the_observation() {
    let observation = verdict(&[&resp(&["AUTH", SECRET])]).unwrap();
    assert_secret_absent(&observation, SECRET);
    let observation = verdict(&[format!("HELLO 3 AUTH default {SECRET}\r\n").as_bytes()]).unwrap();
    assert_eq!(observation.credentials.len(), 1);
    assert_secret_absent(&observation, SECRET);
}

// --- Unknown and lifecycle ------------------------------------------------------------------

#[test]
fn binary_garbage_is_unknown_at_the_first_write() {
    let observation = verdict_without_finish(&[&[0x8f, 0x01, 0x02, 0xff]]).unwrap();
    assert_eq!(observation, Observation::bare(AppProtocol::Unknown));
}

#[test]
fn foreign_text_protocol_is_unknown_at_the_first_line() {
    let observation = verdict_without_finish(&[b"SSH-2.0-OpenSSH_9.6\r\n"]).unwrap();
    assert_eq!(observation.protocol, AppProtocol::Unknown);
    let observation = verdict_without_finish(&[b"EHLO client.example\r\n"]).unwrap();
    assert_eq!(observation.protocol, AppProtocol::Unknown);
}

#[test]
fn ambiguous_short_text_is_unknown_on_finish() {
    assert_eq!(verdict(&[b"GE"]).unwrap().protocol, AppProtocol::Unknown);
}

#[test]
fn nothing_written_gives_no_verdict() {
    let fp = fp();
    let mut inspector = StreamInspector::new();
    assert_eq!(inspector.feed(b"", true, &cfg(), &fp), None);
    assert_eq!(inspector.finish(&cfg(), &fp), None);
    assert!(inspector.is_decided());
}

#[test]
fn inspector_debug_output_shows_no_buffered_bytes() {
    let fp = fp();
    let mut inspector = StreamInspector::new();
    let head = format!("POST /x HTTP/1.1\r\nAuthorization: Bearer {SECRET}\r\nContent-Type: application/json\r\nContent-Length: 99\r\n\r\n");
    assert_eq!(inspector.feed(head.as_bytes(), true, &cfg(), &fp), None);
    let shown = format!("{inspector:?}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(shown.contains("http"), "{shown}");
}

#[test]
fn verdict_is_returned_once() {
    let fp = fp();
    let cfg = cfg();
    let mut inspector = StreamInspector::new();
    assert!(inspector.feed(&pg_login(), true, &cfg, &fp).is_some());
    assert_eq!(inspector.feed(&pg_login(), true, &cfg, &fp), None);
    assert_eq!(inspector.finish(&cfg, &fp), None);
    assert_eq!(inspector.buffered_bytes(), 0);
}

#[test]
fn observation_serialises_with_snake_case_names() {
    let raw = b"GET / HTTP/1.1\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/x, Signature=abc\r\n\r\n";
    let observation = verdict(&[raw]).unwrap();
    let json = serde_json::to_value(&observation).unwrap();
    assert_eq!(json["protocol"], "http");
    assert_eq!(json["credentials"][0]["kind"], "aws_sigv4");
    assert_eq!(json["credentials"][0]["location"], "header:Authorization");
    assert_eq!(json["credentials"][0]["length"], 11);
    assert!(json["credentials"][0]["fingerprint"]
        .as_str()
        .unwrap()
        .starts_with("hmac-sha256:"));
    assert_eq!(json["http"]["path"], "/");
    assert_eq!(json["tls_sni"], serde_json::Value::Null);
}
