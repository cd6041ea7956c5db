use super::*;
use crate::detect::test_support::{
    fp, pg_message, pg_password, pg_sasl_initial_response, pg_ssl_request, pg_startup,
};

fn startup() -> Vec<u8> {
    pg_startup(&[
        ("user", "app"),
        ("database", "orders"),
        ("application_name", "mcp"),
    ])
}

fn session(buf: &[u8], end: bool) -> Session {
    match inspect(buf, end, &fp()) {
        Parse::Done(session) => session,
        other => panic!("expected a verdict, got {other:?}"),
    }
}

fn app_orders(ssl_requested: bool) -> Option<PostgresStartup> {
    Some(PostgresStartup {
        user: Some("app".into()),
        database: Some("orders".into()),
        ssl_requested,
    })
}

#[test]
fn cleartext_password_after_startup_is_a_credential() {
    let mut stream = startup();
    stream.extend(pg_password("hunter2"));
    let session = session(&stream, false);
    assert_eq!(session.startup, app_orders(false));
    let credential = session.credential.unwrap();
    assert_eq!(credential.kind, CredentialKind::PostgresPassword);
    assert_eq!(credential.location, "postgres:password_message");
    assert_eq!(credential.length, 7);
    assert_eq!(credential.fingerprint, fp().fingerprint(b"hunter2"));
}

#[test]
fn md5_password_is_its_own_kind() {
    let mut stream = startup();
    stream.extend(pg_password("md5a3556571e93b0d20722ba62be61e8c2d"));
    let credential = session(&stream, false).credential.unwrap();
    assert_eq!(credential.kind, CredentialKind::PostgresMd5);
    assert_eq!(credential.length, 35);
}

#[test]
fn md5_lookalike_with_wrong_length_is_a_cleartext_password() {
    let mut stream = startup();
    stream.extend(pg_password("md5-but-not-a-hash"));
    let credential = session(&stream, false).credential.unwrap();
    assert_eq!(credential.kind, CredentialKind::PostgresPassword);
}

#[test]
fn scram_initial_response_is_not_a_credential() {
    let mut stream = startup();
    stream.extend(pg_sasl_initial_response());
    let session = session(&stream, false);
    assert_eq!(session.credential, None);
    assert_eq!(session.startup, app_orders(false));
}

#[test]
fn startup_alone_waits_then_finishes_without_credential() {
    let stream = startup();
    assert!(matches!(inspect(&stream, false, &fp()), Parse::NeedMore));
    let session = session(&stream, true);
    assert_eq!(session.startup, app_orders(false));
    assert_eq!(session.credential, None);
}

#[test]
fn query_after_startup_means_no_password_was_asked() {
    let mut stream = startup();
    stream.extend(pg_message(b'Q', b"select 1\0"));
    assert_eq!(session(&stream, false).credential, None);
}

#[test]
fn ssl_request_then_client_hello_starts_tls() {
    let mut stream = pg_ssl_request();
    stream.extend(crate::detect::test_support::client_hello(Some(
        "db.internal",
    )));
    assert!(matches!(
        inspect(&stream, false, &fp()),
        Parse::StartTls { hello_at: 8 }
    ));
}

#[test]
fn ssl_request_refused_then_startup_in_clear_is_flagged() {
    let mut stream = pg_ssl_request();
    stream.extend(startup());
    stream.extend(pg_password("hunter2"));
    let session = session(&stream, false);
    assert_eq!(session.startup, app_orders(true));
    assert!(session.credential.is_some());
}

#[test]
fn ssl_request_alone_waits_for_the_next_step() {
    let stream = pg_ssl_request();
    assert!(matches!(inspect(&stream, false, &fp()), Parse::NeedMore));
    let session = session(&stream, true);
    assert_eq!(
        session.startup,
        Some(PostgresStartup {
            user: None,
            database: None,
            ssl_requested: true
        })
    );
}

#[test]
fn cancel_request_is_postgres_without_startup() {
    let mut stream = 16u32.to_be_bytes().to_vec();
    stream.extend(80_877_102u32.to_be_bytes());
    stream.extend([0, 0, 0, 1, 0, 0, 0, 2]);
    assert_eq!(
        session(&stream, false),
        Session {
            startup: None,
            credential: None
        }
    );
}

#[test]
fn password_cut_by_capture_limit_is_not_reported() {
    let mut stream = startup();
    stream.extend(pg_password("hunter2"));
    let cut = &stream[..stream.len() - 3];
    assert!(matches!(inspect(cut, false, &fp()), Parse::NeedMore));
    let session = session(cut, true);
    assert_eq!(session.credential, None);
    assert_eq!(session.startup, app_orders(false));
}

#[test]
fn startup_cut_keeps_complete_parameters() {
    let stream = startup();
    let cut_inside_database = stream.len() - "orders\0application_name\0mcp\0\0".len() + 3;
    let session = session(&stream[..cut_inside_database], true);
    assert_eq!(
        session.startup,
        Some(PostgresStartup {
            user: Some("app".into()),
            database: None,
            ssl_requested: false
        })
    );
}

#[test]
fn other_bytes_are_not_postgres() {
    for raw in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"\x16\x03\x01\x00\x05",
        b"\x00\x01\x00\x00",
        b"\x00\x00\x00\x04\x00\x03\x00\x00",
        b"\x00\x00\x30\x00\x00\x03\x00\x00",
        b"\x00\x00\x00\x08\x12\x34\x56\x78",
    ] {
        assert!(
            matches!(inspect(raw, false, &fp()), Parse::NotPostgres),
            "{raw:?}"
        );
    }
}

#[test]
fn short_prefixes_of_a_preamble_wait() {
    let stream = startup();
    for len in 1..8 {
        assert!(
            matches!(inspect(&stream[..len], false, &fp()), Parse::NeedMore),
            "{len}"
        );
        assert!(matches!(
            inspect(&stream[..len], true, &fp()),
            Parse::NotPostgres
        ));
    }
}
