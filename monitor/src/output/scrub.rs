//! Removes every secret the monitor has seen from every line it writes afterwards
//! (DESIGN.md principle 5: a credential detected is scrubbed from everything written later,
//! command lines included).
//!
//! The detectors already show credentials only as kind, location, length and fingerprint, and
//! the command-line redactor replaces the values it recognises. The scrubber is the net under
//! both: a value learned once (from a credential's [`Secret`]s or a redacted command line) is
//! replaced by `<redacted>` wherever it turns up later, in whatever form an output line can
//! hold it:
//! - the exact bytes (text view);
//! - as `serde_json` writes it inside a JSON string (`"` -> `\"`, control characters escaped)
//!   and as the text view escapes control characters (`char::escape_debug`), where different;
//! - base64, standard and URL-safe alphabets, standalone (padded or not: the padding is left,
//!   it carries nothing) and inside a longer base64 blob (a Basic credential, a JWT payload, a data URL): the value encoded after 0, 1 and 2
//!   bytes of anything, keeping only the characters that depend on the value alone; only for
//!   values of at least [`MIN_BASE64_SCRUB_LEN`] bytes (the shortest such fragment is then 7
//!   base64 characters, which ordinary text does not contain by chance);
//! - percent-encoded, upper- and lower-case hex, with the RFC 3986 unreserved set, the
//!   `encodeURIComponent` set and form encoding (`+` for a space), where different.
//!
//! All forms of all secrets go into one Aho-Corasick automaton (leftmost-longest, so a longer
//! form or a longer secret is replaced whole rather than leaving a tail), rebuilt only when the
//! set changed. The automaton's own tables hold the forms and are not wiped when freed (the
//! crate offers no way); the scrubber's copies are.
use std::collections::{HashSet, VecDeque};

use aho_corasick::{AhoCorasick, MatchKind};
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

use crate::detect::secret::{wipe, Secret};

/// Shortest secret scrubbed. Three bytes or fewer hold no real secret and would cut ordinary
/// words out of every line; four covers short PINs and passwords, which are still worth
/// hiding from the output that named them.
pub const MIN_SCRUB_LEN: usize = 4;
/// Shortest all-digit secret scrubbed: shorter numbers are pids, ports, uids, counts and
/// lengths, which fill every line (and replacing a JSON number by `<redacted>` would break the
/// line).
pub const MIN_NUMERIC_SCRUB_LEN: usize = 8;
/// Shortest secret whose base64 forms are searched (see the module docs).
pub const MIN_BASE64_SCRUB_LEN: usize = 6;
/// Longest secret whose encoded forms (base64, percent, escapes other than JSON's) are
/// searched; longer values (whole cookie headers, documents) are searched exactly and
/// JSON-escaped, and their parts are secrets of their own.
pub const MAX_ENCODED_FORMS_LEN: usize = 512;
/// Default number of secrets remembered. A rebuild costs about 60 ns per byte of pattern (5 to
/// 15 forms a secret), so it grows with capacity and secret length; measured optimised on the
/// 2-core development VM with random 40-byte keys (see `rebuild_time_at_capacity`): 128
/// secrets 2.5 ms, 256 secrets 4.4 ms, 512 secrets 8.5 ms, 1,024 secrets 19 ms (100-byte keys:
/// 256 secrets 11 ms). 256 keeps a rebuild, which happens on the first line written after a
/// new secret is learned, within a few milliseconds, and is more than the distinct secrets a
/// host's MCP servers hold (a credential gives 1 to 4). When more are seen, the oldest are
/// forgotten: they are still redacted where the detectors and the command-line rules
/// recognise them; only this net is gone.
pub const DEFAULT_CAPACITY: usize = 256;

/// What a secret becomes in output.
const REPLACEMENT: &[u8] = b"<redacted>";

/// Values never scrubbed: JSON literals (scrubbing them would break every line), and the
/// replacement itself.
const NEVER_SCRUBBED: &[&[u8]] = &[b"true", b"false", b"null", REPLACEMENT];

/// RFC 3986 unreserved characters are left alone; everything else is `%XX`.
const RFC3986: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// JavaScript's `encodeURIComponent` also leaves `!*'()` alone.
const URI_COMPONENT: &AsciiSet = &RFC3986
    .remove(b'!')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// Learns secrets and removes them from output lines. See the module docs.
pub struct Scrubber {
    capacity: usize,
    /// Learned secrets, oldest first.
    secrets: VecDeque<Secret>,
    /// Matches every form of every secret; `None` when there is nothing to match.
    automaton: Option<AhoCorasick>,
    /// `secrets` changed since the automaton was built.
    stale: bool,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrubber")
            .field("secrets", &self.secrets.len())
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Default for Scrubber {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl Scrubber {
    /// A scrubber remembering at most `capacity` distinct secrets; when full, the secret
    /// learned (or seen again) longest ago is forgotten first.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            secrets: VecDeque::new(),
            automaton: None,
            stale: false,
        }
    }

    /// Remembers `secret`. `true` when it was not known; `false` when it was (it then becomes
    /// the most recent), or when it is too short or too common to scrub (see
    /// [`MIN_SCRUB_LEN`], [`MIN_NUMERIC_SCRUB_LEN`]).
    pub fn learn(&mut self, secret: &Secret) -> bool {
        if self.capacity == 0 || !worth_scrubbing(secret.as_bytes()) {
            return false;
        }
        if let Some(known) = self.secrets.iter().position(|s| s == secret) {
            if let Some(again) = self.secrets.remove(known) {
                self.secrets.push_back(again);
            }
            return false;
        }
        while self.secrets.len() >= self.capacity {
            self.secrets.pop_front();
        }
        self.secrets.push_back(secret.clone());
        self.stale = true;
        true
    }

    /// Replaces every occurrence of every form of every learned secret in `line` by
    /// `<redacted>`; returns how many were replaced. A line without any is left untouched.
    pub fn scrub(&mut self, line: &mut Vec<u8>) -> usize {
        if self.stale {
            self.rebuild();
        }
        let Some(automaton) = &self.automaton else {
            return 0;
        };
        let mut out = Vec::new();
        let mut at = 0;
        let mut count = 0;
        for found in automaton.find_iter(line.as_slice()) {
            if count == 0 {
                out.reserve(line.len());
            }
            out.extend_from_slice(&line[at..found.start()]);
            out.extend_from_slice(REPLACEMENT);
            at = found.end();
            count += 1;
        }
        if count > 0 {
            out.extend_from_slice(&line[at..]);
            // The old buffer held the secret: clear it before it is freed.
            wipe(line);
            *line = out;
        }
        count
    }

    /// Like [`Scrubber::scrub`] for one JSON line, without breaking the contract: object keys
    /// and the values of enumerated fields ([`ENUM_KEYS`]: `type`, `event`, `severity`, ...)
    /// are the agent's own words, never a monitored program's, so a secret that happens to be
    /// spelled like one (a password `event` or `postgres`) is not replaced there. Everything a
    /// program controls is in other string values, which are scrubbed as before.
    pub fn scrub_json(&mut self, line: &mut Vec<u8>) -> usize {
        if self.stale {
            self.rebuild();
        }
        let Some(automaton) = &self.automaton else {
            return 0;
        };
        let matches: Vec<(usize, usize)> = automaton
            .find_iter(line.as_slice())
            .map(|m| (m.start(), m.end()))
            .collect();
        if matches.is_empty() {
            return 0;
        }
        let protected = protected_ranges(line);
        let mut out = Vec::with_capacity(line.len());
        let mut at = 0;
        let mut count = 0;
        for (start, end) in matches {
            if protected.iter().any(|&(a, b)| start < b && end > a) {
                continue;
            }
            out.extend_from_slice(&line[at..start]);
            out.extend_from_slice(REPLACEMENT);
            at = end;
            count += 1;
        }
        if count > 0 {
            out.extend_from_slice(&line[at..]);
            wipe(line);
            *line = out;
        }
        count
    }

    /// Like [`Scrubber::scrub`] on binary data whose framing must not move (a recording's
    /// length-prefixed records): every occurrence is overwritten in place with `*` of the same
    /// length. Returns how many were overwritten.
    pub fn scrub_in_place(&mut self, bytes: &mut [u8]) -> usize {
        if self.stale {
            self.rebuild();
        }
        let Some(automaton) = &self.automaton else {
            return 0;
        };
        let found: Vec<(usize, usize)> = automaton
            .find_iter(&*bytes)
            .map(|m| (m.start(), m.end()))
            .collect();
        for &(start, end) in &found {
            bytes[start..end].fill(b'*');
        }
        found.len()
    }

    /// Distinct secrets remembered.
    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    fn rebuild(&mut self) {
        self.stale = false;
        // A set: secrets share forms (the same value learned raw and decoded), and the
        // automaton needs each pattern once. `Secret`s, so the copies are wiped.
        let mut patterns: HashSet<Secret> = HashSet::new();
        for secret in &self.secrets {
            for form in forms(secret.as_bytes()) {
                patterns.insert(Secret::new(&form.0));
            }
        }
        if patterns.is_empty() {
            self.automaton = None;
            return;
        }
        let built = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(patterns.iter().map(Secret::as_bytes));
        match built {
            Ok(automaton) => self.automaton = Some(automaton),
            Err(error) => {
                // Only possible past aho-corasick's state limits, far above any capacity in
                // use. Forget the older half and try again rather than stop scrubbing.
                tracing::warn!(
                    "secret scrubber rebuild failed ({error}); forgetting older secrets"
                );
                let keep = self.secrets.len() / 2;
                while self.secrets.len() > keep {
                    self.secrets.pop_front();
                }
                self.rebuild();
            }
        }
    }
}

fn worth_scrubbing(value: &[u8]) -> bool {
    let numeric = value.iter().all(u8::is_ascii_digit);
    value.len() >= MIN_SCRUB_LEN
        && !(numeric && value.len() < MIN_NUMERIC_SCRUB_LEN)
        && !NEVER_SCRUBBED.contains(&value)
}

/// A form of a secret, wiped when dropped like the secret itself.
struct Form(Vec<u8>);

impl Drop for Form {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// Every form of `value` an output line may hold (module docs), the exact bytes first. Forms
/// equal to the exact bytes are mostly skipped before they are computed (most secrets are
/// printable ASCII without quotes or backslashes, which no escaping changes); the caller
/// drops the remaining duplicates.
///
/// Padded base64 is not a form of its own: the unpadded form matches it but for the `=`,
/// which carries nothing of the secret.
fn forms(value: &[u8]) -> Vec<Form> {
    let mut out = vec![Form(value.to_vec())];
    let plain = value
        .iter()
        .all(|&b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\\' | b'\''));
    if !plain {
        // JSON output carries strings: a value that is not UTF-8 shows up in its lossy form.
        let text = String::from_utf8_lossy(value);
        if let Ok(json) = serde_json::to_string(text.as_ref()) {
            out.push(Form(json.as_bytes()[1..json.len() - 1].to_vec()));
        }
        if value.len() <= MAX_ENCODED_FORMS_LEN {
            out.push(Form(text.as_bytes().to_vec()));
            let debug: String = text.chars().flat_map(char::escape_debug).collect();
            out.push(Form(debug.into_bytes()));
        }
    }
    if value.len() > MAX_ENCODED_FORMS_LEN {
        return out;
    }
    if value.len() >= MIN_BASE64_SCRUB_LEN {
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            out.push(Form(engine.encode(value).into_bytes()));
            for offset in 0..3 {
                out.push(Form(base64_fragment(engine, value, offset)));
            }
        }
    }
    let unreserved = value
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if !unreserved {
        for set in [RFC3986, URI_COMPONENT] {
            let encoded = percent_encoding::percent_encode(value, set).to_string();
            out.push(Form(lower_hex(&encoded).into_bytes()));
            out.push(Form(encoded.into_bytes()));
        }
        let form: String = form_urlencoded::byte_serialize(value).collect();
        out.push(Form(lower_hex(&form).into_bytes()));
        out.push(Form(form.into_bytes()));
    }
    out.retain(|form| !form.0.is_empty());
    out
}

/// The base64 characters that encode `value` alone when it sits `offset` bytes (0 to 2) into a
/// longer encoded run: characters straddling a byte before or after it depend on those bytes
/// and are left out.
fn base64_fragment(engine: &impl base64::Engine, value: &[u8], offset: usize) -> Vec<u8> {
    let mut input = vec![0u8; offset];
    input.extend_from_slice(value);
    let encoded = engine.encode(&input);
    wipe(&mut input);
    let first_bit = 8 * offset;
    let end_bit = 8 * (offset + value.len());
    let start = first_bit.div_ceil(6);
    let end = end_bit / 6;
    encoded.as_bytes()[start..end.max(start)].to_vec()
}

/// `%2f` for `%2F`: some encoders write lower-case hex.
fn lower_hex(encoded: &str) -> String {
    let mut out = String::with_capacity(encoded.len());
    let mut hex_left = 0;
    for c in encoded.chars() {
        if c == '%' {
            hex_left = 2;
            out.push(c);
        } else if hex_left > 0 {
            hex_left -= 1;
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// JSON fields whose values are the contract's own vocabulary (enumerations, ids, names the
/// agent chose), never text a monitored program controls.
pub const ENUM_KEYS: &[&str] = &[
    "schema", "type", "event", "status", "severity", "id", "family", "protocol", "result", "kind",
    "time",
];

/// Byte ranges of a serialized JSON line that scrubbing must leave alone: every object key
/// (quotes included) and every string value of an [`ENUM_KEYS`] field.
fn protected_ranges(line: &[u8]) -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    let mut last_key: &[u8] = b"";
    let mut i = 0;
    while i < line.len() {
        if line[i] != b'"' {
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        while i < line.len() && line[i] != b'"' {
            i += if line[i] == b'\\' { 2 } else { 1 };
        }
        let end = (i + 1).min(line.len());
        i = end;
        let mut next = i;
        while next < line.len() && line[next].is_ascii_whitespace() {
            next += 1;
        }
        let text = &line[start + 1..end.saturating_sub(1).max(start + 1)];
        if line.get(next) == Some(&b':') {
            last_key = text;
            ranges.push((start, end));
        } else if ENUM_KEYS.iter().any(|k| k.as_bytes() == last_key) {
            ranges.push((start, end));
        }
    }
    ranges
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};

    use super::*;

    fn scrubber(secrets: &[&[u8]]) -> Scrubber {
        let mut scrubber = Scrubber::new(16);
        for secret in secrets {
            scrubber.learn(&Secret::new(secret));
        }
        scrubber
    }

    fn scrubbed(scrubber: &mut Scrubber, line: &[u8]) -> (String, usize) {
        let mut line = line.to_vec();
        let count = scrubber.scrub(&mut line);
        (String::from_utf8(line).unwrap(), count)
    }

    #[test]
    fn exact_bytes_are_replaced_every_time() {
        let mut s = scrubber(&[b"hunter2-pw"]);
        assert_eq!(
            scrubbed(&mut s, b"a hunter2-pw b hunter2-pw"),
            ("a <redacted> b <redacted>".into(), 2)
        );
    }

    #[test]
    fn json_keys_and_the_contract_vocabulary_survive_a_secret_spelled_like_them() {
        // Passwords that are also words of the contract: keys and enumerated values stay, the
        // same text in program-controlled values goes.
        let mut s = scrubber(&[b"event", b"postgres", b"schema"]);
        let line = br#"{"schema":"egress-monitor/1","type":"event","event":"connect","process":{"cmdline":["psql","-W","event"]},"evidence":{"protocol":"postgresql","postgres":{"user":"postgres"},"note":"schema x"}}"#;
        let (out, count) = scrubbed_json(&mut s, line);
        assert_eq!(
            out,
            r#"{"schema":"egress-monitor/1","type":"event","event":"connect","process":{"cmdline":["psql","-W","<redacted>"]},"evidence":{"protocol":"postgresql","postgres":{"user":"<redacted>"},"note":"<redacted> x"}}"#
        );
        assert_eq!(count, 3);
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["type"], "event");
        // Escaped quotes inside values do not confuse the key/value walk.
        let line = br#"{"cmdline":["a\"event\":b","event"],"kind":"event"}"#;
        let (out, _) = scrubbed_json(&mut s, line);
        assert_eq!(
            out,
            r#"{"cmdline":["a\"<redacted>\":b","<redacted>"],"kind":"event"}"#
        );
    }

    fn scrubbed_json(s: &mut Scrubber, line: &[u8]) -> (String, usize) {
        let mut line = line.to_vec();
        let n = s.scrub_json(&mut line);
        (String::from_utf8(line).unwrap(), n)
    }

    #[test]
    fn a_line_without_secrets_is_left_byte_identical() {
        let mut s = scrubber(&[b"hunter2-pw", b"another-secret"]);
        let original = br#"{"schema":"egress-monitor/1","type":"event","mcp":true,"pid":1234}"#;
        let mut line = original.to_vec();
        let capacity = line.capacity();
        assert_eq!(s.scrub(&mut line), 0);
        assert_eq!(line, original);
        assert_eq!(line.capacity(), capacity, "not even reallocated");
        assert_eq!(Scrubber::new(4).scrub(&mut line), 0, "nothing learned");
    }

    #[test]
    fn json_escaped_and_debug_escaped_forms() {
        let secret = "pa\"ss\\word\n1";
        let mut s = scrubber(&[secret.as_bytes()]);
        let json = serde_json::to_string(&serde_json::json!({ "cmdline": [secret] })).unwrap();
        let (out, count) = scrubbed(&mut s, json.as_bytes());
        assert_eq!(out, r#"{"cmdline":["<redacted>"]}"#);
        assert_eq!(count, 1);
        let debug: String = format!("x {secret} y")
            .chars()
            .flat_map(char::escape_debug)
            .collect();
        assert_eq!(scrubbed(&mut s, debug.as_bytes()).0, "x <redacted> y");
    }

    #[test]
    fn base64_forms_standalone_and_inside_blobs() {
        let secret = b"s3cret-pw?>";
        let mut s = scrubber(&[secret]);
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            let encoded = engine.encode(secret);
            let line = format!("token {encoded} end");
            // Padding is left: it carries nothing of the secret.
            let padding = &encoded[encoded.trim_end_matches('=').len()..];
            assert_eq!(
                scrubbed(&mut s, line.as_bytes()),
                (format!("token <redacted>{padding} end"), 1)
            );
        }
        // Basic credentials: "user:" before the secret. Users of 6, 4 and 5 bytes put the secret at each of the three alignments.
        for user in ["alice:", "bob:", "dave:"] {
            let mut pair = user.as_bytes().to_vec();
            pair.extend_from_slice(secret);
            pair.extend_from_slice(b"-tail");
            for engine in [&STANDARD, &URL_SAFE_NO_PAD] {
                let encoded = engine.encode(&pair);
                let (out, count) = scrubbed(&mut s, encoded.as_bytes());
                assert_eq!(count, 1, "{user} {encoded}");
                // What is left holds no character determined by the secret alone.
                let fragment = base64_fragment(engine, secret, user.len() % 3);
                assert!(!out
                    .as_bytes()
                    .windows(fragment.len())
                    .any(|w| w == fragment));
            }
        }
    }

    #[test]
    fn short_secrets_have_no_base64_forms() {
        let forms_of = |v: &[u8]| forms(v).len();
        let short = forms_of(b"abcde");
        assert!(forms_of(b"abcdef") > short);
        assert_eq!(base64_fragment(&STANDARD_NO_PAD, b"abcdef", 1).len(), 7);
        assert_eq!(base64_fragment(&STANDARD_NO_PAD, b"abcdef", 2).len(), 7);
        assert_eq!(base64_fragment(&STANDARD_NO_PAD, b"abcdef", 0), b"YWJjZGVm");
    }

    #[test]
    fn percent_encoded_forms() {
        let secret = "p@ss w/rd!*";
        let mut s = scrubber(&[secret.as_bytes()]);
        for line in [
            "?password=p%40ss%20w%2Frd%21%2A&x=1",
            "?password=p%40ss%20w%2frd%21%2a&x=1",
            "?password=p%40ss%20w%2Frd!*&x=1",
            "?password=p%40ss+w%2Frd%21*&x=1",
            "?password=p%40ss+w%2frd%21*&x=1",
        ] {
            assert_eq!(
                scrubbed(&mut s, line.as_bytes()),
                ("?password=<redacted>&x=1".into(), 1),
                "{line}"
            );
        }
    }

    #[test]
    fn overlapping_secrets_are_replaced_whole() {
        let mut s = scrubber(&[b"secret", b"secret-longer", b"ret-lo"]);
        assert_eq!(
            scrubbed(&mut s, b"[secret-longer] [secret] [ret-lo]"),
            ("[<redacted>] [<redacted>] [<redacted>]".into(), 3)
        );
    }

    #[test]
    fn short_numeric_and_literal_secrets_are_not_learned() {
        let mut s = Scrubber::new(8);
        for ignored in [
            &b"abc"[..],
            b"1234",
            b"8080",
            b"1234567",
            b"true",
            b"null",
            b"<redacted>",
        ] {
            assert!(!s.learn(&Secret::new(ignored)), "{ignored:?}");
        }
        assert!(s.is_empty());
        assert!(s.learn(&Secret::new(b"abcd")));
        assert!(s.learn(&Secret::new(b"12345678")));
        assert!(!s.learn(&Secret::new(b"abcd")), "known already");
        assert_eq!(s.len(), 2);
        let (out, _) = scrubbed(&mut s, br#"{"pid":1234,"port":8080,"mcp":true,"x":"abcd"}"#);
        assert_eq!(
            out,
            r#"{"pid":1234,"port":8080,"mcp":true,"x":"<redacted>"}"#
        );
    }

    #[test]
    fn capacity_forgets_the_oldest_first() {
        let mut s = Scrubber::new(2);
        assert!(s.learn(&Secret::new(b"first-secret")));
        assert!(s.learn(&Secret::new(b"second-secret")));
        // Seen again: now the most recent.
        assert!(!s.learn(&Secret::new(b"first-secret")));
        assert!(s.learn(&Secret::new(b"third-secret")));
        assert_eq!(s.len(), 2);
        let (out, count) = scrubbed(&mut s, b"first-secret second-secret third-secret");
        assert_eq!(out, "<redacted> second-secret <redacted>");
        assert_eq!(count, 2);
        assert!(!Scrubber::new(0).learn(&Secret::new(b"anything")));
    }

    #[test]
    fn learning_rebuilds_lazily() {
        let mut s = scrubber(&[b"alpha-secret"]);
        assert_eq!(scrubbed(&mut s, b"alpha-secret").1, 1);
        s.learn(&Secret::new(b"beta-secret"));
        assert_eq!(scrubbed(&mut s, b"alpha-secret beta-secret").1, 2);
        assert!(format!("{s:?}").contains("secrets: 2"));
        assert!(!format!("{s:?}").contains("alpha"));
    }

    /// How long a rebuild takes at [`DEFAULT_CAPACITY`], with random 40-byte keys (the
    /// figures in `DEFAULT_CAPACITY`'s docs come from here: run with `--release --nocapture`).
    /// Measured on the 2-core development VM: 4 to 6 ms optimised (50 ms unoptimised) for 256
    /// secrets, 1,280 patterns, a contiguous NFA of about 0.8 MiB.
    #[test]
    fn rebuild_time_at_capacity() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut s = Scrubber::new(DEFAULT_CAPACITY);
        for _ in 0..DEFAULT_CAPACITY {
            let key: Vec<u8> = (0..40)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    alphabet[(state % alphabet.len() as u64) as usize]
                })
                .collect();
            s.learn(&Secret::new(&key));
        }
        let started = std::time::Instant::now();
        s.rebuild();
        let took = started.elapsed();
        let automaton = s.automaton.as_ref().unwrap();
        println!(
            "rebuild with {} secrets, {} patterns: {took:?}, {:?}, {} KiB",
            s.len(),
            automaton.patterns_len(),
            automaton.kind(),
            automaton.memory_usage() / 1024
        );
        assert!(took < std::time::Duration::from_secs(5), "{took:?}");
        let mut line = b"nothing to see here".to_vec();
        assert_eq!(s.scrub(&mut line), 0);
    }
}
