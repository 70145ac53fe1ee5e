//! `git chant doctor`: which sandbox levels can run here, and the fix for each that cannot.
//!
//! Each level answers for itself (`Sandbox::checkup`, `Sandbox::egress_route`); this file
//! walks `sandbox::levels()` and prints, and never matches on a level.

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::{Config, SandboxLevel};
use crate::error::Result;
use crate::project::Project;
use crate::sandbox::{self, EgressRoute, Sandbox};

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
    let template = config.agent_command();
    let mut usable = Vec::new();
    let mut configured = None;
    for level in sandbox::levels() {
        let sandbox = match sandbox::for_level(level, &config) {
            Ok(sandbox) => sandbox,
            Err(e) => {
                outln!("{:<12} missing  {e}", level.as_str());
                continue;
            }
        };
        let checkup = sandbox.checkup(&template, project.root());
        for (i, check) in checkup.lines.iter().enumerate() {
            let label = if i == 0 { level.as_str() } else { "" };
            outln!("{label:<12} {:<8} {}", check.status, check.text);
        }
        if checkup.usable {
            usable.push(level);
        }
        if level == config.agent.sandbox {
            configured = Some(sandbox);
        }
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
    report_inject(&config, configured.as_deref(), project.root())?;
    report_configured(&config, &usable)
}

/// What `agent.network` gives the agent here.
fn report_network(config: &Config) -> Result<()> {
    let network = &config.agent.network;
    let notes = sandbox::network_notes(config);
    if !network.enabled {
        let levels: Vec<&str> = notes.iter().map(|(level, _)| level.as_str()).collect();
        outln!(
            "{:<12} off      levels {} have no network (agent.network.enabled: false)",
            "network",
            levels.join(" and ")
        );
        return Ok(());
    }
    let allowed = network.allowed_hosts.0.patterns().len();
    let notes: Vec<String> = notes
        .iter()
        .map(|(level, note)| format!("; {level}: {note}"))
        .collect();
    outln!(
        "{:<12} on       {allowed} allowed_hosts entr{}, through chant's egress proxy{}",
        "network",
        if allowed == 1 { "y" } else { "ies" },
        notes.concat()
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
/// names go to which hosts, and what is missing; `configured` is the level of
/// `agent.sandbox`, when it can be set up here.
fn report_inject(config: &Config, configured: Option<&dyn Sandbox>, root: &Path) -> Result<()> {
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
    if let Some(EgressRoute::Unreachable { short, .. }) = configured.map(|s| s.egress_route()) {
        problems.push(short.to_string());
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
