//! `member-remove`: removes a member that leaves cluster.yml from the running cluster
//! (`etcdctl member remove` through another member).

use super::{Executor, Kind};
use crate::agent::report::Done;
use crate::config::HostAddr;
use crate::etcd::containers::{self, MemberChange};
use crate::steps::context::{StepCtx, StepError};
use crate::steps::planning::{Builder, CompileError};
use crate::steps::Step;
use serde::{Deserialize, Serialize};

/// Removes a member from the running cluster (`etcdctl member remove`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRemove {
    pub member: String,
}

impl Kind for MemberRemove {
    const DESTRUCTIVE: bool = true;

    fn plan_host(b: &mut Builder<'_>, host: &HostAddr) -> Result<Vec<Self>, CompileError> {
        let Some(m) = b.input.removed_members.iter().find(|m| &m.address == host) else { return Ok(Vec::new()) };
        let listed = b.current_members().is_none_or(|c| c.contains(&m.member));
        Ok(if listed && !b.running_members().is_empty() {
            vec![MemberRemove { member: m.member.clone() }]
        } else {
            Vec::new()
        })
    }

    fn describe(&self) -> String {
        format!("remove member {}", self.member)
    }

    async fn run(&self, ex: &Executor, step: &Step, ctx: &StepCtx<'_>) -> Result<(), StepError> {
        let member = self.member.as_str();
        let (via, host) = ex.via(Some(ex.on(step)?)).await?;
        ctx.log(
            "remove/etcd",
            format!("Removing member [{member}] from the etcd cluster through host [{}]", via.address),
        );
        let spec = containers::member_change(&ex.cluster, via, MemberChange::Remove { member });
        let _: Done = ex.helper_report(host.as_ref(), &spec).await?;
        Ok(())
    }
}
