//! Keyed fingerprints for secrets, so findings can say "the same password again" without ever
//! holding or printing the password.
//!
//! A fingerprint is the first 48 bits of HMAC-SHA256 under a per-run random key: enough to match
//! two sightings of one secret, useless for guessing it offline (a plain hash of a short password
//! would be brute-forced from the output in seconds).
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Hex characters of the HMAC kept in a fingerprint.
const FINGERPRINT_HEX_CHARS: usize = 12;

/// Computes keyed fingerprints of secrets. Holds the prepared HMAC state, not the raw key, and
/// never prints either.
#[derive(Clone)]
pub struct Fingerprinter {
    mac: Hmac<Sha256>,
}

impl Fingerprinter {
    /// A fingerprinter with a fixed key: fingerprints are stable across runs that share the key.
    pub fn new(key: [u8; 32]) -> Self {
        // HMAC accepts keys of any length, so this cannot fail.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("HMAC takes any key length");
        Self { mac }
    }

    /// A fingerprinter with a fresh key from the OS generator: fingerprints match within this
    /// run only.
    pub fn try_random() -> Result<Self, getrandom::Error> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key)?;
        Ok(Self::new(key))
    }

    /// Like [`Fingerprinter::try_random`].
    ///
    /// # Panics
    /// If the OS random generator is unavailable (on Linux, kernels older than 3.17 without
    /// `/dev/urandom`), which no kernel that runs the eBPF side has.
    pub fn random() -> Self {
        Self::try_random().expect("OS random generator unavailable")
    }

    /// `"hmac-sha256:"` followed by the first 12 hex characters of HMAC-SHA256(key, secret).
    pub fn fingerprint(&self, secret: &[u8]) -> String {
        let mut mac = self.mac.clone();
        mac.update(secret);
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity("hmac-sha256:".len() + FINGERPRINT_HEX_CHARS);
        out.push_str("hmac-sha256:");
        for byte in digest.iter().take(FINGERPRINT_HEX_CHARS / 2) {
            out.push(hex_digit(byte >> 4));
            out.push(hex_digit(byte & 0x0f));
        }
        out
    }
}

impl std::fmt::Debug for Fingerprinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key must not show up in logs: with it, short secrets could be guessed back from
        // their fingerprints.
        f.debug_struct("Fingerprinter").finish_non_exhaustive()
    }
}

fn hex_digit(nibble: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(nibble & 0x0f)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_prefixed_hmac_sha256_truncated_to_12_hex_chars() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?". Our key is 32
        // bytes, so pad the same way HMAC does internally (zeros): the MAC is unchanged.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let fp = Fingerprinter::new(key);
        assert_eq!(
            fp.fingerprint(b"what do ya want for nothing?"),
            "hmac-sha256:5bdcc146bf60"
        );
    }

    #[test]
    fn same_secret_same_key_matches_and_other_key_differs() {
        let a = Fingerprinter::new([1; 32]);
        let b = Fingerprinter::new([2; 32]);
        assert_eq!(a.fingerprint(b"hunter2"), a.fingerprint(b"hunter2"));
        assert_ne!(a.fingerprint(b"hunter2"), a.fingerprint(b"hunter3"));
        assert_ne!(a.fingerprint(b"hunter2"), b.fingerprint(b"hunter2"));
    }

    #[test]
    fn random_keys_differ() {
        let a = Fingerprinter::random();
        let b = Fingerprinter::random();
        assert_ne!(a.fingerprint(b"x"), b.fingerprint(b"x"));
    }

    #[test]
    fn debug_output_hides_key_material() {
        let fp = Fingerprinter::new([0xAB; 32]);
        let shown = format!("{fp:?}");
        assert_eq!(shown, "Fingerprinter { .. }");
    }
}
