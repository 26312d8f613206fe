//! Member steps: clean a host, restore into it, place certificates, run etcd, change
//! membership, link logs, check health, run the recurring snapshot service.

use super::Executor;
use crate::agent::report::{Done, HealthReport};
use crate::config::{HostAddr, Node};
use crate::etcd::containers::{self, MemberChange, RestoreTool};
use crate::etcd::{member_name, names};
use crate::exec::{StepCtx, StepError};
use crate::host::{Host, HostError, run_once};
use crate::plan::step::{ClusterState, RollingSettings, SnapshotName};
use std::time::{Duration, Instant};

/// How long members may take to become healthy.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(120);

impl Executor {
    pub(super) async fn clean_host(&self, addr: &HostAddr, ctx: &StepCtx<'_>) -> Result<(), StepError> {
        let host = self.host(addr).await?;
        ctx.log("hosts", format!("Cleaning up host [{addr}]"));
        host.remove_container(names::ETCD).await?;
        ctx.log("hosts", format!("Running cleaner container on host [{addr}]"));
        let spec = containers::cleaner(&self.cluster);
        self.helper(host.as_ref(), &spec).await?;
        ctx.log("kube-cleaner", format!("Successfully started [{}] container on host [{addr}]", names::CLEANER));
        ctx.log("hosts", format!("Removing cleaner container on host [{addr}]"));
        ctx.log("hosts", format!("Successfully cleaned up host [{addr}]"));
        Ok(())
    }

    pub(super) async fn restore(
        &self,
        addr: &HostAddr,
        snapshot: &SnapshotName,
        file: &str,
        member: &str,
        initial_cluster: &str,
        ctx: &StepCtx<'_>,
    ) -> Result<(), StepError> {
        let host = self.host(addr).await?;
        let node = self.node(addr)?;
        if member_name(node) != member {
            return Err(StepError::fatal(format!(
                "host {addr} is member {} in cluster.yml, but the plan restores it as {member}; plan again",
                member_name(node)
            )));
        }
        ctx.log("etcd", format!("Restoring [{snapshot}] snapshot on etcd host [{addr}]"));
        // An earlier attempt may have left partial data: start from an empty folder.
        self.helper(host.as_ref(), &containers::cleaner(&self.cluster)).await?;
        let mut tool = RestoreTool::Etcdutl;
        let out = loop {
            let spec = containers::restore(&self.cluster, node, file, initial_cluster, tool);
            match run_once(host.as_ref(), &spec).await {
                Ok(out) => break out,
                // etcd 3.4 images have no etcdutl; their etcdctl restores.
                Err(HostError::ProgramMissing { .. }) if tool == RestoreTool::Etcdutl => tool = RestoreTool::Etcdctl,
                Err(e) => return Err(e.into()),
            }
        };
        if out.exit_code != 0 {
            return Err(StepError::transient(format!(
                "container {} on host {addr} exited with code {}",
                names::RESTORE,
                out.exit_code
            ))
            .with_logs(out.logs));
        }
        ctx.log("etcd", format!("Successfully started [{}] container on host [{addr}]", names::RESTORE));
        let _: Done = self.helper_report(host.as_ref(), &containers::restore_finish(&self.cluster)).await?;
        Ok(())
    }

    pub(super) async fn deploy_certs(&self, addr: &HostAddr, member: &str, ctx: &StepCtx<'_>) -> Result<(), StepError> {
        let host = self.host(addr).await?;
        let node = self.node(addr)?;
        let pki = self.pki.as_ref().ok_or_else(|| StepError::fatal("the cluster has no PKI in its state file"))?;
        let files = pki
            .member_files(node)
            .ok_or_else(|| StepError::fatal(format!("the PKI has no certificate for {member} ({addr})")))?;
        for (path, content, mode) in files {
            host.write_file(&path, content.expose().as_bytes(), mode).await?;
        }
        ctx.log("certificates", format!("Deployed certificates of [{member}] to host [{addr}]"));
        Ok(())
    }

    pub(super) async fn start_etcd(
        &self,
        addr: &HostAddr,
        initial_cluster: &str,
        state: ClusterState,
        restart: bool,
        ctx: &StepCtx<'_>,
    ) -> Result<(), StepError> {
        let host = self.host(addr).await?;
        let node = self.node(addr)?;
        let arch = host.docker_info().await?.architecture;
        let spec = crate::etcd::member::spec(&self.cluster, node, initial_cluster, state, &arch);
        let same = |c: &crate::host::ContainerInfo| {
            let facts = crate::plan::observed::ContainerFacts {
                image: c.image.clone(),
                running: c.running,
                spec_hash: None,
                made_by: crate::plan::observed::MadeBy::of(&c.labels, &c.args),
                args: c.args.clone(),
                env: crate::plan::observed::hashed_env(&c.env),
                binds: c.binds.clone(),
            };
            crate::etcd::member::differences(&self.cluster, node, &arch, &facts).is_empty()
        };
        match host.inspect_container(names::ETCD).await? {
            Some(c) if c.running && same(&c) && restart => {
                host.stop_container(names::ETCD).await?;
                host.start_container(names::ETCD).await?;
                ctx.log("etcd", format!("Restarted [etcd] container on host [{addr}] with its new certificates"));
            }
            Some(c) if c.running && same(&c) => {
                ctx.log("etcd", format!("Container [etcd] is already running on host [{addr}]"));
            }
            Some(_) => {
                host.remove_container(names::ETCD).await?;
                self.create_and_start(host.as_ref(), &spec).await?;
                ctx.log("etcd", format!("Successfully started [etcd] container on host [{addr}]"));
            }
            None => {
                self.create_and_start(host.as_ref(), &spec).await?;
                ctx.log("etcd", format!("Successfully started [etcd] container on host [{addr}]"));
            }
        }
        if state == ClusterState::Existing {
            // Joining or replacing one member of a running cluster: the next host waits
            // until this one is healthy, so quorum is never lost.
            self.wait_healthy(node, &[node], false, ctx).await?;
        }
        Ok(())
    }

    async fn create_and_start(&self, host: &dyn Host, spec: &crate::host::ContainerSpec) -> Result<(), StepError> {
        crate::host::create_container(host, spec).await?;
        host.start_container(&spec.name).await?;
        Ok(())
    }

    /// A member through which to change or query the cluster: a running etcd host other
    /// than `except`.
    async fn via(&self, except: Option<&HostAddr>) -> Result<(&Node, std::sync::Arc<dyn Host>), StepError> {
        for node in self.cluster.etcd_nodes() {
            if Some(&node.address) == except {
                continue;
            }
            let Ok(host) = self.pool.get(&node.address).await else { continue };
            if let Ok(Some(c)) = host.inspect_container(names::ETCD).await
                && c.running
            {
                return Ok((node, host));
            }
        }
        Err(StepError::transient("no running etcd member is reachable to change the membership through"))
    }

    pub(super) async fn member_add(
        &self,
        addr: &HostAddr,
        member: &str,
        peer: &str,
        ctx: &StepCtx<'_>,
    ) -> Result<(), StepError> {
        let (via, host) = self.via(Some(addr)).await?;
        ctx.log(
            "add/etcd",
            format!("Adding member [{member}] ({peer}) to the etcd cluster through host [{}]", via.address),
        );
        let spec = containers::member_change(&self.cluster, via, MemberChange::Add { member, peer_url: peer });
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

    pub(super) async fn member_remove(
        &self,
        addr: &HostAddr,
        member: &str,
        ctx: &StepCtx<'_>,
    ) -> Result<(), StepError> {
        let (via, host) = self.via(Some(addr)).await?;
        ctx.log(
            "remove/etcd",
            format!("Removing member [{member}] from the etcd cluster through host [{}]", via.address),
        );
        let spec = containers::member_change(&self.cluster, via, MemberChange::Remove { member });
        let _: Done = self.helper_report(host.as_ref(), &spec).await?;
        Ok(())
    }

    pub(super) async fn remove_etcd(&self, addr: &HostAddr, ctx: &StepCtx<'_>) -> Result<(), StepError> {
        match self.pool.get(addr).await {
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

    pub(super) async fn log_linker(
        &self,
        addr: &HostAddr,
        container: &str,
        ctx: &StepCtx<'_>,
    ) -> Result<(), StepError> {
        let host = self.host(addr).await?;
        let info = host
            .inspect_container(container)
            .await?
            .ok_or_else(|| StepError::fatal(format!("container {container} is not on host {addr}")))?;
        let root = host.docker_info().await?.root_dir;
        let spec = containers::log_linker(&self.cluster, container, &info.id, &root);
        // Removed as soon as it is done, like every helper: a run cut short between this step
        // and `remove-log-linker` leaves nothing behind.
        self.helper(host.as_ref(), &spec).await?;
        ctx.log("etcd", format!("Successfully started [{}] container on host [{addr}]", names::LOG_LINKER));
        Ok(())
    }

    /// Polls member health until every member answers (and, if asked, at one revision).
    async fn wait_healthy(
        &self,
        via: &Node,
        members: &[&Node],
        same_revision: bool,
        ctx: &StepCtx<'_>,
    ) -> Result<HealthReport, StepError> {
        let host = self.host(&via.address).await?;
        let spec = containers::health_check(&self.cluster, via, members);
        let start = Instant::now();
        loop {
            let out = run_once(host.as_ref(), &spec).await?;
            let problem = match crate::agent::report::parse::<HealthReport>(&out.logs) {
                Ok(report) => {
                    let sick: Vec<String> = report
                        .members
                        .iter()
                        .filter(|m| !m.healthy)
                        .map(|m| format!("{}: {}", m.endpoint, m.error.as_deref().unwrap_or("unhealthy")))
                        .collect();
                    let revisions: std::collections::BTreeSet<i64> =
                        report.members.iter().filter_map(|m| m.revision).collect();
                    if sick.is_empty() && (!same_revision || revisions.len() <= 1) {
                        return Ok(report);
                    }
                    if sick.is_empty() {
                        format!("members are at different revisions {revisions:?}")
                    } else {
                        sick.join("; ")
                    }
                }
                Err(e) => format!("the health check: {e}: {}", out.logs.lines().last().unwrap_or("")),
            };
            if start.elapsed() > HEALTH_TIMEOUT {
                return Err(StepError::fatal(format!(
                    "etcd members did not become healthy within {}s: {problem}",
                    HEALTH_TIMEOUT.as_secs()
                )));
            }
            ctx.log("etcd", format!("Waiting for members: {problem}"));
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    pub(super) async fn health_check(
        &self,
        members: &[HostAddr],
        same_revision: bool,
        ctx: &StepCtx<'_>,
    ) -> Result<(), StepError> {
        let nodes: Vec<&Node> = members.iter().filter_map(|a| self.cluster.node(a)).collect();
        let via = nodes.first().copied().ok_or_else(|| StepError::fatal("no member to check"))?;
        let report = self.wait_healthy(via, &nodes, same_revision, ctx).await?;
        let rev =
            report.members.first().and_then(|m| m.revision).map(|r| format!(" at revision {r}")).unwrap_or_default();
        ctx.log("etcd", format!("Successfully started etcd plane.. {} healthy member(s){rev}", report.members.len()));
        Ok(())
    }

    pub(super) async fn start_rolling(
        &self,
        addr: &HostAddr,
        settings: &RollingSettings,
        ctx: &StepCtx<'_>,
    ) -> Result<(), StepError> {
        let host = self.host(addr).await?;
        let node = self.node(addr)?;
        let spec = containers::rolling_snapshots(&self.cluster, node, settings);
        let want = spec.labels.get(containers::SPEC_HASH_LABEL).cloned();
        if let Some(c) = host.inspect_container(names::ROLLING_SNAPSHOTS).await? {
            if c.running && c.labels.get(containers::SPEC_HASH_LABEL) == want.as_ref() {
                return Ok(());
            }
            host.remove_container(names::ROLLING_SNAPSHOTS).await?;
        }
        self.create_and_start(host.as_ref(), &spec).await?;
        ctx.log("etcd", format!("Successfully started [{}] container on host [{addr}]", names::ROLLING_SNAPSHOTS));
        Ok(())
    }
}
