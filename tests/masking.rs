//! What chant prints about a run masks secret values and only secret values: file names in
//! notices and policy lines, errors, reasons; while ports, paths and plain words from the
//! environment that the agent never saw stay readable.

mod common;

use common::TestRepo;

const KEY: &str = "sk-mask-0123456789";
const DOTENV_VALUE: &str = "postgres://u:dotenv-pw@db/app";

fn run_probe() -> (TestRepo, common::Run) {
    let repo = TestRepo::initialised();
    repo.write(".env", &format!("DATABASE_URL={DOTENV_VALUE}\n"));
    repo.git(&["add", "-f", ".env"]);
    repo.use_agent(
        "mask-probe.sh",
        "  sandbox: none\n  secrets:\n    expose: [AGENT_API_KEY]\n  denied_paths: [\"*.key\"]\n",
        "",
    );
    let id = repo.add_spec("Probe the masking", &["x.txt"]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "spec"]);
    let run = common::Run(
        repo.chant_cmd(&["work", &id])
            .env("AGENT_API_KEY", KEY)
            // Not exposed, not from a secrets file: configuration, not secrets.
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("HTTP_PORT", "8080")
            .env("PROJECT_DIR", "/srv/app")
            .output()
            .expect("run"),
    )
    .assert_code(1);
    (repo, run)
}

#[test]
fn notices_policy_lines_and_the_reason_never_show_the_exposed_key() {
    let (repo, run) = run_probe();
    let all = format!("{}{}", run.stdout(), run.stderr());
    assert!(!all.contains(KEY), "the key leaked:\n{all}");
    assert!(
        all.contains("notice-***.sh"),
        "the notice names the file, masked:\n{all}"
    );
    assert!(
        all.contains("policy violation: denied-***.key"),
        "the policy line names the file, masked:\n{all}"
    );
    let log = std::fs::read_dir(repo.root.join(".git/chant/logs"))
        .expect("logs")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .collect::<String>();
    assert!(!log.contains(KEY) && !log.contains(DOTENV_VALUE), "{log}");
    assert!(!repo.ledger().iter().any(|e| e.to_string().contains(KEY)));
}

#[test]
fn values_from_dotenv_are_masked_even_when_not_exposed() {
    let (_repo, run) = run_probe();
    assert!(
        run.stdout().contains("DATABASE_URL=***"),
        "{}",
        run.stdout()
    );
    assert!(!run.stdout().contains("dotenv-pw"));
}

#[test]
fn environment_values_the_agent_never_saw_stay_readable() {
    let (_repo, run) = run_probe();
    assert!(
        run.stdout().contains("plain: noninteractive 8080 /srv/app"),
        "plain words, ports and paths are not secrets:\n{}",
        run.stdout()
    );
}

#[test]
fn the_key_printed_base64_or_hex_encoded_is_masked_too() {
    use base64::Engine;
    let (_repo, run) = run_probe();
    let out = run.stdout();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut forms = vec![hex::encode(KEY)];
    for prefix in ["", "x", "xy"] {
        let encoded = b64.encode(format!("{prefix}{KEY}"));
        // The characters that depend on the key alone (the edges mix in neighbours).
        let start = (prefix.len() * 8).div_ceil(6);
        let end = ((prefix.len() + KEY.len()) * 8) / 6;
        forms.push(encoded[start..end].to_string());
    }
    for form in &forms {
        assert!(!out.contains(form.as_str()), "{form} leaked:\n{out}");
    }
    assert!(out.contains("b64: ") && out.contains("***"), "{out}");
}

const BASE_URL: &str = "http://127.0.0.1:9/anthropic";
const MODEL: &str = "claude-settings-model-7";
const API_KEY: &str = "sk-ant-settings-0123456789";

/// Runs settings-write.sh as Claude Code at level none with the API's variables set
/// (`base_url` as ANTHROPIC_BASE_URL), `args` after the script.
fn settings_run(base_url: &str, args: &[&str]) -> (TestRepo, String, common::Run) {
    let repo = TestRepo::initialised();
    let script = common::crate_path("fixtures/agents/settings-write.sh");
    let mut command = vec![format!("{:?}", script.display().to_string())];
    command.extend(args.iter().map(|a| format!("{a:?}")));
    repo.write_config(&format!(
        "agent:\n  kind: claude\n  sandbox: none\n  command: [{}]\n",
        command.join(", ")
    ));
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "chant config"]);
    let id = repo.add_spec("Write the client config", &["settings.txt"]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "spec"]);
    let run = common::Run(
        repo.chant_cmd(&["work", &id])
            .env("ANTHROPIC_API_KEY", API_KEY)
            .env("ANTHROPIC_BASE_URL", base_url)
            .env("ANTHROPIC_MODEL", MODEL)
            .output()
            .expect("run"),
    );
    (repo, id, run)
}

#[test]
fn an_agent_writing_its_base_url_and_model_name_lands_and_both_stay_masked_in_output() {
    let (repo, id, run) = settings_run(BASE_URL, &[]);
    let run = run.assert_ok();
    let landed = repo.git(&["show", &format!("chant/{id}:settings.txt")]);
    assert_eq!(landed, format!("base_url={BASE_URL}\nmodel={MODEL}\n"));
    let printed = format!("{}{}", run.stdout(), run.stderr());
    assert!(
        printed.contains("settings-write: base *** model ***"),
        "{printed}"
    );
    assert!(
        !printed.contains(MODEL) && !printed.contains(BASE_URL),
        "{printed}"
    );
    assert!(repo.events("policy_violation").is_empty());
}

#[test]
fn an_agent_writing_its_api_key_or_a_base_url_carrying_credentials_fails_as_a_leak() {
    let (repo, id, run) = settings_run(BASE_URL, &["with-key"]);
    run.assert_code(1);
    let violations = repo.events("policy_violation");
    assert!(!violations.is_empty(), "the key landed");
    assert!(!repo
        .ledger()
        .iter()
        .any(|e| e.to_string().contains(API_KEY)));
    let landed = repo.git_in(
        &repo.root,
        &[],
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("chant/{id}:settings.txt"),
        ],
    );
    assert_ne!(landed.code(), 0, "the key landed");
    for with_credentials in [
        "http://user:pw-settings-secret@127.0.0.1:9/",
        "http://127.0.0.1:9/v1?api_key=settings-query-secret",
    ] {
        let (repo, _id, run) = settings_run(with_credentials, &[]);
        run.assert_code(1);
        assert!(
            !repo.events("policy_violation").is_empty(),
            "{with_credentials} landed"
        );
    }
}
