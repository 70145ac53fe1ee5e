//! Test harness: a temporary git repository with a fixed identity and a clean environment,
//! and a way to run the `git-chant` binary in it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use assert_cmd::cargo::CommandCargoExt;

pub mod agent_images;
pub mod anthropic;
pub mod claude;
pub mod gemini;
pub mod http;
pub mod image;
pub mod live;
pub mod moto;
pub mod netns;
pub mod openai;
pub mod payload;
pub mod vm_images;

/// A fixed "now" for tests that need repeatable ids and timestamps.
pub const FIXED_TS: &str = "2026-01-22T15:30:00Z";

/// A temporary home + repository. Dropped: everything is removed.
pub struct TestRepo {
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub home: PathBuf,
}

impl TestRepo {
    /// `git init` on `main` with one commit, not yet `git chant init`-ed.
    pub fn new() -> TestRepo {
        let tmp = tempfile::tempdir().expect("temp dir");
        let home = tmp.path().join("home");
        let root = tmp.path().join("repo");
        std::fs::create_dir_all(&home).expect("home");
        std::fs::create_dir_all(&root).expect("repo");
        let repo = TestRepo { tmp, root, home };
        repo.git(&["init", "--quiet", "--initial-branch=main"]);
        repo.write("README.md", "# Test project\n");
        repo.git(&["add", "README.md"]);
        repo.git(&["commit", "--quiet", "-m", "Initial commit"]);
        repo
    }

    /// A repository with `git chant init` already run.
    pub fn initialised() -> TestRepo {
        let repo = TestRepo::new();
        repo.chant(&["init"]).assert_ok();
        repo
    }

    /// The clean environment every process of the test gets.
    pub fn env(&self, cmd: &mut Command) {
        // git-chant itself on PATH first, so installed hooks (`git chant hook …`) find it.
        let bin = Path::new(env!("CARGO_BIN_EXE_git-chant"))
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        cmd.env_clear()
            .env("PATH", path)
            .env("HOME", &self.home)
            // Sandboxed clones go under the cache dir: keep them inside the test's temp dir.
            .env("XDG_CACHE_HOME", self.cache_dir())
            .env("LANG", "C.UTF-8")
            .env("GIT_CONFIG_GLOBAL", self.home.join(".gitconfig"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "Test User")
            .env("GIT_AUTHOR_EMAIL", "test@example.com")
            .env("GIT_COMMITTER_NAME", "Test User")
            .env("GIT_COMMITTER_EMAIL", "test@example.com")
            .env("CHANT_ACTOR", "tester")
            .env("CHANT_ACTOR_EMAIL", "tester@example.com");
        // The engine the docker tests talk to is the one chant must reach too.
        if let Some(host) = std::env::var_os("DOCKER_HOST") {
            cmd.env("DOCKER_HOST", host);
        }
    }

    /// Runs `git <args>` in the repository; panics on failure.
    pub fn git(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("git");
        self.env(&mut cmd);
        let out = cmd
            .args(args)
            .current_dir(&self.root)
            .output()
            .expect("run git");
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `git <args>` in `dir` with extra environment; returns the output, whatever it is.
    pub fn git_in(&self, dir: &Path, envs: &[(&str, &str)], args: &[&str]) -> Run {
        let mut cmd = Command::new("git");
        self.env(&mut cmd);
        cmd.envs(envs.iter().copied());
        Run(cmd.args(args).current_dir(dir).output().expect("run git"))
    }

    /// A `git-chant` command ready to run in the repository.
    pub fn chant_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::cargo_bin("git-chant").expect("binary built");
        self.env(&mut cmd);
        cmd.args(args).current_dir(&self.root);
        cmd
    }

    /// Runs `git chant <args>` in the repository.
    pub fn chant(&self, args: &[&str]) -> Run {
        Run(self.chant_cmd(args).output().expect("run git-chant"))
    }

    /// The test's `XDG_CACHE_HOME`.
    pub fn cache_dir(&self) -> PathBuf {
        self.tmp.path().join("cache")
    }

    /// This repository's directory of sandboxed clones under the cache dir (the one
    /// `<repo>-<hash>` directory there, once a run has made it).
    pub fn clones_dir(&self) -> PathBuf {
        let all = self.cache_dir().join("git-chant").join("clones");
        std::fs::read_dir(&all)
            .ok()
            .and_then(|mut d| d.find_map(Result::ok))
            .map_or(all, |e| e.path())
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) {
        let path = self.root.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("mkdir");
        }
        std::fs::write(path, text).expect("write");
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.root.join(rel)).expect("read")
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.root.join(rel).exists()
    }

    /// Writes `.chant/config.md` with `yaml` as front matter.
    pub fn write_config(&self, yaml: &str) {
        self.write(".chant/config.md", &format!("---\n{yaml}---\n\n# Config\n"));
    }

    /// Opens the repository with git2.
    pub fn open(&self) -> git2::Repository {
        git2::Repository::open(&self.root).expect("open repo")
    }
}

/// The result of running the binary.
pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    /// Asserts exit 0 and returns self.
    #[track_caller]
    pub fn assert_ok(self) -> Self {
        assert_eq!(
            self.code(),
            0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
    /// Asserts the exit code and returns self.
    #[track_caller]
    pub fn assert_code(self, code: i32) -> Self {
        assert_eq!(
            self.code(),
            code,
            "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
    /// Asserts stderr contains `needle`.
    #[track_caller]
    pub fn stderr_has(self, needle: &str) -> Self {
        assert!(
            self.stderr().contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr()
        );
        self
    }
    /// Asserts stdout contains `needle`.
    #[track_caller]
    pub fn stdout_has(self, needle: &str) -> Self {
        assert!(
            self.stdout().contains(needle),
            "stdout lacks {needle:?}:\n{}",
            self.stdout()
        );
        self
    }
}

/// Interrupts `child` as a terminal's Ctrl-C would (SIGINT) and waits for it to end.
pub fn ctrl_c(child: std::process::Child) -> Run {
    // SAFETY: kill(2) on the pid of our own child, which has not been waited for yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    Run(child.wait_with_output().expect("wait"))
}

/// Polls `cond` until it holds; panics naming `what` after 30 s.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < until {
        if cond() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("{what}: not within 30 s");
}

/// Path of a file under the crate root (fixtures etc.).
pub fn crate_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

impl TestRepo {
    /// Configures `agent.command` to run the fixture agent `name` (fixtures/agents/) with
    /// `extra` YAML lines under `agent:` (indented by two spaces) and `rest` at top level.
    pub fn use_agent(&self, name: &str, extra: &str, rest: &str) {
        let script = crate_path(&format!("fixtures/agents/{name}"));
        let mut yaml = format!("agent:\n  command: [\"{}\"]\n", script.display());
        yaml.push_str(extra);
        yaml.push_str(rest);
        self.write_config(&yaml);
        self.git(&["add", "-A"]);
        self.git(&["commit", "--quiet", "-m", "chant config"]);
    }

    /// Adds a spec and returns its id.
    pub fn add_spec(&self, title: &str, targets: &[&str]) -> String {
        let mut args = vec!["add", title];
        for t in targets {
            args.push("--target");
            args.push(t);
        }
        self.chant(&args).assert_ok().stdout().trim().to_string()
    }

    /// The ledger entries, oldest first.
    pub fn ledger(&self) -> Vec<serde_json::Value> {
        let out = Command::new("git")
            .args(["log", "--reverse", "--format=%b", "refs/chant/audit"])
            .current_dir(&self.root)
            .output()
            .expect("git log");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).expect("ledger line is JSON"))
            .collect()
    }

    /// The ledger entries of one event, oldest first.
    pub fn events(&self, event: &str) -> Vec<serde_json::Value> {
        self.ledger()
            .into_iter()
            .filter(|e| e["event"] == event)
            .collect()
    }

    /// The commit a ref points to, if it exists.
    pub fn rev(&self, name: &str) -> Option<String> {
        let out = Command::new("git")
            .args(["rev-parse", "--verify", "--quiet", name])
            .current_dir(&self.root)
            .output()
            .expect("git rev-parse");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

// ---- audit ledger helpers ----

/// Replaces the ledger head's commit by `edit` of its raw text (the entry's JSON untouched,
/// so every hash still holds) and points `refs/chant/audit` at it; returns the forged commit.
pub fn forge_ledger_head(repo: &TestRepo, edit: impl FnOnce(&str) -> String) -> String {
    let raw = repo.git(&["cat-file", "commit", "refs/chant/audit"]);
    let forged = edit(&raw);
    assert_ne!(forged, raw, "the edit changed nothing");
    let path = repo.tmp.path().join("forged-commit");
    std::fs::write(&path, forged).expect("write");
    let oid = repo
        .git(&[
            "hash-object",
            "-t",
            "commit",
            "-w",
            "--literally",
            path.to_str().expect("utf8"),
        ])
        .trim()
        .to_string();
    repo.git(&["update-ref", "refs/chant/audit", &oid]);
    oid
}

/// The ledger entries as `git log --format=%b refs/chant/audit` prints them, oldest first.
pub fn ledger_lines(repo: &TestRepo) -> Vec<String> {
    let out = repo.git(&["log", "--reverse", "--format=%b", "refs/chant/audit"]);
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// The ledger commits, oldest first.
pub fn ledger_commits(repo: &TestRepo) -> Vec<String> {
    repo.git(&["rev-list", "--reverse", "refs/chant/audit"])
        .lines()
        .map(str::to_string)
        .collect()
}

/// Rewrites the ledger: `edit` gets the commit messages oldest first and returns the new
/// list; the chain of commits is rebuilt from them (unsigned; author and committer the
/// entry's actor at its `ts`, as chant writes them, so that only the edit is wrong) and the
/// ref forced to it, as an attacker with write access to .git would. Returns the new commits.
pub fn rewrite_ledger(
    repo: &TestRepo,
    edit: impl FnOnce(Vec<String>) -> Vec<String>,
) -> Vec<String> {
    let git = repo.open();
    let mut messages = Vec::new();
    let mut sigs = Vec::new();
    for oid in ledger_commits(repo) {
        let c = git
            .find_commit(git2::Oid::from_str(&oid).expect("oid"))
            .expect("commit");
        messages.push(c.message().expect("utf-8").to_string());
        sigs.push(c.author().to_owned());
    }
    let sig = sigs[0].clone();
    let tree = git
        .find_tree(git.treebuilder(None).expect("tb").write().expect("tree"))
        .expect("tree");
    let mut parent: Option<git2::Commit> = None;
    let mut out = Vec::new();
    for msg in edit(messages) {
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        let sig = author_of(&msg, sig.email().unwrap_or_default()).unwrap_or_else(|| sig.clone());
        let oid = git
            .commit(None, &sig, &sig, &msg, &tree, &parents)
            .expect("commit");
        out.push(oid.to_string());
        parent = Some(git.find_commit(oid).expect("commit"));
    }
    let tip = git2::Oid::from_str(out.last().expect("entries")).expect("oid");
    git.reference("refs/chant/audit", tip, true, "test: rewrite")
        .expect("ref");
    out
}

/// The author chant writes for the entry in `message` with `email`, when the message holds
/// an entry with an actor and a ts.
pub fn author_of(message: &str, email: &str) -> Option<git2::Signature<'static>> {
    let (_, body) = message.split_once("\n\n")?;
    let entry: serde_json::Value = serde_json::from_str(body.trim()).ok()?;
    let ident =
        git_chant::audit::form::ident(entry["actor"].as_str()?, email, entry["ts"].as_str()?)
            .ok()?;
    let (name, rest) = ident.split_once(" <")?;
    let (email, when) = rest.split_once("> ")?;
    let secs: i64 = when.split(' ').next()?.parse().ok()?;
    git2::Signature::new(name, email, &git2::Time::new(secs, 0)).ok()
}

/// Generates an SSH key pair (`ssh-keygen -t <kind>`) under the test's home; returns the
/// private key path and the public key line.
pub fn ssh_keygen(repo: &TestRepo, name: &str, kind: &str) -> (PathBuf, String) {
    let path = repo.home.join(name);
    let mut args = vec!["-q", "-t", kind, "-N", "", "-C", name, "-f"];
    let p = path.to_str().expect("utf-8 path").to_string();
    args.push(&p);
    if kind == "rsa" {
        args.extend(["-b", "2048"]);
    }
    let out = Command::new("ssh-keygen")
        .args(&args)
        .output()
        .expect("ssh-keygen");
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = std::fs::read_to_string(path.with_extension("pub")).expect("pub");
    (path, public.trim().to_string())
}

/// Configures git to sign with the SSH key at `key` and to trust `allowed` (lines of an
/// allowed-signers file).
pub fn use_ssh_signing(repo: &TestRepo, key: &Path, allowed: &str) {
    let allowed_path = repo.home.join("allowed_signers");
    std::fs::write(&allowed_path, allowed).expect("allowed signers");
    repo.git(&["config", "gpg.format", "ssh"]);
    repo.git(&["config", "user.signingkey", key.to_str().expect("utf-8")]);
    repo.git(&[
        "config",
        "gpg.ssh.allowedSignersFile",
        allowed_path.to_str().expect("utf-8"),
    ]);
}
