//! Repositories laid out the other ways git allows: `--separate-git-dir`, `core.worktree`,
//! `GIT_DIR` + `GIT_WORK_TREE`, linked worktrees (`git worktree add`). chant must find the
//! work tree git finds — for init, add, list, work and hooks install — and nothing may land
//! anywhere else.

mod common;

use std::path::{Path, PathBuf};

use common::{Run, TestRepo};

/// A repository in one layout: where commands run from, with which extra environment, and
/// the work tree git uses there.
struct Layout {
    /// For the harness's clean environment and temporary directory.
    home: TestRepo,
    name: &'static str,
    cwd: PathBuf,
    env: Vec<(&'static str, String)>,
    work_tree: PathBuf,
    /// The branch the repository's commits are on.
    branch: &'static str,
}

impl Layout {
    fn git(&self, args: &[&str]) -> String {
        let run = self.home.git_in(
            &self.cwd,
            &self
                .env
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .collect::<Vec<_>>(),
            args,
        );
        assert_eq!(
            run.code(),
            0,
            "{}: git {args:?}: {}",
            self.name,
            run.stderr()
        );
        run.stdout()
    }

    fn chant(&self, args: &[&str]) -> Run {
        let mut cmd = self.home.chant_cmd(args);
        cmd.current_dir(&self.cwd);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        Run(cmd.output().expect("run git-chant"))
    }

    fn write(&self, rel: &str, text: &str) {
        let path = self.work_tree.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    /// Adds and commits everything in the work tree.
    fn commit(&self, message: &str) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "--quiet", "-m", message]);
    }
}

fn separate_git_dir() -> Layout {
    let home = TestRepo::new();
    let tmp = home.tmp.path().to_path_buf();
    let work_tree = tmp.join("sepwt");
    let layout = Layout {
        name: "--separate-git-dir",
        cwd: tmp.clone(),
        env: Vec::new(),
        work_tree: work_tree.clone(),
        branch: "main",
        home,
    };
    let sep = tmp.join("elsewhere").join("sep.git");
    std::fs::create_dir_all(tmp.join("elsewhere")).expect("mkdir");
    let (sep, wt) = (
        sep.to_str().expect("utf8"),
        work_tree.to_str().expect("utf8"),
    );
    layout.git(&[
        "init",
        "--quiet",
        "--initial-branch=main",
        "--separate-git-dir",
        sep,
        wt,
    ]);
    Layout {
        cwd: work_tree,
        ..layout
    }
}

fn core_worktree() -> Layout {
    let home = TestRepo::new();
    let tmp = home.tmp.path().to_path_buf();
    let git_side = tmp.join("cw");
    let work_tree = tmp.join("cwt");
    std::fs::create_dir_all(&work_tree).expect("mkdir");
    let layout = Layout {
        name: "core.worktree",
        cwd: tmp.clone(),
        env: Vec::new(),
        work_tree: work_tree.clone(),
        branch: "main",
        home,
    };
    layout.git(&[
        "init",
        "--quiet",
        "--initial-branch=main",
        git_side.to_str().expect("utf8"),
    ]);
    let git_dir = git_side.join(".git");
    layout.git(&[
        "--git-dir",
        git_dir.to_str().expect("utf8"),
        "config",
        "core.worktree",
        work_tree.to_str().expect("utf8"),
    ]);
    // Commands run beside the git dir; git works on the configured work tree.
    Layout {
        cwd: git_side,
        ..layout
    }
}

fn git_dir_and_work_tree() -> Layout {
    let home = TestRepo::new();
    let tmp = home.tmp.path().to_path_buf();
    let git_dir = tmp.join("store.git");
    let work_tree = tmp.join("checkout");
    std::fs::create_dir_all(&work_tree).expect("mkdir");
    let outside = tmp.join("somewhere-else");
    std::fs::create_dir_all(&outside).expect("mkdir");
    let layout = Layout {
        name: "GIT_DIR + GIT_WORK_TREE",
        cwd: tmp.clone(),
        env: Vec::new(),
        work_tree: work_tree.clone(),
        branch: "main",
        home,
    };
    layout.git(&[
        "init",
        "--quiet",
        "--bare",
        "--initial-branch=main",
        git_dir.to_str().expect("utf8"),
    ]);
    Layout {
        cwd: outside,
        env: vec![
            ("GIT_DIR", git_dir.display().to_string()),
            ("GIT_WORK_TREE", work_tree.display().to_string()),
        ],
        ..layout
    }
}

fn linked_worktree() -> Layout {
    let home = TestRepo::new();
    let linked = home.tmp.path().join("linked");
    home.git(&[
        "worktree",
        "add",
        "--quiet",
        "-b",
        "feature",
        linked.to_str().expect("utf8"),
    ]);
    Layout {
        name: "linked worktree",
        cwd: linked.clone(),
        env: Vec::new(),
        work_tree: linked,
        branch: "feature",
        home,
    }
}

/// Everything under `dir` named `.chant` (the work tree's is the only one allowed).
fn chant_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut walk = vec![dir.to_path_buf()];
    while let Some(d) = walk.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                if entry.file_name() == ".chant" {
                    found.push(path.clone());
                }
                walk.push(path);
            }
        }
    }
    found
}

/// init, add, list, work and hooks install in `layout`, each acting on git's work tree.
fn whole_flow(layout: Layout) {
    let name = layout.name;
    let env: Vec<(&str, &str)> = layout.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let has_head = layout
        .home
        .git_in(
            &layout.cwd,
            &env,
            &["rev-parse", "--verify", "--quiet", "HEAD"],
        )
        .code()
        == 0;
    if !has_head {
        layout.write("README.md", "# Test project\n");
        layout.commit("Initial commit");
    }
    layout.chant(&["init"]).assert_ok();
    assert!(
        layout.work_tree.join(".chant/config.md").is_file(),
        "{name}: init did not write the work tree's .chant/"
    );
    assert_eq!(
        chant_dirs(layout.home.tmp.path()),
        vec![layout.work_tree.join(".chant")],
        "{name}: .chant/ written somewhere else"
    );
    let agent = common::crate_path("fixtures/agents/greet.sh");
    layout.write(
        ".chant/config.md",
        &format!(
            "---\nagent:\n  command: [\"{}\"]\n  sandbox: none\nwork:\n  base: {}\n---\n",
            agent.display(),
            layout.branch
        ),
    );
    let id = layout
        .chant(&["add", "Greet the user", "--target", "hello.txt"])
        .assert_ok()
        .stdout()
        .trim()
        .to_string();
    assert!(
        layout
            .work_tree
            .join(format!(".chant/specs/{id}.md"))
            .is_file(),
        "{name}: the spec is not in the work tree"
    );
    layout.commit("spec");
    layout
        .chant(&["list"])
        .assert_ok()
        .stdout_has(&id)
        .stdout_has("Greet the user");
    layout.chant(&["work", &id]).assert_ok();
    let landed = layout.git(&["show", &format!("chant/{id}:hello.txt")]);
    assert_eq!(landed, "Hello from the agent!\n", "{name}");
    let ledger = layout.git(&["log", "--format=%s", "refs/chant/audit"]);
    assert!(ledger.contains("spec_completed"), "{name}: {ledger}");
    layout.chant(&["audit", "verify"]).assert_ok();

    // Hooks go where git runs them from.
    layout.chant(&["hooks", "install"]).assert_ok();
    let hooks = layout.git(&["rev-parse", "--path-format=absolute", "--git-path", "hooks"]);
    let hooks = PathBuf::from(hooks.trim());
    for hook in ["pre-commit", "pre-push"] {
        assert!(
            hooks.join(hook).is_file(),
            "{name}: no {hook} in {}",
            hooks.display()
        );
    }
}

#[test]
fn a_separate_git_dir_repository_works_in_its_work_tree() {
    whole_flow(separate_git_dir());
}

#[test]
fn a_core_worktree_repository_works_in_the_configured_work_tree() {
    whole_flow(core_worktree());
}

#[test]
fn git_dir_and_git_work_tree_from_the_environment_are_honoured() {
    whole_flow(git_dir_and_work_tree());
}

#[test]
fn a_linked_worktree_works_and_installs_the_hooks_git_runs() {
    whole_flow(linked_worktree());
}

#[test]
fn a_bare_repository_is_still_refused_for_commands_that_need_a_work_tree() {
    let home = TestRepo::new();
    let bare = home.tmp.path().join("bare.git");
    home.git(&["init", "--quiet", "--bare", bare.to_str().expect("utf8")]);
    let mut cmd = home.chant_cmd(&["list"]);
    cmd.current_dir(&bare);
    Run(cmd.output().expect("run"))
        .assert_code(2)
        .stderr_has("bare repository");
}
