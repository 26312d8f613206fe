//! The scheduler: drains a plan's graph, starting every ready step up to the parallelism
//! limit, and releasing a step's dependents only once its `finished` record is durable.

use super::events::{self, ApplyEvent, ApplyEventKind, Reporter};
use super::{Failure, RunOptions, RunOutcome, StepCtx, StepError, StepRunner, journaled};
use crate::config::HostAddr;
use crate::model::step::StepId;
use crate::plan::Plan;
use crate::state::journal::{JournalError, JournalWriter};
use crate::steps::Step;
use futures::stream::{FuturesUnordered, StreamExt};
use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

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
    let redacting = events::Redacting { inner: reporter, redact };
    let reporter: &dyn Reporter = &redacting;
    let started = Instant::now();
    let out = Outlets { journal, reporter, started };
    let mut s = Scheduler::new(plan, done, out)?;
    let limit = opts.parallelism.unwrap_or(usize::MAX).max(1);
    let mut running = FuturesUnordered::new();
    let stop_requested = async {
        match &opts.stop {
            Some(t) => t.cancelled().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stop_requested);
    loop {
        while !s.cancelling && running.len() < limit {
            let Some(i) = s.next_to_run() else { break };
            running.push(run_step(i, &plan.steps[i], runner, opts, reporter, started));
        }
        s.flush_if_due();
        if running.is_empty() && !s.out.journal.is_flushing() && (s.ready.is_empty() || s.cancelling) {
            break;
        }
        tokio::select! {
            Some((i, result, took)) = running.next(), if !running.is_empty() => s.ended(i, result, took, redact),
            _ = &mut stop_requested, if !s.outcome.stopped => s.stop(),
            r = s.out.journal.finish_flush(), if s.out.journal.is_flushing() => s.flushed(r),
        }
    }
    Ok(s.finish().await)
}

/// The state of a run: what waits for what, what is ready, and how it went so far.
struct Scheduler<'a> {
    plan: &'a Plan,
    done: &'a HashSet<StepId>,
    out: Outlets<'a>,
    /// For each step, how many of the steps it waits for are not finished yet.
    waiting: Vec<usize>,
    /// For each step, the steps that wait for it.
    dependents: Vec<Vec<usize>>,
    /// Steps whose dependencies are all finished, in plan order.
    ready: VecDeque<usize>,
    /// Finished steps whose records wait for the next flush.
    durable_pending: Vec<usize>,
    /// Finished steps whose records the flush under way carries.
    in_flush: Vec<usize>,
    /// No new step starts (a failure, a stop, a journal that cannot be written).
    cancelling: bool,
    outcome: RunOutcome,
}

impl<'a> Scheduler<'a> {
    fn new(plan: &'a Plan, done: &'a HashSet<StepId>, mut out: Outlets<'a>) -> Result<Self, JournalError> {
        let (graph, nodes) = plan.graph().map_err(|e| JournalError::Corrupt {
            path: out.journal.path().to_path_buf(),
            line: 1,
            reason: e.to_string(),
        })?;
        let waiting: Vec<usize> =
            nodes.iter().map(|&ni| graph.neighbors_directed(ni, petgraph::Incoming).count()).collect();
        let dependents = nodes
            .iter()
            .map(|&ni| {
                let mut d: Vec<usize> = graph.neighbors_directed(ni, petgraph::Outgoing).map(|m| graph[m]).collect();
                d.sort_unstable();
                d
            })
            .collect();
        let n = plan.steps.len();
        let ready = (0..n).filter(|&i| waiting[i] == 0).collect();
        // Counted as the plan numbers them: points of order (barriers) are not steps.
        let work = || plan.steps.iter().filter(|s| !s.kind().is_order_only());
        let already_done = work().filter(|s| done.contains(&s.id)).count();
        let hosts: HashSet<&HostAddr> = plan.steps.iter().filter_map(|s| s.host.as_ref()).collect();
        out.emit(ApplyEventKind::RunStarted { steps: work().count(), already_done, hosts: hosts.len() });
        let outcome = RunOutcome {
            finished: 0,
            skipped: 0,
            failures: Vec::new(),
            not_started: 0,
            journal_error: None,
            stopped: false,
        };
        Ok(Scheduler {
            plan,
            done,
            out,
            waiting,
            dependents,
            ready,
            durable_pending: Vec::new(),
            in_flush: Vec::new(),
            cancelling: false,
            outcome,
        })
    }

    /// Lets the steps that wait for `i` go once nothing else holds them.
    fn release(&mut self, i: usize) {
        for &d in &self.dependents[i] {
            self.waiting[d] -= 1;
            if self.waiting[d] == 0 {
                self.ready.push_back(d);
            }
        }
    }

    /// The next ready step to run, announced; barriers and steps an earlier run finished
    /// are passed on the way.
    fn next_to_run(&mut self) -> Option<usize> {
        while let Some(i) = self.ready.pop_front() {
            let step = &self.plan.steps[i];
            if step.kind().is_order_only() {
                self.release(i);
                continue;
            }
            if self.done.contains(&step.id) && step.kind().skippable_on_resume() {
                self.outcome.skipped += 1;
                self.out.emit(ApplyEventKind::StepSkipped { id: step.id.clone(), host: step.host.clone() });
                self.release(i);
                continue;
            }
            self.out.emit(ApplyEventKind::StepStarted {
                id: step.id.clone(),
                kind: step.kind(),
                host: step.host.clone(),
                attempt: 1,
            });
            return Some(i);
        }
        None
    }

    /// Starts a flush when finished records wait and none is under way. Only finished
    /// records hold anything up; started records ride along with them. After a failed
    /// write nothing is released any more: no dependent may start on a record that may not
    /// be on disk.
    fn flush_if_due(&mut self) {
        if !self.out.journal.is_flushing() && !self.durable_pending.is_empty() && self.outcome.journal_error.is_none() {
            self.in_flush = std::mem::take(&mut self.durable_pending);
            self.out.journal.start_flush();
        }
    }

    /// A step ended.
    fn ended(&mut self, i: usize, result: Result<(), StepError>, took: Duration, redact: &dyn Fn(&str) -> String) {
        let step = &self.plan.steps[i];
        match result {
            Ok(()) => {
                self.outcome.finished += 1;
                self.durable_pending.push(i);
                self.out.emit(ApplyEventKind::StepFinished {
                    id: step.id.clone(),
                    kind: step.kind(),
                    host: step.host.clone(),
                    millis: took.as_millis() as u64,
                });
            }
            Err(mut e) => {
                e.message = redact(&e.message);
                e.logs = e.logs.map(|l| redact(&l));
                self.out.emit(ApplyEventKind::StepFailed {
                    id: step.id.clone(),
                    kind: step.kind(),
                    host: step.host.clone(),
                    error: e.full(),
                });
                self.cancel(format!("{} failed; no new step starts, running steps finish", step.id));
                let failure = Failure { step: step.id.clone(), kind: step.kind(), host: step.host.clone(), error: e };
                self.outcome.failures.push(failure);
            }
        }
    }

    /// The run was asked to stop.
    fn stop(&mut self) {
        self.outcome.stopped = true;
        self.cancel("interrupted; no new step starts, running steps finish".into());
    }

    /// The flush under way returned.
    fn flushed(&mut self, r: Result<(), JournalError>) {
        match r {
            Ok(()) => {
                for i in std::mem::take(&mut self.in_flush) {
                    self.release(i);
                }
            }
            // A full disk, say: stop starting steps, but let the running ones finish
            // (cancelling them half-way would leave hosts in between).
            Err(e) => {
                self.in_flush.clear();
                self.cancel(format!("the journal cannot be written ({e}); no new step starts, running steps finish"));
                self.outcome.journal_error.get_or_insert(e);
            }
        }
    }

    /// No new step starts from now on; said once.
    fn cancel(&mut self, reason: String) {
        if !self.cancelling {
            self.cancelling = true;
            self.out.emit(ApplyEventKind::RunCancelling { reason });
        }
    }

    /// Counts what never started, writes the run's end, and says it ended.
    async fn finish(mut self) -> RunOutcome {
        let o = &mut self.outcome;
        let real_steps = self.plan.step_count();
        o.not_started = real_steps - o.finished - o.skipped - o.failures.len();
        // The end is the one event the journal takes apart from the others: its record must
        // be durable before the run says it ended, and a failure to make it so fails the run.
        self.out.record(&run_finished(&self.outcome));
        if let Err(e) = self.out.journal.sync().await {
            self.outcome.journal_error.get_or_insert(e);
        }
        self.out.report(run_finished(&self.outcome));
        self.outcome
    }
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
        let out = super::Emitter { started, reporter };
        let ctx = StepCtx::new(step, attempt, &out);
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
