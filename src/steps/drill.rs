//! The drill step: one helper container restores the snapshot in scratch space and reads
//! it; the report goes out as an event. A copy the drill staged goes when it fails too.

use super::Executor;
use crate::agent::drill::DrillReport;
use crate::config::HostAddr;
use crate::etcd::containers;
use crate::exec::{StepCtx, StepError};
use crate::layout;
use crate::plan::step::{SnapshotFormat, SnapshotLocation, SnapshotName};

/// What to drill.
pub(super) struct Drill<'a> {
    pub name: &'a SnapshotName,
    pub format: SnapshotFormat,
    pub from: SnapshotLocation,
    pub origin: &'a str,
    pub compare_live: bool,
}

impl Executor {
    pub(super) async fn drill(&self, addr: &HostAddr, d: Drill<'_>, ctx: &StepCtx<'_>) -> Result<(), StepError> {
        let node = self.cluster.node(addr).ok_or_else(|| StepError::fatal(format!("{addr} is not in cluster.yml")))?;
        let host = self.host(addr).await?;
        let file = layout::snapshot_file(d.name, d.format, d.from);
        ctx.log("etcd", format!("Drilling snapshot [{}] on host [{addr}]", d.format.file_name(d.name)));
        let spec = containers::snapshot_drill(&self.cluster, node, &file, d.compare_live);
        let result: Result<DrillReport, StepError> = self.helper_watched(host.as_ref(), &spec, ctx).await;
        let report = match result {
            Ok(r) => r,
            Err(e) => {
                if d.from == SnapshotLocation::Staged {
                    let _ = host.remove_file(&file).await;
                }
                return Err(StepError::fatal(format!(
                    "the drill of snapshot {} on host {addr} failed: {}",
                    d.format.file_name(d.name),
                    e.full()
                )));
            }
        };
        ctx.log(
            "etcd",
            format!(
                "Snapshot [{}] restores: {} keys at revision {} (restore {:.1}s)",
                d.format.file_name(d.name),
                report.restored.keys,
                report.restored.revision,
                report.restore_millis as f64 / 1000.0
            ),
        );
        ctx.drill_report(report, d.origin);
        Ok(())
    }
}
