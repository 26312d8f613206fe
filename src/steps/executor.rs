//! The executor: what every step kind runs with (the cluster, the host pool, the secrets a
//! step may need, which never enter the plan or the journal) and the helpers they share
//! (run a helper container, read its report, find a member to act through, wait for health).

use crate::agent::report::{self, HealthReport, SnapshotReport};
use crate::config::{Cluster, HostAddr, Node, S3Settings};
use crate::etcd::{containers, names};
use crate::host::{ContainerSpec, Host, HostPool, RunOutput, Silence, run_once, run_watched};
use crate::rke::pki::Pki;
use crate::secret::Secret;
use crate::steps::Step;
use crate::steps::context::{StepCtx, StepError, StepRunner};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long members may take to become healthy.
pub(super) const HEALTH_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs steps against real (or fake) hosts.
pub struct Executor {
    pub cluster: Arc<Cluster>,
    pub pool: Arc<HostPool>,
    /// The cluster's PKI, for placing certificates.
    pub pki: Option<Pki>,
    /// RKE's state file as text: put in archives, or sealed beside S3 copies, when asked.
    pub state_text: Option<Secret>,
    /// The user's passphrase that seals RKE's state beside S3 copies.
    pub state_passphrase: Option<Secret>,
    /// S3 settings with keys, for steps that use S3.
    pub s3: Option<S3Settings>,
    /// How many times a failing helper container is tried inside one step attempt.
    pub helper_attempts: u32,
}

impl Executor {
    pub(super) async fn host(&self, addr: &HostAddr) -> Result<Arc<dyn Host>, StepError> {
        match self.pool.get(addr).await {
            Ok(h) => Ok(h),
            Err(e) => {
                self.pool.forget(addr).await;
                Err(e.into())
            }
        }
    }

    pub(super) fn node(&self, addr: &HostAddr) -> Result<&Node, StepError> {
        self.cluster.node(addr).ok_or_else(|| StepError::fatal(format!("host {addr} is not in cluster.yml")))
    }

    /// `spec` labelled as this apply's helper. An apply holds the node lock, so its helpers
    /// keep the reference's names (see [`crate::host::owner`]).
    pub(super) fn own(&self, spec: &ContainerSpec) -> ContainerSpec {
        self.pool.owner().label(spec.clone())
    }

    /// Runs a temporary helper to completion; a non-zero exit is retried a few times and
    /// then reported with the helper's output. The helper is removed either way.
    pub(super) async fn helper(&self, host: &dyn Host, spec: &ContainerSpec) -> Result<RunOutput, StepError> {
        let spec = &self.own(spec);
        let mut last = None;
        for attempt in 1..=self.helper_attempts.max(1) {
            let out = run_once(host, spec).await?;
            if out.exit_code == 0 {
                return Ok(out);
            }
            last = Some(out);
            if attempt < self.helper_attempts {
                tokio::time::sleep(std::time::Duration::from_millis(500 * u64::from(attempt))).await;
            }
        }
        let out = last.expect("at least one attempt");
        Err(StepError::fatal(format!(
            "container {} on host {} exited with code {} after {}",
            spec.name,
            host.addr(),
            out.exit_code,
            crate::model::counted(self.helper_attempts.max(1) as usize, "attempt")
        ))
        .with_logs(out.logs))
    }

    /// Runs a helper while forwarding the `RKECTL-PROGRESS` lines it prints as byte
    /// progress, then parses its report line; removed on success and on failure.
    pub(super) async fn helper_watched<T: for<'de> serde::Deserialize<'de>>(
        &self,
        host: &dyn Host,
        spec: &ContainerSpec,
        ctx: &StepCtx<'_>,
    ) -> Result<T, StepError> {
        // Each call brings only the lines printed since the last one: the latest count wins.
        let mut forward = |new_lines: &str| {
            let last = new_lines.lines().rev().find_map(|l| l.strip_prefix(crate::agent::snapshot::PROGRESS));
            if let Some(bytes) = last.and_then(|b| b.trim().parse().ok()) {
                ctx.bytes(bytes, None);
            }
        };
        let spec = &self.own(spec);
        let out = run_watched(host, spec, Silence::HELPER, &mut forward).await?;
        if out.exit_code != 0 {
            return Err(StepError::fatal(format!(
                "container {} on host {} exited with code {}",
                spec.name,
                host.addr(),
                out.exit_code
            ))
            .with_logs(out.logs));
        }
        report::parse(&out.logs).map_err(|e| {
            StepError::fatal(format!("container {} on host {}: {e}", spec.name, host.addr())).with_logs(out.logs)
        })
    }

    /// Runs a helper and parses its report line.
    pub(super) async fn helper_report<T: for<'de> serde::Deserialize<'de>>(
        &self,
        host: &dyn Host,
        spec: &ContainerSpec,
    ) -> Result<T, StepError> {
        let out = self.helper(host, spec).await?;
        report::parse(&out.logs).map_err(|e| {
            StepError::fatal(format!("container {} on host {}: {e}", spec.name, host.addr())).with_logs(out.logs)
        })
    }

    /// The host a step acts on; every kind but the cluster-wide ones has one.
    pub(super) fn on<'s>(&self, step: &'s Step) -> Result<&'s HostAddr, StepError> {
        step.host.as_ref().ok_or_else(|| StepError::fatal(format!("step {} has no host", step.id)))
    }

    /// Creates a container and starts it.
    pub(super) async fn create_and_start(
        &self,
        host: &dyn Host,
        spec: &crate::host::ContainerSpec,
    ) -> Result<(), StepError> {
        crate::host::create_container(host, spec).await?;
        host.start_container(&spec.name).await?;
        Ok(())
    }

    /// A member through which to change or query the cluster: a running etcd host other
    /// than `except`.
    pub(super) async fn via(&self, except: Option<&HostAddr>) -> Result<(&Node, std::sync::Arc<dyn Host>), StepError> {
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

    /// Polls member health until every member answers (and, if asked, at one revision).
    pub(super) async fn wait_healthy(
        &self,
        via: &Node,
        members: &[&Node],
        same_revision: bool,
        ctx: &StepCtx<'_>,
    ) -> Result<HealthReport, StepError> {
        let host = self.host(&via.address).await?;
        let spec = self.own(&containers::health_check(&self.cluster, via, members));
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

    /// Runs the full checksum checker on a file of a host.
    pub(super) async fn check_file(&self, host: &dyn Host, path: &str) -> Result<SnapshotReport, StepError> {
        let spec = containers::checksum_checker(&self.cluster, &[path.to_string()]);
        self.helper_report(host, &spec).await
    }
}

#[async_trait]
impl StepRunner for Executor {
    async fn run(&self, step: &Step, ctx: &StepCtx<'_>) -> Result<(), StepError> {
        let result = step.action.run(self, step, ctx).await;
        if let Err(e) = &result
            && e.transient
        {
            // The link may be what failed: the retry dials again instead of reusing it.
            for h in step.host.iter().chain(step.action.other_host()) {
                self.pool.forget(h).await;
            }
        }
        result
    }
}
