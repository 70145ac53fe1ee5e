//! A spec's status has one source of truth: the audit ledger.
//!
//! The ledger records every run (`spec_started`, `spec_completed`, `spec_failed`,
//! `spec_cancelled`); the newest of these decides the status. A spec with no run yet has
//! the status its file declares (`pending` for new specs). The spec file is never rewritten
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
}
