//! `start-rolling-snapshots`: runs the recurring snapshot service (`etcd-rolling-snapshots`)
//! as cluster.yml asks, replacing one that differs; RKE's own service stays when it already
//! does what cluster.yml asks.

use super::{Executor, Kind};
use crate::config::{HostAddr, Node};
use crate::etcd::{containers, names};
use crate::steps::context::{StepCtx, StepError};
use crate::steps::planning::{Builder, CompileError};
use crate::model::observed::{ContainerFacts, MadeBy};
use crate::model::RollingSettings;
use crate::model::step::{Replacement, describe_rolling};
use crate::steps::Step;
use crate::steps::effect::{Effect, Resource};
use serde::{Deserialize, Serialize};

/// Starts or replaces `etcd-rolling-snapshots`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartRollingSnapshots {
    pub settings: RollingSettings,
    pub replaces: Option<Replacement>,
}

impl StartRollingSnapshots {
    fn plan_one(b: &mut Builder<'_>, node: &Node) -> Option<Self> {
        let cluster = b.cluster();
        let settings = containers::rolling_settings(cluster, node)?;
        let current = b.facts(&node.address).and_then(|f| f.containers.get(names::ROLLING_SNAPSHOTS));
        let what = |c: &ContainerFacts| format!("etcd-rolling-snapshots {}", c.made_by.phrase());
        let replaces = match current {
            Some(c) if c.made_by == MadeBy::Rkectl => {
                let spec = containers::rolling_snapshots(cluster, node, &settings);
                if c.running && c.spec_hash.as_ref() == spec.labels.get(containers::SPEC_HASH_LABEL) {
                    return None;
                }
                None
            }
            Some(c) => match containers::rke_rolling_mismatch(cluster, c) {
                // RKE's own service already does what cluster.yml asks: it stays.
                None if c.running => {
                    b.kept_rke_rolling.push(node.address.to_string());
                    return None;
                }
                None => Some(Replacement { what: what(c), why: "it is not running".into() }),
                Some(why) => Some(Replacement { what: what(c), why }),
            },
            None => None,
        };
        Some(StartRollingSnapshots { settings, replaces })
    }

}

impl Kind for StartRollingSnapshots {
    fn plan_host(b: &mut Builder<'_>, host: &HostAddr) -> Result<Vec<Self>, CompileError> {
        let node = b.node(host).expect("rolling snapshots run on etcd nodes");
        Ok(StartRollingSnapshots::plan_one(b, node).into_iter().collect())
    }

    fn describe(&self) -> String {
        format!("run etcd-rolling-snapshots ({})", describe_rolling(&self.settings))
    }

    fn replaces(&self) -> Option<&Replacement> {
        self.replaces.as_ref()
    }

    fn effect(&self, fx: &mut Effect<'_>) {
        if let Some(r) = fx.host() {
            r.insert(
                Resource::Container(names::ROLLING_SNAPSHOTS.into()),
                format!("running ({})", describe_rolling(&self.settings)),
            );
        }
    }

    async fn run(&self, ex: &Executor, step: &Step, ctx: &StepCtx<'_>) -> Result<(), StepError> {
        let addr = ex.on(step)?;
        let host = ex.host(addr).await?;
        let node = ex.node(addr)?;
        let spec = containers::rolling_snapshots(&ex.cluster, node, &self.settings);
        let want = spec.labels.get(containers::SPEC_HASH_LABEL).cloned();
        if let Some(c) = host.inspect_container(names::ROLLING_SNAPSHOTS).await? {
            if c.running && c.labels.get(containers::SPEC_HASH_LABEL) == want.as_ref() {
                return Ok(());
            }
            host.remove_container(names::ROLLING_SNAPSHOTS).await?;
        }
        ex.create_and_start(host.as_ref(), &spec).await?;
        ctx.log("etcd", format!("Successfully started [{}] container on host [{addr}]", names::ROLLING_SNAPSHOTS));
        Ok(())
    }
}
