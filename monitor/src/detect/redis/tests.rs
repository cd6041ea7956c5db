use super::*;
use crate::detect::test_support::{fp, resp};

fn command(buf: &[u8]) -> Command {
    match inspect(buf, &fp()) {
        Parse::Done(command) => command,
        other => panic!("expected a command, got {other:?}"),
    }
}

fn password_of(buf: &[u8]) -> Credential {
    command(buf).credential.expect("a credential")
}

#[test]
fn resp_auth_with_password_only() {
    let credential = password_of(&resp(&["AUTH", "hunter2"]));
    assert_eq!(credential.kind, CredentialKind::RedisAuth);
    assert_eq!(credential.location, "redis:AUTH");
    assert_eq!(credential.length, 7);
    assert_eq!(credential.fingerprint, fp().fingerprint(b"hunter2"));
}

#[test]
fn resp_auth_with_user_and_password_reports_the_password() {
    let credential = password_of(&resp(&["auth", "default", "hunter2"]));
    assert_eq!(credential.fingerprint, fp().fingerprint(b"hunter2"));
}

#[test]
fn resp_hello_with_auth_option() {
    let credential = password_of(&resp(&["HELLO", "3", "AUTH", "default", "hunter2"]));
    assert_eq!(credential.location, "redis:HELLO");
    assert_eq!(credential.fingerprint, fp().fingerprint(b"hunter2"));
    let credential = password_of(&resp(&[
        "hello", "3", "SETNAME", "mcp", "auth", "u", "hunter2",
    ]));
    assert_eq!(credential.fingerprint, fp().fingerprint(b"hunter2"));
}

#[test]
fn hello_without_auth_is_not_a_credential() {
    assert_eq!(command(&resp(&["HELLO", "3"])).credential, None);
    assert_eq!(command(&resp(&["HELLO"])).credential, None);
}

#[test]
fn inline_auth_forms() {
    let credential = password_of(b"AUTH hunter2\r\n");
    assert_eq!(credential.fingerprint, fp().fingerprint(b"hunter2"));
    let credential = password_of(b"auth default hunter2\n");
    assert_eq!(credential.fingerprint, fp().fingerprint(b"hunter2"));
    let credential = password_of(b"HELLO 3 AUTH default \"hun ter\\x32\"\r\n");
    assert_eq!(credential.fingerprint, fp().fingerprint(b"hun ter2"));
    let credential = password_of(b"AUTH 'it\\'s'\r\n");
    assert_eq!(credential.fingerprint, fp().fingerprint(b"it's"));
}

#[test]
fn other_commands_are_consumed_without_credential() {
    let stream = [resp(&["PING"]), resp(&["AUTH", "x"])].concat();
    let first = command(&stream);
    assert_eq!(first.credential, None);
    assert_eq!(first.consumed, resp(&["PING"]).len());
    let inline = command(b"\r\nPING\r\nGET k\r\n");
    assert_eq!(inline.consumed, b"\r\nPING\r\n".len());
}

#[test]
fn partial_commands_need_more() {
    let full = resp(&["AUTH", "hunter2"]);
    for len in 0..full.len() {
        assert!(
            matches!(inspect(&full[..len], &fp()), Parse::NeedMore),
            "{len}"
        );
    }
    assert!(matches!(inspect(b"AUTH hun", &fp()), Parse::NeedMore));
    assert!(matches!(inspect(b"AU", &fp()), Parse::NeedMore));
}

#[test]
fn text_lines_of_other_protocols_are_not_redis() {
    for raw in [
        &b"EHLO mail.example.com\r\n"[..],
        b"USER anonymous\r\n",
        b"SSH-2.0-OpenSSH\r\n",
        b"HELO ",
        b"\x16\x03\x01",
        b"\x00\x00\x00\x08",
        b"*x\r\n",
        b"*1\r\n:5\r\n",
        b"*1\r\n$3\r\nabcd\r\n",
        b"AUTH \"unbalanced\r\n",
    ] {
        assert!(matches!(inspect(raw, &fp()), Parse::NotRedis), "{raw:?}");
    }
}

#[test]
fn empty_passwords_and_malformed_auth_are_not_credentials() {
    assert_eq!(command(&resp(&["AUTH", ""])).credential, None);
    assert_eq!(command(&resp(&["AUTH"])).credential, None);
    assert_eq!(command(&resp(&["AUTH", "a", "b", "c"])).credential, None);
}

#[test]
fn huge_declared_lengths_do_not_overflow() {
    assert!(matches!(
        inspect(b"*1\r\n$9999999999\r\nab", &fp()),
        Parse::NeedMore
    ));
    assert!(matches!(
        inspect(b"*99999999999\r\n", &fp()),
        Parse::NotRedis
    ));
}
