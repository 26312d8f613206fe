//! Applying a prepared plan: the one library call behind `rkectl apply` and every action.
//!
//! In order: refuse an offline plan, dial the pool (if preparing did not), resolve S3 keys
//! once, write RKE's state file before any certificate reaches a host, open (or continue)
//! the journal, run the steps, then record the members and set the journal aside. The
//! verdict comes from the run's own events (did a step that changes the cluster start?),
//! never from reading the journal back. Rendering is the caller's: it passes the
//! reporters that show the run and gets a typed outcome or error.

use crate::cluster_pki::ClusterPki;
use crate::config::{Cluster, HostAddr, LoadedConfig, S3Settings};
use crate::etcd;
use crate::exec::events::{ApplyEvent, ApplyEventKind, Reporter, Traffic, TrafficCounter};
use crate::exec::{self, RunOptions, RunOutcome};
use crate::host::{Connector, HostPool};
use crate::model::action::ActionSpec;
use crate::plan::Plan;
use crate::prepare::Prepared;
use crate::rke::state::RkeState;
use crate::secret::{Secret, redact};
use crate::state::StatePaths;
use crate::state::cluster_state::{DeployedMember, RkectlState};
use crate::state::journal::{self, JournalState, JournalWriter};
use miette::Diagnostic;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How to apply a prepared plan.
pub struct ApplyRequest<'a> {
    pub prepared: Prepared,
    /// The unfinished run this one finishes, if any.
    pub resume: Option<JournalState>,
    /// Dials the hosts when preparing did not (a resumed apply).
    pub connector: Arc<dyn Connector>,
    /// Who holds this apply's locks (recorded on every node it locks).
    pub lock_holder: String,
    /// Whoever shows the run (progress, log lines, JSON); the journal is written here.
    pub reporter: &'a dyn Reporter,
    pub parallelism: Option<usize>,
    /// Cancelled to stop scheduling (a signal): running steps finish, the journal stays right.
    pub stop: Option<tokio_util::sync::CancellationToken>,
    /// The command that finishes this apply if it stops part-way, as an error names it
    /// (`` `rkectl apply --yes` ``).
    pub finish_with: String,
}

/// A plan applied to the end.
#[derive(Debug, Clone, Copy)]
pub struct Applied {
    /// Snapshot bytes moved, by the way they went.
    pub traffic: Traffic,
    pub elapsed: Duration,
}

/// Why an apply did not finish. [`ApplyError::changed_cluster`] says whether the cluster
/// may have changed (the journal then lets `rkectl apply` finish it).
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum ApplyError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Offline(#[from] crate::plan::saved::OfflinePlan),
    /// Refused before any step ran (the pool, S3 keys, RKE's state file, the journal).
    #[error(transparent)]
    #[diagnostic(transparent)]
    Refused(Box<dyn Diagnostic + Send + Sync>),
    #[error(
        "the journal {} could not be written ({error}); rkectl stopped starting steps and let the running ones finish ({finished} finished). Free the space or fix the folder, then run {finish}: steps whose end was not recorded run again.",
        journal.display()
    )]
    #[diagnostic(code(rkectl::apply::failed))]
    JournalWrite { journal: PathBuf, error: String, finished: usize, finish: String },
    #[error("interrupted during the pre-flight; nothing was changed on any host.")]
    #[diagnostic(code(rkectl::apply::interrupted))]
    InterruptedBeforeChanges,
    #[error(
        "interrupted: the running steps finished ({finished} finished, {not_started} not started). The journal {} records where it stopped: run {finish} to finish it.",
        journal.display()
    )]
    #[diagnostic(code(rkectl::apply::interrupted))]
    Interrupted { journal: PathBuf, finished: usize, not_started: usize, finish: String },
    #[error("{first}\nPre-flight failed; nothing was changed on any host.")]
    #[diagnostic(code(rkectl::refused), help("fix the cause and run the command again"))]
    PreflightFailed { first: String },
    #[error(
        "{first}\n{} finished, {not_started} not started. The journal {} records where it stopped: fix the cause, then run {finish} to finish it.",
        crate::model::counted(*finished, "step"),
        journal.display()
    )]
    #[diagnostic(code(rkectl::apply::failed))]
    Failed { first: String, journal: PathBuf, finished: usize, not_started: usize, finish: String },
    #[error(
        "the apply finished on every host, but {} could not be written: {error}. Fix the cause and run {finish} to record it.",
        path.display()
    )]
    #[diagnostic(code(rkectl::apply::failed))]
    StateWrite { path: PathBuf, error: String, finish: String },
    #[error("the apply finished but its journal could not be set aside: {0}")]
    #[diagnostic(code(rkectl::apply::failed))]
    Retire(String),
}

impl ApplyError {
    fn refused(e: impl Diagnostic + Send + Sync + 'static) -> Self {
        ApplyError::Refused(Box::new(e))
    }

    /// Whether the cluster may have changed: the apply failed part-way (exit 1 at the edge)
    /// rather than being refused before any change (exit 2).
    pub fn changed_cluster(&self) -> bool {
        matches!(
            self,
            ApplyError::JournalWrite { .. }
                | ApplyError::Interrupted { .. }
                | ApplyError::Failed { .. }
                | ApplyError::StateWrite { .. }
                | ApplyError::Retire(_)
        )
    }
}

/// Notes whether a step that changes the cluster has started.
#[derive(Default)]
struct ChangeWatch(AtomicBool);

impl Reporter for ChangeWatch {
    fn event(&self, e: &ApplyEvent) {
        if let ApplyEventKind::StepStarted { kind, .. } = &e.kind
            && kind.changes_cluster()
        {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

/// Applies a prepared plan (see the module's documentation for the order of things).
pub async fn apply(req: ApplyRequest<'_>) -> Result<Applied, ApplyError> {
    let ApplyRequest { prepared, resume, connector, lock_holder, reporter, parallelism, stop, finish_with } = req;
    crate::plan::saved::check_online(&prepared.plan)?;
    let pool = pool_for(&prepared, connector, lock_holder)?;
    // Keys from the AWS chain (a profile, SSO, a session token) are resolved here, once:
    // the helpers on the nodes cannot run this workstation's chain.
    let s3 = resolve_s3_keys(prepared.s3.as_ref()).await?;
    // RKE's state file first: a certificate placed on a host must never be missing from it.
    write_rke_state(prepared.pki.as_ref(), reporter)?;
    let rke_state = prepared.pki.as_ref().map(|p| p.state.clone()).or(prepared.rke_state.clone());
    // `s3` (with its resolved keys) replaces the prepared settings.
    let Prepared { plan, cfg, paths, mut state, pki, state_passphrase, .. } = prepared;
    let mut jw = open_journal(resume.as_ref(), &paths, &cfg, &plan)?;
    let done = resume.as_ref().map(|j| j.finished.clone()).unwrap_or_default();
    let cluster = Arc::new(cfg.cluster.clone());
    let executor = crate::steps::Executor {
        cluster: cluster.clone(),
        pool,
        pki: pki.as_ref().map(|p| p.pki.clone()),
        state_text: rke_state.as_ref().map(RkeState::to_text),
        state_passphrase: state_passphrase.clone(),
        s3,
        helper_attempts: 2,
    };
    let secrets = secrets_of(&executor, rke_state.as_ref(), pki.as_ref());
    let redactor = move |t: &str| redact(t, &secrets.iter().collect::<Vec<_>>());
    let (traffic, changes) = (TrafficCounter::default(), ChangeWatch::default());
    let fan = Consumers { caller: reporter, traffic: &traffic, changes: &changes };
    let opts = RunOptions { parallelism, stop: stop.clone(), ..RunOptions::default() };
    let started = std::time::Instant::now();
    // The only error before any step runs: the plan's graph is not one.
    let outcome =
        exec::run(&plan, &executor, &mut jw, &done, &opts, &fan, &redactor).await.map_err(ApplyError::refused)?;
    let touched = resume.is_some() || changes.0.load(Ordering::SeqCst);
    let interrupted = stop.as_ref().is_some_and(|s| s.is_cancelled());
    verdict(&outcome, &executor, &plan, &paths.journal, (touched, interrupted), &finish_with).await?;
    if matches!(plan.action, ActionSpec::Up | ActionSpec::EtcdSnapshotRestore { .. }) {
        record_members(&mut state, &cluster, &paths, &finish_with)?;
    }
    journal::retire(&paths.journal).map_err(|e| ApplyError::Retire(e.to_string()))?;
    Ok(Applied { traffic: traffic.total(), elapsed: started.elapsed() })
}

/// The pool preparing dialed, else a new one (a resumed apply).
fn pool_for(
    prepared: &Prepared,
    connector: Arc<dyn Connector>,
    lock_holder: String,
) -> Result<Arc<HostPool>, ApplyError> {
    let pool = match &prepared.pool {
        Some(p) => p.clone(),
        None => {
            let cluster = &prepared.cfg.cluster;
            let removed = crate::prepare::removed_members(cluster, &prepared.state, prepared.rke_state.as_ref());
            crate::prepare::pool(connector, cluster, &removed, Some(lock_holder)).map_err(ApplyError::refused)?
        }
    };
    Ok(pool)
}

/// The S3 settings with their keys resolved from the AWS chain.
async fn resolve_s3_keys(s3: Option<&S3Settings>) -> Result<Option<S3Settings>, ApplyError> {
    let s3 = match s3 {
        Some(s) => Some(crate::s3::resolve_keys(s).await.map_err(|e| ApplyError::refused(S3Refusal(e)))?),
        None => None,
    };
    Ok(s3)
}

/// Writes RKE's state file when the PKI asks for it, and says so.
fn write_rke_state(pki: Option<&ClusterPki>, reporter: &dyn Reporter) -> Result<(), ApplyError> {
    if let Some(p) = pki.filter(|p| p.write) {
        p.state.save().map_err(ApplyError::refused)?;
        reporter.event(&ApplyEvent {
            elapsed: Duration::ZERO,
            kind: ApplyEventKind::RunNote {
                level: crate::exec::events::Level::Info,
                message: format!(
                    "Wrote the cluster's PKI (CA {}) to {}",
                    p.pki.ca_fingerprint(),
                    p.state.path().display()
                ),
            },
        });
    }
    Ok(())
}

/// Continues the unfinished run's journal, or starts a new one for `plan`.
fn open_journal(
    resume: Option<&JournalState>,
    paths: &StatePaths,
    cfg: &LoadedConfig,
    plan: &Plan,
) -> Result<JournalWriter, ApplyError> {
    let jw = match resume {
        Some(_) => JournalWriter::append(&paths.journal).map_err(ApplyError::refused)?,
        None => {
            JournalWriter::create(&paths.journal, &cfg.path.display().to_string(), plan).map_err(ApplyError::refused)?
        }
    };
    Ok(jw)
}

/// Why a run that did not finish stopped, after sweeping its temporaries; `Ok` when it
/// finished. `touched`: a step that changes the cluster started (or this run resumes one);
/// `finish`: the command an error names as what finishes the apply.
async fn verdict(
    outcome: &RunOutcome,
    executor: &crate::steps::Executor,
    plan: &Plan,
    journal_path: &Path,
    (touched, interrupted): (bool, bool),
    finish: &str,
) -> Result<(), ApplyError> {
    if let Some(e) = &outcome.journal_error {
        sweep_temporaries(executor, plan).await;
        return Err(ApplyError::JournalWrite {
            journal: journal_path.to_path_buf(),
            error: e.to_string(),
            finished: outcome.finished,
            finish: finish.to_string(),
        });
    }
    if !outcome.ok() {
        sweep_temporaries(executor, plan).await;
        if !touched {
            // Only pre-flight steps ran: nothing changed, so there is nothing to resume.
            let _ = journal::retire(journal_path);
        }
        let first = outcome.failures.first().map(|f| f.to_string()).unwrap_or_else(|| "stopped".into());
        return Err(match (interrupted, touched) {
            (true, false) => ApplyError::InterruptedBeforeChanges,
            (true, true) => ApplyError::Interrupted {
                journal: journal_path.to_path_buf(),
                finished: outcome.finished,
                not_started: outcome.not_started,
                finish: finish.to_string(),
            },
            (false, false) => ApplyError::PreflightFailed { first },
            (false, true) => ApplyError::Failed {
                first,
                journal: journal_path.to_path_buf(),
                finished: outcome.finished,
                not_started: outcome.not_started,
                finish: finish.to_string(),
            },
        });
    }
    Ok(())
}

/// Records the etcd members the cluster now has in rkectl's state file.
fn record_members(
    state: &mut RkectlState,
    cluster: &Cluster,
    paths: &StatePaths,
    finish: &str,
) -> Result<(), ApplyError> {
    state.members = cluster
        .etcd_nodes()
        .map(|n| DeployedMember { address: n.address.clone(), member: etcd::member_name(n) })
        .collect();
    state.cluster_name = cluster.name.clone();
    state.save(&paths.state).map_err(|e| ApplyError::StateWrite {
        path: paths.state.clone(),
        error: e.to_string(),
        finish: finish.to_string(),
    })
}

/// Every secret the run may meet, for the redaction of what it reports.
fn secrets_of(
    executor: &crate::steps::Executor,
    rke_state: Option<&RkeState>,
    pki: Option<&crate::cluster_pki::ClusterPki>,
) -> Vec<Secret> {
    let mut secrets: Vec<Secret> = Vec::new();
    if let Some(s) = &executor.s3 {
        secrets.extend([s.access_key.clone(), s.secret_key.clone()]);
        secrets.extend(s.session_token.clone());
    }
    secrets.extend(executor.state_passphrase.clone());
    if let Some(st) = rke_state {
        secrets.extend(st.private_keys());
    }
    if let Some(p) = pki {
        secrets.extend(p.pki.secrets());
    }
    secrets
}

/// Every consumer of the run's events: the caller's, and the apply's own counters.
struct Consumers<'a> {
    caller: &'a dyn Reporter,
    traffic: &'a TrafficCounter,
    changes: &'a ChangeWatch,
}

impl Reporter for Consumers<'_> {
    fn event(&self, e: &ApplyEvent) {
        self.caller.event(e);
        self.traffic.event(e);
        self.changes.event(e);
    }
}

/// An S3 problem found before anything was changed.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error(transparent)]
#[diagnostic(code(rkectl::s3), help("nothing was changed; check the S3 endpoint, bucket and keys"))]
pub struct S3Refusal(pub crate::s3::S3Error);

/// After a failed run, removes temporary helper containers from every host that answers:
/// helpers remove themselves, but a helper whose host dropped mid-run could not.
async fn sweep_temporaries(executor: &crate::steps::Executor, plan: &Plan) {
    let hosts: std::collections::BTreeSet<&HostAddr> = plan.steps.iter().filter_map(|s| s.host.as_ref()).collect();
    let names = etcd::temporary_containers(&executor.cluster);
    let sweeps = hosts.into_iter().map(|h| {
        let names = &names;
        async move {
            if let Ok(host) = executor.pool.get(h).await {
                for name in names {
                    let _ = host.remove_container(name).await;
                }
            }
        }
    });
    let _ = tokio::time::timeout(Duration::from_secs(30), futures::future::join_all(sweeps)).await;
}
