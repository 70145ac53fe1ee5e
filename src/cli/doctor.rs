//! `git chant doctor`: which sandbox levels can run here, and the fix for each that cannot.

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::{Config, SandboxLevel};
use crate::error::Result;
use crate::project::Project;
use crate::sandbox::{docker, process};

/// Check which sandbox levels are usable on this machine
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  git chant doctor          check every level against this repository's config

Exits 0 when the configured level (agent.sandbox) is usable, 1 when it is not.")]
pub struct Args {}

pub fn run(_args: Args) -> Result<u8> {
    let project = Project::discover()?;
    let config = project.config()?;
    let argv = config.agent_command();
    let program = argv.first().cloned().unwrap_or_default();
    let mut usable = Vec::new();

    let local = check_program(&program, project.root());
    for level in [SandboxLevel::None, SandboxLevel::Permissions] {
        match &local {
            Ok(path) => {
                outln!(
                    "{:<12} ok       agent program {program} at {path}",
                    level.as_str()
                );
                usable.push(level);
            }
            Err(fix) => outln!("{:<12} missing  {fix}", level.as_str()),
        }
    }

    let probe = docker::probe(&config.agent.docker.image);
    match (&probe.engine, &probe.image) {
        (Err(e), _) => outln!("{:<12} missing  {e}", "docker"),
        (Ok(()), Some(Err(e))) => outln!(
            "{:<12} missing  engine {} answers, but {e}",
            "docker",
            probe.host
        ),
        (Ok(()), _) => {
            outln!(
                "{:<12} ok       engine {} (Docker {}), image {}; agent program {program} must be in the image",
                "docker",
                probe.host,
                probe.version.as_deref().unwrap_or("?"),
                config.agent.docker.image
            );
            usable.push(SandboxLevel::Docker);
        }
    }
    if let Err(e) = docker::Docker::new(&config) {
        outln!("{:<12} refused  {e}", "");
        usable.retain(|l| *l != SandboxLevel::Docker);
    }
    let vm = crate::sandbox::for_level(SandboxLevel::Vm, &config)
        .and_then(|vm| vm.preflight(&config.agent_command()).map(|()| vm));
    match vm {
        Ok(_) => {
            outln!(
                "{:<12} ok       qemu, a kernel, busybox and the agent program {program} (in agent.vm.image or busybox) found",
                "vm"
            );
            usable.push(SandboxLevel::Vm);
        }
        Err(e) => outln!("{:<12} missing  {e}", "vm"),
    }
    let k = &config.agent.kubernetes;
    match crate::sandbox::kubernetes::Kubernetes::new(&config) {
        Err(e) => outln!("{:<12} missing  {e}", "kubernetes"),
        Ok(_) => match crate::sandbox::kubernetes::probe(&k.namespace) {
            Ok((server, context)) => {
                outln!(
                    "{:<12} ok       API server {server} (context {}), namespace {} answers; image {}",
                    "kubernetes",
                    context.as_deref().unwrap_or("in-cluster"),
                    k.namespace,
                    k.image.as_deref().unwrap_or("?")
                );
                usable.push(SandboxLevel::Kubernetes);
            }
            Err(e) => outln!("{:<12} missing  {e}", "kubernetes"),
        },
    }
    report_network(&config)?;
    match project.clones_dir() {
        Ok(dir) => outln!(
            "{:<12} ok       sandboxed clones go under {}",
            "clones",
            dir.display()
        ),
        Err(e) => outln!("{:<12} missing  {e}", "clones"),
    }
    let legacy = project.legacy_clones_dir();
    if legacy.is_dir() {
        outln!(
            "{:<12} note     clones kept by earlier versions are in {} (remove them when done)",
            "",
            legacy.display()
        );
    }
    report_inject(&config, project.root())?;
    report_configured(&config, &usable)
}

/// What `agent.network` gives the agent here.
fn report_network(config: &Config) -> Result<()> {
    let network = &config.agent.network;
    if !network.enabled {
        outln!(
            "{:<12} off      levels docker and vm have no network (agent.network.enabled: false)",
            "network"
        );
        return Ok(());
    }
    let allowed = network.allowed_hosts.0.patterns().len();
    let ldd = process::find_program("ldd", &std::env::var("PATH").unwrap_or_default());
    outln!(
        "{:<12} on       {allowed} allowed_hosts entr{}, through chant's egress proxy; docker: {}; vm: {}",
        "network",
        if allowed == 1 { "y" } else { "ies" },
        if ldd.is_some() {
            "relay ready (ldd found)"
        } else {
            "no ldd on PATH, the relay cannot be set up (install libc-bin)"
        },
        match config.agent.vm.network {
            crate::config::VmNetwork::Allowlist => "agent.vm.network: allowlist",
            crate::config::VmNetwork::Isolated =>
                "agent.vm.network is isolated: set it to allowlist to use the vm level",
        }
    );
    Ok(())
}

/// What the agent adapter's API keys get at the configured level: injected by default
/// (returned, name → hosts), or handed over, and why.
fn agent_keys(config: &Config, root: &Path) -> Result<BTreeMap<String, crate::config::HostList>> {
    let agent = crate::agent::for_config(config);
    let Ok(secrets) = crate::secrets::collect(&[], root) else {
        return Ok(BTreeMap::new());
    };
    let keys = agent.api_keys(&secrets);
    let set: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| secrets.get(k).is_some())
        .collect();
    if set.is_empty() {
        return Ok(BTreeMap::new());
    }
    let level = config.agent.sandbox;
    let only_way_out = config.agent.network.enabled
        && crate::sandbox::for_level(level, config).is_ok_and(|s| s.cuts_network());
    let defaults = crate::agent::keys::default_injection(
        &config.agent.secrets,
        agent.as_ref(),
        &secrets,
        only_way_out,
    );
    let passed: Vec<&str> = set
        .iter()
        .copied()
        .filter(|k| !defaults.contains_key(*k) && !config.agent.secrets.inject.contains_key(*k))
        .filter(|k| !config.agent.secrets.hide.0.is_match(k))
        .collect();
    if !passed.is_empty() {
        let why = if !config.agent.secrets.inject_agent_keys {
            "agent.secrets.inject_agent_keys is false".to_string()
        } else if !only_way_out {
            format!("injected by default only at docker and vm with agent.network.enabled; agent.sandbox is {level}")
        } else {
            "agent.secrets.expose names it".to_string()
        };
        outln!(
            "{:<12} passed   the {} adapter's key {} reaches the agent as its value ({why})",
            "agent keys",
            agent.kind(),
            passed.join(", ")
        );
    }
    Ok(defaults)
}

/// What `agent.secrets.inject` gives (with the adapter's keys injected by default): which
/// names go to which hosts, and what is missing.
fn report_inject(config: &Config, root: &Path) -> Result<()> {
    let defaults = agent_keys(config, root)?;
    let mut inject = config.agent.secrets.inject.clone();
    inject.extend(defaults.clone());
    if inject.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = inject
        .iter()
        .map(|(name, hosts)| {
            let hosts: Vec<&str> = hosts.0.patterns().iter().map(|p| p.as_str()).collect();
            let by_default = if defaults.contains_key(name) {
                " (the agent's key, by default)"
            } else {
                ""
            };
            format!("{name} → {}{by_default}", hosts.join(", "))
        })
        .collect();
    let mut problems = Vec::new();
    if !config.agent.network.enabled {
        problems.push("agent.network.enabled is false, so nothing can use them".to_string());
    }
    if config.agent.sandbox == SandboxLevel::Kubernetes {
        problems.push("not available at the kubernetes level yet".to_string());
    }
    if let Some(ca) = &config.agent.network.upstream_ca {
        if !root.join(ca).is_file() {
            problems.push(format!(
                "agent.network.upstream_ca {} is not a file",
                ca.display()
            ));
        }
    }
    let state = if problems.is_empty() {
        "on"
    } else {
        "NOT ready"
    };
    outln!(
        "{:<12} {state:<8} the agent holds placeholders, chant's proxy puts the values in: {}{}",
        "inject",
        names.join("; "),
        if problems.is_empty() {
            String::new()
        } else {
            format!(" ({})", problems.join("; "))
        }
    );
    Ok(())
}

fn report_configured(config: &Config, usable: &[SandboxLevel]) -> Result<u8> {
    let level = config.agent.sandbox;
    if usable.contains(&level) {
        outln!("\nagent.sandbox is {level}: usable");
        Ok(0)
    } else {
        outln!("\nagent.sandbox is {level}: NOT usable here (see above)");
        Ok(1)
    }
}

/// The agent program on this machine's PATH, or the fix when it is missing.
fn check_program(program: &str, root: &Path) -> std::result::Result<String, String> {
    let resolved = if program.contains('/') && !program.starts_with('/') {
        root.join(program).to_string_lossy().into_owned()
    } else {
        program.to_string()
    };
    let path = std::env::var("PATH").unwrap_or_default();
    match process::find_program(&resolved, &path) {
        Some(p) => Ok(p.display().to_string()),
        None => Err(format!(
            "agent program '{program}' not found on PATH; install it or set agent.command"
        )),
    }
}
