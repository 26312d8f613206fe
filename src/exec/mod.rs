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

pub use crate::secret::printable;
pub use crate::steps::context::{StepCtx, StepError, StepRunner};

use crate::config::HostAddr;
use crate::model::StepId;
use crate::state::journal::JournalError;
use crate::steps::context::{StepOutput, StepReport};
use crate::steps::{Step, StepKind};
use events::{ApplyEvent, ApplyEventKind, Reporter};
use std::time::{Duration, Instant};

/// Turns what a running step reports into the run's events.
struct Emitter<'a> {
    started: Instant,
    reporter: &'a dyn Reporter,
}

impl StepOutput for Emitter<'_> {
    fn report(&self, step: &Step, what: StepReport) {
        let (id, host) = (step.id.clone(), step.host.clone());
        let kind = match what {
            StepReport::Log { level, topic, message } => ApplyEventKind::StepLog { id, host, level, topic, message },
            StepReport::Moved { via, bytes } => ApplyEventKind::BytesMoved { id, host, via, bytes },
            StepReport::Drill { origin, report } => ApplyEventKind::DrillReport { id, host, origin, report },
            StepReport::Bytes { bytes, total } => ApplyEventKind::BytesTransferred { id, host, bytes, total },
        };
        self.reporter.event(&ApplyEvent { elapsed: self.started.elapsed(), kind });
    }
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
