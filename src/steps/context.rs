//! What a running step is given and gives back: its context (the step, the attempt, where
//! its reports go), its errors, and the runner the executor calls. The scheduler (`exec`)
//! drives steps through these without the steps knowing it.

use super::Step;
use crate::agent::drill::DrillReport;
use crate::host::HostError;
use async_trait::async_trait;

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
        let logs = crate::secret::printable(&logs.into());
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

impl From<HostError> for StepError {
    fn from(e: HostError) -> Self {
        StepError { transient: e.is_transient(), message: e.to_string(), logs: None }
    }
}

/// What a running step can report.
pub struct StepCtx<'a> {
    pub step: &'a Step,
    pub attempt: u32,
    out: &'a dyn StepOutput,
}

/// Where a running step's reports go: the executor turns them into the run's events.
pub trait StepOutput: Sync {
    /// `step` reports `what`.
    fn report(&self, step: &Step, what: StepReport);
}

/// What a running step reports.
#[derive(Debug)]
pub enum StepReport {
    /// A log line under a topic.
    Log { level: Level, topic: String, message: String },
    /// Bytes of a snapshot the step moved, and the way they went.
    Moved { via: DataPath, bytes: u64 },
    /// What a snapshot drill found, and where the drilled copy came from.
    Drill { origin: String, report: Box<DrillReport> },
    /// Progress of a transfer.
    Bytes { bytes: u64, total: Option<u64> },
}

/// Severity of a step's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Info,
    Warn,
}

/// The way a step's bytes went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataPath {
    /// Through this workstation's link: read from one host, written to another (each byte
    /// counted once each way).
    Workstation,
    /// Straight between two hosts over the cluster network.
    HostToHost,
}

impl<'a> StepCtx<'a> {
    /// The context of `step`'s `attempt`, reporting to `out`.
    pub fn new(step: &'a Step, attempt: u32, out: &'a dyn StepOutput) -> Self {
        StepCtx { step, attempt, out }
    }

    /// A log line under a topic, like the reference's `[etcd] Saving snapshot …`.
    pub fn log(&self, topic: &str, message: impl Into<String>) {
        let what = StepReport::Log { level: Level::Info, topic: topic.to_string(), message: message.into() };
        self.out.report(self.step, what);
    }

    /// A warning line.
    pub fn warn(&self, topic: &str, message: impl Into<String>) {
        let what = StepReport::Log { level: Level::Warn, topic: topic.to_string(), message: message.into() };
        self.out.report(self.step, what);
    }

    /// Bytes of a snapshot this step moved, and the way they went.
    pub fn moved(&self, via: DataPath, bytes: u64) {
        self.out.report(self.step, StepReport::Moved { via, bytes });
    }

    /// What a snapshot drill found.
    pub fn drill_report(&self, report: DrillReport, origin: &str) {
        self.out.report(self.step, StepReport::Drill { origin: origin.to_string(), report: Box::new(report) });
    }

    /// Progress of a transfer.
    pub fn bytes(&self, bytes: u64, total: Option<u64>) {
        self.out.report(self.step, StepReport::Bytes { bytes, total });
    }
}

/// What each step kind does.
#[async_trait]
pub trait StepRunner: Send + Sync {
    /// Runs one step; must be idempotent.
    async fn run(&self, step: &Step, ctx: &StepCtx<'_>) -> Result<(), StepError>;
}
