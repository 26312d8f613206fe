//! `remove-etcd`: stops and removes the `etcd` container of a member that leaves; a host
//! that is gone keeps it until it comes back.

use super::{Executor, Kind};
use crate::config::HostAddr;
use crate::etcd::names;
use crate::steps::context::{StepCtx, StepError};
use crate::steps::planning::{Builder, CompileError};
use crate::steps::Step;
use crate::steps::effect::{Effect, Resource};
use serde::{Deserialize, Serialize};

/// Stops and removes the `etcd` container of a member that leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveEtcd {}

impl Kind for RemoveEtcd {
    const DESTRUCTIVE: bool = true;

    fn plan_host(b: &mut Builder<'_>, host: &HostAddr) -> Result<Vec<Self>, CompileError> {
        let has = b.facts(host).is_some_and(|f| f.containers.contains_key(names::ETCD));
        Ok(if has { vec![RemoveEtcd {}] } else { Vec::new() })
    }

    fn describe(&self) -> String {
        "stop and remove etcd container".into()
    }

    fn effect(&self, fx: &mut Effect<'_>) {
        if let Some(r) = fx.host() {
            r.remove(&Resource::Container(names::ETCD.into()));
        }
    }

    async fn run(&self, ex: &Executor, step: &Step, ctx: &StepCtx<'_>) -> Result<(), StepError> {
        let addr = ex.on(step)?;
        match ex.pool.get(addr).await {
            Ok(host) => {
                host.remove_container(names::ETCD).await?;
                ctx.log("remove/etcd", format!("Successfully removed container on host [{addr}]"));
            }
            Err(e) => {
                // The member is already out of the cluster; a host that is gone (the
                // disaster-recovery case) keeps its container until it comes back.
                ctx.warn(
                    "remove/etcd",
                    format!("Host [{addr}] is unreachable ({e}); its etcd container was not removed"),
                );
            }
        }
        Ok(())
    }
}
