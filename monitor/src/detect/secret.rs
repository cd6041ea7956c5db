//! The raw bytes of one credential value the monitor saw, kept only so that everything written
//! afterwards can be scrubbed of them (DESIGN.md principle 5, "never become the leak").
//!
//! A [`Secret`] cannot reach output by accident: it is not `Serialize`, its `Debug` shows the
//! length only, and its bytes are overwritten with zeros when it is dropped, so a freed secret
//! does not linger in the heap for a core dump or a later allocation to expose. Copies made
//! with `Clone` are separate allocations and are wiped the same way. What the type cannot wipe
//! is the buffer a secret was copied *from* (the parser's input, a decoded temporary): those
//! are short-lived and owned by their callers.
use std::hash::{Hash, Hasher};

/// One secret value. See the module docs for why it looks the way it does.
pub struct Secret {
    /// Boxed slice rather than `Vec`: it never grows, so it never reallocates and leaves an
    /// unwiped copy behind.
    bytes: Box<[u8]>,
}

impl Secret {
    /// A secret holding a copy of `bytes`.
    pub fn new(bytes: &[u8]) -> Self {
        Self {
            bytes: Box::from(bytes),
        }
    }

    /// The secret value.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Length of the value in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Overwrites `buf` with zeros in a way the optimiser may not remove (the buffer is about to be
/// freed, which would otherwise make the writes dead stores).
pub(crate) fn wipe(buf: &mut [u8]) {
    for byte in buf.iter_mut() {
        // SAFETY: `byte` is a valid, aligned, exclusive reference to a `u8`.
        unsafe { std::ptr::write_volatile(byte, 0) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

impl Drop for Secret {
    fn drop(&mut self) {
        wipe(&mut self.bytes);
    }
}

impl Clone for Secret {
    fn clone(&self) -> Self {
        Self::new(&self.bytes)
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for Secret {}

impl Hash for Secret {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.bytes.hash(state);
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// Adds `value` to `secrets` unless it is empty or already there (parsers add every form of a
/// value, and several forms are often the same bytes).
pub(crate) fn push_unique(secrets: &mut Vec<Secret>, value: &[u8]) {
    if !value.is_empty() && !secrets.iter().any(|s| s.as_bytes() == value) {
        secrets.push(Secret::new(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_length_only() {
        let secret = Secret::new(b"hunter2-pass");
        assert_eq!(format!("{secret:?}"), "Secret { len: 12 }");
        assert_eq!(format!("{:?}", vec![secret]), "[Secret { len: 12 }]");
    }

    #[test]
    fn value_equality_hash_and_clone() {
        use std::collections::HashSet;
        let a = Secret::new(b"s3cret");
        let b = a.clone();
        assert_eq!(a, b);
        assert_eq!(b.as_bytes(), b"s3cret");
        assert_ne!(a, Secret::new(b"other"));
        let set: HashSet<Secret> = [a, b, Secret::new(b"x")].into_iter().collect();
        assert_eq!(set.len(), 2);
        assert_eq!(Secret::new(b"").len(), 0);
        assert!(Secret::new(b"").is_empty());
    }

    #[test]
    fn wipe_zeroes_the_buffer() {
        // Drop itself cannot be observed without reading freed memory; `wipe` is what it runs.
        let mut buf = *b"top-secret";
        wipe(&mut buf);
        assert_eq!(buf, [0u8; 10]);
    }

    #[test]
    fn push_unique_skips_empty_and_repeated_values() {
        let mut secrets = Vec::new();
        push_unique(&mut secrets, b"a1");
        push_unique(&mut secrets, b"a1");
        push_unique(&mut secrets, b"");
        push_unique(&mut secrets, b"b2");
        assert_eq!(secrets.len(), 2);
    }
}
