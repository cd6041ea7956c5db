//! Every credential kind the parsers produce keeps its value (and its other forms) in
//! `Credential::secrets`, and none of those bytes reach the serialised or `Debug` form of the
//! credential or the observation.
use super::test_support::*;
use super::*;

/// The verdict on `stream` has one credential of `kind`, whose first secret is `value` and
/// whose secrets include `forms`; no secret of it shows in JSON or `Debug`.
fn check(stream: &[u8], kind: CredentialKind, value: &str, forms: &[&str]) {
    let observation = verdict(&[stream]).expect("a verdict");
    let credential = observation
        .credentials
        .iter()
        .find(|c| c.kind == kind)
        .unwrap_or_else(|| panic!("no {kind:?} in {:?}", observation.credentials));
    let secrets: Vec<&[u8]> = credential.secrets.iter().map(Secret::as_bytes).collect();
    assert_eq!(
        secrets.first(),
        Some(&value.as_bytes()),
        "{kind:?}: value first"
    );
    for form in forms {
        assert!(
            secrets.contains(&form.as_bytes()),
            "{kind:?}: form {form:?} missing"
        );
    }
    assert_eq!(credential.length, value.len());
    assert_eq!(credential.fingerprint, fp().fingerprint(value.as_bytes()));
    let shown = [
        serde_json::to_string(credential).unwrap(),
        serde_json::to_string(&observation).unwrap(),
        format!("{credential:?}"),
        format!("{observation:?}"),
    ];
    for secret in &credential.secrets {
        let text = String::from_utf8_lossy(secret.as_bytes());
        for output in &shown {
            assert!(
                !output.contains(text.as_ref()),
                "{kind:?}: {text:?} in {output}"
            );
        }
    }
    assert!(
        !shown[0].contains("secrets"),
        "the field itself is not serialised"
    );
}

fn get(path: &str, header: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: api.example.com\r\n{header}\r\n\r\n").into_bytes()
}

fn post(content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /v1/x HTTP/1.1\r\nHost: api.example.com\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn basic_keeps_password_pair_and_token() {
    // "alice:s3cret-pw"
    check(
        &get("/", "Authorization: Basic YWxpY2U6czNjcmV0LXB3"),
        CredentialKind::Basic,
        "s3cret-pw",
        &["alice:s3cret-pw", "YWxpY2U6czNjcmV0LXB3"],
    );
}

#[test]
fn bearer_digest_aws_and_other_authorization() {
    check(
        &get("/", "Authorization: Bearer eyJhbGciOi.abc.def"),
        CredentialKind::Bearer,
        "eyJhbGciOi.abc.def",
        &[],
    );
    check(
        &get(
            "/",
            r#"Authorization: Digest username="u", response="6629fae49393a05397450978507c4ef1""#,
        ),
        CredentialKind::Digest,
        r#"username="u", response="6629fae49393a05397450978507c4ef1""#,
        &[],
    );
    check(
        &get(
            "/",
            "Authorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=fe5f80f77d5fa3beca038a248ff027d0",
        ),
        CredentialKind::AwsSigv4,
        "AKIAIOSFODNN7EXAMPLE",
        &[],
    );
    check(
        &get(
            "/",
            "Authorization: token gho_16C7e42F292c6912E7710c838347Ae178B4a",
        ),
        CredentialKind::Authorization,
        "gho_16C7e42F292c6912E7710c838347Ae178B4a",
        &[],
    );
}

#[test]
fn proxy_authorization_keeps_basic_forms() {
    // "proxyuser:pr0xy-pass"
    check(
        b"CONNECT api.example.com:443 HTTP/1.1\r\nProxy-Authorization: Basic cHJveHl1c2VyOnByMHh5LXBhc3M=\r\n\r\n",
        CredentialKind::ProxyAuthorization,
        "pr0xy-pass",
        &["proxyuser:pr0xy-pass", "cHJveHl1c2VyOnByMHh5LXBhc3M="],
    );
}

#[test]
fn api_key_and_cookie() {
    check(
        &get("/", "X-API-Key: k-8f2a9c71e4d05b"),
        CredentialKind::ApiKey,
        "k-8f2a9c71e4d05b",
        &[],
    );
    check(
        &get("/", "Cookie: session=s3ss10n-0123456789; theme=dark"),
        CredentialKind::Cookie,
        "session=s3ss10n-0123456789; theme=dark",
        &["s3ss10n-0123456789"],
    );
}

#[test]
fn short_cookie_values_are_not_kept_alone() {
    let observation =
        verdict(&[&get("/", "Cookie: theme=dark; sid=\"0123456789abcdef\"")]).unwrap();
    let secrets: Vec<&[u8]> = observation.credentials[0]
        .secrets
        .iter()
        .map(Secret::as_bytes)
        .collect();
    assert!(!secrets.contains(&&b"dark"[..]));
    assert!(
        secrets.contains(&&b"0123456789abcdef"[..]),
        "quotes removed"
    );
}

#[test]
fn url_userinfo_query_and_form_keep_raw_and_decoded() {
    check(
        b"GET http://deploy:p%40ss-w0rd@api.example.com/x HTTP/1.1\r\n\r\n",
        CredentialKind::UrlUserinfo,
        "p@ss-w0rd",
        &["p%40ss-w0rd"],
    );
    check(
        &get("/maps?key=AIza%2Bkey-1234&q=x", ""),
        CredentialKind::QueryParameter,
        "AIza+key-1234",
        &["AIza%2Bkey-1234"],
    );
    check(
        &post(
            "application/x-www-form-urlencoded",
            "username=u&password=hunter2+now%21",
        ),
        CredentialKind::FormField,
        "hunter2 now!",
        &["hunter2+now%21"],
    );
}

#[test]
fn json_field() {
    check(
        &post(
            "application/json",
            r#"{"auth":{"client_secret":"cs-9f8e7d6c5b"}}"#,
        ),
        CredentialKind::JsonField,
        "cs-9f8e7d6c5b",
        &[],
    );
}

#[test]
fn path_token_keeps_raw_and_decoded_and_the_path_is_redacted() {
    let token = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ";
    let raw = "123456789%3AAAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ";
    let stream = get(&format!("/bot{raw}/getUpdates"), "");
    check(&stream, CredentialKind::PathToken, token, &[raw]);
    let observation = verdict(&[&stream]).unwrap();
    assert_eq!(observation.credentials[0].location, "path:segment1");
    assert_eq!(observation.http.unwrap().path, "/bot<redacted>/getUpdates");
}

#[test]
fn path_tokens_are_plaintext_credentials_and_ordinary_paths_are_not() {
    let ghp = "ghp_R2d2C3poX9k4L7m8N1q2W3e4R5t6Y7u8I9o0";
    let observation = verdict(&[&get(&format!("/api/v1/hooks/{ghp}/run?x=1"), "")]).unwrap();
    assert_eq!(observation.credentials.len(), 1);
    assert_eq!(observation.credentials[0].location, "path:segment4");
    assert_eq!(
        observation.http.as_ref().unwrap().path,
        "/api/v1/hooks/<redacted>/run"
    );
    assert_secret_absent(&observation, ghp);
    for path in [
        "/v1/items/12345",
        "/api/users/alice",
        "/orders/3f2504e0-4f89-11d3-9a0c-0305e82c3301",
    ] {
        let observation = verdict(&[&get(path, "")]).unwrap();
        assert!(observation.credentials.is_empty(), "{path}");
        assert_eq!(observation.http.unwrap().path, path);
    }
}

#[test]
fn postgres_and_redis_passwords() {
    check(
        &[pg_startup(&[("user", "app")]), pg_password("pg-s3cret-pw")].concat(),
        CredentialKind::PostgresPassword,
        "pg-s3cret-pw",
        &[],
    );
    let md5 = "md5a3556571e93b0d20722ba62be61e8c2d";
    check(
        &[pg_startup(&[("user", "app")]), pg_password(md5)].concat(),
        CredentialKind::PostgresMd5,
        md5,
        &[],
    );
    check(
        &resp(&["AUTH", "default", "r3dis-pass-1"]),
        CredentialKind::RedisAuth,
        "r3dis-pass-1",
        &[],
    );
}

#[test]
fn path_token_kind_serialises_as_snake_case() {
    assert_eq!(
        serde_json::to_value(CredentialKind::PathToken).unwrap(),
        "path_token"
    );
}
