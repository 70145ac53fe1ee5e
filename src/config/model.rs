//! The typed configuration model: every key of the seed document and DESIGN.md, with its
//! default. Values are parsed here, once; the rest of the program only sees valid ones.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::ser::{SerializeSeq, Serializer};
use serde::Serialize;
use serde_yaml_ng::Value;

use super::read::Section;
use super::units::{ByteSize, Cpu, Span};
use super::ConfigError;
use crate::pattern::{Anchoring, HostRules, IdentityRules, NameRules, PathRules, PatternError};

/// Declares a word-valued setting: an enum, its spellings, `Display` and `Serialize`.
macro_rules! choice {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every spelling, in the order the docs list them.
            pub const OPTIONS: &'static [(&'static str, $name)] = &[$(($text, $name::$variant)),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                Self::OPTIONS.iter().find(|(n, _)| *n == s).map(|(_, v)| *v).ok_or_else(|| {
                    let names: Vec<&str> = Self::OPTIONS.iter().map(|(n, _)| *n).collect();
                    format!("'{s}' is not one of {}", names.join(", "))
                })
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

choice!(
    /// How strongly the agent is contained (the seed's "Sandbox Levels").
    SandboxLevel { None = "none", Permissions = "permissions", Docker = "docker", Vm = "vm", Kubernetes = "kubernetes" }
);
choice!(
    /// Which adapter runs the agent program (`agent.kind`; see `src/agent/`).
    AgentKind {
        Custom = "custom",
        Claude = "claude",
        Codex = "codex",
        Gemini = "gemini",
        Aider = "aider",
        Opencode = "opencode",
    }
);
choice!(VmProvider { Qemu = "qemu", Firecracker = "firecracker", Virtualbox = "virtualbox" });
choice!(VmNetwork { Isolated = "isolated", Allowlist = "allowlist" });
choice!(VmSnapshot { Clean = "clean" });
choice!(VmAccel { Auto = "auto", Kvm = "kvm", Tcg = "tcg" });
choice!(AuditFormat { Jsonl = "jsonl", Json = "json", Text = "text" });
choice!(Rotate { Never = "never", Daily = "daily" });
choice!(SignMode { Auto = "auto", Always = "always", Never = "never" });
choice!(ShipType { S3 = "s3", Gcs = "gcs", Elasticsearch = "elasticsearch", Splunk = "splunk" });
choice!(HashAlgorithm { Sha256 = "sha256" });
choice!(Tier { Solo = "solo", Team = "team", Scale = "scale" });

/// The whole `.chant/config.md` front matter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    pub agent: AgentConfig,
    pub audit: AuditConfig,
    pub security: SecurityConfig,
    pub work: WorkConfig,
    pub protection: ProtectionConfig,
    /// chant's own keys (`defaults`, `parallel`, …), kept as written.
    #[serde(flatten)]
    pub chant: ChantKeys,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentConfig {
    pub sandbox: SandboxLevel,
    /// The agent program as an argv template (`{prompt}`, `{prompt_file}`, `{spec_id}`,
    /// `{workspace}`). None: chant's `parallel.agents[0].command`, else `claude`.
    pub command: Option<Vec<String>>,
    /// The adapter; None: recognised from the program name of `command`.
    pub kind: Option<AgentKind>,
    pub timeout: Span,
    pub allowed_paths: PathList,
    pub denied_paths: PathList,
    pub permissions: Permissions,
    pub docker: DockerConfig,
    pub vm: VmConfig,
    pub kubernetes: KubernetesConfig,
    pub file_access: FileAccess,
    pub network: NetworkConfig,
    pub commands: CommandsConfig,
    pub secrets: SecretsConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Permissions {
    pub allow_edit: PathList,
    pub deny_edit: PathList,
    pub allow_bash: Vec<String>,
    pub deny_bash: Vec<String>,
    pub allow_network: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DockerConfig {
    pub image: String,
    pub network: String,
    pub read_only: bool,
    pub volumes: Vec<String>,
    pub memory: ByteSize,
    pub cpu: Cpu,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VmConfig {
    pub provider: VmProvider,
    pub memory: ByteSize,
    pub cpu: u32,
    pub network: VmNetwork,
    pub snapshot: VmSnapshot,
    /// None: the newest `/boot/vmlinuz-*`.
    pub kernel: Option<PathBuf>,
    /// The guest root file system (a directory or a `.tar`) holding the agent.
    pub image: Option<PathBuf>,
    pub accel: VmAccel,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KubernetesConfig {
    pub namespace: String,
    pub image: Option<String>,
    pub service_account: String,
    pub secret: String,
    pub resources: Resources,
    pub network_policy: bool,
    pub repo_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resources {
    pub limits: ResourceAmounts,
    pub requests: ResourceAmounts,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceAmounts {
    pub memory: ByteSize,
    pub cpu: Cpu,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileAccess {
    pub allowed_paths: PathList,
    pub denied_paths: PathList,
    /// Words that flag file content (case-insensitive), e.g. `password`.
    pub sensitive_patterns: Vec<String>,
    /// Fail the spec (instead of only flagging) when changed content matches.
    pub fail_on_sensitive: bool,
    /// Changed files larger than this never land.
    pub max_file_size: ByteSize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetworkConfig {
    pub enabled: bool,
    pub allowed_hosts: HostList,
    pub denied_hosts: HostList,
    /// `upstream_ca`: a PEM bundle trusted, beside the system roots, when the proxy
    /// verifies the real upstream of an injected host (private endpoints, tests).
    pub upstream_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandsConfig {
    pub allowed: Vec<String>,
    pub denied: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecretsConfig {
    pub expose: NameList,
    pub hide: NameList,
    /// `inject`: secret name → the hosts its real value may be sent to. The agent holds a
    /// placeholder; the egress proxy puts the value in, toward these hosts only.
    pub inject: BTreeMap<String, HostList>,
    /// `inject_agent_keys` (default true): at docker and vm with the network enabled, the
    /// agent adapter's API keys are injected for its API hosts unless `hide`, an `inject`
    /// entry or an `expose` entry naming the variable says otherwise.
    pub inject_agent_keys: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditConfig {
    pub enabled: bool,
    pub file: PathBuf,
    pub format: AuditFormat,
    pub rotate: Rotate,
    pub retain: Span,
    pub ship_to: Option<ShipTo>,
    pub integrity: Integrity,
    pub sign: SignMode,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShipTo {
    #[serde(rename = "type")]
    pub kind: ShipType,
    pub bucket: Option<String>,
    pub prefix: Option<String>,
    pub url: Option<String>,
    pub index: Option<String>,
    pub token_env: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Integrity {
    pub enabled: bool,
    pub algorithm: HashAlgorithm,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecurityConfig {
    pub sensitive_patterns: PathList,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkConfig {
    /// The branch spec branches start from. None: `defaults.main_branch`.
    pub base: Option<String>,
    /// Commands run after the agent, inside the same sandbox; any failure fails the spec.
    pub validate: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProtectionConfig {
    /// Branch globs. Empty: `defaults.main_branch`.
    pub branches: IdentityList,
    /// Identity globs of agents (actors and pushers).
    pub agents: IdentityList,
    pub require_approval: bool,
    pub required_checks: Vec<String>,
    pub require_signed_audit: bool,
}

/// chant's own top-level keys. git-chant reads three of them and keeps all as written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChantKeys {
    #[serde(skip)]
    pub branch_prefix: String,
    #[serde(skip)]
    pub main_branch: String,
    #[serde(skip)]
    pub parallel_agent_command: Option<String>,
    #[serde(flatten)]
    pub kept: BTreeMap<String, serde_json::Value>,
}

/// chant's top-level keys, accepted and kept untouched.
pub const CHANT_KEYS: &[&str] = &[
    "project",
    "defaults",
    "providers",
    "parallel",
    "approval",
    "enterprise",
    "validation",
    "lint",
    "site",
    "repos",
    "watch",
    "silent",
];

/// A path pattern list, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct PathList(pub PathRules);

/// A host pattern list, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct HostList(pub HostRules);

/// An environment-name glob list, compiled.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NameList(pub NameRules);

/// A list of identity or branch-name globs, compiled.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IdentityList(pub IdentityRules);

impl Serialize for PathList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.patterns())
    }
}

impl Serialize for HostList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.patterns().len()))?;
        for p in self.0.patterns() {
            seq.serialize_element(p.as_str())?;
        }
        seq.end()
    }
}

impl Serialize for NameList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.patterns())
    }
}

impl Serialize for IdentityList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.patterns())
    }
}

macro_rules! serialize_as_text {
    ($($t:ty),+) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    )+};
}
serialize_as_text!(ByteSize, Span, Cpu);

/// The seed's sensitive file patterns, plus `.env*` so that `.env.production` (the seed's
/// own example) is caught.
pub const DEFAULT_SENSITIVE_FILES: &[&str] = &[
    ".env*",
    "*.env",
    "*credentials*",
    "*secret*",
    "*.pem",
    "*.key",
];

impl Config {
    /// Reads the configuration from its parsed front matter. `file` names the file in errors.
    pub fn from_yaml(file: &str, root: &Value) -> Result<Config, ConfigError> {
        let top = Section::root(file, root)?;
        let chant = read_chant_keys(&top)?;
        let agent = read_agent(&top.section("agent")?)?;
        let audit = read_audit(&top.section("audit")?)?;
        let security = {
            let s = top.section("security")?;
            let patterns = s.strings("sensitive_patterns")?;
            let rules = paths(
                &s,
                "sensitive_patterns",
                patterns,
                DEFAULT_SENSITIVE_FILES,
                Anchoring::Anywhere,
            )?;
            s.finish()?;
            SecurityConfig {
                sensitive_patterns: rules,
            }
        };
        let work = {
            let s = top.section("work")?;
            let base = s.parse("base", branch_name)?;
            let validate = s.strings("validate")?.unwrap_or_default();
            s.finish()?;
            WorkConfig { base, validate }
        };
        let protection = {
            let s = top.section("protection")?;
            let globs = |key: &'static str| -> Result<IdentityList, ConfigError> {
                let list = s.strings(key)?.unwrap_or_default();
                IdentityRules::new(&list)
                    .map(IdentityList)
                    .map_err(|e| pattern_error(&s, key, e))
            };
            let p = ProtectionConfig {
                branches: globs("branches")?,
                agents: globs("agents")?,
                require_approval: s.bool("require_approval")?.unwrap_or(true),
                required_checks: s.strings("required_checks")?.unwrap_or_default(),
                require_signed_audit: s.bool("require_signed_audit")?.unwrap_or(false),
            };
            if let Some(empty) = p.required_checks.iter().find(|c| c.trim().is_empty()) {
                return Err(s.error(
                    "required_checks",
                    format!("'{empty}' is empty; name the check as CI records it"),
                ));
            }
            s.finish()?;
            p
        };
        top.finish()?;
        Ok(Config {
            agent,
            audit,
            security,
            work,
            protection,
            chant,
        })
    }

    /// The configuration with every default, as if the file were empty.
    pub fn defaults() -> Config {
        // Reading an empty document cannot fail: every default is a valid value.
        match Config::from_yaml("(defaults)", &Value::Null) {
            Ok(config) => config,
            Err(e) => panic!("built-in defaults are invalid: {e}"),
        }
    }

    /// The branch spec branches start from.
    pub fn base_branch(&self) -> &str {
        self.work.base.as_deref().unwrap_or(&self.chant.main_branch)
    }

    /// The agent program's argv template.
    pub fn agent_command(&self) -> Vec<String> {
        if let Some(argv) = &self.agent.command {
            return argv.clone();
        }
        if let Some(cmd) = &self.chant.parallel_agent_command {
            let mut argv = vec![cmd.clone()];
            argv.push("{prompt}".to_string());
            return argv;
        }
        vec!["claude".into(), "-p".into(), "{prompt}".into()]
    }

    /// True when `branch` (a short name, e.g. `main`) is protected: it matches
    /// `protection.branches`, or, when that is empty, it is `defaults.main_branch`.
    pub fn is_protected_branch(&self, branch: &str) -> bool {
        if self.protection.branches.0.is_empty() {
            branch == self.chant.main_branch
        } else {
            self.protection.branches.0.is_match(branch)
        }
    }

    /// True when `identity` (an actor or a pusher) matches `protection.agents`.
    pub fn is_agent(&self, identity: &str) -> bool {
        self.protection.agents.0.is_match(identity)
    }
}

fn pattern_error(s: &Section<'_>, key: &str, e: PatternError) -> ConfigError {
    s.error(key, e.to_string())
}

fn paths(
    s: &Section<'_>,
    key: &str,
    given: Option<Vec<String>>,
    default: &[&str],
    anchoring: Anchoring,
) -> Result<PathList, ConfigError> {
    let list = given.unwrap_or_else(|| default.iter().map(|p| p.to_string()).collect());
    PathRules::new(&list, anchoring)
        .map(PathList)
        .map_err(|e| pattern_error(s, key, e))
}

fn branch_name(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && !text.starts_with(['-', '/', '.'])
        && !text.ends_with(['/', '.'])
        && !text.contains("..")
        && !text.contains("//")
        && !text.contains("@{")
        && !text.ends_with(".lock")
        && text.chars().all(|c| {
            !c.is_control() && !matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\')
        });
    if valid {
        Ok(text.to_string())
    } else {
        Err(format!("'{text}' is not a valid git branch name"))
    }
}

fn read_chant_keys(top: &Section<'_>) -> Result<ChantKeys, ConfigError> {
    let mut kept = BTreeMap::new();
    for key in CHANT_KEYS {
        if let Some(value) = top.raw(key) {
            let json = serde_json::to_value(value)
                .map_err(|e| top.error(key, format!("cannot be represented: {e}")))?;
            kept.insert(key.to_string(), json);
        }
    }
    let mut branch_prefix = "chant/".to_string();
    let mut main_branch = "main".to_string();
    if let Some(Value::Mapping(defaults)) = top.raw("defaults") {
        let text = |key: &str| {
            defaults
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        if let Some(prefix) = text("branch_prefix") {
            branch_name(prefix.trim_end_matches('/'))
                .map_err(|m| top.error("defaults.branch_prefix", m))?;
            branch_prefix = prefix;
        }
        if let Some(main) = text("main_branch") {
            main_branch = branch_name(&main).map_err(|m| top.error("defaults.main_branch", m))?;
        }
    }
    let parallel_agent_command = top
        .raw("parallel")
        .and_then(|p| p.get("agents"))
        .and_then(|a| a.get(0))
        .and_then(|a| a.get("command"))
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(ChantKeys {
        branch_prefix,
        main_branch,
        parallel_agent_command,
        kept,
    })
}

fn read_agent(s: &Section<'_>) -> Result<AgentConfig, ConfigError> {
    let sandbox = s
        .choice("sandbox", SandboxLevel::OPTIONS)?
        .unwrap_or(SandboxLevel::Permissions);
    let command = match s.raw("command") {
        None => None,
        Some(Value::String(line)) => {
            Some(split_command_line(line).map_err(|m| s.error("command", m))?)
        }
        Some(_) => s.strings("command")?,
    };
    if command.as_ref().is_some_and(|argv| argv.is_empty()) {
        return Err(s.error(
            "command",
            "is empty; give the agent program and its arguments",
        ));
    }
    let kind = s.choice("kind", AgentKind::OPTIONS)?;
    let timeout = s
        .parse("timeout", Span::parse)?
        .unwrap_or_else(|| span("2h"));
    let allowed_paths = s.strings("allowed_paths")?;
    let allowed_paths = paths(s, "allowed_paths", allowed_paths, &[], Anchoring::Root)?;
    let denied_paths = s.strings("denied_paths")?;
    let denied_paths = paths(s, "denied_paths", denied_paths, &[], Anchoring::Anywhere)?;

    let permissions = {
        let p = s.section("permissions")?;
        let allow_edit = p.strings("allow_edit")?;
        let deny_edit = p.strings("deny_edit")?;
        let out = Permissions {
            allow_edit: paths(&p, "allow_edit", allow_edit, &[], Anchoring::Root)?,
            deny_edit: paths(&p, "deny_edit", deny_edit, &[], Anchoring::Anywhere)?,
            allow_bash: p.strings("allow_bash")?.unwrap_or_default(),
            deny_bash: p.strings("deny_bash")?.unwrap_or_default(),
            allow_network: p.bool("allow_network")?.unwrap_or(false),
        };
        for (key, list) in [
            ("allow_bash", &out.allow_bash),
            ("deny_bash", &out.deny_bash),
        ] {
            if let Some(empty) = list.iter().find(|c| c.trim().is_empty()) {
                return Err(p.error(key, format!("'{empty}' is an empty command pattern")));
            }
        }
        p.finish()?;
        out
    };

    let docker = {
        let d = s.section("docker")?;
        let out = DockerConfig {
            image: d
                .string("image")?
                .unwrap_or_else(|| "chant-agent:latest".into()),
            network: d.string("network")?.unwrap_or_else(|| "none".into()),
            read_only: d.bool("read_only")?.unwrap_or(true),
            volumes: d.strings("volumes")?.unwrap_or_default(),
            memory: d
                .parse("memory", ByteSize::parse)?
                .unwrap_or_else(|| size("2G")),
            cpu: d.parse("cpu", Cpu::parse)?.unwrap_or_else(|| cpu("1")),
        };
        if out.network == "host" {
            return Err(d.error("network", "'host' shares the host's network and defeats the sandbox; use 'none' (default) or agent.network.allowed_hosts"));
        }
        for volume in &out.volumes {
            if volume.split(':').count() < 2 {
                return Err(d.error(
                    "volumes",
                    format!("'{volume}' is not SOURCE:TARGET[:ro|rw]"),
                ));
            }
        }
        d.finish()?;
        out
    };

    let vm = {
        let v = s.section("vm")?;
        let out = VmConfig {
            provider: v
                .choice("provider", VmProvider::OPTIONS)?
                .unwrap_or(VmProvider::Qemu),
            memory: v
                .parse("memory", ByteSize::parse)?
                .unwrap_or_else(|| size("2G")),
            cpu: v
                .parse("cpu", |t| {
                    t.parse::<u32>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| format!("'{t}' is not a whole number of CPUs (1 or more)"))
                })?
                .unwrap_or(1),
            network: v
                .choice("network", VmNetwork::OPTIONS)?
                .unwrap_or(VmNetwork::Isolated),
            snapshot: v
                .choice("snapshot", VmSnapshot::OPTIONS)?
                .unwrap_or(VmSnapshot::Clean),
            kernel: v.string("kernel")?.map(PathBuf::from),
            image: v.string("image")?.map(PathBuf::from),
            accel: v
                .choice("accel", VmAccel::OPTIONS)?
                .unwrap_or(VmAccel::Auto),
        };
        v.finish()?;
        out
    };

    let kubernetes = {
        let k = s.section("kubernetes")?;
        let resources = {
            let r = k.section("resources")?;
            let amounts = |key: &'static str,
                           mem: &str,
                           cpus: &str|
             -> Result<ResourceAmounts, ConfigError> {
                let a = r.section(key)?;
                let out = ResourceAmounts {
                    memory: a
                        .parse("memory", ByteSize::parse)?
                        .unwrap_or_else(|| size(mem)),
                    cpu: a.parse("cpu", Cpu::parse)?.unwrap_or_else(|| cpu(cpus)),
                };
                a.finish()?;
                Ok(out)
            };
            let out = Resources {
                limits: amounts("limits", "2Gi", "1")?,
                requests: amounts("requests", "512Mi", "250m")?,
            };
            r.finish()?;
            out
        };
        let out = KubernetesConfig {
            namespace: k
                .parse("namespace", dns_label)?
                .unwrap_or_else(|| "default".into()),
            image: k.string("image")?,
            service_account: k
                .parse("service_account", dns_label)?
                .unwrap_or_else(|| "chant-worker".into()),
            secret: k
                .parse("secret", dns_label)?
                .unwrap_or_else(|| "chant-secrets".into()),
            resources,
            network_policy: k.bool("network_policy")?.unwrap_or(true),
            repo_url: k.string("repo_url")?,
        };
        k.finish()?;
        out
    };

    let file_access = {
        let f = s.section("file_access")?;
        let allowed = f.strings("allowed_paths")?;
        let denied = f.strings("denied_paths")?;
        let out = FileAccess {
            allowed_paths: paths(&f, "allowed_paths", allowed, &[], Anchoring::Root)?,
            denied_paths: paths(&f, "denied_paths", denied, &[], Anchoring::Anywhere)?,
            sensitive_patterns: f.strings("sensitive_patterns")?.unwrap_or_default(),
            fail_on_sensitive: f.bool("fail_on_sensitive")?.unwrap_or(false),
            max_file_size: f
                .parse("max_file_size", ByteSize::parse)?
                .unwrap_or_else(|| size("10M")),
        };
        if let Some(empty) = out.sensitive_patterns.iter().find(|p| p.trim().is_empty()) {
            return Err(f.error("sensitive_patterns", format!("'{empty}' is empty")));
        }
        f.finish()?;
        out
    };

    let network = {
        let n = s.section("network")?;
        let hosts = |key: &'static str| -> Result<HostList, ConfigError> {
            let list = n.strings(key)?.unwrap_or_default();
            HostRules::new(&list)
                .map(HostList)
                .map_err(|e| pattern_error(&n, key, e))
        };
        let out = NetworkConfig {
            enabled: n.bool("enabled")?.unwrap_or(false),
            allowed_hosts: hosts("allowed_hosts")?,
            denied_hosts: hosts("denied_hosts")?,
            upstream_ca: n.parse("upstream_ca", |text| {
                if text.trim().is_empty() {
                    Err("is empty; give the path of a PEM file of CA certificates".into())
                } else {
                    Ok(PathBuf::from(text))
                }
            })?,
        };
        n.finish()?;
        out
    };

    let commands = {
        let c = s.section("commands")?;
        let out = CommandsConfig {
            allowed: c.strings("allowed")?.unwrap_or_default(),
            denied: c.strings("denied")?.unwrap_or_default(),
        };
        for (key, list) in [("allowed", &out.allowed), ("denied", &out.denied)] {
            if let Some(empty) = list.iter().find(|p| p.trim().is_empty()) {
                return Err(c.error(key, format!("'{empty}' is an empty command pattern")));
            }
        }
        c.finish()?;
        out
    };

    let secrets = {
        let e = s.section("secrets")?;
        let names = |key: &'static str| -> Result<NameList, ConfigError> {
            let list = e.strings(key)?.unwrap_or_default();
            NameRules::new(&list)
                .map(NameList)
                .map_err(|err| pattern_error(&e, key, err))
        };
        let out = SecretsConfig {
            expose: names("expose")?,
            hide: names("hide")?,
            inject: read_inject(&e)?,
            inject_agent_keys: e.bool("inject_agent_keys")?.unwrap_or(true),
        };
        e.finish()?;
        out
    };

    // The seed also shows `allowed_paths`/`denied_paths` directly under `agent`; both
    // spellings are read (and both apply).
    s.finish()?;
    Ok(AgentConfig {
        sandbox,
        command,
        kind,
        timeout,
        allowed_paths,
        denied_paths,
        permissions,
        docker,
        vm,
        kubernetes,
        file_access,
        network,
        commands,
        secrets,
    })
}

/// `agent.secrets.inject`: a mapping of secret names to non-empty host lists.
fn read_inject(e: &Section<'_>) -> Result<BTreeMap<String, HostList>, ConfigError> {
    let mut out = BTreeMap::new();
    let Some(raw) = e.raw("inject") else {
        return Ok(out);
    };
    let Value::Mapping(map) = raw else {
        return Err(e.error(
            "inject",
            "expected a mapping of secret names to host lists, e.g. {ANTHROPIC_API_KEY: [api.anthropic.com]}",
        ));
    };
    for (name, hosts) in map {
        let Some(name) = name.as_str() else {
            return Err(e.error("inject", "secret names must be text"));
        };
        let key = format!("inject.{name}");
        let valid = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(e.error(
                &key,
                format!("'{name}' is not an environment variable name (letters, digits, '_')"),
            ));
        }
        let list: Vec<String> = match hosts {
            Value::Sequence(items) => items
                .iter()
                .map(|i| match i {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(e.error(&key, "hosts must be text, e.g. api.example.com")),
                })
                .collect::<Result<_, _>>()?,
            _ => {
                return Err(e.error(
                    &key,
                    "expected a list of hosts the value may be sent to, e.g. [api.example.com]",
                ))
            }
        };
        if list.is_empty() {
            return Err(e.error(
                &key,
                "lists no host; name the hosts the value may be sent to, or remove the entry",
            ));
        }
        let rules = HostRules::new(&list).map_err(|err| e.error(&key, err.to_string()))?;
        if let Some(any) = rules.patterns().iter().find(|p| p.is_any()) {
            return Err(e.error(
                &key,
                format!("'{any}' would send the value anywhere; name the hosts it is for"),
            ));
        }
        out.insert(name.to_string(), HostList(rules));
    }
    Ok(out)
}

fn read_audit(s: &Section<'_>) -> Result<AuditConfig, ConfigError> {
    let ship_to = {
        let t = s.section("ship_to")?;
        let kind = t.choice("type", ShipType::OPTIONS)?;
        let out = ShipTo {
            kind: kind.unwrap_or(ShipType::S3),
            bucket: t.string("bucket")?,
            prefix: t.string("prefix")?,
            url: t.string("url")?,
            index: t.string("index")?,
            token_env: t.string("token_env")?,
        };
        let present = s.raw("ship_to").is_some();
        if present && kind.is_none() {
            return Err(t.error("type", "is required; one of s3, gcs, elasticsearch, splunk"));
        }
        match out.kind {
            ShipType::S3 | ShipType::Gcs if present && out.bucket.is_none() => {
                return Err(t.error("bucket", format!("is required when type is {}", out.kind)));
            }
            ShipType::Elasticsearch | ShipType::Splunk if present && out.url.is_none() => {
                return Err(t.error("url", format!("is required when type is {}", out.kind)));
            }
            ShipType::Splunk if present && out.token_env.is_none() => {
                return Err(t.error(
                    "token_env",
                    "is required when type is splunk: the name of the variable holding the HEC token, e.g. SPLUNK_HEC_TOKEN",
                ));
            }
            _ => {}
        }
        if let Some(url) = &out.url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(t.error(
                    "url",
                    format!("'{url}' must start with https:// (or http://), e.g. https://es.example.com:9200"),
                ));
            }
        }
        if let Some(name) = &out.token_env {
            let ok = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !ok {
                return Err(t.error(
                    "token_env",
                    "must be the NAME of an environment variable (letters, digits, '_'), never the token itself",
                ));
            }
        }
        t.finish()?;
        present.then_some(out)
    };
    let integrity = {
        let i = s.section("integrity")?;
        let out = Integrity {
            enabled: i.bool("enabled")?.unwrap_or(true),
            algorithm: i
                .choice("algorithm", HashAlgorithm::OPTIONS)?
                .unwrap_or(HashAlgorithm::Sha256),
        };
        if !out.enabled {
            return Err(i.error(
                "enabled",
                "'false' is not supported: the ledger on refs/chant/audit is always hash-chained; remove the key",
            ));
        }
        i.finish()?;
        out
    };
    let out = AuditConfig {
        enabled: s.bool("enabled")?.unwrap_or(true),
        file: s
            .string("file")?
            .map_or_else(|| PathBuf::from(".chant/audit/audit.log"), PathBuf::from),
        format: s
            .choice("format", AuditFormat::OPTIONS)?
            .unwrap_or(AuditFormat::Jsonl),
        rotate: s
            .choice("rotate", Rotate::OPTIONS)?
            .unwrap_or(Rotate::Daily),
        retain: s
            .parse("retain", Span::parse)?
            .unwrap_or_else(|| span("90d")),
        ship_to,
        integrity,
        sign: s
            .choice("sign", SignMode::OPTIONS)?
            .unwrap_or(SignMode::Auto),
    };
    s.finish()?;
    Ok(out)
}

/// Splits a one-line command into argv, honouring single and double quotes.
pub fn split_command_line(line: &str) -> Result<Vec<String>, String> {
    let mut argv = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => current.push(ch),
                        None => return Err(format!("'{line}' has an unclosed single quote")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(ch) => current.push(ch),
                            None => return Err(format!("'{line}' ends with a backslash")),
                        },
                        Some(ch) => current.push(ch),
                        None => return Err(format!("'{line}' has an unclosed double quote")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(ch) => current.push(ch),
                    None => return Err(format!("'{line}' ends with a backslash")),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    argv.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                current.push(c);
            }
        }
    }
    if in_word {
        argv.push(current);
    }
    Ok(argv)
}

fn dns_label(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !text.starts_with('-')
        && !text.ends_with('-');
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!(
            "'{text}' is not a Kubernetes name (lowercase letters, digits and '-', at most 63)"
        ))
    }
}

// Built-in defaults are literals known to parse; a failure is a bug in this file, caught
// by `Config::defaults()` in the tests.
fn span(text: &str) -> Span {
    Span::parse(text).unwrap_or_else(|e| panic!("built-in default: {e}"))
}

fn size(text: &str) -> ByteSize {
    ByteSize::parse(text).unwrap_or_else(|e| panic!("built-in default: {e}"))
}

fn cpu(text: &str) -> Cpu {
    Cpu::parse(text).unwrap_or_else(|e| panic!("built-in default: {e}"))
}
