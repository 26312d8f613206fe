//! `drill-snapshot`: one helper container restores the snapshot in scratch space, serves
//! it from a throwaway etcd on its own loopback and reports what it holds; the report goes
//! out as an event. The member, its data and its certificates are untouched. A copy the
//! drill staged goes when it fails too.

use super::{Executor, Kind};
use crate::agent::drill::DrillReport;
use crate::config::HostAddr;
use crate::etcd::containers;
use crate::steps::context::{StepCtx, StepError};
use crate::layout;
use crate::model::action::ActionSpec;
use crate::steps::planning::{Builder, CompileError};
use crate::model::{SnapshotFormat, SnapshotLocation, SnapshotName};
use crate::steps::{Step, StepAction};
use serde::{Deserialize, Serialize};

/// Restores the snapshot into scratch space inside a helper container and reports what
/// it holds (`etcd-snapshot-drill`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillSnapshot {
    pub snapshot: SnapshotName,
    pub format: SnapshotFormat,
    pub from: SnapshotLocation,
    /// Where the drilled copy came from, for the report (`host H's own copy`, `a copy from s3://…`).
    #[serde(default)]
    pub origin: String,
    pub compare_live: bool,
}

impl Kind for DrillSnapshot {
    const CHANGES_CLUSTER: bool = false;

    fn plan_host(b: &mut Builder<'_>, host: &HostAddr) -> Result<Vec<Self>, CompileError> {
        let ActionSpec::EtcdSnapshotDrill { name, compare_live, .. } = b.input.action else { return Ok(Vec::new()) };
        // Offline, the host's own copy is what the plan shows.
        let (format, from) = match b.chosen() {
            Some(r) if !r.good_set.contains(host) => (r.format, SnapshotLocation::Staged),
            Some(r) => (r.format, SnapshotLocation::Listed),
            None => (SnapshotFormat::Raw, SnapshotLocation::Listed),
        };
        let fetched_from = b.steps.iter().find_map(|s| match &s.action {
            StepAction::FetchSnapshot(f) if s.host.as_ref() == Some(host) => Some(f.source.to_string()),
            _ => None,
        });
        let origin = match fetched_from {
            Some(source) => format!("a copy from {source}"),
            None => format!("host {host}'s own copy"),
        };
        Ok(vec![DrillSnapshot { snapshot: name.clone(), format, from, origin, compare_live: *compare_live }])
    }

    fn describe(&self) -> String {
        let staged = if self.origin.is_empty() { String::new() } else { format!(" ({})", self.origin) };
        let live = if self.compare_live { "; count the running cluster's keys too (read-only)" } else { "" };
        format!(
            "drill {}{staged}: restore it inside a helper container, serve it there on unix sockets only, count what it holds (etcd-snapshot-drill){live}",
            self.format.file_name(&self.snapshot)
        )
    }

    // The drill's container, its scratch data and its etcd are gone when it ends: no effect.

    async fn run(&self, ex: &Executor, step: &Step, ctx: &StepCtx<'_>) -> Result<(), StepError> {
        let addr = ex.on(step)?;
        let shown = self.format.file_name(&self.snapshot);
        let node = ex.node(addr)?;
        let host = ex.host(addr).await?;
        let file = layout::snapshot_file(&self.snapshot, self.format, self.from);
        ctx.log("etcd", format!("Drilling snapshot [{shown}] on host [{addr}]"));
        let spec = containers::snapshot_drill(&ex.cluster, node, &file, self.compare_live);
        let result: Result<DrillReport, StepError> = ex.helper_watched(host.as_ref(), &spec, ctx).await;
        let report = match result {
            Ok(r) => r,
            Err(e) => {
                if self.from == SnapshotLocation::Staged {
                    let _ = host.remove_file(&file).await;
                }
                return Err(StepError::fatal(format!(
                    "the drill of snapshot {shown} on host {addr} failed: {}",
                    e.full()
                )));
            }
        };
        ctx.log(
            "etcd",
            format!(
                "Snapshot [{shown}] restores: {} key{} at revision {} (restore {})",
                report.restored.keys,
                if report.restored.keys == 1 { "" } else { "s" },
                report.restored.revision,
                crate::model::step::human_millis(report.restore_millis)
            ),
        );
        ctx.drill_report(report, &self.origin);
        Ok(())
    }
}
