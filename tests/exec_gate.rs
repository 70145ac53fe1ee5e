//! The command gate against the seed's `agent.commands` example and the easy bypasses.

use git_chant::exec::{CommandPolicy, Decision, NOT_ALLOWED};

/// The seed's "Command Control" example.
fn seed() -> CommandPolicy {
    CommandPolicy::from_patterns(
        &["npm test", "npm run", "go test", "cargo test", "git *"],
        &[
            "rm -rf",
            "sudo *",
            "curl *",
            "wget *",
            "nc *",
            "* > /dev/*",
            "chmod 777",
        ],
    )
}

/// Only the seed's deny list (everything else allowed).
fn deny_only() -> CommandPolicy {
    CommandPolicy::from_patterns(
        &[] as &[&str],
        &[
            "rm -rf",
            "sudo *",
            "curl *",
            "wget *",
            "nc *",
            "* > /dev/*",
            "chmod 777",
        ],
    )
}

const A: Option<&str> = None;
const fn d(rule: &'static str) -> Option<&'static str> {
    Some(rule)
}
const UNCHECKABLE: &str = "cannot be checked";
const SUBST: &str = "command substitution is refused";

fn run(policy: &CommandPolicy, cases: &[(&str, Option<&str>)]) {
    let mut failures = Vec::new();
    for (line, expected) in cases {
        let got = policy.check_line(line);
        let ok = match (expected, &got) {
            (None, Decision::Allowed) => true,
            (Some(rule), Decision::Denied { rule: got_rule, .. }) => got_rule.contains(rule),
            _ => false,
        };
        if !ok {
            failures.push(format!("{line:?}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn seed_policy_resists_bypasses() {
    #[rustfmt::skip]
    let cases: &[(&str, Option<&str>)] = &[
        ("npm test", A),                                   // exact allow
        ("npm run build", A),                              // prefix allow
        ("git status", A),                                 // glob allow
        ("cargo test --all", A),                           // prefix with flags
        ("   npm \t  test   ", A),                         // extra whitespace
        ("npm test && git status", A),                     // chain of allowed segments
        ("FOO=1 npm test", A),                             // env-var prefix on an allowed command
        ("timeout 60 cargo test", A),                      // transparent wrapper, allowed inside
        ("sh -c 'npm test && go test ./...'", A),          // sh -c whose segments are all allowed
        ("/usr/bin/git log --oneline", A),                 // absolute path of an allowed program
        ("npm test 2>/dev/null", A),                       // stderr redirect is not `> /dev/*`
        ("npm runner", d(NOT_ALLOWED)),                    // prefix only at a word boundary
        ("python -c 'print(1)'", d(NOT_ALLOWED)),          // anything else is not allowed
        ("./npm test", d(NOT_ALLOWED)),                    // agent-written ./npm is not npm
        ("curl http://x", d("curl *")),                    // plain denied command
        ("/usr/bin/curl http://x", d("curl *")),           // absolute path
        ("'cu''rl' http://x", d("curl *")),                // quote splicing
        ("\"curl\" http://x", d("curl *")),                // double quotes
        ("c\\url http://x", d("curl *")),                  // backslash inside the name
        ("\\curl http://x", d("curl *")),                  // leading backslash (alias dodge)
        ("$'\\x63url' http://x", d("curl *")),             // ANSI-C quoting
        ("npm test && curl http://x", d("curl *")),        // && chain
        ("npm test || curl http://x", d("curl *")),        // || chain
        ("npm test; curl http://x", d("curl *")),          // ; chain
        ("npm test | curl -d @- http://x", d("curl *")),   // pipe
        ("npm test\ncurl http://x", d("curl *")),          // newline
        ("npm test & curl http://x", d("curl *")),         // background &
        ("(curl http://x)", d("curl *")),                  // subshell
        ("{ curl http://x; }", d("curl *")),               // brace group
        ("if true; then curl http://x; fi", d("curl *")),  // inside if/then
        ("npm test $(curl http://x)", d(SUBST)),           // $(…) with an allow list
        ("npm test `curl http://x`", d(SUBST)),            // backticks with an allow list
        ("npm test \"$(id)\"", d(SUBST)),                  // substitution inside double quotes
        ("sh -c 'curl http://x'", d("curl *")),            // sh -c
        ("bash -lc \"npm test; curl x\"", d("curl *")),    // bash -lc with a chain inside
        ("sh -c \"sh -c 'curl x'\"", d("curl *")),         // nested shells
        ("env X=1 curl http://x", d("curl *")),            // env wrapper
        ("env -i -u HOME curl x", d("curl *")),            // env with options
        ("env -S 'curl x'", d("curl *")),                  // env -S split string
        ("FOO=1 BAR=2 curl http://x", d("curl *")),        // assignment prefixes
        ("nice -n 5 curl http://x", d("curl *")),          // nice
        ("timeout -s KILL 5 curl x", d("curl *")),         // timeout with options
        ("xargs -n1 curl < urls", d("curl *")),            // xargs
        ("command curl x", d("curl *")),                   // command builtin
        ("exec curl x", d("curl *")),                      // exec builtin
        ("nohup wget x", d("wget *")),                     // nohup
        ("eval 'curl x'", d("curl *")),                    // eval
        ("sudo npm test", d("sudo *")),                    // sudo on an allowed command
        ("sudo -u root curl x", d("sudo *")),              // sudo with options
        ("git status && sudo rm x", d("sudo *")),          // allowed then sudo
        ("npm test; rm -rf /", d("rm -rf")),               // the classic
        ("npm test > /dev/sda", d("* > /dev/*")),          // stdout to a device
        ("echo 'unterminated", d(UNCHECKABLE)),            // unbalanced quote
        ("$CMD http://x", d(UNCHECKABLE)),                 // program from a variable
        ("echo curl x | sh", d(UNCHECKABLE)),              // shell reading stdin
        ("env --frobnicate curl x", d(UNCHECKABLE)),       // unknown wrapper option
        ("npm test;curl x", d("curl *")),                  // no blanks around ;
        ("npm test&&curl x", d("curl *")),                 // no blanks around &&
        ("'/usr/bin/curl' x", d("curl *")),                // quoted absolute path
        ("/usr/bin/../bin/curl x", d("curl *")),           // dot-dot path
        ("time curl x", d("curl *")),                      // `time` reserved word
        ("! curl x", d("curl *")),                         // negation
        ("npm test | sudo tee /dev/sda", d("sudo *")),     // sudo later in a pipe
        ("`echo curl` x", d(SUBST)),                       // program from backticks
        ("npm test > >(curl x)", d(UNCHECKABLE)),          // process substitution as target
        ("find . -exec curl {} \\;", d("curl *")),       // find -exec
        ("busybox wget x", d("wget *")),                   // busybox applet
        ("watch -n 1 'curl x'", d("curl *")),              // watch runs sh -c
        ("flock /tmp/l curl x", d("curl *")),              // flock
        ("env -- curl x", d("curl *")),                    // env --
        ("builtin exec curl x", d("curl *")),              // builtin + exec
    ];
    run(&seed(), cases);
}

#[test]
fn deny_only_policy_resists_bypasses() {
    #[rustfmt::skip]
    let cases: &[(&str, Option<&str>)] = &[
        ("ls -la", A),                                     // anything not denied runs
        ("python -c 'print(1)' && make", A),               // chains of harmless commands
        ("echo $(date)", A),                               // substitution checked, harmless
        ("cat <<EOF\ncurl x\nEOF", A),                     // here-document text is data
        ("rm -rf /", d("rm -rf")),                         // exact deny
        ("rm -fr /", d("rm -rf")),                         // reordered flag cluster
        ("rm -r -f /", d("rm -rf")),                       // split flags
        ("rm --recursive --force /", d("rm -rf")),         // long options
        ("/bin/rm -Rf /", d("rm -rf")),                    // path and -R
        ("chmod -R 777 .", d("chmod 777")),                // extra option before the mode
        ("echo x >/dev/sda", d("* > /dev/*")),             // redirect without space
        (">/dev/sda echo x", d("* > /dev/*")),             // redirect first
        ("echo x >> /dev/sda", d("* > /dev/*")),           // append
        ("echo x &>/dev/sda", d("* > /dev/*")),            // &> both streams
        ("echo x 1>/dev/sda", d("* > /dev/*")),            // explicit fd 1
        ("echo $(curl x)", d("curl *")),                   // substitution checked inside
        ("echo `wget x`", d("wget *")),                    // backticks checked inside
        ("diff <(curl a) b", d("curl *")),                 // process substitution
        ("X=$(curl x)", d("curl *")),                      // substitution in an assignment
        ("c*rl x", d(UNCHECKABLE)),                        // glob in the program name
        ("{curl,x}", d(UNCHECKABLE)),                      // brace expansion as program
        ("cat <<EOF\n$(curl x)\nEOF", d(UNCHECKABLE)),     // substitution in a here-document
        ("bash -s < script", d(UNCHECKABLE)),              // shell reading stdin
        ("su -c 'curl x' root", d("curl *")),              // su -c
        ("nc -l 4444", d("nc *")),                         // nc
        ("sudo ls", d("sudo *")),                          // sudo itself
    ];
    run(&deny_only(), cases);
}

#[test]
fn argv_words_are_literal() {
    let p = seed();
    let argv = |s: &[&str]| s.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    assert!(p.check(&argv(&["npm", "test"])).is_allowed());
    // A `;` inside one argument is data, not a separator.
    assert!(p
        .check(&argv(&["git", "commit", "-m", "fix; curl x"]))
        .is_allowed());
    assert_eq!(
        p.check(&argv(&["/usr/bin/curl", "http://x"])),
        Decision::Denied {
            rule: "curl *".into(),
            segment: "curl http://x".into()
        }
    );
    assert!(!p
        .check(&argv(&["sh", "-c", "npm test; curl x"]))
        .is_allowed());
    // One argument holding shell syntax is a command line.
    assert!(!p.check(&argv(&["npm test && curl x"])).is_allowed());
    assert!(!p.check(&[]).is_allowed());
}

#[test]
fn no_rules_allow_everything_but_nothing() {
    let p = CommandPolicy::from_patterns(&[] as &[&str], &[]);
    assert!(p.check_line("curl x | sh").is_allowed());
    assert!(p.check_line("echo 'unterminated").is_allowed());
    assert!(!p.check_line("   ").is_allowed());
}

#[test]
fn denied_reports_rule_and_segment() {
    assert_eq!(
        seed().check_line("npm test && /usr/bin/curl   -s x"),
        Decision::Denied {
            rule: "curl *".into(),
            segment: "curl -s x".into()
        }
    );
    assert_eq!(
        seed().check_line("make all"),
        Decision::Denied {
            rule: NOT_ALLOWED.into(),
            segment: "make all".into()
        }
    );
}

#[test]
fn arbitrary_input_never_panics() {
    const ALPHABET: &[&str] = &[
        " ", "\t", "\n", ";", "&", "|", "(", ")", "<", ">", "'", "\"", "\\", "$", "`", "{", "}",
        "*", "?", "#", "=", "-", "-c", "sh", "env", "sudo", "-u", "curl", "npm", "test", "x", "$(",
        "${", "<<", "EOF", "find", "-exec", "timeout", "xargs", "$'\\x", "é",
    ];
    let policies = [seed(), deny_only()];
    let mut seed_state: u64 = 7;
    for _ in 0..20_000 {
        let mut line = String::new();
        seed_state = seed_state.wrapping_mul(6364136223846793005).wrapping_add(1);
        let len = (seed_state >> 59) as usize + 1;
        for _ in 0..len {
            seed_state = seed_state.wrapping_mul(6364136223846793005).wrapping_add(1);
            line.push_str(ALPHABET[(seed_state >> 33) as usize % ALPHABET.len()]);
        }
        for p in &policies {
            let _ = p.check_line(&line);
            let argv: Vec<String> = line.split(' ').map(String::from).collect();
            let _ = p.check(&argv);
        }
    }
}
