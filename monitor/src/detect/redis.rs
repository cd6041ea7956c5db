//! Redis, client side: commands in RESP (`*2\r\n$4\r\nAUTH\r\n...`) or inline (`AUTH pass\r\n`)
//! form, looking for the password in `AUTH [user] pass` and `HELLO proto AUTH user pass`.
//!
//! [`inspect`] reads one command at the start of a buffer; the caller moves on with
//! [`Command::consumed`], so `PING` first and `AUTH` later is still found.
//!
//! Inline commands are plain text lines, like many other protocols' (SMTP, FTP, POP3), so an
//! inline line counts as Redis only when its first word is a Redis command name.
//! Protocol: <https://redis.io/docs/latest/develop/reference/protocol-spec/>.
use std::borrow::Cow;

use super::redact::Fingerprinter;
use super::{Credential, CredentialKind};

/// Arguments kept per command: enough for `HELLO 3 AUTH user pass SETNAME name`.
const KEPT_ARGS: usize = 8;
/// Upper bound on a command's argument count; real commands have far fewer, and the buffer
/// bounds what can arrive anyway.
const MAX_ARGS: usize = 1024 * 1024;
/// Longest command name accepted while sniffing.
const MAX_COMMAND_NAME: usize = 24;

#[derive(Debug)]
pub enum Parse {
    /// Not a Redis command.
    NotRedis,
    /// Could be a command; more bytes needed.
    NeedMore,
    Done(Command),
}

/// One command, inspected. Holds only redacted facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// Bytes of the buffer this command used: the next command starts there.
    pub consumed: usize,
    /// The password of an `AUTH` or `HELLO ... AUTH`.
    pub credential: Option<Credential>,
}

/// Inspects the command at the start of `buf` (empty lines before it are skipped, as Redis
/// does).
pub fn inspect(buf: &[u8], fp: &Fingerprinter) -> Parse {
    let skipped = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let rest = &buf[skipped..];
    let parsed = match rest.first() {
        None => return Parse::NeedMore,
        Some(b'*') => resp_command(rest),
        Some(_) => inline_command(rest),
    };
    match parsed {
        Parsed::Not => Parse::NotRedis,
        Parsed::NeedMore => Parse::NeedMore,
        Parsed::Command { len, args } => Parse::Done(Command {
            consumed: skipped.saturating_add(len),
            credential: auth_credential(&args, fp),
        }),
    }
}

enum Parsed<'a> {
    Not,
    NeedMore,
    /// `len` bytes; the first [`KEPT_ARGS`] arguments.
    Command {
        len: usize,
        args: Vec<Cow<'a, [u8]>>,
    },
}

/// `*<n>\r\n` then `n` bulk strings `$<len>\r\n<bytes>\r\n`.
fn resp_command(buf: &[u8]) -> Parsed<'_> {
    let (count, mut pos) = match number_line(buf, 1) {
        Number::Value(count, end) => (count, end),
        Number::NeedMore => return Parsed::NeedMore,
        Number::Not => return Parsed::Not,
    };
    if count == 0 || count > MAX_ARGS {
        return Parsed::Not;
    }
    let mut args = Vec::new();
    for _ in 0..count {
        match buf.get(pos) {
            None => return Parsed::NeedMore,
            Some(b'$') => {}
            Some(_) => return Parsed::Not,
        }
        let (len, data_at) = match number_line(buf, pos + 1) {
            Number::Value(len, end) => (len, end),
            Number::NeedMore => return Parsed::NeedMore,
            Number::Not => return Parsed::Not,
        };
        let Some(data_end) = data_at.checked_add(len) else {
            return Parsed::Not;
        };
        let Some(after) = data_end.checked_add(2) else {
            return Parsed::Not;
        };
        match buf.get(data_end..after) {
            None => return Parsed::NeedMore,
            Some(b"\r\n") => {}
            Some(_) => return Parsed::Not,
        }
        if args.len() < KEPT_ARGS {
            args.push(Cow::Borrowed(&buf[data_at..data_end]));
        }
        pos = after;
    }
    Parsed::Command { len: pos, args }
}

enum Number {
    /// The value and the position after its `\r\n`.
    Value(usize, usize),
    NeedMore,
    Not,
}

/// A decimal number at `at` terminated by `\r\n` (RESP lengths).
fn number_line(buf: &[u8], at: usize) -> Number {
    const MAX_DIGITS: usize = 10;
    let mut value = 0usize;
    for (i, &b) in buf.iter().enumerate().skip(at) {
        let digits = i - at;
        match b {
            b'0'..=b'9' if digits < MAX_DIGITS => {
                value = match value
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(usize::from(b - b'0')))
                {
                    Some(v) => v,
                    None => return Number::Not,
                };
            }
            b'\r' if digits > 0 => {
                return match buf.get(i + 1) {
                    Some(b'\n') => Number::Value(value, i + 2),
                    Some(_) => Number::Not,
                    None => Number::NeedMore,
                };
            }
            _ => return Number::Not,
        }
    }
    Number::NeedMore
}

/// A text line split into arguments the way Redis does (`sdssplitargs`): spaces separate,
/// `"..."` understands `\n \r \t \b \a \\ \" \xHH`, `'...'` understands `\'`.
fn inline_command(buf: &[u8]) -> Parsed<'static> {
    let newline = buf.iter().position(|&b| b == b'\n');
    let line = match newline {
        Some(n) => &buf[..n],
        None => buf,
    };
    // Decide early on the command name so binary or foreign text is rejected without waiting
    // for a newline that may never come.
    let name_end = line
        .iter()
        .position(|&b| b == b' ' || b == b'\t' || b == b'\r');
    let name = &line[..name_end.unwrap_or(line.len())];
    if name.len() > MAX_COMMAND_NAME || !name.iter().all(u8::is_ascii_alphanumeric) {
        return Parsed::Not;
    }
    let name_complete = name_end.is_some() || newline.is_some();
    if name_complete && !is_command_name(name) {
        return Parsed::Not;
    }
    let Some(newline) = newline else {
        return Parsed::NeedMore;
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match split_args(line) {
        Some(args) => Parsed::Command {
            len: newline + 1,
            args,
        },
        None => Parsed::Not,
    }
}

fn split_args(line: &[u8]) -> Option<Vec<Cow<'static, [u8]>>> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while line.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        if i >= line.len() {
            return Some(args);
        }
        let mut arg = Vec::new();
        match line[i] {
            b'"' => {
                i += 1;
                loop {
                    match *line.get(i)? {
                        b'\\' => {
                            let escaped = *line.get(i + 1)?;
                            let hex = line.get(i + 2..i + 4).and_then(hex_byte);
                            match (escaped, hex) {
                                (b'x', Some(byte)) => {
                                    arg.push(byte);
                                    i += 4;
                                    continue;
                                }
                                (b'n', _) => arg.push(b'\n'),
                                (b'r', _) => arg.push(b'\r'),
                                (b't', _) => arg.push(b'\t'),
                                (b'b', _) => arg.push(0x08),
                                (b'a', _) => arg.push(0x07),
                                (other, _) => arg.push(other),
                            }
                            i += 2;
                        }
                        b'"' => {
                            i += 1;
                            // A closing quote must be followed by a space or the end.
                            if line.get(i).is_some_and(|b| !b.is_ascii_whitespace()) {
                                return None;
                            }
                            break;
                        }
                        other => {
                            arg.push(other);
                            i += 1;
                        }
                    }
                }
            }
            b'\'' => {
                i += 1;
                loop {
                    match *line.get(i)? {
                        b'\\' if line.get(i + 1) == Some(&b'\'') => {
                            arg.push(b'\'');
                            i += 2;
                        }
                        b'\'' => {
                            i += 1;
                            if line.get(i).is_some_and(|b| !b.is_ascii_whitespace()) {
                                return None;
                            }
                            break;
                        }
                        other => {
                            arg.push(other);
                            i += 1;
                        }
                    }
                }
            }
            _ => {
                while let Some(&b) = line.get(i) {
                    if b.is_ascii_whitespace() {
                        break;
                    }
                    arg.push(b);
                    i += 1;
                }
            }
        }
        if args.len() < KEPT_ARGS {
            args.push(Cow::Owned(arg));
        }
    }
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    let digit = |b: u8| char::from(b).to_digit(16);
    match pair {
        [hi, lo] => Some(u8::try_from(digit(*hi)? * 16 + digit(*lo)?).ok()?),
        _ => None,
    }
}

/// The password in `AUTH pass`, `AUTH user pass` or `HELLO proto [AUTH user pass] ...`.
fn auth_credential(args: &[Cow<'_, [u8]>], fp: &Fingerprinter) -> Option<Credential> {
    let name = args.first()?;
    let (password, location) = if name.eq_ignore_ascii_case(b"AUTH") {
        match args.len() {
            2 | 3 => (args.last()?, "redis:AUTH"),
            _ => return None,
        }
    } else if name.eq_ignore_ascii_case(b"HELLO") {
        // HELLO protover [AUTH username password] [SETNAME clientname]
        let mut i = 2;
        loop {
            let option = args.get(i)?;
            if option.eq_ignore_ascii_case(b"AUTH") {
                break (args.get(i + 2)?, "redis:HELLO");
            }
            i += 2;
        }
    } else {
        return None;
    };
    (!password.is_empty())
        .then(|| Credential::redacted(CredentialKind::RedisAuth, location, password, fp))
}

/// Command names accepted as the first word of an inline command: the connection, key-space
/// and data-type commands people type or script, not every command Redis has.
fn is_command_name(name: &[u8]) -> bool {
    const NAMES: &[&str] = &[
        "ACL",
        "APPEND",
        "AUTH",
        "BGSAVE",
        "BLPOP",
        "BRPOP",
        "CLIENT",
        "CLUSTER",
        "COMMAND",
        "CONFIG",
        "DBSIZE",
        "DECR",
        "DECRBY",
        "DEL",
        "DISCARD",
        "DUMP",
        "ECHO",
        "EVAL",
        "EVALSHA",
        "EXEC",
        "EXISTS",
        "EXPIRE",
        "EXPIREAT",
        "FCALL",
        "FLUSHALL",
        "FLUSHDB",
        "FUNCTION",
        "GET",
        "GETDEL",
        "GETEX",
        "GETSET",
        "HDEL",
        "HELLO",
        "HEXISTS",
        "HGET",
        "HGETALL",
        "HINCRBY",
        "HKEYS",
        "HLEN",
        "HMGET",
        "HMSET",
        "HSET",
        "HVALS",
        "INCR",
        "INCRBY",
        "INFO",
        "KEYS",
        "LASTSAVE",
        "LINDEX",
        "LLEN",
        "LPOP",
        "LPUSH",
        "LRANGE",
        "LREM",
        "MEMORY",
        "MGET",
        "MONITOR",
        "MSET",
        "MULTI",
        "OBJECT",
        "PERSIST",
        "PEXPIRE",
        "PING",
        "PSETEX",
        "PSUBSCRIBE",
        "PTTL",
        "PUBLISH",
        "PUBSUB",
        "QUIT",
        "READONLY",
        "RENAME",
        "REPLICAOF",
        "RESET",
        "ROLE",
        "RPOP",
        "RPUSH",
        "SADD",
        "SAVE",
        "SCAN",
        "SCARD",
        "SCRIPT",
        "SELECT",
        "SENTINEL",
        "SET",
        "SETEX",
        "SETNX",
        "SISMEMBER",
        "SLOWLOG",
        "SMEMBERS",
        "SREM",
        "STRLEN",
        "SUBSCRIBE",
        "TIME",
        "TTL",
        "TYPE",
        "UNLINK",
        "UNSUBSCRIBE",
        "UNWATCH",
        "WAIT",
        "WATCH",
        "XACK",
        "XADD",
        "XLEN",
        "XRANGE",
        "XREAD",
        "XREADGROUP",
        "ZADD",
        "ZCARD",
        "ZINCRBY",
        "ZRANGE",
        "ZRANGEBYSCORE",
        "ZREM",
        "ZREVRANGE",
        "ZSCORE",
    ];
    NAMES
        .iter()
        .any(|known| known.as_bytes().eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests;
