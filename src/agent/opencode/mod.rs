//! opencode (`agent.kind: opencode`, or `opencode` in `agent.command`).
//!
//! What chant does for it (facts checked against the real CLI, 1.18.33: ../shared/agent-clis.md
//! and docs/agents.md):
//! - argv: `opencode run` (bare `opencode` starts its full-screen UI and waits) with
//!   `--format json` (one JSON event per line). Flags the user wrote are kept.
//! - `OPENCODE_CONFIG_CONTENT`: the run's config, compiled by [`config`] from chant's rules
//!   (`permission` rules for `edit`, `bash`, `read`, `external_directory`, `webfetch`),
//!   merged with a committed `opencode.json`; `OPENCODE_DISABLE_PROJECT_CONFIG=1` so that
//!   opencode itself reads nothing else from the project (`.opencode/` agents, commands and
//!   plugins could otherwise loosen the rules or run code at start).
//! - what opencode loads from the project whatever it is told (plugins, `.opencode/`
//!   agents): replaced in the clone for the run, see [`project`].
//! - the gate: a plugin in the run's private HOME, named in that config, whose
//!   `tool.execute.before` sends every `bash` call through chant's command gate and throws
//!   (refusing the call) unless the gate allows it, also when the gate cannot run; at
//!   `none`/`permissions`/`docker`/`vm` (through the run's gate socket or qemu's forward
//!   there; at kubernetes the gate is a stub and the plugin is left out).
//! - environment: `OPENCODE_DISABLE_MODELS_FETCH`, `OPENCODE_DISABLE_AUTOUPDATE`,
//!   `OPENCODE_DISABLE_SHARE`, `OPENCODE_DISABLE_LSP_DOWNLOAD` (no calls home), and
//!   `OPENAI_API_KEY`/`OPENAI_BASE_URL`, which opencode's `openai` provider reads itself.
//! - output: [`events::RunJson`] reads the `--format json` events.

pub mod config;
mod events;
mod project;

use std::path::Path;

use super::{endpoint, Agent, AgentError, Observer, RunInputs, RunSetup};
use crate::config::{AgentKind, Config, SandboxLevel};

pub use events::RunJson;

/// The variables of opencode's OpenAI provider, passed to it when set (and masked).
pub const CREDENTIALS: &[&str] = &["OPENAI_API_KEY", "OPENAI_BASE_URL"];

/// The setting among [`CREDENTIALS`] (the endpoint): masked in output but not searched for
/// in the agent's change; the key is a secret.
pub const SETTING_VARS: &[&str] = &["OPENAI_BASE_URL"];

/// OpenAI's API host, when `OPENAI_BASE_URL` is not set.
pub const DEFAULT_HOST: &str = "api.openai.com";

/// Where the gate plugin goes in the run's private HOME; the config names it as a `file://`
/// plugin (a file in opencode's own plugin dir makes it install packages into that dir
/// first, which waits on the network).
pub const GATE_PLUGIN: &str = ".chant/opencode-gate.js";

pub struct Opencode {
    rules: config::Rules,
}

impl Opencode {
    pub fn new(config: &Config) -> Opencode {
        Opencode {
            rules: config::Rules::from_config(&config.agent),
        }
    }
}

/// Levels where the gate plugin reaches chant (on this machine, through the run's gate
/// socket in a container, or through qemu's forward from a vm guest, whose busybox
/// `$CHANT_EXEC` serves `--claude-hook`). At kubernetes `$CHANT_EXEC` is a stub: the
/// plugin, which fails closed, would refuse every command.
fn gate_reachable(level: SandboxLevel) -> bool {
    matches!(
        level,
        SandboxLevel::None | SandboxLevel::Permissions | SandboxLevel::Docker | SandboxLevel::Vm
    )
}

impl Agent for Opencode {
    fn kind(&self) -> AgentKind {
        AgentKind::Opencode
    }

    fn command(&self, template: &[String], _level: SandboxLevel) -> Vec<String> {
        let mut argv = template.to_vec();
        let has = |flag: &str| {
            template
                .iter()
                .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
        };
        if template.get(1).map(String::as_str) != Some("run") {
            argv.insert(1.min(argv.len()), "run".into());
        }
        if !super::passes_prompt(template) {
            // Naming the program is enough: the prompt goes right after `run`.
            argv.insert(2.min(argv.len()), "{prompt}".into());
        }
        if !has("--format") {
            argv.extend(["--format".into(), "json".into()]);
        }
        argv
    }

    fn workspace_files(
        &self,
        clone: &Path,
        _level: SandboxLevel,
    ) -> Result<Vec<(String, String)>, AgentError> {
        Ok(project::neutralised(clone))
    }

    fn home_files(&self, _workspace: &Path, _level: SandboxLevel) -> Vec<(String, String)> {
        // Written by `run_setup`, which knows where HOME is.
        Vec::new()
    }

    fn credential_names(&self) -> &'static [&'static str] {
        CREDENTIALS
    }

    fn setting_names(&self) -> &'static [&'static str] {
        SETTING_VARS
    }

    fn api_hosts(&self, secrets: &crate::secrets::Secrets) -> Vec<String> {
        vec![endpoint::host_of(
            secrets.get("OPENAI_BASE_URL"),
            DEFAULT_HOST,
        )]
    }

    fn fixed_env(&self, _level: SandboxLevel) -> Vec<(String, String)> {
        [
            "OPENCODE_DISABLE_PROJECT_CONFIG",
            "OPENCODE_DISABLE_MODELS_FETCH",
            "OPENCODE_DISABLE_AUTOUPDATE",
            "OPENCODE_DISABLE_SHARE",
            "OPENCODE_DISABLE_LSP_DOWNLOAD",
        ]
        .into_iter()
        .map(|name| (name.to_string(), "1".to_string()))
        .collect()
    }

    fn commands_rule(&self, level: SandboxLevel) -> &'static str {
        if gate_reachable(level) {
            "- Run shell commands with your bash tool as usual: chant's command gate checks and records each one before it runs.\n"
        } else {
            "- Run shell commands with your bash tool as usual.\n"
        }
    }

    fn observer(&self) -> Box<dyn Observer> {
        Box::new(RunJson::default())
    }

    fn run_setup(&self, run: &RunInputs<'_>) -> Result<RunSetup, AgentError> {
        let committed = config::read_committed(run.clone)?;
        let mut setup = RunSetup::default();
        // At start opencode npm-installs its plugin package into its config dir unless that
        // dir's lock file lists it: offline that is a minute of retries, online a download.
        // The gate plugin imports nothing, so the lock file says it is there.
        setup.home_files.push((
            ".config/opencode/package-lock.json".to_string(),
            config::PLUGIN_LOCK.to_string(),
        ));
        setup.home_files.push((
            ".config/opencode/node_modules/.chant".to_string(),
            "written by git-chant: see package-lock.json\n".to_string(),
        ));
        let gate = gate_reachable(run.level).then(|| run.home.join(GATE_PLUGIN));
        if gate.is_some() {
            setup
                .home_files
                .push((GATE_PLUGIN.to_string(), config::GATE_PLUGIN_JS.to_string()));
        }
        let text =
            config::config_content(&self.rules, committed.as_ref(), run.level, gate.as_deref())?;
        setup
            .env
            .push(("OPENCODE_CONFIG_CONTENT".to_string(), text));
        Ok(setup)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opencode(yaml: &str) -> Opencode {
        let config =
            Config::from_yaml("(test)", &serde_yaml_ng::from_str(yaml).expect("test yaml"))
                .expect("valid config");
        Opencode::new(&config)
    }

    #[test]
    fn the_program_name_alone_is_enough() {
        let a = opencode("agent: {}");
        let argv = a.command(&["opencode".to_string()], SandboxLevel::Permissions);
        assert_eq!(argv[..3], ["opencode", "run", "{prompt}"], "{argv:?}");
        let placed: Vec<String> = ["opencode", "run", "Read {prompt_file}"]
            .map(String::from)
            .to_vec();
        let argv = a.command(&placed, SandboxLevel::Permissions);
        assert_eq!(
            argv.iter().filter(|a| a.contains("{prompt")).count(),
            1,
            "{argv:?}"
        );
    }

    #[test]
    fn the_argv_is_opencode_run_with_json_events() {
        let o = opencode("agent: {}");
        let t: Vec<String> = ["opencode", "-m", "openai/x", "{prompt}"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            o.command(&t, SandboxLevel::Permissions),
            ["opencode", "run", "-m", "openai/x", "{prompt}", "--format", "json"]
        );
        let t: Vec<String> = ["opencode", "run", "--format=default", "{prompt}"]
            .map(String::from)
            .to_vec();
        assert_eq!(o.command(&t, SandboxLevel::None), t);
    }

    #[test]
    fn the_gate_plugin_is_written_only_where_the_gate_is_reachable() {
        let o = opencode("agent: {}");
        let setup = |level| {
            let clone = tempfile::tempdir().expect("tmp");
            o.run_setup(&RunInputs {
                clone: clone.path(),
                home: Path::new("/r/home"),
                exposed: &[],
                level,
            })
            .expect("setup")
        };
        let host = setup(SandboxLevel::Permissions);
        let plugin = host.home_files.iter().find(|(p, _)| p == GATE_PLUGIN);
        assert!(plugin.is_some_and(|(_, js)| js.contains("--claude-hook")));
        let content = &host.env[0].1;
        assert!(
            content.contains(r#""plugin":["file:///r/home/.chant/opencode-gate.js"]"#),
            "{content}"
        );
        // In the container or the vm, through the run's gate socket or qemu's forward (the
        // HOME there is the guest's).
        for level in [SandboxLevel::Docker, SandboxLevel::Vm] {
            let inside = setup(level);
            assert!(inside.home_files.iter().any(|(p, _)| p == GATE_PLUGIN));
            assert!(inside.env[0].1.contains("plugin"), "{:?}", inside.env);
        }
        let far = setup(SandboxLevel::Kubernetes);
        assert!(far.home_files.iter().all(|(p, _)| p != GATE_PLUGIN));
        assert!(!far.env[0].1.contains("plugin"), "{:?}", far.env);
    }
}
