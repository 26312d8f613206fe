//! `restore`: restores the snapshot into a fresh data folder as the host's member
//! (`etcd-restore`), with etcd's own tool from the cluster's etcd image.

use super::{Executor, Kind};
use crate::agent::report::Done;
use crate::config::HostAddr;
use crate::etcd::containers::{self, RestoreTool};
use crate::etcd::{self, member_name, names};
use crate::steps::context::{StepCtx, StepError};
use crate::host::{HostError, run_once};
use crate::layout;
use crate::model::action::ActionSpec;
use crate::steps::planning::{Builder, CompileError};
use crate::model::{InitialCluster, SnapshotFacts, SnapshotFormat, SnapshotName};
use crate::model::step::{Pin, RestoreFile};
use crate::steps::Step;
use crate::steps::effect::{Effect, Resource};
use serde::{Deserialize, Serialize};

/// Restores the snapshot into a fresh data folder (`etcd-restore`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restore {
    pub snapshot: SnapshotName,
    pub from: RestoreFile,
    pub expect: Option<SnapshotFacts>,
    pub member: String,
    pub initial_cluster: InitialCluster,
}

impl Kind for Restore {
    const DESTRUCTIVE: bool = true;

    fn plan_host(b: &mut Builder<'_>, host: &HostAddr) -> Result<Vec<Self>, CompileError> {
        let ActionSpec::EtcdSnapshotRestore { name, .. } = b.input.action else { return Ok(Vec::new()) };
        let node = b.node(host).expect("restore runs on etcd nodes");
        let r = b.chosen();
        let (from, expect) = match r.map(|r| r.format) {
            Some(SnapshotFormat::Zip) => (RestoreFile::Unpacked, r.and_then(|r| r.db.clone())),
            _ => (
                RestoreFile::Copy { location: b.reference_location(host, name) },
                match r.map(|r| &r.pin) {
                    Some(Pin::Checksum { facts }) => Some(facts.clone()),
                    _ => None,
                },
            ),
        };
        Ok(vec![Restore {
            snapshot: name.clone(),
            from,
            expect,
            member: etcd::member_name(node),
            initial_cluster: InitialCluster::AllEtcdNodes,
        }])
    }

    fn describe(&self) -> String {
        format!("restore {} as member {} (etcd-restore)", self.snapshot, self.member)
    }

    fn effect(&self, fx: &mut Effect<'_>) {
        if let Some(r) = fx.host() {
            let sum = self.expect.as_ref().map(|e| format!(", {}", e.checksum.short())).unwrap_or_default();
            r.insert(Resource::EtcdData, format!("restored from {}{sum} as {}", self.snapshot, self.member));
        }
    }

    async fn run(&self, ex: &Executor, step: &Step, ctx: &StepCtx<'_>) -> Result<(), StepError> {
        let addr = ex.on(step)?;
        let (snapshot, member) = (&self.snapshot, &self.member);
        let initial_cluster = crate::etcd::resolve_initial_cluster(&ex.cluster, &self.initial_cluster);
        let file = match self.from {
            RestoreFile::Copy { location } => layout::snapshot_file(snapshot, SnapshotFormat::Raw, location),
            RestoreFile::Unpacked => layout::unpacked_db(snapshot),
        };
        let host = ex.host(addr).await?;
        let node = ex.node(addr)?;
        if &member_name(node) != member {
            return Err(StepError::fatal(format!(
                "host {addr} is member {} in cluster.yml, but the plan restores it as {member}; plan again",
                member_name(node)
            )));
        }
        ctx.log("etcd", format!("Restoring [{snapshot}] snapshot on etcd host [{addr}]"));
        // An earlier attempt may have left partial data: start from an empty folder.
        ex.helper(host.as_ref(), &containers::cleaner(&ex.cluster)).await?;
        let mut tool = RestoreTool::Etcdutl;
        let out = loop {
            let spec = ex.own(&containers::restore(&ex.cluster, node, &file, &initial_cluster, tool));
            match run_once(host.as_ref(), &spec).await {
                Ok(out) => break out,
                // etcd 3.4 images have no etcdutl; their etcdctl restores.
                Err(HostError::ProgramMissing { .. }) if tool == RestoreTool::Etcdutl => tool = RestoreTool::Etcdctl,
                Err(e) => return Err(e.into()),
            }
        };
        if out.exit_code != 0 {
            return Err(StepError::transient(format!(
                "container {} on host {addr} exited with code {}",
                names::RESTORE,
                out.exit_code
            ))
            .with_logs(out.logs));
        }
        ctx.log("etcd", format!("Successfully started [{}] container on host [{addr}]", names::RESTORE));
        let _: Done = ex.helper_report(host.as_ref(), &containers::restore_finish(&ex.cluster)).await?;
        Ok(())
    }
}
