//! A spec's status has one source of truth: the audit ledger.
//!
//! The ledger records every run (`spec_started`, `spec_completed`, `spec_failed`,
//! `spec_cancelled`); the newest of these decides the status. A completed run that landed
//! nothing (`files_changed` empty) is `unchanged`: reported as such, it can be worked again
//! (nothing was done), yet it satisfies `depends_on` (the agent found nothing to change).
//! A spec with no run yet has the status its file declares (`pending` for new specs). The spec file is never rewritten
//! by a run — that would change the user's work tree and need a commit on the base branch.

use std::collections::HashMap;

use serde_json::Value;

/// Statuses derived from ledger entries (oldest first), by spec id.
pub fn from_ledger<'a>(
    entries: impl IntoIterator<Item = &'a Value>,
) -> HashMap<String, &'static str> {
    let mut out = HashMap::new();
    for e in entries {
        let status = match e["event"].as_str() {
            Some("spec_started") => "in_progress",
            Some("spec_completed") if landed_nothing(e) => "unchanged",
            Some("spec_completed") => "completed",
            Some("spec_failed") => "failed",
            Some("spec_cancelled") => "cancelled",
            _ => continue,
        };
        if let Some(id) = e["spec_id"].as_str() {
            out.insert(id.to_string(), status);
        }
    }
    out
}

/// True when a `spec_completed` entry says no file changed (an entry without the detail,
/// written before it existed, counts as having landed something).
fn landed_nothing(entry: &Value) -> bool {
    entry["details"]["files_changed"]
        .as_array()
        .is_some_and(Vec::is_empty)
}

/// The status of `spec`: its newest run in `ledger` (from [`from_ledger`]), else what its
/// file declares.
pub fn effective<'a>(spec: &'a super::Spec, ledger: &HashMap<String, &'static str>) -> &'a str {
    ledger
        .get(spec.id.as_str())
        .copied()
        .unwrap_or_else(|| spec.declared_status())
}

/// The statuses recorded in the ledger of `repo`. Reads only the run events, through the
/// ledger's query index (which is checked against the ref, never trusted over it).
pub fn of_repository(repo: &git2::Repository) -> HashMap<String, &'static str> {
    let filter = crate::audit::query::Filter {
        events: RUN_EVENTS.iter().map(|e| e.to_string()).collect(),
        ..Default::default()
    };
    let entries: Vec<Value> = crate::audit::query::run(repo, &filter)
        .map(|found| {
            found
                .into_iter()
                .map(|s| Value::Object(s.entry.0))
                .collect()
        })
        .unwrap_or_default();
    from_ledger(entries.iter())
}

/// The specs ready to be worked, in id order: pending (never run, or declared so) with
/// every `depends_on` spec completed (or unchanged). Failed and unchanged specs are not
/// ready: they are re-run by name.
pub fn ready<'a>(
    specs: &'a [super::Spec],
    ledger: &HashMap<String, &'static str>,
) -> Vec<&'a super::Spec> {
    let status: HashMap<&str, &str> = specs
        .iter()
        .map(|s| (s.id.as_str(), effective(s, ledger)))
        .collect();
    specs
        .iter()
        .filter(|s| effective(s, ledger) == "pending")
        .filter(|s| {
            s.depends_on().iter().all(|dep| {
                // A dependency is named by full id or unique suffix (as on the command line).
                let matches: Vec<&&str> = status
                    .iter()
                    .filter(|(id, _)| *id == dep || id.ends_with(dep.as_str()))
                    .map(|(_, st)| st)
                    .collect();
                matches.len() == 1 && matches!(*matches[0], "completed" | "unchanged")
            })
        })
        .collect()
}

/// The events that change a spec's status.
const RUN_EVENTS: &[&str] = &[
    "spec_started",
    "spec_completed",
    "spec_failed",
    "spec_cancelled",
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn newest_run_event_wins() {
        let entries = [
            json!({"event": "spec_created", "spec_id": "a"}),
            json!({"event": "spec_started", "spec_id": "a"}),
            json!({"event": "spec_failed", "spec_id": "a"}),
            json!({"event": "spec_started", "spec_id": "b"}),
            json!({"event": "spec_started", "spec_id": "a"}),
            json!({"event": "spec_completed", "spec_id": "a"}),
        ];
        let map = from_ledger(entries.iter());
        assert_eq!(map.get("a"), Some(&"completed"));
        assert_eq!(map.get("b"), Some(&"in_progress"));
        assert_eq!(map.get("c"), None);
    }

    #[test]
    fn a_completed_run_that_landed_nothing_is_unchanged() {
        let completed = |id: &str, files: serde_json::Value| json!({"event": "spec_completed", "spec_id": id, "details": {"files_changed": files}});
        let entries = [
            completed("a", json!([])),
            completed("b", json!(["hello.txt"])),
            json!({"event": "spec_completed", "spec_id": "c"}),
            completed("d", json!([])),
            json!({"event": "spec_started", "spec_id": "d"}),
            completed("d", json!(["x"])),
        ];
        let map = from_ledger(entries.iter());
        assert_eq!(map.get("a"), Some(&"unchanged"));
        assert_eq!(map.get("b"), Some(&"completed"));
        assert_eq!(
            map.get("c"),
            Some(&"completed"),
            "older entries without the detail"
        );
        assert_eq!(map.get("d"), Some(&"completed"), "the newest run decides");
    }

    #[test]
    fn ready_means_pending_with_every_dependency_completed() {
        let spec = |id: &str, front: &str| {
            let id = crate::spec::SpecId::parse(id).expect("id");
            crate::spec::Spec::parse(id, &format!("---\n{front}---\n\n# T\n")).expect("spec")
        };
        let specs = vec![
            spec("2026-01-22-001-aaa", "status: pending\n"),
            spec("2026-01-22-002-bbb", "status: pending\ndepends_on: [aaa]\n"),
            spec("2026-01-22-003-ccc", "status: pending\n"),
            spec("2026-01-22-004-ddd", "status: pending\ndepends_on: [ccc]\n"),
            spec("2026-01-22-005-eee", "status: pending\n"),
            spec("2026-01-22-006-fff", "status: pending\n"),
            spec("2026-01-22-007-ggg", "status: pending\ndepends_on: [fff]\n"),
        ];
        let ledger = from_ledger(
            [
                json!({"event": "spec_completed", "spec_id": "2026-01-22-001-aaa"}),
                json!({"event": "spec_failed", "spec_id": "2026-01-22-005-eee"}),
                json!({"event": "spec_completed", "spec_id": "2026-01-22-006-fff",
                       "details": {"files_changed": []}}),
            ]
            .iter(),
        );
        let ids: Vec<&str> = ready(&specs, &ledger)
            .iter()
            .map(|s| s.id.as_str())
            .collect();
        assert_eq!(
            ids,
            [
                "2026-01-22-002-bbb",
                "2026-01-22-003-ccc",
                "2026-01-22-007-ggg"
            ]
        );
    }
}
