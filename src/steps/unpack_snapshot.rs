//! `unpack-snapshot`: unpacks the database from a snapshot's archive (rke-tools' `.zip`)
//! for the restore, and checks it is the database the plan pinned.

use super::records::mismatch;
use super::{Executor, Kind};
use crate::agent::report::SnapshotReport;
use crate::config::HostAddr;
use crate::etcd::containers;
use crate::steps::context::{StepCtx, StepError};
use crate::layout;
use crate::model::action::ActionSpec;
use crate::steps::planning::{Builder, CompileError};
use crate::model::{SnapshotFacts, SnapshotFormat, SnapshotLocation, SnapshotName};
use crate::steps::Step;
use serde::{Deserialize, Serialize};

/// Unpacks the database from the snapshot's archive for the restore, verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnpackSnapshot {
    pub snapshot: SnapshotName,
    pub from: SnapshotLocation,
    pub expect: Option<SnapshotFacts>,
}

impl Kind for UnpackSnapshot {
    const CHANGES_CLUSTER: bool = false;

    fn plan_host(b: &mut Builder<'_>, host: &HostAddr) -> Result<Vec<Self>, CompileError> {
        let ActionSpec::EtcdSnapshotRestore { name, .. } = b.input.action else { return Ok(Vec::new()) };
        let Some(r) = b.chosen() else { return Ok(Vec::new()) };
        if r.format != SnapshotFormat::Zip {
            return Ok(Vec::new());
        }
        let from = b.reference_location(host, name);
        Ok(vec![UnpackSnapshot { snapshot: name.clone(), from, expect: r.db.clone() }])
    }

    fn describe(&self) -> String {
        format!("unpack the database of {}.zip for the restore", self.snapshot)
    }

    async fn run(&self, ex: &Executor, step: &Step, ctx: &StepCtx<'_>) -> Result<(), StepError> {
        let addr = ex.on(step)?;
        let name = &self.snapshot;
        let host = ex.host(addr).await?;
        let archive = layout::snapshot_file(name, SnapshotFormat::Zip, self.from);
        let out = layout::unpacked_db(name);
        let spec = containers::unpack(&ex.cluster, &archive, &out);
        let report: SnapshotReport = ex.helper_report(host.as_ref(), &spec).await?;
        if let Some(e) = &self.expect
            && (report.checksum != e.checksum || report.size != e.size)
        {
            host.remove_file(&out).await?;
            return Err(mismatch(addr, &format!("{name}.zip"), "a database", &report.checksum.0, &e.checksum.0));
        }
        ctx.log(
            "etcd",
            format!("Unpacked the database of snapshot [{name}.zip] on host [{addr}] ({})", report.checksum.short()),
        );
        Ok(())
    }
}
