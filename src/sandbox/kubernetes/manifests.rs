//! The Kubernetes objects of one run, built as pure values from the config and the run:
//! the Job, its ServiceAccount, Role (`get` on the run's Secret only), RoleBinding, the
//! run's Secret (only the exposed keys) and the NetworkPolicy. Nothing here talks to a
//! cluster; `client` sends these, `--dry-run` prints them.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvFromSource, EnvVar, PodSecurityContext,
    PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile, Secret, SecretEnvSource,
    SecurityContext, ServiceAccount, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::ByteString;

use super::{network, script};
use crate::config::{ByteSize, Cpu, KubernetesConfig, NetworkConfig};

/// Every worker pod carries this label (the seed's NetworkPolicy selects on it).
pub const APP_LABEL: (&str, &str) = ("app", "chant-worker");
/// The label naming the run, so that a policy selects only its own pod.
pub const RUN_LABEL: &str = "chant.dev/run";
/// The uid (and gid) the agent runs as in the pod: any non-zero id works with the image.
pub const RUN_AS_USER: i64 = 1000;
/// A finished Job is removed by the cluster this long after it ends, should chant die
/// before deleting it itself.
pub const TTL_AFTER_FINISHED: i32 = 600;
/// The seconds the pod gets beyond `agent.timeout` for cloning and pushing.
pub const DEADLINE_GRACE: Duration = Duration::from_secs(120);
/// The worker container's name.
pub const CONTAINER: &str = "agent";

/// One run, as the manifests need it.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub spec_id: String,
    pub session: String,
    /// The agent's argv, placeholders substituted as the pod sees paths.
    pub argv: Vec<String>,
    /// Plain environment (chant's fixed names).
    pub env: Vec<(String, String)>,
    /// The exposed secrets: they go into the run's Secret, never into the Job.
    pub secrets: Vec<(String, String)>,
    /// Files the script writes before the agent starts (the prompt), by pod path; their
    /// contents are plain variables of the Job.
    pub files: Vec<(String, String)>,
    /// The run's private HOME files (the adapter's settings, rules, config), by path under
    /// the pod's HOME (only normal components: [`RunSpec`] is built by
    /// `Kubernetes::run_spec`, which refuses any other); their contents go into the run's
    /// Secret, never the Job, and the script writes them into the HOME before the agent
    /// starts.
    pub home_files: Vec<(String, String)>,
    /// The adapter's files for the clone (its settings, the project config it
    /// neutralises), by path in the pod's clone (only normal components, never `.git`);
    /// their contents go into the run's Secret, and the script writes them over the
    /// clone after `git clone` and before the agent starts.
    pub workspace_files: Vec<(String, String)>,
    pub timeout: Duration,
}

impl RunSpec {
    /// The base name of the run's objects: `chant-<spec>-<session>`, as a DNS label.
    pub fn name(&self) -> String {
        let raw = format!("chant-{}-{}", self.spec_id, self.session);
        let mut name: String = raw
            .to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        // Pod names add a suffix to the Job's; 52 leaves room for it.
        name.truncate(52);
        name.trim_end_matches('-').to_string()
    }
}

/// All objects of a run. `owner` is the created Job (None for `--dry-run`, where no uid
/// exists yet and `kubectl apply` creates them side by side).
#[derive(Debug, Clone)]
pub struct Manifests {
    pub service_account: ServiceAccount,
    pub role: Role,
    pub role_binding: RoleBinding,
    pub secret: Secret,
    pub network_policy: Option<NetworkPolicy>,
    pub job: Job,
}

/// Builds the objects of `run` under `config`.
pub fn build(
    config: &KubernetesConfig,
    network: &NetworkConfig,
    repo_url: &str,
    run: &RunSpec,
) -> Manifests {
    let name = run.name();
    let secret_name = format!("{}-{}", config.secret, suffix(&name));
    let account = format!("{}-{}", config.service_account, suffix(&name));
    Manifests {
        service_account: ServiceAccount {
            metadata: meta(config, &account, &name),
            // The pod needs no API access: no token is mounted (the Role is the ceiling
            // should a cluster policy mount one anyway).
            automount_service_account_token: Some(false),
            ..Default::default()
        },
        role: Role {
            metadata: meta(config, &account, &name),
            rules: Some(vec![PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["secrets".into()]),
                verbs: vec!["get".into()],
                resource_names: Some(vec![secret_name.clone()]),
                ..Default::default()
            }]),
        },
        role_binding: RoleBinding {
            metadata: meta(config, &account, &name),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "Role".into(),
                name: account.clone(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: account.clone(),
                namespace: Some(config.namespace.clone()),
                ..Default::default()
            }]),
        },
        secret: Secret {
            metadata: meta(config, &secret_name, &name),
            data: Some(
                run.secrets
                    .iter()
                    .map(|(k, v)| (k.clone(), ByteString(v.clone().into_bytes())))
                    .chain(run.home_files.iter().enumerate().map(|(i, (_, text))| {
                        (
                            script::home_file_var(i),
                            ByteString(text.clone().into_bytes()),
                        )
                    }))
                    .chain(
                        run.workspace_files
                            .iter()
                            .enumerate()
                            .map(|(i, (_, text))| {
                                (
                                    script::work_file_var(i),
                                    ByteString(text.clone().into_bytes()),
                                )
                            }),
                    )
                    .collect(),
            ),
            type_: Some("Opaque".into()),
            immutable: Some(true),
            ..Default::default()
        },
        network_policy: config
            .network_policy
            .then(|| network::policy(meta(config, &name, &name), network, repo_url, &name)),
        job: job(config, repo_url, run, &name, &account, &secret_name),
    }
}

/// The part of the run name that makes the other objects' names unique.
fn suffix(name: &str) -> &str {
    name.strip_prefix("chant-").unwrap_or(name)
}

pub(super) fn labels(run_name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (APP_LABEL.0.to_string(), APP_LABEL.1.to_string()),
        (RUN_LABEL.to_string(), run_name.to_string()),
    ])
}

fn meta(config: &KubernetesConfig, name: &str, run_name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(config.namespace.clone()),
        labels: Some(labels(run_name)),
        ..Default::default()
    }
}

/// Owner references to the created Job, so that deleting the Job removes the rest.
pub fn set_owner(m: &mut Manifests, job: &Job) {
    let owner = OwnerReference {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        name: job.metadata.name.clone().unwrap_or_default(),
        uid: job.metadata.uid.clone().unwrap_or_default(),
        controller: Some(false),
        block_owner_deletion: Some(true),
    };
    for metadata in [
        &mut m.service_account.metadata,
        &mut m.role.metadata,
        &mut m.role_binding.metadata,
        &mut m.secret.metadata,
    ] {
        metadata.owner_references = Some(vec![owner.clone()]);
    }
    if let Some(np) = &mut m.network_policy {
        np.metadata.owner_references = Some(vec![owner]);
    }
}

/// Kubernetes notation of a size: exact binary units where they fit, else bytes.
pub fn quantity_bytes(size: &ByteSize) -> Quantity {
    let b = size.bytes();
    let text = [
        (1u64 << 40, "Ti"),
        (1 << 30, "Gi"),
        (1 << 20, "Mi"),
        (1 << 10, "Ki"),
    ]
    .iter()
    .find(|(unit, _)| b > 0 && b % unit == 0)
    .map(|(unit, suffix)| format!("{}{suffix}", b / unit))
    .unwrap_or_else(|| b.to_string());
    Quantity(text)
}

/// Kubernetes notation of a CPU amount: whole CPUs, else millicores.
pub fn quantity_cpu(cpu: &Cpu) -> Quantity {
    let m = cpu.millis();
    Quantity(if m % 1000 == 0 {
        (m / 1000).to_string()
    } else {
        format!("{m}m")
    })
}

fn job(
    config: &KubernetesConfig,
    repo_url: &str,
    run: &RunSpec,
    name: &str,
    account: &str,
    secret_name: &str,
) -> Job {
    let amounts = |a: &crate::config::ResourceAmounts| {
        BTreeMap::from([
            ("memory".to_string(), quantity_bytes(&a.memory)),
            ("cpu".to_string(), quantity_cpu(&a.cpu)),
        ])
    };
    let mut env: Vec<EnvVar> = run
        .env
        .iter()
        .map(|(k, v)| EnvVar {
            name: k.clone(),
            value: Some(v.clone()),
            ..Default::default()
        })
        .collect();
    env.push(EnvVar {
        name: script::REPO_URL_VAR.into(),
        value: Some(repo_url.to_string()),
        ..Default::default()
    });
    for (i, (_, content)) in run.files.iter().enumerate() {
        env.push(EnvVar {
            name: script::file_var(i),
            value: Some(content.clone()),
            ..Default::default()
        });
    }
    let paths: Vec<&str> = run.files.iter().map(|(p, _)| p.as_str()).collect();
    let home: Vec<&str> = run.home_files.iter().map(|(p, _)| p.as_str()).collect();
    let work: Vec<&str> = run
        .workspace_files
        .iter()
        .map(|(p, _)| p.as_str())
        .collect();
    let mut command = vec![
        "sh".to_string(),
        "-c".to_string(),
        script::pod_script(&paths, &home, &work),
        "chant-pod".to_string(),
    ];
    command.extend(run.argv.iter().cloned());
    let volume = |n: &str| Volume {
        name: n.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(quantity_bytes(&config.resources.limits.memory)),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mount = |n: &str, path: &str| VolumeMount {
        name: n.into(),
        mount_path: path.into(),
        ..Default::default()
    };
    let deadline = run.timeout.saturating_add(DEADLINE_GRACE).as_secs();
    Job {
        metadata: meta(config, name, name),
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(i64::try_from(deadline).unwrap_or(i64::MAX)),
            ttl_seconds_after_finished: Some(TTL_AFTER_FINISHED),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(name)),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    service_account_name: Some(account.to_string()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(RUN_AS_USER),
                        run_as_group: Some(RUN_AS_USER),
                        fs_group: Some(RUN_AS_USER),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    containers: vec![Container {
                        name: CONTAINER.into(),
                        image: config.image.clone(),
                        image_pull_policy: Some("IfNotPresent".into()),
                        command: Some(command),
                        working_dir: Some(script::WORKSPACE_MOUNT.into()),
                        env: Some(env),
                        env_from: Some(vec![EnvFromSource {
                            secret_ref: Some(SecretEnvSource {
                                name: secret_name.to_string(),
                                optional: Some(false),
                            }),
                            ..Default::default()
                        }]),
                        resources: Some(ResourceRequirements {
                            limits: Some(amounts(&config.resources.limits)),
                            requests: Some(amounts(&config.resources.requests)),
                            ..Default::default()
                        }),
                        security_context: Some(SecurityContext {
                            run_as_non_root: Some(true),
                            run_as_user: Some(RUN_AS_USER),
                            read_only_root_filesystem: Some(true),
                            allow_privilege_escalation: Some(false),
                            privileged: Some(false),
                            capabilities: Some(Capabilities {
                                drop: Some(vec!["ALL".into()]),
                                add: None,
                            }),
                            seccomp_profile: Some(SeccompProfile {
                                type_: "RuntimeDefault".into(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        volume_mounts: Some(vec![
                            mount("workspace", script::WORKSPACE_MOUNT),
                            mount("home", script::HOME),
                            mount("tmp", "/tmp"),
                        ]),
                        ..Default::default()
                    }],
                    volumes: Some(vec![volume("workspace"), volume("home"), volume("tmp")]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// The objects as YAML documents for `kubectl apply -f -`, the Secret's values withheld.
pub fn to_yaml(m: &Manifests) -> Result<String, serde_yaml_ng::Error> {
    let mut secret = m.secret.clone();
    if let Some(data) = &mut secret.data {
        for v in data.values_mut() {
            *v = ByteString(Vec::new());
        }
    }
    let mut docs = vec![
        doc("v1", "ServiceAccount", &m.service_account)?,
        doc("rbac.authorization.k8s.io/v1", "Role", &m.role)?,
        doc(
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            &m.role_binding,
        )?,
        doc("v1", "Secret", &secret)?,
    ];
    if let Some(np) = &m.network_policy {
        docs.push(doc("networking.k8s.io/v1", "NetworkPolicy", np)?);
    }
    docs.push(doc("batch/v1", "Job", &m.job)?);
    Ok(format!(
        "# chant: the objects of one run; the Secret's values are withheld (chant fills them)\n{}",
        docs.join("---\n")
    ))
}

fn doc<T: serde::Serialize>(
    api_version: &str,
    kind: &str,
    object: &T,
) -> Result<String, serde_yaml_ng::Error> {
    // k8s-openapi writes apiVersion and kind itself; re-stated here so the order is fixed.
    let mut value = serde_yaml_ng::to_value(object)?;
    if let serde_yaml_ng::Value::Mapping(map) = &mut value {
        map.insert("apiVersion".into(), api_version.into());
        map.insert("kind".into(), kind.into());
    }
    serde_yaml_ng::to_string(&value)
}

#[cfg(test)]
#[path = "manifests_tests.rs"]
mod tests;
