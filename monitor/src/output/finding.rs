//! Findings: the catalogue (ids, severities, titles, remediations from DESIGN.md) and the
//! record a finding line is built from.
use std::{sync::Arc, time::SystemTime};

use serde::{Deserialize, Serialize};

use super::Destination;
use crate::process::ProcessInfo;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Severity {
    #[serde(rename = "HIGH")]
    High,
    #[serde(rename = "MEDIUM")]
    Medium,
    #[serde(rename = "LOW")]
    Low,
    #[serde(rename = "INFO")]
    Info,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Info,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::High => "HIGH",
            Severity::Medium => "MEDIUM",
            Severity::Low => "LOW",
            Severity::Info => "INFO",
        }
    }
}

/// Finding ids (the contract: DESIGN.md's table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FindingId {
    TlsVerifyDisabled,
    TlsInvalidCertAccepted,
    TlsHostnameUnchecked,
    TlsHostnameMismatchAccepted,
    TlsVerifyEnvDisabled,
    PlaintextCredentials,
    PlaintextAuthEndpoint,
    TlsUntrustedCa,
    TlsPinMismatch,
    TlsUnpinnedHighValue,
    TlsSinglePin,
    HstsMissing,
    McpEndpointPlaintext,
}

impl FindingId {
    pub const fn as_str(self) -> &'static str {
        match self {
            FindingId::TlsVerifyDisabled => "TLS_VERIFY_DISABLED",
            FindingId::TlsInvalidCertAccepted => "TLS_INVALID_CERT_ACCEPTED",
            FindingId::TlsHostnameUnchecked => "TLS_HOSTNAME_UNCHECKED",
            FindingId::TlsHostnameMismatchAccepted => "TLS_HOSTNAME_MISMATCH_ACCEPTED",
            FindingId::TlsVerifyEnvDisabled => "TLS_VERIFY_ENV_DISABLED",
            FindingId::PlaintextCredentials => "PLAINTEXT_CREDENTIALS",
            FindingId::PlaintextAuthEndpoint => "PLAINTEXT_AUTH_ENDPOINT",
            FindingId::TlsUntrustedCa => "TLS_UNTRUSTED_CA",
            FindingId::TlsPinMismatch => "TLS_PIN_MISMATCH",
            FindingId::TlsUnpinnedHighValue => "TLS_UNPINNED_HIGH_VALUE",
            FindingId::TlsSinglePin => "TLS_SINGLE_PIN",
            FindingId::HstsMissing => "HSTS_MISSING",
            FindingId::McpEndpointPlaintext => "MCP_ENDPOINT_PLAINTEXT",
        }
    }

    pub const fn severity(self) -> Severity {
        match self {
            FindingId::TlsUntrustedCa => Severity::Medium,
            FindingId::TlsUnpinnedHighValue => Severity::Medium,
            FindingId::TlsSinglePin => Severity::Info,
            FindingId::HstsMissing => Severity::Low,
            _ => Severity::High,
        }
    }

    pub const fn title(self) -> &'static str {
        match self {
            FindingId::TlsVerifyDisabled => {
                "TLS handshake completed with certificate verification turned off"
            }
            FindingId::TlsInvalidCertAccepted => {
                "Invalid server certificate accepted and the session used"
            }
            FindingId::TlsHostnameUnchecked => {
                "TLS certificate chain verified but the hostname never checked"
            }
            FindingId::TlsHostnameMismatchAccepted => {
                "Certificate for another name accepted and the session used"
            }
            FindingId::TlsVerifyEnvDisabled => {
                "Process runs with TLS verification disabled process-wide"
            }
            FindingId::PlaintextCredentials => "Credentials sent without TLS",
            FindingId::PlaintextAuthEndpoint => {
                "Authentication endpoint called over plaintext HTTP"
            }
            FindingId::TlsUntrustedCa => "TLS handshake failed: the server's CA is not trusted",
            FindingId::TlsPinMismatch => "Pinned host presented a key outside its pin set",
            FindingId::TlsUnpinnedHighValue => "High-value host reached without pinned keys",
            FindingId::TlsSinglePin => "Pinned host has a single pin and no backup key",
            FindingId::HstsMissing => {
                "HTTPS interface answered without a year-long Strict-Transport-Security"
            }
            FindingId::McpEndpointPlaintext => {
                "MCP server received client credentials over plain HTTP"
            }
        }
    }

    pub const fn remediation(self) -> &'static str {
        match self {
            FindingId::TlsVerifyDisabled => {
                "Turn certificate verification back on (remove verify=False, -k/--insecure, \
                 CERT_NONE, rejectUnauthorized:false, Go's InsecureSkipVerify: true). If the \
                 server uses an internal CA, install that CA in the client's trust store (Go: \
                 tls.Config.RootCAs or SSL_CERT_FILE) instead of disabling verification."
            }
            FindingId::TlsInvalidCertAccepted => {
                "Stop accepting certificates that fail verification: remove the bypass \
                 (rejectUnauthorized:false, an accept-all verify callback or Go \
                 VerifyPeerCertificate, verify=False, InsecureSkipVerify) and fix \
                 the certificate problem the evidence names (install the issuing CA, renew, or \
                 issue a certificate for the right name)."
            }
            FindingId::TlsHostnameUnchecked => {
                "Enable hostname verification (Python: keep check_hostname=True; OpenSSL: \
                 SSL_set1_host or X509_VERIFY_PARAM_set1_host before the handshake) so a valid \
                 certificate for another host is rejected."
            }
            FindingId::TlsHostnameMismatchAccepted => {
                "Do not override the hostname check (checkServerIdentity: () => undefined, \
                 check_hostname=False). Connect with the name the certificate was issued for, or \
                 issue a certificate that covers the name clients use."
            }
            FindingId::TlsVerifyEnvDisabled => {
                "Remove the process-wide bypass (NODE_TLS_REJECT_UNAUTHORIZED=0) from the \
                 environment and from code that sets it; give the process the CA it needs \
                 (NODE_EXTRA_CA_CERTS) instead."
            }
            FindingId::PlaintextCredentials => {
                "Send credentials only over TLS: switch the upstream URL to https:// (or enable \
                 sslmode=require / TLS for the database or cache) and rotate the exposed secret."
            }
            FindingId::PlaintextAuthEndpoint => {
                "Call authentication endpoints over HTTPS only; tokens and passwords exchanged \
                 with them are readable on the network path."
            }
            FindingId::TlsUntrustedCa => {
                "Install the CA that issued the server's certificate in the client's trust store \
                 (or configure it: NODE_EXTRA_CA_CERTS, ca=, --cacert, load_verify_locations). \
                 Do not disable verification to get past this error."
            }
            FindingId::TlsPinMismatch => {
                "Treat this as possible interception until explained: compare the observed keys \
                 with the server's real certificate. If the server rotated its key legitimately, \
                 add the new key to the host's [[pins]] spki list (egress-monitor pins prints \
                 it), and keep a backup key pinned so the next rotation is not a surprise."
            }
            FindingId::TlsUnpinnedHighValue => {
                "Pin the host's keys: add the [[pins]] entry from the evidence's snippet to the \
                 monitor's config (and, where the client supports it, pin in the client: curl \
                 --pinnedpubkey, OkHttp CertificatePinner), with a backup key."
            }
            FindingId::TlsSinglePin => {
                "Add a backup pin to the host's spki list: the key of the next certificate (a \
                 key generated ahead of rotation) or the issuing CA's key, so a rotation or a \
                 compromised key does not leave the host without an accepted pin."
            }
            FindingId::HstsMissing => {
                "Send `Strict-Transport-Security: max-age=31536000; includeSubDomains` on every \
                 HTTPS response, so browsers and clients that honour it never fall back to plain \
                 HTTP for this host."
            }
            FindingId::McpEndpointPlaintext => {
                "Serve the MCP endpoint over HTTPS only (TLS on the server or a terminating proxy \
                 in front of it), or bind it to loopback when only local clients use it; rotate \
                 the tokens and keys clients sent in the clear."
            }
        }
    }
}

/// One finding, with its evidence (already redacted by whoever built it).
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub time: SystemTime,
    pub id: FindingId,
    pub process: Arc<ProcessInfo>,
    pub destination: Option<Destination>,
    pub evidence: serde_json::Value,
    /// How many times it was seen (deduplicated per id, process and destination).
    pub count: u64,
}
