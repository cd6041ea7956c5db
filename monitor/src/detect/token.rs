//! Credentials recognised by their shape alone, wherever they appear without a name that marks
//! them: request path segments (`/bot<token>/getUpdates`, `/hooks/xoxb-...`), URLs and words on
//! command lines, inline code. One set of rules, used by the HTTP parser (path segments become
//! [`CredentialKind::PathToken`](super::CredentialKind::PathToken) and are cut from the path kept
//! for evidence) and by the command-line redactor, so a token hidden in one place is hidden in
//! the other.
//!
//! What counts, in order:
//! 1. Known formats, by prefix, body length and alphabet ([`SHAPES`]): GitHub (`ghp_`, `gho_`,
//!    `ghu_`, `ghs_`, `ghr_`, `github_pat_`), GitLab (`glpat-`, ...), Slack (`xoxb-`, `xoxp-`,
//!    ...), OpenAI and Anthropic (`sk-`, with mixed case and digits so that slugs such as
//!    `sk-learn-tutorial-part-two` stay readable), Stripe (`sk_live_`, `rk_test_`, `whsec_`), AWS
//!    access key ids (`AKIA`/`ASIA` + 16), Google API keys (`AIza` + 35) and OAuth tokens
//!    (`ya29.`), npm, PyPI, Hugging Face, SendGrid, DigitalOcean, Shopify, Grafana, Groq.
//! 2. Telegram bot tokens, `<6-12 digits>:<30-64 of [A-Za-z0-9_-]>`; in a path segment the
//!    `bot` prefix of the Bot API (`/bot<token>/`) is kept and only the token is cut.
//! 3. JSON Web Tokens: `eyJ...` header, `eyJ...` payload, signature (also unsigned and JWE).
//! 4. Long random strings: at least [`MIN_RANDOM_LEN`] characters of `[A-Za-z0-9_-]` (plus
//!    base64 padding) with upper case, lower case and digits, few separators (slugs such as
//!    `How-To-Configure-Nginx-2024` have many) and mostly not made of words (CamelCase names
//!    such as `AbstractSingletonProxyFactoryBean2` are words): see [`is_random`]. A random
//!    base62 string of 32 characters passes about 99% of the time, 64 characters more often.
//!
//! Deliberately not secrets (conservative, so evidence stays readable): numbers
//! (`/v1/items/12345`), names (`/api/users/alice`), UUIDs (the usual REST resource id; a UUID
//! used as a key is missed unless it is sent under a secret name), hex strings of any length
//! (commit ids, content digests: no upper case), lower-case slugs, file names with dots.
//! Random resource ids of 32+ characters (a Google Drive file id) do get redacted: their shape
//! is that of a key, and a path that names a shared document by a random id is itself a
//! capability.
use std::borrow::Cow;
use std::ops::Range;

/// Shortest string the generic rule (4 above) treats as a random key. Shorter random-looking
/// words are far too common (ids, short hashes, base64 of small numbers) to hide.
pub const MIN_RANDOM_LEN: usize = 32;
/// Longest string the generic rule looks at (nothing in a path segment or argument is longer
/// and still a key; it bounds the work on hostile input).
const MAX_RANDOM_LEN: usize = 1024;

/// The characters a token body may use.
#[derive(Clone, Copy, Debug)]
enum Alphabet {
    /// `[A-Za-z0-9]`
    Alnum,
    /// `[A-Za-z0-9_]`
    Word,
    /// `[A-Za-z0-9_-]` (base64url without padding)
    Base64Url,
    /// `[A-Za-z0-9_.-]`
    Base64UrlDot,
    /// `[A-Z0-9]`
    UpperAlnum,
    /// `[0-9a-f]`
    LowerHex,
}

impl Alphabet {
    fn contains(self, b: u8) -> bool {
        match self {
            Self::Alnum => b.is_ascii_alphanumeric(),
            Self::Word => b.is_ascii_alphanumeric() || b == b'_',
            Self::Base64Url => b.is_ascii_alphanumeric() || b == b'_' || b == b'-',
            Self::Base64UrlDot => b.is_ascii_alphanumeric() || b"_-.".contains(&b),
            Self::UpperAlnum => b.is_ascii_uppercase() || b.is_ascii_digit(),
            Self::LowerHex => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        }
    }
}

/// A vendor token format: `prefix` then `min..=max` characters of `alphabet`.
struct Shape {
    prefix: &'static str,
    min: usize,
    max: usize,
    alphabet: Alphabet,
    /// The body must mix upper case, lower case and digits (for prefixes short and common
    /// enough to start ordinary words: `sk-`).
    mixed: bool,
}

const fn shape(prefix: &'static str, min: usize, max: usize, alphabet: Alphabet) -> Shape {
    Shape {
        prefix,
        min,
        max,
        alphabet,
        mixed: false,
    }
}

/// Known token formats. Lengths are a little looser than the vendors' (formats grow), never
/// so loose that a word with the prefix matches.
const SHAPES: &[Shape] = &[
    // GitHub: personal access, OAuth, user-to-server, server-to-server, refresh (36 chars).
    shape("ghp_", 30, 255, Alphabet::Alnum),
    shape("gho_", 30, 255, Alphabet::Alnum),
    shape("ghu_", 30, 255, Alphabet::Alnum),
    shape("ghs_", 30, 255, Alphabet::Alnum),
    shape("ghr_", 30, 255, Alphabet::Alnum),
    shape("github_pat_", 22, 255, Alphabet::Word),
    // GitLab: personal, deploy, runner, pipeline trigger tokens.
    shape("glpat-", 20, 255, Alphabet::Base64Url),
    shape("gldt-", 20, 255, Alphabet::Base64Url),
    shape("glrt-", 20, 255, Alphabet::Base64Url),
    shape("glptt-", 20, 255, Alphabet::Base64Url),
    // Slack: bot, user, app-level, refresh, config tokens.
    shape("xoxb-", 10, 255, Alphabet::Base64Url),
    shape("xoxp-", 10, 255, Alphabet::Base64Url),
    shape("xoxa-", 10, 255, Alphabet::Base64Url),
    shape("xoxr-", 10, 255, Alphabet::Base64Url),
    shape("xoxs-", 10, 255, Alphabet::Base64Url),
    shape("xoxe-", 10, 255, Alphabet::Base64Url),
    shape("xapp-", 10, 255, Alphabet::Base64Url),
    // OpenAI (`sk-...`, `sk-proj-...`) and Anthropic (`sk-ant-api03-...`).
    Shape {
        prefix: "sk-",
        min: 20,
        max: 255,
        alphabet: Alphabet::Base64Url,
        mixed: true,
    },
    // Stripe secret and restricted keys, webhook signing secrets.
    shape("sk_live_", 16, 255, Alphabet::Alnum),
    shape("sk_test_", 16, 255, Alphabet::Alnum),
    shape("rk_live_", 16, 255, Alphabet::Alnum),
    shape("rk_test_", 16, 255, Alphabet::Alnum),
    shape("whsec_", 24, 255, Alphabet::Base64Url),
    // AWS access key ids (long-term, temporary).
    shape("AKIA", 16, 16, Alphabet::UpperAlnum),
    shape("ASIA", 16, 16, Alphabet::UpperAlnum),
    // Google API keys and OAuth access tokens.
    shape("AIza", 35, 35, Alphabet::Base64Url),
    shape("ya29.", 20, 4096, Alphabet::Base64UrlDot),
    // Package registries and model hubs.
    shape("npm_", 36, 36, Alphabet::Alnum),
    shape("pypi-", 50, 4096, Alphabet::Base64Url),
    shape("hf_", 30, 255, Alphabet::Alnum),
    // SendGrid (`SG.<22>.<43>`), DigitalOcean, Shopify, Grafana, Groq.
    shape("SG.", 60, 80, Alphabet::Base64UrlDot),
    shape("dop_v1_", 64, 64, Alphabet::LowerHex),
    shape("shpat_", 32, 32, Alphabet::LowerHex),
    shape("shpss_", 32, 32, Alphabet::LowerHex),
    shape("glsa_", 32, 255, Alphabet::Word),
    shape("gsk_", 40, 255, Alphabet::Alnum),
];

/// Whether `word`, as a whole, is a credential by its shape (rules 1 to 4 of the module docs).
pub fn is_token(word: &str) -> bool {
    known_shape(word) || is_telegram_bot_token(word) || is_jwt(word) || is_random(word)
}

fn known_shape(word: &str) -> bool {
    SHAPES.iter().any(|shape| {
        word.strip_prefix(shape.prefix).is_some_and(|body| {
            (shape.min..=shape.max).contains(&body.len())
                && body.bytes().all(|b| shape.alphabet.contains(b))
                && (!shape.mixed || mixes_case_and_digits(body))
        })
    })
}

fn mixes_case_and_digits(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_uppercase())
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && s.bytes().any(|b| b.is_ascii_digit())
}

/// `123456789:AAH...` (bot id, colon, 35-character secret; lengths loosened a little).
fn is_telegram_bot_token(word: &str) -> bool {
    let Some((id, secret)) = word.split_once(':') else {
        return false;
    };
    (6..=12).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_digit())
        && (30..=64).contains(&secret.len())
        && secret.bytes().all(|b| Alphabet::Base64Url.contains(b))
}

/// `eyJ<header>.eyJ<payload>.<signature>` (3 parts: JWS, the signature may be empty for an
/// unsecured JWT; 5 parts: JWE, whose second part is an encrypted key, not JSON).
fn is_jwt(word: &str) -> bool {
    let parts: Vec<&str> = word.split('.').collect();
    let base64url = |part: &str| part.bytes().all(|b| Alphabet::Base64Url.contains(b));
    match parts.as_slice() {
        [header, payload, signature] => {
            header.starts_with("eyJ")
                && header.len() >= 10
                && payload.starts_with("eyJ")
                && payload.len() >= 10
                && parts.iter().all(|p| base64url(p))
                && (signature.is_empty() || signature.len() >= 10)
        }
        [header, rest @ ..] if rest.len() == 4 => {
            header.starts_with("eyJ") && header.len() >= 10 && parts.iter().all(|p| base64url(p))
        }
        _ => false,
    }
}

/// Rule 4: a long string of base64url characters that looks random rather than made of words.
///
/// Measured on seeded random strings (base62 and base64url, 32 to 64 characters, 20,000 each):
/// 1 to 4% are missed (those that happen to lack a digit or to hold several word-like runs);
/// on word-made identifiers, slugs, dated file names and CamelCase names, none is taken.
pub fn is_random(word: &str) -> bool {
    let body = word.trim_end_matches('=');
    if word.len() - body.len() > 2
        || !(MIN_RANDOM_LEN..=MAX_RANDOM_LEN).contains(&body.len())
        || !body.bytes().all(|b| Alphabet::Base64Url.contains(b))
        || !mixes_case_and_digits(body)
    {
        return false;
    }
    // Slugs separate words often (about every 6 characters); random base64url has a `-` or
    // `_` about every 32.
    let separators = body.bytes().filter(|b| matches!(b, b'-' | b'_')).count();
    if separators * 10 > body.len() {
        return false;
    }
    // Characters that belong to word-like runs: a capitalised or lower-case run of 3+ letters
    // (`Config`, `ure`), an upper-case run of 4+ (`HTTP` is 4), or 4+ digits (`2024`). Words
    // fill most of an identifier; in random text such runs are short and rare.
    let core = body.len() - separators;
    word_like_chars(body) * 3 < core * 2
}

fn word_like_chars(s: &str) -> usize {
    let bytes = s.as_bytes();
    let mut total = 0;
    let mut i = 0;
    while i < bytes.len() {
        let run = |from: usize, pred: fn(&u8) -> bool| {
            bytes[from..].iter().take_while(|b| pred(b)).count()
        };
        let b = bytes[i];
        let len = if b.is_ascii_uppercase() {
            let upper = run(i, u8::is_ascii_uppercase);
            let lower_after = run(i + 1, u8::is_ascii_lowercase);
            if lower_after >= 3 {
                1 + lower_after
            } else if upper >= 4 {
                upper
            } else {
                0
            }
        } else if b.is_ascii_lowercase() {
            let lower = run(i, u8::is_ascii_lowercase);
            if lower >= 3 {
                lower
            } else {
                0
            }
        } else if b.is_ascii_digit() {
            let digits = run(i, u8::is_ascii_digit);
            if digits >= 4 {
                digits
            } else {
                0
            }
        } else {
            0
        };
        if len > 0 {
            total += len;
            i += len;
        } else {
            i += 1;
        }
    }
    total
}

/// The part of one path segment (raw, as in the request line) that is a credential: the whole
/// segment, or for Telegram's `bot<token>` the token after `bot`. Percent-encoded segments are
/// judged decoded (`bot123%3AAAH...`).
pub fn secret_in_segment(segment: &str) -> Option<Range<usize>> {
    if let Some(range) = secret_in_word(segment) {
        return Some(range);
    }
    if !segment.contains('%') {
        return None;
    }
    let decoded = percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()?;
    let range = secret_in_word(&decoded)?;
    // Offsets in the decoded text do not map onto the raw one; keep only the `bot` prefix.
    let start = if range.start > 0 && segment.starts_with("bot") {
        3
    } else {
        0
    };
    Some(start..segment.len())
}

fn secret_in_word(word: &str) -> Option<Range<usize>> {
    if is_token(word) {
        return Some(0..word.len());
    }
    let token = word.strip_prefix("bot")?;
    is_telegram_bot_token(token).then_some(3..word.len())
}

/// A credential-shaped path segment, as found by [`redact_path`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathToken {
    /// 1-based index of the segment (`/a/b`: `a` is 1), as used in the location
    /// `path:segment<N>`.
    pub segment: usize,
    /// Where the secret is in the original path (raw, still percent-encoded).
    pub range: Range<usize>,
}

/// What replaces a secret in anything shown.
pub const REDACTED: &str = "<redacted>";

/// `path` with every credential-shaped segment (or the token part of it) replaced by
/// [`REDACTED`], and where those were. Paths that do not start with `/` (CONNECT authorities,
/// `*`) are not paths and come back unchanged.
pub fn redact_path(path: &str) -> (Cow<'_, str>, Vec<PathToken>) {
    let mut found = Vec::new();
    if !path.starts_with('/') {
        return (Cow::Borrowed(path), found);
    }
    let mut offset = 0;
    for (index, segment) in path.split('/').enumerate() {
        if let Some(range) = secret_in_segment(segment) {
            found.push(PathToken {
                segment: index,
                range: offset + range.start..offset + range.end,
            });
        }
        offset += segment.len() + 1;
    }
    if found.is_empty() {
        return (Cow::Borrowed(path), found);
    }
    let mut out = String::with_capacity(path.len());
    let mut at = 0;
    for token in &found {
        out.push_str(&path[at..token.range.start]);
        out.push_str(REDACTED);
        at = token.range.end;
    }
    out.push_str(&path[at..]);
    (Cow::Owned(out), found)
}

/// Credential-shaped words in free text (inline code, an argument), as byte ranges, in order
/// and not overlapping. A word is a run of `[A-Za-z0-9_.:-]` (so JWTs, `ya29.` tokens and
/// Telegram's `id:secret` stay whole) without trailing `.`, `:` or `-`; when a whole word is
/// not a token, its `.`/`:`-separated pieces are tried (`key:ghp_...`, `v1.sk-...`).
pub fn find_in_text(text: &str) -> Vec<Range<usize>> {
    let is_word_byte = |b: u8| b.is_ascii_alphanumeric() || b"_.:-".contains(&b);
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !is_word_byte(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_word_byte(bytes[i]) {
            i += 1;
        }
        let word = text[start..i].trim_end_matches(['.', ':', '-']);
        find_in_word(word, start, &['.', ':'], &mut found);
    }
    found
}

/// The whole word if it is a token, else its pieces split at the first of `separators`, each
/// tried whole and then split at the next separator.
fn find_in_word(word: &str, at: usize, separators: &[char], found: &mut Vec<Range<usize>>) {
    if let Some(range) = secret_in_word(word) {
        found.push(at + range.start..at + range.end);
        return;
    }
    let Some((&separator, rest)) = separators.split_first() else {
        return;
    };
    if !word.contains(separator) {
        find_in_word(word, at, rest, found);
        return;
    }
    let mut piece_at = at;
    for piece in word.split(separator) {
        find_in_word(piece, piece_at, rest, found);
        piece_at += piece.len() + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GHP: &str = "ghp_R2d2C3poX9k4L7m8N1q2W3e4R5t6Y7u8I9o0";
    const TELEGRAM: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ";

    #[test]
    fn vendor_shapes_are_tokens() {
        for token in [
            GHP,
            "gho_16C7e42F292c6912E7710c838347Ae178B4a",
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ",
            "glpat-xYz12AbC34dEf56GhI78j",
            "xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
            "xoxp-1234-5678-abcd",
            "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
            "sk-ant-api03-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe",
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "rk_test_51HxYzAbCdEfGh12",
            "AKIAIOSFODNN7EXAMPLE",
            "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
            "glsa_AbCdEfGhIjKlMnOpQrStUvWxYz012345_abcdef01",
            "npm_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
            "hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567",
            "ya29.a0AfH6SMBx-example_Token.Value123",
            TELEGRAM,
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4eXoifQ.",
        ] {
            assert!(is_token(token), "{token}");
        }
    }

    #[test]
    fn random_strings_are_tokens() {
        for token in [
            "Xk9pQ2vL7mN4rT8wZ1bC5dF3gH6jK0sA",
            "q8W-zR3tY_uI9oP2aS5dF7gH1jK4lZ6xC0vB",
            "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8s9T0==",
        ] {
            assert!(is_token(token), "{token}");
        }
    }

    #[test]
    fn ordinary_words_ids_and_digests_are_not_tokens() {
        for word in [
            "12345",
            "alice",
            "v1",
            "items",
            "getUpdates",
            "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
            "3F2504E0-4F89-11D3-9A0C-0305E82C3301",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "da39a3ee5e6b4b0d3255bfef95601890afd80709",
            "sk-learn-tutorial-part-two-for-beginners",
            "sk-",
            "ghp_short",
            "AKIA",
            "AKIAlowercase0000000",
            "How-To-Configure-Nginx-2024-Guide-Part2",
            "MyApplicationConfigurationFile2024",
            "AbstractSingletonProxyFactoryBean2",
            "user_profile_picture_thumbnail_v2_Large",
            "2024-01-15T10-30-00Z-backup-Archive-File",
            "DSC_0001_Holiday_Photos_Summer_Vacation",
            "TestSuiteForUserAuthentication2FAFlowV3",
            "X509CertificateRevocationListParser2",
            "report-2024.pdf",
            "12:30",
            "eyJhbGciOiJIUzI1NiJ9",
        ] {
            assert!(!is_token(word), "{word}");
        }
    }

    #[test]
    fn generic_rule_takes_most_random_strings_and_no_identifiers() {
        // Seeded check of the miss rate documented on `is_random`.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut missed = 0;
        for _ in 0..2000 {
            let word: String = (0..32)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    char::from(alphabet[(state % alphabet.len() as u64) as usize])
                })
                .collect();
            if !is_random(&word) {
                missed += 1;
            }
        }
        assert!(missed < 2000 / 25, "missed {missed} of 2000");
    }

    #[test]
    fn telegram_path_keeps_the_bot_prefix() {
        let path = format!("/bot{TELEGRAM}/getUpdates");
        let (redacted, found) = redact_path(&path);
        assert_eq!(redacted, "/bot<redacted>/getUpdates");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].segment, 1);
        assert_eq!(&path[found[0].range.clone()], TELEGRAM);
    }

    #[test]
    fn percent_encoded_segments_are_judged_decoded() {
        let path = "/bot123456789%3AAAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ/sendMessage";
        let (redacted, found) = redact_path(path);
        assert_eq!(redacted, "/bot<redacted>/sendMessage");
        assert_eq!(found[0].range.start, 4);
    }

    #[test]
    fn token_segments_anywhere_in_the_path_are_redacted() {
        let path = format!("/api/v1/hooks/{GHP}/deliveries/Xk9pQ2vL7mN4rT8wZ1bC5dF3gH6jK0sA");
        let (redacted, found) = redact_path(&path);
        assert_eq!(redacted, "/api/v1/hooks/<redacted>/deliveries/<redacted>");
        let segments: Vec<usize> = found.iter().map(|t| t.segment).collect();
        assert_eq!(segments, [4, 6]);
    }

    #[test]
    fn ordinary_paths_are_unchanged() {
        for path in [
            "/",
            "/v1/items/12345",
            "/api/users/alice",
            "/repos/octo/hello/commits/da39a3ee5e6b4b0d3255bfef95601890afd80709",
            "/v2/library/nginx/blobs/sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "/orders/3f2504e0-4f89-11d3-9a0c-0305e82c3301/items",
            "/blog/2024/01/how-to-configure-nginx",
            "api.example.com:443",
            "*",
        ] {
            let (redacted, found) = redact_path(path);
            assert_eq!(redacted, path);
            assert!(found.is_empty(), "{path}");
        }
    }

    #[test]
    fn tokens_are_found_in_text() {
        let text = format!("const t = '{GHP}'; x = a.{TELEGRAM}. key:AKIAIOSFODNN7EXAMPLE ok");
        let found: Vec<&str> = find_in_text(&text).into_iter().map(|r| &text[r]).collect();
        assert_eq!(found, [GHP, TELEGRAM, "AKIAIOSFODNN7EXAMPLE"]);
        assert!(find_in_text("fetch(url, {method: 'POST'}) // v1.2.3 12:30").is_empty());
    }
}
