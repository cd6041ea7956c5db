//! Request bodies: form and JSON fields that carry secrets, and OAuth grant types that make a
//! request a token exchange.
//!
//! A body cut by the capture limit is still inspected, field by field: what came complete before
//! the cut counts, the field the cut fell in does not.
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::names;
use crate::detect::redact::Fingerprinter;
use crate::detect::{printable_name, Credential, CredentialKind};

/// JSON nesting followed into: `{"auth": {"credentials": {"password": ..}}}` is depth 3.
const MAX_JSON_DEPTH: usize = 4;

/// What a body holds, from its `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BodyKind {
    Form,
    Json,
    /// No `Content-Type`: a JSON object or array is recognised by its first byte.
    Unlabelled,
    /// Anything else, or compressed: not looked into.
    Opaque,
}

impl BodyKind {
    pub(super) fn from_content_type(value: Option<&[u8]>) -> Self {
        let Some(value) = value else {
            return Self::Unlabelled;
        };
        let media_type = value.split(|&b| b == b';').next().unwrap_or_default();
        let media_type = super::trim_ascii(media_type).to_ascii_lowercase();
        if media_type == b"application/x-www-form-urlencoded" {
            Self::Form
        } else if media_type == b"application/json"
            || media_type == b"text/json"
            || media_type.ends_with(b"+json")
        {
            Self::Json
        } else {
            Self::Opaque
        }
    }
}

/// Secrets and grant type found in a body.
#[derive(Debug, Default)]
pub(super) struct Found {
    pub credentials: Vec<Credential>,
    pub grant_type: Option<&'static str>,
}

pub(super) fn inspect(kind: BodyKind, body: &[u8], cut: bool, fp: &Fingerprinter) -> Found {
    let mut found = Found::default();
    if body.is_empty() {
        return found;
    }
    match kind {
        BodyKind::Form => inspect_form(body, cut, fp, &mut found),
        BodyKind::Json => inspect_json(body, fp, &mut found),
        BodyKind::Unlabelled => {
            if matches!(first_non_space(body), Some(b'{' | b'[')) {
                inspect_json(body, fp, &mut found);
            }
        }
        BodyKind::Opaque => {}
    }
    found
}

fn first_non_space(body: &[u8]) -> Option<u8> {
    body.iter().copied().find(|b| !b.is_ascii_whitespace())
}

fn inspect_form(body: &[u8], cut: bool, fp: &Fingerprinter, found: &mut Found) {
    // When cut, the pair after the last '&' may itself be cut: leave it out.
    let body = if cut {
        match body.iter().rposition(|&b| b == b'&') {
            Some(last) => &body[..last],
            None => return,
        }
    } else {
        body
    };
    for field in super::form_fields(body) {
        if field.name.eq_ignore_ascii_case("grant_type") {
            found.grant_type = found.grant_type.or(names::oauth_grant_type(&field.value));
        } else if !field.value.is_empty() && names::is_secret_field(&field.name) {
            found.credentials.push(
                Credential::redacted(
                    CredentialKind::FormField,
                    format!("form:{}", printable_name(field.name.as_bytes())),
                    field.value.as_bytes(),
                    fp,
                )
                .with_form(field.raw_value),
            );
        }
    }
}

/// Walks the JSON document with serde_json, collecting findings as each value completes. A
/// document cut short ends in a parse error; what was collected before it stays.
fn inspect_json(body: &[u8], fp: &Fingerprinter, found: &mut Found) {
    let mut de = serde_json::Deserializer::from_slice(body);
    let walk = JsonWalk {
        sink: &mut JsonSink { fp, found },
        path: String::new(),
        depth: 0,
    };
    // Errors only mean the document ended early or is not JSON.
    let _ = walk.deserialize(&mut de);
}

struct JsonSink<'a> {
    fp: &'a Fingerprinter,
    found: &'a mut Found,
}

/// A JSON value at `path`, walked for secret fields.
struct JsonWalk<'s, 'a> {
    sink: &'s mut JsonSink<'a>,
    path: String,
    depth: usize,
}

impl JsonWalk<'_, '_> {
    fn child_path(&self, segment: &str) -> String {
        if self.path.is_empty() {
            segment.to_owned()
        } else {
            format!("{}.{segment}", self.path)
        }
    }
}

impl<'de> DeserializeSeed<'de> for JsonWalk<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for JsonWalk<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key.eq_ignore_ascii_case("grant_type") {
                let grant: GrantType = map.next_value()?;
                if self.sink.found.grant_type.is_none() {
                    self.sink.found.grant_type = grant.0;
                }
            } else if names::is_secret_field(&key) {
                let location = format!("json:{}", self.child_path(&printable_name(key.as_bytes())));
                map.next_value_seed(JsonSecret {
                    sink: self.sink,
                    location,
                })?;
            } else if self.depth + 1 < MAX_JSON_DEPTH {
                let path = self.child_path(&printable_name(key.as_bytes()));
                map.next_value_seed(JsonWalk {
                    sink: self.sink,
                    path,
                    depth: self.depth + 1,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.depth + 1 >= MAX_JSON_DEPTH {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(());
        }
        let path = self.child_path("[]");
        while seq
            .next_element_seed(JsonWalk {
                sink: self.sink,
                path: path.clone(),
                depth: self.depth + 1,
            })?
            .is_some()
        {}
        Ok(())
    }

    // Scalars outside secret fields carry nothing of interest.
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// The value of a secret field: redacted the moment serde hands it over.
struct JsonSecret<'s, 'a> {
    sink: &'s mut JsonSink<'a>,
    location: String,
}

impl JsonSecret<'_, '_> {
    fn record(self, secret: &[u8]) {
        if !secret.is_empty() {
            self.sink.found.credentials.push(Credential::redacted(
                CredentialKind::JsonField,
                self.location,
                secret,
                self.sink.fp,
            ));
        }
    }
}

impl<'de> DeserializeSeed<'de> for JsonSecret<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for JsonSecret<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a secret value")
    }

    fn visit_str<E>(self, value: &str) -> Result<(), E> {
        self.record(value.as_bytes());
        Ok(())
    }
    // Numeric PINs and passwords are secrets too; their text is what was typed.
    fn visit_i64<E>(self, value: i64) -> Result<(), E> {
        self.record(value.to_string().as_bytes());
        Ok(())
    }
    fn visit_u64<E>(self, value: u64) -> Result<(), E> {
        self.record(value.to_string().as_bytes());
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    // `"password": {...}` is a structure describing a password, not one; skip it.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

/// A `grant_type` value, kept only if it is a known OAuth grant (as our own constant).
struct GrantType(Option<&'static str>);

impl<'de> serde::Deserialize<'de> for GrantType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct GrantVisitor;
        impl<'de> Visitor<'de> for GrantVisitor {
            type Value = GrantType;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a grant type")
            }
            fn visit_str<E>(self, value: &str) -> Result<GrantType, E> {
                Ok(GrantType(names::oauth_grant_type(value)))
            }
            fn visit_bool<E>(self, _: bool) -> Result<GrantType, E> {
                Ok(GrantType(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<GrantType, E> {
                Ok(GrantType(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<GrantType, E> {
                Ok(GrantType(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<GrantType, E> {
                Ok(GrantType(None))
            }
            fn visit_unit<E>(self) -> Result<GrantType, E> {
                Ok(GrantType(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<GrantType, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(GrantType(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<GrantType, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(GrantType(None))
            }
        }
        deserializer.deserialize_any(GrantVisitor)
    }
}

/// Result of undoing chunked transfer coding. Holds raw body bytes, so deliberately not `Debug`.
pub(super) enum Dechunked {
    /// All chunks and the trailer section arrived; `wire_len` bytes were used.
    Complete {
        body: Vec<u8>,
        wire_len: usize,
    },
    /// The chunks that arrived so far (a chunk cut short contributes what arrived of it).
    Incomplete {
        body: Vec<u8>,
    },
    Invalid,
}

/// Undoes chunked transfer coding (RFC 9112 section 7.1) with httparse's chunk-size parser.
pub(super) fn dechunk(wire: &[u8]) -> Dechunked {
    let mut body = Vec::new();
    let mut pos = 0usize;
    loop {
        let rest = wire.get(pos..).unwrap_or_default();
        let (size_len, size) = match httparse::parse_chunk_size(rest) {
            Ok(httparse::Status::Complete(parsed)) => parsed,
            Ok(httparse::Status::Partial) => return Dechunked::Incomplete { body },
            Err(_) => return Dechunked::Invalid,
        };
        pos = pos.saturating_add(size_len);
        if size == 0 {
            // Trailer section: header lines, then an empty line.
            let rest = wire.get(pos..).unwrap_or_default();
            let mut trailers = [httparse::EMPTY_HEADER; 16];
            return match httparse::parse_headers(rest, &mut trailers) {
                Ok(httparse::Status::Complete((trailer_len, _))) => Dechunked::Complete {
                    body,
                    wire_len: pos.saturating_add(trailer_len),
                },
                Ok(httparse::Status::Partial) => Dechunked::Incomplete { body },
                Err(_) => Dechunked::Invalid,
            };
        }
        let Ok(size) = usize::try_from(size) else {
            return Dechunked::Invalid;
        };
        let rest = wire.get(pos..).unwrap_or_default();
        let Some(data) = rest.get(..size) else {
            body.extend_from_slice(rest);
            return Dechunked::Incomplete { body };
        };
        body.extend_from_slice(data);
        pos = pos.saturating_add(size);
        match wire.get(pos..pos.saturating_add(2)) {
            Some(b"\r\n") => pos += 2,
            Some(_) => return Dechunked::Invalid,
            None if wire.get(pos..).is_some_and(|r| r == b"\r") || pos >= wire.len() => {
                return Dechunked::Incomplete { body }
            }
            None => return Dechunked::Invalid,
        }
    }
}
