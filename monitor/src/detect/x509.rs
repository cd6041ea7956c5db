//! X.509 verification of the certificates a TLS server sent, independent of what the client's
//! OpenSSL concluded, so every TLS finding can say *why* a certificate is unacceptable
//! (self-signed, unknown CA, expired, wrong name) and a `tls_handshake` event can describe the
//! peer certificate (subject, issuer, SANs, validity, SPKI pin).
//!
//! Parsing for display uses `x509-parser`; trust decisions use `rustls-webpki` (chain building,
//! signatures, validity, EKU, RFC 6125 name matching). Input is what the uprobes captured: DER
//! certificates, leaf first, intermediates in any order, possibly duplicated or including the
//! root. Everything here is pure except loading trust anchors from PEM files.
//!
//! Problem precedence (the first is `Verification::chain`, the rest `Verification::chain_also`):
//! 1. `Malformed`: nothing else can be trusted about the certificate.
//! 2. `SelfSigned`, `UnknownIssuer`, `BadSignature`: nobody trusted vouches for the key, so an
//!    interceptor could have minted it; renewing the certificate would not fix that.
//! 3. `Expired`, `NotYetValid`: found by checking the leaf's dates directly, and the chain is
//!    then checked at a moment inside the leaf's validity, so an expired certificate from an
//!    unknown CA reports both (unknown issuer first).
//! 4. `NotForServerAuth`, then `Other`.
//!
//! The name check (`Verification::name`) always uses the leaf, whether or not the chain is
//! trusted, so "trusted chain, wrong name" and "untrusted chain, wrong name" are both visible.

use std::collections::HashSet;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use base64::Engine as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use serde::Serialize;
use sha2::{Digest, Sha256};
use webpki::{EndEntityCert, ExtendedKeyUsageValidator, KeyPurposeIdIter, KeyUsage};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

/// At most this many captured certificates are considered (leaf included); the rest are ignored.
/// Real chains have 2-4; the cap bounds path-building work on hostile input.
pub const MAX_CHAIN: usize = 16;

/// System CA bundles, in the order they are tried: Debian/Ubuntu, RHEL/Fedora, SUSE, Alpine.
pub const SYSTEM_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Notes about skipped PEM entries are kept up to this many, so a huge broken file cannot grow
/// the store without bound.
const MAX_NOTES: usize = 64;

/// Trust anchors: the system store plus CAs from the agent's config.
#[derive(Clone, Default)]
pub struct TrustStore {
    anchors: Vec<TrustAnchor<'static>>,
    /// SHA-256 over subject and key of every anchor: skips duplicates and recognises a leaf that
    /// is itself an anchor (a pinned self-signed server certificate).
    keys: HashSet<[u8; 32]>,
    notes: Vec<String>,
}

impl fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustStore")
            .field("anchors", &self.anchors.len())
            .field("notes", &self.notes)
            .finish()
    }
}

impl TrustStore {
    pub fn empty() -> Self {
        Self::default()
    }

    /// The system bundle: the first of [`SYSTEM_BUNDLES`] that is readable and holds at least one
    /// certificate; an error naming every path tried if none does.
    pub fn system() -> anyhow::Result<Self> {
        Self::first_bundle(SYSTEM_BUNDLES.iter().map(Path::new))
    }

    fn first_bundle<'a>(paths: impl IntoIterator<Item = &'a Path>) -> anyhow::Result<Self> {
        let mut tried = Vec::new();
        for path in paths {
            let mut store = Self::empty();
            match store.add_pem_file(path) {
                Ok(_) => return Ok(store),
                Err(err) => tried.push(format!("{err:#}")),
            }
        }
        bail!("no system CA bundle found: {}", tried.join("; "))
    }

    /// Add every certificate in a PEM file (config-given CAs) and return how many were read.
    /// Malformed entries are skipped and described in [`TrustStore::notes`]; the file is an
    /// error only if it cannot be read or holds no usable certificate.
    pub fn add_pem_file(&mut self, path: &Path) -> anyhow::Result<usize> {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        self.add_pem_from(&pem, &path.display().to_string())
    }

    /// Like [`TrustStore::add_pem_file`], for PEM text already in memory.
    pub fn add_pem(&mut self, pem: &[u8]) -> anyhow::Result<usize> {
        self.add_pem_from(pem, "PEM")
    }

    fn add_pem_from(&mut self, pem: &[u8], source: &str) -> anyhow::Result<usize> {
        let mut added = 0;
        let mut skipped = Vec::new();
        // Only CERTIFICATE sections are yielded; keys and other sections are passed over.
        for (index, item) in CertificateDer::pem_slice_iter(pem).enumerate() {
            let result = item
                .map_err(|err| anyhow::anyhow!("{err}"))
                .and_then(|der| self.add_der(&der));
            match result {
                Ok(()) => added += 1,
                Err(err) => skipped.push(format!("{source}: entry {}: {err:#}", index + 1)),
            }
        }
        if added == 0 {
            if skipped.is_empty() {
                bail!("{source}: no certificates");
            }
            bail!(
                "{source}: no usable certificates ({} malformed: {})",
                skipped.len(),
                skipped.join("; ")
            );
        }
        let room = MAX_NOTES.saturating_sub(self.notes.len());
        self.notes.extend(skipped.into_iter().take(room));
        Ok(added)
    }

    /// Add one DER certificate as a trust anchor (duplicates are accepted and stored once).
    pub fn add_der(&mut self, der: &[u8]) -> anyhow::Result<()> {
        let cert = CertificateDer::from(der);
        let anchor = webpki::anchor_from_trusted_cert(&cert)
            .map_err(|err| anyhow::anyhow!("not a usable CA certificate: {}", describe(&err)))?;
        if self.keys.insert(anchor_key(&anchor)) {
            self.anchors.push(anchor.to_owned());
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// Malformed PEM entries skipped while loading (the first few), for `doctor` and status lines.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Is this certificate itself one of the anchors (same subject and key)?
    pub fn holds(&self, der: &[u8]) -> bool {
        let cert = CertificateDer::from(der);
        webpki::anchor_from_trusted_cert(&cert)
            .is_ok_and(|anchor| self.keys.contains(&anchor_key(&anchor)))
    }
}

fn anchor_key(anchor: &TrustAnchor<'_>) -> [u8; 32] {
    let subject = anchor.subject.as_ref();
    let mut hash = Sha256::new();
    hash.update((subject.len() as u64).to_be_bytes());
    hash.update(subject);
    hash.update(anchor.subject_public_key_info.as_ref());
    hash.finalize().into()
}

/// What a responder needs to know about a certificate (serialized into JSON events).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertSummary {
    /// RFC 4514-style distinguished name as x509-parser prints it ("CN=api.test, O=Example").
    pub subject: String,
    pub issuer: String,
    /// DNS names and IP addresses from subjectAltName, in certificate order.
    pub sans: Vec<String>,
    /// RFC 3339 UTC.
    pub not_before: String,
    pub not_after: String,
    /// Upper-case hex without separators or sign padding, as `openssl x509 -serial` prints it.
    pub serial: String,
    /// "sha256/" + base64(SHA-256 of the DER SubjectPublicKeyInfo): the HPKP/curl pin format.
    pub spki_sha256: String,
    /// Subject equals issuer and the signature verifies with the certificate's own key.
    pub self_signed: bool,
}

/// Why a certificate is unusable as given, or why a name cannot be checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertError {
    /// The bytes are not one DER X.509 certificate.
    Malformed(String),
    /// The server name is neither a DNS name nor an IP address literal.
    InvalidName(String),
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertError::Malformed(detail) => write!(f, "malformed certificate: {detail}"),
            CertError::InvalidName(name) => {
                write!(f, "{name:?} is neither a DNS name nor an IP address")
            }
        }
    }
}

impl std::error::Error for CertError {}

/// Describe one DER certificate for events and findings.
pub fn summarize(der: &[u8]) -> Result<CertSummary, CertError> {
    Ok(summary_of(der, &parse(der)?))
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, CertError> {
    if der.is_empty() {
        return Err(CertError::Malformed("empty".into()));
    }
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], cert)) => Ok(cert),
        Ok((rest, _)) => Err(CertError::Malformed(format!(
            "{} bytes after the certificate",
            rest.len()
        ))),
        Err(err) => Err(CertError::Malformed(err.to_string())),
    }
}

fn summary_of(der: &[u8], cert: &X509Certificate<'_>) -> CertSummary {
    let validity = cert.validity();
    CertSummary {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        sans: sans(cert),
        not_before: rfc3339(validity.not_before.timestamp()),
        not_after: rfc3339(validity.not_after.timestamp()),
        serial: serial_hex(cert.raw_serial()),
        spki_sha256: spki_pin(cert.public_key().raw),
        self_signed: self_signed(der, cert),
    }
}

fn sans(cert: &X509Certificate<'_>) -> Vec<String> {
    // A malformed or duplicated SAN extension yields no names rather than no summary.
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(dns.to_string()),
            GeneralName::IPAddress(ip) => ip_string(ip),
            _ => None,
        })
        .collect()
}

fn ip_string(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes)
            .ok()
            .map(|b| Ipv4Addr::from(b).to_string()),
        16 => <[u8; 16]>::try_from(bytes)
            .ok()
            .map(|b| Ipv6Addr::from(b).to_string()),
        _ => None,
    }
}

fn serial_hex(raw: &[u8]) -> String {
    let start = raw.iter().position(|&b| b != 0).unwrap_or(raw.len());
    let digits: String = raw[start..].iter().map(|b| format!("{b:02X}")).collect();
    if digits.is_empty() {
        "00".into()
    } else {
        digits
    }
}

/// The HPKP/curl pin of a DER SubjectPublicKeyInfo.
pub fn spki_pin(spki_der: &[u8]) -> String {
    let digest = Sha256::digest(spki_der);
    format!(
        "sha256/{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

fn self_signed(der: &[u8], cert: &X509Certificate<'_>) -> bool {
    if cert.subject().as_raw() != cert.issuer().as_raw() {
        return false;
    }
    let der = CertificateDer::from(der);
    let Ok(own) = EndEntityCert::try_from(&der) else {
        return false;
    };
    let tbs = cert.tbs_certificate.as_ref();
    let signature = cert.signature_value.data.as_ref();
    // Trying each algorithm is cheap: a mismatched key type is rejected before any arithmetic,
    // and only a genuine signature by this key over this TBS can pass.
    webpki::ALL_VERIFICATION_ALGS
        .iter()
        .any(|alg| own.verify_signature(*alg, tbs, signature).is_ok())
}

/// RFC 3339 UTC, second precision, for any time a certificate can hold (years 0000-9999).
/// Done by hand because humantime panics before 1970 and certificates can predate it.
fn rfc3339(secs: i64) -> String {
    let secs = secs.clamp(-62_167_219_200, 253_402_300_799);
    let (days, second_of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

fn unix_secs(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

fn unix_time(secs: i64) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(secs.max(0).unsigned_abs()))
}

fn unix_rfc3339(time: &UnixTime) -> String {
    rfc3339(i64::try_from(time.as_secs()).unwrap_or(i64::MAX))
}

/// Why a chain or a name is not acceptable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// The leaf signs itself and is not a trust anchor.
    SelfSigned,
    /// The chain ends at an issuer the store does not hold ([`Verification::untrusted_issuer`]).
    UnknownIssuer,
    Expired {
        not_after: String,
    },
    NotYetValid {
        not_before: String,
    },
    /// The leaf does not cover the server name the client asked for.
    NameMismatch {
        name: String,
    },
    /// A signature in the chain does not verify with its issuer's key.
    BadSignature,
    /// An extended key usage in the chain excludes TLS server authentication.
    NotForServerAuth,
    Malformed {
        detail: String,
    },
    Other {
        detail: String,
    },
}

impl Problem {
    /// Lower comes first; see the module documentation.
    fn precedence(&self) -> u8 {
        match self {
            Problem::Malformed { .. } => 0,
            Problem::SelfSigned | Problem::UnknownIssuer | Problem::BadSignature => 1,
            Problem::Expired { .. } | Problem::NotYetValid { .. } => 2,
            Problem::NotForServerAuth => 3,
            Problem::Other { .. } => 4,
            Problem::NameMismatch { .. } => 5,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::SelfSigned => write!(f, "self-signed certificate"),
            Problem::UnknownIssuer => write!(f, "issuer not trusted"),
            Problem::Expired { not_after } => write!(f, "expired on {not_after}"),
            Problem::NotYetValid { not_before } => write!(f, "not valid before {not_before}"),
            Problem::NameMismatch { name } => write!(f, "certificate not valid for {name}"),
            Problem::BadSignature => write!(f, "certificate signature does not verify"),
            Problem::NotForServerAuth => {
                write!(f, "certificate not allowed for server authentication")
            }
            Problem::Malformed { detail } => write!(f, "malformed certificate: {detail}"),
            Problem::Other { detail } => write!(f, "{detail}"),
        }
    }
}

/// The outcome of [`verify`].
///
/// JSON layout: `chain` is `{"ok": true}` or `{"ok": false, "problem": "expired", "not_after":
/// "..."}` (the problem's fields flattened in); `name` is the same shape, or `null` when no name
/// was checked; `chain_also` is an array of problems; `untrusted_issuer` a string or `null`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// Chain to a trusted anchor, time validity, signatures and key usage, ignoring the name.
    /// The error is the most useful problem (see the module documentation for precedence).
    #[serde(serialize_with = "outcome::chain")]
    pub chain: Result<(), Problem>,
    /// Further chain problems behind `chain`'s, in precedence order, e.g. the expiry of a
    /// certificate from an unknown CA. Empty when `chain` is `Ok`.
    pub chain_also: Vec<Problem>,
    /// `None` when no name was given to check.
    #[serde(serialize_with = "outcome::name")]
    pub name: Option<Result<(), Problem>>,
    /// With [`Problem::UnknownIssuer`]: the issuer the chain stops at, i.e. the CA that would
    /// have to be trusted (or that is impersonated).
    pub untrusted_issuer: Option<String>,
    pub leaf: Option<CertSummary>,
}

mod outcome {
    use super::Problem;
    use serde::{Serialize, Serializer};

    #[derive(Serialize)]
    struct Outcome<'a> {
        ok: bool,
        #[serde(flatten)]
        problem: Option<&'a Problem>,
    }

    impl<'a> From<&'a Result<(), Problem>> for Outcome<'a> {
        fn from(result: &'a Result<(), Problem>) -> Self {
            Outcome {
                ok: result.is_ok(),
                problem: result.as_ref().err(),
            }
        }
    }

    pub fn chain<S: Serializer>(chain: &Result<(), Problem>, s: S) -> Result<S::Ok, S::Error> {
        Outcome::from(chain).serialize(s)
    }

    pub fn name<S: Serializer>(
        name: &Option<Result<(), Problem>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        name.as_ref().map(Outcome::from).serialize(s)
    }
}

impl Verification {
    /// Chain ok and (name ok or no name given).
    pub fn trusted(&self) -> bool {
        self.chain.is_ok() && !matches!(self.name, Some(Err(_)))
    }

    /// Every problem, chain first (in precedence order), then the name's.
    pub fn problems(&self) -> Vec<&Problem> {
        let mut all: Vec<&Problem> = self.chain.as_ref().err().into_iter().collect();
        all.extend(&self.chain_also);
        if let Some(Err(problem)) = &self.name {
            // An unparsable leaf is reported once, not again for the name.
            if !all.contains(&problem) {
                all.push(problem);
            }
        }
        all
    }

    /// One short human sentence, e.g. "self-signed certificate", "issuer not trusted (CN=Test
    /// CA)", "certificate for other.test, not api.test", "expired on 2024-01-01T00:00:00Z";
    /// several problems are joined with "; ". `None` when trusted.
    pub fn reason(&self) -> Option<String> {
        let parts: Vec<String> = self
            .problems()
            .into_iter()
            .map(|problem| self.describe(problem))
            .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    fn describe(&self, problem: &Problem) -> String {
        match (problem, &self.untrusted_issuer, &self.leaf) {
            (Problem::UnknownIssuer, Some(issuer), _) => format!("issuer not trusted ({issuer})"),
            (Problem::NameMismatch { name }, _, Some(leaf)) => {
                format!("certificate for {}, not {name}", presented_names(leaf))
            }
            _ => problem.to_string(),
        }
    }
}

/// The names a certificate claims, shortened for a sentence.
fn presented_names(leaf: &CertSummary) -> String {
    const SHOWN: usize = 3;
    if leaf.sans.is_empty() {
        return if leaf.subject.is_empty() {
            "no name".into()
        } else {
            leaf.subject.clone()
        };
    }
    let mut text = leaf.sans[..leaf.sans.len().min(SHOWN)].join(", ");
    if leaf.sans.len() > SHOWN {
        text.push_str(&format!(" (+{} more)", leaf.sans.len() - SHOWN));
    }
    text
}

/// Verify a captured chain against `store` at time `now`.
///
/// `chain`: DER certificates as captured, leaf first; intermediates may be out of order,
/// duplicated, or include the root (only the first [`MAX_CHAIN`] are considered, and ones that do
/// not parse are ignored). `server_name`: DNS name or IP literal the client asked for.
pub fn verify(
    chain: &[Vec<u8>],
    server_name: Option<&str>,
    store: &TrustStore,
    now: SystemTime,
) -> Verification {
    let malformed = |detail: String, leaf: Option<CertSummary>| {
        let problem = Problem::Malformed { detail };
        Verification {
            chain: Err(problem.clone()),
            chain_also: Vec::new(),
            name: server_name.map(|_| Err(problem)),
            untrusted_issuer: None,
            leaf,
        }
    };
    let Some(leaf_der) = chain.first() else {
        return malformed("no certificates".into(), None);
    };
    let leaf = match parse(leaf_der) {
        Ok(leaf) => leaf,
        Err(CertError::Malformed(detail) | CertError::InvalidName(detail)) => {
            return malformed(detail, None)
        }
    };
    let summary = summary_of(leaf_der, &leaf);
    let leaf_cert = CertificateDer::from(leaf_der.as_slice());
    let ee = match EndEntityCert::try_from(&leaf_cert) {
        Ok(ee) => ee,
        Err(err) => return malformed(describe(&err), Some(summary)),
    };

    let intermediates = intermediates(leaf_der, chain);
    let mut problems = chain_problems(&leaf, &summary, &ee, &intermediates, store, unix_secs(now));
    let untrusted_issuer = problems
        .contains(&Problem::UnknownIssuer)
        .then(|| stopping_issuer(&leaf, &intermediates));
    let chain_result = if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.remove(0))
    };

    let name = server_name.map(|name| match check_name(&ee, &leaf, name) {
        Ok(result) => result,
        Err(err) => Err(Problem::Other {
            detail: format!("server name {err}"),
        }),
    });

    Verification {
        chain: chain_result,
        chain_also: problems,
        name,
        untrusted_issuer,
        leaf: Some(summary),
    }
}

/// The captured certificates after the leaf, capped, without duplicates, copies of the leaf, or
/// entries webpki cannot parse (those would otherwise mask "unknown issuer" with a DER error).
fn intermediates<'a>(leaf_der: &[u8], chain: &'a [Vec<u8>]) -> Vec<CertificateDer<'a>> {
    let mut seen: HashSet<&[u8]> = HashSet::from([leaf_der]);
    chain
        .iter()
        .take(MAX_CHAIN)
        .skip(1)
        .map(Vec::as_slice)
        .filter(|der| seen.insert(der))
        .map(CertificateDer::from)
        .filter(|der| EndEntityCert::try_from(der).is_ok())
        .collect()
}

/// Accepts any extended key usage: used to learn whether the chain is trusted once the
/// server-auth check already failed.
struct AnyUsage;

impl ExtendedKeyUsageValidator for AnyUsage {
    fn validate(&self, _: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        Ok(())
    }
}

fn chain_problems(
    leaf: &X509Certificate<'_>,
    summary: &CertSummary,
    ee: &EndEntityCert<'_>,
    intermediates: &[CertificateDer<'_>],
    store: &TrustStore,
    now: i64,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let (not_before, not_after) = (
        leaf.validity().not_before.timestamp(),
        leaf.validity().not_after.timestamp(),
    );
    // webpki stops at the first failed check and checks dates before issuers, so the leaf's dates
    // are judged here and the chain at a moment when the leaf is valid.
    let trust_time = if now < not_before {
        problems.push(Problem::NotYetValid {
            not_before: summary.not_before.clone(),
        });
        midpoint(not_before, not_after)
    } else if now > not_after {
        problems.push(Problem::Expired {
            not_after: summary.not_after.clone(),
        });
        midpoint(not_before, not_after)
    } else {
        now
    };

    if store.holds(ee.der().as_ref()) {
        // A configured anchor used directly as the server certificate (a pinned self-signed
        // certificate): trusted as OpenSSL trusts it, whatever its CA flag or key usage says.
    } else if summary.self_signed {
        problems.push(Problem::SelfSigned);
    } else {
        let at = unix_time(trust_time);
        match build_path(ee, store, intermediates, at, KeyUsage::server_auth()) {
            Ok(()) => {}
            Err(err) if is_usage_error(&err) => {
                problems.push(Problem::NotForServerAuth);
                if let Err(err) = build_path(ee, store, intermediates, at, AnyUsage) {
                    problems.push(chain_problem(&err));
                }
            }
            Err(err) => problems.push(chain_problem(&err)),
        }
    }
    problems.sort_by_key(Problem::precedence);
    problems.dedup();
    problems
}

fn midpoint(from: i64, to: i64) -> i64 {
    from.saturating_add(to.saturating_sub(from) / 2)
}

fn build_path(
    ee: &EndEntityCert<'_>,
    store: &TrustStore,
    intermediates: &[CertificateDer<'_>],
    at: UnixTime,
    usage: impl ExtendedKeyUsageValidator,
) -> Result<(), webpki::Error> {
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &store.anchors,
        intermediates,
        at,
        usage,
        None,
        None,
    )
    .map(|_| ())
}

#[allow(deprecated)] // RequiredEkuNotFound is deprecated, matched so no path slips through.
fn is_usage_error(err: &webpki::Error) -> bool {
    matches!(
        err,
        webpki::Error::RequiredEkuNotFound
            | webpki::Error::RequiredEkuNotFoundContext(_)
            | webpki::Error::EmptyEkuExtension
    )
}

fn chain_problem(err: &webpki::Error) -> Problem {
    use webpki::Error as E;
    match err {
        E::UnknownIssuer => Problem::UnknownIssuer,
        E::CertExpired { not_after, .. } => Problem::Expired {
            not_after: unix_rfc3339(not_after),
        },
        E::CertNotValidYet { not_before, .. } => Problem::NotYetValid {
            not_before: unix_rfc3339(not_before),
        },
        E::InvalidSignatureForPublicKey => Problem::BadSignature,
        err if is_usage_error(err) => Problem::NotForServerAuth,
        E::BadDer
        | E::BadDerTime
        | E::TrailingData(_)
        | E::MalformedExtensions
        | E::ExtensionValueInvalid
        | E::InvalidCertValidity
        | E::InvalidSerialNumber
        | E::UnsupportedCertVersion => Problem::Malformed {
            detail: describe(err),
        },
        err => Problem::Other {
            detail: describe(err),
        },
    }
}

/// webpki's errors print as their Debug form; name the common ones in words.
#[allow(deprecated)] // the context-free variants are still produced by some webpki paths
fn describe(err: &webpki::Error) -> String {
    use webpki::Error as E;
    match err {
        E::BadDer => "invalid DER".into(),
        E::BadDerTime => "invalid or pre-1970 validity time".into(),
        E::TrailingData(_) => "trailing data".into(),
        E::MalformedExtensions | E::ExtensionValueInvalid => "invalid extension".into(),
        E::InvalidCertValidity => "validity period ends before it begins".into(),
        E::InvalidSerialNumber => "invalid serial number".into(),
        E::UnsupportedCertVersion => "unsupported certificate version".into(),
        E::UnsupportedCriticalExtension => "unsupported critical extension".into(),
        E::CaUsedAsEndEntity => "CA certificate used as the server certificate".into(),
        E::EndEntityUsedAsCa => "non-CA certificate used as an issuer".into(),
        E::PathLenConstraintViolated => "chain longer than an issuer allows".into(),
        E::NameConstraintViolation => "name outside an issuer's name constraints".into(),
        E::CertDistrusted => "issuer explicitly distrusted".into(),
        E::MaximumPathDepthExceeded => "chain too long".into(),
        E::MaximumSignatureChecksExceeded
        | E::MaximumPathBuildCallsExceeded
        | E::MaximumNameConstraintComparisonsExceeded => "chain too complex to verify".into(),
        E::UnsupportedSignatureAlgorithm
        | E::UnsupportedSignatureAlgorithmContext(_)
        | E::UnsupportedSignatureAlgorithmForPublicKey
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_)
        | E::SignatureAlgorithmMismatch => "unsupported signature algorithm".into(),
        other => format!("{other:?}"),
    }
}

/// The issuer name at which the chain stops: follow issuer names from the leaf through the
/// captured certificates until one's issuer is not among them (a captured but untrusted root
/// names itself).
fn stopping_issuer(leaf: &X509Certificate<'_>, intermediates: &[CertificateDer<'_>]) -> String {
    let others: Vec<X509Certificate<'_>> = intermediates
        .iter()
        .filter_map(|der| parse(der.as_ref()).ok())
        .collect();
    let mut used = vec![false; others.len()];
    let mut current = leaf;
    loop {
        let issuer = current.issuer().as_raw();
        let next = others
            .iter()
            .enumerate()
            .find(|(i, cert)| !used[*i] && cert.subject().as_raw() == issuer);
        match next {
            // Each step marks one certificate used, so this ends within `others.len()` steps.
            Some((i, cert)) => {
                used[i] = true;
                current = cert;
            }
            None => return current.issuer().to_string(),
        }
    }
}

/// The SPKI pin of the trust anchor in `store` that completes `chain` (leaf first): the root
/// a server does not send, for pin checks. Checked for any key usage, at a moment inside the
/// leaf's validity. `None` when no anchor of `store` verifies the chain.
pub fn anchor_pin(chain: &[Vec<u8>], store: &TrustStore, now: SystemTime) -> Option<String> {
    let leaf_der = chain.first()?;
    let leaf = parse(leaf_der).ok()?;
    let (from, to) = (
        leaf.validity().not_before.timestamp(),
        leaf.validity().not_after.timestamp(),
    );
    let now = unix_secs(now);
    let at = if now < from || now > to {
        midpoint(from, to)
    } else {
        now
    };
    let leaf_cert = CertificateDer::from(leaf_der.as_slice());
    let ee = EndEntityCert::try_from(&leaf_cert).ok()?;
    let intermediates = intermediates(leaf_der, chain);
    let path = ee
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &store.anchors,
            &intermediates,
            unix_time(at),
            AnyUsage,
            None,
            None,
        )
        .ok()?;
    Some(spki_pin(webpki::spki_for_anchor(path.anchor()).as_ref()))
}

/// Does the leaf certificate cover this DNS name or IP literal (wildcards per RFC 6125 as webpki
/// does; see `check_name` for the one fallback)?
pub fn name_matches(leaf_der: &[u8], name: &str) -> Result<bool, CertError> {
    let leaf = parse(leaf_der)?;
    let der = CertificateDer::from(leaf_der);
    let ee = EndEntityCert::try_from(&der).map_err(|err| CertError::Malformed(describe(&err)))?;
    match check_name(&ee, &leaf, name)? {
        Ok(()) => Ok(true),
        Err(Problem::NameMismatch { .. }) => Ok(false),
        Err(problem) => Err(CertError::Malformed(problem.to_string())),
    }
}

/// webpki's name check, plus the fallback OpenSSL's `X509_check_host` (and so Python, curl and
/// Node) applies: a certificate without DNS names in subjectAltName is matched on its subject
/// CN. Without it, legacy CN-only certificates that the client rightly accepted would be reported
/// as name mismatches.
fn check_name(
    ee: &EndEntityCert<'_>,
    leaf: &X509Certificate<'_>,
    name: &str,
) -> Result<Result<(), Problem>, CertError> {
    let reference = server_name(name)?;
    match ee.verify_is_valid_for_subject_name(&reference) {
        Ok(()) => Ok(Ok(())),
        Err(webpki::Error::CertNotValidForName(_)) => {
            let cn_match = match &reference {
                ServerName::DnsName(dns) => !has_dns_san(leaf) && cn_matches(leaf, dns.as_ref()),
                _ => false,
            };
            Ok(if cn_match {
                Ok(())
            } else {
                Err(Problem::NameMismatch {
                    name: name.to_string(),
                })
            })
        }
        Err(err) => Ok(Err(Problem::Malformed {
            detail: format!("subjectAltName: {}", describe(&err)),
        })),
    }
}

/// Parse what the client asked for: a DNS name (a trailing dot is dropped) or an IP literal
/// (IPv6 possibly in brackets).
fn server_name(name: &str) -> Result<ServerName<'static>, CertError> {
    let trimmed = name.trim();
    let trimmed = trimmed.strip_suffix('.').unwrap_or(trimmed);
    let trimmed = trimmed
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(trimmed);
    ServerName::try_from(trimmed)
        .map(|name| name.to_owned())
        .map_err(|_| CertError::InvalidName(name.to_string()))
}

fn has_dns_san(leaf: &X509Certificate<'_>) -> bool {
    match leaf.subject_alternative_name() {
        Ok(Some(ext)) => ext
            .value
            .general_names
            .iter()
            .any(|name| matches!(name, GeneralName::DNSName(_))),
        Ok(None) => false,
        // Unreadable SANs: do not fall back to the CN, so nothing is accepted on a guess.
        Err(_) => true,
    }
}

fn cn_matches(leaf: &X509Certificate<'_>, reference: &str) -> bool {
    leaf.subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .any(|cn| dns_pattern_matches(cn, reference))
}

/// Case-insensitive DNS comparison where a presented `*.` label stands for exactly one
/// non-empty leftmost label, and only above at least two labels (`*.example.com`, not `*.com`).
fn dns_pattern_matches(presented: &str, reference: &str) -> bool {
    let presented = presented.trim_end_matches('.').to_ascii_lowercase();
    let reference = reference.trim_end_matches('.').to_ascii_lowercase();
    match presented.strip_prefix("*.") {
        Some(base) => {
            !base.contains('*')
                && base.contains('.')
                && reference
                    .split_once('.')
                    .is_some_and(|(first, rest)| !first.is_empty() && rest == base)
        }
        None => !presented.contains('*') && !presented.is_empty() && presented == reference,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        date_time_ymd, BasicConstraints, CertificateParams, DistinguishedName, DnType,
        ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, PublicKeyData, SerialNumber,
    };
    use std::path::PathBuf;

    /// 2025-06-01T00:00:00Z, inside every test certificate's validity unless a test says otherwise.
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_748_736_000)
    }

    fn at(year: i32, month: u8, day: u8) -> SystemTime {
        let secs = date_time_ymd(year, month, day).unix_timestamp();
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    }

    fn params(cn: &str, sans: &[&str]) -> CertificateParams {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.not_before = date_time_ymd(2024, 1, 1);
        params.not_after = date_time_ymd(2030, 1, 1);
        params
    }

    /// A CA (root or intermediate) that can sign further certificates.
    struct Ca {
        params: CertificateParams,
        key: KeyPair,
        der: Vec<u8>,
    }

    impl Ca {
        fn root(cn: &str) -> Ca {
            let mut params = params(cn, &[]);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let key = KeyPair::generate().unwrap();
            let der = params.self_signed(&key).unwrap().der().to_vec();
            Ca { params, key, der }
        }

        fn intermediate(&self, cn: &str) -> Ca {
            let mut params = params(cn, &[]);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let key = KeyPair::generate().unwrap();
            let der = self.sign(&params, &key);
            Ca { params, key, der }
        }

        fn sign(&self, params: &CertificateParams, key: &KeyPair) -> Vec<u8> {
            let issuer = Issuer::from_params(&self.params, &self.key);
            params.signed_by(key, &issuer).unwrap().der().to_vec()
        }

        fn leaf(&self, sans: &[&str]) -> Vec<u8> {
            self.sign(&params(sans[0], sans), &KeyPair::generate().unwrap())
        }
    }

    fn self_signed_leaf(sans: &[&str]) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        params(sans[0], sans)
            .self_signed(&key)
            .unwrap()
            .der()
            .to_vec()
    }

    fn store_of(anchors: &[&[u8]]) -> TrustStore {
        let mut store = TrustStore::empty();
        for der in anchors {
            store.add_der(der).unwrap();
        }
        store
    }

    fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("egress-monitor-x509-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn pem(der: &[u8]) -> String {
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|line| std::str::from_utf8(line).unwrap())
            .collect();
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        )
    }

    #[test]
    fn self_signed_leaf_is_reported_as_self_signed_not_unknown_issuer() {
        let leaf = self_signed_leaf(&["api.test"]);
        let v = verify(&[leaf], Some("api.test"), &TrustStore::empty(), now());
        assert_eq!(v.chain, Err(Problem::SelfSigned));
        assert_eq!(v.name, Some(Ok(())));
        assert!(!v.trusted());
        assert_eq!(v.reason().as_deref(), Some("self-signed certificate"));
        assert_eq!(v.untrusted_issuer, None);
        assert!(v.leaf.unwrap().self_signed);
    }

    #[test]
    fn self_signed_leaf_configured_as_anchor_is_trusted() {
        let leaf = self_signed_leaf(&["api.test"]);
        let store = store_of(&[&leaf]);
        let v = verify(&[leaf], Some("api.test"), &store, now());
        assert_eq!(v.chain, Ok(()));
        assert!(v.trusted());
        assert_eq!(v.reason(), None);
        assert!(v.problems().is_empty());
    }

    #[test]
    fn self_signed_ca_flagged_server_certificate_like_openssl_req_x509() {
        // `openssl req -x509` marks its output CA:TRUE; webpki alone would call it a CA misused
        // as a server certificate rather than self-signed.
        let mut params = params("api.test", &["api.test"]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let leaf = params
            .self_signed(&KeyPair::generate().unwrap())
            .unwrap()
            .der()
            .to_vec();
        let untrusted = verify(
            std::slice::from_ref(&leaf),
            None,
            &TrustStore::empty(),
            now(),
        );
        assert_eq!(untrusted.chain, Err(Problem::SelfSigned));
        let trusted = verify(
            std::slice::from_ref(&leaf),
            Some("api.test"),
            &store_of(&[&leaf]),
            now(),
        );
        assert!(trusted.trusted(), "{trusted:?}");
    }

    #[test]
    fn leaf_from_unknown_ca_names_the_issuer() {
        let ca = Ca::root("Test CA");
        let leaf = ca.leaf(&["api.test"]);
        let v = verify(&[leaf], Some("api.test"), &TrustStore::empty(), now());
        assert_eq!(v.chain, Err(Problem::UnknownIssuer));
        assert!(v.chain_also.is_empty());
        assert_eq!(v.untrusted_issuer.as_deref(), Some("CN=Test CA"));
        assert_eq!(
            v.reason().as_deref(),
            Some("issuer not trusted (CN=Test CA)")
        );
        assert!(!v.leaf.unwrap().self_signed);
    }

    #[test]
    fn leaf_from_configured_ca_is_trusted() {
        let ca = Ca::root("Test CA");
        let leaf = ca.leaf(&["api.test"]);
        let v = verify(&[leaf], Some("api.test"), &store_of(&[&ca.der]), now());
        assert_eq!(v.chain, Ok(()));
        assert_eq!(v.name, Some(Ok(())));
        assert!(v.trusted());
        assert_eq!(v.reason(), None);
    }

    #[test]
    fn captured_but_untrusted_root_is_named_as_the_untrusted_issuer() {
        let ca = Ca::root("Test CA");
        let leaf = ca.leaf(&["api.test"]);
        let v = verify(&[leaf, ca.der.clone()], None, &TrustStore::empty(), now());
        assert_eq!(v.chain, Err(Problem::UnknownIssuer));
        assert_eq!(v.untrusted_issuer.as_deref(), Some("CN=Test CA"));
    }

    #[test]
    fn wrong_name_with_trusted_chain_is_a_name_mismatch_only() {
        let ca = Ca::root("Test CA");
        let leaf = ca.leaf(&["other.test"]);
        let v = verify(&[leaf], Some("api.test"), &store_of(&[&ca.der]), now());
        assert_eq!(v.chain, Ok(()));
        assert_eq!(
            v.name,
            Some(Err(Problem::NameMismatch {
                name: "api.test".into()
            }))
        );
        assert!(!v.trusted());
        assert_eq!(
            v.reason().as_deref(),
            Some("certificate for other.test, not api.test")
        );
    }

    #[test]
    fn wrong_name_with_untrusted_chain_reports_both() {
        let leaf = self_signed_leaf(&["other.test", "www.other.test"]);
        let v = verify(&[leaf], Some("api.test"), &TrustStore::empty(), now());
        assert_eq!(v.chain, Err(Problem::SelfSigned));
        assert_eq!(
            v.problems(),
            vec![
                &Problem::SelfSigned,
                &Problem::NameMismatch {
                    name: "api.test".into()
                }
            ]
        );
        assert_eq!(
            v.reason().as_deref(),
            Some(
                "self-signed certificate; certificate for other.test, www.other.test, not api.test"
            )
        );
    }

    #[test]
    fn no_server_name_means_no_name_result() {
        let leaf = self_signed_leaf(&["api.test"]);
        let store = store_of(&[&leaf]);
        let v = verify(&[leaf], None, &store, now());
        assert_eq!(v.name, None);
        assert!(v.trusted());
    }

    #[test]
    fn wildcard_covers_exactly_one_label() {
        let leaf = self_signed_leaf(&["*.api.test"]);
        assert_eq!(name_matches(&leaf, "eu.api.test"), Ok(true));
        assert_eq!(name_matches(&leaf, "EU.Api.Test"), Ok(true));
        assert_eq!(name_matches(&leaf, "api.test"), Ok(false));
        assert_eq!(name_matches(&leaf, "a.eu.api.test"), Ok(false));
        assert_eq!(name_matches(&leaf, "eu.api.test."), Ok(true));
        let v = verify(
            std::slice::from_ref(&leaf),
            Some("eu.api.test"),
            &store_of(&[&leaf]),
            now(),
        );
        assert!(v.trusted());
    }

    #[test]
    fn ip_san_matches_only_that_address() {
        let leaf = self_signed_leaf(&["10.0.0.1", "::1"]);
        assert_eq!(name_matches(&leaf, "10.0.0.1"), Ok(true));
        assert_eq!(name_matches(&leaf, "10.0.0.2"), Ok(false));
        assert_eq!(name_matches(&leaf, "::1"), Ok(true));
        assert_eq!(name_matches(&leaf, "[::1]"), Ok(true));
        assert_eq!(name_matches(&leaf, "api.test"), Ok(false));
        assert_eq!(summarize(&leaf).unwrap().sans, vec!["10.0.0.1", "::1"]);
        let v = verify(
            std::slice::from_ref(&leaf),
            Some("10.0.0.2"),
            &store_of(&[&leaf]),
            now(),
        );
        assert_eq!(
            v.reason().as_deref(),
            Some("certificate for 10.0.0.1, ::1, not 10.0.0.2")
        );
    }

    #[test]
    fn cn_only_certificate_matches_on_cn_like_openssl() {
        let key = KeyPair::generate().unwrap();
        let legacy = params("legacy.test", &[]).self_signed(&key).unwrap();
        assert_eq!(name_matches(legacy.der(), "legacy.test"), Ok(true));
        assert_eq!(name_matches(legacy.der(), "other.test"), Ok(false));
        // With any DNS SAN present, the CN is not consulted.
        let modern = params("legacy.test", &["modern.test"])
            .self_signed(&key)
            .unwrap();
        assert_eq!(name_matches(modern.der(), "legacy.test"), Ok(false));
    }

    #[test]
    fn invalid_server_name_is_an_error_not_a_mismatch() {
        let leaf = self_signed_leaf(&["api.test"]);
        assert!(matches!(
            name_matches(&leaf, "not a name"),
            Err(CertError::InvalidName(_))
        ));
        let v = verify(&[leaf], Some(""), &TrustStore::empty(), now());
        assert!(matches!(v.name, Some(Err(Problem::Other { .. }))));
    }

    #[test]
    fn expired_leaf_reports_its_not_after() {
        let ca = Ca::root("Test CA");
        let mut expired = params("api.test", &["api.test"]);
        expired.not_before = date_time_ymd(2023, 1, 1);
        expired.not_after = date_time_ymd(2024, 1, 1);
        let leaf = ca.sign(&expired, &KeyPair::generate().unwrap());
        let store = store_of(&[&ca.der]);

        let v = verify(std::slice::from_ref(&leaf), Some("api.test"), &store, now());
        assert_eq!(
            v.chain,
            Err(Problem::Expired {
                not_after: "2024-01-01T00:00:00Z".into()
            })
        );
        assert!(v.chain_also.is_empty());
        assert_eq!(v.name, Some(Ok(())));
        assert_eq!(
            v.reason().as_deref(),
            Some("expired on 2024-01-01T00:00:00Z")
        );
        // The same certificate was fine while it was valid.
        assert!(verify(&[leaf], Some("api.test"), &store, at(2023, 6, 1)).trusted());
    }

    #[test]
    fn not_yet_valid_leaf_reports_its_not_before() {
        let ca = Ca::root("Test CA");
        let mut future = params("api.test", &["api.test"]);
        future.not_before = date_time_ymd(2026, 1, 1);
        let leaf = ca.sign(&future, &KeyPair::generate().unwrap());
        let v = verify(&[leaf], None, &store_of(&[&ca.der]), now());
        assert_eq!(
            v.chain,
            Err(Problem::NotYetValid {
                not_before: "2026-01-01T00:00:00Z".into()
            })
        );
    }

    #[test]
    fn expired_leaf_from_unknown_ca_reports_issuer_first_then_expiry() {
        let ca = Ca::root("Test CA");
        let mut expired = params("api.test", &["api.test"]);
        expired.not_before = date_time_ymd(2023, 1, 1);
        expired.not_after = date_time_ymd(2024, 1, 1);
        let leaf = ca.sign(&expired, &KeyPair::generate().unwrap());
        let v = verify(&[leaf], None, &TrustStore::empty(), now());
        assert_eq!(v.chain, Err(Problem::UnknownIssuer));
        assert_eq!(
            v.chain_also,
            vec![Problem::Expired {
                not_after: "2024-01-01T00:00:00Z".into()
            }]
        );
        assert_eq!(
            v.reason().as_deref(),
            Some("issuer not trusted (CN=Test CA); expired on 2024-01-01T00:00:00Z")
        );
    }

    #[test]
    fn expired_self_signed_leaf_is_self_signed_then_expired() {
        let mut expired = params("api.test", &["api.test"]);
        expired.not_after = date_time_ymd(2024, 6, 1);
        let leaf = expired
            .self_signed(&KeyPair::generate().unwrap())
            .unwrap()
            .der()
            .to_vec();
        let v = verify(
            std::slice::from_ref(&leaf),
            None,
            &TrustStore::empty(),
            now(),
        );
        assert_eq!(v.chain, Err(Problem::SelfSigned));
        assert!(matches!(v.chain_also[..], [Problem::Expired { .. }]));
        // Trusted as an anchor, only the expiry remains.
        let v = verify(
            std::slice::from_ref(&leaf),
            None,
            &store_of(&[&leaf]),
            now(),
        );
        assert!(matches!(v.chain, Err(Problem::Expired { .. })));
        assert!(v.chain_also.is_empty());
    }

    #[test]
    fn three_level_chain_verifies_in_any_order_with_duplicates() {
        let root = Ca::root("Test Root");
        let intermediate = root.intermediate("Test Intermediate");
        let leaf = intermediate.leaf(&["api.test"]);
        let store = store_of(&[&root.der]);
        let chains = [
            vec![leaf.clone(), intermediate.der.clone()],
            vec![leaf.clone(), intermediate.der.clone(), root.der.clone()],
            vec![leaf.clone(), root.der.clone(), intermediate.der.clone()],
            vec![
                leaf.clone(),
                root.der.clone(),
                intermediate.der.clone(),
                leaf.clone(),
                intermediate.der.clone(),
                b"junk".to_vec(),
                root.der.clone(),
            ],
        ];
        for chain in chains {
            let v = verify(&chain, Some("api.test"), &store, now());
            assert!(v.trusted(), "{} certificates: {v:?}", chain.len());
            assert_eq!(v.leaf.unwrap().issuer, "CN=Test Intermediate");
        }
    }

    #[test]
    fn three_level_chain_missing_intermediate_names_it() {
        let root = Ca::root("Test Root");
        let intermediate = root.intermediate("Test Intermediate");
        let leaf = intermediate.leaf(&["api.test"]);
        let v = verify(
            std::slice::from_ref(&leaf),
            None,
            &store_of(&[&root.der]),
            now(),
        );
        assert_eq!(v.chain, Err(Problem::UnknownIssuer));
        assert_eq!(v.untrusted_issuer.as_deref(), Some("CN=Test Intermediate"));
        // With the intermediate but an untrusted root, the root is what is missing.
        let v = verify(&[leaf, intermediate.der], None, &TrustStore::empty(), now());
        assert_eq!(v.untrusted_issuer.as_deref(), Some("CN=Test Root"));
    }

    #[test]
    fn expired_intermediate_is_reported_as_expired() {
        let root = Ca::root("Test Root");
        let mut params = params("Test Intermediate", &[]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.not_after = date_time_ymd(2025, 1, 1);
        let key = KeyPair::generate().unwrap();
        let intermediate = Ca {
            der: root.sign(&params, &key),
            params,
            key,
        };
        let leaf = intermediate.leaf(&["api.test"]);
        let v = verify(
            &[leaf, intermediate.der],
            None,
            &store_of(&[&root.der]),
            now(),
        );
        assert_eq!(
            v.chain,
            Err(Problem::Expired {
                not_after: "2025-01-01T00:00:00Z".into()
            })
        );
    }

    #[test]
    fn client_auth_only_leaf_is_not_for_server_auth() {
        let ca = Ca::root("Test CA");
        let mut client = params("client.test", &["client.test"]);
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let leaf = ca.sign(&client, &KeyPair::generate().unwrap());
        let v = verify(
            std::slice::from_ref(&leaf),
            None,
            &store_of(&[&ca.der]),
            now(),
        );
        assert_eq!(v.chain, Err(Problem::NotForServerAuth));
        // Untrusted as well: the trust problem leads.
        let v = verify(&[leaf], None, &TrustStore::empty(), now());
        assert_eq!(v.chain, Err(Problem::UnknownIssuer));
        assert_eq!(v.chain_also, vec![Problem::NotForServerAuth]);
    }

    #[test]
    fn signature_by_wrong_key_is_a_bad_signature() {
        // Same CA name, different key: the leaf claims the trusted CA but was not signed by it.
        let trusted = Ca::root("Test CA");
        let impostor = Ca::root("Test CA");
        let leaf = impostor.leaf(&["api.test"]);
        let v = verify(&[leaf], None, &store_of(&[&trusted.der]), now());
        assert_eq!(v.chain, Err(Problem::BadSignature));
    }

    #[test]
    fn garbage_input_never_panics() {
        let store = store_of(&[&Ca::root("Test CA").der]);
        let empty = verify(&[], Some("api.test"), &store, now());
        assert!(matches!(empty.chain, Err(Problem::Malformed { .. })));
        assert_eq!(empty.problems().len(), 1, "malformed is reported once");
        assert!(empty.reason().unwrap().contains("no certificates"));

        for garbage in [
            &b""[..],
            b"\x30",
            b"\x30\x82\xff\xff",
            b"hello world",
            &[0xff; 300],
        ] {
            let v = verify(&[garbage.to_vec()], Some("api.test"), &store, now());
            assert!(matches!(v.chain, Err(Problem::Malformed { .. })), "{v:?}");
            assert!(summarize(garbage).is_err());
            assert!(name_matches(garbage, "api.test").is_err());
        }
        // Every truncation and a few bit flips of a real certificate.
        let leaf = self_signed_leaf(&["api.test"]);
        for len in 0..leaf.len() {
            let v = verify(&[leaf[..len].to_vec()], Some("api.test"), &store, now());
            assert!(v.chain.is_err());
            let _ = summarize(&leaf[..len]);
        }
        for i in (0..leaf.len()).step_by(7) {
            let mut flipped = leaf.clone();
            flipped[i] ^= 0x55;
            let v = verify(&[flipped.clone()], Some("api.test"), &store, now());
            assert!(!v.trusted());
            let _ = summarize(&flipped);
            let _ = name_matches(&flipped, "api.test");
        }
        // Trailing bytes after a valid certificate are not silently accepted.
        let mut trailing = leaf.clone();
        trailing.push(0);
        assert!(summarize(&trailing).is_err());
        // Times outside any sane range.
        let _ = verify(
            std::slice::from_ref(&leaf),
            None,
            &store,
            UNIX_EPOCH - Duration::from_secs(1),
        );
        let _ = verify(
            &[leaf],
            None,
            &store,
            UNIX_EPOCH + Duration::from_secs(u64::MAX / 4),
        );
    }

    #[test]
    fn huge_chains_are_capped() {
        let root = Ca::root("Test Root");
        let intermediate = root.intermediate("Test Intermediate");
        let leaf = intermediate.leaf(&["api.test"]);
        let store = store_of(&[&root.der]);
        let mut chain = vec![leaf.clone(), intermediate.der.clone()];
        chain.extend((0..5000).map(|i| format!("junk {i}").into_bytes()));
        assert!(verify(&chain, Some("api.test"), &store, now()).trusted());
        // Needed intermediate past the cap: ignored.
        let mut chain = vec![leaf];
        chain.extend((0..MAX_CHAIN).map(|_| root.der.clone()));
        chain.push(intermediate.der);
        let v = verify(&chain, None, &store, now());
        assert_eq!(v.chain, Err(Problem::UnknownIssuer));
    }

    #[test]
    fn summary_describes_the_certificate() {
        let ca = Ca::root("Test CA");
        let mut params = params("api.test", &["api.test", "www.api.test", "10.1.2.3"]);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Example");
        params.serial_number = Some(SerialNumber::from_slice(&[0x00, 0x0a, 0xbc]));
        params.not_before = date_time_ymd(2024, 2, 29);
        let leaf = ca.sign(&params, &KeyPair::generate().unwrap());
        let summary = summarize(&leaf).unwrap();
        assert_eq!(summary.subject, "CN=api.test, O=Example");
        assert_eq!(summary.issuer, "CN=Test CA");
        assert_eq!(summary.sans, vec!["api.test", "www.api.test", "10.1.2.3"]);
        assert_eq!(summary.not_before, "2024-02-29T00:00:00Z");
        assert_eq!(summary.not_after, "2030-01-01T00:00:00Z");
        assert_eq!(summary.serial, "0ABC");
        assert!(!summary.self_signed);
        assert!(summarize(&ca.der).unwrap().self_signed);
    }

    #[test]
    fn self_issued_but_not_self_signed_is_not_self_signed() {
        // Subject equals issuer, but the signature is by another key (a re-keyed CA's leaf).
        let ca = Ca::root("api.test");
        let leaf = ca.sign(
            &params("api.test", &["api.test"]),
            &KeyPair::generate().unwrap(),
        );
        let summary = summarize(&leaf).unwrap();
        assert_eq!(summary.subject, summary.issuer);
        assert!(!summary.self_signed);
        let v = verify(&[leaf], None, &TrustStore::empty(), now());
        assert_eq!(v.chain, Err(Problem::UnknownIssuer));
    }

    #[test]
    fn spki_pin_matches_independent_computation() {
        let key = KeyPair::generate().unwrap();
        let cert = params("api.test", &["api.test"]).self_signed(&key).unwrap();
        let summary = summarize(cert.der()).unwrap();
        // rcgen's own encoding of the public key, hashed here without x509-parser.
        let expected = format!(
            "sha256/{}",
            base64::engine::general_purpose::STANDARD
                .encode(Sha256::digest(key.subject_public_key_info()))
        );
        assert_eq!(summary.spki_sha256, expected);

        // And the openssl CLI's pin, the one operators copy into curl --pinnedpubkey.
        let has_openssl = std::process::Command::new("openssl")
            .arg("version")
            .output()
            .is_ok_and(|out| out.status.success());
        if !has_openssl {
            eprintln!("openssl CLI unavailable: skipped its cross-check");
            return;
        }
        let path = temp_file("pin.pem", pem(cert.der()).as_bytes());
        let pipeline = format!(
            "openssl x509 -in '{}' -pubkey -noout | openssl pkey -pubin -outform der \
             | openssl dgst -sha256 -binary | base64",
            path.display()
        );
        let out = std::process::Command::new("sh")
            .args(["-c", &pipeline])
            .output()
            .unwrap();
        let openssl = String::from_utf8(out.stdout).unwrap();
        assert!(openssl.trim().len() == 44, "openssl printed {openssl:?}");
        assert_eq!(summary.spki_sha256, format!("sha256/{}", openssl.trim()));
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn system_store_loads() {
        if !Path::new(SYSTEM_BUNDLES[0]).exists() {
            eprintln!("no {}: not a Debian-family host", SYSTEM_BUNDLES[0]);
            return;
        }
        let store = TrustStore::system().unwrap();
        assert!(store.len() > 50, "{} anchors", store.len());
        assert!(!store.is_empty());
        // A leaf from a private CA is still unknown to the system store.
        let ca = Ca::root("Test CA");
        let v = verify(&[ca.leaf(&["api.test"])], None, &store, now());
        assert_eq!(v.chain, Err(Problem::UnknownIssuer));
    }

    #[test]
    fn first_readable_bundle_wins_and_none_is_an_error() {
        let ca = Ca::root("Test CA");
        let bundle = temp_file("bundle.pem", pem(&ca.der).as_bytes());
        let missing = Path::new("/nonexistent/ca.pem");
        let store = TrustStore::first_bundle([missing, bundle.as_path()]).unwrap();
        assert_eq!(store.len(), 1);
        let err = TrustStore::first_bundle([missing]).unwrap_err();
        assert!(
            format!("{err:#}").contains("/nonexistent/ca.pem"),
            "{err:#}"
        );
        let _ = std::fs::remove_file(bundle);
    }

    #[test]
    fn pem_file_with_malformed_blocks_keeps_the_good_ones() {
        let first = Ca::root("First CA");
        let second = Ca::root("Second CA");
        let text = format!(
            "# config CAs\n{}-----BEGIN CERTIFICATE-----\nnot base64 at all!!\n-----END CERTIFICATE-----\n\
             -----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n\
             -----BEGIN PRIVATE KEY-----\naGVsbG8=\n-----END PRIVATE KEY-----\n{}{}",
            pem(&first.der),
            pem(&second.der),
            pem(&first.der),
        );
        let path = temp_file("config-cas.pem", text.as_bytes());
        let mut store = TrustStore::empty();
        assert_eq!(store.add_pem_file(&path).unwrap(), 3);
        assert_eq!(store.len(), 2, "the duplicate is stored once");
        assert_eq!(store.notes().len(), 2, "{:?}", store.notes());
        assert!(store.notes()[0].contains("config-cas.pem: entry 2"));
        assert!(store.holds(&second.der));
        let leaf = second.leaf(&["api.test"]);
        assert!(verify(&[leaf], Some("api.test"), &store, now()).trusted());
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn pem_without_usable_certificates_is_an_error() {
        let mut store = TrustStore::empty();
        let err = store
            .add_pem(b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n")
            .unwrap_err();
        assert!(format!("{err}").contains("1 malformed"), "{err}");
        let err = store.add_pem(b"just text\n").unwrap_err();
        assert!(format!("{err}").contains("no certificates"), "{err}");
        assert!(store
            .add_pem_file(Path::new("/nonexistent/ca.pem"))
            .is_err());
        assert!(store.add_der(b"garbage").is_err());
        assert!(store.is_empty());
    }

    #[test]
    fn verification_serializes_with_ok_flags_and_flattened_problems() {
        let leaf = self_signed_leaf(&["other.test"]);
        let v = verify(&[leaf], Some("api.test"), &TrustStore::empty(), now());
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(
            json["chain"],
            serde_json::json!({"ok": false, "problem": "self_signed"})
        );
        assert_eq!(
            json["name"],
            serde_json::json!({"ok": false, "problem": "name_mismatch", "name": "api.test"})
        );
        assert_eq!(json["chain_also"], serde_json::json!([]));
        assert_eq!(json["untrusted_issuer"], serde_json::Value::Null);
        assert_eq!(json["leaf"]["sans"], serde_json::json!(["other.test"]));
        assert!(json["leaf"]["spki_sha256"]
            .as_str()
            .unwrap()
            .starts_with("sha256/"));

        let trusted = Verification {
            chain: Ok(()),
            chain_also: vec![],
            name: None,
            untrusted_issuer: None,
            leaf: None,
        };
        let json = serde_json::to_value(&trusted).unwrap();
        assert_eq!(json["chain"], serde_json::json!({"ok": true}));
        assert_eq!(json["name"], serde_json::Value::Null);
        let expired = serde_json::to_value(Problem::Expired {
            not_after: "2024-01-01T00:00:00Z".into(),
        })
        .unwrap();
        assert_eq!(
            expired,
            serde_json::json!({"problem": "expired", "not_after": "2024-01-01T00:00:00Z"})
        );
    }

    #[test]
    fn rfc3339_agrees_with_humantime_and_survives_any_year() {
        for secs in [
            0_i64,
            951_782_400,
            1_704_067_200,
            1_709_164_799,
            4_102_444_800,
        ] {
            let time = UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs());
            assert_eq!(
                rfc3339(secs),
                humantime::format_rfc3339_seconds(time).to_string()
            );
        }
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(-631_152_000), "1950-01-01T00:00:00Z");
        assert_eq!(rfc3339(i64::MIN), "0000-01-01T00:00:00Z");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59Z");
    }
}
