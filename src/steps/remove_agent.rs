//! `remove-agent`: removes rkectl's helper binaries from a host (`rkectl cleanup`), but
//! never the one rkectl's running snapshot service runs from.

use super::{Executor, Kind};
use crate::config::HostAddr;
use crate::etcd::names;
use crate::steps::context::{StepCtx, StepError};
use crate::steps::planning::{Builder, CompileError};
use crate::model::observed::MadeBy;
use crate::steps::Step;
use crate::steps::effect::{Effect, Resource};
use serde::{Deserialize, Serialize};

/// Removes rkectl's helper binaries (their folders under `/opt/rke/rkectl`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveAgent {
    pub versions: Vec<String>,
}

impl Kind for RemoveAgent {
    fn plan_host(b: &mut Builder<'_>, host: &HostAddr) -> Result<Vec<Self>, CompileError> {
        let Some(f) = b.facts(host) else { return Ok(Vec::new()) };
        // The binary rkectl's running snapshot service runs from stays.
        let in_use: Option<String> = f
            .containers
            .get(names::ROLLING_SNAPSHOTS)
            .filter(|c| c.made_by == MadeBy::Rkectl && c.running)
            .and_then(|c| c.args.first())
            .and_then(|p| p.strip_prefix(&format!("{}/", crate::agent_binary::REMOTE_ROOT)))
            .and_then(|rest| rest.split('/').next())
            .map(str::to_string);
        let versions: Vec<String> = f.agents.iter().filter(|v| Some(*v) != in_use.as_ref()).cloned().collect();
        Ok(if versions.is_empty() { Vec::new() } else { vec![RemoveAgent { versions }] })
    }

    fn describe(&self) -> String {
        format!("remove rkectl's helper binaries {}", self.versions.join(", "))
    }

    fn effect(&self, fx: &mut Effect<'_>) {
        let Some(r) = fx.host() else { return };
        let left: Vec<String> = r
            .get(&Resource::AgentBinaries)
            .map(|v| v.split(", ").filter(|x| !self.versions.iter().any(|r| r == x)).map(str::to_string).collect())
            .unwrap_or_default();
        if left.is_empty() {
            r.remove(&Resource::AgentBinaries);
        } else {
            r.insert(Resource::AgentBinaries, left.join(", "));
        }
    }

    async fn run(&self, ex: &Executor, step: &Step, ctx: &StepCtx<'_>) -> Result<(), StepError> {
        let host = ex.host(ex.on(step)?).await?;
        let in_use = used_by_others(ex, host.as_ref()).await?;
        let mut removed = Vec::new();
        for v in &self.versions {
            // Names come from a listing of the folder; refuse anything that would leave it.
            if v.is_empty() || v.contains('/') || v.starts_with('.') {
                return Err(StepError::fatal(format!("`{v}` is not a folder of rkectl's binaries")));
            }
            if in_use.contains(v) {
                ctx.warn(
                    "cleanup",
                    format!("Kept rkectl's helper binary {v} on host [{}]: another rkectl is running it", host.addr()),
                );
                continue;
            }
            host.remove_tree(&format!("{}/{v}", crate::agent_binary::REMOTE_ROOT)).await?;
            removed.push(v.as_str());
        }
        ctx.log("cleanup", format!("Removed rkectl's helper binaries from host [{}]: {}", host.addr(), removed.join(", ")));
        Ok(())
    }
}

/// The binary folders other invocations on the host (a read-only look from another
/// workstation: applies are kept out by the node lock) are running from.
async fn used_by_others(ex: &Executor, host: &dyn crate::host::Host) -> Result<Vec<String>, StepError> {
    let Some(agent) = ex.pool.agent() else { return Ok(Vec::new()) };
    let live = host.live_owners(&agent.remote_path()).await?;
    let root = format!("{}/", crate::agent_binary::REMOTE_ROOT);
    Ok(live
        .owners
        .iter()
        .filter(|(id, _)| id.as_str() != ex.pool.owner().id.as_str())
        .filter_map(|(_, r)| r.agent.strip_prefix(&root)?.split('/').next().map(str::to_string))
        .collect())
}
