//! Level `kubernetes` end to end.
//!
//! No Kubernetes API server can be installed on these machines, so chant talks to a
//! PROTOCOL-LEVEL FAKE API SERVER written here (tests/kubernetes/fake/), on loopback,
//! reached through a kubeconfig the test writes (server http://127.0.0.1:PORT, a bearer
//! token the fake checks). It speaks what kube-rs sends — JSON bodies, `?watch=true&
//! resourceVersion=…` streams of newline-delimited watch events, `pods/NAME/log?follow=true`,
//! DELETE with a propagationPolicy — and records every request so the test asserts the
//! order. The fake drops the first watch after one event, so chant must resume it.
//!
//! The fake's "pod" is real: when chant starts the Job, the fake runs the Job's container
//! in Docker with exactly its image, command, environment (plus the Secret's data, as
//! `envFrom` gives it), user and read-only root, its emptyDirs as tmpfs, against a real bare
//! repository with chant's server hook installed (bind-mounted, reached by a `file://`
//! URL). The pod clones `chant/<id>`, runs the fixture agent and pushes to its incoming
//! ref; chant fetches it, judges it (step 8) and lands it on `chant/<id>`. Without an engine
//! these tests skip loudly, unless `CHANT_REQUIRE_DOCKER=1` makes them fail.

mod common;
#[path = "kubernetes/fake/mod.rs"]
mod fake;
#[path = "kubernetes/image.rs"]
mod image;

use std::path::PathBuf;

use common::TestRepo;

const TOKEN: &str = "chant-test-token-7f3a";
const SECRET: &str = "sk-k8s-test-4242";

struct Setup {
    repo: TestRepo,
    server: PathBuf,
    id: String,
    fake: fake::Fake,
    kubeconfig: PathBuf,
    env_file: PathBuf,
    image: String,
}

fn setup(image: &str, agent: &str, timeout: &str) -> Setup {
    setup_with(
        image,
        &format!("[\"/opt/chant/agents/{agent}\"]"),
        timeout,
        "",
        "",
    )
}

/// [`setup`] with `command` (a YAML flow list) as `agent.command`, `agent_extra` YAML lines
/// under `agent:` and `env_extra` lines in the run's dotenv secrets.
fn setup_with(
    image: &str,
    command: &str,
    timeout: &str,
    agent_extra: &str,
    env_extra: &str,
) -> Setup {
    let repo = TestRepo::initialised();
    // The bare repository is the pods' (uid 1000); the host's git (root here) may use it.
    std::fs::write(
        repo.home.join(".gitconfig"),
        "[safe]\n\tdirectory = *\n[protocol \"file\"]\n\tallow = always\n",
    )
    .expect("gitconfig");
    let server = repo.tmp.path().join("server.git");
    let dir = server.to_str().expect("utf8").to_string();
    repo.write_config(&format!(
        "agent:\n  sandbox: kubernetes\n  command: {command}\n  timeout: {timeout}\n{agent_extra}  secrets:\n    expose: [AGENT_API_KEY, CHANT_PUSHER, CLAUDE_CODE_MAX_RETRIES]\n  kubernetes:\n    namespace: chant\n    image: {image}\n    repo_url: file://{dir}\nprotection:\n  agents: [\"agent-*\"]\n"
    ));
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "chant config"]);
    let id = repo.add_spec("Greet the user", &["hello.txt"]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "spec"]);
    repo.git(&["init", "--quiet", "--bare", "--initial-branch=main", &dir]);
    repo.chant(&["hooks", "install", "--server", "--dir", &dir])
        .assert_ok();
    repo.git(&[
        "push",
        "--quiet",
        "--no-verify",
        &format!("file://{dir}"),
        "main",
    ]);
    // Two users write into it here (chant as root on the host, the pods as uid 1000), where
    // a real git server has one: directories either creates must stay writable for the
    // other, or a push fails whenever its objects fall in a fan-out directory the other made.
    repo.git(&["--git-dir", &dir, "config", "core.sharedRepository", "0777"]);
    // git in the pod (uid 1000, the Job's runAsUser) refuses a repository someone else owns.
    let chown = std::process::Command::new("chown")
        .args(["-R", "1000:1000", &dir])
        .status()
        .is_ok_and(|s| s.success());
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    assert!(
        chown || uid == 1000,
        "the pods' bare repository must belong to uid 1000: run these tests as root or as uid 1000"
    );
    let status = std::process::Command::new("chmod")
        .args(["-R", "a+rwX", &dir])
        .status()
        .expect("chmod");
    assert!(status.success());
    let env_file = repo.tmp.path().join("agent.env");
    std::fs::write(
        &env_file,
        format!("AGENT_API_KEY={SECRET}\nCHANT_PUSHER=agent-k8s\n{env_extra}"),
    )
    .expect("env file");
    let fake = fake::Fake::start(TOKEN, "chant", vec![server.clone()]);
    let kubeconfig = repo.tmp.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://127.0.0.1:{port}\nusers:\n- name: tester\n  user:\n    token: {TOKEN}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: tester\n    namespace: chant\ncurrent-context: fake\n",
            port = fake.port
        ),
    )
    .expect("kubeconfig");
    Setup {
        repo,
        server,
        id,
        fake,
        kubeconfig,
        env_file,
        image: image.to_string(),
    }
}

impl Setup {
    fn work(&self) -> common::Run {
        let mut cmd = self.repo.chant_cmd(&[
            "work",
            &self.id,
            "--secrets-from",
            &format!("dotenv:{}", self.env_file.display()),
        ]);
        cmd.env("KUBECONFIG", &self.kubeconfig);
        common::Run(cmd.output().expect("run git-chant"))
    }

    fn server_git(&self, args: &[&str]) -> String {
        let mut cmd = std::process::Command::new("git");
        self.repo.env(&mut cmd);
        let out = cmd
            .args(args)
            .current_dir(&self.server)
            .output()
            .expect("git");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn server_events(&self, event: &str) -> Vec<serde_json::Value> {
        self.server_git(&["log", "--format=%b", "refs/chant/audit"])
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["event"] == event)
            .collect()
    }
}

#[test]
fn a_job_runs_the_agent_and_its_result_lands_through_the_policy_check() {
    let Some(image) = image::image() else { return };
    let s = setup(&image, "greet.sh", "5m");
    let run = s.work();
    let out = run.stdout();
    assert_eq!(run.code(), 0, "stdout:\n{out}\nstderr:\n{}", run.stderr());
    // The pod's log was streamed, masked.
    assert!(out.contains("greet: working on"), "{out}");
    assert!(!out.contains(SECRET), "the secret leaked: {out}");
    assert!(!run.stderr().contains(SECRET));
    // The result landed on chant/<id> through step 8, and the ledger says so.
    let branch = format!("chant/{}", s.id);
    let landed = s.repo.git(&["show", &format!("{branch}:hello.txt")]);
    assert_eq!(landed, "Hello from the agent!\n");
    let completed = s.repo.events("spec_completed");
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0]["sandbox"], "kubernetes");
    assert_eq!(completed[0]["details"]["files_changed"][0], "hello.txt");
    eprintln!(
        "kubernetes run: agent_duration_ms {} (Job created to pod result fetched)",
        completed[0]["details"]["agent_duration_ms"]
    );
    // The incoming ref is gone from the repository; the pod's push was an agent's.
    assert_eq!(s.server_git(&["for-each-ref", "refs/chant/incoming"]), "");
    assert!(s.server_events("push_rejected").is_empty());

    // The API sequence, in order.
    let requests = s.fake.requests();
    let lines: Vec<String> = requests.iter().map(|r| r.line()).collect();
    let position = |what: &str, pred: &dyn Fn(&fake::Request) -> bool| {
        requests
            .iter()
            .position(pred)
            .unwrap_or_else(|| panic!("no {what} in:\n{}", lines.join("\n")))
    };
    let creates: Vec<&str> = requests[..6]
        .iter()
        .map(|r| r.path.rsplit('/').next().unwrap_or_default())
        .collect();
    assert_eq!(
        creates,
        [
            "jobs",
            "serviceaccounts",
            "roles",
            "rolebindings",
            "secrets",
            "networkpolicies"
        ],
        "{}",
        lines.join("\n")
    );
    assert!(requests[..6].iter().all(|r| r.method == "POST"));
    let start = position("PATCH", &|r| r.method == "PATCH");
    let first_watch = position("watch", &|r| r.is_watch());
    let last_watch = requests.len()
        - 1
        - requests
            .iter()
            .rev()
            .position(|r| r.is_watch())
            .unwrap_or(0);
    let log = position("log", &|r| r.path.ends_with("/log"));
    let delete = position("DELETE", &|r| r.method == "DELETE");
    assert!(
        start == 6 && start < first_watch && first_watch < last_watch,
        "{}",
        lines.join("\n")
    );
    assert!(
        start < log && log < delete && last_watch < delete,
        "{}",
        lines.join("\n")
    );
    assert_eq!(delete, requests.len() - 1, "the Job is deleted last");
    assert_eq!(s.fake.unauthorised(), 0, "every request carried the token");
    // The Job was created suspended; the other objects are owned by it.
    let created = &requests[0].body;
    assert_eq!(created["spec"]["suspend"], true);
    let uid = s.fake.job_uid();
    for r in requests.iter().filter(|r| r.method == "POST").skip(1) {
        assert_eq!(
            r.body["metadata"]["ownerReferences"][0]["uid"],
            uid,
            "{}",
            r.line()
        );
    }
    // The Secret holds exactly the exposed keys.
    let secret = requests
        .iter()
        .find(|r| r.path.ends_with("/secrets"))
        .expect("secret created");
    let mut keys: Vec<&String> = secret.body["data"]
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    keys.sort();
    assert_eq!(keys, ["AGENT_API_KEY", "CHANT_PUSHER"]);
    // The watch resumed from the last resourceVersion seen before the drop.
    let watches: Vec<&fake::Request> = requests.iter().filter(|r| r.is_watch()).collect();
    assert!(watches.len() >= 2, "{}", lines.join("\n"));
    assert_eq!(
        watches[1].query("resourceVersion").as_deref(),
        Some(fake::ACTIVE_VERSION)
    );
    // The log was followed.
    assert!(requests
        .iter()
        .any(|r| r.path.ends_with("/log") && r.query("follow").as_deref() == Some("true")));
    // Deleted with a propagation policy, so the pod and owned objects go too.
    let delete = requests
        .iter()
        .find(|r| r.method == "DELETE")
        .expect("job deleted");
    assert_eq!(delete.body["propagationPolicy"], "Background");
    common::wait_for("the pod's container to be gone", || {
        s.fake.pods_left().is_empty()
    });
}

#[test]
fn a_watch_answered_410_gone_rereads_the_job_and_watches_on() {
    let Some(image) = image::image() else { return };
    let s = setup(&image, "greet.sh", "5m");
    s.fake.expire_second_watch();
    let run = s.work();
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let requests = s.fake.requests();
    let lines: Vec<String> = requests.iter().map(|r| r.line()).collect();
    let watches: Vec<&fake::Request> = requests.iter().filter(|r| r.is_watch()).collect();
    assert!(watches.len() >= 3, "{}", lines.join("\n"));
    let reread = requests
        .iter()
        .position(|r| r.method == "GET" && !r.is_watch() && r.path.contains("/jobs/"))
        .unwrap_or_else(|| panic!("the Job was not re-read:\n{}", lines.join("\n")));
    let third = requests
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_watch())
        .nth(2)
        .map(|(i, r)| (i, r.query("resourceVersion")))
        .expect("third watch");
    assert!(reread < third.0, "{}", lines.join("\n"));
    // The fake's Job reads back at version 4: the watch goes on from there.
    assert_eq!(third.1.as_deref(), Some("4"));
    s.repo.git(&["show", &format!("chant/{}:hello.txt", s.id)]);
}

#[test]
fn a_broken_log_stream_is_reopened_without_repeating_a_byte() {
    let Some(image) = image::image() else { return };
    let s = setup(&image, "greet.sh", "5m");
    s.fake.cut_first_log_after(10);
    let run = s.work();
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let out = run.stdout();
    assert_eq!(out.matches("greet: working on").count(), 1, "{out}");
    assert_eq!(out.matches("greet: done").count(), 1, "{out}");
    let logs = s
        .fake
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/log"))
        .count();
    assert!(logs >= 2, "the log was reopened ({logs} requests)");
}

#[test]
fn the_agent_identity_cannot_push_anywhere_but_its_incoming_ref() {
    let Some(image) = image::image() else { return };
    let s = setup(&image, "greet.sh", "5m");
    let dir = s.server.to_str().expect("utf8");
    // The pod's image, user, read-only root and tmpfs; the agent tries to push directly.
    let script = format!(
        "set -u; cd /workspace && git clone -q file://{dir} r && cd r && echo x > x.txt && \
         git add x.txt && git -c user.name=a -c user.email=a@a commit -qm x && \
         for target in main refs/heads/other refs/chant/incoming/{id}; do \
           if git push -q file://{dir} HEAD:$target; then echo ACCEPTED $target; fi; done; \
         git push -q file://{dir} HEAD:refs/chant/incoming/{id}/sess_x && echo INCOMING-OK",
        id = s.id
    );
    let out = image::run_as_pod(
        &image,
        &[("CHANT_PUSHER", "agent-k8s"), ("HOME", "/home/agent")],
        &[&s.server],
        &["sh", "-c", &script],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stdout.contains("ACCEPTED"), "{stdout}\n{stderr}");
    assert!(stdout.contains("INCOMING-OK"), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(
            "agent-k8s is an agent (protection.agents) and may not update protected branch 'main'"
        ),
        "{stderr}"
    );
    assert!(
        stderr
            .contains("may push only to refs/chant/incoming/<id>/<session>, not refs/heads/other"),
        "{stderr}"
    );
    assert_eq!(s.server_events("push_rejected").len(), 3);
    let _ = &s.image;
}

#[test]
fn a_timeout_deletes_the_job_and_lands_nothing() {
    let Some(image) = image::image() else { return };
    let s = setup(&image, "sleepy.sh", "4s");
    let run = s.work();
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(run.stderr().contains("agent.timeout"), "{}", run.stderr());
    let requests = s.fake.requests();
    let delete = requests
        .iter()
        .find(|r| r.method == "DELETE")
        .expect("job deleted on timeout");
    assert_eq!(delete.body["propagationPolicy"], "Background");
    common::wait_for("the pod's container to be removed", || {
        s.fake.pods_left().is_empty()
    });
    assert_eq!(s.repo.events("spec_failed").len(), 1);
    assert!(s.repo.rev(&format!("chant/{}:hello.txt", s.id)).is_none());
}

#[test]
fn ctrl_c_deletes_the_job() {
    let Some(image) = image::image() else { return };
    let s = setup(&image, "sleepy.sh", "5m");
    let mut cmd = s.repo.chant_cmd(&["work", &s.id]);
    cmd.env("KUBECONFIG", &s.kubeconfig)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().expect("spawn");
    common::wait_for("the pod's log to be followed", || {
        s.fake.requests().iter().any(|r| r.path.ends_with("/log"))
    });
    common::ctrl_c(child).assert_code(1);
    assert_eq!(
        s.repo.events("spec_failed")[0]["details"]["reason"],
        "interrupted"
    );
    let requests = s.fake.requests();
    let delete = requests
        .iter()
        .find(|r| r.method == "DELETE")
        .expect("job deleted on Ctrl-C");
    assert_eq!(delete.body["propagationPolicy"], "Background");
    common::wait_for("the pod's container to be removed", || {
        s.fake.pods_left().is_empty()
    });
}

#[test]
fn cancel_deletes_the_job_and_records_the_reason() {
    let Some(image) = image::image() else { return };
    let s = setup(&image, "sleepy.sh", "5m");
    let mut cmd = s.repo.chant_cmd(&["work", &s.id]);
    cmd.env("KUBECONFIG", &s.kubeconfig)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().expect("spawn");
    common::wait_for("the pod's log to be followed", || {
        s.fake.requests().iter().any(|r| r.path.ends_with("/log"))
    });
    s.repo
        .chant(&["cancel", &s.id, "--reason", "wrong approach"])
        .assert_ok();
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(1));
    let cancelled = s.repo.events("spec_cancelled");
    assert_eq!(cancelled.len(), 1);
    assert_eq!(cancelled[0]["details"]["reason"], "wrong approach");
    assert!(s.fake.requests().iter().any(|r| r.method == "DELETE"));
    common::wait_for("the pod's container to be removed", || {
        s.fake.pods_left().is_empty()
    });
}

#[test]
fn what_the_pod_pushes_is_judged_like_every_level() {
    let Some(image) = image::image() else { return };
    for (agent, rule) in [
        ("escape-symlink.sh", "symlink"),
        ("big-file.sh", "file_size"),
    ] {
        let s = setup(&image, agent, "5m");
        let run = s.work();
        assert_eq!(run.code(), 1, "{agent}: {}", run.stderr());
        let violations = s.repo.events("policy_violation");
        assert!(
            violations.iter().any(|v| v["details"]["rule"]
                .as_str()
                .unwrap_or_default()
                .contains(rule)),
            "{agent}: {violations:?}"
        );
        assert_eq!(
            s.repo.rev(&format!("chant/{}", s.id)),
            s.repo.rev("main"),
            "{agent}: nothing landed"
        );
        assert_eq!(s.server_git(&["for-each-ref", "refs/chant/incoming"]), "");
    }
}

#[test]
fn all_ready_runs_the_ready_specs_as_concurrent_jobs() {
    let Some(image) = image::image() else { return };
    let s = setup(&image, "greet.sh", "5m");
    let second = s.repo.add_spec("Greet once more", &["hello.txt"]);
    s.repo.git(&["add", "-A"]);
    s.repo.git(&["commit", "--quiet", "-m", "second spec"]);
    let mut cmd = s.repo.chant_cmd(&[
        "work",
        "--all-ready",
        "--parallel",
        "2",
        "--secrets-from",
        &format!("dotenv:{}", s.env_file.display()),
    ]);
    cmd.env("KUBECONFIG", &s.kubeconfig);
    let run = common::Run(cmd.output().expect("run"));
    assert_eq!(run.code(), 0, "{}\n{}", run.stdout(), run.stderr());
    assert!(!run.stdout().contains(SECRET));
    for id in [&s.id, &second] {
        let landed = s.repo.git(&["show", &format!("chant/{id}:hello.txt")]);
        assert_eq!(landed, "Hello from the agent!\n", "{id}");
    }
    let lifetimes = s.fake.lifetimes();
    assert_eq!(lifetimes.len(), 2, "two Jobs");
    let starts: Vec<_> = lifetimes.iter().filter_map(|(_, a, _)| *a).collect();
    let ends: Vec<_> = lifetimes.iter().filter_map(|(_, _, b)| *b).collect();
    assert_eq!(
        (starts.len(), ends.len()),
        (2, 2),
        "both started and deleted"
    );
    let last_start = starts.iter().max().expect("starts");
    let first_end = ends.iter().min().expect("ends");
    assert!(last_start < first_end, "the two Jobs ran at the same time");
    assert_eq!(s.server_git(&["for-each-ref", "refs/chant/incoming"]), "");
}

#[test]
fn dry_run_prints_the_manifests_and_contacts_nothing() {
    let repo = TestRepo::initialised();
    repo.write_config(
        "agent:\n  sandbox: kubernetes\n  command: [agent, \"{prompt_file}\"]\n  secrets:\n    expose: [AGENT_API_KEY]\n  kubernetes:\n    namespace: agents\n    image: worker:1\n    repo_url: https://git.example.com/r.git\n",
    );
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", "config"]);
    let id = repo.add_spec("Do a thing", &["a.txt"]);
    let env = repo.tmp.path().join("agent.env");
    std::fs::write(&env, format!("AGENT_API_KEY={SECRET}\n")).expect("env");
    let mut cmd = repo.chant_cmd(&[
        "work",
        &id,
        "--dry-run",
        "--secrets-from",
        &format!("dotenv:{}", env.display()),
    ]);
    // Nothing may be contacted: a kubeconfig pointing nowhere proves it is not read.
    cmd.env("KUBECONFIG", "/nonexistent/kubeconfig");
    let run = common::Run(cmd.output().expect("run"));
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let out = run.stdout();
    assert!(!out.contains(SECRET));
    let kinds: Vec<String> = out
        .split("\n---\n")
        .map(|d| {
            let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(d).expect("YAML document");
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
    assert!(out.contains("/tmp/chant/prompt.md"), "{out}");
    assert!(
        repo.rev(&format!("chant/{id}")).is_none(),
        "no branch created"
    );
    assert!(repo.events("spec_started").is_empty());
}

#[test]
fn doctor_reports_the_cluster_and_what_is_missing() {
    let repo = TestRepo::initialised();
    repo.write_config(
        "agent:\n  kubernetes:\n    namespace: chant\n    image: worker:1\n    repo_url: https://git.example.com/r.git\n",
    );
    let fake = fake::Fake::start(TOKEN, "chant", Vec::new());
    let kubeconfig = repo.tmp.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://127.0.0.1:{}\nusers:\n- name: tester\n  user:\n    token: {TOKEN}\ncontexts:\n- name: fake-ctx\n  context:\n    cluster: fake\n    user: tester\ncurrent-context: fake-ctx\n",
            fake.port
        ),
    )
    .expect("kubeconfig");
    let mut cmd = repo.chant_cmd(&["doctor"]);
    cmd.env("KUBECONFIG", &kubeconfig);
    let out = common::Run(cmd.output().expect("doctor")).stdout();
    let line = out
        .lines()
        .find(|l| l.starts_with("kubernetes"))
        .unwrap_or_default()
        .to_string();
    assert!(line.contains(" ok "), "{out}");
    assert!(line.contains("context fake-ctx"), "{line}");
    assert!(line.contains("namespace chant answers"), "{line}");
    assert!(fake
        .requests()
        .iter()
        .any(|r| r.method == "GET" && r.path == "/apis/batch/v1/namespaces/chant/jobs"));

    // A token the cluster refuses: the line says what to do.
    let wrong = repo.tmp.path().join("kubeconfig-wrong");
    let text = std::fs::read_to_string(&kubeconfig).expect("kubeconfig");
    std::fs::write(&wrong, text.replace(TOKEN, "not-the-token")).expect("write");
    let mut cmd = repo.chant_cmd(&["doctor"]);
    cmd.env("KUBECONFIG", &wrong);
    let out = common::Run(cmd.output().expect("doctor")).stdout();
    assert!(
        out.contains("the cluster refused the kubeconfig's credentials"),
        "{out}"
    );
    assert!(fake.unauthorised() >= 1);

    let mut cmd = repo.chant_cmd(&["doctor"]);
    cmd.env("KUBECONFIG", repo.tmp.path().join("absent"));
    let out = common::Run(cmd.output().expect("doctor")).stdout();
    assert!(
        out.lines()
            .any(|l| l.starts_with("kubernetes") && l.contains("missing")),
        "{out}"
    );
    repo.write_config("agent:\n  kubernetes:\n    namespace: chant\n");
    let out = repo.chant(&["doctor"]).stdout();
    assert!(out.contains("agent.kubernetes.image is not set"), "{out}");
}

/// A repository set up for the kubernetes level with no cluster behind it: what is decided
/// before a pod is asked for.
fn no_cluster(extra: &str, message: &str) -> (TestRepo, String) {
    let repo = TestRepo::initialised();
    repo.write_config(&format!(
        "agent:\n  sandbox: kubernetes\n  command: [agent]\n  kubernetes:\n    image: worker:1\n    repo_url: https://git.example.com/r.git\n{extra}"
    ));
    repo.write("notes/private.txt", "not for the agent\n");
    let id = repo.add_spec("Do a thing", &["a.txt"]);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "--quiet", "-m", message]);
    (repo, id)
}

#[test]
fn a_branch_with_withheld_paths_is_refused_before_anything_is_recorded() {
    let (repo, id) = no_cluster("  file_access:\n    denied_paths: [notes/]\n", "spec");
    repo.chant_cmd(&["work", &id])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .output()
        .map(common::Run)
        .expect("run")
        .assert_code(2)
        .stderr_has("cannot withhold them yet");
    assert!(repo.events("spec_started").is_empty());
}

#[test]
fn a_commit_message_that_mentions_withheld_paths_does_not_refuse_the_run() {
    // Whether paths were withheld is the clone's record, never a reading of a message the
    // branch's author wrote.
    let (repo, id) = no_cluster("", "chant: start of x, 3 path(s) withheld by file_access");
    let run = repo
        .chant_cmd(&["work", &id])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .output()
        .map(common::Run)
        .expect("run");
    assert!(
        !run.stderr().contains("cannot withhold"),
        "{}",
        run.stderr()
    );
    // It got as far as asking for the cluster, which is not there.
    assert_eq!(repo.events("spec_started").len(), 1, "{}", run.stderr());
}

// ---- The real Claude Code CLI in a "pod" ----
//
// The pod's network holds what its NetworkPolicy lets out, as a cluster's CNI would
// enforce it: the fake gives the pod a namespace where 127.0.0.1:PORT reaches the fake
// Anthropic API (on this machine's loopback) only when the policy opens PORT, and nothing
// else (tests/kubernetes/fake/pod.rs).

use common::anthropic::{FakeAnthropic, Turn};
use common::claude::API_KEY;

/// The fake API on loopback replaying `script`, and a setup whose agent is the real
/// `claude` with `agent_extra` under `agent:` (`{api}` there replaced by the API's
/// `host:port`), its key and base URL among the run's secrets, the API routed in the fake
/// cluster. None: skipped (no CLI or no engine).
fn claude_in_a_pod(script: Vec<Turn>, agent_extra: &str) -> Option<(Setup, FakeAnthropic)> {
    let image = image::claude_image()?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let target = listener.local_addr().expect("addr");
    let api = FakeAnthropic::serve(listener, script);
    let host = format!("127.0.0.1:{}", target.port());
    let s = setup_with(
        &image,
        "[claude, -p, \"{prompt}\"]",
        "3m",
        &agent_extra.replace("{api}", &host),
        &format!(
            "ANTHROPIC_API_KEY={API_KEY}\nANTHROPIC_BASE_URL={}\n",
            api.url()
        ),
    );
    s.fake.route(target.port(), target);
    Some((s, api))
}

#[test]
fn claude_in_a_pod_reaches_the_api_its_network_policy_allows_lands_allowed_work_and_its_deny_rules_hold(
) {
    let Some((s, api)) = claude_in_a_pod(
        vec![
            Turn::write("{cwd}/hello.txt", "Hello from a pod\n"),
            Turn::write("{cwd}/secret.txt", "must never be written\n"),
            Turn::bash("echo ran > ran.txt"),
            Turn::Text("Done.".into()),
        ],
        // No allowed_hosts: the adapter's API host is added to the policy.
        "  permissions:\n    deny_edit: [secret.txt]\n  network:\n    enabled: true\n",
    ) else {
        return;
    };
    let run = s.work();
    let said = common::live::everything_chant_said(&s.repo, &run);
    assert_eq!(run.code(), 0, "{said}");
    // The policy opened the API's port (and named the host), and the pod reached that and
    // nothing else.
    let policy = s
        .fake
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/networkpolicies"))
        .expect("a NetworkPolicy");
    let port = u64::from(api.port());
    assert_eq!(
        policy.body["spec"]["egress"][1]["ports"],
        serde_json::json!([{"protocol": "TCP", "port": port}]),
        "{}",
        policy.body
    );
    assert_eq!(
        policy.body["metadata"]["annotations"]["chant.dev/allowed-hosts"],
        format!("127.0.0.1:{port}")
    );
    let reached = s.fake.reached_ports();
    assert_eq!(reached.len(), 1, "{reached:?}");
    assert_eq!(reached[0].1, [api.port()], "{reached:?}");
    // Claude Code worked turn by turn against the fake, with the key from the run's Secret.
    let requests = api.requests();
    assert!(requests.len() >= 4, "{requests:?}");
    for r in &requests {
        assert_eq!(
            r.header("x-api-key"),
            Some(API_KEY),
            "{} {}",
            r.method,
            r.path
        );
    }
    let results = api.tool_results();
    assert_eq!(results.len(), 3, "{results:?}\n{said}");
    assert!(!results[0].is_error, "{results:?}");
    assert!(
        results[1].is_error,
        "its deny rule refused the edit: {results:?}"
    );
    assert!(
        results[1]
            .content
            .contains("denied by your permission settings"),
        "{results:?}"
    );
    assert!(!results[2].is_error, "{results:?}");
    // The allowed work landed through the policy check; the denied file was never written
    // (the pod pushes everything it leaves, so it would have been judged, and refused).
    let branch = format!("chant/{}", s.id);
    assert_eq!(
        s.repo.git(&["show", &format!("{branch}:hello.txt")]),
        "Hello from a pod\n"
    );
    assert_eq!(s.repo.git(&["show", &format!("{branch}:ran.txt")]), "ran\n");
    let landed = s.repo.git(&["ls-tree", "-r", "--name-only", &branch]);
    assert!(!landed.contains("secret.txt"), "{landed}");
    assert!(s.repo.events("policy_violation").is_empty());
    let done = &s.repo.events("spec_completed")[0];
    assert_eq!(done["sandbox"], "kubernetes");
    assert_eq!(done["details"]["agent_refusals"], 1, "{done}");
    // The key went to the pod through its Secret; nothing chant printed or recorded holds it,
    // nor do the Job's manifests.
    assert!(!said.contains(API_KEY), "the key leaked:\n{said}");
    let job = &s.fake.requests()[0].body;
    assert!(!job.to_string().contains(API_KEY), "{job}");
    // The gate is a stub in a pod: no command was recorded.
    assert!(s.repo.events("command_run").is_empty());
    assert!(api.unexpected.lock().expect("lock").is_empty());
    common::wait_for("the pod's containers to be gone", || {
        s.fake.pods_left().is_empty()
    });
}

#[test]
fn claude_at_kubernetes_without_the_network_is_refused_before_anything_when_its_api_is_off_443() {
    // The network off (the default): the policy would open 443 (and the repository's
    // port), as a real cluster needs for api.anthropic.com — never the fake API's port. So
    // the run is refused before a Job exists, naming the fix.
    let Some((s, api)) = claude_in_a_pod(vec![Turn::Text("Done.".into())], "") else {
        return;
    };
    let ledger = s.repo.ledger().len();
    let run = s.work().assert_code(2);
    let host = format!("127.0.0.1:{}", api.port());
    for needle in [host.as_str(), "agent.network.enabled", "443"] {
        assert!(run.stderr().contains(needle), "{needle}: {}", run.stderr());
    }
    assert!(s.fake.requests().is_empty(), "the cluster was contacted");
    assert!(api.requests().is_empty());
    assert_eq!(s.repo.ledger().len(), ledger, "nothing recorded");
    assert_eq!(s.repo.rev(&format!("chant/{}", s.id)), None);
}

#[test]
fn claude_in_a_pod_whose_api_host_is_denied_never_reaches_it() {
    // denied_hosts wins over the adapter's API host: the policy opens no TCP port at all
    // (a file:// repository), and the fake cluster's pod, given only what the policy lets
    // out, never reaches the API though it is routed.
    let Some((s, api)) = claude_in_a_pod(
        vec![
            Turn::write("{cwd}/hello.txt", "never\n"),
            Turn::Text("Done.".into()),
        ],
        "  network:\n    enabled: true\n    denied_hosts: [\"{api}\"]\n",
    ) else {
        return;
    };
    // One attempt, not ten with back-off (passed into the pod through the run's Secret).
    std::fs::write(
        &s.env_file,
        std::fs::read_to_string(&s.env_file).expect("env file") + "CLAUDE_CODE_MAX_RETRIES=0\n",
    )
    .expect("env file");
    let run = s.work();
    let said = common::live::everything_chant_said(&s.repo, &run);
    assert_eq!(run.code(), 1, "{said}");
    assert!(said.contains("ECONNREFUSED"), "{said}");
    let policy = s
        .fake
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/networkpolicies"))
        .expect("a NetworkPolicy");
    let egress = policy.body["spec"]["egress"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(egress.len(), 1, "DNS only: {}", policy.body);
    assert_eq!(s.fake.reached_ports()[0].1, Vec::<u16>::new());
    assert!(api.requests().is_empty(), "{:?}", api.requests());
    assert_eq!(s.repo.rev(&format!("chant/{}", s.id)), s.repo.rev("main"));
    assert_eq!(s.repo.events("spec_failed").len(), 1);
    assert!(!said.contains(API_KEY), "the key leaked:\n{said}");
    common::wait_for("the pod's containers to be gone", || {
        s.fake.pods_left().is_empty()
    });
}

// ---- Codex CLI, opencode, Gemini CLI and aider in a "pod" ----

#[path = "kubernetes/agents.rs"]
mod agents;
