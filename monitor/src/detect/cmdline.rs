//! Secrets on command lines are replaced before a command line is shown anywhere: the monitor
//! must not become the leak it reports.
//!
//! [`CmdlineRedactor::redact`] walks the argv once, knowing which program each argument is
//! given to (the first argument, or a later one naming a known program: `sudo -u pg psql`,
//! `docker exec db mysql -p...`, `env A=1 node -e ...`), because flags mean different things in
//! different programs. It hides:
//! - values of secret flags: `--password x`, `--api-key=x`, `-Dclient.secret=x` (any flag named
//!   like a secret field, see `http::names`), `--pass`, `--oauth2-bearer`, `--proxy-pass`;
//!   `--user`/`--proxy-user` `user:pass` keep the user (`uid:gid` numbers are left alone);
//! - program-specific flags: `curl -u/-U user:pass` (also attached, `-uuser:pass`, and in
//!   clusters, `-su user:pass`), `curl -b name=value` (cookie data, not a cookie file),
//!   `httpie -a/--auth`, the MySQL and MariaDB clients' `-p<password>` (attached only: a bare
//!   `-p` prompts, and for `psql`/`ssh` `-p` is a port), `redis-cli -a <password>` and
//!   `-a<password>` (for `ls -a` it is nothing);
//! - header lines (`-H 'Authorization: Bearer x'`, attached `-H'...'`, `--header=Cookie: ...`,
//!   `X-API-Key:k` as an argument): the value, keeping the header name;
//! - URLs: `user:password@` keeps the user, a userinfo without a password (`https://TOKEN@host`)
//!   or whose user is token-shaped is hidden whole, secret query parameters, and
//!   credential-shaped path segments (same rules as HTTP requests, [`super::token`]);
//! - `NAME=value` arguments with a secret-looking name (`DB_PASSWORD=x`, `docker run -e ...`);
//!   libpq conninfo strings (`host=db password='a b'`); `;` connection strings
//!   (`Server=x;Password=p;`) and form data (`user=u&password=p`);
//! - quoted values after secret names anywhere in an argument (JSON, code:
//!   `{"password":"x"}`, `client_secret='x'`, `'X-API-Key': 'x'`), `Bearer`/`Basic` tokens, and
//!   words shaped like credentials (`ghp_...`, `AKIA...`, JWTs, long random strings);
//! - inline code given to an interpreter, replaced by `<inline code: N bytes, hmac-sha256:...>`
//!   (its length and keyed fingerprint: two processes running the same code can be matched)
//!   unless the configuration asks to show it (`[redaction] show_inline_code`); shown code
//!   still has the secrets above replaced, and shell code (`sh -c`) is split into commands
//!   whose words go through these same rules. Interpreters and their inline-code flags:
//!   `node`/`nodejs`/`tsx`/`ts-node` and `bun` (`-e`, `--eval`, `-p`, `--print`), `deno eval`,
//!   `python`/`pypy` (`-c`), `perl` (`-e`, `-E`, also in clusters such as `-lne`), `ruby`
//!   (`-e`), `php` (`-r`, `-B`, `-R`, `-E`), `sh`, `bash`, `zsh`, `dash`, `ksh`, `ash`, `mksh`,
//!   `fish` (`-c`, also `-lc`, `-ec`), `lua`/`luajit` (`-e`), `Rscript`/`R` (`-e`), `julia`
//!   (`-e`, `--eval`, `-E`, `--print`). Only while the interpreter reads its own options: in
//!   `node server.js -e prod` or `python app.py -c config.yaml` the flag belongs to the script.
//!
//! Every value removed is returned (decoded and as written) so the caller can scrub it from
//! everything written later. Not covered: secrets given positionally without any of the shapes
//! above (`mytool hunter2`), SQL passed to `psql -c`/`mysql -e`, PowerShell.
use std::sync::OnceLock;

use super::http::{self, names::api_key_header, names::is_secret_field};
use super::redact::Fingerprinter;
use super::secret::{push_unique, Secret};
use super::DetectConfig;

mod shell;
#[cfg(test)]
mod tests;
mod text;

/// What replaces a secret in a shown command line.
pub const REDACTED: &str = super::token::REDACTED;

/// Nesting of shell code followed (`sh -c "bash -c '...'"`); deeper code is still hidden or
/// scanned by the text rules, only not split into commands again.
const MAX_SHELL_DEPTH: usize = 4;

/// Flags whose value is the secret itself, in any program.
const SECRET_VALUE_FLAGS: &[&str] = &["--pass", "--oauth2-bearer", "--proxy-pass"];
/// Flags whose value is `user:password`, in any program.
const USER_FLAGS: &[&str] = &["--user", "--proxy-user"];
/// Flags whose value is an HTTP header line.
const HEADER_FLAGS: &[&str] = &["-H", "--header", "--proxy-header"];

/// Replaces secrets in command lines (see the module docs for the forms).
#[derive(Clone)]
pub struct CmdlineRedactor {
    /// Keys the fingerprint of hidden inline code (the run's fingerprint key, so code can be
    /// matched across processes like credentials).
    fingerprints: Fingerprinter,
    show_inline_code: bool,
}

impl std::fmt::Debug for CmdlineRedactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CmdlineRedactor")
            .field("show_inline_code", &self.show_inline_code)
            .finish_non_exhaustive()
    }
}

/// A command line with its secrets replaced, and the secrets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RedactedCmdline {
    pub argv: Vec<String>,
    /// Every secret value removed, in each form it was written in (never shown; for
    /// `output::scrub`).
    pub secrets: Vec<Secret>,
}

impl CmdlineRedactor {
    pub fn new(fingerprints: Fingerprinter, show_inline_code: bool) -> Self {
        Self {
            fingerprints,
            show_inline_code,
        }
    }

    /// The argv with secrets replaced, and every secret value it removed (so the caller can
    /// scrub them from everything written later).
    pub fn redact(&self, argv: &[String]) -> RedactedCmdline {
        let mut found = Found::default();
        let argv = self.redact_argv(argv, 0, &mut found);
        RedactedCmdline {
            argv,
            secrets: found.secrets,
        }
    }

    fn redact_argv<S: AsRef<str>>(
        &self,
        argv: &[S],
        depth: usize,
        found: &mut Found,
    ) -> Vec<String> {
        let mut walk = Walk {
            redactor: self,
            depth,
            found,
            program: Program::Other,
            options_open: false,
            pending: Pending::None,
        };
        argv.iter()
            .enumerate()
            .map(|(i, arg)| {
                if i == 0 {
                    walk.start(arg.as_ref())
                } else {
                    walk.arg(arg.as_ref())
                }
            })
            .collect()
    }

    /// Inline code as shown (secrets replaced); shell code is split into commands first.
    fn shown_code(&self, code: &str, shell: bool, depth: usize, found: &mut Found) -> String {
        let code = if shell && depth < MAX_SHELL_DEPTH {
            self.shell_code(code, depth, found)
        } else {
            code.to_owned()
        };
        text::redact(&code, found)
    }

    /// Runs each simple command of shell code through the argv rules and puts the redacted
    /// words back in place, quoted as they were.
    fn shell_code(&self, code: &str, depth: usize, found: &mut Found) -> String {
        let mut out = String::with_capacity(code.len());
        let mut at = 0;
        for command in shell::commands(code) {
            let argv: Vec<&str> = command.iter().map(|w| w.value.as_str()).collect();
            let redacted = self.redact_argv(&argv, depth + 1, found);
            for (word, new) in command.iter().zip(redacted) {
                if new != word.value {
                    out.push_str(&code[at..word.span.start]);
                    out.push_str(&shell::requote(&new, word));
                    at = word.span.end;
                }
            }
        }
        out.push_str(&code[at..]);
        out
    }

    fn inline_code_marker(&self, code: &str) -> String {
        format!(
            "<inline code: {} bytes, {}>",
            code.len(),
            self.fingerprints.fingerprint(code.as_bytes())
        )
    }
}

/// A command line with its secrets replaced.
///
/// Callers should move to [`CmdlineRedactor`], which also returns the secrets it removed (for
/// scrubbing) and fingerprints hidden code with the run's key; this wrapper uses a random key
/// of its own and never shows inline code.
pub fn redact(argv: &[String]) -> Vec<String> {
    static REDACTOR: OnceLock<CmdlineRedactor> = OnceLock::new();
    REDACTOR
        .get_or_init(|| CmdlineRedactor::new(Fingerprinter::random(), false))
        .redact(argv)
        .argv
}

/// Secret values removed so far, each form once.
#[derive(Default)]
struct Found {
    secrets: Vec<Secret>,
}

impl Found {
    fn add(&mut self, value: &str) {
        push_unique(&mut self.secrets, value.as_bytes());
    }

    fn extend(&mut self, secrets: Vec<Secret>) {
        for secret in secrets {
            push_unique(&mut self.secrets, secret.as_bytes());
        }
    }

    /// A value from a URL (userinfo, path): as written and percent-decoded.
    fn add_url_value(&mut self, raw: &str) {
        self.add(raw);
        let decoded: Vec<u8> = percent_encoding::percent_decode_str(raw).collect();
        push_unique(&mut self.secrets, &decoded);
    }

    /// A value from a query string or form data: as written, percent-decoded, and
    /// form-decoded (`+` is a space).
    fn add_form_value(&mut self, raw: &str) {
        self.add_url_value(raw);
        if raw.contains('+') {
            let decoded: Vec<u8> =
                percent_encoding::percent_decode_str(&raw.replace('+', " ")).collect();
            push_unique(&mut self.secrets, &decoded);
        }
    }
}

/// Programs whose flags the redactor knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Program {
    Other,
    Curl,
    Httpie,
    Mysql,
    RedisCli,
    Interpreter(Lang),
}

/// Interpreters that take inline code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lang {
    Node,
    Bun,
    Deno,
    Python,
    Perl,
    Ruby,
    Php,
    Shell,
    Lua,
    R,
    Julia,
}

impl Program {
    /// The program an argument names, by its file name (version suffixes dropped:
    /// `python3.12`, `perl5.36`). Names that are also common words (`http`, `R`) only count as
    /// the first argument or as a path.
    fn of(arg: &str, first: bool) -> Option<Self> {
        let name = arg.rsplit('/').next().unwrap_or(arg);
        if name.is_empty() || name.len() > 40 {
            return None;
        }
        let base = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
        let explicit = first || arg.contains('/');
        Some(match base {
            "node" | "nodejs" | "tsx" | "ts-node" => Self::Interpreter(Lang::Node),
            "bun" => Self::Interpreter(Lang::Bun),
            "deno" => Self::Interpreter(Lang::Deno),
            "python" | "pypy" => Self::Interpreter(Lang::Python),
            "perl" => Self::Interpreter(Lang::Perl),
            "ruby" => Self::Interpreter(Lang::Ruby),
            "php" => Self::Interpreter(Lang::Php),
            "sh" | "bash" | "zsh" | "dash" | "ksh" | "ash" | "mksh" | "fish" => {
                Self::Interpreter(Lang::Shell)
            }
            "lua" | "luajit" => Self::Interpreter(Lang::Lua),
            "Rscript" => Self::Interpreter(Lang::R),
            "R" if explicit => Self::Interpreter(Lang::R),
            "julia" => Self::Interpreter(Lang::Julia),
            "curl" => Self::Curl,
            "xh" | "xhs" => Self::Httpie,
            "http" | "https" if explicit => Self::Httpie,
            "redis-cli" | "valkey-cli" | "keydb-cli" | "redis-benchmark" | "valkey-benchmark" => {
                Self::RedisCli
            }
            _ if is_mysql_client(name) => Self::Mysql,
            _ => return None,
        })
    }
}

/// `mysql`, `mysqldump`, `mysqladmin`, `mariadb`, `mariadb-dump`, ... (not the servers).
fn is_mysql_client(name: &str) -> bool {
    (name.starts_with("mysql") || name.starts_with("mariadb"))
        && !matches!(
            name,
            "mysqld" | "mariadbd" | "mysqld_safe" | "mariadbd-safe"
        )
}

/// What the next argument is, because of the flag before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    None,
    /// The secret itself (`--password VALUE`, `redis-cli -a VALUE`).
    Secret,
    /// `user:password` (`curl -u`); `numeric_ids` leaves `uid:gid` alone.
    UserPass {
        numeric_ids: bool,
    },
    /// An HTTP header line (`curl -H`).
    Header,
    /// Cookie data or a cookie file (`curl -b`).
    Cookie,
    /// Inline code (`node -e CODE`).
    Code,
    /// The next operand is inline code, flags may come first (`sh -c [-x] CODE`,
    /// `deno eval [--print] CODE`).
    CodeOperand,
    /// A value of an interpreter option that is not code (`node -r dotenv/config`).
    OptionValue,
    /// The value of an option after which the interpreter reads no more options
    /// (`python -m module`, `php -f file`).
    LastOptionValue,
}

/// What an interpreter makes of a flag while it reads its options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InterpreterFlag {
    /// The next argument is code.
    Code,
    /// Code follows attached, from this byte offset (`-eCODE`, `--eval=CODE`, `-lneCODE`).
    CodeAttached(usize),
    /// The next operand is code.
    CodeOperand,
    /// The next argument is a value.
    Value,
    /// The next argument is a value and the interpreter's options end there.
    LastValue,
    /// Nothing the redactor cares about (boolean flags, attached values, unknown flags).
    Plain,
}

struct Walk<'a> {
    redactor: &'a CmdlineRedactor,
    depth: usize,
    found: &'a mut Found,
    program: Program,
    /// The interpreter is still reading its own options (before the script or the code).
    options_open: bool,
    pending: Pending,
}

fn is_flag(arg: &str) -> bool {
    arg.len() > 1 && arg.starts_with('-')
}

impl Walk<'_> {
    fn switch(&mut self, program: Program) {
        self.program = program;
        self.options_open = true;
        self.pending = Pending::None;
    }

    fn start(&mut self, arg: &str) -> String {
        if let Some(program) = Program::of(arg, true) {
            self.switch(program);
            return arg.to_owned();
        }
        // Shell commands may start with assignments (`TOKEN=x curl ...`).
        self.value(arg)
    }

    fn arg(&mut self, arg: &str) -> String {
        match std::mem::replace(&mut self.pending, Pending::None) {
            Pending::None => {}
            // `--password --verbose`: a long flag is not the value (a mistake, or a flag that
            // prompts); read it as the flag it is.
            Pending::Secret if arg.starts_with("--") => {}
            Pending::Secret => {
                self.found.add(arg);
                return REDACTED.to_owned();
            }
            Pending::UserPass { numeric_ids } => return self.user_pass(arg, numeric_ids),
            Pending::Header => return self.header(arg).unwrap_or_else(|| self.value(arg)),
            Pending::Cookie => return self.cookie(arg),
            Pending::Code => return self.code(arg),
            Pending::CodeOperand => {
                if arg == "--" {
                    self.pending = Pending::CodeOperand;
                    return arg.to_owned();
                }
                if !is_flag(arg) {
                    return self.code(arg);
                }
                let out = self.flag(arg);
                if self.pending == Pending::None {
                    self.pending = Pending::CodeOperand;
                }
                return out;
            }
            Pending::OptionValue => return self.value(arg),
            Pending::LastOptionValue => {
                self.options_open = false;
                return self.value(arg);
            }
        }
        if arg == "--" {
            if matches!(self.program, Program::Interpreter(_)) {
                self.options_open = false;
            }
            return arg.to_owned();
        }
        if is_flag(arg) {
            return self.flag(arg);
        }
        self.operand(arg)
    }

    fn operand(&mut self, arg: &str) -> String {
        if let Some(program) = Program::of(arg, false) {
            self.switch(program);
            return arg.to_owned();
        }
        if let Program::Interpreter(lang) = self.program {
            if self.options_open {
                if lang == Lang::Shell && (arg == "+o" || arg == "+O") {
                    self.pending = Pending::OptionValue;
                    return arg.to_owned();
                }
                if lang == Lang::Deno && arg == "eval" {
                    self.pending = Pending::CodeOperand;
                    return arg.to_owned();
                }
                // The script (or a subcommand): what follows is the script's.
                self.options_open = false;
            }
        }
        self.value(arg)
    }

    fn flag(&mut self, arg: &str) -> String {
        if let Some(out) = self.program_flag(arg) {
            return out;
        }
        self.generic_flag(arg)
    }

    /// Flags that mean something in the current program only.
    fn program_flag(&mut self, arg: &str) -> Option<String> {
        let short = !arg.starts_with("--");
        match self.program {
            Program::Curl => self.curl_flag(arg),
            Program::Httpie => {
                if arg == "-a" || arg == "--auth" {
                    self.pending = Pending::UserPass { numeric_ids: false };
                    Some(arg.to_owned())
                } else if let Some(value) = arg.strip_prefix("--auth=") {
                    Some(format!("--auth={}", self.user_pass(value, false)))
                } else {
                    let value = arg.strip_prefix("-a").filter(|v| short && !v.is_empty())?;
                    Some(format!("-a{}", self.user_pass(value, false)))
                }
            }
            Program::Mysql => {
                // `-p` alone prompts; the password can only be attached.
                let password = arg.strip_prefix("-p").filter(|v| short && !v.is_empty())?;
                self.found.add(password);
                Some(format!("-p{REDACTED}"))
            }
            Program::RedisCli => {
                if arg == "-a" {
                    self.pending = Pending::Secret;
                    return Some(arg.to_owned());
                }
                let password = arg.strip_prefix("-a").filter(|v| short && !v.is_empty())?;
                self.found.add(password);
                Some(format!("-a{REDACTED}"))
            }
            Program::Interpreter(lang) if self.options_open => match interpreter_flag(lang, arg) {
                InterpreterFlag::Plain => None,
                InterpreterFlag::Code => {
                    self.pending = Pending::Code;
                    Some(arg.to_owned())
                }
                InterpreterFlag::CodeOperand => {
                    self.pending = Pending::CodeOperand;
                    Some(arg.to_owned())
                }
                InterpreterFlag::Value => {
                    self.pending = Pending::OptionValue;
                    Some(arg.to_owned())
                }
                InterpreterFlag::LastValue => {
                    self.pending = Pending::LastOptionValue;
                    Some(arg.to_owned())
                }
                InterpreterFlag::CodeAttached(at) => {
                    let (flag, code) = arg.split_at(at);
                    Some(format!("{flag}{}", self.code(code)))
                }
            },
            _ => None,
        }
    }

    /// curl: `-u`/`-U` user:password, `-H` header, `-b` cookies; short options may be
    /// clustered (`-sSu user:pass`) and take their value attached (`-uuser:pass`).
    fn curl_flag(&mut self, arg: &str) -> Option<String> {
        match arg {
            "-u" | "-U" | "--user" | "--proxy-user" => {
                self.pending = Pending::UserPass { numeric_ids: false };
                return Some(arg.to_owned());
            }
            "-b" | "--cookie" => {
                self.pending = Pending::Cookie;
                return Some(arg.to_owned());
            }
            _ => {}
        }
        if let Some(value) = arg.strip_prefix("--cookie=") {
            return Some(format!("--cookie={}", self.cookie(value)));
        }
        if arg.starts_with("--") {
            return None;
        }
        /// curl's short options that take no value.
        const CURL_BOOLEAN: &str = "0123456#:aBfgGhiIjJkLlMnNOpqRsSvVZ";
        for (i, letter) in arg.char_indices().skip(1) {
            if CURL_BOOLEAN.contains(letter) {
                continue;
            }
            let (flag, value) = arg.split_at(i + letter.len_utf8());
            let next = match letter {
                'u' | 'U' => Pending::UserPass { numeric_ids: false },
                'H' => Pending::Header,
                'b' => Pending::Cookie,
                // Another option with a value: an attached one is an ordinary value.
                _ if value.is_empty() => return None,
                _ => return Some(format!("{flag}{}", self.value(value))),
            };
            if value.is_empty() {
                self.pending = next;
                return Some(arg.to_owned());
            }
            let value = match next {
                Pending::Header => self.header(value).unwrap_or_else(|| self.value(value)),
                Pending::Cookie => self.cookie(value),
                _ => self.user_pass(value, false),
            };
            return Some(format!("{flag}{value}"));
        }
        None
    }

    /// Flags that mean the same in every program.
    fn generic_flag(&mut self, arg: &str) -> String {
        // An attached header first: `-HAuthorization: a=b` must not be split at its `=`.
        if let Some(line) = arg.strip_prefix("-H").filter(|l| !l.is_empty()) {
            if let Some(header) = self.header(line) {
                return format!("-H{header}");
            }
        }
        if let Some((flag, value)) = arg.split_once('=') {
            if value.is_empty() {
                return arg.to_owned();
            }
            if SECRET_VALUE_FLAGS.contains(&flag) || is_secret_flag(flag) {
                self.found.add(value);
                return format!("{flag}={REDACTED}");
            }
            if USER_FLAGS.contains(&flag) {
                return format!("{flag}={}", self.user_pass(value, true));
            }
            if HEADER_FLAGS.contains(&flag) {
                if let Some(header) = self.header(value) {
                    return format!("{flag}={header}");
                }
            }
            return format!("{flag}={}", self.value(value));
        }
        if SECRET_VALUE_FLAGS.contains(&arg) || (is_secret_flag(arg) && !is_switch_name(arg)) {
            self.pending = Pending::Secret;
        } else if USER_FLAGS.contains(&arg) {
            self.pending = Pending::UserPass { numeric_ids: true };
        } else if HEADER_FLAGS.contains(&arg) {
            self.pending = Pending::Header;
        }
        arg.to_owned()
    }

    /// `user:password` -> `user:<redacted>`; `token:` (empty password: the user is the
    /// secret) and a token-shaped user hide everything; URLs go through the URL rules.
    fn user_pass(&mut self, value: &str, numeric_ids: bool) -> String {
        if value.contains("://") {
            return self.value(value);
        }
        let Some((user, password)) = value.split_once(':') else {
            return self.value(value);
        };
        let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if numeric_ids && numeric(user) && numeric(password) {
            return value.to_owned();
        }
        if password.is_empty() {
            if user.is_empty() {
                return value.to_owned();
            }
            self.found.add(user);
            return format!("{REDACTED}:");
        }
        self.found.add(password);
        self.found.add(value);
        if super::token::is_token(user) {
            self.found.add(user);
            return format!("{REDACTED}:{REDACTED}");
        }
        format!("{user}:{REDACTED}")
    }

    /// `Name: value` with a sensitive name -> `Name: <redacted>`.
    fn header(&mut self, line: &str) -> Option<String> {
        let (name, value) = line.split_once(':')?;
        let trimmed = name.trim();
        if trimmed.is_empty()
            || trimmed.contains(|c: char| c.is_whitespace())
            || !is_sensitive_header(trimmed)
            || value.trim().is_empty()
            || value.trim() == REDACTED
        {
            return None;
        }
        self.found
            .extend(http::header_secrets(trimmed, value.as_bytes()));
        Some(format!("{name}: {REDACTED}"))
    }

    /// `curl -b`: cookie data (`name=value; ...`) is hidden, a cookie file name is not.
    fn cookie(&mut self, value: &str) -> String {
        if !value.contains('=') {
            return self.value(value);
        }
        self.found
            .extend(http::header_secrets("cookie", value.as_bytes()));
        REDACTED.to_owned()
    }

    fn code(&mut self, code: &str) -> String {
        let Program::Interpreter(lang) = self.program else {
            return self.value(code);
        };
        if matches!(lang, Lang::Python | Lang::Shell) {
            // `python -c CODE args...`, `sh -c CODE $0 $1...`: the rest are the code's.
            self.options_open = false;
        }
        let redactor = self.redactor;
        let shown = redactor.shown_code(code, lang == Lang::Shell, self.depth, self.found);
        if redactor.show_inline_code {
            shown
        } else {
            redactor.inline_code_marker(code)
        }
    }

    /// An operand or a flag's value: assignments, conninfo, header lines, then the free-text
    /// rules (URLs, quoted values, tokens).
    fn value(&mut self, arg: &str) -> String {
        if let Some(redacted) = text::conninfo(arg, self.found) {
            return text::redact(&redacted, self.found);
        }
        if let Some(redacted) = self.assignment(arg) {
            return redacted;
        }
        if let Some(redacted) = self.header(arg) {
            return redacted;
        }
        text::redact(arg, self.found)
    }

    /// `NAME=value` (environment style) with a secret-looking name hides the whole value,
    /// spaces included; lists (`a=1;password=2`, `a=1&password=2`) are left to the text rules,
    /// which stop at the separators.
    fn assignment(&mut self, arg: &str) -> Option<String> {
        let (name, value) = arg.split_once('=')?;
        let plain_name = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
            && name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
        let list = value.contains('=') && value.contains([';', '&']);
        if !plain_name || value.is_empty() || list || !is_secret_name(name) {
            return None;
        }
        self.found.add(value);
        Some(format!("{name}={REDACTED}"))
    }
}

/// How an interpreter reads `arg` among its own options.
fn interpreter_flag(lang: Lang, arg: &str) -> InterpreterFlag {
    use InterpreterFlag::*;
    let attached = |prefix: &str| arg.starts_with(prefix) && arg.len() > prefix.len();
    match lang {
        Lang::Node | Lang::Bun => {
            const CODE: &[&str] = &["-e", "--eval", "-p", "--print", "-pe", "-ep"];
            const NODE_VALUES: &[&str] = &[
                "-r",
                "--require",
                "--import",
                "--loader",
                "--experimental-loader",
                "-C",
                "--conditions",
                "--input-type",
                "--env-file",
                "--title",
                "--inspect-port",
                "--watch-path",
                "--redirect-warnings",
                "--openssl-config",
                "--icu-data-dir",
                "--diagnostic-dir",
                "--disable-warning",
            ];
            const BUN_VALUES: &[&str] = &[
                "-r",
                "--preload",
                "--cwd",
                "--env-file",
                "-c",
                "--config",
                "--conditions",
                "-d",
                "--define",
                "-l",
                "--loader",
            ];
            let values = if lang == Lang::Node {
                NODE_VALUES
            } else {
                BUN_VALUES
            };
            if CODE.contains(&arg) {
                Code
            } else if attached("--eval=") {
                CodeAttached("--eval=".len())
            } else if attached("--print=") {
                CodeAttached("--print=".len())
            } else if values.contains(&arg) {
                Value
            } else {
                Plain
            }
        }
        Lang::Deno => Plain,
        Lang::Python => match arg {
            "-c" => Code,
            "-m" => LastValue,
            "-W" | "-X" | "--check-hash-based-pycs" => Value,
            _ => short_cluster(arg, "bBdEhiIOPqRsSuvx", "c", "m", "WX"),
        },
        Lang::Perl => match arg {
            "-I" => Value,
            _ => short_cluster(arg, "0123456789acnpsStTuUvwWl", "eE", "", ""),
        },
        Lang::Ruby => match arg {
            "-I" | "-r" | "-C" | "-E" | "-F" => Value,
            _ => short_cluster(arg, "0123456789acdlnpsvwWy", "e", "", ""),
        },
        Lang::Php => match arg {
            "-r" | "-B" | "-R" | "-E" => Code,
            "-c" | "-d" | "-z" | "-t" | "-S" => Value,
            "-f" | "-F" => LastValue,
            _ if attached("-r") || attached("-B") || attached("-R") || attached("-E") => {
                CodeAttached(2)
            }
            _ => Plain,
        },
        Lang::Shell => match arg {
            "--rcfile" | "--init-file" | "-o" | "-O" => Value,
            "--command" => Code,
            _ if attached("--command=") => CodeAttached("--command=".len()),
            _ if arg.starts_with("--") => Plain,
            // `-c`, `-lc`, `-ec`, `-euxc`: the first operand is the code. `-euo pipefail`.
            _ if arg[1..].bytes().all(|b| b.is_ascii_alphabetic()) => {
                if arg.contains('c') {
                    CodeOperand
                } else if arg.ends_with('o') || arg.ends_with('O') {
                    Value
                } else {
                    Plain
                }
            }
            _ => Plain,
        },
        Lang::Lua => match arg {
            "-e" => Code,
            "-l" => Value,
            _ if attached("-e") => CodeAttached(2),
            _ => Plain,
        },
        Lang::R => match arg {
            "-e" => Code,
            _ => Plain,
        },
        Lang::Julia => match arg {
            "-e" | "--eval" | "-E" | "--print" => Code,
            "-L" | "--load" | "-p" | "--procs" | "-t" | "--threads" | "-J" | "--sysimage"
            | "-C" | "--cpu-target" | "-H" | "--home" => Value,
            _ if attached("--eval=") => CodeAttached("--eval=".len()),
            _ if attached("--print=") => CodeAttached("--print=".len()),
            _ => Plain,
        },
    }
}

/// A cluster of short options (`-lne`, `-Bc`, `-cprint(1)`): `boolean` letters take no value;
/// a `code` letter takes the code, attached (the rest of the argument) or as the next
/// argument; a `last` letter (`python -m`) takes a value and ends the options; a `value` letter
/// takes a value. Anything else ends the cluster as something the redactor does not need.
fn short_cluster(arg: &str, boolean: &str, code: &str, last: &str, value: &str) -> InterpreterFlag {
    if arg.starts_with("--") {
        return InterpreterFlag::Plain;
    }
    for (i, letter) in arg.char_indices().skip(1) {
        if boolean.contains(letter) {
            continue;
        }
        let rest_empty = i + letter.len_utf8() == arg.len();
        return if code.contains(letter) {
            if rest_empty {
                InterpreterFlag::Code
            } else {
                InterpreterFlag::CodeAttached(i + letter.len_utf8())
            }
        } else if last.contains(letter) && rest_empty {
            InterpreterFlag::LastValue
        } else if value.contains(letter) && rest_empty {
            InterpreterFlag::Value
        } else {
            InterpreterFlag::Plain
        };
    }
    InterpreterFlag::Plain
}

/// `Authorization`, `Proxy-Authorization`, `Cookie` and the API-key headers.
fn is_sensitive_header(name: &str) -> bool {
    ["authorization", "proxy-authorization", "cookie"]
        .iter()
        .any(|h| h.eq_ignore_ascii_case(name))
        || api_key_header(name, &DetectConfig::default()).is_some()
}

/// Key names of connection strings that hold secrets besides the usual field names
/// (normalised: lower case, no separators or spaces).
const CONNECTION_STRING_SECRETS: &[&str] = &["accountkey", "sharedaccesskey", "sastoken"];

/// A name (field, variable, key) whose value is a secret.
fn is_secret_name(name: &str) -> bool {
    let compact: String = name.chars().filter(|c| !c.is_whitespace()).collect();
    is_secret_field(&compact)
        || is_sensitive_header(&compact)
        || CONNECTION_STRING_SECRETS.iter().any(|known| {
            let normalised: String = compact
                .chars()
                .filter(|c| !matches!(c, '_' | '-' | '.'))
                .collect();
            normalised.eq_ignore_ascii_case(known)
        })
}

/// A flag named like a secret field: `--password`, `--api-key`, `-token` (single dash, as Go
/// programs spell long flags; at least 4 letters so short clusters are not read as names),
/// `-Dclient.secret` (a Java property, with `=`).
fn is_secret_flag(flag: &str) -> bool {
    let name = flag.trim_start_matches('-');
    let long = flag.starts_with("--") || name.len() >= 4;
    long && is_secret_field(name)
}

/// Flag names that switch something about a secret rather than carry one (`--no-password`,
/// `--ask-vault-password`, `--prompt-password`): they take no value.
fn is_switch_name(flag: &str) -> bool {
    let name = flag.trim_start_matches('-').to_ascii_lowercase();
    ["no-", "no_", "ask", "prompt", "without-", "read-"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
}
