//! Level `kubernetes`: one Job per spec run, in `agent.kubernetes.namespace`.
//!
//! The pod (image `agent.kubernetes.image`: `sh`, `git` and the agent) clones `chant/<id>`
//! from `agent.kubernetes.repo_url`, runs the agent, and pushes its result ONLY to
//! `refs/chant/incoming/<id>/<session>` (the server hook refuses an agent anything else).
//! chant publishes the start of `chant/<id>` there before, and after fetches the incoming
//! commit as data, writes its tree into the sandboxed clone, deletes the incoming ref and
//! the Job; `work` then judges the clone exactly as at every level (step 8) and lands it.
//!
//! The pod runs non-root on a read-only root with all capabilities dropped, its Secret
//! holds only the exposed keys, a Role lets its ServiceAccount `get` that Secret only, and
//! a NetworkPolicy limits its egress (see `manifests`). This level never prints secrets
//! (`--dry-run` withholds the Secret's values) and never leaves a Job behind on any exit
//! path that it survives; the Job's TTL covers the rest.

mod client;
pub mod incoming;
mod logs;
pub mod manifests;
mod network;
pub mod script;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::{
    Check, Checkup, EgressRoute, GuestView, Job, Outcome, OutputSink, Sandbox, SandboxError,
    Workspace,
};
use crate::config::{Config, KubernetesConfig, NetworkConfig, SandboxLevel};

pub use manifests::{Manifests, RunSpec};

/// The `kubernetes` level.
pub struct Kubernetes {
    config: KubernetesConfig,
    network: NetworkConfig,
    repo_url: String,
    /// `agent.file_access.max_file_size`: larger results are not written out in full.
    max_file_size: u64,
}

impl Kubernetes {
    /// Checks the keys this level needs before anything is created.
    pub fn new(config: &Config) -> Result<Self, SandboxError> {
        let k = &config.agent.kubernetes;
        if k.image.is_none() {
            return Err(SandboxError::KubernetesConfig(
                "agent.kubernetes.image is not set; set it to an image holding sh, git and the \
                 agent (docs/kubernetes.md)"
                    .into(),
            ));
        }
        let Some(repo_url) = k.repo_url.clone() else {
            return Err(SandboxError::KubernetesConfig(
                "agent.kubernetes.repo_url is not set; set it to the repository URL the pods \
                 clone from and push to (docs/kubernetes.md)"
                    .into(),
            ));
        };
        if !config.work.validate.is_empty() {
            return Err(SandboxError::KubernetesConfig(
                "work.validate is not supported at the kubernetes level yet (each command \
                 would need its own Job on the agent's result); empty work.validate or use \
                 --sandbox docker"
                    .into(),
            ));
        }
        Ok(Kubernetes {
            config: k.clone(),
            network: config.agent.network.clone(),
            repo_url,
            max_file_size: config.agent.file_access.max_file_size.bytes(),
        })
    }

    /// The objects of a run, as `run` would create them (without owner references).
    pub fn manifests(&self, run: &RunSpec) -> Manifests {
        manifests::build(&self.config, &self.network, &self.repo_url, run)
    }

    /// The run's description from a prepared job: chant's fixed variables (and `LANG`,
    /// `TERM`) stay plain environment, every other (an exposed secret) goes into the run's
    /// Secret. The job's files under [`script::FILES_DIR`] (the prompt) are written by the
    /// pod's script from plain variables; those under [`script::HOME`] (the run's private
    /// HOME: the adapter's settings, rules, config) and under [`script::WORK_DIR`] (the
    /// adapter's files for the clone, written over the pod's own clone) from keys of the
    /// run's Secret. A file anywhere else, a path with anything but normal components (or a
    /// `.git` one), or an exposed secret named like those keys is refused.
    pub fn run_spec(job: &Job) -> Result<RunSpec, SandboxError> {
        let (env, secrets): (Vec<_>, Vec<_>) = job.env.iter().cloned().partition(|(k, _)| {
            crate::secrets::RESERVED_NAMES.contains(&k.as_str()) || k == "LANG" || k == "TERM"
        });
        for prefix in [script::HOME_FILE_PREFIX, script::WORK_FILE_PREFIX] {
            if let Some((name, _)) = secrets.iter().find(|(k, _)| k.starts_with(prefix)) {
                return Err(SandboxError::KubernetesConfig(format!(
                    "the exposed variable {name} has a name the kubernetes level keeps for \
                     the agent's files ({prefix}*); rename it or remove it from \
                     agent.secrets.expose"
                )));
            }
        }
        let var = |name: &str| {
            job.env
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let mut files = Vec::new();
        let mut home_files = Vec::new();
        let mut workspace_files = Vec::new();
        for (path, content) in &job.files {
            let text = String::from_utf8_lossy(content).into_owned();
            let (list, rel, whole) = if let Ok(rel) = path.strip_prefix(script::HOME) {
                (&mut home_files, rel, false)
            } else if let Ok(rel) = path.strip_prefix(script::FILES_DIR) {
                (&mut files, rel, true)
            } else if let Ok(rel) = path.strip_prefix(script::WORK_DIR) {
                (&mut workspace_files, rel, false)
            } else {
                return Err(SandboxError::Workspace(format!(
                    "{} is outside {}, {} and {}, the only places the pod gets files",
                    path.display(),
                    script::FILES_DIR,
                    script::HOME,
                    script::WORK_DIR
                )));
            };
            // No component may be `.git` either (git's own files are never the adapter's).
            let name = rel.to_str().filter(|r| {
                !r.is_empty()
                    && rel.components().all(|c| match c {
                        std::path::Component::Normal(n) => !n.eq_ignore_ascii_case(".git"),
                        _ => false,
                    })
            });
            let Some(name) = name else {
                return Err(SandboxError::Workspace(format!(
                    "{} is not a file name under {}, {} or {}",
                    path.display(),
                    script::FILES_DIR,
                    script::HOME,
                    script::WORK_DIR
                )));
            };
            let key = if whole {
                path.to_string_lossy().into_owned()
            } else {
                name.to_string()
            };
            list.push((key, text));
        }
        Ok(RunSpec {
            spec_id: var("CHANT_SPEC_ID"),
            session: var("CHANT_SESSION"),
            argv: job.argv.clone(),
            env,
            secrets,
            files,
            home_files,
            workspace_files,
            timeout: job.timeout,
        })
    }
}

/// What `git chant doctor` learns: the API server's URL and the kubeconfig context, or
/// why the cluster cannot be used.
pub fn probe(namespace: &str) -> Result<(String, Option<String>), SandboxError> {
    runtime()?.block_on(client::probe(namespace))
}

fn runtime() -> Result<tokio::runtime::Runtime, SandboxError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(SandboxError::Io)
}

impl Sandbox for Kubernetes {
    fn level(&self) -> SandboxLevel {
        SandboxLevel::Kubernetes
    }

    /// The program is the image's; the cluster is first contacted by `run` (so that
    /// `--dry-run` contacts nothing).
    fn preflight(&self, _argv: &[String]) -> Result<(), SandboxError> {
        Ok(())
    }

    /// A pod cannot reach a proxy on this machine: the NetworkPolicy is all there is, and
    /// an injected value would have to go into the pod, which is exactly what injection
    /// promises not to do.
    fn egress_route(&self) -> EgressRoute {
        EgressRoute::Unreachable {
            inject: "is not available at the kubernetes level yet (the pod has no route through chant's proxy); run at docker or vm, or expose the secret instead",
            short: "not available at the kubernetes level yet",
        }
    }

    /// With `agent.network.enabled` the API hosts join the NetworkPolicy's allowlist (as
    /// the proxy allows them at the other levels; `denied_hosts` still wins). Without it the
    /// policy opens only 443 (and the repository's port), so an API host on another port
    /// could never be reached: the run is refused before anything is created.
    fn allow_agent_hosts(&mut self, hosts: &[String]) -> Result<(), SandboxError> {
        if self.network.enabled {
            let mut all: Vec<String> = self
                .network
                .allowed_hosts
                .0
                .patterns()
                .iter()
                .map(|p| p.as_str().to_string())
                .collect();
            for host in hosts {
                let (name, port) = network::split_host(host);
                let denied = self.network.denied_hosts.0.find(name, port).is_some();
                if !denied && !all.contains(host) {
                    all.push(host.clone());
                }
            }
            self.network.allowed_hosts.0 = crate::pattern::HostRules::new(&all).map_err(|e| {
                SandboxError::KubernetesConfig(format!("the agent's API host: {e}"))
            })?;
            return Ok(());
        }
        let closed: Vec<&str> = hosts
            .iter()
            .map(String::as_str)
            .filter(|h| network::split_host(h).1 != 443)
            .collect();
        if closed.is_empty() {
            return Ok(());
        }
        Err(SandboxError::KubernetesConfig(format!(
            "the agent's model API at {} is not on port 443, the only port the pod's \
             NetworkPolicy opens without agent.network.enabled; set agent.network.enabled: \
             true (the API host's port is then opened, docs/kubernetes.md)",
            closed.join(", ")
        )))
    }

    /// The run's HOME files travel in the run's Secret; the pod's script writes them into
    /// its HOME (an emptyDir, owned by the pod's user) before the clone and the agent.
    fn seeds_home(&self) -> bool {
        true
    }

    /// The pod clones the branch itself, so what the repository committed for the agent
    /// (its settings, plugins, `.env`) would be what the agent reads: the adapter's files
    /// for the clone travel in the run's Secret, and the pod's script writes them over its
    /// clone after `git clone` and before the agent, as chant writes them into its own
    /// clone at every other level. They are `generated` paths: never landed.
    fn seeds_workspace(&self) -> bool {
        true
    }

    fn guest(&self) -> Option<GuestView> {
        Some(GuestView {
            workspace: script::WORK_DIR.into(),
            home: script::HOME.into(),
            path: script::PATH.into(),
            files_dir: script::FILES_DIR.into(),
            exec: script::EXEC_STUB.into(),
        })
    }

    /// The pod clones the whole branch: paths withheld by `file_access` would reach it, so
    /// such a run is refused rather than leaked.
    fn prepare(&self, workspace: &Workspace) -> Result<Vec<String>, SandboxError> {
        if !workspace.withheld.is_empty() {
            return Err(SandboxError::KubernetesConfig(
                "agent.file_access withholds paths of this branch, but the kubernetes level \
                 cannot withhold them yet (the pod clones the whole branch); narrow \
                 allowed_paths/denied_paths or use --sandbox docker"
                    .into(),
            ));
        }
        Ok(Vec::new())
    }

    /// The API server answers for the namespace (the kubeconfig, or in-cluster).
    fn checkup(&self, _template: &[String], _root: &Path) -> Checkup {
        match probe(&self.config.namespace) {
            Ok((server, context)) => Checkup::usable(Check::ok(format!(
                "API server {server} (context {}), namespace {} answers; image {}",
                context.as_deref().unwrap_or("in-cluster"),
                self.config.namespace,
                self.config.image.as_deref().unwrap_or("?")
            ))),
            Err(e) => Checkup::failed(Check::missing(e.to_string())),
        }
    }

    /// The run's manifests as YAML documents, for `kubectl apply -f -` (the Secret's
    /// values withheld).
    fn describe(&self, job: &Job) -> Result<Option<String>, SandboxError> {
        manifests::to_yaml(&self.manifests(&Self::run_spec(job)?))
            .map(Some)
            .map_err(|e| {
                SandboxError::Kubernetes(format!("cannot write the manifests as YAML: {e}"))
            })
    }

    fn run(
        &self,
        job: &Job,
        sink: &mut dyn OutputSink,
        stop: &Arc<AtomicBool>,
    ) -> Result<Outcome, SandboxError> {
        let run = Self::run_spec(job)?;
        let manifests = self.manifests(&run);
        let rt = runtime()?;
        // The kubeconfig first: without a cluster nothing is published.
        let client = rt.block_on(client::connect())?;
        incoming::publish_start(&job.workspace, &self.repo_url, &run.spec_id)?;
        let outcome = rt.block_on(async {
            client::run(
                client,
                &self.config.namespace,
                manifests,
                sink,
                stop,
                job.timeout,
            )
            .await
        })?;
        if !outcome.success() {
            // A result pushed before the failure is not wanted either.
            let _ =
                incoming::delete_remote(&job.workspace, &self.repo_url, &run.spec_id, &run.session);
            return Ok(outcome);
        }
        let fetched = incoming::fetch(&job.workspace, &self.repo_url, &run.spec_id, &run.session)?;
        let Some(commit) = fetched else {
            return Err(SandboxError::Kubernetes(format!(
                "the Job succeeded but pushed nothing to {}",
                incoming::incoming_ref(&run.spec_id, &run.session)
            )));
        };
        let written = incoming::materialise(&job.workspace, commit, self.max_file_size);
        let deleted =
            incoming::delete_remote(&job.workspace, &self.repo_url, &run.spec_id, &run.session);
        written?;
        deleted?;
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(yaml: &str) -> Result<Kubernetes, SandboxError> {
        let config = crate::config::parse(".chant/config.md", &format!("---\n{yaml}---\n"))
            .expect("config parses");
        Kubernetes::new(&config)
    }

    #[test]
    fn refuses_what_it_cannot_do_with_exit_2_naming_the_key() {
        let ok = "agent:\n  kubernetes:\n    image: w\n    repo_url: https://h/r.git\n";
        assert!(level(ok).is_ok());
        for (yaml, key) in [
            ("agent:\n  kubernetes:\n    repo_url: https://h/r.git\n", "agent.kubernetes.image"),
            ("agent:\n  kubernetes:\n    image: w\n", "agent.kubernetes.repo_url"),
            (
                "agent:\n  kubernetes:\n    image: w\n    repo_url: https://h/r.git\nwork:\n  validate: [\"make test\"]\n",
                "work.validate",
            ),
        ] {
            let Err(e) = level(yaml) else {
                panic!("accepted: {yaml}")
            };
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().contains(key), "{e}");
        }
    }

    /// The TCP ports the policy opens to any address; None when no rule does (an empty
    /// port list, which would open every port, shows as `Some([])`).
    fn tcp_ports(k: &Kubernetes) -> Option<Vec<i32>> {
        let run = RunSpec {
            spec_id: "2026-01-22-001-x7m".into(),
            session: "sess_1".into(),
            argv: vec!["agent".into()],
            env: Vec::new(),
            secrets: Vec::new(),
            files: Vec::new(),
            home_files: Vec::new(),
            workspace_files: Vec::new(),
            timeout: std::time::Duration::from_secs(60),
        };
        let np = k.manifests(&run).network_policy.expect("policy");
        let rule = np
            .spec
            .into_iter()
            .flat_map(|s| s.egress.into_iter().flatten())
            .find(|r| r.to.is_some())?;
        Some(
            rule.ports
                .into_iter()
                .flatten()
                .filter_map(|p| match p.port {
                    Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n)) => {
                        Some(n)
                    }
                    _ => None,
                })
                .collect(),
        )
    }

    #[test]
    fn with_the_network_the_agents_api_hosts_join_the_policy_and_denied_hosts_still_win() {
        let mut k = level(
            "agent:\n  network:\n    enabled: true\n    denied_hosts: [\"evil.example.com\"]\n  kubernetes:\n    image: w\n    repo_url: file:///srv/r.git\n",
        )
        .expect("valid");
        // Nothing allowed, a file:// repository: no TCP rule at all (an empty port list
        // would open every port).
        assert_eq!(tcp_ports(&k), None);
        k.allow_agent_hosts(&["127.0.0.1:8443".into(), "evil.example.com:9999".into()])
            .expect("opened");
        assert_eq!(tcp_ports(&k), Some(vec![8443]));
    }

    #[test]
    fn without_the_network_an_api_host_off_443_is_refused_naming_the_fix() {
        let mut k = level("agent:\n  kubernetes:\n    image: w\n    repo_url: https://h/r.git\n")
            .expect("valid");
        k.allow_agent_hosts(&["api.anthropic.com".into()])
            .expect("443 is open");
        let e = k
            .allow_agent_hosts(&["gateway.internal:8443".into()])
            .expect_err("refused");
        assert_eq!(e.exit_code(), 2);
        for needle in ["gateway.internal:8443", "agent.network.enabled"] {
            assert!(e.to_string().contains(needle), "{e}");
        }
    }

    #[test]
    fn a_clone_with_withheld_paths_is_refused_and_one_without_is_not() {
        let ok = "agent:\n  kubernetes:\n    image: w\n    repo_url: https://h/r.git\n";
        let k = level(ok).expect("valid");
        let mut workspace = Workspace {
            path: "/nonexistent/clone".into(),
            withheld: Vec::new(),
        };
        // Decided by the typed list alone: the clone is not even opened.
        assert_eq!(
            k.prepare(&workspace).expect("accepted"),
            Vec::<String>::new()
        );
        workspace.withheld.push("secrets/prod.key".into());
        let e = k.prepare(&workspace).expect_err("refused");
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("cannot withhold them"), "{e}");
    }

    #[test]
    fn exposed_secrets_go_to_the_secret_and_chants_variables_stay_plain() {
        let job = Job {
            argv: vec!["agent".into()],
            env: vec![
                ("PATH".into(), "/bin".into()),
                ("LANG".into(), "C.UTF-8".into()),
                ("CHANT_SPEC_ID".into(), "2026-01-22-001-x7m".into()),
                ("CHANT_SESSION".into(), "sess_1".into()),
                ("AGENT_API_KEY".into(), "sk-1".into()),
            ],
            workspace: "/workspace/repo".into(),
            timeout: std::time::Duration::from_secs(60),
            files: vec![("/tmp/chant/prompt.md".into(), b"p".to_vec())],
            hold_stdin: false,
            network: None,
            gate: None,
        };
        let run = Kubernetes::run_spec(&job).expect("a valid job");
        assert_eq!(
            run.secrets,
            [("AGENT_API_KEY".to_string(), "sk-1".to_string())]
        );
        assert!(run.env.iter().all(|(k, _)| k != "AGENT_API_KEY"));
        assert_eq!(run.spec_id, "2026-01-22-001-x7m");
        assert_eq!(run.session, "sess_1");
        assert_eq!(
            run.files,
            [("/tmp/chant/prompt.md".to_string(), "p".to_string())]
        );
        assert!(run.home_files.is_empty());
    }

    fn job_with(files: Vec<(&str, &str)>, env: Vec<(&str, &str)>) -> Job {
        let mut all = vec![
            (
                "CHANT_SPEC_ID".to_string(),
                "2026-01-22-001-x7m".to_string(),
            ),
            ("CHANT_SESSION".to_string(), "sess_1".to_string()),
        ];
        all.extend(env.into_iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Job {
            argv: vec!["agent".into()],
            env: all,
            workspace: "/workspace/repo".into(),
            timeout: std::time::Duration::from_secs(60),
            files: files
                .into_iter()
                .map(|(p, c)| (p.into(), c.as_bytes().to_vec()))
                .collect(),
            hold_stdin: false,
            network: None,
            gate: None,
        }
    }

    #[test]
    fn home_files_are_split_from_the_prompt_relative_to_the_pods_home() {
        let run = Kubernetes::run_spec(&job_with(
            vec![
                ("/tmp/chant/prompt.md", "p"),
                ("/home/agent/.codex/config.toml", "c"),
                ("/home/agent/./.gemini/settings.json", "s"),
            ],
            vec![],
        ))
        .expect("valid");
        assert_eq!(
            run.files,
            [("/tmp/chant/prompt.md".to_string(), "p".to_string())]
        );
        assert_eq!(
            run.home_files,
            [
                (".codex/config.toml".to_string(), "c".to_string()),
                (".gemini/settings.json".to_string(), "s".to_string())
            ]
        );
    }

    #[test]
    fn the_clones_files_are_split_off_relative_to_the_pods_clone() {
        let run = Kubernetes::run_spec(&job_with(
            vec![
                ("/tmp/chant/prompt.md", "p"),
                ("/workspace/repo/.gemini/settings.json", "s"),
                ("/workspace/repo/opencode.json", "{}"),
            ],
            vec![],
        ))
        .expect("valid");
        assert_eq!(run.files.len(), 1);
        assert!(run.home_files.is_empty());
        assert_eq!(
            run.workspace_files,
            [
                (".gemini/settings.json".to_string(), "s".to_string()),
                ("opencode.json".to_string(), "{}".to_string())
            ]
        );
    }

    #[test]
    fn hostile_file_paths_are_refused_naming_the_path() {
        for path in [
            "/home/agent/../../etc/passwd",
            "/home/agent/.codex/../../../tmp/x",
            "/home/agent",
            "/home/agent/",
            "/home/agentx/settings.json",
            "/etc/profile",
            "/workspace/repo/../../home/agent/.bashrc",
            "/workspace/repo/.git/../../x",
            "/workspace/repo/.git/hooks/post-commit",
            "/workspace/repo/sub/.GIT/config",
            "/workspace/repo",
            "/workspace/repox/opencode.json",
            "/workspace/other",
            "/tmp/chant/../../home/agent/.bashrc",
            "/tmp/chant",
            "home/agent/relative",
        ] {
            let Err(e) = Kubernetes::run_spec(&job_with(vec![(path, "x")], vec![])) else {
                panic!("accepted {path}")
            };
            assert!(e.to_string().contains(path), "{path}: {e}");
        }
    }

    #[test]
    fn an_exposed_secret_named_like_a_home_or_clone_file_key_is_refused() {
        for (path, name) in [
            ("/home/agent/.codex/config.toml", "CHANT_HOME_FILE_0"),
            ("/workspace/repo/opencode.json", "CHANT_WORK_FILE_0"),
            // Refused even when the run has no such file: the name is kept.
            ("/tmp/chant/prompt.md", "CHANT_WORK_FILE_7"),
        ] {
            let e = Kubernetes::run_spec(&job_with(vec![(path, "ours")], vec![(name, "theirs")]))
                .expect_err("refused");
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().contains(name), "{e}");
        }
    }
}
