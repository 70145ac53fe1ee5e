//! The API sequence of one run: create the Job suspended, create the other objects owned
//! by it, start it, WATCH it (resuming from the last resourceVersion after a dropped
//! connection, relisting after `410 Gone`), stream the pod's log to the sink, and delete
//! the Job (propagation Background: the cluster removes the pod and the owned objects)
//! whatever happens — completion, failure, timeout, Ctrl-C or `git chant cancel`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchParams};
use kube::core::WatchEvent;

use super::logs::LogTail;
use super::manifests::{self, Manifests, CONTAINER};
use crate::sandbox::{Outcome, OutputSink, SandboxError};

/// A watch that breaks is reopened this many times in a row before the run gives up.
const WATCH_RETRIES: u32 = 8;
/// Seconds the server keeps one watch open (it then ends it; chant reopens it).
const WATCH_TIMEOUT: u32 = 290;

/// Connects with the kubeconfig (`KUBECONFIG`, else `~/.kube/config`) or in-cluster.
pub async fn connect() -> Result<kube::Client, SandboxError> {
    let config = kube::Config::infer()
        .await
        .map_err(|e| SandboxError::Missing {
            what: "a Kubernetes configuration".into(),
            fix: format!(
                "{e}; set KUBECONFIG or create ~/.kube/config (`git chant doctor` checks)"
            ),
        })?;
    kube::Client::try_from(config).map_err(|e| api("connect", e))
}

fn api(what: &str, e: kube::Error) -> SandboxError {
    let fix = match &e {
        kube::Error::Api(r) if r.code == 401 => {
            "\n  the cluster refused the kubeconfig's credentials; refresh them (`kubectl auth whoami`)"
        }
        kube::Error::Api(r) if r.code == 403 => {
            "\n  the kubeconfig's identity lacks a permission; grant it the Role in docs/kubernetes.md (\"RBAC for chant itself\")"
        }
        kube::Error::Api(r) if r.code == 404 => {
            "\n  does agent.kubernetes.namespace exist? (`kubectl create namespace <name>`)"
        }
        _ => "",
    };
    SandboxError::Kubernetes(format!("{what}: {e}{fix}"))
}

/// Runs the manifests to completion and deletes the Job.
pub async fn run(
    client: kube::Client,
    namespace: &str,
    mut m: Manifests,
    sink: &mut dyn OutputSink,
    stop: &Arc<AtomicBool>,
    timeout: Duration,
) -> Result<Outcome, SandboxError> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let mut job = m.job.clone();
    if let Some(spec) = &mut job.spec {
        // Nothing starts before its Secret and ServiceAccount exist.
        spec.suspend = Some(true);
    }
    let created = jobs
        .create(&PostParams::default(), &job)
        .await
        .map_err(|e| api("create the Job", e))?;
    let name = created.metadata.name.clone().unwrap_or_default();
    let result = async {
        manifests::set_owner(&mut m, &created);
        create_owned(&client, namespace, &m).await?;
        let started = jobs
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"suspend": false}})),
            )
            .await
            .map_err(|e| api("start the Job", e))?;
        let version = started
            .metadata
            .resource_version
            .clone()
            .unwrap_or_default();
        follow(&client, namespace, &name, version, sink, stop, timeout).await
    }
    .await;
    let deleted = delete(&jobs, &name).await;
    let outcome = result?;
    deleted?;
    Ok(outcome)
}

/// Deletes the Job (Background propagation: the cluster removes its pod and the objects it
/// owns). Retried, as cleanup must not fail on one broken connection; gone already is done.
async fn delete(jobs: &Api<Job>, name: &str) -> Result<(), SandboxError> {
    let mut last = None;
    for attempt in 0..3u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        }
        match jobs.delete(name, &DeleteParams::background()).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => Err(api(
            &format!("delete Job {name} (delete it with `kubectl delete job {name}`)"),
            e,
        )),
        None => Ok(()),
    }
}

async fn create_owned(client: &kube::Client, ns: &str, m: &Manifests) -> Result<(), SandboxError> {
    let pp = PostParams::default();
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(&pp, &m.service_account)
        .await
        .map_err(|e| api("create the ServiceAccount", e))?;
    Api::<Role>::namespaced(client.clone(), ns)
        .create(&pp, &m.role)
        .await
        .map_err(|e| api("create the Role", e))?;
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .create(&pp, &m.role_binding)
        .await
        .map_err(|e| api("create the RoleBinding", e))?;
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&pp, &m.secret)
        .await
        .map_err(|e| api("create the Secret", e))?;
    if let Some(np) = &m.network_policy {
        Api::<NetworkPolicy>::namespaced(client.clone(), ns)
            .create(&pp, np)
            .await
            .map_err(|e| api("create the NetworkPolicy", e))?;
    }
    Ok(())
}

/// How a Job ended, from its conditions.
fn finished(job: &Job) -> Option<Ended> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .filter(|c| c.status == "True")
        .find_map(|c| match c.type_.as_str() {
            "Complete" => Some(Ended::Complete),
            "Failed" if c.reason.as_deref() == Some("DeadlineExceeded") => Some(Ended::Deadline),
            "Failed" => Some(Ended::Failed),
            _ => None,
        })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Complete,
    Failed,
    Deadline,
}

fn started(job: &Job) -> bool {
    job.status.as_ref().is_some_and(|s| {
        s.active.unwrap_or(0) > 0
            || s.ready.unwrap_or(0) > 0
            || s.succeeded.unwrap_or(0) > 0
            || s.failed.unwrap_or(0) > 0
    })
}

async fn follow(
    client: &kube::Client,
    ns: &str,
    name: &str,
    mut version: String,
    sink: &mut dyn OutputSink,
    stop: &Arc<AtomicBool>,
    timeout: Duration,
) -> Result<Outcome, SandboxError> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let wp = WatchParams::default()
        .fields(&format!("metadata.name={name}"))
        .timeout(WATCH_TIMEOUT);
    let mut watch = jobs
        .watch(&wp, &version)
        .await
        .map_err(|e| api("watch the Job", e))?
        .boxed();
    let deadline = Instant::now() + timeout;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut logs = LogTail::new(pods.clone(), name);
    let mut want_logs = false;
    let mut failures = 0u32;
    let mut buf = vec![0u8; 8192];
    let ended = loop {
        tokio::select! {
            event = watch.try_next() => match event {
                Ok(Some(WatchEvent::Added(job) | WatchEvent::Modified(job))) => {
                    failures = 0;
                    if let Some(v) = &job.metadata.resource_version {
                        version = v.clone();
                    }
                    want_logs |= started(&job);
                    if let Some(ended) = finished(&job) {
                        break ended;
                    }
                }
                Ok(Some(WatchEvent::Bookmark(b))) => version = b.metadata.resource_version,
                Ok(Some(WatchEvent::Deleted(_))) => {
                    return Err(SandboxError::Kubernetes(format!(
                        "Job {name} was deleted by someone else before it finished"
                    )))
                }
                Ok(Some(WatchEvent::Error(e))) if e.code == 410 => {
                    // Our version is too old: read the Job afresh and watch from there.
                    let job = jobs.get(name).await.map_err(|e| api("read the Job", e))?;
                    version = job.metadata.resource_version.clone().unwrap_or_default();
                    want_logs |= started(&job);
                    if let Some(ended) = finished(&job) {
                        break ended;
                    }
                    watch = rewatch(&jobs, &wp, &version, &mut failures).await?;
                }
                Ok(Some(WatchEvent::Error(e))) => {
                    return Err(SandboxError::Kubernetes(format!("watching Job {name}: {}", e.message)))
                }
                // The server ended the watch (it does so every WATCH_TIMEOUT seconds; not
                // a failure) or the connection dropped: resume from the last version seen,
                // so no event is missed.
                Ok(None) => {
                    failures = 0;
                    watch = rewatch(&jobs, &wp, &version, &mut failures).await?;
                }
                Err(_) => {
                    watch = rewatch(&jobs, &wp, &version, &mut failures).await?;
                }
            },
            read = logs.read(&mut buf) => logs.handle(read, &buf, sink),
            _ = tick.tick() => {
                if stop.load(Ordering::SeqCst) {
                    return Ok(Outcome::Interrupted);
                }
                if Instant::now() >= deadline {
                    return Ok(Outcome::TimedOut);
                }
                if want_logs && !logs.is_open() {
                    logs.ensure_open().await;
                }
            }
        }
    };
    // The pod has ended; its last lines may still be on their way (or never shown).
    logs.drain(sink, Duration::from_secs(5)).await;
    Ok(match ended {
        Ended::Complete => Outcome::Exited(0),
        Ended::Deadline => Outcome::TimedOut,
        Ended::Failed => Outcome::Exited(match &logs.pod {
            Some(pod) => exit_code(&pods, pod).await,
            None => 1,
        }),
    })
}

async fn rewatch(
    jobs: &Api<Job>,
    wp: &WatchParams,
    version: &str,
    failures: &mut u32,
) -> Result<futures_util::stream::BoxStream<'static, kube::Result<WatchEvent<Job>>>, SandboxError> {
    loop {
        *failures += 1;
        if *failures > WATCH_RETRIES {
            return Err(SandboxError::Kubernetes(format!(
                "lost the watch on the Job {WATCH_RETRIES} times in a row; the Job is deleted"
            )));
        }
        // 100 ms, 200 ms, … up to 6.4 s between attempts.
        let pause = Duration::from_millis(100 << (*failures - 1).min(6));
        tokio::time::sleep(pause).await;
        match jobs.watch(wp, version).await {
            Ok(stream) => return Ok(stream.boxed()),
            Err(_) => continue,
        }
    }
}

async fn exit_code(pods: &Api<Pod>, pod: &str) -> i32 {
    let Ok(p) = pods.get(pod).await else {
        return 1;
    };
    p.status
        .and_then(|s| s.container_statuses)
        .and_then(|cs| cs.into_iter().find(|c| c.name == CONTAINER))
        .and_then(|c| c.state)
        .and_then(|s| s.terminated)
        .map(|t| t.exit_code)
        .filter(|c| *c != 0)
        .unwrap_or(1)
}

/// What `git chant doctor` learns: the API server and the kubeconfig context, once a
/// list of Jobs in `namespace` has answered (within 10 s).
pub async fn probe(namespace: &str) -> Result<(String, Option<String>), SandboxError> {
    let context = kube::config::Kubeconfig::read()
        .ok()
        .and_then(|k| k.current_context);
    let config = kube::Config::infer()
        .await
        .map_err(|e| SandboxError::Missing {
            what: "a Kubernetes configuration".into(),
            fix: format!("{e}; set KUBECONFIG or create ~/.kube/config"),
        })?;
    let server = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).map_err(|e| api("connect", e))?;
    let jobs = Api::<Job>::namespaced(client, namespace);
    let params = ListParams::default().limit(1);
    let list = jobs.list(&params);
    match tokio::time::timeout(Duration::from_secs(10), list).await {
        Ok(Ok(_)) => Ok((server, context)),
        Ok(Err(e)) => Err(api(
            &format!("listing Jobs in namespace {namespace} at {server}"),
            e,
        )),
        Err(_) => Err(SandboxError::Kubernetes(format!(
            "{server} did not answer within 10 s"
        ))),
    }
}
