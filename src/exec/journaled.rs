//! The journal as one consumer of the run's events: the events it keeps become its
//! records. It differs from the other consumers in one way: its records are queued before
//! the event goes on, and the scheduler releases a step's dependents only once the flush
//! that carries its `finished` record has returned.

use super::events::ApplyEventKind;
use crate::local::now_rfc3339;
use crate::state::journal::Record;

/// The record an event leaves in the journal, if it leaves one. Retries, log lines, byte
/// counts and skips leave none: a resume needs to know what began, what finished and what
/// failed, nothing more.
pub fn record_of(kind: &ApplyEventKind) -> Option<Record> {
    Some(match kind {
        ApplyEventKind::RunStarted { already_done, .. } => {
            Record::RunStarted { at: now_rfc3339(), resumed: *already_done > 0 }
        }
        ApplyEventKind::StepStarted { id, attempt, .. } => Record::Started { step: id.clone(), attempt: *attempt },
        ApplyEventKind::StepFinished { id, .. } => Record::Finished { step: id.clone() },
        ApplyEventKind::StepFailed { id, error, .. } => Record::Failed { step: id.clone(), error: error.clone() },
        ApplyEventKind::RunFinished { ok, .. } => Record::RunEnded { at: now_rfc3339(), ok: *ok },
        ApplyEventKind::StepLog { .. }
        | ApplyEventKind::BytesTransferred { .. }
        | ApplyEventKind::BytesMoved { .. }
        | ApplyEventKind::DrillReport { .. }
        | ApplyEventKind::StepRetrying { .. }
        | ApplyEventKind::StepSkipped { .. }
        | ApplyEventKind::RunCancelling { .. }
        | ApplyEventKind::RunNote { .. } => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::step::StepId;
    use crate::steps::StepKind;

    #[test]
    fn a_resume_reads_from_the_records_what_began_finished_and_failed() {
        let id = StepId("clean-host@10.0.0.1".into());
        let started = ApplyEventKind::StepStarted { id: id.clone(), kind: StepKind::CleanHost, host: None, attempt: 1 };
        assert!(matches!(record_of(&started), Some(Record::Started { attempt: 1, .. })));
        let failed =
            ApplyEventKind::StepFailed { id: id.clone(), kind: StepKind::CleanHost, host: None, error: "no".into() };
        assert!(matches!(record_of(&failed), Some(Record::Failed { error, .. }) if error == "no"));
        let resumed = ApplyEventKind::RunStarted { steps: 3, already_done: 2, hosts: 1 };
        assert!(matches!(record_of(&resumed), Some(Record::RunStarted { resumed: true, .. })));
        let retry = ApplyEventKind::StepRetrying { id, host: None, attempt: 1, error: "x".into(), delay_ms: 1 };
        assert!(record_of(&retry).is_none());
    }
}
