//! Events: the only way a run talks to the outside.
//!
//! The scheduler and the steps emit [`ApplyEvent`]s; reporters (progress bars, plain log
//! lines, `--json` lines) consume them. Nothing that runs steps writes to the terminal.

pub use crate::steps::context::{DataPath, Level};

use crate::model::{HostAddr, StepId};
use crate::steps::StepKind;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// Something that happened during an apply.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyEvent {
    /// Time since the run started.
    #[serde(serialize_with = "secs")]
    pub elapsed: Duration,
    #[serde(flatten)]
    pub kind: ApplyEventKind,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

/// What happened.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum ApplyEventKind {
    /// The run began; `already_done` steps finished in an earlier, interrupted run.
    RunStarted { steps: usize, already_done: usize, hosts: usize },
    /// A step began.
    StepStarted { id: StepId, kind: StepKind, host: Option<HostAddr>, attempt: u32 },
    /// A step said something worth a log line (the reference's `[etcd] …` lines).
    StepLog { id: StepId, host: Option<HostAddr>, level: Level, topic: String, message: String },
    /// Bytes moved by a step (snapshot copies, uploads).
    BytesTransferred { id: StepId, host: Option<HostAddr>, bytes: u64, total: Option<u64> },
    /// Bytes of a snapshot a step moved, and the way they went (once per copy, when done).
    BytesMoved { id: StepId, host: Option<HostAddr>, via: DataPath, bytes: u64 },
    /// What a snapshot drill found on its host.
    DrillReport {
        id: StepId,
        host: Option<HostAddr>,
        /// Where the drilled copy came from (`host H's own copy`, `a copy from s3://…`).
        origin: String,
        report: Box<crate::agent::drill::DrillReport>,
    },
    /// A step failed with a transient fault and will be tried again.
    StepRetrying { id: StepId, host: Option<HostAddr>, attempt: u32, error: String, delay_ms: u64 },
    /// A step finished.
    StepFinished { id: StepId, kind: StepKind, host: Option<HostAddr>, millis: u64 },
    /// A step was finished by an earlier run and is skipped.
    StepSkipped { id: StepId, host: Option<HostAddr> },
    /// A step failed for good.
    StepFailed { id: StepId, kind: StepKind, host: Option<HostAddr>, error: String },
    /// After a failure no new step starts; running ones finish.
    RunCancelling { reason: String },
    /// Something the apply did around the steps, worth a log line (RKE's state written).
    RunNote { level: Level, message: String },
    /// The run ended.
    RunFinished { ok: bool, finished: usize, skipped: usize, failed: usize, not_started: usize },
}

/// Bytes moved by an apply, by the way they went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Traffic {
    /// Bytes that crossed this workstation's link (down from a host plus up to another).
    pub workstation_bytes: u64,
    /// Bytes sent straight from one host to another.
    pub host_to_host_bytes: u64,
}

/// Adds up the [`ApplyEventKind::BytesMoved`] events of a run.
#[derive(Default)]
pub struct TrafficCounter(std::sync::Mutex<Traffic>);

impl TrafficCounter {
    /// What was counted so far.
    pub fn total(&self) -> Traffic {
        *self.0.lock().expect("traffic lock")
    }
}

impl Reporter for TrafficCounter {
    fn event(&self, e: &ApplyEvent) {
        if let ApplyEventKind::BytesMoved { via, bytes, .. } = &e.kind {
            let mut t = self.0.lock().expect("traffic lock");
            match via {
                DataPath::Workstation => t.workstation_bytes += bytes,
                DataPath::HostToHost => t.host_to_host_bytes += bytes,
            }
        }
    }
}

/// Consumes events.
pub trait Reporter: Send + Sync {
    /// Called for every event, in order.
    fn event(&self, e: &ApplyEvent);
}

/// Sends each event to several reporters.
#[derive(Clone, Default)]
pub struct Fanout(pub Vec<Arc<dyn Reporter>>);

impl Reporter for Fanout {
    fn event(&self, e: &ApplyEvent) {
        for r in &self.0 {
            r.event(e);
        }
    }
}

/// Passes events on with every text that may quote a remote message (errors, retries, log
/// lines, reasons) redacted and made printable: whatever a reporter writes, no secret and
/// no terminal escape sequence reaches it.
pub struct Redacting<'a> {
    pub inner: &'a dyn Reporter,
    pub redact: &'a (dyn Fn(&str) -> String + Sync),
}

impl Reporter for Redacting<'_> {
    fn event(&self, e: &ApplyEvent) {
        let r = |t: &str| crate::secret::printable(&(self.redact)(t));
        let kind = match &e.kind {
            ApplyEventKind::StepLog { id, host, level, topic, message } => ApplyEventKind::StepLog {
                id: id.clone(),
                host: host.clone(),
                level: *level,
                topic: topic.clone(),
                message: r(message),
            },
            ApplyEventKind::StepRetrying { id, host, attempt, error, delay_ms } => ApplyEventKind::StepRetrying {
                id: id.clone(),
                host: host.clone(),
                attempt: *attempt,
                error: r(error),
                delay_ms: *delay_ms,
            },
            ApplyEventKind::StepFailed { id, kind, host, error } => {
                ApplyEventKind::StepFailed { id: id.clone(), kind: *kind, host: host.clone(), error: r(error) }
            }
            ApplyEventKind::RunCancelling { reason } => ApplyEventKind::RunCancelling { reason: r(reason) },
            other => other.clone(),
        };
        self.inner.event(&ApplyEvent { elapsed: e.elapsed, kind });
    }
}

/// Keeps every event (tests).
#[derive(Default)]
pub struct Recorder(pub std::sync::Mutex<Vec<ApplyEvent>>);

impl Reporter for Recorder {
    fn event(&self, e: &ApplyEvent) {
        self.0.lock().expect("recorder lock").push(e.clone());
    }
}

impl Recorder {
    /// The events so far.
    pub fn events(&self) -> Vec<ApplyEvent> {
        self.0.lock().expect("recorder lock").clone()
    }
}
