//! Reads the end-to-end tests, their client scripts and the bench for the external commands they
//! run, so a test that starts a program `packages::TOOLS` does not list fails here, in the unit
//! tests, instead of on a fresh machine. Heuristics, not a parser: they recognise
//!
//! - `Command::new("x")`, `.command("x")` (a command inside a network namespace);
//! - shell lines given to `sh`/`must` or to a closure that forwards to them
//!   (`let ns = |c: &str| must(...)`), literal or through `format!`: every command of a
//!   pipeline or `&&` list, looking through `ip netns exec NS`, `runuser ... --` and `xargs`;
//! - `"{bin}/x"` (a PostgreSQL server binary in `postgres_bin()`'s directory);
//! - Node's `execFileSync("x"`/`spawn("x"` and Python's `subprocess.run(["x"` in client code.
//!
//! A program named by a variable (the monitor binary, the venv's Python, the xtask binary) is not
//! an installed command and is not seen.
use std::path::{Path, PathBuf};

use crate::packages::{self, Use};

/// A command found in a source file.
#[derive(Debug, PartialEq, Eq)]
pub struct Found {
    pub command: String,
    pub line: usize,
}

/// Calls whose first argument is the program to run.
const PROGRAM_CALLS: &[&str] = &[
    "Command::new(",
    ".command(",
    "execFileSync(",
    "execFile(",
    "spawnSync(",
    "spawn(",
    "subprocess.run([",
    "subprocess.call([",
    "subprocess.check_call([",
    "subprocess.check_output([",
    "subprocess.Popen([",
];

/// Functions that run their argument with `sh -c` (closures forwarding to them are found too).
const SHELL_RUNNERS: &[&str] = &["sh", "must", "execSync"];

/// Shell builtins and keywords: not installed commands.
const BUILTINS: &[&str] = &[
    "cd", "echo", "exit", "export", "set", "true", "false", "test", "[", "command", "exec", "if",
    "then", "else", "fi", "for", "do", "done", "while", "read", "wait", "trap", "printf",
];

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The string literal at the start of `s` (after blanks, `&` and `format!(`): its text, unescaped
/// enough for reading commands, and the rest of `s`.
fn literal(s: &str) -> Option<(String, &str)> {
    let mut s = s.trim_start();
    loop {
        let before = s;
        s = s.strip_prefix('&').unwrap_or(s).trim_start();
        s = s.strip_prefix("format!(").unwrap_or(s).trim_start();
        if s == before {
            break;
        }
    }
    if let Some(rest) = s.strip_prefix('r') {
        let hashes = rest.len() - rest.trim_start_matches('#').len();
        let rest = rest[hashes..].strip_prefix('"')?;
        let close = format!("\"{}", "#".repeat(hashes));
        let end = rest.find(&close)?;
        return Some((rest[..end].to_string(), &rest[end + close.len()..]));
    }
    let quote = s.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let mut text = String::new();
    let mut chars = s[1..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, 'n')) | Some((_, '\n')) => text.push(' '),
                Some((_, c)) => text.push(c),
                None => return None,
            },
            c if c == quote => return Some((text, &s[1 + i + 1..])),
            c => text.push(c),
        }
    }
    None
}

/// The installed command a word of a command line names, if it names one.
fn command_word(word: &str) -> Option<String> {
    let word = word.trim_matches(|c| c == '"' || c == '\'');
    // `{bin}/initdb` is a program in a directory the code computes; `{c}` is a command line
    // forwarded from elsewhere (its literal is read where it is written).
    let name = word.rsplit('/').next().unwrap_or(word);
    if name.is_empty()
        || name.starts_with('-')
        || name.contains(['{', '}', '$', '='])
        || BUILTINS.contains(&name)
    {
        return None;
    }
    Some(name.to_string())
}

/// The commands one simple command runs (its words): the program, and the one it wraps when it
/// is `ip netns exec NS`, `runuser ... --`, `xargs` and the like.
fn wrapped_commands(words: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = words;
    while rest
        .first()
        .is_some_and(|w| w.contains('=') && !w.starts_with(['-', '{']) && !w.contains('/'))
    {
        rest = &rest[1..]; // VAR=value
    }
    while let Some(first) = rest.first() {
        let Some(command) = command_word(first) else {
            break;
        };
        rest = &rest[1..];
        rest = match command.as_str() {
            "ip" if rest.starts_with(&["netns", "exec"]) => rest.get(3..).unwrap_or(&[]),
            "runuser" | "sudo" | "setpriv" => match rest.iter().position(|w| *w == "--") {
                Some(i) => &rest[i + 1..],
                None => &[],
            },
            "xargs" | "env" | "nohup" => {
                let skip = rest.iter().take_while(|w| w.starts_with('-')).count();
                &rest[skip..]
            }
            _ => &[],
        };
        out.push(command);
    }
    out
}

/// The commands a shell line runs.
pub fn shell_commands(line: &str) -> Vec<String> {
    let line = line.replace("&&", ";").replace("||", ";").replace('|', ";");
    line.split(';')
        .flat_map(|segment| wrapped_commands(&segment.split_whitespace().collect::<Vec<_>>()))
        .collect()
}

/// The literal arguments chained right after a program (`).args(["-u", "postgres", "--",
/// "psql"]).arg("x")`), up to the first one that is not a literal.
fn literal_args(rest: &str) -> Vec<String> {
    let mut words = Vec::new();
    let Some(mut rest) = rest.trim_start().strip_prefix(')') else {
        return words;
    };
    loop {
        rest = rest.trim_start();
        if let Some(list) = rest.strip_prefix(".args([") {
            rest = list;
            while let Some((word, after)) = literal(rest) {
                words.push(word);
                rest = after.trim_start();
                rest = rest.strip_prefix(',').unwrap_or(rest);
            }
            match rest.trim_start().strip_prefix("])") {
                Some(after) => rest = after,
                None => return words,
            }
        } else if let Some(arg) = rest.strip_prefix(".arg(") {
            match literal(arg)
                .and_then(|(w, after)| Some((w, after.trim_start().strip_prefix(')')?)))
            {
                Some((word, after)) => {
                    words.push(word);
                    rest = after;
                }
                None => return words,
            }
        } else {
            return words;
        }
    }
}

/// Names `let NAME = |...| RUNNER(` gives to shell runners in `source`, besides the base ones.
fn shell_runners(source: &str) -> Vec<String> {
    let mut runners: Vec<String> = SHELL_RUNNERS.iter().map(|s| s.to_string()).collect();
    loop {
        let before = runners.len();
        for (i, _) in source.match_indices("let ") {
            let rest = &source[i + 4..];
            let Some((name, rest)) = rest.split_once('=') else {
                continue;
            };
            let name = name.trim();
            if name.is_empty() || !name.bytes().all(is_ident) || runners.iter().any(|r| r == name) {
                continue;
            }
            let rest = rest.trim_start();
            let Some(body) = rest
                .strip_prefix('|')
                .and_then(|r| r.split_once('|'))
                .map(|(_, body)| body.trim_start())
            else {
                continue;
            };
            if runners.iter().any(|r| {
                body.strip_prefix(r.as_str())
                    .is_some_and(|b| b.starts_with('('))
            }) {
                runners.push(name.to_string());
            }
        }
        if runners.len() == before {
            return runners;
        }
    }
}

fn line_of(source: &str, offset: usize) -> usize {
    source[..offset].matches('\n').count() + 1
}

/// Every external command `source` runs, in order of appearance.
pub fn commands_in(source: &str) -> Vec<Found> {
    let mut found = Vec::new();
    let mut push = |command: String, offset: usize| {
        found.push(Found {
            command,
            line: line_of(source, offset),
        })
    };
    for call in PROGRAM_CALLS {
        // `spawn(` must not match `respawn(`; qualified calls carry their own boundary.
        let bare = call.bytes().all(|b| is_ident(b) || b == b'(');
        for (i, _) in source.match_indices(call) {
            if bare && i > 0 && is_ident(source.as_bytes()[i - 1]) {
                continue;
            }
            let Some((program, rest)) = literal(&source[i + call.len()..]) else {
                continue;
            };
            let args = literal_args(rest);
            let words: Vec<&str> = std::iter::once(program.as_str())
                .chain(args.iter().map(String::as_str))
                .collect();
            for command in wrapped_commands(&words) {
                push(command, i);
            }
        }
    }
    for runner in shell_runners(source) {
        let call = format!("{runner}(");
        for (i, _) in source.match_indices(&call) {
            let prev = i.checked_sub(1).map(|p| source.as_bytes()[p]);
            if prev.is_some_and(|b| is_ident(b) || b == b'.' || b == b':')
                || source[..i].ends_with("fn ")
            {
                continue;
            }
            if let Some((text, _)) = literal(&source[i + call.len()..]) {
                for command in shell_commands(&text) {
                    push(command, i);
                }
            }
        }
    }
    for (i, _) in source.match_indices("{bin}/") {
        let name: String = source[i + 6..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        if !name.is_empty() {
            push(name, i);
        }
    }
    found.sort_by_key(|f| f.line);
    found
}

/// What is wrong with the table for the commands of one file: `(command, line, why)`.
pub fn violations(file: &str, source: &str, used_by: Use) -> Vec<String> {
    commands_in(source)
        .into_iter()
        .filter_map(|f| {
            let why = match packages::find(&f.command) {
                None => "is not in xtask/src/packages.rs TOOLS: add it with the Debian package \
                         that provides it, so `cargo xtask setup` installs it"
                    .to_string(),
                Some(t) if used_by.tests() && !t.used_by.tests() => format!(
                    "is in TOOLS as {:?}: the end-to-end tests use it, make it Tests or Both",
                    t.used_by
                ),
                Some(t) if used_by.bench() && !t.used_by.bench() => format!(
                    "is in TOOLS as {:?}: the bench uses it, make it Bench or Both",
                    t.used_by
                ),
                Some(_) => return None,
            };
            Some(format!("{file}:{}: `{}` {why}", f.line, f.command))
        })
        .collect()
}

/// The files scanned, with who runs what they start.
fn sources(root: &Path) -> Vec<(PathBuf, Use)> {
    let mut out = Vec::new();
    for dir in ["tests/src", "tests/tests"] {
        collect(&root.join(dir), &["rs"], &mut out);
    }
    collect(&root.join("tests/clients"), &["mjs", "js", "py"], &mut out);
    let mut out: Vec<(PathBuf, Use)> = out.into_iter().map(|p| (p, Use::Tests)).collect();
    out.push((root.join("xtask/src/bench.rs"), Use::Bench));
    out.push((root.join("xtask/src/deploy.rs"), Use::Tests));
    out
}

fn collect(dir: &Path, extensions: &[&str], out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            // Installed packages, not the project's clients.
            if !matches!(name, "node_modules" | ".venv" | "__pycache__") {
                collect(&path, extensions, out);
            }
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| extensions.contains(&e))
        {
            out.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(source: &str) -> Vec<String> {
        commands_in(source).into_iter().map(|f| f.command).collect()
    }

    #[test]
    fn every_command_the_tests_and_bench_run_is_in_the_table() {
        let root = crate::workspace_root();
        let mut problems = Vec::new();
        let mut seen = Vec::new();
        for (path, used_by) in sources(&root) {
            let source = std::fs::read_to_string(&path).unwrap();
            let file = path.strip_prefix(&root).unwrap().display().to_string();
            problems.extend(violations(&file, &source, used_by));
            seen.extend(commands_in(&source).into_iter().map(|f| f.command));
        }
        assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
        // The heuristics still see what the sources run today (else they rotted silently).
        for command in [
            "ip",
            "sh",
            "xargs",
            "kill",
            "curl",
            "openssl",
            "python3",
            "node",
            "psql",
            "redis-cli",
            "redis-server",
            "runuser",
            "initdb",
            "postgres",
            "chown",
            "nginx",
            "wrk",
        ] {
            assert!(
                seen.iter().any(|s| s == command),
                "the scan no longer finds `{command}`: {seen:?}"
            );
        }
    }

    #[test]
    fn a_command_missing_from_the_table_is_named_with_its_file() {
        let source = "let c = run_client(Command::new(\"socat\").args([\"-\", \"TCP:x:1\"]));";
        let problems = violations("tests/tests/new.rs", source, Use::Tests);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("tests/tests/new.rs:1: `socat` is not in"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn a_command_for_later_must_be_switched_on_when_a_test_uses_it() {
        let problems = violations("tests/tests/x.rs", "Command::new(\"podman\")", Use::Tests);
        assert!(problems[0].contains("Later"), "{problems:?}");
        let problems = violations("xtask/src/bench.rs", "Command::new(\"curl\")", Use::Bench);
        assert!(problems[0].contains("the bench uses it"), "{problems:?}");
    }

    #[test]
    fn programs_named_by_variables_are_not_commands() {
        assert!(
            names("Command::new(monitor_bin()) Command::new(bin) Command::new(python)").is_empty()
        );
        assert_eq!(names("Command::new(\"/usr/bin/node\")"), ["node"]);
    }

    #[test]
    fn shell_lines_through_runners_and_namespaces() {
        let source = r#"
            must(&format!("ip link add {a} type veth peer name {b}"));
            let ns = |c: &str| must(&format!("ip netns exec {netns} {c}"));
            ns("socat - TCP:1.2.3.4:5");
            let as_pg = |cmd: &str| must(&format!("runuser -u postgres -- {cmd}"));
            as_pg(&format!(
                "{bin}/initdb -D {}",
                dir.display()
            ));
            sh(&format!("ip netns pids {} | xargs -r kill -9", self.netns));
            must(&format!("chown postgres: {0}/a && chmod 600 {0}/b", d));
            fn sh(cmd: &str) -> Output { Command::new("sh").args(["-c", cmd]) }
            let child = self.command("redis-server").arg(&conf);
            .arg(format!("{bin}/postgres"))
        "#;
        assert_eq!(
            names(source),
            [
                "ip",
                "ip",
                "socat",
                "runuser",
                "initdb",
                "initdb",
                "ip",
                "xargs",
                "kill",
                "chown",
                "chmod",
                "sh",
                "redis-server",
                "postgres"
            ]
        );
    }

    #[test]
    fn argv_of_wrappers() {
        let source = r#"Command::new("runuser")
                .args(["-u", "postgres", "--", "psql", "-h"])
                .arg(&run_dir)
            Command::new("ip").args(["netns", "exec", &self.netns, program]);
            Command::new("ip").args(["netns", "exec", "ns1"]).arg("socat").arg("-");
            Command::new("curl").args(["-s", "--", "x"]);"#;
        assert_eq!(
            names(source),
            ["runuser", "psql", "ip", "ip", "socat", "curl"]
        );
    }

    #[test]
    fn client_scripts() {
        let js = r#"const code = execFileSync("curl", ["-s", url]); spawn('socat', []);"#;
        assert_eq!(names(js), ["curl", "socat"]);
        let py = r#"subprocess.run(["redis-cli", "-p", "1"], check=True)"#;
        assert_eq!(names(py), ["redis-cli"]);
        // A method that happens to share a name is not a shell runner.
        assert!(names(r#"hash("ab") h.sh("x") fresh("curl")"#).is_empty());
    }

    #[test]
    fn shell_commands_skip_assignments_and_builtins() {
        assert_eq!(
            shell_commands("PGPASSWORD=x psql -h h; cd /tmp && echo hi | wc -l"),
            ["psql", "wc"]
        );
        assert_eq!(
            shell_commands("ip netns exec emt1 ip link set lo up"),
            ["ip", "ip"]
        );
    }
}
