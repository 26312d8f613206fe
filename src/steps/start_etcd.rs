//! `start-etcd`: creates and starts the member's `etcd` container as RKE runs it (replacing
//! one that differs from what cluster.yml asks), or restarts one that stays so it loads
//! certificates just placed; a member joining a running cluster is waited for until healthy.

use super::{Executor, Kind};
use crate::config::{HostAddr, Node};
use crate::etcd::{self, names};
use crate::steps::context::{StepCtx, StepError};
use crate::model::action::ActionSpec;
use crate::steps::planning::{Builder, CompileError};
use crate::model::observed::MadeBy;
use crate::model::{ClusterState, InitialCluster};
use crate::model::step::Replacement;
use crate::steps::{Step, StepKind};
use crate::steps::effect::{Effect, Resource};
use serde::{Deserialize, Serialize};

/// Creates and starts the `etcd` container (replacing one that differs), or restarts one
/// that stays as it is when `restart` (its certificates were just replaced).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartEtcd {
    pub member: String,
    pub initial_cluster: InitialCluster,
    pub cluster_state: ClusterState,
    pub replaces: Option<Replacement>,
    #[serde(default)]
    pub restart: bool,
}

impl StartEtcd {
    fn plan_one(b: &Builder<'_>, node: &Node) -> Option<Self> {
        let host = &node.address;
        let member = etcd::member_name(node);
        if let ActionSpec::EtcdSnapshotRestore { .. } = b.input.action {
            return Some(StartEtcd {
                member,
                initial_cluster: InitialCluster::AllEtcdNodes,
                cluster_state: ClusterState::New,
                replaces: None,
                restart: false,
            });
        }
        let facts = b.facts(host);
        let arch = facts.map(|f| f.arch.as_str()).filter(|a| !a.is_empty()).unwrap_or("x86_64");
        let current = facts.and_then(|f| f.containers.get(names::ETCD));
        let differences =
            current.map(|c| crate::etcd::member::differences(b.cluster(), node, arch, c)).unwrap_or_default();
        let up_to_date = current.is_some_and(|c| c.running) && differences.is_empty();
        let new_certs = b.planned.contains(&(host.clone(), StepKind::DeployCerts));
        if up_to_date && !new_certs {
            return None;
        }
        // etcd reads its trusted CA only when it starts, and keeps the connections it made
        // with its old certificate: a member whose container stays restarts to take the
        // certificates just placed.
        let restart = up_to_date && new_certs;
        let replaces = match (current, b.renamed_member(node)) {
            // etcd renames a member that starts under another name: the user confirms it,
            // whoever made the container (a lost `hostname_override` reads the same).
            (Some(c), Some(now)) => Some(Replacement {
                what: format!("the etcd container {} and its member's name {now}", c.made_by.phrase()),
                why: format!(
                    "cluster.yml names the member {member} (its hostname_override, or its address without one), and etcd takes that name when the container starts"
                ),
            }),
            (Some(c), None) if c.made_by != MadeBy::Rkectl && !differences.is_empty() => Some(Replacement {
                what: format!("the etcd container {}", c.made_by.phrase()),
                why: format!("cluster.yml asks for a different one: {}", differences.join(", ")),
            }),
            _ => None,
        };
        let others_running = b.running_members().iter().any(|n| &n.address != host);
        let joining = b.planned.contains(&(host.clone(), StepKind::MemberAdd));
        let (cluster_state, initial_cluster) = if joining {
            // A joining member's initial cluster is the current members plus itb.
            let mut hosts: Vec<HostAddr> = b.running_members().iter().map(|n| n.address.clone()).collect();
            if !hosts.contains(&node.address) {
                hosts.push(node.address.clone());
            }
            (ClusterState::Existing, InitialCluster::Hosts { hosts })
        } else if others_running || current.is_some() {
            (ClusterState::Existing, InitialCluster::AllEtcdNodes)
        } else {
            (ClusterState::New, InitialCluster::AllEtcdNodes)
        };
        Some(StartEtcd { member, initial_cluster, cluster_state, replaces, restart })
    }

}

impl Kind for StartEtcd {
    fn plan_host(b: &mut Builder<'_>, host: &HostAddr) -> Result<Vec<Self>, CompileError> {
        let node = b.node(host).expect("etcd runs on etcd nodes");
        Ok(StartEtcd::plan_one(b, node).into_iter().collect())
    }

    fn describe(&self) -> String {
        let member = &self.member;
        if self.restart {
            format!("restart etcd container, member {member}, to load its new certificates")
        } else {
            format!("start etcd container, member {member}, initial cluster state {}", self.cluster_state)
        }
    }

    fn replaces(&self) -> Option<&Replacement> {
        self.replaces.as_ref()
    }

    fn effect(&self, fx: &mut Effect<'_>) {
        let image = fx.etcd_image.to_string();
        if let Some(r) = fx.host() {
            r.insert(Resource::Container(names::ETCD.into()), format!("running {image}, member {}", self.member));
            r.entry(Resource::EtcdData).or_insert_with(|| "present".into());
        }
    }

    async fn run(&self, ex: &Executor, step: &Step, ctx: &StepCtx<'_>) -> Result<(), StepError> {
        let addr = ex.on(step)?;
        let initial_cluster = crate::etcd::resolve_initial_cluster(&ex.cluster, &self.initial_cluster);
        let state = self.cluster_state;
        let host = ex.host(addr).await?;
        let node = ex.node(addr)?;
        let arch = host.docker_info().await?.architecture;
        let spec = crate::etcd::member::spec(&ex.cluster, node, &initial_cluster, state, &arch);
        let same = |c: &crate::host::ContainerInfo| {
            let facts = crate::model::observed::ContainerFacts {
                image: c.image.clone(),
                running: c.running,
                spec_hash: None,
                made_by: crate::model::observed::MadeBy::of(&c.labels, &c.args),
                args: c.args.clone(),
                env: crate::model::observed::compare_env(&c.env, &crate::etcd::member::env(&ex.cluster, node, &arch)),
                binds: c.binds.clone(),
            };
            crate::etcd::member::differences(&ex.cluster, node, &arch, &facts).is_empty()
        };
        match host.inspect_container(names::ETCD).await? {
            Some(c) if c.running && same(&c) && self.restart => {
                host.stop_container(names::ETCD).await?;
                host.start_container(names::ETCD).await?;
                ctx.log("etcd", format!("Restarted [etcd] container on host [{addr}] with its new certificates"));
            }
            Some(c) if c.running && same(&c) => {
                ctx.log("etcd", format!("Container [etcd] is already running on host [{addr}]"));
            }
            Some(_) => {
                host.remove_container(names::ETCD).await?;
                ex.create_and_start(host.as_ref(), &spec).await?;
                ctx.log("etcd", format!("Successfully started [etcd] container on host [{addr}]"));
            }
            None => {
                ex.create_and_start(host.as_ref(), &spec).await?;
                ctx.log("etcd", format!("Successfully started [etcd] container on host [{addr}]"));
            }
        }
        if state == ClusterState::Existing {
            // Joining or replacing one member of a running cluster: the next host waits
            // until this one is healthy, so quorum is never lost.
            ex.wait_healthy(node, &[node], false, ctx).await?;
        }
        Ok(())
    }
}
