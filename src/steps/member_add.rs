//! `member-add`: adds a member to the running cluster before its etcd starts (`etcdctl
//! member add` through another member), waiting while etcd says the cluster is not ready.

use super::executor::HEALTH_TIMEOUT;
use super::{Executor, Kind};
use crate::agent::report::Done;
use crate::config::HostAddr;
use crate::etcd::{self, containers, containers::MemberChange};
use crate::steps::context::{StepCtx, StepError};
use crate::host::run_once;
use crate::steps::planning::{Builder, CompileError};
use crate::steps::Step;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Adds a member to the running cluster before it starts (`etcdctl member add`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberAdd {
    pub member: String,
    pub peer_url: String,
}

impl Kind for MemberAdd {
    fn plan_host(b: &mut Builder<'_>, host: &HostAddr) -> Result<Vec<Self>, CompileError> {
        let node = b.node(host).expect("members are etcd nodes");
        let member = etcd::member_name(node);
        let running = b.running_members();
        let Some(current) = b.current_members() else { return Ok(Vec::new()) };
        if running.is_empty() || current.contains(&member) {
            return Ok(Vec::new());
        }
        // A member cluster.yml renames is in the cluster already, under the name it has now.
        if b.renamed_member(node).is_some_and(|now| current.contains(&now)) {
            return Ok(Vec::new());
        }
        Ok(vec![MemberAdd { member, peer_url: etcd::peer_url(node) }])
    }

    fn describe(&self) -> String {
        format!("add member {} ({})", self.member, self.peer_url)
    }

    async fn run(&self, ex: &Executor, step: &Step, ctx: &StepCtx<'_>) -> Result<(), StepError> {
        let (member, peer) = (self.member.as_str(), self.peer_url.as_str());
        let (via, host) = ex.via(Some(ex.on(step)?)).await?;
        ctx.log(
            "add/etcd",
            format!("Adding member [{member}] ({peer}) to the etcd cluster through host [{}]", via.address),
        );
        let spec = ex.own(&containers::member_change(&ex.cluster, via, MemberChange::Add { member, peer_url: peer }));
        // etcd refuses a new member until every current one has been connected for a few
        // seconds (the helper exits EXIT_NOT_READY): right after members start, a wait.
        let start = Instant::now();
        loop {
            let out = run_once(host.as_ref(), &spec).await?;
            if out.exit_code == 0 {
                let _: Done = crate::agent::report::parse(&out.logs)
                    .map_err(|e| StepError::fatal(format!("member add: {e}")).with_logs(out.logs))?;
                return Ok(());
            }
            let not_ready = out.exit_code == i64::from(crate::agent::EXIT_NOT_READY);
            if !not_ready || start.elapsed() > HEALTH_TIMEOUT {
                return Err(StepError::transient(format!("adding member {member} through {} failed", via.address))
                    .with_logs(out.logs));
            }
            ctx.log("add/etcd", "The cluster is not ready for a new member yet; waiting");
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}
