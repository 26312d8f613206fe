//! The executor: how a plan becomes a run.
//!
//! # Rough outline
//! 1. A [`Plan`](crate::plan::Plan) (immutable, built by the compiler) is handed to [`run`]
//!    with a [`StepRunner`] (what each step kind does), the journal, and the steps an
//!    earlier, interrupted run already finished.
//! 2. [`run`] builds the draining state: for each step the number of unfinished steps it
//!    waits for, and a ready queue in plan order.
//! 3. The loop starts every ready step up to the parallelism limit, waits for any step to
//!    end or for the journal's flush to land, and releases the dependents of a step only
//!    when its `finished` record is durable.
//! 4. On the first failure it stops starting steps, lets running ones finish, and reports.
//!
//! # Parallelism
//! Steps are futures polled together (they wait on SSH and Docker, not on the CPU); the
//! limit is a count of running steps, unbounded by default, `--parallelism N` otherwise.
//! Barriers are steps that do nothing: they complete the moment every step before them has,
//! so "no host is cleaned before every host passed pre-flight" is an edge in the graph, not
//! a special case in the loop.
//!
//! # Events
//! The scheduler says what happens as typed events ([`events::ApplyEventKind`]) and
//! nothing else: the journal ([`journaled`]), the progress display, the JSON-lines stream
//! and the log lines are consumers of the same events. The journal is handed each event
//! first, because its flushes gate the steps that wait.
//!
//! # Resumability
//! Every step start and finish goes to the journal (see [`crate::state::journal`]). A step
//! whose `finished` record exists is skipped on resume, except dialing, which builds
//! process-local state. A started-but-unfinished step runs again, so steps are written to
//! be idempotent. Because dependents start only after the record of their dependency is
//! durable, a crash can lose at most records of steps whose dependents have not started:
//! re-running those is what idempotency is for.
//!
//! # Faults
//! A step error says whether it is transient (a dropped SSH link, a Docker daemon
//! restarting, an S3 hiccup). Transient errors are retried with exponential backoff a
//! bounded number of times; permanent ones fail the step at once.

pub mod events;
pub mod journaled;
mod scheduler;

use crate::config::HostAddr;
use crate::host::HostError;
use crate::plan::{Step, StepId, StepKind};
use crate::state::journal::JournalError;
use async_trait::async_trait;
use events::{ApplyEvent, ApplyEventKind, Level, Reporter};
use std::time::{Duration, Instant};

/// Why a step failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    pub message: String,
    /// Trying again may help.
    pub transient: bool,
    /// The helper container's output, when one failed.
    pub logs: Option<String>,
}

impl StepError {
    /// A permanent failure.
    pub fn fatal(message: impl Into<String>) -> Self {
        StepError { message: message.into(), transient: false, logs: None }
    }

    /// A failure worth retrying.
    pub fn transient(message: impl Into<String>) -> Self {
        StepError { message: message.into(), transient: true, logs: None }
    }

    /// Attaches a container's logs.
    pub fn with_logs(mut self, logs: impl Into<String>) -> Self {
        let logs = printable(&logs.into());
        if !logs.trim().is_empty() {
            self.logs = Some(logs);
        }
        self
    }

    /// The message with the logs' last lines, as shown to users.
    pub fn full(&self) -> String {
        match &self.logs {
            Some(l) => {
                let tail: Vec<&str> = l.lines().rev().take(12).collect::<Vec<_>>().into_iter().rev().collect();
                format!("{}\n  its output:\n    {}", self.message, tail.join("\n    "))
            }
            None => self.message.clone(),
        }
    }
}

pub use crate::secret::printable;

impl From<HostError> for StepError {
    fn from(e: HostError) -> Self {
        StepError { transient: e.is_transient(), message: e.to_string(), logs: None }
    }
}

/// What a running step can report.
pub struct StepCtx<'a> {
    pub step: &'a Step,
    pub attempt: u32,
    started: Instant,
    reporter: &'a dyn Reporter,
}

impl StepCtx<'_> {
    fn emit(&self, kind: ApplyEventKind) {
        self.reporter.event(&ApplyEvent { elapsed: self.started.elapsed(), kind });
    }

    /// A log line under a topic, like the reference's `[etcd] Saving snapshot …`.
    pub fn log(&self, topic: &str, message: impl Into<String>) {
        self.emit(ApplyEventKind::StepLog {
            id: self.step.id.clone(),
            host: self.step.host.clone(),
            level: Level::Info,
            topic: topic.to_string(),
            message: message.into(),
        });
    }

    /// A warning line.
    pub fn warn(&self, topic: &str, message: impl Into<String>) {
        self.emit(ApplyEventKind::StepLog {
            id: self.step.id.clone(),
            host: self.step.host.clone(),
            level: Level::Warn,
            topic: topic.to_string(),
            message: message.into(),
        });
    }

    /// Bytes of a snapshot this step moved, and the way they went.
    pub fn moved(&self, via: events::DataPath, bytes: u64) {
        self.emit(ApplyEventKind::BytesMoved { id: self.step.id.clone(), host: self.step.host.clone(), via, bytes });
    }

    /// What a snapshot drill found.
    pub fn drill_report(&self, report: crate::agent::drill::DrillReport, origin: &str) {
        self.emit(ApplyEventKind::DrillReport {
            id: self.step.id.clone(),
            host: self.step.host.clone(),
            origin: origin.to_string(),
            report: Box::new(report),
        });
    }

    /// Progress of a transfer.
    pub fn bytes(&self, bytes: u64, total: Option<u64>) {
        self.emit(ApplyEventKind::BytesTransferred {
            id: self.step.id.clone(),
            host: self.step.host.clone(),
            bytes,
            total,
        });
    }
}

/// What each step kind does.
#[async_trait]
pub trait StepRunner: Send + Sync {
    /// Runs one step; must be idempotent.
    async fn run(&self, step: &Step, ctx: &StepCtx<'_>) -> Result<(), StepError>;
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// At most this many steps at once; `None` is unbounded.
    pub parallelism: Option<usize>,
    /// Attempts for a step that fails with transient errors.
    pub max_attempts: u32,
    /// Delay before the first retry; doubled each time.
    pub backoff: Duration,
    /// Cancelled to stop the run (Ctrl-C): no new step starts, running ones finish.
    pub stop: Option<tokio_util::sync::CancellationToken>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { parallelism: None, max_attempts: 3, backoff: Duration::from_secs(1), stop: None }
    }
}

/// A step that failed.
#[derive(Debug, Clone)]
pub struct Failure {
    pub step: StepId,
    pub kind: StepKind,
    pub host: Option<HostAddr>,
    pub error: StepError,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.host {
            Some(h) => write!(f, "step {} on host {h} failed: {}", self.kind, self.error.full()),
            None => write!(f, "step {} failed: {}", self.kind, self.error.full()),
        }
    }
}

/// How a run ended.
#[derive(Debug)]
pub struct RunOutcome {
    pub finished: usize,
    pub skipped: usize,
    pub failures: Vec<Failure>,
    pub not_started: usize,
    /// The journal could not be written: the run stopped starting steps, and finished the
    /// running ones, but which of them is recorded as done is unknown.
    pub journal_error: Option<JournalError>,
    /// The run was asked to stop ([`RunOptions::stop`]) before every step had started.
    pub stopped: bool,
}

impl RunOutcome {
    /// Every step finished or was already done, and the journal says so.
    pub fn ok(&self) -> bool {
        self.failures.is_empty() && self.not_started == 0 && self.journal_error.is_none()
    }
}

pub use scheduler::run;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_helpers_output_cannot_drive_the_terminal() {
        let e = StepError::fatal("x").with_logs("ok\n\x1b]0;pwned\x07\x1b[2Jdone\tend\r");
        let logs = e.logs.unwrap();
        assert!(!logs.contains('\x1b') && !logs.contains('\x07') && !logs.contains('\r'), "{logs:?}");
        assert!(logs.contains("ok\n") && logs.contains("done\tend"), "{logs:?}");
    }
}
