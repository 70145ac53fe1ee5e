//! `.chant/config.md`: every seed example loads, bad values exit 2 naming file/key/value,
//! `config get`/`set` work and keep the prose.

mod common;

use common::{crate_path, TestRepo};

/// Loads one seed example as the repository's config and reads `key` back.
fn load_and_get(yaml: &str, key: &str) -> String {
    let repo = TestRepo::initialised();
    repo.write_config(yaml);
    repo.chant(&["config", "get", key]).assert_ok().stdout()
}

fn seed(name: &str) -> String {
    std::fs::read_to_string(crate_path(&format!("fixtures/seed-config/{name}.yaml")))
        .expect("fixture")
}

#[test]
fn seed_solo_agent_paths() {
    let out = load_and_get(&seed("00-solo-agent-paths"), "agent.denied_paths");
    assert_eq!(out, "- .env\n- credentials/\n");
}

#[test]
fn seed_kubernetes_resources() {
    let out = load_and_get(
        &seed("03-kubernetes-resources"),
        "agent.kubernetes.resources.requests.cpu",
    );
    assert_eq!(out.trim(), "250m");
}

#[test]
fn seed_level_none() {
    assert_eq!(
        load_and_get(&seed("05-level-none"), "agent.sandbox").trim(),
        "none"
    );
}

#[test]
fn seed_level_permissions_with_unquoted_star_globs() {
    let out = load_and_get(&seed("06-level-permissions"), "agent.permissions.deny_edit");
    assert_eq!(out, "- .env\n- '*.key'\n- credentials/**\n");
}

#[test]
fn seed_level_docker() {
    let yaml = seed("07-level-docker");
    assert_eq!(load_and_get(&yaml, "agent.docker.memory").trim(), "2G");
    assert_eq!(
        load_and_get(&yaml, "agent.docker.volumes").trim(),
        "- ${CLONE_PATH}:/workspace"
    );
}

#[test]
fn seed_level_vm() {
    assert_eq!(
        load_and_get(&seed("08-level-vm"), "agent.vm.provider").trim(),
        "firecracker"
    );
}

#[test]
fn seed_file_access() {
    let out = load_and_get(&seed("09-file-access"), "agent.file_access.denied_paths");
    assert!(
        out.contains("'*.pem'") && out.contains(".git/config"),
        "{out}"
    );
}

#[test]
fn seed_network_disabled() {
    assert_eq!(
        load_and_get(&seed("10-network-disabled"), "agent.network.enabled").trim(),
        "false"
    );
}

#[test]
fn seed_network_allowlist() {
    let yaml = seed("10-network-allowlist");
    assert_eq!(
        load_and_get(&yaml, "agent.network.allowed_hosts.2").trim(),
        "github.com"
    );
    assert_eq!(
        load_and_get(&yaml, "agent.network.denied_hosts").trim(),
        "- '*'"
    );
}

#[test]
fn seed_commands() {
    let out = load_and_get(&seed("11-commands"), "agent.commands.denied");
    assert!(
        out.contains("'* > /dev/*'") && out.contains("chmod 777"),
        "{out}"
    );
}

#[test]
fn seed_secrets() {
    assert_eq!(
        load_and_get(&seed("12-secrets"), "agent.secrets.hide.1").trim(),
        "AWS_*"
    );
}

#[test]
fn seed_audit_storage() {
    let yaml = seed("13-audit-storage");
    assert_eq!(
        load_and_get(&yaml, "audit.ship_to.bucket").trim(),
        "company-audit-logs"
    );
    assert_eq!(load_and_get(&yaml, "audit.retain").trim(), "90d");
}

#[test]
fn seed_audit_integrity() {
    assert_eq!(
        load_and_get(&seed("14-audit-integrity"), "audit.integrity.algorithm").trim(),
        "sha256"
    );
}

#[test]
fn seed_sensitive_files() {
    assert_eq!(
        load_and_get(&seed("15-sensitive-files"), "security.sensitive_patterns.0").trim(),
        "*.env"
    );
}

/// The fixtures are verbatim copies of the seed's blocks; when the seed is beside the
/// checkout (as in CI), check they have not drifted.
#[test]
fn fixtures_match_the_seed_when_present() {
    let Ok(seed_text) = std::fs::read_to_string(crate_path("../shared/seed/security.md")) else {
        eprintln!("NOTE: ../shared/seed/security.md not found; fixture drift not checked");
        return;
    };
    for name in [
        "00-solo-agent-paths",
        "05-level-none",
        "06-level-permissions",
        "07-level-docker",
        "08-level-vm",
        "09-file-access",
        "11-commands",
        "12-secrets",
        "13-audit-storage",
        "14-audit-integrity",
        "15-sensitive-files",
    ] {
        let block = seed(name);
        assert!(
            seed_text.contains(&block),
            "fixture {name} is not a verbatim block of the seed"
        );
    }
}

/// Bad configuration: exit 2, and the message names file, key path, value and what is allowed.
#[test]
fn bad_values_name_file_key_value_and_choices() {
    let cases: &[(&str, &str)] = &[
        ("agent:\n  sandbox: sideways\n", ".chant/config.md: agent.sandbox: 'sideways' is not one of none, permissions, docker, vm"),
        ("agent:\n  docker:\n    memory: lots\n", ".chant/config.md: agent.docker.memory: 'lots' is not a size"),
        ("agent:\n  timeout: soon\n", ".chant/config.md: agent.timeout: 'soon' is not a duration"),
        ("audit:\n  retain: forever\n", ".chant/config.md: audit.retain: 'forever' is not a duration"),
        ("agent:\n  sandbx: none\n", ".chant/config.md: agent.sandbx: unknown key; did you mean 'agent.sandbox'?"),
        ("agentt:\n  sandbox: none\n", ".chant/config.md: agentt: unknown key; did you mean 'agent'?"),
        ("agent:\n  network:\n    allowed_hosts: [\"https://x.com\"]\n", ".chant/config.md: agent.network.allowed_hosts: 'https://x.com' is a URL"),
        ("agent:\n  file_access:\n    denied_paths: [\"a/[b\"]\n", ".chant/config.md: agent.file_access.denied_paths: 'a/[b' is not a valid glob"),
        ("agent:\n  vm:\n    cpu: 0\n", ".chant/config.md: agent.vm.cpu: '0' is not a whole number"),
        ("audit:\n  ship_to:\n    type: s3\n", ".chant/config.md: audit.ship_to.bucket: is required when type is s3"),
        ("audit:\n  ship_to:\n    type: splunk\n    url: https://hec.example.com:8088\n", ".chant/config.md: audit.ship_to.token_env: is required when type is splunk"),
        ("audit:\n  ship_to:\n    type: elasticsearch\n    url: es.example.com\n", ".chant/config.md: audit.ship_to.url: 'es.example.com' must start with https://"),
        ("audit:\n  ship_to:\n    type: elasticsearch\n    url: https://es\n    token_env: \"abc def\"\n", ".chant/config.md: audit.ship_to.token_env: must be the NAME of an environment variable"),
        ("audit:\n  sign: sometimes\n", "audit.sign: 'sometimes' is not one of auto, always, never"),
        ("agent:\n  allowed_paths: src/\n", "agent.allowed_paths: expected a list"),
        ("agent: [1, 2]\n", "agent: expected a mapping of keys"),
        ("agent:\n  sandbox: [none\n", ".chant/config.md: line 4: YAML error"),
        ("defaults:\n  main_branch: \"bad..name\"\n", "defaults.main_branch: 'bad..name' is not a valid git branch name"),
    ];
    for (yaml, want) in cases {
        let repo = TestRepo::initialised();
        repo.write_config(yaml);
        repo.chant(&["config", "get", "agent.sandbox"])
            .assert_code(2)
            .stderr_has(want);
    }
}

#[test]
fn unclosed_front_matter_is_an_error() {
    let repo = TestRepo::initialised();
    repo.write(".chant/config.md", "---\nagent:\n  sandbox: none\n");
    repo.chant(&["list"]).assert_ok();
    repo.chant(&["config", "get", "agent.sandbox"])
        .assert_code(2)
        .stderr_has("never closed");
}

#[test]
fn chant_configs_load_and_keep_their_keys() {
    let repo = TestRepo::initialised();
    repo.write_config(
        "project:\n  name: chant\ndefaults:\n  prompt: standard\n  branch: false\n  model: haiku\n  main_branch: trunk\nparallel:\n  agents:\n    - name: main\n      command: my-agent\nsilent: true\n",
    );
    assert_eq!(
        repo.chant(&["config", "get", "project.name"])
            .assert_ok()
            .stdout()
            .trim(),
        "chant"
    );
    assert_eq!(
        repo.chant(&["config", "get", "defaults.model"])
            .assert_ok()
            .stdout()
            .trim(),
        "haiku"
    );
    assert_eq!(
        repo.chant(&["config", "get", "silent"])
            .assert_ok()
            .stdout()
            .trim(),
        "true"
    );
}

#[test]
fn get_defaults_and_unknown_keys() {
    let repo = TestRepo::initialised();
    assert_eq!(
        repo.chant(&["config", "get", "agent.docker.read_only"])
            .assert_ok()
            .stdout()
            .trim(),
        "true"
    );
    assert_eq!(
        repo.chant(&["config", "get", "agent.network.enabled"])
            .assert_ok()
            .stdout()
            .trim(),
        "false"
    );
    assert_eq!(
        repo.chant(&["config", "get", "audit.sign"])
            .assert_ok()
            .stdout()
            .trim(),
        "auto"
    );
    repo.chant(&["config", "get", "agent.sandbx"])
        .assert_code(2)
        .stderr_has("did you mean 'agent.sandbox'?");
}

#[test]
fn set_rewrites_only_the_key_and_keeps_prose() {
    let repo = TestRepo::initialised();
    repo.chant(&["config", "set", "agent.sandbox", "docker"])
        .assert_ok()
        .stdout_has("permissions -> docker");
    let text = repo.read(".chant/config.md");
    assert!(text.contains("  sandbox: docker"), "{text}");
    assert!(text.contains("# --- Examples"), "comments kept");
    assert!(text.contains("# Chant configuration"), "prose kept");
    assert_eq!(
        repo.chant(&["config", "get", "agent.sandbox"])
            .assert_ok()
            .stdout()
            .trim(),
        "docker"
    );
    repo.chant(&["config", "set", "agent.vm.memory", "4G"])
        .assert_ok();
    assert_eq!(
        repo.chant(&["config", "get", "agent.vm.memory"])
            .assert_ok()
            .stdout()
            .trim(),
        "4G"
    );
    repo.chant(&["config", "set", "agent.allowed_paths", "[src/, tests/]"])
        .assert_ok();
    assert_eq!(
        repo.chant(&["config", "get", "agent.allowed_paths.1"])
            .assert_ok()
            .stdout()
            .trim(),
        "tests/"
    );
}

#[test]
fn set_refuses_invalid_values_without_writing() {
    let repo = TestRepo::initialised();
    let before = repo.read(".chant/config.md");
    repo.chant(&["config", "set", "agent.sandbox", "sideways"])
        .assert_code(2)
        .stderr_has("agent.sandbox: 'sideways' is not one of none, permissions, docker, vm");
    repo.chant(&["config", "set", "agent.sandbx", "none"])
        .assert_code(2)
        .stderr_has("did you mean 'agent.sandbox'?");
    assert_eq!(before, repo.read(".chant/config.md"));
}

/// docs/config.md documents every key of the typed model (kept in step by this test).
#[test]
fn docs_cover_every_key() {
    let docs = std::fs::read_to_string(crate_path("docs/config.md")).expect("docs/config.md");
    let mut missing = Vec::new();
    for key in git_chant::config::key_paths() {
        if !docs.contains(&format!("`{key}`")) {
            missing.push(key);
        }
    }
    assert!(missing.is_empty(), "docs/config.md lacks: {missing:?}");
}

/// A pattern that cannot match is never silently ignored (an agent would pass for a person,
/// a branch would go unprotected): every pattern-list key refuses it when the config loads,
/// naming the key and the pattern.
#[test]
fn every_pattern_list_refuses_a_pattern_that_would_never_match() {
    let cases: &[(&str, &str)] = &[
        (
            "protection:\n  agents: [\"agent-*\", \"bot-[\"]\n",
            "protection.agents: 'bot-[' is not a valid glob",
        ),
        (
            "protection:\n  agents: [\"bot-{a\"]\n",
            "protection.agents: 'bot-{a' is not a valid glob",
        ),
        (
            "protection:\n  agents: [\"\"]\n",
            "protection.agents: '' is empty",
        ),
        (
            "protection:\n  agents: [\" agent-*\"]\n",
            "protection.agents: ' agent-*' has spaces around it",
        ),
        (
            "protection:\n  agents: [\"agent-* \"]\n",
            "protection.agents: 'agent-* ' has spaces around it",
        ),
        (
            "protection:\n  branches: [main, \"release/[0-9\"]\n",
            "protection.branches: 'release/[0-9' is not a valid glob",
        ),
        (
            "protection:\n  branches: [\"{main\"]\n",
            "protection.branches: '{main' is not a valid glob",
        ),
        (
            "protection:\n  branches: [\"\"]\n",
            "protection.branches: '' is empty",
        ),
        (
            "protection:\n  required_checks: [\"\"]\n",
            "protection.required_checks: '' is empty",
        ),
        (
            "agent:\n  permissions:\n    deny_bash: [\"\"]\n",
            "agent.permissions.deny_bash: '' is an empty command pattern",
        ),
        (
            "agent:\n  permissions:\n    allow_bash: [\" \"]\n",
            "agent.permissions.allow_bash: ' ' is an empty command pattern",
        ),
        (
            "agent:\n  commands:\n    denied: [\"\"]\n",
            "agent.commands.denied: '' is an empty command pattern",
        ),
        (
            "agent:\n  permissions:\n    deny_edit: [\"a/[b\"]\n",
            "agent.permissions.deny_edit: 'a/[b' is not a valid glob",
        ),
        (
            "agent:\n  denied_paths: [\"\"]\n",
            "agent.denied_paths: '' is empty",
        ),
        (
            "agent:\n  secrets:\n    hide: [\"AWS_[\"]\n",
            "agent.secrets.hide: 'AWS_['",
        ),
        (
            "agent:\n  network:\n    denied_hosts: [\"\"]\n",
            "agent.network.denied_hosts: '' is empty",
        ),
        (
            "security:\n  sensitive_patterns: [\"*.[pem\"]\n",
            "security.sensitive_patterns: '*.[pem' is not a valid glob",
        ),
    ];
    let repo = TestRepo::initialised();
    for (yaml, want) in cases {
        repo.write_config(yaml);
        repo.chant(&["config", "get", "protection.agents"])
            .assert_code(2)
            .stderr_has(&format!(".chant/config.md: {want}"));
    }
    repo.write_config(
        "protection:\n  agents: [\"agent-*\", ci-bot]\n  branches: [main, \"release/*\"]\n",
    );
    repo.chant(&["config", "get", "protection.agents"])
        .assert_ok()
        .stdout_has("agent-*");
}
