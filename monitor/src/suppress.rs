//! `[[suppress]]`: accepting a known risk without muting everything.
//!
//! ```toml
//! [[suppress]]
//! id = "TLS_VERIFY_DISABLED"          # required: one finding id
//! reason = "staging proxy, JIRA-123"  # required: why this risk is accepted
//! expires = 2027-03-31                # optional: a TOML date or date-time; ignored after it
//! # Optional matchers; every one given must match:
//! comm = "node"                       # the process's task name
//! exe = "/usr/bin/node"               # its executable
//! cmdline = 'weather/build/index\.js' # a regex on its (redacted) command line, joined by spaces
//! container = "3f2a9c"                # a container id or its prefix
//! pod = "payments/api-*"              # namespace/name of its pod (`*` at the end: a prefix)
//! host = "*.staging.example"          # the destination host name (`*.` prefix: any subdomain)
//! ip = "10.0.0.7"                     # the destination address
//! port = 8443                         # the destination port
//! ```
//!
//! A matching finding is not printed; it is counted (`suppressed` in the `stats` and `shutdown`
//! totals, and in the metrics). The start of a run lists the active suppressions in a
//! `suppressions` status line; expired ones are ignored with a `warning` line.
use std::{
    net::IpAddr,
    time::{Duration, SystemTime},
};

use regex::Regex;
use serde::Deserialize;

use crate::output::finding::Finding;

/// Every finding id of the catalogue (DESIGN.md), including those a later release produces.
pub const CATALOGUE: &[&str] = &[
    "TLS_VERIFY_DISABLED",
    "TLS_INVALID_CERT_ACCEPTED",
    "TLS_HOSTNAME_UNCHECKED",
    "TLS_HOSTNAME_MISMATCH_ACCEPTED",
    "TLS_VERIFY_ENV_DISABLED",
    "PLAINTEXT_CREDENTIALS",
    "PLAINTEXT_AUTH_ENDPOINT",
    "TLS_UNTRUSTED_CA",
    "TLS_PIN_MISMATCH",
    "TLS_UNPINNED_HIGH_VALUE",
    "HSTS_MISSING",
    "MCP_ENDPOINT_PLAINTEXT",
    "TLS_SINGLE_PIN",
];

/// One `[[suppress]]` table as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuppressConfig {
    pub id: toml::Spanned<String>,
    pub reason: toml::Spanned<String>,
    #[serde(default)]
    pub expires: Option<toml::value::Datetime>,
    #[serde(default)]
    pub comm: Option<String>,
    #[serde(default)]
    pub exe: Option<String>,
    #[serde(default)]
    pub cmdline: Option<toml::Spanned<String>>,
    #[serde(default)]
    pub container: Option<String>,
    #[serde(default)]
    pub pod: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub ip: Option<IpAddr>,
    #[serde(default)]
    pub port: Option<u16>,
}

/// A suppression ready to match.
#[derive(Clone, Debug)]
pub struct Suppression {
    pub id: String,
    pub reason: String,
    /// `None`: never expires.
    pub expires: Option<SystemTime>,
    /// The expiry as written, for messages.
    expires_text: Option<String>,
    comm: Option<String>,
    exe: Option<String>,
    cmdline: Option<Regex>,
    container: Option<String>,
    pod: Option<String>,
    host: Option<String>,
    ip: Option<IpAddr>,
    port: Option<u16>,
}

/// The 1-based line of a byte offset in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// A TOML date or date-time as a point in time: a date alone means the end of that day (UTC).
fn expiry(dt: &toml::value::Datetime) -> Option<SystemTime> {
    let date = dt.date?;
    let days = days_from_civil(i64::from(date.year), date.month.into(), date.day.into());
    let mut secs = days * 86_400;
    match dt.time {
        Some(t) => {
            secs += i64::from(t.hour) * 3600 + i64::from(t.minute) * 60 + i64::from(t.second);
            if let Some(toml::value::Offset::Custom { minutes }) = dt.offset {
                secs -= i64::from(minutes) * 60;
            }
        }
        None => secs += 86_400 - 1,
    }
    u64::try_from(secs)
        .ok()
        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Suppression {
    /// Check one table; errors name its line in `text` (the config file).
    pub fn compile(c: &SuppressConfig, text: &str) -> anyhow::Result<Self> {
        let id = c.id.get_ref();
        if !CATALOGUE.contains(&id.as_str()) {
            anyhow::bail!(
                "line {}: [[suppress]] id {id:?} is not a finding id (one of: {})",
                line_of(text, c.id.span().start),
                CATALOGUE.join(", ")
            );
        }
        if c.reason.get_ref().trim().is_empty() {
            anyhow::bail!(
                "line {}: [[suppress]] reason is empty: say why this risk is accepted",
                line_of(text, c.reason.span().start)
            );
        }
        let cmdline = match &c.cmdline {
            Some(re) => Some(Regex::new(re.get_ref()).map_err(|e| {
                anyhow::anyhow!(
                    "line {}: [[suppress]] cmdline is not a valid regex: {e}",
                    line_of(text, re.span().start)
                )
            })?),
            None => None,
        };
        let expires = match &c.expires {
            Some(dt) => Some(expiry(dt).ok_or_else(|| {
                anyhow::anyhow!(
                    "line {}: [[suppress]] expires = {dt} needs a date (2027-03-31 or \
                     2027-03-31T12:00:00Z)",
                    line_of(text, c.id.span().start)
                )
            })?),
            None => None,
        };
        Ok(Self {
            id: id.clone(),
            reason: c.reason.get_ref().clone(),
            expires,
            expires_text: c.expires.as_ref().map(ToString::to_string),
            comm: c.comm.clone(),
            exe: c.exe.clone(),
            cmdline,
            container: c.container.clone(),
            pod: c.pod.clone(),
            host: c.host.clone(),
            ip: c.ip,
            port: c.port,
        })
    }

    pub fn expired(&self, now: SystemTime) -> bool {
        self.expires.is_some_and(|e| now > e)
    }

    /// Whether it covers `f` (expiry aside).
    pub fn covers(&self, f: &Finding) -> bool {
        if f.id.as_str() != self.id {
            return false;
        }
        let p = &f.process;
        let d = f.destination.as_ref();
        let glob = |pattern: &str, value: &str| match pattern.strip_suffix('*') {
            Some(prefix) => value.starts_with(prefix),
            None => pattern == value,
        };
        self.comm.as_ref().is_none_or(|c| *c == p.comm)
            && self
                .exe
                .as_ref()
                .is_none_or(|e| p.exe.as_deref() == Some(e))
            && self
                .cmdline
                .as_ref()
                .is_none_or(|re| re.is_match(&p.cmdline.join(" ")))
            && self.container.as_ref().is_none_or(|c| {
                p.container_id
                    .as_deref()
                    .is_some_and(|id| !c.is_empty() && id.starts_with(c.as_str()))
            })
            && self.pod.as_ref().is_none_or(|want| {
                p.pod.as_ref().is_some_and(|pod| {
                    let full = format!(
                        "{}/{}",
                        pod.namespace.as_deref().unwrap_or(""),
                        pod.name.as_deref().unwrap_or("")
                    );
                    glob(want, &full)
                })
            })
            && self.host.as_ref().is_none_or(|h| {
                d.and_then(|d| d.hostname.as_deref()).is_some_and(|name| {
                    let name = name.trim_end_matches('.').to_ascii_lowercase();
                    match h.strip_prefix("*.") {
                        Some(suffix) => {
                            name.ends_with(&format!(".{}", suffix.to_ascii_lowercase()))
                        }
                        None => name == h.to_ascii_lowercase(),
                    }
                })
            })
            && self.ip.is_none_or(|ip| d.is_some_and(|d| d.ip == ip))
            && self
                .port
                .is_none_or(|port| d.is_some_and(|d| d.port == port))
    }

    /// For the start-up status line.
    pub fn describe(&self) -> String {
        let mut scope = Vec::new();
        let mut add = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                scope.push(format!("{k} {v}"));
            }
        };
        add("comm", self.comm.clone());
        add("exe", self.exe.clone());
        add(
            "cmdline",
            self.cmdline.as_ref().map(|r| format!("/{}/", r.as_str())),
        );
        add("container", self.container.clone());
        add("pod", self.pod.clone());
        add("host", self.host.clone());
        add("ip", self.ip.map(|i| i.to_string()));
        add("port", self.port.map(|p| p.to_string()));
        let scope = if scope.is_empty() {
            "everywhere".to_string()
        } else {
            scope.join(", ")
        };
        let until = self
            .expires_text
            .as_ref()
            .map_or(String::new(), |e| format!(" until {e}"));
        format!("{} ({scope}){until}: {}", self.id, self.reason)
    }
}

/// The active suppressions of a run.
#[derive(Debug, Default)]
pub struct Suppressions {
    list: Vec<Suppression>,
}

impl Suppressions {
    /// Keep those not expired at `now`; the expired ones are returned for a warning.
    pub fn new(all: Vec<Suppression>, now: SystemTime) -> (Self, Vec<Suppression>) {
        let (expired, list): (Vec<_>, Vec<_>) = all.into_iter().partition(|s| s.expired(now));
        (Self { list }, expired)
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Suppression> {
        self.list.iter()
    }

    /// The suppression that covers `f` at `now`, if one does (one that expired during the run
    /// no longer does).
    pub fn find(&self, f: &Finding, now: SystemTime) -> Option<&Suppression> {
        self.list.iter().find(|s| !s.expired(now) && s.covers(f))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        config::Config,
        output::{finding::FindingId, Destination},
        process::ProcessInfo,
    };

    fn finding(id: FindingId, comm: &str, host: Option<&str>, port: u16) -> Finding {
        Finding {
            time: SystemTime::now(),
            id,
            process: Arc::new(ProcessInfo {
                pid: 10,
                comm: comm.into(),
                exe: Some(format!("/usr/bin/{comm}")),
                cmdline: vec![comm.into(), "/srv/weather/build/index.js".into()],
                container_id: Some("3f2a9c".repeat(10) + "abcd"),
                ..Default::default()
            }),
            destination: Some(Destination {
                ip: "10.203.0.2".parse().unwrap(),
                port,
                hostname: host.map(Arc::from),
            }),
            evidence: serde_json::json!({}),
            count: 1,
        }
    }

    fn compile(text: &str) -> anyhow::Result<Vec<Suppression>> {
        Ok(Config::parse(text)?.suppressions)
    }

    #[test]
    fn matchers_narrow_a_suppression() {
        let all = compile(
            r#"
[[suppress]]
id = "TLS_VERIFY_DISABLED"
reason = "staging proxy"
comm = "node"
host = "*.staging.example"
port = 8443
cmdline = 'weather/build'
container = "3f2a9c"
"#,
        )
        .unwrap();
        let (s, expired) = Suppressions::new(all, SystemTime::now());
        assert!(expired.is_empty());
        let now = SystemTime::now();
        let f = |id, comm, host, port| finding(id, comm, host, port);
        use FindingId::*;
        assert!(s
            .find(
                &f(TlsVerifyDisabled, "node", Some("api.staging.example"), 8443),
                now
            )
            .is_some());
        for other in [
            f(
                PlaintextCredentials,
                "node",
                Some("api.staging.example"),
                8443,
            ),
            f(TlsVerifyDisabled, "curl", Some("api.staging.example"), 8443),
            f(TlsVerifyDisabled, "node", Some("api.example"), 8443),
            f(
                TlsVerifyDisabled,
                "node",
                Some("staging.example.evil"),
                8443,
            ),
            f(TlsVerifyDisabled, "node", None, 8443),
            f(TlsVerifyDisabled, "node", Some("api.staging.example"), 443),
        ] {
            assert!(s.find(&other, now).is_none(), "{other:?}");
        }
        let line = s.iter().next().unwrap().describe();
        assert!(line.starts_with("TLS_VERIFY_DISABLED (comm node"), "{line}");
        assert!(line.ends_with(": staging proxy"), "{line}");
    }

    #[test]
    fn expiry() {
        let all = compile(
            r#"
[[suppress]]
id = "PLAINTEXT_CREDENTIALS"
reason = "old"
expires = 2020-01-31

[[suppress]]
id = "PLAINTEXT_CREDENTIALS"
reason = "until noon"
expires = 2030-06-01T12:00:00Z
"#,
        )
        .unwrap();
        let day = |y, m, d| {
            SystemTime::UNIX_EPOCH + Duration::from_secs(days_from_civil(y, m, d) as u64 * 86_400)
        };
        assert_eq!(day(1970, 1, 1), SystemTime::UNIX_EPOCH);
        assert_eq!(
            all[0].expires.unwrap(),
            day(2020, 2, 1) - Duration::from_secs(1),
            "a date lasts to its end"
        );
        assert_eq!(
            all[1].expires.unwrap(),
            day(2030, 6, 1) + Duration::from_secs(12 * 3600)
        );
        let (active, expired) = Suppressions::new(all, day(2025, 1, 1));
        assert_eq!(expired.len(), 1);
        let f = finding(FindingId::PlaintextCredentials, "curl", None, 80);
        assert!(active.find(&f, day(2025, 1, 1)).is_some());
        assert!(
            active.find(&f, day(2031, 1, 1)).is_none(),
            "expired during the run"
        );
    }

    #[test]
    fn bad_tables_are_errors_naming_the_line() {
        let err = |text: &str| format!("{:#}", compile(text).unwrap_err());
        let e = err("[tls]\n\n[[suppress]]\nid = \"TLS_NOPE\"\nreason = \"x\"\n");
        assert!(e.contains("line 4") && e.contains("TLS_NOPE"), "{e}");
        let e = err("[[suppress]]\nid = \"HSTS_MISSING\"\n");
        assert!(e.contains("reason"), "{e}");
        let e = err("[[suppress]]\nid = \"HSTS_MISSING\"\nreason = \"  \"\n");
        assert!(e.contains("line 3") && e.contains("empty"), "{e}");
        let e = err("[[suppress]]\nid = \"HSTS_MISSING\"\nreason = \"r\"\ncmdline = '('\n");
        assert!(e.contains("line 4") && e.contains("regex"), "{e}");
        let e = err("[[suppress]]\nid = \"HSTS_MISSING\"\nreason = \"r\"\nprocess = \"x\"\n");
        assert!(e.contains("process"), "unknown keys are refused: {e}");
        let e = err("[[suppress]]\nid = \"HSTS_MISSING\"\nreason = \"r\"\nexpires = 12:00:00\n");
        assert!(e.contains("needs a date"), "{e}");
        let e = err("[[suppress]]\nid = \"HSTS_MISSING\"\nreason = \"r\"\nport = 70000\n");
        assert!(e.contains("line 4"), "{e}");
    }
}
