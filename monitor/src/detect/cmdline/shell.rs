//! Just enough of POSIX shell word splitting to run the argv rules over `sh -c` code: simple
//! commands split at unquoted `;`, `&`, `|`, newlines and parentheses, words split at unquoted
//! blanks, quotes removed. No expansion, no here-documents (their text still goes through the
//! free-text rules); anything not understood stays part of some word and is judged as text.
use std::ops::Range;

/// How a word was quoted, to quote its replacement the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Quoting {
    Bare,
    Single,
    Double,
    Mixed,
}

/// One word of shell code.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Word {
    /// Where it is in the code, quotes included.
    pub span: Range<usize>,
    /// Its value after quote removal (what the command receives).
    pub value: String,
    pub quoting: Quoting,
    /// For `NAME='value'` and `--flag="value"`: the length of the unquoted prefix (the same
    /// bytes in the code and the value) and how the one quoted part after it was quoted.
    pub quoted_tail: Option<(usize, Quoting)>,
}

#[derive(Default)]
struct Builder {
    start: usize,
    value: String,
    bare: bool,
    single: bool,
    double: bool,
    /// A backslash came before the first quote (the prefix is not the same bytes in the
    /// code and the value).
    escaped_prefix: bool,
    /// Value length when the first quote opened.
    prefix: Option<usize>,
    quoted_parts: usize,
    bare_after_quote: bool,
    last_quote: Option<Quoting>,
}

impl Builder {
    fn bare_char(&mut self, c: Option<char>) {
        self.bare = true;
        self.bare_after_quote |= self.quoted_parts > 0;
        if let Some(c) = c {
            self.value.push(c);
        }
    }

    fn open_quote(&mut self, quoting: Quoting) {
        if self.quoted_parts == 0 && !self.escaped_prefix {
            self.prefix = Some(self.value.len());
        }
        self.quoted_parts += 1;
        self.last_quote = Some(quoting);
        match quoting {
            Quoting::Single => self.single = true,
            _ => self.double = true,
        }
    }

    fn finish(self, end: usize) -> Word {
        let quoting = match (self.bare, self.single, self.double) {
            (_, false, false) => Quoting::Bare,
            (false, true, false) => Quoting::Single,
            (false, false, true) => Quoting::Double,
            _ => Quoting::Mixed,
        };
        let quoted_tail = match (self.prefix, self.last_quote) {
            (Some(prefix), Some(last)) if self.quoted_parts == 1 && !self.bare_after_quote => {
                Some((prefix, last))
            }
            _ => None,
        };
        Word {
            span: self.start..end,
            value: self.value,
            quoting,
            quoted_tail,
        }
    }
}

/// The word being read, started at `at` if there is none yet.
fn begin(word: &mut Option<Builder>, at: usize) -> &mut Builder {
    word.get_or_insert_with(|| Builder {
        start: at,
        ..Builder::default()
    })
}

/// The simple commands of `code`, each as its words, in order.
pub(super) fn commands(code: &str) -> Vec<Vec<Word>> {
    let mut commands = Vec::new();
    let mut words: Vec<Word> = Vec::new();
    let mut word: Option<Builder> = None;
    let mut chars = code.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            ' ' | '\t' => {
                if let Some(done) = word.take() {
                    words.push(done.finish(i));
                }
            }
            '\n' | ';' | '&' | '|' | '(' | ')' => {
                if let Some(done) = word.take() {
                    words.push(done.finish(i));
                }
                if !words.is_empty() {
                    commands.push(std::mem::take(&mut words));
                }
            }
            '#' if word.is_none() => {
                // A comment runs to the end of the line.
                for (_, c) in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                if !words.is_empty() {
                    commands.push(std::mem::take(&mut words));
                }
            }
            '\'' => {
                let w = begin(&mut word, i);
                w.open_quote(Quoting::Single);
                for (_, c) in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    w.value.push(c);
                }
            }
            '"' => {
                let w = begin(&mut word, i);
                w.open_quote(Quoting::Double);
                while let Some((_, c)) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.peek() {
                            Some(&(_, next)) if "\"\\$`\n".contains(next) => {
                                chars.next();
                                if next != '\n' {
                                    w.value.push(next);
                                }
                            }
                            _ => w.value.push('\\'),
                        },
                        _ => w.value.push(c),
                    }
                }
            }
            '\\' => {
                let w = begin(&mut word, i);
                w.escaped_prefix |= w.quoted_parts == 0;
                let next = chars.next().map(|(_, next)| next).filter(|&n| n != '\n');
                w.bare_char(next);
            }
            _ => begin(&mut word, i).bare_char(Some(c)),
        }
    }
    if let Some(done) = word.take() {
        words.push(done.finish(code.len()));
    }
    if !words.is_empty() {
        commands.push(words);
    }
    commands
}

/// A replacement for a word, quoted as the word was: `NAME='x'` becomes `NAME='<redacted>'`
/// when the replacement keeps the unquoted prefix. Bare words stay bare even when the
/// replacement has characters the shell would read (`-p<redacted>`): the code is shown to a
/// person, not run, and quotes that were not there would only confuse.
pub(super) fn requote(value: &str, word: &Word) -> String {
    if let Some((prefix, quoting)) = word.quoted_tail {
        let kept = &word.value[..prefix];
        if word.quoting == Quoting::Mixed && value.starts_with(kept) {
            return format!("{kept}{}", quote(&value[prefix..], quoting));
        }
    }
    quote(value, word.quoting)
}

fn quote(value: &str, quoting: Quoting) -> String {
    match quoting {
        Quoting::Bare => value.to_owned(),
        Quoting::Double => {
            let mut out = String::with_capacity(value.len() + 2);
            out.push('"');
            for c in value.chars() {
                if "\"\\$`".contains(c) {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
            out
        }
        Quoting::Single | Quoting::Mixed => format!("'{}'", value.replace('\'', r"'\''")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(code: &str) -> Vec<Vec<String>> {
        commands(code)
            .into_iter()
            .map(|words| words.into_iter().map(|w| w.value).collect())
            .collect()
    }

    #[test]
    fn splits_commands_and_words_and_removes_quotes() {
        assert_eq!(
            values(r#"export A=1; curl -H "X: a \"b\"" 'http://h/' && echo ok # note"#),
            [
                vec!["export", "A=1"],
                vec!["curl", "-H", r#"X: a "b""#, "http://h/"],
                vec!["echo", "ok"],
            ]
        );
        assert_eq!(values("a b\\ c --x='y z'"), [vec!["a", "b c", "--x=y z"]]);
        assert!(values("  ").is_empty());
    }

    #[test]
    fn spans_cover_quotes_and_quoting_is_recorded() {
        let code = r#"mysql -p'pw' "db" x"#;
        let words = &commands(code)[0];
        assert_eq!(&code[words[1].span.clone()], "-p'pw'");
        assert_eq!(words[1].quoting, Quoting::Mixed);
        assert_eq!(words[2].quoting, Quoting::Double);
        assert_eq!(words[3].quoting, Quoting::Bare);
    }

    #[test]
    fn unterminated_quotes_run_to_the_end() {
        assert_eq!(values("echo 'abc"), [vec!["echo", "abc"]]);
        assert_eq!(values("echo \"abc\\"), [vec!["echo", "abc\\"]]);
    }

    #[test]
    fn requote_keeps_the_quoting_style() {
        let word = |code: &str| commands(code).remove(0).remove(0);
        assert_eq!(requote("a'b", &word("'x'")), r"'a'\''b'");
        assert_eq!(requote("a\"$b", &word("\"x\"")), r#""a\"\$b""#);
        assert_eq!(requote("-p<redacted>", &word("-px")), "-p<redacted>");
        assert_eq!(requote("A=<redacted>", &word("A='p w'")), "A='<redacted>'");
        assert_eq!(
            requote("--h=X: <redacted>", &word("--h=\"X: y\"")),
            "--h=\"X: <redacted>\""
        );
        // Quotes in the middle: the whole word is quoted again.
        assert_eq!(requote("a=<redacted>", &word("a='b'c")), "'a=<redacted>'");
    }
}
