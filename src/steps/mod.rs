//! What each step kind does on a host: the Rust side of the templates in `plans/`.
//!
//! [`Executor`] implements [`StepRunner`]: it holds the cluster, the host pool, and the
//! secrets a step may need (PKI keys, S3 keys), which never enter the plan or the journal.
//! Every step is idempotent: running it again after it (or part of it) already happened
//! leaves the same state, which is what lets an interrupted apply resume. Log lines follow
//! the reference document's wording.

mod direct_copy;
mod drill;
mod etcd_steps;
mod snapshot;

pub use snapshot::{archive_state, read_record};

/// rkectl's record of a snapshot on a host, ignoring any error, whether or not its file is
/// there: for refresh, which holds the listing and matches each record to the file it saw.
pub async fn read_record_quiet(
    host: &dyn Host,
    name: &crate::plan::step::SnapshotName,
) -> Option<crate::agent::report::SnapshotReport> {
    snapshot::read_record_file(host, name).await.ok().flatten()
}

use crate::agent::report;
use crate::config::{Cluster, HostAddr, Node, S3Settings};
use crate::etcd::names;
use crate::exec::{StepCtx, StepError, StepRunner};
use crate::host::{ContainerSpec, Host, HostPool, RunOutput, Silence, run_once, run_watched};
use crate::plan::{Step, StepAction};
use crate::rke::pki::Pki;
use crate::secret::Secret;
use async_trait::async_trait;
use std::sync::Arc;

/// What a snapshot save writes besides the database.
#[derive(Debug, Clone, Copy)]
pub struct SaveWhat {
    pub upload: bool,
    pub include_state: bool,
    pub seal_state: bool,
}

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
    async fn host(&self, addr: &HostAddr) -> Result<Arc<dyn Host>, StepError> {
        match self.pool.get(addr).await {
            Ok(h) => Ok(h),
            Err(e) => {
                self.pool.forget(addr).await;
                Err(e.into())
            }
        }
    }

    fn node(&self, addr: &HostAddr) -> Result<&Node, StepError> {
        self.cluster.node(addr).ok_or_else(|| StepError::fatal(format!("host {addr} is not in cluster.yml")))
    }

    /// Runs a temporary helper to completion; a non-zero exit is retried a few times and
    /// then reported with the helper's output. The helper is removed either way.
    async fn helper(&self, host: &dyn Host, spec: &ContainerSpec) -> Result<RunOutput, StepError> {
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
            "container {} on host {} exited with code {} after {} attempt(s)",
            spec.name,
            host.addr(),
            out.exit_code,
            self.helper_attempts.max(1)
        ))
        .with_logs(out.logs))
    }

    /// Runs a helper while forwarding the `RKECTL-PROGRESS` lines it prints as byte
    /// progress, then parses its report line; removed on success and on failure.
    async fn helper_watched<T: for<'de> serde::Deserialize<'de>>(
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
    async fn helper_report<T: for<'de> serde::Deserialize<'de>>(
        &self,
        host: &dyn Host,
        spec: &ContainerSpec,
    ) -> Result<T, StepError> {
        let out = self.helper(host, spec).await?;
        report::parse(&out.logs).map_err(|e| {
            StepError::fatal(format!("container {} on host {}: {e}", spec.name, host.addr())).with_logs(out.logs)
        })
    }

    async fn dial(&self, addr: &HostAddr, ctx: &StepCtx<'_>) -> Result<(), StepError> {
        let host = self.host(addr).await?;
        host.docker_info().await?;
        ctx.log("dialer", format!("Setup tunnel for host [{addr}]"));
        // A temporary container left by an earlier, killed run must never be mistaken for
        // ours, nor block a new one with its name.
        for name in crate::etcd::temporary_containers(&self.cluster) {
            if host.remove_container(&name).await? {
                ctx.warn("cleanup", format!("Removed container [{name}] left by an earlier run on host [{addr}]"));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl StepRunner for Executor {
    async fn run(&self, step: &Step, ctx: &StepCtx<'_>) -> Result<(), StepError> {
        let result = self.run_step(step, ctx).await;
        if let Err(e) = &result
            && e.transient
        {
            // The link may be what failed: the retry dials again instead of reusing it.
            let mut hosts: Vec<&HostAddr> = step.host.iter().collect();
            if let StepAction::FetchSnapshot { source: crate::plan::step::SnapshotSource::Host { host }, .. } =
                &step.action
            {
                hosts.push(host);
            }
            for h in hosts {
                self.pool.forget(h).await;
            }
        }
        result
    }
}

impl Executor {
    async fn run_step(&self, step: &Step, ctx: &StepCtx<'_>) -> Result<(), StepError> {
        let addr = step.host.as_ref();
        let need = || addr.ok_or_else(|| StepError::fatal(format!("step {} has no host", step.id)));
        match &step.action {
            StepAction::Barrier { .. } => Ok(()),
            StepAction::Dial => self.dial(need()?, ctx).await,
            StepAction::PullImages { images } => {
                let host = self.host(need()?).await?;
                for image in images {
                    let registry = self.cluster.registry_for(image);
                    if crate::host::ensure_image(host.as_ref(), image, registry).await? {
                        ctx.log("image", format!("Pulled image [{image}] on host [{}]", host.addr()));
                    }
                }
                Ok(())
            }
            StepAction::VerifySnapshot { snapshot, format, expect } => {
                self.verify_snapshot(need()?, snapshot, *format, expect.as_ref(), ctx).await
            }
            StepAction::FetchSnapshot { snapshot, format, expect, source, into } => {
                let f =
                    snapshot::Fetch { name: snapshot, format: *format, expect: expect.as_ref(), source, into: *into };
                self.fetch_snapshot(need()?, f, ctx).await
            }
            StepAction::UnpackSnapshot { snapshot, from, expect } => {
                self.unpack_snapshot(need()?, snapshot, *from, expect.as_ref(), ctx).await
            }
            StepAction::DiscardStaged { snapshot } => self.discard_staged(need()?, snapshot, ctx).await,
            StepAction::DrillSnapshot { snapshot, format, from, origin, compare_live } => {
                let d =
                    drill::Drill { name: snapshot, format: *format, from: *from, origin, compare_live: *compare_live };
                self.drill(need()?, d, ctx).await
            }
            StepAction::SaveSnapshot { snapshot, upload, include_state, seal_state } => {
                let what =
                    SaveWhat { upload: upload.is_some(), include_state: *include_state, seal_state: *seal_state };
                self.save_snapshot(need()?, snapshot, what, ctx).await
            }
            StepAction::DeleteSnapshot { snapshot, from } => self.delete_snapshot(addr, snapshot, from, ctx).await,
            StepAction::CleanHost => self.clean_host(need()?, ctx).await,
            StepAction::Restore { snapshot, from, member, initial_cluster, .. } => {
                let ic = crate::etcd::resolve_initial_cluster(&self.cluster, initial_cluster);
                let file = match from {
                    crate::plan::step::RestoreFile::Copy { location } => {
                        crate::layout::snapshot_file(snapshot, crate::plan::step::SnapshotFormat::Raw, *location)
                    }
                    crate::plan::step::RestoreFile::Unpacked => crate::layout::unpacked_db(snapshot),
                };
                self.restore(need()?, snapshot, &file, member, &ic, ctx).await
            }
            StepAction::DeployCerts { member, .. } => self.deploy_certs(need()?, member, ctx).await,
            StepAction::StartEtcd { initial_cluster, cluster_state, restart, .. } => {
                let ic = crate::etcd::resolve_initial_cluster(&self.cluster, initial_cluster);
                self.start_etcd(need()?, &ic, *cluster_state, *restart, ctx).await
            }
            StepAction::MemberAdd { member, peer_url } => self.member_add(need()?, member, peer_url, ctx).await,
            StepAction::MemberRemove { member } => self.member_remove(need()?, member, ctx).await,
            StepAction::RemoveEtcd => self.remove_etcd(need()?, ctx).await,
            StepAction::LogLinker { container } => self.log_linker(need()?, container, ctx).await,
            StepAction::RemoveLogLinker => {
                let host = self.host(need()?).await?;
                host.remove_container(names::LOG_LINKER).await?;
                ctx.log("remove/rke-log-linker", format!("Successfully removed container on host [{}]", host.addr()));
                Ok(())
            }
            StepAction::HealthCheck { members, same_revision } => self.health_check(members, *same_revision, ctx).await,
            StepAction::StartRollingSnapshots { settings, .. } => self.start_rolling(need()?, settings, ctx).await,
            StepAction::RemoveAgent { versions } => {
                let host = self.host(need()?).await?;
                for v in versions {
                    // Names come from a listing of the folder; refuse anything that would leave it.
                    if v.is_empty() || v.contains('/') || v.starts_with('.') {
                        return Err(StepError::fatal(format!("`{v}` is not a folder of rkectl's binaries")));
                    }
                    host.remove_tree(&format!("{}/{v}", crate::agent_binary::REMOTE_ROOT)).await?;
                }
                ctx.log(
                    "cleanup",
                    format!("Removed rkectl's helper binaries from host [{}]: {}", host.addr(), versions.join(", ")),
                );
                Ok(())
            }
            StepAction::RemoveRollingSnapshots { .. } => {
                let host = self.host(need()?).await?;
                host.remove_container(names::ROLLING_SNAPSHOTS).await?;
                ctx.log(
                    "remove/etcd-rolling-snapshots",
                    format!("Successfully removed container on host [{}]", host.addr()),
                );
                Ok(())
            }
        }
    }
}
