//! One ledger entry, in exactly the seed's JSON shape.
//!
//! Owns the entry's fields and names. It never computes hashes (see `chain`) nor touches git.

use serde_json::{Map, Value};

/// The kinds of entry (the seed's "What's Audited" table plus DESIGN.md's additions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    LedgerCreated,
    SpecCreated,
    SpecStarted,
    FileModified,
    CommandRun,
    SpecCompleted,
    SpecFailed,
    SpecCancelled,
    ConfigChanged,
    LockAcquired,
    LockReleased,
    PolicyViolation,
    SpecApproved,
    PushRejected,
    CheckPassed,
    CheckFailed,
}

impl Event {
    pub const ALL: &'static [Event] = &[
        Event::LedgerCreated,
        Event::SpecCreated,
        Event::SpecStarted,
        Event::FileModified,
        Event::CommandRun,
        Event::SpecCompleted,
        Event::SpecFailed,
        Event::SpecCancelled,
        Event::ConfigChanged,
        Event::LockAcquired,
        Event::LockReleased,
        Event::PolicyViolation,
        Event::SpecApproved,
        Event::PushRejected,
        Event::CheckPassed,
        Event::CheckFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Event::LedgerCreated => "ledger_created",
            Event::SpecCreated => "spec_created",
            Event::SpecStarted => "spec_started",
            Event::FileModified => "file_modified",
            Event::CommandRun => "command_run",
            Event::SpecCompleted => "spec_completed",
            Event::SpecFailed => "spec_failed",
            Event::SpecCancelled => "spec_cancelled",
            Event::ConfigChanged => "config_changed",
            Event::LockAcquired => "lock_acquired",
            Event::LockReleased => "lock_released",
            Event::PolicyViolation => "policy_violation",
            Event::SpecApproved => "spec_approved",
            Event::PushRejected => "push_rejected",
            Event::CheckPassed => "check_passed",
            Event::CheckFailed => "check_failed",
        }
    }

    pub fn parse(name: &str) -> Option<Event> {
        Event::ALL.iter().copied().find(|e| e.as_str() == name)
    }
}

/// What a caller asks to record; the ledger adds ts, actor, host, session and the hashes.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEntry {
    pub event: Event,
    pub spec_id: Option<String>,
    pub agent: Option<String>,
    pub sandbox: Option<String>,
    pub details: Map<String, Value>,
}

impl NewEntry {
    pub fn new(event: Event) -> Self {
        NewEntry {
            event,
            spec_id: None,
            agent: None,
            sandbox: None,
            details: Map::new(),
        }
    }

    pub fn spec(mut self, id: impl Into<String>) -> Self {
        self.spec_id = Some(id.into());
        self
    }

    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_string(), value.into());
        self
    }
}

/// The top-level keys every entry has, in the order of the seed's example.
pub const FIELDS: &[&str] = &[
    "ts",
    "event",
    "spec_id",
    "actor",
    "agent",
    "sandbox",
    "host",
    "session",
    "details",
    "prev_hash",
    "hash",
];

/// A recorded entry: the JSON object, with every field kept (unknown ones too).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry(pub Map<String, Value>);

impl Entry {
    /// A string field, `None` when absent or not a string (e.g. `null`).
    pub fn str(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }

    pub fn ts(&self) -> &str {
        self.str("ts").unwrap_or("")
    }

    pub fn event(&self) -> &str {
        self.str("event").unwrap_or("")
    }

    pub fn spec_id(&self) -> Option<&str> {
        self.str("spec_id")
    }

    pub fn actor(&self) -> &str {
        self.str("actor").unwrap_or("")
    }

    pub fn hash(&self) -> &str {
        self.str("hash").unwrap_or("")
    }

    pub fn prev_hash(&self) -> &str {
        self.str("prev_hash").unwrap_or("")
    }

    pub fn details(&self) -> Option<&Map<String, Value>> {
        self.0.get("details").and_then(Value::as_object)
    }

    /// The one-line commit subject: `<event> <spec_id or -> by <actor>` (see `form`).
    pub fn subject(&self) -> String {
        super::form::subject(self.event(), self.spec_id(), self.actor())
    }
}
