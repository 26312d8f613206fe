//! `clean-host`: removes the etcd container and the etcd data (`kube-cleaner`), as RKE's
//! restore does before it restores.

use super::{Executor, Kind};
use crate::config::HostAddr;
use crate::etcd::{containers, names};
use crate::steps::context::{StepCtx, StepError};
use crate::steps::planning::{Builder, CompileError};
use crate::steps::Step;
use crate::steps::effect::{Effect, Resource};
use serde::{Deserialize, Serialize};

/// Removes the etcd container and the etcd data (`kube-cleaner`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanHost {}

impl Kind for CleanHost {
    const DESTRUCTIVE: bool = true;

    fn plan_host(_: &mut Builder<'_>, _: &HostAddr) -> Result<Vec<Self>, CompileError> {
        Ok(vec![CleanHost {}])
    }

    fn describe(&self) -> String {
        "remove etcd container and data (kube-cleaner)".into()
    }

    fn effect(&self, fx: &mut Effect<'_>) {
        if let Some(r) = fx.host() {
            r.remove(&Resource::Container(names::ETCD.into()));
            r.remove(&Resource::EtcdData);
        }
    }

    async fn run(&self, ex: &Executor, step: &Step, ctx: &StepCtx<'_>) -> Result<(), StepError> {
        let addr = ex.on(step)?;
        let host = ex.host(addr).await?;
        ctx.log("hosts", format!("Cleaning up host [{addr}]"));
        host.remove_container(names::ETCD).await?;
        ctx.log("hosts", format!("Running cleaner container on host [{addr}]"));
        let spec = containers::cleaner(&ex.cluster);
        ex.helper(host.as_ref(), &spec).await?;
        ctx.log("kube-cleaner", format!("Successfully started [{}] container on host [{addr}]", names::CLEANER));
        ctx.log("hosts", format!("Removing cleaner container on host [{addr}]"));
        ctx.log("hosts", format!("Successfully cleaned up host [{addr}]"));
        Ok(())
    }
}
