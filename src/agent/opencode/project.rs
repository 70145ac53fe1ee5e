//! What opencode would load from the project (the clone) whatever chant says: checked with
//! 1.18.33, `opencode run` imports the plugins a committed `opencode.json` names and the
//! files in `.opencode/plugin/` even with `OPENCODE_DISABLE_PROJECT_CONFIG=1`, reads
//! `.opencode/agent/*.md` (whose `permission` front matter replaces the rules for that
//! agent), and npm-installs its plugin package into `.opencode/` first (a minute of retries
//! offline). So, for the run only (generated files are never landed; the committed ones stay
//! on the branch), chant replaces them in the clone: config files by `{}` (their content
//! reaches opencode merged, through `OPENCODE_CONFIG_CONTENT`), plugins by an empty module,
//! agent and mode files by their body without front matter, and writes the lock file that
//! stops the install.
//!
//! Reads the fresh clone (chant's own checkout of the base tree) before the agent starts:
//! directories are listed, never followed through a symlink; only regular files count.

use std::path::Path;

use super::config::PLUGIN_LOCK;

/// Config files opencode reads from a project.
const CONFIG_FILES: &[&str] = &[
    "opencode.json",
    "opencode.jsonc",
    ".opencode/opencode.json",
    ".opencode/opencode.jsonc",
];
const PLUGIN_DIRS: &[&str] = &[".opencode/plugin", ".opencode/plugins"];
const AGENT_DIRS: &[&str] = &[
    ".opencode/agent",
    ".opencode/agents",
    ".opencode/mode",
    ".opencode/modes",
];
/// At most this many files per directory are replaced; more is refused by nothing but
/// left as it is (a project with more agents than this is not one chant has met).
const MAX_FILES: usize = 1000;

/// (path in the clone, replacement text) for each file to neutralise.
pub fn neutralised(clone: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for rel in CONFIG_FILES {
        if is_file(&clone.join(rel)) {
            out.push((rel.to_string(), "{}\n".to_string()));
        }
    }
    for dir in PLUGIN_DIRS {
        for rel in files_in(clone, dir) {
            out.push((
                rel,
                "// disabled by git-chant for this run\nexport {};\n".into(),
            ));
        }
    }
    for dir in AGENT_DIRS {
        for rel in files_in(clone, dir) {
            let text = std::fs::read_to_string(clone.join(&rel)).unwrap_or_default();
            out.push((rel, without_front_matter(&text)));
        }
    }
    if is_dir(&clone.join(".opencode")) {
        out.push((".opencode/package-lock.json".into(), PLUGIN_LOCK.into()));
        out.push((
            ".opencode/node_modules/.chant".into(),
            "written by git-chant: see package-lock.json\n".into(),
        ));
    }
    out
}

fn is_file(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file())
}

fn is_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_dir())
}

/// Regular files directly in `clone/dir` (when it is a real directory), as clone paths.
fn files_in(clone: &Path, dir: &str) -> Vec<String> {
    if !is_dir(&clone.join(".opencode")) || !is_dir(&clone.join(dir)) {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir(clone.join(dir)) else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().to_str().map(|n| format!("{dir}/{n}")))
        .take(MAX_FILES)
        .collect();
    out.sort();
    out
}

/// `text` without a leading `---` … `---` block.
fn without_front_matter(text: &str) -> String {
    let Some(rest) = text.strip_prefix("---\n") else {
        return text.to_string();
    };
    match rest.find("\n---\n") {
        Some(end) => rest[end + 5..].to_string(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_config_plugins_and_agent_permissions_are_replaced() {
        let tmp = tempfile::tempdir().expect("tmp");
        let c = tmp.path();
        std::fs::create_dir_all(c.join(".opencode/plugin")).expect("dirs");
        std::fs::create_dir_all(c.join(".opencode/agent")).expect("dirs");
        std::fs::write(c.join("opencode.json"), "{\"plugin\": [\"x\"]}").expect("w");
        std::fs::write(c.join(".opencode/plugin/evil.js"), "evil()").expect("w");
        std::fs::write(
            c.join(".opencode/agent/build.md"),
            "---\npermission:\n  bash: allow\n---\nBe nice.\n",
        )
        .expect("w");
        std::os::unix::fs::symlink("/etc", c.join(".opencode/plugins")).expect("link");
        let files = neutralised(c);
        let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            names,
            [
                "opencode.json",
                ".opencode/plugin/evil.js",
                ".opencode/agent/build.md",
                ".opencode/package-lock.json",
                ".opencode/node_modules/.chant"
            ]
        );
        assert_eq!(files[0].1, "{}\n");
        assert!(!files[1].1.contains("evil"));
        assert_eq!(files[2].1, "Be nice.\n");
        assert!(neutralised(tempfile::tempdir().expect("tmp").path()).is_empty());
    }
}
