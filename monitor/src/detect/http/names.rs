//! Names that mark a value as a secret: API-key headers, query parameters, form and JSON
//! fields. Kept in one place so the lists can be reviewed together.
use std::borrow::Cow;

use crate::detect::DetectConfig;

/// API-key headers, in the spelling used for `Credential::location`. Matched case-insensitively.
const API_KEY_HEADERS: &[&str] = &[
    // Generic conventions.
    "X-API-Key",
    "Api-Key",
    "X-Api-Token",
    "Api-Token",
    "X-Auth-Token",
    "X-Access-Token",
    "X-Session-Token",
    "Authorization-Token",
    "X-Auth-Key",
    "X-Client-Secret",
    // Vendors whose headers carry account-wide keys.
    "PRIVATE-TOKEN",
    "JOB-TOKEN",
    "Ocp-Apim-Subscription-Key",
    "X-Goog-Api-Key",
    "X-Amz-Security-Token",
    "X-Functions-Key",
    "X-Vault-Token",
    "X-Consul-Token",
    "X-Nomad-Token",
    "DD-API-KEY",
    "DD-APPLICATION-KEY",
    "X-RapidAPI-Key",
    "X-Algolia-API-Key",
    "X-Shopify-Access-Token",
];

/// The spelling to report for `name` if it is an API-key header (built-in or configured).
pub(crate) fn api_key_header<'c>(name: &str, cfg: &'c DetectConfig) -> Option<Cow<'c, str>> {
    if let Some(known) = API_KEY_HEADERS
        .iter()
        .find(|known| known.eq_ignore_ascii_case(name))
    {
        return Some(Cow::Borrowed(known));
    }
    cfg.api_key_headers
        .iter()
        .find(|extra| extra.eq_ignore_ascii_case(name))
        .map(|extra| Cow::Owned(crate::detect::printable_name(extra.as_bytes())))
}

/// Field names (normalised: lower case, without `_`, `-`, `.`) whose value is a secret wherever
/// they appear: query, form or JSON. `client_secret`, `clientSecret` and `client-secret` are one
/// name.
const SECRET_FIELDS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "pass",
    "passphrase",
    "secret",
    "clientsecret",
    "clientassertion",
    "assertion",
    "accesstoken",
    "refreshtoken",
    "idtoken",
    "subjecttoken",
    "actortoken",
    "sessiontoken",
    "authtoken",
    "apitoken",
    "token",
    "apikey",
    "apisecret",
    "privatekey",
    "secretkey",
    "secretaccesskey",
    "privatetoken",
];

/// Endings that make any normalised name a secret: `db_password`, `newPassword`,
/// `openai_api_key`, `shared_secret`. Deliberately not `token` (`next_page_token`, `csrf_token`).
const SECRET_FIELD_SUFFIXES: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "apikey",
    "accesstoken",
    "refreshtoken",
    "authtoken",
    "privatekey",
    "secretkey",
    "secretaccesskey",
];

/// Only meaningful in URLs: Google-style `?key=`, and the signatures of presigned URLs, which
/// grant access on their own until they expire.
const SECRET_QUERY_ONLY: &[&str] = &[
    "key",
    "xamzsignature",
    "xamzsecuritytoken",
    "xamzcredential",
    "xgoogsignature",
    "xgoogcredential",
];

fn normalise(name: &str) -> Option<String> {
    if name.len() > 64 {
        return None;
    }
    Some(
        name.chars()
            .filter(|c| !matches!(c, '_' | '-' | '.'))
            .map(|c| c.to_ascii_lowercase())
            .collect(),
    )
}

fn is_secret_normalised(name: &str) -> bool {
    SECRET_FIELDS.contains(&name) || SECRET_FIELD_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// A form or JSON field whose value is authentication material.
pub(crate) fn is_secret_field(name: &str) -> bool {
    normalise(name).is_some_and(|n| is_secret_normalised(&n))
}

/// A query parameter whose value is authentication material.
pub(crate) fn is_secret_query_parameter(name: &str) -> bool {
    normalise(name)
        .is_some_and(|n| is_secret_normalised(&n) || SECRET_QUERY_ONLY.contains(&n.as_str()))
}

/// OAuth 2 grant types (RFC 6749, 7522, 7523, 8628, 8693): a body carrying one is a token
/// request, whatever the path. Returned as our own constant so nothing from the wire is echoed.
pub(super) fn oauth_grant_type(value: &str) -> Option<&'static str> {
    const GRANT_TYPES: &[&str] = &[
        "password",
        "client_credentials",
        "authorization_code",
        "refresh_token",
        "urn:ietf:params:oauth:grant-type:device_code",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "urn:ietf:params:oauth:grant-type:saml2-bearer",
        "urn:ietf:params:oauth:grant-type:token-exchange",
    ];
    GRANT_TYPES
        .iter()
        .find(|known| known.eq_ignore_ascii_case(value.trim()))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_field_names_match_across_case_and_separators() {
        for name in [
            "password",
            "PASSWORD",
            "client_secret",
            "clientSecret",
            "client-secret",
            "refresh_token",
            "api_key",
            "apiKey",
            "db_password",
            "newPassword",
            "openai_api_key",
            "aws_secret_access_key",
        ] {
            assert!(is_secret_field(name), "{name}");
        }
    }

    #[test]
    fn ordinary_field_names_are_not_secrets() {
        for name in [
            "username",
            "grant_type",
            "client_id",
            "next_page_token",
            "csrf_token",
            "password_hint",
            "key",
            "keyboard",
            "scope",
        ] {
            assert!(!is_secret_field(name), "{name}");
        }
    }

    #[test]
    fn query_parameters_include_url_only_names() {
        assert!(is_secret_query_parameter("key"));
        assert!(is_secret_query_parameter("X-Amz-Signature"));
        assert!(is_secret_query_parameter("access_token"));
        assert!(is_secret_query_parameter("APIKEY"));
        assert!(!is_secret_query_parameter("page"));
        assert!(!is_secret_query_parameter("q"));
    }

    #[test]
    fn api_key_headers_match_case_insensitively_and_report_canonical_spelling() {
        let cfg = DetectConfig {
            api_key_headers: vec!["X-Internal-Key".into()],
            ..DetectConfig::default()
        };
        assert_eq!(
            api_key_header("x-api-key", &cfg).as_deref(),
            Some("X-API-Key")
        );
        assert_eq!(
            api_key_header("private-token", &cfg).as_deref(),
            Some("PRIVATE-TOKEN")
        );
        assert_eq!(
            api_key_header("X-INTERNAL-KEY", &cfg).as_deref(),
            Some("X-Internal-Key")
        );
        assert_eq!(api_key_header("x-request-id", &cfg), None);
    }

    #[test]
    fn grant_types_are_recognised_and_echo_only_constants() {
        assert_eq!(oauth_grant_type("PASSWORD"), Some("password"));
        assert_eq!(
            oauth_grant_type("client_credentials"),
            Some("client_credentials")
        );
        assert_eq!(oauth_grant_type("something_else"), None);
    }
}
