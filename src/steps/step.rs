//! A step: the typed unit of work a plan is made of.
//!
//! A [`Step`] is data: an id, the host it runs on (none for barriers and cluster-wide
//! checks), the ids it waits for, and a [`StepAction`] with the parameters that make it
//! idempotent (which snapshot, which checksum, which initial cluster). It serialises to the
//! plan file and the journal, so it holds no secret: S3 keys and private keys are looked up
//! at run time.

use super::{StepAction, StepKind};
use crate::model::{HostAddr, StepId};
use serde::{Deserialize, Serialize};

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub id: StepId,
    /// The host it acts on; `None` for barriers and cluster-wide steps.
    pub host: Option<HostAddr>,
    /// Steps that must finish first.
    pub after: Vec<StepId>,
    #[serde(flatten)]
    pub action: StepAction,
}

impl Step {
    /// The step's kind.
    pub fn kind(&self) -> StepKind {
        self.action.kind()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HostAddr, StepId};

    #[test]
    fn steps_serialise_with_kebab_case_kinds() {
        let s = Step {
            id: StepId("clean-host@10.0.0.1".into()),
            host: Some(HostAddr("10.0.0.1".into())),
            after: vec![StepId("barrier#1".into())],
            action: StepAction::CleanHost(crate::steps::CleanHost {}),
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["kind"], "clean-host");
        assert_eq!(v["after"][0], "barrier#1");
        let back: Step = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
    }
}
