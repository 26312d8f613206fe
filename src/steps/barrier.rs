//! `barrier`: waits for every step before it and does nothing itself; the compiler places
//! barriers where a template says so.

use super::{Executor, Kind};
use crate::exec::{StepCtx, StepError};
use crate::plan::step::Step;
use serde::{Deserialize, Serialize};

/// Waits for every step before it; does nothing itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Barrier {
    /// What the steps after it wait for.
    pub reason: String,
}

impl Kind for Barrier {
    const CHANGES_CLUSTER: bool = false;

    fn describe(&self) -> String {
        format!("wait: {}", self.reason)
    }

    async fn run(&self, _: &Executor, _: &Step, _: &StepCtx<'_>) -> Result<(), StepError> {
        Ok(())
    }
}
