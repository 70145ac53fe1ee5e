//! Ledger benchmarks against git plumbing baselines measured in the same run.
//!
//! Run with `cargo bench --bench ledger`. Sizes can be lowered for a quick look:
//! `CHANT_BENCH_BATCH` (10000), `CHANT_BENCH_PLUMBING` (200), `CHANT_BENCH_RECORD` (200),
//! `CHANT_BENCH_VERIFY` (200000), `CHANT_BENCH_QUERY` (1000000). `CHANT_BENCH_KEEP=1`
//! keeps the repositories (their directory is printed) for a closer look.
//!
//! 1. a batch of entries appended with one CAS, signed (ed25519, in-process) and unsigned,
//!    vs the plumbing loop `git commit-tree [-S]` + `git update-ref <ref> <new> <old>`;
//! 2. `git chant audit record`, one process per entry, vs the same plumbing loop;
//! 3. `git chant audit verify` over a long ledger (entries/s), next to `git rev-list --count`
//!    over the same commits;
//! 4. `git chant audit --event X --last 30d` over a very long ledger vs `git log --grep`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use git_chant::audit::{ledger, Draft, Signer};
use serde_json::{json, Map, Value};

const EVENTS: &[&str] = &[
    "spec_created",
    "spec_started",
    "file_modified",
    "command_run",
    "spec_completed",
    "spec_failed",
    "spec_cancelled",
    "config_changed",
    "lock_acquired",
    "lock_released",
    "policy_violation",
    "spec_approved",
    "push_rejected",
    "check_passed",
    "check_failed",
    "ledger_created",
];

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Env {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    key: PathBuf,
}

impl Env {
    fn new() -> Env {
        let mut tmp = tempfile::tempdir().expect("tmp");
        if std::env::var_os("CHANT_BENCH_KEEP").is_some() {
            tmp.disable_cleanup(true);
            println!("   repositories kept in {}", tmp.path().display());
        }
        let home = tmp.path().join("home");
        std::fs::create_dir_all(&home).expect("home");
        let key = home.join("id_ed25519");
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f"])
            .arg(&key)
            .output()
            .expect("ssh-keygen");
        assert!(out.status.success());
        let env = Env {
            _tmp: tmp,
            home,
            key,
        };
        env.git_global(&["config", "--global", "user.name", "Bench"]);
        env.git_global(&["config", "--global", "user.email", "bench@example.com"]);
        env.git_global(&["config", "--global", "gpg.format", "ssh"]);
        env
    }

    fn cmd(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("LANG", "C.UTF-8")
            .env("GIT_CONFIG_GLOBAL", self.home.join(".gitconfig"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("CHANT_ACTOR", "bench")
            .env("CHANT_ACTOR_EMAIL", "bench@example.com");
        cmd
    }

    fn git_global(&self, args: &[&str]) {
        let out = self.cmd("git").args(args).output().expect("git");
        assert!(out.status.success(), "git {args:?}");
    }

    fn git(&self, dir: &Path, args: &[&str]) -> String {
        let out = self
            .cmd("git")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn repo(&self, name: &str) -> PathBuf {
        let dir = self.home.join(name);
        std::fs::create_dir_all(&dir).expect("dir");
        self.git(&dir, &["init", "--quiet", "--initial-branch=main"]);
        std::fs::write(dir.join("README.md"), "bench\n").expect("write");
        self.git(&dir, &["add", "README.md"]);
        self.git(&dir, &["commit", "--quiet", "-m", "init"]);
        dir
    }
}

fn draft(i: usize, ts: &str, event: &str) -> Draft {
    let mut fields = Map::new();
    fields.insert("ts".into(), json!(ts));
    fields.insert("event".into(), json!(event));
    fields.insert(
        "spec_id".into(),
        json!(format!("2026-01-22-{:03}-abc", i % 500)),
    );
    fields.insert(
        "actor".into(),
        json!(["alex", "sam", "kim", "lee", "ci"][i % 5]),
    );
    fields.insert("agent".into(), json!("provider/model"));
    fields.insert("sandbox".into(), json!("docker"));
    fields.insert("host".into(), json!("build-01"));
    fields.insert("session".into(), json!(format!("sess_{}", i / 100)));
    fields.insert(
        "details".into(),
        json!({"path": format!("src/file_{i}.rs"), "exit_code": 0, "duration_ms": i as u64}),
    );
    Draft {
        fields,
        email: "bench@example.com".into(),
    }
}

/// The plumbing loop: `git commit-tree [-S]` + `git update-ref` with the old value.
fn plumbing(env: &Env, dir: &Path, n: usize, signed: bool) -> f64 {
    let tree = env.git(dir, &["hash-object", "-t", "tree", "-w", "/dev/null"]);
    let key = env.key.to_string_lossy().to_string();
    let refname = if signed {
        "refs/bench/signed"
    } else {
        "refs/bench/unsigned"
    };
    let mut old = "0000000000000000000000000000000000000000".to_string();
    let start = Instant::now();
    for i in 0..n {
        let msg = format!(
            "command_run - by bench\n\n{}",
            serde_json::to_string(&Value::Object(
                draft(i, "2026-01-22T15:30:00Z", "command_run").fields
            ))
            .unwrap_or_default()
        );
        let mut args: Vec<String> = Vec::new();
        if signed {
            args.extend(["-c".into(), format!("user.signingkey={key}")]);
        }
        args.push("commit-tree".into());
        if signed {
            args.push("-S".into());
        }
        if i > 0 {
            args.extend(["-p".into(), old.clone()]);
        }
        args.extend(["-m".into(), msg, tree.clone()]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let new = env.git(dir, &refs);
        env.git(dir, &["update-ref", refname, &new, &old]);
        old = new;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_git-chant"));
    let env = Env::new();
    let batch = env_usize("CHANT_BENCH_BATCH", 10_000);
    let plumb_n = env_usize("CHANT_BENCH_PLUMBING", 200);
    let record_n = env_usize("CHANT_BENCH_RECORD", 200);
    let verify_n = env_usize("CHANT_BENCH_VERIFY", 200_000);
    let query_n = env_usize("CHANT_BENCH_QUERY", 1_000_000);
    println!("git-chant ledger benchmarks (each ratio against a baseline measured in this run)");
    println!("   load average at start: {}", loadavg());

    // 1. Batch appends vs the plumbing loop.
    let dir = env.repo("batch");
    let p_signed = plumbing(&env, &dir, plumb_n, true);
    let p_unsigned = plumbing(&env, &dir, plumb_n, false);
    println!("baseline plumbing loop ({plumb_n} entries): signed {p_signed:.0}/s, unsigned {p_unsigned:.0}/s");
    let repo = git2::Repository::open(&dir).expect("open");
    let drafts: Vec<Draft> = (0..batch)
        .map(|i| draft(i, "2026-01-22T15:30:00Z", "file_modified"))
        .collect();
    let signer = Signer::from_ssh_key_file(&env.key).expect("key");
    let t = Instant::now();
    ledger::append(&repo, &Signer::Unsigned, &drafts).expect("append unsigned");
    let unsigned_rate = rate(batch, t.elapsed());
    let t = Instant::now();
    ledger::append(&repo, &signer, &drafts).expect("append signed");
    let signed_rate = rate(batch, t.elapsed());
    println!(
        "1. batch of {batch}, signed ed25519 in-process: {signed_rate:.0}/s = {:.1}x plumbing (target >= 50x)",
        signed_rate / p_signed
    );
    println!(
        "1. batch of {batch}, unsigned: {unsigned_rate:.0}/s = {:.1}x plumbing (target >= 20x)",
        unsigned_rate / p_unsigned
    );
    // Signed verification, in-process, of what was just written.
    let allowed = env.home.join("allowed");
    let public = std::fs::read_to_string(env.key.with_extension("pub")).expect("pub");
    std::fs::write(&allowed, format!("bench@example.com {}", public.trim())).expect("allowed");

    // 2. One process per `git chant audit record` vs the plumbing loop. The issue's loop is
    // `git commit-tree -S` + `git update-ref` (its target: 2x); the unsigned pair is shown
    // for reference, with no target.
    let dir2 = env.repo("record");
    let out = env
        .cmd(exe.to_str().unwrap_or("git-chant"))
        .arg("init")
        .current_dir(&dir2)
        .output()
        .expect("init");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = Instant::now();
    for i in 0..record_n {
        let out = env
            .cmd(exe.to_str().unwrap_or("git-chant"))
            .args(["audit", "record", "command_run", "--details"])
            .arg(format!(r#"{{"n":{i},"exit_code":0}}"#))
            .current_dir(&dir2)
            .stdout(Stdio::null())
            .output()
            .expect("record");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let record_rate = rate(record_n, t.elapsed());
    println!(
        "2. `git chant audit record` x{record_n}, one process each (unsigned, sink on): {record_rate:.0}/s = {:.1}x plumbing unsigned (reference, no target)",
        record_rate / p_unsigned
    );
    // The same, signed with the ed25519 key file (in-process), against `commit-tree -S`.
    let key = env.key.to_string_lossy().to_string();
    env.git(&dir2, &["config", "user.signingkey", &key]);
    let t = Instant::now();
    for i in 0..record_n {
        let out = env
            .cmd(exe.to_str().unwrap_or("git-chant"))
            .args(["audit", "record", "command_run", "--details"])
            .arg(format!(r#"{{"n":{i},"exit_code":0}}"#))
            .current_dir(&dir2)
            .stdout(Stdio::null())
            .output()
            .expect("record");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let record_signed = rate(record_n, t.elapsed());
    println!(
        "2. `git chant audit record` x{record_n}, one process each (signed ed25519): {record_signed:.0}/s = {:.1}x plumbing signed (target >= 2x)",
        record_signed / p_signed
    );

    // 3. verify over a long ledger.
    let dir3 = env.repo("verify");
    let repo3 = git2::Repository::open(&dir3).expect("open");
    build_ledger(&repo3, verify_n, 0);
    let t = Instant::now();
    let out = env
        .cmd(exe.to_str().unwrap_or("git-chant"))
        .args(["audit", "verify"])
        .current_dir(&dir3)
        .output()
        .expect("verify");
    let d = t.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Baseline: what git itself takes only to list those commits (it parses each one).
    let t = Instant::now();
    let listed = env.git(&dir3, &["rev-list", "--count", "refs/chant/audit"]);
    let git_d = t.elapsed();
    assert_eq!(listed.trim(), verify_n.to_string());
    println!(
        "3. `git chant audit verify` over {verify_n} entries: {:.2}s = {:.0} entries/s (target >= 100000/s)",
        d.as_secs_f64(),
        rate(verify_n, d)
    );
    println!(
        "   baseline `git rev-list --count` over the same ledger: {:.2}s -> verify = {:.0}% of it",
        git_d.as_secs_f64(),
        100.0 * d.as_secs_f64() / git_d.as_secs_f64()
    );
    let t = Instant::now();
    let out = env
        .cmd(exe.to_str().unwrap_or("git-chant"))
        .args([
            "audit",
            "verify",
            "--require-signatures",
            "--allowed-signers",
        ])
        .arg(&allowed)
        .arg("--from")
        .arg(first_signed(&repo, batch))
        .current_dir(&dir)
        .output()
        .expect("verify signed");
    let d = t.elapsed();
    println!(
        "3b. `audit verify --require-signatures` over the {batch} signed entries (in-process SSHSIG): {:.0} entries/s ({})",
        rate(batch, d),
        if out.status.success() {
            String::from("ok")
        } else {
            format!("FAILED: {}", String::from_utf8_lossy(&out.stderr).trim())
        }
    );

    // 4. query over a very long ledger vs git log --grep.
    let dir4 = env.repo("query");
    let repo4 = git2::Repository::open(&dir4).expect("open");
    let t = Instant::now();
    build_ledger(&repo4, query_n, 365);
    println!(
        "   (built {query_n} entries spread over 365 days in {:.1}s)",
        t.elapsed().as_secs_f64()
    );
    let chant = |args: &[&str]| {
        let t = Instant::now();
        let out = env
            .cmd(exe.to_str().unwrap_or("git-chant"))
            .args(args)
            .current_dir(&dir4)
            .stdout(Stdio::piped())
            .output()
            .expect("query");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            t.elapsed(),
            out.stdout.iter().filter(|b| **b == b'\n').count(),
        )
    };
    let query = [
        "audit",
        "--event",
        "command_run",
        "--last",
        "30d",
        "--format",
        "jsonl",
    ];
    let (first, _) = chant(&query);
    let (warm, lines) = (0..3).map(|_| chant(&query)).min().unwrap_or_default();
    let git_log = |extra: &[&str]| {
        let t = Instant::now();
        let out = env
            .cmd("git")
            .args([
                "log",
                "-F",
                "--grep",
                "\"event\":\"command_run\"",
                "--format=%b",
            ])
            .args(extra)
            .arg("refs/chant/audit")
            .current_dir(&dir4)
            .stdout(Stdio::piped())
            .output()
            .expect("git log");
        (
            t.elapsed(),
            out.stdout
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .count(),
        )
    };
    let (g_all, g_all_n) = git_log(&[]);
    let (g_since, g_since_n) = git_log(&["--since=30.days.ago"]);
    println!(
        "4. `git chant audit --event command_run --last 30d` over {query_n}: {:.3}s warm ({lines} entries), {:.2}s first run (index build)",
        warm.as_secs_f64(),
        first.as_secs_f64()
    );
    println!(
        "   baseline `git log -F --grep` (all {g_all_n} command_run entries): {:.2}s -> chant = {:.1}% of it (target <= 10%)",
        g_all.as_secs_f64(),
        100.0 * warm.as_secs_f64() / g_all.as_secs_f64()
    );
    println!(
        "   baseline `git log -F --grep --since=30.days.ago` ({g_since_n} entries): {:.2}s -> chant = {:.1}% of it",
        g_since.as_secs_f64(),
        100.0 * warm.as_secs_f64() / g_since.as_secs_f64()
    );
    println!("   load average at end: {}", loadavg());
}

/// `/proc/loadavg`'s first three fields: other work on the machine skews wall-clock rates.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The oldest commit of the last `n` entries of the ledger.
fn first_signed(repo: &git2::Repository, n: usize) -> String {
    let mut oid = repo.refname_to_id("refs/chant/audit").expect("head");
    // The signed batch is the last one appended: walk back to its first entry.
    for _ in 0..(n - 1) {
        oid = repo
            .find_commit(oid)
            .expect("commit")
            .parent_id(0)
            .expect("parent");
    }
    oid.to_string()
}

/// Appends `n` unsigned entries in batches of 100,000; with `days > 0` their ts run
/// evenly from `days` ago to now and events vary.
fn build_ledger(repo: &git2::Repository, n: usize, days: i64) {
    let now = chrono::Utc::now();
    let start = now - chrono::Duration::days(days);
    let span = (now - start).num_seconds().max(1);
    let mut done = 0;
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    while done < n {
        let chunk = (n - done).min(100_000);
        let drafts: Vec<Draft> = (done..done + chunk)
            .map(|i| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let ts = start + chrono::Duration::seconds(span * i as i64 / n.max(1) as i64);
                let ts = ts.format("%Y-%m-%dT%H:%M:%SZ").to_string();
                draft(i, &ts, EVENTS[(seed % EVENTS.len() as u64) as usize])
            })
            .collect();
        ledger::append(repo, &Signer::Unsigned, &drafts).expect("append");
        done += chunk;
    }
}
