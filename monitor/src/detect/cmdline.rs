//! Secrets on command lines (`curl -H 'Authorization: Bearer …'`, `redis-cli -a …`,
//! `--password=…`, URLs with `user:pass@` or `?api_key=`) are replaced by `<redacted>` before a
//! command line is shown anywhere: the monitor must not become the leak it reports.
use super::{
    http::names::{api_key_header, is_secret_field, is_secret_query_parameter},
    DetectConfig,
};

pub const REDACTED: &str = "<redacted>";

/// Flags whose value is the secret itself (besides any flag named like a secret field).
const SECRET_VALUE_FLAGS: &[&str] = &["-a", "--pass", "--oauth2-bearer", "--proxy-pass"];
/// Flags whose value is `user:password`.
const USERPASS_FLAGS: &[&str] = &["-u", "--user", "-U", "--proxy-user"];
/// Flags whose value is an HTTP header line.
const HEADER_FLAGS: &[&str] = &["-H", "--header", "--proxy-header"];

fn is_sensitive_header(name: &str) -> bool {
    let name = name.trim();
    ["authorization", "proxy-authorization", "cookie"]
        .iter()
        .any(|h| h.eq_ignore_ascii_case(name))
        || api_key_header(name, &DetectConfig::default()).is_some()
}

/// `Authorization: Bearer x` -> `Authorization: <redacted>`.
fn redact_header(value: &str) -> Option<String> {
    let (name, _) = value.split_once(':')?;
    is_sensitive_header(name).then(|| format!("{name}: {REDACTED}"))
}

/// URLs: the password of `user:password@`, and secret query parameters.
fn redact_url(arg: &str) -> Option<String> {
    let scheme_end = arg.find("://")?;
    let mut out = arg.to_string();
    let mut changed = false;
    let authority_start = scheme_end + 3;
    let authority_end = arg[authority_start..]
        .find(['/', '?', '#'])
        .map_or(arg.len(), |i| authority_start + i);
    if let Some(at) = arg[authority_start..authority_end].rfind('@') {
        let userinfo = &arg[authority_start..authority_start + at];
        if let Some((user, _)) = userinfo.split_once(':') {
            out = format!(
                "{}{user}:{REDACTED}{}",
                &arg[..authority_start],
                &arg[authority_start + at..]
            );
            changed = true;
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let (query, fragment) = match query.find('#') {
            Some(h) => query.split_at(h),
            None => (query, ""),
        };
        let mut parts = Vec::new();
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some((name, value)) if !value.is_empty() && is_secret_query_parameter(name) => {
                    parts.push(format!("{name}={REDACTED}"));
                    changed = true;
                }
                _ => parts.push(pair.to_string()),
            }
        }
        out = format!("{head}{}{fragment}", parts.join("&"));
    }
    changed.then_some(out)
}

fn flag_name(flag: &str) -> &str {
    flag.trim_start_matches('-')
}

/// A command line with its secrets replaced.
pub fn redact(argv: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(argv.len());
    let mut next: Option<&str> = None;
    for arg in argv {
        if let Some(flag) = next.take() {
            out.push(if HEADER_FLAGS.contains(&flag) {
                redact_header(arg).unwrap_or_else(|| arg.clone())
            } else if USERPASS_FLAGS.contains(&flag) {
                match arg.split_once(':') {
                    Some((user, _)) => format!("{user}:{REDACTED}"),
                    None => arg.clone(),
                }
            } else {
                REDACTED.to_string()
            });
            continue;
        }
        let is_flag = arg.starts_with('-') && arg.len() > 1;
        if is_flag {
            if let Some((flag, value)) = arg.split_once('=') {
                if !value.is_empty()
                    && (SECRET_VALUE_FLAGS.contains(&flag) || is_secret_field(flag_name(flag)))
                {
                    out.push(format!("{flag}={REDACTED}"));
                    continue;
                }
                if USERPASS_FLAGS.contains(&flag) {
                    if let Some((user, _)) = value.split_once(':') {
                        out.push(format!("{flag}={user}:{REDACTED}"));
                        continue;
                    }
                }
                if HEADER_FLAGS.contains(&flag) {
                    if let Some(h) = redact_header(value) {
                        out.push(format!("{flag}={h}"));
                        continue;
                    }
                }
            } else if SECRET_VALUE_FLAGS.contains(&arg.as_str())
                || USERPASS_FLAGS.contains(&arg.as_str())
                || HEADER_FLAGS.contains(&arg.as_str())
                || (arg.starts_with("--") && is_secret_field(flag_name(arg)))
            {
                next = Some(arg.as_str());
                out.push(arg.clone());
                continue;
            }
        }
        if let Some(url) = redact_url(arg) {
            out.push(url);
            continue;
        }
        if let Some(h) = redact_header(arg).filter(|_| !is_flag && arg.contains(": ")) {
            out.push(h);
            continue;
        }
        // NAME=value (env-style): a secret-looking name hides its value.
        if let Some((name, value)) = arg.split_once('=') {
            if !is_flag && !value.is_empty() && !name.contains('/') && is_secret_field(name) {
                out.push(format!("{name}={REDACTED}"));
                continue;
            }
        }
        out.push(arg.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(cmd: &[&str]) -> Vec<String> {
        redact(&cmd.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn curl_headers_userpass_and_urls() {
        assert_eq!(
            r(&[
                "curl",
                "-H",
                "Authorization: Bearer abc123",
                "-H",
                "Accept: json",
                "http://h/"
            ]),
            [
                "curl",
                "-H",
                "Authorization: <redacted>",
                "-H",
                "Accept: json",
                "http://h/"
            ]
        );
        assert_eq!(
            r(&["curl", "-u", "svc:pw123", "http://h/"]),
            ["curl", "-u", "svc:<redacted>", "http://h/"]
        );
        assert_eq!(r(&["curl", "--user=svc:pw"])[1], "--user=svc:<redacted>");
        assert_eq!(
            r(&["curl", "http://h:1/v1?api_key=k1&q=2#frag"])[1],
            "http://h:1/v1?api_key=<redacted>&q=2#frag"
        );
        assert_eq!(
            r(&["curl", "https://svc:pw@h/x"])[1],
            "https://svc:<redacted>@h/x"
        );
        assert_eq!(
            r(&["curl", "-H", "X-API-Key: k"])[2],
            "X-API-Key: <redacted>"
        );
        assert_eq!(
            r(&["curl", "--header=Cookie: s=1"])[1],
            "--header=Cookie: <redacted>"
        );
    }

    #[test]
    fn secret_flags_and_env_style_arguments() {
        assert_eq!(
            r(&["redis-cli", "-h", "h", "-a", "pw", "PING"]),
            ["redis-cli", "-h", "h", "-a", "<redacted>", "PING"]
        );
        assert_eq!(r(&["srv", "--password", "pw"])[2], "<redacted>");
        assert_eq!(r(&["srv", "--api-key=k"])[1], "--api-key=<redacted>");
        assert_eq!(r(&["srv", "--client-secret", "s"])[2], "<redacted>");
        assert_eq!(
            r(&["env", "OPENAI_API_KEY=sk-1", "node", "s.js"])[1],
            "OPENAI_API_KEY=<redacted>"
        );
        assert_eq!(
            r(&["docker", "run", "-e", "DB_PASSWORD=x"])[3],
            "DB_PASSWORD=<redacted>"
        );
    }

    #[test]
    fn ordinary_arguments_are_untouched() {
        let cmd = [
            "node",
            "/srv/mcp-server.js",
            "--port",
            "8080",
            "-v",
            "PATH=/usr/bin",
            "key=value.txt",
        ];
        assert_eq!(r(&cmd), cmd);
        assert_eq!(
            r(&["psql", "-p", "5432", "-U", "app"]),
            ["psql", "-p", "5432", "-U", "app"],
            "-U is a user name"
        );
        assert!(r(&[]).is_empty());
    }
}
