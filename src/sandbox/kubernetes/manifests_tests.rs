//! Each object checked against the seed's "Scale (K8s)" posture (seed/security.md).

use super::*;
use crate::config::Config;
use crate::sandbox::kubernetes::network::url_port;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

fn run() -> RunSpec {
    RunSpec {
        spec_id: "2026-01-22-001-x7m".into(),
        session: "sess_abc123".into(),
        argv: vec!["agent".into(), "-p".into(), "do it".into()],
        env: vec![
            ("CHANT_SPEC_ID".into(), "2026-01-22-001-x7m".into()),
            ("CHANT_SESSION".into(), "sess_abc123".into()),
        ],
        secrets: vec![("AGENT_API_KEY".into(), "sk-secret-value".into())],
        files: vec![("/tmp/chant/prompt.md".into(), "the prompt".into())],
        home_files: Vec::new(),
        workspace_files: Vec::new(),
        timeout: Duration::from_secs(3600),
    }
}

fn config(yaml: &str) -> Config {
    crate::config::parse(".chant/config.md", &format!("---\n{yaml}---\n")).expect("config parses")
}

fn built(yaml: &str) -> Manifests {
    let c = config(yaml);
    build(
        &c.agent.kubernetes,
        &c.agent.network,
        "https://git.example.com/repo.git",
        &run(),
    )
}

fn pod(m: &Manifests) -> &PodSpec {
    m.job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec")
}

#[test]
fn job_runs_once_labelled_with_deadline_and_ttl() {
    let m = built("agent:\n  timeout: 1h\n  kubernetes:\n    image: worker:1\n");
    let spec = m.job.spec.as_ref().expect("job spec");
    assert_eq!(spec.backoff_limit, Some(0));
    assert_eq!(spec.active_deadline_seconds, Some(3600 + 120));
    assert!(spec.ttl_seconds_after_finished.is_some());
    let labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref())
        .expect("labels");
    assert_eq!(labels.get("app").map(String::as_str), Some("chant-worker"));
    assert_eq!(pod(&m).restart_policy.as_deref(), Some("Never"));
    assert_eq!(
        m.job.metadata.name.as_deref(),
        Some("chant-2026-01-22-001-x7m-sess-abc123")
    );
}

#[test]
fn pod_is_non_root_read_only_and_unprivileged() {
    let m = built("agent:\n  kubernetes:\n    image: worker:1\n");
    let p = pod(&m);
    let psc = p.security_context.as_ref().expect("pod security context");
    assert_eq!(psc.run_as_non_root, Some(true));
    assert!(psc.run_as_user.is_some_and(|u| u != 0));
    assert_eq!(
        psc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
        Some("RuntimeDefault")
    );
    assert_eq!(p.automount_service_account_token, Some(false));
    let c = &p.containers[0];
    assert_eq!(c.image.as_deref(), Some("worker:1"));
    let sc = c
        .security_context
        .as_ref()
        .expect("container security context");
    assert_eq!(sc.run_as_non_root, Some(true));
    assert!(sc.run_as_user.is_some_and(|u| u != 0));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.privileged, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
        Some(vec!["ALL".to_string()])
    );
    assert!(sc.capabilities.as_ref().is_some_and(|c| c.add.is_none()));
    let mounts: Vec<&str> = c
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.as_str())
        .collect();
    assert_eq!(mounts, ["/workspace", "/home/agent", "/tmp"]);
    assert!(p
        .volumes
        .iter()
        .flatten()
        .all(|v| v.empty_dir.is_some() && v.host_path.is_none()));
}

#[test]
fn resources_default_to_the_seed_and_follow_config() {
    let m = built("agent:\n  kubernetes:\n    image: w\n");
    let r = pod(&m).containers[0].resources.clone().expect("resources");
    let get = |m: &Option<BTreeMap<String, Quantity>>, k: &str| {
        m.as_ref().and_then(|m| m.get(k)).map(|q| q.0.clone())
    };
    assert_eq!(get(&r.limits, "memory").as_deref(), Some("2Gi"));
    assert_eq!(get(&r.limits, "cpu").as_deref(), Some("1"));
    assert_eq!(get(&r.requests, "memory").as_deref(), Some("512Mi"));
    assert_eq!(get(&r.requests, "cpu").as_deref(), Some("250m"));
    let m = built(
        "agent:\n  kubernetes:\n    image: w\n    resources:\n      limits:\n        memory: 4Gi\n        cpu: \"2\"\n      requests:\n        cpu: 500m\n",
    );
    let r = pod(&m).containers[0].resources.clone().expect("resources");
    assert_eq!(get(&r.limits, "memory").as_deref(), Some("4Gi"));
    assert_eq!(get(&r.limits, "cpu").as_deref(), Some("2"));
    assert_eq!(get(&r.requests, "cpu").as_deref(), Some("500m"));
}

#[test]
fn secret_holds_only_exposed_keys_and_reaches_the_pod_by_env_from() {
    let m = built("agent:\n  kubernetes:\n    image: w\n");
    let keys: Vec<&String> = m.secret.data.iter().flatten().map(|(k, _)| k).collect();
    assert_eq!(keys, ["AGENT_API_KEY"]);
    let c = &pod(&m).containers[0];
    let secret_name = m.secret.metadata.name.clone().expect("name");
    assert_eq!(
        c.env_from
            .iter()
            .flatten()
            .filter_map(|e| e.secret_ref.as_ref())
            .map(|s| s.name.clone())
            .collect::<Vec<_>>(),
        [secret_name]
    );
    // The value is in the Secret only, never in the Job.
    let job_json = serde_json::to_string(&m.job).expect("json");
    assert!(!job_json.contains("sk-secret-value"));
    // The dry-run YAML withholds it too.
    let yaml = to_yaml(&m).expect("yaml");
    assert!(!yaml.contains("sk-secret-value"));
    assert!(
        !yaml.contains("c2stc2VjcmV0LXZhbHVl"),
        "base64 of the value"
    );
    assert!(yaml.contains("AGENT_API_KEY"));
}

#[test]
fn home_files_travel_in_the_runs_secret_never_the_job_and_the_script_writes_them_home() {
    let c = config("agent:\n  kubernetes:\n    image: w\n");
    let mut r = run();
    r.home_files = vec![
        (
            ".codex/config.toml".into(),
            "model_provider = \"chant\" # home-marker-1\n".into(),
        ),
        (".gemini/policy.toml".into(), "# home-marker-2\n".into()),
    ];
    r.workspace_files = vec![("opencode.json".into(), "{\"clone-marker\": 1}\n".into())];
    let m = build(
        &c.agent.kubernetes,
        &c.agent.network,
        "https://git.example.com/repo.git",
        &r,
    );
    let data = m.secret.data.clone().unwrap_or_default();
    let keys: Vec<&String> = data.keys().collect();
    assert_eq!(
        keys,
        [
            "AGENT_API_KEY",
            "CHANT_HOME_FILE_0",
            "CHANT_HOME_FILE_1",
            "CHANT_WORK_FILE_0"
        ]
    );
    assert_eq!(
        data["CHANT_HOME_FILE_0"].0,
        b"model_provider = \"chant\" # home-marker-1\n"
    );
    // Their contents are in the Secret only (consumed by the same envFrom): never in the
    // Job, nor in the dry-run YAML, and no ConfigMap is made for them.
    let job_json = serde_json::to_string(&m.job).expect("json");
    for marker in ["home-marker-1", "home-marker-2", "clone-marker"] {
        assert!(!job_json.contains(marker), "{job_json}");
    }
    let yaml = to_yaml(&m).expect("yaml");
    assert!(!yaml.contains("home-marker"), "{yaml}");
    assert!(!yaml.contains("ConfigMap"), "{yaml}");
    // The script writes each from its key into the HOME, then unsets it.
    let command = pod(&m).containers[0].command.clone().unwrap_or_default();
    let script = &command[2];
    assert!(
        script.contains("printf '%s' \"$CHANT_HOME_FILE_0\" > '/home/agent/.codex/config.toml'"),
        "{script}"
    );
    assert!(
        script.contains("printf '%s' \"$CHANT_HOME_FILE_1\" > '/home/agent/.gemini/policy.toml'"),
        "{script}"
    );
    assert!(script.contains("unset CHANT_HOME_FILE_1"), "{script}");
    assert!(
        script.contains("printf '%s' \"$CHANT_WORK_FILE_0\" > 'opencode.json'"),
        "{script}"
    );
    // The argv after the script is the agent's, untouched.
    assert_eq!(&command[4..], ["agent", "-p", "do it"]);
}

#[test]
fn role_may_only_get_the_runs_secret() {
    let m = built("agent:\n  kubernetes:\n    image: w\n    secret: team-secrets\n");
    let secret = m.secret.metadata.name.clone().expect("name");
    assert!(secret.starts_with("team-secrets-"));
    let rules = m.role.rules.clone().expect("rules");
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].api_groups, Some(vec![String::new()]));
    assert_eq!(rules[0].resources, Some(vec!["secrets".to_string()]));
    assert_eq!(rules[0].verbs, ["get"]);
    assert_eq!(rules[0].resource_names, Some(vec![secret]));
    let account = m.service_account.metadata.name.clone().expect("name");
    assert!(account.starts_with("chant-worker-"));
    assert_eq!(pod(&m).service_account_name.as_ref(), Some(&account));
    let subjects = m.role_binding.subjects.clone().expect("subjects");
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(subjects[0].name, account);
    assert_eq!(m.role_binding.role_ref.name, account);
    assert_eq!(m.role_binding.role_ref.kind, "Role");
}

fn egress_ports(np: &NetworkPolicy) -> Vec<(String, i32)> {
    np.spec
        .iter()
        .flat_map(|s| s.egress.iter().flatten())
        .flat_map(|r| r.ports.iter().flatten())
        .filter_map(|p| match &p.port {
            Some(IntOrString::Int(n)) => Some((p.protocol.clone().unwrap_or_default(), *n)),
            _ => None,
        })
        .collect()
}

#[test]
fn network_policy_allows_https_and_dns_only_for_this_pod() {
    let m = built("agent:\n  kubernetes:\n    image: w\n");
    let np = m.network_policy.expect("a policy by default");
    let spec = np.spec.clone().expect("spec");
    let sel = spec
        .pod_selector
        .and_then(|s| s.match_labels)
        .expect("selector");
    assert_eq!(sel.get("app").map(String::as_str), Some("chant-worker"));
    assert_eq!(
        sel.get(RUN_LABEL),
        m.job.metadata.name.as_ref(),
        "selects this run's pod"
    );
    assert_eq!(
        spec.policy_types,
        Some(vec!["Ingress".to_string(), "Egress".to_string()])
    );
    assert_eq!(spec.ingress, Some(Vec::new()));
    assert_eq!(
        egress_ports(&np),
        [
            ("UDP".to_string(), 53),
            ("TCP".to_string(), 53),
            ("TCP".to_string(), 443)
        ]
    );
}

#[test]
fn network_policy_with_an_allowlist_opens_its_ports_and_names_its_hosts() {
    let c = config(
        "agent:\n  network:\n    enabled: true\n    allowed_hosts: [api.example.com, \"git.example.com:8443\"]\n  kubernetes:\n    image: w\n",
    );
    let m = build(
        &c.agent.kubernetes,
        &c.agent.network,
        "ssh://git@git.example.com/repo.git",
        &run(),
    );
    let np = m.network_policy.expect("policy");
    let tcp: Vec<i32> = egress_ports(&np)
        .into_iter()
        .filter(|(p, n)| p == "TCP" && *n != 53)
        .map(|(_, n)| n)
        .collect();
    assert_eq!(tcp, [22, 443, 8443]);
    let note = np
        .metadata
        .annotations
        .and_then(|a| a.get("chant.dev/allowed-hosts").cloned());
    assert_eq!(
        note.as_deref(),
        Some("api.example.com,git.example.com:8443")
    );
    let off = built("agent:\n  kubernetes:\n    image: w\n    network_policy: false\n");
    assert!(off.network_policy.is_none());
}

#[test]
fn owner_references_point_every_object_at_the_job() {
    let mut m = built("agent:\n  kubernetes:\n    image: w\n");
    let mut job = m.job.clone();
    job.metadata.uid = Some("uid-1".into());
    set_owner(&mut m, &job);
    let owners = [
        &m.service_account.metadata,
        &m.role.metadata,
        &m.role_binding.metadata,
        &m.secret.metadata,
        &m.network_policy.as_ref().expect("policy").metadata,
    ];
    for meta in owners {
        let refs = meta.owner_references.clone().expect("owner");
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].kind, "Job");
        assert_eq!(refs[0].uid, "uid-1");
        assert_eq!(refs[0].name, job.metadata.name.clone().unwrap_or_default());
    }
}

#[test]
fn yaml_is_a_stream_of_documents_in_apply_order() {
    let m = built("agent:\n  kubernetes:\n    image: w\n    namespace: agents\n");
    let yaml = to_yaml(&m).expect("yaml");
    let kinds: Vec<String> = yaml
        .split("\n---\n")
        .map(|d| {
            let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(d).expect("each document parses");
            assert_eq!(v["metadata"]["namespace"].as_str(), Some("agents"));
            v["kind"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "Secret",
            "NetworkPolicy",
            "Job"
        ]
    );
}

#[test]
fn quantities_use_kubernetes_notation() {
    let size = |t: &str| quantity_bytes(&ByteSize::parse(t).expect("size")).0;
    let cpu = |t: &str| quantity_cpu(&Cpu::parse(t).expect("cpu")).0;
    assert_eq!(size("2G"), "2Gi");
    assert_eq!(size("1536M"), "1536Mi");
    assert_eq!(size("1000"), "1000");
    assert_eq!(cpu("0.5"), "500m");
    assert_eq!(cpu("2"), "2");
}

#[test]
fn repository_ports() {
    assert_eq!(url_port("https://h/r.git"), Some(443));
    assert_eq!(url_port("https://u:p@h:8443/r.git"), Some(8443));
    assert_eq!(url_port("git@h:r.git"), Some(22));
    assert_eq!(url_port("file:///srv/r.git"), None);
}
