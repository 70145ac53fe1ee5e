//! A small POSIX-shell reader: enough of `sh` to find every simple command in a command
//! line, with its words unquoted, its redirections, and the command substitutions it would
//! run. It never executes or expands anything.
//!
//! Understood: blanks, `'…'`, `"…"`, `\` escapes and line continuations, `$'…'` (ANSI-C),
//! `$"…"`, `$VAR`/`${…}` (marked dynamic), `$(…)`, backticks, `$((…))`, `<(…)`/`>(…)`
//! (recorded as substitutions), the operators `;` `&` `&&` `|` `||` `|&` `;;` `(` `)` and
//! newlines (command separators), redirections (`>`, `>>`, `>|`, `<`, `<>`, `<<`, `<<-`,
//! `<<<`, `&>`, `&>>`, `>&`, `<&`, with an fd number), here-document bodies (skipped; a
//! substitution inside an unquoted one is reported) and `#` comments. Anything else odd
//! makes the reader give up with a reason rather than guess.

use std::fmt;

/// Why a command line could not be read confidently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One word after quote removal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Word {
    /// The text with quotes and escapes removed; `$X`, `$(…)` kept as written.
    pub text: String,
    /// Contains an unquoted or double-quoted expansion (`$X`, `$(…)`, backticks): its
    /// value is only known at run time.
    pub dynamic: bool,
    /// Contains an unquoted `*`, `?`, `[` or `{`: the shell may expand it into other words.
    pub pattern: bool,
    /// Length of `text` before the first quote or escape (to recognise `NAME=value`).
    unquoted_prefix: usize,
}

impl Word {
    fn plain(text: &str) -> Word {
        Word {
            text: text.to_string(),
            unquoted_prefix: text.len(),
            ..Word::default()
        }
    }

    /// `NAME=value` with an unquoted name: a variable assignment in command position.
    pub fn is_assignment(&self) -> bool {
        match self.text.find('=') {
            Some(eq) if eq > 0 && eq <= self.unquoted_prefix => {
                let name = &self.text[..eq];
                name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            }
            _ => false,
        }
    }

    /// Written with no quoting at all (reserved words only count then).
    pub fn is_bare(&self) -> bool {
        self.unquoted_prefix == self.text.len() && !self.dynamic
    }
}

/// A redirection, rendered canonically: every redirection of standard output (`>`, `>>`,
/// `>|`, `&>`, `1>`…) as `> target`, other descriptors as `N> target`, input as `< target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect(pub String);

/// One simple command: what runs between two operators.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimpleCommand {
    pub words: Vec<Word>,
    pub redirects: Vec<Redirect>,
    /// The text of every command substitution in it (`$(…)`, backticks, `<(…)`).
    pub substitutions: Vec<String>,
    /// Set when part of it cannot be read confidently.
    pub opaque: Option<String>,
}

impl SimpleCommand {
    fn is_empty(&self) -> bool {
        self.words.is_empty()
            && self.redirects.is_empty()
            && self.substitutions.is_empty()
            && self.opaque.is_none()
    }
}

struct HereDoc {
    delimiter: String,
    strip_tabs: bool,
    expands: bool,
}

struct Reader {
    chars: Vec<char>,
    pos: usize,
    commands: Vec<SimpleCommand>,
    current: SimpleCommand,
    heredocs: Vec<HereDoc>,
}

/// Splits a command line into its simple commands.
pub fn parse(line: &str) -> Result<Vec<SimpleCommand>, ParseError> {
    let mut r = Reader {
        chars: line.chars().collect(),
        pos: 0,
        commands: Vec::new(),
        current: SimpleCommand::default(),
        heredocs: Vec::new(),
    };
    r.run()?;
    Ok(r.commands)
}

fn err<T>(msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(msg.into()))
}

const OPERATOR_CHARS: &[char] = &[';', '&', '|', '(', ')', '<', '>'];

impl Reader {
    fn peek(&self, off: usize) -> Option<char> {
        self.chars.get(self.pos + off).copied()
    }

    fn starts_with(&self, s: &str) -> bool {
        s.chars().enumerate().all(|(i, c)| self.peek(i) == Some(c))
    }

    fn end_command(&mut self) {
        let cmd = std::mem::take(&mut self.current);
        if !cmd.is_empty() {
            self.commands.push(cmd);
        }
    }

    fn run(&mut self) -> Result<(), ParseError> {
        while let Some(c) = self.peek(0) {
            match c {
                ' ' | '\t' | '\r' => self.pos += 1,
                '\n' => {
                    self.pos += 1;
                    self.end_command();
                    self.read_heredoc_bodies();
                }
                '\\' if self.peek(1) == Some('\n') => self.pos += 2,
                '#' => {
                    while self.peek(0).is_some_and(|c| c != '\n') {
                        self.pos += 1;
                    }
                }
                '<' | '>' if self.peek(1) == Some('(') => {
                    self.pos += 1;
                    let inner = self.balanced('(', ')')?;
                    self.current.substitutions.push(inner.clone());
                    self.current.words.push(Word {
                        text: format!("{c}({inner})"),
                        dynamic: true,
                        ..Word::default()
                    });
                }
                '<' | '>' => self.redirect(None)?,
                '&' if self.peek(1) == Some('>') => self.redirect(None)?,
                ';' | '&' | '|' | '(' | ')' => {
                    self.pos += 1;
                    // `&&`, `||`, `;;`, `|&`: the second character is part of the same
                    // separator.
                    if matches!(
                        (c, self.peek(0)),
                        ('&', Some('&')) | ('|', Some('|' | '&')) | (';', Some(';'))
                    ) {
                        self.pos += 1;
                    }
                    self.end_command();
                }
                _ => {
                    let word = self.word()?;
                    let fd = word.is_bare()
                        && !word.text.is_empty()
                        && word.text.chars().all(|c| c.is_ascii_digit())
                        && matches!(self.peek(0), Some('<' | '>'));
                    if fd {
                        self.redirect(Some(word.text))?;
                    } else {
                        self.current.words.push(word);
                    }
                }
            }
        }
        self.end_command();
        if let Some(h) = self.heredocs.first() {
            return err(format!("here-document '{}' has no body", h.delimiter));
        }
        Ok(())
    }

    /// Reads a redirection operator (the fd, if any, already read) and its target.
    fn redirect(&mut self, fd: Option<String>) -> Result<(), ParseError> {
        const OPS: &[&str] = &[
            "&>>", "<<<", "<<-", "&>", ">>", ">|", ">&", "<<", "<&", "<>", ">", "<",
        ];
        let Some(op) = OPS.iter().find(|op| self.starts_with(op)) else {
            return err("unexpected redirection");
        };
        self.pos += op.chars().count();
        while matches!(self.peek(0), Some(' ' | '\t')) {
            self.pos += 1;
        }
        if self
            .peek(0)
            .is_none_or(|c| c == '\n' || OPERATOR_CHARS.contains(&c))
        {
            return err(format!("redirection '{op}' has no target"));
        }
        let target = self.word()?;
        let fd = fd.unwrap_or_default();
        let rendered = match *op {
            "<<" | "<<-" => {
                self.heredocs.push(HereDoc {
                    delimiter: target.text.clone(),
                    strip_tabs: *op == "<<-",
                    expands: target.is_bare(),
                });
                format!("{fd}<< {}", target.text)
            }
            "<<<" => format!("{fd}<<< {}", target.text),
            "<" | "<>" => format!("{fd}< {}", target.text),
            ">&" | "<&"
                if target.text == "-" || target.text.chars().all(|c| c.is_ascii_digit()) =>
            {
                format!("{fd}{op}{}", target.text)
            }
            "<&" => format!("{fd}< {}", target.text),
            _ if fd.is_empty() || fd == "1" => format!("> {}", target.text),
            _ => format!("{fd}> {}", target.text),
        };
        if target.dynamic {
            self.current
                .opaque
                .get_or_insert_with(|| "redirection target is computed at run time".into());
        }
        self.current.redirects.push(Redirect(rendered));
        Ok(())
    }

    /// After a newline: skips the bodies of pending here-documents.
    fn read_heredoc_bodies(&mut self) {
        for doc in std::mem::take(&mut self.heredocs) {
            let mut body = String::new();
            loop {
                let start = self.pos;
                while self.peek(0).is_some_and(|c| c != '\n') {
                    self.pos += 1;
                }
                let line: String = self.chars[start..self.pos].iter().collect();
                let at_end = self.peek(0).is_none();
                self.pos = (self.pos + 1).min(self.chars.len());
                let check = if doc.strip_tabs {
                    line.trim_start_matches('\t')
                } else {
                    line.as_str()
                };
                if check == doc.delimiter || at_end {
                    break;
                }
                body.push_str(&line);
                body.push('\n');
            }
            if doc.expands && (body.contains("$(") || body.contains('`')) {
                self.commands.push(SimpleCommand {
                    opaque: Some("command substitution inside a here-document".into()),
                    ..SimpleCommand::default()
                });
            }
        }
    }

    /// Reads one word up to a blank, newline or operator.
    fn word(&mut self) -> Result<Word, ParseError> {
        let mut w = Word::default();
        let mut quoted = false;
        let mark = |w: &mut Word, quoted: &mut bool| {
            if !*quoted {
                w.unquoted_prefix = w.text.len();
                *quoted = true;
            }
        };
        while let Some(c) = self.peek(0) {
            match c {
                ' ' | '\t' | '\r' | '\n' => break,
                c if OPERATOR_CHARS.contains(&c) => break,
                '\\' => {
                    match self.peek(1) {
                        Some('\n') => {}
                        Some(n) => {
                            mark(&mut w, &mut quoted);
                            w.text.push(n);
                        }
                        None => w.text.push('\\'),
                    }
                    self.pos += 2;
                }
                '\'' => {
                    mark(&mut w, &mut quoted);
                    self.pos += 1;
                    loop {
                        match self.peek(0) {
                            None => return err("unterminated single quote"),
                            Some('\'') => break,
                            Some(ch) => w.text.push(ch),
                        }
                        self.pos += 1;
                    }
                    self.pos += 1;
                }
                '"' => {
                    mark(&mut w, &mut quoted);
                    self.pos += 1;
                    self.double_quoted(&mut w)?;
                }
                '$' if self.peek(1) == Some('\'') => {
                    mark(&mut w, &mut quoted);
                    self.pos += 2;
                    self.ansi_c(&mut w)?;
                }
                '$' if self.peek(1) == Some('"') => {
                    mark(&mut w, &mut quoted);
                    self.pos += 2;
                    self.double_quoted(&mut w)?;
                }
                '$' => self.dollar(&mut w)?,
                '`' => {
                    let inner = self.backticks()?;
                    w.text.push_str(&format!("`{inner}`"));
                    w.dynamic = true;
                    self.current.substitutions.push(inner);
                }
                '*' | '?' | '[' | '{' => {
                    w.pattern = true;
                    w.text.push(c);
                    self.pos += 1;
                }
                c => {
                    w.text.push(c);
                    self.pos += 1;
                }
            }
        }
        if !quoted {
            w.unquoted_prefix = w.text.len();
        }
        Ok(w)
    }

    /// Inside `"…"` (opening quote consumed).
    fn double_quoted(&mut self, w: &mut Word) -> Result<(), ParseError> {
        loop {
            match self.peek(0) {
                None => return err("unterminated double quote"),
                Some('"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some('\\') => {
                    match self.peek(1) {
                        Some(n @ ('$' | '`' | '"' | '\\')) => w.text.push(n),
                        Some('\n') => {}
                        Some(n) => {
                            w.text.push('\\');
                            w.text.push(n);
                        }
                        None => return err("unterminated double quote"),
                    }
                    self.pos += 2;
                }
                Some('$') => self.dollar(w)?,
                Some('`') => {
                    let inner = self.backticks()?;
                    w.text.push_str(&format!("`{inner}`"));
                    w.dynamic = true;
                    self.current.substitutions.push(inner);
                }
                Some(c) => {
                    w.text.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// `$…` outside single quotes.
    fn dollar(&mut self, w: &mut Word) -> Result<(), ParseError> {
        match self.peek(1) {
            Some('(') if self.peek(2) == Some('(') => {
                self.pos += 1;
                let inner = self.balanced('(', ')')?;
                w.text.push_str(&format!("$({inner})"));
                w.dynamic = true;
                // Arithmetic can hold command substitutions: check what is inside.
                if inner.contains("$(") || inner.contains('`') {
                    self.current.substitutions.push(inner);
                }
            }
            Some('(') => {
                self.pos += 1;
                let inner = self.balanced('(', ')')?;
                w.text.push_str(&format!("$({inner})"));
                w.dynamic = true;
                self.current.substitutions.push(inner);
            }
            Some('{') => {
                self.pos += 1;
                let inner = self.balanced('{', '}')?;
                w.text.push_str(&format!("${{{inner}}}"));
                w.dynamic = true;
                if inner.contains("$(") || inner.contains('`') {
                    self.current
                        .opaque
                        .get_or_insert_with(|| "command substitution inside ${…}".into());
                }
            }
            Some(c) if c.is_ascii_alphanumeric() || "_@*#?$!-".contains(c) => {
                self.pos += 1;
                w.text.push('$');
                let single = !(c.is_ascii_alphabetic() || c == '_');
                while let Some(c) = self.peek(0) {
                    if !(c.is_ascii_alphanumeric() || c == '_') {
                        break;
                    }
                    w.text.push(c);
                    self.pos += 1;
                    if single {
                        break;
                    }
                }
                w.dynamic = true;
            }
            _ => {
                w.text.push('$');
                self.pos += 1;
            }
        }
        Ok(())
    }

    /// From an opening `open` at `pos`: the text up to its matching `close`, honouring
    /// quotes and nesting. Leaves `pos` after the closing character.
    fn balanced(&mut self, open: char, close: char) -> Result<String, ParseError> {
        let start = self.pos + 1;
        let mut depth = 0usize;
        while let Some(c) = self.peek(0) {
            match c {
                '\\' => self.pos += 1,
                '\'' if open == '(' => {
                    self.pos += 1;
                    while self.peek(0).is_some_and(|c| c != '\'') {
                        self.pos += 1;
                    }
                }
                '"' => {
                    self.pos += 1;
                    while let Some(c) = self.peek(0) {
                        if c == '"' {
                            break;
                        }
                        if c == '\\' {
                            self.pos += 1;
                        }
                        self.pos += 1;
                    }
                }
                c if c == open => depth += 1,
                c if c == close => {
                    depth -= 1;
                    if depth == 0 {
                        let inner: String = self.chars[start..self.pos].iter().collect();
                        self.pos += 1;
                        return Ok(inner);
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
        err(format!("unterminated '{open}'"))
    }

    /// From an opening backtick: the inner text (backslash escapes for `` ` `` and `\`
    /// removed). Leaves `pos` after the closing backtick.
    fn backticks(&mut self) -> Result<String, ParseError> {
        self.pos += 1;
        let mut inner = String::new();
        loop {
            match self.peek(0) {
                None => return err("unterminated backtick"),
                Some('`') => {
                    self.pos += 1;
                    return Ok(inner);
                }
                Some('\\') if matches!(self.peek(1), Some('`' | '\\' | '$')) => {
                    inner.push(self.peek(1).unwrap_or('\\'));
                    self.pos += 2;
                }
                Some(c) => {
                    inner.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// Inside `$'…'` (opening consumed): ANSI-C escapes.
    fn ansi_c(&mut self, w: &mut Word) -> Result<(), ParseError> {
        loop {
            let Some(c) = self.peek(0) else {
                return err("unterminated $'…' quote");
            };
            self.pos += 1;
            match c {
                '\'' => return Ok(()),
                '\\' => {
                    let Some(e) = self.peek(0) else {
                        return err("unterminated $'…' quote");
                    };
                    self.pos += 1;
                    let simple = match e {
                        'n' => Some('\n'),
                        't' => Some('\t'),
                        'r' => Some('\r'),
                        'a' => Some('\u{7}'),
                        'b' => Some('\u{8}'),
                        'e' | 'E' => Some('\u{1b}'),
                        'f' => Some('\u{c}'),
                        'v' => Some('\u{b}'),
                        '\\' | '\'' | '"' | '?' => Some(e),
                        _ => None,
                    };
                    if let Some(s) = simple {
                        w.text.push(s);
                        continue;
                    }
                    let (radix, max) = match e {
                        'x' => (16, 2),
                        'u' => (16, 4),
                        'U' => (16, 8),
                        '0'..='7' => {
                            self.pos -= 1;
                            (8, 3)
                        }
                        _ => return err(format!("unsupported escape '\\{e}' in $'…'")),
                    };
                    let mut digits = String::new();
                    while digits.len() < max && self.peek(0).is_some_and(|d| d.is_digit(radix)) {
                        digits.extend(self.peek(0));
                        self.pos += 1;
                    }
                    let code = u32::from_str_radix(&digits, radix)
                        .map_err(|_| ParseError(format!("bad escape '\\{e}' in $'…'")))?;
                    // A lone byte above 0x7f is not a character on its own: refuse.
                    if (e == 'x' || radix == 8) && code > 0x7f {
                        return err("non-ASCII byte escape in $'…'");
                    }
                    match char::from_u32(code) {
                        Some(ch) => w.text.push(ch),
                        None => return err("bad character escape in $'…'"),
                    }
                }
                c => w.text.push(c),
            }
        }
    }
}

/// A word list from plain strings (an argv that no shell will read).
pub fn literal_words(argv: &[String]) -> Vec<Word> {
    argv.iter().map(|a| Word::plain(a)).collect()
}

/// Quotes a word so a POSIX shell reads it back unchanged (the inverse of [`parse`] for one
/// word).
pub fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(line: &str) -> Vec<Vec<String>> {
        parse(line)
            .expect("parses")
            .into_iter()
            .map(|c| {
                c.words
                    .into_iter()
                    .map(|w| w.text)
                    .chain(c.redirects.into_iter().map(|r| r.0))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn splits_on_operators_and_removes_quotes() {
        assert_eq!(
            texts("a 'b c' \"d\"e && f|g; h || i & j\nk"),
            vec![
                vec!["a", "b c", "de"],
                vec!["f"],
                vec!["g"],
                vec!["h"],
                vec!["i"],
                vec!["j"],
                vec!["k"]
            ]
        );
    }

    #[test]
    fn redirections_are_canonical() {
        assert_eq!(
            texts("echo x>/dev/sda 2>/dev/null >>log &>all 2>&1 <in"),
            vec![vec![
                "echo",
                "x",
                "> /dev/sda",
                "2> /dev/null",
                "> log",
                "> all",
                "2>&1",
                "< in"
            ]]
        );
    }

    #[test]
    fn substitutions_are_recorded() {
        let cmds = parse("echo $(curl x) `wget y` \"$(nc z)\"").expect("parses");
        assert_eq!(cmds[0].substitutions, vec!["curl x", "wget y", "nc z"]);
        assert!(cmds[0].words[1].dynamic);
    }

    #[test]
    fn heredoc_bodies_are_skipped() {
        assert_eq!(
            texts("cat <<EOF\ncurl x\nEOF\nls"),
            vec![vec!["cat", "<< EOF"], vec!["ls"]]
        );
        let cmds = parse("cat <<EOF\n$(curl x)\nEOF\n").expect("parses");
        assert!(cmds.iter().any(|c| c.opaque.is_some()));
        let cmds = parse("cat <<'EOF'\n$(curl x)\nEOF\n").expect("parses");
        assert!(cmds.iter().all(|c| c.opaque.is_none()));
    }

    #[test]
    fn ansi_c_and_assignments() {
        let cmds = parse("FOO=1 $'\\x63url' x").expect("parses");
        assert!(cmds[0].words[0].is_assignment());
        assert_eq!(cmds[0].words[1].text, "curl");
        assert!(!parse("'FOO=1' x").expect("parses")[0].words[0].is_assignment());
    }

    #[test]
    fn unterminated_input_is_an_error() {
        for line in [
            "echo 'x",
            "echo \"x",
            "echo $(x",
            "echo `x",
            "cat <<EOF",
            "echo >",
        ] {
            assert!(parse(line).is_err(), "{line}");
        }
    }
}
