//! `--config FILE`: what this deployment knows that the monitor cannot guess (TOML).
//!
//! ```toml
//! [tls]
//! # CAs the monitor trusts in addition to the system store when it verifies server
//! # certificates itself (internal CAs your clients are configured with).
//! ca_files = ["/etc/ssl/internal-ca.pem"]
//! # Server names (regexes) whose sessions should be pinned, added to the built-in payment and
//! # identity providers (`pins::BUILTIN_HIGH_VALUE_HOSTS`).
//! high_value_hosts = ['\.payments\.example$']
//!
//! # SPKI pins (see `pins`): a host name or "*.domain", and the keys it may present.
//! [[pins]]
//! host = "api.payments.example"
//! spki = ["sha256/<base64>", "sha256/<backup key, base64>"]
//!
//! [plaintext]
//! api_key_headers = ["X-Internal-Token"]   # extra API-key header names
//! auth_hosts = ['^auth\.internal$']         # hosts that are authentication endpoints (regex)
//! auth_paths = ['^/v2/session$']            # extra authentication endpoint paths (regex)
//! # Key for secret fingerprints (64 hex digits). Default: random per start, so fingerprints
//! # only match within one run; set it to match them across runs and hosts.
//! fingerprint_key = "00112233..."
//!
//! [redaction]
//! # Inline code on command lines (`node -e ...`, `python -c ...`, `sh -c ...`) is shown as
//! # `<inline code: N bytes, hmac-sha256:...>` by default: code often embeds credentials in
//! # forms no rule recognises. `true` shows it, with the secrets that are recognised (quoted
//! # values after secret names, bearer tokens, token shapes, the command-line rules for shell
//! # code) still replaced by `<redacted>`.
//! show_inline_code = false
//!
//! [kubernetes]
//! # The kubelet's pod log directory (`<namespace>_<pod>_<uid>/<container>/`), where pod and
//! # container names are read; the kubelet's container symlinks are read from `containers`
//! # beside it. Mount it (read-only) at another path in a DaemonSet and say so here.
//! pod_log_dir = "/var/log/pods"
//! ```
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub plaintext: PlaintextConfig,
    #[serde(default)]
    pub redaction: RedactionConfig,
    #[serde(default)]
    pub kubernetes: KubernetesConfig,
    /// `[[suppress]]` tables as written (see [`crate::suppress`]).
    #[serde(default)]
    pub suppress: Vec<crate::suppress::SuppressConfig>,
    /// The same, checked and compiled by [`Config::parse`].
    #[serde(skip)]
    pub suppressions: Vec<crate::suppress::Suppression>,
    /// `[[pins]]` tables as written (see [`crate::pins`]).
    #[serde(default)]
    pub pins: Vec<crate::pins::PinConfig>,
    /// `[[pins]]` and `[tls] high_value_hosts`, checked and compiled by [`Config::parse`].
    #[serde(skip)]
    pub pinning: crate::pins::Pinning,
}

/// Where Kubernetes pod identity comes from (`process::pod`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    #[serde(default = "default_pod_log_dir")]
    pub pod_log_dir: PathBuf,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        Self {
            pod_log_dir: default_pod_log_dir(),
        }
    }
}

fn default_pod_log_dir() -> PathBuf {
    PathBuf::from(crate::process::pod::DEFAULT_POD_LOG_DIR)
}

/// How command lines are shown (`detect::cmdline::CmdlineRedactor`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactionConfig {
    /// Show interpreters' inline code (secrets in it still replaced) instead of its length and
    /// fingerprint.
    #[serde(default)]
    pub show_inline_code: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default)]
    pub ca_files: Vec<PathBuf>,
    /// Regexes on server names, compiled into [`Config::pinning`].
    #[serde(default)]
    pub high_value_hosts: Vec<toml::Spanned<String>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaintextConfig {
    #[serde(default)]
    pub api_key_headers: Vec<String>,
    #[serde(default)]
    pub auth_hosts: Vec<String>,
    #[serde(default)]
    pub auth_paths: Vec<String>,
    pub fingerprint_key: Option<String>,
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading --config {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in --config {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut config: Config = toml::from_str(text)?;
        if let Some(key) = &config.plaintext.fingerprint_key {
            config_key(key)?;
        }
        config.suppressions = config
            .suppress
            .iter()
            .map(|c| crate::suppress::Suppression::compile(c, text))
            .collect::<anyhow::Result<_>>()?;
        config.pinning =
            crate::pins::Pinning::compile(&config.pins, &config.tls.high_value_hosts, text)?;
        Ok(config)
    }

    /// The fingerprint key, if the config sets one.
    pub fn fingerprint_key(&self) -> anyhow::Result<Option<[u8; 32]>> {
        self.plaintext
            .fingerprint_key
            .as_deref()
            .map(config_key)
            .transpose()
    }
}

fn config_key(hex: &str) -> anyhow::Result<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        anyhow::bail!("plaintext.fingerprint_key must be 64 hex digits (32 bytes)");
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)?;
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let c = Config::parse(
            r#"
[tls]
ca_files = ["/etc/ssl/internal-ca.pem"]
[plaintext]
api_key_headers = ["X-Internal-Token"]
auth_hosts = ['^auth\.internal$']
fingerprint_key = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
[redaction]
show_inline_code = true
"#,
        )
        .unwrap();
        assert_eq!(
            c.tls.ca_files,
            vec![PathBuf::from("/etc/ssl/internal-ca.pem")]
        );
        assert_eq!(c.plaintext.api_key_headers, vec!["X-Internal-Token"]);
        assert_eq!(c.fingerprint_key().unwrap().unwrap()[31], 0x1f);
        assert!(c.redaction.show_inline_code);
        let empty = Config::parse("").unwrap();
        assert!(empty.tls.ca_files.is_empty());
        assert!(
            !empty.redaction.show_inline_code,
            "inline code is hidden by default"
        );
        assert!(
            !Config::parse("[redaction]\n")
                .unwrap()
                .redaction
                .show_inline_code
        );
    }

    #[test]
    fn pins_and_high_value_hosts() {
        let c = Config::parse(
            r#"
[tls]
ca_files = ["/etc/ssl/internal-ca.pem"]
high_value_hosts = ['\.payments\.example$']

[[pins]]
host = "api.payments.example"
spki = ["sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
        "sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]
"#,
        )
        .unwrap();
        assert_eq!(c.pinning.pins.len(), 1);
        assert!(c.pinning.high_value("api.payments.example").is_some());
        assert!(Config::default()
            .pinning
            .high_value("api.stripe.com")
            .is_some());
        let err =
            Config::parse("[[pins]]\nhost = \"x.example\"\nspki = [\"sha256/x\"]\n").unwrap_err();
        assert!(format!("{err:#}").contains("line 3"), "{err:#}");
        let err = Config::parse("[[pin]]\nhost = \"x.example\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("pin"), "{err:#}");
    }

    #[test]
    fn kubernetes_pod_log_dir() {
        assert_eq!(
            Config::default().kubernetes.pod_log_dir,
            PathBuf::from("/var/log/pods")
        );
        assert_eq!(
            Config::parse("[kubernetes]\n")
                .unwrap()
                .kubernetes
                .pod_log_dir,
            PathBuf::from("/var/log/pods")
        );
        let c = Config::parse("[kubernetes]\npod_log_dir = \"/host/var/log/pods\"\n").unwrap();
        assert_eq!(
            c.kubernetes.pod_log_dir,
            PathBuf::from("/host/var/log/pods")
        );
        let err = Config::parse("[kubernetes]\npod_log_directory = \"/x\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("pod_log_directory"), "{err:#}");
    }

    #[test]
    fn rejects_typos_and_bad_keys_clearly() {
        let err = Config::parse("[tls]\nca_file = []\n").unwrap_err();
        assert!(format!("{err:#}").contains("ca_file"), "{err:#}");
        let err = Config::parse("[plaintext]\nfingerprint_key = \"abc\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("64 hex digits"), "{err:#}");
        let err = Config::parse("[redaction]\nshow_code = true\n").unwrap_err();
        assert!(format!("{err:#}").contains("show_code"), "{err:#}");
        let err = Config::parse("[redaction]\nshow_inline_code = \"yes\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("show_inline_code"), "{err:#}");
    }
}
