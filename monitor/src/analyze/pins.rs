//! Judgments on a client handshake that depend on `--config`: SPKI pins (`TLS_PIN_MISMATCH`,
//! `TLS_SINGLE_PIN`), high-value hosts without pins (`TLS_UNPINNED_HIGH_VALUE`), and what
//! `TLS_UNTRUSTED_CA` can say about an internal CA (its issuer, whether other upstreams of
//! this run use it, the `[tls] ca_files` entry that would have verified the chain).
//!
//! Pure: the config arrives compiled at construction ([`PinPolicy::new`], from
//! [`crate::analyze::Analyzer::new`]), so `replay --config NEW` judges old traffic by a new
//! config through this same code. The little it remembers across sessions (which single-pin
//! hosts were reported, which issuers were seen where) lasts one run or one replay.
//!
//! What is compared: the certificates the server sent (captured from OpenSSL's chain
//! verification: leaf and intermediates, and a root if the server sends one), plus the trust
//! anchor of the monitor's store (system CAs and `[tls] ca_files`) that completes them, so a pin
//! on a root the server does not send is honoured. A captured certificate cut short (larger
//! than the capture buffer) makes a mismatch unknowable: no finding then.
use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::Mutex,
    time::SystemTime,
};

use serde_json::{json, Value};

use crate::{
    detect::x509::{self, Problem, TrustStore},
    output::finding::FindingId,
    pins::{pinnable_name, snippet, Pinning},
};

/// Issuers remembered for `TLS_UNTRUSTED_CA` evidence, and upstreams per issuer.
const MAX_ISSUERS: usize = 1024;
const MAX_UPSTREAMS_PER_ISSUER: usize = 16;

/// The config's pins, high-value hosts and CA files, and what this run has seen of them.
#[derive(Debug, Default)]
pub struct PinPolicy {
    pinning: Pinning,
    /// Each `[tls] ca_files` file as a store of its own (see [`crate::pins::ca_file_stores`]).
    ca_files: Vec<(PathBuf, TrustStore)>,
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    /// `[[pins]]` hosts already reported as `TLS_SINGLE_PIN`.
    single_pin: HashSet<String>,
    /// Issuer (the CA a chain stops at) -> upstreams ("name:port") whose chains it issued.
    issuers: HashMap<String, Vec<String>>,
}

/// What the pin checks need from a concluded client handshake.
pub struct Handshake<'a> {
    /// The names the client asked for: the host name it had checked, the SNI, else the IP.
    pub names: Vec<&'a str>,
    pub port: Option<u16>,
    /// The captured certificates, leaf first.
    pub chain: &'a [Vec<u8>],
    /// A captured certificate was cut short.
    pub truncated: bool,
    pub completed: bool,
    /// The monitor's own verdict (chain and name), `None` without a certificate.
    pub trusted_here: Option<bool>,
    pub time: SystemTime,
}

impl Handshake<'_> {
    fn upstream(&self) -> Option<String> {
        let name = self.names.first()?;
        Some(match self.port {
            Some(port) => format!("{name}:{port}"),
            None => name.to_string(),
        })
    }
}

/// One key of the observed chain.
struct Observed {
    pin: String,
    role: &'static str,
    subject: String,
}

impl PinPolicy {
    pub fn new(pinning: Pinning, ca_files: Vec<(PathBuf, TrustStore)>) -> Self {
        Self {
            pinning,
            ca_files,
            seen: Mutex::new(Seen::default()),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        // Nothing panics while holding it; a poisoned lock still holds usable sets.
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pin findings for one handshake (evidence to merge into the TLS evidence), and the
    /// chain's issuer remembered for later `TLS_UNTRUSTED_CA` evidence.
    pub fn judge(&self, h: &Handshake<'_>, trust: &TrustStore) -> Vec<(FindingId, Value)> {
        let mut found = Vec::new();
        self.remember_issuer(h);
        let pinned = h
            .names
            .iter()
            .find_map(|name| self.pinning.pins_for(name).map(|set| (*name, set)));
        if let Some((name, set)) = pinned {
            let entry = set.host.to_string();
            let expected = set.pins();
            if expected.len() == 1 && self.seen().single_pin.insert(entry.clone()) {
                found.push((
                    FindingId::TlsSinglePin,
                    json!({
                        "reason": format!(
                            "[[pins]] for {entry} lists one key: when that key is rotated or \
                             compromised there is no pinned key to move to"
                        ),
                        "pinned_host": entry,
                        "expected_pins": expected,
                    }),
                ));
            }
            let observed = observed(h.chain, trust, h.time);
            if !h.chain.is_empty() && !h.truncated && !observed.iter().any(|o| set.holds(&o.pin)) {
                found.push((
                    FindingId::TlsPinMismatch,
                    json!({
                        "reason": format!(
                            "{name} presented no key pinned for it: {} observed, none of the \
                             {} pinned for {entry}",
                            observed.len(),
                            expected.len()
                        ),
                        "pinned_host": entry,
                        "expected_pins": expected,
                        "observed_pins": observed_json(&observed),
                        "chain_compared": chain_compared(h.chain.len(), &observed),
                        "handshake": if h.completed { "completed" } else { "not completed" },
                    }),
                ));
            }
            return found;
        }
        if !h.completed {
            return found;
        }
        let high_value = h
            .names
            .iter()
            .find_map(|name| self.pinning.high_value(name).map(|why| (*name, why)));
        if let Some((name, why)) = high_value {
            let observed = observed(h.chain, trust, h.time);
            let leaf = observed.first().filter(|o| o.role == "leaf");
            let withheld = if leaf.is_none() {
                Some("no certificate was captured for this session")
            } else if h.trusted_here != Some(true) {
                Some("the certificate did not verify here: pin a key only after it verifies")
            } else if !pinnable_name(name) {
                Some("the server name is not a host name that can be written as it is")
            } else {
                None
            };
            let snippet = match (withheld, leaf) {
                (None, Some(leaf)) => json!(snippet(
                    &name.trim_end_matches('.').to_ascii_lowercase(),
                    &[(leaf.pin.clone(), &format!("current key ({})", leaf.subject))]
                )),
                _ => Value::Null,
            };
            let mut evidence = json!({
                "reason": format!(
                    "{name} is high-value ({why}) and no [[pins]] entry covers it: a \
                     certificate any trusted CA issues for it is accepted"
                ),
                "high_value_because": why,
                "observed_pin": leaf.map(|l| l.pin.clone()),
                "observed_pins": observed_json(&observed),
                "snippet": snippet,
            });
            if let Some(why) = withheld {
                evidence["snippet_withheld"] = json!(why);
            }
            found.push((FindingId::TlsUnpinnedHighValue, evidence));
        }
        found
    }

    /// What `TLS_UNTRUSTED_CA` adds: the CA the chain stops at, whether it is private and used
    /// by other upstreams of this run, and the `[tls] ca_files` entry that would verify it.
    /// `trust`: the monitor's own store (system CAs plus ca_files).
    pub fn untrusted_ca(&self, h: &Handshake<'_>, trust: &TrustStore) -> Value {
        let Some(issuer) = top_issuer(h.chain) else {
            return json!({ "issuer": null, "fix": null });
        };
        let fix = self
            .ca_files
            .iter()
            .find(|(_, store)| verifies(h.chain, store, h.time))
            .map(|(path, _)| json!({ "ca_file": path.display().to_string() }));
        let here = h.upstream();
        let seen_on: Vec<String> = self
            .seen()
            .issuers
            .get(&issuer)
            .map(|ups| {
                ups.iter()
                    .filter(|u| Some(*u) != here.as_ref())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        json!({
            "issuer": {
                "name": issuer,
                "private": fix.is_some() || !verifies(h.chain, trust, h.time),
                "seen_on": seen_on,
            },
            "fix": fix,
        })
    }

    fn remember_issuer(&self, h: &Handshake<'_>) {
        let (Some(issuer), Some(upstream)) = (top_issuer(h.chain), h.upstream()) else {
            return;
        };
        let mut seen = self.seen();
        if !seen.issuers.contains_key(&issuer) && seen.issuers.len() >= MAX_ISSUERS {
            return;
        }
        let ups = seen.issuers.entry(issuer).or_default();
        if !ups.contains(&upstream) && ups.len() < MAX_UPSTREAMS_PER_ISSUER {
            ups.push(upstream);
        }
    }
}

/// The keys of the chain, leaf first, then the trust anchor that completes it (when the
/// server did not send that anchor itself).
fn observed(chain: &[Vec<u8>], trust: &TrustStore, time: SystemTime) -> Vec<Observed> {
    let mut out: Vec<Observed> = Vec::new();
    for (i, der) in chain.iter().enumerate() {
        let Ok(c) = x509::summarize(der) else {
            continue;
        };
        if out.iter().any(|o| o.pin == c.spki_sha256) {
            continue;
        }
        let role = match (i, c.self_signed) {
            (0, _) => "leaf",
            (_, true) => "root",
            _ => "intermediate",
        };
        out.push(Observed {
            pin: c.spki_sha256,
            role,
            subject: c.subject,
        });
    }
    if let Some(pin) = x509::anchor_pin(chain, trust, time) {
        if !out.iter().any(|o| o.pin == pin) {
            out.push(Observed {
                pin,
                role: "trust anchor",
                subject: top_issuer(chain).unwrap_or_default(),
            });
        }
    }
    out
}

fn observed_json(observed: &[Observed]) -> Value {
    observed
        .iter()
        .map(|o| json!({"pin": o.pin, "certificate": o.role, "subject": o.subject}))
        .collect()
}

fn chain_compared(sent: usize, observed: &[Observed]) -> String {
    let anchor = if observed.iter().any(|o| o.role == "trust anchor") {
        "and the trust anchor that completes them in the monitor's store"
    } else {
        "(no trust anchor of the monitor's store completes them)"
    };
    format!("the {sent} certificate(s) the server sent, {anchor}")
}

/// The CA the chain stops at: follow issuers from the leaf through the captured certificates
/// until one's issuer is not among them (a captured self-signed root names itself).
fn top_issuer(chain: &[Vec<u8>]) -> Option<String> {
    let certs: Vec<x509::CertSummary> = chain
        .iter()
        .take(x509::MAX_CHAIN)
        .filter_map(|der| x509::summarize(der).ok())
        .collect();
    let mut current = certs.first()?;
    let mut used = vec![false; certs.len()];
    used[0] = true;
    loop {
        let next = certs
            .iter()
            .enumerate()
            .find(|(i, c)| !used[*i] && c.subject == current.issuer);
        match next {
            Some((i, c)) => {
                used[i] = true;
                current = c;
            }
            None => return Some(current.issuer.clone()),
        }
    }
}

/// Whether `store` vouches for the chain (dates and key usage aside: those are other problems).
fn verifies(chain: &[Vec<u8>], store: &TrustStore, time: SystemTime) -> bool {
    if chain.is_empty() {
        return false;
    }
    let v = x509::verify(chain, None, store, time);
    !v.problems().iter().any(|p| {
        matches!(
            p,
            Problem::UnknownIssuer
                | Problem::SelfSigned
                | Problem::BadSignature
                | Problem::Malformed { .. }
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        date_time_ymd, BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa,
        Issuer, KeyPair,
    };
    use std::time::{Duration, UNIX_EPOCH};

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_748_736_000) // 2025-06-01
    }

    fn params(cn: &str, sans: &[&str]) -> CertificateParams {
        let mut p =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.not_before = date_time_ymd(2024, 1, 1);
        p.not_after = date_time_ymd(2030, 1, 1);
        p
    }

    struct Ca {
        params: CertificateParams,
        key: KeyPair,
        der: Vec<u8>,
    }

    impl Ca {
        fn root(cn: &str) -> Self {
            let mut params = params(cn, &[]);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let key = KeyPair::generate().unwrap();
            let der = params.self_signed(&key).unwrap().der().to_vec();
            Self { params, key, der }
        }

        fn leaf(&self, name: &str) -> Vec<u8> {
            let issuer = Issuer::from_params(&self.params, &self.key);
            params(name, &[name])
                .signed_by(&KeyPair::generate().unwrap(), &issuer)
                .unwrap()
                .der()
                .to_vec()
        }
    }

    fn pin_of(der: &[u8]) -> String {
        x509::summarize(der).unwrap().spki_sha256
    }

    fn store(ca: &Ca) -> TrustStore {
        let mut s = TrustStore::empty();
        s.add_der(&ca.der).unwrap();
        s
    }

    fn policy(config: &str, ca_files: Vec<(PathBuf, TrustStore)>) -> PinPolicy {
        let c = crate::config::Config::parse(config).unwrap();
        PinPolicy::new(c.pinning, ca_files)
    }

    fn handshake<'a>(name: &'a str, chain: &'a [Vec<u8>], trusted: bool) -> Handshake<'a> {
        Handshake {
            names: vec![name],
            port: Some(443),
            chain,
            truncated: false,
            completed: true,
            trusted_here: Some(trusted),
            time: now(),
        }
    }

    fn ids(found: &[(FindingId, Value)]) -> Vec<FindingId> {
        found.iter().map(|(id, _)| *id).collect()
    }

    #[test]
    fn a_chain_without_a_pinned_key_is_a_mismatch_whatever_the_verdict() {
        let ca = Ca::root("Corp Root");
        let leaf = ca.leaf("api.payments.example");
        let other = Ca::root("Other").leaf("x.example");
        let chain = vec![leaf.clone()];
        let p = policy(
            &format!(
                "[[pins]]\nhost = \"*.payments.example\"\nspki = [\"{}\", \"{}\"]\n",
                pin_of(&other),
                pin_of(&ca.leaf("y.example"))
            ),
            vec![],
        );
        for trusted in [true, false] {
            let found = p.judge(
                &handshake("api.payments.example", &chain, trusted),
                &store(&ca),
            );
            assert_eq!(ids(&found), [FindingId::TlsPinMismatch]);
            let e = &found[0].1;
            assert_eq!(e["pinned_host"], "*.payments.example");
            assert_eq!(e["expected_pins"].as_array().unwrap().len(), 2);
            let observed = e["observed_pins"].as_array().unwrap();
            assert_eq!(observed[0]["pin"], pin_of(&leaf).as_str());
            assert_eq!(observed[0]["certificate"], "leaf");
            assert_eq!(observed[1]["certificate"], "trust anchor", "{e}");
            assert_eq!(observed[1]["pin"], pin_of(&ca.der).as_str());
        }
        // Truncated capture or none: unknowable, nothing said.
        let mut h = handshake("api.payments.example", &chain, true);
        h.truncated = true;
        assert!(p.judge(&h, &store(&ca)).is_empty());
        assert!(p
            .judge(&handshake("api.payments.example", &[], true), &store(&ca))
            .is_empty());
        // Not pinned: nothing.
        assert!(p
            .judge(&handshake("payments.example", &chain, true), &store(&ca))
            .is_empty());
    }

    #[test]
    fn the_leaf_or_the_anchor_that_completes_the_chain_satisfies_a_pin() {
        let ca = Ca::root("Corp Root");
        let leaf = ca.leaf("api.payments.example");
        let chain = vec![leaf.clone()];
        for pin in [pin_of(&leaf), pin_of(&ca.der)] {
            let p = policy(
                &format!(
                    "[[pins]]\nhost = \"api.payments.example\"\nspki = [\"{pin}\", \"{}\"]\n",
                    pin_of(&ca.leaf("backup.example"))
                ),
                vec![],
            );
            assert!(p
                .judge(
                    &handshake("api.payments.example", &chain, true),
                    &store(&ca)
                )
                .is_empty());
        }
        // The anchor only counts when it really completes the chain.
        let p = policy(
            &format!(
                "[[pins]]\nhost = \"api.payments.example\"\nspki = [\"{}\", \"{}\"]\n",
                pin_of(&ca.der),
                pin_of(&ca.leaf("backup.example"))
            ),
            vec![],
        );
        let found = p.judge(
            &handshake("api.payments.example", &chain, false),
            &TrustStore::empty(),
        );
        assert_eq!(ids(&found), [FindingId::TlsPinMismatch]);
        assert!(found[0].1["chain_compared"]
            .as_str()
            .unwrap()
            .contains("no trust anchor"));
    }

    #[test]
    fn a_single_pin_is_reported_once_per_host() {
        let ca = Ca::root("Corp Root");
        let leaf = ca.leaf("api.payments.example");
        let chain = vec![leaf.clone()];
        let p = policy(
            &format!(
                "[[pins]]\nhost = \"api.payments.example\"\nspki = [\"{}\"]\n",
                pin_of(&leaf)
            ),
            vec![],
        );
        let h = handshake("api.payments.example", &chain, true);
        let first = p.judge(&h, &store(&ca));
        assert_eq!(ids(&first), [FindingId::TlsSinglePin]);
        assert_eq!(first[0].1["pinned_host"], "api.payments.example");
        assert!(p.judge(&h, &store(&ca)).is_empty(), "once per run");
    }

    #[test]
    fn an_unpinned_high_value_host_gets_a_snippet_to_paste() {
        let ca = Ca::root("Corp Root");
        let leaf = ca.leaf("api.payments.example");
        let chain = vec![leaf.clone()];
        let p = policy(
            "[tls]\nhigh_value_hosts = ['\\.payments\\.example$']\n",
            vec![],
        );
        let found = p.judge(
            &handshake("api.payments.example", &chain, true),
            &store(&ca),
        );
        assert_eq!(ids(&found), [FindingId::TlsUnpinnedHighValue]);
        let e = &found[0].1;
        assert_eq!(e["observed_pin"], pin_of(&leaf).as_str());
        let snippet = e["snippet"].as_str().unwrap();
        let pasted = crate::config::Config::parse(snippet).unwrap();
        assert!(pasted
            .pinning
            .pins_for("api.payments.example")
            .unwrap()
            .holds(&pin_of(&leaf)));
        // Not verified here: the pin is shown, not offered.
        let found = p.judge(
            &handshake("api.payments.example", &chain, false),
            &store(&ca),
        );
        assert!(found[0].1["snippet"].is_null());
        assert!(found[0].1["snippet_withheld"].is_string());
        // Built-in list; and pinned or failed sessions are not "unpinned sessions".
        let stripe = Ca::root("R").leaf("api.stripe.com");
        let found = p.judge(&handshake("api.stripe.com", &[stripe], true), &store(&ca));
        assert_eq!(
            found[0].1["high_value_because"],
            "built-in: payment provider Stripe"
        );
        let mut h = handshake("api.payments.example", &chain, true);
        h.completed = false;
        assert!(p.judge(&h, &store(&ca)).is_empty());
        assert!(p
            .judge(&handshake("api.test", &chain, true), &store(&ca))
            .is_empty());
    }

    #[test]
    fn untrusted_ca_names_the_issuer_where_else_it_was_seen_and_the_ca_file_that_fixes_it() {
        let corp = Ca::root("Corp Root");
        let public = Ca::root("Public Root");
        let a = vec![corp.leaf("a.corp")];
        let b = vec![corp.leaf("b.corp")];
        let files = vec![
            (PathBuf::from("/etc/ssl/public.pem"), store(&public)),
            (PathBuf::from("/etc/ssl/corp-ca.pem"), store(&corp)),
        ];
        let p = policy("", files);
        p.judge(&handshake("a.corp", &a, true), &store(&corp));
        let e = p.untrusted_ca(&handshake("b.corp", &b, false), &store(&corp));
        assert_eq!(e["issuer"]["name"], "CN=Corp Root");
        assert_eq!(e["issuer"]["private"], true);
        assert_eq!(e["issuer"]["seen_on"], json!(["a.corp:443"]));
        assert_eq!(e["fix"]["ca_file"], "/etc/ssl/corp-ca.pem");
        // No CA file holds it: no fix, still private (nothing here trusts it).
        let p = policy("", vec![]);
        let e = p.untrusted_ca(&handshake("b.corp", &b, false), &TrustStore::empty());
        assert!(e["fix"].is_null());
        assert_eq!(e["issuer"]["private"], true);
        assert_eq!(e["issuer"]["seen_on"], json!([]));
        // A public CA (in the system store, not in a CA file) is not private.
        let e = p.untrusted_ca(&handshake("b.corp", &b, false), &store(&corp));
        assert_eq!(e["issuer"]["private"], false);
    }

    #[test]
    fn the_top_issuer_follows_the_captured_chain() {
        let root = Ca::root("Root");
        let mut ip = params("Intermediate", &[]);
        ip.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ikey = KeyPair::generate().unwrap();
        let issuer = Issuer::from_params(&root.params, &root.key);
        let inter = ip.signed_by(&ikey, &issuer).unwrap().der().to_vec();
        let inter_issuer = Issuer::from_params(&ip, &ikey);
        let leaf = params("x.example", &["x.example"])
            .signed_by(&KeyPair::generate().unwrap(), &inter_issuer)
            .unwrap()
            .der()
            .to_vec();
        assert_eq!(
            top_issuer(std::slice::from_ref(&leaf)).as_deref(),
            Some("CN=Intermediate")
        );
        assert_eq!(
            top_issuer(&[leaf.clone(), inter.clone()]).as_deref(),
            Some("CN=Root")
        );
        assert_eq!(
            top_issuer(&[leaf.clone(), root.der.clone(), inter.clone()]).as_deref(),
            Some("CN=Root")
        );
        // The anchor is found through the intermediate.
        let observed = observed(&[leaf, inter], &store(&root), now());
        let roles: Vec<&str> = observed.iter().map(|o| o.role).collect();
        assert_eq!(roles, ["leaf", "intermediate", "trust anchor"]);
        assert_eq!(observed[2].pin, pin_of(&root.der));
    }
}
