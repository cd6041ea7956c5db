//! Authentication endpoints: requests that exist to log in or obtain tokens. Sent in the
//! clear, they expose credentials even when none of our field rules recognise them, which is
//! why they are reported on their own (`PLAINTEXT_AUTH_ENDPOINT`).
//!
//! Paths are matched by segment, never by substring: `/v1/oauth/token` is a token endpoint,
//! `/tokenizer` is not.
use crate::detect::{DetectConfig, HttpRequest};

/// A path whose last segment is one of these is an authentication endpoint
/// (`/token`, `/connect/token`, `/api/login`, `/.well-known/openid-configuration`, ...).
const LAST_SEGMENTS: &[&str] = &[
    "token",
    "authorize",
    "login",
    "logon",
    "signin",
    "sign-in",
    "sign_in",
    "auth",
    "authenticate",
    "session",
    "sessions",
    // OpenID Connect and OAuth metadata, introspection and revocation (RFC 7662, 7009, 8414).
    "userinfo",
    "introspect",
    "revoke",
    "jwks",
    "jwks.json",
    "openid-configuration",
    "oauth-authorization-server",
    "device_authorization",
];

/// A path with one of these segments anywhere is part of an authentication API
/// (`/auth/...`, `/oauth2/v2.0/token`, `/realms/x/protocol/openid-connect/certs`).
const ANY_SEGMENTS: &[&str] = &["auth", "oauth", "oauth2", "openid-connect"];

/// First host labels of identity providers (`accounts.google.com`,
/// `login.microsoftonline.com`, `oauth2.googleapis.com`, `sts.amazonaws.com`, `auth.example`).
const AUTH_HOST_LABELS: &[&str] = &[
    "auth", "login", "oauth", "oauth2", "sso", "accounts", "idp", "sts",
];

/// Why `path` is a built-in authentication endpoint, e.g. `"path /oauth/token"`.
pub fn builtin_reason(path: &str) -> Option<String> {
    let mut segments = path.split('/').filter(|segment| !segment.is_empty());
    let mut last = None;
    let any = segments.by_ref().any(|segment| {
        last = Some(segment);
        ANY_SEGMENTS
            .iter()
            .any(|known| known.eq_ignore_ascii_case(segment))
    });
    // `any` stops early on a match; otherwise `last` is the final segment.
    let matched = any
        || last.is_some_and(|segment| {
            LAST_SEGMENTS
                .iter()
                .any(|known| known.eq_ignore_ascii_case(segment))
        });
    matched.then(|| format!("path {path}"))
}

/// Why the request goes to an authentication endpoint, from what the request line and `Host`
/// say for certain: built-in paths, configured paths, configured hosts.
pub fn reason(request: &HttpRequest, cfg: &DetectConfig) -> Option<String> {
    if let Some(reason) = builtin_reason(&request.path) {
        return Some(reason);
    }
    if cfg.auth_paths.iter().any(|re| re.is_match(&request.path)) {
        return Some(format!("path {} matches auth_paths", request.path));
    }
    let host = request.host.as_deref()?;
    cfg.auth_hosts
        .iter()
        .any(|re| re.is_match(host))
        .then(|| format!("host {host} matches auth_hosts"))
}

/// The weakest evidence, used last: a host whose first label names an identity provider.
pub(super) fn identity_provider_host(request: &HttpRequest) -> Option<String> {
    let host = request.host.as_deref()?;
    let first_label = host.split('.').next().unwrap_or_default();
    // A bare "auth" host name (no dots) is as likely a container name as an identity provider.
    let is_domain = host.contains('.') && !host.starts_with('[');
    (is_domain && AUTH_HOST_LABELS.contains(&first_label))
        .then(|| format!("host {host} is an identity provider name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_auth(path: &str) -> bool {
        builtin_reason(path).is_some()
    }

    #[test]
    fn token_and_login_paths_match_as_last_segment() {
        for path in [
            "/token",
            "/oauth/token",
            "/oauth2/token",
            "/v1/oauth/token",
            "/connect/token",
            "/oauth/authorize",
            "/authorize",
            "/login",
            "/api/login",
            "/signin",
            "/sign-in",
            "/session",
            "/sessions",
            "/users/sign_in",
            "/token/",
            "/LOGIN",
        ] {
            assert!(is_auth(path), "{path}");
        }
    }

    #[test]
    fn openid_connect_endpoints_match() {
        for path in [
            "/.well-known/openid-configuration",
            "/userinfo",
            "/oauth2/introspect",
            "/revoke",
            "/protocol/openid-connect/token",
            "/realms/main/protocol/openid-connect/certs",
            "/jwks",
            "/.well-known/jwks.json",
        ] {
            assert!(is_auth(path), "{path}");
        }
    }

    #[test]
    fn auth_prefix_matches_whole_segment() {
        assert!(is_auth("/auth"));
        assert!(is_auth("/auth/callback"));
        assert!(is_auth("/api/auth/me"));
        assert!(!is_auth("/author/42"));
        assert!(!is_auth("/authors"));
    }

    #[test]
    fn substrings_and_other_segments_do_not_match() {
        for path in [
            "/tokenizer",
            "/api/tokens",
            "/tokens/count",
            "/token/usage/report",
            "/blog/login-tips/page",
            "/",
            "",
            "/v1/chat/completions",
            "/loginx",
        ] {
            assert!(!is_auth(path), "{path}");
        }
    }

    #[test]
    fn reason_names_the_path() {
        assert_eq!(
            builtin_reason("/v1/oauth/token").as_deref(),
            Some("path /v1/oauth/token")
        );
    }

    fn request(path: &str, host: Option<&str>) -> HttpRequest {
        HttpRequest {
            method: "GET".into(),
            path: path.into(),
            host: host.map(Into::into),
        }
    }

    #[test]
    fn configured_paths_and_hosts_extend_builtins() {
        let cfg = DetectConfig {
            auth_paths: vec![regex::Regex::new("^/internal/issue$").unwrap()],
            auth_hosts: vec![regex::Regex::new(r"^vault\.corp$").unwrap()],
            ..DetectConfig::default()
        };
        assert_eq!(
            reason(&request("/internal/issue", None), &cfg).as_deref(),
            Some("path /internal/issue matches auth_paths")
        );
        assert_eq!(
            reason(&request("/v1/secret", Some("vault.corp")), &cfg).as_deref(),
            Some("host vault.corp matches auth_hosts")
        );
        assert_eq!(reason(&request("/v1/secret", Some("api.corp")), &cfg), None);
    }

    #[test]
    fn identity_provider_host_names_match_on_first_label() {
        let provider = |host| identity_provider_host(&request("/x", Some(host)));
        assert_eq!(
            provider("login.microsoftonline.com").as_deref(),
            Some("host login.microsoftonline.com is an identity provider name")
        );
        assert!(provider("accounts.google.com").is_some());
        assert!(provider("auth").is_none());
        assert!(provider("authors.example.com").is_none());
        assert!(provider("api.example.com").is_none());
    }
}
