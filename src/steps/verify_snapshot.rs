//! `verify-snapshot`: proves that a host's own copy of the snapshot is still the one the
//! plan pinned, before anything is deleted.

use super::records::mismatch;
use super::{Executor, Kind};
use crate::agent::report::SnapshotReport;
use crate::config::HostAddr;
use crate::etcd::containers;
use crate::steps::context::{StepCtx, StepError};
use crate::steps::planning::{Builder, CompileError};
use crate::model::{SnapshotFacts, SnapshotFormat, SnapshotName};
use crate::model::step::{Pin, human_bytes};
use crate::steps::Step;
use serde::{Deserialize, Serialize};

/// Checks that the host's own copy of a snapshot is still the one the plan pinned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifySnapshot {
    pub snapshot: SnapshotName,
    pub format: SnapshotFormat,
    /// `None` only in offline plans, which cannot be applied.
    pub expect: Option<SnapshotFacts>,
}

impl Kind for VerifySnapshot {
    const ONLY_LOOKS: bool = true;
    const CHANGES_CLUSTER: bool = false;

    fn plan_host(b: &mut Builder<'_>, host: &HostAddr) -> Result<Vec<Self>, CompileError> {
        let Some(name) = b.restored_snapshot() else { return Ok(Vec::new()) };
        let Some(r) = b.chosen() else {
            // Offline: every host's copy would be checked; the plan shows it, unpinned.
            return Ok(vec![VerifySnapshot { snapshot: name.clone(), format: SnapshotFormat::Raw, expect: None }]);
        };
        Ok(match (&r.pin, r.good_set.contains(host)) {
            (Pin::Checksum { facts }, true) => {
                vec![VerifySnapshot { snapshot: name.clone(), format: r.format, expect: Some(facts.clone()) }]
            }
            _ => Vec::new(),
        })
    }

    fn describe(&self) -> String {
        let file = self.format.file_name(&self.snapshot);
        match &self.expect {
            Some(e) => format!("verify snapshot {file} ({}, {})", e.checksum.short(), human_bytes(e.size)),
            None => format!("verify snapshot {file} (checksum not known offline)"),
        }
    }

    async fn run(&self, ex: &Executor, step: &Step, ctx: &StepCtx<'_>) -> Result<(), StepError> {
        let addr = ex.on(step)?;
        let Some(expect) = &self.expect else {
            return Err(StepError::fatal(
                "this plan was made offline and does not pin the snapshot's checksum; plan again without --offline",
            ));
        };
        let host = ex.host(addr).await?;
        let file = self.format.file_name(&self.snapshot);
        // The plan was made from a full check of this copy, and the restore checks etcd's
        // trailer again: here it is enough to prove the bytes are still those, which BLAKE3
        // does several times faster.
        let spec = containers::checksum_only(&ex.cluster, std::slice::from_ref(&file));
        let report: SnapshotReport = ex.helper_report(host.as_ref(), &spec).await?;
        if report.size != expect.size {
            return Err(mismatch(addr, &file, "size", &report.size.to_string(), &expect.size.to_string()));
        }
        if report.checksum != expect.checksum {
            return Err(mismatch(addr, &file, "checksum", &report.checksum.0, &expect.checksum.0));
        }
        ctx.log("etcd", format!("Verified snapshot [{file}] on host [{addr}] ({})", expect.checksum.short()));
        Ok(())
    }
}
