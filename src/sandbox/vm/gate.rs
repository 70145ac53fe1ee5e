//! The command gate at the vm level: how `$CHANT_EXEC` in the guest reaches chant on the host.
//!
//! The transport is qemu's user-mode network with `restrict=on`, whose one forward for the
//! gate is `guestfwd=tcp:10.0.2.100:GATE_PORT-cmd:git-chant exec --gate SOCKET --bridge`:
//! qemu starts that process for each guest connection and it carries the bytes to the run's
//! gate socket (`crate::gate::bridge`). The NIC exists even when `agent.network` is off;
//! then it has no other forward, and `restrict=on` drops every other packet, so the guest
//! reaches nothing else (no route out, no DNS, not the host).
//!
//! In the guest, `$CHANT_EXEC` is a busybox script ([`client_script`]) speaking the gate's
//! JSON lines (`crate::gate`) with `nc`: chant's own busybox, written after the image, so
//! it needs nothing of the image nor git-chant (dynamically linked, and tens of MB) in the
//! initramfs. It fails closed: no channel, no answer, or an answer other than the two the
//! gate gives is a refusal (exit 1; 2 for Claude Code's PreToolUse hook). The host decides
//! and records everything; the script only carries out the answer.

use std::path::Path;

use super::SandboxError;

/// Where the guest finds the gate: qemu's forward address (shared with the network relay,
/// on its own port).
pub(super) const GATE_ADDRESS: &str = super::PROXY_ADDRESS;
pub(super) const GATE_PORT: u16 = 3130;

/// `$CHANT_EXEC` in a guest without a gate channel (never in a run from `work`).
pub(super) const STUB: &str =
    "#!/bin/sh\necho \"chant: the command gate is not available in this vm\" >&2\nexit 126\n";

/// The `guestfwd` option value that hands each guest connection to `socket` on the host.
pub(super) fn forward(socket: &Path) -> Result<String, SandboxError> {
    let exe = std::env::current_exe()?;
    let bridge = format!(
        "{} exec --gate {} --bridge",
        crate::exec::shell::quote(&exe.to_string_lossy()),
        crate::exec::shell::quote(&socket.to_string_lossy()),
    );
    // qemu splits the command with shell quoting rules but runs no shell; a comma ends a
    // qemu option unless doubled.
    Ok(format!(
        "tcp:{GATE_ADDRESS}:{GATE_PORT}-cmd:{}",
        bridge.replace(',', ",,")
    ))
}

/// The guest's `$CHANT_EXEC`, asking `address:port` through chant's busybox at `busybox`.
pub(super) fn client_script(busybox: &str, address: &str, port: u16) -> String {
    CLIENT
        .replace("@BUSYBOX@", busybox)
        .replace("@ADDRESS@", address)
        .replace("@PORT@", &port.to_string())
}

/// The client. Requests and answers are the lines of `crate::gate`; the answer is matched
/// exactly (`{"allow":true}`, or `{"allow":false…}` with its reason), anything else
/// refuses. Arguments go as they are: bytes that are not UTF-8 reach the host, which refuses
/// them. A hook event goes in as it is only when it is one JSON object (`{` … `}`: it then
/// cannot add a field of its own to the request, the host refuses duplicate and unknown
/// ones); anything else goes as a string, which the host refuses and records. An allowed
/// command runs as a program (`exec`, never one of this script's functions), one word with
/// blanks as `sh -c`, like the host's `git chant exec`.
const CLIENT: &str = r#"#!@BUSYBOX@ sh
# $CHANT_EXEC: chant's command gate. Chant on the host decides and records each command;
# an allowed one then runs here. Usage: "$CHANT_EXEC" <cmd> [args...]
B=@BUSYBOX@
mode=argv
case "$1" in
--claude-hook) mode=claude_hook ;;
--claude-hook-result) mode=claude_hook_result ;;
esac
refuse() {
  printf '%s\n' "$1" >&2
  [ "$mode" = claude_hook ] && exit 2
  exit 1
}
# JSON for the request: `json argv CWD ARG...` prints {"argv":[ARG...],"cwd":CWD},
# `json string S` prints S as one JSON string (bytes as they are).
json() {
  $B awk 'function enc(s,   e, part, n, j, c) {
      e = ""; part = ""; n = length(s)
      for (j = 1; j <= n; j++) {
        c = substr(s, j, 1); part = part ((c in esc) ? esc[c] : c)
        if (j % 256 == 0) { e = e part; part = "" }
      }
      return "\"" e part "\""
    }
    BEGIN {
      for (i = 1; i < 32; i++) esc[sprintf("%c", i)] = sprintf("\\u%04x", i)
      esc["\""] = "\\\""; esc["\\"] = "\\\\"
      if (ARGV[1] == "string") { printf "%s", enc(ARGV[2]); exit }
      printf "{\"argv\":["
      for (i = 3; i < ARGC; i++) printf "%s%s", (i > 3 ? "," : ""), enc(ARGV[i])
      printf "],\"cwd\":%s}", enc(ARGV[2])
    }' "$@"
}
if [ "$mode" = argv ]; then
  if [ $# -eq 0 ]; then
    echo 'chant: no command given; usage: "$CHANT_EXEC" <cmd> [args...]' >&2
    exit 2
  fi
  request=$(json argv "$PWD" "$@")
else
  event=$($B head -c 65537 | $B tr -d '\r\n')
  case "$event" in
  "{"*"}") ;;
  *) event=$(json string "$event") ;;
  esac
  request="{\"$mode\":$event,\"cwd\":$(json string "$PWD")}"
fi
unreachable="chant: the command gate is unreachable at @ADDRESS@:@PORT@; command refused"
dir=$($B mktemp -d /tmp/chant-gate.XXXXXX) || refuse "$unreachable (no room in /tmp)"
trap '$B rm -rf "$dir"' EXIT
$B mkfifo "$dir/up" "$dir/down" || refuse "$unreachable (no pipes in /tmp)"
$B nc @ADDRESS@ @PORT@ <"$dir/up" >"$dir/down" 2>/dev/null &
# A connection that is gone fails the write instead of killing this script.
trap '' PIPE
exec 3>"$dir/up" 4<"$dir/down"
printf '%s\n' "$request" >&3 2>/dev/null || refuse "$unreachable (it did not take the request)"
IFS= read -r answer <&4 || refuse "$unreachable (no answer)"
exec 4<&-
case "$answer" in
'{"allow":true}') ;;
'{"allow":false}') refuse "refused by chant's command gate" ;;
'{"allow":false,"reason":"'*'"}')
  reason=${answer#'{"allow":false,"reason":"'}
  refuse "$(printf '%s\n' "${reason%'"}'}" | $B awk '{
    s = $0; out = ""
    while ((i = index(s, "\\")) > 0) {
      c = substr(s, i + 1, 1)
      if (c == "n") c = "\n"; else if (c == "t") c = "\t"; else if (c == "u") c = "\\u"
      out = out substr(s, 1, i - 1) c; s = substr(s, i + 2)
    }
    printf "%s", out s
  }')" ;;
*) refuse "chant: the command gate gave an answer chant cannot read; command refused" ;;
esac
case "$mode" in
claude_hook)
  echo '{"hookSpecificOutput":{"hookEventName":"PreToolUse","permissionDecision":"allow","permissionDecisionReason":"allowed by chant'"'"'s command gate (agent.commands)"}}'
  exit 0 ;;
claude_hook_result) exit 0 ;;
esac
trap - PIPE
case "$#:$1" in
1:*[[:space:]]*) (exec sh -c "$1") 3>&- ;;
*) (exec "$@") 3>&- ;;
esac
code=$?
trap '' PIPE
printf '{"exit_code":%d}\n' "$code" >&3 2>/dev/null
exit "$code"
"#;

#[cfg(test)]
mod tests {
    //! The script against the real gate server and chant's busybox on this machine, with a
    //! loopback listener standing in for qemu's forward.
    use std::io::Write;
    use std::net::TcpListener;
    use std::os::unix::net::UnixStream;
    use std::path::PathBuf;
    use std::process::{Command, Output, Stdio};
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::gate::server::GateServer;
    use crate::gate::{Answer, Asked, Judge};

    const BUSYBOX: &str = "/bin/busybox";

    /// Allows `true`, `false`, `sh` and `touch ok*` and the hook's `ls`; remembers all.
    #[derive(Default)]
    struct Seen {
        decided: Mutex<Vec<Asked>>,
        ran: Mutex<Vec<Option<i32>>>,
    }

    impl Judge for Seen {
        fn decide(&self, asked: &Asked) -> Answer {
            self.decided.lock().expect("lock").push(asked.clone());
            let allow = match asked {
                Asked::Run { argv, .. } => {
                    ["true", "false", "sh", "exit"].contains(&argv[0].as_str())
                        || (argv[0] == "touch" && argv[1].starts_with("ok"))
                        || argv[0].starts_with("echo ")
                }
                Asked::ClaudeHook { line, .. } => line == "ls",
                Asked::ClaudeHookResult { .. } => true,
                Asked::Unreadable { .. } => false,
            };
            Answer {
                allow,
                reason: (!allow).then(|| "chant: command refused: \"it\" is denied".into()),
            }
        }

        fn ran(&self, _asked: &Asked, exit_code: Option<i32>, _duration_ms: u64) {
            self.ran.lock().expect("lock").push(exit_code);
        }
    }

    struct Rig {
        dir: tempfile::TempDir,
        script: PathBuf,
        judge: Arc<Seen>,
        _server: Option<GateServer>,
    }

    /// Whether chant's busybox is here; says so loudly when not (and fails under
    /// `CHANT_REQUIRE_VM`, as the vm tests do).
    #[allow(clippy::print_stderr)]
    fn have_busybox() -> bool {
        if Path::new(BUSYBOX).exists() {
            return true;
        }
        assert!(
            std::env::var_os("CHANT_REQUIRE_VM").is_none(),
            "CHANT_REQUIRE_VM is set but {BUSYBOX} is missing"
        );
        eprintln!("\n*** SKIPPING: {BUSYBOX} is missing (install busybox-static, or set CHANT_REQUIRE_VM=1 to fail instead) ***\n");
        false
    }

    /// Serves on loopback; each connection is carried to the gate's socket (as qemu's
    /// forward and `bridge` do), or answered `liar` (raw bytes) when given.
    fn rig(liar: Option<&'static [u8]>) -> Option<Rig> {
        if !have_busybox() {
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let judge = Arc::new(Seen::default());
        let socket = dir.path().join("gate.sock");
        let server = GateServer::start(&socket, judge.clone()).expect("serve");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let socket = socket.clone();
                std::thread::spawn(move || match liar {
                    Some(bytes) => {
                        let mut tcp = tcp;
                        let _ = std::io::BufRead::read_line(
                            &mut std::io::BufReader::new(&tcp),
                            &mut String::new(),
                        );
                        let _ = tcp.write_all(bytes);
                    }
                    None => {
                        let unix = UnixStream::connect(&socket).expect("gate");
                        let (mut up_from, mut up_to) = (
                            tcp.try_clone().expect("tcp"),
                            unix.try_clone().expect("unix"),
                        );
                        std::thread::spawn(move || {
                            let _ = std::io::copy(&mut up_from, &mut up_to);
                            let _ = up_to.shutdown(std::net::Shutdown::Write);
                        });
                        let (mut down_from, mut down_to) = (unix, tcp);
                        let _ = std::io::copy(&mut down_from, &mut down_to);
                        let _ = down_to.shutdown(std::net::Shutdown::Both);
                    }
                });
            }
        });
        let script = dir.path().join("chant-exec");
        std::fs::write(&script, client_script(BUSYBOX, "127.0.0.1", port)).expect("script");
        Some(Rig {
            dir,
            script,
            judge,
            _server: Some(server),
        })
    }

    impl Rig {
        fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
            let mut child = Command::new(BUSYBOX)
                .arg("sh")
                .arg(&self.script)
                .args(args)
                .current_dir(self.dir.path())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn");
            let mut input = child.stdin.take().expect("stdin");
            let _ = input.write_all(stdin);
            drop(input);
            child.wait_with_output().expect("wait")
        }

        fn ran(&self, n: usize) -> Vec<Option<i32>> {
            let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while self.judge.ran.lock().expect("lock").len() < n
                && std::time::Instant::now() < until
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            self.judge.ran.lock().expect("lock").clone()
        }
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    #[test]
    fn an_allowed_command_runs_here_and_its_exit_code_reaches_the_host() {
        let Some(rig) = rig(None) else { return };
        let out = rig.run(&["touch", "ok-probe"], b"");
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert!(rig.dir.path().join("ok-probe").exists());
        let out = rig.run(&["sh", "-c", "echo out; exit 3"], b"");
        assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "out\n");
        // One word with blanks is a command line for sh -c.
        let out = rig.run(&["echo one two > line.txt"], b"");
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(
            std::fs::read_to_string(rig.dir.path().join("line.txt")).expect("line"),
            "one two\n"
        );
        assert_eq!(rig.ran(3), [Some(0), Some(3), Some(0)]);
        let decided = rig.judge.decided.lock().expect("lock");
        let Asked::Run { argv, cwd } = &decided[1] else {
            panic!("{decided:?}")
        };
        assert_eq!(argv, &["sh", "-c", "echo out; exit 3"]);
        assert_eq!(Path::new(cwd), rig.dir.path().canonicalize().expect("dir"));
    }

    #[test]
    fn a_refused_command_never_runs_and_the_reason_is_shown() {
        let Some(rig) = rig(None) else { return };
        let out = rig.run(&["touch", "denied-probe"], b"");
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            text(&out.stderr),
            "chant: command refused: \"it\" is denied\n"
        );
        assert!(!rig.dir.path().join("denied-probe").exists());
        // A builtin or a function of the script is not a way around the gate: `exit` is
        // allowed here and runs as a program, which does not exist.
        let out = rig.run(&["exit", "0"], b"");
        assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
        assert_eq!(rig.ran(1), [Some(127)]);
    }

    #[test]
    fn arguments_of_every_byte_arrive_exactly_or_are_refused_by_the_host() {
        let Some(rig) = rig(None) else { return };
        let odd = "a\"b\\c\td\u{1b}e\u{1}é 'q' $(x) `y`";
        let out = rig.run(&["touch", &format!("ok{odd}")], b"");
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert!(rig.dir.path().join(format!("ok{odd}")).exists());
        // Not UTF-8: the host refuses, the command never runs.
        let mut child = Command::new(BUSYBOX);
        child.arg("sh").arg(&rig.script).arg("touch");
        use std::os::unix::ffi::OsStrExt;
        child.arg(std::ffi::OsStr::from_bytes(b"ok-\xff"));
        let out = child.current_dir(rig.dir.path()).output().expect("run");
        assert_eq!(out.status.code(), Some(1));
        assert!(!rig
            .dir
            .path()
            .join(std::ffi::OsStr::from_bytes(b"ok-\xff"))
            .exists());
        let decided = rig.judge.decided.lock().expect("lock");
        assert!(
            matches!(&decided[1], Asked::Unreadable { why, .. } if why.contains("UTF-8")),
            "{decided:?}"
        );
    }

    #[test]
    fn the_claude_hooks_are_answered_with_the_codes_claude_code_reads() {
        let Some(rig) = rig(None) else { return };
        let event = |c: &str| {
            format!(
                "{}\n",
                serde_json::json!({"tool_name": "Bash", "tool_input": {"command": c}})
            )
        };
        let out = rig.run(&["--claude-hook"], event("ls").as_bytes());
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let said: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(said["hookSpecificOutput"]["permissionDecision"], "allow");
        let out = rig.run(&["--claude-hook"], event("rm -rf /").as_bytes());
        assert_eq!(out.status.code(), Some(2));
        assert!(out.stdout.is_empty());
        let out = rig.run(&["--claude-hook-result"], event("ls").as_bytes());
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        // Not an event, or one that tries to add a request of its own: refused by the host.
        for hostile in [
            &b"not json"[..],
            b"",
            b"null,\"argv\":[\"true\"]",
            b"{\"tool_input\":{\"command\":\"ls\"}},\"argv\":[\"true\"],\"x\":{}",
        ] {
            let out = rig.run(&["--claude-hook"], hostile);
            assert_eq!(out.status.code(), Some(2), "{}", text(hostile));
        }
        let decided = rig.judge.decided.lock().expect("lock");
        assert_eq!(decided.len(), 7, "{decided:?}");
        assert!(decided[3..]
            .iter()
            .all(|a| matches!(a, Asked::Unreadable { .. })));
    }

    /// The `-netdev`/`-nic` arguments qemu gets for a job with `network` and `gate`.
    fn nic_args(network: bool, gate: bool) -> Vec<String> {
        let config =
            crate::config::parse(".chant/config.md", "---\nagent: {}\n---\n").expect("config");
        let vm = super::super::Vm {
            config: config.agent.vm,
            qemu: "qemu-system-x86_64".into(),
            kernel: "/boot/vmlinuz-test".into(),
            modules: Vec::new(),
            busybox: BUSYBOX.into(),
            max_file: 1,
        };
        let egress = crate::sandbox::Egress {
            socket: "/run/x/proxy.sock".into(),
            handoff: "/run/x/handoff.sock".into(),
            url: "http://127.0.0.1:1".into(),
        };
        let argv = vm
            .qemu_argv(
                "tcg",
                Path::new("/i"),
                &[],
                "",
                network.then_some(&egress),
                gate.then_some(Path::new("/run/a,b/gate.sock")),
            )
            .expect("argv");
        argv.windows(2)
            .filter(|w| w[0] == "-netdev" || w[0] == "-nic")
            .map(|w| w[1].clone())
            .collect()
    }

    #[test]
    fn the_guest_nic_is_restricted_to_the_gates_forward_and_the_proxys_when_enabled() {
        assert_eq!(nic_args(false, false), ["none"]);
        let gate_only = nic_args(false, true);
        assert_eq!(gate_only.len(), 1, "{gate_only:?}");
        let netdev = &gate_only[0];
        assert!(netdev.starts_with("user,id=n0,restrict=on,"), "{netdev}");
        assert_eq!(netdev.matches("guestfwd=").count(), 1, "{netdev}");
        // The socket's comma is doubled (else it would end qemu's option) and quoted.
        assert!(
            netdev.ends_with(&format!(
                ",guestfwd=tcp:{GATE_ADDRESS}:{GATE_PORT}-cmd:{} exec --gate '/run/a,,b/gate.sock' --bridge",
                crate::exec::shell::quote(
                    &std::env::current_exe().expect("exe").to_string_lossy()
                )
            )),
            "{netdev}"
        );
        let both = nic_args(true, true);
        assert_eq!(both.len(), 1, "{both:?}");
        assert!(both[0].starts_with("user,id=n0,restrict=on,"), "{both:?}");
        assert_eq!(both[0].matches("guestfwd=").count(), 2, "{both:?}");
        assert!(both[0].contains(&format!(":{}-cmd:", crate::net::RELAY_PORT)));
        assert!(!both[0].contains("hostfwd"), "{both:?}");
    }

    #[test]
    fn no_channel_or_an_answer_it_cannot_read_is_a_refusal() {
        // Nothing listens: refused, nothing runs.
        if !have_busybox() {
            return;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let free = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = free.local_addr().expect("addr").port();
        drop(free);
        let script = dir.path().join("chant-exec");
        std::fs::write(&script, client_script(BUSYBOX, "127.0.0.1", port)).expect("script");
        let out = Command::new(BUSYBOX)
            .arg("sh")
            .arg(&script)
            .args(["touch", "ok-probe"])
            .current_dir(dir.path())
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out.stderr).contains("unreachable"),
            "{}",
            text(&out.stderr)
        );
        assert!(!dir.path().join("ok-probe").exists());
        let out = Command::new(BUSYBOX)
            .arg("sh")
            .arg(&script)
            .arg("--claude-hook")
            .current_dir(dir.path())
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2));
        // Answers that are not exactly the gate's.
        for liar in [
            &b"{\"allow\": true}\n"[..],
            b"{\"allow\":true,\"x\":1}\n",
            b"{\"allow\":\"true\"}\n",
            b"allow\n",
            b"{\"allow\":true}",
            b"",
        ] {
            let Some(rig) = rig(Some(liar)) else { return };
            let out = rig.run(&["touch", "ok-probe"], b"");
            assert_eq!(out.status.code(), Some(1), "{}", text(liar));
            assert!(!rig.dir.path().join("ok-probe").exists(), "{}", text(liar));
        }
    }
}
