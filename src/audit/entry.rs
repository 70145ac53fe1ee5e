//! One ledger entry, in exactly the seed's JSON shape.

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

/// A recorded entry: the JSON object, with every field kept (unknown ones too).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry(pub Map<String, Value>);
