//! `health-check`: waits until every member answers healthy and, after a restore, at one
//! revision (they all hold the same data).

use super::{Executor, Kind};
use crate::config::{HostAddr, Node};
use crate::steps::context::{StepCtx, StepError};
use crate::model::action::ActionSpec;
use crate::steps::planning::{Builder, CompileError};
use crate::steps::{Step, StepKind};
use serde::{Deserialize, Serialize};

/// Checks that every member is healthy and, after a restore, holds the same data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub members: Vec<HostAddr>,
    pub same_revision: bool,
}

impl Kind for HealthCheck {
    const ONLY_LOOKS: bool = true;
    const CHANGES_CLUSTER: bool = false;

    fn plan_cluster(b: &mut Builder<'_>) -> Result<Vec<Self>, CompileError> {
        let restore = matches!(b.input.action, ActionSpec::EtcdSnapshotRestore { .. });
        let changed = b.steps.iter().any(|s| {
            matches!(s.kind(), StepKind::StartEtcd | StepKind::MemberAdd | StepKind::MemberRemove | StepKind::RemoveEtcd)
        });
        if !restore && !changed {
            return Ok(Vec::new());
        }
        let members = b.etcd_nodes().iter().map(|n| n.address.clone()).collect();
        Ok(vec![HealthCheck { members, same_revision: restore }])
    }

    fn describe(&self) -> String {
        let what = if self.same_revision { "healthy, same revision" } else { "healthy" };
        format!("check {} {what}", crate::model::counted(self.members.len(), "member"))
    }

    async fn run(&self, ex: &Executor, _: &Step, ctx: &StepCtx<'_>) -> Result<(), StepError> {
        let nodes: Vec<&Node> = self.members.iter().filter_map(|a| ex.cluster.node(a)).collect();
        let via = nodes.first().copied().ok_or_else(|| StepError::fatal("no member to check"))?;
        let report = ex.wait_healthy(via, &nodes, self.same_revision, ctx).await?;
        let rev =
            report.members.first().and_then(|m| m.revision).map(|r| format!(" at revision {r}")).unwrap_or_default();
        // RKE's line as RKE prints it (users grep for it), then rkectl's count.
        let healthy = crate::model::counted(report.members.len(), "healthy member");
        ctx.log("etcd", format!("Successfully started etcd plane.. {healthy}{rev}"));
        Ok(())
    }
}
