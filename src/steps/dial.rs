//! `dial`: opens the SSH session and the Docker tunnel to a host (taking its node lock),
//! checks Docker, and sweeps what earlier, killed runs left there ([`super::sweep`]).

use super::{Executor, Kind};
use crate::config::HostAddr;
use crate::etcd::names;
use crate::steps::context::{StepCtx, StepError};
use crate::steps::planning::{Builder, CompileError};
use crate::steps::Step;
use crate::steps::effect::{Effect, Resource};
use serde::{Deserialize, Serialize};

/// Opens the SSH session and the Docker tunnel; checks Docker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dial {}

impl Kind for Dial {
    const ONLY_LOOKS: bool = true;
    const CHANGES_CLUSTER: bool = false;
    // The SSH session is process-local state: a resumed apply dials again.
    const SKIPPABLE_ON_RESUME: bool = false;

    fn plan_host(_: &mut Builder<'_>, _: &HostAddr) -> Result<Vec<Self>, CompileError> {
        Ok(vec![Dial {}])
    }

    fn describe(&self) -> String {
        "open SSH session and Docker tunnel, check Docker".into()
    }

    fn effect(&self, fx: &mut Effect<'_>) {
        if let Some(r) = fx.host() {
            for name in names::TEMPORARY {
                r.remove(&Resource::Container(name.to_string()));
            }
        }
    }

    async fn run(&self, ex: &Executor, step: &Step, ctx: &StepCtx<'_>) -> Result<(), StepError> {
        let addr = ex.on(step)?;
        let host = ex.host(addr).await?;
        host.docker_info().await?;
        ctx.log("dialer", format!("Setup tunnel for host [{addr}]"));
        // A temporary container left by an earlier, killed run must never be mistaken for
        // ours, nor block a new one with its name; its secrets must not stay behind.
        let agent = ex.pool.agent().map(|a| a.remote_path());
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let sweeper = super::sweep::Sweeper { owner: ex.pool.owner(), agent: agent.as_deref(), now };
        let swept = sweeper.sweep(host.as_ref(), &crate::etcd::temporary_containers(&ex.cluster)).await?;
        for name in swept.containers {
            ctx.warn("cleanup", format!("Removed container [{name}] left by an earlier run on host [{addr}]"));
        }
        for file in swept.files {
            ctx.warn("cleanup", format!("Removed [{file}] left by an earlier run on host [{addr}]"));
        }
        Ok(())
    }
}
