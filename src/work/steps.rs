//! Steps 4–9 of a run, once the spec is resolved, confirmed and locked: the branch and the
//! sandboxed clone, the agent's environment, the agent under its sandbox level, validation,
//! collecting the result as data, the policy check and landing.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use super::cancel::take_cancel_request;
use super::output::{open_log, RedactingSink};
use super::seen::Seen;
use super::{
    agent_files, clone, clone_path, collect, egress, gate, hook_errors, land, policy, prompt,
    resolve_program, run_dir, run_entry, write_exec_wrapper, Options, Recorder, Report, Reporter,
    Verdict, WorkError,
};
use crate::agent::{Agent, Summary};
use crate::audit::{Event, NewEntry};
use crate::config::{Config, SandboxLevel};
use crate::identity::Identity;
use crate::project::Project;
use crate::sandbox::{self, Job, Outcome};
use crate::spec::{Spec, SpecId};

pub(super) struct Run<'a> {
    pub(super) project: &'a Project,
    pub(super) identity: &'a Identity,
    pub(super) config: &'a Config,
    pub(super) spec: &'a Spec,
    pub(super) id: SpecId,
    pub(super) level: SandboxLevel,
    pub(super) sandbox: &'a dyn sandbox::Sandbox,
    pub(super) agent: &'a dyn Agent,
    /// What the agent's output said (filled in once it has run).
    pub(super) summary: Summary,
    pub(super) template: &'a [String],
    pub(super) secrets: &'a crate::secrets::Secrets,
    pub(super) stop: &'a Arc<AtomicBool>,
    pub(super) log: PathBuf,
    /// Requests that had an injected secret put in, as of the last program's end
    /// (`host:port` → name → count), for `spec_failed`.
    pub(super) injected: std::cell::RefCell<BTreeMap<String, BTreeMap<String, u64>>>,
}

impl Run<'_> {
    fn entry(&self, event: Event) -> NewEntry {
        run_entry(event, &self.id, self.level, self.template)
    }

    /// Steps 4–9. Whatever goes wrong after `spec_started` is recorded, here and nowhere
    /// else, as `spec_failed` with the error as its reason (the kept clone disarmed), so a
    /// spec is never left `in_progress`; an error before it removes the half-made clone.
    pub(super) fn steps(
        &mut self,
        options: &Options,
        reporter: &mut dyn Reporter,
        recorder: &mut dyn Recorder,
        confirmed_by: Value,
    ) -> Result<Report, WorkError> {
        let mut tracked = Tracked {
            inner: recorder,
            started: false,
            ended: false,
        };
        let mut made = None;
        let result = self.run_steps(options, reporter, &mut tracked, confirmed_by, &mut made);
        let Err(error) = result else {
            return result;
        };
        match made {
            Some(clone) if tracked.started && !tracked.ended => {
                // Best effort: when the ledger itself is what failed, this fails too.
                let _ = self.fail(error.to_string(), &clone, &mut tracked, 0);
            }
            Some(clone) if !tracked.started => {
                let _ = clone::discard(&clone.path);
            }
            _ => {}
        }
        Err(error)
    }

    fn run_steps(
        &mut self,
        options: &Options,
        reporter: &mut dyn Reporter,
        recorder: &mut dyn Recorder,
        confirmed_by: Value,
        made: &mut Option<clone::Clone>,
    ) -> Result<Report, WorkError> {
        let repo = &self.project.repo;
        let prefix = &self.config.chant.branch_prefix;
        let branch = format!("{prefix}{}", self.id);
        let branch_ref = format!("refs/heads/{branch}");
        let base = self.config.base_branch().to_string();

        // 4. Branch and sandboxed clone.
        let clone_path = clone_path(self.project, &self.id, &self.identity.session)?;
        let existing = repo.refname_to_id(&branch_ref).ok();
        let start = match existing {
            Some(tip) => tip,
            None => repo
                .refname_to_id(&format!("refs/heads/{base}"))
                .map_err(|_| WorkError::NoBase {
                    branch: base.clone(),
                })?,
        };
        if existing.is_none()
            && !crate::git::compare_and_swap(repo, &branch_ref, start, None, "chant: start")?
        {
            return Err(WorkError::BranchMoved { branch });
        }
        let run_dir = run_dir(self.project, &self.identity.session);
        reporter.info(&format!(
            "Preparing a sandboxed clone of {branch} at {}",
            clone_path.display()
        ));
        let fa = &self.config.agent.file_access;
        let visibility = clone::Visibility {
            allow: vec![&fa.allowed_paths.0, &self.config.agent.allowed_paths.0],
            deny: vec![&fa.denied_paths.0, &self.config.agent.denied_paths.0],
        };
        let clone: &clone::Clone = made.insert(clone::create(
            repo,
            start,
            &branch,
            &clone_path,
            &visibility,
        )?);
        let mut generated: HashSet<String> = self
            .sandbox
            .prepare(&clone.workspace())?
            .into_iter()
            .collect();
        // The agent's own settings for this run (never landed: `collect` skips them).
        let native = self.agent.workspace_files(&clone.path, self.level)?;
        for rel in agent_files::write_under(&clone.path, &native)? {
            if clone.files.contains_key(&rel) {
                reporter.info(&format!(
                    "{rel}: the committed file is merged with chant's rules for this run (chant's deny rules win; its hooks are not run)"
                ));
            }
            generated.insert(rel);
        }

        // 5. Environment and prompt.
        let home = run_dir.join("home");
        std::fs::create_dir_all(&home).map_err(|e| WorkError::io(&home, e))?;
        let prompt_text =
            prompt::build(self.spec, self.config, self.agent.commands_rule(self.level));
        let prompt_file = run_dir.join("prompt.md");
        crate::atomic::replace(&prompt_file, prompt_text.as_bytes())
            .map_err(|e| WorkError::io(&prompt_file, e))?;
        let exec_wrapper = write_exec_wrapper(&run_dir, self.project)?;
        let mut exposed = self.secrets.filtered(&self.config.agent.secrets);
        // The adapter's credential variables, when set; `hide` still wins.
        for name in self.agent.credential_names() {
            let hidden = self.config.agent.secrets.hide.0.is_match(name);
            let injected = self.config.agent.secrets.inject.contains_key(*name);
            if !hidden && !injected && !exposed.iter().any(|(n, _)| n == name) {
                if let Some(value) = self.secrets.get(name) {
                    exposed.push((name.to_string(), value.to_string()));
                }
            }
        }
        // Injected secrets: the agent holds placeholders, the proxy the values.
        let injection = egress::injection(
            self.config,
            self.secrets,
            self.project.root(),
            self.sandbox.egress_route(),
        )?;
        if let Some((placeholders, _)) = &injection {
            exposed.extend(placeholders.iter().cloned());
        }
        // Paths as the agent sees them: the host's, or the guest's for vm (and docker).
        let guest = self.sandbox.guest();
        let seen = match &guest {
            Some(g) => Seen::guest(g),
            None => Seen {
                clone: clone.path.clone(),
                home: home.clone(),
                exec: exec_wrapper.clone(),
                prompt: prompt_file.clone(),
                path: None,
            },
        };
        let mut home_files = self.agent.home_files(&seen.clone, self.level);
        agent_files::write_under(&home, &home_files)?;
        let setup = self.agent.run_setup(&crate::agent::RunInputs {
            clone: &clone.path,
            home: &seen.home,
            exposed: &exposed,
            level: self.level,
        })?;
        agent_files::write_under(&home, &setup.home_files)?;
        home_files.extend(setup.home_files.iter().cloned());
        for notice in &setup.notices {
            reporter.info(notice);
        }
        let mut env = seen.env(self.id.as_str(), &self.identity.session, &exposed)?;
        env.extend(self.agent.fixed_env(self.level));
        env.extend(setup.env);
        let template = self.agent.command(self.template, self.level);
        let program = match guest {
            Some(_) => template,
            None => resolve_program(&template, self.project.root()),
        };
        let argv = seen.argv(&program, &prompt_text, self.id.as_str());
        let mut files = vec![(seen.prompt.clone(), prompt_text.clone().into_bytes())];
        // A level with a HOME of its own starts it with the run's private HOME files.
        if self.sandbox.seeds_home() {
            files.extend(
                home_files
                    .into_iter()
                    .map(|(rel, text)| (seen.home.join(rel), text.into_bytes())),
            );
        }
        // A level that makes its own working copy from the branch gets the adapter's files
        // for the clone too: the repository's own agent config never loosens chant's rules.
        if self.sandbox.seeds_workspace() {
            files.extend(
                native
                    .iter()
                    .map(|(rel, text)| (seen.clone.join(rel), text.clone().into_bytes())),
            );
        }
        if let Some((_, injection)) = &injection {
            // The run CA's certificate (never its key) beside the system roots.
            let bundle = injection.bundle_pem().into_bytes();
            let on_host = run_dir.join(egress::CA_BUNDLE_FILE);
            crate::atomic::replace(&on_host, &bundle).map_err(|e| WorkError::io(&on_host, e))?;
            let seen_path = seen.prompt.with_file_name(egress::CA_BUNDLE_FILE);
            for name in egress::CA_VARIABLES {
                env.push((name.to_string(), seen_path.to_string_lossy().into_owned()));
            }
            files.push((seen_path, bundle));
        }
        let redactor = self
            .secrets
            .redactor_with(&self.config.agent.secrets, self.agent.credential_names());
        recorder
            .record(vec![self
                .entry(Event::SpecStarted)
                .detail("prompt", "standard")
                .detail("target_files", self.spec.target_files())
                .detail("command", json!(self.template))
                .detail("agent_kind", self.agent.kind().as_str())
                .detail("base", base.clone())
                .detail("branch", branch.clone())
                .detail("start_commit", start.to_string())
                .detail("withheld_paths", clone.withheld.len() as u64)
                .detail(
                    "generated_files",
                    generated.iter().cloned().collect::<Vec<_>>(),
                )
                .detail("sensitive_confirmed", confirmed_by)
                .detail(
                    "timeout_ms",
                    self.config.agent.timeout.duration().as_millis() as u64,
                )])
            .map_err(WorkError::Ledger)?;

        // 6. Run the agent, with the egress proxy when the network is enabled and the level
        // can route through it (else the level's own rules are all there is).
        let mut proxy = match self.sandbox.egress_route() {
            sandbox::EgressRoute::Unreachable { .. } => None,
            // The adapter's model API hosts are allowed with the network (denied_hosts win).
            sandbox::EgressRoute::Proxy => egress::RunProxy::start(
                self.config,
                injection.map(|(_, i)| i),
                &self.agent.api_hosts(self.secrets),
            )?,
        };
        let egress = proxy.as_ref().map(egress::RunProxy::egress);
        if let Some(e) = &egress {
            reporter.info(&format!(
                "Network: only agent.network.allowed_hosts, through chant's proxy ({})",
                e.url
            ));
        }
        // The command gate's channel into the sandbox, served for the whole run.
        let gate = if self.sandbox.gate_channel() {
            let (id, level, template) = (self.id.clone(), self.level, self.template.to_vec());
            Some(gate::RunGate::start(
                &run_dir,
                self.project.root(),
                self.config,
                self.identity,
                redactor.clone(),
                Box::new(move |event| run_entry(event, &id, level, &template)),
            )?)
        } else {
            None
        };
        let gate_socket = gate.as_ref().map(|g| g.socket().to_path_buf());
        reporter.info(&format!("Running the agent ({} sandbox)", self.level));
        let job = Job {
            argv,
            env: env.clone(),
            workspace: clone.path.clone(),
            timeout: self.config.agent.timeout.duration(),
            files: files.clone(),
            hold_stdin: false,
            network: egress.clone(),
            gate: gate_socket.clone(),
        };
        let agent_started = Instant::now();
        let mut observer = self.agent.observer();
        let outcome = self.run_job(&job, reporter, &redactor, Some(observer.as_mut()))?;
        let agent_ms = agent_started.elapsed().as_millis() as u64;
        self.summary = observer.summary();
        // Commands the agent ran whose results its hooks could not record: never silent.
        // On the host the hook writes them into the run's HOME; inside a container or a
        // guest that HOME never reaches chant, and the gate counts what it could not record.
        let hook_errors = hook_errors::read(&home);
        let at_gate = gate
            .as_ref()
            .map(gate::RunGate::failures)
            .unwrap_or_default();
        let count = hook_errors.len() + at_gate.count;
        if let Some(last) = at_gate.last.as_ref().or(hook_errors.last()) {
            reporter.warn(&format!(
                "Warning: the agent's hooks could not reach chant's gate {count} time(s); not every command it ran is in the ledger (last: {last})"
            ));
            self.summary
                .details
                .insert("hook_errors".into(), json!(count));
        }
        self.record_refusals(proxy.as_mut(), reporter, recorder)?;
        let failure = match &outcome {
            // What the agent said about its run is the better reason.
            Outcome::Exited(_) if self.summary.error.is_some() => self.summary.error.clone(),
            Outcome::Exited(0) => None,
            Outcome::Exited(code) => Some(format!("the agent exited with code {code}")),
            Outcome::TimedOut => Some(format!(
                "the agent ran past agent.timeout ({})",
                self.config.agent.timeout
            )),
            Outcome::Interrupted => Some("interrupted".to_string()),
        };
        if let Some(reason) = failure {
            return self.fail(reason, clone, recorder, agent_ms);
        }

        // Validation commands, in the same sandbox.
        for command in &self.config.work.validate {
            reporter.info(&format!("Validating: {command}"));
            let job = Job {
                argv: vec!["sh".into(), "-c".into(), command.clone()],
                env: env.clone(),
                workspace: clone.path.clone(),
                timeout: self.config.agent.timeout.duration(),
                files: files.clone(),
                hold_stdin: false,
                network: egress.clone(),
                gate: gate_socket.clone(),
            };
            let started = Instant::now();
            let outcome = self.run_job(&job, reporter, &redactor, None)?;
            self.record_refusals(proxy.as_mut(), reporter, recorder)?;
            let code = match &outcome {
                Outcome::Exited(c) => *c,
                Outcome::TimedOut | Outcome::Interrupted => -1,
            };
            recorder
                .record(vec![self
                    .entry(Event::CommandRun)
                    .detail("command", command.clone())
                    .detail("exit_code", code)
                    .detail("duration_ms", started.elapsed().as_millis() as u64)
                    .detail("phase", "validate")])
                .map_err(WorkError::Ledger)?;
            if code != 0 {
                let reason = match outcome {
                    Outcome::Interrupted => "interrupted".to_string(),
                    Outcome::TimedOut => format!(
                        "validation `{command}` ran past agent.timeout ({})",
                        self.config.agent.timeout
                    ),
                    Outcome::Exited(_) => format!("validation `{command}` failed (exit {code})"),
                };
                return self.fail(reason, clone, recorder, agent_ms);
            }
        }

        // 7 + 8. Collect as data, then judge.
        reporter.info("Checking what the agent changed");
        // The values the agent holds, and the injected ones it must never hold: their
        // placeholders (in `exposed`) are not secrets and may well land, nor are the
        // adapter's settings (a base URL, a model name) unless their value carries a
        // credential.
        let inject = &self.config.agent.secrets.inject;
        let searched: Vec<(String, String)> = exposed
            .iter()
            .filter(|(name, _)| !inject.contains_key(name))
            .filter(|(name, value)| !self.agent.is_setting(name, value))
            .cloned()
            .chain(inject.keys().filter_map(|name| {
                let value = self.secrets.get(name)?;
                Some((name.clone(), value.to_string()))
            }))
            .collect();
        let finder = crate::secrets::SecretFinder::new(&searched);
        let searches = collect::Searches {
            max_file_size: self.config.agent.file_access.max_file_size.bytes(),
            sensitive_words: &self.config.agent.file_access.sensitive_patterns,
            secrets: &finder,
        };
        let collected = collect::collect(repo, clone, start, &generated, &searches)?;
        let (violations, notices) = policy::check(&collected, self.config, &finder);
        for n in &notices {
            reporter.warn(&format!("Notice: {} {}", n.path, n.detail));
        }
        if !violations.is_empty() {
            let entries = violations
                .iter()
                .map(|v| {
                    self.entry(Event::PolicyViolation)
                        .detail("rule", v.rule.clone())
                        .detail("path", v.path.clone())
                        .detail("detail", v.detail.clone())
                })
                .collect();
            recorder.record(entries).map_err(WorkError::Ledger)?;
            let reason = format!("{} policy violation(s); nothing landed", violations.len());
            let mut report = self.fail(reason, clone, recorder, agent_ms)?;
            // Paths come from the agent and may carry a secret (a file named after it):
            // `work::run` masks the whole report (`Report::masked`) before anyone prints it.
            report.violations = violations;
            report.notices = notices;
            return Ok(report);
        }

        // A run whose every attempt was refused changed nothing: failed, and re-runnable.
        if collected.changes.is_empty() && self.summary.refusals > 0 {
            let reason = format!(
                "the agent was refused {} time(s) and changed nothing",
                self.summary.refusals
            );
            return self.fail(reason, clone, recorder, agent_ms);
        }

        // 9. Land — unless Ctrl-C, SIGTERM or `git chant cancel` came while the result was
        // being checked: a stopped run never lands.
        if self.stop.load(std::sync::atomic::Ordering::SeqCst) {
            return self.fail("interrupted".into(), clone, recorder, agent_ms);
        }
        let files: Vec<String> = collected.changes.iter().map(|c| c.path.clone()).collect();
        if repo.refname_to_id(&branch_ref)? != start {
            let reason = format!("branch {branch} moved while the agent worked; nothing landed");
            return self.fail(reason, clone, recorder, agent_ms);
        }
        // Accepted: only now do its blobs enter the main object store.
        collected.objects.accept()?;
        let commit = if collected.changes.is_empty() {
            reporter.warn("The agent changed nothing; nothing to land.");
            None
        } else {
            let message = land::CommitMessage {
                spec_id: self.id.as_str(),
                title: self.spec.title(),
                session: &self.identity.session,
                sandbox: self.level.as_str(),
            };
            Some(land::commit(
                repo,
                start,
                &collected.changes,
                &message,
                self.identity,
            )?)
        };
        let mut entries: Vec<NewEntry> = collected
            .changes
            .iter()
            .map(|c| {
                let mut e = self
                    .entry(Event::FileModified)
                    .detail("path", c.path.clone())
                    .detail("change", c.kind.as_str());
                if let Some((_, mode)) = c.new {
                    e = e.detail("mode", format!("{mode:o}"));
                }
                e
            })
            .collect();
        let mut completed = self.entry(Event::SpecCompleted);
        if let Some(p) = &proxy {
            completed = completed.detail("network", json!(p.allowed_by_host()));
            *self.injected.borrow_mut() = p.injected();
            completed = self.injected_detail(completed);
        }
        entries.push(
            with_details(completed, &self.summary.details)
                .detail("commit", commit.map(|c| c.to_string()))
                .detail("branch", branch.clone())
                .detail("files_changed", files.clone())
                .detail("agent_duration_ms", agent_ms)
                .detail(
                    "notices",
                    notices
                        .iter()
                        .map(|n| format!("{} {}", n.path, n.detail))
                        .collect::<Vec<_>>(),
                ),
        );
        // Recorded first, then published: nothing lands without its ledger entries.
        recorder.record(entries).map_err(WorkError::Ledger)?;
        if let Some(commit) = commit {
            if let Err(e) = land::publish(repo, &branch_ref, start, commit) {
                return self.fail(e.to_string(), clone, recorder, agent_ms);
            }
        }
        let kept = if options.keep {
            match clone::disarm(repo, clone) {
                Ok(()) => Some(clone.path.clone()),
                Err(e) => {
                    reporter.warn(&format!("Warning: {e}"));
                    None
                }
            }
        } else {
            if let Err(e) = clone::discard(&clone.path) {
                reporter.warn(&format!(
                    "Warning: cannot remove the clone at {} ({e}); delete it, and do not run git there",
                    clone.path.display()
                ));
            }
            None
        };
        remove_dir(&run_dir);
        Ok(Report {
            id: self.id.clone(),
            verdict: Verdict::Completed {
                commit: commit.map(|c| c.to_string()),
                files,
            },
            clone: kept,
            log: self.log.clone(),
            violations: Vec::new(),
            notices,
        })
    }

    /// Records the egress proxy's refusals since the last call as `policy_violation`
    /// entries, and says so on the terminal.
    fn record_refusals(
        &self,
        proxy: Option<&mut egress::RunProxy>,
        reporter: &mut dyn Reporter,
        recorder: &mut dyn Recorder,
    ) -> Result<(), WorkError> {
        let Some(proxy) = proxy else { return Ok(()) };
        *self.injected.borrow_mut() = proxy.injected();
        let entries = proxy.new_refusals(|| self.entry(Event::PolicyViolation));
        if entries.is_empty() {
            return Ok(());
        }
        reporter.warn(&format!(
            "The proxy refused {} connection(s) outside agent.network.allowed_hosts (recorded as policy_violation)",
            entries.len()
        ));
        recorder.record(entries).map_err(WorkError::Ledger)
    }

    /// Runs one program under the level, its output masked on the way to the reporter and
    /// the run log.
    fn run_job(
        &self,
        job: &Job,
        reporter: &mut dyn Reporter,
        redactor: &crate::secrets::Redactor,
        observer: Option<&mut dyn crate::agent::Observer>,
    ) -> Result<Outcome, WorkError> {
        let log = open_log(&self.log)?;
        let mut sink = RedactingSink::new(reporter, log, redactor);
        if let Some(observer) = observer {
            sink = sink.observed_by(observer);
        }
        let outcome = self.sandbox.run(job, &mut sink, self.stop);
        sink.finish();
        Ok(outcome?)
    }

    /// `details.injected` (requests per host and secret name) when secrets are injected.
    fn injected_detail(&self, entry: NewEntry) -> NewEntry {
        if self.config.agent.secrets.inject.is_empty() {
            entry
        } else {
            entry.detail("injected", json!(*self.injected.borrow()))
        }
    }

    /// Records how the run failed (or that it was cancelled, when `git chant cancel` asked
    /// for it) and keeps the clone for inspection, disarmed (see [`clone::disarm`]).
    fn fail(
        &self,
        mut reason: String,
        clone: &clone::Clone,
        recorder: &mut dyn Recorder,
        agent_ms: u64,
    ) -> Result<Report, WorkError> {
        if let Err(e) = clone::disarm(&self.project.repo, clone) {
            reason = format!("{reason}; {e}");
        }
        let (entry, verdict) = match take_cancel_request(self.project, &self.id) {
            Some(c) => (
                self.entry(Event::SpecCancelled)
                    .detail("reason", c.reason.clone())
                    .detail("cancelled_by", c.actor),
                Verdict::Cancelled { reason: c.reason },
            ),
            None => (
                with_details(self.entry(Event::SpecFailed), &self.summary.details)
                    .detail("reason", reason.clone())
                    .detail("agent_duration_ms", agent_ms)
                    .detail("clone", clone.path.to_string_lossy().into_owned()),
                Verdict::Failed { reason },
            ),
        };
        recorder.record(vec![entry]).map_err(WorkError::Ledger)?;
        Ok(Report {
            id: self.id.clone(),
            verdict,
            clone: Some(clone.path.clone()),
            log: self.log.clone(),
            violations: Vec::new(),
            notices: Vec::new(),
        })
    }
}

/// `entry` with every key of `details` (what the agent's output said about its run).
fn with_details(entry: NewEntry, details: &serde_json::Map<String, Value>) -> NewEntry {
    details
        .iter()
        .fold(entry, |e, (key, value)| e.detail(key, value.clone()))
}

/// Watches what a run records, so that [`Run::steps`] knows whether `spec_started` was
/// recorded and whether the run has already ended in the ledger.
struct Tracked<'r> {
    inner: &'r mut dyn Recorder,
    started: bool,
    ended: bool,
}

impl Recorder for Tracked<'_> {
    fn record(&mut self, entries: Vec<NewEntry>) -> Result<(), String> {
        let started = entries.iter().any(|e| e.event == Event::SpecStarted);
        let ended = entries.iter().any(|e| {
            matches!(
                e.event,
                Event::SpecCompleted | Event::SpecFailed | Event::SpecCancelled
            )
        });
        self.inner.record(entries)?;
        self.started |= started;
        self.ended |= ended;
        Ok(())
    }
}

fn remove_dir(path: &Path) {
    let _ = std::fs::remove_dir_all(path);
}
