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

use crate::config::HostAddr;
use crate::host::HostError;
use crate::plan::{Plan, Step, StepId, StepKind};
use crate::state::journal::{JournalError, JournalWriter};
use async_trait::async_trait;
use events::{ApplyEvent, ApplyEventKind, Level, Reporter};
use futures::stream::{FuturesUnordered, StreamExt};
use std::collections::{HashSet, VecDeque};
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

/// Runs `plan`, skipping `done` steps, journaling to `journal`.
pub async fn run(
    plan: &Plan,
    runner: &dyn StepRunner,
    journal: &mut JournalWriter,
    done: &HashSet<StepId>,
    opts: &RunOptions,
    reporter: &dyn Reporter,
    redact: &(dyn Fn(&str) -> String + Sync),
) -> Result<RunOutcome, JournalError> {
    let (graph, nodes) = plan.graph().map_err(|e| JournalError::Corrupt {
        path: journal.path().to_path_buf(),
        line: 1,
        reason: e.to_string(),
    })?;
    let redacting = events::Redacting { inner: reporter, redact };
    let reporter: &dyn Reporter = &redacting;
    let n = plan.steps.len();
    let started = Instant::now();
    let mut out = Outlets { journal, reporter, started };
    let mut waiting: Vec<usize> =
        nodes.iter().map(|&ni| graph.neighbors_directed(ni, petgraph::Incoming).count()).collect();
    let dependents: Vec<Vec<usize>> = nodes
        .iter()
        .map(|&ni| {
            let mut d: Vec<usize> = graph.neighbors_directed(ni, petgraph::Outgoing).map(|m| graph[m]).collect();
            d.sort_unstable();
            d
        })
        .collect();
    let mut ready: VecDeque<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
    let limit = opts.parallelism.unwrap_or(usize::MAX).max(1);
    let already_done = plan.steps.iter().filter(|s| done.contains(&s.id)).count();
    let hosts: HashSet<&HostAddr> = plan.steps.iter().filter_map(|s| s.host.as_ref()).collect();
    out.emit(ApplyEventKind::RunStarted { steps: n, already_done, hosts: hosts.len() });

    let mut running = FuturesUnordered::new();
    let mut durable_pending: Vec<usize> = Vec::new();
    let mut in_flush: Vec<usize> = Vec::new();
    let mut outcome = RunOutcome {
        finished: 0,
        skipped: 0,
        failures: Vec::new(),
        not_started: 0,
        journal_error: None,
        stopped: false,
    };
    let stop_requested = async {
        match &opts.stop {
            Some(t) => t.cancelled().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stop_requested);
    let mut cancelling = false;

    fn release(i: usize, dependents: &[Vec<usize>], waiting: &mut [usize], ready: &mut VecDeque<usize>) {
        for &d in &dependents[i] {
            waiting[d] -= 1;
            if waiting[d] == 0 {
                ready.push_back(d);
            }
        }
    }

    loop {
        while !cancelling && running.len() < limit {
            let Some(i) = ready.pop_front() else { break };
            let step = &plan.steps[i];
            if step.kind() == StepKind::Barrier {
                release(i, &dependents, &mut waiting, &mut ready);
                continue;
            }
            if done.contains(&step.id) && step.kind().skippable_on_resume() {
                outcome.skipped += 1;
                out.emit(ApplyEventKind::StepSkipped { id: step.id.clone(), host: step.host.clone() });
                release(i, &dependents, &mut waiting, &mut ready);
                continue;
            }
            out.emit(ApplyEventKind::StepStarted {
                id: step.id.clone(),
                kind: step.kind(),
                host: step.host.clone(),
                attempt: 1,
            });
            running.push(run_step(i, step, runner, opts, reporter, started));
        }
        // Only finished records hold anything up; started records ride along with them.
        // After a failed write nothing is released any more: no dependent may start on a
        // record that may not be on disk.
        if !out.journal.is_flushing() && !durable_pending.is_empty() && outcome.journal_error.is_none() {
            in_flush = std::mem::take(&mut durable_pending);
            out.journal.start_flush();
        }
        if running.is_empty() && !out.journal.is_flushing() && (ready.is_empty() || cancelling) {
            break;
        }
        tokio::select! {
            Some((i, result, took)) = running.next(), if !running.is_empty() => {
                let step = &plan.steps[i];
                match result {
                    Ok(()) => {
                        outcome.finished += 1;
                        durable_pending.push(i);
                        out.emit(ApplyEventKind::StepFinished {
                            id: step.id.clone(), kind: step.kind(), host: step.host.clone(), millis: took.as_millis() as u64,
                        });
                    }
                    Err(mut e) => {
                        e.message = redact(&e.message);
                        e.logs = e.logs.map(|l| redact(&l));
                        out.emit(ApplyEventKind::StepFailed {
                            id: step.id.clone(), kind: step.kind(), host: step.host.clone(), error: e.full(),
                        });
                        if !cancelling {
                            cancelling = true;
                            out.emit(ApplyEventKind::RunCancelling {
                                reason: format!("{} failed; no new step starts, running steps finish", step.id),
                            });
                        }
                        outcome.failures.push(Failure { step: step.id.clone(), kind: step.kind(), host: step.host.clone(), error: e });
                    }
                }
            }
            _ = &mut stop_requested, if !outcome.stopped => {
                outcome.stopped = true;
                if !cancelling {
                    cancelling = true;
                    out.emit(ApplyEventKind::RunCancelling {
                        reason: "interrupted; no new step starts, running steps finish".into(),
                    });
                }
            }
            r = out.journal.finish_flush(), if out.journal.is_flushing() => {
                match r {
                    Ok(()) => {
                        for i in std::mem::take(&mut in_flush) {
                            release(i, &dependents, &mut waiting, &mut ready);
                        }
                    }
                    // A full disk, say: stop starting steps, but let the running ones finish
                    // (cancelling them half-way would leave hosts in between).
                    Err(e) => {
                        in_flush.clear();
                        if !cancelling {
                            cancelling = true;
                            out.emit(ApplyEventKind::RunCancelling {
                                reason: format!("the journal cannot be written ({e}); no new step starts, running steps finish"),
                            });
                        }
                        outcome.journal_error.get_or_insert(e);
                    }
                }
            }
        }
    }
    let real_steps = plan.steps.iter().filter(|s| s.kind() != StepKind::Barrier).count();
    outcome.not_started = real_steps - outcome.finished - outcome.skipped - outcome.failures.len();
    // The end is the one event the journal takes apart from the others: its record must be
    // durable before the run says it ended, and a failure to make it so fails the run.
    out.record(&run_finished(&outcome));
    if let Err(e) = out.journal.sync().await {
        outcome.journal_error.get_or_insert(e);
    }
    out.report(run_finished(&outcome));
    Ok(outcome)
}

fn run_finished(outcome: &RunOutcome) -> ApplyEventKind {
    ApplyEventKind::RunFinished {
        ok: outcome.ok(),
        finished: outcome.finished,
        skipped: outcome.skipped,
        failed: outcome.failures.len(),
        not_started: outcome.not_started,
    }
}

/// Where the scheduler's events go: the journal, then the reporter.
struct Outlets<'a> {
    journal: &'a mut JournalWriter,
    reporter: &'a dyn Reporter,
    started: Instant,
}

impl Outlets<'_> {
    /// Hands an event to every consumer, the journal first.
    fn emit(&mut self, kind: ApplyEventKind) {
        self.record(&kind);
        self.report(kind);
    }

    fn record(&mut self, kind: &ApplyEventKind) {
        if let Some(r) = journaled::record_of(kind) {
            self.journal.push(&r);
        }
    }

    fn report(&self, kind: ApplyEventKind) {
        self.reporter.event(&ApplyEvent { elapsed: self.started.elapsed(), kind });
    }
}

async fn run_step<'a>(
    i: usize,
    step: &'a Step,
    runner: &'a dyn StepRunner,
    opts: &'a RunOptions,
    reporter: &'a dyn Reporter,
    started: Instant,
) -> (usize, Result<(), StepError>, Duration) {
    let t0 = Instant::now();
    let mut attempt = 1;
    loop {
        // The scheduler announced the first attempt (and journaled it); retries are the
        // step's own.
        if attempt > 1 {
            reporter.event(&ApplyEvent {
                elapsed: started.elapsed(),
                kind: ApplyEventKind::StepStarted {
                    id: step.id.clone(),
                    kind: step.kind(),
                    host: step.host.clone(),
                    attempt,
                },
            });
        }
        let ctx = StepCtx { step, attempt, started, reporter };
        match runner.run(step, &ctx).await {
            Ok(()) => return (i, Ok(()), t0.elapsed()),
            Err(e) if e.transient && attempt < opts.max_attempts => {
                let delay = opts.backoff * 2u32.pow(attempt - 1);
                reporter.event(&ApplyEvent {
                    elapsed: started.elapsed(),
                    kind: ApplyEventKind::StepRetrying {
                        id: step.id.clone(),
                        host: step.host.clone(),
                        attempt,
                        error: e.message.clone(),
                        delay_ms: delay.as_millis() as u64,
                    },
                });
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(e) => return (i, Err(e), t0.elapsed()),
        }
    }
}

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
