//! Programs that run another program: `env`, `nice`, `timeout`, `sh -c`, `sudo`, …
//!
//! The gate looks through them so that `timeout 5 curl x` is checked as `curl x` too.
//! Each wrapper's options are read from a table; an option the table does not know makes the
//! gate refuse (rather than guess where the wrapped command starts).

/// What a wrapper runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peel {
    /// Not a wrapper (or a wrapper with nothing to run).
    None,
    /// It runs this argv. `transparent`: the wrapper adds no power (`nice`, `env`), so the
    /// allow list applies to the inner command; `sudo`, `su`, `doas` are not.
    Inner {
        words: Vec<String>,
        transparent: bool,
    },
    /// It runs this shell command line (`sh -c`, `eval`, `env -S`, `su -c`).
    Line { line: String, transparent: bool },
    /// It is a program in its own right that also runs these argvs (`find -exec`).
    Also(Vec<Vec<String>>),
    /// It runs something the gate cannot see.
    Opaque(String),
}

/// Shells whose `-c STRING` is a command line.
const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "ash", "mksh", "yash"];

/// Looks through `words` (program name as written, then arguments).
pub fn peel(words: &[String]) -> Peel {
    let Some(program) = words.first() else {
        return Peel::None;
    };
    let name = program.rsplit('/').next().unwrap_or(program);
    let args = &words[1..];
    let inner = |i: usize, transparent: bool| {
        if i < args.len() {
            Peel::Inner {
                words: args[i..].to_vec(),
                transparent,
            }
        } else {
            Peel::None
        }
    };
    let opts = |short_flags: &str, short_arg: &str, long_flags: &[&str], long_arg: &[&str]| {
        let optional = if name == "xargs" { "iel" } else { "" };
        skip_options(args, optional, short_flags, short_arg, long_flags, long_arg)
            .map_err(|o| Peel::Opaque(format!("unknown option '{o}' for {name}")))
    };
    let result = match name {
        "env" => return peel_env(args),
        "nice" => opts("0123456789", "n", &[], &["adjustment"]).map(|i| inner(i, true)),
        "nohup" | "builtin" => Ok(inner(0, true)),
        "command" => opts("pvV", "", &[], &[]).map(|i| inner(i, true)),
        "exec" => opts("cl", "a", &[], &[]).map(|i| inner(i, true)),
        "time" => opts(
            "pvaq",
            "fo",
            &["portability", "verbose", "append", "quiet"],
            &["format", "output"],
        )
        .map(|i| inner(i, true)),
        "stdbuf" => opts("", "ioe", &[], &["input", "output", "error"]).map(|i| inner(i, true)),
        "ionice" => opts("t", "cnp", &["ignore"], &["class", "classdata"]).map(|i| inner(i, true)),
        "setsid" => opts("cfw", "", &["ctty", "fork", "wait"], &[]).map(|i| inner(i, true)),
        "timeout" => opts(
            "v",
            "sk",
            &["preserve-status", "foreground", "verbose"],
            &["signal", "kill-after"],
        )
        // The first operand is the duration.
        .map(|i| inner(i + 1, true)),
        "xargs" => opts(
            "0prtxo",
            "InLPsdEa",
            &[
                "null",
                "no-run-if-empty",
                "verbose",
                "interactive",
                "exit",
                "open-tty",
                "replace",
                "eof",
            ],
            &[
                "max-args",
                "max-lines",
                "max-procs",
                "max-chars",
                "delimiter",
                "arg-file",
                "process-slot-var",
            ],
        )
        .map(|i| inner(i, true)),
        "sudo" => opts(
            "AbEeHiKklnPSsv",
            "CDghpRrTtUu",
            &[
                "preserve-env",
                "login",
                "shell",
                "non-interactive",
                "background",
                "stdin",
                "set-home",
            ],
            &[
                "user",
                "group",
                "chdir",
                "prompt",
                "role",
                "type",
                "close-from",
                "host",
                "other-user",
                "command-timeout",
            ],
        )
        .map(|i| {
            // `sudo VAR=x cmd`
            let i = i + args[i..].iter().take_while(|a| is_assignment(a)).count();
            inner(i, false)
        }),
        "doas" => opts("nsL", "uC", &[], &[]).map(|i| inner(i, false)),
        "su" => return peel_su(args),
        "busybox" if args.first().is_some_and(|a| !a.starts_with('-')) => Ok(inner(0, true)),
        "flock" => opts(
            "sxuneoFv",
            "wcE",
            &[
                "shared",
                "exclusive",
                "unlock",
                "nonblock",
                "close",
                "no-fork",
                "verbose",
            ],
            &["timeout", "conflict-exit-code"],
        )
        // The first operand is the lock file; `-c` takes a command line instead.
        .map(|i| inner(i + 1, true)),
        "watch" => opts(
            "bcdeftgpx",
            "n",
            &[
                "beep",
                "color",
                "differences",
                "errexit",
                "chgexit",
                "no-title",
                "precise",
                "exec",
            ],
            &["interval"],
        )
        .map(|i| {
            if i < args.len() {
                Peel::Line {
                    line: args[i..].join(" "),
                    transparent: true,
                }
            } else {
                Peel::None
            }
        }),
        "find" => return peel_find(args),
        "eval" => Ok(if args.is_empty() {
            Peel::None
        } else {
            Peel::Line {
                line: args.join(" "),
                transparent: true,
            }
        }),
        n if SHELLS.contains(&n) => return peel_shell(n, args),
        _ => Ok(Peel::None),
    };
    result.unwrap_or_else(|p| p)
}

/// `NAME=value` with a valid name.
pub fn is_assignment(word: &str) -> bool {
    match word.split_once('=') {
        Some((name, _)) => {
            name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        None => false,
    }
}

/// Index of the first operand after the options, or the unknown option.
fn skip_options(
    args: &[String],
    short_optional: &str,
    short_flags: &str,
    short_arg: &str,
    long_flags: &[&str],
    long_arg: &[&str],
) -> Result<usize, String> {
    let mut i = 0;
    while let Some(a) = args.get(i) {
        if a == "--" {
            return Ok(i + 1);
        }
        if let Some(long) = a.strip_prefix("--") {
            let (name, has_value) = match long.split_once('=') {
                Some((n, _)) => (n, true),
                None => (long, false),
            };
            if long_flags.contains(&name) || (has_value && long_arg.contains(&name)) {
                i += 1;
            } else if long_arg.contains(&name) {
                i += 2;
            } else {
                return Err(a.clone());
            }
            continue;
        }
        let Some(cluster) = a.strip_prefix('-').filter(|c| !c.is_empty()) else {
            return Ok(i);
        };
        let mut step = 1;
        for (k, c) in cluster.char_indices() {
            // An optional value can only be attached (`xargs -i{}`): the rest is the value.
            if short_optional.contains(c) {
                break;
            }
            if short_flags.contains(c) {
                continue;
            }
            if short_arg.contains(c) {
                if k + c.len_utf8() == cluster.len() {
                    step = 2;
                }
                break;
            }
            return Err(a.clone());
        }
        i += step;
    }
    // An option missing its value at the end (`sudo -u`): nothing left to run.
    Ok(i.min(args.len()))
}

fn peel_env(args: &[String]) -> Peel {
    let mut i = 0;
    while let Some(a) = args.get(i) {
        match a.as_str() {
            "--" => {
                i += 1;
                break;
            }
            "-" | "-i" | "--ignore-environment" | "-0" | "--null" | "-v" | "--debug" => i += 1,
            "-u" | "--unset" | "-C" | "--chdir" => i += 2,
            "-S" | "--split-string" => {
                return split_string(
                    args.get(i + 1).map(String::as_str),
                    &args[(i + 2).min(args.len())..],
                );
            }
            s if s.starts_with("--unset=") || s.starts_with("--chdir=") => i += 1,
            s if s.starts_with("--split-string=") => {
                return split_string(s.split_once('=').map(|(_, v)| v), &args[i + 1..]);
            }
            s if s.starts_with("-S") => return split_string(Some(&s[2..]), &args[i + 1..]),
            s if (s.starts_with("-u") || s.starts_with("-C")) && s.len() > 2 => i += 1,
            s if s.starts_with('-') => {
                return Peel::Opaque(format!("unknown option '{s}' for env"))
            }
            s if is_assignment(s) => i += 1,
            _ => break,
        }
    }
    if i < args.len() {
        Peel::Inner {
            words: args[i..].to_vec(),
            transparent: true,
        }
    } else {
        Peel::None
    }
}

/// `env -S STRING args…`: STRING is split into words (close enough to a shell line).
fn split_string(string: Option<&str>, rest: &[String]) -> Peel {
    let Some(string) = string else {
        return Peel::Opaque("env -S without a string".into());
    };
    let mut line = string.to_string();
    for w in rest {
        line.push(' ');
        line.push_str(&super::shell::quote(w));
    }
    Peel::Line {
        line,
        transparent: true,
    }
}

/// `find … -exec CMD … ;` (also `-execdir`, `-ok`, `-okdir`): the commands find runs.
fn peel_find(args: &[String]) -> Peel {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < args.len() {
        if matches!(args[i].as_str(), "-exec" | "-execdir" | "-ok" | "-okdir") {
            let start = i + 1;
            let mut end = start;
            while end < args.len() && args[end] != ";" && args[end] != "+" {
                end += 1;
            }
            if end > start {
                runs.push(args[start..end].to_vec());
            }
            i = end;
        }
        i += 1;
    }
    if runs.is_empty() {
        Peel::None
    } else {
        Peel::Also(runs)
    }
}

fn peel_su(args: &[String]) -> Peel {
    let mut i = 0;
    while let Some(a) = args.get(i) {
        match a.as_str() {
            "-c" | "--command" => {
                return match args.get(i + 1) {
                    Some(line) => Peel::Line {
                        line: line.clone(),
                        transparent: false,
                    },
                    None => Peel::Opaque("su -c without a command".into()),
                };
            }
            s if s.starts_with("--command=") => {
                return Peel::Line {
                    line: s["--command=".len()..].to_string(),
                    transparent: false,
                };
            }
            _ => i += 1,
        }
    }
    Peel::None
}

fn peel_shell(name: &str, args: &[String]) -> Peel {
    let mut command_mode = false;
    let mut stdin_mode = false;
    let mut i = 0;
    while let Some(a) = args.get(i) {
        if a == "--" || a == "-" {
            i += 1;
            break;
        }
        if let Some(long) = a.strip_prefix("--") {
            i += if matches!(long, "rcfile" | "init-file") {
                2
            } else {
                1
            };
            continue;
        }
        let Some(cluster) = a.strip_prefix('-').or_else(|| a.strip_prefix('+')) else {
            break;
        };
        command_mode |= cluster.contains('c');
        stdin_mode |= cluster.contains('s');
        i += if cluster.contains(['o', 'O']) { 2 } else { 1 };
    }
    if command_mode {
        return match args.get(i) {
            Some(line) => Peel::Line {
                line: line.clone(),
                transparent: true,
            },
            None => Peel::Opaque(format!("{name} -c without a command")),
        };
    }
    if stdin_mode || i >= args.len() {
        return Peel::Opaque(format!("{name} reads its commands from standard input"));
    }
    // `sh script.sh`: runs a file the gate cannot read; the shell itself is checked.
    Peel::None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    fn inner(s: &str) -> Vec<String> {
        match peel(&w(s)) {
            Peel::Inner { words, .. } => words,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn wrappers_find_the_inner_command() {
        assert_eq!(inner("env -i FOO=1 -u BAR curl x"), w("curl x"));
        assert_eq!(inner("nice -n 5 curl x"), w("curl x"));
        assert_eq!(inner("nice -10 curl x"), w("curl x"));
        assert_eq!(inner("timeout -s KILL 5 curl x"), w("curl x"));
        assert_eq!(inner("timeout --signal=KILL 5s curl"), w("curl"));
        assert_eq!(inner("xargs -n1 -I{} curl {}"), w("curl {}"));
        assert_eq!(inner("/usr/bin/env curl"), w("curl"));
        assert_eq!(inner("sudo -u root FOO=1 curl"), w("curl"));
        assert_eq!(inner("command -p curl"), w("curl"));
        assert_eq!(inner("exec -a x curl"), w("curl"));
    }

    #[test]
    fn shells_and_unknown_options() {
        assert_eq!(
            peel(&["bash".into(), "-lc".into(), "curl x".into()]),
            Peel::Line {
                line: "curl x".into(),
                transparent: true
            }
        );
        assert!(matches!(peel(&w("sh")), Peel::Opaque(_)));
        assert!(matches!(peel(&w("bash -s")), Peel::Opaque(_)));
        assert_eq!(peel(&w("sh script.sh")), Peel::None);
        assert!(matches!(peel(&w("env --frobnicate curl")), Peel::Opaque(_)));
        assert_eq!(peel(&w("ls -la")), Peel::None);
        // An option missing its value at the end leaves nothing to run.
        assert_eq!(peel(&w("sudo -u")), Peel::None);
        assert_eq!(peel(&w("timeout 5")), Peel::None);
        assert_eq!(
            peel(&w("find . -name x -exec rm {} ; -ok curl {} +")),
            Peel::Also(vec![w("rm {}"), w("curl {}")])
        );
    }
}
