//! `remove-log-linker`: removes `rke-log-linker` once it has linked the logs.

use super::{Executor, Kind};
use crate::config::HostAddr;
use crate::etcd::names;
use crate::steps::context::{StepCtx, StepError};
use crate::steps::planning::{Builder, CompileError};
use crate::steps::{Step, StepKind};
use serde::{Deserialize, Serialize};

/// Removes `rke-log-linker`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveLogLinker {}

impl Kind for RemoveLogLinker {
    fn plan_host(b: &mut Builder<'_>, host: &HostAddr) -> Result<Vec<Self>, CompileError> {
        Ok(if b.planned.contains(&(host.clone(), StepKind::LogLinker)) { vec![RemoveLogLinker {}] } else { Vec::new() })
    }

    fn describe(&self) -> String {
        "remove rke-log-linker".into()
    }

    async fn run(&self, ex: &Executor, step: &Step, ctx: &StepCtx<'_>) -> Result<(), StepError> {
        let host = ex.host(ex.on(step)?).await?;
        host.remove_container(names::LOG_LINKER).await?;
        ctx.log("remove/rke-log-linker", format!("Successfully removed container on host [{}]", host.addr()));
        Ok(())
    }
}
