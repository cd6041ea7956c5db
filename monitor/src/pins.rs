//! `[[pins]]` and `[tls] high_value_hosts` from `--config`: checked, compiled, and matched
//! against server names. Pure, except [`ca_file_stores`] (which reads the `[tls] ca_files`).
//!
//! ```toml
//! [[pins]]
//! host = "api.payments.example"   # a host name, or "*." + a domain: any name below it
//! spki = ["sha256/<base64 of 32 bytes>", "sha256/<backup key>"]
//!
//! [tls]
//! # Regexes on server names (matched lower-case), added to BUILTIN_HIGH_VALUE_HOSTS.
//! high_value_hosts = ['\.payments\.example$']
//! ```
//!
//! A pin is the SHA-256 of a DER SubjectPublicKeyInfo in base64, the format of curl's
//! `--pinnedpubkey`, HPKP and `tls_handshake` events' `spki_sha256`. A wildcard `*.example.com`
//! matches every name below `example.com` (any depth, as `[[suppress]] host` does), not
//! `example.com` itself; an exact entry wins over a wildcard, a longer wildcard over a shorter.
use std::{
    collections::HashSet,
    fmt,
    net::IpAddr,
    path::{Path, PathBuf},
};

use base64::Engine as _;
use regex::{Regex, RegexBuilder};
use serde::Deserialize;

use crate::detect::x509::TrustStore;

/// Server names treated as high-value without any configuration: payment and identity
/// providers, whose sessions carry card data, account access or tokens that mint other
/// tokens. A session to one without `[[pins]]` is `TLS_UNPINNED_HIGH_VALUE`.
pub const BUILTIN_HIGH_VALUE_HOSTS: &[(&str, &str)] = &[
    (r"(^|\.)stripe\.com$", "payment provider Stripe"),
    (r"(^|\.)paypal\.com$", "payment provider PayPal"),
    (
        r"(^|\.)braintreegateway\.com$",
        "payment provider Braintree",
    ),
    (r"(^|\.)adyen\.com$", "payment provider Adyen"),
    (r"(^|\.)squareup\.com$", "payment provider Square"),
    (r"(^|\.)checkout\.com$", "payment provider Checkout.com"),
    (r"(^|\.)authorize\.net$", "payment provider Authorize.Net"),
    (r"(^|\.)klarna\.com$", "payment provider Klarna"),
    (r"(^|\.)mollie\.com$", "payment provider Mollie"),
    (r"(^|\.)plaid\.com$", "bank-data provider Plaid"),
    (r"(^|\.)okta\.com$", "identity provider Okta"),
    (r"(^|\.)auth0\.com$", "identity provider Auth0"),
    (r"(^|\.)onelogin\.com$", "identity provider OneLogin"),
    (
        r"(^|\.)pingidentity\.com$",
        "identity provider Ping Identity",
    ),
    (
        r"^login\.microsoftonline\.com$",
        "identity provider Microsoft Entra ID",
    ),
    (r"^accounts\.google\.com$", "identity provider Google"),
    (
        r"^oauth2\.googleapis\.com$",
        "identity provider Google (OAuth)",
    ),
    (
        r"^sts(\.[a-z0-9-]+)?\.amazonaws\.com$",
        "identity provider AWS STS",
    ),
];

/// One `[[pins]]` table as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinConfig {
    pub host: toml::Spanned<String>,
    pub spki: toml::Spanned<Vec<toml::Spanned<String>>>,
}

/// One SPKI pin: the SHA-256 digest, printed as `sha256/<base64>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Spki([u8; 32]);

impl Spki {
    /// `sha256/` followed by the standard base64 of exactly 32 bytes.
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some(b64) = text.trim().strip_prefix("sha256/") else {
            return Err(format!(
                "{text:?} is not an SPKI pin: it must start with \"sha256/\" (the SHA-256 of \
                 the SubjectPublicKeyInfo, base64, as curl --pinnedpubkey takes it)"
            ));
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("{text:?}: the part after \"sha256/\" is not base64 ({e})"))?;
        let digest: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            format!(
                "{text:?}: a SHA-256 pin holds 32 bytes (44 base64 characters), this holds {}",
                bytes.len()
            )
        })?;
        Ok(Self(digest))
    }
}

impl fmt::Display for Spki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sha256/{}",
            base64::engine::general_purpose::STANDARD.encode(self.0)
        )
    }
}

/// Which server names a `[[pins]]` entry covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    /// One name (lower case, no trailing dot), or an IP address literal.
    Exact(String),
    /// Every name ending in `.` + this domain (lower case).
    Below(String),
}

impl HostPattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let lower = text.trim().trim_end_matches('.').to_ascii_lowercase();
        if lower.is_empty() {
            return Err("host is empty".into());
        }
        if lower.parse::<IpAddr>().is_ok() {
            return Ok(Self::Exact(lower));
        }
        let (wildcard, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        if name.contains('*') {
            return Err(format!(
                "{text:?}: a wildcard is only allowed as a leading \"*.\" (\"*.example.com\")"
            ));
        }
        for label in name.split('.') {
            let ok = !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return Err(format!("{text:?} is not a host name (label {label:?})"));
            }
        }
        if wildcard {
            if !name.contains('.') {
                return Err(format!(
                    "{text:?}: a wildcard must name a domain below a top-level domain \
                     (\"*.example.com\", not \"*.com\")"
                ));
            }
            return Ok(Self::Below(name.to_string()));
        }
        Ok(Self::Exact(name.to_string()))
    }

    /// How specifically it covers `name` (lower case, no trailing dot): `None` if it does not;
    /// an exact match beats any wildcard, a longer domain a shorter one.
    pub fn specificity(&self, name: &str) -> Option<usize> {
        match self {
            Self::Exact(host) => (host == name).then_some(usize::MAX),
            Self::Below(domain) => (name.len() > domain.len() + 1
                && name.ends_with(domain.as_str())
                && name.as_bytes()[name.len() - domain.len() - 1] == b'.')
                .then_some(domain.len()),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(host) => f.write_str(host),
            Self::Below(domain) => write!(f, "*.{domain}"),
        }
    }
}

/// One checked `[[pins]]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinSet {
    pub host: HostPattern,
    /// In config order, without duplicates.
    pub spki: Vec<Spki>,
}

impl PinSet {
    pub fn holds(&self, pin: &str) -> bool {
        Spki::parse(pin).is_ok_and(|p| self.spki.contains(&p))
    }

    pub fn pins(&self) -> Vec<String> {
        self.spki.iter().map(ToString::to_string).collect()
    }
}

/// Why a server name is high-value.
#[derive(Clone, Debug)]
pub struct HighValueRule {
    regex: Regex,
    /// "built-in: payment provider Stripe" or "config: tls.high_value_hosts '...'".
    pub why: String,
}

/// `[[pins]]` and the high-value host rules, checked (from [`crate::config::Config::parse`]).
#[derive(Clone, Debug)]
pub struct Pinning {
    pub pins: Vec<PinSet>,
    pub high_value: Vec<HighValueRule>,
}

impl Default for Pinning {
    /// No pins, the built-in high-value hosts.
    fn default() -> Self {
        Self {
            pins: Vec::new(),
            high_value: builtin_rules(),
        }
    }
}

fn builtin_rules() -> Vec<HighValueRule> {
    BUILTIN_HIGH_VALUE_HOSTS
        .iter()
        .map(|(re, what)| HighValueRule {
            regex: Regex::new(re).expect("built-in high-value host regexes compile"),
            why: format!("built-in: {what}"),
        })
        .collect()
}

/// The 1-based line of a byte offset in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

impl Pinning {
    /// Check the tables; an error names the entry, its line in `text` and what is wrong.
    pub fn compile(
        pins: &[PinConfig],
        high_value_hosts: &[toml::Spanned<String>],
        text: &str,
    ) -> anyhow::Result<Self> {
        let mut sets: Vec<PinSet> = Vec::with_capacity(pins.len());
        for (index, entry) in pins.iter().enumerate() {
            let at = |offset: usize| {
                format!(
                    "line {}: [[pins]] entry {} (host {:?})",
                    line_of(text, offset),
                    index + 1,
                    entry.host.get_ref()
                )
            };
            let host = HostPattern::parse(entry.host.get_ref())
                .map_err(|e| anyhow::anyhow!("{}: {e}", at(entry.host.span().start)))?;
            if let Some(earlier) = sets.iter().position(|s| s.host == host) {
                anyhow::bail!(
                    "{}: {host} is already pinned by entry {}: put all its keys in one spki list",
                    at(entry.host.span().start),
                    earlier + 1
                );
            }
            if entry.spki.get_ref().is_empty() {
                anyhow::bail!(
                    "{}: spki is empty: list the SPKI pins (\"sha256/...\") the host may present",
                    at(entry.spki.span().start)
                );
            }
            let mut spki = Vec::new();
            for pin in entry.spki.get_ref() {
                let parsed = Spki::parse(pin.get_ref())
                    .map_err(|e| anyhow::anyhow!("{}: {e}", at(pin.span().start)))?;
                if !spki.contains(&parsed) {
                    spki.push(parsed);
                }
            }
            sets.push(PinSet { host, spki });
        }
        let mut high_value = builtin_rules();
        for pattern in high_value_hosts {
            let regex = RegexBuilder::new(pattern.get_ref())
                .case_insensitive(true)
                .build()
                .map_err(|e| {
                    anyhow::anyhow!(
                        "line {}: tls.high_value_hosts {:?} is not a valid regex: {e}",
                        line_of(text, pattern.span().start),
                        pattern.get_ref()
                    )
                })?;
            high_value.push(HighValueRule {
                regex,
                why: format!("config: tls.high_value_hosts '{}'", pattern.get_ref()),
            });
        }
        Ok(Self {
            pins: sets,
            high_value,
        })
    }

    /// The entry that pins `name`, the most specific one if several do.
    pub fn pins_for(&self, name: &str) -> Option<&PinSet> {
        let name = normalize(name);
        self.pins
            .iter()
            .filter_map(|set| set.host.specificity(&name).map(|s| (s, set)))
            .max_by_key(|(s, _)| *s)
            .map(|(_, set)| set)
    }

    /// Why `name` is high-value, if it is (the first rule that matches).
    pub fn high_value(&self, name: &str) -> Option<&str> {
        let name = normalize(name);
        self.high_value
            .iter()
            .find(|rule| rule.regex.is_match(&name))
            .map(|rule| rule.why.as_str())
    }
}

fn normalize(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `name` can be written into a `[[pins]]` snippet as it is (a host name or IP
/// literal: nothing that needs quoting).
pub fn pinnable_name(name: &str) -> bool {
    matches!(HostPattern::parse(name), Ok(HostPattern::Exact(_)))
}

/// A `[[pins]]` table to paste into `--config`, with a comment per pin.
pub fn snippet(host: &str, pins: &[(String, &str)]) -> String {
    let mut out = format!("[[pins]]\nhost = \"{host}\"\nspki = [\n");
    for (pin, what) in pins {
        // A comment runs to the end of the line: nothing from a certificate may end it.
        let what: String = what.chars().filter(|c| !c.is_control()).collect();
        out.push_str(&format!("  \"{pin}\",  # {what}\n"));
    }
    out.push_str("]\n");
    if pins.len() < 2 {
        out.push_str(
            "# Add a backup key (the next key, or the issuing CA's) before relying on it.\n",
        );
    }
    out
}

/// Each `[tls] ca_files` file as a trust store of its own, so a failed handshake can name the
/// file that would have verified it. Files that cannot be read are left out (the run's trust
/// store already warned about them).
pub fn ca_file_stores(files: &[PathBuf]) -> Vec<(PathBuf, TrustStore)> {
    let mut seen: HashSet<&Path> = HashSet::new();
    files
        .iter()
        .filter(|f| seen.insert(f.as_path()))
        .filter_map(|file| {
            let mut store = TrustStore::empty();
            store.add_pem_file(file).ok()?;
            Some((file.clone(), store))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIN_A: &str = "sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    const PIN_B: &str = "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

    fn compile(text: &str) -> anyhow::Result<Pinning> {
        #[derive(Deserialize)]
        struct Doc {
            #[serde(default)]
            pins: Vec<PinConfig>,
            #[serde(default)]
            high_value_hosts: Vec<toml::Spanned<String>>,
        }
        let doc: Doc = toml::from_str(text)?;
        Pinning::compile(&doc.pins, &doc.high_value_hosts, text)
    }

    fn err(text: &str) -> String {
        format!("{:#}", compile(text).unwrap_err())
    }

    #[test]
    fn pins_parse_and_print_in_the_curl_format() {
        let p = Spki::parse(PIN_B).unwrap();
        assert_eq!(p.to_string(), PIN_B);
        assert_eq!(Spki::parse(&format!(" {PIN_A} ")).unwrap().0, [0; 32]);
        for bad in [
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            "sha1/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            "sha256/not base64!",
            "sha256/AAAA",
            "sha256/47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU=",
        ] {
            assert!(Spki::parse(bad).is_err(), "{bad}");
        }
        // The monitor's own pins parse.
        let der = b"any SPKI bytes";
        let pin = crate::detect::x509::spki_pin(der);
        assert_eq!(Spki::parse(&pin).unwrap().to_string(), pin);
    }

    #[test]
    fn wildcards_cover_names_below_the_domain_only() {
        let w = HostPattern::parse("*.Payments.Example.").unwrap();
        assert_eq!(w, HostPattern::Below("payments.example".into()));
        assert_eq!(w.to_string(), "*.payments.example");
        assert!(w.specificity("api.payments.example").is_some());
        assert!(w.specificity("a.b.payments.example").is_some());
        assert!(w.specificity("payments.example").is_none());
        assert!(w.specificity("xpayments.example").is_none());
        assert!(w.specificity("api.payments.example.evil").is_none());
        let e = HostPattern::parse("API.payments.example").unwrap();
        assert!(e.specificity("api.payments.example").is_some());
        assert!(e.specificity("x.api.payments.example").is_none());
        assert_eq!(
            HostPattern::parse("10.0.0.7").unwrap(),
            HostPattern::Exact("10.0.0.7".into())
        );
        for bad in [
            "",
            "*",
            "*.com",
            "a.*.b",
            "*x.example",
            "**.example.com",
            "api..x",
            "-a.x",
            "a b",
            "a/b",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_most_specific_entry_wins() {
        let p = compile(&format!(
            "[[pins]]\nhost = \"*.example.com\"\nspki = [\"{PIN_A}\"]\n\
             [[pins]]\nhost = \"*.api.example.com\"\nspki = [\"{PIN_B}\"]\n\
             [[pins]]\nhost = \"v1.api.example.com\"\nspki = [\"{PIN_A}\", \"{PIN_B}\"]\n"
        ))
        .unwrap();
        let host = |n: &str| p.pins_for(n).map(|s| s.host.to_string());
        assert_eq!(host("www.example.com").as_deref(), Some("*.example.com"));
        assert_eq!(
            host("v2.api.example.com").as_deref(),
            Some("*.api.example.com")
        );
        assert_eq!(
            host("V1.API.example.com.").as_deref(),
            Some("v1.api.example.com")
        );
        assert_eq!(host("example.com"), None);
        assert_eq!(host("example.org"), None);
        let set = p.pins_for("v1.api.example.com").unwrap();
        assert!(set.holds(PIN_B) && set.holds(PIN_A));
        assert!(!p.pins_for("www.example.com").unwrap().holds(PIN_B));
    }

    #[test]
    fn high_value_hosts_are_the_built_in_list_plus_the_config() {
        let p = compile("high_value_hosts = ['\\.payments\\.example$']\n").unwrap();
        assert!(p
            .high_value("api.payments.example")
            .unwrap()
            .starts_with("config:"));
        assert!(
            p.high_value("API.PAYMENTS.example").is_some(),
            "case-insensitive"
        );
        assert_eq!(
            p.high_value("api.stripe.com"),
            Some("built-in: payment provider Stripe")
        );
        assert!(p.high_value("login.microsoftonline.com").is_some());
        assert!(p.high_value("sts.eu-west-1.amazonaws.com").is_some());
        assert!(p.high_value("s3.amazonaws.com").is_none());
        assert!(p.high_value("notstripe.com").is_none());
        assert!(p.high_value("api.test").is_none());
        assert!(Pinning::default().high_value("dev.okta.com").is_some());
    }

    #[test]
    fn errors_name_the_entry_its_line_and_the_problem() {
        let e = err(&format!(
            "[[pins]]\nhost = \"a.example\"\nspki = [\"{PIN_A}\"]\n\n[[pins]]\nhost = \"b.example\"\nspki = [\"sha256/xyz\"]\n"
        ));
        assert!(
            e.contains("line 7") && e.contains("entry 2") && e.contains("b.example"),
            "{e}"
        );
        let e = err("[[pins]]\nhost = \"*.com\"\nspki = []\n");
        assert!(
            e.contains("line 2") && e.contains("*.com") && e.contains("wildcard"),
            "{e}"
        );
        let e = err("[[pins]]\nhost = \"x.example\"\nspki = []\n");
        assert!(e.contains("spki is empty"), "{e}");
        let e = err(&format!(
            "[[pins]]\nhost = \"x.example\"\nspki = [\"{PIN_A}\"]\n[[pins]]\nhost = \"X.example\"\nspki = [\"{PIN_B}\"]\n"
        ));
        assert!(e.contains("already pinned by entry 1"), "{e}");
        let e = err("high_value_hosts = ['ok', '(unclosed']\n");
        assert!(e.contains("line 1") && e.contains("(unclosed"), "{e}");
        let e = err("[[pins]]\nhost = \"x.example\"\nspki = [\"sha256/AAAA\"]\nextra = 1\n");
        assert!(e.contains("extra"), "{e}");
        let e = err("[[pins]]\nspki = []\n");
        assert!(e.contains("host"), "{e}");
    }

    #[test]
    fn duplicate_pins_count_once() {
        let p = compile(&format!(
            "[[pins]]\nhost = \"x.example\"\nspki = [\"{PIN_A}\", \" {PIN_A}\"]\n"
        ))
        .unwrap();
        assert_eq!(p.pins[0].spki.len(), 1);
    }

    #[test]
    fn snippets_are_valid_pins_config() {
        let text = snippet(
            "api.stripe.com",
            &[(PIN_A.to_string(), "leaf: CN=api.stripe.com")],
        );
        assert!(text.contains("backup key"), "{text}");
        let p = compile(&text).unwrap();
        assert!(p.pins_for("api.stripe.com").unwrap().holds(PIN_A));
        assert!(pinnable_name("api.stripe.com") && pinnable_name("10.0.0.1"));
        assert!(!pinnable_name("*.x.example") && !pinnable_name("a\"b"));
    }
}
