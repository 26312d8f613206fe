//! `discard-staged`: removes what a restore or a drill staged on a host (copies kept apart
//! from the host's own, unpacked databases), so nothing is left behind.

use super::{Executor, Kind};
use crate::config::HostAddr;
use crate::steps::context::{StepCtx, StepError};
use crate::layout;
use crate::steps::planning::{Builder, CompileError};
use crate::model::{SnapshotFormat, SnapshotLocation, SnapshotName};
use crate::steps::{Step, StepAction, StepKind};
use crate::steps::effect::{Effect, Resource};
use serde::{Deserialize, Serialize};

/// Removes what the restore staged (copies and unpacked databases).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscardStaged {
    pub snapshot: SnapshotName,
}

impl Kind for DiscardStaged {
    fn plan_host(b: &mut Builder<'_>, host: &HostAddr) -> Result<Vec<Self>, CompileError> {
        let Some(name) = b.restored_snapshot() else { return Ok(Vec::new()) };
        let staged = b.planned.contains(&(host.clone(), StepKind::UnpackSnapshot))
            || b.steps.iter().any(|s| {
                s.host.as_ref() == Some(host)
                    && matches!(&s.action, StepAction::FetchSnapshot(f) if f.into == SnapshotLocation::Staged)
            });
        Ok(if staged { vec![DiscardStaged { snapshot: name.clone() }] } else { Vec::new() })
    }

    fn describe(&self) -> String {
        format!("remove what was staged for {}", self.snapshot)
    }

    fn effect(&self, fx: &mut Effect<'_>) {
        if let Some(r) = fx.host() {
            r.remove(&Resource::Staged(self.snapshot.clone()));
        }
    }

    async fn run(&self, ex: &Executor, step: &Step, ctx: &StepCtx<'_>) -> Result<(), StepError> {
        let addr = ex.on(step)?;
        let name = &self.snapshot;
        let host = ex.host(addr).await?;
        let mut removed = Vec::new();
        let staged = [
            layout::snapshot_file(name, SnapshotFormat::Raw, SnapshotLocation::Staged),
            layout::snapshot_file(name, SnapshotFormat::Zip, SnapshotLocation::Staged),
            layout::unpacked_db(name),
        ];
        for path in staged {
            if host.remove_file(&path).await? {
                removed.push(path);
            }
        }
        if !removed.is_empty() {
            ctx.log("etcd", format!("Removed what the restore staged on host [{addr}]: {}", removed.join(", ")));
        }
        Ok(())
    }
}
