//! `log-linker`: runs RKE's `rke-log-linker` for a container started by the plan, so its
//! logs appear where RKE's log collection looks.

use super::{Executor, Kind};
use crate::config::HostAddr;
use crate::etcd::{containers, names};
use crate::steps::context::{StepCtx, StepError};
use crate::steps::planning::{Builder, CompileError};
use crate::steps::{Step, StepKind};
use serde::{Deserialize, Serialize};

/// Runs `rke-log-linker` for a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLinker {
    pub container: String,
}

impl Kind for LogLinker {
    fn plan_host(b: &mut Builder<'_>, host: &HostAddr) -> Result<Vec<Self>, CompileError> {
        Ok(if b.planned.contains(&(host.clone(), StepKind::StartEtcd)) {
            vec![LogLinker { container: names::ETCD.into() }]
        } else {
            Vec::new()
        })
    }

    fn describe(&self) -> String {
        format!("link {} logs (rke-log-linker)", self.container)
    }

    async fn run(&self, ex: &Executor, step: &Step, ctx: &StepCtx<'_>) -> Result<(), StepError> {
        let addr = ex.on(step)?;
        let container = self.container.as_str();
        let host = ex.host(addr).await?;
        let info = host
            .inspect_container(container)
            .await?
            .ok_or_else(|| StepError::fatal(format!("container {container} is not on host {addr}")))?;
        let root = host.docker_info().await?.root_dir;
        let spec = containers::log_linker(&ex.cluster, container, &info.id, &root);
        // Removed as soon as it is done, like every helper: a run cut short between this step
        // and `remove-log-linker` leaves nothing behind.
        ex.helper(host.as_ref(), &spec).await?;
        ctx.log("etcd", format!("Successfully started [{}] container on host [{addr}]", names::LOG_LINKER));
        Ok(())
    }
}
