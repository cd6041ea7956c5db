use super::*;
use crate::detect::test_support::fp;

fn argv(cmd: &[&str]) -> Vec<String> {
    cmd.iter().map(|s| s.to_string()).collect()
}

/// The legacy wrapper: argv only.
fn r(cmd: &[&str]) -> Vec<String> {
    redact(&argv(cmd))
}

fn hidden(cmd: &[&str]) -> RedactedCmdline {
    CmdlineRedactor::new(fp(), false).redact(&argv(cmd))
}

fn shown(cmd: &[&str]) -> RedactedCmdline {
    CmdlineRedactor::new(fp(), true).redact(&argv(cmd))
}

fn has_secret(redacted: &RedactedCmdline, value: &str) -> bool {
    redacted
        .secrets
        .iter()
        .any(|s| s.as_bytes() == value.as_bytes())
}

/// The redacted argv does not contain `secret`, and the secrets returned do.
fn assert_removed(redacted: &RedactedCmdline, secret: &str) {
    for arg in &redacted.argv {
        assert!(
            !arg.contains(secret),
            "{secret:?} still in {:?}",
            redacted.argv
        );
    }
    assert!(
        has_secret(redacted, secret),
        "{secret:?} not among the {} secrets returned",
        redacted.secrets.len()
    );
}

const GHP: &str = "ghp_R2d2C3poX9k4L7m8N1q2W3e4R5t6Y7u8I9o0";
const TELEGRAM: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ";

// --- The forms of the issue ---------------------------------------------------------------

#[test]
fn node_inline_code_is_replaced_by_length_and_fingerprint() {
    let code = "fetch(url,{headers:{'X-API-Key':'k-8f2a9c71e4'}})";
    let out = hidden(&["node", "-e", code]);
    let expected = format!(
        "<inline code: {} bytes, {}>",
        code.len(),
        fp().fingerprint(code.as_bytes())
    );
    assert_eq!(out.argv, ["node", "-e", expected.as_str()]);
    // The secret inside hidden code is still returned for scrubbing.
    assert_removed(&out, "k-8f2a9c71e4");
}

#[test]
fn inline_code_flags_of_each_interpreter_are_hidden() {
    let code = "print(1)";
    for cmd in [
        &["node", "--eval", code][..],
        &["node", "-p", code],
        &["/usr/bin/nodejs", "--require", "dotenv/config", "-e", code],
        &["bun", "-e", code],
        &["deno", "eval", code],
        &["python3", "-c", code],
        &["python3.12", "-u", "-c", code],
        &["pypy3", "-X", "dev", "-c", code],
        &["perl", "-e", code],
        &["perl", "-lne", code],
        &["ruby", "-e", code],
        &["ruby", "-I", "lib", "-ne", code],
        &["php", "-r", code],
        &["sh", "-c", code],
        &["bash", "-lc", code],
        &["bash", "-o", "pipefail", "-c", code],
        &["zsh", "-c", code],
        &["lua", "-e", code],
        &["Rscript", "-e", code],
        &["julia", "-e", code],
        &["sudo", "-u", "app", "python3", "-c", code],
        &["env", "A=1", "node", "-e", code],
    ] {
        let out = hidden(cmd);
        assert!(
            out.argv
                .last()
                .unwrap()
                .starts_with("<inline code: 8 bytes, hmac-sha256:"),
            "{cmd:?} -> {:?}",
            out.argv
        );
        assert_eq!(out.argv[..cmd.len() - 1], cmd[..cmd.len() - 1], "{cmd:?}");
    }
}

#[test]
fn attached_inline_code_keeps_the_flag() {
    let marker = |code: &str| {
        format!(
            "<inline code: {} bytes, {}>",
            code.len(),
            fp().fingerprint(code.as_bytes())
        )
    };
    assert_eq!(
        hidden(&["node", "--eval=run()"]).argv[1],
        format!("--eval={}", marker("run()"))
    );
    assert_eq!(
        hidden(&["python", "-cimport os"]).argv[1],
        format!("-c{}", marker("import os"))
    );
    assert_eq!(
        hidden(&["perl", "-leprint 1"]).argv[1],
        format!("-le{}", marker("print 1"))
    );
}

#[test]
fn python_inline_code_secret_is_returned_and_shown_code_is_redacted() {
    let code = "import requests; requests.post(u, data={'client_id': 'app', 'client_secret': 's3cr3t-value'})";
    let out = hidden(&["python3", "-c", code]);
    assert!(out.argv[2].starts_with("<inline code: "));
    assert_removed(&out, "s3cr3t-value");

    let out = shown(&["python3", "-c", code]);
    assert_eq!(
        out.argv[2],
        "import requests; requests.post(u, data={'client_id': 'app', 'client_secret': '<redacted>'})"
    );
    assert_removed(&out, "s3cr3t-value");
}

#[test]
fn shown_node_code_hides_header_values_tokens_and_bearer() {
    let code = format!(
        "fetch('https://api.example/v1',{{headers:{{'X-API-Key':'k-8f2a9c71e4', Authorization: 'Bearer tok123456'}}}}); const gh = '{GHP}'; const h = 'Bearer abc123def456';"
    );
    let out = shown(&["node", "-e", &code]);
    assert_eq!(
        out.argv[2],
        "fetch('https://api.example/v1',{headers:{'X-API-Key':'<redacted>', Authorization: '<redacted>'}}); const gh = '<redacted>'; const h = 'Bearer <redacted>';"
    );
    for secret in [
        "k-8f2a9c71e4",
        "Bearer tok123456",
        "tok123456",
        GHP,
        "abc123def456",
    ] {
        assert_removed(&out, secret);
    }
}

#[test]
fn shown_shell_code_goes_through_the_argv_rules() {
    let code = "mysql -uroot -pS3cretPw appdb -e 'select 1' && curl -sS -H \"Authorization: Bearer tok-123456\" https://u:pw123@h/x?api_key=k9 | redis-cli -a rpass9 ping; ls -a";
    let out = shown(&["bash", "-c", code]);
    assert_eq!(
        out.argv[2],
        "mysql -uroot -p<redacted> appdb -e 'select 1' && curl -sS -H \"Authorization: <redacted>\" https://u:<redacted>@h/x?api_key=<redacted> | redis-cli -a <redacted> ping; ls -a"
    );
    for secret in ["S3cretPw", "tok-123456", "pw123", "k9", "rpass9"] {
        assert_removed(&out, secret);
    }
    // Hidden, the same secrets are returned.
    let out = hidden(&["sh", "-c", code]);
    for secret in ["S3cretPw", "tok-123456", "pw123", "k9", "rpass9"] {
        assert_removed(&out, secret);
    }
}

#[test]
fn shell_assignments_and_nested_code_are_redacted_when_shown() {
    let out = shown(&[
        "sh",
        "-c",
        "export OPENAI_API_KEY=sk-live-abc123; DB_PASSWORD='p w' node -e \"x('k')\" ",
    ]);
    assert_eq!(
        out.argv[2],
        "export OPENAI_API_KEY=<redacted>; DB_PASSWORD='<redacted>' node -e \"x('k')\" "
    );
    assert_removed(&out, "sk-live-abc123");
    assert_removed(&out, "p w");
}

#[test]
fn url_userinfo_without_password_is_hidden_whole() {
    let url = format!("https://{GHP}@github.com/acme/private.git");
    let out = hidden(&["git", "clone", &url]);
    assert_eq!(
        out.argv[2],
        "https://<redacted>@github.com/acme/private.git"
    );
    assert_removed(&out, GHP);
    // A token-shaped user with a dummy password hides both.
    let url = format!("https://{GHP}:x-oauth-basic@github.com/a.git");
    let out = hidden(&["git", "clone", &url]);
    assert_eq!(out.argv[2], "https://<redacted>@github.com/a.git");
    assert_removed(&out, GHP);
    // user:password keeps the user; the raw and decoded forms are returned.
    let out = hidden(&[
        "git",
        "clone",
        "https://x-access-token:p%40ss@github.com/a.git",
    ]);
    assert_eq!(
        out.argv[2],
        "https://x-access-token:<redacted>@github.com/a.git"
    );
    assert_removed(&out, "p%40ss");
    assert!(has_secret(&out, "p@ss"));
}

#[test]
fn mysql_attached_password_is_hidden_and_bare_p_is_not_a_value() {
    let out = hidden(&["mysql", "-h", "db", "-u", "app", "-pS3cret!", "appdb"]);
    assert_eq!(
        out.argv,
        ["mysql", "-h", "db", "-u", "app", "-p<redacted>", "appdb"]
    );
    assert_removed(&out, "S3cret!");
    assert_eq!(
        r(&["mysql", "-p", "appdb"]),
        ["mysql", "-p", "appdb"],
        "-p alone prompts"
    );
    assert_eq!(r(&["/usr/bin/mysqldump", "-pX1", "db"])[1], "-p<redacted>");
    assert_eq!(r(&["mariadb-dump", "-pX1", "db"])[1], "-p<redacted>");
    assert_eq!(
        r(&["docker", "exec", "db", "mysqladmin", "-pX1", "status"])[4],
        "-p<redacted>"
    );
}

#[test]
fn p_is_a_port_for_psql_and_ssh() {
    for cmd in [
        &["psql", "-p5432", "-U", "app"][..],
        &["psql", "-p", "5432"],
        &["ssh", "-p2222", "host"],
        &["pg_dump", "-p5433", "db"],
    ] {
        assert_eq!(r(cmd), cmd);
    }
}

#[test]
fn redis_cli_a_is_program_specific() {
    let out = hidden(&["redis-cli", "-h", "cache", "-aR3disPw", "PING"]);
    assert_eq!(
        out.argv,
        ["redis-cli", "-h", "cache", "-a<redacted>", "PING"]
    );
    assert_removed(&out, "R3disPw");
    assert_eq!(
        r(&["valkey-cli", "-a", "pw", "PING"]),
        ["valkey-cli", "-a", "<redacted>", "PING"]
    );
    assert_eq!(r(&["ls", "-a", "/tmp"]), ["ls", "-a", "/tmp"]);
    assert_eq!(r(&["ls", "-al"]), ["ls", "-al"]);
    assert_eq!(
        r(&["git", "commit", "-a", "-m", "msg"]),
        ["git", "commit", "-a", "-m", "msg"]
    );
    // A URI given to `redis-cli -u` goes through the URL rules.
    assert_eq!(
        r(&["redis-cli", "-u", "redis://default:pw@cache:6379/0"])[2],
        "redis://default:<redacted>@cache:6379/0"
    );
}

#[test]
fn curl_attached_and_clustered_options() {
    let out = hidden(&["curl", "-uadmin:pa55", "http://h/"]);
    assert_eq!(out.argv[1], "-uadmin:<redacted>");
    assert_removed(&out, "pa55");
    assert!(
        has_secret(&out, "admin:pa55"),
        "the user:pass that Basic encodes"
    );

    let out = hidden(&["curl", "-sSu", "admin:pa55", "http://h/"]);
    assert_eq!(out.argv[2], "admin:<redacted>");

    let out = hidden(&["curl", "-HAuthorization: Bearer t0ken-abc", "http://h/"]);
    assert_eq!(out.argv[1], "-HAuthorization: <redacted>");
    assert_removed(&out, "t0ken-abc");

    let out = hidden(&["curl", "-sH", "X-API-Key: k-123", "http://h/"]);
    assert_eq!(out.argv[2], "X-API-Key: <redacted>");
    assert_removed(&out, "k-123");

    let out = hidden(&[
        "curl",
        "-b",
        "session=s3ss10n-value-1; theme=dark",
        "http://h/",
    ]);
    assert_eq!(out.argv[2], "<redacted>");
    assert_removed(&out, "s3ss10n-value-1");
    assert_eq!(
        r(&["curl", "-b", "cookies.txt", "http://h/"])[2],
        "cookies.txt"
    );

    // A token given as the user with an empty password (`-u sk_live_...:`).
    let out = hidden(&["curl", "-u", "sk_live_abc:", "https://api.stripe.com/v1"]);
    assert_eq!(out.argv[2], "<redacted>:");
    assert_removed(&out, "sk_live_abc");

    // Basic credentials in a header: the decoded forms are returned too.
    let out = hidden(&[
        "curl",
        "-H",
        "Authorization: Basic YWxpY2U6czNjcmV0LXB3",
        "http://h/",
    ]);
    assert!(has_secret(&out, "s3cret-pw"));
    assert!(has_secret(&out, "alice:s3cret-pw"));
    assert!(has_secret(&out, "YWxpY2U6czNjcmV0LXB3"));

    // Form data.
    let out = hidden(&[
        "curl",
        "-d",
        "grant_type=password&username=u&password=p%40ss+word",
        "http://h/token",
    ]);
    assert_eq!(
        out.argv[2],
        "grant_type=password&username=u&password=<redacted>"
    );
    assert_removed(&out, "p%40ss+word");
    assert!(has_secret(&out, "p@ss word"));
}

#[test]
fn httpie_auth() {
    assert_eq!(
        r(&["http", "-a", "u:pw", "example.org"]),
        ["http", "-a", "u:<redacted>", "example.org"]
    );
    assert_eq!(
        r(&["xh", "--auth=u:pw", "example.org"])[1],
        "--auth=u:<redacted>"
    );
    assert_eq!(
        r(&["http", "example.org", "Authorization:Bearer abc"])[2],
        "Authorization: <redacted>"
    );
}

#[test]
fn libpq_conninfo_in_one_argument() {
    let out = hidden(&[
        "psql",
        "host=db.internal port=5432 user=app password=Pg-S3cret dbname=app",
    ]);
    assert_eq!(
        out.argv[1],
        "host=db.internal port=5432 user=app password=<redacted> dbname=app"
    );
    assert_removed(&out, "Pg-S3cret");

    let out = hidden(&["psql", "host=db password='a b\\'c' sslmode=disable"]);
    assert_eq!(out.argv[1], "host=db password=<redacted> sslmode=disable");
    assert!(has_secret(&out, "a b'c"));
    assert!(!out.argv[1].contains("a b"));

    let out = hidden(&["psql", "host = db  password = spaced1"]);
    assert_eq!(out.argv[1], "host = db  password = <redacted>");

    let out = hidden(&["psql", "postgresql://app:pgpw@db:5432/app?sslmode=disable"]);
    assert_eq!(
        out.argv[1],
        "postgresql://app:<redacted>@db:5432/app?sslmode=disable"
    );
}

#[test]
fn semicolon_connection_strings() {
    let out = hidden(&[
        "app",
        "--conn",
        "Server=tcp:db,1433;User Id=sa;Password=Sq1-Pass;Encrypt=false;",
    ]);
    assert_eq!(
        out.argv[2],
        "Server=tcp:db,1433;User Id=sa;Password=<redacted>;Encrypt=false;"
    );
    assert_removed(&out, "Sq1-Pass");

    let out = hidden(&["app", "Server=x;Pwd=\"p;w\";Database=d"]);
    assert_eq!(out.argv[1], "Server=x;Pwd=\"<redacted>\";Database=d");
    assert_removed(&out, "p;w");

    let out = hidden(&[
        "az",
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=QmFzZTY0S2V5PT0=;EndpointSuffix=core.windows.net",
    ]);
    assert!(out.argv[1].contains("AccountKey=<redacted>;"));
    assert_removed(&out, "QmFzZTY0S2V5PT0=");
    // Leading password: still a list, only the value goes.
    assert_eq!(
        r(&["app", "Password=p1;Server=x"])[1],
        "Password=<redacted>;Server=x"
    );
}

#[test]
fn path_tokens_in_urls() {
    let url = format!("https://api.telegram.org/bot{TELEGRAM}/getUpdates?offset=1");
    let out = hidden(&["curl", &url]);
    assert_eq!(
        out.argv[1],
        "https://api.telegram.org/bot<redacted>/getUpdates?offset=1"
    );
    assert_removed(&out, TELEGRAM);
    assert_eq!(
        r(&[
            "curl",
            "https://hooks.slack.com/services/T0/B0/xoxb-1234567890-abcdefABCDEF"
        ])[1],
        "https://hooks.slack.com/services/T0/B0/<redacted>"
    );
    for ordinary in [
        "https://api.example.com/v1/items/12345",
        "https://api.example.com/api/users/alice",
        "https://api.example.com/orders/3f2504e0-4f89-11d3-9a0c-0305e82c3301",
    ] {
        assert_eq!(r(&["curl", ordinary])[1], ordinary);
    }
}

#[test]
fn bare_tokens_and_json_arguments() {
    let out = hidden(&["mcp-server-github", GHP]);
    assert_eq!(out.argv[1], "<redacted>");
    assert_removed(&out, GHP);
    let out = hidden(&[
        "server",
        "--config",
        r#"{"db":{"password":"js0n-pw"},"port":1}"#,
    ]);
    assert_eq!(out.argv[2], r#"{"db":{"password":"<redacted>"},"port":1}"#);
    assert_removed(&out, "js0n-pw");
    let out = hidden(&[
        "java",
        "-Djavax.net.ssl.keyStorePassword=ks-pw",
        "-jar",
        "a.jar",
    ]);
    assert_eq!(out.argv[1], "-Djavax.net.ssl.keyStorePassword=<redacted>");
    let out = hidden(&["server", "-token", "go-style-1"]);
    assert_eq!(out.argv[2], "<redacted>");
    let out = hidden(&["openssl", "enc", "-pass", "pass:opensslpw"]);
    assert_eq!(out.argv[3], "<redacted>");
}

// --- Kept from before, extended -----------------------------------------------------------

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
    assert_eq!(
        r(&["env", "DB_PASSWORD=a b c", "app"])[1],
        "DB_PASSWORD=<redacted>",
        "an assignment's value is the whole rest"
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
    for cmd in [
        // Script arguments that look like interpreter flags belong to the script.
        &["node", "server.js", "-e", "production"][..],
        &["python3", "app.py", "-c", "config.yaml"],
        &["python3", "-m", "http.server", "-c", "x"],
        &["bash", "script.sh", "-c", "x"],
        // Flags that switch secrets on or off take no value.
        &["psql", "--no-password", "-h", "db"],
        &["ansible-playbook", "--ask-vault-password", "site.yml"],
        &[
            "docker",
            "login",
            "--password-stdin",
            "-u",
            "bob",
            "registry",
        ],
        // uid:gid is not user:password.
        &["docker", "run", "--user", "1000:1000", "img"],
        &[
            "npx",
            "-y",
            "@modelcontextprotocol/server-filesystem",
            "/home/user/projects",
        ],
        &[
            "uvx",
            "mcp-server-fetch",
            "--ignore-robots-txt",
            "--user-agent=bot/1.0",
        ],
        &[
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://10.0.0.2:8080/",
        ],
        &[
            "git",
            "log",
            "--format=%H",
            "da39a3ee5e6b4b0d3255bfef95601890afd80709",
        ],
        &[
            "docker",
            "pull",
            "nginx@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ],
        &[
            "kubectl",
            "get",
            "pod",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ],
        &["sh", "-c"],
        &["echo", "Basic authentication and a bearer token"],
        &["grep", "-r", "password", "src/"],
        &["app", "--token-file", "/run/secrets/token"],
    ] {
        let out = hidden(cmd);
        assert_eq!(out.argv, cmd, "{cmd:?}");
        assert!(out.secrets.is_empty(), "{cmd:?}");
    }
}

#[test]
fn returned_secrets_have_each_form_once() {
    let out = hidden(&[
        "curl",
        "-u",
        "svc:pw123",
        "https://svc:pw123@h/?token=pw123",
    ]);
    let count = out
        .secrets
        .iter()
        .filter(|s| s.as_bytes() == b"pw123")
        .count();
    assert_eq!(count, 1);
    // Debug shows lengths only.
    assert!(!format!("{out:?}").contains("pw123"));
}

#[test]
fn random_command_lines_never_panic_and_keep_their_length() {
    // Pieces that exercise every rule, glued at random: quotes, separators, multi-byte
    // characters next to the byte offsets the rules cut at.
    const PIECES: &[&str] = &[
        "-",
        "--",
        "=",
        ":",
        "'",
        "\"",
        "`",
        "\\",
        ";",
        "&",
        "|",
        " ",
        "\n",
        "@",
        "/",
        "?",
        "#",
        "%",
        "%4",
        "+",
        "<",
        ">",
        "{",
        "}",
        "(",
        ")",
        "é",
        "ß",
        "日本",
        "password",
        "token",
        "Authorization",
        "Bearer ",
        "Basic ",
        "http://",
        "u:p@h",
        "-p",
        "-a",
        "-e",
        "-c",
        "-H",
        "-u",
        "mysql",
        "redis-cli",
        "node",
        "sh",
        "bash",
        "curl",
        "python3",
        "perl",
        "deno",
        "eval",
        "host=db",
        "ghp_",
        "R2d2C3poX9k4L7m8N1q2W3e4R5t6Y7u8I9o0",
        "bot123456789:",
        "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ",
        "eyJ",
        ".",
        "x",
        "1",
    ];
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    for show in [false, true] {
        let redactor = CmdlineRedactor::new(fp(), show);
        for _ in 0..3000 {
            let args = next(6) + 1;
            let cmd: Vec<String> = (0..args)
                .map(|_| (0..next(8)).map(|_| PIECES[next(PIECES.len())]).collect())
                .collect();
            let out = redactor.redact(&cmd);
            assert_eq!(out.argv.len(), cmd.len(), "{cmd:?}");
        }
    }
}
