//! The pod's own steps, as a POSIX shell script run by `sh -c` in the worker image (which
//! needs only `sh` and `git` besides the agent): write the prompt, clone `chant/<id>` from
//! the repository, run the agent, commit what it left and push it ONLY to
//! `refs/chant/incoming/<id>/<session>`. Everything the pod produces is untrusted: chant
//! fetches the result as data and judges it like every level's (step 8); the server hook
//! refuses an agent's push to anything but an incoming ref.

use crate::exec::shell::quote;

/// The emptyDir mounted for the workspace.
pub const WORKSPACE_MOUNT: &str = "/workspace";
/// The clone inside it. A directory the pod user creates itself: git refuses a work tree
/// owned by someone else (the emptyDir's root is root's).
pub const WORK_DIR: &str = "/workspace/repo";
/// The agent's home (an emptyDir).
pub const HOME: &str = "/home/agent";
/// The prompt and the command-gate stub (on the `/tmp` emptyDir).
pub const FILES_DIR: &str = "/tmp/chant";
/// `$CHANT_EXEC` in the pod: a stub saying the gate is not available at this level.
pub const EXEC_STUB: &str = "/tmp/chant/chant-exec";
/// `PATH` in the pod.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The variable carrying the repository URL.
pub const REPO_URL_VAR: &str = "CHANT_REPO_URL";

/// The variable carrying the content of the `i`th job file.
pub fn file_var(i: usize) -> String {
    format!("CHANT_FILE_{i}")
}

/// What every variable carrying a HOME file starts with: they come from the run's Secret
/// (never the Job), so an exposed secret of such a name is refused.
pub const HOME_FILE_PREFIX: &str = "CHANT_HOME_FILE_";

/// The variable (a key of the run's Secret) carrying the content of the `i`th HOME file.
pub fn home_file_var(i: usize) -> String {
    format!("{HOME_FILE_PREFIX}{i}")
}

/// What every variable carrying a file for the clone starts with: they come from the run's
/// Secret too, so an exposed secret of such a name is refused.
pub const WORK_FILE_PREFIX: &str = "CHANT_WORK_FILE_";

/// The variable (a key of the run's Secret) carrying the content of the `i`th file for the
/// clone.
pub fn work_file_var(i: usize) -> String {
    format!("{WORK_FILE_PREFIX}{i}")
}

/// The script; the agent's argv follows as `"$@"` (`sh -c SCRIPT chant-pod ARGV…`).
/// `files` are the pod paths of the job files, in the order of their variables; `home` the
/// paths under [`HOME`] (relative, already checked to hold only normal components) of the
/// run's HOME files, in the order of theirs: written before the clone exists, so nothing
/// of the branch can be in their way, and unset before the agent starts. `work` the paths
/// in the clone (relative, normal components, never `.git`) of the adapter's files for it:
/// written over the fresh clone, before the agent starts, so that what the repository
/// committed for the agent (its settings, plugins, `.env`) is replaced by chant's merged
/// or neutral version, as at every other level. The branch is hostile: a directory on the
/// way that is a symbolic link stops the run (nothing is written through it), and a link
/// at the name itself is replaced, never followed.
pub fn pod_script(files: &[&str], home: &[&str], work: &[&str]) -> String {
    let mut s = String::from(
        "set -eu\n\
         umask 077\n\
         mkdir -p /tmp/chant \"$HOME\"\n",
    );
    for (i, path) in files.iter().enumerate() {
        let var = file_var(i);
        s.push_str(&format!(
            "printf '%s' \"${var}\" > {path}\nunset {var}\n",
            path = quote(path)
        ));
    }
    for (i, rel) in home.iter().enumerate() {
        let var = home_file_var(i);
        let path = format!("{HOME}/{rel}");
        if let Some((dir, _)) = path.rsplit_once('/') {
            s.push_str(&format!("mkdir -p {}\n", quote(dir)));
        }
        s.push_str(&format!(
            "printf '%s' \"${var}\" > {path}\nunset {var}\n",
            path = quote(&path)
        ));
    }
    s.push_str(&format!(
        "printf '%s\\n' '#!/bin/sh' 'echo \"chant: the command gate is not available in a kubernetes pod\" >&2' 'exit 126' > {stub}\n\
         chmod 755 {stub}\n\
         git clone --quiet --single-branch --branch \"chant/$CHANT_SPEC_ID\" -- \"${REPO_URL_VAR}\" {work}\n\
         cd {work}\n\
         {neutralise}\
         set +e\n\
         \"$@\"\n\
         code=$?\n\
         set -e\n\
         if [ \"$code\" -ne 0 ]; then\n  \
           echo \"chant: the agent exited with code $code; nothing pushed\" >&2\n  \
           exit \"$code\"\n\
         fi\n\
         cd {work}\n\
         # The agent may have rewritten .git: no hooks, no fsmonitor, an explicit URL.\n\
         g() {{ git -c core.hooksPath=/dev/null -c core.fsmonitor=false -c user.name='chant agent' -c user.email=agent@chant.invalid \"$@\"; }}\n\
         g add -A\n\
         g commit --quiet --allow-empty --no-verify -m \"chant: result of $CHANT_SPEC_ID ($CHANT_SESSION)\"\n\
         g push --quiet --no-verify -- \"${REPO_URL_VAR}\" \"HEAD:refs/chant/incoming/$CHANT_SPEC_ID/$CHANT_SESSION\"\n",
        stub = quote(EXEC_STUB),
        work = quote(WORK_DIR),
        neutralise = clone_files(work),
    ));
    s
}

/// The lines writing each file for the clone from its variable (run in the clone).
fn clone_files(work: &[&str]) -> String {
    if work.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "chant_dir() {\n  \
           if [ -L \"$1\" ]; then echo \"chant: $1 in the branch is a symbolic link; chant does not write the agent's settings through it (remove the link from the branch)\" >&2; exit 1; fi\n  \
           [ -d \"$1\" ] || mkdir -- \"$1\"\n\
         }\n",
    );
    for (i, rel) in work.iter().enumerate() {
        let var = work_file_var(i);
        let parts: Vec<&str> = rel.split('/').collect();
        for end in 1..parts.len() {
            s.push_str(&format!("chant_dir {}\n", quote(&parts[..end].join("/"))));
        }
        let path = quote(rel);
        s.push_str(&format!(
            "rm -f -- {path}\nprintf '%s' \"${var}\" > {path}\nunset {var}\n"
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_only_to_the_incoming_ref() {
        let s = pod_script(&["/tmp/chant/prompt.md"], &[], &[]);
        let pushes: Vec<&str> = s.lines().filter(|l| l.contains(" push ")).collect();
        assert_eq!(pushes.len(), 1, "{s}");
        assert!(pushes[0].contains("\"HEAD:refs/chant/incoming/$CHANT_SPEC_ID/$CHANT_SESSION\""));
        assert!(s.contains("printf '%s' \"$CHANT_FILE_0\" > '/tmp/chant/prompt.md'"));
        assert!(s.contains("--branch \"chant/$CHANT_SPEC_ID\""));
    }

    #[test]
    fn home_files_are_written_from_their_variables_before_the_clone_and_unset() {
        let s = pod_script(
            &["/tmp/chant/prompt.md"],
            &[".codex/config.toml", "it's"],
            &[],
        );
        let at = |needle: &str| s.find(needle).unwrap_or_else(|| panic!("{needle}:\n{s}"));
        let write = at("printf '%s' \"$CHANT_HOME_FILE_0\" > '/home/agent/.codex/config.toml'");
        assert!(at("mkdir -p '/home/agent/.codex'") < write);
        assert!(write < at("unset CHANT_HOME_FILE_0"));
        assert!(s.contains("printf '%s' \"$CHANT_HOME_FILE_1\" > '/home/agent/it'\\''s'"));
        assert!(at("unset CHANT_HOME_FILE_1") < at("git clone"));
        assert!(at("git clone") < at("\"$@\""));
    }

    #[test]
    fn the_clones_files_are_written_after_the_clone_and_before_the_agent() {
        let s = pod_script(
            &["/tmp/chant/prompt.md"],
            &[],
            &["opencode.json", ".opencode/plugin/x.js"],
        );
        let at = |needle: &str| s.find(needle).unwrap_or_else(|| panic!("{needle}:\n{s}"));
        let first = at("printf '%s' \"$CHANT_WORK_FILE_0\" > 'opencode.json'");
        let second = at("printf '%s' \"$CHANT_WORK_FILE_1\" > '.opencode/plugin/x.js'");
        assert!(at("cd '/workspace/repo'") < first);
        assert!(at("git clone") < first);
        assert!(at("rm -f -- 'opencode.json'") < first);
        assert!(at("chant_dir '.opencode'\n") < at("chant_dir '.opencode/plugin'\n"));
        assert!(at("chant_dir '.opencode/plugin'\n") < second);
        assert!(second < at("unset CHANT_WORK_FILE_1"));
        assert!(at("unset CHANT_WORK_FILE_1") < at("\"$@\""));
        // Nothing written when there is nothing to write.
        assert!(!pod_script(&[], &[], &[]).contains("chant_dir"));
    }

    /// Runs the lines writing `rel` (content `text`) in `dir`, as the pod's `sh` would.
    fn write_in(dir: &std::path::Path, rel: &str, text: &str) -> std::process::Output {
        std::process::Command::new("sh")
            .args(["-c", &format!("set -eu\n{}", clone_files(&[rel]))])
            .env("CHANT_WORK_FILE_0", text)
            .current_dir(dir)
            .output()
            .expect("sh")
    }

    #[test]
    fn a_branch_directory_that_is_a_symlink_stops_the_pod_and_nothing_is_written_through_it() {
        let clone = tempfile::tempdir().expect("tmp");
        let outside = tempfile::tempdir().expect("tmp");
        std::os::unix::fs::symlink(outside.path(), clone.path().join(".claude")).expect("link");
        let out = write_in(clone.path(), ".claude/settings.json", "{}\n");
        assert_eq!(out.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains(".claude in the branch is a symbolic link"),
            "{out:?}"
        );
        assert!(!outside.path().join("settings.json").exists());

        // A link at the name itself is replaced, never written through; a missing
        // directory is made; the content is the variable's, trailing newline kept.
        let target = outside.path().join("victim");
        std::fs::write(&target, "theirs").expect("write");
        std::os::unix::fs::symlink(&target, clone.path().join(".env")).expect("link");
        let out = write_in(clone.path(), ".env", "# nothing\n");
        assert!(out.status.success(), "{out:?}");
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "theirs");
        let written = clone.path().join(".env");
        assert!(!std::fs::symlink_metadata(&written)
            .expect("meta")
            .is_symlink());
        assert_eq!(
            std::fs::read_to_string(&written).expect("read"),
            "# nothing\n"
        );
        let out = write_in(clone.path(), ".opencode/plugin/x.js", "export {};\n");
        assert!(out.status.success(), "{out:?}");
        assert!(clone.path().join(".opencode/plugin/x.js").is_file());
    }
}
