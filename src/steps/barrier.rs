//! `barrier`: waits for every step before it and does nothing itself; the compiler places
//! barriers where a template says so.

use super::{Executor, Kind};
use crate::steps::context::{StepCtx, StepError};
use crate::steps::Step;
use serde::{Deserialize, Serialize};

/// Waits for every step before it; does nothing itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Barrier {
    /// What the steps after it wait for.
    pub reason: String,
}

impl Kind for Barrier {
    const CHANGES_CLUSTER: bool = false;
    const ONLY_LOOKS: bool = true;
    const ORDER_ONLY: bool = true;

    fn describe(&self) -> String {
        format!("barrier: {}", self.reason)
    }

    async fn run(&self, _: &Executor, _: &Step, _: &StepCtx<'_>) -> Result<(), StepError> {
        Ok(())
    }
}
