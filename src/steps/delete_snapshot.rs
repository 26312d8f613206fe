//! `delete-snapshot`: deletes a snapshot (its archive or file, and rkectl's record) from a
//! host, or its objects from S3; `snapshot-delete` names one, `snapshot-prune` picks the
//! recurring ones its policy lets go.

use super::records::s3_error;
use super::{Executor, Kind};
use crate::config::HostAddr;
use crate::etcd::containers;
use crate::steps::context::{StepCtx, StepError};
use crate::model::action::ActionSpec;
use crate::steps::planning::{Builder, CompileError, prune_candidates};
use crate::model::{SnapshotFormat, SnapshotName};
use crate::model::step::DeleteFrom;
use crate::steps::Step;
use crate::steps::effect::{Effect, Resource};
use serde::{Deserialize, Serialize};

/// Deletes a snapshot from the host or from S3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteSnapshot {
    pub snapshot: SnapshotName,
    pub from: DeleteFrom,
}

/// The snapshots of a listing the action deletes: the one named, or what the prune policy
/// lets go, save the snapshot the prune keeps (the newest recurring one).
fn chosen<'a>(b: &Builder<'_>, listed: impl Iterator<Item = (&'a SnapshotName, i64)>) -> Vec<SnapshotName> {
    match b.input.action {
        ActionSpec::EtcdSnapshotDelete { name, .. } => {
            listed.filter(|(n, _)| *n == name).map(|(n, _)| n.clone()).take(1).collect()
        }
        ActionSpec::EtcdSnapshotPrune { policy, .. } => {
            let mut names = prune_candidates(listed, policy, b.input.now);
            names.retain(|n| Some(n) != b.prune_keeps.as_ref());
            names
        }
        _ => Vec::new(),
    }
}

impl Kind for DeleteSnapshot {
    const DESTRUCTIVE: bool = true;

    fn plan_host(b: &mut Builder<'_>, host: &HostAddr) -> Result<Vec<Self>, CompileError> {
        let Some(f) = b.facts(host) else { return Ok(Vec::new()) };
        let listed = f.snapshots.iter().map(|(n, c)| (n, c.modified));
        let names = chosen(b, listed);
        Ok(names.into_iter().map(|snapshot| DeleteSnapshot { snapshot, from: DeleteFrom::Host }).collect())
    }

    fn plan_cluster(b: &mut Builder<'_>) -> Result<Vec<Self>, CompileError> {
        let Some(s3) = b.input.action.s3() else { return Ok(Vec::new()) };
        let Some(facts) = b.input.observed.s3() else { return Ok(Vec::new()) };
        let listed = facts.snapshots.iter().map(|(n, c)| (n, c.modified));
        let names = chosen(b, listed);
        Ok(names
            .into_iter()
            .map(|snapshot| DeleteSnapshot { snapshot, from: DeleteFrom::S3 { target: s3.clone() } })
            .collect())
    }

    fn describe(&self) -> String {
        match &self.from {
            DeleteFrom::Host => format!("delete snapshot {}", self.snapshot),
            DeleteFrom::S3 { target } => format!("delete snapshot {} from {target}", self.snapshot),
        }
    }

    fn effect(&self, fx: &mut Effect<'_>) {
        let shown = Resource::Snapshot(self.snapshot.clone());
        match &self.from {
            DeleteFrom::S3 { .. } => {
                fx.s3().remove(&shown);
            }
            DeleteFrom::Host => {
                if let Some(r) = fx.host() {
                    r.remove(&shown);
                }
            }
        }
    }

    async fn run(&self, ex: &Executor, step: &Step, ctx: &StepCtx<'_>) -> Result<(), StepError> {
        let name = &self.snapshot;
        match (&self.from, step.host.as_ref()) {
            (DeleteFrom::Host, Some(addr)) => {
                let host = ex.host(addr).await?;
                let spec = containers::snapshot_delete(&ex.cluster, std::slice::from_ref(name));
                ex.helper(host.as_ref(), &spec).await?;
                ctx.log("etcd", format!("Deleted snapshot [{name}] on host [{addr}]"));
                Ok(())
            }
            (DeleteFrom::S3 { target }, _) => {
                let s3 = ex.s3.as_ref().ok_or_else(|| StepError::fatal("S3 credentials are needed to delete from S3"))?;
                let client = crate::s3::S3Client::new(s3).await.map_err(s3_error)?;
                for format in [SnapshotFormat::Zip, SnapshotFormat::Raw] {
                    let object =
                        SnapshotName::new(format.file_name(name)).map_err(|e| StepError::fatal(e.to_string()))?;
                    client.delete(&object).await.map_err(s3_error)?;
                }
                ctx.log("etcd", format!("Deleted snapshot [{name}] from {target}"));
                Ok(())
            }
            (DeleteFrom::Host, None) => Err(StepError::fatal("delete-snapshot on a host needs a host")),
        }
    }
}
