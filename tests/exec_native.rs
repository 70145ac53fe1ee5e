//! The Claude Code permission settings generated for sandbox level `permissions`.

use git_chant::config::Config;
use git_chant::exec::native::ClaudePermissions;

const CONFIG: &str = r#"
agent:
  permissions:
    allow_edit: [src/**, tests/]
    deny_edit: [.env, "*.key", credentials/**]
    allow_bash: [npm test, go test]
    deny_bash: [rm -rf, curl, wget]
    allow_network: false
  file_access:
    denied_paths: [".env*", secrets/]
  commands:
    allowed: [npm run, "git *"]
    denied: ["* > /dev/*", "sudo *"]
"#;

#[test]
fn seed_permissions_map_to_claude_rules() {
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(CONFIG).expect("yaml");
    let config = Config::from_yaml("config.md", &yaml).expect("config");
    let p = ClaudePermissions::from_config(&config.agent);
    assert_eq!(
        p.allow,
        [
            "Bash(npm test:*)",
            "Bash(go test:*)",
            "Bash(npm run:*)",
            "Bash(git:*)",
            "Edit(/src/**)",
            "Edit(/tests)",
            "Edit(/tests/**)",
        ]
    );
    assert_eq!(
        p.deny,
        [
            "Bash(rm -rf:*)",
            "Bash(curl:*)",
            "Bash(wget:*)",
            "Bash(* > /dev/*)",
            "Bash(sudo:*)",
            "Edit(**/.env)",
            "Edit(**/*.key)",
            "Edit(/credentials/**)",
            "Read(**/.env*)",
            "Read(**/secrets)",
            "Read(**/secrets/**)",
            "Edit(**/.env*)",
            "Edit(**/secrets)",
            "Edit(**/secrets/**)",
            "WebFetch",
            "WebSearch",
        ]
    );
    assert!(p.unmapped.is_empty());
    let json = p.to_settings_json();
    assert_eq!(json["permissions"]["allow"][0], "Bash(npm test:*)");
    assert_eq!(
        json["permissions"]["deny"].as_array().map(Vec::len),
        Some(16)
    );
}

#[test]
fn network_allowed_leaves_web_tools_alone() {
    let yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str("agent:\n  permissions:\n    allow_network: true\n").expect("yaml");
    let config = Config::from_yaml("config.md", &yaml).expect("config");
    let p = ClaudePermissions::from_config(&config.agent);
    assert!(!p.deny.iter().any(|r| r.starts_with("Web")));
}

#[test]
fn network_allowlist_becomes_fetch_rules() {
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        "agent:\n  network:\n    enabled: true\n    allowed_hosts: [api.anthropic.com, 'registry.npmjs.org:443', '*.pypi.org']\n    denied_hosts: ['*', evil.pypi.org]\n",
    )
    .expect("yaml");
    let config = Config::from_yaml("config.md", &yaml).expect("config");
    let p = ClaudePermissions::from_config(&config.agent);
    for rule in [
        "WebFetch(domain:api.anthropic.com)",
        "WebFetch(domain:registry.npmjs.org)",
        "WebFetch(domain:*.pypi.org)",
    ] {
        assert!(p.allow.iter().any(|r| r == rule), "{rule} in {:?}", p.allow);
    }
    assert!(p.deny.iter().any(|r| r == "WebFetch(domain:evil.pypi.org)"));
    assert!(!p
        .deny
        .iter()
        .any(|r| r == "WebFetch" || r.contains("domain:*)")));
}
