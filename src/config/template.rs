//! The `.chant/config.md` that `git chant init` writes for each tier: the tier's settings
//! active, every other section present as a commented example.

use super::Tier;

/// The file text for `tier`.
pub fn config_for(tier: Tier) -> String {
    let active = match tier {
        Tier::Solo => SOLO,
        Tier::Team => TEAM,
        Tier::Scale => SCALE,
    };
    format!("---\n{active}{EXAMPLES}---\n\n# Chant configuration ({tier} tier)\n\n{PROSE}")
}

const SOLO: &str = "\
agent:
  sandbox: permissions          # none | permissions | docker | vm | kubernetes
  timeout: 2h
  secrets:
    expose: [AGENT_API_KEY]
    hide: [DATABASE_URL, \"AWS_*\", GITHUB_TOKEN]
audit:
  enabled: true
  sign: auto                    # auto | always | never
";

const TEAM: &str = "\
agent:
  sandbox: docker
  timeout: 2h
  secrets:
    expose: [AGENT_API_KEY]
    hide: [DATABASE_URL, \"AWS_*\", GITHUB_TOKEN]
audit:
  enabled: true
  sign: auto
protection:
  branches: [main]
  require_approval: true
  require_signed_audit: false
";

const SCALE: &str = "\
agent:
  sandbox: kubernetes
  timeout: 2h
  secrets:
    expose: [AGENT_API_KEY]
    hide: [DATABASE_URL, \"AWS_*\", GITHUB_TOKEN]
  kubernetes:
    namespace: default
    service_account: chant-worker
    secret: chant-secrets
    network_policy: true
    # Required at this level (docs/kubernetes.md):
    # image: registry.example.com/chant-worker:1   # sh, git and the agent; runs as uid 1000
    # repo_url: https://git.example.com/project.git
audit:
  enabled: true
  sign: auto
protection:
  branches: [main]
  require_approval: true
  require_signed_audit: true
";

const EXAMPLES: &str = "\
# --- Examples: uncomment and merge into the sections above. Every key is optional. ---
# agent:
#   command: [claude, -p, \"{prompt}\"]   # argv; {prompt} {prompt_file} {spec_id} {workspace}
#   kind: claude                     # claude | codex | gemini | aider | opencode | custom (default: from command)
#   # Each agent gets its own variables from your environment, .env or --secrets-from when
#   # set, masked; no expose entry needed, secrets.hide still wins (docs/agents.md):
#   #   claude:   ANTHROPIC_API_KEY / ANTHROPIC_AUTH_TOKEN / ANTHROPIC_BASE_URL (+ Bedrock/Vertex)
#   #   codex:    OPENAI_API_KEY / OPENAI_BASE_URL / CODEX_API_KEY / OPENAI_ORGANIZATION / OPENAI_PROJECT
#   #             ([codex, exec, \"{prompt}\"])
#   #   opencode: OPENAI_API_KEY / OPENAI_BASE_URL ([opencode, run, -m, openai/MODEL, \"{prompt}\"])
#   #   gemini:   GEMINI_API_KEY / GOOGLE_API_KEY / GOOGLE_GEMINI_BASE_URL
#   #   aider:    OPENAI_API_KEY / OPENAI_BASE_URL, ANTHROPIC_API_KEY, GEMINI_API_KEY, …
#   # At docker and vm with the network on, the adapter's API key is injected: the agent
#   # holds a placeholder, chant's proxy puts the key in toward its API host only
#   # (secrets.inject_agent_keys: false turns that off).
#   permissions:
#     allow_edit: [src/**, tests/**]
#     deny_edit: [.env, \"*.key\", credentials/**]
#     allow_bash: [npm test, go test, cargo test]
#     deny_bash: [rm -rf, curl, wget]
#     allow_network: false
#   docker:
#     image: chant-agent:latest
#     network: none
#     read_only: true
#     volumes: [\"${CLONE_PATH}:/workspace\"]
#     memory: 2G
#     cpu: 1
#   vm:
#     provider: qemu                 # qemu | firecracker | virtualbox
#     memory: 2G
#     cpu: 1
#     network: isolated              # isolated | allowlist
#     snapshot: clean
#     accel: auto                    # auto | kvm | tcg
#   file_access:
#     allowed_paths: [src/, tests/, docs/]
#     denied_paths: [\".env*\", \"*.key\", \"*.pem\", credentials/, secrets/, .git/config]
#     sensitive_patterns: [password, api_key, secret]
#   network:
#     enabled: true
#     allowed_hosts: [api.provider.com, registry.npmjs.org]
#     denied_hosts: [\"*\"]
#   commands:
#     allowed: [npm test, cargo test, \"git *\"]
#     denied: [rm -rf, \"sudo *\", \"curl *\"]
#   secrets:
#     inject:                        # the agent holds a placeholder, the proxy the value
#       NPM_TOKEN: [registry.npmjs.org]
#     inject_agent_keys: true        # the agent's own API key too (docker, vm; the default)
# audit:
#   file: .chant/audit/audit.log
#   format: jsonl                    # jsonl | json | text
#   rotate: daily                    # daily | never
#   retain: 90d
#   ship_to:
#     type: s3                       # s3 | gcs | elasticsearch | splunk
#     bucket: company-audit-logs
#     prefix: chant/
# security:
#   sensitive_patterns: [\"*.env\", \"*credentials*\", \"*secret*\", \"*.pem\", \"*.key\"]
# work:
#   base: main
#   validate: [cargo test]
# protection:
#   agents: [\"agent-*\", \"ci-bot\"]
#   required_checks: [ci]
";

const PROSE: &str = "\
This file configures git-chant. The YAML between the `---` lines above is the
configuration; this prose is free text for your team.

- Change a value: `git chant config set agent.sandbox docker`
- Read a value: `git chant config get agent.sandbox`
- Every key, its default and what it does: docs/config.md in the git-chant sources.
";
