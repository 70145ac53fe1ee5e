//! One `agent.commands` pattern and how it matches a normalised command.
//!
//! A normalised command is the program's name, its arguments and its redirections joined by
//! single spaces (`curl -s x > /dev/null`).
//!
//! - A pattern with `*` or `?` is a glob over that text: `*` matches any run of characters
//!   (spaces included), `?` one character. A final ` *` may match nothing, so `curl *` also
//!   matches a bare `curl`.
//! - Any other pattern matches the command exactly or as a prefix that ends at a word
//!   boundary: `npm run` matches `npm run build`, not `npm runner`.
//! - Deny patterns match more widely, because a deny list must not be dodged by reordering:
//!   a plain deny pattern also matches when the program is the same and every word of the
//!   pattern appears among the arguments in any order, with short-option clusters split
//!   (`rm -rf` matches `rm -f -r x`, `rm -fr x`, `rm -r --force x`; `chmod 777` matches
//!   `chmod -R 777 dir`).

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// As written in the config (trimmed), for messages.
    pub text: String,
    /// Whitespace collapsed.
    norm: String,
    glob: bool,
}

impl Rule {
    /// Compiles a pattern as written in the config.
    pub fn new(raw: &str) -> Rule {
        let norm = raw.split_whitespace().collect::<Vec<_>>().join(" ");
        Rule {
            text: raw.trim().to_string(),
            glob: norm.contains(['*', '?']),
            norm,
        }
    }

    /// Exact, prefix or glob match (allow rules).
    pub fn matches(&self, command: &str) -> bool {
        if self.glob {
            glob_match(&self.norm, command)
                || self
                    .norm
                    .strip_suffix(" *")
                    .is_some_and(|bare| !bare.contains(['*', '?']) && bare == command)
        } else {
            command == self.norm
                || command
                    .strip_prefix(self.norm.as_str())
                    .is_some_and(|rest| rest.starts_with(' '))
        }
    }

    /// [`Rule::matches`], or for plain patterns: same program and every pattern word among
    /// the arguments (deny rules). `words` are the program name and arguments.
    pub fn matches_deny(&self, command: &str, words: &[String]) -> bool {
        if self.matches(command) {
            return true;
        }
        if self.glob {
            return false;
        }
        let mut pattern = self.norm.split(' ');
        let (Some(program), Some(first)) = (pattern.next(), words.first()) else {
            return false;
        };
        if program != first {
            return false;
        }
        let have = expand(program, words[1..].iter().map(String::as_str));
        expand(program, pattern).iter().all(|w| have.contains(w))
    }
}

/// Words with short-option clusters split (`-rf` → `-rf`, `-r`, `-f`) and, for `rm`, the
/// long and upper-case spellings of `-r`/`-f` folded in.
fn expand<'a>(program: &str, words: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out = Vec::new();
    for w in words {
        if w == "--" {
            break;
        }
        let cluster = w.len() > 2
            && w.starts_with('-')
            && !w.starts_with("--")
            && w[1..].chars().all(|c| c.is_ascii_alphanumeric());
        if cluster {
            out.extend(w[1..].chars().map(|c| alias(program, &format!("-{c}"))));
        } else {
            out.push(alias(program, w));
        }
    }
    out
}

fn alias(program: &str, word: &str) -> String {
    match (program, word) {
        ("rm", "-R" | "--recursive") => "-r".into(),
        ("rm", "--force") => "-f".into(),
        _ => word.to_string(),
    }
}

/// `*` any run of characters, `?` one character, everything else literal.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn exact_prefix_glob() {
        assert!(Rule::new("npm test").matches("npm test"));
        assert!(Rule::new("npm run").matches("npm run build"));
        assert!(!Rule::new("npm run").matches("npm runner"));
        assert!(Rule::new("git *").matches("git status"));
        assert!(Rule::new("git *").matches("git"));
        assert!(!Rule::new("git *").matches("gitk"));
        assert!(Rule::new("* > /dev/*").matches("echo x > /dev/sda"));
        assert!(!Rule::new("* > /dev/*").matches("echo x 2> /dev/null"));
        assert!(Rule::new("  npm   test ").matches("npm test"));
    }

    #[test]
    fn deny_matches_reordered_flags() {
        let rm = Rule::new("rm -rf");
        for cmd in [
            "rm -rf /",
            "rm -fr /",
            "rm -r -f /",
            "rm --recursive --force /",
            "rm -Rf x",
        ] {
            assert!(rm.matches_deny(cmd, &words(cmd)), "{cmd}");
        }
        assert!(!rm.matches_deny("rm -r x", &words("rm -r x")));
        let chmod = Rule::new("chmod 777");
        assert!(chmod.matches_deny("chmod -R 777 d", &words("chmod -R 777 d")));
        assert!(!chmod.matches_deny("chmod 755 d", &words("chmod 755 d")));
    }

    #[test]
    fn glob_basics() {
        assert!(glob_match("a*c", "abbbc"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a*", "b"));
    }
}
