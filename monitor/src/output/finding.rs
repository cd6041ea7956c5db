//! Findings: the catalogue (ids, severities, titles, remediations from DESIGN.md) and the
//! record a finding line is built from.
use std::{sync::Arc, time::SystemTime};

use serde::Serialize;

use super::Destination;
use crate::process::ProcessInfo;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
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
        }
    }

    pub const fn severity(self) -> Severity {
        match self {
            FindingId::TlsUntrustedCa => Severity::Medium,
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
        }
    }

    pub const fn remediation(self) -> &'static str {
        match self {
            FindingId::TlsVerifyDisabled => {
                "Turn certificate verification back on (remove verify=False, -k/--insecure, \
                 CERT_NONE, rejectUnauthorized:false). If the server uses an internal CA, install \
                 that CA in the client's trust store instead of disabling verification."
            }
            FindingId::TlsInvalidCertAccepted => {
                "Stop accepting certificates that fail verification: remove the bypass \
                 (rejectUnauthorized:false, an accept-all verify callback, verify=False) and fix \
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
