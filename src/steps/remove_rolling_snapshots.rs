//! `remove-rolling-snapshots`: removes the recurring snapshot service when cluster.yml no
//! longer asks for one (saying so when RKE made it).

use super::{Executor, Kind};
use crate::config::HostAddr;
use crate::etcd::{containers, names};
use crate::steps::context::{StepCtx, StepError};
use crate::steps::planning::{Builder, CompileError};
use crate::model::observed::MadeBy;
use crate::model::step::Replacement;
use crate::steps::Step;
use crate::steps::effect::{Effect, Resource};
use serde::{Deserialize, Serialize};

/// Removes `etcd-rolling-snapshots`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveRollingSnapshots {
    pub replaces: Option<Replacement>,
}

impl RemoveRollingSnapshots {
    fn plan_one(b: &Builder<'_>, host: &HostAddr) -> Option<Self> {
        let wanted = b.node(host).and_then(|n| containers::rolling_settings(b.cluster(), n)).is_some();
        let current = b.facts(host).and_then(|f| f.containers.get(names::ROLLING_SNAPSHOTS))?;
        if wanted {
            return None;
        }
        let replaces = (current.made_by != MadeBy::Rkectl).then(|| Replacement {
            what: format!("etcd-rolling-snapshots {}", current.made_by.phrase()),
            why: "cluster.yml enables no recurring snapshots (services.etcd.snapshot is off unless set, as in the reference; RKE itself turns it on by default): set `snapshot: true` or a backup_config to keep them".into(),
        });
        Some(RemoveRollingSnapshots { replaces })
    }

}

impl Kind for RemoveRollingSnapshots {
    fn plan_host(b: &mut Builder<'_>, host: &HostAddr) -> Result<Vec<Self>, CompileError> {
        Ok(RemoveRollingSnapshots::plan_one(b, host).into_iter().collect())
    }

    fn describe(&self) -> String {
        "remove etcd-rolling-snapshots".into()
    }

    fn replaces(&self) -> Option<&Replacement> {
        self.replaces.as_ref()
    }

    fn effect(&self, fx: &mut Effect<'_>) {
        if let Some(r) = fx.host() {
            r.remove(&Resource::Container(names::ROLLING_SNAPSHOTS.into()));
        }
    }

    async fn run(&self, ex: &Executor, step: &Step, ctx: &StepCtx<'_>) -> Result<(), StepError> {
        let host = ex.host(ex.on(step)?).await?;
        host.remove_container(names::ROLLING_SNAPSHOTS).await?;
        ctx.log("remove/etcd-rolling-snapshots", format!("Successfully removed container on host [{}]", host.addr()));
        Ok(())
    }
}
