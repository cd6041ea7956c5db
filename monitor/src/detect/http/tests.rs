use super::*;
use crate::detect::test_support::{cfg, fp};
use crate::detect::CredentialKind as Kind;

fn done(raw: &[u8]) -> Exchange {
    done_with(&cfg(), raw)
}

fn done_with(cfg: &DetectConfig, raw: &[u8]) -> Exchange {
    match inspect(raw, false, cfg, &fp()) {
        Parse::Done(exchange) => *exchange,
        other => panic!("expected a request, got {other:?}"),
    }
}

fn done_at_end(raw: &[u8]) -> Exchange {
    match inspect(raw, true, &cfg(), &fp()) {
        Parse::Done(exchange) => *exchange,
        other => panic!("expected a request, got {other:?}"),
    }
}

fn get_with(header: &str) -> Vec<u8> {
    format!("GET /v1/items HTTP/1.1\r\nHost: api.example.com\r\n{header}\r\n\r\n").into_bytes()
}

fn only_credential(exchange: &Exchange) -> &Credential {
    assert_eq!(exchange.credentials.len(), 1, "{:?}", exchange.credentials);
    &exchange.credentials[0]
}

fn post(path: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: idp.example.com\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn basic_auth_reports_password_length_and_fingerprint() {
    // "alice:s3cret-pw"
    let exchange = done(&get_with("Authorization: Basic YWxpY2U6czNjcmV0LXB3"));
    let credential = only_credential(&exchange);
    assert_eq!(credential.kind, Kind::Basic);
    assert_eq!(credential.location, "header:Authorization");
    assert_eq!(credential.length, "s3cret-pw".len());
    assert_eq!(credential.fingerprint, fp().fingerprint(b"s3cret-pw"));
}

#[test]
fn basic_auth_with_empty_password_fingerprints_the_user_part() {
    // "sk_live_abc:" (API key as user name, Stripe style), unpadded base64.
    let exchange = done(&get_with("Authorization: Basic c2tfbGl2ZV9hYmM6"));
    let credential = only_credential(&exchange);
    assert_eq!(credential.kind, Kind::Basic);
    assert_eq!(credential.fingerprint, fp().fingerprint(b"sk_live_abc"));
}

#[test]
fn basic_auth_that_is_not_base64_is_reported_whole() {
    let exchange = done(&get_with("Authorization: Basic not*base64!"));
    let credential = only_credential(&exchange);
    assert_eq!(credential.kind, Kind::Basic);
    assert_eq!(credential.length, "not*base64!".len());
}

#[test]
fn bearer_token_reports_token_length() {
    let exchange = done(&get_with("Authorization: Bearer eyJhbGciOi.abc.def"));
    let credential = only_credential(&exchange);
    assert_eq!(credential.kind, Kind::Bearer);
    assert_eq!(credential.length, "eyJhbGciOi.abc.def".len());
    assert_eq!(
        credential.fingerprint,
        fp().fingerprint(b"eyJhbGciOi.abc.def")
    );
}

#[test]
fn authorization_header_name_and_scheme_are_case_insensitive() {
    let exchange = done(&get_with("authorization: bEaReR tok123"));
    assert_eq!(only_credential(&exchange).kind, Kind::Bearer);
    assert_eq!(
        only_credential(&exchange).location,
        "header:Authorization",
        "canonical spelling whatever the client sent"
    );
}

#[test]
fn digest_authorization_is_digest() {
    let exchange = done(&get_with(
        r#"Authorization: Digest username="bob", realm="r", nonce="n", uri="/", response="6629fae49393a05397450978507c4ef1""#,
    ));
    assert_eq!(only_credential(&exchange).kind, Kind::Digest);
}

#[test]
fn aws_sigv4_fingerprints_the_access_key_id() {
    let exchange = done(&get_with(
        "Authorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20240101/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024",
    ));
    let credential = only_credential(&exchange);
    assert_eq!(credential.kind, Kind::AwsSigv4);
    assert_eq!(credential.length, 20);
    assert_eq!(
        credential.fingerprint,
        fp().fingerprint(b"AKIAIOSFODNN7EXAMPLE")
    );
}

#[test]
fn other_schemes_and_bare_tokens_are_authorization() {
    let exchange = done(&get_with("Authorization: Token ghp_abcdef"));
    let credential = only_credential(&exchange);
    assert_eq!(credential.kind, Kind::Authorization);
    assert_eq!(credential.length, "ghp_abcdef".len());

    let exchange = done(&get_with("Authorization: sk-bare-token"));
    let credential = only_credential(&exchange);
    assert_eq!(credential.kind, Kind::Authorization);
    assert_eq!(credential.length, "sk-bare-token".len());
}

#[test]
fn empty_authorization_values_are_not_credentials() {
    assert!(done(&get_with("Authorization: Bearer "))
        .credentials
        .is_empty());
    assert!(done(&get_with("Authorization:")).credentials.is_empty());
}

#[test]
fn proxy_authorization_is_its_own_kind() {
    // "user:proxypass"
    let exchange = done(&get_with("Proxy-Authorization: Basic dXNlcjpwcm94eXBhc3M="));
    let credential = only_credential(&exchange);
    assert_eq!(credential.kind, Kind::ProxyAuthorization);
    assert_eq!(credential.location, "header:Proxy-Authorization");
    assert_eq!(credential.length, "proxypass".len());
}

#[test]
fn builtin_api_key_headers_match_case_insensitively() {
    for (sent, reported) in [
        ("x-api-key", "X-API-Key"),
        ("API-KEY", "Api-Key"),
        ("Private-Token", "PRIVATE-TOKEN"),
        ("x-auth-token", "X-Auth-Token"),
        ("X-Goog-Api-Key", "X-Goog-Api-Key"),
        ("ocp-apim-subscription-key", "Ocp-Apim-Subscription-Key"),
        ("x-vault-token", "X-Vault-Token"),
    ] {
        let exchange = done(&get_with(&format!("{sent}: key-value-123")));
        let credential = only_credential(&exchange);
        assert_eq!(credential.kind, Kind::ApiKey, "{sent}");
        assert_eq!(credential.location, format!("header:{reported}"));
        assert_eq!(credential.length, "key-value-123".len());
    }
}

#[test]
fn configured_api_key_headers_extend_builtins() {
    let cfg = DetectConfig {
        api_key_headers: vec!["X-Internal-Key".into()],
        ..DetectConfig::default()
    };
    let exchange = done_with(&cfg, &get_with("x-internal-key: abc"));
    assert_eq!(only_credential(&exchange).location, "header:X-Internal-Key");
    assert!(done(&get_with("x-internal-key: abc"))
        .credentials
        .is_empty());
}

#[test]
fn cookie_is_one_credential_with_header_value_length() {
    let exchange = done(&get_with("Cookie: session=abc123; theme=dark"));
    let credential = only_credential(&exchange);
    assert_eq!(credential.kind, Kind::Cookie);
    assert_eq!(credential.location, "header:Cookie");
    assert_eq!(credential.length, "session=abc123; theme=dark".len());
}

#[test]
fn request_without_authentication_has_no_credentials() {
    let exchange = done(
        b"GET /v1/items?page=2&q=rust HTTP/1.1\r\nHost: api.example.com\r\nAccept: */*\r\nUser-Agent: x\r\n\r\n",
    );
    assert!(exchange.credentials.is_empty());
    assert_eq!(exchange.auth_endpoint, None);
    assert_eq!(
        exchange.request,
        HttpRequest {
            method: "GET".into(),
            path: "/v1/items".into(),
            host: Some("api.example.com".into()),
        }
    );
}

#[test]
fn url_userinfo_in_absolute_form_is_found_and_kept_out_of_host_and_path() {
    let exchange =
        done(b"GET http://deploy:pa%40ss@proxy.example.com:8080/repo?x=1 HTTP/1.1\r\n\r\n");
    let credential = only_credential(&exchange);
    assert_eq!(credential.kind, Kind::UrlUserinfo);
    assert_eq!(credential.location, "url:userinfo");
    assert_eq!(credential.length, "pa@ss".len(), "percent-decoded");
    assert_eq!(credential.fingerprint, fp().fingerprint(b"pa@ss"));
    assert_eq!(exchange.request.host.as_deref(), Some("proxy.example.com"));
    assert_eq!(exchange.request.path, "/repo");
}

#[test]
fn url_userinfo_token_without_password_is_the_secret() {
    let exchange = done(b"GET http://ghp_token123@github.example/ HTTP/1.1\r\n\r\n");
    assert_eq!(only_credential(&exchange).length, "ghp_token123".len());
    assert_eq!(exchange.request.path, "/");
}

#[test]
fn secret_query_parameters_are_reported_by_name() {
    let exchange =
        done(b"GET /maps?API_KEY=abc123&page=3&access_token=tok%2Fen HTTP/1.1\r\nHost: h\r\n\r\n");
    let found: Vec<_> = exchange
        .credentials
        .iter()
        .map(|c| (c.kind, c.location.as_str(), c.length))
        .collect();
    assert_eq!(
        found,
        [
            (Kind::QueryParameter, "query:API_KEY", 6),
            (Kind::QueryParameter, "query:access_token", "tok/en".len()),
        ]
    );
    assert_eq!(exchange.request.path, "/maps");
}

#[test]
fn harmless_query_parameters_are_not_credentials() {
    let exchange = done(b"GET /search?q=password&tokenizer=bert&page=1 HTTP/1.1\r\n\r\n");
    assert!(exchange.credentials.is_empty());
}

#[test]
fn form_body_fields_and_password_grant_are_found() {
    let exchange = done(&post(
        "/v1/oauth/token",
        "application/x-www-form-urlencoded; charset=utf-8",
        "grant_type=password&username=alice&password=hunter2&client_id=app&client_secret=s3",
    ));
    let found: Vec<_> = exchange
        .credentials
        .iter()
        .map(|c| (c.kind, c.location.as_str(), c.length))
        .collect();
    assert_eq!(
        found,
        [
            (Kind::FormField, "form:password", 7),
            (Kind::FormField, "form:client_secret", 2),
        ]
    );
    assert_eq!(
        exchange.auth_endpoint.as_deref(),
        Some("path /v1/oauth/token")
    );
}

#[test]
fn grant_type_marks_an_auth_exchange_on_any_path() {
    let exchange = done(&post(
        "/api/v2/issue",
        "application/x-www-form-urlencoded",
        "grant_type=client_credentials&client_id=app",
    ));
    assert_eq!(
        exchange.auth_endpoint.as_deref(),
        Some("grant_type=client_credentials")
    );
    assert!(exchange.credentials.is_empty());
}

#[test]
fn json_body_top_level_and_nested_fields_are_found() {
    let exchange = done(&post(
        "/api/v2/connect",
        "application/json",
        r#"{"user":"alice","password":"hunter2","auth":{"clientSecret":"cs-1","scope":"x"},"n":1}"#,
    ));
    let found: Vec<_> = exchange
        .credentials
        .iter()
        .map(|c| (c.kind, c.location.as_str(), c.length))
        .collect();
    assert_eq!(
        found,
        [
            (Kind::JsonField, "json:password", 7),
            (Kind::JsonField, "json:auth.clientSecret", 4),
        ]
    );
}

#[test]
fn json_grant_type_and_vendor_json_content_type() {
    let exchange = done(&post(
        "/api/x",
        "application/vnd.api+json",
        r#"{"grant_type":"PASSWORD","refresh_token":"rt"}"#,
    ));
    assert_eq!(
        exchange.auth_endpoint.as_deref(),
        Some("grant_type=password")
    );
    assert_eq!(only_credential(&exchange).location, "json:refresh_token");
}

#[test]
fn json_without_content_type_is_recognised() {
    let raw = b"POST /x HTTP/1.1\r\nContent-Length: 21\r\n\r\n{\"api_key\": \"k-1234\"}";
    let exchange = done(raw);
    assert_eq!(only_credential(&exchange).location, "json:api_key");
}

#[test]
fn json_structures_under_secret_names_are_not_credentials() {
    let exchange = done(&post(
        "/x",
        "application/json",
        r#"{"password":{"min_length":8},"token":null,"secret":""}"#,
    ));
    assert!(exchange.credentials.is_empty());
}

#[test]
fn opaque_and_compressed_bodies_are_not_inspected() {
    let exchange = done(&post("/x", "text/plain", "password=hunter2"));
    assert!(exchange.credentials.is_empty());
    let raw = b"POST /x HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Encoding: gzip\r\nContent-Length: 16\r\n\r\npassword=hunter2";
    assert!(done(raw).credentials.is_empty());
}

#[test]
fn chunked_form_body_is_decoded() {
    let raw = b"POST /x HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n9\r\npassword=\r\n7\r\nhunter2\r\n0\r\n\r\nGET /next HTTP/1.1\r\n\r\n";
    let exchange = done(raw);
    assert_eq!(only_credential(&exchange).length, 7);
    assert_eq!(&raw[exchange.consumed..], b"GET /next HTTP/1.1\r\n\r\n");
}

#[test]
fn body_split_from_head_waits_for_the_body() {
    let raw = post("/x", "application/json", r#"{"password":"hunter2"}"#);
    let head_len = raw.len() - r#"{"password":"hunter2"}"#.len();
    assert!(matches!(
        inspect(&raw[..head_len], false, &cfg(), &fp()),
        Parse::NeedMore
    ));
    assert!(matches!(
        inspect(&raw[..raw.len() - 1], false, &cfg(), &fp()),
        Parse::NeedMore
    ));
}

#[test]
fn cut_form_body_reports_complete_fields_only() {
    let raw = post(
        "/x",
        "application/x-www-form-urlencoded",
        "password=hunter2&client_secret=abcdef&z=1",
    );
    // Cut inside the client_secret value.
    let cut_at = raw.len() - "def&z=1".len();
    let exchange = done_at_end(&raw[..cut_at]);
    assert_eq!(only_credential(&exchange).location, "form:password");
    assert!(exchange.ends_stream);
}

#[test]
fn cut_json_body_reports_fields_before_the_cut() {
    let raw = post(
        "/x",
        "application/json",
        r#"{"password":"hunter2","api_key":"abcdef"}"#,
    );
    let cut_at = raw.len() - r#"def"}"#.len();
    let exchange = done_at_end(&raw[..cut_at]);
    assert_eq!(only_credential(&exchange).location, "json:password");
}

#[test]
fn cut_head_reports_complete_header_lines_only() {
    let raw = b"GET /x HTTP/1.1\r\nHost: h\r\nX-API-Key: complete\r\nAuthorization: Bearer cut-tok";
    let exchange = done_at_end(raw);
    assert_eq!(only_credential(&exchange).location, "header:X-API-Key");
    assert_eq!(exchange.request.host.as_deref(), Some("h"));
}

#[test]
fn request_line_cut_at_end_is_partial() {
    assert!(matches!(
        inspect(b"GET /very/long/pa", true, &cfg(), &fp()),
        Parse::Partial
    ));
    assert!(matches!(
        inspect(b"GET /very/long/pa", false, &cfg(), &fp()),
        Parse::NeedMore
    ));
}

#[test]
fn host_header_is_lowercased_without_port_and_keeps_ipv6_brackets() {
    let host = |value: &str| {
        done(format!("GET / HTTP/1.1\r\nHost: {value}\r\n\r\n").as_bytes())
            .request
            .host
    };
    assert_eq!(
        host("API.Example.com:8443").as_deref(),
        Some("api.example.com")
    );
    assert_eq!(host("[2001:db8::1]:8080").as_deref(), Some("[2001:db8::1]"));
    assert_eq!(host("[::1]").as_deref(), Some("[::1]"));
    assert_eq!(host("10.0.0.7").as_deref(), Some("10.0.0.7"));
}

#[test]
fn auth_endpoint_paths_match_segments_not_substrings() {
    let reason = |path: &str| {
        done(format!("POST {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes()).auth_endpoint
    };
    assert_eq!(reason("/oauth/token").as_deref(), Some("path /oauth/token"));
    assert_eq!(reason("/login?next=/").as_deref(), Some("path /login"));
    assert_eq!(reason("/tokenizer"), None);
    assert_eq!(reason("/v1/tokenize"), None);
}

#[test]
fn configured_auth_hosts_and_paths_are_reasons() {
    let cfg = DetectConfig {
        auth_hosts: vec![regex::Regex::new(r"^auth\.internal$").unwrap()],
        auth_paths: vec![regex::Regex::new(r"^/v1/mint$").unwrap()],
        ..DetectConfig::default()
    };
    let exchange = done_with(&cfg, b"GET /x HTTP/1.1\r\nHost: AUTH.internal:80\r\n\r\n");
    assert_eq!(
        exchange.auth_endpoint.as_deref(),
        Some("host auth.internal matches auth_hosts")
    );
    let exchange = done_with(&cfg, b"GET /v1/mint HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        exchange.auth_endpoint.as_deref(),
        Some("path /v1/mint matches auth_paths")
    );
}

#[test]
fn connect_with_proxy_authorization_ends_the_stream() {
    let exchange = done(
        b"CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\nProxy-Authorization: Basic dTpw\r\n\r\n\x16\x03\x01",
    );
    assert!(exchange.ends_stream);
    assert_eq!(exchange.request.method, "CONNECT");
    assert_eq!(exchange.request.path, "api.example.com:443");
    assert_eq!(only_credential(&exchange).kind, Kind::ProxyAuthorization);
}

#[test]
fn upgrade_ends_the_stream() {
    let exchange = done(
        b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x85",
    );
    assert!(exchange.ends_stream);
}

#[test]
fn consumed_covers_head_and_body_for_pipelining() {
    let first = post("/a", "application/json", "{}");
    let mut raw = first.clone();
    raw.extend_from_slice(b"GET /b HTTP/1.1\r\n\r\n");
    let exchange = done(&raw);
    assert_eq!(exchange.consumed, first.len());
    assert!(!exchange.ends_stream);
}

#[test]
fn conflicting_content_lengths_end_the_stream() {
    let exchange = done(b"POST /x HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd");
    assert!(exchange.ends_stream);
}

#[test]
fn non_http_bytes_are_rejected() {
    for raw in [
        &client_hello_bytes()[..],
        b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"*2\r\n$4\r\nAUTH\r\n$3\r\nabc\r\n",
        b"AUTH hunter2\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJ",
    ] {
        assert!(
            matches!(inspect(raw, false, &cfg(), &fp()), Parse::NotHttp),
            "{raw:?}"
        );
    }
}

fn client_hello_bytes() -> Vec<u8> {
    crate::detect::test_support::client_hello(Some("api.example.com"))
}

#[test]
fn leading_method_bytes_wait_for_more() {
    assert!(matches!(
        inspect(b"PO", false, &cfg(), &fp()),
        Parse::NeedMore
    ));
    assert!(matches!(
        inspect(b"PO", true, &cfg(), &fp()),
        Parse::NotHttp
    ));
}

#[test]
fn too_many_headers_still_reports_the_request() {
    let mut raw = b"GET /many HTTP/1.1\r\n".to_vec();
    for i in 0..300 {
        raw.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    let exchange = done(&raw);
    assert_eq!(exchange.request.path, "/many");
    assert!(exchange.ends_stream);
}
